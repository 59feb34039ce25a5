/* The allocation wrapper. Every heap allocation in Candor (and jansson's, see json.c) passes
 * here, so fault-injection builds can make the Nth one fail and prove the failure paths. */
#include <stdlib.h>
#include <string.h>
#include "base.h"

#ifdef CD_FAULT_INJECTION
static _Thread_local long fail_countdown;
static _Thread_local bool fault_hit;

static bool should_fail(void)
{
    if (fail_countdown > 0 && --fail_countdown == 0) {
        fault_hit = true;
        return true;
    }
    return false;
}
#else
static bool should_fail(void)
{
    return false;
}
#endif

void cd_alloc_fail_nth(long n)
{
#ifdef CD_FAULT_INJECTION
    fail_countdown = n;
    fault_hit = false;
#else
    (void)n;
#endif
}

bool cd_alloc_fault_hit(void)
{
#ifdef CD_FAULT_INJECTION
    return fault_hit;
#else
    return false;
#endif
}

struct cd_alloc_fault cd_alloc_fault_take(void)
{
#ifdef CD_FAULT_INJECTION
    struct cd_alloc_fault f = {fail_countdown, fault_hit};
    fail_countdown = 0;
    fault_hit = false;
    return f;
#else
    return (struct cd_alloc_fault){0, false};
#endif
}

void cd_alloc_fault_put(struct cd_alloc_fault f)
{
#ifdef CD_FAULT_INJECTION
    fail_countdown = f.countdown;
    fault_hit = f.hit;
#else
    (void)f;
#endif
}

void *cd_malloc(size_t n)
{
    if (should_fail())
        return NULL;
    return malloc(n ? n : 1);
}

void *cd_calloc(size_t count, size_t size)
{
    if (should_fail())
        return NULL;
    return calloc(count ? count : 1, size ? size : 1);
}

void *cd_realloc(void *p, size_t n)
{
    if (should_fail())
        return NULL;
    return realloc(p, n ? n : 1);
}

void cd_free(void *p)
{
    free(p);
}

char *cd_strndup(const char *s, size_t n)
{
    char *d = cd_malloc(n + 1);

    if (d == NULL)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *cd_strdup(const char *s)
{
    return cd_strndup(s, strlen(s));
}
