/* A write that holds the store's writer thread until the test opens it, so the writes queued
 * meanwhile are taken as one batch: for tests of what a batch does when one of its writes
 * fails and the batch is rolled back and run again. */
#ifndef CD_UNIT_GATE_H
#define CD_UNIT_GATE_H
#include <pthread.h>
#include "store/store.h"

struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool started, open;
    int done;       /* completions counted by gate_done (and by tests' own done functions) */
    void *ops[2];   /* what tests' done functions keep, in completion order */
};
#define GATE_INIT {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false, 0, {0}}

static enum cd_err gate_fn(struct cd_tx *tx, void *ctx)
{
    struct gate *g = ctx;
    (void)tx;
    pthread_mutex_lock(&g->mu);
    g->started = true;
    pthread_cond_broadcast(&g->cv);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    return CD_OK;
}

static void gate_done(void *ctx, enum cd_err err, const char *detail)
{
    struct gate *g = ctx;
    (void)err;
    (void)detail;
    pthread_mutex_lock(&g->mu);
    g->done++;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* Queues the gate and waits until the writer is inside it. */
static void gate_close(struct cd_store *s, struct gate *g)
{
    assert_int_equal(cd_store_write_async(s, gate_fn, g, gate_done, g), CD_OK);
    pthread_mutex_lock(&g->mu);
    while (!g->started)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

/* Lets the writer go on and waits for `done` completions (the gate's own included). */
static void gate_open_and_wait(struct gate *g, int done)
{
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    while (g->done < done)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}
#endif
