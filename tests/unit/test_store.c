/* Unit tests for src/store: migrations, group commit, savepoint isolation, faults. */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>
#include "unit.h"
#include "store/store.h"

static char path[256];

static int setup(void **state)
{
    snprintf(path, sizeof path, "/tmp/candor-test-store-%d.db", (int)getpid());
    unlink(path);
    return 0;
}

static int teardown(void **state)
{
    char p[300];
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
    return 0;
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
    char cmd[400];

    assert_int_equal(cd_store_open(path, &s), CD_OK);
    cd_store_close(s);
    snprintf(cmd, sizeof cmd,
             "sqlite3 %s 'INSERT INTO schema_version VALUES(999, 0)' 2>/dev/null", path);
    if (system(cmd) != 0)
        skip();
    assert_int_equal(cd_store_open(path, &s), CD_ERR_SCHEMA);
    assert_non_null(strstr(cd_err_detail(), "newer candor"));
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
    struct cd_store *s = NULL, *copy = NULL;
    struct pairs p = {.n = 0};
    struct cd_store_backup_info info = {0, 0};
    char out[300], partial[320];
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
    char side[340];
    snprintf(side, sizeof side, "%s-wal", out);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", out);
    unlink(side);
}

static mode_t mode_of(const char *suffix)
{
    char p[300];
    struct stat st;

    snprintf(p, sizeof p, "%s%s", path, suffix);
    assert_int_equal(stat(p, &st), 0);
    return st.st_mode & 0777;
}

static void files_are_the_owners_alone(void **state)
{
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

int main(void)
{
    cd_json_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(failed_write_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(concurrent_writes_are_batched, setup, teardown),
        cmocka_unit_test_setup_teardown(async_writes_complete_once, setup, teardown),
        cmocka_unit_test_setup_teardown(newer_schema_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(backup_is_a_snapshot_made_while_writing, setup, teardown),
        cmocka_unit_test_setup_teardown(files_are_the_owners_alone, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
