/* Unit tests for src/http: the route table agrees with docs/openapi.yaml (both ways), routing
 * and the problem table. */
#include <ctype.h>
#include "unit.h"
#include "http/http_int.h"

static void lower(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

static void every_route_is_documented(void **state)
{
    json_t *doc = NULL;

    assert_int_equal(cd__http_openapi_json(&doc), CD_OK);
    json_t *paths = json_object_get(doc, "paths");
    assert_non_null(paths);
    for (size_t i = 0; i < cd__http_nroutes; i++) {
        const struct cd_route *r = &cd__http_routes[i];
        char method[16];
        snprintf(method, sizeof method, "%s", r->method);
        lower(method);
        json_t *op = json_object_get(json_object_get(paths, r->pattern), method);
        if (op == NULL)
            fail_msg("%s %s is served but not in docs/openapi.yaml", r->method, r->pattern);
        const char *opid = json_string_value(json_object_get(op, "operationId"));
        if (opid == NULL || strcmp(opid, r->operation_id) != 0)
            fail_msg("%s %s: operationId %s in the document, %s in the route table", r->method,
                     r->pattern, opid ? opid : "(none)", r->operation_id);
    }
    json_decref(doc);
}

static void every_documented_operation_is_served(void **state)
{
    json_t *doc = NULL, *item, *op;
    const char *path, *method;

    assert_int_equal(cd__http_openapi_json(&doc), CD_OK);
    json_object_foreach(json_object_get(doc, "paths"), path, item)
    {
        json_object_foreach(item, method, op)
        {
            if (strcmp(method, "parameters") == 0)
                continue;
            bool found = false;
            for (size_t i = 0; i < cd__http_nroutes && !found; i++) {
                char m[16];
                snprintf(m, sizeof m, "%s", cd__http_routes[i].method);
                lower(m);
                found = strcmp(cd__http_routes[i].pattern, path) == 0 && strcmp(m, method) == 0;
            }
            if (!found)
                fail_msg("%s %s is documented but not served", method, path);
        }
    }
    json_decref(doc);
}

static void routing_captures_parameters(void **state)
{
    struct cd_str p[CD_MAX_PARAMS];
    size_t idx = 0;
    bool known = false;
    const struct cd_route *r;

    r = cd__http_route_find("GET", "/v1/customers/cus_1/timeline", &idx, p, &known);
    assert_non_null(r);
    assert_string_equal(r->pattern, "/v1/customers/{id}/timeline");
    assert_true(cd_str_eq_c(p[0], "cus_1"));
    r = cd__http_route_find("POST", "/v1/customers/lookup", &idx, p, &known);
    assert_string_equal(r->operation_id, "lookupCustomer");
    r = cd__http_route_find("DELETE", "/v1/customers/cus_1", &idx, p, &known);
    assert_null(r);
    assert_true(known); /* 405, not 404 */
    r = cd__http_route_find("GET", "/v1/customers//timeline", &idx, p, &known);
    assert_null(r);
    r = cd__http_route_find("GET", "/v1/nothing", &idx, p, &known);
    assert_null(r);
    assert_false(known);
    r = cd__http_route_find("HEAD", "/healthz", &idx, p, &known);
    assert_non_null(r);
}

static void every_error_has_a_problem_type(void **state)
{
    for (int e = 1; e < CD_ERR__COUNT; e++) {
        const struct cd_problem_kind *k = cd__http_problem_of((enum cd_err)e);
        assert_non_null(k->slug);
        assert_true(k->status >= 400 && k->status < 600);
        json_t *j = cd__http_problem_json(k, "d", "/x", "req_1", NULL);
        assert_non_null(j);
        assert_int_equal(json_integer_value(json_object_get(j, "status")), k->status);
        json_decref(j);
    }
    assert_int_equal(cd__http_problem_of(CD_ERR_PURPOSE_DENIED)->status, 403);
    assert_string_equal(cd__http_problem_of(CD_ERR_PURPOSE_MISSING)->slug, "purpose-required");
}

int main(void)
{
    cd_json_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_route_is_documented),
        cmocka_unit_test(every_documented_operation_is_served),
        cmocka_unit_test(routing_captures_parameters),
        cmocka_unit_test(every_error_has_a_problem_type),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
