/* Unit tests for src/outbox on a real SQLite file: the event-type table, enqueueing inside the
 * caller's transaction (checked payloads, personal members sealed, one delivery per
 * subscription), and every allocation failure of an enqueue. */
#include <unistd.h>
#include "unit.h"
#include "base/base_testing.h"
#include "outbox/outbox.h"
#include "outbox/outbox_int.h"
#include "policy/policy.h"

static char path[256];
static struct cd_store *store;
static struct cd_outbox *outbox;
static struct cd_policy *policy;
static uint8_t master[32];
static const struct cd_outbox_actor admin = {"tok_admin", "admin", "unit test", "req_test"};
static int64_t fake_now;

static int64_t fake_clock(void)
{
    return fake_now;
}

static int setup(void **state)
{
    snprintf(path, sizeof path, "/tmp/candor-test-outbox-%d.db", (int)getpid());
    unlink(path);
    cd_random_bytes(master, sizeof master);
    if (cd_crypto_init() != CD_OK || cd_store_open(path, &store) != CD_OK ||
        cd_outbox_open(store, master, &outbox) != CD_OK || cd_policy_load(NULL, &policy) != CD_OK)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    cd_clock_override(NULL);
    cd_outbox_close(outbox);
    cd_store_close(store);
    cd_policy_free(policy);
    unit_db_remove(path);
    return 0;
}

static const char CUS[] = "cus_01HZZZZZZZZZZZZZZZZZZZZZ00";
static const char CUS2[] = "cus_01HZZZZZZZZZZZZZZZZZZZZY00";

struct enq {
    const char *type;
    const char *customer;
    json_t *payload;
    char id[CD_ID_MAX];
    bool fail_after; /* fail the write after enqueueing: the event must go with it */
};

static enum cd_err enq_fn(struct cd_tx *tx, void *ctx)
{
    struct enq *e = ctx;
    enum cd_err err = cd_outbox_enqueue(tx, e->type, cd_str_c(e->customer), e->payload, e->id);

    if (err == CD_OK && e->fail_after)
        return cd_err_set(CD_ERR_CONFLICT, "the change failed");
    return err;
}

static enum cd_err enqueue(const char *type, const char *customer, const char *payload,
                           char id[CD_ID_MAX])
{
    struct enq e = {type, customer, NULL, "", false};
    enum cd_err err;

    if (payload)
        assert_int_equal(cd_json_parse(payload, strlen(payload), &e.payload), CD_OK);
    err = cd_store_write(store, enq_fn, &e);
    json_decref(e.payload);
    if (id)
        memcpy(id, e.id, CD_ID_MAX);
    return err;
}

static enum cd_err count_fn(void *ctx, const struct cd_val *cols, size_t n)
{
    *(int64_t *)ctx = cols[0].i;
    return CD_OK;
}

struct q {
    const char *sql;
    const char *arg;
    int64_t n;
};

static enum cd_err q_fn(struct cd_tx *tx, void *ctx)
{
    struct q *q = ctx;
    struct cd_val p[] = {CD_VCSTR(q->arg ? q->arg : "")};
    return cd_tx_exec(tx, q->sql, p, q->arg ? 1 : 0, count_fn, &q->n, NULL);
}

static int64_t count(const char *sql, const char *arg)
{
    struct q q = {sql, arg, -1};
    assert_int_equal(cd_store_read(store, q_fn, &q), CD_OK);
    return q.n;
}

static void the_table_is_consistent(void **state)
{
    size_t n = 0;
    const struct cd_outbox_event_type *t = cd_outbox_event_types(&n);
    json_t *doc = NULL;

    assert_true(n >= 10);
    for (size_t i = 0; i < n; i++) {
        assert_ptr_equal(cd_outbox_event_type(cd_str_c(t[i].name)), &t[i]);
        assert_true(t[i].nmembers > 0);
        for (size_t j = 0; j < t[i].nmembers; j++) {
            /* customer_id travels in every event about a customer, never as a member. */
            assert_string_not_equal(t[i].members[j].name, "customer_id");
            assert_true(t[i].members[j].category != 0);
        }
        /* Recipients are told about what happened to one customer's data. */
        if (t[i].tell_recipients)
            assert_true(t[i].customer);
    }
    assert_null(cd_outbox_event_type(CD_STR("customer.deleted")));
    assert_int_equal(cd_outbox_event_types_json(&doc), CD_OK);
    assert_int_equal(json_array_size(json_object_get(doc, "items")), n);
    json_decref(doc);
}

static void enqueue_checks_the_payload(void **state)
{
    char id[CD_ID_MAX];

    assert_int_equal(enqueue("customer.deleted", CUS, NULL, id), CD_ERR_INVALID);
    assert_non_null(strstr(cd_err_detail(), "no event type"));
    /* About a customer: the id is required, and must be one. */
    assert_int_equal(enqueue("customer.erased", NULL, "{\"erased_at\":\"2026-01-01T00:00:00Z\"}",
                             id),
                     CD_ERR_INVALID);
    assert_int_equal(enqueue("customer.erased", "ana@example.com",
                             "{\"erased_at\":\"2026-01-01T00:00:00Z\"}", id),
                     CD_ERR_INVALID);
    /* Undeclared members are refused: nothing reaches a receiver that the table does not
     * name, so no personal data slips into a payload by accident. */
    assert_int_equal(enqueue("customer.erased", CUS,
                             "{\"erased_at\":\"2026-01-01T00:00:00Z\",\"email\":\"a@b.c\"}", id),
                     CD_ERR_INVALID);
    assert_non_null(strstr(cd_err_detail(), "'email' is not a member of customer.erased"));
    assert_int_equal(enqueue("customer.erased", CUS, "{}", id), CD_ERR_INVALID);
    assert_non_null(strstr(cd_err_detail(), "needs 'erased_at'"));
    assert_int_equal(enqueue("customer.restricted", CUS, "{\"restricted\":\"yes\"}", id),
                     CD_ERR_INVALID);
    assert_non_null(strstr(cd_err_detail(), "must be a boolean"));
    assert_int_equal(enqueue("customer.erased", CUS, "[1]", id), CD_ERR_INVALID);
    assert_int_equal(count("SELECT count(*) FROM outbox_events", NULL), 0);
    /* An event not about one customer may still name one. */
    assert_int_equal(enqueue("case.breached", NULL,
                             "{\"case_id\":\"case_1\",\"clock\":\"resolution\","
                             "\"due_at\":\"2026-01-01T00:00:00Z\","
                             "\"breached_at\":\"2026-01-01T00:00:01Z\"}",
                             id),
                     CD_OK);
    assert_true(cd_id_valid(cd_str_c(id), "evt"));
    assert_int_equal(count("SELECT count(*) FROM outbox_events WHERE customer_id IS NULL", NULL),
                     1);
}

static void an_event_exists_iff_its_change_committed(void **state)
{
    struct enq e = {"customer.restricted", CUS, json_pack("{s:b}", "restricted", 1), "", true};

    assert_int_equal(cd_store_write(store, enq_fn, &e), CD_ERR_CONFLICT);
    assert_int_equal(count("SELECT count(*) FROM outbox_events", NULL), 0);
    e.fail_after = false;
    assert_int_equal(cd_store_write(store, enq_fn, &e), CD_OK);
    json_decref(e.payload);
    assert_int_equal(count("SELECT count(*) FROM outbox_events WHERE id = $1", e.id), 1);
}

struct blob {
    struct cd_buf b;
    char payload[512];
};

static enum cd_err blob_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct blob *b = ctx;
    snprintf(b->payload, sizeof b->payload, "%.*s", (int)cols[0].len, (const char *)cols[0].p);
    if (cols[1].type == CD_VAL_BLOB)
        return cd_buf_append(&b->b, cols[1].p, cols[1].len);
    return CD_OK;
}

static enum cd_err blob_fn(struct cd_tx *tx, void *ctx)
{
    struct cd_val p[] = {CD_VCSTR(CUS)};
    return cd_tx_exec(tx,
                      "SELECT payload, personal FROM outbox_events WHERE customer_id = $1"
                      " ORDER BY seq DESC LIMIT 1",
                      p, 1, blob_row, ctx, NULL);
}

static void personal_members_are_sealed(void **state)
{
    static const char payload[] = "{\"request_id\":\"dsar_1\",\"channel\":\"email\","
                                  "\"to\":\"ana@example.com\",\"code\":\"482913\","
                                  "\"expires_at\":\"2026-01-01T00:15:00Z\"}";
    struct blob b = {CD_BUF_INIT(4096), ""};
    struct cd_buf plain = CD_BUF_INIT(4096);
    char id[CD_ID_MAX], field[CD__OUTBOX_FIELD_MAX];

    assert_int_equal(enqueue("dsar.verification_code", CUS, payload, id), CD_OK);
    assert_int_equal(cd_store_read(store, blob_fn, &b), CD_OK);
    /* The clear part holds the reference members only. */
    assert_null(strstr(b.payload, "ana@example.com"));
    assert_null(strstr(b.payload, "482913"));
    assert_non_null(strstr(b.payload, "\"request_id\":\"dsar_1\""));
    assert_null(memmem(b.b.p, b.b.len, "482913", 6));
    /* The sealed part opens under the outbox's key, bound to the customer and the event. */
    cd__outbox_field(id, field);
    assert_int_equal(cd_crypto_open(outbox->payload_key, cd_str_c(CUS), cd_str_c(field),
                                    (struct cd_str){b.b.p, b.b.len}, &plain),
                     CD_OK);
    assert_non_null(strstr(plain.p, "\"code\":\"482913\""));
    assert_non_null(strstr(plain.p, "\"to\":\"ana@example.com\""));
    cd_buf_free(&plain);
    assert_int_equal(cd_crypto_open(outbox->payload_key, cd_str_c(CUS2),
                                    cd_str_c(field), (struct cd_str){b.b.p, b.b.len}, &plain),
                     CD_ERR_CRYPTO);
    cd_buf_free(&plain);
    cd_buf_free(&b.b);
    /* Without an outbox on the store there is no key: refused, nothing written. */
    cd_outbox_close(outbox);
    outbox = NULL;
    assert_int_equal(enqueue("dsar.verification_code", CUS, payload, id), CD_ERR_CRYPTO);
    assert_int_equal(enqueue("customer.restricted", CUS, "{\"restricted\":true}", id), CD_OK);
    assert_int_equal(count("SELECT count(*) FROM outbox_events", NULL), 2);
}

static enum cd_err sub_fn(struct cd_tx *tx, void *ctx)
{
    const char **s = ctx;
    struct cd_val p[] = {CD_VCSTR(s[0]), CD_VCSTR(s[1]), CD_VCSTR(s[2])};
    return cd_tx_exec(tx,
                      "INSERT INTO webhook_subscriptions(id, url, description, events, purpose,"
                      " secret, status, created_at, updated_at, created_by, deleted_at)"
                      " VALUES($1, 'http://127.0.0.1:1/', '', $2, 'service', x'00', 'active',"
                      " 0, 0, 'tok_t', CASE WHEN $3 = 'deleted' THEN 1 ELSE NULL END)",
                      p, 3, NULL, NULL, NULL);
}

static void one_delivery_per_subscription(void **state)
{
    const char *subs[][3] = {
        {"whs_01HZZZZZZZZZZZZZZZZZZZZ010", "[\"customer.erased\"]", ""},
        {"whs_01HZZZZZZZZZZZZZZZZZZZZ020", "[\"*\"]", ""},
        {"whs_01HZZZZZZZZZZZZZZZZZZZZ030", "[\"consent.changed\"]", ""},
        {"whs_01HZZZZZZZZZZZZZZZZZZZZ040", "[\"*\"]", "deleted"},
    };
    char id[CD_ID_MAX];

    for (size_t i = 0; i < 4; i++)
        assert_int_equal(cd_store_write(store, sub_fn, (void *)subs[i]), CD_OK);
    assert_int_equal(enqueue("customer.erased", CUS, "{\"erased_at\":\"2026-01-01T00:00:00Z\"}",
                             id),
                     CD_OK);
    assert_int_equal(count("SELECT count(*) FROM webhook_deliveries", NULL), 2);
    assert_int_equal(count("SELECT count(*) FROM webhook_deliveries WHERE subscription_id IN"
                           " ('whs_01HZZZZZZZZZZZZZZZZZZZZ010', 'whs_01HZZZZZZZZZZZZZZZZZZZZ020')"
                           " AND status = 'pending' AND customer_id = $1",
                           CUS),
                     2);
    assert_int_equal(enqueue("webhook.test", NULL,
                             "{\"subscription_id\":\"whs_01HZZZZZZZZZZZZZZZZZZZZ010\"}", id),
                     CD_OK);
    assert_int_equal(count("SELECT count(*) FROM webhook_deliveries", NULL), 3);
}

static void enqueue_survives_every_allocation_failure(void **state)
{
    static const char payload[] = "{\"request_id\":\"dsar_1\",\"channel\":\"email\","
                                  "\"to\":\"ana@example.com\",\"code\":\"482913\","
                                  "\"expires_at\":\"2026-01-01T00:15:00Z\"}";
    int64_t before = count("SELECT count(*) FROM outbox_events", NULL);
    size_t ok = 0;

    for (long n = 1; n < 200; n++) {
        struct enq e = {"dsar.verification_code", CUS, NULL, "", false};
        assert_int_equal(cd_json_parse(payload, strlen(payload), &e.payload), CD_OK);
        cd_alloc_fail_nth(n);
        enum cd_err err = cd_store_write(store, enq_fn, &e);
        bool hit = cd_alloc_fault_hit();
        cd_alloc_fail_nth(0);
        json_decref(e.payload);
        if (err == CD_OK) {
            ok++;
            if (!hit)
                break;
        } else {
            assert_int_equal(err, CD_ERR_NOMEM);
        }
    }
    /* Every failed attempt left nothing; each success one event. */
    assert_int_equal(count("SELECT count(*) FROM outbox_events", NULL), before + (int64_t)ok);
}

/* ---- signatures and backoff ---- */

static void signatures_follow_standard_webhooks(void **state)
{
    /* The example of the Standard Webhooks specification. */
    uint8_t key[64];
    size_t n = 0;
    char sig[CD__OUTBOX_SIG_MAX];

    assert_int_equal(cd_b64_decode(CD_STR("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), key, sizeof key, &n),
                     CD_OK);
    cd__outbox_sign(key, n, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                    CD_STR("{\"test\": 2432232314}"), sig);
    assert_string_equal(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    cd__outbox_sign(key, n, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331,
                    CD_STR("{\"test\": 2432232314}"), sig);
    assert_string_not_equal(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    assert_int_equal(cd_b64_decode(CD_STR("not base64!"), key, sizeof key, &n), CD_ERR_INVALID);
}

static void backoff_is_full_jitter_under_a_cap(void **state)
{
    int64_t seen_max = 0;

    for (unsigned attempt = 1; attempt <= 40; attempt++)
        for (int i = 0; i < 200; i++) {
            int64_t v = cd_outbox_backoff_ms(attempt, 1000, 21600000);
            int64_t cap = attempt < 20 ? (int64_t)1000 << (attempt - 1) : 21600000;
            if (cap > 21600000)
                cap = 21600000;
            assert_true(v >= 0 && v <= cap);
            if (attempt == 1 && v > seen_max)
                seen_max = v;
        }
    /* Jitter: the first retry's waits spread over the range, not all at its top. */
    assert_true(seen_max > 500);
    assert_true(cd_outbox_backoff_ms(UINT32_MAX, 1, 5) <= 5);
}

/* ---- subscriptions ---- */

static enum cd_err sub_create(const char *body, json_t **out)
{
    json_t *b = NULL;
    enum cd_err err;

    assert_int_equal(cd_json_parse(body, strlen(body), &b), CD_OK);
    *out = NULL;
    err = cd_outbox_subscription_create(outbox, policy, &admin, b, out);
    json_decref(b);
    return err;
}

static void subscriptions_are_checked_and_keep_their_secret_sealed(void **state)
{
    static const char *const bad[] = {
        "{\"url\":\"ftp://127.0.0.1/\",\"events\":[\"*\"],\"purpose\":\"service\"}",
        "{\"url\":\"http://example.com/hook\",\"events\":[\"*\"],\"purpose\":\"service\"}",
        "{\"url\":\"https://user:pw@example.com/\",\"events\":[\"*\"],\"purpose\":\"service\"}",
        "{\"url\":\"https://example.com/#x\",\"events\":[\"*\"],\"purpose\":\"service\"}",
        "{\"url\":\"not a url\",\"events\":[\"*\"],\"purpose\":\"service\"}",
        "{\"url\":\"https://example.com/\",\"events\":[],\"purpose\":\"service\"}",
        "{\"url\":\"https://example.com/\",\"events\":[\"nope\"],\"purpose\":\"service\"}",
        "{\"url\":\"https://example.com/\",\"events\":[\"*\",\"*\"],\"purpose\":\"service\"}",
        "{\"url\":\"https://example.com/\",\"events\":\"*\",\"purpose\":\"service\"}",
        "{\"url\":\"https://example.com/\",\"events\":[\"*\"],\"purpose\":\"gossip\"}",
        /* The policy does not let integrations declare legal_obligation. */
        "{\"url\":\"https://example.com/\",\"events\":[\"*\"],\"purpose\":\"legal_obligation\"}",
        "{\"url\":\"https://example.com/\",\"events\":[\"*\"],\"purpose\":\"service\","
        "\"status\":\"off\"}",
        "{\"url\":\"https://example.com/\",\"events\":[\"*\"],\"purpose\":\"service\",\"x\":1}",
        "{\"events\":[\"*\"],\"purpose\":\"service\"}",
    };
    json_t *s = NULL, *g = NULL, *r = NULL;
    uint8_t raw[CD_OUTBOX_SECRET_LEN], shown[64];
    size_t n = 0;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(sub_create(bad[i], &s), CD_ERR_INVALID);
    assert_int_equal(count("SELECT count(*) FROM webhook_subscriptions", NULL), 0);
    assert_int_equal(sub_create("{\"url\":\"http://[::1]:9/hook\",\"events\":[\"customer.erased\"],"
                                "\"purpose\":\"service\",\"description\":\"CRM\"}",
                                &s),
                     CD_OK);
    const char *id = json_string_value(json_object_get(s, "id"));
    const char *secret = json_string_value(json_object_get(s, "secret"));
    assert_true(cd_id_valid(cd_str_c(id), "whs"));
    assert_true(strncmp(secret, "whsec_", 6) == 0);
    assert_int_equal(cd_b64_decode(cd_str_c(secret + 6), shown, sizeof shown, &n), CD_OK);
    assert_int_equal(n, CD_OUTBOX_SECRET_LEN);
    /* Stored sealed, and it opens to what was shown; the listing never shows it. */
    struct blob b = {CD_BUF_INIT(4096), ""};
    struct q q = {"SELECT length(secret) FROM webhook_subscriptions", NULL, 0};
    assert_int_equal(cd_store_read(store, q_fn, &q), CD_OK);
    assert_int_equal(q.n, CD_OUTBOX_SECRET_LEN + CD_CRYPTO_SEAL_OVERHEAD);
    cd_buf_free(&b.b);
    assert_int_equal(cd_outbox_subscription_get(outbox, cd_str_c(id), &g), CD_OK);
    assert_null(json_object_get(g, "secret"));
    assert_int_equal(json_integer_value(json_object_get(g, "pending")), 0);
    json_decref(g);
    assert_int_equal(cd_outbox_subscription_rotate(outbox, &admin, cd_str_c(id), &r), CD_OK);
    assert_string_not_equal(json_string_value(json_object_get(r, "secret")), secret);
    json_decref(r);
    (void)raw;
    assert_int_equal(cd_outbox_subscription_get(outbox, CD_STR("whs_00000000000000000000000000"),
                                                &g),
                     CD_ERR_NOT_FOUND);
    assert_int_equal(cd_outbox_subscription_delete(outbox, &admin, cd_str_c(id)), CD_OK);
    assert_int_equal(cd_outbox_subscription_delete(outbox, &admin, cd_str_c(id)),
                     CD_ERR_NOT_FOUND);
    json_decref(s);
}

/* ---- claims, order, outcomes ---- */

static char sub_id[CD_ID_MAX];

static void subscribe(const char *events, const char *purpose)
{
    char body[256];
    json_t *s = NULL;

    snprintf(body, sizeof body,
             "{\"url\":\"http://127.0.0.1:9/\",\"events\":%s,\"purpose\":\"%s\"}", events,
             purpose);
    assert_int_equal(sub_create(body, &s), CD_OK);
    snprintf(sub_id, sizeof sub_id, "%s", json_string_value(json_object_get(s, "id")));
    json_decref(s);
}

static void restricted(const char *customer, bool on, char id[CD_ID_MAX])
{
    assert_int_equal(enqueue("customer.restricted", customer,
                             on ? "{\"restricted\":true}" : "{\"restricted\":false}", id),
                     CD_OK);
}

static size_t claim(struct cd__claim **v)
{
    size_t n = 0;
    assert_int_equal(cd__outbox_claim(outbox, 10000, 16, v, &n), CD_OK);
    return n;
}

static void settle(const struct cd__claim *c, enum cd__state st, int64_t next_at)
{
    struct cd__outcome o = {c->seq, c->event_seq, "", st, st == CD__DELIVERED ? 204 : 500,
                            st == CD__DELIVERED ? NULL : "the receiver answered 500", next_at};
    memcpy(o.id, c->id, CD_ID_MAX);
    assert_int_equal(cd__outbox_record(outbox, &o, 1), CD_OK);
}

static void a_customers_events_go_in_order(void **state)
{
    char a1[CD_ID_MAX], a2[CD_ID_MAX], a3[CD_ID_MAX], b1[CD_ID_MAX];
    struct cd__claim *v = NULL;
    size_t n;

    subscribe("[\"customer.restricted\"]", "service");
    restricted(CUS, true, a1);
    restricted(CUS, false, a2);
    restricted(CUS2, true, b1);
    restricted(CUS, true, a3);
    /* The oldest of each customer is due; the others wait behind it. */
    n = claim(&v);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].event_id, a1);
    assert_string_equal(v[1].event_id, b1);
    assert_int_equal(v[0].attempts, 1);
    assert_string_equal(v[0].url, "http://127.0.0.1:9/");
    /* Claimed: not due again while the lease runs. */
    struct cd__claim *w = NULL;
    assert_int_equal(claim(&w), 0);
    cd__outbox_claims_free(w, 0);
    /* A retry later keeps a2 waiting behind a1. */
    settle(&v[0], CD__RETRY, cd_now_ms() + 60000);
    settle(&v[1], CD__DELIVERED, 0);
    cd__outbox_claims_free(v, n);
    assert_int_equal(claim(&v), 0);
    cd__outbox_claims_free(v, 0);
    /* Past its retry time a1 goes again, then a2, then a3. */
    fake_now = cd_now_ms() + 61000;
    cd_clock_override(fake_clock);
    assert_int_equal(claim(&v), 1);
    assert_string_equal(v[0].event_id, a1);
    assert_int_equal(v[0].attempts, 2);
    settle(&v[0], CD__DELIVERED, 0);
    cd__outbox_claims_free(v, 1);
    assert_int_equal(claim(&v), 1);
    assert_string_equal(v[0].event_id, a2);
    /* A dead letter no longer holds the customer's later events back. */
    settle(&v[0], CD__DEAD, 0);
    cd__outbox_claims_free(v, 1);
    assert_int_equal(claim(&v), 1);
    assert_string_equal(v[0].event_id, a3);
    cd__outbox_claims_free(v, 1);
}

static void a_claim_a_crash_interrupted_comes_back(void **state)
{
    char a1[CD_ID_MAX];
    struct cd__claim *v = NULL;

    subscribe("[\"*\"]", "service");
    restricted(CUS, true, a1);
    assert_int_equal(claim(&v), 1);
    cd__outbox_claims_free(v, 1);
    /* Nobody recorded an outcome (the worker died): after the lease it is due again. */
    fake_now = cd_now_ms() + 10001;
    cd_clock_override(fake_clock);
    assert_int_equal(claim(&v), 1);
    assert_string_equal(v[0].event_id, a1);
    assert_int_equal(v[0].attempts, 2);
    cd__outbox_claims_free(v, 1);
}

static void dead_letters_are_listed_and_replayed(void **state)
{
    char a1[CD_ID_MAX], dlv[CD_ID_MAX];
    struct cd__claim *v = NULL;
    json_t *list = NULL, *d = NULL;
    struct cd_outbox_delivery_query q = {CD_STR_NULL, CD_STR("dead"), CD_STR_NULL, 10};
    uint64_t replayed = 0;

    subscribe("[\"*\"]", "service");
    restricted(CUS, true, a1);
    assert_int_equal(claim(&v), 1);
    snprintf(dlv, sizeof dlv, "%s", v[0].id);
    settle(&v[0], CD__DEAD, 0);
    cd__outbox_claims_free(v, 1);
    assert_int_equal(cd_outbox_deliveries(outbox, &q, &list), CD_OK);
    json_t *item = json_array_get(json_object_get(list, "items"), 0);
    assert_string_equal(json_string_value(json_object_get(item, "id")), dlv);
    assert_string_equal(json_string_value(json_object_get(item, "event_id")), a1);
    assert_int_equal(json_integer_value(json_object_get(item, "last_status")), 500);
    assert_string_equal(json_string_value(json_object_get(item, "last_error")),
                        "the receiver answered 500");
    json_decref(list);
    q.status = CD_STR("lost");
    assert_int_equal(cd_outbox_deliveries(outbox, &q, &list), CD_ERR_INVALID);
    q.status = CD_STR_NULL;
    q.cursor = CD_STR("x");
    assert_int_equal(cd_outbox_deliveries(outbox, &q, &list), CD_ERR_INVALID);
    assert_int_equal(cd_outbox_delivery_replay(outbox, &admin, cd_str_c(dlv), &d), CD_OK);
    assert_string_equal(json_string_value(json_object_get(d, "status")), "pending");
    json_decref(d);
    assert_int_equal(cd_outbox_delivery_replay(outbox, &admin, cd_str_c(dlv), &d),
                     CD_ERR_CONFLICT);
    assert_int_equal(cd_outbox_delivery_replay(outbox, &admin,
                                               CD_STR("dlv_00000000000000000000000000"), &d),
                     CD_ERR_NOT_FOUND);
    assert_int_equal(claim(&v), 1);
    assert_int_equal(v[0].attempts, 1);
    settle(&v[0], CD__DEAD, 0);
    cd__outbox_claims_free(v, 1);
    assert_int_equal(cd_outbox_dead_replay_all(outbox, &admin, CD_STR_NULL, &replayed), CD_OK);
    assert_int_equal(replayed, 1);
}

static void pages_of_deliveries_walk_everything_once(void **state)
{
    struct cd_outbox_delivery_query q = {CD_STR_NULL, CD_STR_NULL, CD_STR_NULL, 3};
    char cursor[32] = "";
    size_t seen = 0;

    subscribe("[\"*\"]", "service");
    for (int i = 0; i < 7; i++)
        restricted(i % 2 ? CUS : CUS2, i % 3 == 0, NULL);
    for (;;) {
        json_t *page = NULL;
        q.cursor = cd_str_c(cursor);
        assert_int_equal(cd_outbox_deliveries(outbox, &q, &page), CD_OK);
        seen += json_array_size(json_object_get(page, "items"));
        const char *next = json_string_value(json_object_get(page, "next_cursor"));
        snprintf(cursor, sizeof cursor, "%s", next ? next : "");
        json_decref(page);
        if (next == NULL)
            break;
    }
    assert_int_equal(seen, 7);
}

/* ---- what a delivery carries ---- */

static int reads;

static enum cd_err allow_read(void *ctx, const char *customer_id, enum cd_purpose purpose,
                              unsigned categories, const char *subscription_id)
{
    assert_string_equal(customer_id, CUS);
    assert_int_equal(categories, CD_FIELDS_CONTACT);
    reads++;
    return *(bool *)ctx ? CD_OK : cd_err_set(CD_ERR_PURPOSE_DENIED, "restricted");
}

static json_t *body_of(const struct cd__claim *c, bool allow)
{
    struct cd_outbox_worker_config cfg = {1, 1000, 1, 1, 1, policy, {&allow, allow_read}};
    char *text = NULL;
    size_t len = 0;
    json_t *o = NULL;

    assert_int_equal(cd__outbox_body(outbox, &cfg, c, &text, &len), CD_OK);
    assert_int_equal(cd_json_parse(text, len, &o), CD_OK);
    cd_free(text);
    return o;
}

static void personal_members_reach_only_a_purpose_that_may_see_them(void **state)
{
    static const char payload[] = "{\"request_id\":\"dsar_1\",\"channel\":\"email\","
                                  "\"to\":\"ana@example.com\",\"code\":\"482913\","
                                  "\"expires_at\":\"2026-01-01T00:15:00Z\"}";
    struct cd__claim *v = NULL;
    char id[CD_ID_MAX];
    json_t *o;

    subscribe("[\"dsar.verification_code\"]", "service");
    subscribe("[\"dsar.verification_code\"]", "analytics");
    assert_int_equal(enqueue("dsar.verification_code", CUS, payload, id), CD_OK);
    assert_int_equal(claim(&v), 2);
    const struct cd__claim *service = strcmp(v[0].purpose, "service") == 0 ? &v[0] : &v[1];
    const struct cd__claim *analytics = service == &v[0] ? &v[1] : &v[0];
    /* service may see contact data: with the read allowed (and recorded by the hook), the code
     * goes; refused (a restricted customer), it is withheld. */
    o = body_of(service, true);
    assert_string_equal(json_string_value(json_object_get(o, "id")), id);
    assert_string_equal(json_string_value(json_object_get(o, "type")), "dsar.verification_code");
    json_t *data = json_object_get(o, "data");
    assert_string_equal(json_string_value(json_object_get(data, "customer_id")), CUS);
    assert_string_equal(json_string_value(json_object_get(data, "code")), "482913");
    assert_string_equal(json_string_value(json_object_get(data, "to")), "ana@example.com");
    assert_null(json_object_get(o, "withheld"));
    json_decref(o);
    o = body_of(service, false);
    assert_null(json_object_get(json_object_get(o, "data"), "code"));
    assert_int_equal(json_array_size(json_object_get(o, "withheld")), 2);
    json_decref(o);
    /* analytics sees reference and coarse data only: withheld without asking. */
    reads = 0;
    o = body_of(analytics, true);
    assert_int_equal(reads, 0);
    assert_null(json_object_get(json_object_get(o, "data"), "to"));
    assert_string_equal(json_string_value(json_object_get(o, "data") ? json_object_get(
                            json_object_get(o, "data"), "request_id")
                                                                        : NULL),
                        "dsar_1");
    json_decref(o);
    /* Once every subscription acknowledged it, the sealed members leave the outbox. */
    settle(&v[0], CD__DELIVERED, 0);
    assert_int_equal(count("SELECT count(*) FROM outbox_events WHERE personal IS NULL", NULL), 0);
    settle(&v[1], CD__DELIVERED, 0);
    assert_int_equal(count("SELECT count(*) FROM outbox_events WHERE personal IS NULL", NULL), 1);
    cd__outbox_claims_free(v, 2);
}

/* ---- recipients told ---- */

static enum cd_err rcp_create(const char *body, json_t **out)
{
    json_t *b = NULL;
    enum cd_err err;

    assert_int_equal(cd_json_parse(body, strlen(body), &b), CD_OK);
    *out = NULL;
    err = cd_outbox_recipient_create(outbox, &admin, b, out);
    json_decref(b);
    return err;
}

struct notices_q {
    const char *customer;
    int64_t since;
    const char *request;
    json_t *out;
};

static enum cd_err notices_fn(struct cd_tx *tx, void *ctx)
{
    struct notices_q *q = ctx;
    json_decref(q->out);
    return cd_outbox_notices(tx, cd_str_c(q->customer), q->since, cd_str_c(q->request), &q->out);
}

static json_t *notices(const char *customer, const char *request)
{
    struct notices_q q = {customer, 0, request, NULL};
    assert_int_equal(cd_store_read(store, notices_fn, &q), CD_OK);
    return q.out;
}

static enum cd_err attach_fn(struct cd_tx *tx, void *ctx)
{
    struct notices_q *q = ctx;
    uint64_t n = 0;
    enum cd_err err = cd_outbox_notices_attach(tx, cd_str_c(q->customer), q->since,
                                               cd_str_c(q->request), &n);
    q->since = (int64_t)n;
    return err;
}

static void recipients_are_told_of_erasure_rectification_and_restriction(void **state)
{
    json_t *hook = NULL, *proc = NULL, *listed = NULL, *n = NULL, *c = NULL;
    struct cd__claim *v = NULL;

    subscribe("[\"consent.changed\"]", "service");
    assert_int_equal(rcp_create("{\"name\":\"CRM\",\"kind\":\"processor\",\"purposes\":[],"
                                "\"categories\":[\"contact\"],\"scope\":\"all\","
                                "\"contact\":\"dpo@crm.example\"}",
                                &proc),
                     CD_ERR_INVALID);
    assert_int_equal(rcp_create("{\"name\":\"CRM\",\"kind\":\"processor\",\"purposes\":[\"service\"],"
                                "\"categories\":[\"contact\"],\"scope\":\"all\"}",
                                &proc),
                     CD_ERR_INVALID);
    assert_int_equal(rcp_create("{\"name\":\"CRM\",\"kind\":\"webhook\",\"purposes\":[\"service\"],"
                                "\"categories\":[\"contact\"],\"scope\":\"all\","
                                "\"subscription_id\":\"whs_00000000000000000000000000\"}",
                                &hook),
                     CD_ERR_INVALID);
    char body[512];
    snprintf(body, sizeof body,
             "{\"name\":\"Helpdesk\",\"kind\":\"webhook\",\"purposes\":[\"service\"],"
             "\"categories\":[\"contact\",\"profile\"],\"scope\":\"all\","
             "\"subscription_id\":\"%s\"}",
             sub_id);
    assert_int_equal(rcp_create(body, &hook), CD_OK);
    assert_int_equal(rcp_create("{\"name\":\"Mailer\",\"kind\":\"processor\","
                                "\"purposes\":[\"marketing\"],\"categories\":[\"contact\"],"
                                "\"scope\":\"all\",\"contact\":\"privacy@mailer.example\"}",
                                &proc),
                     CD_OK);
    assert_int_equal(rcp_create("{\"name\":\"Printer\",\"kind\":\"processor\","
                                "\"purposes\":[\"billing\"],\"categories\":[\"coarse\"],"
                                "\"scope\":\"listed\",\"contact\":\"ops@printer.example\"}",
                                &listed),
                     CD_OK);
    const char *listed_id = json_string_value(json_object_get(listed, "id"));
    assert_int_equal(cd_outbox_recipient_add_customer(outbox, &admin, cd_str_c(listed_id),
                                                      cd_str_c(CUS2)),
                     CD_OK);

    /* Restriction: both "all" recipients; the subscription had not asked for the event, so a
     * delivery is made for it. */
    restricted(CUS, true, NULL);
    n = notices(CUS, NULL);
    assert_int_equal(json_array_size(n), 2);
    json_decref(n);
    assert_int_equal(claim(&v), 1);
    assert_string_equal(v[0].type, "customer.restricted");
    settle(&v[0], CD__DELIVERED, 0);
    cd__outbox_claims_free(v, 1);
    n = notices(CUS, NULL);
    for (size_t i = 0; i < 2; i++) {
        json_t *x = json_array_get(n, i);
        bool webhook = strcmp(json_string_value(json_object_get(x, "kind")), "webhook") == 0;
        assert_string_equal(json_string_value(json_object_get(x, "status")),
                            webhook ? "told" : "pending");
        if (webhook)
            assert_string_equal(json_string_value(json_object_get(x, "told_by")), "webhook");
    }
    /* The processor is told by a person, who confirms; a webhook's notice cannot be. */
    json_t *pending = json_array_get(n, 0);
    if (strcmp(json_string_value(json_object_get(pending, "kind")), "processor") != 0)
        pending = json_array_get(n, 1);
    const char *pid = json_string_value(json_object_get(pending, "id"));
    json_t *empty = json_object(), *note = json_pack("{s:s}", "note", "emailed the DPO");
    assert_int_equal(cd_outbox_notice_confirm(outbox, &admin, cd_str_c(pid), note, &c), CD_OK);
    assert_string_equal(json_string_value(json_object_get(c, "status")), "told");
    assert_string_equal(json_string_value(json_object_get(c, "told_by")), "tok_admin");
    json_decref(c);
    assert_int_equal(cd_outbox_notice_confirm(outbox, &admin, cd_str_c(pid), empty, &c),
                     CD_ERR_CONFLICT);
    json_decref(n);

    /* Rectification reaches only the recipients of a category that changed. */
    assert_int_equal(enqueue("customer.rectified", CUS, "{\"categories\":[\"coarse\"]}", NULL),
                     CD_OK);
    n = notices(CUS, NULL);
    assert_int_equal(json_array_size(n), 2);
    json_decref(n);
    assert_int_equal(enqueue("customer.rectified", CUS, "{\"categories\":[\"profile\"],"
                                                        "\"request_id\":\"dsar_7\"}",
                             NULL),
                     CD_OK);
    n = notices(CUS, "dsar_7");
    assert_int_equal(json_array_size(n), 1);
    json_decref(n);

    /* A listed recipient hears of its customers only; a merge hands them to the survivor. */
    assert_int_equal(enqueue("customer.erased", CUS2, "{\"erased_at\":\"2026-01-01T00:00:00Z\"}",
                             NULL),
                     CD_OK);
    n = notices(CUS2, NULL);
    assert_int_equal(json_array_size(n), 3);
    json_decref(n);
    struct notices_q a = {CUS2, 0, "dsar_9", NULL};
    assert_int_equal(cd_store_write(store, attach_fn, &a), CD_OK);
    assert_int_equal(a.since, 3);
    n = notices(CUS2, "dsar_9");
    assert_int_equal(json_array_size(n), 3);
    json_decref(n);
    json_decref(empty);
    json_decref(note);
    json_decref(hook);
    json_decref(proc);
    json_decref(listed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_table_is_consistent),
        cmocka_unit_test_setup_teardown(enqueue_checks_the_payload, setup, teardown),
        cmocka_unit_test_setup_teardown(an_event_exists_iff_its_change_committed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(personal_members_are_sealed, setup, teardown),
        cmocka_unit_test_setup_teardown(one_delivery_per_subscription, setup, teardown),
        cmocka_unit_test_setup_teardown(enqueue_survives_every_allocation_failure, setup,
                                        teardown),
        cmocka_unit_test(signatures_follow_standard_webhooks),
        cmocka_unit_test(backoff_is_full_jitter_under_a_cap),
        cmocka_unit_test_setup_teardown(subscriptions_are_checked_and_keep_their_secret_sealed,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(a_customers_events_go_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(a_claim_a_crash_interrupted_comes_back, setup, teardown),
        cmocka_unit_test_setup_teardown(dead_letters_are_listed_and_replayed, setup, teardown),
        cmocka_unit_test_setup_teardown(pages_of_deliveries_walk_everything_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(personal_members_reach_only_a_purpose_that_may_see_them,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            recipients_are_told_of_erasure_rectification_and_restriction, setup, teardown),
    };
    cd_json_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
