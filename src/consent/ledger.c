/* The consent ledger proper: the names of channels and states, opening and closing the engine,
 * and recording events with signed receipts (one store transaction with the audit event, then
 * the projection), GPC signals among them. Reading the ledger back is history.c; notices,
 * preferences, one-click unsubscribe and the hooks into the core have their own files. */
#include <stdio.h>
#include <string.h>
#include "audit/audit.h"
#include "consent_int.h"
#include "core/core.h"
#include "outbox/outbox.h"

#define RECEIPT_FORMAT "candor.consent.receipt.v1"

const char *const cd__consent_channel_names[CD_CONSENT_CHANNEL__COUNT] = {
    "*", CD_CHANNELS(CD_NAME_ITEM)};
static const char *const state_names[CD_CONSENT_STATE__COUNT] = {
    "none", "requested", "given", "refused", "withdrawn", "expired", "invalidated"};
static const char *const methods[] = {"web_form", "email_link", "chat",   "phone_script",
                                      "api",      "import",     "gpc",    "unsubscribe", NULL};
static const char *const bases[] = {"consent", "implied_consent", "contract", "legal_obligation",
                                    "legitimate_interest", NULL};

const char *cd_consent_channel_name(enum cd_consent_channel ch)
{
    return (unsigned)ch < CD_CONSENT_CHANNEL__COUNT ? cd__consent_channel_names[ch] : "?";
}

bool cd_consent_channel_parse(struct cd_str s, enum cd_consent_channel *out)
{
    for (int i = 0; i < CD_CONSENT_CHANNEL__COUNT; i++)
        if (cd_str_eq_c(s, cd__consent_channel_names[i])) {
            *out = (enum cd_consent_channel)i;
            return true;
        }
    return false;
}

const char *cd_consent_state_name(enum cd_consent_state st)
{
    return (unsigned)st < CD_CONSENT_STATE__COUNT ? state_names[st] : "?";
}

static bool in_list(struct cd_str s, const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        if (cd_str_eq_c(s, list[i]))
            return true;
    return false;
}

/* ---- open / close ---- */

enum cd_err cd_consent_open(struct cd_store *s, const char *data_dir, const char *rules_path,
                            struct cd_consent **out)
{
    struct cd_consent *c = NULL;
    char path[CD_PATH_MAX];
    enum cd_err err;
    pthread_rwlockattr_t attr;

    if ((err = cd_crypto_init()) != CD_OK)
        return err;
    if ((c = cd_calloc(1, sizeof *c)) == NULL)
        return CD_ERR_NOMEM;
    c->store = s;
    pthread_rwlockattr_init(&attr);
    /* Writers apply one committed event at a time; they must not starve behind readers. */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&c->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    pthread_mutex_init(&c->tz_mu, NULL);
    pthread_mutex_init(&c->stop_mu, NULL);
    pthread_mutex_init(&c->refresh_mu, NULL);
    pthread_mutex_init(&c->changes_mu, NULL);
    pthread_cond_init(&c->stop_cv, NULL);
    if ((c->notices = cd_calloc(CD__CONSENT_MAX_NOTICES, sizeof *c->notices)) == NULL ||
        (c->names = cd_calloc(CD__CONSENT_MAX_NAMES, sizeof *c->names)) == NULL ||
        (c->name_material = cd_calloc(CD__CONSENT_MAX_NAMES, sizeof *c->name_material)) ==
            NULL) {
        err = CD_ERR_NOMEM;
        goto fail;
    }
    if ((err = cd__consent_rules_load(rules_path, &c->rules)) != CD_OK)
        goto fail;
    snprintf(path, sizeof path, "%s/receipts.key", data_dir);
    if ((err = cd_crypto_signer_load_or_create(path, &c->signer)) != CD_OK ||
        (err = cd_crypto_pubkey_id(c->signer.pk, c->key_id)) != CD_OK)
        goto fail;
    snprintf(path, sizeof path, "%s/unsubscribe.key", data_dir);
    if ((err = cd_crypto_keyfile_load_or_create(path, sizeof c->unsub_key, c->unsub_key)) !=
        CD_OK)
        goto fail;
    /* Events from before ledger binding are bound (when their receipts agree) before the
     * projection is built from the events that verify. */
    if ((err = cd__consent_bind_legacy(c)) != CD_OK ||
        (err = cd__consent_rebuild(c, &c->proj)) != CD_OK)
        goto fail;
    c->proj.shared = true; /* from here on, decisions read it without the lock */
    if ((err = cd__consent_refresher_start(c)) != CD_OK)
        goto fail;
    *out = c;
    return CD_OK;
fail:
    cd_consent_close(c);
    return err;
}

void cd_consent_close(struct cd_consent *c)
{
    if (c == NULL)
        return;
    cd__consent_refresher_stop(c);
    cd_crypto_signer_wipe(&c->signer);
    cd_crypto_wipe(c->unsub_key, sizeof c->unsub_key);
    cd__proj_free(&c->proj);
    for (size_t i = 0; i < atomic_load(&c->ntz); i++)
        cd_tz_free(c->tz[i]);
    cd_free(c->notices);
    cd_free(c->names);
    cd_free(c->name_material);
    pthread_rwlock_destroy(&c->lock);
    pthread_mutex_destroy(&c->tz_mu);
    pthread_mutex_destroy(&c->stop_mu);
    pthread_mutex_destroy(&c->refresh_mu);
    pthread_mutex_destroy(&c->changes_mu);
    pthread_cond_destroy(&c->stop_cv);
    cd_free(c);
}

/* ---- events ---- */

void cd__consent_copy(char *dst, size_t n, struct cd_str s)
{
    size_t k = s.len < n - 1 ? s.len : n - 1;
    if (s.p)
        memcpy(dst, s.p, k);
    dst[s.p ? k : 0] = '\0';
}

static enum cd_err opt_time(const json_t *body, const char *key, int64_t *out)
{
    struct cd_str s = CD_STR_NULL;
    enum cd_err err = cd_json_str(body, key, false, &s);

    if (err != CD_OK || s.p == NULL)
        return err;
    if (cd_time_parse(s, out) != CD_OK)
        return cd_err_set(CD_ERR_INVALID, "'%s' must be an RFC 3339 date-time", key);
    return CD_OK;
}

bool cd__consent_printable(struct cd_str s, size_t max)
{
    if (s.len > max || !cd_utf8_valid(s.p, s.len))
        return false;
    for (size_t i = 0; i < s.len; i++)
        if ((unsigned char)s.p[i] < 0x20)
            return false;
    return true;
}

static enum cd_err parse_event(const json_t *body, struct cd__ev *e)
{
    static const char *const allowed[] = {
        "customer_id", "purpose",   "channel",    "state",      "legal_basis", "method",
        "collector",   "notice_id", "notice_sha256", "evidence", "expires_at", "occurred_at",
        "purchase_at", "language",  "jurisdiction", NULL};
    struct cd_str cid = CD_STR_NULL, pu = CD_STR_NULL, ch = CD_STR("*"), st = CD_STR_NULL,
                  basis = CD_STR("consent"), method = CD_STR_NULL, coll = CD_STR_NULL,
                  nid = CD_STR_NULL, nsha = CD_STR_NULL, evid = CD_STR_NULL, lang = CD_STR("en"),
                  jur = CD_STR_NULL;
    enum cd_err err;

    if ((err = cd_json_only(body, allowed)) != CD_OK ||
        (err = cd_json_str(body, "customer_id", true, &cid)) != CD_OK ||
        (err = cd_json_str(body, "purpose", true, &pu)) != CD_OK ||
        (err = cd_json_str(body, "channel", false, &ch)) != CD_OK ||
        (err = cd_json_str(body, "state", true, &st)) != CD_OK ||
        (err = cd_json_str(body, "legal_basis", false, &basis)) != CD_OK ||
        (err = cd_json_str(body, "method", true, &method)) != CD_OK ||
        (err = cd_json_str(body, "collector", false, &coll)) != CD_OK ||
        (err = cd_json_str(body, "notice_id", false, &nid)) != CD_OK ||
        (err = cd_json_str(body, "notice_sha256", false, &nsha)) != CD_OK ||
        (err = cd_json_str(body, "evidence", false, &evid)) != CD_OK ||
        (err = cd_json_str(body, "language", false, &lang)) != CD_OK ||
        (err = cd_json_str(body, "jurisdiction", false, &jur)) != CD_OK ||
        (err = opt_time(body, "expires_at", &e->expires_at)) != CD_OK ||
        (err = opt_time(body, "occurred_at", &e->occurred_at)) != CD_OK ||
        (err = opt_time(body, "purchase_at", &e->purchase_at)) != CD_OK)
        return err;
    if (!cd_id_valid(cid, "cus"))
        return cd_err_set(CD_ERR_INVALID, "'customer_id' must be a customer id (cus_...)");
    cd__consent_copy(e->customer_id, sizeof e->customer_id, cid);
    if (!cd_purpose_parse(pu, &e->purpose))
        return cd_err_set(CD_ERR_INVALID, "'purpose' must be one of: %s", cd_purpose_list());
    if (!cd_consent_channel_parse(ch, &e->channel))
        return cd_err_set(CD_ERR_INVALID, "'channel' must be * or one of email, sms, phone, "
                                          "chat, social, app, push, post, in_person");
    e->state = CD_CONSENT_NONE;
    for (int i = 1; i < CD_CONSENT_STATE__COUNT; i++)
        if (cd_str_eq_c(st, state_names[i]))
            e->state = (enum cd_consent_state)i;
    if (e->state == CD_CONSENT_NONE)
        return cd_err_set(CD_ERR_INVALID, "'state' must be requested, given, refused, "
                                          "withdrawn, expired or invalidated");
    if (!in_list(basis, bases))
        return cd_err_set(CD_ERR_INVALID, "'legal_basis' must be consent, implied_consent, "
                                          "contract, legal_obligation or legitimate_interest");
    cd__consent_copy(e->basis, sizeof e->basis, basis);
    if (!in_list(method, methods))
        return cd_err_set(CD_ERR_INVALID, "'method' must be web_form, email_link, chat, "
                                          "phone_script, api, import, gpc or unsubscribe");
    cd__consent_copy(e->method, sizeof e->method, method);
    if (coll.p && (coll.len == 0 || !cd__consent_printable(coll, 120)))
        return cd_err_set(CD_ERR_INVALID, "'collector' must have 1 to 120 printable characters");
    cd__consent_copy(e->collector, sizeof e->collector, coll.p ? coll : CD_STR(""));
    if (evid.p && !cd__consent_printable(evid, 250))
        return cd_err_set(CD_ERR_INVALID, "'evidence' must be a reference of at most 250 "
                                          "printable characters");
    cd__consent_copy(e->evidence, sizeof e->evidence, evid);
    if (lang.len == 0 || lang.len > 15 || !cd__consent_printable(lang, 15))
        return cd_err_set(CD_ERR_INVALID, "'language' must be a BCP 47 tag");
    cd__consent_copy(e->language, sizeof e->language, lang);
    if (jur.p && (jur.len == 0 || !cd__consent_printable(jur, CD__EVENT_JURISDICTION_MAX)))
        return cd_err_set(CD_ERR_INVALID, "'jurisdiction' must be a short code such as EU");
    cd__consent_copy(e->jurisdiction, sizeof e->jurisdiction, jur);
    if (nid.p) {
        if (!cd_id_valid(nid, "ntc"))
            return cd_err_set(CD_ERR_INVALID, "'notice_id' must be a notice id (ntc_...)");
        cd__consent_copy(e->notice_id, sizeof e->notice_id, nid);
        e->has_notice = true;
    }
    if (nsha.p) {
        if (!nid.p)
            return cd_err_set(CD_ERR_INVALID, "'notice_sha256' needs 'notice_id'");
        if (nsha.len != 64 || cd_hex_decode(nsha, e->notice_sha, 32) != CD_OK)
            return cd_err_set(CD_ERR_INVALID, "'notice_sha256' must be 64 hex digits");
        e->has_notice_sha = true;
    }
    if (cd_str_eq_c(basis, "implied_consent") && e->state == CD_CONSENT_GIVEN)
        e->flags |= CD__SF_IMPLIED;
    if (cd_str_eq_c(method, "gpc"))
        e->flags |= CD__SF_GPC;
    if (cd_str_eq_c(method, "unsubscribe"))
        e->flags |= CD__SF_UNSUB;
    if (e->expires_at && e->state != CD_CONSENT_GIVEN)
        return cd_err_set(CD_ERR_INVALID, "'expires_at' applies only to state given");
    return CD_OK;
}

/* What the pre-write read finds: the customer and the notice. */
struct pre {
    struct cd_str customer_id;
    struct cd_str notice_id;
    bool found, notice_found;
    char resolved[CD_ID_MAX]; /* the customer the id stands for (a merged id's survivor) */
    char jur[CD_CUSTOMER_JURISDICTION_MAX + 1], tz[CD_CUSTOMER_TZ_MAX + 1];
    uint8_t sha[32];
};

static enum cd_err pre_cust_attrs(void *ctx, const struct cd_core_customer_attrs *a)
{
    struct pre *p = ctx;

    p->found = true;
    cd__consent_copy(p->resolved, sizeof p->resolved, a->id);
    cd__consent_copy(p->jur, sizeof p->jur, a->jurisdiction);
    cd__consent_copy(p->tz, sizeof p->tz, a->time_zone);
    return CD_OK;
}

static enum cd_err pre_notice_row(void *ctx, const struct cd_val *col, size_t n)
{
    struct pre *p = ctx;

    if (col[0].len == 32) {
        memcpy(p->sha, col[0].p, 32);
        p->notice_found = true;
    }
    return CD_OK;
}

static enum cd_err pre_fn(struct cd_tx *tx, void *ctx)
{
    struct pre *p = ctx;
    char resolved[CD_ID_MAX];
    bool merged;
    enum cd_core_customer_state state;
    /* The customer the id stands for: the survivor of a merge. */
    enum cd_err err = cd_core_customer_resolve(tx, p->customer_id, resolved, &merged, &state);

    if (err == CD_OK && state != CD_CORE_CUSTOMER_UNKNOWN)
        err = cd_core_customer_attrs(tx, cd_str_c(resolved), pre_cust_attrs, p);
    if (err != CD_OK || p->notice_id.p == NULL)
        return err;
    struct cd_val b[1] = {CD_VTEXT(p->notice_id)};
    return cd_tx_exec(tx, "SELECT sha256 FROM consent_notices WHERE id = $1", b, 1,
                      pre_notice_row, p, NULL);
}

static enum cd_err load_pre(struct cd_consent *c, struct pre *p)
{
    enum cd_err err = cd_store_read(c->store, pre_fn, p);

    if (err != CD_OK)
        return err;
    if (!p->found)
        return cd_err_set(CD_ERR_NOT_FOUND, "no customer with this id");
    if (p->notice_id.p && !p->notice_found)
        return cd_err_set(CD_ERR_NOT_FOUND, "no notice with this id");
    return CD_OK;
}

/* The receipt: ISO/IEC TS 27560 and Kantara Consent Receipt fields, canonical JSON (sorted
 * keys, compact), signed with Ed25519 over exactly these bytes. */
static enum cd_err make_receipt(struct cd_consent *c, struct cd__ev *e)
{
    char pk[CD_CRYPTO_PK_HEX_LEN + 1], kid[2 * CD_CRYPTO_HASH_LEN + 1], sha[65];
    char at[CD_TIME_STRLEN], rec[CD_TIME_STRLEN], exp[CD_TIME_STRLEN];
    json_t *r = NULL, *pur = NULL;
    enum cd_err err = CD_OK;

    cd_crypto_pubkey_hex(c->signer.pk, pk);
    cd_hex_encode(c->key_id, sizeof c->key_id, kid);
    cd_hex_encode(e->notice_sha, 32, sha);
    cd_time_format(e->occurred_at, at);
    cd_time_format(e->recorded_at, rec);
    if (e->expires_at)
        cd_time_format(e->expires_at, exp);
    pur = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "purpose", cd_purpose_name(e->purpose),
                    "consentType",
                    (e->flags & CD__SF_IMPLIED) ? "IMPLICIT"
                                                : (e->state == CD_CONSENT_GIVEN ? "EXPLICIT"
                                                                                : "NONE"),
                    "state", state_names[e->state], "legalBasis", e->basis, "termination",
                    e->expires_at ? exp : "on withdrawal", "channel",
                    cd__consent_channel_names[e->channel]);
    r = json_pack("{s:s,s:s,s:s,s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:[{s:s,s:[o]}],s:s,s:s,s:s}",
                  "receiptFormat", RECEIPT_FORMAT, "version", "KI-CR-v1.1.0+ISO-IEC-TS-27560",
                  "consentReceiptID", e->id, "consentTimestamp",
                  (json_int_t)(e->occurred_at / 1000), "consentTime", at, "recordedAt", rec,
                  "jurisdiction", e->jurisdiction[0] ? e->jurisdiction : "unknown",
                  "collectionMethod", e->method, "collector",
                  e->collector[0] ? e->collector : "candor", "piiPrincipalId", e->customer_id,
                  "language", e->language, "services", "service", "candor", "purposes", pur,
                  "publicKey", pk, "keyId", kid, "alg", "Ed25519");
    pur = NULL;
    if (r == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    if (e->has_notice && (cd_json_set_new(r, "notice",
                                          json_pack("{s:s,s:s}", "id", e->notice_id, "sha256",
                                                    sha)) != CD_OK)) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    if (e->evidence[0] && cd_json_set_strn(r, "evidence", e->evidence, strlen(e->evidence)))
        err = CD_ERR_NOMEM;
    if (err != CD_OK)
        goto out;
    /* The newest signed tree head of the audit ledger: the receipt takes it out of the
     * database, so a ledger later cut below it or rewritten is caught by whoever holds the
     * receipt (candor audit verify --trusted-head). None yet: no member. */
    struct cd_audit_sth sth;
    json_t *head = NULL;
    if ((err = cd_audit_sth_latest(c->store, &sth)) == CD_OK) {
        if ((err = cd_audit_sth_json(&sth, &head)) != CD_OK ||
            (err = cd_json_set_new(r, "auditTreeHead", head)) != CD_OK)
            goto out;
    } else if (err == CD_ERR_NOT_FOUND) {
        err = CD_OK;
    } else {
        goto out;
    }
    e->receipt = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
    if (e->receipt == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    e->receipt_len = strlen(e->receipt);
    cd_crypto_sign(&c->signer, e->receipt, e->receipt_len, e->sig);
out:
    json_decref(pur);
    json_decref(r);
    return err;
}

/* Integrations that follow consent (a marketing tool that must stop sending) learn of the
 * event through the outbox, in the transaction that records it. */
static enum cd_err changed(struct cd_tx *tx, const struct cd__ev *e)
{
    char ts[CD_TIME_STRLEN];
    json_t *payload;
    enum cd_err err;

    cd_time_format(e->occurred_at, ts);
    payload = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "consent_event_id", e->id, "purpose",
                        cd_purpose_name(e->purpose), "channel",
                        cd__consent_channel_names[e->channel], "state", state_names[e->state],
                        "legal_basis", e->basis, "method", e->method, "occurred_at", ts);
    if (payload == NULL)
        return CD_ERR_NOMEM;
    err = cd_outbox_enqueue(tx, "consent.changed", cd_str_c(e->customer_id), payload, NULL);
    json_decref(payload);
    return err;
}

static enum cd_err write_fn(struct cd_tx *tx, void *ctx)
{
    struct cd__ev *e = ctx;
    enum cd_err err;
    int64_t changes = 0;

    if (e->nonce) {
        struct cd_val u[3] = {CD_VINT(e->recorded_at), CD_VCSTR(e->id), CD_VBLOB(e->nonce, 16)};
        if ((err = cd_tx_exec(tx, "UPDATE consent_unsub_nonces SET used_at = $1, used_event = $2 "
                                  "WHERE nonce = $3 AND used_at IS NULL",
                              u, 3, NULL, NULL, &changes)) != CD_OK)
            return err;
        if (changes != 1)
            return cd_err_set(CD_ERR_CONFLICT, "this unsubscribe link was already used");
    }
    /* The first CD__EC__COUNT values are the event's canonical form, in that order. */
    struct cd_val p[CD__EC__COUNT + 2] = {
        [CD__EC_ID] = CD_VCSTR(e->id),
        [CD__EC_CUSTOMER] = CD_VCSTR(e->customer_id),
        [CD__EC_PURPOSE] = CD_VCSTR(cd_purpose_name(e->purpose)),
        [CD__EC_CHANNEL] = CD_VCSTR(cd__consent_channel_names[e->channel]),
        [CD__EC_STATE] = CD_VCSTR(state_names[e->state]),
        [CD__EC_STATE_CODE] = CD_VINT(e->state),
        [CD__EC_BASIS] = CD_VCSTR(e->basis),
        [CD__EC_JURISDICTION] = e->jurisdiction[0] ? CD_VCSTR(e->jurisdiction) : CD_VNULL,
        [CD__EC_NOTICE_ID] = e->has_notice ? CD_VCSTR(e->notice_id) : CD_VNULL,
        [CD__EC_NOTICE_SHA] = e->has_notice ? CD_VBLOB(e->notice_sha, 32) : CD_VNULL,
        [CD__EC_METHOD] = CD_VCSTR(e->method),
        [CD__EC_COLLECTOR] = CD_VCSTR(e->collector[0] ? e->collector : "candor"),
        [CD__EC_EVIDENCE] = e->evidence[0] ? CD_VCSTR(e->evidence) : CD_VNULL,
        [CD__EC_EXPIRES] = e->expires_at ? CD_VINT(e->expires_at) : CD_VNULL,
        [CD__EC_OCCURRED] = CD_VINT(e->occurred_at),
        [CD__EC_RECORDED] = CD_VINT(e->recorded_at),
        [CD__EC_REQUEST] = e->request_id ? CD_VCSTR(e->request_id) : CD_VNULL,
        [CD__EC_ACTOR] =
            CD_VCSTR(e->actor && e->actor->token_id ? e->actor->token_id : CD_ACTOR_SYSTEM),
        [CD__EC_FLAGS] = CD_VINT(e->flags),
        [CD__EC_SIGNATURE] = CD_VBLOB(e->sig, sizeof e->sig),
        [CD__EC_LANGUAGE] = CD_VCSTR(e->language),
        [CD__EC_PURCHASE] = e->purchase_at ? CD_VINT(e->purchase_at) : CD_VNULL,
        [CD__EC__COUNT] = CD_VBLOB(e->receipt, e->receipt_len),
    };
    /* The ledger entry carries the digest of the row and the row the entry's seq: an edited
     * row no longer matches the hashed ledger (bind.c). */
    uint8_t digest[32];
    char hex[65];
    uint64_t seq = 0;
    if ((err = cd__consent_event_digest(p, digest)) != CD_OK)
        return err;
    cd_hex_encode(digest, sizeof digest, hex);
    struct cd_audit_event ae = {
        .action = e->audit_action, .outcome = "ok",
        .actor_token = e->actor ? e->actor->token_id : CD_ACTOR_SYSTEM,
        .actor_role = e->actor ? e->actor->role : CD_ACTOR_SYSTEM,
        .actor_name = e->actor ? e->actor->name : CD_ACTOR_SYSTEM,
        .purpose = cd_purpose_name(e->purpose), .request_id = e->request_id,
        .customer_id = e->customer_id, .resource_id = e->id, .categories = "consent",
        .reason = state_names[e->state], .data_sha256 = hex};
    if ((err = cd_audit_append(tx, &ae, &seq)) != CD_OK)
        return err;
    p[CD__EC__COUNT + 1] = CD_VINT(seq);
    /* Other servers on the database apply it from the table (cd_consent_changed). */
    if ((err = cd_tx_notify(tx, "consent.events")) != CD_OK)
        return err;
    if ((err = cd_tx_exec(tx,
                          "INSERT INTO consent_events(" CD__CONSENT_EVENT_COLS ", receipt,"
                          " audit_seq) VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,"
                          "$16,$17,$18,$19,$20,$21,$22,$23,$24)",
                          p, CD__EC__COUNT + 2, NULL, NULL, NULL)) != CD_OK)
        return err;
    return changed(tx, e);
}

static enum cd_err apply_event(struct cd_consent *c, const struct cd__ev *e, const struct pre *pr)
{
    struct cd__cstate s;
    struct cd__cust *cu;
    uint8_t key[16];
    enum cd_err err;
    uint8_t jur = cd__consent_rules_find(&c->rules, cd_str_c(pr->jur));
    uint16_t tz = cd__consent_tz_index(c, cd_str_c(pr->tz));

    memset(&s, 0, sizeof s);
    if (!cd_id_bits(cd_str_c(e->id), "cev", s.event) ||
        !cd_id_bits(cd_str_c(e->customer_id), "cus", key))
        return cd_err_set(CD_ERR_INTERNAL, "ids made here must parse");
    s.purpose = (uint8_t)e->purpose;
    s.channel = (uint8_t)e->channel;
    s.state = (uint8_t)e->state;
    s.flags = (uint8_t)e->flags;
    s.at = e->occurred_at;
    s.expires = e->expires_at;
    cd__consent_wlock(c);
    s.notice = e->has_notice ? cd__consent_notice_find(c, cd_str_c(e->notice_id)) : 0;
    if ((err = cd__proj_upsert(&c->proj, key, &cu)) == CD_OK) {
        cu->juris = jur;
        cu->tz = tz;
        err = cd__proj_apply(&c->proj, cu, &s);
    }
    cd__consent_wunlock(c);
    return err;
}

static enum cd_err event_json(const struct cd__ev *e, json_t **out)
{
    char at[CD_TIME_STRLEN], sig[2 * CD_CRYPTO_SIG_LEN + 1];

    cd_time_format(e->occurred_at, at);
    cd_hex_encode(e->sig, sizeof e->sig, sig);
    *out = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "id", e->id, "customer_id",
                     e->customer_id, "purpose", cd_purpose_name(e->purpose), "channel",
                     cd__consent_channel_names[e->channel], "state", state_names[e->state],
                     "legal_basis", e->basis, "method", e->method, "occurred_at", at,
                     "jurisdiction", e->jurisdiction, "receipt_url", "", "signature", sig);
    if (*out == NULL)
        return CD_ERR_NOMEM;
    char url[96];
    snprintf(url, sizeof url, "/v1/consents/%s/receipt", e->id);
    return cd_json_set_strn(*out, "receipt_url", url, strlen(url));
}

/* Validates, signs, writes (with the audit event) and applies one event. */
enum cd_err cd__consent_record_ev(struct cd_consent *c, struct cd__ev *e, json_t **out)
{
    struct pre pr = {cd_str_c(e->customer_id),
                     e->has_notice ? cd_str_c(e->notice_id) : CD_STR_NULL,
                     false, false, {0}, {0}, {0}, {0}};
    enum cd_err err;
    const struct cd__consent_juris *j;

    if ((err = load_pre(c, &pr)) != CD_OK)
        return err;
    if (e->has_notice) {
        /* A hash given is a claim about the text the customer saw: it must be that text's. */
        if (e->has_notice_sha && !cd_ct_eq(e->notice_sha, pr.sha, 32))
            return cd_err_set(CD_ERR_INVALID, "'notice_sha256' is not the hash of that notice");
        memcpy(e->notice_sha, pr.sha, 32);
    }
    /* A merged id stands for its survivor: the event is the survivor's. */
    cd__consent_copy(e->customer_id, sizeof e->customer_id, cd_str_c(pr.resolved));
    if (!e->jurisdiction[0])
        cd__consent_copy(e->jurisdiction, sizeof e->jurisdiction, cd_str_c(pr.jur));
    j = &c->rules.j[cd__consent_rules_find(&c->rules, cd_str_c(e->jurisdiction))];
    if (e->flags & CD__SF_IMPLIED) {
        /* CASL s. 10(9): implied consent from a purchase lasts two years after it. */
        if (j->implied_days == 0)
            return cd_err_set(CD_ERR_INVALID, "implied consent is not a basis in jurisdiction %s",
                              j->name);
        if (e->purchase_at == 0)
            return cd_err_set(CD_ERR_INVALID, "implied consent needs 'purchase_at'");
        int64_t until = e->purchase_at + (int64_t)j->implied_days * CD__DAY_MS;
        if (e->expires_at == 0 || e->expires_at > until)
            e->expires_at = until;
    }
    if (e->state == CD_CONSENT_GIVEN && !(e->flags & CD__SF_GPC)) {
        /* An explicit opt-in after a GPC opt-out: later GPC signals do not override it. */
        uint8_t key[16];
        if (cd_id_bits(cd_str_c(e->customer_id), "cus", key)) {
            pthread_rwlock_rdlock(&c->lock);
            const struct cd__cust *cu = cd__proj_find(&c->proj, key);
            const struct cd__state *s =
                cu ? cd__proj_applicable(&c->proj, cu, e->purpose, e->channel) : NULL;
            if (s && (s->flags & CD__SF_GPC) && s->state == CD_CONSENT_WITHDRAWN)
                e->flags |= CD__SF_OVER_GPC;
            pthread_rwlock_unlock(&c->lock);
        }
    }
    if ((err = make_receipt(c, e)) != CD_OK)
        return err;
    if ((err = cd_store_write(c->store, write_fn, e)) != CD_OK)
        return err;
    if ((err = apply_event(c, e, &pr)) != CD_OK)
        return err;
    return out ? event_json(e, out) : CD_OK;
}

void cd__consent_ev_init(struct cd__ev *e, const struct cd_actor *a, const char *action)
{
    memset(e, 0, sizeof *e);
    cd_id_new("cev", e->id);
    e->actor = a;
    e->request_id = a ? a->request_id : NULL;
    e->recorded_at = cd_now_ms();
    e->audit_action = action;
}

enum cd_err cd_consent_record(struct cd_consent *c, const struct cd_actor *a, const json_t *body,
                              json_t **out)
{
    struct cd__ev *e = cd_malloc(sizeof *e);
    json_t *ej = NULL;
    enum cd_err err;

    if (e == NULL)
        return CD_ERR_NOMEM;
    cd__consent_ev_init(e, a, "consent.record");
    if ((err = parse_event(body, e)) != CD_OK)
        goto out;
    if (e->occurred_at == 0)
        e->occurred_at = e->recorded_at;
    if (e->occurred_at > e->recorded_at + 5 * 60 * 1000)
        err = cd_err_set(CD_ERR_INVALID, "'occurred_at' is in the future");
    else if (e->expires_at && e->expires_at <= e->occurred_at)
        err = cd_err_set(CD_ERR_INVALID, "'expires_at' must be after the event");
    if (err != CD_OK)
        goto out;
    if ((err = cd__consent_record_ev(c, e, &ej)) != CD_OK)
        goto out;
    *out = ej;
out:
    cd_free(e->receipt);
    cd_free(e);
    return err;
}

/* ---- GPC ---- */

enum cd_err cd_consent_gpc(struct cd_consent *c, const struct cd_actor *a,
                           struct cd_str customer_id, json_t **out)
{
    json_t *res = NULL, *rec = NULL, *skip = NULL;
    struct cd__ev *e = NULL;
    enum cd_err err = CD_OK;
    uint8_t key[16];

    if (!cd_id_bits(customer_id, "cus", key))
        return cd_err_set(CD_ERR_INVALID, "'customer_id' must be a customer id (cus_...)");
    if ((e = cd_malloc(sizeof *e)) == NULL || (rec = json_array()) == NULL ||
        (skip = json_array()) == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    for (int pu = 0; pu < CD_PURPOSE__COUNT; pu++) {
        if (!(c->rules.gpc_purposes & (1u << pu)))
            continue;
        const char *why = NULL;
        pthread_rwlock_rdlock(&c->lock);
        const struct cd__cust *cu = cd__proj_find(&c->proj, key);
        cu = cu ? cd__proj_root(&c->proj, cu) : NULL; /* a merged id: its survivor's states */
        const struct cd__state *s =
            cu ? cd__proj_state(&c->proj, cu, (unsigned)pu, CD_CONSENT_CHANNEL_ANY) : NULL;
        if (s && (s->state == CD_CONSENT_WITHDRAWN || s->state == CD_CONSENT_REFUSED))
            why = "already_opted_out";
        else if (s && s->state == CD_CONSENT_GIVEN && (s->flags & CD__SF_OVER_GPC))
            why = "explicit_opt_in_after_gpc";
        pthread_rwlock_unlock(&c->lock);
        if (why) {
            if (json_array_append_new(skip, json_pack("{s:s,s:s}", "purpose",
                                                      cd_purpose_name((enum cd_purpose)pu),
                                                      "reason", why)) != 0) {
                err = CD_ERR_NOMEM;
                goto out;
            }
            continue;
        }
        cd__consent_ev_init(e, a, "consent.gpc");
        cd__consent_copy(e->customer_id, sizeof e->customer_id, customer_id);
        e->purpose = (enum cd_purpose)pu;
        e->channel = CD_CONSENT_CHANNEL_ANY;
        e->state = CD_CONSENT_WITHDRAWN;
        snprintf(e->basis, sizeof e->basis, "consent");
        snprintf(e->method, sizeof e->method, "gpc");
        snprintf(e->collector, sizeof e->collector, "Sec-GPC");
        snprintf(e->language, sizeof e->language, "en");
        /* The proof of the signal: the header, the request that carried it and when. */
        snprintf(e->evidence, sizeof e->evidence, "Sec-GPC: 1; request %s",
                 e->request_id ? e->request_id : "-");
        e->occurred_at = e->recorded_at;
        e->flags = CD__SF_GPC;
        err = cd__consent_record_ev(c, e, NULL);
        cd_free(e->receipt);
        e->receipt = NULL;
        if (err != CD_OK)
            goto out;
        if (json_array_append_new(rec, json_string(e->id)) != 0) {
            err = CD_ERR_NOMEM;
            goto out;
        }
    }
    res = json_pack("{s:s%,s:O,s:O}", "customer_id", customer_id.p, customer_id.len, "recorded",
                    rec, "skipped", skip);
    if (res == NULL)
        err = CD_ERR_NOMEM;
    else
        *out = res;
out:
    json_decref(rec);
    json_decref(skip);
    cd_free(e);
    return err;
}
