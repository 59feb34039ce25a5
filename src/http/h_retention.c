/* Handlers for legal holds: list a customer's holds (a read about them), place one, release
 * one. */
#include <stdio.h>
#include <string.h>
#include "audit/audit.h"
#include "http_int.h"
#include "retention/retention.h"

enum cd_err cd__http_holds_list(struct cd_req *r)
{
    struct cd_audit_event ev = {.action = "holds.read",
                                .outcome = "ok",
                                .actor_token = r->actor.token_id,
                                .actor_role = r->actor.role,
                                .actor_name = r->actor.name,
                                .purpose = r->actor.purpose,
                                .request_id = r->request_id,
                                .categories = "reference"};
    char id[CD_ID_MAX];
    json_t *out = NULL;
    enum cd_err err;

    if ((err = cd_retention_holds_list(r->app->store, r->params[0], cd__http_query(r, "status"),
                                       &out)) != CD_OK)
        return err;
    /* Who looked at a customer's holds, and why, is on their access log like any read. */
    memcpy(id, r->params[0].p, r->params[0].len);
    id[r->params[0].len] = '\0';
    ev.customer_id = id;
    if ((err = cd_audit_record(r->app->store, &ev)) != CD_OK) {
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
    const char *id = json_string_value(json_object_get(r->resp_json, "id"));

    if (err != CD_OK)
        return err;
    r->status = 201;
    snprintf(r->location, sizeof r->location, "/v1/customers/%.*s/holds/%s",
             (int)r->params[0].len, r->params[0].p, id ? id : "");
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
