/* calendar — civil time in IANA time zones, business calendars, and the arithmetic of deadlines
 * and service-level clocks.
 *
 * Owns: reading time zones from the system's zoneinfo (TZif files, RFC 8536, including the
 * POSIX rule that applies after the last listed transition); converting between instants and
 * local dates and times; business calendars as data (a zone, working hours per weekday, public
 * holidays), loaded from YAML files and validated; periods ("1 month", "10 business days",
 * "4 business hours") and when they end; working time between two instants.
 *
 * How a period ends follows the common rule for legal time limits (EU Regulation 1182/71,
 * Art. 3, which the GDPR's "one month" follows, and the way US statutes count days): the day of
 * the event is not counted; a period in days, months or business days ends when its last day
 * ends, local time; a period in months ends on the same date of the last month, or on that
 * month's last day when the date does not exist; when the period says so, a last day that is
 * not a business day moves to the next business day. A period in hours or business hours ends
 * at the instant that much (working) time has passed. Every deadline is an exclusive instant:
 * something done before it is on time.
 *
 * Must never: change the process's time zone (no setenv/tzset: request threads share it), or
 * know what a request, a case or a customer is.
 *
 * Threads: a loaded zone, calendar or calendar set is immutable and may be read by any number
 * of threads at once. Instants are milliseconds since the Unix epoch (UTC); local days are
 * counted as days since 1970-01-01 of the local calendar. */
#ifndef CD_CALENDAR_H
#define CD_CALENDAR_H

#include "base/base.h"

/* ---- time zones ---------------------------------------------------------------------------- */

struct cd_tz;

/* Loads the zone named name ("Europe/Berlin", "UTC") from /usr/share/zoneinfo.
 * Errors: CD_ERR_INVALID (not a zone name, or not a TZif v2+ file), CD_ERR_NOT_FOUND (no such
 * zone), CD_ERR_IO, CD_ERR_NOMEM. The caller owns *out (cd_tz_free). */
enum cd_err cd_tz_load(struct cd_str name, struct cd_tz **out);
void cd_tz_free(struct cd_tz *tz);
/* The zone's name as it was loaded. */
const char *cd_tz_name(const struct cd_tz *tz);
/* Seconds east of UTC in force at utc_s (seconds since the epoch). */
int32_t cd_tz_offset(const struct cd_tz *tz, int64_t utc_s);

/* A local date and time. wday: 0 Sunday .. 6 Saturday. */
struct cd_civil {
    int32_t year;
    int month, day; /* 1-based */
    int hour, minute, second, ms;
    int wday;
};

/* Days since 1970-01-01 of a proleptic Gregorian date, and back. No range checks: the caller
 * gives a valid date (cd_civil_valid). */
int64_t cd_days_from_civil(int32_t year, int month, int day);
void cd_civil_from_days(int64_t days, int32_t *year, int *month, int *day);
bool cd_civil_valid(int32_t year, int month, int day);
int cd_days_in_month(int32_t year, int month);
int cd_weekday(int64_t days); /* 0 Sunday .. 6 Saturday */

/* The local date and time of instant ms in tz (NULL: UTC). */
void cd_tz_civil(const struct cd_tz *tz, int64_t ms, struct cd_civil *out);
/* The instant of a local time: local day `days` at `minute` minutes after midnight (0..1440).
 * A local time that does not exist (the hour skipped when clocks go forward) is read with the
 * offset before the change, which lands after it; one that exists twice (clocks go back) is
 * the earlier instant. */
int64_t cd_tz_instant(const struct cd_tz *tz, int64_t days, int minute);
/* The local day (days since 1970-01-01) of instant ms in tz (NULL: UTC). */
int64_t cd_tz_day(const struct cd_tz *tz, int64_t ms);

/* ---- business calendars -------------------------------------------------------------------- */

#define CD_CALENDAR_ID_MAX 48   /* including the terminator */
#define CD_CALENDAR_MAX_RANGES 4 /* working-hour ranges per weekday */

struct cd_calendar;
struct cd_calendars;

/* Creates an empty set holding only the built-in calendar "24x7" (UTC, every minute of every
 * day a working minute, no holidays). Errors: CD_ERR_NOMEM. The caller owns *out. */
enum cd_err cd_calendars_new(struct cd_calendars **out);
/* Parses one calendar file (YAML; docs/calendars.md has the format) named `name` in messages
 * and adds it to set. Errors: CD_ERR_INVALID "NAME:LINE: what" (unknown or missing keys, a
 * malformed range, overlapping ranges, a holiday that is not a date, an unknown time zone, an
 * id already in the set), CD_ERR_NOMEM; the set is unchanged on error. */
enum cd_err cd_calendars_add_yaml(struct cd_calendars *set, const char *name, const char *data,
                                  size_t len);
/* Adds every *.yaml file of dir, in name order. A missing dir is not an error (the set keeps
 * what it has). Errors: as cd_calendars_add_yaml, CD_ERR_IO (dir unreadable). */
enum cd_err cd_calendars_load_dir(struct cd_calendars *set, const char *dir);
void cd_calendars_free(struct cd_calendars *set);
/* The calendar with that id, or NULL. Borrowed from the set. */
const struct cd_calendar *cd_calendars_find(const struct cd_calendars *set, struct cd_str id);
/* The number of calendars, and the ith (0-based, in the order they were added). */
size_t cd_calendars_count(const struct cd_calendars *set);
const struct cd_calendar *cd_calendars_at(const struct cd_calendars *set, size_t i);

const char *cd_calendar_id(const struct cd_calendar *c);
const char *cd_calendar_name(const struct cd_calendar *c);
const struct cd_tz *cd_calendar_tz(const struct cd_calendar *c);
/* The last year for which the calendar lists holidays (0: it lists none). Deadlines that fall
 * after it are computed without holidays; the loaders warn when that year has passed. */
int32_t cd_calendar_holidays_until(const struct cd_calendar *c);
/* The calendar as JSON: {"id", "name", "time_zone", "holidays_until", "hours": {"mon":
 * ["09:00-17:00"], ...}, "holidays": [{"date", "name"}]}. Errors: CD_ERR_NOMEM. The caller owns
 * *out (json_decref). */
enum cd_err cd_calendar_json(const struct cd_calendar *c, json_t **out);
/* True if local day `days` has working hours and is not a holiday. */
bool cd_calendar_is_business_day(const struct cd_calendar *c, int64_t days);
/* The holiday's name if local day `days` is a holiday, else NULL. */
const char *cd_calendar_holiday(const struct cd_calendar *c, int64_t days);

/* ---- periods and deadlines ----------------------------------------------------------------- */

enum cd_period_unit {
    CD_PERIOD_MINUTES,
    CD_PERIOD_HOURS,
    CD_PERIOD_DAYS,
    CD_PERIOD_WEEKS,
    CD_PERIOD_MONTHS,
    CD_PERIOD_BUSINESS_MINUTES,
    CD_PERIOD_BUSINESS_HOURS,
    CD_PERIOD_BUSINESS_DAYS,
};

struct cd_period {
    enum cd_period_unit unit;
    int32_t n;
    /* For days, weeks and months: a last day that is not a business day moves to the next
     * business day (as EU Regulation 1182/71 Art. 3(4) does for holidays and weekends). */
    bool roll_to_business_day;
};

/* Parses "1 month", "45 days", "2 weeks", "10 business days", "4 business hours",
 * "90 minutes", "30 business minutes" (singular or plural; n from 0 to 100000).
 * roll_to_business_day is left false. Errors: CD_ERR_INVALID naming the accepted forms. */
enum cd_err cd_period_parse(struct cd_str s, struct cd_period *out);
/* Writes the canonical text of p ("10 business days") into out (capacity n). */
void cd_period_format(const struct cd_period *p, char *out, size_t n);

/* When period p that starts at instant start_ms ends, by calendar c (see the rule at the top).
 * Errors: CD_ERR_INVALID (the calendar has no working time within ten years of start, for the
 * business units). */
enum cd_err cd_calendar_period_end(const struct cd_calendar *c, int64_t start_ms,
                                   const struct cd_period *p, int64_t *end_ms);
/* Working time (ms) of calendar c in [from_ms, to_ms); 0 when to_ms <= from_ms. */
int64_t cd_calendar_working_ms(const struct cd_calendar *c, int64_t from_ms, int64_t to_ms);
/* The instant at which work_ms of working time of c has passed after from_ms (from_ms itself
 * when work_ms is 0). Errors: CD_ERR_INVALID (no working time within ten years). */
enum cd_err cd_calendar_add_working(const struct cd_calendar *c, int64_t from_ms, int64_t work_ms,
                                    int64_t *out_ms);

#endif
