/* Sealed values against their rows. At start, the interaction fields sealed before format 2
 * (rows marked by migration 10) are re-sealed bound to their rows, so no row stays
 * swappable; and offline (`candor audit verify`), every sealed value of the database is opened
 * under its row's binding, so a value copied to another row, a row moved to another customer
 * or a row whose bound metadata was edited is named. */
#include <stdio.h>
#include <string.h>
#include "core_int.h"

#define RESEAL_BATCH 200
#define PROGRESS_EVERY 100000

/* The sealed fields of an interaction, and the column each is stored in. */
#define NFIELDS 4
static const char *const ifields[NFIELDS] = {"subject", "body", "metadata", "thread_id"};

/* ---- re-sealing the legacy format ---- */

struct reseal {
    struct cd_core *c;
    char after[CD_ID_MAX]; /* keyset: the batch starts after this id */
    char ids[RESEAL_BATCH][CD_ID_MAX];
    size_t nids;
    /* outputs, derived anew on each run of the write */
    size_t done, nbad;
    char bad[RESEAL_BATCH][CD_ID_MAX];
};

static enum cd_err reseal_id_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct reseal *r = ctx;

    if (r->nids < RESEAL_BATCH)
        cd__core_col_text(cols[0], r->ids[r->nids++], CD_ID_MAX);
    return CD_OK;
}

/* One marked row, as read: its binding parts, sealed fields and its customer's wrapped key. */
struct marked {
    bool found;
    char customer_id[CD_ID_MAX], channel[16], direction[12], purpose[32];
    int64_t occurred_at;
    struct cd_val cols[NFIELDS];
    struct cd_buf copy[NFIELDS], wrapped;
};

static enum cd_err marked_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct marked *m = ctx;
    enum cd_err err;

    m->found = true;
    cd__core_col_text(cols[0], m->customer_id, sizeof m->customer_id);
    cd__core_col_text(cols[1], m->channel, sizeof m->channel);
    cd__core_col_text(cols[2], m->direction, sizeof m->direction);
    m->occurred_at = cols[3].i;
    cd__core_col_text(cols[4], m->purpose, sizeof m->purpose);
    for (int i = 0; i < NFIELDS; i++) {
        m->cols[i] = cols[5 + i];
        cd_buf_reset(&m->copy[i]);
        if (cols[5 + i].type == CD_VAL_BLOB) {
            if ((err = cd_buf_append(&m->copy[i], cols[5 + i].p, cols[5 + i].len)) != CD_OK)
                return err;
            m->cols[i].p = m->copy[i].p;
        }
    }
    cd_buf_reset(&m->wrapped);
    if (cols[5 + NFIELDS].type == CD_VAL_BLOB)
        return cd_buf_append(&m->wrapped, cols[5 + NFIELDS].p, cols[5 + NFIELDS].len);
    return CD_OK;
}

/* Re-seals one marked row in format 2; false (nothing changed) when a value does not open
 * under its customer's key as it is, in either format. */
static enum cd_err reseal_one(struct cd_tx *tx, struct reseal *r, const char *id, bool *ok)
{
    struct marked m;
    struct cd__ckey k;
    struct cd__row_binding b;
    /* Unbounded: the values are rows the store holds, capped when they were written. */
    struct cd_buf plain = CD_BUF_INIT(CD_BUF_UNBOUNDED), sealed[NFIELDS];
    bool key_open = false, present[NFIELDS] = {false, false, false, false};
    enum cd_err err;

    memset(&m, 0, sizeof m);
    for (int i = 0; i < NFIELDS; i++) {
        m.copy[i] = CD_BUF_INIT(CD_BUF_UNBOUNDED);
        sealed[i] = CD_BUF_INIT(CD_BUF_UNBOUNDED);
    }
    m.wrapped = CD_BUF_INIT(256);
    *ok = false;
    struct cd_val p[] = {CD_VCSTR(id)};
    if ((err = cd_tx_exec(tx, "SELECT i.customer_id, i.channel, i.direction, i.occurred_at,"
                              " i.purpose, i.subject, i.body, i.metadata, i.thread,"
                              " c.key_wrapped"
                              " FROM interactions i LEFT JOIN customers c ON c.id = i.customer_id"
                              " WHERE i.id = $1",
                          p, 1, marked_row, &m, NULL)) != CD_OK)
        goto out;
    bool any = false;
    for (int i = 0; i < NFIELDS; i++)
        any = any || m.cols[i].type == CD_VAL_BLOB;
    if (!m.found || !any) {
        *ok = m.found; /* nothing sealed (erased): nothing to re-seal */
        goto update;
    }
    struct cd_val w = {m.wrapped.len ? CD_VAL_BLOB : CD_VAL_NULL, 0, m.wrapped.p, m.wrapped.len};
    if (cd__core_key_open(r->c, m.customer_id, w, &k) != CD_OK) {
        cd_err_clear();
        goto out;
    }
    key_open = true;
    cd__core_interaction_binding(&b, id, m.channel, m.direction, m.occurred_at, m.purpose);
    for (int i = 0; i < NFIELDS; i++) {
        /* A value already in format 2 must open as it is; one in format 1 is opened the old
         * way (customer and field) and sealed again bound to the row. */
        err = cd__core_open_row_quiet(&k, ifields[i], &b, m.cols[i], true, &plain, &present[i]);
        if (err == CD_ERR_CRYPTO) {
            err = CD_OK;
            cd_err_clear();
            goto out;
        }
        if (err != CD_OK ||
            (present[i] && (err = cd__core_seal_row(&k, ifields[i], &b,
                                                    (struct cd_str){plain.p, plain.len},
                                                    &sealed[i])) != CD_OK))
            goto out;
    }
    *ok = true;
update:;
    struct cd_val u[1 + NFIELDS] = {CD_VCSTR(id)};
    for (int i = 0; i < NFIELDS; i++)
        u[1 + i] = present[i] ? CD_VBLOB(sealed[i].p, sealed[i].len) : m.cols[i];
    if (*ok)
        err = cd_tx_exec(tx, "UPDATE interactions SET subject = $2, body = $3, metadata = $4,"
                             " thread = $5, legacy_seal = NULL WHERE id = $1",
                         u, 1 + NFIELDS, NULL, NULL, NULL);
out:
    if (key_open)
        cd__core_key_wipe(&k);
    if (plain.p)
        cd_crypto_wipe(plain.p, plain.cap);
    cd_buf_free(&plain);
    for (int i = 0; i < NFIELDS; i++) {
        cd_buf_free(&sealed[i]);
        cd_buf_free(&m.copy[i]);
    }
    cd_buf_free(&m.wrapped);
    return err;
}

static enum cd_err reseal_fn(struct cd_tx *tx, void *ctx)
{
    struct reseal *r = ctx;
    struct cd_val p[] = {CD_VCSTR(r->after)};
    enum cd_err err;

    r->nids = r->done = r->nbad = 0;
    /* The partial index interactions_legacy_seal holds exactly the marked rows, by id. */
    if ((err = cd_tx_exec(tx, "SELECT id FROM interactions WHERE legacy_seal IS NOT NULL"
                              " AND id > $1 ORDER BY id LIMIT 200",
                          p, 1, reseal_id_row, r, NULL)) != CD_OK)
        return err;
    for (size_t i = 0; i < r->nids; i++) {
        bool ok = false;
        if ((err = reseal_one(tx, r, r->ids[i], &ok)) != CD_OK)
            return err;
        if (ok)
            r->done++;
        else
            snprintf(r->bad[r->nbad++], CD_ID_MAX, "%s", r->ids[i]);
    }
    return CD_OK;
}

enum cd_err cd_core_reseal_legacy(struct cd_core *c, uint64_t *resealed, uint64_t *refused)
{
    struct reseal *r = cd_calloc(1, sizeof *r);
    uint64_t done = 0, bad = 0, logged = 0;
    enum cd_err err = CD_OK;

    if (r == NULL)
        return CD_ERR_NOMEM;
    r->c = c;
    do {
        if ((err = cd_store_write(c->store, reseal_fn, r)) != CD_OK)
            break;
        done += r->done;
        bad += r->nbad;
        for (size_t i = 0; i < r->nbad; i++)
            cd_integrity_report(CD_INTEGRITY_SEALED_FIELD,
                                "\"interaction_id\":\"%s\",\"detail\":\"a sealed field does not "
                                "open under its customer's key; left as it is\"",
                                r->bad[i]);
        if (r->nids > 0)
            snprintf(r->after, sizeof r->after, "%s", r->ids[r->nids - 1]);
        if (done - logged >= PROGRESS_EVERY) {
            cd_log(CD_LOG_INFO, "core.reseal_progress", "\"rows\":%llu",
                   (unsigned long long)done);
            logged = done;
        }
    } while (r->nids == RESEAL_BATCH);
    if (done > 0)
        cd_log(CD_LOG_INFO, "core.resealed", "\"rows\":%llu,\"refused\":%llu",
               (unsigned long long)done, (unsigned long long)bad);
    if (resealed)
        *resealed = done;
    if (refused)
        *refused = bad;
    cd_free(r);
    return err;
}

/* ---- the offline check ---- */

struct rows_check {
    struct cd_core *c;
    struct cd_core_rows_report *rep;
    void (*progress)(uint64_t, uint64_t);
    uint64_t total;
    /* the key of the customer of the previous row (rows come by customer) */
    char key_for[CD_ID_MAX];
    bool key_ok;
    struct cd__ckey k;
    struct cd_buf plain;
    char detail[400];
    bool failed;
};

static enum cd_err check_fail(struct rows_check *v, const char *kind, const char *id,
                              const char *what)
{
    snprintf(v->rep->bad_id, sizeof v->rep->bad_id, "%s", id);
    snprintf(v->detail, sizeof v->detail, "%s %s: %s", kind, id, what);
    v->failed = true;
    return cd_err_set(CD_ERR_INTEGRITY, "%s", v->detail);
}

/* Makes v->k the key of customer_id (wrapped: its column, may be NULL); false when it has none
 * that opens (erased, merged away, no such customer, or a damaged wrapped key). */
static bool key_for(struct rows_check *v, const char *customer_id, const struct cd_val *wrapped)
{
    if (strcmp(v->key_for, customer_id) == 0)
        return v->key_ok;
    if (v->key_ok)
        cd__core_key_wipe(&v->k);
    snprintf(v->key_for, sizeof v->key_for, "%s", customer_id);
    v->key_ok = cd__core_key_open(v->c, customer_id, *wrapped, &v->k) == CD_OK;
    cd_err_clear();
    return v->key_ok;
}

static enum cd_err interaction_check_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct rows_check *v = ctx;
    char id[CD_ID_MAX], cust[CD_ID_MAX], ch[16], dir[12], pur[32], what[200];
    struct cd__row_binding b;
    bool legacy = cols[6 + NFIELDS].type != CD_VAL_NULL;

    cd__core_col_text(cols[0], id, sizeof id);
    cd__core_col_text(cols[1], cust, sizeof cust);
    cd__core_col_text(cols[2], ch, sizeof ch);
    cd__core_col_text(cols[3], dir, sizeof dir);
    cd__core_col_text(cols[5], pur, sizeof pur);
    cd__core_interaction_binding(&b, id, ch, dir, cols[4].i, pur);
    v->rep->interactions++;
    if (v->progress && v->rep->interactions % (4 * PROGRESS_EVERY) == 0)
        v->progress(v->rep->interactions, v->total);
    for (int f = 0; f < NFIELDS; f++) {
        const struct cd_val *sealed = &cols[6 + f];
        bool present = false;
        if (sealed->type == CD_VAL_NULL)
            continue;
        if (!key_for(v, cust, &cols[7 + NFIELDS]))
            return check_fail(v, "interaction", id,
                              "it holds sealed content but its customer_id names no customer "
                              "with a data key (the row was moved to another customer, or its "
                              "customer was erased or merged away)");
        enum cd_err err = cd__core_open_row_quiet(&v->k, ifields[f], &b, *sealed, legacy,
                                                  &v->plain, &present);
        if (err == CD_ERR_CRYPTO) {
            int format = cd_crypto_sealed_format((struct cd_str){sealed->p, sealed->len});
            snprintf(what, sizeof what,
                     format == CD_CRYPTO_SEAL_VERSION
                         ? "its sealed %s is in the legacy format but the row is not marked for "
                           "re-sealing (it was copied from another row or an old copy)"
                         : "its sealed %s does not open under its row: the value was copied "
                           "from another row, or the row's customer_id, channel, direction, "
                           "occurred_at or purpose was edited",
                     ifields[f]);
            return check_fail(v, "interaction", id, what);
        }
        if (err != CD_OK)
            return err;
        v->rep->fields++;
        if (cd_crypto_sealed_format((struct cd_str){sealed->p, sealed->len}) ==
            CD_CRYPTO_SEAL_VERSION)
            v->rep->legacy_fields++;
    }
    return CD_OK;
}

/* An identity's value is sealed for its customer and the field "identity": an identity row
 * moved to another customer (which would file that person's messages under a stranger) no
 * longer opens. */
static enum cd_err identity_check_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct rows_check *v = ctx;
    char kind[32], cust[CD_ID_MAX], what[200];
    bool present = false;
    enum cd_err err = CD_OK;

    cd__core_col_text(cols[0], kind, sizeof kind);
    cd__core_col_text(cols[1], cust, sizeof cust);
    v->rep->identities++;
    if (!key_for(v, cust, &cols[3]))
        snprintf(what, sizeof what, "an identity (%s) names it but it has no data key: the row "
                                    "was moved to it, or it was erased or merged away", kind);
    else if ((err = cd__core_open(&v->k, "identity", cols[2], &v->plain, &present)) ==
             CD_ERR_CRYPTO)
        snprintf(what, sizeof what, "its identity (%s) does not open under its key: the row was "
                                    "moved from another customer or its value copied", kind);
    else
        return err;
    return check_fail(v, "customer", cust, what);
}

static enum cd_err customer_check_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct rows_check *v = ctx;
    static const char *const cfields[2] = {"display_name", "attributes"};
    char cust[CD_ID_MAX], what[160];

    cd__core_col_text(cols[0], cust, sizeof cust);
    v->rep->customers++;
    for (int f = 0; f < 2; f++) {
        bool present = false;
        if (cols[1 + f].type == CD_VAL_NULL)
            continue;
        if (!key_for(v, cust, &cols[3]))
            return check_fail(v, "customer", cust, "it holds sealed values but no data key");
        enum cd_err err = cd__core_open(&v->k, cfields[f], cols[1 + f], &v->plain, &present);
        if (err == CD_ERR_CRYPTO) {
            snprintf(what, sizeof what, "its sealed %s does not open: it was copied from another "
                                        "customer or altered", cfields[f]);
            return check_fail(v, "customer", cust, what);
        }
        if (err != CD_OK)
            return err;
    }
    return CD_OK;
}

static enum cd_err rows_fn(struct cd_tx *tx, void *ctx)
{
    struct rows_check *v = ctx;
    int64_t total = 0;
    enum cd_err err;

    if ((err = cd_tx_int(tx, "SELECT count(*) FROM interactions", NULL, 0, &total)) != CD_OK)
        return err;
    v->total = (uint64_t)total;
    /* By customer, so each data key is unwrapped once. */
    if ((err = cd_tx_exec(tx, "SELECT i.id, i.customer_id, i.channel, i.direction,"
                              " i.occurred_at, i.purpose, i.subject, i.body, i.metadata,"
                              " i.thread, i.legacy_seal, c.key_wrapped FROM interactions i"
                              " LEFT JOIN customers c ON c.id = i.customer_id"
                              " ORDER BY i.customer_id, i.id",
                          NULL, 0, interaction_check_row, v, NULL)) != CD_OK ||
        (err = cd_tx_exec(tx, "SELECT i.kind, i.customer_id, i.value, c.key_wrapped"
                              " FROM identities i LEFT JOIN customers c ON c.id = i.customer_id"
                              " ORDER BY i.customer_id",
                          NULL, 0, identity_check_row, v, NULL)) != CD_OK)
        return err;
    return cd_tx_exec(tx, "SELECT id, display_name, attributes, key_wrapped FROM customers"
                          " ORDER BY id",
                      NULL, 0, customer_check_row, v, NULL);
}

enum cd_err cd_core_verify_rows(struct cd_core *c, struct cd_core_rows_report *rep,
                                void (*progress)(uint64_t done, uint64_t total))
{
    struct rows_check *v = cd_calloc(1, sizeof *v);
    enum cd_err err;

    memset(rep, 0, sizeof *rep);
    if (v == NULL)
        return CD_ERR_NOMEM;
    v->c = c;
    v->rep = rep;
    v->progress = progress;
    v->plain = CD_BUF_INIT(CD_MAX_BODY + 1024);
    err = cd_store_read(c->store, rows_fn, v);
    if (v->failed)
        err = cd_err_set(CD_ERR_INTEGRITY, "%s", v->detail);
    if (v->key_ok)
        cd__core_key_wipe(&v->k);
    if (v->plain.p)
        cd_crypto_wipe(v->plain.p, v->plain.cap);
    cd_buf_free(&v->plain);
    cd_free(v);
    return err;
}
