/* cases — complaints and service levels: cases, SLA clocks, the fair queue, honest ETAs.
 *
 * Owns: the cases, case_interactions, case_events and case_agents tables (through the store);
 * the case settings (RULES/cases/settings.yaml: intake, priority, routing, blind mode, ETAs)
 * and the SLA policies (RULES/sla/NAME.yaml: targets by case type, priority and channel, each
 * counted by a business calendar of src/calendar); the status machine (only legal
 * transitions); the three clocks of a case (first response, next response, resolution; the
 * resolution clock pauses while the case waits on the customer); breaches (the sweeper thread
 * marks them, records them in the ledger and counts them for /metrics); the queue (earliest
 * deadline first within an agent's teams and skills, a claim in one transaction); ETAs from
 * the history of similar cases; the SLA report; incidents (the customers an event affects, their
 * follow-up cases, and whether, when and on which channel each was told: the incidents and
 * incident_customers tables). docs/cases.md describes the model.
 *
 * Contract: every change of a case is one store write that also appends its ledger event
 * (case_events rows are bound to their entries by digest). Reads of a case are reads of its
 * customer's personal data: the caller (http) gates them by purpose; this module records each
 * read that returns more than reference fields. Priority comes from the issue (type, impact,
 * vulnerability flags the customer gave), never from customer value (spend, tier) unless the
 * settings enable a value policy, which must carry its public disclosure; in blind mode the
 * agent role never sees customer value, in any answer or export.
 *
 * Must never: know about HTTP; put personal data in the ledger or in error details; read
 * another module's tables (interactions are core's: their ids arrive through core's hooks).
 *
 * Threads: every function may be called from any thread once cd_cases_open returned; the
 * settings and policies are immutable after open. The sweeper thread (cd_cases_sweeper_start)
 * writes through the store like any caller. The core hooks run where core calls them (the
 * recorded hook on the store's writer thread). */
#ifndef CD_CASES_H
#define CD_CASES_H

#include "base/base.h"
#include "core/core.h"
#include "store/store.h"

struct cd_cases;
struct cd_calendars;

/* Opens the module over store and core (borrowed; they must outlive it): loads
 * RULES/cases/settings.yaml (built-in defaults when the file is missing) and every
 * RULES/sla/NAME.yaml policy, checking each policy's calendar exists in cals (borrowed).
 * Errors: CD_ERR_INVALID ("FILE:LINE: what"), CD_ERR_IO, CD_ERR_NOMEM. The caller owns *out
 * (cd_cases_close). */
enum cd_err cd_cases_open(struct cd_store *store, struct cd_core *core,
                          const struct cd_calendars *cals, const char *rules_dir,
                          struct cd_cases **out);
/* The same from YAML documents in memory (tests): settings (may be NULL: defaults) and n
 * policy documents with their names. Borrowed. */
enum cd_err cd_cases_open_buffers(struct cd_store *store, struct cd_core *core,
                                  const struct cd_calendars *cals, const char *settings,
                                  const char *const *policy_names, const char *const *policies,
                                  size_t n, struct cd_cases **out);
/* Stops the sweeper (if started) and frees cs. NULL is fine. */
void cd_cases_close(struct cd_cases *cs);

/* Starts the sweeper thread: every interval_ms it marks the breaches of clocks whose deadline
 * passed (a ledger event each), closes resolved cases whose reopen window ended, tells the
 * customers whose incident notice quiet hours deferred once they end, and refreshes the
 * figures /metrics shows. Errors: CD_ERR_INVALID (started twice), CD_ERR_INTERNAL. */
enum cd_err cd_cases_sweeper_start(struct cd_cases *cs, unsigned interval_ms);
/* One sweep now, on the calling thread (tests, `candor cases sweep`). *marked (may be NULL)
 * gets the breaches marked, the cases closed and the deferred notices told.
 * Errors: CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_cases_sweep(struct cd_cases *cs, int64_t now_ms, size_t *marked);

/* ---- who asks ---- */

/* How an answer is shaped for its reader, decided by the caller from the request. */
struct cd_cases_view {
    unsigned fields; /* CD_FIELDS_* the purpose may see (reference at least) */
    bool value;      /* customer value may be shown (false for the agent role in blind mode) */
};
/* Whether role may see customer value: always, unless blind mode is on and the role is agent.
 * role is "admin", "supervisor", "agent", "compliance" or "integration". */
bool cd_cases_value_visible(const struct cd_cases *cs, const char *role);

/* ---- cases ---- */

/* Opens a case. Body: {"customer_id", "type"? (question | complaint | request |
 * incident_follow_up; default from the settings), "impact"? (low | normal | high |
 * critical), "channel"? (the channel it came in on; default email), "team"?, "skill"?,
 * "tags"? [slug..], "vulnerability"? [flag..], "customer_value"? {"tier"?, "spend_minor"?,
 * "currency"?}, "interactions"? [interaction id..]}. Team and skill default from the routing
 * rules; the SLA policy and its targets are chosen and recorded; clocks start now.
 * *out: the case (as cd_cases_get answers it). Errors: CD_ERR_INVALID (the detail names the
 * member), CD_ERR_NOT_FOUND (customer or an interaction of that customer), CD_ERR_CONFLICT
 * (an interaction already belongs to another open case), CD_ERR_IDEMPOTENCY, CD_ERR_STORE,
 * CD_ERR_NOMEM. Nothing is stored on error. */
enum cd_err cd_cases_create(struct cd_cases *cs, const struct cd_actor *a, const json_t *body,
                            const struct cd_idem *idem, const struct cd_cases_view *v,
                            json_t **out, bool *replayed);

/* One case, with its clocks, SLA, priority explanation and interactions. A read beyond
 * reference fields is recorded in the ledger ("case.read"). Errors: CD_ERR_NOT_FOUND,
 * CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_cases_get(struct cd_cases *cs, const struct cd_actor *a, struct cd_str id,
                         const struct cd_cases_view *v, json_t **out);

/* The customer a case belongs to (a reference, for gating a read before it happens).
 * Errors: CD_ERR_NOT_FOUND, CD_ERR_STORE. */
enum cd_err cd_cases_customer(struct cd_cases *cs, struct cd_str id,
                              char customer_id[CD_ID_MAX]);

/* Filters of a case list. Empty views and zero times mean "any". */
struct cd_cases_query {
    struct cd_str customer_id, status, type, team, assignee, tag, incident_id;
    /* "due_soon" (a running clock ends within the policy's due_soon window), "breached" (a
     * clock breached and the case is not resolved), or empty. */
    struct cd_str sla;
    int64_t created_from, created_to; /* [from, to) */
    struct cd_str cursor;
    int limit; /* 1..200 */
};
/* A page of cases, newest first ({"items":[..],"next_cursor"}); due_soon and breached lists
 * are ordered by deadline instead. Each case of a customer read beyond reference fields is
 * recorded. Errors: CD_ERR_INVALID (a filter or the cursor), CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_cases_list(struct cd_cases *cs, const struct cd_actor *a,
                          const struct cd_cases_query *q, const struct cd_cases_view *v,
                          json_t **out);

/* Changes a case. Patch: {"status"?, "type"?, "impact"?, "team"?, "skill"?, "assignee"?
 * (agent id or null), "tags"?, "vulnerability"?, "customer_value"? (null removes),
 * "remedy"? {"type": refund | credit | apology | fix | none, "amount_minor"?, "currency"?},
 * "outcome"? (upheld | partially_upheld | not_upheld | answered | fulfilled | withdrawn |
 * no_response), "reason"? (a note on why, kept in the case history), "version"? (the case's
 * version as last read: a different one is a conflict)}. Only legal status transitions are
 * accepted; resolving needs a remedy and an outcome (given now or before). Clocks follow the
 * status (pausing, resuming, stopping), a type or priority change re-selects the SLA targets.
 * Errors: CD_ERR_INVALID (member, illegal transition), CD_ERR_NOT_FOUND (case, agent),
 * CD_ERR_CONFLICT (version), CD_ERR_STORE, CD_ERR_NOMEM. Nothing changes on error. */
enum cd_err cd_cases_update(struct cd_cases *cs, const struct cd_actor *a, struct cd_str id,
                            const json_t *patch, const struct cd_cases_view *v, json_t **out);

/* Links interactions {"interactions": [id..]} of the case's customer to the case: an outbound
 * one answers (stops the response clocks), an inbound one starts the next-response clock.
 * Errors: CD_ERR_INVALID, CD_ERR_NOT_FOUND (case; an interaction not of this customer),
 * CD_ERR_CONFLICT (case closed), CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_cases_link(struct cd_cases *cs, const struct cd_actor *a, struct cd_str id,
                          const json_t *body, const struct cd_cases_view *v, json_t **out);

/* The case's history, oldest first: {"items":[{"seq","at","action","actor","data",
 * "audit_seq"}]} (reference data only: changes of status, owner, clocks; no text).
 * Errors: CD_ERR_NOT_FOUND, CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_cases_events(struct cd_cases *cs, struct cd_str id, json_t **out);

/* ---- agents and the queue ---- */

/* Creates or replaces the agent `id` ("agt_" id; empty: a new one): {"name", "token_id"?
 * (the API token the agent works with), "teams": [..], "skills"?: [..], "active"?}.
 * *created tells whether it is new. Errors: CD_ERR_INVALID, CD_ERR_CONFLICT (token already
 * another agent's), CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_cases_agent_put(struct cd_cases *cs, const struct cd_actor *a, struct cd_str id,
                               const json_t *body, json_t **out, bool *created);
enum cd_err cd_cases_agent_get(struct cd_cases *cs, struct cd_str id, json_t **out);
enum cd_err cd_cases_agent_list(struct cd_cases *cs, json_t **out);

/* The next case for an agent (agent_id, or empty for the agent whose token_id is the
 * actor's): the case with the earliest running deadline among cases waiting for an agent in
 * the agent's teams whose skill (if any) the agent has; ties by priority, then age. With
 * claim, the case is assigned to the agent in the same transaction that chose it, so two
 * agents never get the same case. *out: {"case": ... or null, "why": {...}, "queue":
 * {"waiting"}}; "why" explains the order (the deadline and which clock sets it, the priority
 * and its factors, what was skipped and why). Errors: CD_ERR_NOT_FOUND (no such agent, or
 * the token is no agent's), CD_ERR_CONFLICT (the agent is inactive), CD_ERR_STORE,
 * CD_ERR_NOMEM. */
enum cd_err cd_cases_queue_next(struct cd_cases *cs, const struct cd_actor *a,
                                struct cd_str agent_id, bool claim,
                                const struct cd_cases_view *v, json_t **out);

/* ---- ETAs ---- */

/* When the case is likely to be resolved, from the history of similar resolved cases (same
 * type; then channel, priority and the queue length now, each dropped in turn while the
 * sample is smaller than the settings' minimum): {"estimate": {"p50_at", "p80_at", "p90_at",
 * "range": "...", ...} or null, "sample_size", "similar_on": [..], "statement"}. An open case
 * is estimated from similar cases still open at its age. When no sample is large enough the
 * answer says so and gives no times. Errors: CD_ERR_NOT_FOUND, CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_cases_eta(struct cd_cases *cs, struct cd_str id, int64_t now_ms, json_t **out);

/* ---- policies, reports, metrics ---- */

/* The loaded SLA policies and the settings that shape treatment (priority factors, routing,
 * blind mode, the value policy and its disclosure): {"policies": [..], "priority": {..},
 * "queue": {..}}. Errors: CD_ERR_NOMEM. */
enum cd_err cd_cases_policies_json(const struct cd_cases *cs, json_t **out);

/* What an SLA report covers. */
struct cd_cases_report_query {
    int64_t from_ms, to_ms; /* cases opened in [from, to) */
    const char *period;     /* "day", "week", "month" or "all" */
    const char *time_zone;  /* zone the periods are cut in (NULL: UTC) */
    const char *group;      /* "team", "type", "channel", "priority" or NULL (none) */
};
/* Aggregates the cases opened in the window by period and group: counts (opened, resolved,
 * open), per clock the cases measured, met, breached and the percentage met, and the 50th and
 * 90th percentiles of first-response and resolution times (working time by each case's
 * calendar is not used: times are elapsed, as the customer lived them). *out:
 * {"from","to","period","group","rows":[..]}. Errors: CD_ERR_INVALID, CD_ERR_STORE,
 * CD_ERR_NOMEM. */
enum cd_err cd_cases_sla_report(struct cd_cases *cs, const struct cd_cases_report_query *q,
                                json_t **out);

/* Appends the module's Prometheus text (counts of open cases by status, breaches by clock,
 * due-soon and breached cases, first-response and resolution time summaries) as last
 * computed by the sweeper. Never touches the store. Errors: CD_ERR_NOMEM, CD_ERR_TOO_BIG. */
enum cd_err cd_cases_metrics(struct cd_cases *cs, struct cd_buf *out);

/* ---- core's hooks ---- */

/* Whether inbound text should be read for the words of a complaint (the settings say). */
bool cd_cases_recognises_complaints(const struct cd_cases *cs);
/* What struct cd_core_hooks.annotate does for cases, given the complaint rule ids the
 * caller's guard found in the text (NULL: none): the note the recorded hook needs
 * ({"complaint": [rule..], "case_id"}: metadata.case_id names the case an interaction belongs
 * to, checked in the write). */
enum cd_err cd_cases_annotate(struct cd_cases *cs, const struct cd_core_content *in,
                              const json_t *complaint_rules, json_t **note);
/* What struct cd_core_hooks.recorded does for cases: an inbound interaction joins the
 * case of its thread (or the case metadata.case_id names, or the customer's newest active case
 * when it has no thread), reopens a resolved case within the reopen window, or opens a new
 * case (a complaint when its words say so); an outbound one for the service purpose answers
 * the case it belongs to. */
enum cd_err cd_cases_recorded(struct cd_cases *cs, struct cd_tx *tx,
                              const struct cd_core_recorded *r);
/* What struct cd_core_hooks.customer_merged does for cases: the merged customer's
 * cases become the survivor's, their sealed values re-sealed for the survivor. */
enum cd_err cd_cases_customer_merged(struct cd_cases *cs, struct cd_tx *tx, const char *merged,
                                     const char *survivor, const struct cd_core_vault *from,
                                     const struct cd_core_vault *to);

/* ---- incidents ---- */

struct cd_consent;

/* The consent engine that decides incident notices that are not legal notices (borrowed; it
 * must outlive cs). Without one, such notices are withheld ("no_consent_engine"). */
void cd_cases_set_consent(struct cd_cases *cs, struct cd_consent *consent);

/* Opens an incident. Body: {"kind" (outage | billing_error | data_breach | security | other),
 * "title" (1..200 bytes), "description"? (at most 4000), "severity"? (low | normal | high |
 * critical: the impact of the cases it opens; default normal), "channel"? (the channel its
 * cases are recorded under; default email), "team"?, "tags"? [slug..], "legal_notice"?
 * {"required": bool, "basis"?: the law that requires telling the customers, needed when
 * required}, "started_at"? (RFC 3339; default now)}. No personal data: an incident is about
 * an event, its customers are linked apart. *out: the incident (as cd_cases_incident_get).
 * Errors: CD_ERR_INVALID (the member), CD_ERR_IDEMPOTENCY, CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_cases_incident_create(struct cd_cases *cs, const struct cd_actor *a,
                                     const json_t *body, const struct cd_idem *idem, json_t **out,
                                     bool *replayed);
/* An incident with its counts ({"customers": {"affected", "cases", "told", "deferred",
 * "withheld", "not_yet_told"}}). Errors: CD_ERR_NOT_FOUND, CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_cases_incident_get(struct cd_cases *cs, struct cd_str id, json_t **out);
/* Incidents newest first, of one status when status is not empty ({"items","next_cursor"}).
 * Errors: CD_ERR_INVALID (status, cursor, limit 1..200), CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_cases_incident_list(struct cd_cases *cs, struct cd_str status, struct cd_str cursor,
                                   int limit, json_t **out);
/* Changes an incident: {"status"? (open | monitoring | resolved; resolved is final), and the
 * members of a create except kind and started_at, "version"? (as last read: a different one is
 * a conflict)}. A status change is written into the history of each active case opened for
 * it. Errors: CD_ERR_INVALID, CD_ERR_NOT_FOUND, CD_ERR_CONFLICT (version), CD_ERR_STORE,
 * CD_ERR_NOMEM. Nothing changes on error. */
enum cd_err cd_cases_incident_update(struct cd_cases *cs, const struct cd_actor *a,
                                     struct cd_str id, const json_t *patch, json_t **out);
/* Links the customers an incident affects, named by {"customer_ids": [id..1000]} or by
 * {"query": {"case_type"?, "channel"?, "team"?, "tag"?, "opened_from"?, "opened_to"?,
 * "active_only"?}} (the customers with a case matching every condition). Ids are resolved
 * through merges; each newly affected customer gets an incident follow-up case (or keeps the
 * active one already opened for this incident) and a notice not yet told. Customers added
 * before are counted, not added twice; erased ones are skipped; ids of a list that name no
 * customer are returned in "unknown". Written in batches of 250 customers, each batch whole.
 * *out: {"incident_id","by","matched","added","already_affected","cases_opened","cases_kept",
 * "erased","unknown"}. Errors: CD_ERR_INVALID, CD_ERR_NOT_FOUND (incident), CD_ERR_CONFLICT
 * (the incident is resolved), CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_cases_incident_affect(struct cd_cases *cs, const struct cd_actor *a,
                                     struct cd_str id, const json_t *body, json_t **out);
/* The affected customers, by customer id, with their case and what became of their notice
 * ({"items":[{"customer_id","case_id","added_by","added_at","notice","channel","at","reason",
 * "basis","attempts"}],"next_cursor"}); notice (may be empty) keeps one state (pending, told,
 * deferred, withheld). Reference data only. Errors: CD_ERR_INVALID, CD_ERR_NOT_FOUND,
 * CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_cases_incident_customers(struct cd_cases *cs, struct cd_str id,
                                        struct cd_str notice, struct cd_str cursor, int limit,
                                        json_t **out);
/* Tells the affected customers not yet told: {"channel", "legal_notice"? (bool; only for an
 * incident whose notice the law requires)}. A legal notice is told to each whatever their
 * preferences; any other is decided for the service purpose on the channel by the consent
 * engine now: allowed is told, quiet hours defer it (the sweeper tells them when the quiet
 * hours end), anything else withholds it with the reason. Each notice told is recorded on the
 * customer (channel, time, basis), in the case's history and the ledger, and queued as an
 * incident.notice event on the outbox for the sending system, in one transaction per batch.
 * *out: {"incident_id","channel","legal_notice","told","deferred","withheld",
 * "withheld_reasons":{reason: n}}. Errors: CD_ERR_INVALID (a member; a legal notice for an
 * incident that needs none), CD_ERR_NOT_FOUND, CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_cases_incident_notify(struct cd_cases *cs, const struct cd_actor *a,
                                     struct cd_str id, const json_t *body, json_t **out);

/* ---- demo ---- */

/* Deterministic demo history: about n cases over the last `days` days for the customers of
 * ids[0..nids), resolved as a support team would (a few breaches, remedies, reopenings),
 * plus agents. Idempotent: does nothing when cases exist. Errors: CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_cases_load_demo(struct cd_cases *cs, const char (*ids)[CD_ID_MAX], size_t nids,
                               int n, int days);

#endif
