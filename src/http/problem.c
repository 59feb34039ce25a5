/* The one table that maps enum cd_err to an RFC 9457 problem: a stable type per error kind,
 * a title, a status. Types are relative URIs served as documentation by GET /problems/{slug}. */
#include <stdio.h>
#include "http_int.h"

static const struct cd_problem_kind kinds[CD_ERR__COUNT] = {
    [CD_OK] = {500, "internal", "Internal error"},
    [CD_ERR_NOMEM] = {503, CD__HTTP_OOM_SLUG, CD__HTTP_OOM_TITLE},
    [CD_ERR_INVALID] = {400, "invalid-request", "Invalid request"},
    [CD_ERR_TOO_BIG] = {413, "payload-too-large", "Payload too large"},
    [CD_ERR_NOT_FOUND] = {404, "not-found", "Not found"},
    [CD_ERR_CONFLICT] = {409, "conflict", "Conflict with the current state"},
    [CD_ERR_IDEMPOTENCY] = {422, "idempotency-key-reused", "Idempotency-Key reused"},
    [CD_ERR_UNAUTHENTICATED] = {401, "unauthenticated", "Authentication required"},
    [CD_ERR_FORBIDDEN] = {403, "forbidden", "Forbidden for this role"},
    [CD_ERR_PURPOSE_MISSING] = {400, "purpose-required", "Purpose required"},
    [CD_ERR_PURPOSE_UNKNOWN] = {400, "purpose-unknown", "Unknown purpose"},
    [CD_ERR_PURPOSE_DENIED] = {403, "purpose-not-permitted", "Purpose not permitted"},
    [CD_ERR_CONSENT_DENIED] = {403, "consent-denied", "Refused: no consent"},
    [CD_ERR_GUARD_BLOCKED] = {422, "guard-blocked", "Blocked by the communication guard"},
    [CD_ERR_PURPOSE_MISMATCH] = {422, "purpose-mismatch", "Content does not fit the purpose"},
    [CD_ERR_UNSUPPORTED] = {415, "unsupported-media-type", "Unsupported media type"},
    [CD_ERR_STORE] = {503, "store-unavailable", "Storage error"},
    [CD_ERR_BUSY] = {503, "busy", "Temporarily unavailable"},
    [CD_ERR_RATE_LIMITED] = {429, "too-many-requests", "Too many requests"},
    [CD_ERR_SCHEMA] = {500, "schema-mismatch", "Database schema mismatch"},
    [CD_ERR_IO] = {500, "io-error", "I/O error"},
    [CD_ERR_CRYPTO] = {500, "crypto-error", "Cryptographic failure"},
    [CD_ERR_INTEGRITY] = {500, "integrity-error", "Integrity check failed"},
    [CD_ERR_INTERNAL] = {500, "internal", "Internal error"},
};

const struct cd_problem_kind cd__http_problem_kinds[CD_PROBLEM__COUNT + 1] = {
    [CD_PROBLEM_MALFORMED_JSON] = {400, "malformed-json", "Malformed JSON"},
    [CD_PROBLEM_METHOD_NOT_ALLOWED] = {405, "method-not-allowed", "Method not allowed"},
    [CD_PROBLEM_INVALID_URI] = {400, "invalid-uri", "Invalid request target"},
    [CD_PROBLEM_URI_TOO_LONG] = {414, "uri-too-long", "Request target too long"},
    [CD_PROBLEM_DUPLICATE_HEADER] = {400, "duplicate-header", "Header sent more than once"},
    [CD_PROBLEM_INVALID_HEADER] = {400, "invalid-header", "Invalid header"},
    [CD_PROBLEM_TRANSFER_CODING] = {501, "transfer-coding-not-implemented",
                                    "Transfer coding not supported"},
    [CD_PROBLEM_HEADERS_TOO_LARGE] = {431, "headers-too-large",
                                      "Request header fields too large"},
    [CD_PROBLEM__COUNT] = {0, NULL, NULL},
};

const struct cd_problem_kind *cd__http_problem_of(enum cd_err err)
{
    if ((unsigned)err >= CD_ERR__COUNT)
        err = CD_ERR_INTERNAL;
    return &kinds[err];
}

json_t *cd__http_problem_json(const struct cd_problem_kind *k, const char *detail,
                              const char *instance, const char *request_id, json_t *ext)
{
    json_t *o = ext ? ext : json_object();
    char type[96];

    if (o == NULL)
        return NULL;
    snprintf(type, sizeof type, "/problems/%s", k->slug);
    /* Server errors get a generic detail: internals are for the log, not the caller. (503 says
     * what to wait for, 501 what the server does not do.) But an integrity failure is tamper
     * evidence the caller must see named (which interaction, which field, which entry): its
     * details carry ids and column names, never personal data. */
    if (k->status == 500 && k != &kinds[CD_ERR_INTEGRITY])
        detail = "the server could not complete the request; quote the request_id to support";
    /* A problem without one of its members would mislead: all of them, or none (NULL). */
    if (cd_json_set_new(o, "type", json_string(type)) != CD_OK ||
        cd_json_set_new(o, "title", json_string(k->title)) != CD_OK ||
        cd_json_set_new(o, "status", json_integer(k->status)) != CD_OK ||
        (detail && detail[0] && cd_json_set_new(o, "detail", json_string(detail)) != CD_OK) ||
        (instance && cd_json_set_new(o, "instance", json_string(instance)) != CD_OK) ||
        (request_id && cd_json_set_new(o, "request_id", json_string(request_id)) != CD_OK)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

const struct cd_problem_kind *cd__http_problem_by_slug(struct cd_str slug)
{
    for (int i = 1; i < CD_ERR__COUNT; i++)
        if (cd_str_eq_c(slug, kinds[i].slug))
            return &kinds[i];
    for (int i = 0; cd__http_problem_kinds[i].slug; i++)
        if (cd_str_eq_c(slug, cd__http_problem_kinds[i].slug))
            return &cd__http_problem_kinds[i];
    return NULL;
}
