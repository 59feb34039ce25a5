/* Prometheus metrics: requests by route and status, latency histograms by route, the
 * store's commit latency and group-commit batch sizes, and the integrity failures met.
 * Counters are relaxed atomics: a scrape may see a request counted before its latency, never a
 * torn value. */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include "dsar/dsar.h"
#include "http_int.h"
#include "outbox/outbox.h"

#define NSTATUS 20
#define NBUCKETS 14

/* 414, 431, 501 and 505 come from the edge and from libmicrohttpd's own refusals. */
static const unsigned statuses[NSTATUS] = {200, 201, 204, 400, 401, 403, 404, 405, 409, 413,
                                           414, 415, 422, 429, 431, 500, 501, 503, 505, 0};
static const double buckets[NBUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                         0.025,  0.05,    0.1,    0.25,  0.5,    1,     5};

struct route_metrics {
    atomic_ulong by_status[NSTATUS]; /* last slot: any other status */
    atomic_ulong hist[NBUCKETS + 1];
    atomic_ulong sum_us;
    atomic_ulong count;
};

const char *const cd__http_csp_directives[] = {
    "default-src",    "script-src",      "script-src-elem", "script-src-attr", "style-src",
    "style-src-elem", "style-src-attr",  "img-src",         "connect-src",     "font-src",
    "manifest-src",   "media-src",       "object-src",      "frame-src",       "child-src",
    "worker-src",     "base-uri",        "form-action",     "frame-ancestors", "trusted-types",
    "require-trusted-types-for",         NULL};
#define NCSP 21
_Static_assert(sizeof cd__http_csp_directives / sizeof cd__http_csp_directives[0] == NCSP + 1,
               "NCSP counts the directives");
static atomic_ulong csp_violations[NCSP + 1]; /* last: any other directive */

void cd__http_metrics_csp_violation(const char *directive)
{
    size_t i = 0;

    while (i < NCSP && directive != cd__http_csp_directives[i])
        i++;
    atomic_fetch_add_explicit(&csp_violations[i], 1, memory_order_relaxed);
}

static struct route_metrics *metrics;
static size_t nmetrics;

void cd__http_metrics_init(size_t nroutes)
{
    if (metrics)
        return;
    metrics = cd_calloc(nroutes + 1, sizeof *metrics); /* +1: unmatched requests */
    nmetrics = metrics ? nroutes + 1 : 0;
}

void cd__http_metrics_free(void)
{
    cd_free(metrics);
    metrics = NULL;
    nmetrics = 0;
}

void cd__http_metrics_observe(size_t route_index, unsigned status, uint64_t ns)
{
    struct route_metrics *m;
    size_t s = NSTATUS - 1, b = 0;
    double secs = (double)ns / 1e9;

    if (route_index >= nmetrics)
        return;
    m = &metrics[route_index];
    for (size_t i = 0; i < NSTATUS - 1; i++)
        if (statuses[i] == status)
            s = i;
    while (b < NBUCKETS && secs > buckets[b])
        b++;
    atomic_fetch_add_explicit(&m->by_status[s], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->hist[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->sum_us, ns / 1000, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->count, 1, memory_order_relaxed);
}

static const char *route_label(size_t i, char *buf, size_t n)
{
    if (i >= cd__http_nroutes)
        return "unmatched";
    snprintf(buf, n, "%s %s", cd__http_routes[i].method, cd__http_routes[i].pattern);
    return buf;
}

/* The outbox's deliveries: counters of this process's worker, the queue as last seen. */
static enum cd_err outbox_render(struct cd_outbox *ob, struct cd_buf *out)
{
    struct cd_outbox_stats st;
    unsigned long long cum = 0, n = 0;
    enum cd_err err = CD_OK;

    cd_outbox_stats(ob, &st);
#define P(...)                                                                                    \
    do {                                                                                          \
        if ((err = cd_buf_printf(out, __VA_ARGS__)) != CD_OK)                                     \
            return err;                                                                           \
    } while (0)
    P("# HELP candor_webhook_deliveries_queued Webhook deliveries waiting to be sent.\n"
      "# TYPE candor_webhook_deliveries_queued gauge\ncandor_webhook_deliveries_queued %llu\n"
      "# HELP candor_webhook_deliveries_dead Webhook deliveries in the dead-letter list.\n"
      "# TYPE candor_webhook_deliveries_dead gauge\ncandor_webhook_deliveries_dead %llu\n"
      "# HELP candor_webhook_deliveries_total Webhook deliveries acknowledged by their "
      "receiver.\n"
      "# TYPE candor_webhook_deliveries_total counter\ncandor_webhook_deliveries_total %llu\n"
      "# HELP candor_webhook_attempts_failed_total Webhook delivery attempts that failed "
      "(each retry counts).\n"
      "# TYPE candor_webhook_attempts_failed_total counter\n"
      "candor_webhook_attempts_failed_total %llu\n"
      "# HELP candor_webhook_dead_lettered_total Webhook deliveries that ran out of attempts.\n"
      "# TYPE candor_webhook_dead_lettered_total counter\n"
      "candor_webhook_dead_lettered_total %llu\n",
      (unsigned long long)st.queued, (unsigned long long)st.dead,
      (unsigned long long)st.delivered, (unsigned long long)st.failed,
      (unsigned long long)st.dead_lettered);
    P("# HELP candor_webhook_delivery_latency_seconds From an event's commit to its receiver's "
      "acknowledgement.\n# TYPE candor_webhook_delivery_latency_seconds histogram\n");
    for (int b = 0; b < CD_OUTBOX_LATENCY_BUCKETS; b++) {
        cum += st.latency_hist[b];
        if (b + 1 < CD_OUTBOX_LATENCY_BUCKETS)
            P("candor_webhook_delivery_latency_seconds_bucket{le=\"%g\"} %llu\n",
              cd_outbox_latency_le[b], cum);
        else
            P("candor_webhook_delivery_latency_seconds_bucket{le=\"+Inf\"} %llu\n", cum);
    }
    n = cum;
    P("candor_webhook_delivery_latency_seconds_sum %.3f\n"
      "candor_webhook_delivery_latency_seconds_count %llu\n",
      st.latency_sum, n);
#undef P
    return CD_OK;
}

enum cd_err cd__http_metrics_render(const struct cd_app *app, struct cd_buf *out)
{
    struct cd_store *store = app->store;
    char label[160];
    enum cd_err err = CD_OK;
    struct cd_store_stats st;

#define P(...)                                                                                    \
    do {                                                                                          \
        if ((err = cd_buf_printf(out, __VA_ARGS__)) != CD_OK)                                     \
            return err;                                                                           \
    } while (0)
    P("# HELP candor_http_requests_total HTTP requests by route and status.\n"
      "# TYPE candor_http_requests_total counter\n");
    for (size_t i = 0; i < nmetrics; i++) {
        const char *route = route_label(i, label, sizeof label);
        for (size_t s = 0; s < NSTATUS; s++) {
            unsigned long v = atomic_load_explicit(&metrics[i].by_status[s], memory_order_relaxed);
            if (v == 0)
                continue;
            if (s == NSTATUS - 1)
                P("candor_http_requests_total{route=\"%s\",status=\"other\"} %lu\n", route, v);
            else
                P("candor_http_requests_total{route=\"%s\",status=\"%u\"} %lu\n", route,
                  statuses[s], v);
        }
    }
    P("# HELP candor_http_request_duration_seconds Request latency by route.\n"
      "# TYPE candor_http_request_duration_seconds histogram\n");
    for (size_t i = 0; i < nmetrics; i++) {
        unsigned long count = atomic_load_explicit(&metrics[i].count, memory_order_relaxed);
        unsigned long cum = 0;
        if (count == 0)
            continue;
        const char *route = route_label(i, label, sizeof label);
        for (size_t b = 0; b <= NBUCKETS; b++) {
            cum += atomic_load_explicit(&metrics[i].hist[b], memory_order_relaxed);
            if (b < NBUCKETS)
                P("candor_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %lu\n",
                  route, buckets[b], cum);
            else
                P("candor_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %lu\n",
                  route, cum);
        }
        P("candor_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", route,
          (double)atomic_load_explicit(&metrics[i].sum_us, memory_order_relaxed) / 1e6);
        P("candor_http_request_duration_seconds_count{route=\"%s\"} %lu\n", route, count);
    }
    cd_store_get_stats(store, &st);
    P("# HELP candor_store_commits_total Group-commit transactions.\n"
      "# TYPE candor_store_commits_total counter\ncandor_store_commits_total %llu\n"
      "# HELP candor_store_writes_total Writes applied through group commit.\n"
      "# TYPE candor_store_writes_total counter\ncandor_store_writes_total %llu\n",
      (unsigned long long)st.commits, (unsigned long long)st.writes);
    P("# HELP candor_store_commit_duration_seconds Time in COMMIT, fsync included.\n"
      "# TYPE candor_store_commit_duration_seconds histogram\n");
    unsigned long long cum = 0;
    for (int b = 0; b < 16; b++) {
        cum += st.commit_hist[b];
        if (b < 15)
            P("candor_store_commit_duration_seconds_bucket{le=\"%g\"} %llu\n",
              cd_store_commit_bucket_le[b], cum);
        else
            P("candor_store_commit_duration_seconds_bucket{le=\"+Inf\"} %llu\n", cum);
    }
    P("candor_store_commit_duration_seconds_sum %.6f\n"
      "candor_store_commit_duration_seconds_count %llu\n",
      (double)st.commit_ns_total / 1e9, (unsigned long long)st.commits);
    P("# HELP candor_store_batch_size Writes per group commit.\n"
      "# TYPE candor_store_batch_size histogram\n");
    cum = 0;
    for (int b = 0; b < 12; b++) {
        cum += st.batch_hist[b];
        if (b < 11)
            P("candor_store_batch_size_bucket{le=\"%u\"} %llu\n", cd_store_batch_bucket_le[b],
              cum);
        else
            P("candor_store_batch_size_bucket{le=\"+Inf\"} %llu\n", cum);
    }
    P("candor_store_batch_size_sum %llu\ncandor_store_batch_size_count %llu\n",
      (unsigned long long)st.writes, (unsigned long long)st.commits);
    P("# HELP candor_csp_violations_total Content-Security-Policy violations the console's "
      "pages reported, by directive (the log has one console.csp_violation line for each).\n"
      "# TYPE candor_csp_violations_total counter\n");
    for (size_t i = 0; i <= NCSP; i++)
        P("candor_csp_violations_total{directive=\"%s\"} %lu\n",
          i < NCSP ? cd__http_csp_directives[i] : "other",
          atomic_load_explicit(&csp_violations[i], memory_order_relaxed));
    P("# HELP candor_integrity_errors_total Tamper evidence met while serving, by where it was "
      "found (the log has one integrity.error line for each).\n"
      "# TYPE candor_integrity_errors_total counter\n");
    for (int k = 0; k < CD_INTEGRITY__COUNT; k++)
        P("candor_integrity_errors_total{kind=\"%s\"} %llu\n",
          cd_integrity_kind_name((enum cd_integrity_kind)k),
          (unsigned long long)cd_integrity_total((enum cd_integrity_kind)k));
#undef P
    return app->outbox ? outbox_render(app->outbox, out) : CD_OK;
}

enum cd_err cd__http_metrics_dsar(struct cd_dsar *d, struct cd_buf *out)
{
    struct cd_dsar_counts c;
    enum cd_err err;

    if (!cd_dsar_counts_cached(d, &c))
        return CD_OK;
    if ((err = cd_buf_puts(out, "# HELP candor_dsar_requests Data-subject requests by state.\n"
                                "# TYPE candor_dsar_requests gauge\n")) != CD_OK)
        return err;
    for (int s = 0; s < CD_DSAR_STATE__COUNT; s++)
        if ((err = cd_buf_printf(out, "candor_dsar_requests{state=\"%s\"} %llu\n",
                                 cd_dsar_state_name((enum cd_dsar_state)s),
                                 (unsigned long long)c.by_state[s])) != CD_OK)
            return err;
    return cd_buf_printf(out,
                         "# HELP candor_dsar_overdue Open data-subject requests past their "
                         "deadline (answer, or acknowledgement).\n"
                         "# TYPE candor_dsar_overdue gauge\n"
                         "candor_dsar_overdue{deadline=\"answer\"} %llu\n"
                         "candor_dsar_overdue{deadline=\"acknowledge\"} %llu\n",
                         (unsigned long long)c.overdue, (unsigned long long)c.ack_overdue);
}
