/* Identity verification by a one-time code sent to an identity already on file. The code goes
 * to the customer through the outbox (dsar.verification_code, whose code and address members
 * are sealed at rest and delivered only to a subscription whose purpose may see contact data);
 * Candor keeps a keyed hash of it under a random key of its own, compares in constant time,
 * counts the attempts, and deletes the artefact once the decision is made: verified, failed
 * (too many attempts) or expired. The code is never logged, never in an answer, never in the
 * ledger. */
#include <stdio.h>
#include <string.h>
#include "crypto/crypto.h"
#include "dsar_int.h"

#define CODE_DIGITS CD_CRYPTO_CODE_DIGITS
#define CODE_TTL_MS (15 * 60 * 1000)
#define CODE_ATTEMPTS 5 /* wrong codes before the artefact is deleted */
#define CODE_SENDS 3    /* codes sent for one request, in all */

static void code_hash(const uint8_t key[CD_CRYPTO_KEY_LEN], struct cd_str code,
                      uint8_t out[CD_CRYPTO_HASH_LEN])
{
    cd_crypto_blind_index(key, CD_STR("dsar.verification"), code, out);
}

/* ---- sending a code ---- */

struct send_ctx {
    struct cd_dsar *d;
    const struct cd_actor *a;
    char id[CD_ID_MAX];
    char channel[16];
    const char *to;  /* the identity on file, borrowed */
    int64_t expires; /* out */
    int64_t sends;   /* out: codes sent so far, this one included */
};

static enum cd_err send_fn(struct cd_tx *tx, void *ctx)
{
    struct send_ctx *sc = ctx;
    struct cd__dsar_row r;
    char code[CODE_DIGITS + 1];
    uint8_t key[CD_CRYPTO_KEY_LEN], hash[CD_CRYPTO_HASH_LEN];
    int64_t now = cd_now_ms();
    enum cd_err err;

    cd__dsar_row_init(&r);
    if ((err = cd__dsar_load(tx, sc->id, &r)) != CD_OK)
        goto out;
    if (!r.found) {
        err = cd_err_set(CD_ERR_NOT_FOUND, "no request with this id");
        goto out;
    }
    if (r.state != CD_DSAR_RECEIVED && r.state != CD_DSAR_VERIFYING) {
        err = cd_err_set(CD_ERR_CONFLICT, "a code verifies a request that is received or "
                                          "verifying (this one is %s)",
                         cd_dsar_state_name(r.state));
        goto out;
    }
    struct cd_val q[] = {CD_VCSTR(sc->id)};
    if ((err = cd_tx_int(tx, "SELECT verification_sends FROM dsar_requests WHERE id = $1", q, 1,
                         &sc->sends)) != CD_OK)
        goto out;
    if (sc->sends >= CODE_SENDS) {
        err = cd_err_set(CD_ERR_CONFLICT, "%d codes were sent for this request already: verify "
                                          "the customer another way, or refuse the request with "
                                          "reason identity_not_verified", CODE_SENDS);
        goto out;
    }
    sc->sends++;
    sc->expires = now + CODE_TTL_MS;
    cd_crypto_code_new(code);
    cd_random_bytes(key, sizeof key);
    code_hash(key, cd_str_c(code), hash);
    /* A new code replaces the one pending: only the last one sent works. */
    struct cd_val v[] = {CD_VCSTR(sc->id),           CD_VCSTR(r.customer_id),
                         CD_VCSTR(sc->channel),      CD_VBLOB(key, sizeof key),
                         CD_VBLOB(hash, sizeof hash), CD_VINT(now),
                         CD_VINT(sc->expires)};
    struct cd_val u[] = {CD_VCSTR(sc->id), CD_VINT(now), CD_VINT(sc->sends)};
    if ((err = cd_tx_exec(tx, "DELETE FROM dsar_verifications WHERE request_id = $1", q, 1, NULL,
                          NULL, NULL)) != CD_OK ||
        (err = cd_tx_exec(tx, "INSERT INTO dsar_verifications(request_id, customer_id, channel,"
                              " hash_key, code_hash, attempts, created_at, expires_at)"
                              " VALUES($1,$2,$3,$4,$5,0,$6,$7)",
                          v, 7, NULL, NULL, NULL)) != CD_OK ||
        (err = cd_tx_exec(tx, "UPDATE dsar_requests SET state = 'verifying', updated_at = $2,"
                              " verification_sends = $3 WHERE id = $1",
                          u, 3, NULL, NULL, NULL)) != CD_OK ||
        (err = cd__dsar_record(tx, sc->a, sc->id, r.customer_id, "dsar.verification_sent",
                               cd_dsar_state_name(r.state), "verifying", sc->channel, now)) !=
            CD_OK)
        goto out;
    err = cd__dsar_tell(sc->d, tx, "dsar.verification_code", r.customer_id,
                        json_pack("{s:s,s:s,s:s,s:s,s:o}", "request_id", sc->id, "channel",
                                  sc->channel, "to", sc->to, "code", code, "expires_at",
                                  cd__dsar_time(sc->expires)));
out:
    cd_crypto_wipe(code, sizeof code);
    cd_crypto_wipe(key, sizeof key);
    cd__dsar_row_free(&r);
    return err;
}

/* The customer's identity of that type on file (the first one), read under legal_obligation:
 * the read is on their access log. */
static enum cd_err identity_on_file(struct cd_dsar *d, const struct cd_actor *a,
                                    const char *customer_id, struct cd_str channel,
                                    char *to, size_t n)
{
    struct cd_actor reader = *a;
    json_t *c = NULL;
    enum cd_err err;

    /* The law that obliges the answer is the purpose; it reads restricted customers too and
     * needs no consent (config/policy.yaml). */
    reader.purpose = "legal_obligation";
    reader.restricted_ok = true;
    reader.needs_consent = false;
    if ((err = cd_core_customer_get(d->core, &reader, cd_str_c(customer_id),
                                    CD_FIELDS_REFERENCE | CD_FIELDS_CONTACT, &c)) != CD_OK)
        return err == CD_ERR_NOT_FOUND ? cd_err_set(CD_ERR_CONFLICT, "the customer is gone") : err;
    json_t *ids = json_object_get(c, "identities");
    to[0] = '\0';
    for (size_t i = 0; i < json_array_size(ids) && !to[0]; i++) {
        json_t *e = json_array_get(ids, i);
        const char *type = json_string_value(json_object_get(e, "type"));
        const char *value = json_string_value(json_object_get(e, "value"));
        if (type && value && cd_str_eq_c(channel, type) && strlen(value) < n)
            snprintf(to, n, "%s", value);
    }
    json_decref(c);
    if (!to[0])
        return cd_err_set(CD_ERR_CONFLICT, "the customer has no %.*s identity on file to send a "
                                           "code to", (int)channel.len, channel.p);
    return CD_OK;
}

enum cd_err cd_dsar_verification_send(struct cd_dsar *d, const struct cd_actor *a,
                                      struct cd_str id, const json_t *body, json_t **out)
{
    static const char *const allowed[] = {"channel", NULL};
    struct send_ctx sc = {.d = d, .a = a};
    struct cd__dsar_row r;
    struct cd_str channel = CD_STR_NULL;
    char to[512];
    enum cd_err err;

    cd__dsar_row_init(&r);
    if ((err = cd__dsar_copy_id(id, sc.id)) != CD_OK ||
        (err = cd_json_only(body, allowed)) != CD_OK ||
        (err = cd_json_str(body, "channel", false, &channel)) != CD_OK)
        goto out;
    if (channel.p == NULL)
        channel = CD_STR("email");
    if (!cd_str_eq_c(channel, "email") && !cd_str_eq_c(channel, "phone")) {
        err = cd_err_set(CD_ERR_INVALID, "'channel' must be email or phone");
        goto out;
    }
    snprintf(sc.channel, sizeof sc.channel, "%.*s", (int)channel.len, channel.p);
    if (d->links.enqueue == NULL) {
        err = cd_err_set(CD_ERR_BUSY, "no outbox is wired to send codes");
        goto out;
    }
    if ((err = cd__dsar_read(d, sc.id, &r)) != CD_OK ||
        (err = identity_on_file(d, a, r.customer_id, channel, to, sizeof to)) != CD_OK)
        goto out;
    sc.to = to;
    if ((err = cd_store_write(d->store, send_fn, &sc)) != CD_OK)
        goto out;
    *out = json_pack("{s:s,s:s,s:o,s:i,s:i}", "request_id", sc.id, "channel", sc.channel,
                     "expires_at", cd__dsar_time(sc.expires), "attempts_left", CODE_ATTEMPTS,
                     "sends_left", (int)(CODE_SENDS - sc.sends));
    err = *out ? CD_OK : CD_ERR_NOMEM;
out:
    cd_crypto_wipe(to, sizeof to);
    cd__dsar_row_free(&r);
    return err;
}

/* ---- checking a code ---- */

enum outcome { VERIFIED, MISMATCH, EXHAUSTED, EXPIRED, NONE_PENDING };
static const char *const outcome_names[] = {"verified", "mismatch", "attempts_exhausted",
                                            "expired", "none_pending"};

struct check_ctx {
    struct cd_dsar *d;
    const struct cd_actor *a;
    char id[CD_ID_MAX];
    char code[CODE_DIGITS + 1];
    enum outcome outcome; /* out */
    int64_t attempts_left; /* out */
    /* the pending artefact */
    bool found;
    char customer_id[CD_ID_MAX];
    uint8_t key[CD_CRYPTO_KEY_LEN], hash[CD_CRYPTO_HASH_LEN];
    int64_t attempts, expires;
};

static enum cd_err artefact_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct check_ctx *cc = ctx;

    if (c[1].type != CD_VAL_BLOB || c[1].len != sizeof cc->key || c[2].type != CD_VAL_BLOB ||
        c[2].len != sizeof cc->hash)
        return cd_err_set(CD_ERR_INTEGRITY, "a verification of request %s is malformed", cc->id);
    cc->found = true;
    snprintf(cc->customer_id, sizeof cc->customer_id, "%.*s", (int)c[0].len,
             (const char *)c[0].p);
    memcpy(cc->key, c[1].p, sizeof cc->key);
    memcpy(cc->hash, c[2].p, sizeof cc->hash);
    cc->attempts = c[3].i;
    cc->expires = c[4].i;
    return CD_OK;
}

/* Deletes the artefact and records the decision. */
static enum cd_err decide(struct check_ctx *cc, struct cd_tx *tx, const struct cd__dsar_row *r,
                          const char *action, int64_t now)
{
    struct cd_val q[] = {CD_VCSTR(cc->id)};
    enum cd_err err;
    const char *state = cd_dsar_state_name(r->state);

    if ((err = cd_tx_exec(tx, "DELETE FROM dsar_verifications WHERE request_id = $1", q, 1,
                          NULL, NULL, NULL)) != CD_OK)
        return err;
    if (cc->outcome != VERIFIED)
        return cd__dsar_record(tx, cc->a, cc->id, r->customer_id, action, state, state,
                               outcome_names[cc->outcome], now);
    /* Verified: the request goes ahead, receipt confirmed if it was not. */
    struct cd_val u[] = {CD_VCSTR(cc->id), CD_VINT(now)};
    if ((err = cd_tx_exec(tx, "UPDATE dsar_requests SET state = 'in_progress', verified_at = $2,"
                              " acknowledged_at = coalesce(acknowledged_at, $2), updated_at = $2"
                              " WHERE id = $1",
                          u, 2, NULL, NULL, NULL)) != CD_OK)
        return err;
    return cd__dsar_record(tx, cc->a, cc->id, r->customer_id, action, state, "in_progress",
                           "code", now);
}

static enum cd_err check_fn(struct cd_tx *tx, void *ctx)
{
    struct check_ctx *cc = ctx;
    struct cd__dsar_row r;
    uint8_t got[CD_CRYPTO_HASH_LEN];
    int64_t now = cd_now_ms();
    struct cd_val q[] = {CD_VCSTR(cc->id)};
    enum cd_err err;

    cc->found = false;
    cd__dsar_row_init(&r);
    if ((err = cd__dsar_load(tx, cc->id, &r)) != CD_OK)
        goto out;
    if (!r.found) {
        err = cd_err_set(CD_ERR_NOT_FOUND, "no request with this id");
        goto out;
    }
    if ((err = cd_tx_exec(tx, "SELECT customer_id, hash_key, code_hash, attempts, expires_at"
                              " FROM dsar_verifications WHERE request_id = $1",
                          q, 1, artefact_row, cc, NULL)) != CD_OK)
        goto out;
    cc->attempts_left = 0;
    if (!cc->found || r.state != CD_DSAR_VERIFYING) {
        cc->outcome = NONE_PENDING;
        goto out;
    }
    if (now >= cc->expires) {
        cc->outcome = EXPIRED;
        err = decide(cc, tx, &r, "dsar.verification_expired", now);
        goto out;
    }
    /* The comparison takes the same time whichever byte differs. */
    code_hash(cc->key, cd_str_c(cc->code), got);
    if (cd_crypto_equal(got, cc->hash, sizeof got)) {
        cc->outcome = VERIFIED;
        err = decide(cc, tx, &r, "dsar.verified", now);
        goto out;
    }
    cc->attempts++;
    if (cc->attempts >= CODE_ATTEMPTS) {
        cc->outcome = EXHAUSTED;
        err = decide(cc, tx, &r, "dsar.verification_failed", now);
        goto out;
    }
    cc->outcome = MISMATCH;
    cc->attempts_left = CODE_ATTEMPTS - cc->attempts;
    struct cd_val u[] = {CD_VCSTR(cc->id), CD_VINT(cc->attempts)};
    err = cd_tx_exec(tx, "UPDATE dsar_verifications SET attempts = $2 WHERE request_id = $1", u,
                     2, NULL, NULL, NULL);
out:
    cd_crypto_wipe(cc->key, sizeof cc->key);
    cd_crypto_wipe(got, sizeof got);
    cd__dsar_row_free(&r);
    return err;
}

enum cd_err cd_dsar_verification_check(struct cd_dsar *d, const struct cd_actor *a,
                                       struct cd_str id, const json_t *body, json_t **out,
                                       json_t **failure)
{
    static const char *const allowed[] = {"code", NULL};
    struct check_ctx cc = {.d = d, .a = a};
    struct cd_str code = CD_STR_NULL;
    enum cd_err err;

    *failure = NULL;
    if ((err = cd__dsar_copy_id(id, cc.id)) != CD_OK ||
        (err = cd_json_only(body, allowed)) != CD_OK ||
        (err = cd_json_str(body, "code", true, &code)) != CD_OK)
        return err;
    if (!cd_crypto_code_shaped(code))
        return cd_err_set(CD_ERR_INVALID, "'code' must be the %d digits sent to the customer",
                          CODE_DIGITS);
    memcpy(cc.code, code.p, code.len);
    cc.code[code.len] = '\0';
    err = cd_store_write(d->store, check_fn, &cc);
    cd_crypto_wipe(cc.code, sizeof cc.code);
    if (err != CD_OK)
        return err;
    if (cc.outcome == VERIFIED)
        return cd_dsar_get(d, cd_str_c(cc.id), NULL, false, out);
    *failure = json_pack("{s:s,s:I}", "outcome", outcome_names[cc.outcome], "attempts_left",
                         (json_int_t)cc.attempts_left);
    if (*failure == NULL)
        return CD_ERR_NOMEM;
    switch (cc.outcome) {
    case MISMATCH:
        return cd_err_set(CD_ERR_CONFLICT, "the code does not match (%lld attempts left)",
                          (long long)cc.attempts_left);
    case EXHAUSTED:
        return cd_err_set(CD_ERR_CONFLICT, "the code does not match, and that was the last "
                                           "attempt: the code is void; send a new one or refuse "
                                           "the request with reason identity_not_verified");
    case EXPIRED:
        return cd_err_set(CD_ERR_CONFLICT, "the code expired: send a new one");
    default:
        return cd_err_set(CD_ERR_CONFLICT, "no code is pending for this request: send one");
    }
}
