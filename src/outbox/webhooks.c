/* Webhook subscriptions: where events go, which ones, under which purpose, and the secret
 * their deliveries are signed with (sealed at rest, shown once). */
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>
#include "audit/audit.h"
#include "outbox_int.h"

#define URL_MAX 2048
#define DESCRIPTION_MAX 200
#define EVENTS_MAX 64

/* ---- checks ---- */

static bool loopback(const char *host)
{
    /* curl gives an IPv6 literal with its brackets. */
    return strcmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0 ||
           strcmp(host, "[::1]") == 0;
}

/* https://, or plain http:// to this machine only (a test receiver, a local relay): a
 * delivery may carry personal data, and a signature says who sent it, not who read it. */
enum cd_err cd__outbox_url_check(struct cd_str url)
{
    CURLU *u = NULL;
    char *scheme = NULL, *host = NULL, *user = NULL, *frag = NULL;
    char text[URL_MAX + 1];
    enum cd_err err = CD_OK;

    if (url.len == 0 || url.len > URL_MAX || memchr(url.p, '\0', url.len))
        return cd_err_set(CD_ERR_INVALID, "'url' must be 1 to %d bytes", URL_MAX);
    memcpy(text, url.p, url.len);
    text[url.len] = '\0';
    if ((u = curl_url()) == NULL)
        return CD_ERR_NOMEM;
    if (curl_url_set(u, CURLUPART_URL, text, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        err = cd_err_set(CD_ERR_INVALID, "'url' is not an absolute URL");
        goto out;
    }
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
        err = cd_err_set(CD_ERR_INVALID, "'url' must not carry a user name or password");
        goto out;
    }
    if (curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0) == CURLUE_OK) {
        err = cd_err_set(CD_ERR_INVALID, "'url' must not have a fragment");
        goto out;
    }
    if (strcmp(scheme, "https") != 0 && !(strcmp(scheme, "http") == 0 && loopback(host)))
        err = cd_err_set(CD_ERR_INVALID, "'url' must be https:// (http:// only to a loopback "
                                         "address)");
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(user);
    curl_free(frag);
    curl_url_cleanup(u);
    return err;
}

static enum cd_err check_events(const json_t *events, char **text)
{
    size_t i, j;
    json_t *e;

    if (!json_is_array(events) || json_array_size(events) == 0 ||
        json_array_size(events) > EVENTS_MAX)
        return cd_err_set(CD_ERR_INVALID, "'events' must be a list of 1 to %d event types "
                                          "(or \"*\")",
                          EVENTS_MAX);
    json_array_foreach(events, i, e) {
        if (!json_is_string(e))
            return cd_err_set(CD_ERR_INVALID, "'events' must hold strings");
        struct cd_str name = {json_string_value(e), json_string_length(e)};
        if (!cd_str_eq_c(name, "*") && cd_outbox_event_type(name) == NULL)
            return cd_err_set(CD_ERR_INVALID, "'events': no event type '%.*s' "
                                              "(GET /v1/webhooks/event-types lists them)",
                              (int)(name.len > 64 ? 64 : name.len), name.p);
        for (j = 0; j < i; j++)
            if (json_equal(e, json_array_get(events, j)))
                return cd_err_set(CD_ERR_INVALID, "'events' names %s twice", name.p);
    }
    size_t len;
    return cd_json_dump(events, text, &len);
}

static enum cd_err check_purpose(const struct cd_policy *policy, struct cd_str purpose)
{
    enum cd_purpose p;
    struct cd_policy_grant g;

    if (!cd_purpose_parse(purpose, &p))
        return cd_err_set(CD_ERR_INVALID, "'purpose' must be one of %s", cd_purpose_list());
    if (cd_policy_check(policy, CD_ROLE_INTEGRATION, p, &g) != CD_OK)
        return cd_err_set(CD_ERR_INVALID, "'purpose': the policy does not let integrations "
                                          "declare %s",
                          cd_purpose_name(p));
    return CD_OK;
}

/* The members create and update share, each checked when present. */
struct sub_in {
    struct cd_str url, purpose, description, status;
    char *events; /* JSON text, cd_malloc'ed */
};

static enum cd_err parse_sub(const struct cd_policy *policy, const json_t *body, bool create,
                             struct sub_in *in)
{
    static const char *const allowed[] = {"url", "events", "purpose", "description", "status",
                                          NULL};
    json_t *events = NULL;
    enum cd_err err;

    memset(in, 0, sizeof *in);
    if ((err = cd_json_only(body, allowed)) != CD_OK ||
        (err = cd_json_str(body, "url", create, &in->url)) != CD_OK ||
        (err = cd_json_str(body, "purpose", create, &in->purpose)) != CD_OK ||
        (err = cd_json_str(body, "description", false, &in->description)) != CD_OK ||
        (err = cd_json_str(body, "status", false, &in->status)) != CD_OK ||
        (err = cd_json_arr(body, "events", create, &events)) != CD_OK)
        return err;
    if (in->url.p && (err = cd__outbox_url_check(in->url)) != CD_OK)
        return err;
    if (in->purpose.p && (err = check_purpose(policy, in->purpose)) != CD_OK)
        return err;
    if (in->description.len > DESCRIPTION_MAX)
        return cd_err_set(CD_ERR_INVALID, "'description' must be at most %d bytes",
                          DESCRIPTION_MAX);
    if (in->status.p && !cd_str_eq_c(in->status, "active") && !cd_str_eq_c(in->status, "paused"))
        return cd_err_set(CD_ERR_INVALID, "'status' must be active or paused");
    if (events && (err = check_events(events, &in->events)) != CD_OK)
        return err;
    return CD_OK;
}

/* ---- the secret ---- */

static void secret_field(const char *id, char out[CD__OUTBOX_FIELD_MAX + 8])
{
    snprintf(out, CD__OUTBOX_FIELD_MAX + 8, "webhook-secret:%s", id);
}

/* A fresh secret: its text for the owner, and its sealed form for the table. */
static enum cd_err secret_new(const struct cd_outbox *ob, const char *id,
                              char text[CD_OUTBOX_SECRET_TEXT], struct cd_buf *sealed)
{
    uint8_t raw[CD_OUTBOX_SECRET_LEN];
    char field[CD__OUTBOX_FIELD_MAX + 8];
    enum cd_err err;

    cd_random_bytes(raw, sizeof raw);
    memcpy(text, "whsec_", 6);
    cd_b64_encode(raw, sizeof raw, text + 6);
    secret_field(id, field);
    err = cd_crypto_seal(ob->secret_key, CD_STR(""), cd_str_c(field),
                         (struct cd_str){(const char *)raw, sizeof raw}, sealed);
    cd_crypto_wipe(raw, sizeof raw);
    return err;
}

enum cd_err cd__outbox_secret_open(const struct cd_outbox *ob, const char *id, struct cd_val v,
                                   uint8_t raw[CD_OUTBOX_SECRET_LEN])
{
    struct cd_buf b = CD_BUF_INIT(CD_OUTBOX_SECRET_LEN + 1);
    char field[CD__OUTBOX_FIELD_MAX + 8];
    enum cd_err err;

    secret_field(id, field);
    err = cd_crypto_open(ob->secret_key, CD_STR(""), cd_str_c(field),
                         (struct cd_str){v.p, v.len}, &b);
    if (err == CD_OK && b.len != CD_OUTBOX_SECRET_LEN)
        err = cd_err_set(CD_ERR_CRYPTO, "a webhook secret has the wrong length");
    if (err == CD_OK)
        memcpy(raw, b.p, CD_OUTBOX_SECRET_LEN);
    if (b.p)
        cd_crypto_wipe(b.p, b.len);
    cd_buf_free(&b);
    return err;
}

/* ---- rows ---- */

#define SUB_COLS                                                                                \
    "id, url, events, purpose, description, status, created_at, updated_at, created_by,"        \
    " (SELECT count(*) FROM webhook_deliveries d WHERE d.subscription_id = s.id"                \
    "  AND d.status = 'pending'),"                                                             \
    " (SELECT count(*) FROM webhook_deliveries d WHERE d.subscription_id = s.id"                \
    "  AND d.status = 'dead')"

static enum cd_err sub_json(void *ctx, const struct cd_val *c, size_t n)
{
    json_t *items = ctx, *events = NULL, *o;
    char created[CD_TIME_STRLEN], updated[CD_TIME_STRLEN];
    enum cd_err err;

    (void)n;
    if ((err = cd_json_parse(c[2].p, c[2].len, &events)) != CD_OK)
        return cd_err_set(CD_ERR_INTEGRITY, "a webhook subscription's event list is not JSON");
    cd_time_format(c[6].i, created);
    cd_time_format(c[7].i, updated);
    o = json_pack("{s:s%,s:s%,s:o,s:s%,s:s%,s:s%,s:s,s:s,s:s%,s:I,s:I}", "id", c[0].p, c[0].len,
                  "url", c[1].p, c[1].len, "events", events, "purpose", c[3].p, c[3].len,
                  "description", c[4].p, c[4].len, "status", c[5].p, c[5].len, "created_at",
                  created, "updated_at", updated, "created_by", c[8].p, c[8].len, "pending",
                  (json_int_t)c[9].i, "dead", (json_int_t)c[10].i);
    return o && json_array_append_new(items, o) == 0 ? CD_OK : CD_ERR_NOMEM;
}

struct get_ctx {
    struct cd_str id;
    json_t *items;
};

static enum cd_err get_fn(struct cd_tx *tx, void *ctx)
{
    struct get_ctx *g = ctx;

    if (g->id.p) {
        struct cd_val p[] = {CD_VTEXT(g->id)};
        return cd_tx_exec(tx,
                          "SELECT " SUB_COLS " FROM webhook_subscriptions s"
                          " WHERE id = $1 AND deleted_at IS NULL",
                          p, 1, sub_json, g->items, NULL);
    }
    return cd_tx_exec(tx,
                      "SELECT " SUB_COLS " FROM webhook_subscriptions s"
                      " WHERE deleted_at IS NULL ORDER BY created_at, id",
                      NULL, 0, sub_json, g->items, NULL);
}

enum cd_err cd_outbox_subscription_list(struct cd_outbox *ob, json_t **out)
{
    struct get_ctx g = {CD_STR_NULL, json_array()};
    enum cd_err err;

    if (g.items == NULL)
        return CD_ERR_NOMEM;
    if ((err = cd_store_read(ob->store, get_fn, &g)) != CD_OK) {
        json_decref(g.items);
        return err;
    }
    *out = json_pack("{s:o}", "items", g.items);
    return *out ? CD_OK : CD_ERR_NOMEM;
}

enum cd_err cd_outbox_subscription_get(struct cd_outbox *ob, struct cd_str id, json_t **out)
{
    struct get_ctx g = {id, json_array()};
    enum cd_err err;

    if (g.items == NULL)
        return CD_ERR_NOMEM;
    if (!cd_id_valid(id, "whs"))
        err = cd_err_set(CD_ERR_NOT_FOUND, "no webhook subscription with this id");
    else if ((err = cd_store_read(ob->store, get_fn, &g)) == CD_OK &&
             json_array_size(g.items) == 0)
        err = cd_err_set(CD_ERR_NOT_FOUND, "no webhook subscription with this id");
    if (err == CD_OK)
        *out = json_incref(json_array_get(g.items, 0));
    json_decref(g.items);
    return err;
}

/* ---- changes ---- */

enum cd_err cd__outbox_ledger(struct cd_tx *tx, const struct cd_outbox_actor *a,
                              const char *action, const char *customer_id,
                              const char *resource_id)
{
    struct cd_audit_event ev = {.action = action,
                                .outcome = "ok",
                                .actor_token = a->token_id,
                                .actor_role = a->role,
                                .actor_name = a->name,
                                .request_id = a->request_id,
                                .customer_id = customer_id,
                                .resource_id = resource_id};
    return cd_audit_append(tx, &ev, NULL);
}

struct change {
    struct cd_outbox *ob;
    const struct cd_outbox_actor *a;
    char id[CD_ID_MAX];
    struct sub_in in;
    struct cd_buf sealed; /* a new secret, sealed */
    int64_t now;
};

static enum cd_err create_fn(struct cd_tx *tx, void *ctx)
{
    struct change *c = ctx;
    struct cd_val p[] = {CD_VCSTR(c->id),
                         CD_VTEXT(c->in.url),
                         c->in.description.p ? CD_VTEXT(c->in.description) : CD_VCSTR(""),
                         CD_VCSTR(c->in.events),
                         CD_VTEXT(c->in.purpose),
                         CD_VBLOB(c->sealed.p, c->sealed.len),
                         c->in.status.p ? CD_VTEXT(c->in.status) : CD_VCSTR("active"),
                         CD_VINT(c->now),
                         CD_VCSTR(c->a->token_id)};
    enum cd_err err = cd_tx_exec(tx,
                                 "INSERT INTO webhook_subscriptions(id, url, description, events,"
                                 " purpose, secret, status, created_at, updated_at, created_by)"
                                 " VALUES($1,$2,$3,$4,$5,$6,$7,$8,$8,$9)",
                                 p, 9, NULL, NULL, NULL);
    return err != CD_OK ? err : cd__outbox_ledger(tx, c->a, "webhook.create", NULL, c->id);
}

enum cd_err cd_outbox_subscription_create(struct cd_outbox *ob, const struct cd_policy *policy,
                                          const struct cd_outbox_actor *a, const json_t *body,
                                          json_t **out)
{
    struct change c = {.ob = ob, .a = a, .sealed = CD_BUF_INIT(256), .now = cd_now_ms()};
    char secret[CD_OUTBOX_SECRET_TEXT];
    json_t *o = NULL;
    enum cd_err err;

    if ((err = parse_sub(policy, body, true, &c.in)) != CD_OK)
        goto out;
    cd_id_new("whs", c.id);
    if ((err = secret_new(ob, c.id, secret, &c.sealed)) != CD_OK ||
        (err = cd_store_write(ob->store, create_fn, &c)) != CD_OK ||
        (err = cd_outbox_subscription_get(ob, cd_str_c(c.id), &o)) != CD_OK)
        goto out;
    /* Shown this once: only its sealed form is kept. */
    if ((err = cd_json_set_new(o, "secret", json_string(secret))) != CD_OK) {
        json_decref(o);
        goto out;
    }
    *out = o;
out:
    cd_crypto_wipe(secret, sizeof secret);
    cd_buf_free(&c.sealed);
    cd_free(c.in.events);
    return err;
}

enum cd_err cd__outbox_sub_live(struct cd_tx *tx, struct cd_str id)
{
    struct cd_val p[] = {CD_VTEXT(id)};
    int64_t n = 0;
    enum cd_err err = cd_tx_int(tx,
                                "SELECT count(*) FROM webhook_subscriptions"
                                " WHERE id = $1 AND deleted_at IS NULL",
                                p, 1, &n);

    if (err == CD_OK && n == 0)
        err = cd_err_set(CD_ERR_NOT_FOUND, "no webhook subscription with this id");
    return err;
}

static enum cd_err update_fn(struct cd_tx *tx, void *ctx)
{
    struct change *c = ctx;
    enum cd_err err;
    struct cd_val p[] = {CD_VCSTR(c->id),
                         CD_VINT(c->now),
                         c->in.url.p ? CD_VTEXT(c->in.url) : CD_VNULL,
                         c->in.events ? CD_VCSTR(c->in.events) : CD_VNULL,
                         c->in.purpose.p ? CD_VTEXT(c->in.purpose) : CD_VNULL,
                         c->in.description.p ? CD_VTEXT(c->in.description) : CD_VNULL,
                         c->in.status.p ? CD_VTEXT(c->in.status) : CD_VNULL,
                         c->sealed.len ? CD_VBLOB(c->sealed.p, c->sealed.len) : CD_VNULL};

    if ((err = cd__outbox_sub_live(tx, cd_str_c(c->id))) != CD_OK)
        return err;
    if ((err = cd_tx_exec(tx,
                          "UPDATE webhook_subscriptions SET updated_at = $2,"
                          " url = coalesce($3, url), events = coalesce($4, events),"
                          " purpose = coalesce($5, purpose),"
                          " description = coalesce($6, description),"
                          " status = coalesce($7, status), secret = coalesce($8, secret)"
                          " WHERE id = $1",
                          p, 8, NULL, NULL, NULL)) != CD_OK)
        return err;
    return cd__outbox_ledger(tx, c->a, c->sealed.len ? "webhook.rotate" : "webhook.update",
                             NULL, c->id);
}

static enum cd_err copy_sub_id(struct cd_str id, char out[CD_ID_MAX])
{
    if (!cd_id_valid(id, "whs"))
        return cd_err_set(CD_ERR_NOT_FOUND, "no webhook subscription with this id");
    memcpy(out, id.p, id.len);
    out[id.len] = '\0';
    return CD_OK;
}

enum cd_err cd_outbox_subscription_update(struct cd_outbox *ob, const struct cd_policy *policy,
                                          const struct cd_outbox_actor *a, struct cd_str id,
                                          const json_t *body, json_t **out)
{
    struct change c = {.ob = ob, .a = a, .sealed = CD_BUF_INIT(256), .now = cd_now_ms()};
    enum cd_err err;

    if ((err = copy_sub_id(id, c.id)) != CD_OK ||
        (err = parse_sub(policy, body, false, &c.in)) != CD_OK ||
        (err = cd_store_write(ob->store, update_fn, &c)) != CD_OK)
        goto out;
    err = cd_outbox_subscription_get(ob, id, out);
    /* A resumed subscription's waiting deliveries are due at once. */
    if (err == CD_OK && cd_str_eq_c(c.in.status, "active"))
        cd_outbox_worker_wake(ob);
out:
    cd_free(c.in.events);
    return err;
}

enum cd_err cd_outbox_subscription_rotate(struct cd_outbox *ob, const struct cd_outbox_actor *a,
                                          struct cd_str id, json_t **out)
{
    struct change c = {.ob = ob, .a = a, .sealed = CD_BUF_INIT(256), .now = cd_now_ms()};
    char secret[CD_OUTBOX_SECRET_TEXT];
    enum cd_err err;

    memset(&c.in, 0, sizeof c.in);
    if ((err = copy_sub_id(id, c.id)) != CD_OK ||
        (err = secret_new(ob, c.id, secret, &c.sealed)) != CD_OK ||
        (err = cd_store_write(ob->store, update_fn, &c)) != CD_OK)
        goto out;
    *out = json_pack("{s:s,s:s}", "id", c.id, "secret", secret);
    if (*out == NULL)
        err = CD_ERR_NOMEM;
out:
    cd_crypto_wipe(secret, sizeof secret);
    cd_buf_free(&c.sealed);
    return err;
}

static enum cd_err delete_fn(struct cd_tx *tx, void *ctx)
{
    struct change *c = ctx;
    struct cd_val p[] = {CD_VCSTR(c->id), CD_VINT(c->now)};
    enum cd_err err;

    if ((err = cd__outbox_sub_live(tx, cd_str_c(c->id))) != CD_OK ||
        (err = cd_tx_exec(tx, "UPDATE webhook_subscriptions SET deleted_at = $2, updated_at = $2"
                              " WHERE id = $1",
                          p, 2, NULL, NULL, NULL)) != CD_OK ||
        (err = cd_tx_exec(tx,
                          "UPDATE webhook_deliveries SET status = 'cancelled', finished_at = $2"
                          " WHERE subscription_id = $1 AND status = 'pending'",
                          p, 2, NULL, NULL, NULL)) != CD_OK ||
        (err = cd__outbox_notices_cancel(tx, c->id, c->now)) != CD_OK)
        return err;
    return cd__outbox_ledger(tx, c->a, "webhook.delete", NULL, c->id);
}

enum cd_err cd_outbox_subscription_delete(struct cd_outbox *ob, const struct cd_outbox_actor *a,
                                          struct cd_str id)
{
    struct change c = {.ob = ob, .a = a, .now = cd_now_ms()};
    enum cd_err err;

    if ((err = copy_sub_id(id, c.id)) != CD_OK)
        return err;
    return cd_store_write(ob->store, delete_fn, &c);
}

struct test_ctx {
    char id[CD_ID_MAX];
    char event[CD_ID_MAX];
};

static enum cd_err test_fn(struct cd_tx *tx, void *ctx)
{
    struct test_ctx *t = ctx;
    json_t *payload = json_pack("{s:s}", "subscription_id", t->id);
    enum cd_err err;

    if (payload == NULL)
        return CD_ERR_NOMEM;
    if ((err = cd__outbox_sub_live(tx, cd_str_c(t->id))) == CD_OK)
        err = cd_outbox_enqueue(tx, "webhook.test", CD_STR_NULL, payload, t->event);
    json_decref(payload);
    return err;
}

enum cd_err cd_outbox_subscription_test(struct cd_outbox *ob, struct cd_str id, json_t **out)
{
    struct test_ctx t;
    enum cd_err err;

    if ((err = copy_sub_id(id, t.id)) != CD_OK ||
        (err = cd_store_write(ob->store, test_fn, &t)) != CD_OK)
        return err;
    cd_outbox_worker_wake(ob);
    *out = json_pack("{s:s}", "event_id", t.event);
    return *out ? CD_OK : CD_ERR_NOMEM;
}
