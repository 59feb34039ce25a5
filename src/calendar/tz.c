/* Time zones without touching the process: a reader of TZif v2+ files from /usr/share/zoneinfo
 * (RFC 8536) and of the POSIX TZ rule in their footer, which says what holds after the last
 * listed transition (zic writes "slim" files that list only a few years and rely on it).
 * Why not tzset/localtime_r: they read the process-wide TZ, which request threads share; and the
 * system's zoneinfo, unlike a library's bundled copy, is what the operator keeps up to date. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "calendar_int.h"

#define TZ_MAX_FILE (512 * 1024)

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

/* Zone names are paths under /usr/share/zoneinfo: letters, digits, "_+-/" and no "..". */
static bool name_ok(struct cd_str n)
{
    if (n.len == 0 || n.len >= CD__TZ_NAME_MAX || n.p[0] == '/' || n.p[0] == '.')
        return false;
    for (size_t i = 0; i < n.len; i++) {
        char ch = n.p[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '+' || ch == '-' || ch == '/'))
            return false;
        if (ch == '/' && i + 1 < n.len && n.p[i + 1] == '.')
            return false;
    }
    return true;
}

/* ---- the POSIX TZ rule (RFC 8536 section 3.3, POSIX.1-2017 section 8.3) -------------------- */

struct rd {
    const char *p, *end;
};

static bool rd_digits(struct rd *r, int max_digits, int *out)
{
    int v = 0, n = 0;

    while (r->p < r->end && *r->p >= '0' && *r->p <= '9' && n < max_digits) {
        v = v * 10 + (*r->p++ - '0');
        n++;
    }
    *out = v;
    return n > 0;
}

static bool rd_name(struct rd *r)
{
    size_t n = 0;

    if (r->p < r->end && *r->p == '<') {
        r->p++;
        while (r->p < r->end && *r->p != '>') {
            r->p++;
            n++;
        }
        if (r->p == r->end)
            return false;
        r->p++;
        return n >= 3;
    }
    while (r->p < r->end && ((*r->p >= 'A' && *r->p <= 'Z') || (*r->p >= 'a' && *r->p <= 'z'))) {
        r->p++;
        n++;
    }
    return n >= 3;
}

/* [+-]hh[:mm[:ss]] in seconds; hours up to 167 (RFC 8536 allows it for rule times). */
static bool rd_hms(struct rd *r, int32_t *out)
{
    int sign = 1, h = 0, m = 0, s = 0;

    if (r->p < r->end && (*r->p == '+' || *r->p == '-'))
        sign = *r->p++ == '-' ? -1 : 1;
    if (!rd_digits(r, 3, &h) || h > 167)
        return false;
    if (r->p < r->end && *r->p == ':') {
        r->p++;
        if (!rd_digits(r, 2, &m) || m > 59)
            return false;
        if (r->p < r->end && *r->p == ':') {
            r->p++;
            if (!rd_digits(r, 2, &s) || s > 59)
                return false;
        }
    }
    *out = sign * (h * 3600 + m * 60 + s);
    return true;
}

static bool rd_rule(struct rd *r, struct cd__tz_rule *x)
{
    int a = 0, b = 0, c = 0;

    if (r->p < r->end && *r->p == 'M') {
        r->p++;
        if (!rd_digits(r, 2, &a) || r->p >= r->end || *r->p++ != '.' || !rd_digits(r, 1, &b) ||
            r->p >= r->end || *r->p++ != '.' || !rd_digits(r, 1, &c) || a < 1 || a > 12 ||
            b < 1 || b > 5 || c > 6)
            return false;
        x->kind = 'M';
        x->month = a;
        x->week = b;
        x->wday = c;
    } else if (r->p < r->end && *r->p == 'J') {
        r->p++;
        if (!rd_digits(r, 3, &a) || a < 1 || a > 365)
            return false;
        x->kind = 'J';
        x->yday = a;
    } else {
        if (!rd_digits(r, 3, &a) || a > 365)
            return false;
        x->kind = 'N';
        x->yday = a;
    }
    x->time = 7200;
    if (r->p < r->end && *r->p == '/') {
        r->p++;
        if (!rd_hms(r, &x->time))
            return false;
    }
    return true;
}

/* Parses the footer "std offset [dst [offset] [,start[/time],end[/time]]]". POSIX offsets are
 * positive west of Greenwich; ours are seconds east. */
static bool parse_rule(const char *p, size_t n, struct cd_tz *tz)
{
    struct rd r = {p, p + n};
    int32_t off;

    if (n == 0 || !rd_name(&r) || !rd_hms(&r, &off))
        return false;
    tz->std_off = -off;
    tz->has_rule = true;
    if (r.p == r.end)
        return true;
    if (!rd_name(&r))
        return false;
    tz->dst_off = tz->std_off + 3600;
    if (r.p < r.end && *r.p != ',') {
        if (!rd_hms(&r, &off))
            return false;
        tz->dst_off = -off;
    }
    /* Without rules, POSIX leaves the dates to the implementation; TZif footers always have
     * them, so refuse the rest rather than guess. */
    if (r.p >= r.end || *r.p++ != ',' || !rd_rule(&r, &tz->start) || r.p >= r.end ||
        *r.p++ != ',' || !rd_rule(&r, &tz->end) || r.p != r.end)
        return false;
    tz->has_dst = true;
    return true;
}

/* The local day, in year y, on which rule x falls. */
static int64_t rule_day(const struct cd__tz_rule *x, int32_t y)
{
    int64_t jan1 = cd_days_from_civil(y, 1, 1);
    bool leap = cd_days_in_month(y, 2) == 29;

    switch (x->kind) {
    case 'J': /* 1..365, February 29 never counted */
        return jan1 + x->yday - 1 + (leap && x->yday >= 60 ? 1 : 0);
    case 'N': /* 0..365, February 29 counted */
        return jan1 + x->yday;
    default: { /* Mm.w.d: day d of week w (5 = the last) of month m */
        int64_t first = cd_days_from_civil(y, x->month, 1);
        int64_t day = first + (x->wday - cd_weekday(first) + 7) % 7 + (int64_t)(x->week - 1) * 7;
        int64_t next = first + cd_days_in_month(y, x->month);
        while (day >= next)
            day -= 7;
        return day;
    }
    }
}

static int32_t rule_offset(const struct cd_tz *tz, int64_t utc_s)
{
    if (!tz->has_dst)
        return tz->std_off;
    int64_t local_days = (utc_s + tz->std_off) / 86400 - ((utc_s + tz->std_off) % 86400 < 0);
    int32_t y;
    int m, d;
    cd_civil_from_days(local_days, &y, &m, &d);
    /* The start is given in standard time, the end in daylight time. */
    int64_t start = rule_day(&tz->start, y) * 86400 + tz->start.time - tz->std_off;
    int64_t end = rule_day(&tz->end, y) * 86400 + tz->end.time - tz->dst_off;
    bool dst = start < end ? (utc_s >= start && utc_s < end) : !(utc_s >= end && utc_s < start);
    return dst ? tz->dst_off : tz->std_off;
}

/* ---- the TZif file ------------------------------------------------------------------------ */

struct hdr {
    uint32_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
};

static bool read_hdr(const unsigned char *p, size_t len, struct hdr *h)
{
    if (len < 44 || memcmp(p, "TZif", 4) != 0)
        return false;
    h->isutcnt = be32(p + 20);
    h->isstdcnt = be32(p + 24);
    h->leapcnt = be32(p + 28);
    h->timecnt = be32(p + 32);
    h->typecnt = be32(p + 36);
    h->charcnt = be32(p + 40);
    return h->typecnt > 0 && h->typecnt <= 256 && h->timecnt <= 100000 && h->leapcnt <= 10000;
}

static size_t block_len(const struct hdr *h, size_t tsize)
{
    return (size_t)h->timecnt * tsize + h->timecnt + (size_t)h->typecnt * 6 + h->charcnt +
           (size_t)h->leapcnt * (tsize + 4) + h->isstdcnt + h->isutcnt;
}

static enum cd_err parse(const unsigned char *p, size_t len, struct cd_tz *tz)
{
    struct hdr h;
    size_t off;

    if (!read_hdr(p, len, &h) || p[4] < '2')
        return cd_err_set(CD_ERR_INVALID, "not a TZif v2+ file");
    off = 44 + block_len(&h, 4); /* skip the 32-bit block */
    if (off > len || !read_hdr(p + off, len - off, &h))
        return cd_err_set(CD_ERR_INVALID, "truncated TZif file");
    p += off + 44;
    len -= off + 44;
    size_t blen = block_len(&h, 8);
    if (blen > len)
        return cd_err_set(CD_ERR_INVALID, "truncated TZif file");
    const unsigned char *times = p, *idx = p + (size_t)h.timecnt * 8,
                        *types = idx + h.timecnt;
    for (uint32_t i = 0; i < h.timecnt; i++)
        if (idx[i] >= h.typecnt)
            return cd_err_set(CD_ERR_INVALID, "bad TZif type index");
    if (h.timecnt) {
        tz->at = cd_calloc(h.timecnt, sizeof *tz->at);
        tz->off = cd_calloc(h.timecnt, sizeof *tz->off);
        if (tz->at == NULL || tz->off == NULL)
            return CD_ERR_NOMEM;
    }
    for (uint32_t i = 0; i < h.timecnt; i++) {
        tz->at[i] = be64(times + 8 * i);
        tz->off[i] = (int32_t)be32(types + 6 * idx[i]);
        if (i && tz->at[i] <= tz->at[i - 1])
            return cd_err_set(CD_ERR_INVALID, "TZif transitions out of order");
    }
    tz->n = h.timecnt;
    /* RFC 8536 3.2: before the first transition, the first type applies. */
    tz->off0 = (int32_t)be32(types);
    /* The footer: "\n<rule>\n" right after the v2 data block. */
    const unsigned char *foot = p + blen, *end = p + len;
    if (foot < end && *foot == '\n') {
        const unsigned char *nl = memchr(foot + 1, '\n', (size_t)(end - foot - 1));
        if (nl && nl > foot + 1 && !parse_rule((const char *)foot + 1, (size_t)(nl - foot - 1), tz))
            return cd_err_set(CD_ERR_INVALID, "unsupported TZif footer rule");
    }
    return CD_OK;
}

enum cd_err cd_tz_load(struct cd_str name, struct cd_tz **out)
{
    char path[128];
    unsigned char *buf = NULL;
    struct cd_tz *tz = NULL;
    FILE *f = NULL;
    size_t len = 0;
    enum cd_err err = CD_OK;

    if (!name_ok(name))
        return cd_err_set(CD_ERR_INVALID, "'%.*s' is not an IANA time zone name",
                          (int)(name.len > 60 ? 60 : name.len), name.p ? name.p : "");
    snprintf(path, sizeof path, "/usr/share/zoneinfo/%.*s", (int)name.len, name.p);
    if ((f = fopen(path, "rb")) == NULL) {
        err = cd_err_set(errno == ENOENT || errno == EISDIR ? CD_ERR_NOT_FOUND : CD_ERR_IO,
                         "unknown time zone '%.*s'", (int)name.len, name.p);
        goto out;
    }
    if ((buf = cd_malloc(TZ_MAX_FILE)) == NULL || (tz = cd_calloc(1, sizeof *tz)) == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    memcpy(tz->name, name.p, name.len);
    tz->name[name.len] = '\0';
    len = fread(buf, 1, TZ_MAX_FILE, f);
    if ((err = parse(buf, len, tz)) != CD_OK)
        goto out;
    *out = tz;
    tz = NULL;
out:
    if (f)
        fclose(f);
    cd_free(buf);
    cd_tz_free(tz);
    return err;
}

void cd_tz_free(struct cd_tz *tz)
{
    if (tz == NULL)
        return;
    cd_free(tz->at);
    cd_free(tz->off);
    cd_free(tz);
}

const char *cd_tz_name(const struct cd_tz *tz)
{
    return tz ? tz->name : "UTC";
}

int32_t cd_tz_offset(const struct cd_tz *tz, int64_t utc_s)
{
    size_t lo = 0, hi = tz->n;

    if (tz->n == 0)
        return tz->has_rule ? rule_offset(tz, utc_s) : tz->off0;
    if (utc_s < tz->at[0])
        return tz->off0;
    if (utc_s >= tz->at[tz->n - 1] && tz->has_rule)
        return rule_offset(tz, utc_s);
    /* The last transition at or before utc_s. */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (tz->at[mid] <= utc_s)
            lo = mid;
        else
            hi = mid;
    }
    return tz->off[lo];
}

/* ---- civil dates (H. Hinnant's days_from_civil and civil_from_days) ------------------------ */

int64_t cd_days_from_civil(int32_t year, int month, int day)
{
    int64_t y = (int64_t)year - (month <= 2);
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void cd_civil_from_days(int64_t days, int32_t *year, int *month, int *day)
{
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int d = (int)(doy - (153 * mp + 2) / 5 + 1);
    int m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *year = (int32_t)(yoe + era * 400 + (m <= 2));
    *month = m;
    *day = d;
}

int cd_days_in_month(int32_t year, int month)
{
    static const int len[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

    return month == 2 && leap ? 29 : len[month - 1];
}

bool cd_civil_valid(int32_t year, int month, int day)
{
    return year >= 1 && year <= 9999 && month >= 1 && month <= 12 && day >= 1 &&
           day <= cd_days_in_month(year, month);
}

int cd_weekday(int64_t days)
{
    /* 1970-01-01 was a Thursday. */
    int64_t w = (days + 4) % 7;
    return (int)(w < 0 ? w + 7 : w);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

static int32_t offset_at_ms(const struct cd_tz *tz, int64_t ms)
{
    return tz ? cd_tz_offset(tz, floor_div(ms, 1000)) : 0;
}

void cd_tz_civil(const struct cd_tz *tz, int64_t ms, struct cd_civil *out)
{
    int64_t local = ms + (int64_t)offset_at_ms(tz, ms) * 1000;
    int64_t days = floor_div(local, 86400000);
    int64_t rest = local - days * 86400000;

    cd_civil_from_days(days, &out->year, &out->month, &out->day);
    out->hour = (int)(rest / 3600000);
    out->minute = (int)(rest / 60000 % 60);
    out->second = (int)(rest / 1000 % 60);
    out->ms = (int)(rest % 1000);
    out->wday = cd_weekday(days);
}

int64_t cd_tz_day(const struct cd_tz *tz, int64_t ms)
{
    return floor_div(ms + (int64_t)offset_at_ms(tz, ms) * 1000, 86400000);
}

int64_t cd_tz_instant(const struct cd_tz *tz, int64_t days, int minute)
{
    int64_t local_s = days * 86400 + (int64_t)minute * 60;

    if (tz == NULL)
        return local_s * 1000;
    /* The offsets a day before and after bracket any change near this local time. */
    int32_t before = cd_tz_offset(tz, local_s - 86400), after = cd_tz_offset(tz, local_s + 86400);
    int64_t early = local_s - (before > after ? before : after);
    int64_t late = local_s - (before > after ? after : before);
    if (cd_tz_offset(tz, early) == local_s - early)
        return early * 1000; /* exists (the earlier of two when clocks went back) */
    if (cd_tz_offset(tz, late) == local_s - late)
        return late * 1000;
    /* Skipped when clocks went forward: read with the offset in force before the change. */
    return (local_s - before) * 1000;
}
