/* Handlers for retention: the rules, runs (dry or real) and past runs; legal holds — list a
 * customer's holds (a read about them), place one, release one. */
#include <stdio.h>
#include <string.h>
#include "http_int.h"
#include "retention/retention.h"

enum cd_err cd__http_holds_list(struct cd_req *r)
{
    json_t *out = NULL;
    char id[CD_ID_MAX];
    enum cd_err err;

    if ((err = cd_retention_holds_list(r->app->store, r->params[0], cd__http_query(r, "status"),
                                       &out)) != CD_OK)
        return err;
    /* The listing succeeded, so the id is a customer's (and short). */
    snprintf(id, sizeof id, "%.*s", (int)r->params[0].len, r->params[0].p);
    if ((err = cd__http_record_read(r, "holds.read", id)) != CD_OK) {
        json_decref(out);
        return err;
    }
    r->resp_json = out;
    return CD_OK;
}

enum cd_err cd__http_hold_create(struct cd_req *r)
{
    enum cd_err err = cd_retention_hold_create(r->app->store, &r->actor, r->params[0], r->json,
                                               &r->resp_json);

    if (err != CD_OK)
        return err;
    r->status = 201;
    snprintf(r->location, sizeof r->location, "/v1/customers/%.*s/holds/%s",
             (int)r->params[0].len, r->params[0].p,
             json_string_value(json_object_get(r->resp_json, "id")));
    return CD_OK;
}

enum cd_err cd__http_hold_release(struct cd_req *r)
{
    enum cd_err err = cd_retention_hold_release(r->app->store, &r->actor, r->params[0],
                                                r->params[1], r->json, &r->resp_json);

    /* The answer is what the release changed; the hold's own reason stays behind the
     * purpose-gated listing. */
    if (err == CD_OK)
        json_object_del(r->resp_json, "reason");
    return err;
}

static enum cd_err need_rules(const struct cd_req *r)
{
    return r->app->retention ? CD_OK
                             : cd_err_set(CD_ERR_BUSY, "no retention rules are loaded on this "
                                                       "server");
}

enum cd_err cd__http_retention_rules(struct cd_req *r)
{
    enum cd_err err = need_rules(r);
    return err != CD_OK ? err : cd_retention_rules_json(r->app->retention, &r->resp_json);
}

/* The largest number of ids a dry run lists per rule over the API (the CLI lists them all). */
#define API_MAX_IDS 1000

enum cd_err cd__http_retention_run(struct cd_req *r)
{
    static const char *const allowed[] = {"dry_run", NULL};
    bool dry_run = false;
    enum cd_err err;

    if ((err = need_rules(r)) != CD_OK || (err = cd_json_only(r->json, allowed)) != CD_OK ||
        (err = cd_json_bool(r->json, "dry_run", true, &dry_run)) != CD_OK ||
        (err = cd_retention_run(r->app->core, r->app->retention, &r->actor, dry_run, API_MAX_IDS,
                                &r->resp_json)) != CD_OK)
        return err;
    r->status = dry_run ? 200 : 201;
    return CD_OK;
}

enum cd_err cd__http_retention_runs(struct cd_req *r)
{
    return cd_retention_runs(r->app->store, &r->resp_json);
}
