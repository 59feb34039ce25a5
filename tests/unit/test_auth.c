/* Unit tests for src/auth: token expiry (parsing, refusal), the revocation counter and the
 * verified-token cache's bounds, on a real SQLite file opened twice as two processes would. */
#include <unistd.h>
#include "unit.h"
#include "auth/auth.h"
#include "crypto/crypto.h"

static char path[256];
static struct cd_store *store, *other; /* other: as another process (the CLI) sees the file */

static int setup(void **state)
{
    snprintf(path, sizeof path, "/tmp/candor-test-auth-%d.db", (int)getpid());
    unlink(path);
    if (cd_store_open(path, &store) != CD_OK || cd_store_open(path, &other) != CD_OK)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    cd_store_close(other);
    cd_store_close(store);
    unit_db_remove(path);
    return 0;
}

static void expiry_parses(void **state)
{
    int64_t now = 1700000000000, at = 0;

    assert_int_equal(cd_auth_expiry_parse(CD_STR("90d"), now, &at), CD_OK);
    assert_int_equal(at, now + 90LL * 86400000);
    assert_int_equal(cd_auth_expiry_parse(CD_STR("12h"), now, &at), CD_OK);
    assert_int_equal(at, now + 12LL * 3600000);
    assert_int_equal(cd_auth_expiry_parse(CD_STR("30m"), now, &at), CD_OK);
    assert_int_equal(at, now + 30LL * 60000);
    assert_int_equal(cd_auth_expiry_parse(CD_STR("3600s"), now, &at), CD_OK);
    assert_int_equal(at, now + 3600000);
    assert_int_equal(cd_auth_expiry_parse(CD_STR("2023-11-15T00:00:00Z"), now, &at), CD_OK);
    assert_int_equal(at, 1700006400000);
    assert_int_equal(cd_auth_expiry_parse(CD_STR("3660d"), now, &at), CD_OK);
    const char *bad[] = {"", "d", "0d", "-1d", "90", "90w", "9x9d", "3661d", "99999999999999999d",
                         "2001-01-01T00:00:00Z", "2023-11-14T22:13:20Z"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(cd_auth_expiry_parse(cd_str_c(bad[i]), now, &at), CD_ERR_INVALID);
}

static void expired_tokens_are_refused(void **state)
{
    char token[CD_TOKEN_LEN + 1], id[CD_ID_MAX];
    struct cd_principal p;
    json_t *list = NULL;

    assert_int_equal(cd_auth_token_create(store, CD_ROLE_AGENT, CD_STR("past"),
                                          cd_now_ms() - 1, "tok_t", NULL, token, id),
                     CD_ERR_INVALID);
    assert_int_equal(cd_auth_token_create(store, CD_ROLE_AGENT, CD_STR("short"),
                                          cd_now_ms() + 300, "tok_t", NULL, token, id),
                     CD_OK);
    assert_int_equal(cd_auth_verify(store, cd_str_c(token), &p), CD_OK);
    assert_true(p.expires_at > 0);
    usleep(350 * 1000);
    assert_int_equal(cd_auth_verify(store, cd_str_c(token), &p), CD_ERR_UNAUTHENTICATED);
    assert_non_null(strstr(cd_err_detail(), "expired"));
    assert_int_equal(cd_auth_token_list(store, &list), CD_OK);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "status")),
                        "expired");
    json_decref(list);
}

static void cache_never_outlives_a_token(void **state)
{
    char token[CD_TOKEN_LEN + 1], id[CD_ID_MAX];
    struct cd_principal p;
    struct cd_auth_cache *cache = NULL;

    assert_int_equal(cd_auth_cache_new(60000, &cache), CD_OK);
    assert_int_equal(cd_auth_token_create(store, CD_ROLE_AGENT, CD_STR("short"),
                                          cd_now_ms() + 300, "tok_t", NULL, token, id),
                     CD_OK);
    assert_int_equal(cd_auth_verify_cached(cache, store, cd_str_c(token), &p), CD_OK);
    usleep(350 * 1000);
    /* The entry would live a minute; the token only 300 ms. */
    assert_int_equal(cd_auth_verify_cached(cache, store, cd_str_c(token), &p),
                     CD_ERR_UNAUTHENTICATED);
    cd_auth_cache_free(cache);
}

static void another_process_revocation_reaches_the_cache(void **state)
{
    char token[CD_TOKEN_LEN + 1], id[CD_ID_MAX], keep[CD_TOKEN_LEN + 1], kid[CD_ID_MAX];
    struct cd_principal p;
    struct cd_auth_cache *cache = NULL;

    assert_int_equal(cd_auth_cache_new(60000, &cache), CD_OK);
    assert_int_equal(cd_auth_token_create(store, CD_ROLE_AGENT, CD_STR("a"), 0, "tok_t", NULL,
                                          token, id), CD_OK);
    assert_int_equal(cd_auth_token_create(store, CD_ROLE_AGENT, CD_STR("b"), 0, "tok_t", NULL,
                                          keep, kid), CD_OK);
    assert_int_equal(cd_auth_verify_cached(cache, store, cd_str_c(token), &p), CD_OK);
    assert_int_equal(cd_auth_verify_cached(cache, store, cd_str_c(keep), &p), CD_OK);
    /* Revoked through the other handle: this cache is not told, it reads the counter. */
    assert_int_equal(cd_auth_token_revoke(other, cd_str_c(id), "cli", NULL), CD_OK);
    usleep((CD_AUTH_EPOCH_CHECK_MS + 20) * 1000);
    assert_int_equal(cd_auth_verify_cached(cache, store, cd_str_c(token), &p),
                     CD_ERR_UNAUTHENTICATED);
    assert_non_null(strstr(cd_err_detail(), "revoked"));
    assert_int_equal(cd_auth_verify_cached(cache, store, cd_str_c(keep), &p), CD_OK);
    /* Through this process: at once. */
    assert_int_equal(cd_auth_token_revoke(store, cd_str_c(kid), "tok_t", NULL), CD_OK);
    cd_auth_cache_forget(cache);
    assert_int_equal(cd_auth_verify_cached(cache, store, cd_str_c(keep), &p),
                     CD_ERR_UNAUTHENTICATED);
    assert_int_equal(cd_auth_token_revoke(store, cd_str_c(kid), "tok_t", NULL), CD_ERR_CONFLICT);
    cd_auth_cache_free(cache);
}

int main(void)
{
    cd_json_init();
    cd_crypto_init();
    cd_log_set_level(CD_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(expiry_parses),
        cmocka_unit_test_setup_teardown(expired_tokens_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(cache_never_outlives_a_token, setup, teardown),
        cmocka_unit_test_setup_teardown(another_process_revocation_reaches_the_cache, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
