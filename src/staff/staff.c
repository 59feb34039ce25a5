/* Staff accounts, sign-in with lockout, and console sessions. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include "audit/audit.h"
#include "crypto/crypto.h"
#include "staff.h"

/* A session's last use is written at most this often: reads stay reads. */
#define TOUCH_MS (60 * 1000LL)

/* ---- names ---- */

/* Folds username to lower case into out (65 bytes). Errors: CD_ERR_INVALID. */
static enum cd_err username_norm(struct cd_str u, char out[65])
{
    if (u.len == 0 || u.len > 64)
        return cd_err_set(CD_ERR_INVALID, "a username has 1 to 64 characters");
    for (size_t i = 0; i < u.len; i++) {
        char c = u.p[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-' || c == '@'))
            return cd_err_set(CD_ERR_INVALID, "a username uses only letters a-z, digits and "
                                              ". _ - @");
        out[i] = c;
    }
    out[u.len] = '\0';
    return CD_OK;
}

/* "stf_..." as given, or the account with that username: the WHERE clause and its value. */
static enum cd_err who_norm(struct cd_str who, char out[65], const char **column)
{
    if (cd_id_valid(who, "stf")) {
        snprintf(out, 65, "%.*s", (int)who.len, who.p);
        *column = "id";
        return CD_OK;
    }
    *column = "username";
    if (username_norm(who, out) != CD_OK)
        return cd_err_set(CD_ERR_NOT_FOUND, "no staff account with this id or username");
    return CD_OK;
}

static enum cd_err text_check(struct cd_str s, const char *what, size_t max)
{
    if (s.len == 0 || s.len > max || !cd_utf8_valid(s.p, s.len))
        return cd_err_set(CD_ERR_INVALID, "%s has 1 to %zu characters of text", what, max);
    for (size_t i = 0; i < s.len; i++)
        if ((unsigned char)s.p[i] < 0x20 || s.p[i] == 0x7f)
            return cd_err_set(CD_ERR_INVALID, "%s may not contain control characters", what);
    return CD_OK;
}

static enum cd_err audit(struct cd_tx *tx, const char *action, const char *outcome,
                         const char *actor_id, const char *role, const char *name,
                         const char *request_id, const char *resource, const char *purpose,
                         const char *reason)
{
    struct cd_audit_event ev = {.action = action, .outcome = outcome,
                                .actor_token = actor_id ? actor_id : "cli",
                                .actor_role = role, .actor_name = name,
                                .request_id = request_id, .resource_id = resource,
                                .purpose = purpose, .reason = reason};
    return cd_audit_append(tx, &ev, NULL);
}

/* ---- listing ---- */

#define ACCOUNT_COLS                                                                            \
    "SELECT id, username, name, role, created_at, disabled_at, locked_until, last_sign_in_at," \
    " password_reset_at, (SELECT count(*) FROM staff_sessions s WHERE s.staff_id = staff.id AND"                   \
    " s.ended_at IS NULL AND s.last_seen > $1 AND s.created_at > $2) FROM staff"

struct list_ctx {
    json_t *arr;
    int64_t now;
    const char *column, *value; /* one account, or all when NULL */
};

static enum cd_err set_time(json_t *o, const char *key, const struct cd_val *v)
{
    char ts[CD_TIME_STRLEN];

    if (v->type != CD_VAL_INT)
        return cd_json_set_new(o, key, json_null());
    cd_time_format(v->i, ts);
    return cd_json_set_new(o, key, json_string(ts));
}

static enum cd_err account_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct list_ctx *l = ctx;
    json_t *o = json_object();
    const char *status = c[5].type == CD_VAL_INT                          ? "disabled"
                         : c[6].type == CD_VAL_INT && c[6].i > l->now ? "locked"
                                                                          : "active";

    if (o == NULL || json_array_append_new(l->arr, o) != 0)
        return (json_decref(o), CD_ERR_NOMEM);
    if (cd_json_set_strn(o, "id", c[0].p, c[0].len) != CD_OK ||
        cd_json_set_strn(o, "username", c[1].p, c[1].len) != CD_OK ||
        cd_json_set_strn(o, "name", c[2].p, c[2].len) != CD_OK ||
        cd_json_set_strn(o, "role", c[3].p, c[3].len) != CD_OK ||
        cd_json_set_new(o, "status", json_string(status)) != CD_OK ||
        set_time(o, "created_at", &c[4]) != CD_OK ||
        set_time(o, "last_sign_in_at", &c[7]) != CD_OK ||
        set_time(o, "locked_until", c[6].type == CD_VAL_INT && c[6].i > l->now ? &c[6]
                                                                                : &CD_VNULL) !=
            CD_OK ||
        cd_json_set_new(o, "sessions", json_integer(c[9].i)) != CD_OK ||
        cd_json_set_new(o, "must_change_password", json_boolean(c[8].type == CD_VAL_INT)) !=
            CD_OK)
        return CD_ERR_NOMEM;
    return CD_OK;
}

static enum cd_err list_fn(struct cd_tx *tx, void *ctx)
{
    struct list_ctx *l = ctx;
    struct cd_val p[] = {CD_VINT(l->now - CD_STAFF_SESSION_IDLE_MS),
                         CD_VINT(l->now - CD_STAFF_SESSION_MAX_MS), CD_VNULL};

    /* Statements are literals: the store caches them by their text's address. */
    if (l->value == NULL)
        return cd_tx_exec(tx, ACCOUNT_COLS " ORDER BY created_at, id", p, 2, account_row, l,
                          NULL);
    p[2] = CD_VCSTR(l->value);
    return cd_tx_exec(tx,
                      strcmp(l->column, "id") == 0 ? ACCOUNT_COLS " WHERE id = $3"
                                                   : ACCOUNT_COLS " WHERE username = $3",
                      p, 3, account_row, l, NULL);
}

/* The accounts (column = value, or all when value is NULL) into *out. */
static enum cd_err accounts_read(struct cd_store *s, const char *column, const char *value,
                                 json_t **out)
{
    struct list_ctx l = {json_array(), cd_now_ms(), column, value};
    enum cd_err err;

    if (l.arr == NULL)
        return CD_ERR_NOMEM;
    if ((err = cd_store_read(s, list_fn, &l)) != CD_OK) {
        json_decref(l.arr);
        return err;
    }
    *out = l.arr;
    return CD_OK;
}

enum cd_err cd_staff_list(struct cd_store *s, json_t **out)
{
    return accounts_read(s, NULL, NULL, out);
}

/* The one account column = value into *out (may be NULL: nothing is read). */
static enum cd_err account_get(struct cd_store *s, const char *column, const char *value,
                               json_t **out)
{
    json_t *arr = NULL;
    enum cd_err err;

    if (out == NULL)
        return CD_OK;
    if ((err = accounts_read(s, column, value, &arr)) != CD_OK)
        return err;
    if (json_array_size(arr) != 1) {
        json_decref(arr);
        return cd_err_set(CD_ERR_NOT_FOUND, "no staff account with this id or username");
    }
    *out = json_incref(json_array_get(arr, 0));
    json_decref(arr);
    return CD_OK;
}

/* ---- creation ---- */

static enum cd_err password_check(struct cd_str password)
{
    if (password.len < CD_STAFF_PASSWORD_MIN || password.len > CD_STAFF_PASSWORD_MAX ||
        !cd_utf8_valid(password.p, password.len))
        return cd_err_set(CD_ERR_INVALID, "a password has %d to %d characters",
                          CD_STAFF_PASSWORD_MIN, CD_STAFF_PASSWORD_MAX);
    return CD_OK;
}

struct add_ctx {
    char id[CD_ID_MAX];
    char username[65];
    struct cd_str name;
    enum cd_role role;
    char hash[CD_CRYPTO_PWHASH_MAX];
    const struct cd_staff_actor *actor;
};

static enum cd_err add_fn(struct cd_tx *tx, void *ctx)
{
    struct add_ctx *a = ctx;
    int64_t taken = 0;
    enum cd_err err;
    struct cd_val p[] = {CD_VCSTR(a->id), CD_VCSTR(a->username), CD_VTEXT(a->name),
                         CD_VCSTR(cd_role_name(a->role)), CD_VCSTR(a->hash),
                         CD_VINT(cd_now_ms())};

    if ((err = cd_tx_int(tx, "SELECT count(*) FROM staff WHERE username = $1", &p[1], 1,
                         &taken)) != CD_OK)
        return err;
    if (taken)
        return cd_err_set(CD_ERR_CONFLICT, "a staff account with this username exists");
    if ((err = cd_tx_exec(tx, "INSERT INTO staff(id, username, name, role, password_hash,"
                              " created_at, failed_count) VALUES($1,$2,$3,$4,$5,$6,0)",
                          p, 6, NULL, NULL, NULL)) != CD_OK)
        return err;
    return audit(tx, "staff.create", "ok", a->actor->id, a->actor->role, a->actor->name,
                 a->actor->request_id, a->id, NULL, NULL);
}

enum cd_err cd_staff_add(struct cd_store *s, struct cd_str username, struct cd_str name,
                         enum cd_role role, struct cd_str password,
                         const struct cd_staff_actor *actor, json_t **out)
{
    struct add_ctx a = {.name = name, .role = role, .actor = actor};
    enum cd_err err;

    if ((err = username_norm(username, a.username)) != CD_OK ||
        (err = text_check(name, "a name", 100)) != CD_OK ||
        (err = password_check(password)) != CD_OK ||
        (err = cd_crypto_pwhash(password, a.hash)) != CD_OK)
        return err;
    cd_id_new("stf", a.id);
    err = cd_store_write(s, add_fn, &a);
    cd_crypto_wipe(a.hash, sizeof a.hash);
    if (err != CD_OK)
        return err;
    return account_get(s, "id", a.id, out);
}

/* ---- disabling, revoking and resetting ---- */

/* What ending an account's sessions comes with. */
enum end_mode { END_REVOKE, END_DISABLE, END_RESET };

struct end_ctx {
    char who[65];
    const char *column;
    const struct cd_staff_actor *actor;
    enum end_mode mode;
    const char *hash; /* END_RESET: the temporary password's */
    char id[CD_ID_MAX];
    int64_t ended;
};

static enum cd_err id_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct end_ctx *e = ctx;

    snprintf(e->id, sizeof e->id, "%.*s", (int)c[0].len, (const char *)c[0].p);
    if (c[1].type != CD_VAL_INT || e->mode == END_REVOKE)
        return CD_OK;
    return cd_err_set(CD_ERR_CONFLICT, e->mode == END_DISABLE
                                           ? "the staff account is already disabled"
                                           : "the staff account is disabled");
}

static enum cd_err end_fn(struct cd_tx *tx, void *ctx)
{
    struct end_ctx *e = ctx;
    int64_t now = cd_now_ms();
    enum cd_err err;

    e->id[0] = '\0';
    struct cd_val p[] = {CD_VCSTR(e->who), CD_VINT(now)};
    if ((err = cd_tx_exec(tx,
                          strcmp(e->column, "id") == 0
                              ? "SELECT id, disabled_at FROM staff WHERE id = $1"
                              : "SELECT id, disabled_at FROM staff WHERE username = $1",
                          p, 1, id_row, e, NULL)) != CD_OK)
        return err;
    if (e->id[0] == '\0')
        return cd_err_set(CD_ERR_NOT_FOUND, "no staff account with this id or username");
    if (e->mode == END_RESET && e->actor->id && strcmp(e->actor->id, e->id) == 0)
        return cd_err_set(CD_ERR_INVALID, "this is your own account: change your password with "
                                          "your current one (PUT /console/session/password)");
    struct cd_val q[] = {CD_VCSTR(e->id), CD_VINT(now), e->hash ? CD_VCSTR(e->hash) : CD_VNULL};
    if (e->mode == END_DISABLE &&
        (err = cd_tx_exec(tx, "UPDATE staff SET disabled_at = $2 WHERE id = $1", q, 2, NULL,
                          NULL, NULL)) != CD_OK)
        return err;
    /* A reset also lifts a lockout: the administrator has just spoken to the person. */
    if (e->mode == END_RESET &&
        (err = cd_tx_exec(tx, "UPDATE staff SET password_hash = $3, password_reset_at = $2,"
                              " failed_count = 0, locked_until = NULL WHERE id = $1",
                          q, 3, NULL, NULL, NULL)) != CD_OK)
        return err;
    if ((err = cd_tx_exec(tx, "UPDATE staff_sessions SET ended_at = $2 WHERE staff_id = $1"
                              " AND ended_at IS NULL",
                          q, 2, NULL, NULL, &e->ended)) != CD_OK)
        return err;
    static const char *const action[] = {[END_REVOKE] = "staff.sessions_revoke",
                                         [END_DISABLE] = "staff.disable",
                                         [END_RESET] = "staff.password_reset"};
    return audit(tx, action[e->mode], "ok", e->actor->id,
                 e->actor->role, e->actor->name, e->actor->request_id, e->id, NULL, NULL);
}

static enum cd_err end_sessions(struct cd_store *s, struct cd_str who, enum end_mode mode,
                                const struct cd_staff_actor *actor, struct end_ctx *e)
{
    enum cd_err err;

    e->actor = actor;
    e->mode = mode;
    if ((err = who_norm(who, e->who, &e->column)) != CD_OK)
        return err;
    return cd_store_write(s, end_fn, e);
}

enum cd_err cd_staff_disable(struct cd_store *s, struct cd_str who,
                             const struct cd_staff_actor *actor, json_t **out)
{
    struct end_ctx e = {0};
    enum cd_err err = end_sessions(s, who, END_DISABLE, actor, &e);

    return err != CD_OK ? err : account_get(s, "id", e.id, out);
}

enum cd_err cd_staff_sessions_revoke(struct cd_store *s, struct cd_str who,
                                     const struct cd_staff_actor *actor, int64_t *ended)
{
    struct end_ctx e = {0};
    enum cd_err err = end_sessions(s, who, END_REVOKE, actor, &e);

    if (err == CD_OK)
        *ended = e.ended;
    return err;
}

enum cd_err cd_staff_password_reset(struct cd_store *s, struct cd_str who,
                                    struct cd_str new_password,
                                    const struct cd_staff_actor *actor, json_t **out)
{
    char hash[CD_CRYPTO_PWHASH_MAX];
    struct end_ctx e = {.hash = hash};
    enum cd_err err;

    if ((err = password_check(new_password)) != CD_OK ||
        (err = cd_crypto_pwhash(new_password, hash)) != CD_OK)
        return err;
    err = end_sessions(s, who, END_RESET, actor, &e);
    cd_crypto_wipe(hash, sizeof hash);
    return err != CD_OK ? err : account_get(s, "id", e.id, out);
}

/* ---- sign-in ---- */

struct account {
    bool found, disabled, must_change;
    char id[CD_ID_MAX], username[65], name[128], role[16];
    char hash[CD_CRYPTO_PWHASH_MAX];
    int64_t locked_until;
};

static enum cd_err account_secret_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct account *a = ctx;

    a->found = true;
    snprintf(a->id, sizeof a->id, "%.*s", (int)c[0].len, (const char *)c[0].p);
    snprintf(a->username, sizeof a->username, "%.*s", (int)c[1].len, (const char *)c[1].p);
    snprintf(a->name, sizeof a->name, "%.*s", (int)c[2].len, (const char *)c[2].p);
    snprintf(a->role, sizeof a->role, "%.*s", (int)c[3].len, (const char *)c[3].p);
    snprintf(a->hash, sizeof a->hash, "%.*s", (int)c[4].len, (const char *)c[4].p);
    a->disabled = c[5].type == CD_VAL_INT;
    a->locked_until = c[6].type == CD_VAL_INT ? c[6].i : 0;
    a->must_change = c[7].type == CD_VAL_INT;
    return CD_OK;
}

struct sign_in_ctx {
    const char *action; /* for the ledger: a sign-in, or a password change's check */
    char username[65];
    struct account a;
    bool ok;            /* the password was right and the account may sign in */
    const char *reason; /* why not, for the ledger */
    const char *request_id;
    uint8_t hash[CD_CRYPTO_HASH_LEN];
    char session_id[CD_ID_MAX];
    int64_t now;
    int64_t locked_until; /* set when this failure locked the account */
};

static enum cd_err read_account_fn(struct cd_tx *tx, void *ctx)
{
    struct sign_in_ctx *si = ctx;
    struct cd_val p[] = {CD_VCSTR(si->username)};

    return cd_tx_exec(tx, "SELECT id, username, name, role, password_hash, disabled_at,"
                          " locked_until, password_reset_at FROM staff WHERE username = $1",
                      p, 1, account_secret_row, &si->a, NULL);
}

static enum cd_err sign_in_fn(struct cd_tx *tx, void *ctx)
{
    struct sign_in_ctx *si = ctx;
    struct cd_val id[] = {CD_VCSTR(si->a.id), CD_VINT(si->now)};
    int64_t failed = 0;
    enum cd_err err;

    si->locked_until = 0;
    if (si->ok) {
        struct cd_val p[] = {CD_VCSTR(si->session_id), CD_VBLOB(si->hash, sizeof si->hash),
                             CD_VCSTR(si->a.id), CD_VINT(si->now)};
        if ((err = cd_tx_exec(tx, "INSERT INTO staff_sessions(id, hash, staff_id, created_at,"
                                  " last_seen) VALUES($1,$2,$3,$4,$4)",
                              p, 4, NULL, NULL, NULL)) != CD_OK ||
            (err = cd_tx_exec(tx, "UPDATE staff SET failed_count = 0, locked_until = NULL,"
                                  " last_sign_in_at = $2 WHERE id = $1",
                              id, 2, NULL, NULL, NULL)) != CD_OK)
            return err;
        return audit(tx, "staff.sign_in", "ok", si->a.id, si->a.role, si->a.name,
                     si->request_id, si->session_id, NULL, NULL);
    }
    if (strcmp(si->reason, "wrong-password") == 0) {
        /* Counted in the transaction, so two wrong guesses at once both count. */
        if ((err = cd_tx_int(tx, "SELECT failed_count FROM staff WHERE id = $1", id, 1,
                             &failed)) != CD_OK)
            return err;
        if (++failed >= CD_STAFF_MAX_FAILURES) {
            si->locked_until = si->now + CD_STAFF_LOCKOUT_MS;
            failed = 0;
        }
        struct cd_val p[] = {CD_VCSTR(si->a.id), CD_VINT(failed),
                             si->locked_until ? CD_VINT(si->locked_until) : CD_VNULL};
        if ((err = cd_tx_exec(tx, "UPDATE staff SET failed_count = $2, locked_until ="
                                  " coalesce($3, locked_until) WHERE id = $1",
                              p, 3, NULL, NULL, NULL)) != CD_OK)
            return err;
    }
    return audit(tx, si->action, "denied", si->a.id, si->a.role, si->a.name,
                 si->request_id, NULL, NULL, si->locked_until ? "locked-out" : si->reason);
}

/* A hash to verify against when the username is unknown, so that answer takes as long as a
 * wrong password. Made once per process. */
static char dummy_hash[CD_CRYPTO_PWHASH_MAX];
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;

static void dummy_make(void)
{
    if (cd_crypto_pwhash(CD_STR("candor: no such account"), dummy_hash) != CD_OK)
        dummy_hash[0] = '\0';
}

enum cd_err cd_staff_sign_in(struct cd_store *s, struct cd_str username, struct cd_str password,
                             const char *request_id, struct cd_staff_session *out,
                             char token_out[CD_STAFF_SESSION_LEN + 1])
{
    struct sign_in_ctx si = {.action = "staff.sign_in", .request_id = request_id};
    char token[CD_STAFF_SESSION_LEN + 1] = "";
    enum cd_err err;
    static const char wrong[] = "the username or the password is wrong";

    if (username.len == 0 || password.len == 0 || password.len > CD_STAFF_PASSWORD_MAX)
        return cd_err_set(CD_ERR_INVALID, "give a username and a password");
    if (username_norm(username, si.username) != CD_OK) {
        pthread_once(&dummy_once, dummy_make);
        (void)cd_crypto_pwhash_verify(dummy_hash, password);
        return cd_err_set(CD_ERR_UNAUTHENTICATED, wrong);
    }
    if ((err = cd_store_read(s, read_account_fn, &si)) != CD_OK)
        return err;
    if (!si.a.found) {
        pthread_once(&dummy_once, dummy_make);
        (void)cd_crypto_pwhash_verify(dummy_hash, password);
        return cd_err_set(CD_ERR_UNAUTHENTICATED, wrong);
    }
    si.now = cd_now_ms();
    if (si.a.locked_until > si.now) {
        si.reason = "locked";
    } else if (!cd_crypto_pwhash_verify(si.a.hash, password)) {
        si.reason = "wrong-password";
    } else if (si.a.disabled) {
        si.reason = "disabled";
    } else if (!cd_role_parse(cd_str_c(si.a.role), &out->role)) {
        si.reason = "unknown-role";
    } else {
        si.ok = true;
    }
    cd_crypto_wipe(si.a.hash, sizeof si.a.hash);
    if (si.ok) {
        _Static_assert(CD_STAFF_SESSION_LEN == CD_CRYPTO_SECRET_LEN, "a bearer secret");
        if ((err = cd_crypto_secret_new("css_", token, si.hash)) != CD_OK)
            goto out;
        cd_id_new("ses", si.session_id);
    }
    if ((err = cd_store_write(s, sign_in_fn, &si)) != CD_OK)
        goto out;
    if (!si.ok) {
        char ts[CD_TIME_STRLEN];
        int64_t until = si.locked_until ? si.locked_until : si.a.locked_until;
        cd_time_format(until, ts);
        if (si.locked_until || strcmp(si.reason, "locked") == 0)
            err = cd_err_set(CD_ERR_UNAUTHENTICATED, "too many wrong passwords: this account "
                                                     "is locked until %s", ts);
        else if (strcmp(si.reason, "wrong-password") == 0)
            err = cd_err_set(CD_ERR_UNAUTHENTICATED, wrong);
        else
            err = cd_err_set(CD_ERR_UNAUTHENTICATED, "this account is disabled; ask an "
                                                     "administrator");
        goto out;
    }
    memset(out, 0, sizeof *out);
    cd_role_parse(cd_str_c(si.a.role), &out->role);
    snprintf(out->id, sizeof out->id, "%s", si.session_id);
    snprintf(out->staff_id, sizeof out->staff_id, "%s", si.a.id);
    snprintf(out->username, sizeof out->username, "%s", si.a.username);
    snprintf(out->name, sizeof out->name, "%s", si.a.name);
    out->expires_at = si.now + CD_STAFF_SESSION_IDLE_MS;
    out->must_change_password = si.a.must_change;
    memcpy(token_out, token, sizeof token);
out:
    cd_crypto_wipe(token, sizeof token);
    return err;
}

/* ---- sessions ---- */

struct verify_ctx {
    const uint8_t *hash;
    struct cd_staff_session *ses;
    bool found, ended, disabled, bad;
    int64_t created_at, last_seen;
};

static enum cd_err session_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct verify_ctx *v = ctx;
    struct cd_staff_session *ses = v->ses;

    v->found = true;
    snprintf(ses->id, sizeof ses->id, "%.*s", (int)c[0].len, (const char *)c[0].p);
    snprintf(ses->staff_id, sizeof ses->staff_id, "%.*s", (int)c[1].len, (const char *)c[1].p);
    v->created_at = c[2].i;
    v->last_seen = c[3].i;
    v->ended = c[4].type == CD_VAL_INT;
    ses->has_purpose = c[5].type == CD_VAL_TEXT &&
                       cd_purpose_parse((struct cd_str){c[5].p, c[5].len}, &ses->purpose);
    snprintf(ses->username, sizeof ses->username, "%.*s", (int)c[6].len, (const char *)c[6].p);
    snprintf(ses->name, sizeof ses->name, "%.*s", (int)c[7].len, (const char *)c[7].p);
    v->bad = !cd_role_parse((struct cd_str){c[8].p, c[8].len}, &ses->role);
    v->disabled = c[9].type == CD_VAL_INT;
    ses->must_change_password = c[10].type == CD_VAL_INT;
    return CD_OK;
}

static enum cd_err session_fn(struct cd_tx *tx, void *ctx)
{
    struct verify_ctx *v = ctx;
    struct cd_val p[] = {CD_VBLOB(v->hash, CD_CRYPTO_HASH_LEN)};

    return cd_tx_exec(tx, "SELECT s.id, s.staff_id, s.created_at, s.last_seen, s.ended_at,"
                          " s.purpose, t.username, t.name, t.role, t.disabled_at,"
                          " t.password_reset_at"
                          " FROM staff_sessions s JOIN staff t ON t.id = s.staff_id"
                          " WHERE s.hash = $1",
                      p, 1, session_row, v, NULL);
}

static enum cd_err touch_fn(struct cd_tx *tx, void *ctx)
{
    const struct cd_staff_session *ses = ctx;
    struct cd_val p[] = {CD_VCSTR(ses->id), CD_VINT(cd_now_ms())};

    return cd_tx_exec(tx, "UPDATE staff_sessions SET last_seen = $2 WHERE id = $1", p, 2, NULL,
                      NULL, NULL);
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

enum cd_err cd_staff_session_verify(struct cd_store *s, struct cd_str token,
                                    struct cd_staff_session *out)
{
    uint8_t hash[CD_CRYPTO_HASH_LEN];
    struct cd_staff_session ses = {0};
    struct verify_ctx v = {.hash = hash, .ses = &ses};
    int64_t now = cd_now_ms();
    enum cd_err err;

    if (token.len != CD_STAFF_SESSION_LEN || memcmp(token.p, "css_", 4) != 0)
        return cd_err_set(CD_ERR_UNAUTHENTICATED, "the session cookie is malformed; sign in");
    if ((err = cd_crypto_sha256(token.p, token.len, hash)) != CD_OK ||
        (err = cd_store_read(s, session_fn, &v)) != CD_OK)
        return err;
    if (!v.found || v.bad)
        return cd_err_set(CD_ERR_UNAUTHENTICATED, "the session is not known; sign in");
    if (v.ended || v.disabled)
        return cd_err_set(CD_ERR_UNAUTHENTICATED, v.disabled ? "the account is disabled"
                                                             : "the session has ended; sign in");
    if (now - v.last_seen > CD_STAFF_SESSION_IDLE_MS ||
        now - v.created_at > CD_STAFF_SESSION_MAX_MS)
        return cd_err_set(CD_ERR_UNAUTHENTICATED, "the session expired; sign in again");
    if (now - v.last_seen > TOUCH_MS) {
        if ((err = cd_store_write(s, touch_fn, &ses)) != CD_OK)
            return err;
        v.last_seen = now;
    }
    ses.expires_at = min64(v.last_seen + CD_STAFF_SESSION_IDLE_MS,
                           v.created_at + CD_STAFF_SESSION_MAX_MS);
    *out = ses;
    return CD_OK;
}

/* The label keeps the console's tokens apart from any other derived from a secret. */
#define CSRF_LABEL "candor console csrf\n"

enum cd_err cd_staff_csrf_token(struct cd_str token, char out[CD_STAFF_CSRF_LEN + 1])
{
    _Static_assert(CD_STAFF_CSRF_LEN == CD_CRYPTO_DERIVED_LEN, "a derived token");
    return cd_crypto_derived(CSRF_LABEL, token, out);
}

bool cd_staff_csrf_check(struct cd_str token, struct cd_str presented)
{
    return cd_crypto_derived_check(CSRF_LABEL, token, presented);
}

struct session_change {
    const struct cd_staff_session *ses;
    const char *purpose; /* NULL: the session ends */
    const char *request_id;
};

static enum cd_err session_change_fn(struct cd_tx *tx, void *ctx)
{
    struct session_change *sc = ctx;
    struct cd_val p[] = {CD_VCSTR(sc->ses->id),
                         sc->purpose ? CD_VCSTR(sc->purpose) : CD_VINT(cd_now_ms())};
    int64_t changes = 0;
    enum cd_err err;

    err = cd_tx_exec(tx, sc->purpose ? "UPDATE staff_sessions SET purpose = $2 WHERE id = $1"
                                       " AND ended_at IS NULL"
                                     : "UPDATE staff_sessions SET ended_at = $2 WHERE id = $1"
                                       " AND ended_at IS NULL",
                     p, 2, NULL, NULL, &changes);
    if (err != CD_OK)
        return err;
    if (changes == 0)
        return cd_err_set(CD_ERR_NOT_FOUND, "the session has ended");
    return audit(tx, sc->purpose ? "staff.purpose" : "staff.sign_out", "ok", sc->ses->staff_id,
                 cd_role_name(sc->ses->role), sc->ses->name, sc->request_id, sc->ses->id,
                 sc->purpose, NULL);
}

enum cd_err cd_staff_session_set_purpose(struct cd_store *s, const struct cd_staff_session *ses,
                                         enum cd_purpose purpose, const char *request_id)
{
    struct session_change sc = {ses, cd_purpose_name(purpose), request_id};

    return cd_store_write(s, session_change_fn, &sc);
}

enum cd_err cd_staff_session_end(struct cd_store *s, const struct cd_staff_session *ses,
                                 const char *request_id)
{
    struct session_change sc = {ses, NULL, request_id};

    return cd_store_write(s, session_change_fn, &sc);
}

/* ---- changing one's own password ---- */

struct change_ctx {
    const struct cd_staff_session *ses;
    const char *hash, *request_id;
    int64_t ended;
};

static enum cd_err change_fn(struct cd_tx *tx, void *ctx)
{
    struct change_ctx *c = ctx;
    struct cd_val p[] = {CD_VCSTR(c->ses->staff_id), CD_VCSTR(c->hash), CD_VINT(cd_now_ms()),
                         CD_VCSTR(c->ses->id)};
    int64_t live = 0;
    enum cd_err err;

    /* Checked in the transaction: a session revoked meanwhile may not change anything. */
    if ((err = cd_tx_int(tx, "SELECT count(*) FROM staff_sessions WHERE id = $1 AND"
                             " ended_at IS NULL",
                         &p[3], 1, &live)) != CD_OK)
        return err;
    if (live == 0)
        return cd_err_set(CD_ERR_NOT_FOUND, "the session has ended");
    if ((err = cd_tx_exec(tx, "UPDATE staff SET password_hash = $2, password_reset_at = NULL,"
                              " failed_count = 0 WHERE id = $1",
                          p, 2, NULL, NULL, NULL)) != CD_OK ||
        (err = cd_tx_exec(tx, "UPDATE staff_sessions SET ended_at = $2 WHERE staff_id = $1"
                              " AND id <> $3 AND ended_at IS NULL",
                          (struct cd_val[]){p[0], p[2], p[3]}, 3, NULL, NULL, &c->ended)) !=
            CD_OK)
        return err;
    return audit(tx, "staff.password_change", "ok", c->ses->staff_id,
                 cd_role_name(c->ses->role), c->ses->name, c->request_id, c->ses->staff_id, NULL,
                 NULL);
}

enum cd_err cd_staff_password_change(struct cd_store *s, const struct cd_staff_session *ses,
                                     struct cd_str current, struct cd_str new_password,
                                     const char *request_id, int64_t *ended)
{
    struct sign_in_ctx si = {.action = "staff.password_change", .request_id = request_id};
    char hash[CD_CRYPTO_PWHASH_MAX];
    struct change_ctx c = {.ses = ses, .hash = hash, .request_id = request_id};
    enum cd_err err;

    if (current.len == 0 || current.len > CD_STAFF_PASSWORD_MAX)
        return cd_err_set(CD_ERR_INVALID, "give the current password");
    if ((err = password_check(new_password)) != CD_OK)
        return err;
    if (cd_str_eq(current, new_password))
        return cd_err_set(CD_ERR_INVALID, "the new password must differ from the current one");
    snprintf(si.username, sizeof si.username, "%s", ses->username);
    if ((err = cd_store_read(s, read_account_fn, &si)) != CD_OK)
        return err;
    if (!si.a.found)
        return cd_err_set(CD_ERR_NOT_FOUND, "the session has ended");
    si.now = cd_now_ms();
    /* A wrong current password counts like a wrong sign-in: a session left open on a shared
     * screen does not give anyone unlimited guesses. */
    if (si.a.locked_until > si.now)
        si.reason = "locked";
    else if (!cd_crypto_pwhash_verify(si.a.hash, current))
        si.reason = "wrong-password";
    cd_crypto_wipe(si.a.hash, sizeof si.a.hash);
    if (si.reason) {
        if ((err = cd_store_write(s, sign_in_fn, &si)) != CD_OK)
            return err;
        return cd_err_set(CD_ERR_FORBIDDEN,
                          si.locked_until || strcmp(si.reason, "locked") == 0
                              ? "too many wrong passwords: this account is locked for now"
                              : "the current password is wrong");
    }
    if ((err = cd_crypto_pwhash(new_password, hash)) != CD_OK)
        return err;
    err = cd_store_write(s, change_fn, &c);
    cd_crypto_wipe(hash, sizeof hash);
    if (err == CD_OK && ended)
        *ended = c.ended;
    return err;
}
