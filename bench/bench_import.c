/* Import benchmark: `candor import` of an NDJSON file against a raw bulk load of the same rows,
 * in the same run and on the same database server.
 *
 * The file: ROWS interactions of ROWS/100 customers (each customer's record first, with an
 * email identity), bodies of 560 bytes, as `candor export` writes them.
 * (a) import: cd_transfer_import_run over the file into a fresh database: the whole check
 *     pass, then every record through core (customers created with sealed identities,
 *     interactions sealed per customer, one ledger entry each, an Idempotency-Key each), with
 *     interactions queued to share group commits;
 * (b) baseline, SQLite: the interaction rows with sealed-size blobs inserted with bare sqlite3
 *     calls, one prepared statement, 1000 rows per durable COMMIT (WAL, synchronous=FULL), on
 *     the Candor schema;
 * (c) baseline, PostgreSQL (when a URL is given): the same rows by one COPY FROM STDIN in one
 *     durable transaction, on the Candor schema.
 * Rates count interaction rows per second; each figure is the median of the runs, and the
 * ratio import / baseline is printed for each backend.
 *
 * Usage: bench_import ROWS RUNS DIR [PG_URL]
 * PG_URL names a database the bench may empty (its public schema is dropped before each run). */
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bench_util.h"
#include "core/core.h"
#include "crypto/crypto.h"
#include "store/store.h"
#include "transfer/transfer.h"

#define BODY_PLAIN 560
#define BODY_SEALED 601 /* 1 version + 24 nonce + 560 + 16 tag */
#define RAW_BATCH 1000
#define MAX_RUNS 15

static const char INSERT_SQL[] =
    "INSERT INTO interactions(id, customer_id, channel, direction, thread_id, occurred_at,"
    " created_at, purpose, subject, body, metadata)"
    " VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)";

static uint8_t body_blob[BODY_SEALED], subject_blob[81], meta_blob[101];

static void report(void *ctx, uint64_t line, enum cd_err err, const char *detail)
{
    fprintf(stderr, "bench_import: line %llu: %s\n", (unsigned long long)line, detail);
}

/* Writes the NDJSON file of rows interactions. */
static int make_file(const char *path, int rows)
{
    FILE *f = fopen(path, "w");
    char body[BODY_PLAIN + 1];
    int customers = rows / 100 > 0 ? rows / 100 : 1;

    if (f == NULL)
        return -1;
    for (int c = 0; c < customers; c++) {
        fprintf(f,
                "{\"type\":\"customer\",\"id\":\"c-%d\",\"display_name\":\"Customer %d\","
                "\"identities\":[{\"type\":\"email\",\"value\":\"c%d@example.com\"}],"
                "\"jurisdiction\":\"EU\"}\n",
                c, c, c);
        for (int i = c; i < rows; i += customers) {
            bench_fill_text(body, BODY_PLAIN, (unsigned)i);
            fprintf(f,
                    "{\"type\":\"interaction\",\"id\":\"i-%d\",\"customer_id\":\"c-%d\","
                    "\"channel\":\"email\",\"direction\":\"%s\",\"occurred_at\":"
                    "\"2025-0%d-1%dT10:%02d:%02dZ\",\"thread_id\":\"thr-%d\",\"subject\":"
                    "\"Order %d\",\"body\":\"%s\",\"metadata\":{\"queue\":\"support\"}}\n",
                    i, c, i % 3 ? "inbound" : "outbound", 1 + i % 9, i % 10, (i / 60) % 60,
                    i % 60, i / 4, i, body);
        }
    }
    return fclose(f) == 0 ? 0 : -1;
}

/* (a) */
static double run_import(const char *url, const char *file, int rows)
{
    struct cd_store *s = NULL;
    struct cd_core *core = NULL;
    uint8_t master[32];
    struct cd_transfer_import im = {CD_TRANSFER_NDJSON, NULL, report, NULL, NULL};
    struct cd_transfer_counts n;
    static const struct cd_actor actor = {"cli", "admin", "bench_import", NULL, NULL, false,
                                          false};
    double t0, t1 = 0;
    FILE *in = fopen(file, "r");

    cd_random_bytes(master, sizeof master);
    if (in == NULL || cd_store_open(url, &s) != CD_OK || cd_core_open(s, master, &core) != CD_OK) {
        fprintf(stderr, "bench_import: %s\n", cd_err_detail());
        goto out;
    }
    t0 = bench_now_s();
    uint64_t bad = 0;
    if (cd_transfer_check(&im, in, &bad) != CD_OK || bad ||
        cd_transfer_import_run(core, &actor, &im, in, &n) != CD_OK || n.failed) {
        fprintf(stderr, "bench_import: import failed: %s\n", cd_err_detail());
        goto out;
    }
    t1 = bench_now_s() - t0;
out:
    cd_core_close(core);
    cd_store_close(s);
    if (in)
        fclose(in);
    return t1 > 0 ? rows / t1 : -1;
}

/* (b) */
static double run_raw_sqlite(const char *path, int rows)
{
    struct cd_store *s = NULL;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    double t0, t1;
    char id[32], cus[32], thr[32];

    bench_drop_db(path);
    if (cd_store_open(path, &s) != CD_OK) /* the Candor schema and its indexes */
        return -1;
    cd_store_close(s);
    if (sqlite3_open(path, &db) != SQLITE_OK ||
        sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL", NULL, NULL, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(db, INSERT_SQL, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "bench_import: raw: %s\n", sqlite3_errmsg(db));
        sqlite3_close(db);
        return -1;
    }
    t0 = bench_now_s();
    for (int i = 0; i < rows; i++) {
        if (i % RAW_BATCH == 0)
            sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        snprintf(id, sizeof id, "int-%d", i);
        snprintf(cus, sizeof cus, "cus-%d", i % (rows / 100 + 1));
        snprintf(thr, sizeof thr, "thr-%d", i / 4);
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, cus, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, "email", -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, i % 3 ? "inbound" : "outbound", -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, thr, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 6, 1735725600000 + i);
        sqlite3_bind_int64(st, 7, 1735725600000 + i);
        sqlite3_bind_text(st, 8, "service", -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 9, subject_blob, sizeof subject_blob, SQLITE_STATIC);
        sqlite3_bind_blob(st, 10, body_blob, sizeof body_blob, SQLITE_STATIC);
        sqlite3_bind_blob(st, 11, meta_blob, sizeof meta_blob, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            fprintf(stderr, "bench_import: raw insert: %s\n", sqlite3_errmsg(db));
        sqlite3_reset(st);
        if (i % RAW_BATCH == RAW_BATCH - 1 || i == rows - 1)
            sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    }
    t1 = bench_now_s();
    sqlite3_finalize(st);
    sqlite3_close(db);
    bench_drop_db(path);
    return rows / (t1 - t0);
}

/* Empties the PostgreSQL database and gives it the Candor schema. */
static int pg_fresh(const char *url)
{
    PGconn *c = PQconnectdb(url);
    struct cd_store *s = NULL;
    int rc = -1;

    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, "SET client_min_messages = warning; DROP SCHEMA public CASCADE; "
                                 "CREATE SCHEMA public");
        rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;
        if (rc)
            fprintf(stderr, "bench_import: %s", PQerrorMessage(c));
        PQclear(r);
    }
    PQfinish(c);
    if (rc == 0 && cd_store_open(url, &s) != CD_OK)
        rc = -1;
    cd_store_close(s);
    return rc;
}

static void hex(struct cd_buf *b, const uint8_t *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";

    cd_buf_puts(b, "\\\\x");
    for (size_t i = 0; i < n; i++) {
        cd_buf_putc(b, digits[p[i] >> 4]);
        cd_buf_putc(b, digits[p[i] & 15]);
    }
}

/* (c) */
static double run_copy(const char *url, int rows)
{
    PGconn *c = NULL;
    PGresult *r = NULL;
    struct cd_buf line = CD_BUF_INIT(CD_BUF_UNBOUNDED);
    double t0, t1 = 0;

    if (pg_fresh(url) != 0)
        return -1;
    c = PQconnectdb(url);
    t0 = bench_now_s();
    r = PQexec(c, "BEGIN");
    PQclear(r);
    r = PQexec(c, "COPY interactions(id, customer_id, channel, direction, thread_id, "
                  "occurred_at, created_at, purpose, subject, body, metadata) FROM STDIN");
    if (PQresultStatus(r) != PGRES_COPY_IN) {
        fprintf(stderr, "bench_import: COPY: %s", PQerrorMessage(c));
        goto out;
    }
    for (int i = 0; i < rows; i++) {
        line.len = 0;
        cd_buf_printf(&line, "int-%d\tcus-%d\temail\t%s\tthr-%d\t%lld\t%lld\tservice\t", i,
                      i % (rows / 100 + 1), i % 3 ? "inbound" : "outbound", i / 4,
                      1735725600000LL + i, 1735725600000LL + i);
        hex(&line, subject_blob, sizeof subject_blob);
        cd_buf_putc(&line, '\t');
        hex(&line, body_blob, sizeof body_blob);
        cd_buf_putc(&line, '\t');
        hex(&line, meta_blob, sizeof meta_blob);
        cd_buf_putc(&line, '\n');
        if (PQputCopyData(c, line.p, (int)line.len) != 1) {
            fprintf(stderr, "bench_import: COPY data: %s", PQerrorMessage(c));
            goto out;
        }
    }
    PQputCopyEnd(c, NULL);
    PQclear(r);
    r = PQgetResult(c);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "bench_import: COPY end: %s", PQerrorMessage(c));
        goto out;
    }
    PQclear(r);
    r = PQexec(c, "COMMIT");
    if (PQresultStatus(r) == PGRES_COMMAND_OK)
        t1 = bench_now_s() - t0;
out:
    PQclear(r);
    PQfinish(c);
    cd_buf_free(&line);
    return t1 > 0 ? rows / t1 : -1;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: bench_import ROWS RUNS DIR [PG_URL]\n");
        return 2;
    }
    int rows = (int)strtol(argv[1], NULL, 10), runs = (int)strtol(argv[2], NULL, 10);
    const char *dir = argv[3], *pg = argc > 4 ? argv[4] : NULL;
    char file[CD_PATH_MAX], db[CD_PATH_MAX];
    double imp[MAX_RUNS], raw[MAX_RUNS], pimp[MAX_RUNS], copy[MAX_RUNS];

    if (rows < 100 || runs < 1 || runs > MAX_RUNS) {
        fprintf(stderr, "bench_import: ROWS >= 100, RUNS 1 to %d\n", MAX_RUNS);
        return 2;
    }
    cd_json_init();
    cd_log_set_level(CD_LOG_WARN);
    cd_random_bytes(body_blob, sizeof body_blob);
    cd_random_bytes(subject_blob, sizeof subject_blob);
    cd_random_bytes(meta_blob, sizeof meta_blob);
    snprintf(file, sizeof file, "%s/bench-import.ndjson", dir);
    snprintf(db, sizeof db, "%s/bench-import.db", dir);
    if (make_file(file, rows) != 0) {
        fprintf(stderr, "bench_import: cannot write %s\n", file);
        return 1;
    }
    printf("bench_import: %d interactions of %d customers, %d runs\n", rows, rows / 100, runs);
    for (int r = 0; r < runs; r++) {
        bench_drop_db(db);
        imp[r] = run_import(db, file, rows);
        bench_drop_db(db);
        raw[r] = run_raw_sqlite(db, rows);
        printf("  run %d: sqlite import %.0f rows/s, raw batched inserts %.0f rows/s\n", r + 1,
               imp[r], raw[r]);
        if (pg) {
            pimp[r] = pg_fresh(pg) == 0 ? run_import(pg, file, rows) : -1;
            copy[r] = run_copy(pg, rows);
            printf("  run %d: postgres import %.0f rows/s, COPY %.0f rows/s\n", r + 1, pimp[r],
                   copy[r]);
        }
    }
    double mi = bench_median(imp, runs), mr = bench_median(raw, runs);
    printf("median sqlite: import %.0f rows/s, raw batched inserts %.0f rows/s, ratio %.3f\n", mi,
           mr, mi / mr);
    if (pg) {
        double pi = bench_median(pimp, runs), pc = bench_median(copy, runs);
        printf("median postgres: import %.0f rows/s, COPY %.0f rows/s, ratio %.3f\n", pi, pc,
               pi / pc);
    }
    unlink(file);
    return 0;
}
