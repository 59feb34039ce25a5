/* Unit tests for src/http: the route table and the problem types agree with docs/openapi.yaml
 * (both ways), every route follows the rule for personal data, routing, the problem table, and
 * the edge's checks of request targets and header sets, and the per-address throttles. */
#include <arpa/inet.h>
#include <ctype.h>
#include "unit.h"
#include "consent/consent.h"
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

/* Whether schema (a JSON Schema of the document, or a $ref to one) holds personal data: it, or
 * any schema it refers to or is made of, is marked x-personal-data. */
static bool personal_schema(json_t *doc, json_t *schema, int depth)
{
    const char *ref = json_string_value(json_object_get(schema, "$ref"));
    const char *key;
    json_t *v;

    if (schema == NULL || depth > 16)
        return false;
    if (ref && strncmp(ref, "#/components/schemas/", 21) == 0)
        return personal_schema(doc,
                               json_object_get(json_object_get(json_object_get(doc, "components"),
                                                               "schemas"),
                                               ref + 21),
                               depth + 1);
    if (json_is_true(json_object_get(schema, "x-personal-data")))
        return true;
    json_object_foreach(json_object_get(schema, "properties"), key, v)
    {
        if (personal_schema(doc, v, depth + 1))
            return true;
    }
    if (personal_schema(doc, json_object_get(schema, "items"), depth + 1))
        return true;
    static const char *const combos[] = {"oneOf", "anyOf", "allOf"};
    for (size_t c = 0; c < 3; c++) {
        size_t i;
        json_array_foreach(json_object_get(schema, combos[c]), i, v)
        {
            if (personal_schema(doc, v, depth + 1))
                return true;
        }
    }
    return false;
}

/* Whether an operation's successful answers (2xx) carry personal data, as documented. */
static bool answers_personal_data(json_t *doc, json_t *op)
{
    const char *status, *type;
    json_t *resp, *media;

    json_object_foreach(json_object_get(op, "responses"), status, resp)
    {
        if (status[0] != '2')
            continue;
        json_object_foreach(json_object_get(resp, "content"), type, media)
        {
            if (personal_schema(doc, json_object_get(media, "schema"), 0))
                return true;
        }
    }
    return false;
}

/* The Candor-Purpose parameter an operation documents: "Purpose" (required), "PurposeOptional"
 * or NULL. */
static const char *purpose_param(json_t *path_item, json_t *op)
{
    json_t *lists[2] = {json_object_get(path_item, "parameters"),
                        json_object_get(op, "parameters")};
    for (int l = 0; l < 2; l++) {
        size_t i;
        json_t *p;
        json_array_foreach(lists[l], i, p)
        {
            const char *ref = json_string_value(json_object_get(p, "$ref"));
            if (ref && strcmp(ref, "#/components/parameters/Purpose") == 0)
                return "Purpose";
            if (ref && strcmp(ref, "#/components/parameters/PurposeOptional") == 0)
                return "PurposeOptional";
        }
    }
    return NULL;
}

/* The rule every route follows (src/http/http_int.h): a route either answers with no personal
 * data, or it requires a purpose and is marked CD_ROUTE_PERSONAL (trimmed, checked, recorded),
 * or it is a write marked CD_ROUTE_ECHO whose answer carries personal data only under an
 * optional purpose. What a route answers is taken from docs/openapi.yaml (schemas marked
 * x-personal-data), which is checked against the table both ways above. Returns false with the
 * first breach in why. */
static bool routes_follow_the_purpose_rule(const struct cd_route *routes, size_t n, json_t *doc,
                                           char *why, size_t whylen)
{
    json_t *paths = json_object_get(doc, "paths");

    for (size_t i = 0; i < n; i++) {
        const struct cd_route *r = &routes[i];
        char method[16];
        snprintf(method, sizeof method, "%s", r->method);
        lower(method);
        json_t *item = json_object_get(paths, r->pattern), *op = json_object_get(item, method);
        bool personal = answers_personal_data(doc, op);
        bool pur = r->flags & CD_ROUTE_PURPOSE, pii = r->flags & CD_ROUTE_PERSONAL,
             echo = r->flags & CD_ROUTE_ECHO, self = r->flags & CD_ROUTE_SELF;
        const char *doc_purpose = purpose_param(item, op);
        const char *breach = NULL;

        if (personal && !pii && !echo)
            breach = "answers with personal data but is neither CD_ROUTE_PERSONAL nor "
                     "CD_ROUTE_ECHO";
        else if (self && (pur || echo || (r->flags & (CD_ROUTE_PUBLIC | CD_ROUTE_INLINE))))
            breach = "is CD_ROUTE_SELF (the purpose is the customer's own access) but takes a "
                     "purpose, is public or runs inline";
        else if (self != (r->subject == CD_SUBJECT_SELF))
            breach = "is CD_ROUTE_SELF without CD_SUBJECT_SELF, or the other way round";
        else if (pii && !pur && !self)
            breach = "is CD_ROUTE_PERSONAL without CD_ROUTE_PURPOSE";
        else if (pii && (r->flags & CD_ROUTE_PUBLIC))
            breach = "is CD_ROUTE_PERSONAL and public";
        else if (echo && (pur || strcmp(r->method, "GET") == 0))
            breach = "is CD_ROUTE_ECHO but not a write with an optional purpose";
        else if ((pii || echo) && !personal)
            breach = "is marked as answering with personal data, but its documented answer "
                     "holds none (mark the schema x-personal-data, or drop the flag)";
        else if (pur && (doc_purpose == NULL || strcmp(doc_purpose, "Purpose") != 0))
            breach = "requires a purpose the document does not (Purpose parameter)";
        else if (echo && (doc_purpose == NULL || strcmp(doc_purpose, "PurposeOptional") != 0))
            breach = "takes an optional purpose the document does not (PurposeOptional)";
        else if (!pur && !echo && doc_purpose)
            breach = "documents a Candor-Purpose header the route does not read";
        if (breach) {
            snprintf(why, whylen, "%s %s (%s) %s", r->method, r->pattern, r->operation_id,
                     breach);
            return false;
        }
    }
    return true;
}

static void every_route_follows_the_purpose_rule(void **state)
{
    json_t *doc = NULL;
    char why[300] = "";

    assert_int_equal(cd__http_openapi_json(&doc), CD_OK);
    if (!routes_follow_the_purpose_rule(cd__http_routes, cd__http_nroutes, doc, why, sizeof why))
        fail_msg("%s", why);
    /* A route that answers with personal data but lost its flag is caught, as it would have
     * been for updateCustomer, addIdentity and mergeCustomers before they were marked. */
    struct cd_route *copy = cd_calloc(cd__http_nroutes, sizeof *copy);
    assert_non_null(copy);
    static const char *const ops[] = {"updateCustomer", "addIdentity", "mergeCustomers",
                                      "getAccessLog", "createInteraction", "getMyData",
                                      "getMyAccessLog"};
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        memcpy(copy, cd__http_routes, cd__http_nroutes * sizeof *copy);
        for (size_t i = 0; i < cd__http_nroutes; i++)
            if (strcmp(copy[i].operation_id, ops[k]) == 0)
                copy[i].flags &= ~(unsigned)(CD_ROUTE_PERSONAL | CD_ROUTE_PURPOSE | CD_ROUTE_ECHO);
        why[0] = '\0';
        assert_false(routes_follow_the_purpose_rule(copy, cd__http_nroutes, doc, why, sizeof why));
        assert_non_null(strstr(why, ops[k]));
        assert_non_null(strstr(why, "answers with personal data"));
    }
    cd_free(copy);
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

/* A named enum of the document's schemas holds exactly the names, in order. */
static void schema_enum_is(json_t *doc, const char *schema, const char *const *names, int n)
{
    json_t *list = json_object_get(
        json_object_get(json_object_get(json_object_get(doc, "components"), "schemas"), schema),
        "enum");
    if (!json_is_array(list))
        fail_msg("docs/openapi.yaml has no enum %s", schema);
    if (json_array_size(list) != (size_t)n)
        fail_msg("%s lists %zu names, the server %d", schema, json_array_size(list), n);
    for (int i = 0; i < n; i++)
        if (strcmp(json_string_value(json_array_get(list, (size_t)i)), names[i]) != 0)
            fail_msg("%s[%d] is %s, the server's is %s", schema, i,
                     json_string_value(json_array_get(list, (size_t)i)), names[i]);
}

/* The lists of names the API accepts (roles, purposes, channels) are the server's lists. */
static void name_lists_are_documented(void **state)
{
    json_t *doc = NULL;
    const char *roles[CD_ROLE__COUNT], *purposes[CD_PURPOSE__COUNT];
    const char *chans[CD_CONSENT_CHANNEL__COUNT];

    for (int i = 0; i < CD_ROLE__COUNT; i++)
        roles[i] = cd_role_name((enum cd_role)i);
    for (int i = 0; i < CD_PURPOSE__COUNT; i++)
        purposes[i] = cd_purpose_name((enum cd_purpose)i);
    for (int i = 0; i < CD_CONSENT_CHANNEL__COUNT; i++) {
        chans[i] = cd_consent_channel_name((enum cd_consent_channel)i);
        /* The core accepts every channel consent knows, and only those ("*" is consent's). */
        assert_int_equal(cd_core_channel_valid(cd_str_c(chans[i])), i != CD_CONSENT_CHANNEL_ANY);
    }
    assert_false(cd_core_channel_valid(CD_STR("fax")));
    assert_int_equal(cd__http_openapi_json(&doc), CD_OK);
    schema_enum_is(doc, "Role", roles, CD_ROLE__COUNT);
    schema_enum_is(doc, "Purpose", purposes, CD_PURPOSE__COUNT);
    schema_enum_is(doc, "ConsentChannel", chans, CD_CONSENT_CHANNEL__COUNT);
    schema_enum_is(doc, "Channel", chans + 1, CD_CONSENT_CHANNEL__COUNT - 1);
    assert_string_equal(cd_purpose_list(), "service, billing, legal_obligation, fraud_prevention, "
                                           "security, marketing, personalization, analytics, "
                                           "targeted_advertising, sale_or_sharing, research");
    assert_string_equal(CD_ROLE_NAMES, "admin, supervisor, agent, compliance, integration");
    json_decref(doc);
}

/* Every problem type the server can answer is listed in the document's Problem.type enum, and
 * every listed type is one the server knows. */
static void every_problem_type_is_documented(void **state)
{
    json_t *doc = NULL, *v;
    size_t i;
    char type[96];

    assert_int_equal(cd__http_openapi_json(&doc), CD_OK);
    json_t *list = json_object_get(
        json_object_get(json_object_get(json_object_get(json_object_get(
                                            json_object_get(doc, "components"), "schemas"),
                                                        "Problem"),
                                        "properties"),
                        "type"),
        "enum");
    assert_true(json_is_array(list));
    for (int e = 0; e < CD_ERR__COUNT; e++) {
        bool found = false;
        snprintf(type, sizeof type, "/problems/%s", cd__http_problem_of((enum cd_err)e)->slug);
        json_array_foreach(list, i, v) found = found || strcmp(json_string_value(v), type) == 0;
        if (!found)
            fail_msg("%s is answered but not listed in docs/openapi.yaml", type);
    }
    for (int k = 0; cd__http_problem_kinds[k].slug; k++) {
        bool found = false;
        snprintf(type, sizeof type, "/problems/%s", cd__http_problem_kinds[k].slug);
        json_array_foreach(list, i, v) found = found || strcmp(json_string_value(v), type) == 0;
        if (!found)
            fail_msg("%s is answered but not listed in docs/openapi.yaml", type);
    }
    json_array_foreach(list, i, v)
    {
        const char *t = json_string_value(v);
        assert_non_null(t);
        if (strncmp(t, "/problems/", 10) != 0 || cd__http_problem_by_slug(cd_str_c(t + 10)) == NULL)
            fail_msg("%s is listed in docs/openapi.yaml but the server does not know it", t);
    }
    json_decref(doc);
}

static void every_edge_problem_is_complete(void **state)
{
    size_t n = 0;

    for (; cd__http_problem_kinds[n].slug; n++) {
        const struct cd_problem_kind *k = &cd__http_problem_kinds[n];
        assert_true(k->status >= 400 && k->status < 600);
        assert_non_null(k->title);
        assert_ptr_equal(cd__http_problem_by_slug(cd_str_c(k->slug)), k);
    }
    assert_int_equal(n, CD_PROBLEM__COUNT); /* no hole in the designated initializers */
    assert_int_equal(cd__http_problem_kinds[CD_PROBLEM_URI_TOO_LONG].status, 414);
    assert_string_equal(cd__http_problem_kinds[CD_PROBLEM_INVALID_URI].slug, "invalid-uri");
    /* A 501 keeps its detail: only 500s hide theirs. */
    json_t *j = cd__http_problem_json(&cd__http_problem_kinds[CD_PROBLEM_TRANSFER_CODING],
                                      "only chunked", NULL, "req_1", NULL);
    assert_string_equal(json_string_value(json_object_get(j, "detail")), "only chunked");
    assert_null(json_object_get(j, "instance"));
    json_decref(j);
    j = cd__http_problem_json(cd__http_problem_of(CD_ERR_INTERNAL), "secret", "/x", "req_1",
                              NULL);
    assert_string_not_equal(json_string_value(json_object_get(j, "detail")), "secret");
    json_decref(j);
}

enum verdict { OK, INVALID, TOO_LONG };

static enum verdict target(const char *t)
{
    const struct cd__http_target_error *e = cd__http_target_check(t);

    if (e == NULL)
        return OK;
    /* Every refusal says why, and its verdict travels as a recognisable static pointer. */
    assert_true(e->why != NULL && e->why[0] != '\0');
    assert_ptr_equal(cd__http_target_error_of(e), e);
    return e->too_long ? TOO_LONG : INVALID;
}

static void request_targets_are_checked_before_decoding(void **state)
{
    char big[CD_MAX_TARGET + 2];

    assert_int_equal(target("/v1/customers/cus_1/timeline?limit=5&cursor=abc"), OK);
    assert_int_equal(target("/healthz"), OK);
    assert_int_equal(target(""), OK); /* the library answers a missing target */
    assert_int_equal(target("/v1/customers?q=%41%62%7e%C3%A9"), OK);
    assert_int_equal(target("/v1/audit?since=2026-01-01T00:00:00%2B01:00"), OK);
    assert_int_equal(target("/v1/customers?next=a%2Fb"), OK); /* '/' in a value */
    /* Encoded control characters: %00 would end the decoded path early. */
    assert_int_equal(target("/healthz%00/anything"), INVALID);
    assert_int_equal(target("/healthz?x=%00"), INVALID);
    assert_int_equal(target("/healthz?x=a%0d%0aSet-Cookie:1"), INVALID);
    assert_int_equal(target("/healthz%1F"), INVALID);
    assert_int_equal(target("/healthz%7f"), INVALID);
    /* Raw control characters and spaces. */
    assert_int_equal(target("/heal\x01thz"), INVALID);
    assert_int_equal(target("/healthz x"), INVALID);
    assert_int_equal(target("/healthz\t"), INVALID);
    assert_int_equal(target("/healthz\x7f"), INVALID);
    /* Malformed percent-encoding. */
    assert_int_equal(target("/healthz%"), INVALID);
    assert_int_equal(target("/healthz%4"), INVALID);
    assert_int_equal(target("/healthz%zz"), INVALID);
    assert_int_equal(target("/healthz?x=%g0"), INVALID);
    /* An encoded '/' would make two path segments of one. */
    assert_int_equal(target("/v1/customers%2Flookup"), INVALID);
    assert_int_equal(target("/v1/customers%2flookup"), INVALID);
    /* Size: bytes and query parameters. */
    memset(big, 'a', sizeof big - 1);
    big[0] = '/';
    big[CD_MAX_TARGET] = '\0';
    assert_int_equal(target(big), OK);
    big[CD_MAX_TARGET] = 'a';
    big[CD_MAX_TARGET + 1] = '\0';
    assert_int_equal(target(big), TOO_LONG);
    big[CD_MAX_TARGET - 1] = '%'; /* invalid whatever its length */
    assert_int_equal(target(big), INVALID);
    char q[256];
    size_t n = (size_t)snprintf(q, sizeof q, "/healthz?a");
    for (int i = 1; i < CD_MAX_QUERY; i++)
        n += (size_t)snprintf(q + n, sizeof q - n, "&a");
    assert_int_equal(target(q), OK); /* 16 parameters */
    snprintf(q + n, sizeof q - n, "&");
    assert_int_equal(target(q), TOO_LONG); /* 17, counting an empty one */
    assert_int_equal(target("/a&b&c&d&e&f&g&h&i&j&k&l&m&n&o&p&q&r&s&t&u&v&w&x&y&z&1&2&3&4&5&6&7"),
                     OK); /* '&' in the path is no parameter */
    struct conn_like {
        int x;
    } other;
    assert_null(cd__http_target_error_of(&other));
    assert_null(cd__http_target_error_of(NULL));
}

static const struct cd_problem_kind *headers(bool http10, const char *const *lines,
                                             struct cd__http_headers *out)
{
    struct cd__http_headers hs = CD_HTTP_HEADERS_INIT;
    char detail[200] = "";

    for (size_t i = 0; lines[i]; i += 2)
        cd__http_headers_add(&hs, cd_str_c(lines[i]), cd_str_c(lines[i + 1]));
    const struct cd_problem_kind *k = cd__http_headers_check(&hs, http10, detail, sizeof detail);
    if (k)
        assert_true(detail[0] != '\0');
    if (out)
        *out = hs;
    return k;
}

#define H(...) ((const char *const[]){__VA_ARGS__, NULL})
#define KIND(x) (&cd__http_problem_kinds[CD_PROBLEM_##x])

static void header_sets_are_checked(void **state)
{
    struct cd__http_headers hs;

    /* A usual request: values are found whatever the case of the name. */
    assert_null(headers(false,
                        H("host", "x", "AUTHORIZATION", "Bearer t", "candor-purpose", "service",
                          "Content-Length", "12", "X-Trace", "1", "x-trace", "2"),
                        &hs));
    assert_true(cd_str_eq_c(hs.v[CD_H_AUTHORIZATION], "Bearer t"));
    assert_true(cd_str_eq_c(hs.v[CD_H_PURPOSE], "service"));
    assert_null(hs.v[CD_H_GPC].p);
    assert_int_equal(hs.count, 6); /* other headers may repeat */
    /* Every singleton, twice, even with the same value. */
    const char *names[] = {"Host", "Authorization", "Candor-Purpose", "Idempotency-Key",
                           "Content-Type", "Content-Length", "Transfer-Encoding", "Sec-GPC"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const char *host = strcmp(names[i], "Host") ? "Host" : "X-Other";
        assert_ptr_equal(headers(false, H(host, "x", names[i], "1", names[i], "1"), NULL),
                         KIND(DUPLICATE_HEADER));
    }
    assert_ptr_equal(headers(false, H("Host", "x", "content-length", "5", "Content-Length", "6"),
                             NULL),
                     KIND(DUPLICATE_HEADER));
    /* Names that are not tokens: a space before the colon hides a header from one reader. */
    assert_ptr_equal(headers(false, H("Host", "x", "Transfer-Encoding ", "chunked"), NULL),
                     KIND(INVALID_HEADER));
    assert_ptr_equal(headers(false, H("Host", "x", "", "v"), NULL), KIND(INVALID_HEADER));
    assert_ptr_equal(headers(false, H("Host", "x", "A(b)", "v"), NULL), KIND(INVALID_HEADER));
    assert_null(headers(false, H("Host", "x", "X-A!#$%&'*+-.^_`|~9", "v"), NULL));
    /* Host: required in HTTP/1.1, not in HTTP/1.0. */
    assert_ptr_equal(headers(false, H("Accept", "*/*"), NULL), KIND(INVALID_HEADER));
    assert_null(headers(true, H("Accept", "*/*"), NULL));
    /* Framing. */
    assert_null(headers(false, H("Host", "x", "Transfer-Encoding", "chunked"), NULL));
    assert_null(headers(false, H("Host", "x", "Transfer-Encoding", "Chunked"), NULL));
    assert_ptr_equal(
        headers(false, H("Host", "x", "Transfer-Encoding", "chunked", "Content-Length", "5"), NULL),
        KIND(INVALID_HEADER));
    assert_ptr_equal(headers(true, H("Transfer-Encoding", "chunked"), NULL), KIND(INVALID_HEADER));
    const char *codings[] = {"gzip", "gzip, chunked", "chunked, chunked", "chunked ", "identity",
                             "", "chunkedx"};
    for (size_t i = 0; i < sizeof codings / sizeof *codings; i++)
        assert_ptr_equal(headers(false, H("Host", "x", "Transfer-Encoding", codings[i]), NULL),
                         KIND(TRANSFER_CODING));
    assert_int_equal(KIND(TRANSFER_CODING)->status, 501);
}

/* ---- batch ingestion ---- */

static const struct cd_route *route_of(const char *method, const char *pattern)
{
    for (size_t i = 0; i < cd__http_nroutes; i++)
        if (strcmp(cd__http_routes[i].method, method) == 0 &&
            strcmp(cd__http_routes[i].pattern, pattern) == 0)
            return &cd__http_routes[i];
    fail_msg("%s %s is not served", method, pattern);
    return NULL;
}

/* A batch request as the server hands it to the handler, from the body's text. */
static struct cd_req batch_req(const char *body)
{
    struct cd_req r = {.arena = CD_ARENA_INIT(0), .method = "POST",
                       .path = "/v1/interactions:batch"};
    r.route = route_of("POST", "/v1/interactions:batch");
    snprintf(r.principal.token_id, sizeof r.principal.token_id, "tok_1");
    snprintf(r.request_id, sizeof r.request_id, "req_1");
    r.json = json_loads(body, 0, NULL);
    assert_non_null(r.json);
    return r;
}

static void batch_req_free(struct cd_req *r)
{
    json_decref(r->json);
    cd_arena_free(&r->arena);
}

/* Parses body and expects it refused whole with a detail that says why. */
static void batch_refused(const char *body, const char *why)
{
    struct cd_req r = batch_req(body);
    struct cd__http_batch_entry *e = (void *)1;
    size_t n = 7;

    assert_int_equal(cd__http_batch_parse(&r, &e, &n), CD_ERR_INVALID);
    assert_null(e);
    assert_int_equal(n, 0);
    if (strstr(cd_err_detail(), why) == NULL)
        fail_msg("%s: detail '%s' does not say '%s'", body, cd_err_detail(), why);
    batch_req_free(&r);
}

static void batch_items_are_checked_whole(void **state)
{
    char big[8192];
    size_t off = snprintf(big, sizeof big, "{\"items\": [");
    for (int i = 0; i <= CD_HTTP_BATCH_MAX; i++)
        off += snprintf(big + off, sizeof big - off, "%s{}", i ? "," : "");
    snprintf(big + off, sizeof big - off, "]}");

    batch_refused("{}", "'items' must be an array of 1 to 100");
    batch_refused("{\"items\": []}", "'items' must be an array");
    batch_refused("{\"items\": {}}", "'items' must be an array");
    batch_refused(big, "1 to 100 interactions");
    batch_refused("{\"items\": [{}], \"extra\": 1}", "unknown member 'extra'");
    batch_refused("{\"items\": [{}, 3]}", "'items[1]' must be an object");
    batch_refused("{\"items\": [{}, {\"idempotency_key\": 7}]}",
                  "'items[1].idempotency_key' must be a string");
    batch_refused("{\"items\": [{\"idempotency_key\": \"\"}]}",
                  "'items[0].idempotency_key' must have 1 to 255 characters");
    batch_refused("{\"items\": [{}, {}, {\"idempotency_key\": \"sp ace\"}]}",
                  "'items[2].idempotency_key' must be printable ASCII");
}

static void batch_items_are_keyed_like_single_ingestions(void **state)
{
    struct cd_req r = batch_req(
        "{\"items\": [{\"body\": \"a\", \"channel\": \"chat\", \"idempotency_key\": \"k-1\"},"
        " {\"body\": \"b\"},"
        " {\"channel\": \"chat\", \"idempotency_key\": \"k-1\", \"body\": \"a\"},"
        " {\"body\": \"b\", \"idempotency_key\": \"k-1\"}]}");
    struct cd__http_batch_entry *e = NULL;
    size_t n = 0;

    assert_int_equal(cd__http_batch_parse(&r, &e, &n), CD_OK);
    assert_int_equal(n, 4);
    /* The key is taken out of the body the ingestion sees. */
    assert_null(json_object_get(e[0].body, "idempotency_key"));
    assert_string_equal(json_string_value(json_object_get(e[0].body, "body")), "a");
    assert_true(e[0].has_idem);
    assert_true(cd_str_eq_c(e[0].idem.key, "k-1"));
    assert_string_equal(e[0].idem.scope, "tok_1 POST /v1/interactions:batch");
    assert_false(e[1].has_idem);
    assert_int_equal(json_object_size(e[1].body), 1);
    /* The same item under the same key is a replay wherever it sits and however its members
     * are ordered; another item under the same key is not. */
    assert_memory_equal(e[0].idem.request_hash, e[2].idem.request_hash, 32);
    assert_memory_not_equal(e[0].idem.request_hash, e[3].idem.request_hash, 32);
    cd__http_batch_entries_free(e, n);
    batch_req_free(&r);

    /* Out of memory at any step: a clean error, nothing half made. */
    for (long k = 1;; k++) {
        r = batch_req("{\"items\": [{\"body\": \"a\", \"idempotency_key\": \"k\"}, {}]}");
        cd_alloc_fail_nth(k);
        enum cd_err err = cd__http_batch_parse(&r, &e, &n);
        bool hit = cd_alloc_fault_hit();
        cd_alloc_fail_nth(0);
        if (err == CD_OK)
            cd__http_batch_entries_free(e, n);
        else
            assert_null(e);
        batch_req_free(&r);
        if (!hit) {
            assert_int_equal(err, CD_OK);
            break;
        }
        assert_int_equal(err, CD_ERR_NOMEM);
    }
}

static void batch_results_are_shaped_per_item(void **state)
{
    json_t *results = json_array();

    json_array_append_new(results, cd__http_batch_result(CD_OK, json_pack("{s:s}", "id", "i_1"),
                                                         false, "", NULL, "req_1"));
    json_array_append_new(results, cd__http_batch_result(CD_OK, json_pack("{s:s}", "id", "i_0"),
                                                         true, "", NULL, "req_1"));
    json_array_append_new(results,
                          cd__http_batch_result(CD_ERR_GUARD_BLOCKED, NULL, false, "blocked",
                                                json_pack("{s:[]}", "findings"), "req_1"));
    json_array_append_new(results, cd__http_batch_result(CD_ERR_INVALID, NULL, false,
                                                         "'channel' is unknown", NULL, "req_1"));
    json_t *a = cd__http_batch_answer(results);
    assert_non_null(a);
    json_t *items = json_object_get(a, "items");
    assert_int_equal(json_array_size(items), 4);
    assert_int_equal(json_integer_value(json_object_get(a, "succeeded")), 2);
    assert_int_equal(json_integer_value(json_object_get(a, "failed")), 2);

    json_t *created = json_array_get(items, 0), *replayed = json_array_get(items, 1);
    assert_int_equal(json_integer_value(json_object_get(created, "status")), 201);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(created, "interaction"), "id")), "i_1");
    assert_null(json_object_get(created, "problem"));
    assert_int_equal(json_integer_value(json_object_get(replayed, "status")), 200);

    json_t *blocked = json_object_get(json_array_get(items, 2), "problem");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(items, 2), "status")),
                     cd__http_problem_of(CD_ERR_GUARD_BLOCKED)->status);
    assert_null(json_object_get(json_array_get(items, 2), "interaction"));
    assert_string_equal(json_string_value(json_object_get(blocked, "type")),
                        "/problems/guard-blocked");
    assert_true(json_is_array(json_object_get(blocked, "findings")));
    assert_string_equal(json_string_value(json_object_get(blocked, "request_id")), "req_1");
    json_t *invalid = json_object_get(json_array_get(items, 3), "problem");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(items, 3), "status")), 400);
    assert_string_equal(json_string_value(json_object_get(invalid, "detail")),
                        "'channel' is unknown");
    json_decref(a);
}

static void throttle_counts_per_address_in_a_window(void **state)
{
    struct cd_throttle *t = NULL;
    uint8_t a[16] = {1}, b[16] = {2};

    assert_int_equal(cd__throttle_new(0, 3, 1000, &t), CD_ERR_INVALID);
    assert_int_equal(cd__throttle_new(8, 3, 1000, &t), CD_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(cd__throttle_take(t, a, 100 + i), 0);
    /* The fourth waits for the window that began with the first: 1000 ms after 100. */
    assert_int_equal(cd__throttle_take(t, a, 400), 700);
    assert_int_equal(cd__throttle_take(t, a, 1099), 1);
    /* Another address is not held back by the first. */
    assert_int_equal(cd__throttle_take(t, b, 400), 0);
    /* A refund gives one back; then the limit holds again. */
    cd__throttle_refund(t, a);
    assert_int_equal(cd__throttle_take(t, a, 500), 0);
    assert_true(cd__throttle_take(t, a, 500) > 0);
    /* A new window starts afresh. */
    assert_int_equal(cd__throttle_take(t, a, 1100), 0);
    cd__throttle_free(t);
}

static void throttle_table_stays_bounded(void **state)
{
    struct cd_throttle *t = NULL;
    uint8_t k[16] = {0};

    assert_int_equal(cd__throttle_new(2, 1, 1000, &t), CD_OK);
    k[0] = 1;
    assert_int_equal(cd__throttle_take(t, k, 0), 0);
    k[0] = 2;
    assert_int_equal(cd__throttle_take(t, k, 10), 0);
    /* Full: a third address takes the slot of the one whose window began first. */
    k[0] = 3;
    assert_int_equal(cd__throttle_take(t, k, 20), 0);
    assert_true(cd__throttle_take(t, k, 20) > 0);
    k[0] = 2;
    assert_true(cd__throttle_take(t, k, 20) > 0); /* still remembered */
    k[0] = 1;
    assert_int_equal(cd__throttle_take(t, k, 20), 0); /* forgotten, so counted afresh */
    cd__throttle_free(t);
    /* Allocation failure is an error. */
    cd_alloc_fail_nth(1);
    assert_int_equal(cd__throttle_new(4, 1, 1000, &t), CD_ERR_NOMEM);
    cd_alloc_fail_nth(0);
}

static void throttle_keys_of_addresses(void **state)
{
    struct sockaddr_in v4 = {.sin_family = AF_INET};
    struct sockaddr_in6 v6a = {.sin6_family = AF_INET6}, v6b = {.sin6_family = AF_INET6};
    uint8_t k1[16], k2[16], want[16] = {[10] = 0xff, [11] = 0xff, 127, 0, 0, 1};

    inet_pton(AF_INET, "127.0.0.1", &v4.sin_addr);
    cd__throttle_key((struct sockaddr *)&v4, k1);
    assert_memory_equal(k1, want, 16);
    /* Two hosts of one /64 share a key; another /64 does not. */
    inet_pton(AF_INET6, "2001:db8:1:2::1", &v6a.sin6_addr);
    inet_pton(AF_INET6, "2001:db8:1:2:ffff::9", &v6b.sin6_addr);
    cd__throttle_key((struct sockaddr *)&v6a, k1);
    cd__throttle_key((struct sockaddr *)&v6b, k2);
    assert_memory_equal(k1, k2, 16);
    inet_pton(AF_INET6, "2001:db8:1:3::1", &v6b.sin6_addr);
    cd__throttle_key((struct sockaddr *)&v6b, k2);
    assert_memory_not_equal(k1, k2, 16);
    cd__throttle_key(NULL, k1);
    assert_memory_equal(k1, (uint8_t[16]){0}, 16);
}

struct seen {
    struct cd_csp_violation v[4];
    size_t n;
};

static void collect(const struct cd_csp_violation *v, void *ctx)
{
    struct seen *s = ctx;

    if (s->n < 4)
        s->v[s->n++] = *v;
}

static void csp_reports_keep_directives_and_origins_only(void **state)
{
    struct seen s = {0};
    static const char legacy[] =
        "{\"csp-report\":{\"document-uri\":\"https://c.example/console/?email=a%40b\","
        "\"violated-directive\":\"script-src 'self'\","
        "\"blocked-uri\":\"https://cdn.example:8443/x.js?who=a%40b\"}}";
    static const char list[] =
        "[{\"type\":\"csp-violation\",\"body\":{\"effectiveDirective\":\"style-src-attr\","
        "\"blockedURL\":\"inline\"}},{\"type\":\"deprecation\",\"body\":{}},"
        "{\"type\":\"csp-violation\",\"body\":{\"effectiveDirective\":\"bogus\","
        "\"blockedURL\":\"http://user:pw@evil.example/\"}},"
        "{\"type\":\"csp-violation\",\"body\":{\"effectiveDirective\":\"img-src\","
        "\"blockedURL\":\"data:image/png;base64,AAAA\"}}]";

    assert_int_equal(cd__http_csp_parse(legacy, strlen(legacy), true, collect, &s), CD_OK);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.v[0].directive, "script-src");
    assert_string_equal(s.v[0].blocked, "https://cdn.example:8443");
    s.n = 0;
    assert_int_equal(cd__http_csp_parse(list, strlen(list), false, collect, &s), CD_OK);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.v[0].directive, "style-src-attr");
    assert_string_equal(s.v[0].blocked, "inline");
    assert_null(s.v[1].directive);
    assert_string_equal(s.v[1].blocked, "other"); /* user information is never kept */
    assert_string_equal(s.v[2].blocked, "data");
    /* Malformed or misshapen: refused, and nothing handed on. */
    s.n = 0;
    assert_int_equal(cd__http_csp_parse("{", 1, true, collect, &s), CD_ERR_INVALID);
    assert_int_equal(cd__http_csp_parse(legacy, strlen(legacy), false, collect, &s),
                     CD_ERR_INVALID);
    assert_int_equal(cd__http_csp_parse(list, strlen(list), true, collect, &s), CD_ERR_INVALID);
    assert_int_equal(cd__http_csp_parse("[{\"type\":\"csp-violation\"},1]", 29, false, collect,
                                        &s),
                     CD_ERR_INVALID);
    assert_int_equal(s.n, 0);
}

int main(void)
{
    cd_json_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_route_is_documented),
        cmocka_unit_test(every_documented_operation_is_served),
        cmocka_unit_test(every_route_follows_the_purpose_rule),
        cmocka_unit_test(routing_captures_parameters),
        cmocka_unit_test(every_error_has_a_problem_type),
        cmocka_unit_test(every_problem_type_is_documented),
        cmocka_unit_test(name_lists_are_documented),
        cmocka_unit_test(every_edge_problem_is_complete),
        cmocka_unit_test(request_targets_are_checked_before_decoding),
        cmocka_unit_test(header_sets_are_checked),
        cmocka_unit_test(batch_items_are_checked_whole),
        cmocka_unit_test(batch_items_are_keyed_like_single_ingestions),
        cmocka_unit_test(batch_results_are_shaped_per_item),
        cmocka_unit_test(throttle_counts_per_address_in_a_window),
        cmocka_unit_test(throttle_table_stays_bounded),
        cmocka_unit_test(throttle_keys_of_addresses),
        cmocka_unit_test(csp_reports_keep_directives_and_origins_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
