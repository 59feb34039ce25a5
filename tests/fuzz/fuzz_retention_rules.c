/* libFuzzer driver for the retention rules loader: the input is one rules file. When it loads,
 * every rule's cutoff is computed from a few instants (it must lie before the instant) and the
 * rules are written out as JSON. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include "base/base.h"
#include "retention/retention_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int64_t nows[] = {0, 1774958400000, 1709208000000, 4102444800000};
    struct cd_retention_rules *r = NULL;
    json_t *j = NULL;

    if (size > 64 * 1024)
        return 0;
    if (cd_retention_rules_parse("fuzz.yaml", (const char *)data, size, &r) != CD_OK)
        return 0;
    for (size_t i = 0; i < r->n; i++)
        for (size_t k = 0; k < sizeof nows / sizeof nows[0]; k++)
            if (!r->v[i].forever)
                assert(cd__ret_cutoff(&r->v[i], nows[k]) < nows[k]);
    if (cd_retention_rules_json(r, &j) == CD_OK)
        json_decref(j);
    cd_retention_rules_free(r);
    return 0;
}
