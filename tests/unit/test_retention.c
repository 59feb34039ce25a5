/* Unit tests for src/retention on a real SQLite file: legal holds (placed, listed, expiring,
 * released, each change in the ledger; holds follow merges). */
#include <unistd.h>
#include "unit.h"
#include "base/base_testing.h"
#include "audit/audit.h"
#include "core/core.h"
#include "crypto/crypto.h"
#include "retention/retention.h"
#include "retention/retention_int.h"

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
    cd_clock_override(NULL);
    cd_core_close(core);
    cd_store_close(store);
    unit_db_remove(path);
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

/* ---- rules ---- */

static const char RULES[] = "version: 1\n"
                            "rules:\n"
                            "  - data: interactions\n"
                            "    keep: 30 days\n"
                            "    after: last_contact\n"
                            "    why: test\n"
                            "  - data: interactions\n"
                            "    purpose: marketing\n"
                            "    keep: 1 week\n"
                            "    after: occurred\n"
                            "    why: test\n"
                            "  - data: customers\n"
                            "    keep: 1 year\n"
                            "    after: last_contact\n"
                            "    why: test\n"
                            "  - data: audit_ledger\n"
                            "    keep: forever\n"
                            "    why: test\n"
                            "  - data: consent_records\n"
                            "    keep: forever\n"
                            "    why: test\n";

/* RULES with `from` replaced by `to`, parsed: the error's detail, or "" when it loads. */
static const char *parse_with(const char *from, const char *to)
{
    static char detail[512];
    char text[2048];
    const char *at = from ? strstr(RULES, from) : NULL;
    struct cd_retention_rules *r = NULL;

    if (from)
        assert_non_null(at);
    snprintf(text, sizeof text, "%.*s%s%s", (int)(at ? at - RULES : (long)strlen(RULES)), RULES,
             at ? to : "", at ? at + strlen(from) : "");
    if (cd_retention_rules_parse("rules.yaml", text, strlen(text), &r) == CD_OK) {
        cd_retention_rules_free(r);
        return "";
    }
    snprintf(detail, sizeof detail, "%s", cd_err_detail());
    return detail;
}

static void rules_are_checked_whole(void **state)
{
    struct cd_retention_rules *r = NULL;

    assert_string_equal(parse_with(NULL, NULL), "");
    /* The shipped defaults load (unit tests run from the checkout's root). */
    assert_int_equal(cd_retention_rules_load("rules/retention/rules.yaml", &r), CD_OK);
    cd_retention_rules_free(r);
    static const struct {
        const char *from, *to, *says;
    } bad[] = {
        {"keep: 30 days", "keep: 30 fortnights", "rules.yaml:4: keep must be"},
        {"keep: 30 days", "keep: 0 days", "rules.yaml:4: keep must be at least"},
        {"keep: 30 days", "keep: forever", "rules.yaml:3: personal data needs a limit"},
        {"data: audit_ledger\n    keep: forever", "data: audit_ledger\n    keep: 10 years",
         "kept for good"},
        {"data: customers\n", "data: customers\n    purpose: service\n", "no purpose of its own"},
        {"after: occurred", "after: finished", "after must be occurred or last_contact"},
        {"data: interactions\n    keep: 30", "data: chats\n    keep: 30", "unknown data"},
        {"purpose: marketing", "purpose: gossip", "unknown purpose"},
        {"    purpose: marketing\n", "", "already given"},
        {"    why: test\n  - data: customers", "  - data: customers", "why"},
        {"version: 1", "version: 2", "version"},
        {"    after: last_contact\n    why: test\n  - data: interactions",
         "    after: last_contact\n    why: test\n    owner: me\n  - data: interactions",
         "unknown"},
        {"  - data: consent_records\n    keep: forever\n    why: test\n", "",
         "no rule for consent_records"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *d = parse_with(bad[i].from, bad[i].to);
        if (strstr(d, bad[i].says) == NULL)
            fail_msg("case %zu: '%s' does not say '%s'", i, d, bad[i].says);
    }
}

static void cutoffs_count_back_on_the_calendar(void **state)
{
    struct cd_retention_rules *r = NULL;
    int64_t now = 1774958400000; /* 2026-03-31T12:00:00Z */
    char ts[CD_TIME_STRLEN];

    assert_int_equal(cd_retention_rules_parse("r", RULES, strlen(RULES), &r), CD_OK);
    cd_time_format(cd__ret_cutoff(&r->v[0], now), ts); /* 30 days */
    assert_string_equal(ts, "2026-03-01T12:00:00.000Z");
    cd_time_format(cd__ret_cutoff(&r->v[1], now), ts); /* 1 week */
    assert_string_equal(ts, "2026-03-24T12:00:00.000Z");
    cd_time_format(cd__ret_cutoff(&r->v[2], now), ts); /* 1 year: twelve months */
    assert_string_equal(ts, "2025-03-31T12:00:00.000Z");
    r->v[2].period.n = 1; /* one month back from the 31st: the last day of February */
    cd_time_format(cd__ret_cutoff(&r->v[2], now), ts);
    assert_string_equal(ts, "2026-02-28T12:00:00.000Z");
    r->v[2].period.n = 13;
    cd_time_format(cd__ret_cutoff(&r->v[2], now), ts);
    assert_string_equal(ts, "2025-02-28T12:00:00.000Z");
    cd_retention_rules_free(r);
}

/* ---- runs ---- */

static const char *said(const char *customer, int64_t days_ago, const char *purpose)
{
    static char id[CD_ID_MAX];
    char ts[CD_TIME_STRLEN];
    struct cd_buf out = CD_BUF_INIT(1 << 20);
    json_t *body, *o = NULL;
    bool replayed;

    cd_time_format(cd_now_ms() - days_ago * 86400000, ts);
    body = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "customer_id", customer, "channel", "email",
                     "direction", "inbound", "purpose", purpose, "occurred_at", ts, "body", "hi");
    assert_int_equal(cd_core_interaction_ingest(core, &actor, body, NULL, CD_FIELDS_REFERENCE,
                                                &out, NULL, &replayed),
                     CD_OK);
    assert_int_equal(cd_json_parse(out.p, out.len, &o), CD_OK);
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(o, "id")));
    json_decref(o);
    json_decref(body);
    cd_buf_free(&out);
    return id;
}

struct q {
    const char *sql;
    int64_t n;
};

static enum cd_err q_fn(struct cd_tx *tx, void *ctx)
{
    struct q *q = ctx;
    return cd_tx_int(tx, q->sql, NULL, 0, &q->n);
}

static int64_t count_q(const char *sql)
{
    struct q q = {sql, -1};
    assert_int_equal(cd_store_read(store, q_fn, &q), CD_OK);
    return q.n;
}

static json_t *rule_of(json_t *report, const char *data, const char *purpose)
{
    size_t i;
    json_t *r;

    json_array_foreach(json_object_get(report, "rules"), i, r) {
        const char *p = json_string_value(json_object_get(r, "purpose"));
        if (strcmp(json_string_value(json_object_get(r, "data")), data) == 0 &&
            ((p == NULL && purpose == NULL) || (p && purpose && strcmp(p, purpose) == 0)))
            return r;
    }
    fail_msg("no rule for %s", data);
    return NULL;
}

struct run_row {
    char canon[1024];
    char digest[65];
};

static enum cd_err run_row_fn(void *ctx, const struct cd_val *c, size_t n)
{
    struct run_row *r = ctx;
    json_t *o = json_pack("{s:s%,s:I,s:I,s:b,s:s%,s:s%}", "id", c[0].p, c[0].len, "started_at",
                          (json_int_t)c[1].i, "finished_at", (json_int_t)c[2].i, "dry_run",
                          (int)c[3].i, "started_by", c[4].p, c[4].len, "counts", c[5].p,
                          c[5].len);
    char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    uint8_t d[32];

    (void)n;
    snprintf(r->canon, sizeof r->canon, "%s", text);
    assert_int_equal(cd_crypto_sha256(text, strlen(text), d), CD_OK);
    cd_hex_encode(d, sizeof d, r->digest);
    cd_free(text);
    json_decref(o);
    return CD_OK;
}

static enum cd_err last_run_fn(struct cd_tx *tx, void *ctx)
{
    return cd_tx_exec(tx,
                      "SELECT id, started_at, finished_at, dry_run, started_by, counts"
                      " FROM retention_runs ORDER BY started_at DESC, id DESC LIMIT 1",
                      NULL, 0, run_row_fn, ctx, NULL);
}

static void a_run_deletes_what_expired_and_a_hold_wins(void **state)
{
    struct cd_retention_rules *r = NULL;
    char a[CD_ID_MAX], b[CD_ID_MAX], h[CD_ID_MAX], gone[CD_ID_MAX], kept[CD_ID_MAX];
    char mkt[CD_ID_MAX];
    json_t *rep = NULL, *hl = NULL, *out = NULL;

    assert_int_equal(cd_retention_rules_parse("r", RULES, strlen(RULES), &r), CD_OK);
    new_customer(a);
    new_customer(b);
    new_customer(h);
    snprintf(gone, sizeof gone, "%s", said(a, 40, "service"));
    said(a, 35, "service");
    snprintf(kept, sizeof kept, "%s", said(b, 40, "service"));
    said(b, 2, "service"); /* b was in touch lately: nothing of b's goes */
    snprintf(mkt, sizeof mkt, "%s", said(b, 8, "marketing"));
    said(h, 40, "service");
    assert_int_equal(hold(h, "{\"reason\":\"Case 1\",\"legal_basis\":\"legal_claims\"}", &hl),
                     CD_OK);
    json_decref(hl);

    assert_int_equal(cd_retention_run(core, r, &actor, true, 1, &rep), CD_OK);
    json_t *general = rule_of(rep, "interactions", NULL);
    assert_int_equal(json_integer_value(json_object_get(general, "count")), 2);
    assert_int_equal(json_integer_value(json_object_get(general, "held_customers")), 1);
    assert_int_equal(json_array_size(json_object_get(general, "ids")), 1); /* max_ids */
    assert_true(json_is_true(json_object_get(general, "ids_truncated")));
    assert_int_equal(json_integer_value(json_object_get(rule_of(rep, "interactions", "marketing"),
                                                        "count")),
                     1);
    assert_int_equal(json_integer_value(json_object_get(rep, "held_customers_skipped")), 1);
    json_decref(rep);
    assert_int_equal(count_q("SELECT count(*) FROM interactions"), 6);

    assert_int_equal(cd_retention_run(core, r, &actor, false, 0, &rep), CD_OK);
    assert_null(json_object_get(rule_of(rep, "interactions", NULL), "ids"));
    json_decref(rep);
    assert_int_equal(count_q("SELECT count(*) FROM interactions"), 3);
    /* The ledger: one entry per customer whose interactions went, and the run's, bound to its
     * row by the digest of the row's canonical form. */
    assert_int_equal(ledger("interactions.expire", a), 1);
    assert_int_equal(ledger("interactions.expire", h), 0);
    struct run_row row;
    assert_int_equal(cd_store_read(store, last_run_fn, &row), CD_OK);
    struct cd_audit_query q = {CD_STR_NULL, CD_STR("retention.run"), CD_STR_NULL, CD_STR_NULL, 0,
                               0, 1};
    json_t *evs = NULL;
    assert_int_equal(cd_audit_list(store, &q, &evs), CD_OK);
    json_t *ev = json_array_get(json_object_get(evs, "items"), 0);
    assert_string_equal(json_string_value(json_object_get(ev, "data_sha256")), row.digest);
    assert_non_null(strstr(row.canon, "\\\"interactions\\\":2"));
    json_decref(evs);

    /* A customer long silent is erased whole (crypto-shredded), unless held. */
    fake_now = cd_now_ms() + 400LL * 86400000;
    cd_clock_override(fake_clock);
    assert_int_equal(cd_retention_run(core, r, &actor, false, 0, &rep), CD_OK);
    assert_int_equal(json_integer_value(json_object_get(rule_of(rep, "customers", NULL),
                                                        "count")),
                     2);
    json_decref(rep);
    assert_int_equal(cd_core_customer_get(core, &actor, cd_str_c(a), CD_FIELDS_REFERENCE, &out),
                     CD_OK);
    assert_string_equal(json_string_value(json_object_get(out, "status")), "erased");
    json_decref(out);
    assert_int_equal(cd_core_customer_get(core, &actor, cd_str_c(h), CD_FIELDS_REFERENCE, &out),
                     CD_OK);
    assert_string_equal(json_string_value(json_object_get(out, "status")), "active");
    json_decref(out);
    cd_retention_rules_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_hold_is_placed_with_a_reason_and_a_basis, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_hold_ends_at_its_expiry_or_release, setup, teardown),
        cmocka_unit_test_setup_teardown(holds_follow_merges, setup, teardown),
        cmocka_unit_test(rules_are_checked_whole),
        cmocka_unit_test(cutoffs_count_back_on_the_calendar),
        cmocka_unit_test_setup_teardown(a_run_deletes_what_expired_and_a_hold_wins, setup,
                                        teardown),
    };
    cd_json_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
