/* Unit tests for src/dsar: the deadline rules as shipped (weekends, public holidays, time zones
 * and daylight-saving changes, the day of receipt, extensions), mistakes in a rules file, and
 * the lifecycle of requests on a real SQLite file (transitions, one extension before the
 * deadline, refusals with their reason and authority, conversion of an interaction, the
 * overdue and due-soon lists, the counts), and fulfilment: erasure checked on the raw bytes of
 * the database and its log (also while the same customer's messages keep arriving), a legal
 * hold that stops it, restriction, objection through the consent engine, rectification. */
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include "unit.h"
#include "base/base_testing.h"
#include "calendar/calendar.h"
#include "consent/consent.h"
#include "core/core.h"
#include "dsar/dsar.h"
#include "dsar/dsar_int.h"
#include "guard/guard.h"
#include "outbox/outbox.h"
#include "retention/retention.h"

static char path[256];
static struct cd_store *store;
static struct cd_core *core;
static struct cd_calendars *cals;
static struct cd_dsar *dsar;
static struct cd_consent *consent;
static struct cd_outbox *ob; /* seals what events carry for the customer (codes, explanations) */
static char datadir[256];
static const struct cd_actor actor = {"tok_test", "compliance", "unit test", "req_test",
                                      "legal_obligation", true, false};
static int64_t fake_now;

static int64_t fake_clock(void)
{
    return fake_now;
}

static int64_t at(const char *rfc3339)
{
    int64_t ms = 0;
    assert_int_equal(cd_time_parse(cd_str_c(rfc3339), &ms), CD_OK);
    return ms;
}

static int setup_rules(void **state)
{
    struct cd_dsar_rules *r = NULL;

    if (cd_calendars_new(&cals) != CD_OK ||
        cd_calendars_load_dir(cals, "rules/calendars") != CD_OK ||
        cd_dsar_rules_load(cals, "rules/dsar/regimes.yaml", &r) != CD_OK) {
        fprintf(stderr, "rules: %s\n", cd_err_detail());
        return -1;
    }
    *state = r;
    return 0;
}

static int teardown_rules(void **state)
{
    cd_dsar_rules_free(*state);
    cd_calendars_free(cals);
    return 0;
}

static int setup(void **state)
{
    uint8_t master[32];
    struct cd_dsar_rules *r = NULL;

    snprintf(path, sizeof path, "/tmp/candor-test-dsar-%d.db", (int)getpid());
    unlink(path);
    cd_random_bytes(master, sizeof master);
    if (cd_calendars_new(&cals) != CD_OK ||
        cd_calendars_load_dir(cals, "rules/calendars") != CD_OK ||
        cd_dsar_rules_load(cals, "rules/dsar/regimes.yaml", &r) != CD_OK ||
        cd_store_open(path, &store) != CD_OK || cd_core_open(store, master, &core) != CD_OK ||
        cd_dsar_open(store, core, r, &dsar) != CD_OK ||
        cd_outbox_open(store, master, &ob) != CD_OK)
        return -1;
    snprintf(datadir, sizeof datadir, "/tmp/candor-test-dsar-%d.d", (int)getpid());
    mkdir(datadir, 0700);
    if (cd_consent_open(store, datadir, "rules/consent/jurisdictions.yaml", &consent) != CD_OK)
        return -1;
    cd_dsar_set_links(dsar, &(struct cd_dsar_links){.enqueue = cd_outbox_enqueue,
                                                    .holds_active = cd_retention_holds_active,
                                                    .notices_attach = cd_outbox_notices_attach,
                                                    .notices = cd_outbox_notices,
                                                    .consent = consent});
    return 0;
}

static int teardown(void **state)
{
    char p[300];

    cd_clock_override(NULL);
    cd_dsar_close(dsar);
    cd_consent_close(consent);
    cd_outbox_close(ob);
    ob = NULL;
    snprintf(p, sizeof p, "%s/receipts.key", datadir);
    unlink(p);
    snprintf(p, sizeof p, "%s/unsubscribe.key", datadir);
    unlink(p);
    rmdir(datadir);
    cd_core_close(core);
    cd_store_close(store);
    cd_calendars_free(cals);
    unit_db_remove(path);
    return 0;
}

/* ---- deadlines ---- */

static struct cd_dsar_deadlines due(void **state, const char *regime, enum cd_dsar_type t,
                                    const char *received)
{
    struct cd_dsar_deadlines d;
    assert_int_equal(cd_dsar_deadlines(*state, cd_str_c(regime), t, at(received), &d), CD_OK);
    return d;
}

static void gdpr_month_rolls_past_weekends_and_holidays(void **state)
{
    /* 31 January: the month ends on 28 February, a Saturday, so on Monday 2 March (Berlin). */
    struct cd_dsar_deadlines d = due(state, "gdpr", CD_DSAR_ACCESS, "2026-01-31T10:00:00Z");
    assert_int_equal(d.answer, at("2026-03-02T23:00:00Z"));
    assert_int_equal(d.unrolled, at("2026-02-28T23:00:00Z"));
    assert_int_equal(d.acknowledge, 0);
    /* Extended by two months: three months from receipt, 30 April (a Thursday). */
    assert_int_equal(d.extended, at("2026-04-30T22:00:00Z"));
    /* 25 November: 25 December and 26 are holidays, then a weekend: Monday 28 December. */
    d = due(state, "gdpr", CD_DSAR_ERASURE, "2026-11-25T09:00:00Z");
    assert_int_equal(d.answer, at("2026-12-28T23:00:00Z"));
    /* A month that ends on a business day does not move. */
    d = due(state, "gdpr", CD_DSAR_ERASURE, "2026-06-10T09:00:00Z");
    assert_int_equal(d.answer, at("2026-07-10T22:00:00Z"));
    assert_int_equal(d.unrolled, 0);
}

static void days_are_local_days_across_dst(void **state)
{
    /* 23:30 UTC on Saturday 28 March is 00:30 on Sunday 29 March in Berlin, the night clocks
     * go forward: the month runs from the 29th, to the end of 29 April (CEST). */
    struct cd_dsar_deadlines d = due(state, "gdpr", CD_DSAR_ACCESS, "2026-03-28T23:30:00Z");
    assert_int_equal(d.answer, at("2026-04-29T22:00:00Z"));
    /* Half an hour earlier it is still the 28th in Berlin. */
    d = due(state, "gdpr", CD_DSAR_ACCESS, "2026-03-28T22:30:00Z");
    assert_int_equal(d.answer, at("2026-04-28T22:00:00Z"));
    /* UK: a request on 26 October 2026 (the day after clocks go back) is due at the end of
     * 26 November, London time (GMT). */
    d = due(state, "uk-gdpr", CD_DSAR_ACCESS, "2026-10-26T12:00:00Z");
    assert_int_equal(d.answer, at("2026-11-27T00:00:00Z"));
}

static void ccpa_counts_business_days_and_the_day_of_receipt(void **state)
{
    /* Friday 20 November 2026, Pacific time. Ten business days to confirm, skipping
     * Thanksgiving and the day after (state holidays): the end of Tuesday 8 December. */
    struct cd_dsar_deadlines d = due(state, "ccpa", CD_DSAR_ACCESS, "2026-11-20T20:00:00Z");
    assert_int_equal(d.acknowledge, at("2026-12-09T08:00:00Z"));
    /* 45 calendar days beginning on the day of receipt: day 45 is Sunday 3 January 2027, and
     * CCPA days do not roll. */
    assert_int_equal(d.answer, at("2027-01-04T08:00:00Z"));
    assert_int_equal(d.unrolled, 0);
    /* Extended by 45: 90 days, to the end of 17 February. */
    assert_int_equal(d.extended, at("2027-02-18T08:00:00Z"));
    /* Opting out of sale or sharing: 15 business days, no extension, no confirmation. */
    d = due(state, "ccpa", CD_DSAR_OPT_OUT_SALE, "2026-11-20T20:00:00Z");
    assert_int_equal(d.answer, at("2026-12-16T08:00:00Z"));
    assert_int_equal(d.extended, 0);
    assert_int_equal(d.acknowledge, 0);
    d = due(state, "ccpa", CD_DSAR_LIMIT_SENSITIVE, "2026-11-20T20:00:00Z");
    assert_int_equal(d.answer, at("2026-12-16T08:00:00Z"));
}

static void regimes_follow_the_jurisdiction(void **state)
{
    assert_string_equal(cd_dsar_regime_for(*state, CD_STR("DE")), "gdpr");
    assert_string_equal(cd_dsar_regime_for(*state, CD_STR("US-CA")), "ccpa");
    assert_string_equal(cd_dsar_regime_for(*state, CD_STR("GB")), "uk-gdpr");
    assert_string_equal(cd_dsar_regime_for(*state, CD_STR("BR")), "default");
    assert_string_equal(cd_dsar_regime_for(*state, CD_STR("")), "default");
    struct cd_dsar_deadlines d;
    assert_int_equal(cd_dsar_deadlines(*state, CD_STR("nope"), CD_DSAR_ACCESS, 0, &d),
                     CD_ERR_NOT_FOUND);
    json_t *j = NULL;
    assert_int_equal(cd_dsar_rules_json(*state, &j), CD_OK);
    assert_int_equal(json_array_size(json_object_get(j, "items")), 4);
    json_decref(j);
}

static void bad_rules_are_refused_with_their_line(void **state)
{
    static const struct {
        const char *yaml, *why;
    } cases[] = {
        {"version: 1\ndue_soon_days: 7\nregimes:\n  - {id: a, name: A, calendar: nope, "
         "authority: x, basis: y, default: true, deadlines: {all: {answer: 1 month}}}\n",
         "t.yaml:4: calendar names no loaded calendar"},
        {"version: 1\ndue_soon_days: 7\nregimes:\n  - {id: a, name: A, calendar: de, "
         "authority: x, basis: y, default: true,\n     deadlines: {all: {answer: 1 month, "
         "extension: 45 days}}}\n",
         "t.yaml:5: extension must count in the same unit as answer"},
        {"version: 1\ndue_soon_days: 7\nregimes:\n  - {id: a, name: A, calendar: de, "
         "authority: x, basis: y, match: [EU], deadlines: {all: {answer: 1 month}}}\n",
         "exactly one regime must be the default"},
        {"version: 1\ndue_soon_days: 7\nregimes:\n  - {id: a, name: A, calendar: de, "
         "authority: x, basis: y, match: [EU], deadlines: {all: {answer: 1 month}}}\n"
         "  - {id: b, name: B, calendar: de, authority: x, basis: y, match: [EU], default: true,"
         " deadlines: {all: {answer: 1 month}}}\n",
         "t.yaml:5: this jurisdiction code is matched by another regime already"},
        {"version: 1\ndue_soon_days: 7\nregimes:\n  - {id: a, name: A, calendar: de, "
         "authority: x, basis: y, default: true, deadlines: {all: {answer: 1 fortnight}}}\n",
         "t.yaml:4: answer: "},
        {"version: 1\ndue_soon_days: 7\nregimes:\n  - {id: a, name: A, calendar: de, "
         "authority: x, basis: y, default: true, deadlines: {all: {answer: 1 month}, "
         "deletion: {answer: 1 month}}}\n",
         "unknown key 'deletion' in deadlines"},
        {"version: 1\ndue_soon_days: 7\nregimes:\n  - {id: a, name: A, calendar: de, "
         "authority: x, basis: y, default: true, deadlines: {erasure: {answer: 1 month}}}\n",
         "deadlines lacks the required key 'all'"},
        {"version: 2\ndue_soon_days: 7\nregimes: []\n", "t.yaml:1: version must be"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct cd_dsar_rules *r = NULL;
        assert_int_equal(cd_dsar_rules_parse(cals, "t.yaml", cases[i].yaml,
                                             strlen(cases[i].yaml), &r),
                         CD_ERR_INVALID);
        if (strstr(cd_err_detail(), cases[i].why) == NULL)
            fail_msg("case %zu: '%s' does not say '%s'", i, cd_err_detail(), cases[i].why);
        assert_null(r);
    }
}

/* ---- requests ---- */

static char *new_customer(const char *jurisdiction)
{
    static char id[CD_ID_MAX];
    json_t *body = json_pack("{s:s,s:[{s:s,s:s}]}", "jurisdiction", jurisdiction, "identities",
                             "type", "email", "value", "subject@example.org");
    json_t *c = NULL;
    bool replayed;

    /* A fresh address each time: identities are unique. */
    char email[64];
    static int n;
    snprintf(email, sizeof email, "subject%d@example.org", ++n);
    json_object_set_new(json_array_get(json_object_get(body, "identities"), 0), "value",
                        json_string(email));
    assert_int_equal(cd_core_customer_create(core, &actor, body, NULL, 0x1f, &c, &replayed),
                     CD_OK);
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(c, "id")));
    json_decref(c);
    json_decref(body);
    return id;
}

static json_t *open_request(const char *customer, const char *type, const char *received)
{
    json_t *body = json_pack("{s:s,s:s}", "customer_id", customer, "type", type);
    json_t *out = NULL;

    if (received)
        json_object_set_new(body, "received_at", json_string(received));
    enum cd_err err = cd_dsar_create(dsar, &actor, body, CD_DSAR_INTAKE_API, &out);
    if (err != CD_OK)
        fail_msg("create: %s (%s)", cd_err_name(err), cd_err_detail());
    json_decref(body);
    return out;
}

static enum cd_err move(const char *id, const char *state, const char *reason, json_t **out)
{
    json_t *body = json_pack("{s:s}", "state", state);
    json_t *o = NULL;

    if (reason)
        json_object_set_new(body, "reason", json_string(reason));
    enum cd_err err = cd_dsar_transition(dsar, &actor, cd_str_c(id), body, &o);
    json_decref(body);
    if (out)
        *out = o;
    else
        json_decref(o);
    return err;
}

static const char *sv(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static void lifecycle_refuses_illegal_transitions(void **state)
{
    char cid[CD_ID_MAX], rid[CD_ID_MAX];
    json_t *r = NULL;

    snprintf(cid, sizeof cid, "%s", new_customer("DE"));
    r = open_request(cid, "access", NULL);
    assert_string_equal(sv(r, "state"), "received");
    assert_string_equal(sv(r, "regime"), "gdpr");
    snprintf(rid, sizeof rid, "%s", sv(r, "id"));
    json_decref(r);
    /* Nothing closes twice, and nothing goes back. */
    assert_int_equal(move(rid, "completed", NULL, NULL), CD_ERR_CONFLICT);
    assert_non_null(strstr(cd_err_detail(), "received cannot become completed"));
    assert_int_equal(move(rid, "received", NULL, NULL), CD_ERR_INVALID);
    assert_int_equal(move(rid, "verifying", NULL, NULL), CD_OK);
    assert_int_equal(move(rid, "in_progress", NULL, &r), CD_OK);
    assert_non_null(sv(r, "acknowledged_at"));
    json_decref(r);
    assert_int_equal(move(rid, "verifying", NULL, NULL), CD_ERR_CONFLICT);
    /* A refusal needs its reason, and names the authority. */
    assert_int_equal(move(rid, "refused", NULL, NULL), CD_ERR_INVALID);
    assert_int_equal(move(rid, "refused", "because", NULL), CD_ERR_INVALID);
    assert_int_equal(move(rid, "refused", "excessive", &r), CD_OK);
    json_t *ref = json_object_get(r, "refusal");
    assert_string_equal(sv(ref, "reason"), "excessive");
    assert_non_null(strstr(sv(ref, "complaint"), "supervisory authority"));
    assert_non_null(sv(r, "closed_at"));
    assert_int_equal(json_array_size(json_object_get(r, "history")), 4);
    json_decref(r);
    assert_int_equal(move(rid, "withdrawn", NULL, NULL), CD_ERR_CONFLICT);
    assert_int_equal(move("dsr_00000000000000000000000000", "withdrawn", NULL, NULL),
                     CD_ERR_NOT_FOUND);
    assert_int_equal(move("nope", "withdrawn", NULL, NULL), CD_ERR_NOT_FOUND);
}

static enum cd_err extend(const char *id, const char *reason, const char *why, json_t **out)
{
    json_t *body = json_pack("{s:s}", "reason", reason);
    json_t *o = NULL;

    if (why)
        json_object_set_new(body, "explanation", json_string(why));
    enum cd_err err = cd_dsar_extend(dsar, &actor, cd_str_c(id), body, &o);
    json_decref(body);
    if (out)
        *out = o;
    else
        json_decref(o);
    return err;
}

static void extension_once_before_the_deadline(void **state)
{
    char cid[CD_ID_MAX], rid[CD_ID_MAX];
    json_t *r;

    fake_now = at("2026-02-10T12:00:00Z");
    cd_clock_override(fake_clock);
    snprintf(cid, sizeof cid, "%s", new_customer("DE"));
    r = open_request(cid, "access", "2026-01-31T10:00:00Z");
    snprintf(rid, sizeof rid, "%s", sv(r, "id"));
    assert_string_equal(sv(r, "due_at"), "2026-03-02T23:00:00.000Z");
    assert_string_equal(sv(json_object_get(r, "deadline"), "rolled_from"), "2026-02-28");
    json_decref(r);
    /* Only a request in progress is extended, with a reason the customer is told. */
    assert_int_equal(extend(rid, "complexity", "Your records span three systems.", NULL),
                     CD_ERR_CONFLICT);
    assert_int_equal(move(rid, "in_progress", NULL, NULL), CD_OK);
    assert_int_equal(extend(rid, "complexity", NULL, NULL), CD_ERR_INVALID);
    assert_int_equal(extend(rid, "boredom", "x", NULL), CD_ERR_INVALID);
    assert_int_equal(extend(rid, "complexity", "Your records span three systems.", &r), CD_OK);
    assert_string_equal(sv(r, "state"), "extended");
    assert_string_equal(sv(r, "due_at"), "2026-04-30T22:00:00.000Z");
    assert_string_equal(sv(r, "original_due_at"), "2026-03-02T23:00:00.000Z");
    assert_string_equal(sv(json_object_get(r, "deadline"), "rule"), "3 months");
    json_decref(r);
    /* The explanation is sealed: shown only when texts are asked for. */
    assert_int_equal(cd_dsar_get(dsar, cd_str_c(rid), NULL, true, &r), CD_OK);
    assert_string_equal(sv(json_object_get(r, "extension"), "explanation"),
                        "Your records span three systems.");
    json_decref(r);
    /* Twice is refused, whatever the reason. */
    assert_int_equal(extend(rid, "number_of_requests", "Again.", NULL), CD_ERR_CONFLICT);
    assert_non_null(strstr(cd_err_detail(), "one extension"));
    assert_int_equal(move(rid, "completed", NULL, NULL), CD_OK);

    /* After the deadline, no extension. */
    r = open_request(cid, "erasure", "2026-01-31T10:00:00Z");
    snprintf(rid, sizeof rid, "%s", sv(r, "id"));
    json_decref(r);
    assert_int_equal(move(rid, "in_progress", NULL, NULL), CD_OK);
    fake_now = at("2026-03-03T00:00:00Z");
    assert_int_equal(extend(rid, "complexity", "Late.", NULL), CD_ERR_CONFLICT);
    assert_non_null(strstr(cd_err_detail(), "deadline has passed"));

    /* CCPA opt-outs allow no extension. */
    snprintf(cid, sizeof cid, "%s", new_customer("US-CA"));
    r = open_request(cid, "opt_out_sale_sharing", NULL);
    snprintf(rid, sizeof rid, "%s", sv(r, "id"));
    assert_string_equal(sv(r, "regime"), "ccpa");
    json_decref(r);
    assert_int_equal(move(rid, "in_progress", NULL, NULL), CD_OK);
    assert_int_equal(extend(rid, "complexity", "x", NULL), CD_ERR_CONFLICT);
    assert_non_null(strstr(cd_err_detail(), "allow no extension"));
}

static void bad_requests_change_nothing(void **state)
{
    static const char *const bodies[] = {
        "{\"type\":\"access\"}",                                    /* no customer */
        "{\"customer_id\":\"%s\"}",                                 /* no type */
        "{\"customer_id\":\"%s\",\"type\":\"delete\"}",             /* unknown type */
        "{\"customer_id\":\"%s\",\"type\":7}",                      /* wrong type */
        "{\"customer_id\":\"%s\",\"type\":\"access\",\"x\":1}",     /* unknown member */
        "{\"customer_id\":\"%s\",\"type\":\"access\",\"received_at\":\"2999-01-01T00:00:00Z\"}",
        "{\"customer_id\":\"%s\",\"type\":\"access\",\"received_at\":\"yesterday\"}",
        "{\"customer_id\":\"%s\",\"type\":\"access\",\"jurisdiction\":\"eu\"}",
    };
    char cid[CD_ID_MAX], text[300];
    json_t *list = NULL;
    struct cd_dsar_query q = {.limit = 50};

    snprintf(cid, sizeof cid, "%s", new_customer("DE"));
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        json_t *body, *out = NULL;
        /* The customer id goes where the template says %s. */
        const char *hole = strstr(bodies[i], "%s");
        if (hole)
            snprintf(text, sizeof text, "%.*s%s%s", (int)(hole - bodies[i]), bodies[i], cid,
                     hole + 2);
        else
            snprintf(text, sizeof text, "%s", bodies[i]);
        assert_int_equal(cd_json_parse_object(text, strlen(text), &body), CD_OK);
        assert_int_equal(cd_dsar_create(dsar, &actor, body, CD_DSAR_INTAKE_API, &out),
                         CD_ERR_INVALID);
        assert_null(out);
        json_decref(body);
    }
    json_t *body = json_pack("{s:s,s:s}", "customer_id", "cus_00000000000000000000000000",
                             "type", "access"), *out = NULL;
    assert_int_equal(cd_dsar_create(dsar, &actor, body, CD_DSAR_INTAKE_API, &out),
                     CD_ERR_NOT_FOUND);
    json_decref(body);
    assert_int_equal(cd_dsar_list(dsar, &q, &list), CD_OK);
    assert_int_equal(json_array_size(json_object_get(list, "items")), 0);
    json_decref(list);
}

static void interaction_starts_the_clock(void **state)
{
    char cid[CD_ID_MAX], iid[CD_ID_MAX];
    struct cd_buf b = CD_BUF_INIT(1 << 20);
    json_t *in, *r = NULL, *body;
    bool replayed;

    fake_now = at("2026-05-20T08:00:00Z");
    cd_clock_override(fake_clock);
    snprintf(cid, sizeof cid, "%s", new_customer("DE"));
    in = json_pack("{s:s,s:s,s:s,s:s,s:s}", "customer_id", cid, "channel", "email", "direction",
                   "inbound", "occurred_at", "2026-05-04T09:00:00Z", "body",
                   "please delete my account");
    assert_int_equal(cd_core_interaction_ingest(core, &actor, in, NULL, 0x1f, &b, NULL,
                                                &replayed), CD_OK);
    json_decref(in);
    in = json_loads(b.p, 0, NULL);
    snprintf(iid, sizeof iid, "%s", sv(in, "id"));
    json_decref(in);
    cd_buf_free(&b);
    /* Converted weeks later: the month runs from the message, not from the conversion. */
    body = json_pack("{s:s,s:s}", "interaction_id", iid, "type", "erasure");
    assert_int_equal(cd_dsar_create(dsar, &actor, body, CD_DSAR_INTAKE_INTERACTION, &r), CD_OK);
    assert_string_equal(sv(r, "received_at"), "2026-05-04T09:00:00.000Z");
    assert_string_equal(sv(r, "customer_id"), cid);
    assert_string_equal(sv(r, "intake"), "interaction");
    assert_string_equal(sv(r, "interaction_id"), iid);
    assert_string_equal(sv(r, "due_at"), "2026-06-04T22:00:00.000Z");
    json_decref(r);
    json_decref(body);
    /* Conversion needs an interaction. */
    body = json_pack("{s:s,s:s}", "customer_id", cid, "type", "erasure");
    assert_int_equal(cd_dsar_create(dsar, &actor, body, CD_DSAR_INTAKE_INTERACTION, &r),
                     CD_ERR_INVALID);
    json_decref(body);
    body = json_pack("{s:s,s:s}", "interaction_id", "int_00000000000000000000000000", "type",
                     "erasure");
    assert_int_equal(cd_dsar_create(dsar, &actor, body, CD_DSAR_INTAKE_INTERACTION, &r),
                     CD_ERR_NOT_FOUND);
    json_decref(body);
}

static size_t listed(const char *due, const char *state)
{
    struct cd_dsar_query q = {.due = cd_str_c(due), .state = cd_str_c(state), .limit = 200};
    json_t *l = NULL;

    assert_int_equal(cd_dsar_list(dsar, &q, &l), CD_OK);
    size_t n = json_array_size(json_object_get(l, "items"));
    json_decref(l);
    return n;
}

static void overdue_and_due_soon_lists_and_counts(void **state)
{
    char cid[CD_ID_MAX], first[CD_ID_MAX];
    struct cd_dsar_counts n;
    json_t *r;

    fake_now = at("2026-06-01T08:00:00Z");
    cd_clock_override(fake_clock);
    snprintf(cid, sizeof cid, "%s", new_customer("DE"));
    r = open_request(cid, "access", "2026-04-20T08:00:00Z");      /* due 20 May: overdue */
    snprintf(first, sizeof first, "%s", sv(r, "id"));
    assert_true(json_is_true(json_object_get(r, "overdue")));
    json_decref(r);
    json_decref(open_request(cid, "erasure", "2026-05-05T08:00:00Z"));  /* due 5 June: soon */
    json_decref(open_request(cid, "restriction", "2026-05-30T08:00:00Z")); /* due 30 June */
    assert_int_equal(listed("overdue", ""), 1);
    assert_int_equal(listed("due_soon", ""), 1);
    assert_int_equal(listed("", "open"), 3);
    assert_int_equal(listed("", "received"), 3);
    assert_int_equal(listed("", "closed"), 0);
    assert_int_equal(cd_dsar_counts(store, fake_now, &n), CD_OK);
    assert_int_equal(n.by_state[CD_DSAR_RECEIVED], 3);
    assert_int_equal(n.overdue, 1);
    /* Closing the overdue one takes it off the list. */
    assert_int_equal(move(first, "withdrawn", NULL, NULL), CD_OK);
    assert_int_equal(listed("overdue", ""), 0);
    assert_int_equal(cd_dsar_counts(store, fake_now, &n), CD_OK);
    assert_int_equal(n.overdue, 0);
    assert_int_equal(n.by_state[CD_DSAR_WITHDRAWN], 1);
    /* A CCPA request whose confirmation is late is overdue too. */
    snprintf(cid, sizeof cid, "%s", new_customer("US-CA"));
    json_decref(open_request(cid, "access", "2026-05-01T18:00:00Z"));
    assert_int_equal(cd_dsar_counts(store, fake_now, &n), CD_OK);
    assert_int_equal(n.ack_overdue, 1);
    assert_int_equal(listed("overdue", ""), 1);
    /* Pages follow a cursor. */
    struct cd_dsar_query q = {.limit = 2};
    json_t *l = NULL, *l2 = NULL;
    assert_int_equal(cd_dsar_list(dsar, &q, &l), CD_OK);
    assert_int_equal(json_array_size(json_object_get(l, "items")), 2);
    q.cursor = cd_str_c(sv(l, "next_cursor"));
    assert_int_equal(cd_dsar_list(dsar, &q, &l2), CD_OK);
    assert_int_equal(json_array_size(json_object_get(l2, "items")), 2);
    assert_true(json_is_null(json_object_get(l2, "next_cursor")));
    json_decref(l);
    json_decref(l2);
    q.cursor = CD_STR("bm9wZQ");
    assert_int_equal(cd_dsar_list(dsar, &q, &l), CD_ERR_INVALID);
}

/* ---- fulfilment ---- */

static size_t read_file(const char *file, char **out)
{
    FILE *f = fopen(file, "rb");
    static char buf[1 << 24];
    size_t n = 0;

    *out = buf;
    if (f == NULL)
        return 0;
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return n;
}

/* Whether the raw bytes of the database file or its write-ahead log hold needle. */
static bool on_disk(const void *needle, size_t n)
{
    char *bytes, wal[300];
    size_t len = read_file(path, &bytes);

    if (memmem(bytes, len, needle, n))
        return true;
    snprintf(wal, sizeof wal, "%s-wal", path);
    len = read_file(wal, &bytes);
    return memmem(bytes, len, needle, n) != NULL;
}

/* Every sealed value and key of a customer as stored, read the way someone with the file would. */
struct sealed {
    size_t n;
    uint8_t v[64][48]; /* the first 48 bytes of each (nonce and the start of the ciphertext) */
};

static enum cd_err sealed_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct sealed *s = ctx;
    for (size_t i = 0; i < n && s->n < 64; i++)
        if (c[i].type == CD_VAL_BLOB && c[i].len >= 48)
            memcpy(s->v[s->n++], c[i].p, 48);
    return CD_OK;
}

struct sealed_q {
    const char *cid;
    struct sealed *s;
};

static enum cd_err sealed_fn(struct cd_tx *tx, void *ctx)
{
    struct sealed_q *q = ctx;
    struct cd_val p[] = {CD_VCSTR(q->cid)};
    enum cd_err err;

    q->s->n = 0;
    if ((err = cd_tx_exec(tx, "SELECT key_wrapped, display_name, attributes FROM customers"
                              " WHERE id = $1", p, 1, sealed_row, q->s, NULL)) != CD_OK ||
        (err = cd_tx_exec(tx, "SELECT value FROM identities WHERE customer_id = $1", p, 1,
                          sealed_row, q->s, NULL)) != CD_OK ||
        (err = cd_tx_exec(tx, "SELECT details FROM dsar_requests WHERE customer_id = $1", p, 1,
                          sealed_row, q->s, NULL)) != CD_OK)
        return err;
    return cd_tx_exec(tx, "SELECT subject, body, metadata, thread FROM interactions"
                          " WHERE customer_id = $1", p, 1, sealed_row, q->s, NULL);
}

struct count_q {
    const char *sql, *cid;
    int64_t n;
};

static enum cd_err count_fn(struct cd_tx *tx, void *ctx)
{
    struct count_q *q = ctx;
    struct cd_val p[] = {CD_VCSTR(q->cid)};
    return cd_tx_int(tx, q->sql, p, 1, &q->n);
}

static int64_t count_rows(const char *sql, const char *cid)
{
    struct count_q q = {sql, cid, -1};
    assert_int_equal(cd_store_read(store, count_fn, &q), CD_OK);
    return q.n;
}

static char *ingest_for(const char *email, const char *text)
{
    static _Thread_local char id[CD_ID_MAX]; /* the feeders call it from their threads */
    struct cd_buf b = CD_BUF_INIT(1 << 20);
    json_t *in = json_pack("{s:{s:s,s:s},s:s,s:s,s:s,s:s,s:s}", "identity", "type", "email",
                           "value", email, "channel", "email", "direction", "inbound",
                           "thread_id", "thread-of-a-subject", "subject", "About me", "body",
                           text);
    bool replayed;
    enum cd_err err = cd_core_interaction_ingest(core, &actor, in, NULL, 0x1f, &b, NULL,
                                                 &replayed);
    json_decref(in);
    id[0] = '\0';
    if (err != CD_OK)
        fprintf(stderr, "ingest: %s (%s)\n", cd_err_name(err), cd_err_detail());
    if (err == CD_OK) {
        json_t *o = json_loads(b.p, 0, NULL);
        snprintf(id, sizeof id, "%s", json_string_value(json_object_get(o, "customer_id")));
        json_decref(o);
    }
    cd_buf_free(&b);
    return id;
}

static enum cd_err fulfil(const char *id, const char *body_text, json_t **out, json_t **holds)
{
    json_t *body = json_loads(body_text, 0, NULL), *o = NULL, *h = NULL;
    enum cd_err err = cd_dsar_fulfil(dsar, &actor, cd_str_c(id), body, &o, &h);

    json_decref(body);
    if (out)
        *out = o;
    else
        json_decref(o);
    if (holds)
        *holds = h;
    else
        json_decref(h);
    return err;
}

static char *erasure_request(const char *cid)
{
    static char rid[CD_ID_MAX];
    json_t *r = open_request(cid, "erasure", NULL);

    snprintf(rid, sizeof rid, "%s", sv(r, "id"));
    json_decref(r);
    assert_int_equal(move(rid, "in_progress", NULL, NULL), CD_OK);
    return rid;
}

static void erasure_leaves_nothing_on_disk(void **state)
{
    char cid[CD_ID_MAX], rid[CD_ID_MAX];
    struct sealed before;
    struct sealed_q q = {cid, &before};
    json_t *r = NULL, *c = NULL;

    snprintf(cid, sizeof cid, "%s", ingest_for("erase.me@example.org", "my diagnosis is X"));
    assert_true(cid[0]);
    ingest_for("erase.me@example.org", "and my new address");
    json_t *consent_body = json_pack("{s:s,s:s,s:s,s:s}", "customer_id", cid, "purpose",
                                     "marketing", "state", "given", "method", "web_form");
    assert_int_equal(cd_consent_record(consent, &actor, consent_body, &c), CD_OK);
    json_decref(consent_body);
    json_decref(c);
    snprintf(rid, sizeof rid, "%s", erasure_request(cid));
    assert_int_equal(cd_store_read(store, sealed_fn, &q), CD_OK);
    assert_true(before.n >= 8); /* key, identity, 2 x (subject, body, thread) */
    /* The search sees them now: otherwise their absence afterwards would prove nothing. */
    for (size_t i = 0; i < before.n; i++)
        assert_true(on_disk(before.v[i], 48));

    assert_int_equal(fulfil(rid, "{}", &r, NULL), CD_OK);
    assert_string_equal(sv(r, "state"), "completed");
    json_t *t = json_object_get(r, "tombstone");
    assert_non_null(t);
    assert_string_equal(sv(t, "customer_id"), cid);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(t, "counts"),
                                                        "interactions")), 2);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(t, "counts"),
                                                        "consent_events")), 1);
    json_decref(r);
    /* No row, no key, no ciphertext of theirs is left in the file or its log. */
    for (size_t i = 0; i < before.n; i++)
        if (on_disk(before.v[i], 48))
            fail_msg("sealed value %zu of the erased customer is still on disk", i);
    assert_int_equal(count_rows("SELECT count(*) FROM interactions WHERE customer_id = $1", cid), 0);
    assert_int_equal(count_rows("SELECT count(*) FROM identities WHERE customer_id = $1", cid), 0);
    assert_int_equal(count_rows("SELECT count(*) FROM consent_events WHERE customer_id = $1", cid),
                     0);
    assert_int_equal(count_rows("SELECT count(*) FROM idempotency WHERE resource_id = $1", cid), 0);
    /* The consent engine forgot them: marketing is no longer allowed for that id. */
    struct cd_consent_decision d;
    assert_int_equal(cd_consent_decide(consent, cd_str_c(cid), CD_PURPOSE_MARKETING,
                                       CD_CONSENT_CHANNEL_ANY, cd_now_ms(), &d), CD_OK);
    assert_false(d.allow);
    /* Those the customer's data was shared with are told, in the same transaction. */
    assert_int_equal(count_rows("SELECT count(*) FROM outbox_events WHERE customer_id = $1"
                                " AND type IN ('customer.erased', 'dsar.completed',"
                                " 'dsar.opened')", cid), 3);
    /* Nothing twice. */
    assert_int_equal(fulfil(rid, "{}", NULL, NULL), CD_ERR_CONFLICT);
}

static void legal_hold_stops_erasure(void **state)
{
    char cid[CD_ID_MAX], rid[CD_ID_MAX];
    json_t *holds = NULL, *out = NULL;

    snprintf(cid, sizeof cid, "%s", ingest_for("held@example.org", "keep me"));
    snprintf(rid, sizeof rid, "%s", erasure_request(cid));
    json_t *hb = json_pack("{s:s,s:s}", "reason", "Litigation 2026-114", "legal_basis",
                           "legal_claims");
    assert_int_equal(cd_retention_hold_create(store, &actor, cd_str_c(cid), hb, &out), CD_OK);
    json_decref(hb);
    json_decref(out);
    out = NULL;
    assert_int_equal(fulfil(rid, "{}", &out, &holds), CD_ERR_CONFLICT);
    assert_non_null(strstr(cd_err_detail(), "legal hold"));
    assert_null(out);
    assert_int_equal(json_array_size(holds), 1);
    json_decref(holds);
    /* Nothing changed: the rows are there and the request is still in progress. */
    assert_int_equal(count_rows("SELECT count(*) FROM interactions WHERE customer_id = $1", cid), 1);
    assert_int_equal(count_rows("SELECT count(*) FROM dsar_tombstones WHERE customer_id = $1", cid),
                     0);
    assert_int_equal(cd_dsar_get(dsar, cd_str_c(rid), NULL, false, &out), CD_OK);
    assert_string_equal(sv(out, "state"), "in_progress");
    json_decref(out);
    assert_int_equal(move(rid, "refused", "legal_hold", NULL), CD_OK);
}

struct feeder {
    volatile bool stop;
    int done, failed;
};

static void *feed(void *arg)
{
    struct feeder *f = arg;
    char text[64];

    while (!f->stop) {
        snprintf(text, sizeof text, "message %d", f->done);
        if (ingest_for("busy@example.org", text)[0])
            f->done++;
        else
            f->failed++;
    }
    return NULL;
}

static void erasure_during_ingestion(void **state)
{
    char cid[CD_ID_MAX], rid[CD_ID_MAX];
    struct sealed before;
    struct sealed_q q = {cid, &before};
    struct feeder f = {0};
    pthread_t t[2];
    struct cd_core_rows_report rep;

    snprintf(cid, sizeof cid, "%s", ingest_for("busy@example.org", "first"));
    snprintf(rid, sizeof rid, "%s", erasure_request(cid));
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, feed, &f);
    while (f.done < 20)
        usleep(1000);
    assert_int_equal(cd_store_read(store, sealed_fn, &q), CD_OK);
    assert_int_equal(fulfil(rid, "{}", NULL, NULL), CD_OK);
    int at_erasure = f.done;
    while (f.done < at_erasure + 20)
        usleep(1000);
    f.stop = true;
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(f.failed, 0);
    /* Messages that arrived after the erasure started a new customer; none is filed under the
     * erased one, and nothing sealed for them (before the erasure) is left on disk. */
    assert_int_equal(count_rows("SELECT count(*) FROM interactions WHERE customer_id = $1", cid), 0);
    assert_true(count_rows("SELECT count(*) FROM interactions WHERE customer_id <> $1", cid) >= 20);
    for (size_t i = 0; i < before.n; i++)
        if (on_disk(before.v[i], 48))
            fail_msg("sealed value %zu of the erased customer is still on disk", i);
    /* Every row left opens under its own customer's key. */
    assert_int_equal(cd_core_verify_rows(core, &rep, NULL), CD_OK);
}

static void restriction_objection_rectification(void **state)
{
    char cid[CD_ID_MAX], rid[CD_ID_MAX];
    json_t *r, *c = NULL;
    struct cd_consent_decision d;

    snprintf(cid, sizeof cid, "%s", new_customer("US-CA"));
    /* Opt-out regime: marketing is allowed until the customer objects. */
    assert_int_equal(cd_consent_decide_exact(consent, cd_str_c(cid), CD_PURPOSE_MARKETING,
                                             CD_CONSENT_CHANNEL_EMAIL, CD_STR_NULL, cd_now_ms(),
                                             &d), CD_OK);
    assert_true(d.allow);
    r = open_request(cid, "objection", NULL);
    snprintf(rid, sizeof rid, "%s", sv(r, "id"));
    json_decref(r);
    assert_int_equal(fulfil(rid, "{}", NULL, NULL), CD_ERR_CONFLICT); /* not in progress */
    assert_int_equal(move(rid, "in_progress", NULL, NULL), CD_OK);
    assert_int_equal(fulfil(rid, "{\"purposes\":[\"nonsense\"]}", NULL, NULL), CD_ERR_INVALID);
    assert_int_equal(fulfil(rid, "{}", &r, NULL), CD_OK);
    assert_string_equal(sv(r, "state"), "completed");
    assert_int_equal(json_array_size(json_object_get(r, "consent_events")), 4);
    json_decref(r);
    /* In force at once. */
    assert_int_equal(cd_consent_decide(consent, cd_str_c(cid), CD_PURPOSE_MARKETING,
                                       CD_CONSENT_CHANNEL_EMAIL, cd_now_ms(), &d), CD_OK);
    assert_false(d.allow);

    r = open_request(cid, "restriction", NULL);
    snprintf(rid, sizeof rid, "%s", sv(r, "id"));
    json_decref(r);
    assert_int_equal(move(rid, "in_progress", NULL, NULL), CD_OK);
    assert_int_equal(fulfil(rid, "{}", NULL, NULL), CD_OK);
    assert_int_equal(count_rows("SELECT restricted FROM customers WHERE id = $1", cid), 1);

    r = open_request(cid, "rectification", NULL);
    snprintf(rid, sizeof rid, "%s", sv(r, "id"));
    json_decref(r);
    assert_int_equal(move(rid, "in_progress", NULL, NULL), CD_OK);
    assert_int_equal(fulfil(rid, "{\"changes\":{\"display_name\":7}}", NULL, NULL),
                     CD_ERR_INVALID);
    assert_int_equal(fulfil(rid, "{\"changes\":{\"display_name\":\"Corrected Name\"}}", &r,
                            NULL), CD_OK);
    assert_string_equal(sv(r, "state"), "completed");
    json_decref(r);
    assert_int_equal(cd_core_customer_get(core, &actor, cd_str_c(cid), 0x1f, &c), CD_OK);
    assert_string_equal(sv(c, "display_name"), "Corrected Name");
    json_decref(c);

    r = open_request(cid, "access", NULL);
    snprintf(rid, sizeof rid, "%s", sv(r, "id"));
    json_decref(r);
    assert_int_equal(move(rid, "in_progress", NULL, NULL), CD_OK);
    assert_int_equal(fulfil(rid, "{}", NULL, NULL), CD_ERR_CONFLICT);
}

/* Opens a request of cid and moves it to in_progress; its id goes to rid. */
static void in_progress(const char *cid, const char *type, char rid[CD_ID_MAX])
{
    json_t *r = open_request(cid, type, NULL);

    snprintf(rid, CD_ID_MAX, "%s", sv(r, "id"));
    json_decref(r);
    assert_int_equal(move(rid, "in_progress", NULL, NULL), CD_OK);
}

/* The customer hears of an extension and why: dsar.extended is queued with the extension, its
 * explanation sealed like the request's own copy. */
static void extension_is_told_to_the_customer(void **state)
{
    static const char why[] = "Your records are kept in three systems.";
    char cid[CD_ID_MAX], rid[CD_ID_MAX];
    const char *told = "SELECT count(*) FROM outbox_events WHERE type = 'dsar.extended'"
                       " AND customer_id = $1 AND personal IS NOT NULL";

    snprintf(cid, sizeof cid, "%s", new_customer("DE"));
    in_progress(cid, "access", rid);
    /* A refused extension tells nothing. */
    assert_int_equal(extend(rid, "complexity", "", NULL), CD_ERR_INVALID);
    assert_int_equal(count_rows(told, cid), 0);
    assert_int_equal(extend(rid, "complexity", why, NULL), CD_OK);
    assert_int_equal(count_rows(told, cid), 1);
    assert_int_equal(count_rows("SELECT count(*) FROM outbox_events WHERE type = 'dsar.extended'"
                                " AND payload LIKE '%' || $1 || '%'", rid), 1);
    assert_false(on_disk(why, strlen(why)));
    assert_int_equal(extend(rid, "other", "Again.", NULL), CD_ERR_CONFLICT);
    assert_int_equal(count_rows(told, cid), 1);
}

/* A request that changed the customer's data shows which recipients were told, and when; the
 * notices of another change of the same customer are not its own. */
static void requests_show_the_recipients_told(void **state)
{
    static const struct cd_outbox_actor oa = {"tok_test", "admin", "unit test", NULL};
    char cid[CD_ID_MAX], rid[CD_ID_MAX];
    json_t *body, *rcp = NULL, *r, *told;

    body = json_pack("{s:s,s:s,s:s,s:[s],s:[s],s:s}", "name", "Mailing house", "kind",
                     "processor", "contact", "privacy@mailing.example", "purposes", "marketing",
                     "categories", "contact", "scope", "all");
    assert_int_equal(cd_outbox_recipient_create(ob, &oa, body, &rcp), CD_OK);
    json_decref(body);
    snprintf(cid, sizeof cid, "%s", new_customer("DE"));
    /* A restriction outside any request tells the recipient; no request claims it. */
    for (int on = 1; on >= 0; on--) {
        assert_int_equal(cd_core_customer_restrict(core, &actor, cd_str_c(cid), on,
                                                   CD_FIELDS_REFERENCE, &r), CD_OK);
        json_decref(r);
    }
    r = open_request(cid, "rectification", NULL);
    snprintf(rid, sizeof rid, "%s", sv(r, "id"));
    assert_int_equal(json_array_size(json_object_get(r, "recipients_told")), 0);
    json_decref(r);
    assert_int_equal(move(rid, "in_progress", NULL, NULL), CD_OK);
    assert_int_equal(fulfil(rid, "{\"changes\":{\"display_name\":\"Right Name\"}}", &r, NULL),
                     CD_OK);
    told = json_object_get(r, "recipients_told");
    assert_int_equal(json_array_size(told), 1);
    assert_string_equal(sv(json_array_get(told, 0), "recipient_id"), sv(rcp, "id"));
    assert_string_equal(sv(json_array_get(told, 0), "event_type"), "customer.rectified");
    assert_string_equal(sv(json_array_get(told, 0), "status"), "pending");
    assert_string_equal(sv(json_array_get(told, 0), "request_id"), rid);
    json_decref(r);
    /* The same through a fresh read, and for a restriction in its own transaction. */
    in_progress(cid, "restriction", rid);
    assert_int_equal(fulfil(rid, "{}", NULL, NULL), CD_OK);
    assert_int_equal(cd_dsar_get(dsar, cd_str_c(rid), NULL, false, &r), CD_OK);
    told = json_object_get(r, "recipients_told");
    assert_int_equal(json_array_size(told), 1);
    assert_string_equal(sv(json_array_get(told, 0), "event_type"), "customer.restricted");
    json_decref(r);
    /* The two restrictions before the requests stay nobody's. */
    assert_int_equal(count_rows("SELECT count(*) FROM recipient_notices WHERE customer_id = $1"
                                " AND request_id IS NULL", cid), 2);
    json_decref(rcp);
}

/* The watcher tells dsar.due_soon once per request that comes within the window of its
 * deadline, and again only when an extension gives it a new deadline. */
static void due_soon_is_told_once(void **state)
{
    char cid[CD_ID_MAX], soon[CD_ID_MAX];
    struct cd_dsar_counts n;
    json_t *r;
    const char *told = "SELECT count(*) FROM outbox_events WHERE type = 'dsar.due_soon'"
                       " AND customer_id = $1";

    fake_now = at("2026-06-01T08:00:00Z");
    cd_clock_override(fake_clock);
    snprintf(cid, sizeof cid, "%s", new_customer("DE"));
    json_decref(open_request(cid, "access", "2026-04-20T08:00:00Z")); /* overdue: not soon */
    r = open_request(cid, "erasure", "2026-05-05T08:00:00Z");         /* due 5 June: soon */
    snprintf(soon, sizeof soon, "%s", sv(r, "id"));
    json_decref(r);
    json_decref(open_request(cid, "restriction", "2026-05-30T08:00:00Z")); /* due 30 June */
    assert_int_equal(cd_dsar_start(dsar, 10), CD_OK);
    while (!cd_dsar_counts_cached(dsar, &n))
        usleep(1000);
    usleep(100 * 1000); /* several more passes */
    assert_int_equal(count_rows(told, cid), 1);
    assert_int_equal(count_rows("SELECT count(*) FROM outbox_events WHERE type = 'dsar.due_soon'"
                                " AND payload LIKE '%' || $1 || '%'", soon), 1);
    /* Extended, it has a new deadline three months from receipt: not soon, until it is. */
    assert_int_equal(move(soon, "in_progress", NULL, NULL), CD_OK);
    assert_int_equal(extend(soon, "complexity", "Three systems hold your data.", NULL), CD_OK);
    usleep(100 * 1000);
    assert_int_equal(count_rows(told, cid), 1);
    fake_now = at("2026-07-30T08:00:00Z");
    usleep(100 * 1000);
    /* The extended erasure (due 5 August) is told; the restriction, now overdue, is not. */
    assert_int_equal(count_rows(told, cid), 2);
}

/* ---- identity verification ---- */

/* The outbox as wired, with the last code it was given kept aside: what a subscriber to
 * dsar.verification_code would deliver to the customer. */
static char sent_code[16], sent_to[128];

static enum cd_err capture_enqueue(struct cd_tx *tx, const char *type, struct cd_str customer_id,
                                   const json_t *payload, char id_out[CD_ID_MAX])
{
    if (strcmp(type, "dsar.verification_code") == 0) {
        snprintf(sent_code, sizeof sent_code, "%s", sv((json_t *)payload, "code"));
        snprintf(sent_to, sizeof sent_to, "%s", sv((json_t *)payload, "to"));
    }
    return cd_outbox_enqueue(tx, type, customer_id, payload, id_out);
}

static enum cd_err send_code(const char *rid, const char *body_text, json_t **out)
{
    json_t *body = json_loads(body_text, 0, NULL), *o = NULL;
    enum cd_err err = cd_dsar_verification_send(dsar, &actor, cd_str_c(rid), body, &o);

    json_decref(body);
    if (out)
        *out = o;
    else
        json_decref(o);
    return err;
}

/* Checks code; returns the error and the outcome's name ("verified" on success). */
static enum cd_err check_code(const char *rid, const char *code, char outcome[32])
{
    json_t *body = json_pack("{s:s}", "code", code), *o = NULL, *f = NULL;
    enum cd_err err = cd_dsar_verification_check(dsar, &actor, cd_str_c(rid), body, &o, &f);

    json_decref(body);
    snprintf(outcome, 32, "%s", err == CD_OK ? "verified" : f ? sv(f, "outcome") : "-");
    if (err == CD_OK)
        assert_string_equal(sv(o, "state"), "in_progress");
    json_decref(o);
    json_decref(f);
    return err;
}

/* A code that is surely not the one sent. */
static const char *other_code(void)
{
    static char c[16];
    snprintf(c, sizeof c, "%08d", (int)((strtol(sent_code, NULL, 10) + 1) % 100000000));
    return c;
}

static char *verification_request(const char *email, char cid[CD_ID_MAX])
{
    static char rid[CD_ID_MAX];

    snprintf(cid, CD_ID_MAX, "%s", ingest_for(email, "who are you"));
    json_t *r = open_request(cid, "access", NULL);
    snprintf(rid, sizeof rid, "%s", sv(r, "id"));
    json_decref(r);
    return rid;
}

static void codes_verify_once(void **state)
{
    char rid[CD_ID_MAX], cid[CD_ID_MAX], outcome[32], code[16];
    json_t *r = NULL;

    cd_dsar_set_links(dsar, &(struct cd_dsar_links){.enqueue = capture_enqueue,
                                                    .holds_active = cd_retention_holds_active,
                                                    .consent = consent});
    snprintf(rid, sizeof rid, "%s", verification_request("verify.me@example.org", cid));
    /* Bad input is refused and counts nothing. */
    assert_int_equal(send_code(rid, "{\"channel\":\"pigeon\"}", NULL), CD_ERR_INVALID);
    assert_int_equal(send_code(rid, "{\"channel\":\"phone\"}", NULL), CD_ERR_CONFLICT);
    assert_int_equal(send_code("dsr_00000000000000000000000000", "{}", NULL), CD_ERR_NOT_FOUND);
    assert_int_equal(check_code(rid, "12345678", outcome), CD_ERR_CONFLICT);
    assert_string_equal(outcome, "none_pending");

    assert_int_equal(send_code(rid, "{}", &r), CD_OK);
    assert_int_equal(json_integer_value(json_object_get(r, "attempts_left")), 5);
    assert_int_equal(json_integer_value(json_object_get(r, "sends_left")), 2);
    assert_null(json_object_get(r, "code"));
    json_decref(r);
    assert_string_equal(sent_to, "verify.me@example.org");
    assert_int_equal(strlen(sent_code), 8);
    snprintf(code, sizeof code, "%s", sent_code);
    /* Neither the code nor its address is stored in clear: the outbox seals them. */
    assert_false(on_disk(code, strlen(code)));
    assert_int_equal(check_code(rid, "1234567", outcome), CD_ERR_INVALID);
    assert_int_equal(check_code(rid, other_code(), outcome), CD_ERR_CONFLICT);
    assert_string_equal(outcome, "mismatch");
    assert_int_equal(check_code(rid, code, outcome), CD_OK);
    assert_int_equal(count_rows("SELECT count(*) FROM dsar_verifications WHERE request_id = $1",
                                rid), 0);
    /* Replayed: the artefact went with the decision. */
    assert_int_equal(check_code(rid, code, outcome), CD_ERR_CONFLICT);
    assert_string_equal(outcome, "none_pending");
    assert_int_equal(send_code(rid, "{}", NULL), CD_ERR_CONFLICT); /* in progress now */
    /* The ledger has the decision and never the code. */
    assert_int_equal(count_rows("SELECT count(*) FROM audit_events WHERE customer_id = $1"
                                " AND action IN ('dsar.verification_sent', 'dsar.verified')",
                                cid), 2);
    assert_int_equal(count_rows("SELECT count(*) FROM audit_events WHERE"
                                " instr(CAST(entry AS TEXT), $1) > 0", code), 0);
}

static void codes_run_out(void **state)
{
    char rid[CD_ID_MAX], cid[CD_ID_MAX], outcome[32], first[16];

    cd_dsar_set_links(dsar, &(struct cd_dsar_links){.enqueue = capture_enqueue});
    fake_now = at("2026-03-02T10:00:00Z");
    cd_clock_override(fake_clock);
    snprintf(rid, sizeof rid, "%s", verification_request("forger@example.org", cid));
    /* Five wrong codes void it; the right one is no use after that. */
    assert_int_equal(send_code(rid, "{}", NULL), CD_OK);
    for (int i = 4; i >= 0; i--) {
        assert_int_equal(check_code(rid, other_code(), outcome), CD_ERR_CONFLICT);
        assert_string_equal(outcome, i ? "mismatch" : "attempts_exhausted");
    }
    assert_int_equal(check_code(rid, sent_code, outcome), CD_ERR_CONFLICT);
    assert_string_equal(outcome, "none_pending");
    /* A new code replaces the pending one: the older no longer works. */
    assert_int_equal(send_code(rid, "{}", NULL), CD_OK);
    snprintf(first, sizeof first, "%s", sent_code);
    assert_int_equal(send_code(rid, "{}", NULL), CD_OK);
    if (strcmp(first, sent_code) != 0) {
        assert_int_equal(check_code(rid, first, outcome), CD_ERR_CONFLICT);
        assert_string_equal(outcome, "mismatch");
    }
    /* Fifteen minutes later the right code is void. */
    fake_now += 15 * 60 * 1000;
    assert_int_equal(check_code(rid, sent_code, outcome), CD_ERR_CONFLICT);
    assert_string_equal(outcome, "expired");
    assert_int_equal(check_code(rid, sent_code, outcome), CD_ERR_CONFLICT);
    assert_string_equal(outcome, "none_pending");
    /* Three codes were sent: no more for this request. */
    assert_int_equal(send_code(rid, "{}", NULL), CD_ERR_CONFLICT);
    assert_int_equal(count_rows("SELECT count(*) FROM audit_events WHERE customer_id = $1"
                                " AND action IN ('dsar.verification_failed',"
                                " 'dsar.verification_expired')", cid), 2);
    assert_int_equal(count_rows("SELECT count(*) FROM dsar_verifications WHERE customer_id = $1",
                                cid), 0);
    /* Refused for want of verification, as the law allows. */
    assert_int_equal(move(rid, "refused", "identity_not_verified", NULL), CD_OK);
}

/* ---- the ZIP writer and the export ---- */

static enum cd_err to_buf(void *ctx, const void *p, size_t n)
{
    return cd_buf_append(ctx, p, n);
}

static uint32_t rd16(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t rd32(const uint8_t *p)
{
    return rd16(p) | rd16(p + 2) << 16;
}

/* Reads an archive back through its central directory, as an unzip tool does: every entry's
 * name, inflated content and CRC-32. Returns the number of entries; content i into out[i]. */
static size_t unzip_all(const struct cd_buf *z, char names[][64], struct cd_buf *out, size_t max)
{
    const uint8_t *b = (const uint8_t *)z->p;
    assert_true(z->len >= 22);
    const uint8_t *end = b + z->len - 22;
    assert_int_equal(rd32(end), 0x06054b50);
    size_t n = rd16(end + 10), off = rd32(end + 16);
    assert_true(n <= max);
    assert_int_equal(off + rd32(end + 12), z->len - 22);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *c = b + off;
        assert_int_equal(rd32(c), 0x02014b50);
        size_t nl = rd16(c + 28), lo = rd32(c + 42), csize = rd32(c + 20), usize = rd32(c + 24);
        uint32_t crc = rd32(c + 16);
        memcpy(names[i], c + 46, nl);
        names[i][nl] = '\0';
        const uint8_t *l = b + lo;
        assert_int_equal(rd32(l), 0x04034b50);
        const uint8_t *data = l + 30 + rd16(l + 26) + rd16(l + 28);
        z_stream zs = {0};
        assert_int_equal(inflateInit2(&zs, -15), Z_OK);
        out[i] = CD_BUF_INIT(1 << 26);
        assert_int_equal(cd_buf_reserve(&out[i], usize + 1), CD_OK);
        zs.next_in = (Bytef *)data;
        zs.avail_in = (unsigned)csize;
        zs.next_out = (Bytef *)out[i].p;
        zs.avail_out = (unsigned)usize + 1;
        assert_int_equal(inflate(&zs, Z_FINISH), Z_STREAM_END);
        out[i].len = zs.total_out;
        inflateEnd(&zs);
        assert_int_equal(out[i].len, usize);
        assert_int_equal(crc32(0, (const Bytef *)out[i].p, (unsigned)usize), crc);
        /* The data descriptor after the data says the same. */
        const uint8_t *dd = data + csize;
        assert_int_equal(rd32(dd), 0x08074b50);
        assert_int_equal(rd32(dd + 4), crc);
        off += 46 + nl + rd16(c + 30) + rd16(c + 32);
    }
    return n;
}

static enum cd_err failing_sink(void *ctx, const void *p, size_t n)
{
    size_t *left = ctx;
    if (*left < n)
        return cd_err_set(CD_ERR_IO, "the client went away");
    *left -= n;
    return CD_OK;
}

static void zip_reads_back(void **state)
{
    struct cd_buf z = CD_BUF_INIT(1 << 24), out[3];
    struct cd__zip *w = cd_calloc(1, sizeof *w);
    char names[3][64];
    static char big[300000];

    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)("abcdefgh\n"[i % 9] ^ (i % 7 == 0 ? 0x20 : 0));
    cd__zip_init(w, to_buf, &z);
    assert_int_equal(cd__zip_begin(w, "empty.txt"), CD_OK);
    assert_int_equal(cd__zip_end(w), CD_OK);
    assert_int_equal(cd__zip_begin(w, "hello.json"), CD_OK);
    assert_int_equal(cd__zip_write(w, "{\"a\":", 5), CD_OK);
    assert_int_equal(cd__zip_write(w, "1}", 2), CD_OK);
    assert_int_equal(cd__zip_end(w), CD_OK);
    assert_int_equal(cd__zip_begin(w, "big.txt"), CD_OK);
    for (size_t i = 0; i < sizeof big; i += 1000)
        assert_int_equal(cd__zip_write(w, big + i, 1000), CD_OK);
    assert_int_equal(cd__zip_end(w), CD_OK);
    assert_int_equal(cd__zip_end(w), CD_ERR_INTERNAL); /* nothing open */
    assert_int_equal(cd__zip_finish(w), CD_OK);
    cd__zip_free(w);
    assert_int_equal(unzip_all(&z, names, out, 3), 3);
    assert_string_equal(names[0], "empty.txt");
    assert_int_equal(out[0].len, 0);
    assert_string_equal(names[1], "hello.json");
    assert_memory_equal(out[1].p, "{\"a\":1}", 7);
    assert_int_equal(out[2].len, sizeof big);
    assert_memory_equal(out[2].p, big, sizeof big);
    for (int i = 0; i < 3; i++)
        cd_buf_free(&out[i]);
    cd_buf_free(&z);

    /* A sink that fails part-way stops the archive with its error; nothing leaks. */
    size_t left = 40; /* the local header, and little more */
    cd__zip_init(w, failing_sink, &left);
    assert_int_equal(cd__zip_begin(w, "big.txt"), CD_OK);
    enum cd_err err = CD_OK;
    for (size_t i = 0; i < sizeof big && err == CD_OK; i += 1000)
        err = cd__zip_write(w, big + i, 1000);
    if (err == CD_OK)
        err = cd__zip_end(w);
    assert_int_equal(err, CD_ERR_IO);
    cd__zip_free(w);
    cd_free(w);
}

static void export_holds_everything_and_flags_others(void **state)
{
    char cid[CD_ID_MAX], rid[CD_ID_MAX], names[16][64];
    struct cd_buf z = CD_BUF_INIT(1 << 24), out[16];
    struct cd_guard *g = NULL;
    struct cd_dsar_export *x = NULL;
    json_t *r = NULL;

    assert_int_equal(cd_guard_open("rules", &g), CD_OK);
    cd_dsar_set_links(dsar, &(struct cd_dsar_links){.consent = consent, .guard = g,
                                                    .holds_active = cd_retention_holds_active});
    snprintf(cid, sizeof cid, "%s", ingest_for("me@example.org", "write to me@example.org"));
    for (int i = 0; i < 250; i++) /* more than two pages */
        ingest_for("me@example.org", i == 7 ? "my friend is bob@example.net" : "hello again");
    r = open_request(cid, "portability", NULL);
    snprintf(rid, sizeof rid, "%s", sv(r, "id"));
    json_decref(r);
    /* Not before it is in progress; not for other types. */
    assert_int_equal(cd_dsar_export_open(dsar, &actor, cd_str_c(rid), &x), CD_ERR_CONFLICT);
    assert_int_equal(move(rid, "in_progress", NULL, NULL), CD_OK);
    assert_int_equal(cd_dsar_export_open(dsar, &actor, cd_str_c("dsr_00000000000000000000000000"),
                                         &x), CD_ERR_NOT_FOUND);
    assert_int_equal(cd_dsar_export_open(dsar, &actor, cd_str_c(rid), &x), CD_OK);
    assert_int_equal(cd_dsar_export_write(x, to_buf, &z), CD_OK);
    cd_dsar_export_free(x);
    size_t n = unzip_all(&z, names, out, 16);
    assert_int_equal(n, 13);
    assert_string_equal(names[n - 1], "manifest.json");
    json_t *m = NULL, *items = NULL, *review = NULL;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(names[i], "manifest.json") == 0)
            m = json_loadb(out[i].p, out[i].len, 0, NULL);
        if (strcmp(names[i], "interactions.json") == 0)
            items = json_loadb(out[i].p, out[i].len, 0, NULL);
        if (strcmp(names[i], "review.json") == 0)
            review = json_loadb(out[i].p, out[i].len, 0, NULL);
        if (strcmp(names[i], "interactions.csv") == 0) {
            size_t lines = 0;
            for (size_t k = 0; k < out[i].len; k++)
                lines += out[i].p[k] == '\n';
            assert_int_equal(lines, 1 + 251);
        }
    }
    assert_int_equal(json_array_size(items), 251);
    assert_int_equal(json_integer_value(json_object_get(review, "count")), 1);
    assert_string_equal(sv(json_array_get(json_object_get(review, "items"), 0), "match"),
                        "bob@example.net");
    assert_true(json_is_true(json_object_get(json_object_get(m, "review"), "required")));
    json_decref(m);
    json_decref(items);
    json_decref(review);
    for (size_t i = 0; i < n; i++)
        cd_buf_free(&out[i]);
    cd_buf_free(&z);
    /* The export is one read on the ledger. */
    assert_int_equal(count_rows("SELECT count(*) FROM audit_events WHERE customer_id = $1"
                                " AND action = 'export.read'", cid), 1);
    /* A client that goes away stops it cleanly. */
    size_t left = 3000;
    assert_int_equal(cd_dsar_export_open(dsar, &actor, cd_str_c(rid), &x), CD_OK);
    assert_int_equal(cd_dsar_export_write(x, failing_sink, &left), CD_ERR_IO);
    cd_dsar_export_free(x);
    /* Erased, nothing is held: no export. */
    char erq[CD_ID_MAX];
    snprintf(erq, sizeof erq, "%s", erasure_request(cid));
    assert_int_equal(fulfil(erq, "{}", NULL, NULL), CD_OK);
    assert_int_equal(cd_dsar_export_open(dsar, &actor, cd_str_c(rid), &x), CD_ERR_CONFLICT);
    cd_guard_close(g);
}

int main(void)
{
    const struct CMUnitTest rules[] = {
        cmocka_unit_test(gdpr_month_rolls_past_weekends_and_holidays),
        cmocka_unit_test(days_are_local_days_across_dst),
        cmocka_unit_test(ccpa_counts_business_days_and_the_day_of_receipt),
        cmocka_unit_test(regimes_follow_the_jurisdiction),
        cmocka_unit_test(bad_rules_are_refused_with_their_line),
    };
    const struct CMUnitTest requests[] = {
        cmocka_unit_test_setup_teardown(lifecycle_refuses_illegal_transitions, setup, teardown),
        cmocka_unit_test_setup_teardown(extension_once_before_the_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_requests_change_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(interaction_starts_the_clock, setup, teardown),
        cmocka_unit_test_setup_teardown(overdue_and_due_soon_lists_and_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(due_soon_is_told_once, setup, teardown),
        cmocka_unit_test_setup_teardown(codes_verify_once, setup, teardown),
        cmocka_unit_test_setup_teardown(codes_run_out, setup, teardown),
        cmocka_unit_test(zip_reads_back),
        cmocka_unit_test_setup_teardown(export_holds_everything_and_flags_others, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(erasure_leaves_nothing_on_disk, setup, teardown),
        cmocka_unit_test_setup_teardown(legal_hold_stops_erasure, setup, teardown),
        cmocka_unit_test_setup_teardown(erasure_during_ingestion, setup, teardown),
        cmocka_unit_test_setup_teardown(restriction_objection_rectification, setup, teardown),
        cmocka_unit_test_setup_teardown(extension_is_told_to_the_customer, setup, teardown),
        cmocka_unit_test_setup_teardown(requests_show_the_recipients_told, setup, teardown),
    };
    cd_json_init();
    int failed = cmocka_run_group_tests_name("rules", rules, setup_rules, teardown_rules);
    return failed + cmocka_run_group_tests_name("requests", requests, NULL, NULL);
}
