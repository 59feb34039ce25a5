/* Cases: the queue and the SLA report against plain SQL on the same data, in one run.
 *
 * (1) The queue. A fresh SQLite file (WAL, synchronous=FULL as the store sets) holds `open`
 *     open cases (default 100,000) opened over the last three days for 1,000 customers, spread
 *     over 10 teams, a third of them needing a skill (billing or technical), made by the cases
 *     module itself (priority, routing, SLA targets, clocks) and written in batches; and
 *     `agents` agents (default 50), each in two teams, half with both skills.
 *     (a) preview: the agents ask at once, one thread each, for their next case without taking
 *         it: cd_cases_queue_next(claim = false), what GET /v1/queue/next runs after
 *         authentication — once for a purpose that sees the whole case (the read is recorded
 *         in the ledger: a write and its fsync per call) and once for reference fields only
 *         (the choice alone); against the floor, the same threads each on its own SQLite
 *         connection running one plain indexed query per team of the agent ("the first waiting
 *         case of this team the agent has the skills for, by deadline, priority and id") and
 *         keeping the earliest.
 *     (b) take: the same with claim = true (POST /v1/queue/next: chosen and assigned in one
 *         write transaction, a ledger event, group commit); against the floor: BEGIN
 *         IMMEDIATE, the same plain queries, an UPDATE that assigns the case, COMMIT.
 *     p50 and p99 of the calls' latencies, calls per second and a check that no case was
 *     given twice.
 * (2) The SLA report. Another fresh file holds `report` cases (default 1,000,000) over the
 *     last year, lived through the same clocks as the demo history (src/cases/demo.c: answers
 *     mostly in time, some late, remedies, reopenings). cd_cases_sla_report by month and team
 *     (UTC) against the same aggregation in one raw SQL statement (counts by SUM, the 50th and
 *     90th percentiles by window functions), medians of 3 runs each, seconds.
 *
 * Usage: bench_cases [open] [agents] [report] [dir]  (defaults 100000 50 1000000 $TMPDIR)
 * Run from the source tree (reads rules/). */
#include "bench_util.h"
#include "calendar/calendar.h"
#include "cases/cases.h"
#include "cases/cases_int.h"
#include "core/core.h"
#include "crypto/crypto.h"
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY_MS (86400LL * 1000)
#define NTEAMS 10
#define NCUSTOMERS 1000
#define BATCH 500
#define MAX_AGENTS 256
#define RUNS 3

static const struct cd_actor bench_actor = {"tok_bench", "admin", "bench", "req_bench",
                                            "service",   true,    false};
/* A reader under a purpose that sees the whole case (its read is recorded in the ledger), and
 * one that sees reference fields only (nothing is recorded: the choice alone). */
static const struct cd_cases_view full_view = {CD_FIELDS_ALL, true};
static const struct cd_cases_view ref_view = {CD_FIELDS_REFERENCE, true};

struct env {
    char path[4096];
    struct cd_store *store;
    struct cd_core *core;
    struct cd_calendars *cals;
    struct cd_cases *cs;
    char (*ids)[CD_ID_MAX];
    size_t nids;
};

static void die(const char *what, enum cd_err err)
{
    fprintf(stderr, "bench_cases: %s: %s (%s)\n", what, cd_err_name(err), cd_err_detail());
    exit(1);
}

static void env_open(struct env *e, const char *dir, const char *name)
{
    uint8_t master[CD_CRYPTO_KEY_LEN];
    enum cd_err err;

    snprintf(e->path, sizeof e->path, "%s/bench-cases-%s-%d.db", dir, name, (int)getpid());
    bench_drop_db(e->path);
    cd_random_bytes(master, sizeof master);
    if ((err = cd_store_open(e->path, &e->store)) != CD_OK)
        die("store", err);
    if ((err = cd_core_open(e->store, master, &e->core)) != CD_OK)
        die("core", err);
    cd_crypto_wipe(master, sizeof master);
    if ((err = cd_calendars_new(&e->cals)) != CD_OK ||
        (err = cd_calendars_load_dir(e->cals, "rules/calendars")) != CD_OK)
        die("calendars", err);
    if ((err = cd_cases_open(e->store, e->core, e->cals, "rules", &e->cs)) != CD_OK)
        die("cases", err);
    if ((err = cd_core_load_demo(e->core, NCUSTOMERS, 0, 30)) != CD_OK)
        die("customers", err);
    if ((e->ids = cd_calloc(NCUSTOMERS, CD_ID_MAX)) == NULL)
        die("ids", CD_ERR_NOMEM);
    if ((err = cd_core_customer_ids(e->core, NCUSTOMERS, e->ids, &e->nids)) != CD_OK ||
        e->nids == 0)
        die("customer ids", err);
}

static void env_close(struct env *e, bool drop)
{
    cd_cases_close(e->cs);
    cd_core_close(e->core);
    cd_store_close(e->store);
    cd_calendars_free(e->cals);
    cd_free(e->ids);
    if (drop)
        bench_drop_db(e->path);
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

/* ---- (1) the queue ---- */

struct load {
    struct env *e;
    int from, to;
    int64_t now;
    uint64_t seed;
};

static enum cd_err open_batch(struct cd_tx *tx, void *ctx)
{
    struct load *l = ctx;
    uint64_t s = l->seed; /* a rerun of the write draws the same cases */
    enum cd_err err = CD_OK;

    for (int i = l->from; i < l->to && err == CD_OK; i++) {
        struct cd__case k;
        cd__case_init(&k);
        cd_id_new("cas", k.id);
        snprintf(k.customer_id, sizeof k.customer_id, "%s", l->e->ids[rnd(&s) % l->e->nids]);
        k.type = (int)(rnd(&s) % CT__COUNT);
        k.channel = (int)(rnd(&s) % 4);
        k.impact = (int)(rnd(&s) % CI__COUNT);
        snprintf(k.team, sizeof k.team, "team-%d", (int)(rnd(&s) % NTEAMS));
        unsigned sk = (unsigned)(rnd(&s) % 6);
        if (sk < 2)
            snprintf(k.skill, sizeof k.skill, "%s", sk ? "billing" : "technical");
        snprintf(k.source, sizeof k.source, "api");
        k.queue_len = (long)(rnd(&s) % 40);
        int64_t at = l->now - (int64_t)(rnd(&s) % (uint64_t)(3 * DAY_MS));
        if ((err = cd__case_new(l->e->cs, tx, &k, NULL, at)) == CD_OK) {
            cd__clocks_apply(&k, CE_SWEEP, 0, l->now, NULL);
            err = cd__case_store(tx, &k, false);
        }
        cd__case_free(&k);
    }
    l->seed = s;
    return err;
}

struct agent {
    char id[CD_ID_MAX];
    char teams[2][16];
    bool skills;
};

static struct agent agents[MAX_AGENTS];

static void make_agents(struct env *e, int n)
{
    for (int i = 0; i < n; i++) {
        struct agent *g = &agents[i];
        json_t *body, *out = NULL;
        bool created = false;
        enum cd_err err;
        char name[32];

        snprintf(g->teams[0], sizeof g->teams[0], "team-%d", i % NTEAMS);
        snprintf(g->teams[1], sizeof g->teams[1], "team-%d", (i * 3 + 1) % NTEAMS);
        g->skills = i % 2 == 0;
        snprintf(name, sizeof name, "Agent %d", i);
        body = json_pack("{s:s,s:[s,s],s:o}", "name", name, "teams", g->teams[0], g->teams[1],
                         "skills",
                         g->skills ? json_pack("[s,s]", "billing", "technical") : json_array());
        if ((err = cd_cases_agent_put(e->cs, &bench_actor, CD_STR_NULL, body, &out, &created)) !=
            CD_OK)
            die("agent", err);
        snprintf(g->id, sizeof g->id, "%s", json_string_value(json_object_get(out, "id")));
        json_decref(body);
        json_decref(out);
    }
}

/* What one thread measures. */
struct worker {
    struct env *e;
    int agent, calls;
    bool claim, raw;
    const struct cd_cases_view *view;
    double *lat; /* seconds, calls of them */
    char (*got)[CD_ID_MAX];
    int ngot;
    pthread_barrier_t *start;
    int failed;
};

static const char RAW_NEXT[] =
    "SELECT id, queue_rank, priority FROM cases WHERE queued = 1 AND team = ?1"
    " AND (skill IS NULL OR skill = ?2 OR skill = ?3) ORDER BY queue_rank, priority, id LIMIT 1";

/* The floor: the first case of each team of the agent by the plain indexed query, the
 * earliest of them; with claim, assigned in the same transaction. */
static int raw_next(sqlite3 *db, sqlite3_stmt *sel, sqlite3_stmt *upd, const struct agent *g,
                    bool claim, char out[CD_ID_MAX])
{
    int64_t best_rank = 0, best_prio = 0;
    int rc;

    out[0] = '\0';
    if (claim && sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return -1;
    for (int t = 0; t < 2; t++) {
        sqlite3_bind_text(sel, 1, g->teams[t], -1, SQLITE_STATIC);
        sqlite3_bind_text(sel, 2, g->skills ? "billing" : "", -1, SQLITE_STATIC);
        sqlite3_bind_text(sel, 3, g->skills ? "technical" : "", -1, SQLITE_STATIC);
        if ((rc = sqlite3_step(sel)) == SQLITE_ROW) {
            int64_t rank = sqlite3_column_int64(sel, 1), prio = sqlite3_column_int64(sel, 2);
            const char *id = (const char *)sqlite3_column_text(sel, 0);
            if (!out[0] || rank < best_rank || (rank == best_rank && prio < best_prio) ||
                (rank == best_rank && prio == best_prio && strcmp(id, out) < 0)) {
                snprintf(out, CD_ID_MAX, "%s", id);
                best_rank = rank;
                best_prio = prio;
            }
        }
        sqlite3_reset(sel);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            goto fail;
    }
    if (!claim)
        return 0;
    if (out[0]) {
        sqlite3_bind_text(upd, 1, out, -1, SQLITE_STATIC);
        sqlite3_bind_text(upd, 2, g->id, -1, SQLITE_STATIC);
        rc = sqlite3_step(upd);
        sqlite3_reset(upd);
        if (rc != SQLITE_DONE)
            goto fail;
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
        return 0;
fail:
    if (claim)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    const struct agent *g = &agents[w->agent];
    sqlite3 *db = NULL;
    sqlite3_stmt *sel = NULL, *upd = NULL;

    if (w->raw) {
        if (sqlite3_open_v2(w->e->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
                SQLITE_OK ||
            sqlite3_exec(db, "PRAGMA synchronous=FULL", NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_busy_timeout(db, 60000) != SQLITE_OK ||
            sqlite3_prepare_v2(db, RAW_NEXT, -1, &sel, NULL) != SQLITE_OK ||
            sqlite3_prepare_v2(db,
                               "UPDATE cases SET assignee = ?2, queued = 0 WHERE id = ?1"
                               " AND queued = 1",
                               -1, &upd, NULL) != SQLITE_OK) {
            w->failed = 1;
            pthread_barrier_wait(w->start);
            goto out;
        }
    }
    pthread_barrier_wait(w->start);
    for (int i = 0; i < w->calls; i++) {
        char id[CD_ID_MAX] = "";
        double t0 = bench_now_s();
        if (w->raw) {
            if (raw_next(db, sel, upd, g, w->claim, id) != 0) {
                w->failed++;
                break;
            }
        } else {
            json_t *o = NULL;
            enum cd_err err =
                cd_cases_queue_next(w->e->cs, &bench_actor, cd_str_c(g->id), w->claim, w->view, &o);
            if (err != CD_OK) {
                w->failed++;
                break;
            }
            const char *cid = json_string_value(json_object_get(json_object_get(o, "case"), "id"));
            snprintf(id, sizeof id, "%s", cid ? cid : "");
            json_decref(o);
        }
        w->lat[i] = bench_now_s() - t0;
        if (w->claim && id[0])
            snprintf(w->got[w->ngot++], CD_ID_MAX, "%s", id);
    }
out:
    sqlite3_finalize(sel);
    sqlite3_finalize(upd);
    sqlite3_close(db);
    return NULL;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

static double pct(double *v, size_t n, double p)
{
    qsort(v, n, sizeof *v, bench_cmp_double);
    size_t r = (size_t)(p * (double)n + 0.999999);
    return v[r ? r - 1 : 0];
}

/* One measured round: n agents at once, calls each. Prints p50, p99 and the rate. */
static void round_of(struct env *e, int nagents, int calls, bool claim, bool raw,
                     const struct cd_cases_view *view)
{
    struct worker *w = cd_calloc((size_t)nagents, sizeof *w);
    pthread_t *th = cd_calloc((size_t)nagents, sizeof *th);
    double *lat = cd_calloc((size_t)nagents * (size_t)calls, sizeof *lat);
    char(*got)[CD_ID_MAX] = cd_calloc((size_t)nagents * (size_t)calls, CD_ID_MAX);
    pthread_barrier_t start;
    int failed = 0;
    size_t ngot = 0, dup = 0;

    if (!w || !th || !lat || !got)
        die("round", CD_ERR_NOMEM);
    pthread_barrier_init(&start, NULL, (unsigned)nagents + 1);
    for (int i = 0; i < nagents; i++) {
        w[i] = (struct worker){e,    i, calls,  claim, raw, view, lat + (size_t)i * (size_t)calls,
                               NULL, 0, &start, 0};
        w[i].got = got + (size_t)i * (size_t)calls;
        pthread_create(&th[i], NULL, worker_main, &w[i]);
    }
    pthread_barrier_wait(&start);
    double t0 = bench_now_s();
    for (int i = 0; i < nagents; i++)
        pthread_join(th[i], NULL);
    double wall = bench_now_s() - t0;
    /* Pack the claimed ids, then look for one given twice. */
    for (int i = 0; i < nagents; i++) {
        failed += w[i].failed;
        for (int j = 0; j < w[i].ngot; j++)
            memmove(got[ngot++], w[i].got[j], CD_ID_MAX);
    }
    qsort(got, ngot, CD_ID_MAX, cmp_id);
    for (size_t i = 1; i < ngot; i++)
        dup += strcmp(got[i - 1], got[i]) == 0;
    size_t n = (size_t)nagents * (size_t)calls;
    printf("  %-7s %-24s %d agents x %d: p50 %.3f ms, p99 %.3f ms, %.0f calls/s%s",
           claim ? "take" : "preview",
           raw                  ? "raw SQL"
           : view == &full_view ? "candor (read recorded)"
                                : "candor (reference only)",
           nagents, calls, 1e3 * pct(lat, n, 0.50), 1e3 * pct(lat, n, 0.99), (double)n / wall,
           failed ? " FAILED" : "");
    if (claim)
        printf(", %zu cases taken, %zu given twice", ngot, dup);
    printf("\n");
    if (failed || dup)
        exit(1);
    pthread_barrier_destroy(&start);
    cd_free(w);
    cd_free(th);
    cd_free(lat);
    cd_free(got);
}

static void bench_queue(const char *dir, int nopen, int nagents)
{
    struct env e = {0};
    struct load l;
    enum cd_err err;

    env_open(&e, dir, "queue");
    l = (struct load){&e, 0, 0, cd_now_ms(), 0x9e3779b97f4a7c15ull};
    double t0 = bench_now_s();
    for (l.from = 0; l.from < nopen; l.from = l.to) {
        l.to = l.from + BATCH < nopen ? l.from + BATCH : nopen;
        if ((err = cd_store_write(e.store, open_batch, &l)) != CD_OK)
            die("open cases", err);
    }
    make_agents(&e, nagents);
    printf("(1) the queue: %d open cases in %d teams, %d agents (loaded in %.1f s)\n", nopen,
           NTEAMS, nagents, bench_now_s() - t0);
    /* Previews change nothing: both sides see the same queue. Takes: candor first, then the
     * floor on what is left (a few thousand of 100,000 cases fewer). */
    round_of(&e, nagents, 200, false, false, &full_view);
    round_of(&e, nagents, 200, false, false, &ref_view);
    round_of(&e, nagents, 200, false, true, NULL);
    round_of(&e, nagents, 40, true, false, &full_view);
    round_of(&e, nagents, 40, true, true, NULL);
    env_close(&e, true);
}

/* ---- (2) the SLA report ---- */

static const char RAW_REPORT[] =
    "WITH c AS (SELECT strftime('%Y-%m', created_at / 1000, 'unixepoch') AS p, team AS g,"
    "  opened_at, fr_due, fr_at, fr_breached, nr_breaches, rs_due, resolved_at, rs_breached"
    "  FROM cases WHERE created_at >= ?1 AND created_at < ?2),"
    " agg AS (SELECT p, g, count(*) AS opened, count(resolved_at) AS resolved,"
    "  sum(resolved_at IS NULL) AS open,"
    "  sum(fr_due IS NOT NULL) AS fr_m,"
    "  sum(fr_due IS NOT NULL AND fr_breached IS NOT NULL) AS fr_b,"
    "  sum(fr_due IS NOT NULL AND fr_breached IS NULL AND fr_at IS NOT NULL) AS fr_met,"
    "  sum(rs_due IS NOT NULL) AS rs_m,"
    "  sum(rs_due IS NOT NULL AND rs_breached IS NOT NULL) AS rs_b,"
    "  sum(rs_due IS NOT NULL AND rs_breached IS NULL AND resolved_at IS NOT NULL) AS rs_met,"
    "  sum(nr_breaches) AS nrb FROM c GROUP BY p, g),"
    " fr AS (SELECT p, g, fr_at - opened_at AS t,"
    "  row_number() OVER (PARTITION BY p, g ORDER BY fr_at - opened_at) AS rn,"
    "  count(*) OVER (PARTITION BY p, g) AS n FROM c WHERE fr_at IS NOT NULL),"
    " rs AS (SELECT p, g, resolved_at - opened_at AS t,"
    "  row_number() OVER (PARTITION BY p, g ORDER BY resolved_at - opened_at) AS rn,"
    "  count(*) OVER (PARTITION BY p, g) AS n FROM c WHERE resolved_at IS NOT NULL),"
    " frq AS (SELECT p, g, max(CASE WHEN rn = (n * 50 + 99) / 100 THEN t END) AS p50,"
    "  max(CASE WHEN rn = (n * 90 + 99) / 100 THEN t END) AS p90 FROM fr GROUP BY p, g),"
    " rsq AS (SELECT p, g, max(CASE WHEN rn = (n * 50 + 99) / 100 THEN t END) AS p50,"
    "  max(CASE WHEN rn = (n * 90 + 99) / 100 THEN t END) AS p90 FROM rs GROUP BY p, g)"
    " SELECT agg.*, frq.p50, frq.p90, rsq.p50, rsq.p90 FROM agg"
    " LEFT JOIN frq USING (p, g) LEFT JOIN rsq USING (p, g) ORDER BY p, g";

static double raw_report(const char *path, int64_t from, int64_t to, int *rows, long *opened)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    double t0 = bench_now_s();
    int rc;

    *rows = 0;
    *opened = 0;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_exec(db, "PRAGMA cache_size=-16384", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, RAW_REPORT, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "bench_cases: raw report: %s\n", sqlite3_errmsg(db));
        exit(1);
    }
    sqlite3_bind_int64(st, 1, from);
    sqlite3_bind_int64(st, 2, to);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        (*rows)++;
        *opened += sqlite3_column_int64(st, 2);
    }
    if (rc != SQLITE_DONE) {
        fprintf(stderr, "bench_cases: raw report: %s\n", sqlite3_errmsg(db));
        exit(1);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return bench_now_s() - t0;
}

static void bench_report(const char *dir, int ncases)
{
    struct env e = {0};
    double mod[RUNS], raw[RUNS];
    int64_t now;
    int rows = 0, raw_rows = 0;
    long opened = 0, raw_opened = 0;
    enum cd_err err;

    env_open(&e, dir, "report");
    double t0 = bench_now_s();
    if ((err = cd_cases_load_demo(e.cs, (const char(*)[CD_ID_MAX])e.ids, e.nids, ncases, 365)) !=
        CD_OK)
        die("demo history", err);
    now = cd_now_ms();
    printf("(2) the SLA report: %d cases over a year (loaded in %.1f s)\n", ncases,
           bench_now_s() - t0);
    struct cd_cases_report_query q = {now - 366 * DAY_MS, now + 1, "month", "UTC", "team"};
    for (int r = 0; r < RUNS; r++) {
        json_t *o = NULL;
        double t = bench_now_s();
        if ((err = cd_cases_sla_report(e.cs, &q, &o)) != CD_OK)
            die("report", err);
        mod[r] = bench_now_s() - t;
        json_t *row;
        size_t i;
        rows = (int)json_array_size(json_object_get(o, "rows"));
        opened = 0;
        json_array_foreach(json_object_get(o, "rows"), i, row)
        {
            opened += (long)json_integer_value(json_object_get(row, "opened"));
        }
        json_decref(o);
        raw[r] = raw_report(e.path, q.from_ms, q.to_ms, &raw_rows, &raw_opened);
    }
    printf("  report candor  by month and team: median %.2f s (%d rows, %ld cases)\n",
           bench_median(mod, RUNS), rows, opened);
    printf("  report raw SQL by month and team: median %.2f s (%d rows, %ld cases)\n",
           bench_median(raw, RUNS), raw_rows, raw_opened);
    printf("ratio report candor / raw SQL: %.2f\n",
           bench_median(mod, RUNS) / bench_median(raw, RUNS));
    if (rows != raw_rows || opened != raw_opened) {
        fprintf(stderr, "bench_cases: the two reports disagree\n");
        exit(1);
    }
    env_close(&e, true);
}

int main(int argc, char **argv)
{
    int nopen = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 100000;
    int nagents = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 50;
    int nreport = argc > 3 ? (int)strtol(argv[3], NULL, 10) : 1000000;
    const char *dir = argc > 4 ? argv[4] : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

    if (nopen < 1 || nagents < 1 || nagents > MAX_AGENTS || nreport < 0) {
        fprintf(stderr, "usage: bench_cases [open] [agents (1..%d)] [report] [dir]\n", MAX_AGENTS);
        return 2;
    }
    if (cd_crypto_init() != CD_OK)
        die("crypto", CD_ERR_INTERNAL);
    bench_queue(dir, nopen, nagents);
    if (nreport > 0)
        bench_report(dir, nreport);
    return 0;
}
