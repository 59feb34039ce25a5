/* What other modules may learn of customers and interactions without reading personal data
 * (existence, state, jurisdiction, an interaction's customer and time; for consent's view of
 * customers their time zone, restriction and merges, and counts of outbound contacts), each
 * inside the caller's transaction, so no other module reads the core's tables; and notes
 * sealed for a customer: text another module keeps about them, under their data key, so it is
 * shredded with the rest of their data. */
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

/* ---- customers as a view kept outside the core sees them ---- */

#define ATTR_COLS                                                                              \
    "c.id, c.jurisdiction, c.time_zone, c.restricted, m.survivor_id, m.merged_at, c.updated_at"
#define ATTR_FROM " FROM customers c LEFT JOIN merges m ON m.merged_id = c.id"

struct attrs_walk {
    cd_core_attrs_fn fn;
    void *ctx;
};

static struct cd_str col_str(const struct cd_val *v)
{
    return v->type == CD_VAL_TEXT ? (struct cd_str){v->p, v->len} : CD_STR("");
}

static enum cd_err attrs_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct attrs_walk *w = ctx;
    struct cd_core_customer_attrs a = {
        .id = col_str(&cols[0]),
        .jurisdiction = col_str(&cols[1]),
        .time_zone = col_str(&cols[2]),
        .restricted = cols[3].type == CD_VAL_INT && cols[3].i != 0,
        .survivor_id = col_str(&cols[4]),
        .merged_at = cols[5].type == CD_VAL_INT ? cols[5].i : 0,
        .updated_at = cols[6].type == CD_VAL_INT ? cols[6].i : 0,
    };

    return w->fn(w->ctx, &a);
}

enum cd_err cd_core_customer_attrs(struct cd_tx *tx, struct cd_str id, cd_core_attrs_fn fn,
                                   void *ctx)
{
    struct attrs_walk w = {fn, ctx};
    struct cd_val p[1] = {CD_VTEXT(id)};

    return cd_tx_exec(tx, "SELECT " ATTR_COLS ATTR_FROM " WHERE c.id = $1", p, 1, attrs_row, &w,
                      NULL);
}

enum cd_err cd_core_customers_attrs(struct cd_tx *tx, cd_core_attrs_fn fn, void *ctx)
{
    struct attrs_walk w = {fn, ctx};

    return cd_tx_exec(tx, "SELECT " ATTR_COLS ATTR_FROM " ORDER BY c.id", NULL, 0, attrs_row, &w,
                      NULL);
}

enum cd_err cd_core_customers_changed(struct cd_tx *tx, int64_t after_ms, struct cd_str after_id,
                                      int limit, cd_core_attrs_fn fn, void *ctx)
{
    struct attrs_walk w = {fn, ctx};
    struct cd_val p[3] = {CD_VINT(after_ms), CD_VTEXT(after_id), CD_VINT(limit)};

    return cd_tx_exec(tx,
                      "SELECT " ATTR_COLS ATTR_FROM
                      " WHERE c.updated_at >= $1 AND (c.updated_at > $1 OR c.id > $2)"
                      " ORDER BY c.updated_at, c.id LIMIT $3",
                      p, 3, attrs_row, &w, NULL);
}

struct merges_walk {
    cd_core_merge_fn fn;
    void *ctx;
};

static enum cd_err merges_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct merges_walk *w = ctx;

    return w->fn(w->ctx, col_str(&cols[0]), col_str(&cols[1]),
                 cols[2].type == CD_VAL_INT ? cols[2].i : 0);
}

enum cd_err cd_core_merges(struct cd_tx *tx, cd_core_merge_fn fn, void *ctx)
{
    struct merges_walk w = {fn, ctx};

    return cd_tx_exec(tx,
                      "SELECT merged_id, survivor_id, merged_at FROM merges"
                      " ORDER BY merged_at, merged_id",
                      NULL, 0, merges_row, &w, NULL);
}

enum cd_err cd_core_outbound_count(struct cd_tx *tx, struct cd_str customer_id,
                                   const char *purpose, const char *channel, int64_t since_ms,
                                   int64_t *count)
{
    struct cd_val p[4] = {CD_VTEXT(customer_id), CD_VCSTR(purpose), CD_VINT(since_ms),
                          CD_VCSTR(channel ? channel : "")};

    return cd_tx_int(tx,
                     channel == NULL
                         ? "SELECT count(*) FROM interactions WHERE customer_id = $1 AND "
                           "direction = 'outbound' AND purpose = $2 AND occurred_at >= $3"
                         : "SELECT count(*) FROM interactions WHERE customer_id = $1 AND "
                           "direction = 'outbound' AND purpose = $2 AND occurred_at >= $3 AND "
                           "channel = $4",
                     p, channel == NULL ? 3 : 4, count);
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
