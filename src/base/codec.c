/* Random bytes, ids, hex, base64url and constant-time comparison. */
#include <pthread.h>
#include <string.h>
#include <sodium.h>
#include "base_testing.h"

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

/* ---- ids: 128 bits as 26 Crockford base32 digits ------------------------------------------ */

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* Crockford base32 digit value + 1, 0 for anything else (upper case only, as ids are written).
 * A table: consent decodes the customer id of every decision. */
static const uint8_t crock_tab[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,
    ['7'] = 8,  ['8'] = 9,  ['9'] = 10, ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14,
    ['E'] = 15, ['F'] = 16, ['G'] = 17, ['H'] = 18, ['J'] = 19, ['K'] = 20, ['M'] = 21,
    ['N'] = 22, ['P'] = 23, ['Q'] = 24, ['R'] = 25, ['S'] = 26, ['T'] = 27, ['V'] = 28,
    ['W'] = 29, ['X'] = 30, ['Y'] = 31, ['Z'] = 32,
};

/* Two Crockford digits per 10 bits (pair v at 2v), a constant of 2 KiB. A consent decision
 * writes an event id, so the 26 digits are made with 13 lookups and four 8-byte stores, not 26
 * dependent shifts and byte stores: a decision's work between its cache miss and the next
 * call's must stay small for consecutive calls to overlap (docs/benchmarks.md, consent
 * decisions). */
#define CROCK_ROW(a)                                                                       \
    a "0" a "1" a "2" a "3" a "4" a "5" a "6" a "7" a "8" a "9" a "A" a "B" a "C" a "D" a "E"    \
    a "F" a "G" a "H" a "J" a "K" a "M" a "N" a "P" a "Q" a "R" a "S" a "T" a "V" a "W" a "X"    \
    a "Y" a "Z"
static const char digit_pairs[2 * 1024 + 1] =
    CROCK_ROW("0") CROCK_ROW("1") CROCK_ROW("2") CROCK_ROW("3") CROCK_ROW("4") CROCK_ROW("5")
    CROCK_ROW("6") CROCK_ROW("7") CROCK_ROW("8") CROCK_ROW("9") CROCK_ROW("A") CROCK_ROW("B")
    CROCK_ROW("C") CROCK_ROW("D") CROCK_ROW("E") CROCK_ROW("F") CROCK_ROW("G") CROCK_ROW("H")
    CROCK_ROW("J") CROCK_ROW("K") CROCK_ROW("M") CROCK_ROW("N") CROCK_ROW("P") CROCK_ROW("Q")
    CROCK_ROW("R") CROCK_ROW("S") CROCK_ROW("T") CROCK_ROW("V") CROCK_ROW("W") CROCK_ROW("X")
    CROCK_ROW("Y") CROCK_ROW("Z");
#undef CROCK_ROW

static uint64_t load_be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

/* The pair for the low 10 bits of v, as a 16-bit value in memory order. */
static inline uint64_t pair(uint64_t v)
{
    uint16_t x;
    memcpy(&x, digit_pairs + 2 * (v & 1023), 2);
    return x;
}

/* Four pairs (eight digits) as one word that, stored, is them in order. */
static inline uint64_t pairs4(uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return pair(a) | pair(b) << 16 | pair(c) << 32 | pair(d) << 48;
#else
    return pair(a) << 48 | pair(b) << 32 | pair(c) << 16 | pair(d);
#endif
}

/* The portable path: the 26 digits, then two zero bytes. Pair j (digits 2j, 2j + 1) is bits
 * 120 - 10j .. 129 - 10j of the 128 bits. */
void cd__id_digits_portable(const uint8_t raw[16], char out[CD_ID_DIGITS_ROOM])
{
    uint64_t hi = load_be64(raw), lo = load_be64(raw + 8);
    uint64_t w0 = pairs4(hi >> 56, hi >> 46, hi >> 36, hi >> 26),
             w1 = pairs4(hi >> 16, hi >> 6, hi << 4 | lo >> 60, lo >> 50),
             w2 = pairs4(lo >> 40, lo >> 30, lo >> 20, lo >> 10);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint32_t w3 = (uint32_t)pair(lo);
#else
    uint32_t w3 = (uint32_t)pair(lo) << 16;
#endif
    memcpy(out, &w0, 8);
    memcpy(out + 8, &w1, 8);
    memcpy(out + 16, &w2, 8);
    memcpy(out + 24, &w3, 4);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_VBMI_PATH 1

/* The 26 digits with AVX-512 VBMI, then six more bytes. Each 64-bit lane holds the 40 bits of
 * eight digits; one multishift cuts them into bytes, one byte permute maps them to the
 * alphabet. About a dozen instructions instead of 13 table lookups: every one of them waits
 * for a consent record's cache miss, and the fewer wait, the sooner the core moves on to the
 * next decision. */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi"))) static void
digits_vbmi(const uint8_t raw[16], char out[CD_ID_DIGITS_ROOM])
{
    uint64_t hi = load_be64(raw), lo = load_be64(raw + 8);
    __m256i v = _mm256_set_epi64x((long long)(lo << 30), (long long)(lo >> 10),
                                  (long long)(hi << 14 | lo >> 50), (long long)(hi >> 26));
    /* Byte k of a lane takes the 8 bits from offset 35 - 5k: digit k in its low 5 bits. */
    __m256i f = _mm256_multishift_epi64_epi8(_mm256_set1_epi64x(0x00050A0F14191E23ll), v);
    f = _mm256_and_si256(f, _mm256_set1_epi8(31));
    __m256i ch = _mm256_permutexvar_epi8(f, _mm256_loadu_si256((const __m256i *)crockford));
    _mm256_storeu_si256((__m256i *)out, ch);
}

/* Whether the CPU (and the kernel, for the AVX-512 state) supports it: decided once, before
 * main, so every id read the same constant. */
static bool use_vbmi;

__attribute__((constructor)) static void detect_vbmi(void)
{
    __builtin_cpu_init();
    use_vbmi = __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512bw");
}
#endif

bool cd__id_digits_vbmi(const uint8_t raw[16], char out[CD_ID_DIGITS_ROOM])
{
#ifdef HAVE_VBMI_PATH
    if (use_vbmi) {
        digits_vbmi(raw, out);
        return true;
    }
#endif
    return false;
}

/* The two paths are functions of their own so the unit tests can compare them; the compiler
 * inlines both here. */
void cd_id_digits(const uint8_t raw[16], char out[CD_ID_DIGITS_ROOM])
{
    if (!cd__id_digits_vbmi(raw, out))
        cd__id_digits_portable(raw, out);
}

void cd_id_format(const uint8_t raw[16], const char *prefix, char out[CD_ID_MAX])
{
    char digits[CD_ID_DIGITS_ROOM];
    size_t pl = strlen(prefix);

    if (pl > CD_ID_PREFIX_MAX)
        pl = CD_ID_PREFIX_MAX;
    memcpy(out, prefix, pl);
    out[pl] = '_';
    cd_id_digits(raw, digits);
    memcpy(out + pl + 1, digits, CD_ID_DIGITS);
    out[pl + 1 + CD_ID_DIGITS] = '\0';
}

bool cd_id_bits(struct cd_str s, const char *prefix, uint8_t out[16])
{
    size_t pl = strlen(prefix);
    uint64_t hi = 0, lo = 0;

    if (s.len != pl + 1 + CD_ID_DIGITS || memcmp(s.p, prefix, pl) != 0 || s.p[pl] != '_')
        return false;
    const char *o = s.p + pl + 1;
    /* 26 digits of 5 bits = 130 bits, the leading 2 bits zero. */
    for (int i = 0; i < CD_ID_DIGITS; i++) {
        int v = crock_tab[(unsigned char)o[i]] - 1;
        if (v < 0 || (i == 0 && v > 7))
            return false;
        hi = hi << 5 | lo >> 59;
        lo = lo << 5 | (uint64_t)v;
    }
    for (int i = 0; i < 8; i++) {
        out[i] = (uint8_t)(hi >> (56 - 8 * i));
        out[8 + i] = (uint8_t)(lo >> (56 - 8 * i));
    }
    return true;
}

/* The last id made by this process: ids are monotonic (as ULID's monotonic mode), so two ids
 * made in the same millisecond still sort in the order they were made. */
static pthread_mutex_t id_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned char id_last[16];

void cd_id_new(const char *prefix, char out[CD_ID_MAX])
{
    unsigned char raw[16];
    uint64_t t = (uint64_t)cd_now_ms(), last_t = 0;

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
    cd_id_format(raw, prefix, out);
}

bool cd_id_valid(struct cd_str s, const char *prefix)
{
    size_t pl = strlen(prefix);

    if (s.len != pl + 1 + CD_ID_DIGITS || memcmp(s.p, prefix, pl) != 0 || s.p[pl] != '_')
        return false;
    for (size_t i = pl + 1; i < s.len; i++)
        if (crock_tab[(unsigned char)s.p[i]] == 0)
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
