/* RFC 9162 Merkle tree hashing, appends, proofs and verification over stored perfect subtrees.
 *
 * Every node of the RFC tree for size n covers a range [s, e) where s is a multiple of the
 * smallest power of two >= e - s (MTH always splits at the largest power of two below the
 * size, so right subtrees start on such a boundary). Such a range is the concatenation of the
 * perfect subtrees given by the bits of e - s, largest first, and its hash is the right fold of
 * theirs: range_hash below. Proofs walk down from the root iteratively, note which sibling
 * ranges they need, then hash each; only the first right sibling met can be imperfect (below a
 * left turn every range is perfect), which bounds the reads by about 2 log2(n). */
#include "audit/merkle.h"
#include "crypto/crypto.h"
#include <assert.h>
#include <string.h>

#define HL CD_MERKLE_HASH_LEN
#define MAX_SIZE ((UINT64_C(1) << CD_MERKLE_MAX_LEVELS) - 1)

struct reader {
    enum cd_err (*get)(void *, unsigned, uint64_t, uint8_t *);
    void *ctx;
};

struct range {
    uint64_t s, e;
};

enum cd_err cd_merkle_leaf_hash(const void *data, size_t n, uint8_t out[HL])
{
    static const char prefix = 0x00;
    struct cd_str parts[2] = {{&prefix, 1}, {data, n}};

    return cd_crypto_sha256v(parts, 2, out);
}

enum cd_err cd_merkle_node_hash(const uint8_t left[HL], const uint8_t right[HL], uint8_t out[HL])
{
    static const char prefix = 0x01;
    struct cd_str parts[3] = {{&prefix, 1}, {(const char *)left, HL}, {(const char *)right, HL}};

    /* The digest is written only at the end, so out may alias an input. */
    return cd_crypto_sha256v(parts, 3, out);
}

enum cd_err cd_merkle_empty_root(uint8_t out[HL])
{
    return cd_crypto_sha256("", 0, out);
}

/* The largest power of two strictly below x (x >= 2). */
static uint64_t split_point(uint64_t x)
{
    assert(x >= 2);
    return UINT64_C(1) << (63 - __builtin_clzll(x - 1));
}

/* MTH of leaves [s, e) from at most popcount(e - s) stored perfect subtrees. */
static enum cd_err range_hash(const struct reader *rd, uint64_t s, uint64_t e, uint8_t out[HL])
{
    enum cd_err err = CD_OK;
    uint8_t nodes[CD_MERKLE_MAX_LEVELS][HL];
    unsigned count = 0;
    uint64_t m = e - s, cur = s;

    assert(e > s && e <= MAX_SIZE); /* callers only ask for non-empty ranges of valid trees */
    for (int level = CD_MERKLE_MAX_LEVELS - 1; level >= 0; level--) {
        if (!(m >> level & 1))
            continue;
        /* s is aligned to the smallest power of two >= m, so cur is aligned to 2^level. */
        assert((cur & ((UINT64_C(1) << level) - 1)) == 0);
        if ((err = rd->get(rd->ctx, (unsigned)level, cur >> level, nodes[count])) != CD_OK)
            goto out;
        count++;
        cur += UINT64_C(1) << level;
    }
    memcpy(out, nodes[count - 1], HL);
    for (unsigned i = count - 1; i-- > 0;)
        if ((err = cd_merkle_node_hash(nodes[i], out, out)) != CD_OK)
            goto out;
out:
    return err;
}

enum cd_err cd_merkle_append(struct cd_merkle_frontier *f, const uint8_t leaf_hash[HL],
                             enum cd_err (*emit)(void *, unsigned, uint64_t, const uint8_t *),
                             void *ctx)
{
    enum cd_err err = CD_OK;
    uint8_t carry[HL];
    uint64_t n = f->size;
    unsigned level = 0;

    if (n >= MAX_SIZE) {
        err = cd_err_set(CD_ERR_INVALID, "Merkle tree is full");
        goto out;
    }
    memcpy(carry, leaf_hash, HL);
    if ((err = emit(ctx, 0, n, carry)) != CD_OK)
        goto out;
    /* Each set low bit of n is a perfect subtree the new leaf completes into a larger one. */
    while (n >> level & 1) {
        if ((err = cd_merkle_node_hash(f->nodes[level], carry, carry)) != CD_OK)
            goto out;
        level++;
        if ((err = emit(ctx, level, n >> level, carry)) != CD_OK)
            goto out;
    }
    /* Committed only now, so a failed emit leaves f as it was. */
    memcpy(f->nodes[level], carry, HL);
    f->size = n + 1;
out:
    return err;
}

enum cd_err cd_merkle_frontier_load(struct cd_merkle_frontier *f, uint64_t n,
                                    enum cd_err (*get_node)(void *, unsigned, uint64_t, uint8_t *),
                                    void *ctx)
{
    enum cd_err err = CD_OK;
    struct cd_merkle_frontier tmp;

    if (n > MAX_SIZE) {
        err = cd_err_set(CD_ERR_INVALID, "tree size %llu is too large", (unsigned long long)n);
        goto out;
    }
    memset(&tmp, 0, sizeof tmp);
    tmp.size = n;
    for (unsigned level = 0; level < CD_MERKLE_MAX_LEVELS; level++)
        if (n >> level & 1)
            if ((err = get_node(ctx, level, (n >> level) - 1, tmp.nodes[level])) != CD_OK)
                goto out;
    memcpy(f, &tmp, sizeof tmp);
out:
    return err;
}

enum cd_err cd_merkle_frontier_root(const struct cd_merkle_frontier *f, uint8_t out[HL])
{
    enum cd_err err = CD_OK;
    uint8_t r[HL];
    bool have = false;

    if (f->size == 0)
        return cd_merkle_empty_root(out);
    for (unsigned level = 0; level < CD_MERKLE_MAX_LEVELS; level++) {
        if (!(f->size >> level & 1))
            continue;
        if (!have)
            memcpy(r, f->nodes[level], HL);
        else if ((err = cd_merkle_node_hash(f->nodes[level], r, r)) != CD_OK)
            goto out;
        have = true;
    }
    memcpy(out, r, HL);
out:
    return err;
}

enum cd_err cd_merkle_root(uint64_t n,
                           enum cd_err (*get_node)(void *, unsigned, uint64_t, uint8_t *),
                           void *ctx, uint8_t out[HL])
{
    struct reader rd = {get_node, ctx};

    if (n > MAX_SIZE)
        return cd_err_set(CD_ERR_INVALID, "tree size %llu is too large", (unsigned long long)n);
    if (n == 0)
        return cd_merkle_empty_root(out);
    return range_hash(&rd, 0, n, out);
}

/* Hashes the ranges into proof: first (if non-NULL) then sibs in reverse, i.e. bottom-up. */
static enum cd_err fill_proof(const struct reader *rd, const struct range *first,
                              const struct range *sibs, unsigned nsibs,
                              struct cd_merkle_proof *proof)
{
    enum cd_err err = CD_OK;
    struct cd_merkle_proof tmp;

    tmp.len = 0;
    if (first != NULL && (err = range_hash(rd, first->s, first->e, tmp.nodes[tmp.len++])) != CD_OK)
        goto out;
    for (unsigned i = nsibs; i-- > 0;) {
        assert(tmp.len < CD_MERKLE_MAX_PROOF); /* one sibling per level, at most 63 levels */
        if ((err = range_hash(rd, sibs[i].s, sibs[i].e, tmp.nodes[tmp.len++])) != CD_OK)
            goto out;
    }
    proof->len = tmp.len;
    memcpy(proof->nodes, tmp.nodes, (size_t)tmp.len * HL);
out:
    return err;
}

enum cd_err cd_merkle_inclusion_proof(uint64_t m, uint64_t n,
                                      enum cd_err (*get_node)(void *, unsigned, uint64_t,
                                                              uint8_t *),
                                      void *ctx, struct cd_merkle_proof *proof)
{
    struct reader rd = {get_node, ctx};
    struct range sibs[CD_MERKLE_MAX_LEVELS];
    unsigned count = 0;
    uint64_t s = 0, e = n;

    if (n > MAX_SIZE)
        return cd_err_set(CD_ERR_INVALID, "tree size %llu is too large", (unsigned long long)n);
    if (m >= n)
        return cd_err_set(CD_ERR_NOT_FOUND, "leaf %llu is not in a tree of size %llu",
                          (unsigned long long)m, (unsigned long long)n);
    /* PATH(m, D[s:e]) = PATH(m, D[s:s+k]) : MTH(D[s+k:e]) or PATH(m, D[s+k:e]) : MTH(D[s:s+k]) */
    while (e - s > 1) {
        uint64_t k = split_point(e - s);
        if (m < s + k) {
            sibs[count++] = (struct range){s + k, e};
            e = s + k;
        } else {
            sibs[count++] = (struct range){s, s + k};
            s += k;
        }
    }
    return fill_proof(&rd, NULL, sibs, count, proof);
}

enum cd_err cd_merkle_consistency_proof(uint64_t m, uint64_t n,
                                        enum cd_err (*get_node)(void *, unsigned, uint64_t,
                                                                uint8_t *),
                                        void *ctx, struct cd_merkle_proof *proof)
{
    struct reader rd = {get_node, ctx};
    struct range sibs[CD_MERKLE_MAX_LEVELS], first;
    unsigned count = 0;
    uint64_t s = 0, e = n;
    bool b = true;

    if (n > MAX_SIZE)
        return cd_err_set(CD_ERR_INVALID, "tree size %llu is too large", (unsigned long long)n);
    if (m == 0)
        return cd_err_set(CD_ERR_INVALID, "no consistency proof from the empty tree");
    if (m > n)
        return cd_err_set(CD_ERR_NOT_FOUND, "tree size %llu is beyond %llu", (unsigned long long)m,
                          (unsigned long long)n);
    /* SUBPROOF(m, D[s:e], b): m <= s+k goes left (sibling MTH(D[s+k:e])), else right with
     * b = false (sibling MTH(D[s:s+k])); it ends when m == e, adding MTH(D[s:e]) unless b. */
    while (m != e) {
        uint64_t k = split_point(e - s);
        if (m <= s + k) {
            sibs[count++] = (struct range){s + k, e};
            e = s + k;
        } else {
            sibs[count++] = (struct range){s, s + k};
            s += k;
            b = false;
        }
    }
    first = (struct range){s, e};
    return fill_proof(&rd, b ? NULL : &first, sibs, count, proof);
}

enum cd_err cd_merkle_verify_inclusion(const uint8_t leaf_hash[HL], uint64_t leaf_index,
                                       uint64_t tree_size, const uint8_t (*path)[HL], size_t len,
                                       const uint8_t root[HL])
{
    enum cd_err err = CD_OK;
    uint64_t fn = leaf_index, sn;
    uint8_t r[HL];

    if (leaf_index >= tree_size) {
        err = cd_err_set(CD_ERR_INVALID, "leaf index %llu is not below tree size %llu",
                         (unsigned long long)leaf_index, (unsigned long long)tree_size);
        goto out;
    }
    sn = tree_size - 1;
    memcpy(r, leaf_hash, HL);
    for (size_t i = 0; i < len; i++) {
        if (sn == 0)
            goto bad;
        if ((fn & 1) || fn == sn) {
            if ((err = cd_merkle_node_hash(path[i], r, r)) != CD_OK)
                goto out;
            if (!(fn & 1))
                while (!(fn & 1) && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
        } else if ((err = cd_merkle_node_hash(r, path[i], r)) != CD_OK) {
            goto out;
        }
        fn >>= 1;
        sn >>= 1;
    }
    if (sn == 0 && memcmp(r, root, HL) == 0)
        goto out;
bad:
    err = cd_err_set(CD_ERR_INTEGRITY, "inclusion proof does not verify");
out:
    return err;
}

enum cd_err cd_merkle_verify_consistency(uint64_t first, uint64_t second,
                                         const uint8_t first_hash[HL],
                                         const uint8_t second_hash[HL], const uint8_t (*path)[HL],
                                         size_t len)
{
    enum cd_err err = CD_OK;
    const uint8_t *items[CD_MERKLE_MAX_PROOF + 1];
    size_t nitems = 0;
    uint64_t fn, sn;
    uint8_t fr[HL], sr[HL];

    if (first == 0 || first > second) {
        err = cd_err_set(CD_ERR_INVALID, "no consistency proof from size %llu to %llu",
                         (unsigned long long)first, (unsigned long long)second);
        goto out;
    }
    if (first == second) {
        if (len == 0 && memcmp(first_hash, second_hash, HL) == 0)
            goto out;
        goto bad;
    }
    /* 1. An empty path fails; so does one longer than any tree can need. */
    if (len == 0 || len > CD_MERKLE_MAX_PROOF)
        goto bad;
    /* 2. If first is an exact power of 2, prepend first_hash. */
    if ((first & (first - 1)) == 0)
        items[nitems++] = first_hash;
    for (size_t i = 0; i < len; i++)
        items[nitems++] = path[i];
    /* 3.-4. */
    fn = first - 1;
    sn = second - 1;
    while (fn & 1) {
        fn >>= 1;
        sn >>= 1;
    }
    /* 5. */
    memcpy(fr, items[0], HL);
    memcpy(sr, items[0], HL);
    /* 6. */
    for (size_t i = 1; i < nitems; i++) {
        if (sn == 0)
            goto bad;
        if ((fn & 1) || fn == sn) {
            if ((err = cd_merkle_node_hash(items[i], fr, fr)) != CD_OK ||
                (err = cd_merkle_node_hash(items[i], sr, sr)) != CD_OK)
                goto out;
            if (!(fn & 1))
                while (!(fn & 1) && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
        } else if ((err = cd_merkle_node_hash(sr, items[i], sr)) != CD_OK) {
            goto out;
        }
        fn >>= 1;
        sn >>= 1;
    }
    /* 7. */
    if (memcmp(fr, first_hash, HL) == 0 && memcmp(sr, second_hash, HL) == 0 && sn == 0)
        goto out;
bad:
    err = cd_err_set(CD_ERR_INTEGRITY, "consistency proof does not verify");
out:
    return err;
}
