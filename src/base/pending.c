/* Operations in flight: a count and a condition to wait for it to reach zero. */
#include <assert.h>
#include "base.h"

void cd_pending_add(struct cd_pending *p)
{
    pthread_mutex_lock(&p->mu);
    p->n++;
    pthread_mutex_unlock(&p->mu);
}

void cd_pending_done(struct cd_pending *p)
{
    pthread_mutex_lock(&p->mu);
    assert(p->n > 0); /* every done follows its add */
    if (--p->n == 0)
        pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void cd_pending_wait(struct cd_pending *p)
{
    pthread_mutex_lock(&p->mu);
    while (p->n > 0)
        pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void cd_pending_destroy(struct cd_pending *p)
{
    assert(p->n == 0);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
}
