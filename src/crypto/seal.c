/* Field sealing (XChaCha20-Poly1305 IETF) and blind indexes (keyed BLAKE2b).
 *
 * The associated data is a 32-byte digest of (domain, customer id, field name), each part
 * length-prefixed: it binds a ciphertext to its row and column without the AEAD ever seeing a
 * variable-length, allocated AD buffer. docs/crypto.md gives the byte layout. */
#include "crypto_int.h"
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <string.h>

/* ---- nonces ----
 *
 * Each call of libsodium's generator re-keys its ChaCha20 state and asks the kernel for the
 * process id (to notice a fork): 0.8 us for one 24-byte nonce, about a tenth of an ingest's
 * sealing on the request thread. So each thread takes random bytes for NONCE_POOL nonces at a
 * time and hands them out once each. A forked child must not reuse its parent's pool (the
 * same nonce under the same key would reveal both plaintexts' XOR and let tags be forged):
 * pthread_atfork bumps a generation in the child, and a pool of an older generation is refilled
 * before use (libsodium's generator, set in hash.c, then aborts the child as it always did;
 * the generation keeps the pool safe should another generator be set). */
#define NONCE_POOL 16

static atomic_uint fork_generation = 1;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void after_fork_in_child(void)
{
    atomic_fetch_add(&fork_generation, 1);
}

static void register_atfork(void)
{
    /* Without the handler (it cannot fail on Linux but may elsewhere) the pool is refilled on
     * every call, which is as safe as before. */
    if (pthread_atfork(NULL, NULL, after_fork_in_child) != 0)
        atomic_store(&fork_generation, 0);
}

static _Thread_local struct {
    unsigned generation; /* fork_generation when filled; 0: empty */
    unsigned next;       /* nonces handed out */
    uint8_t bytes[NONCE_POOL][CD_CRYPTO_NONCE_LEN];
} tl_nonces;

void cd__crypto_nonce(uint8_t out[CD_CRYPTO_NONCE_LEN])
{
    pthread_once(&atfork_once, register_atfork);
    unsigned gen = atomic_load(&fork_generation);
    if (gen == 0) {
        randombytes_buf(out, CD_CRYPTO_NONCE_LEN);
        return;
    }
    if (tl_nonces.generation != gen || tl_nonces.next >= NONCE_POOL) {
        randombytes_buf(tl_nonces.bytes, sizeof tl_nonces.bytes);
        tl_nonces.generation = gen;
        tl_nonces.next = 0;
    }
    memcpy(out, tl_nonces.bytes[tl_nonces.next], CD_CRYPTO_NONCE_LEN);
    /* Handed out once: the slot is cleared so no later read of the pool can return it. */
    sodium_memzero(tl_nonces.bytes[tl_nonces.next], CD_CRYPTO_NONCE_LEN);
    tl_nonces.next++;
}

static void seal_ad(struct cd_str customer_id, struct cd_str field_name,
                    uint8_t ad[CD_CRYPTO_HASH_LEN])
{
    struct cd_str parts[3] = {CD_STR("candor.seal.v1"), customer_id, field_name};

    cd__crypto_hash_parts(NULL, parts, 3, ad);
}

enum cd_err cd_crypto_seal(const uint8_t key[CD_CRYPTO_KEY_LEN], struct cd_str customer_id,
                           struct cd_str field_name, struct cd_str plaintext, struct cd_buf *out)
{
    enum cd_err err = CD_OK;
    uint8_t ad[CD_CRYPTO_HASH_LEN];
    uint8_t *dst;
    size_t n;

    if (plaintext.len > SIZE_MAX / 2 - CD_CRYPTO_SEAL_OVERHEAD) {
        err = cd_err_set(CD_ERR_TOO_BIG, "field too large to seal");
        goto out;
    }
    n = CD_CRYPTO_SEAL_OVERHEAD + plaintext.len;
    if ((err = cd_buf_reserve(out, n)) != CD_OK) {
        err = cd_err_set(err, "no room for a sealed field of %zu bytes", n);
        goto out;
    }
    seal_ad(customer_id, field_name, ad);
    dst = (uint8_t *)out->p + out->len;
    dst[0] = CD_CRYPTO_SEAL_VERSION;
    cd__crypto_nonce(dst + 1);
    crypto_aead_xchacha20poly1305_ietf_encrypt(dst + 1 + CD_CRYPTO_NONCE_LEN, NULL,
                                               (const uint8_t *)plaintext.p, plaintext.len, ad,
                                               sizeof ad, NULL, dst + 1, key);
    out->len += n;
    out->p[out->len] = '\0';
out:
    return err;
}

enum cd_err cd_crypto_open(const uint8_t key[CD_CRYPTO_KEY_LEN], struct cd_str customer_id,
                           struct cd_str field_name, struct cd_str sealed, struct cd_buf *out)
{
    enum cd_err err = CD_OK;
    uint8_t ad[CD_CRYPTO_HASH_LEN];
    const uint8_t *src = (const uint8_t *)sealed.p;
    uint8_t *dst;
    size_t n;

    if (sealed.len < CD_CRYPTO_SEAL_OVERHEAD || src[0] != CD_CRYPTO_SEAL_VERSION) {
        err = cd_err_set(CD_ERR_CRYPTO, "sealed field has an unknown format");
        goto out;
    }
    n = sealed.len - CD_CRYPTO_SEAL_OVERHEAD;
    if ((err = cd_buf_reserve(out, n)) != CD_OK) {
        err = cd_err_set(err, "no room for an opened field of %zu bytes", n);
        goto out;
    }
    seal_ad(customer_id, field_name, ad);
    dst = (uint8_t *)out->p + out->len;
    /* libsodium checks the tag before it decrypts, so a forgery writes nothing into out. */
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(dst, NULL, NULL, src + 1 + CD_CRYPTO_NONCE_LEN,
                                                   sealed.len - 1 - CD_CRYPTO_NONCE_LEN, ad,
                                                   sizeof ad, src + 1, key) != 0) {
        err = cd_err_set(CD_ERR_CRYPTO, "sealed field does not open with this key, customer "
                                        "and field");
        goto out;
    }
    out->len += n;
    out->p[out->len] = '\0';
out:
    return err;
}

void cd_crypto_blind_index(const uint8_t index_key[CD_CRYPTO_KEY_LEN], struct cd_str kind,
                           struct cd_str normalized_value, uint8_t out[CD_CRYPTO_HASH_LEN])
{
    struct cd_str parts[3] = {CD_STR("candor.blind-index.v1"), kind, normalized_value};

    cd__crypto_hash_parts(index_key, parts, 3, out);
}
