/* Unit tests for src/core on a real SQLite file: identity normalisation, customers, ingestion,
 * timeline pagination, merges, sealing at rest, customers prepared before the write, and every
 * allocation failure on ingestion. */
#include <pthread.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>
#include "unit.h"
#include "gate.h"
#include "core/core.h"
#include "core/core_int.h"
#include "crypto/crypto.h"

static char path[256];
static struct cd_store *store;
static struct cd_core *core;
static const struct cd_actor actor = {"tok_test", "admin", "unit test", "req_test", "service",
                                      true, false};

static int setup(void **state)
{
    uint8_t master[32];

    snprintf(path, sizeof path, "/tmp/candor-test-core-%d.db", (int)getpid());
    unlink(path);
    cd_random_bytes(master, sizeof master);
    if (cd_store_open(path, &store) != CD_OK || cd_core_open(store, master, &core) != CD_OK)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    cd_core_close(core);
    cd_store_close(store);
    unit_db_remove(path);
    return 0;
}

static const char *norm(const char *type, const char *network, const char *value)
{
    static char out[512];
    struct cd_buf b = CD_BUF_INIT(500);
    enum cd_err err = cd_core_identity_normalize(cd_str_c(type), cd_str_c(network),
                                                 cd_str_c(value), &b);
    snprintf(out, sizeof out, "%s", err == CD_OK ? b.p : "!invalid");
    cd_buf_free(&b);
    return out;
}

static enum cd_err ingest(const char *text, json_t **out);

static void identities_normalise(void **state)
{
    assert_string_equal(norm("email", NULL, " Ana.Silva@Example.COM "), "ana.silva@example.com");
    assert_string_equal(norm("email", NULL, "no-at-sign"), "!invalid");
    assert_string_equal(norm("email", NULL, "a@@b.com"), "!invalid");
    assert_string_equal(norm("email", NULL, "a@localhost"), "!invalid");
    assert_string_equal(norm("email", NULL, "a b@example.com"), "!invalid");
    assert_string_equal(norm("phone", NULL, "+44 20 7946 0958"), "+442079460958");
    assert_string_equal(norm("phone", NULL, "0044 (20) 7946-0958"), "+442079460958");
    assert_string_equal(norm("phone", NULL, "020 7946 0958"), "!invalid"); /* no country code */
    assert_string_equal(norm("phone", NULL, "+999 1234 5678"), "!invalid"); /* unassigned */
    assert_string_equal(norm("phone", NULL, "+1 415 555 0100 ext 2"), "!invalid");
    assert_string_equal(norm("phone", NULL, "+1234567890123456"), "!invalid"); /* 16 digits */
    assert_string_equal(norm("social", "Instagram", "@Ana_S"), "instagram:ana_s");
    assert_string_equal(norm("social", "twitter", "@ana"), "x:ana");
    assert_string_equal(norm("social", "myspace", "@ana"), "!invalid");
    assert_string_equal(norm("social", NULL, "@ana"), "!invalid");
    assert_string_equal(norm("external", "shopify", "Cust-42"), "shopify:Cust-42");
    assert_string_equal(norm("fax", NULL, "123"), "!invalid");
    assert_string_equal(norm("email", NULL, "a\xff@example.com"), "!invalid");
    /* Unicode: NFKC, case folding, default-ignorable code points removed. */
    assert_string_equal(norm("email", NULL, "\xef\xbd\x81\xef\xbd\x8e\xef\xbd\x81@example.com"),
                        "ana@example.com"); /* fullwidth ａｎａ */
    assert_string_equal(norm("email", NULL, "an\xe2\x80\x8b" "a@example.com"),
                        "ana@example.com"); /* zero-width space */
    assert_string_equal(norm("email", NULL, "ana\xef\xbc\xa0" "example.com"),
                        "ana@example.com"); /* fullwidth @ */
    assert_string_equal(norm("email", NULL, "STRA\xc3\x9f" "E@example.com"),
                        "strasse@example.com"); /* ß folds to ss */
    assert_string_equal(norm("email", NULL, "jose\xcc\x81@example.com"),
                        "jos\xc3\xa9@example.com"); /* e + combining acute composes to é */
    assert_string_equal(norm("email", NULL, "\xd0\xb0na@example.com"),
                        "\xd0\xb0na@example.com"); /* a Cyrillic а stays: a look-alike */
    assert_string_equal(norm("phone", NULL, "\xef\xbc\x8b\xef\xbc\x94\xef\xbc\x94 20 7946 0958"),
                        "+442079460958"); /* fullwidth ＋４４ */
    assert_string_equal(norm("social", "instagram", "@An\xe2\x80\x8d" "a"), "instagram:ana");
    /* External ids keep their case (another system's keys), not their invisible characters. */
    assert_string_equal(norm("external", "shopify", "Cust\xc2\xad-42"), "shopify:Cust-42");
}

static void skeletons_find_lookalikes(void **state)
{
    uint8_t latin[CD_CRYPTO_HASH_LEN], cyrillic[CD_CRYPTO_HASH_LEN], other[CD_CRYPTO_HASH_LEN];
    uint8_t phone[CD_CRYPTO_HASH_LEN];
    bool beyond = true;

    assert_int_equal(cd__core_identity_skeleton(core, CD_STR("email"), CD_STR("ana@example.com"),
                                                latin, &beyond), CD_OK);
    assert_false(beyond);
    assert_int_equal(cd__core_identity_skeleton(core, CD_STR("email"),
                                                CD_STR("\xd0\xb0na@example.com"), cyrillic,
                                                &beyond), CD_OK);
    assert_true(beyond);
    assert_memory_equal(latin, cyrillic, sizeof latin);
    assert_int_equal(cd__core_identity_skeleton(core, CD_STR("email"), CD_STR("bob@example.com"),
                                                other, &beyond), CD_OK);
    assert_memory_not_equal(latin, other, sizeof latin);
    /* Kinds are separate domains: the same text as another kind has another skeleton hash. */
    assert_int_equal(cd__core_identity_skeleton(core, CD_STR("phone"), CD_STR("ana@example.com"),
                                                phone, &beyond), CD_OK);
    assert_memory_not_equal(latin, phone, sizeof latin);
}

static enum cd_err links_fn(struct cd_tx *tx, void *ctx)
{
    return cd_tx_int(tx, "SELECT count(*) FROM identity_links WHERE status = 'open'", NULL, 0,
                     ctx);
}

static void lookalikes_are_linked_merged_and_dismissed(void **state)
{
    json_t *a = NULL, *b = NULL, *c = NULL, *page = NULL, *link = NULL;
    int64_t open_links = 0;

    assert_int_equal(ingest("{\"identity\":{\"type\":\"email\",\"value\":\"ana@example.com\"},"
                            "\"channel\":\"email\",\"direction\":\"inbound\"}", &a), CD_OK);
    assert_int_equal(ingest("{\"identity\":{\"type\":\"email\",\"value\":"
                            "\"\xd0\xb0na@example.com\"},\"channel\":\"email\","
                            "\"direction\":\"inbound\"}", &b), CD_OK);
    assert_true(json_is_true(json_object_get(b, "customer_created")));
    /* Two ASCII spellings alike only in some fonts are not linked (rn / m). */
    assert_int_equal(ingest("{\"identity\":{\"type\":\"email\",\"value\":\"arna@example.com\"},"
                            "\"channel\":\"email\",\"direction\":\"inbound\"}", &c), CD_OK);
    assert_int_equal(cd_store_read(store, links_fn, &open_links), CD_OK);
    assert_int_equal(open_links, 1);
    assert_int_equal(cd_core_duplicates_list(core, &actor, CD_STR_NULL, CD_STR_NULL, 10,
                                             CD_FIELDS_ALL, &page), CD_OK);
    link = json_array_get(json_object_get(page, "items"), 0);
    assert_string_equal(json_string_value(json_object_get(link, "customer_id")),
                        json_string_value(json_object_get(b, "customer_id")));
    assert_string_equal(json_string_value(json_object_get(link, "other_customer_id")),
                        json_string_value(json_object_get(a, "customer_id")));
    json_t *names = json_object_get(json_array_get(json_object_get(link, "identities"), 0),
                                    "unusual_characters");
    assert_string_equal(json_string_value(json_array_get(names, 0)),
                        "U+0430 CYRILLIC SMALL LETTER A");
    /* Without contact data in the purpose: the link, not the identities. */
    json_t *bare = NULL;
    assert_int_equal(cd_core_duplicates_list(core, &actor, CD_STR("open"), CD_STR_NULL, 10,
                                             CD_FIELDS_REFERENCE, &bare), CD_OK);
    assert_null(json_object_get(json_array_get(json_object_get(bare, "items"), 0), "identities"));
    json_decref(bare);
    const char *lid = json_string_value(json_object_get(link, "id"));
    json_t *done = NULL;
    assert_int_equal(cd_core_duplicate_dismiss(core, &actor, cd_str_c(lid), &done), CD_OK);
    assert_string_equal(json_string_value(json_object_get(done, "status")), "dismissed");
    json_decref(done);
    assert_int_equal(cd_core_duplicate_dismiss(core, &actor, cd_str_c(lid), &done),
                     CD_ERR_CONFLICT);
    assert_int_equal(cd_core_duplicate_merge(core, &actor, cd_str_c(lid), CD_STR_NULL, &done),
                     CD_ERR_CONFLICT);
    assert_int_equal(cd_core_duplicate_dismiss(core, &actor, CD_STR("dup_x"), &done),
                     CD_ERR_NOT_FOUND);
    /* A second look-alike, merged through its link; the merge closes it. */
    json_t *d = NULL, *page2 = NULL;
    assert_int_equal(ingest("{\"identity\":{\"type\":\"email\",\"value\":"
                            "\"an\xd0\xb0@example.com\"},\"channel\":\"email\","
                            "\"direction\":\"inbound\"}", &d), CD_OK);
    assert_int_equal(cd_core_duplicates_list(core, &actor, CD_STR("open"), CD_STR_NULL, 10,
                                             CD_FIELDS_REFERENCE, &page2), CD_OK);
    assert_true(json_array_size(json_object_get(page2, "items")) >= 1);
    json_t *l2 = json_array_get(json_object_get(page2, "items"), 0);
    assert_int_equal(cd_core_duplicate_merge(core, &actor,
                                             cd_str_c(json_string_value(json_object_get(l2, "id"))),
                                             CD_STR("cus_not_one_of_them"), &done),
                     CD_ERR_INVALID);
    assert_int_equal(cd_core_duplicate_merge(core, &actor,
                                             cd_str_c(json_string_value(json_object_get(l2, "id"))),
                                             CD_STR_NULL, &done), CD_OK);
    assert_string_equal(json_string_value(json_object_get(done, "status")), "merged");
    json_decref(done);
    json_decref(page2);
    json_decref(d);
    json_decref(page);
    json_decref(a);
    json_decref(b);
    json_decref(c);
}

static enum cd_err thread_cols_fn(struct cd_tx *tx, void *ctx)
{
    return cd_tx_int(tx, "SELECT count(*) FROM interactions WHERE thread IS NOT NULL OR"
                         " thread_hash IS NOT NULL OR thread_id IS NOT NULL",
                     NULL, 0, ctx);
}

static void occurred_at_is_bounded(void **state)
{
    json_t *x = NULL;

    assert_int_equal(ingest("{\"identity\":{\"type\":\"email\",\"value\":\"t@example.com\"},"
                            "\"channel\":\"email\",\"direction\":\"inbound\","
                            "\"occurred_at\":\"9999-12-31T23:59:59Z\"}", &x), CD_ERR_INVALID);
    assert_int_equal(ingest("{\"identity\":{\"type\":\"email\",\"value\":\"t@example.com\"},"
                            "\"channel\":\"email\",\"direction\":\"inbound\","
                            "\"occurred_at\":\"1969-07-20T20:17:00Z\"}", &x), CD_ERR_INVALID);
    cd_core_set_future_skew(core, 0);
    char q[300], ts[CD_TIME_STRLEN];
    cd_time_format(cd_now_ms() + 5000, ts);
    snprintf(q, sizeof q, "{\"identity\":{\"type\":\"email\",\"value\":\"t@example.com\"},"
             "\"channel\":\"email\",\"direction\":\"inbound\",\"occurred_at\":\"%s\"}", ts);
    assert_int_equal(ingest(q, &x), CD_ERR_INVALID);
    cd_core_set_future_skew(core, CD_CORE_FUTURE_SKEW_DEFAULT_MS);
    assert_int_equal(ingest(q, &x), CD_OK);
    json_decref(x);
}

static json_t *parse(const char *text)
{
    json_t *o = NULL;
    assert_int_equal(cd_json_parse_object(text, strlen(text), &o), CD_OK);
    return o;
}

/* A JSON answer a core call wrote as text, parsed back for the assertions. */
static json_t *parsed(struct cd_buf *b)
{
    json_t *v = json_loadb(b->p, b->len, 0, NULL);

    assert_non_null(v);
    cd_buf_free(b);
    return v;
}

static enum cd_err ingest(const char *text, json_t **out)
{
    json_t *body = parse(text), *findings = NULL;
    struct cd_buf answer = CD_BUF_INIT(CD_CORE_ANSWER_MAX);
    bool replayed = false;
    enum cd_err err = cd_core_interaction_ingest(core, &actor, body, NULL, CD_FIELDS_ALL,
                                                 &answer, &findings, &replayed);
    json_decref(body);
    if (err == CD_OK)
        *out = parsed(&answer);
    else
        *out = findings;
    cd_buf_free(&answer);
    return err;
}

static enum cd_err timeline(struct cd_str id, const struct cd_timeline_query *q, json_t **out)
{
    struct cd_buf page = CD_BUF_INIT(CD_CORE_ANSWER_MAX);
    enum cd_err err = cd_core_timeline(core, &actor, id, q, CD_FIELDS_ALL, &page);

    if (err == CD_OK)
        *out = parsed(&page);
    cd_buf_free(&page);
    return err;
}

/* An ingestion's completion: kept in the gate for the test to finish. */
static void ingest_done(void *ctx, struct cd_core_ingest *op)
{
    struct gate *g = ctx;
    pthread_mutex_lock(&g->mu);
    g->ops[g->ops[0] ? 1 : 0] = op;
    g->done++;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* Changes a row, then fails: the store rolls the whole batch back and runs it again. */
static enum cd_err fail_after_change(struct cd_tx *tx, void *ctx)
{
    enum cd_err err = cd_tx_exec(tx, "INSERT INTO merges(merged_id, survivor_id, merged_at, actor)"
                                     " VALUES('cus_x', 'cus_y', 0, 'unit')",
                                 NULL, 0, NULL, NULL, NULL);
    (void)ctx;
    return err != CD_OK ? err : cd_err_set(CD_ERR_CONFLICT, "refused after a change");
}

/* Two first messages from one new address, both prepared (a customer made and the fields
 * sealed for it) before either is written, then written in one batch that is rolled back and
 * run again: one customer results, the second message sealed again under the first one's key,
 * and both read back. */
static void first_messages_of_a_new_identity(void **state)
{
    struct gate g = GATE_INIT;
    json_t *b1 = parse("{\"identity\":{\"type\":\"email\",\"value\":\"new@example.com\"},"
                       "\"channel\":\"email\",\"direction\":\"inbound\",\"body\":\"one\","
                       "\"occurred_at\":\"2026-01-01T10:00:00Z\"}");
    json_t *b2 = parse("{\"identity\":{\"type\":\"email\",\"value\":\"New@Example.com\"},"
                       "\"channel\":\"email\",\"direction\":\"inbound\",\"body\":\"two\","
                       "\"occurred_at\":\"2026-01-02T10:00:00Z\"}");
    json_t *o1 = NULL, *o2 = NULL, *tl = NULL, *f1 = NULL, *f2 = NULL;
    struct cd_buf a1 = CD_BUF_INIT(CD_CORE_ANSWER_MAX), a2 = CD_BUF_INIT(CD_CORE_ANSWER_MAX);
    bool r1 = false, r2 = false;
    char id1[CD_ID_MAX], id2[CD_ID_MAX];

    gate_close(store, &g);
    assert_int_equal(cd_core_interaction_ingest_start(core, &actor, b1, NULL, CD_FIELDS_ALL,
                                                      ingest_done, &g, &f1), CD_OK);
    assert_int_equal(cd_core_interaction_ingest_start(core, &actor, b2, NULL, CD_FIELDS_ALL,
                                                      ingest_done, &g, &f2), CD_OK);
    assert_int_equal(cd_store_write_async(store, fail_after_change, NULL, gate_done, &g), CD_OK);
    gate_open_and_wait(&g, 4);
    assert_int_equal(cd_core_interaction_ingest_finish(g.ops[0], &a1, &r1, id1), CD_OK);
    assert_int_equal(cd_core_interaction_ingest_finish(g.ops[1], &a2, &r2, id2), CD_OK);
    o1 = parsed(&a1);
    o2 = parsed(&a2);
    const char *c1 = json_string_value(json_object_get(o1, "customer_id"));
    const char *c2 = json_string_value(json_object_get(o2, "customer_id"));
    assert_string_equal(c1, c2);
    assert_true(json_is_true(json_object_get(o1, "customer_created")) !=
                json_is_true(json_object_get(o2, "customer_created")));

    struct cd_timeline_query tq = {CD_STR_NULL, 10, CD_STR_NULL, CD_STR_NULL, CD_STR_NULL};
    assert_int_equal(timeline(cd_str_c(c1), &tq, &tl), CD_OK);
    json_t *items = json_object_get(tl, "items");
    assert_int_equal(json_array_size(items), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(items, 0), "body")),
                        "two");
    assert_string_equal(json_string_value(json_object_get(json_array_get(items, 1), "body")),
                        "one");
    json_t *found = NULL;
    assert_int_equal(cd_core_customer_find(core, &actor, CD_STR("email"), CD_STR_NULL,
                                           CD_STR("new@example.com"), CD_FIELDS_ALL, &found),
                     CD_OK);
    assert_string_equal(json_string_value(json_object_get(found, "id")), c1);
    json_decref(found);
    /* Both interaction.ingest events name that customer: the event the second message had
     * prepared for the customer it did not get was built again in the write. */
    json_t *evs = NULL;
    struct cd_audit_query aq = {cd_str_c(c1), CD_STR("interaction.ingest"), CD_STR_NULL,
                                CD_STR_NULL, 0, 0, 10};
    assert_int_equal(cd_audit_list(store, &aq, &evs), CD_OK);
    assert_int_equal(json_array_size(json_object_get(evs, "items")), 2);
    json_decref(evs);
    uint64_t checked = 0, bad = 0;
    assert_int_equal(cd_audit_verify(store, &checked, &bad, NULL), CD_OK);
    json_decref(tl);
    json_decref(o1);
    json_decref(o2);
    json_decref(b1);
    json_decref(b2);
}

/* Moves every identity of customer ctx[1] to customer ctx[0], as a merge does. */
static enum cd_err move_identities(struct cd_tx *tx, void *ctx)
{
    const char *const *ids = ctx;
    struct cd_val p[] = {CD_VCSTR(ids[0]), CD_VCSTR(ids[1])};

    return cd_tx_exec(tx, "UPDATE identities SET customer_id = $1 WHERE customer_id = $2", p, 2,
                      NULL, NULL, NULL);
}

/* A message sealed before the write for the owner the owner cache names, whose identity moves
 * to another customer before the write runs: the write sees the new owner, seals again under
 * its key (the key of the old one is not taken on trust), and the event names the new owner. */
static void identity_moved_between_sealing_and_write(void **state)
{
    struct gate g = GATE_INIT;
    json_t *x = NULL, *o = NULL, *tl = NULL, *evs = NULL, *f = NULL;
    char ida[CD_ID_MAX], idb[CD_ID_MAX], id[CD_ID_MAX];
    struct cd_buf answer = CD_BUF_INIT(CD_CORE_ANSWER_MAX);
    bool replayed = false;
    (void)state;

    assert_int_equal(ingest("{\"identity\":{\"type\":\"email\",\"value\":\"a@example.com\"},"
                            "\"channel\":\"email\",\"direction\":\"inbound\",\"body\":\"a\"}",
                            &x), CD_OK);
    snprintf(ida, sizeof ida, "%s", json_string_value(json_object_get(x, "customer_id")));
    json_decref(x);
    assert_int_equal(ingest("{\"identity\":{\"type\":\"email\",\"value\":\"b@example.com\"},"
                            "\"channel\":\"email\",\"direction\":\"inbound\",\"body\":\"b\"}",
                            &x), CD_OK);
    snprintf(idb, sizeof idb, "%s", json_string_value(json_object_get(x, "customer_id")));
    json_decref(x);

    const char *ids[] = {ida, idb};
    json_t *body = parse("{\"identity\":{\"type\":\"email\",\"value\":\"b@example.com\"},"
                         "\"channel\":\"email\",\"direction\":\"inbound\","
                         "\"body\":\"after the move\"}");
    gate_close(store, &g);
    assert_int_equal(cd_store_write_async(store, move_identities, ids, gate_done, &g), CD_OK);
    assert_int_equal(cd_core_interaction_ingest_start(core, &actor, body, NULL, CD_FIELDS_ALL,
                                                      ingest_done, &g, &f), CD_OK);
    gate_open_and_wait(&g, 3);
    assert_int_equal(cd_core_interaction_ingest_finish(g.ops[0], &answer, &replayed, id), CD_OK);
    o = parsed(&answer);
    assert_string_equal(json_string_value(json_object_get(o, "customer_id")), ida);

    /* Sealed under a's key: it opens on a's timeline. */
    struct cd_timeline_query tq = {CD_STR_NULL, 10, CD_STR_NULL, CD_STR_NULL, CD_STR_NULL};
    assert_int_equal(timeline(cd_str_c(ida), &tq, &tl), CD_OK);
    json_t *newest = json_array_get(json_object_get(tl, "items"), 0);
    assert_string_equal(json_string_value(json_object_get(newest, "body")), "after the move");
    struct cd_audit_query aq = {cd_str_c(ida), CD_STR("interaction.ingest"), CD_STR_NULL,
                                CD_STR_NULL, 0, 0, 10};
    assert_int_equal(cd_audit_list(store, &aq, &evs), CD_OK);
    assert_int_equal(json_array_size(json_object_get(evs, "items")), 2);
    json_decref(evs);
    json_decref(tl);
    json_decref(o);
    json_decref(body);
}

static void customers_and_conflicts(void **state)
{
    json_t *body = parse("{\"display_name\":\"Ana\",\"attributes\":{\"tier\":\"plus\"},"
                         "\"identities\":[{\"type\":\"email\",\"value\":\"Ana@Example.com\"}]}");
    json_t *c = NULL, *again = NULL, *found = NULL;
    bool replayed = false;

    assert_int_equal(cd_core_customer_create(core, &actor, body, NULL, CD_FIELDS_ALL, &c,
                                             &replayed), CD_OK);
    const char *id = json_string_value(json_object_get(c, "id"));
    assert_string_equal(json_string_value(json_object_get(c, "display_name")), "Ana");
    /* The same identity on a second customer is a conflict. */
    assert_int_equal(cd_core_customer_create(core, &actor, body, NULL, CD_FIELDS_ALL, &again,
                                             &replayed), CD_ERR_CONFLICT);
    assert_int_equal(cd_core_customer_find(core, &actor, CD_STR("email"), CD_STR_NULL,
                                           CD_STR("ANA@example.com"), CD_FIELDS_REFERENCE,
                                           &found), CD_OK);
    assert_string_equal(json_string_value(json_object_get(found, "id")), id);
    assert_null(json_object_get(found, "display_name")); /* trimmed to the reference category */
    json_decref(found);
    json_decref(c);
    json_decref(body);
}

static enum cd_err count_events(struct cd_tx *tx, void *ctx)
{
    const char **q = ctx; /* action, outcome, customer; the count goes to q[3] as int64_t * */
    struct cd_val p[3] = {CD_VCSTR(q[0]), CD_VCSTR(q[1]), CD_VCSTR(q[2])};
    return cd_tx_int(tx, "SELECT count(*) FROM audit_events WHERE action = $1 AND "
                         "json_extract(entry, '$.outcome') = $2 AND customer_id = $3",
                     p, 3, (int64_t *)(void *)q[3]);
}

static int64_t events(const char *action, const char *outcome, const char *customer)
{
    int64_t n = -1;
    const char *q[4] = {action, outcome, customer, (const char *)(void *)&n};
    assert_int_equal(cd_store_read(store, count_events, q), CD_OK);
    return n;
}

static const char *changed_last;

static void note_change(void *ctx, const char *customer_id)
{
    static char last[CD_ID_MAX];
    snprintf(last, sizeof last, "%s", customer_id);
    changed_last = last;
}

/* The answer of a write is a read under the actor's purpose: recorded as one; refused by a
 * restriction, it keeps the reference fields while the write stands; the reference fields alone
 * record nothing. Capabilities hear of the change before it is answered. Answers core does not
 * build pass the read gate, which resolves a merged id. */
static void write_answers_are_reads(void **state)
{
    json_t *body = parse("{\"display_name\":\"Bea\",\"identities\":[{\"type\":\"email\","
                         "\"value\":\"bea@example.com\"}]}");
    json_t *c = NULL, *u = NULL, *patch = parse("{\"locale\":\"de-DE\"}");
    struct cd_actor agent = {"tok_agent", "agent", "Agnes", "req_a", "service", false, false};
    struct cd_core_hooks hooks = {.customer_changed = note_change};
    char resolved[CD_ID_MAX];
    bool replayed = false;

    cd_core_set_hooks(core, &hooks);
    assert_int_equal(cd_core_customer_create(core, &actor, body, NULL, CD_FIELDS_REFERENCE, &c,
                                             &replayed), CD_OK);
    const char *id = json_string_value(json_object_get(c, "id"));
    assert_null(json_object_get(c, "display_name")); /* nothing personal without a purpose */
    assert_int_equal(events("customer.read", "ok", id), 0);
    assert_int_equal(cd_core_customer_update(core, &agent, cd_str_c(id), patch, CD_FIELDS_ALL,
                                             &u), CD_OK);
    assert_string_equal(json_string_value(json_object_get(u, "display_name")), "Bea");
    assert_int_equal(events("customer.read", "ok", id), 1);
    assert_string_equal(changed_last, id);
    json_decref(u);
    assert_int_equal(cd_core_customer_restrict(core, &actor, cd_str_c(id), true,
                                               CD_FIELDS_REFERENCE, &u), CD_OK);
    json_decref(u);
    /* Restricted: the agent's purpose may not read; the change stands, the refusal is kept. */
    assert_int_equal(cd_core_customer_update(core, &agent, cd_str_c(id), patch, CD_FIELDS_ALL,
                                             &u), CD_OK);
    assert_true(json_is_true(json_object_get(u, "restricted")));
    assert_null(json_object_get(u, "display_name"));
    assert_null(json_object_get(u, "locale"));
    assert_int_equal(events("customer.read", "denied", id), 1);
    json_decref(u);
    assert_int_equal(cd_core_customer_read_gate(core, &agent, cd_str_c(id), "consent.read",
                                                "consent", resolved),
                     CD_ERR_PURPOSE_DENIED);
    assert_int_equal(cd_core_customer_read_gate(core, &actor, cd_str_c(id), "consent.read",
                                                "consent", resolved),
                     CD_OK);
    assert_string_equal(resolved, id);
    assert_int_equal(events("consent.read", "ok", id), 1);
    /* Merging a restricted customer restricts the survivor; the merged id resolves to it. */
    json_t *s = NULL, *m = NULL, *empty = parse("{}");
    assert_int_equal(cd_core_customer_create(core, &actor, empty, NULL, CD_FIELDS_REFERENCE, &s,
                                             &replayed), CD_OK);
    const char *sid = json_string_value(json_object_get(s, "id"));
    assert_int_equal(cd_core_customer_merge(core, &actor, cd_str_c(sid), cd_str_c(id),
                                            CD_FIELDS_ALL, &m), CD_OK);
    assert_true(json_is_true(json_object_get(m, "restricted")));
    assert_string_equal(changed_last, sid); /* both ids were told, the survivor last */
    assert_int_equal(cd_core_customer_read_gate(core, &actor, cd_str_c(id), "consent.read",
                                                "consent", resolved),
                     CD_OK);
    assert_string_equal(resolved, sid);
    json_decref(m);
    json_decref(s);
    json_decref(empty);
    json_decref(c);
    json_decref(patch);
    json_decref(body);
}

/* Ingestion echoes only under a purpose that may see the conversation, and says so in its own
 * ledger entry; an interaction names its customer for the record of a refused attempt. */
static void ingestion_echo_follows_the_purpose(void **state)
{
    json_t *body = parse("{\"identity\":{\"type\":\"email\",\"value\":\"echo@example.com\"},"
                         "\"channel\":\"chat\",\"direction\":\"inbound\",\"body\":\"hi there\"}");
    json_t *findings = NULL, *it;
    struct cd_buf answer = CD_BUF_INIT(CD_CORE_ANSWER_MAX);
    char owner[CD_ID_MAX];
    bool replayed = false;

    assert_int_equal(cd_core_interaction_ingest(core, &actor, body, NULL, CD_FIELDS_REFERENCE,
                                                &answer, &findings, &replayed), CD_OK);
    it = parsed(&answer);
    assert_null(json_object_get(it, "body"));
    const char *cid = json_string_value(json_object_get(it, "customer_id"));
    assert_int_equal(cd_core_interaction_customer(core, cd_str_c(json_string_value(
                                                            json_object_get(it, "id"))),
                                                  owner),
                     CD_OK);
    assert_string_equal(owner, cid);
    assert_int_equal(cd_core_interaction_customer(core, CD_STR("int_x"), owner),
                     CD_ERR_NOT_FOUND);
    answer = CD_BUF_INIT(CD_CORE_ANSWER_MAX);
    assert_int_equal(cd_core_interaction_ingest(core, &actor, body, NULL, CD_FIELDS_ALL, &answer,
                                                &findings, &replayed), CD_OK);
    json_t *it2 = parsed(&answer);
    assert_string_equal(json_string_value(json_object_get(it2, "body")), "hi there");
    int64_t n = -1;
    const char *q[4] = {"interaction.ingest", "ok", cid, (const char *)(void *)&n};
    assert_int_equal(cd_store_read(store, count_events, q), CD_OK);
    assert_int_equal(n, 2);
    assert_int_equal(events("interaction.read", "ok", cid), 0); /* no second entry */
    json_decref(it2);
    json_decref(it);
    json_decref(body);
}

static void ingestion_timeline_and_merge(void **state)
{
    json_t *a = NULL, *b = NULL, *tl = NULL, *m = NULL;
    char ida[CD_ID_MAX], idb[CD_ID_MAX], q[512];

    assert_int_equal(ingest("{\"identity\":{\"type\":\"phone\",\"value\":\"+33 6 12 34 56 78\"},"
                            "\"channel\":\"sms\",\"direction\":\"inbound\",\"body\":\"first\","
                            "\"occurred_at\":\"2026-01-01T10:00:00Z\"}", &a), CD_OK);
    assert_true(json_is_true(json_object_get(a, "customer_created")));
    snprintf(ida, sizeof ida, "%s", json_string_value(json_object_get(a, "customer_id")));
    for (int i = 0; i < 7; i++) {
        json_t *x = NULL;
        snprintf(q, sizeof q, "{\"customer_id\":\"%s\",\"channel\":\"%s\",\"direction\":"
                 "\"outbound\",\"body\":\"reply %d\",\"occurred_at\":\"2026-01-0%dT10:00:00Z\"}",
                 ida, i % 2 ? "email" : "chat", i, i + 2);
        assert_int_equal(ingest(q, &x), CD_OK);
        json_decref(x);
    }
    /* Walk the timeline two at a time: newest first, everything exactly once. */
    struct cd_timeline_query tq = {CD_STR_NULL, 2, CD_STR_NULL, CD_STR_NULL, CD_STR_NULL};
    char cursor[200] = "";
    int seen = 0;
    int64_t last = INT64_MAX;
    do {
        tq.cursor = cd_str_c(cursor);
        assert_int_equal(timeline(cd_str_c(ida), &tq, &tl),
                         CD_OK);
        size_t i;
        json_t *it;
        json_array_foreach(json_object_get(tl, "items"), i, it)
        {
            int64_t t = 0;
            assert_int_equal(cd_time_parse(cd_str_c(json_string_value(
                                               json_object_get(it, "occurred_at"))), &t), CD_OK);
            assert_true(t <= last);
            last = t;
            seen++;
        }
        json_t *next = json_object_get(tl, "next_cursor");
        snprintf(cursor, sizeof cursor, "%s", json_is_string(next) ? json_string_value(next) : "");
        json_decref(tl);
    } while (cursor[0]);
    assert_int_equal(seen, 8);
    tq.cursor = CD_STR("bm90LWEtY3Vyc29y");
    assert_int_equal(timeline(cd_str_c(ida), &tq, &tl),
                     CD_ERR_INVALID);

    /* A second customer merged into the first: identities and interactions move. */
    assert_int_equal(ingest("{\"identity\":{\"type\":\"email\",\"value\":\"b@example.org\"},"
                            "\"channel\":\"email\",\"direction\":\"inbound\",\"body\":\"from b\"}",
                            &b), CD_OK);
    snprintf(idb, sizeof idb, "%s", json_string_value(json_object_get(b, "customer_id")));
    assert_int_equal(cd_core_customer_merge(core, &actor, cd_str_c(ida), cd_str_c(idb),
                                            CD_FIELDS_ALL, &m), CD_OK);
    assert_int_equal(json_array_size(json_object_get(m, "identities")), 2);
    json_decref(m);
    assert_int_equal(cd_core_customer_get(core, &actor, cd_str_c(idb), CD_FIELDS_ALL, &m), CD_OK);
    assert_string_equal(json_string_value(json_object_get(m, "merged_into")), ida);
    json_decref(m);
    tq.cursor = CD_STR_NULL;
    tq.limit = 50;
    assert_int_equal(timeline(cd_str_c(idb), &tq, &tl),
                     CD_OK);
    assert_string_equal(json_string_value(json_object_get(tl, "customer_id")), ida);
    assert_int_equal(json_array_size(json_object_get(tl, "items")), 9);
    /* Re-sealed under the survivor's key: the moved body still opens. */
    int found = 0;
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(tl, "items"), i, it)
        found += strcmp(json_string_value(json_object_get(it, "body")), "from b") == 0;
    assert_int_equal(found, 1);
    json_decref(tl);
    assert_int_equal(cd_core_customer_merge(core, &actor, cd_str_c(ida), cd_str_c(idb),
                                            CD_FIELDS_ALL, &m), CD_ERR_CONFLICT);
    assert_int_equal(cd_core_customer_merge(core, &actor, cd_str_c(ida), cd_str_c(ida),
                                            CD_FIELDS_ALL, &m), CD_ERR_INVALID);
    /* The moved rows are bound to their survivor: every sealed value opens under its row. */
    struct cd_core_rows_report rep;
    assert_int_equal(cd_core_verify_rows(core, &rep, NULL), CD_OK);
    assert_int_equal(rep.interactions, 9);
    assert_int_equal(rep.fields, 9);
    assert_int_equal(rep.identities, 2);
    json_decref(a);
    json_decref(b);
}

static bool file_contains(const char *file, const char *needle)
{
    FILE *f = fopen(file, "rb");
    static char buf[1 << 22];
    size_t n;
    bool hit = false;

    if (f == NULL)
        return false;
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    hit = memmem(buf, n, needle, strlen(needle)) != NULL;
    return hit;
}

static void personal_data_is_sealed_at_rest(void **state)
{
    json_t *x = NULL;
    char wal[300];

    json_t *body = parse("{\"identity\":{\"type\":\"email\",\"value\":"
                         "\"zebra.unique.person@example.net\"},\"channel\":\"email\","
                         "\"direction\":\"inbound\",\"subject\":\"Quokka subject line\","
                         "\"thread_id\":\"thread-of-wombat.person@example.net\","
                         "\"body\":\"my secret phrase is marmalade-otter-77\"}");
    struct cd_idem idem = {"tok_test POST /v1/interactions",
                           CD_STR("key-of-numbat.person@example.net"), {1}};
    struct cd_buf answer = CD_BUF_INIT(CD_CORE_ANSWER_MAX);
    bool replayed = true;
    assert_int_equal(cd_core_interaction_ingest(core, &actor, body, &idem, CD_FIELDS_ALL, &answer,
                                                &x, &replayed), CD_OK);
    assert_false(replayed);
    x = parsed(&answer);
    assert_string_equal(json_string_value(json_object_get(x, "thread_id")),
                        "thread-of-wombat.person@example.net");
    json_decref(x);
    answer = CD_BUF_INIT(CD_CORE_ANSWER_MAX);
    assert_int_equal(cd_core_interaction_ingest(core, &actor, body, &idem, CD_FIELDS_ALL, &answer,
                                                &x, &replayed), CD_OK);
    assert_true(replayed); /* found again by the key's hash */
    x = parsed(&answer);
    assert_string_equal(json_string_value(json_object_get(x, "thread_id")),
                        "thread-of-wombat.person@example.net");
    json_decref(x);
    json_decref(body);
    snprintf(wal, sizeof wal, "%s-wal", path);
    const char *needles[] = {"zebra.unique.person", "Quokka subject", "marmalade-otter-77",
                             "wombat.person", "numbat.person"};
    for (int i = 0; i < 5; i++) {
        assert_false(file_contains(path, needles[i]));
        assert_false(file_contains(wal, needles[i]));
    }
}

static enum cd_err count_fn(struct cd_tx *tx, void *ctx)
{
    return cd_tx_int(tx, "SELECT count(*) FROM interactions", NULL, 0, ctx);
}

static void ingestion_survives_every_allocation_failure(void **state)
{
    int64_t before = 0, after = 0;
    int ok = 0;

    assert_int_equal(cd_store_read(store, count_fn, &before), CD_OK);
    for (long n = 1; n < 400; n++) {
        json_t *findings = NULL, *body = parse("{\"identity\":{\"type\":\"email\",\"value\":"
                                               "\"torture@example.com\"},\"channel\":\"chat\","
                                               "\"direction\":\"inbound\",\"body\":\"x\","
                                               "\"metadata\":{\"a\":1}}");
        struct cd_buf answer = CD_BUF_INIT(CD_CORE_ANSWER_MAX);
        bool replayed = false;
        cd_alloc_fail_nth(n);
        enum cd_err err = cd_core_interaction_ingest(core, &actor, body, NULL, CD_FIELDS_ALL,
                                                     &answer, &findings, &replayed);
        bool hit = cd_alloc_fault_hit();
        cd_alloc_fail_nth(0);
        json_decref(findings);
        cd_buf_free(&answer);
        json_decref(body);
        if (err == CD_OK)
            ok++;
        else
            assert_int_equal(err, CD_ERR_NOMEM);
        if (!hit)
            break;
    }
    assert_int_equal(cd_store_read(store, count_fn, &after), CD_OK);
    /* A failure after the commit (building the answer) leaves a complete interaction, which is
     * why clients retry with an Idempotency-Key; a failure before it leaves nothing. */
    assert_true(after - before >= ok);
    assert_true(ok >= 1);
    json_t *found = NULL, *tl = NULL;
    assert_int_equal(cd_core_customer_find(core, &actor, CD_STR("email"), CD_STR_NULL,
                                           CD_STR("torture@example.com"), CD_FIELDS_ALL, &found),
                     CD_OK);
    struct cd_timeline_query tq = {CD_STR_NULL, 200, CD_STR_NULL, CD_STR_NULL, CD_STR_NULL};
    assert_int_equal(
        timeline(cd_str_c(json_string_value(json_object_get(found, "id"))), &tq, &tl), CD_OK);
    assert_int_equal((int64_t)json_array_size(json_object_get(tl, "items")), after - before);
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(tl, "items"), i, it)
    {
        assert_string_equal(json_string_value(json_object_get(it, "body")), "x");
        assert_int_equal(json_integer_value(json_object_get(json_object_get(it, "metadata"), "a")),
                         1);
    }
    json_decref(tl);
    json_decref(found);
}

static size_t read_file(const char *file, char **out)
{
    FILE *f = fopen(file, "rb");
    static char buf[1 << 23];
    size_t n = 0;

    *out = buf;
    if (f == NULL)
        return 0;
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return n;
}

/* The owner cache: a hit gives back what was put; forgetting wipes it and refuses a put
 * learnt before the forgetting (a read that may have seen a key since destroyed). */
static void owner_cache_forgets(void **state)
{
    struct cd__owners *o = NULL;
    uint8_t lookup[CD_CRYPTO_HASH_LEN], wrapped[CD_CRYPTO_WRAPPED_LEN], got[CD_CRYPTO_WRAPPED_LEN];
    char id[CD_ID_MAX];
    (void)state;

    assert_int_equal(cd__owners_new(&o), CD_OK);
    cd_random_bytes(lookup, sizeof lookup);
    cd_random_bytes(wrapped, sizeof wrapped);
    uint64_t gen = cd__owners_generation(o);
    assert_false(cd__owners_get(o, CD_STR("email"), lookup, id, got));
    cd__owners_put(o, gen, CD_STR("email"), lookup, "cus_A", wrapped, sizeof wrapped);
    assert_true(cd__owners_get(o, CD_STR("email"), lookup, id, got));
    assert_string_equal(id, "cus_A");
    assert_memory_equal(got, wrapped, sizeof got);
    assert_false(cd__owners_get(o, CD_STR("phone"), lookup, id, got)); /* another kind */
    cd__owners_put(o, gen, CD_STR("email"), lookup, "cus_A", wrapped, 5); /* malformed: ignored */
    cd__owners_forget_all(o);
    assert_false(cd__owners_get(o, CD_STR("email"), lookup, id, got));
    cd__owners_put(o, gen, CD_STR("email"), lookup, "cus_A", wrapped, sizeof wrapped);
    assert_false(cd__owners_get(o, CD_STR("email"), lookup, id, got)); /* stale generation */
    cd__owners_put(o, cd__owners_generation(o), CD_STR("email"), lookup, "cus_B", wrapped,
                   sizeof wrapped);
    assert_true(cd__owners_get(o, CD_STR("email"), lookup, id, got));
    assert_string_equal(id, "cus_B");
    cd__owners_free(o);
}

static void shredding_leaves_nothing_readable(void **state)
{
    json_t *x = NULL, *c = NULL, *tl = NULL;
    char cid[CD_ID_MAX], wal[300], q[400];
    unsigned char wrapped[128];
    int wlen = 0;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;

    assert_int_equal(ingest("{\"identity\":{\"type\":\"email\",\"value\":\"shred.me@example.com\"},"
                            "\"channel\":\"email\",\"direction\":\"inbound\","
                            "\"thread_id\":\"shred.me-thread\",\"body\":\"please forget me\"}",
                            &x), CD_OK);
    snprintf(cid, sizeof cid, "%s", json_string_value(json_object_get(x, "customer_id")));
    json_decref(x);
    /* The wrapped key as stored, read the way an attacker with the file would. */
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT key_wrapped FROM customers WHERE id = ?", -1,
                                        &st, NULL), SQLITE_OK);
    sqlite3_bind_text(st, 1, cid, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    wlen = sqlite3_column_bytes(st, 0);
    assert_true(wlen > 16 && wlen <= (int)sizeof wrapped);
    memcpy(wrapped, sqlite3_column_blob(st, 0), (size_t)wlen);
    sqlite3_finalize(st);
    sqlite3_close(db);

    /* The search can see the key before: otherwise its absence afterwards would prove nothing. */
    char *before = NULL;
    size_t nb = read_file(path, &before);
    bool in_db = memmem(before, nb, wrapped, (size_t)wlen) != NULL;
    snprintf(wal, sizeof wal, "%s-wal", path);
    nb = read_file(wal, &before);
    assert_true(in_db || memmem(before, nb, wrapped, (size_t)wlen) != NULL);

    /* A second message by the same identity: its owner and wrapped key are now in the owner
     * cache, which the erasure must empty too. */
    uint8_t lookup[CD_CRYPTO_HASH_LEN], cached[CD_CRYPTO_WRAPPED_LEN];
    char owner[CD_ID_MAX];
    cd__core_lookup(core, CD_STR("email"), CD_STR("shred.me@example.com"), lookup);
    assert_int_equal(ingest("{\"identity\":{\"type\":\"email\",\"value\":\"shred.me@example.com\"},"
                            "\"channel\":\"email\",\"direction\":\"inbound\","
                            "\"body\":\"and this\"}", &x), CD_OK);
    json_decref(x);
    assert_true(cd__owners_get(core->owners, CD_STR("email"), lookup, owner, cached));
    assert_string_equal(owner, cid);
    assert_memory_equal(cached, wrapped, sizeof cached);

    assert_int_equal(cd_core_customer_shred(core, &actor, cd_str_c(cid), &c), CD_OK);
    assert_false(cd__owners_get(core->owners, CD_STR("email"), lookup, owner, cached));
    assert_string_equal(json_string_value(json_object_get(c, "status")), "erased");
    json_decref(c);
    assert_int_equal(cd_core_customer_shred(core, &actor, cd_str_c(cid), &c), CD_ERR_CONFLICT);
    int64_t threads = -1;
    assert_int_equal(cd_store_read(store, thread_cols_fn, &threads), CD_OK);
    assert_int_equal(threads, 0); /* the sealed thread id and its hash are gone too */

    /* Neither the database file nor the write-ahead log holds the key any more. */
    char *bytes = NULL;
    size_t n = read_file(path, &bytes);
    assert_true(n > 0);
    assert_null(memmem(bytes, n, wrapped, (size_t)wlen));
    n = read_file(wal, &bytes);
    assert_null(memmem(bytes, n, wrapped, (size_t)wlen));

    /* The identity is gone, and so are the interactions, rows and all. */
    assert_int_equal(cd_core_customer_find(core, &actor, CD_STR("email"), CD_STR_NULL,
                                           CD_STR("shred.me@example.com"), CD_FIELDS_ALL, &c),
                     CD_ERR_NOT_FOUND);
    struct cd_timeline_query tq = {CD_STR_NULL, 50, CD_STR_NULL, CD_STR_NULL, CD_STR_NULL};
    assert_int_equal(timeline(cd_str_c(cid), &tq, &tl),
                     CD_OK);
    assert_int_equal(json_array_size(json_object_get(tl, "items")), 0);
    json_decref(tl);
    snprintf(q, sizeof q, "{\"customer_id\":\"%s\",\"channel\":\"chat\","
             "\"direction\":\"inbound\"}", cid);
    assert_int_equal(ingest(q, &x), CD_ERR_CONFLICT);
    /* Writing from the same address again starts a new customer. */
    assert_int_equal(ingest("{\"identity\":{\"type\":\"email\",\"value\":\"shred.me@example.com\"},"
                            "\"channel\":\"email\",\"direction\":\"inbound\"}", &x), CD_OK);
    assert_string_not_equal(json_string_value(json_object_get(x, "customer_id")), cid);
    json_decref(x);
}

/* ---- sealed fields bound to their rows ---- */

static enum cd_err sql_fn(struct cd_tx *tx, void *ctx)
{
    return cd_tx_exec(tx, ctx, NULL, 0, NULL, NULL, NULL);
}

static void sql(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sql(const char *fmt, ...)
{
    char q[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q, sizeof q, fmt, ap);
    va_end(ap);
    assert_int_equal(cd_store_write(store, sql_fn, q), CD_OK);
}

static void ingest_id(const char *text, char id[CD_ID_MAX], char cid[CD_ID_MAX])
{
    json_t *x = NULL;
    assert_int_equal(ingest(text, &x), CD_OK);
    snprintf(id, CD_ID_MAX, "%s", json_string_value(json_object_get(x, "id")));
    if (cid)
        snprintf(cid, CD_ID_MAX, "%s", json_string_value(json_object_get(x, "customer_id")));
    json_decref(x);
}

/* A value copied from another row of the same customer, a row moved to another customer, and
 * a row whose channel, direction, occurred_at or purpose was edited: each is refused when
 * served (CD_ERR_INTEGRITY naming the interaction and the field, counted) and named by the
 * offline check; an identity row moved to another customer too. Put back, all serve again. */
static void sealed_fields_are_bound_to_their_rows(void **state)
{
    char a[CD_ID_MAX], b[CD_ID_MAX], c[CD_ID_MAX], d[CD_ID_MAX], other[CD_ID_MAX];
    char q[300];
    struct cd_core_rows_report rep;
    struct cd_timeline_query tq = {CD_STR_NULL, 50, CD_STR_NULL, CD_STR_NULL, CD_STR_NULL};
    struct cd_buf one = CD_BUF_INIT(CD_CORE_ANSWER_MAX);
    json_t *tl = NULL;
    static const char *const edits[] = {
        "body = (SELECT body FROM interactions WHERE id = ", /* A's body onto B */
        "channel = 'chat'", "direction = 'outbound'", "occurred_at = occurred_at + 1",
        "purpose = 'marketing'", "customer_id = ", /* moved to the other customer */
    };

    ingest_id("{\"identity\":{\"type\":\"email\",\"value\":\"c@example.org\"},\"channel\":"
              "\"email\",\"direction\":\"inbound\",\"subject\":\"A\",\"body\":\"body of A\"}",
              a, c);
    snprintf(q, sizeof q, "{\"customer_id\":\"%s\",\"channel\":\"sms\",\"direction\":"
             "\"inbound\",\"body\":\"body of B\",\"metadata\":{\"k\":1}}", c);
    ingest_id(q, b, NULL);
    ingest_id("{\"identity\":{\"type\":\"email\",\"value\":\"d@example.org\"},\"channel\":"
              "\"chat\",\"direction\":\"inbound\",\"body\":\"body of D\"}",
              other, d);
    assert_int_equal(cd_core_verify_rows(core, &rep, NULL), CD_OK);
    assert_int_equal(rep.interactions, 3);
    assert_int_equal(rep.fields, 5);
    assert_int_equal(rep.legacy_fields, 0);
    sql("CREATE TEMP TABLE kept AS SELECT * FROM interactions WHERE id = '%s'", b);
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        char set[200];
        if (i == 0)
            snprintf(set, sizeof set, "%s'%s')", edits[i], a);
        else if (i == 5)
            snprintf(set, sizeof set, "%s'%s'", edits[i], d);
        else
            snprintf(set, sizeof set, "%s", edits[i]);
        sql("UPDATE interactions SET %s WHERE id = '%s'", set, b);
        assert_int_equal(cd_core_verify_rows(core, &rep, NULL), CD_ERR_INTEGRITY);
        assert_string_equal(rep.bad_id, b);
        if (strstr(cd_err_detail(), "does not open under its row") == NULL)
            fail_msg("edit %zu: %s", i, cd_err_detail());
        uint64_t before = cd_integrity_total(CD_INTEGRITY_SEALED_FIELD);
        const char *whose = i == 5 ? d : c;
        assert_int_equal(timeline(cd_str_c(whose), &tq, &tl), CD_ERR_INTEGRITY);
        assert_non_null(strstr(cd_err_detail(), b));
        assert_non_null(strstr(cd_err_detail(), "does not belong to this row"));
        assert_int_equal(cd_integrity_total(CD_INTEGRITY_SEALED_FIELD), before + 1);
        cd_buf_reset(&one);
        assert_int_equal(cd_core_interaction_get(core, &actor, cd_str_c(b), CD_FIELDS_ALL, &one),
                         CD_ERR_INTEGRITY);
        sql("UPDATE interactions SET (customer_id, channel, direction, occurred_at, purpose,"
            " body) = (SELECT customer_id, channel, direction, occurred_at, purpose, body FROM"
            " kept) WHERE id = '%s'", b);
        assert_int_equal(timeline(cd_str_c(c), &tq, &tl), CD_OK);
        assert_int_equal(json_array_size(json_object_get(tl, "items")), 2);
        json_decref(tl);
    }
    /* A purpose that may not see the conversation opens nothing, so it is served. */
    sql("UPDATE interactions SET channel = 'chat' WHERE id = '%s'", b);
    assert_int_equal(cd_core_timeline(core, &actor, cd_str_c(c), &tq, CD_FIELDS_CONTACT, &one),
                     CD_OK);
    sql("UPDATE interactions SET channel = 'sms' WHERE id = '%s'", b);

    /* An identity moved to another customer. */
    sql("UPDATE identities SET customer_id = '%s' WHERE customer_id = '%s'", d, c);
    assert_int_equal(cd_core_verify_rows(core, &rep, NULL), CD_ERR_INTEGRITY);
    assert_string_equal(rep.bad_id, d);
    assert_non_null(strstr(cd_err_detail(), "its identity (email) does not open"));
    sql("UPDATE identities SET customer_id = '%s' WHERE value = (SELECT value FROM identities"
        " WHERE customer_id = '%s' ORDER BY created_at LIMIT 1)", c, d);
    assert_int_equal(cd_core_verify_rows(core, &rep, NULL), CD_OK);
    /* Out of memory anywhere in the check is an error, never a crash, a leak or a false
     * finding. */
    for (long k = 1; k < 400; k++) {
        cd_alloc_fail_nth(k);
        enum cd_err err = cd_core_verify_rows(core, &rep, NULL);
        bool hit = cd_alloc_fault_hit();
        cd_alloc_fail_nth(0);
        if (!hit) {
            assert_int_equal(err, CD_OK);
            break;
        }
        assert_true(err == CD_ERR_NOMEM || err == CD_ERR_STORE);
    }
    cd_buf_free(&one);
}

static enum cd_err wrapped_row(void *ctx, const struct cd_val *cols, size_t n)
{
    return cd_buf_append(ctx, cols[0].p, cols[0].len);
}

static enum cd_err wrapped_fn(struct cd_tx *tx, void *ctx)
{
    struct cd_buf *b = ctx;
    char id[CD_ID_MAX];
    snprintf(id, sizeof id, "%s", b->p);
    cd_buf_reset(b);
    struct cd_val p[] = {CD_VCSTR(id)};
    return cd_tx_exec(tx, "SELECT key_wrapped FROM customers WHERE id = $1", p, 1, wrapped_row, b,
                      NULL);
}

struct legacy_row {
    const char *id, *customer_id;
    struct cd_buf *body;
    bool marked;
};

static enum cd_err legacy_insert_fn(struct cd_tx *tx, void *ctx)
{
    struct legacy_row *r = ctx;
    struct cd_val p[] = {CD_VCSTR(r->id), CD_VCSTR(r->customer_id),
                         CD_VBLOB(r->body->p, r->body->len), r->marked ? CD_VINT(1) : CD_VNULL};
    return cd_tx_exec(tx, "INSERT INTO interactions(id, customer_id, channel, direction,"
                          " occurred_at, created_at, purpose, body, legacy_seal) VALUES($1, $2,"
                          " 'email', 'inbound', 1700000000000, 1700000000000, 'service', $3, $4)",
                      p, 4, NULL, NULL, NULL);
}

/* Rows sealed before format 2 (format 1, marked by the migration) are re-sealed bound to their
 * rows by cd_core_reseal_legacy; until then a server refuses them. A format-1 value in a row
 * that is not marked (copied from an old copy of the database) fails the offline check, and a
 * marked row whose value is not its customer's is left as it is and reported. */
static void legacy_rows_are_resealed(void **state)
{
    char a[CD_ID_MAX], c[CD_ID_MAX], d[CD_ID_MAX], x[CD_ID_MAX], l1[CD_ID_MAX], l2[CD_ID_MAX];
    struct cd_buf w = CD_BUF_INIT(256), body = CD_BUF_INIT(4096), one = CD_BUF_INIT(1 << 20);
    struct cd_core_rows_report rep;
    struct cd__ckey k;
    uint64_t done = 0, refused = 0;

    ingest_id("{\"identity\":{\"type\":\"email\",\"value\":\"l@example.org\"},\"channel\":"
              "\"email\",\"direction\":\"inbound\",\"body\":\"new\"}",
              a, c);
    ingest_id("{\"identity\":{\"type\":\"email\",\"value\":\"m@example.org\"},\"channel\":"
              "\"email\",\"direction\":\"inbound\",\"body\":\"other\"}",
              x, d);
    assert_int_equal(cd_buf_puts(&w, c), CD_OK);
    assert_int_equal(cd_store_read(store, wrapped_fn, &w), CD_OK);
    struct cd_val wv = CD_VBLOB(w.p, w.len);
    assert_int_equal(cd__core_key_open(core, c, wv, &k), CD_OK);
    assert_int_equal(cd__core_seal(&k, "body", CD_STR("an old message"), &body), CD_OK);
    cd__core_key_wipe(&k);
    cd_id_new("int", l1);
    cd_id_new("int", l2);
    struct legacy_row r1 = {l1, c, &body, true}, r2 = {l2, c, &body, false};
    assert_int_equal(cd_store_write(store, legacy_insert_fn, &r1), CD_OK);

    assert_int_equal(cd_core_verify_rows(core, &rep, NULL), CD_OK);
    assert_int_equal(rep.legacy_fields, 1);
    assert_int_equal(cd_core_interaction_get(core, &actor, cd_str_c(l1), CD_FIELDS_ALL, &one),
                     CD_ERR_INTEGRITY); /* a server never opens format 1 */
    assert_int_equal(cd_core_reseal_legacy(core, &done, &refused), CD_OK);
    assert_int_equal(done, 1);
    assert_int_equal(refused, 0);
    cd_buf_reset(&one);
    assert_int_equal(cd_core_interaction_get(core, &actor, cd_str_c(l1), CD_FIELDS_ALL, &one),
                     CD_OK);
    assert_non_null(strstr(one.p, "an old message"));
    assert_int_equal(cd_core_verify_rows(core, &rep, NULL), CD_OK);
    assert_int_equal(rep.legacy_fields, 0);
    assert_int_equal(cd_core_reseal_legacy(core, &done, &refused), CD_OK);
    assert_int_equal(done, 0); /* nothing marked any more */

    /* The old format where no migration put it. */
    assert_int_equal(cd_store_write(store, legacy_insert_fn, &r2), CD_OK);
    assert_int_equal(cd_core_verify_rows(core, &rep, NULL), CD_ERR_INTEGRITY);
    assert_string_equal(rep.bad_id, l2);
    assert_non_null(strstr(cd_err_detail(), "legacy format but the row is not marked"));
    /* Marked, but the value belongs to another customer: refused, left as it is. */
    sql("UPDATE interactions SET legacy_seal = 1, customer_id = '%s' WHERE id = '%s'", d, l2);
    uint64_t before = cd_integrity_total(CD_INTEGRITY_SEALED_FIELD);
    assert_int_equal(cd_core_reseal_legacy(core, &done, &refused), CD_OK);
    assert_int_equal(done, 0);
    assert_int_equal(refused, 1);
    assert_int_equal(cd_integrity_total(CD_INTEGRITY_SEALED_FIELD), before + 1);
    cd_buf_free(&w);
    cd_buf_free(&body);
    cd_buf_free(&one);
}

int main(void)
{
    cd_json_init();
    cd_crypto_init();
    cd_log_set_level(CD_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(identities_normalise),
        cmocka_unit_test_setup_teardown(skeletons_find_lookalikes, setup, teardown),
        cmocka_unit_test_setup_teardown(lookalikes_are_linked_merged_and_dismissed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(occurred_at_is_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(customers_and_conflicts, setup, teardown),
        cmocka_unit_test_setup_teardown(write_answers_are_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(ingestion_echo_follows_the_purpose, setup, teardown),
        cmocka_unit_test_setup_teardown(ingestion_timeline_and_merge, setup, teardown),
        cmocka_unit_test_setup_teardown(first_messages_of_a_new_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(identity_moved_between_sealing_and_write, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(personal_data_is_sealed_at_rest, setup, teardown),
        cmocka_unit_test_setup_teardown(ingestion_survives_every_allocation_failure, setup,
                                        teardown),
        cmocka_unit_test(owner_cache_forgets),
        cmocka_unit_test_setup_teardown(shredding_leaves_nothing_readable, setup, teardown),
        cmocka_unit_test_setup_teardown(sealed_fields_are_bound_to_their_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(legacy_rows_are_resealed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
