/* Inside the auth module only. */
#ifndef CD_AUTH_INT_H
#define CD_AUTH_INT_H

#include "auth.h"

/* The revocation counter: bumped by every revocation, in its transaction (tokens.c).
 * Errors: CD_ERR_STORE, CD_ERR_NOT_FOUND (a database without the counter). */
enum cd_err cd__auth_revocations(struct cd_store *s, int64_t *out);

#endif
