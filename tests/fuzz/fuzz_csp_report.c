/* libFuzzer driver for the console's Content-Security-Policy report reader
 * (cd__http_csp_parse): the first byte picks the form (even: application/csp-report, odd:
 * application/reports+json), the rest is the body. Whatever the input, a violation handed on
 * names a known directive or none, and its blocked resource is a keyword or an origin made of
 * host characters only: never a path, a query or anything that would need escaping in a log. */
#include <assert.h>
#include <stdint.h>
#include <string.h>
#include "http/http_int.h"

static void check(const struct cd_csp_violation *v, void *ctx)
{
    const char *b = v->blocked;
    const char *host = strstr(b, "://");

    (void)ctx;
    if (v->directive) {
        bool known = false;
        for (int i = 0; cd__http_csp_directives[i]; i++)
            known |= v->directive == cd__http_csp_directives[i];
        assert(known);
    }
    assert(b[0] != '\0' && strlen(b) < sizeof v->blocked);
    if (host == NULL) {
        assert(strspn(b, "abcdefghijklmnopqrstuvwxyz-") == strlen(b));
        return;
    }
    host += 3;
    assert(host[0] != '\0');
    assert(strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") ==
           strlen(host));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;

    if (!ready) {
        cd_json_init();
        ready = true;
    }
    if (size == 0 || size > CD_HTTP_CSP_REPORT_MAX)
        return 0;
    enum cd_err err = cd__http_csp_parse((const char *)data + 1, size - 1, data[0] % 2 == 0,
                                         check, NULL);
    assert(err == CD_OK || err == CD_ERR_INVALID || err == CD_ERR_NOMEM);
    return 0;
}
