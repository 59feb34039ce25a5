/* What other modules may learn of customers and interactions without reading personal data
 * (existence, state, jurisdiction, an interaction's customer and time), and notes sealed for a
 * customer: text another module keeps about them, under their data key, so it is shredded with
 * the rest of their data. */
#include <string.h>
#include "core_int.h"

static enum cd_err ref_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct cd_core_customer_ref *r = ctx;

    r->exists = true;
    cd__core_col_text(cols[0], r->merged_into, sizeof r->merged_into);
    r->erased = cols[1].type == CD_VAL_INT;
    cd__core_col_text(cols[2], r->jurisdiction, sizeof r->jurisdiction);
    r->restricted = cols[3].type == CD_VAL_INT && cols[3].i != 0;
    return CD_OK;
}

enum cd_err cd_core_customer_ref(struct cd_tx *tx, struct cd_str id,
                                 struct cd_core_customer_ref *out)
{
    memset(out, 0, sizeof *out);
    if (!cd_id_valid(id, "cus"))
        return CD_OK;
    memcpy(out->id, id.p, id.len);
    out->id[id.len] = '\0';
    struct cd_val p[] = {CD_VCSTR(out->id)};
    return cd_tx_exec(tx,
                      "SELECT merged_into, erased_at, jurisdiction, restricted FROM customers"
                      " WHERE id = $1",
                      p, 1, ref_row, out, NULL);
}

static enum cd_err interaction_ref_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct cd_core_interaction_ref *r = ctx;

    r->exists = true;
    cd__core_col_text(cols[0], r->customer_id, sizeof r->customer_id);
    cd__core_col_text(cols[1], r->direction, sizeof r->direction);
    r->occurred_at = cols[2].i;
    return CD_OK;
}

enum cd_err cd_core_interaction_ref(struct cd_tx *tx, struct cd_str id,
                                    struct cd_core_interaction_ref *out)
{
    char key[CD_ID_MAX];

    memset(out, 0, sizeof *out);
    if (!cd_id_valid(id, "int"))
        return CD_OK;
    memcpy(key, id.p, id.len);
    key[id.len] = '\0';
    struct cd_val p[] = {CD_VCSTR(key)};
    return cd_tx_exec(tx,
                      "SELECT customer_id, direction, occurred_at FROM interactions WHERE id = $1",
                      p, 1, interaction_ref_row, out, NULL);
}

/* ---- notes sealed for a customer ---- */

struct note_key {
    struct cd_core *c;
    const char *id;
    struct cd__ckey k;
    bool found, open;
};

static enum cd_err note_key_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct note_key *nk = ctx;

    nk->found = true;
    if (cols[0].type != CD_VAL_BLOB)
        return CD_OK; /* erased: the key is gone */
    if (cd__core_key_open(nk->c, nk->id, cols[0], &nk->k) != CD_OK)
        return cd_err_set(CD_ERR_INTEGRITY, "customer %s: the data key does not unwrap", nk->id);
    nk->open = true;
    return CD_OK;
}

static enum cd_err note_key_fn(struct cd_tx *tx, void *ctx)
{
    struct note_key *nk = ctx;
    struct cd_val p[] = {CD_VCSTR(nk->id)};

    return cd_tx_exec(tx, "SELECT key_wrapped FROM customers WHERE id = $1", p, 1, note_key_row,
                      nk, NULL);
}

static enum cd_err note_key(struct cd_core *c, struct cd_str customer_id, char id[CD_ID_MAX],
                            struct note_key *nk)
{
    enum cd_err err;

    if (!cd_id_valid(customer_id, "cus"))
        return cd_err_set(CD_ERR_NOT_FOUND, "no customer with this id");
    memcpy(id, customer_id.p, customer_id.len);
    id[customer_id.len] = '\0';
    *nk = (struct note_key){.c = c, .id = id};
    if ((err = cd_store_read(c->store, note_key_fn, nk)) != CD_OK)
        return err;
    if (!nk->found)
        return cd_err_set(CD_ERR_NOT_FOUND, "no customer with this id");
    if (!nk->open)
        return cd_err_set(CD_ERR_CRYPTO, "the customer's data key was destroyed (erased)");
    return CD_OK;
}

enum cd_err cd_core_note_seal(struct cd_core *c, struct cd_str customer_id, const char *field,
                              struct cd_str plain, struct cd_buf *out)
{
    char id[CD_ID_MAX];
    struct note_key nk;
    enum cd_err err;

    if ((err = note_key(c, customer_id, id, &nk)) != CD_OK)
        return err;
    err = cd__core_seal(&nk.k, field, plain, out);
    cd__core_key_wipe(&nk.k);
    return err;
}

enum cd_err cd_core_note_open(struct cd_core *c, struct cd_str customer_id, const char *field,
                              struct cd_val sealed, struct cd_buf *out)
{
    char id[CD_ID_MAX];
    struct note_key nk;
    bool present = false;
    enum cd_err err;

    if ((err = note_key(c, customer_id, id, &nk)) != CD_OK)
        return err;
    err = cd__core_open(&nk.k, field, sealed, out, &present);
    cd__core_key_wipe(&nk.k);
    if (err == CD_ERR_CRYPTO)
        return cd_err_set(CD_ERR_INTEGRITY, "a note sealed for customer %s (%s) does not open",
                          id, field);
    return err;
}
