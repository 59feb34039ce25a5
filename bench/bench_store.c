/* Store benchmark: what Candor's write path costs against raw SQLite on the same rows.
 *
 * (a) raw:   the interaction rows inserted with bare sqlite3 calls, one prepared statement,
 *            1000 rows per durable COMMIT (WAL, synchronous=FULL), on the Candor schema;
 * (b) core:  the same rows through cd_core_interaction_ingest from T threads at once, so the
 *            store's writer batches them (group commit): identity resolution (customers
 *            created and reused), per-customer sealing, the audit chain, 1 in 4 with an
 *            idempotency key; exactly what an HTTP request does after JSON parsing;
 * (c) store: a bare INSERT of the same row through cd_store_write from T threads: group
 *            commit without the domain, to tell store overhead from domain overhead.
 * (d) core async and (e) store async: (b) and (c) through the asynchronous forms the HTTP
 *            server uses (cd_core_interaction_ingest_start/_finish, cd_store_write_async):
 *            ASYNC_THREADS submitting threads, each keeping up to ASYNC_WINDOW writes in
 *            flight, so no thread sleeps per write.
 * Every run uses a fresh database; each figure is the median of the runs.
 *
 * Usage: bench_store [rows] [runs] [threads] [dir]   (defaults 30000 5 64 $TMPDIR)
 *        bench_store --preload DATA_DIR N            (N interactions for one customer in an
 *                                                     initialised data directory; prints the
 *                                                     customer id, for the timeline bench) */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/core.h"
#include "crypto/crypto.h"
#include "store/store.h"
#include "bench_util.h"

#define BODY_PLAIN 560  /* sealed: 1 version + 24 nonce + 560 + 16 tag = 601 bytes */
#define BODY_SEALED 601
#define SUBJECT_LEN 40
#define META_LEN 60
#define RAW_BATCH 1000
#define MAX_RUNS 15
#define ASYNC_THREADS 4
#define ASYNC_WINDOW 64

static const char *const channels[] = {"email", "sms", "phone", "chat", "social",
                                       "app", "push", "post", "in_person"};

/* One row as raw SQLite and the bare store insert see it: sizes as Candor stores them. */
struct row {
    char id[CD_ID_MAX];
    char customer_id[CD_ID_MAX];
    const char *channel;
    const char *direction;
    char thread_id[24];
    int64_t occurred_at;
};

static uint8_t body_blob[BODY_SEALED], subject_blob[SUBJECT_LEN + 41], meta_blob[META_LEN + 41];
static char body_text[BODY_PLAIN + 1];

static void make_rows(struct row *rows, int n, int customers)
{
    char (*cus)[CD_ID_MAX] = cd_calloc((size_t)customers, CD_ID_MAX);
    int64_t base = cd_now_ms() - 180LL * 86400000;

    for (int i = 0; i < customers; i++)
        cd_id_new("cus", cus[i]);
    for (int i = 0; i < n; i++) {
        cd_id_new("int", rows[i].id);
        memcpy(rows[i].customer_id, cus[i % customers], CD_ID_MAX);
        rows[i].channel = channels[i % 9];
        rows[i].direction = i % 3 ? "inbound" : "outbound";
        snprintf(rows[i].thread_id, sizeof rows[i].thread_id, "thr-%d", i / 4);
        rows[i].occurred_at = base + (int64_t)i * 517;
    }
    cd_free(cus);
}

static int fresh_db(const char *dir, const char *name, char *path, size_t n)
{
    struct cd_store *s = NULL;

    snprintf(path, n, "%s/%s.db", dir, name);
    unlink(path);
    char side[CD_PATH_MAX];
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
    /* The Candor schema, so raw SQLite maintains the same indexes. */
    if (cd_store_open(path, &s) != CD_OK) {
        fprintf(stderr, "bench_store: cannot create %s: %s\n", path, cd_err_detail());
        return -1;
    }
    cd_store_close(s);
    return 0;
}

static const char INSERT_SQL[] =
    "INSERT INTO interactions(id, customer_id, channel, direction, thread_id, occurred_at,"
    " created_at, purpose, subject, body, metadata, guard)"
    " VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)";

/* ---- (a) raw SQLite ---- */

static double run_raw(const char *dir, const struct row *rows, int n)
{
    char path[CD_PATH_MAX];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    double t0, t1;

    if (fresh_db(dir, "raw", path, sizeof path) != 0)
        return -1;
    if (sqlite3_open(path, &db) != SQLITE_OK ||
        sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL", NULL, NULL, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(db, INSERT_SQL, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "bench_store: raw: %s\n", sqlite3_errmsg(db));
        sqlite3_close(db);
        return -1;
    }
    t0 = bench_now_s();
    for (int i = 0; i < n; i++) {
        const struct row *r = &rows[i];
        if (i % RAW_BATCH == 0)
            sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, r->customer_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, r->channel, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, r->direction, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, r->thread_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 6, r->occurred_at);
        sqlite3_bind_int64(st, 7, r->occurred_at);
        sqlite3_bind_text(st, 8, "service", -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 9, subject_blob, sizeof subject_blob, SQLITE_STATIC);
        sqlite3_bind_blob(st, 10, body_blob, sizeof body_blob, SQLITE_STATIC);
        sqlite3_bind_blob(st, 11, meta_blob, sizeof meta_blob, SQLITE_STATIC);
        sqlite3_bind_null(st, 12);
        if (sqlite3_step(st) != SQLITE_DONE) {
            fprintf(stderr, "bench_store: raw insert: %s\n", sqlite3_errmsg(db));
            break;
        }
        sqlite3_reset(st);
        if (i % RAW_BATCH == RAW_BATCH - 1 || i == n - 1)
            if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
                fprintf(stderr, "bench_store: raw commit: %s\n", sqlite3_errmsg(db));
    }
    t1 = bench_now_s();
    sqlite3_finalize(st);
    sqlite3_close(db);
    bench_drop_db(path);
    return n / (t1 - t0);
}

/* ---- (b) core and (c) store, from T threads ---- */

struct worker {
    pthread_t t;
    int first, count;
    const struct row *rows;
    json_t **bodies;
    struct cd_core *core;
    struct cd_store *store;
    int failed;
    /* asynchronous modes: completions handed back by the writer thread */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int inflight, done_ok, done_failed;
    struct cd_core_ingest *finished[ASYNC_WINDOW];
    int nfinished;
};

static void print_stats(const char *what, struct cd_store *s)
{
    struct cd_store_stats st;

    cd_store_get_stats(s, &st);
    if (st.commits)
        printf("  %-6s commits %llu, mean batch %.1f, mean COMMIT %.2f ms\n", what,
               (unsigned long long)st.commits, (double)st.writes / (double)st.commits,
               (double)st.commit_ns_total / 1e6 / (double)st.commits);
}

static void *core_worker(void *arg)
{
    struct worker *w = arg;
    struct cd_actor a = {.token_id = "tok_bench", .role = "integration", .name = "bench"};
    struct cd_buf out = CD_BUF_INIT(CD_CORE_ANSWER_MAX);

    for (int i = w->first; i < w->first + w->count; i++) {
        char req[CD_ID_MAX], key[32];
        struct cd_idem idem = {"tok_bench POST /v1/interactions", CD_STR_NULL, {0}};
        json_t *findings = NULL;
        bool replayed = false;

        cd_id_new("req", req);
        a.request_id = req;
        if (i % 4 == 0) {
            int n = snprintf(key, sizeof key, "k-%d", i);
            idem.key = (struct cd_str){key, (size_t)n};
            cd_random_bytes(idem.request_hash, sizeof idem.request_hash);
        }
        if (cd_core_interaction_ingest(w->core, &a, w->bodies[i], i % 4 == 0 ? &idem : NULL,
                                       CD_FIELDS_ALL, &out, &findings, &replayed) != CD_OK) {
            if (w->failed++ == 0)
                fprintf(stderr, "bench_store: ingest: %s\n", cd_err_detail());
        }
        json_decref(findings);
        cd_buf_reset(&out);
    }
    cd_buf_free(&out);
    return NULL;
}

static enum cd_err bare_insert(struct cd_tx *tx, void *ctx)
{
    const struct row *r = ctx;
    struct cd_val p[] = {CD_VCSTR(r->id),
                         CD_VCSTR(r->customer_id),
                         CD_VCSTR(r->channel),
                         CD_VCSTR(r->direction),
                         CD_VCSTR(r->thread_id),
                         CD_VINT(r->occurred_at),
                         CD_VINT(r->occurred_at),
                         CD_VCSTR("service"),
                         CD_VBLOB(subject_blob, sizeof subject_blob),
                         CD_VBLOB(body_blob, sizeof body_blob),
                         CD_VBLOB(meta_blob, sizeof meta_blob),
                         CD_VNULL};

    return cd_tx_exec(tx, INSERT_SQL, p, 12, NULL, NULL, NULL);
}

static void *store_worker(void *arg)
{
    struct worker *w = arg;

    for (int i = w->first; i < w->first + w->count; i++)
        if (cd_store_write(w->store, bare_insert, (void *)&w->rows[i]) != CD_OK &&
            w->failed++ == 0)
            fprintf(stderr, "bench_store: write: %s\n", cd_err_detail());
    return NULL;
}

static json_t *make_body(int i, int customers, const char *local)
{
    char email[96], subject[SUBJECT_LEN + 1], thread[24], when[CD_TIME_STRLEN];

    snprintf(email, sizeof email, "%s%d@example.com", local, i % customers);
    bench_fill_text(subject, SUBJECT_LEN, (unsigned)i);
    snprintf(thread, sizeof thread, "thr-%d", i / 4);
    cd_time_format(cd_now_ms() - 180LL * 86400000 + (int64_t)i * 517, when);
    return json_pack("{s:{s:s,s:s},s:s,s:s,s:s,s:s,s:s,s:s,s:{s:s,s:i,s:s}}", "identity", "type",
                     "email", "value", email, "channel", channels[i % 9], "direction",
                     i % 3 ? "inbound" : "outbound", "occurred_at", when, "thread_id", thread,
                     "subject", subject, "body", body_text, "metadata", "source", "bench",
                     "seq", i, "locale", "en-GB");
}

/* ---- asynchronous modes ---- */

static void store_done(void *ctx, enum cd_err err, const char *detail)
{
    struct worker *w = ctx;

    pthread_mutex_lock(&w->mu);
    if (err != CD_OK && w->done_failed++ == 0)
        fprintf(stderr, "bench_store: async write: %s\n", detail);
    w->inflight--;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void *store_async_worker(void *arg)
{
    struct worker *w = arg;

    for (int i = w->first; i < w->first + w->count; i++) {
        pthread_mutex_lock(&w->mu);
        while (w->inflight >= ASYNC_WINDOW)
            pthread_cond_wait(&w->cv, &w->mu);
        w->inflight++;
        pthread_mutex_unlock(&w->mu);
        if (cd_store_write_async(w->store, bare_insert, (void *)&w->rows[i], store_done, w) !=
            CD_OK) {
            pthread_mutex_lock(&w->mu);
            w->inflight--;
            w->done_failed++;
            pthread_mutex_unlock(&w->mu);
        }
    }
    pthread_mutex_lock(&w->mu);
    while (w->inflight > 0)
        pthread_cond_wait(&w->cv, &w->mu);
    w->failed = w->done_failed;
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* The writer thread only hands the operation back; the submitting thread finishes it. */
static void core_done(void *ctx, struct cd_core_ingest *op)
{
    struct worker *w = ctx;

    pthread_mutex_lock(&w->mu);
    w->finished[w->nfinished++] = op;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Finishes what completed; with wait, first waits until fewer than `below` are in flight. */
static void core_drain(struct worker *w, int below)
{
    struct cd_core_ingest *ops[ASYNC_WINDOW];
    int n;

    pthread_mutex_lock(&w->mu);
    while (w->inflight >= below && w->nfinished == 0)
        pthread_cond_wait(&w->cv, &w->mu);
    n = w->nfinished;
    memcpy(ops, w->finished, (size_t)n * sizeof *ops);
    w->nfinished = 0;
    w->inflight -= n;
    pthread_mutex_unlock(&w->mu);
    for (int k = 0; k < n; k++) {
        struct cd_buf out = CD_BUF_INIT(CD_CORE_ANSWER_MAX);
        bool replayed = false;
        char id[CD_ID_MAX];
        if (cd_core_interaction_ingest_finish(ops[k], &out, &replayed, id) != CD_OK &&
            w->failed++ == 0)
            fprintf(stderr, "bench_store: async ingest: %s\n", cd_err_detail());
        cd_buf_free(&out);
    }
}

static void *core_async_worker(void *arg)
{
    struct worker *w = arg;
    /* Each operation keeps pointers to its actor and idempotency key until it is finished;
     * operations finish in submission order and at most ASYNC_WINDOW are open, so a slot is
     * free again ASYNC_WINDOW * 2 submissions later. */
    static _Thread_local char req[ASYNC_WINDOW * 2][CD_ID_MAX], key[ASYNC_WINDOW * 2][32];
    static _Thread_local struct cd_actor actors[ASYNC_WINDOW * 2];

    for (int i = w->first; i < w->first + w->count; i++) {
        int slot = i % (ASYNC_WINDOW * 2);
        struct cd_idem idem = {"tok_bench POST /v1/interactions", CD_STR_NULL, {0}};
        json_t *out = NULL;
        struct cd_actor *a = &actors[slot];

        core_drain(w, ASYNC_WINDOW);
        cd_id_new("req", req[slot]);
        *a = (struct cd_actor){.token_id = "tok_bench", .role = "integration", .name = "bench",
                               .request_id = req[slot]};
        if (i % 4 == 0) {
            int n = snprintf(key[slot], sizeof key[slot], "k-%d", i);
            idem.key = (struct cd_str){key[slot], (size_t)n};
            cd_random_bytes(idem.request_hash, sizeof idem.request_hash);
        }
        pthread_mutex_lock(&w->mu);
        w->inflight++;
        pthread_mutex_unlock(&w->mu);
        if (cd_core_interaction_ingest_start(w->core, a, w->bodies[i],
                                             i % 4 == 0 ? &idem : NULL, CD_FIELDS_ALL, core_done,
                                             w, &out) != CD_OK) {
            if (w->failed++ == 0)
                fprintf(stderr, "bench_store: async ingest: %s\n", cd_err_detail());
            pthread_mutex_lock(&w->mu);
            w->inflight--;
            pthread_mutex_unlock(&w->mu);
        }
        json_decref(out);
    }
    for (;;) {
        pthread_mutex_lock(&w->mu);
        bool open = w->inflight > 0;
        pthread_mutex_unlock(&w->mu);
        if (!open)
            break;
        core_drain(w, 1);
    }
    return NULL;
}

/* which: 'b' core, 'c' store, 'd' core async, 'e' store async. Returns rows/s or -1. */
static double run_threads(char which, const char *dir, const struct row *rows, json_t **bodies,
                          int n, int nthreads)
{
    char path[CD_PATH_MAX];
    struct cd_store *s = NULL;
    struct cd_core *core = NULL;
    struct worker *w = cd_calloc((size_t)nthreads, sizeof *w);
    uint8_t master[CD_CRYPTO_KEY_LEN];
    double t0, t1, rate = -1;
    int failed = 0;

    bool with_core = which == 'b' || which == 'd';
    static const char *const names[] = {"core", "store", "core-a", "store-a"};
    const char *name = names[which - 'b'];
    void *(*fn)(void *) = which == 'b'   ? core_worker
                          : which == 'c' ? store_worker
                          : which == 'd' ? core_async_worker
                                         : store_async_worker;

    if (which == 'd' || which == 'e')
        nthreads = ASYNC_THREADS;
    if (w == NULL || fresh_db(dir, name, path, sizeof path) != 0)
        goto out;
    if (cd_store_open(path, &s) != CD_OK)
        goto out;
    cd_random_bytes(master, sizeof master);
    if (with_core && cd_core_open(s, master, &core) != CD_OK)
        goto out;
    int per = n / nthreads, extra = n % nthreads, first = 0;
    for (int i = 0; i < nthreads; i++) {
        w[i].first = first;
        w[i].count = per + (i < extra);
        first += w[i].count;
        w[i].rows = rows;
        w[i].bodies = bodies;
        w[i].core = core;
        w[i].store = s;
        pthread_mutex_init(&w[i].mu, NULL);
        pthread_cond_init(&w[i].cv, NULL);
    }
    t0 = bench_now_s();
    for (int i = 0; i < nthreads; i++)
        pthread_create(&w[i].t, NULL, fn, &w[i]);
    for (int i = 0; i < nthreads; i++) {
        pthread_join(w[i].t, NULL);
        failed += w[i].failed;
    }
    t1 = bench_now_s();
    print_stats(name, s);
    if (failed)
        fprintf(stderr, "bench_store: %d writes failed\n", failed);
    rate = (n - failed) / (t1 - t0);
out:
    cd_core_close(core);
    cd_store_close(s);
    if (path[0])
        bench_drop_db(path);
    cd_free(w);
    return rate;
}

/* ---- preload for the timeline bench ---- */

static int preload(const char *data_dir, int n)
{
    uint8_t master[CD_CRYPTO_KEY_LEN];
    char path[CD_PATH_MAX];
    struct cd_store *s = NULL;
    struct cd_core *core = NULL;
    int nthreads = 32, rc = 1;
    json_t **bodies = cd_calloc((size_t)n, sizeof *bodies);
    struct worker *w = cd_calloc((size_t)nthreads, sizeof *w);

    snprintf(path, sizeof path, "%s/candor.db", data_dir);
    if (bodies == NULL || w == NULL ||
        cd_crypto_master_key_load(data_dir, master, NULL) != CD_OK ||
        cd_store_open(path, &s) != CD_OK || cd_core_open(s, master, &core) != CD_OK) {
        fprintf(stderr, "bench_store: preload: %s\n", cd_err_detail());
        goto out;
    }
    for (int i = 0; i < n; i++)
        bodies[i] = make_body(i, 1, "timeline.bench+");
    int per = n / nthreads, extra = n % nthreads, first = 0;
    for (int i = 0; i < nthreads; i++) {
        w[i] = (struct worker){.first = first, .count = per + (i < extra), .bodies = bodies,
                               .core = core};
        first += w[i].count;
        pthread_create(&w[i].t, NULL, core_worker, &w[i]);
    }
    rc = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(w[i].t, NULL);
        rc |= w[i].failed != 0;
    }
    /* The customer id, for the URL. */
    json_t *found = NULL;
    struct cd_actor a = {.token_id = "tok_bench", .role = "admin", .name = "bench",
                         .request_id = "req_preload", .purpose = "service"};
    if (cd_core_customer_find(core, &a, CD_STR("email"), CD_STR_NULL,
                              CD_STR("timeline.bench+0@example.com"), CD_FIELDS_REFERENCE,
                              &found) != CD_OK) {
        fprintf(stderr, "bench_store: preload: %s\n", cd_err_detail());
        rc = 1;
    } else {
        printf("%s\n", json_string_value(json_object_get(found, "id")));
    }
    json_decref(found);
out:
    for (int i = 0; bodies && i < n; i++)
        json_decref(bodies[i]);
    cd_free(bodies);
    cd_free(w);
    cd_core_close(core);
    cd_store_close(s);
    cd_crypto_wipe(master, sizeof master);
    return rc;
}

int main(int argc, char **argv)
{
    cd_json_init();
    if (cd_crypto_init() != CD_OK)
        return 1;
    cd_log_set_level(CD_LOG_WARN);
    bench_fill_text(body_text, BODY_PLAIN, 7);
    cd_random_bytes(body_blob, sizeof body_blob);
    cd_random_bytes(subject_blob, sizeof subject_blob);
    cd_random_bytes(meta_blob, sizeof meta_blob);
    if (argc >= 2 && strcmp(argv[1], "--preload") == 0) {
        if (argc != 4) {
            fprintf(stderr, "usage: bench_store --preload DATA_DIR N\n");
            return 2;
        }
        return preload(argv[2], (int)strtol(argv[3], NULL, 10));
    }
    int n = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 30000;
    int runs = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 5;
    int nthreads = argc > 3 ? (int)strtol(argv[3], NULL, 10) : 64;
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    const char *dir = argc > 4 ? argv[4] : tmp;
    int customers = n / 10 > 0 ? n / 10 : 1;
    double raw[MAX_RUNS], core[MAX_RUNS], store[MAX_RUNS], core_a[MAX_RUNS], store_a[MAX_RUNS];

    if (n < 1 || runs < 1 || runs > MAX_RUNS || nthreads < 1 || nthreads > 1024) {
        fprintf(stderr, "usage: bench_store [rows] [runs 1-%d] [threads] [dir]\n", MAX_RUNS);
        return 2;
    }
    struct row *rows = cd_calloc((size_t)n, sizeof *rows);
    json_t **bodies = cd_calloc((size_t)n, sizeof *bodies);
    if (rows == NULL || bodies == NULL)
        return 1;
    make_rows(rows, n, customers);
    for (int i = 0; i < n; i++)
        if ((bodies[i] = make_body(i, customers, "customer")) == NULL)
            return 1;
    printf("bench_store: %d rows (%d customers, %d-byte sealed body), %d runs, %d threads, "
           "dir %s, sqlite %s\n",
           n, customers, BODY_SEALED, runs, nthreads, dir, sqlite3_libversion());
    for (int r = 0; r < runs; r++) {
        raw[r] = run_raw(dir, rows, n);
        core[r] = run_threads('b', dir, rows, bodies, n, nthreads);
        store[r] = run_threads('c', dir, rows, bodies, n, nthreads);
        core_a[r] = run_threads('d', dir, rows, bodies, n, nthreads);
        store_a[r] = run_threads('e', dir, rows, bodies, n, nthreads);
        printf("  run %d: raw %.0f rows/s, core %.0f rows/s, store %.0f rows/s, core async %.0f "
               "rows/s, store async %.0f rows/s\n",
               r + 1, raw[r], core[r], store[r], core_a[r], store_a[r]);
        fflush(stdout);
    }
    double mr = bench_median(raw, runs), mc = bench_median(core, runs), ms = bench_median(store, runs);
    double mca = bench_median(core_a, runs), msa = bench_median(store_a, runs);
    printf("bench_store: median raw_sqlite_batched=%.0f rows/s core_ingest=%.0f rows/s "
           "store_write=%.0f rows/s core_async=%.0f rows/s store_async=%.0f rows/s "
           "core/raw=%.1f%% store/raw=%.1f%% core_async/raw=%.1f%% store_async/raw=%.1f%% "
           "(target >= 25%%)\n",
           mr, mc, ms, mca, msa, 100 * mc / mr, 100 * ms / mr, 100 * mca / mr, 100 * msa / mr);
    for (int i = 0; i < n; i++)
        json_decref(bodies[i]);
    cd_free(bodies);
    cd_free(rows);
    return mr > 0 && mc > 0 && ms > 0 && mca > 0 && msa > 0 ? 0 : 1;
}
