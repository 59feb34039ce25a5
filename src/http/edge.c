/* The edge: what a request must get right before any route sees it — a request target that
 * decodes to what it says (no control characters, no malformed or path-changing escapes, a
 * bounded size), and a header set with one value per singleton header and one unambiguous
 * body length. Pure functions over bytes, so the unit tests and the fuzzer call them without a
 * server; server.c applies them to every request. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include "http_int.h"

/* Every way a target can be refused. Static, so the verdict can travel as libmicrohttpd's
 * per-request pointer and need no freeing (server.c, on_uri). */
enum { E_CONTROL, E_PERCENT, E_ENCODED_CONTROL, E_ENCODED_SLASH, E_LONG, E_PARAMS, E__COUNT };
static const struct cd__http_target_error target_errors[E__COUNT] = {
    [E_CONTROL] = {false, "the request target contains a space or a control character"},
    [E_PERCENT] = {false, "the request target has a '%' that is not followed by two hex digits"},
    [E_ENCODED_CONTROL] = {false, "the request target contains an encoded control character "
                                  "(such as %00)"},
    [E_ENCODED_SLASH] = {false, "the path contains an encoded '/' (%2F)"},
    [E_LONG] = {true, "the request target is longer than " CD_XSTR(CD_MAX_TARGET) " bytes"},
    [E_PARAMS] = {true, "the request has more than " CD_XSTR(CD_MAX_QUERY) " query parameters"},
};

const struct cd__http_target_error *cd__http_target_check(const char *target)
{
    const unsigned char *p = (const unsigned char *)target;
    bool query = false;
    size_t params = 0;

    for (; *p; p++) {
        unsigned c = *p;
        if (c <= 0x20 || c == 0x7f)
            return &target_errors[E_CONTROL];
        if (c == '?' && !query) {
            query = true;
            params = 1;
        } else if (c == '&' && query) {
            params++;
        } else if (c == '%') {
            unsigned char byte;
            /* p[1] is read only when it is not the end, p[2] only when p[1] is not. */
            if (p[1] == '\0' || p[2] == '\0' ||
                cd_hex_decode((struct cd_str){(const char *)p + 1, 2}, &byte, 1) != CD_OK)
                return &target_errors[E_PERCENT];
            c = byte;
            /* Decoded, these would end the path early (%00) or smuggle a line break or a
             * control character into a value; none belongs in an API address. */
            if (c < 0x20 || c == 0x7f)
                return &target_errors[E_ENCODED_CONTROL];
            /* An encoded '/' would turn one path segment into two after decoding: what a proxy
             * checked and what the router matches would differ. */
            if (c == '/' && !query)
                return &target_errors[E_ENCODED_SLASH];
            p += 2;
        }
    }
    /* Checked after the scan, so an invalid target is named as such whatever its length. */
    if ((size_t)((const char *)p - target) > CD_MAX_TARGET)
        return &target_errors[E_LONG];
    if (params > CD_MAX_QUERY)
        return &target_errors[E_PARAMS];
    return NULL;
}

const struct cd__http_target_error *cd__http_target_error_of(const void *p)
{
    /* Compared as integers: p usually points elsewhere, where '<' on pointers means nothing. */
    uintptr_t off = (uintptr_t)p - (uintptr_t)target_errors;

    return off < sizeof target_errors && off % sizeof *target_errors == 0 ? p : NULL;
}

/* RFC 9110 tchar, what a header name is made of, as a bit per byte value: the digits, the
 * letters and !#$%&'*+-.^_`|~. One load per byte, since this runs on every header line. */
static const uint64_t tchar_bits[4] = {0x03ff6cfa00000000u, 0x57ffffffc7fffffeu, 0, 0};

static bool is_token(struct cd_str s)
{
    bool ok = s.len > 0;

    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.p[i];
        ok &= (tchar_bits[c >> 6] >> (c & 63)) & 1;
    }
    return ok;
}

/* The headers Candor reads, or that decide where a request ends: each may appear once. */
static const struct {
    const char *name;
    size_t len;
} singletons[CD_H__COUNT] = {
    [CD_H_HOST] = {"host", 4},
    [CD_H_AUTHORIZATION] = {"authorization", 13},
    [CD_H_PURPOSE] = {"candor-purpose", 14},
    [CD_H_IDEMPOTENCY_KEY] = {"idempotency-key", 15},
    [CD_H_CONTENT_TYPE] = {"content-type", 12},
    [CD_H_CONTENT_LENGTH] = {"content-length", 14},
    [CD_H_TRANSFER_ENCODING] = {"transfer-encoding", 17},
    [CD_H_GPC] = {"sec-gpc", 7},
    [CD_H_FAULT] = {"candor-fault", 12},
};

/* Each singleton's name as it is written, for the problem's detail. */
static const char *const display_names[CD_H__COUNT] = {
    [CD_H_HOST] = "Host",
    [CD_H_AUTHORIZATION] = "Authorization",
    [CD_H_PURPOSE] = "Candor-Purpose",
    [CD_H_IDEMPOTENCY_KEY] = "Idempotency-Key",
    [CD_H_CONTENT_TYPE] = "Content-Type",
    [CD_H_CONTENT_LENGTH] = "Content-Length",
    [CD_H_TRANSFER_ENCODING] = "Transfer-Encoding",
    [CD_H_GPC] = "Sec-GPC",
    [CD_H_FAULT] = "Candor-Fault",
};

void cd__http_headers_add(struct cd__http_headers *hs, struct cd_str name, struct cd_str value)
{
    hs->count++;
    if (hs->bad_name.p == NULL && !is_token(name))
        hs->bad_name = name.p ? name : CD_STR("");
    if (name.len == 0)
        return;
    /* Length and first letter pick the candidate; a whole comparison only confirms it. */
    unsigned char first = (unsigned char)(name.p[0] | 0x20);
    for (int i = 0; i < CD_H__COUNT; i++) {
        if (name.len != singletons[i].len || first != (unsigned char)singletons[i].name[0] ||
            strncasecmp(name.p, singletons[i].name, name.len) != 0)
            continue;
        if (hs->v[i].p == NULL)
            hs->v[i] = value.p ? value : CD_STR("");
        else if (hs->repeated < 0)
            hs->repeated = i;
        return;
    }
}

const struct cd_problem_kind *cd__http_headers_check(const struct cd__http_headers *hs,
                                                     bool http10, char *detail, size_t n)
{
    const struct cd_str *v = hs->v;

    if (hs->bad_name.p) {
        snprintf(detail, n, "a header name is not a token (no spaces before the ':')");
        return &cd__http_problem_kinds[CD_PROBLEM_INVALID_HEADER];
    }
    if (hs->repeated >= 0) {
        snprintf(detail, n, "the %s header appears more than once; send it once",
                 display_names[hs->repeated]);
        return &cd__http_problem_kinds[CD_PROBLEM_DUPLICATE_HEADER];
    }
    if (!http10 && v[CD_H_HOST].p == NULL) {
        snprintf(detail, n, "an HTTP/1.1 request needs a Host header");
        return &cd__http_problem_kinds[CD_PROBLEM_INVALID_HEADER];
    }
    if (v[CD_H_TRANSFER_ENCODING].p == NULL)
        return NULL;
    /* Two ways to say where the body ends are how a request is smuggled past a proxy that
     * believes the other one (RFC 9112, 6.3). */
    if (v[CD_H_CONTENT_LENGTH].p) {
        snprintf(detail, n, "send Content-Length or Transfer-Encoding, not both");
        return &cd__http_problem_kinds[CD_PROBLEM_INVALID_HEADER];
    }
    if (http10) {
        snprintf(detail, n, "Transfer-Encoding is not part of HTTP/1.0");
        return &cd__http_problem_kinds[CD_PROBLEM_INVALID_HEADER];
    }
    /* Exactly what libmicrohttpd decodes as chunked. Any other coding it would read until the
     * connection closes, so a body whose end a proxy saw elsewhere is refused before a byte of
     * it is read. */
    if (!(v[CD_H_TRANSFER_ENCODING].len == 7 &&
          strncasecmp(v[CD_H_TRANSFER_ENCODING].p, "chunked", 7) == 0)) {
        snprintf(detail, n, "the only transfer coding accepted is 'chunked', alone");
        return &cd__http_problem_kinds[CD_PROBLEM_TRANSFER_CODING];
    }
    return NULL;
}
