/* Library start-up and SHA-256 over OpenSSL.
 *
 * One-shot hashes use OpenSSL's SHA256_Init/Update/Final: the same SHA-extension code as EVP,
 * without EVP's per-call set-up and finalisation, which cost as much as hashing a 65-byte
 * Merkle node (135 ns against 70 ns). They are deprecated in OpenSSL 3 in favour of EVP, hence
 * OPENSSL_SUPPRESS_DEPRECATED; the incremental form stays on EVP. The pair form hashes two
 * messages at once on the SHA extensions (sha256_ni.c), which OpenSSL has no call for. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "crypto_int.h"
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static enum cd_err init_result = CD_ERR_CRYPTO;
static EVP_MD *sha256_md;
static bool sha_ni, sha_ni_found; /* set once by do_init (cd__crypto_sha_ni_use in tests) */

static void do_init(void)
{
    /* Random bytes (ids, nonces, keys) from libsodium's ChaCha20 generator, seeded and
     * reseeded from the kernel, instead of one getrandom(2) call per request field. */
    randombytes_set_implementation(&randombytes_internal_implementation);
    if (sodium_init() < 0)
        return;
    /* Fetched once: EVP_sha256() would make OpenSSL look the implementation up on every init. */
    if ((sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL)
        return;
#if CD__CRYPTO_HAVE_SHA_NI
    sha_ni = sha_ni_found = cd__crypto_sha_ni_detect();
#endif
    init_result = CD_OK;
}

enum cd_err cd_crypto_init(void)
{
    pthread_once(&init_once, do_init);
    if (init_result != CD_OK)
        return cd_err_set(CD_ERR_CRYPTO, "crypto library initialisation failed");
    return CD_OK;
}

void cd_crypto_wipe(void *p, size_t n)
{
    if (n)
        sodium_memzero(p, n);
}

bool cd__crypto_sha_ni_use(bool on)
{
    pthread_once(&init_once, do_init);
    sha_ni = on && sha_ni_found;
    return sha_ni;
}

/* Whether the SHA-extension path is on; pthread_once orders the read after do_init. */
static bool use_ni(void)
{
    pthread_once(&init_once, do_init);
    return CD__CRYPTO_HAVE_SHA_NI && sha_ni;
}

enum cd_err cd_crypto_sha256v(const struct cd_str *parts, size_t nparts,
                              uint8_t out[CD_CRYPTO_HASH_LEN])
{
    SHA256_CTX ctx;

    /* These calls only fail on NULL arguments. */
    SHA256_Init(&ctx);
    for (size_t i = 0; i < nparts; i++)
        if (parts[i].len)
            SHA256_Update(&ctx, parts[i].p, parts[i].len);
    SHA256_Final(out, &ctx);
    OPENSSL_cleanse(&ctx, sizeof ctx);
    return CD_OK;
}

enum cd_err cd_crypto_sha256(const void *p, size_t n, uint8_t out[CD_CRYPTO_HASH_LEN])
{
    struct cd_str part = {p, n};

    return cd_crypto_sha256v(&part, 1, out);
}

enum cd_err cd_crypto_sha256_pair(const void *pa, size_t na, const void *pb, size_t nb,
                                  const void *body, size_t n, uint8_t oa[CD_CRYPTO_HASH_LEN],
                                  uint8_t ob[CD_CRYPTO_HASH_LEN])
{
    struct cd_str a[2] = {{pa, na}, {body, n}}, b[2] = {{pb, nb}, {body, n}};
    uint8_t ha[CD_CRYPTO_HASH_LEN], hb[CD_CRYPTO_HASH_LEN];
    enum cd_err err;

#if CD__CRYPTO_HAVE_SHA_NI
    if (use_ni()) {
        cd__crypto_sha256_ni_pair(pa, na, pb, nb, body, n, oa, ob);
        return CD_OK;
    }
#endif
    /* Both digests first, so the outputs may alias the prefixes. */
    if ((err = cd_crypto_sha256v(a, 2, ha)) != CD_OK || (err = cd_crypto_sha256v(b, 2, hb)) != CD_OK)
        return err;
    memcpy(oa, ha, CD_CRYPTO_HASH_LEN);
    memcpy(ob, hb, CD_CRYPTO_HASH_LEN);
    return CD_OK;
}

enum cd_err cd_crypto_sha256_init(struct cd_crypto_sha256 *h)
{
    enum cd_err err = CD_OK;

    if ((err = cd_crypto_init()) != CD_OK)
        goto out;
    if (h->ctx == NULL && (h->ctx = EVP_MD_CTX_new()) == NULL) {
        err = cd_err_set(CD_ERR_NOMEM, "out of memory for a digest context");
        goto out;
    }
    if (!EVP_DigestInit_ex2(h->ctx, sha256_md, NULL))
        err = cd_err_set(CD_ERR_CRYPTO, "SHA-256 init failed");
out:
    return err;
}

enum cd_err cd_crypto_sha256_update(struct cd_crypto_sha256 *h, const void *p, size_t n)
{
    if (n && !EVP_DigestUpdate(h->ctx, p, n))
        return cd_err_set(CD_ERR_CRYPTO, "SHA-256 update failed");
    return CD_OK;
}

enum cd_err cd_crypto_sha256_final(struct cd_crypto_sha256 *h, uint8_t out[CD_CRYPTO_HASH_LEN])
{
    unsigned int len = 0;

    if (!EVP_DigestFinal_ex(h->ctx, out, &len) || len != CD_CRYPTO_HASH_LEN)
        return cd_err_set(CD_ERR_CRYPTO, "SHA-256 final failed");
    /* Ready for the next message, so callers hashing many rows never re-allocate. */
    if (!EVP_DigestInit_ex2(h->ctx, sha256_md, NULL))
        return cd_err_set(CD_ERR_CRYPTO, "SHA-256 init failed");
    return CD_OK;
}

void cd_crypto_sha256_free(struct cd_crypto_sha256 *h)
{
    EVP_MD_CTX_free(h->ctx);
    h->ctx = NULL;
}

void cd_crypto_hmac_sha256(const uint8_t *key, size_t keylen, const struct cd_str *parts,
                           size_t nparts, uint8_t out[CD_CRYPTO_HASH_LEN])
{
    crypto_auth_hmacsha256_state st;

    crypto_auth_hmacsha256_init(&st, key, keylen);
    for (size_t i = 0; i < nparts; i++)
        crypto_auth_hmacsha256_update(&st, (const unsigned char *)parts[i].p, parts[i].len);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof st);
}
