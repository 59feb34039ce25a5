/* Audit ledger benchmark, SQLite-backed, in one run:
 *
 * (a) a raw SHA-256 chain h_i = SHA-256(h_{i-1} || entry_i) over the exact entry bytes of a
 *     ledger of N entries, held in memory (the floor): the fastest of three SHA-256s, each
 *     printed — Candor's one-shot (OpenSSL's SHA256_Init/Update/Final behind cd_crypto), OpenSSL
 *     EVP with one reused context, and OpenSSL's low-level calls directly, so the ratio is
 *     never taken against a slow floor;
 * (a') the same chain while reading the bytes from SQLite in seq order (the floor for any
 *     verifier that reads the database);
 * (b) cd_audit_verify_all, what `candor audit verify --data` runs: chain, sequence, the tree
 *     recomputed from the entries against every stored node and every tree head; its CPU time
 *     is printed too (two threads, which a shared machine does not always run at once: the
 *     ratio needs both cores);
 * (c) a page of one customer's access log (one event in 4000 is a read of their data) through
 *     its partial index, against the compliance listing filtered by the same customer, which
 *     walks the ledger (the access log's query before migration 8);
 * then inclusion-proof latency at T >= 10 million leaves, read as the ledger serves proofs
 * (audit_nodes from level CD__AUDIT_NODE_MIN_LEVEL up, the lower levels recomputed from the
 * entries), the tables built quickly by direct batched inserts (entry i = i as 64 digits).
 * Medians of several runs.
 *
 * Usage: bench_audit_verify [entries] [tree-size] [dir]  (defaults 200000, 10000000, /tmp) */
#include "audit/audit_int.h"
#include "bench_util.h"
#include "crypto/crypto_int.h"
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_Init and co., which Candor's one-shot also uses */
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RUNS 3
#define PROOFS 20000
#define BATCH 200000
#define READ_EVERY 4000
#define READER "cus_01READERREADERREADERREADER"

static void die(const char *what, enum cd_err err)
{
    fprintf(stderr, "bench_audit_verify: %s: %s (%s)\n", what, cd_err_name(err), cd_err_detail());
    exit(1);
}

/* CPU seconds used by the whole process so far (all threads). */
static double cpu_secs(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- building a ledger ---- */

struct build {
    uint64_t n, done;
};

static enum cd_err append_batch(struct cd_tx *tx, void *ctx)
{
    struct build *b = ctx;
    struct cd_audit_event ev = {"interaction.ingest", "ok", "tok_01BENCHBENCHBENCHBENCHBENCH",
                                "integration", "bench loader", "service",
                                "req_01BENCHBENCHBENCHBENCHBENCH", "cus_01BENCHBENCHBENCHBENCHBENCH",
                                "int_01BENCHBENCHBENCHBENCHBENCH", "contact,conversation", NULL,
                                NULL, NULL, NULL};
    struct cd_audit_event read = ev;
    enum cd_err err = CD_OK;

    /* One event in READ_EVERY is a read of one customer's data: what the access log shows. */
    read.action = "timeline.read";
    read.customer_id = READER;
    for (uint64_t i = 0; i < BATCH && b->done < b->n && err == CD_OK; i++, b->done++)
        err = cd_audit_append(tx, b->done % READ_EVERY == READ_EVERY - 1 ? &read : &ev, NULL);
    return err;
}

/* Median latency, in µs, of `calls` first pages (50 events) of READER's access log, or of the
 * compliance listing filtered by the same customer (which walks the ledger from its end). */
static double page_latency(struct cd_store *s, bool access_log, int calls)
{
    double lat[64];
    struct cd_audit_query q = {CD_STR(READER), CD_STR_NULL, CD_STR_NULL, CD_STR_NULL, 0, 0, 50};

    if (calls > 64)
        calls = 64;
    for (int i = 0; i < calls; i++) {
        json_t *out = NULL;
        uint64_t t0 = cd_mono_ns();
        enum cd_err err = access_log ? cd_audit_access_log(s, q.customer_id, q.cursor, 50, &out)
                                     : cd_audit_list(s, &q, &out);
        lat[i] = (double)(cd_mono_ns() - t0) / 1e3;
        if (err != CD_OK || json_array_size(json_object_get(out, "items")) == 0)
            die("access log", err != CD_OK ? err : CD_ERR_INTEGRITY);
        json_decref(out);
    }
    return bench_median(lat, calls);
}

struct mem {
    char *bytes;
    size_t len, cap;
    size_t *off;
    uint64_t n;
};

static enum cd_err mem_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct mem *m = ctx;
    if (m->len + cols[0].len > m->cap) {
        m->cap = 2 * (m->cap + cols[0].len);
        if ((m->bytes = cd_realloc(m->bytes, m->cap)) == NULL)
            return CD_ERR_NOMEM;
    }
    memcpy(m->bytes + m->len, cols[0].p, cols[0].len);
    m->off[m->n++] = m->len;
    m->len += cols[0].len;
    return CD_OK;
}

static enum cd_err mem_fn(struct cd_tx *tx, void *ctx)
{
    return cd_tx_exec(tx, "SELECT entry FROM audit_events ORDER BY seq", NULL, 0, mem_row, ctx,
                      NULL);
}

struct sqlchain {
    uint8_t h[32];
};

static enum cd_err sqlchain_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct sqlchain *c = ctx;
    return cd__audit_chain_hash(c->h, cols[0].p, cols[0].len, c->h);
}

static enum cd_err sqlchain_fn(struct cd_tx *tx, void *ctx)
{
    return cd_tx_exec(tx, "SELECT entry FROM audit_events ORDER BY seq", NULL, 0, sqlchain_row,
                      ctx, NULL);
}

/* ---- the big node table ---- */

struct nodes_build {
    uint64_t tree, done;
    struct cd_merkle_frontier f;
};

/* Entry k (0-based) of the big table: ENTRY_LEN bytes naming k. Proofs recompute the subtrees
 * below CD__AUDIT_NODE_MIN_LEVEL from up to 2 x 8 entries, so the entries are stored too;
 * shorter than real ones (~380 B) to keep the file near 1 GB, which puts about 40 of them on a
 * page instead of 10. */
#define ENTRY_LEN 64

static enum cd_err nodes_batch(struct cd_tx *tx, void *ctx)
{
    struct nodes_build *nb = ctx;
    uint8_t leaf[32], zero[32] = {0};
    char entry[ENTRY_LEN + 1];
    enum cd_err err = CD_OK;

    for (uint64_t i = 0; i < 1000000 && nb->done < nb->tree && err == CD_OK; i++, nb->done++) {
        uint64_t k = nb->done;
        snprintf(entry, sizeof entry, "%0*llu", ENTRY_LEN, (unsigned long long)k);
        struct cd_val p[] = {CD_VINT(k + 1), CD_VINT(0), CD_VBLOB(entry, ENTRY_LEN),
                             CD_VBLOB(zero, 32), CD_VBLOB(zero, 32)};
        if ((err = cd_tx_exec(tx, "INSERT INTO audit_events(seq, ts, entry, prev_hash, hash)"
                                  " VALUES($1,$2,$3,$4,$5)",
                              p, 5, NULL, NULL, NULL)) == CD_OK &&
            (err = cd_merkle_leaf_hash(entry, ENTRY_LEN, leaf)) == CD_OK)
            err = cd_merkle_append(&nb->f, leaf, cd__audit_node_put, tx);
    }
    return err;
}

struct proofs {
    uint64_t tree;
    uint64_t *lat;
    uint64_t seed;
};

static enum cd_err proofs_fn(struct cd_tx *tx, void *ctx)
{
    struct proofs *p = ctx;
    struct cd_merkle_proof pr;
    uint8_t root[32];
    enum cd_err err;

    for (int i = 0; i < PROOFS; i++) {
        p->seed ^= p->seed << 13;
        p->seed ^= p->seed >> 7;
        p->seed ^= p->seed << 17;
        uint64_t m = p->seed % p->tree, t0 = cd_mono_ns();
        if ((err = cd_merkle_inclusion_proof(m, p->tree, cd__audit_node_get, tx, &pr)) != CD_OK)
            return err;
        p->lat[i] = cd_mono_ns() - t0;
        if (i == 0) {
            /* One proof checked end to end, so the figure is about proofs that verify. */
            uint8_t leaf[32];
            if ((err = cd_merkle_root(p->tree, cd__audit_node_get, tx, root)) != CD_OK ||
                (err = cd__audit_subtree_from_entries(tx, 0, m, leaf)) != CD_OK ||
                (err = cd_merkle_verify_inclusion(leaf, m, p->tree,
                                                  (const uint8_t(*)[32])pr.nodes, pr.len,
                                                  root)) != CD_OK)
                return err;
        }
    }
    return CD_OK;
}

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 200000;
    uint64_t tree = argc > 2 ? strtoull(argv[2], NULL, 10) : 10000000;
    const char *dir = argc > 3 ? argv[3] : "/tmp";
    char db[512], key[512], db2[512];
    struct cd_store *s = NULL;
    struct cd_audit *a = NULL;
    struct cd_audit_report rep;
    enum cd_err err;
    uint8_t pk[32];
    double ta[RUNS], ta0[RUNS], ta1[RUNS], tas[RUNS], tb[RUNS], cb[RUNS];

    cd_json_init();
    if (n == 0 || tree < 2 || cd_crypto_init() != CD_OK)
        return 2;
    snprintf(db, sizeof db, "%s/bench-audit-%d.db", dir, (int)getpid());
    snprintf(key, sizeof key, "%s/bench-audit-%d.key", dir, (int)getpid());
    snprintf(db2, sizeof db2, "%s/bench-audit-nodes-%d.db", dir, (int)getpid());
    if ((err = cd_store_open(db, &s)) != CD_OK || (err = cd_audit_open(s, key, &a)) != CD_OK)
        die("open", err);
    uint64_t t0 = cd_mono_ns();
    struct build b = {n, 0};
    while (b.done < n)
        if ((err = cd_store_write(s, append_batch, &b)) != CD_OK)
            die("append", err);
    printf("ledger: %llu entries appended through cd_audit_append in %.2f s (%.0f/s)\n",
           (unsigned long long)n, (double)(cd_mono_ns() - t0) / 1e9,
           (double)n / ((double)(cd_mono_ns() - t0) / 1e9));
    if ((err = cd_audit_publish(a, NULL, NULL)) != CD_OK ||
        (err = cd_audit_public_key(a, pk)) != CD_OK)
        die("publish", err);

    struct mem m = {NULL, 0, 0, cd_malloc(n * sizeof(size_t)), 0};
    if (m.off == NULL || (err = cd_store_read(s, mem_fn, &m)) != CD_OK)
        die("load", err);
    printf("entry bytes: %.1f MB, %.0f B/entry\n", (double)m.len / 1e6, (double)m.len / (double)n);
    EVP_MD *sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    EVP_MD_CTX *evp = EVP_MD_CTX_new();
    if (sha256 == NULL || evp == NULL)
        die("EVP", CD_ERR_NOMEM);
    for (int r = 0; r < RUNS; r++) {
        uint8_t h[32] = {0};
        t0 = cd_mono_ns();
        for (uint64_t i = 0; i < n; i++) {
            size_t end = i + 1 < n ? m.off[i + 1] : m.len;
            if ((err = cd__audit_chain_hash(h, m.bytes + m.off[i], end - m.off[i], h)) != CD_OK)
                die("chain", err);
        }
        ta[r] = (double)(cd_mono_ns() - t0) / 1e9;
        t0 = cd_mono_ns();
        for (uint64_t i = 0; i < n; i++) {
            size_t end = i + 1 < n ? m.off[i + 1] : m.len;
            EVP_DigestInit_ex2(evp, sha256, NULL);
            EVP_DigestUpdate(evp, h, 32);
            EVP_DigestUpdate(evp, m.bytes + m.off[i], end - m.off[i]);
            EVP_DigestFinal_ex(evp, h, NULL);
        }
        ta0[r] = (double)(cd_mono_ns() - t0) / 1e9;
        t0 = cd_mono_ns();
        for (uint64_t i = 0; i < n; i++) {
            size_t end = i + 1 < n ? m.off[i + 1] : m.len;
            SHA256_CTX sc;
            SHA256_Init(&sc);
            SHA256_Update(&sc, h, 32);
            SHA256_Update(&sc, m.bytes + m.off[i], end - m.off[i]);
            SHA256_Final(h, &sc);
        }
        ta1[r] = (double)(cd_mono_ns() - t0) / 1e9;
        struct sqlchain c = {{0}};
        t0 = cd_mono_ns();
        if ((err = cd_store_read(s, sqlchain_fn, &c)) != CD_OK)
            die("sql chain", err);
        tas[r] = (double)(cd_mono_ns() - t0) / 1e9;
        t0 = cd_mono_ns();
        double c0 = cpu_secs();
        if ((err = cd_audit_verify_all(s, pk, NULL, &rep, NULL)) != CD_OK)
            die("verify", err);
        tb[r] = (double)(cd_mono_ns() - t0) / 1e9;
        cb[r] = cpu_secs() - c0;
    }
    double A1 = bench_median(ta, RUNS), A2 = bench_median(ta0, RUNS), A3 = bench_median(ta1, RUNS);
    double A = A1 < A2 ? (A1 < A3 ? A1 : A3) : (A2 < A3 ? A2 : A3);
    double AS = bench_median(tas, RUNS), B = bench_median(tb, RUNS);
    printf("(a)  raw SHA-256 chain, bytes in memory:   %10.0f entries/s (the fastest of:)\n",
           (double)n / A);
    printf("  (a1) Candor's one-shot SHA-256:          %10.0f entries/s\n", (double)n / A1);
    printf("  (a2) OpenSSL EVP, one reused context:    %10.0f entries/s\n", (double)n / A2);
    printf("  (a3) OpenSSL low-level SHA256_Update:    %10.0f entries/s\n", (double)n / A3);
    printf("(a') raw SHA-256 chain, reading SQLite:    %10.0f entries/s\n", (double)n / AS);
    printf("(b)  candor audit verify (verify_all):     %10.0f entries/s (%llu nodes, %llu heads)\n",
           (double)n / B, (unsigned long long)rep.nodes, (unsigned long long)rep.tree_heads);
    printf("ratio (b)/(a):  %.3f    ratio (b)/(a'): %.3f\n", A / B, AS / B);
    /* The verifier runs two threads; on a machine shared with other work they do not always
     * get two cores, which the wall-clock ratio above shows and this CPU time does not. */
    double CB = bench_median(cb, RUNS);
    printf("(b) CPU time, both threads: %.2f us/entry (%.2f cores busy); (a) %.2f us/entry\n",
           1e6 * CB / (double)n, CB / B, 1e6 * A / (double)n);
    /* The customer's access log against a walk of the ledger for the same customer, same run. */
    double al = page_latency(s, true, 31), walk = page_latency(s, false, 5);
    printf("access log page at n=%llu (%llu of the customer's reads, partial index): median "
           "%.1f us; the same customer through the compliance listing (a walk): %.0f us\n",
           (unsigned long long)n, (unsigned long long)(n / READ_EVERY), al, walk);
    cd_free(m.bytes);
    cd_free(m.off);
    EVP_MD_CTX_free(evp);
    EVP_MD_free(sha256);
    cd_audit_close(a);
    cd_store_close(s);

    /* Proof latency at `tree` leaves from a SQLite node table. */
    struct cd_store *s2 = NULL;
    struct nodes_build *nb = cd_calloc(1, sizeof *nb);
    if (nb == NULL || (err = cd_store_open(db2, &s2)) != CD_OK)
        die("open nodes", err);
    nb->tree = tree;
    t0 = cd_mono_ns();
    while (nb->done < tree)
        if ((err = cd_store_write(s2, nodes_batch, nb)) != CD_OK)
            die("nodes", err);
    printf("node table for %llu leaves built in %.1f s\n", (unsigned long long)tree,
           (double)(cd_mono_ns() - t0) / 1e9);
    uint64_t *lat = cd_malloc(PROOFS * sizeof *lat);
    double med[RUNS], p99[RUNS];
    struct proofs p = {tree, lat, 0x9e3779b97f4a7c15u};
    for (int r = 0; r < RUNS; r++) {
        if ((err = cd_store_read(s2, proofs_fn, &p)) != CD_OK)
            die("proofs", err);
        qsort(lat, PROOFS, sizeof *lat, cmp_u64);
        med[r] = (double)lat[PROOFS / 2];
        p99[r] = (double)lat[PROOFS * 99 / 100];
    }
    printf("inclusion proof at n=%llu from SQLite (audit_nodes from level %d, lower "
           "levels from the entries): median %.1f us, p99 %.1f us (%d proofs x %d runs)\n",
           (unsigned long long)tree, CD__AUDIT_NODE_MIN_LEVEL, bench_median(med, RUNS) / 1e3, bench_median(p99, RUNS) / 1e3, PROOFS,
           RUNS);
    cd_free(lat);
    cd_free(nb);
    cd_store_close(s2);
    const char *sfx[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        char f[600];
        snprintf(f, sizeof f, "%s%s", db, sfx[i]);
        unlink(f);
        snprintf(f, sizeof f, "%s%s", db2, sfx[i]);
        unlink(f);
    }
    unlink(key);
    return 0;
}
