/* The floor under HTTP ingestion: the libraries Candor is built on, doing the least an
 * acknowledged-after-fsync ingestion must do, served to the same load in the same run as
 * `candor serve` (bench/run.sh, section 2). The ratio of the two is what everything Candor adds
 * costs together.
 *
 * What it does per request: libmicrohttpd configured as Candor's server (epoll, 2 event threads,
 * suspend and resume, 16 KiB per connection, TURBO); the body read into a buffer and parsed by
 * jansson with duplicate members rejected (400 otherwise), channel and direction required; one
 * row inserted into the interactions table of Candor's own schema (plaintext, the identity's
 * value as customer_id, so the timeline index sees the same random keys), by one writer thread
 * that batches every waiting request into one transaction (WAL, synchronous=FULL: the 201 goes
 * out only after the COMMIT's fsync); a 201 with the new id.
 * What it leaves out: authentication, purposes, consent, the communication guard, identity
 * lookup and customer creation, encryption, the audit event, idempotency keys, the access log,
 * metrics and problem+json.
 *
 * Usage: bench_http_floor PORT DIR   (serves on 127.0.0.1:PORT until SIGINT or SIGTERM;
 *        GET answers 200, for readiness checks; the database is DIR/floor.db) */
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/base.h"
#include "store/store.h"

#define MAX_BODY (1024 * 1024)

struct conn {
    struct MHD_Connection *mc;
    char *body;
    size_t len, cap;
    bool too_big, queued, done;
    unsigned status;
    json_t *doc;  /* the parsed body, read by the writer */
    char *meta;   /* metadata, serialised */
    char id[32];
    struct conn *next; /* in the writer's queue */
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct conn *head, *tail;
    bool stopping;
} q = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, false};

static atomic_ullong next_id;
static sqlite3 *db;
static sqlite3_stmt *ins, *begin, *commit, *rollback;

/* The settings of Candor's writer connection (src/store/sqlite.c). */
static const char FLOOR_PRAGMAS[] = "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                                    " PRAGMA wal_autocheckpoint=8000; PRAGMA cache_size=-16384";

static const char INSERT_SQL[] =
    "INSERT INTO interactions(id, customer_id, channel, direction, thread_id, occurred_at,"
    " created_at, purpose, subject, body, metadata, guard)"
    " VALUES(?1,?2,?3,?4,?5,?6,?6,'service',?7,?8,?9,NULL)";

static enum MHD_Result answer(struct MHD_Connection *mc, unsigned status, const char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ok;

    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    ok = MHD_queue_response(mc, status, r);
    MHD_destroy_response(r);
    return ok;
}

static const char *member(const json_t *doc, const char *key)
{
    return json_string_value(json_object_get(doc, key));
}

static void bind_opt(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

/* One transaction for everything queued, then every connection in it resumes. */
static void *writer_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&q.mu);
        while (q.head == NULL && !q.stopping)
            pthread_cond_wait(&q.cv, &q.mu);
        struct conn *batch = q.head;
        q.head = q.tail = NULL;
        bool stop = q.stopping;
        pthread_mutex_unlock(&q.mu);
        if (batch == NULL && stop)
            return NULL;
        bool ok = sqlite3_step(begin) == SQLITE_DONE;
        sqlite3_reset(begin);
        int64_t now = cd_now_ms();
        for (struct conn *c = batch; ok && c; c = c->next) {
            const json_t *ident = json_object_get(c->doc, "identity");
            sqlite3_bind_text(ins, 1, c->id, -1, SQLITE_STATIC);
            bind_opt(ins, 2, member(ident, "value") ? member(ident, "value") : "anonymous");
            bind_opt(ins, 3, member(c->doc, "channel"));
            bind_opt(ins, 4, member(c->doc, "direction"));
            bind_opt(ins, 5, member(c->doc, "thread_id"));
            sqlite3_bind_int64(ins, 6, now);
            bind_opt(ins, 7, member(c->doc, "subject"));
            bind_opt(ins, 8, member(c->doc, "body"));
            bind_opt(ins, 9, c->meta);
            ok = sqlite3_step(ins) == SQLITE_DONE;
            sqlite3_reset(ins);
        }
        if (ok)
            ok = sqlite3_step(commit) == SQLITE_DONE;
        sqlite3_reset(commit);
        if (!ok) {
            fprintf(stderr, "bench_http_floor: write failed: %s\n", sqlite3_errmsg(db));
            sqlite3_step(rollback);
            sqlite3_reset(rollback);
        }
        while (batch) {
            struct conn *c = batch;
            batch = c->next; /* c belongs to its event thread again once resumed */
            c->status = ok ? MHD_HTTP_CREATED : MHD_HTTP_INTERNAL_SERVER_ERROR;
            c->done = true;
            MHD_resume_connection(c->mc);
        }
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    struct conn *c = *con_cls;
    char text[64];
    (void)cls;
    (void)url;
    (void)version;

    if (strcmp(method, "POST") != 0)
        return answer(mc, MHD_HTTP_OK, "{\"status\":\"ok\"}");
    if (c == NULL) {
        if ((c = calloc(1, sizeof *c)) == NULL)
            return MHD_NO;
        c->mc = mc;
        *con_cls = c;
        return MHD_YES;
    }
    if (*upload_size > 0) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (c->too_big || c->len + n > MAX_BODY) {
            c->too_big = true;
            return MHD_YES;
        }
        if (c->len + n > c->cap) {
            size_t cap = c->cap ? c->cap : 1024;
            while (cap < c->len + n)
                cap *= 2;
            char *p = realloc(c->body, cap);
            if (p == NULL)
                return MHD_NO;
            c->body = p;
            c->cap = cap;
        }
        memcpy(c->body + c->len, upload, n);
        c->len += n;
        return MHD_YES;
    }
    if (c->done) {
        snprintf(text, sizeof text, "{\"id\":\"%s\"}", c->id);
        return answer(mc, c->status, c->status == MHD_HTTP_CREATED ? text : "{}");
    }
    if (c->queued)
        return MHD_YES;
    if (c->too_big)
        return answer(mc, MHD_HTTP_CONTENT_TOO_LARGE, "{\"error\":\"body too large\"}");
    c->doc = json_loadb(c->body ? c->body : "", c->len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(c->doc) || !member(c->doc, "channel") || !member(c->doc, "direction"))
        return answer(mc, MHD_HTTP_BAD_REQUEST, "{\"error\":\"malformed\"}");
    const json_t *meta = json_object_get(c->doc, "metadata");
    if (meta && (c->meta = json_dumps(meta, JSON_COMPACT)) == NULL)
        return MHD_NO;
    snprintf(c->id, sizeof c->id, "int_%016llx", (unsigned long long)atomic_fetch_add(&next_id, 1));
    pthread_mutex_lock(&q.mu);
    if (q.stopping) {
        pthread_mutex_unlock(&q.mu);
        return answer(mc, MHD_HTTP_SERVICE_UNAVAILABLE, "{\"error\":\"stopping\"}");
    }
    c->queued = true;
    MHD_suspend_connection(mc);
    if (q.tail)
        q.tail->next = c;
    else
        q.head = c;
    q.tail = c;
    pthread_cond_signal(&q.cv);
    pthread_mutex_unlock(&q.mu);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct conn *c = *con_cls;
    (void)cls;
    (void)mc;
    (void)toe;

    if (c == NULL)
        return;
    json_decref(c->doc);
    free(c->meta);
    free(c->body);
    free(c);
    *con_cls = NULL;
}

int main(int argc, char **argv)
{
    char path[4096];
    struct cd_store *s = NULL;
    sigset_t sigs;
    int sig = 0;
    pthread_t writer;

    char *end = NULL;
    long port = argc == 3 ? strtol(argv[1], &end, 10) : 0;
    if (argc != 3 || *end != '\0' || port <= 0 || port > 65535) {
        fprintf(stderr, "usage: bench_http_floor PORT DIR\n");
        return 2;
    }
    snprintf(path, sizeof path, "%s/floor.db", argv[2]);
    /* Candor's schema, so the row and its indexes are the ones `candor serve` writes. */
    if (cd_store_open(path, &s) != CD_OK) {
        fprintf(stderr, "bench_http_floor: cannot create %s\n", path);
        return 1;
    }
    cd_store_close(s);
    if (sqlite3_open(path, &db) != SQLITE_OK ||
        sqlite3_exec(db, FLOOR_PRAGMAS, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, INSERT_SQL, -1, &ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &begin, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "COMMIT", -1, &commit, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "ROLLBACK", -1, &rollback, NULL) != SQLITE_OK) {
        fprintf(stderr, "bench_http_floor: %s\n", sqlite3_errmsg(db));
        return 1;
    }
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* the threads started below inherit the mask */
    pthread_create(&writer, NULL, writer_main, NULL);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO,
        (uint16_t)port, NULL, NULL, on_request, NULL,
        MHD_OPTION_THREAD_POOL_SIZE, 2, MHD_OPTION_CONNECTION_LIMIT, 10000,
        MHD_OPTION_CONNECTION_TIMEOUT, 30, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)16 * 1024,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "bench_http_floor: cannot listen on port %s\n", argv[1]);
        return 1;
    }
    sigwait(&sigs, &sig);
    /* No new connections; requests from now on get a 503; the writer answers what is queued
     * (libmicrohttpd must not be stopped with connections still suspended). */
    MHD_quiesce_daemon(d);
    pthread_mutex_lock(&q.mu);
    q.stopping = true;
    pthread_cond_signal(&q.cv);
    pthread_mutex_unlock(&q.mu);
    pthread_join(writer, NULL);
    MHD_stop_daemon(d);
    sqlite3_finalize(ins);
    sqlite3_finalize(begin);
    sqlite3_finalize(commit);
    sqlite3_finalize(rollback);
    sqlite3_close(db);
    return 0;
}
