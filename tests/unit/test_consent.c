/* Unit tests for src/consent: the state machine, expiry with an injected clock, stale notices,
 * GPC, CASL implied consent, quiet hours across time zones and DST changes, frequency caps
 * counted from recorded interactions (refusals audited), receipts, unsubscribe tokens, the
 * restrictions of processing, decisions for merged customers, the projection rebuilt from the
 * tables equal to the live one, and the projection's table itself:
 * id formatting, growth and collisions, and lock-free decisions while a writer grows it. */
#include <ctype.h>
#include <pthread.h>
#include <unistd.h>
#include "unit.h"
#include "base/base_testing.h"
#include "consent/consent_testing.h"
#include "consent/consent.h"
#include "consent/consent_int.h"
#include "crypto/crypto.h"
#include "audit/audit.h"

static char dir[128], dbpath[200];
static struct cd_store *store;
static struct cd_consent *cons;
static const struct cd_actor actor = {"tok_unit", "admin", "unit test", "req_unit", NULL,
                                      false, false};
static int64_t fake_now;

static int64_t fake_clock(void)
{
    return fake_now;
}

static int64_t customer_stamp_offset; /* added to now for the next customer's updated_at */

static enum cd_err add_customer_fn(struct cd_tx *tx, void *ctx)
{
    const char **c = ctx;
    struct cd_val p[4] = {CD_VCSTR(c[0]), CD_VINT(cd_now_ms() + customer_stamp_offset),
                          CD_VCSTR(c[1]), CD_VCSTR(c[2])};
    return cd_tx_exec(tx, "INSERT INTO customers(id, created_at, updated_at, jurisdiction, "
                          "time_zone) VALUES($1,$2,$2,$3,$4)",
                      p, 4, NULL, NULL, NULL);
}

static void customer(char id[CD_ID_MAX], const char *jur, const char *tz)
{
    const char *c[3] = {id, jur, tz};
    cd_id_new("cus", id);
    assert_int_equal(cd_store_write(store, add_customer_fn, (void *)c), CD_OK);
}

static enum cd_err add_sent_fn(struct cd_tx *tx, void *ctx)
{
    const char **c = ctx;
    char id[CD_ID_MAX];
    cd_id_new("int", id);
    struct cd_val p[4] = {CD_VCSTR(id), CD_VCSTR(c[0]), CD_VCSTR(c[1]),
                          CD_VINT(cd_now_ms() - 86400000)};
    return cd_tx_exec(tx, "INSERT INTO interactions(id, customer_id, channel, direction, "
                          "occurred_at, created_at, purpose) VALUES($1,$2,$3,'outbound',$4,$4,"
                          "'marketing')",
                      p, 4, NULL, NULL, NULL);
}

static enum cd_err count_denied_fn(struct cd_tx *tx, void *ctx)
{
    return cd_tx_int(tx, "SELECT count(*) FROM audit_events WHERE action = "
                         "'interaction.outbound'", NULL, 0, ctx);
}

static enum cd_err record(const char *cid, const char *purpose, const char *channel,
                          const char *state, const char *extra_json, json_t **out)
{
    char text[1024];
    json_t *body = NULL, *o = NULL;
    snprintf(text, sizeof text,
             "{\"customer_id\":\"%s\",\"purpose\":\"%s\",\"channel\":\"%s\",\"state\":\"%s\","
             "\"method\":\"web_form\"%s%s}",
             cid, purpose, channel, state, extra_json ? "," : "", extra_json ? extra_json : "");
    assert_int_equal(cd_json_parse_object(text, strlen(text), &body), CD_OK);
    enum cd_err err = cd_consent_record(cons, &actor, body, &o);
    json_decref(body);
    if (out)
        *out = o;
    else
        json_decref(o);
    return err;
}

static const char *why(const char *cid, enum cd_purpose p, enum cd_consent_channel ch,
                       int64_t at)
{
    static struct cd_consent_decision d;
    assert_int_equal(cd_consent_decide(cons, cd_str_c(cid), p, ch, at, &d), CD_OK);
    return d.reason;
}

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/candor-test-consent-%d", (int)getpid());
    snprintf(dbpath, sizeof dbpath, "%s/candor.db", dir);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -m 700 %s", dir, dir);
    assert_int_equal(system(cmd), 0);
    cd_json_init();
    assert_int_equal(cd_crypto_init(), CD_OK);
    assert_int_equal(cd_store_open(dbpath, &store), CD_OK);
    assert_int_equal(cd_consent_open(store, dir, "rules/consent/jurisdictions.yaml", &cons),
                     CD_OK);
    return 0;
}

static int teardown(void **state)
{
    char cmd[300];
    cd_consent_close(cons);
    cd_store_close(store);
    cd_clock_override(NULL);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void state_machine(void **state)
{
    char c[CD_ID_MAX];
    int64_t now = cd_now_ms();
    customer(c, "EU", "Europe/Berlin");
    assert_string_equal(why(c, CD_PURPOSE_SERVICE, CD_CONSENT_CHANNEL_EMAIL, now),
                        "not_required");
    assert_int_equal(record(c, "marketing", "*", "requested", NULL, NULL), CD_OK);
    assert_string_equal(why(c, CD_PURPOSE_MARKETING, CD_CONSENT_CHANNEL_ANY, cd_now_ms()),
                        "no_consent");
    assert_int_equal(record(c, "marketing", "*", "given", NULL, NULL), CD_OK);
    assert_string_equal(why(c, CD_PURPOSE_MARKETING, CD_CONSENT_CHANNEL_ANY, cd_now_ms()),
                        "consent_given");
    assert_int_equal(record(c, "marketing", "email", "refused", NULL, NULL), CD_OK);
    assert_string_equal(why(c, CD_PURPOSE_MARKETING, CD_CONSENT_CHANNEL_EMAIL, cd_now_ms()),
                        "refused");
    assert_string_equal(why(c, CD_PURPOSE_MARKETING, CD_CONSENT_CHANNEL_ANY, cd_now_ms()),
                        "consent_given");
    assert_int_equal(record(c, "marketing", "*", "withdrawn", NULL, NULL), CD_OK);
    assert_string_equal(why(c, CD_PURPOSE_MARKETING, CD_CONSENT_CHANNEL_SMS, cd_now_ms()),
                        "withdrawn");
    assert_int_equal(record(c, "marketing", "*", "invalidated", NULL, NULL), CD_OK);
    assert_string_equal(why(c, CD_PURPOSE_MARKETING, CD_CONSENT_CHANNEL_ANY, cd_now_ms()),
                        "invalidated");
    /* Bad input: nothing recorded. */
    assert_int_equal(record(c, "marketing", "*", "perhaps", NULL, NULL), CD_ERR_INVALID);
    assert_int_equal(record(c, "nope", "*", "given", NULL, NULL), CD_ERR_INVALID);
    assert_int_equal(record("cus_00000000000000000000000000", "marketing", "*", "given", NULL,
                            NULL),
                     CD_ERR_NOT_FOUND);
    assert_int_equal(cd_consent_projection_check(cons), CD_OK);
}

static void expiry_with_injected_clock(void **state)
{
    char c[CD_ID_MAX];
    customer(c, "EU", "");
    fake_now = cd_now_ms();
    cd_clock_override(fake_clock);
    assert_int_equal(record(c, "analytics", "*", "given",
                            "\"expires_at\":\"2099-01-01T00:00:00Z\"", NULL),
                     CD_OK);
    int64_t exp = 0;
    assert_int_equal(cd_time_parse(CD_STR("2099-01-01T00:00:00Z"), &exp), CD_OK);
    assert_string_equal(why(c, CD_PURPOSE_ANALYTICS, CD_CONSENT_CHANNEL_ANY, cd_now_ms()),
                        "consent_given");
    fake_now = exp + 1;
    assert_string_equal(why(c, CD_PURPOSE_ANALYTICS, CD_CONSENT_CHANNEL_ANY, cd_now_ms()),
                        "expired");
    cd_clock_override(NULL);
}

static void stale_notice(void **state)
{
    char c[CD_ID_MAX], extra[200];
    json_t *n1 = NULL, *n2 = NULL, *body = NULL;
    bool created = false;
    const char *t1 = "{\"name\":\"unit-mkt\",\"text\":\"v1\",\"material\":true}";
    const char *t2 = "{\"name\":\"unit-mkt\",\"text\":\"v2 shares with partners\","
                     "\"material\":true}";
    customer(c, "UK", "Europe/London");
    assert_int_equal(cd_json_parse_object(t1, strlen(t1), &body), CD_OK);
    assert_int_equal(cd_consent_notice_publish(cons, &actor, body, &n1, &created), CD_OK);
    assert_true(created);
    json_decref(body);
    snprintf(extra, sizeof extra, "\"notice_id\":\"%s\"",
             json_string_value(json_object_get(n1, "id")));
    assert_int_equal(record(c, "personalization", "*", "given", extra, NULL), CD_OK);
    assert_string_equal(why(c, CD_PURPOSE_PERSONALIZATION, CD_CONSENT_CHANNEL_ANY, cd_now_ms()),
                        "consent_given");
    assert_int_equal(cd_json_parse_object(t2, strlen(t2), &body), CD_OK);
    assert_int_equal(cd_consent_notice_publish(cons, &actor, body, &n2, &created), CD_OK);
    json_decref(body);
    assert_int_equal(json_integer_value(json_object_get(n2, "version")), 2);
    assert_string_equal(why(c, CD_PURPOSE_PERSONALIZATION, CD_CONSENT_CHANNEL_ANY, cd_now_ms()),
                        "stale_notice");
    snprintf(extra, sizeof extra, "\"notice_id\":\"%s\"",
             json_string_value(json_object_get(n2, "id")));
    assert_int_equal(record(c, "personalization", "*", "given", extra, NULL), CD_OK);
    assert_string_equal(why(c, CD_PURPOSE_PERSONALIZATION, CD_CONSENT_CHANNEL_ANY, cd_now_ms()),
                        "consent_given");
    json_decref(n1);
    json_decref(n2);
}

static void gpc_and_explicit_opt_in(void **state)
{
    char c[CD_ID_MAX];
    json_t *o = NULL;
    customer(c, "US-CA", "America/Los_Angeles");
    assert_int_equal(record(c, "analytics", "*", "given", NULL, NULL), CD_OK);
    assert_string_equal(why(c, CD_PURPOSE_SALE_OR_SHARING, CD_CONSENT_CHANNEL_ANY, cd_now_ms()),
                        "not_opted_out");
    assert_int_equal(cd_consent_gpc(cons, &actor, cd_str_c(c), &o), CD_OK);
    assert_int_equal(json_array_size(json_object_get(o, "recorded")), 2);
    json_decref(o);
    assert_string_equal(why(c, CD_PURPOSE_SALE_OR_SHARING, CD_CONSENT_CHANNEL_ANY, cd_now_ms()),
                        "gpc");
    assert_string_equal(why(c, CD_PURPOSE_ANALYTICS, CD_CONSENT_CHANNEL_ANY, cd_now_ms()),
                        "consent_given");
    assert_int_equal(record(c, "sale_or_sharing", "*", "given", NULL, NULL), CD_OK);
    assert_int_equal(cd_consent_gpc(cons, &actor, cd_str_c(c), &o), CD_OK);
    assert_int_equal(json_array_size(json_object_get(o, "recorded")), 0);
    json_decref(o);
    assert_string_equal(why(c, CD_PURPOSE_SALE_OR_SHARING, CD_CONSENT_CHANNEL_ANY, cd_now_ms()),
                        "consent_given");
}

static void casl_implied_consent(void **state)
{
    char c[CD_ID_MAX];
    int64_t purchase = 0, later = 0;
    customer(c, "CA", "America/Toronto");
    assert_int_equal(record(c, "marketing", "*", "given",
                            "\"legal_basis\":\"implied_consent\","
                            "\"purchase_at\":\"2025-01-10T00:00:00Z\"", NULL),
                     CD_OK);
    assert_int_equal(cd_time_parse(CD_STR("2025-01-10T00:00:00Z"), &purchase), CD_OK);
    assert_string_equal(why(c, CD_PURPOSE_MARKETING, CD_CONSENT_CHANNEL_ANY,
                            purchase + 729LL * 86400000), "consent_given");
    assert_string_equal(why(c, CD_PURPOSE_MARKETING, CD_CONSENT_CHANNEL_ANY,
                            purchase + 730LL * 86400000), "expired");
    /* Express consent does not expire. */
    assert_int_equal(record(c, "marketing", "*", "given", NULL, NULL), CD_OK);
    assert_int_equal(cd_time_parse(CD_STR("2040-01-01T00:00:00Z"), &later), CD_OK);
    assert_string_equal(why(c, CD_PURPOSE_MARKETING, CD_CONSENT_CHANNEL_ANY, later),
                        "consent_given");
    /* Implied consent is not a basis under GDPR rules. */
    char e[CD_ID_MAX];
    customer(e, "EU", "");
    assert_int_equal(record(e, "marketing", "*", "given",
                            "\"legal_basis\":\"implied_consent\","
                            "\"purchase_at\":\"2025-01-10T00:00:00Z\"", NULL),
                     CD_ERR_INVALID);
}

static void local_time_and_dst(void **state)
{
    int64_t t = 0;
    int m = -1;
    /* Berlin leaves summer time on 2026-10-25 at 01:00 UTC: 02:30 local twice. */
    assert_int_equal(cd_time_parse(CD_STR("2026-10-25T00:30:00Z"), &t), CD_OK);
    assert_int_equal(cd_consent_local_minutes(CD_STR("Europe/Berlin"), t, &m), CD_OK);
    assert_int_equal(m, 2 * 60 + 30);
    assert_int_equal(cd_time_parse(CD_STR("2026-10-25T01:30:00Z"), &t), CD_OK);
    assert_int_equal(cd_consent_local_minutes(CD_STR("Europe/Berlin"), t, &m), CD_OK);
    assert_int_equal(m, 2 * 60 + 30);
    /* New York enters summer time on 2026-03-08 at 07:00 UTC. */
    assert_int_equal(cd_time_parse(CD_STR("2026-03-08T06:59:00Z"), &t), CD_OK);
    assert_int_equal(cd_consent_local_minutes(CD_STR("America/New_York"), t, &m), CD_OK);
    assert_int_equal(m, 1 * 60 + 59);
    assert_int_equal(cd_time_parse(CD_STR("2026-03-08T07:00:00Z"), &t), CD_OK);
    assert_int_equal(cd_consent_local_minutes(CD_STR("America/New_York"), t, &m), CD_OK);
    assert_int_equal(m, 3 * 60);
    assert_int_equal(cd_consent_local_minutes(CD_STR("Asia/Kolkata"), t, &m), CD_OK);
    assert_int_equal(m, 12 * 60 + 30);
    assert_int_equal(cd_consent_local_minutes(CD_STR("../../etc/passwd"), t, &m),
                     CD_ERR_INVALID);
    assert_int_equal(cd_consent_local_minutes(CD_STR("Mars/Olympus"), t, &m), CD_ERR_NOT_FOUND);
}

static void quiet_hours_across_dst(void **state)
{
    char c[CD_ID_MAX];
    json_t *body = NULL;
    int64_t t = 0;
    const char *prefs = "{\"quiet_hours\":{\"start\":\"21:00\",\"end\":\"08:00\"}}";
    customer(c, "US-CA", "America/New_York");
    assert_int_equal(cd_json_parse_object(prefs, strlen(prefs), &body), CD_OK);
    assert_int_equal(cd_consent_preferences_set(cons, &actor, cd_str_c(c), body), CD_OK);
    json_decref(body);
    /* 12:30 UTC is 07:30 EST on 7 March (quiet) but 08:30 EDT on 8 March (not quiet). */
    assert_int_equal(cd_time_parse(CD_STR("2026-03-07T12:30:00Z"), &t), CD_OK);
    assert_string_equal(why(c, CD_PURPOSE_MARKETING, CD_CONSENT_CHANNEL_EMAIL, t),
                        "quiet_hours");
    assert_int_equal(cd_time_parse(CD_STR("2026-03-09T12:30:00Z"), &t), CD_OK);
    assert_string_equal(why(c, CD_PURPOSE_MARKETING, CD_CONSENT_CHANNEL_EMAIL, t),
                        "not_opted_out");
    /* "*" asks about the purpose, not a contact: quiet hours do not apply. */
    assert_int_equal(cd_time_parse(CD_STR("2026-03-07T12:30:00Z"), &t), CD_OK);
    assert_string_equal(why(c, CD_PURPOSE_MARKETING, CD_CONSENT_CHANNEL_ANY, t),
                        "not_opted_out");
    /* A service message needs no consent, yet asks whether the quiet hours hold: they do on
     * 7 March, not on 9 March, never for "*", nor for a customer the engine does not know. */
    assert_true(cd_consent_quiet_hours(cons, cd_str_c(c), CD_CONSENT_CHANNEL_SMS, t));
    assert_string_equal(why(c, CD_PURPOSE_SERVICE, CD_CONSENT_CHANNEL_SMS, t), "not_required");
    assert_false(cd_consent_quiet_hours(cons, cd_str_c(c), CD_CONSENT_CHANNEL_ANY, t));
    assert_false(cd_consent_quiet_hours(cons, CD_STR("cus_00000000000000000000000000"),
                                        CD_CONSENT_CHANNEL_SMS, t));
    assert_int_equal(cd_time_parse(CD_STR("2026-03-09T12:30:00Z"), &t), CD_OK);
    assert_false(cd_consent_quiet_hours(cons, cd_str_c(c), CD_CONSENT_CHANNEL_SMS, t));
}

static void caps_refuse_in_path_and_audit(void **state)
{
    char c[CD_ID_MAX];
    const char *s[2];
    int64_t before = 0, after = 0;
    customer(c, "EU", "UTC");
    assert_int_equal(record(c, "marketing", "*", "given", NULL, NULL), CD_OK);
    assert_int_equal(cd_store_read(store, count_denied_fn, &before), CD_OK);
    assert_int_equal(cd_consent_outbound_check(cons, &actor, c, "email", "marketing",
                                               CD_STR_NULL, CD_STR("hi"), NULL, NULL),
                     CD_OK);
    s[0] = c;
    s[1] = "email";
    /* The EU rules cap marketing email at 2 per 7 days. */
    assert_int_equal(cd_store_write(store, add_sent_fn, s), CD_OK);
    assert_int_equal(cd_store_write(store, add_sent_fn, s), CD_OK);
    assert_int_equal(cd_consent_outbound_check(cons, &actor, c, "email", "marketing",
                                               CD_STR_NULL, CD_STR("hi"), NULL, NULL),
                     CD_ERR_CONSENT_DENIED);
    assert_non_null(strstr(cd_err_detail(), "frequency_cap"));
    /* SMS is not capped by that rule; service needs no consent. */
    assert_int_equal(cd_consent_outbound_check(cons, &actor, c, "sms", "marketing",
                                               CD_STR_NULL, CD_STR("hi"), NULL, NULL),
                     CD_OK);
    assert_int_equal(cd_consent_outbound_check(cons, &actor, c, "email", "service",
                                               CD_STR_NULL, CD_STR("hi"), NULL, NULL),
                     CD_OK);
    /* No consent at all: refused with the reason. */
    char d[CD_ID_MAX];
    customer(d, "EU", "");
    assert_int_equal(cd_consent_outbound_check(cons, &actor, d, "email", "marketing",
                                               CD_STR_NULL, CD_STR("hi"), NULL, NULL),
                     CD_ERR_CONSENT_DENIED);
    assert_true(strncmp(cd_err_detail(), "no_consent:", 11) == 0);
    assert_int_equal(cd_store_read(store, count_denied_fn, &after), CD_OK);
    assert_int_equal(after, before + 2);
}

/* A message about a topic the customer opted out of is refused in the path, with the topic
 * named in the detail and the refusal audited; other topics, no topic, and purposes that need
 * no consent pass. */
static void topic_refused_in_path(void **state)
{
    char c[CD_ID_MAX];
    json_t *body = NULL;
    int64_t before = 0, after = 0;
    const char *prefs = "{\"topics_opted_out\":[\"newsletter\"]}";

    customer(c, "US-CA", "");
    assert_int_equal(record(c, "marketing", "*", "given", NULL, NULL), CD_OK);
    assert_int_equal(cd_json_parse_object(prefs, strlen(prefs), &body), CD_OK);
    assert_int_equal(cd_consent_preferences_set(cons, &actor, cd_str_c(c), body), CD_OK);
    json_decref(body);
    assert_int_equal(cd_store_read(store, count_denied_fn, &before), CD_OK);
    assert_int_equal(cd_consent_outbound_check(cons, &actor, c, "sms", "marketing",
                                               CD_STR("newsletter"), CD_STR("hi"), NULL, NULL),
                     CD_ERR_CONSENT_DENIED);
    assert_true(strncmp(cd_err_detail(), "topic_opted_out:", 16) == 0);
    assert_non_null(strstr(cd_err_detail(), "'newsletter'"));
    assert_int_equal(cd_store_read(store, count_denied_fn, &after), CD_OK);
    assert_int_equal(after, before + 1);
    assert_int_equal(cd_consent_outbound_check(cons, &actor, c, "sms", "marketing",
                                               CD_STR("offers"), CD_STR("hi"), NULL, NULL),
                     CD_OK);
    assert_int_equal(cd_consent_outbound_check(cons, &actor, c, "sms", "marketing",
                                               CD_STR_NULL, CD_STR("hi"), NULL, NULL),
                     CD_OK);
    assert_int_equal(cd_consent_outbound_check(cons, &actor, c, "sms", "service",
                                               CD_STR("newsletter"), CD_STR("hi"), NULL, NULL),
                     CD_OK);
}

static void receipts_verify(void **state)
{
    char c[CD_ID_MAX];
    json_t *ev = NULL, *rc = NULL;
    customer(c, "EU", "");
    assert_int_equal(record(c, "research", "*", "given", NULL, &ev), CD_OK);
    const char *id = json_string_value(json_object_get(ev, "id"));
    assert_int_equal(cd_consent_receipt(cons, cd_str_c(id), &rc), CD_OK);
    const char *b64 = json_string_value(json_object_get(rc, "payload"));
    char payload[4096];
    size_t n = 0;
    assert_int_equal(cd_b64url_decode(cd_str_c(b64), payload, sizeof payload, &n), CD_OK);
    struct cd_str sig = cd_str_c(json_string_value(json_object_get(rc, "signature")));
    assert_int_equal(cd_consent_receipt_verify(cons, (struct cd_str){payload, n}, sig), CD_OK);
    payload[10] ^= 1;
    assert_int_equal(cd_consent_receipt_verify(cons, (struct cd_str){payload, n}, sig),
                     CD_ERR_INTEGRITY);
    json_decref(ev);
    json_decref(rc);
}

static void unsubscribe_tokens(void **state)
{
    char c[CD_ID_MAX];
    json_t *link = NULL, *o = NULL;
    enum cd_purpose p;
    enum cd_consent_channel ch;
    customer(c, "EU", "");
    assert_int_equal(record(c, "marketing", "email", "given", NULL, NULL), CD_OK);
    assert_int_equal(cd_consent_unsubscribe_link(cons, &actor, cd_str_c(c), CD_PURPOSE_MARKETING,
                                                 CD_CONSENT_CHANNEL_EMAIL,
                                                 CD_STR("https://x.example"), &link),
                     CD_OK);
    char tok[128];
    snprintf(tok, sizeof tok, "%s", json_string_value(json_object_get(link, "token")));
    assert_int_equal(cd_consent_unsubscribe_peek(cons, cd_str_c(tok), &p, &ch), CD_OK);
    assert_int_equal(p, CD_PURPOSE_MARKETING);
    char forged[128];
    snprintf(forged, sizeof forged, "%s", tok);
    forged[5] = forged[5] == 'A' ? 'B' : 'A';
    assert_int_equal(cd_consent_unsubscribe(cons, cd_str_c(forged), "req_x", &o),
                     CD_ERR_NOT_FOUND);
    assert_string_equal(why(c, CD_PURPOSE_MARKETING, CD_CONSENT_CHANNEL_EMAIL, cd_now_ms()),
                        "consent_given");
    assert_int_equal(cd_consent_unsubscribe(cons, cd_str_c(tok), "req_y", &o), CD_OK);
    json_decref(o);
    assert_string_equal(why(c, CD_PURPOSE_MARKETING, CD_CONSENT_CHANNEL_EMAIL, cd_now_ms()),
                        "withdrawn");
    assert_int_equal(cd_consent_unsubscribe(cons, cd_str_c(tok), "req_z", &o), CD_ERR_CONFLICT);
    json_decref(link);
}

/* A customer the projection has not seen yet is decided exactly by cd_consent_decide_exact; and
 * a row stamped before the newest one the refresher has seen (a write that committed late, or
 * a clock that stepped back) is still picked up by the refresher. */
static void new_and_late_customers_are_found(void **state)
{
    char id[CD_ID_MAX], late[CD_ID_MAX];
    struct cd_consent_decision d;
    (void)state;

    customer(id, "EU", "Europe/Berlin");
    assert_int_equal(cd_consent_decide_exact(cons, cd_str_c(id), CD_PURPOSE_MARKETING,
                                             CD_CONSENT_CHANNEL_EMAIL, CD_STR_NULL, cd_now_ms(),
                                             &d),
                     CD_OK);
    assert_string_equal(d.reason, "no_consent");
    assert_int_equal(cd_consent_projection_check(cons), CD_OK); /* a refresher pass */
    customer_stamp_offset = -1000;
    customer(late, "EU", "Europe/Berlin");
    customer_stamp_offset = 0;
    assert_int_equal(cd_consent_projection_check(cons), CD_OK);
    cd_consent_decide(cons, cd_str_c(late), CD_PURPOSE_MARKETING, CD_CONSENT_CHANNEL_EMAIL,
                      cd_now_ms(), &d);
    assert_string_equal(d.reason, "no_consent");
}

/* Five customers and how often a walk met each. */
struct ids_walk {
    const char *ids[5];
    int seen[5];
};

/* emit for cd_consent_filter: counts the customers of a struct ids_walk it meets. */
static enum cd_err count_ids(void *ctx, struct cd_str id, const struct cd_consent_decision *d)
{
    struct ids_walk *w = ctx;
    for (int i = 0; i < 5; i++)
        if (cd_str_eq_c(id, w->ids[i]))
            w->seen[i]++;
    return CD_OK;
}

static enum cd_err restrict_fn(struct cd_tx *tx, void *ctx)
{
    const char **c = ctx;
    struct cd_val p[3] = {CD_VCSTR(c[0]), CD_VINT(c[1] != NULL), CD_VINT(cd_now_ms())};
    return cd_tx_exec(tx, "UPDATE customers SET restricted = $2, updated_at = $3 WHERE id = $1",
                      p, 3, NULL, NULL, NULL);
}

/* Restricts (on true) or lifts the restriction of cid as core does, then tells the engine. */
static void set_restricted(const char *cid, bool on)
{
    const char *c[2] = {cid, on ? "1" : NULL};
    assert_int_equal(cd_store_write(store, restrict_fn, (void *)c), CD_OK);
    cd_consent_customer_changed(cons, cid);
}

static enum cd_err emit_reason(void *ctx, struct cd_str id, const struct cd_consent_decision *d)
{
    snprintf(ctx, 32, "%s", d->reason);
    return CD_OK;
}

/* A restricted customer (GDPR Art. 18) is denied every purpose the restriction covers, in every
 * kind of decision and in the path; the purposes the policy leaves stay allowed. */
static void restriction_covers_consent_and_contact(void **state)
{
    char c[CD_ID_MAX], reason[32] = "";
    struct cd_str id;
    int64_t now = cd_now_ms();

    cd_consent_set_restriction(cons, 1u << CD_PURPOSE_LEGAL_OBLIGATION |
                                         1u << CD_PURPOSE_SECURITY);
    customer(c, "US", "");
    id = cd_str_c(c);
    assert_int_equal(record(c, "marketing", "*", "given", NULL, NULL), CD_OK);
    assert_string_equal(why(c, CD_PURPOSE_MARKETING, CD_CONSENT_CHANNEL_EMAIL, now),
                        "consent_given");
    set_restricted(c, true);
    for (int pu = 0; pu < CD_PURPOSE__COUNT; pu++) {
        bool left = pu == CD_PURPOSE_LEGAL_OBLIGATION || pu == CD_PURPOSE_SECURITY;
        const char *r = why(c, (enum cd_purpose)pu, CD_CONSENT_CHANNEL_EMAIL, now);
        assert_string_equal(r, left ? "not_required" : "restricted");
    }
    assert_int_equal(cd_consent_filter(cons, &id, 1, CD_PURPOSE_SERVICE, CD_CONSENT_CHANNEL_ANY,
                                       now, emit_reason, reason),
                     CD_OK);
    assert_string_equal(reason, "restricted");
    assert_int_equal(cd_consent_outbound_check(cons, &actor, c, "email", "service", CD_STR_NULL,
                                               CD_STR("hi"), NULL, NULL),
                     CD_ERR_CONSENT_DENIED);
    assert_true(strncmp(cd_err_detail(), "restricted:", 11) == 0);
    assert_int_equal(cd_consent_outbound_check(cons, &actor, c, "email", "legal_obligation",
                                               CD_STR_NULL, CD_STR("hi"), NULL, NULL),
                     CD_OK);
    set_restricted(c, false);
    assert_string_equal(why(c, CD_PURPOSE_MARKETING, CD_CONSENT_CHANNEL_EMAIL, now),
                        "consent_given");
    assert_int_equal(cd_consent_outbound_check(cons, &actor, c, "email", "service", CD_STR_NULL,
                                               CD_STR("hi"), NULL, NULL),
                     CD_OK);
}

static enum cd_err merge_fn(struct cd_tx *tx, void *ctx)
{
    const char *const *m = ctx; /* merged, survivor, merged_at (decimal) */
    int64_t at = strtoll(m[2], NULL, 10);
    struct cd_val p[3] = {CD_VCSTR(m[0]), CD_VCSTR(m[1]), CD_VINT(at)};
    enum cd_err err;

    /* As core merges: the merged id and those merged into it point to the survivor. */
    if ((err = cd_tx_exec(tx, "UPDATE customers SET merged_into = $2, merged_at = $3, "
                              "updated_at = $3 WHERE id = $1",
                          p, 3, NULL, NULL, NULL)) != CD_OK ||
        (err = cd_tx_exec(tx, "UPDATE customers SET merged_into = $2 WHERE merged_into = $1", p,
                          2, NULL, NULL, NULL)) != CD_OK)
        return err;
    return cd_tx_exec(tx, "INSERT INTO merges(merged_id, survivor_id, merged_at, actor) "
                          "VALUES($1,$2,$3,'unit')",
                      p, 3, NULL, NULL, NULL);
}

static void merge(const char *merged, const char *survivor, int64_t at, bool tell)
{
    char when[24];
    snprintf(when, sizeof when, "%lld", (long long)at);
    const char *m[3] = {merged, survivor, when};
    assert_int_equal(cd_store_write(store, merge_fn, (void *)m), CD_OK);
    if (tell) {
        cd_consent_customer_changed(cons, merged);
        cd_consent_customer_changed(cons, survivor);
    }
}

/* "occurred_at" of an event at ms. */
static const char *at_json(int64_t ms, char buf[64])
{
    char t[CD_TIME_STRLEN];
    cd_time_format(ms, t);
    snprintf(buf, 64, "\"occurred_at\":\"%s\"", t);
    return buf;
}

/* After a merge both ids decide as the survivor, from both histories: a withdrawal on either
 * side before the merge wins over consent given before it on the other, a choice made after
 * the merge decides as usual; with merges over merges, the time two customers were joined is
 * that of the merge that brought their branches together. Audiences of everyone list a merged
 * id no more. Merges applied in any order give the projection a rebuild gives. */
static void merged_ids_decide_for_the_group(void **state)
{
    char s[CD_ID_MAX], m[CD_ID_MAX], a[CD_ID_MAX], b[CD_ID_MAX], x[CD_ID_MAX], j[64];
    int64_t now = cd_now_ms(), t = now - 100000;

    customer(s, "EU", "");
    customer(m, "EU", "");
    assert_int_equal(record(m, "marketing", "*", "withdrawn", at_json(t + 1000, j), NULL), CD_OK);
    assert_int_equal(record(s, "marketing", "*", "given", at_json(t + 2000, j), NULL), CD_OK);
    assert_int_equal(record(m, "analytics", "*", "given", at_json(t + 2000, j), NULL), CD_OK);
    merge(m, s, t + 3000, true);
    const char *ids[2] = {s, m};
    for (int i = 0; i < 2; i++) {
        assert_string_equal(why(ids[i], CD_PURPOSE_MARKETING, CD_CONSENT_CHANNEL_EMAIL, now),
                            "withdrawn");
        assert_string_equal(why(ids[i], CD_PURPOSE_ANALYTICS, CD_CONSENT_CHANNEL_ANY, now),
                            "consent_given");
    }
    /* A choice after the merge, recorded under either id, decides for both. */
    assert_int_equal(record(m, "marketing", "*", "given", NULL, NULL), CD_OK);
    assert_string_equal(why(s, CD_PURPOSE_MARKETING, CD_CONSENT_CHANNEL_EMAIL, cd_now_ms()),
                        "consent_given");
    /* a withdrew, then a was merged into b; x gave consent; then b was merged into x. */
    customer(a, "EU", "");
    customer(b, "EU", "");
    customer(x, "EU", "");
    assert_int_equal(record(a, "personalization", "*", "withdrawn", at_json(t + 1000, j), NULL),
                     CD_OK);
    assert_int_equal(record(x, "personalization", "*", "given", at_json(t + 3000, j), NULL),
                     CD_OK);
    merge(a, b, t + 2000, false);
    merge(b, x, t + 4000, false);
    /* The engine hears of the later merge first. */
    cd_consent_customer_changed(cons, b);
    cd_consent_customer_changed(cons, a);
    assert_string_equal(why(x, CD_PURPOSE_PERSONALIZATION, CD_CONSENT_CHANNEL_ANY, now),
                        "withdrawn");
    assert_string_equal(why(a, CD_PURPOSE_PERSONALIZATION, CD_CONSENT_CHANNEL_ANY, now),
                        "withdrawn");
    assert_int_equal(record(b, "personalization", "*", "given", at_json(t + 5000, j), NULL),
                     CD_OK);
    assert_string_equal(why(x, CD_PURPOSE_PERSONALIZATION, CD_CONSENT_CHANNEL_ANY, now),
                        "consent_given");
    /* Everyone, once: the merged ids are not listed. */
    struct ids_walk w = {{s, m, a, b, x}, {0}};
    assert_int_equal(cd_consent_filter(cons, NULL, 0, CD_PURPOSE_ANALYTICS,
                                       CD_CONSENT_CHANNEL_ANY, now, count_ids, &w),
                     CD_OK);
    assert_int_equal(w.seen[0] + w.seen[4], 2);
    assert_int_equal(w.seen[1] + w.seen[2] + w.seen[3], 0);
    enum cd_err err = cd_consent_projection_check(cons);
    if (err != CD_OK)
        fail_msg("projection differs: %s", cd_err_detail());
}

static void projection_rebuilt_equals_live(void **state)
{
    struct cd_consent *again = NULL;
    struct cd_consent_stats a, b;

    enum cd_err err = cd_consent_projection_check(cons);
    if (err != CD_OK)
        fail_msg("projection differs: %s", cd_err_detail());
    cd_consent_stats(cons, &a);
    assert_true(a.states > 10);
    /* A second engine over the same tables sees the same projection. */
    assert_int_equal(cd_consent_open(store, dir, "rules/consent/jurisdictions.yaml", &again),
                     CD_OK);
    cd_consent_stats(again, &b);
    assert_int_equal(a.states, b.states);
    assert_int_equal(cd_consent_projection_check(again), CD_OK);
    cd_consent_close(again);
}

static void rules_errors_name_file_and_line(void **state)
{
    struct cd_consent *x = NULL;
    char path[200];
    snprintf(path, sizeof path, "%s/bad.yaml", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("version: 1\nnot_required: {service: contract}\njurisdictions:\n"
          "  - name: X\n    default: true\n    opt_in: [marketing]\n",
          f);
    fclose(f);
    assert_int_equal(cd_consent_open(store, dir, path, &x), CD_ERR_INVALID);
    assert_non_null(strstr(cd_err_detail(), "bad.yaml:4:"));
    assert_non_null(strstr(cd_err_detail(), "must list purpose"));

    /* Unknown, repeated and missing keys, and values of the wrong kind, each at their line. */
    static const struct {
        const char *yaml, *where, *what;
    } cases[] = {
        {"version: 1\nnot_required: {service: contract}\nextra: 1\njurisdictions: []\n",
         "bad.yaml:3:", "unknown key 'extra' in the rules file"},
        {"version: 1\njurisdictions:\n  - name: X\n    default: true\n    opt_in: [marketing, "
         "billing, service, legal_obligation, fraud_prevention, security, personalization,\n"
         "      analytics, targeted_advertising, sale_or_sharing, research]\n    caps:\n"
         "      - {purpose: marketing, max: 2, dayz: 7}\n",
         "bad.yaml:8:", "unknown key 'dayz' in a cap"},
        {"version: 1\njurisdictions:\n  - name: X\n    name: Y\n", "bad.yaml:4:",
         "key 'name' is given twice"},
        {"version: 1\njurisdictions:\n  - match: [X]\n", "bad.yaml:3:",
         "lacks the required key 'name'"},
        {"version: 1\njurisdictions:\n  - name: X\n    default: yes please\n", "bad.yaml:4:",
         "default must be true or false"},
        {"version: 2\njurisdictions: []\n", "bad.yaml:1:", "version must be"},
        {"version: 1\nnot_required:\n  service: contract\n  service: contract\n"
         "jurisdictions: []\n",
         "bad.yaml:4:", "key 'service' is given twice"},
        {"version: 1\nnot_required: {shopping: contract}\njurisdictions: []\n", "bad.yaml:2:",
         "unknown key 'shopping'"},
        {"version: 1\njurisdictions: []\n", "bad.yaml:2:", "must be 'default: true'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        f = fopen(path, "w");
        assert_non_null(f);
        fputs(cases[i].yaml, f);
        fclose(f);
        assert_int_equal(cd_consent_open(store, dir, path, &x), CD_ERR_INVALID);
        if (strstr(cd_err_detail(), cases[i].where) == NULL ||
            strstr(cd_err_detail(), cases[i].what) == NULL)
            fail_msg("case %zu: %s", i, cd_err_detail());
    }
}

/* A decision's event id, formatted from the 128 bits it holds (cd_id_digits, whose two paths
 * tests/unit/test_base.c compares), is the id the ledger recorded. */
static void decision_event_ids_are_the_recorded_ids(void **state)
{
    char c[CD_ID_MAX];
    customer(c, "EU", "");
    for (int k = 0; k < 50; k++) {
        json_t *o = NULL;
        struct cd_consent_decision d;
        assert_int_equal(record(c, "analytics", "*", "given", NULL, &o), CD_OK);
        const char *ev = json_string_value(json_object_get(o, "id"));
        assert_non_null(ev);
        assert_int_equal(cd_consent_decide(cons, cd_str_c(c), CD_PURPOSE_ANALYTICS,
                                           CD_CONSENT_CHANNEL_EMAIL, cd_now_ms(), &d),
                         CD_OK);
        char got[CD_ID_MAX];
        assert_true(d.has_event);
        assert_string_equal(cd_consent_decision_event_id(&d, got), ev);
        json_decref(o);
    }
}

/* The event id is formatted on demand from the decision's own copy of its 128 bits: a
 * decision keeps naming the event it rested on after a newer event replaced it in the
 * projection; a decision on rules alone names none; decide_many names the same events. */
static void decision_event_id_on_demand(void **state)
{
    char c[CD_ID_MAX], got[CD_ID_MAX];
    json_t *o1 = NULL, *o2 = NULL;
    struct cd_consent_decision d1, d2, many[2];

    customer(c, "EU", "");
    assert_int_equal(cd_consent_decide_exact(cons, cd_str_c(c), CD_PURPOSE_MARKETING,
                                             CD_CONSENT_CHANNEL_EMAIL, CD_STR_NULL, cd_now_ms(),
                                             &d1),
                     CD_OK);
    assert_string_equal(d1.reason, "no_consent");
    assert_false(d1.has_event);
    assert_string_equal(cd_consent_decision_event_id(&d1, got), "");
    assert_int_equal(cd_consent_decide(cons, cd_str_c(c), CD_PURPOSE_SERVICE,
                                       CD_CONSENT_CHANNEL_EMAIL, cd_now_ms(), &d1),
                     CD_OK);
    assert_string_equal(d1.reason, "not_required");
    assert_false(d1.has_event);

    assert_int_equal(record(c, "marketing", "*", "given", NULL, &o1), CD_OK);
    assert_int_equal(cd_consent_decide(cons, cd_str_c(c), CD_PURPOSE_MARKETING,
                                       CD_CONSENT_CHANNEL_EMAIL, cd_now_ms(), &d1),
                     CD_OK);
    assert_int_equal(record(c, "marketing", "*", "withdrawn", NULL, &o2), CD_OK);
    assert_int_equal(cd_consent_decide(cons, cd_str_c(c), CD_PURPOSE_MARKETING,
                                       CD_CONSENT_CHANNEL_EMAIL, cd_now_ms(), &d2),
                     CD_OK);
    const char *ev1 = json_string_value(json_object_get(o1, "id"));
    const char *ev2 = json_string_value(json_object_get(o2, "id"));
    assert_true(d1.allow && d1.has_event);
    assert_string_equal(cd_consent_decision_event_id(&d1, got), ev1);
    assert_false(d2.allow);
    assert_string_equal(d2.reason, "withdrawn");
    assert_string_equal(cd_consent_decision_event_id(&d2, got), ev2);

    struct cd_str ids[2] = {cd_str_c(c), CD_STR("cus_00000000000000000000000000")};
    assert_int_equal(cd_consent_decide_many(cons, ids, 2, CD_PURPOSE_MARKETING,
                                            CD_CONSENT_CHANNEL_EMAIL, cd_now_ms(), many),
                     CD_OK);
    assert_string_equal(cd_consent_decision_event_id(&many[0], got), ev2);
    assert_string_equal(many[1].reason, "unknown_customer");
    assert_false(many[1].has_event);
    json_decref(o1);
    json_decref(o2);
}

/* Decisions a slot cannot make alone go to the record, and agree with it: a channel's own
 * state beside the "*" state, an older event that must not replace a newer one, purposes
 * past the five held inline (overflow), in an opt-in and an opt-out regime; the single
 * decision and the batched one (also the bulk filter's) answer alike. */
static void slot_and_record_agree(void **state)
{
    const int64_t t = 1700000000000LL;
    static const enum cd_purpose extra[] = {CD_PURPOSE_PERSONALIZATION, CD_PURPOSE_ANALYTICS,
                                            CD_PURPOSE_TARGETED_ADVERTISING,
                                            CD_PURPOSE_SALE_OR_SHARING, CD_PURPOSE_RESEARCH};
    struct cd_consent *c;
    char eu[CD_ID_MAX], ca[CD_ID_MAX];

    assert_int_equal(cd_consent_open(store, dir, "rules/consent/jurisdictions.yaml", &c), CD_OK);
    cd_id_new("cus", eu);
    cd_id_new("cus", ca);
    for (int k = 0; k < 2; k++) {
        const char *id = k ? ca : eu;
        struct cd_str jur = k ? CD_STR("US-CA") : CD_STR("EU");
        assert_int_equal(cd_consent_debug_apply(c, cd_str_c(id), jur, CD_PURPOSE_MARKETING,
                                                CD_CONSENT_CHANNEL_ANY, CD_CONSENT_GIVEN, t),
                         CD_OK);
        assert_int_equal(cd_consent_debug_apply(c, cd_str_c(id), jur, CD_PURPOSE_MARKETING,
                                                CD_CONSENT_CHANNEL_EMAIL, CD_CONSENT_WITHDRAWN,
                                                t + 1),
                         CD_OK);
        /* Older than the "*" state: ignored. */
        assert_int_equal(cd_consent_debug_apply(c, cd_str_c(id), jur, CD_PURPOSE_MARKETING,
                                                CD_CONSENT_CHANNEL_ANY, CD_CONSENT_REFUSED,
                                                t - 10),
                         CD_OK);
        /* Seven states in all: the last two in overflow. */
        for (size_t i = 0; i < sizeof extra / sizeof *extra; i++)
            assert_int_equal(cd_consent_debug_apply(c, cd_str_c(id), jur, extra[i],
                                                    CD_CONSENT_CHANNEL_ANY,
                                                    i == 4 ? CD_CONSENT_WITHDRAWN
                                                           : CD_CONSENT_GIVEN,
                                                    t),
                             CD_OK);
    }
    struct {
        const char *id;
        enum cd_purpose p;
        enum cd_consent_channel ch;
        const char *reason;
    } want[] = {
        {eu, CD_PURPOSE_MARKETING, CD_CONSENT_CHANNEL_EMAIL, "withdrawn"},
        {eu, CD_PURPOSE_MARKETING, CD_CONSENT_CHANNEL_SMS, "consent_given"},
        {eu, CD_PURPOSE_MARKETING, CD_CONSENT_CHANNEL_ANY, "consent_given"},
        {eu, CD_PURPOSE_SALE_OR_SHARING, CD_CONSENT_CHANNEL_SMS, "consent_given"},
        {eu, CD_PURPOSE_RESEARCH, CD_CONSENT_CHANNEL_ANY, "withdrawn"},
        {eu, CD_PURPOSE_SERVICE, CD_CONSENT_CHANNEL_EMAIL, "not_required"},
        {ca, CD_PURPOSE_MARKETING, CD_CONSENT_CHANNEL_EMAIL, "opted_out"},
        {ca, CD_PURPOSE_MARKETING, CD_CONSENT_CHANNEL_PUSH, "consent_given"},
        {ca, CD_PURPOSE_RESEARCH, CD_CONSENT_CHANNEL_ANY, "withdrawn"}, /* opt-in there */
        {ca, CD_PURPOSE_SALE_OR_SHARING, CD_CONSENT_CHANNEL_ANY, "consent_given"},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        struct cd_consent_decision d, m;
        struct cd_str id = cd_str_c(want[i].id);
        char e1[CD_ID_MAX], e2[CD_ID_MAX];
        assert_int_equal(cd_consent_decide(c, id, want[i].p, want[i].ch, t + 5, &d), CD_OK);
        assert_string_equal(d.reason, want[i].reason);
        assert_int_equal(d.has_event, want[i].p != CD_PURPOSE_SERVICE);
        assert_int_equal(cd_consent_decide_many(c, &id, 1, want[i].p, want[i].ch, t + 5, &m),
                         CD_OK);
        assert_string_equal(m.reason, d.reason);
        assert_string_equal(m.basis, d.basis);
        assert_string_equal(m.regime, d.regime);
        assert_int_equal(m.has_event, d.has_event);
        assert_string_equal(cd_consent_decision_event_id(&m, e1),
                            cd_consent_decision_event_id(&d, e2));
    }
    cd_consent_close(c);
}

/* A private table: grows from 256 slots through the 2 MiB page size (32768 slots), linear
 * probing wraps around the end, every key stays findable after every growth, and each record
 * keeps its arrival index. */
static void table_growth_and_collisions(void **state)
{
    struct cd__proj p;
    enum { N = 120000 };
    uint8_t(*bits)[16] = cd_malloc(N * sizeof *bits);
    size_t tables = 0;
    struct cd__table *last = NULL;

    assert_non_null(bits);
    memset(&p, 0, sizeof p);
    p.shared = true; /* retire replaced tables, as the live projection does */
    for (size_t i = 0; i < N; i++) {
        struct cd__cust *cu;
        cd_random_bytes(bits[i], 16);
        bits[i][0] &= 0x3f;
        assert_int_equal(cd__proj_upsert(&p, bits[i], &cu), CD_OK);
        cu->juris = (uint8_t)(i % 7);
        struct cd__table *t = atomic_load(&p.table);
        if (t != last) {
            /* Just grown: every key so far is in the new table, at most 4/5 full. */
            tables++;
            last = t;
            for (size_t k = 0; k <= i; k++) {
                const struct cd__cust *f = cd__proj_find(&p, bits[k]);
                assert_non_null(f);
                assert_int_equal(f->juris, k % 7);
            }
        }
        assert_true((i + 1) * 5 <= t->n * 4);
    }
    assert_true(tables >= 10);
    assert_int_equal(p.ncust, N);
    for (size_t i = 0; i < N; i++) {
        char k[CD_ID_DIGITS_ROOM];
        cd_id_digits(bits[i], k);
        assert_ptr_equal(cd__proj_find_key(&p, k), cd__proj_find(&p, bits[i]));
        assert_memory_equal(cd__proj_find(&p, bits[i])->key, k, CD__KEY_LEN);
        assert_int_equal(cd__proj_find(&p, bits[i])->idx, i);
        /* Upserting again finds the same record. */
        struct cd__cust *cu;
        assert_int_equal(cd__proj_upsert(&p, bits[i], &cu), CD_OK);
        assert_ptr_equal(cu, cd__proj_find(&p, bits[i]));
    }
    assert_int_equal(p.ncust, N);
    /* Absent keys probe to an empty slot and are not found. */
    for (int k = 0; k < 1000; k++) {
        uint8_t x[16];
        cd_random_bytes(x, 16);
        x[0] = 0x40; /* the ids above all have x[0] < 0x40 */
        assert_null(cd__proj_find(&p, x));
    }
    /* Retired tables of 2 MiB and more gave their pages back. */
    bool dropped = false;
    for (struct cd__table *t = atomic_load(&p.table)->retired; t; t = t->retired)
        dropped |= t->dropped;
    assert_true(dropped);
    cd__proj_free(&p);
    cd_free(bits);
}

/* Lock-free readers while a writer adds customers (the table grows several times) and
 * rewrites the reader's own customer's other purposes: a decision is never torn and the
 * customer is never unknown. */
struct reader {
    struct cd_consent *c;
    char id[CD_ID_MAX];
    atomic_bool stop;
    long decisions, wrong;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    struct cd_consent_decision d;
    char ev[CD_ID_MAX];
    while (!atomic_load(&r->stop)) {
        if (cd_consent_decide(r->c, cd_str_c(r->id), CD_PURPOSE_MARKETING,
                              CD_CONSENT_CHANNEL_EMAIL, cd_now_ms(), &d) != CD_OK ||
            !d.allow || strcmp(d.reason, "consent_given") != 0 ||
            !d.has_event || strlen(cd_consent_decision_event_id(&d, ev)) != 30)
            r->wrong++;
        r->decisions++;
    }
    return NULL;
}

static void decisions_during_growth(void **state)
{
    struct reader r = {.stop = false};
    pthread_t th;
    struct cd_consent_stats st;
    char id[CD_ID_MAX];

    /* An engine of its own: the customers added here are not in the tables. */
    assert_int_equal(cd_consent_open(store, dir, "rules/consent/jurisdictions.yaml", &r.c),
                     CD_OK);
    cd_consent_stats(r.c, &st);
    size_t before = st.customers; /* those of the tables, from the tests above */
    cd_id_new("cus", r.id);
    assert_int_equal(cd_consent_debug_apply(r.c, cd_str_c(r.id), CD_STR("EU"),
                                            CD_PURPOSE_MARKETING, CD_CONSENT_CHANNEL_ANY,
                                            CD_CONSENT_GIVEN, cd_now_ms() - 1000),
                     CD_OK);
    assert_int_equal(pthread_create(&th, NULL, reader_main, &r), 0);
    for (int i = 0; i < 20000; i++) {
        cd_id_new("cus", id);
        assert_int_equal(cd_consent_debug_apply(r.c, cd_str_c(id), CD_STR("US-CA"),
                                                CD_PURPOSE_ANALYTICS, CD_CONSENT_CHANNEL_ANY,
                                                CD_CONSENT_WITHDRAWN, cd_now_ms()),
                         CD_OK);
        if (i % 100 == 0)
            assert_int_equal(cd_consent_debug_apply(r.c, cd_str_c(r.id), CD_STR("EU"),
                                                    (i / 100) % 2 ? CD_PURPOSE_ANALYTICS
                                                                  : CD_PURPOSE_RESEARCH,
                                                    CD_CONSENT_CHANNEL_SMS, CD_CONSENT_GIVEN,
                                                    cd_now_ms()),
                             CD_OK);
    }
    atomic_store(&r.stop, true);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(r.wrong, 0);
    assert_true(r.decisions > 0);
    cd_consent_stats(r.c, &st);
    assert_int_equal(st.customers, before + 20001);
    /* The last customer added is decided from the grown table. */
    struct cd_consent_decision d;
    assert_int_equal(cd_consent_decide(r.c, cd_str_c(id), CD_PURPOSE_ANALYTICS,
                                       CD_CONSENT_CHANNEL_ANY, cd_now_ms(), &d),
                     CD_OK);
    assert_string_equal(d.reason, "opted_out");
    /* Not an id, or not canonical (lower case): unknown, as before. */
    assert_int_equal(cd_consent_decide(r.c, CD_STR("cus_x"), CD_PURPOSE_ANALYTICS,
                                       CD_CONSENT_CHANNEL_ANY, cd_now_ms(), &d),
                     CD_OK);
    assert_string_equal(d.reason, "unknown_customer");
    for (char *q = id + 4; *q; q++)
        *q = (char)tolower((unsigned char)*q);
    assert_int_equal(cd_consent_decide(r.c, cd_str_c(id), CD_PURPOSE_ANALYTICS,
                                       CD_CONSENT_CHANNEL_ANY, cd_now_ms(), &d),
                     CD_OK);
    assert_string_equal(d.reason, "unknown_customer");
    cd_consent_close(r.c);
}

/* The walk over every customer while a writer grows the table: everyone present when the walk
 * began is emitted exactly once, and nobody twice. */
struct walk {
    struct cd_consent *c;
    char (*ids)[CD_ID_MAX];
    size_t n, cap;
    atomic_bool go;
    struct cd__table *t0; /* the table when the walk began */
};

static enum cd_err walk_emit(void *ctx, struct cd_str id, const struct cd_consent_decision *d)
{
    struct walk *w = ctx;
    assert_true(w->n < w->cap && id.len == 30);
    memcpy(w->ids[w->n], id.p, id.len);
    w->ids[w->n][id.len] = '\0';
    if (++w->n == 500) {
        /* Let the writer grow the table under the walk, and wait until it did. */
        atomic_store(&w->go, true);
        for (int i = 0; i < 10000 && atomic_load(&w->c->proj.table) == w->t0; i++)
            usleep(1000);
        assert_true(atomic_load(&w->c->proj.table) != w->t0);
    }
    return CD_OK;
}

static void *walk_writer(void *arg)
{
    struct walk *w = arg;
    char id[CD_ID_MAX];
    while (!atomic_load(&w->go))
        usleep(100);
    for (int i = 0; i < 30000; i++) {
        cd_id_new("cus", id);
        assert_int_equal(cd_consent_debug_apply(w->c, cd_str_c(id), CD_STR("EU"),
                                                CD_PURPOSE_ANALYTICS, CD_CONSENT_CHANNEL_ANY,
                                                CD_CONSENT_GIVEN, cd_now_ms()),
                         CD_OK);
    }
    return NULL;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

static enum cd_err count_merged_fn(struct cd_tx *tx, void *ctx)
{
    return cd_tx_int(tx, "SELECT count(*) FROM merges", NULL, 0, ctx);
}

static void filter_walk_during_growth(void **state)
{
    struct walk w = {.go = false};
    struct cd_consent_stats st;
    pthread_t th;
    enum { FIRST = 6000 };
    char(*first)[CD_ID_MAX] = cd_malloc(FIRST * sizeof *first);

    assert_non_null(first);
    assert_int_equal(cd_consent_open(store, dir, "rules/consent/jurisdictions.yaml", &w.c),
                     CD_OK);
    for (int i = 0; i < FIRST; i++) {
        cd_id_new("cus", first[i]);
        assert_int_equal(cd_consent_debug_apply(w.c, cd_str_c(first[i]), CD_STR("EU"),
                                                CD_PURPOSE_ANALYTICS, CD_CONSENT_CHANNEL_ANY,
                                                CD_CONSENT_GIVEN, cd_now_ms()),
                         CD_OK);
    }
    cd_consent_stats(w.c, &st);
    w.t0 = atomic_load(&w.c->proj.table);
    w.cap = st.customers + 30000;
    assert_non_null(w.ids = cd_malloc(w.cap * sizeof *w.ids));
    assert_int_equal(pthread_create(&th, NULL, walk_writer, &w), 0);
    assert_int_equal(cd_consent_filter(w.c, NULL, 0, CD_PURPOSE_ANALYTICS,
                                       CD_CONSENT_CHANNEL_ANY, cd_now_ms(), walk_emit, &w),
                     CD_OK);
    atomic_store(&w.go, true);
    assert_int_equal(pthread_join(th, NULL), 0);
    /* Those added meanwhile are not seen; nor are merged ids (earlier tests merged some). */
    int64_t merged = 0;
    assert_int_equal(cd_store_read(store, count_merged_fn, &merged), CD_OK);
    assert_int_equal(w.n, st.customers - (size_t)merged);
    qsort(w.ids, w.n, sizeof *w.ids, cmp_id);
    for (size_t i = 1; i < w.n; i++)
        assert_true(strcmp(w.ids[i - 1], w.ids[i]) < 0);
    for (int i = 0; i < FIRST; i++)
        assert_non_null(bsearch(first[i], w.ids, w.n, sizeof *w.ids, cmp_id));
    cd_consent_close(w.c);
    cd_free(w.ids);
    cd_free(first);
}

/* ---- events bound to the ledger ---- */

static enum cd_err sql_fn(struct cd_tx *tx, void *ctx)
{
    return cd_tx_exec(tx, ctx, NULL, 0, NULL, NULL, NULL);
}

static void sql(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sql(const char *fmt, ...)
{
    char q[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q, sizeof q, fmt, ap);
    va_end(ap);
    assert_int_equal(cd_store_write(store, sql_fn, q), CD_OK);
}

/* What a fresh engine (a restart: the projection rebuilt from the tables) decides. */
static const char *why_after_restart(const char *cid, enum cd_purpose p)
{
    static char reason[32];
    struct cd_consent *again = NULL;
    struct cd_consent_decision d;

    assert_int_equal(cd_consent_open(store, dir, "rules/consent/jurisdictions.yaml", &again),
                     CD_OK);
    assert_int_equal(cd_consent_decide(again, cd_str_c(cid), p, CD_CONSENT_CHANNEL_EMAIL,
                                       cd_now_ms(), &d),
                     CD_OK);
    snprintf(reason, sizeof reason, "%s", d.reason);
    cd_consent_close(again);
    return reason;
}

static void expect_verify_fails(const char *event_id, const char *detail)
{
    struct cd_consent_report rep;

    assert_int_equal(cd_consent_verify(store, cons->signer.pk, &rep), CD_ERR_INTEGRITY);
    assert_string_equal(rep.event_id, event_id);
    if (strstr(cd_err_detail(), detail) == NULL)
        fail_msg("'%s' does not say '%s'", cd_err_detail(), detail);
}

/* Each event's ledger entry carries the digest of its columns: an edited purpose or state_code
 * (which flips a decision) is named by the offline check, with the column its signed receipt
 * disagrees on, and after a restart the edited event does not count: the customer is denied
 * every purpose that needs consent, in an opt-in and an opt-out regime alike, and the failure
 * is counted. Put back, the row verifies and counts again. */
static void events_are_bound_to_the_ledger(void **state)
{
    char eu[CD_ID_MAX], ca[CD_ID_MAX], id[CD_ID_MAX], id2[CD_ID_MAX];
    struct cd_consent_report rep;
    json_t *ev = NULL;
    (void)state;

    customer(eu, "EU", "");
    customer(ca, "US-CA", "");
    assert_int_equal(record(eu, "marketing", "*", "given", NULL, &ev), CD_OK);
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(ev, "id")));
    json_decref(ev);
    assert_int_equal(record(ca, "sale_or_sharing", "*", "given", NULL, &ev), CD_OK);
    snprintf(id2, sizeof id2, "%s", json_string_value(json_object_get(ev, "id")));
    json_decref(ev);
    assert_int_equal(cd_consent_verify(store, cons->signer.pk, &rep), CD_OK);
    assert_true(rep.events >= 2);
    assert_int_equal(rep.receipt_only, 0);
    assert_string_equal(why_after_restart(eu, CD_PURPOSE_MARKETING), "consent_given");

    uint64_t before = cd_integrity_total(CD_INTEGRITY_CONSENT_EVENT);
    sql("UPDATE consent_events SET purpose = 'analytics' WHERE id = '%s'", id);
    expect_verify_fails(id, "its purpose column differs from its signed receipt");
    assert_string_equal(why_after_restart(eu, CD_PURPOSE_MARKETING), "invalidated");
    assert_string_equal(why_after_restart(eu, CD_PURPOSE_ANALYTICS), "invalidated");
    assert_string_equal(why_after_restart(eu, CD_PURPOSE_SERVICE), "not_required");
    assert_true(cd_integrity_total(CD_INTEGRITY_CONSENT_EVENT) > before);
    sql("UPDATE consent_events SET purpose = 'marketing' WHERE id = '%s'", id);
    assert_int_equal(cd_consent_verify(store, cons->signer.pk, &rep), CD_OK);
    assert_string_equal(why_after_restart(eu, CD_PURPOSE_MARKETING), "consent_given");

    /* A given consent turned into a withdrawal; in an opt-out regime, a withdrawal turned into
     * nothing at all would allow: the edited event denies instead. */
    sql("UPDATE consent_events SET state_code = 4 WHERE id = '%s'", id);
    expect_verify_fails(id, "its state_code column differs from its signed receipt");
    sql("UPDATE consent_events SET state_code = 2 WHERE id = '%s'", id);
    sql("UPDATE consent_events SET state = 'requested', state_code = 1 WHERE id = '%s'", id2);
    expect_verify_fails(id2, "its state column differs");
    assert_string_equal(why_after_restart(ca, CD_PURPOSE_SALE_OR_SHARING), "invalidated");
    sql("UPDATE consent_events SET state = 'given', state_code = 2 WHERE id = '%s'", id2);

    /* A column the receipt does not carry; a receipt swapped with its signature. */
    sql("UPDATE consent_events SET flags = flags | 2 WHERE id = '%s'", id);
    expect_verify_fails(id, "a column its receipt does not carry was altered");
    sql("UPDATE consent_events SET flags = flags & ~2 WHERE id = '%s'", id);
    sql("CREATE TEMP TABLE kept AS SELECT * FROM consent_events WHERE id = '%s'", id);
    char q[400];
    snprintf(q, sizeof q, "UPDATE consent_events SET receipt = (SELECT receipt FROM"
                          " consent_events WHERE id = '%s'), signature = (SELECT signature FROM"
                          " consent_events WHERE id = '%s') WHERE id = '%s'", id2, id2, id);
    sql("%s", q);
    expect_verify_fails(id, "do not match the digest in its ledger entry; its id column");
    sql("UPDATE consent_events SET receipt = (SELECT receipt FROM kept), signature = (SELECT"
        " signature FROM kept) WHERE id = '%s'", id);

    /* The event moved to another customer: after a restart both are denied. */
    snprintf(q, sizeof q, "UPDATE consent_events SET customer_id = '%s' WHERE id = '%s'", ca, id);
    sql("%s", q);
    expect_verify_fails(id, "its customer_id column differs");
    assert_string_equal(why_after_restart(ca, CD_PURPOSE_MARKETING), "invalidated");
    assert_string_equal(why_after_restart(eu, CD_PURPOSE_MARKETING), "invalidated");
    snprintf(q, sizeof q, "UPDATE consent_events SET customer_id = '%s' WHERE id = '%s'", eu, id);
    sql("%s", q);
    assert_int_equal(cd_consent_verify(store, cons->signer.pk, &rep), CD_OK);
    assert_string_equal(why_after_restart(eu, CD_PURPOSE_MARKETING), "consent_given");
    /* Out of memory anywhere in the check is an error, never a crash or a false finding. */
    for (long k = 1; k < 400; k++) {
        cd_alloc_fail_nth(k);
        enum cd_err err = cd_consent_verify(store, cons->signer.pk, &rep);
        bool hit = cd_alloc_fault_hit();
        cd_alloc_fail_nth(0);
        if (!hit) {
            assert_int_equal(err, CD_OK);
            break;
        }
        if (err != CD_ERR_NOMEM && err != CD_ERR_STORE)
            fail_msg("allocation %ld failed: %s: %s", k, cd_err_name(err), cd_err_detail());
    }
}

/* An event recorded before binding existed (audit_seq NULL) is bound by the next engine when
 * its signed receipt agrees with its columns (a consent.bind ledger entry carries its digest),
 * and left unbound, not counted and reported when it does not. */
static void legacy_events_are_bound_at_start(void **state)
{
    char c[CD_ID_MAX], id[CD_ID_MAX];
    struct cd_consent_report rep;
    json_t *ev = NULL;
    (void)state;

    customer(c, "EU", "");
    assert_int_equal(record(c, "personalization", "*", "given", NULL, &ev), CD_OK);
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(ev, "id")));
    json_decref(ev);
    sql("UPDATE consent_events SET audit_seq = NULL WHERE id = '%s'", id);
    assert_int_equal(cd_consent_verify(store, cons->signer.pk, &rep), CD_OK);
    assert_true(rep.receipt_only >= 1);
    sql("UPDATE consent_events SET channel = 'sms' WHERE id = '%s'", id);
    expect_verify_fails(id, "recorded before ledger binding and not bound since; its channel "
                            "column differs");
    assert_string_equal(why_after_restart(c, CD_PURPOSE_PERSONALIZATION), "invalidated");
    sql("UPDATE consent_events SET channel = '*' WHERE id = '%s'", id);
    assert_string_equal(why_after_restart(c, CD_PURPOSE_PERSONALIZATION), "consent_given");
    assert_int_equal(cd_consent_verify(store, cons->signer.pk, &rep), CD_OK);
    assert_int_equal(rep.receipt_only, 0); /* the restart bound it */
}

/* Every receipt carries the newest signed tree head of the audit ledger; the head verifies
 * against the ledger as a trusted head taken out of the database. */
static void receipts_carry_the_newest_tree_head(void **state)
{
    char c[CD_ID_MAX], key[300];
    struct cd_audit *a = NULL;
    struct cd_audit_sth h;
    struct cd_audit_trusted t = {0};
    struct cd_audit_report rep;
    json_t *ev = NULL, *rc = NULL;
    uint8_t pk[32];
    (void)state;

    snprintf(key, sizeof key, "%s/signing.key", dir);
    assert_int_equal(cd_audit_open(store, key, &a), CD_OK);
    assert_int_equal(cd_audit_public_key(a, pk), CD_OK);
    assert_int_equal(cd_audit_publish(a, &h, NULL), CD_OK);
    customer(c, "EU", "");
    assert_int_equal(record(c, "marketing", "email", "given", NULL, &ev), CD_OK);
    const char *id = json_string_value(json_object_get(ev, "id"));
    assert_int_equal(cd_consent_receipt(cons, cd_str_c(id), &rc), CD_OK);
    json_t *head = json_object_get(json_object_get(rc, "receipt"), "auditTreeHead");
    assert_non_null(head);
    assert_int_equal(json_integer_value(json_object_get(head, "tree_size")), h.tree_size);
    char *text = json_dumps(rc, JSON_COMPACT);
    assert_int_equal(cd_audit_trusted_parse(&t, text, strlen(text), "receipt.json"), CD_OK);
    assert_int_equal(t.n, 1);
    assert_int_equal(cd_audit_verify_all(store, pk, &t, &rep, NULL), CD_OK);
    assert_int_equal(rep.trusted, 1);
    cd_free(text);
    cd_audit_trusted_free(&t);
    json_decref(ev);
    json_decref(rc);
    cd_audit_close(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(state_machine),
        cmocka_unit_test(expiry_with_injected_clock),
        cmocka_unit_test(stale_notice),
        cmocka_unit_test(gpc_and_explicit_opt_in),
        cmocka_unit_test(casl_implied_consent),
        cmocka_unit_test(local_time_and_dst),
        cmocka_unit_test(quiet_hours_across_dst),
        cmocka_unit_test(caps_refuse_in_path_and_audit),
        cmocka_unit_test(topic_refused_in_path),
        cmocka_unit_test(receipts_verify),
        cmocka_unit_test(unsubscribe_tokens),
        cmocka_unit_test(new_and_late_customers_are_found),
        cmocka_unit_test(restriction_covers_consent_and_contact),
        cmocka_unit_test(merged_ids_decide_for_the_group),
        cmocka_unit_test(projection_rebuilt_equals_live),
        cmocka_unit_test(rules_errors_name_file_and_line),
        cmocka_unit_test(decision_event_ids_are_the_recorded_ids),
        cmocka_unit_test(decision_event_id_on_demand),
        cmocka_unit_test(slot_and_record_agree),
        cmocka_unit_test(table_growth_and_collisions),
        cmocka_unit_test(decisions_during_growth),
        cmocka_unit_test(filter_walk_during_growth),
        cmocka_unit_test(events_are_bound_to_the_ledger),
        cmocka_unit_test(legacy_events_are_bound_at_start),
        cmocka_unit_test(receipts_carry_the_newest_tree_head),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
