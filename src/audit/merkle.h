/* merkle — RFC 9162 (Certificate Transparency v2) Merkle tree over stored subtree hashes.
 *
 * Owns: the tree's hashing (leaf = SHA-256(0x00 || data), node = SHA-256(0x01 || l || r)), the
 * in-memory right frontier used to append, and the computation and verification of tree heads,
 * inclusion proofs (PATH, §2.1.3) and consistency proofs (PROOF, §2.1.4).
 *
 * Storage model: the caller persists, for every level L and index i, the hash of each COMPLETE
 * perfect subtree covering leaves [i*2^L, (i+1)*2^L) as soon as it completes (level 0 holds
 * the leaf hashes). cd_merkle_append reports exactly those nodes through its emit callback;
 * every other function reads them back through a get_node callback. A caller may keep only
 * some levels and compute the others inside get_node (the audit ledger stores levels 4 and up
 * and folds the lower ones from the entries), as long as get_node answers for every level. Any node of the RFC tree
 * for size n is a range [s, e) that splits into at most log2(n) stored perfect subtrees, so
 * roots and proofs cost O(log n) reads and hashes whatever n is; nothing recurses.
 *
 * Must never: know how nodes are stored (that is the audit ledger's business), allocate, or
 * touch global state. Every function here is pure apart from its callbacks and is thread-safe
 * as long as the callbacks are. The verification functions need no callbacks, so an offline
 * verifier can use them with nothing but this file and src/crypto. */
#ifndef CD_AUDIT_MERKLE_H
#define CD_AUDIT_MERKLE_H

#include "base/base.h"
#include <stdint.h>

#define CD_MERKLE_HASH_LEN 32
#define CD_MERKLE_MAX_LEVELS 63 /* tree sizes below 2^63 */
/* Longest proof: a consistency proof has at most one node per level plus one. */
#define CD_MERKLE_MAX_PROOF (CD_MERKLE_MAX_LEVELS + 1)

/* Callbacks (plain function pointers plus a borrowed ctx, no typedefs):
 *   get_node(ctx, level, index, out) reads the stored hash of the perfect subtree at
 *     (level, index) into out[32];
 *   emit(ctx, level, index, hash) stores the hash of a newly completed perfect subtree.
 * Each returns CD_OK or an error (CD_ERR_STORE, CD_ERR_NOT_FOUND, ...) that the library passes
 * on unchanged, so a store failure reaches the caller. */

/* The right frontier (compact range) of a tree of `size` leaves: for each bit L set in size,
 * nodes[L] is the hash of the perfect subtree at level L, index (size >> L) - 1. Plain data:
 * copy it, keep it on the stack, zero-initialise it for the empty tree. */
struct cd_merkle_frontier {
    uint64_t size;
    uint8_t nodes[CD_MERKLE_MAX_LEVELS][CD_MERKLE_HASH_LEN];
};

/* An audit path or consistency proof, nodes in RFC order (bottom-up). */
struct cd_merkle_proof {
    unsigned len;
    uint8_t nodes[CD_MERKLE_MAX_PROOF][CD_MERKLE_HASH_LEN];
};

/* ---- hashing ----------------------------------------------------------------------------- */

/* Leaf hash of data[0..n) (borrowed): SHA-256(0x00 || data). Errors: those of
 * cd_crypto_sha256 (CD_ERR_NOMEM on a thread's first hash, CD_ERR_CRYPTO). */
enum cd_err cd_merkle_leaf_hash(const void *data, size_t n, uint8_t out[CD_MERKLE_HASH_LEN]);

/* Interior node hash SHA-256(0x01 || left || right). out may alias left or right.
 * Errors: as cd_merkle_leaf_hash. */
enum cd_err cd_merkle_node_hash(const uint8_t left[CD_MERKLE_HASH_LEN],
                                const uint8_t right[CD_MERKLE_HASH_LEN],
                                uint8_t out[CD_MERKLE_HASH_LEN]);

/* The root of the empty tree, SHA-256 of the empty string. Errors: as cd_merkle_leaf_hash. */
enum cd_err cd_merkle_empty_root(uint8_t out[CD_MERKLE_HASH_LEN]);

/* ---- appending --------------------------------------------------------------------------- */

/* Appends one leaf (its leaf hash, from cd_merkle_leaf_hash) to the tree whose frontier is f,
 * calling emit for every perfect subtree it completes, in increasing level order: always
 * (0, f->size) for the leaf itself, then one node per level merged (amortised 2 calls, at most
 * log2(size)+1). Errors: CD_ERR_INVALID (the tree is full), the first error emit returns, or a
 * hashing error; f is then unchanged, though emit may already have stored some of the nodes
 * (identical values on retry, so the caller may simply roll its transaction back). */
enum cd_err cd_merkle_append(struct cd_merkle_frontier *f,
                             const uint8_t leaf_hash[CD_MERKLE_HASH_LEN],
                             enum cd_err (*emit)(void *, unsigned, uint64_t, const uint8_t *),
                             void *ctx);

/* Rebuilds the frontier of a tree of n leaves from the stored nodes: popcount(n) reads.
 * Errors: CD_ERR_INVALID (n too large), or the first error get_node returns; *f is written
 * only on success. */
enum cd_err cd_merkle_frontier_load(struct cd_merkle_frontier *f, uint64_t n,
                                    enum cd_err (*get_node)(void *, unsigned, uint64_t, uint8_t *),
                                    void *ctx);

/* The root (MTH) of the tree described by f, without any reads. Errors: hashing errors. */
enum cd_err cd_merkle_frontier_root(const struct cd_merkle_frontier *f,
                                    uint8_t out[CD_MERKLE_HASH_LEN]);

/* ---- roots and proofs from stored nodes -------------------------------------------------- */

/* The root MTH(D[0:n]) of the first n leaves: popcount(n) reads; n == 0 gives the empty root
 * without reads. Errors: CD_ERR_INVALID (n too large), get_node's errors, hashing errors. */
enum cd_err cd_merkle_root(uint64_t n,
                           enum cd_err (*get_node)(void *, unsigned, uint64_t, uint8_t *),
                           void *ctx, uint8_t out[CD_MERKLE_HASH_LEN]);

/* The inclusion proof PATH(m, D[0:n]) of leaf m in the tree of size n (RFC 9162 §2.1.3.1), at
 * most 2*log2(n)+1 reads. Errors: CD_ERR_NOT_FOUND (m >= n: no such leaf in that tree; n == 0
 * included), CD_ERR_INVALID (n too large), get_node's and hashing errors; *proof is written only
 * on success. */
enum cd_err cd_merkle_inclusion_proof(uint64_t m, uint64_t n,
                                      enum cd_err (*get_node)(void *, unsigned, uint64_t,
                                                              uint8_t *),
                                      void *ctx, struct cd_merkle_proof *proof);

/* The consistency proof PROOF(m, D[0:n]) between tree sizes m and n (RFC 9162 §2.1.4.1), at
 * most 2*log2(n)+2 reads; m == n gives the empty proof. Errors: CD_ERR_INVALID (m == 0: the RFC
 * defines no proof from the empty tree; or n too large), CD_ERR_NOT_FOUND (m > n), get_node's
 * and hashing errors; *proof is written only on success. */
enum cd_err cd_merkle_consistency_proof(uint64_t m, uint64_t n,
                                        enum cd_err (*get_node)(void *, unsigned, uint64_t,
                                                                uint8_t *),
                                        void *ctx, struct cd_merkle_proof *proof);

/* ---- verification (no stored nodes needed) ----------------------------------------------- */

/* Verifies an inclusion proof exactly as RFC 9162 §2.1.3.2: that leaf_hash is leaf number
 * leaf_index of the tree of tree_size leaves whose root is root. path[0..len) is borrowed.
 * Returns CD_OK when it verifies. Errors: CD_ERR_INVALID (leaf_index >= tree_size),
 * CD_ERR_INTEGRITY (the proof does not lead to root, or has the wrong length), hashing errors. */
enum cd_err cd_merkle_verify_inclusion(const uint8_t leaf_hash[CD_MERKLE_HASH_LEN],
                                       uint64_t leaf_index, uint64_t tree_size,
                                       const uint8_t (*path)[CD_MERKLE_HASH_LEN], size_t len,
                                       const uint8_t root[CD_MERKLE_HASH_LEN]);

/* Verifies a consistency proof exactly as RFC 9162 §2.1.4.2: that the tree of size first with
 * root first_hash is a prefix of the tree of size second with root second_hash. When
 * first == second the proof must be empty and the roots equal. path[0..len) is borrowed.
 * Errors: CD_ERR_INVALID (first == 0 or first > second), CD_ERR_INTEGRITY (does not verify),
 * hashing errors. */
enum cd_err cd_merkle_verify_consistency(uint64_t first, uint64_t second,
                                         const uint8_t first_hash[CD_MERKLE_HASH_LEN],
                                         const uint8_t second_hash[CD_MERKLE_HASH_LEN],
                                         const uint8_t (*path)[CD_MERKLE_HASH_LEN], size_t len);

#endif
