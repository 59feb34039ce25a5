/* libFuzzer driver for the loaders of the cases module: the input is an SLA policy or the case
 * settings (whichever it parses as). A policy that loads is applied to a few cases' facts and
 * its clocks computed from a few instants: a deadline is never before its start, and the JSON
 * form of the policy can always be made. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "base/base.h"
#include "calendar/calendar.h"
#include "cases/cases_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int64_t starts[] = {1767225600000, 1774746000000, 1798156800000};
    struct cd_calendars *set = NULL;
    struct cd__sla_policy *p = NULL;
    struct cd__settings s;

    if (size > 64 * 1024 || cd_calendars_new(&set) != CD_OK)
        return 0;
    cd__settings_defaults(&s);
    (void)cd__settings_parse(&s, "settings.yaml", (const char *)data, size);
    if ((p = cd_calloc(1, sizeof *p)) != NULL &&
        cd__sla_policy_parse(p, set, "fuzz.yaml", (const char *)data, size) == CD_OK) {
        json_t *j = cd__policy_json(p);
        json_decref(j);
        for (size_t t = 0; t < p->ntargets; t++) {
            struct cd__applied ap;
            memset(&ap, 0, sizeof ap);
            ap.has_policy = true;
            ap.cal = p->cal;
            memcpy(ap.has, p->targets[t].has, sizeof ap.has);
            memcpy(ap.p, p->targets[t].p, sizeof ap.p);
            for (int c = 0; c < CK__COUNT; c++)
                ap.measure[c] = p->cal;
            for (size_t i = 0; i < sizeof starts / sizeof starts[0]; i++)
                for (int c = 0; c < CK__COUNT; c++) {
                    int64_t due = 0;
                    if (cd__sla_due(&ap, (enum cd__clock)c, starts[i], 3600000, &due) == CD_OK)
                        assert(due == 0 || due >= starts[i]);
                }
        }
    }
    cd_err_clear();
    cd_free(p);
    cd_calendars_free(set);
    return 0;
}
