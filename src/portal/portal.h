/* portal — the customer's self-service session: signing in with a one-time code sent to an
 * identity on file, and the session that then lets the customer see and act on their own data.
 *
 * Owns: the portal_challenges table (a pending sign-in: the code as a keyed hash under a random
 * key of its own, the attempts made, the expiry) and the portal_sessions table (the SHA-256 of
 * the cookie's secret, the customer, the last use). A code goes to the customer through the
 * outbox (customer.sign_in_code, its address and code sealed at rest and delivered only to a
 * subscription whose purpose may see contact data). Asking for a code answers the same whether
 * or not the identity belongs to anyone, so the API does not tell who is a customer: an
 * unknown identity gets a challenge no code can answer. A code works once, for
 * CD_PORTAL_CODE_TTL_MS, against at most CD_PORTAL_CODE_ATTEMPTS tries; a new one voids the
 * pending one; at most CD_PORTAL_CODES_PER_HOUR are sent for one customer in an hour. A session
 * ends after CD_PORTAL_SESSION_IDLE_MS without use, CD_PORTAL_SESSION_MAX_MS after sign-in, at
 * sign-out, or when staff revoke the customer's sessions. Its anti-forgery token is derived
 * from its secret. Sending a code, signing in (or failing to, once the code is void), signing
 * out and revoking are written to the audit ledger.
 *
 * A session reaches the customer's own data only: everything it reads names the customer of
 * the session, under the purpose the law gives the customer's own access (legal_obligation:
 * the answer a controller owes a data subject; it needs no consent and a restriction of
 * processing does not withhold it), and is recorded on their access log like any other read.
 *
 * Must never: store or log a code or a session secret; tell whether an identity is on file.
 * Threads: any thread. */
#ifndef CD_PORTAL_H
#define CD_PORTAL_H

#include "base/base.h"
#include "core/core.h"
#include "crypto/crypto.h"
#include "store/store.h"

#define CD_PORTAL_CODE_TTL_MS (10 * 60 * 1000LL)
#define CD_PORTAL_CODE_ATTEMPTS 5
#define CD_PORTAL_CODES_PER_HOUR 5
#define CD_PORTAL_SESSION_IDLE_MS (15 * 60 * 1000LL)
#define CD_PORTAL_SESSION_MAX_MS (2 * 3600 * 1000LL)
#define CD_PORTAL_SESSION_LEN CD_CRYPTO_SECRET_LEN /* "cps_" + 43 base64url characters */
#define CD_PORTAL_CSRF_LEN CD_CRYPTO_DERIVED_LEN

/* The purpose every read of a session is made under (see above). */
#define CD_PORTAL_PURPOSE "legal_obligation"

/* A signed-in customer as a request sees them. */
struct cd_portal_session {
    char id[CD_ID_MAX];          /* "pse_..." */
    char customer_id[CD_ID_MAX]; /* "cus_..." */
    int64_t expires_at;          /* the moment it ends if used again before the idle limit */
};

/* Asks for a sign-in code. Body: {"type": "email" | "phone", "value": the identity, as the
 * customer types it}. When a customer holds that identity (and fewer than
 * CD_PORTAL_CODES_PER_HOUR codes went to them in the last hour), a code goes to it through the
 * outbox and the pending one is void; otherwise nothing is sent. Either way *out gets
 * {"challenge_id","expires_at"} (the caller owns it) and the answer looks the same. request_id
 * may be NULL. Errors: CD_ERR_INVALID (a member missing or of the wrong type, a type other
 * than email or phone, a value that is not one of that type), CD_ERR_CRYPTO (no outbox open
 * on the store to seal the code), CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_portal_code_send(struct cd_store *s, struct cd_core *core, const json_t *body,
                                const char *request_id, json_t **out);

/* Signs in with a code. Body: {"challenge_id", "code": 8 digits}. The right code for a pending
 * challenge, within its time, opens a session: its secret goes to token_out
 * (CD_PORTAL_SESSION_LEN + 1 bytes; shown once, for the cookie) and the session to *out, and
 * the challenge is deleted. A wrong code counts an attempt; the last attempt, or a try after
 * expiry, voids the challenge. On CD_ERR_UNAUTHENTICATED *failure gets {"outcome": "mismatch"
 * | "attempts_exhausted" | "expired" | "none_pending", "attempts_left"} (the caller owns it): a
 * code used again after it opened a session finds none pending. Errors: CD_ERR_INVALID (no
 * challenge id, or a code that is not 8 digits: not counted), CD_ERR_UNAUTHENTICATED,
 * CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_portal_sign_in(struct cd_store *s, const json_t *body, const char *request_id,
                              struct cd_portal_session *out,
                              char token_out[CD_PORTAL_SESSION_LEN + 1], json_t **failure);

/* Checks a session secret as the cookie carries it and fills *out; keeps the session alive
 * (its last use is written at most once a minute). Errors: CD_ERR_UNAUTHENTICATED (malformed,
 * unknown, ended or expired; the detail says which), CD_ERR_STORE. */
enum cd_err cd_portal_session_verify(struct cd_store *s, struct cd_str token,
                                     struct cd_portal_session *out);

/* Ends one session (sign-out). Errors: CD_ERR_NOT_FOUND (already ended), CD_ERR_STORE. */
enum cd_err cd_portal_session_end(struct cd_store *s, const struct cd_portal_session *ses,
                                  const char *request_id);

/* Ends every live session of customer_id (staff revoking them, a) ; *ended gets how many.
 * Errors: CD_ERR_NOT_FOUND (a malformed customer id), CD_ERR_STORE. */
enum cd_err cd_portal_sessions_revoke(struct cd_store *s, const struct cd_actor *a,
                                      struct cd_str customer_id, int64_t *ended);

/* The session's anti-forgery token, derived from its secret, into out
 * (CD_PORTAL_CSRF_LEN + 1 bytes). Errors: CD_ERR_CRYPTO. */
enum cd_err cd_portal_csrf_token(struct cd_str token, char out[CD_PORTAL_CSRF_LEN + 1]);
/* True when presented is the anti-forgery token of the session secret token (constant time). */
bool cd_portal_csrf_check(struct cd_str token, struct cd_str presented);

/* The actor a session's reads and changes are made as: the session's id as the token, the role
 * "customer", CD_PORTAL_PURPOSE, reading a restricted customer's data (their own), no consent
 * needed. ses and request_id are borrowed: they must outlive *out. */
void cd_portal_actor(const struct cd_portal_session *ses, const char *request_id,
                     struct cd_actor *out);

#endif
