/* Random bytes, ids, hex, base64url and constant-time comparison. */
#include <pthread.h>
#include <string.h>
#include <sodium.h>
#include "base.h"

/* Ids, nonces and token secrets take a few bytes each, several per request, and libsodium's
 * generator makes a getpid(2) call on every randombytes_buf (its fork check): five system
 * calls per ingested interaction. So bytes come from a per-thread pool refilled 512 at a
 * time. The pool holds no more than the generator's own state already determines; bytes
 * handed out are wiped from it, and a fork empties the child's pool so parent and child
 * never hand out the same bytes. */
#define RANDOM_POOL 512
static _Thread_local unsigned char random_pool[RANDOM_POOL];
static _Thread_local size_t random_left;
static pthread_once_t random_once = PTHREAD_ONCE_INIT;

static void random_forget_in_child(void)
{
    /* Runs in the child, on the thread that forked: the only thread the child has. */
    sodium_memzero(random_pool, sizeof random_pool);
    random_left = 0;
}

static bool random_pool_safe; /* the fork handler is in place */

static void random_register_fork(void)
{
    random_pool_safe = pthread_atfork(NULL, NULL, random_forget_in_child) == 0;
}

void cd_random_bytes(void *out, size_t n)
{
    unsigned char *dst = out;

    pthread_once(&random_once, random_register_fork);
    /* Large requests gain nothing from the pool; without the fork handler it is not used. */
    if (n > RANDOM_POOL / 4 || !random_pool_safe) {
        randombytes_buf(out, n);
        return;
    }
    while (n > 0) {
        if (random_left == 0) {
            randombytes_buf(random_pool, sizeof random_pool);
            random_left = sizeof random_pool;
        }
        size_t take = n < random_left ? n : random_left;
        unsigned char *src = random_pool + (sizeof random_pool - random_left);
        memcpy(dst, src, take);
        sodium_memzero(src, take);
        random_left -= take;
        dst += take;
        n -= take;
    }
}

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* The last id made by this process: ids are monotonic (as ULID's monotonic mode), so two ids
 * made in the same millisecond still sort in the order they were made. */
static pthread_mutex_t id_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned char id_last[16];

void cd_id_new(const char *prefix, char out[CD_ID_MAX])
{
    unsigned char raw[16];
    uint64_t t = (uint64_t)cd_now_ms(), last_t = 0;
    size_t pl = strlen(prefix);

    /* 48 bits of time, big-endian, then 80 random bits: 128 bits in 26 base32 digits. */
    for (int i = 0; i < 6; i++)
        raw[i] = (unsigned char)(t >> (40 - 8 * i));
    cd_random_bytes(raw + 6, 10);
    pthread_mutex_lock(&id_lock);
    for (int i = 0; i < 6; i++)
        last_t = last_t << 8 | id_last[i];
    if (t <= last_t) {
        /* Same (or an earlier, if the clock stepped back) millisecond: the previous id plus one
         * in its random part keeps the order; the random part is 80 bits, it never wraps. */
        memcpy(raw, id_last, sizeof raw);
        for (int i = 15; i >= 6 && ++raw[i] == 0; i--)
            ;
    }
    memcpy(id_last, raw, sizeof raw);
    pthread_mutex_unlock(&id_lock);
    if (pl > CD_ID_MAX - 28)
        pl = CD_ID_MAX - 28;
    memcpy(out, prefix, pl);
    out[pl] = '_';
    char *o = out + pl + 1;
    /* 130 bits of output space; the leading 2 bits are zero. */
    int bit = -2;
    for (int i = 0; i < 26; i++, bit += 5) {
        unsigned v = 0;
        for (int k = 0; k < 5; k++) {
            int b = bit + k;
            v <<= 1;
            if (b >= 0)
                v |= (raw[b / 8] >> (7 - b % 8)) & 1u;
        }
        o[i] = crockford[v];
    }
    o[26] = '\0';
}

bool cd_id_valid(struct cd_str s, const char *prefix)
{
    size_t pl = strlen(prefix);

    if (s.len != pl + 27 || memcmp(s.p, prefix, pl) != 0 || s.p[pl] != '_')
        return false;
    for (size_t i = pl + 1; i < s.len; i++)
        if (strchr(crockford, s.p[i]) == NULL || s.p[i] == '\0')
            return false;
    return true;
}

void cd_hex_encode(const void *in, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    const unsigned char *b = in;

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[b[i] >> 4];
        out[2 * i + 1] = hx[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

enum cd_err cd_hex_decode(struct cd_str in, void *out, size_t outlen)
{
    unsigned char *o = out;

    if (in.len != 2 * outlen)
        return cd_err_set(CD_ERR_INVALID, "expected %zu hex digits", 2 * outlen);
    for (size_t i = 0; i < outlen; i++) {
        int hi = hexval(in.p[2 * i]), lo = hexval(in.p[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return cd_err_set(CD_ERR_INVALID, "invalid hex digit");
        o[i] = (unsigned char)(hi << 4 | lo);
    }
    return CD_OK;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t cd_b64url_len(size_t n)
{
    return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

void cd_b64url_encode(const void *in, size_t n, char *out)
{
    const unsigned char *b = in;
    size_t o = 0, i = 0;

    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)b[i] << 16 | (uint32_t)b[i + 1] << 8 | b[i + 2];
        out[o++] = b64[v >> 18];
        out[o++] = b64[v >> 12 & 63];
        out[o++] = b64[v >> 6 & 63];
        out[o++] = b64[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)b[i] << 16;
        out[o++] = b64[v >> 18];
        out[o++] = b64[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)b[i] << 16 | (uint32_t)b[i + 1] << 8;
        out[o++] = b64[v >> 18];
        out[o++] = b64[v >> 12 & 63];
        out[o++] = b64[v >> 6 & 63];
    }
    out[o] = '\0';
}

enum cd_err cd_b64url_decode(struct cd_str in, void *out, size_t outcap, size_t *outlen)
{
    unsigned char *o = out;
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;

    if (in.len % 4 == 1)
        return cd_err_set(CD_ERR_INVALID, "invalid base64url length");
    for (size_t i = 0; i < in.len; i++) {
        const char *pos = in.p[i] ? memchr(b64, in.p[i], 64) : NULL;
        if (pos == NULL)
            return cd_err_set(CD_ERR_INVALID, "invalid base64url character");
        acc = acc << 6 | (uint32_t)(pos - b64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n >= outcap)
                return cd_err_set(CD_ERR_INVALID, "base64url value too long");
            o[n++] = (unsigned char)(acc >> bits);
        }
    }
    *outlen = n;
    return CD_OK;
}

size_t cd_b64_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

void cd_b64_encode(const void *in, size_t n, char *out)
{
    sodium_bin2base64(out, cd_b64_len(n) + 1, in, n, sodium_base64_VARIANT_ORIGINAL);
}

enum cd_err cd_b64_decode(struct cd_str in, void *out, size_t outcap, size_t *outlen)
{
    const char *end = NULL;

    if (sodium_base642bin(out, outcap, in.p, in.len, NULL, outlen, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        end != in.p + in.len)
        return cd_err_set(CD_ERR_INVALID, "invalid base64");
    return CD_OK;
}

bool cd_ct_eq(const void *a, const void *b, size_t n)
{
    return sodium_memcmp(a, b, n) == 0;
}
