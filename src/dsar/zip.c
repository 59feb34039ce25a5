/* A streaming ZIP writer (APPNOTE 6.3.10) for the export: each entry is deflated (zlib, raw
 * deflate) as it is written, with its CRC-32 and sizes in a data descriptor after the data, so
 * nothing is held but zlib's window and one output buffer; the central directory is written at
 * the end from the few bytes kept per entry. No ZIP64: an archive or entry past 4 GiB is
 * refused, far above what one customer's records make. */
#include <string.h>
#include <zlib.h>
#include "dsar_int.h"

#define ZIP_VERSION 20            /* 2.0: deflate, data descriptors */
#define ZIP_FLAGS 0x0808          /* bit 3: sizes in a data descriptor; bit 11: UTF-8 names */
#define ZIP_LIMIT 0xFFFFFFFFull   /* beyond this ZIP64 would be needed */
#define ZIP_DOS_DATE ((46 << 9) | (1 << 5) | 1) /* 2026-01-01: entries carry no real time */

static void *z_alloc(void *opaque, unsigned items, unsigned size)
{
    (void)opaque;
    return cd_calloc(items, size);
}

static void z_free(void *opaque, void *p)
{
    (void)opaque;
    cd_free(p);
}

static void le16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void le32(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static enum cd_err emit(struct cd__zip *z, const void *p, size_t n)
{
    enum cd_err err;

    if (n == 0)
        return CD_OK;
    if (z->offset + n > ZIP_LIMIT)
        return cd_err_set(CD_ERR_TOO_BIG, "the export would exceed 4 GiB");
    if ((err = z->sink(z->sink_ctx, p, n)) != CD_OK)
        return err;
    z->offset += n;
    return CD_OK;
}

void cd__zip_init(struct cd__zip *z, cd__zip_sink sink, void *ctx)
{
    memset(z, 0, sizeof *z);
    z->sink = sink;
    z->sink_ctx = ctx;
}

enum cd_err cd__zip_begin(struct cd__zip *z, const char *name)
{
    size_t len = strlen(name);
    uint8_t h[30];
    enum cd_err err;

    if (z->open || z->n == CD__ZIP_MAX_ENTRIES || len >= sizeof z->e[0].name)
        return cd_err_set(CD_ERR_INTERNAL, "zip: entry %s cannot be added", name);
    struct cd__zip_entry *e = &z->e[z->n];
    memset(e, 0, sizeof *e);
    memcpy(e->name, name, len + 1);
    e->offset = z->offset;
    z->zs = cd_calloc(1, sizeof *z->zs);
    if (z->zs == NULL)
        return CD_ERR_NOMEM;
    z->zs->zalloc = z_alloc;
    z->zs->zfree = z_free;
    if (deflateInit2(z->zs, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        cd_free(z->zs);
        z->zs = NULL;
        return CD_ERR_NOMEM;
    }
    z->open = true;
    z->crc = crc32(0, Z_NULL, 0);
    le32(h, 0x04034b50);
    le16(h + 4, ZIP_VERSION);
    le16(h + 6, ZIP_FLAGS);
    le16(h + 8, 8); /* deflate */
    le16(h + 10, 0);
    le16(h + 12, ZIP_DOS_DATE);
    le32(h + 14, 0); /* CRC and sizes follow the data */
    le32(h + 18, 0);
    le32(h + 22, 0);
    le16(h + 26, (unsigned)len);
    le16(h + 28, 0);
    if ((err = emit(z, h, sizeof h)) != CD_OK || (err = emit(z, name, len)) != CD_OK)
        return err;
    return CD_OK;
}

/* Runs deflate over what it holds, flushing as flush says, writing what comes out. */
static enum cd_err pump(struct cd__zip *z, int flush)
{
    enum cd_err err;
    int rc;

    do {
        z->zs->next_out = z->out;
        z->zs->avail_out = sizeof z->out;
        rc = deflate(z->zs, flush);
        if (rc == Z_STREAM_ERROR)
            return cd_err_set(CD_ERR_INTERNAL, "zip: deflate failed");
        size_t have = sizeof z->out - z->zs->avail_out;
        z->e[z->n].csize += have;
        if ((err = emit(z, z->out, have)) != CD_OK)
            return err;
    } while (z->zs->avail_out == 0 || (flush == Z_FINISH && rc != Z_STREAM_END));
    return CD_OK;
}

enum cd_err cd__zip_write(struct cd__zip *z, const void *p, size_t n)
{
    struct cd__zip_entry *e = &z->e[z->n];

    if (!z->open)
        return cd_err_set(CD_ERR_INTERNAL, "zip: no entry is open");
    if (e->usize + n > ZIP_LIMIT)
        return cd_err_set(CD_ERR_TOO_BIG, "an export file would exceed 4 GiB");
    while (n > 0) {
        /* zlib counts in unsigned int. */
        unsigned chunk = n > (1u << 30) ? 1u << 30 : (unsigned)n;
        z->crc = crc32(z->crc, p, chunk);
        e->usize += chunk;
        z->zs->next_in = (Bytef *)p;
        z->zs->avail_in = chunk;
        enum cd_err err = pump(z, Z_NO_FLUSH);
        if (err != CD_OK)
            return err;
        p = (const char *)p + chunk;
        n -= chunk;
    }
    return CD_OK;
}

static void close_stream(struct cd__zip *z)
{
    if (z->zs) {
        deflateEnd(z->zs);
        cd_free(z->zs);
        z->zs = NULL;
    }
    z->open = false;
}

enum cd_err cd__zip_end(struct cd__zip *z)
{
    struct cd__zip_entry *e = &z->e[z->n];
    uint8_t d[16];
    enum cd_err err;

    if (!z->open)
        return cd_err_set(CD_ERR_INTERNAL, "zip: no entry is open");
    z->zs->next_in = NULL;
    z->zs->avail_in = 0;
    err = pump(z, Z_FINISH);
    close_stream(z);
    if (err != CD_OK)
        return err;
    e->crc = (uint32_t)z->crc;
    le32(d, 0x08074b50);
    le32(d + 4, e->crc);
    le32(d + 8, e->csize);
    le32(d + 12, e->usize);
    if ((err = emit(z, d, sizeof d)) != CD_OK)
        return err;
    z->n++;
    return CD_OK;
}

enum cd_err cd__zip_finish(struct cd__zip *z)
{
    uint64_t start = z->offset;
    uint8_t h[46], end[22];
    enum cd_err err;

    if (z->open)
        return cd_err_set(CD_ERR_INTERNAL, "zip: an entry is still open");
    for (size_t i = 0; i < z->n; i++) {
        const struct cd__zip_entry *e = &z->e[i];
        size_t len = strlen(e->name);
        le32(h, 0x02014b50);
        le16(h + 4, (3 << 8) | ZIP_VERSION); /* made by: Unix */
        le16(h + 6, ZIP_VERSION);
        le16(h + 8, ZIP_FLAGS);
        le16(h + 10, 8);
        le16(h + 12, 0);
        le16(h + 14, ZIP_DOS_DATE);
        le32(h + 16, e->crc);
        le32(h + 20, e->csize);
        le32(h + 24, e->usize);
        le16(h + 28, (unsigned)len);
        le16(h + 30, 0);
        le16(h + 32, 0);
        le16(h + 34, 0);
        le16(h + 36, 0);
        le32(h + 38, (uint64_t)0100644 << 16); /* a regular file, rw-r--r-- */
        le32(h + 42, e->offset);
        if ((err = emit(z, h, sizeof h)) != CD_OK || (err = emit(z, e->name, len)) != CD_OK)
            return err;
    }
    le32(end, 0x06054b50);
    le16(end + 4, 0);
    le16(end + 6, 0);
    le16(end + 8, (unsigned)z->n);
    le16(end + 10, (unsigned)z->n);
    le32(end + 12, z->offset - start);
    le32(end + 16, start);
    le16(end + 20, 0);
    return emit(z, end, sizeof end);
}

void cd__zip_free(struct cd__zip *z)
{
    close_stream(z);
}
