/* Handlers for cases, the queue, agents, SLA policies, the SLA report and incidents: parameters
 * in, the cases module's answer out. What an answer may carry is decided here from the request: the
 * purpose's categories (cd__http_fields) and whether the role may see customer value (blind
 * mode hides it from agents). */
#include <stdio.h>
#include <string.h>
#include "cases/cases.h"
#include "http_int.h"

static enum cd_err no_cases(void)
{
    return cd_err_set(CD_ERR_BUSY, "cases are not available on this server");
}

static struct cd_cases_view view_of(const struct cd_req *r)
{
    return (struct cd_cases_view){cd__http_fields(r) | CD_FIELDS_REFERENCE,
                                  cd_cases_value_visible(r->app->cases, r->actor.role)};
}

/* An RFC 3339 query parameter, or 0 when absent. */
static enum cd_err query_time(const struct cd_req *r, const char *key, int64_t *out)
{
    struct cd_str v = cd__http_query(r, key);
    enum cd_err err;

    *out = 0;
    if (v.len == 0)
        return CD_OK;
    if ((err = cd_time_parse(v, out)) != CD_OK)
        return cd_err_set(CD_ERR_INVALID, "'%s' must be an RFC 3339 time", key);
    return CD_OK;
}

enum cd_err cd__http_cases_list(struct cd_req *r)
{
    struct cd_cases_query q = {
        .customer_id = cd__http_query(r, "customer_id"),
        .status = cd__http_query(r, "status"),
        .type = cd__http_query(r, "type"),
        .team = cd__http_query(r, "team"),
        .assignee = cd__http_query(r, "assignee"),
        .tag = cd__http_query(r, "tag"),
        .incident_id = cd__http_query(r, "incident_id"),
        .sla = cd__http_query(r, "sla"),
        .cursor = cd__http_query(r, "cursor"),
    };
    struct cd_cases_view v;
    enum cd_err err;

    if (r->app->cases == NULL)
        return no_cases();
    if ((err = cd__http_query_int(r, "limit", 50, 1, 200, &q.limit)) != CD_OK ||
        (err = query_time(r, "created_from", &q.created_from)) != CD_OK ||
        (err = query_time(r, "created_to", &q.created_to)) != CD_OK)
        return err;
    v = view_of(r);
    return cd_cases_list(r->app->cases, &r->actor, &q, &v, &r->resp_json);
}

enum cd_err cd__http_cases_create(struct cd_req *r)
{
    struct cd_idem idem;
    const struct cd_idem *ip = NULL;
    struct cd_cases_view v;
    bool replayed = false;
    enum cd_err err;

    if (r->app->cases == NULL)
        return no_cases();
    if ((err = cd__http_idem(r, &idem, &ip)) != CD_OK)
        return err;
    v = view_of(r);
    if ((err = cd_cases_create(r->app->cases, &r->actor, r->json, ip, &v, &r->resp_json,
                               &replayed)) != CD_OK)
        return err;
    r->status = replayed ? 200 : 201;
    r->replayed = replayed;
    snprintf(r->location, sizeof r->location, "/v1/cases/%s",
             json_string_value(json_object_get(r->resp_json, "id")));
    return CD_OK;
}

enum cd_err cd__http_cases_get(struct cd_req *r)
{
    struct cd_cases_view v;

    if (r->app->cases == NULL)
        return no_cases();
    v = view_of(r);
    return cd_cases_get(r->app->cases, &r->actor, r->params[0], &v, &r->resp_json);
}

enum cd_err cd__http_cases_update(struct cd_req *r)
{
    struct cd_cases_view v;

    if (r->app->cases == NULL)
        return no_cases();
    v = view_of(r);
    return cd_cases_update(r->app->cases, &r->actor, r->params[0], r->json, &v, &r->resp_json);
}

enum cd_err cd__http_cases_link(struct cd_req *r)
{
    struct cd_cases_view v;

    if (r->app->cases == NULL)
        return no_cases();
    v = view_of(r);
    return cd_cases_link(r->app->cases, &r->actor, r->params[0], r->json, &v, &r->resp_json);
}

enum cd_err cd__http_cases_events(struct cd_req *r)
{
    if (r->app->cases == NULL)
        return no_cases();
    return cd_cases_events(r->app->cases, r->params[0], &r->resp_json);
}

enum cd_err cd__http_cases_eta(struct cd_req *r)
{
    if (r->app->cases == NULL)
        return no_cases();
    return cd_cases_eta(r->app->cases, r->params[0], cd_now_ms(), &r->resp_json);
}

/* GET previews the next case (nothing changes); POST takes it. */
enum cd_err cd__http_queue_next(struct cd_req *r)
{
    struct cd_str agent = cd__http_query(r, "agent");
    bool claim = strcmp(r->method, "POST") == 0;
    struct cd_cases_view v;

    if (r->app->cases == NULL)
        return no_cases();
    /* Taking a case for someone else is a supervisor's act; anyone may look. */
    if (claim && agent.len && strcmp(r->actor.role, "supervisor") != 0 &&
        strcmp(r->actor.role, "admin") != 0)
        return cd_err_set(CD_ERR_FORBIDDEN, "only a supervisor or admin may take a case for "
                                            "another agent");
    v = view_of(r);
    return cd_cases_queue_next(r->app->cases, &r->actor, agent, claim, &v, &r->resp_json);
}

enum cd_err cd__http_agents_list(struct cd_req *r)
{
    if (r->app->cases == NULL)
        return no_cases();
    return cd_cases_agent_list(r->app->cases, &r->resp_json);
}

static enum cd_err agent_put(struct cd_req *r, struct cd_str id)
{
    bool created = false;
    enum cd_err err;

    if (r->app->cases == NULL)
        return no_cases();
    if ((err = cd_cases_agent_put(r->app->cases, &r->actor, id, r->json, &r->resp_json,
                                  &created)) != CD_OK)
        return err;
    r->status = created ? 201 : 200;
    snprintf(r->location, sizeof r->location, "/v1/agents/%s",
             json_string_value(json_object_get(r->resp_json, "id")));
    return CD_OK;
}

enum cd_err cd__http_agents_create(struct cd_req *r)
{
    return agent_put(r, CD_STR_NULL);
}

enum cd_err cd__http_agents_put(struct cd_req *r)
{
    if (!cd_id_valid(r->params[0], "agt"))
        return cd_err_set(CD_ERR_NOT_FOUND, "no agent with this id");
    return agent_put(r, r->params[0]);
}

enum cd_err cd__http_agents_get(struct cd_req *r)
{
    if (r->app->cases == NULL)
        return no_cases();
    return cd_cases_agent_get(r->app->cases, r->params[0], &r->resp_json);
}

enum cd_err cd__http_sla_policies(struct cd_req *r)
{
    if (r->app->cases == NULL)
        return no_cases();
    return cd_cases_policies_json(r->app->cases, &r->resp_json);
}

enum cd_err cd__http_sla_report(struct cd_req *r)
{
    char period[16] = "month", group[16] = "", tz[64] = "";
    struct cd_cases_report_query q = {0, 0, period, tz, group};
    struct { const char *key; char *out; size_t n; } params[] = {
        {"period", period, sizeof period}, {"group", group, sizeof group},
        {"time_zone", tz, sizeof tz}};
    enum cd_err err;

    if (r->app->cases == NULL)
        return no_cases();
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
        struct cd_str v = cd__http_query(r, params[i].key);
        if (v.len >= params[i].n)
            return cd_err_set(CD_ERR_INVALID, "'%s' is too long", params[i].key);
        if (v.len)
            snprintf(params[i].out, params[i].n, "%.*s", (int)v.len, v.p);
    }
    if ((err = query_time(r, "from", &q.from_ms)) != CD_OK ||
        (err = query_time(r, "to", &q.to_ms)) != CD_OK)
        return err;
    if (q.to_ms == 0)
        q.to_ms = cd_now_ms();
    if (q.from_ms == 0)
        q.from_ms = q.to_ms - 365LL * 86400 * 1000;
    return cd_cases_sla_report(r->app->cases, &q, &r->resp_json);
}

/* ---- incidents: no personal data in the incident; affected customers by id ---- */

enum cd_err cd__http_incidents_list(struct cd_req *r)
{
    int limit = 50;
    enum cd_err err;

    if (r->app->cases == NULL)
        return no_cases();
    if ((err = cd__http_query_int(r, "limit", 50, 1, 200, &limit)) != CD_OK)
        return err;
    return cd_cases_incident_list(r->app->cases, cd__http_query(r, "status"),
                                  cd__http_query(r, "cursor"), limit, &r->resp_json);
}

enum cd_err cd__http_incidents_create(struct cd_req *r)
{
    struct cd_idem idem;
    const struct cd_idem *ip = NULL;
    bool replayed = false;
    enum cd_err err;

    if (r->app->cases == NULL)
        return no_cases();
    if ((err = cd__http_idem(r, &idem, &ip)) != CD_OK ||
        (err = cd_cases_incident_create(r->app->cases, &r->actor, r->json, ip, &r->resp_json,
                                         &replayed)) != CD_OK)
        return err;
    r->status = replayed ? 200 : 201;
    r->replayed = replayed;
    snprintf(r->location, sizeof r->location, "/v1/incidents/%s",
             json_string_value(json_object_get(r->resp_json, "id")));
    return CD_OK;
}

enum cd_err cd__http_incidents_get(struct cd_req *r)
{
    if (r->app->cases == NULL)
        return no_cases();
    return cd_cases_incident_get(r->app->cases, r->params[0], &r->resp_json);
}

enum cd_err cd__http_incidents_update(struct cd_req *r)
{
    if (r->app->cases == NULL)
        return no_cases();
    return cd_cases_incident_update(r->app->cases, &r->actor, r->params[0], r->json,
                                    &r->resp_json);
}

enum cd_err cd__http_incidents_affect(struct cd_req *r)
{
    if (r->app->cases == NULL)
        return no_cases();
    return cd_cases_incident_affect(r->app->cases, &r->actor, r->params[0], r->json,
                                    &r->resp_json);
}

enum cd_err cd__http_incidents_customers(struct cd_req *r)
{
    int limit = 100;
    enum cd_err err;

    if (r->app->cases == NULL)
        return no_cases();
    if ((err = cd__http_query_int(r, "limit", 100, 1, 1000, &limit)) != CD_OK)
        return err;
    return cd_cases_incident_customers(r->app->cases, r->params[0], cd__http_query(r, "notice"),
                                       cd__http_query(r, "cursor"), limit, &r->resp_json);
}

enum cd_err cd__http_incidents_notify(struct cd_req *r)
{
    if (r->app->cases == NULL)
        return no_cases();
    return cd_cases_incident_notify(r->app->cases, &r->actor, r->params[0], r->json,
                                    &r->resp_json);
}
