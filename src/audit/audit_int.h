/* Inside the audit module only: helpers shared by the ledger (audit.c), the tree and its
 * signed heads (tree.c) and the verifiers (verify.c). */
#ifndef CD_AUDIT_INT_H
#define CD_AUDIT_INT_H

#include "audit.h"

#define CD__AUDIT_HASH_LEN 32

/* The chain hash of an entry: SHA-256(prev || bytes). Errors: hashing errors. */
enum cd_err cd__audit_chain_hash(const uint8_t prev[CD__AUDIT_HASH_LEN], const void *bytes,
                                 size_t n, uint8_t out[CD__AUDIT_HASH_LEN]);

/* Reads the "seq" member of canonical entry bytes without parsing the JSON: the canonical form
 * is compact with escaped strings, so `"seq":` occurs only as that key. Returns false when
 * absent or malformed. */
bool cd__audit_entry_seq(const void *bytes, size_t n, uint64_t *seq);

/* Which index column of an audit row disagrees with the members of its hashed entry: cols are
 * the row's ts, customer_id, action and actor_token as stored (what the listings and the access
 * log filter on). Returns the first such column's name, or NULL when all four agree. */
const char *cd__audit_columns_check(struct cd_str entry, const struct cd_val cols[4]);

/* The index columns as cd__audit_columns_check takes them. */
#define CD__AUDIT_INDEX_COLS "ts, customer_id, action, actor_token"

/* Counts one append to any ledger of this process and wakes the tree head publishers when
 * enough were made (tree.c): the writer thread calls it after every append. */
void cd__audit_appended(void);

/* audit_nodes stores the perfect subtrees of level CD__AUDIT_NODE_MIN_LEVEL and up only (since
 * migration 6): the lower levels would be amortised two rows per append, seven out of eight of
 * all node rows, while any of them is recomputed from at most 2^(MIN_LEVEL-1) entries. */
#define CD__AUDIT_NODE_MIN_LEVEL 4

/* get_node / emit callbacks over audit_nodes, ctx = struct cd_tx *. get computes a subtree
 * below CD__AUDIT_NODE_MIN_LEVEL from its entries' bytes and reads the others; put stores
 * only those. A missing node (or entry) is CD_ERR_NOT_FOUND. */
enum cd_err cd__audit_node_get(void *ctx, unsigned level, uint64_t index, uint8_t *out);
enum cd_err cd__audit_node_put(void *ctx, unsigned level, uint64_t index, const uint8_t *hash);

/* The hash of the perfect subtree (level, index) recomputed from its 2^level entries' bytes.
 * Errors: CD_ERR_NOT_FOUND (an entry is missing), CD_ERR_STORE, hashing errors. */
enum cd_err cd__audit_subtree_from_entries(struct cd_tx *tx, unsigned level, uint64_t index,
                                           uint8_t out[CD__AUDIT_HASH_LEN]);

/* Deletes audit_nodes and recomputes every node of the first `size` entries from their bytes,
 * leaving the frontier in *out. Runs inside the writer's transaction. Errors: CD_ERR_INTEGRITY
 * (entries not numbered 1..size), CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd__audit_rebuild_nodes(struct cd_tx *tx, uint64_t size,
                                    struct cd_merkle_frontier *out);

/* The ledger's size and Merkle root as the write transaction tx sees them, from the writer's
 * frontier of its last append (no reads when the transaction appended last), else from the
 * stored nodes. Writer thread only. Errors: CD_ERR_STORE, CD_ERR_INTEGRITY (nodes missing). */
enum cd_err cd__audit_current_root(struct cd_tx *tx, uint64_t *size,
                                   uint8_t root[CD__AUDIT_HASH_LEN]);

/* The number of entries in the ledger as tx sees it. */
enum cd_err cd__audit_size(struct cd_tx *tx, uint64_t *size);

/* Reads every stored tree head, oldest first, into a cd_malloc'ed array (*out, *n; NULL and 0
 * when there are none). Errors: CD_ERR_INTEGRITY (a malformed row), CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd__audit_sth_all(struct cd_tx *tx, struct cd_audit_sth **out, size_t *n);

/* Row decoder for SELECT size, ts, root, signature, key_id FROM audit_tree_heads. */
enum cd_err cd__audit_sth_row(const struct cd_val *cols, size_t ncols, struct cd_audit_sth *out);

#define CD__AUDIT_STH_COLS "tree_size, ts, root, signature, key_id"

/* The heads file (heads.c). _open opens path for appending (created 0600 when missing, its
 * directory synced), cuts a partial last line a crash left, and reads the last head in it
 * (*have_last false when the file is empty or its last line is unreadable, which is reported
 * as an integrity failure). Errors: CD_ERR_IO; the caller closes *fd. _append writes
 * heads[0..n) as JSON lines with one write and an fdatasync. Errors: CD_ERR_IO, CD_ERR_NOMEM. */
enum cd_err cd__audit_heads_open(const char *path, int *fd, struct cd_audit_sth *last,
                                 bool *have_last);
enum cd_err cd__audit_heads_append(int fd, const struct cd_audit_sth *heads, size_t n);

/* The customer's access log, newest first: their reads and the refused attempts on their
 * data; $2 the customer, $1 the seq to start below, $7 the limit. Its terms "customer_id = $2"
 * and "(action LIKE '%.read' OR action = 'access.denied')" stand as they are so that SQLite
 * walks the partial index audit_access_by_customer (migration 13), not the whole ledger;
 * tests/unit/test_audit.c checks the plan. */
#define CD__AUDIT_ACCESS_LOG_SQL                                                               \
    "SELECT seq, entry, hash, ts, customer_id, action, actor_token FROM audit_events"          \
    " WHERE customer_id = $2"                                                                   \
    " AND (action LIKE '%.read' OR action = 'access.denied') AND seq < $1"                     \
    " ORDER BY seq DESC LIMIT $7"

#endif
