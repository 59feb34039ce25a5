/* Unit tests for src/retention on a real SQLite file: legal holds (placed, listed, expiring,
 * released, each change in the ledger; holds follow merges). */
#include <unistd.h>
#include "unit.h"
#include "audit/audit.h"
#include "core/core.h"
#include "crypto/crypto.h"
#include "retention/retention.h"

static char path[256];
static struct cd_store *store;
static struct cd_core *core;
static const struct cd_actor actor = {"tok_test", "compliance", "unit test", "req_test",
                                      "legal_obligation", true, false};
static int64_t fake_now;

static int64_t fake_clock(void)
{
    return fake_now;
}

static int setup(void **state)
{
    uint8_t master[32];

    snprintf(path, sizeof path, "/tmp/candor-test-retention-%d.db", (int)getpid());
    unlink(path);
    cd_random_bytes(master, sizeof master);
    if (cd_crypto_init() != CD_OK || cd_store_open(path, &store) != CD_OK ||
        cd_core_open(store, master, &core) != CD_OK)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    char p[300];

    cd_clock_override(NULL);
    cd_core_close(core);
    cd_store_close(store);
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
    return 0;
}

static void new_customer(char id[CD_ID_MAX])
{
    json_t *body = json_pack("{s:s}", "display_name", "Ana"), *out = NULL;
    bool replayed;

    assert_int_equal(cd_core_customer_create(core, &actor, body, NULL, CD_FIELDS_REFERENCE, &out,
                                             &replayed),
                     CD_OK);
    snprintf(id, CD_ID_MAX, "%s", json_string_value(json_object_get(out, "id")));
    json_decref(body);
    json_decref(out);
}

static enum cd_err hold(const char *customer, const char *body, json_t **out)
{
    json_t *b = NULL;
    enum cd_err err;

    assert_int_equal(cd_json_parse(body, strlen(body), &b), CD_OK);
    *out = NULL;
    err = cd_retention_hold_create(store, &actor, cd_str_c(customer), b, out);
    json_decref(b);
    return err;
}

static enum cd_err release(const char *customer, const char *hold_id, const char *body,
                           json_t **out)
{
    json_t *b = NULL;
    enum cd_err err;

    assert_int_equal(cd_json_parse(body, strlen(body), &b), CD_OK);
    *out = NULL;
    err = cd_retention_hold_release(store, &actor, cd_str_c(customer), cd_str_c(hold_id), b, out);
    json_decref(b);
    return err;
}

struct active {
    const char *customer;
    json_t *holds;
};

static enum cd_err active_fn(struct cd_tx *tx, void *ctx)
{
    struct active *a = ctx;
    return cd_retention_holds_active(tx, cd_str_c(a->customer), &a->holds);
}

/* The active holds' count (0 when the answer is NULL). */
static size_t active(const char *customer)
{
    struct active a = {customer, NULL};
    size_t n;

    assert_int_equal(cd_store_read(store, active_fn, &a), CD_OK);
    if (a.holds == NULL)
        return 0;
    n = json_array_size(a.holds);
    assert_true(n > 0);
    json_decref(a.holds);
    return n;
}

static size_t ledger(const char *action, const char *customer)
{
    struct cd_audit_query q = {cd_str_c(customer), cd_str_c(action), CD_STR_NULL, CD_STR_NULL,
                               0, 0, 100};
    json_t *evs = NULL;
    size_t n;

    assert_int_equal(cd_audit_list(store, &q, &evs), CD_OK);
    n = json_array_size(json_object_get(evs, "items"));
    json_decref(evs);
    return n;
}

static void a_hold_is_placed_with_a_reason_and_a_basis(void **state)
{
    char cus[CD_ID_MAX];
    json_t *h = NULL;

    new_customer(cus);
    assert_int_equal(active(cus), 0);
    assert_int_equal(hold(cus, "{\"legal_basis\":\"legal_claims\"}", &h), CD_ERR_INVALID);
    assert_int_equal(hold(cus, "{\"reason\":\"\",\"legal_basis\":\"legal_claims\"}", &h),
                     CD_ERR_INVALID);
    assert_int_equal(hold(cus, "{\"reason\":\"Case 2026-114\",\"legal_basis\":\"because\"}", &h),
                     CD_ERR_INVALID);
    assert_non_null(strstr(cd_err_detail(), "legal_basis"));
    assert_int_equal(hold(cus, "{\"reason\":\"Case 2026-114\",\"legal_basis\":7}", &h),
                     CD_ERR_INVALID);
    assert_int_equal(hold(cus, "{\"reason\":\"Case 2026-114\",\"legal_basis\":\"legal_claims\","
                               "\"expires_at\":\"2001-01-01T00:00:00Z\"}",
                          &h),
                     CD_ERR_INVALID);
    assert_int_equal(hold(cus, "{\"reason\":\"Case 2026-114\",\"legal_basis\":\"legal_claims\","
                               "\"expires_at\":\"soon\"}",
                          &h),
                     CD_ERR_INVALID);
    assert_int_equal(hold(cus, "{\"reason\":\"Case 2026-114\",\"legal_basis\":\"legal_claims\","
                               "\"until\":\"2030-01-01T00:00:00Z\"}",
                          &h),
                     CD_ERR_INVALID);
    assert_int_equal(hold("cus_00000000000000000000000000",
                          "{\"reason\":\"Case 2026-114\",\"legal_basis\":\"legal_claims\"}", &h),
                     CD_ERR_NOT_FOUND);
    assert_int_equal(hold("nobody", "{\"reason\":\"Case 2026-114\",\"legal_basis\":\"legal_claims\"}",
                          &h),
                     CD_ERR_NOT_FOUND);
    assert_int_equal(active(cus), 0);
    assert_int_equal(ledger("hold.create", cus), 0);

    assert_int_equal(hold(cus, "{\"reason\":\"Case 2026-114\",\"legal_basis\":\"legal_claims\"}",
                          &h),
                     CD_OK);
    assert_true(cd_id_valid(cd_str_c(json_string_value(json_object_get(h, "id"))), "hold"));
    assert_string_equal(json_string_value(json_object_get(h, "status")), "active");
    assert_string_equal(json_string_value(json_object_get(h, "created_by")), "tok_test");
    assert_true(json_is_null(json_object_get(h, "expires_at")));
    json_decref(h);
    assert_int_equal(active(cus), 1);
    assert_int_equal(ledger("hold.create", cus), 1);
}

static void a_hold_ends_at_its_expiry_or_release(void **state)
{
    char cus[CD_ID_MAX], id[CD_ID_MAX], other[CD_ID_MAX], ts[CD_TIME_STRLEN], body[256];
    json_t *h = NULL, *list = NULL;

    new_customer(cus);
    new_customer(other);
    fake_now = cd_now_ms();
    cd_clock_override(fake_clock);
    cd_time_format(fake_now + 3600 * 1000, ts);
    snprintf(body, sizeof body,
             "{\"reason\":\"Tax audit 17\",\"legal_basis\":\"legal_obligation\","
             "\"expires_at\":\"%s\"}",
             ts);
    assert_int_equal(hold(cus, body, &h), CD_OK);
    json_decref(h);
    assert_int_equal(hold(cus, "{\"reason\":\"Case 9\",\"legal_basis\":\"legal_claims\"}", &h),
                     CD_OK);
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(h, "id")));
    json_decref(h);
    assert_int_equal(active(cus), 2);
    fake_now += 3600 * 1000 + 1;
    assert_int_equal(active(cus), 1);
    assert_int_equal(cd_retention_holds_list(store, cd_str_c(cus), CD_STR("expired"), &list),
                     CD_OK);
    assert_int_equal(json_array_size(json_object_get(list, "items")), 1);
    json_decref(list);
    assert_int_equal(cd_retention_holds_list(store, cd_str_c(cus), CD_STR("open"), &list),
                     CD_ERR_INVALID);

    /* Release: with a reason, on the customer it belongs to, once. */
    assert_int_equal(release(cus, id, "{}", &h), CD_ERR_INVALID);
    assert_int_equal(release(other, id, "{\"reason\":\"Settled\"}", &h), CD_ERR_NOT_FOUND);
    assert_int_equal(release(cus, "hold_00000000000000000000000000", "{\"reason\":\"Settled\"}",
                             &h),
                     CD_ERR_NOT_FOUND);
    assert_int_equal(release(cus, id, "{\"reason\":\"Settled\"}", &h), CD_OK);
    assert_string_equal(json_string_value(json_object_get(h, "status")), "released");
    assert_string_equal(json_string_value(json_object_get(h, "release_reason")), "Settled");
    json_decref(h);
    assert_int_equal(release(cus, id, "{\"reason\":\"Settled\"}", &h), CD_ERR_CONFLICT);
    assert_int_equal(active(cus), 0);
    assert_int_equal(ledger("hold.release", cus), 1);
    assert_int_equal(cd_retention_holds_list(store, cd_str_c(cus), CD_STR_NULL, &list), CD_OK);
    assert_int_equal(json_array_size(json_object_get(list, "items")), 2);
    /* Newest first. */
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(list, "items"), 0), "id")),
                        id);
    json_decref(list);
}

static void holds_follow_merges(void **state)
{
    char a[CD_ID_MAX], b[CD_ID_MAX], id[CD_ID_MAX];
    json_t *h = NULL, *out = NULL, *list = NULL;

    new_customer(a);
    new_customer(b);
    assert_int_equal(hold(a, "{\"reason\":\"Case 3\",\"legal_basis\":\"legal_claims\"}", &h),
                     CD_OK);
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(h, "id")));
    json_decref(h);
    assert_int_equal(active(b), 0);
    assert_int_equal(cd_core_customer_merge(core, &actor, cd_str_c(b), cd_str_c(a),
                                            CD_FIELDS_REFERENCE, &out),
                     CD_OK);
    json_decref(out);
    /* A's data is B's now, and so is A's hold. */
    assert_int_equal(active(b), 1);
    assert_int_equal(hold(a, "{\"reason\":\"Case 4\",\"legal_basis\":\"legal_claims\"}", &h),
                     CD_ERR_CONFLICT);
    assert_int_equal(cd_retention_holds_list(store, cd_str_c(b), CD_STR("active"), &list), CD_OK);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(list, "items"), 0), "customer_id")),
                        a);
    json_decref(list);
    assert_int_equal(release(b, id, "{\"reason\":\"Settled\"}", &h), CD_OK);
    json_decref(h);
    assert_int_equal(active(b), 0);
    /* An erased customer keeps the record of what happened: a hold may still keep it. */
    assert_int_equal(cd_core_customer_shred(core, &actor, cd_str_c(b), &out), CD_OK);
    json_decref(out);
    assert_int_equal(hold(b, "{\"reason\":\"Case 5\",\"legal_basis\":\"legal_claims\"}", &h),
                     CD_OK);
    json_decref(h);
    assert_int_equal(active(b), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_hold_is_placed_with_a_reason_and_a_basis, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_hold_ends_at_its_expiry_or_release, setup, teardown),
        cmocka_unit_test_setup_teardown(holds_follow_merges, setup, teardown),
    };
    cd_json_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
