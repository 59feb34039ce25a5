/* Handlers for the outbox: event types, webhook subscriptions, deliveries and the dead-letter
 * list, recipients and the notices they were sent (GDPR Art. 19). */
#include <stdio.h>
#include <string.h>
#include "http_int.h"
#include "outbox/outbox.h"

static struct cd_outbox_actor actor_of(const struct cd_req *r)
{
    return (struct cd_outbox_actor){r->actor.token_id, r->actor.role, r->actor.name,
                                    r->request_id};
}

static enum cd_err need_outbox(const struct cd_req *r)
{
    return r->app->outbox ? CD_OK
                          : cd_err_set(CD_ERR_BUSY, "the outbox is not open on this server");
}

enum cd_err cd__http_event_types(struct cd_req *r)
{
    return cd_outbox_event_types_json(&r->resp_json);
}

/* ---- subscriptions ---- */

enum cd_err cd__http_webhook_create(struct cd_req *r)
{
    struct cd_outbox_actor a = actor_of(r);
    enum cd_err err;

    if ((err = need_outbox(r)) != CD_OK ||
        (err = cd_outbox_subscription_create(r->app->outbox, r->app->policy, &a, r->json,
                                             &r->resp_json)) != CD_OK)
        return err;
    r->status = 201;
    snprintf(r->location, sizeof r->location, "/v1/webhooks/%s",
             json_string_value(json_object_get(r->resp_json, "id")));
    return CD_OK;
}

enum cd_err cd__http_webhook_list(struct cd_req *r)
{
    enum cd_err err = need_outbox(r);
    return err != CD_OK ? err : cd_outbox_subscription_list(r->app->outbox, &r->resp_json);
}

enum cd_err cd__http_webhook_get(struct cd_req *r)
{
    enum cd_err err = need_outbox(r);
    return err != CD_OK ? err
                        : cd_outbox_subscription_get(r->app->outbox, r->params[0], &r->resp_json);
}

enum cd_err cd__http_webhook_update(struct cd_req *r)
{
    struct cd_outbox_actor a = actor_of(r);
    enum cd_err err = need_outbox(r);
    return err != CD_OK ? err
                        : cd_outbox_subscription_update(r->app->outbox, r->app->policy, &a,
                                                        r->params[0], r->json, &r->resp_json);
}

enum cd_err cd__http_webhook_delete(struct cd_req *r)
{
    struct cd_outbox_actor a = actor_of(r);
    enum cd_err err;

    if ((err = need_outbox(r)) != CD_OK ||
        (err = cd_outbox_subscription_delete(r->app->outbox, &a, r->params[0])) != CD_OK)
        return err;
    r->status = 204;
    return CD_OK;
}

enum cd_err cd__http_webhook_rotate(struct cd_req *r)
{
    struct cd_outbox_actor a = actor_of(r);
    enum cd_err err = need_outbox(r);
    return err != CD_OK ? err
                        : cd_outbox_subscription_rotate(r->app->outbox, &a, r->params[0],
                                                        &r->resp_json);
}

enum cd_err cd__http_webhook_test(struct cd_req *r)
{
    enum cd_err err;

    if ((err = need_outbox(r)) != CD_OK ||
        (err = cd_outbox_subscription_test(r->app->outbox, r->params[0], &r->resp_json)) !=
            CD_OK)
        return err;
    r->status = 202;
    return CD_OK;
}

/* ---- deliveries ---- */

enum cd_err cd__http_deliveries(struct cd_req *r)
{
    struct cd_outbox_delivery_query q = {cd__http_query(r, "subscription_id"),
                                         cd__http_query(r, "status"),
                                         cd__http_query(r, "cursor"), 50};
    enum cd_err err;

    if ((err = need_outbox(r)) != CD_OK ||
        (err = cd__http_query_int(r, "limit", 50, 1, 500, &q.limit)) != CD_OK)
        return err;
    return cd_outbox_deliveries(r->app->outbox, &q, &r->resp_json);
}

enum cd_err cd__http_delivery_replay(struct cd_req *r)
{
    struct cd_outbox_actor a = actor_of(r);
    enum cd_err err = need_outbox(r);
    return err != CD_OK ? err
                        : cd_outbox_delivery_replay(r->app->outbox, &a, r->params[0],
                                                    &r->resp_json);
}

enum cd_err cd__http_dead_replay(struct cd_req *r)
{
    static const char *const allowed[] = {"subscription_id", NULL};
    struct cd_outbox_actor a = actor_of(r);
    struct cd_str sub = CD_STR_NULL;
    uint64_t n = 0;
    enum cd_err err;

    if ((err = need_outbox(r)) != CD_OK || (err = cd_json_only(r->json, allowed)) != CD_OK ||
        (err = cd_json_str(r->json, "subscription_id", false, &sub)) != CD_OK)
        return err;
    if (sub.p && !cd_id_valid(sub, "whs"))
        return cd_err_set(CD_ERR_INVALID, "'subscription_id' is not a subscription id");
    if ((err = cd_outbox_dead_replay_all(r->app->outbox, &a, sub, &n)) != CD_OK)
        return err;
    r->resp_json = json_pack("{s:I}", "replayed", (json_int_t)n);
    return r->resp_json ? CD_OK : CD_ERR_NOMEM;
}

/* ---- recipients ---- */

enum cd_err cd__http_recipient_create(struct cd_req *r)
{
    struct cd_outbox_actor a = actor_of(r);
    enum cd_err err;

    if ((err = need_outbox(r)) != CD_OK ||
        (err = cd_outbox_recipient_create(r->app->outbox, &a, r->json, &r->resp_json)) != CD_OK)
        return err;
    r->status = 201;
    snprintf(r->location, sizeof r->location, "/v1/recipients/%s",
             json_string_value(json_object_get(r->resp_json, "id")));
    return CD_OK;
}

enum cd_err cd__http_recipient_list(struct cd_req *r)
{
    enum cd_err err = need_outbox(r);
    return err != CD_OK ? err : cd_outbox_recipient_list(r->app->outbox, &r->resp_json);
}

enum cd_err cd__http_recipient_get(struct cd_req *r)
{
    enum cd_err err = need_outbox(r);
    return err != CD_OK ? err
                        : cd_outbox_recipient_get(r->app->outbox, r->params[0], &r->resp_json);
}

enum cd_err cd__http_recipient_remove(struct cd_req *r)
{
    struct cd_outbox_actor a = actor_of(r);
    enum cd_err err;

    if ((err = need_outbox(r)) != CD_OK ||
        (err = cd_outbox_recipient_remove(r->app->outbox, &a, r->params[0])) != CD_OK)
        return err;
    r->status = 204;
    return CD_OK;
}

struct resolve_ctx {
    struct cd_str id;
    char resolved[CD_ID_MAX];
    bool merged;
    enum cd_core_customer_state st;
};

static enum cd_err resolve_fn(struct cd_tx *tx, void *ctx)
{
    struct resolve_ctx *c = ctx;
    return cd_core_customer_resolve(tx, c->id, c->resolved, &c->merged, &c->st);
}

enum cd_err cd__http_recipient_disclose(struct cd_req *r)
{
    static const char *const allowed[] = {"customer_id", NULL};
    struct cd_outbox_actor a = actor_of(r);
    struct resolve_ctx c = {.id = CD_STR_NULL};
    enum cd_err err;

    if ((err = need_outbox(r)) != CD_OK || (err = cd_json_only(r->json, allowed)) != CD_OK ||
        (err = cd_json_str(r->json, "customer_id", true, &c.id)) != CD_OK ||
        (err = cd_store_read(r->app->store, resolve_fn, &c)) != CD_OK)
        return err;
    if (c.st == CD_CORE_CUSTOMER_UNKNOWN)
        return cd_err_set(CD_ERR_NOT_FOUND, "no customer with the id given in 'customer_id'");
    /* A merged id's data is the survivor's: the disclosure is recorded there. */
    if ((err = cd_outbox_recipient_add_customer(r->app->outbox, &a, r->params[0],
                                                cd_str_c(c.resolved))) != CD_OK)
        return err;
    r->resp_json = json_pack("{s:s%,s:s}", "recipient_id", r->params[0].p, r->params[0].len,
                             "customer_id", c.resolved);
    return r->resp_json ? CD_OK : CD_ERR_NOMEM;
}

/* ---- what a customer's recipients were told ---- */

struct about_ctx {
    struct cd_req *r;
    char customer[CD_ID_MAX];
    int64_t since;
    json_t *out;
};

static enum cd_err customer_recipients_fn(struct cd_tx *tx, void *ctx)
{
    struct about_ctx *c = ctx;
    json_decref(c->out);
    c->out = NULL;
    return cd_outbox_recipients_of(tx, cd_str_c(c->customer), &c->out);
}

static enum cd_err customer_notices_fn(struct cd_tx *tx, void *ctx)
{
    struct about_ctx *c = ctx;
    json_decref(c->out);
    c->out = NULL;
    return cd_outbox_notices(tx, cd_str_c(c->customer), c->since,
                             cd__http_query(c->r, "request_id"), &c->out);
}

/* A listing about one customer: their id resolved, the read recorded, the items answered. */
static enum cd_err about_customer(struct cd_req *r, cd_tx_fn fn, const char *action,
                                  int64_t since)
{
    struct resolve_ctx rc = {.id = r->params[0]};
    struct about_ctx c = {r, "", since, NULL};
    enum cd_err err;

    if ((err = need_outbox(r)) != CD_OK ||
        (err = cd_store_read(r->app->store, resolve_fn, &rc)) != CD_OK)
        return err;
    if (rc.st == CD_CORE_CUSTOMER_UNKNOWN)
        return cd_err_set(CD_ERR_NOT_FOUND, "no customer with this id");
    snprintf(c.customer, sizeof c.customer, "%s", rc.resolved);
    if ((err = cd_store_read(r->app->store, fn, &c)) != CD_OK ||
        (err = cd__http_record_read(r, action, c.customer)) != CD_OK) {
        json_decref(c.out);
        return err;
    }
    r->resp_json = json_pack("{s:s,s:o}", "customer_id", c.customer, "items", c.out);
    return r->resp_json ? CD_OK : CD_ERR_NOMEM;
}

enum cd_err cd__http_customer_recipients(struct cd_req *r)
{
    return about_customer(r, customer_recipients_fn, "recipients.read", 0);
}

enum cd_err cd__http_customer_notices(struct cd_req *r)
{
    struct cd_str since = cd__http_query(r, "since");
    int64_t ms = 0;

    if (since.len && cd_time_parse(since, &ms) != CD_OK)
        return cd_err_set(CD_ERR_INVALID, "'since' must be an RFC 3339 time");
    return about_customer(r, customer_notices_fn, "recipient_notices.read", ms);
}

enum cd_err cd__http_notices_list(struct cd_req *r)
{
    enum cd_err err = need_outbox(r);
    return err != CD_OK ? err
                        : cd_outbox_notices_list(r->app->outbox, cd__http_query(r, "status"),
                                                 &r->resp_json);
}

enum cd_err cd__http_notice_confirm(struct cd_req *r)
{
    struct cd_outbox_actor a = actor_of(r);
    enum cd_err err = need_outbox(r);
    return err != CD_OK ? err
                        : cd_outbox_notice_confirm(r->app->outbox, &a, r->params[0], r->json,
                                                   &r->resp_json);
}
