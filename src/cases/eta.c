/* Honest ETAs. "When will this be resolved?" is answered from what happened to similar cases
 * before, never from a target or a wish: the resolution times of cases of the same type
 * resolved in the last history_days (the settings), as alike as the data allows — same channel,
 * same priority and a queue of about the same length when they opened as the case's team has
 * now — dropping the least telling likeness first (queue, then channel, then priority) while
 * fewer than min_sample cases match. An open case is compared with the similar cases that
 * were still open at its age (what is left of their time), so a case that has already waited
 * long is not promised the time that short cases took. When no sample is large enough, the
 * answer says so and gives no time at all. The answer names the sample size and what the
 * cases had in common, so the customer and the agent can judge it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cases_int.h"

#define DAY_MS (86400LL * 1000)

struct sample {
    int64_t *d;     /* resolution times (ms) */
    long *q;        /* queue length at open */
    size_t n, cap;
};

static enum cd_err sample_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct sample *s = ctx;

    if (s->n == s->cap)
        return CD_OK;
    s->d[s->n] = c[0].i;
    s->q[s->n] = (long)c[1].i;
    s->n++;
    return CD_OK;
}

struct eta_ctx {
    struct cd_cases *cs;
    struct cd_str id;
    int64_t now;
    struct cd__case k;
    long queue_now;
    struct sample by_channel; /* same type, channel, priority */
    struct sample by_prio;    /* same type, priority */
    struct sample by_type;    /* same type */
};

/* Resolved cases of the type (and the channel, the priority) in the history window, newest
 * first: three literal statements, as the store caches statements by their text. */
#define ETA_HEAD                                                                                  \
    "SELECT resolved_at - opened_at, queue_len FROM cases WHERE type = $1"                        \
    " AND resolved_at IS NOT NULL AND resolved_at >= $2"
#define ETA_TAIL " ORDER BY resolved_at DESC LIMIT $5"

static enum cd_err fetch(struct cd_tx *tx, struct eta_ctx *e, struct sample *s, bool channel,
                         bool prio)
{
    const char *sql = channel ? ETA_HEAD " AND channel = $3 AND priority = $4" ETA_TAIL
                      : prio  ? ETA_HEAD " AND $3 = '' AND priority = $4" ETA_TAIL
                              : ETA_HEAD " AND $3 = '' AND $4 = 0" ETA_TAIL;
    struct cd_val p[] = {CD_VCSTR(cd__case_types[e->k.type]),
                         CD_VINT(e->now - (int64_t)e->cs->set.eta_history_days * DAY_MS),
                         CD_VCSTR(channel && e->k.channel >= 0 ? cd__case_channels[e->k.channel]
                                                               : ""),
                         CD_VINT(prio ? e->k.priority : 0),
                         CD_VINT(e->cs->set.eta_max_sample)};

    s->n = 0;
    return cd_tx_exec(tx, sql, p, 5, sample_row, s, NULL);
}

static enum cd_err eta_fn(struct cd_tx *tx, void *ctx)
{
    struct eta_ctx *e = ctx;
    enum cd_err err;

    if ((err = cd__case_load(e->cs, tx, e->id, &e->k)) != CD_OK)
        return err;
    if (e->k.resolved_at || e->k.status == CS_CLOSED)
        return CD_OK;
    if ((err = cd__queue_len(e->cs, tx, e->k.team, &e->queue_now)) != CD_OK ||
        (err = fetch(tx, e, &e->by_channel, true, true)) != CD_OK)
        return err;
    if ((long)e->by_channel.n >= e->cs->set.eta_min_sample)
        return CD_OK;
    if ((err = fetch(tx, e, &e->by_prio, false, true)) != CD_OK)
        return err;
    if ((long)e->by_prio.n >= e->cs->set.eta_min_sample)
        return CD_OK;
    return fetch(tx, e, &e->by_type, false, false);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The remaining times (d - age, for d > age) of s, in the queue band when band is set. */
static size_t remaining(const struct sample *s, int64_t age, bool band, long q, int64_t *out)
{
    long lo = q / 2, hi = 2 * q + 2;
    size_t n = 0;

    for (size_t i = 0; i < s->n; i++) {
        if (s->d[i] <= age)
            continue;
        if (band && (s->q[i] < lo || s->q[i] > hi))
            continue;
        out[n++] = s->d[i] - age;
    }
    return n;
}

/* The p-th percentile (0..100) of sorted v[0..n), nearest rank. */
static int64_t pct(const int64_t *v, size_t n, int p)
{
    size_t r = (size_t)((p * n + 99) / 100);

    return v[r ? r - 1 : 0];
}

/* "3 days 4 hours", "5 hours 10 minutes", "40 minutes": how people say it. */
static void human(int64_t ms, char *out, size_t n)
{
    int64_t m = (ms + 59999) / 60000, h = m / 60, d = h / 24;

    if (d >= 1)
        snprintf(out, n, "%lld day%s%s%lld hour%s", (long long)d, d == 1 ? "" : "s",
                 h % 24 ? " " : "", (long long)(h % 24), h % 24 == 1 ? "" : "s");
    else if (h >= 1)
        snprintf(out, n, "%lld hour%s %lld minute%s", (long long)h, h == 1 ? "" : "s",
                 (long long)(m % 60), m % 60 == 1 ? "" : "s");
    else
        snprintf(out, n, "%lld minute%s", (long long)m, m == 1 ? "" : "s");
    if (d >= 1 && h % 24 == 0) { /* "3 days" without " 0 hours" */
        char *z = strstr(out, " 0 hour");
        if (z)
            *z = '\0';
    }
}

static json_t *estimate(const struct eta_ctx *e, int64_t *v, size_t n, const char *similar,
                        json_t *on)
{
    char a[64], b[64], c[64], text[900], range[160];
    int64_t p50, p80, p90;

    qsort(v, n, sizeof *v, cmp_i64);
    p50 = pct(v, n, 50);
    p80 = pct(v, n, 80);
    p90 = pct(v, n, 90);
    human(p50, a, sizeof a);
    human(p80, b, sizeof b);
    human(p90, c, sizeof c);
    snprintf(range, sizeof range, "%s to %s", a, c);
    snprintf(text, sizeof text,
             "Of %zu similar cases (%s) resolved in the last %d days%s, half were resolved "
             "within %s from this point, 8 in 10 within %s and 9 in 10 within %s. This is what "
             "happened to those cases, not a promise.",
             n, similar, e->cs->set.eta_history_days,
             e->now > e->k.opened_at ? " that were still open at this case's age" : "", a, b, c);
    return json_pack("{s:{s:o,s:o,s:o,s:s,s:I,s:I,s:I},s:i,s:o,s:s,s:i}", "estimate", "p50_at",
                     cd__time_json(e->now + p50), "p80_at", cd__time_json(e->now + p80),
                     "p90_at", cd__time_json(e->now + p90), "range", range, "p50_ms",
                     (json_int_t)p50, "p80_ms", (json_int_t)p80, "p90_ms", (json_int_t)p90,
                     "sample_size", (int)n, "similar_on", on, "statement", text,
                     "history_days", e->cs->set.eta_history_days);
}

static json_t *similar_list(bool channel, bool prio, bool queue)
{
    json_t *a = json_pack("[s]", "type");

    if (a && channel)
        json_array_append_new(a, json_string("channel"));
    if (a && prio)
        json_array_append_new(a, json_string("priority"));
    if (a && queue)
        json_array_append_new(a, json_string("queue_length"));
    return a;
}

static json_t *answer(struct eta_ctx *e)
{
    const struct cd__case *k = &e->k;
    int64_t age = e->now > k->opened_at ? e->now - k->opened_at : 0;
    size_t cap = (size_t)e->cs->set.eta_max_sample;
    long min = e->cs->set.eta_min_sample;
    int64_t *v = cd_calloc(cap ? cap : 1, sizeof *v);
    json_t *o = NULL;
    size_t n;
    char range[400];

    if (v == NULL)
        return NULL;
    /* The likenesses, most telling first; the first with enough cases answers. */
    struct {
        const struct sample *s;
        bool channel, prio, queue;
        const char *words;
    } levels[] = {
        {&e->by_channel, true, true, true, "same type, channel and priority, similar queue"},
        {&e->by_channel, true, true, false, "same type, channel and priority"},
        {&e->by_prio, false, true, false, "same type and priority"},
        {&e->by_type, false, false, false, "same type"},
    };
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        if ((n = remaining(levels[i].s, age, levels[i].queue, e->queue_now, v)) < (size_t)min)
            continue;
        o = estimate(e, v, n, levels[i].words,
                     similar_list(levels[i].channel, levels[i].prio, levels[i].queue));
        goto out;
    }
    size_t best = remaining(&e->by_type, age, false, 0, v);
    if (best < remaining(&e->by_channel, age, false, 0, v))
        best = remaining(&e->by_channel, age, false, 0, v);
    snprintf(range, sizeof range,
             "There is not enough history to estimate when this case will be resolved: %zu "
             "similar cases resolved in the last %d days %s, and an estimate needs at least "
             "%ld. No time is promised.",
             best, e->cs->set.eta_history_days,
             age ? "had been open as long as this one" : "can be compared", min);
    o = json_pack("{s:n,s:i,s:[s],s:s,s:i}", "estimate", "sample_size", (int)best, "similar_on",
                  "type", "statement", range, "history_days", e->cs->set.eta_history_days);
out:
    cd_free(v);
    return o;
}

enum cd_err cd_cases_eta(struct cd_cases *cs, struct cd_str id, int64_t now_ms, json_t **out)
{
    struct eta_ctx e = {.cs = cs, .id = id, .now = now_ms};
    size_t cap = (size_t)cs->set.eta_max_sample;
    struct sample *ss[] = {&e.by_channel, &e.by_prio, &e.by_type};
    json_t *o = NULL;
    enum cd_err err = CD_OK;

    cd__case_init(&e.k);
    for (size_t i = 0; i < 3; i++) {
        ss[i]->cap = cap;
        if ((ss[i]->d = cd_calloc(cap, sizeof *ss[i]->d)) == NULL ||
            (ss[i]->q = cd_calloc(cap, sizeof *ss[i]->q)) == NULL) {
            err = CD_ERR_NOMEM;
            goto out;
        }
    }
    if ((err = cd_store_read(cs->store, eta_fn, &e)) != CD_OK)
        goto out;
    if (e.k.resolved_at || e.k.status == CS_CLOSED)
        o = json_pack("{s:s,s:s,s:o,s:n,s:s}", "case_id", e.k.id, "status",
                      cd__case_statuses[e.k.status], "resolved_at", cd__time_json(e.k.resolved_at),
                      "estimate", "statement", "This case is resolved.");
    else if ((o = answer(&e)) != NULL &&
             (cd_json_set_new(o, "case_id", json_string(e.k.id)) != CD_OK ||
              cd_json_set_new(o, "status", json_string(cd__case_statuses[e.k.status])) != CD_OK ||
              cd_json_set_new(o, "queue_length_now", json_integer(e.queue_now)) != CD_OK)) {
        json_decref(o);
        o = NULL;
    }
    if (o == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    *out = o;
out:
    for (size_t i = 0; i < 3; i++) {
        cd_free(ss[i]->d);
        cd_free(ss[i]->q);
    }
    cd__case_free(&e.k);
    return err;
}
