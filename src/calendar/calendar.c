/* Business calendars: loading them from YAML, and the arithmetic of periods and working time.
 * Every walk over days is bounded (CAL_MAX_DAYS), so a calendar whose holidays or hours leave
 * no working day cannot make a deadline loop forever. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>
#include "calendar_int.h"

#define CAL_MAX_DAYS 3660           /* ten years: the longest walk over days */
#define CAL_MAX_FILE (1024 * 1024)  /* one calendar file */
#define CAL_MAX_HOLIDAYS 4096
#define MINUTES_PER_DAY 1440

static const char *const wday_keys[7] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

/* ---- the set --------------------------------------------------------------------------- */

static void calendar_free(struct cd_calendar *c)
{
    if (c == NULL)
        return;
    cd_tz_free(c->tz);
    cd_free(c->holidays);
    cd_free(c);
}

static enum cd_err set_push(struct cd_calendars *set, struct cd_calendar *c)
{
    if (set->n == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 8;
        struct cd_calendar **items = cd_realloc(set->items, cap * sizeof *items);
        if (items == NULL)
            return CD_ERR_NOMEM;
        set->items = items;
        set->cap = cap;
    }
    set->items[set->n++] = c;
    return CD_OK;
}

enum cd_err cd_calendars_new(struct cd_calendars **out)
{
    struct cd_calendars *set = cd_calloc(1, sizeof *set);
    struct cd_calendar *always = cd_calloc(1, sizeof *always);

    if (set == NULL || always == NULL || set_push(set, always) != CD_OK) {
        cd_free(always);
        cd_calendars_free(set);
        return CD_ERR_NOMEM;
    }
    snprintf(always->id, sizeof always->id, "24x7");
    snprintf(always->name, sizeof always->name, "Every hour of every day (UTC)");
    for (int d = 0; d < 7; d++) {
        always->ranges[d][0][0] = 0;
        always->ranges[d][0][1] = MINUTES_PER_DAY;
        always->nranges[d] = 1;
    }
    *out = set;
    return CD_OK;
}

void cd_calendars_free(struct cd_calendars *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->n; i++)
        calendar_free(set->items[i]);
    cd_free(set->items);
    cd_free(set);
}

const struct cd_calendar *cd_calendars_find(const struct cd_calendars *set, struct cd_str id)
{
    for (size_t i = 0; i < set->n; i++)
        if (cd_str_eq_c(id, set->items[i]->id))
            return set->items[i];
    return NULL;
}

size_t cd_calendars_count(const struct cd_calendars *set)
{
    return set->n;
}

const struct cd_calendar *cd_calendars_at(const struct cd_calendars *set, size_t i)
{
    return i < set->n ? set->items[i] : NULL;
}

const char *cd_calendar_id(const struct cd_calendar *c)
{
    return c->id;
}

const char *cd_calendar_name(const struct cd_calendar *c)
{
    return c->name;
}

const struct cd_tz *cd_calendar_tz(const struct cd_calendar *c)
{
    return c->tz;
}

int32_t cd_calendar_holidays_until(const struct cd_calendar *c)
{
    return c->holidays_until;
}

enum cd_err cd_calendar_json(const struct cd_calendar *c, json_t **out)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:i,s:o,s:o}", "id", c->id, "name", c->name, "time_zone",
                          cd_tz_name(c->tz), "holidays_until", (json_int_t)c->holidays_until,
                          "hours", json_object(), "holidays", json_array());
    json_t *hours = json_object_get(o, "hours"), *hols = json_object_get(o, "holidays");
    enum cd_err err = o ? CD_OK : CD_ERR_NOMEM;

    for (int d = 1; err == CD_OK && d <= 7; d++) { /* Monday first, as calendars are read */
        int w = d % 7;
        json_t *ranges = json_array();
        for (int r = 0; ranges && r < c->nranges[w]; r++) {
            char text[16];
            snprintf(text, sizeof text, "%02d:%02d-%02d:%02d", c->ranges[w][r][0] / 60,
                     c->ranges[w][r][0] % 60, c->ranges[w][r][1] / 60, c->ranges[w][r][1] % 60);
            if (json_array_append_new(ranges, json_string(text)) != 0) {
                json_decref(ranges);
                ranges = NULL;
            }
        }
        err = ranges ? cd_json_set_new(hours, wday_keys[w], ranges) : CD_ERR_NOMEM;
    }
    for (size_t i = 0; err == CD_OK && i < c->nholidays; i++) {
        int32_t y;
        int m, d;
        char date[16];
        cd_civil_from_days(c->holidays[i].day, &y, &m, &d);
        snprintf(date, sizeof date, "%04d-%02d-%02d", (int)y, m, d);
        if (json_array_append_new(hols, json_pack("{s:s,s:s}", "date", date, "name",
                                                  c->holidays[i].name)) != 0)
            err = CD_ERR_NOMEM;
    }
    if (err != CD_OK) {
        json_decref(o);
        return CD_ERR_NOMEM;
    }
    *out = o;
    return CD_OK;
}

/* ---- loading ------------------------------------------------------------------------------ */

struct load {
    struct cd_calendar *c;
    const struct cd_calendars *set;
    bool day_set[7];
    int day; /* the weekday whose ranges are being read */
    struct cd_str holiday_name;
    int64_t holiday_day;
};

static enum cd_err copy_text(const struct cd_yaml *y, yaml_node_t *v, const char *what, char *out,
                             size_t cap)
{
    struct cd_str s;
    enum cd_err err = cd_yaml_str(y, v, what, cap - 1, &s);

    if (err == CD_OK) {
        memcpy(out, s.p, s.len);
        out[s.len] = '\0';
    }
    return err;
}

static enum cd_err key_id(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                         void *ctx)
{
    struct load *l = ctx;
    enum cd_err err = copy_text(y, v, "id", l->c->id, sizeof l->c->id);

    if (err != CD_OK)
        return err;
    for (const char *p = l->c->id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
            return cd_yaml_bad(y, v, "id must use only a-z, 0-9, '-' and '_'");
    if (cd_calendars_find(l->set, cd_str_c(l->c->id)) != NULL)
        return cd_yaml_bad(y, v, "a calendar with this id is already loaded");
    return CD_OK;
}

static enum cd_err key_name(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                         void *ctx)
{
    struct load *l = ctx;
    return copy_text(y, v, "name", l->c->name, sizeof l->c->name);
}

static enum cd_err key_tz(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                         void *ctx)
{
    struct load *l = ctx;
    struct cd_str s;
    enum cd_err err = cd_yaml_str(y, v, "time_zone", CD__TZ_NAME_MAX - 1, &s);

    if (err != CD_OK)
        return err;
    if ((err = cd_tz_load(s, &l->c->tz)) != CD_OK) {
        if (err == CD_ERR_NOMEM)
            return err;
        char msg[160];
        snprintf(msg, sizeof msg, "time_zone: %s", cd_err_detail());
        return cd_yaml_bad(y, v, msg);
    }
    return CD_OK;
}

/* "HH:MM" with HH 00..24 (24:00 only as an end), into minutes after midnight. */
static bool hhmm(const char *p, int *out)
{
    if (p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9' || p[2] != ':' || p[3] < '0' ||
        p[3] > '5' || p[4] < '0' || p[4] > '9')
        return false;
    int h = (p[0] - '0') * 10 + (p[1] - '0'), m = (p[3] - '0') * 10 + (p[4] - '0');
    if (h > 24 || (h == 24 && m != 0))
        return false;
    *out = h * 60 + m;
    return true;
}

static enum cd_err range_item(const struct cd_yaml *y, yaml_node_t *v, size_t i, void *ctx)
{
    struct load *l = ctx;
    struct cd_str s = cd_yaml_scalar(v);
    int a, b;
    uint8_t *n = &l->c->nranges[l->day];

    if (s.p == NULL || s.len != 11 || s.p[5] != '-' || !hhmm(s.p, &a) || !hhmm(s.p + 6, &b) ||
        a >= b)
        return cd_yaml_bad(y, v, "working hours must be ranges \"HH:MM-HH:MM\" (end after start, "
                                 "24:00 at most)");
    if (*n == CD_CALENDAR_MAX_RANGES)
        return cd_yaml_bad(y, v, "at most " CD_XSTR(CD_CALENDAR_MAX_RANGES)
                                 " working-hour ranges per day");
    /* Kept sorted; an overlap with a neighbour is a mistake worth naming. */
    size_t at = *n;
    while (at > 0 && l->c->ranges[l->day][at - 1][0] > a)
        at--;
    if ((at > 0 && l->c->ranges[l->day][at - 1][1] > a) ||
        (at < *n && l->c->ranges[l->day][at][0] < b))
        return cd_yaml_bad(y, v, "working-hour ranges of one day overlap");
    memmove(&l->c->ranges[l->day][at + 1], &l->c->ranges[l->day][at],
            (*n - at) * sizeof l->c->ranges[l->day][0]);
    l->c->ranges[l->day][at][0] = (uint16_t)a;
    l->c->ranges[l->day][at][1] = (uint16_t)b;
    (*n)++;
    (void)i;
    return CD_OK;
}

static enum cd_err day_ranges(const struct cd_yaml *y, yaml_node_t *v, struct load *l, int day,
                              const char *what)
{
    if (l->day_set[day]) {
        char msg[96];
        snprintf(msg, sizeof msg, "the hours of '%s' are given twice (weekdays covers mon-fri)",
                 wday_keys[day]);
        return cd_yaml_bad(y, v, msg);
    }
    l->day_set[day] = true;
    l->day = day;
    return cd_yaml_seq(y, v, what, range_item, l);
}

static enum cd_err key_day(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                           void *ctx)
{
    return day_ranges(y, v, ctx, (int)k->arg, "the hours of a day");
}

static enum cd_err key_weekdays(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                         void *ctx)
{
    enum cd_err err;

    for (int d = 1; d <= 5; d++)
        if ((err = day_ranges(y, v, ctx, d, "weekdays")) != CD_OK)
            return err;
    return CD_OK;
}

static enum cd_err key_hours(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                         void *ctx)
{
    static const struct cd_yaml_key keys[] = {
        {"weekdays", false, key_weekdays, 0}, {"mon", false, key_day, 1},
        {"tue", false, key_day, 2},           {"wed", false, key_day, 3},
        {"thu", false, key_day, 4},           {"fri", false, key_day, 5},
        {"sat", false, key_day, 6},           {"sun", false, key_day, 0},
    };
    struct load *l = ctx;
    enum cd_err err = cd_yaml_map(y, v, "hours", keys, sizeof keys / sizeof keys[0], ctx);

    if (err != CD_OK)
        return err;
    for (int d = 0; d < 7; d++)
        if (l->c->nranges[d])
            return CD_OK;
    return cd_yaml_bad(y, v, "hours give no working time on any day");
}

static enum cd_err hol_date(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                         void *ctx)
{
    struct load *l = ctx;
    struct cd_str s = cd_yaml_scalar(v);
    int32_t yr = 0;
    int mo = 0, dy = 0;
    bool ok = s.p != NULL && s.len == 10 && s.p[4] == '-' && s.p[7] == '-';

    for (size_t i = 0; ok && i < 10; i++)
        if (i != 4 && i != 7 && (s.p[i] < '0' || s.p[i] > '9'))
            ok = false;
    if (ok) {
        yr = (s.p[0] - '0') * 1000 + (s.p[1] - '0') * 100 + (s.p[2] - '0') * 10 + (s.p[3] - '0');
        mo = (s.p[5] - '0') * 10 + (s.p[6] - '0');
        dy = (s.p[8] - '0') * 10 + (s.p[9] - '0');
        ok = cd_civil_valid(yr, mo, dy);
    }
    if (!ok)
        return cd_yaml_bad(y, v, "a holiday's date must be a real date YYYY-MM-DD");
    l->holiday_day = cd_days_from_civil(yr, mo, dy);
    return CD_OK;
}

static enum cd_err hol_name(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                         void *ctx)
{
    struct load *l = ctx;
    return cd_yaml_str(y, v, "a holiday's name", sizeof l->c->holidays[0].name - 1,
                       &l->holiday_name);
}

static int cmp_holiday(const void *a, const void *b)
{
    int64_t x = ((const struct cd__holiday *)a)->day, y = ((const struct cd__holiday *)b)->day;
    return (x > y) - (x < y);
}

static enum cd_err holiday_item(const struct cd_yaml *y, yaml_node_t *v, size_t i, void *ctx)
{
    static const struct cd_yaml_key keys[] = {{"date", true, hol_date, 0},
                                              {"name", true, hol_name, 0}};
    struct load *l = ctx;
    struct cd_calendar *c = l->c;
    enum cd_err err = cd_yaml_map(y, v, "a holiday", keys, 2, ctx);

    if (err != CD_OK)
        return err;
    for (size_t j = 0; j < c->nholidays; j++)
        if (c->holidays[j].day == l->holiday_day)
            return cd_yaml_bad(y, v, "this date is listed twice");
    struct cd__holiday *h = &c->holidays[c->nholidays++];
    h->day = l->holiday_day;
    memcpy(h->name, l->holiday_name.p, l->holiday_name.len);
    h->name[l->holiday_name.len] = '\0';
    int32_t yr;
    int mo, dy;
    cd_civil_from_days(h->day, &yr, &mo, &dy);
    if (yr > c->holidays_until)
        c->holidays_until = yr;
    (void)i;
    return CD_OK;
}

static enum cd_err key_holidays(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                         void *ctx)
{
    struct load *l = ctx;
    size_t n = v && v->type == YAML_SEQUENCE_NODE
                   ? (size_t)(v->data.sequence.items.top - v->data.sequence.items.start)
                   : 0;
    enum cd_err err;

    if (n > CAL_MAX_HOLIDAYS)
        return cd_yaml_bad(y, v, "at most " CD_XSTR(CAL_MAX_HOLIDAYS) " holidays");
    if (n && (l->c->holidays = cd_calloc(n, sizeof *l->c->holidays)) == NULL)
        return CD_ERR_NOMEM;
    if ((err = cd_yaml_seq(y, v, "holidays", holiday_item, l)) != CD_OK)
        return err;
    qsort(l->c->holidays, l->c->nholidays, sizeof *l->c->holidays, cmp_holiday);
    return CD_OK;
}

enum cd_err cd_calendars_add_yaml(struct cd_calendars *set, const char *name, const char *data,
                                  size_t len)
{
    static const struct cd_yaml_key keys[] = {
        {"id", true, key_id, 0},         {"name", true, key_name, 0},
        {"time_zone", true, key_tz, 0},   {"hours", true, key_hours, 0},
        {"holidays", false, key_holidays, 0},
    };
    struct cd_yaml y = {0};
    struct load l = {.set = set};
    enum cd_err err;

    if ((l.c = cd_calloc(1, sizeof *l.c)) == NULL)
        return CD_ERR_NOMEM;
    if ((err = cd_yaml_parse(&y, name, data, len)) != CD_OK ||
        (err = cd_yaml_map(&y, cd_yaml_root(&y), "a calendar", keys, sizeof keys / sizeof keys[0],
                           &l)) != CD_OK ||
        (err = set_push(set, l.c)) != CD_OK)
        goto out;
    l.c = NULL;
out:
    cd_yaml_free(&y);
    calendar_free(l.c);
    return err;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

enum cd_err cd_calendars_load_dir(struct cd_calendars *set, const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char **names = NULL;
    size_t n = 0, cap = 0;
    enum cd_err err = CD_OK;

    if (d == NULL)
        return CD_OK; /* no calendars beyond the built-in one */
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len <= 5 || e->d_name[0] == '.' || strcmp(e->d_name + len - 5, ".yaml") != 0)
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char **nn = cd_realloc(names, ncap * sizeof *nn);
            if (nn == NULL) {
                err = CD_ERR_NOMEM;
                goto out;
            }
            names = nn;
            cap = ncap;
        }
        if ((names[n] = cd_strdup(e->d_name)) == NULL) {
            err = CD_ERR_NOMEM;
            goto out;
        }
        n++;
    }
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n && err == CD_OK; i++) {
        char path[CD_PATH_MAX];
        struct cd_buf b = CD_BUF_INIT(CAL_MAX_FILE);
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if ((err = cd_buf_read_file(&b, path)) == CD_OK)
            err = cd_calendars_add_yaml(set, path, b.p, b.len);
        cd_buf_free(&b);
    }
out:
    for (size_t i = 0; i < n; i++)
        cd_free(names[i]);
    cd_free(names);
    closedir(d);
    return err;
}

/* ---- days ------------------------------------------------------------------------------- */

const char *cd_calendar_holiday(const struct cd_calendar *c, int64_t days)
{
    size_t lo = 0, hi = c->nholidays;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->holidays[mid].day < days)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < c->nholidays && c->holidays[lo].day == days ? c->holidays[lo].name : NULL;
}

bool cd_calendar_is_business_day(const struct cd_calendar *c, int64_t days)
{
    return c->nranges[cd_weekday(days)] > 0 && cd_calendar_holiday(c, days) == NULL;
}

/* ---- periods ------------------------------------------------------------------------------ */

static const struct {
    const char *one, *many;
    enum cd_period_unit unit, business;
} units[] = {
    {"minute", "minutes", CD_PERIOD_MINUTES, CD_PERIOD_BUSINESS_MINUTES},
    {"hour", "hours", CD_PERIOD_HOURS, CD_PERIOD_BUSINESS_HOURS},
    {"day", "days", CD_PERIOD_DAYS, CD_PERIOD_BUSINESS_DAYS},
    {"week", "weeks", CD_PERIOD_WEEKS, CD_PERIOD_WEEKS},
    {"month", "months", CD_PERIOD_MONTHS, CD_PERIOD_MONTHS},
};

enum cd_err cd_period_parse(struct cd_str s, struct cd_period *out)
{
    size_t i = 0;
    int64_t n = 0;
    bool business = false;

    while (i < s.len && s.p[i] >= '0' && s.p[i] <= '9' && n <= 100000)
        n = n * 10 + (s.p[i++] - '0');
    if (i == 0 || n > 100000 || i >= s.len || s.p[i] != ' ')
        goto bad;
    struct cd_str rest = {s.p + i + 1, s.len - i - 1};
    if (rest.len > 9 && memcmp(rest.p, "business ", 9) == 0) {
        business = true;
        rest.p += 9;
        rest.len -= 9;
    }
    for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
        if (!cd_str_eq_c(rest, units[u].one) && !cd_str_eq_c(rest, units[u].many))
            continue;
        if (business && units[u].business == units[u].unit)
            goto bad; /* no "business weeks" or "business months" */
        *out = (struct cd_period){business ? units[u].business : units[u].unit, (int32_t)n, false};
        return CD_OK;
    }
bad:
    return cd_err_set(CD_ERR_INVALID, "a period is \"N minutes|hours|days|weeks|months\" or "
                                      "\"N business minutes|hours|days\" (N from 0 to 100000)");
}

void cd_period_format(const struct cd_period *p, char *out, size_t n)
{
    for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
        bool business = p->unit == units[u].business && units[u].business != units[u].unit;
        if (p->unit != units[u].unit && !business)
            continue;
        snprintf(out, n, "%d %s%s", (int)p->n, business ? "business " : "",
                 p->n == 1 ? units[u].one : units[u].many);
        return;
    }
    snprintf(out, n, "?");
}

/* ---- working time ------------------------------------------------------------------------- */

int64_t cd_calendar_working_ms(const struct cd_calendar *c, int64_t from_ms, int64_t to_ms)
{
    int64_t total = 0;

    if (to_ms <= from_ms)
        return 0;
    int64_t last = cd_tz_day(c->tz, to_ms - 1);
    for (int64_t d = cd_tz_day(c->tz, from_ms); d <= last; d++) {
        if (!cd_calendar_is_business_day(c, d))
            continue;
        int w = cd_weekday(d);
        for (int r = 0; r < c->nranges[w]; r++) {
            int64_t s = cd_tz_instant(c->tz, d, c->ranges[w][r][0]);
            int64_t e = cd_tz_instant(c->tz, d, c->ranges[w][r][1]);
            if (s < from_ms)
                s = from_ms;
            if (e > to_ms)
                e = to_ms;
            if (e > s)
                total += e - s;
        }
    }
    return total;
}

enum cd_err cd_calendar_add_working(const struct cd_calendar *c, int64_t from_ms, int64_t work_ms,
                                    int64_t *out_ms)
{
    int64_t left = work_ms;

    if (work_ms <= 0) {
        *out_ms = from_ms;
        return CD_OK;
    }
    int64_t d = cd_tz_day(c->tz, from_ms);
    for (int64_t k = 0; k < CAL_MAX_DAYS; k++, d++) {
        if (!cd_calendar_is_business_day(c, d))
            continue;
        int w = cd_weekday(d);
        for (int r = 0; r < c->nranges[w]; r++) {
            int64_t s = cd_tz_instant(c->tz, d, c->ranges[w][r][0]);
            int64_t e = cd_tz_instant(c->tz, d, c->ranges[w][r][1]);
            if (s < from_ms)
                s = from_ms;
            if (e <= s)
                continue;
            if (e - s >= left) {
                *out_ms = s + left;
                return CD_OK;
            }
            left -= e - s;
        }
    }
    return cd_err_set(CD_ERR_INVALID, "calendar '%s' has no working time within ten years",
                      c->id);
}

/* ---- deadlines ---------------------------------------------------------------------------- */

static enum cd_err next_business_day(const struct cd_calendar *c, int64_t *day)
{
    for (int64_t k = 0; k < CAL_MAX_DAYS; k++, (*day)++)
        if (cd_calendar_is_business_day(c, *day))
            return CD_OK;
    return cd_err_set(CD_ERR_INVALID, "calendar '%s' has no business day within ten years", c->id);
}

enum cd_err cd_calendar_period_end(const struct cd_calendar *c, int64_t start_ms,
                                   const struct cd_period *p, int64_t *end_ms)
{
    int64_t first = cd_tz_day(c->tz, start_ms), last = first;
    enum cd_err err;

    switch (p->unit) {
    case CD_PERIOD_MINUTES:
        *end_ms = start_ms + (int64_t)p->n * 60000;
        return CD_OK;
    case CD_PERIOD_HOURS:
        *end_ms = start_ms + (int64_t)p->n * 3600000;
        return CD_OK;
    case CD_PERIOD_BUSINESS_MINUTES:
        return cd_calendar_add_working(c, start_ms, (int64_t)p->n * 60000, end_ms);
    case CD_PERIOD_BUSINESS_HOURS:
        return cd_calendar_add_working(c, start_ms, (int64_t)p->n * 3600000, end_ms);
    case CD_PERIOD_DAYS:
        last = first + p->n;
        break;
    case CD_PERIOD_WEEKS:
        last = first + (int64_t)p->n * 7;
        break;
    case CD_PERIOD_MONTHS: {
        int32_t y;
        int m, d;
        cd_civil_from_days(first, &y, &m, &d);
        int64_t months = (int64_t)y * 12 + (m - 1) + p->n;
        y = (int32_t)(months / 12);
        m = (int)(months % 12) + 1;
        int dim = cd_days_in_month(y, m);
        last = cd_days_from_civil(y, m, d > dim ? dim : d);
        break;
    }
    case CD_PERIOD_BUSINESS_DAYS:
        for (int32_t k = 0; k < p->n; k++) {
            last++;
            if ((err = next_business_day(c, &last)) != CD_OK)
                return err;
        }
        break;
    }
    if (p->roll_to_business_day && (err = next_business_day(c, &last)) != CD_OK)
        return err;
    /* The period ends when its last day does: at the next local midnight. */
    *end_ms = cd_tz_instant(c->tz, last + 1, 0);
    return CD_OK;
}
