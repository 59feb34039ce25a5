/* Cases from the interactions themselves, through core's hooks.
 *
 * Inbound: a message joins the case of its thread (found through the earlier interactions of
 * the thread, which core gives), or the case its metadata names ("case_id"), or, when it has no
 * thread at all (SMS, phone, chat without thread ids), the customer's newest case that is not
 * closed. A resolved case is reopened when the message comes within the reopen window of the
 * settings (counted from the resolution); after it, and for a closed case, a new case opens
 * that "follows" the old one. A message that finds no case opens one: a complaint when the
 * guard's complaint rules recognised its words (so complaints are not lost as questions), else
 * the settings' default type. Messages that occurred more than a day before they reached
 * Candor are history being imported, not a customer waiting now: they open no case.
 *
 * Outbound, for the purposes that answer a customer (service, billing): the message answers
 * the case it belongs to (thread, metadata, or the newest active case when unthreaded), which
 * stops the response clocks.
 *
 * Every change is recorded in the case's history and the ledger, in the interaction's own
 * write transaction (this runs on the store's writer thread). */
#include <stdio.h>
#include <string.h>
#include "cases_int.h"

#define DAY_MS (86400LL * 1000)

enum cd_err cd_cases_annotate(struct cd_cases *cs, const struct cd_core_content *in,
                              const json_t *complaint_rules, json_t **note)
{
    json_t *o = NULL;
    const char *case_id = json_string_value(json_object_get(in->metadata, "case_id"));
    bool complaint = cs->set.recognise_complaints && strcmp(in->direction, "inbound") == 0 &&
                     json_array_size(complaint_rules) > 0;

    *note = NULL;
    if (case_id && !cd_id_valid(cd_str_c(case_id), "cas"))
        return cd_err_set(CD_ERR_INVALID, "'metadata.case_id' is not a case id");
    if (!complaint && !case_id)
        return CD_OK;
    if ((o = json_object()) == NULL ||
        (complaint && cd_json_set_new(o, "complaint", json_deep_copy(complaint_rules)) != CD_OK) ||
        (case_id && cd_json_set_new(o, "case_id", json_string(case_id)) != CD_OK)) {
        json_decref(o);
        return CD_ERR_NOMEM;
    }
    *note = o;
    return CD_OK;
}

/* ---- finding the case ---- */

struct found {
    char id[CD_ID_MAX];
};

static enum cd_err id_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct found *f = ctx;

    if (f->id[0] == '\0')
        snprintf(f->id, sizeof f->id, "%.*s", (int)c[0].len, (const char *)c[0].p);
    return CD_OK;
}

/* The case an interaction belongs to, into f->id ("" when none). */
static enum cd_err find_case(struct cd_tx *tx, const struct cd_core_recorded *r,
                             bool active_only, struct found *f)
{
    const char *named = json_string_value(json_object_get(r->note, "case_id"));
    enum cd_err err;

    f->id[0] = '\0';
    if (named) {
        struct cd_val p[] = {CD_VCSTR(named), CD_VCSTR(r->customer_id)};
        if ((err = cd_tx_exec(tx, "SELECT id FROM cases WHERE id = $1 AND customer_id = $2", p,
                              2, id_row, f, NULL)) != CD_OK)
            return err;
        if (f->id[0] == '\0')
            return cd_err_set(CD_ERR_INVALID, "'metadata.case_id' names no case of this "
                                              "customer");
        return CD_OK;
    }
    if (r->threaded) {
        /* The newest case any earlier interaction of the thread belongs to; unused places in
         * the list hold '' (no interaction has that id). */
        struct cd_val p[CD_CORE_THREAD_PREV_MAX];
        _Static_assert(CD_CORE_THREAD_PREV_MAX == 8, "THREAD_CASE lists 8 places");
        if (r->nthread_prev == 0)
            return CD_OK; /* a new thread */
        for (size_t i = 0; i < CD_CORE_THREAD_PREV_MAX; i++)
            p[i] = i < r->nthread_prev ? CD_VCSTR(r->thread_prev[i]) : CD_VCSTR("");
        return cd_tx_exec(tx, "SELECT ci.case_id FROM case_interactions ci JOIN cases c"
                              " ON c.id = ci.case_id WHERE ci.interaction_id IN"
                              " ($1, $2, $3, $4, $5, $6, $7, $8)"
                              " ORDER BY c.created_at DESC, c.id DESC LIMIT 1",
                          p, CD_CORE_THREAD_PREV_MAX, id_row, f, NULL);
    }
    struct cd_val p[] = {CD_VCSTR(r->customer_id)};
    return cd_tx_exec(tx,
                      active_only ? "SELECT id FROM cases WHERE customer_id = $1 AND"
                                    " resolved_at IS NULL AND closed_at IS NULL"
                                    " ORDER BY created_at DESC, id DESC LIMIT 1"
                                  : "SELECT id FROM cases WHERE customer_id = $1 AND"
                                    " closed_at IS NULL ORDER BY created_at DESC, id DESC"
                                    " LIMIT 1",
                      p, 1, id_row, f, NULL);
}

/* ---- changes ---- */

static enum cd_err message_event(struct cd_tx *tx, const struct cd_core_recorded *r,
                                 struct cd__case *k, json_t *changes, unsigned breached)
{
    json_t *d = json_pack("{s:s,s:s,s:O}", "interaction", r->id, "direction", r->direction,
                          "changes", changes);
    enum cd_err err;

    if (d == NULL)
        return CD_ERR_NOMEM;
    err = cd__case_event(tx, r->actor, k, "case.message", d, r->created_at);
    json_decref(d);
    return err == CD_OK ? cd__case_breaches(tx, k, breached, r->created_at) : err;
}

static enum cd_err set_status(struct cd__case *k, int to, int64_t at, json_t *changes)
{
    int from = k->status;

    if (from == to)
        return CD_OK;
    json_object_set_new(changes, "status", json_pack("[ss]", cd__case_statuses[from],
                                                     cd__case_statuses[to]));
    k->status = to;
    return cd__clocks_apply(k, CE_STATUS, from, at, NULL);
}

/* The words of a complaint in a case opened as a question: it is a complaint now, with its
 * priority and targets (the vulnerability flags count as before). */
static enum cd_err become_complaint(struct cd_cases *cs, struct cd_tx *tx, struct cd__case *k,
                                    const json_t *rules, int64_t at, json_t *changes)
{
    struct cd__sensitive s;
    bool ok = true;
    char *text = NULL;
    enum cd_err err;

    if (k->type != CT_QUESTION || json_array_size(rules) == 0)
        return CD_OK;
    if ((err = cd__sensitive_open(cs, tx, k, &s, &ok)) != CD_OK)
        return err;
    json_object_set_new(changes, "type", json_pack("[ss]", cd__case_types[k->type],
                                                   cd__case_types[CT_COMPLAINT]));
    k->type = CT_COMPLAINT;
    if ((err = cd_json_dump(rules, &text, NULL)) != CD_OK)
        return err;
    snprintf(k->complaint_rules, sizeof k->complaint_rules, "%s", text);
    cd_free(text);
    int before = k->priority;
    k->priority = cd__priority(cs, k->type, k->impact, s.vulnerability,
                               s.has_value ? s.tier : NULL, k->priority_why,
                               sizeof k->priority_why);
    if (k->priority != before)
        json_object_set_new(changes, "priority", json_pack("[ii]", before, k->priority));
    struct cd__case_facts f = {k->type, k->channel, k->priority, k->team,
                               (const char(*)[CD__CASES_NAME_MAX])k->tags, k->ntags};
    cd__sla_choose(cs, &f, &k->sla);
    return cd__clocks_apply(k, CE_RETARGET, 0, at, NULL);
}

static enum cd_err open_case(struct cd_cases *cs, struct cd_tx *tx,
                             const struct cd_core_recorded *r, const char *follows)
{
    const json_t *rules = json_object_get(r->note, "complaint");
    struct cd__case k;
    char *text = NULL;
    json_t *d = NULL;
    enum cd_err err;

    cd__case_init(&k);
    cd_id_new("cas", k.id);
    snprintf(k.customer_id, sizeof k.customer_id, "%s", r->customer_id);
    k.type = json_array_size(rules) ? CT_COMPLAINT : cs->set.default_type;
    k.impact = CI_NORMAL;
    k.channel = cd__cases_name_index(cd__case_channels, cd_str_c(r->channel));
    snprintf(k.source, sizeof k.source, "inbound");
    if (follows)
        snprintf(k.follows, sizeof k.follows, "%s", follows);
    if (json_array_size(rules)) {
        if ((err = cd_json_dump(rules, &text, NULL)) != CD_OK)
            goto out;
        snprintf(k.complaint_rules, sizeof k.complaint_rules, "%s", text);
    }
    if ((err = cd__case_new(cs, tx, &k, NULL, r->occurred_at)) != CD_OK ||
        (err = cd__case_link(tx, k.id, r->id, r->direction, r->occurred_at)) != CD_OK)
        goto out;
    if ((d = json_pack("{s:s,s:s,s:s,s:i,s:s,s:s,s:o}", "type", cd__case_types[k.type],
                       "status", cd__case_statuses[k.status], "source", "inbound", "priority",
                       k.priority, "team", k.team, "interaction", r->id, "follows",
                       follows ? json_string(follows) : json_null())) == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    err = cd__case_event(tx, r->actor, &k, "case.create", d, r->created_at);
out:
    json_decref(d);
    cd_free(text);
    cd__case_free(&k);
    return err;
}

static enum cd_err inbound(struct cd_cases *cs, struct cd_tx *tx,
                           const struct cd_core_recorded *r, const char *case_id)
{
    struct cd__case k;
    json_t *changes = json_object();
    unsigned breached = 0;
    enum cd_err err;
    bool reopen = false;

    cd__case_init(&k);
    if (changes == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    if ((err = cd__case_load(cs, tx, cd_str_c(case_id), &k)) != CD_OK)
        goto out;
    if (k.status == CS_RESOLVED) {
        int64_t until = 0;
        struct cd_period w = cs->set.reopen_window;
        if ((err = cd_calendar_period_end(k.sla.cal ? k.sla.cal : cs->always, k.resolved_at, &w,
                                          &until)) != CD_OK)
            goto out;
        reopen = r->occurred_at < until;
    }
    if (k.status == CS_CLOSED || (k.status == CS_RESOLVED && !reopen)) {
        err = open_case(cs, tx, r, k.id);
        goto out;
    }
    if (reopen) {
        if ((err = set_status(&k, CS_REOPENED, r->occurred_at, changes)) != CD_OK)
            goto out;
    } else if (k.status == CS_PENDING_CUSTOMER &&
               (err = set_status(&k, CS_OPEN, r->occurred_at, changes)) != CD_OK) {
        goto out;
    }
    if ((err = become_complaint(cs, tx, &k, json_object_get(r->note, "complaint"),
                                r->occurred_at, changes)) != CD_OK ||
        (err = cd__clocks_apply(&k, CE_INBOUND, 0, r->occurred_at, &breached)) != CD_OK ||
        (err = cd__case_link(tx, k.id, r->id, r->direction, r->occurred_at)) != CD_OK)
        goto out;
    k.updated_at = r->created_at;
    k.version++;
    if ((err = cd__case_store(tx, &k, false)) != CD_OK)
        goto out;
    err = message_event(tx, r, &k, changes, breached);
out:
    json_decref(changes);
    cd__case_free(&k);
    return err;
}

static enum cd_err outbound(struct cd_cases *cs, struct cd_tx *tx,
                            const struct cd_core_recorded *r, const char *case_id)
{
    struct cd__case k;
    json_t *changes = json_object();
    unsigned breached = 0;
    enum cd_err err;

    cd__case_init(&k);
    if (changes == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    if ((err = cd__case_load(cs, tx, cd_str_c(case_id), &k)) != CD_OK)
        goto out;
    /* A message after resolution (a survey, a receipt) answers nothing. */
    if (k.status == CS_RESOLVED || k.status == CS_CLOSED) {
        err = cd__case_link(tx, k.id, r->id, r->direction, r->occurred_at);
        goto out;
    }
    if (k.status == CS_NEW && (err = set_status(&k, CS_OPEN, r->occurred_at, changes)) != CD_OK)
        goto out;
    if (!k.fr_at)
        json_object_set_new(changes, "first_response", json_string("met"));
    else if (k.nr_due)
        json_object_set_new(changes, "next_response", json_string("met"));
    if ((err = cd__clocks_apply(&k, CE_OUTBOUND, 0, r->occurred_at, &breached)) != CD_OK ||
        (err = cd__case_link(tx, k.id, r->id, r->direction, r->occurred_at)) != CD_OK)
        goto out;
    k.updated_at = r->created_at;
    k.version++;
    if ((err = cd__case_store(tx, &k, false)) != CD_OK)
        goto out;
    err = message_event(tx, r, &k, changes, breached);
out:
    json_decref(changes);
    cd__case_free(&k);
    return err;
}

bool cd_cases_recognises_complaints(const struct cd_cases *cs)
{
    return cs->set.recognise_complaints;
}

enum cd_err cd_cases_recorded(struct cd_cases *cs, struct cd_tx *tx,
                              const struct cd_core_recorded *r)
{    struct found f;
    bool named = json_object_get(r->note, "case_id") != NULL;
    int ch = cd__cases_name_index(cd__case_channels, cd_str_c(r->channel));
    enum cd_err err;

    if (strcmp(r->direction, "inbound") == 0) {
        /* Imported history and channels the intake leaves alone open nothing, unless the
         * message names its case. */
        bool intake = cs->set.open_from_inbound && ch >= 0 &&
                      ((cs->set.intake_channels >> ch) & 1u) &&
                      r->occurred_at >= r->created_at - DAY_MS;
        if (!intake && !named)
            return CD_OK;
        if ((err = find_case(tx, r, false, &f)) != CD_OK)
            return err;
        return f.id[0] ? inbound(cs, tx, r, f.id) : open_case(cs, tx, r, NULL);
    }
    if (strcmp(r->purpose, "service") != 0 && strcmp(r->purpose, "billing") != 0 && !named)
        return CD_OK;
    if ((err = find_case(tx, r, true, &f)) != CD_OK || f.id[0] == '\0')
        return err;
    return outbound(cs, tx, r, f.id);
}
