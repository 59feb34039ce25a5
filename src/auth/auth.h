/* auth — API tokens: creation, listing, revocation and verification of bearer tokens.
 *
 * Owns: the tokens table and the revocation counter (auth_epoch). A token is "cnd_" + 43
 * base64url characters (256 random bits); only its SHA-256 is stored, so a stolen database
 * cannot be replayed as credentials. The clear token is returned once, at creation. A token
 * may carry an expiry; after it the token is refused like a revoked one. Every revocation
 * bumps the revocation counter in the same transaction, which is how a server's token cache
 * learns of a revocation made by another process.
 *
 * Must never: log or return a token after creation; compare secrets in variable time.
 * Threads: any thread. */
#ifndef CD_AUTH_H
#define CD_AUTH_H

#include "base/base.h"
#include "policy/policy.h"
#include "store/store.h"

#define CD_TOKEN_LEN 47 /* "cnd_" + 43 */

struct cd_principal {
    char token_id[CD_ID_MAX];
    enum cd_role role;
    char name[128];
    int64_t expires_at; /* ms since the epoch, 0: never */
};

/* The longest lifetime a token may be given: ten years. */
#define CD_AUTH_MAX_LIFETIME_MS (3660LL * 86400 * 1000)

/* Parses a token lifetime as the CLI takes it: a count with a unit ("90d", "12h", "30m",
 * "3600s"; d, h, m, s) or an RFC 3339 time. *expires_at gets the moment it ends, which must
 * be after now and at most CD_AUTH_MAX_LIFETIME_MS after it. Errors: CD_ERR_INVALID. */
enum cd_err cd_auth_expiry_parse(struct cd_str s, int64_t now, int64_t *expires_at);
/* Checks an expiry given by other means (the API's expires_in or expires_at) against the same
 * bounds. Errors: CD_ERR_INVALID. */
enum cd_err cd_auth_expiry_check(int64_t expires_at, int64_t now);

/* Creates a token for role with a display name (1..100 chars, no control characters), valid
 * until expires_at (ms since the epoch; 0: until revoked; see cd_auth_expiry_check).
 * token_out receives the clear token (CD_TOKEN_LEN + 1 bytes), id_out its id. actor_token and
 * request_id (may be NULL) go to the audit ledger. Errors: CD_ERR_INVALID, CD_ERR_STORE. */
enum cd_err cd_auth_token_create(struct cd_store *s, enum cd_role role, struct cd_str name,
                                 int64_t expires_at, const char *actor_token,
                                 const char *request_id, char token_out[CD_TOKEN_LEN + 1],
                                 char id_out[CD_ID_MAX]);

/* Lists tokens (never the secret): [{"id","role","name","created_at","expires_at",
 * "revoked_at","status"}], status one of active, expired, revoked. */
enum cd_err cd_auth_token_list(struct cd_store *s, json_t **out);

/* Revokes a token and bumps the revocation counter. Errors: CD_ERR_NOT_FOUND,
 * CD_ERR_CONFLICT (already revoked). */
enum cd_err cd_auth_token_revoke(struct cd_store *s, struct cd_str id, const char *actor_token,
                                 const char *request_id);

/* Checks a presented token. Errors: CD_ERR_UNAUTHENTICATED (unknown, revoked, expired,
 * malformed; the detail says which). */
enum cd_err cd_auth_verify(struct cd_store *s, struct cd_str token, struct cd_principal *out);

/* A cache of verified tokens in front of cd_auth_verify, so a busy server does not read the
 * tokens table on every request. An entry lives ttl_ms, never past its token's expiry.
 * Revocations: one made through this cache's process calls cd_auth_cache_forget and takes
 * effect at once; one made by another process (the CLI, another node on the same database)
 * bumps the revocation counter, which the cache reads again whenever its last reading is
 * older than CD_AUTH_EPOCH_CHECK_MS (one small read by one request, the others go on), so it
 * takes effect within that bound. Only SHA-256 hashes of tokens are kept. Thread-safe. */
#define CD_AUTH_EPOCH_CHECK_MS 100
/* Announced on the store's feed by every revocation (several servers on one database): each
 * server's cache is then emptied at once, without waiting for the counter's next reading. */
#define CD_AUTH_TOPIC_REVOKED "auth.revoked"
struct cd_auth_cache;
enum cd_err cd_auth_cache_new(int64_t ttl_ms, struct cd_auth_cache **out);
void cd_auth_cache_free(struct cd_auth_cache *c);
/* As cd_auth_verify, answering from the cache when it can. */
enum cd_err cd_auth_verify_cached(struct cd_auth_cache *c, struct cd_store *s, struct cd_str token,
                                  struct cd_principal *out);
/* Drops every cached entry (after a revocation). */
void cd_auth_cache_forget(struct cd_auth_cache *c);

#endif
