/* Core set-up and the helpers customers and interactions share: idempotency records, merge
 * resolution, audit events for writes and reads. */
#include <stdio.h>
#include <string.h>
#include "core_int.h"

enum cd_err cd_core_open(struct cd_store *store, const uint8_t master[CD_CRYPTO_KEY_LEN],
                         struct cd_core **out)
{
    struct cd_core *c = cd_calloc(1, sizeof *c);

    if (c == NULL)
        return CD_ERR_NOMEM;
    if (cd__owners_new(&c->owners) != CD_OK) {
        cd_free(c);
        return CD_ERR_NOMEM;
    }
    enum cd_err err = cd__core_spoof_open(c);
    if (err != CD_OK) {
        cd__owners_free(c->owners);
        cd_free(c);
        return err;
    }
    c->store = store;
    memcpy(c->master, master, CD_CRYPTO_KEY_LEN);
    /* A separate key for blind indexes: knowing an index key never helps unwrap data keys. */
    cd_crypto_derive_key(master, "cdbidx01", 1, c->index_key);
    c->future_skew_ms = CD_CORE_FUTURE_SKEW_DEFAULT_MS;
    if ((err = cd__core_upgrade(c)) != CD_OK) {
        cd_core_close(c);
        return err;
    }
    *out = c;
    return CD_OK;
}

void cd_core_set_hooks(struct cd_core *c, const struct cd_core_hooks *hooks)
{
    c->hooks = *hooks;
}

void cd_core_set_future_skew(struct cd_core *c, int64_t ms)
{
    c->future_skew_ms = ms;
}

void cd_core_close(struct cd_core *c)
{
    if (c == NULL)
        return;
    cd__owners_free(c->owners);
    cd__core_spoof_close(c);
    cd_crypto_wipe(c->master, sizeof c->master);
    cd_crypto_wipe(c->index_key, sizeof c->index_key);
    cd_free(c);
}

struct cd_store *cd_core_store(struct cd_core *c)
{
    return c->store;
}

void cd__core_event(struct cd_audit_event *ev, const struct cd_actor *a, const char *action,
                    const char *customer_id, const char *resource_id, unsigned fields)
{
    memset(ev, 0, sizeof *ev);
    ev->action = action;
    ev->outcome = "ok";
    ev->actor_token = a->token_id;
    ev->actor_role = a->role;
    ev->actor_name = a->name;
    ev->purpose = a->purpose;
    ev->request_id = a->request_id;
    ev->customer_id = customer_id;
    ev->resource_id = resource_id;
    ev->categories = fields ? cd_policy_categories(fields) : NULL;
}

enum cd_err cd__core_audit_read(struct cd_core *c, const struct cd_actor *a, const char *action,
                                const char *customer_id, const char *resource_id,
                                unsigned fields)
{
    struct cd_audit_event ev;

    cd__core_event(&ev, a, action, customer_id, resource_id, fields);
    return cd_audit_record(c->store, &ev);
}

enum cd_err cd__core_read_allowed(struct cd_core *c, const struct cd_actor *a,
                                  const char *customer_id, bool restricted, const char *action)
{
    struct cd_audit_event ev;
    enum cd_err err = CD_OK;
    char detail[300];

    if (restricted && !a->restricted_ok) {
        err = cd_err_set(CD_ERR_PURPOSE_DENIED,
                         "processing of this customer's data is restricted (GDPR Art. 18); only "
                         "the purposes legal_obligation and security may read it");
    } else if (a->needs_consent) {
        if (c->hooks.read_consent == NULL)
            err = cd_err_set(CD_ERR_PURPOSE_DENIED,
                             "the purpose '%s' needs the customer's consent, and no consent "
                             "engine is configured",
                             a->purpose ? a->purpose : "?");
        else if ((err = c->hooks.read_consent(c->hooks.ctx, customer_id, a->purpose)) != CD_OK &&
                 err != CD_ERR_NOMEM && err != CD_ERR_STORE)
            err = cd_err_set(CD_ERR_PURPOSE_DENIED, "%s", cd_err_detail());
    }
    if (err != CD_ERR_PURPOSE_DENIED)
        return err;
    /* The refusal is evidence too: record it, then report it. */
    snprintf(detail, sizeof detail, "%s", cd_err_detail());
    cd__core_event(&ev, a, action, customer_id, NULL, 0);
    ev.outcome = "denied";
    ev.reason = cd_err_name(CD_ERR_PURPOSE_DENIED);
    enum cd_err aerr = cd_audit_record(c->store, &ev);
    if (aerr != CD_OK)
        return aerr;
    return cd_err_set(CD_ERR_PURPOSE_DENIED, "%s", detail);
}

enum cd_err cd__core_page(json_t *items, bool more, int64_t ms, const char *id, json_t **out)
{
    json_t *res = json_object(), *next = NULL;
    enum cd_err err = CD_ERR_NOMEM;

    if (res == NULL || cd_json_set_new(res, "items", items) != CD_OK) {
        if (res == NULL)
            json_decref(items);
        goto out;
    }
    if (more && (err = cd__core_cursor_encode(ms, id, &next)) != CD_OK)
        goto out;
    if (cd_json_set_new(res, "next_cursor", more ? next : json_null()) != CD_OK) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    *out = res;
    return CD_OK;
out:
    json_decref(res);
    return err;
}

void cd__core_col_text(struct cd_val v, char *out, size_t n)
{
    size_t len = 0;

    if (v.type == CD_VAL_TEXT || v.type == CD_VAL_BLOB) {
        len = v.len < n - 1 ? v.len : n - 1;
        memcpy(out, v.p, len);
    }
    out[len] = '\0';
}

static enum cd_err text_row(void *ctx, const struct cd_val *cols, size_t n)
{
    cd__core_col_text(cols[0], ctx, CD_ID_MAX);
    return CD_OK;
}

struct state_row {
    bool found;
    char merged_into[CD_ID_MAX];
    bool erased;
};

static enum cd_err state_row_fn(void *ctx, const struct cd_val *cols, size_t n)
{
    struct state_row *r = ctx;

    r->found = true;
    cd__core_col_text(cols[0], r->merged_into, CD_ID_MAX);
    r->erased = cols[1].type != CD_VAL_NULL;
    return CD_OK;
}

static enum cd_err customer_state(struct cd_tx *tx, const char *id, struct state_row *r)
{
    struct cd_val p[] = {CD_VCSTR(id)};

    memset(r, 0, sizeof *r);
    return cd_tx_exec(tx, "SELECT merged_into, erased_at FROM customers WHERE id = $1", p, 1,
                      state_row_fn, r, NULL);
}

enum cd_err cd_core_customer_resolve(struct cd_tx *tx, struct cd_str id,
                                     char resolved[CD_ID_MAX], bool *merged,
                                     enum cd_core_customer_state *state)
{
    struct state_row r;
    char cur[CD_ID_MAX];
    enum cd_err err;

    resolved[0] = '\0';
    *merged = false;
    *state = CD_CORE_CUSTOMER_UNKNOWN;
    if (!cd_id_valid(id, "cus"))
        return CD_OK;
    memcpy(cur, id.p, id.len);
    cur[id.len] = '\0';
    if ((err = customer_state(tx, cur, &r)) != CD_OK || !r.found)
        return err;
    /* merged_into always names the final survivor (see cd__core_resolve): one hop. */
    if (r.merged_into[0]) {
        *merged = true;
        snprintf(cur, sizeof cur, "%s", r.merged_into);
        if ((err = customer_state(tx, cur, &r)) != CD_OK)
            return err;
        if (!r.found)
            return cd_err_set(CD_ERR_INTERNAL, "a merge names a survivor that does not exist");
    }
    snprintf(resolved, CD_ID_MAX, "%s", cur);
    *state = r.erased ? CD_CORE_CUSTOMER_ERASED : CD_CORE_CUSTOMER_LIVE;
    return CD_OK;
}

static enum cd_err merged_id_row(void *ctx, const struct cd_val *cols, size_t n)
{
    (void)n;
    json_t *s = json_stringn(cols[0].p, cols[0].len);
    return s && json_array_append_new(ctx, s) == 0 ? CD_OK : CD_ERR_NOMEM;
}

enum cd_err cd_core_customer_merged_ids(struct cd_tx *tx, struct cd_str survivor, json_t **ids)
{
    json_t *a = json_array();
    struct cd_val p[] = {CD_VTEXT(survivor)};
    enum cd_err err;

    if (a == NULL)
        return CD_ERR_NOMEM;
    /* The merges table keeps each merge as it happened (A into B, then B into C), so the
     * customers behind C are found by following it back; merges are few. */
    if ((err = cd_tx_exec(tx,
                          "WITH RECURSIVE behind(id) AS ("
                          " SELECT merged_id FROM merges WHERE survivor_id = $1"
                          " UNION SELECT m.merged_id FROM merges m JOIN behind b"
                          " ON m.survivor_id = b.id)"
                          " SELECT id FROM behind ORDER BY id",
                          p, 1, merged_id_row, a, NULL)) != CD_OK) {
        json_decref(a);
        return err;
    }
    *ids = a;
    return CD_OK;
}

struct idem_row {
    bool found;
    uint8_t hash[32];
    char resource_id[CD_ID_MAX];
};

static enum cd_err idem_row_fn(void *ctx, const struct cd_val *cols, size_t n)
{
    struct idem_row *r = ctx;

    r->found = true;
    if (cols[0].type == CD_VAL_BLOB && cols[0].len == 32)
        memcpy(r->hash, cols[0].p, 32);
    cd__core_col_text(cols[1], r->resource_id, sizeof r->resource_id);
    return CD_OK;
}

void cd__core_idem_hash(const struct cd_core *c, const struct cd_idem *idem,
                        uint8_t key_hash[CD_CRYPTO_HASH_LEN])
{
    if (idem)
        cd_crypto_blind_index(c->index_key, CD_STR("idempotency-key"), idem->key, key_hash);
}

enum cd_err cd__core_idem_check(struct cd_tx *tx, const struct cd_idem *idem,
                                const uint8_t key_hash[CD_CRYPTO_HASH_LEN],
                                char resource_id[CD_ID_MAX])
{
    struct idem_row r = {0};
    enum cd_err err;

    resource_id[0] = '\0';
    if (idem == NULL)
        return CD_OK;
    struct cd_val p[] = {CD_VCSTR(idem->scope), CD_VBLOB(key_hash, CD_CRYPTO_HASH_LEN)};
    if ((err = cd_tx_exec(tx, "SELECT request_hash, resource_id FROM idempotency"
                              " WHERE scope = $1 AND key_hash = $2",
                          p, 2, idem_row_fn, &r, NULL)) != CD_OK)
        return err;
    if (!r.found)
        return CD_OK;
    if (!cd_ct_eq(r.hash, idem->request_hash, 32))
        return cd_err_set(CD_ERR_IDEMPOTENCY,
                          "this Idempotency-Key was already used with a different request");
    memcpy(resource_id, r.resource_id, CD_ID_MAX);
    return CD_OK;
}

enum cd_err cd__core_idem_record(struct cd_tx *tx, const struct cd_idem *idem,
                                 const uint8_t key_hash[CD_CRYPTO_HASH_LEN],
                                 const char *resource_id)
{
    if (idem == NULL)
        return CD_OK;
    struct cd_val p[] = {CD_VCSTR(idem->scope), CD_VBLOB(key_hash, CD_CRYPTO_HASH_LEN),
                         CD_VBLOB(idem->request_hash, 32), CD_VCSTR(resource_id),
                         CD_VINT(cd_now_ms())};
    return cd_tx_exec(tx, "INSERT INTO idempotency(scope, key_hash, request_hash, resource_id,"
                          " created_at) VALUES($1,$2,$3,$4,$5)",
                      p, 5, NULL, NULL, NULL);
}

enum cd_err cd__core_resolve(struct cd_tx *tx, struct cd_str id, char out[CD_ID_MAX], bool *exists)
{
    char cur[CD_ID_MAX], next[CD_ID_MAX];
    enum cd_err err;

    *exists = false;
    if (!cd_id_valid(id, "cus"))
        return CD_OK;
    memcpy(cur, id.p, id.len);
    cur[id.len] = '\0';
    /* Merges form chains only through the merges table; merged_into always names the final
     * survivor (a merge re-points older pointers), so one hop suffices. */
    next[0] = '\x01';
    struct cd_val p[] = {CD_VCSTR(cur)};
    if ((err = cd_tx_exec(tx, "SELECT coalesce(merged_into, '') FROM customers WHERE id = $1",
                          p, 1, text_row, next, NULL)) != CD_OK)
        return err;
    if (next[0] == '\x01')
        return CD_OK;
    *exists = true;
    snprintf(out, CD_ID_MAX, "%s", next[0] ? next : cur);
    return CD_OK;
}

/* ---- for other modules ---- */

struct facts_row {
    char *customer_id, *direction;
    int64_t *occurred_at;
    bool found;
};

static enum cd_err facts_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct facts_row *f = ctx;

    f->found = true;
    cd__core_col_text(cols[0], f->customer_id, CD_ID_MAX);
    cd__core_col_text(cols[1], f->direction, 16);
    *f->occurred_at = cols[2].i;
    return CD_OK;
}

enum cd_err cd_core_interaction_facts(struct cd_tx *tx, struct cd_str id,
                                      char customer_id[CD_ID_MAX], char direction[16],
                                      int64_t *occurred_at)
{
    struct facts_row f = {customer_id, direction, occurred_at, false};
    enum cd_err err;

    if (!cd_id_valid(id, "int"))
        return cd_err_set(CD_ERR_NOT_FOUND, "no interaction with this id");
    struct cd_val p[] = {CD_VTEXT(id)};
    if ((err = cd_tx_exec(tx, "SELECT customer_id, direction, occurred_at FROM interactions"
                              " WHERE id = $1",
                          p, 1, facts_row, &f, NULL)) != CD_OK)
        return err;
    return f.found ? CD_OK : cd_err_set(CD_ERR_NOT_FOUND, "no interaction with this id");
}

enum cd_err cd_core_idem_check(struct cd_core *c, struct cd_tx *tx, const struct cd_idem *idem,
                               char resource_id[CD_ID_MAX])
{
    uint8_t h[CD_CRYPTO_HASH_LEN];

    resource_id[0] = '\0';
    if (idem == NULL)
        return CD_OK;
    cd__core_idem_hash(c, idem, h);
    return cd__core_idem_check(tx, idem, h, resource_id);
}

enum cd_err cd_core_idem_record(struct cd_core *c, struct cd_tx *tx, const struct cd_idem *idem,
                                const char *resource_id)
{
    uint8_t h[CD_CRYPTO_HASH_LEN];

    if (idem == NULL)
        return CD_OK;
    cd__core_idem_hash(c, idem, h);
    return cd__core_idem_record(tx, idem, h, resource_id);
}
