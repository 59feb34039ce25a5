/* libFuzzer driver for the guard scanner: the input is one message checked against the shipped
 * packs (rules/, or $CANDOR_RULES), plus inbound masking. Checks invariants on the result:
 * spans inside the text and on character boundaries, UTF-16 offsets no larger than bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "guard/guard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct cd_guard *guard;

static struct cd_guard *get_guard(void)
{
    const char *dir = getenv("CANDOR_RULES");

    if (guard)
        return guard;
    if (cd_guard_open(dir && *dir ? dir : "rules", &guard) != CD_OK) {
        fprintf(stderr, "fuzz_guard_scan: cannot load rules: %s\n", cd_err_detail());
        abort();
    }
    return guard;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cd_guard *g = get_guard();
    struct cd_guard_result *r = NULL;
    struct cd_guard_input in = {{(const char *)data, size}, size & 1 ? "sms" : NULL, true,
                                size & 2 ? "marketing" : NULL};
    char *masked = NULL;
    size_t mlen, n;

    if (cd_guard_check(g, &in, &r) == CD_OK) {
        for (size_t i = 0; i < cd_guard_result_count(r); i++) {
            const struct cd_guard_finding *f = cd_guard_result_finding(r, i);
            if (f->start > f->end || f->end > size || f->start_utf16 > f->start ||
                f->end_utf16 - f->start_utf16 > f->end - f->start)
                abort();
            if (f->end < size && (data[f->end] & 0xC0) == 0x80)
                abort();
            if (f->start < size && (data[f->start] & 0xC0) == 0x80)
                abort();
        }
        json_t *j = NULL;
        if (cd_guard_result_to_json(r, false, &j) == CD_OK)
            json_decref(j);
        if (!cd_utf8_valid(cd_guard_result_redacted(r).p, cd_guard_result_redacted(r).len))
            abort();
    } else if (cd_utf8_valid((const char *)data, size) && size <= CD_GUARD_MAX_TEXT) {
        abort(); /* valid input must be accepted */
    }
    cd_guard_result_free(r);
    if (cd_guard_mask_inbound(g, (struct cd_str){(const char *)data, size}, &masked, &mlen, &n) ==
        CD_OK)
        cd_free(masked);
    return 0;
}
