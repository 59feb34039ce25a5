/* The SQLite backend: WAL journal, synchronous=FULL (a COMMIT returns after fsync), prepared
 * statements cached per connection, and forward-only numbered migrations. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "store.h"
#include "store_int.h"

#define STMT_CACHE 128
#define BACKUP_STEP_PAGES 1024 /* pages copied between two progress reports */
#define STMT_PROBE 8 /* slots tried, from the hashed one on */

struct sq_conn {
    sqlite3 *db;
    struct {
        const char *sql; /* borrowed: callers pass static SQL text */
        size_t len;
        sqlite3_stmt *st;
        bool in_order; /* see params_in_order */
    } cache[STMT_CACHE];
};

static enum cd_err sq_err(sqlite3 *db, int rc, const char *what)
{
    int ext = db ? sqlite3_extended_errcode(db) : rc;

    switch (rc & 0xff) {
    case SQLITE_NOMEM:
        return CD_ERR_NOMEM;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return cd_err_set(CD_ERR_BUSY, "the database is busy");
    case SQLITE_CONSTRAINT:
        return cd_err_set(CD_ERR_CONFLICT, "%s: constraint violated (%d)", what, ext);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return cd_err_set(CD_ERR_INTEGRITY, "%s: the database file is damaged", what);
    default:
        return cd_err_set(CD_ERR_STORE, "%s: %s (%d)", what, sqlite3_errstr(rc), ext);
    }
}

static enum cd_err sq_simple(void *c, const char *sql)
{
    struct sq_conn *conn = c;
    int rc = sqlite3_exec(conn->db, sql, NULL, NULL, NULL);

    return rc == SQLITE_OK ? CD_OK : sq_err(conn->db, rc, sql);
}

static void sq_close(void *c)
{
    struct sq_conn *conn = c;

    if (conn == NULL)
        return;
    for (int i = 0; i < STMT_CACHE; i++)
        sqlite3_finalize(conn->cache[i].st);
    sqlite3_close_v2(conn->db);
    cd_free(conn);
}

/* Before SQLite's first use in the process: no memory statistics. Why: with them, every
 * sqlite3_malloc and sqlite3_free takes one process-wide mutex to count, and the writer and the
 * readers allocate on every statement. Too late (SQLite already in use) is harmless. */
static void sq_configure_once(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

/* The database holds sealed personal data, blind indexes and token hashes: its files are the
 * owner's alone. SQLite creates a new database file with 0644 (less the umask) and gives the
 * -wal and -shm files the database file's mode, so the file is created here first, 0600, and
 * the three files of a database made by an older candor (or copied in) lose their group and
 * other bits. Special names (":memory:", "file:" URIs) are left to SQLite. */
static enum cd_err secure_files(const char *target)
{
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    char path[CD_PATH_MAX];
    struct stat st;
    int fd;

    if (target[0] == '\0' || target[0] == ':' || strncmp(target, "file:", 5) == 0)
        return CD_OK;
    fd = open(target, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return cd_err_set(CD_ERR_STORE, "cannot open the database %s: %s", target,
                          strerror(errno));
    close(fd);
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        snprintf(path, sizeof path, "%s%s", target, suffixes[i]);
        if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) == 0)
            continue;
        if (chmod(path, st.st_mode & 0700) != 0)
            return cd_err_set(CD_ERR_STORE, "%s is readable by others and cannot be made "
                                            "private (chmod 600 it): %s",
                              path, strerror(errno));
        cd_log(CD_LOG_WARN, "store.file_mode_tightened", "\"suffix\":\"%s\",\"was\":\"%04o\"",
               suffixes[i], (unsigned)(st.st_mode & 0777));
    }
    return CD_OK;
}

static enum cd_err sq_open(const char *target, bool writer, const struct cd_store_options *o,
                           void **out)
{
    static pthread_once_t configured = PTHREAD_ONCE_INIT;
    struct sq_conn *conn = cd_calloc(1, sizeof *conn);
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (writer ? SQLITE_OPEN_CREATE : 0);
    int rc;
    enum cd_err err;

    (void)o; /* SQLite has no statement timeout; busy_timeout bounds waiting for a lock */
    if (conn == NULL)
        return CD_ERR_NOMEM;
    pthread_once(&configured, sq_configure_once);
    if (writer && (err = secure_files(target)) != CD_OK)
        goto fail;
    if ((rc = sqlite3_open_v2(target, &conn->db, flags, NULL)) != SQLITE_OK) {
        err = cd_err_set(CD_ERR_STORE, "cannot open the database: %s", sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_extended_result_codes(conn->db, 1);
    sqlite3_busy_timeout(conn->db, 5000);
    if ((err = sq_simple(conn, "PRAGMA foreign_keys=ON")) != CD_OK)
        goto fail;
    if (writer) {
        /* WAL lets readers run beside the writer; FULL makes every COMMIT durable. A 16 MiB
         * page cache keeps the hot index pages that random customer ids touch in memory. Not
         * more: the end of every COMMIT passes over the page cache (pcache1's truncation), a
         * cost that grows with the cache and not with the batch (docs/benchmarks.md). */
        if ((err = sq_simple(conn, "PRAGMA journal_mode=WAL")) != CD_OK ||
            (err = sq_simple(conn, "PRAGMA synchronous=FULL")) != CD_OK ||
            (err = sq_simple(conn, "PRAGMA secure_delete=ON")) != CD_OK ||
            (err = sq_simple(conn, "PRAGMA wal_autocheckpoint=8000")) != CD_OK ||
            (err = sq_simple(conn, "PRAGMA cache_size=-16384")) != CD_OK)
            goto fail;
    }
    *out = conn;
    return CD_OK;
fail:
    sq_close(conn);
    return err;
}

/* True when parameter k of st is named $k for every k: then params[k-1] binds to position k
 * without formatting "$k" and searching the names for it, which was a fifth of sq_exec's own
 * time on the writer thread (twenty-odd parameters per ingested row). */
static bool params_in_order(sqlite3_stmt *st)
{
    int n = sqlite3_bind_parameter_count(st);

    for (int k = 1; k <= n; k++) {
        const char *name = sqlite3_bind_parameter_name(st, k);
        char want[24];
        snprintf(want, sizeof want, "$%d", k);
        if (name == NULL || strcmp(name, want) != 0)
            return false;
    }
    return true;
}

/* Why probing: a direct-mapped cache re-prepared (parsed) both statements of a colliding pair
 * on every use; with the thirty-odd statements of a request that happened on the hot path. */
static enum cd_err prepare(struct sq_conn *conn, const char *sql, sqlite3_stmt **st, bool *cached,
                           bool *in_order)
{
    size_t len = strlen(sql);
    unsigned slot = cd__store_sql_slot(sql, len, STMT_CACHE), free_slot = STMT_CACHE;
    int rc;

    for (unsigned i = 0; i < STMT_PROBE; i++) {
        unsigned k = (slot + i) % STMT_CACHE;
        if (conn->cache[k].st == NULL) {
            free_slot = k;
            break;
        }
        if (conn->cache[k].len == len && memcmp(conn->cache[k].sql, sql, len) == 0) {
            *st = conn->cache[k].st;
            *cached = true;
            *in_order = conn->cache[k].in_order;
            return CD_OK;
        }
    }
    rc = sqlite3_prepare_v3(conn->db, sql, (int)len + 1, SQLITE_PREPARE_PERSISTENT, st, NULL);
    if (rc != SQLITE_OK)
        return sq_err(conn->db, rc, "prepare");
    *in_order = params_in_order(*st);
    if (free_slot < STMT_CACHE) {
        /* Only statements given as long-lived text are cached: callers pass string literals. */
        conn->cache[free_slot].sql = sql;
        conn->cache[free_slot].len = len;
        conn->cache[free_slot].st = *st;
        conn->cache[free_slot].in_order = *in_order;
        *cached = true;
    } else {
        *cached = false;
    }
    return CD_OK;
}

static enum cd_err sq_exec(void *c, const char *sql, const struct cd_val *params, size_t nparams,
                           cd_row_fn fn, void *ctx, int64_t *changes)
{
    struct sq_conn *conn = c;
    sqlite3_stmt *st = NULL;
    bool cached = false, in_order = false;
    enum cd_err err;
    int rc;
    struct cd_val cols[CD_STORE_MAX_COLS];

    if ((err = prepare(conn, sql, &st, &cached, &in_order)) != CD_OK)
        return err;
    int nbind = sqlite3_bind_parameter_count(st);
    for (size_t i = 0; i < nparams; i++) {
        const struct cd_val *v = &params[i];
        /* SQL names parameters $1, $2, ...; SQLite numbers named parameters in order of first
         * appearance, so "$2 ... $1" would bind backwards by position. Bind by name unless
         * they are in order; a statement that does not use $N leaves params[N-1] out, and
         * plain '?' binds by position. */
        int idx = (int)i + 1;
        if (in_order) {
            if (idx > nbind)
                continue;
        } else {
            char pname[24];
            snprintf(pname, sizeof pname, "$%zu", i + 1);
            idx = sqlite3_bind_parameter_index(st, pname);
        }
        if (idx == 0) {
            if ((int)i + 1 > sqlite3_bind_parameter_count(st) ||
                sqlite3_bind_parameter_name(st, (int)i + 1) != NULL)
                continue;
            idx = (int)i + 1;
        }
        switch (v->type) {
        case CD_VAL_NULL:
            rc = sqlite3_bind_null(st, idx);
            break;
        case CD_VAL_INT:
            rc = sqlite3_bind_int64(st, idx, v->i);
            break;
        case CD_VAL_TEXT:
            rc = sqlite3_bind_text64(st, idx, v->p ? v->p : "", v->len, SQLITE_STATIC,
                                     SQLITE_UTF8);
            break;
        default:
            rc = sqlite3_bind_blob64(st, idx, v->p ? v->p : "", v->len, SQLITE_STATIC);
            break;
        }
        if (rc != SQLITE_OK) {
            err = sq_err(conn->db, rc, "bind");
            goto out;
        }
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int n = sqlite3_column_count(st);
        if (fn == NULL)
            continue;
        if (n > CD_STORE_MAX_COLS)
            n = CD_STORE_MAX_COLS;
        for (int i = 0; i < n; i++) {
            switch (sqlite3_column_type(st, i)) {
            case SQLITE_INTEGER:
                cols[i] = CD_VINT(sqlite3_column_int64(st, i));
                break;
            case SQLITE_NULL:
                cols[i] = CD_VNULL;
                break;
            case SQLITE_TEXT:
                cols[i].type = CD_VAL_TEXT;
                cols[i].p = sqlite3_column_text(st, i);
                cols[i].len = (size_t)sqlite3_column_bytes(st, i);
                cols[i].i = 0;
                break;
            default:
                cols[i].type = CD_VAL_BLOB;
                cols[i].p = sqlite3_column_blob(st, i);
                cols[i].len = (size_t)sqlite3_column_bytes(st, i);
                cols[i].i = 0;
                break;
            }
        }
        if ((err = fn(ctx, cols, (size_t)n)) != CD_OK)
            goto out;
    }
    if (rc != SQLITE_DONE) {
        err = sq_err(conn->db, rc, "step");
        goto out;
    }
    if (changes)
        *changes = sqlite3_changes64(conn->db);
    err = CD_OK;
out:
    if (cached) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    } else {
        sqlite3_finalize(st);
    }
    return err;
}

/* Transaction control runs as cached prepared statements too: through sqlite3_exec each
 * SAVEPOINT and RELEASE of a group-commit job was parsed again, on the writer thread. */
static enum cd_err sq_control(void *c, const char *sql)
{
    return sq_exec(c, sql, NULL, 0, NULL, NULL, NULL);
}

static enum cd_err sq_begin(void *c, bool write)
{
    return sq_control(c, write ? "BEGIN IMMEDIATE" : "BEGIN");
}

static enum cd_err sq_commit(void *c)
{
    return sq_control(c, "COMMIT");
}

static enum cd_err sq_rollback(void *c)
{
    struct sq_conn *conn = c;

    if (sqlite3_get_autocommit(conn->db))
        return CD_OK; /* SQLite already rolled back (e.g. after an I/O error) */
    return sq_control(c, "ROLLBACK");
}

static enum cd_err sq_savepoint(void *c)
{
    return sq_control(c, "SAVEPOINT job");
}

static enum cd_err sq_release(void *c)
{
    return sq_control(c, "RELEASE job");
}

static enum cd_err sq_rollback_to(void *c)
{
    return sq_control(c, "ROLLBACK TO job");
}

static enum cd_err version_row(void *ctx, const struct cd_val *cols, size_t n)
{
    *(int64_t *)ctx = n && cols[0].type == CD_VAL_INT ? cols[0].i : 0;
    return CD_OK;
}

static enum cd_err sq_migrate(void *c, int *from, int *to)
{
    struct sq_conn *conn = c;
    int64_t v = 0;
    enum cd_err err;
    int latest = cd__store_sqlite_migrations_count;

    if ((err = sq_simple(conn, "CREATE TABLE IF NOT EXISTS schema_version("
                               "version INTEGER NOT NULL, applied_at INTEGER NOT NULL)")) !=
        CD_OK)
        return err;
    if ((err = sq_exec(conn, "SELECT coalesce(max(version),0) FROM schema_version", NULL, 0,
                       version_row, &v, NULL)) != CD_OK)
        return err;
    *from = (int)v;
    *to = latest;
    if (v > latest)
        return cd_err_set(CD_ERR_SCHEMA,
                          "the database has schema version %lld but this candor knows only up "
                          "to %d; use a newer candor binary",
                          (long long)v, latest);
    for (int i = (int)v; i < latest; i++) {
        if ((err = sq_simple(conn, "BEGIN IMMEDIATE")) != CD_OK)
            return err;
        err = sq_simple(conn, cd__store_sqlite_migrations[i]);
        if (err == CD_OK) {
            struct cd_val p[2] = {CD_VINT(i + 1), CD_VINT(cd_now_ms())};
            err = sq_exec(conn, "INSERT INTO schema_version(version, applied_at) VALUES($1,$2)",
                          p, 2, NULL, NULL, NULL);
        }
        if (err == CD_OK)
            err = sq_simple(conn, "COMMIT");
        if (err != CD_OK) {
            sq_rollback(conn);
            return cd_err_set(err, "migration %d failed: %s", i + 1, cd_err_detail());
        }
    }
    return CD_OK;
}

static enum cd_err check_row(void *ctx, const struct cd_val *cols, size_t n)
{
    bool *ok = ctx;

    if (n < 1 || cols[0].type != CD_VAL_TEXT || cols[0].len != 2 || memcmp(cols[0].p, "ok", 2))
        *ok = false;
    return CD_OK;
}

static enum cd_err sq_integrity(void *c)
{
    bool ok = true;
    enum cd_err err = sq_exec(c, "PRAGMA integrity_check", NULL, 0, check_row, &ok, NULL);

    if (err != CD_OK)
        return err;
    return ok ? CD_OK : cd_err_set(CD_ERR_INTEGRITY, "PRAGMA integrity_check reported errors");
}

static enum cd_err sq_checkpoint(void *c)
{
    struct sq_conn *conn = c;
    int log = 0, done = 0;
    int rc = sqlite3_wal_checkpoint_v2(conn->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &log, &done);

    if (rc == SQLITE_BUSY)
        return cd_err_set(CD_ERR_BUSY, "readers kept the checkpoint from completing");
    return rc == SQLITE_OK ? CD_OK : sq_err(conn->db, rc, "checkpoint");
}

static int64_t sq_total_changes(void *c)
{
    struct sq_conn *conn = c;
    return sqlite3_total_changes64(conn->db);
}

static bool sq_in_transaction(void *c)
{
    struct sq_conn *conn = c;
    return sqlite3_get_autocommit(conn->db) == 0;
}

/* The online backup API, inside one read transaction on the source: every step copies from the
 * same snapshot, so writes that commit meanwhile neither appear half-way nor restart the copy
 * (WAL readers do not block the writer; the log grows until the copy ends). */
static enum cd_err sq_backup(void *c, const char *path, cd_store_progress_fn progress, void *ctx,
                             struct cd_store_backup_info *info)
{
    struct sq_conn *conn = c;
    struct sq_conn dst; /* the copy, through the same statement helpers */
    sqlite3_backup *b = NULL;
    int64_t version = 0, pages = 0, page_size = 0;
    bool ok = true;
    enum cd_err err;
    int rc;

    memset(&dst, 0, sizeof dst);
    if ((err = sq_begin(c, false)) != CD_OK)
        return err;
    if ((err = sq_exec(c, "SELECT coalesce(max(version),0) FROM schema_version", NULL, 0,
                       version_row, &version, NULL)) != CD_OK)
        goto out;
    if ((rc = sqlite3_open_v2(path, &dst.db, SQLITE_OPEN_READWRITE, NULL)) != SQLITE_OK) {
        err = cd_err_set(CD_ERR_IO, "cannot open %s: %s", path, sqlite3_errstr(rc));
        goto out;
    }
    sqlite3_extended_result_codes(dst.db, 1);
    if ((b = sqlite3_backup_init(dst.db, "main", conn->db, "main")) == NULL) {
        err = sq_err(dst.db, sqlite3_errcode(dst.db), "backup");
        goto out;
    }
    do {
        rc = sqlite3_backup_step(b, BACKUP_STEP_PAGES);
        if (progress && (rc == SQLITE_OK || rc == SQLITE_DONE)) {
            uint64_t total = (uint64_t)sqlite3_backup_pagecount(b);
            progress(ctx, total - (uint64_t)sqlite3_backup_remaining(b), total);
        }
    } while (rc == SQLITE_OK);
    sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE) {
        err = sq_err(dst.db, rc, "backup");
        goto out;
    }
    /* The copy's header still says WAL: a rollback journal makes it one self-contained file
     * that opens read-only as well. Then SQLite's own check of every page and index. */
    if ((err = sq_simple(&dst, "PRAGMA journal_mode=DELETE")) != CD_OK ||
        (err = sq_exec(&dst, "PRAGMA quick_check", NULL, 0, check_row, &ok, NULL)) != CD_OK ||
        (err = sq_exec(&dst, "PRAGMA page_count", NULL, 0, version_row, &pages, NULL)) != CD_OK ||
        (err = sq_exec(&dst, "PRAGMA page_size", NULL, 0, version_row, &page_size, NULL)) !=
            CD_OK)
        goto out;
    if (!ok) {
        err = cd_err_set(CD_ERR_INTEGRITY, "the copy failed PRAGMA quick_check");
        goto out;
    }
    if (info) {
        info->bytes = (uint64_t)(pages * page_size);
        info->schema_version = (int)version;
    }
out:
    sq_rollback(c);
    for (int i = 0; i < STMT_CACHE; i++)
        sqlite3_finalize(dst.cache[i].st);
    if (dst.db && sqlite3_close(dst.db) != SQLITE_OK && err == CD_OK)
        err = cd_err_set(CD_ERR_IO, "cannot close %s", path);
    return err;
}

const struct cd_store_ops cd_store_sqlite_ops = {
    .name = "sqlite",
    .conn_open = sq_open,
    .conn_close = sq_close,
    .exec = sq_exec,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .savepoint = sq_savepoint,
    .release = sq_release,
    .rollback_to = sq_rollback_to,
    .migrate = sq_migrate,
    .integrity_check = sq_integrity,
    .checkpoint = sq_checkpoint,
    .total_changes = sq_total_changes,
    .in_transaction = sq_in_transaction,
    .backup = sq_backup,
};
