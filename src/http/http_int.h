/* Inside the http module only: the request as handlers see it, the route table, helpers. */
#ifndef CD_HTTP_INT_H
#define CD_HTTP_INT_H

#include <sys/socket.h>
#include "auth/auth.h"
#include "http.h"
#include "policy/policy.h"
#include "portal/portal.h"
#include "staff/staff.h"

/* Request targets: at most CD_MAX_TARGET bytes and CD_MAX_QUERY query parameters, or a 414.
 * Both keep libmicrohttpd's query records inside its per-connection memory (server.c). */
#define CD_MAX_TARGET 8192
#define CD_MAX_QUERY 16
#define CD_MAX_PARAMS 3

/* The rule for personal data, enforced here and checked against docs/openapi.yaml by
 * tests/unit/test_http.c: a route either answers with no personal data of a customer, or it
 * is CD_ROUTE_PERSONAL (a purpose is required, the answer is trimmed to it and the read is
 * checked and recorded), or it is a write marked CD_ROUTE_ECHO (its answer carries personal
 * data only under a declared purpose, then trimmed, checked and recorded; without one, the
 * reference fields only). cd__http_fields gives every other route the reference fields.
 * A CD_ROUTE_SELF route is the customer's own, in their self-service session: it takes no
 * purpose (its purpose is the customer's right of access, CD_PORTAL_PURPOSE) and, when it
 * answers with their personal data, it is CD_ROUTE_PERSONAL (checked and recorded). */
enum cd_route_flags {
    CD_ROUTE_PUBLIC = 1 << 0,   /* no token needed */
    CD_ROUTE_PURPOSE = 1 << 1,  /* Candor-Purpose required */
    CD_ROUTE_JSON = 1 << 2,     /* a JSON object body is required */
    CD_ROUTE_INLINE = 1 << 3,   /* never blocks: runs on the event thread */
    CD_ROUTE_IDEMPOTENT = 1 << 4, /* honours Idempotency-Key */
    CD_ROUTE_PERSONAL = 1 << 5, /* answers with a customer's personal data (needs PURPOSE) */
    CD_ROUTE_ECHO = 1 << 6,     /* a write whose answer may echo personal data under a purpose */
    CD_ROUTE_SELF = 1 << 7,     /* the customer's self-service session alone (no token) */
};

struct cd_req;
typedef enum cd_err (*cd_handler)(struct cd_req *r);

/* Whom a route's path names, so a refused attempt is recorded on that customer's access log:
 * its first parameter is a customer's id, or an interaction's or a case's (whose customer is
 * looked up). */
enum cd_route_subject {
    CD_SUBJECT_NONE, /* the path names no customer */
    CD_SUBJECT_CUSTOMER,
    CD_SUBJECT_INTERACTION,
    CD_SUBJECT_CASE,
    CD_SUBJECT_SELF, /* the customer of the self-service session (CD_ROUTE_SELF) */
};

struct cd_route {
    const char *method;
    const char *pattern; /* "/v1/customers/{id}/timeline" */
    cd_handler handler;
    unsigned roles; /* CD_ROLE_BIT mask; ignored for public routes */
    unsigned flags;
    const char *operation_id;
    enum cd_route_subject subject; /* so a row may leave it out (none) */
    size_t max_body;               /* below the server's limit; 0: the server's */
};

extern const struct cd_route cd__http_routes[];
extern const size_t cd__http_nroutes;

/* A response written while it is sent (NDJSON over millions of rows). The handler sets
 * r->produce (and r->produce_ctx, r->produce_free); once the headers are out, the worker that
 * ran the handler calls produce, which writes with cd__http_stream_write. The producer must not
 * touch the request: it may outlive it (the client can go away); its ctx owns what it needs. */
struct cd_stream;
typedef enum cd_err (*cd_stream_producer)(struct cd_stream *s, void *ctx);
/* Appends bytes to the stream, waiting while the client is slower than the producer.
 * Errors: CD_ERR_IO (the client went away or the server is stopping: stop producing),
 * CD_ERR_NOMEM. */
enum cd_err cd__http_stream_write(struct cd_stream *s, const void *p, size_t n);

struct cd_query_param {
    struct cd_str key, value;
};

/* Per-address throttles (throttle.c): at most limit events per address in a window of
 * window_ms that begins with the address's first event, in a table of a fixed number of slots
 * (when it is full, the address whose window began longest ago is forgotten). Any thread. */
struct cd_throttle;
enum cd_err cd__throttle_new(size_t slots, unsigned limit, int64_t window_ms,
                             struct cd_throttle **out);
void cd__throttle_free(struct cd_throttle *t);
/* Counts one event for the address key and returns 0, or, when the address has used up its
 * limit, counts nothing and returns the milliseconds until its window ends. */
int64_t cd__throttle_take(struct cd_throttle *t, const uint8_t key[16], int64_t now);
/* Gives back one event taken for key (an attempt that turned out right). */
void cd__throttle_refund(struct cd_throttle *t, const uint8_t key[16]);
/* The key of a client address: an IPv4 address as its IPv4-mapped IPv6 form, an IPv6 address
 * by its /64 prefix; all zeros when sa is NULL. */
void cd__throttle_key(const struct sockaddr *sa, uint8_t key[16]);

/* The addresses a throttle remembers at most. */
#define CD_HTTP_THROTTLE_SLOTS 4096

/* Content-Security-Policy violation reports (h_console.c): the largest body taken, and how many
 * reports one client address may send a minute (a page in a loop sends one per blocked load). */
#define CD_HTTP_CSP_REPORT_MAX (16 * 1024)
#define CD_HTTP_CSP_REPORTS_PER_MINUTE 60
/* Counts one reported violation of directive (a name from cd__http_csp_directives, or NULL for
 * any other) for /metrics. */
void cd__http_metrics_csp_violation(const char *directive);
/* The directive names /metrics counts by name, NULL-terminated. */
extern const char *const cd__http_csp_directives[];
/* A reported violation as it may be kept and logged: the directive (one of
 * cd__http_csp_directives, or NULL for any other) and the blocked resource's origin
 * ("https://host:port") or the browser's keyword for it ("inline", "eval", "data"...), "none"
 * or "other"; never a path or a query. */
struct cd_csp_violation {
    const char *directive;
    char blocked[128];
};
/* Reads a violation report body, application/csp-report (legacy) or application/reports+json,
 * and calls each for every violation in it, only once the whole body was found well formed.
 * Errors: CD_ERR_INVALID (not JSON, or not a report of that form), CD_ERR_NOMEM. */
enum cd_err cd__http_csp_parse(const char *p, size_t n, bool legacy,
                               void (*each)(const struct cd_csp_violation *v, void *ctx),
                               void *ctx);

struct cd_req {
    struct cd_app *app;
    struct cd_auth_cache *auth_cache; /* the server's verified-token cache */
    struct cd_throttle *sign_in_throttle; /* failed sign-ins by client address */
    struct cd_throttle *csp_throttle;     /* CSP violation reports by client address */
    uint8_t client_key[16];               /* the client address as a throttle key */
    const struct cd_route *route;
    size_t route_index;
    struct cd_arena arena;
    char request_id[CD_ID_MAX];
    const char *method;
    const char *path;
    struct cd_str params[CD_MAX_PARAMS];
    struct cd_query_param query[CD_MAX_QUERY];
    size_t nquery;
    /* headers, copied on the first callback */
    struct cd_str authorization, purpose_hdr, idem_key, content_type, gpc, fault;
    /* the web console's: the session cookie, its anti-forgery header, the Origin (https
     * makes the cookie Secure), and what the client can take for the console's files */
    struct cd_str session_cookie, csrf_hdr, origin, accept_encoding, if_none_match;
    struct cd_str me_cookie; /* the customer's self-service session */
    struct cd_buf body;
    size_t body_seen; /* bytes of body received, kept or not */
    bool body_nomem;  /* the body did not fit in memory: answered 503 once it is read */
    json_t *json; /* parsed body for CD_ROUTE_JSON routes */
    /* who and why, after the gates */
    struct cd_principal principal;
    bool authenticated;
    bool via_session; /* authenticated by a console session cookie, not a bearer token */
    struct cd_staff_session session; /* when via_session */
    bool via_portal; /* authenticated by a customer's self-service session (CD_ROUTE_SELF) */
    struct cd_portal_session portal; /* when via_portal */
    enum cd_purpose purpose;
    bool has_purpose;
    struct cd_policy_grant grant; /* what the declared purpose allows this role */
    struct cd_actor actor;
    /* the response */
    unsigned status;
    json_t *resp_json;
    const char *resp_type; /* for non-JSON bodies */
    char *resp_body;       /* cd_malloc'ed, for non-JSON bodies */
    size_t resp_len;
    const char *resp_static; /* borrowed body that outlives the request (or small_body) */
    char small_body[64];     /* a short answer built without the heap */
    char location[160];
    char disposition[128]; /* Content-Disposition of a download, or "" */
    json_t *problem_ext; /* extra members for a problem response */
    /* Headers a handler adds (name and value borrowed; they outlive the request or live in
     * its arena); a Cache-Control among them replaces the default no-store. */
    struct {
        const char *name, *value;
    } headers[10];
    unsigned nheaders;
    cd_stream_producer produce; /* a streamed body, see struct cd_stream */
    void *produce_ctx;
    void (*produce_free)(void *ctx);
    bool replayed;
    /* A deferred answer (cd__http_defer): the step that builds it, and whether it blocks. */
    enum cd_err (*finish)(struct cd_req *r);
    void *finish_ctx;
    bool finish_blocks;
    struct cd_alloc_fault finish_fault; /* test builds: the request's allocation fault */
};

/* For a handler whose operation completes on another thread (an asynchronous store write), so
 * no worker waits for it: cd__http_defer, before starting the operation, says that
 * finish(r) will build the answer; the handler then returns CD_OK without an answer and its
 * worker moves on. The operation's completion calls cd__http_deferred_done exactly once, from
 * any thread, with ctx for r->finish_ctx: the connection resumes and finish runs on the event
 * thread, or on a worker when blocks is true (it reads the store). A handler whose operation
 * could not start calls cd__http_defer_cancel and answers as usual. */
void cd__http_defer(struct cd_req *r, enum cd_err (*finish)(struct cd_req *r));
void cd__http_defer_cancel(struct cd_req *r);
void cd__http_deferred_done(struct cd_req *r, void *ctx, bool blocks);

/* Finds the route for method and path (NUL-terminated), capturing {params} as views into
 * path; *path_known tells a 405 (path exists, other method) from a 404. HEAD matches GET. */
const struct cd_route *cd__http_route_find(const char *method, const char *path, size_t *index,
                                           struct cd_str *params, bool *path_known);

/* Query parameter value, or an empty view. */
struct cd_str cd__http_query(const struct cd_req *r, const char *key);
/* Integer query parameter within [min, max], or def when absent. Errors: CD_ERR_INVALID. */
enum cd_err cd__http_query_int(const struct cd_req *r, const char *key, int def, int min, int max,
                               int *out);
/* Categories of customer data the answer may carry: what the declared purpose may see on a
 * CD_ROUTE_PERSONAL or CD_ROUTE_ECHO route, the reference fields otherwise (no purpose, or a
 * route that does not answer with personal data). */
unsigned cd__http_fields(const struct cd_req *r);
/* The customer a request is about, as its path names them (a customer id, or an interaction
 * or a case whose customer is looked up), for the record of a refused attempt; false when it names none.
 * May read the store. */
bool cd__http_subject(struct cd_req *r, char out[CD_ID_MAX]);
/* Fills idem from the Idempotency-Key header; returns NULL when the request has none.
 * Errors: CD_ERR_INVALID (malformed key). */
enum cd_err cd__http_idem(struct cd_req *r, struct cd_idem *idem, const struct cd_idem **out);
/* Fills idem with key, scoped to the request's token and route and bound to body (the bytes
 * that make the request: a replay must carry the same). name says where the key came from, for
 * the error. idem->key borrows key; idem->scope lives in r's arena.
 * Errors: CD_ERR_INVALID (not 1 to 255 printable ASCII characters), CD_ERR_NOMEM. */
enum cd_err cd__http_idem_make(struct cd_req *r, const char *name, struct cd_str key,
                               struct cd_str body, struct cd_idem *idem);

/* Batch ingestion (h_batch.c): POST /v1/interactions:batch. */
enum cd_err cd__http_interactions_batch(struct cd_req *r);
/* One item of a batch, ready to ingest: its body without its key, and the key (held so
 * idem.key stays valid) when it has one. */
struct cd__http_batch_entry {
    json_t *body;
    json_t *key;
    struct cd_idem idem;
    bool has_idem;
};
/* Checks a batch body, {"items": [...]} and nothing else, 1 to CD_HTTP_BATCH_MAX objects, each
 * with an optional "idempotency_key". Every item is checked before any is used, so a
 * malformed batch is refused whole. On success *out holds *n entries, freed with
 * cd__http_batch_entries_free; on failure *out is NULL.
 * Errors: CD_ERR_INVALID (the detail names the item), CD_ERR_NOMEM. */
enum cd_err cd__http_batch_parse(struct cd_req *r, struct cd__http_batch_entry **out,
                                 size_t *n);
void cd__http_batch_entries_free(struct cd__http_batch_entry *e, size_t n);
/* One item's result: {"status": 201, or 200 for a replay, "interaction": interaction} when err
 * is CD_OK, else {"status", "problem"} with err's problem (detail, ext's members). Takes
 * interaction and ext whatever happens. Returns NULL when out of memory. */
json_t *cd__http_batch_result(enum cd_err err, json_t *interaction, bool replayed,
                              const char *detail, json_t *ext, const char *request_id);
/* The batch's answer: {"items": results, "succeeded", "failed"}, counted from the results'
 * statuses. Takes results; returns NULL when out of memory. */
json_t *cd__http_batch_answer(json_t *results);

/* Audit ledger handlers (h_audit.c): listing, verification, signed tree heads, proofs and the
 * public key. */
enum cd_err cd__http_audit_list(struct cd_req *r);
enum cd_err cd__http_audit_verify(struct cd_req *r);
enum cd_err cd__http_audit_sth_latest(struct cd_req *r);
enum cd_err cd__http_audit_sth_publish(struct cd_req *r);
enum cd_err cd__http_audit_inclusion(struct cd_req *r);
enum cd_err cd__http_audit_consistency(struct cd_req *r);
enum cd_err cd__http_audit_public_key(struct cd_req *r);

/* Whether purpose needs the customer's consent: the consent rules' answer, the one the whole
 * server gives (without a consent engine, every purpose does). */
bool cd__http_needs_consent(const struct cd_app *app, enum cd_purpose purpose);

/* Consent handlers (h_consent.c). */
enum cd_err cd__http_consent_check(struct cd_req *r);
enum cd_err cd__http_consent_bulk(struct cd_req *r);
enum cd_err cd__http_consent_record(struct cd_req *r);
enum cd_err cd__http_consent_signals(struct cd_req *r);
enum cd_err cd__http_consent_receipt(struct cd_req *r);
enum cd_err cd__http_customer_consents(struct cd_req *r);
enum cd_err cd__http_customer_preferences(struct cd_req *r);
enum cd_err cd__http_notice_publish(struct cd_req *r);
enum cd_err cd__http_notice_get(struct cd_req *r);
enum cd_err cd__http_well_known_keys(struct cd_req *r);
enum cd_err cd__http_well_known_gpc(struct cd_req *r);
enum cd_err cd__http_unsub_link(struct cd_req *r);
enum cd_err cd__http_unsub_page(struct cd_req *r);
enum cd_err cd__http_unsub_post(struct cd_req *r);

/* Data-subject requests (h_dsar.c). */
enum cd_err cd__http_dsar_create(struct cd_req *r);
enum cd_err cd__http_dsar_convert(struct cd_req *r);
enum cd_err cd__http_dsar_list(struct cd_req *r);
enum cd_err cd__http_dsar_regimes(struct cd_req *r);
enum cd_err cd__http_dsar_get(struct cd_req *r);
enum cd_err cd__http_dsar_transition(struct cd_req *r);
enum cd_err cd__http_dsar_extend(struct cd_req *r);
enum cd_err cd__http_dsar_acknowledge(struct cd_req *r);
enum cd_err cd__http_dsar_fulfil(struct cd_req *r);
enum cd_err cd__http_dsar_verify_send(struct cd_req *r);
enum cd_err cd__http_dsar_verify_check(struct cd_req *r);
enum cd_err cd__http_dsar_export(struct cd_req *r);

/* Cases, the queue, agents, SLA policies and the SLA report (h_cases.c). */
enum cd_err cd__http_cases_list(struct cd_req *r);
enum cd_err cd__http_cases_create(struct cd_req *r);
enum cd_err cd__http_cases_get(struct cd_req *r);
enum cd_err cd__http_cases_update(struct cd_req *r);
enum cd_err cd__http_cases_link(struct cd_req *r);
enum cd_err cd__http_cases_events(struct cd_req *r);
enum cd_err cd__http_cases_eta(struct cd_req *r);
enum cd_err cd__http_queue_next(struct cd_req *r);
enum cd_err cd__http_agents_list(struct cd_req *r);
enum cd_err cd__http_agents_create(struct cd_req *r);
enum cd_err cd__http_agents_get(struct cd_req *r);
enum cd_err cd__http_agents_put(struct cd_req *r);
enum cd_err cd__http_sla_policies(struct cd_req *r);
enum cd_err cd__http_sla_report(struct cd_req *r);
enum cd_err cd__http_incidents_list(struct cd_req *r);
enum cd_err cd__http_incidents_create(struct cd_req *r);
enum cd_err cd__http_incidents_get(struct cd_req *r);
enum cd_err cd__http_incidents_update(struct cd_req *r);
enum cd_err cd__http_incidents_affect(struct cd_req *r);
enum cd_err cd__http_incidents_customers(struct cd_req *r);
enum cd_err cd__http_incidents_notify(struct cd_req *r);

/* Records that the request read data about customer_id (its access log shows it), as
 * `action`, durably, before the answer is sent. Errors: CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd__http_record_read(struct cd_req *r, const char *action, const char *customer_id);

/* Retention and legal holds (h_retention.c). */
enum cd_err cd__http_holds_list(struct cd_req *r);
enum cd_err cd__http_hold_create(struct cd_req *r);
enum cd_err cd__http_hold_release(struct cd_req *r);
enum cd_err cd__http_retention_rules(struct cd_req *r);
enum cd_err cd__http_retention_run(struct cd_req *r);
enum cd_err cd__http_retention_runs(struct cd_req *r);

/* The outbox, webhooks and recipients (h_webhooks.c). */
enum cd_err cd__http_event_types(struct cd_req *r);
enum cd_err cd__http_webhook_create(struct cd_req *r);
enum cd_err cd__http_webhook_list(struct cd_req *r);
enum cd_err cd__http_webhook_get(struct cd_req *r);
enum cd_err cd__http_webhook_update(struct cd_req *r);
enum cd_err cd__http_webhook_delete(struct cd_req *r);
enum cd_err cd__http_webhook_rotate(struct cd_req *r);
enum cd_err cd__http_webhook_test(struct cd_req *r);
enum cd_err cd__http_deliveries(struct cd_req *r);
enum cd_err cd__http_delivery_replay(struct cd_req *r);
enum cd_err cd__http_dead_replay(struct cd_req *r);
enum cd_err cd__http_recipient_create(struct cd_req *r);
enum cd_err cd__http_recipient_list(struct cd_req *r);
enum cd_err cd__http_recipient_get(struct cd_req *r);
enum cd_err cd__http_recipient_remove(struct cd_req *r);
enum cd_err cd__http_recipient_disclose(struct cd_req *r);
enum cd_err cd__http_customer_recipients(struct cd_req *r);
enum cd_err cd__http_customer_notices(struct cd_req *r);
enum cd_err cd__http_notices_list(struct cd_req *r);
enum cd_err cd__http_notice_confirm(struct cd_req *r);

/* The web console (h_console.c): its files, sign-in and sessions, staff accounts. */
enum cd_err cd__http_console_file(struct cd_req *r);
enum cd_err cd__http_console_sign_in(struct cd_req *r);
enum cd_err cd__http_console_session(struct cd_req *r);
enum cd_err cd__http_console_sign_out(struct cd_req *r);
enum cd_err cd__http_console_purpose(struct cd_req *r);
enum cd_err cd__http_console_password(struct cd_req *r);
enum cd_err cd__http_console_csp_report(struct cd_req *r);
enum cd_err cd__http_staff_list(struct cd_req *r);
enum cd_err cd__http_staff_create(struct cd_req *r);
enum cd_err cd__http_staff_disable(struct cd_req *r);
enum cd_err cd__http_staff_sessions_revoke(struct cd_req *r);
enum cd_err cd__http_staff_password_reset(struct cd_req *r);
/* Adds a response header (see cd_req.headers); false when there is no room. */
bool cd__http_header_add(struct cd_req *r, const char *name, const char *value);
/* Sets a session cookie for path: HttpOnly, SameSite=Strict, and Secure when the request's
 * Origin is https (served behind a TLS proxy). An empty value with max_age_s 0 clears it.
 * false when out of memory or room for headers. */
bool cd__http_cookie(struct cd_req *r, const char *name, const char *value, const char *path,
                     long long max_age_s);
/* The customer's self-service routes (h_me.c). */
enum cd_err cd__http_me_code(struct cd_req *r);
enum cd_err cd__http_me_sign_in(struct cd_req *r);
enum cd_err cd__http_me_session(struct cd_req *r);
enum cd_err cd__http_me_sign_out(struct cd_req *r);
enum cd_err cd__http_me_get(struct cd_req *r);
enum cd_err cd__http_me_access_log(struct cd_req *r);
enum cd_err cd__http_me_consents(struct cd_req *r);
enum cd_err cd__http_me_consent_record(struct cd_req *r);
enum cd_err cd__http_me_preferences(struct cd_req *r);
enum cd_err cd__http_me_requests(struct cd_req *r);
enum cd_err cd__http_me_request_create(struct cd_req *r);
enum cd_err cd__http_me_request_get(struct cd_req *r);
enum cd_err cd__http_customer_sessions_revoke(struct cd_req *r);
/* The self-service session cookie's name; its Path is /v1/me, the only routes it is for. */
#define CD_HTTP_ME_COOKIE "candor_me"
/* The console session cookie's name. */
#define CD_HTTP_SESSION_COOKIE "candor_session"
/* The header that carries a console session's anti-forgery token. */
#define CD_HTTP_CSRF_HEADER "Candor-CSRF"

/* The console's files, embedded at build time from web/ (build/gen/web_assets.inc). */
struct cd_web_asset {
    const char *name; /* "workspace.html" */
    const char *type; /* its Content-Type */
    const char *etag; /* "\"<hex of its SHA-256>\"" */
    const unsigned char *data, *gz;
    size_t len, gz_len; /* gz_len 0: not worth compressing */
};
extern const struct cd_web_asset cd_web_assets[];
extern const size_t cd_web_nassets;

/* Handlers in their own files (h_*.c). */
enum cd_err cd__http_guard_check(struct cd_req *r);
enum cd_err cd__http_guard_reload(struct cd_req *r);

/* Problem mapping (problem.c). */
/* The problem for CD_ERR_NOMEM, which server.c also sends as a static body when even the
 * answer cannot be allocated. */
#define CD__HTTP_OOM_SLUG "out-of-memory"
#define CD__HTTP_OOM_TITLE "Out of memory"
struct cd_problem_kind {
    unsigned status;
    const char *slug;
    const char *title;
};
const struct cd_problem_kind *cd__http_problem_of(enum cd_err err);
/* Builds the problem+json body; instance may be NULL. ext (may be NULL) is stolen: the
 * problem's members are added to it. Returns NULL when out of memory (ext freed). */
json_t *cd__http_problem_json(const struct cd_problem_kind *k, const char *detail,
                              const char *instance, const char *request_id, json_t *ext);
/* The problems the HTTP layer answers itself, with no cd_err behind them, indexed by
 * enum cd__http_problem; NULL-terminated by slug (for the docs endpoint). */
enum cd__http_problem {
    CD_PROBLEM_MALFORMED_JSON,
    CD_PROBLEM_METHOD_NOT_ALLOWED,
    CD_PROBLEM_INVALID_URI,
    CD_PROBLEM_URI_TOO_LONG,
    CD_PROBLEM_DUPLICATE_HEADER,
    CD_PROBLEM_INVALID_HEADER,
    CD_PROBLEM_TRANSFER_CODING,
    CD_PROBLEM_HEADERS_TOO_LARGE,
    CD_PROBLEM__COUNT
};
extern const struct cd_problem_kind cd__http_problem_kinds[];
/* The kind with this slug, from either table, or NULL (GET /problems/{slug}). */
const struct cd_problem_kind *cd__http_problem_by_slug(struct cd_str slug);

/* ---- the edge (edge.c): what is refused before any route runs ---- */

/* Why a request target is refused: with 414 uri-too-long when too_long, else 400 invalid-uri. */
struct cd__http_target_error {
    bool too_long;
    const char *why; /* a sentence for the problem's detail */
};
/* Checks a request target as it arrived, still percent-encoded (NUL-terminated). Returns NULL
 * when it may be served; else a static error: invalid for a space or control character, raw or
 * encoded (%00..%1F, %7F), a '%' without two hex digits, or an encoded '/' in the path; too
 * long for more than CD_MAX_TARGET bytes or more than CD_MAX_QUERY query parameters. */
const struct cd__http_target_error *cd__http_target_check(const char *target);
/* p when it is one of the errors cd__http_target_check returns, else NULL. */
const struct cd__http_target_error *cd__http_target_error_of(const void *p);

/* The singleton headers: Candor reads them, or they decide where the body ends. */
enum cd__http_header {
    CD_H_HOST,
    CD_H_AUTHORIZATION,
    CD_H_PURPOSE,
    CD_H_IDEMPOTENCY_KEY,
    CD_H_CONTENT_TYPE,
    CD_H_CONTENT_LENGTH,
    CD_H_TRANSFER_ENCODING,
    CD_H_GPC,
    CD_H_FAULT,
    CD_H__COUNT
};
/* A request's header set as the edge sees it; start from CD_HTTP_HEADERS_INIT. Values are
 * borrowed from the caller (libmicrohttpd's, for the request). */
struct cd__http_headers {
    struct cd_str v[CD_H__COUNT]; /* each singleton's value ({NULL, 0}: absent) */
    unsigned count;               /* header lines, all names */
    int repeated;                 /* the first singleton seen twice, or -1 */
    struct cd_str bad_name;       /* the first name that is not an RFC 9110 token */
};
#define CD_HTTP_HEADERS_INIT {.repeated = -1}
/* Adds one header line; no allocation, so it can run on every header of every request. */
void cd__http_headers_add(struct cd__http_headers *hs, struct cd_str name, struct cd_str value);
/* NULL when the set may be served; else the problem to answer (invalid-header: a name that is
 * not a token, no Host in HTTP/1.1, Transfer-Encoding with Content-Length or in HTTP/1.0;
 * duplicate-header; transfer-coding-not-implemented: any coding but a lone "chunked"), with a
 * sentence written to detail[n]. */
const struct cd_problem_kind *cd__http_headers_check(const struct cd__http_headers *hs,
                                                     bool http10, char *detail, size_t n);

/* Metrics (metrics.c). */
void cd__http_metrics_init(size_t nroutes);
void cd__http_metrics_free(void);
void cd__http_metrics_observe(size_t route_index, unsigned status, uint64_t ns);
enum cd_err cd__http_metrics_render(const struct cd_app *app, struct cd_buf *out);
/* The data-subject request gauges, from the counts of the request watcher's last pass (nothing
 * before its first). */
enum cd_err cd__http_metrics_dsar(struct cd_dsar *d, struct cd_buf *out);

/* The OpenAPI document, converted from the embedded YAML at start-up (openapi.c). */
enum cd_err cd__http_openapi_json(json_t **out);
extern const char cd_openapi_yaml[];

#endif
