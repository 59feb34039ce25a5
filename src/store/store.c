/* The backend-neutral half of the store: group commit on one writer thread and a pool of
 * read connections. Why a writer thread: SQLite allows one writer at a time, and an fsync per
 * request caps throughput at the disk's flush rate; batching every write that arrived while the
 * previous commit was flushing turns N fsyncs into one without weakening durability. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "store.h"
#include "store_int.h"

#define MAX_BATCH 2048
#define MAX_READERS 64
#define FEED_PINGS 64         /* pings in flight that can still be recognised */
#define FEED_RETRY_MS 250     /* between attempts to open a lost feed again */
#define FEED_LEASE_MS 500     /* between attempts to take the lease */
#define FEED_LEASE_KEY INT64_C(7146378697419468403) /* the signer's lock (migrations: ...402) */

struct cd_tx {
    struct cd_store *store;
    void *conn;
    long fault_exec; /* > 0: the nth exec fails (fault injection) */
};

struct write_job {
    cd_tx_fn fn;
    void *ctx;
    enum cd_err err;
    /* Each job has its own lock: the writer wakes a whole batch of submitters at once, and
     * with one shared lock every woken submitter queued behind the writer still holding it. */
    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled once, when done */
    bool done;
    /* Asynchronous jobs (cd_store_write_async) are heap-allocated and call done_fn instead of
     * waking a waiting submitter; the writer frees them afterwards. */
    cd_store_done_fn done_fn;
    void *done_ctx;
    long fault_exec, fault_exec0;
    struct cd_alloc_fault alloc_fault; /* the submitter's, applied while the job runs */
    struct cd_alloc_fault alloc_fault0; /* as submitted: a second run starts from it again */
    char detail[512];
    struct write_job *next;
};

struct cd_store {
    const struct cd_store_ops *ops;
    char *target;
    struct cd_store_options opts;
    void *wconn;
    pthread_t writer;
    bool writer_started;
    pthread_mutex_t mu;
    pthread_cond_t work;  /* writer waits for jobs */
    pthread_cond_t ckpt_done;
    bool checkpoint_requested;
    enum cd_err checkpoint_err;
    char checkpoint_detail[256];
    struct write_job *head, *tail;
    bool stopping;
    /* reader pool */
    pthread_mutex_t rmu;
    void *idle[MAX_READERS];
    int nidle;
    /* stats, under mu */
    struct cd_store_stats stats;
    /* Writer thread only: changes at every BEGIN, ROLLBACK and ROLLBACK TO (cd_tx_epoch). */
    uint64_t epoch;
    void *services[CD_STORE_SERVICE__COUNT]; /* cd_store_service_set, atomic accesses */
    /* The feed of a shared store (cd_store_feed_start): its session and thread; fresh and
     * lease are read by any thread (atomic accesses), the rest belongs to the feed thread. */
    void *feed;
    pthread_t feed_thread;
    bool feed_started;
    bool feed_stop;   /* atomic */
    int64_t fresh;    /* atomic: cd_store_feed_fresh_ms */
    bool peers;       /* atomic: another server's ping was seen (from then on, for good) */
    bool lease;       /* atomic: cd_store_lease_held */
    cd_store_change_fn feed_fn;
    void *feed_ctx;
    uint64_t ping_n;
    int64_t ping_sent[FEED_PINGS]; /* when ping n was sent, at n % FEED_PINGS */
};

const double cd_store_commit_bucket_le[16] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                              0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                              1,      2.5,     5,      0};
const unsigned cd_store_batch_bucket_le[12] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 0};

static _Thread_local long next_fault_exec;

void cd_store_fault_nth_exec(long n)
{
#ifdef CD_FAULT_INJECTION
    next_fault_exec = n;
#else
    (void)n;
#endif
}

struct cd_store *cd_tx_store(struct cd_tx *tx)
{
    return tx->store;
}

void cd_store_service_set(struct cd_store *s, enum cd_store_service which, void *p)
{
    __atomic_store_n(&s->services[which], p, __ATOMIC_RELEASE);
}

void *cd_store_service(struct cd_store *s, enum cd_store_service which)
{
    return __atomic_load_n(&s->services[which], __ATOMIC_ACQUIRE);
}

uint64_t cd_tx_epoch(struct cd_tx *tx)
{
    return tx->conn == tx->store->wconn ? tx->store->epoch : 0;
}

const char *cd_store_backend(const struct cd_store *s)
{
    return s->ops->name;
}

unsigned cd__store_sql_slot(const char *sql, size_t len, unsigned n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)sql[i]) * 1099511628211ull;
    return (unsigned)(h % n);
}

enum cd_err cd_tx_exec(struct cd_tx *tx, const char *sql, const struct cd_val *params,
                       size_t nparams, cd_row_fn fn, void *ctx, int64_t *changes)
{
    if (tx->fault_exec > 0 && --tx->fault_exec == 0)
        return cd_err_set(CD_ERR_STORE, "disk I/O error (injected)");
    return tx->store->ops->exec(tx->conn, sql, params, nparams, fn, ctx, changes);
}

static enum cd_err one_int(void *ctx, const struct cd_val *cols, size_t n)
{
    int64_t *out = ctx;

    if (n < 1 || cols[0].type != CD_VAL_INT)
        return cd_err_set(CD_ERR_INTERNAL, "expected an integer column");
    *out = cols[0].i;
    return CD_OK;
}

enum cd_err cd_tx_int(struct cd_tx *tx, const char *sql, const struct cd_val *params,
                      size_t nparams, int64_t *out)
{
    int64_t v = INT64_MIN;
    enum cd_err err = cd_tx_exec(tx, sql, params, nparams, one_int, &v, NULL);

    if (err != CD_OK)
        return err;
    if (v == INT64_MIN)
        return CD_ERR_NOT_FOUND;
    *out = v;
    return CD_OK;
}

static unsigned bucket_of_batch(size_t n)
{
    unsigned b = 0;
    while (b < 11 && n > cd_store_batch_bucket_le[b])
        b++;
    return b;
}

static unsigned bucket_of_seconds(double s)
{
    unsigned b = 0;
    while (b < 15 && s > cd_store_commit_bucket_le[b])
        b++;
    return b;
}

/* Runs every job of the batch without savepoints. Why: a savepoint per job cost about a
 * third of the writer's time per row (each page the batch already dirtied is copied into the
 * savepoint's journal again). A job that fails without having changed a row needs no undo; one
 * that fails after changing rows cannot be undone alone, so the caller rolls the batch back and
 * runs it again carefully. Returns false in that case. */
static bool run_optimistic(struct cd_store *s, struct write_job *jobs, size_t *applied)
{
    const struct cd_store_ops *ops = s->ops;
    struct cd_tx tx = {s, s->wconn, 0};

    for (struct write_job *j = jobs; j; j = j->next) {
        int64_t before = ops->total_changes(s->wconn);
        cd_err_clear();
        tx.fault_exec = j->fault_exec;
        cd_alloc_fault_put(j->alloc_fault);
        enum cd_err err = j->fn(&tx, j->ctx);
        j->alloc_fault = cd_alloc_fault_take();
        j->err = err;
        if (err == CD_OK) {
            (*applied)++;
            continue;
        }
        snprintf(j->detail, sizeof j->detail, "%s", cd_err_detail());
        if (ops->total_changes(s->wconn) != before || !ops->in_transaction(s->wconn))
            return false;
    }
    return true;
}

/* Runs every job in its own savepoint, so a failing job is undone alone. Returns false when
 * the batch cannot go on (a savepoint could not be taken or undone). */
static bool run_careful(struct cd_store *s, struct write_job *jobs, size_t *applied)
{
    const struct cd_store_ops *ops = s->ops;
    struct cd_tx tx = {s, s->wconn, 0};
    enum cd_err err;
    bool fatal = false;

    for (struct write_job *j = jobs; j && !fatal; j = j->next) {
        cd_err_clear();
        tx.fault_exec = j->fault_exec;
        if ((err = ops->savepoint(s->wconn)) == CD_OK) {
            cd_alloc_fault_put(j->alloc_fault);
            err = j->fn(&tx, j->ctx);
            j->alloc_fault = cd_alloc_fault_take();
            if (err == CD_OK) {
                err = ops->release(s->wconn);
                fatal = err != CD_OK;
            } else {
                s->epoch++; /* what the job wrote is gone, whether or not ROLLBACK TO worked */
                if (ops->rollback_to(s->wconn) != CD_OK || ops->release(s->wconn) != CD_OK)
                    fatal = true; /* the job cannot be undone alone: the whole batch must go */
            }
        } else {
            fatal = true;
        }
        j->err = err;
        if (err != CD_OK)
            snprintf(j->detail, sizeof j->detail, "%s", cd_err_detail());
        else
            (*applied)++;
    }
    return !fatal;
}

/* Applies one batch in one transaction and one COMMIT. */
static void run_batch(struct cd_store *s, struct write_job *jobs, size_t n)
{
    const struct cd_store_ops *ops = s->ops;
    enum cd_err err;
    size_t applied = 0;
    bool fatal = false;

    s->epoch++;
    if ((err = ops->begin(s->wconn, true)) != CD_OK) {
        for (struct write_job *j = jobs; j; j = j->next) {
            j->err = err;
            snprintf(j->detail, sizeof j->detail, "%s", cd_err_detail());
        }
        return;
    }
    for (struct write_job *j = jobs; j; j = j->next) {
        j->alloc_fault0 = j->alloc_fault;
        j->fault_exec0 = j->fault_exec;
    }
    /* A backend that learns of a statement's failure late (PostgreSQL's pipeline) reports it
     * here at the latest, before COMMIT: the batch is then run again carefully. */
    if (!run_optimistic(s, jobs, &applied) || !ops->in_transaction(s->wconn)) {
        /* Undo the whole batch and run it again from the same state, each job in a
         * savepoint; the jobs see exactly what they saw the first time. */
        s->epoch++;
        if (ops->rollback(s->wconn) != CD_OK || ops->begin(s->wconn, true) != CD_OK) {
            fatal = true;
            /* Jobs the first run never reached fail for the reason the batch could not go
             * on (a lost database connection), not with an empty detail. */
            for (struct write_job *j = jobs; j; j = j->next)
                if (j->err != CD_OK && j->detail[0] == '\0')
                    snprintf(j->detail, sizeof j->detail, "%s", cd_err_detail());
        } else {
            applied = 0;
            for (struct write_job *j = jobs; j; j = j->next) {
                j->err = CD_ERR_STORE;
                j->detail[0] = '\0';
                j->alloc_fault = j->alloc_fault0;
                j->fault_exec = j->fault_exec0;
            }
            fatal = !run_careful(s, jobs, &applied);
        }
    }
    uint64_t t0 = cd_mono_ns();
    if (fatal || ops->commit(s->wconn) != CD_OK) {
        /* Nothing of this batch is durable: every job that thought it succeeded fails, and
         * jobs never reached keep the CD_ERR_STORE they were given. */
        s->epoch++;
        ops->rollback(s->wconn);
        for (struct write_job *j = jobs; j; j = j->next) {
            if (j->err == CD_OK) {
                j->err = CD_ERR_STORE;
                snprintf(j->detail, sizeof j->detail, "the database could not commit the write");
            }
        }
        cd_log(CD_LOG_ERROR, "store.batch_failed", "\"jobs\":%zu", n);
        return;
    }
    uint64_t dt = cd_mono_ns() - t0;
    pthread_mutex_lock(&s->mu);
    s->stats.commits++;
    s->stats.writes += applied;
    s->stats.commit_ns_total += dt;
    s->stats.batch_hist[bucket_of_batch(n)]++;
    s->stats.commit_hist[bucket_of_seconds((double)dt / 1e9)]++;
    pthread_mutex_unlock(&s->mu);
}

/* Hands an asynchronous job's outcome to its callback, with the submitter's fault-injection
 * state installed (test builds) so a request's Nth allocation fails wherever it happens. */
static void finish_async(struct write_job *j)
{
    const char *detail = "";

    if (j->err != CD_OK)
        detail = j->detail[0] ? j->detail : "the database failed before this write ran";
    cd_alloc_fault_put(j->alloc_fault);
    j->done_fn(j->done_ctx, j->err, detail);
    cd_alloc_fail_nth(0);
    cd_free(j);
}

static void *writer_main(void *arg)
{
    struct cd_store *s = arg;

    pthread_setname_np(pthread_self(), "cd-writer");
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (s->head == NULL && !s->stopping && !s->checkpoint_requested)
            pthread_cond_wait(&s->work, &s->mu);
        if (s->checkpoint_requested) {
            pthread_mutex_unlock(&s->mu);
            enum cd_err cerr = s->ops->checkpoint(s->wconn);
            pthread_mutex_lock(&s->mu);
            s->checkpoint_err = cerr;
            snprintf(s->checkpoint_detail, sizeof s->checkpoint_detail, "%s", cd_err_detail());
            s->checkpoint_requested = false;
            pthread_cond_broadcast(&s->ckpt_done);
            continue;
        }
        if (s->head == NULL && s->stopping)
            break;
        /* Take up to MAX_BATCH jobs; the rest wait for the next commit. */
        struct write_job *batch = s->head, *last = s->head;
        size_t n = 1;
        while (last->next && n < MAX_BATCH) {
            last = last->next;
            n++;
        }
        s->head = last->next;
        if (s->head == NULL)
            s->tail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(&s->mu);

        for (struct write_job *j = batch; j; j = j->next)
            j->err = CD_ERR_STORE; /* until run: a job skipped after a fatal error fails */
        run_batch(s, batch, n);

        /* One wake-up per job, under the job's own lock: a broadcast on a shared condition
         * woke every waiting submitter, also those of the next batch. */
        for (struct write_job *j = batch, *next; j; j = next) {
            next = j->next;
            if (j->done_fn) {
                finish_async(j);
                continue;
            }
            pthread_mutex_lock(&j->mu);
            j->done = true;
            pthread_cond_signal(&j->cv);
            pthread_mutex_unlock(&j->mu); /* from here on the submitter may free j */
        }
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Queues a job and wakes the writer; false when the store is shutting down. */
static bool submit(struct cd_store *s, struct write_job *job)
{
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        return false;
    }
    if (s->tail)
        s->tail->next = job;
    else
        s->head = job;
    s->tail = job;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    return true;
}

enum cd_err cd_store_write_async(struct cd_store *s, cd_tx_fn fn, void *ctx, cd_store_done_fn done,
                                 void *done_ctx)
{
    struct write_job *job = cd_malloc(sizeof *job);

    if (job == NULL)
        return CD_ERR_NOMEM;
    *job = (struct write_job){.fn = fn, .ctx = ctx, .err = CD_OK, .done_fn = done,
                              .done_ctx = done_ctx};
    job->fault_exec = next_fault_exec;
    next_fault_exec = 0;
    job->alloc_fault = cd_alloc_fault_take();
    if (!submit(s, job)) {
        cd_alloc_fault_put(job->alloc_fault);
        cd_free(job);
        return cd_err_set(CD_ERR_BUSY, "the store is shutting down");
    }
    return CD_OK;
}

enum cd_err cd_store_write(struct cd_store *s, cd_tx_fn fn, void *ctx)
{
    struct write_job job = {.fn = fn, .ctx = ctx, .err = CD_OK,
                            .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

    job.fault_exec = next_fault_exec;
    next_fault_exec = 0;
    job.alloc_fault = cd_alloc_fault_take();
    if (!submit(s, &job)) {
        cd_alloc_fault_put(job.alloc_fault);
        return cd_err_set(CD_ERR_BUSY, "the store is shutting down");
    }
    pthread_mutex_lock(&job.mu);
    while (!job.done)
        pthread_cond_wait(&job.cv, &job.mu);
    pthread_mutex_unlock(&job.mu);
    pthread_cond_destroy(&job.cv);
    pthread_mutex_destroy(&job.mu);
    cd_alloc_fault_put(job.alloc_fault);
    if (job.err != CD_OK)
        cd_err_set(job.err, "%s",
                   job.detail[0] ? job.detail : "the database failed before this write ran");
    return job.err;
}

static enum cd_err reader_get(struct cd_store *s, void **conn)
{
    pthread_mutex_lock(&s->rmu);
    if (s->nidle > 0) {
        *conn = s->idle[--s->nidle];
        pthread_mutex_unlock(&s->rmu);
        return CD_OK;
    }
    pthread_mutex_unlock(&s->rmu);
    return s->ops->conn_open(s->target, false, &s->opts, conn);
}

static void reader_put(struct cd_store *s, void *conn)
{
    pthread_mutex_lock(&s->rmu);
    if (s->nidle < MAX_READERS) {
        s->idle[s->nidle++] = conn;
        conn = NULL;
    }
    pthread_mutex_unlock(&s->rmu);
    if (conn)
        s->ops->conn_close(conn);
}

enum cd_err cd_store_read(struct cd_store *s, cd_tx_fn fn, void *ctx)
{
    void *conn = NULL;
    enum cd_err err;
    struct cd_tx tx = {s, NULL, 0};

    if ((err = reader_get(s, &conn)) != CD_OK)
        return err;
    tx.conn = conn;
    if ((err = s->ops->begin(conn, false)) != CD_OK)
        goto out;
    err = fn(&tx, ctx);
    if (s->ops->rollback(conn) != CD_OK && err == CD_OK)
        err = CD_ERR_STORE;
out:
    if (err == CD_ERR_STORE) {
        s->ops->conn_close(conn); /* a connection that failed is not trusted again */
    } else {
        reader_put(s, conn);
    }
    return err;
}

static enum cd_err ping_fn(struct cd_tx *tx, void *ctx)
{
    int64_t v = 0;
    (void)ctx;
    return cd_tx_int(tx, "SELECT 1", NULL, 0, &v);
}

bool cd_store_ping(struct cd_store *s)
{
    return cd_store_read(s, ping_fn, NULL) == CD_OK;
}

static enum cd_err integrity_fn(struct cd_tx *tx, void *ctx)
{
    (void)ctx;
    return tx->store->ops->integrity_check(tx->conn);
}

enum cd_err cd_store_integrity_check(struct cd_store *s)
{
    return cd_store_read(s, integrity_fn, NULL);
}

/* The checkpoint runs on the writer thread, between batches: only there is the writer
 * connection outside a transaction. */
enum cd_err cd_store_checkpoint(struct cd_store *s)
{
    enum cd_err err;

    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        return cd_err_set(CD_ERR_BUSY, "the store is shutting down");
    }
    s->checkpoint_requested = true;
    pthread_cond_signal(&s->work);
    while (s->checkpoint_requested)
        pthread_cond_wait(&s->ckpt_done, &s->mu);
    err = s->checkpoint_err;
    if (err != CD_OK)
        cd_err_set(err, "%s", s->checkpoint_detail);
    pthread_mutex_unlock(&s->mu);
    return err;
}

/* fsync of a file or directory by path. */
static enum cd_err sync_path(const char *path, bool dir)
{
    int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_WRONLY) | O_CLOEXEC);
    bool ok = fd >= 0 && fsync(fd) == 0;

    if (fd >= 0)
        close(fd);
    return ok ? CD_OK : cd_err_set(CD_ERR_IO, "cannot sync %s: %s", path, strerror(errno));
}

static void remove_partial(const char *tmp)
{
    char side[CD_STORE_BACKUP_PATH_MAX + 32];

    unlink(tmp);
    snprintf(side, sizeof side, "%s-journal", tmp); /* SQLite's, should a crash leave it */
    unlink(side);
}

enum cd_err cd_store_backup(struct cd_store *s, const char *path, cd_store_progress_fn progress,
                            void *ctx, struct cd_store_backup_info *info)
{
    char tmp[CD_STORE_BACKUP_PATH_MAX + 16], dir[CD_STORE_BACKUP_PATH_MAX];
    void *conn = NULL;
    struct stat st;
    enum cd_err err;
    int fd;

    if (s->ops->backup == NULL)
        return cd_err_set(CD_ERR_UNSUPPORTED,
                          "candor backup copies SQLite databases; back up a PostgreSQL database "
                          "with pg_dump (pg_dump --format=custom --file=FILE URL), and the keys "
                          "of the data directory apart from it (see README, Backups)");
    if (strlen(path) >= CD_STORE_BACKUP_PATH_MAX)
        return cd_err_set(CD_ERR_INVALID, "the backup path is too long");
    if (lstat(path, &st) == 0)
        return cd_err_set(CD_ERR_CONFLICT, "%s exists; a backup never replaces a file", path);
    snprintf(tmp, sizeof tmp, "%s.partial", path);
    /* Created here, 0600 and exclusively, so the copy is never readable by others (SQLite
     * gives its journal the same mode) and two backups never write one file. */
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
        if (errno == EEXIST)
            return cd_err_set(CD_ERR_CONFLICT,
                              "%s exists: another backup is running, or one was interrupted "
                              "(remove the file)", tmp);
        return cd_err_set(CD_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    }
    close(fd);
    if ((err = reader_get(s, &conn)) != CD_OK)
        goto out;
    err = s->ops->backup(conn, tmp, progress, ctx, info);
    s->ops->conn_close(conn); /* a connection that held a long snapshot starts afresh */
    if (err != CD_OK || (err = sync_path(tmp, false)) != CD_OK)
        goto out;
    /* link, unlike rename, fails rather than replace a file that appeared meanwhile. */
    if (link(tmp, path) != 0) {
        err = errno == EEXIST
                  ? cd_err_set(CD_ERR_CONFLICT, "%s exists; a backup never replaces a file", path)
                  : cd_err_set(CD_ERR_IO, "cannot create %s: %s", path, strerror(errno));
        goto out;
    }
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    unlink(tmp);
    if ((err = sync_path(dir, true)) != CD_OK)
        unlink(path); /* not known to be durable: no copy is better than a doubtful one */
out:
    if (err != CD_OK)
        remove_partial(tmp);
    return err;
}

void cd_store_get_stats(struct cd_store *s, struct cd_store_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    pthread_mutex_unlock(&s->mu);
}

bool cd_store_shared(const struct cd_store *s)
{
    return s->ops->feed_open != NULL;
}

enum cd_err cd_tx_notify(struct cd_tx *tx, const char *topic)
{
    if (strlen(topic) > 200)
        return cd_err_set(CD_ERR_INVALID, "an announcement's topic is too long");
    if (tx->store->ops->notify == NULL || tx->conn != tx->store->wconn)
        return CD_OK;
    return tx->store->ops->notify(tx->conn, topic);
}

int64_t cd_store_feed_fresh_ms(struct cd_store *s)
{
    /* A server alone on its database has nobody's changes to miss: its own are applied where
     * they are made. Why not always strict: a busy machine can delay the feed's ping past the
     * bound, and refusing decisions then protects nothing. */
    if (!__atomic_load_n(&s->peers, __ATOMIC_ACQUIRE))
        return INT64_MAX;
    return __atomic_load_n(&s->fresh, __ATOMIC_ACQUIRE);
}

bool cd_store_lease_held(struct cd_store *s)
{
    return !s->feed_started || __atomic_load_n(&s->lease, __ATOMIC_ACQUIRE);
}

/* One announcement from the feed: the feed's own pings move the freshness mark (every change
 * committed before the ping was sent came before it), other servers' pings are not news, and
 * the rest goes to the change function. */
static void feed_deliver(void *ctx, const char *topic, bool own)
{
    struct cd_store *s = ctx;
    unsigned long long n;

    if (strncmp(topic, "ping ", 5) == 0) {
        if (!own && !__atomic_load_n(&s->peers, __ATOMIC_RELAXED)) {
            cd_log(CD_LOG_INFO, "store.peers_seen", NULL);
            __atomic_store_n(&s->peers, true, __ATOMIC_RELEASE);
        }
        if (own && sscanf(topic + 5, "%llu", &n) == 1 && n + FEED_PINGS > s->ping_n &&
            n <= s->ping_n) {
            int64_t at = s->ping_sent[n % FEED_PINGS];
            if (at > __atomic_load_n(&s->fresh, __ATOMIC_RELAXED))
                __atomic_store_n(&s->fresh, at, __ATOMIC_RELEASE);
        }
        return;
    }
    s->feed_fn(s->feed_ctx, topic);
}

/* Opens the feed's session; a new session starts with a full resync, since announcements made
 * while there was none are lost. */
static enum cd_err feed_connect(struct cd_store *s)
{
    enum cd_err err = s->ops->feed_open(s->target, &s->feed);

    if (err != CD_OK)
        return err;
    __atomic_store_n(&s->lease, false, __ATOMIC_RELEASE);
    s->feed_fn(s->feed_ctx, NULL);
    return CD_OK;
}

/* One turn of the feed: a ping when due, an attempt at the lease when due, then waiting for
 * announcements until the next ping. */
static enum cd_err feed_turn(struct cd_store *s, uint64_t *next_ping, uint64_t *next_lease)
{
    uint64_t now = cd_mono_ns() / 1000000;
    enum cd_err err;
    char topic[32];

    if (now >= *next_ping) {
        s->ping_n++;
        s->ping_sent[s->ping_n % FEED_PINGS] = cd_now_ms();
        snprintf(topic, sizeof topic, "ping %llu", (unsigned long long)s->ping_n);
        if ((err = s->ops->feed_ping(s->feed, topic)) != CD_OK)
            return err;
        *next_ping = now + CD_STORE_FEED_PING_MS;
    }
    if (now >= *next_lease && !__atomic_load_n(&s->lease, __ATOMIC_RELAXED)) {
        bool held = false;
        if ((err = s->ops->feed_lease(s->feed, FEED_LEASE_KEY, &held)) != CD_OK)
            return err;
        if (held)
            cd_log(CD_LOG_INFO, "store.lease_taken", NULL);
        __atomic_store_n(&s->lease, held, __ATOMIC_RELEASE);
        *next_lease = now + FEED_LEASE_MS;
    }
    return s->ops->feed_wait(s->feed, (unsigned)(*next_ping > now ? *next_ping - now : 1),
                             feed_deliver, s);
}

static void *feed_main(void *arg)
{
    struct cd_store *s = arg;
    uint64_t next_ping = 0, next_lease = 0;

    pthread_setname_np(pthread_self(), "cd-feed");
    while (!__atomic_load_n(&s->feed_stop, __ATOMIC_ACQUIRE)) {
        if (s->feed == NULL) {
            if (feed_connect(s) != CD_OK) {
                struct timespec ts = {0, FEED_RETRY_MS * 1000000L};
                nanosleep(&ts, NULL);
                continue;
            }
            cd_log(CD_LOG_INFO, "store.feed_reconnected", NULL);
            next_ping = next_lease = 0;
        }
        if (feed_turn(s, &next_ping, &next_lease) != CD_OK) {
            /* The session is gone, and the lease with it. */
            cd_log(CD_LOG_WARN, "store.feed_lost", NULL);
            __atomic_store_n(&s->lease, false, __ATOMIC_RELEASE);
            s->ops->feed_close(s->feed);
            s->feed = NULL;
        }
    }
    return NULL;
}

enum cd_err cd_store_feed_start(struct cd_store *s, cd_store_change_fn fn, void *ctx)
{
    uint64_t next_ping = 0, next_lease = 0, deadline;
    enum cd_err err;

    if (!cd_store_shared(s))
        return CD_OK;
    if (s->feed_started)
        return cd_err_set(CD_ERR_INVALID, "the feed is already started");
    s->feed_fn = fn;
    s->feed_ctx = ctx;
    __atomic_store_n(&s->fresh, INT64_MIN, __ATOMIC_RELEASE);
    if ((err = feed_connect(s)) != CD_OK)
        return err;
    /* Serving starts fresh: the first ping has come back (or two seconds passed, and the
     * server says it is out of date until one does), and two more ping intervals passed, in
     * which the pings of other servers on the database arrive. */
    deadline = cd_mono_ns() + 2000000000ull;
    uint64_t heard = 0;
    while ((heard == 0 || cd_mono_ns() < heard + 2 * CD_STORE_FEED_PING_MS * 1000000ull) &&
           cd_mono_ns() < deadline) {
        if (heard == 0 && __atomic_load_n(&s->fresh, __ATOMIC_ACQUIRE) != INT64_MIN)
            heard = cd_mono_ns();
        if ((err = feed_turn(s, &next_ping, &next_lease)) != CD_OK) {
            s->ops->feed_close(s->feed);
            s->feed = NULL;
            return err;
        }
    }
    s->feed_stop = false;
    if (pthread_create(&s->feed_thread, NULL, feed_main, s) != 0) {
        s->ops->feed_close(s->feed);
        s->feed = NULL;
        return cd_err_set(CD_ERR_INTERNAL, "cannot start the feed thread");
    }
    s->feed_started = true;
    return CD_OK;
}

void cd_store_feed_stop(struct cd_store *s)
{
    if (!s->feed_started)
        return;
    __atomic_store_n(&s->feed_stop, true, __ATOMIC_RELEASE);
    pthread_join(s->feed_thread, NULL);
    if (s->feed)
        s->ops->feed_close(s->feed);
    s->feed = NULL;
    s->feed_started = false;
    __atomic_store_n(&s->lease, false, __ATOMIC_RELEASE);
    __atomic_store_n(&s->fresh, INT64_MAX, __ATOMIC_RELEASE);
}

bool cd_store_url_is_pg(const char *url)
{
    return strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0;
}

enum cd_err cd_store_open(const char *url, struct cd_store **out)
{
    return cd_store_open_with(url, NULL, out);
}

enum cd_err cd_store_open_with(const char *url, const struct cd_store_options *opts,
                               struct cd_store **out)
{
    struct cd_store *s;
    enum cd_err err;
    int from = 0, to = 0;
    const char *target = url;

    if (strncmp(url, "sqlite:", 7) == 0)
        target = url + 7;
    if ((s = cd_calloc(1, sizeof *s)) == NULL)
        return CD_ERR_NOMEM;
    s->ops = cd_store_url_is_pg(url) ? &cd_store_pg_ops : &cd_store_sqlite_ops;
    s->fresh = INT64_MAX; /* no feed: nothing else writes behind this process's back */
    if (opts)
        s->opts = *opts;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->rmu, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->ckpt_done, NULL);
    if ((s->target = cd_strdup(target)) == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    if ((err = s->ops->conn_open(s->target, true, &s->opts, &s->wconn)) != CD_OK)
        goto out;
    if ((err = s->ops->migrate(s->wconn, &from, &to)) != CD_OK)
        goto out;
    if (from != to)
        cd_log(CD_LOG_INFO, "store.migrated", "\"from\":%d,\"to\":%d", from, to);
    if (pthread_create(&s->writer, NULL, writer_main, s) != 0) {
        err = cd_err_set(CD_ERR_INTERNAL, "cannot start the writer thread");
        goto out;
    }
    s->writer_started = true;
    *out = s;
    return CD_OK;
out:
    cd_store_close(s);
    return err;
}

void cd_store_close(struct cd_store *s)
{
    if (s == NULL)
        return;
    cd_store_feed_stop(s);
    if (s->writer_started) {
        pthread_mutex_lock(&s->mu);
        s->stopping = true;
        pthread_cond_signal(&s->work);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->writer, NULL);
    }
    for (int i = 0; i < s->nidle; i++)
        s->ops->conn_close(s->idle[i]);
    if (s->wconn)
        s->ops->conn_close(s->wconn);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->rmu);
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->ckpt_done);
    cd_free(s->target);
    cd_free(s);
}

enum cd_err cd_val_json_time(json_t *o, const char *key, struct cd_val v)
{
    char ts[CD_TIME_STRLEN];

    if (v.type == CD_VAL_NULL)
        return cd_json_set_new(o, key, json_null());
    cd_time_format(v.i, ts);
    return cd_json_set_new(o, key, json_string(ts));
}

enum cd_err cd_val_json_text(json_t *o, const char *key, struct cd_val v)
{
    if (v.type == CD_VAL_NULL)
        return cd_json_set_new(o, key, json_null());
    return cd_json_set_strn(o, key, v.p, v.len);
}
