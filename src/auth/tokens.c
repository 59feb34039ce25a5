/* API tokens: 256-bit random secrets stored as SHA-256 hashes. */
#include <stdio.h>
#include <string.h>
#include "audit/audit.h"
#include "auth.h"
#include "crypto/crypto.h"

struct create_ctx {
    char id[CD_ID_MAX];
    uint8_t hash[CD_CRYPTO_HASH_LEN];
    enum cd_role role;
    struct cd_str name;
    const char *actor_token, *request_id;
};

static enum cd_err create_fn(struct cd_tx *tx, void *ctx)
{
    struct create_ctx *cc = ctx;
    struct cd_audit_event ev = {0};
    enum cd_err err;
    struct cd_val p[] = {CD_VCSTR(cc->id), CD_VBLOB(cc->hash, sizeof cc->hash),
                         CD_VCSTR(cd_role_name(cc->role)), CD_VTEXT(cc->name),
                         CD_VINT(cd_now_ms())};

    if ((err = cd_tx_exec(tx, "INSERT INTO tokens(id, hash, role, name, created_at)"
                              " VALUES($1,$2,$3,$4,$5)",
                          p, 5, NULL, NULL, NULL)) != CD_OK)
        return err;
    ev.action = "token.create";
    ev.outcome = "ok";
    ev.actor_token = cc->actor_token;
    ev.request_id = cc->request_id;
    ev.resource_id = cc->id;
    return cd_audit_append(tx, &ev, NULL);
}

enum cd_err cd_auth_token_create(struct cd_store *s, enum cd_role role, struct cd_str name,
                                 const char *actor_token, const char *request_id,
                                 char token_out[CD_TOKEN_LEN + 1], char id_out[CD_ID_MAX])
{
    struct create_ctx cc = {.role = role, .name = name, .actor_token = actor_token,
                            .request_id = request_id};
    uint8_t secret[32];
    char token[CD_TOKEN_LEN + 1];
    enum cd_err err;

    if (name.len == 0 || name.len > 100 || !cd_utf8_valid(name.p, name.len))
        return cd_err_set(CD_ERR_INVALID, "a token name has 1 to 100 characters of text");
    for (size_t i = 0; i < name.len; i++)
        if ((unsigned char)name.p[i] < 0x20)
            return cd_err_set(CD_ERR_INVALID, "a token name may not contain control characters");
    cd_random_bytes(secret, sizeof secret);
    memcpy(token, "cnd_", 4);
    cd_b64url_encode(secret, sizeof secret, token + 4);
    cd_crypto_wipe(secret, sizeof secret);
    if ((err = cd_crypto_sha256(token, CD_TOKEN_LEN, cc.hash)) != CD_OK)
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

static enum cd_err list_row(void *ctx, const struct cd_val *cols, size_t n)
{
    json_t *arr = ctx, *o = json_object();
    char ts[CD_TIME_STRLEN];

    if (o == NULL || json_array_append_new(arr, o) != 0)
        return CD_ERR_NOMEM;
    cd_time_format(cols[3].i, ts);
    if (cd_json_set_strn(o, "id", cols[0].p, cols[0].len) != CD_OK ||
        cd_json_set_strn(o, "role", cols[1].p, cols[1].len) != CD_OK ||
        cd_json_set_strn(o, "name", cols[2].p, cols[2].len) != CD_OK ||
        cd_json_set_new(o, "created_at", json_string(ts)) != CD_OK)
        return CD_ERR_NOMEM;
    if (cols[4].type == CD_VAL_INT) {
        cd_time_format(cols[4].i, ts);
        return cd_json_set_new(o, "revoked_at", json_string(ts));
    }
    return cd_json_set_new(o, "revoked_at", json_null());
}

static enum cd_err list_fn(struct cd_tx *tx, void *ctx)
{
    return cd_tx_exec(tx, "SELECT id, role, name, created_at, revoked_at FROM tokens"
                          " ORDER BY created_at, id",
                      NULL, 0, list_row, ctx, NULL);
}

enum cd_err cd_auth_token_list(struct cd_store *s, json_t **out)
{
    json_t *arr = json_array();
    enum cd_err err;

    if (arr == NULL)
        return CD_ERR_NOMEM;
    if ((err = cd_store_read(s, list_fn, arr)) != CD_OK) {
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

    return cd_tx_exec(tx, "SELECT id, role, name, revoked_at FROM tokens WHERE hash = $1", p, 1,
                      verify_row, v, NULL);
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
    *out = p;
    return CD_OK;
}
