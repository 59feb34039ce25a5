/* Unit tests for src/policy: the built-in policy, role x purpose checks, and errors that name
 * the file and line. */
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
    assert_non_null(strstr(cd_err_detail(), ":3: unknown purpose"));
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
    assert_non_null(strstr(cd_err_detail(), "is not defined"));
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(builtin_policy_grants_and_refuses),
        cmocka_unit_test(bad_files_name_the_line),
        cmocka_unit_test(loading_survives_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
