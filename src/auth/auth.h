/* auth — API tokens: creation, listing, revocation and verification of bearer tokens.
 *
 * Owns: the tokens table. A token is "cnd_" + 43 base64url characters (256 random bits); only
 * its SHA-256 is stored, so a stolen database cannot be replayed as credentials. The clear
 * token is returned once, at creation.
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
};

/* Creates a token for role with a display name (1..100 chars, no control characters).
 * token_out receives the clear token (CD_TOKEN_LEN + 1 bytes), id_out its id. actor_token and
 * request_id (may be NULL) go to the audit ledger. Errors: CD_ERR_INVALID, CD_ERR_STORE. */
enum cd_err cd_auth_token_create(struct cd_store *s, enum cd_role role, struct cd_str name,
                                 const char *actor_token, const char *request_id,
                                 char token_out[CD_TOKEN_LEN + 1], char id_out[CD_ID_MAX]);

/* Lists tokens (never the secret): [{"id","role","name","created_at","revoked_at"}]. */
enum cd_err cd_auth_token_list(struct cd_store *s, json_t **out);

/* Revokes a token. Errors: CD_ERR_NOT_FOUND, CD_ERR_CONFLICT (already revoked). */
enum cd_err cd_auth_token_revoke(struct cd_store *s, struct cd_str id, const char *actor_token,
                                 const char *request_id);

/* Checks a presented token. Errors: CD_ERR_UNAUTHENTICATED (unknown, revoked, malformed). */
enum cd_err cd_auth_verify(struct cd_store *s, struct cd_str token, struct cd_principal *out);

/* A cache of verified tokens in front of cd_auth_verify, so a busy server does not read the
 * tokens table on every request. Entries live ttl_ms; a revocation through this process
 * (cd_auth_cache_forget) takes effect at once, one made by another process (the CLI) within
 * ttl_ms. Only SHA-256 hashes of tokens are kept. Thread-safe. */
struct cd_auth_cache;
enum cd_err cd_auth_cache_new(int64_t ttl_ms, struct cd_auth_cache **out);
void cd_auth_cache_free(struct cd_auth_cache *c);
/* As cd_auth_verify, answering from the cache when it can. */
enum cd_err cd_auth_verify_cached(struct cd_auth_cache *c, struct cd_store *s, struct cd_str token,
                                  struct cd_principal *out);
/* Drops every cached entry (after a revocation). */
void cd_auth_cache_forget(struct cd_auth_cache *c);

#endif
