/* The consent ledger: opening the engine, recording events with signed receipts (one store
 * transaction with the audit event, then the projection), GPC, notices, preferences, history,
 * one-click unsubscribe and the hooks core calls in the path of every outbound message. */
#include <stdio.h>
#include <string.h>
#include "audit/audit.h"
#include "consent_int.h"
#include "core/core.h"
#include "outbox/outbox.h"

#define RECEIPT_FORMAT "candor.consent.receipt.v1"
#define DAY_MS (86400LL * 1000)
/* The longest jurisdiction code a consent event may name, in bytes: the API's limit (a
 * customer's is CD_CUSTOMER_JURISDICTION_MAX). */
#define EVENT_JURISDICTION_MAX 31

static const char *const channel_names[CD_CONSENT_CHANNEL__COUNT] = {
    "*", CD_CHANNELS(CD_NAME_ITEM)};
static const char *const state_names[CD_CONSENT_STATE__COUNT] = {
    "none", "requested", "given", "refused", "withdrawn", "expired", "invalidated"};
static const char *const methods[] = {"web_form", "email_link", "chat",   "phone_script",
                                      "api",      "import",     "gpc",    "unsubscribe", NULL};
static const char *const bases[] = {"consent", "implied_consent", "contract", "legal_obligation",
                                    "legitimate_interest", NULL};

const char *cd_consent_channel_name(enum cd_consent_channel ch)
{
    return (unsigned)ch < CD_CONSENT_CHANNEL__COUNT ? channel_names[ch] : "?";
}

bool cd_consent_channel_parse(struct cd_str s, enum cd_consent_channel *out)
{
    for (int i = 0; i < CD_CONSENT_CHANNEL__COUNT; i++)
        if (cd_str_eq_c(s, channel_names[i])) {
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

/* One event, fully validated, ready to be written. Strings are borrowed or inline. */
struct ev {
    char id[CD_ID_MAX];
    char customer_id[CD_ID_MAX];
    enum cd_purpose purpose;
    enum cd_consent_channel channel;
    enum cd_consent_state state;
    char basis[32];
    char jurisdiction[EVENT_JURISDICTION_MAX + 1];
    char notice_id[CD_ID_MAX];
    uint8_t notice_sha[32];
    bool has_notice, has_notice_sha;
    char method[16];
    char collector[128];
    char evidence[256];
    char language[16];
    int64_t expires_at, occurred_at, recorded_at, purchase_at;
    unsigned flags;
    const struct cd_actor *actor;
    const char *request_id;
    const char *audit_action;
    /* the signed receipt */
    char *receipt;
    size_t receipt_len;
    uint8_t sig[CD_CRYPTO_SIG_LEN];
    /* unsubscribe: the nonce to mark used in the same transaction */
    const uint8_t *nonce;
};

static void copy(char *dst, size_t n, struct cd_str s)
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

static bool printable(struct cd_str s, size_t max)
{
    if (s.len > max || !cd_utf8_valid(s.p, s.len))
        return false;
    for (size_t i = 0; i < s.len; i++)
        if ((unsigned char)s.p[i] < 0x20)
            return false;
    return true;
}

static enum cd_err parse_event(const json_t *body, struct ev *e)
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
    copy(e->customer_id, sizeof e->customer_id, cid);
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
    copy(e->basis, sizeof e->basis, basis);
    if (!in_list(method, methods))
        return cd_err_set(CD_ERR_INVALID, "'method' must be web_form, email_link, chat, "
                                          "phone_script, api, import, gpc or unsubscribe");
    copy(e->method, sizeof e->method, method);
    if (coll.p && (coll.len == 0 || !printable(coll, 120)))
        return cd_err_set(CD_ERR_INVALID, "'collector' must have 1 to 120 printable characters");
    copy(e->collector, sizeof e->collector, coll.p ? coll : CD_STR(""));
    if (evid.p && !printable(evid, 250))
        return cd_err_set(CD_ERR_INVALID, "'evidence' must be a reference of at most 250 "
                                          "printable characters");
    copy(e->evidence, sizeof e->evidence, evid);
    if (lang.len == 0 || lang.len > 15 || !printable(lang, 15))
        return cd_err_set(CD_ERR_INVALID, "'language' must be a BCP 47 tag");
    copy(e->language, sizeof e->language, lang);
    if (jur.p && (jur.len == 0 || !printable(jur, EVENT_JURISDICTION_MAX)))
        return cd_err_set(CD_ERR_INVALID, "'jurisdiction' must be a short code such as EU");
    copy(e->jurisdiction, sizeof e->jurisdiction, jur);
    if (nid.p) {
        if (!cd_id_valid(nid, "ntc"))
            return cd_err_set(CD_ERR_INVALID, "'notice_id' must be a notice id (ntc_...)");
        copy(e->notice_id, sizeof e->notice_id, nid);
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
    copy(p->resolved, sizeof p->resolved, a->id);
    copy(p->jur, sizeof p->jur, a->jurisdiction);
    copy(p->tz, sizeof p->tz, a->time_zone);
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
static enum cd_err make_receipt(struct cd_consent *c, struct ev *e)
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
                    channel_names[e->channel]);
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
static enum cd_err changed(struct cd_tx *tx, const struct ev *e)
{
    char ts[CD_TIME_STRLEN];
    json_t *payload;
    enum cd_err err;

    cd_time_format(e->occurred_at, ts);
    payload = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "consent_event_id", e->id, "purpose",
                        cd_purpose_name(e->purpose), "channel", channel_names[e->channel],
                        "state", state_names[e->state], "legal_basis", e->basis, "method",
                        e->method, "occurred_at", ts);
    if (payload == NULL)
        return CD_ERR_NOMEM;
    err = cd_outbox_enqueue(tx, "consent.changed", cd_str_c(e->customer_id), payload, NULL);
    json_decref(payload);
    return err;
}

static enum cd_err write_fn(struct cd_tx *tx, void *ctx)
{
    struct ev *e = ctx;
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
        [CD__EC_CHANNEL] = CD_VCSTR(channel_names[e->channel]),
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
        [CD__EC_ACTOR] = CD_VCSTR(e->actor && e->actor->token_id ? e->actor->token_id : "system"),
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
        .actor_token = e->actor ? e->actor->token_id : "system",
        .actor_role = e->actor ? e->actor->role : "system",
        .actor_name = e->actor ? e->actor->name : "system",
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

static enum cd_err apply_event(struct cd_consent *c, const struct ev *e, const struct pre *pr)
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

static enum cd_err event_json(const struct ev *e, json_t **out)
{
    char at[CD_TIME_STRLEN], sig[2 * CD_CRYPTO_SIG_LEN + 1];

    cd_time_format(e->occurred_at, at);
    cd_hex_encode(e->sig, sizeof e->sig, sig);
    *out = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "id", e->id, "customer_id",
                     e->customer_id, "purpose", cd_purpose_name(e->purpose), "channel",
                     channel_names[e->channel], "state", state_names[e->state], "legal_basis",
                     e->basis, "method", e->method, "occurred_at", at, "jurisdiction",
                     e->jurisdiction, "receipt_url", "", "signature", sig);
    if (*out == NULL)
        return CD_ERR_NOMEM;
    char url[96];
    snprintf(url, sizeof url, "/v1/consents/%s/receipt", e->id);
    return cd_json_set_strn(*out, "receipt_url", url, strlen(url));
}

/* Validates, signs, writes (with the audit event) and applies one event. */
static enum cd_err record_ev(struct cd_consent *c, struct ev *e, json_t **out)
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
    copy(e->customer_id, sizeof e->customer_id, cd_str_c(pr.resolved));
    if (!e->jurisdiction[0])
        copy(e->jurisdiction, sizeof e->jurisdiction, cd_str_c(pr.jur));
    j = &c->rules.j[cd__consent_rules_find(&c->rules, cd_str_c(e->jurisdiction))];
    if (e->flags & CD__SF_IMPLIED) {
        /* CASL s. 10(9): implied consent from a purchase lasts two years after it. */
        if (j->implied_days == 0)
            return cd_err_set(CD_ERR_INVALID, "implied consent is not a basis in jurisdiction %s",
                              j->name);
        if (e->purchase_at == 0)
            return cd_err_set(CD_ERR_INVALID, "implied consent needs 'purchase_at'");
        int64_t until = e->purchase_at + (int64_t)j->implied_days * DAY_MS;
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

static void ev_init(struct ev *e, const struct cd_actor *a, const char *action)
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
    struct ev *e = cd_malloc(sizeof *e);
    json_t *ej = NULL;
    enum cd_err err;

    if (e == NULL)
        return CD_ERR_NOMEM;
    ev_init(e, a, "consent.record");
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
    if ((err = record_ev(c, e, &ej)) != CD_OK)
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
    struct ev *e = NULL;
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
        ev_init(e, a, "consent.gpc");
        copy(e->customer_id, sizeof e->customer_id, customer_id);
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
        err = record_ev(c, e, NULL);
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
    copy(h->jur, sizeof h->jur, a->jurisdiction);
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

    copy(g->id[0], sizeof g->id[0], customer_id);
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
                                  channel_names[ch], "allow", d.allow, "reason", d.reason,
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

/* ---- notices ---- */

struct notice_w {
    struct cd_consent *c;
    const struct cd_actor *a;
    struct cd_str name, text, language;
    bool material;
    uint8_t sha[32];
    char id[CD_ID_MAX];
    int64_t version, at;
    bool existed;
    char other_name[64];
};

static enum cd_err notice_existing_row(void *ctx, const struct cd_val *col, size_t n)
{
    struct notice_w *w = ctx;

    w->existed = true;
    copy(w->other_name, sizeof w->other_name, (struct cd_str){col[0].p, col[0].len});
    w->version = col[1].i;
    return CD_OK;
}

static enum cd_err notice_fn(struct cd_tx *tx, void *ctx)
{
    struct notice_w *w = ctx;
    struct cd_val s[1] = {CD_VBLOB(w->sha, 32)};
    enum cd_err err;

    if ((err = cd_tx_exec(tx, "SELECT name, version FROM consent_notices WHERE sha256 = $1", s,
                          1, notice_existing_row, w, NULL)) != CD_OK)
        return err;
    if (w->existed) {
        if (!cd_str_eq_c(w->name, w->other_name))
            return cd_err_set(CD_ERR_CONFLICT, "this text is already published under another "
                                               "notice name");
        return CD_OK;
    }
    struct cd_val nm[1] = {CD_VTEXT(w->name)};
    int64_t v = 0;
    err = cd_tx_int(tx, "SELECT coalesce(max(version), 0) FROM consent_notices WHERE name = $1", nm, 1, &v);
    if (err != CD_OK && err != CD_ERR_NOT_FOUND)
        return err;
    w->version = v + 1;
    struct cd_val p[8] = {CD_VCSTR(w->id),   CD_VTEXT(w->name),          CD_VINT(w->version),
                          CD_VBLOB(w->sha, 32), CD_VINT(w->material),    CD_VTEXT(w->language),
                          CD_VBLOB(w->text.p, w->text.len), CD_VINT(w->at)};
    if ((err = cd_tx_exec(tx, "INSERT INTO consent_notices(id, name, version, sha256, material, "
                              "language, text, published_at) VALUES($1,$2,$3,$4,$5,$6,$7,$8)",
                          p, 8, NULL, NULL, NULL)) != CD_OK)
        return err;
    struct cd_audit_event ae = {.action = "notice.publish", .outcome = "ok",
                                .actor_token = w->a->token_id, .actor_role = w->a->role,
                                .actor_name = w->a->name, .request_id = w->a->request_id,
                                .resource_id = w->id,
                                .reason = w->material ? "material" : "non-material"};
    if ((err = cd_tx_notify(tx, "consent.notices")) != CD_OK)
        return err;
    return cd_audit_append(tx, &ae, NULL);
}

enum cd_err cd_consent_notice_publish(struct cd_consent *c, const struct cd_actor *a,
                                      const json_t *body, json_t **out, bool *created)
{
    static const char *const allowed[] = {"name", "text", "material", "language", NULL};
    struct notice_w w;
    enum cd_err err;
    char hex[65];

    memset(&w, 0, sizeof w);
    w.c = c;
    w.a = a;
    w.language = CD_STR("en");
    if ((err = cd_json_only(body, allowed)) != CD_OK ||
        (err = cd_json_str(body, "name", true, &w.name)) != CD_OK ||
        (err = cd_json_str(body, "text", true, &w.text)) != CD_OK ||
        (err = cd_json_str(body, "language", false, &w.language)) != CD_OK ||
        (err = cd_json_bool(body, "material", false, &w.material)) != CD_OK)
        return err;
    for (size_t i = 0; i < w.name.len; i++)
        if (!((w.name.p[i] >= 'a' && w.name.p[i] <= 'z') || (w.name.p[i] >= '0' &&
              w.name.p[i] <= '9') || w.name.p[i] == '-' || w.name.p[i] == '_'))
            return cd_err_set(CD_ERR_INVALID, "'name' must be lower-case letters, digits, - _");
    if (w.name.len == 0 || w.name.len > 60)
        return cd_err_set(CD_ERR_INVALID, "'name' must have 1 to 60 characters");
    if (w.text.len == 0 || w.text.len > 256 * 1024)
        return cd_err_set(CD_ERR_INVALID, "'text' must have 1 to 262144 bytes");
    if (w.language.len == 0 || w.language.len > 15)
        return cd_err_set(CD_ERR_INVALID, "'language' must be a BCP 47 tag");
    if ((err = cd_crypto_sha256(w.text.p, w.text.len, w.sha)) != CD_OK)
        return err;
    /* Content-addressed: the id is the first 128 bits of the text's SHA-256. */
    cd_id_format(w.sha, "ntc", w.id);
    w.at = cd_now_ms();
    if ((err = cd_store_write(c->store, notice_fn, &w)) != CD_OK)
        return err;
    if (!w.existed) {
        cd__consent_wlock(c);
        err = cd__consent_notice_add(c, w.id, w.name, (uint32_t)w.version, w.material, w.sha);
        cd__consent_wunlock(c);
        if (err != CD_OK)
            return err;
    }
    *created = !w.existed;
    cd_hex_encode(w.sha, 32, hex);
    *out = json_pack("{s:s,s:s%,s:I,s:s,s:b}", "id", w.id, "name", w.name.p, w.name.len,
                     "version", (json_int_t)w.version, "sha256", hex, "material", w.material);
    return *out ? CD_OK : CD_ERR_NOMEM;
}

struct notice_r {
    json_t *o;
};

static enum cd_err notice_get_row(void *ctx, const struct cd_val *col, size_t n)
{
    struct notice_r *r = ctx;
    char hex[65], at[CD_TIME_STRLEN];

    if (col[3].len != 32)
        return cd_err_set(CD_ERR_INTEGRITY, "a notice row is malformed");
    cd_hex_encode(col[3].p, 32, hex);
    cd_time_format(col[7].i, at);
    r->o = json_pack("{s:s%,s:s%,s:I,s:s,s:b,s:s%,s:s%,s:s}", "id", col[0].p, col[0].len,
                     "name", col[1].p, col[1].len, "version", (json_int_t)col[2].i, "sha256", hex,
                     "material", (int)col[4].i, "language", col[5].p, col[5].len, "text",
                     col[6].p, col[6].len, "published_at", at);
    return r->o ? CD_OK : CD_ERR_NOMEM;
}

struct notice_q {
    struct cd_str id;
    struct notice_r r;
};

static enum cd_err notice_get_fn(struct cd_tx *tx, void *ctx)
{
    struct notice_q *q = ctx;
    struct cd_val p[1] = {CD_VTEXT(q->id)};

    return cd_tx_exec(tx, "SELECT id, name, version, sha256, material, language, text, "
                          "published_at FROM consent_notices WHERE id = $1",
                      p, 1, notice_get_row, &q->r, NULL);
}

enum cd_err cd_consent_notice_get(struct cd_consent *c, struct cd_str id, json_t **out)
{
    struct notice_q q = {id, {NULL}};
    enum cd_err err;

    if (!cd_id_valid(id, "ntc"))
        return cd_err_set(CD_ERR_NOT_FOUND, "no notice with this id");
    if ((err = cd_store_read(c->store, notice_get_fn, &q)) != CD_OK) {
        json_decref(q.r.o);
        return err;
    }
    if (q.r.o == NULL)
        return cd_err_set(CD_ERR_NOT_FOUND, "no notice with this id");
    *out = q.r.o;
    return CD_OK;
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

/* ---- preferences ---- */

struct prefs_w {
    const struct cd_actor *a;
    struct cd_str customer_id;
    int qs, qe;
    char *topics, *caps;
    bool found;
};

static enum cd_err prefs_fn(struct cd_tx *tx, void *ctx)
{
    struct prefs_w *w = ctx;
    struct cd_core_customer_ref ref;
    enum cd_err err = cd_core_customer_ref(tx, w->customer_id, &ref);

    if (err != CD_OK)
        return err;
    /* A merged id's preferences are its survivor's: it takes none of its own. */
    if (!ref.exists || ref.merged_into[0])
        return cd_err_set(CD_ERR_NOT_FOUND, "no customer with this id");
    struct cd_val p[6] = {CD_VTEXT(w->customer_id),
                          w->qs >= 0 ? CD_VINT(w->qs) : CD_VNULL,
                          w->qe >= 0 ? CD_VINT(w->qe) : CD_VNULL,
                          CD_VCSTR(w->topics), CD_VCSTR(w->caps), CD_VINT(cd_now_ms())};
    if ((err = cd_tx_exec(tx, "INSERT INTO consent_preferences(customer_id, quiet_start, "
                              "quiet_end, topics_out, caps, updated_at) VALUES($1,$2,$3,$4,$5,$6) "
                              "ON CONFLICT(customer_id) DO UPDATE SET quiet_start = $2, "
                              "quiet_end = $3, topics_out = $4, caps = $5, updated_at = $6",
                          p, 6, NULL, NULL, NULL)) != CD_OK)
        return err;
    char cid[CD_ID_MAX], topic[CD_ID_MAX + 32];
    copy(cid, sizeof cid, w->customer_id);
    snprintf(topic, sizeof topic, "consent.preferences %s", cid);
    if ((err = cd_tx_notify(tx, topic)) != CD_OK)
        return err;
    struct cd_audit_event ae = {.action = "consent.preferences", .outcome = "ok",
                                .actor_token = w->a->token_id, .actor_role = w->a->role,
                                .actor_name = w->a->name, .request_id = w->a->request_id,
                                .customer_id = cid, .categories = "consent"};
    return cd_audit_append(tx, &ae, NULL);
}

static int parse_hhmm(struct cd_str s)
{
    if (s.len != 5 || s.p[2] != ':')
        return -1;
    for (int i = 0; i < 5; i++)
        if (i != 2 && (s.p[i] < '0' || s.p[i] > '9'))
            return -1;
    int h = (s.p[0] - '0') * 10 + (s.p[1] - '0'), m = (s.p[3] - '0') * 10 + (s.p[4] - '0');
    return h < 24 && m < 60 ? h * 60 + m : -1;
}

enum cd_err cd_consent_preferences_set(struct cd_consent *c, const struct cd_actor *a,
                                       struct cd_str customer_id, const json_t *body)
{
    static const char *const allowed[] = {"topics_opted_out", "quiet_hours", "caps", NULL};
    struct prefs_w w = {a, customer_id, -1, -1, NULL, NULL, false};
    json_t *topics = NULL, *qh = NULL, *caps = NULL;
    uint64_t mask = 0;
    uint8_t key[16];
    enum cd_err err;
    size_t i;
    json_t *v;

    if (!cd_id_bits(customer_id, "cus", key))
        return cd_err_set(CD_ERR_NOT_FOUND, "no customer with this id");
    if ((err = cd_json_only(body, allowed)) != CD_OK ||
        (err = cd_json_arr(body, "topics_opted_out", false, &topics)) != CD_OK ||
        (err = cd_json_arr(body, "caps", false, &caps)) != CD_OK)
        return err;
    qh = json_object_get(body, "quiet_hours");
    if (qh && !json_is_null(qh)) {
        struct cd_str s = CD_STR_NULL, e = CD_STR_NULL;
        if (!json_is_object(qh) || cd_json_str(qh, "start", true, &s) != CD_OK ||
            cd_json_str(qh, "end", true, &e) != CD_OK || (w.qs = parse_hhmm(s)) < 0 ||
            (w.qe = parse_hhmm(e)) < 0 || w.qs == w.qe)
            return cd_err_set(CD_ERR_INVALID, "'quiet_hours' must be {\"start\":\"HH:MM\","
                                              "\"end\":\"HH:MM\"} with start != end");
    }
    json_array_foreach(topics, i, v)
    {
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 40)
            return cd_err_set(CD_ERR_INVALID, "'topics_opted_out' must be topic names of 1 to 40 "
                                              "characters");
    }
    if (topics && json_array_size(topics) > 32)
        return cd_err_set(CD_ERR_INVALID, "at most 32 topics");
    json_array_foreach(caps, i, v)
    {
        struct cd_str p = CD_STR_NULL, ch = CD_STR("*");
        int64_t max = -1, days = -1;
        enum cd_purpose pu;
        enum cd_consent_channel cch;
        static const char *const cap_keys[] = {"purpose", "channel", "max", "days", NULL};
        if (!json_is_object(v) || cd_json_only(v, cap_keys) != CD_OK ||
            cd_json_str(v, "purpose", true, &p) != CD_OK ||
            cd_json_str(v, "channel", false, &ch) != CD_OK ||
            cd_json_int(v, "max", true, &max) != CD_OK ||
            cd_json_int(v, "days", true, &days) != CD_OK || !cd_purpose_parse(p, &pu) ||
            !cd_consent_channel_parse(ch, &cch) || max < 0 || max > 10000 || days < 1 ||
            days > 3660)
            return cd_err_set(CD_ERR_INVALID, "each cap is {\"purpose\",\"channel\"?,\"max\" "
                                              "(0..10000),\"days\" (1..3660)}");
    }
    if (caps && json_array_size(caps) > 16)
        return cd_err_set(CD_ERR_INVALID, "at most 16 caps");
    json_t *empty = json_array();
    if (empty == NULL)
        return CD_ERR_NOMEM;
    w.topics = json_dumps(topics ? topics : empty, JSON_COMPACT);
    w.caps = json_dumps(caps ? caps : empty, JSON_COMPACT);
    json_decref(empty);
    if (w.topics == NULL || w.caps == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    if ((err = cd_store_write(c->store, prefs_fn, &w)) != CD_OK)
        goto out;
    cd__consent_wlock(c);
    struct cd__cust *cu = NULL;
    json_array_foreach(topics, i, v)
    {
        int bit = cd__consent_topic(c, cd_str_c(json_string_value(v)), true);
        if (bit >= 0)
            mask |= 1ull << bit;
    }
    if ((err = cd__proj_upsert(&c->proj, key, &cu)) == CD_OK) {
        cu->qh_start = w.qs >= 0 ? (uint16_t)(w.qs + 1) : 0;
        cu->qh_end = w.qe >= 0 ? (uint16_t)(w.qe + 1) : 0;
        cu->topics_out = mask;
        cd__proj_sync(&c->proj, cu);
    }
    cd__consent_wunlock(c);
    if (err == CD_OK) {
        bool exists;
        /* The customer's time zone matters for quiet hours: take it now. */
        err = cd__consent_refresh_customer(c, customer_id, &exists);
    }
out:
    cd_free(w.topics);
    cd_free(w.caps);
    return err;
}

/* ---- one-click unsubscribe ---- */

#define TOKEN_BODY 35 /* version 1 + nonce 16 + customer 16 + purpose 1 + channel 1 */
#define TOKEN_LEN (TOKEN_BODY + 16)

static void token_mac(const struct cd_consent *c, const uint8_t *body, uint8_t mac[32])
{
    /* Keyed BLAKE2b-256 (the blind-index primitive) as a MAC under DATA/unsubscribe.key. */
    cd_crypto_blind_index(c->unsub_key, CD_STR("candor.unsubscribe.v1"),
                          (struct cd_str){(const char *)body, TOKEN_BODY}, mac);
}

struct nonce_w {
    const struct cd_actor *a;
    uint8_t nonce[16];
    char customer_id[CD_ID_MAX];
    const char *purpose, *channel;
    bool found;
    bool used;
    bool match;
};

static enum cd_err nonce_ins_fn(struct cd_tx *tx, void *ctx)
{
    struct nonce_w *w = ctx;
    struct cd_core_customer_ref ref;
    enum cd_err err = cd_core_customer_ref(tx, cd_str_c(w->customer_id), &ref);

    if (err != CD_OK)
        return err;
    if (!ref.exists)
        return cd_err_set(CD_ERR_NOT_FOUND, "no customer with this id");
    struct cd_val p[5] = {CD_VBLOB(w->nonce, 16), CD_VCSTR(w->customer_id), CD_VCSTR(w->purpose),
                          CD_VCSTR(w->channel), CD_VINT(cd_now_ms())};
    return cd_tx_exec(tx, "INSERT INTO consent_unsub_nonces(nonce, customer_id, purpose, channel, "
                          "created_at) VALUES($1,$2,$3,$4,$5)",
                      p, 5, NULL, NULL, NULL);
}

enum cd_err cd_consent_unsubscribe_link(struct cd_consent *c, const struct cd_actor *a,
                                        struct cd_str customer_id, enum cd_purpose purpose,
                                        enum cd_consent_channel channel, struct cd_str base_url,
                                        json_t **out)
{
    struct nonce_w w;
    uint8_t tok[TOKEN_LEN], mac[32];
    char b64[128], url[1200], hdr[1300];
    enum cd_err err;

    memset(&w, 0, sizeof w);
    if (!(base_url.len >= 8 && (strncmp(base_url.p, "https://", 8) == 0 ||
                                strncmp(base_url.p, "http://", 7) == 0)) ||
        base_url.len > 1000 || !printable(base_url, 1000) ||
        memchr(base_url.p, '>', base_url.len) || memchr(base_url.p, ' ', base_url.len))
        return cd_err_set(CD_ERR_INVALID, "'base_url' must be an http(s) URL without spaces");
    if ((unsigned)purpose >= CD_PURPOSE__COUNT || (unsigned)channel >= CD_CONSENT_CHANNEL__COUNT)
        return cd_err_set(CD_ERR_INVALID, "purpose or channel out of range");
    tok[0] = 1;
    cd_random_bytes(tok + 1, 16);
    if (!cd_id_bits(customer_id, "cus", tok + 17))
        return cd_err_set(CD_ERR_NOT_FOUND, "no customer with this id");
    tok[33] = (uint8_t)purpose;
    tok[34] = (uint8_t)channel;
    token_mac(c, tok, mac);
    memcpy(tok + TOKEN_BODY, mac, 16);
    memcpy(w.nonce, tok + 1, 16);
    copy(w.customer_id, sizeof w.customer_id, customer_id);
    w.purpose = cd_purpose_name(purpose);
    w.channel = channel_names[channel];
    w.a = a;
    if ((err = cd_store_write(c->store, nonce_ins_fn, &w)) != CD_OK)
        return err;
    cd_b64url_encode(tok, TOKEN_LEN, b64);
    size_t bl = base_url.len;
    while (bl && base_url.p[bl - 1] == '/')
        bl--;
    snprintf(url, sizeof url, "%.*s/u/%s", (int)bl, base_url.p, b64);
    snprintf(hdr, sizeof hdr, "<%s>", url);
    *out = json_pack("{s:s,s:s,s:{s:s,s:s}}", "token", b64, "url", url, "headers",
                     "List-Unsubscribe", hdr, "List-Unsubscribe-Post",
                     "List-Unsubscribe=One-Click");
    return *out ? CD_OK : CD_ERR_NOMEM;
}

/* Decodes and authenticates a token. Errors: CD_ERR_NOT_FOUND for anything not genuine. */
static enum cd_err token_open(const struct cd_consent *c, struct cd_str token,
                              uint8_t tok[TOKEN_LEN])
{
    uint8_t mac[32];
    size_t n = 0;

    if (token.len > 100 || cd_b64url_decode(token, tok, TOKEN_LEN, &n) != CD_OK ||
        n != TOKEN_LEN || tok[0] != 1 || tok[33] >= CD_PURPOSE__COUNT ||
        tok[34] >= CD_CONSENT_CHANNEL__COUNT)
        return cd_err_set(CD_ERR_NOT_FOUND, "this unsubscribe link is not valid");
    token_mac(c, tok, mac);
    if (!cd_ct_eq(mac, tok + TOKEN_BODY, 16))
        return cd_err_set(CD_ERR_NOT_FOUND, "this unsubscribe link is not valid");
    return CD_OK;
}

static enum cd_err nonce_row(void *ctx, const struct cd_val *col, size_t n)
{
    struct nonce_w *w = ctx;

    w->found = true;
    w->used = col[0].type != CD_VAL_NULL;
    w->match = col[1].type == CD_VAL_TEXT && col[1].len == strlen(w->customer_id) &&
               memcmp(col[1].p, w->customer_id, col[1].len) == 0;
    return CD_OK;
}

static enum cd_err nonce_get_fn(struct cd_tx *tx, void *ctx)
{
    struct nonce_w *w = ctx;
    struct cd_val p[1] = {CD_VBLOB(w->nonce, 16)};

    return cd_tx_exec(tx, "SELECT used_at, customer_id FROM consent_unsub_nonces WHERE nonce = $1",
                      p, 1, nonce_row, w, NULL);
}

static enum cd_err token_check(struct cd_consent *c, struct cd_str token, uint8_t tok[TOKEN_LEN],
                               struct nonce_w *w)
{
    enum cd_err err;

    memset(w, 0, sizeof *w);
    if ((err = token_open(c, token, tok)) != CD_OK)
        return err;
    memcpy(w->nonce, tok + 1, 16);
    cd_id_format(tok + 17, "cus", w->customer_id);
    if ((err = cd_store_read(c->store, nonce_get_fn, w)) != CD_OK)
        return err;
    if (!w->found || !w->match)
        return cd_err_set(CD_ERR_NOT_FOUND, "this unsubscribe link is not valid");
    if (w->used)
        return cd_err_set(CD_ERR_CONFLICT, "this unsubscribe link was already used");
    return CD_OK;
}

enum cd_err cd_consent_unsubscribe_peek(struct cd_consent *c, struct cd_str token,
                                        enum cd_purpose *purpose, enum cd_consent_channel *channel)
{
    uint8_t tok[TOKEN_LEN];
    struct nonce_w w;
    enum cd_err err = token_check(c, token, tok, &w);

    if (err != CD_OK)
        return err;
    *purpose = (enum cd_purpose)tok[33];
    *channel = (enum cd_consent_channel)tok[34];
    return CD_OK;
}

enum cd_err cd_consent_unsubscribe(struct cd_consent *c, struct cd_str token,
                                   const char *request_id, json_t **out)
{
    uint8_t tok[TOKEN_LEN];
    struct nonce_w w;
    struct ev *e = NULL;
    struct cd_actor a = {"anonymous", "public", "one-click unsubscribe", request_id, NULL,
                         false, false};
    enum cd_err err;

    if ((err = token_check(c, token, tok, &w)) != CD_OK)
        return err;
    if ((e = cd_malloc(sizeof *e)) == NULL)
        return CD_ERR_NOMEM;
    ev_init(e, &a, "consent.unsubscribe");
    snprintf(e->customer_id, sizeof e->customer_id, "%s", w.customer_id);
    e->purpose = (enum cd_purpose)tok[33];
    e->channel = (enum cd_consent_channel)tok[34];
    e->state = CD_CONSENT_WITHDRAWN;
    snprintf(e->basis, sizeof e->basis, "consent");
    snprintf(e->method, sizeof e->method, "unsubscribe");
    snprintf(e->collector, sizeof e->collector, "RFC 8058 one-click");
    snprintf(e->language, sizeof e->language, "en");
    snprintf(e->evidence, sizeof e->evidence, "List-Unsubscribe=One-Click; request %s",
             request_id ? request_id : "-");
    e->occurred_at = e->recorded_at;
    e->flags = CD__SF_UNSUB;
    e->nonce = tok + 1;
    err = record_ev(c, e, out);
    cd_free(e->receipt);
    cd_free(e);
    return err;
}

/* ---- hooks ---- */

struct caps_q {
    struct cd_str customer_id;
    const char *purpose, *channel;
    enum cd_purpose pu;
    enum cd_consent_channel ch;
    const struct cd__consent_juris *j;
    int64_t now;
    const char *hit; /* a cap that is reached, described */
    char desc[96];
    json_t *caps;
};

static enum cd_err caps_row(void *ctx, const struct cd_val *col, size_t n)
{
    struct caps_q *q = ctx;

    return cd_json_parse(col[0].p, col[0].len, &q->caps);
}

static enum cd_err count_sent(struct cd_tx *tx, struct caps_q *q, int days, bool any_channel,
                              int64_t *count)
{
    return cd_core_outbound_count(tx, q->customer_id, q->purpose,
                                  any_channel ? NULL : q->channel,
                                  q->now - (int64_t)days * DAY_MS, count);
}

static enum cd_err caps_fn(struct cd_tx *tx, void *ctx)
{
    struct caps_q *q = ctx;
    struct cd_val p[1] = {CD_VTEXT(q->customer_id)};
    enum cd_err err;
    int64_t cnt;

    /* The rules' caps, then the customer's own: both must hold. */
    for (size_t i = 0; i < q->j->ncaps; i++) {
        const struct cd__consent_cap *cap = &q->j->caps[i];
        if (cap->purpose != q->pu ||
            (cap->channel != CD_CONSENT_CHANNEL_ANY && cap->channel != q->ch))
            continue;
        if ((err = count_sent(tx, q, cap->days, cap->channel == CD_CONSENT_CHANNEL_ANY, &cnt)) !=
            CD_OK)
            return err;
        if (cnt >= cap->max) {
            snprintf(q->desc, sizeof q->desc, "at most %u per %u days (rules)", cap->max,
                     cap->days);
            q->hit = q->desc;
            return CD_OK;
        }
    }
    if ((err = cd_tx_exec(tx, "SELECT caps FROM consent_preferences WHERE customer_id = $1", p, 1,
                          caps_row, q, NULL)) != CD_OK)
        return err;
    size_t i;
    json_t *v;
    json_array_foreach(q->caps, i, v)
    {
        enum cd_purpose pu;
        enum cd_consent_channel ch = CD_CONSENT_CHANNEL_ANY;
        const char *chs = json_string_value(json_object_get(v, "channel"));
        if (!cd_purpose_parse(cd_str_c(json_string_value(json_object_get(v, "purpose"))), &pu) ||
            pu != q->pu || (chs && !cd_consent_channel_parse(cd_str_c(chs), &ch)) ||
            (ch != CD_CONSENT_CHANNEL_ANY && ch != q->ch))
            continue;
        int64_t max = json_integer_value(json_object_get(v, "max"));
        int days = (int)json_integer_value(json_object_get(v, "days"));
        if ((err = count_sent(tx, q, days, ch == CD_CONSENT_CHANNEL_ANY, &cnt)) != CD_OK)
            return err;
        if (cnt >= max) {
            snprintf(q->desc, sizeof q->desc, "at most %lld per %d days (customer preference)",
                     (long long)max, days);
            q->hit = q->desc;
            return CD_OK;
        }
    }
    return CD_OK;
}

/* Several servers on one database: a decision that must reflect every change acknowledged by
 * any of them is refused (503) while this server's view of the others' changes is older than
 * the bound (store.h, CD_STORE_FEED_BOUND_MS): its feed lost the database. */
static enum cd_err fresh_enough(struct cd_consent *c)
{
    int64_t fresh = cd_store_feed_fresh_ms(c->store);

    if (fresh == INT64_MAX || cd_now_ms() - fresh <= CD_STORE_FEED_BOUND_MS)
        return CD_OK;
    return cd_err_set(CD_ERR_STORE, "this server has not heard from the database for over %d ms "
                                    "and may not know another server's consent changes; retry",
                      CD_STORE_FEED_BOUND_MS);
}

enum cd_err cd_consent_outbound_check(void *ctx, const struct cd_actor *actor,
                                      const char *customer_id, const char *channel,
                                      const char *purpose, struct cd_str topic,
                                      struct cd_str body, const struct cd_core_overrides *ov,
                                      json_t **annotation)
{
    struct cd_consent *c = ctx;
    struct cd_consent_decision d;
    enum cd_purpose pu;
    enum cd_consent_channel ch;
    enum cd_err err;
    bool exists = false;
    char detail[200], ev[CD_ID_MAX];
    int64_t now = cd_now_ms();

    if (!cd_purpose_parse(cd_str_c(purpose), &pu) ||
        !cd_consent_channel_parse(cd_str_c(channel), &ch) || ch == CD_CONSENT_CHANNEL_ANY)
        return cd_err_set(CD_ERR_INVALID, "outbound purpose or channel unknown");
    if ((err = fresh_enough(c)) != CD_OK)
        return err;
    if (c->rules.basis[pu]) {
        /* Service, billing, ...: no consent needed, but a restriction (GDPR Art. 18) still
         * stops the contact. The projection holds it as soon as the restriction is answered
         * (cd_consent_customer_changed), so no read of the store is needed here. */
        if (customer_id == NULL)
            return CD_OK;
        cd_consent_decide(c, cd_str_c(customer_id), pu, ch, now, &d);
        if (d.allow)
            return CD_OK;
        exists = true;
    } else if (customer_id) {
        /* Exact, not eventually consistent: take the customer's jurisdiction and zone now. */
        if ((err = cd__consent_refresh_customer(c, cd_str_c(customer_id), &exists)) != CD_OK)
            return err;
    }
    if (c->rules.basis[pu]) {
        /* decided above */
    } else if (!exists) {
        /* Every member set: the refusal below reads has_event too. */
        d = (struct cd_consent_decision){.allow = false, .reason = "no_consent",
                                         .basis = "none", .regime = "", .has_event = false};
    } else {
        cd_consent_decide_topic(c, cd_str_c(customer_id), pu, ch, topic, now, &d);
    }
    if (d.allow) {
        pthread_rwlock_rdlock(&c->lock);
        uint8_t key[16];
        cd_id_bits(cd_str_c(customer_id), "cus", key);
        const struct cd__cust *cu = cd__proj_find(&c->proj, key);
        const struct cd__consent_juris *j = &c->rules.j[cu ? cu->juris : c->rules.def];
        pthread_rwlock_unlock(&c->lock);
        struct caps_q q = {cd_str_c(customer_id), purpose, channel, pu, ch, j, now, NULL, {0},
                           NULL};
        err = cd_store_read(c->store, caps_fn, &q);
        json_decref(q.caps);
        if (err != CD_OK)
            return err;
        if (q.hit) {
            d.allow = false;
            d.reason = "frequency_cap";
            snprintf(detail, sizeof detail, "frequency_cap: %s %s messages are capped at %s",
                     purpose, channel, q.desc);
        }
    }
    if (d.allow)
        return CD_OK;
    if (strcmp(d.reason, "topic_opted_out") == 0)
        /* A topic is a name from the business's own list (newsletter, offers), not personal
         * data: the sender learns which one to drop. */
        snprintf(detail, sizeof detail, "topic_opted_out: the customer opted out of the topic "
                 "'%.*s'; outbound %s on %s refused by the consent engine",
                 (int)(topic.len < 48 ? topic.len : 48), topic.p, purpose, channel);
    else if (strcmp(d.reason, "restricted") == 0)
        snprintf(detail, sizeof detail, "restricted: processing of this customer's data is "
                 "restricted (GDPR Art. 18); outbound %s on %s refused", purpose, channel);
    else if (strcmp(d.reason, "frequency_cap") != 0)
        snprintf(detail, sizeof detail, "%s: outbound %s on %s refused by the consent engine",
                 d.reason, purpose, channel);
    struct cd_audit_event ae = {.action = "interaction.outbound", .outcome = "denied",
                                .actor_token = actor ? actor->token_id : "system",
                                .actor_role = actor ? actor->role : "system",
                                .actor_name = actor ? actor->name : "system",
                                .purpose = purpose,
                                .request_id = actor ? actor->request_id : NULL,
                                .customer_id = exists ? customer_id : NULL,
                                .resource_id = d.has_event ? cd_consent_decision_event_id(&d, ev)
                                                           : NULL,
                                .categories = "consent", .reason = d.reason};
    if ((err = cd_audit_record(c->store, &ae)) != CD_OK)
        return err;
    return cd_err_set(CD_ERR_CONSENT_DENIED, "%s", detail);
}

enum cd_err cd_consent_decide_exact(struct cd_consent *c, struct cd_str customer_id,
                                    enum cd_purpose purpose, enum cd_consent_channel channel,
                                    struct cd_str topic, int64_t now_ms,
                                    struct cd_consent_decision *d)
{
    bool exists = false;
    enum cd_err err;

    if ((err = fresh_enough(c)) != CD_OK ||
        (err = cd_consent_decide_topic(c, customer_id, purpose, channel, topic, now_ms, d)) !=
            CD_OK ||
        d->allow || strcmp(d->reason, "unknown_customer") != 0)
        return err;
    if ((err = cd__consent_refresh_customer(c, customer_id, &exists)) != CD_OK || !exists)
        return err;
    return cd_consent_decide_topic(c, customer_id, purpose, channel, topic, now_ms, d);
}

bool cd_consent_needs_consent(const struct cd_consent *c, enum cd_purpose purpose)
{
    return (unsigned)purpose >= CD_PURPOSE__COUNT || c->rules.basis[purpose] == NULL;
}

void cd_consent_set_restriction(struct cd_consent *c, unsigned allowed_purposes)
{
    cd__consent_wlock(c);
    c->restriction_allows = allowed_purposes;
    cd__consent_wunlock(c);
}

void cd_consent_customer_changed(void *ctx, const char *customer_id)
{
    struct cd_consent *c = ctx;
    bool exists = false;

    /* On failure the refresher applies the change within a quarter second. */
    if (cd__consent_refresh_customer(c, cd_str_c(customer_id), &exists) != CD_OK)
        cd_log(CD_LOG_WARN, "consent.refresh_deferred", "\"reason\":\"%s\"",
               cd_err_name(CD_ERR_STORE));
}

enum cd_err cd_consent_read_check(void *ctx, const char *customer_id, const char *purpose)
{
    struct cd_consent *c = ctx;
    struct cd_consent_decision d;
    enum cd_purpose pu;
    enum cd_err err;

    if (!cd_purpose_parse(cd_str_c(purpose), &pu))
        return cd_err_set(CD_ERR_CONSENT_DENIED, "unknown purpose");
    if ((err = cd_consent_decide_exact(c, cd_str_c(customer_id), pu, CD_CONSENT_CHANNEL_ANY,
                                       CD_STR_NULL, cd_now_ms(), &d)) != CD_OK)
        return err;
    if (d.allow)
        return CD_OK;
    return cd_err_set(CD_ERR_CONSENT_DENIED, "%s: the customer's consent does not allow %s",
                      d.reason, purpose);
}
