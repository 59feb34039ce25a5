/* Demo case history: a year of a support team's work, so that queues, reports and ETAs mean
 * something out of the box. Each case lives through the same clocks as a real one (opened,
 * answered, perhaps waiting on the customer, resolved, sometimes reopened, closed when its
 * reopen window ends), with times drawn from a fixed-seed generator around the SLA targets:
 * most answers come in time, a few late — those are the breaches. The load is one audit event;
 * demo cases carry no history rows. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "audit/audit.h"
#include "cases_int.h"

#define DAY_MS (86400LL * 1000)
#define HOUR_MS (3600LL * 1000)
#define BATCH 250

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static double unit(uint64_t *s)
{
    return (double)(rnd(s) >> 11) / 9007199254740992.0; /* [0, 1) */
}

/* An exponential draw with the given mean (a service time: most short, a few long). */
static double expo(uint64_t *s, double mean)
{
    double u = unit(s);
    return -log(u > 1e-12 ? u : 1e-12) * mean;
}

static int pick(uint64_t *s, const int *weights, int n)
{
    int total = 0, r;

    for (int i = 0; i < n; i++)
        total += weights[i];
    r = (int)(rnd(s) % (uint64_t)total);
    for (int i = 0; i < n; i++)
        if ((r -= weights[i]) < 0)
            return i;
    return n - 1;
}

static const struct {
    const char *id, *name, *teams, *skills;
} agents[] = {
    {"agt_01J0DEM00123456789ABCDEFGA", "Amara (support)", "[\"support\"]", "[\"billing\"]"},
    {"agt_01J0DEM0789ABCDEFGHJKMNPQB", "Bruno (support)", "[\"support\"]", "[]"},
    {"agt_01J0DEM0EFGHJKMNPQRSTVWXYC", "Chen (support)", "[\"support\"]", "[\"technical\"]"},
    {"agt_01J0DEM0NPQRSTVWXYZ012345D", "Dana (support)", "[\"support\"]", "[\"billing\"]"},
    {"agt_01J0DEM0WXYZ0123456789ABCE", "Eitan (support)", "[\"support\"]", "[\"technical\"]"},
    {"agt_01J0DEM03456789ABCDEFGHJKF", "Farah (complaints)", "[\"complaints\"]",
     "[\"billing\"]"},
    {"agt_01J0DEM0ABCDEFGHJKMNPQRSTG", "Gustav (complaints)", "[\"complaints\"]", "[]"},
    {"agt_01J0DEM0HJKMNPQRSTVWXYZ01H", "Hana (complaints, support)",
     "[\"complaints\",\"support\"]", "[\"billing\",\"technical\"]"},
};
#define NAGENTS (sizeof agents / sizeof agents[0])

struct demo {
    struct cd_cases *cs;
    const char (*ids)[CD_ID_MAX];
    size_t nids;
    int n, days, from, to;
    int64_t now;
    uint64_t seed, batch_seed;
};

/* Moves k to status `to` at `at` (when at has not come yet, nothing happens: false). */
static bool step(struct cd__case *k, int to, int64_t at, int64_t now)
{
    int from = k->status;

    if (at > now)
        return false;
    k->status = to;
    cd__clocks_apply(k, CE_STATUS, from, at, NULL);
    k->updated_at = at;
    return true;
}

static bool answer(struct cd__case *k, int64_t at, int64_t now)
{
    if (at > now)
        return false;
    if (k->status == CS_NEW)
        step(k, CS_OPEN, at, now);
    cd__clocks_apply(k, CE_OUTBOUND, 0, at, NULL);
    k->updated_at = at;
    return true;
}

/* The target of a clock as elapsed time from t (for drawing times around it). */
static int64_t target_ms(const struct cd__case *k, enum cd__clock c, int64_t t)
{
    int64_t due = 0;

    if (cd__sla_due(&k->sla, c, t, 0, &due) != CD_OK || due == 0)
        return c == CK_RESOLUTION ? 5 * DAY_MS : 8 * HOUR_MS;
    return due - t;
}

static void remedy_for(struct demo *d, struct cd__case *k)
{
    static const int complaint_w[] = {35, 15, 35, 10, 5};
    static const int outcome_w[] = {45, 25, 30};

    if (k->type == CT_COMPLAINT) {
        k->remedy = pick(&d->seed, complaint_w, 5);
        k->outcome = pick(&d->seed, outcome_w, 3);
        if (k->outcome == 2 && (k->remedy == 0 || k->remedy == 1))
            k->remedy = 2; /* not upheld: an apology for the trouble, no money */
    } else {
        k->remedy = unit(&d->seed) < 0.7 ? 4 : 3;
        k->outcome = k->type == CT_QUESTION ? 3 : 4;
    }
    k->has_amount = k->remedy == 0 || k->remedy == 1;
    if (k->has_amount) {
        k->remedy_amount = 500 + (int64_t)(rnd(&d->seed) % 19500);
        snprintf(k->remedy_currency, sizeof k->remedy_currency, "EUR");
    }
}

/* Lives one case from its opening to now. */
static void live(struct demo *d, struct cd__case *k)
{
    int64_t t = k->opened_at, now = d->now;
    const char *assignee = NULL;

    for (size_t tries = 0; tries < NAGENTS && !assignee; tries++) {
        size_t a = (size_t)(rnd(&d->seed) % NAGENTS);
        if (strstr(agents[a].teams, k->team))
            assignee = agents[a].id;
    }
    /* Claimed from the queue within a fraction of the first-response target. */
    int64_t fr_t = target_ms(k, CK_FIRST, t);
    int64_t claim = t + (int64_t)(expo(&d->seed, 0.15) * (double)fr_t);
    if (claim > now)
        return;
    if (assignee)
        snprintf(k->assignee, sizeof k->assignee, "%s", assignee);
    step(k, CS_OPEN, claim, now);
    /* First answer: mostly in time; about one in twenty late. */
    t = claim + (int64_t)(expo(&d->seed, 0.3) * (double)fr_t);
    if (!answer(k, t, now))
        return;
    /* Waiting on the customer, who writes back. */
    if (unit(&d->seed) < 0.3) {
        if (!step(k, CS_PENDING_CUSTOMER, t + 60000, now))
            return;
        t += 60000 + (int64_t)(expo(&d->seed, 20.0) * (double)HOUR_MS);
        if (!step(k, CS_OPEN, t, now))
            return;
        cd__clocks_apply(k, CE_INBOUND, 0, t, NULL);
        t += (int64_t)(expo(&d->seed, 0.3) * (double)target_ms(k, CK_NEXT, t));
        if (!answer(k, t, now))
            return;
    }
    int64_t rs_t = target_ms(k, CK_RESOLUTION, k->opened_at);
    int64_t resolve = k->opened_at + (int64_t)(expo(&d->seed, 0.28) * (double)rs_t);
    if (resolve <= t)
        resolve = t + 5 * 60000;
    remedy_for(d, k);
    if (!step(k, CS_RESOLVED, resolve, now))
        return;
    /* Now and then the customer is not satisfied and replies within the window. */
    if (unit(&d->seed) < 0.04) {
        int64_t back = resolve + HOUR_MS + (int64_t)(rnd(&d->seed) % (uint64_t)(3 * DAY_MS));
        if (!step(k, CS_REOPENED, back, now))
            return;
        cd__clocks_apply(k, CE_INBOUND, 0, back, NULL);
        int64_t again = back + (int64_t)(expo(&d->seed, 6.0) * (double)HOUR_MS);
        if (!answer(k, again, now))
            return;
        if (!step(k, CS_RESOLVED, again + HOUR_MS, now))
            return;
        resolve = again + HOUR_MS;
    }
    step(k, CS_CLOSED, resolve + 7 * DAY_MS, now);
}

static enum cd_err demo_batch(struct cd_tx *tx, void *ctx)
{
    struct demo *d = ctx;
    static const int type_w[CT__COUNT] = {55, 15, 25, 5};
    static const int chan_w[] = {45, 8, 15, 22, 5, 5, 0, 0, 0}; /* email sms phone chat ... */
    static const int impact_w[CI__COUNT] = {15, 70, 13, 2};
    enum cd_err err = CD_OK;

    d->seed = d->batch_seed; /* a rerun of the write draws the same cases */
    for (int i = d->from; i < d->to && err == CD_OK; i++) {
        struct cd__case k;
        struct cd__sensitive s;
        memset(&s, 0, sizeof s);
        cd__case_init(&k);
        /* Opening times over the period, more on weekdays and in office hours. */
        int64_t at = d->now - (int64_t)d->days * DAY_MS +
                     (int64_t)(unit(&d->seed) * (double)d->days * (double)DAY_MS);
        cd_id_new("cas", k.id);
        snprintf(k.customer_id, sizeof k.customer_id, "%s",
                 d->ids[rnd(&d->seed) % d->nids]);
        k.type = pick(&d->seed, type_w, CT__COUNT);
        k.channel = pick(&d->seed, chan_w, 9);
        k.impact = pick(&d->seed, impact_w, CI__COUNT);
        snprintf(k.source, sizeof k.source, k.channel == 2 ? "api" : "inbound");
        if (k.type == CT_COMPLAINT)
            snprintf(k.complaint_rules, sizeof k.complaint_rules, "[\"COMPLAINT.DISSATISFIED\"]");
        if (unit(&d->seed) < 0.25) {
            snprintf(k.tags[k.ntags++], CD__CASES_NAME_MAX, "%s",
                     unit(&d->seed) < 0.6 ? "billing" : "technical");
        }
        if (unit(&d->seed) < 0.03)
            s.vulnerability = 1u << (rnd(&d->seed) % 4);
        if (unit(&d->seed) < 0.3) {
            static const char *const tiers[] = {"standard", "silver", "gold"};
            s.has_value = s.has_spend = true;
            snprintf(s.tier, sizeof s.tier, "%s", tiers[rnd(&d->seed) % 3]);
            s.spend_minor = (int64_t)(rnd(&d->seed) % 500000);
            snprintf(s.currency, sizeof s.currency, "EUR");
        }
        k.queue_len = (long)(rnd(&d->seed) % 40);
        if ((err = cd__case_new(d->cs, tx, &k, &s, at)) == CD_OK) {
            live(d, &k);
            cd__clocks_apply(&k, CE_SWEEP, 0, d->now, NULL);
            k.version = 1;
            err = cd__case_store(tx, &k, false);
        }
        cd__case_free(&k);
    }
    return err;
}

static enum cd_err agents_fn(struct cd_tx *tx, void *ctx)
{
    struct demo *d = ctx;
    int64_t n = 0;
    enum cd_err err;

    if ((err = cd_tx_int(tx, "SELECT count(*) FROM cases", NULL, 0, &n)) != CD_OK)
        return err;
    if (n > 0) {
        d->n = 0; /* loaded before: nothing to do */
        return CD_OK;
    }
    for (size_t i = 0; i < NAGENTS && err == CD_OK; i++) {
        struct cd_val p[] = {CD_VCSTR(agents[i].id), CD_VCSTR(agents[i].name),
                             CD_VCSTR(agents[i].teams), CD_VCSTR(agents[i].skills),
                             CD_VINT(d->now)};
        err = cd_tx_exec(tx, "INSERT INTO case_agents(id, token_id, name, teams, skills, active,"
                             " created_at, updated_at) VALUES($1, NULL, $2, $3, $4, 1, $5, $5)"
                             " ON CONFLICT DO NOTHING",
                         p, 5, NULL, NULL, NULL);
    }
    struct cd_audit_event ev = {.action = "cases.demo_load", .outcome = "ok",
                                .actor_token = "system", .actor_name = "demo data"};
    return err == CD_OK ? cd_audit_append(tx, &ev, NULL) : err;
}

enum cd_err cd_cases_load_demo(struct cd_cases *cs, const char (*ids)[CD_ID_MAX], size_t nids,
                               int n, int days)
{
    struct demo d = {cs, ids, nids, n, days, 0, 0, cd_now_ms(), 0x9e3779b97f4a7c15ull, 0};
    enum cd_err err;

    if (nids == 0 || n <= 0 || days <= 0)
        return CD_OK;
    if ((err = cd_store_write(cs->store, agents_fn, &d)) != CD_OK || d.n == 0)
        return err;
    /* The queue lengths at opening are drawn (ETAs compare them), not counted as cases are
     * inserted in bulk; the clocks run from each case's opening. */
    for (d.from = 0; d.from < n && err == CD_OK; d.from = d.to) {
        d.to = d.from + BATCH < n ? d.from + BATCH : n;
        d.batch_seed = d.seed;
        err = cd_store_write(cs->store, demo_batch, &d);
    }
    return err;
}
