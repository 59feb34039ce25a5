/* Private to src/crypto: helpers shared by its files. */
#ifndef CD_CRYPTO_INT_H
#define CD_CRYPTO_INT_H
#include "crypto.h"

/* BLAKE2b-256 (keyed when key is non-NULL, 32-byte key) over an injective encoding of the
 * parts: each part is preceded by its length as 8 bytes big-endian, so ("ab","c") and
 * ("a","bc") hash differently. parts[0] is by convention a domain tag naming the use. */
void cd__crypto_hash_parts(const uint8_t *key, const struct cd_str *parts, size_t nparts,
                           uint8_t out[CD_CRYPTO_HASH_LEN]);

/* The pair form of SHA-256 on the x86 SHA extensions (sha256_ni.c), compiled on x86-64 with GCC or clang and
 * used by hash.c only when cd__crypto_sha_ni_detect() found the instructions at start-up. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CD__CRYPTO_HAVE_SHA_NI 1
#else
#define CD__CRYPTO_HAVE_SHA_NI 0
#endif

#if CD__CRYPTO_HAVE_SHA_NI
/* True when the CPU has SHA, SSSE3 and SSE4.1. */
bool cd__crypto_sha_ni_detect(void);
/* SHA-256(pa || body) into oa and SHA-256(pb || body) into ob, the two interleaved. */
void cd__crypto_sha256_ni_pair(const void *pa, size_t na, const void *pb, size_t nb,
                               const void *body, size_t n, uint8_t oa[32], uint8_t ob[32]);
#endif

/* Tests only: turns the SHA-extension path off (false) or back on where the CPU has it, so both
 * paths can be compared. Returns whether it is now on. Not thread-safe. */
bool cd__crypto_sha_ni_use(bool on);

#endif
