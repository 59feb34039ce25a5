/* Unit tests for src/audit: appends keep the Merkle nodes in step with the hash chain, a
 * rolled-back savepoint or batch leaves the cached head and frontier harmless, proofs served
 * from audit_nodes verify with the RFC 9162 verifiers, tree heads are signed and checked, and
 * the offline verifiers name the first bad entry. */
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>
#include "unit.h"
#include "gate.h"
#include "audit/audit.h"
#include "audit/audit_int.h"

static char dir[256], db[300], key[300], heads_path[300];

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/candor-test-audit-%d", (int)getpid());
    mkdir(dir, 0700);
    snprintf(db, sizeof db, "%s/candor.db", dir);
    snprintf(key, sizeof key, "%s/signing.key", dir);
    snprintf(heads_path, sizeof heads_path, "%s/audit-heads.jsonl", dir);
    return 0;
}

static int teardown(void **state)
{
    char p[400];
    const char *suffix[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", db, suffix[i]);
        unlink(p);
    }
    unlink(key);
    unlink(heads_path);
    rmdir(dir);
    return 0;
}

static const struct cd_audit_event ev = {"customer.create", "ok", "tok_test", "admin", "unit",
                                         NULL, NULL, "cus_x", NULL, NULL, NULL, NULL,
                                         NULL, NULL};

struct app {
    int n;
    bool fail_after;
};

static enum cd_err append_fn(struct cd_tx *tx, void *ctx)
{
    struct app *a = ctx;
    enum cd_err err = CD_OK;

    for (int i = 0; i < a->n && err == CD_OK; i++)
        err = cd_audit_append(tx, &ev, NULL);
    if (err == CD_OK && a->fail_after)
        return cd_err_set(CD_ERR_CONFLICT, "rolled back on purpose");
    return err;
}

static void append(struct cd_store *s, int n)
{
    struct app a = {n, false};
    assert_int_equal(cd_store_write(s, append_fn, &a), CD_OK);
}

static void trust(struct cd_audit_trusted *t, const struct cd_audit_sth *h, const char *src);

/* The test database with its ledger open and the ledger's public key. */
static void ledger_open(struct cd_store **s, struct cd_audit **a, uint8_t pk[32])
{
    assert_int_equal(cd_store_open(db, s), CD_OK);
    assert_int_equal(cd_audit_open(*s, key, a), CD_OK);
    assert_int_equal(cd_audit_public_key(*a, pk), CD_OK);
}

static void hex32(json_t *o, const char *k, uint8_t out[32])
{
    const char *h = json_string_value(json_object_get(o, k));
    assert_non_null(h);
    assert_int_equal(cd_hex_decode(cd_str_c(h), out, 32), CD_OK);
}

static size_t path_of(json_t *arr, uint8_t (*out)[32])
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        assert_int_equal(cd_hex_decode(cd_str_c(json_string_value(v)), out[i], 32), CD_OK);
    }
    return json_array_size(arr);
}

/* Every entry's inclusion proof in tree size n verifies against root, and its leaf hash is the
 * hash of the bytes the proof returned. */
static void check_inclusion_all(struct cd_store *s, uint64_t n, const uint8_t root[32])
{
    static uint8_t path[CD_MERKLE_MAX_PROOF][32];
    for (uint64_t seq = 1; seq <= n; seq++) {
        json_t *p = NULL;
        uint8_t leaf[32], want[32], r[32];
        assert_int_equal(cd_audit_inclusion(s, seq, n, &p), CD_OK);
        const char *entry = json_string_value(json_object_get(p, "entry"));
        assert_int_equal(cd_merkle_leaf_hash(entry, strlen(entry), want), CD_OK);
        hex32(p, "leaf_hash", leaf);
        hex32(p, "root_hash", r);
        assert_memory_equal(leaf, want, 32);
        assert_memory_equal(r, root, 32);
        size_t len = path_of(json_object_get(p, "audit_path"), path);
        assert_int_equal(cd_merkle_verify_inclusion(leaf, seq - 1, n, (const uint8_t(*)[32])path,
                                                    len, root),
                         CD_OK);
        json_decref(p);
    }
}

static void appends_rollback_proofs_and_heads(void **state)
{
    struct cd_store *s = NULL;
    struct cd_audit *a = NULL;
    struct cd_audit_sth h1, h2, latest;
    struct cd_audit_report rep;
    bool created = false;
    uint8_t pk[32];
    static uint8_t path[CD_MERKLE_MAX_PROOF][32];

    ledger_open(&s, &a, pk);
    assert_int_equal(cd_audit_sth_latest(s, &latest), CD_ERR_NOT_FOUND);

    append(s, 1);
    append(s, 12);
    /* A rolled-back savepoint: the writer's cached frontier saw 5 more leaves that never
     * committed; the next append must notice and reload. */
    struct app bad = {5, true};
    assert_int_equal(cd_store_write(s, append_fn, &bad), CD_ERR_CONFLICT);
    append(s, 1);
    assert_int_equal(cd_audit_publish(a, &h1, &created), CD_OK);
    assert_true(created);
    assert_int_equal(h1.tree_size, 14);
    assert_int_equal(cd_audit_sth_verify(&h1, pk), CD_OK);
    check_inclusion_all(s, 14, h1.root);

    append(s, 23);
    assert_int_equal(cd_audit_publish(a, &h2, &created), CD_OK);
    assert_true(created);
    assert_int_equal(cd_audit_publish(a, &latest, &created), CD_OK);
    assert_false(created); /* no growth: the same head */
    assert_int_equal(latest.tree_size, 37);
    check_inclusion_all(s, 37, h2.root);

    /* Consistency 14 -> 37 verifies against both signed roots. */
    json_t *c = NULL;
    assert_int_equal(cd_audit_consistency(s, 14, 37, &c), CD_OK);
    size_t len = path_of(json_object_get(c, "proof"), path);
    assert_int_equal(cd_merkle_verify_consistency(14, 37, h1.root, h2.root,
                                                  (const uint8_t(*)[32])path, len),
                     CD_OK);
    json_decref(c);

    /* A head with one changed bit no longer verifies. */
    struct cd_audit_sth forged = h2;
    forged.root[0] ^= 1;
    assert_int_equal(cd_audit_sth_verify(&forged, pk), CD_ERR_INTEGRITY);

    /* Nonexistent entries and sizes. */
    json_t *p = NULL;
    assert_int_equal(cd_audit_inclusion(s, 0, 5, &p), CD_ERR_INVALID);
    assert_int_equal(cd_audit_inclusion(s, 6, 5, &p), CD_ERR_NOT_FOUND);
    assert_int_equal(cd_audit_inclusion(s, 1, 38, &p), CD_ERR_NOT_FOUND);
    assert_int_equal(cd_audit_consistency(s, 0, 5, &p), CD_ERR_INVALID);
    assert_int_equal(cd_audit_consistency(s, 6, 5, &p), CD_ERR_INVALID);
    assert_int_equal(cd_audit_consistency(s, 5, 99, &p), CD_ERR_NOT_FOUND);

    assert_int_equal(cd_audit_verify_all(s, pk, NULL, &rep, NULL), CD_OK);
    assert_int_equal(rep.entries, 37);
    assert_int_equal(rep.tree_heads, 2);
    assert_true(rep.nodes > 0);

    /* Export, then verify the export offline. */
    FILE *f = tmpfile();
    uint64_t ne = 0, nh = 0;
    assert_non_null(f);
    assert_int_equal(cd_audit_export(s, f, &ne, &nh, NULL), CD_OK);
    assert_int_equal(ne, 37);
    assert_int_equal(nh, 2);
    rewind(f);
    struct cd_audit_trusted t = {0};
    json_t *hj = NULL;
    assert_int_equal(cd_audit_sth_json(&h2, &hj), CD_OK);
    char *text = json_dumps(hj, JSON_COMPACT);
    json_decref(hj);
    assert_int_equal(cd_audit_trusted_parse(&t, text, strlen(text), "pinned.json"), CD_OK);
    cd_free(text);
    assert_int_equal(t.n, 1);
    assert_int_equal(cd_audit_verify_export(f, pk, &t, &rep, NULL), CD_OK);
    assert_int_equal(rep.tree_heads, 2); /* the two in the file */
    assert_int_equal(rep.trusted, 1);    /* the pinned one, found among them */
    cd_audit_trusted_free(&t);
    fclose(f);

    cd_audit_close(a);
    cd_store_close(s);
}

/* A write that appends n events and then, if told to, fails (its batch is rolled back). */
struct seq_app {
    int n;
    bool fail_after;
    uint64_t last; /* seq of the last event appended by the run that counted */
};

static enum cd_err seq_append_fn(struct cd_tx *tx, void *ctx)
{
    struct seq_app *a = ctx;
    enum cd_err err = CD_OK;

    for (int i = 0; i < a->n && err == CD_OK; i++)
        err = cd_audit_append(tx, &ev, &a->last);
    if (err == CD_OK && a->fail_after)
        return cd_err_set(CD_ERR_CONFLICT, "rolled back on purpose");
    return err;
}

/* Inside one batch the writer takes the ledger's head from its last append instead of reading
 * it back. A write that fails after appending makes the store roll the batch back and run it
 * again with a savepoint per write; both rollbacks must make the next append read the head
 * again, or it would continue from events that were undone (a gap in seq, a broken chain). */
static void head_cache_follows_rollbacks(void **state)
{
    struct cd_store *s = NULL;
    struct cd_audit *a = NULL;
    struct gate g = GATE_INIT;
    struct seq_app ok1 = {2, false, 0}, bad = {3, true, 0}, ok2 = {1, false, 0};
    struct cd_audit_sth h;
    struct cd_audit_report rep;
    bool created = false;
    uint64_t checked = 0, bad_seq = 0;
    uint8_t pk[32];

    ledger_open(&s, &a, pk);
    append(s, 15); /* the next appends cross the first stored Merkle node (16 leaves) */

    gate_close(s, &g);
    assert_int_equal(cd_store_write_async(s, seq_append_fn, &ok1, gate_done, &g), CD_OK);
    assert_int_equal(cd_store_write_async(s, seq_append_fn, &bad, gate_done, &g), CD_OK);
    assert_int_equal(cd_store_write_async(s, seq_append_fn, &ok2, gate_done, &g), CD_OK);
    gate_open_and_wait(&g, 4);

    assert_int_equal(ok1.last, 17);
    assert_int_equal(ok2.last, 18); /* not 21: the failed write's three events are gone */
    append(s, 1);                   /* a new batch continues from the committed head */
    assert_int_equal(cd_audit_verify(s, &checked, &bad_seq, NULL), CD_OK);
    assert_int_equal(checked, 19);
    assert_int_equal(cd_audit_publish(a, &h, &created), CD_OK);
    assert_int_equal(h.tree_size, 19);
    check_inclusion_all(s, 19, h.root);
    assert_int_equal(cd_audit_verify_all(s, pk, NULL, &rep, NULL), CD_OK);
    assert_int_equal(rep.entries, 19);
    cd_audit_close(a);
    cd_store_close(s);
}

static enum cd_err tamper_fn(struct cd_tx *tx, void *ctx)
{
    return cd_tx_exec(tx, ctx, NULL, 0, NULL, NULL, NULL);
}

/* SQL that changes one byte-run of entry SEQ ("unit" becomes "UNIT"): a string literal, as the
 * store's statement cache wants its SQL texts. */
#define ALTER_ENTRY(seq)                                                                       \
    "UPDATE audit_events SET entry = CAST(replace(CAST(entry AS TEXT), 'unit', 'UNIT') AS BLOB)" \
    " WHERE seq = " #seq

/* Changes the ledger with sql, then expects verification to fail at bad_seq, naming detail. */
static void expect_tampered(struct cd_store *s, const uint8_t pk[32], const char *sql,
                            uint64_t bad_seq, const char *detail)
{
    struct cd_audit_report rep;

    assert_int_equal(cd_store_write(s, tamper_fn, (void *)sql), CD_OK);
    assert_int_equal(cd_audit_verify_all(s, pk, NULL, &rep, NULL), CD_ERR_INTEGRITY);
    assert_int_equal(rep.bad_seq, bad_seq);
    if (detail)
        assert_non_null(strstr(cd_err_detail(), detail));
}

static void verify_names_the_first_bad_entry(void **state)
{
    struct cd_store *s = NULL;
    struct cd_audit *a = NULL;
    struct cd_audit_report rep;
    uint8_t pk[32];

    ledger_open(&s, &a, pk);
    append(s, 20);
    assert_int_equal(cd_audit_publish(a, NULL, NULL), CD_OK);
    assert_int_equal(cd_audit_verify_all(s, pk, NULL, &rep, NULL), CD_OK);

    /* A changed node (the lowest stored level, 16 entries each). */
    expect_tampered(s, pk, "UPDATE audit_nodes SET hash = zeroblob(32) WHERE level = 4 AND idx = 0",
                    1, "level 4, index 0");
    /* A row below the lowest stored level is not part of the tree: the shape check names it,
     * before any node comparison. */
    expect_tampered(s, pk, "INSERT INTO audit_nodes(level, idx, hash) VALUES(1, 0, zeroblob(32))",
                    1, "Merkle level 1 holds 1 nodes");
    assert_int_equal(cd_store_write(s, tamper_fn, "DELETE FROM audit_nodes WHERE level = 1"),
                     CD_OK);
    /* The tail cut off after the head of size 20 was signed. */
    expect_tampered(s, pk, "DELETE FROM audit_events WHERE seq > 17", 18, "truncated");
    /* One changed byte in entry 3. */
    expect_tampered(s, pk, ALTER_ENTRY(3), 3, NULL);

    cd_audit_close(a);
    cd_store_close(s);
}

/* The verifier reads rows on one thread and checks them on another, in batches of 512 with 8
 * in flight: a ledger longer than that makes the reader wait for the checker, stop when the
 * checker has failed, and have its own failure (a malformed row) outranked by any failure of an
 * earlier entry, however far apart the two threads are. */
static void verify_ranks_failures_across_threads(void **state)
{
    struct cd_store *s = NULL;
    struct cd_audit *a = NULL;
    struct cd_audit_report rep;
    uint8_t pk[32];
    const int n = 5000;

    ledger_open(&s, &a, pk);
    append(s, n);
    assert_int_equal(cd_audit_publish(a, NULL, NULL), CD_OK);
    assert_int_equal(cd_audit_verify_all(s, pk, NULL, &rep, NULL), CD_OK);
    assert_int_equal(rep.entries, n);
    assert_int_equal(rep.tree_heads, 1);
    assert_int_equal(rep.nodes, n / 16 + n / 32 + n / 64 + n / 128 + n / 256 + n / 512 +
                                    n / 1024 + n / 2048 + n / 4096);

    /* Only the reader sees a malformed row: alone, it is the failure. */
    expect_tampered(s, pk, "UPDATE audit_events SET hash = zeroblob(31) WHERE seq = 4500", 4500,
                    "audit entry 4500 is malformed");
    /* An altered entry long before it ranks first. */
    expect_tampered(s, pk, ALTER_ENTRY(3000), 3000, "audit entry 3000 was altered");
    /* An altered second entry: the checker fails while the reader is still thousands of rows
     * ahead and waiting, which must stop it. */
    expect_tampered(s, pk, ALTER_ENTRY(2), 2, "audit entry 2 was altered");

    cd_audit_close(a);
    cd_store_close(s);
}

/* Out of memory at each allocation the verifier makes on the calling thread is an error, not a
 * crash or a leak, and a retry succeeds. */
static void verify_survives_allocation_failures(void **state)
{
    struct cd_store *s = NULL;
    struct cd_audit *a = NULL;
    struct cd_audit_report rep;
    uint8_t pk[32];

    struct cd_audit_sth h;
    struct cd_audit_trusted t = {0};

    ledger_open(&s, &a, pk);
    append(s, 40);
    assert_int_equal(cd_audit_publish(a, &h, NULL), CD_OK);
    trust(&t, &h, "kept.json"); /* merged with the stored heads, proved consistent */
    for (long k = 1; k < 100; k++) {
        cd_alloc_fail_nth(k);
        enum cd_err err = cd_audit_verify_all(s, pk, &t, &rep, NULL);
        bool hit = cd_alloc_fault_hit();
        cd_alloc_fail_nth(0);
        if (!hit) {
            assert_int_equal(err, CD_OK);
            assert_int_equal(rep.entries, 40);
            assert_int_equal(rep.trusted, 1);
            break;
        }
        assert_int_equal(err, CD_ERR_NOMEM);
    }
    cd_audit_trusted_free(&t);
    cd_audit_close(a);
    cd_store_close(s);
}

/* The canonical bytes are written by hand (src/audit/audit.c); they must stay exactly what
 * jansson's json_dumps(JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII) makes of them, for
 * every string: quotes, backslashes, control characters, DEL, slashes, non-ASCII code points in
 * and above the BMP. Invalid UTF-8 is refused. */
static enum cd_err tricky_fn(struct cd_tx *tx, void *ctx)
{
    struct cd_audit_event e = {"q\"b\\s/\b\f\n\r\t\x01\x1f\x7f", "ok",
                               "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xef\xbf\xbf", "", NULL,
                               "plain", NULL, "cus_1", NULL, "a,b", "\xc2\x80z",
                               "00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff",
                               "R.1,R.2", "reason \"quoted\""};
    return cd_audit_append(tx, &e, NULL);
}

static enum cd_err invalid_fn(struct cd_tx *tx, void *ctx)
{
    struct cd_audit_event e = {.action = "x\xc3", .outcome = "ok"};
    return cd_audit_append(tx, &e, NULL);
}

static enum cd_err entry_row(void *ctx, const struct cd_val *cols, size_t n)
{
    json_error_t jerr;
    json_t *o = json_loadb(cols[0].p, cols[0].len, 0, &jerr);
    char *d = NULL;

    assert_non_null(o);
    d = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
    assert_non_null(d);
    assert_int_equal(strlen(d), cols[0].len);
    assert_memory_equal(d, cols[0].p, cols[0].len);
    (*(int *)ctx)++;
    cd_free(d); /* jansson allocates through cd_malloc (cd_json_init) */
    json_decref(o);
    return CD_OK;
}

static enum cd_err entries_fn(struct cd_tx *tx, void *ctx)
{
    return cd_tx_exec(tx, "SELECT entry FROM audit_events", NULL, 0, entry_row, ctx, NULL);
}

static void canonical_bytes_are_jansson_bytes(void **state)
{
    struct cd_store *s = NULL;
    int n = 0;

    assert_int_equal(cd_store_open(db, &s), CD_OK);
    append(s, 3);
    assert_int_equal(cd_store_write(s, tricky_fn, NULL), CD_OK);
    assert_int_equal(cd_store_write(s, invalid_fn, NULL), CD_ERR_INVALID);
    assert_int_equal(cd_store_read(s, entries_fn, &n), CD_OK);
    assert_int_equal(n, 4);
    cd_store_close(s);
}

/* An event prepared before its write (cd_audit_prepare, as ingestion does on the caller's
 * thread) is appended as the same entry as the event itself: the same bytes up to "seq", every
 * entry still jansson's bytes, the chain and tree intact. The prepared event serves again after
 * a write that appended it was rolled back. */
static const struct cd_audit_event tricky_ev = {
    "q\"b\\s/\b\f\n\r\t\x01\x1f\x7f", "ok", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "", NULL, "plain",
    NULL, "cus_1", "int_1", "a,b", "\xc2\x80z", NULL, "R.1,R.2",
    "reason \"quoted\""};

struct prep_app {
    struct cd_audit_prepared *p;
    bool plain_too; /* also append tricky_ev itself */
    bool fail_after;
};

static enum cd_err prep_fn(struct cd_tx *tx, void *ctx)
{
    struct prep_app *a = ctx;
    enum cd_err err = cd_audit_append_prepared(tx, a->p, NULL);

    if (err == CD_OK && a->plain_too)
        err = cd_audit_append(tx, &tricky_ev, NULL);
    if (err == CD_OK && a->fail_after)
        return cd_err_set(CD_ERR_CONFLICT, "rolled back on purpose");
    return err;
}

static enum cd_err head_row_bytes(void *ctx, const struct cd_val *cols, size_t n)
{
    struct cd_buf *b = ctx;
    const char *seq = memmem(cols[0].p, cols[0].len, "\"seq\":", 6);

    assert_non_null(seq);
    assert_int_equal(cd_buf_append(b, cols[0].p, (size_t)(seq - (const char *)cols[0].p)), CD_OK);
    return cd_buf_putc(b, '|');
}

static enum cd_err heads_fn(struct cd_tx *tx, void *ctx)
{
    return cd_tx_exec(tx, "SELECT entry FROM audit_events ORDER BY seq", NULL, 0, head_row_bytes,
                      ctx, NULL);
}

static void prepared_events_are_the_same_entries(void **state)
{
    struct cd_store *s = NULL;
    struct cd_audit_prepared p, big;
    struct cd_audit_report rep;
    struct cd_buf heads = CD_BUF_INIT(1 << 16);
    int n = 0;
    char name[5000];

    memset(name, 'x', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    struct cd_audit_event too_big = ev;
    too_big.actor_name = name;
    assert_int_equal(cd_audit_prepare(&too_big, &big), CD_ERR_TOO_BIG);
    struct cd_audit_event invalid = {.action = "x\xc3", .outcome = "ok"};
    assert_int_equal(cd_audit_prepare(&invalid, &big), CD_ERR_INVALID);

    assert_int_equal(cd_store_open(db, &s), CD_OK);
    assert_int_equal(cd_audit_prepare(&tricky_ev, &p), CD_OK);
    append(s, 3);
    struct prep_app a = {&p, true, false};
    assert_int_equal(cd_store_write(s, prep_fn, &a), CD_OK);
    a = (struct prep_app){&p, false, true};
    assert_int_equal(cd_store_write(s, prep_fn, &a), CD_ERR_CONFLICT);
    a = (struct prep_app){&p, false, false};
    assert_int_equal(cd_store_write(s, prep_fn, &a), CD_OK);
    append(s, 20); /* completes a 16-leaf subtree over prepared entries */
    cd_audit_prepared_free(&p);
    cd_audit_prepared_free(&p); /* safe on a freed one */

    assert_int_equal(cd_store_read(s, entries_fn, &n), CD_OK);
    assert_int_equal(n, 26);
    assert_int_equal(cd_store_read(s, heads_fn, &heads), CD_OK);
    /* Entries 4, 5 and 6: the prepared event, the event itself, the prepared one again. */
    const char *e = heads.p;
    for (int i = 0; i < 3; i++)
        e = strchr(e, '|') + 1;
    const char *e5 = strchr(e, '|') + 1, *e6 = strchr(e5, '|') + 1, *e7 = strchr(e6, '|') + 1;
    assert_int_equal(e5 - e, e6 - e5);
    assert_memory_equal(e, e5, (size_t)(e5 - e));
    assert_int_equal(e7 - e6, e5 - e);
    assert_memory_equal(e, e6, (size_t)(e5 - e));
    assert_int_equal(cd_audit_verify_all(s, NULL, NULL, &rep, NULL), CD_OK);
    assert_int_equal(rep.entries, 26);
    cd_buf_free(&heads);
    cd_store_close(s);
}

/* ---- a ledger from before migration 6 ---- */

static enum cd_err put_low(void *ctx, unsigned level, uint64_t index, const uint8_t *hash)
{
    struct cd_val p[] = {CD_VINT(level), CD_VINT(index), CD_VBLOB(hash, 32)};

    if (level >= 4)
        return CD_OK; /* already there */
    return cd_tx_exec(ctx, "INSERT INTO audit_nodes(level, idx, hash) VALUES($1,$2,$3)", p, 3,
                      NULL, NULL, NULL);
}

struct old_tree {
    struct cd_tx *tx;
    struct cd_merkle_frontier f;
};

static enum cd_err old_leaf_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct old_tree *t = ctx;
    uint8_t leaf[32];
    enum cd_err err = cd_merkle_leaf_hash(cols[0].p, cols[0].len, leaf);

    return err != CD_OK ? err : cd_merkle_append(&t->f, leaf, put_low, t->tx);
}

/* Puts the database back to what migrations 1-5 left: every Merkle level stored (levels 0-3
 * added from the entries), audit_by_customer, schema version 5. */
static enum cd_err make_old_fn(struct cd_tx *tx, void *ctx)
{
    struct old_tree *t = ctx;
    enum cd_err err;

    t->tx = tx;
    if ((err = cd_tx_exec(tx, "SELECT entry FROM audit_events ORDER BY seq", NULL, 0,
                          old_leaf_row, t, NULL)) != CD_OK)
        return err;
    if ((err = cd_tx_exec(tx, "CREATE INDEX audit_by_customer ON audit_events(customer_id, seq)",
                          NULL, 0, NULL, NULL, NULL)) != CD_OK ||
        (err = cd_tx_exec(tx, "DROP INDEX audit_access_by_customer", NULL, 0, NULL, NULL,
                          NULL)) != CD_OK)
        return err;
    /* Migrations after 6 run again on reopening: what they made is undone first (the last
     * migration's first). */
    static const char *const undo[] = {
        "DROP TABLE portal_sessions", "DROP TABLE portal_challenges",
        "DROP TABLE staff_sessions", "DROP TABLE staff",
        "DROP TABLE dsar_requests", "DROP TABLE dsar_history", "DROP TABLE dsar_tombstones",
        "DROP TABLE dsar_verifications",
        "DROP TABLE outbox_events", "DROP TABLE webhook_subscriptions",
        "DROP TABLE webhook_deliveries", "DROP TABLE recipients", "DROP TABLE recipient_customers",
        "DROP TABLE recipient_notices", "DROP TABLE legal_holds", "DROP TABLE retention_runs",
        "DROP INDEX interactions_legacy_seal", "ALTER TABLE interactions DROP COLUMN legacy_seal",
        "ALTER TABLE consent_events DROP COLUMN audit_seq",
        "DROP TABLE identity_links", "DROP TABLE identity_reindex",
        "DROP INDEX identities_by_skeleton", "ALTER TABLE identities DROP COLUMN skeleton",
        "ALTER TABLE identities DROP COLUMN beyond_ascii", "DROP TABLE thread_reseal",
        "ALTER TABLE interactions DROP COLUMN thread",
        "ALTER TABLE interactions DROP COLUMN thread_hash", "DROP TABLE idempotency",
        "ALTER TABLE idempotency_plain RENAME TO idempotency", "DROP TABLE auth_epoch",
        "ALTER TABLE tokens DROP COLUMN expires_at"};
    for (size_t i = 0; i < sizeof undo / sizeof undo[0]; i++)
        if ((err = cd_tx_exec(tx, undo[i], NULL, 0, NULL, NULL, NULL)) != CD_OK)
            return err;
    return cd_tx_exec(tx, "DELETE FROM schema_version WHERE version > 5", NULL, 0, NULL, NULL,
                      NULL);
}

static enum cd_err count_fn(struct cd_tx *tx, void *ctx)
{
    int64_t *out = ctx;
    enum cd_err err;

    if ((err = cd_tx_int(tx, "SELECT count(*) FROM audit_nodes WHERE level < 4", NULL, 0,
                         &out[0])) != CD_OK)
        return err;
    return cd_tx_int(tx, "SELECT count(*) FROM sqlite_master WHERE name = 'audit_by_customer'",
                     NULL, 0, &out[1]);
}

/* Opening a ledger written before migration 6 drops the stored levels below 4 and the unused
 * customer index; the ledger still verifies against its signed head, serves proofs that verify,
 * and takes appends. */
static void old_ledger_migrates(void **state)
{
    struct cd_store *s = NULL;
    struct cd_audit *a = NULL;
    struct cd_audit_sth h;
    struct cd_audit_report rep;
    struct old_tree *t = cd_calloc(1, sizeof *t);
    int64_t counts[2] = {0, 0};
    uint8_t pk[32];

    assert_non_null(t);
    ledger_open(&s, &a, pk);
    append(s, 45);
    assert_int_equal(cd_audit_publish(a, &h, NULL), CD_OK);
    assert_int_equal(cd_store_write(s, make_old_fn, t), CD_OK);
    assert_int_equal(cd_store_read(s, count_fn, counts), CD_OK);
    assert_int_equal(counts[0], 45 + 22 + 11 + 5); /* levels 0-3 of 45 leaves */
    assert_int_equal(counts[1], 1);
    cd_audit_close(a);
    cd_store_close(s);

    assert_int_equal(cd_store_open(db, &s), CD_OK);
    assert_int_equal(cd_audit_open(s, key, &a), CD_OK);
    assert_int_equal(cd_store_read(s, count_fn, counts), CD_OK);
    assert_int_equal(counts[0], 0);
    assert_int_equal(counts[1], 0);
    assert_int_equal(cd_audit_verify_all(s, pk, NULL, &rep, NULL), CD_OK);
    assert_int_equal(rep.entries, 45);
    assert_int_equal(rep.nodes, 2 + 1); /* level 4: two nodes, level 5: one */
    check_inclusion_all(s, 45, h.root);
    append(s, 3);
    assert_int_equal(cd_audit_verify_all(s, pk, NULL, &rep, NULL), CD_OK);
    assert_int_equal(rep.entries, 48);
    cd_audit_close(a);
    cd_store_close(s);
    cd_free(t);
}

/* Writes a customer's read events between many others. */
static enum cd_err reads_fn(struct cd_tx *tx, void *ctx)
{
    enum cd_err err = CD_OK;
    (void)ctx;

    for (int i = 0; i < 400 && err == CD_OK; i++) {
        struct cd_audit_event e = ev;
        e.customer_id = i % 2 ? "cus_x" : "cus_y";
        if (i % 80 == 7) { /* five reads of cus_x's data, "timeline.read" or "customer.read" */
            e.customer_id = "cus_x";
            e.action = i % 160 == 7 ? "timeline.read" : "customer.read";
            e.purpose = "service";
        } else if (i == 201) { /* and one refused attempt on it */
            e.customer_id = "cus_x";
            e.action = "access.denied";
            e.outcome = "denied";
            e.purpose = "service";
        } else if (i % 100 == 3) { /* four of cus_y's */
            e.customer_id = "cus_y";
            e.action = "timeline.read";
        }
        err = cd_audit_append(tx, &e, NULL);
    }
    return err;
}

static enum cd_err plan_row(void *ctx, const struct cd_val *cols, size_t n)
{
    char *plan = ctx;
    if (n >= 4 && cols[3].type == CD_VAL_TEXT)
        snprintf(plan + strlen(plan), 512 - strlen(plan), "%.*s;", (int)cols[3].len, (const char *)cols[3].p);
    return CD_OK;
}

static enum cd_err plan_fn(struct cd_tx *tx, void *ctx)
{
    struct cd_val p[] = {CD_VINT(INT64_MAX), CD_VCSTR("cus_x"), CD_VNULL, CD_VNULL,
                         CD_VNULL, CD_VNULL, CD_VINT(51)};
    return cd_tx_exec(tx, "EXPLAIN QUERY PLAN " CD__AUDIT_ACCESS_LOG_SQL, p, 7, plan_row, ctx,
                      NULL);
}

/* The access log shows the customer's read events and refused attempts only, newest first,
 * page after page; and SQLite finds them through the partial index of those events, not by
 * walking the ledger (on a ledger of millions of ingestions, the walk took seconds per page). */
static void access_log_walks_the_reads_index(void **state)
{
    struct cd_store *s = NULL;
    json_t *page = NULL;
    char cursor[32] = "", plan[512] = "";
    int64_t last = INT64_MAX;
    int seen = 0;

    assert_int_equal(cd_store_open(db, &s), CD_OK);
    assert_int_equal(cd_store_write(s, reads_fn, NULL), CD_OK);
    do {
        assert_int_equal(cd_audit_access_log(s, CD_STR("cus_x"), cd_str_c(cursor), 2, &page),
                         CD_OK);
        size_t i;
        json_t *it;
        json_array_foreach(json_object_get(page, "items"), i, it)
        {
            const char *action = json_string_value(json_object_get(it, "action"));
            assert_true(strcmp(action, "timeline.read") == 0 ||
                        strcmp(action, "customer.read") == 0 ||
                        strcmp(action, "access.denied") == 0);
            assert_string_equal(json_string_value(json_object_get(it, "purpose")), "service");
            assert_null(json_object_get(it, "actor_token")); /* never shown to the customer */
            seen++;
        }
        const char *next = json_string_value(json_object_get(page, "next_cursor"));
        snprintf(cursor, sizeof cursor, "%s", next ? next : "");
        if (next) {
            assert_true(strtoll(next, NULL, 10) < last);
            last = strtoll(next, NULL, 10);
        }
        json_decref(page);
    } while (cursor[0]);
    assert_int_equal(seen, 6);
    assert_int_equal(cd_store_read(s, plan_fn, plan), CD_OK);
    assert_non_null(strstr(plan, "audit_access_by_customer"));
    cd_store_close(s);
}

/* ---- index columns ---- */

/* Every column a listing filters on (customer_id, action, actor_token, ts) is checked against
 * the hashed entry: an edited column is named with its entry, though the chain is intact; and
 * the access log refuses a read moved into another customer's log instead of showing it. */
static void verify_checks_index_columns(void **state)
{
    struct cd_store *s = NULL;
    struct cd_audit *a = NULL;
    struct cd_audit_report rep;
    json_t *page = NULL;
    uint8_t pk[32];
    static const struct {
        const char *sql, *column;
    } edits[] = {
        {"UPDATE audit_events SET customer_id = 'cus_y' WHERE seq = 8", "customer_id"},
        {"UPDATE audit_events SET customer_id = NULL WHERE seq = 8", "customer_id"},
        {"UPDATE audit_events SET action = 'customer.read' WHERE seq = 8", "action"},
        {"UPDATE audit_events SET actor_token = 'tok_other' WHERE seq = 8", "actor_token"},
        {"UPDATE audit_events SET ts = ts - 1000 WHERE seq = 8", "ts"},
    };

    ledger_open(&s, &a, pk);
    assert_int_equal(cd_store_write(s, reads_fn, NULL), CD_OK);
    assert_int_equal(cd_audit_verify_all(s, pk, NULL, &rep, NULL), CD_OK);
    /* The writer's connection keeps the temporary copy of the row between writes. */
    assert_int_equal(cd_store_write(s, tamper_fn, "CREATE TEMP TABLE saved AS SELECT * FROM"
                                                  " audit_events WHERE seq = 8"),
                     CD_OK);
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        char detail[100];
        snprintf(detail, sizeof detail, "audit entry 8: its %s column was altered",
                 edits[i].column);
        expect_tampered(s, pk, edits[i].sql, 8, detail);
        assert_int_equal(cd_store_write(s, tamper_fn,
                                        "UPDATE audit_events SET"
                                        " customer_id = (SELECT customer_id FROM saved),"
                                        " action = (SELECT action FROM saved),"
                                        " actor_token = (SELECT actor_token FROM saved),"
                                        " ts = (SELECT ts FROM saved) WHERE seq = 8"),
                         CD_OK);
        assert_int_equal(cd_audit_verify_all(s, pk, NULL, &rep, NULL), CD_OK);
    }
    /* cus_y's read moved into cus_x's access log: refused, counted. */
    uint64_t before = cd_integrity_total(CD_INTEGRITY_AUDIT_ROW);
    assert_int_equal(cd_store_write(s, tamper_fn,
                                    "UPDATE audit_events SET customer_id = 'cus_x' WHERE seq = 4"),
                     CD_OK);
    assert_int_equal(cd_audit_access_log(s, CD_STR("cus_x"), CD_STR_NULL, 50, &page),
                     CD_ERR_INTEGRITY);
    assert_non_null(strstr(cd_err_detail(), "audit entry 4: its customer_id column"));
    assert_int_equal(cd_integrity_total(CD_INTEGRITY_AUDIT_ROW), before + 1);
    cd_audit_close(a);
    cd_store_close(s);
}

/* ---- trusted heads ---- */

static void trust(struct cd_audit_trusted *t, const struct cd_audit_sth *h, const char *src)
{
    json_t *o = NULL;
    assert_int_equal(cd_audit_sth_json(h, &o), CD_OK);
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    assert_int_equal(cd_audit_trusted_parse(t, text, strlen(text), src), CD_OK);
    cd_free(text);
}

/* Heads kept outside the database catch what the database alone cannot show: the tail cut
 * together with the heads that covered it, and heads deleted from audit_tree_heads. Each
 * trusted head found in the ledger has its RFC 9162 consistency proof to the whole ledger
 * checked. */
static void trusted_heads_catch_truncation_and_deleted_heads(void **state)
{
    struct cd_store *s = NULL;
    struct cd_audit *a = NULL;
    struct cd_audit_report rep;
    struct cd_audit_sth h10, h30;
    struct cd_audit_trusted t = {0};
    uint8_t pk[32];

    ledger_open(&s, &a, pk);
    append(s, 10);
    assert_int_equal(cd_audit_publish(a, &h10, NULL), CD_OK);
    append(s, 20);
    assert_int_equal(cd_audit_publish(a, &h30, NULL), CD_OK);
    append(s, 7);
    trust(&t, &h10, "receipt.json");
    trust(&t, &h30, "witness.jsonl");
    assert_int_equal(cd_audit_verify_all(s, pk, &t, &rep, NULL), CD_OK);
    assert_int_equal(rep.trusted, 2);
    assert_int_equal(rep.tree_heads, 2);

    /* A trusted head signed by another key. */
    struct cd_audit_trusted forged = {0};
    struct cd_audit_sth f = h10;
    f.signature[0] ^= 1;
    trust(&forged, &f, "forged.json");
    assert_int_equal(cd_audit_verify_all(s, pk, &forged, &rep, NULL), CD_ERR_INTEGRITY);
    assert_non_null(strstr(cd_err_detail(), "does not verify (from forged.json)"));
    cd_audit_trusted_free(&forged);

    /* The heads deleted from the database: the database alone still verifies... */
    assert_int_equal(cd_store_write(s, tamper_fn, "DELETE FROM audit_tree_heads"), CD_OK);
    assert_int_equal(cd_audit_verify_all(s, pk, NULL, &rep, NULL), CD_OK);
    /* ... the heads kept elsewhere do not. */
    assert_int_equal(cd_audit_verify_all(s, pk, &t, &rep, NULL), CD_ERR_INTEGRITY);
    assert_non_null(strstr(cd_err_detail(), "size 10 (from receipt.json) is not in the database"));
    /* The tail cut below a trusted head (and the heads gone with it). */
    assert_int_equal(cd_store_write(s, tamper_fn, "DELETE FROM audit_events WHERE seq > 25"),
                     CD_OK);
    /* The nodes made over the cut entries go too, so the database alone is consistent. */
    assert_int_equal(cd_store_write(s, tamper_fn, "DELETE FROM audit_nodes WHERE level > 4 OR"
                                                  " idx > 0"),
                     CD_OK);
    assert_int_equal(cd_audit_verify_all(s, pk, NULL, &rep, NULL), CD_OK);
    assert_int_equal(cd_audit_verify_all(s, pk, &t, &rep, NULL), CD_ERR_INTEGRITY);
    assert_int_equal(rep.bad_seq, 26);
    assert_non_null(strstr(cd_err_detail(), "30 entries (from witness.jsonl) covers it"));
    assert_non_null(strstr(cd_err_detail(), "truncated"));
    cd_audit_trusted_free(&t);
    cd_audit_close(a);
    cd_store_close(s);
}

/* What a verifier is given: a head, JSON lines of heads (a heads file, a witness's log), a
 * consent receipt or the API's receipt answer carrying one; a partial last line (a crash while
 * appending) is skipped, anything else that is no head is refused with its line. */
static void trusted_heads_are_read_from_every_form(void **state)
{
    struct cd_audit_trusted t = {0};
    struct cd_audit_sth h;
    json_t *o = NULL;

    memset(&h, 0, sizeof h);
    h.tree_size = 42;
    h.timestamp_ms = 1700000000000;
    h.root[0] = 1;
    assert_int_equal(cd_audit_sth_json(&h, &o), CD_OK);
    char *one = json_dumps(o, JSON_COMPACT);
    json_t *rcpt = json_pack("{s:s,s:O}", "consentReceiptID", "cev_x", "auditTreeHead", o);
    json_t *answer = json_pack("{s:s,s:O}", "payload", "x", "receipt", rcpt);
    char *r1 = json_dumps(rcpt, JSON_COMPACT), *r2 = json_dumps(answer, JSON_COMPACT);
    json_decref(o);
    json_decref(rcpt);
    json_decref(answer);
    struct cd_buf lines = CD_BUF_INIT(1 << 16);
    assert_int_equal(cd_buf_printf(&lines, "%s\n\n%s\n{\"tree_si", one, one), CD_OK);

    assert_int_equal(cd_audit_trusted_parse(&t, one, strlen(one), "head.json"), CD_OK);
    assert_int_equal(cd_audit_trusted_parse(&t, r1, strlen(r1), "receipt.json"), CD_OK);
    assert_int_equal(cd_audit_trusted_parse(&t, r2, strlen(r2), "answer.json"), CD_OK);
    assert_int_equal(cd_audit_trusted_parse(&t, lines.p, lines.len, "heads.jsonl"), CD_OK);
    assert_int_equal(t.n, 5);
    assert_int_equal(t.skipped, 1);
    for (size_t i = 0; i < t.n; i++)
        assert_int_equal(t.heads[i].tree_size, 42);
    assert_string_equal(t.source[4], "heads.jsonl:3");
    assert_int_equal(cd_audit_trusted_parse(&t, "{\"a\":1}\n{\"b\":2}\n", 16, "w.jsonl"),
                     CD_ERR_INVALID);
    assert_non_null(strstr(cd_err_detail(), "w.jsonl:1: neither a tree head"));
    assert_int_equal(cd_audit_trusted_parse(&t, "nope\n{}\n", 8, "w.jsonl"), CD_ERR_INVALID);
    assert_non_null(strstr(cd_err_detail(), "w.jsonl:1: not JSON"));
    assert_int_equal(cd_audit_trusted_load(&t, "/nonexistent/heads", true), CD_OK);
    assert_int_equal(cd_audit_trusted_load(&t, "/nonexistent/heads", false), CD_ERR_IO);
    cd_audit_trusted_free(&t);
    cd_buf_free(&lines);
    cd_free(one);
    cd_free(r1);
    cd_free(r2);
}

/* ---- the publisher ---- */

static enum cd_err count_heads_fn(struct cd_tx *tx, void *ctx)
{
    return cd_tx_int(tx, "SELECT count(*) FROM audit_tree_heads", NULL, 0, ctx);
}

static int64_t stored_heads(struct cd_store *s)
{
    int64_t n = -1;
    assert_int_equal(cd_store_read(s, count_heads_fn, &n), CD_OK);
    return n;
}

/* The publisher signs a head at start, when every_entries entries were appended (long before
 * its interval), and at a clean shutdown; each lands in the heads file too, one line each, the
 * last one over the whole ledger. A partial last line left by a crash is cut at the next
 * start, and heads the file missed are caught up. */
static void publisher_signs_at_start_every_n_and_at_stop(void **state)
{
    struct cd_store *s = NULL;
    struct cd_audit *a = NULL;
    struct cd_audit_policy policy = {3600, 10, heads_path};
    struct cd_audit_sth latest;
    struct cd_audit_trusted t = {0};
    struct cd_audit_report rep;
    uint8_t pk[32];

    ledger_open(&s, &a, pk);
    append(s, 3);
    assert_int_equal(cd_audit_publisher_start(a, &policy), CD_OK);
    assert_int_equal(stored_heads(s), 1); /* the start of service */
    assert_int_equal(cd_audit_sth_latest(s, &latest), CD_OK);
    assert_int_equal(latest.tree_size, 3);
    append(s, 12);
    for (int i = 0; i < 200 && stored_heads(s) < 2; i++)
        usleep(10000);
    assert_int_equal(stored_heads(s), 2); /* 12 >= 10 entries: signed well before an hour */
    append(s, 4);
    cd_audit_close(a); /* the clean shutdown */
    assert_int_equal(cd_audit_sth_latest(s, &latest), CD_OK);
    assert_int_equal(latest.tree_size, 19);
    assert_int_equal(stored_heads(s), 3);
    assert_int_equal(cd_audit_trusted_load(&t, heads_path, false), CD_OK);
    assert_int_equal(t.n, 3);
    assert_int_equal(t.heads[2].tree_size, 19);
    assert_memory_equal(t.heads[2].root, latest.root, 32);
    assert_int_equal(cd_audit_verify_all(s, pk, &t, &rep, NULL), CD_OK);
    assert_int_equal(rep.trusted, 3);
    cd_audit_trusted_free(&t);

    /* A crash mid-append left half a line; a head was signed that the file never got. */
    FILE *f = fopen(heads_path, "a");
    assert_non_null(f);
    fputs("{\"key_id\":\"ab", f);
    fclose(f);
    assert_int_equal(cd_audit_open(s, key, &a), CD_OK);
    append(s, 2);
    assert_int_equal(cd_audit_publish(a, NULL, NULL), CD_OK); /* no heads file yet */
    assert_int_equal(cd_audit_publisher_start(a, &policy), CD_OK);
    cd_audit_close(a);
    assert_int_equal(cd_audit_trusted_load(&t, heads_path, false), CD_OK);
    assert_int_equal(t.skipped, 0);
    assert_int_equal(t.n, 4); /* the cut line is gone, the missed head caught up */
    assert_int_equal(t.heads[3].tree_size, 21);
    assert_int_equal(cd_audit_verify_all(s, pk, &t, &rep, NULL), CD_OK);
    cd_audit_trusted_free(&t);

    struct cd_audit_policy bad = {0, 10, NULL};
    assert_int_equal(cd_audit_open(s, key, &a), CD_OK);
    assert_int_equal(cd_audit_publisher_start(a, &bad), CD_ERR_INVALID);
    cd_audit_close(a);
    cd_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(appends_rollback_proofs_and_heads, setup, teardown),
        cmocka_unit_test_setup_teardown(head_cache_follows_rollbacks, setup, teardown),
        cmocka_unit_test_setup_teardown(verify_names_the_first_bad_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(verify_ranks_failures_across_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(verify_survives_allocation_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(canonical_bytes_are_jansson_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(prepared_events_are_the_same_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(old_ledger_migrates, setup, teardown),
        cmocka_unit_test_setup_teardown(access_log_walks_the_reads_index, setup, teardown),
        cmocka_unit_test_setup_teardown(verify_checks_index_columns, setup, teardown),
        cmocka_unit_test_setup_teardown(trusted_heads_catch_truncation_and_deleted_heads, setup,
                                        teardown),
        cmocka_unit_test(trusted_heads_are_read_from_every_form),
        cmocka_unit_test_setup_teardown(publisher_signs_at_start_every_n_and_at_stop, setup,
                                        teardown),
    };
    cd_json_init();
    if (cd_crypto_init() != CD_OK)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
