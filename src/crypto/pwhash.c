/* Password hashing for staff accounts: Argon2id through libsodium, which owns the salt, the
 * parameters and the encoding, so a hash made with stronger limits later still verifies. */
#include <sodium.h>
#include <string.h>
#include "crypto_int.h"

enum cd_err cd_crypto_pwhash(struct cd_str password, char out[CD_CRYPTO_PWHASH_MAX])
{
    enum cd_err err;

    if ((err = cd_crypto_init()) != CD_OK)
        return err;
    _Static_assert(crypto_pwhash_STRBYTES <= CD_CRYPTO_PWHASH_MAX, "room for a hash");
    /* libsodium fails only when it cannot have the memory the limits ask for. */
    if (crypto_pwhash_str_alg(out, password.p ? password.p : "", password.len,
                              crypto_pwhash_OPSLIMIT_INTERACTIVE,
                              crypto_pwhash_MEMLIMIT_INTERACTIVE,
                              crypto_pwhash_ALG_ARGON2ID13) != 0)
        return cd_err_set(CD_ERR_NOMEM, "no memory to hash the password");
    return CD_OK;
}

bool cd_crypto_pwhash_verify(const char *hash, struct cd_str password)
{
    if (cd_crypto_init() != CD_OK || hash == NULL ||
        strncmp(hash, crypto_pwhash_argon2id_STRPREFIX,
                sizeof crypto_pwhash_argon2id_STRPREFIX - 1) != 0)
        return false;
    return crypto_pwhash_str_verify(hash, password.p ? password.p : "", password.len) == 0;
}
