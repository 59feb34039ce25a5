/* consent, for tests and benchmarks only: entry points that skip what the engine guarantees
 * (receipts, the audit ledger). Defined in testing.c, which the candor binary does not link. */
#ifndef CD_CONSENT_TESTING_H
#define CD_CONSENT_TESTING_H

#include "consent.h"

/* Applies a state directly to the projection, without the ledger, a receipt or an audit
 * event, as if an event for customer_id in jurisdiction had been recorded at at_ms.
 * Errors: CD_ERR_INVALID (not a customer id), CD_ERR_NOMEM. */
enum cd_err cd_consent_debug_apply(struct cd_consent *c, struct cd_str customer_id,
                                   struct cd_str jurisdiction, enum cd_purpose purpose,
                                   enum cd_consent_channel channel, enum cd_consent_state state,
                                   int64_t at_ms);

#endif
