/* Time zones without touching the process: a small reader of TZif v2+ files from
 * /usr/share/zoneinfo (RFC 8536). Only the 64-bit (v2) transition block is used; after the last
 * transition the last offset holds (Debian's zic writes "fat" files with transitions to 2037).
 * Never calls setenv or tzset, so request threads can use it. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "consent_int.h"

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
    if (n.len == 0 || n.len > 60 || n.p[0] == '/' || n.p[0] == '.')
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

static enum cd_err parse(const unsigned char *p, size_t len, struct cd__tz *tz)
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
    if (block_len(&h, 8) > len)
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
    return CD_OK;
}

enum cd_err cd__tz_load(struct cd_str name, struct cd__tz **out)
{
    char path[128];
    unsigned char *buf = NULL;
    struct cd__tz *tz = NULL;
    FILE *f = NULL;
    size_t len = 0;
    enum cd_err err = CD_OK;

    if (!name_ok(name))
        return cd_err_set(CD_ERR_INVALID, "'time_zone' must be an IANA zone name");
    snprintf(path, sizeof path, "/usr/share/zoneinfo/%.*s", (int)name.len, name.p);
    if ((f = fopen(path, "rb")) == NULL) {
        err = cd_err_set(errno == ENOENT || errno == EISDIR ? CD_ERR_NOT_FOUND : CD_ERR_IO,
                         "unknown time zone");
        goto out;
    }
    if ((buf = cd_malloc(TZ_MAX_FILE)) == NULL || (tz = cd_calloc(1, sizeof *tz)) == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    len = fread(buf, 1, TZ_MAX_FILE, f);
    if ((err = parse(buf, len, tz)) != CD_OK)
        goto out;
    *out = tz;
    tz = NULL;
out:
    if (f)
        fclose(f);
    cd_free(buf);
    cd__tz_free(tz);
    return err;
}

void cd__tz_free(struct cd__tz *tz)
{
    if (tz == NULL)
        return;
    cd_free(tz->at);
    cd_free(tz->off);
    cd_free(tz);
}

int32_t cd__tz_offset(const struct cd__tz *tz, int64_t utc_s)
{
    size_t lo = 0, hi = tz->n;

    if (tz->n == 0 || utc_s < tz->at[0])
        return tz->off0;
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

enum cd_err cd_consent_local_minutes(struct cd_str tzname, int64_t utc_ms, int *minutes)
{
    struct cd__tz *tz = NULL;
    enum cd_err err = cd__tz_load(tzname, &tz);

    if (err != CD_OK)
        return err;
    int64_t s = utc_ms / 1000 + cd__tz_offset(tz, utc_ms / 1000);
    int64_t m = (s / 60) % 1440;
    *minutes = (int)(m < 0 ? m + 1440 : m);
    cd__tz_free(tz);
    return CD_OK;
}
