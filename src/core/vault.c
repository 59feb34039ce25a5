/* Personal data at rest: each customer has a data key wrapped by the master key; every
 * personal field is sealed under it with the customer id and the field name as associated
 * data, and an interaction's fields also with their row (id, channel, direction, occurred_at,
 * purpose); identities are found through keyed blind indexes. Destroying the wrapped key
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

void cd__core_interaction_binding(struct cd__row_binding *b, const char *id, const char *channel,
                                  const char *direction, int64_t occurred_at,
                                  const char *purpose)
{
    uint8_t at[8];
    uint64_t v = (uint64_t)occurred_at;

    for (int i = 7; i >= 0; i--, v >>= 8)
        at[i] = (uint8_t)v;
    struct cd_str parts[5] = {cd_str_c(id), cd_str_c(channel), cd_str_c(direction),
                              {(const char *)at, sizeof at}, cd_str_c(purpose)};
    cd_crypto_row_bind(parts, 5, &b->row);
    b->id = id;
}

enum cd_err cd__core_seal_row(const struct cd__ckey *k, const char *field,
                              const struct cd__row_binding *b, struct cd_str plain,
                              struct cd_buf *out)
{
    cd_buf_reset(out);
    return cd_crypto_seal_bound(k->key, cd_str_c(k->customer_id), cd_str_c(field), &b->row,
                                plain, out);
}

enum cd_err cd__core_open_row_quiet(const struct cd__ckey *k, const char *field,
                                    const struct cd__row_binding *b, struct cd_val sealed,
                                    bool legacy, struct cd_buf *out, bool *present)
{
    struct cd_str v = {sealed.p, sealed.len};
    int format = cd_crypto_sealed_format(v);

    cd_buf_reset(out);
    *present = sealed.type == CD_VAL_BLOB;
    if (!*present)
        return CD_OK;
    if (format == CD_CRYPTO_SEAL_VERSION_BOUND)
        return cd_crypto_open_bound(k->key, cd_str_c(k->customer_id), cd_str_c(field), &b->row,
                                    v, out);
    if (format == CD_CRYPTO_SEAL_VERSION && legacy)
        return cd_crypto_open(k->key, cd_str_c(k->customer_id), cd_str_c(field), v, out);
    return cd_err_set(CD_ERR_CRYPTO, format == CD_CRYPTO_SEAL_VERSION
                                         ? "sealed in the legacy format"
                                         : "sealed field has an unknown format");
}

enum cd_err cd__core_open_row(const struct cd__ckey *k, const char *field,
                              const struct cd__row_binding *b, struct cd_val sealed, bool legacy,
                              struct cd_buf *out, bool *present)
{
    enum cd_err err = cd__core_open_row_quiet(k, field, b, sealed, legacy, out, present);
    int format = cd_crypto_sealed_format((struct cd_str){sealed.p, sealed.len});
    char id[CD_ID_MAX];

    if (err != CD_ERR_CRYPTO)
        return err;
    /* The customer's key opened (the caller unwrapped it), so the value is not this row's: it
     * was copied from another row, its row's bound metadata or customer changed, its bytes were
     * altered, or it is in the legacy format in a row that was re-sealed. */
    cd_log_safe(b->id, id, sizeof id);
    cd_integrity_report(CD_INTEGRITY_SEALED_FIELD,
                        "\"interaction_id\":\"%s\",\"customer_id\":\"%s\",\"field\":\"%s\","
                        "\"format\":%d",
                        id, k->customer_id, field, format);
    return cd_err_set(CD_ERR_INTEGRITY,
                      "interaction %s: its sealed %s does not belong to this row (the row's "
                      "customer, channel, direction, occurred_at or purpose was changed, or the "
                      "value was copied from another row%s); run candor audit verify",
                      id, field, format == CD_CRYPTO_SEAL_VERSION ? " in the legacy format" : "");
}

/* ---- vaults: other modules' sealed values ---- */

struct vault_read {
    struct cd_buf wrapped;
    bool found, merged;
};

static enum cd_err vault_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct vault_read *r = ctx;

    r->found = true;
    r->merged = cols[1].type != CD_VAL_NULL;
    if (cols[0].type == CD_VAL_BLOB)
        return cd_buf_append(&r->wrapped, cols[0].p, cols[0].len);
    return CD_OK;
}

enum cd_err cd_core_vault_open(struct cd_core *c, struct cd_tx *tx, struct cd_str customer_id,
                               struct cd_core_vault **out)
{
    struct vault_read r = {CD_BUF_INIT(256), false, false};
    struct cd_core_vault *v = NULL;
    char id[CD_ID_MAX];
    enum cd_err err;

    if (!cd_id_valid(customer_id, "cus") || customer_id.len >= sizeof id)
        return cd_err_set(CD_ERR_NOT_FOUND, "no customer with this id");
    memcpy(id, customer_id.p, customer_id.len);
    id[customer_id.len] = '\0';
    struct cd_val p[] = {CD_VCSTR(id)};
    if ((err = cd_tx_exec(tx, "SELECT key_wrapped, merged_into FROM customers WHERE id = $1", p,
                          1, vault_row, &r, NULL)) != CD_OK)
        goto out;
    if (!r.found || r.merged) {
        err = cd_err_set(CD_ERR_NOT_FOUND, "no customer with this id");
        goto out;
    }
    if ((v = cd_calloc(1, sizeof *v)) == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    struct cd_val w = {r.wrapped.len ? CD_VAL_BLOB : CD_VAL_NULL, 0, r.wrapped.p, r.wrapped.len};
    if ((err = cd__core_key_open(c, id, w, &v->k)) != CD_OK)
        goto out;
    *out = v;
    v = NULL;
out:
    if (v) {
        cd__core_key_wipe(&v->k);
        cd_free(v);
    }
    cd_buf_free(&r.wrapped);
    return err;
}

void cd_core_vault_close(struct cd_core_vault *v)
{
    if (v == NULL)
        return;
    cd__core_key_wipe(&v->k);
    cd_free(v);
}

const char *cd_core_vault_customer(const struct cd_core_vault *v)
{
    return v->k.customer_id;
}

enum cd_err cd_core_vault_seal(const struct cd_core_vault *v, const char *field,
                               struct cd_str plain, struct cd_buf *out)
{
    return cd__core_seal(&v->k, field, plain, out);
}

enum cd_err cd_core_vault_unseal(const struct cd_core_vault *v, const char *field,
                                 struct cd_val sealed, struct cd_buf *out, bool *present)
{
    return cd__core_open(&v->k, field, sealed, out, present);
}
