/* The watcher thread: counts of requests by state and past their deadlines for /metrics, which
 * is answered on an event thread and must not read the store; and dsar.due_soon, told once for
 * each open request that comes within the due-soon window of its deadline. */
#include <errno.h>
#include <string.h>
#include <time.h>
#include <stdio.h>
#include "dsar_int.h"

#define DUE_SOON_BATCH 200

struct soon {
    char id[CD_ID_MAX], customer_id[CD_ID_MAX], type[32];
    int64_t due_at;
};

struct soon_ctx {
    struct cd_dsar *d;
    int64_t now;
    struct soon rows[DUE_SOON_BATCH];
    size_t n;
};

static enum cd_err soon_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct soon_ctx *sc = ctx;
    struct soon *s = &sc->rows[sc->n++];

    snprintf(s->id, sizeof s->id, "%.*s", (int)c[0].len, (const char *)c[0].p);
    snprintf(s->customer_id, sizeof s->customer_id, "%.*s", (int)c[1].len, (const char *)c[1].p);
    snprintf(s->type, sizeof s->type, "%.*s", (int)c[2].len, (const char *)c[2].p);
    s->due_at = c[3].i;
    return CD_OK;
}

/* One write per batch: the requests are marked told in the transaction that queues their
 * events, so each is told once whatever happens between two passes. */
static enum cd_err soon_fn(struct cd_tx *tx, void *ctx)
{
    struct soon_ctx *sc = ctx;
    int64_t until = sc->now + (int64_t)sc->d->rules->due_soon_days * 86400000;
    struct cd_val p[] = {CD_VINT(sc->now), CD_VINT(until), CD_VINT(DUE_SOON_BATCH)};
    enum cd_err err;

    sc->n = 0;
    if ((err = cd_tx_exec(tx, "SELECT id, customer_id, type, due_at FROM dsar_requests"
                              " WHERE closed_at IS NULL AND due_soon_at IS NULL AND due_at > $1"
                              " AND due_at <= $2 ORDER BY due_at, id LIMIT $3",
                          p, 3, soon_row, sc, NULL)) != CD_OK)
        return err;
    for (size_t i = 0; i < sc->n; i++) {
        struct soon *s = &sc->rows[i];
        struct cd_val q[] = {CD_VCSTR(s->id), CD_VINT(sc->now)};
        if ((err = cd_tx_exec(tx, "UPDATE dsar_requests SET due_soon_at = $2 WHERE id = $1", q,
                              2, NULL, NULL, NULL)) != CD_OK ||
            (err = cd__dsar_tell(sc->d, tx, "dsar.due_soon", s->customer_id,
                                 json_pack("{s:s,s:s,s:o}", "request_id", s->id, "type", s->type,
                                           "due_at", cd__dsar_time(s->due_at)))) != CD_OK)
            return err;
    }
    return CD_OK;
}

static void tell_due_soon(struct cd_dsar *d)
{
    struct soon_ctx *sc = cd_calloc(1, sizeof *sc);
    enum cd_err err = CD_OK;

    if (sc == NULL)
        return;
    sc->d = d;
    sc->now = cd_now_ms();
    do
        err = cd_store_write(d->store, soon_fn, sc);
    while (err == CD_OK && sc->n == DUE_SOON_BATCH);
    if (err != CD_OK)
        cd_log(CD_LOG_WARN, "dsar.due_soon_failed", "\"error\":\"%s\"", cd_err_name(err));
    cd_free(sc);
}

static void pass(struct cd_dsar *d)
{
    struct cd_dsar_counts c;

    if (d->links.enqueue)
        tell_due_soon(d);
    if (cd_dsar_counts(d->store, cd_now_ms(), &c) != CD_OK) {
        cd_log(CD_LOG_WARN, "dsar.count_failed", "\"error\":\"%s\"", cd_err_name(CD_ERR_STORE));
        return;
    }
    pthread_mutex_lock(&d->mu);
    d->counts = c;
    d->counted = true;
    pthread_mutex_unlock(&d->mu);
}

static void *watch(void *arg)
{
    struct cd_dsar *d = arg;
    struct timespec until;

    pthread_setname_np(pthread_self(), "cd-dsar");
    pthread_mutex_lock(&d->mu);
    while (!d->stopping) {
        pthread_mutex_unlock(&d->mu);
        pass(d);
        pthread_mutex_lock(&d->mu);
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += d->interval_ms / 1000;
        until.tv_nsec += (long)(d->interval_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (!d->stopping && pthread_cond_timedwait(&d->wake, &d->mu, &until) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

enum cd_err cd_dsar_start(struct cd_dsar *d, unsigned interval_ms)
{
    d->interval_ms = interval_ms ? interval_ms : 1000;
    if (pthread_create(&d->thread, NULL, watch, d) != 0)
        return cd_err_set(CD_ERR_INTERNAL, "cannot start the request watcher");
    d->running = true;
    return CD_OK;
}

void cd__dsar_stop(struct cd_dsar *d)
{
    if (!d->running)
        return;
    pthread_mutex_lock(&d->mu);
    d->stopping = true;
    pthread_cond_signal(&d->wake);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->thread, NULL);
    d->running = false;
}

bool cd_dsar_counts_cached(struct cd_dsar *d, struct cd_dsar_counts *out)
{
    pthread_mutex_lock(&d->mu);
    bool ok = d->counted;
    *out = d->counts;
    pthread_mutex_unlock(&d->mu);
    return ok;
}
