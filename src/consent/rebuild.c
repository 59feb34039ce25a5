/* The projection from the tables: the rebuild at start (notices, customers, events checked
 * against their ledger entries, preferences, merges), and what other servers on the same
 * database changed, caught up from the store's feed. */
#include <stdio.h>
#include <string.h>
#include "audit/audit.h"
#include "consent_int.h"
#include "core/core.h"

/* ---- rebuild ---- */

struct rb {
    struct cd_consent *c;
    struct cd__proj *p;
    enum cd_err err;
};

static struct cd_str colstr(const struct cd_val *v)
{
    if (v->type == CD_VAL_TEXT || v->type == CD_VAL_BLOB)
        return (struct cd_str){v->p, v->len};
    return CD_STR_NULL;
}

static enum cd_err notice_row(void *ctx, const struct cd_val *col, size_t n)
{
    struct rb *b = ctx;
    char id[CD_ID_MAX];

    if (col[3].len != 32 || col[0].len >= CD_ID_MAX)
        return cd_err_set(CD_ERR_INTEGRITY, "a notice row is malformed");
    snprintf(id, sizeof id, "%.*s", (int)col[0].len, (const char *)col[0].p);
    return cd__consent_notice_add(b->c, id, colstr(&col[1]), (uint32_t)col[2].i, col[4].i != 0,
                                  col[3].p);
}

static enum cd_err customer_row(void *ctx, const struct cd_core_customer_attrs *in)
{
    struct rb *b = ctx;
    struct cd__cattr a;
    enum cd_err err;

    if (!cd__consent_cattr_from(b->c, in, &a))
        return CD_OK;
    /* Merges are applied after every customer, in the order they happened (merge_row). */
    if ((err = cd__consent_cattr_apply(b->p, &a, false)) != CD_OK)
        return err;
    if (in->updated_at > b->c->refreshed_until)
        b->c->refreshed_until = in->updated_at;
    return CD_OK;
}

static enum cd_err merge_row(void *ctx, struct cd_str merged_id, struct cd_str survivor_id,
                             int64_t merged_at)
{
    struct rb *b = ctx;
    uint8_t ck[16], pk[16];
    struct cd__cust *child, *parent;
    enum cd_err err;

    if (!cd_id_bits(merged_id, "cus", ck) || !cd_id_bits(survivor_id, "cus", pk))
        return cd_err_set(CD_ERR_INTEGRITY, "a merges row is malformed");
    if ((err = cd__proj_upsert(b->p, ck, &child)) != CD_OK ||
        (err = cd__proj_upsert(b->p, pk, &parent)) != CD_OK)
        return err;
    return cd__proj_merge(b->p, child, parent, merged_at);
}

/* An event that does not match its ledger entry (or was never bound to one) must not count:
 * its customer, and the customer its entry names if another, are denied every purpose that
 * needs consent (cd__consent_taint), and the failure is logged and counted. */
static enum cd_err event_unverified(struct rb *b, const struct cd_val *col, struct cd_str entry,
                                    const char *why)
{
    uint8_t key[16], event[16] = {0};
    struct cd_str id = colstr(&col[CD__EC_ID]), cust = colstr(&col[CD__EC_CUSTOMER]), other;
    char raw[CD_ID_MAX] = "", safe_id[CD_ID_MAX];
    enum cd_err err = CD_OK;

    cd_id_bits(id, "cev", event);
    if (id.p && id.len < sizeof raw) {
        memcpy(raw, id.p, id.len);
        raw[id.len] = '\0';
    }
    cd_log_safe(raw, safe_id, sizeof safe_id); /* the column may hold anything now */
    cd_integrity_report(CD_INTEGRITY_CONSENT_EVENT,
                        "\"event_id\":\"%s\",\"detail\":\"%s; its customer's consent is "
                        "denied until the record is repaired\"",
                        safe_id, why);
    if (cd_id_bits(cust, "cus", key))
        err = cd__consent_taint(b->p, key, event);
    if (err == CD_OK && entry.p && cd_audit_entry_member(entry, "customer_id", &other) &&
        !cd_str_eq(other, cust) && cd_id_bits(other, "cus", key))
        err = cd__consent_taint(b->p, key, event);
    return err;
}

static enum cd_err event_row(void *ctx, const struct cd_val *col, size_t n)
{
    struct rb *b = ctx;
    uint8_t key[16], digest[32];
    struct cd__cust *cu;
    struct cd__cstate s;
    enum cd_purpose pu;
    enum cd_consent_channel ch;
    enum cd_err err;
    struct cd_str entry = colstr(&col[CD__EC__COUNT + 1]);
    const char *why = NULL;

    /* Only events that verify count (bind.c): the row must match the digest in its entry. */
    if (col[CD__EC__COUNT].type == CD_VAL_NULL)
        why = "it is not bound to the ledger (its signed receipt disagreed with its columns)";
    else if (entry.p == NULL)
        why = "the ledger entry its audit_seq points to is missing";
    else if ((err = cd__consent_event_digest(col, digest)) != CD_OK)
        return err;
    else
        why = cd__consent_entry_binds(entry, col, digest);
    if (why)
        return event_unverified(b, col, entry, why);
    memset(&s, 0, sizeof s);
    if (!cd_id_bits(colstr(&col[CD__EC_ID]), "cev", s.event) ||
        !cd_id_bits(colstr(&col[CD__EC_CUSTOMER]), "cus", key) ||
        !cd_purpose_parse(colstr(&col[CD__EC_PURPOSE]), &pu) ||
        !cd_consent_channel_parse(colstr(&col[CD__EC_CHANNEL]), &ch))
        return cd_err_set(CD_ERR_INTEGRITY, "a consent event row is malformed");
    s.purpose = (uint8_t)pu;
    s.channel = (uint8_t)ch;
    s.state = (uint8_t)col[CD__EC_STATE_CODE].i;
    s.at = col[CD__EC_OCCURRED].i;
    s.expires = col[CD__EC_EXPIRES].type == CD_VAL_INT ? col[CD__EC_EXPIRES].i : 0;
    s.flags = (uint8_t)col[CD__EC_FLAGS].i;
    s.notice = col[CD__EC_NOTICE_ID].type == CD_VAL_TEXT
                   ? cd__consent_notice_find(b->c, colstr(&col[CD__EC_NOTICE_ID]))
                   : 0;
    if ((err = cd__proj_upsert(b->p, key, &cu)) != CD_OK)
        return err;
    return cd__proj_apply(b->p, cu, &s);
}

static enum cd_err prefs_row(void *ctx, const struct cd_val *col, size_t n)
{
    struct rb *b = ctx;
    uint8_t key[16];
    struct cd__cust *cu;
    json_t *topics = NULL;
    enum cd_err err;

    if (!cd_id_bits(colstr(&col[0]), "cus", key))
        return CD_OK;
    if ((err = cd__proj_upsert(b->p, key, &cu)) != CD_OK)
        return err;
    cu->qh_start = col[1].type == CD_VAL_INT ? (uint16_t)(col[1].i + 1) : 0;
    cu->qh_end = col[2].type == CD_VAL_INT ? (uint16_t)(col[2].i + 1) : 0;
    cu->topics_out = 0;
    if (cd_json_parse(col[3].p, col[3].len, &topics) == CD_OK && json_is_array(topics)) {
        size_t i;
        json_t *t;
        json_array_foreach(topics, i, t)
        {
            int bit = cd__consent_topic(b->c, cd_str_c(json_string_value(t)), true);
            if (bit >= 0)
                cu->topics_out |= 1ull << bit;
        }
    }
    json_decref(topics);
    cd__proj_sync(b->p, cu);
    return CD_OK;
}

#define EVENTS_SQL                                                                           \
    "SELECT " CD__CONSENT_EVENT_COLS ", audit_seq, (SELECT entry FROM audit_events a"          \
    " WHERE a.seq = consent_events.audit_seq), seq FROM consent_events"
#define NOTICES_SQL "SELECT id, name, version, sha256, material FROM consent_notices"
#define PREFS_SQL "SELECT customer_id, quiet_start, quiet_end, topics_out FROM consent_preferences"

static enum cd_err rebuild_fn(struct cd_tx *tx, void *ctx)
{
    struct rb *b = ctx;
    enum cd_err err;
    int64_t upto = 0;

    b->c->nnotices = 0;
    b->c->nnames = 0;
    /* Where the feed's catch-up starts (cd_consent_changed): every event up to it is in this
     * snapshot, since events are numbered in commit order (one writer at a time). */
    if ((err = cd_tx_int(tx, "SELECT coalesce(max(seq), 0) FROM consent_events", NULL, 0,
                         &upto)) != CD_OK)
        return err;
    b->c->events_upto = upto;
    if ((err = cd_tx_exec(tx, NOTICES_SQL " ORDER BY name, version",
                          NULL, 0, notice_row, b, NULL)) != CD_OK ||
        (err = cd_core_customers_attrs(tx, customer_row, b)) != CD_OK ||
        (err = cd_tx_exec(tx, EVENTS_SQL " ORDER BY customer_id, seq", NULL, 0, event_row, b,
                          NULL)) != CD_OK ||
        (err = cd_tx_exec(tx, PREFS_SQL, NULL, 0, prefs_row, b, NULL)) != CD_OK ||
        (err = cd_core_merges(tx, merge_row, b)) != CD_OK)
        return err;
    return CD_OK;
}

enum cd_err cd__consent_rebuild(struct cd_consent *c, struct cd__proj *p)
{
    struct rb b = {c, p, CD_OK};

    p->rules = &c->rules;

    return cd_store_read(c->store, rebuild_fn, &b);
}

/* ---- what other servers on the same database changed ----
 *
 * Announced on the store's feed, applied here on the feed thread to the shared projection,
 * each row under the write lock as a local change is. Events are caught up by their number:
 * one writer at a time across the servers numbers them in commit order, so "every event after
 * the last one seen" misses none, also after a lost feed. Re-applying an event this server
 * already applied changes nothing (the newer state wins, and it is the same one). */

/* A row handler of the rebuild, run on the shared projection under the write lock. */
struct locked_rb {
    struct rb b;
    cd_row_fn row;
    int64_t upto; /* the highest event number seen (events only) */
};

static enum cd_err locked_row(void *ctx, const struct cd_val *col, size_t n)
{
    struct locked_rb *l = ctx;
    enum cd_err err;

    if (l->row == notice_row && col[0].type == CD_VAL_TEXT) {
        pthread_rwlock_rdlock(&l->b.c->lock);
        bool known = cd__consent_notice_find(l->b.c, colstr(&col[0])) != 0;
        pthread_rwlock_unlock(&l->b.c->lock);
        if (known)
            return CD_OK;
    }
    /* An event's customer may be new to this server: its attributes (jurisdiction, time zone,
     * restriction, merge) are read first, as a local event reads them before it applies. */
    uint8_t key[16];
    if (l->row == event_row && cd_id_bits(colstr(&col[CD__EC_CUSTOMER]), "cus", key)) {
        pthread_rwlock_rdlock(&l->b.c->lock);
        bool known = cd__proj_find(&l->b.c->proj, key) != NULL;
        pthread_rwlock_unlock(&l->b.c->lock);
        bool exists;
        if (!known &&
            (err = cd__consent_refresh_customer(l->b.c, colstr(&col[CD__EC_CUSTOMER]),
                                                &exists)) != CD_OK)
            return err;
    }
    cd__consent_wlock(l->b.c);
    err = l->row(&l->b, col, n);
    cd__consent_wunlock(l->b.c);
    if (l->row == event_row && n > CD__EC__COUNT + 2 && col[CD__EC__COUNT + 2].i > l->upto)
        l->upto = col[CD__EC__COUNT + 2].i;
    return err;
}

struct catch_up {
    struct cd_consent *c;
    const char *sql;
    struct cd_val p[1];
    size_t np;
    struct locked_rb l;
};

static enum cd_err catch_up_fn(struct cd_tx *tx, void *ctx)
{
    struct catch_up *q = ctx;

    return cd_tx_exec(tx, q->sql, q->p, q->np, locked_row, &q->l, NULL);
}

/* Runs sql (with at most one parameter p) and applies each row with row. */
static enum cd_err catch_up(struct cd_consent *c, const char *sql, const struct cd_val *p,
                            cd_row_fn row, int64_t *upto)
{
    struct catch_up q = {c, sql, {p ? *p : CD_VNULL}, p != NULL,
                         {{c, &c->proj, CD_OK}, row, upto ? *upto : 0}};
    enum cd_err err = cd_store_read(c->store, catch_up_fn, &q);

    if (upto)
        *upto = q.l.upto; /* as far as it got: the rows before a failure are applied */
    return err;
}

void cd_consent_changed(struct cd_consent *c, const char *topic)
{
    static const char prefs[] = "consent.preferences ";
    enum cd_err err = CD_OK;
    bool all = topic == NULL;

    pthread_mutex_lock(&c->changes_mu);
    if (all || strcmp(topic, "consent.notices") == 0)
        err = catch_up(c, NOTICES_SQL " ORDER BY name, version", NULL, notice_row, NULL);
    if (err == CD_OK && (all || strcmp(topic, "consent.events") == 0)) {
        struct cd_val after = CD_VINT(c->events_upto);
        err = catch_up(c, EVENTS_SQL " WHERE seq > $1 ORDER BY seq", &after, event_row,
                       &c->events_upto);
    }
    if (err == CD_OK && all)
        err = catch_up(c, PREFS_SQL, NULL, prefs_row, NULL);
    else if (err == CD_OK && strncmp(topic, prefs, sizeof prefs - 1) == 0) {
        struct cd_val id = CD_VCSTR(topic + sizeof prefs - 1);
        err = catch_up(c, PREFS_SQL " WHERE customer_id = $1", &id, prefs_row, NULL);
    }
    pthread_mutex_unlock(&c->changes_mu);
    /* The feed goes on; what failed here is read again at the next announcement of its kind,
     * or at the resync that follows a lost connection. */
    if (err != CD_OK)
        cd_log(CD_LOG_ERROR, "consent.catch_up_failed", "\"error\":\"%s\"", cd_err_name(err));
}
