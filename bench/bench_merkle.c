/* Merkle benchmark: what the audit ledger's hashing costs.
 *
 * (a) a raw SHA-256 hash chain h_i = SHA-256(h_{i-1} || record_i) over N event-sized records,
 *     the floor any tamper-evident log pays;
 * (b) the RFC 9162 work for the same records: leaf hash plus frontier append, with the
 *     completed subtrees stored into an in-memory node array (about 2 hashes per record);
 * then inclusion and consistency proof latency at >= 10 million entries from an in-memory node
 * array (32 B x 2n). Every figure is the median of several runs.
 *
 * Usage: bench_merkle [records] [tree-size]   (defaults 1000000 and 10000000) */
#include "audit/merkle.h"
#include "crypto/crypto.h"
#include "bench_util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RECORD_LEN 300
#define RUNS 5
#define PROOFS 200000

struct nodes {
    uint8_t (*h)[32];
    uint64_t off[64]; /* first slot of each level */
    uint64_t cap;     /* leaves the array was sized for */
};

static int nodes_init(struct nodes *ns, uint64_t n)
{
    uint64_t total = 0;

    for (unsigned l = 0; l < 64; l++) {
        ns->off[l] = total;
        total += n >> l;
    }
    ns->cap = n;
    ns->h = cd_malloc(total * 32);
    return ns->h ? 0 : -1;
}

static enum cd_err nodes_put(void *ctx, unsigned level, uint64_t index, const uint8_t *hash)
{
    struct nodes *ns = ctx;

    memcpy(ns->h[ns->off[level] + index], hash, 32);
    return CD_OK;
}

static enum cd_err nodes_get(void *ctx, unsigned level, uint64_t index, uint8_t *out)
{
    const struct nodes *ns = ctx;

    memcpy(out, ns->h[ns->off[level] + index], 32);
    return CD_OK;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void die(const char *what, enum cd_err err)
{
    fprintf(stderr, "bench_merkle: %s: %s (%s)\n", what, cd_err_name(err), cd_err_detail());
    exit(1);
}

int main(int argc, char **argv)
{
    uint64_t nrec = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
    uint64_t tree = argc > 2 ? strtoull(argv[2], NULL, 10) : 10000000;
    uint8_t *recs, h[32], leaf[32], root[32];
    double chain_s[RUNS], merkle_s[RUNS];
    struct cd_crypto_sha256 sha = {0};
    struct nodes ns;
    enum cd_err err;
    uint64_t seed = 0x9e3779b97f4a7c15u;

    if (nrec == 0 || tree < 2 || cd_crypto_init() != CD_OK)
        return 2;
    if ((recs = cd_malloc(nrec * RECORD_LEN)) == NULL || nodes_init(&ns, nrec) != 0)
        die("allocation", CD_ERR_NOMEM);
    for (uint64_t i = 0; i < nrec * RECORD_LEN / 8; i++) {
        uint64_t v = xorshift(&seed);
        memcpy(recs + 8 * i, &v, 8);
    }
    if ((err = cd_crypto_sha256_init(&sha)) != CD_OK)
        die("sha256 init", err);

    for (int run = 0; run < RUNS; run++) {
        uint64_t t0 = cd_mono_ns();
        memset(h, 0, sizeof h);
        for (uint64_t i = 0; i < nrec; i++) {
            cd_crypto_sha256_update(&sha, h, 32);
            cd_crypto_sha256_update(&sha, recs + i * RECORD_LEN, RECORD_LEN);
            if ((err = cd_crypto_sha256_final(&sha, h)) != CD_OK)
                die("chain", err);
        }
        chain_s[run] = (double)(cd_mono_ns() - t0) / 1e9;

        struct cd_merkle_frontier f = {0};
        t0 = cd_mono_ns();
        for (uint64_t i = 0; i < nrec; i++) {
            if ((err = cd_merkle_leaf_hash(recs + i * RECORD_LEN, RECORD_LEN, leaf)) != CD_OK ||
                (err = cd_merkle_append(&f, leaf, nodes_put, &ns)) != CD_OK)
                die("append", err);
        }
        if ((err = cd_merkle_frontier_root(&f, root)) != CD_OK)
            die("root", err);
        merkle_s[run] = (double)(cd_mono_ns() - t0) / 1e9;
    }
    cd_crypto_sha256_free(&sha);
    double cs = bench_median(chain_s, RUNS), ms = bench_median(merkle_s, RUNS);
    printf("records: %llu x %d B, median of %d runs\n", (unsigned long long)nrec, RECORD_LEN, RUNS);
    printf("(a) SHA-256 chain:            %10.0f records/s  %7.1f MB/s\n", nrec / cs,
           nrec * (double)RECORD_LEN / cs / 1e6);
    printf("(b) leaf hash + append:       %10.0f records/s  %7.1f MB/s\n", nrec / ms,
           nrec * (double)RECORD_LEN / ms / 1e6);
    printf("ratio (b)/(a) throughput:     %10.3f\n", cs / ms);
    cd_free(ns.h);
    cd_free(recs);

    /* Proof latency on a big tree whose leaves are hashes of their index. */
    if (nodes_init(&ns, tree) != 0)
        die("allocation", CD_ERR_NOMEM);
    {
        struct cd_merkle_frontier f = {0};
        uint64_t t0 = cd_mono_ns();
        for (uint64_t i = 0; i < tree; i++) {
            if ((err = cd_merkle_leaf_hash(&i, sizeof i, leaf)) != CD_OK ||
                (err = cd_merkle_append(&f, leaf, nodes_put, &ns)) != CD_OK)
                die("build", err);
        }
        if ((err = cd_merkle_frontier_root(&f, root)) != CD_OK)
            die("root", err);
        printf("tree of %llu leaves built in %.2f s (node array %.0f MB)\n",
               (unsigned long long)tree, (double)(cd_mono_ns() - t0) / 1e9,
               2.0 * (double)tree * 32 / 1e6);
    }
    uint64_t *lat = cd_malloc(PROOFS * sizeof *lat);
    double inc_med[3], inc_p99[3], con_med[3], con_p99[3];
    struct cd_merkle_proof p;
    if (lat == NULL)
        die("allocation", CD_ERR_NOMEM);
    for (int run = 0; run < 3; run++) {
        for (int i = 0; i < PROOFS; i++) {
            uint64_t m = xorshift(&seed) % tree;
            uint64_t t0 = cd_mono_ns();
            if ((err = cd_merkle_inclusion_proof(m, tree, nodes_get, &ns, &p)) != CD_OK)
                die("inclusion", err);
            lat[i] = cd_mono_ns() - t0;
            if (i % 10000 == 0) {
                if ((err = cd_merkle_leaf_hash(&m, sizeof m, leaf)) != CD_OK ||
                    (err = cd_merkle_verify_inclusion(leaf, m, tree, p.nodes, p.len, root)) !=
                        CD_OK)
                    die("verify inclusion", err);
            }
        }
        qsort(lat, PROOFS, sizeof *lat, cmp_u64);
        inc_med[run] = (double)lat[PROOFS / 2];
        inc_p99[run] = (double)lat[PROOFS * 99 / 100];
        for (int i = 0; i < PROOFS; i++) {
            uint64_t m = 1 + xorshift(&seed) % (tree - 1);
            uint64_t t0 = cd_mono_ns();
            if ((err = cd_merkle_consistency_proof(m, tree, nodes_get, &ns, &p)) != CD_OK)
                die("consistency", err);
            lat[i] = cd_mono_ns() - t0;
        }
        qsort(lat, PROOFS, sizeof *lat, cmp_u64);
        con_med[run] = (double)lat[PROOFS / 2];
        con_p99[run] = (double)lat[PROOFS * 99 / 100];
    }
    printf("inclusion proof at n=%llu:   median %.2f us, p99 %.2f us (%d proofs x 3 runs)\n",
           (unsigned long long)tree, bench_median(inc_med, 3) / 1e3, bench_median(inc_p99, 3) / 1e3, PROOFS);
    printf("consistency proof at n=%llu: median %.2f us, p99 %.2f us\n", (unsigned long long)tree,
           bench_median(con_med, 3) / 1e3, bench_median(con_p99, 3) / 1e3);
    cd_free(lat);
    cd_free(ns.h);
    return 0;
}
