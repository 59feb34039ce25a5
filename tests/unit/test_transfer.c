/* Unit tests for src/transfer's parsers: NDJSON records, CSV splitting, the column mapping and
 * the Zendesk ticket reader. The import and export themselves are tested through the CLI
 * (tests/e2e/test_transfer.py). */
#include "unit.h"
#include "transfer/transfer.h"

/* Parses line and expects it refused with a detail containing why. */
static void refused(const char *line, const char *why)
{
    struct cd_transfer_record rec;

    assert_int_equal(cd_transfer_record_parse(cd_str_c(line), &rec), CD_ERR_INVALID);
    if (strstr(cd_err_detail(), why) == NULL)
        fail_msg("%s: detail '%s' does not say '%s'", line, cd_err_detail(), why);
    cd_transfer_record_free(&rec);
}

static void records_are_parsed(void **state)
{
    struct cd_transfer_record rec;

    assert_int_equal(
        cd_transfer_record_parse(
            CD_STR("{\"type\":\"customer\",\"id\":\"c-1\",\"display_name\":\"Ada\","
                   "\"identities\":[{\"type\":\"email\",\"value\":\"Ada@Example.com\"}],"
                   "\"jurisdiction\":\"EU\",\"restricted\":true}\r"),
            &rec),
        CD_OK);
    assert_int_equal(rec.kind, CD_TRANSFER_CUSTOMER);
    assert_string_equal(rec.id, "c-1");
    assert_true(rec.restricted);
    /* The body is what core's create takes: the record's own members stay out. */
    assert_null(json_object_get(rec.body, "type"));
    assert_null(json_object_get(rec.body, "id"));
    assert_null(json_object_get(rec.body, "restricted"));
    assert_string_equal(json_string_value(json_object_get(rec.body, "display_name")), "Ada");
    assert_int_equal(json_array_size(json_object_get(rec.body, "identities")), 1);
    cd_transfer_record_free(&rec);

    assert_int_equal(
        cd_transfer_record_parse(
            CD_STR("{\"type\":\"interaction\",\"id\":\"i-1\",\"customer_id\":\"c-1\","
                   "\"channel\":\"email\",\"direction\":\"inbound\",\"occurred_at\":"
                   "\"2025-01-02T03:04:05Z\",\"body\":\"late\",\"metadata\":{\"k\":1}}"),
            &rec),
        CD_OK);
    assert_int_equal(rec.kind, CD_TRANSFER_INTERACTION);
    assert_string_equal(rec.customer, "c-1");
    assert_null(json_object_get(rec.body, "customer_id")); /* the importer maps it */
    assert_string_equal(json_string_value(json_object_get(rec.body, "body")), "late");
    cd_transfer_record_free(&rec);

    assert_int_equal(
        cd_transfer_record_parse(
            CD_STR("{\"type\":\"interaction\",\"id\":\"i-2\",\"identity\":{\"type\":\"phone\","
                   "\"value\":\"+44 7700 900123\"},\"channel\":\"sms\",\"direction\":"
                   "\"outbound\",\"occurred_at\":\"2025-01-02T03:04:05Z\",\"purpose\":"
                   "\"billing\"}"),
            &rec),
        CD_OK);
    assert_string_equal(rec.customer, "");
    assert_non_null(json_object_get(rec.body, "identity"));
    cd_transfer_record_free(&rec);
}

static void bad_records_are_named(void **state)
{
    char long_id[300];
    memset(long_id, 'x', sizeof long_id);
    long_id[sizeof long_id - 1] = '\0';
    char line[512];
    snprintf(line, sizeof line, "{\"type\":\"customer\",\"id\":\"%s\"}", long_id);

    refused("{\"type\":\"customer\",\"id\":\"c\"", "");                   /* truncated */
    refused("[1,2]", "");                                                 /* not an object */
    refused("{\"id\":\"c\"}", "type");                                    /* no type */
    refused("{\"type\":\"order\",\"id\":\"c\"}", "customer or interaction");
    refused("{\"type\":\"customer\"}", "id");
    refused("{\"type\":\"customer\",\"id\":7}", "id");
    refused("{\"type\":\"customer\",\"id\":\"\"}", "'id' must be a string of 1 to 200");
    refused(line, "'id' must be a string of 1 to 200");
    refused("{\"type\":\"customer\",\"id\":\"c\",\"vip\":true}", "vip");
    refused("{\"type\":\"customer\",\"id\":\"c\",\"display_name\":5}", "display_name");
    refused("{\"type\":\"customer\",\"id\":\"c\",\"attributes\":[]}", "attributes");
    refused("{\"type\":\"customer\",\"id\":\"c\",\"restricted\":\"yes\"}", "restricted");
    refused("{\"type\":\"customer\",\"id\":\"c\",\"identities\":[{\"type\":\"email\","
            "\"value\":\"not an address\"}]}",
            "identities[0]");
    refused("{\"type\":\"customer\",\"id\":\"c\",\"identities\":[3]}", "identities[0]");
    const char *base = "{\"type\":\"interaction\",\"id\":\"i\",\"customer_id\":\"c\","
                       "\"channel\":\"email\",\"direction\":\"inbound\",";
    char l[512];
    snprintf(l, sizeof l, "%s\"occurred_at\":\"yesterday\"}", base);
    refused(l, "occurred_at");
    snprintf(l, sizeof l, "%s\"occurred_at\":\"2025-01-02T03:04:05Z\",\"purpose\":\"gossip\"}",
             base);
    refused(l, "'purpose' is not a purpose");
    snprintf(l, sizeof l, "%s\"occurred_at\":\"2025-01-02T03:04:05Z\",\"body\":[]}", base);
    refused(l, "body");
    refused("{\"type\":\"interaction\",\"id\":\"i\",\"channel\":\"pigeon\",\"direction\":"
            "\"inbound\",\"customer_id\":\"c\",\"occurred_at\":\"2025-01-02T03:04:05Z\"}",
            "'channel' is not a channel");
    refused("{\"type\":\"interaction\",\"id\":\"i\",\"channel\":\"email\",\"direction\":"
            "\"sideways\",\"customer_id\":\"c\",\"occurred_at\":\"2025-01-02T03:04:05Z\"}",
            "direction");
    refused("{\"type\":\"interaction\",\"id\":\"i\",\"channel\":\"email\",\"direction\":"
            "\"inbound\",\"occurred_at\":\"2025-01-02T03:04:05Z\"}",
            "give one of 'customer_id' and 'identity'");
}

static json_t *split(const char *text, char delim)
{
    json_t *f = NULL;

    assert_int_equal(cd_transfer_csv_split(cd_str_c(text), delim, &f), CD_OK);
    return f;
}

static void csv_follows_rfc_4180(void **state)
{
    json_t *f = split("a,\"b,c\",\"say \"\"hi\"\"\",,\"line\nbreak\"\r", ',');
    assert_int_equal(json_array_size(f), 5);
    assert_string_equal(json_string_value(json_array_get(f, 1)), "b,c");
    assert_string_equal(json_string_value(json_array_get(f, 2)), "say \"hi\"");
    assert_string_equal(json_string_value(json_array_get(f, 3)), "");
    assert_string_equal(json_string_value(json_array_get(f, 4)), "line\nbreak");
    json_decref(f);
    f = split("x;y", ';');
    assert_int_equal(json_array_size(f), 2);
    json_decref(f);
    f = split("", ',');
    assert_int_equal(json_array_size(f), 1);
    json_decref(f);

    assert_true(cd_transfer_csv_complete(CD_STR("a,\"b\"\"c\",d")));
    assert_false(cd_transfer_csv_complete(CD_STR("a,\"b\nc")));
    static const char *const bad[] = {"a,\"b", "a,b\"c", "\"a\"b,c", "a,\xff", NULL};
    for (size_t i = 0; bad[i]; i++) {
        f = (json_t *)1;
        assert_int_equal(cd_transfer_csv_split(cd_str_c(bad[i]), ',', &f), CD_ERR_INVALID);
        assert_null(f);
    }
}

static struct cd_transfer_map *map(const char *text)
{
    struct cd_transfer_map *m = NULL;

    assert_int_equal(cd_transfer_map_parse(cd_str_c(text), &m), CD_OK);
    return m;
}

static void csv_rows_become_records(void **state)
{
    struct cd_transfer_map *m =
        map("{\"columns\": {\"Ticket\": \"id\", \"Email\": \"identity.value\", \"Sent\": "
            "\"occurred_at\", \"Text\": \"body\", \"Queue\": \"metadata.queue\"}, \"values\": "
            "{\"identity.type\": \"email\", \"channel\": \"email\", \"direction\": \"inbound\"}}");
    struct cd_transfer_record rec;
    json_t *header = split("Sent,Ticket,Ignored,Email,Text,Queue", ',');

    assert_int_equal(cd_transfer_map_header(m, header), CD_OK);
    json_t *row = split("2025-01-02T03:04:05Z,T-9,x,ada@example.com,\"Hello, there\",", ',');
    assert_int_equal(cd_transfer_map_row(m, row, &rec), CD_OK);
    assert_string_equal(rec.id, "T-9");
    assert_int_equal(rec.kind, CD_TRANSFER_INTERACTION);
    json_t *ident = json_object_get(rec.body, "identity");
    assert_string_equal(json_string_value(json_object_get(ident, "type")), "email");
    assert_string_equal(json_string_value(json_object_get(ident, "value")), "ada@example.com");
    assert_string_equal(json_string_value(json_object_get(rec.body, "body")), "Hello, there");
    assert_null(json_object_get(rec.body, "metadata")); /* an empty cell leaves it out */
    cd_transfer_record_free(&rec);
    json_decref(row);

    /* A row with another number of fields, or a bad time, is named. */
    row = split("2025-01-02T03:04:05Z,T-9", ',');
    assert_int_equal(cd_transfer_map_row(m, row, &rec), CD_ERR_INVALID);
    cd_transfer_record_free(&rec);
    json_decref(row);
    row = split("soon,T-9,x,ada@example.com,hi,q", ',');
    assert_int_equal(cd_transfer_map_row(m, row, &rec), CD_ERR_INVALID);
    assert_non_null(strstr(cd_err_detail(), "occurred_at"));
    cd_transfer_record_free(&rec);
    json_decref(row);
    json_decref(header);

    /* A header without a mapped column is refused. */
    header = split("Ticket,Email", ',');
    assert_int_equal(cd_transfer_map_header(m, header), CD_ERR_INVALID);
    assert_non_null(strstr(cd_err_detail(), "no column"));
    json_decref(header);
    cd_transfer_map_free(m);

    struct cd_transfer_map *x = NULL;
    static const char *const bad[] = {
        "{}",
        "{\"columns\": {\"A\": \"body\"}}",                    /* no id */
        "{\"columns\": {\"A\": \"id\", \"B\": \"colour\"}}",  /* unknown field */
        "{\"columns\": {\"A\": \"id\"}, \"delimiter\": \";;\"}",
        "{\"columns\": {\"A\": \"id\"}, \"values\": {\"id\": \"x\"}}",
        "{\"columns\": {\"A\": \"id\"}, \"extra\": 1}",
        "not json",
        NULL};
    for (size_t i = 0; bad[i]; i++) {
        assert_int_equal(cd_transfer_map_parse(cd_str_c(bad[i]), &x), CD_ERR_INVALID);
        assert_null(x);
    }
}

static void zendesk_tickets_become_interactions(void **state)
{
    json_t *t = json_loads(
        "{\"id\": 35436, \"subject\": \"Help, my printer is on fire!\", \"requester_id\": "
        "20978392, \"via\": {\"channel\": \"email\"}, \"comments\": ["
        "{\"id\": 1, \"author_id\": 20978392, \"public\": true, \"plain_body\": \"It burns\", "
        "\"created_at\": \"2025-01-02T03:04:05Z\"},"
        "{\"id\": 2, \"author_id\": 555, \"public\": false, \"plain_body\": \"internal\", "
        "\"created_at\": \"2025-01-02T04:04:05Z\"},"
        "{\"id\": 3, \"author_id\": 555, \"public\": true, \"body\": \"Unplug it\", "
        "\"created_at\": \"2025-01-02T05:04:05Z\", \"via\": {\"channel\": \"web\"}}]}",
        0, NULL);
    json_t *recs = NULL;
    struct cd_transfer_record rec;

    assert_int_equal(cd_transfer_zendesk_ticket(t, &recs), CD_OK);
    assert_int_equal(json_array_size(recs), 2); /* the private note is not an interaction */
    assert_int_equal(cd_transfer_record_from_json(json_array_get(recs, 0), &rec), CD_OK);
    assert_string_equal(rec.id, "zendesk:35436:1");
    assert_string_equal(json_string_value(json_object_get(rec.body, "direction")), "inbound");
    assert_string_equal(json_string_value(json_object_get(rec.body, "channel")), "email");
    assert_string_equal(json_string_value(json_object_get(rec.body, "thread_id")), "35436");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(rec.body, "identity"), "value")),
                        "20978392");
    cd_transfer_record_free(&rec);
    assert_int_equal(cd_transfer_record_from_json(json_array_get(recs, 1), &rec), CD_OK);
    assert_string_equal(json_string_value(json_object_get(rec.body, "direction")), "outbound");
    assert_string_equal(json_string_value(json_object_get(rec.body, "channel")), "chat");
    assert_string_equal(json_string_value(json_object_get(rec.body, "body")), "Unplug it");
    cd_transfer_record_free(&rec);
    json_decref(recs);

    json_object_del(t, "requester_id");
    assert_int_equal(cd_transfer_zendesk_ticket(t, &recs), CD_ERR_INVALID);
    assert_null(recs);
    json_decref(t);
}

/* Out of memory anywhere in a parse: a clean error, nothing leaked. */
static void parsers_fail_cleanly_out_of_memory(void **state)
{
    const char *line = "{\"type\":\"customer\",\"id\":\"c-1\",\"display_name\":\"Ada\","
                       "\"identities\":[{\"type\":\"email\",\"value\":\"a@example.com\"}]}";
    for (long k = 1;; k++) {
        struct cd_transfer_record rec;
        json_t *f = NULL;
        cd_alloc_fail_nth(k);
        enum cd_err a = cd_transfer_record_parse(cd_str_c(line), &rec);
        enum cd_err b = cd_transfer_csv_split(CD_STR("a,\"b,c\",d"), ',', &f);
        bool hit = cd_alloc_fault_hit();
        cd_alloc_fail_nth(0);
        cd_transfer_record_free(&rec);
        json_decref(f);
        if (!hit) {
            assert_int_equal(a, CD_OK);
            assert_int_equal(b, CD_OK);
            break;
        }
        assert_true(a == CD_OK || a == CD_ERR_NOMEM);
        assert_true(b == CD_OK || b == CD_ERR_NOMEM);
    }
}

int main(void)
{
    cd_json_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(records_are_parsed),
        cmocka_unit_test(bad_records_are_named),
        cmocka_unit_test(csv_follows_rfc_4180),
        cmocka_unit_test(csv_rows_become_records),
        cmocka_unit_test(zendesk_tickets_become_interactions),
        cmocka_unit_test(parsers_fail_cleanly_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
