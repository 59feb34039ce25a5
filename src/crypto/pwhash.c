/* Bearer secrets, and password hashing for staff accounts: Argon2id through libsodium, which owns the salt, the
 * parameters and the encoding, so a hash made with stronger limits later still verifies. Each
 * hash takes 64 MiB: at most PWHASH_AT_ONCE run at a time, so a burst of sign-ins (a guessing
 * attack among them) waits for memory instead of taking a server's worth of it. */
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include "crypto_int.h"

#define PWHASH_AT_ONCE 2

static pthread_mutex_t slots_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t slots_cv = PTHREAD_COND_INITIALIZER;
static int slots_used;

static void slot_take(void)
{
    pthread_mutex_lock(&slots_mu);
    while (slots_used == PWHASH_AT_ONCE)
        pthread_cond_wait(&slots_cv, &slots_mu);
    slots_used++;
    pthread_mutex_unlock(&slots_mu);
}

static void slot_give(void)
{
    pthread_mutex_lock(&slots_mu);
    slots_used--;
    pthread_cond_signal(&slots_cv);
    pthread_mutex_unlock(&slots_mu);
}

enum cd_err cd_crypto_pwhash(struct cd_str password, char out[CD_CRYPTO_PWHASH_MAX])
{
    enum cd_err err;

    if ((err = cd_crypto_init()) != CD_OK)
        return err;
    _Static_assert(crypto_pwhash_STRBYTES <= CD_CRYPTO_PWHASH_MAX, "room for a hash");
    slot_take();
    /* libsodium fails only when it cannot have the memory the limits ask for. */
    int rc = crypto_pwhash_str_alg(out, password.p ? password.p : "", password.len,
                                   crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                   crypto_pwhash_MEMLIMIT_INTERACTIVE,
                                   crypto_pwhash_ALG_ARGON2ID13);
    slot_give();
    return rc == 0 ? CD_OK : cd_err_set(CD_ERR_NOMEM, "no memory to hash the password");
}

bool cd_crypto_pwhash_verify(const char *hash, struct cd_str password)
{
    if (cd_crypto_init() != CD_OK || hash == NULL ||
        strncmp(hash, crypto_pwhash_argon2id_STRPREFIX,
                sizeof crypto_pwhash_argon2id_STRPREFIX - 1) != 0)
        return false;
    slot_take();
    bool ok = crypto_pwhash_str_verify(hash, password.p ? password.p : "", password.len) == 0;
    slot_give();
    return ok;
}

enum cd_err cd_crypto_secret_new(const char prefix[5], char out[CD_CRYPTO_SECRET_LEN + 1],
                                 uint8_t hash[CD_CRYPTO_HASH_LEN])
{
    uint8_t secret[32];

    cd_random_bytes(secret, sizeof secret);
    memcpy(out, prefix, 4);
    cd_b64url_encode(secret, sizeof secret, out + 4);
    cd_crypto_wipe(secret, sizeof secret);
    return cd_crypto_sha256(out, CD_CRYPTO_SECRET_LEN, hash);
}

enum cd_err cd_crypto_derived(const char *label, struct cd_str secret,
                              char out[CD_CRYPTO_DERIVED_LEN + 1])
{
    uint8_t h[CD_CRYPTO_HASH_LEN];
    struct cd_str parts[] = {cd_str_c(label), secret};
    enum cd_err err = cd_crypto_sha256v(parts, 2, h);

    if (err != CD_OK)
        return err;
    cd_b64url_encode(h, sizeof h, out);
    return CD_OK;
}

bool cd_crypto_derived_check(const char *label, struct cd_str secret, struct cd_str presented)
{
    char want[CD_CRYPTO_DERIVED_LEN + 1];

    return presented.len == CD_CRYPTO_DERIVED_LEN &&
           cd_crypto_derived(label, secret, want) == CD_OK &&
           cd_ct_eq(want, presented.p, CD_CRYPTO_DERIVED_LEN);
}

void cd_crypto_code_new(char out[CD_CRYPTO_CODE_DIGITS + 1])
{
    uint32_t v;

    _Static_assert(CD_CRYPTO_CODE_DIGITS == 8, "the bound below is for 10^8");
    /* Rejection sampling: no modulo bias. 4,200,000,000 is the largest multiple of 10^8 below
     * 2^32. */
    do
        cd_random_bytes(&v, sizeof v);
    while (v >= 4200000000u);
    snprintf(out, CD_CRYPTO_CODE_DIGITS + 1, "%08u", (unsigned)(v % 100000000u));
}

bool cd_crypto_code_shaped(struct cd_str s)
{
    bool ok = s.len == CD_CRYPTO_CODE_DIGITS;

    for (size_t i = 0; ok && i < s.len; i++)
        ok = s.p[i] >= '0' && s.p[i] <= '9';
    return ok;
}
