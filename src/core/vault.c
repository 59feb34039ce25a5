/* Personal data at rest: each customer has a data key wrapped by the master key; every
 * personal field is sealed under it with the customer id and the field name as associated
 * data; identities are found through keyed blind indexes. Destroying the wrapped key
 * (crypto-shredding) makes every sealed copy of that customer's data unreadable. */
#include <stdio.h>
#include <string.h>
#include "core_int.h"

#define KEY_VERSION 1

void cd__core_key_new(const struct cd_core *c, const char *customer_id, struct cd__ckey *k,
                      uint8_t wrapped[CD_CRYPTO_WRAPPED_LEN])
{
    snprintf(k->customer_id, sizeof k->customer_id, "%s", customer_id);
    cd_crypto_data_key_new(k->key);
    cd_crypto_key_wrap(c->master, cd_str_c(customer_id), KEY_VERSION, k->key, wrapped);
}

enum cd_err cd__core_key_open(const struct cd_core *c, const char *customer_id,
                              struct cd_val wrapped, struct cd__ckey *k)
{
    if (wrapped.type != CD_VAL_BLOB)
        return cd_err_set(CD_ERR_CRYPTO, "the customer's data key has been destroyed");
    snprintf(k->customer_id, sizeof k->customer_id, "%s", customer_id);
    return cd_crypto_key_unwrap(c->master, cd_str_c(customer_id), KEY_VERSION, wrapped.p,
                                wrapped.len, k->key);
}

void cd__core_key_wipe(struct cd__ckey *k)
{
    cd_crypto_wipe(k->key, sizeof k->key);
}

void cd__core_lookup(const struct cd_core *c, struct cd_str kind, struct cd_str norm,
                     uint8_t out[CD_CRYPTO_HASH_LEN])
{
    cd_crypto_blind_index(c->index_key, kind, norm, out);
}

void cd__core_thread_hash(const struct cd_core *c, const char *customer_id, struct cd_str thread,
                          uint8_t out[CD_CRYPTO_HASH_LEN])
{
    char kind[CD_ID_MAX + 16];

    snprintf(kind, sizeof kind, "thread:%s", customer_id);
    cd_crypto_blind_index(c->index_key, cd_str_c(kind), thread, out);
}

enum cd_err cd__core_seal(const struct cd__ckey *k, const char *field, struct cd_str plain,
                          struct cd_buf *out)
{
    cd_buf_reset(out);
    return cd_crypto_seal(k->key, cd_str_c(k->customer_id), cd_str_c(field), plain, out);
}

enum cd_err cd__core_open(const struct cd__ckey *k, const char *field, struct cd_val sealed,
                          struct cd_buf *out, bool *present)
{
    cd_buf_reset(out);
    *present = sealed.type == CD_VAL_BLOB;
    if (!*present)
        return CD_OK;
    return cd_crypto_open(k->key, cd_str_c(k->customer_id), cd_str_c(field),
                          (struct cd_str){sealed.p, sealed.len}, out);
}
