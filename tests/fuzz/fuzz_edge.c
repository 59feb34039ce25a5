/* libFuzzer driver for the HTTP edge (src/http/edge.c): the input is a request head without
 * its method, "TARGET VERSION\n" then "Name: value" lines. The target check and the header-set
 * check must agree with the plain reading of their rules below: whatever they accept is free of
 * control characters, malformed escapes, encoded path separators, repeated singletons and
 * ambiguous framing, and within the size limits. */
#include <assert.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include "http/http_int.h"

/* What an accepted target must satisfy, checked the slow way: decode it, then look. */
static void accepted_target(const char *t)
{
    const char *q = strchr(t, '?');
    size_t params = 0;

    assert(strlen(t) <= CD_MAX_TARGET);
    for (const char *p = t; *p; p++) {
        unsigned char c = (unsigned char)*p;
        assert(c > 0x20 && c != 0x7f);
        if (c == '%') {
            assert(p[1] != '\0' && p[2] != '\0');
            enum cd_err err = cd_hex_decode((struct cd_str){p + 1, 2}, &c, 1);
            assert(err == CD_OK);
            assert(c >= 0x20 && c != 0x7f);
            assert(c != '/' || (q && p > q));
            p += 2;
        }
        if (q && p >= q && (*p == '&' || p == q))
            params++;
    }
    assert(params <= CD_MAX_QUERY);
}

static bool names_equal(struct cd_str a, const char *b)
{
    return a.len == strlen(b) && strncasecmp(a.p, b, a.len) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char buf[CD_MAX_TARGET * 2 + 2];
    struct cd_str names[64];
    size_t nnames = 0;
    struct cd__http_headers hs = CD_HTTP_HEADERS_INIT;
    char detail[200];

    if (size >= sizeof buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *line = buf, *eol = strchr(line, '\n');
    if (eol)
        *eol = '\0';
    /* The target is the first line up to its last space; what follows is the version. */
    char *sp = strrchr(line, ' ');
    bool http10 = sp && strcmp(sp + 1, "HTTP/1.0") == 0;
    if (sp)
        *sp = '\0';
    const struct cd__http_target_error *e = cd__http_target_check(line);
    if (e == NULL)
        accepted_target(line);
    else
        assert(cd__http_target_error_of(e) == e && e->why[0] != '\0');
    while (eol && nnames < sizeof names / sizeof *names) {
        line = eol + 1;
        if ((eol = strchr(line, '\n')) != NULL)
            *eol = '\0';
        char *colon = strchr(line, ':');
        if (colon == NULL)
            continue;
        struct cd_str name = {line, (size_t)(colon - line)};
        char *value = colon + 1;
        while (*value == ' ')
            value++;
        names[nnames++] = name;
        cd__http_headers_add(&hs, name, cd_str_c(value));
    }
    const struct cd_problem_kind *k = cd__http_headers_check(&hs, http10, detail, sizeof detail);
    if (k != NULL) {
        assert(k->status == 400 || k->status == 501);
        assert(detail[0] != '\0');
        return 0;
    }
    /* Accepted: every name a token, no singleton twice, one way to find the body's end. */
    static const char *const single[] = {"Host", "Authorization", "Candor-Purpose",
                                         "Idempotency-Key", "Content-Type", "Content-Length",
                                         "Transfer-Encoding", "Sec-GPC", "Candor-Fault"};
    for (size_t i = 0; i < nnames; i++) {
        assert(names[i].len > 0);
        for (size_t j = 0; j < names[i].len; j++)
            assert(names[i].p[j] > 0x20 && names[i].p[j] != ':' && names[i].p[j] != '(');
    }
    for (size_t s = 0; s < sizeof single / sizeof *single; s++) {
        size_t seen = 0;
        for (size_t i = 0; i < nnames; i++)
            seen += names_equal(names[i], single[s]);
        assert(seen <= 1);
    }
    assert(http10 || hs.v[CD_H_HOST].p != NULL);
    if (hs.v[CD_H_TRANSFER_ENCODING].p) {
        assert(!http10 && hs.v[CD_H_CONTENT_LENGTH].p == NULL);
        assert(names_equal(hs.v[CD_H_TRANSFER_ENCODING], "chunked"));
    }
    return 0;
}
