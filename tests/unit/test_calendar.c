/* calendar: dates, time zones (with their rules after the last listed transition), business
 * calendars from YAML, and deadlines as a privacy officer or a support lead would count them. */
#include "unit.h"
#include "calendar/calendar.h"

/* Milliseconds of a UTC date and time. */
static int64_t utc(int32_t y, int mo, int d, int h, int mi)
{
    return (cd_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60) * 1000;
}

static struct cd_tz *zone(const char *name)
{
    struct cd_tz *tz = NULL;
    assert_int_equal(cd_tz_load(cd_str_c(name), &tz), CD_OK);
    return tz;
}

static struct cd_calendars *shipped(void)
{
    struct cd_calendars *set = NULL;
    assert_int_equal(cd_calendars_new(&set), CD_OK);
    assert_int_equal(cd_calendars_load_dir(set, "rules/calendars"), CD_OK);
    return set;
}

static const struct cd_calendar *find(const struct cd_calendars *set, const char *id)
{
    const struct cd_calendar *c = cd_calendars_find(set, cd_str_c(id));
    assert_non_null(c);
    return c;
}

static int64_t period_end(const struct cd_calendar *c, int64_t start, const char *text, bool roll)
{
    struct cd_period p;
    int64_t end = 0;

    assert_int_equal(cd_period_parse(cd_str_c(text), &p), CD_OK);
    p.roll_to_business_day = roll;
    assert_int_equal(cd_calendar_period_end(c, start, &p, &end), CD_OK);
    return end;
}

static void civil_dates_round_trip(void **state)
{
    int32_t y;
    int m, d;

    assert_int_equal(cd_days_from_civil(1970, 1, 1), 0);
    assert_int_equal(cd_weekday(cd_days_from_civil(2026, 12, 7)), 1); /* a Monday */
    assert_int_equal(cd_weekday(cd_days_from_civil(2000, 2, 29)), 2); /* a Tuesday */
    for (int64_t days = -800000; days < 800000; days += 997) {
        cd_civil_from_days(days, &y, &m, &d);
        assert_true(cd_civil_valid(y, m, d) || y < 1);
        assert_int_equal(cd_days_from_civil(y, m, d), days);
    }
    assert_false(cd_civil_valid(2026, 2, 29));
    assert_true(cd_civil_valid(2028, 2, 29));
    assert_false(cd_civil_valid(2100, 2, 29));
    assert_int_equal(cd_days_in_month(2000, 2), 29);
}

static void zones_follow_transitions_and_their_rule(void **state)
{
    struct cd_tz *berlin = zone("Europe/Berlin"), *ny = zone("America/New_York");
    struct cd_tz *syd = zone("Australia/Sydney"), *tokyo = zone("Asia/Tokyo");

    assert_int_equal(cd_tz_offset(berlin, utc(2026, 1, 15, 12, 0) / 1000), 3600);
    assert_int_equal(cd_tz_offset(berlin, utc(2026, 7, 15, 12, 0) / 1000), 7200);
    /* After the last transition the file lists, the footer's rule still knows summer time. */
    assert_int_equal(cd_tz_offset(berlin, utc(2060, 7, 15, 12, 0) / 1000), 7200);
    assert_int_equal(cd_tz_offset(berlin, utc(2060, 12, 15, 12, 0) / 1000), 3600);
    assert_int_equal(cd_tz_offset(ny, utc(2061, 1, 15, 12, 0) / 1000), -5 * 3600);
    assert_int_equal(cd_tz_offset(ny, utc(2061, 7, 15, 12, 0) / 1000), -4 * 3600);
    /* The southern hemisphere: summer time spans the new year. */
    assert_int_equal(cd_tz_offset(syd, utc(2062, 1, 15, 12, 0) / 1000), 11 * 3600);
    assert_int_equal(cd_tz_offset(syd, utc(2062, 7, 15, 12, 0) / 1000), 10 * 3600);
    assert_int_equal(cd_tz_offset(tokyo, utc(2070, 7, 15, 12, 0) / 1000), 9 * 3600);
    /* Berlin 2060: summer time from the last Sunday of March, 01:00 UTC (28 March 2060). */
    assert_int_equal(cd_tz_offset(berlin, utc(2060, 3, 28, 0, 59) / 1000), 3600);
    assert_int_equal(cd_tz_offset(berlin, utc(2060, 3, 28, 1, 0) / 1000), 7200);

    struct cd_civil c;
    cd_tz_civil(berlin, utc(2026, 10, 25, 0, 30), &c); /* 02:30 summer time, before the change */
    assert_int_equal(c.hour, 2);
    assert_int_equal(c.minute, 30);
    assert_int_equal(c.wday, 0);
    assert_string_equal(cd_tz_name(berlin), "Europe/Berlin");
    assert_string_equal(cd_tz_name(NULL), "UTC");

    cd_tz_free(berlin);
    cd_tz_free(ny);
    cd_tz_free(syd);
    cd_tz_free(tokyo);
}

static void local_times_in_gaps_and_overlaps(void **state)
{
    struct cd_tz *berlin = zone("Europe/Berlin");
    int64_t spring = cd_days_from_civil(2026, 3, 29), autumn = cd_days_from_civil(2026, 10, 25);

    /* 02:30 does not exist on 29 March: read as 01:30 UTC, which is 03:30 summer time. */
    assert_int_equal(cd_tz_instant(berlin, spring, 150), utc(2026, 3, 29, 1, 30));
    /* 02:30 happens twice on 25 October: the first one, 00:30 UTC. */
    assert_int_equal(cd_tz_instant(berlin, autumn, 150), utc(2026, 10, 25, 0, 30));
    assert_int_equal(cd_tz_instant(berlin, autumn, 0), utc(2026, 10, 24, 22, 0));
    assert_int_equal(cd_tz_instant(NULL, autumn, 60), utc(2026, 10, 25, 1, 0));
    assert_int_equal(cd_tz_day(berlin, utc(2026, 10, 24, 22, 30)), autumn);
    assert_int_equal(cd_tz_day(NULL, utc(2026, 10, 24, 22, 30)), autumn - 1);
    cd_tz_free(berlin);
}

static void zone_names_are_checked(void **state)
{
    struct cd_tz *tz = NULL;

    assert_int_equal(cd_tz_load(cd_str_c("../etc/passwd"), &tz), CD_ERR_INVALID);
    assert_int_equal(cd_tz_load(cd_str_c("Europe/../../etc/passwd"), &tz), CD_ERR_INVALID);
    assert_int_equal(cd_tz_load(cd_str_c("Mars/Olympus_Mons"), &tz), CD_ERR_NOT_FOUND);
    assert_int_equal(cd_tz_load(cd_str_c(""), &tz), CD_ERR_INVALID);
    assert_null(tz);
}

static void periods_parse_and_print(void **state)
{
    static const char *const good[] = {"1 month",         "2 months",         "45 days",
                                       "10 business days", "4 business hours", "1 day",
                                       "90 minutes",       "2 weeks",          "0 hours",
                                       "30 business minutes"};
    static const char *const bad[] = {"",          "month",          "1",        "1  day",
                                      "-1 days",   "1 business week", "3 fortnights",
                                      "1 month ", "100001 days",     "1 Business days"};
    struct cd_period p;
    char text[48];

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(cd_period_parse(cd_str_c(good[i]), &p), CD_OK);
        cd_period_format(&p, text, sizeof text);
        assert_string_equal(text, good[i]);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(cd_period_parse(cd_str_c(bad[i]), &p), CD_ERR_INVALID);
    assert_int_equal(cd_period_parse(cd_str_c("10 business days"), &p), CD_OK);
    assert_int_equal(p.unit, CD_PERIOD_BUSINESS_DAYS);
    assert_int_equal(p.n, 10);
    assert_false(p.roll_to_business_day);
}

static void shipped_calendars_load(void **state)
{
    struct cd_calendars *set = shipped();
    static const char *const ids[] = {"24x7", "de", "fr", "gb-eng", "ie", "us-ca", "us-federal"};

    assert_int_equal(cd_calendars_count(set), 7);
    for (size_t i = 0; i < 7; i++)
        assert_string_equal(cd_calendar_id(cd_calendars_at(set, i)), ids[i]);
    const struct cd_calendar *us = find(set, "us-federal");
    assert_int_equal(cd_calendar_holidays_until(us), 2027);
    assert_string_equal(cd_tz_name(cd_calendar_tz(us)), "America/New_York");
    assert_string_equal(cd_calendar_holiday(us, cd_days_from_civil(2026, 11, 26)),
                        "Thanksgiving Day");
    assert_false(cd_calendar_is_business_day(us, cd_days_from_civil(2026, 11, 26)));
    assert_true(cd_calendar_is_business_day(us, cd_days_from_civil(2026, 11, 27)));
    assert_false(cd_calendar_is_business_day(us, cd_days_from_civil(2026, 11, 28)));
    assert_null(cd_calendars_find(set, cd_str_c("xx")));
    assert_int_equal(cd_calendar_holidays_until(find(set, "24x7")), 0);
    cd_calendars_free(set);
}

/* GDPR Art. 12(3): one month from receipt; a last day at a weekend moves to the next working
 * day (Regulation 1182/71 Art. 3(4)). */
static void gdpr_month_ends_on_the_next_working_day(void **state)
{
    struct cd_calendars *set = shipped();
    const struct cd_calendar *de = find(set, "de");

    /* Received Saturday 31 January 2026 in Berlin: 28 February is a Saturday, so the period
     * runs to the end of Monday 2 March (midnight Berlin = 23:00 UTC). */
    assert_int_equal(period_end(de, utc(2026, 1, 31, 9, 0), "1 month", true),
                     utc(2026, 3, 2, 23, 0));
    /* Without the roll, the end of 28 February. */
    assert_int_equal(period_end(de, utc(2026, 1, 31, 9, 0), "1 month", false),
                     utc(2026, 2, 28, 23, 0));
    /* Received 23:30 Berlin on 14 May = still the 14th locally (21:30 UTC): 14 June 2026 is a
     * Sunday -> Monday 15 June, summer time (22:00 UTC). */
    assert_int_equal(period_end(de, utc(2026, 5, 14, 21, 30), "1 month", true),
                     utc(2026, 6, 15, 22, 0));
    /* The same instant in UTC terms is the 14th in London too; a holiday as the last day:
     * received 25 April 2026 in England, 25 May is the spring bank holiday -> 26 May. */
    assert_int_equal(period_end(find(set, "gb-eng"), utc(2026, 4, 25, 10, 0), "1 month", true),
                     utc(2026, 5, 26, 23, 0));
    /* Extended by two further months from the end of the first. */
    assert_int_equal(period_end(de, utc(2026, 3, 2, 22, 59), "2 months", true),
                     utc(2026, 5, 4, 22, 0));
    cd_calendars_free(set);
}

/* CCPA/CPRA: acknowledge within 10 business days, answer within 45 calendar days. */
static void ccpa_business_and_calendar_days(void **state)
{
    struct cd_calendars *set = shipped();
    const struct cd_calendar *us = find(set, "us-federal");

    /* Received Wednesday 16 December 2026, 10:00 New York: ten business days skip the weekends
     * and Christmas Day, and end with Thursday 31 December (midnight New York = 05:00 UTC). */
    assert_int_equal(period_end(us, utc(2026, 12, 16, 15, 0), "10 business days", false),
                     utc(2027, 1, 1, 5, 0));
    /* Forty-five calendar days from 20 November 2026 end with 4 January 2027. */
    assert_int_equal(period_end(us, utc(2026, 11, 20, 15, 0), "45 days", false),
                     utc(2027, 1, 5, 5, 0));
    /* Late on 20 November in New York is already the 21st in UTC: the local day counts. */
    assert_int_equal(period_end(us, utc(2026, 11, 21, 3, 0), "45 days", false),
                     utc(2027, 1, 5, 5, 0));
    /* Opt-out of sale: 15 business days from Friday 3 July 2026 (a holiday). */
    assert_int_equal(period_end(us, utc(2026, 7, 3, 15, 0), "15 business days", false),
                     utc(2026, 7, 25, 4, 0));
    /* Zero business days: the end of the day of receipt. */
    assert_int_equal(period_end(us, utc(2026, 7, 6, 15, 0), "0 business days", false),
                     utc(2026, 7, 7, 4, 0));
    cd_calendars_free(set);
}

static void business_hours_and_working_time(void **state)
{
    struct cd_calendars *set = shipped();
    const struct cd_calendar *gb = find(set, "gb-eng"), *fr = find(set, "fr");
    int64_t end = 0;

    /* Four business hours from Friday 18 December 2026, 16:30 London: one hour on Friday,
     * three on Monday 21 December from 09:00. */
    assert_int_equal(period_end(gb, utc(2026, 12, 18, 16, 30), "4 business hours", false),
                     utc(2026, 12, 21, 12, 0));
    /* Over Christmas: 17:00 on 24 December, 1 hour -> 30 minutes on the 24th, then the 25th
     * and the substitute 28th are holidays, the 26th and 27th a weekend: 09:30 on the 29th. */
    assert_int_equal(period_end(gb, utc(2026, 12, 24, 17, 0), "1 business hour", false),
                     utc(2026, 12, 29, 9, 30));
    /* Working time back: exactly the four hours counted above. */
    assert_int_equal(cd_calendar_working_ms(gb, utc(2026, 12, 18, 16, 30), utc(2026, 12, 21, 12, 0)),
                     4 * 3600000);
    assert_int_equal(cd_calendar_working_ms(gb, utc(2026, 12, 21, 12, 0), utc(2026, 12, 18, 16, 30)),
                     0);
    /* France breaks for lunch: 12:00 to 14:30 Paris on a Monday is one hour of work. */
    assert_int_equal(cd_calendar_working_ms(fr, utc(2026, 12, 7, 11, 0), utc(2026, 12, 7, 13, 30)),
                     3600000);
    assert_int_equal(cd_calendar_add_working(fr, utc(2026, 12, 7, 11, 0), 3600000, &end), CD_OK);
    assert_int_equal(end, utc(2026, 12, 7, 13, 30));
    /* Outside hours, the clock starts at the next opening. */
    assert_int_equal(cd_calendar_add_working(fr, utc(2026, 12, 5, 10, 0), 60000, &end), CD_OK);
    assert_int_equal(end, utc(2026, 12, 7, 8, 1));
    assert_int_equal(cd_calendar_add_working(fr, utc(2026, 12, 5, 10, 0), 0, &end), CD_OK);
    assert_int_equal(end, utc(2026, 12, 5, 10, 0));
    /* Plain hours ignore the calendar. */
    assert_int_equal(period_end(gb, utc(2026, 12, 24, 17, 0), "24 hours", false),
                     utc(2026, 12, 25, 17, 0));
    cd_calendars_free(set);
}

static void working_days_shrink_and_grow_with_daylight_saving(void **state)
{
    static const char yaml[] = "id: berlin-always\n"
                               "name: Berlin, around the clock\n"
                               "time_zone: Europe/Berlin\n"
                               "hours:\n"
                               "  weekdays: [\"00:00-24:00\"]\n"
                               "  sat: [\"00:00-24:00\"]\n"
                               "  sun: [\"00:00-24:00\"]\n";
    struct cd_calendars *set = NULL;

    assert_int_equal(cd_calendars_new(&set), CD_OK);
    assert_int_equal(cd_calendars_add_yaml(set, "berlin.yaml", yaml, sizeof yaml - 1), CD_OK);
    const struct cd_calendar *c = find(set, "berlin-always");
    int64_t spring = cd_days_from_civil(2026, 3, 29), autumn = cd_days_from_civil(2026, 10, 25);
    assert_int_equal(cd_calendar_working_ms(c, cd_tz_instant(cd_calendar_tz(c), spring, 0),
                                            cd_tz_instant(cd_calendar_tz(c), spring + 1, 0)),
                     23 * 3600000);
    assert_int_equal(cd_calendar_working_ms(c, cd_tz_instant(cd_calendar_tz(c), autumn, 0),
                                            cd_tz_instant(cd_calendar_tz(c), autumn + 1, 0)),
                     25 * 3600000);
    /* One local day is one day, whatever its length. */
    assert_int_equal(period_end(c, utc(2026, 3, 28, 12, 0), "1 day", false),
                     utc(2026, 3, 29, 22, 0));
    cd_calendars_free(set);
}

static void bad_calendars_are_refused_with_their_line(void **state)
{
    static const struct {
        const char *yaml, *detail;
    } cases[] = {
        {"id: a\nname: A\ntime_zone: UTC\nhours: {weekdays: [\"09:00-17:00\"]}\ncolour: red\n",
         "bad.yaml:5: unknown key 'colour' in a calendar"},
        {"id: a\nname: A\ntime_zone: UTC\n", "bad.yaml:1: a calendar lacks the required key 'hours'"},
        {"id: a\nname: A\ntime_zone: Nowhere/Land\nhours: {weekdays: [\"09:00-17:00\"]}\n",
         "bad.yaml:3: time_zone: unknown time zone 'Nowhere/Land'"},
        {"id: a\nname: A\ntime_zone: UTC\nhours:\n  mon: [\"09:00-13:00\", \"12:00-17:00\"]\n",
         "bad.yaml:5: working-hour ranges of one day overlap"},
        {"id: a\nname: A\ntime_zone: UTC\nhours:\n  mon: [\"17:00-09:00\"]\n",
         "bad.yaml:5: working hours must be ranges"},
        {"id: a\nname: A\ntime_zone: UTC\nhours:\n  mon: [\"09:00-24:30\"]\n",
         "bad.yaml:5: working hours must be ranges"},
        {"id: a\nname: A\ntime_zone: UTC\nhours:\n  weekdays: [\"09:00-17:00\"]\n  mon: []\n",
         "bad.yaml:6: the hours of 'mon' are given twice"},
        {"id: a\nname: A\ntime_zone: UTC\nhours: {sat: []}\n",
         "bad.yaml:4: hours give no working time on any day"},
        {"id: a\nname: A\ntime_zone: UTC\nhours: {mon: [\"09:00-17:00\"]}\nholidays:\n"
         "  - {date: 2026-02-30, name: X}\n",
         "bad.yaml:6: a holiday's date must be a real date"},
        {"id: a\nname: A\ntime_zone: UTC\nhours: {mon: [\"09:00-17:00\"]}\nholidays:\n"
         "  - {date: 2026-02-03, name: X}\n  - {date: 2026-02-03, name: Y}\n",
         "bad.yaml:7: this date is listed twice"},
        {"id: a\nname: A\ntime_zone: UTC\nhours: {mon: [\"09:00-17:00\"]}\nholidays:\n"
         "  - {date: 2026-02-03}\n",
         "bad.yaml:6: a holiday lacks the required key 'name'"},
        {"id: 24x7\nname: A\ntime_zone: UTC\nhours: {mon: [\"09:00-17:00\"]}\n",
         "bad.yaml:1: a calendar with this id is already loaded"},
        {"id: Big Id\nname: A\ntime_zone: UTC\nhours: {mon: [\"09:00-17:00\"]}\n",
         "bad.yaml:1: id must use only"},
        {"- just\n- a list\n", "bad.yaml:1: a calendar must be a mapping"},
        {"id: [\n", "bad.yaml:2: YAML:"},
    };
    struct cd_calendars *set = NULL;

    assert_int_equal(cd_calendars_new(&set), CD_OK);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        enum cd_err err = cd_calendars_add_yaml(set, "bad.yaml", cases[i].yaml,
                                                strlen(cases[i].yaml));
        if (err != CD_ERR_INVALID || strncmp(cd_err_detail(), cases[i].detail,
                                             strlen(cases[i].detail)) != 0)
            fail_msg("case %zu: err %d, detail '%s', expected '%s'", i, err, cd_err_detail(),
                     cases[i].detail);
    }
    assert_int_equal(cd_calendars_count(set), 1); /* nothing half-added */
    cd_calendars_free(set);
}

static void every_allocation_failure_is_clean(void **state)
{
    for (long n = 1;; n++) {
        struct cd_calendars *set = NULL;
        cd_alloc_fail_nth(n);
        enum cd_err err = cd_calendars_new(&set);
        if (err == CD_OK)
            err = cd_calendars_load_dir(set, "rules/calendars");
        bool hit = cd_alloc_fault_hit();
        cd_alloc_fail_nth(0);
        if (!hit) {
            assert_int_equal(err, CD_OK);
            assert_int_equal(cd_calendars_count(set), 7);
            cd_calendars_free(set);
            break;
        }
        assert_int_equal(err, CD_ERR_NOMEM);
        cd_calendars_free(set);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(civil_dates_round_trip),
        cmocka_unit_test(zones_follow_transitions_and_their_rule),
        cmocka_unit_test(local_times_in_gaps_and_overlaps),
        cmocka_unit_test(zone_names_are_checked),
        cmocka_unit_test(periods_parse_and_print),
        cmocka_unit_test(shipped_calendars_load),
        cmocka_unit_test(gdpr_month_ends_on_the_next_working_day),
        cmocka_unit_test(ccpa_business_and_calendar_days),
        cmocka_unit_test(business_hours_and_working_time),
        cmocka_unit_test(working_days_shrink_and_grow_with_daylight_saving),
        cmocka_unit_test(bad_calendars_are_refused_with_their_line),
        cmocka_unit_test(every_allocation_failure_is_clean),
    };
    cd_json_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
