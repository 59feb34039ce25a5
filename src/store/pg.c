/* The PostgreSQL backend (libpq), for deployments whose operations run on PostgreSQL or that
 * outgrow one machine's disk. It keeps the store's contract as the SQLite backend does:
 *
 * - Durability: every connection sets synchronous_commit=on, and the writer's answer waits for
 *   COMMIT's reply, which PostgreSQL sends after the commit record is flushed.
 * - Transactions: the writer's group commit is one READ COMMITTED transaction (there is one
 *   writer per process); a read is a REPEATABLE READ, READ ONLY transaction, one snapshot.
 * - Prepared statements, cached per connection by SQL text like SQLite's (a named statement
 *   prepared and described once; the description gives each parameter's type, which decides
 *   how a value is sent: binary integers and bytes, no text formatting or escaping).
 * - Pipeline mode: every connection stays in libpq's pipeline mode. A statement whose outcome
 *   the caller does not read (no rows wanted, no change count) is sent without waiting for its
 *   reply while the writer's transaction is optimistic (no savepoints), and BEGIN travels with
 *   the first statement; the replies are read at the next statement that needs one. So an
 *   ingestion's inserts (interaction, identity, idempotency key, audit entry) cost one round
 *   trip instead of four. A deferred statement that failed is reported by in_transaction at the
 *   latest, before COMMIT, and the store then runs the batch again with a savepoint per write,
 *   where nothing is deferred and each statement's error reaches its own write.
 * - A lost connection (server restarted, network cut) fails what was in flight with
 *   CD_ERR_STORE (503 at the HTTP edge; the outcome of a COMMIT in flight is unknown, and an
 *   Idempotency-Key makes the retry safe) and is opened again at the next transaction; the
 *   first statement of a transaction is retried once on a new connection, since nothing of the
 *   transaction can have happened.
 * - Large results arrive row by row (libpq's single-row mode) for ordered scans without LIMIT,
 *   so a scan of the whole ledger does not sit in memory at once. */
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "store.h"
#include "store_int.h"

#define STMT_CACHE 256
#define STMT_PROBE 16
#define MAX_PARAMS 64
#define MAX_COLS CD_STORE_MAX_COLS
#define QUEUE_MAX 256          /* replies awaited; a longer pipeline is read first */
#define MIN_SERVER 150000      /* PostgreSQL 15 */
#define MIGRATE_LOCK "7146378697419468402" /* pg_advisory_xact_lock key of migrations */
/* The writers' lock: every writer transaction of every server takes it as it begins (see
 * store.h, "several servers on one database"). */
#define WRITER_LOCK "7146378697419468404"
/* Taken by every writer transaction as it begins, held to its COMMIT or ROLLBACK: the group
 * commits of all servers on the database follow one another. Why at BEGIN rather than at the
 * first audit append: nearly every write appends to the ledger, and a write that checks before
 * it inserts (an Idempotency-Key, a customer for an identity) must see what another server's
 * writer committed, not conflict with it. */
#define WRITER_LOCK_SQL "SELECT pg_advisory_xact_lock(" WRITER_LOCK ")"
#define FEED_CHANNEL "candor" /* LISTEN/NOTIFY channel of the servers' announcements */

/* Type OIDs of pg_type (fixed in PostgreSQL's catalog since long ago). */
enum {
    OID_BOOL = 16,
    OID_BYTEA = 17,
    OID_CHAR = 18,
    OID_NAME = 19,
    OID_INT8 = 20,
    OID_INT2 = 21,
    OID_INT4 = 23,
    OID_TEXT = 25,
    OID_OID = 26,
    OID_UNKNOWN = 705,
    OID_BPCHAR = 1042,
    OID_VARCHAR = 1043,
};

struct pg_stmt {
    const char *sql; /* borrowed: callers pass static SQL text */
    size_t len;
    int nparams;
    Oid *types;  /* nparams types, as the server inferred them */
    uint64_t unused; /* bit k-1: the text never names $k (sent as NULL) */
    bool stream; /* rows are read one at a time (ORDER BY without LIMIT: may be large) */
    char name[16];
};

/* What a queued reply belongs to. */
enum q_kind {
    Q_SYNC,     /* the end of a pipeline segment */
    Q_DEFERRED, /* a statement nobody waits for: a failure is kept for in_transaction */
    Q_CONTROL,  /* BEGIN sent ahead: a failure is kept likewise */
    Q_IGNORE,   /* a reader's ROLLBACK: only a lost connection matters */
    Q_WANTED,   /* the statement being run: rows, change count, error */
    Q_PREPARE,  /* preparing the statement being run */
    Q_DESCRIBE, /* its parameter types */
};

struct pg_conn {
    PGconn *pg;
    char *target;
    bool writer;
    unsigned timeout_ms;
    struct pg_stmt cache[STMT_CACHE];
    unsigned next_name;
    int64_t changes;        /* total_changes: rows changed, plus one per deferred statement */
    bool broken;            /* the connection was lost: open it again at the next transaction */
    bool in_tx;             /* between begin and commit or rollback */
    bool tx_fresh;          /* in_tx, and nothing but BEGIN sent yet */
    bool rw_tx;             /* the writer's transaction: replies nobody reads are deferred */
    bool careful;           /* savepoints in use: every statement is awaited */
    bool checkpoint_denied; /* the role may not run CHECKPOINT */
    uint8_t q[QUEUE_MAX];
    unsigned qhead, qlen;
    enum cd_err derr; /* first failure of a deferred statement in this transaction */
    char derr_detail[256];
    char sqlstate[6]; /* of the last error */
};

/* Where the replies of the statement being run go. */
struct sink {
    cd_row_fn fn;
    void *ctx;
    int64_t *changes;
    struct pg_stmt *describe; /* Q_DESCRIBE fills its parameter types */
    size_t rows;              /* rows handed to fn */
    char tag[16];             /* the command tag, e.g. "COMMIT" */
};

static void q_push(struct pg_conn *c, enum q_kind k)
{
    c->q[(c->qhead + c->qlen++) % QUEUE_MAX] = (uint8_t)k;
}

static enum q_kind q_pop(struct pg_conn *c)
{
    enum q_kind k = c->q[c->qhead];
    c->qhead = (c->qhead + 1) % QUEUE_MAX;
    c->qlen--;
    return k;
}

static enum q_kind q_last(const struct pg_conn *c)
{
    return c->q[(c->qhead + c->qlen - 1) % QUEUE_MAX];
}

/* The first line of a libpq message (they end in newlines and hints). */
static const char *first_line(const char *msg, char *buf, size_t n)
{
    size_t len = msg ? strcspn(msg, "\n") : 0;

    snprintf(buf, n, "%.*s", (int)len, msg ? msg : "");
    return buf;
}

static void forget_statements(struct pg_conn *c)
{
    for (int i = 0; i < STMT_CACHE; i++) {
        cd_free(c->cache[i].types);
        memset(&c->cache[i], 0, sizeof c->cache[i]);
    }
}

/* Marks the connection lost: it is opened again at the next transaction. */
static enum cd_err lost(struct pg_conn *c, const char *msg)
{
    char line[200];

    if (!c->broken)
        cd_log(CD_LOG_WARN, "store.pg_connection_lost", "\"writer\":%s,\"sqlstate\":\"%s\"",
               c->writer ? "true" : "false", c->sqlstate[0] ? c->sqlstate : "none");
    c->broken = true;
    c->qlen = 0;
    return cd_err_set(CD_ERR_STORE, "the connection to PostgreSQL was lost (%s)",
                      first_line(msg && msg[0] ? msg : PQerrorMessage(c->pg), line, sizeof line));
}

/* Maps a failed result to a cd_err with a detail. Messages of data exceptions (class 22) can
 * quote the value, which may be personal data: only their SQLSTATE is given. */
static enum cd_err result_err(struct pg_conn *c, const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    char line[200];

    snprintf(c->sqlstate, sizeof c->sqlstate, "%s", state ? state : "");
    if (msg == NULL)
        msg = res ? PQresultErrorMessage(res) : PQerrorMessage(c->pg);
    first_line(msg, line, sizeof line);
    if (PQstatus(c->pg) == CONNECTION_BAD || state == NULL ||
        strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0)
        return lost(c, line);
    if (strncmp(state, "23", 2) == 0)
        return cd_err_set(CD_ERR_CONFLICT, "constraint violated: %s (SQLSTATE %s)", line, state);
    if (strcmp(state, "57014") == 0)
        return cd_err_set(CD_ERR_BUSY, "the database cancelled the statement: %s", line);
    if (strcmp(state, "55P03") == 0 || strcmp(state, "40001") == 0 ||
        strcmp(state, "40P01") == 0 || strcmp(state, "53300") == 0)
        return cd_err_set(CD_ERR_BUSY, "the database is busy: %s", line);
    if (strcmp(state, "53100") == 0)
        return cd_err_set(CD_ERR_STORE, "the database server is out of disk space: %s", line);
    if (strcmp(state, "22021") == 0)
        return cd_err_set(CD_ERR_INVALID, "text that is not valid UTF-8 (or holds a NUL "
                                          "character) cannot be stored");
    if (strncmp(state, "22", 2) == 0)
        return cd_err_set(CD_ERR_INVALID, "a value does not fit its column (SQLSTATE %s)",
                          state);
    if (strcmp(state, "XX001") == 0 || strcmp(state, "XX002") == 0)
        return cd_err_set(CD_ERR_INTEGRITY, "the database reports damage: %s", line);
    return cd_err_set(CD_ERR_STORE, "%s (SQLSTATE %s)", line, state);
}

/* A libpq call that could not even send: the connection is gone, or the call was wrong. */
static enum cd_err send_err(struct pg_conn *c)
{
    char line[200];

    if (PQstatus(c->pg) == CONNECTION_BAD)
        return lost(c, NULL);
    return cd_err_set(CD_ERR_STORE, "libpq: %s",
                      first_line(PQerrorMessage(c->pg), line, sizeof line));
}

/* Rows changed by a command, from its tag ("INSERT 0 3", "UPDATE 2"); 0 for other commands. */
static int64_t dml_rows(const PGresult *res)
{
    const char *tag = PQcmdStatus((PGresult *)res);

    if (strncmp(tag, "INSERT ", 7) && strncmp(tag, "UPDATE ", 7) && strncmp(tag, "DELETE ", 7) &&
        strncmp(tag, "MERGE ", 6))
        return 0;
    return strtoll(PQcmdTuples((PGresult *)res), NULL, 10);
}

/* Hands every row of res to the sink, columns decoded from the binary format. */
static enum cd_err deliver(const PGresult *res, struct sink *sk)
{
    struct cd_val cols[MAX_COLS];
    int n = PQnfields(res), rows = PQntuples(res);
    enum cd_err err;

    if (n > MAX_COLS)
        n = MAX_COLS;
    for (int r = 0; r < rows; r++) {
        for (int j = 0; j < n; j++) {
            const char *p = PQgetvalue(res, r, j);
            int len = PQgetlength(res, r, j);
            Oid t = PQftype(res, j);
            uint64_t u = 0;

            if (PQgetisnull(res, r, j)) {
                cols[j] = CD_VNULL;
                continue;
            }
            switch (t) {
            case OID_INT8:
            case OID_INT4:
            case OID_INT2:
            case OID_OID:
            case OID_BOOL:
                if (len != 8 && len != 4 && len != 2 && len != 1)
                    return cd_err_set(CD_ERR_STORE, "column %d: an integer of %d bytes", j, len);
                memcpy((char *)&u + (8 - len), p, (size_t)len);
                u = be64toh(u);
                /* Signed types are sign-extended from their width; oid and bool are not. */
                if (t == OID_INT4)
                    cols[j] = CD_VINT((int32_t)u);
                else if (t == OID_INT2)
                    cols[j] = CD_VINT((int16_t)u);
                else
                    cols[j] = CD_VINT(t == OID_INT8 ? (int64_t)u : (int64_t)(uint32_t)u);
                break;
            case OID_BYTEA:
                cols[j] = (struct cd_val){CD_VAL_BLOB, 0, p, (size_t)len};
                break;
            case OID_TEXT:
            case OID_VARCHAR:
            case OID_BPCHAR:
            case OID_NAME:
            case OID_CHAR:
            case OID_UNKNOWN:
                cols[j] = (struct cd_val){CD_VAL_TEXT, 0, p, (size_t)len};
                break;
            default:
                return cd_err_set(CD_ERR_STORE, "column %d has a type the store does not read "
                                                "(OID %u); cast it to bigint, text or bytea",
                                  j, (unsigned)t);
            }
        }
        sk->rows++;
        if ((err = sk->fn(sk->ctx, cols, (size_t)n)) != CD_OK)
            return err;
    }
    return CD_OK;
}

/* Keeps a deferred statement's failure for in_transaction and the statements after it. */
static void keep_deferred(struct pg_conn *c, enum cd_err err)
{
    if (c->derr != CD_OK)
        return;
    c->derr = err;
    snprintf(c->derr_detail, sizeof c->derr_detail, "%s", cd_err_detail());
}

/* Reads the replies of one queued command into the sink. Returns its error (Q_WANTED,
 * Q_PREPARE, Q_DESCRIBE) or CD_OK (the others keep theirs in c->derr). */
static enum cd_err read_command(struct pg_conn *c, enum q_kind k, struct sink *sk,
                                enum cd_err *fn_err)
{
    enum cd_err err = CD_OK;
    PGresult *res;

    while ((res = PQgetResult(c->pg)) != NULL) {
        ExecStatusType st = PQresultStatus(res);
        enum cd_err e = CD_OK;

        switch (st) {
        case PGRES_SINGLE_TUPLE:
        case PGRES_TUPLES_OK:
        case PGRES_COMMAND_OK:
            if (k == Q_DEFERRED || k == Q_WANTED)
                c->changes += dml_rows(res);
            if (k == Q_WANTED && sk) {
                if (sk->changes)
                    *sk->changes = dml_rows(res);
                snprintf(sk->tag, sizeof sk->tag, "%s", PQcmdStatus(res));
                if (sk->fn && *fn_err == CD_OK && st != PGRES_COMMAND_OK)
                    *fn_err = deliver(res, sk);
            }
            if (k == Q_DESCRIBE && sk && sk->describe) {
                struct pg_stmt *d = sk->describe;
                d->nparams = PQnparams(res);
                if (d->nparams > MAX_PARAMS) {
                    e = cd_err_set(CD_ERR_INTERNAL, "a statement with %d parameters", d->nparams);
                } else if (d->nparams > 0 &&
                           (d->types = cd_calloc((size_t)d->nparams, sizeof *d->types)) == NULL) {
                    e = CD_ERR_NOMEM;
                } else {
                    for (int i = 0; i < d->nparams; i++)
                        d->types[i] = PQparamtype(res, i);
                }
            }
            break;
        case PGRES_PIPELINE_ABORTED:
            /* An earlier command of this segment failed; its error is what happened. */
            if (k == Q_WANTED || k == Q_PREPARE || k == Q_DESCRIBE)
                e = c->derr != CD_OK ? cd_err_set(c->derr, "%s", c->derr_detail)
                                     : cd_err_set(CD_ERR_STORE, "an earlier statement of this "
                                                                "transaction failed");
            break;
        default:
            e = result_err(c, res);
            if (k == Q_DEFERRED || k == Q_CONTROL)
                keep_deferred(c, e);
            break;
        }
        PQclear(res);
        if (c->broken)
            return CD_ERR_STORE; /* the detail was set by lost() */
        if (e != CD_OK && (k == Q_WANTED || k == Q_PREPARE || k == Q_DESCRIBE) && err == CD_OK)
            err = e;
    }
    return err;
}

/* Ends the pipeline segment (a Sync, unless one is last) and reads every queued reply in
 * order. Returns the first error of an awaited command, else the error of the sink's row
 * function, else CD_OK (deferred failures are kept in c->derr). */
static enum cd_err drain(struct pg_conn *c, struct sink *sk)
{
    enum cd_err err = CD_OK, fn_err = CD_OK, e;
    char detail[512] = "";

    if (c->qlen == 0)
        return CD_OK;
    if (q_last(c) != Q_SYNC) {
        if (!PQpipelineSync(c->pg))
            return send_err(c);
        q_push(c, Q_SYNC);
    }
    while (c->qlen > 0) {
        enum q_kind k = q_pop(c);
        if (k == Q_SYNC) {
            PGresult *res = PQgetResult(c->pg);
            ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
            if (st != PGRES_PIPELINE_SYNC) {
                e = res ? result_err(c, res) : lost(c, NULL);
                PQclear(res);
                if (!c->broken)
                    lost(c, "the reply to a Sync was missing");
                return e;
            }
            PQclear(res);
            continue;
        }
        e = read_command(c, k, sk, &fn_err);
        if (c->broken)
            return CD_ERR_STORE;
        if (e != CD_OK && err == CD_OK) {
            err = e;
            snprintf(detail, sizeof detail, "%s", cd_err_detail());
        }
    }
    if (err != CD_OK)
        return cd_err_set(err, "%s", detail);
    return fn_err;
}

/* Session settings, on every new connection. */
static enum cd_err session_setup(struct pg_conn *c)
{
    char sql[256], line[200];
    PGresult *res;
    ExecStatusType st;

    snprintf(sql, sizeof sql,
             "SET client_min_messages = error; SET synchronous_commit = on;"
             " SET client_encoding = 'UTF8'%s",
             c->timeout_ms ? "; SET statement_timeout = " : "");
    if (c->timeout_ms)
        snprintf(sql + strlen(sql), sizeof sql - strlen(sql), "%u", c->timeout_ms);
    res = PQexec(c->pg, sql);
    st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    PQclear(res);
    if (st != PGRES_COMMAND_OK)
        return cd_err_set(CD_ERR_STORE, "cannot set up the PostgreSQL session: %s",
                          first_line(PQerrorMessage(c->pg), line, sizeof line));
    return CD_OK;
}

/* Notices (e.g. "relation already exists, skipping") are not Candor's log lines. */
static void no_notices(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static enum cd_err pg_connect(struct pg_conn *c)
{
    /* The URL comes last so that what it says wins over these defaults. */
    static const char *const kw[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *val[] = {"5", "candor", c->target, NULL};
    char line[200];
    const char *enc;
    enum cd_err err;

    c->pg = PQconnectdbParams(kw, val, 1);
    if (c->pg == NULL)
        return CD_ERR_NOMEM;
    if (PQstatus(c->pg) != CONNECTION_OK) {
        err = cd_err_set(CD_ERR_STORE, "cannot connect to PostgreSQL: %s",
                         first_line(PQerrorMessage(c->pg), line, sizeof line));
        goto fail;
    }
    PQsetNoticeProcessor(c->pg, no_notices, NULL);
    if (PQserverVersion(c->pg) < MIN_SERVER) {
        err = cd_err_set(CD_ERR_UNSUPPORTED, "PostgreSQL %d is too old: Candor needs 15 or newer",
                         PQserverVersion(c->pg) / 10000);
        goto fail;
    }
    enc = PQparameterStatus(c->pg, "server_encoding");
    if (enc == NULL || strcmp(enc, "UTF8") != 0) {
        err = cd_err_set(CD_ERR_UNSUPPORTED,
                         "the database's encoding is %s; Candor needs UTF8 (CREATE DATABASE ... "
                         "ENCODING 'UTF8' TEMPLATE template0)",
                         enc ? enc : "unknown");
        goto fail;
    }
    if ((err = session_setup(c)) != CD_OK)
        goto fail;
    if (!PQenterPipelineMode(c->pg)) {
        err = send_err(c);
        goto fail;
    }
    c->broken = false;
    c->qlen = 0;
    return CD_OK;
fail:
    PQfinish(c->pg);
    c->pg = NULL;
    c->broken = true;
    return err;
}

/* Opens the connection again: prepared statements and queued replies went with the old one. */
static enum cd_err reconnect(struct pg_conn *c)
{
    enum cd_err err;

    PQfinish(c->pg);
    c->pg = NULL;
    forget_statements(c);
    c->qlen = 0;
    c->derr = CD_OK;
    c->checkpoint_denied = false;
    if ((err = pg_connect(c)) == CD_OK)
        cd_log(CD_LOG_INFO, "store.pg_reconnected", "\"writer\":%s", c->writer ? "true" : "false");
    return err;
}

static void pg_close(void *cv)
{
    struct pg_conn *c = cv;

    if (c == NULL)
        return;
    PQfinish(c->pg);
    forget_statements(c);
    cd_free(c->target);
    cd_free(c);
}

static enum cd_err pg_open(const char *target, bool writer, const struct cd_store_options *o,
                           void **out)
{
    struct pg_conn *c = cd_calloc(1, sizeof *c);
    enum cd_err err;

    if (c == NULL)
        return CD_ERR_NOMEM;
    c->writer = writer;
    c->timeout_ms = o ? o->statement_timeout_ms : 0;
    if ((c->target = cd_strdup(target)) == NULL) {
        err = CD_ERR_NOMEM;
        goto fail;
    }
    if ((err = pg_connect(c)) != CD_OK)
        goto fail;
    *out = c;
    return CD_OK;
fail:
    pg_close(c);
    return err;
}

/* Marks in used[k] each parameter $k that sql refers to, outside quotes and comments, and
 * returns the highest k (-1 if above MAX_PARAMS). */
static int scan_params(const char *sql, bool used[MAX_PARAMS + 1])
{
    int max = 0;

    for (const char *p = sql; *p; p++) {
        if (*p == '\'' || *p == '"') {
            char q = *p;
            for (p++; *p; p++) {
                if (*p == q && p[1] == q)
                    p++; /* a doubled quote stands for itself */
                else if (*p == q)
                    break;
            }
            if (*p == '\0')
                break;
        } else if (p[0] == '-' && p[1] == '-') {
            p += strcspn(p, "\n");
            if (*p == '\0')
                break;
        } else if (p[0] == '/' && p[1] == '*') {
            const char *end = strstr(p + 2, "*/");
            if (end == NULL)
                break;
            p = end + 1;
        } else if (p[0] == '$' && p[1] >= '0' && p[1] <= '9') {
            int k = 0;
            for (p++; *p >= '0' && *p <= '9'; p++)
                if ((k = k * 10 + (*p - '0')) > MAX_PARAMS)
                    return -1;
            used[k] = true;
            if (k > max)
                max = k;
            p--;
        }
    }
    return max;
}

/* Prepares sql under st->name and learns its parameter types: one round trip, once per
 * connection. A caller may pass more parameters than one statement of several uses; one the
 * text never names gets type bytea (the server cannot infer one) and is sent as NULL. */
static enum cd_err prepare(struct pg_conn *c, const char *sql, struct pg_stmt *st)
{
    bool used[MAX_PARAMS + 1] = {false};
    Oid hint[MAX_PARAMS];
    int max = scan_params(sql, used);
    struct sink sk = {.describe = st};

    if (max < 0)
        return cd_err_set(CD_ERR_INTERNAL, "a statement with more than %d parameters",
                          MAX_PARAMS);
    st->unused = 0;
    for (int k = 1; k <= max; k++) {
        hint[k - 1] = used[k] ? 0 : OID_BYTEA;
        if (!used[k])
            st->unused |= (uint64_t)1 << (k - 1);
    }
    st->stream = strstr(sql, "ORDER BY") != NULL && strstr(sql, "LIMIT") == NULL;
    if (!PQsendPrepare(c->pg, st->name, sql, max, hint))
        return send_err(c);
    q_push(c, Q_PREPARE);
    if (!PQsendDescribePrepared(c->pg, st->name))
        return send_err(c);
    q_push(c, Q_DESCRIBE);
    return drain(c, &sk);
}

/* The prepared statement for sql: from the cache, or prepared now. When the probed slots are
 * all taken the statement is prepared unnamed in *tmp, which the caller frees. */
static enum cd_err stmt_get(struct pg_conn *c, const char *sql, struct pg_stmt **out,
                            struct pg_stmt *tmp)
{
    size_t len = strlen(sql);
    unsigned slot = cd__store_sql_slot(sql, len, STMT_CACHE);
    struct pg_stmt *st = tmp;
    enum cd_err err;

    for (unsigned i = 0; i < STMT_PROBE; i++) {
        struct pg_stmt *k = &c->cache[(slot + i) % STMT_CACHE];
        if (k->sql == NULL) {
            st = k;
            break;
        }
        if (k->len == len && memcmp(k->sql, sql, len) == 0) {
            *out = k;
            return CD_OK;
        }
    }
    memset(st, 0, sizeof *st);
    if (st != tmp)
        snprintf(st->name, sizeof st->name, "cd%u", c->next_name++);
    if ((err = prepare(c, sql, st)) != CD_OK) {
        cd_free(st->types);
        memset(st, 0, sizeof *st);
        return err;
    }
    st->sql = sql;
    st->len = len;
    *out = st;
    return CD_OK;
}

struct bound {
    const char *values[MAX_PARAMS];
    int lengths[MAX_PARAMS], formats[MAX_PARAMS];
    uint64_t ints[MAX_PARAMS];
    char text[MAX_PARAMS][24];
};

/* Bytes of a binary integer of type t; 0 for a type that is not an integer. */
static size_t int_width(Oid t)
{
    switch (t) {
    case OID_INT8:
        return 8;
    case OID_INT4:
        return 4;
    case OID_INT2:
        return 2;
    case OID_BOOL:
        return 1;
    default:
        return 0;
    }
}

/* Puts each value in the form its parameter's type takes: integers in binary of the right
 * width, text and bytes as they are (binary text is the UTF-8 bytes; the server checks them),
 * an integer for any other type as decimal text. */
static enum cd_err bind_params(const struct pg_stmt *st, const struct cd_val *p, size_t n,
                               struct bound *b)
{
    if ((size_t)st->nparams > n)
        return cd_err_set(CD_ERR_INTERNAL, "the statement takes %d parameters, %zu given",
                          st->nparams, n);
    for (int i = 0; i < st->nparams; i++) {
        const struct cd_val *v = &p[i];
        Oid t = st->types[i];
        size_t width = int_width(t);

        b->formats[i] = 1;
        b->lengths[i] = 0;
        b->values[i] = NULL;
        if (v->type == CD_VAL_NULL || ((st->unused >> i) & 1))
            continue;
        if (v->type == CD_VAL_INT && width) {
            /* int2 and int4 must hold the value; a boolean takes any, as true or false. */
            int64_t half = width == 2 || width == 4 ? INT64_C(1) << (8 * width - 1) : 0;
            uint64_t u;
            if (half && (v->i < -half || v->i >= half))
                return cd_err_set(CD_ERR_INVALID, "parameter %d: %lld is out of range", i + 1,
                                  (long long)v->i);
            u = htobe64(t == OID_BOOL ? (uint64_t)(v->i != 0) : (uint64_t)v->i);
            b->ints[i] = u;
            b->values[i] = (const char *)&b->ints[i] + (8 - width);
            b->lengths[i] = (int)width;
        } else if (v->type == CD_VAL_INT) {
            snprintf(b->text[i], sizeof b->text[i], "%lld", (long long)v->i);
            b->values[i] = b->text[i];
            b->formats[i] = 0;
        } else if (width == 0) {
            if (v->len > INT32_MAX)
                return cd_err_set(CD_ERR_TOO_BIG, "parameter %d is too large", i + 1);
            b->values[i] = v->p ? v->p : "";
            b->lengths[i] = (int)v->len;
        } else {
            return cd_err_set(CD_ERR_INTERNAL, "parameter %d: text or bytes for an integer "
                                               "column", i + 1);
        }
    }
    return CD_OK;
}

/* Sends a command without parameters (transaction control) and queues its reply. */
static enum cd_err send_control(struct pg_conn *c, const char *sql, enum q_kind k)
{
    if (c->qlen + 2 >= QUEUE_MAX) {
        enum cd_err err = drain(c, NULL);
        if (c->broken)
            return err;
    }
    if (!PQsendQueryParams(c->pg, sql, 0, NULL, NULL, NULL, NULL, 1))
        return send_err(c);
    q_push(c, k);
    return CD_OK;
}

static enum cd_err exec_once(struct pg_conn *c, const char *sql, const struct cd_val *params,
                             size_t nparams, cd_row_fn fn, void *ctx, int64_t *changes,
                             size_t *rows)
{
    struct pg_stmt *st = NULL, tmp;
    struct bound b;
    struct sink sk = {fn, ctx, changes, NULL, 0, ""};
    bool defer = c->rw_tx && !c->careful && fn == NULL && changes == NULL;
    enum cd_err err;

    if (c->broken || c->pg == NULL)
        return cd_err_set(CD_ERR_STORE, "the connection to PostgreSQL was lost");
    memset(&tmp, 0, sizeof tmp);
    if ((err = stmt_get(c, sql, &st, &tmp)) != CD_OK)
        return err;
    if ((err = bind_params(st, params, nparams, &b)) != CD_OK)
        goto out;
    /* Single-row mode applies to the command at the head of the pipeline: a scan that may be
     * large waits for the replies ahead of it. */
    bool single = fn && st->stream;
    if ((c->qlen + 2 >= QUEUE_MAX || (single && c->qlen)) && (err = drain(c, NULL)) != CD_OK)
        goto out;
    if (c->broken) {
        err = cd_err_set(CD_ERR_STORE, "the connection to PostgreSQL was lost");
        goto out;
    }
    if (!PQsendQueryPrepared(c->pg, st->name, st->nparams, b.values, b.lengths, b.formats, 1)) {
        err = send_err(c);
        goto out;
    }
    if (defer) {
        q_push(c, Q_DEFERRED);
        c->changes++; /* it may change rows: a write that fails later must be undone */
        goto out;
    }
    if (single)
        PQsetSingleRowMode(c->pg);
    q_push(c, Q_WANTED);
    err = drain(c, &sk);
    *rows = sk.rows;
out:
    if (st == &tmp)
        cd_free(tmp.types);
    return err;
}

static enum cd_err pg_exec(void *cv, const char *sql, const struct cd_val *params, size_t nparams,
                           cd_row_fn fn, void *ctx, int64_t *changes)
{
    struct pg_conn *c = cv;
    bool fresh = c->tx_fresh;
    size_t rows = 0;
    enum cd_err err;

    c->tx_fresh = false;
    err = exec_once(c, sql, params, nparams, fn, ctx, changes, &rows);
    /* Nothing of the transaction happened before this statement, and no row of it was handed
     * out: after a server restart it runs again, in a new transaction on a new connection. */
    if (err == CD_ERR_STORE && c->broken && fresh && rows == 0 && c->in_tx &&
        reconnect(c) == CD_OK &&
        send_control(c, c->rw_tx ? "BEGIN ISOLATION LEVEL READ COMMITTED"
                                 : "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
                     Q_CONTROL) == CD_OK &&
        (!c->rw_tx || send_control(c, WRITER_LOCK_SQL, Q_CONTROL) == CD_OK))
        err = exec_once(c, sql, params, nparams, fn, ctx, changes, &rows);
    return err;
}

static enum cd_err pg_begin(void *cv, bool write)
{
    struct pg_conn *c = cv;
    enum cd_err err;

    if ((c->broken || c->pg == NULL) && (err = reconnect(c)) != CD_OK)
        return err;
    c->derr = CD_OK;
    c->careful = false;
    c->rw_tx = write;
    /* Sent ahead: it travels with the first statement. */
    if ((err = send_control(c, write ? "BEGIN ISOLATION LEVEL READ COMMITTED"
                                     : "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
                            Q_CONTROL)) != CD_OK ||
        (write && (err = send_control(c, WRITER_LOCK_SQL, Q_CONTROL)) != CD_OK))
        return err;
    c->in_tx = true;
    c->tx_fresh = true;
    return CD_OK;
}

static void tx_end(struct pg_conn *c)
{
    c->in_tx = c->tx_fresh = c->rw_tx = c->careful = false;
    c->derr = CD_OK;
}

static enum cd_err pg_commit(void *cv)
{
    struct pg_conn *c = cv;
    struct sink sk = {NULL, NULL, NULL, NULL, 0, ""};
    enum cd_err err;

    if (c->broken || c->pg == NULL) {
        tx_end(c);
        return cd_err_set(CD_ERR_STORE, "the connection to PostgreSQL was lost");
    }
    if ((err = send_control(c, "COMMIT", Q_WANTED)) == CD_OK)
        err = drain(c, &sk);
    if (err == CD_OK && c->derr != CD_OK)
        err = cd_err_set(c->derr, "%s", c->derr_detail);
    /* COMMIT of a transaction that had failed answers "ROLLBACK". */
    if (err == CD_OK && strcmp(sk.tag, "COMMIT") != 0)
        err = cd_err_set(CD_ERR_STORE, "the transaction had failed and was rolled back");
    if (err == CD_ERR_STORE && c->broken)
        cd_err_set(CD_ERR_STORE, "the connection to PostgreSQL was lost during COMMIT: the "
                                 "write may or may not be stored; retry it with the same "
                                 "Idempotency-Key");
    tx_end(c);
    return err;
}

/* Ends the pipeline segment without waiting: a command sent after it runs even if one before
 * it failed (within a segment, a failure skips every command up to the Sync). */
static enum cd_err end_segment(struct pg_conn *c)
{
    if (c->qlen == 0 || q_last(c) == Q_SYNC)
        return CD_OK;
    if (!PQpipelineSync(c->pg))
        return send_err(c);
    q_push(c, Q_SYNC);
    return CD_OK;
}

static enum cd_err pg_rollback(void *cv)
{
    struct pg_conn *c = cv;
    enum cd_err err;

    tx_end(c);
    if (c->broken || c->pg == NULL)
        return CD_OK; /* the server rolled back when the connection went */
    if ((err = end_segment(c)) != CD_OK)
        return err;
    if (!c->writer) {
        /* A read changed nothing: its ROLLBACK is not waited for, its reply is read by the
         * next transaction on this connection. The Sync sends it at once. */
        if ((err = send_control(c, "ROLLBACK", Q_IGNORE)) != CD_OK)
            return err;
        return end_segment(c);
    }
    if ((err = send_control(c, "ROLLBACK", Q_WANTED)) == CD_OK)
        err = drain(c, NULL);
    c->derr = CD_OK; /* what failed before is undone */
    return err;
}

/* Savepoints: the careful run, every statement awaited. */
static enum cd_err savepoint_control(struct pg_conn *c, const char *sql)
{
    enum cd_err err;

    if (c->broken || c->pg == NULL)
        return cd_err_set(CD_ERR_STORE, "the connection to PostgreSQL was lost");
    c->careful = true;
    c->tx_fresh = false;
    if ((err = end_segment(c)) != CD_OK || (err = send_control(c, sql, Q_WANTED)) != CD_OK)
        return err;
    return drain(c, NULL);
}

static enum cd_err pg_savepoint(void *cv)
{
    return savepoint_control(cv, "SAVEPOINT job");
}

static enum cd_err pg_release(void *cv)
{
    return savepoint_control(cv, "RELEASE SAVEPOINT job");
}

static enum cd_err pg_rollback_to(void *cv)
{
    struct pg_conn *c = cv;
    enum cd_err err = savepoint_control(c, "ROLLBACK TO SAVEPOINT job");

    if (err == CD_OK)
        c->derr = CD_OK;
    return err;
}

/* Runs one statement outside pipeline mode (migrations: several statements in one text). */
static enum cd_err simple(struct pg_conn *c, const char *sql, int64_t *value)
{
    PGresult *res = PQexec(c->pg, sql);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    enum cd_err err = CD_OK;

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        err = result_err(c, res);
    else if (value && PQntuples(res) == 1 && PQnfields(res) == 1)
        *value = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return err;
}

/* All pending migrations in one transaction: PostgreSQL's DDL is transactional, so a failed
 * one leaves the schema as it was. The advisory lock serialises servers that start together
 * on one database; the second finds the work done. */
static enum cd_err pg_migrate(void *cv, int *from, int *to)
{
    struct pg_conn *c = cv;
    int latest = cd__store_pg_migrations_count;
    int64_t v = 0;
    char sql[128];
    enum cd_err err;

    if (c->qlen && (err = drain(c, NULL)) != CD_OK)
        return err;
    if (!PQexitPipelineMode(c->pg))
        return send_err(c);
    if ((err = simple(c, "BEGIN", NULL)) != CD_OK)
        goto out;
    if ((err = simple(c, "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK ")", NULL)) != CD_OK ||
        (err = simple(c, "CREATE TABLE IF NOT EXISTS schema_version("
                         "version BIGINT NOT NULL, applied_at BIGINT NOT NULL)",
                      NULL)) != CD_OK ||
        (err = simple(c, "SELECT coalesce(max(version), 0) FROM schema_version", &v)) != CD_OK)
        goto rollback;
    *from = (int)v;
    *to = latest;
    if (v > latest) {
        err = cd_err_set(CD_ERR_SCHEMA,
                         "the database has schema version %lld but this candor knows only up "
                         "to %d; use a newer candor binary",
                         (long long)v, latest);
        goto rollback;
    }
    for (int i = (int)v; i < latest; i++) {
        snprintf(sql, sizeof sql, "INSERT INTO schema_version(version, applied_at) "
                                  "VALUES(%d, %lld)", i + 1, (long long)cd_now_ms());
        if ((err = simple(c, cd__store_pg_migrations[i], NULL)) != CD_OK ||
            (err = simple(c, sql, NULL)) != CD_OK) {
            err = cd_err_set(err, "migration %d failed: %s", i + 1, cd_err_detail());
            goto rollback;
        }
    }
    err = simple(c, "COMMIT", NULL);
    goto out;
rollback:
    if (!c->broken) {
        char keep[512];
        snprintf(keep, sizeof keep, "%s", cd_err_detail());
        simple(c, "ROLLBACK", NULL);
        cd_err_set(err, "%s", keep);
    }
out:
    if (!c->broken && !PQenterPipelineMode(c->pg) && err == CD_OK)
        err = send_err(c);
    return err;
}

static enum cd_err one_count(void *ctx, const struct cd_val *cols, size_t n)
{
    *(int64_t *)ctx = n && cols[0].type == CD_VAL_INT ? cols[0].i : 0;
    return CD_OK;
}

/* PostgreSQL checks pages as it reads them (and their checksums, when the cluster has them);
 * this adds what can be asked: checksum failures counted for this database, and, when the
 * amcheck extension is installed, a structural check of every B-tree index of the schema. */
static enum cd_err pg_integrity(void *cv)
{
    int64_t failures = 0, amcheck = 0;
    enum cd_err err;

    ((struct pg_conn *)cv)->sqlstate[0] = '\0';
    if ((err = pg_exec(cv, "SELECT coalesce(sum(checksum_failures), 0)::bigint"
                           " FROM pg_stat_database WHERE datname = current_database()",
                       NULL, 0, one_count, &failures, NULL)) != CD_OK ||
        (err = pg_exec(cv, "SELECT count(*) FROM pg_extension WHERE extname = 'amcheck'", NULL,
                       0, one_count, &amcheck, NULL)) != CD_OK)
        return err;
    if (failures > 0)
        return cd_err_set(CD_ERR_INTEGRITY, "PostgreSQL counted %lld checksum failures in this "
                                            "database",
                          (long long)failures);
    if (amcheck == 0)
        return CD_OK;
    err = pg_exec(cv, "SELECT bt_index_check(c.oid) FROM pg_index i"
                      " JOIN pg_class c ON c.oid = i.indexrelid"
                      " JOIN pg_am a ON a.oid = c.relam"
                      " WHERE a.amname = 'btree'"
                      " AND c.relnamespace = current_schema()::regnamespace",
                  NULL, 0, NULL, NULL, NULL);
    return err == CD_ERR_STORE && strcmp(((struct pg_conn *)cv)->sqlstate, "XX002") == 0
               ? cd_err_set(CD_ERR_INTEGRITY, "%s", cd_err_detail())
               : err;
}

/* A CHECKPOINT writes every dirty page and lets the server recycle the WAL before it; it
 * needs superuser or pg_checkpoint, which a service role rarely has. Without them the server's
 * own checkpoints (checkpoint_timeout) do the same a little later: that is said once in the
 * log, and not treated as an error. */
static enum cd_err pg_checkpoint(void *cv)
{
    struct pg_conn *c = cv;
    enum cd_err err;

    if (c->checkpoint_denied)
        return CD_OK;
    c->sqlstate[0] = '\0';
    if ((c->broken || c->pg == NULL) && (err = reconnect(c)) != CD_OK)
        return err;
    if ((err = send_control(c, "CHECKPOINT", Q_WANTED)) == CD_OK)
        err = drain(c, NULL);
    if (err != CD_OK && strcmp(c->sqlstate, "42501") == 0) {
        c->checkpoint_denied = true;
        cd_log(CD_LOG_INFO, "store.pg_checkpoint_not_permitted",
               "\"hint\":\"grant pg_checkpoint to the role\"");
        return CD_OK;
    }
    return err;
}

static int64_t pg_total_changes(void *cv)
{
    return ((struct pg_conn *)cv)->changes;
}

static bool pg_in_transaction(void *cv)
{
    struct pg_conn *c = cv;

    if (c->broken || c->pg == NULL || !c->in_tx)
        return false;
    if (c->qlen && drain(c, NULL) != CD_OK)
        return false;
    return c->derr == CD_OK && PQtransactionStatus(c->pg) == PQTRANS_INTRANS;
}

/* ---- announcements and the feed ---- */

static enum cd_err pg_notify(void *cv, const char *topic)
{
    struct cd_val p[] = {CD_VCSTR(topic)};

    /* Sent without waiting in the optimistic run, like any statement whose reply nobody reads;
     * PostgreSQL delivers it at COMMIT, once, however often one transaction announces it. */
    return pg_exec(cv, "SELECT 1 FROM (SELECT pg_notify('" FEED_CHANNEL "', $1)) n", p, 1, NULL,
                   NULL, NULL);
}

/* The feed: a connection of its own, outside pipeline mode, listening on the channel. */
struct pg_feed {
    PGconn *pg;
    int pid; /* its server process, which tells its own announcements from others' */
};

static void pg_feed_close(void *fv)
{
    struct pg_feed *f = fv;

    if (f == NULL)
        return;
    PQfinish(f->pg);
    cd_free(f);
}

/* One command on the feed's session; a failure there means the session is not usable. */
static enum cd_err feed_command(struct pg_feed *f, const char *sql, int n, const char *const *v,
                                bool *truth)
{
    PGresult *res = PQexecParams(f->pg, sql, n, NULL, v, NULL, NULL, 0);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    char line[200];
    enum cd_err err = CD_OK;

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        err = cd_err_set(CD_ERR_STORE, "the feed's connection to PostgreSQL failed: %s",
                         first_line(PQerrorMessage(f->pg), line, sizeof line));
    else if (truth)
        *truth = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return err;
}

static enum cd_err pg_feed_open(const char *target, void **out)
{
    struct pg_conn c = {0};
    struct pg_feed *f = cd_calloc(1, sizeof *f);
    enum cd_err err;

    if (f == NULL)
        return CD_ERR_NOMEM;
    /* Connected as any connection is (checks, session settings), then out of pipeline mode:
     * the feed runs one command at a time and reads announcements between them. */
    c.target = (char *)target;
    if ((err = pg_connect(&c)) != CD_OK)
        goto fail;
    f->pg = c.pg;
    if (!PQexitPipelineMode(f->pg)) {
        err = cd_err_set(CD_ERR_STORE, "cannot leave pipeline mode on the feed's connection");
        goto fail;
    }
    f->pid = PQbackendPID(f->pg);
    if ((err = feed_command(f, "LISTEN " FEED_CHANNEL, 0, NULL, NULL)) != CD_OK)
        goto fail;
    *out = f;
    return CD_OK;
fail:
    pg_feed_close(f);
    return err;
}

static enum cd_err pg_feed_ping(void *fv, const char *topic)
{
    return feed_command(fv, "SELECT 1 FROM (SELECT pg_notify('" FEED_CHANNEL "', $1)) n", 1,
                        &topic, NULL);
}

static enum cd_err pg_feed_lease(void *fv, int64_t key, bool *held)
{
    char k[24];
    const char *v[] = {k};

    snprintf(k, sizeof k, "%lld", (long long)key);
    return feed_command(fv, "SELECT pg_try_advisory_lock($1::bigint)", 1, v, held);
}

static enum cd_err pg_feed_wait(void *fv, unsigned timeout_ms,
                                void (*fn)(void *ctx, const char *topic, bool own), void *ctx)
{
    struct pg_feed *f = fv;
    struct pollfd p = {PQsocket(f->pg), POLLIN, 0};
    PGnotify *n;
    char line[200];

    /* Announcements that arrived with the replies of the last command are queued already. */
    if (p.fd < 0)
        return cd_err_set(CD_ERR_STORE, "the feed's connection to PostgreSQL is closed");
    if ((n = PQnotifies(f->pg)) == NULL) {
        if (poll(&p, 1, (int)timeout_ms) < 0 && errno != EINTR)
            return cd_err_set(CD_ERR_STORE, "poll on the feed's connection failed");
        if (!PQconsumeInput(f->pg))
            return cd_err_set(CD_ERR_STORE, "the feed's connection to PostgreSQL was lost (%s)",
                              first_line(PQerrorMessage(f->pg), line, sizeof line));
        n = PQnotifies(f->pg);
    }
    for (; n; n = PQnotifies(f->pg)) {
        fn(ctx, n->extra, n->be_pid == f->pid);
        PQfreemem(n);
    }
    return PQstatus(f->pg) == CONNECTION_OK
               ? CD_OK
               : cd_err_set(CD_ERR_STORE, "the feed's connection to PostgreSQL was lost");
}

const struct cd_store_ops cd_store_pg_ops = {
    .name = "postgres",
    .conn_open = pg_open,
    .conn_close = pg_close,
    .exec = pg_exec,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .savepoint = pg_savepoint,
    .release = pg_release,
    .rollback_to = pg_rollback_to,
    .migrate = pg_migrate,
    .integrity_check = pg_integrity,
    .checkpoint = pg_checkpoint,
    .total_changes = pg_total_changes,
    .in_transaction = pg_in_transaction,
    .backup = NULL,
    .notify = pg_notify,
    .feed_open = pg_feed_open,
    .feed_wait = pg_feed_wait,
    .feed_ping = pg_feed_ping,
    .feed_lease = pg_feed_lease,
    .feed_close = pg_feed_close,
};
