/* Webhook deliveries per second against a local receiver, and the receiver's own rate as the
 * baseline, measured in the same run.
 *
 *   bench_webhooks EVENTS CONCURRENCY RUNS DIR
 *
 * The receiver is a libmicrohttpd server on a loopback port (its own thread pool) that answers
 * every POST with 204. The baseline is a plain libcurl multi client posting a body of the
 * same size CONCURRENCY at a time over kept-alive connections: the most any sender could get
 * through this receiver on this machine. Candor's figure is the outbox draining EVENTS queued
 * events through its delivery worker (CONCURRENCY in flight): each delivery claimed in a
 * durable write, signed with HMAC-SHA256, sent, and its outcome recorded in another durable
 * write. Medians of RUNS runs, each on a fresh database in DIR. */
#include <curl/curl.h>
#include <microhttpd.h>
#include <string.h>
#include "bench_util.h"
#include "crypto/crypto.h"
#include "outbox/outbox.h"
#include "policy/policy.h"

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *data,
                              size_t *size, void **state)
{
    static int first;
    struct MHD_Response *r;
    enum MHD_Result ret;

    (void)cls;
    (void)url;
    (void)method;
    (void)version;
    (void)data;
    if (*state == NULL) { /* the headers: wait for the body */
        *state = &first;
        return MHD_YES;
    }
    if (*size) { /* a piece of the body: taken and dropped */
        *size = 0;
        return MHD_YES;
    }
    r = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    ret = MHD_queue_response(c, 204, r);
    MHD_destroy_response(r);
    return ret;
}

static size_t discard(char *p, size_t size, size_t n, void *ctx)
{
    (void)p;
    (void)ctx;
    return size * n;
}

/* The receiver's own rate: n POSTs of body, conc at a time, kept-alive connections. */
static double baseline(const char *url, const char *body, int n, int conc)
{
    CURLM *m = curl_multi_init();
    CURL **e = calloc((size_t)conc, sizeof *e);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    int started = 0, done = 0, running = 0;
    double t0 = bench_now_s();

    h = curl_slist_append(h, "Expect:");
    for (int i = 0; i < conc; i++) {
        e[i] = curl_easy_init();
        curl_easy_setopt(e[i], CURLOPT_URL, url);
        curl_easy_setopt(e[i], CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e[i], CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(e[i], CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(e[i], CURLOPT_NOSIGNAL, 1L);
        if (started < n) {
            curl_multi_add_handle(m, e[i]);
            started++;
        }
    }
    while (done < n) {
        CURLMsg *msg;
        int left;
        curl_multi_perform(m, &running);
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            done++;
            curl_multi_remove_handle(m, msg->easy_handle);
            if (started < n) { /* the same handle again: its connection stays open */
                curl_multi_add_handle(m, msg->easy_handle);
                started++;
            }
        }
        if (done < n)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    double secs = bench_now_s() - t0;
    for (int i = 0; i < conc; i++)
        curl_easy_cleanup(e[i]);
    free(e);
    curl_slist_free_all(h);
    curl_multi_cleanup(m);
    return n / secs;
}

struct fill {
    int n;
};

static enum cd_err fill_fn(struct cd_tx *tx, void *ctx)
{
    struct fill *f = ctx;
    enum cd_err err = CD_OK;
    char cus[CD_ID_MAX];

    /* One customer per event: nothing waits behind another customer's delivery. */
    for (int i = 0; i < f->n && err == CD_OK; i++) {
        json_t *p = json_pack("{s:b}", "restricted", i % 2);
        cd_id_new("cus", cus);
        err = cd_outbox_enqueue(tx, "customer.restricted", cd_str_c(cus), p, NULL);
        json_decref(p);
    }
    return err;
}

/* Candor's rate: the worker draining n events queued beforehand. */
static double candor_run(const char *dir, const char *url, const struct cd_policy *policy, int n,
                         int conc)
{
    char path[CD_PATH_MAX];
    struct cd_store *s = NULL;
    struct cd_outbox *ob = NULL;
    uint8_t master[32];
    json_t *body = json_pack("{s:s,s:[s],s:s}", "url", url, "events", "customer.restricted",
                             "purpose", "service"),
           *sub = NULL;
    struct cd_outbox_actor actor = {"bench", "admin", "bench", NULL};
    struct cd_outbox_stats st;
    double rate = 0;

    snprintf(path, sizeof path, "%s/webhooks.db", dir);
    bench_drop_db(path);
    cd_random_bytes(master, sizeof master);
    if (cd_store_open(path, &s) != CD_OK || cd_outbox_open(s, master, &ob) != CD_OK ||
        cd_outbox_subscription_create(ob, policy, &actor, body, &sub) != CD_OK) {
        fprintf(stderr, "bench_webhooks: set-up failed: %s\n", cd_err_detail());
        goto out;
    }
    for (int done = 0; done < n; done += 1000) {
        struct fill f = {n - done < 1000 ? n - done : 1000};
        if (cd_store_write(s, fill_fn, &f) != CD_OK) {
            fprintf(stderr, "bench_webhooks: enqueue failed: %s\n", cd_err_detail());
            goto out;
        }
    }
    struct cd_outbox_worker_config cfg = {(unsigned)conc, 10000, 5, 1000, 60000, policy, {0}};
    double t0 = bench_now_s();
    if (cd_outbox_worker_start(ob, &cfg) != CD_OK) {
        fprintf(stderr, "bench_webhooks: %s\n", cd_err_detail());
        goto out;
    }
    do {
        usleep(2000);
        cd_outbox_stats(ob, &st);
    } while (st.delivered < (uint64_t)n && bench_now_s() - t0 < 600);
    rate = st.delivered / (bench_now_s() - t0);
    if (st.failed)
        printf("  (%llu attempts failed)\n", (unsigned long long)st.failed);
out:
    json_decref(body);
    json_decref(sub);
    cd_outbox_close(ob);
    cd_store_close(s);
    bench_drop_db(path);
    return rate;
}

static int arg(int argc, char **argv, int i, int def)
{
    return argc > i ? (int)strtol(argv[i], NULL, 10) : def;
}

int main(int argc, char **argv)
{
    int n = arg(argc, argv, 1, 20000), conc = arg(argc, argv, 2, 8), runs = arg(argc, argv, 3, 3);
    const char *dir = argc > 4 ? argv[4] : "/tmp";
    struct cd_policy *policy = NULL;
    char url[64], body[512];
    double base[16], cand[16];

    if (n < 1 || conc < 1 || runs < 1 || runs > 16) {
        fprintf(stderr, "usage: bench_webhooks EVENTS CONCURRENCY RUNS DIR\n");
        return 2;
    }
    cd_json_init();
    if (cd_crypto_init() != CD_OK || cd_policy_load(NULL, &policy) != CD_OK ||
        curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    struct MHD_Daemon *d =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, NULL, NULL, answer,
                         NULL, MHD_OPTION_THREAD_POOL_SIZE, 2u, MHD_OPTION_END);
    if (d == NULL)
        return 1;
    snprintf(url, sizeof url, "http://127.0.0.1:%u/hook",
             (unsigned)MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port);
    /* A body the size of a customer.restricted delivery. */
    snprintf(body, sizeof body,
             "{\"id\":\"evt_01JFZZZZZZZZZZZZZZZZZZZZZZ\",\"type\":\"customer.restricted\","
             "\"timestamp\":\"2026-12-07T10:15:00.123Z\",\"sequence\":4711,\"data\":"
             "{\"customer_id\":\"cus_01JFZZZZZZZZZZZZZZZZZZZZZZ\",\"restricted\":true}}");
    for (int r = 0; r < runs; r++) {
        base[r] = baseline(url, body, n, conc);
        cand[r] = candor_run(dir, url, policy, n, conc);
        printf("run %d: receiver %.0f requests/s (plain libcurl client), "
               "candor %.0f deliveries/s\n",
               r + 1, base[r], cand[r]);
        fflush(stdout);
    }
    double b = bench_median(base, runs), c = bench_median(cand, runs);
    printf("median: receiver %.0f requests/s, webhook deliveries %.0f/s\n", b, c);
    printf("ratio: deliveries / receiver = %.2f (%d events, %d in flight)\n", c / b, n, conc);
    MHD_stop_daemon(d);
    cd_policy_free(policy);
    return 0;
}
