/* Clocks and RFC 3339 timestamps. Civil-date arithmetic is done by hand (Howard Hinnant's
 * days_from_civil) so parsing never depends on the process time zone or locale. */
#define _POSIX_C_SOURCE 200809L
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include "base_testing.h"

/* Set only by cd_clock_override (testing.c); NULL in the candor binary. */
_Atomic(int64_t (*)(void)) cd__clock_fn;

int64_t cd_now_ms(void)
{
    struct timespec ts;
    int64_t (*fn)(void) = atomic_load_explicit(&cd__clock_fn, memory_order_relaxed);

    if (fn)
        return fn();
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t cd_mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* The n low decimal digits of v, zero-padded. */
static void put_digits(char *out, unsigned v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        out[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

void cd_time_format(int64_t ms, char out[CD_TIME_STRLEN])
{
    int64_t secs = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
    int64_t frac = ms - secs * 1000;
    int64_t days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
    int64_t sod = secs - days * 86400, y;
    unsigned m, d;

    civil_from_days(days, &y, &m, &d);
    if (y < 0 || y > 9999) /* outside RFC 3339's range: clamp rather than print garbage */
        y = y < 0 ? 0 : 9999;
    /* Digits written directly: a request formats three or four times (answer, log line), and
     * snprintf's format parsing cost more than the rest of this function together. */
    put_digits(out, (unsigned)y, 4);
    out[4] = '-';
    put_digits(out + 5, m, 2);
    out[7] = '-';
    put_digits(out + 8, d, 2);
    out[10] = 'T';
    put_digits(out + 11, (unsigned)(sod / 3600), 2);
    out[13] = ':';
    put_digits(out + 14, (unsigned)(sod / 60 % 60), 2);
    out[16] = ':';
    put_digits(out + 17, (unsigned)(sod % 60), 2);
    out[19] = '.';
    put_digits(out + 20, (unsigned)frac, 3);
    out[23] = 'Z';
    out[24] = '\0';
}

static bool digits(const char *p, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        *v = *v * 10 + (p[i] - '0');
    }
    return true;
}

enum cd_err cd_time_parse(struct cd_str s, int64_t *ms)
{
    const char *p = s.p, *end = s.p + s.len;
    int y, mo, d, h, mi, se, frac = 0, fdig = 0, oh = 0, om = 0, sign = 0;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    if (s.len < 20 || !digits(p, 4, &y) || p[4] != '-' || !digits(p + 5, 2, &mo) ||
        p[7] != '-' || !digits(p + 8, 2, &d) || (p[10] != 'T' && p[10] != 't') ||
        !digits(p + 11, 2, &h) || p[13] != ':' || !digits(p + 14, 2, &mi) || p[16] != ':' ||
        !digits(p + 17, 2, &se))
        goto bad;
    p += 19;
    if (p < end && *p == '.') {
        p++;
        while (p < end && *p >= '0' && *p <= '9') {
            if (fdig < 3)
                frac = frac * 10 + (*p - '0');
            fdig++;
            p++;
        }
        if (fdig == 0)
            goto bad;
        for (int i = fdig; i < 3; i++)
            frac *= 10;
    }
    if (p < end && (*p == 'Z' || *p == 'z')) {
        p++;
    } else if (p + 6 == end && (*p == '+' || *p == '-') && digits(p + 1, 2, &oh) &&
               p[3] == ':' && digits(p + 4, 2, &om)) {
        sign = *p == '-' ? -1 : 1;
        p += 6;
    } else {
        goto bad;
    }
    if (p != end || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 ||
        se > 60 || oh > 23 || om > 59)
        goto bad;
    if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
        goto bad;
    if (se == 60)
        se = 59; /* a leap second is folded onto the second before it */
    int64_t secs = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + se;
    secs -= sign * (oh * 3600 + om * 60);
    *ms = secs * 1000 + frac;
    return CD_OK;
bad:
    return cd_err_set(CD_ERR_INVALID, "timestamp must be RFC 3339, e.g. 2026-11-25T09:30:00Z");
}
