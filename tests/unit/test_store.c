/* Unit tests for src/store, on both backends: migrations (and that the two backends' lists
 * make the same schema), group commit, savepoint isolation, values of every type, faults.
 * The SQLite tests use a file in /tmp; the PostgreSQL tests run when $CANDOR_TEST_PG_DIR names
 * a running test cluster (tests/e2e/pgcluster.py; `make test` starts one), each in a new
 * database, and are skipped with a message otherwise. */
#include <libpq-fe.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "unit.h"
#include "store/store.h"
#include "store/store_int.h"

static char path[512];    /* what cd_store_open is given: a file, or a postgresql:// URL */
static char dbname[64];   /* PostgreSQL: the test's database */
static bool on_pg;

/* ---- the PostgreSQL test cluster ---------------------------------------------------------- */

/* Runs sql on database db of the test cluster; returns the first value of the first row (a
 * static buffer) or NULL on error. */
static const char *pg_admin(const char *db, const char *sql)
{
    static char value[256];
    char conninfo[512];
    const char *dir = getenv("CANDOR_TEST_PG_DIR");
    PGconn *c;
    PGresult *r;
    bool ok;

    if (dir == NULL)
        return NULL;
    snprintf(conninfo, sizeof conninfo, "host=%s user=candor dbname=%s", dir, db);
    c = PQconnectdb(conninfo);
    r = PQexec(c, sql);
    ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "pg_admin: %s", PQerrorMessage(c));
    snprintf(value, sizeof value, "%s",
             ok && PQntuples(r) > 0 && PQnfields(r) > 0 ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    PQfinish(c);
    return ok ? value : NULL;
}

static int setup_sqlite(void **state)
{
    on_pg = false;
    snprintf(path, sizeof path, "/tmp/candor-test-store-%d.db", (int)getpid());
    unlink(path);
    return 0;
}

static int teardown_sqlite(void **state)
{
    unit_db_remove(path);
    return 0;
}

static int setup_pg(void **state)
{
    static int n;
    char sql[256];

    on_pg = true;
    path[0] = '\0';
    if (getenv("CANDOR_TEST_PG_DIR") == NULL)
        return 0; /* each test skips */
    snprintf(dbname, sizeof dbname, "unit_store_%d_%d", (int)getpid(), ++n);
    /* A locale whose order is not bytewise ('a' before 'B'), as a production database's often
     * is: the schema's text columns must order as SQLite's do all the same. */
    snprintf(sql, sizeof sql,
             "CREATE DATABASE %s TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en'", dbname);
    if (pg_admin("postgres", sql) == NULL)
        return -1;
    snprintf(path, sizeof path, "postgresql:///%s?host=%s&user=candor", dbname,
             getenv("CANDOR_TEST_PG_DIR"));
    return 0;
}

static int teardown_pg(void **state)
{
    char sql[128];

    if (path[0] == '\0')
        return 0;
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", dbname);
    return pg_admin("postgres", sql) ? 0 : -1;
}

/* In every test: skips on PostgreSQL when there is no test cluster. */
static void need_backend(void)
{
    if (on_pg && path[0] == '\0') {
        print_message("no PostgreSQL test cluster ($CANDOR_TEST_PG_DIR): skipped\n");
        skip();
    }
}

/* Runs sql (which changes something) on the test's database behind the store's back. */
static void raw_sql(const char *sql)
{
    if (on_pg) {
        assert_non_null(pg_admin(dbname, sql));
        return;
    }
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

struct ins { const char *id; bool fail_after; };

static enum cd_err insert_token(struct cd_tx *tx, void *ctx)
{
    struct ins *in = ctx;
    struct cd_val p[5] = {CD_VCSTR(in->id), CD_VBLOB(in->id, strlen(in->id)), CD_VCSTR("agent"),
                          CD_VCSTR("n"), CD_VINT(1)};
    enum cd_err err = cd_tx_exec(tx, "INSERT INTO tokens(id,hash,role,name,created_at) "
                                     "VALUES($1,$2,$3,$4,$5)", p, 5, NULL, NULL, NULL);
    if (err == CD_OK && in->fail_after)
        return cd_err_set(CD_ERR_INVALID, "refused after insert");
    return err;
}

static enum cd_err count_tokens(struct cd_tx *tx, void *ctx)
{
    return cd_tx_int(tx, "SELECT count(*) FROM tokens", NULL, 0, ctx);
}

static void failed_write_leaves_nothing(void **state)
{
    need_backend();
    struct cd_store *s = NULL;
    struct ins a = {"a", false}, b = {"b", true};
    int64_t n = -1;

    assert_int_equal(cd_store_open(path, &s), CD_OK);
    assert_int_equal(cd_store_write(s, insert_token, &a), CD_OK);
    assert_int_equal(cd_store_write(s, insert_token, &b), CD_ERR_INVALID);
    assert_string_equal(cd_err_detail(), "refused after insert"); /* carried across threads */
    assert_int_equal(cd_store_write(s, insert_token, &a), CD_ERR_CONFLICT);
    assert_int_equal(cd_store_read(s, count_tokens, &n), CD_OK);
    assert_int_equal(n, 1);
    cd_store_fault_nth_exec(1);
    struct ins c = {"c", false};
    assert_int_equal(cd_store_write(s, insert_token, &c), CD_ERR_STORE);
    assert_int_equal(cd_store_read(s, count_tokens, &n), CD_OK);
    assert_int_equal(n, 1);
    assert_int_equal(cd_store_integrity_check(s), CD_OK);
    assert_true(cd_store_ping(s));
    cd_store_close(s);
}

struct worker { struct cd_store *s; int base; int n; int errors; };

static void *writer_thread(void *arg)
{
    struct worker *w = arg;
    char id[32];
    for (int i = 0; i < w->n; i++) {
        snprintf(id, sizeof id, "t%d-%d", w->base, i);
        struct ins in = {id, false};
        if (cd_store_write(w->s, insert_token, &in) != CD_OK)
            w->errors++;
    }
    return NULL;
}

static void concurrent_writes_are_batched(void **state)
{
    need_backend();
    struct cd_store *s = NULL;
    struct worker w[16];
    pthread_t th[16];
    int64_t n = 0;
    struct cd_store_stats st;

    assert_int_equal(cd_store_open(path, &s), CD_OK);
    for (int i = 0; i < 16; i++) {
        w[i] = (struct worker){s, i, 100, 0};
        pthread_create(&th[i], NULL, writer_thread, &w[i]);
    }
    for (int i = 0; i < 16; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].errors, 0);
    }
    assert_int_equal(cd_store_read(s, count_tokens, &n), CD_OK);
    assert_int_equal(n, 1600);
    cd_store_get_stats(s, &st);
    assert_int_equal(st.writes, 1600);
    assert_true(st.commits < 1600); /* several writes shared a commit */
    cd_store_close(s);
}

/* Asynchronous writes: the callback hears of each write once, after it is durable or failed;
 * a failing write leaves nothing, and a batch mixes waiting and asynchronous writers. */
struct async_done {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls, failures;
    char last_detail[128];
};

static void on_async_done(void *ctx, enum cd_err err, const char *detail)
{
    struct async_done *d = ctx;

    pthread_mutex_lock(&d->mu);
    d->calls++;
    if (err != CD_OK) {
        d->failures++;
        snprintf(d->last_detail, sizeof d->last_detail, "%s", detail);
    }
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

static void async_writes_complete_once(void **state)
{
    need_backend();
    struct cd_store *s = NULL;
    struct async_done d = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, ""};
    static char ids[200][16];
    static struct ins ins[200];
    int64_t n = 0;

    assert_int_equal(cd_store_open(path, &s), CD_OK);
    for (int i = 0; i < 200; i++) {
        snprintf(ids[i], sizeof ids[i], "async%d", i);
        ins[i] = (struct ins){ids[i], i % 50 == 7}; /* four of them refuse after inserting */
        assert_int_equal(cd_store_write_async(s, insert_token, &ins[i], on_async_done, &d), CD_OK);
        if (i == 100) { /* a waiting writer in the middle of the queue */
            struct ins w = {"waiting", false};
            assert_int_equal(cd_store_write(s, insert_token, &w), CD_OK);
        }
    }
    pthread_mutex_lock(&d.mu);
    while (d.calls < 200)
        pthread_cond_wait(&d.cv, &d.mu);
    pthread_mutex_unlock(&d.mu);
    assert_int_equal(d.failures, 4);
    assert_string_equal(d.last_detail, "refused after insert");
    assert_int_equal(cd_store_read(s, count_tokens, &n), CD_OK);
    assert_int_equal(n, 197); /* 196 asynchronous + the waiting one */
    cd_store_close(s);
    assert_int_equal(d.calls, 200); /* and never again */
}

static void newer_schema_is_refused(void **state)
{
    struct cd_store *s = NULL;

    need_backend();
    assert_int_equal(cd_store_open(path, &s), CD_OK);
    cd_store_close(s);
    raw_sql("INSERT INTO schema_version VALUES(999, 0)");
    assert_int_equal(cd_store_open(path, &s), CD_ERR_SCHEMA);
    assert_non_null(strstr(cd_err_detail(), "newer candor"));
    /* Nothing was changed by the refused open: it still says 999. */
    raw_sql("DELETE FROM schema_version WHERE version = 999");
    assert_int_equal(cd_store_open(path, &s), CD_OK);
    cd_store_close(s);
}

/* Two tokens per write: a copy that is a snapshot holds an even number. */
static enum cd_err insert_pair(struct cd_tx *tx, void *ctx)
{
    long *n = ctx;
    char id[32];
    enum cd_err err;

    for (int k = 0; k < 2; k++) {
        snprintf(id, sizeof id, "pair-%ld-%d", *n, k);
        struct ins in = {id, false};
        if ((err = insert_token(tx, &in)) != CD_OK)
            return err;
    }
    return CD_OK;
}

struct pairs {
    struct cd_store *s;
    atomic_bool stop;
    long n;
};

static void *pair_writer(void *arg)
{
    struct pairs *p = arg;

    while (!atomic_load(&p->stop)) {
        p->n++;
        assert_int_equal(cd_store_write(p->s, insert_pair, &p->n), CD_OK);
    }
    return NULL;
}

static void count_progress(void *ctx, uint64_t done, uint64_t total)
{
    int *calls = ctx;
    assert_true(done <= total && total > 0);
    (*calls)++;
}

static void backup_is_a_snapshot_made_while_writing(void **state)
{
    need_backend();
    struct cd_store *s = NULL, *copy = NULL;
    struct pairs p = {.n = 0};
    struct cd_store_backup_info info = {0, 0};
    char out[600], partial[620];
    int64_t n = -1, total = -1;
    int calls = 0;
    struct stat st;
    pthread_t t;

    snprintf(out, sizeof out, "%s.backup", path);
    snprintf(partial, sizeof partial, "%s.partial", out);
    unlink(out);
    assert_int_equal(cd_store_open(path, &s), CD_OK);
    for (int i = 0; i < 200; i++) {
        p.n++;
        assert_int_equal(cd_store_write(s, insert_pair, &p.n), CD_OK);
    }
    p.s = s;
    atomic_init(&p.stop, false);
    assert_int_equal(pthread_create(&t, NULL, pair_writer, &p), 0);
    assert_int_equal(cd_store_backup(s, out, count_progress, &calls, &info), CD_OK);
    atomic_store(&p.stop, true);
    pthread_join(t, NULL);
    assert_true(calls >= 1);
    assert_int_equal(stat(out, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal((uint64_t)st.st_size, info.bytes);
    assert_true(info.schema_version > 0);
    assert_int_not_equal(access(partial, F_OK), 0);
    /* Never over an existing file, and never beside a leftover partial copy. */
    assert_int_equal(cd_store_backup(s, out, NULL, NULL, NULL), CD_ERR_CONFLICT);
    assert_non_null(strstr(cd_err_detail(), "exists"));
    assert_int_equal(cd_store_read(s, count_tokens, &total), CD_OK);
    cd_store_close(s);
    assert_int_equal(cd_store_open(out, &copy), CD_OK);
    assert_int_equal(cd_store_integrity_check(copy), CD_OK);
    assert_int_equal(cd_store_read(copy, count_tokens, &n), CD_OK);
    cd_store_close(copy);
    assert_true(n >= 400 && n <= total);
    assert_int_equal(n % 2, 0); /* no write half in it */
    unlink(out);
    FILE *f = fopen(partial, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(cd_store_open(path, &s), CD_OK);
    assert_int_equal(cd_store_backup(s, out, NULL, NULL, NULL), CD_ERR_CONFLICT);
    assert_non_null(strstr(cd_err_detail(), ".partial exists"));
    assert_int_equal(access(partial, F_OK), 0); /* not ours to remove */
    unlink(partial);
    assert_int_equal(cd_store_backup(s, "/nonexistent-dir/x.db", NULL, NULL, NULL), CD_ERR_IO);
    assert_int_not_equal(access(out, F_OK), 0);
    cd_store_close(s);
    char side[640];
    snprintf(side, sizeof side, "%s-wal", out);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", out);
    unlink(side);
}

static mode_t mode_of(const char *suffix)
{
    char p[600];
    struct stat st;

    snprintf(p, sizeof p, "%s%s", path, suffix);
    assert_int_equal(stat(p, &st), 0);
    return st.st_mode & 0777;
}

static void files_are_the_owners_alone(void **state)
{
    need_backend();
    struct cd_store *s = NULL;
    struct ins in = {"tok_mode", false};
    mode_t old = umask(022); /* SQLite alone would make the files 0644 under this umask */

    assert_int_equal(cd_store_open(path, &s), CD_OK);
    assert_int_equal(cd_store_write(s, insert_token, &in), CD_OK);
    assert_int_equal(mode_of(""), 0600);
    assert_int_equal(mode_of("-wal"), 0600);
    assert_int_equal(mode_of("-shm"), 0600);
    cd_store_close(s);
    /* A database made with wider modes (an older candor, a copy) is made private on open. */
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(cd_store_open(path, &s), CD_OK);
    assert_int_equal(mode_of(""), 0600);
    cd_store_close(s);
    umask(old);
}

/* ---- values, late failures, large results: both backends ---------------------------------- */

struct token_row {
    int rows;
    struct cd_val v[7];
    uint8_t hash[16];
    char id[16], name[32];
};

static enum cd_err token_row_fn(void *ctx, const struct cd_val *cols, size_t n)
{
    struct token_row *r = ctx;

    assert_int_equal(n, 4);
    r->rows++;
    memcpy(r->v, cols, 4 * sizeof *cols);
    assert_int_equal(cols[0].type, CD_VAL_TEXT);
    snprintf(r->id, sizeof r->id, "%.*s", (int)cols[0].len, (const char *)cols[0].p);
    assert_int_equal(cols[1].type, CD_VAL_BLOB);
    assert_true(cols[1].len <= sizeof r->hash);
    memcpy(r->hash, cols[1].p, cols[1].len);
    assert_int_equal(cols[2].type, CD_VAL_TEXT);
    snprintf(r->name, sizeof r->name, "%.*s", (int)cols[2].len, (const char *)cols[2].p);
    return CD_OK;
}

static const uint8_t odd_hash[9] = {0, 1, 0xff, 0, 0x80, 'x', 0, 0x7f, 0};
static const char utf8_name[] = "Zo\xc3\xab \xe2\x9c\x93"; /* "Zoë ✓" */

static enum cd_err insert_odd_token(struct cd_tx *tx, void *ctx)
{
    struct cd_val p[] = {CD_VCSTR("odd"), CD_VBLOB(odd_hash, sizeof odd_hash),
                         CD_VCSTR("agent"), CD_VCSTR(utf8_name), CD_VINT(INT64_C(1) << 40),
                         CD_VNULL};
    return cd_tx_exec(tx, "INSERT INTO tokens(id, hash, role, name, created_at, revoked_at)"
                          " VALUES($1,$2,$3,$4,$5,$6)",
                      p, 6, NULL, NULL, NULL);
}

static enum cd_err read_odd_token(struct cd_tx *tx, void *ctx)
{
    struct token_row *r = ctx;
    struct cd_val p[] = {CD_VCSTR("odd")};
    int64_t n = -1;
    enum cd_err err;

    if ((err = cd_tx_exec(tx, "SELECT id, hash, name, created_at FROM tokens WHERE id = $1", p, 1,
                          token_row_fn, r, NULL)) != CD_OK)
        return err;
    assert_int_equal(r->v[3].type, CD_VAL_INT);
    assert_int_equal(r->v[3].i, INT64_C(1) << 40);
    /* A parameter typed by a literal beside it, one the text never names ($1), an integer. */
    struct cd_val q[] = {CD_VCSTR("unused"), CD_VCSTR(""), CD_VINT(1)};
    if ((err = cd_tx_int(tx, "SELECT count(*) FROM tokens WHERE ($2 = '' OR role = $2)"
                             " AND created_at >= $3",
                         q, 3, &n)) != CD_OK)
        return err;
    assert_int_equal(n, 1);
    struct cd_val q2[] = {CD_VCSTR("unused"), CD_VCSTR("agent"), CD_VINT(INT64_C(1) << 41)};
    if ((err = cd_tx_int(tx, "SELECT count(*) FROM tokens WHERE ($2 = '' OR role = $2)"
                             " AND created_at >= $3",
                         q2, 3, &n)) != CD_OK)
        return err;
    assert_int_equal(n, 0);
    /* A boolean is an integer, as SQLite gives it. */
    if ((err = cd_tx_int(tx, "SELECT EXISTS(SELECT 1 FROM tokens WHERE revoked_at IS NULL)",
                         NULL, 0, &n)) != CD_OK)
        return err;
    assert_int_equal(n, 1);
    return cd_tx_int(tx, "SELECT 1", NULL, 0, &n);
}

static void values_keep_their_type_and_bytes(void **state)
{
    struct cd_store *s = NULL;
    struct token_row r;

    need_backend();
    memset(&r, 0, sizeof r);
    assert_int_equal(cd_store_open(path, &s), CD_OK);
    assert_int_equal(cd_store_write(s, insert_odd_token, NULL), CD_OK);
    assert_int_equal(cd_store_read(s, read_odd_token, &r), CD_OK);
    assert_int_equal(r.rows, 1);
    assert_string_equal(r.id, "odd");
    assert_int_equal(r.v[1].len, sizeof odd_hash);
    assert_memory_equal(r.hash, odd_hash, sizeof odd_hash);
    assert_string_equal(r.name, utf8_name);
    cd_store_close(s);
}

/* A write whose statement fails only when its batch is committed (on PostgreSQL an insert is
 * sent without waiting for its reply) fails alone: every other write of the batch commits. */
static void a_late_failure_fails_its_write_alone(void **state)
{
    struct cd_store *s = NULL;
    struct async_done d = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, ""};
    static char ids[100][24];
    static struct ins ins[100];
    struct ins first = {"late-0", false};
    int64_t n = 0;

    need_backend();
    assert_int_equal(cd_store_open(path, &s), CD_OK);
    assert_int_equal(cd_store_write(s, insert_token, &first), CD_OK);
    for (int i = 0; i < 100; i++) {
        /* Every tenth inserts an id that exists: a constraint violation, no read before it. */
        snprintf(ids[i], sizeof ids[i], "late-%d", i % 10 == 5 ? 0 : i + 1);
        ins[i] = (struct ins){ids[i], false};
        assert_int_equal(cd_store_write_async(s, insert_token, &ins[i], on_async_done, &d), CD_OK);
    }
    pthread_mutex_lock(&d.mu);
    while (d.calls < 100)
        pthread_cond_wait(&d.cv, &d.mu);
    pthread_mutex_unlock(&d.mu);
    assert_int_equal(d.failures, 10);
    assert_non_null(strstr(d.last_detail, "constraint"));
    assert_int_equal(cd_store_read(s, count_tokens, &n), CD_OK);
    assert_int_equal(n, 91);
    /* The same, synchronously: the error reaches the caller, nothing of the write remains. */
    struct ins dup = {"late-1", false};
    assert_int_equal(cd_store_write(s, insert_token, &dup), CD_ERR_CONFLICT);
    assert_int_equal(cd_store_read(s, count_tokens, &n), CD_OK);
    assert_int_equal(n, 91);
    cd_store_close(s);
}

static enum cd_err insert_many(struct cd_tx *tx, void *ctx)
{
    char id[32];
    enum cd_err err;

    (void)ctx;
    for (int i = 0; i < 3000; i++) {
        /* Upper and lower case: the order is bytewise on both backends. */
        snprintf(id, sizeof id, "%c%05d", i % 2 ? 'a' : 'B', i);
        struct ins in = {id, false};
        if ((err = insert_token(tx, &in)) != CD_OK)
            return err;
    }
    return CD_OK;
}

struct scan {
    int rows;
    char last[32];
    bool ordered;
};

static enum cd_err scan_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct scan *sc = ctx;
    char id[32];

    snprintf(id, sizeof id, "%.*s", (int)cols[0].len, (const char *)cols[0].p);
    if (sc->rows++ && strcmp(sc->last, id) >= 0)
        sc->ordered = false;
    snprintf(sc->last, sizeof sc->last, "%s", id);
    return CD_OK;
}

static enum cd_err scan_all(struct cd_tx *tx, void *ctx)
{
    return cd_tx_exec(tx, "SELECT id FROM tokens ORDER BY id", NULL, 0, scan_row, ctx, NULL);
}

static void a_large_ordered_scan_is_complete_and_bytewise(void **state)
{
    struct cd_store *s = NULL;
    struct scan sc = {0, "", true};

    need_backend();
    assert_int_equal(cd_store_open(path, &s), CD_OK);
    assert_int_equal(cd_store_write(s, insert_many, NULL), CD_OK);
    assert_int_equal(cd_store_read(s, scan_all, &sc), CD_OK);
    assert_int_equal(sc.rows, 3000);
    assert_true(sc.ordered);
    assert_string_equal(sc.last, "a02999"); /* 'B' (0x42) sorts before 'a' (0x61) */
    cd_store_close(s);
}

/* ---- the two migration lists ---------------------------------------------------------------- */

static void every_sqlite_migration_has_its_postgresql_twin(void **state)
{
    if (cd__store_pg_migrations_count != cd__store_sqlite_migrations_count)
        fail_msg("src/store/schema_sqlite.c has %d migrations and src/store/schema_pg.c %d: "
                 "every SQLite migration needs its PostgreSQL twin with the same number",
                 cd__store_sqlite_migrations_count, cd__store_pg_migrations_count);
}

static enum cd_err collect_line(void *ctx, const struct cd_val *cols, size_t n)
{
    struct cd_buf *b = ctx;
    enum cd_err err = cd_buf_append(b, cols[0].p, cols[0].len);

    return err == CD_OK ? cd_buf_putc(b, '\n') : err;
}

struct shape {
    const char *const *sql; /* columns, unique constraints, indexes */
    struct cd_buf out;
};

static enum cd_err describe_fn(struct cd_tx *tx, void *ctx)
{
    struct shape *sh = ctx;
    enum cd_err err = CD_OK;

    for (int i = 0; i < 3 && err == CD_OK; i++)
        err = cd_tx_exec(tx, sh->sql[i], NULL, 0, collect_line, &sh->out, NULL);
    return err;
}

/* Every table with its columns (type, NOT NULL, primary key), every unique constraint and every
 * index (table, columns, partial or not), one per line in bytewise order. */
static const char *const sqlite_shape[] = {
    "SELECT m.name || '.' || p.name || ' ' || CASE upper(p.type) WHEN 'INTEGER' THEN 'int'"
    " WHEN 'TEXT' THEN 'text' WHEN 'BLOB' THEN 'blob' ELSE lower(p.type) END"
    " || CASE WHEN p.\"notnull\" OR p.pk THEN ' not null' ELSE '' END"
    " || CASE WHEN p.pk THEN ' pk' ELSE '' END"
    " FROM sqlite_master m JOIN pragma_table_info(m.name) p"
    " WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY 1",
    "SELECT 'unique ' || m.name || '(' || (SELECT group_concat(name, ',') FROM"
    " (SELECT name FROM pragma_index_info(il.name) ORDER BY seqno)) || ')'"
    " FROM sqlite_master m JOIN pragma_index_list(m.name) il"
    " WHERE m.type = 'table' AND il.origin = 'u' ORDER BY 1",
    "SELECT 'index ' || m.name || ' ON ' || m.tbl_name || '(' || (SELECT group_concat(name, ',')"
    " FROM (SELECT name FROM pragma_index_info(m.name) ORDER BY seqno)) || ')'"
    " || CASE WHEN (SELECT partial FROM pragma_index_list(m.tbl_name) WHERE name = m.name)"
    " THEN ' partial' ELSE '' END"
    " FROM sqlite_master m WHERE m.type = 'index' AND m.sql IS NOT NULL ORDER BY 1",
};

static const char *const pg_shape[] = {
    "SELECT (c.relname || '.' || a.attname || ' ' || CASE t.typname WHEN 'int8' THEN 'int'"
    " WHEN 'bytea' THEN 'blob' ELSE t.typname END"
    " || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END"
    " || CASE WHEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary"
    " AND a.attnum = ANY(i.indkey)) THEN ' pk' ELSE '' END) COLLATE \"C\" AS l"
    " FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0"
    " AND NOT a.attisdropped JOIN pg_type t ON t.oid = a.atttypid"
    " WHERE c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace"
    " ORDER BY l",
    "SELECT ('unique ' || r.relname || '(' || string_agg(a.attname, ',' ORDER BY k.ord) || ')')"
    " COLLATE \"C\" AS l"
    " FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid"
    " CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY k(attnum, ord)"
    " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum"
    " WHERE c.contype = 'u' AND c.connamespace = current_schema()::regnamespace"
    " GROUP BY c.oid, r.relname ORDER BY l",
    "SELECT ('index ' || c.relname || ' ON ' || t.relname || '(' || (SELECT string_agg(a.attname,"
    " ',' ORDER BY k.ord) FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)"
    " JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum) || ')'"
    " || CASE WHEN i.indpred IS NOT NULL THEN ' partial' ELSE '' END) COLLATE \"C\" AS l"
    " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid"
    " WHERE c.relnamespace = current_schema()::regnamespace"
    " AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)"
    " ORDER BY l",
};

static void both_backends_migrate_to_the_same_schema(void **state)
{
    struct cd_store *pg = NULL, *sq = NULL;
    struct shape a = {sqlite_shape, CD_BUF_INIT(1 << 20)}, b = {pg_shape, CD_BUF_INIT(1 << 20)};
    char sqlite_path[600];

    need_backend();
    snprintf(sqlite_path, sizeof sqlite_path, "/tmp/candor-test-store-shape-%d.db", (int)getpid());
    unlink(sqlite_path);
    assert_int_equal(cd_store_open(sqlite_path, &sq), CD_OK);
    assert_int_equal(cd_store_open(path, &pg), CD_OK);
    enum cd_err ea = cd_store_read(sq, describe_fn, &a), eb = cd_store_read(pg, describe_fn, &b);
    if (ea != CD_OK || eb != CD_OK)
        print_error("describing the schema: %s\n", cd_err_detail());
    assert_int_equal(ea, CD_OK);
    assert_int_equal(eb, CD_OK);
    assert_non_null(strstr(a.out.p, "interactions.body blob\n"));
    assert_non_null(strstr(a.out.p, "index audit_access_by_customer ON "
                                    "audit_events(customer_id,seq) partial\n"));
    assert_string_equal(b.out.p, a.out.p);
    cd_buf_free(&a.out);
    cd_buf_free(&b.out);
    cd_store_close(sq);
    cd_store_close(pg);
    unlink(sqlite_path);
}

/* ---- PostgreSQL only ------------------------------------------------------------------------- */

static void pg_backup_names_pg_dump_and_writes_nothing(void **state)
{
    struct cd_store *s = NULL;
    char out[300];

    need_backend();
    snprintf(out, sizeof out, "/tmp/candor-test-store-pgbackup-%d.db", (int)getpid());
    assert_int_equal(cd_store_open(path, &s), CD_OK);
    assert_int_equal(cd_store_backup(s, out, NULL, NULL, NULL), CD_ERR_UNSUPPORTED);
    assert_non_null(strstr(cd_err_detail(), "pg_dump"));
    assert_int_not_equal(access(out, F_OK), 0);
    strncat(out, ".partial", sizeof out - strlen(out) - 1);
    assert_int_not_equal(access(out, F_OK), 0);
    cd_store_close(s);
}

static void pg_connections_come_back_after_the_server_ends_them(void **state)
{
    struct cd_store *s = NULL;
    struct ins a = {"before", false}, b = {"after", false}, c = {"again", false};
    int64_t n = 0;
    char sql[256];

    need_backend();
    assert_int_equal(cd_store_open(path, &s), CD_OK);
    assert_int_equal(cd_store_write(s, insert_token, &a), CD_OK);
    assert_int_equal(cd_store_read(s, count_tokens, &n), CD_OK);
    /* What a server restart does to every connection: terminated by the server. */
    snprintf(sql, sizeof sql, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                              " WHERE datname = '%s'", dbname);
    assert_non_null(pg_admin("postgres", sql));
    usleep(100 * 1000);
    /* The first statement of a transaction runs again on a new connection. */
    assert_int_equal(cd_store_write(s, insert_token, &b), CD_OK);
    assert_int_equal(cd_store_read(s, count_tokens, &n), CD_OK);
    assert_int_equal(n, 2);
    assert_non_null(pg_admin("postgres", sql));
    usleep(100 * 1000);
    assert_int_equal(cd_store_read(s, count_tokens, &n), CD_OK);
    assert_int_equal(cd_store_write(s, insert_token, &c), CD_OK);
    assert_int_equal(cd_store_read(s, count_tokens, &n), CD_OK);
    assert_int_equal(n, 3);
    assert_true(cd_store_ping(s));
    cd_store_close(s);
}

struct locker {
    PGconn *c;
};

static void pg_a_statement_timeout_is_busy_and_passes(void **state)
{
    struct cd_store_options o = {300};
    struct cd_store *s = NULL;
    struct ins a = {"blocked", false}, b = {"free", false};
    int64_t n = 0;
    char conninfo[512];

    need_backend();
    assert_int_equal(cd_store_open_with(path, &o, &s), CD_OK);
    snprintf(conninfo, sizeof conninfo, "host=%s user=candor dbname=%s",
             getenv("CANDOR_TEST_PG_DIR"), dbname);
    PGconn *lock = PQconnectdb(conninfo);
    assert_int_equal(PQstatus(lock), CONNECTION_OK);
    PQclear(PQexec(lock, "BEGIN"));
    PGresult *r = PQexec(lock, "LOCK TABLE tokens IN ACCESS EXCLUSIVE MODE");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    assert_int_equal(cd_store_write(s, insert_token, &a), CD_ERR_BUSY);
    assert_non_null(strstr(cd_err_detail(), "statement timeout"));
    assert_int_equal(cd_store_read(s, count_tokens, &n), CD_ERR_BUSY);
    PQclear(PQexec(lock, "ROLLBACK"));
    PQfinish(lock);
    assert_int_equal(cd_store_write(s, insert_token, &b), CD_OK);
    assert_int_equal(cd_store_read(s, count_tokens, &n), CD_OK);
    assert_int_equal(n, 1);
    cd_store_close(s);
}

static enum cd_err insert_bad_text(struct cd_tx *tx, void *ctx)
{
    struct ins in = {ctx, false};
    return insert_token(tx, &in);
}

static void pg_text_that_is_not_utf8_is_invalid(void **state)
{
    struct cd_store *s = NULL;
    int64_t n = -1;

    need_backend();
    assert_int_equal(cd_store_open(path, &s), CD_OK);
    assert_int_equal(cd_store_write(s, insert_bad_text, "bad\xff\xfe"), CD_ERR_INVALID);
    assert_non_null(strstr(cd_err_detail(), "UTF-8"));
    assert_int_equal(cd_store_write(s, insert_bad_text, "good"), CD_OK);
    assert_int_equal(cd_store_read(s, count_tokens, &n), CD_OK);
    assert_int_equal(n, 1);
    cd_store_close(s);
}

static void pg_integrity_check_uses_amcheck_when_installed(void **state)
{
    struct cd_store *s = NULL;

    need_backend();
    assert_int_equal(cd_store_open(path, &s), CD_OK);
    assert_int_equal(cd_store_integrity_check(s), CD_OK);
    assert_non_null(pg_admin(dbname, "CREATE EXTENSION amcheck"));
    assert_int_equal(cd_store_integrity_check(s), CD_OK);
    assert_int_equal(cd_store_checkpoint(s), CD_OK);
    cd_store_close(s);
}

static void pg_refuses_a_database_that_is_not_utf8(void **state)
{
    struct cd_store *s = NULL;
    char sql[160], url[600];

    need_backend();
    snprintf(sql, sizeof sql, "CREATE DATABASE %s_latin1 TEMPLATE template0 ENCODING 'LATIN1'",
             dbname);
    assert_non_null(pg_admin("postgres", sql));
    snprintf(url, sizeof url, "postgresql:///%s_latin1?host=%s&user=candor", dbname,
             getenv("CANDOR_TEST_PG_DIR"));
    assert_int_equal(cd_store_open(url, &s), CD_ERR_UNSUPPORTED);
    assert_non_null(strstr(cd_err_detail(), "UTF8"));
    snprintf(sql, sizeof sql, "DROP DATABASE %s_latin1", dbname);
    assert_non_null(pg_admin("postgres", sql));
    /* And a server that is not there: a clear error, nothing else. */
    assert_int_equal(cd_store_open("postgresql:///x?host=/nonexistent&connect_timeout=1", &s),
                     CD_ERR_STORE);
    assert_non_null(strstr(cd_err_detail(), "cannot connect to PostgreSQL"));
}

/* ---- several servers on one database (PostgreSQL) ---- */

struct heard {
    pthread_mutex_t mu;
    char topics[16][32]; /* "(resync)" for NULL */
    int n;
};

static void hear(void *ctx, const char *topic)
{
    struct heard *h = ctx;

    pthread_mutex_lock(&h->mu);
    if (h->n < 16)
        snprintf(h->topics[h->n++], sizeof h->topics[0], "%s", topic ? topic : "(resync)");
    pthread_mutex_unlock(&h->mu);
}

static bool heard(struct heard *h, const char *topic)
{
    bool found = false;

    pthread_mutex_lock(&h->mu);
    for (int i = 0; i < h->n; i++)
        found = found || strcmp(h->topics[i], topic) == 0;
    pthread_mutex_unlock(&h->mu);
    return found;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

struct announce { const char *id, *topic; bool fail_after; };

static enum cd_err insert_and_announce(struct cd_tx *tx, void *ctx)
{
    struct announce *a = ctx;
    struct ins in = {a->id, a->fail_after};
    enum cd_err err = cd_tx_notify(tx, a->topic);

    return err != CD_OK ? err : insert_token(tx, &in);
}

/* A topic announced in a write reaches the feeds of other stores on the database once the write
 * commits, in commit order, and never when the write failed; a feed starts with a resync, and
 * its freshness mark follows the clock. */
static void pg_announcements_reach_other_stores_after_commit_only(void **state)
{
    need_backend();
    struct cd_store *a = NULL, *b = NULL;
    struct heard h = {PTHREAD_MUTEX_INITIALIZER, {{0}}, 0};
    struct announce one = {"one", "t.one", false}, two = {"two", "t.two", true},
                    three = {"three", "t.three", false};

    assert_int_equal(cd_store_open(path, &a), CD_OK);
    assert_int_equal(cd_store_open(path, &b), CD_OK);
    assert_true(cd_store_shared(a));
    assert_int_equal(cd_store_feed_start(b, hear, &h), CD_OK);
    assert_int_equal(cd_store_feed_start(b, hear, &h), CD_ERR_INVALID);
    /* No feed (a), or no other server seen (b): nothing to wait for. */
    assert_int_equal(cd_store_feed_fresh_ms(a), INT64_MAX);
    assert_int_equal(cd_store_feed_fresh_ms(b), INT64_MAX);
    assert_int_equal(cd_store_write(a, insert_and_announce, &one), CD_OK);
    assert_int_equal(cd_store_write(a, insert_and_announce, &two), CD_ERR_INVALID);
    assert_int_equal(cd_store_write(a, insert_and_announce, &three), CD_OK);
    for (int i = 0; i < 200 && !heard(&h, "t.three"); i++)
        sleep_ms(10);
    pthread_mutex_lock(&h.mu);
    assert_int_equal(h.n, 3);
    assert_string_equal(h.topics[0], "(resync)");
    assert_string_equal(h.topics[1], "t.one");
    assert_string_equal(h.topics[2], "t.three");
    pthread_mutex_unlock(&h.mu);
    cd_store_close(b);
    cd_store_close(a);
}

/* Of two stores with a feed, one holds the lease; when it closes, the other takes it. */
static void pg_one_lease_among_stores(void **state)
{
    need_backend();
    struct cd_store *a = NULL, *b = NULL;
    struct heard h = {PTHREAD_MUTEX_INITIALIZER, {{0}}, 0};

    assert_int_equal(cd_store_open(path, &a), CD_OK);
    assert_int_equal(cd_store_open(path, &b), CD_OK);
    assert_true(cd_store_lease_held(a)); /* no feed yet: nothing to share it with */
    assert_int_equal(cd_store_feed_start(a, hear, &h), CD_OK);
    assert_int_equal(cd_store_feed_start(b, hear, &h), CD_OK);
    sleep_ms(1200);
    assert_true(cd_store_lease_held(a) != cd_store_lease_held(b));
    /* Each has seen the other: their freshness marks count, and follow the clock. */
    assert_true(cd_store_feed_fresh_ms(a) != INT64_MAX && cd_store_feed_fresh_ms(b) != INT64_MAX);
    assert_true(cd_now_ms() - cd_store_feed_fresh_ms(a) <= CD_STORE_FEED_BOUND_MS);
    assert_true(cd_now_ms() - cd_store_feed_fresh_ms(b) <= CD_STORE_FEED_BOUND_MS);
    struct cd_store *holder = cd_store_lease_held(a) ? a : b, *other = holder == a ? b : a;
    cd_store_close(holder);
    for (int i = 0; i < 300 && !cd_store_lease_held(other); i++)
        sleep_ms(10);
    assert_true(cd_store_lease_held(other));
    cd_store_close(other);
}

/* A write that reads, then inserts what it read (the pattern of an Idempotency-Key check): the
 * writers of two stores on one database take turns, so none inserts what the other just did. */
static enum cd_err insert_next(struct cd_tx *tx, void *ctx)
{
    int64_t n = 0;
    char id[32];
    enum cd_err err = cd_tx_int(tx, "SELECT count(*) FROM tokens", NULL, 0, &n);

    (void)ctx;
    if (err != CD_OK)
        return err;
    snprintf(id, sizeof id, "n%lld", (long long)n);
    struct ins in = {id, false};
    return insert_token(tx, &in);
}

struct turn { struct cd_store *s; int errors; };

static void *turn_writer(void *arg)
{
    struct turn *t = arg;

    for (int i = 0; i < 40; i++)
        if (cd_store_write(t->s, insert_next, NULL) != CD_OK)
            t->errors++;
    return NULL;
}

static void pg_writers_of_two_stores_take_turns(void **state)
{
    need_backend();
    struct cd_store *s[2] = {NULL, NULL};
    struct turn t[8];
    pthread_t th[8];
    int64_t n = 0;

    assert_int_equal(cd_store_open(path, &s[0]), CD_OK);
    assert_int_equal(cd_store_open(path, &s[1]), CD_OK);
    for (int i = 0; i < 8; i++) {
        t[i] = (struct turn){s[i % 2], 0};
        pthread_create(&th[i], NULL, turn_writer, &t[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(t[i].errors, 0);
    }
    assert_int_equal(cd_store_read(s[0], count_tokens, &n), CD_OK);
    assert_int_equal(n, 320);
    cd_store_close(s[1]);
    cd_store_close(s[0]);
}

/* SQLite has one process: no feed, announcements are nothing, the lease is always held. */
static void sqlite_is_not_shared(void **state)
{
    need_backend();
    struct cd_store *s = NULL;
    struct heard h = {PTHREAD_MUTEX_INITIALIZER, {{0}}, 0};
    struct announce one = {"one", "t.one", false};

    assert_int_equal(cd_store_open(path, &s), CD_OK);
    assert_false(cd_store_shared(s));
    assert_int_equal(cd_store_feed_start(s, hear, &h), CD_OK);
    assert_int_equal(cd_store_write(s, insert_and_announce, &one), CD_OK);
    assert_true(cd_store_lease_held(s));
    assert_int_equal(cd_store_feed_fresh_ms(s), INT64_MAX);
    assert_int_equal(h.n, 0);
    cd_store_close(s);
}

int main(void)
{
    cd_json_init();
#define BOTH(f) cmocka_unit_test(f)
    const struct CMUnitTest common[] = {
        BOTH(failed_write_leaves_nothing),
        BOTH(concurrent_writes_are_batched),
        BOTH(async_writes_complete_once),
        BOTH(newer_schema_is_refused),
        BOTH(values_keep_their_type_and_bytes),
        BOTH(a_late_failure_fails_its_write_alone),
        BOTH(a_large_ordered_scan_is_complete_and_bytewise),
    };
    const struct CMUnitTest sqlite_only[] = {
        cmocka_unit_test(every_sqlite_migration_has_its_postgresql_twin),
        cmocka_unit_test(backup_is_a_snapshot_made_while_writing),
        cmocka_unit_test(files_are_the_owners_alone),
        cmocka_unit_test(sqlite_is_not_shared),
    };
    const struct CMUnitTest pg_only[] = {
        cmocka_unit_test(both_backends_migrate_to_the_same_schema),
        cmocka_unit_test(pg_backup_names_pg_dump_and_writes_nothing),
        cmocka_unit_test(pg_connections_come_back_after_the_server_ends_them),
        cmocka_unit_test(pg_a_statement_timeout_is_busy_and_passes),
        cmocka_unit_test(pg_text_that_is_not_utf8_is_invalid),
        cmocka_unit_test(pg_integrity_check_uses_amcheck_when_installed),
        cmocka_unit_test(pg_refuses_a_database_that_is_not_utf8),
        cmocka_unit_test(pg_announcements_reach_other_stores_after_commit_only),
        cmocka_unit_test(pg_one_lease_among_stores),
        cmocka_unit_test(pg_writers_of_two_stores_take_turns),
    };
#define N(a) (sizeof(a) / sizeof((a)[0]))
    struct CMUnitTest sq[N(common) + N(sqlite_only)], pg[N(common) + N(pg_only)];
    size_t nc = N(common);
    for (size_t i = 0; i < N(sq); i++) {
        sq[i] = i < nc ? common[i] : sqlite_only[i - nc];
        sq[i].setup_func = setup_sqlite;
        sq[i].teardown_func = teardown_sqlite;
    }
    for (size_t i = 0; i < N(pg); i++) {
        pg[i] = i < nc ? common[i] : pg_only[i - nc];
        pg[i].setup_func = setup_pg;
        pg[i].teardown_func = teardown_pg;
    }
    int failed = _cmocka_run_group_tests("sqlite", sq, N(sq), NULL, NULL);
    failed += _cmocka_run_group_tests("postgres", pg, N(pg), NULL, NULL);
    return failed;
}
