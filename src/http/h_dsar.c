/* Handlers of the data-subject request API (src/dsar): intake (also converting an inbound
 * interaction), the listings by deadline, one request, its lifecycle, its extension and the
 * regimes its deadlines come from. Thin: parse, call the module, shape the answer. */
#include <stdio.h>
#include <string.h>
#include "dsar/dsar.h"
#include "http_int.h"

static enum cd_err service(struct cd_req *r, struct cd_dsar **d)
{
    if (r->app->dsar == NULL)
        return cd_err_set(CD_ERR_BUSY, "data-subject requests are not being served");
    *d = r->app->dsar;
    return CD_OK;
}

static void located(struct cd_req *r, unsigned status)
{
    const char *id = json_string_value(json_object_get(r->resp_json, "id"));

    r->status = status;
    if (id)
        snprintf(r->location, sizeof r->location, "/v1/dsar/%s", id);
}

/* POST /v1/dsar */
enum cd_err cd__http_dsar_create(struct cd_req *r)
{
    struct cd_dsar *d = NULL;
    enum cd_err err;

    if ((err = service(r, &d)) != CD_OK ||
        (err = cd_dsar_create(d, &r->actor, r->json, CD_DSAR_INTAKE_API, &r->resp_json)) != CD_OK)
        return err;
    located(r, 201);
    return CD_OK;
}

/* POST /v1/interactions/{id}/dsar: the interaction carried the request. */
enum cd_err cd__http_dsar_convert(struct cd_req *r)
{
    static const char *const allowed[] = {"type", "jurisdiction", "details", NULL};
    struct cd_dsar *d = NULL;
    json_t *body = NULL;
    enum cd_err err;

    if ((err = service(r, &d)) != CD_OK || (err = cd_json_only(r->json, allowed)) != CD_OK)
        return err;
    if ((body = json_deep_copy(r->json)) == NULL ||
        cd_json_set_strn(body, "interaction_id", r->params[0].p, r->params[0].len) != CD_OK) {
        json_decref(body);
        return CD_ERR_NOMEM;
    }
    err = cd_dsar_create(d, &r->actor, body, CD_DSAR_INTAKE_INTERACTION, &r->resp_json);
    json_decref(body);
    if (err == CD_OK)
        located(r, 201);
    return err;
}

/* GET /v1/dsar: ids, types, states and deadlines; no personal data. */
enum cd_err cd__http_dsar_list(struct cd_req *r)
{
    struct cd_dsar *d = NULL;
    struct cd_dsar_query q = {cd__http_query(r, "customer_id"), cd__http_query(r, "state"),
                              cd__http_query(r, "type"),        cd__http_query(r, "due"),
                              cd__http_query(r, "cursor"),      50};
    enum cd_err err;

    if ((err = service(r, &d)) != CD_OK ||
        (err = cd__http_query_int(r, "limit", 50, 1, 200, &q.limit)) != CD_OK)
        return err;
    return cd_dsar_list(d, &q, &r->resp_json);
}

/* GET /v1/dsar/regimes */
enum cd_err cd__http_dsar_regimes(struct cd_req *r)
{
    struct cd_dsar *d = NULL;
    enum cd_err err = service(r, &d);

    return err != CD_OK ? err : cd_dsar_rules_json(cd_dsar_rules(d), &r->resp_json);
}

/* GET /v1/dsar/{id}: what the customer wrote and what was written to them is conversation; the
 * purpose decides whether it is shown, and a read that shows it passes the customer's read gate
 * (restriction, consent) and is recorded on their access log. */
enum cd_err cd__http_dsar_get(struct cd_req *r)
{
    struct cd_dsar *d = NULL;
    unsigned fields = cd__http_fields(r);
    char resolved[CD_ID_MAX];
    enum cd_err err;

    if ((err = service(r, &d)) != CD_OK ||
        (err = cd_dsar_get(d, r->params[0], NULL, false, &r->resp_json)) != CD_OK ||
        !(fields & CD_FIELDS_CONVERSATION))
        return err;
    const char *cid = json_string_value(json_object_get(r->resp_json, "customer_id"));
    if ((err = cd_core_customer_read_gate(r->app->core, &r->actor, cd_str_c(cid), "dsar.read",
                                          cd_policy_categories(CD_FIELDS_REFERENCE |
                                                               CD_FIELDS_CONVERSATION),
                                          resolved)) != CD_OK)
        return err;
    json_decref(r->resp_json);
    r->resp_json = NULL;
    return cd_dsar_get(d, r->params[0], NULL, true, &r->resp_json);
}

/* POST /v1/dsar/{id}/transition */
enum cd_err cd__http_dsar_transition(struct cd_req *r)
{
    struct cd_dsar *d = NULL;
    enum cd_err err = service(r, &d);

    return err != CD_OK ? err
                        : cd_dsar_transition(d, &r->actor, r->params[0], r->json, &r->resp_json);
}

/* POST /v1/dsar/{id}/extension */
enum cd_err cd__http_dsar_extend(struct cd_req *r)
{
    struct cd_dsar *d = NULL;
    enum cd_err err = service(r, &d);

    return err != CD_OK ? err : cd_dsar_extend(d, &r->actor, r->params[0], r->json, &r->resp_json);
}

/* POST /v1/dsar/{id}/acknowledgement */
enum cd_err cd__http_dsar_acknowledge(struct cd_req *r)
{
    struct cd_dsar *d = NULL;
    enum cd_err err = service(r, &d);

    return err != CD_OK ? err : cd_dsar_acknowledge(d, &r->actor, r->params[0], &r->resp_json);
}

/* POST /v1/dsar/{id}/fulfilment: does what the request asks and completes it. An erasure that a
 * legal hold keeps from happening is a 409 whose problem lists the holds in force: their ids,
 * legal bases and times. Their reasons stay behind the purpose-gated listing of the holds. */
enum cd_err cd__http_dsar_fulfil(struct cd_req *r)
{
    struct cd_dsar *d = NULL;
    json_t *holds = NULL, *list = NULL;
    enum cd_err err = service(r, &d);

    if (err != CD_OK)
        return err;
    err = cd_dsar_fulfil(d, &r->actor, r->params[0], r->json, &r->resp_json, &holds);
    if (holds == NULL)
        return err;
    list = json_array();
    for (size_t i = 0; list && i < json_array_size(holds); i++) {
        json_t *h = json_array_get(holds, i);
        if (json_array_append_new(
                list, json_pack("{s:O?,s:O?,s:O?,s:O?,s:O?}", "id", json_object_get(h, "id"),
                                "customer_id", json_object_get(h, "customer_id"), "legal_basis",
                                json_object_get(h, "legal_basis"), "created_at",
                                json_object_get(h, "created_at"), "expires_at",
                                json_object_get(h, "expires_at"))) != 0) {
            json_decref(list);
            list = NULL;
        }
    }
    json_decref(holds);
    if (list == NULL || (r->problem_ext = json_pack("{s:o}", "holds", list)) == NULL)
        err = CD_ERR_NOMEM;
    return err;
}

/* POST /v1/dsar/{id}/verification: a one-time code to the customer's identity on file, through
 * the outbox. The answer never carries the code nor the address. */
enum cd_err cd__http_dsar_verify_send(struct cd_req *r)
{
    struct cd_dsar *d = NULL;
    enum cd_err err = service(r, &d);

    return err != CD_OK ? err
                        : cd_dsar_verification_send(d, &r->actor, r->params[0], r->json,
                                                    &r->resp_json);
}

/* POST /v1/dsar/{id}/verification/check: a wrong, void, expired or replayed code is a 409 whose
 * problem says which and how many attempts are left. */
enum cd_err cd__http_dsar_verify_check(struct cd_req *r)
{
    struct cd_dsar *d = NULL;
    json_t *failure = NULL;
    enum cd_err err = service(r, &d);

    if (err != CD_OK)
        return err;
    err = cd_dsar_verification_check(d, &r->actor, r->params[0], r->json, &r->resp_json,
                                     &failure);
    if (failure)
        r->problem_ext = failure;
    return err;
}

static enum cd_err export_sink(void *ctx, const void *p, size_t n)
{
    return cd__http_stream_write(ctx, p, n);
}

/* The export is written while it is sent; it owns what it reads (the request may be gone). */
static enum cd_err export_produce(struct cd_stream *s, void *ctx)
{
    return cd_dsar_export_write(ctx, export_sink, s);
}

static void export_free(void *ctx)
{
    cd_dsar_export_free(ctx);
}

/* GET /v1/dsar/{id}/export: the package that answers an access or portability request, as a
 * streamed ZIP. It holds every category, so the purpose must allow every one (legal_obligation);
 * the export is one read in the customer's access log, recorded before it is sent. */
enum cd_err cd__http_dsar_export(struct cd_req *r)
{
    struct cd_dsar *d = NULL;
    struct cd_dsar_export *x = NULL;
    enum cd_err err = service(r, &d);
    char name[96];

    if (err != CD_OK)
        return err;
    if ((cd__http_fields(r) & CD_FIELDS_ALL) != CD_FIELDS_ALL)
        return cd_err_set(CD_ERR_PURPOSE_DENIED, "the export holds every category of the "
                                                 "customer's data: declare a purpose that may "
                                                 "see them all (legal_obligation)");
    if ((err = cd_dsar_export_open(d, &r->actor, r->params[0], &x)) != CD_OK)
        return err;
    cd_dsar_export_name(x, name, sizeof name);
    snprintf(r->disposition, sizeof r->disposition, "attachment; filename=\"%s\"", name);
    r->produce = export_produce;
    r->produce_ctx = x;
    r->produce_free = export_free;
    r->resp_type = "application/zip";
    return CD_OK;
}
