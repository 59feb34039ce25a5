/* `candor serve`: opens every module in dependency order, serves until told to stop, and shuts
 * down in one sequence (serve_close). Signals are not handled asynchronously: they are blocked
 * in every thread and the main thread takes them with sigwaitinfo, so no signal lands on a
 * worker that cannot act on it and none can slip in between a check and a wait. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "audit/audit.h"
#include "auth/auth.h"
#include "calendar/calendar.h"
#include "cases/cases.h"
#include "dsar/dsar.h"
#include "outbox/outbox.h"
#include "retention/retention.h"
#include "cli_int.h"
#include "consent/consent.h"
#include "crypto/crypto.h"
#include "guard/guard.h"
#include "http/http.h"
#include "outbox/outbox.h"
#include "policy/policy.h"
#include "retention/retention.h"

#define DRAIN_POLL_NS 10000000L /* 10 ms between looks at the requests still in flight */

/* Everything serve opens; serve_close releases whatever was opened, in reverse order. */
struct serve {
    const char *data;
    const char *policy_path; /* --policy, or NULL for the built-in policy */
    char rules[CD_PATH_MAX];
    char consent_rules[CD_PATH_MAX + 32];
    unsigned long workers, threads, max_body, sth_interval, sth_entries, drain_timeout,
        max_future_skew;
    unsigned long max_connections, max_client_connections, idle_timeout, sign_in_limit;
    unsigned long webhook_workers, webhook_timeout, webhook_attempts, webhook_backoff,
        webhook_backoff_max, retention_every;
    unsigned long statement_timeout; /* seconds, PostgreSQL */
    char heads_path[CD_PATH_MAX];    /* DIR/audit-heads.jsonl */
    struct cd__cli_env env;
    bool env_open;
    struct cd_policy *policy;
    struct cd_guard *guard;
    struct cd_calendars *calendars; /* RULES/calendars: deadlines and service-level clocks */
    struct cd_cases *cases;         /* cases, SLA clocks, the queue (RULES/cases, RULES/sla) */
    unsigned long sla_sweep;        /* ms between sweeps for breaches and closings */
    struct cd_dsar_rules *dsar_rules; /* RULES/dsar/regimes.yaml, until the service takes it */
    struct cd_dsar *dsar;             /* data-subject requests */
    struct cd_retention_rules *retention; /* RULES/retention/rules.yaml */
    struct cd_retention_schedule *retention_schedule;
    bool webhooks_started; /* the outbox's delivery worker runs */
    struct cd_consent *consent; /* decisions, ledger, receipts */
    struct cd_audit *audit;     /* signs tree heads, publishes them (also to the heads file) */
    struct cd__cli_hooks hooks;
    struct cd_app app;
    bool log_batched;
    struct cd_http *http;
    struct cd_http *http_live; /* http once serving, for the feed thread (atomic accesses) */
};

/* Several servers on one database: what another server changed, announced on the store's
 * feed, goes to the module that keeps it in memory (NULL: all of them, a full resync after the
 * feed was reconnected). Runs on the store's feed thread. */
static void serve_changed(void *ctx, const char *topic)
{
    struct serve *sv = ctx;
    struct cd_http *h = __atomic_load_n(&sv->http_live, __ATOMIC_ACQUIRE);

    if (topic == NULL || strncmp(topic, "consent.", 8) == 0)
        cd_consent_changed(sv->consent, topic);
    if (topic == NULL || strncmp(topic, "core.", 5) == 0)
        cd_core_changed(sv->env.core, topic);
    if (h && (topic == NULL || strcmp(topic, CD_AUTH_TOPIC_REVOKED) == 0))
        cd_http_tokens_changed(h);
}

/* Opens the audit ledger service with DIR/signing.key and starts its tree head publisher: a
 * head now, every --sth-entries entries or --sth-interval seconds, and one when it is closed,
 * each also appended to DIR/audit-heads.jsonl (docs/audit.md). */
static enum cd_err open_audit(struct serve *sv)
{
    char keypath[CD_PATH_MAX];
    enum cd_err err;

    snprintf(keypath, sizeof keypath, "%s/%s", sv->data, CD_CRYPTO_SIGNING_KEY_FILE);
    snprintf(sv->heads_path, sizeof sv->heads_path, "%s/%s", sv->data, CD_AUDIT_HEADS_FILE);
    struct cd_audit_policy policy = {(unsigned)sv->sth_interval, sv->sth_entries,
                                     sv->heads_path};
    if ((err = cd_audit_open(sv->env.store, keypath, &sv->audit)) != CD_OK)
        return err;
    return cd_audit_publisher_start(sv->audit, &policy);
}

/* The business calendars of RULES/calendars (and the built-in 24x7). A calendar whose holidays
 * end before this year still loads, with a warning: its deadlines would count holidays as
 * working days. */
static enum cd_err open_calendars(struct serve *sv)
{
    char dir[CD_PATH_MAX + 16];
    struct cd_civil now;
    enum cd_err err;

    snprintf(dir, sizeof dir, "%s/calendars", sv->rules);
    if ((err = cd_calendars_new(&sv->calendars)) != CD_OK ||
        (err = cd_calendars_load_dir(sv->calendars, dir)) != CD_OK)
        return err;
    cd_tz_civil(NULL, cd_now_ms(), &now);
    for (size_t i = 0; i < cd_calendars_count(sv->calendars); i++) {
        const struct cd_calendar *c = cd_calendars_at(sv->calendars, i);
        int32_t until = cd_calendar_holidays_until(c);
        if (until > 0 && until < now.year)
            cd_log(CD_LOG_WARN, "calendar.holidays_outdated",
                   "\"calendar\":\"%s\",\"holidays_until\":%d", cd_calendar_id(c), (int)until);
    }
    cd_log(CD_LOG_INFO, "calendars.loaded", "\"calendars\":%zu",
           cd_calendars_count(sv->calendars));
    return CD_OK;
}

/* A year of a support team's cases for the demo customers (src/cases/demo.c). */
static enum cd_err load_demo_cases(struct serve *sv)
{
    char(*ids)[CD_ID_MAX] = cd_calloc(1200, CD_ID_MAX);
    size_t n = 0;
    enum cd_err err;

    if (ids == NULL)
        return CD_ERR_NOMEM;
    if ((err = cd_core_customer_ids(sv->env.core, 1200, ids, &n)) == CD_OK)
        err = cd_cases_load_demo(sv->cases, (const char(*)[CD_ID_MAX])ids, n, 6000, 365);
    cd_free(ids);
    return err;
}

/* The deadlines of data-subject requests (RULES/dsar/regimes.yaml), which name calendars. */
static enum cd_err open_dsar_rules(struct serve *sv)
{
    char path[CD_PATH_MAX + 32];

    snprintf(path, sizeof path, "%s/dsar/regimes.yaml", sv->rules);
    return cd_dsar_rules_load(sv->calendars, path, &sv->dsar_rules);
}

/* The retention rules of RULES/retention/rules.yaml, checked whole before anything is served.
 * A rules directory without the file serves with no retention (a warning says so, nothing is
 * scheduled and the retention routes answer 503); a file with a mistake stops the server. */
static enum cd_err open_retention(struct serve *sv)
{
    char path[CD_PATH_MAX + 32];

    snprintf(path, sizeof path, "%s/retention/rules.yaml", sv->rules);
    if (access(path, F_OK) != 0 && errno == ENOENT) {
        cd_log(CD_LOG_WARN, "retention.no_rules",
               "\"detail\":\"no retention/rules.yaml in the rules directory: nothing expires\"");
        return CD_OK;
    }
    return cd_retention_rules_load(path, &sv->retention);
}

/* The outbox's delivery worker and the retention schedule: background work on the data,
 * started once everything they use is open. */
static enum cd_err start_background(struct serve *sv)
{
    enum cd_err err;

    if (sv->webhook_workers) {
        struct cd_outbox_worker_config wc = {
            .concurrency = (unsigned)sv->webhook_workers,
            .timeout_ms = (unsigned)sv->webhook_timeout * 1000,
            .max_attempts = (unsigned)sv->webhook_attempts,
            .backoff_base_ms = (unsigned)sv->webhook_backoff,
            .backoff_max_ms = (unsigned)sv->webhook_backoff_max * 1000,
            .policy = sv->policy,
            .hooks = sv->hooks.outbox,
        };
        if ((err = cd_outbox_worker_start(sv->env.outbox, &wc)) != CD_OK)
            return err;
        sv->webhooks_started = true;
    }
    if (sv->retention_every && sv->retention) {
        /* The first run comes soon after start (at most five minutes), then every interval. */
        unsigned first = sv->retention_every < 300 ? (unsigned)sv->retention_every : 300;
        if ((err = cd_retention_schedule_start(sv->env.core, sv->retention,
                                               (unsigned)sv->retention_every, first,
                                               &sv->retention_schedule)) != CD_OK)
            return err;
    }
    return CD_OK;
}

/* Configuration first (policy, rules), so a mistake stops the server before it touches data;
 * then the data, the in-path hooks, the ledger service, and last the listening socket. */
static enum cd_err serve_open(struct serve *sv, const char *db_url, bool demo,
                              const char *listen)
{
    struct cd_store_options store_opts = {(unsigned)sv->statement_timeout * 1000};
    enum cd_err err;

    /* An uninitialised directory is refused there: serving it would make fresh keys. */
    if ((err = cd__cli_env_open(sv->data, db_url, &store_opts, &sv->env)) != CD_OK)
        return err;
    sv->env_open = true;
    cd_core_set_future_skew(sv->env.core, (int64_t)sv->max_future_skew * 1000);
    if ((err = cd_policy_load(sv->policy_path, &sv->policy)) != CD_OK ||
        (err = cd_guard_open(sv->rules, &sv->guard)) != CD_OK)
        return err;
    cd_log(CD_LOG_INFO, "guard.loaded", "\"rules\":%zu", cd_guard_rule_count(sv->guard));
    if ((err = open_calendars(sv)) != CD_OK || (err = open_dsar_rules(sv)) != CD_OK ||
        (err = open_retention(sv)) != CD_OK ||
        (err = cd_cases_open(sv->env.store, sv->env.core, sv->calendars, sv->rules,
                             &sv->cases)) != CD_OK)
        return err;
    /* Demo data is loaded once the configuration is known to be good, before serving. */
    if (demo) {
        uint64_t t0 = cd_mono_ns();
        if ((err = cd_core_load_demo(sv->env.core, 1200, 24000, 180)) != CD_OK ||
            (err = load_demo_cases(sv)) != CD_OK)
            return err;
        cd_log(CD_LOG_INFO, "demo.ready", "\"ms\":%llu",
               (unsigned long long)((cd_mono_ns() - t0) / 1000000));
    }
    /* Interaction fields sealed before they were bound to their rows are sealed again, before
     * anything is served (a server never opens the old format in an interaction). */
    if ((err = cd_core_reseal_legacy(sv->env.core, NULL, NULL)) != CD_OK ||
        (err = cd_consent_open(sv->env.store, sv->data, sv->consent_rules, &sv->consent)) !=
            CD_OK)
        return err;
    cd_consent_set_restriction(sv->consent, cd_policy_restricted_purposes(sv->policy));
    /* In the path of every interaction: the policy, consent, then the guard (hooks.c). */
    sv->hooks = (struct cd__cli_hooks){.store = sv->env.store,
                                       .guard = sv->guard,
                                       .policy = sv->policy,
                                       .consent = sv->consent,
                                       .consent_outbound = cd_consent_outbound_check,
                                       .consent_read = cd_consent_read_check,
                                       .consent_changed = cd_consent_customer_changed,
                                       .cases = sv->cases};
    cd__cli_hooks_install(&sv->hooks, sv->env.core);
    cd_cases_set_consent(sv->cases, sv->consent); /* incident notices */
    if ((err = cd_cases_sweeper_start(sv->cases, (unsigned)sv->sla_sweep)) != CD_OK)
        return err;
    /* Before the ledger service: the feed's session holds the lease that decides which server
     * signs tree heads. */
    if ((err = cd_store_feed_start(sv->env.store, serve_changed, sv)) != CD_OK ||
        (err = open_audit(sv)) != CD_OK)
        return err;
    err = cd_dsar_open(sv->env.store, sv->env.core, sv->dsar_rules, &sv->dsar);
    sv->dsar_rules = NULL; /* the service owns them now, also on failure */
    if (err != CD_OK)
        return err;
    cd_dsar_set_links(sv->dsar, &(struct cd_dsar_links){.enqueue = cd_outbox_enqueue,
                                                        .holds_active = cd_retention_holds_active,
                                                        .notices_attach = cd_outbox_notices_attach,
                                                        .notices = cd_outbox_notices,
                                                        .recipients_of = cd_outbox_recipients_of,
                                                        .consent = sv->consent,
                                                        .guard = sv->guard});
    if ((err = cd_dsar_start(sv->dsar, CD__CLI_DSAR_WATCH_MS)) != CD_OK)
        return err;
    sv->app = (struct cd_app){.store = sv->env.store,
                              .audit = sv->audit,
                              .core = sv->env.core,
                              .guard = sv->guard,
                              .policy = sv->policy,
                              .consent = sv->consent,
                              .calendars = sv->calendars,
                              .dsar = sv->dsar,
                              .cases = sv->cases,
                              .outbox = sv->env.outbox,
                              .retention = sv->retention,
                              .data_dir = sv->data,
                              .rules_dir = sv->rules};
    struct cd_http_config cfg = {.listen = listen,
                                 .event_threads = (unsigned)sv->threads,
                                 .workers = (unsigned)sv->workers,
                                 .max_body = (size_t)sv->max_body,
                                 .max_connections = (unsigned)sv->max_connections,
                                 .max_client_connections = (unsigned)sv->max_client_connections,
                                 .idle_timeout = (unsigned)sv->idle_timeout,
                                 .sign_in_limit = (unsigned)sv->sign_in_limit};
    if ((err = start_background(sv)) != CD_OK)
        return err;
    /* The access lines go out in batches from here on (docs/architecture.md). */
    if ((err = cd_log_batch_start()) != CD_OK)
        return err;
    sv->log_batched = true;
    if ((err = cd_http_start(&cfg, &sv->app, &sv->http)) != CD_OK)
        return err;
    __atomic_store_n(&sv->http_live, sv->http, __ATOMIC_RELEASE);
    return CD_OK;
}

/* SIGHUP: the rule packs through the same call as POST /v1/guard/reload, and the policy file
 * when one was given (the built-in policy cannot change). Each keeps what is in force when its
 * new version is bad; the detail names file and line. */
static void serve_reload(struct serve *sv)
{
    bool changed = false;

    if (cd_guard_reload(sv->guard, sv->rules) == CD_OK)
        cd_log(CD_LOG_INFO, "guard.reloaded", "\"rules\":%zu", cd_guard_rule_count(sv->guard));
    else
        fprintf(stderr, "candor serve: guard rules not reloaded: %s\n", cd_err_detail());
    if (sv->policy_path == NULL)
        return;
    if (cd_policy_reload(sv->policy, sv->policy_path, &changed) == CD_OK) {
        /* What a restriction leaves is the policy's to say, the consent engine's to apply. */
        cd_consent_set_restriction(sv->consent, cd_policy_restricted_purposes(sv->policy));
        cd_log(CD_LOG_INFO, "policy.reloaded", "\"changed\":%s", changed ? "true" : "false");
    } else
        fprintf(stderr, "candor serve: policy not reloaded: %s\n", cd_err_detail());
}

/* SIGTERM or SIGINT: stop accepting, then give the requests in flight until the drain timeout to
 * be answered. A second SIGTERM or SIGINT ends the wait at once. */
static void serve_drain(struct serve *sv, const sigset_t *sigs)
{
    uint64_t deadline = cd_mono_ns() + (uint64_t)sv->drain_timeout * 1000000000ull;
    unsigned n;

    cd_http_quiesce(sv->http);
    cd_log(CD_LOG_INFO, "serve.draining", "\"in_flight\":%u,\"timeout_s\":%lu",
           cd_http_in_flight(sv->http), sv->drain_timeout);
    while ((n = cd_http_in_flight(sv->http)) > 0) {
        if (cd_mono_ns() >= deadline) {
            cd_log(CD_LOG_WARN, "serve.drain_timeout", "\"in_flight\":%u", n);
            return;
        }
        struct timespec poll = {0, DRAIN_POLL_NS};
        int sig = sigtimedwait(sigs, NULL, &poll);
        if (sig == SIGTERM || sig == SIGINT) {
            cd_log(CD_LOG_WARN, "serve.drain_cut", "\"in_flight\":%u,\"signal\":%d", n, sig);
            return;
        }
    }
    cd_log(CD_LOG_INFO, "serve.drained", NULL);
}

/* The one shutdown sequence, for a clean stop and for a failed start alike. Order matters: the
 * server first (its workers outlive every deferred write, so each answer's write is through);
 * then the background services, the ledger signing a tree head over everything written (in
 * cd_audit_close, and into the heads file); the access lines still held; and last the store,
 * whose writer finishes every queued write before it closes. */
static void serve_close(struct serve *sv)
{
    __atomic_store_n(&sv->http_live, NULL, __ATOMIC_RELEASE);
    cd_http_stop(sv->http);
    sv->http = NULL;
    /* Deliveries in flight are abandoned: their leases bring them back at the next start. */
    if (sv->webhooks_started)
        cd_outbox_worker_stop(sv->env.outbox);
    sv->webhooks_started = false;
    cd_retention_schedule_stop(sv->retention_schedule);
    sv->retention_schedule = NULL;
    cd_dsar_close(sv->dsar);
    sv->dsar = NULL;
    cd_dsar_rules_free(sv->dsar_rules);
    sv->dsar_rules = NULL;
    cd_cases_close(sv->cases); /* the sweeper's last write is through before the store closes */
    sv->cases = NULL;
    /* A head over the final ledger, so a verifier holding it covers every entry. It is signed
     * by the holder of the store's lease, so the feed stops after it; the consent engine the
     * feed applies changes to closes after the feed. */
    cd_audit_close(sv->audit);
    sv->audit = NULL;
    if (sv->env_open)
        cd_store_feed_stop(sv->env.store);
    cd_consent_close(sv->consent);
    sv->consent = NULL;
    if (sv->log_batched)
        cd_log_batch_stop();
    sv->log_batched = false;
    cd_policy_free(sv->policy);
    sv->policy = NULL;
    if (sv->env_open)
        cd__cli_env_close(&sv->env);
    sv->env_open = false;
    cd_guard_close(sv->guard);
    sv->guard = NULL;
    cd_calendars_free(sv->calendars);
    sv->calendars = NULL;
    cd_retention_rules_free(sv->retention);
    sv->retention = NULL;
}

/* Numbers and paths from the options, checked before anything is opened. */
static enum cd_err serve_configure(struct serve *sv, const struct cd_opt *opts)
{
    const char *from = NULL;
    enum cd_err err;

    sv->data = cd_cli_get(opts, "--data");
    sv->policy_path = cd_cli_get(opts, "--policy");
    if ((err = cd_cli_uint(opts, "--workers", 1, 4096, &sv->workers)) != CD_OK ||
        (err = cd_cli_uint(opts, "--threads", 1, 64, &sv->threads)) != CD_OK ||
        (err = cd_cli_uint(opts, "--max-body", 1024, 1024UL * 1024 * 1024, &sv->max_body)) !=
            CD_OK ||
        (err = cd_cli_uint(opts, "--sth-interval", 1, 86400, &sv->sth_interval)) != CD_OK ||
        (err = cd_cli_uint(opts, "--sth-entries", 1, 1000000000, &sv->sth_entries)) != CD_OK ||
        (err = cd_cli_uint(opts, "--drain-timeout", 0, 3600, &sv->drain_timeout)) != CD_OK ||
        (err = cd_cli_uint(opts, "--max-future-skew", 0, 366UL * 86400, &sv->max_future_skew)) !=
            CD_OK ||
        (err = cd_cli_uint(opts, "--statement-timeout", 0, 86400, &sv->statement_timeout)) !=
            CD_OK ||
        (err = cd_cli_uint(opts, "--max-connections", 1, 1000000, &sv->max_connections)) !=
            CD_OK ||
        (err = cd_cli_uint(opts, "--max-client-connections", 0, 1000000,
                           &sv->max_client_connections)) != CD_OK ||
        (err = cd_cli_uint(opts, "--idle-timeout", 1, 3600, &sv->idle_timeout)) != CD_OK ||
        (err = cd_cli_uint(opts, "--sla-sweep", 50, 3600000, &sv->sla_sweep)) != CD_OK ||
        (err = cd_cli_uint(opts, "--sign-in-limit", 1, 1000000, &sv->sign_in_limit)) != CD_OK ||
        (err = cd_cli_uint(opts, "--webhook-workers", 0, 256, &sv->webhook_workers)) != CD_OK ||
        (err = cd_cli_uint(opts, "--webhook-timeout", 1, 300, &sv->webhook_timeout)) != CD_OK ||
        (err = cd_cli_uint(opts, "--webhook-attempts", 1, 100, &sv->webhook_attempts)) != CD_OK ||
        (err = cd_cli_uint(opts, "--webhook-backoff", 1, 3600000, &sv->webhook_backoff)) !=
            CD_OK ||
        (err = cd_cli_uint(opts, "--webhook-backoff-max", 1, 7 * 86400,
                           &sv->webhook_backoff_max)) != CD_OK ||
        (err = cd_cli_uint(opts, "--retention-every", 0, 366UL * 86400, &sv->retention_every)) !=
            CD_OK ||
        (err = cd__cli_rules_dir(cd_cli_get(opts, "--rules"), sv->rules, sizeof sv->rules,
                                 &from)) != CD_OK)
        return err;
    snprintf(sv->consent_rules, sizeof sv->consent_rules, "%s/consent/jurisdictions.yaml",
             sv->rules);
    return CD_OK;
}

/* Serves until SIGTERM or SIGINT (returned), reloading on every SIGHUP meanwhile. */
static int serve_until_stopped(struct serve *sv, const sigset_t *sigs)
{
    int sig;

    while ((sig = sigwaitinfo(sigs, NULL)) == SIGHUP || (sig < 0 && errno == EINTR))
        if (sig == SIGHUP)
            serve_reload(sv);
    return sig;
}

int cd_cli_serve(int argc, char **argv)
{
    struct cd_opt opts[] = {
        {"--data", "DIR", "data directory (see candor init)", NULL, NULL},
        {"--listen", "ADDR", "address to listen on", "127.0.0.1:8080", NULL},
        {"--db", "URL", "the database DIR belongs to (DIR/candor.db, or the URL in "
                        "DIR/database.url); refused if it names another", NULL, NULL},
        {"--statement-timeout", "SECONDS", "PostgreSQL: a database statement that runs longer is "
                                           "cancelled and its request answered 503 (0: the "
                                           "server's statement_timeout)", "30", NULL},
        {"--demo", NULL, "load deterministic demo data if the database is empty", NULL, NULL},
        {"--workers", "N", "worker threads for requests that touch the database", "64", NULL},
        {"--threads", "N", "HTTP event threads", "2", NULL},
        {"--max-body", "BYTES", "largest request body accepted", "1048576", NULL},
        {"--max-connections", "N", "connections served at once, from all clients",
         CD_XSTR(CD_HTTP_MAX_CONNECTIONS), NULL},
        {"--max-client-connections", "N",
         "connections at once from one client address (0: no limit; behind a proxy, every "
         "client has the proxy's address)",
         CD_XSTR(CD_HTTP_MAX_CLIENT_CONNECTIONS), NULL},
        {"--idle-timeout", "SECONDS", "close a connection that sends nothing for this long",
         CD_XSTR(CD_HTTP_IDLE_TIMEOUT), NULL},
        {"--sign-in-limit", "N",
         "failed console sign-ins from one client address per 15 minutes before it is refused "
         "(429) until they end (behind a proxy, every client has the proxy's address)",
         CD_XSTR(CD_HTTP_SIGN_IN_LIMIT), NULL},
        {"--rules", "DIR", "communication guard rule packs (default: see candor(1), FILES)", NULL,
         NULL},
        {"--policy", "FILE", "purpose policy (default: the built-in config/policy.yaml)", NULL,
         NULL},
        {"--sth-interval", "SECONDS", "sign an audit tree head at most this long after the ledger "
                                      "grew (also at start and at a clean shutdown)",
         "10", NULL},
        {"--sth-entries", "N", "... or as soon as N entries were appended, whichever comes first",
         "10000", NULL},
        {"--max-future-skew", "SECONDS", "refuse an interaction whose occurred_at is further "
                                         "ahead of this server's clock", "86400", NULL},
        {"--drain-timeout", "SECONDS", "on SIGTERM, how long requests in flight may take to be "
                                       "answered", "30", NULL},
        {"--sla-sweep", "MS", "how often deadlines no one met are marked breached and resolved "
                              "cases past their reopen window closed",
         "10000", NULL},
        {"--webhook-workers", "N", "webhook deliveries in flight at once (0: this server sends "
                                   "none; another one on the database does)",
         CD_XSTR(CD_OUTBOX_CONCURRENCY), NULL},
        {"--webhook-timeout", "SECONDS", "one delivery attempt, connecting included", "10", NULL},
        {"--webhook-attempts", "N", "attempts before a delivery goes to the dead-letter list",
         CD_XSTR(CD_OUTBOX_MAX_ATTEMPTS), NULL},
        {"--webhook-backoff", "MS", "the first retry waits up to this long, each later one up to "
                                    "twice the one before (full jitter)",
         CD_XSTR(CD_OUTBOX_BACKOFF_BASE_MS), NULL},
        {"--webhook-backoff-max", "SECONDS", "... but never more than this", "21600", NULL},
        {"--retention-every", "SECONDS", "apply the retention rules this often (0: never; the "
                                         "first run comes at most 5 minutes after start)",
         "86400", NULL},
        {NULL, NULL, NULL, NULL, NULL},
    };
    const char *pos[1];
    size_t npos = 0;
    bool help = false;
    struct serve sv;
    enum cd_err err;
    sigset_t sigs;
    int sig;

    memset(&sv, 0, sizeof sv);
    if ((err = cd_cli_parse(argc, argv, opts, pos, 0, &npos, &help)) != CD_OK)
        return cd__cli_fail("serve", err);
    if (help) {
        cd_cli_usage(
            "serve", "--data DIR [--listen ADDR] [--demo] [options]",
            "Serves the HTTP/JSON API. Schema migrations run at start.\n"
            "\n"
            "SIGHUP reloads the guard rule packs (as POST /v1/guard/reload does) and the\n"
            "--policy file; a bad file is refused with its line and the previous version stays\n"
            "in force. The consent jurisdictions are read at start only.\n"
            "\n"
            "SIGTERM or SIGINT drains: no new connections are accepted, the requests in flight\n"
            "are answered (with Connection: close) for up to --drain-timeout seconds, every\n"
            "queued write is committed, a last audit tree head is signed, and the process exits\n"
            "0. A second SIGTERM or SIGINT ends the wait for requests in flight.",
            opts);
        return 0;
    }
    if ((err = serve_configure(&sv, opts)) != CD_OK)
        return cd__cli_fail("serve", err);
    /* Blocked before the first thread starts, so every thread inherits the mask. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    if ((err = serve_open(&sv, cd_cli_get(opts, "--db"), cd_cli_get(opts, "--demo") != NULL,
                          cd_cli_get(opts, "--listen"))) != CD_OK)
        goto out;
    cd_log(CD_LOG_INFO, "serve.listening", "\"port\":%u,\"store\":\"%s\"", cd_http_port(sv.http),
           cd_store_backend(sv.env.store));
    fprintf(stdout, "candor listening on http://%s (admin token: %s/admin.token)\n",
            cd_cli_get(opts, "--listen"), sv.data);
    fflush(stdout);
    sig = serve_until_stopped(&sv, &sigs);
    cd_log(CD_LOG_INFO, "serve.stopping", "\"signal\":%d", sig);
    serve_drain(&sv, &sigs);
out:
    serve_close(&sv);
    if (err == CD_OK)
        cd_log(CD_LOG_INFO, "serve.stopped", NULL);
    return err == CD_OK ? 0 : cd__cli_fail("serve", err);
}
