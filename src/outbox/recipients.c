/* Recipients told (GDPR Art. 19): the systems and third parties a customer's data goes to, and
 * a notice to each of them when that customer's data is erased, rectified or restricted. A
 * recipient that is a webhook subscription is told by the event's delivery (its notice is told
 * when the receiver acknowledges it); a named processor is told by a person, who confirms it. */
#include <stdio.h>
#include <string.h>
#include "outbox_int.h"

#define NAME_MAX_BYTES 200
#define CONTACT_MAX 500

/* ---- checks ---- */

/* A list of 1..16 distinct names, each accepted by ok, as JSON text (cd_malloc'ed). */
static enum cd_err name_list(const json_t *body, const char *key,
                             bool (*ok)(struct cd_str s, unsigned *v), char **text)
{
    json_t *a = NULL, *e;
    size_t i, len;
    unsigned v;
    enum cd_err err;

    if ((err = cd_json_arr(body, key, true, &a)) != CD_OK)
        return err;
    if (json_array_size(a) == 0 || json_array_size(a) > 16)
        return cd_err_set(CD_ERR_INVALID, "'%s' must list 1 to 16 names", key);
    json_array_foreach(a, i, e) {
        struct cd_str s = {json_string_value(e), json_string_length(e)};
        if (!json_is_string(e) || !ok(s, &v))
            return cd_err_set(CD_ERR_INVALID, "'%s' holds an unknown name", key);
        for (size_t j = 0; j < i; j++)
            if (json_equal(e, json_array_get(a, j)))
                return cd_err_set(CD_ERR_INVALID, "'%s' names %s twice", key, s.p);
    }
    return cd_json_dump(a, text, &len);
}

static bool purpose_ok(struct cd_str s, unsigned *v)
{
    enum cd_purpose p;
    bool ok = cd_purpose_parse(s, &p);
    *v = ok ? (unsigned)p : 0;
    return ok;
}

/* ---- registering ---- */

struct rcp {
    const struct cd_outbox_actor *a;
    char id[CD_ID_MAX];
    struct cd_str name, kind, sub, contact, scope;
    char *purposes, *categories;
    char customer[CD_ID_MAX];
    int64_t now;
};

static enum cd_err create_fn(struct cd_tx *tx, void *ctx)
{
    struct rcp *r = ctx;
    enum cd_err err;
    struct cd_val p[] = {CD_VCSTR(r->id),
                         CD_VTEXT(r->name),
                         CD_VTEXT(r->kind),
                         r->sub.p ? CD_VTEXT(r->sub) : CD_VNULL,
                         r->contact.p ? CD_VTEXT(r->contact) : CD_VNULL,
                         CD_VCSTR(r->purposes),
                         CD_VCSTR(r->categories),
                         CD_VTEXT(r->scope),
                         CD_VINT(r->now)};

    if (r->sub.p && (err = cd__outbox_sub_live(tx, r->sub)) != CD_OK)
        return err == CD_ERR_NOT_FOUND
                   ? cd_err_set(CD_ERR_INVALID, "'subscription_id' names no webhook subscription")
                   : err;
    if ((err = cd_tx_exec(tx,
                          "INSERT INTO recipients(id, name, kind, subscription_id, contact,"
                          " purposes, categories, scope, created_at, updated_at)"
                          " VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$9)",
                          p, 9, NULL, NULL, NULL)) != CD_OK)
        return err;
    return cd__outbox_ledger(tx, r->a, "recipient.create", NULL, r->id);
}

enum cd_err cd_outbox_recipient_create(struct cd_outbox *ob, const struct cd_outbox_actor *a,
                                       const json_t *body, json_t **out)
{
    static const char *const allowed[] = {"name", "kind", "subscription_id", "contact",
                                          "purposes", "categories", "scope", NULL};
    struct rcp r = {.a = a, .now = cd_now_ms()};
    enum cd_err err;

    if ((err = cd_json_only(body, allowed)) != CD_OK ||
        (err = cd_json_str(body, "name", true, &r.name)) != CD_OK ||
        (err = cd_json_str(body, "kind", true, &r.kind)) != CD_OK ||
        (err = cd_json_str(body, "subscription_id", false, &r.sub)) != CD_OK ||
        (err = cd_json_str(body, "contact", false, &r.contact)) != CD_OK ||
        (err = cd_json_str(body, "scope", true, &r.scope)) != CD_OK)
        return err;
    if (r.name.len == 0 || r.name.len > NAME_MAX_BYTES)
        return cd_err_set(CD_ERR_INVALID, "'name' must be 1 to %d bytes", NAME_MAX_BYTES);
    if (!cd_str_eq_c(r.scope, "all") && !cd_str_eq_c(r.scope, "listed"))
        return cd_err_set(CD_ERR_INVALID, "'scope' must be all (every customer's data goes "
                                          "there) or listed (the customers added to it)");
    if (cd_str_eq_c(r.kind, "webhook")) {
        if (r.sub.p == NULL || r.contact.p)
            return cd_err_set(CD_ERR_INVALID, "a webhook recipient names its "
                                              "'subscription_id' and no 'contact'");
    } else if (cd_str_eq_c(r.kind, "processor")) {
        if (r.sub.p || r.contact.p == NULL || r.contact.len == 0 || r.contact.len > CONTACT_MAX)
            return cd_err_set(CD_ERR_INVALID, "a processor recipient names its 'contact' (1 to "
                                              "%d bytes) and no 'subscription_id'",
                              CONTACT_MAX);
    } else {
        return cd_err_set(CD_ERR_INVALID, "'kind' must be webhook or processor");
    }
    if ((err = name_list(body, "purposes", purpose_ok, &r.purposes)) != CD_OK ||
        (err = name_list(body, "categories", cd_policy_category_parse, &r.categories)) != CD_OK)
        goto out;
    cd_id_new("rcp", r.id);
    if ((err = cd_store_write(ob->store, create_fn, &r)) != CD_OK)
        goto out;
    err = cd_outbox_recipient_get(ob, cd_str_c(r.id), out);
out:
    cd_free(r.purposes);
    cd_free(r.categories);
    return err;
}

#define RCP_COLS                                                                                \
    "r.id, r.name, r.kind, r.subscription_id, r.contact, r.purposes, r.categories, r.scope,"    \
    " r.created_at, r.removed_at"

static enum cd_err set_json(json_t *o, const char *key, struct cd_val v)
{
    json_t *j = NULL;
    enum cd_err err = cd_json_parse(v.p, v.len, &j);

    return err != CD_OK ? err : cd_json_set_new(o, key, j);
}

static enum cd_err rcp_row(void *ctx, const struct cd_val *c, size_t n)
{
    json_t *o = json_object();
    enum cd_err err = o ? CD_OK : CD_ERR_NOMEM;

    (void)n;
    if (err == CD_OK &&
        ((err = cd_val_json_text(o, "id", c[0])) != CD_OK ||
         (err = cd_val_json_text(o, "name", c[1])) != CD_OK ||
         (err = cd_val_json_text(o, "kind", c[2])) != CD_OK ||
         (err = cd_val_json_text(o, "subscription_id", c[3])) != CD_OK ||
         (err = cd_val_json_text(o, "contact", c[4])) != CD_OK ||
         (err = set_json(o, "purposes", c[5])) != CD_OK ||
         (err = set_json(o, "categories", c[6])) != CD_OK ||
         (err = cd_val_json_text(o, "scope", c[7])) != CD_OK ||
         (err = cd_val_json_time(o, "created_at", c[8])) != CD_OK ||
         (err = cd_val_json_time(o, "removed_at", c[9])) != CD_OK ||
         json_array_append(ctx, o) != 0))
        err = err != CD_OK ? err : CD_ERR_NOMEM;
    json_decref(o);
    return err;
}

struct rcp_q {
    struct cd_str id;
    json_t *items;
};

static enum cd_err rcp_get_fn(struct cd_tx *tx, void *ctx)
{
    struct rcp_q *q = ctx;

    if (q->id.p) {
        struct cd_val p[] = {CD_VTEXT(q->id)};
        return cd_tx_exec(tx, "SELECT " RCP_COLS " FROM recipients r WHERE r.id = $1", p, 1,
                          rcp_row, q->items, NULL);
    }
    return cd_tx_exec(tx,
                      "SELECT " RCP_COLS " FROM recipients r WHERE r.removed_at IS NULL"
                      " ORDER BY r.created_at, r.id",
                      NULL, 0, rcp_row, q->items, NULL);
}

enum cd_err cd_outbox_recipient_get(struct cd_outbox *ob, struct cd_str id, json_t **out)
{
    struct rcp_q q = {id, json_array()};
    enum cd_err err = q.items ? CD_OK : CD_ERR_NOMEM;

    if (err == CD_OK && !cd_id_valid(id, "rcp"))
        err = cd_err_set(CD_ERR_NOT_FOUND, "no recipient with this id");
    if (err == CD_OK && (err = cd_store_read(ob->store, rcp_get_fn, &q)) == CD_OK &&
        json_array_size(q.items) == 0)
        err = cd_err_set(CD_ERR_NOT_FOUND, "no recipient with this id");
    if (err == CD_OK)
        *out = json_incref(json_array_get(q.items, 0));
    json_decref(q.items);
    return err;
}

enum cd_err cd_outbox_recipient_list(struct cd_outbox *ob, json_t **out)
{
    struct rcp_q q = {CD_STR_NULL, json_array()};
    enum cd_err err;

    if (q.items == NULL)
        return CD_ERR_NOMEM;
    if ((err = cd_store_read(ob->store, rcp_get_fn, &q)) != CD_OK) {
        json_decref(q.items);
        return err;
    }
    *out = json_pack("{s:o}", "items", q.items);
    return *out ? CD_OK : CD_ERR_NOMEM;
}

static enum cd_err rcp_live(struct cd_tx *tx, const char *id)
{
    struct cd_val p[] = {CD_VCSTR(id)};
    int64_t n = 0;
    enum cd_err err = cd_tx_int(tx,
                                "SELECT count(*) FROM recipients WHERE id = $1"
                                " AND removed_at IS NULL",
                                p, 1, &n);
    if (err == CD_OK && n == 0)
        err = cd_err_set(CD_ERR_NOT_FOUND, "no recipient with this id");
    return err;
}

static enum cd_err remove_fn(struct cd_tx *tx, void *ctx)
{
    struct rcp *r = ctx;
    struct cd_val p[] = {CD_VCSTR(r->id), CD_VINT(r->now)};
    enum cd_err err;

    if ((err = rcp_live(tx, r->id)) != CD_OK ||
        (err = cd_tx_exec(tx, "UPDATE recipients SET removed_at = $2, updated_at = $2"
                              " WHERE id = $1",
                          p, 2, NULL, NULL, NULL)) != CD_OK)
        return err;
    return cd__outbox_ledger(tx, r->a, "recipient.remove", NULL, r->id);
}

static enum cd_err copy_rcp_id(struct cd_str id, char out[CD_ID_MAX])
{
    if (!cd_id_valid(id, "rcp"))
        return cd_err_set(CD_ERR_NOT_FOUND, "no recipient with this id");
    memcpy(out, id.p, id.len);
    out[id.len] = '\0';
    return CD_OK;
}

enum cd_err cd_outbox_recipient_remove(struct cd_outbox *ob, const struct cd_outbox_actor *a,
                                       struct cd_str id)
{
    struct rcp r = {.a = a, .now = cd_now_ms()};
    enum cd_err err;

    if ((err = copy_rcp_id(id, r.id)) != CD_OK)
        return err;
    return cd_store_write(ob->store, remove_fn, &r);
}

static enum cd_err disclose_fn(struct cd_tx *tx, void *ctx)
{
    struct rcp *r = ctx;
    struct cd_val p[] = {CD_VCSTR(r->id), CD_VCSTR(r->customer), CD_VINT(r->now)};
    enum cd_err err;

    if ((err = rcp_live(tx, r->id)) != CD_OK ||
        (err = cd_tx_exec(tx,
                          "INSERT INTO recipient_customers(recipient_id, customer_id, since)"
                          " VALUES($1, $2, $3) ON CONFLICT(recipient_id, customer_id) DO NOTHING",
                          p, 3, NULL, NULL, NULL)) != CD_OK)
        return err;
    return cd__outbox_ledger(tx, r->a, "recipient.disclose", r->customer, r->id);
}

enum cd_err cd_outbox_recipient_add_customer(struct cd_outbox *ob,
                                             const struct cd_outbox_actor *a, struct cd_str id,
                                             struct cd_str customer_id)
{
    struct rcp r = {.a = a, .now = cd_now_ms()};
    enum cd_err err;

    if ((err = copy_rcp_id(id, r.id)) != CD_OK)
        return err;
    if (!cd_id_valid(customer_id, "cus"))
        return cd_err_set(CD_ERR_INVALID, "'customer_id' is not a customer id");
    memcpy(r.customer, customer_id.p, customer_id.len);
    r.customer[customer_id.len] = '\0';
    return cd_store_write(ob->store, disclose_fn, &r);
}

/* ---- a customer's recipients and merges ---- */

enum cd_err cd_outbox_recipients_of(struct cd_tx *tx, struct cd_str customer_id, json_t **out)
{
    json_t *items = json_array();
    struct cd_val p[] = {CD_VTEXT(customer_id)};
    enum cd_err err;

    if (items == NULL)
        return CD_ERR_NOMEM;
    if ((err = cd_tx_exec(tx,
                          "SELECT " RCP_COLS " FROM recipients r WHERE r.removed_at IS NULL"
                          " AND (r.scope = 'all' OR EXISTS (SELECT 1 FROM recipient_customers rc"
                          " WHERE rc.recipient_id = r.id AND rc.customer_id = $1))"
                          " ORDER BY r.created_at, r.id",
                          p, 1, rcp_row, items, NULL)) != CD_OK) {
        json_decref(items);
        return err;
    }
    *out = items;
    return CD_OK;
}

enum cd_err cd_outbox_customer_merged(struct cd_tx *tx, struct cd_str merged,
                                      struct cd_str survivor)
{
    struct cd_val p[] = {CD_VTEXT(merged), CD_VTEXT(survivor)};
    enum cd_err err;

    /* The survivor holds the merged customer's data now: whoever received it is a recipient
     * of the survivor's. A disclosure both had is kept once, the survivor's. */
    if ((err = cd_tx_exec(tx,
                          "INSERT INTO recipient_customers(recipient_id, customer_id, since)"
                          " SELECT recipient_id, $2, since FROM recipient_customers"
                          " WHERE customer_id = $1"
                          " ON CONFLICT(recipient_id, customer_id) DO NOTHING",
                          p, 2, NULL, NULL, NULL)) != CD_OK)
        return err;
    return cd_tx_exec(tx, "DELETE FROM recipient_customers WHERE customer_id = $1", p, 1, NULL,
                      NULL, NULL);
}

/* ---- telling them ---- */

struct applicable {
    struct {
        char id[CD_ID_MAX];
        char sub[CD_ID_MAX];
        bool webhook;
        json_t *categories;
    } *v;
    size_t n, cap;
};

static enum cd_err applicable_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct applicable *a = ctx;

    (void)n;
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 8;
        void *v = cd_realloc(a->v, cap * sizeof *a->v);
        if (v == NULL)
            return CD_ERR_NOMEM;
        a->v = v;
        a->cap = cap;
    }
    memset(&a->v[a->n], 0, sizeof a->v[a->n]);
    snprintf(a->v[a->n].id, CD_ID_MAX, "%.*s", (int)c[0].len, (const char *)c[0].p);
    a->v[a->n].webhook = c[1].len == 7 && memcmp(c[1].p, "webhook", 7) == 0;
    if (c[2].type != CD_VAL_NULL)
        snprintf(a->v[a->n].sub, CD_ID_MAX, "%.*s", (int)c[2].len, (const char *)c[2].p);
    if (cd_json_parse(c[3].p, c[3].len, &a->v[a->n].categories) != CD_OK)
        return cd_err_set(CD_ERR_INTEGRITY, "a recipient's categories are not JSON");
    a->n++;
    return CD_OK;
}

/* Whether a rectification of these categories concerns a recipient of those. */
static bool overlaps(const json_t *changed, const json_t *held)
{
    size_t i, j;
    json_t *a, *b;

    json_array_foreach(changed, i, a) json_array_foreach(held, j, b) if (json_equal(a, b))
        return true;
    return false;
}

static enum cd_err id_row(void *ctx, const struct cd_val *c, size_t n)
{
    (void)n;
    snprintf(ctx, CD_ID_MAX, "%.*s", (int)c[0].len, (const char *)c[0].p);
    return CD_OK;
}

/* The delivery of the event to sub, if the event has one ("" if not), and whether sub is live. */
static enum cd_err delivery_of(struct cd_tx *tx, int64_t event_seq, const char *sub,
                               char id[CD_ID_MAX], bool *live)
{
    struct cd_val s[] = {CD_VCSTR(sub)};
    struct cd_val p[] = {CD_VINT(event_seq), CD_VCSTR(sub)};
    int64_t n = 0;
    enum cd_err err;

    id[0] = '\0';
    if ((err = cd_tx_int(tx,
                         "SELECT count(*) FROM webhook_subscriptions WHERE id = $1"
                         " AND deleted_at IS NULL",
                         s, 1, &n)) != CD_OK)
        return err;
    *live = n > 0;
    return cd_tx_exec(tx,
                      "SELECT id FROM webhook_deliveries WHERE event_seq = $1"
                      " AND subscription_id = $2",
                      p, 2, id_row, id, NULL);
}

enum cd_err cd__outbox_recipients_fan_out(struct cd_tx *tx, const struct cd_outbox_event_type *t,
                                          const char *event_id, int64_t event_seq,
                                          struct cd_str customer_id, const json_t *payload,
                                          int64_t now)
{
    struct applicable a = {0};
    const json_t *changed = json_object_get(payload, "categories");
    const char *request_id = json_string_value(json_object_get(payload, "request_id"));
    struct cd_val p[] = {CD_VTEXT(customer_id)};
    enum cd_err err;

    if ((err = cd_tx_exec(tx,
                          "SELECT r.id, r.kind, r.subscription_id, r.categories FROM recipients r"
                          " WHERE r.removed_at IS NULL AND (r.scope = 'all' OR EXISTS"
                          " (SELECT 1 FROM recipient_customers rc WHERE rc.recipient_id = r.id"
                          " AND rc.customer_id = $1)) ORDER BY r.id",
                          p, 1, applicable_row, &a, NULL)) != CD_OK)
        goto out;
    for (size_t i = 0; i < a.n; i++) {
        char notice[CD_ID_MAX], dlv[CD_ID_MAX] = "";
        const char *status = "pending", *note = NULL;
        if (changed && !overlaps(changed, a.v[i].categories))
            continue;
        if (a.v[i].webhook) {
            bool live = false;
            if ((err = delivery_of(tx, event_seq, a.v[i].sub, dlv, &live)) != CD_OK)
                goto out;
            if (!live) {
                status = "failed";
                note = "the recipient's webhook subscription was deleted";
            } else if (dlv[0] == '\0' &&
                       (err = cd__outbox_delivery_insert(tx, event_seq, a.v[i].sub, customer_id,
                                                         now, dlv)) != CD_OK) {
                goto out;
            }
        }
        cd_id_new("rnt", notice);
        struct cd_val v[] = {CD_VCSTR(notice),
                             CD_VCSTR(a.v[i].id),
                             CD_VTEXT(customer_id),
                             CD_VCSTR(event_id),
                             CD_VCSTR(t->name),
                             request_id ? CD_VCSTR(request_id) : CD_VNULL,
                             dlv[0] ? CD_VCSTR(dlv) : CD_VNULL,
                             CD_VCSTR(status),
                             CD_VINT(now),
                             note ? CD_VCSTR(note) : CD_VNULL};
        if ((err = cd_tx_exec(tx,
                              "INSERT INTO recipient_notices(id, recipient_id, customer_id,"
                              " event_id, event_type, request_id, delivery_id, status,"
                              " created_at, note) VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
                              v, 10, NULL, NULL, NULL)) != CD_OK)
            goto out;
    }
out:
    for (size_t i = 0; i < a.n; i++)
        json_decref(a.v[i].categories);
    cd_free(a.v);
    return err;
}

enum cd_err cd__outbox_notices_settle(struct cd_tx *tx, const char *delivery_id, bool delivered,
                                      int64_t now)
{
    struct cd_val p[] = {CD_VCSTR(delivery_id), CD_VINT(now)};

    if (delivered)
        return cd_tx_exec(tx,
                          "UPDATE recipient_notices SET status = 'told', told_at = $2,"
                          " told_by = 'webhook' WHERE delivery_id = $1 AND status = 'pending'",
                          p, 2, NULL, NULL, NULL);
    return cd_tx_exec(tx,
                      "UPDATE recipient_notices SET status = 'failed'"
                      " WHERE delivery_id = $1 AND status = 'pending'",
                      p, 1, NULL, NULL, NULL);
}

enum cd_err cd__outbox_notices_reopen(struct cd_tx *tx, const char *delivery_id)
{
    struct cd_val p[] = {CD_VCSTR(delivery_id)};

    return cd_tx_exec(tx,
                      "UPDATE recipient_notices SET status = 'pending'"
                      " WHERE delivery_id = $1 AND status = 'failed'",
                      p, 1, NULL, NULL, NULL);
}

enum cd_err cd__outbox_notices_cancel(struct cd_tx *tx, const char *subscription_id,
                                      int64_t now)
{
    struct cd_val p[] = {CD_VCSTR(subscription_id)};

    (void)now;
    return cd_tx_exec(tx,
                      "UPDATE recipient_notices SET status = 'failed',"
                      " note = 'the recipient''s webhook subscription was deleted'"
                      " WHERE status IN ('pending', 'failed') AND delivery_id IN (SELECT id"
                      " FROM webhook_deliveries WHERE subscription_id = $1"
                      " AND status = 'cancelled')",
                      p, 1, NULL, NULL, NULL);
}

/* ---- who was told ---- */

#define NOTICE_COLS                                                                             \
    "n.id, n.recipient_id, r.name, r.kind, r.contact, n.customer_id, n.event_id,"               \
    " n.event_type, n.request_id, n.delivery_id, n.status, n.created_at, n.told_at,"            \
    " n.told_by, n.note"

static enum cd_err notice_row(void *ctx, const struct cd_val *c, size_t n)
{
    json_t *o = json_object();
    static const char *const keys[] = {"id", "recipient_id", "recipient_name", "kind",
                                       "contact", "customer_id", "event_id", "event_type",
                                       "request_id", "delivery_id", "status"};
    enum cd_err err = o ? CD_OK : CD_ERR_NOMEM;

    (void)n;
    for (size_t i = 0; err == CD_OK && i < sizeof keys / sizeof keys[0]; i++)
        err = cd_val_json_text(o, keys[i], c[i]);
    if (err == CD_OK && ((err = cd_val_json_time(o, "created_at", c[11])) != CD_OK ||
                         (err = cd_val_json_time(o, "told_at", c[12])) != CD_OK ||
                         (err = cd_val_json_text(o, "told_by", c[13])) != CD_OK ||
                         (err = cd_val_json_text(o, "note", c[14])) != CD_OK))
        goto out;
    if (err == CD_OK && json_array_append(ctx, o) != 0)
        err = CD_ERR_NOMEM;
out:
    json_decref(o);
    return err;
}

enum cd_err cd_outbox_notices(struct cd_tx *tx, struct cd_str customer_id, int64_t since_ms,
                              struct cd_str request_id, json_t **out)
{
    json_t *items = json_array();
    struct cd_val p[] = {CD_VTEXT(customer_id), CD_VINT(since_ms),
                         request_id.p ? CD_VTEXT(request_id) : CD_VCSTR("")};
    enum cd_err err;

    if (items == NULL)
        return CD_ERR_NOMEM;
    if ((err = cd_tx_exec(tx,
                          "SELECT " NOTICE_COLS " FROM recipient_notices n"
                          " JOIN recipients r ON r.id = n.recipient_id"
                          " WHERE n.customer_id = $1 AND n.created_at >= $2"
                          " AND ($3 = '' OR n.request_id = $3) ORDER BY n.created_at, n.id",
                          p, 3, notice_row, items, NULL)) != CD_OK) {
        json_decref(items);
        return err;
    }
    *out = items;
    return CD_OK;
}

enum cd_err cd_outbox_notices_attach(struct cd_tx *tx, struct cd_str customer_id,
                                     int64_t since_ms, struct cd_str request_id, uint64_t *n)
{
    struct cd_val p[] = {CD_VTEXT(customer_id), CD_VINT(since_ms), CD_VTEXT(request_id)};
    int64_t changes = 0;
    enum cd_err err;

    if (request_id.len == 0 || request_id.len >= CD_ID_MAX)
        return cd_err_set(CD_ERR_INVALID, "a request id is required");
    err = cd_tx_exec(tx,
                     "UPDATE recipient_notices SET request_id = $3 WHERE customer_id = $1"
                     " AND created_at >= $2 AND request_id IS NULL",
                     p, 3, NULL, NULL, &changes);
    if (err == CD_OK && n)
        *n = (uint64_t)changes;
    return err;
}

struct list_notices {
    struct cd_str status;
    json_t *items;
};

static enum cd_err pending_fn(struct cd_tx *tx, void *ctx)
{
    struct list_notices *l = ctx;
    struct cd_val p[] = {l->status.p ? CD_VTEXT(l->status) : CD_VCSTR("")};

    return cd_tx_exec(tx,
                      "SELECT " NOTICE_COLS " FROM recipient_notices n"
                      " JOIN recipients r ON r.id = n.recipient_id"
                      " WHERE ($1 = '' OR n.status = $1) ORDER BY n.created_at, n.id LIMIT 1000",
                      p, 1, notice_row, l->items, NULL);
}

enum cd_err cd_outbox_notices_list(struct cd_outbox *ob, struct cd_str status, json_t **out)
{
    struct list_notices l = {status, NULL};
    enum cd_err err;

    if (status.len && !cd_str_eq_c(status, "pending") && !cd_str_eq_c(status, "told") &&
        !cd_str_eq_c(status, "failed"))
        return cd_err_set(CD_ERR_INVALID, "'status' must be pending, told or failed");
    if ((l.items = json_array()) == NULL)
        return CD_ERR_NOMEM;
    if ((err = cd_store_read(ob->store, pending_fn, &l)) != CD_OK) {
        json_decref(l.items);
        return err;
    }
    *out = json_pack("{s:o}", "items", l.items);
    return *out ? CD_OK : CD_ERR_NOMEM;
}

struct confirm {
    const struct cd_outbox_actor *a;
    char id[CD_ID_MAX];
    struct cd_str note;
    int64_t now;
    json_t *items;
};

static enum cd_err confirm_fn(struct cd_tx *tx, void *ctx)
{
    struct confirm *c = ctx;
    struct cd_val p[] = {CD_VCSTR(c->id), CD_VINT(c->now), CD_VCSTR(c->a->token_id),
                         c->note.p ? CD_VTEXT(c->note) : CD_VNULL};
    json_t *n;
    enum cd_err err;

    json_array_clear(c->items);
    if ((err = cd_tx_exec(tx,
                          "SELECT " NOTICE_COLS " FROM recipient_notices n"
                          " JOIN recipients r ON r.id = n.recipient_id WHERE n.id = $1",
                          p, 1, notice_row, c->items, NULL)) != CD_OK)
        return err;
    if ((n = json_array_get(c->items, 0)) == NULL)
        return cd_err_set(CD_ERR_NOT_FOUND, "no recipient notice with this id");
    if (strcmp(json_string_value(json_object_get(n, "kind")), "webhook") == 0)
        return cd_err_set(CD_ERR_CONFLICT, "a webhook recipient is told by its delivery");
    if (strcmp(json_string_value(json_object_get(n, "status")), "told") == 0)
        return cd_err_set(CD_ERR_CONFLICT, "this recipient was already told");
    if ((err = cd_tx_exec(tx,
                          "UPDATE recipient_notices SET status = 'told', told_at = $2,"
                          " told_by = $3, note = $4 WHERE id = $1",
                          p, 4, NULL, NULL, NULL)) != CD_OK)
        return err;
    return cd__outbox_ledger(tx, c->a, "recipient.told",
                             json_string_value(json_object_get(n, "customer_id")), c->id);
}

static enum cd_err notice_get_fn(struct cd_tx *tx, void *ctx)
{
    struct confirm *c = ctx;
    struct cd_val p[] = {CD_VCSTR(c->id)};

    json_array_clear(c->items);
    return cd_tx_exec(tx,
                      "SELECT " NOTICE_COLS " FROM recipient_notices n"
                      " JOIN recipients r ON r.id = n.recipient_id WHERE n.id = $1",
                      p, 1, notice_row, c->items, NULL);
}

enum cd_err cd_outbox_notice_confirm(struct cd_outbox *ob, const struct cd_outbox_actor *a,
                                     struct cd_str id, const json_t *body, json_t **out)
{
    static const char *const allowed[] = {"note", NULL};
    struct confirm c = {.a = a, .now = cd_now_ms()};
    enum cd_err err;

    if (!cd_id_valid(id, "rnt"))
        return cd_err_set(CD_ERR_NOT_FOUND, "no recipient notice with this id");
    if ((err = cd_json_only(body, allowed)) != CD_OK ||
        (err = cd_json_str(body, "note", false, &c.note)) != CD_OK)
        return err;
    if (c.note.len > CONTACT_MAX)
        return cd_err_set(CD_ERR_INVALID, "'note' must be at most %d bytes", CONTACT_MAX);
    memcpy(c.id, id.p, id.len);
    c.id[id.len] = '\0';
    if ((c.items = json_array()) == NULL)
        return CD_ERR_NOMEM;
    if ((err = cd_store_write(ob->store, confirm_fn, &c)) == CD_OK &&
        (err = cd_store_read(ob->store, notice_get_fn, &c)) == CD_OK)
        *out = json_incref(json_array_get(c.items, 0));
    json_decref(c.items);
    return err;
}
