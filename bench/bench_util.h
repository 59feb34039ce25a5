/* Helpers every benchmark shares: the median of its runs, a monotonic clock in seconds,
 * deterministic filler text and removing a database with its WAL. Header-only: each bench is
 * one translation unit. */
#ifndef CD_BENCH_UTIL_H
#define CD_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "base/base.h"

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of v[0..n) (sorts v in place); the mean of the middle two when n is even. */
static inline double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static inline double bench_now_s(void)
{
    return (double)cd_mono_ns() / 1e9;
}

/* n bytes of customer-service prose starting at word offset seed, NUL-terminated (p holds n+1). */
static inline void bench_fill_text(char *p, size_t n, unsigned seed)
{
    static const char words[] = "thanks for your order the parcel arrived late and the box was "
                                "damaged could you please send a replacement or a refund ";
    for (size_t i = 0; i < n; i++)
        p[i] = words[(i + seed) % (sizeof words - 1)];
    p[n] = '\0';
}

/* Removes the SQLite database at path and its -wal and -shm files. */
static inline void bench_drop_db(const char *path)
{
    char side[CD_PATH_MAX];

    unlink(path);
    if (snprintf(side, sizeof side, "%s-wal", path) < (int)sizeof side)
        unlink(side);
    if (snprintf(side, sizeof side, "%s-shm", path) < (int)sizeof side)
        unlink(side);
}

#endif
