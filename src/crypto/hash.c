/* Library start-up and SHA-256: on the CPU's SHA extensions where it has them (sha256_ni.c),
 * else over OpenSSL EVP.
 *
 * The one-shot functions keep one EVP_MD_CTX per thread: creating a context per call costs an
 * allocation and a provider lookup, which for 300-byte audit rows is as much as the hashing.
 * A pthread key destructor frees the context when a thread exits; the main thread's context
 * stays reachable through thread-local storage until the process ends. */
#include "crypto_int.h"
#include <openssl/evp.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static enum cd_err init_result = CD_ERR_CRYPTO;
static EVP_MD *sha256_md;
static pthread_key_t ctx_key;
static _Thread_local EVP_MD_CTX *tl_ctx;
static bool sha_ni, sha_ni_found; /* set once by do_init (cd__crypto_sha_ni_use in tests) */

static void free_thread_ctx(void *p)
{
    EVP_MD_CTX_free(p);
}

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
    if (pthread_key_create(&ctx_key, free_thread_ctx) != 0)
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

static enum cd_err thread_ctx(EVP_MD_CTX **out)
{
    enum cd_err err = CD_OK;

    if (tl_ctx == NULL) {
        if ((err = cd_crypto_init()) != CD_OK)
            goto out;
        if ((tl_ctx = EVP_MD_CTX_new()) == NULL) {
            err = cd_err_set(CD_ERR_NOMEM, "out of memory for a digest context");
            goto out;
        }
        if (pthread_setspecific(ctx_key, tl_ctx) != 0) {
            EVP_MD_CTX_free(tl_ctx);
            tl_ctx = NULL;
            err = cd_err_set(CD_ERR_NOMEM, "cannot register the digest context");
            goto out;
        }
    }
    *out = tl_ctx;
out:
    return err;
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
    enum cd_err err;
    EVP_MD_CTX *ctx = NULL;
    unsigned int len = 0;

#if CD__CRYPTO_HAVE_SHA_NI
    if (use_ni()) {
        cd__crypto_sha256_ni(parts, nparts, out);
        return CD_OK;
    }
#endif
    if ((err = thread_ctx(&ctx)) != CD_OK)
        goto out;
    if (!EVP_DigestInit_ex2(ctx, sha256_md, NULL)) {
        err = cd_err_set(CD_ERR_CRYPTO, "SHA-256 init failed");
        goto out;
    }
    for (size_t i = 0; i < nparts; i++) {
        if (parts[i].len && !EVP_DigestUpdate(ctx, parts[i].p, parts[i].len)) {
            err = cd_err_set(CD_ERR_CRYPTO, "SHA-256 update failed");
            goto out;
        }
    }
    if (!EVP_DigestFinal_ex(ctx, out, &len) || len != CD_CRYPTO_HASH_LEN)
        err = cd_err_set(CD_ERR_CRYPTO, "SHA-256 final failed");
out:
    return err;
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
