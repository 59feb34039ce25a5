/* The audit ledger: append-only, hash-chained events. Each entry's canonical bytes are a JSON
 * object with sorted keys and no whitespace; its chain hash is SHA-256(prev_hash || bytes), so
 * changing, deleting or reordering any row breaks every hash after it. The same bytes are the
 * leaves of the RFC 9162 Merkle tree whose perfect subtrees of 16 leaves and more are stored, in
 * the same transaction, in audit_nodes; smaller ones are folded from the entries when needed
 * (tree.c signs its heads and serves proofs). */
#include <assert.h>
#include <stddef.h>
#include <string.h>
#include "audit_int.h"

#define HASH_LEN 32
#define MAX_EVENT 4096

/* ---- canonical bytes ----
 *
 * The canonical bytes of an event are exactly what jansson's json_dumps writes with
 * JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII for the object {seq, ts, members}: keys in
 * strcmp order, no whitespace, strings escaped as jansson does (\" \\ \b \f \n \r \t,
 * other control characters and every non-ASCII code point as \u and four upper-case hex
 * digits, surrogate pairs above U+FFFF). They are written directly because building and
 * sorting a jansson object took about a fifth of an append on the writer thread. The bytes are
 * hashed into the chain, so they must never change: tests/unit/test_audit.c compares them
 * with jansson's output. */

/* Appends "key":"value", (value escaped as jansson does, then a comma). */
static enum cd_err put_member(struct cd_buf *b, const char *key, const char *v)
{
    enum cd_err err;

    /* Plain appends: a printf per member was a sixth of the canonical bytes' cost. */
    if ((err = cd_buf_putc(b, '"')) != CD_OK || (err = cd_buf_puts(b, key)) != CD_OK ||
        (err = cd_buf_append(b, "\":", 2)) != CD_OK)
        return err;
    if ((err = cd_buf_json_string(b, cd_str_c(v))) == CD_ERR_INVALID)
        return cd_err_set(CD_ERR_INVALID, "audit event member '%s' is not valid UTF-8", key);
    return err != CD_OK ? err : cd_buf_putc(b, ',');
}

/* Appends v in decimal, as "%llu" would: a printf here was a tenth of the canonical bytes. */
static enum cd_err put_decimal(struct cd_buf *b, uint64_t v)
{
    char d[20];
    size_t i = sizeof d;

    do
        d[--i] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    return cd_buf_append(b, d + i, sizeof d - i);
}

/* The most the members "seq" and "ts" and the closing brace take: "seq":N,"ts":T} with N and
 * T at most 20 digits each, T perhaps with a sign. */
#define TAIL_MAX (sizeof "\"seq\":,\"ts\":-}" - 1 + 2 * 20)

/* Writes the canonical bytes of ev up to the "seq" member into b (empty): "{" and each member
 * followed by a comma. "seq" and "ts" come last in key order, so these bytes do not depend on
 * them, and room for them is reserved. */
static enum cd_err canonical_head(const struct cd_audit_event *ev, struct cd_buf *b)
{
    /* In strcmp order of the keys; all sort before "seq". */
    const struct {
        const char *key, *v;
    } m[] = {{"action", ev->action},           {"actor_name", ev->actor_name},
             {"actor_role", ev->actor_role},   {"actor_token", ev->actor_token},
             {"categories", ev->categories},   {"customer_id", ev->customer_id},
             {"data_sha256", ev->data_sha256}, {"outcome", ev->outcome},
             {"override_reason", ev->override_reason},
             {"purpose", ev->purpose},         {"reason", ev->reason},
             {"request_id", ev->request_id},   {"resource_id", ev->resource_id},
             {"rules", ev->rules}};
    enum cd_err err;

    /* One allocation for a typical event (about 300 bytes) instead of a few reallocations. */
    if ((err = cd_buf_reserve(b, 512)) != CD_OK || (err = cd_buf_putc(b, '{')) != CD_OK)
        return err;
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        if (m[i].v && (err = put_member(b, m[i].key, m[i].v)) != CD_OK)
            return err;
    return cd_buf_reserve(b, TAIL_MAX);
}

/* Completes the head in b with "seq":N,"ts":T}. The room was reserved: this cannot fail but
 * for an event larger than MAX_EVENT. */
static enum cd_err canonical_tail(struct cd_buf *b, uint64_t seq, int64_t ts)
{
    enum cd_err err;

    if ((err = cd_buf_append(b, "\"seq\":", 6)) != CD_OK ||
        (err = put_decimal(b, seq)) != CD_OK ||
        (err = cd_buf_append(b, ",\"ts\":", 6)) != CD_OK ||
        (ts < 0 && (err = cd_buf_putc(b, '-')) != CD_OK) ||
        (err = put_decimal(b, ts < 0 ? -(uint64_t)ts : (uint64_t)ts)) != CD_OK ||
        (err = cd_buf_putc(b, '}')) != CD_OK)
        return err;
    return b->len > MAX_EVENT ? CD_ERR_TOO_BIG : CD_OK;
}

enum cd_err cd_audit_prepare(const struct cd_audit_event *ev, struct cd_audit_prepared *out)
{
    enum cd_err err;

    out->bytes = CD_BUF_INIT(MAX_EVENT + TAIL_MAX);
    out->customer_id = ev->customer_id;
    out->action = ev->action;
    out->actor_token = ev->actor_token;
    if ((err = canonical_head(ev, &out->bytes)) != CD_OK) {
        cd_buf_free(&out->bytes);
        if (err == CD_ERR_TOO_BIG)
            err = cd_err_set(CD_ERR_TOO_BIG, "audit event too large");
    }
    return err;
}

void cd_audit_prepared_free(struct cd_audit_prepared *p)
{
    cd_buf_free(&p->bytes);
}

enum cd_err cd__audit_chain_hash(const uint8_t prev[CD__AUDIT_HASH_LEN], const void *bytes,
                                 size_t n, uint8_t out[CD__AUDIT_HASH_LEN])
{
    struct cd_str parts[2] = {{(const char *)prev, CD__AUDIT_HASH_LEN}, {bytes, n}};

    return cd_crypto_sha256v(parts, 2, out);
}

static enum cd_err chain_hash(const uint8_t prev[HASH_LEN], const char *bytes, size_t n,
                              uint8_t out[HASH_LEN])
{
    return cd__audit_chain_hash(prev, bytes, n, out);
}

bool cd__audit_entry_seq(const void *bytes, size_t n, uint64_t *seq)
{
    static const char key[] = "\"seq\":";
    const char *p = memmem(bytes, n, key, sizeof key - 1), *end = (const char *)bytes + n;
    uint64_t v = 0;
    int digits = 0;

    if (p == NULL || p == bytes || (p[-1] != ',' && p[-1] != '{'))
        return false;
    for (p += sizeof key - 1; p < end && *p >= '0' && *p <= '9' && digits < 19; p++, digits++)
        v = v * 10 + (uint64_t)(*p - '0');
    if (digits == 0 || p == end || (*p != ',' && *p != '}'))
        return false;
    *seq = v;
    return true;
}

bool cd_audit_entry_member(struct cd_str entry, const char *key, struct cd_str *value)
{
    char pat[40];
    size_t kl = strlen(key);
    const char *b = entry.p, *end = entry.p + entry.len, *p = b;

    /* The canonical form is compact with every '"' inside a string escaped, so a quote that
     * follows '{' or ',' opens a key: "key": found there is that member and nothing else. */
    if (kl + 3 > sizeof pat)
        return false;
    pat[0] = '"';
    memcpy(pat + 1, key, kl);
    pat[kl + 1] = '"';
    pat[kl + 2] = ':';
    for (;;) {
        p = memmem(p, (size_t)(end - p), pat, kl + 3);
        if (p == NULL)
            return false;
        if (p > b && (p[-1] == ',' || p[-1] == '{'))
            break;
        p++;
    }
    p += kl + 3;
    if (p < end && *p == '"') {
        const char *q = ++p;
        while (q < end && *q != '"')
            q += *q == '\\' ? 2 : 1;
        if (q >= end)
            return false;
        *value = (struct cd_str){p, (size_t)(q - p)};
        return true;
    }
    const char *q = p;
    while (q < end && *q != ',' && *q != '}')
        q++;
    if (q == p || q >= end)
        return false;
    *value = (struct cd_str){p, (size_t)(q - p)};
    return true;
}

/* True when the column holds the member's value v (present: the member exists): a text column
 * the string (escaped as the canonical form escapes it: ids, codes and names seldom need it, so
 * the plain comparison comes first), NULL the member's absence. */
static bool column_is(const struct cd_val *col, bool present, struct cd_str v)
{
    if (col->type == CD_VAL_NULL)
        return !present;
    if (!present || (col->type != CD_VAL_TEXT && col->type != CD_VAL_BLOB))
        return false;
    if (memchr(v.p, '\\', v.len) == NULL)
        return v.len == col->len && memcmp(v.p, col->p, v.len) == 0;
    struct cd_buf esc = CD_BUF_INIT(4 * MAX_EVENT);
    bool same = cd_buf_json_string(&esc, (struct cd_str){col->p, col->len}) == CD_OK &&
                esc.len == v.len + 2 && memcmp(esc.p + 1, v.p, v.len) == 0;
    cd_buf_free(&esc);
    return same;
}

/* The four members the index columns copy, in the order of cd__audit_columns_check's cols. */
static const struct cd_str index_keys[4] = {CD_STR("ts"), CD_STR("customer_id"),
                                            CD_STR("action"), CD_STR("actor_token")};

/* The raw values of the index members in canonical entry bytes, found without a substring
 * search per member (offline verify does this for every entry): the keys are sorted, so the
 * three string members are among the first few (action, actor_*, categories, customer_id) and
 * the walk stops at the first key past "customer_id"; "ts" is always the last member, read from
 * the end. False when the bytes are not in the canonical form. */
static bool index_members(struct cd_str e, struct cd_str v[4], bool found[4])
{
    const char *p = e.p, *end = e.p + e.len;

    memset(found, 0, 4 * sizeof *found);
    if (e.len < 2 || *p++ != '{' || end[-1] != '}')
        return false;
    /* ,"ts":-?digits} at the end. */
    const char *t = end - 1;
    while (t > p && ((t[-1] >= '0' && t[-1] <= '9') || t[-1] == '-'))
        t--;
    if (t - p >= 6 && memcmp(t - 6, ",\"ts\":", 6) == 0) {
        v[0] = (struct cd_str){t, (size_t)(end - 1 - t)};
        found[0] = true;
    }
    while (p < end && *p == '"') {
        /* Keys are plain names: no escapes. */
        const char *k = p + 1, *ke = memchr(k, '"', (size_t)(end - k));
        if (ke == NULL || ke + 2 > end || ke[1] != ':')
            return false;
        size_t kl = (size_t)(ke - k);
        int past = memcmp(k, "customer_id", kl < 11 ? kl : 11);
        if (past > 0 || (past == 0 && kl > 11))
            return true; /* sorted: no index member comes later */
        const char *val = ke + 2, *ve;
        if (val >= end || *val != '"')
            return false; /* the members before "seq" are strings */
        /* Its end is the first quote not escaped (after an even run of backslashes). */
        for (ve = val + 1;; ve++) {
            if ((ve = memchr(ve, '"', (size_t)(end - ve))) == NULL)
                return false;
            size_t bs = 0;
            while (ve - bs > val + 1 && ve[-1 - (ptrdiff_t)bs] == '\\')
                bs++;
            if (bs % 2 == 0)
                break;
        }
        for (int i = 1; i < 4; i++)
            if (kl == index_keys[i].len && memcmp(k, index_keys[i].p, kl) == 0) {
                v[i] = (struct cd_str){val + 1, (size_t)(ve - val - 1)};
                found[i] = true;
            }
        if (ve + 1 >= end || ve[1] != ',')
            return ve + 2 == end;
        p = ve + 2;
    }
    return false;
}

const char *cd__audit_columns_check(struct cd_str entry, const struct cd_val cols[4])
{
    struct cd_str v[4];
    bool found[4];

    if (!index_members(entry, v, found))
        return "ts"; /* not canonical bytes: the chain check names the entry first */
    if (cols[0].type != CD_VAL_INT || !found[0])
        return "ts";
    /* The member is written by canonical_tail: an optional '-' and decimal digits. */
    bool neg = v[0].len > 0 && v[0].p[0] == '-';
    uint64_t ts = 0;
    size_t i = neg;
    if (i == v[0].len || v[0].len - i > 19)
        return "ts";
    for (; i < v[0].len; i++) {
        if (v[0].p[i] < '0' || v[0].p[i] > '9')
            return "ts";
        ts = ts * 10 + (uint64_t)(v[0].p[i] - '0');
    }
    if ((neg ? -(int64_t)ts : (int64_t)ts) != cols[0].i)
        return "ts";
    for (int k = 1; k < 4; k++)
        if (!column_is(&cols[k], found[k], v[k]))
            return index_keys[k].p;
    return NULL;
}

/* ---- the head of the ledger and the Merkle frontier of the last append ----
 *
 * Appending needs the last entry's seq and chain hash and the tree's right frontier
 * (popcount(n) nodes). The writer thread keeps both from its last append:
 *   - within one transaction, while cd_tx_epoch says nothing was undone since, the head is
 *     taken as is: only this thread writes the ledger inside its transaction, so reading the
 *     last row back (a B-tree descent and a statement per append) would return what it wrote;
 *   - otherwise (a new batch, or a rollback to a savepoint or of the batch) the head is read
 *     from the transaction, and the frontier is kept only if it was built for that very
 *     (size, chain hash of the last entry): the chain hash commits to every entry before it,
 *     so a match means the very same tree; else it is rebuilt from audit_nodes (and, below
 *     CD__AUDIT_NODE_MIN_LEVEL, from the last entries).
 * Thread-local because the writer thread is the only appender of its store, and a process with
 * several stores (tests) has one writer thread each. */
struct ledger_cache {
    bool valid;             /* size, last and f describe a ledger some transaction saw */
    struct cd_store *store; /* ... of this store, */
    uint64_t epoch;         /* ... and this transaction has it as is when cd_tx_epoch equals this */
    uint64_t size;
    uint8_t last[HASH_LEN];
    struct cd_merkle_frontier f;
};
static _Thread_local struct ledger_cache tl_ledger;

static enum cd_err node_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct node_out {
        uint8_t *out;
        bool found;
    } *o = ctx;

    if (n < 1 || cols[0].type != CD_VAL_BLOB || cols[0].len != HASH_LEN)
        return cd_err_set(CD_ERR_INTEGRITY, "a Merkle node is malformed");
    memcpy(o->out, cols[0].p, HASH_LEN);
    o->found = true;
    return CD_OK;
}

/* Folds the leaves of one perfect subtree, in order, on a stack of at most one pending hash
 * per level (like a frontier, but over a power-of-two count so the fold ends in one hash). */
struct subtree {
    uint64_t count, want;
    uint8_t stack[CD__AUDIT_NODE_MIN_LEVEL + 1][HASH_LEN];
};

static enum cd_err subtree_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct subtree *t = ctx;
    uint8_t h[HASH_LEN];
    unsigned level = 0;
    enum cd_err err;

    if (n < 1 || (cols[0].type != CD_VAL_BLOB && cols[0].type != CD_VAL_TEXT) ||
        t->count >= t->want)
        return cd_err_set(CD_ERR_INTEGRITY, "an audit entry is malformed");
    if ((err = cd_merkle_leaf_hash(cols[0].p, cols[0].len, h)) != CD_OK)
        return err;
    /* Each set low bit of count is a pending perfect subtree the new leaf completes. */
    for (uint64_t c = t->count; c & 1; c >>= 1, level++)
        if ((err = cd_merkle_node_hash(t->stack[level], h, h)) != CD_OK)
            return err;
    memcpy(t->stack[level], h, HASH_LEN);
    t->count++;
    return CD_OK;
}

enum cd_err cd__audit_subtree_from_entries(struct cd_tx *tx, unsigned level, uint64_t index,
                                           uint8_t out[HASH_LEN])
{
    struct subtree t;
    uint64_t first = (index << level) + 1, last = (index + 1) << level;
    enum cd_err err;

    assert(level <= CD__AUDIT_NODE_MIN_LEVEL);
    t.count = 0;
    t.want = UINT64_C(1) << level;
    struct cd_val p[] = {CD_VINT(first), CD_VINT(last)};
    if ((err = cd_tx_exec(tx, "SELECT entry FROM audit_events WHERE seq >= $1 AND seq <= $2"
                              " ORDER BY seq",
                          p, 2, subtree_row, &t, NULL)) != CD_OK)
        return err;
    if (t.count != t.want)
        return cd_err_set(CD_ERR_NOT_FOUND, "audit entries %llu..%llu are not all there",
                          (unsigned long long)first, (unsigned long long)last);
    memcpy(out, t.stack[level], HASH_LEN);
    return CD_OK;
}

enum cd_err cd__audit_node_get(void *ctx, unsigned level, uint64_t index, uint8_t *out)
{
    struct cd_tx *tx = ctx;
    struct cd_val p[] = {CD_VINT(level), CD_VINT(index)};
    struct node_out {
        uint8_t *out;
        bool found;
    } o = {out, false};
    enum cd_err err;

    if (level < CD__AUDIT_NODE_MIN_LEVEL)
        return cd__audit_subtree_from_entries(tx, level, index, out);
    err = cd_tx_exec(tx, "SELECT hash FROM audit_nodes WHERE level = $1 AND idx = $2", p, 2,
                     node_row, &o, NULL);
    if (err != CD_OK)
        return err;
    if (!o.found)
        return cd_err_set(CD_ERR_NOT_FOUND, "Merkle node (level %u, index %llu) is missing", level,
                          (unsigned long long)index);
    return CD_OK;
}

enum cd_err cd__audit_node_put(void *ctx, unsigned level, uint64_t index, const uint8_t *hash)
{
    struct cd_val p[] = {CD_VINT(level), CD_VINT(index), CD_VBLOB(hash, HASH_LEN)};

    if (level < CD__AUDIT_NODE_MIN_LEVEL)
        return CD_OK; /* recomputed from the entries when needed */
    return cd_tx_exec(ctx, "INSERT INTO audit_nodes(level, idx, hash) VALUES($1,$2,$3)", p, 3,
                      NULL, NULL, NULL);
}

static enum cd_err rebuild_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct cd_merkle_frontier *f = ((void **)ctx)[0];
    struct cd_tx *tx = ((void **)ctx)[1];
    uint8_t leaf[HASH_LEN];
    enum cd_err err;

    if (n < 1 || (cols[0].type != CD_VAL_BLOB && cols[0].type != CD_VAL_TEXT))
        return cd_err_set(CD_ERR_INTEGRITY, "audit entry %llu is malformed",
                          (unsigned long long)f->size + 1);
    if ((err = cd_merkle_leaf_hash(cols[0].p, cols[0].len, leaf)) != CD_OK)
        return err;
    return cd_merkle_append(f, leaf, cd__audit_node_put, tx);
}

/* Recomputes every node of the first `size` entries (a ledger written before audit_nodes
 * existed, or whose nodes are incomplete). Runs inside the writer's transaction. */
enum cd_err cd__audit_rebuild_nodes(struct cd_tx *tx, uint64_t size,
                                    struct cd_merkle_frontier *out)
{
    struct cd_merkle_frontier *f = cd_calloc(1, sizeof *f);
    void *ctx[2] = {f, tx};
    enum cd_err err;

    if (f == NULL)
        return CD_ERR_NOMEM;
    if ((err = cd_tx_exec(tx, "DELETE FROM audit_nodes", NULL, 0, NULL, NULL, NULL)) != CD_OK)
        goto out;
    if ((err = cd_tx_exec(tx, "SELECT entry FROM audit_events ORDER BY seq", NULL, 0, rebuild_row,
                          ctx, NULL)) != CD_OK)
        goto out;
    if (f->size != size) {
        err = cd_err_set(CD_ERR_INTEGRITY, "audit entries are not numbered 1..%llu",
                         (unsigned long long)size);
        goto out;
    }
    cd_log(CD_LOG_INFO, "audit.nodes_rebuilt", "\"entries\":%llu", (unsigned long long)size);
    *out = *f;
out:
    cd_free(f);
    return err;
}

/* Makes c describe the ledger of `size` entries ending in chain hash `last`: kept when it
 * already does, else loaded from audit_nodes. */
static enum cd_err frontier_for(struct cd_tx *tx, struct ledger_cache *c, uint64_t size,
                                const uint8_t last[HASH_LEN])
{
    enum cd_err err;

    if (c->valid && c->store == cd_tx_store(tx) && c->size == size &&
        memcmp(c->last, last, HASH_LEN) == 0)
        return CD_OK;
    c->valid = false;
    err = cd_merkle_frontier_load(&c->f, size, cd__audit_node_get, tx);
    if (err == CD_ERR_NOT_FOUND) {
        int64_t any = 1;
        enum cd_err e2 = cd_tx_int(tx, "SELECT EXISTS(SELECT 1 FROM audit_nodes)", NULL, 0, &any);
        if (e2 != CD_OK)
            return e2;
        /* A ledger from before the Merkle nodes existed gets them once; missing nodes in a tree
         * that has some are tamper evidence and stop the append. */
        if (any)
            return cd_err_set(CD_ERR_INTEGRITY, "the audit Merkle tree is damaged: %s "
                                                "(run candor audit verify)",
                              cd_err_detail());
        err = cd__audit_rebuild_nodes(tx, size, &c->f);
    }
    if (err != CD_OK)
        return err;
    c->store = cd_tx_store(tx);
    c->size = size;
    memcpy(c->last, last, HASH_LEN);
    c->epoch = 0; /* read from the transaction, not carried over from an append */
    c->valid = true;
    return CD_OK;
}

struct head {
    int64_t seq;
    uint8_t hash[HASH_LEN];
};

static enum cd_err head_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct head *h = ctx;

    if (n < 2 || cols[0].type != CD_VAL_INT || cols[1].type != CD_VAL_BLOB ||
        cols[1].len != HASH_LEN)
        return cd_err_set(CD_ERR_INTEGRITY, "the last audit entry is malformed");
    h->seq = cols[0].i;
    memcpy(h->hash, cols[1].p, HASH_LEN);
    return CD_OK;
}

enum cd_err cd_audit_append_prepared(struct cd_tx *tx, struct cd_audit_prepared *ev,
                                     uint64_t *seq)
{
    static const uint8_t leaf_prefix = 0x00; /* RFC 9162 leaf: SHA-256(0x00 || entry) */
    struct ledger_cache *c = &tl_ledger;
    struct head h = {0, {0}};
    struct cd_buf *b = &ev->bytes;
    size_t head_len = b->len;
    uint8_t hash[HASH_LEN], leaf[HASH_LEN];
    enum cd_err err;
    int64_t ts = cd_now_ms();
    uint64_t epoch = cd_tx_epoch(tx);

    assert(b->p && b->p[0] == '{'); /* made by cd_audit_prepare */
    if (epoch != 0 && c->valid && c->epoch == epoch && c->store == cd_tx_store(tx)) {
        h.seq = (int64_t)c->size; /* this transaction's own last append, nothing undone since */
        memcpy(h.hash, c->last, HASH_LEN);
    } else {
        if ((err = cd_tx_exec(tx, "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1",
                              NULL, 0, head_row, &h, NULL)) != CD_OK ||
            (err = frontier_for(tx, c, (uint64_t)h.seq, h.hash)) != CD_OK)
            return err;
    }
    /* The tail goes into the room cd_audit_prepare reserved and is cut off again below, so the
     * same prepared event serves a rerun of the write. */
    if ((err = canonical_tail(b, (uint64_t)h.seq + 1, ts)) != CD_OK) {
        if (err == CD_ERR_TOO_BIG)
            cd_err_set(CD_ERR_TOO_BIG, "audit event too large");
        goto out;
    }
    /* The chain hash and the leaf hash of the entry in one call (docs/crypto.md). */
    if ((err = cd_crypto_sha256_pair(h.hash, HASH_LEN, &leaf_prefix, 1, b->p, b->len, hash,
                                     leaf)) != CD_OK)
        goto out;
    struct cd_val p[] = {
        CD_VINT(h.seq + 1), CD_VINT(ts), CD_VBLOB(b->p, b->len), CD_VBLOB(h.hash, HASH_LEN),
        CD_VBLOB(hash, HASH_LEN),
        ev->customer_id ? CD_VCSTR(ev->customer_id) : CD_VNULL,
        ev->action ? CD_VCSTR(ev->action) : CD_VNULL,
        ev->actor_token ? CD_VCSTR(ev->actor_token) : CD_VNULL,
    };
    if ((err = cd_tx_exec(tx,
                          "INSERT INTO audit_events(seq, ts, entry, prev_hash, hash, customer_id,"
                          " action, actor_token) VALUES($1,$2,$3,$4,$5,$6,$7,$8)",
                          p, sizeof p / sizeof p[0], NULL, NULL, NULL)) != CD_OK)
        goto out;
    /* The nodes go in the same transaction as the entry: both commit or neither does. The
     * cache is invalid while its frontier changes; cd_merkle_append leaves f as it was when
     * it fails, but the entry is in then and the write fails and is undone. */
    c->valid = false;
    if ((err = cd_merkle_append(&c->f, leaf, cd__audit_node_put, tx)) != CD_OK)
        goto out;
    c->size = c->f.size;
    memcpy(c->last, hash, HASH_LEN);
    c->epoch = epoch;
    c->valid = true;
    cd__audit_appended();
    if (seq)
        *seq = (uint64_t)h.seq + 1;
out:
    b->len = head_len;
    b->p[head_len] = '\0';
    return err;
}

enum cd_err cd__audit_current_root(struct cd_tx *tx, uint64_t *size, uint8_t root[HASH_LEN])
{
    struct ledger_cache *c = &tl_ledger;
    struct head h = {0, {0}};
    uint64_t epoch = cd_tx_epoch(tx);
    enum cd_err err;

    /* As an append finds the head: the writer's own, or read once; the frontier comes with it. */
    if (!(epoch != 0 && c->valid && c->epoch == epoch && c->store == cd_tx_store(tx))) {
        if ((err = cd_tx_exec(tx, "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1",
                              NULL, 0, head_row, &h, NULL)) != CD_OK ||
            (err = frontier_for(tx, c, (uint64_t)h.seq, h.hash)) != CD_OK)
            return err;
    }
    *size = c->size;
    return cd_merkle_frontier_root(&c->f, root);
}

enum cd_err cd_audit_append(struct cd_tx *tx, const struct cd_audit_event *ev, uint64_t *seq)
{
    struct cd_audit_prepared p;
    enum cd_err err;

    if ((err = cd_audit_prepare(ev, &p)) != CD_OK)
        return err;
    err = cd_audit_append_prepared(tx, &p, seq);
    cd_audit_prepared_free(&p);
    return err;
}

static enum cd_err record_fn(struct cd_tx *tx, void *ctx)
{
    return cd_audit_append(tx, ctx, NULL);
}

enum cd_err cd_audit_record(struct cd_store *s, const struct cd_audit_event *ev)
{
    return cd_store_write(s, record_fn, (void *)ev);
}

struct entry_at {
    enum cd_err (*fn)(void *, struct cd_str);
    void *ctx;
    bool found;
};

static enum cd_err entry_at_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct entry_at *e = ctx;

    if (n < 1 || (cols[0].type != CD_VAL_BLOB && cols[0].type != CD_VAL_TEXT))
        return cd_err_set(CD_ERR_INTEGRITY, "an audit entry is malformed");
    e->found = true;
    return e->fn(e->ctx, (struct cd_str){cols[0].p, cols[0].len});
}

enum cd_err cd_audit_entry_at(struct cd_tx *tx, uint64_t seq,
                              enum cd_err (*fn)(void *ctx, struct cd_str entry), void *ctx,
                              bool *found)
{
    struct entry_at e = {fn, ctx, false};
    struct cd_val p[] = {CD_VINT(seq)};
    enum cd_err err = seq > INT64_MAX ? CD_OK
                                      : cd_tx_exec(tx, "SELECT entry FROM audit_events"
                                                       " WHERE seq = $1",
                                                   p, 1, entry_at_row, &e, NULL);

    *found = e.found;
    return err;
}

/* ---- listing ---- */

struct list_ctx {
    json_t *items;
    int64_t page_end_seq; /* seq of the last item that fits on the page: the next cursor */
    int count;
    int limit;
    bool access_log;
};

static enum cd_err list_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct list_ctx *l = ctx;
    json_t *e;
    json_error_t jerr;
    char hex[2 * HASH_LEN + 1];

    if (n < 7 || cols[1].type != CD_VAL_BLOB)
        return cd_err_set(CD_ERR_INTEGRITY, "malformed audit row");
    /* A row's filter columns must say what its hashed entry says: a read moved into another
     * customer's access log (or out of its own, which only `candor audit verify` can see) is
     * refused here rather than shown. */
    const char *col = cd__audit_columns_check((struct cd_str){cols[1].p, cols[1].len}, cols + 3);
    if (col) {
        cd_integrity_report(CD_INTEGRITY_AUDIT_ROW, "\"seq\":%lld,\"column\":\"%s\"",
                            (long long)cols[0].i, col);
        return cd_err_set(CD_ERR_INTEGRITY,
                          "audit entry %lld: its %s column does not match the hashed entry "
                          "(run candor audit verify)",
                          (long long)cols[0].i, col);
    }
    e = json_loadb(cols[1].p, cols[1].len, 0, &jerr);
    if (e == NULL)
        return cd_err_set(CD_ERR_INTEGRITY, "audit entry %lld is not valid JSON",
                          (long long)cols[0].i);
    char ts[CD_TIME_STRLEN];
    cd_time_format(json_integer_value(json_object_get(e, "ts")), ts);
    if (cd_json_set_new(e, "time", json_string(ts)) != CD_OK)
        goto nomem;
    if (l->access_log) {
        /* The customer sees who, when, why and what kind of data; not token ids. */
        static const char *const shown[] = {"time",   "actor_role", "actor_name", "purpose",
                                            "action", "categories", "outcome"};
        json_t *v = json_object();
        if (v == NULL)
            goto nomem;
        for (size_t i = 0; i < sizeof shown / sizeof shown[0]; i++)
            if (cd_json_copy_key(v, e, shown[i]) != CD_OK) {
                json_decref(v);
                goto nomem;
            }
        json_decref(e);
        e = v;
    } else if (cols[2].type == CD_VAL_BLOB && cols[2].len == HASH_LEN) {
        cd_hex_encode(cols[2].p, HASH_LEN, hex);
        if (cd_json_set_new(e, "hash", json_string(hex)) != CD_OK)
            goto nomem;
    }
    if (json_array_append_new(l->items, e) != 0)
        return CD_ERR_NOMEM;
    if (l->count < l->limit)
        l->page_end_seq = cols[0].i;
    l->count++;
    return CD_OK;
nomem:
    json_decref(e);
    return CD_ERR_NOMEM;
}

struct list_args {
    const struct cd_audit_query *q;
    struct list_ctx l;
    int64_t before;
};

static enum cd_err list_fn(struct cd_tx *tx, void *ctx)
{
    struct list_args *a = ctx;
    const struct cd_audit_query *q = a->q;
    struct cd_val p[] = {
        CD_VINT(a->before),
        CD_VTEXT(q->customer_id),
        CD_VTEXT(q->action),
        CD_VTEXT(q->actor_token),
        CD_VINT(q->since_ms),
        CD_VINT(q->until_ms ? q->until_ms : INT64_MAX),
        CD_VINT(q->limit + 1),
    };
    if (a->l.access_log)
        return cd_tx_exec(tx, CD__AUDIT_ACCESS_LOG_SQL, p, sizeof p / sizeof p[0], list_row,
                          &a->l, NULL);
    return cd_tx_exec(tx,
                      "SELECT seq, entry, hash, " CD__AUDIT_INDEX_COLS
                      " FROM audit_events WHERE seq < $1"
                      " AND ($2 = '' OR customer_id = $2) AND ($3 = '' OR action = $3)"
                      " AND ($4 = '' OR actor_token = $4) AND ts >= $5 AND ts <= $6"
                      " ORDER BY seq DESC LIMIT $7",
                      p, sizeof p / sizeof p[0], list_row, &a->l, NULL);
}

static enum cd_err parse_cursor(struct cd_str cursor, int64_t *before)
{
    char digits[24];
    char *end = NULL;

    *before = INT64_MAX;
    if (cursor.len == 0)
        return CD_OK;
    if (cursor.len >= sizeof digits)
        return cd_err_set(CD_ERR_INVALID, "invalid cursor");
    memcpy(digits, cursor.p, cursor.len);
    digits[cursor.len] = '\0';
    *before = strtoll(digits, &end, 10);
    if (end == digits || *end != '\0' || *before <= 0)
        return cd_err_set(CD_ERR_INVALID, "invalid cursor");
    return CD_OK;
}

static enum cd_err list_common(struct cd_store *s, const struct cd_audit_query *q, bool access,
                               json_t **out)
{
    struct list_args a = {q, {NULL, 0, 0, q->limit, access}, 0};
    json_t *res = NULL;
    enum cd_err err;

    if (q->limit < 1 || q->limit > 500)
        return cd_err_set(CD_ERR_INVALID, "limit must be between 1 and 500");
    if ((err = parse_cursor(q->cursor, &a.before)) != CD_OK)
        return err;
    if ((a.l.items = json_array()) == NULL)
        return CD_ERR_NOMEM;
    if ((err = cd_store_read(s, list_fn, &a)) != CD_OK)
        goto out;
    res = json_object();
    if (res == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    json_t *next = json_null();
    if (a.l.count > q->limit) {
        char buf[24];
        json_array_remove(a.l.items, json_array_size(a.l.items) - 1);
        snprintf(buf, sizeof buf, "%lld", (long long)a.l.page_end_seq);
        next = json_string(buf);
    }
    if (cd_json_set_new(res, "items", a.l.items) != CD_OK) {
        a.l.items = NULL;
        json_decref(next);
        err = CD_ERR_NOMEM;
        goto out;
    }
    a.l.items = NULL;
    if (cd_json_set_new(res, "next_cursor", next) != CD_OK) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    *out = res;
    res = NULL;
out:
    json_decref(a.l.items);
    json_decref(res);
    return err;
}

enum cd_err cd_audit_list(struct cd_store *s, const struct cd_audit_query *q, json_t **out)
{
    return list_common(s, q, false, out);
}

enum cd_err cd_audit_access_log(struct cd_store *s, struct cd_str customer_id, struct cd_str cursor,
                                int limit, json_t **out)
{
    struct cd_audit_query q = {customer_id, CD_STR_NULL, CD_STR_NULL, cursor, 0, 0, limit};
    return list_common(s, &q, true, out);
}

/* ---- verification ---- */

struct verify_ctx {
    uint64_t expect_seq;
    uint8_t prev[HASH_LEN];
    uint64_t total;
    uint64_t *bad_seq;
    void (*progress)(uint64_t, uint64_t);
};

static enum cd_err verify_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct verify_ctx *v = ctx;
    uint8_t h[HASH_LEN];
    enum cd_err err;
    uint64_t seq = (uint64_t)cols[0].i;

    if (n < 4 || cols[1].type != CD_VAL_BLOB || cols[2].type != CD_VAL_BLOB ||
        cols[3].type != CD_VAL_BLOB || cols[2].len != HASH_LEN || cols[3].len != HASH_LEN) {
        *v->bad_seq = seq;
        return cd_err_set(CD_ERR_INTEGRITY, "audit entry %llu is malformed",
                          (unsigned long long)seq);
    }
    if (seq != v->expect_seq) {
        *v->bad_seq = v->expect_seq;
        return cd_err_set(CD_ERR_INTEGRITY,
                          "audit entry %llu is missing (found %llu next): entries were deleted "
                          "or reordered",
                          (unsigned long long)v->expect_seq, (unsigned long long)seq);
    }
    if (memcmp(cols[2].p, v->prev, HASH_LEN) != 0) {
        *v->bad_seq = seq;
        return cd_err_set(CD_ERR_INTEGRITY,
                          "audit entry %llu does not follow entry %llu (previous-hash mismatch)",
                          (unsigned long long)seq, (unsigned long long)seq - 1);
    }
    if ((err = chain_hash(v->prev, cols[1].p, cols[1].len, h)) != CD_OK)
        return err;
    if (memcmp(h, cols[3].p, HASH_LEN) != 0) {
        *v->bad_seq = seq;
        return cd_err_set(CD_ERR_INTEGRITY, "audit entry %llu was altered (hash mismatch)",
                          (unsigned long long)seq);
    }
    /* The stored entry must also say its own sequence number, so rows cannot be renumbered. */
    uint64_t inner = 0;
    if (!cd__audit_entry_seq(cols[1].p, cols[1].len, &inner) || inner != seq) {
        *v->bad_seq = seq;
        return cd_err_set(CD_ERR_INTEGRITY, "audit entry %llu was altered (sequence mismatch)",
                          (unsigned long long)seq);
    }
    memcpy(v->prev, h, HASH_LEN);
    v->expect_seq++;
    if (v->progress && (seq & 0xffff) == 0)
        v->progress(seq, v->total);
    return CD_OK;
}

static enum cd_err verify_fn(struct cd_tx *tx, void *ctx)
{
    struct verify_ctx *v = ctx;
    int64_t total = 0;
    enum cd_err err;

    if ((err = cd_tx_int(tx, "SELECT count(*) FROM audit_events", NULL, 0, &total)) != CD_OK)
        return err;
    v->total = (uint64_t)total;
    return cd_tx_exec(tx, "SELECT seq, entry, prev_hash, hash FROM audit_events ORDER BY seq",
                      NULL, 0, verify_row, v, NULL);
}

enum cd_err cd_audit_verify(struct cd_store *s, uint64_t *checked, uint64_t *bad_seq,
                            void (*progress)(uint64_t done, uint64_t total))
{
    uint64_t bad = 0;
    struct verify_ctx v = {1, {0}, 0, &bad, progress};
    enum cd_err err = cd_store_read(s, verify_fn, &v);

    *checked = v.expect_seq - 1;
    if (bad_seq)
        *bad_seq = bad;
    return err;
}
