/* The web console: its embedded files, sign-in and the session's purpose, and the staff
 * accounts it signs in. The pages call the same /v1 API as any client; a session cookie stands
 * in for the bearer token there (server.c, session_gate). */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include "crypto/crypto.h"
#include "http_int.h"

/* The console's pages load only their own origin's scripts, styles and images, run no inline
 * code, and may not be framed by anyone. A browser that blocks something says so to
 * /console/csp-report (report-to where the Reporting API is known, report-uri elsewhere). */
static const char csp[] = "default-src 'none'; script-src 'self'; style-src 'self'; "
                          "img-src 'self'; connect-src 'self'; font-src 'self'; "
                          "manifest-src 'self'; base-uri 'none'; form-action 'self'; "
                          "frame-ancestors 'none'; report-uri /console/csp-report; "
                          "report-to csp";

/* ---- files ---- */

static const struct cd_web_asset *asset_find(struct cd_str name)
{
    char want[80];

    if (name.len == 0)
        name = CD_STR("index.html");
    /* A page is named without its extension: /console/workspace. */
    if (memchr(name.p, '.', name.len) == NULL) {
        if (name.len + 5 >= sizeof want)
            return NULL;
        snprintf(want, sizeof want, "%.*s.html", (int)name.len, name.p);
        name = cd_str_c(want);
    }
    for (size_t i = 0; i < cd_web_nassets; i++)
        if (cd_str_eq_c(name, cd_web_assets[i].name))
            return &cd_web_assets[i];
    return NULL;
}

/* True when the client takes gzip (a q=0 refusal aside). */
static bool takes_gzip(struct cd_str ae)
{
    for (size_t i = 0; i + 4 <= ae.len; i++)
        if (strncasecmp(ae.p + i, "gzip", 4) == 0) {
            size_t j = i + 4;
            while (j < ae.len && (ae.p[j] == ' ' || ae.p[j] == ';'))
                j++;
            return !(ae.len - j >= 3 && strncmp(ae.p + j, "q=0", 3) == 0 &&
                     (ae.len - j == 3 || ae.p[j + 3] == ',' || ae.p[j + 3] == ' ' ||
                      strncmp(ae.p + j + 3, ".0", 2) == 0));
        }
    return false;
}

enum cd_err cd__http_console_file(struct cd_req *r)
{
    const struct cd_web_asset *a = asset_find(r->params[0]);

    if (a == NULL)
        return cd_err_set(CD_ERR_NOT_FOUND, "no such page or file in the console");
    /* Revalidated on every use, answered 304 while unchanged: a new build is seen at once. */
    if (!cd__http_header_add(r, "Cache-Control", "no-cache") ||
        !cd__http_header_add(r, "ETag", a->etag) ||
        !cd__http_header_add(r, "Vary", "Accept-Encoding") ||
        !cd__http_header_add(r, "Content-Security-Policy", csp) ||
        !cd__http_header_add(r, "Reporting-Endpoints", "csp=\"/console/csp-report\"") ||
        !cd__http_header_add(r, "X-Frame-Options", "DENY") ||
        !cd__http_header_add(r, "Referrer-Policy", "no-referrer") ||
        !cd__http_header_add(r, "Cross-Origin-Opener-Policy", "same-origin"))
        return cd_err_set(CD_ERR_INTERNAL, "too many response headers");
    r->resp_type = a->type;
    if (r->if_none_match.p && cd_str_eq_c(r->if_none_match, a->etag)) {
        r->status = 304;
        r->resp_static = "";
        r->resp_len = 0;
        return CD_OK;
    }
    if (a->gz_len && takes_gzip(r->accept_encoding)) {
        cd__http_header_add(r, "Content-Encoding", "gzip");
        r->resp_static = (const char *)a->gz;
        r->resp_len = a->gz_len;
    } else {
        r->resp_static = (const char *)a->data;
        r->resp_len = a->len;
    }
    return CD_OK;
}

/* Says in Retry-After how long a throttled client waits (wait_ms, rounded up to seconds);
 * false when there is no room for it. */
static bool retry_after(struct cd_req *r, int64_t wait_ms)
{
    char *secs = cd_arena_printf(&r->arena, "%lld", (long long)((wait_ms + 999) / 1000));

    return secs && cd__http_header_add(r, "Retry-After", secs);
}

/* ---- violation reports ---- */

/* What the log may say of a blocked resource: its origin (scheme, host, port) or the keyword
 * the browser used ("inline", "eval", "data"...), never a path or a query, which can carry
 * personal data. Anything else is "other". */
static void blocked_origin(const char *uri, char out[128])
{
    static const char *const keywords[] = {"inline", "eval", "wasm-eval", "self", "data", "blob",
                                           "filesystem", "trusted-types-policy",
                                           "trusted-types-sink", NULL};
    size_t n = strcspn(uri, ":");

    for (int i = 0; keywords[i]; i++)
        if (strcmp(uri, keywords[i]) == 0 || (strncmp(uri, keywords[i], n) == 0 &&
                                              keywords[i][n] == '\0' && uri[n] == ':')) {
            snprintf(out, 128, "%s", keywords[i]);
            return;
        }
    if (uri[0] == '\0') {
        snprintf(out, 128, "none");
        return;
    }
    if ((n == 4 && strncasecmp(uri, "http", 4) == 0) ||
        (n == 5 && strncasecmp(uri, "https", 5) == 0) ||
        (n == 3 && strncasecmp(uri, "wss", 3) == 0) || (n == 2 && strncasecmp(uri, "ws", 2) == 0)) {
        if (strncmp(uri + n, "://", 3) == 0) {
            const char *host = uri + n + 3;
            size_t h = strcspn(host, "/?#");
            /* No user information, and only the characters of a host and port. */
            if (h > 0 && h < 100 && strcspn(host, "@") >= h &&
                strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") >=
                    h) {
                snprintf(out, 128, "%.*s://%.*s", (int)n, uri, (int)h, host);
                return;
            }
        }
    }
    snprintf(out, 128, "other");
}

/* One reported violation as it may be kept: the directive's name when it is one /metrics
 * counts by name, else NULL, and the blocked resource's origin or keyword. */
static void violation_of(const char *directive, const char *blocked, struct cd_csp_violation *v)
{
    /* "script-src 'self'" (a violated directive with its sources): the name alone. */
    size_t n = strcspn(directive, " ");

    v->directive = NULL;
    for (int i = 0; cd__http_csp_directives[i]; i++)
        if (strlen(cd__http_csp_directives[i]) == n &&
            strncmp(directive, cd__http_csp_directives[i], n) == 0)
            v->directive = cd__http_csp_directives[i];
    blocked_origin(blocked, v->blocked);
}

static const char *str_member(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));

    return s ? s : "";
}

enum cd_err cd__http_csp_parse(const char *p, size_t n, bool legacy,
                               void (*each)(const struct cd_csp_violation *v, void *ctx),
                               void *ctx)
{
    struct cd_csp_violation v;
    json_t *doc = NULL, *item;
    enum cd_err err = CD_OK;
    size_t i;

    if ((err = cd_json_parse(p, n, &doc)) != CD_OK) {
        char why[200];
        snprintf(why, sizeof why, "%s", cd_err_detail());
        return err == CD_ERR_NOMEM ? err
                                   : cd_err_set(CD_ERR_INVALID, "the report is not JSON: %s", why);
    }
    if (legacy) {
        json_t *rep = json_object_get(doc, "csp-report");
        if (!json_is_object(rep)) {
            err = cd_err_set(CD_ERR_INVALID, "a csp-report needs a \"csp-report\" object");
            goto out;
        }
        const char *d = str_member(rep, "effective-directive");
        violation_of(d[0] ? d : str_member(rep, "violated-directive"),
                     str_member(rep, "blocked-uri"), &v);
        each(&v, ctx);
        goto out;
    }
    if (!json_is_array(doc)) {
        err = cd_err_set(CD_ERR_INVALID, "application/reports+json is a list of reports");
        goto out;
    }
    /* Checked whole before any is counted: a bad list counts nothing. */
    json_array_foreach(doc, i, item) {
        if (!json_is_object(item) || !json_is_string(json_object_get(item, "type")) ||
            (strcmp(str_member(item, "type"), "csp-violation") == 0 &&
             !json_is_object(json_object_get(item, "body")))) {
            err = cd_err_set(CD_ERR_INVALID, "report %zu needs a \"type\" and, for a "
                                             "csp-violation, a \"body\" object",
                             i);
            goto out;
        }
    }
    json_array_foreach(doc, i, item) {
        if (strcmp(str_member(item, "type"), "csp-violation") == 0) {
            json_t *body = json_object_get(item, "body");
            violation_of(str_member(body, "effectiveDirective"), str_member(body, "blockedURL"),
                         &v);
            each(&v, ctx);
        }
    }
out:
    json_decref(doc);
    return err;
}

/* Counted, and logged with its directive and blocked origin only. */
static void csp_violation(const struct cd_csp_violation *v, void *ctx)
{
    cd__http_metrics_csp_violation(v->directive);
    cd_log(CD_LOG_WARN, "console.csp_violation", "\"directive\":\"%s\",\"blocked\":\"%s\"",
           v->directive ? v->directive : "other", v->blocked);
}

/* Takes a browser's report that a console page broke its Content-Security-Policy: the
 * report-uri form (application/csp-report, one report) or the Reporting API's
 * (application/reports+json, a list of reports of which the csp-violation ones count). */
enum cd_err cd__http_console_csp_report(struct cd_req *r)
{
    struct cd_str ct = r->content_type;
    bool legacy = ct.len >= 22 && strncasecmp(ct.p, "application/csp-report", 22) == 0;
    bool reports = ct.len >= 24 && strncasecmp(ct.p, "application/reports+json", 24) == 0;
    enum cd_err err;

    /* Every request counts, good or bad: the endpoint needs no sign-in, so it is bounded. */
    int64_t wait = cd__throttle_take(r->csp_throttle, r->client_key, cd_now_ms());
    if (wait > 0)
        return retry_after(r, wait) ? cd_err_set(CD_ERR_RATE_LIMITED,
                                                 "too many reports from this address; at most "
                                                 "%d a minute",
                                                 CD_HTTP_CSP_REPORTS_PER_MINUTE)
                                    : CD_ERR_NOMEM;
    if (!legacy && !reports)
        return cd_err_set(CD_ERR_UNSUPPORTED, "send application/csp-report or "
                                              "application/reports+json");
    if ((err = cd__http_csp_parse(r->body.p, r->body.len, legacy, csp_violation, NULL)) != CD_OK)
        return err;
    r->status = 204;
    return CD_OK;
}

/* ---- sessions ---- */

/* What the page needs to know of its session: who, the role, the purpose declared and those
 * the role may declare, when it ends, and the anti-forgery token for its changes. */
static enum cd_err session_json(struct cd_req *r, struct cd_str cookie,
                                const struct cd_staff_session *ses, json_t **out)
{
    char csrf[CD_STAFF_CSRF_LEN + 1], ts[CD_TIME_STRLEN];
    json_t *purposes = json_array();
    struct cd_policy_grant g;
    enum cd_err err;

    if (purposes == NULL)
        return CD_ERR_NOMEM;
    for (int p = 0; p < CD_PURPOSE__COUNT; p++)
        if (cd_policy_check(r->app->policy, ses->role, (enum cd_purpose)p, &g) == CD_OK &&
            json_array_append_new(purposes, json_string(cd_purpose_name((enum cd_purpose)p))) !=
                0) {
            json_decref(purposes);
            return CD_ERR_NOMEM;
        }
    cd_err_clear();
    if ((err = cd_staff_csrf_token(cookie, csrf)) != CD_OK) {
        json_decref(purposes);
        return err;
    }
    cd_time_format(ses->expires_at, ts);
    *out = json_pack("{s:{s:s,s:s,s:s,s:s},s:o,s:o,s:s,s:s,s:s,s:b}", "staff", "id",
                     ses->staff_id, "username", ses->username, "name", ses->name, "role",
                     cd_role_name(ses->role), "purpose",
                     ses->has_purpose ? json_string(cd_purpose_name(ses->purpose))
                                      : json_null(),
                     "purposes", purposes, "session_id", ses->id, "expires_at", ts,
                     "csrf_token", csrf, "must_change_password", ses->must_change_password);
    cd_crypto_wipe(csrf, sizeof csrf);
    return *out ? CD_OK : CD_ERR_NOMEM;
}

static enum cd_err need_session(const struct cd_req *r)
{
    return r->via_session ? CD_OK
                          : cd_err_set(CD_ERR_NOT_FOUND, "no console session: this request "
                                                         "carries an API token");
}

enum cd_err cd__http_console_sign_in(struct cd_req *r)
{
    static const char *const allowed[] = {"username", "password", NULL};
    struct cd_str user = CD_STR_NULL, pass = CD_STR_NULL;
    struct cd_staff_session ses;
    char token[CD_STAFF_SESSION_LEN + 1];
    enum cd_err err;

    /* A form on another site cannot send JSON without asking first (CORS), and is not
     * answered: no one can be signed in to an attacker's account from elsewhere. */
    if (r->content_type.p == NULL)
        return cd_err_set(CD_ERR_UNSUPPORTED, "send the body as application/json");
    if ((err = cd_json_only(r->json, allowed)) != CD_OK ||
        (err = cd_json_str(r->json, "username", true, &user)) != CD_OK ||
        (err = cd_json_str(r->json, "password", true, &pass)) != CD_OK)
        return err;
    /* Refusals are counted in /metrics as this route's 429s; the address is never logged.
     * The attempt is counted before the password is checked, so many at once from one address
     * cannot all slip in before the first failure is known; a right one is given back. */
    int64_t wait = cd__throttle_take(r->sign_in_throttle, r->client_key, cd_now_ms());
    if (wait > 0)
        return retry_after(r, wait) ? cd_err_set(CD_ERR_RATE_LIMITED,
                                                 "too many failed sign-ins from this address: "
                                                 "try again in %lld minutes",
                                                 (long long)((wait + 59999) / 60000))
                                    : CD_ERR_NOMEM;
    err = cd_staff_sign_in(r->app->store, user, pass, r->request_id, &ses, token);
    if (err != CD_ERR_UNAUTHENTICATED)
        cd__throttle_refund(r->sign_in_throttle, r->client_key);
    if (err != CD_OK)
        return err;
    struct cd_str cookie = {token, CD_STAFF_SESSION_LEN};
    if (!cd__http_cookie(r, CD_HTTP_SESSION_COOKIE, token, "/",
                         (long long)(CD_STAFF_SESSION_MAX_MS / 1000)))
        err = CD_ERR_NOMEM;
    else
        err = session_json(r, cookie, &ses, &r->resp_json);
    cd_crypto_wipe(token, sizeof token);
    if (err == CD_OK)
        r->status = 201;
    return err;
}

enum cd_err cd__http_console_session(struct cd_req *r)
{
    enum cd_err err = need_session(r);

    return err != CD_OK ? err : session_json(r, r->session_cookie, &r->session, &r->resp_json);
}

enum cd_err cd__http_console_sign_out(struct cd_req *r)
{
    enum cd_err err;

    if ((err = need_session(r)) != CD_OK ||
        (err = cd_staff_session_end(r->app->store, &r->session, r->request_id)) != CD_OK)
        return err;
    cd__http_cookie(r, CD_HTTP_SESSION_COOKIE, "", "/", 0);
    r->status = 204;
    return CD_OK;
}

enum cd_err cd__http_console_purpose(struct cd_req *r)
{
    static const char *const allowed[] = {"purpose", NULL};
    struct cd_str name = CD_STR_NULL;
    struct cd_policy_grant g;
    enum cd_purpose purpose;
    enum cd_err err;

    if ((err = need_session(r)) != CD_OK || (err = cd_json_only(r->json, allowed)) != CD_OK ||
        (err = cd_json_str(r->json, "purpose", true, &name)) != CD_OK)
        return err;
    if (!cd_purpose_parse(name, &purpose))
        return cd_err_set(CD_ERR_PURPOSE_UNKNOWN, "'purpose' must be one of: %s",
                          cd_purpose_list());
    if ((err = cd_policy_check(r->app->policy, r->session.role, purpose, &g)) != CD_OK ||
        (err = cd_staff_session_set_purpose(r->app->store, &r->session, purpose,
                                            r->request_id)) != CD_OK)
        return err;
    r->session.purpose = purpose;
    r->session.has_purpose = true;
    return session_json(r, r->session_cookie, &r->session, &r->resp_json);
}

enum cd_err cd__http_console_password(struct cd_req *r)
{
    static const char *const allowed[] = {"current_password", "new_password", NULL};
    struct cd_str current = CD_STR_NULL, fresh = CD_STR_NULL;
    int64_t ended = 0;
    enum cd_err err;

    if ((err = need_session(r)) != CD_OK || (err = cd_json_only(r->json, allowed)) != CD_OK ||
        (err = cd_json_str(r->json, "current_password", true, &current)) != CD_OK ||
        (err = cd_json_str(r->json, "new_password", true, &fresh)) != CD_OK ||
        (err = cd_staff_password_change(r->app->store, &r->session, current, fresh,
                                        r->request_id, &ended)) != CD_OK)
        return err;
    r->resp_json = json_pack("{s:I}", "other_sessions_ended", (json_int_t)ended);
    return r->resp_json ? CD_OK : CD_ERR_NOMEM;
}

/* ---- staff accounts ---- */

static struct cd_staff_actor actor_of(const struct cd_req *r)
{
    return (struct cd_staff_actor){r->principal.token_id, cd_role_name(r->principal.role),
                                   r->principal.name, r->request_id};
}

enum cd_err cd__http_staff_list(struct cd_req *r)
{
    json_t *items = NULL;
    enum cd_err err = cd_staff_list(r->app->store, &items);

    if (err != CD_OK)
        return err;
    r->resp_json = json_pack("{s:o}", "items", items);
    return r->resp_json ? CD_OK : CD_ERR_NOMEM;
}

enum cd_err cd__http_staff_create(struct cd_req *r)
{
    static const char *const allowed[] = {"username", "name", "role", "password", NULL};
    struct cd_str user = CD_STR_NULL, name = CD_STR_NULL, role_s = CD_STR_NULL,
                  pass = CD_STR_NULL;
    struct cd_staff_actor actor = actor_of(r);
    enum cd_role role;
    enum cd_err err;

    if ((err = cd_json_only(r->json, allowed)) != CD_OK ||
        (err = cd_json_str(r->json, "username", true, &user)) != CD_OK ||
        (err = cd_json_str(r->json, "name", true, &name)) != CD_OK ||
        (err = cd_json_str(r->json, "role", true, &role_s)) != CD_OK ||
        (err = cd_json_str(r->json, "password", true, &pass)) != CD_OK)
        return err;
    if (!cd_role_parse(role_s, &role))
        return cd_err_set(CD_ERR_INVALID, "'role' must be one of admin, supervisor, agent, "
                                          "compliance, integration");
    if ((err = cd_staff_add(r->app->store, user, name, role, pass, &actor, &r->resp_json)) !=
        CD_OK)
        return err;
    r->status = 201;
    return CD_OK;
}

enum cd_err cd__http_staff_disable(struct cd_req *r)
{
    struct cd_staff_actor actor = actor_of(r);

    return cd_staff_disable(r->app->store, r->params[0], &actor, &r->resp_json);
}

enum cd_err cd__http_staff_sessions_revoke(struct cd_req *r)
{
    struct cd_staff_actor actor = actor_of(r);
    int64_t ended = 0;
    enum cd_err err = cd_staff_sessions_revoke(r->app->store, r->params[0], &actor, &ended);

    if (err != CD_OK)
        return err;
    r->resp_json = json_pack("{s:I}", "ended", (json_int_t)ended);
    return r->resp_json ? CD_OK : CD_ERR_NOMEM;
}

enum cd_err cd__http_staff_password_reset(struct cd_req *r)
{
    static const char *const allowed[] = {"password", NULL};
    struct cd_str pass = CD_STR_NULL;
    struct cd_staff_actor actor = actor_of(r);
    enum cd_err err;

    if ((err = cd_json_only(r->json, allowed)) != CD_OK ||
        (err = cd_json_str(r->json, "password", true, &pass)) != CD_OK)
        return err;
    return cd_staff_password_reset(r->app->store, r->params[0], pass, &actor, &r->resp_json);
}
