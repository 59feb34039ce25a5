/* Unit tests for src/portal on a real SQLite file: a code goes (sealed, through the outbox) only
 * to an identity on file while the answer is the same for any; signing in once with it; wrong,
 * malformed, expired and replayed codes; the per-hour cap; sessions that expire idle and at
 * their limit, end at sign-out and when revoked; anti-forgery tokens bound to their session. */
#include <unistd.h>
#include "unit.h"
#include "base/base_testing.h"
#include "core/core.h"
#include "crypto/crypto.h"
#include "outbox/outbox.h"
#include "outbox/outbox_int.h"
#include "portal/portal.h"

static char path[256];
static struct cd_store *store;
static struct cd_core *core;
static struct cd_outbox *ob;
static const struct cd_actor staff = {"tok_test", "compliance", "unit test", "req_test",
                                      "legal_obligation", true, false};
static int64_t fake_now;

static int64_t fake_clock(void)
{
    return fake_now;
}

static int setup(void **state)
{
    uint8_t master[32];

    snprintf(path, sizeof path, "/tmp/candor-test-portal-%d.db", (int)getpid());
    unlink(path);
    cd_random_bytes(master, sizeof master);
    if (cd_store_open(path, &store) != CD_OK || cd_core_open(store, master, &core) != CD_OK ||
        cd_outbox_open(store, master, &ob) != CD_OK)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    cd_clock_override(NULL);
    cd_outbox_close(ob);
    cd_core_close(core);
    cd_store_close(store);
    unit_db_remove(path);
    return 0;
}

static void new_customer(const char *email, char id[CD_ID_MAX])
{
    json_t *body = json_pack("{s:s,s:[{s:s,s:s}]}", "jurisdiction", "DE", "identities", "type",
                             "email", "value", email);
    json_t *c = NULL;
    bool replayed;

    assert_int_equal(cd_core_customer_create(core, &staff, body, NULL, CD_FIELDS_REFERENCE, &c,
                                             &replayed), CD_OK);
    snprintf(id, CD_ID_MAX, "%s", json_string_value(json_object_get(c, "id")));
    json_decref(c);
    json_decref(body);
}

struct count_q {
    const char *sql, *arg;
    int64_t n;
};

static enum cd_err count_fn(struct cd_tx *tx, void *ctx)
{
    struct count_q *q = ctx;
    struct cd_val p[] = {q->arg ? CD_VCSTR(q->arg) : CD_VNULL};
    return cd_tx_int(tx, q->sql, p, q->arg ? 1 : 0, &q->n);
}

static int64_t count(const char *sql, const char *arg)
{
    struct count_q q = {sql, arg, -1};
    assert_int_equal(cd_store_read(store, count_fn, &q), CD_OK);
    return q.n;
}

/* Asks for a code for email; returns the challenge id (static). */
static const char *ask(const char *email)
{
    static char id[CD_ID_MAX];
    json_t *body = json_pack("{s:s,s:s}", "type", "email", "value", email), *out = NULL;

    assert_int_equal(cd_portal_code_send(store, core, body, "req_t", &out), CD_OK);
    /* The same two members whoever asks. */
    assert_int_equal(json_object_size(out), 2);
    assert_non_null(json_object_get(out, "expires_at"));
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(out, "challenge_id")));
    json_decref(body);
    json_decref(out);
    return id;
}

/* What a receiver subscribed to customer.sign_in_code would get: the newest event's sealed
 * members, opened with the outbox's key. */
struct sealed {
    char customer[CD_ID_MAX], event[CD_ID_MAX];
    struct cd_buf blob;
};

static enum cd_err sealed_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct sealed *s = ctx;
    snprintf(s->event, sizeof s->event, "%.*s", (int)c[0].len, (const char *)c[0].p);
    snprintf(s->customer, sizeof s->customer, "%.*s", (int)c[1].len, (const char *)c[1].p);
    cd_buf_reset(&s->blob);
    return cd_buf_append(&s->blob, c[2].p, c[2].len);
}

static enum cd_err sealed_fn(struct cd_tx *tx, void *ctx)
{
    return cd_tx_exec(tx, "SELECT id, customer_id, personal FROM outbox_events"
                          " WHERE type = 'customer.sign_in_code' ORDER BY seq DESC LIMIT 1",
                      NULL, 0, sealed_row, ctx, NULL);
}

static void delivered(const char *challenge, char code[16], char to[64])
{
    struct sealed s = {.blob = CD_BUF_INIT(4096)};
    struct cd_buf plain = CD_BUF_INIT(4096);
    char field[CD__OUTBOX_FIELD_MAX];

    assert_int_equal(cd_store_read(store, sealed_fn, &s), CD_OK);
    cd__outbox_field(s.event, field);
    assert_int_equal(cd_crypto_open(ob->payload_key, cd_str_c(s.customer), cd_str_c(field),
                                    (struct cd_str){s.blob.p, s.blob.len}, &plain), CD_OK);
    json_t *m = json_loadb(plain.p, plain.len, 0, NULL);
    assert_non_null(m);
    snprintf(code, 16, "%s", json_string_value(json_object_get(m, "code")));
    snprintf(to, 64, "%s", json_string_value(json_object_get(m, "to")));
    json_decref(m);
    cd_buf_free(&plain);
    cd_buf_free(&s.blob);
    /* The challenge is named in the clear part of the event. */
    assert_int_equal(count("SELECT count(*) FROM outbox_events WHERE type ="
                           " 'customer.sign_in_code' AND payload LIKE '%' || $1 || '%'",
                           challenge), 1);
}

/* Signs in; returns the error and the outcome's name ("signed_in" on success). */
static enum cd_err sign_in(const char *challenge, const char *code, char outcome[32],
                           struct cd_portal_session *ses, char token[CD_PORTAL_SESSION_LEN + 1])
{
    json_t *body = json_pack("{s:s,s:s}", "challenge_id", challenge, "code", code), *f = NULL;
    struct cd_portal_session tmp;
    char tok[CD_PORTAL_SESSION_LEN + 1];
    enum cd_err err = cd_portal_sign_in(store, body, "req_t", ses ? ses : &tmp,
                                        token ? token : tok, &f);

    json_decref(body);
    snprintf(outcome, 32, "%s", err == CD_OK ? "signed_in" : f ? json_string_value(
                                                                     json_object_get(f, "outcome"))
                                                               : "-");
    json_decref(f);
    return err;
}

static const char *other(const char *code)
{
    static char o[16];
    snprintf(o, sizeof o, "%08d", (int)((strtol(code, NULL, 10) + 1) % 100000000));
    return o;
}

static void a_code_goes_only_to_an_identity_on_file(void **state)
{
    char cid[CD_ID_MAX], code[16], to[64], outcome[32];
    const char *sql = "SELECT count(*) FROM outbox_events WHERE type = 'customer.sign_in_code'";

    new_customer("ana@example.org", cid);
    char known[CD_ID_MAX];
    snprintf(known, sizeof known, "%s", ask("Ana@Example.org"));
    assert_int_equal(count(sql, NULL), 1);
    delivered(known, code, to);
    assert_string_equal(to, "ana@example.org"); /* where it is kept, normalised */
    assert_int_equal(strlen(code), 8);
    /* An unknown identity gets a challenge, and no code goes anywhere. */
    char unknown[CD_ID_MAX];
    snprintf(unknown, sizeof unknown, "%s", ask("nobody@example.org"));
    assert_int_equal(count(sql, NULL), 1);
    assert_int_equal(count("SELECT count(*) FROM portal_challenges WHERE id = $1"
                           " AND customer_id IS NULL", unknown), 1);
    /* No code opens it, not even one sent to someone else. */
    assert_int_equal(sign_in(unknown, code, outcome, NULL, NULL), CD_ERR_UNAUTHENTICATED);
    assert_string_equal(outcome, "mismatch");
    /* Bad input. */
    static const char *const bad[] = {
        "{\"type\":\"pigeon\",\"value\":\"a@b.c\"}", "{\"type\":\"email\"}",
        "{\"type\":\"email\",\"value\":3}", "{\"type\":\"email\",\"value\":\"a@b.c\",\"x\":1}",
        "{\"type\":\"email\",\"value\":\"no at sign\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *b = json_loads(bad[i], 0, NULL), *o = NULL;
        assert_int_equal(cd_portal_code_send(store, core, b, NULL, &o), CD_ERR_INVALID);
        json_decref(b);
    }
    assert_int_equal(count("SELECT count(*) FROM portal_challenges", NULL), 2);
}

static void a_code_signs_in_once(void **state)
{
    char cid[CD_ID_MAX], code[16], to[64], outcome[32], token[CD_PORTAL_SESSION_LEN + 1];
    char ch[CD_ID_MAX], csrf[CD_PORTAL_CSRF_LEN + 1];
    struct cd_portal_session ses, got;

    new_customer("ben@example.org", cid);
    snprintf(ch, sizeof ch, "%s", ask("ben@example.org"));
    delivered(ch, code, to);
    assert_int_equal(sign_in(ch, "1234567", outcome, NULL, NULL), CD_ERR_INVALID);
    assert_int_equal(sign_in(ch, other(code), outcome, NULL, NULL), CD_ERR_UNAUTHENTICATED);
    assert_string_equal(outcome, "mismatch");
    assert_int_equal(sign_in(ch, code, outcome, &ses, token), CD_OK);
    assert_string_equal(ses.customer_id, cid);
    assert_memory_equal(token, "cps_", 4);
    assert_int_equal(strlen(token), CD_PORTAL_SESSION_LEN);
    /* Replayed: the code went with the decision. */
    assert_int_equal(sign_in(ch, code, outcome, NULL, NULL), CD_ERR_UNAUTHENTICATED);
    assert_string_equal(outcome, "none_pending");
    assert_int_equal(count("SELECT count(*) FROM portal_challenges WHERE id = $1"
                           " AND code_hash IS NULL AND hash_key IS NULL", ch), 1);
    /* The cookie's secret opens the session; only its hash is kept. */
    assert_int_equal(cd_portal_session_verify(store, cd_str_c(token), &got), CD_OK);
    assert_string_equal(got.id, ses.id);
    assert_string_equal(got.customer_id, cid);
    token[10] ^= 1;
    assert_int_equal(cd_portal_session_verify(store, cd_str_c(token), &got),
                     CD_ERR_UNAUTHENTICATED);
    token[10] ^= 1;
    assert_int_equal(cd_portal_session_verify(store, CD_STR("cps_short"), &got),
                     CD_ERR_UNAUTHENTICATED);
    /* Its anti-forgery token is its own. */
    assert_int_equal(cd_portal_csrf_token(cd_str_c(token), csrf), CD_OK);
    assert_true(cd_portal_csrf_check(cd_str_c(token), cd_str_c(csrf)));
    csrf[0] = csrf[0] == 'A' ? 'B' : 'A';
    assert_false(cd_portal_csrf_check(cd_str_c(token), cd_str_c(csrf)));
    assert_false(cd_portal_csrf_check(cd_str_c(token), CD_STR("")));
    /* Signing out ends it, once. */
    assert_int_equal(cd_portal_session_end(store, &ses, NULL), CD_OK);
    assert_int_equal(cd_portal_session_verify(store, cd_str_c(token), &got),
                     CD_ERR_UNAUTHENTICATED);
    assert_int_equal(cd_portal_session_end(store, &ses, NULL), CD_ERR_NOT_FOUND);
    /* The ledger has the sign-in and the sign-out, never the code nor the secret. */
    assert_int_equal(count("SELECT count(*) FROM audit_events WHERE customer_id = $1 AND action"
                           " IN ('portal.sign_in_code', 'portal.sign_in', 'portal.sign_out')",
                           cid), 3);
    assert_int_equal(count("SELECT count(*) FROM audit_events WHERE"
                           " instr(CAST(entry AS TEXT), $1) > 0", code), 0);
    assert_int_equal(count("SELECT count(*) FROM audit_events WHERE"
                           " instr(CAST(entry AS TEXT), $1) > 0", token + 4), 0);
}

static void attempts_and_time_run_out(void **state)
{
    char cid[CD_ID_MAX], code[16], to[64], outcome[32], ch[CD_ID_MAX];
    char token[CD_PORTAL_SESSION_LEN + 1];
    struct cd_portal_session ses, got;

    fake_now = cd_now_ms();
    cd_clock_override(fake_clock);
    new_customer("cleo@example.org", cid);
    snprintf(ch, sizeof ch, "%s", ask("cleo@example.org"));
    delivered(ch, code, to);
    for (int i = 4; i >= 0; i--) {
        assert_int_equal(sign_in(ch, other(code), outcome, NULL, NULL), CD_ERR_UNAUTHENTICATED);
        assert_string_equal(outcome, i ? "mismatch" : "attempts_exhausted");
    }
    assert_int_equal(sign_in(ch, code, outcome, NULL, NULL), CD_ERR_UNAUTHENTICATED);
    assert_string_equal(outcome, "none_pending");
    /* Ten minutes on, the right code is void. */
    snprintf(ch, sizeof ch, "%s", ask("cleo@example.org"));
    delivered(ch, code, to);
    fake_now += CD_PORTAL_CODE_TTL_MS;
    assert_int_equal(sign_in(ch, code, outcome, NULL, NULL), CD_ERR_UNAUTHENTICATED);
    assert_string_equal(outcome, "expired");
    /* A newer code voids the older. */
    char first[CD_ID_MAX], first_code[16];
    snprintf(first, sizeof first, "%s", ask("cleo@example.org"));
    delivered(first, first_code, to);
    snprintf(ch, sizeof ch, "%s", ask("cleo@example.org"));
    delivered(ch, code, to);
    assert_int_equal(sign_in(first, first_code, outcome, NULL, NULL), CD_ERR_UNAUTHENTICATED);
    assert_string_equal(outcome, "none_pending");
    /* A session idle for fifteen minutes is over; so is one used for two hours. */
    assert_int_equal(sign_in(ch, code, outcome, &ses, token), CD_OK);
    fake_now += CD_PORTAL_SESSION_IDLE_MS - 1000;
    assert_int_equal(cd_portal_session_verify(store, cd_str_c(token), &got), CD_OK);
    fake_now += CD_PORTAL_SESSION_IDLE_MS + 1;
    assert_int_equal(cd_portal_session_verify(store, cd_str_c(token), &got),
                     CD_ERR_UNAUTHENTICATED);
    assert_non_null(strstr(cd_err_detail(), "expired"));
    /* Five codes in an hour at most: a sixth sends nothing, and says nothing. */
    fake_now += 3600 * 1000;
    for (int i = 0; i < CD_PORTAL_CODES_PER_HOUR; i++)
        ask("cleo@example.org");
    int64_t sent = count("SELECT count(*) FROM outbox_events WHERE customer_id = $1", cid);
    ask("cleo@example.org");
    assert_int_equal(count("SELECT count(*) FROM outbox_events WHERE customer_id = $1", cid),
                     sent);
    assert_int_equal(count("SELECT count(*) FROM audit_events WHERE customer_id = $1 AND"
                           " action = 'portal.sign_in_code'"
                           " AND instr(CAST(entry AS TEXT), 'rate_limited') > 0", cid), 1);
}

static void the_longest_session_ends_at_its_limit(void **state)
{
    char cid[CD_ID_MAX], code[16], to[64], outcome[32], ch[CD_ID_MAX];
    char token[CD_PORTAL_SESSION_LEN + 1];
    struct cd_portal_session ses, got;

    fake_now = cd_now_ms();
    cd_clock_override(fake_clock);
    new_customer("dan@example.org", cid);
    snprintf(ch, sizeof ch, "%s", ask("dan@example.org"));
    delivered(ch, code, to);
    assert_int_equal(sign_in(ch, code, outcome, &ses, token), CD_OK);
    /* Used every ten minutes, it still ends two hours after sign-in. */
    int64_t start = fake_now;
    while (fake_now + 10 * 60 * 1000 <= start + CD_PORTAL_SESSION_MAX_MS) {
        fake_now += 10 * 60 * 1000;
        assert_int_equal(cd_portal_session_verify(store, cd_str_c(token), &got), CD_OK);
        assert_true(got.expires_at <= start + CD_PORTAL_SESSION_MAX_MS);
    }
    fake_now = start + CD_PORTAL_SESSION_MAX_MS + 1;
    assert_int_equal(cd_portal_session_verify(store, cd_str_c(token), &got),
                     CD_ERR_UNAUTHENTICATED);
}

static void staff_revoke_every_session(void **state)
{
    char cid[CD_ID_MAX], code[16], to[64], outcome[32], ch[CD_ID_MAX];
    char t1[CD_PORTAL_SESSION_LEN + 1], t2[CD_PORTAL_SESSION_LEN + 1];
    struct cd_portal_session s1, s2, got;
    int64_t ended = -1;

    new_customer("eve@example.org", cid);
    for (int i = 0; i < 2; i++) {
        snprintf(ch, sizeof ch, "%s", ask("eve@example.org"));
        delivered(ch, code, to);
        assert_int_equal(sign_in(ch, code, outcome, i ? &s2 : &s1, i ? t2 : t1), CD_OK);
    }
    assert_int_equal(cd_portal_sessions_revoke(store, &staff, cd_str_c(cid), &ended), CD_OK);
    assert_int_equal(ended, 2);
    assert_int_equal(cd_portal_session_verify(store, cd_str_c(t1), &got),
                     CD_ERR_UNAUTHENTICATED);
    assert_int_equal(cd_portal_session_verify(store, cd_str_c(t2), &got),
                     CD_ERR_UNAUTHENTICATED);
    assert_int_equal(cd_portal_sessions_revoke(store, &staff, CD_STR("nonsense"), &ended),
                     CD_ERR_NOT_FOUND);
    assert_int_equal(count("SELECT count(*) FROM audit_events WHERE customer_id = $1"
                           " AND action = 'portal.revoke'", cid), 1);
    /* The actor a session reads as. */
    struct cd_actor a;
    cd_portal_actor(&s1, "req_x", &a);
    assert_string_equal(a.role, "customer");
    assert_string_equal(a.purpose, "legal_obligation");
    assert_string_equal(a.token_id, s1.id);
    assert_true(a.restricted_ok);
    assert_false(a.needs_consent);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_code_goes_only_to_an_identity_on_file, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_code_signs_in_once, setup, teardown),
        cmocka_unit_test_setup_teardown(attempts_and_time_run_out, setup, teardown),
        cmocka_unit_test_setup_teardown(the_longest_session_ends_at_its_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(staff_revoke_every_session, setup, teardown),
    };
    cd_json_init();
    return cmocka_run_group_tests_name("portal", tests, NULL, NULL);
}
