/* Verifying the ledger: everything the database holds (cd_audit_verify_all, for
 * `candor audit verify --data`), and an exported copy without any database
 * (cd_audit_verify_export, what a third-party auditor runs), plus the export itself. Both
 * verifiers recompute the chain and the Merkle tree from the entry bytes alone; stored hashes
 * are only ever compared against, never trusted. */
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

/* Checks every head whose size the walk has just reached. */
static enum cd_err check_heads(struct walker *w)
{
    while (w->next_head < w->nheads && w->heads[w->next_head].tree_size <= w->count) {
        const struct cd_audit_sth *h = &w->heads[w->next_head];
        uint8_t root[HASH_LEN];
        enum cd_err err;

        if (h->tree_size < w->count)
            return cd_err_set(CD_ERR_INTERNAL, "tree heads out of order");
        if ((err = cd_merkle_frontier_root(&w->f, root)) != CD_OK)
            return err;
        if (memcmp(root, h->root, HASH_LEN) != 0) {
            cd_err_set(CD_ERR_INTEGRITY,
                       "the root of the first %llu entries does not match the signed tree head "
                       "of that size: some entry up to %llu was altered",
                       (unsigned long long)h->tree_size, (unsigned long long)h->tree_size);
            return fail_at(w, h->tree_size ? h->tree_size : 1);
        }
        if (w->pk == NULL)
            return cd_err_set(CD_ERR_CRYPTO, "tree heads exist but no public key was given");
        if ((err = cd_audit_sth_verify(h, w->pk)) != CD_OK) {
            if (err == CD_ERR_INTEGRITY)
                return fail_at(w, h->tree_size ? h->tree_size : 1);
            return err;
        }
        w->rep->tree_heads++;
        w->next_head++;
    }
    return CD_OK;
}

/* Accepts entry seq with bytes[0..n) whose recorded chain hash is `hash` (and recorded previous
 * hash `prev`, NULL when the source has none) and stored leaf `leaf` (NULL when the source has
 * none). */
static enum cd_err walk_entry(struct walker *w, uint64_t seq, const void *bytes, size_t n,
                              const uint8_t *prev, const uint8_t *hash, const uint8_t *leaf,
                              bool leaf_expected)
{
    uint8_t h[HASH_LEN], lh[HASH_LEN];
    uint64_t inner = 0;
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
    if ((err = cd__audit_chain_hash(w->prev, bytes, n, h)) != CD_OK)
        return err;
    if (memcmp(h, hash, HASH_LEN) != 0) {
        cd_err_set(CD_ERR_INTEGRITY, "audit entry %llu was altered (hash mismatch)",
                   (unsigned long long)seq);
        return fail_at(w, seq);
    }
    if (!cd__audit_entry_seq(bytes, n, &inner) || inner != seq) {
        cd_err_set(CD_ERR_INTEGRITY, "audit entry %llu was altered (sequence mismatch)",
                   (unsigned long long)seq);
        return fail_at(w, seq);
    }
    if ((err = cd_merkle_leaf_hash(bytes, n, lh)) != CD_OK)
        return err;
    if (leaf_expected && (leaf == NULL || memcmp(leaf, lh, HASH_LEN) != 0)) {
        cd_err_set(CD_ERR_INTEGRITY, "the Merkle leaf of audit entry %llu is %s",
                   (unsigned long long)seq, leaf ? "wrong" : "missing");
        return fail_at(w, seq);
    }
    if ((err = cd_merkle_append(&w->f, lh, no_emit, NULL)) != CD_OK)
        return err;
    memcpy(w->prev, h, HASH_LEN);
    w->count = seq;
    w->rep->entries = seq;
    if (w->progress && (seq & PROGRESS_EVERY) == 0)
        w->progress(seq, w->total);
    return check_heads(w);
}

/* Heads whose size the entries never reached: the tail was cut off after they were signed. */
static enum cd_err check_truncation(struct walker *w)
{
    if (w->next_head < w->nheads) {
        const struct cd_audit_sth *h = &w->heads[w->nheads - 1];
        cd_err_set(CD_ERR_INTEGRITY,
                   "audit entry %llu is missing: a tree head signed for %llu entries covers it, "
                   "but the ledger ends after entry %llu (the tail was truncated)",
                   (unsigned long long)w->count + 1, (unsigned long long)h->tree_size,
                   (unsigned long long)w->count);
        return fail_at(w, w->count + 1);
    }
    return CD_OK;
}

/* ---- the database ---- */

struct db_verify {
    struct walker w;
    uint64_t size;
};

static bool is_hash(const struct cd_val *v)
{
    return v->type == CD_VAL_BLOB && v->len == HASH_LEN;
}

static enum cd_err db_entry_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct walker *w = ctx;
    uint64_t seq = n > 0 && cols[0].type == CD_VAL_INT ? (uint64_t)cols[0].i : 0;

    if (n < 5 || (cols[1].type != CD_VAL_BLOB && cols[1].type != CD_VAL_TEXT) ||
        !is_hash(&cols[2]) || !is_hash(&cols[3]) ||
        (cols[4].type != CD_VAL_NULL && !is_hash(&cols[4]))) {
        cd_err_set(CD_ERR_INTEGRITY, "audit entry %llu is malformed", (unsigned long long)seq);
        return fail_at(w, seq ? seq : w->count + 1);
    }
    return walk_entry(w, seq, cols[1].p, cols[1].len, cols[2].p, cols[3].p,
                      cols[4].type == CD_VAL_NULL ? NULL : cols[4].p, true);
}

struct level_check {
    uint64_t size;
    struct cd_audit_report *rep;
};

static enum cd_err level_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct level_check *lc = ctx;
    int64_t level = cols[0].i, count = cols[1].i, lo = cols[2].i, hi = cols[3].i;
    uint64_t want = level >= 0 && level < 64 ? lc->size >> level : 0;

    if (n < 4 || count <= 0 || lo != 0 || hi != count - 1 || (uint64_t)count != want) {
        /* The first entry whose subtree is absent or extra names the damage. */
        uint64_t first = (uint64_t)(hi + 1 < (int64_t)want ? hi + 1 : (int64_t)want);
        if (level >= 0 && level < 64 && first < (UINT64_MAX >> level))
            first <<= level;
        lc->rep->bad_seq = first + 1;
        return cd_err_set(CD_ERR_INTEGRITY,
                          "Merkle level %lld holds %lld nodes (indexes %lld..%lld) but %llu "
                          "entries need %llu: nodes were deleted or added near entry %llu",
                          (long long)level, (long long)count, (long long)lo, (long long)hi,
                          (unsigned long long)lc->size, (unsigned long long)want,
                          (unsigned long long)first + 1);
    }
    return CD_OK;
}

struct inner_check {
    struct walker *w;
    uint64_t done;
};

static enum cd_err inner_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct inner_check *ic = ctx;
    uint8_t h[HASH_LEN];
    enum cd_err err;
    int64_t level = cols[0].i, idx = cols[1].i;

    if (n < 5 || !is_hash(&cols[2]) || !is_hash(&cols[3]) || !is_hash(&cols[4]) ||
        (err = cd_merkle_node_hash(cols[3].p, cols[4].p, h)) != CD_OK ||
        memcmp(h, cols[2].p, HASH_LEN) != 0) {
        uint64_t first = (uint64_t)idx << level;
        cd_err_set(CD_ERR_INTEGRITY,
                   "Merkle node (level %lld, index %lld) over entries %llu..%llu does not match "
                   "its children",
                   (long long)level, (long long)idx, (unsigned long long)first + 1,
                   (unsigned long long)(first + (1ull << level)));
        return fail_at(ic->w, first + 1);
    }
    ic->done++;
    return CD_OK;
}

static enum cd_err verify_all_fn(struct cd_tx *tx, void *ctx)
{
    struct db_verify *v = ctx;
    struct walker *w = &v->w;
    struct cd_audit_sth *heads = NULL;
    size_t nheads = 0;
    int64_t total = 0;
    enum cd_err err;

    if ((err = cd__audit_size(tx, &v->size)) != CD_OK ||
        (err = cd_tx_int(tx, "SELECT count(*) FROM audit_events", NULL, 0, &total)) != CD_OK ||
        (err = cd__audit_sth_all(tx, &heads, &nheads)) != CD_OK)
        return err;
    w->total = (uint64_t)total;
    w->heads = heads;
    w->nheads = nheads;
    if ((err = check_heads(w)) != CD_OK)
        goto out;
    /* 1. the chain and the leaves, entry by entry, checking heads as their sizes are reached */
    if ((err = cd_tx_exec(tx,
                          "SELECT e.seq, e.entry, e.prev_hash, e.hash, n.hash FROM audit_events e"
                          " LEFT JOIN audit_nodes n ON n.level = 0 AND n.idx = e.seq - 1"
                          " ORDER BY e.seq",
                          NULL, 0, db_entry_row, w, NULL)) != CD_OK ||
        (err = check_truncation(w)) != CD_OK)
        goto out;
    /* 2. the shape of the stored tree: exactly size >> L nodes at level L, no gaps */
    struct level_check lc = {w->count, w->rep};
    int64_t levels = 0;
    if ((err = cd_tx_exec(tx,
                          "SELECT level, count(*), min(idx), max(idx) FROM audit_nodes"
                          " GROUP BY level ORDER BY level",
                          NULL, 0, level_row, &lc, NULL)) != CD_OK ||
        (err = cd_tx_int(tx, "SELECT count(DISTINCT level) FROM audit_nodes", NULL, 0,
                         &levels)) != CD_OK)
        goto out;
    int64_t want_levels = 0;
    for (uint64_t s = w->count; s; s >>= 1)
        want_levels++;
    if (levels != want_levels) {
        w->rep->bad_seq = w->count ? w->count : 1;
        err = cd_err_set(CD_ERR_INTEGRITY, "the Merkle tree has %lld levels but %llu entries "
                                           "need %lld",
                         (long long)levels, (unsigned long long)w->count, (long long)want_levels);
        goto out;
    }
    /* 3. every interior node is the hash of its two children */
    struct inner_check ic = {w, 0};
    err = cd_tx_exec(tx,
                     "SELECT p.level, p.idx, p.hash, l.hash, r.hash FROM audit_nodes p"
                     " LEFT JOIN audit_nodes l ON l.level = p.level - 1 AND l.idx = 2 * p.idx"
                     " LEFT JOIN audit_nodes r ON r.level = p.level - 1 AND r.idx = 2 * p.idx + 1"
                     " WHERE p.level > 0 ORDER BY p.level, p.idx",
                     NULL, 0, inner_row, &ic, NULL);
    w->rep->nodes = ic.done;
out:
    cd_free(heads);
    w->heads = NULL;
    return err;
}

enum cd_err cd_audit_verify_all(struct cd_store *s, const uint8_t *pk, struct cd_audit_report *rep,
                                void (*progress)(uint64_t done, uint64_t total))
{
    struct db_verify *v = cd_calloc(1, sizeof *v);
    enum cd_err err;

    memset(rep, 0, sizeof *rep);
    if (v == NULL)
        return CD_ERR_NOMEM;
    v->w.pk = pk;
    v->w.rep = rep;
    v->w.progress = progress;
    err = cd_store_read(s, verify_all_fn, v);
    if (err == CD_OK && progress)
        progress(v->w.count, v->w.total);
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

enum cd_err cd_audit_verify_export(FILE *in, const uint8_t pk[CD_CRYPTO_PK_LEN],
                                   const struct cd_audit_sth *pinned, struct cd_audit_report *rep,
                                   void (*progress)(uint64_t done, uint64_t total))
{
    struct walker *w = cd_calloc(1, sizeof *w);
    struct cd_audit_sth head, pin = {0};
    char *line = cd_malloc(MAX_LINE + 2);
    size_t len;
    bool pin_done = pinned == NULL;
    uint64_t lineno = 0;
    json_t *o = NULL;
    enum cd_err err = CD_OK;

    memset(rep, 0, sizeof *rep);
    if (w == NULL || line == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    w->pk = pk;
    w->rep = rep;
    w->progress = progress;
    if (pinned)
        pin = *pinned;
    for (;;) {
        struct cd_str type = CD_STR_NULL;
        if (!pin_done && pin.tree_size == w->count) {
            /* A head the auditor obtained independently (e.g. GET /v1/audit/tree-heads/latest):
             * the export must agree with its root when it reaches its size. */
            w->heads = &pin;
            w->nheads = 1;
            w->next_head = 0;
            err = check_heads(w);
            w->heads = NULL;
            w->nheads = w->next_head = 0;
            if (err != CD_OK)
                goto out;
            pin_done = true;
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
            if ((err = walk_entry(w, (uint64_t)seq, bytes.p, bytes.len, NULL, hash, NULL,
                                  false)) != CD_OK)
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
            w->heads = &head;
            w->nheads = 1;
            w->next_head = 0;
            err = check_heads(w);
            w->heads = NULL;
            w->nheads = w->next_head = 0;
            if (err != CD_OK)
                goto out;
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
    if (!pin_done) {
        cd_err_set(CD_ERR_INTEGRITY,
                   "audit entry %llu is missing: the trusted tree head covers %llu entries but "
                   "the export ends after entry %llu (the tail was truncated)",
                   (unsigned long long)w->count + 1, (unsigned long long)pin.tree_size,
                   (unsigned long long)w->count);
        rep->bad_seq = w->count + 1;
        err = CD_ERR_INTEGRITY;
        goto out;
    }
    if (progress)
        progress(w->count, w->count);
out:
    json_decref(o);
    cd_free(line);
    cd_free(w);
    return err;
}
