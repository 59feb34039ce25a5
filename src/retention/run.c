/* A retention run: what each rule finds expired goes (or, in a dry run, is listed), held
 * customers are left alone, and the run's counts — no personal data — are recorded in
 * retention_runs and bound to the run's ledger entry by their digest. Also the schedule that
 * runs it inside `candor serve`. */
#include <stdio.h>
#include <string.h>
#include "audit/audit.h"
#include "crypto/crypto.h"
#include "outbox/outbox.h"
#include "retention_int.h"

#define PAGE 500 /* ids read, and interactions deleted, per step */

struct run {
    struct cd_core *core;
    struct cd_store *store;
    const struct cd_retention_rules *rules;
    const struct cd_actor *a;
    bool dry_run;
    size_t max_ids;
    char id[CD_ID_MAX];
    int64_t now;
    struct cd__held held;
    json_t *held_all; /* held customers skipped by any rule: an object used as a set */
};

/* What one rule did: counted and, in a dry run, listed (at most max_ids ids). */
struct tally {
    uint64_t count;
    json_t *ids;     /* dry run only */
    json_t *held;    /* held customers skipped, a set */
    bool truncated;
};

static enum cd_err note_held(struct run *r, struct tally *t, const char *customer)
{
    if (json_object_set_new(t->held, customer, json_true()) != 0 ||
        json_object_set_new(r->held_all, customer, json_true()) != 0)
        return CD_ERR_NOMEM;
    return CD_OK;
}

static enum cd_err note_id(struct run *r, struct tally *t, const char *id)
{
    t->count++;
    if (!r->dry_run)
        return CD_OK;
    if (json_array_size(t->ids) >= r->max_ids) {
        t->truncated = true;
        return CD_OK;
    }
    return json_array_append_new(t->ids, json_string(id)) == 0 ? CD_OK : CD_ERR_NOMEM;
}

/* The interactions of one purpose under rule ru. */
static enum cd_err interactions_of(struct run *r, const struct cd__ret_rule *ru,
                                   enum cd_purpose p, int64_t cutoff, struct tally *t)
{
    char after[CD_ID_MAX] = "";
    bool last_contact = ru->after == 1;
    enum cd_err err = CD_OK;

    for (;;) {
        json_t *page = NULL, *batch = json_array(), *pair;
        size_t i, n;
        if (batch == NULL)
            return CD_ERR_NOMEM;
        if ((err = cd_core_interactions_expiring(r->core, cd_purpose_name(p), cutoff,
                                                 last_contact, after, PAGE, &page)) != CD_OK) {
            json_decref(batch);
            return err;
        }
        n = json_array_size(page);
        json_array_foreach(page, i, pair) {
            const char *id = json_string_value(json_array_get(pair, 0));
            const char *customer = json_string_value(json_array_get(pair, 1));
            snprintf(after, sizeof after, "%s", id);
            if (cd__ret_is_held(&r->held, customer))
                err = note_held(r, t, customer);
            else if (r->dry_run)
                err = note_id(r, t, id);
            else if (json_array_append(batch, pair) != 0)
                err = CD_ERR_NOMEM;
            if (err != CD_OK)
                break;
        }
        if (err == CD_OK && json_array_size(batch)) {
            uint64_t deleted = 0;
            err = cd_core_interactions_expire(r->core, r->a, batch, r->id, &deleted);
            t->count += deleted;
        }
        json_decref(page);
        json_decref(batch);
        if (err != CD_OK || n < PAGE)
            return err;
    }
}

static bool has_own_rule(const struct cd_retention_rules *rs, enum cd_purpose p)
{
    for (size_t i = 0; i < rs->n; i++)
        if (rs->v[i].data == CD__RET_INTERACTIONS && rs->v[i].purpose == (int)p)
            return true;
    return false;
}

static enum cd_err interactions(struct run *r, const struct cd__ret_rule *ru, int64_t cutoff,
                                struct tally *t)
{
    enum cd_err err = CD_OK;

    if (ru->purpose >= 0)
        return interactions_of(r, ru, (enum cd_purpose)ru->purpose, cutoff, t);
    /* The rule without a purpose covers every purpose that has no rule of its own. */
    for (int p = 0; p < CD_PURPOSE__COUNT && err == CD_OK; p++)
        if (!has_own_rule(r->rules, (enum cd_purpose)p))
            err = interactions_of(r, ru, (enum cd_purpose)p, cutoff, t);
    return err;
}

static enum cd_err customers(struct run *r, int64_t cutoff, struct tally *t)
{
    char after[CD_ID_MAX] = "";
    enum cd_err err = CD_OK;

    for (;;) {
        json_t *page = NULL, *id;
        size_t i, n;
        if ((err = cd_core_customers_inactive(r->core, cutoff, after, PAGE, &page)) != CD_OK)
            return err;
        n = json_array_size(page);
        json_array_foreach(page, i, id) {
            const char *cid = json_string_value(id);
            snprintf(after, sizeof after, "%s", cid);
            if (cd__ret_is_held(&r->held, cid)) {
                err = note_held(r, t, cid);
            } else if (r->dry_run) {
                err = note_id(r, t, cid);
            } else {
                /* Whole customers go the way every erasure goes: crypto-shredding. */
                json_t *out = NULL;
                err = cd_core_customer_shred(r->core, r->a, cd_str_c(cid), &out);
                json_decref(out);
                if (err == CD_OK)
                    t->count++;
                else if (err == CD_ERR_CONFLICT || err == CD_ERR_NOT_FOUND)
                    err = CD_OK; /* merged or erased meanwhile */
            }
            if (err != CD_OK)
                break;
        }
        json_decref(page);
        if (err != CD_OK || n < PAGE)
            return err;
    }
}

/* Applies one rule; *entry gets its part of the report. */
static enum cd_err apply(struct run *r, const struct cd__ret_rule *ru, json_t **entry)
{
    struct tally t = {0, r->dry_run ? json_array() : NULL, json_object(), false};
    int64_t cutoff = ru->forever ? 0 : cd__ret_cutoff(ru, r->now);
    uint64_t a = 0, b = 0;
    char ts[CD_TIME_STRLEN];
    enum cd_err err = CD_OK;

    if ((r->dry_run && t.ids == NULL) || t.held == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    switch (ru->forever ? CD__RET__COUNT : ru->data) {
    case CD__RET_INTERACTIONS:
        err = interactions(r, ru, cutoff, &t);
        break;
    case CD__RET_CUSTOMERS:
        err = customers(r, cutoff, &t);
        break;
    case CD__RET_IDEMPOTENCY:
        err = cd_core_idempotency_expire(r->core, cutoff, r->dry_run, &t.count);
        break;
    case CD__RET_DELIVERIES:
        err = cd_outbox_expire(r->store, cutoff, 0, r->dry_run, &t.count, &b);
        break;
    case CD__RET_EVENTS:
        err = cd_outbox_expire(r->store, 0, cutoff, r->dry_run, &a, &t.count);
        break;
    default: /* kept for good */
        break;
    }
    if (err != CD_OK || (err = cd__ret_rule_json(ru, entry)) != CD_OK)
        goto out;
    cd_time_format(cutoff, ts);
    if ((err = cd_json_set_new(*entry, "cutoff", ru->forever ? json_null() : json_string(ts))) !=
            CD_OK ||
        (err = cd_json_set_new(*entry, "count", json_integer((json_int_t)t.count))) != CD_OK ||
        (err = cd_json_set_new(*entry, "held_customers",
                               json_integer((json_int_t)json_object_size(t.held)))) != CD_OK)
        goto out;
    if (t.ids) {
        if ((err = cd_json_set_new(*entry, "ids", t.ids)) != CD_OK)
            goto out;
        t.ids = NULL;
        err = cd_json_set_new(*entry, "ids_truncated", json_boolean(t.truncated));
    }
out:
    if (err != CD_OK) {
        json_decref(*entry);
        *entry = NULL;
    }
    json_decref(t.ids);
    json_decref(t.held);
    return err;
}

/* ---- the record ---- */

struct record {
    const struct cd_actor *a;
    const char *id;
    int64_t started, finished;
    bool dry_run, failed;
    char *counts; /* JSON text */
};

static enum cd_err record_fn(struct cd_tx *tx, void *ctx)
{
    struct record *rc = ctx;
    json_t *canon = json_pack("{s:s,s:I,s:I,s:b,s:s,s:s}", "id", rc->id, "started_at",
                              (json_int_t)rc->started, "finished_at", (json_int_t)rc->finished,
                              "dry_run", rc->dry_run, "started_by", rc->a->token_id, "counts",
                              rc->counts);
    char *text = NULL, hex[2 * CD_CRYPTO_HASH_LEN + 1];
    uint8_t digest[CD_CRYPTO_HASH_LEN];
    uint64_t seq = 0;
    enum cd_err err;

    if (canon == NULL || (text = json_dumps(canon, JSON_COMPACT | JSON_SORT_KEYS)) == NULL) {
        json_decref(canon);
        return CD_ERR_NOMEM;
    }
    json_decref(canon);
    /* The entry carries the digest of the row (its columns in canonical JSON): an edited row
     * no longer matches the hashed ledger. */
    err = cd_crypto_sha256(text, strlen(text), digest);
    cd_free(text);
    if (err != CD_OK)
        return err;
    cd_hex_encode(digest, sizeof digest, hex);
    struct cd_audit_event ev = {.action = "retention.run",
                                .outcome = rc->failed ? "error" : "ok",
                                .actor_token = rc->a->token_id,
                                .actor_role = rc->a->role,
                                .actor_name = rc->a->name,
                                .request_id = rc->a->request_id,
                                .resource_id = rc->id,
                                .reason = rc->dry_run ? "dry_run" : NULL,
                                .data_sha256 = hex};
    if ((err = cd_audit_append(tx, &ev, &seq)) != CD_OK)
        return err;
    struct cd_val p[] = {CD_VCSTR(rc->id),         CD_VINT(rc->started),
                         CD_VINT(rc->finished),    CD_VINT(rc->dry_run),
                         CD_VCSTR(rc->a->token_id), CD_VCSTR(rc->counts),
                         CD_VINT((int64_t)seq)};
    return cd_tx_exec(tx,
                      "INSERT INTO retention_runs(id, started_at, finished_at, dry_run,"
                      " started_by, counts, audit_seq) VALUES($1,$2,$3,$4,$5,$6,$7)",
                      p, 7, NULL, NULL, NULL);
}

/* The counts of a run: {"<data>" or "<data>:<purpose>": count, "held_customers_skipped"}. */
static enum cd_err counts_of(const json_t *rules, size_t held, char **text)
{
    json_t *c = json_object(), *e;
    size_t i, len;
    enum cd_err err = c ? CD_OK : CD_ERR_NOMEM;

    json_array_foreach(rules, i, e) {
        char key[96];
        const char *purpose = json_string_value(json_object_get(e, "purpose"));
        snprintf(key, sizeof key, "%s%s%s", json_string_value(json_object_get(e, "data")),
                 purpose ? ":" : "", purpose ? purpose : "");
        if (err == CD_OK && json_object_set(c, key, json_object_get(e, "count")) != 0)
            err = CD_ERR_NOMEM;
    }
    if (err == CD_OK &&
        json_object_set_new(c, "held_customers_skipped", json_integer((json_int_t)held)) != 0)
        err = CD_ERR_NOMEM;
    if (err == CD_OK)
        err = cd_json_dump(c, text, &len);
    json_decref(c);
    return err;
}

enum cd_err cd_retention_run(struct cd_core *core, const struct cd_retention_rules *rules,
                             const struct cd_actor *a, bool dry_run, size_t max_ids,
                             json_t **report)
{
    struct run r = {core, cd_core_store(core), rules, a, dry_run, max_ids, "", cd_now_ms(),
                    {NULL, 0}, json_object()};
    json_t *entries = json_array();
    struct record rc = {a, r.id, r.now, 0, dry_run, false, NULL};
    char started[CD_TIME_STRLEN], finished[CD_TIME_STRLEN];
    enum cd_err err, rerr;

    cd_id_new("ret", r.id);
    if (r.held_all == NULL || entries == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    if ((err = cd__ret_held(r.store, &r.held)) != CD_OK)
        goto out;
    /* In data-set order, whatever the file's order. */
    for (int d = 0; d < CD__RET__COUNT && err == CD_OK; d++)
        for (size_t i = 0; i < rules->n && err == CD_OK; i++) {
            json_t *e = NULL;
            if (rules->v[i].data != d)
                continue;
            if ((err = apply(&r, &rules->v[i], &e)) == CD_OK &&
                json_array_append_new(entries, e) != 0)
                err = CD_ERR_NOMEM;
        }
    /* What was done is recorded even when a step failed: the deletions before it stand. */
    rc.failed = err != CD_OK;
    rc.finished = cd_now_ms();
    if ((rerr = counts_of(entries, json_object_size(r.held_all), &rc.counts)) == CD_OK)
        rerr = cd_store_write(r.store, record_fn, &rc);
    if (err == CD_OK)
        err = rerr;
    if (err != CD_OK)
        goto out;
    cd_time_format(r.now, started);
    cd_time_format(rc.finished, finished);
    *report = json_pack("{s:s,s:b,s:s,s:s,s:I,s:O}", "id", r.id, "dry_run", dry_run, "started_at",
                        started, "finished_at", finished, "held_customers_skipped",
                        (json_int_t)json_object_size(r.held_all), "rules", entries);
    if (*report == NULL)
        err = CD_ERR_NOMEM;
out:
    cd_free(rc.counts);
    cd_free(r.held.ids);
    json_decref(r.held_all);
    json_decref(entries);
    return err;
}

/* ---- past runs ---- */

static enum cd_err run_row(void *ctx, const struct cd_val *c, size_t n)
{
    json_t *counts = NULL, *o;
    char started[CD_TIME_STRLEN], finished[CD_TIME_STRLEN];

    (void)n;
    if (cd_json_parse(c[5].p, c[5].len, &counts) != CD_OK)
        return cd_err_set(CD_ERR_INTEGRITY, "a retention run's counts are not JSON");
    cd_time_format(c[1].i, started);
    cd_time_format(c[2].i, finished);
    o = json_pack("{s:s%,s:s,s:s,s:b,s:s%,s:o}", "id", c[0].p, c[0].len, "started_at", started,
                  "finished_at", finished, "dry_run", (int)c[3].i, "started_by", c[4].p,
                  c[4].len, "counts", counts);
    return o && json_array_append_new(ctx, o) == 0 ? CD_OK : CD_ERR_NOMEM;
}

static enum cd_err runs_fn(struct cd_tx *tx, void *ctx)
{
    json_array_clear(ctx);
    return cd_tx_exec(tx,
                      "SELECT id, started_at, finished_at, dry_run, started_by, counts"
                      " FROM retention_runs ORDER BY started_at DESC, id DESC LIMIT 100",
                      NULL, 0, run_row, ctx, NULL);
}

enum cd_err cd_retention_runs(struct cd_store *s, json_t **out)
{
    json_t *items = json_array();
    enum cd_err err;

    if (items == NULL)
        return CD_ERR_NOMEM;
    if ((err = cd_store_read(s, runs_fn, items)) != CD_OK) {
        json_decref(items);
        return err;
    }
    *out = json_pack("{s:o}", "items", items);
    return *out ? CD_OK : CD_ERR_NOMEM;
}
