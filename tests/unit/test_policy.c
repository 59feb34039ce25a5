/* Unit tests for src/policy: the built-in policy, role x purpose checks, and errors that name
 * the file and line. */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>
#include "unit.h"
#include "policy/policy.h"

static void builtin_policy_grants_and_refuses(void **state)
{
    struct cd_policy *p = NULL;
    struct cd_policy_grant g;

    assert_int_equal(cd_policy_load(NULL, &p), CD_OK);
    assert_int_equal(cd_policy_check(p, CD_ROLE_AGENT, CD_PURPOSE_SERVICE, &g), CD_OK);
    assert_true(g.fields & CD_FIELDS_CONVERSATION);
    assert_int_equal(cd_policy_check(p, CD_ROLE_AGENT, CD_PURPOSE_BILLING, &g), CD_OK);
    assert_false(g.fields & CD_FIELDS_CONVERSATION); /* billing never sees conversations */
    assert_int_equal(cd_policy_check(p, CD_ROLE_AGENT, CD_PURPOSE_MARKETING, &g),
                     CD_ERR_PURPOSE_DENIED);
    assert_non_null(strstr(cd_err_detail(), "agent"));
    assert_int_equal(cd_policy_check(p, CD_ROLE_INTEGRATION, CD_PURPOSE_ANALYTICS, &g), CD_OK);
    assert_int_equal(g.fields, CD_FIELDS_REFERENCE | CD_FIELDS_COARSE);
    assert_int_equal(cd_policy_check(p, CD_ROLE_COMPLIANCE, CD_PURPOSE_LEGAL_OBLIGATION, &g),
                     CD_OK);
    assert_true(g.allowed_when_restricted);
    assert_int_equal(cd_policy_check(p, CD_ROLE_ADMIN, CD_PURPOSE_SERVICE, &g), CD_OK);
    assert_false(g.allowed_when_restricted);
    assert_string_equal(cd_policy_categories(CD_FIELDS_REFERENCE | CD_FIELDS_CONTACT),
                        "reference,contact");
    /* A restriction leaves legal claims and duties and the protection of others' rights. */
    assert_int_equal(cd_policy_restricted_purposes(p),
                     1u << CD_PURPOSE_LEGAL_OBLIGATION | 1u << CD_PURPOSE_SECURITY);
    /* Only marketing and targeted advertising may carry promotional content. */
    for (int pu = 0; pu < CD_PURPOSE__COUNT; pu++)
        assert_int_equal(cd_policy_promotional(p, (enum cd_purpose)pu),
                         pu == CD_PURPOSE_MARKETING || pu == CD_PURPOSE_TARGETED_ADVERTISING);
    cd_policy_free(p);
}

static enum cd_err load_text(const char *text)
{
    char path[] = "/tmp/candor-policy-XXXXXX";
    int fd = mkstemp(path);
    struct cd_policy *p = NULL;
    enum cd_err err;

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    err = cd_policy_load(path, &p);
    cd_policy_free(p);
    unlink(path);
    return err;
}

static void bad_files_name_the_line(void **state)
{
    assert_int_equal(load_text("version: 1\npurposes:\n  service:\n    roles: [agent, wizard]\n"),
                     CD_ERR_INVALID);
    assert_non_null(strstr(cd_err_detail(), ":4: unknown role 'wizard'"));
    assert_int_equal(load_text("version: 1\npurposes:\n  shopping: {}\n"), CD_ERR_INVALID);
    assert_non_null(strstr(cd_err_detail(), ":3: unknown key 'shopping' in purposes"));
    assert_int_equal(load_text("version: 2\n"), CD_ERR_INVALID);
    assert_non_null(strstr(cd_err_detail(), ":1: only policy version 1"));
    assert_int_equal(load_text("version: 1\npurposes: [\n"), CD_ERR_INVALID);
    assert_int_equal(load_text("version: 1\npurposes:\n  service:\n    roles: [agent]\n"
                               "    categories: [contact]\n"),
                     CD_ERR_INVALID);
    assert_non_null(strstr(cd_err_detail(), "reference category"));
    /* Every purpose must be defined: a partial policy is refused. */
    assert_int_equal(load_text("version: 1\npurposes:\n  service:\n    roles: [agent]\n"
                               "    categories: [reference]\n"),
                     CD_ERR_INVALID);
    assert_non_null(strstr(cd_err_detail(), ":3: purposes lacks the required key 'billing'"));
    /* Unknown and repeated keys are refused where they stand. */
    assert_int_equal(load_text("version: 1\nversion: 1\n"), CD_ERR_INVALID);
    assert_non_null(strstr(cd_err_detail(), ":2: key 'version' is given twice"));
    assert_int_equal(load_text("version: 1\npurposes:\n  service:\n    roles: [agent]\n"
                               "    categories: [reference]\n    fields: [all]\n"),
                     CD_ERR_INVALID);
    assert_non_null(strstr(cd_err_detail(), ":6: unknown key 'fields' in a purpose"));
    assert_int_equal(load_text("version: 1\nrestricted: [security]\n"), CD_ERR_INVALID);
    assert_non_null(strstr(cd_err_detail(), ":2: unknown key 'restricted' in the policy"));
    /* Consent is the consent rules' question alone: a policy that answers it is refused. */
    assert_int_equal(load_text("version: 1\npurposes:\n  service:\n    roles: [agent]\n"
                               "    categories: [reference]\n    consent: false\n"),
                     CD_ERR_INVALID);
    assert_non_null(strstr(cd_err_detail(), ":6: 'consent' is decided by the consent rules"));
    assert_int_equal(load_text("version: 1\npromotional_purposes: [shopping]\n"),
                     CD_ERR_INVALID);
    assert_non_null(strstr(cd_err_detail(), ":2: unknown purpose 'shopping'"));
    assert_int_equal(cd_policy_load("/nonexistent/policy.yaml", &(struct cd_policy *){NULL}),
                     CD_ERR_IO);
}

static void loading_survives_allocation_failures(void **state)
{
    for (long n = 1; n < 200; n++) {
        struct cd_policy *p = NULL;
        cd_alloc_fail_nth(n);
        enum cd_err err = cd_policy_load(NULL, &p);
        bool hit = cd_alloc_fault_hit();
        cd_alloc_fail_nth(0);
        cd_policy_free(p);
        if (!hit) {
            assert_int_equal(err, CD_OK);
            break;
        }
        assert_int_equal(err, CD_ERR_NOMEM);
    }
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    fclose(f);
}

struct checker {
    struct cd_policy *p;
    atomic_bool stop;
    long checks, odd; /* odd: an answer neither the old nor the new policy gives */
};

static void *check_loop(void *arg)
{
    struct checker *c = arg;
    struct cd_policy_grant g;

    while (!atomic_load(&c->stop)) {
        enum cd_err err = cd_policy_check(c->p, CD_ROLE_AGENT, CD_PURPOSE_SECURITY, &g);
        if (err == CD_OK ? g.fields != (CD_FIELDS_REFERENCE | CD_FIELDS_CONTACT)
                         : err != CD_ERR_PURPOSE_DENIED)
            c->odd++;
        c->checks++;
    }
    return NULL;
}

static void reload_swaps_whole_policies_and_keeps_a_good_one(void **state)
{
    char path[] = "/tmp/candor-policy-XXXXXX";
    int fd = mkstemp(path);
    struct cd_buf text = CD_BUF_INIT(65536), changed = CD_BUF_INIT(65536);
    const char *from = "  security:\n    roles: [admin, compliance]", *orig, *at;
    struct checker c = {.checks = 0, .odd = 0};
    struct cd_policy_grant g;
    bool ch = true;
    pthread_t t;

    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(cd_buf_read_file(&text, "config/policy.yaml"), CD_OK);
    orig = text.p;
    assert_non_null(at = strstr(orig, from));
    assert_int_equal(cd_buf_append(&changed, orig, (size_t)(at - orig)), CD_OK);
    assert_int_equal(cd_buf_puts(&changed, "  security:\n    roles: [admin, compliance, agent]"),
                     CD_OK);
    assert_int_equal(cd_buf_puts(&changed, at + strlen(from)), CD_OK);
    write_text(path, orig);
    assert_int_equal(cd_policy_load(path, &c.p), CD_OK);
    /* The same text again: nothing changes. */
    assert_int_equal(cd_policy_reload(c.p, path, &ch), CD_OK);
    assert_false(ch);
    atomic_init(&c.stop, false);
    assert_int_equal(pthread_create(&t, NULL, check_loop, &c), 0);
    for (int i = 0; i < 50; i++) {
        write_text(path, i % 2 ? orig : changed.p);
        assert_int_equal(cd_policy_reload(c.p, path, &ch), CD_OK);
        assert_true(ch);
    }
    atomic_store(&c.stop, true);
    pthread_join(t, NULL);
    assert_true(c.checks > 0);
    assert_int_equal(c.odd, 0);
    /* The last reload put the original in force: agents may not declare security. */
    assert_int_equal(cd_policy_check(c.p, CD_ROLE_AGENT, CD_PURPOSE_SECURITY, &g),
                     CD_ERR_PURPOSE_DENIED);
    /* A bad file is refused with its line and the policy in force stays. */
    write_text(path, "version: 1\npurposes:\n  service:\n    roles: [agent, wizard]\n");
    assert_int_equal(cd_policy_reload(c.p, path, &ch), CD_ERR_INVALID);
    assert_false(ch);
    assert_non_null(strstr(cd_err_detail(), ":4: unknown role 'wizard'"));
    assert_int_equal(cd_policy_check(c.p, CD_ROLE_AGENT, CD_PURPOSE_SERVICE, &g), CD_OK);
    assert_int_equal(cd_policy_check(c.p, CD_ROLE_AGENT, CD_PURPOSE_SECURITY, &g),
                     CD_ERR_PURPOSE_DENIED);
    /* Allocation failures while reloading leave the policy in force, and nothing leaks. */
    write_text(path, changed.p);
    for (long n = 1; n < 400; n++) {
        cd_alloc_fail_nth(n);
        enum cd_err err = cd_policy_reload(c.p, path, &ch);
        bool hit = cd_alloc_fault_hit();
        cd_alloc_fail_nth(0);
        if (!hit) {
            assert_int_equal(err, CD_OK);
            break;
        }
        assert_int_equal(err, CD_ERR_NOMEM);
        assert_int_equal(cd_policy_check(c.p, CD_ROLE_AGENT, CD_PURPOSE_SECURITY, &g),
                         CD_ERR_PURPOSE_DENIED);
    }
    assert_int_equal(cd_policy_check(c.p, CD_ROLE_AGENT, CD_PURPOSE_SECURITY, &g), CD_OK);
    cd_policy_free(c.p);
    cd_buf_free(&changed);
    cd_buf_free(&text);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(builtin_policy_grants_and_refuses),
        cmocka_unit_test(bad_files_name_the_line),
        cmocka_unit_test(loading_survives_allocation_failures),
        cmocka_unit_test(reload_swaps_whole_policies_and_keeps_a_good_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
