/* Unit tests for src/staff: accounts (validation, Argon2id hashes, nothing of the password or
 * the session secret stored), sign-in and its lockout, sessions that expire, end and are revoked,
 * the anti-forgery token, and the ledger entries, on a real SQLite file. */
#include <unistd.h>
#include "unit.h"
#include "audit/audit.h"
#include "crypto/crypto.h"
#include "staff/staff.h"

#define PW "correct horse battery staple"

static char path[256];
static struct cd_store *store;
static const struct cd_staff_actor cli = {"cli", NULL, NULL, NULL};

static int setup(void **state)
{
    snprintf(path, sizeof path, "/tmp/candor-test-staff-%d.db", (int)getpid());
    unlink(path);
    return cd_store_open(path, &store) == CD_OK ? 0 : -1;
}

static int teardown(void **state)
{
    cd_store_close(store);
    unit_db_remove(path);
    return 0;
}

static void add(const char *user, enum cd_role role)
{
    json_t *a = NULL;

    assert_int_equal(cd_staff_add(store, cd_str_c(user), CD_STR("Ana Agent"), role, CD_STR(PW),
                                  &cli, &a),
                     CD_OK);
    json_decref(a);
}

static enum cd_err sign_in(const char *user, const char *pw, struct cd_staff_session *ses,
                           char token[CD_STAFF_SESSION_LEN + 1])
{
    return cd_staff_sign_in(store, cd_str_c(user), cd_str_c(pw), NULL, ses, token);
}

/* Runs one statement (a literal) in a write with an integer and a text parameter: the tests
 * move clocks kept in rows into the past. */
struct stmt {
    const char *sql;
    int64_t i;
    const char *text;
};

static enum cd_err exec_fn(struct cd_tx *tx, void *ctx)
{
    struct stmt *st = ctx;
    struct cd_val p[] = {CD_VINT(st->i), CD_VCSTR(st->text)};

    return cd_tx_exec(tx, st->sql, p, 2, NULL, NULL, NULL);
}

static void exec(const char *sql, int64_t i, const char *text)
{
    struct stmt st = {sql, i, text};

    assert_int_equal(cd_store_write(store, exec_fn, &st), CD_OK);
}

struct texts {
    char v[4][200];
    size_t n;
};

static enum cd_err text_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct texts *t = ctx;

    if (t->n < 4)
        snprintf(t->v[t->n++], sizeof t->v[0], "%.*s", (int)c[0].len, (const char *)c[0].p);
    return CD_OK;
}

static enum cd_err hashes_fn(struct cd_tx *tx, void *ctx)
{
    return cd_tx_exec(tx, "SELECT password_hash FROM staff", NULL, 0, text_row, ctx, NULL);
}

static void passwords_are_argon2id_hashes(void **state)
{
    char h[CD_CRYPTO_PWHASH_MAX], h2[CD_CRYPTO_PWHASH_MAX];
    struct texts t = {0};

    assert_int_equal(cd_crypto_pwhash(CD_STR(PW), h), CD_OK);
    assert_int_equal(strncmp(h, "$argon2id$", 10), 0);
    assert_true(cd_crypto_pwhash_verify(h, CD_STR(PW)));
    assert_false(cd_crypto_pwhash_verify(h, CD_STR("correct horse battery stapler")));
    assert_false(cd_crypto_pwhash_verify("not a hash", CD_STR(PW)));
    /* A random salt: the same password hashes differently each time. */
    assert_int_equal(cd_crypto_pwhash(CD_STR(PW), h2), CD_OK);
    assert_string_not_equal(h, h2);

    add("ana", CD_ROLE_AGENT);
    assert_int_equal(cd_store_read(store, hashes_fn, &t), CD_OK);
    assert_int_equal(t.n, 1);
    assert_int_equal(strncmp(t.v[0], "$argon2id$", 10), 0);
    assert_null(strstr(t.v[0], "horse"));
}

static void accounts_are_validated(void **state)
{
    json_t *a = NULL;

    add("Ana.Silva@Example.org", CD_ROLE_AGENT);
    /* Usernames are folded, so the same name in other case is taken. */
    assert_int_equal(cd_staff_add(store, CD_STR("ana.silva@example.org"), CD_STR("Other"),
                                  CD_ROLE_AGENT, CD_STR(PW), &cli, &a),
                     CD_ERR_CONFLICT);
    assert_int_equal(cd_staff_add(store, CD_STR("bo"), CD_STR("Bo"), CD_ROLE_AGENT,
                                  CD_STR("short"), &cli, &a),
                     CD_ERR_INVALID);
    assert_int_equal(cd_staff_add(store, CD_STR("bo b"), CD_STR("Bo"), CD_ROLE_AGENT, CD_STR(PW),
                                  &cli, &a),
                     CD_ERR_INVALID);
    assert_int_equal(cd_staff_add(store, CD_STR(""), CD_STR("Bo"), CD_ROLE_AGENT, CD_STR(PW),
                                  &cli, &a),
                     CD_ERR_INVALID);
    assert_int_equal(cd_staff_add(store, CD_STR("bo"), CD_STR("Bo\nB"), CD_ROLE_AGENT,
                                  CD_STR(PW), &cli, &a),
                     CD_ERR_INVALID);
    assert_int_equal(cd_staff_add(store, CD_STR("bo"), CD_STR(""), CD_ROLE_AGENT, CD_STR(PW),
                                  &cli, &a),
                     CD_ERR_INVALID);
    assert_null(a);
    json_t *list = NULL;
    assert_int_equal(cd_staff_list(store, &list), CD_OK);
    assert_int_equal(json_array_size(list), 1);
    json_t *ana = json_array_get(list, 0);
    assert_string_equal(json_string_value(json_object_get(ana, "username")),
                        "ana.silva@example.org");
    assert_string_equal(json_string_value(json_object_get(ana, "status")), "active");
    assert_null(json_object_get(ana, "password_hash"));
    json_decref(list);
}

static void sign_in_opens_a_session_the_cookie_proves(void **state)
{
    struct cd_staff_session ses, seen;
    char token[CD_STAFF_SESSION_LEN + 1];

    add("ana", CD_ROLE_SUPERVISOR);
    assert_int_equal(sign_in("ANA", PW, &ses, token), CD_OK);
    assert_int_equal(strlen(token), CD_STAFF_SESSION_LEN);
    assert_int_equal(ses.role, CD_ROLE_SUPERVISOR);
    assert_string_equal(ses.username, "ana");
    assert_false(ses.has_purpose);
    assert_int_equal(cd_staff_session_verify(store, cd_str_c(token), &seen), CD_OK);
    assert_string_equal(seen.id, ses.id);
    assert_string_equal(seen.staff_id, ses.staff_id);
    assert_string_equal(seen.name, "Ana Agent");
    /* The purpose is kept with the session. */
    assert_int_equal(cd_staff_session_set_purpose(store, &seen, CD_PURPOSE_BILLING, NULL), CD_OK);
    assert_int_equal(cd_staff_session_verify(store, cd_str_c(token), &seen), CD_OK);
    assert_true(seen.has_purpose);
    assert_int_equal(seen.purpose, CD_PURPOSE_BILLING);
    /* A secret one character off, or of another shape, proves nothing. */
    token[10] = token[10] == 'A' ? 'B' : 'A';
    assert_int_equal(cd_staff_session_verify(store, cd_str_c(token), &seen),
                     CD_ERR_UNAUTHENTICATED);
    assert_int_equal(cd_staff_session_verify(store, CD_STR("cnd_abc"), &seen),
                     CD_ERR_UNAUTHENTICATED);
}

static void wrong_and_unknown_look_alike(void **state)
{
    struct cd_staff_session ses;
    char token[CD_STAFF_SESSION_LEN + 1], a[200];

    add("ana", CD_ROLE_AGENT);
    assert_int_equal(sign_in("ana", "not the password", &ses, token), CD_ERR_UNAUTHENTICATED);
    snprintf(a, sizeof a, "%s", cd_err_detail());
    assert_int_equal(sign_in("nobody", PW, &ses, token), CD_ERR_UNAUTHENTICATED);
    assert_string_equal(cd_err_detail(), a);
    assert_int_equal(sign_in("no body", PW, &ses, token), CD_ERR_UNAUTHENTICATED);
    assert_string_equal(cd_err_detail(), a);
    assert_int_equal(sign_in("ana", "", &ses, token), CD_ERR_INVALID);
}

static void repeated_failures_lock_the_account(void **state)
{
    struct cd_staff_session ses;
    char token[CD_STAFF_SESSION_LEN + 1];
    json_t *list = NULL;

    add("ana", CD_ROLE_AGENT);
    /* Four wrong in a row, then a right one: the count starts again. */
    for (int i = 0; i < CD_STAFF_MAX_FAILURES - 1; i++)
        assert_int_equal(sign_in("ana", "wrong password", &ses, token), CD_ERR_UNAUTHENTICATED);
    assert_int_equal(sign_in("ana", PW, &ses, token), CD_OK);
    for (int i = 0; i < CD_STAFF_MAX_FAILURES - 1; i++)
        assert_int_equal(sign_in("ana", "wrong password", &ses, token), CD_ERR_UNAUTHENTICATED);
    assert_null(strstr(cd_err_detail(), "locked"));
    /* The fifth in a row locks it: now the right password is refused too. */
    assert_int_equal(sign_in("ana", "wrong password", &ses, token), CD_ERR_UNAUTHENTICATED);
    assert_non_null(strstr(cd_err_detail(), "locked until"));
    assert_int_equal(sign_in("ana", PW, &ses, token), CD_ERR_UNAUTHENTICATED);
    assert_non_null(strstr(cd_err_detail(), "locked until"));
    assert_int_equal(cd_staff_list(store, &list), CD_OK);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "status")),
                        "locked");
    assert_non_null(json_string_value(json_object_get(json_array_get(list, 0), "locked_until")));
    json_decref(list);
    /* When the lock has run out the right password works again. */
    exec("UPDATE staff SET locked_until = $1 WHERE username = $2", 1, "ana");
    assert_int_equal(sign_in("ana", PW, &ses, token), CD_OK);
}

static void sessions_expire_end_and_are_revoked(void **state)
{
    struct cd_staff_session s1, s2, s3, seen;
    char t1[CD_STAFF_SESSION_LEN + 1], t2[CD_STAFF_SESSION_LEN + 1], t3[CD_STAFF_SESSION_LEN + 1];
    int64_t ended = 0;
    json_t *a = NULL;

    add("ana", CD_ROLE_AGENT);
    assert_int_equal(sign_in("ana", PW, &s1, t1), CD_OK);
    assert_int_equal(sign_in("ana", PW, &s2, t2), CD_OK);
    assert_int_equal(sign_in("ana", PW, &s3, t3), CD_OK);
    /* Idle too long. */
    exec("UPDATE staff_sessions SET last_seen = $1 WHERE id = $2",
         cd_now_ms() - CD_STAFF_SESSION_IDLE_MS - 1000, s1.id);
    assert_int_equal(cd_staff_session_verify(store, cd_str_c(t1), &seen), CD_ERR_UNAUTHENTICATED);
    assert_non_null(strstr(cd_err_detail(), "expired"));
    /* Used, but opened too long ago. */
    exec("UPDATE staff_sessions SET created_at = $1 WHERE id = $2",
         cd_now_ms() - CD_STAFF_SESSION_MAX_MS - 1000, s2.id);
    assert_int_equal(cd_staff_session_verify(store, cd_str_c(t2), &seen), CD_ERR_UNAUTHENTICATED);
    /* Signed out. */
    assert_int_equal(cd_staff_session_verify(store, cd_str_c(t3), &seen), CD_OK);
    assert_int_equal(cd_staff_session_end(store, &seen, NULL), CD_OK);
    assert_int_equal(cd_staff_session_end(store, &seen, NULL), CD_ERR_NOT_FOUND);
    assert_int_equal(cd_staff_session_verify(store, cd_str_c(t3), &seen), CD_ERR_UNAUTHENTICATED);
    /* Revoked by an administrator: every live session of the account ends. */
    assert_int_equal(sign_in("ana", PW, &s1, t1), CD_OK);
    assert_int_equal(sign_in("ana", PW, &s2, t2), CD_OK);
    assert_int_equal(cd_staff_sessions_revoke(store, CD_STR("ana"), &cli, &ended), CD_OK);
    assert_int_equal(ended, 4); /* the two new ones and the two that had expired */
    assert_int_equal(cd_staff_session_verify(store, cd_str_c(t1), &seen), CD_ERR_UNAUTHENTICATED);
    assert_int_equal(cd_staff_session_verify(store, cd_str_c(t2), &seen), CD_ERR_UNAUTHENTICATED);
    /* Disabled: its sessions end and it cannot sign in, even with the right password. */
    assert_int_equal(sign_in("ana", PW, &s1, t1), CD_OK);
    assert_int_equal(cd_staff_disable(store, cd_str_c(s1.staff_id), &cli, &a), CD_OK);
    assert_string_equal(json_string_value(json_object_get(a, "status")), "disabled");
    json_decref(a);
    assert_int_equal(cd_staff_session_verify(store, cd_str_c(t1), &seen), CD_ERR_UNAUTHENTICATED);
    assert_int_equal(sign_in("ana", PW, &s1, t1), CD_ERR_UNAUTHENTICATED);
    assert_non_null(strstr(cd_err_detail(), "disabled"));
    assert_int_equal(cd_staff_disable(store, CD_STR("ana"), &cli, NULL), CD_ERR_CONFLICT);
    assert_int_equal(cd_staff_disable(store, CD_STR("nobody"), &cli, NULL), CD_ERR_NOT_FOUND);
    assert_int_equal(cd_staff_sessions_revoke(store, CD_STR("stf_01M996TJKS51HNX6C129KAH5YD"), &cli,
                                              &ended),
                     CD_ERR_NOT_FOUND);
}

static void csrf_token_belongs_to_its_session(void **state)
{
    char a[CD_STAFF_CSRF_LEN + 1], b[CD_STAFF_CSRF_LEN + 1];
    struct cd_str t1 = CD_STR("css_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    struct cd_str t2 = CD_STR("css_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB");

    assert_int_equal(cd_staff_csrf_token(t1, a), CD_OK);
    assert_int_equal(cd_staff_csrf_token(t2, b), CD_OK);
    assert_int_equal(strlen(a), CD_STAFF_CSRF_LEN);
    assert_string_not_equal(a, b);
    assert_true(cd_staff_csrf_check(t1, cd_str_c(a)));
    assert_false(cd_staff_csrf_check(t2, cd_str_c(a)));
    assert_false(cd_staff_csrf_check(t1, CD_STR("")));
    assert_false(cd_staff_csrf_check(t1, (struct cd_str){a, CD_STAFF_CSRF_LEN - 1}));
    /* The token is not the secret: knowing it does not give the session. */
    assert_null(strstr(t1.p, a));
}

static void the_ledger_records_each_step(void **state)
{
    struct cd_staff_session ses;
    char token[CD_STAFF_SESSION_LEN + 1];
    struct cd_audit_query q = {.limit = 10};
    json_t *list = NULL;
    static const char *const want[][2] = {{"staff.purpose", "ok"},
                                          {"staff.sign_in", "ok"},
                                          {"staff.sign_in", "denied"},
                                          {"staff.create", "ok"}};

    add("ana", CD_ROLE_AGENT);
    assert_int_equal(sign_in("ana", "wrong password", &ses, token), CD_ERR_UNAUTHENTICATED);
    assert_int_equal(sign_in("ana", PW, &ses, token), CD_OK);
    assert_int_equal(cd_staff_session_set_purpose(store, &ses, CD_PURPOSE_SERVICE, "req_1"),
                     CD_OK);
    assert_int_equal(cd_audit_list(store, &q, &list), CD_OK);
    json_t *items = json_object_get(list, "items");
    assert_int_equal(json_array_size(items), 4);
    for (size_t i = 0; i < 4; i++) {
        json_t *e = json_array_get(items, i);
        assert_string_equal(json_string_value(json_object_get(e, "action")), want[i][0]);
        assert_string_equal(json_string_value(json_object_get(e, "outcome")), want[i][1]);
    }
    /* The person is named by their account, never by the session's secret. */
    assert_string_equal(json_string_value(json_object_get(json_array_get(items, 0), "actor_token")),
                        ses.staff_id);
    assert_string_equal(json_string_value(json_object_get(json_array_get(items, 0), "purpose")),
                        "service");
    json_decref(list);
}

static void own_password_change_ends_the_other_sessions(void **state)
{
    struct cd_staff_session ses, other, seen;
    char token[CD_STAFF_SESSION_LEN + 1], token2[CD_STAFF_SESSION_LEN + 1];
    struct texts before = {0}, after = {0};
    int64_t ended = -1;

    add("ana", CD_ROLE_AGENT);
    assert_int_equal(sign_in("ana", PW, &ses, token), CD_OK);
    assert_int_equal(sign_in("ana", PW, &other, token2), CD_OK);
    assert_int_equal(cd_store_read(store, hashes_fn, &before), CD_OK);
    /* Refusals: a new password that breaks the rule or repeats the old, a wrong current one. */
    assert_int_equal(cd_staff_password_change(store, &ses, CD_STR(PW), CD_STR("short"), NULL,
                                              &ended),
                     CD_ERR_INVALID);
    assert_int_equal(cd_staff_password_change(store, &ses, CD_STR(PW), CD_STR(PW), NULL, &ended),
                     CD_ERR_INVALID);
    assert_int_equal(cd_staff_password_change(store, &ses, CD_STR(""), CD_STR("a new passphrase"),
                                              NULL, &ended),
                     CD_ERR_INVALID);
    assert_int_equal(cd_staff_password_change(store, &ses, CD_STR("wrong password"),
                                              CD_STR("a new passphrase"), NULL, &ended),
                     CD_ERR_FORBIDDEN);
    assert_int_equal(ended, -1);
    assert_int_equal(cd_staff_password_change(store, &ses, CD_STR(PW),
                                              CD_STR("a new passphrase"), NULL, &ended),
                     CD_OK);
    assert_int_equal(ended, 1);
    assert_int_equal(cd_store_read(store, hashes_fn, &after), CD_OK);
    assert_int_equal(strncmp(after.v[0], "$argon2id$", 10), 0);
    assert_string_not_equal(before.v[0], after.v[0]);
    assert_int_equal(cd_staff_session_verify(store, cd_str_c(token), &seen), CD_OK);
    assert_int_equal(cd_staff_session_verify(store, cd_str_c(token2), &seen),
                     CD_ERR_UNAUTHENTICATED);
    assert_int_equal(sign_in("ana", PW, &other, token2), CD_ERR_UNAUTHENTICATED);
    assert_int_equal(sign_in("ana", "a new passphrase", &other, token2), CD_OK);
    /* An ended session changes nothing. */
    assert_int_equal(cd_staff_session_end(store, &other, NULL), CD_OK);
    assert_int_equal(cd_staff_password_change(store, &other, CD_STR("a new passphrase"),
                                              CD_STR("yet another passphrase"), NULL, &ended),
                     CD_ERR_NOT_FOUND);
}

static void wrong_current_passwords_lock_the_account(void **state)
{
    struct cd_staff_session ses, other;
    char token[CD_STAFF_SESSION_LEN + 1];

    add("ana", CD_ROLE_AGENT);
    assert_int_equal(sign_in("ana", PW, &ses, token), CD_OK);
    for (int i = 0; i < CD_STAFF_MAX_FAILURES; i++)
        assert_int_equal(cd_staff_password_change(store, &ses, CD_STR("a guess at it"),
                                                  CD_STR("a new passphrase"), NULL, NULL),
                         CD_ERR_FORBIDDEN);
    /* Locked: even the right current password is refused now, and so is signing in. */
    assert_int_equal(cd_staff_password_change(store, &ses, CD_STR(PW), CD_STR("a new passphrase"),
                                              NULL, NULL),
                     CD_ERR_FORBIDDEN);
    assert_non_null(strstr(cd_err_detail(), "locked"));
    assert_int_equal(sign_in("ana", PW, &other, token), CD_ERR_UNAUTHENTICATED);
}

static void reset_forces_a_change_at_next_sign_in(void **state)
{
    struct cd_staff_session ses, seen;
    char token[CD_STAFF_SESSION_LEN + 1];
    json_t *a = NULL;
    const struct cd_staff_actor admin = {"tok_admin", "admin", "Ada", NULL};

    add("ana", CD_ROLE_AGENT);
    assert_int_equal(sign_in("ana", PW, &ses, token), CD_OK);
    assert_false(ses.must_change_password);
    assert_int_equal(cd_staff_password_reset(store, CD_STR("ana"), CD_STR("short"), &admin, &a),
                     CD_ERR_INVALID);
    assert_int_equal(cd_staff_password_reset(store, CD_STR("nobody"),
                                             CD_STR("temporary passphrase"), &admin, &a),
                     CD_ERR_NOT_FOUND);
    assert_int_equal(cd_staff_password_reset(store, CD_STR("ana"),
                                             CD_STR("temporary passphrase"), &admin, &a),
                     CD_OK);
    assert_true(json_is_true(json_object_get(a, "must_change_password")));
    assert_int_equal(json_integer_value(json_object_get(a, "sessions")), 0);
    json_decref(a);
    /* Its sessions ended; the temporary password opens a session marked to change it. */
    assert_int_equal(cd_staff_session_verify(store, cd_str_c(token), &seen),
                     CD_ERR_UNAUTHENTICATED);
    assert_int_equal(sign_in("ana", PW, &ses, token), CD_ERR_UNAUTHENTICATED);
    assert_int_equal(sign_in("ana", "temporary passphrase", &ses, token), CD_OK);
    assert_true(ses.must_change_password);
    assert_int_equal(cd_staff_session_verify(store, cd_str_c(token), &seen), CD_OK);
    assert_true(seen.must_change_password);
    assert_int_equal(cd_staff_password_change(store, &seen, CD_STR("temporary passphrase"),
                                              CD_STR("ana's own passphrase"), NULL, NULL),
                     CD_OK);
    assert_int_equal(cd_staff_session_verify(store, cd_str_c(token), &seen), CD_OK);
    assert_false(seen.must_change_password);
    /* Not one's own account, and not a disabled one. */
    const struct cd_staff_actor self = {seen.staff_id, "admin", "Ana", NULL};
    assert_int_equal(cd_staff_password_reset(store, CD_STR("ana"), CD_STR("temporary again!"),
                                             &self, NULL),
                     CD_ERR_INVALID);
    assert_int_equal(cd_staff_disable(store, CD_STR("ana"), &admin, NULL), CD_OK);
    assert_int_equal(cd_staff_password_reset(store, CD_STR("ana"), CD_STR("temporary again!"),
                                             &admin, NULL),
                     CD_ERR_CONFLICT);
}

/* Every allocation of a listing and of a session check fails in turn: an error, never a crash
 * or a leak. */
static void allocation_failures_are_errors(void **state)
{
    struct cd_staff_session ses;
    char token[CD_STAFF_SESSION_LEN + 1];
    bool done_list = false, done_verify = false;

    add("ana", CD_ROLE_AGENT);
    assert_int_equal(sign_in("ana", PW, &ses, token), CD_OK);
    for (int n = 1; n < 200 && !(done_list && done_verify); n++) {
        json_t *list = NULL;
        cd_alloc_fail_nth(n);
        enum cd_err e1 = cd_staff_list(store, &list);
        cd_alloc_fail_nth(0);
        assert_true(e1 == CD_OK || e1 == CD_ERR_NOMEM || e1 == CD_ERR_STORE);
        done_list |= e1 == CD_OK;
        json_decref(list);
        cd_alloc_fail_nth(n);
        enum cd_err e2 = cd_staff_session_verify(store, cd_str_c(token), &ses);
        cd_alloc_fail_nth(0);
        assert_true(e2 == CD_OK || e2 == CD_ERR_NOMEM || e2 == CD_ERR_STORE);
        done_verify |= e2 == CD_OK;
    }
    assert_true(done_list && done_verify);
}

int main(void)
{
    cd_json_init();
    cd_crypto_init();
    cd_log_set_level(CD_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(passwords_are_argon2id_hashes, setup, teardown),
        cmocka_unit_test_setup_teardown(accounts_are_validated, setup, teardown),
        cmocka_unit_test_setup_teardown(sign_in_opens_a_session_the_cookie_proves, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(wrong_and_unknown_look_alike, setup, teardown),
        cmocka_unit_test_setup_teardown(repeated_failures_lock_the_account, setup, teardown),
        cmocka_unit_test_setup_teardown(sessions_expire_end_and_are_revoked, setup, teardown),
        cmocka_unit_test(csrf_token_belongs_to_its_session),
        cmocka_unit_test_setup_teardown(the_ledger_records_each_step, setup, teardown),
        cmocka_unit_test_setup_teardown(own_password_change_ends_the_other_sessions, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(wrong_current_passwords_lock_the_account, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(reset_forces_a_change_at_next_sign_in, setup, teardown),
        cmocka_unit_test_setup_teardown(allocation_failures_are_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
