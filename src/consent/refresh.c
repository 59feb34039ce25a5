/* Customer attributes (jurisdiction, time zone, restriction, merge) from the core: one customer
 * on demand, and the refresher thread that follows every change within a quarter second. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "consent_int.h"
#include "core/core.h"

/* The projection's form of the core's attributes of a customer; false when the id is not a
 * customer id. */
bool cd__consent_cattr_from(struct cd_consent *c, const struct cd_core_customer_attrs *in,
                       struct cd__cattr *a)
{
    if (!cd_id_bits(in->id, "cus", a->key))
        return false;
    a->juris = cd__consent_rules_find(&c->rules, in->jurisdiction);
    a->tz = cd__consent_tz_index(c, in->time_zone);
    struct cd_str sv = in->survivor_id;
    a->restricted = in->restricted;
    snprintf(a->survivor, sizeof a->survivor, "%.*s", (int)(sv.len < CD_ID_MAX ? sv.len : 0),
             sv.p ? sv.p : "");
    a->merged_at = in->merged_at;
    return true;
}

/* Applies a customer's attributes to p (write lock, or p private), and its merge when it was
 * merged and `merges` is true. */
enum cd_err cd__consent_cattr_apply(struct cd__proj *p, const struct cd__cattr *a, bool merges)
{
    struct cd__cust *cu, *sv;
    uint8_t skey[16];
    enum cd_err err;

    if ((err = cd__proj_upsert(p, a->key, &cu)) != CD_OK)
        return err;
    cu->juris = a->juris;
    cu->tz = a->tz;
    cu->rflags = (uint8_t)(a->restricted ? cu->rflags | CD__RF_RESTRICTED
                                         : cu->rflags & ~CD__RF_RESTRICTED);
    cd__proj_sync(p, cu);
    if (!merges || !cd_id_bits(cd_str_c(a->survivor), "cus", skey))
        return CD_OK;
    /* Records never move, so cu stays good while the survivor is added. */
    if ((err = cd__proj_upsert(p, skey, &sv)) != CD_OK)
        return err;
    return cd__proj_merge(p, cu, sv, a->merged_at);
}

/* ---- customer attributes: one customer on demand, and the refresher ---- */

struct meta_q {
    struct cd_consent *c;
    struct cd_str id;
    struct cd__cattr a;
    bool found;
};

static enum cd_err meta_row(void *ctx, const struct cd_core_customer_attrs *in)
{
    struct meta_q *q = ctx;

    q->found = cd__consent_cattr_from(q->c, in, &q->a);
    return CD_OK;
}

static enum cd_err meta_fn(struct cd_tx *tx, void *ctx)
{
    struct meta_q *q = ctx;

    return cd_core_customer_attrs(tx, q->id, meta_row, q);
}

enum cd_err cd__consent_refresh_customer(struct cd_consent *c, struct cd_str customer_id,
                                         bool *exists)
{
    struct meta_q q;
    uint8_t key[16];
    enum cd_err err;

    *exists = false;
    memset(&q, 0, sizeof q);
    q.c = c;
    q.id = customer_id;
    if (!cd_id_bits(customer_id, "cus", key))
        return CD_OK;
    if ((err = cd_store_read(c->store, meta_fn, &q)) != CD_OK)
        return err;
    if (!q.found)
        return CD_OK;
    *exists = true;
    cd__consent_wlock(c);
    err = cd__consent_cattr_apply(&c->proj, &q.a, true);
    cd__consent_wunlock(c);
    return err;
}

/* Customers are found by updated_at, which is stamped when a request starts, not when its
 * write commits: a row can commit after one stamped later, and the clock can step back. So each
 * pass looks REFRESH_LAG_MS behind the newest stamp seen so far (applying a row twice is
 * harmless) and walks (updated_at, id) pages, so a busy window never stalls it. A customer
 * missed even so is found when a decision asks for them (cd_consent_decide_exact). */
#define REFRESH_LAG_MS 2000
#define REFRESH_PAGE 5000

struct refresh {
    struct cd_consent *c;
    int64_t after_ts; /* the page starts after (after_ts, after_id) */
    char after_id[CD_ID_MAX];
    int64_t max;
    size_t rows;
};

static enum cd_err refresh_row(void *ctx, const struct cd_core_customer_attrs *in)
{
    struct refresh *r = ctx;
    struct cd__cattr a;
    enum cd_err err;

    r->rows++;
    if (in->updated_at > r->max)
        r->max = in->updated_at;
    r->after_ts = in->updated_at;
    struct cd_str id = in->id;
    snprintf(r->after_id, sizeof r->after_id, "%.*s", (int)(id.len < CD_ID_MAX ? id.len : 0),
             id.p ? id.p : "");
    if (!cd__consent_cattr_from(r->c, in, &a))
        return CD_OK;
    cd__consent_wlock(r->c);
    err = cd__consent_cattr_apply(&r->c->proj, &a, true);
    cd__consent_wunlock(r->c);
    return err;
}

static enum cd_err refresh_fn(struct cd_tx *tx, void *ctx)
{
    struct refresh *r = ctx;

    /* A restriction and a merge stamp updated_at too, so they are followed here as well. */
    return cd_core_customers_changed(tx, r->after_ts, cd_str_c(r->after_id), REFRESH_PAGE,
                                     refresh_row, r);
}

/* One pass of the refresher; the projection check runs it first so both sides see the same
 * customers table. */
void cd__consent_refresh_once(struct cd_consent *c)
{
    struct refresh r = {c, c->refreshed_until - REFRESH_LAG_MS, "", c->refreshed_until, 0};

    do {
        r.rows = 0;
        if (cd_store_read(c->store, refresh_fn, &r) != CD_OK)
            return; /* the next pass starts again from the same point */
    } while (r.rows == REFRESH_PAGE);
    c->refreshed_until = r.max;
}

static void *refresher_main(void *arg)
{
    struct cd_consent *c = arg;

    pthread_setname_np(pthread_self(), "cd-consent"); /* per-thread CPU in top and /proc */
    for (;;) {
        struct timespec ts;
        pthread_mutex_lock(&c->stop_mu);
        clock_gettime(CLOCK_REALTIME, &ts);
        /* Every 250 ms: new customers become known to decisions within a quarter second. */
        ts.tv_nsec += 250 * 1000 * 1000;
        if (ts.tv_nsec >= 1000 * 1000 * 1000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000 * 1000 * 1000;
        }
        while (!c->stopping &&
               pthread_cond_timedwait(&c->stop_cv, &c->stop_mu, &ts) == 0)
            ;
        bool stop = c->stopping;
        pthread_mutex_unlock(&c->stop_mu);
        if (stop)
            return NULL;
        pthread_mutex_lock(&c->refresh_mu);
        cd__consent_refresh_once(c);
        pthread_mutex_unlock(&c->refresh_mu);
    }
}

enum cd_err cd__consent_refresher_start(struct cd_consent *c)
{
    if (pthread_create(&c->refresher, NULL, refresher_main, c) != 0)
        return cd_err_set(CD_ERR_INTERNAL, "cannot start the consent refresher thread");
    c->refresher_started = true;
    return CD_OK;
}

void cd__consent_refresher_stop(struct cd_consent *c)
{
    if (!c->refresher_started)
        return;
    pthread_mutex_lock(&c->stop_mu);
    c->stopping = true;
    pthread_cond_broadcast(&c->stop_cv);
    pthread_mutex_unlock(&c->stop_mu);
    pthread_join(c->refresher, NULL);
    c->refresher_started = false;
}
