/* Reading the ledger back: a customer's consent history (the whole merge group's events,
 * with their preferences), and an event's signed receipt and the keys that verify it. */
#include <stdio.h>
#include <string.h>
#include "consent_int.h"
#include "core/core.h"

/* ---- history ---- */

struct hist_item {
    int64_t seq;
    json_t *o;
};

struct hist {
    struct cd_buf items; /* struct hist_item, one after another */
    json_t *prefs;
    bool found;
    char jur[CD_CUSTOMER_JURISDICTION_MAX + 1];
};

static json_t *col_json(const struct cd_val *v)
{
    if (v->type == CD_VAL_TEXT)
        return json_stringn(v->p, v->len);
    if (v->type == CD_VAL_INT)
        return json_integer(v->i);
    return json_null();
}

static enum cd_err hist_row(void *ctx, const struct cd_val *col, size_t n)
{
    struct hist *h = ctx;
    static const char *const names[] = {"id", "purpose", "channel", "state", "legal_basis",
                                        "jurisdiction", "notice_id", "method", "collector",
                                        "evidence", "expires_at", "occurred_at", "recorded_at",
                                        "request_id", "customer_id"};
    struct hist_item item = {col[15].i, json_object()};
    json_t *o = item.o;
    enum cd_err err;

    if (o == NULL)
        return CD_ERR_NOMEM;
    if ((err = cd_buf_append(&h->items, &item, sizeof item)) != CD_OK) {
        json_decref(o);
        return err;
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        json_t *v;
        if ((i == 10 || i == 11 || i == 12) && col[i].type == CD_VAL_INT) {
            char t[CD_TIME_STRLEN];
            cd_time_format(col[i].i, t);
            v = json_string(t);
        } else {
            v = col_json(&col[i]);
        }
        if (cd_json_set_new(o, names[i], v) != CD_OK)
            return CD_ERR_NOMEM;
    }
    char url[96];
    snprintf(url, sizeof url, "/v1/consents/%.*s/receipt", (int)col[0].len,
             (const char *)col[0].p);
    return cd_json_set_new(o, "receipt_url", json_string(url));
}

static enum cd_err hist_cust_attrs(void *ctx, const struct cd_core_customer_attrs *a)
{
    struct hist *h = ctx;

    h->found = true;
    cd__consent_copy(h->jur, sizeof h->jur, a->jurisdiction);
    return CD_OK;
}

static enum cd_err hist_pref_row(void *ctx, const struct cd_val *col, size_t n)
{
    struct hist *h = ctx;
    json_t *topics = NULL, *caps = NULL;
    char qs[8] = "", qe[8] = "";

    if (cd_json_parse(col[2].p, col[2].len, &topics) != CD_OK ||
        cd_json_parse(col[3].p, col[3].len, &caps) != CD_OK) {
        json_decref(topics);
        return CD_ERR_NOMEM;
    }
    if (col[0].type == CD_VAL_INT && col[1].type == CD_VAL_INT) {
        snprintf(qs, sizeof qs, "%02d:%02d", (int)(col[0].i / 60), (int)(col[0].i % 60));
        snprintf(qe, sizeof qe, "%02d:%02d", (int)(col[1].i / 60), (int)(col[1].i % 60));
    }
    h->prefs = json_pack("{s:o,s:o,s:o}", "topics_opted_out", topics, "caps", caps,
                         "quiet_hours",
                         qs[0] ? json_pack("{s:s,s:s}", "start", qs, "end", qe) : json_null());
    return h->prefs ? CD_OK : CD_ERR_NOMEM;
}

/* The ids of a customer's merge group as the projection knows it: the customer first, then
 * the customers merged into it (directly or through others). */
struct group_ids {
    char id[CD__PROJ_MAX_GROUP][CD_ID_MAX];
    size_t n;
};

static void group_ids(struct cd_consent *c, struct cd_str customer_id, struct group_ids *g)
{
    uint8_t key[16];
    const struct cd__merge *e = NULL;

    cd__consent_copy(g->id[0], sizeof g->id[0], customer_id);
    g->n = 1;
    if (!cd_id_bits(customer_id, "cus", key))
        return;
    pthread_rwlock_rdlock(&c->lock);
    const struct cd__cust *cu = cd__proj_find(&c->proj, key);
    if (cu && (cu->rflags & CD__RF_GROUP))
        for (e = cd__proj_merge_entry(&c->proj, cu->mg); e && g->n < CD__PROJ_MAX_GROUP;
             e = cd__proj_merge_entry(&c->proj, e->next)) {
            const struct cd__cust *m = cd__proj_record(&c->proj, e->child);
            if (m)
                snprintf(g->id[g->n++], CD_ID_MAX, "cus_%.*s", CD__KEY_LEN, m->key);
        }
    pthread_rwlock_unlock(&c->lock);
}

struct hist_q {
    const struct group_ids *g;
    struct hist *h;
};

static enum cd_err hist_fn(struct cd_tx *tx, void *ctx)
{
    struct hist_q *q = ctx;
    struct cd_val p[1] = {CD_VCSTR(q->g->id[0])};
    enum cd_err err;

    if ((err = cd_core_customer_attrs(tx, cd_str_c(q->g->id[0]), hist_cust_attrs, q->h)) !=
            CD_OK ||
        (err = cd_tx_exec(tx, "SELECT quiet_start, quiet_end, topics_out, caps FROM "
                              "consent_preferences WHERE customer_id = $1",
                          p, 1, hist_pref_row, q->h, NULL)) != CD_OK)
        return err;
    /* The whole group's events: a merged id's history is the survivor's too. */
    for (size_t i = 0; i < q->g->n; i++) {
        struct cd_val m[1] = {CD_VCSTR(q->g->id[i])};
        if ((err = cd_tx_exec(tx, "SELECT id, purpose, channel, state, legal_basis, jurisdiction, "
                                  "notice_id, method, collector, evidence, expires_at, "
                                  "occurred_at, recorded_at, request_id, customer_id, seq "
                                  "FROM consent_events WHERE customer_id = $1 ORDER BY seq",
                              m, 1, hist_row, q->h, NULL)) != CD_OK)
            return err;
    }
    return CD_OK;
}

static int hist_cmp(const void *a, const void *b)
{
    int64_t x = ((const struct hist_item *)a)->seq, y = ((const struct hist_item *)b)->seq;
    return (x > y) - (x < y);
}

static void hist_free(struct hist *h)
{
    struct hist_item *it = (struct hist_item *)(void *)h->items.p;

    for (size_t i = 0; i < h->items.len / sizeof *it; i++)
        json_decref(it[i].o);
    cd_buf_free(&h->items);
    json_decref(h->prefs);
}

enum cd_err cd_consent_history(struct cd_consent *c, struct cd_str customer_id, json_t **out)
{
    struct hist h = {CD_BUF_INIT(64 * 1024 * 1024), NULL, false, {0}};
    struct group_ids *g = NULL;
    json_t *cur = json_array(), *items = json_array(), *res = NULL;
    enum cd_err err;
    uint8_t key[16];
    int64_t now = cd_now_ms();

    if (cur == NULL || items == NULL || (g = cd_malloc(sizeof *g)) == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    if (!cd_id_bits(customer_id, "cus", key)) {
        err = cd_err_set(CD_ERR_NOT_FOUND, "no customer with this id");
        goto out;
    }
    /* Exact, as a single check is: a customer the refresher has not seen yet is looked up. */
    pthread_rwlock_rdlock(&c->lock);
    bool known = cd__proj_find(&c->proj, key) != NULL;
    pthread_rwlock_unlock(&c->lock);
    bool exists = false;
    if (!known && (err = cd__consent_refresh_customer(c, customer_id, &exists)) != CD_OK)
        goto out;
    group_ids(c, customer_id, g);
    struct hist_q q = {g, &h};
    if ((err = cd_store_read(c->store, hist_fn, &q)) != CD_OK)
        goto out;
    if (!h.found) {
        err = cd_err_set(CD_ERR_NOT_FOUND, "no customer with this id");
        goto out;
    }
    struct hist_item *hi = (struct hist_item *)(void *)h.items.p;
    size_t n = h.items.len / sizeof *hi;
    /* The group's events in the order they were recorded. */
    if (n > 1)
        qsort(hi, n, sizeof *hi, hist_cmp);
    for (size_t i = 0; i < n; i++) {
        if (json_array_append(items, hi[i].o) != 0) {
            err = CD_ERR_NOMEM;
            goto out;
        }
    }
    /* Current state: the projection's decision for every purpose on "*" and each channel that
     * has its own state in the group. */
    for (int pu = 0; pu < CD_PURPOSE__COUNT && err == CD_OK; pu++) {
        unsigned chans = 1; /* bit per channel with a state; "*" always */
        pthread_rwlock_rdlock(&c->lock);
        for (size_t m = 0; m < g->n; m++) {
            uint8_t mk[16];
            const struct cd__cust *cu = cd_id_bits(cd_str_c(g->id[m]), "cus", mk)
                                            ? cd__proj_find(&c->proj, mk)
                                            : NULL;
            struct cd__proj_it it = {0};
            for (const struct cd__state *s; cu && (s = cd__proj_next(&c->proj, cu, &it)) != NULL;)
                if (s->purpose == pu)
                    chans |= 1u << s->channel;
        }
        pthread_rwlock_unlock(&c->lock);
        for (int ch = 0; ch < CD_CONSENT_CHANNEL__COUNT; ch++) {
            struct cd_consent_decision d;
            char ev[CD_ID_MAX];
            if (!(chans & (1u << ch)))
                continue;
            /* "*" here means the purpose as a whole, so quiet hours do not apply. */
            cd_consent_decide(c, customer_id, (enum cd_purpose)pu, (enum cd_consent_channel)ch,
                              now, &d);
            json_t *o = json_pack("{s:s,s:s,s:b,s:s,s:s,s:s,s:s?}", "purpose",
                                  cd_purpose_name((enum cd_purpose)pu), "channel",
                                  cd__consent_channel_names[ch], "allow", d.allow, "reason", d.reason,
                                  "basis", d.basis, "regime", d.regime, "event_id",
                                  d.has_event ? cd_consent_decision_event_id(&d, ev) : NULL);
            if (o == NULL || json_array_append_new(cur, o) != 0) {
                err = CD_ERR_NOMEM;
                break;
            }
        }
    }
    if (err != CD_OK)
        goto out;
    if (h.prefs == NULL)
        h.prefs = json_pack("{s:[],s:[],s:n}", "topics_opted_out", "caps", "quiet_hours");
    res = json_pack("{s:s%,s:s,s:O,s:O,s:O}", "customer_id", customer_id.p, customer_id.len,
                    "jurisdiction", h.jur, "current", cur, "preferences",
                    h.prefs ? h.prefs : json_null(), "history", items);
    if (res == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    *out = res;
out:
    hist_free(&h);
    cd_free(g);
    json_decref(items);
    json_decref(cur);
    return err;
}

/* ---- receipts and keys ---- */

struct rcpt {
    struct cd_str id;
    json_t *o;
};

static enum cd_err rcpt_row(void *ctx, const struct cd_val *col, size_t n)
{
    struct rcpt *r = ctx;
    json_t *parsed = NULL;
    char sig[2 * CD_CRYPTO_SIG_LEN + 1];
    char *b64 = NULL;
    enum cd_err err;

    if (col[1].len != CD_CRYPTO_SIG_LEN)
        return cd_err_set(CD_ERR_INTEGRITY, "a receipt signature is malformed");
    if ((err = cd_json_parse(col[0].p, col[0].len, &parsed)) != CD_OK)
        return err;
    if ((b64 = cd_malloc(cd_b64url_len(col[0].len) + 1)) == NULL) {
        json_decref(parsed);
        return CD_ERR_NOMEM;
    }
    cd_b64url_encode(col[0].p, col[0].len, b64);
    cd_hex_encode(col[1].p, CD_CRYPTO_SIG_LEN, sig);
    r->o = json_pack("{s:s,s:o,s:s,s:s,s:s}", "payload", b64, "receipt", parsed, "signature",
                     sig, "alg", "Ed25519", "key_id",
                     json_string_value(json_object_get(parsed, "keyId")) ?
                         json_string_value(json_object_get(parsed, "keyId")) : "");
    cd_free(b64);
    return r->o ? CD_OK : CD_ERR_NOMEM;
}

static enum cd_err rcpt_fn(struct cd_tx *tx, void *ctx)
{
    struct rcpt *r = ctx;
    struct cd_val p[1] = {CD_VTEXT(r->id)};

    return cd_tx_exec(tx, "SELECT receipt, signature FROM consent_events WHERE id = $1", p, 1,
                      rcpt_row, r, NULL);
}

enum cd_err cd_consent_receipt(struct cd_consent *c, struct cd_str event_id, json_t **out)
{
    struct rcpt r = {event_id, NULL};
    enum cd_err err;

    if (!cd_id_valid(event_id, "cev"))
        return cd_err_set(CD_ERR_NOT_FOUND, "no consent event with this id");
    if ((err = cd_store_read(c->store, rcpt_fn, &r)) != CD_OK) {
        json_decref(r.o);
        return err;
    }
    if (r.o == NULL)
        return cd_err_set(CD_ERR_NOT_FOUND, "no consent event with this id");
    *out = r.o;
    return CD_OK;
}

enum cd_err cd_consent_keys_json(struct cd_consent *c, json_t **out)
{
    struct cd_buf pem = CD_BUF_INIT(1024);
    char hex[CD_CRYPTO_PK_HEX_LEN + 1], kid[65], x[64];
    enum cd_err err;

    if ((err = cd_crypto_pubkey_pem(c->signer.pk, &pem)) != CD_OK)
        return err;
    cd_crypto_pubkey_hex(c->signer.pk, hex);
    cd_hex_encode(c->key_id, 32, kid);
    cd_b64url_encode(c->signer.pk, CD_CRYPTO_PK_LEN, x);
    *out = json_pack("{s:[{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}]}", "keys", "kid", kid, "use",
                     "consent-receipt", "alg", "Ed25519", "kty", "OKP", "crv", "Ed25519", "x", x,
                     "public_key_hex", hex, "public_key_pem", pem.p);
    cd_buf_free(&pem);
    return *out ? CD_OK : CD_ERR_NOMEM;
}

enum cd_err cd_consent_receipt_verify(struct cd_consent *c, struct cd_str payload,
                                      struct cd_str sig_hex)
{
    uint8_t sig[CD_CRYPTO_SIG_LEN];

    if (sig_hex.len != 2 * CD_CRYPTO_SIG_LEN || cd_hex_decode(sig_hex, sig, sizeof sig) != CD_OK)
        return cd_err_set(CD_ERR_INVALID, "the signature must be 128 hex digits");
    return cd_crypto_verify(c->signer.pk, payload.p, payload.len, sig);
}
