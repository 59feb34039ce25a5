/* Error names and the per-thread error detail. */
#include <stdio.h>
#include <string.h>
#include "base.h"

static const char *const names[CD_ERR__COUNT] = {
    [CD_OK] = "ok",
    [CD_ERR_NOMEM] = "nomem",
    [CD_ERR_INVALID] = "invalid",
    [CD_ERR_TOO_BIG] = "too-big",
    [CD_ERR_NOT_FOUND] = "not-found",
    [CD_ERR_CONFLICT] = "conflict",
    [CD_ERR_IDEMPOTENCY] = "idempotency-key-reused",
    [CD_ERR_UNAUTHENTICATED] = "unauthenticated",
    [CD_ERR_FORBIDDEN] = "forbidden",
    [CD_ERR_PURPOSE_MISSING] = "purpose-required",
    [CD_ERR_PURPOSE_UNKNOWN] = "purpose-unknown",
    [CD_ERR_PURPOSE_DENIED] = "purpose-not-permitted",
    [CD_ERR_CONSENT_DENIED] = "consent-denied",
    [CD_ERR_GUARD_BLOCKED] = "guard-blocked",
    [CD_ERR_PURPOSE_MISMATCH] = "purpose-mismatch",
    [CD_ERR_UNSUPPORTED] = "unsupported",
    [CD_ERR_STORE] = "store",
    [CD_ERR_BUSY] = "busy",
    [CD_ERR_RATE_LIMITED] = "too-many-requests",
    [CD_ERR_SCHEMA] = "schema",
    [CD_ERR_IO] = "io",
    [CD_ERR_CRYPTO] = "crypto",
    [CD_ERR_INTEGRITY] = "integrity",
    [CD_ERR_INTERNAL] = "internal",
};

static _Thread_local char detail[512];

const char *cd_err_name(enum cd_err err)
{
    if ((unsigned)err >= CD_ERR__COUNT)
        return "unknown";
    return names[err];
}

enum cd_err cd_err_set(enum cd_err err, const char *fmt, ...)
{
    va_list ap;
    char tmp[sizeof detail];

    /* Format into a copy first: callers often wrap the current detail
     * (cd_err_set(err, "x: %s", cd_err_detail())), and vsnprintf must not read what it writes. */
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    memcpy(detail, tmp, sizeof detail);
    return err;
}

const char *cd_err_detail(void)
{
    return detail;
}

void cd_err_clear(void)
{
    detail[0] = '\0';
}
