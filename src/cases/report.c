/* Time passing: the sweeper (breaches of deadlines no one met, resolved cases closed when their
 * reopen window ends, the figures /metrics shows), the queue lengths, and the SLA report. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cases_int.h"

#define DAY_MS (86400LL * 1000)
#define SWEEP_BATCH 200
#define STATS_WINDOW_MS (30 * DAY_MS)

/* ---- queue lengths ---- */

enum cd_err cd__queue_len(struct cd_cases *cs, struct cd_tx *tx, const char *team, long *n)
{
    int64_t v = 0;
    struct cd_val p[] = {CD_VCSTR(team)};
    enum cd_err err;

    /* Kept by every store of a case (row.c): one row, not the team's whole index range. */
    err = cd_tx_int(tx, "SELECT waiting FROM case_queue_counts WHERE team = $1", p, 1, &v);
    if (err == CD_ERR_NOT_FOUND) {
        cd_err_clear();
        err = CD_OK; /* no case has waited in this team yet */
    }
    *n = (long)v;
    return err;
}

/* ---- breaches and closing ---- */

struct sweep_ctx {
    struct cd_cases *cs;
    int64_t now;
    size_t marked, closed;
    bool more;
    char (*ids)[CD_ID_MAX];
    size_t nids;
};

static enum cd_err sweep_id_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct sweep_ctx *s = ctx;

    if (s->nids < SWEEP_BATCH)
        snprintf(s->ids[s->nids++], CD_ID_MAX, "%.*s", (int)c[0].len, (const char *)c[0].p);
    return CD_OK;
}

static enum cd_err breach_batch(struct cd_tx *tx, void *ctx)
{
    struct sweep_ctx *s = ctx;
    enum cd_err err;

    s->nids = 0;
    struct cd_val p[] = {CD_VINT(s->now), CD_VINT(SWEEP_BATCH)};
    if ((err = cd_tx_exec(tx, "SELECT id FROM cases WHERE watch_at IS NOT NULL AND"
                              " watch_at <= $1 ORDER BY watch_at LIMIT $2",
                          p, 2, sweep_id_row, s, NULL)) != CD_OK)
        return err;
    s->more = s->nids == SWEEP_BATCH;
    for (size_t i = 0; i < s->nids; i++) {
        struct cd__case k;
        unsigned newly = 0;
        cd__case_init(&k);
        if ((err = cd__case_load(s->cs, tx, cd_str_c(s->ids[i]), &k)) == CD_OK &&
            (err = cd__clocks_apply(&k, CE_SWEEP, 0, s->now, &newly)) == CD_OK) {
            k.version++;
            err = cd__case_store(tx, &k, false);
        }
        if (err == CD_OK)
            err = cd__case_breaches(tx, &k, newly, s->now);
        s->marked += (size_t)__builtin_popcount(newly);
        cd__case_free(&k);
        if (err != CD_OK)
            return err;
    }
    return CD_OK;
}

static enum cd_err close_batch(struct cd_tx *tx, void *ctx)
{
    struct sweep_ctx *s = ctx;
    struct cd_cases *cs = s->cs;
    enum cd_err err;
    int64_t bound;

    /* The window is a period (days by the calendar): a case resolved before now minus the
     * window plus a day of slack is a candidate; each is checked exactly. */
    struct cd_period w = cs->set.reopen_window;
    if ((err = cd_calendar_period_end(cs->always, 0, &w, &bound)) != CD_OK)
        return err;
    s->nids = 0;
    struct cd_val p[] = {CD_VINT(s->now - bound + DAY_MS), CD_VINT(SWEEP_BATCH)};
    if ((err = cd_tx_exec(tx, "SELECT id FROM cases WHERE status = 'resolved' AND"
                              " resolved_at < $1 ORDER BY resolved_at LIMIT $2",
                          p, 2, sweep_id_row, s, NULL)) != CD_OK)
        return err;
    s->more = false;
    for (size_t i = 0; i < s->nids; i++) {
        struct cd__case k;
        int64_t until = 0;
        cd__case_init(&k);
        if ((err = cd__case_load(cs, tx, cd_str_c(s->ids[i]), &k)) == CD_OK &&
            (err = cd_calendar_period_end(k.sla.cal ? k.sla.cal : cs->always, k.resolved_at, &w,
                                          &until)) == CD_OK &&
            s->now >= until) {
            k.status = CS_CLOSED;
            if ((err = cd__clocks_apply(&k, CE_STATUS, CS_RESOLVED, s->now, NULL)) == CD_OK) {
                k.updated_at = s->now;
                k.version++;
                json_t *d = json_pack("{s:s}", "reason", "the reopen window ended");
                if ((err = d ? cd__case_store(tx, &k, false) : CD_ERR_NOMEM) == CD_OK)
                    err = cd__case_event(tx, NULL, &k, "case.close", d, s->now);
                json_decref(d);
                s->closed++;
                s->more = true;
            }
        }
        cd__case_free(&k);
        if (err != CD_OK)
            return err;
    }
    s->more = s->more && s->nids == SWEEP_BATCH;
    return CD_OK;
}

/* ---- figures for /metrics ---- */

struct stats_ctx {
    struct cd_cases *cs;
    int64_t now;
    struct cd__cases_stats st;
    int64_t *fr, *rs;
    size_t nfr, nrs, cap;
};

static enum cd_err status_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct stats_ctx *s = ctx;
    int st = cd__cases_name_index(cd__case_statuses, (struct cd_str){c[0].p, c[0].len});

    if (st >= 0)
        s->st.by_status[st] = (long)c[1].i;
    return CD_OK;
}

static enum cd_err window_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct stats_ctx *s = ctx;
    int64_t opened = c[0].i;

    if (c[1].type == CD_VAL_INT)
        s->st.breaches_total[CK_FIRST]++;
    s->st.breaches_total[CK_NEXT] += c[2].i;
    if (c[3].type == CD_VAL_INT)
        s->st.breaches_total[CK_RESOLUTION]++;
    if (c[4].type == CD_VAL_INT && s->nfr < s->cap)
        s->fr[s->nfr++] = c[4].i - opened;
    if (c[5].type == CD_VAL_INT && s->nrs < s->cap)
        s->rs[s->nrs++] = c[5].i - opened;
    return CD_OK;
}

static enum cd_err stats_fn(struct cd_tx *tx, void *ctx)
{
    struct stats_ctx *s = ctx;
    int64_t n = 0, max_soon = 0;
    enum cd_err err;

    memset(&s->st, 0, sizeof s->st);
    s->nfr = s->nrs = 0;
    for (size_t i = 0; i < s->cs->npolicies; i++) {
        struct cd__applied ap = {.due_soon = s->cs->policies[i].due_soon};
        if (0 - cd__sla_soon(&ap, 0) > max_soon)
            max_soon = 0 - cd__sla_soon(&ap, 0);
    }
    struct cd_val now[] = {CD_VINT(s->now), CD_VINT(s->now + max_soon)};
    struct cd_val since[] = {CD_VINT(s->now - STATS_WINDOW_MS)};
    if ((err = cd_tx_exec(tx, "SELECT status, count(*) FROM cases WHERE status <> 'closed'"
                              " GROUP BY status",
                          NULL, 0, status_row, s, NULL)) != CD_OK ||
        (err = cd_tx_int(tx, "SELECT count(*) FROM cases WHERE queue_due IS NOT NULL AND"
                             " queue_due >= $1 AND queue_due < $2",
                         now, 2, &n)) != CD_OK)
        return err;
    s->st.due_soon = (long)n;
    if ((err = cd_tx_int(tx, "SELECT count(*) FROM cases WHERE breached <> 0 AND"
                             " resolved_at IS NULL",
                         NULL, 0, &n)) != CD_OK)
        return err;
    s->st.breached_open = (long)n;
    return cd_tx_exec(tx, "SELECT opened_at, fr_breached, nr_breaches, rs_breached, fr_at,"
                          " resolved_at FROM cases WHERE created_at >= $1",
                      since, 1, window_row, s, NULL);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void quantiles(int64_t *v, size_t n, double q[3])
{
    static const int ps[3] = {50, 90, 99};

    if (n > 1)
        qsort(v, n, sizeof *v, cmp_i64);
    for (int i = 0; i < 3; i++) {
        size_t r = (size_t)((ps[i] * n + 99) / 100);
        q[i] = n ? (double)v[r ? r - 1 : 0] / 1000.0 : 0;
    }
}

static enum cd_err refresh_stats(struct cd_cases *cs, int64_t now)
{
    struct stats_ctx *s = cd_calloc(1, sizeof *s);
    enum cd_err err = CD_ERR_NOMEM;

    if (s == NULL)
        return CD_ERR_NOMEM;
    s->cs = cs;
    s->now = now;
    s->cap = 200000;
    if ((s->fr = cd_calloc(s->cap, sizeof *s->fr)) == NULL ||
        (s->rs = cd_calloc(s->cap, sizeof *s->rs)) == NULL)
        goto out;
    if ((err = cd_store_read(cs->store, stats_fn, s)) != CD_OK)
        goto out;
    quantiles(s->fr, s->nfr, s->st.fr_q);
    quantiles(s->rs, s->nrs, s->st.rs_q);
    s->st.fr_n = (long)s->nfr;
    s->st.rs_n = (long)s->nrs;
    s->st.at = now;
    pthread_mutex_lock(&cs->mu);
    cs->stats = s->st;
    pthread_mutex_unlock(&cs->mu);
out:
    cd_free(s->fr);
    cd_free(s->rs);
    cd_free(s);
    return err;
}

enum cd_err cd_cases_sweep(struct cd_cases *cs, int64_t now_ms, size_t *marked)
{
    struct sweep_ctx s = {.cs = cs, .now = now_ms};
    enum cd_err err = CD_OK;

    if ((s.ids = cd_calloc(SWEEP_BATCH, CD_ID_MAX)) == NULL)
        return CD_ERR_NOMEM;
    do {
        err = cd_store_write(cs->store, breach_batch, &s);
    } while (err == CD_OK && s.more);
    do {
        err = err == CD_OK ? cd_store_write(cs->store, close_batch, &s) : err;
    } while (err == CD_OK && s.more);
    cd_free(s.ids);
    size_t told = 0;
    if (err == CD_OK)
        err = cd__incidents_sweep(cs, now_ms, &told);
    if (err == CD_OK)
        err = refresh_stats(cs, now_ms);
    if (marked)
        *marked = s.marked + s.closed + told;
    if (s.marked || s.closed || told)
        cd_log(CD_LOG_INFO, "cases.swept", "\"breaches\":%zu,\"closed\":%zu,\"notices\":%zu",
               s.marked, s.closed, told);
    return err;
}

static void *sweeper(void *arg)
{
    struct cd_cases *cs = arg;

    pthread_mutex_lock(&cs->mu);
    while (!cs->stop) {
        pthread_mutex_unlock(&cs->mu);
        if (cd_cases_sweep(cs, cd_now_ms(), NULL) != CD_OK)
            cd_log(CD_LOG_WARN, "cases.sweep_failed", "\"error\":\"%s\"",
                   cd_err_name(CD_ERR_STORE));
        cd_err_clear();
        pthread_mutex_lock(&cs->mu);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += cs->sweep_ms / 1000;
        until.tv_nsec += (long)(cs->sweep_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (!cs->stop && pthread_cond_timedwait(&cs->cv, &cs->mu, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&cs->mu);
    return NULL;
}

enum cd_err cd_cases_sweeper_start(struct cd_cases *cs, unsigned interval_ms)
{
    if (cs->sweeper_running || interval_ms == 0)
        return cd_err_set(CD_ERR_INVALID, "the sweeper runs once, with an interval above 0");
    cs->sweep_ms = interval_ms;
    if (pthread_create(&cs->sweeper, NULL, sweeper, cs) != 0)
        return cd_err_set(CD_ERR_INTERNAL, "cannot start the cases sweeper");
    pthread_setname_np(cs->sweeper, "cd-cases");
    cs->sweeper_running = true;
    return CD_OK;
}

enum cd_err cd_cases_metrics(struct cd_cases *cs, struct cd_buf *out)
{
    struct cd__cases_stats st;
    enum cd_err err;

    pthread_mutex_lock(&cs->mu);
    st = cs->stats;
    pthread_mutex_unlock(&cs->mu);
#define P(...)                                                                                    \
    do {                                                                                          \
        if ((err = cd_buf_printf(out, __VA_ARGS__)) != CD_OK)                                     \
            return err;                                                                           \
    } while (0)
    P("# HELP candor_cases Cases not closed, by status (as of the last sweep).\n"
      "# TYPE candor_cases gauge\n");
    for (int s = 0; s < CS__COUNT; s++)
        if (s != CS_CLOSED)
            P("candor_cases{status=\"%s\"} %ld\n", cd__case_statuses[s], st.by_status[s]);
    P("# HELP candor_cases_due_soon Cases with a running deadline within their policy's due-soon "
      "window.\n# TYPE candor_cases_due_soon gauge\ncandor_cases_due_soon %ld\n"
      "# HELP candor_cases_breached_open Unresolved cases that breached a service level.\n"
      "# TYPE candor_cases_breached_open gauge\ncandor_cases_breached_open %ld\n",
      st.due_soon, st.breached_open);
    P("# HELP candor_cases_sla_breaches Breaches by clock among cases opened in the last 30 "
      "days.\n# TYPE candor_cases_sla_breaches gauge\n");
    for (int c = 0; c < CK__COUNT; c++)
        P("candor_cases_sla_breaches{clock=\"%s\"} %ld\n", cd__case_clocks[c],
          st.breaches_total[c]);
    static const char *const qn[3] = {"0.5", "0.9", "0.99"};
    P("# HELP candor_cases_first_response_seconds Time to first response, cases opened in the "
      "last 30 days.\n# TYPE candor_cases_first_response_seconds summary\n");
    for (int i = 0; i < 3; i++)
        P("candor_cases_first_response_seconds{quantile=\"%s\"} %.3f\n", qn[i], st.fr_q[i]);
    P("candor_cases_first_response_seconds_count %ld\n", st.fr_n);
    P("# HELP candor_cases_resolution_seconds Time to resolution, cases opened in the last 30 "
      "days.\n# TYPE candor_cases_resolution_seconds summary\n");
    for (int i = 0; i < 3; i++)
        P("candor_cases_resolution_seconds{quantile=\"%s\"} %.3f\n", qn[i], st.rs_q[i]);
    P("candor_cases_resolution_seconds_count %ld\n", st.rs_n);
#undef P
    return CD_OK;
}

/* ---- the SLA report ---- */

enum group { G_NONE, G_TEAM, G_TYPE, G_CHANNEL, G_PRIORITY };

struct bucket {
    int64_t period; /* start instant */
    char group[CD__CASES_NAME_MAX];
    long opened, resolved, open;
    long measured[CK__COUNT], met[CK__COUNT], breached[CK__COUNT], pending[CK__COUNT];
    long nr_breaches;
    int64_t *fr, *rs; /* times, ms */
    size_t nfr, nrs, cfr, crs;
};

struct report_ctx {
    const struct cd_cases_report_query *q;
    struct cd_tz *tz;
    enum group g;
    int64_t now;
    struct bucket *b;
    size_t nb, cb;
    enum cd_err err;
};

/* The start of the period holding ms, in the report's zone. */
static int64_t period_start(const struct report_ctx *r, int64_t ms)
{
    int64_t day;
    int32_t y;
    int m, d;

    if (strcmp(r->q->period, "all") == 0)
        return r->q->from_ms;
    day = cd_tz_day(r->tz, ms);
    if (strcmp(r->q->period, "week") == 0)
        day -= (cd_weekday(day) + 6) % 7; /* back to Monday (ISO 8601 weeks) */
    else if (strcmp(r->q->period, "month") == 0) {
        cd_civil_from_days(day, &y, &m, &d);
        day = cd_days_from_civil(y, m, 1);
    }
    return cd_tz_instant(r->tz, day, 0);
}

static struct bucket *bucket_of(struct report_ctx *r, int64_t period, const char *group)
{
    /* Rows arrive by creation time, so the bucket is nearly always one of the last few. */
    for (size_t i = r->nb; i > 0; i--) {
        struct bucket *b = &r->b[i - 1];
        if (b->period == period && strcmp(b->group, group) == 0)
            return b;
        if (b->period < period && r->nb - i > 64)
            break;
    }
    for (size_t i = 0; i < r->nb; i++)
        if (r->b[i].period == period && strcmp(r->b[i].group, group) == 0)
            return &r->b[i];
    if (r->nb == r->cb) {
        size_t cap = r->cb ? r->cb * 2 : 64;
        struct bucket *nb = cd_realloc(r->b, cap * sizeof *nb);
        if (nb == NULL)
            return NULL;
        r->b = nb;
        r->cb = cap;
    }
    struct bucket *b = &r->b[r->nb++];
    memset(b, 0, sizeof *b);
    b->period = period;
    snprintf(b->group, sizeof b->group, "%s", group);
    return b;
}

static bool push(int64_t **v, size_t *n, size_t *cap, int64_t x)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        int64_t *nv = cd_realloc(*v, c * sizeof *nv);
        if (nv == NULL)
            return false;
        *v = nv;
        *cap = c;
    }
    (*v)[(*n)++] = x;
    return true;
}

/* Per clock: measured when the case had a target; met, breached or still pending. */
static void count_clock(struct bucket *b, int c, bool target, bool breached, bool done)
{
    if (!target)
        return;
    b->measured[c]++;
    if (breached)
        b->breached[c]++;
    else if (done)
        b->met[c]++;
    else
        b->pending[c]++;
}

static enum cd_err report_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct report_ctx *r = ctx;
    char group[CD__CASES_NAME_MAX] = "";
    int64_t created = c[1].i, opened = c[2].i;

    if (c[0].type == CD_VAL_INT)
        snprintf(group, sizeof group, "%lld", (long long)c[0].i);
    else if (c[0].type == CD_VAL_TEXT)
        snprintf(group, sizeof group, "%.*s", (int)c[0].len, (const char *)c[0].p);
    struct bucket *b = bucket_of(r, period_start(r, created), group);
    if (b == NULL)
        return CD_ERR_NOMEM;
    int64_t fr_due = c[3].i, fr_at = c[4].i, rs_due = c[7].i, resolved = c[8].i;
    bool fr_b = c[5].type == CD_VAL_INT, rs_b = c[9].type == CD_VAL_INT;
    b->opened++;
    if (c[8].type == CD_VAL_INT)
        b->resolved++;
    else
        b->open++;
    count_clock(b, CK_FIRST, c[3].type == CD_VAL_INT, fr_b, c[4].type == CD_VAL_INT);
    count_clock(b, CK_RESOLUTION, c[7].type == CD_VAL_INT, rs_b, c[8].type == CD_VAL_INT);
    b->nr_breaches += c[6].i;
    (void)fr_due;
    (void)rs_due;
    if (c[4].type == CD_VAL_INT && !push(&b->fr, &b->nfr, &b->cfr, fr_at - opened))
        return CD_ERR_NOMEM;
    if (c[8].type == CD_VAL_INT && !push(&b->rs, &b->nrs, &b->crs, resolved - opened))
        return CD_ERR_NOMEM;
    return CD_OK;
}

/* One statement per grouping column (the store caches statements by their text). */
#define REPORT_SQL(col)                                                                           \
    "SELECT " col ", created_at, opened_at, fr_due, fr_at, fr_breached, nr_breaches, rs_due,"    \
    " resolved_at, rs_breached FROM cases WHERE created_at >= $1 AND created_at < $2"            \
    " ORDER BY created_at"

static enum cd_err report_fn(struct cd_tx *tx, void *ctx)
{
    struct report_ctx *r = ctx;
    static const char *const sql[] = {REPORT_SQL("''"), REPORT_SQL("team"), REPORT_SQL("type"),
                                      REPORT_SQL("channel"), REPORT_SQL("priority")};

    for (size_t i = 0; i < r->nb; i++) {
        cd_free(r->b[i].fr);
        cd_free(r->b[i].rs);
    }
    r->nb = 0;
    struct cd_val p[] = {CD_VINT(r->q->from_ms), CD_VINT(r->q->to_ms)};
    return cd_tx_exec(tx, sql[r->g], p, 2, report_row, r, NULL);
}

static int cmp_bucket(const void *a, const void *b)
{
    const struct bucket *x = a, *y = b;

    if (x->period != y->period)
        return x->period < y->period ? -1 : 1;
    return strcmp(x->group, y->group);
}

static json_t *clock_summary(struct bucket *b, int c, int64_t *times, size_t n)
{
    double pct = b->met[c] + b->breached[c]
                     ? 100.0 * (double)b->met[c] / (double)(b->met[c] + b->breached[c])
                     : 0;
    json_t *o = json_pack("{s:i,s:i,s:i,s:i}", "measured", (int)b->measured[c], "met",
                          (int)b->met[c], "breached", (int)b->breached[c], "pending",
                          (int)b->pending[c]);

    if (o == NULL)
        return NULL;
    json_object_set_new(o, "met_pct", b->met[c] + b->breached[c]
                                          ? json_real((double)(int64_t)(pct * 10 + 0.5) / 10)
                                          : json_null());
    if (times) {
        double q[3];
        quantiles(times, n, q);
        json_object_set_new(o, "p50_seconds", n ? json_real(q[0]) : json_null());
        json_object_set_new(o, "p90_seconds", n ? json_real(q[1]) : json_null());
    }
    return o;
}

enum cd_err cd_cases_sla_report(struct cd_cases *cs, const struct cd_cases_report_query *q,
                                json_t **out)
{
    static const char *const groups[] = {"", "team", "type", "channel", "priority", NULL};
    struct report_ctx r = {.q = q, .now = cd_now_ms()};
    json_t *rows = NULL;
    enum cd_err err;

    if (q->to_ms <= q->from_ms)
        return cd_err_set(CD_ERR_INVALID, "the report's 'to' must come after its 'from'");
    if (strcmp(q->period, "day") && strcmp(q->period, "week") && strcmp(q->period, "month") &&
        strcmp(q->period, "all"))
        return cd_err_set(CD_ERR_INVALID, "'period' must be day, week, month or all");
    r.g = G_NONE;
    if (q->group && q->group[0]) {
        int g = cd__cases_name_index(groups + 1, cd_str_c(q->group));
        if (g < 0)
            return cd_err_set(CD_ERR_INVALID, "'group' must be team, type, channel or priority");
        r.g = (enum group)(g + 1);
    }
    if (q->time_zone && q->time_zone[0] &&
        (err = cd_tz_load(cd_str_c(q->time_zone), &r.tz)) != CD_OK)
        return cd_err_set(CD_ERR_INVALID, "'time_zone': %s", cd_err_detail());
    if ((err = cd_store_read(cs->store, report_fn, &r)) != CD_OK)
        goto out;
    if (r.nb > 1)
        qsort(r.b, r.nb, sizeof *r.b, cmp_bucket);
    if ((rows = json_array()) == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < r.nb; i++) {
        struct bucket *b = &r.b[i];
        json_t *row = json_pack("{s:o,s:o,s:i,s:i,s:i,s:o,s:{s:i},s:o}", "period_start",
                                cd__time_json(b->period), "group",
                                r.g == G_NONE ? json_null() : json_string(b->group), "opened",
                                (int)b->opened, "resolved", (int)b->resolved, "open",
                                (int)b->open, "first_response",
                                clock_summary(b, CK_FIRST, b->fr, b->nfr), "next_response",
                                "breaches", (int)b->nr_breaches, "resolution",
                                clock_summary(b, CK_RESOLUTION, b->rs, b->nrs));
        if (row == NULL || json_array_append_new(rows, row) != 0) {
            err = CD_ERR_NOMEM;
            goto out;
        }
    }
    *out = json_pack("{s:o,s:o,s:s,s:o,s:s,s:O}", "from", cd__time_json(q->from_ms), "to",
                     cd__time_json(q->to_ms), "period", q->period, "group",
                     r.g == G_NONE ? json_null() : json_string(groups[r.g]), "time_zone",
                     q->time_zone && q->time_zone[0] ? q->time_zone : "UTC", "rows", rows);
    err = *out ? CD_OK : CD_ERR_NOMEM;
out:
    json_decref(rows);
    for (size_t i = 0; i < r.nb; i++) {
        cd_free(r.b[i].fr);
        cd_free(r.b[i].rs);
    }
    cd_free(r.b);
    cd_tz_free(r.tz);
    return err;
}
