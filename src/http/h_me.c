/* The customer's self-service routes (/v1/me): signing in with a one-time code (src/portal), and
 * what the signed-in customer may see and do about their own data — what is held, who looked
 * at it and why, their consents and preferences, their requests. The customer is the session's
 * (server.c, portal_gate): no route takes a customer id, and every read goes through the same
 * read gate and ledger as a staff member's, under the purpose of the customer's own access. */
#include <stdio.h>
#include <string.h>
#include "audit/audit.h"
#include "consent/consent.h"
#include "crypto/crypto.h"
#include "dsar/dsar.h"
#include "http_int.h"

static struct cd_str me(const struct cd_req *r)
{
    return cd_str_c(r->portal.customer_id);
}

/* What the page needs of its session: whose it is, when it ends, the anti-forgery token. */
static enum cd_err session_json(struct cd_str cookie, const struct cd_portal_session *ses,
                                json_t **out)
{
    char csrf[CD_PORTAL_CSRF_LEN + 1], ts[CD_TIME_STRLEN];
    enum cd_err err = cd_portal_csrf_token(cookie, csrf);

    if (err != CD_OK)
        return err;
    cd_time_format(ses->expires_at, ts);
    *out = json_pack("{s:s,s:s,s:s,s:s,s:s}", "customer_id", ses->customer_id, "session_id",
                     ses->id, "purpose", CD_PORTAL_PURPOSE, "expires_at", ts, "csrf_token", csrf);
    cd_crypto_wipe(csrf, sizeof csrf);
    return *out ? CD_OK : CD_ERR_NOMEM;
}

/* POST /v1/me/sign-in-codes: 202 whether or not the identity is on file. */
enum cd_err cd__http_me_code(struct cd_req *r)
{
    enum cd_err err = cd_portal_code_send(r->app->store, r->app->core, r->json, r->request_id,
                                          &r->resp_json);
    if (err == CD_OK)
        r->status = 202;
    return err;
}

/* POST /v1/me/session: the code for a session cookie, scoped to /v1/me. */
enum cd_err cd__http_me_sign_in(struct cd_req *r)
{
    char token[CD_PORTAL_SESSION_LEN + 1];
    struct cd_portal_session ses;
    json_t *failure = NULL;
    enum cd_err err;

    /* A form on another site cannot send JSON without asking first (CORS). */
    if (r->content_type.p == NULL)
        return cd_err_set(CD_ERR_UNSUPPORTED, "send the body as application/json");
    if ((err = cd_portal_sign_in(r->app->store, r->json, r->request_id, &ses, token,
                                 &failure)) != CD_OK) {
        r->problem_ext = failure;
        return err;
    }
    if (!cd__http_cookie(r, CD_HTTP_ME_COOKIE, token, "/v1/me",
                         (long long)(CD_PORTAL_SESSION_MAX_MS / 1000)))
        err = CD_ERR_NOMEM;
    else
        err = session_json((struct cd_str){token, CD_PORTAL_SESSION_LEN}, &ses, &r->resp_json);
    cd_crypto_wipe(token, sizeof token);
    if (err == CD_OK)
        r->status = 201;
    return err;
}

/* GET /v1/me/session */
enum cd_err cd__http_me_session(struct cd_req *r)
{
    return session_json(r->me_cookie, &r->portal, &r->resp_json);
}

/* DELETE /v1/me/session: signs out, and the browser forgets the cookie. */
enum cd_err cd__http_me_sign_out(struct cd_req *r)
{
    enum cd_err err = cd_portal_session_end(r->app->store, &r->portal, r->request_id);

    if (err != CD_OK)
        return err;
    cd__http_cookie(r, CD_HTTP_ME_COOKIE, "", "/v1/me", 0);
    r->status = 204;
    return CD_OK;
}

/* GET /v1/me: everything held in the customer record (core records the read). */
enum cd_err cd__http_me_get(struct cd_req *r)
{
    return cd_core_customer_get(r->app->core, &r->actor, me(r), cd__http_fields(r),
                                &r->resp_json);
}

/* GET /v1/me/access-log: reading who read is itself a read, recorded. */
enum cd_err cd__http_me_access_log(struct cd_req *r)
{
    char id[CD_ID_MAX];
    int limit = 50;
    enum cd_err err;

    if ((err = cd__http_query_int(r, "limit", 50, 1, 500, &limit)) != CD_OK ||
        (err = cd_core_customer_read_gate(r->app->core, &r->actor, me(r), "access_log.read",
                                          "access_log", id)) != CD_OK)
        return err;
    return cd_audit_access_log(r->app->store, cd_str_c(id), cd__http_query(r, "cursor"), limit,
                               &r->resp_json);
}

static enum cd_err consent_engine(struct cd_req *r, struct cd_consent **c)
{
    if (r->app->consent == NULL)
        return cd_err_set(CD_ERR_BUSY, "the consent engine is not running");
    *c = r->app->consent;
    return CD_OK;
}

/* The customer's consent view (current state, preferences, history), as a recorded read. */
static enum cd_err consent_view(struct cd_req *r, struct cd_consent *c)
{
    char id[CD_ID_MAX];
    enum cd_err err = cd_core_customer_read_gate(r->app->core, &r->actor, me(r), "consent.read",
                                                 "consent", id);

    return err != CD_OK ? err : cd_consent_history(c, cd_str_c(id), &r->resp_json);
}

/* GET /v1/me/consents */
enum cd_err cd__http_me_consents(struct cd_req *r)
{
    struct cd_consent *c = NULL;
    enum cd_err err = consent_engine(r, &c);

    return err != CD_OK ? err : consent_view(r, c);
}

/* POST /v1/me/consents: giving and withdrawing are one call with the same members, so
 * withdrawing is as easy as giving (GDPR Art. 7(3)). Answers the consent view. */
enum cd_err cd__http_me_consent_record(struct cd_req *r)
{
    static const char *const allowed[] = {"purpose", "channel", "state", "notice_id",
                                          "language", NULL};
    struct cd_str state = CD_STR_NULL;
    struct cd_consent *c = NULL;
    json_t *body = NULL, *recorded = NULL;
    char evidence[64];
    enum cd_err err;

    if ((err = consent_engine(r, &c)) != CD_OK || (err = cd_json_only(r->json, allowed)) != CD_OK ||
        (err = cd_json_str(r->json, "state", true, &state)) != CD_OK)
        return err;
    if (!cd_str_eq_c(state, "given") && !cd_str_eq_c(state, "withdrawn"))
        return cd_err_set(CD_ERR_INVALID, "'state' must be given or withdrawn");
    /* What the customer did, where, and in which session: the receipt's evidence. */
    snprintf(evidence, sizeof evidence, "self-service session %s", r->portal.id);
    if ((body = json_deep_copy(r->json)) == NULL ||
        cd_json_set_strn(body, "customer_id", r->portal.customer_id,
                         strlen(r->portal.customer_id)) != CD_OK ||
        cd_json_set_strn(body, "method", "web_form", 8) != CD_OK ||
        cd_json_set_strn(body, "collector", "candor self-service", 19) != CD_OK ||
        cd_json_set_strn(body, "evidence", evidence, strlen(evidence)) != CD_OK) {
        json_decref(body);
        return CD_ERR_NOMEM;
    }
    err = cd_consent_record(c, &r->actor, body, &recorded);
    json_decref(body);
    json_decref(recorded);
    if (err != CD_OK)
        return err;
    r->status = 201;
    return consent_view(r, c);
}

/* PUT /v1/me/preferences: replaces them; answers the consent view. */
enum cd_err cd__http_me_preferences(struct cd_req *r)
{
    struct cd_consent *c = NULL;
    enum cd_err err;

    if ((err = consent_engine(r, &c)) != CD_OK ||
        (err = cd_consent_preferences_set(c, &r->actor, me(r), r->json)) != CD_OK)
        return err;
    return consent_view(r, c);
}

static enum cd_err dsar_service(struct cd_req *r, struct cd_dsar **d)
{
    if (r->app->dsar == NULL)
        return cd_err_set(CD_ERR_BUSY, "data-subject requests are not being served");
    *d = r->app->dsar;
    return CD_OK;
}

/* GET /v1/me/requests: the customer's requests and their deadlines. */
enum cd_err cd__http_me_requests(struct cd_req *r)
{
    struct cd_dsar *d = NULL;
    struct cd_dsar_query q = {me(r), cd__http_query(r, "state"), cd__http_query(r, "type"),
                              CD_STR_NULL, cd__http_query(r, "cursor"), 50};
    enum cd_err err;

    if ((err = dsar_service(r, &d)) != CD_OK ||
        (err = cd__http_query_int(r, "limit", 50, 1, 200, &q.limit)) != CD_OK)
        return err;
    return cd_dsar_list(d, &q, &r->resp_json);
}

/* POST /v1/me/requests: filed by the customer, verified by their session; the clock starts
 * now, at receipt. */
enum cd_err cd__http_me_request_create(struct cd_req *r)
{
    static const char *const allowed[] = {"type", "details", NULL};
    struct cd_dsar *d = NULL;
    json_t *body = NULL;
    enum cd_err err;

    if ((err = dsar_service(r, &d)) != CD_OK || (err = cd_json_only(r->json, allowed)) != CD_OK)
        return err;
    if ((body = json_deep_copy(r->json)) == NULL ||
        cd_json_set_strn(body, "customer_id", r->portal.customer_id,
                         strlen(r->portal.customer_id)) != CD_OK) {
        json_decref(body);
        return CD_ERR_NOMEM;
    }
    err = cd_dsar_create(d, &r->actor, body, CD_DSAR_INTAKE_SELF_SERVICE, &r->resp_json);
    json_decref(body);
    if (err != CD_OK)
        return err;
    r->status = 201;
    snprintf(r->location, sizeof r->location, "/v1/me/requests/%s",
             json_string_value(json_object_get(r->resp_json, "id")));
    return CD_OK;
}

/* GET /v1/me/requests/{id}: one of the customer's own requests, with what they wrote and what
 * they were told (a read of their conversation, recorded). Another customer's is not found. */
enum cd_err cd__http_me_request_get(struct cd_req *r)
{
    struct cd_dsar *d = NULL;
    json_t *own = NULL;
    char id[CD_ID_MAX];
    enum cd_err err;

    if ((err = dsar_service(r, &d)) != CD_OK ||
        (err = cd_dsar_get(d, r->params[0], r->portal.customer_id, false, &own)) != CD_OK)
        return err;
    json_decref(own);
    if ((err = cd_core_customer_read_gate(r->app->core, &r->actor, me(r), "dsar.read",
                                          cd_policy_categories(CD_FIELDS_REFERENCE |
                                                               CD_FIELDS_CONVERSATION),
                                          id)) != CD_OK)
        return err;
    return cd_dsar_get(d, r->params[0], r->portal.customer_id, true, &r->resp_json);
}

/* DELETE /v1/customers/{id}/sessions: staff end every self-service session of a customer. */
enum cd_err cd__http_customer_sessions_revoke(struct cd_req *r)
{
    int64_t ended = 0;
    enum cd_err err = cd_portal_sessions_revoke(r->app->store, &r->actor, r->params[0], &ended);

    if (err != CD_OK)
        return err;
    r->resp_json = json_pack("{s:I}", "ended", (json_int_t)ended);
    return r->resp_json ? CD_OK : CD_ERR_NOMEM;
}
