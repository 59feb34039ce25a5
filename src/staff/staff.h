/* staff — people's own accounts for the web console: passwords, sign-in with lockout, and
 * sessions that expire and can be revoked.
 *
 * Owns: the staff and staff_sessions tables. A staff member has a username, a display name, a
 * role (the API's roles) and a password kept only as an Argon2id hash. After
 * CD_STAFF_MAX_FAILURES wrong passwords in a row the account refuses every sign-in, right or
 * wrong, for CD_STAFF_LOCKOUT_MS. A session is a random 256-bit secret held by the browser in
 * an HttpOnly cookie; only its SHA-256 is stored. It ends after CD_STAFF_SESSION_IDLE_MS
 * without use, CD_STAFF_SESSION_MAX_MS after sign-in, at sign-out, when an administrator
 * revokes it or when the account is disabled. Each session carries the purpose its holder
 * declared they work under; switching it is a deliberate, recorded act. The anti-forgery
 * (CSRF) token of a session is derived from its secret, so it needs no storage and cannot be
 * known without the cookie. A person changes their own password by giving the current one;
 * every session of theirs but the one they use for it ends. An administrator may set a temporary
 * password for someone else: that person's sessions end, and until they choose a password of their
 * own, a session of theirs may do nothing else. Every sign-in, failed sign-in, purpose switch,
 * sign-out, password change and account change is written to the audit ledger.
 *
 * Must never: store or log a password or a session secret; tell an unknown username from a
 * wrong password (both take one Argon2id verification and give the same answer).
 * Threads: any thread; sign-in and account creation take about a tenth of a second of CPU. */
#ifndef CD_STAFF_H
#define CD_STAFF_H

#include "base/base.h"
#include "policy/policy.h"
#include "store/store.h"

#define CD_STAFF_SESSION_LEN 47 /* "css_" + 43 base64url characters */
#define CD_STAFF_CSRF_LEN 43    /* base64url of 32 bytes */
#define CD_STAFF_MAX_FAILURES 5
#define CD_STAFF_LOCKOUT_MS (15 * 60 * 1000LL)
#define CD_STAFF_SESSION_IDLE_MS (30 * 60 * 1000LL)
#define CD_STAFF_SESSION_MAX_MS (12 * 3600 * 1000LL)
#define CD_STAFF_PASSWORD_MIN 12 /* characters (UTF-8 bytes counted as written) */
#define CD_STAFF_PASSWORD_MAX 1024

/* A signed-in person as a request sees them. */
struct cd_staff_session {
    char id[CD_ID_MAX];       /* the session's id ("ses_...") */
    char staff_id[CD_ID_MAX]; /* "stf_..." */
    char username[65];
    char name[128];
    enum cd_role role;
    int64_t expires_at; /* the moment it ends if used again before the idle limit */
    bool has_purpose;
    enum cd_purpose purpose;
    bool must_change_password; /* an administrator set a temporary password */
};

/* Who made a change, for the ledger: a token or staff id ("cli" from the command line), its
 * role and name (may be NULL), and the request id (may be NULL). */
struct cd_staff_actor {
    const char *id, *role, *name, *request_id;
};

/* Creates an account. username: 1..64 characters of a-z 0-9 . _ - @ (upper case is folded to
 * lower), unique; name: 1..100 characters of text, no control characters; password:
 * CD_STAFF_PASSWORD_MIN..CD_STAFF_PASSWORD_MAX bytes of UTF-8. *out (caller frees) gets the
 * account as cd_staff_list shows it. Errors: CD_ERR_INVALID, CD_ERR_CONFLICT (the username is
 * taken), CD_ERR_NOMEM, CD_ERR_STORE. */
enum cd_err cd_staff_add(struct cd_store *s, struct cd_str username, struct cd_str name,
                         enum cd_role role, struct cd_str password,
                         const struct cd_staff_actor *actor, json_t **out);

/* The accounts, oldest first: [{"id","username","name","role","status","created_at",
 * "last_sign_in_at","locked_until","sessions","must_change_password"}] with status active, locked
 * or disabled and sessions the number of live sessions. Never a password hash. The caller owns
 * *out. */
enum cd_err cd_staff_list(struct cd_store *s, json_t **out);

/* Disables an account by id ("stf_...") or username and ends all its sessions; *out (may be
 * NULL; caller frees) gets the account. Errors: CD_ERR_NOT_FOUND, CD_ERR_CONFLICT (already
 * disabled), CD_ERR_STORE. */
enum cd_err cd_staff_disable(struct cd_store *s, struct cd_str who,
                             const struct cd_staff_actor *actor, json_t **out);

/* Ends every live session of an account (by id or username); *ended gets how many.
 * Errors: CD_ERR_NOT_FOUND, CD_ERR_STORE. */
enum cd_err cd_staff_sessions_revoke(struct cd_store *s, struct cd_str who,
                                     const struct cd_staff_actor *actor, int64_t *ended);

/* Changes the signed-in person's own password: current must be their password (a wrong one
 * counts as a failed sign-in towards the lockout), new_password follows cd_staff_add's rule and
 * differs from current. Clears a temporary password's mark and ends every session of the
 * account but ses (*ended gets how many). request_id may be NULL.
 * Errors: CD_ERR_FORBIDDEN (the current password is wrong, or the account is locked),
 * CD_ERR_INVALID, CD_ERR_NOT_FOUND (the session ended), CD_ERR_NOMEM, CD_ERR_STORE. */
enum cd_err cd_staff_password_change(struct cd_store *s, const struct cd_staff_session *ses,
                                     struct cd_str current, struct cd_str new_password,
                                     const char *request_id, int64_t *ended);

/* An administrator sets a temporary password for another account (by id or username): its
 * sessions end, its lockout is lifted, and its owner must choose a new password before doing
 * anything else in the console. *out (may be NULL; caller frees) gets the account. Errors:
 * CD_ERR_INVALID (the password breaks cd_staff_add's rule, or the account is the actor's own:
 * change it with cd_staff_password_change), CD_ERR_NOT_FOUND, CD_ERR_CONFLICT (the account is
 * disabled), CD_ERR_NOMEM, CD_ERR_STORE. */
enum cd_err cd_staff_password_reset(struct cd_store *s, struct cd_str who,
                                    struct cd_str new_password, const struct cd_staff_actor *actor,
                                    json_t **out);

/* Signs in: on the right password for an active, unlocked account, opens a session and puts
 * its secret in token_out (CD_STAFF_SESSION_LEN + 1 bytes; shown once, for the cookie) and the
 * session in *out. request_id may be NULL. Errors: CD_ERR_UNAUTHENTICATED (unknown username,
 * wrong password, disabled or locked account; the detail never says which of the first two),
 * CD_ERR_INVALID (empty or oversized input), CD_ERR_NOMEM, CD_ERR_STORE. */
enum cd_err cd_staff_sign_in(struct cd_store *s, struct cd_str username, struct cd_str password,
                             const char *request_id, struct cd_staff_session *out,
                             char token_out[CD_STAFF_SESSION_LEN + 1]);

/* Checks a session secret as the cookie carries it and fills *out. Keeps the session alive
 * (its last use is written at most once a minute). Errors: CD_ERR_UNAUTHENTICATED (malformed,
 * unknown, ended, expired, or the account disabled; the detail says which), CD_ERR_STORE. */
enum cd_err cd_staff_session_verify(struct cd_store *s, struct cd_str token,
                                    struct cd_staff_session *out);

/* The session's anti-forgery token, derived from its secret, into out (CD_STAFF_CSRF_LEN + 1
 * bytes). Errors: CD_ERR_CRYPTO. */
enum cd_err cd_staff_csrf_token(struct cd_str token, char out[CD_STAFF_CSRF_LEN + 1]);
/* True when presented is the anti-forgery token of the session secret token (constant time). */
bool cd_staff_csrf_check(struct cd_str token, struct cd_str presented);

/* Records that the session now works under purpose (already checked against the role's
 * policy by the caller), in the session and the ledger. Errors: CD_ERR_NOT_FOUND (the session
 * ended), CD_ERR_STORE. */
enum cd_err cd_staff_session_set_purpose(struct cd_store *s, const struct cd_staff_session *ses,
                                         enum cd_purpose purpose, const char *request_id);

/* Ends one session (sign-out). Errors: CD_ERR_NOT_FOUND (already ended), CD_ERR_STORE. */
enum cd_err cd_staff_session_end(struct cd_store *s, const struct cd_staff_session *ses,
                                 const char *request_id);

#endif
