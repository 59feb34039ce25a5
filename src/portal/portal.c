/* Signing in to the customer's self-service session and the session itself. A challenge row is
 * one code sent (or, for an identity no customer holds, one that was not: the same row without
 * a customer, which no code answers). Once decided (signed in, attempts exhausted, expired,
 * replaced by a newer code) a challenge loses its key and hash, so nothing is left to guess
 * against, and stays an hour as the count behind CD_PORTAL_CODES_PER_HOUR. */
#include <stdio.h>
#include <string.h>
#include "audit/audit.h"
#include "outbox/outbox.h"
#include "portal.h"

#define HOUR_MS (3600 * 1000LL)
#define TOUCH_MS (60 * 1000LL)
#define CSRF_LABEL "candor self-service csrf\n"
#define CUSTOMER_ROLE "customer"

static void code_hash(const uint8_t key[CD_CRYPTO_KEY_LEN], struct cd_str code,
                      uint8_t out[CD_CRYPTO_HASH_LEN])
{
    cd_crypto_blind_index(key, CD_STR("portal.sign_in"), code, out);
}

/* Appends one ledger event about the customer's sign-in or session. */
static enum cd_err ledger(struct cd_tx *tx, const char *action, const char *outcome,
                          const char *actor_token, const char *actor_role, const char *actor_name,
                          const char *request_id, const char *customer_id, const char *resource,
                          const char *reason)
{
    struct cd_audit_event ev = {.action = action,
                                .outcome = outcome,
                                .actor_token = actor_token,
                                .actor_role = actor_role,
                                .actor_name = actor_name,
                                .purpose = CD_PORTAL_PURPOSE,
                                .request_id = request_id,
                                .customer_id = customer_id,
                                .resource_id = resource,
                                .reason = reason};
    return cd_audit_append(tx, &ev, NULL);
}

void cd_portal_actor(const struct cd_portal_session *ses, const char *request_id,
                     struct cd_actor *out)
{
    *out = (struct cd_actor){.token_id = ses->id,
                             .role = CUSTOMER_ROLE,
                             .name = "the customer (self-service)",
                             .request_id = request_id,
                             .purpose = CD_PORTAL_PURPOSE,
                             .restricted_ok = true,
                             .needs_consent = false};
}

/* ---- asking for a code ---- */

struct send_ctx {
    const char *customer_id; /* NULL: no customer holds the identity */
    const char *channel;
    const char *to;          /* the identity on file, borrowed */
    const char *request_id;
    char id[CD_ID_MAX];
    int64_t now, expires;
};

static enum cd_err send_fn(struct cd_tx *tx, void *ctx)
{
    struct send_ctx *sc = ctx;
    char code[CD_CRYPTO_CODE_DIGITS + 1];
    uint8_t key[CD_CRYPTO_KEY_LEN], hash[CD_CRYPTO_HASH_LEN];
    const char *customer = sc->customer_id;
    int64_t recent = 0;
    enum cd_err err;

    cd_id_new("chl", sc->id);
    sc->expires = sc->now + CD_PORTAL_CODE_TTL_MS;
    struct cd_val old[] = {CD_VINT(sc->now - HOUR_MS)};
    if ((err = cd_tx_exec(tx, "DELETE FROM portal_challenges WHERE created_at < $1", old, 1,
                          NULL, NULL, NULL)) != CD_OK)
        return err;
    if (customer) {
        struct cd_val q[] = {CD_VCSTR(customer), CD_VINT(sc->now - HOUR_MS)};
        if ((err = cd_tx_int(tx, "SELECT count(*) FROM portal_challenges WHERE customer_id = $1"
                                 " AND created_at >= $2",
                             q, 2, &recent)) != CD_OK)
            return err;
        if (recent >= CD_PORTAL_CODES_PER_HOUR) {
            /* Enough codes went to this customer: the answer looks the same, nothing is sent. */
            if ((err = ledger(tx, "portal.sign_in_code", "denied", "anonymous", "public",
                              "public", sc->request_id, customer, NULL, "rate_limited")) != CD_OK)
                return err;
            customer = NULL;
        }
    }
    cd_crypto_code_new(code);
    cd_random_bytes(key, sizeof key);
    code_hash(key, cd_str_c(code), hash);
    struct cd_val v[] = {CD_VCSTR(sc->id),
                         customer ? CD_VCSTR(customer) : CD_VNULL,
                         CD_VCSTR(sc->channel),
                         CD_VBLOB(key, sizeof key),
                         CD_VBLOB(hash, sizeof hash),
                         CD_VINT(sc->now),
                         CD_VINT(sc->expires)};
    err = cd_tx_exec(tx, "INSERT INTO portal_challenges(id, customer_id, channel, hash_key,"
                         " code_hash, attempts, created_at, expires_at)"
                         " VALUES($1,$2,$3,$4,$5,0,$6,$7)",
                     v, 7, NULL, NULL, NULL);
    if (err != CD_OK || customer == NULL)
        goto out;
    /* Only the newest code works. */
    struct cd_val p[] = {CD_VCSTR(customer), CD_VCSTR(sc->id)};
    char ts[CD_TIME_STRLEN];
    cd_time_format(sc->expires, ts);
    json_t *payload = json_pack("{s:s,s:s,s:s,s:s,s:s}", "challenge_id", sc->id, "channel",
                                sc->channel, "to", sc->to, "code", code, "expires_at", ts);
    if (payload == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    if ((err = cd_tx_exec(tx, "UPDATE portal_challenges SET hash_key = NULL, code_hash = NULL"
                              " WHERE customer_id = $1 AND id <> $2 AND code_hash IS NOT NULL",
                          p, 2, NULL, NULL, NULL)) == CD_OK &&
        (err = cd_outbox_enqueue(tx, "customer.sign_in_code", cd_str_c(customer), payload,
                                 NULL)) == CD_OK)
        err = ledger(tx, "portal.sign_in_code", "ok", "anonymous", "public", "public",
                     sc->request_id, customer, sc->id, sc->channel);
    json_decref(payload);
out:
    cd_crypto_wipe(code, sizeof code);
    cd_crypto_wipe(key, sizeof key);
    return err;
}

enum cd_err cd_portal_code_send(struct cd_store *s, struct cd_core *core, const json_t *body,
                                const char *request_id, json_t **out)
{
    static const char *const allowed[] = {"type", "value", NULL};
    struct cd_str type = CD_STR_NULL, value = CD_STR_NULL;
    struct cd_buf to = CD_BUF_INIT(1024);
    char customer[CD_ID_MAX] = "", channel[8];
    struct send_ctx sc = {.request_id = request_id, .now = cd_now_ms()};
    struct cd_actor finder = {.token_id = "anonymous", .role = "public",
                              .name = "self-service sign-in",
                              .request_id = request_id, .purpose = CD_PORTAL_PURPOSE,
                              .restricted_ok = true};
    json_t *found = NULL;
    enum cd_err err;

    if ((err = cd_json_only(body, allowed)) != CD_OK ||
        (err = cd_json_str(body, "type", true, &type)) != CD_OK ||
        (err = cd_json_str(body, "value", true, &value)) != CD_OK)
        goto out;
    if (!cd_str_eq_c(type, "email") && !cd_str_eq_c(type, "phone")) {
        err = cd_err_set(CD_ERR_INVALID, "'type' must be email or phone: a code is sent there");
        goto out;
    }
    snprintf(channel, sizeof channel, "%.*s", (int)type.len, type.p);
    /* The identity as it is kept (normalised), which is where the code goes. */
    if ((err = cd_core_identity_normalize(type, CD_STR_NULL, value, &to)) != CD_OK ||
        (err = cd_buf_append(&to, "", 1)) != CD_OK)
        goto out;
    /* Found by its blind index; only the id is read (no personal data), and the look-up is on
     * the customer's access log as the sign-in's. What is sent is what the person typed, once
     * it is known to be on file. */
    err = cd_core_customer_find(core, &finder, type, CD_STR_NULL, value, CD_FIELDS_REFERENCE,
                                &found);
    if (err == CD_OK) {
        const char *id = json_string_value(json_object_get(found, "id"));
        const char *status = json_string_value(json_object_get(found, "status"));
        if (id && (status == NULL || strcmp(status, "active") == 0))
            snprintf(customer, sizeof customer, "%s", id);
    } else if (err != CD_ERR_NOT_FOUND) {
        goto out;
    }
    cd_err_clear();
    sc.customer_id = customer[0] ? customer : NULL;
    sc.channel = channel;
    sc.to = to.p;
    if ((err = cd_store_write(s, send_fn, &sc)) != CD_OK)
        goto out;
    char ts[CD_TIME_STRLEN];
    cd_time_format(sc.expires, ts);
    *out = json_pack("{s:s,s:s}", "challenge_id", sc.id, "expires_at", ts);
    err = *out ? CD_OK : CD_ERR_NOMEM;
out:
    json_decref(found);
    if (to.p)
        cd_crypto_wipe(to.p, to.len);
    cd_buf_free(&to);
    return err;
}

/* ---- signing in ---- */

enum outcome { SIGNED_IN, MISMATCH, EXHAUSTED, EXPIRED, NONE_PENDING };
static const char *const outcome_names[] = {"signed_in", "mismatch", "attempts_exhausted",
                                            "expired", "none_pending"};

struct sign_in_ctx {
    char id[CD_ID_MAX];
    char code[CD_CRYPTO_CODE_DIGITS + 1];
    const char *request_id;
    enum outcome outcome;  /* out */
    int64_t attempts_left; /* out */
    struct cd_portal_session *ses; /* out, when signed in */
    char token[CD_PORTAL_SESSION_LEN + 1];
    uint8_t token_hash[CD_CRYPTO_HASH_LEN];
    /* the challenge as stored */
    bool found, live;
    char customer_id[CD_ID_MAX];
    uint8_t key[CD_CRYPTO_KEY_LEN], hash[CD_CRYPTO_HASH_LEN];
    int64_t attempts, expires;
};

static enum cd_err challenge_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct sign_in_ctx *si = ctx;

    si->found = true;
    snprintf(si->customer_id, sizeof si->customer_id, "%.*s",
             c[0].type == CD_VAL_TEXT ? (int)c[0].len : 0,
             c[0].type == CD_VAL_TEXT ? (const char *)c[0].p : "");
    si->live = c[1].type == CD_VAL_BLOB && c[1].len == sizeof si->key &&
               c[2].type == CD_VAL_BLOB && c[2].len == sizeof si->hash;
    if (si->live) {
        memcpy(si->key, c[1].p, sizeof si->key);
        memcpy(si->hash, c[2].p, sizeof si->hash);
    }
    si->attempts = c[3].i;
    si->expires = c[4].i;
    return CD_OK;
}

/* The challenge is decided: its key and hash go, and a customer's ledger says how. */
static enum cd_err decide(struct sign_in_ctx *si, struct cd_tx *tx, const char *action,
                          const char *outcome)
{
    struct cd_val q[] = {CD_VCSTR(si->id)};
    enum cd_err err = cd_tx_exec(tx, "UPDATE portal_challenges SET hash_key = NULL,"
                                     " code_hash = NULL WHERE id = $1",
                                 q, 1, NULL, NULL, NULL);

    if (err != CD_OK || si->customer_id[0] == '\0')
        return err;
    return ledger(tx, action, outcome, "anonymous", "public", "public", si->request_id,
                  si->customer_id, si->id, outcome_names[si->outcome]);
}

static enum cd_err sign_in_fn(struct cd_tx *tx, void *ctx)
{
    struct sign_in_ctx *si = ctx;
    uint8_t got[CD_CRYPTO_HASH_LEN];
    int64_t now = cd_now_ms();
    struct cd_val q[] = {CD_VCSTR(si->id)};
    enum cd_err err;

    si->found = si->live = false;
    si->attempts_left = 0;
    if ((err = cd_tx_exec(tx, "SELECT customer_id, hash_key, code_hash, attempts, expires_at"
                              " FROM portal_challenges WHERE id = $1",
                          q, 1, challenge_row, si, NULL)) != CD_OK)
        goto out;
    if (!si->found || !si->live) {
        si->outcome = NONE_PENDING;
        goto out;
    }
    if (now >= si->expires) {
        si->outcome = EXPIRED;
        err = decide(si, tx, "portal.sign_in", "denied");
        goto out;
    }
    /* The comparison takes the same time whichever byte differs, and a challenge without a
     * customer is compared too, so it answers as slowly as a real one. */
    code_hash(si->key, cd_str_c(si->code), got);
    if (cd_crypto_equal(got, si->hash, sizeof got) && si->customer_id[0]) {
        si->outcome = SIGNED_IN;
        cd_id_new("pse", si->ses->id);
        snprintf(si->ses->customer_id, sizeof si->ses->customer_id, "%s", si->customer_id);
        si->ses->expires_at = now + CD_PORTAL_SESSION_IDLE_MS;
        struct cd_val v[] = {CD_VCSTR(si->ses->id), CD_VBLOB(si->token_hash, CD_CRYPTO_HASH_LEN),
                             CD_VCSTR(si->customer_id), CD_VINT(now)};
        if ((err = cd_tx_exec(tx, "INSERT INTO portal_sessions(id, hash, customer_id,"
                                  " created_at, last_seen) VALUES($1,$2,$3,$4,$4)",
                              v, 4, NULL, NULL, NULL)) != CD_OK)
            goto out;
        err = decide(si, tx, "portal.sign_in", "ok");
        goto out;
    }
    si->attempts++;
    if (si->attempts >= CD_PORTAL_CODE_ATTEMPTS) {
        si->outcome = EXHAUSTED;
        err = decide(si, tx, "portal.sign_in", "denied");
        goto out;
    }
    si->outcome = MISMATCH;
    si->attempts_left = CD_PORTAL_CODE_ATTEMPTS - si->attempts;
    struct cd_val u[] = {CD_VCSTR(si->id), CD_VINT(si->attempts)};
    err = cd_tx_exec(tx, "UPDATE portal_challenges SET attempts = $2 WHERE id = $1", u, 2, NULL,
                     NULL, NULL);
out:
    cd_crypto_wipe(si->key, sizeof si->key);
    cd_crypto_wipe(got, sizeof got);
    return err;
}

enum cd_err cd_portal_sign_in(struct cd_store *s, const json_t *body, const char *request_id,
                              struct cd_portal_session *out,
                              char token_out[CD_PORTAL_SESSION_LEN + 1], json_t **failure)
{
    static const char *const allowed[] = {"challenge_id", "code", NULL};
    struct sign_in_ctx si = {.request_id = request_id, .ses = out};
    struct cd_str id = CD_STR_NULL, code = CD_STR_NULL;
    enum cd_err err;

    *failure = NULL;
    if ((err = cd_json_only(body, allowed)) != CD_OK ||
        (err = cd_json_str(body, "challenge_id", true, &id)) != CD_OK ||
        (err = cd_json_str(body, "code", true, &code)) != CD_OK)
        return err;
    if (!cd_crypto_code_shaped(code))
        return cd_err_set(CD_ERR_INVALID, "'code' must be the %d digits that were sent",
                          CD_CRYPTO_CODE_DIGITS);
    /* A malformed id is a challenge that is not pending, as an unknown one is. */
    if (cd_id_valid(id, "chl"))
        snprintf(si.id, sizeof si.id, "%.*s", (int)id.len, id.p);
    memcpy(si.code, code.p, code.len);
    si.code[code.len] = '\0';
    if ((err = cd_crypto_secret_new("cps_", si.token, si.token_hash)) == CD_OK)
        err = si.id[0] ? cd_store_write(s, sign_in_fn, &si) : CD_OK;
    if (si.id[0] == '\0')
        si.outcome = NONE_PENDING;
    cd_crypto_wipe(si.code, sizeof si.code);
    if (err == CD_OK && si.outcome == SIGNED_IN)
        memcpy(token_out, si.token, sizeof si.token);
    cd_crypto_wipe(si.token, sizeof si.token);
    if (err != CD_OK || si.outcome == SIGNED_IN)
        return err;
    *failure = json_pack("{s:s,s:I}", "outcome", outcome_names[si.outcome], "attempts_left",
                         (json_int_t)si.attempts_left);
    if (*failure == NULL)
        return CD_ERR_NOMEM;
    switch (si.outcome) {
    case MISMATCH:
        return cd_err_set(CD_ERR_UNAUTHENTICATED, "the code does not match (%lld attempts left)",
                          (long long)si.attempts_left);
    case EXHAUSTED:
        return cd_err_set(CD_ERR_UNAUTHENTICATED, "the code does not match, and that was the "
                                                  "last attempt: ask for a new code");
    case EXPIRED:
        return cd_err_set(CD_ERR_UNAUTHENTICATED, "the code expired: ask for a new one");
    default:
        return cd_err_set(CD_ERR_UNAUTHENTICATED, "no code is pending for this sign-in: ask "
                                                  "for one");
    }
}

/* ---- the session ---- */

struct verify_ctx {
    const uint8_t *hash;
    struct cd_portal_session *ses;
    bool found, ended;
    int64_t created_at, last_seen;
};

static enum cd_err session_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct verify_ctx *v = ctx;

    v->found = true;
    snprintf(v->ses->id, sizeof v->ses->id, "%.*s", (int)c[0].len, (const char *)c[0].p);
    snprintf(v->ses->customer_id, sizeof v->ses->customer_id, "%.*s", (int)c[1].len,
             (const char *)c[1].p);
    v->created_at = c[2].i;
    v->last_seen = c[3].i;
    v->ended = c[4].type != CD_VAL_NULL;
    return CD_OK;
}

static enum cd_err session_fn(struct cd_tx *tx, void *ctx)
{
    struct verify_ctx *v = ctx;
    struct cd_val p[] = {CD_VBLOB(v->hash, CD_CRYPTO_HASH_LEN)};

    v->found = false;
    return cd_tx_exec(tx, "SELECT id, customer_id, created_at, last_seen, ended_at"
                          " FROM portal_sessions WHERE hash = $1",
                      p, 1, session_row, v, NULL);
}

static enum cd_err touch_fn(struct cd_tx *tx, void *ctx)
{
    const struct cd_portal_session *ses = ctx;
    struct cd_val p[] = {CD_VCSTR(ses->id), CD_VINT(cd_now_ms())};

    return cd_tx_exec(tx, "UPDATE portal_sessions SET last_seen = $2 WHERE id = $1", p, 2, NULL,
                      NULL, NULL);
}

enum cd_err cd_portal_session_verify(struct cd_store *s, struct cd_str token,
                                     struct cd_portal_session *out)
{
    uint8_t hash[CD_CRYPTO_HASH_LEN];
    struct cd_portal_session ses = {0};
    struct verify_ctx v = {.hash = hash, .ses = &ses};
    int64_t now = cd_now_ms();
    enum cd_err err;

    if (token.len != CD_PORTAL_SESSION_LEN || memcmp(token.p, "cps_", 4) != 0)
        return cd_err_set(CD_ERR_UNAUTHENTICATED, "the session cookie is malformed; sign in");
    if ((err = cd_crypto_sha256(token.p, token.len, hash)) != CD_OK ||
        (err = cd_store_read(s, session_fn, &v)) != CD_OK)
        return err;
    if (!v.found)
        return cd_err_set(CD_ERR_UNAUTHENTICATED, "the session is not known; sign in");
    if (v.ended)
        return cd_err_set(CD_ERR_UNAUTHENTICATED, "the session has ended; sign in");
    if (now - v.last_seen > CD_PORTAL_SESSION_IDLE_MS ||
        now - v.created_at > CD_PORTAL_SESSION_MAX_MS)
        return cd_err_set(CD_ERR_UNAUTHENTICATED, "the session expired; sign in again");
    if (now - v.last_seen > TOUCH_MS) {
        if ((err = cd_store_write(s, touch_fn, &ses)) != CD_OK)
            return err;
        v.last_seen = now;
    }
    ses.expires_at = v.last_seen + CD_PORTAL_SESSION_IDLE_MS;
    if (ses.expires_at > v.created_at + CD_PORTAL_SESSION_MAX_MS)
        ses.expires_at = v.created_at + CD_PORTAL_SESSION_MAX_MS;
    *out = ses;
    return CD_OK;
}

struct end_ctx {
    const struct cd_portal_session *ses;
    const char *request_id;
};

static enum cd_err end_fn(struct cd_tx *tx, void *ctx)
{
    struct end_ctx *e = ctx;
    struct cd_val p[] = {CD_VCSTR(e->ses->id), CD_VINT(cd_now_ms())};
    int64_t n = 0;
    enum cd_err err = cd_tx_exec(tx, "UPDATE portal_sessions SET ended_at = $2"
                                     " WHERE id = $1 AND ended_at IS NULL",
                                 p, 2, NULL, NULL, &n);

    if (err != CD_OK)
        return err;
    if (n == 0)
        return cd_err_set(CD_ERR_NOT_FOUND, "the session has ended already");
    return ledger(tx, "portal.sign_out", "ok", e->ses->id, CUSTOMER_ROLE,
                  "the customer (self-service)", e->request_id, e->ses->customer_id, e->ses->id,
                  NULL);
}

enum cd_err cd_portal_session_end(struct cd_store *s, const struct cd_portal_session *ses,
                                  const char *request_id)
{
    struct end_ctx e = {ses, request_id};
    return cd_store_write(s, end_fn, &e);
}

struct revoke_ctx {
    const struct cd_actor *a;
    char customer_id[CD_ID_MAX];
    int64_t ended;
};

static enum cd_err revoke_fn(struct cd_tx *tx, void *ctx)
{
    struct revoke_ctx *rc = ctx;
    struct cd_val p[] = {CD_VCSTR(rc->customer_id), CD_VINT(cd_now_ms())};
    char n[24];
    enum cd_err err = cd_tx_exec(tx, "UPDATE portal_sessions SET ended_at = $2"
                                     " WHERE customer_id = $1 AND ended_at IS NULL",
                                 p, 2, NULL, NULL, &rc->ended);

    if (err != CD_OK)
        return err;
    snprintf(n, sizeof n, "%lld ended", (long long)rc->ended);
    struct cd_audit_event ev = {.action = "portal.revoke",
                                .outcome = "ok",
                                .actor_token = rc->a->token_id,
                                .actor_role = rc->a->role,
                                .actor_name = rc->a->name,
                                .purpose = rc->a->purpose,
                                .request_id = rc->a->request_id,
                                .customer_id = rc->customer_id,
                                .reason = n};
    return cd_audit_append(tx, &ev, NULL);
}

enum cd_err cd_portal_sessions_revoke(struct cd_store *s, const struct cd_actor *a,
                                      struct cd_str customer_id, int64_t *ended)
{
    struct revoke_ctx rc = {.a = a};
    enum cd_err err;

    if (!cd_id_valid(customer_id, "cus"))
        return cd_err_set(CD_ERR_NOT_FOUND, "no customer with this id");
    snprintf(rc.customer_id, sizeof rc.customer_id, "%.*s", (int)customer_id.len,
             customer_id.p);
    if ((err = cd_store_write(s, revoke_fn, &rc)) == CD_OK)
        *ended = rc.ended;
    return err;
}

enum cd_err cd_portal_csrf_token(struct cd_str token, char out[CD_PORTAL_CSRF_LEN + 1])
{
    return cd_crypto_derived(CSRF_LABEL, token, out);
}

bool cd_portal_csrf_check(struct cd_str token, struct cd_str presented)
{
    return cd_crypto_derived_check(CSRF_LABEL, token, presented);
}
