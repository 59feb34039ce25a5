/* libFuzzer driver for the calendar loader and the arithmetic it feeds: the input is one
 * calendar file. When it loads, every kind of period is computed from a few instants, and the
 * working time counted back must never exceed the time between the two instants. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include "base/base.h"
#include "calendar/calendar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const periods[] = {"1 month",          "45 days",  "10 business days",
                                          "4 business hours", "2 weeks",  "90 business minutes",
                                          "0 business days",  "24 hours"};
    static const int64_t starts[] = {1767225600000, 1774746000000, 1792620000000, 1798156800000};
    struct cd_calendars *set = NULL;

    if (size > 64 * 1024 || cd_calendars_new(&set) != CD_OK)
        return 0;
    if (cd_calendars_add_yaml(set, "fuzz.yaml", (const char *)data, size) == CD_OK) {
        const struct cd_calendar *c = cd_calendars_at(set, cd_calendars_count(set) - 1);
        json_t *j = NULL;
        if (cd_calendar_json(c, &j) == CD_OK)
            json_decref(j);
        for (size_t p = 0; p < sizeof periods / sizeof periods[0]; p++) {
            struct cd_period per;
            if (cd_period_parse(cd_str_c(periods[p]), &per) != CD_OK)
                continue;
            per.roll_to_business_day = p % 2 == 0;
            for (size_t s = 0; s < sizeof starts / sizeof starts[0]; s++) {
                int64_t end = 0;
                if (cd_calendar_period_end(c, starts[s], &per, &end) == CD_OK) {
                    int64_t work = cd_calendar_working_ms(c, starts[s], end);
                    assert(work >= 0 && work <= (end > starts[s] ? end - starts[s] : 0));
                }
            }
        }
    }
    cd_calendars_free(set);
    return 0;
}
