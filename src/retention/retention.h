/* retention — how long data is kept, and the legal holds that keep it longer.
 *
 * Owns: the retention rules (RULES/retention/rules.yaml: per data set and, for interactions, per
 * purpose, how long data is kept and from when), the retention job and its schedule inside
 * `candor serve`, the retention_runs table (each run's counts, bound to its ledger entry),
 * and the legal_holds table. A legal hold keeps a customer's data from erasure and from
 * expiry by the retention rules while it is in force (not released, not past its optional
 * expiry); every hold placed or released is a ledger event, and reading a customer's holds is
 * a read about that customer (purpose-gated and recorded by the caller's gate).
 *
 * Holds are about a customer: a hold placed on a customer later merged into another keeps
 * the survivor's data too (cd_retention_holds_active follows merges).
 *
 * Deletion is what the owner of the data says it is: a whole customer is crypto-shredded
 * (cd_core_customer_shred), an interaction's row goes with what was derived from it, the
 * outbox deletes finished deliveries and events. A held customer's data is never touched.
 *
 * Must never: know about HTTP; put personal data in the ledger or a run's report (ids and
 * counts only). A hold's reason and legal
 * basis name a matter (a case number, a regulation), not a person: the API says so.
 *
 * Threads: every function may be called from any thread. */
#ifndef CD_RETENTION_H
#define CD_RETENTION_H

#include "base/base.h"
#include "core/core.h"
#include "store/store.h"

/* The legal bases a hold may rest on (GDPR Art. 17(3)): "legal_claims" (establishment,
 * exercise or defence of legal claims), "legal_obligation" (a law requires keeping the data),
 * "regulatory_investigation" (a regulator's or court's order), "public_interest" (archiving
 * or research in the public interest). */
bool cd_retention_hold_basis_valid(struct cd_str basis);

/* The legal holds in force on customer_id (a JSON array of {id, customer_id, reason,
 * legal_basis, created_at, created_by, expires_at}, or NULL when there is none), read inside
 * tx: holds placed on the customer and on every customer merged into it. The caller owns
 * *holds. Errors: CD_ERR_NOMEM, CD_ERR_STORE. */
enum cd_err cd_retention_holds_active(struct cd_tx *tx, struct cd_str customer_id,
                                      json_t **holds);

/* Places a hold on a customer. Body: {"reason" (1..500 characters), "legal_basis" (see
 * cd_retention_hold_basis_valid), "expires_at"? (RFC 3339, in the future)}. Recorded in the
 * ledger ("hold.create") in the same transaction. *out: the hold.
 * Errors: CD_ERR_INVALID (the detail names the member), CD_ERR_NOT_FOUND (no such customer),
 * CD_ERR_CONFLICT (the customer was merged: place it on the survivor), CD_ERR_STORE,
 * CD_ERR_NOMEM. */
enum cd_err cd_retention_hold_create(struct cd_store *s, const struct cd_actor *a,
                                     struct cd_str customer_id, const json_t *body,
                                     json_t **out);

/* Releases a hold of customer_id. Body: {"reason" (1..500 characters)}. Recorded in the ledger
 * ("hold.release"). *out: the hold as it now is.
 * Errors: CD_ERR_INVALID, CD_ERR_NOT_FOUND (no such hold on this customer), CD_ERR_CONFLICT
 * (already released), CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_retention_hold_release(struct cd_store *s, const struct cd_actor *a,
                                      struct cd_str customer_id, struct cd_str hold_id,
                                      const json_t *body, json_t **out);

/* The customer's holds, newest first: {"customer_id","items":[{"id","customer_id","reason",
 * "legal_basis","status" (active, expired, released),"created_at","created_by","expires_at",
 * "released_at","released_by","release_reason"}]}. status: "active", "released", "expired"
 * or "" / "all". The caller has checked and recorded the read.
 * Errors: CD_ERR_INVALID (status), CD_ERR_NOT_FOUND (no such customer), CD_ERR_STORE,
 * CD_ERR_NOMEM. */
enum cd_err cd_retention_holds_list(struct cd_store *s, struct cd_str customer_id,
                                    struct cd_str status, json_t **out);

/* ---- retention rules and runs ---- */

struct cd_retention_rules;

/* The file of retention rules (RULES/retention/rules.yaml; docs/retention.md has the format and
 * the defaults), checked whole: known data sets, purposes and periods, a limit for every set
 * of personal data and "forever" for the ledger and the consent records, one rule per data
 * set and purpose, and a rule for every data set that must have one.
 * Errors: CD_ERR_INVALID ("FILE:LINE: what"), CD_ERR_IO, CD_ERR_TOO_BIG, CD_ERR_NOMEM. The
 * caller frees *out with cd_retention_rules_free. */
enum cd_err cd_retention_rules_load(const char *path, struct cd_retention_rules **out);
/* The same from text, named name in messages. */
enum cd_err cd_retention_rules_parse(const char *name, const char *data, size_t len,
                                     struct cd_retention_rules **out);
void cd_retention_rules_free(struct cd_retention_rules *r);
/* {"rules":[{"data","purpose","keep","after","why"}]}. Errors: CD_ERR_NOMEM. */
enum cd_err cd_retention_rules_json(const struct cd_retention_rules *r, json_t **out);

/* Applies the rules now: interactions of each purpose (the purpose's own rule, else the rule
 * without one) and whole customers past their time go, then Idempotency-Key records,
 * finished webhook deliveries and old outbox events. Customers under a legal hold are
 * skipped and counted. With dry_run nothing changes and each rule lists what would go (at
 * most max_ids ids per rule, "ids_truncated" tells). Either way the counts are recorded
 * (retention_runs, and the ledger: "retention.run", outcome "error" if a step failed after
 * others had deleted). *report: {"id","dry_run","started_at","finished_at",
 * "held_customers_skipped","rules":[{"data","purpose","keep","after","why","cutoff","count",
 * "held_customers","ids"?,"ids_truncated"?}]}. Errors: CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_retention_run(struct cd_core *core, const struct cd_retention_rules *rules,
                             const struct cd_actor *a, bool dry_run, size_t max_ids,
                             json_t **report);

/* The last 100 runs, newest first: {"items":[{"id","started_at","finished_at","dry_run",
 * "started_by","counts"}]}. Errors: CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_retention_runs(struct cd_store *s, json_t **out);

/* Runs the rules every interval_s seconds, the first time first_s seconds from now, on a
 * thread, as actor "system" (core and rules are borrowed and outlive the schedule).
 * Errors: CD_ERR_INVALID (interval 0), CD_ERR_INTERNAL, CD_ERR_NOMEM. */
struct cd_retention_schedule;
enum cd_err cd_retention_schedule_start(struct cd_core *core,
                                        const struct cd_retention_rules *rules,
                                        unsigned interval_s, unsigned first_s,
                                        struct cd_retention_schedule **out);
/* Stops it (waiting for a run in progress to end). NULL is fine. */
void cd_retention_schedule_stop(struct cd_retention_schedule *s);

#endif
