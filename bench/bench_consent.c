/* Consent decisions in process: 1 million customers x 5 purposes loaded in the projection
 * (half EU opt-in, half US-CA opt-out), then, on one core and in the same run:
 *   - cd_consent_decide on random customers (ids as strings, as callers hold them),
 *   - the same, each decision's event id then formatted as a caller that shows it does
 *     (the decision holds the id's 128 bits; cd_consent_decision_event_id makes the string),
 *   - cd_consent_decide_many on the same customers in batches of 64 (one purpose per batch),
 *   - a raw open-addressing hash-table lookup of the same id strings (the floor),
 *   - the bulk audience filter over every customer (customers/s),
 * plus the projection's bytes per customer x purpose state and the process RSS.
 * Medians of 5 runs. Usage: build/bench/bench_consent [customers] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "consent/consent.h"
#include "consent/consent_testing.h"
#include "crypto/crypto.h"
#include "bench_util.h"

#define RUNS 5

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

/* The floor: a raw open-addressing table keyed by a 64-bit hash of the id string. */
struct raw {
    uint64_t *keys;
    uint32_t *vals;
    size_t mask;
};

static uint64_t str_hash(const char *p, size_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 29;
    }
    return h | 1;
}

static uint32_t raw_get(const struct raw *t, const char *p, size_t n)
{
    uint64_t h = str_hash(p, n);
    for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
        if (t->keys[i] == h)
            return t->vals[i];
        if (t->keys[i] == 0)
            return 0;
    }
}

struct sink {
    uint64_t allowed;
};

static enum cd_err count_allowed(void *ctx, struct cd_str id, const struct cd_consent_decision *d)
{
    struct sink *s = ctx;
    s->allowed += d->allow;
    return CD_OK;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 1000000;
    const size_t ndec = 5000000;
    static const enum cd_purpose purposes[5] = {CD_PURPOSE_MARKETING, CD_PURPOSE_PERSONALIZATION,
                                                CD_PURPOSE_ANALYTICS,
                                                CD_PURPOSE_TARGETED_ADVERTISING,
                                                CD_PURPOSE_SALE_OR_SHARING};
    char dir[128], db[200], cmd[300];
    struct cd_store *store = NULL;
    struct cd_consent *c = NULL;

    snprintf(dir, sizeof dir, "/tmp/candor-bench-consent-%d", (int)getpid());
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -m 700 %s", dir, dir);
    if (system(cmd) != 0)
        return 1;
    snprintf(db, sizeof db, "%s/candor.db", dir);
    cd_json_init();
    if (cd_crypto_init() != CD_OK || cd_store_open(db, &store) != CD_OK ||
        cd_consent_open(store, dir, "rules/consent/jurisdictions.yaml", &c) != CD_OK) {
        fprintf(stderr, "bench_consent: %s\n", cd_err_detail());
        return 1;
    }
    long rss0 = rss_kb();
    char(*ids)[CD_ID_MAX] = calloc(n, sizeof *ids);
    uint32_t *order = calloc(ndec, sizeof *order);
    struct raw raw;
    size_t cap = 1;
    while (cap < 2 * n)
        cap <<= 1;
    raw.keys = calloc(cap, sizeof *raw.keys);
    raw.vals = calloc(cap, sizeof *raw.vals);
    raw.mask = cap - 1;
    if (!ids || !order || !raw.keys || !raw.vals)
        return 1;
    uint64_t t0 = cd_mono_ns();
    for (size_t i = 0; i < n; i++) {
        cd_id_new("cus", ids[i]);
        struct cd_str id = cd_str_c(ids[i]);
        struct cd_str jur = (i & 1) ? CD_STR("US-CA") : CD_STR("EU");
        for (int k = 0; k < 5; k++) {
            enum cd_consent_state st = (i + (size_t)k) % 3 == 0 ? CD_CONSENT_WITHDRAWN
                                                                : CD_CONSENT_GIVEN;
            if (cd_consent_debug_apply(c, id, jur, purposes[k], CD_CONSENT_CHANNEL_ANY, st,
                                       1700000000000LL) != CD_OK)
                return 1;
        }
        uint64_t h = str_hash(id.p, id.len);
        for (size_t s = h & raw.mask;; s = (s + 1) & raw.mask)
            if (raw.keys[s] == 0) {
                raw.keys[s] = h;
                raw.vals[s] = (uint32_t)i + 1;
                break;
            }
    }
    double load_s = (double)(cd_mono_ns() - t0) / 1e9;
    uint64_t seed = 0x1234567;
    for (size_t i = 0; i < ndec; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        order[i] = (uint32_t)((seed >> 33) % n);
    }
    struct cd_consent_stats st;
    cd_consent_stats(c, &st);

    enum { MANY = 64 };
    struct cd_str *views = calloc(ndec, sizeof *views);
    struct cd_consent_decision *many = calloc(MANY, sizeof *many);
    if (!views || !many)
        return 1;
    for (size_t i = 0; i < ndec; i++)
        views[i] = (struct cd_str){ids[order[i]], 30};
    double dec[RUNS], decf[RUNS], decm[RUNS], rawr[RUNS], bulk[RUNS];
    uint64_t allowed = 0, sum = 0;
    int64_t now = 1800000000000LL;
    for (int r = 0; r < RUNS; r++) {
        struct cd_consent_decision d;
        t0 = cd_mono_ns();
        for (size_t i = 0; i < ndec; i++) {
            const char *id = ids[order[i]];
            cd_consent_decide(c, (struct cd_str){id, 30}, purposes[i % 5],
                              CD_CONSENT_CHANNEL_EMAIL, now, &d);
            allowed += d.allow;
        }
        dec[r] = (double)ndec / ((double)(cd_mono_ns() - t0) / 1e9);
        t0 = cd_mono_ns();
        for (size_t i = 0; i < ndec; i++) {
            const char *id = ids[order[i]];
            char ev[CD_ID_MAX];
            cd_consent_decide(c, (struct cd_str){id, 30}, purposes[i % 5],
                              CD_CONSENT_CHANNEL_EMAIL, now, &d);
            allowed += d.allow + (uint8_t)cd_consent_decision_event_id(&d, ev)[29];
        }
        decf[r] = (double)ndec / ((double)(cd_mono_ns() - t0) / 1e9);
        t0 = cd_mono_ns();
        for (size_t i = 0; i + MANY <= ndec; i += MANY) {
            cd_consent_decide_many(c, views + i, MANY, purposes[(i / MANY) % 5],
                                   CD_CONSENT_CHANNEL_EMAIL, now, many);
            for (size_t k = 0; k < MANY; k++)
                allowed += many[k].allow;
        }
        decm[r] = (double)(ndec / MANY * MANY) / ((double)(cd_mono_ns() - t0) / 1e9);
        t0 = cd_mono_ns();
        for (size_t i = 0; i < ndec; i++)
            sum += raw_get(&raw, ids[order[i]], 30);
        rawr[r] = (double)ndec / ((double)(cd_mono_ns() - t0) / 1e9);
        struct sink s = {0};
        t0 = cd_mono_ns();
        if (cd_consent_filter(c, NULL, 0, CD_PURPOSE_MARKETING, CD_CONSENT_CHANNEL_EMAIL, now,
                              count_allowed, &s) != CD_OK)
            return 1;
        bulk[r] = (double)st.customers / ((double)(cd_mono_ns() - t0) / 1e9);
        allowed += s.allowed;
    }
    double md = bench_median(dec, RUNS), mf = bench_median(decf, RUNS), mm = bench_median(decm, RUNS), mr = bench_median(rawr, RUNS), mb = bench_median(bulk, RUNS);
    printf("consent bench: %zu customers x 5 purposes (%zu states), loaded in %.1f s\n",
           st.customers, st.states, load_s);
    printf("  decide (in process, 1 core, random customers): %.2f M decisions/s (median of %d)\n",
           md / 1e6, RUNS);
    printf("  decide + event id string (as the HTTP check): %.2f M decisions/s\n", mf / 1e6);
    printf("  decide_many (batches of %d, same customers):   %.2f M decisions/s\n", MANY,
           mm / 1e6);
    printf("  raw hash-table lookup, same ids, same order:   %.2f M lookups/s\n", mr / 1e6);
    printf("  decide / raw lookup:                           %.2f\n", md / mr);
    printf("  decide_many / raw lookup:                      %.2f\n", mm / mr);
    printf("  bulk audience filter (all customers):          %.2f M customers/s\n", mb / 1e6);
    printf("  projection: %zu bytes, %.1f bytes per customer x purpose state\n", st.bytes,
           (double)st.bytes / (double)st.states);
    printf("  RSS: %ld MB (%ld MB before loading; includes the id strings and the raw table)\n",
           rss_kb() / 1024, rss0 / 1024);
    printf("  (checksum %llu)\n", (unsigned long long)(allowed + sum));
    cd_consent_close(c);
    cd_store_close(store);
    free(ids);
    free(order);
    free(views);
    free(many);
    free(raw.keys);
    free(raw.vals);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : 1;
}
