/* Unit tests for src/base: errors, buffers, arena, time, ids, encodings, JSON glue. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>
#include "base/base_testing.h"
#include "unit.h"

static void buf_caps_and_fails_cleanly(void **state)
{
    struct cd_buf b = CD_BUF_INIT(10);

    assert_int_equal(cd_buf_puts(&b, "hello"), CD_OK);
    assert_int_equal(cd_buf_puts(&b, "world"), CD_OK);
    assert_int_equal(cd_buf_putc(&b, '!'), CD_ERR_TOO_BIG);
    assert_string_equal(b.p, "helloworld"); /* unchanged by the failed append */
    assert_int_equal(cd_buf_printf(&b, "%d", 1), CD_ERR_TOO_BIG);
    cd_buf_reset(&b);
    assert_int_equal(cd_buf_printf(&b, "%s-%d", "a", 42), CD_OK);
    assert_string_equal(b.p, "a-42");
    cd_buf_free(&b);
}

/* 2000 bytes appended ten at a time grow the buffer to 64, 128, ..., 2048 bytes: six
 * allocations, the nth when the bytes held no longer fit with the next ten (kept[n - 1]).
 * Failing the nth fails exactly the append that needed it, with what came before kept whole;
 * there is no seventh to fail, and then everything was appended. */
static void buf_survives_every_allocation_failure(void **state)
{
    static const size_t kept[6] = {0, 60, 120, 250, 510, 1020};

    for (long n = 1; n <= 7; n++) {
        struct cd_buf b = CD_BUF_INIT(CD_BUF_UNBOUNDED);
        enum cd_err err = CD_OK;
        int appended = 0;
        cd_alloc_fail_nth(n);
        for (int i = 0; i < 200 && err == CD_OK; i++)
            if ((err = cd_buf_puts(&b, "0123456789")) == CD_OK)
                appended++;
        bool hit = cd_alloc_fault_hit();
        cd_alloc_fail_nth(0);
        if (n <= 6) {
            assert_true(hit);
            assert_int_equal(err, CD_ERR_NOMEM);
            assert_int_equal(b.len, kept[n - 1]);
            assert_int_equal(b.len, (size_t)appended * 10); /* never a partial append */
            if (b.len)
                assert_memory_equal(b.p + b.len - 10, "0123456789", 10);
        } else {
            assert_false(hit);
            assert_int_equal(err, CD_OK);
            assert_int_equal(b.len, 2000);
        }
        cd_buf_free(&b);
    }
}

/* A buffer's maximum is exact: CD_BUF_INIT(n) holds n bytes, CD_BUF_UNBOUNDED any number. */
static void buf_maximum_is_exact(void **state)
{
    struct cd_buf one = CD_BUF_INIT(1), big = CD_BUF_INIT(CD_BUF_UNBOUNDED);

    assert_int_equal(cd_buf_putc(&one, 'a'), CD_OK);
    assert_int_equal(cd_buf_putc(&one, 'b'), CD_ERR_TOO_BIG);
    assert_string_equal(one.p, "a");
    assert_int_equal(one.cap, 2); /* never more than the maximum and its terminator */
    for (int i = 0; i < 100000; i++)
        assert_int_equal(cd_buf_puts(&big, "0123456789"), CD_OK);
    assert_int_equal(big.len, 1000000);
    cd_buf_free(&one);
    cd_buf_free(&big);
}

static void arena_aligns_and_caps(void **state)
{
    struct cd_arena a = CD_ARENA_INIT(20000);
    void *p = cd_arena_alloc(&a, 3), *q = cd_arena_alloc(&a, 5);

    assert_non_null(p);
    assert_non_null(q);
    assert_int_equal((uintptr_t)q % 16, 0);
    assert_string_equal(cd_arena_printf(&a, "x%dy", 7), "x7y");
    assert_null(cd_arena_alloc(&a, 50000));
    cd_arena_free(&a);
}

static void time_round_trips(void **state)
{
    char s[CD_TIME_STRLEN];
    int64_t ms = 0;

    cd_time_format(0, s);
    assert_string_equal(s, "1970-01-01T00:00:00.000Z");
    assert_int_equal(cd_time_parse(CD_STR("2026-11-25T19:16:09.123Z"), &ms), CD_OK);
    cd_time_format(ms, s);
    assert_string_equal(s, "2026-11-25T19:16:09.123Z");
    assert_int_equal(cd_time_parse(CD_STR("2026-11-25T20:16:09.123+01:00"), &ms), CD_OK);
    cd_time_format(ms, s);
    assert_string_equal(s, "2026-11-25T19:16:09.123Z");
    assert_int_equal(cd_time_parse(CD_STR("2024-02-29T00:00:00Z"), &ms), CD_OK);
    assert_int_equal(cd_time_parse(CD_STR("2025-02-29T00:00:00Z"), &ms), CD_ERR_INVALID);
    assert_int_equal(cd_time_parse(CD_STR("2025-13-01T00:00:00Z"), &ms), CD_ERR_INVALID);
    assert_int_equal(cd_time_parse(CD_STR("2025-01-01 00:00:00"), &ms), CD_ERR_INVALID);
    assert_int_equal(cd_time_parse(CD_STR("2025-01-01T00:00:00"), &ms), CD_ERR_INVALID);
    assert_int_equal(cd_time_parse(CD_STR("1969-12-31T23:59:59.999Z"), &ms), CD_OK);
    assert_int_equal(ms, -1);
    cd_time_format(-1, s);
    assert_string_equal(s, "1969-12-31T23:59:59.999Z");
    /* Against the C library over four centuries of instants, leap days included. */
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < 20000; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        int64_t t = (int64_t)(x >> 20) % 12622780800000LL - 2208988800000LL; /* 1900..2300 */
        time_t secs = (time_t)(t >= 0 ? t / 1000 : (t - 999) / 1000);
        struct tm tm;
        char want[64];
        gmtime_r(&secs, &tm);
        snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)(t - (int64_t)secs * 1000));
        cd_time_format(t, s);
        assert_string_equal(s, want);
    }
    cd_time_format(INT64_MAX / 2, s); /* beyond year 9999: clamped, still well formed */
    assert_int_equal(strlen(s), 24);
    assert_memory_equal(s, "9999-", 5);
}

static void ids_sort_by_time_and_validate(void **state)
{
    char a[CD_ID_MAX], b[CD_ID_MAX];

    cd_id_new("cus", a);
    assert_true(cd_id_valid(cd_str_c(a), "cus"));
    assert_false(cd_id_valid(cd_str_c(a), "int"));
    assert_int_equal(strlen(a), 30);
    for (int i = 0; i < 1000; i++) {
        cd_id_new("cus", b);
        assert_true(strcmp(a, b) < 0); /* monotonic, also within one millisecond */
        memcpy(a, b, sizeof a);
    }
    assert_false(cd_id_valid(CD_STR("cus_0000000000000000000000000!"), "cus"));
}

/* The id format, checked against the obvious digit-by-digit loop: edge values and random
 * ones through both paths of the encoder (the portable one, and AVX-512 VBMI where the CPU
 * has it), then parsed back. */
static void ref_id_str(const uint8_t raw[16], const char *prefix, char out[CD_ID_MAX])
{
    static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    uint64_t hi = 0, lo = 0;
    size_t pl = strlen(prefix);
    for (int i = 0; i < 8; i++) {
        hi = hi << 8 | raw[i];
        lo = lo << 8 | raw[8 + i];
    }
    memcpy(out, prefix, pl);
    out[pl] = '_';
    for (int i = 25; i >= 0; i--) {
        out[pl + 1 + i] = alphabet[lo & 31];
        lo = lo >> 5 | hi << 59;
        hi >>= 5;
    }
    out[pl + 27] = '\0';
}

static void ids_encode_alike_on_both_paths(void **state)
{
    uint8_t raw[16], back[16];
    char want[CD_ID_MAX], got[CD_ID_MAX], portable[CD_ID_DIGITS_ROOM], vbmi[CD_ID_DIGITS_ROOM];
    bool have_vbmi = cd__id_digits_vbmi((const uint8_t[16]){0}, vbmi);

    if (!have_vbmi)
        print_message("the CPU has no AVX-512 VBMI: only the portable path is compared\n");
    for (int k = 0; k < 20000; k++) {
        if (k < 2)
            memset(raw, k ? 0xff : 0, sizeof raw);
        else if (k < 2 + 128) /* one bit set, at each position */
            memset(raw, 0, sizeof raw), raw[(k - 2) / 8] = (uint8_t)(0x80 >> (k - 2) % 8);
        else
            cd_random_bytes(raw, sizeof raw);
        ref_id_str(raw, "cev", want);
        cd__id_digits_portable(raw, portable);
        assert_memory_equal(portable, want + 4, CD_ID_DIGITS);
        if (have_vbmi) {
            assert_true(cd__id_digits_vbmi(raw, vbmi));
            assert_memory_equal(vbmi, want + 4, CD_ID_DIGITS);
        }
        cd_id_format(raw, "cev", got);
        assert_string_equal(got, want);
        assert_true(cd_id_valid(cd_str_c(got), "cev"));
        /* 128 bits in 130: ids whose first digit is above 7 are not canonical and do not parse;
         * every canonical one parses back to the same bits. */
        assert_int_equal(cd_id_bits(cd_str_c(got), "cev", back), got[4] <= '7');
        if (got[4] <= '7')
            assert_memory_equal(raw, back, 16);
    }
    /* What cd_id_new makes parses back, and a wrong prefix, length or digit does not. */
    cd_id_new("cus", got);
    assert_true(cd_id_bits(cd_str_c(got), "cus", back));
    cd_id_format(back, "cus", want);
    assert_string_equal(got, want);
    assert_false(cd_id_bits(cd_str_c(got), "cev", back));
    assert_false(cd_id_bits((struct cd_str){got, strlen(got) - 1}, "cus", back));
    got[10] = 'U'; /* not a Crockford digit */
    assert_false(cd_id_bits(cd_str_c(got), "cus", back));
    got[10] = 'a'; /* lower case is not canonical */
    assert_false(cd_id_bits(cd_str_c(got), "cus", back));
}

static void encodings_round_trip(void **state)
{
    unsigned char raw[5] = {0xfb, 0xff, 0x00, 0x10, 0x7f}, back[8];
    char enc[16];
    size_t n = 0;

    for (size_t len = 0; len <= 5; len++) {
        cd_b64url_encode(raw, len, enc);
        assert_int_equal(strlen(enc), cd_b64url_len(len));
        assert_int_equal(cd_b64url_decode(cd_str_c(enc), back, sizeof back, &n), CD_OK);
        assert_int_equal(n, len);
        assert_memory_equal(raw, back, len);
    }
    assert_int_equal(cd_b64url_decode(CD_STR("a+b/"), back, sizeof back, &n), CD_ERR_INVALID);
    cd_hex_encode(raw, 5, enc);
    assert_string_equal(enc, "fbff00107f");
    assert_int_equal(cd_hex_decode(cd_str_c(enc), back, 5), CD_OK);
    assert_memory_equal(raw, back, 5);
    assert_int_equal(cd_hex_decode(CD_STR("zz"), back, 1), CD_ERR_INVALID);
}

static void utf8_validation(void **state)
{
    assert_true(cd_utf8_valid("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", 15));
    assert_false(cd_utf8_valid("\xc0\xaf", 2));         /* overlong */
    assert_false(cd_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    assert_false(cd_utf8_valid("\xe2\x82", 2));         /* truncated */
    assert_false(cd_utf8_valid("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
}

static void json_strict_access(void **state)
{
    json_t *o = NULL;
    struct cd_str s = CD_STR_NULL;
    int64_t i = 0;
    static const char *const allowed[] = {"name", "n", NULL};

    cd_json_init();
    assert_int_equal(cd_json_parse_object("{\"name\":\"x\",\"n\":3}", 18, &o), CD_OK);
    assert_int_equal(cd_json_only(o, allowed), CD_OK);
    assert_int_equal(cd_json_str(o, "name", true, &s), CD_OK);
    assert_true(cd_str_eq_c(s, "x"));
    assert_int_equal(cd_json_int(o, "n", true, &i), CD_OK);
    assert_int_equal(i, 3);
    assert_int_equal(cd_json_str(o, "n", true, &s), CD_ERR_INVALID);
    assert_non_null(strstr(cd_err_detail(), "'n' must be a string"));
    assert_int_equal(cd_json_str(o, "missing", true, &s), CD_ERR_INVALID);
    assert_int_equal(cd_json_str(o, "missing", false, &s), CD_OK);
    json_decref(o);
    assert_int_equal(cd_json_parse_object("{\"a\":1,}", 8, &o), CD_ERR_INVALID);
    assert_non_null(strstr(cd_err_detail(), "line 1"));
    assert_int_equal(cd_json_parse_object("[1]", 3, &o), CD_ERR_INVALID);
    assert_int_equal(cd_json_parse_object("{\"a\":\"\xff\"}", 9, &o), CD_ERR_INVALID);
    assert_int_equal(cd_json_parse_object("{\"a\":1,\"a\":2}", 13, &o), CD_ERR_INVALID);
    assert_int_equal(cd_json_parse_object("{\"zz\":1}", 8, &o), CD_OK);
    assert_int_equal(cd_json_only(o, allowed), CD_ERR_INVALID);
    json_decref(o);
}

static void json_strings_match_jansson(void **state)
{
    static const char *const cases[] = {"plain", "", "quote\" back\\slash", "tab\tnl\ncr\r",
                                        "\x01\x1f\x7f", "caf\xc3\xa9 \xe2\x82\xac",
                                        "emoji \xf0\x9f\x98\x80 end", "\b\f/"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct cd_buf b = CD_BUF_INIT(CD_BUF_UNBOUNDED);
        json_t *s = json_string(cases[i]);
        char *want = json_dumps(s, JSON_ENCODE_ANY | JSON_ENSURE_ASCII);
        assert_int_equal(cd_buf_json_string(&b, cd_str_c(cases[i])), CD_OK);
        assert_string_equal(b.p, want);
        cd_free(want);
        /* The answer form: UTF-8 kept as it is, as cd_json_dump writes it. */
        want = json_dumps(s, JSON_ENCODE_ANY);
        cd_buf_reset(&b);
        assert_int_equal(cd_buf_json_text(&b, cd_str_c(cases[i])), CD_OK);
        assert_string_equal(b.p, want);
        cd_free(want);
        json_decref(s);
        cd_buf_free(&b);
    }
    struct cd_buf b = CD_BUF_INIT(CD_BUF_UNBOUNDED);
    assert_int_equal(cd_buf_puts(&b, "x"), CD_OK);
    assert_int_equal(cd_buf_json_string(&b, CD_STR("bad \xff utf-8")), CD_ERR_INVALID);
    assert_string_equal(b.p, "x"); /* nothing of a refused string stays */
    assert_int_equal(cd_buf_json_text(&b, CD_STR("bad \xc3 utf-8")), CD_ERR_INVALID);
    assert_string_equal(b.p, "x");
    cd_buf_free(&b);
}

/* The YAML document shared by the rule and policy loaders: errors name FILE:LINE, files are
 * read whole and capped, an empty document has no root. */
static void yaml_documents_and_their_errors(void **state)
{
    struct cd_yaml y;
    char path[64];
    FILE *f;

    assert_int_equal(cd_yaml_parse(&y, "t.yaml", "a: 1\nb: [x, y]\n", 15), CD_OK);
    yaml_node_t *root = cd_yaml_root(&y);
    assert_non_null(root);
    assert_int_equal(root->type, YAML_MAPPING_NODE);
    yaml_node_pair_t *second = root->data.mapping.pairs.start + 1;
    yaml_node_t *k = cd_yaml_node(&y, second->key);
    assert_true(cd_yaml_scalar_is(k, "b"));
    assert_false(cd_yaml_scalar_is(k, "bb"));
    assert_null(cd_yaml_scalar(cd_yaml_node(&y, second->value)).p); /* a list, not a scalar */
    assert_int_equal(cd_yaml_bad(&y, k, "no b here"), CD_ERR_INVALID);
    assert_string_equal(cd_err_detail(), "t.yaml:2: no b here");
    cd_yaml_free(&y);
    cd_yaml_free(&y); /* twice is harmless */

    assert_int_equal(cd_yaml_parse(&y, "bad.yaml", "a: [1,\n", 7), CD_ERR_INVALID);
    assert_non_null(strstr(cd_err_detail(), "bad.yaml:"));
    assert_non_null(strstr(cd_err_detail(), "YAML"));
    assert_null(y.doc);
    assert_int_equal(cd_yaml_parse(&y, "empty.yaml", "", 0), CD_OK);
    assert_null(cd_yaml_root(&y));
    cd_yaml_free(&y);

    snprintf(path, sizeof path, "/tmp/candor-test-yaml-%d.yaml", (int)getpid());
    assert_int_equal(cd_yaml_load_file(&y, path, 64), CD_ERR_IO);
    assert_non_null(strstr(cd_err_detail(), "cannot open"));
    assert_non_null(f = fopen(path, "w"));
    fputs("key: a value longer than the cap allows\n", f);
    fclose(f);
    assert_int_equal(cd_yaml_load_file(&y, path, 16), CD_ERR_TOO_BIG);
    assert_int_equal(cd_yaml_load_file(&y, path, 64), CD_OK);
    assert_true(cd_yaml_scalar_is(cd_yaml_node(&y, cd_yaml_root(&y)->data.mapping.pairs.start->key),
                                  "key"));
    cd_yaml_free(&y);
    unlink(path);
}

/* ---- the batched log ---- */

enum { LOG_THREADS = 4, LOG_PER_THREAD = 3000 };

static void *log_many(void *arg)
{
    int t = (int)(intptr_t)arg;

    for (int i = 0; i < LOG_PER_THREAD; i++)
        cd_log_batched(CD_LOG_INFO, "unit.thread", "\"t\":%d,\"i\":%d", t, i);
    return NULL;
}

/* Reads what the log wrote to fd, from the start. */
static char *log_read(int fd)
{
    off_t n = lseek(fd, 0, SEEK_END);
    char *p = malloc((size_t)n + 1);

    assert_non_null(p);
    assert_int_equal(pread(fd, p, (size_t)n, 0), n);
    p[n] = '\0';
    return p;
}

/* Lines logged with and without batching keep the order of the calls (more than the batch
 * holds, so it is also written when full), lines from several threads stay whole, and stopping
 * writes what is held. */
/* The typed helpers: a table of keys walks a mapping, and every mistake names its line. */
struct typed {
    struct cd_str name;
    int64_t n;
    bool on;
    size_t items;
};

static enum cd_err typed_name(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                              void *ctx)
{
    return cd_yaml_str(y, v, k->name, 8, &((struct typed *)ctx)->name);
}

static enum cd_err typed_n(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                           void *ctx)
{
    return cd_yaml_int(y, v, k->name, -5, k->arg, &((struct typed *)ctx)->n);
}

static enum cd_err typed_on(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                            void *ctx)
{
    return cd_yaml_bool(y, v, k->name, &((struct typed *)ctx)->on);
}

static enum cd_err typed_item(const struct cd_yaml *y, yaml_node_t *v, size_t i, void *ctx)
{
    ((struct typed *)ctx)->items = i + 1;
    return cd_yaml_scalar(v).p ? CD_OK : cd_yaml_bad(y, v, "items are words");
}

static enum cd_err typed_list(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                              void *ctx)
{
    return cd_yaml_seq(y, v, k->name, typed_item, ctx);
}

static enum cd_err typed_load(const char *text, struct typed *t)
{
    static const struct cd_yaml_key keys[] = {{"name", true, typed_name, 0},
                                              {"n", false, typed_n, 100},
                                              {"on", false, typed_on, 0},
                                              {"list", false, typed_list, 0}};
    struct cd_yaml y;
    enum cd_err err = cd_yaml_parse(&y, "t.yaml", text, strlen(text));

    memset(t, 0, sizeof *t);
    if (err == CD_OK)
        err = cd_yaml_map(&y, cd_yaml_root(&y), "a thing", keys, 4, t);
    cd_yaml_free(&y);
    return err;
}

static void yaml_typed_helpers(void **state)
{
    static const struct {
        const char *text, *detail;
    } bad[] = {
        {"n: 3\n", "t.yaml:1: a thing lacks the required key 'name'"},
        {"name: a\nnmae: b\n", "t.yaml:2: unknown key 'nmae' in a thing (allowed: name, n, on, list)"},
        {"name: a\nname: b\n", "t.yaml:2: key 'name' is given twice in a thing"},
        {"name: too long a name\n", "t.yaml:1: name must be text of 1 to 8 bytes"},
        {"name: a\nn: 101\n", "t.yaml:2: n must be a whole number from -5 to 100"},
        {"name: a\nn: 1x\n", "t.yaml:2: n must be a whole number from -5 to 100"},
        {"name: a\nn: '-'\n", "t.yaml:2: n must be a whole number from -5 to 100"},
        {"name: a\non: yes\n", "t.yaml:2: on must be true or false"},
        {"name: a\nlist: word\n", "t.yaml:2: list must be a list"},
        {"name: a\nlist: [a, [b]]\n", "t.yaml:2: items are words"},
        {"- a\n", "t.yaml:1: a thing must be a mapping"},
    };
    struct typed t;

    assert_int_equal(typed_load("name: abc\nn: -5\non: true\nlist: [x, y, z]\n", &t), CD_OK);
    assert_int_equal(t.name.len, 3); /* borrowed from the document, which is gone */
    assert_int_equal(t.n, -5);
    assert_true(t.on);
    assert_int_equal(t.items, 3);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(typed_load(bad[i].text, &t), CD_ERR_INVALID);
        if (strcmp(cd_err_detail(), bad[i].detail) != 0)
            fail_msg("case %zu: '%s', expected '%s'", i, cd_err_detail(), bad[i].detail);
    }
}

static void log_batches_keep_order_and_whole_lines(void **state)
{
    char path[] = "/tmp/candor-unit-log-XXXXXX";
    int fd = mkstemp(path), saved = dup(STDERR_FILENO);

    assert_true(fd >= 0 && saved >= 0);
    unlink(path);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    cd_log_batched(CD_LOG_INFO, "unit.seq", "\"n\":%d", 0); /* not started: written at once */
    assert_int_equal(cd_log_batch_start(), CD_OK);
    for (int i = 1; i <= 3000; i++)
        if (i % 1000 == 0)
            cd_log(CD_LOG_WARN, "unit.seq", "\"n\":%d", i);
        else
            cd_log_batched(CD_LOG_INFO, "unit.seq", "\"n\":%d", i);
    pthread_t th[LOG_THREADS];
    for (int t = 0; t < LOG_THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, log_many, (void *)(intptr_t)t), 0);
    for (int t = 0; t < LOG_THREADS; t++)
        pthread_join(th[t], NULL);
    cd_log_batched(CD_LOG_INFO, "unit.seq", "\"n\":%d", 3001);
    cd_log_batch_stop();
    cd_log_batched(CD_LOG_INFO, "unit.seq", "\"n\":%d", 3002); /* stopped: at once again */
    fflush(stderr);
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);

    char *all = log_read(fd), *save = NULL;
    int next_seq = 0, next_i[LOG_THREADS] = {0}, lines = 0;
    for (char *line = strtok_r(all, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        int n, t, i;
        lines++;
        assert_true(strncmp(line, "{\"ts\":\"", 7) == 0 && line[strlen(line) - 1] == '}');
        const char *seq = strstr(line, "\"msg\":\"unit.seq\",\"n\":");
        const char *thr = strstr(line, "\"msg\":\"unit.thread\",\"t\":");
        if (seq && sscanf(seq, "\"msg\":\"unit.seq\",\"n\":%d}", &n) == 1) {
            assert_int_equal(n, next_seq);
            next_seq++;
        } else {
            assert_non_null(thr);
            assert_int_equal(sscanf(thr, "\"msg\":\"unit.thread\",\"t\":%d,\"i\":%d}", &t, &i), 2);
            assert_true(t >= 0 && t < LOG_THREADS);
            assert_int_equal(i, next_i[t]); /* one thread's lines in its order */
            next_i[t]++;
        }
    }
    assert_int_equal(next_seq, 3003);
    for (int t = 0; t < LOG_THREADS; t++)
        assert_int_equal(next_i[t], LOG_PER_THREAD);
    assert_int_equal(lines, 3003 + LOG_THREADS * LOG_PER_THREAD);
    free(all);
    close(fd);
}

/* Operations handed to other threads: the wait returns once every one has finished, and sees
 * what each wrote before it said so. */
#define PENDING_OPS 64
struct pending_op {
    struct cd_pending *p;
    int i, result;
};

static void *finish_op(void *arg)
{
    struct pending_op *op = arg;

    usleep((useconds_t)(PENDING_OPS - op->i) * 50); /* finish in another order than started */
    op->result = 42;
    cd_pending_done(op->p);
    return NULL;
}

static void pending_waits_for_every_operation(void **state)
{
    struct cd_pending p = CD_PENDING_INIT;
    struct pending_op ops[PENDING_OPS];
    pthread_t th[PENDING_OPS];

    cd_pending_wait(&p); /* nothing in flight: returns at once */
    for (int i = 0; i < PENDING_OPS; i++) {
        ops[i] = (struct pending_op){&p, i, 0};
        cd_pending_add(&p);
        assert_int_equal(pthread_create(&th[i], NULL, finish_op, &ops[i]), 0);
    }
    cd_pending_wait(&p);
    for (int i = 0; i < PENDING_OPS; i++)
        assert_int_equal(ops[i].result, 42);
    for (int i = 0; i < PENDING_OPS; i++)
        pthread_join(th[i], NULL);
    cd_pending_destroy(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(buf_caps_and_fails_cleanly),
        cmocka_unit_test(pending_waits_for_every_operation),
        cmocka_unit_test(buf_survives_every_allocation_failure),
        cmocka_unit_test(buf_maximum_is_exact),
        cmocka_unit_test(arena_aligns_and_caps),
        cmocka_unit_test(time_round_trips),
        cmocka_unit_test(ids_encode_alike_on_both_paths),
        cmocka_unit_test(ids_sort_by_time_and_validate),
        cmocka_unit_test(encodings_round_trip),
        cmocka_unit_test(utf8_validation),
        cmocka_unit_test(json_strict_access),
        cmocka_unit_test(json_strings_match_jansson),
        cmocka_unit_test(yaml_documents_and_their_errors),
        cmocka_unit_test(yaml_typed_helpers),
        cmocka_unit_test(log_batches_keep_order_and_whole_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
