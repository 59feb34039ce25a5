/* Handlers of the consent API (src/consent): decisions (single, inline on the event thread;
 * bulk as NDJSON), events, GPC signals, history, preferences, notices, receipts and keys, and
 * the RFC 8058 one-click unsubscribe pages. Thin: parse, call the engine, shape the answer. */
#include <stdio.h>
#include <string.h>
#include "audit/audit.h"
#include "consent/consent.h"
#include "http_int.h"


bool cd__http_needs_consent(const struct cd_app *app, enum cd_purpose purpose)
{
    return app->consent == NULL || cd_consent_needs_consent(app->consent, purpose);
}

static enum cd_err engine(struct cd_req *r, struct cd_consent **c)
{
    if (r->app->consent == NULL)
        return cd_err_set(CD_ERR_BUSY, "the consent engine is not running");
    *c = r->app->consent;
    return CD_OK;
}

static bool gpc_signal(const struct cd_req *r)
{
    return r->gpc.p && r->gpc.len == 1 && r->gpc.p[0] == '1';
}

static enum cd_err parse_pc(const json_t *o, enum cd_purpose *pu, enum cd_consent_channel *ch)
{
    struct cd_str p = CD_STR_NULL, c = CD_STR("*");
    enum cd_err err;

    if ((err = cd_json_str(o, "purpose", true, &p)) != CD_OK ||
        (err = cd_json_str(o, "channel", false, &c)) != CD_OK)
        return err;
    if (!cd_purpose_parse(p, pu))
        return cd_err_set(CD_ERR_INVALID, "'purpose' must be one of: %s", cd_purpose_list());
    if (!cd_consent_channel_parse(c, ch))
        return cd_err_set(CD_ERR_INVALID, "'channel' must be * or one of email, sms, phone, "
                                          "chat, social, app, push, post, in_person");
    return CD_OK;
}

/* One decision as a JSON object, written directly: the single check is the hottest route and
 * building a jansson object for it cost more than the decision itself. full adds purpose,
 * channel, basis, regime and expiry (the single check); the bulk lines carry the short form. */
static enum cd_err put_decision(struct cd_buf *b, struct cd_str id, enum cd_purpose pu,
                                enum cd_consent_channel ch, const struct cd_consent_decision *d,
                                bool full)
{
    enum cd_err err;
    char exp[CD_TIME_STRLEN], ev[CD_ID_MAX];

    /* Every value but the id is a static name or an id this server made: no escaping. */
    if ((err = cd_buf_puts(b, "{\"customer_id\":")) != CD_OK ||
        (err = cd_buf_json_string(b, id)) != CD_OK)
        return err;
    if (full && (err = cd_buf_printf(b, ",\"purpose\":\"%s\",\"channel\":\"%s\"",
                                     cd_purpose_name(pu), cd_consent_channel_name(ch))) != CD_OK)
        return err;
    if ((err = cd_buf_printf(b, ",\"allow\":%s,\"reason\":\"%s\"", d->allow ? "true" : "false",
                             d->reason)) != CD_OK)
        return err;
    if (full && (err = cd_buf_printf(b, ",\"basis\":\"%s\",\"regime\":\"%s\"", d->basis,
                                     d->regime)) != CD_OK)
        return err;
    if (d->has_event && (err = cd_buf_printf(b, ",\"event_id\":\"%s\"",
                                             cd_consent_decision_event_id(d, ev))) != CD_OK)
        return err;
    if (full && d->expires_at) {
        cd_time_format(d->expires_at, exp);
        if ((err = cd_buf_printf(b, ",\"expires_at\":\"%s\"", exp)) != CD_OK)
            return err;
    }
    return cd_buf_putc(b, '}');
}

/* POST /v1/consents/check — inline: reads only the projection. */
enum cd_err cd__http_consent_check(struct cd_req *r)
{
    static const char *const allowed[] = {"customer_id", "purpose", "channel", "topic", "at",
                                          NULL};
    struct cd_consent *c = NULL;
    struct cd_str id = CD_STR_NULL, topic = CD_STR_NULL, at = CD_STR_NULL;
    enum cd_purpose pu;
    enum cd_consent_channel ch;
    struct cd_consent_decision d;
    int64_t now = cd_now_ms();
    enum cd_err err;

    if ((err = engine(r, &c)) != CD_OK || (err = cd_json_only(r->json, allowed)) != CD_OK ||
        (err = cd_json_str(r->json, "customer_id", true, &id)) != CD_OK ||
        (err = cd_json_str(r->json, "topic", false, &topic)) != CD_OK ||
        (err = cd_json_str(r->json, "at", false, &at)) != CD_OK ||
        (err = parse_pc(r->json, &pu, &ch)) != CD_OK)
        return err;
    if (at.p && cd_time_parse(at, &now) != CD_OK)
        return cd_err_set(CD_ERR_INVALID, "'at' must be an RFC 3339 date-time");
    if ((err = cd_consent_decide_exact(c, id, pu, ch, topic, now, &d)) != CD_OK)
        return err;
    struct cd_buf out = CD_BUF_INIT(64 * 1024);
    if ((err = put_decision(&out, id, pu, ch, &d, true)) != CD_OK) {
        cd_buf_free(&out);
        return err;
    }
    r->resp_body = cd_buf_take(&out, &r->resp_len);
    r->resp_type = "application/json";
    return CD_OK;
}

/* The bulk filter's output is streamed: lines are collected in a small buffer and written to
 * the response stream as it fills, so an audience of millions never sits in memory and the
 * client sees the first decisions at once. The producer owns everything it reads: a reference
 * to the request body (ids point into it) and copies of the parameters. */
struct bulk {
    struct cd_consent *c;
    json_t *body; /* holds the ids alive */
    struct cd_str *views;
    size_t n;
    bool all, only_allowed;
    enum cd_purpose pu;
    enum cd_consent_channel ch;
    int64_t now;
    struct cd_stream *stream;
    struct cd_buf out;
    uint64_t checked, allowed;
};

#define BULK_FLUSH (32 * 1024)

static enum cd_err bulk_flush(struct bulk *b)
{
    enum cd_err err = CD_OK;

    if (b->out.len)
        err = cd__http_stream_write(b->stream, b->out.p, b->out.len);
    cd_buf_reset(&b->out);
    return err;
}

static enum cd_err bulk_emit(void *ctx, struct cd_str id, const struct cd_consent_decision *d)
{
    struct bulk *b = ctx;
    enum cd_err err;

    b->checked++;
    if (d->allow)
        b->allowed++;
    if (b->only_allowed && !d->allow)
        return CD_OK;
    /* Ids are checked shapes ("cus_" + base32) or echo what the caller sent: escaped anyway. */
    if ((err = put_decision(&b->out, id, CD_PURPOSE_SERVICE, CD_CONSENT_CHANNEL_ANY, d,
                            false)) != CD_OK ||
        (err = cd_buf_putc(&b->out, '\n')) != CD_OK)
        return err;
    return b->out.len >= BULK_FLUSH ? bulk_flush(b) : CD_OK;
}

static enum cd_err bulk_produce(struct cd_stream *s, void *ctx)
{
    struct bulk *b = ctx;
    enum cd_err err = CD_OK;

    b->stream = s;
    if (b->all || b->n > 0)
        err = cd_consent_filter(b->c, b->all ? NULL : b->views, b->n, b->pu, b->ch, b->now,
                                bulk_emit, b);
    /* The summary line says the stream is complete; a cut stream has none. */
    if (err == CD_OK)
        err = cd_buf_printf(&b->out, "{\"summary\":{\"checked\":%llu,\"allowed\":%llu}}\n",
                            (unsigned long long)b->checked, (unsigned long long)b->allowed);
    if (err == CD_OK)
        err = bulk_flush(b);
    return err;
}

static void bulk_free(void *ctx)
{
    struct bulk *b = ctx;

    cd_buf_free(&b->out);
    json_decref(b->body);
    cd_free(b->views);
    cd_free(b);
}

/* POST /v1/consents/check/bulk — an audience (ids, or every customer) as streamed NDJSON. */
enum cd_err cd__http_consent_bulk(struct cd_req *r)
{
    static const char *const allowed[] = {"purpose", "channel", "customer_ids", "all",
                                          "only_allowed", "at", NULL};
    struct cd_consent *c = NULL;
    json_t *ids = NULL;
    struct cd_str at = CD_STR_NULL;
    struct bulk *b = NULL;
    enum cd_err err;

    if ((err = engine(r, &c)) != CD_OK)
        return err;
    if ((b = cd_calloc(1, sizeof *b)) == NULL)
        return CD_ERR_NOMEM;
    b->c = c;
    b->out = CD_BUF_INIT(BULK_FLUSH + 4096);
    b->only_allowed = true;
    b->now = cd_now_ms();
    if ((err = cd_json_only(r->json, allowed)) != CD_OK ||
        (err = parse_pc(r->json, &b->pu, &b->ch)) != CD_OK ||
        (err = cd_json_arr(r->json, "customer_ids", false, &ids)) != CD_OK ||
        (err = cd_json_bool(r->json, "all", false, &b->all)) != CD_OK ||
        (err = cd_json_bool(r->json, "only_allowed", false, &b->only_allowed)) != CD_OK ||
        (err = cd_json_str(r->json, "at", false, &at)) != CD_OK)
        goto fail;
    if (at.p && cd_time_parse(at, &b->now) != CD_OK) {
        err = cd_err_set(CD_ERR_INVALID, "'at' must be an RFC 3339 date-time");
        goto fail;
    }
    if ((ids == NULL) == !b->all) {
        err = cd_err_set(CD_ERR_INVALID, "give exactly one of 'customer_ids' or 'all': true");
        goto fail;
    }
    b->n = ids ? json_array_size(ids) : 0;
    if (b->n) {
        if ((b->views = cd_calloc(b->n, sizeof *b->views)) == NULL) {
            err = CD_ERR_NOMEM;
            goto fail;
        }
        for (size_t i = 0; i < b->n; i++) {
            json_t *v = json_array_get(ids, i);
            if (!json_is_string(v)) {
                err = cd_err_set(CD_ERR_INVALID, "'customer_ids' must be strings");
                goto fail;
            }
            b->views[i] = (struct cd_str){json_string_value(v), json_string_length(v)};
        }
    }
    b->body = json_incref(r->json);
    r->produce = bulk_produce;
    r->produce_ctx = b;
    r->produce_free = bulk_free;
    r->resp_type = "application/x-ndjson";
    return CD_OK;
fail:
    bulk_free(b);
    return err;
}

/* POST /v1/consents — one event; with Sec-GPC: 1 the GPC opt-out is recorded too. */
enum cd_err cd__http_consent_record(struct cd_req *r)
{
    struct cd_consent *c = NULL;
    json_t *o = NULL, *g = NULL;
    struct cd_str id = CD_STR_NULL;
    enum cd_err err;

    if ((err = engine(r, &c)) != CD_OK)
        return err;
    if ((err = cd_consent_record(c, &r->actor, r->json, &o)) != CD_OK)
        return err;
    if (gpc_signal(r) && cd_json_str(r->json, "customer_id", true, &id) == CD_OK) {
        if ((err = cd_consent_gpc(c, &r->actor, id, &g)) != CD_OK ||
            (err = cd_json_set_new(o, "gpc", g)) != CD_OK) {
            json_decref(o);
            return err;
        }
    }
    snprintf(r->location, sizeof r->location, "%s",
             json_string_value(json_object_get(o, "receipt_url")));
    r->resp_json = o;
    r->status = 201;
    return CD_OK;
}

/* POST /v1/consents/signals — a request carrying Sec-GPC: 1 for an identified customer. */
enum cd_err cd__http_consent_signals(struct cd_req *r)
{
    static const char *const allowed[] = {"customer_id", NULL};
    struct cd_consent *c = NULL;
    struct cd_str id = CD_STR_NULL;
    enum cd_err err;

    if ((err = engine(r, &c)) != CD_OK || (err = cd_json_only(r->json, allowed)) != CD_OK ||
        (err = cd_json_str(r->json, "customer_id", true, &id)) != CD_OK)
        return err;
    if (!gpc_signal(r))
        return cd_err_set(CD_ERR_INVALID, "no signal: send the customer's Sec-GPC: 1 header");
    return cd_consent_gpc(c, &r->actor, id, &r->resp_json);
}

/* The customer's consent view as a read of personal data: restriction and consent checked,
 * the read recorded, then answered for the customer the id stands for. */
static enum cd_err consent_view(struct cd_req *r, struct cd_consent *c)
{
    char id[CD_ID_MAX];
    enum cd_err err = cd_core_customer_read_gate(r->app->core, &r->actor, r->params[0],
                                                 "consent.read", "consent", id);

    return err != CD_OK ? err : cd_consent_history(c, cd_str_c(id), &r->resp_json);
}

/* GET /v1/customers/{id}/consents */
enum cd_err cd__http_customer_consents(struct cd_req *r)
{
    struct cd_consent *c = NULL;
    enum cd_err err;

    if ((err = engine(r, &c)) != CD_OK)
        return err;
    return consent_view(r, c);
}

/* POST /v1/customers/{id}/preferences — the write stands whatever its answer may show: the
 * consent view under a declared purpose that may read it, else the customer id alone. */
enum cd_err cd__http_customer_preferences(struct cd_req *r)
{
    struct cd_consent *c = NULL;
    enum cd_err err;

    if ((err = engine(r, &c)) != CD_OK ||
        (err = cd_consent_preferences_set(c, &r->actor, r->params[0], r->json)) != CD_OK)
        return err;
    if (r->has_purpose && (err = consent_view(r, c)) != CD_ERR_PURPOSE_DENIED)
        return err;
    r->resp_json = json_pack("{s:s%}", "customer_id", r->params[0].p, r->params[0].len);
    return r->resp_json ? CD_OK : CD_ERR_NOMEM;
}

/* POST /v1/notices */
enum cd_err cd__http_notice_publish(struct cd_req *r)
{
    struct cd_consent *c = NULL;
    bool created = false;
    enum cd_err err;

    if ((err = engine(r, &c)) != CD_OK ||
        (err = cd_consent_notice_publish(c, &r->actor, r->json, &r->resp_json, &created)) !=
            CD_OK)
        return err;
    r->status = created ? 201 : 200;
    snprintf(r->location, sizeof r->location, "/v1/notices/%s",
             json_string_value(json_object_get(r->resp_json, "id")));
    return CD_OK;
}

/* GET /v1/notices/{id} */
enum cd_err cd__http_notice_get(struct cd_req *r)
{
    struct cd_consent *c = NULL;
    enum cd_err err;

    if ((err = engine(r, &c)) != CD_OK)
        return err;
    return cd_consent_notice_get(c, r->params[0], &r->resp_json);
}

/* GET /v1/consents/{event_id}/receipt */
enum cd_err cd__http_consent_receipt(struct cd_req *r)
{
    struct cd_consent *c = NULL;
    enum cd_err err;

    if ((err = engine(r, &c)) != CD_OK)
        return err;
    return cd_consent_receipt(c, r->params[0], &r->resp_json);
}

/* GET /.well-known/candor-keys.json */
enum cd_err cd__http_well_known_keys(struct cd_req *r)
{
    struct cd_consent *c = NULL;
    enum cd_err err;

    if ((err = engine(r, &c)) != CD_OK)
        return err;
    return cd_consent_keys_json(c, &r->resp_json);
}

/* GET /.well-known/gpc.json (the GPC specification's support resource) */
enum cd_err cd__http_well_known_gpc(struct cd_req *r)
{
    static const char doc[] = "{\"gpc\":true,\"lastUpdate\":\"2026-11-25\"}";

    r->resp_static = doc;
    r->resp_len = sizeof doc - 1;
    r->resp_type = "application/json";
    return CD_OK;
}

/* POST /v1/consents/unsubscribe-links */
enum cd_err cd__http_unsub_link(struct cd_req *r)
{
    static const char *const allowed[] = {"customer_id", "purpose", "channel", "base_url", NULL};
    struct cd_consent *c = NULL;
    struct cd_str id = CD_STR_NULL, base = CD_STR_NULL, pu_s = CD_STR("marketing"),
                  ch_s = CD_STR("email");
    enum cd_purpose pu;
    enum cd_consent_channel ch;
    enum cd_err err;

    if ((err = engine(r, &c)) != CD_OK || (err = cd_json_only(r->json, allowed)) != CD_OK ||
        (err = cd_json_str(r->json, "customer_id", true, &id)) != CD_OK ||
        (err = cd_json_str(r->json, "base_url", true, &base)) != CD_OK ||
        (err = cd_json_str(r->json, "purpose", false, &pu_s)) != CD_OK ||
        (err = cd_json_str(r->json, "channel", false, &ch_s)) != CD_OK)
        return err;
    if (!cd_purpose_parse(pu_s, &pu) || !cd_consent_channel_parse(ch_s, &ch))
        return cd_err_set(CD_ERR_INVALID, "unknown 'purpose' or 'channel'");
    if ((err = cd_consent_unsubscribe_link(c, &r->actor, id, pu, ch, base, &r->resp_json)) !=
        CD_OK)
        return err;
    r->status = 201;
    return CD_OK;
}

static enum cd_err html(struct cd_req *r, const char *title, const char *body_html)
{
    struct cd_buf b = CD_BUF_INIT(16 * 1024);
    enum cd_err err = cd_buf_printf(
        &b,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width\"><title>%s</title>"
        "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:3rem auto;"
        "padding:0 1rem}button{font:inherit;padding:.5rem 1rem}</style></head>"
        "<body><main><h1>%s</h1>%s</main></body></html>\n",
        title, title, body_html);
    if (err != CD_OK) {
        cd_buf_free(&b);
        return err;
    }
    r->resp_body = cd_buf_take(&b, &r->resp_len);
    r->resp_type = "text/html; charset=utf-8";
    return CD_OK;
}

/* GET /u/{token}: a confirmation page; never unsubscribes by itself (link scanners GET). */
enum cd_err cd__http_unsub_page(struct cd_req *r)
{
    struct cd_consent *c = NULL;
    enum cd_purpose pu;
    enum cd_consent_channel ch;
    char form[1024];
    enum cd_err err;

    if ((err = engine(r, &c)) != CD_OK ||
        (err = cd_consent_unsubscribe_peek(c, r->params[0], &pu, &ch)) != CD_OK)
        return err;
    /* The token authenticated, so it is base64url only: safe inside the attribute. */
    snprintf(form, sizeof form,
             "<p>Stop receiving <strong>%s</strong> messages by <strong>%s</strong>?</p>"
             "<form method=\"post\" action=\"/u/%.*s\">"
             "<input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">"
             "<button type=\"submit\">Unsubscribe</button></form>",
             cd_purpose_name(pu), cd_consent_channel_name(ch), (int)r->params[0].len,
             r->params[0].p);
    return html(r, "Unsubscribe", form);
}

/* True if the body carries List-Unsubscribe=One-Click (urlencoded or multipart, RFC 8058 3.1). */
static bool one_click(const struct cd_req *r)
{
    const char *p = r->body.p;
    size_t n = r->body.len;

    if (p == NULL)
        return false;
    if (r->content_type.p && r->content_type.len >= 19 &&
        strncasecmp(r->content_type.p, "multipart/form-data", 19) == 0)
        return memmem(p, n, "name=\"List-Unsubscribe\"", 23) && memmem(p, n, "One-Click", 9);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && p[j] != '&')
            j++;
        if (j - i == 26 && memcmp(p + i, "List-Unsubscribe=One-Click", 26) == 0)
            return true;
        i = j + 1;
    }
    return false;
}

/* POST /u/{token} with List-Unsubscribe=One-Click: withdraws without login. */
enum cd_err cd__http_unsub_post(struct cd_req *r)
{
    struct cd_consent *c = NULL;
    json_t *o = NULL;
    enum cd_err err;

    if ((err = engine(r, &c)) != CD_OK)
        return err;
    if (!one_click(r))
        return cd_err_set(CD_ERR_INVALID, "the body must be List-Unsubscribe=One-Click "
                                          "(RFC 8058)");
    if ((err = cd_consent_unsubscribe(c, r->params[0], r->request_id, &o)) != CD_OK)
        return err;
    json_decref(o);
    return html(r, "Unsubscribed",
                "<p>You will no longer receive these messages. The change is recorded with a "
                "signed receipt.</p>");
}
