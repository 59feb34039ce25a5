/* libFuzzer driver for the guard rule-file loader: the input is one YAML rule pack, loaded and
 * compiled from memory. Any outcome but a crash, leak or sanitizer report is fine; when the pack
 * loads, one message is checked with it. */
#include <stddef.h>
#include <stdint.h>
#include "base/base.h"
#include "guard/guard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *names[] = {"fuzz.yaml"};
    const char *bufs[] = {(const char *)data};
    size_t lens[] = {size};
    struct cd_guard *g = NULL;

    if (size > 64 * 1024)
        return 0;
    if (cd_guard_open_buffers(names, bufs, lens, 1, &g) == CD_OK) {
        struct cd_guard_result *r = NULL;
        struct cd_guard_input in = {CD_STR("Hurry, act now: card 4242 4242 4242 4242, "
                                           "mail a.b@example.org, call +44 7700 900123."),
                                    "sms", true, "marketing"};
        if (cd_guard_check(g, &in, &r) == CD_OK) {
            json_t *j = NULL;
            if (cd_guard_result_to_json(r, true, &j) == CD_OK)
                json_decref(j);
        }
        cd_guard_result_free(r);
        cd_guard_close(g);
    }
    return 0;
}
