/* Unit tests for the communication guard: validators, normalisation and span mapping, template
 * placeholders, precedence between personal-data rules, bad input, rule-file errors, reload
 * under concurrent checks, allocation-failure torture and inbound masking. Each test writes its
 * own small rule pack to a temporary directory; some tests also load the shipped packs in
 * rules/. */
#include "unit.h"
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>
#include "guard/guard.h"

static const char *const base_rules =
    "pack: test\n"
    "defaults:\n"
    "  scope: [outbound]\n"
    "rules:\n"
    "  - id: T.CARD\n"
    "    kind: pii\n"
    "    category: pii\n"
    "    severity: block\n"
    "    message: card\n"
    "    references: [\"PCI DSS 3.4\"]\n"
    "    patterns: ['\\b\\d(?:[ -]?\\d){11,18}\\b']\n"
    "    validator: card\n"
    "    redact: card\n"
    "  - id: T.SSN\n"
    "    kind: pii\n"
    "    category: pii\n"
    "    severity: block\n"
    "    patterns: ['\\b\\d{3}-\\d{2}-\\d{4}\\b']\n"
    "    validator: ssn\n"
    "  - id: T.EMAIL\n"
    "    kind: pii\n"
    "    category: pii\n"
    "    severity: warn\n"
    "    patterns: ['\\b[a-z0-9][a-z0-9._%+-]*@[a-z0-9-]+(?:\\.[a-z0-9-]+)*\\.[a-z]{2,24}\\b']\n"
    "    validator: email\n"
    "  - id: T.HURRY\n"
    "    kind: existence\n"
    "    category: pressure\n"
    "    severity: warn\n"
    "    message: urgency\n"
    "    suggestion: state the date\n"
    "    phrases: [act now, hurry]\n"
    "    unless: {patterns: ['\\bno\\b'], before: 10}\n"
    "  - id: T.SWAP\n"
    "    kind: substitution\n"
    "    category: jargon\n"
    "    severity: info\n"
    "    swap: {utilize: use}\n"
    "  - id: T.SMS_ONLY\n"
    "    kind: existence\n"
    "    category: pressure\n"
    "    severity: info\n"
    "    channel_severity: {sms: block}\n"
    "    phrases: [stop now]\n"
    "  - id: T.GRADE\n"
    "    kind: readability\n"
    "    category: jargon\n"
    "    severity: info\n"
    "    max_grade: 8\n"
    "    min_words: 10\n";

/* Precedence, extend_left, sentence windows and placeholders, in their own pack so the counts
 * and verdicts the older tests expect from base_rules stay as they are. */
static const char *const prec_rules =
    "defaults:\n"
    "  category: pii\n"
    "rules:\n"
    "  - id: P.CARD\n"
    "    kind: pii\n"
    "    severity: block\n"
    "    patterns: ['\\b\\d(?:[ -]?\\d){11,18}\\b']\n"
    "    validator: card\n"
    "  - id: P.IBAN\n"
    "    kind: pii\n"
    "    severity: block\n"
    "    patterns: ['\\b[a-z]{2}\\d{2}(?:[ -]?[a-z0-9]){11,30}\\b']\n"
    "    validator: iban\n"
    "  - id: P.SSN\n"
    "    kind: pii\n"
    "    severity: block\n"
    "    patterns: ['\\b\\d{3}-\\d{2}-\\d{4}\\b']\n"
    "    validator: ssn\n"
    "  - id: P.GROUPS\n"
    "    kind: pii\n"
    "    severity: warn\n"
    "    patterns: ['\\b\\d{4} \\d{4} \\d{4}\\b', '\\b\\d{3}-\\d{2}-\\d{4}\\b']\n"
    "  - id: P.ACCOUNT\n"
    "    kind: pii\n"
    "    severity: block\n"
    "    patterns: ['\\b\\d{4} \\d{4} \\d{4} \\d{4}\\b']\n"
    "    context: {patterns: ['\\bbank account'], before: 30, after: 0}\n"
    "  - id: P.MAIL\n"
    "    kind: pii\n"
    "    severity: warn\n"
    "    patterns: ['@[a-z0-9]+\\.[a-z]{2,6}\\b']\n"
    "    extend_left: 'a-z0-9._\\x80-\\xff-'\n"
    "    validator: email\n"
    "  - id: P.REF\n"
    "    kind: existence\n"
    "    category: pressure\n"
    "    severity: warn\n"
    "    patterns: ['\\bact now\\b']\n"
    "    unless: {patterns: ['\\bno\\b'], before: 40, sentence: true}\n"
    "  - id: P.SLOT\n"
    "    kind: existence\n"
    "    category: pressure\n"
    "    severity: warn\n"
    "    patterns: ['\\bonly \\x1a left\\b', '\\bdear \\x1a']\n"
    "  - id: P.WORDS\n"
    "    kind: existence\n"
    "    category: respect\n"
    "    severity: warn\n"
    "    patterns: ['\\b(?:first name|order number|stock|var|fname)\\b']\n"
    "  - id: P.CAPS\n"
    "    kind: occurrence\n"
    "    measure: uppercase\n"
    "    category: respect\n"
    "    severity: info\n"
    "    max: 0.5\n"
    "    min_letters: 8\n";

static char tmpdir[64];

static void write_file(const char *dir, const char *name, const char *body)
{
    char path[256];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(body, f);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    cd_json_init();
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cd_guard_test.XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    write_file(tmpdir, "base.yaml", base_rules);
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static struct cd_guard *open_test(void)
{
    struct cd_guard *g = NULL;
    assert_int_equal(cd_guard_open(tmpdir, &g), CD_OK);
    return g;
}

static struct cd_guard_result *check(struct cd_guard *g, const char *text, const char *channel)
{
    struct cd_guard_result *r = NULL;
    struct cd_guard_input in = {cd_str_c(text), channel, true, NULL};
    assert_int_equal(cd_guard_check(g, &in, &r), CD_OK);
    return r;
}

static const struct cd_guard_finding *find_rule(const struct cd_guard_result *r, const char *id)
{
    for (size_t i = 0; i < cd_guard_result_count(r); i++)
        if (strcmp(cd_guard_result_finding(r, i)->rule, id) == 0)
            return cd_guard_result_finding(r, i);
    return NULL;
}

static void test_validators(void **state)
{
    (void)state;
    assert_true(cd_guard_luhn_ok(CD_STR("79927398713")));
    assert_false(cd_guard_luhn_ok(CD_STR("79927398710")));
    assert_true(cd_guard_card_ok(CD_STR("4242 4242 4242 4242")));
    assert_true(cd_guard_card_ok(CD_STR("5555-5555-5555-4444")));
    assert_true(cd_guard_card_ok(CD_STR("378282246310005")));
    assert_false(cd_guard_card_ok(CD_STR("4242 4242 4242 4241"))); /* Luhn fails */
    assert_false(cd_guard_card_ok(CD_STR("1234567812345670")));    /* no issuer 1 */
    assert_false(cd_guard_card_ok(CD_STR("0000000000000000")));
    /* A passing check digit in a grouping no card is printed in (a meter number). */
    assert_false(cd_guard_card_ok(CD_STR("41 3569 0172 846")));
    assert_true(cd_guard_card_ok(CD_STR("4135 6901 7284 6")));
    assert_true(cd_guard_iban_ok(CD_STR("DE89 3704 0044 0532 0130 00")));
    assert_true(cd_guard_iban_ok(CD_STR("gb82west12345698765432")));
    assert_false(cd_guard_iban_ok(CD_STR("DE89 3704 0044 0532 0130 01")));
    assert_false(cd_guard_iban_ok(CD_STR("DE89 3704 0044 0532 0130"))); /* wrong length */
    assert_false(cd_guard_iban_ok(CD_STR("QQ12 3456 7890 1234")));
    assert_true(cd_guard_ssn_ok(CD_STR("123-45-6780")));
    assert_false(cd_guard_ssn_ok(CD_STR("000-45-6789")));
    assert_false(cd_guard_ssn_ok(CD_STR("666-45-6789")));
    assert_false(cd_guard_ssn_ok(CD_STR("912-45-6789")));
    assert_false(cd_guard_ssn_ok(CD_STR("123-00-6789")));
    assert_false(cd_guard_ssn_ok(CD_STR("123-45-0000")));
    assert_false(cd_guard_ssn_ok(CD_STR("078-05-1120")));
    assert_false(cd_guard_ssn_ok(CD_STR("123-45-678")));
    assert_true(cd_guard_ssn_ok(CD_STR("536.22.1234")));
    assert_true(cd_guard_ssn_ok(CD_STR("536221234")));
    assert_false(cd_guard_ssn_ok(CD_STR("900.22.1234")));
}

static void test_verdicts_and_json(void **state)
{
    struct cd_guard *g = open_test();
    struct cd_guard_result *r;
    json_t *j = NULL, *f0;
    (void)state;

    r = check(g, "Thanks, your order is on its way.", "email");
    assert_int_equal(cd_guard_result_verdict(r), CD_GUARD_ALLOW);
    assert_int_equal(cd_guard_result_count(r), 0);
    cd_guard_result_free(r);

    r = check(g, "Hurry! Act now.", "email");
    assert_int_equal(cd_guard_result_verdict(r), CD_GUARD_WARN);
    assert_int_equal(cd_guard_result_count(r), 2);
    cd_guard_result_free(r);

    r = check(g, "There is no hurry.", "email"); /* negation window */
    assert_int_equal(cd_guard_result_verdict(r), CD_GUARD_ALLOW);
    cd_guard_result_free(r);

    r = check(g, "Please stop now.", "email"); /* channel policy: info by email ... */
    assert_int_equal(cd_guard_result_verdict(r), CD_GUARD_ALLOW);
    assert_non_null(find_rule(r, "T.SMS_ONLY"));
    cd_guard_result_free(r);
    r = check(g, "Please stop now.", "sms"); /* ... block by SMS */
    assert_int_equal(cd_guard_result_verdict(r), CD_GUARD_BLOCK);
    cd_guard_result_free(r);

    r = check(g, "We utilize it. Card 4242 4242 4242 4242, mail bob.smith@gmail.com", NULL);
    assert_int_equal(cd_guard_result_verdict(r), CD_GUARD_BLOCK);
    assert_string_equal(find_rule(r, "T.SWAP")->suggestion, "use");
    struct cd_str red = cd_guard_result_redacted(r);
    assert_string_equal(red.p, "We utilize it. Card \xE2\x80\xA2\xE2\x80\xA2\xE2\x80\xA2"
                               "\xE2\x80\xA2 4242, mail [email]");
    assert_int_equal(cd_guard_result_to_json(r, true, &j), CD_OK);
    assert_string_equal(json_string_value(json_object_get(j, "verdict")), "block");
    /* The author sees the wording that drew a finding, but personal data only masked. */
    f0 = json_array_get(json_object_get(j, "findings"), 0);
    assert_string_equal(json_string_value(json_object_get(f0, "match")), "utilize");
    f0 = json_array_get(json_object_get(j, "findings"), 1);
    assert_string_equal(json_string_value(json_object_get(f0, "rule")), "T.CARD");
    assert_string_equal(json_string_value(json_object_get(f0, "match")),
                        "\xE2\x80\xA2\xE2\x80\xA2\xE2\x80\xA2\xE2\x80\xA2 4242");
    assert_int_equal(json_integer_value(json_object_get(f0, "start")), 20);
    assert_string_equal(json_string_value(json_array_get(json_object_get(f0, "references"), 0)),
                        "PCI DSS 3.4");
    f0 = json_array_get(json_object_get(j, "findings"), 2);
    assert_string_equal(json_string_value(json_object_get(f0, "match")), "[email]");
    char *dump = NULL;
    size_t dlen = 0;
    assert_int_equal(cd_json_dump(j, &dump, &dlen), CD_OK);
    assert_null(strstr(dump, "bob.smith"));
    assert_null(strstr(dump, "4242 4242"));
    cd_free(dump);
    json_decref(j);
    assert_int_equal(cd_guard_result_to_json(r, false, &j), CD_OK);
    f0 = json_array_get(json_object_get(j, "findings"), 1);
    assert_null(json_object_get(f0, "match"));
    assert_null(strstr(json_string_value(json_object_get(j, "redacted")), "4242 4242"));
    json_decref(j);
    cd_guard_result_free(r);

    /* A Luhn-failing order number is not a card. */
    r = check(g, "Your order 4242 4242 4242 4241 shipped.", NULL);
    assert_int_equal(cd_guard_result_verdict(r), CD_GUARD_ALLOW);
    cd_guard_result_free(r);
    cd_guard_close(g);
}

static void test_offsets_unicode(void **state)
{
    struct cd_guard *g = open_test();
    struct cd_guard_result *r;
    const struct cd_guard_finding *f;
    /* "Héllo 😀 " = H(1) é(2) llo(3) space(1) emoji(4) space(1) = 12 bytes, 9 UTF-16 units. */
    const char *text = "H\xC3\xA9llo \xF0\x9F\x98\x80 card 4242\xE2\x80\x8B 4242 4242 4242 ok";
    (void)state;

    r = check(g, text, NULL);
    f = find_rule(r, "T.CARD");
    assert_non_null(f);
    assert_int_equal(f->start, 17);
    /* 4 + ZWSP(3) + 15 = 22 bytes of card text. */
    assert_int_equal(f->end, 17 + 22);
    assert_int_equal(f->start_utf16, 14);
    assert_int_equal(f->end_utf16, 14 + 20);
    cd_guard_result_free(r);

    /* Confusables: Cyrillic о in "nоw", fullwidth letters, zero-width joiner inside "hurry". */
    r = check(g, "Act n\xD0\xBEw please", NULL);
    assert_non_null(find_rule(r, "T.HURRY"));
    f = find_rule(r, "T.HURRY");
    assert_int_equal(f->start, 0);
    assert_int_equal(f->end, 8);
    cd_guard_result_free(r);
    r = check(g, "\xEF\xBC\xA8urr\xE2\x80\x8Dy up", NULL); /* Ｈurr<ZWJ>y */
    f = find_rule(r, "T.HURRY");
    assert_non_null(f);
    assert_int_equal(f->start, 0);
    assert_int_equal(f->end, 10);
    assert_int_equal(f->end_utf16, 6);
    cd_guard_result_free(r);
    /* Curly apostrophes and accents do not hide a phrase. */
    r = check(g, "H\xC3\x9APRY up, \xC3\xA1" "ct now", NULL);
    assert_non_null(find_rule(r, "T.HURRY"));
    cd_guard_result_free(r);
    cd_guard_close(g);
}

static void test_bad_input(void **state)
{
    struct cd_guard *g = open_test();
    struct cd_guard_result *r = NULL;
    struct cd_guard_input in = {CD_STR("bad \xC3\x28 utf8"), NULL, true, NULL};
    char *big;
    size_t n = 1024 * 1024;
    (void)state;

    assert_int_equal(cd_guard_check(g, &in, &r), CD_ERR_INVALID);
    assert_null(r);
    in.text = CD_STR("overlong \xC0\xAF");
    assert_int_equal(cd_guard_check(g, &in, &r), CD_ERR_INVALID);
    in.text = CD_STR_NULL; /* empty */
    assert_int_equal(cd_guard_check(g, &in, &r), CD_OK);
    assert_int_equal(cd_guard_result_count(r), 0);
    assert_int_equal(cd_guard_result_verdict(r), CD_GUARD_ALLOW);
    assert_int_equal(cd_guard_result_redacted(r).len, 0);
    cd_guard_result_free(r);

    /* 1 MiB of support text with a card near the end. */
    big = cd_malloc(CD_GUARD_MAX_TEXT + 2);
    assert_non_null(big);
    for (size_t i = 0; i < n; i++)
        big[i] = "Thanks for waiting, we utilize care. "[i % 37];
    memcpy(big + n - 40, " 4242 4242 4242 4242 ", 21);
    in.text = (struct cd_str){big, n};
    assert_int_equal(cd_guard_check(g, &in, &r), CD_OK);
    assert_int_equal(cd_guard_result_verdict(r), CD_GUARD_BLOCK);
    assert_true(cd_guard_result_count(r) > 1000);
    cd_guard_result_free(r);
    /* Above the limit. */
    memset(big, 'a', CD_GUARD_MAX_TEXT + 1);
    in.text = (struct cd_str){big, CD_GUARD_MAX_TEXT + 1};
    assert_int_equal(cd_guard_check(g, &in, &r), CD_ERR_TOO_BIG);
    cd_free(big);
    cd_guard_close(g);
}

static void expect_bad(const char *body, const char *want1, const char *want2)
{
    struct cd_guard *g = NULL;
    char dir[64];
    char cmd[128];

    snprintf(dir, sizeof dir, "/tmp/cd_guard_bad.XXXXXX");
    assert_non_null(mkdtemp(dir));
    write_file(dir, "pack.yaml", body);
    assert_int_not_equal(cd_guard_open(dir, &g), CD_OK);
    assert_null(g);
    if (strstr(cd_err_detail(), want1) == NULL || strstr(cd_err_detail(), want2) == NULL)
        fail_msg("detail '%s' lacks '%s' or '%s'", cd_err_detail(), want1, want2);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_bad_rules(void **state)
{
    struct cd_guard *g = open_test();
    struct cd_guard_result *r;
    char bad[128];
    (void)state;

    expect_bad("rules:\n  - id: X.ONE\n    kind: existence\n    category: c\n    severity: warn\n"
               "    phrases: [a]\n    colour: red\n",
               "pack.yaml:7", "rule X.ONE");
    expect_bad("rules:\n  - id: X.TWO\n    kind: existence\n    category: c\n    severity: loud\n"
               "    phrases: [a]\n",
               "pack.yaml:5", "X.TWO");
    expect_bad("rules:\n  - id: X.THREE\n    kind: pii\n    category: c\n    severity: warn\n"
               "    patterns: ['(unclosed']\n",
               "pack.yaml:6", "rule X.THREE: pattern rejected");
    expect_bad("rules:\n  - id: X.EMPTY\n    kind: existence\n    category: c\n    severity: warn\n"
               "    patterns: ['a*']\n",
               "pack.yaml:6", "X.EMPTY");
    expect_bad("rules:\n  - id: lower.case\n    kind: existence\n", "pack.yaml:2", "needs an id");
    expect_bad("rules: [\n  {id: X.Y\n", "pack.yaml:", "YAML");
    expect_bad("rules:\n  - id: X.DUP\n    kind: existence\n    category: c\n    severity: info\n"
               "    phrases: [a]\n  - id: X.DUP\n    kind: existence\n    category: c\n"
               "    severity: info\n    phrases: [b]\n",
               "pack.yaml:7", "duplicate id");
    expect_bad("rules:\n  - id: X.VAL\n    kind: pii\n    category: c\n    severity: info\n"
               "    patterns: ['\\d+']\n    validator: magic\n",
               "pack.yaml:7", "unknown validator");

    /* A bad reload keeps the old set in force. */
    snprintf(bad, sizeof bad, "%s/zz_bad.yaml", tmpdir);
    write_file(tmpdir, "zz_bad.yaml",
               "rules:\n  - id: BAD.RULE\n    kind: existence\n    category: c\n"
               "    severity: warn\n    patterns: ['(a|b']\n");
    assert_int_equal(cd_guard_reload(g, tmpdir), CD_ERR_INVALID);
    assert_non_null(strstr(cd_err_detail(), "zz_bad.yaml:6"));
    assert_non_null(strstr(cd_err_detail(), "BAD.RULE"));
    r = check(g, "hurry", NULL);
    assert_non_null(find_rule(r, "T.HURRY"));
    cd_guard_result_free(r);
    unlink(bad);
    assert_int_equal(cd_guard_reload(g, "/nonexistent/rules"), CD_ERR_IO);
    assert_int_equal(cd_guard_rule_count(g), 7);
    cd_guard_close(g);
}

static void test_pathological_patterns(void **state)
{
    const char *names[] = {"p.yaml"};
    const char *data[] = {"rules:\n  - id: P.NEST\n    kind: existence\n    category: c\n"
                          "    severity: warn\n    patterns: ['(a+)+b', '(x|xx)+y', '(?:a|a)*c']\n"};
    size_t lens[] = {strlen(data[0])};
    struct cd_guard *g = NULL;
    struct cd_guard_result *r;
    char *text = cd_malloc(200001);
    uint64_t t0;
    (void)state;

    /* Patterns that backtrack exponentially elsewhere are linear in Hyperscan. */
    assert_int_equal(cd_guard_open_buffers(names, data, lens, 1, &g), CD_OK);
    memset(text, 'a', 200000);
    text[200000] = '\0';
    t0 = cd_mono_ns();
    r = check(g, text, NULL);
    assert_true(cd_mono_ns() - t0 < 5000000000ull);
    assert_int_equal(cd_guard_result_count(r), 0);
    cd_guard_result_free(r);
    cd_free(text);
    cd_guard_close(g);

    /* Huge counted repeats are refused per rule, not crashed on. */
    const char *big[] = {"rules:\n  - id: P.HUGE\n    kind: existence\n    category: c\n"
                         "    severity: warn\n    patterns: ['(?:[a-z]{1,200}\\s){1,200}z{1,900}']\n"};
    size_t blen[] = {strlen(big[0])};
    g = NULL;
    enum cd_err err = cd_guard_open_buffers(names, big, blen, 1, &g);
    if (err == CD_OK) {
        cd_guard_close(g);
    } else {
        assert_int_equal(err, CD_ERR_INVALID);
        assert_non_null(strstr(cd_err_detail(), "P.HUGE"));
    }
}

struct worker {
    struct cd_guard *g;
    atomic_bool *stop;
    atomic_long checks; /* read by the reloading thread while the checker runs */
    long errors;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct cd_guard_input in = {CD_STR("Hurry, act now! Card 4242 4242 4242 4242."), "chat",
                                true, NULL};

    while (!atomic_load(w->stop)) {
        struct cd_guard_result *r = NULL;
        if (cd_guard_check(w->g, &in, &r) != CD_OK || cd_guard_result_verdict(r) != CD_GUARD_BLOCK)
            w->errors++;
        cd_guard_result_free(r);
        w->checks++;
    }
    return NULL;
}

static void test_reload_under_load(void **state)
{
    struct cd_guard *g = open_test();
    pthread_t th[4];
    struct worker w[4];
    atomic_bool stop = false;
    (void)state;

    for (int i = 0; i < 4; i++) {
        w[i].g = g;
        w[i].stop = &stop;
        atomic_init(&w[i].checks, 0);
        w[i].errors = 0;
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    /* Reloads are quick once the compiled set is cached: keep reloading until every checker
     * has run a few checks across the swaps. */
    for (int k = 0; k < 6 || w[0].checks < 20 || w[1].checks < 20 || w[2].checks < 20 ||
                    w[3].checks < 20;
         k++)
        assert_int_equal(cd_guard_reload(g, tmpdir), CD_OK);
    atomic_store(&stop, true);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(w[i].errors, 0);
        assert_true(w[i].checks > 0);
    }
    cd_guard_close(g);
}

static void test_alloc_torture(void **state)
{
    struct cd_guard *g = open_test();
    const char *text = "H\xC3\xA9llo {{first_name}}, hurry and utilize card 4242 4242 4242 4242 "
                       "or mail jo.smith@gmail.com, ssn 123-45-6780, order 4242 4242 4242 4241. "
                       "Act now!";
    struct cd_guard_input in = {cd_str_c(text), "email", true, NULL};
    long n;
    (void)state;

    for (n = 1; n < 10000; n++) {
        struct cd_guard_result *r = NULL;
        json_t *j = NULL;
        enum cd_err err;
        cd_alloc_fail_nth(n);
        err = cd_guard_check(g, &in, &r);
        if (err == CD_OK)
            err = cd_guard_result_to_json(r, true, &j);
        bool hit = cd_alloc_fault_hit();
        cd_alloc_fail_nth(0);
        json_decref(j);
        cd_guard_result_free(r);
        if (!hit) {
            assert_int_equal(err, CD_OK);
            break;
        }
        assert_true(err == CD_OK || err == CD_ERR_NOMEM);
    }
    assert_true(n > 5);
    for (n = 1; n < 10000; n++) {
        char *out = NULL;
        size_t len, masked;
        cd_alloc_fail_nth(n);
        enum cd_err err = cd_guard_mask_inbound(g, cd_str_c(text), &out, &len, &masked);
        bool hit = cd_alloc_fault_hit();
        cd_alloc_fail_nth(0);
        cd_free(out);
        if (!hit) {
            assert_int_equal(err, CD_OK);
            break;
        }
        assert_true(err == CD_OK || err == CD_ERR_NOMEM);
    }
    /* Loading a rule set under allocation failure. */
    for (n = 1; n < 100000; n++) {
        struct cd_guard *g2 = NULL;
        cd_alloc_fail_nth(n);
        enum cd_err err = cd_guard_open(tmpdir, &g2);
        bool hit = cd_alloc_fault_hit();
        cd_alloc_fail_nth(0);
        cd_guard_close(g2);
        if (!hit) {
            assert_int_equal(err, CD_OK);
            break;
        }
        assert_true(err == CD_OK || err == CD_ERR_NOMEM);
    }
    cd_guard_close(g);
}

static void test_mask_inbound(void **state)
{
    struct cd_guard *g = open_test();
    char *out = NULL;
    size_t len = 0, masked = 0;
    (void)state;

    assert_int_equal(cd_guard_mask_inbound(g, CD_STR("my card is 4111-1111-1111-1111 and ssn "
                                                     "123-45-6780, order 4111 1111 1111 1112"),
                                           &out, &len, &masked),
                     CD_OK);
    assert_int_equal(masked, 2);
    assert_string_equal(out, "my card is \xE2\x80\xA2\xE2\x80\xA2\xE2\x80\xA2\xE2\x80\xA2 1111 "
                             "and ssn [ssn], order 4111 1111 1111 1112");
    assert_int_equal(len, strlen(out));
    cd_free(out);
    assert_int_equal(cd_guard_mask_inbound(g, CD_STR("nothing here"), &out, &len, &masked), CD_OK);
    assert_int_equal(masked, 0);
    assert_string_equal(out, "nothing here");
    cd_free(out);
    /* Few ASCII digits skip the scan; an SSN alone, or a card in fullwidth digits (only
     * normalisation makes it one), does not. */
    assert_int_equal(cd_guard_mask_inbound(g, CD_STR("order 1234-5678 ok"), &out, &len, &masked),
                     CD_OK);
    assert_int_equal(masked, 0);
    assert_string_equal(out, "order 1234-5678 ok");
    cd_free(out);
    assert_int_equal(cd_guard_mask_inbound(g, CD_STR("ssn 123-45-6780"), &out, &len, &masked),
                     CD_OK);
    assert_int_equal(masked, 1);
    assert_string_equal(out, "ssn [ssn]");
    cd_free(out);
    assert_int_equal(cd_guard_mask_inbound(g, CD_STR("card \xEF\xBC\x94\xEF\xBC\x91\xEF\xBC\x91"
                                                     "\xEF\xBC\x91 1111 1111 1111"),
                                           &out, &len, &masked),
                     CD_OK);
    assert_int_equal(masked, 1);
    cd_free(out);
    out = NULL;
    assert_int_equal(cd_guard_mask_inbound(g, CD_STR("\xFF"), &out, &len, &masked),
                     CD_ERR_INVALID);
    assert_null(out);
    cd_guard_close(g);
}

static void test_shipped_packs(void **state)
{
    struct cd_guard *g = NULL;
    struct cd_guard_result *r;
    (void)state;

    if (access("rules", F_OK) != 0)
        skip();
    assert_int_equal(cd_guard_open("rules", &g), CD_OK);
    assert_true(cd_guard_rule_count(g) > 40);
    r = check(g, "Hi Sam, your refund of $45.00 was sent today. Thanks, Dana", "email");
    assert_int_equal(cd_guard_result_verdict(r), CD_GUARD_ALLOW);
    cd_guard_result_free(r);
    r = check(g, "Only 2 left, order now! This is 100% guaranteed to work.", "email");
    assert_int_equal(cd_guard_result_verdict(r), CD_GUARD_WARN);
    cd_guard_result_free(r);
    r = check(g, "The card on file is 5555 5555 5555 4444.", "chat");
    assert_int_equal(cd_guard_result_verdict(r), CD_GUARD_BLOCK);
    assert_non_null(find_rule(r, "PII.CARD"));
    cd_guard_result_free(r);
    cd_guard_close(g);
}

static struct cd_guard *open_pack(const char *body)
{
    const char *names[] = {"pack.yaml"};
    const char *data[] = {body};
    size_t lens[] = {strlen(body)};
    struct cd_guard *g = NULL;

    assert_int_equal(cd_guard_open_buffers(names, data, lens, 1, &g), CD_OK);
    return g;
}

/* A number that fails its own check is some other number: no shape-only rule reports it. */
static void test_precedence(void **state)
{
    struct cd_guard *g = open_pack(prec_rules);
    struct cd_guard_result *r;
    (void)state;

    /* A valid card: the card, not also the weaker group rule (the PII overlap rule). */
    r = check(g, "Card 4242 4242 4242 4242 on file.", NULL);
    assert_non_null(find_rule(r, "P.CARD"));
    assert_null(find_rule(r, "P.GROUPS"));
    cd_guard_result_free(r);
    /* Luhn fails: an order number in card groups. Before the veto, P.GROUPS reported its
     * first twelve digits. */
    r = check(g, "Order 4242 4242 4242 4241 shipped.", NULL);
    assert_int_equal(cd_guard_result_count(r), 0);
    assert_int_equal(cd_guard_result_verdict(r), CD_GUARD_ALLOW);
    cd_guard_result_free(r);
    /* A rule with its own context words is evidence of its own and keeps its finding. */
    r = check(g, "Your bank account 4242 4242 4242 4241 is in credit.", NULL);
    assert_non_null(find_rule(r, "P.ACCOUNT"));
    assert_null(find_rule(r, "P.GROUPS"));
    cd_guard_result_free(r);
    /* An IBAN with wrong check digits, and an SSN the SSA never issues. */
    r = check(g, "IBAN DE89 3704 0044 0532 0130 01, please check.", NULL);
    assert_int_equal(cd_guard_result_count(r), 0);
    cd_guard_result_free(r);
    r = check(g, "Reference 000-12-3456.", NULL);
    assert_int_equal(cd_guard_result_count(r), 0);
    cd_guard_result_free(r);
    r = check(g, "SSN 536-22-1234.", NULL);
    assert_non_null(find_rule(r, "P.SSN"));
    assert_null(find_rule(r, "P.GROUPS"));
    cd_guard_result_free(r);
    cd_guard_close(g);
}

/* extend_left widens a candidate that starts at an anchor; sentence windows stop at a full
 * stop. */
static void test_windows_and_extend(void **state)
{
    struct cd_guard *g = open_pack(prec_rules);
    struct cd_guard_result *r;
    const struct cd_guard_finding *f;
    const char *text = "Write to j\xC3\xBCrgen.m@beispiel.de today.";
    (void)state;

    r = check(g, text, NULL);
    f = find_rule(r, "P.MAIL");
    assert_non_null(f);
    assert_int_equal(f->start, 9);
    assert_int_equal(f->end, 9 + 21);
    cd_guard_result_free(r);
    r = check(g, "support@beispiel.de", NULL); /* a role mailbox, once the local part is known */
    assert_null(find_rule(r, "P.MAIL"));
    cd_guard_result_free(r);
    r = check(g, "There is no rush, act now or later.", NULL); /* same sentence: suppressed */
    assert_null(find_rule(r, "P.REF"));
    cd_guard_result_free(r);
    r = check(g, "There was no reply. Act now!", NULL); /* the negation is in another sentence */
    assert_non_null(find_rule(r, "P.REF"));
    cd_guard_result_free(r);
    cd_guard_close(g);
    expect_bad("rules:\n  - id: X.EXT\n    kind: pii\n    category: c\n    severity: warn\n"
               "    patterns: ['@x']\n    extend_left: 'a-\\xZZ'\n",
               "pack.yaml:7", "extend_left");
    expect_bad("rules:\n  - id: X.SEN\n    kind: existence\n    category: c\n    severity: warn\n"
               "    patterns: ['x']\n    unless: {patterns: ['y'], sentence: maybe}\n",
               "pack.yaml:7", "true or false");
}

/* Template placeholders are opaque: never findings, not capitals, not words for the grade, and
 * a finding that covers one spans the whole placeholder. */
static void test_placeholders(void **state)
{
    struct cd_guard *g = open_pack(prec_rules);
    struct cd_guard_result *r, *r2;
    const struct cd_guard_finding *f;
    (void)state;

    r = check(g, "Hi {{first_name}}, order {{Order Number}} for [FIRST NAME] ([ORDER NUMBER]) "
                 "is ready. %s %1$s %(name)s ${var} *|FNAME|* <<First Name>> {0} {stock} "
                 "%%FNAME%% {% if vip %}x{% endif %} \xC2\xAB" "First Name\xC2\xBB mail "
                 "{{email}} [[first name]]",
              NULL);
    if (cd_guard_result_count(r) != 0)
        fail_msg("placeholder found by %s", cd_guard_result_finding(r, 0)->rule);
    cd_guard_result_free(r);
    /* Capitals inside placeholders do not shout. */
    r = check(g, "[FIRST NAME] [LAST NAME] [ORDER ID], thanks", NULL);
    assert_null(find_rule(r, "P.CAPS"));
    cd_guard_result_free(r);
    /* Not placeholders: words in brackets, percentages, the redaction tags. */
    r = check(g, "[Only order number today] 50% stock [email]", NULL);
    assert_non_null(find_rule(r, "P.WORDS"));
    cd_guard_result_free(r);
    /* Digits never hide in a placeholder. */
    r = check(g, "card {{4242 4242 4242 4242}}", NULL);
    assert_non_null(find_rule(r, "P.CARD"));
    cd_guard_result_free(r);
    /* The grade of a template is the grade of its words. */
    r = check(g, "Hi {{customer_first_name_and_extraordinarily_long_surname}}, your parcel "
                 "has shipped and arrives tomorrow.",
              NULL);
    r2 = check(g, "Hi , your parcel has shipped and arrives tomorrow.", NULL);
    assert_true(cd_guard_result_grade(r) == cd_guard_result_grade(r2));
    cd_guard_result_free(r);
    cd_guard_result_free(r2);
    /* Spans: a match that ends on a placeholder covers all of it, in bytes and UTF-16. */
    r = check(g, "\xC3\x89t\xC3\xA9: only {{stock}} left! Dear [FIRST NAME]", NULL);
    f = find_rule(r, "P.SLOT");
    assert_non_null(f);
    assert_int_equal(f->start, 7);
    assert_int_equal(f->end, 7 + 19);
    assert_int_equal(f->start_utf16, 5);
    assert_int_equal(f->end_utf16, 5 + 19);
    f = cd_guard_result_finding(r, cd_guard_result_count(r) - 1);
    assert_string_equal(f->rule, "P.SLOT");
    assert_int_equal(f->end, strlen("\xC3\x89t\xC3\xA9: only {{stock}} left! Dear [FIRST NAME]"));
    cd_guard_result_free(r);
    cd_guard_close(g);
}

/* The shipped packs on the formats and practices they are meant to catch, and on text that
 * must pass. */
static enum cd_guard_severity sev_for(struct cd_guard *g, const char *text, const char *channel,
                                      bool outbound, const char *purpose, const char *rule)
{
    struct cd_guard_result *r = NULL;
    struct cd_guard_input in = {cd_str_c(text), channel, outbound, purpose};
    const struct cd_guard_finding *f;
    enum cd_guard_severity sev;

    assert_int_equal(cd_guard_check(g, &in, &r), CD_OK);
    f = find_rule(r, rule);
    if (f == NULL)
        fail_msg("no %s finding for '%s'", rule, text);
    sev = f->severity;
    cd_guard_result_free(r);
    return sev;
}

/* Severity by purpose, channel and direction: a rule's own entries, then the packs' entries in
 * file order, the last that holds winning; selectors by id, id prefix and category. */
static void test_purpose_policy(void **state)
{
    static const char a[] =
        "policy:\n"
        "  - rules: [S.*]\n"
        "    purpose: [marketing, targeted_advertising]\n"
        "    severity: block\n"
        "rules:\n"
        "  - id: S.URGE\n"
        "    kind: existence\n"
        "    category: pressure\n"
        "    severity: warn\n"
        "    scope: [outbound, inbound]\n"
        "    phrases: [act now]\n"
        "    policy:\n"
        "      - {channel: sms, severity: block}\n"
        "  - id: S.PRIZE\n"
        "    kind: existence\n"
        "    category: misleading\n"
        "    severity: warn\n"
        "    phrases: [you have won]\n"
        "  - id: T.PLAIN\n"
        "    kind: existence\n"
        "    category: respect\n"
        "    severity: warn\n"
        "    phrases: [calm down]\n";
    /* A local pack loaded later: service replies on chat never block for urgency, and rudeness
     * is blocked in marketing by category; inbound text is only informational. */
    static const char b[] =
        "policy:\n"
        "  - rules: [S.URGE]\n"
        "    channel: sms\n"
        "    purpose: service\n"
        "    severity: info\n"
        "  - categories: [respect]\n"
        "    purpose: marketing\n"
        "    direction: outbound\n"
        "    severity: block\n"
        "  - rules: [S.URGE]\n"
        "    direction: inbound\n"
        "    severity: info\n";
    const char *names[] = {"a.yaml", "b.yaml"};
    const char *data[] = {a, b};
    size_t lens[] = {strlen(a), strlen(b)};
    struct cd_guard *g = NULL;
    (void)state;

    assert_int_equal(cd_guard_open_buffers(names, data, lens, 1, &g), CD_OK);
    assert_int_equal(sev_for(g, "act now", "email", true, NULL, "S.URGE"), CD_GUARD_SEV_WARN);
    assert_int_equal(sev_for(g, "act now", "email", true, "service", "S.URGE"),
                     CD_GUARD_SEV_WARN);
    assert_int_equal(sev_for(g, "act now", "email", true, "marketing", "S.URGE"),
                     CD_GUARD_SEV_BLOCK);
    assert_int_equal(sev_for(g, "act now", NULL, true, "targeted_advertising", "S.URGE"),
                     CD_GUARD_SEV_BLOCK);
    assert_int_equal(sev_for(g, "act now", "sms", true, NULL, "S.URGE"), CD_GUARD_SEV_BLOCK);
    assert_int_equal(sev_for(g, "you have won", "email", true, "marketing", "S.PRIZE"),
                     CD_GUARD_SEV_BLOCK);
    assert_int_equal(sev_for(g, "calm down", "email", true, "marketing", "T.PLAIN"),
                     CD_GUARD_SEV_WARN);
    cd_guard_close(g);
    g = NULL;

    assert_int_equal(cd_guard_open_buffers(names, data, lens, 2, &g), CD_OK);
    /* The later pack's entries win over the rule's own and the earlier pack's. */
    assert_int_equal(sev_for(g, "act now", "sms", true, "service", "S.URGE"), CD_GUARD_INFO);
    assert_int_equal(sev_for(g, "act now", "sms", true, "marketing", "S.URGE"),
                     CD_GUARD_SEV_BLOCK);
    assert_int_equal(sev_for(g, "act now", "sms", false, "marketing", "S.URGE"),
                     CD_GUARD_INFO);
    assert_int_equal(sev_for(g, "calm down", "email", true, "marketing", "T.PLAIN"),
                     CD_GUARD_SEV_BLOCK);
    assert_int_equal(sev_for(g, "calm down", "email", true, "service", "T.PLAIN"),
                     CD_GUARD_SEV_WARN);
    {
        struct cd_guard_result *r = NULL;
        struct cd_guard_input in = {CD_STR("act now, you have won"), "email", true, "marketing"};
        assert_int_equal(cd_guard_check(g, &in, &r), CD_OK);
        assert_int_equal(cd_guard_result_verdict(r), CD_GUARD_BLOCK);
        cd_guard_result_free(r);
        in.purpose = "billing";
        assert_int_equal(cd_guard_check(g, &in, &r), CD_OK);
        assert_int_equal(cd_guard_result_verdict(r), CD_GUARD_WARN);
        cd_guard_result_free(r);
    }
    cd_guard_close(g);

    expect_bad("policy:\n  - rules: [NO.SUCH]\n    severity: block\n", "pack.yaml:2",
               "rule NO.SUCH, which no loaded rule has");
    expect_bad("rules:\n  - id: X.P\n    kind: existence\n    category: c\n    severity: warn\n"
               "    phrases: [a]\npolicy:\n  - categories: [nothing]\n    severity: block\n",
               "pack.yaml:8", "category nothing");
    expect_bad("policy:\n  - purpose: marketing\n    severity: block\n", "pack.yaml:2",
               "names the rules or categories");
    expect_bad("rules:\n  - id: X.P\n    kind: existence\n    category: c\n    severity: warn\n"
               "    phrases: [a]\n    policy:\n      - {purpose: marketing}\n",
               "pack.yaml:8", "needs a severity");
    expect_bad("rules:\n  - id: X.P\n    kind: existence\n    category: c\n    severity: warn\n"
               "    phrases: [a]\n    policy:\n      - {purpose: Marketing!, severity: block}\n",
               "pack.yaml:8", "lower-case names");
    expect_bad("rules:\n  - id: X.P\n    kind: existence\n    category: c\n    severity: warn\n"
               "    phrases: [a]\n    policy:\n      - {rules: [X.P], severity: block}\n",
               "pack.yaml:8", "unknown key in policy");
    expect_bad("rules:\n  - id: X.P\n    kind: existence\n    category: c\n    severity: warn\n"
               "    phrases: [a]\n    policy: {severity: block}\n",
               "pack.yaml:7", "policy must be a list");
    expect_bad("policy:\n  - {rules: [X.*], direction: sideways, severity: block}\n",
               "pack.yaml:2", "direction must be inbound or outbound");
}

/* The shipped defaults: the example goes out with warnings in a service reply and is
 * blocked when it is sent to sell. */
static void test_shipped_purpose_defaults(void **state)
{
    static const char *const blocked[] = {
        "Only 2 left, buy now or lose this deal forever!",
        "Offer ends in 14:59",
        "No thanks, I'd rather pay full price",
        "Congratulations! You have won a $500 gift card. Reply YES to claim.",
    };
    struct cd_guard *g = NULL;
    (void)state;

    if (access("rules", F_OK) != 0)
        skip();
    assert_int_equal(cd_guard_open("rules", &g), CD_OK);
    for (size_t i = 0; i < sizeof blocked / sizeof blocked[0]; i++) {
        struct cd_guard_result *r = NULL;
        struct cd_guard_input in = {cd_str_c(blocked[i]), "sms", true, "marketing"};
        assert_int_equal(cd_guard_check(g, &in, &r), CD_OK);
        if (cd_guard_result_verdict(r) != CD_GUARD_BLOCK)
            fail_msg("'%s' sent for marketing is not blocked", blocked[i]);
        cd_guard_result_free(r);
        in.purpose = "service";
        assert_int_equal(cd_guard_check(g, &in, &r), CD_OK);
        if (cd_guard_result_verdict(r) != CD_GUARD_WARN)
            fail_msg("'%s' in a service reply is not warned", blocked[i]);
        cd_guard_result_free(r);
        in.purpose = NULL;
        assert_int_equal(cd_guard_check(g, &in, &r), CD_OK);
        assert_int_equal(cd_guard_result_verdict(r), CD_GUARD_WARN);
        cd_guard_result_free(r);
    }
    /* Honest marketing passes whatever the purpose. */
    {
        struct cd_guard_result *r = NULL;
        struct cd_guard_input in = {
            CD_STR("Our sale runs until 30 November; prices are shown with all fees."), "email",
            true, "marketing"};
        assert_int_equal(cd_guard_check(g, &in, &r), CD_OK);
        assert_int_not_equal(cd_guard_result_verdict(r), CD_GUARD_BLOCK);
        cd_guard_result_free(r);
    }
    cd_guard_close(g);
}

static void test_shipped_kinds(void **state)
{
    static const struct {
        const char *text, *rule;
    } hit[] = {
        {"Her mobile is 090-1234-5678.", "PII.PHONE"},
        {"My cell is 09012345678.", "PII.PHONE_DIGITS"},
        {"You can reach Mr Tanaka on +81 90-1234-5678.", "PII.PHONE"},
        {"Emergency contact: Wei Zhang, 139 1234 5678", "PII.PHONE"},
        {"The customer's WhatsApp is +86 139 1234 5678", "PII.PHONE"},
        {"Owner: Eleni, tel 210 123 4567", "PII.PHONE"},
        {"Caller ID showed 2310 123456.", "PII.PHONE"},
        {"Please phone Yael on 02-123-4567.", "PII.PHONE"},
        {"Her number is 03-1234567.", "PII.PHONE"},
        {"Contact: +972 3 123 4567", "PII.PHONE"},
        {"Mobile: 06 12 34 56 78", "PII.PHONE"},
        {"Text me on 98765 43210.", "PII.PHONE"},
        {"Number: +49 (0)30 12345678", "PII.PHONE"},
        {"SSN 536221234 is on the form.", "PII.SSN_UNFORMATTED"},
        {"Soc. Sec. #: 536.22.1234", "PII.SSN_UNFORMATTED"},
        {"Her email is j\xC3\xBCrgen.m\xC3\xBCller@m\xC3\xBCller.de.", "PII.EMAIL"},
        {"Reply to ivan@\xD0\xBF\xD1\x80\xD0\xB8\xD0\xBC\xD0\xB5\xD1\x80.\xD1\x80\xD1\x84", "PII.EMAIL"},
        {"Login email: anna@xn--mnchen-3ya.de", "PII.EMAIL"},
        {"Sent to li@xn--r8jz45g.xn--fiqs8s yesterday.", "PII.EMAIL"},
        {"14 people are looking at this room right now.", "PRESSURE.ACTIVITY_NOTICE"},
        {"Sarah from Leeds just bought this.", "PRESSURE.ACTIVITY_NOTICE"},
        {"Bestseller \xE2\x80\x93 3,000 sold this week.", "PRESSURE.ACTIVITY_NOTICE"},
        {"Trending in your area.", "PRESSURE.SOCIAL_PROOF"},
        {"Offer ends in 14:59", "PRESSURE.VAGUE_DEADLINE"},
        {"Sale ends tonight.", "PRESSURE.VAGUE_DEADLINE"},
        {"Ends Sunday.", "PRESSURE.VAGUE_DEADLINE"},
        {"Prices go up at midnight.", "PRESSURE.VAGUE_DEADLINE"},
        {"No thanks, I'd rather pay full price", "PRESSURE.CONFIRMSHAMING"},
        {"I don't like saving money", "PRESSURE.CONFIRMSHAMING"},
        {"Continue without protection", "PRESSURE.CONFIRMSHAMING"},
        {"To cancel your membership, send us a letter by post.", "PRESSURE.OBSTRUCTION"},
        {"We've added travel insurance to your basket.", "MISLEAD.SNEAKING"},
        {"Priority boarding (\xC2\xA3" "15) has been added to your booking.", "MISLEAD.SNEAKING"},
        {"You must create an account to continue.", "PRESSURE.FORCED_ACTION"},
        {"Congratulations! You've won a \xC2\xA3" "500 gift card. Reply YES to claim.",
         "MISLEAD.FALSE_PRIZE"},
        {"Text WIN to 87121 to claim your prize (\xC2\xA3" "1.50/msg).", "MISLEAD.CLAIM_BY_REPLY"},
        {"Call 0906 123 4567 to collect your prize! Calls cost \xC2\xA3" "1.50/min.",
         "MISLEAD.PREMIUM_RATE"},
        {"Royal Mail: your parcel is on hold due to an unpaid fee of \xC2\xA3" "1.45. Pay at "
         "bit.ly/x1y2",
         "MISLEAD.PHISHING_PRETEXT"},
        {"Only {{stock}} left in stock!", "PRESSURE.FALSE_SCARCITY"},
        {"41 viewing now", "PRESSURE.ACTIVITY_NOTICE"},
        {"Lightning deal \xE2\x80\x93 20% claimed", "PRESSURE.ACTIVITY_NOTICE"},
        {"Added to basket 32 times today", "PRESSURE.ACTIVITY_NOTICE"},
        {"Ingrid M. in Adelaide bought a smart watch", "PRESSURE.ACTIVITY_NOTICE"},
        {"This rain jacket is flying off the shelves", "PRESSURE.SOCIAL_PROOF"},
        {"Limited time!", "PRESSURE.VAGUE_DEADLINE"},
        {"While the offer lasts: 30% off", "PRESSURE.VAGUE_DEADLINE"},
        {"60% off for the next 7 hours", "PRESSURE.VAGUE_DEADLINE"},
        {"[Brightwave] Expires tonight", "PRESSURE.VAGUE_DEADLINE"},
        {"Your discount code expires tonight", "PRESSURE.VAGUE_DEADLINE"},
        {"Maybe later (you'll lose your discount)", "PRESSURE.LOSS_FRAMING"},
        {"Cancellations are only accepted in writing.", "PRESSURE.OBSTRUCTION"},
        {"Membership can only be cancelled in person at your home club.", "PRESSURE.OBSTRUCTION"},
        {"By continuing you agree to receive marketing from us and our partners.",
         "PRESSURE.FORCED_ACTION"},
        {"[x] Add travel insurance (\xC2\xA3" "18.40)", "MISLEAD.SNEAKING"},
        {"You've been opted in to partner offers.", "MISLEAD.SNEAKING"},
        {"Guaranteed \xC2\xA3" "1000 cash or a prize! Claim code KL341.", "MISLEAD.FALSE_PRIZE"},
        {"Hi mum, I've lost my phone, this is my new number. Can you send me some money?",
         "MISLEAD.PHISHING_PRETEXT"},
        {"Her mobile is 912 345 678.", "PII.PHONE_LOCAL"},
        {"Please call the guest back on 22 723 14 67.", "PII.PHONE_LOCAL"},
        {"Card 4242 4242 4242 4242 12/27", "PII.CARD"},
    };
    static const char *const pass[] = {
        "Our sale runs until 30 November; prices are shown with all fees.",
        "The sale ends on Sunday 30 November at 23:59.",
        "Your one-time code expires in 10 minutes.",
        "Call us free on 0120-123-456.",
        "Our Tokyo line is 0570-012-345, and the UK one 0345 300 0000.",
        "Payment reference: 0000 1234 5678 90",
        "Mandate reference 2024 0311 5678 1234 11",
        "The IBAN you sent, DE89 3704 0044 0532 0130 01, fails the check digits.",
        "Your order number is 4242 4242 4242 4241.",
        "Part no. 110.20.4455 is back in stock.",
        "Invoice INV-482913 dated 30.11.2026, total \xE2\x82\xAC" "1.234,56.",
        "Write to kontakt@m\xC3\xBCller.de for opening hours.",
        "Rated 4.6 out of 5 from 2,314 reviews on Trustpilot (October 2026).",
        "No thanks",
        "Are you sure you want to leave this page? Unsaved changes will be lost.",
        "Would you like to add travel insurance for \xC2\xA3" "18.40? It isn't included unless you "
        "choose it.",
        "You can check out as a guest or create an account \xE2\x80\x93 it's up to you.",
        "Your parcel will arrive today between 14:00 and 15:00. Reply STOP to opt out.",
        "You're entitled to a refund of the delivery charge.",
        "Hi {{first_name}}, your order {{order_number}} has shipped. Call us on "
        "{{support_phone}} or write to {{email}}.",
        "24 people are booked on the 14:05 tour; the group limit is 20.",
        "Your session will time out after 15 minutes of inactivity.",
        "Your verification code expires in 10 minutes.",
        "You can cancel by phone, by post or online in your account.",
        "[ ] Add travel insurance (\xC2\xA3" "18.40)",
        "Sign in to see your order history.",
        "You've won! Our prize draw winner is Wei; we'll post the voucher to the address on "
        "your entry form, at no cost.",
        "Payment reference: 2489 1489 3557 6838 5690 04",
        "Your meter number is 41 3569 0172 846.",
        "Please call me about invoice 912 345 678.",
        "The parcel weighs 12 500 g and the box is 2026-11-30 stock.",
    };
    struct cd_guard *g = NULL;
    (void)state;

    if (access("rules", F_OK) != 0)
        skip();
    assert_int_equal(cd_guard_open("rules", &g), CD_OK);
    for (size_t i = 0; i < sizeof hit / sizeof hit[0]; i++) {
        struct cd_guard_result *r = check(g, hit[i].text, "sms");
        if (find_rule(r, hit[i].rule) == NULL)
            fail_msg("%s not found in: %s", hit[i].rule, hit[i].text);
        cd_guard_result_free(r);
    }
    for (size_t i = 0; i < sizeof pass / sizeof pass[0]; i++) {
        struct cd_guard_result *r = check(g, pass[i], "email");
        for (size_t k = 0; k < cd_guard_result_count(r); k++)
            if (strcmp(cd_guard_result_finding(r, k)->category, "jargon") != 0)
                fail_msg("%s in: %s", cd_guard_result_finding(r, k)->rule, pass[i]);
        cd_guard_result_free(r);
    }
    /* A sentence boundary ends the reference-word window: the phone number after it is
     * personal (the window used to run across "account." into the next sentence). */
    {
        struct cd_guard_result *r = check(g, "I've updated the delivery address on your account. "
                                             "Text the driver on 631-957-2116.", "email");
        assert_non_null(find_rule(r, "PII.PHONE"));
        cd_guard_result_free(r);
    }
    cd_guard_close(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validators),
        cmocka_unit_test(test_verdicts_and_json),
        cmocka_unit_test(test_offsets_unicode),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_bad_rules),
        cmocka_unit_test(test_pathological_patterns),
        cmocka_unit_test(test_reload_under_load),
        cmocka_unit_test(test_alloc_torture),
        cmocka_unit_test(test_mask_inbound),
        cmocka_unit_test(test_shipped_packs),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_windows_and_extend),
        cmocka_unit_test(test_placeholders),
        cmocka_unit_test(test_shipped_kinds),
        cmocka_unit_test(test_purpose_policy),
        cmocka_unit_test(test_shipped_purpose_defaults),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
