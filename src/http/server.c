/* The HTTP server on libmicrohttpd. Event threads (epoll) read requests and run only the gates
 * and inline routes; everything that touches the store runs on the worker pool while the
 * connection is suspended, then the worker resumes it and the event thread sends the answer.
 * A handler may instead defer its answer (cd__http_defer): the worker moves on, and the
 * operation's completion resumes the connection. */
#include <arpa/inet.h>
#include <assert.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include "audit/audit.h"
#include "crypto/crypto.h"
#include "http_int.h"

struct job_queue {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct conn_state **items;
    size_t cap, head, len;
    /* Deferred answers whose finish step blocks (cd__http_deferred_done), first in first out;
     * a list through the connections, so queueing one never fails. */
    struct conn_state *fin_head, *fin_tail;
    size_t deferred; /* deferred operations not yet finished: workers outlive them */
    bool stopping;
};

struct cd_http {
    struct MHD_Daemon *d;
    struct cd_app *app;
    size_t max_body;
    /* libmicrohttpd's messages, at most LOG_BURST a second (see mhd_log). */
    pthread_mutex_t log_mu;
    uint64_t log_second;
    unsigned log_lines, log_dropped;
    unsigned port;
    pthread_t *workers;
    unsigned nworkers;
    struct cd_auth_cache *auth_cache;
    struct cd_throttle *sign_in_throttle, *csp_throttle;
    struct job_queue q;
    atomic_bool stopping; /* producers of streamed bodies give up */
    /* The drain (cd_http_quiesce): no new connections, every answer closes its connection. */
    atomic_bool draining;
    MHD_socket listen_fd; /* handed back by MHD_quiesce_daemon; closed after the daemon */
    atomic_uint in_flight; /* requests between their headers and their completion */
};

/* Per-request state (MHD's con_cls). */
struct conn_state {
    struct cd_req r;
    struct cd_http *h;
    struct MHD_Connection *conn;
    uint64_t start_ns;
    const char *target_error;   /* why the request target is refused (static), or NULL */
    const char *repeated_param; /* a query parameter given twice (libmicrohttpd's string) */
    unsigned nargs;             /* query parameters as libmicrohttpd stored them */
    bool gated;    /* gates ran and the handler is queued or done */
    bool done;     /* response ready */
    bool early;    /* a response was queued before the body */
    bool method_not_allowed;
    struct cd_stream *stream; /* a streamed body, produced by the worker after the headers */
    char allow[64]; /* the methods the path does support, for a 405's Allow header */
    /* A deferred answer is ready to go on once both the handler's worker and the operation's
     * completion are through with it: whichever of the two comes second moves it on. */
    atomic_int defer_refs;
    struct conn_state *fin_next;
};

static struct conn_state *conn_of(struct cd_req *r)
{
    return (struct conn_state *)((char *)r - offsetof(struct conn_state, r));
}

/* ---- request helpers for handlers ---- */

struct cd_str cd__http_query(const struct cd_req *r, const char *key)
{
    for (size_t i = 0; i < r->nquery; i++)
        if (cd_str_eq_c(r->query[i].key, key))
            return r->query[i].value;
    return CD_STR_NULL;
}

enum cd_err cd__http_query_int(const struct cd_req *r, const char *key, int def, int min, int max,
                               int *out)
{
    struct cd_str v = cd__http_query(r, key);
    char buf[16], *end = NULL;
    long n;

    if (v.p == NULL) {
        *out = def;
        return CD_OK;
    }
    if (v.len == 0 || v.len >= sizeof buf)
        goto bad;
    memcpy(buf, v.p, v.len);
    buf[v.len] = '\0';
    n = strtol(buf, &end, 10);
    if (*end != '\0' || n < min || n > max)
        goto bad;
    *out = (int)n;
    return CD_OK;
bad:
    return cd_err_set(CD_ERR_INVALID, "query parameter '%s' must be an integer from %d to %d",
                      key, min, max);
}

enum cd_err cd__http_idem_make(struct cd_req *r, const char *name, struct cd_str key,
                              struct cd_str body, struct cd_idem *idem)
{
    if (key.len == 0 || key.len > 255)
        return cd_err_set(CD_ERR_INVALID, "%s must have 1 to 255 characters", name);
    for (size_t i = 0; i < key.len; i++)
        if ((unsigned char)key.p[i] < 0x21 || (unsigned char)key.p[i] > 0x7e)
            return cd_err_set(CD_ERR_INVALID, "%s must be printable ASCII", name);
    /* Scoped to the token and the route: two integrations never share keys. */
    idem->scope = cd_arena_printf(&r->arena, "%s %s %s", r->principal.token_id, r->route->method,
                                  r->path);
    if (idem->scope == NULL)
        return CD_ERR_NOMEM;
    idem->key = key;
    struct cd_str parts[3] = {cd_str_c(r->method), cd_str_c(r->path),
                              {body.p ? body.p : "", body.len}};
    return cd_crypto_sha256v(parts, 3, idem->request_hash);
}

enum cd_err cd__http_idem(struct cd_req *r, struct cd_idem *idem, const struct cd_idem **out)
{
    enum cd_err err;

    *out = NULL;
    if (r->idem_key.p == NULL)
        return CD_OK;
    err = cd__http_idem_make(r, "Idempotency-Key", r->idem_key,
                             (struct cd_str){r->body.p, r->body.len}, idem);
    if (err == CD_OK)
        *out = idem;
    return err;
}

/* ---- routing ---- */

/* Matches path against pattern, capturing {params}. */
static bool match(const char *pattern, const char *path, struct cd_str *params)
{
    size_t np = 0;

    while (*pattern && *path) {
        if (*pattern == '{') {
            const char *end = strchr(pattern, '}');
            const char *seg = path;
            while (*path && *path != '/')
                path++;
            if (path == seg || np >= CD_MAX_PARAMS)
                return false;
            params[np++] = (struct cd_str){seg, (size_t)(path - seg)};
            pattern = end + 1;
        } else if (*pattern++ != *path++) {
            return false;
        }
    }
    return *pattern == '\0' && *path == '\0';
}

const struct cd_route *cd__http_route_find(const char *method, const char *path, size_t *index,
                                           struct cd_str *params, bool *path_known)
{
    *path_known = false;
    for (size_t i = 0; i < cd__http_nroutes; i++) {
        struct cd_str tmp[CD_MAX_PARAMS] = {{NULL, 0}};
        if (!match(cd__http_routes[i].pattern, path, tmp))
            continue;
        *path_known = true;
        if (strcmp(cd__http_routes[i].method, method) == 0 ||
            (strcmp(method, "HEAD") == 0 && strcmp(cd__http_routes[i].method, "GET") == 0)) {
            memcpy(params, tmp, sizeof tmp);
            *index = i;
            return &cd__http_routes[i];
        }
    }
    return NULL;
}

/* ---- streamed bodies ----
 * The worker produces, libmicrohttpd's event thread consumes through a content reader. The
 * buffer between them is bounded: a producer ahead of a slow client waits. When the buffer is
 * empty the reader suspends the connection (returning 0 without suspending would spin) and the
 * next write resumes it; `waiting` is set only while the connection is suspended, under mu, so
 * a resume never meets a connection that is not suspended. The stream is freed by whichever of
 * the two sides lets go last. */

#define STREAM_HIGH (256 * 1024)

struct cd_stream {
    pthread_mutex_t mu;
    pthread_cond_t space;
    struct cd_buf buf;
    size_t off;     /* bytes before off were sent */
    bool done;      /* the producer finished */
    bool failed;    /* ... with an error: end the body abruptly */
    bool cancelled; /* the response is gone (client left, or it ended) */
    bool waiting;   /* the connection is suspended until there is data */
    int refs;
    struct MHD_Connection *conn;
    atomic_bool *stopping;
};

static void stream_unref(struct cd_stream *s)
{
    pthread_mutex_lock(&s->mu);
    bool last = --s->refs == 0;
    pthread_mutex_unlock(&s->mu);
    if (!last)
        return;
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->space);
    cd_buf_free(&s->buf);
    cd_free(s);
}

static struct cd_stream *stream_new(struct MHD_Connection *conn, atomic_bool *stopping)
{
    struct cd_stream *s = cd_calloc(1, sizeof *s);

    if (s == NULL)
        return NULL;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->space, NULL);
    s->buf = CD_BUF_INIT(2 * STREAM_HIGH);
    s->refs = 2; /* the producer and the response */
    s->conn = conn;
    s->stopping = stopping;
    return s;
}

/* Wakes the consumer if it sleeps; called with mu held, resumes after unlocking. */
static bool stream_wake(struct cd_stream *s)
{
    bool resume = s->waiting;

    s->waiting = false;
    return resume;
}

enum cd_err cd__http_stream_write(struct cd_stream *s, const void *p, size_t n)
{
    enum cd_err err = CD_OK;
    bool resume;

    pthread_mutex_lock(&s->mu);
    while (!s->cancelled && s->buf.len - s->off >= STREAM_HIGH) {
        struct timespec until;
        if (atomic_load(s->stopping)) {
            s->cancelled = true;
            break;
        }
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1; /* wake now and then to notice a server stop */
        pthread_cond_timedwait(&s->space, &s->mu, &until);
    }
    if (s->cancelled) {
        err = cd_err_set(CD_ERR_IO, "the client is gone");
    } else {
        if (s->off == s->buf.len) {
            s->off = 0;
            cd_buf_reset(&s->buf);
        }
        err = cd_buf_append(&s->buf, p, n);
    }
    resume = err == CD_OK && stream_wake(s);
    pthread_mutex_unlock(&s->mu);
    if (resume)
        MHD_resume_connection(s->conn);
    return err;
}

static void stream_finish(struct cd_stream *s, bool failed)
{
    bool resume;

    pthread_mutex_lock(&s->mu);
    s->done = true;
    s->failed = failed;
    resume = stream_wake(s);
    pthread_mutex_unlock(&s->mu);
    if (resume)
        MHD_resume_connection(s->conn);
    stream_unref(s);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
    struct cd_stream *s = cls;
    ssize_t n;

    (void)pos;
    pthread_mutex_lock(&s->mu);
    size_t avail = s->buf.len - s->off;
    if (avail > 0) {
        n = (ssize_t)(avail < max ? avail : max);
        memcpy(out, s->buf.p + s->off, (size_t)n);
        s->off += (size_t)n;
        pthread_cond_signal(&s->space);
    } else if (s->done) {
        n = s->failed ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        /* Nothing yet: sleep until the producer writes (see above). */
        s->waiting = true;
        MHD_suspend_connection(s->conn);
        n = 0;
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

static void stream_released(void *cls)
{
    struct cd_stream *s = cls;

    pthread_mutex_lock(&s->mu);
    s->cancelled = true;
    pthread_cond_broadcast(&s->space);
    pthread_mutex_unlock(&s->mu);
    stream_unref(s);
}

/* "GET, PATCH": the methods served on path, for the Allow header of a 405. */
static void allowed_methods(const char *path, char *out, size_t n)
{
    size_t len = 0;

    out[0] = '\0';
    for (size_t i = 0; i < cd__http_nroutes; i++) {
        struct cd_str tmp[CD_MAX_PARAMS] = {{NULL, 0}};
        if (match(cd__http_routes[i].pattern, path, tmp) && len < n)
            len += (size_t)snprintf(out + len, n - len, "%s%s", len ? ", " : "",
                                    cd__http_routes[i].method);
    }
}

/* ---- responses ---- */

static void set_problem(struct cd_req *r, enum cd_err err, const char *detail)
{
    const struct cd_problem_kind *k = cd__http_problem_of(err);

    json_decref(r->resp_json);
    r->status = k->status;
    r->resp_json = cd__http_problem_json(k, detail, r->path, r->request_id, r->problem_ext);
    r->problem_ext = NULL;
    r->resp_type = "application/problem+json";
}

static void set_problem_kind(struct cd_req *r, const struct cd_problem_kind *k,
                             const char *detail)
{
    json_decref(r->resp_json);
    r->status = k->status;
    r->resp_json = cd__http_problem_json(k, detail, r->path, r->request_id, NULL);
    r->resp_type = "application/problem+json";
}

/* Out of memory even for the answer: a static 503 needs no allocation of ours. */
static const char oom_problem[] = "{\"type\":\"/problems/" CD__HTTP_OOM_SLUG
                                  "\",\"title\":\"" CD__HTTP_OOM_TITLE "\",\"status\":503}";

static enum MHD_Result queue_oom(struct MHD_Connection *conn)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        sizeof oom_problem - 1, (void *)oom_problem, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret;

    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "application/problem+json");
    MHD_add_response_header(resp, "Retry-After", "1");
    ret = MHD_queue_response(conn, 503, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result send_response(struct conn_state *cs)
{
    struct cd_req *r = &cs->r;
    struct MHD_Response *resp = NULL;
    char *text = NULL;
    size_t len = 0;
    enum MHD_Result ret;

    if (r->resp_json) {
        if (cd_json_dump(r->resp_json, &text, &len) != CD_OK) {
            text = NULL;
            r->status = 503;
        }
    }
    if (cs->stream) {
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, stream_read,
                                                 cs->stream, stream_released);
        if (resp)
            cs->stream = NULL; /* the response holds its reference now */
    } else if (text) {
        resp = MHD_create_response_from_buffer_with_free_callback(len, text, cd_free);
        if (resp == NULL)
            cd_free(text);
    } else if (r->resp_body) {
        resp = MHD_create_response_from_buffer_with_free_callback(r->resp_len, r->resp_body,
                                                                  cd_free);
        if (resp)
            r->resp_body = NULL;
    } else if (r->resp_static) {
        resp = MHD_create_response_from_buffer(r->resp_len, (void *)r->resp_static,
                                               MHD_RESPMEM_PERSISTENT);
    } else {
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    }
    if (resp == NULL) {
        resp = MHD_create_response_from_buffer(sizeof oom_problem - 1, (void *)oom_problem,
                                               MHD_RESPMEM_PERSISTENT);
        r->status = 503;
        r->resp_type = "application/problem+json";
        if (resp == NULL)
            return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type",
                            r->resp_type ? r->resp_type
                                         : (r->resp_json ? "application/json" : "text/plain"));
    MHD_add_response_header(resp, "Request-Id", r->request_id);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    bool cache_control = false;
    for (unsigned i = 0; i < r->nheaders; i++) {
        MHD_add_response_header(resp, r->headers[i].name, r->headers[i].value);
        cache_control |= strcasecmp(r->headers[i].name, "Cache-Control") == 0;
    }
    if (!cache_control)
        MHD_add_response_header(resp, "Cache-Control", "no-store");
    if (r->location[0])
        MHD_add_response_header(resp, "Location", r->location);
    if (r->disposition[0] && r->status < 300)
        MHD_add_response_header(resp, "Content-Disposition", r->disposition);
    if (r->status == 401)
        MHD_add_response_header(resp, "WWW-Authenticate", "Bearer realm=\"candor\"");
    if (r->status == 405 && cs->method_not_allowed)
        MHD_add_response_header(resp, "Allow", cs->allow);
    if (r->replayed)
        MHD_add_response_header(resp, "Idempotent-Replayed", "true");
    if (r->status == 503)
        MHD_add_response_header(resp, "Retry-After", "1");
    if (atomic_load_explicit(&cs->h->draining, memory_order_relaxed))
        MHD_add_response_header(resp, "Connection", "close");
    ret = MHD_queue_response(cs->conn, r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

bool cd__http_header_add(struct cd_req *r, const char *name, const char *value)
{
    if (r->nheaders == sizeof r->headers / sizeof r->headers[0])
        return false;
    r->headers[r->nheaders].name = name;
    r->headers[r->nheaders].value = value;
    r->nheaders++;
    return true;
}

bool cd__http_cookie(struct cd_req *r, const char *name, const char *value, const char *path,
                     long long max_age_s)
{
    bool https = r->origin.len >= 8 && strncmp(r->origin.p, "https://", 8) == 0;
    char *set = cd_arena_printf(&r->arena, "%s=%s; Path=%s; Max-Age=%lld; HttpOnly; "
                                           "SameSite=Strict%s",
                                name, value, path, max_age_s, https ? "; Secure" : "");

    return set != NULL && cd__http_header_add(r, "Set-Cookie", set);
}

/* ---- the gates: auth, role, purpose, body ---- */

/* A request with no Authorization header but the console's session cookie is the console
 * acting for a signed-in person. */
static bool session_request(const struct cd_req *r)
{
    return r->authorization.p == NULL && r->session_cookie.p != NULL &&
           !(r->route->flags & (CD_ROUTE_PUBLIC | CD_ROUTE_SELF));
}

/* The customer's gate, for their self-service routes: their session cookie alone (an API token
 * or a staff session is no one's self-service session), its anti-forgery token on changes, and
 * the purpose of the customer's own access; another purpose named is refused. */
static bool portal_gate(struct cd_req *r)
{
    enum cd_err err;
    bool safe = strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0;

    if (r->me_cookie.p == NULL) {
        set_problem(r, CD_ERR_UNAUTHENTICATED,
                    "sign in first: POST /v1/me/sign-in-codes, then POST /v1/me/session with "
                    "the code");
        return false;
    }
    if ((err = cd_portal_session_verify(r->app->store, r->me_cookie, &r->portal)) != CD_OK) {
        set_problem(r, err, cd_err_detail());
        return false;
    }
    if (!safe && !cd_portal_csrf_check(r->me_cookie, r->csrf_hdr)) {
        set_problem(r, CD_ERR_FORBIDDEN,
                    "a change made in a self-service session needs its anti-forgery token in "
                    "the Candor-CSRF header (GET /v1/me/session gives it)");
        return false;
    }
    if (r->purpose_hdr.p && !cd_str_eq_c(r->purpose_hdr, CD_PORTAL_PURPOSE)) {
        set_problem(r, CD_ERR_PURPOSE_DENIED,
                    "a self-service session reads the customer's own data under "
                    CD_PORTAL_PURPOSE " alone");
        return false;
    }
    r->via_portal = true;
    r->authenticated = true;
    r->has_purpose = cd_purpose_parse(CD_STR(CD_PORTAL_PURPOSE), &r->purpose);
    assert(r->has_purpose); /* a purpose of the fixed list */
    /* Their own data, all of it: what is held about them is what they have the right to see. */
    r->grant.fields = CD_FIELDS_ALL;
    r->grant.allowed_when_restricted = true;
    cd_portal_actor(&r->portal, r->request_id, &r->actor);
    return true;
}

/* The console's gate: the session must be live; a request that changes anything must carry
 * the session's anti-forgery token (a cookie rides along on requests other sites make; that
 * token does not); the purpose is the one the person declared, so a request may name no
 * other, and one that names none works under it. The principal is the person, so the ledger
 * names them. */
static bool session_gate(struct cd_req *r)
{
    enum cd_err err;
    bool safe = strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0;

    if ((err = cd_staff_session_verify(r->app->store, r->session_cookie, &r->session)) !=
        CD_OK) {
        set_problem(r, err, cd_err_detail());
        return false;
    }
    if (!safe && !cd_staff_csrf_check(r->session_cookie, r->csrf_hdr)) {
        set_problem(r, CD_ERR_FORBIDDEN,
                    "a change made with a console session needs its anti-forgery token in the "
                    "Candor-CSRF header (GET /console/session gives it)");
        return false;
    }
    /* After an administrator set a temporary password, the person chooses their own before
     * anything else; they may still see their session and sign out. */
    if (r->session.must_change_password &&
        strcmp(r->route->operation_id, "consoleSession") != 0 &&
        strcmp(r->route->operation_id, "consoleChangePassword") != 0 &&
        strcmp(r->route->operation_id, "consoleSignOut") != 0) {
        set_problem(r, CD_ERR_FORBIDDEN,
                    "an administrator set a temporary password for this account: choose your "
                    "own first (PUT /console/session/password)");
        return false;
    }
    /* A request naming a purpose other than the session's is refused in run_gates, where
     * every refused purpose is recorded. Without the header, an API call works under the
     * session's purpose: the page need not repeat it. */
    if (r->purpose_hdr.p == NULL && r->session.has_purpose &&
        strncmp(r->route->pattern, "/v1/", 4) == 0)
        r->purpose_hdr = cd_str_c(cd_purpose_name(r->session.purpose));
    r->via_session = true;
    r->authenticated = true;
    snprintf(r->principal.token_id, sizeof r->principal.token_id, "%s", r->session.staff_id);
    snprintf(r->principal.name, sizeof r->principal.name, "%s", r->session.name);
    r->principal.role = r->session.role;
    r->principal.expires_at = r->session.expires_at;
    return true;
}

/* The last gate: a route that takes a JSON object gets one. */
static bool json_body(struct cd_req *r)
{
    enum cd_err err;

    if (!(r->route->flags & CD_ROUTE_JSON))
        return true;
    if (r->content_type.p && !(r->content_type.len >= 16 &&
                               strncasecmp(r->content_type.p, "application/json", 16) == 0)) {
        set_problem(r, CD_ERR_UNSUPPORTED, "send the body as application/json");
        return false;
    }
    if ((err = cd_json_parse_object(r->body.p, r->body.len, &r->json)) != CD_OK) {
        if (err == CD_ERR_NOMEM)
            set_problem(r, err, "out of memory");
        else
            set_problem_kind(r, &cd__http_problem_kinds[CD_PROBLEM_MALFORMED_JSON],
                             cd_err_detail());
        return false;
    }
    return true;
}

static bool run_gates(struct conn_state *cs)
{
    struct cd_req *r = &cs->r;
    const struct cd_route *rt = r->route;
    enum cd_err err;

    if (rt->flags & CD_ROUTE_SELF) {
        if (!portal_gate(r))
            return false;
        return json_body(r);
    }
    if (session_request(r)) {
        if (!session_gate(r))
            return false;
        if (!(rt->roles & CD_ROLE_BIT(r->principal.role))) {
            set_problem(r, CD_ERR_FORBIDDEN, "this role may not use this operation");
            return false;
        }
    } else if (!(rt->flags & CD_ROUTE_PUBLIC)) {
        struct cd_str tok = r->authorization;
        if (tok.len < 7 || strncasecmp(tok.p, "Bearer ", 7) != 0) {
            set_problem(r, CD_ERR_UNAUTHENTICATED,
                        "send 'Authorization: Bearer <token>' (candor token create)");
            return false;
        }
        tok.p += 7;
        tok.len -= 7;
        if ((err = cd_auth_verify_cached(r->auth_cache, r->app->store, tok, &r->principal)) !=
            CD_OK) {
            set_problem(r, err, cd_err_detail());
            return false;
        }
        r->authenticated = true;
        if (!(rt->roles & CD_ROLE_BIT(r->principal.role))) {
            set_problem(r, CD_ERR_FORBIDDEN, "this role may not use this operation");
            return false;
        }
    }
    if (r->purpose_hdr.p) {
        if (!cd_purpose_parse(r->purpose_hdr, &r->purpose)) {
            char msg[300];
            snprintf(msg, sizeof msg, "Candor-Purpose must be one of: %s", cd_purpose_list());
            set_problem(r, CD_ERR_PURPOSE_UNKNOWN, msg);
            return false;
        }
        r->has_purpose = true;
        if (r->via_session && !(r->session.has_purpose && r->session.purpose == r->purpose))
            err = cd_err_set(CD_ERR_PURPOSE_DENIED,
                             "the console session works under another purpose (or none): "
                             "switch the purpose first (PUT /console/session/purpose)");
        else if (r->authenticated)
            err = cd_policy_check(r->app->policy, r->principal.role, r->purpose, &r->grant);
        else
            err = CD_OK;
        if (err != CD_OK) {
            char detail[300];
            snprintf(detail, sizeof detail, "%s", cd_err_detail());
            /* A refused purpose is evidence: it is recorded before it is answered. */
            struct cd_audit_event ev = {.action = "access.denied", .outcome = "denied",
                                        .actor_token = r->principal.token_id,
                                        .actor_role = cd_role_name(r->principal.role),
                                        .actor_name = r->principal.name,
                                        .purpose = cd_purpose_name(r->purpose),
                                        .request_id = r->request_id,
                                        .reason = cd_err_name(CD_ERR_PURPOSE_DENIED)};
            char customer[CD_ID_MAX];
            /* The customer can see refused attempts on their data in their access log. */
            if (cd__http_subject(r, customer))
                ev.customer_id = customer;
            if ((err = cd_audit_record(r->app->store, &ev)) != CD_OK) {
                set_problem(r, err, cd_err_detail());
                return false;
            }
            set_problem(r, CD_ERR_PURPOSE_DENIED, detail);
            return false;
        }
    } else if (rt->flags & CD_ROUTE_PURPOSE) {
        char msg[300];
        snprintf(msg, sizeof msg,
                 "this operation reads personal data: declare why with the Candor-Purpose "
                 "header (%s)",
                 cd_purpose_list());
        set_problem(r, CD_ERR_PURPOSE_MISSING, msg);
        return false;
    }
    r->actor.token_id = r->authenticated ? r->principal.token_id : "anonymous";
    r->actor.role = r->authenticated ? cd_role_name(r->principal.role) : "public";
    r->actor.name = r->authenticated ? r->principal.name : "public";
    r->actor.request_id = r->request_id;
    r->actor.purpose = r->has_purpose ? cd_purpose_name(r->purpose) : NULL;
    r->actor.restricted_ok = r->has_purpose && r->grant.allowed_when_restricted;
    r->actor.needs_consent = r->has_purpose && cd__http_needs_consent(r->app, r->purpose);
    return json_body(r);
}

static void run_handler(struct conn_state *cs)
{
    struct cd_req *r = &cs->r;
    enum cd_err err;

    cd_err_clear();
#ifdef CD_FAULT_INJECTION
    /* Test builds: "Candor-Fault: alloc=N" fails the Nth allocation of this request,
     * "store=N" the Nth statement of its write. */
    if (r->fault.p) {
        char f[64];
        snprintf(f, sizeof f, "%.*s", (int)(r->fault.len < 63 ? r->fault.len : 63), r->fault.p);
        if (strncmp(f, "alloc=", 6) == 0)
            cd_alloc_fail_nth(strtol(f + 6, NULL, 10));
        else if (strncmp(f, "store=", 6) == 0)
            cd_store_fault_nth_exec(strtol(f + 6, NULL, 10));
    }
#endif
    if (run_gates(cs)) {
        err = r->route->handler(r);
        if (err != CD_OK)
            set_problem(r, err, cd_err_detail()[0] ? cd_err_detail() : NULL);
        else if (r->status == 0 && r->finish == NULL)
            r->status = 200;
    }
#ifdef CD_FAULT_INJECTION
    cd_alloc_fail_nth(0);
    cd_store_fault_nth_exec(0);
#endif
    cs->done = true;
}

/* Builds a deferred answer, on whichever thread may run its finish step. */
static void run_finish(struct conn_state *cs)
{
    struct cd_req *r = &cs->r;
    enum cd_err (*finish)(struct cd_req *) = r->finish;
    enum cd_err err;

    r->finish = NULL;
    cd_err_clear();
    cd_alloc_fault_put(r->finish_fault);
    err = finish(r);
    if (err != CD_OK)
        set_problem(r, err, cd_err_detail()[0] ? cd_err_detail() : NULL);
    else if (r->status == 0)
        r->status = 200;
#ifdef CD_FAULT_INJECTION
    cd_alloc_fail_nth(0);
#endif
    pthread_mutex_lock(&cs->h->q.mu);
    if (--cs->h->q.deferred == 0 && cs->h->q.stopping)
        pthread_cond_broadcast(&cs->h->q.cv);
    pthread_mutex_unlock(&cs->h->q.mu);
}

void cd__http_defer(struct cd_req *r, enum cd_err (*finish)(struct cd_req *r))
{
    struct conn_state *cs = conn_of(r);

    r->finish = finish;
    atomic_store(&cs->defer_refs, 2);
    pthread_mutex_lock(&cs->h->q.mu);
    cs->h->q.deferred++;
    pthread_mutex_unlock(&cs->h->q.mu);
}

void cd__http_defer_cancel(struct cd_req *r)
{
    struct conn_state *cs = conn_of(r);

    r->finish = NULL;
    pthread_mutex_lock(&cs->h->q.mu);
    if (--cs->h->q.deferred == 0 && cs->h->q.stopping)
        pthread_cond_broadcast(&cs->h->q.cv);
    pthread_mutex_unlock(&cs->h->q.mu);
}

/* Both sides are through with a deferred request: a finish step that blocks goes to a worker;
 * otherwise the connection resumes and the event thread runs it before sending. */
static void deferred_ready(struct conn_state *cs)
{
    struct job_queue *q = &cs->h->q;

    if (cs->r.finish_blocks) {
        pthread_mutex_lock(&q->mu);
        cs->fin_next = NULL;
        if (q->fin_tail)
            q->fin_tail->fin_next = cs;
        else
            q->fin_head = cs;
        q->fin_tail = cs;
        pthread_cond_signal(&q->cv);
        pthread_mutex_unlock(&q->mu);
        return;
    }
    MHD_resume_connection(cs->conn);
}

void cd__http_deferred_done(struct cd_req *r, void *ctx, bool blocks)
{
    struct conn_state *cs = conn_of(r);

    r->finish_ctx = ctx;
    r->finish_blocks = blocks;
    r->finish_fault = cd_alloc_fault_take();
    if (atomic_fetch_sub(&cs->defer_refs, 1) == 1)
        deferred_ready(cs);
}

/* ---- worker pool ---- */

static void *worker_main(void *arg)
{
    struct cd_http *h = arg;
    struct job_queue *q = &h->q;

    pthread_setname_np(pthread_self(), "cd-worker");
    /* Batch scheduling: a worker woken by the store writer (or an event thread) waits for its
     * turn instead of preempting the waker, so the writer wakes a whole committed batch
     * without being switched out after each wake-up. */
    pthread_setschedparam(pthread_self(), SCHED_BATCH, &(struct sched_param){0});
    for (;;) {
        pthread_mutex_lock(&q->mu);
        while (q->len == 0 && q->fin_head == NULL && !(q->stopping && q->deferred == 0))
            pthread_cond_wait(&q->cv, &q->mu);
        if (q->fin_head) {
            struct conn_state *cs = q->fin_head;
            if ((q->fin_head = cs->fin_next) == NULL)
                q->fin_tail = NULL;
            pthread_mutex_unlock(&q->mu);
            run_finish(cs);
            MHD_resume_connection(cs->conn);
            continue;
        }
        if (q->len == 0) { /* stopping, and no deferred answer is outstanding */
            pthread_mutex_unlock(&q->mu);
            return NULL;
        }
        struct conn_state *cs = q->items[q->head];
        q->head = (q->head + 1) % q->cap;
        q->len--;
        pthread_mutex_unlock(&q->mu);
        run_handler(cs);
        if (cs->r.finish) {
            /* Deferred: the completion resumes the connection, unless it came first. */
            if (atomic_fetch_sub(&cs->defer_refs, 1) == 1)
                deferred_ready(cs);
            continue;
        }
        struct cd_stream *stream = NULL;
        cd_stream_producer produce = cs->r.produce;
        void *pctx = cs->r.produce_ctx;
        void (*pfree)(void *) = cs->r.produce_free;
        if (produce && cs->r.status < 300 && (stream = stream_new(cs->conn, &h->stopping)))
            cs->stream = stream;
        else if (produce && cs->r.status < 300)
            set_problem(&cs->r, CD_ERR_NOMEM, "out of memory for the streamed answer");
        /* After this resume the connection (and cs) belong to the event thread again. */
        MHD_resume_connection(cs->conn);
        if (stream) {
            enum cd_err perr = produce(stream, pctx);
            stream_finish(stream, perr != CD_OK);
        }
        if (pfree)
            pfree(pctx);
    }
}

static bool enqueue(struct cd_http *h, struct conn_state *cs)
{
    struct job_queue *q = &h->q;

    pthread_mutex_lock(&q->mu);
    if (q->len == q->cap || q->stopping) {
        pthread_mutex_unlock(&q->mu);
        return false;
    }
    q->items[(q->head + q->len) % q->cap] = cs;
    q->len++;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return true;
}

/* ---- libmicrohttpd callbacks ---- */

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    struct conn_state *cs = cls;
    struct cd_req *r = &cs->r;
    struct cd_str k = cd_str_c(key);

    cs->nargs++;
    /* on_uri refused more than CD_MAX_QUERY parameters before they were parsed. */
    if (key == NULL || r->nquery == CD_MAX_QUERY)
        return MHD_YES;
    /* Two values for one parameter: which one counts would be the reader's guess. */
    for (size_t i = 0; i < r->nquery; i++)
        if (cd_str_eq(r->query[i].key, k)) {
            if (cs->repeated_param == NULL)
                cs->repeated_param = key;
            return MHD_YES;
        }
    r->query[r->nquery].key = k;
    r->query[r->nquery].value = value ? cd_str_c(value) : CD_STR("");
    r->nquery++;
    return MHD_YES;
}

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      size_t key_size, const char *value, size_t value_size)
{
    cd__http_headers_add(cls, (struct cd_str){key, key_size}, (struct cd_str){value, value_size});
    return MHD_YES;
}

static void log_access(const char *request_id, const char *method, size_t route_index,
                       unsigned status, uint64_t ns, const char *token)
{
    const char *route =
        route_index < cd__http_nroutes ? cd__http_routes[route_index].pattern : "unmatched";

    cd__http_metrics_observe(route_index, status, ns);
    cd_log_batched(CD_LOG_INFO, "http.request",
                   "\"request_id\":\"%s\",\"method\":\"%s\",\"route\":\"%s\",\"status\":%u,"
                   "\"duration_us\":%llu,\"token\":\"%s\"",
                   request_id, method ? method : "-", route, status,
                   (unsigned long long)(ns / 1000), token);
}

static void log_request(struct conn_state *cs)
{
    struct cd_req *r = &cs->r;

    log_access(r->request_id, r->method, r->route ? r->route_index : cd__http_nroutes,
               r->status, cd_mono_ns() - cs->start_ns,
               r->authenticated ? r->principal.token_id : "-");
}

/* Writes a whole problem answer on the connection's socket and half-closes it; the caller then
 * makes libmicrohttpd close the connection. Only for what libmicrohttpd 0.9.75 cannot answer
 * itself: a request target whose query it may fail to store (it then waits for the connection
 * timeout instead of answering, see on_uri), a request head that leaves no room for an answer
 * in the connection's memory (room_to_answer), and a chunked body that passes the limit (a
 * response can be queued before the body or after it, never while it is read). Nothing of this
 * request was sent yet and libmicrohttpd writes nothing meanwhile (this runs on the
 * connection's event thread), so these bytes are the next the client reads. The socket is
 * non-blocking: an answer that does not fit its send buffer at once is cut short, and the
 * client sees the connection close. */
static void answer_now(struct MHD_Connection *conn, const struct cd_problem_kind *k,
                       const char *detail, const char *instance, const char *request_id)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    json_t *j = cd__http_problem_json(k, detail, instance, request_id, NULL);
    char *body = NULL, head[512], date[40];
    size_t blen = 0;
    struct tm tm;
    time_t now = time(NULL);

    if (j == NULL || cd_json_dump(j, &body, &blen) != CD_OK)
        blen = 0; /* the status line still says it */
    json_decref(j);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", gmtime_r(&now, &tm));
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %u %s\r\nDate: %s\r\nConnection: close\r\n"
                     "Content-Type: application/problem+json\r\nContent-Length: %zu\r\n"
                     "Request-Id: %s\r\nX-Content-Type-Options: nosniff\r\n"
                     "Cache-Control: no-store\r\n\r\n",
                     k->status, MHD_get_reason_phrase_for(k->status), date, blen, request_id);
    if (ci && n > 0 && (size_t)n < sizeof head) {
        struct iovec iov[2] = {{head, (size_t)n}, {body, blen}};
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = blen ? 2 : 1};
        (void)sendmsg(ci->connect_fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        shutdown(ci->connect_fd, SHUT_WR);
    }
    cd_free(body);
}

/* answer_now for a request with state: the access line shows the answer. */
static void refuse_now(struct conn_state *cs, const struct cd_problem_kind *k, const char *detail)
{
    cs->r.status = k->status;
    answer_now(cs->conn, k, detail, cs->r.path, cs->r.request_id);
}

/* Called by libmicrohttpd as soon as a request line is in, before it parses the query.
 * libmicrohttpd keeps one record per query parameter in the connection's 16 KiB of memory and,
 * when they do not fit, leaves the connection waiting for its timeout without an answer
 * (0.9.75). With at most CD_MAX_TARGET bytes and CD_MAX_QUERY parameters they always fit; a
 * longer target is answered here and the connection closed. What is found is handed to
 * on_request as the request's pointer: a static error or NULL, never memory of ours, because
 * libmicrohttpd may drop a request it has not shown to on_request without telling us. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    const struct cd__http_target_error *e = cd__http_target_check(uri ? uri : "");

    if (e && e->too_long) {
        char id[CD_ID_MAX];
        uint64_t t0 = cd_mono_ns();
        const struct cd_problem_kind *k = &cd__http_problem_kinds[CD_PROBLEM_URI_TOO_LONG];
        cd_id_new("req", id);
        answer_now(conn, k, e->why, NULL, id);
        log_access(id, NULL, cd__http_nroutes, k->status, cd_mono_ns() - t0, "-");
    }
    return (void *)e;
}

static struct conn_state *conn_new(struct cd_http *h, struct MHD_Connection *conn)
{
    struct conn_state *cs = cd_calloc(1, sizeof *cs);

    if (cs == NULL)
        return NULL;
    cs->h = h;
    cs->conn = conn;
    cs->start_ns = cd_mono_ns();
    cs->r.app = h->app;
    cs->r.auth_cache = h->auth_cache;
    cs->r.sign_in_throttle = h->sign_in_throttle;
    cs->r.csp_throttle = h->csp_throttle;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    cd__throttle_key(ci ? ci->client_addr : NULL, cs->r.client_key);
    cs->r.arena = CD_ARENA_INIT(4 * 1024 * 1024);
    cs->r.body = CD_BUF_INIT(h->max_body);
    cd_id_new("req", cs->r.request_id);
    return cs;
}

static enum MHD_Result answer_early(struct conn_state *cs, const struct cd_problem_kind *k,
                                    const char *detail)
{
    set_problem_kind(&cs->r, k, detail);
    cs->early = true;
    return send_response(cs);
}

#define TOO_BIG "the request body is larger than the limit (%zu bytes)"

/* The largest body the request's route takes (before the route is known, the server's). */
static size_t body_limit(const struct conn_state *cs)
{
    const struct cd_route *rt = cs->r.route;

    return rt && rt->max_body && rt->max_body < cs->h->max_body ? rt->max_body : cs->h->max_body;
}

/* A declared body length over max: Content-Length is digits only here (libmicrohttpd answered
 * anything else itself). */
static bool length_over(struct cd_str cl, size_t max)
{
    size_t n = 0;

    for (size_t i = 0; i < cl.len && cl.p[i] >= '0' && cl.p[i] <= '9'; i++) {
        size_t d = (size_t)(cl.p[i] - '0');
        if (n > (max - d) / 10)
            return true;
        n = n * 10 + d;
    }
    return false;
}

/* libmicrohttpd keeps a request's line and headers, and a record per header line and query
 * parameter, in the connection's memory until the answer is sent, and builds the answer's
 * headers there too; when they do not fit, it closes the connection without an answer. Its own
 * 431 comes only once the header lines themselves do not fit, so a request that leaves less
 * than ANSWER_ROOM is refused here, on the socket itself, while it still can be. */
#define CONN_MEMORY (16 * 1024)
#define ANSWER_ROOM (2 * 1024) /* our largest answer header is about 600 bytes */
#define RECORD_SIZE 64         /* a header record, rounded up to the pool's alignment */

static bool room_to_answer(struct conn_state *cs, unsigned records)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(cs->conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);

    return ci == NULL ||
           ci->header_size + (size_t)records * RECORD_SIZE <= CONN_MEMORY - ANSWER_ROOM;
}

/* The first call for a request: its headers are in and no byte of its body was read. All that
 * can be refused without the body is refused here, the edge's rules first: whatever the
 * route, a request whose target, headers or framing are in doubt is not served. */
static enum MHD_Result on_headers(struct conn_state *cs, const char *url, const char *method,
                                  const char *version)
{
    struct cd_req *r = &cs->r;
    struct cd__http_headers hs = CD_HTTP_HEADERS_INIT;
    const struct cd_problem_kind *k;
    char detail[200];
    bool path_known = false;

    r->method = method;
    MHD_get_connection_values_n(cs->conn, MHD_HEADER_KIND, collect_header, &hs);
    MHD_get_connection_values(cs->conn, MHD_GET_ARGUMENT_KIND, collect_arg, cs);
    if (!room_to_answer(cs, hs.count + cs->nargs)) {
        refuse_now(cs, &cd__http_problem_kinds[CD_PROBLEM_HEADERS_TOO_LARGE],
                   "the request's header lines and query take too much of this server's "
                   "16 KiB per connection; send less than 14 KiB");
        return MHD_NO;
    }
    r->authorization = hs.v[CD_H_AUTHORIZATION];
    r->purpose_hdr = hs.v[CD_H_PURPOSE];
    r->idem_key = hs.v[CD_H_IDEMPOTENCY_KEY];
    r->content_type = hs.v[CD_H_CONTENT_TYPE];
    r->gpc = hs.v[CD_H_GPC];
    r->fault = hs.v[CD_H_FAULT];
    r->session_cookie = cd_str_c(
        MHD_lookup_connection_value(cs->conn, MHD_COOKIE_KIND, CD_HTTP_SESSION_COOKIE));
    r->me_cookie =
        cd_str_c(MHD_lookup_connection_value(cs->conn, MHD_COOKIE_KIND, CD_HTTP_ME_COOKIE));
    r->csrf_hdr =
        cd_str_c(MHD_lookup_connection_value(cs->conn, MHD_HEADER_KIND, CD_HTTP_CSRF_HEADER));
    r->origin = cd_str_c(MHD_lookup_connection_value(cs->conn, MHD_HEADER_KIND, "Origin"));
    r->accept_encoding =
        cd_str_c(MHD_lookup_connection_value(cs->conn, MHD_HEADER_KIND, "Accept-Encoding"));
    r->if_none_match =
        cd_str_c(MHD_lookup_connection_value(cs->conn, MHD_HEADER_KIND, "If-None-Match"));
    /* r->path stays NULL: decoded, it is not the path the client sent (%00 ends it early). */
    if (cs->target_error)
        return answer_early(cs, &cd__http_problem_kinds[CD_PROBLEM_INVALID_URI],
                            cs->target_error);
    r->path = url;
    k = cd__http_headers_check(&hs, version && strcmp(version, MHD_HTTP_VERSION_1_0) == 0,
                               detail, sizeof detail);
    if (k)
        return answer_early(cs, k, detail);
    if (cs->repeated_param) {
        char name[41];
        size_t i = 0;
        for (; cs->repeated_param[i] && i + 1 < sizeof name; i++)
            name[i] = cs->repeated_param[i] > 0x20 && cs->repeated_param[i] < 0x7f
                          ? cs->repeated_param[i]
                          : '?';
        name[i] = '\0';
        snprintf(detail, sizeof detail, "the query parameter '%s' appears more than once", name);
        return answer_early(cs, &cd__http_problem_kinds[CD_PROBLEM_INVALID_URI], detail);
    }
    r->route = cd__http_route_find(method, url, &r->route_index, r->params, &path_known);
    if (r->route == NULL) {
        if (!path_known)
            return answer_early(cs, cd__http_problem_of(CD_ERR_NOT_FOUND), "no such endpoint");
        cs->method_not_allowed = true;
        allowed_methods(url, cs->allow, sizeof cs->allow);
        return answer_early(cs, &cd__http_problem_kinds[CD_PROBLEM_METHOD_NOT_ALLOWED],
                            "this path does not support this method");
    }
    if (length_over(hs.v[CD_H_CONTENT_LENGTH], body_limit(cs))) {
        snprintf(detail, sizeof detail, TOO_BIG, body_limit(cs));
        return answer_early(cs, cd__http_problem_of(CD_ERR_TOO_BIG), detail);
    }
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    struct cd_http *h = cls;
    struct conn_state *cs = *con_cls;
    const struct cd__http_target_error *target = cd__http_target_error_of(cs);

    if (cs == NULL || target) { /* the first call: what on_uri found, or NULL */
        if (target && target->too_long)
            return MHD_NO; /* answered by on_uri */
        if ((cs = conn_new(h, conn)) == NULL)
            return queue_oom(conn);
        *con_cls = cs;
        atomic_fetch_add(&h->in_flight, 1);
        cs->target_error = target ? target->why : NULL;
        return on_headers(cs, url, method, version);
    }
    struct cd_req *r = &cs->r;
    if (cs->early)
        return MHD_YES;
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        r->body_seen += n;
        if (r->body_seen > body_limit(cs)) {
            /* Only a chunked body gets here: a declared length over the limit was refused
             * with the headers. It is refused now, and no more of it is read. */
            char detail[96];
            snprintf(detail, sizeof detail, TOO_BIG, body_limit(cs));
            refuse_now(cs, cd__http_problem_of(CD_ERR_TOO_BIG), detail);
            return MHD_NO;
        }
        if (!r->body_nomem && cd_buf_append(&r->body, upload_data, n) != CD_OK)
            r->body_nomem = true; /* not over the limit, so out of memory */
        return MHD_YES;
    }
    if (cs->done) {
        if (cs->r.finish)
            run_finish(cs); /* a deferred answer whose finish step does not block */
        return send_response(cs);
    }
    if (cs->gated)
        return MHD_YES; /* spurious call while the worker runs */
    cs->gated = true;
    if (r->body_nomem) {
        set_problem(r, CD_ERR_NOMEM, "out of memory for the request body");
        cs->done = true;
        return send_response(cs);
    }
    /* A console session is checked against the store: never on the event thread. */
    if ((r->route->flags & CD_ROUTE_INLINE) && !session_request(r)) {
        run_handler(cs);
        return send_response(cs);
    }
    MHD_suspend_connection(conn);
    if (!enqueue(h, cs)) {
        set_problem(r, CD_ERR_BUSY, "the server is at capacity; retry shortly");
        cs->done = true;
        MHD_resume_connection(conn);
    }
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct conn_state *cs = *con_cls;
    const struct cd__http_target_error *target = cd__http_target_error_of(cs);

    *con_cls = NULL;
    if (cs == NULL || target) { /* on_uri's verdict: nothing to free */
        /* libmicrohttpd answered before on_request ran (headers over its memory): the access
         * line and the metrics show that too, unless on_uri answered already. */
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_HTTP_STATUS);
        char id[CD_ID_MAX];
        if (ci && !(target && target->too_long)) {
            cd_id_new("req", id);
            log_access(id, NULL, cd__http_nroutes, ci->http_status, 0, "-");
        }
        return;
    }
    atomic_fetch_sub(&cs->h->in_flight, 1);
    if (cs->r.finish) /* a deferred answer nobody waits for any more: its operation is freed */
        run_finish(cs);
    if (cs->stream) /* the response was never created: release its reference */
        stream_released(cs->stream);
    if (cs->r.status == 0) {
        /* libmicrohttpd answered by itself (a malformed length or chunk). */
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_HTTP_STATUS);
        cs->r.status = ci ? ci->http_status : 0;
    }
    if (cs->r.status)
        log_request(cs);
    json_decref(cs->r.json);
    json_decref(cs->r.resp_json);
    json_decref(cs->r.problem_ext);
    cd_free(cs->r.resp_body);
    cd_buf_free(&cs->r.body);
    cd_arena_free(&cs->r.arena);
    cd_free(cs);
}

/* libmicrohttpd logs each connection it refuses at a limit: a flood of connections must not
 * become a flood of log lines. At most LOG_BURST lines a second; the next line written says
 * how many were left out. */
#define LOG_BURST 10

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct cd_http *h = cls;
    char msg[256], safe[256];
    uint64_t second = cd_mono_ns() / 1000000000u;
    unsigned dropped = 0;

    pthread_mutex_lock(&h->log_mu);
    if (second != h->log_second) {
        h->log_second = second;
        h->log_lines = 0;
    }
    bool emit = h->log_lines < LOG_BURST;
    if (emit) {
        h->log_lines++;
        dropped = h->log_dropped;
        h->log_dropped = 0;
    } else {
        h->log_dropped++;
    }
    pthread_mutex_unlock(&h->log_mu);
    if (!emit)
        return;
    vsnprintf(msg, sizeof msg, fmt, ap);
    /* libmicrohttpd's messages carry no request content, but keep them JSON-safe. */
    size_t n = 0;
    for (const char *p = msg; *p && n + 1 < sizeof safe; p++)
        safe[n++] = (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) ? ' ' : *p;
    safe[n] = '\0';
    cd_log(CD_LOG_WARN, "http.mhd", "\"detail\":\"%s\",\"suppressed\":%u", safe, dropped);
}

static enum cd_err parse_listen(const char *listen, struct sockaddr_in *sa)
{
    char host[64];
    const char *colon = strrchr(listen, ':');
    char *end = NULL;
    long port;

    if (colon == NULL || (size_t)(colon - listen) >= sizeof host)
        return cd_err_set(CD_ERR_INVALID, "--listen must be HOST:PORT, e.g. 127.0.0.1:8080");
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || end == colon + 1 || port < 0 || port > 65535)
        return cd_err_set(CD_ERR_INVALID, "the port in --listen must be 0..65535");
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
        return cd_err_set(CD_ERR_INVALID, "the host in --listen must be an IPv4 address");
    return CD_OK;
}

/* Descriptors beyond the connections: the store's files and readers, the log, the listening
 * socket, libmicrohttpd's epoll and wake-up descriptors. */
#define FD_RESERVE 256

/* Every connection holds a descriptor. When the process runs out of them, accept() fails for
 * every client alike, so the connection limits would protect no one: the limit on open files
 * is raised to what the connection limit needs, or the start is refused. */
static enum cd_err fd_room(unsigned connections)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)connections + FD_RESERVE;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
        rl.rlim_cur >= need)
        return CD_OK;
    if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need) {
        rl.rlim_cur = need;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
            return CD_OK;
    }
    return cd_err_set(CD_ERR_INVALID,
                      "--max-connections %u needs %llu open files, but the limit is %llu "
                      "(ulimit -n): raise the limit or lower --max-connections",
                      connections, (unsigned long long)need, (unsigned long long)rl.rlim_max);
}

enum cd_err cd_http_start(const struct cd_http_config *cfg, struct cd_app *app,
                          struct cd_http **out)
{
    struct cd_http *h;
    struct sockaddr_in sa;
    enum cd_err err;
    unsigned max_conns = cfg->max_connections ? cfg->max_connections : CD_HTTP_MAX_CONNECTIONS;

    if ((err = parse_listen(cfg->listen, &sa)) != CD_OK || (err = fd_room(max_conns)) != CD_OK)
        return err;
    if ((h = cd_calloc(1, sizeof *h)) == NULL)
        return CD_ERR_NOMEM;
    pthread_mutex_init(&h->log_mu, NULL);
    h->app = app;
    h->listen_fd = MHD_INVALID_SOCKET;
    h->max_body = cfg->max_body ? cfg->max_body : 1024 * 1024;
    h->nworkers = cfg->workers ? cfg->workers : 64;
    h->q.cap = 65536;
    pthread_mutex_init(&h->q.mu, NULL);
    pthread_cond_init(&h->q.cv, NULL);
    /* A revoked token stops working at once through the API and within 2 s through the CLI. */
    if ((h->q.items = cd_calloc(h->q.cap, sizeof *h->q.items)) == NULL ||
        (h->workers = cd_calloc(h->nworkers, sizeof *h->workers)) == NULL ||
        cd_auth_cache_new(2000, &h->auth_cache) != CD_OK ||
        cd__throttle_new(CD_HTTP_THROTTLE_SLOTS,
                         cfg->sign_in_limit ? cfg->sign_in_limit : CD_HTTP_SIGN_IN_LIMIT,
                         CD_HTTP_SIGN_IN_WINDOW_MS, &h->sign_in_throttle) != CD_OK ||
        cd__throttle_new(CD_HTTP_THROTTLE_SLOTS, CD_HTTP_CSP_REPORTS_PER_MINUTE, 60 * 1000,
                         &h->csp_throttle) != CD_OK) {
        err = CD_ERR_NOMEM;
        goto fail;
    }
    cd__http_metrics_init(cd__http_nroutes);
    for (unsigned i = 0; i < h->nworkers; i++)
        if (pthread_create(&h->workers[i], NULL, worker_main, h) != 0) {
            h->nworkers = i;
            err = cd_err_set(CD_ERR_INTERNAL, "cannot start worker threads");
            goto fail;
        }
    h->d = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG |
            MHD_USE_TURBO,
        0, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_THREAD_POOL_SIZE, cfg->event_threads ? cfg->event_threads : 2,
        /* A connection over either limit is closed as soon as it is accepted. */
        MHD_OPTION_CONNECTION_LIMIT, max_conns, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        cfg->max_client_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        cfg->idle_timeout ? cfg->idle_timeout : CD_HTTP_IDLE_TIMEOUT,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY, MHD_OPTION_LISTEN_BACKLOG_SIZE,
        1024, MHD_OPTION_URI_LOG_CALLBACK, on_uri, h, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
        h, MHD_OPTION_END);
    if (h->d == NULL) {
        err = cd_err_set(CD_ERR_IO, "cannot listen on %s (in use, or not allowed)", cfg->listen);
        goto fail;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : ntohs(sa.sin_port);
    *out = h;
    return CD_OK;
fail:
    cd_http_stop(h);
    return err;
}

unsigned cd_http_port(const struct cd_http *h)
{
    return h->port;
}

void cd_http_quiesce(struct cd_http *h)
{
    if (atomic_exchange(&h->draining, true) || h->d == NULL)
        return;
    h->listen_fd = MHD_quiesce_daemon(h->d);
    /* Refuse new connections at once instead of leaving them in the backlog until the process
     * exits: a client or proxy then turns to another server straight away. */
    if (h->listen_fd != MHD_INVALID_SOCKET)
        shutdown(h->listen_fd, SHUT_RDWR);
}

void cd_http_tokens_changed(struct cd_http *h)
{
    cd_auth_cache_forget(h->auth_cache);
}

unsigned cd_http_in_flight(struct cd_http *h)
{
    return atomic_load(&h->in_flight);
}

void cd_http_stop(struct cd_http *h)
{
    if (h == NULL)
        return;
    cd_http_quiesce(h);
    /* Workers drain the queue and resume every suspended connection before the daemon stops:
     * libmicrohttpd must not be stopped with suspended connections. */
    atomic_store(&h->stopping, true);
    pthread_mutex_lock(&h->q.mu);
    h->q.stopping = true;
    pthread_cond_broadcast(&h->q.cv);
    pthread_mutex_unlock(&h->q.mu);
    for (unsigned i = 0; i < h->nworkers; i++)
        pthread_join(h->workers[i], NULL);
    if (h->d)
        MHD_stop_daemon(h->d);
    if (h->listen_fd != MHD_INVALID_SOCKET)
        close(h->listen_fd);
    cd__http_metrics_free();
    pthread_mutex_destroy(&h->log_mu);
    pthread_mutex_destroy(&h->q.mu);
    pthread_cond_destroy(&h->q.cv);
    cd_free(h->q.items);
    cd_free(h->workers);
    cd_auth_cache_free(h->auth_cache);
    cd__throttle_free(h->sign_in_throttle);
    cd__throttle_free(h->csp_throttle);
    cd_free(h);
}
