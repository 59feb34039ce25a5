/* Unit tests for src/outbox on a real SQLite file: the event-type table, enqueueing inside the
 * caller's transaction (checked payloads, personal members sealed, one delivery per
 * subscription), and every allocation failure of an enqueue. */
#include <unistd.h>
#include "unit.h"
#include "outbox/outbox.h"
#include "outbox/outbox_int.h"
#include "policy/policy.h"

static char path[256];
static struct cd_store *store;
static struct cd_outbox *outbox;
static uint8_t master[32];

static int setup(void **state)
{
    snprintf(path, sizeof path, "/tmp/candor-test-outbox-%d.db", (int)getpid());
    unlink(path);
    cd_random_bytes(master, sizeof master);
    if (cd_crypto_init() != CD_OK || cd_store_open(path, &store) != CD_OK ||
        cd_outbox_open(store, master, &outbox) != CD_OK)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    char p[300];

    cd_outbox_close(outbox);
    cd_store_close(store);
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
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
    };
    cd_json_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
