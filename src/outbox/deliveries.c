/* Delivery rows: claimed by the worker, their outcomes recorded, listed, and replayed from the
 * dead-letter list. A claim moves next_at past a lease instead of marking the row: a worker
 * that dies leaves it pending, due again when the lease ends, so nothing queued is lost. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "outbox_int.h"

/* ---- claiming ---- */

void cd__outbox_claim_clear(struct cd__claim *k)
{
    cd_free(k->payload);
    cd_free(k->url);
    cd_buf_free(&k->personal);
    cd_buf_free(&k->secret);
    k->payload = k->url = NULL;
}

void cd__outbox_claims_free(struct cd__claim *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        cd__outbox_claim_clear(&v[i]);
    cd_free(v);
}

struct claim_ctx {
    int64_t now, lease_until;
    size_t max;
    struct cd__claim *v;
    size_t n;
    const struct cd__outcome *done; /* recorded first, in the same transaction */
    size_t ndone;
};

static enum cd_err record_outcomes(struct cd_tx *tx, const struct cd__outcome *v, size_t n,
                                   int64_t now);

static void text_col(struct cd_val v, char *out, size_t n)
{
    snprintf(out, n, "%.*s", v.type == CD_VAL_NULL ? 0 : (int)v.len, (const char *)v.p);
}

static enum cd_err claim_row(void *ctx, const struct cd_val *c, size_t ncols)
{
    struct claim_ctx *cc = ctx;
    struct cd__claim *k;

    (void)ncols;
    if (cc->n == cc->max)
        return CD_OK;
    k = &cc->v[cc->n];
    memset(k, 0, sizeof *k);
    k->personal = CD_BUF_INIT(CD__OUTBOX_PAYLOAD_MAX + CD_CRYPTO_SEAL_OVERHEAD);
    k->secret = CD_BUF_INIT(256);
    k->seq = c[0].i;
    text_col(c[1], k->id, sizeof k->id);
    k->attempts = (unsigned)c[2].i + 1;
    text_col(c[3], k->event_id, sizeof k->event_id);
    text_col(c[4], k->type, sizeof k->type);
    text_col(c[5], k->customer_id, sizeof k->customer_id);
    k->event_seq = c[6].i;
    k->created_at = c[7].i;
    text_col(c[10], k->sub_id, sizeof k->sub_id);
    text_col(c[12], k->purpose, sizeof k->purpose);
    cc->n++; /* counted now, so a failure below frees what was copied */
    if ((k->payload = cd_strndup(c[8].p, c[8].len)) == NULL ||
        (k->url = cd_strndup(c[11].p, c[11].len)) == NULL ||
        (c[9].type == CD_VAL_BLOB && cd_buf_append(&k->personal, c[9].p, c[9].len) != CD_OK) ||
        cd_buf_append(&k->secret, c[13].p, c[13].len) != CD_OK)
        return CD_ERR_NOMEM;
    return CD_OK;
}

/* The due deliveries: pending, next_at passed, of an active subscription, and the oldest
 * pending one of their subscription and customer (a customer's later event waits for the
 * earlier one; events about no customer wait for nothing). */
#define DUE_SQL                                                                                 \
    "SELECT d.seq, d.id, d.attempts, e.id, e.type, e.customer_id, e.seq, e.created_at,"         \
    " e.payload, e.personal, s.id, s.url, s.purpose, s.secret"                                  \
    " FROM webhook_deliveries d JOIN outbox_events e ON e.seq = d.event_seq"                    \
    " JOIN webhook_subscriptions s ON s.id = d.subscription_id"                                 \
    " WHERE d.status = 'pending' AND d.next_at <= $1 AND s.status = 'active'"                   \
    " AND s.deleted_at IS NULL AND NOT EXISTS (SELECT 1 FROM webhook_deliveries o"              \
    "  WHERE o.status = 'pending' AND o.subscription_id = d.subscription_id"                    \
    "  AND o.customer_id = d.customer_id AND o.seq < d.seq)"                                    \
    " ORDER BY d.next_at, d.seq LIMIT $2"

static enum cd_err claim_fn(struct cd_tx *tx, void *ctx)
{
    struct claim_ctx *cc = ctx;
    struct cd_val p[] = {CD_VINT(cc->now), CD_VINT((int64_t)cc->max)};
    enum cd_err err;
    size_t kept = 0;

    /* A rerun after a rollback starts over. */
    for (size_t i = 0; i < cc->n; i++)
        cd__outbox_claim_clear(&cc->v[i]);
    cc->n = 0;
    /* The outcomes first: a customer's next event is due in this same claim once the one
     * before it was delivered. */
    if ((err = record_outcomes(tx, cc->done, cc->ndone, cc->now)) != CD_OK ||
        (err = cd_tx_exec(tx, DUE_SQL, p, 2, claim_row, cc, NULL)) != CD_OK)
        return err;
    for (size_t i = 0; i < cc->n; i++) {
        struct cd_val u[] = {CD_VINT(cc->v[i].seq), CD_VINT(cc->now), CD_VINT(cc->lease_until)};
        int64_t changes = 0;
        if ((err = cd_tx_exec(tx,
                              "UPDATE webhook_deliveries SET attempts = attempts + 1,"
                              " claimed_at = $2, next_at = $3"
                              " WHERE seq = $1 AND status = 'pending' AND next_at <= $2",
                              u, 3, NULL, NULL, &changes)) != CD_OK)
            return err;
        /* Another server on the same database took it first. */
        if (changes != 1)
            continue;
        if (kept != i) {
            struct cd__claim t = cc->v[kept];
            cc->v[kept] = cc->v[i];
            cc->v[i] = t;
        }
        kept++;
    }
    for (size_t i = kept; i < cc->n; i++)
        cd__outbox_claim_clear(&cc->v[i]);
    cc->n = kept;
    return CD_OK;
}

static enum cd_err due_row(void *ctx, const struct cd_val *c, size_t n)
{
    (void)c;
    (void)n;
    *(bool *)ctx = true;
    return CD_OK;
}

static enum cd_err due_fn(struct cd_tx *tx, void *ctx)
{
    bool *any = ctx;
    struct cd_val p[] = {CD_VINT(cd_now_ms()), CD_VINT(1)};

    *any = false;
    return cd_tx_exec(tx, DUE_SQL, p, 2, due_row, any, NULL);
}

enum cd_err cd__outbox_record_claim(struct cd_outbox *ob, const struct cd__outcome *done,
                                    size_t ndone, bool *recorded, int64_t lease_ms, size_t max,
                                    struct cd__claim **out, size_t *n)
{
    struct claim_ctx cc = {cd_now_ms(), 0, max, NULL, 0, done, ndone};
    bool any = false;
    enum cd_err err;

    *out = NULL;
    *n = 0;
    if (recorded)
        *recorded = false;
    /* A read first: an idle queue costs no write transaction (and no fsync); the outcomes are
     * then the caller's to record. */
    if ((err = cd_store_read(ob->store, due_fn, &any)) != CD_OK || !any)
        return err;
    if ((cc.v = cd_calloc(max, sizeof *cc.v)) == NULL)
        return CD_ERR_NOMEM;
    cc.lease_until = cc.now + lease_ms;
    if ((err = cd_store_write(ob->store, claim_fn, &cc)) != CD_OK) {
        cd__outbox_claims_free(cc.v, cc.n);
        return err;
    }
    *out = cc.v;
    *n = cc.n;
    if (recorded)
        *recorded = true;
    return CD_OK;
}

enum cd_err cd__outbox_claim(struct cd_outbox *ob, int64_t lease_ms, size_t max,
                             struct cd__claim **out, size_t *n)
{
    return cd__outbox_record_claim(ob, NULL, 0, NULL, lease_ms, max, out, n);
}

/* ---- outcomes ---- */

struct record_ctx {
    const struct cd__outcome *v;
    size_t n;
    int64_t now;
};

static enum cd_err record_one(struct cd_tx *tx, const struct cd__outcome *o, int64_t now)
{
    struct cd_val p[] = {CD_VINT(o->seq), CD_VINT(now),
                         o->http_status ? CD_VINT(o->http_status) : CD_VNULL,
                         o->error ? CD_VCSTR(o->error) : CD_VNULL, CD_VINT(o->next_at)};
    struct cd_val e[] = {CD_VINT(o->event_seq)};
    enum cd_err err;

    if (o->state == CD__RETRY)
        return cd_tx_exec(tx,
                          "UPDATE webhook_deliveries SET next_at = $5, last_status = $3,"
                          " last_error = $4 WHERE seq = $1 AND status = 'pending'",
                          p, 5, NULL, NULL, NULL);
    if (o->state == CD__DELIVERED)
        err = cd_tx_exec(tx,
                         "UPDATE webhook_deliveries SET status = 'delivered', finished_at = $2,"
                         " last_status = $3, last_error = NULL"
                         " WHERE seq = $1 AND status = 'pending'",
                         p, 3, NULL, NULL, NULL);
    else
        err = cd_tx_exec(tx,
                         "UPDATE webhook_deliveries SET status = 'dead', finished_at = $2,"
                         " last_status = $3, last_error = $4"
                         " WHERE seq = $1 AND status = 'pending'",
                         p, 4, NULL, NULL, NULL);
    if (err == CD_OK)
        err = cd__outbox_notices_settle(tx, o->id, o->state == CD__DELIVERED, now);
    /* Personal members are kept only until every subscription has had them. */
    if (err == CD_OK && o->state == CD__DELIVERED)
        err = cd_tx_exec(tx,
                         "UPDATE outbox_events SET personal = NULL WHERE seq = $1"
                         " AND personal IS NOT NULL AND NOT EXISTS (SELECT 1"
                         " FROM webhook_deliveries WHERE event_seq = $1"
                         " AND status IN ('pending', 'dead'))",
                         e, 1, NULL, NULL, NULL);
    return err;
}

static enum cd_err record_outcomes(struct cd_tx *tx, const struct cd__outcome *v, size_t n,
                                   int64_t now)
{
    enum cd_err err = CD_OK;

    for (size_t i = 0; i < n && err == CD_OK; i++)
        err = record_one(tx, &v[i], now);
    return err;
}

static enum cd_err record_fn(struct cd_tx *tx, void *ctx)
{
    struct record_ctx *r = ctx;

    return record_outcomes(tx, r->v, r->n, r->now);
}

enum cd_err cd__outbox_record(struct cd_outbox *ob, const struct cd__outcome *v, size_t n)
{
    struct record_ctx r = {v, n, cd_now_ms()};

    return n ? cd_store_write(ob->store, record_fn, &r) : CD_OK;
}

/* ---- the queue's size ---- */

static enum cd_err sizes_fn(struct cd_tx *tx, void *ctx)
{
    int64_t *v = ctx;
    enum cd_err err = cd_tx_int(tx, "SELECT count(*) FROM webhook_deliveries"
                                    " WHERE status = 'pending'",
                                NULL, 0, &v[0]);
    if (err == CD_OK)
        err = cd_tx_int(tx, "SELECT count(*) FROM webhook_deliveries WHERE status = 'dead'",
                        NULL, 0, &v[1]);
    return err;
}

enum cd_err cd__outbox_queue_sizes(struct cd_outbox *ob, int64_t *pending, int64_t *dead)
{
    int64_t v[2] = {0, 0};
    enum cd_err err = cd_store_read(ob->store, sizes_fn, v);

    if (err == CD_OK) {
        *pending = v[0];
        *dead = v[1];
    }
    return err;
}

/* ---- listing ---- */

#define DLV_COLS                                                                                \
    "d.seq, d.id, e.id, e.type, d.subscription_id, d.customer_id, d.status, d.attempts,"        \
    " d.created_at, d.next_at, d.finished_at, d.last_status, d.last_error"

struct list_ctx {
    json_t *items;
    int64_t last_seq, prev_seq; /* the seq of the last row read, and of the one before it */
};

static enum cd_err dlv_json(const struct cd_val *c, json_t **out)
{
    json_t *o = json_object();
    bool pending = c[6].len == 7 && memcmp(c[6].p, "pending", 7) == 0;
    enum cd_err err;

    if (o == NULL)
        return CD_ERR_NOMEM;
    if ((err = cd_val_json_text(o, "id", c[1])) != CD_OK ||
        (err = cd_val_json_text(o, "event_id", c[2])) != CD_OK ||
        (err = cd_val_json_text(o, "event_type", c[3])) != CD_OK ||
        (err = cd_val_json_text(o, "subscription_id", c[4])) != CD_OK ||
        (err = cd_val_json_text(o, "customer_id", c[5])) != CD_OK ||
        (err = cd_val_json_text(o, "status", c[6])) != CD_OK ||
        (err = cd_json_set_new(o, "attempts", json_integer(c[7].i))) != CD_OK ||
        (err = cd_val_json_time(o, "created_at", c[8])) != CD_OK ||
        (err = cd_val_json_time(o, "next_attempt_at", pending ? c[9] : CD_VNULL)) != CD_OK ||
        (err = cd_val_json_time(o, "finished_at", c[10])) != CD_OK ||
        (err = cd_json_set_new(o, "last_status", c[11].type == CD_VAL_NULL
                                                     ? json_null()
                                                     : json_integer(c[11].i))) != CD_OK ||
        (err = cd_val_json_text(o, "last_error", c[12])) != CD_OK) {
        json_decref(o);
        return err;
    }
    *out = o;
    return CD_OK;
}

static enum cd_err list_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct list_ctx *l = ctx;
    json_t *o = NULL;
    enum cd_err err;

    (void)n;
    if ((err = dlv_json(c, &o)) != CD_OK)
        return err;
    l->prev_seq = l->last_seq;
    l->last_seq = c[0].i;
    return json_array_append_new(l->items, o) == 0 ? CD_OK : CD_ERR_NOMEM;
}

struct list_q {
    const struct cd_outbox_delivery_query *q;
    int64_t before;
    struct list_ctx l;
};

static enum cd_err list_fn(struct cd_tx *tx, void *ctx)
{
    struct list_q *lq = ctx;
    struct cd_val p[] = {CD_VINT(lq->before), CD_VTEXT(lq->q->subscription_id),
                         CD_VTEXT(lq->q->status), CD_VINT(lq->q->limit + 1)};

    if (lq->q->subscription_id.p == NULL)
        p[1] = CD_VCSTR("");
    if (lq->q->status.p == NULL)
        p[2] = CD_VCSTR("");
    return cd_tx_exec(tx,
                      "SELECT " DLV_COLS " FROM webhook_deliveries d"
                      " JOIN outbox_events e ON e.seq = d.event_seq"
                      " WHERE d.seq < $1 AND ($2 = '' OR d.subscription_id = $2)"
                      " AND ($3 = '' OR d.status = $3) ORDER BY d.seq DESC LIMIT $4",
                      p, 4, list_row, &lq->l, NULL);
}

enum cd_err cd_outbox_deliveries(struct cd_outbox *ob, const struct cd_outbox_delivery_query *q,
                                 json_t **out)
{
    static const char *const statuses[] = {"pending", "delivered", "dead", "cancelled", NULL};
    struct list_q lq = {q, INT64_MAX, {NULL, 0, 0}};
    bool ok = q->status.len == 0;
    enum cd_err err;

    for (size_t i = 0; !ok && statuses[i]; i++)
        ok = cd_str_eq_c(q->status, statuses[i]);
    if (!ok)
        return cd_err_set(CD_ERR_INVALID, "'status' must be pending, delivered, dead or "
                                          "cancelled");
    if (q->limit < 1 || q->limit > 500)
        return cd_err_set(CD_ERR_INVALID, "'limit' must be 1 to 500");
    if (q->cursor.len) {
        char digits[24];
        char *end = NULL;
        if (q->cursor.len >= sizeof digits)
            return cd_err_set(CD_ERR_INVALID, "invalid cursor");
        memcpy(digits, q->cursor.p, q->cursor.len);
        digits[q->cursor.len] = '\0';
        long long v = strtoll(digits, &end, 10);
        if (end == digits || *end || v <= 0)
            return cd_err_set(CD_ERR_INVALID, "invalid cursor");
        lq.before = v;
    }
    if ((lq.l.items = json_array()) == NULL)
        return CD_ERR_NOMEM;
    if ((err = cd_store_read(ob->store, list_fn, &lq)) != CD_OK) {
        json_decref(lq.l.items);
        return err;
    }
    json_t *next = json_null();
    if (json_array_size(lq.l.items) > (size_t)q->limit) {
        char c[24];
        json_array_remove(lq.l.items, (size_t)q->limit);
        /* The cursor is the last listed row's seq: the next page starts below it. */
        snprintf(c, sizeof c, "%lld", (long long)lq.l.prev_seq);
        next = json_string(c);
    }
    *out = json_pack("{s:o,s:o}", "items", lq.l.items, "next_cursor", next);
    return *out ? CD_OK : CD_ERR_NOMEM;
}

/* ---- replay ---- */

struct replay_ctx {
    const struct cd_outbox_actor *a;
    char id[CD_ID_MAX];
    struct cd_str subscription_id; /* replay_all: empty for every subscription */
    int64_t now;
    uint64_t n;
    json_t *out;
};

static enum cd_err replay_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct replay_ctx *r = ctx;
    (void)n;
    return dlv_json(c, &r->out);
}

static enum cd_err replay_fn(struct cd_tx *tx, void *ctx)
{
    struct replay_ctx *r = ctx;
    struct cd_val p[] = {CD_VCSTR(r->id), CD_VINT(r->now)};
    char customer[CD_ID_MAX] = "";
    int64_t changes = 0;
    enum cd_err err;

    json_decref(r->out);
    r->out = NULL;
    if ((err = cd_tx_exec(tx,
                          "SELECT " DLV_COLS " FROM webhook_deliveries d"
                          " JOIN outbox_events e ON e.seq = d.event_seq WHERE d.id = $1",
                          p, 1, replay_row, r, NULL)) != CD_OK)
        return err;
    if (r->out == NULL)
        return cd_err_set(CD_ERR_NOT_FOUND, "no delivery with this id");
    if (!cd_str_eq_c(cd_str_c(json_string_value(json_object_get(r->out, "status"))), "dead"))
        return cd_err_set(CD_ERR_CONFLICT, "only a dead-lettered delivery can be replayed");
    snprintf(customer, sizeof customer, "%s",
             json_string_value(json_object_get(r->out, "customer_id"))
                 ? json_string_value(json_object_get(r->out, "customer_id"))
                 : "");
    if ((err = cd_tx_exec(tx,
                          "UPDATE webhook_deliveries SET status = 'pending', attempts = 0,"
                          " next_at = $2, finished_at = NULL, claimed_at = NULL"
                          " WHERE id = $1 AND status = 'dead'",
                          p, 2, NULL, NULL, &changes)) != CD_OK ||
        (err = cd__outbox_notices_reopen(tx, r->id)) != CD_OK)
        return err;
    json_object_set_new(r->out, "status", json_string("pending"));
    json_object_set_new(r->out, "attempts", json_integer(0));
    return cd__outbox_ledger(tx, r->a, "webhook.replay", customer[0] ? customer : NULL, r->id);
}

enum cd_err cd_outbox_delivery_replay(struct cd_outbox *ob, const struct cd_outbox_actor *a,
                                      struct cd_str id, json_t **out)
{
    struct replay_ctx r = {.a = a, .now = cd_now_ms()};
    enum cd_err err;

    if (!cd_id_valid(id, "dlv"))
        return cd_err_set(CD_ERR_NOT_FOUND, "no delivery with this id");
    memcpy(r.id, id.p, id.len);
    r.id[id.len] = '\0';
    if ((err = cd_store_write(ob->store, replay_fn, &r)) != CD_OK) {
        json_decref(r.out);
        return err;
    }
    cd_outbox_worker_wake(ob);
    *out = r.out;
    return CD_OK;
}

static enum cd_err dead_id_row(void *ctx, const struct cd_val *c, size_t n)
{
    (void)n;
    json_t *s = json_stringn(c[0].p, c[0].len);
    return s && json_array_append_new(ctx, s) == 0 ? CD_OK : CD_ERR_NOMEM;
}

static enum cd_err dead_ids_fn(struct cd_tx *tx, void *ctx)
{
    struct replay_ctx *r = ctx;
    struct cd_val p[] = {r->subscription_id.p ? CD_VTEXT(r->subscription_id) : CD_VCSTR("")};

    return cd_tx_exec(tx,
                      "SELECT id FROM webhook_deliveries WHERE status = 'dead'"
                      " AND ($1 = '' OR subscription_id = $1) ORDER BY seq",
                      p, 1, dead_id_row, r->out, NULL);
}

enum cd_err cd_outbox_dead_replay_all(struct cd_outbox *ob, const struct cd_outbox_actor *a,
                                      struct cd_str subscription_id, uint64_t *n)
{
    struct replay_ctx all = {.a = a, .subscription_id = subscription_id, .out = json_array()};
    enum cd_err err;
    size_t i;
    json_t *id;

    *n = 0;
    if (all.out == NULL)
        return CD_ERR_NOMEM;
    if ((err = cd_store_read(ob->store, dead_ids_fn, &all)) != CD_OK)
        goto out;
    /* One write each, oldest first: each is recorded in the ledger on its own. */
    json_array_foreach(all.out, i, id) {
        json_t *d = NULL;
        err = cd_outbox_delivery_replay(ob, a, (struct cd_str){json_string_value(id),
                                                               json_string_length(id)},
                                        &d);
        json_decref(d);
        if (err == CD_ERR_CONFLICT || err == CD_ERR_NOT_FOUND) { /* replayed meanwhile */
            err = CD_OK;
            continue;
        }
        if (err != CD_OK)
            goto out;
        (*n)++;
    }
out:
    json_decref(all.out);
    return err;
}

/* ---- retention ---- */

struct expire_ctx {
    int64_t deliveries_before, events_before;
    bool dry_run;
    int64_t deliveries, events;
};

static enum cd_err expire_fn(struct cd_tx *tx, void *ctx)
{
    struct expire_ctx *e = ctx;
    struct cd_val d[] = {CD_VINT(e->deliveries_before)};
    struct cd_val v[] = {CD_VINT(e->events_before)};
    enum cd_err err = CD_OK;

    e->deliveries = e->events = 0;
    /* Finished deliveries (acknowledged, cancelled, or dead-lettered and never replayed). */
    if (e->deliveries_before)
        err = e->dry_run ? cd_tx_int(tx,
                                     "SELECT count(*) FROM webhook_deliveries"
                                     " WHERE status <> 'pending' AND finished_at < $1",
                                     d, 1, &e->deliveries)
                         : cd_tx_exec(tx,
                                      "DELETE FROM webhook_deliveries"
                                      " WHERE status <> 'pending' AND finished_at < $1",
                                      d, 1, NULL, NULL, &e->deliveries);
    /* An event goes once none of its deliveries waits or sits in the dead-letter list. */
    if (err == CD_OK && e->events_before)
        err = e->dry_run ? cd_tx_int(tx,
                                     "SELECT count(*) FROM outbox_events e WHERE e.created_at < $1"
                                     " AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d"
                                     " WHERE d.event_seq = e.seq AND d.status IN"
                                     " ('pending', 'dead'))",
                                     v, 1, &e->events)
                         : cd_tx_exec(tx,
                                      "DELETE FROM outbox_events WHERE created_at < $1"
                                      " AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d"
                                      " WHERE d.event_seq = outbox_events.seq AND d.status IN"
                                      " ('pending', 'dead'))",
                                      v, 1, NULL, NULL, &e->events);
    return err;
}

enum cd_err cd_outbox_expire(struct cd_store *s, int64_t deliveries_before, int64_t events_before,
                             bool dry_run, uint64_t *deliveries, uint64_t *events)
{
    struct expire_ctx e = {deliveries_before, events_before, dry_run, 0, 0};
    enum cd_err err = dry_run ? cd_store_read(s, expire_fn, &e) : cd_store_write(s, expire_fn, &e);

    if (err == CD_OK) {
        *deliveries = (uint64_t)e.deliveries;
        *events = (uint64_t)e.events;
    }
    return err;
}
