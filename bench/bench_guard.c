/* Guard throughput benchmark: `bench_guard RULES_DIR [MB] [runs] [CORPUS_OUT]`.
 *
 * Generates at least 100 MB of support messages (200-2000 bytes each, mostly ordinary replies,
 * some with findings), then measures cd_guard_check against raw Hyperscan scanning the guard's
 * first-pass database with an empty callback, in the same run, and prints medians over several
 * runs plus p50/p99 latency of cd_guard_check on 1 KB messages. With CORPUS_OUT, the corpus is
 * also written there (messages separated by NUL bytes) for the in-run baseline of
 * bench/run.sh, @redactpii/node on the same messages.
 *
 * The raw figure needs the compiled database, so this file includes the guard's private
 * header; nothing else outside src/guard does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "base/base.h"
#include "guard/guard.h"
#include "guard/guard_int.h"
#include "bench_util.h"

static const char *const sentences[] = {
    "Thanks for getting in touch about your order. ",
    "I've checked the tracking and the parcel left our warehouse yesterday. ",
    "Your refund of $45.00 has been processed and should reach your bank in 5 to 10 days. ",
    "I'm sorry for the trouble this has caused. ",
    "Could you send me a photo of the damaged item so I can arrange a replacement? ",
    "The total was \xC2\xA3" "19.99 including tax and delivery. ",
    "Your subscription renews on 12 March and you can cancel at any time in Settings. ",
    "If you have any other questions, just reply to this email. ",
    "We aim to reply within one working day. ",
    "I've passed your feedback to the product team, who review it every week. ",
    "Your case reference is CS-2026-118812 and order number 4242 4242 4242 4241. ",
    "The engineer is booked for Friday between 8am and 12pm. ",
    "Unfortunately we can't offer a refund because the item was delivered more than 30 days ago. ",
    "Please restart the router and wait two minutes before trying again. ",
    "H\xC3\xA9llo again \xF0\x9F\x98\x80, the replacement is on its way. ",
    "Hurry, only 3 left in stock! ",
    "This is 100% guaranteed to work. ",
    "Please utilize the portal in order to update your details. ",
    "The card on file is 5555 5555 5555 4444. ",
    "Prices from $9.99*, plus booking fees. ",
    "You can reach us at support@example.com or on 1-800-555-0199. ",
};
#define NSENT (sizeof sentences / sizeof sentences[0])

struct corpus {
    char *buf;
    size_t *off, *len;
    size_t n, bytes;
};

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Messages of lo..hi bytes until total bytes; ordinary sentences are 6x as likely. */
static int generate(struct corpus *c, size_t total, size_t lo, size_t hi)
{
    size_t cap = total + hi + 16, maxn = total / lo + 2;

    c->buf = cd_malloc(cap);
    c->off = cd_malloc(maxn * sizeof *c->off);
    c->len = cd_malloc(maxn * sizeof *c->len);
    if (!c->buf || !c->off || !c->len)
        return -1;
    c->n = c->bytes = 0;
    while (c->bytes < total && c->n < maxn) {
        size_t want = lo + next_rand() % (hi - lo + 1), start = c->bytes, len = 0;
        while (len < want) {
            size_t k = next_rand() % (NSENT + 5 * 14);
            const char *s = sentences[k < NSENT ? k : k % 14];
            size_t sl = strlen(s);
            if (len + sl > want)
                break;
            memcpy(c->buf + start + len, s, sl);
            len += sl;
        }
        if (len < lo) { /* pad with a plain ASCII sentence cut at a space */
            const char *pad = "We will keep you updated as soon as we hear more from the courier. ";
            while (len < lo) {
                size_t take = strlen(pad);
                if (take > want - len)
                    take = want - len;
                memcpy(c->buf + start + len, pad, take);
                len += take;
            }
        }
        c->off[c->n] = start;
        c->len[c->n] = len;
        c->n++;
        c->bytes += len;
    }
    return 0;
}

static int empty_cb(unsigned int id, unsigned long long from, unsigned long long to,
                    unsigned int flags, void *ctx)
{
    (void)id, (void)from, (void)to, (void)flags, (void)ctx;
    return 0;
}

/* CPU time of this thread: on a shared machine it moves less than the wall clock. */
static double thread_cpu_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    struct cd_guard *g = NULL;
    struct corpus c = {0}, small = {0};
    hs_scratch_t *scratch = NULL;
    size_t mb = 110, runs = 5, findings = 0;
    double guard_s[16], raw_s[16], guard_cpu[16];

    if (argc < 2) {
        fprintf(stderr, "usage: bench_guard RULES_DIR [MB] [runs]\n");
        return 2;
    }
    if (argc > 2)
        mb = strtoul(argv[2], NULL, 10);
    if (argc > 3)
        runs = strtoul(argv[3], NULL, 10);
    if (runs < 1 || runs > 16)
        runs = 5;
    cd_json_init();
    if (cd_guard_open(argv[1], &g) != CD_OK) {
        fprintf(stderr, "bench_guard: %s\n", cd_err_detail());
        return 2;
    }
    if (generate(&c, mb * 1000 * 1000, 200, 2000) != 0 || generate(&small, 20000 * 1024, 1024, 1024))
        return 2;
    if (argc > 4) {
        FILE *f = fopen(argv[4], "wb");
        if (f == NULL)
            return 2;
        for (size_t i = 0; i < c.n; i++) {
            fwrite(c.buf + c.off[i], 1, c.len[i], f);
            fputc('\0', f);
        }
        if (fclose(f) != 0)
            return 2;
    }
    if (hs_alloc_scratch(g->cur->db, &scratch) != HS_SUCCESS)
        return 2;
    printf("rules: %zu, patterns: %zu; corpus: %zu messages, %.1f MB (200-2000 bytes each)\n",
           cd_guard_rule_count(g), g->cur->npats, c.n, (double)c.bytes / 1e6);
    for (size_t r = 0; r < runs; r++) {
        uint64_t t0 = cd_mono_ns();
        for (size_t i = 0; i < c.n; i++)
            hs_scan(g->cur->db, c.buf + c.off[i], (unsigned)c.len[i], 0, scratch, empty_cb, NULL);
        raw_s[r] = (double)(cd_mono_ns() - t0) / 1e9;
        t0 = cd_mono_ns();
        double c0 = thread_cpu_s();
        findings = 0;
        for (size_t i = 0; i < c.n; i++) {
            struct cd_guard_result *res = NULL;
            struct cd_guard_input in = {{c.buf + c.off[i], c.len[i]}, "email", true, NULL};
            if (cd_guard_check(g, &in, &res) != CD_OK) {
                fprintf(stderr, "bench_guard: check failed: %s\n", cd_err_detail());
                return 1;
            }
            findings += cd_guard_result_count(res);
            cd_guard_result_free(res);
        }
        guard_s[r] = (double)(cd_mono_ns() - t0) / 1e9;
        guard_cpu[r] = thread_cpu_s() - c0;
        printf("run %zu: guard %.1f MB/s (%.1f MB/s of CPU time), raw hyperscan %.1f MB/s, "
               "ratio %.2f\n",
               r + 1, (double)c.bytes / 1e6 / guard_s[r], (double)c.bytes / 1e6 / guard_cpu[r],
               (double)c.bytes / 1e6 / raw_s[r], raw_s[r] / guard_s[r]);
    }
    double gs = bench_median(guard_s, (int)runs), rs = bench_median(raw_s, (int)runs);
    printf("median guard: %.1f MB/s, %.0f msgs/s, %.1f MB/s of CPU time (%zu findings per "
           "pass)\n",
           (double)c.bytes / 1e6 / gs, (double)c.n / gs,
           (double)c.bytes / 1e6 / bench_median(guard_cpu, (int)runs), findings);
    printf("median raw hyperscan (the first pass, empty callback): %.1f MB/s, %.0f msgs/s\n",
           (double)c.bytes / 1e6 / rs, (double)c.n / rs);
    printf("ratio guard/raw: %.2f\n", rs / gs);

    /* Latency of single 1 KB checks. */
    uint64_t *lat = cd_malloc(small.n * sizeof *lat);
    if (lat == NULL)
        return 2;
    for (size_t i = 0; i < small.n; i++) {
        struct cd_guard_result *res = NULL;
        struct cd_guard_input in = {{small.buf + small.off[i], small.len[i]}, "chat", true, NULL};
        uint64_t t0 = cd_mono_ns();
        cd_guard_check(g, &in, &res);
        lat[i] = cd_mono_ns() - t0;
        cd_guard_result_free(res);
    }
    qsort(lat, small.n, sizeof *lat, cmp_u64);
    printf("1 KB messages (%zu): p50 %.1f us, p99 %.1f us\n", small.n,
           (double)lat[small.n / 2] / 1e3, (double)lat[small.n * 99 / 100] / 1e3);
    cd_free(lat);
    hs_free_scratch(scratch);
    cd_free(c.buf), cd_free(c.off), cd_free(c.len);
    cd_free(small.buf), cd_free(small.off), cd_free(small.len);
    cd_guard_close(g);
    return 0;
}
