/* The watcher thread: counts of requests by state and past their deadlines for /metrics, which
 * is answered on an event thread and must not read the store. */
#include <errno.h>
#include <string.h>
#include <time.h>
#include "dsar_int.h"

static void pass(struct cd_dsar *d)
{
    struct cd_dsar_counts c;

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
