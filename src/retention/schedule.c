/* The retention schedule inside `candor serve`: a thread (cd-retention) that runs the rules
 * every interval, the first time a little after start, and logs each run's counts. */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include "retention_int.h"

struct cd_retention_schedule {
    struct cd_core *core;
    const struct cd_retention_rules *rules;
    int64_t interval_ms, first_ms;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
};

/* Waits until deadline (monotonic ms) or a stop; true when stopping. */
static bool wait_until(struct cd_retention_schedule *s, int64_t deadline_ms)
{
    struct timespec ts = {deadline_ms / 1000, (long)(deadline_ms % 1000) * 1000000L};
    bool stop;

    pthread_mutex_lock(&s->mu);
    while (!s->stop && pthread_cond_timedwait(&s->cv, &s->mu, &ts) != ETIMEDOUT)
        ;
    stop = s->stop;
    pthread_mutex_unlock(&s->mu);
    return stop;
}

static int64_t mono_ms(void)
{
    return (int64_t)(cd_mono_ns() / 1000000u);
}

static void *run(void *arg)
{
    struct cd_retention_schedule *s = arg;
    static const struct cd_actor system = CD_ACTOR_SYSTEM_INIT("retention schedule");
    int64_t next = mono_ms() + s->first_ms;

    pthread_setname_np(pthread_self(), "cd-retention");
    while (!wait_until(s, next)) {
        json_t *report = NULL;
        uint64_t t0 = cd_mono_ns();
        enum cd_err err = cd_retention_run(s->core, s->rules, &system, false, 0, &report);
        if (err == CD_OK)
            cd_log(CD_LOG_INFO, "retention.run", "\"run\":\"%s\",\"held_customers\":%lld,"
                                                 "\"ms\":%llu",
                   json_string_value(json_object_get(report, "id")),
                   (long long)json_integer_value(json_object_get(report, "held_customers_skipped")),
                   (unsigned long long)((cd_mono_ns() - t0) / 1000000u));
        else
            cd_log(CD_LOG_WARN, "retention.run_failed", "\"error\":\"%s\"", cd_err_name(err));
        json_decref(report);
        next += s->interval_ms;
        if (next < mono_ms())
            next = mono_ms() + s->interval_ms;
    }
    return NULL;
}

enum cd_err cd_retention_schedule_start(struct cd_core *core,
                                        const struct cd_retention_rules *rules,
                                        unsigned interval_s, unsigned first_s,
                                        struct cd_retention_schedule **out)
{
    struct cd_retention_schedule *s;
    pthread_condattr_t ca;

    if (interval_s == 0)
        return cd_err_set(CD_ERR_INVALID, "the retention interval must be at least 1 s");
    if ((s = cd_calloc(1, sizeof *s)) == NULL)
        return CD_ERR_NOMEM;
    s->core = core;
    s->rules = rules;
    s->interval_ms = (int64_t)interval_s * 1000;
    s->first_ms = (int64_t)first_s * 1000;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_init(&ca);
    /* cd_mono_ns is CLOCK_MONOTONIC: the wait is on the same clock, so a wall-clock step
     * neither runs the job early nor holds it back. */
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&s->thread, NULL, run, s) != 0) {
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        cd_free(s);
        return cd_err_set(CD_ERR_INTERNAL, "cannot start the retention schedule");
    }
    *out = s;
    return CD_OK;
}

void cd_retention_schedule_stop(struct cd_retention_schedule *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    cd_free(s);
}
