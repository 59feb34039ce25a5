/* Capped growable buffers, string views and the request arena. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "base.h"

struct cd_str cd_str_c(const char *s)
{
    return (struct cd_str){s, s ? strlen(s) : 0};
}

bool cd_str_eq(struct cd_str a, struct cd_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

bool cd_str_eq_c(struct cd_str a, const char *s)
{
    return cd_str_eq(a, cd_str_c(s));
}

enum cd_err cd_buf_reserve(struct cd_buf *b, size_t extra)
{
    size_t need, cap;
    char *p;

    if (extra > SIZE_MAX / 2 - b->len)
        return CD_ERR_TOO_BIG;
    /* A zeroed buffer holds nothing: every buffer states its maximum through CD_BUF_INIT. */
    assert(b->max > 0);
    need = b->len + extra;
    if (need > b->max)
        return CD_ERR_TOO_BIG;
    if (need + 1 <= b->cap)
        return CD_OK;
    cap = b->cap ? b->cap : 64;
    while (cap < need + 1)
        cap *= 2;
    /* Never allocate far beyond the cap: the terminator is the only extra byte allowed. */
    if (cap - 1 > b->max)
        cap = b->max + 1;
    if ((p = cd_realloc(b->p, cap)) == NULL)
        return CD_ERR_NOMEM;
    b->p = p;
    b->cap = cap;
    return CD_OK;
}

enum cd_err cd_buf_append(struct cd_buf *b, const void *p, size_t n)
{
    enum cd_err err;

    if ((err = cd_buf_reserve(b, n)) != CD_OK)
        return err;
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
    return CD_OK;
}

enum cd_err cd_buf_puts(struct cd_buf *b, const char *s)
{
    return cd_buf_append(b, s, strlen(s));
}

enum cd_err cd_buf_putc(struct cd_buf *b, char c)
{
    return cd_buf_append(b, &c, 1);
}

enum cd_err cd_buf_printf(struct cd_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    enum cd_err err;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return CD_ERR_INVALID;
    if ((err = cd_buf_reserve(b, (size_t)n)) != CD_OK)
        return err;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return CD_OK;
}

void cd_buf_reset(struct cd_buf *b)
{
    b->len = 0;
    if (b->p)
        b->p[0] = '\0';
}

void cd_buf_free(struct cd_buf *b)
{
    cd_free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

char *cd_buf_take(struct cd_buf *b, size_t *len)
{
    char *p = b->p;

    if (len)
        *len = b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

/* ---- arena ---- */

struct cd_arena_block {
    struct cd_arena_block *next;
    size_t used, size;
    _Alignas(16) unsigned char data[];
};

#define ARENA_BLOCK 8192

void *cd_arena_alloc(struct cd_arena *a, size_t n)
{
    struct cd_arena_block *blk = a->head;
    size_t aligned = (n + 15) & ~(size_t)15;
    void *p;

    if (aligned < n)
        return NULL;
    if (blk == NULL || blk->size - blk->used < aligned) {
        size_t size = aligned > ARENA_BLOCK ? aligned : ARENA_BLOCK;
        if (a->max && a->total + size > a->max)
            return NULL;
        if ((blk = cd_malloc(sizeof *blk + size)) == NULL)
            return NULL;
        blk->used = 0;
        blk->size = size;
        blk->next = a->head;
        a->head = blk;
        a->total += size;
    }
    p = blk->data + blk->used;
    blk->used += aligned;
    return p;
}

char *cd_arena_strndup(struct cd_arena *a, const char *s, size_t n)
{
    char *d = cd_arena_alloc(a, n + 1);

    if (d == NULL)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *cd_arena_printf(struct cd_arena *a, const char *fmt, ...)
{
    va_list ap;
    int n;
    char *d;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || (d = cd_arena_alloc(a, (size_t)n + 1)) == NULL)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(d, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return d;
}

void cd_arena_free(struct cd_arena *a)
{
    struct cd_arena_block *b = a->head, *next;

    for (; b; b = next) {
        next = b->next;
        cd_free(b);
    }
    a->head = NULL;
    a->total = 0;
}

enum cd_err cd_buf_read_file(struct cd_buf *b, const char *path)
{
    char chunk[8192];
    size_t got, mark = b->len;
    enum cd_err err = CD_OK;
    FILE *f = fopen(path, "rb");

    if (f == NULL)
        return cd_err_set(CD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    while (err == CD_OK && (got = fread(chunk, 1, sizeof chunk, f)) > 0)
        if ((err = cd_buf_append(b, chunk, got)) == CD_ERR_TOO_BIG)
            cd_err_set(err, "%s: file above %zu bytes", path, b->max);
    if (err == CD_OK && ferror(f))
        err = cd_err_set(CD_ERR_IO, "%s: read error", path);
    if (err == CD_OK && b->p == NULL)
        err = cd_buf_reserve(b, 1); /* an empty file still gives a (terminated) buffer */
    if (err != CD_OK) {
        b->len = mark;
        if (b->p)
            b->p[mark] = '\0';
    }
    fclose(f);
    return err;
}
