/* Unit tests for src/audit/merkle: RFC 9162 roots, inclusion and consistency proofs and their
 * verification, cross-checked against a naive recursive implementation of the RFC's
 * definitions for every tree size up to 200 and every leaf; then a tree of 2^24 + 12345
 * leaves proving that roots and proofs take O(log n) reads. */
#include "audit/merkle.h"
#include "crypto/crypto.h"
#include "unit.h"

#define SMALL_MAX 200
#define LEVELS 9 /* 2^8 = 256 > SMALL_MAX */

/* ---- the naive side: RFC 9162 §2.1 definitions, recursively ---- */

static uint8_t leaves[SMALL_MAX][32];
static uint8_t mth_memo[SMALL_MAX + 1][SMALL_MAX + 1][32];
static bool mth_known[SMALL_MAX + 1][SMALL_MAX + 1];

static uint64_t k_of(uint64_t n)
{
    uint64_t k = 1;
    while (k << 1 < n)
        k <<= 1;
    return k;
}

static void node(const uint8_t *l, const uint8_t *r, uint8_t *out)
{
    uint8_t buf[65];
    buf[0] = 1;
    memcpy(buf + 1, l, 32);
    memcpy(buf + 33, r, 32);
    assert_int_equal(cd_crypto_sha256(buf, sizeof buf, out), CD_OK);
}

static const uint8_t *naive_mth(unsigned s, unsigned e)
{
    if (!mth_known[s][e]) {
        if (e - s == 1) {
            memcpy(mth_memo[s][e], leaves[s], 32);
        } else {
            unsigned k = (unsigned)k_of(e - s);
            node(naive_mth(s, s + k), naive_mth(s + k, e), mth_memo[s][e]);
        }
        mth_known[s][e] = true;
    }
    return mth_memo[s][e];
}

struct list {
    unsigned len;
    uint8_t h[80][32];
};

static void push(struct list *l, const uint8_t *h)
{
    memcpy(l->h[l->len++], h, 32);
}

static void naive_path(unsigned m, unsigned s, unsigned e, struct list *out)
{
    if (e - s == 1)
        return;
    unsigned k = (unsigned)k_of(e - s);
    if (m < k) {
        naive_path(m, s, s + k, out);
        push(out, naive_mth(s + k, e));
    } else {
        naive_path(m - k, s + k, e, out);
        push(out, naive_mth(s, s + k));
    }
}

static void naive_subproof(unsigned m, unsigned s, unsigned e, bool b, struct list *out)
{
    if (m == e - s) {
        if (!b)
            push(out, naive_mth(s, e));
        return;
    }
    unsigned k = (unsigned)k_of(e - s);
    if (m <= k) {
        naive_subproof(m, s, s + k, b, out);
        push(out, naive_mth(s + k, e));
    } else {
        naive_subproof(m - k, s + k, e, false, out);
        push(out, naive_mth(s, s + k));
    }
}

/* ---- the stored side: a node table filled by cd_merkle_append ---- */

struct table {
    uint8_t h[LEVELS][SMALL_MAX][32];
    bool have[LEVELS][SMALL_MAX];
    unsigned long reads, emits;
    enum cd_err fail_with; /* non-zero: the next call fails with it */
};

static enum cd_err table_get(void *ctx, unsigned level, uint64_t index, uint8_t *out)
{
    struct table *t = ctx;
    t->reads++;
    if (t->fail_with)
        return cd_err_set(t->fail_with, "injected store failure");
    if (level >= LEVELS || index >= SMALL_MAX || !t->have[level][index])
        return cd_err_set(CD_ERR_NOT_FOUND, "node %u/%llu was never emitted", level,
                          (unsigned long long)index);
    memcpy(out, t->h[level][index], 32);
    return CD_OK;
}

static enum cd_err table_emit(void *ctx, unsigned level, uint64_t index, const uint8_t *hash)
{
    struct table *t = ctx;
    if (t->fail_with)
        return cd_err_set(t->fail_with, "injected store failure");
    assert_true(level < LEVELS && index < SMALL_MAX);
    assert_false(t->have[level][index]); /* each node is emitted exactly once */
    memcpy(t->h[level][index], hash, 32);
    t->have[level][index] = true;
    t->emits++;
    return CD_OK;
}

static struct table tab;

static void tamper_and_expect_failure_inclusion(const uint8_t *leaf, uint64_t m, uint64_t n,
                                                struct cd_merkle_proof *p, const uint8_t *root)
{
    for (unsigned i = 0; i < p->len; i++) {
        p->nodes[i][i % 32] ^= 0x80;
        assert_int_equal(cd_merkle_verify_inclusion(leaf, m, n, p->nodes, p->len, root),
                         CD_ERR_INTEGRITY);
        p->nodes[i][i % 32] ^= 0x80;
    }
    if (p->len > 0)
        assert_int_equal(cd_merkle_verify_inclusion(leaf, m, n, p->nodes, p->len - 1, root),
                         CD_ERR_INTEGRITY);
    memcpy(p->nodes[p->len], root, 32);
    assert_int_equal(cd_merkle_verify_inclusion(leaf, m, n, p->nodes, p->len + 1, root),
                     CD_ERR_INTEGRITY);
}

static void small_trees_match_the_rfc_definitions(void **state)
{
    struct cd_merkle_frontier f = {0}, g;
    struct cd_merkle_proof p;
    struct list want;
    uint8_t root[32], r2[32], bad[32];

    memset(&tab, 0, sizeof tab);
    for (unsigned i = 0; i < SMALL_MAX; i++) {
        char data[32];
        int len = snprintf(data, sizeof data, "event-%u", i);
        assert_int_equal(cd_merkle_leaf_hash(data, (size_t)len, leaves[i]), CD_OK);
    }
    for (unsigned n = 1; n <= SMALL_MAX; n++) {
        unsigned long before = tab.emits;
        assert_int_equal(cd_merkle_append(&f, leaves[n - 1], table_emit, &tab), CD_OK);
        assert_int_equal(f.size, n);
        /* 1 + trailing zeros of n nodes complete with leaf n-1. */
        assert_int_equal(tab.emits - before, 1 + (unsigned)__builtin_ctz(n));

        assert_int_equal(cd_merkle_frontier_root(&f, root), CD_OK);
        assert_memory_equal(root, naive_mth(0, n), 32);
        assert_int_equal(cd_merkle_root(n, table_get, &tab, r2), CD_OK);
        assert_memory_equal(r2, root, 32);
        assert_int_equal(cd_merkle_frontier_load(&g, n, table_get, &tab), CD_OK);
        assert_int_equal(cd_merkle_frontier_root(&g, r2), CD_OK);
        assert_memory_equal(r2, root, 32);
        for (unsigned l = 0; l < LEVELS; l++)
            if (n >> l & 1)
                assert_memory_equal(g.nodes[l], f.nodes[l], 32);

        for (unsigned m = 0; m < n; m++) {
            want.len = 0;
            naive_path(m, 0, n, &want);
            assert_int_equal(cd_merkle_inclusion_proof(m, n, table_get, &tab, &p), CD_OK);
            assert_int_equal(p.len, want.len);
            assert_memory_equal(p.nodes, want.h, 32 * (size_t)want.len);
            assert_int_equal(cd_merkle_verify_inclusion(leaves[m], m, n, p.nodes, p.len, root),
                             CD_OK);
            tamper_and_expect_failure_inclusion(leaves[m], m, n, &p, root);
            /* The right proof for the wrong leaf or index does not verify. (It may verify for
             * another tree size: the size is authenticated by the signed tree head, not the path.)
             */
            if (n > 1) {
                unsigned other = (m + 1) % n;
                assert_int_equal(
                    cd_merkle_verify_inclusion(leaves[other], m, n, p.nodes, p.len, root),
                    CD_ERR_INTEGRITY);
                assert_int_equal(
                    cd_merkle_verify_inclusion(leaves[m], other, n, p.nodes, p.len, root),
                    CD_ERR_INTEGRITY);
            }
        }
        for (unsigned m = 1; m <= n; m++) {
            const uint8_t *old = naive_mth(0, m);
            want.len = 0;
            naive_subproof(m, 0, n, true, &want);
            assert_int_equal(cd_merkle_consistency_proof(m, n, table_get, &tab, &p), CD_OK);
            assert_int_equal(p.len, want.len);
            assert_memory_equal(p.nodes, want.h, 32 * (size_t)want.len);
            assert_int_equal(cd_merkle_verify_consistency(m, n, old, root, p.nodes, p.len), CD_OK);
            for (unsigned i = 0; i < p.len; i++) {
                p.nodes[i][(i * 7) % 32] ^= 0x01;
                assert_int_equal(cd_merkle_verify_consistency(m, n, old, root, p.nodes, p.len),
                                 CD_ERR_INTEGRITY);
                p.nodes[i][(i * 7) % 32] ^= 0x01;
            }
            memcpy(bad, old, 32);
            bad[0] ^= 1;
            assert_int_equal(cd_merkle_verify_consistency(m, n, bad, root, p.nodes, p.len),
                             CD_ERR_INTEGRITY);
            assert_int_equal(cd_merkle_verify_consistency(m, n, old, bad, p.nodes, p.len),
                             CD_ERR_INTEGRITY);
            if (p.len > 0)
                assert_int_equal(cd_merkle_verify_consistency(m, n, old, root, p.nodes, p.len - 1),
                                 CD_ERR_INTEGRITY);
            if (m < n && m > 1)
                assert_int_equal(cd_merkle_verify_consistency(m - 1, n, naive_mth(0, m - 1), root,
                                                              p.nodes, p.len),
                                 CD_ERR_INTEGRITY);
        }
    }
}

static void bad_arguments_and_store_failures_are_errors(void **state)
{
    struct cd_merkle_frontier f = {0}, before;
    struct cd_merkle_proof p = {.len = 77};
    uint8_t root[32], h[32], empty[32];

    assert_int_equal(cd_merkle_empty_root(root), CD_OK);
    assert_int_equal(cd_crypto_sha256("", 0, empty), CD_OK);
    assert_memory_equal(root, empty, 32);
    assert_int_equal(cd_merkle_root(0, table_get, &tab, h), CD_OK);
    assert_memory_equal(h, empty, 32);
    assert_int_equal(cd_merkle_frontier_root(&f, h), CD_OK);
    assert_memory_equal(h, empty, 32);

    /* Leaf and size bounds: the tree in tab has SMALL_MAX leaves. */
    assert_int_equal(cd_merkle_inclusion_proof(5, 5, table_get, &tab, &p), CD_ERR_NOT_FOUND);
    assert_int_equal(cd_merkle_inclusion_proof(0, 0, table_get, &tab, &p), CD_ERR_NOT_FOUND);
    assert_int_equal(cd_merkle_inclusion_proof(0, UINT64_MAX, table_get, &tab, &p), CD_ERR_INVALID);
    assert_int_equal(cd_merkle_consistency_proof(0, 5, table_get, &tab, &p), CD_ERR_INVALID);
    assert_int_equal(cd_merkle_consistency_proof(6, 5, table_get, &tab, &p), CD_ERR_NOT_FOUND);
    assert_int_equal(p.len, 77); /* untouched */
    assert_int_equal(cd_merkle_consistency_proof(5, 5, table_get, &tab, &p), CD_OK);
    assert_int_equal(p.len, 0);
    assert_int_equal(cd_merkle_verify_inclusion(leaves[0], 3, 3, p.nodes, 0, root), CD_ERR_INVALID);
    assert_int_equal(cd_merkle_verify_consistency(0, 3, root, root, p.nodes, 0), CD_ERR_INVALID);
    assert_int_equal(cd_merkle_verify_consistency(4, 3, root, root, p.nodes, 0), CD_ERR_INVALID);
    assert_int_equal(cd_merkle_verify_consistency(3, 3, root, root, p.nodes, 0), CD_OK);
    assert_int_equal(cd_merkle_verify_consistency(3, 3, root, empty, p.nodes, 0) == CD_OK,
                     memcmp(root, empty, 32) == 0);
    assert_int_equal(cd_merkle_verify_consistency(3, 4, root, root, p.nodes, 0), CD_ERR_INTEGRITY);
    /* The single-leaf tree: the leaf hash is the root, the path is empty. */
    assert_int_equal(cd_merkle_verify_inclusion(leaves[0], 0, 1, p.nodes, 0, leaves[0]), CD_OK);

    /* A node that was never stored, or a failing store, surfaces as the store's error. */
    assert_int_equal(cd_merkle_root(SMALL_MAX + 1, table_get, &tab, h), CD_ERR_NOT_FOUND);
    tab.fail_with = CD_ERR_STORE;
    assert_int_equal(cd_merkle_root(7, table_get, &tab, h), CD_ERR_STORE);
    assert_int_equal(cd_merkle_inclusion_proof(3, 7, table_get, &tab, &p), CD_ERR_STORE);
    assert_int_equal(cd_merkle_consistency_proof(3, 7, table_get, &tab, &p), CD_ERR_STORE);
    assert_int_equal(cd_merkle_frontier_load(&f, 7, table_get, &tab), CD_ERR_STORE);
    assert_int_equal(f.size, 0);

    /* A failed emit leaves the frontier as it was. */
    tab.fail_with = CD_OK;
    memset(&tab, 0, sizeof tab);
    for (unsigned i = 0; i < 7; i++)
        assert_int_equal(cd_merkle_append(&f, leaves[i], table_emit, &tab), CD_OK);
    before = f;
    tab.fail_with = CD_ERR_BUSY;
    assert_int_equal(cd_merkle_append(&f, leaves[7], table_emit, &tab), CD_ERR_BUSY);
    assert_memory_equal(&f, &before, sizeof f);
    tab.fail_with = CD_OK;
    assert_int_equal(cd_merkle_append(&f, leaves[7], table_emit, &tab), CD_OK);
    assert_int_equal(cd_merkle_frontier_root(&f, h), CD_OK);
    assert_memory_equal(h, naive_mth(0, 8), 32);
    f.size = (UINT64_C(1) << CD_MERKLE_MAX_LEVELS) - 1;
    assert_int_equal(cd_merkle_append(&f, leaves[0], table_emit, &tab), CD_ERR_INVALID);
}

/* ---- a large tree: 2^24 + 12345 leaves from a synthetic source ----
 * Leaf i is a "filler" leaf unless i % SPARSE == 17, so the hash of any perfect subtree without
 * a special leaf is a precomputed constant per level and every stored node can be computed
 * in O(specials * depth) without materialising 16 million leaves. */

#define BIG_N ((UINT64_C(1) << 24) + 12345)
#define SPARSE UINT64_C(1000003)

static uint8_t filler[64][32];
static unsigned long big_reads;

static bool has_special(uint64_t s, uint64_t e)
{
    uint64_t first = s - s % SPARSE + 17;
    if (first < s)
        first += SPARSE;
    return first < e;
}

static void big_leaf(uint64_t i, uint8_t out[32])
{
    uint8_t be[8];
    for (int b = 0; b < 8; b++)
        be[b] = (uint8_t)(i >> (56 - 8 * b));
    assert_int_equal(cd_merkle_leaf_hash(be, 8, out), CD_OK);
}

static void big_node(unsigned level, uint64_t index, uint8_t out[32])
{
    uint64_t s = index << level, e = (index + 1) << level;
    uint8_t l[32], r[32];

    if (!has_special(s, e)) {
        memcpy(out, filler[level], 32);
    } else if (level == 0) {
        big_leaf(index, out);
    } else {
        big_node(level - 1, 2 * index, l);
        big_node(level - 1, 2 * index + 1, r);
        node(l, r, out);
    }
}

static enum cd_err big_get(void *ctx, unsigned level, uint64_t index, uint8_t *out)
{
    uint64_t limit = *(const uint64_t *)ctx;
    big_reads++;
    /* Only complete subtrees inside the tree may be asked for. */
    assert_true(((index + 1) << level) <= limit);
    big_node(level, index, out);
    return CD_OK;
}

/* Checks that each emitted node is the one the source would serve for the grown tree. */
static enum cd_err big_emit(void *ctx, unsigned level, uint64_t index, const uint8_t *hash)
{
    uint64_t limit = *(const uint64_t *)ctx + 1;
    uint8_t want[32];
    assert_true(((index + 1) << level) == limit);
    big_node(level, index, want);
    assert_memory_equal(hash, want, 32);
    return CD_OK;
}

/* MTH by the RFC's recursion, pruning perfect special-free ranges to the filler constants. */
static void big_mth(uint64_t s, uint64_t e, uint8_t out[32])
{
    uint64_t n = e - s;
    uint8_t l[32], r[32];

    if ((n & (n - 1)) == 0 && !has_special(s, e)) {
        memcpy(out, filler[__builtin_ctzll(n)], 32);
        return;
    }
    if (n == 1) {
        big_leaf(s, out);
        return;
    }
    uint64_t k = k_of(n);
    big_mth(s, s + k, l);
    big_mth(s + k, e, r);
    node(l, r, out);
}

static unsigned log2_ceil(uint64_t n)
{
    unsigned l = 0;
    while ((UINT64_C(1) << l) < n)
        l++;
    return l;
}

static void large_tree_proofs_take_logarithmic_reads(void **state)
{
    uint64_t n = BIG_N;
    unsigned lg = log2_ceil(n);
    uint8_t root[32], want[32], old[32], leaf[32];
    struct cd_merkle_proof p;
    struct cd_merkle_frontier f;
    const uint64_t ms[] = {0,
                           1,
                           17,
                           5 * SPARSE + 17,
                           4000000,
                           (UINT64_C(1) << 24) - 1,
                           UINT64_C(1) << 24,
                           16 * SPARSE + 17,
                           n - 2,
                           n - 1};
    const uint64_t olds[] = {1,
                             2,
                             3,
                             1000,
                             SPARSE + 18,
                             UINT64_C(1) << 23,
                             UINT64_C(1) << 24,
                             (UINT64_C(1) << 24) + 1,
                             n - 1,
                             n};

    assert_int_equal(cd_merkle_leaf_hash("filler", 6, filler[0]), CD_OK);
    for (int l = 1; l < 64; l++)
        node(filler[l - 1], filler[l - 1], filler[l]);

    big_reads = 0;
    assert_int_equal(cd_merkle_root(n, big_get, &n, root), CD_OK);
    assert_true(big_reads <= lg);
    big_mth(0, n, want);
    assert_memory_equal(root, want, 32);

    big_reads = 0;
    assert_int_equal(cd_merkle_frontier_load(&f, n, big_get, &n), CD_OK);
    assert_true(big_reads <= lg);
    assert_int_equal(cd_merkle_frontier_root(&f, want), CD_OK);
    assert_memory_equal(root, want, 32);

    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
        uint64_t m = ms[i];
        big_reads = 0;
        assert_int_equal(cd_merkle_inclusion_proof(m, n, big_get, &n, &p), CD_OK);
        assert_true(big_reads <= 2 * lg + 1);
        assert_true(p.len <= lg);
        big_node(0, m, leaf);
        assert_int_equal(cd_merkle_verify_inclusion(leaf, m, n, p.nodes, p.len, root), CD_OK);
        p.nodes[p.len / 2][3] ^= 1;
        assert_int_equal(cd_merkle_verify_inclusion(leaf, m, n, p.nodes, p.len, root),
                         CD_ERR_INTEGRITY);
    }
    for (size_t i = 0; i < sizeof olds / sizeof olds[0]; i++) {
        uint64_t m = olds[i];
        big_mth(0, m, old);
        big_reads = 0;
        assert_int_equal(cd_merkle_consistency_proof(m, n, big_get, &n, &p), CD_OK);
        assert_true(big_reads <= 2 * lg + 2);
        assert_int_equal(cd_merkle_verify_consistency(m, n, old, root, p.nodes, p.len), CD_OK);
        if (p.len > 0) {
            p.nodes[0][0] ^= 1;
            assert_int_equal(cd_merkle_verify_consistency(m, n, old, root, p.nodes, p.len),
                             CD_ERR_INTEGRITY);
        }
    }
    /* Appends continue from the frontier rebuilt at n, emitting only the new nodes. */
    big_reads = 0;
    big_node(0, n, leaf);
    assert_int_equal(cd_merkle_append(&f, leaf, big_emit, &n), CD_OK);
    assert_int_equal(f.size, n + 1);
    assert_int_equal(cd_merkle_frontier_root(&f, root), CD_OK);
    big_mth(0, n + 1, want);
    assert_memory_equal(root, want, 32);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(small_trees_match_the_rfc_definitions),
        cmocka_unit_test(bad_arguments_and_store_failures_are_errors),
        cmocka_unit_test(large_tree_proofs_take_logarithmic_reads),
    };
    if (cd_crypto_init() != CD_OK)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
