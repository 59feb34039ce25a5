/* Service-level clocks. A case has three: first response (from opening to the first answer),
 * next response (from a customer's message after that to the next answer) and resolution
 * (from opening to resolution, standing still while the case waits on the customer, or on a
 * third party when the policy says so, and while it stays resolved before a reopening).
 *
 * A target is a period of the policy's business calendar ("4 business hours", "10 business
 * days") or of elapsed time ("24 hours"). A clock's deadline is where its period ends from
 * the clock's start (src/calendar: business time stops outside working hours, on holidays and
 * weekends), moved later by the time the clock stood still, measured the same way: working
 * time for business periods, elapsed time for the others. So a pause of three working hours
 * moves a business-hours deadline by three working hours, and a pause over a weekend moves it
 * not at all. Every deadline is an exclusive instant: an answer before it is on time. */
#include <stdio.h>
#include <string.h>
#include "cases_int.h"

static bool business(enum cd_period_unit u)
{
    return u == CD_PERIOD_BUSINESS_MINUTES || u == CD_PERIOD_BUSINESS_HOURS ||
           u == CD_PERIOD_BUSINESS_DAYS;
}

static void set_measures(const struct cd_cases *cs, struct cd__applied *ap)
{
    for (int c = 0; c < CK__COUNT; c++)
        ap->measure[c] = ap->has[c] && business(ap->p[c].unit) ? ap->cal : cs->always;
}

void cd__sla_choose(const struct cd_cases *cs, const struct cd__case_facts *f,
                    struct cd__applied *ap)
{
    memset(ap, 0, sizeof *ap);
    for (size_t i = 0; i < cs->npolicies; i++) {
        const struct cd__sla_policy *p = &cs->policies[i];
        if (!cd__when_matches(&p->applies, f))
            continue;
        for (size_t t = 0; t < p->ntargets; t++) {
            if (!cd__when_matches(&p->targets[t].when, f))
                continue;
            ap->has_policy = true;
            snprintf(ap->policy, sizeof ap->policy, "%s", p->id);
            snprintf(ap->version, sizeof ap->version, "%s", p->version);
            snprintf(ap->calendar, sizeof ap->calendar, "%s", p->calendar);
            ap->target = (int)t;
            memcpy(ap->has, p->targets[t].has, sizeof ap->has);
            memcpy(ap->p, p->targets[t].p, sizeof ap->p);
            ap->pause_on = p->pause_on;
            ap->due_soon = p->due_soon;
            ap->cal = p->cal;
            set_measures(cs, ap);
            return;
        }
    }
}

enum cd_err cd__sla_dump(const struct cd__applied *ap, char **out)
{
    char t[64];
    json_t *o, *pause;
    enum cd_err err = CD_ERR_NOMEM;

    *out = NULL;
    if (!ap->has_policy)
        return CD_OK;
    if ((o = json_pack("{s:s,s:s,s:s,s:i}", "policy", ap->policy, "version", ap->version,
                       "calendar", ap->calendar, "target", ap->target)) == NULL)
        return CD_ERR_NOMEM;
    for (int c = 0; c < CK__COUNT; c++) {
        if (!ap->has[c])
            continue;
        cd_period_format(&ap->p[c], t, sizeof t);
        if (cd_json_set_new(o, cd__case_clocks[c], json_string(t)) != CD_OK)
            goto out;
    }
    cd_period_format(&ap->due_soon, t, sizeof t);
    if ((pause = json_array()) == NULL || cd_json_set_new(o, "pause_on", pause) != CD_OK ||
        cd_json_set_new(o, "due_soon", json_string(t)) != CD_OK)
        goto out;
    for (int s = 0; s < CS__COUNT; s++)
        if (((ap->pause_on >> s) & 1u) &&
            json_array_append_new(pause, json_string(cd__case_statuses[s])) != 0)
            goto out;
    err = cd_json_dump(o, out, NULL);
out:
    json_decref(o);
    return err;
}

static void load_period(const json_t *o, const char *key, bool *has, struct cd_period *p)
{
    const char *s = json_string_value(json_object_get(o, key));

    *has = s && cd_period_parse(cd_str_c(s), p) == CD_OK;
}

void cd__sla_load(const struct cd_cases *cs, const char *text, struct cd__applied *ap)
{
    json_t *o = NULL, *pause;
    const char *s;
    bool has;

    memset(ap, 0, sizeof *ap);
    if (text == NULL || text[0] == '\0' || cd_json_parse_object(text, strlen(text), &o) != CD_OK)
        goto out;
    ap->has_policy = true;
    snprintf(ap->policy, sizeof ap->policy, "%s",
             (s = json_string_value(json_object_get(o, "policy"))) ? s : "");
    snprintf(ap->version, sizeof ap->version, "%s",
             (s = json_string_value(json_object_get(o, "version"))) ? s : "");
    snprintf(ap->calendar, sizeof ap->calendar, "%s",
             (s = json_string_value(json_object_get(o, "calendar"))) ? s : "");
    ap->target = (int)json_integer_value(json_object_get(o, "target"));
    for (int c = 0; c < CK__COUNT; c++)
        load_period(o, cd__case_clocks[c], &ap->has[c], &ap->p[c]);
    load_period(o, "due_soon", &has, &ap->due_soon);
    if (!has)
        ap->due_soon = (struct cd_period){CD_PERIOD_HOURS, 1, false};
    pause = json_object_get(o, "pause_on");
    for (size_t i = 0; i < json_array_size(pause); i++) {
        int st = cd__cases_name_index(cd__case_statuses,
                                      cd_str_c(json_string_value(json_array_get(pause, i))));
        if (st >= 0)
            ap->pause_on |= 1u << st;
    }
    /* A calendar removed from RULES since: the recorded targets are kept, counted in elapsed
     * time, and the server says so in its log. */
    if ((ap->cal = cd_calendars_find(cs->cals, cd_str_c(ap->calendar))) == NULL) {
        char safe[CD_CALENDAR_ID_MAX];
        cd_log(CD_LOG_WARN, "cases.calendar_missing", "\"calendar\":\"%s\"",
               cd_log_safe(ap->calendar, safe, sizeof safe));
        ap->cal = cs->always;
    }
    set_measures(cs, ap);
out:
    cd_err_clear();
    json_decref(o);
}

enum cd_err cd__sla_due(const struct cd__applied *ap, enum cd__clock ck, int64_t start,
                        int64_t paused_ms, int64_t *due)
{
    int64_t end;
    enum cd_err err;

    *due = 0;
    if (!ap->has_policy || !ap->has[ck])
        return CD_OK;
    if ((err = cd_calendar_period_end(ap->cal, start, &ap->p[ck], &end)) != CD_OK)
        return err;
    if (paused_ms > 0 &&
        (err = cd_calendar_add_working(ap->measure[ck], end, paused_ms, &end)) != CD_OK)
        return err;
    *due = end;
    return CD_OK;
}

int64_t cd__sla_between(const struct cd__applied *ap, enum cd__clock ck, int64_t from, int64_t to)
{
    if (!ap->has_policy || !ap->has[ck])
        return to > from ? to - from : 0;
    return cd_calendar_working_ms(ap->measure[ck], from, to);
}

int64_t cd__sla_soon(const struct cd__applied *ap, int64_t due)
{
    int64_t w = (int64_t)ap->due_soon.n * 60000;

    if (ap->due_soon.unit == CD_PERIOD_HOURS)
        w *= 60;
    return due - w;
}

/* ---- moving the clocks ---- */

static bool paused_status(const struct cd__case *k, int st)
{
    return (k->sla.pause_on >> st) & 1u;
}

/* A clock breached: at its deadline, which is when it became late. */
static void mark(int64_t *breached_at, unsigned *bits, unsigned *newly, enum cd__clock ck,
                 int64_t due)
{
    if (*breached_at == 0) {
        *breached_at = due;
        *newly |= 1u << ck;
    }
    *bits |= 1u << ck;
}

/* The first response, met at `at` (late: breached then, unless already marked). */
static void first_met(struct cd__case *k, int64_t at, unsigned *newly)
{
    if (k->fr_at)
        return;
    k->fr_at = at;
    if (k->fr_due && at >= k->fr_due)
        mark(&k->fr_breached, &k->breached, newly, CK_FIRST, k->fr_due);
}

/* The running next response, met at `at`. nr_breached marks the running instance only when
 * it is at or after its start. */
static void next_met(struct cd__case *k, int64_t at, unsigned *newly)
{
    if (k->nr_due == 0)
        return;
    if (at >= k->nr_due && k->nr_breached < k->nr_start) {
        k->nr_breached = k->nr_due;
        k->nr_breaches++;
        k->breached |= 1u << CK_NEXT;
        *newly |= 1u << CK_NEXT;
    }
    k->nr_due = 0;
    k->nr_start = 0;
}

static enum cd_err resolution_due(struct cd__case *k)
{
    return cd__sla_due(&k->sla, CK_RESOLUTION, k->opened_at, k->rs_paused_ms, &k->rs_due);
}

/* Ends a pause of the resolution clock at `at`. */
static enum cd_err unpause(struct cd__case *k, int64_t at)
{
    if (k->rs_paused_since == 0)
        return CD_OK;
    k->rs_paused_ms += cd__sla_between(&k->sla, CK_RESOLUTION, k->rs_paused_since, at);
    k->rs_paused_since = 0;
    return resolution_due(k);
}

static void queue_fields(struct cd__case *k)
{
    int64_t due[CK__COUNT] = {0}, first = 0, watch = 0;
    int64_t marked[CK__COUNT] = {k->fr_breached, k->nr_breached >= k->nr_start && k->nr_start
                                                     ? k->nr_breached
                                                     : 0,
                                 k->rs_breached};

    if (k->fr_due && !k->fr_at)
        due[CK_FIRST] = k->fr_due;
    if (k->nr_due)
        due[CK_NEXT] = k->nr_due;
    if (k->rs_due && !k->resolved_at && !k->rs_paused_since && k->status != CS_CLOSED)
        due[CK_RESOLUTION] = k->rs_due;
    for (int c = 0; c < CK__COUNT; c++) {
        if (!due[c])
            continue;
        if (!first || due[c] < first)
            first = due[c];
        if (!marked[c] && (!watch || due[c] < watch))
            watch = due[c];
    }
    k->queue_due = first;
    k->watch_at = watch;
    k->queued = !k->assignee[0] &&
                (k->status == CS_NEW || k->status == CS_OPEN || k->status == CS_REOPENED);
}

enum cd_err cd__clocks_apply(struct cd__case *k, enum cd__clock_event ev, int from, int64_t at,
                             unsigned *breached)
{
    unsigned newly = 0;
    enum cd_err err = CD_OK;

    switch (ev) {
    case CE_OPEN:
        k->opened_at = at;
        k->fr_at = k->fr_breached = k->nr_start = k->nr_due = k->nr_breached = 0;
        k->rs_paused_ms = k->rs_paused_since = k->rs_breached = 0;
        if ((err = cd__sla_due(&k->sla, CK_FIRST, at, 0, &k->fr_due)) != CD_OK ||
            (err = resolution_due(k)) != CD_OK)
            goto out;
        break;
    case CE_INBOUND:
        /* The customer waits for an answer: after the first one, the next-response clock. */
        if (k->fr_at && k->nr_due == 0 && k->sla.has_policy && k->sla.has[CK_NEXT]) {
            k->nr_start = at;
            if ((err = cd__sla_due(&k->sla, CK_NEXT, at, 0, &k->nr_due)) != CD_OK)
                goto out;
        }
        break;
    case CE_OUTBOUND:
        first_met(k, at, &newly);
        next_met(k, at, &newly);
        break;
    case CE_STATUS:
        if (k->status == CS_RESOLVED) {
            if ((err = unpause(k, at)) != CD_OK)
                goto out;
            /* Resolving answers the customer: open response clocks are met. */
            first_met(k, at, &newly);
            next_met(k, at, &newly);
            k->resolved_at = at;
            if (k->rs_due && at >= k->rs_due)
                mark(&k->rs_breached, &k->breached, &newly, CK_RESOLUTION, k->rs_due);
        } else if (k->status == CS_CLOSED) {
            k->closed_at = at;
        } else if (from == CS_RESOLVED) {
            /* Reopened: the time spent resolved does not count against the company. */
            k->rs_paused_since = k->resolved_at ? k->resolved_at : at;
            k->resolved_at = 0;
            k->reopened++;
            if ((err = unpause(k, at)) != CD_OK)
                goto out;
        } else if (paused_status(k, k->status) && !paused_status(k, from)) {
            k->rs_paused_since = at;
        } else if (!paused_status(k, k->status) && paused_status(k, from)) {
            if ((err = unpause(k, at)) != CD_OK)
                goto out;
        }
        break;
    case CE_REFRESH:
        break;
    case CE_SWEEP:
        /* Deadlines that passed while nothing happened. */
        if (k->fr_due && !k->fr_at && at >= k->fr_due)
            mark(&k->fr_breached, &k->breached, &newly, CK_FIRST, k->fr_due);
        if (k->nr_due && at >= k->nr_due && k->nr_breached < k->nr_start) {
            k->nr_breached = k->nr_due;
            k->nr_breaches++;
            k->breached |= 1u << CK_NEXT;
            newly |= 1u << CK_NEXT;
        }
        if (k->rs_due && !k->resolved_at && !k->rs_paused_since && k->status != CS_CLOSED &&
            at >= k->rs_due)
            mark(&k->rs_breached, &k->breached, &newly, CK_RESOLUTION, k->rs_due);
        break;
    case CE_RETARGET:
        if (!k->fr_at && (err = cd__sla_due(&k->sla, CK_FIRST, k->opened_at, 0, &k->fr_due)) !=
                             CD_OK)
            goto out;
        if (k->nr_due && (err = cd__sla_due(&k->sla, CK_NEXT, k->nr_start, 0, &k->nr_due)) !=
                             CD_OK)
            goto out;
        if (!k->resolved_at && (err = resolution_due(k)) != CD_OK)
            goto out;
        break;
    }
out:
    queue_fields(k);
    if (breached)
        *breached = newly;
    return err;
}
