/* The structured logger: one JSON object per line on stderr. A line goes out with a single
 * write(2), whole, so lines from different threads never interleave.
 *
 * Batching (cd_log_batch_start): the per-request access line, logged with cd_log_batched, is
 * appended to a buffer that a background thread writes out a few milliseconds after its first
 * line, many lines per write(2). Why: a write to a log file per request took a few
 * microseconds of the event thread (the file system's locking and page work), which is the
 * same order as the rest of answering a small request. Any other line (cd_log) first writes
 * the buffered lines, then itself, so the order of lines in the file stays the order of the
 * calls. What batching costs: a crash (SIGKILL) loses the access lines of the last few
 * milliseconds; warnings and errors are never held back.
 *
 * Also here: the counters of integrity failures (cd_integrity_report), which always log. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "base.h"

static enum cd_log_level min_level = CD_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

enum { LINE_MAX_LEN = 2048, BATCH_CAP = 64 * 1024, BATCH_DELAY_NS = 5 * 1000 * 1000 };

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool active, stopping;
    pthread_t thread;
    char buf[BATCH_CAP];
    size_t len;
} batch = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

void cd_log_set_level(enum cd_log_level min)
{
    min_level = min;
}

static void write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* nowhere to report it: the log is the reporting channel */
        p += w;
        n -= (size_t)w;
    }
}

/* Formats one line into line (LINE_MAX_LEN bytes); returns its length with the newline. */
static size_t format_line(enum cd_log_level level, const char *msg, const char *fields_fmt,
                          va_list ap, char *line)
{
    char ts[CD_TIME_STRLEN];
    int n, m = 0;

    cd_time_format(cd_now_ms(), ts);
    n = snprintf(line, LINE_MAX_LEN, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\"", ts,
                 level_names[level], msg);
    if (n < 0 || (size_t)n >= LINE_MAX_LEN - 3)
        return 0;
    if (fields_fmt && fields_fmt[0]) {
        line[n++] = ',';
        m = vsnprintf(line + n, LINE_MAX_LEN - (size_t)n - 2, fields_fmt, ap);
        if (m < 0)
            m = 0;
        if ((size_t)m > LINE_MAX_LEN - (size_t)n - 3)
            m = (int)(LINE_MAX_LEN - (size_t)n - 3);
    }
    n += m;
    line[n++] = '}';
    line[n++] = '\n';
    return (size_t)n;
}

/* Appends a line to the batch (batch.mu held), writing the batch out first when it is full. */
static void batch_append(const char *line, size_t n)
{
    if (batch.len + n > BATCH_CAP) {
        write_all(batch.buf, batch.len);
        batch.len = 0;
    }
    memcpy(batch.buf + batch.len, line, n);
    batch.len += n;
}

/* Writes a line at once (batch.mu held), after the batched lines logged before it. */
static void write_now(const char *line, size_t n)
{
    if (batch.len == 0) {
        write_all(line, n);
        return;
    }
    batch_append(line, n); /* one write for the batch and this line */
    write_all(batch.buf, batch.len);
    batch.len = 0;
}

/* Formats and writes (or, batched and batching started, buffers) one line. */
static void log_line(bool batched, enum cd_log_level level, const char *msg,
                     const char *fields_fmt, va_list ap)
{
    char line[LINE_MAX_LEN];

    if (level < min_level)
        return;
    size_t n = format_line(level, msg, fields_fmt, ap, line);
    if (n == 0)
        return;
    pthread_mutex_lock(&batch.mu);
    if (!batched || !batch.active) {
        write_now(line, n);
        pthread_mutex_unlock(&batch.mu);
        return;
    }
    bool first = batch.len == 0;
    batch_append(line, n);
    pthread_mutex_unlock(&batch.mu);
    if (first)
        pthread_cond_signal(&batch.cv);
}

void cd_log(enum cd_log_level level, const char *msg, const char *fields_fmt, ...)
{
    va_list ap;

    va_start(ap, fields_fmt);
    log_line(false, level, msg, fields_fmt, ap);
    va_end(ap);
}

void cd_log_batched(enum cd_log_level level, const char *msg, const char *fields_fmt, ...)
{
    va_list ap;

    va_start(ap, fields_fmt);
    log_line(true, level, msg, fields_fmt, ap);
    va_end(ap);
}

static void *batch_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "cd-log");
    pthread_mutex_lock(&batch.mu);
    for (;;) {
        while (batch.len == 0 && !batch.stopping)
            pthread_cond_wait(&batch.cv, &batch.mu);
        if (!batch.stopping) { /* let the lines of the next few milliseconds join this write */
            pthread_mutex_unlock(&batch.mu);
            nanosleep(&(struct timespec){0, BATCH_DELAY_NS}, NULL);
            pthread_mutex_lock(&batch.mu);
        }
        /* Under the lock, so that no line logged later can reach the file first; callers wait
         * for one write every few milliseconds instead of making one each. */
        write_all(batch.buf, batch.len);
        batch.len = 0;
        if (batch.stopping)
            break;
    }
    pthread_mutex_unlock(&batch.mu);
    return NULL;
}

enum cd_err cd_log_batch_start(void)
{
    pthread_mutex_lock(&batch.mu);
    if (batch.active) {
        pthread_mutex_unlock(&batch.mu);
        return CD_OK;
    }
    batch.stopping = false;
    if (pthread_create(&batch.thread, NULL, batch_main, NULL) != 0) {
        pthread_mutex_unlock(&batch.mu);
        return cd_err_set(CD_ERR_INTERNAL, "cannot start the log writer thread");
    }
    batch.active = true;
    pthread_mutex_unlock(&batch.mu);
    return CD_OK;
}

void cd_log_batch_stop(void)
{
    pthread_mutex_lock(&batch.mu);
    if (!batch.active) {
        pthread_mutex_unlock(&batch.mu);
        return;
    }
    batch.active = false; /* lines from now on are written at once, after the thread's last */
    batch.stopping = true;
    pthread_cond_signal(&batch.cv);
    pthread_mutex_unlock(&batch.mu);
    pthread_join(batch.thread, NULL);
}

const char *cd_log_safe(const char *s, char *out, size_t n)
{
    size_t o = 0;

    if (n == 0)
        return "";
    for (; s && *s && o + 1 < n; s++) {
        char c = *s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '.' || c == '_' || c == ':' || c == '/' || c == '-')
            out[o++] = c;
        else
            out[o++] = '?';
    }
    out[o] = '\0';
    return out;
}

/* ---- integrity failures ---- */

static const char *const integrity_names[CD_INTEGRITY__COUNT] = {
    [CD_INTEGRITY_AUDIT_ROW] = "audit_row",
    [CD_INTEGRITY_CONSENT_EVENT] = "consent_event",
    [CD_INTEGRITY_SEALED_FIELD] = "sealed_field",
    [CD_INTEGRITY_TREE_HEAD] = "tree_head",
};
static atomic_uint_fast64_t integrity_counts[CD_INTEGRITY__COUNT];

void cd_integrity_report(enum cd_integrity_kind kind, const char *fields_fmt, ...)
{
    char fields[LINE_MAX_LEN / 2];
    va_list ap;

    if ((unsigned)kind >= CD_INTEGRITY__COUNT)
        return;
    atomic_fetch_add_explicit(&integrity_counts[kind], 1, memory_order_relaxed);
    va_start(ap, fields_fmt);
    vsnprintf(fields, sizeof fields, fields_fmt, ap);
    va_end(ap);
    cd_log(CD_LOG_ERROR, "integrity.error", "\"kind\":\"%s\"%s%s", integrity_names[kind],
           fields[0] ? "," : "", fields);
}

uint64_t cd_integrity_total(enum cd_integrity_kind kind)
{
    if ((unsigned)kind >= CD_INTEGRITY__COUNT)
        return 0;
    return atomic_load_explicit(&integrity_counts[kind], memory_order_relaxed);
}

const char *cd_integrity_kind_name(enum cd_integrity_kind kind)
{
    return (unsigned)kind < CD_INTEGRITY__COUNT ? integrity_names[kind] : "unknown";
}
