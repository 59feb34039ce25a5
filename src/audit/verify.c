/* Verifying the ledger: everything the database holds (cd_audit_verify_all, for
 * `candor audit verify --data`), and an exported copy without any database
 * (cd_audit_verify_export, what a third-party auditor runs), plus the export itself. Both
 * verifiers recompute the chain and the Merkle tree from the entry bytes alone; stored hashes
 * are only ever compared against, never trusted. */
#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "audit_int.h"

#define HASH_LEN CD__AUDIT_HASH_LEN
#define PROGRESS_EVERY 0x3ffff /* progress every 256 Ki entries */

static enum cd_err no_emit(void *ctx, unsigned level, uint64_t index, const uint8_t *hash)
{
    return CD_OK;
}

/* The state both verifiers share: the chain and the tree recomputed so far, and the tree
 * heads still to check (sorted by size). */
struct walker {
    uint64_t count; /* entries accepted */
    uint8_t prev[HASH_LEN];
    struct cd_merkle_frontier f;
    const struct cd_audit_sth *heads;
    const char *const *src; /* per head: where a trusted head came from; NULL (or src NULL):
                             * stored with the ledger */
    size_t nheads, next_head;
    const uint8_t *pk;
    struct cd_audit_report *rep;
    uint64_t total;
    void (*progress)(uint64_t, uint64_t);
};

static enum cd_err fail_at(struct walker *w, uint64_t seq)
{
    w->rep->bad_seq = seq;
    return CD_ERR_INTEGRITY;
}

/* " (from SOURCE)" for a trusted head, "" for one stored with the ledger. */
static const char *head_origin(const struct walker *w, size_t i, char *buf, size_t n)
{
    const char *src = w->src ? w->src[i] : NULL;

    buf[0] = '\0';
    if (src != NULL)
        snprintf(buf, n, " (from %s)", src);
    return buf;
}

/* Checks every head whose size the walk has just reached. */
static enum cd_err check_heads(struct walker *w)
{
    while (w->next_head < w->nheads && w->heads[w->next_head].tree_size <= w->count) {
        const struct cd_audit_sth *h = &w->heads[w->next_head];
        uint8_t root[HASH_LEN];
        char from[160];
        enum cd_err err;

        if (h->tree_size < w->count)
            return cd_err_set(CD_ERR_INTERNAL, "tree heads out of order");
        if ((err = cd_merkle_frontier_root(&w->f, root)) != CD_OK)
            return err;
        head_origin(w, w->next_head, from, sizeof from);
        if (memcmp(root, h->root, HASH_LEN) != 0) {
            cd_err_set(CD_ERR_INTEGRITY,
                       "the root of the first %llu entries does not match the signed tree head "
                       "of that size%s: some entry up to %llu was altered",
                       (unsigned long long)h->tree_size, from, (unsigned long long)h->tree_size);
            return fail_at(w, h->tree_size ? h->tree_size : 1);
        }
        if (w->pk == NULL)
            return cd_err_set(CD_ERR_CRYPTO, "tree heads exist but no public key was given");
        if ((err = cd_audit_sth_verify(h, w->pk)) != CD_OK) {
            if (err != CD_ERR_INTEGRITY)
                return err;
            cd_err_set(CD_ERR_INTEGRITY, "%s%s", cd_err_detail(), from);
            return fail_at(w, h->tree_size ? h->tree_size : 1);
        }
        if (from[0] == '\0')
            w->rep->tree_heads++; /* trusted heads are counted once found in the ledger */
        w->next_head++;
    }
    return CD_OK;
}

/* Checks a single head (read from an export, or trusted: src names where it came from, NULL
 * for an export's own) against the walker's current tree, outside the walker's own list. */
static enum cd_err check_one_head(struct walker *w, const struct cd_audit_sth *head,
                                  const char *from)
{
    const struct cd_audit_sth *heads = w->heads;
    const char *const *src = w->src;
    const char *one[1] = {from};
    size_t nheads = w->nheads, next = w->next_head;
    enum cd_err err;

    w->heads = head;
    w->src = one;
    w->nheads = 1;
    w->next_head = 0;
    err = check_heads(w);
    w->heads = heads;
    w->src = src;
    w->nheads = nheads;
    w->next_head = next;
    return err;
}

/* Accepts entry seq (bytes[0..n)) in walk order: its sequence number, its recorded previous hash
 * (prev, NULL when the source has none), its recorded chain hash `hash`, its "seq" member
 * (inner, read from the bytes by the caller; ok_inner false when absent or malformed), then adds
 * its leaf to the recomputed tree (emit gets every subtree it completes) and checks the heads of
 * that size. The chain hash and the leaf hash are computed together (cd_crypto_sha256_pair).
 * The checks fail in this order, which is the order the report ranks failures of one entry. */
static enum cd_err entry_step(struct walker *w, uint64_t seq, const void *bytes, size_t n,
                              const uint8_t *prev, const uint8_t *hash, bool ok_inner,
                              uint64_t inner, const char *bad_column,
                              enum cd_err (*emit)(void *, unsigned, uint64_t, const uint8_t *),
                              void *ctx)
{
    static const uint8_t leaf_prefix = 0x00; /* RFC 9162 leaf, as cd_merkle_leaf_hash */
    uint8_t h[HASH_LEN], lh[HASH_LEN];
    enum cd_err err;

    if (seq != w->count + 1) {
        cd_err_set(CD_ERR_INTEGRITY,
                   "audit entry %llu is missing (found %llu next): entries were deleted or "
                   "reordered",
                   (unsigned long long)w->count + 1, (unsigned long long)seq);
        return fail_at(w, w->count + 1);
    }
    if (prev && memcmp(prev, w->prev, HASH_LEN) != 0) {
        cd_err_set(CD_ERR_INTEGRITY,
                   "audit entry %llu does not follow entry %llu (previous-hash mismatch): "
                   "entries were reordered or replaced",
                   (unsigned long long)seq, (unsigned long long)seq - 1);
        return fail_at(w, seq);
    }
    /* h = SHA-256(prev || entry), as cd__audit_chain_hash. */
    if ((err = cd_crypto_sha256_pair(w->prev, HASH_LEN, &leaf_prefix, 1, bytes, n, h, lh)) !=
        CD_OK)
        return err;
    if (memcmp(h, hash, HASH_LEN) != 0) {
        cd_err_set(CD_ERR_INTEGRITY, "audit entry %llu was altered (hash mismatch)",
                   (unsigned long long)seq);
        return fail_at(w, seq);
    }
    if (!ok_inner || inner != seq) {
        cd_err_set(CD_ERR_INTEGRITY, "audit entry %llu was altered (sequence mismatch)",
                   (unsigned long long)seq);
        return fail_at(w, seq);
    }
    if (bad_column) {
        /* The entry is intact, its row's filter column is not: the listings and the customer's
         * access log would show the event to the wrong customer, or hide it. */
        cd_err_set(CD_ERR_INTEGRITY,
                   "audit entry %llu: its %s column was altered (it does not match the hashed "
                   "entry, so the listings and the access log would misfile the event)",
                   (unsigned long long)seq, bad_column);
        return fail_at(w, seq);
    }
    memcpy(w->prev, h, HASH_LEN);
    if ((err = cd_merkle_append(&w->f, lh, emit, ctx)) != CD_OK)
        return err;
    w->count = seq;
    w->rep->entries = seq;
    return check_heads(w);
}

/* Accepts entry seq of an export (which has no previous hashes or stored nodes). */
static enum cd_err walk_entry(struct walker *w, uint64_t seq, const void *bytes, size_t n,
                              const uint8_t *hash)
{
    uint64_t inner = 0;
    bool ok_inner = cd__audit_entry_seq(bytes, n, &inner);
    enum cd_err err;

    if ((err = entry_step(w, seq, bytes, n, NULL, hash, ok_inner, inner, NULL, no_emit, NULL)) !=
        CD_OK)
        return err;
    if (w->progress && (seq & PROGRESS_EVERY) == 0)
        w->progress(seq, w->total);
    return CD_OK;
}

/* Heads whose size the entries never reached: the tail was cut off after they were signed. */
static enum cd_err check_truncation(struct walker *w)
{
    if (w->next_head < w->nheads) {
        const struct cd_audit_sth *h = &w->heads[w->nheads - 1];
        char from[160];
        cd_err_set(CD_ERR_INTEGRITY,
                   "audit entry %llu is missing: a tree head signed for %llu entries%s covers "
                   "it, but the ledger ends after entry %llu (the tail was truncated)",
                   (unsigned long long)w->count + 1, (unsigned long long)h->tree_size,
                   head_origin(w, w->nheads - 1, from, sizeof from),
                   (unsigned long long)w->count);
        return fail_at(w, w->count + 1);
    }
    return CD_OK;
}

/* ---- the database ----
 *
 * Two threads stream the ledger from one read transaction, with sequential queries only, and
 * split the work about evenly (docs/audit.md has the figures). The calling thread (the reader)
 * steps through audit_events in seq order, checks the form of each row, reads the entry's "seq"
 * member and copies the row into a batch. The walk thread takes the batches in order and does
 * all the hashing: it checks each entry's sequence number, previous hash and chain hash, its
 * "seq" member, recomputes its leaf (together with the chain hash), appends it to a frontier and
 * checks each tree head as its size is reached; it never touches the database. Once the entries
 * are read, the reader reads the stored nodes (levels CD__AUDIT_NODE_MIN_LEVEL and up, about one
 * row per eight entries) in (level, idx) key order, checking the shape of each level. The
 * frontier emits the recomputed nodes of all levels interleaved while the rows come level by
 * level, so instead of keeping the recomputed nodes in memory each level's recomputed and stored
 * sequences are folded into one SHA-256 digest each and compared at the end. A level that
 * differs (tampering, so rare) is then searched node by node, so the report still names the
 * first bad node: every level below it equals the recomputed tree, so that node is the first one
 * a node-by-node check in (level, idx) order finds.
 *
 * Failures rank as in one single-threaded walk: the chain, seq and tree-head checks by entry,
 * then a truncated tail, then the shape of the tree, then the nodes. The walk thread judges
 * every entry in order; the reader only stops at a malformed row, after handing over every row
 * before it, so a walk failure (an earlier entry) outranks it. */

#define BATCH_ENTRIES 512
#define NBATCH 8
#define LEVELS 64

/* Rows handed from the reader to the walk thread. */
struct batch {
    unsigned n;
    size_t len, cap;
    char *bytes; /* the entries, back to back: entry i is bytes[off[i] .. off[i+1]) */
    size_t off[BATCH_ENTRIES + 1];
    uint64_t seq[BATCH_ENTRIES], inner[BATCH_ENTRIES]; /* row seq, the entry's "seq" member */
    bool ok_inner[BATCH_ENTRIES];                      /* that member was found */
    const char *bad_column[BATCH_ENTRIES]; /* an index column that disagrees, or NULL */
    uint8_t prev[BATCH_ENTRIES][HASH_LEN], hash[BATCH_ENTRIES][HASH_LEN];
};

#define DIGEST_BUF 64

/* One level's stream of node hashes, folded into a digest (buffered, because one digest update
 * per 32-byte hash costs more than the hashing). */
struct level_digest {
    struct cd_crypto_sha256 h;
    bool on;    /* h initialised */
    bool bad;   /* a stored node that is not a 32-byte hash */
    uint64_t n; /* hashes added */
    unsigned nbuf;
    uint8_t buf[DIGEST_BUF][HASH_LEN];
};

/* The rows of each level value, in key order: level L >= CD__AUDIT_NODE_MIN_LEVEL must hold
 * exactly size >> L nodes with indexes 0.. and no gaps, lower levels none. The first failure
 * is kept. */
struct shape {
    uint64_t size;
    bool in_group;
    int64_t level, count, lo, hi;
    int64_t groups;
    uint64_t bad_seq; /* 0: no failure */
    char detail[512];
};

struct db_verify {
    struct cd_audit_sth *heads; /* stored, by size */
    size_t nheads;
    const struct cd_audit_trusted *trusted;
    struct cd_audit_sth *all; /* stored and trusted heads by size: what the walk checks */
    const char **all_src;     /* per head of all: its source, NULL when stored */
    size_t nall;
    /* the reader (the caller) */
    uint64_t rows, total; /* rows read, rows in the snapshot */
    void (*progress)(uint64_t, uint64_t);
    uint64_t bad_row;     /* 0, or the seq the reader named in a malformed-row failure */
    bool aborted;         /* the reader stopped because the walk thread had failed */
    struct shape shape;
    struct level_digest stored[LEVELS];
    /* the hand-over: batches [take, put) are full and belong to the walk thread */
    pthread_mutex_t mu;
    pthread_cond_t filled, freed;
    struct batch batch[NBATCH];
    unsigned put, take, nfull;
    bool entries_done;  /* no more batches will come */
    bool walk_stopped;  /* the walk thread takes no more batches */
    /* the walk thread */
    struct walker walk;
    struct cd_audit_report walk_rep;
    struct level_digest expect[LEVELS];
    enum cd_err walk_err;
    char walk_detail[512];
};

static bool is_hash(const struct cd_val *v)
{
    return v->type == CD_VAL_BLOB && v->len == HASH_LEN;
}

/* Gives the filled batch to the walk thread and waits for a free one. Returns false when the
 * walk thread has stopped (it failed), so the reader should stop too. */
static bool hand_over(struct db_verify *v)
{
    bool stopped;

    pthread_mutex_lock(&v->mu);
    v->put++;
    v->nfull++;
    pthread_cond_signal(&v->filled);
    while (v->nfull == NBATCH && !v->walk_stopped)
        pthread_cond_wait(&v->freed, &v->mu);
    stopped = v->walk_stopped;
    pthread_mutex_unlock(&v->mu);
    v->batch[v->put % NBATCH].n = 0;
    v->batch[v->put % NBATCH].len = 0;
    return !stopped;
}

static enum cd_err entry_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct db_verify *v = ctx;
    uint64_t seq = n > 0 && cols[0].type == CD_VAL_INT ? (uint64_t)cols[0].i : 0;
    struct batch *b = &v->batch[v->put % NBATCH];

    if (n < 8 || (cols[1].type != CD_VAL_BLOB && cols[1].type != CD_VAL_TEXT) ||
        !is_hash(&cols[2]) || !is_hash(&cols[3])) {
        v->bad_row = seq ? seq : v->rows + 1;
        return cd_err_set(CD_ERR_INTEGRITY, "audit entry %llu is malformed",
                          (unsigned long long)v->bad_row);
    }
    if (b->len + cols[1].len > b->cap) {
        size_t cap = 2 * (b->len + cols[1].len) + 64 * 1024;
        char *p = cd_realloc(b->bytes, cap);
        if (p == NULL)
            return CD_ERR_NOMEM;
        b->bytes = p;
        b->cap = cap;
    }
    unsigned i = b->n++;
    memcpy(b->bytes + b->len, cols[1].p, cols[1].len);
    b->off[i] = b->len;
    b->len += cols[1].len;
    b->off[i + 1] = b->len;
    b->seq[i] = seq;
    /* Read here rather than on the walk thread, which does the hashing and has less slack. */
    b->ok_inner[i] = cd__audit_entry_seq(cols[1].p, cols[1].len, &b->inner[i]);
    b->bad_column[i] = cd__audit_columns_check((struct cd_str){cols[1].p, cols[1].len}, cols + 4);
    memcpy(b->prev[i], cols[2].p, HASH_LEN);
    memcpy(b->hash[i], cols[3].p, HASH_LEN);
    v->rows++;
    if (v->progress && (v->rows & PROGRESS_EVERY) == 0)
        v->progress(v->rows, v->total);
    if (b->n == BATCH_ENTRIES && !hand_over(v)) {
        v->aborted = true;
        return CD_ERR_BUSY; /* the walk thread's error is the one reported */
    }
    return CD_OK;
}

static enum cd_err digest_flush(struct level_digest *d)
{
    enum cd_err err;

    if (!d->on) {
        if ((err = cd_crypto_sha256_init(&d->h)) != CD_OK)
            return err;
        d->on = true;
    }
    err = cd_crypto_sha256_update(&d->h, d->buf, (size_t)d->nbuf * HASH_LEN);
    d->nbuf = 0;
    return err;
}

static enum cd_err digest_add(struct level_digest *d, const uint8_t *hash)
{
    memcpy(d->buf[d->nbuf++], hash, HASH_LEN);
    d->n++;
    return d->nbuf == DIGEST_BUF ? digest_flush(d) : CD_OK;
}

static enum cd_err emit_expected(void *ctx, unsigned level, uint64_t index, const uint8_t *hash)
{
    struct db_verify *v = ctx;

    if (level < CD__AUDIT_NODE_MIN_LEVEL)
        return CD_OK; /* not stored: nothing to compare against */
    assert(level < LEVELS); /* cd_merkle_append stops below 2^63 leaves */
    return digest_add(&v->expect[level], hash);
}

/* The walk thread's work on one batch of rows, which follow entry walk.count. */
static enum cd_err walk_batch(struct db_verify *v, const struct batch *b)
{
    struct walker *w = &v->walk;
    enum cd_err err;

    for (unsigned i = 0; i < b->n; i++) {
        if ((err = entry_step(w, b->seq[i], b->bytes + b->off[i], b->off[i + 1] - b->off[i],
                              b->prev[i], b->hash[i], b->ok_inner[i], b->inner[i],
                              b->bad_column[i], emit_expected, v)) != CD_OK)
            return err;
    }
    return CD_OK;
}

static void *walk_thread(void *arg)
{
    struct db_verify *v = arg;
    enum cd_err err = check_heads(&v->walk); /* heads of size 0 */

    while (err == CD_OK) {
        pthread_mutex_lock(&v->mu);
        while (v->nfull == 0 && !v->entries_done)
            pthread_cond_wait(&v->filled, &v->mu);
        struct batch *b = v->nfull > 0 ? &v->batch[v->take % NBATCH] : NULL;
        pthread_mutex_unlock(&v->mu);
        if (b == NULL)
            break;
        err = walk_batch(v, b);
        pthread_mutex_lock(&v->mu);
        v->take++;
        v->nfull--;
        pthread_cond_signal(&v->freed);
        pthread_mutex_unlock(&v->mu);
    }
    if (err != CD_OK)
        snprintf(v->walk_detail, sizeof v->walk_detail, "%s", cd_err_detail());
    pthread_mutex_lock(&v->mu);
    v->walk_err = err;
    v->walk_stopped = true;
    pthread_cond_signal(&v->freed);
    pthread_mutex_unlock(&v->mu);
    return NULL;
}

static void shape_end(struct shape *sh)
{
    int64_t level = sh->level, count = sh->count, lo = sh->lo, hi = sh->hi;
    uint64_t want = level >= CD__AUDIT_NODE_MIN_LEVEL && level < 64 ? sh->size >> level : 0;

    sh->in_group = false;
    sh->groups++;
    if (sh->bad_seq || (count > 0 && lo == 0 && hi == count - 1 && (uint64_t)count == want))
        return;
    /* The first entry whose subtree is absent or extra names the damage. */
    uint64_t first = (uint64_t)(hi + 1 < (int64_t)want ? hi + 1 : (int64_t)want);
    if (level >= 0 && level < 64 && first < (UINT64_MAX >> level))
        first <<= level;
    sh->bad_seq = first + 1;
    snprintf(sh->detail, sizeof sh->detail,
             "Merkle level %lld holds %lld nodes (indexes %lld..%lld) but %llu entries need %llu: "
             "nodes were deleted or added near entry %llu",
             (long long)level, (long long)count, (long long)lo, (long long)hi,
             (unsigned long long)sh->size, (unsigned long long)want,
             (unsigned long long)first + 1);
}

static void shape_row(struct shape *sh, int64_t level, int64_t idx)
{
    if (sh->in_group && level != sh->level)
        shape_end(sh);
    if (!sh->in_group) {
        sh->in_group = true;
        sh->level = level;
        sh->count = 0;
        sh->lo = idx;
    }
    sh->count++;
    sh->hi = idx;
}

/* A stored node row: its level's shape and, over the entries walked, its level's digest. */
static enum cd_err node_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct db_verify *v = ctx;
    int64_t level = n > 0 ? cols[0].i : 0, idx = n > 1 ? cols[1].i : 0;
    uint64_t size = v->rows;

    shape_row(&v->shape, level, idx);
    if (level >= CD__AUDIT_NODE_MIN_LEVEL && level < LEVELS && idx >= 0 &&
        (uint64_t)idx < (size >> level)) {
        struct level_digest *d = &v->stored[level];
        if (n < 3 || !is_hash(&cols[2])) {
            d->bad = true;
            d->n++;
            return CD_OK;
        }
        return digest_add(d, cols[2].p);
    }
    return CD_OK;
}

struct locate {
    struct db_verify *v;
    struct cd_tx *tx;
    uint64_t done;
};

static enum cd_err locate_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct locate *lc = ctx;
    uint8_t h[HASH_LEN];
    enum cd_err err = CD_OK;
    int64_t level = cols[0].i, idx = cols[1].i;
    bool ok = n >= 5 && is_hash(&cols[2]);

    /* The lowest stored level is recomputed from its entries, the others from their stored
     * children (which the levels below have already shown to be right). */
    if (ok && level == CD__AUDIT_NODE_MIN_LEVEL)
        err = cd__audit_subtree_from_entries(lc->tx, (unsigned)level, (uint64_t)idx, h);
    else if (ok && is_hash(&cols[3]) && is_hash(&cols[4]))
        err = cd_merkle_node_hash(cols[3].p, cols[4].p, h);
    else
        ok = false;
    if (err != CD_OK)
        return err;
    if (!ok || memcmp(h, cols[2].p, HASH_LEN) != 0) {
        uint64_t first = (uint64_t)idx << level;
        cd_err_set(CD_ERR_INTEGRITY,
                   "Merkle node (level %lld, index %lld) over entries %llu..%llu does not match "
                   "its %s",
                   (long long)level, (long long)idx, (unsigned long long)first + 1,
                   (unsigned long long)(first + (1ull << level)),
                   level == CD__AUDIT_NODE_MIN_LEVEL ? "entries" : "children");
        lc->v->walk_rep.bad_seq = first + 1;
        return CD_ERR_INTEGRITY;
    }
    lc->done++;
    return CD_OK;
}

/* Compares each stored level's digest with the recomputed one, lowest level first, and names
 * the first bad node of the first level that differs. */
static enum cd_err check_nodes(struct cd_tx *tx, struct db_verify *v)
{
    uint64_t n = v->walk.count, nodes = 0;
    enum cd_err err;

    for (unsigned level = CD__AUDIT_NODE_MIN_LEVEL; level < LEVELS && (n >> level) > 0;
         level++) {
        struct level_digest *e = &v->expect[level], *st = &v->stored[level];
        uint8_t de[HASH_LEN], ds[HASH_LEN];
        if ((err = digest_flush(e)) != CD_OK || (err = digest_flush(st)) != CD_OK ||
            (err = cd_crypto_sha256_final(&e->h, de)) != CD_OK ||
            (err = cd_crypto_sha256_final(&st->h, ds)) != CD_OK)
            return err;
        assert(e->n == n >> level); /* the frontier emits every complete subtree once */
        if (!st->bad && st->n == e->n && memcmp(de, ds, HASH_LEN) == 0) {
            nodes += st->n;
            continue;
        }
        struct locate lc = {v, tx, 0};
        struct cd_val p[] = {CD_VINT(level)};
        err = cd_tx_exec(tx,
                         "SELECT p.level, p.idx, p.hash, l.hash, r.hash FROM audit_nodes p"
                         " LEFT JOIN audit_nodes l ON l.level = p.level - 1 AND l.idx = 2 * p.idx"
                         " LEFT JOIN audit_nodes r ON r.level = p.level - 1"
                         " AND r.idx = 2 * p.idx + 1"
                         " WHERE p.level = $1 ORDER BY p.idx",
                         p, 1, locate_row, &lc, NULL);
        v->walk_rep.nodes = nodes + lc.done;
        if (err != CD_OK)
            return err;
        /* Every stored node matches: some are missing from this snapshot. */
        uint64_t first = st->n << level;
        cd_err_set(CD_ERR_INTEGRITY, "Merkle node (level %u, index %llu) over entries %llu.. "
                                     "is missing",
                   level, (unsigned long long)st->n, (unsigned long long)first + 1);
        v->walk_rep.bad_seq = first + 1;
        return CD_ERR_INTEGRITY;
    }
    v->walk_rep.nodes = nodes;
    return CD_OK;
}

/* After both walks: a truncated tail, the shape of the tree, the nodes. */
static enum cd_err check_tree(struct cd_tx *tx, struct db_verify *v)
{
    enum cd_err err;

    if ((err = check_truncation(&v->walk)) != CD_OK)
        return err;
    if (v->shape.bad_seq) {
        v->walk_rep.bad_seq = v->shape.bad_seq;
        return cd_err_set(CD_ERR_INTEGRITY, "%s", v->shape.detail);
    }
    uint64_t size = v->shape.size;
    int64_t want_levels = 0;
    for (uint64_t s = size >> CD__AUDIT_NODE_MIN_LEVEL; s; s >>= 1)
        want_levels++;
    if (v->shape.groups != want_levels) {
        v->walk_rep.bad_seq = size ? size : 1;
        return cd_err_set(CD_ERR_INTEGRITY,
                          "the Merkle tree has %lld stored levels but %llu entries need %lld",
                          (long long)v->shape.groups, (unsigned long long)size,
                          (long long)want_levels);
    }
    return check_nodes(tx, v);
}

/* ---- trusted heads ---- */

struct head_ref {
    struct cd_audit_sth sth;
    const char *src;
};

static int head_ref_cmp(const void *a, const void *b)
{
    const struct head_ref *x = a, *y = b;

    if (x->sth.tree_size != y->sth.tree_size)
        return x->sth.tree_size < y->sth.tree_size ? -1 : 1;
    return (x->src != NULL) - (y->src != NULL); /* the stored head first */
}

/* Sorts the stored heads and the trusted ones into one list by size (v->all, v->all_src). */
static enum cd_err merge_heads(struct db_verify *v)
{
    size_t nt = v->trusted ? v->trusted->n : 0, n = v->nheads + nt;
    struct head_ref *r;

    if (n == 0)
        return CD_OK;
    if ((r = cd_malloc(n * sizeof *r)) == NULL || (v->all = cd_malloc(n * sizeof *v->all)) == NULL ||
        (v->all_src = cd_malloc(n * sizeof *v->all_src)) == NULL) {
        cd_free(r);
        return CD_ERR_NOMEM;
    }
    for (size_t i = 0; i < v->nheads; i++)
        r[i] = (struct head_ref){v->heads[i], NULL};
    for (size_t i = 0; i < nt; i++)
        r[v->nheads + i] = (struct head_ref){v->trusted->heads[i], v->trusted->source[i]};
    qsort(r, n, sizeof *r, head_ref_cmp);
    for (size_t i = 0; i < n; i++) {
        v->all[i] = r[i].sth;
        v->all_src[i] = r[i].src;
    }
    v->nall = n;
    cd_free(r);
    return CD_OK;
}

static bool same_head(const struct cd_audit_sth *a, const struct cd_audit_sth *b)
{
    return a->tree_size == b->tree_size && a->timestamp_ms == b->timestamp_ms &&
           memcmp(a->root, b->root, HASH_LEN) == 0 &&
           memcmp(a->signature, b->signature, CD_CRYPTO_SIG_LEN) == 0 &&
           memcmp(a->key_id, b->key_id, HASH_LEN) == 0;
}

/* The stored head of that size, or NULL (the stored heads are sorted by size). */
static const struct cd_audit_sth *stored_head(const struct db_verify *v, uint64_t size)
{
    size_t lo = 0, hi = v->nheads;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v->heads[mid].tree_size < size)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < v->nheads && v->heads[lo].tree_size == size ? &v->heads[lo] : NULL;
}

/* After the walk accepted every entry, head and node: each trusted head (its root at its size
 * and its signature already checked by the walk) must be stored in the database, as every head
 * the server signs is, and its RFC 9162 consistency proof to the whole ledger, built from the
 * stored nodes as GET /v1/audit/proofs/consistency builds it, must verify against the root the
 * walk recomputed. A head missing from the database means heads were deleted. */
static enum cd_err check_trusted(struct cd_tx *tx, struct db_verify *v)
{
    const struct cd_audit_trusted *t = v->trusted;
    uint64_t n = v->walk.count;
    uint8_t root[HASH_LEN];
    struct cd_merkle_proof *proof = NULL;
    enum cd_err err = CD_OK;

    if (t == NULL || t->n == 0)
        return CD_OK;
    if ((err = cd_merkle_frontier_root(&v->walk.f, root)) != CD_OK)
        return err;
    if ((proof = cd_malloc(sizeof *proof)) == NULL)
        return CD_ERR_NOMEM;
    for (size_t i = 0; i < t->n; i++) {
        const struct cd_audit_sth *h = &t->heads[i];
        const struct cd_audit_sth *st = stored_head(v, h->tree_size);
        if (st == NULL || !same_head(st, h)) {
            err = cd_err_set(CD_ERR_INTEGRITY,
                             st ? "the signed tree head of size %llu (from %s) differs from the "
                                  "one the database holds for that size"
                                : "the signed tree head of size %llu (from %s) is not in the "
                                  "database: signed tree heads were deleted",
                             (unsigned long long)h->tree_size, t->source[i]);
            v->walk_rep.bad_seq = 0;
            goto out;
        }
        if (h->tree_size > 0) {
            err = cd_merkle_consistency_proof(h->tree_size, n, cd__audit_node_get, tx, proof);
            if (err == CD_OK)
                err = cd_merkle_verify_consistency(h->tree_size, n, h->root, root,
                                                   (const uint8_t(*)[HASH_LEN])proof->nodes,
                                                   proof->len);
            if (err == CD_ERR_INTEGRITY || err == CD_ERR_NOT_FOUND) {
                err = cd_err_set(CD_ERR_INTEGRITY,
                                 "the consistency proof from the tree head of size %llu (from "
                                 "%s) to the ledger of %llu entries does not verify",
                                 (unsigned long long)h->tree_size, t->source[i],
                                 (unsigned long long)n);
                v->walk_rep.bad_seq = h->tree_size;
            }
            if (err != CD_OK)
                goto out;
        }
        v->walk_rep.trusted++;
    }
out:
    cd_free(proof);
    return err;
}

static enum cd_err verify_all_fn(struct cd_tx *tx, void *ctx)
{
    struct db_verify *v = ctx;
    uint64_t size = 0;
    pthread_t th;
    enum cd_err err;

    if ((err = cd__audit_size(tx, &size)) != CD_OK ||
        (err = cd__audit_sth_all(tx, &v->heads, &v->nheads)) != CD_OK ||
        (err = merge_heads(v)) != CD_OK)
        return err;
    v->total = size;
    v->walk.heads = v->all;
    v->walk.src = v->all_src;
    v->walk.nheads = v->nall;
    if (pthread_create(&th, NULL, walk_thread, v) != 0)
        return cd_err_set(CD_ERR_INTERNAL, "cannot start the verification thread");
    err = cd_tx_exec(tx, "SELECT seq, entry, prev_hash, hash, " CD__AUDIT_INDEX_COLS
                         " FROM audit_events ORDER BY seq",
                     NULL, 0, entry_row, v, NULL);
    /* The rows before a malformed one still get all their checks: an earlier failure ranks
     * first. */
    if (!v->aborted && v->batch[v->put % NBATCH].n > 0)
        hand_over(v);
    pthread_mutex_lock(&v->mu);
    v->entries_done = true;
    pthread_cond_signal(&v->filled);
    pthread_mutex_unlock(&v->mu);
    /* The stored nodes, while the walk thread finishes. When it accepts every row, the ledger
     * has v->rows entries. */
    v->shape.size = v->rows;
    if (err == CD_OK) {
        err = cd_tx_exec(tx, "SELECT level, idx, hash FROM audit_nodes ORDER BY level, idx",
                         NULL, 0, node_row, v, NULL);
        if (v->shape.in_group)
            shape_end(&v->shape);
    }
    pthread_join(th, NULL);
    if (v->walk_err != CD_OK) {
        cd_err_set(v->walk_err, "%s", v->walk_detail);
        return v->walk_err;
    }
    if (v->aborted)
        return cd_err_set(CD_ERR_INTERNAL, "the verification thread stopped early");
    if (err != CD_OK) {
        v->walk_rep.bad_seq = v->bad_row;
        return err;
    }
    if ((err = check_tree(tx, v)) != CD_OK)
        return err;
    return check_trusted(tx, v);
}

enum cd_err cd_audit_verify_all(struct cd_store *s, const uint8_t *pk,
                                const struct cd_audit_trusted *trusted,
                                struct cd_audit_report *rep,
                                void (*progress)(uint64_t done, uint64_t total))
{
    struct db_verify *v = cd_calloc(1, sizeof *v);
    enum cd_err err;

    memset(rep, 0, sizeof *rep);
    if (v == NULL)
        return CD_ERR_NOMEM;
    v->progress = progress;
    v->trusted = trusted;
    v->walk.pk = pk;
    v->walk.rep = &v->walk_rep;
    pthread_mutex_init(&v->mu, NULL);
    pthread_cond_init(&v->filled, NULL);
    pthread_cond_init(&v->freed, NULL);
    err = cd_store_read(s, verify_all_fn, v);
    *rep = v->walk_rep;
    if (err == CD_OK && progress)
        progress(v->rows, v->total);
    for (unsigned i = 0; i < LEVELS; i++) {
        cd_crypto_sha256_free(&v->expect[i].h);
        cd_crypto_sha256_free(&v->stored[i].h);
    }
    for (unsigned i = 0; i < NBATCH; i++)
        cd_free(v->batch[i].bytes);
    cd_free(v->heads);
    cd_free(v->all);
    cd_free(v->all_src);
    pthread_cond_destroy(&v->freed);
    pthread_cond_destroy(&v->filled);
    pthread_mutex_destroy(&v->mu);
    cd_free(v);
    return err;
}

/* ---- export ---- */

struct export_ctx {
    FILE *out;
    struct cd_audit_sth *heads;
    size_t nheads, next;
    uint64_t entries, written_heads;
    uint64_t total;
    void (*progress)(uint64_t, uint64_t);
};

static enum cd_err write_json_line(FILE *out, json_t *o)
{
    enum cd_err err = CD_OK;

    if (o == NULL)
        return CD_ERR_NOMEM;
    if (json_dumpf(o, out, JSON_COMPACT | JSON_ENSURE_ASCII) != 0 || fputc('\n', out) == EOF)
        err = cd_err_set(CD_ERR_IO, "cannot write the export");
    json_decref(o);
    return err;
}

static enum cd_err export_heads_upto(struct export_ctx *x, uint64_t size)
{
    while (x->next < x->nheads && x->heads[x->next].tree_size <= size) {
        json_t *o = NULL;
        enum cd_err err = cd_audit_sth_json(&x->heads[x->next], &o);
        if (err != CD_OK)
            return err;
        if (cd_json_set_new(o, "type", json_string("tree_head")) != CD_OK) {
            json_decref(o);
            return CD_ERR_NOMEM;
        }
        if ((err = write_json_line(x->out, o)) != CD_OK)
            return err;
        x->written_heads++;
        x->next++;
    }
    return CD_OK;
}

static enum cd_err export_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct export_ctx *x = ctx;
    char hex[2 * HASH_LEN + 1];
    enum cd_err err;

    if (n < 3 || cols[0].type != CD_VAL_INT ||
        (cols[1].type != CD_VAL_BLOB && cols[1].type != CD_VAL_TEXT) || !is_hash(&cols[2]))
        return cd_err_set(CD_ERR_INTEGRITY, "audit entry %lld is malformed", (long long)cols[0].i);
    cd_hex_encode(cols[2].p, HASH_LEN, hex);
    json_t *o = json_pack("{s:s,s:I,s:s%,s:s}", "type", "entry", "seq", (json_int_t)cols[0].i,
                          "entry", (const char *)cols[1].p, cols[1].len, "hash", hex);
    if ((err = write_json_line(x->out, o)) != CD_OK)
        return err;
    x->entries++;
    if (x->progress && (x->entries & PROGRESS_EVERY) == 0)
        x->progress(x->entries, x->total);
    return export_heads_upto(x, x->entries);
}

static enum cd_err export_fn(struct cd_tx *tx, void *ctx)
{
    struct export_ctx *x = ctx;
    int64_t total = 0;
    enum cd_err err;

    if ((err = cd_tx_int(tx, "SELECT count(*) FROM audit_events", NULL, 0, &total)) != CD_OK ||
        (err = cd__audit_sth_all(tx, &x->heads, &x->nheads)) != CD_OK)
        return err;
    x->total = (uint64_t)total;
    if ((err = export_heads_upto(x, 0)) != CD_OK)
        return err;
    if ((err = cd_tx_exec(tx, "SELECT seq, entry, hash FROM audit_events ORDER BY seq", NULL, 0,
                          export_row, x, NULL)) != CD_OK)
        return err;
    /* Heads beyond the last entry (a damaged ledger) are exported too, so the auditor sees it. */
    return export_heads_upto(x, UINT64_MAX);
}

enum cd_err cd_audit_export(struct cd_store *s, FILE *out, uint64_t *entries, uint64_t *heads,
                            void (*progress)(uint64_t done, uint64_t total))
{
    struct export_ctx x = {out, NULL, 0, 0, 0, 0, 0, progress};
    enum cd_err err = cd_store_read(s, export_fn, &x);

    cd_free(x.heads);
    if (err == CD_OK && fflush(out) != 0)
        err = cd_err_set(CD_ERR_IO, "cannot write the export");
    if (entries)
        *entries = x.entries;
    if (heads)
        *heads = x.written_heads;
    return err;
}

/* ---- an export, without the database ---- */

#define MAX_LINE (64 * 1024)

/* The trusted heads sorted by size (a cd_malloc'ed copy in *out; NULL when there are none). */
static enum cd_err trusted_sorted(const struct cd_audit_trusted *t, struct head_ref **out)
{
    *out = NULL;
    if (t == NULL || t->n == 0)
        return CD_OK;
    if ((*out = cd_malloc(t->n * sizeof **out)) == NULL)
        return CD_ERR_NOMEM;
    for (size_t i = 0; i < t->n; i++)
        (*out)[i] = (struct head_ref){t->heads[i], t->source[i]};
    qsort(*out, t->n, sizeof **out, head_ref_cmp);
    return CD_OK;
}

enum cd_err cd_audit_verify_export(FILE *in, const uint8_t pk[CD_CRYPTO_PK_LEN],
                                   const struct cd_audit_trusted *trusted,
                                   struct cd_audit_report *rep,
                                   void (*progress)(uint64_t done, uint64_t total))
{
    struct walker *w = cd_calloc(1, sizeof *w);
    struct cd_audit_sth head, *seen = NULL;
    struct head_ref *tr = NULL;
    size_t nt = trusted ? trusted->n : 0, next_t = 0, nseen = 0, capseen = 0;
    char *line = cd_malloc(MAX_LINE + 2);
    size_t len;
    uint64_t lineno = 0;
    json_t *o = NULL;
    enum cd_err err = CD_OK;

    memset(rep, 0, sizeof *rep);
    if (w == NULL || line == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    if ((err = trusted_sorted(trusted, &tr)) != CD_OK)
        goto out;
    w->pk = pk;
    w->rep = rep;
    w->progress = progress;
    for (;;) {
        struct cd_str type = CD_STR_NULL;
        /* Heads the auditor obtained independently (GET /v1/audit/tree-heads/latest, the heads
         * file, receipts): the export must agree with each root when it reaches its size. */
        while (next_t < nt && tr[next_t].sth.tree_size == w->count) {
            if ((err = check_one_head(w, &tr[next_t].sth, tr[next_t].src)) != CD_OK)
                goto out;
            next_t++;
        }
        if (fgets(line, MAX_LINE + 2, in) == NULL)
            break;
        lineno++;
        len = strlen(line);
        if (len > MAX_LINE) {
            err = cd_err_set(CD_ERR_INVALID, "line %llu is too long", (unsigned long long)lineno);
            goto out;
        }
        if ((err = cd_json_parse_object(line, len, &o)) != CD_OK ||
            (err = cd_json_str(o, "type", true, &type)) != CD_OK) {
            cd_err_set(CD_ERR_INTEGRITY, "line %llu (after entry %llu) is malformed: %s",
                       (unsigned long long)lineno, (unsigned long long)w->count, cd_err_detail());
            rep->bad_seq = w->count + 1;
            err = CD_ERR_INTEGRITY;
            goto out;
        }
        if (cd_str_eq_c(type, "entry")) {
            int64_t seq = 0;
            struct cd_str bytes = CD_STR_NULL, hex = CD_STR_NULL;
            uint8_t hash[HASH_LEN];
            if ((err = cd_json_int(o, "seq", true, &seq)) != CD_OK ||
                (err = cd_json_str(o, "entry", true, &bytes)) != CD_OK ||
                (err = cd_json_str(o, "hash", true, &hex)) != CD_OK || hex.len != 2 * HASH_LEN ||
                cd_hex_decode(hex, hash, HASH_LEN) != CD_OK || seq <= 0) {
                cd_err_set(CD_ERR_INTEGRITY, "line %llu: audit entry %llu is malformed",
                           (unsigned long long)lineno, (unsigned long long)w->count + 1);
                rep->bad_seq = w->count + 1;
                err = CD_ERR_INTEGRITY;
                goto out;
            }
            if ((err = walk_entry(w, (uint64_t)seq, bytes.p, bytes.len, hash)) != CD_OK)
                goto out;
        } else if (cd_str_eq_c(type, "tree_head")) {
            if ((err = cd_audit_sth_parse(o, &head)) != CD_OK) {
                cd_err_set(CD_ERR_INTEGRITY, "line %llu: tree head is malformed: %s",
                           (unsigned long long)lineno, cd_err_detail());
                rep->bad_seq = w->count + 1;
                err = CD_ERR_INTEGRITY;
                goto out;
            }
            if (head.tree_size != w->count) {
                /* Heads follow the entry that completes them; a larger size means the entries
                 * it covers were cut out of the export. */
                cd_err_set(CD_ERR_INTEGRITY,
                           "line %llu: a tree head for %llu entries follows entry %llu: audit "
                           "entry %llu is missing (the export was truncated or reordered)",
                           (unsigned long long)lineno, (unsigned long long)head.tree_size,
                           (unsigned long long)w->count, (unsigned long long)w->count + 1);
                rep->bad_seq = w->count + 1;
                err = CD_ERR_INTEGRITY;
                goto out;
            }
            if ((err = check_one_head(w, &head, NULL)) != CD_OK)
                goto out;
            if (nt > 0) { /* kept only to find the trusted heads among them */
                if (nseen == capseen) {
                    size_t cap = capseen ? 2 * capseen : 64;
                    struct cd_audit_sth *p = cd_realloc(seen, cap * sizeof *p);
                    if (p == NULL) {
                        err = CD_ERR_NOMEM;
                        goto out;
                    }
                    seen = p;
                    capseen = cap;
                }
                seen[nseen++] = head;
            }
        } else {
            err = cd_err_set(CD_ERR_INTEGRITY, "line %llu has an unknown type",
                             (unsigned long long)lineno);
            rep->bad_seq = w->count + 1;
            goto out;
        }
        json_decref(o);
        o = NULL;
    }
    if (ferror(in)) {
        err = cd_err_set(CD_ERR_IO, "cannot read the export");
        goto out;
    }
    if (next_t < nt) {
        cd_err_set(CD_ERR_INTEGRITY,
                   "audit entry %llu is missing: the trusted tree head of size %llu (from %s) "
                   "covers it but the export ends after entry %llu (the tail was truncated)",
                   (unsigned long long)w->count + 1, (unsigned long long)tr[nt - 1].sth.tree_size,
                   tr[nt - 1].src, (unsigned long long)w->count);
        rep->bad_seq = w->count + 1;
        err = CD_ERR_INTEGRITY;
        goto out;
    }
    for (size_t i = 0; i < nt; i++) {
        size_t k = 0;
        while (k < nseen && !same_head(&seen[k], &tr[i].sth))
            k++;
        if (k == nseen) {
            err = cd_err_set(CD_ERR_INTEGRITY,
                             "the signed tree head of size %llu (from %s) is not in the export: "
                             "signed tree heads were deleted",
                             (unsigned long long)tr[i].sth.tree_size, tr[i].src);
            goto out;
        }
        rep->trusted++;
    }
    if (progress)
        progress(w->count, w->count);
out:
    json_decref(o);
    cd_free(line);
    cd_free(w);
    cd_free(tr);
    cd_free(seen);
    return err;
}
