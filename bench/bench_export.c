/* The export of an access request for a customer with many interactions: setup ingests them
 * (8 threads, each message ~300 bytes of prose, one in 50 naming another person's email), then
 * the whole package (JSON and CSV of everything, the guard's review of every message, the
 * summary and the manifest) is written to a sink that counts the bytes. Reports the seconds,
 * the archive's size, and the peak RSS while exporting (the high-water mark is reset first,
 * /proc/self/clear_refs) against the RSS before: memory must not grow with the history.
 * Usage: build/bench/bench_export [interactions (100000)] [rules dir (rules)] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "calendar/calendar.h"
#include "consent/consent.h"
#include "core/core.h"
#include "crypto/crypto.h"
#include "dsar/dsar.h"
#include "guard/guard.h"
#include "bench_util.h"

#define THREADS 8

static const struct cd_actor actor = {"tok_bench", "compliance", "bench", "req_bench",
                                      "legal_obligation", true, false};

struct feeder {
    struct cd_core *core;
    const char *cid;
    int from, to;
    int failed;
};

static void *feed(void *arg)
{
    struct feeder *f = arg;
    char text[400];

    for (int i = f->from; i < f->to; i++) {
        bench_fill_text(text, 300, (unsigned)i * 7u);
        if (i % 50 == 0)
            snprintf(text + 200, 100, " write to friend%d@example.net instead", i);
        json_t *in = json_pack("{s:s,s:s,s:s,s:s,s:s}", "customer_id", f->cid, "channel",
                               i % 3 ? "email" : "chat", "direction",
                               i % 2 ? "inbound" : "outbound", "subject", "About my order",
                               "body", text);
        struct cd_buf out = CD_BUF_INIT(1 << 20);
        bool replayed;
        if (in == NULL || cd_core_interaction_ingest(f->core, &actor, in, NULL, CD_FIELDS_ALL,
                                                     &out, NULL, &replayed) != CD_OK)
            f->failed++;
        json_decref(in);
        cd_buf_free(&out);
    }
    return NULL;
}

static long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, key, strlen(key)) == 0)
            kb = strtol(line + strlen(key), NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

static enum cd_err count_sink(void *ctx, const void *p, size_t n)
{
    (void)p;
    *(uint64_t *)ctx += n;
    return CD_OK;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 100000;
    const char *rules = argc > 2 ? argv[2] : "rules";
    char dir[] = "/tmp/candor-bench-export.XXXXXX", db[128], path[256];
    uint8_t master[32];
    struct cd_store *store = NULL;
    struct cd_core *core = NULL;
    struct cd_consent *consent = NULL;
    struct cd_guard *guard = NULL;
    struct cd_calendars *cals = NULL;
    struct cd_dsar_rules *dr = NULL;
    struct cd_dsar *d = NULL;
    json_t *c = NULL, *r = NULL;

    if (n < 1 || mkdtemp(dir) == NULL)
        return 2;
    snprintf(db, sizeof db, "%s/candor.db", dir);
    snprintf(path, sizeof path, "%s/dsar/regimes.yaml", rules);
    cd_random_bytes(master, sizeof master);
    char cal_dir[256];
    snprintf(cal_dir, sizeof cal_dir, "%s/calendars", rules);
    char consent_rules[256];
    snprintf(consent_rules, sizeof consent_rules, "%s/consent/jurisdictions.yaml", rules);
    if (cd_crypto_init() != CD_OK || cd_store_open(db, &store) != CD_OK ||
        cd_core_open(store, master, &core) != CD_OK ||
        cd_consent_open(store, dir, consent_rules, &consent) != CD_OK ||
        cd_guard_open(rules, &guard) != CD_OK || cd_calendars_new(&cals) != CD_OK ||
        cd_calendars_load_dir(cals, cal_dir) != CD_OK ||
        cd_dsar_rules_load(cals, path, &dr) != CD_OK || cd_dsar_open(store, core, dr, &d) != CD_OK) {
        fprintf(stderr, "setup: %s\n", cd_err_detail());
        return 1;
    }
    cd_dsar_set_links(d, &(struct cd_dsar_links){.consent = consent, .guard = guard});
    json_t *body = json_pack("{s:s,s:s,s:[{s:s,s:s}]}", "display_name", "Bench Customer",
                             "jurisdiction", "DE", "identities", "type", "email", "value",
                             "bench.customer@example.org");
    bool replayed;
    if (cd_core_customer_create(core, &actor, body, NULL, CD_FIELDS_ALL, &c, &replayed) != CD_OK)
        return 1;
    json_decref(body);
    char cid[CD_ID_MAX];
    snprintf(cid, sizeof cid, "%s", json_string_value(json_object_get(c, "id")));
    json_decref(c);

    double t0 = bench_now_s();
    pthread_t th[THREADS];
    struct feeder f[THREADS];
    for (int i = 0; i < THREADS; i++) {
        f[i] = (struct feeder){core, cid, n * i / THREADS, n * (i + 1) / THREADS, 0};
        pthread_create(&th[i], NULL, feed, &f[i]);
    }
    int failed = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        failed += f[i].failed;
    }
    printf("setup: %d interactions ingested in %.1f s (%d failed)\n", n, bench_now_s() - t0,
           failed);

    body = json_pack("{s:s,s:s}", "customer_id", cid, "type", "access");
    if (cd_dsar_create(d, &actor, body, CD_DSAR_INTAKE_API, &r) != CD_OK)
        return 1;
    json_decref(body);
    char rid[CD_ID_MAX];
    snprintf(rid, sizeof rid, "%s", json_string_value(json_object_get(r, "id")));
    json_decref(r);
    body = json_pack("{s:s}", "state", "in_progress");
    if (cd_dsar_transition(d, &actor, cd_str_c(rid), body, &r) != CD_OK)
        return 1;
    json_decref(body);
    json_decref(r);

    /* The high-water mark from here on is the export's. */
    FILE *cr = fopen("/proc/self/clear_refs", "w");
    if (cr) {
        fputs("5", cr);
        fclose(cr);
    }
    long before = status_kb("VmRSS:");
    struct cd_dsar_export *x = NULL;
    uint64_t bytes = 0;
    t0 = bench_now_s();
    if (cd_dsar_export_open(d, &actor, cd_str_c(rid), &x) != CD_OK ||
        cd_dsar_export_write(x, count_sink, &bytes) != CD_OK) {
        fprintf(stderr, "export: %s\n", cd_err_detail());
        return 1;
    }
    double secs = bench_now_s() - t0;
    long peak = status_kb("VmHWM:");
    cd_dsar_export_free(x);
    printf("export of %d interactions: %.2f s, %.1f MB zip, peak RSS %.1f MB "
           "(%.1f MB before)\n",
           n, secs, (double)bytes / 1e6, (double)peak / 1024, (double)before / 1024);

    cd_dsar_close(d);
    cd_guard_close(guard);
    cd_consent_close(consent);
    cd_core_close(core);
    cd_store_close(store);
    cd_calendars_free(cals);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 && failed == 0 ? 0 : 1;
}
