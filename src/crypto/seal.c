/* Field sealing (XChaCha20-Poly1305 IETF) and blind indexes (keyed BLAKE2b).
 *
 * The associated data is a 32-byte digest of (domain, customer id, field name) and, in format
 * 2, of the digest of the field's row (its id and metadata), each part length-prefixed: it binds
 * a ciphertext to its customer, column and row without the AEAD ever seeing a variable-length,
 * allocated AD buffer. The row's digest is made once per row: each field's AD then fits one
 * BLAKE2b block. The format byte selects the domain, so a format-2 value relabelled as format 1
 * (or the reverse) is opened with another AD and fails. docs/crypto.md gives the byte layout. */
#include "crypto_int.h"
#include <assert.h>
#include <sodium.h>
#include <string.h>

/* The AD of format `version`: row only in format 2. */
static void seal_ad(uint8_t version, struct cd_str customer_id, struct cd_str field_name,
                    const struct cd_crypto_row *row, uint8_t ad[CD_CRYPTO_HASH_LEN])
{
    struct cd_str parts[4] = {
        version == CD_CRYPTO_SEAL_VERSION ? CD_STR("candor.seal.v1") : CD_STR("candor.seal.v2"),
        customer_id, field_name, CD_STR_NULL};

    if (row)
        parts[3] = (struct cd_str){(const char *)row->digest, sizeof row->digest};
    cd__crypto_hash_parts(NULL, parts, row ? 4 : 3, ad);
}

void cd_crypto_row_bind(const struct cd_str *parts, size_t n, struct cd_crypto_row *out)
{
    struct cd_str all[1 + 16];

    assert(n <= 16); /* callers bind a handful of columns */
    all[0] = CD_STR("candor.seal.row.v2");
    for (size_t i = 0; i < n; i++)
        all[1 + i] = parts[i];
    cd__crypto_hash_parts(NULL, all, 1 + n, out->digest);
}

static enum cd_err seal(uint8_t version, const uint8_t key[CD_CRYPTO_KEY_LEN],
                        struct cd_str customer_id, struct cd_str field_name,
                        const struct cd_crypto_row *row, struct cd_str plaintext,
                        struct cd_buf *out)
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
    seal_ad(version, customer_id, field_name, row, ad);
    dst = (uint8_t *)out->p + out->len;
    dst[0] = version;
    cd_random_bytes(dst + 1, CD_CRYPTO_NONCE_LEN);
    crypto_aead_xchacha20poly1305_ietf_encrypt(dst + 1 + CD_CRYPTO_NONCE_LEN, NULL,
                                               (const uint8_t *)plaintext.p, plaintext.len, ad,
                                               sizeof ad, NULL, dst + 1, key);
    out->len += n;
    out->p[out->len] = '\0';
out:
    return err;
}

static enum cd_err open_sealed(uint8_t version, const uint8_t key[CD_CRYPTO_KEY_LEN],
                               struct cd_str customer_id, struct cd_str field_name,
                               const struct cd_crypto_row *row, struct cd_str sealed,
                               struct cd_buf *out)
{
    enum cd_err err = CD_OK;
    uint8_t ad[CD_CRYPTO_HASH_LEN];
    const uint8_t *src = (const uint8_t *)sealed.p;
    uint8_t *dst;
    size_t n;

    if (sealed.len < CD_CRYPTO_SEAL_OVERHEAD || src[0] != version) {
        err = cd_err_set(CD_ERR_CRYPTO, "sealed field has an unknown format");
        goto out;
    }
    n = sealed.len - CD_CRYPTO_SEAL_OVERHEAD;
    if ((err = cd_buf_reserve(out, n)) != CD_OK) {
        err = cd_err_set(err, "no room for an opened field of %zu bytes", n);
        goto out;
    }
    seal_ad(version, customer_id, field_name, row, ad);
    dst = (uint8_t *)out->p + out->len;
    /* libsodium checks the tag before it decrypts, so a forgery writes nothing into out. */
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(dst, NULL, NULL, src + 1 + CD_CRYPTO_NONCE_LEN,
                                                   sealed.len - 1 - CD_CRYPTO_NONCE_LEN, ad,
                                                   sizeof ad, src + 1, key) != 0) {
        err = cd_err_set(CD_ERR_CRYPTO, version == CD_CRYPTO_SEAL_VERSION
                                            ? "sealed field does not open with this key, "
                                              "customer and field"
                                            : "sealed field does not open with this key, "
                                              "customer, field and row");
        goto out;
    }
    out->len += n;
    out->p[out->len] = '\0';
out:
    return err;
}

enum cd_err cd_crypto_seal(const uint8_t key[CD_CRYPTO_KEY_LEN], struct cd_str customer_id,
                           struct cd_str field_name, struct cd_str plaintext, struct cd_buf *out)
{
    return seal(CD_CRYPTO_SEAL_VERSION, key, customer_id, field_name, NULL, plaintext, out);
}

enum cd_err cd_crypto_open(const uint8_t key[CD_CRYPTO_KEY_LEN], struct cd_str customer_id,
                           struct cd_str field_name, struct cd_str sealed, struct cd_buf *out)
{
    return open_sealed(CD_CRYPTO_SEAL_VERSION, key, customer_id, field_name, NULL, sealed, out);
}

enum cd_err cd_crypto_seal_bound(const uint8_t key[CD_CRYPTO_KEY_LEN], struct cd_str customer_id,
                                 struct cd_str field_name, const struct cd_crypto_row *row,
                                 struct cd_str plaintext, struct cd_buf *out)
{
    return seal(CD_CRYPTO_SEAL_VERSION_BOUND, key, customer_id, field_name, row, plaintext, out);
}

enum cd_err cd_crypto_open_bound(const uint8_t key[CD_CRYPTO_KEY_LEN], struct cd_str customer_id,
                                 struct cd_str field_name, const struct cd_crypto_row *row,
                                 struct cd_str sealed, struct cd_buf *out)
{
    return open_sealed(CD_CRYPTO_SEAL_VERSION_BOUND, key, customer_id, field_name, row, sealed,
                       out);
}

int cd_crypto_sealed_format(struct cd_str sealed)
{
    if (sealed.len < CD_CRYPTO_SEAL_OVERHEAD)
        return 0;
    uint8_t v = (uint8_t)sealed.p[0];
    return v == CD_CRYPTO_SEAL_VERSION || v == CD_CRYPTO_SEAL_VERSION_BOUND ? v : 0;
}

void cd_crypto_blind_index(const uint8_t index_key[CD_CRYPTO_KEY_LEN], struct cd_str kind,
                           struct cd_str normalized_value, uint8_t out[CD_CRYPTO_HASH_LEN])
{
    struct cd_str parts[3] = {CD_STR("candor.blind-index.v1"), kind, normalized_value};

    cd__crypto_hash_parts(index_key, parts, 3, out);
}

bool cd_crypto_equal(const void *a, const void *b, size_t n)
{
    return sodium_memcmp(a, b, n) == 0;
}
