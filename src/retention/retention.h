/* retention — how long data is kept, and the legal holds that keep it longer.
 *
 * Owns: the legal_holds table. A legal hold keeps a customer's data from erasure and from
 * expiry by the retention rules while it is in force (not released, not past its optional
 * expiry); every hold placed or released is a ledger event, and reading a customer's holds is
 * a read about that customer (purpose-gated and recorded by the caller's gate).
 *
 * Holds are about a customer: a hold placed on a customer later merged into another keeps
 * the survivor's data too (cd_retention_holds_active follows merges).
 *
 * Must never: know about HTTP; put personal data in the ledger. A hold's reason and legal
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

#endif
