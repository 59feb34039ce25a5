/* store — the only way to the database.
 *
 * Owns: the backend ops table (SQLite, the embedded default, and PostgreSQL; one SQL dialect
 * subset), the schema migrations of each backend (numbered alike), one writer thread that
 * batches concurrent writes into one transaction and one fsync (group commit), and a pool of
 * read connections.
 *
 * Contract: a write is a function run inside the writer's transaction; cd_store_write returns only
 * after the transaction that contains it is durable (COMMIT with synchronous=FULL on SQLite,
 * synchronous_commit=on on PostgreSQL) or has failed. One failing write never undoes another in
 * the same batch, and a failed write leaves nothing behind. A write function may run more than
 * once for one write: when a write of the batch fails after changing rows (or, on PostgreSQL, a
 * statement it sent fails when the batch is about to commit), the batch is rolled back and run
 * again with a savepoint per write. So a write function derives everything it outputs anew on each
 * run (no appending to what an earlier run left in ctx) and changes nothing outside the
 * transaction that a rolled-back run would leave wrong.
 *
 * Must never: hold a lock while calling back into domain code other than the transaction
 * function it was given; know what a customer is.
 *
 * Threads: cd_store_write and cd_store_read may be called from any number of threads. The
 * transaction function of a write runs on the writer thread: it must not block on anything but
 * the database, and should do expensive work (parsing, encryption) before cd_store_write.
 * Errors recorded with cd_err_set inside a write are carried back to the caller's thread. */
#ifndef CD_STORE_H
#define CD_STORE_H

#include "base/base.h"

enum cd_val_type { CD_VAL_NULL, CD_VAL_INT, CD_VAL_TEXT, CD_VAL_BLOB };

/* A parameter or column value. Text and blob bytes are borrowed. */
struct cd_val {
    enum cd_val_type type;
    int64_t i;
    const void *p;
    size_t len;
};
#define CD_VNULL ((struct cd_val){CD_VAL_NULL, 0, NULL, 0})
#define CD_VINT(x) ((struct cd_val){CD_VAL_INT, (int64_t)(x), NULL, 0})
#define CD_VTEXT(s) ((struct cd_val){CD_VAL_TEXT, 0, (s).p, (s).len})
#define CD_VCSTR(s) ((struct cd_val){CD_VAL_TEXT, 0, (s), strlen(s)})
#define CD_VBLOB(ptr, n) ((struct cd_val){CD_VAL_BLOB, 0, (ptr), (n)})

/* The most columns a result row hands over; a query selects at most this many (a case row
 * has 47). */
#define CD_STORE_MAX_COLS 64
/* Sets o[key] from a column as the API shows it: a time (milliseconds since the epoch) as an
 * RFC 3339 UTC string, text as a string, a NULL column as null. Errors: CD_ERR_NOMEM. */
enum cd_err cd_val_json_time(json_t *o, const char *key, struct cd_val v);
enum cd_err cd_val_json_text(json_t *o, const char *key, struct cd_val v);

/* Called once per result row; cols are borrowed for the duration of the call. Returning an
 * error stops the query and is returned by cd_tx_exec. */
typedef enum cd_err (*cd_row_fn)(void *ctx, const struct cd_val *cols, size_t ncols);

/* A transaction in progress, handed to transaction functions. */
struct cd_tx;
typedef enum cd_err (*cd_tx_fn)(struct cd_tx *tx, void *ctx);

/* Progress of a long operation: done out of total units (pages for SQLite's backup). */
typedef void (*cd_store_progress_fn)(void *ctx, uint64_t done, uint64_t total);

/* Longest path cd_store_backup takes. */
#define CD_STORE_BACKUP_PATH_MAX 4096

/* What a backup copied. */
struct cd_store_backup_info {
    uint64_t bytes;      /* size of the copy */
    int schema_version;  /* the copy's schema version (a binary that old or newer restores it) */
};

/* How a store is opened (cd_store_open_with). Zero is the default for every field. */
struct cd_store_options {
    /* PostgreSQL: every connection gets this statement_timeout (milliseconds); a statement
     * that runs longer is cancelled and fails with CD_ERR_BUSY. 0 leaves the server's setting
     * (role, database or the URL's options). SQLite ignores it. */
    unsigned statement_timeout_ms;
};

/* The backend interface. Every backend speaks the same SQL subset: $1..$n parameters,
 * INSERT .. ON CONFLICT, RETURNING, standard types (INTEGER, TEXT, BLOB/BYTEA by migration).
 * A parameter's type comes from where the statement uses it, so a parameter compared only
 * with another parameter needs a typed neighbour ('' or 0). Functions that exist in one
 * dialect only (SQLite's hex(), PostgreSQL's encode()) are not part of the subset. */
struct cd_store_ops {
    const char *name;
    /* Opens one connection; writer connections apply pragmas for durability. */
    enum cd_err (*conn_open)(const char *target, bool writer, const struct cd_store_options *o,
                             void **conn);
    void (*conn_close)(void *conn);
    /* Runs sql with params; calls fn per row (may be NULL); *changes gets the number of rows
     * modified (may be NULL). Statements are cached per connection by SQL text. */
    enum cd_err (*exec)(void *conn, const char *sql, const struct cd_val *params, size_t nparams,
                        cd_row_fn fn, void *ctx, int64_t *changes);
    /* Transaction control: "begin" takes the write lock up front when write is true. */
    enum cd_err (*begin)(void *conn, bool write);
    enum cd_err (*commit)(void *conn);
    enum cd_err (*rollback)(void *conn);
    enum cd_err (*savepoint)(void *conn);
    enum cd_err (*release)(void *conn);
    enum cd_err (*rollback_to)(void *conn);
    /* Brings the schema to the newest version this binary knows; CD_ERR_SCHEMA if the database
     * is newer. *from and *to report the versions. */
    enum cd_err (*migrate)(void *conn, int *from, int *to);
    /* Runs the backend's integrity check; CD_ERR_INTEGRITY with a detail if it fails. */
    enum cd_err (*integrity_check)(void *conn);
    /* Moves everything in the write-ahead log into the database and empties the log, so old
     * page images (e.g. of a destroyed key) do not linger in it. */
    enum cd_err (*checkpoint)(void *conn);
    /* A number that grows with every row changed on this connection (successful statements
     * only): equal before and after a failed write means the write left nothing to undo. A
     * backend may count more than the rows (a statement whose outcome is not known yet). */
    int64_t (*total_changes)(void *conn);
    /* False once an error (I/O, disk full, a failed statement on PostgreSQL) made the
     * transaction unusable: it must be rolled back. */
    bool (*in_transaction)(void *conn);
    /* Copies the whole database, as one snapshot taken when the copy starts, into the empty
     * file at path (which the caller created, and removes on failure), while other
     * connections go on reading and writing. The copy must stand alone (no log files beside
     * it), pass the backend's quick consistency check and be on disk when this returns.
     * conn is a read connection outside any transaction; progress may be NULL. NULL when the
     * backend has its own tools for this (PostgreSQL: pg_dump). */
    enum cd_err (*backup)(void *conn, const char *path, cd_store_progress_fn progress, void *ctx,
                          struct cd_store_backup_info *info);
    /* Several servers on one database (NULL members: a database one process serves, SQLite).
     * notify: inside the writer's transaction, announces topic to every server listening,
     * delivered when (and only if) the transaction commits. The feed is a connection of its
     * own, used by one thread: feed_open connects and listens; feed_wait waits up to timeout_ms
     * for announcements and calls fn(ctx, topic, own) for each, own when the feed itself made
     * it; feed_ping announces topic from the feed's connection at once (outside any
     * transaction); feed_lease tries to take the exclusive lock key for as long as the
     * connection lasts, *held telling whether the feed holds it. Errors: CD_ERR_STORE (the
     * connection is lost: close the feed and open another), CD_ERR_NOMEM. */
    enum cd_err (*notify)(void *conn, const char *topic);
    enum cd_err (*feed_open)(const char *target, void **feed);
    enum cd_err (*feed_wait)(void *feed, unsigned timeout_ms,
                             void (*fn)(void *ctx, const char *topic, bool own), void *ctx);
    enum cd_err (*feed_ping)(void *feed, const char *topic);
    enum cd_err (*feed_lease)(void *feed, int64_t key, bool *held);
    void (*feed_close)(void *feed);
};

extern const struct cd_store_ops cd_store_sqlite_ops;
extern const struct cd_store_ops cd_store_pg_ops;

struct cd_store;

struct cd_store_stats {
    uint64_t commits;          /* group-commit transactions */
    uint64_t writes;           /* write functions applied */
    uint64_t commit_ns_total;  /* time in COMMIT (fsync) */
    uint64_t batch_hist[12];   /* batch sizes: 1, 2, 3-4, 5-8, ... , >1024 */
    uint64_t commit_hist[16];  /* commit latency buckets, see cd_store_commit_bucket_le */
};
extern const double cd_store_commit_bucket_le[16]; /* seconds; last is +Inf */
extern const unsigned cd_store_batch_bucket_le[12]; /* last is 0 meaning +Inf */

/* True if url names a PostgreSQL database (postgres:// or postgresql://). */
bool cd_store_url_is_pg(const char *url);

/* Opens the store at url ("sqlite:/path/candor.db", a plain path, or a PostgreSQL URI
 * "postgres://..." / "postgresql://..." as libpq reads it), migrates the schema and starts the
 * writer thread. opts may be NULL (defaults). Errors: CD_ERR_STORE (cannot open or connect;
 * the detail says why, never the password), CD_ERR_SCHEMA (database newer than this binary),
 * CD_ERR_UNSUPPORTED (a PostgreSQL server older than 15, or not UTF8), CD_ERR_NOMEM. The
 * caller owns *out (cd_store_close). */
enum cd_err cd_store_open_with(const char *url, const struct cd_store_options *opts,
                               struct cd_store **out);

/* cd_store_open_with(url, NULL, out). */
enum cd_err cd_store_open(const char *url, struct cd_store **out);

/* Stops the writer after the queued writes are done and closes every connection. */
void cd_store_close(struct cd_store *s);

/* Runs fn(tx, ctx) in the next group-commit transaction and returns once it is durable.
 * Returns fn's error (its changes rolled back), CD_ERR_STORE if the commit failed (nothing of
 * fn remains), CD_ERR_BUSY if the store is shutting down. */
enum cd_err cd_store_write(struct cd_store *s, cd_tx_fn fn, void *ctx);

/* Called once an asynchronous write is durable (err CD_OK, detail "") or has failed (err as
 * cd_store_write would return it, detail its message). Runs on the writer thread: it must be
 * quick, must not block and must not call the store; it only hands the outcome on. */
typedef void (*cd_store_done_fn)(void *ctx, enum cd_err err, const char *detail);

/* cd_store_write without waiting: queues fn(tx, ctx) for the next group commit and returns at
 * once; done(done_ctx, ...) is called exactly once afterwards, when this returned CD_OK. ctx and
 * done_ctx must stay valid until then. Errors (done is not called): CD_ERR_NOMEM, CD_ERR_BUSY.
 * Why: a server thread that waits for every commit is a thread per in-flight request, with two
 * context switches each; this way it goes on to the next request. */
enum cd_err cd_store_write_async(struct cd_store *s, cd_tx_fn fn, void *ctx, cd_store_done_fn done,
                                 void *done_ctx);

/* Runs fn(tx, ctx) in a read transaction (a consistent snapshot) on a pooled connection. */
enum cd_err cd_store_read(struct cd_store *s, cd_tx_fn fn, void *ctx);

/* Runs one statement inside tx. See cd_store_ops.exec. */
enum cd_err cd_tx_exec(struct cd_tx *tx, const char *sql, const struct cd_val *params,
                       size_t nparams, cd_row_fn fn, void *ctx, int64_t *changes);

/* Convenience: runs a query expected to return at most one row with one integer column.
 * Returns CD_ERR_NOT_FOUND when there is no row. */
enum cd_err cd_tx_int(struct cd_tx *tx, const char *sql, const struct cd_val *params,
                      size_t nparams, int64_t *out);

/* A number that stays the same while tx's writes are neither undone nor committed: the writer
 * changes it at every BEGIN, ROLLBACK and ROLLBACK TO. A write function may keep what it
 * derived from its own writes (the audit ledger's head) across writes of one batch while the
 * number holds; a rerun after a rollback sees a new number. 0 (never a writer's number) on a
 * read transaction. */
uint64_t cd_tx_epoch(struct cd_tx *tx);

/* The store this transaction belongs to. */
struct cd_store *cd_tx_store(struct cd_tx *tx);

/* Services a write function reaches through its transaction: a module whose functions run
 * inside other modules' writes and need state of their own (the outbox seals personal
 * members with a key) finds it here rather than in a process-wide variable, so two stores in
 * one process keep theirs apart. The store only keeps the pointer. Set once when the service
 * opens and cleared when it closes (NULL), before and after the writes that use it. */
enum cd_store_service { CD_STORE_SERVICE_OUTBOX, CD_STORE_SERVICE__COUNT };
void cd_store_service_set(struct cd_store *s, enum cd_store_service which, void *p);
/* The pointer set for which, or NULL. Any thread. */
void *cd_store_service(struct cd_store *s, enum cd_store_service which);

/* True if the database answers a trivial query (for /readyz). */
bool cd_store_ping(struct cd_store *s);

/* Runs the backend integrity check on a read connection. */
enum cd_err cd_store_integrity_check(struct cd_store *s);

/* Checkpoints and truncates the write-ahead log on the writer connection, between batches.
 * PostgreSQL: a CHECKPOINT when the role may run one (superuser or pg_checkpoint), else
 * nothing (the server checkpoints on its own schedule); see docs/architecture.md.
 * Errors: CD_ERR_BUSY (readers kept it from completing), CD_ERR_STORE. */
enum cd_err cd_store_checkpoint(struct cd_store *s);

/* Writes a consistent copy of the database to path, created 0600, while the store (and any
 * server on the same database) goes on serving: every write committed before the copy started
 * is in it, none that committed later is. The copy is made as path.partial and linked to path
 * only once complete and synced, so path never holds half a copy and an existing file is
 * never replaced. progress (may be NULL) is called on this thread. *info (may be NULL) gets
 * the size and schema version. Keys are not part of the database and not in the copy.
 * Errors: CD_ERR_CONFLICT (path or path.partial exists), CD_ERR_IO (cannot create, sync or
 * link the file; the detail names it), CD_ERR_STORE, CD_ERR_INTEGRITY (the copy failed its
 * check), CD_ERR_UNSUPPORTED (PostgreSQL: the detail says to use pg_dump), CD_ERR_NOMEM. On
 * error nothing is left at path or path.partial. */
enum cd_err cd_store_backup(struct cd_store *s, const char *path, cd_store_progress_fn progress,
                            void *ctx, struct cd_store_backup_info *info);

/* A snapshot of the counters, for /metrics. */
void cd_store_get_stats(struct cd_store *s, struct cd_store_stats *out);

/* The backend name ("sqlite", "postgres"). */
const char *cd_store_backend(const struct cd_store *s);

/* ---- several servers on one database ----
 *
 * On PostgreSQL any number of `candor serve` processes may share one database (SQLite has one
 * process). What they need from the store:
 * - One writer at a time across all of them: the writer's transaction takes one exclusive
 *   transaction lock as it begins (sent with BEGIN, no extra round trip), so the group commits
 *   of all servers follow one another and each sees everything committed before it. The audit
 *   ledger's order is that order, an Idempotency-Key checked inside a write sees a key stored by
 *   any server, and no two servers' writes conflict on a row.
 * - Announcements: a write that changes what other servers keep in memory (consent, an
 *   identity's owner, a revoked token) announces a topic inside its transaction
 *   (cd_tx_notify); every server's feed thread receives it once the transaction commits and
 *   hands it to the change function given to cd_store_feed_start, in commit order.
 * - A bound on staleness: the feed thread announces a ping of its own every
 *   CD_STORE_FEED_PING_MS; when its ping comes back, every change committed before the ping was
 *   sent has been handed on. cd_store_feed_fresh_ms tells up to when, so a server can refuse to
 *   decide on data older than CD_STORE_FEED_BOUND_MS once it has seen another server.
 * - A lease: cd_store_lease_held tells whether this process holds the one lease of the
 *   database (the signer of audit tree heads). It is a lock held by the feed's session, so a
 *   server that dies or loses its connection loses it, and another takes it within a second. */

/* How often the feed pings, and how old the newest confirmed ping may be before a server says
 * its view of the other servers' changes is out of date. */
#define CD_STORE_FEED_PING_MS 100
#define CD_STORE_FEED_BOUND_MS 1000

/* True when other processes may write the same database (PostgreSQL). */
bool cd_store_shared(const struct cd_store *s);

/* Announces topic (a short ASCII string, at most 200 bytes: "consent.events", ...) to every
 * server's feed once tx commits; nothing if it rolls back. Repeats within one transaction are
 * announced once. A no-op on a store that is not shared and on a read transaction.
 * Errors: CD_ERR_STORE, CD_ERR_INVALID (topic too long). */
enum cd_err cd_tx_notify(struct cd_tx *tx, const char *topic);

/* Called on the feed thread: topic is an announcement of another server or of this one (each
 * once, in commit order); NULL means "everything may have changed": the feed was (re)connected
 * and announcements made meanwhile are lost, so whatever is kept in memory must be read again
 * (a full resync). It may read the store; it must not write. */
typedef void (*cd_store_change_fn)(void *ctx, const char *topic);

/* Starts the feed thread of a shared store (none on one that is not; CD_OK either way). The
 * first connection is made before this returns, so a change committed after it is delivered.
 * fn(ctx, NULL) is not called for the first connection. ctx must outlive cd_store_feed_stop.
 * Errors: CD_ERR_STORE (cannot connect), CD_ERR_INTERNAL (thread), CD_ERR_INVALID (started). */
enum cd_err cd_store_feed_start(struct cd_store *s, cd_store_change_fn fn, void *ctx);

/* Stops the feed thread (and gives the lease up). Safe when not started. */
void cd_store_feed_stop(struct cd_store *s);

/* The time (ms since the epoch) up to which every change committed by any server has been
 * handed to the change function; INT64_MAX for a store that is not shared, has no feed, or has
 * never seen another server's ping (alone on its database, it has no one's changes to miss;
 * once another server was seen, the mark counts for the rest of the store's life). */
int64_t cd_store_feed_fresh_ms(struct cd_store *s);

/* True when this process may act as the one signer among the servers: always on a store that
 * is not shared or has no feed thread; otherwise while the feed's session holds the lease
 * (the feed tries to take it every CD_STORE_FEED_PING_MS while it does not). */
bool cd_store_lease_held(struct cd_store *s);

/* Fault injection (CD_FAULT_INJECTION builds only; a no-op otherwise): the nth statement run
 * by the next write submitted from this thread fails with CD_ERR_STORE, as a disk I/O error
 * would. */
void cd_store_fault_nth_exec(long n);

#endif
