/* Consent events bound to the audit ledger. The columns of consent_events decide what the
 * projection allows, so an edited row must not count quietly: each event's ledger entry
 * carries the SHA-256 of the event's canonical form (its columns, the receipt's signature
 * among them) and the row keeps the entry's seq. Rebuilding the projection checks every row
 * against its entry (proj.c), `candor audit verify` checks the same and the signed receipts
 * (cd_consent_verify), and events recorded before binding existed are bound once, at start,
 * when their signed receipt agrees with their columns. */
#include <stdio.h>
#include <string.h>
#include "audit/audit.h"
#include "consent_int.h"

#define FORM_DOMAIN "candor.consent.event.v1"
#define BIND_BATCH 256

/* ---- the canonical form ---- */

enum cd_err cd__consent_event_digest(const struct cd_val *cols, uint8_t out[32])
{
    /* Each column as a tag (0 NULL, 1 integer, 2 bytes) and then the big-endian integer, or
     * the length as 8 bytes big-endian and the bytes: an injective encoding of the row. */
    struct cd_str parts[2 + 2 * CD__EC__COUNT];
    uint8_t hdr[1 + CD__EC__COUNT][9];
    size_t np = 0;

    hdr[0][0] = 0;
    for (int b = 1; b < 9; b++)
        hdr[0][b] = (uint8_t)((sizeof FORM_DOMAIN - 1) >> (8 * (8 - b)));
    parts[np++] = (struct cd_str){(const char *)hdr[0] + 1, 8};
    parts[np++] = CD_STR(FORM_DOMAIN);
    for (int i = 0; i < CD__EC__COUNT; i++) {
        uint8_t *h = hdr[1 + i];
        const struct cd_val *v = &cols[i];
        uint64_t x = 0;
        if (v->type == CD_VAL_NULL) {
            h[0] = 0;
            parts[np++] = (struct cd_str){(const char *)h, 1};
            continue;
        }
        h[0] = v->type == CD_VAL_INT ? 1 : 2;
        x = v->type == CD_VAL_INT ? (uint64_t)v->i : (uint64_t)v->len;
        for (int b = 8; b >= 1; b--, x >>= 8)
            h[b] = (uint8_t)x;
        parts[np++] = (struct cd_str){(const char *)h, 9};
        if (v->type != CD_VAL_INT && v->len > 0)
            parts[np++] = (struct cd_str){v->p, v->len};
    }
    return cd_crypto_sha256v(parts, np, out);
}

static struct cd_str col_str(const struct cd_val *v)
{
    if (v->type == CD_VAL_TEXT || v->type == CD_VAL_BLOB)
        return (struct cd_str){v->p ? v->p : "", v->len};
    return CD_STR_NULL;
}

const char *cd__consent_entry_binds(struct cd_str entry, const struct cd_val *cols,
                                    const uint8_t digest[32])
{
    struct cd_str v, id = col_str(&cols[CD__EC_ID]);
    char hex[65];

    if (!cd_audit_entry_member(entry, "action", &v) || v.len < 8 ||
        memcmp(v.p, "consent.", 8) != 0)
        return "the ledger entry it points to is not a consent event";
    if (!cd_audit_entry_member(entry, "resource_id", &v) || id.p == NULL || !cd_str_eq(v, id))
        return "the ledger entry it points to records another event";
    if (!cd_audit_entry_member(entry, "data_sha256", &v))
        return "the ledger entry it points to carries no digest";
    cd_hex_encode(digest, 32, hex);
    if (v.len != 64 || memcmp(v.p, hex, 64) != 0)
        return "its columns do not match the digest in its ledger entry";
    return NULL;
}

/* ---- the signed receipt ---- */

static bool json_is_str(const json_t *o, const char *key, struct cd_str want)
{
    const json_t *v = json_object_get(o, key);

    if (want.p == NULL)
        return v == NULL;
    return json_is_string(v) && json_string_length(v) == want.len &&
           memcmp(json_string_value(v), want.p, want.len) == 0;
}

static bool json_is_time(const json_t *o, const char *key, const struct cd_val *ms)
{
    char t[CD_TIME_STRLEN];

    if (ms->type != CD_VAL_INT)
        return false;
    cd_time_format(ms->i, t);
    return json_is_str(o, key, cd_str_c(t));
}

/* The first column the receipt r contradicts, or NULL (see make_receipt in ledger.c). */
static const char *receipt_column(const json_t *r, const struct cd_val *cols)
{
    const json_t *pur = json_array_get(json_object_get(json_array_get(
                                                            json_object_get(r, "services"), 0),
                                                        "purposes"),
                                       0);
    struct cd_str state = col_str(&cols[CD__EC_STATE]), method = col_str(&cols[CD__EC_METHOD]);
    int64_t flags = cols[CD__EC_FLAGS].type == CD_VAL_INT ? cols[CD__EC_FLAGS].i : -1;
    char sha[65], t[CD_TIME_STRLEN];

    if (!json_is_str(r, "consentReceiptID", col_str(&cols[CD__EC_ID])))
        return "id";
    if (!json_is_str(r, "piiPrincipalId", col_str(&cols[CD__EC_CUSTOMER])))
        return "customer_id";
    if (!json_is_object(pur))
        return "receipt";
    if (!json_is_str(pur, "purpose", col_str(&cols[CD__EC_PURPOSE])))
        return "purpose";
    if (!json_is_str(pur, "channel", col_str(&cols[CD__EC_CHANNEL])))
        return "channel";
    if (!json_is_str(pur, "state", state))
        return "state";
    int code = -1;
    for (int i = 1; i < CD_CONSENT_STATE__COUNT; i++)
        if (state.p && cd_str_eq_c(state, cd_consent_state_name((enum cd_consent_state)i)))
            code = i;
    if (cols[CD__EC_STATE_CODE].type != CD_VAL_INT || cols[CD__EC_STATE_CODE].i != code)
        return "state_code";
    if (!json_is_str(pur, "legalBasis", col_str(&cols[CD__EC_BASIS])))
        return "legal_basis";
    if (cols[CD__EC_EXPIRES].type == CD_VAL_INT) {
        cd_time_format(cols[CD__EC_EXPIRES].i, t);
        if (!json_is_str(pur, "termination", cd_str_c(t)))
            return "expires_at";
    } else if (cols[CD__EC_EXPIRES].type != CD_VAL_NULL ||
               !json_is_str(pur, "termination", CD_STR("on withdrawal"))) {
        return "expires_at";
    }
    bool implicit = json_is_str(pur, "consentType", CD_STR("IMPLICIT"));
    if (flags < 0 || implicit != ((flags & CD__SF_IMPLIED) != 0) ||
        ((flags & CD__SF_GPC) != 0) != cd_str_eq_c(method, "gpc") ||
        ((flags & CD__SF_UNSUB) != 0) != cd_str_eq_c(method, "unsubscribe"))
        return "flags";
    if (!json_is_time(r, "consentTime", &cols[CD__EC_OCCURRED]))
        return "occurred_at";
    if (!json_is_time(r, "recordedAt", &cols[CD__EC_RECORDED]))
        return "recorded_at";
    struct cd_str jur = col_str(&cols[CD__EC_JURISDICTION]);
    if (!json_is_str(r, "jurisdiction", jur.p && jur.len ? jur : CD_STR("unknown")))
        return "jurisdiction";
    if (!json_is_str(r, "collectionMethod", method))
        return "method";
    if (!json_is_str(r, "collector", col_str(&cols[CD__EC_COLLECTOR])))
        return "collector";
    if (!json_is_str(r, "language", col_str(&cols[CD__EC_LANGUAGE])))
        return "language";
    if (!json_is_str(r, "evidence", col_str(&cols[CD__EC_EVIDENCE])))
        return "evidence";
    const json_t *nt = json_object_get(r, "notice");
    struct cd_str nid = col_str(&cols[CD__EC_NOTICE_ID]), nsha = col_str(&cols[CD__EC_NOTICE_SHA]);
    if (nid.p == NULL) {
        if (nt != NULL || nsha.p != NULL)
            return "notice_id";
    } else {
        if (!json_is_str(nt, "id", nid))
            return "notice_id";
        if (nsha.len != 32)
            return "notice_sha256";
        cd_hex_encode(nsha.p, 32, sha);
        if (!json_is_str(nt, "sha256", cd_str_c(sha)))
            return "notice_sha256";
    }
    return NULL;
}

enum cd_err cd__consent_receipt_differs(const struct cd_val *cols, struct cd_str receipt,
                                        const uint8_t *pk, const char **column)
{
    struct cd_str sig = col_str(&cols[CD__EC_SIGNATURE]);
    json_t *r = NULL;
    enum cd_err err;

    *column = NULL;
    if (receipt.p == NULL) {
        *column = "receipt";
        return CD_OK;
    }
    if (pk && (sig.len != CD_CRYPTO_SIG_LEN ||
               cd_crypto_verify(pk, receipt.p, receipt.len, (const uint8_t *)sig.p) != CD_OK)) {
        cd_err_clear();
        *column = "signature";
        return CD_OK;
    }
    /* cd_json_parse tells an allocation that failed (jansson may then hand back an object
     * with members missing) from a receipt that is not JSON. */
    if ((err = cd_json_parse(receipt.p, receipt.len, &r)) == CD_ERR_NOMEM)
        return err;
    if (err != CD_OK || !json_is_object(r)) {
        json_decref(r);
        cd_err_clear();
        *column = "receipt";
        return CD_OK;
    }
    *column = receipt_column(r, cols);
    json_decref(r);
    return CD_OK;
}

/* ---- the projection's answer to an event that does not verify ---- */

enum cd_err cd__consent_taint(struct cd__proj *p, const uint8_t key[16], const uint8_t event[16])
{
    struct cd__cust *cu;
    enum cd_err err;

    if ((err = cd__proj_upsert(p, key, &cu)) != CD_OK)
        return err;
    /* Newest possible, on every channel: no later event replaces it until the record is
     * repaired and the projection rebuilt; state_verdict denies on the flag in every regime. */
    for (unsigned pu = 0; pu < CD_PURPOSE__COUNT && err == CD_OK; pu++) {
        struct cd__cstate s;
        memset(&s, 0, sizeof s);
        memcpy(s.event, event, 16);
        s.at = INT64_MAX;
        s.purpose = (uint8_t)pu;
        s.channel = CD_CONSENT_CHANNEL_ANY;
        s.state = CD_CONSENT_INVALIDATED;
        s.flags = CD__SF_INTEGRITY;
        err = cd__proj_apply(p, cu, &s);
    }
    return err;
}

/* ---- binding the events recorded before binding existed ---- */

struct legacy_one {
    int64_t seq;
    char id[CD_ID_MAX], customer_id[CD_ID_MAX], purpose[32], state[16];
    uint8_t digest[32];
    const char *bad; /* what the receipt contradicts, or NULL */
    bool found;
};

struct legacy_batch {
    struct cd_consent *c;
    int64_t after;
    int64_t seqs[BIND_BATCH];
    size_t nseq;
    /* outputs, derived anew on each run of the write */
    size_t bound;
    size_t nbad;
    char bad_id[BIND_BATCH][CD_ID_MAX];
    const char *bad_col[BIND_BATCH];
};

static enum cd_err legacy_seq_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct legacy_batch *b = ctx;

    if (b->nseq < BIND_BATCH)
        b->seqs[b->nseq++] = cols[0].i;
    return CD_OK;
}

static void copy_col(char *dst, size_t n, const struct cd_val *v)
{
    struct cd_str s = col_str(v);

    snprintf(dst, n, "%.*s", (int)(s.p && s.len < n ? s.len : 0), s.p ? s.p : "");
}

static enum cd_err legacy_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct legacy_one *o = ((void **)ctx)[0];
    struct legacy_batch *b = ((void **)ctx)[1];
    enum cd_err err;

    o->found = true;
    copy_col(o->id, sizeof o->id, &cols[CD__EC_ID]);
    copy_col(o->customer_id, sizeof o->customer_id, &cols[CD__EC_CUSTOMER]);
    copy_col(o->purpose, sizeof o->purpose, &cols[CD__EC_PURPOSE]);
    copy_col(o->state, sizeof o->state, &cols[CD__EC_STATE]);
    if ((err = cd__consent_event_digest(cols, o->digest)) != CD_OK)
        return err;
    return cd__consent_receipt_differs(cols, col_str(&cols[CD__EC__COUNT]), b->c->signer.pk,
                                       &o->bad);
}

static enum cd_err legacy_fn(struct cd_tx *tx, void *ctx)
{
    struct legacy_batch *b = ctx;
    struct cd_val after[] = {CD_VINT(b->after)};
    enum cd_err err;

    b->nseq = b->bound = b->nbad = 0;
    if ((err = cd_tx_exec(tx, "SELECT seq FROM consent_events WHERE audit_seq IS NULL AND seq > $1"
                              " ORDER BY seq LIMIT 256",
                          after, 1, legacy_seq_row, b, NULL)) != CD_OK)
        return err;
    for (size_t i = 0; i < b->nseq; i++) {
        struct legacy_one o;
        void *pair[2] = {&o, b};
        char hex[65];
        uint64_t seq = 0;
        memset(&o, 0, sizeof o);
        struct cd_val p[] = {CD_VINT(b->seqs[i])};
        if ((err = cd_tx_exec(tx, "SELECT " CD__CONSENT_EVENT_COLS ", receipt FROM consent_events"
                                  " WHERE seq = $1",
                              p, 1, legacy_row, pair, NULL)) != CD_OK)
            return err;
        if (!o.found)
            continue;
        if (o.bad) {
            snprintf(b->bad_id[b->nbad], sizeof b->bad_id[b->nbad], "%s", o.id);
            b->bad_col[b->nbad++] = o.bad;
            continue;
        }
        cd_hex_encode(o.digest, 32, hex);
        struct cd_audit_event ae = {.action = "consent.bind", .outcome = "ok",
                                    .actor_token = CD_ACTOR_SYSTEM, .actor_role = CD_ACTOR_SYSTEM,
                                    .actor_name = CD_ACTOR_SYSTEM, .purpose = o.purpose,
                                    .customer_id = o.customer_id, .resource_id = o.id,
                                    .categories = "consent", .reason = o.state,
                                    .data_sha256 = hex};
        if ((err = cd_audit_append(tx, &ae, &seq)) != CD_OK)
            return err;
        struct cd_val u[] = {CD_VINT(seq), CD_VINT(b->seqs[i])};
        if ((err = cd_tx_exec(tx, "UPDATE consent_events SET audit_seq = $1 WHERE seq = $2", u, 2,
                              NULL, NULL, NULL)) != CD_OK)
            return err;
        b->bound++;
    }
    return CD_OK;
}

enum cd_err cd__consent_bind_legacy(struct cd_consent *c)
{
    struct legacy_batch *b = cd_calloc(1, sizeof *b);
    size_t bound = 0;
    enum cd_err err = CD_OK;

    if (b == NULL)
        return CD_ERR_NOMEM;
    b->c = c;
    do {
        if ((err = cd_store_write(c->store, legacy_fn, b)) != CD_OK)
            break;
        bound += b->bound;
        for (size_t i = 0; i < b->nbad; i++)
            cd_integrity_report(CD_INTEGRITY_CONSENT_EVENT,
                                "\"event_id\":\"%s\",\"column\":\"%s\",\"detail\":\"its signed "
                                "receipt disagrees; left unbound\"",
                                b->bad_id[i], b->bad_col[i]);
        if (b->nseq > 0)
            b->after = b->seqs[b->nseq - 1];
    } while (b->nseq == BIND_BATCH);
    if (bound > 0)
        cd_log(CD_LOG_INFO, "consent.events_bound", "\"events\":%zu", bound);
    cd_free(b);
    return err;
}

/* ---- offline verification ---- */

struct verify_ctx {
    const uint8_t *pk;
    struct cd_consent_report *rep;
    char detail[400];
    bool failed;
};

/* Records the first failure: the event's id and what is wrong with it. */
static enum cd_err fail(struct verify_ctx *v, const struct cd_val *cols, const char *what,
                        const char *col)
{
    copy_col(v->rep->event_id, sizeof v->rep->event_id, &cols[CD__EC_ID]);
    if (col)
        snprintf(v->detail, sizeof v->detail, "consent event %s: %s; its %s column differs "
                 "from its signed receipt", v->rep->event_id, what, col);
    else
        snprintf(v->detail, sizeof v->detail, "consent event %s: %s", v->rep->event_id, what);
    v->failed = true;
    return cd_err_set(CD_ERR_INTEGRITY, "%s", v->detail);
}

static enum cd_err verify_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct verify_ctx *v = ctx;
    const struct cd_val *audit_seq = &cols[CD__EC__COUNT + 1], *entry = &cols[CD__EC__COUNT + 2];
    struct cd_str receipt = col_str(&cols[CD__EC__COUNT]);
    uint8_t digest[32];
    enum cd_err err;

    if ((err = cd__consent_event_digest(cols, digest)) != CD_OK)
        return err;
    /* The receipt names an edited column when it carries it; the digest covers the rest. */
    const char *col = NULL;
    if ((v->pk || audit_seq->type == CD_VAL_NULL) &&
        (err = cd__consent_receipt_differs(cols, receipt, v->pk, &col)) != CD_OK)
        return err;
    if (col && strcmp(col, "signature") == 0)
        return fail(v, cols, "its receipt's signature does not verify: the receipt or its "
                             "signature was altered", NULL);
    if (audit_seq->type == CD_VAL_NULL) {
        if (col)
            return fail(v, cols, "recorded before ledger binding and not bound since", col);
        v->rep->receipt_only++;
    } else {
        const char *why = entry->type == CD_VAL_NULL
                              ? "the ledger entry its audit_seq points to is missing"
                              : cd__consent_entry_binds(col_str(entry), cols, digest);
        if (why && !col)
            return fail(v, cols,
                        strcmp(why, "its columns do not match the digest in its ledger entry")
                            ? why
                            : "its columns do not match the digest in its ledger entry (a "
                              "column its receipt does not carry was altered: flags, "
                              "request_id, actor_token or purchase_at)",
                        NULL);
        if (why || col)
            return fail(v, cols, why ? why : "its row is bound to the ledger", col);
    }
    v->rep->events++;
    return CD_OK;
}

static enum cd_err verify_fn(struct cd_tx *tx, void *ctx)
{
    return cd_tx_exec(tx,
                      "SELECT " CD__CONSENT_EVENT_COLS ", receipt, audit_seq, (SELECT entry FROM"
                      " audit_events a WHERE a.seq = consent_events.audit_seq)"
                      " FROM consent_events ORDER BY seq",
                      NULL, 0, verify_row, ctx, NULL);
}

enum cd_err cd_consent_verify(struct cd_store *s, const uint8_t *receipts_pk,
                              struct cd_consent_report *rep)
{
    struct verify_ctx v = {receipts_pk, rep, "", false};
    enum cd_err err;

    memset(rep, 0, sizeof *rep);
    err = cd_store_read(s, verify_fn, &v);
    if (v.failed)
        return cd_err_set(CD_ERR_INTEGRITY, "%s", v.detail);
    return err;
}
