/* Ingestion with audit and encryption on vs off (the target: on >= 70% of off), in one run.
 *
 * (a) on:  cd_core_interaction_ingest from T threads, the real path of POST /v1/interactions
 *          after JSON parsing: identity normalised and looked up by its keyed blind index, the
 *          customer's data key unwrapped (or a customer created with a new wrapped key), subject,
 *          body and metadata sealed, the interaction and its audit event (hash chain and Merkle
 *          nodes) written in the same transaction, group commit.
 * (b) off: the same logical work without audit and encryption, from T threads through
 *          cd_store_write on the same schema: the same JSON bodies parsed and the identity
 *          normalised the same way, then the same statements with plaintext: identity looked up
 *          by its plaintext value, the customer and identity created when new, the interaction
 *          inserted with plaintext columns, no audit row; a response object built as (a) does.
 * Both use fresh SQLite files (WAL, synchronous=FULL as the store sets), the same rows (one in
 * ten creates a customer) and no idempotency keys. Every figure is the median of the runs.
 *
 * The T threads stand for the server's request workers and are scheduled as those are
 * (SCHED_BATCH, src/http/server.c): a thread that has just been woken waits for its turn
 * instead of preempting the store's writer thread, the serial section both sides share. With
 * default scheduling the callers' work (heavier with encryption on) preempts the writer in the
 * middle of a batch and the whole pipeline waits; BENCH_SCHED=other measures that.
 *
 * Usage: bench_ingest_overhead [rows] [runs] [threads] [dir]  (defaults 40000 3 64 $TMPDIR)
 * BENCH_SIDE=on or BENCH_SIDE=off runs one side only (to profile it); no ratio is printed then. */
#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "core/core.h"
#include "crypto/crypto.h"
#include "store/store.h"
#include "bench_util.h"

#define BODY_LEN 560
#define SUBJECT_LEN 40
#define MAX_RUNS 15

static const char *const channels[] = {"email", "sms", "phone", "chat", "social",
                                       "app", "push", "post", "in_person"};
static char body_text[BODY_LEN + 1];

static json_t *make_body(int i, int customers)
{
    char email[96], subject[SUBJECT_LEN + 1], thread[24], when[CD_TIME_STRLEN];

    snprintf(email, sizeof email, "Customer%d@Example.com", i % customers);
    bench_fill_text(subject, SUBJECT_LEN, (unsigned)i);
    snprintf(thread, sizeof thread, "thr-%d", i / 4);
    cd_time_format(cd_now_ms() - 180LL * 86400000 + (int64_t)i * 517, when);
    return json_pack("{s:{s:s,s:s},s:s,s:s,s:s,s:s,s:s,s:s,s:{s:s,s:i,s:s}}", "identity", "type",
                     "email", "value", email, "channel", channels[i % 9], "direction",
                     i % 3 ? "inbound" : "outbound", "occurred_at", when, "thread_id", thread,
                     "subject", subject, "body", body_text, "metadata", "source", "bench",
                     "seq", i, "locale", "en-GB");
}

/* CPU seconds used so far by the whole process. */
static double process_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds used so far by the store's writer thread (named "cd-writer"), which runs every
 * write one after another: the serial part of ingestion. -1 when /proc does not tell. */
static double writer_cpu(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    double secs = -1;

    while (d && (e = readdir(d)) != NULL) {
        char path[300], buf[512];
        FILE *f;
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        if ((f = fopen(path, "r")) == NULL)
            continue;
        bool writer = fgets(buf, sizeof buf, f) && strncmp(buf, "cd-writer", 9) == 0;
        fclose(f);
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
        if (!writer || (f = fopen(path, "r")) == NULL)
            continue;
        unsigned long long ut = 0, st = 0;
        char *p = fgets(buf, sizeof buf, f) ? strrchr(buf, ')') : NULL;
        /* Fields after the command: state, then 10 numbers, then utime and stime. */
        if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
                        &st) == 2)
            secs = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
        fclose(f);
    }
    if (d)
        closedir(d);
    return secs;
}

/* ---- (b) the same work in plaintext, without audit ---- */

struct plain {
    char id[CD_ID_MAX], customer_id[CD_ID_MAX];
    struct cd_str type, channel, direction, thread, subject, body;
    struct cd_buf ident; /* normalised identity value */
    char *metadata;
    int64_t occurred_at, now;
    bool created;
};

static enum cd_err owner_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct plain *p = ctx;

    if (n > 0 && cols[0].type == CD_VAL_TEXT && cols[0].len < CD_ID_MAX) {
        memcpy(p->customer_id, cols[0].p, cols[0].len);
        p->customer_id[cols[0].len] = '\0';
    }
    return CD_OK;
}

static enum cd_err plain_fn(struct cd_tx *tx, void *ctx)
{
    struct plain *p = ctx;
    struct cd_val q[] = {CD_VTEXT(p->type), CD_VBLOB(p->ident.p, p->ident.len)};
    enum cd_err err;

    p->customer_id[0] = '\0';
    p->created = false;
    if ((err = cd_tx_exec(tx,
                          "SELECT c.id FROM identities i JOIN customers c ON c.id = i.customer_id"
                          " WHERE i.kind = $1 AND i.lookup = $2",
                          q, 2, owner_row, p, NULL)) != CD_OK)
        return err;
    if (!p->customer_id[0]) {
        cd_id_new("cus", p->customer_id);
        struct cd_val c[] = {CD_VCSTR(p->customer_id), CD_VINT(p->now)};
        struct cd_val i[] = {CD_VTEXT(p->type),         CD_VBLOB(p->ident.p, p->ident.len),
                             CD_VCSTR(p->customer_id),  CD_VBLOB(p->ident.p, p->ident.len),
                             CD_VNULL,                  CD_VINT(p->now)};
        if ((err = cd_tx_exec(tx, "INSERT INTO customers(id, created_at, updated_at)"
                                  " VALUES($1,$2,$2)",
                              c, 2, NULL, NULL, NULL)) != CD_OK ||
            (err = cd_tx_exec(tx, "INSERT INTO identities(kind, lookup, customer_id, value,"
                                  " network, created_at) VALUES($1,$2,$3,$4,$5,$6)",
                              i, 6, NULL, NULL, NULL)) != CD_OK)
            return err;
        p->created = true;
    }
    struct cd_val r[] = {CD_VCSTR(p->id),
                         CD_VCSTR(p->customer_id),
                         CD_VTEXT(p->channel),
                         CD_VTEXT(p->direction),
                         p->thread.p ? CD_VTEXT(p->thread) : CD_VNULL,
                         CD_VINT(p->occurred_at),
                         CD_VINT(p->now),
                         CD_VCSTR("service"),
                         CD_VBLOB(p->subject.p, p->subject.len),
                         CD_VBLOB(p->body.p, p->body.len),
                         CD_VBLOB(p->metadata, strlen(p->metadata)),
                         CD_VNULL};
    return cd_tx_exec(tx, "INSERT INTO interactions(id, customer_id, channel, direction,"
                          " thread_id, occurred_at, created_at, purpose, subject, body,"
                          " metadata, guard) VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)",
                      r, 12, NULL, NULL, NULL);
}

static enum cd_err plain_ingest(struct cd_store *s, const json_t *body, struct cd_buf *out)
{
    struct plain p = {.ident = CD_BUF_INIT(1024)};
    json_t *ident = NULL, *meta = NULL;
    struct cd_str value = CD_STR_NULL, when = CD_STR_NULL;
    enum cd_err err;

    p.now = cd_now_ms();
    cd_id_new("int", p.id);
    if ((err = cd_json_obj(body, "identity", true, &ident)) != CD_OK ||
        (err = cd_json_str(ident, "type", true, &p.type)) != CD_OK ||
        (err = cd_json_str(ident, "value", true, &value)) != CD_OK ||
        (err = cd_core_identity_normalize(p.type, CD_STR_NULL, value, &p.ident)) != CD_OK ||
        (err = cd_json_str(body, "channel", true, &p.channel)) != CD_OK ||
        (err = cd_json_str(body, "direction", true, &p.direction)) != CD_OK ||
        (err = cd_json_str(body, "thread_id", false, &p.thread)) != CD_OK ||
        (err = cd_json_str(body, "occurred_at", true, &when)) != CD_OK ||
        (err = cd_time_parse(when, &p.occurred_at)) != CD_OK ||
        (err = cd_json_str(body, "subject", false, &p.subject)) != CD_OK ||
        (err = cd_json_str(body, "body", false, &p.body)) != CD_OK ||
        (err = cd_json_obj(body, "metadata", false, &meta)) != CD_OK ||
        (err = cd_json_dump(meta, &p.metadata, NULL)) != CD_OK)
        goto out;
    if ((err = cd_store_write(s, plain_fn, &p)) != CD_OK)
        goto out;
    /* The answer as the real path writes it: JSON text, strings escaped. */
    char ts[CD_TIME_STRLEN];
    cd_time_format(p.occurred_at, ts);
    if ((err = cd_buf_printf(out, "{\"id\":\"%s\",\"customer_id\":\"%s\",\"channel\":", p.id,
                             p.customer_id)) != CD_OK ||
        (err = cd_buf_json_text(out, p.channel)) != CD_OK ||
        (err = cd_buf_puts(out, ",\"direction\":")) != CD_OK ||
        (err = cd_buf_json_text(out, p.direction)) != CD_OK ||
        (err = cd_buf_printf(out, ",\"purpose\":\"service\",\"occurred_at\":\"%s\",\"subject\":",
                             ts)) != CD_OK ||
        (err = cd_buf_json_text(out, p.subject)) != CD_OK ||
        (err = cd_buf_puts(out, ",\"body\":")) != CD_OK ||
        (err = cd_buf_json_text(out, p.body)) != CD_OK ||
        (err = cd_buf_puts(out, ",\"metadata\":")) != CD_OK ||
        (err = cd_buf_puts(out, p.metadata ? p.metadata : "{}")) != CD_OK ||
        (err = cd_buf_printf(out, ",\"customer_created\":%s}", p.created ? "true" : "false")) !=
            CD_OK)
        goto out;
out:
    cd_buf_free(&p.ident);
    cd_free(p.metadata);
    return err;
}

/* ---- the threads ---- */

struct worker {
    pthread_t t;
    int first, count;
    json_t **bodies;
    struct cd_core *core; /* NULL: plaintext path */
    struct cd_store *store;
    bool default_sched; /* BENCH_SCHED=other: not SCHED_BATCH */
    int failed;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct cd_actor a = {.token_id = "tok_bench", .role = "integration", .name = "bench"};

    struct cd_buf out = CD_BUF_INIT(CD_CORE_ANSWER_MAX);

    if (!w->default_sched)
        pthread_setschedparam(pthread_self(), SCHED_BATCH, &(struct sched_param){0});
    for (int i = w->first; i < w->first + w->count; i++) {
        char req[CD_ID_MAX];
        json_t *findings = NULL;
        bool replayed = false;
        enum cd_err err;

        cd_id_new("req", req);
        a.request_id = req;
        if (w->core)
            err = cd_core_interaction_ingest(w->core, &a, w->bodies[i], NULL, CD_FIELDS_ALL, &out,
                                             &findings, &replayed);
        else
            err = plain_ingest(w->store, w->bodies[i], &out);
        if (err != CD_OK && w->failed++ == 0)
            fprintf(stderr, "bench_ingest_overhead: %s\n", cd_err_detail());
        json_decref(findings);
        cd_buf_reset(&out);
    }
    cd_buf_free(&out);
    return NULL;
}

/* Returns rows/s, or -1. */
static double run(bool on, const char *dir, json_t **bodies, int n, int nthreads)
{
    char path[CD_PATH_MAX] = "";
    struct cd_store *s = NULL;
    struct cd_core *core = NULL;
    struct worker *w = cd_calloc((size_t)nthreads, sizeof *w);
    uint8_t master[CD_CRYPTO_KEY_LEN];
    double rate = -1;
    int failed = 0;
    const char *sched = getenv("BENCH_SCHED");

    snprintf(path, sizeof path, "%s/bench-ingest-%s-%d.db", dir, on ? "on" : "off",
             (int)getpid());
    bench_drop_db(path);
    if (w == NULL || cd_store_open(path, &s) != CD_OK) {
        fprintf(stderr, "bench_ingest_overhead: open %s: %s\n", path, cd_err_detail());
        goto out;
    }
    cd_random_bytes(master, sizeof master);
    if (on && cd_core_open(s, master, &core) != CD_OK)
        goto out;
    int per = n / nthreads, extra = n % nthreads, first = 0;
    for (int i = 0; i < nthreads; i++) {
        w[i] = (struct worker){.first = first, .count = per + (i < extra), .bodies = bodies,
                               .core = core, .store = s,
                               .default_sched = sched && strcmp(sched, "other") == 0};
        first += w[i].count;
    }
    uint64_t t0 = cd_mono_ns();
    double cpu0 = process_cpu(), wcpu0 = writer_cpu();
    for (int i = 0; i < nthreads; i++)
        pthread_create(&w[i].t, NULL, worker_main, &w[i]);
    for (int i = 0; i < nthreads; i++) {
        pthread_join(w[i].t, NULL);
        failed += w[i].failed;
    }
    double secs = (double)(cd_mono_ns() - t0) / 1e9, wcpu1 = writer_cpu();
    /* A writer not found yet at the start had not named itself yet: it had done nothing. */
    double wcpu = wcpu1 < 0 ? -1 : wcpu1 - (wcpu0 < 0 ? 0 : wcpu0);
    double cpu = process_cpu() - cpu0;
    struct cd_store_stats st;
    cd_store_get_stats(s, &st);
    /* The writer runs the writes one after another; the callers (parsing, sealing, their read
     * transactions, the answers) share the other core: either can bound rows/s on 2 cores. */
    printf("    %-3s %d rows in %.2f s: %.0f rows/s (%llu commits, mean batch %.1f, "
           "%.2f s in COMMIT, CPU per row: writer thread %.1f us, other threads %.1f us)\n",
           on ? "on" : "off", n - failed, secs, (n - failed) / secs,
           (unsigned long long)st.commits,
           st.commits ? (double)st.writes / (double)st.commits : 0.0,
           (double)st.commit_ns_total / 1e9, wcpu < 0 ? 0.0 : 1e6 * wcpu / n,
           1e6 * (cpu - (wcpu < 0 ? 0.0 : wcpu)) / n);
    if (failed == 0)
        rate = n / secs;
out:
    cd_crypto_wipe(master, sizeof master);
    cd_core_close(core);
    cd_store_close(s);
    if (path[0])
        bench_drop_db(path);
    cd_free(w);
    return rate;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 40000;
    int runs = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 3;
    int nthreads = argc > 3 ? (int)strtol(argv[3], NULL, 10) : 64;
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    const char *dir = argc > 4 ? argv[4] : tmp;
    double on[MAX_RUNS], off[MAX_RUNS];
    int customers = n / 10 > 0 ? n / 10 : 1, rc = 0;
    const char *side = getenv("BENCH_SIDE");
    bool only_on = side && strcmp(side, "on") == 0, only_off = side && strcmp(side, "off") == 0;

    cd_json_init();
    if (cd_crypto_init() != CD_OK)
        return 1;
    cd_log_set_level(CD_LOG_WARN);
    if (n < 1 || runs < 1 || runs > MAX_RUNS || nthreads < 1 || nthreads > 1024) {
        fprintf(stderr, "usage: bench_ingest_overhead [rows] [runs 1-%d] [threads] [dir]\n",
                MAX_RUNS);
        return 2;
    }
    bench_fill_text(body_text, BODY_LEN, 7);
    json_t **bodies = cd_calloc((size_t)n, sizeof *bodies);
    if (bodies == NULL)
        return 1;
    for (int i = 0; i < n; i++)
        if ((bodies[i] = make_body(i, customers)) == NULL)
            return 1;
    const char *sched = getenv("BENCH_SCHED");
    printf("bench_ingest_overhead: %d rows (%d customers, %d-byte body), %d runs, %d threads "
           "(%s), dir %s\n",
           n, customers, BODY_LEN, runs, nthreads,
           sched && strcmp(sched, "other") == 0 ? "default scheduling"
                                                : "SCHED_BATCH, as the server's workers",
           dir);
    for (int r = 0; r < runs; r++) {
        printf("  run %d\n", r + 1);
        /* Alternating keeps a slow phase of the machine from landing on one side only. */
        off[r] = only_on ? 1 : run(false, dir, bodies, n, nthreads);
        on[r] = only_off ? 1 : run(true, dir, bodies, n, nthreads);
        fflush(stdout);
        if (on[r] < 0 || off[r] < 0)
            rc = 1;
    }
    double mon = bench_median(on, runs), moff = bench_median(off, runs);
    if (!only_on && !only_off)
        printf("bench_ingest_overhead: median on=%.0f rows/s off=%.0f rows/s ratio on/off=%.3f "
               "(target >= 0.70)\n",
               mon, moff, mon / moff);
    for (int i = 0; i < n; i++)
        json_decref(bodies[i]);
    cd_free(bodies);
    return rc;
}
