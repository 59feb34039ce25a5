/* Unit tests for src/cases on a real SQLite file: SLA arithmetic across calendars, daylight
 * saving, holidays and pauses; the status machine; intake from interactions through core's
 * hooks (new threads, replies, reopening, complaints); the queue (earliest deadline first,
 * skills, distinct cases for concurrent agents); ETAs from a known history; blind mode;
 * breaches marked by the sweeper; the SLA report; every allocation failure on opening a case. */
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>
#include "unit.h"
#include "base/base_testing.h"
#include "calendar/calendar.h"
#include "cases/cases.h"
#include "cases/cases_int.h"
#include "consent/consent.h"
#include "core/core.h"
#include "crypto/crypto.h"

static char path[256];
static struct cd_store *store;
static struct cd_core *core;
static struct cd_calendars *cals;
static struct cd_cases *cs;
static struct cd_consent *consent;
static char consent_dir[256];
static const struct cd_actor admin = {"tok_test", "admin", "unit test", "req_test", "service",
                                      true, false};
static const struct cd_cases_view full = {CD_FIELDS_ALL, true};
static const struct cd_cases_view agent_view = {CD_FIELDS_ALL, false};
static const struct cd_cases_view ref = {CD_FIELDS_REFERENCE, true};

/* ---- the clock ---- */

static int64_t now_ms;
static int64_t fixed_now(void)
{
    return now_ms;
}

/* An instant from a London wall-clock time (the gb-eng calendar's zone). */
static int64_t london(int y, int mo, int d, int h, int mi)
{
    return cd_tz_instant(cd_calendar_tz(cd_calendars_find(cals, CD_STR("gb-eng"))),
                         cd_days_from_civil(y, mo, d), h * 60 + mi);
}

static const char *iso(int64_t ms)
{
    static char t[CD_TIME_STRLEN];
    cd_time_format(ms, t);
    return t;
}

/* ---- fixtures ---- */

static const char settings[] =
    "intake:\n"
    "  reopen_window: \"7 days\"\n"
    "routing:\n"
    "  - when: {type: complaint}\n"
    "    team: complaints\n"
    "  - when: {tags: [billing]}\n"
    "    skill: billing\n"
    "eta:\n"
    "  min_sample: 10\n";

static const char policy[] =
    "id: standard\n"
    "name: Standard\n"
    "calendar: gb-eng\n"
    "pause_on: [pending_customer]\n"
    "due_soon: \"2 hours\"\n"
    "targets:\n"
    "  - when: {type: complaint}\n"
    "    first_response: \"4 business hours\"\n"
    "    next_response: \"8 business hours\"\n"
    "    resolution: \"8 business hours\"\n"
    "  - when: {channel: chat}\n"
    "    first_response: \"24 hours\"\n"
    "    resolution: \"24 hours\"\n"
    "  - when: {}\n"
    "    first_response: \"8 business hours\"\n"
    "    next_response: \"16 business hours\"\n"
    "    resolution: \"5 business days\"\n";

static enum cd_err annotate(void *ctx, const struct cd_actor *a, const struct cd_core_content *in,
                            json_t **note)
{
    /* The guard is not linked here: "refund or I complain" stands for its complaint rules. */
    json_t *rules = NULL;
    enum cd_err err;

    if (strcmp(in->direction, "inbound") == 0 && in->body.len &&
        memmem(in->body.p, in->body.len, "complain", 8) != NULL)
        rules = json_pack("[s]", "COMPLAINT.TEST");
    err = cd_cases_annotate(ctx, in, rules, note);
    json_decref(rules);
    return err;
}

static enum cd_err recorded(void *ctx, struct cd_tx *tx, const struct cd_core_recorded *r)
{
    return cd_cases_recorded(ctx, tx, r);
}

static enum cd_err merged(void *ctx, struct cd_tx *tx, const char *m, const char *s,
                          const struct cd_core_vault *from, const struct cd_core_vault *to)
{
    return cd_cases_customer_merged(ctx, tx, m, s, from, to);
}

static int open_with(const char *set_yaml)
{
    uint8_t master[32];
    const char *names[] = {"standard.yaml"}, *docs[] = {policy};

    snprintf(path, sizeof path, "/tmp/candor-test-cases-%d.db", (int)getpid());
    unlink(path);
    cd_random_bytes(master, sizeof master);
    if (cd_store_open(path, &store) != CD_OK || cd_core_open(store, master, &core) != CD_OK ||
        cd_calendars_new(&cals) != CD_OK ||
        cd_calendars_load_dir(cals, "rules/calendars") != CD_OK ||
        cd_cases_open_buffers(store, core, cals, set_yaml, names, docs, 1, &cs) != CD_OK)
        return -1;
    /* The consent engine decides incident notices (quiet hours); its keys in a fresh dir. */
    snprintf(consent_dir, sizeof consent_dir, "/tmp/candor-test-cases-consent-%d", (int)getpid());
    mkdir(consent_dir, 0700);
    if (cd_consent_open(store, consent_dir, "rules/consent/jurisdictions.yaml", &consent) != CD_OK)
        return -1;
    cd_cases_set_consent(cs, consent);
    struct cd_core_hooks h = {.ctx = cs, .annotate = annotate, .recorded = recorded,
                              .customer_merged = merged};
    cd_core_set_hooks(core, &h);
    now_ms = london(2026, 3, 2, 9, 0); /* a Monday */
    cd_clock_override(fixed_now);
    return 0;
}

static int setup(void **state)
{
    return open_with(settings);
}

static int teardown(void **state)
{
    char p[300];

    cd_clock_override(NULL);
    cd_cases_close(cs);
    cd_consent_close(consent);
    consent = NULL;
    snprintf(p, sizeof p, "%s/receipts.key", consent_dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/unsubscribe.key", consent_dir);
    unlink(p);
    rmdir(consent_dir);
    cd_core_close(core);
    cd_calendars_free(cals);
    cd_store_close(store);
    unit_db_remove(path);
    return 0;
}

static char *new_customer(void)
{
    static char id[CD_ID_MAX];
    json_t *body = json_pack("{s:s}", "display_name", "Ana"), *out = NULL;
    bool replayed = false;

    assert_int_equal(cd_core_customer_create(core, &admin, body, NULL, CD_FIELDS_REFERENCE, &out,
                                             &replayed),
                     CD_OK);
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(out, "id")));
    json_decref(body);
    json_decref(out);
    return id;
}

/* Opens a case: {"customer_id": cid, ...extra}. Returns its JSON (caller frees). */
static json_t *open_case(const char *cid, const char *extra_json)
{
    json_t *body = NULL, *out = NULL;
    bool replayed = false;
    char text[1024];

    snprintf(text, sizeof text, "{\"customer_id\":\"%s\"%s%s}", cid, extra_json ? "," : "",
             extra_json ? extra_json : "");
    assert_int_equal(cd_json_parse_object(text, strlen(text), &body), CD_OK);
    enum cd_err err = cd_cases_create(cs, &admin, body, NULL, &full, &out, &replayed);
    if (err != CD_OK)
        fail_msg("create: %s %s", cd_err_name(err), cd_err_detail());
    json_decref(body);
    return out;
}

static enum cd_err patch(const char *id, const char *json, json_t **out)
{
    json_t *body = NULL, *o = NULL;
    enum cd_err err;

    assert_int_equal(cd_json_parse_object(json, strlen(json), &body), CD_OK);
    err = cd_cases_update(cs, &admin, cd_str_c(id), body, &full, &o);
    json_decref(body);
    if (out)
        *out = o;
    else
        json_decref(o);
    return err;
}

static const char *clock_due(const json_t *c, const char *clock)
{
    return json_string_value(json_object_get(
        json_object_get(json_object_get(c, "sla"), clock), "due_at"));
}

static const char *clock_state(const json_t *c, const char *clock)
{
    return json_string_value(json_object_get(
        json_object_get(json_object_get(c, "sla"), clock), "state"));
}

/* Whether the bytes of s appear anywhere in the database file and its log (sealed values
 * must not). Returns a non-NULL pointer when found. */
static const char *memmem_db(const char *s)
{
    static const char found[] = "found";
    const char *suffix[] = {"", "-wal"};

    for (int i = 0; i < 2; i++) {
        char p[300];
        struct cd_buf b = CD_BUF_INIT((size_t)1 << 30);
        snprintf(p, sizeof p, "%s%s", path, suffix[i]);
        if (cd_buf_read_file(&b, p) == CD_OK && b.len && memmem(b.p, b.len, s, strlen(s))) {
            cd_buf_free(&b);
            return found;
        }
        cd_buf_free(&b);
    }
    cd_err_clear();
    return NULL;
}

/* ---- SLA arithmetic ---- */

static void business_hours_cross_a_weekend(void **state)
{
    char *cid = new_customer();
    /* Friday 16:00 in London: 1.5 working hours left that day (to 17:30), 2.5 more on
     * Monday from 09:00. */
    now_ms = london(2026, 3, 6, 16, 0);
    json_t *c = open_case(cid, "\"type\":\"complaint\"");
    assert_string_equal(clock_due(c, "first_response"), iso(london(2026, 3, 9, 11, 30)));
    /* 8 business hours: Friday 1.5 + Monday 6.5 (to 15:30). */
    assert_string_equal(clock_due(c, "resolution"), iso(london(2026, 3, 9, 15, 30)));
    assert_string_equal(clock_state(c, "first_response"), "running");
    assert_string_equal(json_string_value(json_object_get(json_object_get(c, "sla"), "policy")),
                        "standard");
    json_decref(c);
}

static void business_hours_cross_a_clock_change(void **state)
{
    char *cid = new_customer();
    /* Friday 27 March 2026 16:00 GMT; clocks go forward on Sunday 29 March. The deadline is
     * Monday 11:30 BST, which is 10:30 UTC. */
    now_ms = london(2026, 3, 27, 16, 0);
    json_t *c = open_case(cid, "\"type\":\"complaint\"");
    assert_string_equal(clock_due(c, "first_response"), "2026-03-30T10:30:00.000Z");
    json_decref(c);
}

static void business_hours_skip_holidays(void **state)
{
    char *cid = new_customer();
    /* Thursday 2 April 2026 16:00: Good Friday (3 April) and Easter Monday (6 April) are bank
     * holidays in England, so the deadline is Tuesday 7 April 11:30 BST. */
    now_ms = london(2026, 4, 2, 16, 0);
    json_t *c = open_case(cid, "\"type\":\"complaint\"");
    assert_string_equal(clock_due(c, "first_response"), iso(london(2026, 4, 7, 11, 30)));
    json_decref(c);
}

static void waiting_on_the_customer_pauses_resolution(void **state)
{
    char *cid = new_customer();
    json_t *c;

    /* Monday 09:00, 8 business hours: due Monday 17:00. */
    now_ms = london(2026, 3, 2, 9, 0);
    c = open_case(cid, "\"type\":\"complaint\"");
    const char *id = json_string_value(json_object_get(c, "id"));
    char cidbuf[CD_ID_MAX];
    snprintf(cidbuf, sizeof cidbuf, "%s", id);
    assert_string_equal(clock_due(c, "resolution"), iso(london(2026, 3, 2, 17, 0)));
    json_decref(c);
    /* Waiting on the customer from 10:00 to 14:00: four working hours stand still. */
    now_ms = london(2026, 3, 2, 10, 0);
    assert_int_equal(patch(cidbuf, "{\"status\":\"pending_customer\"}", &c), CD_OK);
    assert_string_equal(clock_state(c, "resolution"), "paused");
    json_decref(c);
    now_ms = london(2026, 3, 2, 14, 0);
    assert_int_equal(patch(cidbuf, "{\"status\":\"open\"}", &c), CD_OK);
    /* 17:00 moved by 4 working hours: 0.5 h Monday (to 17:30), 3.5 h Tuesday: 12:30. */
    assert_string_equal(clock_due(c, "resolution"), iso(london(2026, 3, 3, 12, 30)));
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(c, "sla"), "resolution"), "paused_ms")),
                     4 * 3600 * 1000);
    json_decref(c);
    /* A pause over a weekend costs only the working time in it: Friday 17:00 to Monday 09:00
     * is half an hour. */
    now_ms = london(2026, 3, 6, 17, 0);
    assert_int_equal(patch(cidbuf, "{\"status\":\"pending_customer\"}", NULL), CD_OK);
    now_ms = london(2026, 3, 9, 9, 0);
    assert_int_equal(patch(cidbuf, "{\"status\":\"open\"}", &c), CD_OK);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(c, "sla"), "resolution"), "paused_ms")),
                     (4 * 3600 + 1800) * 1000);
    assert_string_equal(clock_due(c, "resolution"), iso(london(2026, 3, 3, 13, 0)));
    json_decref(c);
}

static void elapsed_targets_pause_in_elapsed_time(void **state)
{
    char *cid = new_customer();
    json_t *c;
    char id[CD_ID_MAX];

    /* Chat: 24 hours of elapsed time, whatever the calendar. */
    now_ms = london(2026, 3, 7, 22, 0); /* a Saturday night */
    c = open_case(cid, "\"channel\":\"chat\"");
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(c, "id")));
    assert_string_equal(clock_due(c, "resolution"), iso(london(2026, 3, 8, 22, 0)));
    json_decref(c);
    now_ms = london(2026, 3, 8, 1, 0);
    assert_int_equal(patch(id, "{\"status\":\"pending_customer\"}", NULL), CD_OK);
    now_ms = london(2026, 3, 8, 4, 0);
    assert_int_equal(patch(id, "{\"status\":\"open\"}", &c), CD_OK);
    assert_string_equal(clock_due(c, "resolution"), iso(london(2026, 3, 9, 1, 0)));
    json_decref(c);
}

/* ---- the status machine ---- */

static void only_legal_transitions(void **state)
{
    char *cid = new_customer();
    json_t *c = open_case(cid, NULL), *again = NULL;
    char id[CD_ID_MAX];

    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(c, "id")));
    long version = (long)json_integer_value(json_object_get(c, "version"));
    json_decref(c);
    /* new -> closed and new -> reopened are not transitions; resolving needs its record. */
    assert_int_equal(patch(id, "{\"status\":\"closed\"}", NULL), CD_ERR_INVALID);
    assert_int_equal(patch(id, "{\"status\":\"reopened\"}", NULL), CD_ERR_INVALID);
    assert_int_equal(patch(id, "{\"status\":\"resolved\"}", NULL), CD_ERR_INVALID);
    assert_non_null(strstr(cd_err_detail(), "remedy"));
    assert_int_equal(patch(id, "{\"status\":\"sleeping\"}", NULL), CD_ERR_INVALID);
    assert_int_equal(patch(id, "{\"remedy\":{\"type\":\"refund\"}}", NULL), CD_ERR_INVALID);
    assert_int_equal(patch(id, "{\"remedy\":{\"type\":\"apology\",\"amount_minor\":5}}", NULL),
                     CD_ERR_INVALID);
    /* Nothing of it changed the case. */
    assert_int_equal(cd_cases_get(cs, &admin, cd_str_c(id), &full, &again), CD_OK);
    assert_string_equal(json_string_value(json_object_get(again, "status")), "new");
    assert_int_equal(json_integer_value(json_object_get(again, "version")), version);
    assert_true(json_is_null(json_object_get(again, "remedy")));
    json_decref(again);
    /* A stale version is a conflict. */
    assert_int_equal(patch(id, "{\"status\":\"open\",\"version\":99}", NULL), CD_ERR_CONFLICT);
    assert_int_equal(patch(id, "{\"status\":\"resolved\",\"remedy\":{\"type\":\"refund\","
                               "\"amount_minor\":1250,\"currency\":\"EUR\"},\"outcome\":"
                               "\"upheld\"}",
                           &again),
                     CD_OK);
    assert_string_equal(json_string_value(json_object_get(again, "status")), "resolved");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(again, "remedy"),
                                                        "amount_minor")),
                     1250);
    json_decref(again);
    assert_int_equal(patch(id, "{\"status\":\"closed\"}", NULL), CD_OK);
    assert_int_equal(patch(id, "{\"status\":\"open\"}", NULL), CD_ERR_CONFLICT);
    /* The history has every change, bound to the ledger. */
    json_t *ev = NULL;
    assert_int_equal(cd_cases_events(cs, cd_str_c(id), &ev), CD_OK);
    json_t *items = json_object_get(ev, "items");
    assert_int_equal(json_array_size(items), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(items, 0), "action")),
                        "case.create");
    assert_string_equal(json_string_value(json_object_get(json_array_get(items, 1), "action")),
                        "case.resolve");
    assert_true(json_integer_value(json_object_get(json_array_get(items, 2), "audit_seq")) > 0);
    json_decref(ev);
    assert_true(cd__cases_transition_ok(CS_RESOLVED, CS_REOPENED));
    assert_false(cd__cases_transition_ok(CS_CLOSED, CS_OPEN));
}

static void unknown_cases_and_customers(void **state)
{
    json_t *o = NULL;
    assert_int_equal(cd_cases_get(cs, &admin, CD_STR("cas_01J0000000000000000000000A"), &full,
                                  &o),
                     CD_ERR_NOT_FOUND);
    assert_int_equal(cd_cases_get(cs, &admin, CD_STR("nonsense"), &full, &o), CD_ERR_NOT_FOUND);
    assert_int_equal(patch("cas_01J0000000000000000000000A", "{\"status\":\"open\"}", NULL),
                     CD_ERR_NOT_FOUND);
    json_t *body = json_pack("{s:s}", "customer_id", "cus_01J0000000000000000000000A");
    bool replayed;
    assert_int_equal(cd_cases_create(cs, &admin, body, NULL, &full, &o, &replayed),
                     CD_ERR_NOT_FOUND);
    json_decref(body);
    body = json_pack("{s:s,s:i}", "customer_id", new_customer(), "type", 3);
    assert_int_equal(cd_cases_create(cs, &admin, body, NULL, &full, &o, &replayed),
                     CD_ERR_INVALID);
    json_decref(body);
}


/* ---- intake from interactions ---- */

static enum cd_err ingest(const char *json, char id_out[CD_ID_MAX])
{
    json_t *body = NULL, *findings = NULL, *o = NULL;
    struct cd_buf out = CD_BUF_INIT(CD_CORE_ANSWER_MAX);
    bool replayed = false;
    enum cd_err err;

    assert_int_equal(cd_json_parse_object(json, strlen(json), &body), CD_OK);
    err = cd_core_interaction_ingest(core, &admin, body, NULL, CD_FIELDS_REFERENCE, &out,
                                     &findings, &replayed);
    if (err == CD_OK && id_out) {
        assert_int_equal(cd_json_parse_object(out.p, out.len, &o), CD_OK);
        snprintf(id_out, CD_ID_MAX, "%s", json_string_value(json_object_get(o, "id")));
        json_decref(o);
    }
    json_decref(findings);
    json_decref(body);
    cd_buf_free(&out);
    return err;
}

/* The customer's cases, newest first (the caller frees). */
static json_t *cases_of(const char *cid)
{
    struct cd_cases_query q = {.customer_id = cd_str_c(cid), .limit = 50};
    json_t *o = NULL;

    assert_int_equal(cd_cases_list(cs, &admin, &q, &full, &o), CD_OK);
    return o;
}

static json_t *get(const char *id)
{
    json_t *o = NULL;
    assert_int_equal(cd_cases_get(cs, &admin, cd_str_c(id), &full, &o), CD_OK);
    return o;
}

static void interactions_open_answer_and_reopen_cases(void **state)
{
    char cid[CD_ID_MAX], case_id[CD_ID_MAX], iid[CD_ID_MAX];
    json_t *l, *c;
    static const char in_t1[] =
        "{\"identity\":{\"type\":\"email\",\"value\":\"ana@example.com\"},\"channel\":\"email\","
        "\"direction\":\"inbound\",\"thread_id\":\"t1\",\"body\":\"Where is my parcel?\"}";

    now_ms = london(2026, 3, 2, 9, 0);
    assert_int_equal(ingest(in_t1, iid), CD_OK);
    json_t *found = NULL;
    assert_int_equal(cd_core_customer_find(core, &admin, CD_STR("email"), CD_STR_NULL,
                                           CD_STR("ana@example.com"), CD_FIELDS_REFERENCE,
                                           &found),
                     CD_OK);
    snprintf(cid, sizeof cid, "%s", json_string_value(json_object_get(found, "id")));
    json_decref(found);
    l = cases_of(cid);
    assert_int_equal(json_array_size(json_object_get(l, "items")), 1);
    c = json_array_get(json_object_get(l, "items"), 0);
    snprintf(case_id, sizeof case_id, "%s", json_string_value(json_object_get(c, "id")));
    assert_string_equal(json_string_value(json_object_get(c, "type")), "question");
    assert_string_equal(json_string_value(json_object_get(c, "source")), "inbound");
    assert_string_equal(json_string_value(json_object_get(c, "team")), "support");
    json_decref(l);
    /* The answer on the thread meets the first response. */
    now_ms = london(2026, 3, 2, 10, 0);
    char json[600];
    snprintf(json, sizeof json,
             "{\"customer_id\":\"%s\",\"channel\":\"email\",\"direction\":\"outbound\","
             "\"thread_id\":\"t1\",\"body\":\"It arrives tomorrow.\"}",
             cid);
    assert_int_equal(ingest(json, NULL), CD_OK);
    c = get(case_id);
    assert_string_equal(clock_state(c, "first_response"), "met");
    assert_string_equal(json_string_value(json_object_get(c, "status")), "open");
    assert_int_equal(json_array_size(json_object_get(c, "interactions")), 2);
    json_decref(c);
    /* The customer writes again: the next-response clock runs (16 business hours). */
    now_ms = london(2026, 3, 2, 11, 0);
    assert_int_equal(ingest(in_t1, NULL), CD_OK);
    c = get(case_id);
    assert_string_equal(clock_state(c, "next_response"), "running");
    assert_string_equal(clock_due(c, "next_response"), iso(london(2026, 3, 4, 10, 0)));
    json_decref(c);
    now_ms = london(2026, 3, 2, 12, 0);
    assert_int_equal(patch(case_id, "{\"status\":\"resolved\",\"remedy\":{\"type\":\"none\"},"
                                    "\"outcome\":\"answered\"}",
                           NULL),
                     CD_OK);
    /* A reply within the reopen window (7 days) reopens it. */
    now_ms = london(2026, 3, 4, 9, 0);
    assert_int_equal(ingest(in_t1, NULL), CD_OK);
    c = get(case_id);
    assert_string_equal(json_string_value(json_object_get(c, "status")), "reopened");
    assert_int_equal(json_integer_value(json_object_get(c, "reopened")), 1);
    json_decref(c);
    now_ms = london(2026, 3, 4, 10, 0);
    assert_int_equal(patch(case_id, "{\"status\":\"resolved\"}", NULL), CD_OK);
    /* After the window, the same thread opens a new case that follows the old one, and the
     * sweeper closes the old one. */
    now_ms = london(2026, 3, 16, 9, 0);
    size_t marked = 0;
    assert_int_equal(cd_cases_sweep(cs, now_ms, &marked), CD_OK);
    c = get(case_id);
    assert_string_equal(json_string_value(json_object_get(c, "status")), "closed");
    json_decref(c);
    assert_int_equal(ingest(in_t1, NULL), CD_OK);
    l = cases_of(cid);
    assert_int_equal(json_array_size(json_object_get(l, "items")), 2);
    c = json_array_get(json_object_get(l, "items"), 0);
    assert_string_equal(json_string_value(json_object_get(c, "follows")), case_id);
    assert_string_equal(json_string_value(json_object_get(c, "status")), "new");
    json_decref(l);
    /* A new thread with the words of a complaint opens a complaint for the complaints team. */
    snprintf(json, sizeof json,
             "{\"customer_id\":\"%s\",\"channel\":\"email\",\"direction\":\"inbound\","
             "\"thread_id\":\"t2\",\"body\":\"I want to complain about the charge.\"}",
             cid);
    assert_int_equal(ingest(json, NULL), CD_OK);
    l = cases_of(cid);
    c = json_array_get(json_object_get(l, "items"), 0);
    assert_string_equal(json_string_value(json_object_get(c, "type")), "complaint");
    assert_string_equal(json_string_value(json_object_get(c, "team")), "complaints");
    assert_string_equal(json_string_value(json_array_get(json_object_get(c, "complaint_rules"),
                                                         0)),
                        "COMPLAINT.TEST");
    json_decref(l);
    /* metadata.case_id naming a case of someone else refuses the interaction: nothing stored. */
    char other[CD_ID_MAX];
    snprintf(other, sizeof other, "%s", new_customer());
    json_t *oc = open_case(other, NULL);
    snprintf(json, sizeof json,
             "{\"customer_id\":\"%s\",\"channel\":\"sms\",\"direction\":\"inbound\","
             "\"body\":\"hello\",\"metadata\":{\"case_id\":\"%s\"}}",
             cid, json_string_value(json_object_get(oc, "id")));
    json_decref(oc);
    assert_int_equal(ingest(json, NULL), CD_ERR_INVALID);
    l = cases_of(cid);
    assert_int_equal(json_array_size(json_object_get(l, "items")), 3);
    json_decref(l);
}

static void a_question_that_turns_into_a_complaint(void **state)
{
    char cid[CD_ID_MAX], json[600];
    json_t *l, *c;

    snprintf(cid, sizeof cid, "%s", new_customer());
    snprintf(json, sizeof json,
             "{\"customer_id\":\"%s\",\"channel\":\"sms\",\"direction\":\"inbound\","
             "\"body\":\"Is my order shipped?\"}",
             cid);
    assert_int_equal(ingest(json, NULL), CD_OK);
    /* Unthreaded: the next message joins the newest open case, and its words make it a
     * complaint, with a complaint's priority and targets. */
    snprintf(json, sizeof json,
             "{\"customer_id\":\"%s\",\"channel\":\"sms\",\"direction\":\"inbound\","
             "\"body\":\"Still nothing. I will complain.\"}",
             cid);
    assert_int_equal(ingest(json, NULL), CD_OK);
    l = cases_of(cid);
    assert_int_equal(json_array_size(json_object_get(l, "items")), 1);
    c = json_array_get(json_object_get(l, "items"), 0);
    assert_string_equal(json_string_value(json_object_get(c, "type")), "complaint");
    assert_int_equal(json_integer_value(json_object_get(c, "priority")), 2);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(c, "sla"), "target")),
                     0);
    json_decref(l);
}

/* ---- the queue ---- */

static char *agent(const char *name, const char *teams, const char *skills, const char *token)
{
    static char id[CD_ID_MAX];
    char json[400];
    json_t *body = NULL, *out = NULL;
    bool created = false;

    snprintf(json, sizeof json, "{\"name\":\"%s\",\"teams\":%s,\"skills\":%s%s%s%s}", name,
             teams, skills, token ? ",\"token_id\":\"" : "", token ? token : "",
             token ? "\"" : "");
    assert_int_equal(cd_json_parse_object(json, strlen(json), &body), CD_OK);
    assert_int_equal(cd_cases_agent_put(cs, &admin, CD_STR_NULL, body, &out, &created), CD_OK);
    assert_true(created);
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(out, "id")));
    json_decref(body);
    json_decref(out);
    return id;
}

static json_t *next(const char *agent_id, bool claim, const struct cd_cases_view *v)
{
    json_t *o = NULL;
    enum cd_err err = cd_cases_queue_next(cs, &admin, cd_str_c(agent_id), claim, v, &o);
    if (err != CD_OK)
        fail_msg("next: %s %s", cd_err_name(err), cd_err_detail());
    return o;
}

static const char *next_id(json_t *n)
{
    return json_string_value(json_object_get(json_object_get(n, "case"), "id"));
}

static void earliest_deadline_first_within_skills(void **state)
{
    char a[CD_ID_MAX], b[CD_ID_MAX], c1[CD_ID_MAX], c2[CD_ID_MAX], c3[CD_ID_MAX];
    char *cid = new_customer();
    json_t *c, *n;

    snprintf(a, sizeof a, "%s", agent("Ana", "[\"support\"]", "[]", NULL));
    snprintf(b, sizeof b, "%s", agent("Ben", "[\"support\"]", "[\"billing\"]", NULL));
    now_ms = london(2026, 3, 2, 9, 0);
    c = open_case(cid, "\"tags\":[\"billing\"]"); /* needs billing; due Monday 17:00 */
    snprintf(c1, sizeof c1, "%s", json_string_value(json_object_get(c, "id")));
    assert_string_equal(json_string_value(json_object_get(c, "skill")), "billing");
    json_decref(c);
    now_ms = london(2026, 3, 2, 9, 30);
    c = open_case(cid, NULL); /* due Monday 17:30 */
    snprintf(c2, sizeof c2, "%s", json_string_value(json_object_get(c, "id")));
    json_decref(c);
    now_ms = london(2026, 3, 2, 10, 0);
    /* A chat case opened later but due sooner... no: 24 elapsed hours is later. Impact makes
     * a case urgent (priority 2), and its targets are the default row's all the same. */
    c = open_case(cid, "\"channel\":\"chat\"");
    snprintf(c3, sizeof c3, "%s", json_string_value(json_object_get(c, "id")));
    json_decref(c);
    /* Ben has billing: c1 is his (earliest deadline). Ana lacks it: c2, and the why says one
     * earlier case needed a skill she does not have. A preview changes nothing. */
    n = next(b, false, &full);
    assert_string_equal(next_id(n), c1);
    json_decref(n);
    n = next(a, false, &full);
    assert_string_equal(next_id(n), c2);
    json_t *why = json_object_get(n, "why");
    assert_int_equal(json_integer_value(json_object_get(why, "skipped_for_skills")), 1);
    assert_string_equal(json_string_value(json_object_get(why, "clock")), "first_response");
    assert_int_equal(json_integer_value(json_object_get(why, "waiting_in_teams")), 3);
    assert_non_null(strstr(json_string_value(json_object_get(why, "summary")),
                           "Earliest deadline first"));
    json_decref(n);
    /* Claims: Ana takes c2, then c3 (chat, due Tuesday 10:00), then nothing she may take. */
    n = next(a, true, &full);
    assert_string_equal(next_id(n), c2);
    assert_string_equal(json_string_value(json_object_get(json_object_get(n, "case"),
                                                          "assignee")),
                        a);
    assert_string_equal(json_string_value(json_object_get(json_object_get(n, "case"),
                                                          "status")),
                        "open");
    json_decref(n);
    n = next(a, true, &full);
    assert_string_equal(next_id(n), c3);
    json_decref(n);
    n = next(a, true, &full);
    assert_true(json_is_null(json_object_get(n, "case")));
    json_decref(n);
    n = next(b, true, &full);
    assert_string_equal(next_id(n), c1);
    json_decref(n);
    /* An unknown agent, an inactive one. */
    json_t *o = NULL;
    assert_int_equal(cd_cases_queue_next(cs, &admin, CD_STR("agt_01J0000000000000000000000A"),
                                         true, &full, &o),
                     CD_ERR_NOT_FOUND);
    assert_int_equal(cd_cases_queue_next(cs, &admin, CD_STR_NULL, true, &full, &o),
                     CD_ERR_NOT_FOUND); /* the test token is no agent's */
}

/* ---- the waiting counts ---- */

struct queue_counts {
    int64_t kept, counted; /* summed over teams */
    int64_t mismatched;    /* teams whose kept count is not the count of their queue */
};

static enum cd_err queue_counts_fn(struct cd_tx *tx, void *ctx)
{
    struct queue_counts *q = ctx;
    enum cd_err err;

    if ((err = cd_tx_int(tx, "SELECT coalesce(sum(waiting), 0) FROM case_queue_counts", NULL, 0,
                         &q->kept)) != CD_OK ||
        (err = cd_tx_int(tx, "SELECT count(*) FROM cases WHERE queued = 1", NULL, 0,
                         &q->counted)) != CD_OK)
        return err;
    return cd_tx_int(tx,
                     "SELECT count(*) FROM (SELECT team, count(*) AS n FROM cases"
                     " WHERE queued = 1 GROUP BY team) c FULL JOIN case_queue_counts k"
                     " ON k.team = c.team WHERE coalesce(k.waiting, 0) <> coalesce(c.n, 0)",
                     NULL, 0, &q->mismatched);
}

/* The kept waiting counts are the counts of the teams' queues, team by team. */
static int64_t assert_counts_exact(void)
{
    struct queue_counts q = {0, 0, 0};

    assert_int_equal(cd_store_read(store, queue_counts_fn, &q), CD_OK);
    assert_int_equal(q.mismatched, 0);
    assert_int_equal(q.kept, q.counted);
    return q.kept;
}

#define CLAIMERS 8
#define CLAIMS 4

struct claimer {
    char agent[CD_ID_MAX];
    char got[CLAIMS][CD_ID_MAX];
    enum cd_err err;
};

static void *claim_thread(void *arg)
{
    struct claimer *c = arg;

    for (int i = 0; i < CLAIMS; i++) {
        json_t *o = NULL;
        c->err = cd_cases_queue_next(cs, &admin, cd_str_c(c->agent), true, &full, &o);
        if (c->err != CD_OK)
            return NULL;
        snprintf(c->got[i], CD_ID_MAX, "%s", next_id(o) ? next_id(o) : "");
        json_decref(o);
    }
    return NULL;
}

static void concurrent_agents_get_distinct_cases(void **state)
{
    struct claimer c[CLAIMERS];
    pthread_t t[CLAIMERS];
    char *cid = new_customer();

    for (int i = 0; i < CLAIMERS * CLAIMS; i++) {
        now_ms += 60000;
        json_decref(open_case(cid, NULL));
    }
    memset(c, 0, sizeof c);
    for (int i = 0; i < CLAIMERS; i++) {
        char name[32];
        snprintf(name, sizeof name, "agent %d", i);
        snprintf(c[i].agent, sizeof c[i].agent, "%s", agent(name, "[\"support\"]", "[]", NULL));
    }
    for (int i = 0; i < CLAIMERS; i++)
        pthread_create(&t[i], NULL, claim_thread, &c[i]);
    for (int i = 0; i < CLAIMERS; i++)
        pthread_join(t[i], NULL);
    /* Every claim got a case, and no case went to two agents. */
    for (int i = 0; i < CLAIMERS; i++) {
        assert_int_equal(c[i].err, CD_OK);
        for (int j = 0; j < CLAIMS; j++) {
            assert_true(cd_id_valid(cd_str_c(c[i].got[j]), "cas"));
            for (int k = 0; k < CLAIMERS; k++)
                for (int m = 0; m < CLAIMS; m++)
                    if ((k != i || m != j) && strcmp(c[i].got[j], c[k].got[m]) == 0)
                        fail_msg("%s was given twice", c[i].got[j]);
        }
    }
    struct cd_cases_query q = {.status = CD_STR("new"), .limit = 50};
    json_t *o = NULL;
    assert_int_equal(cd_cases_list(cs, &admin, &q, &full, &o), CD_OK);
    assert_int_equal(json_array_size(json_object_get(o, "items")), 0);
    json_decref(o);
    assert_int_equal(assert_counts_exact(), 0);
}

static long waiting_of(const char *agent_id)
{
    json_t *n = next(agent_id, false, &ref);
    long w = (long)json_integer_value(
        json_object_get(json_object_get(n, "why"), "waiting_in_teams"));
    json_decref(n);
    return w;
}

static void the_waiting_counts_follow_every_change(void **state)
{
    char a[CD_ID_MAX], c1[CD_ID_MAX], c2[CD_ID_MAX], c3[CD_ID_MAX];
    char *cid = new_customer();
    json_t *c, *o = NULL;

    snprintf(a, sizeof a, "%s", agent("Ana", "[\"support\",\"complaints\"]", "[]", NULL));
    now_ms = london(2026, 3, 2, 9, 0);
    c = open_case(cid, NULL);
    snprintf(c1, sizeof c1, "%s", json_string_value(json_object_get(c, "id")));
    assert_int_equal(json_integer_value(json_object_get(c, "queue_length_at_open")), 0);
    json_decref(c);
    c = open_case(cid, NULL);
    snprintf(c2, sizeof c2, "%s", json_string_value(json_object_get(c, "id")));
    assert_int_equal(json_integer_value(json_object_get(c, "queue_length_at_open")), 1);
    json_decref(c);
    c = open_case(cid, "\"team\":\"complaints\"");
    snprintf(c3, sizeof c3, "%s", json_string_value(json_object_get(c, "id")));
    json_decref(c);
    assert_int_equal(assert_counts_exact(), 3);
    assert_int_equal(waiting_of(a), 3);
    /* Moved to another team: one less here, one more there. */
    assert_int_equal(patch(c2, "{\"team\":\"complaints\"}", &o), CD_OK);
    json_decref(o);
    assert_int_equal(assert_counts_exact(), 3);
    /* Whether a case waiting on the customer, taken, resolved or reopened waits for an agent is
     * the queue's rule; the counts follow it through each change. */
    assert_int_equal(patch(c3, "{\"status\":\"pending_customer\"}", &o), CD_OK);
    json_decref(o);
    assert_counts_exact();
    json_decref(next(a, true, &full));
    assert_int_equal(assert_counts_exact(), waiting_of(a));
    assert_int_equal(patch(c1, "{\"status\":\"resolved\",\"remedy\":{\"type\":\"none\"},"
                               "\"outcome\":\"not_upheld\"}",
                           &o),
                     CD_OK);
    json_decref(o);
    assert_counts_exact();
    assert_int_equal(patch(c1, "{\"status\":\"reopened\"}", &o), CD_OK);
    json_decref(o);
    assert_int_equal(assert_counts_exact(), waiting_of(a));
    /* A refused change leaves them as they were. */
    int64_t before = assert_counts_exact();
    assert_int_not_equal(patch(c2, "{\"status\":\"closed\"}", &o), CD_OK);
    assert_int_equal(assert_counts_exact(), before);
}

/* ---- ETAs ---- */

static void etas_come_from_similar_history(void **state)
{
    char *cid = new_customer();
    char ids[20][CD_ID_MAX];
    json_t *e = NULL;

    /* Twenty chat questions, resolved after 1, 2, ..., 20 hours. */
    now_ms = london(2026, 2, 2, 9, 0);
    for (int i = 0; i < 20; i++) {
        json_t *c = open_case(cid, "\"channel\":\"chat\"");
        snprintf(ids[i], sizeof ids[i], "%s", json_string_value(json_object_get(c, "id")));
        json_decref(c);
    }
    for (int i = 0; i < 20; i++) {
        now_ms = london(2026, 2, 2, 9, 0) + (int64_t)(i + 1) * 3600 * 1000;
        assert_int_equal(patch(ids[i], "{\"status\":\"resolved\",\"remedy\":{\"type\":\"none\"},"
                                       "\"outcome\":\"answered\"}",
                               NULL),
                         CD_OK);
    }
    /* A new one: half within 10 hours, 8 in 10 within 16, 9 in 10 within 18 (nearest rank).
     * Those twenty opened with queues of 0 to 19 waiting and none wait now, so the queue
     * likeness leaves too few; the estimate stands on type, channel and priority. */
    now_ms = london(2026, 3, 2, 9, 0);
    json_t *c = open_case(cid, "\"channel\":\"chat\"");
    char id[CD_ID_MAX];
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(c, "id")));
    json_decref(c);
    assert_int_equal(cd_cases_eta(cs, cd_str_c(id), now_ms, &e), CD_OK);
    json_t *est = json_object_get(e, "estimate");
    assert_int_equal(json_integer_value(json_object_get(e, "sample_size")), 20);
    assert_int_equal(json_integer_value(json_object_get(est, "p50_ms")), 10 * 3600 * 1000);
    assert_int_equal(json_integer_value(json_object_get(est, "p80_ms")), 16 * 3600 * 1000);
    assert_int_equal(json_integer_value(json_object_get(est, "p90_ms")), 18 * 3600 * 1000);
    assert_string_equal(json_string_value(json_object_get(est, "p50_at")),
                        iso(now_ms + 10LL * 3600 * 1000));
    assert_int_equal(json_array_size(json_object_get(e, "similar_on")), 3);
    assert_non_null(strstr(json_string_value(json_object_get(e, "statement")), "not a promise"));
    json_decref(e);
    /* Five hours later: compared with the 15 that were still open at 5 hours. */
    now_ms += 5LL * 3600 * 1000;
    assert_int_equal(cd_cases_eta(cs, cd_str_c(id), now_ms, &e), CD_OK);
    est = json_object_get(e, "estimate");
    assert_int_equal(json_integer_value(json_object_get(e, "sample_size")), 15);
    assert_int_equal(json_integer_value(json_object_get(est, "p50_ms")), 8 * 3600 * 1000);
    assert_int_equal(json_integer_value(json_object_get(est, "p90_ms")), 14 * 3600 * 1000);
    json_decref(e);
    /* Twelve hours in: only 8 similar cases lasted that long, fewer than the minimum (10):
     * no time is given. */
    now_ms += 7LL * 3600 * 1000;
    assert_int_equal(cd_cases_eta(cs, cd_str_c(id), now_ms, &e), CD_OK);
    assert_true(json_is_null(json_object_get(e, "estimate")));
    assert_int_equal(json_integer_value(json_object_get(e, "sample_size")), 8);
    assert_non_null(strstr(json_string_value(json_object_get(e, "statement")),
                           "not enough history"));
    json_decref(e);
    /* Another type has no history at all. */
    c = open_case(cid, "\"type\":\"request\"");
    assert_int_equal(cd_cases_eta(cs, cd_str_c(json_string_value(json_object_get(c, "id"))),
                                  now_ms, &e),
                     CD_OK);
    assert_true(json_is_null(json_object_get(e, "estimate")));
    assert_int_equal(json_integer_value(json_object_get(e, "sample_size")), 0);
    json_decref(e);
    json_decref(c);
}

/* ---- blind mode and the value policy ---- */

static const char value_settings[] =
    "priority:\n"
    "  customer_value:\n"
    "    tiers: {gold: -1}\n"
    "    disclosure: \"Gold plan customers are answered first: https://example.com/plans\"\n"
    "queue:\n"
    "  blind: true\n";

static int setup_value(void **state)
{
    return open_with(value_settings);
}

static bool has_factor(const json_t *c, const char *factor)
{
    json_t *f = json_object_get(json_object_get(c, "priority_why"), "factors");
    for (size_t i = 0; i < json_array_size(f); i++)
        if (strcmp(json_string_value(json_object_get(json_array_get(f, i), "factor")), factor) ==
            0)
            return true;
    return false;
}

static void blind_mode_hides_value_from_agents(void **state)
{
    char *cid = new_customer();
    json_t *c = open_case(cid, "\"customer_value\":{\"tier\":\"gold\",\"spend_minor\":120000,"
                               "\"currency\":\"EUR\"},\"vulnerability\":[\"health\"]");
    char id[CD_ID_MAX], ag[CD_ID_MAX];
    json_t *o = NULL;

    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(c, "id")));
    /* Under the disclosed policy gold moves priority 3 to 2, and so does the vulnerability:
     * 1. A supervisor sees why. */
    assert_int_equal(json_integer_value(json_object_get(c, "priority")), 1);
    assert_true(has_factor(c, "customer_value"));
    assert_true(has_factor(c, "vulnerability"));
    assert_string_equal(json_string_value(json_object_get(json_object_get(c, "customer_value"),
                                                          "tier")),
                        "gold");
    json_decref(c);
    assert_false(cd_cases_value_visible(cs, "agent"));
    assert_true(cd_cases_value_visible(cs, "supervisor"));
    /* An agent sees neither the value nor that it counted: in the case, in lists, in the
     * queue. */
    assert_int_equal(cd_cases_get(cs, &admin, cd_str_c(id), &agent_view, &o), CD_OK);
    assert_null(json_object_get(o, "customer_value"));
    assert_false(has_factor(o, "customer_value"));
    assert_true(has_factor(o, "vulnerability"));
    char *text = json_dumps(o, 0);
    assert_null(strstr(text, "gold"));
    assert_null(strstr(text, "120000"));
    free(text);
    json_decref(o);
    struct cd_cases_query q = {.limit = 10};
    assert_int_equal(cd_cases_list(cs, &admin, &q, &agent_view, &o), CD_OK);
    text = json_dumps(o, 0);
    assert_null(strstr(text, "gold"));
    assert_null(strstr(text, "customer_value\":{"));
    free(text);
    json_decref(o);
    snprintf(ag, sizeof ag, "%s", agent("Ana", "[\"support\"]", "[]", NULL));
    o = next(ag, false, &agent_view);
    text = json_dumps(o, 0);
    assert_null(strstr(text, "gold"));
    assert_null(strstr(text, "\"factor\":\"customer_value\""));
    free(text);
    json_decref(o);
    /* The value is sealed at rest. */
    assert_null(memmem_db("gold"));
}


/* ---- breaches, lists, report ---- */

static size_t listed(const char *sla)
{
    struct cd_cases_query q = {.sla = cd_str_c(sla), .limit = 50};
    json_t *o = NULL;
    size_t n;

    assert_int_equal(cd_cases_list(cs, &admin, &q, &full, &o), CD_OK);
    n = json_array_size(json_object_get(o, "items"));
    json_decref(o);
    return n;
}

static enum cd_err count_breach_events(struct cd_tx *tx, void *ctx)
{
    return cd_tx_int(tx, "SELECT count(*) FROM outbox_events WHERE type = 'case.breached'", NULL,
                     0, ctx);
}

static void the_sweeper_marks_breaches_once(void **state)
{
    char *cid = new_customer();
    char id[CD_ID_MAX];
    size_t marked = 0;
    json_t *c, *ev = NULL;

    /* A complaint at 09:00: first response due 13:00, resolution 17:00. */
    now_ms = london(2026, 3, 2, 9, 0);
    c = open_case(cid, "\"type\":\"complaint\"");
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(c, "id")));
    json_decref(c);
    now_ms = london(2026, 3, 2, 10, 0);
    assert_int_equal(cd_cases_sweep(cs, now_ms, &marked), CD_OK);
    assert_int_equal(marked, 0);
    assert_int_equal(listed("due_soon"), 0);
    assert_int_equal(listed("breached"), 0);
    /* Within two hours of 13:00 it is due soon. */
    now_ms = london(2026, 3, 2, 11, 30);
    assert_int_equal(listed("due_soon"), 1);
    now_ms = london(2026, 3, 2, 14, 0);
    assert_int_equal(listed("breached"), 1); /* overdue, before any sweep */
    assert_int_equal(cd_cases_sweep(cs, now_ms, &marked), CD_OK);
    assert_int_equal(marked, 1);
    c = get(id);
    assert_string_equal(clock_state(c, "first_response"), "breached");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_object_get(c, "sla"), "first_response"),
                            "breached_at")),
                        iso(london(2026, 3, 2, 13, 0)));
    json_decref(c);
    assert_int_equal(cd_cases_sweep(cs, now_ms, &marked), CD_OK);
    assert_int_equal(marked, 0);
    /* Answered late: met late, still one breach; the resolution breaches at 17:00. */
    assert_int_equal(patch(id, "{\"status\":\"open\"}", NULL), CD_OK);
    now_ms = london(2026, 3, 2, 18, 0);
    assert_int_equal(cd_cases_sweep(cs, now_ms, &marked), CD_OK);
    assert_int_equal(marked, 1);
    assert_int_equal(cd_cases_events(cs, cd_str_c(id), &ev), CD_OK);
    size_t breaches = 0;
    for (size_t i = 0; i < json_array_size(json_object_get(ev, "items")); i++)
        breaches += strcmp(json_string_value(json_object_get(
                               json_array_get(json_object_get(ev, "items"), i), "action")),
                           "case.sla_breached") == 0;
    assert_int_equal(breaches, 2);
    json_decref(ev);
    /* Each breach is also an event on the outbox, for webhooks. */
    int64_t outboxed = 0;
    assert_int_equal(cd_store_read(store, count_breach_events, &outboxed), CD_OK);
    assert_int_equal(outboxed, 2);
    assert_int_equal(listed("breached"), 1);
    /* The figures for /metrics, from the sweep. */
    struct cd_buf m = CD_BUF_INIT(1 << 20);
    assert_int_equal(cd_cases_metrics(cs, &m), CD_OK);
    assert_non_null(strstr(m.p, "candor_cases_breached_open 1\n"));
    assert_non_null(strstr(m.p, "candor_cases_sla_breaches{clock=\"first_response\"} 1\n"));
    assert_non_null(strstr(m.p, "candor_cases_sla_breaches{clock=\"resolution\"} 1\n"));
    assert_non_null(strstr(m.p, "candor_cases{status=\"open\"} 1\n"));
    cd_buf_free(&m);
}

static void the_report_counts_by_team_and_period(void **state)
{
    char *cid = new_customer();
    char a[CD_ID_MAX];
    json_t *c, *r = NULL;

    /* March: a complaint answered in an hour and resolved in time; a question unanswered past
     * its first response. April: one question still open. */
    now_ms = london(2026, 3, 2, 9, 0);
    c = open_case(cid, "\"type\":\"complaint\"");
    snprintf(a, sizeof a, "%s", json_string_value(json_object_get(c, "id")));
    json_decref(c);
    json_decref(open_case(cid, NULL));
    now_ms = london(2026, 3, 2, 10, 0);
    assert_int_equal(patch(a, "{\"status\":\"resolved\",\"remedy\":{\"type\":\"apology\"},"
                              "\"outcome\":\"upheld\"}",
                           NULL),
                     CD_OK);
    now_ms = london(2026, 3, 5, 9, 0);
    assert_int_equal(cd_cases_sweep(cs, now_ms, NULL), CD_OK);
    now_ms = london(2026, 4, 1, 9, 0);
    json_decref(open_case(cid, NULL));
    struct cd_cases_report_query q = {london(2026, 3, 1, 0, 0), london(2026, 5, 1, 0, 0),
                                      "month", "Europe/London", "team"};
    assert_int_equal(cd_cases_sla_report(cs, &q, &r), CD_OK);
    json_t *rows = json_object_get(r, "rows");
    assert_int_equal(json_array_size(rows), 3); /* March complaints, March support, April */
    json_t *mc = json_array_get(rows, 0), *ms = json_array_get(rows, 1),
           *ap = json_array_get(rows, 2);
    assert_string_equal(json_string_value(json_object_get(mc, "group")), "complaints");
    assert_string_equal(json_string_value(json_object_get(mc, "period_start")),
                        iso(london(2026, 3, 1, 0, 0)));
    assert_int_equal(json_integer_value(json_object_get(mc, "resolved")), 1);
    json_t *rs = json_object_get(mc, "resolution");
    assert_int_equal(json_integer_value(json_object_get(rs, "met")), 1);
    assert_true(json_real_value(json_object_get(rs, "met_pct")) == 100.0);
    assert_true(json_real_value(json_object_get(rs, "p50_seconds")) == 3600.0);
    assert_string_equal(json_string_value(json_object_get(ms, "group")), "support");
    json_t *fr = json_object_get(ms, "first_response");
    assert_int_equal(json_integer_value(json_object_get(fr, "breached")), 1);
    assert_int_equal(json_integer_value(json_object_get(ms, "open")), 1);
    assert_string_equal(json_string_value(json_object_get(ap, "period_start")),
                        "2026-03-31T23:00:00.000Z"); /* 1 April, BST */
    json_decref(r);
    /* Bad input. */
    struct cd_cases_report_query bad = {1, 0, "month", NULL, NULL};
    assert_int_equal(cd_cases_sla_report(cs, &bad, &r), CD_ERR_INVALID);
    struct cd_cases_report_query bad2 = {0, 10, "fortnight", NULL, NULL};
    assert_int_equal(cd_cases_sla_report(cs, &bad2, &r), CD_ERR_INVALID);
    struct cd_cases_report_query bad3 = {0, 10, "month", "Mars/Olympus", NULL};
    assert_int_equal(cd_cases_sla_report(cs, &bad3, &r), CD_ERR_INVALID);
}

/* ---- merges ---- */

static void a_merge_moves_cases_and_their_sealed_values(void **state)
{
    char a[CD_ID_MAX], b[CD_ID_MAX], ca[CD_ID_MAX];
    json_t *c, *out = NULL;

    snprintf(a, sizeof a, "%s", new_customer());
    snprintf(b, sizeof b, "%s", new_customer());
    c = open_case(b, "\"vulnerability\":[\"life_event\"]");
    snprintf(ca, sizeof ca, "%s", json_string_value(json_object_get(c, "id")));
    json_decref(c);
    assert_int_equal(cd_core_customer_merge(core, &admin, cd_str_c(a), cd_str_c(b),
                                            CD_FIELDS_REFERENCE, &out),
                     CD_OK);
    json_decref(out);
    c = get(ca);
    assert_string_equal(json_string_value(json_object_get(c, "customer_id")), a);
    assert_string_equal(json_string_value(json_array_get(json_object_get(c, "vulnerability"), 0)),
                        "life_event");
    json_decref(c);
    /* Erased: the sealed values are gone with the key; the case stays. */
    assert_int_equal(cd_core_customer_shred(core, &admin, cd_str_c(a), &out), CD_OK);
    json_decref(out);
    c = get(ca);
    assert_string_equal(json_string_value(json_object_get(c, "sensitive")), "erased");
    assert_int_equal(json_array_size(json_object_get(c, "vulnerability")), 0);
    json_decref(c);
}

/* ---- policies ---- */

static enum cd_err parse_policy(const char *yaml)
{
    struct cd__sla_policy *p = cd_calloc(1, sizeof *p);
    enum cd_err err = cd__sla_policy_parse(p, cals, "p.yaml", yaml, strlen(yaml));
    cd_free(p);
    return err;
}

static void policies_are_checked_when_loaded(void **state)
{
    assert_int_equal(parse_policy(policy), CD_OK);
    assert_int_equal(parse_policy("id: x\nname: X\ncalendar: atlantis\ntargets:\n"
                                  "  - when: {}\n    resolution: \"1 days\"\n"),
                     CD_ERR_INVALID);
    assert_non_null(strstr(cd_err_detail(), "p.yaml:3: calendar names no loaded calendar"));
    assert_int_equal(parse_policy("id: x\nname: X\ncalendar: 24x7\ntargets:\n"
                                  "  - when: {type: complaint}\n    resolution: \"1 days\"\n"),
                     CD_ERR_INVALID);
    assert_non_null(strstr(cd_err_detail(), "the last target must apply to every case"));
    assert_int_equal(parse_policy("id: x\nname: X\ncalendar: 24x7\ntargets:\n"
                                  "  - when: {type: grievance}\n    resolution: \"1 days\"\n"
                                  "  - when: {}\n    resolution: \"1 days\"\n"),
                     CD_ERR_INVALID);
    assert_non_null(strstr(cd_err_detail(), "p.yaml:5: type must be question"));
    assert_int_equal(parse_policy("id: x\nname: X\ncalendar: 24x7\ntargets:\n"
                                  "  - when: {}\n    resolution: \"soon\"\n"),
                     CD_ERR_INVALID);
    assert_int_equal(parse_policy("id: x\nname: X\ncalendar: 24x7\nspeed: fast\ntargets:\n"
                                  "  - when: {}\n    resolution: \"1 days\"\n"),
                     CD_ERR_INVALID);
    assert_int_equal(parse_policy("id: x\nname: X\ncalendar: 24x7\ndue_soon: \"1 days\"\n"
                                  "targets:\n  - when: {}\n    resolution: \"1 days\"\n"),
                     CD_ERR_INVALID);
    struct cd__settings st;
    cd__settings_defaults(&st);
    static const char undisclosed[] = "priority:\n  customer_value:\n    tiers: {gold: -1}\n";
    assert_int_equal(cd__settings_parse(&st, "s.yaml", undisclosed, sizeof undisclosed - 1),
                     CD_ERR_INVALID);
    assert_non_null(strstr(cd_err_detail(), "disclosure"));
    static const char vague[] = "priority:\n  customer_value:\n    tiers: {gold: -1}\n"
                                "    disclosure: \"we do\"\n";
    assert_int_equal(cd__settings_parse(&st, "s.yaml", vague, sizeof vague - 1), CD_ERR_INVALID);
    json_t *o = NULL;
    assert_int_equal(cd_cases_policies_json(cs, &o), CD_OK);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(o, "policies"), 0), "calendar")),
                        "gb-eng");
    assert_true(json_is_true(json_object_get(json_object_get(o, "queue"), "blind")));
    assert_true(json_is_null(json_object_get(json_object_get(o, "priority"), "customer_value")));
    json_decref(o);
}

/* ---- out of memory ---- */

static enum cd_err count_cases(struct cd_tx *tx, void *ctx)
{
    return cd_tx_int(tx, "SELECT count(*) FROM cases", NULL, 0, ctx);
}

static void opening_a_case_survives_every_allocation_failure(void **state)
{
    char *cid = new_customer();
    int64_t before = 0, after = 0;
    long ok = 0;

    assert_int_equal(cd_store_read(store, count_cases, &before), CD_OK);
    for (long n = 1; n < 5000; n++) {
        char text[400];
        json_t *body = NULL, *out = NULL;
        bool replayed = false;
        snprintf(text, sizeof text,
                 "{\"customer_id\":\"%s\",\"type\":\"complaint\",\"tags\":[\"billing\"],"
                 "\"vulnerability\":[\"health\"]}",
                 cid);
        assert_int_equal(cd_json_parse_object(text, strlen(text), &body), CD_OK);
        cd_alloc_fail_nth(n);
        enum cd_err err = cd_cases_create(cs, &admin, body, NULL, &full, &out, &replayed);
        bool hit = cd_alloc_fault_hit();
        cd_alloc_fail_nth(0);
        json_decref(out);
        json_decref(body);
        if (err == CD_OK)
            ok++;
        else
            assert_int_equal(err, CD_ERR_NOMEM);
        if (!hit)
            break;
    }
    assert_int_equal(cd_store_read(store, count_cases, &after), CD_OK);
    /* A failure after the commit (reading the answer) leaves a complete case; one before it
     * leaves nothing: never half a case. */
    assert_true(after - before >= ok);
    assert_true(ok >= 1);
}

/* ---- incidents ---- */

static json_t *incident(const char *json)
{
    json_t *body = NULL, *out = NULL;
    bool replayed = false;

    assert_int_equal(cd_json_parse_object(json, strlen(json), &body), CD_OK);
    enum cd_err err = cd_cases_incident_create(cs, &admin, body, NULL, &out, &replayed);
    if (err != CD_OK)
        fail_msg("incident: %s %s", cd_err_name(err), cd_err_detail());
    json_decref(body);
    return out;
}

static enum cd_err incident_call(enum cd_err (*fn)(struct cd_cases *, const struct cd_actor *,
                                                   struct cd_str, const json_t *, json_t **),
                                 const char *id, const char *json, json_t **out)
{
    json_t *body = NULL, *o = NULL;
    enum cd_err err;

    assert_int_equal(cd_json_parse_object(json, strlen(json), &body), CD_OK);
    err = fn(cs, &admin, cd_str_c(id), body, &o);
    json_decref(body);
    if (out)
        *out = o;
    else
        json_decref(o);
    return err;
}

static long member_int(const json_t *o, const char *a, const char *b)
{
    const json_t *v = json_object_get(o, a);
    return (long)json_integer_value(b ? json_object_get(v, b) : v);
}

/* The notice state of customer cid on incident id. */
static const char *notice_of(const char *id, const char *cid)
{
    static char st[16];
    json_t *o = NULL;
    size_t i;
    json_t *it;

    st[0] = '\0';
    assert_int_equal(cd_cases_incident_customers(cs, cd_str_c(id), CD_STR_NULL, CD_STR_NULL, 1000,
                                                 &o),
                     CD_OK);
    json_array_foreach(json_object_get(o, "items"), i, it)
    {
        if (strcmp(json_string_value(json_object_get(it, "customer_id")), cid) == 0)
            snprintf(st, sizeof st, "%s", json_string_value(json_object_get(it, "notice")));
    }
    json_decref(o);
    return st;
}

static void an_incident_opens_one_case_per_affected_customer(void **state)
{
    char a[CD_ID_MAX], b[CD_ID_MAX], text[600];
    snprintf(a, sizeof a, "%s", new_customer());
    snprintf(b, sizeof b, "%s", new_customer());
    json_t *inc = incident("{\"kind\":\"outage\",\"title\":\"Login down\",\"severity\":\"high\","
                           "\"tags\":[\"technical\"]}");
    const char *id = json_string_value(json_object_get(inc, "id"));
    json_t *o = NULL;

    snprintf(text, sizeof text, "{\"customer_ids\":[\"%s\",\"%s\",\"%s\"]}", a, b,
             "cus_00000000000000000000000000");
    assert_int_equal(incident_call(cd_cases_incident_affect, id, text, &o), CD_OK);
    assert_int_equal(member_int(o, "added", NULL), 2);
    assert_int_equal(member_int(o, "cases_opened", NULL), 2);
    assert_int_equal(json_array_size(json_object_get(o, "unknown")), 1);
    json_decref(o);
    /* Again: nobody is added twice, no second case. */
    assert_int_equal(incident_call(cd_cases_incident_affect, id, text, &o), CD_OK);
    assert_int_equal(member_int(o, "added", NULL), 0);
    assert_int_equal(member_int(o, "already_affected", NULL), 2);
    assert_int_equal(member_int(o, "cases_opened", NULL), 0);
    json_decref(o);
    /* The cases: incident follow-ups, high impact, linked to the incident. */
    struct cd_cases_query q = {.incident_id = cd_str_c(id), .limit = 50};
    assert_int_equal(cd_cases_list(cs, &admin, &q, &full, &o), CD_OK);
    assert_int_equal(json_array_size(json_object_get(o, "items")), 2);
    json_t *c = json_array_get(json_object_get(o, "items"), 0);
    assert_string_equal(json_string_value(json_object_get(c, "type")), "incident_follow_up");
    assert_string_equal(json_string_value(json_object_get(c, "impact")), "high");
    assert_string_equal(json_string_value(json_object_get(c, "incident_id")), id);
    json_decref(o);
    assert_int_equal(cd_cases_incident_get(cs, cd_str_c(id), &o), CD_OK);
    assert_int_equal(member_int(o, "customers", "affected"), 2);
    assert_int_equal(member_int(o, "customers", "cases"), 2);
    assert_int_equal(member_int(o, "customers", "not_yet_told"), 2);
    json_decref(o);
    json_decref(inc);
}

static void customers_are_found_by_a_query_over_cases(void **state)
{
    char a[CD_ID_MAX], b[CD_ID_MAX];
    snprintf(a, sizeof a, "%s", new_customer());
    snprintf(b, sizeof b, "%s", new_customer());
    json_decref(open_case(a, "\"tags\":[\"billing\"]"));
    json_decref(open_case(a, "\"tags\":[\"billing\"]"));
    json_decref(open_case(b, "\"tags\":[\"delivery\"]"));
    json_t *inc = incident("{\"kind\":\"billing_error\",\"title\":\"Double charge\"}");
    const char *id = json_string_value(json_object_get(inc, "id"));
    json_t *o = NULL;

    assert_int_equal(incident_call(cd_cases_incident_affect, id,
                                   "{\"query\":{\"tag\":\"billing\",\"active_only\":true}}", &o),
                     CD_OK);
    assert_int_equal(member_int(o, "matched", NULL), 1);
    assert_int_equal(member_int(o, "added", NULL), 1);
    json_decref(o);
    assert_string_equal(notice_of(id, a), "pending");
    assert_string_equal(notice_of(id, b), "");
    json_decref(inc);
}

static void bad_incident_input_changes_nothing(void **state)
{
    static const char *const bad[] = {
        "{\"title\":\"no kind\"}",
        "{\"kind\":\"flood\",\"title\":\"x\"}",
        "{\"kind\":\"outage\"}",
        "{\"kind\":\"outage\",\"title\":\"\"}",
        "{\"kind\":\"outage\",\"title\":\"x\",\"severity\":\"dire\"}",
        "{\"kind\":\"outage\",\"title\":\"x\",\"legal_notice\":{\"required\":true}}",
        "{\"kind\":\"outage\",\"title\":\"x\",\"tags\":[\"Not A Slug\"]}",
        "{\"kind\":\"outage\",\"title\":\"x\",\"started_at\":\"yesterday\"}",
        "{\"kind\":\"outage\",\"title\":\"x\",\"colour\":\"red\"}",
        "{\"kind\":7,\"title\":\"x\"}",
    };
    json_t *o = NULL;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *body = NULL;
        bool replayed = false;
        assert_int_equal(cd_json_parse_object(bad[i], strlen(bad[i]), &body), CD_OK);
        assert_int_equal(cd_cases_incident_create(cs, &admin, body, NULL, &o, &replayed),
                         CD_ERR_INVALID);
        json_decref(body);
    }
    assert_int_equal(cd_cases_incident_list(cs, CD_STR_NULL, CD_STR_NULL, 50, &o), CD_OK);
    assert_int_equal(json_array_size(json_object_get(o, "items")), 0);
    json_decref(o);
    json_t *inc = incident("{\"kind\":\"outage\",\"title\":\"Down\"}");
    const char *id = json_string_value(json_object_get(inc, "id"));
    assert_int_equal(incident_call(cd_cases_incident_affect, id, "{}", NULL), CD_ERR_INVALID);
    assert_int_equal(incident_call(cd_cases_incident_affect, id,
                                   "{\"customer_ids\":[\"nope\"]}", NULL),
                     CD_ERR_INVALID);
    assert_int_equal(incident_call(cd_cases_incident_affect, id, "{\"query\":{}}", NULL),
                     CD_ERR_INVALID);
    assert_int_equal(incident_call(cd_cases_incident_affect, "inc_00000000000000000000000000",
                                   "{\"query\":{\"tag\":\"x\"}}", NULL),
                     CD_ERR_NOT_FOUND);
    assert_int_equal(incident_call(cd_cases_incident_notify, id, "{}", NULL), CD_ERR_INVALID);
    /* A legal notice only for an incident whose notice the law requires. */
    assert_int_equal(incident_call(cd_cases_incident_notify, id,
                                   "{\"channel\":\"email\",\"legal_notice\":true}", NULL),
                     CD_ERR_INVALID);
    assert_int_equal(incident_call(cd_cases_incident_update, id, "{\"status\":\"resolved\"}", NULL),
                     CD_OK);
    assert_int_equal(incident_call(cd_cases_incident_update, id, "{\"status\":\"open\"}", NULL),
                     CD_ERR_INVALID);
    assert_int_equal(incident_call(cd_cases_incident_update, id, "{\"title\":\"x\",\"version\":1}",
                                   NULL),
                     CD_ERR_CONFLICT);
    assert_int_equal(cd_cases_incident_get(cs, cd_str_c(id), &o), CD_OK);
    assert_string_equal(json_string_value(json_object_get(o, "title")), "Down");
    assert_string_equal(json_string_value(json_object_get(o, "status")), "resolved");
    json_decref(o);
    json_decref(inc);
}

/* Quiet hours defer a service notice until they end; a legal notice goes out at once. */
static void notices_respect_quiet_hours_except_legal_ones(void **state)
{
    char quiet[CD_ID_MAX], day[CD_ID_MAX], text[600];
    snprintf(quiet, sizeof quiet, "%s", new_customer());
    snprintf(day, sizeof day, "%s", new_customer());
    json_t *body = json_pack("{s:{s:s,s:s}}", "quiet_hours", "start", "08:00", "end", "10:00"),
           *o = NULL;
    assert_int_equal(cd_consent_preferences_set(consent, &admin, cd_str_c(quiet), body), CD_OK);
    json_decref(body);
    now_ms = london(2026, 3, 2, 9, 0) + 60000; /* 09:01 UTC: within the quiet hours */
    json_t *inc = incident("{\"kind\":\"outage\",\"title\":\"Payments down\"}");
    const char *id = json_string_value(json_object_get(inc, "id"));
    snprintf(text, sizeof text, "{\"customer_ids\":[\"%s\",\"%s\"]}", quiet, day);
    assert_int_equal(incident_call(cd_cases_incident_affect, id, text, NULL), CD_OK);
    assert_int_equal(incident_call(cd_cases_incident_notify, id, "{\"channel\":\"sms\"}", &o),
                     CD_OK);
    assert_int_equal(member_int(o, "told", NULL), 1);
    assert_int_equal(member_int(o, "deferred", NULL), 1);
    json_decref(o);
    assert_string_equal(notice_of(id, quiet), "deferred");
    assert_string_equal(notice_of(id, day), "told");
    /* Asking again tells nobody twice. */
    assert_int_equal(incident_call(cd_cases_incident_notify, id, "{\"channel\":\"sms\"}", &o),
                     CD_OK);
    assert_int_equal(member_int(o, "told", NULL), 0);
    json_decref(o);
    /* A sweep within the quiet hours leaves it; after them it is told. */
    size_t n = 0;
    assert_int_equal(cd_cases_sweep(cs, now_ms, &n), CD_OK);
    assert_string_equal(notice_of(id, quiet), "deferred");
    now_ms += 3600000; /* 10:01 */
    assert_int_equal(cd_cases_sweep(cs, now_ms, &n), CD_OK);
    assert_string_equal(notice_of(id, quiet), "told");
    /* The told notice is in the case's history (and so the ledger), with its channel. */
    assert_int_equal(cd_cases_incident_customers(cs, cd_str_c(id), cd_str_c("told"), CD_STR_NULL,
                                                 10, &o),
                     CD_OK);
    assert_int_equal(json_array_size(json_object_get(o, "items")), 2);
    const char *case_id =
        json_string_value(json_object_get(json_array_get(json_object_get(o, "items"), 0),
                                          "case_id"));
    json_t *ev = NULL;
    assert_int_equal(cd_cases_events(cs, cd_str_c(case_id), &ev), CD_OK);
    bool noticed = false;
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(ev, "items"), i, it)
    {
        if (strcmp(json_string_value(json_object_get(it, "action")), "case.incident_notice") == 0)
            noticed = strcmp(json_string_value(json_object_get(json_object_get(it, "data"),
                                                               "channel")),
                             "sms") == 0;
    }
    assert_true(noticed);
    json_decref(ev);
    json_decref(o);
    json_decref(inc);

    /* A breach the law requires telling of: told during the quiet hours too. */
    now_ms = london(2026, 3, 3, 9, 0) + 60000;
    inc = incident("{\"kind\":\"data_breach\",\"title\":\"Wrong addresses\","
                   "\"legal_notice\":{\"required\":true,\"basis\":\"GDPR Art. 34\"}}");
    id = json_string_value(json_object_get(inc, "id"));
    assert_int_equal(incident_call(cd_cases_incident_affect, id, text, NULL), CD_OK);
    assert_int_equal(incident_call(cd_cases_incident_notify, id,
                                   "{\"channel\":\"sms\",\"legal_notice\":true}", &o),
                     CD_OK);
    assert_int_equal(member_int(o, "told", NULL), 2);
    assert_int_equal(member_int(o, "deferred", NULL), 0);
    json_decref(o);
    assert_string_equal(notice_of(id, quiet), "told");
    json_decref(inc);
}

int main(void)
{
    cd_json_init();
    cd_crypto_init();
    cd_log_set_level(CD_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(business_hours_cross_a_weekend, setup, teardown),
        cmocka_unit_test_setup_teardown(business_hours_cross_a_clock_change, setup, teardown),
        cmocka_unit_test_setup_teardown(business_hours_skip_holidays, setup, teardown),
        cmocka_unit_test_setup_teardown(waiting_on_the_customer_pauses_resolution, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(elapsed_targets_pause_in_elapsed_time, setup, teardown),
        cmocka_unit_test_setup_teardown(only_legal_transitions, setup, teardown),
        cmocka_unit_test_setup_teardown(unknown_cases_and_customers, setup, teardown),
        cmocka_unit_test_setup_teardown(interactions_open_answer_and_reopen_cases, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_question_that_turns_into_a_complaint, setup, teardown),
        cmocka_unit_test_setup_teardown(earliest_deadline_first_within_skills, setup, teardown),
        cmocka_unit_test_setup_teardown(concurrent_agents_get_distinct_cases, setup, teardown),
        cmocka_unit_test_setup_teardown(the_waiting_counts_follow_every_change, setup, teardown),
        cmocka_unit_test_setup_teardown(etas_come_from_similar_history, setup, teardown),
        cmocka_unit_test_setup_teardown(blind_mode_hides_value_from_agents, setup_value,
                                        teardown),
        cmocka_unit_test_setup_teardown(the_sweeper_marks_breaches_once, setup, teardown),
        cmocka_unit_test_setup_teardown(the_report_counts_by_team_and_period, setup, teardown),
        cmocka_unit_test_setup_teardown(a_merge_moves_cases_and_their_sealed_values, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(policies_are_checked_when_loaded, setup, teardown),
        cmocka_unit_test_setup_teardown(an_incident_opens_one_case_per_affected_customer, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(customers_are_found_by_a_query_over_cases, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(bad_incident_input_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(notices_respect_quiet_hours_except_legal_ones, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(opening_a_case_survives_every_allocation_failure, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
