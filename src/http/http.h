/* http — the HTTP/JSON API: server, route table, authentication, the purpose gate,
 * problem+json errors, metrics, and the thin handlers that call the domain modules.
 *
 * Owns: nothing in the database. It turns requests into domain calls and domain results (or
 * enum cd_err values) into responses; one table (problem.c) maps every cd_err to a problem
 * type, title and status.
 *
 * Threads: libmicrohttpd's event threads parse requests and never block; every handler that
 * touches the store runs on a worker pool while its connection is suspended, so a slow fsync
 * never stalls other connections. */
#ifndef CD_HTTP_H
#define CD_HTTP_H

#include "base/base.h"
#include "core/core.h"
#include "store/store.h"

struct cd_guard;
struct cd_audit;
struct cd_consent;
struct cd_calendars;
struct cd_cases;
struct cd_dsar;
struct cd_outbox;
struct cd_retention_rules;

/* The services a server exposes. Borrowed; they outlive the server. */
struct cd_app {
    struct cd_store *store;
    struct cd_core *core;
    struct cd_guard *guard; /* may be NULL when no rules are loaded */
    struct cd_policy *policy; /* roles x purposes x categories */
    const char *data_dir;
    const char *rules_dir;
    struct cd_audit *audit; /* signed tree heads and the public key; may be NULL (no signer) */
    struct cd_consent *consent; /* consent engine (src/consent); may be NULL */
    const struct cd_calendars *calendars; /* business calendars (src/calendar); may be NULL */
    struct cd_dsar *dsar; /* data-subject requests (src/dsar); may be NULL */
    struct cd_cases *cases; /* cases, SLA clocks, the queue (src/cases); may be NULL */
    struct cd_outbox *outbox; /* webhooks and recipients (src/outbox); may be NULL */
    const struct cd_retention_rules *retention; /* RULES/retention/rules.yaml; may be NULL */
};

/* Connection limits, by default. One client address may hold a tenth of all connections, so
 * no single address can lock the others out (docs/architecture.md, "Connections"). */
#define CD_HTTP_MAX_CONNECTIONS 10000
/* The most interactions POST /v1/interactions:batch takes in one request. */
#define CD_HTTP_BATCH_MAX 100
#define CD_HTTP_MAX_CLIENT_CONNECTIONS 1000
#define CD_HTTP_IDLE_TIMEOUT 30
/* Console sign-ins that fail, from one client address, in CD_HTTP_SIGN_IN_WINDOW_MS, whatever
 * the accounts tried; then the address is answered 429 until the window ends. (Each account
 * also locks itself after its own failures: this stops one address locking many.) */
#define CD_HTTP_SIGN_IN_LIMIT 20
#define CD_HTTP_SIGN_IN_WINDOW_MS (15 * 60 * 1000LL)

struct cd_http_config {
    const char *listen; /* "127.0.0.1:8080" */
    unsigned event_threads;
    unsigned workers;
    size_t max_body;
    unsigned max_connections;        /* at once, all clients; 0: CD_HTTP_MAX_CONNECTIONS */
    unsigned max_client_connections; /* at once, from one client address; 0: no limit */
    unsigned idle_timeout;           /* seconds a connection may stay silent; 0: the default */
    unsigned sign_in_limit; /* failed sign-ins per address and window; 0: CD_HTTP_SIGN_IN_LIMIT */
};

struct cd_http;

/* Starts serving. Raises the process's limit on open files to what max_connections needs.
 * Errors: CD_ERR_INVALID (bad listen address; the open-file limit cannot be raised that far),
 * CD_ERR_IO (cannot bind). */
enum cd_err cd_http_start(const struct cd_http_config *cfg, struct cd_app *app,
                          struct cd_http **out);
/* The port actually bound (useful with port 0). */
unsigned cd_http_port(const struct cd_http *h);
/* Starts the drain: new connections are refused from now on, and every answer sent from now on
 * closes its connection (Connection: close), so keep-alive clients go elsewhere. Requests
 * already received are still served. Idempotent. */
void cd_http_quiesce(struct cd_http *h);
/* Requests received (headers read) and not yet completed, answered or abandoned. A caller
 * draining waits for 0 between cd_http_quiesce and cd_http_stop. Any thread. */
unsigned cd_http_in_flight(struct cd_http *h);

/* A token was revoked by another server on the database (or the store's feed was reconnected,
 * and one may have been): empties the verified-token cache. Any thread. */
void cd_http_tokens_changed(struct cd_http *h);
/* Stops accepting (cd_http_quiesce), waits for the handlers running and every deferred write of
 * theirs, closes every connection (a request still in flight gets no answer) and frees
 * everything. */
void cd_http_stop(struct cd_http *h);

#endif
