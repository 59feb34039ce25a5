/* The route table — the one source of truth for the API surface; docs/openapi.yaml is checked
 * against it by tests/unit/test_http.c — and the thin handlers: parse parameters, call the
 * domain, hand back JSON. */
#include <stdio.h>
#include <string.h>
#include "audit/audit.h"
#include "calendar/calendar.h"
#include "cases/cases.h"
#include "http_int.h"

#define STAFF (CD_ROLE_BIT(CD_ROLE_ADMIN) | CD_ROLE_BIT(CD_ROLE_SUPERVISOR) | \
               CD_ROLE_BIT(CD_ROLE_AGENT))
#define WRITERS (STAFF | CD_ROLE_BIT(CD_ROLE_INTEGRATION))
#define READERS (STAFF | CD_ROLE_BIT(CD_ROLE_COMPLIANCE) | CD_ROLE_BIT(CD_ROLE_INTEGRATION))
#define ADMIN CD_ROLE_BIT(CD_ROLE_ADMIN)
#define OVERSIGHT (CD_ROLE_BIT(CD_ROLE_ADMIN) | CD_ROLE_BIT(CD_ROLE_COMPLIANCE))
#define SUPERVISION (CD_ROLE_BIT(CD_ROLE_ADMIN) | CD_ROLE_BIT(CD_ROLE_SUPERVISOR))
/* Data-subject requests: anyone who meets customers may file one; the privacy office (admin,
 * compliance: the roles that may declare legal_obligation) handles them. */
#define DSAR_INTAKE (WRITERS | CD_ROLE_BIT(CD_ROLE_COMPLIANCE))
#define DSAR_HANDLERS OVERSIGHT
/* Legal holds: those who answer for keeping data (compliance) and those who run the teams. */
#define HOLDERS (SUPERVISION | CD_ROLE_BIT(CD_ROLE_COMPLIANCE))

unsigned cd__http_fields(const struct cd_req *r)
{
    /* The one place a handler learns what its answer may carry: nothing personal without a
     * declared purpose, or on a route the table does not mark as answering with it. */
    if (!r->has_purpose || !(r->route->flags & (CD_ROUTE_PERSONAL | CD_ROUTE_ECHO)))
        return CD_FIELDS_REFERENCE;
    return r->grant.fields;
}

bool cd__http_subject(struct cd_req *r, char out[CD_ID_MAX])
{
    switch (r->route->subject) {
    case CD_SUBJECT_CUSTOMER:
        if (!cd_id_valid(r->params[0], "cus"))
            return false;
        snprintf(out, CD_ID_MAX, "%.*s", (int)r->params[0].len, r->params[0].p);
        return true;
    case CD_SUBJECT_INTERACTION:
        return cd_core_interaction_customer(r->app->core, r->params[0], out) == CD_OK;
    case CD_SUBJECT_CASE:
        return r->app->cases && cd_cases_customer(r->app->cases, r->params[0], out) == CD_OK;
    case CD_SUBJECT_SELF:
        if (!r->via_portal)
            return false;
        snprintf(out, CD_ID_MAX, "%s", r->portal.customer_id);
        return true;
    case CD_SUBJECT_NONE:
        break;
    }
    return false;
}

enum cd_err cd__http_record_read(struct cd_req *r, const char *action, const char *customer_id)
{
    struct cd_audit_event ev = {.action = action,
                                .outcome = "ok",
                                .actor_token = r->actor.token_id,
                                .actor_role = r->actor.role,
                                .actor_name = r->actor.name,
                                .purpose = r->actor.purpose,
                                .request_id = r->request_id,
                                .customer_id = customer_id,
                                .categories = "reference"};
    return cd_audit_record(r->app->store, &ev);
}

static enum cd_err created(struct cd_req *r, json_t *o, bool replayed)
{
    const char *id = json_string_value(json_object_get(o, "id"));
    const char *base = strncmp(r->path, "/v1/customers", 13) == 0 ? "/v1/customers"
                                                                  : "/v1/interactions";

    r->resp_json = o;
    r->status = replayed ? 200 : 201;
    r->replayed = replayed;
    if (id)
        snprintf(r->location, sizeof r->location, "%s/%s", base, id);
    return CD_OK;
}

/* A JSON answer a domain call wrote as text: out's bytes become the body (the request frees
 * them), or, when the call failed, out is freed and err returned. */
static enum cd_err json_text_answer(struct cd_req *r, struct cd_buf *out, enum cd_err err)
{
    if (err != CD_OK || out->p == NULL) {
        cd_buf_free(out);
        return err != CD_OK ? err : CD_ERR_NOMEM;
    }
    r->resp_body = cd_buf_take(out, &r->resp_len);
    r->resp_type = "application/json";
    return CD_OK;
}

/* ---- operational ---- */

static enum cd_err h_healthz(struct cd_req *r)
{
    static const char ok[] = "{\"status\":\"ok\"}";
    r->resp_static = ok;
    r->resp_len = sizeof ok - 1;
    r->resp_type = "application/json";
    return CD_OK;
}

static enum cd_err h_readyz(struct cd_req *r)
{
    int64_t fresh = cd_store_feed_fresh_ms(r->app->store);

    if (!cd_store_ping(r->app->store))
        return cd_err_set(CD_ERR_BUSY, "the database is not reachable");
    /* Several servers on one database: a server whose view of the others' changes is out of
     * date refuses the decisions that need it, so a load balancer should send traffic
     * elsewhere (docs/scaling.md). */
    if (fresh != INT64_MAX && cd_now_ms() - fresh > CD_STORE_FEED_BOUND_MS)
        return cd_err_set(CD_ERR_BUSY, "this server has not heard of the other servers' changes "
                                       "for over %d ms", CD_STORE_FEED_BOUND_MS);
    r->resp_json = json_pack("{s:s,s:s}", "status", "ready", "store",
                             cd_store_backend(r->app->store));
    return r->resp_json ? CD_OK : CD_ERR_NOMEM;
}

static enum cd_err h_metrics(struct cd_req *r)
{
    struct cd_buf b = CD_BUF_INIT(4 * 1024 * 1024);
    enum cd_err err = cd__http_metrics_render(r->app, &b);

    if (err == CD_OK && r->app->cases)
        err = cd_cases_metrics(r->app->cases, &b);
    if (err == CD_OK && r->app->dsar)
        err = cd__http_metrics_dsar(r->app->dsar, &b);
    if (err != CD_OK) {
        cd_buf_free(&b);
        return err;
    }
    r->resp_body = cd_buf_take(&b, &r->resp_len);
    if (r->resp_body == NULL) {
        r->resp_static = "";
        r->resp_len = 0;
    }
    r->resp_type = "text/plain; version=0.0.4";
    return CD_OK;
}

static enum cd_err h_openapi(struct cd_req *r)
{
    return cd__http_openapi_json(&r->resp_json);
}

static enum cd_err h_problem_doc(struct cd_req *r)
{
    const struct cd_problem_kind *k = cd__http_problem_by_slug(r->params[0]);

    if (k == NULL)
        return cd_err_set(CD_ERR_NOT_FOUND, "no such problem type");
    r->resp_json = json_pack("{s:s,s:s,s:i}", "type", r->path, "title", k->title, "status",
                             k->status);
    return r->resp_json ? CD_OK : CD_ERR_NOMEM;
}

/* ---- customers ---- */

static enum cd_err h_customer_create(struct cd_req *r)
{
    struct cd_idem idem;
    const struct cd_idem *ip = NULL;
    json_t *o = NULL;
    bool replayed = false;
    enum cd_err err;

    if ((err = cd__http_idem(r, &idem, &ip)) != CD_OK ||
        (err = cd_core_customer_create(r->app->core, &r->actor, r->json, ip, cd__http_fields(r),
                                       &o, &replayed)) != CD_OK)
        return err;
    return created(r, o, replayed);
}

static enum cd_err h_customer_list(struct cd_req *r)
{
    int limit = 50;
    enum cd_err err = cd__http_query_int(r, "limit", 50, 1, 200, &limit);

    if (err != CD_OK)
        return err;
    return cd_core_customer_list(r->app->core, &r->actor, cd__http_query(r, "cursor"), limit,
                                 cd__http_fields(r), &r->resp_json);
}

static enum cd_err h_customer_lookup(struct cd_req *r)
{
    static const char *const allowed[] = {"type", "value", "network", NULL};
    struct cd_str type = CD_STR_NULL, value = CD_STR_NULL, network = CD_STR_NULL;
    enum cd_err err;

    if ((err = cd_json_only(r->json, allowed)) != CD_OK ||
        (err = cd_json_str(r->json, "type", true, &type)) != CD_OK ||
        (err = cd_json_str(r->json, "value", true, &value)) != CD_OK ||
        (err = cd_json_str(r->json, "network", false, &network)) != CD_OK)
        return err;
    return cd_core_customer_find(r->app->core, &r->actor, type, network, value,
                                 cd__http_fields(r), &r->resp_json);
}

static enum cd_err h_customer_get(struct cd_req *r)
{
    return cd_core_customer_get(r->app->core, &r->actor, r->params[0], cd__http_fields(r),
                                &r->resp_json);
}

static enum cd_err h_customer_patch(struct cd_req *r)
{
    return cd_core_customer_update(r->app->core, &r->actor, r->params[0], r->json,
                                   cd__http_fields(r), &r->resp_json);
}

static enum cd_err h_identity_add(struct cd_req *r)
{
    enum cd_err err = cd_core_identity_add(r->app->core, &r->actor, r->params[0], r->json,
                                           cd__http_fields(r), &r->resp_json);
    if (err == CD_OK)
        r->status = 201;
    return err;
}

static enum cd_err h_customer_merge(struct cd_req *r)
{
    static const char *const allowed[] = {"merge", NULL};
    struct cd_str merged = CD_STR_NULL;
    enum cd_err err;

    if ((err = cd_json_only(r->json, allowed)) != CD_OK ||
        (err = cd_json_str(r->json, "merge", true, &merged)) != CD_OK)
        return err;
    return cd_core_customer_merge(r->app->core, &r->actor, r->params[0], merged,
                                  cd__http_fields(r), &r->resp_json);
}

static enum cd_err h_customer_restrict(struct cd_req *r)
{
    static const char *const allowed[] = {"restricted", NULL};
    bool restricted = false;
    enum cd_err err;

    if ((err = cd_json_only(r->json, allowed)) != CD_OK ||
        (err = cd_json_bool(r->json, "restricted", true, &restricted)) != CD_OK)
        return err;
    return cd_core_customer_restrict(r->app->core, &r->actor, r->params[0], restricted,
                                     cd__http_fields(r), &r->resp_json);
}

static enum cd_err h_timeline(struct cd_req *r)
{
    struct cd_timeline_query q = {cd__http_query(r, "cursor"), 50, cd__http_query(r, "channel"),
                                  cd__http_query(r, "direction"), cd__http_query(r, "thread_id")};
    enum cd_err err = cd__http_query_int(r, "limit", 50, 1, 200, &q.limit);

    if (err != CD_OK)
        return err;
    struct cd_buf out = CD_BUF_INIT(CD_CORE_ANSWER_MAX);
    return json_text_answer(r, &out,
                            cd_core_timeline(r->app->core, &r->actor, r->params[0], &q,
                                             cd__http_fields(r), &out));
}

static enum cd_err h_access_log(struct cd_req *r)
{
    int limit = 50;
    enum cd_err err = cd__http_query_int(r, "limit", 50, 1, 500, &limit);

    if (err != CD_OK)
        return err;
    char id[CD_ID_MAX];
    /* Who read a customer's data is itself about them: checked and recorded like a read. */
    if ((err = cd_core_customer_read_gate(r->app->core, &r->actor, r->params[0],
                                          "access_log.read", "access_log", id)) != CD_OK)
        return err;
    return cd_audit_access_log(r->app->store, r->params[0], cd__http_query(r, "cursor"), limit,
                               &r->resp_json);
}

/* ---- possible duplicates ---- */

static enum cd_err h_duplicates_list(struct cd_req *r)
{
    int limit = 50;
    enum cd_err err = cd__http_query_int(r, "limit", 50, 1, 200, &limit);

    if (err != CD_OK)
        return err;
    return cd_core_duplicates_list(r->app->core, &r->actor, cd__http_query(r, "status"),
                                   cd__http_query(r, "cursor"), limit, cd__http_fields(r),
                                   &r->resp_json);
}

static enum cd_err h_duplicate_merge(struct cd_req *r)
{
    static const char *const allowed[] = {"survivor", NULL};
    struct cd_str survivor = CD_STR_NULL;
    enum cd_err err;

    if ((err = cd_json_only(r->json, allowed)) != CD_OK ||
        (err = cd_json_str(r->json, "survivor", false, &survivor)) != CD_OK)
        return err;
    return cd_core_duplicate_merge(r->app->core, &r->actor, r->params[0], survivor,
                                   &r->resp_json);
}

static enum cd_err h_duplicate_dismiss(struct cd_req *r)
{
    return cd_core_duplicate_dismiss(r->app->core, &r->actor, r->params[0], &r->resp_json);
}

/* ---- interactions ---- */

/* Ingestion is the hot write path: it does not hold a worker during the group commit. */
static enum cd_err interaction_created(struct cd_req *r)
{
    struct cd_buf out = CD_BUF_INIT(CD_CORE_ANSWER_MAX);
    bool replayed = false;
    char id[CD_ID_MAX];
    enum cd_err err = cd_core_interaction_ingest_finish(r->finish_ctx, &out, &replayed, id);

    r->finish_ctx = NULL;
    if (err == CD_ERR_NOMEM && id[0] && !replayed) {
        cd_buf_free(&out);
        /* The write is durable: answering 503 would invite a duplicate. A 201 with the id and
         * Location, in memory the request already holds, says what was created. */
        r->status = 201;
        snprintf(r->location, sizeof r->location, "/v1/interactions/%s", id);
        snprintf(r->small_body, sizeof r->small_body, "{\"id\":\"%s\"}", id);
        r->resp_static = r->small_body;
        r->resp_len = strlen(r->small_body);
        r->resp_type = "application/json";
        return CD_OK;
    }
    if ((err = json_text_answer(r, &out, err)) != CD_OK)
        return err;
    r->status = replayed ? 200 : 201;
    r->replayed = replayed;
    snprintf(r->location, sizeof r->location, "/v1/interactions/%s", id);
    return CD_OK;
}

static void interaction_written(void *ctx, struct cd_core_ingest *op)
{
    cd__http_deferred_done(ctx, op, cd_core_ingest_finish_reads(op));
}

static enum cd_err h_interaction_create(struct cd_req *r)
{
    struct cd_idem idem;
    const struct cd_idem *ip = NULL;
    json_t *o = NULL;
    enum cd_err err;

    if ((err = cd__http_idem(r, &idem, &ip)) != CD_OK)
        return err;
    cd__http_defer(r, interaction_created);
    err = cd_core_interaction_ingest_start(r->app->core, &r->actor, r->json, ip,
                                           cd__http_fields(r), interaction_written, r, &o);
    if (err == CD_OK)
        return CD_OK;
    cd__http_defer_cancel(r);
    /* The problem carries the verdict, the findings (personal data masked) and a redacted copy. */
    if (err == CD_ERR_GUARD_BLOCKED || err == CD_ERR_PURPOSE_MISMATCH)
        r->problem_ext = o;
    else
        json_decref(o);
    return err;
}

static enum cd_err h_interaction_get(struct cd_req *r)
{
    struct cd_buf out = CD_BUF_INIT(CD_CORE_ANSWER_MAX);
    return json_text_answer(r, &out,
                            cd_core_interaction_get(r->app->core, &r->actor, r->params[0],
                                                    cd__http_fields(r), &out));
}

/* ---- tokens ---- */

/* {"expires_in": seconds} or {"expires_at": RFC 3339}, at most one: *at gets the moment the
 * token ends (0: never). */
static enum cd_err token_expiry(const json_t *body, int64_t *at)
{
    json_t *in = json_object_get(body, "expires_in");
    struct cd_str ts = CD_STR_NULL;
    int64_t now = cd_now_ms();
    enum cd_err err;

    *at = 0;
    if ((err = cd_json_str(body, "expires_at", false, &ts)) != CD_OK)
        return err;
    if (in && ts.p)
        return cd_err_set(CD_ERR_INVALID, "give at most one of 'expires_in' and 'expires_at'");
    if (in) {
        if (!json_is_integer(in) || json_integer_value(in) <= 0 ||
            json_integer_value(in) > CD_AUTH_MAX_LIFETIME_MS / 1000)
            return cd_err_set(CD_ERR_INVALID, "'expires_in' is a number of seconds, 1 to "
                                              "316224000 (ten years)");
        *at = now + (int64_t)json_integer_value(in) * 1000;
    } else if (ts.p) {
        if ((err = cd_time_parse(ts, at)) != CD_OK)
            return cd_err_set(err, "'expires_at': %s", cd_err_detail());
    } else {
        return CD_OK;
    }
    return cd_auth_expiry_check(*at, now);
}

static enum cd_err h_token_create(struct cd_req *r)
{
    static const char *const allowed[] = {"role", "name", "expires_in", "expires_at", NULL};
    struct cd_str role_s = CD_STR_NULL, name = CD_STR_NULL;
    enum cd_role role;
    char token[CD_TOKEN_LEN + 1], id[CD_ID_MAX], ts[CD_TIME_STRLEN];
    int64_t expires_at = 0;
    enum cd_err err;

    if ((err = cd_json_only(r->json, allowed)) != CD_OK ||
        (err = cd_json_str(r->json, "role", true, &role_s)) != CD_OK ||
        (err = cd_json_str(r->json, "name", true, &name)) != CD_OK ||
        (err = token_expiry(r->json, &expires_at)) != CD_OK)
        return err;
    if (!cd_role_parse(role_s, &role))
        return cd_err_set(CD_ERR_INVALID, "'role' must be one of %s", CD_ROLE_NAMES);
    if ((err = cd_auth_token_create(r->app->store, role, name, expires_at,
                                    r->principal.token_id, r->request_id, token, id)) != CD_OK)
        return err;
    cd_time_format(expires_at, ts);
    r->resp_json = json_pack("{s:s,s:s,s:s%,s:s,s:o}", "id", id, "role", cd_role_name(role),
                             "name", name.p, name.len, "token", token, "expires_at",
                             expires_at ? json_string(ts) : json_null());
    memset(token, 0, sizeof token);
    r->status = 201;
    return r->resp_json ? CD_OK : CD_ERR_NOMEM;
}

/* ---- business calendars ---- */

static enum cd_err h_calendar_list(struct cd_req *r)
{
    json_t *items = json_array();
    enum cd_err err = items ? CD_OK : CD_ERR_NOMEM;
    size_t n = r->app->calendars ? cd_calendars_count(r->app->calendars) : 0;

    for (size_t i = 0; err == CD_OK && i < n; i++) {
        json_t *c = NULL;
        if ((err = cd_calendar_json(cd_calendars_at(r->app->calendars, i), &c)) == CD_OK &&
            json_array_append_new(items, c) != 0)
            err = CD_ERR_NOMEM;
    }
    if (err == CD_OK && (r->resp_json = json_pack("{s:o}", "items", items)) == NULL)
        return CD_ERR_NOMEM;
    if (err != CD_OK)
        json_decref(items);
    return err;
}

static enum cd_err h_token_list(struct cd_req *r)
{
    json_t *items = NULL;
    enum cd_err err = cd_auth_token_list(r->app->store, &items);

    if (err != CD_OK)
        return err;
    r->resp_json = json_pack("{s:o}", "items", items);
    return r->resp_json ? CD_OK : CD_ERR_NOMEM;
}

static enum cd_err h_token_revoke(struct cd_req *r)
{
    enum cd_err err = cd_auth_token_revoke(r->app->store, r->params[0], r->principal.token_id,
                                           r->request_id);
    if (err == CD_OK) {
        cd_auth_cache_forget(r->auth_cache);
        r->status = 204;
    }
    return err;
}

#define PUB CD_ROUTE_PUBLIC
#define INL CD_ROUTE_INLINE
#define JSN CD_ROUTE_JSON
#define IDM CD_ROUTE_IDEMPOTENT
#define PII (CD_ROUTE_PERSONAL | CD_ROUTE_PURPOSE)
#define CUS CD_SUBJECT_CUSTOMER
#define ITR CD_SUBJECT_INTERACTION
#define CAS CD_SUBJECT_CASE
/* A read about a customer whose answer holds no personal data: it still names a purpose, is
 * checked against the policy and recorded on the customer's access log. */
#define PUR CD_ROUTE_PURPOSE
#define ECH CD_ROUTE_ECHO
/* The customer's own, in their self-service session; with their personal data in the answer. */
#define SLF CD_ROUTE_SELF
#define SLFP (CD_ROUTE_SELF | CD_ROUTE_PERSONAL)
#define ME CD_SUBJECT_SELF

/* A row that names no subject leaves the last field out (CD_SUBJECT_NONE), so rows read as
 * the table's columns and a new route needs no more than it says. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
const struct cd_route cd__http_routes[] = {
    {"GET", "/healthz", h_healthz, 0, PUB | INL, "health"},
    {"GET", "/readyz", h_readyz, 0, PUB, "ready"},
    {"GET", "/metrics", h_metrics, 0, PUB | INL, "metrics"},
    {"GET", "/v1/openapi.json", h_openapi, 0, PUB | INL, "openapi"},
    {"GET", "/problems/{slug}", h_problem_doc, 0, PUB | INL, "problemType"},
    {"POST", "/v1/customers", h_customer_create, WRITERS, JSN | IDM | ECH, "createCustomer"},
    {"GET", "/v1/customers", h_customer_list, READERS, PII, "listCustomers"},
    {"POST", "/v1/customers/lookup", h_customer_lookup, READERS, PII | JSN, "lookupCustomer"},
    {"GET", "/v1/customers/{id}", h_customer_get, READERS, PII, "getCustomer", CUS},
    {"PATCH", "/v1/customers/{id}", h_customer_patch, WRITERS, PII | JSN, "updateCustomer",
     CUS},
    {"POST", "/v1/customers/{id}/identities", h_identity_add, WRITERS, PII | JSN, "addIdentity",
     CUS},
    {"POST", "/v1/customers/{id}/merge", h_customer_merge,
     CD_ROLE_BIT(CD_ROLE_ADMIN) | CD_ROLE_BIT(CD_ROLE_SUPERVISOR), PII | JSN, "mergeCustomers",
     CUS},
    {"POST", "/v1/customers/{id}/restriction", h_customer_restrict,
     CD_ROLE_BIT(CD_ROLE_ADMIN) | CD_ROLE_BIT(CD_ROLE_SUPERVISOR) | CD_ROLE_BIT(CD_ROLE_COMPLIANCE),
     JSN, "restrictCustomer", CUS},
    {"GET", "/v1/customers/{id}/timeline", h_timeline, READERS, PII, "getTimeline", CUS},
    {"GET", "/v1/customers/{id}/access-log", h_access_log, READERS, PII, "getAccessLog", CUS},
    /* legal holds: handlers in h_retention.c */
    {"GET", "/v1/customers/{id}/holds", cd__http_holds_list, HOLDERS, PUR, "listHolds", CUS},
    {"POST", "/v1/customers/{id}/holds", cd__http_hold_create, HOLDERS, JSN, "createHold", CUS},
    {"POST", "/v1/customers/{id}/holds/{hold_id}/release", cd__http_hold_release, HOLDERS, JSN,
     "releaseHold", CUS},
    {"GET", "/v1/customers/{id}/recipients", cd__http_customer_recipients, HOLDERS, PUR,
     "getCustomerRecipients", CUS},
    {"GET", "/v1/customers/{id}/recipient-notices", cd__http_customer_notices, HOLDERS, PUR,
     "getCustomerRecipientNotices", CUS},
    {"DELETE", "/v1/customers/{id}/sessions", cd__http_customer_sessions_revoke, OVERSIGHT, 0,
     "revokeCustomerSessions", CUS},
    {"GET", "/v1/possible-duplicates", h_duplicates_list, SUPERVISION, PII,
     "listPossibleDuplicates"},
    {"POST", "/v1/possible-duplicates/{id}/merge", h_duplicate_merge, SUPERVISION, JSN,
     "mergePossibleDuplicate"},
    {"POST", "/v1/possible-duplicates/{id}/dismiss", h_duplicate_dismiss, SUPERVISION, 0,
     "dismissPossibleDuplicate"},
    {"POST", "/v1/interactions", h_interaction_create, WRITERS, JSN | IDM | ECH,
     "createInteraction"},
    {"POST", "/v1/interactions:batch", cd__http_interactions_batch, WRITERS, JSN | ECH,
     "ingestInteractionsBatch"},
    {"GET", "/v1/interactions/{id}", h_interaction_get, READERS, PII, "getInteraction", ITR},
    {"POST", "/v1/guard/check", cd__http_guard_check, READERS, JSN, "checkMessage"},
    {"POST", "/v1/guard/reload", cd__http_guard_reload, ADMIN, 0, "reloadGuardRules"},
    {"POST", "/v1/tokens", h_token_create, ADMIN, JSN, "createToken"},
    {"GET", "/v1/tokens", h_token_list, ADMIN, 0, "listTokens"},
    {"GET", "/v1/calendars", h_calendar_list, READERS, 0, "listCalendars"},
    {"DELETE", "/v1/tokens/{id}", h_token_revoke, ADMIN, 0, "revokeToken"},
    /* data-subject requests: handlers in h_dsar.c */
    {"POST", "/v1/dsar", cd__http_dsar_create, DSAR_INTAKE, JSN, "createDsar"},
    {"GET", "/v1/dsar", cd__http_dsar_list, DSAR_INTAKE, 0, "listDsars"},
    {"GET", "/v1/dsar/regimes", cd__http_dsar_regimes, READERS, 0, "listDsarRegimes"},
    {"GET", "/v1/dsar/{id}", cd__http_dsar_get, DSAR_INTAKE, PII, "getDsar"},
    {"POST", "/v1/dsar/{id}/transition", cd__http_dsar_transition, DSAR_HANDLERS, JSN,
     "transitionDsar"},
    {"POST", "/v1/dsar/{id}/extension", cd__http_dsar_extend, DSAR_HANDLERS, JSN, "extendDsar"},
    {"POST", "/v1/dsar/{id}/fulfilment", cd__http_dsar_fulfil, DSAR_HANDLERS, JSN, "fulfilDsar"},
    {"POST", "/v1/dsar/{id}/acknowledgement", cd__http_dsar_acknowledge, DSAR_HANDLERS, 0,
     "acknowledgeDsar"},
    {"GET", "/v1/dsar/{id}/export", cd__http_dsar_export, DSAR_HANDLERS, PII, "exportDsar"},
    {"POST", "/v1/dsar/{id}/verification", cd__http_dsar_verify_send, DSAR_HANDLERS, JSN,
     "sendDsarVerificationCode"},
    {"POST", "/v1/dsar/{id}/verification/check", cd__http_dsar_verify_check, DSAR_HANDLERS, JSN,
     "checkDsarVerificationCode"},
    {"POST", "/v1/interactions/{id}/dsar", cd__http_dsar_convert, DSAR_INTAKE, JSN,
     "convertInteractionToDsar"},
    /* cases, the queue, agents and service levels: handlers in h_cases.c */
    {"GET", "/v1/cases", cd__http_cases_list, READERS, PII, "listCases"},
    {"POST", "/v1/cases", cd__http_cases_create, WRITERS, JSN | IDM | ECH, "createCase"},
    {"GET", "/v1/cases/{id}", cd__http_cases_get, READERS, PII, "getCase", CAS},
    {"PATCH", "/v1/cases/{id}", cd__http_cases_update, WRITERS, JSN | ECH, "updateCase", CAS},
    {"POST", "/v1/cases/{id}/interactions", cd__http_cases_link, WRITERS, JSN | ECH,
     "linkCaseInteractions", CAS},
    {"GET", "/v1/cases/{id}/events", cd__http_cases_events, READERS, 0, "listCaseEvents", CAS},
    {"GET", "/v1/cases/{id}/eta", cd__http_cases_eta, READERS, 0, "getCaseEta", CAS},
    {"GET", "/v1/queue/next", cd__http_queue_next, STAFF, PII, "previewNextCase"},
    {"POST", "/v1/queue/next", cd__http_queue_next, STAFF, PII, "takeNextCase"},
    {"GET", "/v1/agents", cd__http_agents_list, READERS, 0, "listAgents"},
    {"POST", "/v1/agents", cd__http_agents_create, SUPERVISION, JSN, "createAgent"},
    {"GET", "/v1/agents/{id}", cd__http_agents_get, READERS, 0, "getAgent"},
    {"PUT", "/v1/agents/{id}", cd__http_agents_put, SUPERVISION, JSN, "putAgent"},
    {"GET", "/v1/sla-policies", cd__http_sla_policies, READERS, 0, "listSlaPolicies"},
    {"GET", "/v1/sla-report", cd__http_sla_report, OVERSIGHT | SUPERVISION, 0, "getSlaReport"},
    /* incidents: handlers in h_cases.c */
    {"GET", "/v1/incidents", cd__http_incidents_list, READERS, 0, "listIncidents"},
    {"POST", "/v1/incidents", cd__http_incidents_create, SUPERVISION, JSN | IDM,
     "createIncident"},
    {"GET", "/v1/incidents/{id}", cd__http_incidents_get, READERS, 0, "getIncident"},
    {"PATCH", "/v1/incidents/{id}", cd__http_incidents_update, SUPERVISION, JSN,
     "updateIncident"},
    {"GET", "/v1/incidents/{id}/customers", cd__http_incidents_customers, HOLDERS, 0,
     "listIncidentCustomers"},
    {"POST", "/v1/incidents/{id}/customers", cd__http_incidents_affect, SUPERVISION, JSN,
     "addIncidentCustomers"},
    {"POST", "/v1/incidents/{id}/notify", cd__http_incidents_notify, SUPERVISION, JSN,
     "notifyIncidentCustomers"},
    /* outbox, webhooks and recipients: handlers in h_webhooks.c. Literal paths before the
     * {id} ones: the first pattern that matches serves. */
    {"GET", "/v1/webhooks/event-types", cd__http_event_types, READERS, 0, "listEventTypes"},
    {"POST", "/v1/webhooks", cd__http_webhook_create, ADMIN, JSN, "createWebhook"},
    {"GET", "/v1/webhooks", cd__http_webhook_list, ADMIN, 0, "listWebhooks"},
    {"GET", "/v1/webhooks/{id}", cd__http_webhook_get, ADMIN, 0, "getWebhook"},
    {"PATCH", "/v1/webhooks/{id}", cd__http_webhook_update, ADMIN, JSN, "updateWebhook"},
    {"DELETE", "/v1/webhooks/{id}", cd__http_webhook_delete, ADMIN, 0, "deleteWebhook"},
    {"POST", "/v1/webhooks/{id}/rotate-secret", cd__http_webhook_rotate, ADMIN, 0,
     "rotateWebhookSecret"},
    {"POST", "/v1/webhooks/{id}/test", cd__http_webhook_test, ADMIN, 0, "testWebhook"},
    {"GET", "/v1/webhook-deliveries", cd__http_deliveries, ADMIN, 0, "listWebhookDeliveries"},
    {"POST", "/v1/webhook-deliveries/replay", cd__http_dead_replay, ADMIN, JSN,
     "replayDeadLetters"},
    {"POST", "/v1/webhook-deliveries/{id}/replay", cd__http_delivery_replay, ADMIN, 0,
     "replayWebhookDelivery"},
    {"POST", "/v1/recipients", cd__http_recipient_create, OVERSIGHT, JSN, "createRecipient"},
    {"GET", "/v1/recipients", cd__http_recipient_list, OVERSIGHT, 0, "listRecipients"},
    {"GET", "/v1/recipients/{id}", cd__http_recipient_get, OVERSIGHT, 0, "getRecipient"},
    {"DELETE", "/v1/recipients/{id}", cd__http_recipient_remove, OVERSIGHT, 0,
     "removeRecipient"},
    {"POST", "/v1/recipients/{id}/customers", cd__http_recipient_disclose,
     OVERSIGHT | CD_ROLE_BIT(CD_ROLE_SUPERVISOR), JSN, "addRecipientCustomer"},
    {"GET", "/v1/recipient-notices", cd__http_notices_list, OVERSIGHT, 0,
     "listRecipientNotices"},
    {"POST", "/v1/recipient-notices/{id}/confirm", cd__http_notice_confirm, OVERSIGHT, JSN,
     "confirmRecipientNotice"},
    /* retention: handlers in h_retention.c */
    {"GET", "/v1/retention/rules", cd__http_retention_rules, OVERSIGHT, 0, "getRetentionRules"},
    {"POST", "/v1/retention/runs", cd__http_retention_run, OVERSIGHT, JSN, "runRetention"},
    {"GET", "/v1/retention/runs", cd__http_retention_runs, OVERSIGHT, 0, "listRetentionRuns"},
    /* audit ledger: handlers in h_audit.c */
    {"GET", "/v1/audit", cd__http_audit_list, OVERSIGHT, 0, "listAuditEvents"},
    {"POST", "/v1/audit/verify", cd__http_audit_verify, OVERSIGHT, 0, "verifyAudit"},
    {"GET", "/v1/audit/tree-heads/latest", cd__http_audit_sth_latest, OVERSIGHT, 0,
     "getLatestTreeHead"},
    {"POST", "/v1/audit/tree-heads", cd__http_audit_sth_publish, OVERSIGHT, 0,
     "publishTreeHead"},
    {"GET", "/v1/audit/proofs/inclusion", cd__http_audit_inclusion, OVERSIGHT, 0,
     "getInclusionProof"},
    {"GET", "/v1/audit/proofs/consistency", cd__http_audit_consistency, OVERSIGHT, 0,
     "getConsistencyProof"},
    {"GET", "/v1/audit/public-key", cd__http_audit_public_key, 0, PUB | INL, "getAuditPublicKey"},
    /* consent: handlers in h_consent.c. The single check reads only the in-memory projection,
     * so it runs inline on the event thread. */
    {"POST", "/v1/consents/check", cd__http_consent_check, READERS, JSN | INL, "checkConsent"},
    {"POST", "/v1/consents/check/bulk", cd__http_consent_bulk, READERS, JSN,
     "checkConsentBulk"},
    {"POST", "/v1/consents", cd__http_consent_record, WRITERS | CD_ROLE_BIT(CD_ROLE_COMPLIANCE),
     JSN, "recordConsent"},
    {"POST", "/v1/consents/signals", cd__http_consent_signals, WRITERS, JSN,
     "recordPrivacySignal"},
    {"POST", "/v1/consents/unsubscribe-links", cd__http_unsub_link, WRITERS, JSN,
     "createUnsubscribeLink"},
    {"GET", "/v1/consents/{id}/receipt", cd__http_consent_receipt, READERS, 0,
     "getConsentReceipt"},
    {"GET", "/v1/customers/{id}/consents", cd__http_customer_consents, READERS, PII,
     "getCustomerConsents", CUS},
    {"POST", "/v1/customers/{id}/preferences", cd__http_customer_preferences,
     WRITERS | CD_ROLE_BIT(CD_ROLE_COMPLIANCE), JSN | ECH, "setCustomerPreferences", CUS},
    {"POST", "/v1/notices", cd__http_notice_publish, OVERSIGHT, JSN, "publishNotice"},
    {"GET", "/v1/notices/{id}", cd__http_notice_get, READERS, 0, "getNotice"},
    {"GET", "/.well-known/candor-keys.json", cd__http_well_known_keys, 0, PUB | INL,
     "getReceiptKeys"},
    {"GET", "/.well-known/gpc.json", cd__http_well_known_gpc, 0, PUB | INL, "getGpcSupport"},
    {"GET", "/u/{token}", cd__http_unsub_page, 0, PUB, "unsubscribePage"},
    {"POST", "/u/{token}", cd__http_unsub_post, 0, PUB, "unsubscribeOneClick"},
    /* the customer's self-service session: handlers in h_me.c. Signing in is public (its answer
     * does not tell whether an identity is on file); everything else is the session's own
     * customer's, named by no id in the path. */
    {"POST", "/v1/me/sign-in-codes", cd__http_me_code, 0, PUB | JSN, "requestSignInCode"},
    {"POST", "/v1/me/session", cd__http_me_sign_in, 0, PUB | JSN, "customerSignIn"},
    {"GET", "/v1/me/session", cd__http_me_session, 0, SLF, "customerSession", ME},
    {"DELETE", "/v1/me/session", cd__http_me_sign_out, 0, SLF, "customerSignOut", ME},
    {"GET", "/v1/me", cd__http_me_get, 0, SLFP, "getMyData", ME},
    {"GET", "/v1/me/access-log", cd__http_me_access_log, 0, SLFP, "getMyAccessLog", ME},
    {"GET", "/v1/me/consents", cd__http_me_consents, 0, SLFP, "getMyConsents", ME},
    {"POST", "/v1/me/consents", cd__http_me_consent_record, 0, SLFP | JSN, "recordMyConsent", ME},
    {"PUT", "/v1/me/preferences", cd__http_me_preferences, 0, SLFP | JSN, "setMyPreferences",
     ME},
    {"GET", "/v1/me/requests", cd__http_me_requests, 0, SLF, "listMyRequests", ME},
    {"POST", "/v1/me/requests", cd__http_me_request_create, 0, SLF | JSN, "createMyRequest", ME},
    {"GET", "/v1/me/requests/{id}", cd__http_me_request_get, 0, SLFP, "getMyRequest", ME},
    /* the web console: handlers in h_console.c. Its files are public (they hold no data);
     * the session routes answer a console session and refuse an API token. */
    {"POST", "/console/session", cd__http_console_sign_in, 0, PUB | JSN, "consoleSignIn"},
    {"GET", "/console/session", cd__http_console_session, CD_ROLES_ALL, 0, "consoleSession"},
    {"GET", "/console/", cd__http_console_file, 0, PUB | INL, "consoleIndex"},
    /* after /console/session, which it would match too */
    {"GET", "/console/{file}", cd__http_console_file, 0, PUB | INL, "consoleFile"},
    {"DELETE", "/console/session", cd__http_console_sign_out, CD_ROLES_ALL, 0, "consoleSignOut"},
    {"PUT", "/console/session/purpose", cd__http_console_purpose, CD_ROLES_ALL, JSN,
     "consoleSetPurpose"},
    {"PUT", "/console/session/password", cd__http_console_password, CD_ROLES_ALL, JSN,
     "consoleChangePassword"},
    {"POST", "/console/csp-report", cd__http_console_csp_report, 0, PUB | INL, "consoleCspReport",
     CD_SUBJECT_NONE, CD_HTTP_CSP_REPORT_MAX},
    {"GET", "/v1/staff", cd__http_staff_list, ADMIN, 0, "listStaff"},
    {"POST", "/v1/staff", cd__http_staff_create, ADMIN, JSN, "createStaff"},
    {"POST", "/v1/staff/{id}/disable", cd__http_staff_disable, ADMIN, 0, "disableStaff"},
    {"DELETE", "/v1/staff/{id}/sessions", cd__http_staff_sessions_revoke, ADMIN, 0,
     "revokeStaffSessions"},
    {"POST", "/v1/staff/{id}/password", cd__http_staff_password_reset, ADMIN, JSN,
     "resetStaffPassword"},
};
#pragma GCC diagnostic pop

const size_t cd__http_nroutes = sizeof cd__http_routes / sizeof cd__http_routes[0];
