/* Legal holds: placed on a customer with a reason and a legal basis, released with a reason,
 * each change a ledger event in the transaction that makes it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "audit/audit.h"
#include "retention_int.h"

#define REASON_MAX 1000 /* bytes */

static const char *const bases[] = {"legal_claims", "legal_obligation",
                                    "regulatory_investigation", "public_interest", NULL};

bool cd_retention_hold_basis_valid(struct cd_str basis)
{
    for (size_t i = 0; bases[i]; i++)
        if (cd_str_eq_c(basis, bases[i]))
            return true;
    return false;
}

/* ---- rows ---- */

#define HOLD_COLS                                                                               \
    "id, customer_id, reason, legal_basis, created_at, created_by, expires_at, released_at,"   \
    " released_by, release_reason"

/* One legal_holds row (HOLD_COLS) as the API shows it, with its status at now. */
static enum cd_err hold_json(const struct cd_val *c, int64_t now, json_t **out)
{
    json_t *o = json_object();
    const char *status = c[7].type != CD_VAL_NULL                    ? "released"
                         : c[6].type != CD_VAL_NULL && c[6].i <= now ? "expired"
                                                                     : "active";
    enum cd_err err = o ? CD_OK : CD_ERR_NOMEM;

    if (err == CD_OK &&
        ((err = cd_val_json_text(o, "id", c[0])) != CD_OK ||
         (err = cd_val_json_text(o, "customer_id", c[1])) != CD_OK ||
         (err = cd_val_json_text(o, "reason", c[2])) != CD_OK ||
         (err = cd_val_json_text(o, "legal_basis", c[3])) != CD_OK ||
         (err = cd_json_set_new(o, "status", json_string(status))) != CD_OK ||
         (err = cd_val_json_time(o, "created_at", c[4])) != CD_OK ||
         (err = cd_val_json_text(o, "created_by", c[5])) != CD_OK ||
         (err = cd_val_json_time(o, "expires_at", c[6])) != CD_OK ||
         (err = cd_val_json_time(o, "released_at", c[7])) != CD_OK ||
         (err = cd_val_json_text(o, "released_by", c[8])) != CD_OK ||
         (err = cd_val_json_text(o, "release_reason", c[9])) != CD_OK)) {
        json_decref(o);
        return err;
    }
    if (err == CD_OK)
        *out = o;
    return err;
}

struct collect {
    json_t *items;
    int64_t now;
    struct cd_str status; /* "" or "all": every hold */
};

static enum cd_err collect_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct collect *c = ctx;
    json_t *h = NULL;
    enum cd_err err;

    (void)n;
    if ((err = hold_json(cols, c->now, &h)) != CD_OK)
        return err;
    if (c->status.len && !cd_str_eq_c(c->status, "all") &&
        !cd_str_eq_c(c->status, json_string_value(json_object_get(h, "status")))) {
        json_decref(h);
        return CD_OK;
    }
    return json_array_append_new(c->items, h) == 0 ? CD_OK : CD_ERR_NOMEM;
}

/* Appends the holds of customer_id and of every customer merged into it (newest first within
 * each) to c->items. */
static enum cd_err holds_of(struct cd_tx *tx, struct cd_str customer_id, struct collect *c)
{
    json_t *ids = NULL;
    enum cd_err err;
    size_t i;
    json_t *id;

    if ((err = cd_core_customer_merged_ids(tx, customer_id, &ids)) != CD_OK)
        return err;
    struct cd_val p[] = {CD_VTEXT(customer_id)};
    err = cd_tx_exec(tx,
                     "SELECT " HOLD_COLS " FROM legal_holds WHERE customer_id = $1"
                     " ORDER BY created_at DESC, id DESC",
                     p, 1, collect_row, c, NULL);
    json_array_foreach(ids, i, id) {
        if (err != CD_OK)
            break;
        p[0] = (struct cd_val){CD_VAL_TEXT, 0, json_string_value(id), json_string_length(id)};
        err = cd_tx_exec(tx,
                         "SELECT " HOLD_COLS " FROM legal_holds WHERE customer_id = $1"
                         " ORDER BY created_at DESC, id DESC",
                         p, 1, collect_row, c, NULL);
    }
    json_decref(ids);
    return err;
}

enum cd_err cd_retention_holds_active(struct cd_tx *tx, struct cd_str customer_id,
                                      json_t **holds)
{
    struct collect c = {json_array(), cd_now_ms(), CD_STR("active")};
    enum cd_err err;

    if (c.items == NULL)
        return CD_ERR_NOMEM;
    if ((err = holds_of(tx, customer_id, &c)) != CD_OK) {
        json_decref(c.items);
        return err;
    }
    /* The members the callers need; the release fields are null for a hold in force. */
    size_t i;
    json_t *h;
    json_array_foreach(c.items, i, h) {
        json_object_del(h, "released_at");
        json_object_del(h, "released_by");
        json_object_del(h, "release_reason");
        json_object_del(h, "status");
    }
    if (json_array_size(c.items) == 0) {
        json_decref(c.items);
        c.items = NULL;
    }
    *holds = c.items;
    return CD_OK;
}

/* ---- listing ---- */

struct list_ctx {
    struct cd_str customer_id;
    struct collect c;
};

static enum cd_err list_fn(struct cd_tx *tx, void *ctx)
{
    struct list_ctx *l = ctx;
    char resolved[CD_ID_MAX];
    bool merged;
    enum cd_core_customer_state st;
    enum cd_err err;

    if ((err = cd_core_customer_resolve(tx, l->customer_id, resolved, &merged, &st)) != CD_OK)
        return err;
    if (st == CD_CORE_CUSTOMER_UNKNOWN)
        return cd_err_set(CD_ERR_NOT_FOUND, "no customer with this id");
    return holds_of(tx, cd_str_c(resolved), &l->c);
}

enum cd_err cd_retention_holds_list(struct cd_store *s, struct cd_str customer_id,
                                    struct cd_str status, json_t **out)
{
    struct list_ctx l = {customer_id, {NULL, cd_now_ms(), status}};
    enum cd_err err;

    if (status.len && !cd_str_eq_c(status, "all") && !cd_str_eq_c(status, "active") &&
        !cd_str_eq_c(status, "released") && !cd_str_eq_c(status, "expired"))
        return cd_err_set(CD_ERR_INVALID, "'status' must be active, released, expired or all");
    if ((l.c.items = json_array()) == NULL)
        return CD_ERR_NOMEM;
    if ((err = cd_store_read(s, list_fn, &l)) != CD_OK) {
        json_decref(l.c.items);
        return err;
    }
    *out = json_pack("{s:s%,s:o}", "customer_id", customer_id.p, customer_id.len, "items",
                     l.c.items);
    return *out ? CD_OK : CD_ERR_NOMEM;
}

/* ---- changes ---- */

static enum cd_err check_reason(const json_t *body, struct cd_str *reason)
{
    enum cd_err err = cd_json_str(body, "reason", true, reason);

    if (err != CD_OK)
        return err;
    if (reason->len == 0 || reason->len > REASON_MAX)
        return cd_err_set(CD_ERR_INVALID, "'reason' must be 1 to %d bytes", REASON_MAX);
    return CD_OK;
}

struct change {
    const struct cd_actor *a;
    char customer_id[CD_ID_MAX];
    char hold_id[CD_ID_MAX];
    struct cd_str reason, basis;
    int64_t expires_at, now;
};

static enum cd_err ledger(struct cd_tx *tx, const struct change *c, const char *action,
                          const char *customer_id)
{
    const struct cd_actor *a = c->a;
    struct cd_audit_event ev = {.action = action,
                                .outcome = "ok",
                                .actor_token = a->token_id,
                                .actor_role = a->role,
                                .actor_name = a->name,
                                .purpose = a->purpose,
                                .request_id = a->request_id,
                                .customer_id = customer_id,
                                .resource_id = c->hold_id};
    return cd_audit_append(tx, &ev, NULL);
}

static enum cd_err create_fn(struct cd_tx *tx, void *ctx)
{
    struct change *c = ctx;
    char resolved[CD_ID_MAX];
    bool merged;
    enum cd_core_customer_state st;
    enum cd_err err;

    if ((err = cd_core_customer_resolve(tx, cd_str_c(c->customer_id), resolved, &merged,
                                        &st)) != CD_OK)
        return err;
    if (st == CD_CORE_CUSTOMER_UNKNOWN)
        return cd_err_set(CD_ERR_NOT_FOUND, "no customer with this id");
    if (merged)
        return cd_err_set(CD_ERR_CONFLICT, "customer %s was merged into %s; place the hold on "
                                           "the survivor",
                          c->customer_id, resolved);
    struct cd_val p[] = {CD_VCSTR(c->hold_id),
                         CD_VCSTR(c->customer_id),
                         CD_VTEXT(c->reason),
                         CD_VTEXT(c->basis),
                         CD_VINT(c->now),
                         CD_VCSTR(c->a->token_id),
                         c->expires_at ? CD_VINT(c->expires_at) : CD_VNULL};
    if ((err = cd_tx_exec(tx,
                          "INSERT INTO legal_holds(id, customer_id, reason, legal_basis,"
                          " created_at, created_by, expires_at) VALUES($1,$2,$3,$4,$5,$6,$7)",
                          p, 7, NULL, NULL, NULL)) != CD_OK)
        return err;
    return ledger(tx, c, "hold.create", c->customer_id);
}

static enum cd_err one_row(void *ctx, const struct cd_val *cols, size_t n)
{
    (void)n;
    return hold_json(cols, cd_now_ms(), ctx);
}

/* A change and, once made, the hold as it then is. */
struct change_out {
    struct change c;
    json_t *out;
};

static enum cd_err get_fn(struct cd_tx *tx, void *ctx)
{
    struct change_out *co = ctx;
    struct cd_val p[] = {CD_VCSTR(co->c.hold_id)};

    return cd_tx_exec(tx, "SELECT " HOLD_COLS " FROM legal_holds WHERE id = $1", p, 1, one_row,
                      &co->out, NULL);
}

static enum cd_err answer(struct cd_store *s, struct change_out *co, json_t **out)
{
    enum cd_err err = cd_store_read(s, get_fn, co);

    if (err == CD_OK && co->out == NULL)
        err = cd_err_set(CD_ERR_NOT_FOUND, "no such hold");
    if (err == CD_OK)
        *out = co->out;
    return err;
}

static enum cd_err copy_id(struct cd_str id, const char *prefix, const char *what,
                           char out[CD_ID_MAX])
{
    if (!cd_id_valid(id, prefix))
        return cd_err_set(CD_ERR_NOT_FOUND, "no %s with this id", what);
    memcpy(out, id.p, id.len);
    out[id.len] = '\0';
    return CD_OK;
}

enum cd_err cd_retention_hold_create(struct cd_store *s, const struct cd_actor *a,
                                     struct cd_str customer_id, const json_t *body,
                                     json_t **out)
{
    static const char *const allowed[] = {"reason", "legal_basis", "expires_at", NULL};
    struct change_out co = {{.a = a, .now = cd_now_ms()}, NULL};
    struct cd_str expires = CD_STR_NULL;
    enum cd_err err;

    if ((err = copy_id(customer_id, "cus", "customer", co.c.customer_id)) != CD_OK ||
        (err = cd_json_only(body, allowed)) != CD_OK ||
        (err = check_reason(body, &co.c.reason)) != CD_OK ||
        (err = cd_json_str(body, "legal_basis", true, &co.c.basis)) != CD_OK ||
        (err = cd_json_str(body, "expires_at", false, &expires)) != CD_OK)
        return err;
    if (!cd_retention_hold_basis_valid(co.c.basis))
        return cd_err_set(CD_ERR_INVALID, "'legal_basis' must be one of legal_claims, "
                                          "legal_obligation, regulatory_investigation, "
                                          "public_interest");
    if (expires.p) {
        if (cd_time_parse(expires, &co.c.expires_at) != CD_OK)
            return cd_err_set(CD_ERR_INVALID, "'expires_at' must be an RFC 3339 time");
        if (co.c.expires_at <= co.c.now)
            return cd_err_set(CD_ERR_INVALID, "'expires_at' must be in the future");
    }
    cd_id_new("hold", co.c.hold_id);
    if ((err = cd_store_write(s, create_fn, &co.c)) != CD_OK)
        return err;
    return answer(s, &co, out);
}

struct found {
    bool found;
    char customer_id[CD_ID_MAX];
    bool released;
};

static enum cd_err found_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct found *f = ctx;

    (void)n;
    f->found = true;
    snprintf(f->customer_id, sizeof f->customer_id, "%.*s", (int)cols[0].len,
             (const char *)cols[0].p);
    f->released = cols[1].type != CD_VAL_NULL;
    return CD_OK;
}

static enum cd_err release_fn(struct cd_tx *tx, void *ctx)
{
    struct change *c = ctx;
    struct found f = {0};
    char a[CD_ID_MAX], b[CD_ID_MAX];
    bool merged;
    enum cd_core_customer_state st;
    enum cd_err err;
    struct cd_val p[] = {CD_VCSTR(c->hold_id), CD_VINT(c->now), CD_VCSTR(c->a->token_id),
                         CD_VTEXT(c->reason)};

    if ((err = cd_tx_exec(tx, "SELECT customer_id, released_at FROM legal_holds WHERE id = $1",
                          p, 1, found_row, &f, NULL)) != CD_OK)
        return err;
    /* The hold belongs to the customer named, or to one merged into it. */
    if (f.found && strcmp(f.customer_id, c->customer_id) != 0) {
        if ((err = cd_core_customer_resolve(tx, cd_str_c(f.customer_id), a, &merged, &st)) !=
                CD_OK ||
            (err = cd_core_customer_resolve(tx, cd_str_c(c->customer_id), b, &merged, &st)) !=
                CD_OK)
            return err;
        f.found = a[0] && strcmp(a, b) == 0;
    }
    if (!f.found)
        return cd_err_set(CD_ERR_NOT_FOUND, "no hold with this id on this customer");
    if (f.released)
        return cd_err_set(CD_ERR_CONFLICT, "hold %s was already released", c->hold_id);
    if ((err = cd_tx_exec(tx,
                          "UPDATE legal_holds SET released_at = $2, released_by = $3,"
                          " release_reason = $4 WHERE id = $1",
                          p, 4, NULL, NULL, NULL)) != CD_OK)
        return err;
    return ledger(tx, c, "hold.release", f.customer_id);
}

enum cd_err cd_retention_hold_release(struct cd_store *s, const struct cd_actor *a,
                                      struct cd_str customer_id, struct cd_str hold_id,
                                      const json_t *body, json_t **out)
{
    static const char *const allowed[] = {"reason", NULL};
    struct change_out co = {{.a = a, .now = cd_now_ms()}, NULL};
    enum cd_err err;

    if ((err = copy_id(customer_id, "cus", "customer", co.c.customer_id)) != CD_OK ||
        (err = copy_id(hold_id, "hold", "hold", co.c.hold_id)) != CD_OK ||
        (err = cd_json_only(body, allowed)) != CD_OK ||
        (err = check_reason(body, &co.c.reason)) != CD_OK)
        return err;
    if ((err = cd_store_write(s, release_fn, &co.c)) != CD_OK)
        return err;
    return answer(s, &co, out);
}

/* ---- the customers a retention run must leave alone ---- */

static int id_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

struct held_ctx {
    struct cd__held *h;
    size_t cap;
    json_t *raw;
};

static enum cd_err held_row(void *ctx, const struct cd_val *c, size_t n)
{
    (void)n;
    json_t *s = json_stringn(c[0].p, c[0].len);
    return s && json_array_append_new(ctx, s) == 0 ? CD_OK : CD_ERR_NOMEM;
}

static enum cd_err held_add(struct held_ctx *hc, const char *id)
{
    if (hc->h->n == hc->cap) {
        size_t cap = hc->cap ? 2 * hc->cap : 16;
        void *v = cd_realloc(hc->h->ids, cap * sizeof *hc->h->ids);
        if (v == NULL)
            return CD_ERR_NOMEM;
        hc->h->ids = v;
        hc->cap = cap;
    }
    snprintf(hc->h->ids[hc->h->n++], CD_ID_MAX, "%s", id);
    return CD_OK;
}

static enum cd_err held_fn(struct cd_tx *tx, void *ctx)
{
    struct held_ctx *hc = ctx;
    struct cd_val p[] = {CD_VINT(cd_now_ms())};
    enum cd_err err;
    size_t i;
    json_t *id;

    hc->h->n = 0;
    json_array_clear(hc->raw);
    if ((err = cd_tx_exec(tx,
                          "SELECT customer_id FROM legal_holds WHERE released_at IS NULL"
                          " AND (expires_at IS NULL OR expires_at > $1)",
                          p, 1, held_row, hc->raw, NULL)) != CD_OK)
        return err;
    /* A hold on a customer merged away keeps the survivor, which holds their data now. */
    json_array_foreach(hc->raw, i, id) {
        char resolved[CD_ID_MAX];
        bool merged;
        enum cd_core_customer_state st;
        if ((err = held_add(hc, json_string_value(id))) != CD_OK ||
            (err = cd_core_customer_resolve(tx, cd_str_c(json_string_value(id)), resolved,
                                            &merged, &st)) != CD_OK)
            return err;
        if (merged && (err = held_add(hc, resolved)) != CD_OK)
            return err;
    }
    return CD_OK;
}

enum cd_err cd__ret_held(struct cd_store *s, struct cd__held *out)
{
    struct held_ctx hc = {out, 0, json_array()};
    enum cd_err err;

    memset(out, 0, sizeof *out);
    if (hc.raw == NULL)
        return CD_ERR_NOMEM;
    err = cd_store_read(s, held_fn, &hc);
    json_decref(hc.raw);
    if (err != CD_OK) {
        cd_free(out->ids);
        memset(out, 0, sizeof *out);
        return err;
    }
    if (out->n)
        qsort(out->ids, out->n, sizeof *out->ids, id_cmp);
    return CD_OK;
}

bool cd__ret_is_held(const struct cd__held *h, const char *customer_id)
{
    return h->n && bsearch(customer_id, h->ids, h->n, sizeof *h->ids, id_cmp) != NULL;
}
