/* Ed25519 signing keys (libsodium) and public-key export in the forms verifiers need: raw,
 * hex, and PEM SubjectPublicKeyInfo for `openssl pkeyutl`.
 *
 * The DER of an Ed25519 SubjectPublicKeyInfo (RFC 8410) is a fixed 12-byte prefix followed by
 * the 32-byte key, so it is written and parsed directly rather than through an ASN.1 library. */
#include "crypto_int.h"
#include <sodium.h>
#include <string.h>

static const uint8_t spki_prefix[12] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03,
                                        0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};
#define SPKI_LEN (sizeof spki_prefix + CD_CRYPTO_PK_LEN)
#define PEM_BEGIN "-----BEGIN PUBLIC KEY-----"
#define PEM_END "-----END PUBLIC KEY-----"

void cd_crypto_signer_from_seed(const uint8_t seed[32], struct cd_crypto_signer *out)
{
    crypto_sign_seed_keypair(out->pk, out->sk, seed);
}

enum cd_err cd_crypto_signer_load_or_create(const char *path, struct cd_crypto_signer *out)
{
    enum cd_err err;
    uint8_t seed[crypto_sign_SEEDBYTES];

    if ((err = cd_crypto_keyfile_load_or_create(path, sizeof seed, seed)) == CD_OK)
        cd_crypto_signer_from_seed(seed, out);
    sodium_memzero(seed, sizeof seed);
    return err;
}

void cd_crypto_signer_wipe(struct cd_crypto_signer *s)
{
    sodium_memzero(s, sizeof *s);
}

void cd_crypto_sign(const struct cd_crypto_signer *s, const void *msg, size_t n,
                    uint8_t sig[CD_CRYPTO_SIG_LEN])
{
    crypto_sign_detached(sig, NULL, msg, n, s->sk);
}

enum cd_err cd_crypto_verify(const uint8_t pk[CD_CRYPTO_PK_LEN], const void *msg, size_t n,
                             const uint8_t sig[CD_CRYPTO_SIG_LEN])
{
    if (crypto_sign_verify_detached(sig, msg, n, pk) != 0)
        return cd_err_set(CD_ERR_INTEGRITY, "Ed25519 signature does not verify");
    return CD_OK;
}

void cd_crypto_pubkey_hex(const uint8_t pk[CD_CRYPTO_PK_LEN], char out[CD_CRYPTO_PK_HEX_LEN + 1])
{
    cd_hex_encode(pk, CD_CRYPTO_PK_LEN, out);
}

static void spki_der(const uint8_t pk[CD_CRYPTO_PK_LEN], uint8_t der[SPKI_LEN])
{
    memcpy(der, spki_prefix, sizeof spki_prefix);
    memcpy(der + sizeof spki_prefix, pk, CD_CRYPTO_PK_LEN);
}

enum cd_err cd_crypto_pubkey_pem(const uint8_t pk[CD_CRYPTO_PK_LEN], struct cd_buf *out)
{
    enum cd_err err;
    uint8_t der[SPKI_LEN];
    char b64[sodium_base64_ENCODED_LEN(SPKI_LEN, sodium_base64_VARIANT_ORIGINAL)];
    size_t old = out->len;

    spki_der(pk, der);
    sodium_bin2base64(b64, sizeof b64, der, sizeof der, sodium_base64_VARIANT_ORIGINAL);
    /* 60 base64 characters: one line, under PEM's 64-column limit. */
    if ((err = cd_buf_printf(out, PEM_BEGIN "\n%s\n" PEM_END "\n", b64)) != CD_OK) {
        out->len = old;
        if (out->p != NULL)
            out->p[old] = '\0';
        err = cd_err_set(err, "no room for a PEM public key");
    }
    return err;
}

static struct cd_str trim(struct cd_str s)
{
    while (s.len && strchr(" \t\r\n", s.p[0]) != NULL && s.p[0] != '\0') {
        s.p++;
        s.len--;
    }
    while (s.len && strchr(" \t\r\n", s.p[s.len - 1]) != NULL && s.p[s.len - 1] != '\0')
        s.len--;
    return s;
}

enum cd_err cd_crypto_pubkey_parse(struct cd_str text, uint8_t pk[CD_CRYPTO_PK_LEN])
{
    enum cd_err err = CD_OK;
    struct cd_str t = trim(text), body;
    const size_t bl = sizeof PEM_BEGIN - 1, el = sizeof PEM_END - 1;
    uint8_t der[SPKI_LEN + 1];
    size_t derlen = 0;

    if (t.len == CD_CRYPTO_PK_HEX_LEN) {
        if (cd_hex_decode(t, pk, CD_CRYPTO_PK_LEN) != CD_OK)
            err = cd_err_set(CD_ERR_INVALID, "public key is not 64 hex digits");
        goto out;
    }
    if (t.len < bl + el || memcmp(t.p, PEM_BEGIN, bl) != 0 ||
        memcmp(t.p + t.len - el, PEM_END, el) != 0) {
        err = cd_err_set(CD_ERR_INVALID, "public key must be 64 hex digits or a PEM PUBLIC KEY");
        goto out;
    }
    body = (struct cd_str){t.p + bl, t.len - bl - el};
    if (sodium_base642bin(der, sizeof der, body.p, body.len, " \t\r\n", &derlen, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        derlen != SPKI_LEN || memcmp(der, spki_prefix, sizeof spki_prefix) != 0) {
        err = cd_err_set(CD_ERR_INVALID, "PEM public key is not an Ed25519 SubjectPublicKeyInfo");
        goto out;
    }
    memcpy(pk, der + sizeof spki_prefix, CD_CRYPTO_PK_LEN);
out:
    return err;
}

enum cd_err cd_crypto_pubkey_id(const uint8_t pk[CD_CRYPTO_PK_LEN], uint8_t out[CD_CRYPTO_HASH_LEN])
{
    uint8_t der[SPKI_LEN];

    spki_der(pk, der);
    return cd_crypto_sha256(der, sizeof der, out);
}
