/* API tokens: 256-bit random secrets stored as SHA-256 hashes, with an optional expiry. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "audit/audit.h"
#include "auth_int.h"
#include "crypto/crypto.h"

enum cd_err cd_auth_expiry_check(int64_t expires_at, int64_t now)
{
    if (expires_at <= now)
        return cd_err_set(CD_ERR_INVALID, "a token's expiry must be in the future");
    if (expires_at - now > CD_AUTH_MAX_LIFETIME_MS)
        return cd_err_set(CD_ERR_INVALID, "a token may live at most ten years (3660 days)");
    return CD_OK;
}

enum cd_err cd_auth_expiry_parse(struct cd_str s, int64_t now, int64_t *expires_at)
{
    static const struct {
        char unit;
        int64_t ms;
    } units[] = {{'s', 1000}, {'m', 60000}, {'h', 3600000}, {'d', 86400000}};
    char num[24], *end = NULL;
    int64_t at;

    if (s.len >= 20 && cd_time_parse(s, &at) == CD_OK)
        return (*expires_at = at, cd_auth_expiry_check(at, now));
    if (s.len < 2 || s.len > sizeof num || s.p[0] < '0' || s.p[0] > '9')
        goto bad;
    memcpy(num, s.p, s.len - 1);
    num[s.len - 1] = '\0';
    errno = 0;
    long long n = strtoll(num, &end, 10);
    if (errno != 0 || *end != '\0' || n <= 0)
        goto bad;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (s.p[s.len - 1] != units[i].unit)
            continue;
        if (n > CD_AUTH_MAX_LIFETIME_MS / units[i].ms)
            return cd_err_set(CD_ERR_INVALID, "a token may live at most ten years (3660 days)");
        at = now + (int64_t)n * units[i].ms;
        return (*expires_at = at, cd_auth_expiry_check(at, now));
    }
bad:
    return cd_err_set(CD_ERR_INVALID, "an expiry is a count with a unit (90d, 12h, 30m, 3600s) "
                                      "or an RFC 3339 time");
}

struct create_ctx {
    char id[CD_ID_MAX];
    uint8_t hash[CD_CRYPTO_HASH_LEN];
    enum cd_role role;
    struct cd_str name;
    int64_t expires_at;
    const char *actor_token, *request_id;
};

static enum cd_err create_fn(struct cd_tx *tx, void *ctx)
{
    struct create_ctx *cc = ctx;
    struct cd_audit_event ev = {0};
    enum cd_err err;
    struct cd_val p[] = {CD_VCSTR(cc->id), CD_VBLOB(cc->hash, sizeof cc->hash),
                         CD_VCSTR(cd_role_name(cc->role)), CD_VTEXT(cc->name),
                         CD_VINT(cd_now_ms()),
                         cc->expires_at ? CD_VINT(cc->expires_at) : CD_VNULL};

    if ((err = cd_tx_exec(tx, "INSERT INTO tokens(id, hash, role, name, created_at, expires_at)"
                              " VALUES($1,$2,$3,$4,$5,$6)",
                          p, 6, NULL, NULL, NULL)) != CD_OK)
        return err;
    ev.action = "token.create";
    ev.outcome = "ok";
    ev.actor_token = cc->actor_token;
    ev.request_id = cc->request_id;
    ev.resource_id = cc->id;
    return cd_audit_append(tx, &ev, NULL);
}

enum cd_err cd_auth_token_create(struct cd_store *s, enum cd_role role, struct cd_str name,
                                 int64_t expires_at, const char *actor_token,
                                 const char *request_id, char token_out[CD_TOKEN_LEN + 1],
                                 char id_out[CD_ID_MAX])
{
    struct create_ctx cc = {.role = role, .name = name, .expires_at = expires_at,
                            .actor_token = actor_token, .request_id = request_id};
    char token[CD_TOKEN_LEN + 1];
    enum cd_err err;

    if (name.len == 0 || name.len > 100 || !cd_utf8_valid(name.p, name.len))
        return cd_err_set(CD_ERR_INVALID, "a token name has 1 to 100 characters of text");
    for (size_t i = 0; i < name.len; i++)
        if ((unsigned char)name.p[i] < 0x20)
            return cd_err_set(CD_ERR_INVALID, "a token name may not contain control characters");
    if (expires_at && (err = cd_auth_expiry_check(expires_at, cd_now_ms())) != CD_OK)
        return err;
    _Static_assert(CD_TOKEN_LEN == CD_CRYPTO_SECRET_LEN, "a token is a bearer secret");
    if ((err = cd_crypto_secret_new("cnd_", token, cc.hash)) != CD_OK)
        goto out;
    cd_id_new("tok", cc.id);
    if ((err = cd_store_write(s, create_fn, &cc)) != CD_OK)
        goto out;
    memcpy(token_out, token, sizeof token);
    snprintf(id_out, CD_ID_MAX, "%s", cc.id);
out:
    cd_crypto_wipe(token, sizeof token);
    return err;
}

static enum cd_err set_time_or_null(json_t *o, const char *key, struct cd_val v)
{
    char ts[CD_TIME_STRLEN];

    if (v.type != CD_VAL_INT)
        return cd_json_set_new(o, key, json_null());
    cd_time_format(v.i, ts);
    return cd_json_set_new(o, key, json_string(ts));
}

struct list_ctx {
    json_t *arr;
    int64_t now;
};

static enum cd_err list_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct list_ctx *l = ctx;
    json_t *o = json_object();
    const char *status = cols[4].type == CD_VAL_INT                           ? "revoked"
                         : cols[5].type == CD_VAL_INT && cols[5].i <= l->now ? "expired"
                                                                             : "active";

    if (o == NULL || json_array_append_new(l->arr, o) != 0)
        return CD_ERR_NOMEM;
    if (cd_json_set_strn(o, "id", cols[0].p, cols[0].len) != CD_OK ||
        cd_json_set_strn(o, "role", cols[1].p, cols[1].len) != CD_OK ||
        cd_json_set_strn(o, "name", cols[2].p, cols[2].len) != CD_OK ||
        set_time_or_null(o, "created_at", cols[3]) != CD_OK ||
        set_time_or_null(o, "expires_at", cols[5]) != CD_OK ||
        set_time_or_null(o, "revoked_at", cols[4]) != CD_OK ||
        cd_json_set_new(o, "status", json_string(status)) != CD_OK)
        return CD_ERR_NOMEM;
    return CD_OK;
}

static enum cd_err list_fn(struct cd_tx *tx, void *ctx)
{
    return cd_tx_exec(tx, "SELECT id, role, name, created_at, revoked_at, expires_at FROM tokens"
                          " ORDER BY created_at, id",
                      NULL, 0, list_row, ctx, NULL);
}

enum cd_err cd_auth_token_list(struct cd_store *s, json_t **out)
{
    json_t *arr = json_array();
    struct list_ctx l = {arr, cd_now_ms()};
    enum cd_err err;

    if (arr == NULL)
        return CD_ERR_NOMEM;
    if ((err = cd_store_read(s, list_fn, &l)) != CD_OK) {
        json_decref(arr);
        return err;
    }
    *out = arr;
    return CD_OK;
}

struct revoke_ctx {
    char id[CD_ID_MAX];
    const char *actor_token, *request_id;
};

static enum cd_err revoke_fn(struct cd_tx *tx, void *ctx)
{
    struct revoke_ctx *rc = ctx;
    struct cd_audit_event ev = {0};
    int64_t changes = 0, exists = 0;
    enum cd_err err;
    struct cd_val p[] = {CD_VCSTR(rc->id), CD_VINT(cd_now_ms())};

    if ((err = cd_tx_exec(tx, "UPDATE tokens SET revoked_at = $2 WHERE id = $1"
                              " AND revoked_at IS NULL",
                          p, 2, NULL, NULL, &changes)) != CD_OK)
        return err;
    if (changes == 0) {
        err = cd_tx_int(tx, "SELECT count(*) FROM tokens WHERE id = $1", p, 1, &exists);
        if (err != CD_OK)
            return err;
        return exists ? cd_err_set(CD_ERR_CONFLICT, "the token is already revoked")
                      : cd_err_set(CD_ERR_NOT_FOUND, "no token with this id");
    }
    /* Other processes' token caches read this counter to learn of the revocation. */
    if ((err = cd_tx_exec(tx, "UPDATE auth_epoch SET revocations = revocations + 1"
                              " WHERE id = 1",
                          NULL, 0, NULL, NULL, NULL)) != CD_OK)
        return err;
    /* Other servers on the database empty their caches at once (cd_http_tokens_changed); the
     * counter above is the fallback that holds without them. */
    if ((err = cd_tx_notify(tx, CD_AUTH_TOPIC_REVOKED)) != CD_OK)
        return err;
    ev.action = "token.revoke";
    ev.outcome = "ok";
    ev.actor_token = rc->actor_token;
    ev.request_id = rc->request_id;
    ev.resource_id = rc->id;
    return cd_audit_append(tx, &ev, NULL);
}

enum cd_err cd_auth_token_revoke(struct cd_store *s, struct cd_str id, const char *actor_token,
                                 const char *request_id)
{
    struct revoke_ctx rc = {"", actor_token, request_id};

    if (!cd_id_valid(id, "tok"))
        return cd_err_set(CD_ERR_NOT_FOUND, "no token with this id");
    memcpy(rc.id, id.p, id.len);
    rc.id[id.len] = '\0';
    return cd_store_write(s, revoke_fn, &rc);
}

struct verify_ctx {
    const uint8_t *hash;
    struct cd_principal *p;
    bool found, revoked, bad_role;
};

static enum cd_err verify_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct verify_ctx *v = ctx;

    v->found = true;
    v->revoked = cols[3].type != CD_VAL_NULL;
    v->p->expires_at = cols[4].type == CD_VAL_INT ? cols[4].i : 0;
    snprintf(v->p->token_id, sizeof v->p->token_id, "%.*s", (int)cols[0].len,
             (const char *)cols[0].p);
    snprintf(v->p->name, sizeof v->p->name, "%.*s", (int)cols[2].len, (const char *)cols[2].p);
    v->bad_role = !cd_role_parse((struct cd_str){cols[1].p, cols[1].len}, &v->p->role);
    return CD_OK;
}

static enum cd_err verify_fn(struct cd_tx *tx, void *ctx)
{
    struct verify_ctx *v = ctx;
    struct cd_val p[] = {CD_VBLOB(v->hash, CD_CRYPTO_HASH_LEN)};

    return cd_tx_exec(tx, "SELECT id, role, name, revoked_at, expires_at FROM tokens"
                          " WHERE hash = $1",
                      p, 1, verify_row, v, NULL);
}

enum cd_err cd_auth_verify(struct cd_store *s, struct cd_str token, struct cd_principal *out)
{
    uint8_t hash[CD_CRYPTO_HASH_LEN];
    struct cd_principal p;
    struct verify_ctx v = {hash, &p, false, false, false};
    enum cd_err err;

    if (token.len != CD_TOKEN_LEN || memcmp(token.p, "cnd_", 4) != 0)
        return cd_err_set(CD_ERR_UNAUTHENTICATED, "the bearer token is malformed");
    /* Looking up by hash: timing reveals nothing about the secret itself. */
    if ((err = cd_crypto_sha256(token.p, token.len, hash)) != CD_OK)
        return err;
    if ((err = cd_store_read(s, verify_fn, &v)) != CD_OK)
        return err;
    if (!v.found || v.revoked || v.bad_role)
        return cd_err_set(CD_ERR_UNAUTHENTICATED, v.revoked ? "the bearer token was revoked"
                                                            : "the bearer token is not valid");
    if (p.expires_at && p.expires_at <= cd_now_ms()) {
        char ts[CD_TIME_STRLEN];
        cd_time_format(p.expires_at, ts);
        return cd_err_set(CD_ERR_UNAUTHENTICATED, "the bearer token expired at %s; ask an "
                                                  "administrator for a new one", ts);
    }
    *out = p;
    return CD_OK;
}

static enum cd_err epoch_fn(struct cd_tx *tx, void *ctx)
{
    return cd_tx_int(tx, "SELECT revocations FROM auth_epoch WHERE id = 1", NULL, 0, ctx);
}

enum cd_err cd__auth_revocations(struct cd_store *s, int64_t *out)
{
    return cd_store_read(s, epoch_fn, out);
}
