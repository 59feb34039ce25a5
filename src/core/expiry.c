/* What the retention rules find expired in core's tables, and the deletion of interactions
 * whose time is up. Whole customers expire through cd_core_customer_shred (crypto-shredding);
 * an interaction expires by deleting its row, with what was derived from it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core_int.h"

/* One row as a JSON string (one column) or pair (two). */
static enum cd_err pair_row(void *ctx, const struct cd_val *c, size_t n)
{
    json_t *v = n == 1 ? json_stringn(c[0].p, c[0].len)
                       : json_pack("[s%,s%]", c[0].p, c[0].len, c[1].p, c[1].len);

    return v && json_array_append_new(ctx, v) == 0 ? CD_OK : CD_ERR_NOMEM;
}

struct expiry_q {
    const char *sql;
    struct cd_val p[4];
    size_t np;
    json_t *out;
};

static enum cd_err expiry_fn(struct cd_tx *tx, void *ctx)
{
    struct expiry_q *q = ctx;

    json_array_clear(q->out);
    return cd_tx_exec(tx, q->sql, q->p, q->np, pair_row, q->out, NULL);
}

static enum cd_err run_query(struct cd_core *c, struct expiry_q *q, json_t **out)
{
    enum cd_err err;

    if ((q->out = json_array()) == NULL)
        return CD_ERR_NOMEM;
    if ((err = cd_store_read(c->store, expiry_fn, q)) != CD_OK) {
        json_decref(q->out);
        return err;
    }
    *out = q->out;
    return CD_OK;
}

enum cd_err cd_core_interactions_expiring(struct cd_core *c, const char *purpose, int64_t cutoff,
                                          bool after_last_contact, const char *after_id,
                                          int limit, json_t **out)
{
    struct expiry_q q = {
        after_last_contact
            /* The customer's last contact is their newest interaction of any purpose. */
            ? "SELECT i.id, i.customer_id FROM interactions i WHERE i.purpose = $1"
              " AND i.id > $3 AND NOT EXISTS (SELECT 1 FROM interactions j"
              " WHERE j.customer_id = i.customer_id AND j.occurred_at >= $2)"
              " ORDER BY i.id LIMIT $4"
            : "SELECT id, customer_id FROM interactions WHERE purpose = $1"
              " AND occurred_at < $2 AND id > $3 ORDER BY id LIMIT $4",
        {CD_VCSTR(purpose), CD_VINT(cutoff), CD_VCSTR(after_id ? after_id : ""), CD_VINT(limit)},
        4,
        NULL};

    return run_query(c, &q, out);
}

enum cd_err cd_core_customers_inactive(struct cd_core *c, int64_t cutoff, const char *after_id,
                                       int limit, json_t **out)
{
    struct expiry_q q = {"SELECT c.id FROM customers c WHERE c.id > $2"
                         " AND c.merged_into IS NULL AND c.erased_at IS NULL"
                         " AND c.created_at < $1 AND c.updated_at < $1"
                         " AND NOT EXISTS (SELECT 1 FROM interactions i"
                         " WHERE i.customer_id = c.id AND i.occurred_at >= $1)"
                         " ORDER BY c.id LIMIT $3",
                         {CD_VINT(cutoff), CD_VCSTR(after_id ? after_id : ""), CD_VINT(limit)},
                         3,
                         NULL};

    return run_query(c, &q, out);
}

struct expire_ctx {
    const struct cd_actor *a;
    const json_t *ids; /* [[interaction id, customer id], ...] */
    const char *run_id;
    uint64_t deleted;
};

static enum cd_err expire_fn(struct cd_tx *tx, void *ctx)
{
    struct expire_ctx *e = ctx;
    const char *last_customer = "";
    enum cd_err err = CD_OK;
    size_t i;
    json_t *pair;

    e->deleted = 0;
    json_array_foreach(e->ids, i, pair) {
        const char *id = json_string_value(json_array_get(pair, 0));
        const char *customer = json_string_value(json_array_get(pair, 1));
        struct cd_val p[] = {CD_VCSTR(id)};
        int64_t changes = 0;
        /* What was derived from the row goes with it: an Idempotency-Key that would replay
         * it, a mark to re-seal it. The ledger keeps only the ids of what happened. */
        if ((err = cd_tx_exec(tx, "DELETE FROM interactions WHERE id = $1", p, 1, NULL, NULL,
                              &changes)) != CD_OK ||
            (err = cd_tx_exec(tx, "DELETE FROM idempotency WHERE resource_id = $1", p, 1, NULL,
                              NULL, NULL)) != CD_OK ||
            (err = cd_tx_exec(tx, "DELETE FROM thread_reseal WHERE id = $1", p, 1, NULL, NULL,
                              NULL)) != CD_OK)
            return err;
        e->deleted += (uint64_t)changes;
        /* One ledger entry per customer of the batch (the batch is in customer order). */
        if (changes && strcmp(customer, last_customer) != 0) {
            struct cd_audit_event ev;
            cd__core_event(&ev, e->a, "interactions.expire", customer, e->run_id,
                           CD_FIELDS_CONVERSATION);
            if ((err = cd_audit_append(tx, &ev, NULL)) != CD_OK)
                return err;
            last_customer = customer;
        }
    }
    return err;
}

static int by_customer(const void *a, const void *b)
{
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    return strcmp(json_string_value(json_array_get(x, 1)),
                  json_string_value(json_array_get(y, 1)));
}

enum cd_err cd_core_interactions_expire(struct cd_core *c, const struct cd_actor *a,
                                        const json_t *ids, const char *run_id, uint64_t *deleted)
{
    size_t n = json_array_size(ids);
    json_t **v = NULL, *sorted = NULL;
    struct expire_ctx e = {a, NULL, run_id, 0};
    enum cd_err err = CD_OK;

    *deleted = 0;
    if (n == 0)
        return CD_OK;
    if ((v = cd_calloc(n, sizeof *v)) == NULL || (sorted = json_array()) == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        v[i] = json_array_get(ids, i);
    qsort(v, n, sizeof *v, by_customer);
    for (size_t i = 0; i < n && err == CD_OK; i++)
        if (json_array_append(sorted, v[i]) != 0)
            err = CD_ERR_NOMEM;
    e.ids = sorted;
    if (err == CD_OK && (err = cd_store_write(c->store, expire_fn, &e)) == CD_OK)
        *deleted = e.deleted;
out:
    cd_free(v);
    json_decref(sorted);
    return err;
}

struct idem_ctx {
    int64_t cutoff;
    bool dry_run;
    int64_t n;
};

static enum cd_err idem_fn(struct cd_tx *tx, void *ctx)
{
    struct idem_ctx *i = ctx;
    struct cd_val p[] = {CD_VINT(i->cutoff)};

    if (i->dry_run)
        return cd_tx_int(tx, "SELECT count(*) FROM idempotency WHERE created_at < $1", p, 1,
                         &i->n);
    return cd_tx_exec(tx, "DELETE FROM idempotency WHERE created_at < $1", p, 1, NULL, NULL,
                      &i->n);
}

enum cd_err cd_core_idempotency_expire(struct cd_core *c, int64_t cutoff, bool dry_run,
                                       uint64_t *n)
{
    struct idem_ctx i = {cutoff, dry_run, 0};
    enum cd_err err = dry_run ? cd_store_read(c->store, idem_fn, &i)
                              : cd_store_write(c->store, idem_fn, &i);

    if (err == CD_OK)
        *n = (uint64_t)i.n;
    return err;
}
