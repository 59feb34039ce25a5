/* Inside the calendar module only: the layout of zones and calendars. */
#ifndef CD_CALENDAR_INT_H
#define CD_CALENDAR_INT_H

#include "calendar.h"

#define CD__TZ_NAME_MAX 64

/* A date rule of a POSIX TZ string: Jn (1..365, no February 29), n (0..365) or Mm.w.d. */
struct cd__tz_rule {
    char kind; /* 'J', 'N' or 'M' */
    int yday, month, week, wday;
    int32_t time; /* seconds after local midnight */
};

/* A zone: the transitions of its TZif file, then the footer's rule for what follows. */
struct cd_tz {
    char name[CD__TZ_NAME_MAX];
    int64_t *at;  /* transition instants, seconds, ascending */
    int32_t *off; /* the offset in force from at[i] */
    size_t n;
    int32_t off0; /* before the first transition */
    bool has_rule, has_dst;
    int32_t std_off, dst_off;
    struct cd__tz_rule start, end;
};

struct cd__holiday {
    int64_t day; /* local days since 1970-01-01 */
    char name[64];
};

struct cd_calendar {
    char id[CD_CALENDAR_ID_MAX];
    char name[96];
    struct cd_tz *tz; /* NULL: UTC */
    /* Working minutes per weekday (0 Sunday): [start, end) after local midnight, sorted and
     * disjoint. */
    uint16_t ranges[7][CD_CALENDAR_MAX_RANGES][2];
    uint8_t nranges[7];
    struct cd__holiday *holidays; /* sorted by day, no repeats */
    size_t nholidays;
    int32_t holidays_until;
};

struct cd_calendars {
    struct cd_calendar **items;
    size_t n, cap;
};

#endif
