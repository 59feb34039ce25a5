/* Private to src/crypto: helpers shared by its files. */
#ifndef CD_CRYPTO_INT_H
#define CD_CRYPTO_INT_H
#include "crypto.h"

/* BLAKE2b-256 (keyed when key is non-NULL, 32-byte key) over an injective encoding of the
 * parts: each part is preceded by its length as 8 bytes big-endian, so ("ab","c") and
 * ("a","bc") hash differently. parts[0] is by convention a domain tag naming the use. */
void cd__crypto_hash_parts(const uint8_t *key, const struct cd_str *parts, size_t nparts,
                           uint8_t out[CD_CRYPTO_HASH_LEN]);

/* Fills a 24-byte AEAD nonce with random bytes from a per-thread pool (see seal.c). Nonces
 * must never repeat under one key; they need not be secret. */
void cd__crypto_nonce(uint8_t out[CD_CRYPTO_NONCE_LEN]);

#endif
