/* Converting the data of a database made by an older candor, at open, with the master key the
 * schema migrations do not have: Idempotency-Keys to keyed hashes, thread ids to sealed values
 * with keyed hashes, identities to the current normalisation (NFKC, case folding, default
 * ignorables) with their confusable skeletons. Each migration lists what it left to convert
 * (idempotency_plain, thread_reseal, identity_reindex); each batch here converts some rows and
 * deletes them from the list in one write, so an interrupted upgrade goes on where it stopped.
 * Two identities that the new rules make one are not merged: the second keeps its old index and
 * is linked to the first as a possible duplicate ("normalisation"), for a supervisor. */
#include <stdio.h>
#include <string.h>
#include "core_int.h"

#define BATCH 256

static const struct cd_actor upgrader = CD_ACTOR_SYSTEM_INIT("upgrade");

struct upgrade {
    struct cd_core *c;
    size_t done;      /* rows converted by the last batch */
    size_t converted; /* over all batches */
    size_t collisions, lookalikes, unparsable;
};

/* ---- Idempotency-Keys ---- */

struct idem_plain {
    struct cd_buf scope, key, request_hash, resource_id;
    int64_t created_at;
    bool found;
};

static enum cd_err idem_plain_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct idem_plain *r = ctx;
    enum cd_err err;

    r->found = true;
    cd_buf_reset(&r->scope);
    cd_buf_reset(&r->key);
    cd_buf_reset(&r->request_hash);
    cd_buf_reset(&r->resource_id);
    if ((err = cd_buf_append(&r->scope, cols[0].p, cols[0].len)) != CD_OK ||
        (err = cd_buf_append(&r->key, cols[1].p, cols[1].len)) != CD_OK ||
        (err = cd_buf_append(&r->request_hash, cols[2].p, cols[2].len)) != CD_OK ||
        (err = cd_buf_append(&r->resource_id, cols[3].p, cols[3].len)) != CD_OK)
        return err;
    r->created_at = cols[4].i;
    return CD_OK;
}

static enum cd_err idem_batch(struct cd_tx *tx, void *ctx)
{
    struct upgrade *u = ctx;
    /* Unbounded here and in the batches below: the rows being upgraded are in the store,
     * capped when they were written. */
    struct idem_plain r = {CD_BUF_INIT(CD_BUF_UNBOUNDED), CD_BUF_INIT(CD_BUF_UNBOUNDED),
                           CD_BUF_INIT(CD_BUF_UNBOUNDED), CD_BUF_INIT(CD_BUF_UNBOUNDED), 0, false};
    enum cd_err err = CD_OK;

    u->done = 0;
    for (size_t i = 0; i < BATCH; i++) {
        uint8_t key_hash[CD_CRYPTO_HASH_LEN];
        r.found = false;
        if ((err = cd_tx_exec(tx, "SELECT scope, key, request_hash, resource_id, created_at"
                                  " FROM idempotency_plain LIMIT 1",
                              NULL, 0, idem_plain_row, &r, NULL)) != CD_OK ||
            !r.found)
            break;
        struct cd_idem idem = {NULL, {r.key.p ? r.key.p : "", r.key.len}, {0}};
        cd__core_idem_hash(u->c, &idem, key_hash);
        struct cd_val p[] = {CD_VBLOB(r.scope.p ? r.scope.p : "", r.scope.len),
                             CD_VBLOB(key_hash, sizeof key_hash),
                             CD_VBLOB(r.request_hash.p ? r.request_hash.p : "", r.request_hash.len),
                             CD_VBLOB(r.resource_id.p ? r.resource_id.p : "", r.resource_id.len),
                             CD_VINT(r.created_at),
                             CD_VBLOB(r.key.p ? r.key.p : "", r.key.len)};
        /* Text columns stay text: the scope and resource id are compared as text. */
        p[0].type = p[3].type = p[5].type = CD_VAL_TEXT;
        if ((err = cd_tx_exec(tx, "INSERT INTO idempotency(scope, key_hash, request_hash,"
                                  " resource_id, created_at) VALUES($1,$2,$3,$4,$5)"
                                  " ON CONFLICT DO NOTHING",
                              p, 5, NULL, NULL, NULL)) != CD_OK ||
            (err = cd_tx_exec(tx, "DELETE FROM idempotency_plain WHERE scope = $1 AND key = $6",
                              p, 6, NULL, NULL, NULL)) != CD_OK)
            break;
        u->done++;
    }
    if (r.key.p)
        cd_crypto_wipe(r.key.p, r.key.cap);
    cd_buf_free(&r.scope);
    cd_buf_free(&r.key);
    cd_buf_free(&r.request_hash);
    cd_buf_free(&r.resource_id);
    return err;
}

/* ---- thread ids ---- */

struct thread_row {
    int64_t seq;
    char id[CD_ID_MAX], customer_id[CD_ID_MAX];
    char channel[16], direction[12], purpose[32]; /* what the sealed thread id is bound to */
    int64_t occurred_at;
    struct cd_buf thread, wrapped;
    bool found, has_thread;
};

static enum cd_err thread_next_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct thread_row *r = ctx;

    r->found = true;
    r->seq = cols[0].i;
    cd__core_col_text(cols[1], r->id, sizeof r->id);
    return CD_OK;
}

static enum cd_err thread_int_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct thread_row *r = ctx;
    enum cd_err err;

    cd__core_col_text(cols[0], r->customer_id, sizeof r->customer_id);
    cd_buf_reset(&r->thread);
    cd_buf_reset(&r->wrapped);
    r->has_thread = cols[1].type == CD_VAL_TEXT || cols[1].type == CD_VAL_BLOB;
    if (r->has_thread && (err = cd_buf_append(&r->thread, cols[1].p, cols[1].len)) != CD_OK)
        return err;
    cd__core_col_text(cols[3], r->channel, sizeof r->channel);
    cd__core_col_text(cols[4], r->direction, sizeof r->direction);
    r->occurred_at = cols[5].i;
    cd__core_col_text(cols[6], r->purpose, sizeof r->purpose);
    if (cols[2].type == CD_VAL_BLOB)
        return cd_buf_append(&r->wrapped, cols[2].p, cols[2].len);
    return CD_OK;
}

static enum cd_err thread_batch(struct cd_tx *tx, void *ctx)
{
    struct upgrade *u = ctx;
    struct thread_row r = {0, "", "", "", "", "", 0, CD_BUF_INIT(CD_BUF_UNBOUNDED),
                           CD_BUF_INIT(CD_BUF_UNBOUNDED), false, false};
    struct cd_buf sealed = CD_BUF_INIT(CD_BUF_UNBOUNDED);
    uint8_t hash[CD_CRYPTO_HASH_LEN];
    enum cd_err err = CD_OK;

    u->done = 0;
    for (size_t i = 0; i < BATCH; i++) {
        struct cd__ckey k;
        bool sealed_ok = false;
        r.found = false;
        if ((err = cd_tx_exec(tx, "SELECT seq, id FROM thread_reseal ORDER BY seq LIMIT 1", NULL,
                              0, thread_next_row, &r, NULL)) != CD_OK ||
            !r.found)
            break;
        struct cd_val q[] = {CD_VCSTR(r.id), CD_VINT(r.seq)};
        r.has_thread = false;
        r.customer_id[0] = '\0';
        if ((err = cd_tx_exec(tx, "SELECT i.customer_id, i.thread_id, c.key_wrapped,"
                                  " i.channel, i.direction, i.occurred_at, i.purpose"
                                  " FROM interactions i JOIN customers c ON c.id = i.customer_id"
                                  " WHERE i.id = $1",
                              q, 1, thread_int_row, &r, NULL)) != CD_OK)
            break;
        /* A customer whose key was destroyed keeps no thread id at all. */
        if (r.has_thread && r.wrapped.len) {
            struct cd_val w = CD_VBLOB(r.wrapped.p, r.wrapped.len);
            struct cd_str t = {r.thread.p ? r.thread.p : "", r.thread.len};
            if ((err = cd__core_key_open(u->c, r.customer_id, w, &k)) != CD_OK)
                break;
            /* Bound to its row, as every interaction field is sealed (vault.c). */
            struct cd__row_binding b;
            cd__core_interaction_binding(&b, r.id, r.channel, r.direction, r.occurred_at,
                                         r.purpose);
            err = cd__core_seal_row(&k, "thread_id", &b, t, &sealed);
            cd__core_key_wipe(&k);
            if (err != CD_OK)
                break;
            cd__core_thread_hash(u->c, r.customer_id, t, hash);
            sealed_ok = true;
        }
        struct cd_val p[] = {CD_VCSTR(r.id), sealed_ok ? CD_VBLOB(sealed.p, sealed.len) : CD_VNULL,
                             sealed_ok ? CD_VBLOB(hash, sizeof hash) : CD_VNULL};
        if ((err = cd_tx_exec(tx, "UPDATE interactions SET thread = $2, thread_hash = $3,"
                                  " thread_id = NULL WHERE id = $1",
                              p, 3, NULL, NULL, NULL)) != CD_OK ||
            (err = cd_tx_exec(tx, "DELETE FROM thread_reseal WHERE seq = $2", q, 2, NULL, NULL,
                              NULL)) != CD_OK)
            break;
        u->done++;
    }
    if (r.thread.p)
        cd_crypto_wipe(r.thread.p, r.thread.cap);
    cd_buf_free(&r.thread);
    cd_buf_free(&r.wrapped);
    cd_buf_free(&sealed);
    return err;
}

/* ---- identities ---- */

struct ident_row {
    int64_t seq;
    char kind[16], customer_id[CD_ID_MAX], network[72];
    uint8_t lookup[CD_CRYPTO_HASH_LEN];
    struct cd_buf value, wrapped;
    bool found, exists;
};

static enum cd_err ident_next_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct ident_row *r = ctx;

    r->found = true;
    r->seq = cols[0].i;
    cd__core_col_text(cols[1], r->kind, sizeof r->kind);
    memset(r->lookup, 0, sizeof r->lookup);
    if (cols[2].len == CD_CRYPTO_HASH_LEN)
        memcpy(r->lookup, cols[2].p, CD_CRYPTO_HASH_LEN);
    return CD_OK;
}

static enum cd_err ident_value_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct ident_row *r = ctx;
    enum cd_err err;

    r->exists = true;
    cd__core_col_text(cols[0], r->customer_id, sizeof r->customer_id);
    cd__core_col_text(cols[1], r->network, sizeof r->network);
    cd_buf_reset(&r->value);
    cd_buf_reset(&r->wrapped);
    if ((err = cd_buf_append(&r->value, cols[2].p, cols[2].len)) != CD_OK)
        return err;
    return cols[3].type == CD_VAL_BLOB ? cd_buf_append(&r->wrapped, cols[3].p, cols[3].len)
                                       : CD_OK;
}

static enum cd_err owner_text(void *ctx, const struct cd_val *cols, size_t n)
{
    cd__core_col_text(cols[0], ctx, CD_ID_MAX);
    return CD_OK;
}

/* One identity under the current rules. The old canonical value is the input: for social and
 * external identities it is "network:value", which the rules split again. */
static enum cd_err reindex_one(struct upgrade *u, struct cd_tx *tx, struct ident_row *r,
                               struct cd_buf *plain, struct cd_buf *norm, struct cd_buf *sealed)
{
    struct cd_str kind = cd_str_c(r->kind), value, network = CD_STR_NULL;
    uint8_t lookup[CD_CRYPTO_HASH_LEN], skeleton[CD_CRYPTO_HASH_LEN];
    bool beyond_ascii = false, present = false;
    char owner[CD_ID_MAX] = "";
    struct cd__ckey k;
    enum cd_err err;
    int64_t now = cd_now_ms();

    struct cd_val w = CD_VBLOB(r->wrapped.p, r->wrapped.len);
    struct cd_val v = CD_VBLOB(r->value.p, r->value.len);
    if (r->wrapped.len == 0)
        return CD_OK; /* an erased customer keeps no identities; nothing to index */
    if ((err = cd__core_key_open(u->c, r->customer_id, w, &k)) != CD_OK)
        return err;
    if ((err = cd__core_open(&k, "identity", v, plain, &present)) != CD_OK)
        goto out;
    value = (struct cd_str){plain->p ? plain->p : "", plain->len};
    if (r->network[0]) {
        const char *colon = memchr(value.p, ':', value.len);
        network = cd_str_c(r->network);
        if (colon)
            value = (struct cd_str){colon + 1, value.len - (size_t)(colon + 1 - value.p)};
    }
    cd_buf_reset(norm);
    if (cd_core_identity_normalize(kind, network, value, norm) != CD_OK) {
        /* Accepted once, refused now: it keeps its index; only its skeleton is added. */
        cd_err_clear();
        u->unparsable++;
        cd_buf_reset(norm);
        if ((err = cd_buf_append(norm, plain->p ? plain->p : "", plain->len)) != CD_OK)
            goto out;
    }
    struct cd_str nv = {norm->p ? norm->p : "", norm->len};
    cd__core_lookup(u->c, kind, nv, lookup);
    if ((err = cd__core_identity_skeleton(u->c, kind, nv, skeleton, &beyond_ascii)) != CD_OK)
        goto out;
    struct cd_val q[] = {CD_VTEXT(kind), CD_VBLOB(lookup, sizeof lookup)};
    if (memcmp(lookup, r->lookup, sizeof lookup) != 0 &&
        (err = cd_tx_exec(tx, "SELECT customer_id FROM identities WHERE kind = $1 AND"
                              " lookup = $2",
                          q, 2, owner_text, owner, NULL)) != CD_OK)
        goto out;
    struct cd_val old[] = {CD_VTEXT(kind), CD_VBLOB(r->lookup, sizeof r->lookup)};
    if (strcmp(owner, r->customer_id) == 0) {
        /* The customer already holds the new spelling: the old one is a duplicate row. */
        err = cd_tx_exec(tx, "DELETE FROM identities WHERE kind = $1 AND lookup = $2", old, 2,
                         NULL, NULL, NULL);
        goto out;
    }
    bool collides = owner[0] != '\0';
    const uint8_t *keep = collides ? r->lookup : lookup;
    if (!collides && (err = cd__core_seal(&k, "identity", nv, sealed)) != CD_OK)
        goto out;
    struct cd_val p[] = {CD_VTEXT(kind),
                         CD_VBLOB(r->lookup, sizeof r->lookup),
                         CD_VBLOB(keep, CD_CRYPTO_HASH_LEN),
                         collides ? v : CD_VBLOB(sealed->p, sealed->len),
                         CD_VBLOB(skeleton, sizeof skeleton),
                         CD_VINT(beyond_ascii)};
    if ((err = cd_tx_exec(tx, "UPDATE identities SET lookup = $3, value = $4, skeleton = $5,"
                              " beyond_ascii = $6 WHERE kind = $1 AND lookup = $2",
                          p, 6, NULL, NULL, NULL)) != CD_OK)
        goto out;
    if (collides) {
        u->collisions++;
        if ((err = cd__core_link_record(tx, &upgrader, kind, r->customer_id, r->lookup, owner,
                                        lookup, "normalisation", now)) != CD_OK)
            goto out;
    }
    size_t links = 0;
    struct cd__identity id = {kind, r->network, keep, skeleton, beyond_ascii, CD_STR_NULL};
    err = cd__core_identity_link_lookalikes(tx, &upgrader, &id, r->customer_id, now, &links);
    u->lookalikes += links;
out:
    cd__core_key_wipe(&k);
    return err;
}

static enum cd_err ident_batch(struct cd_tx *tx, void *ctx)
{
    struct upgrade *u = ctx;
    struct ident_row r = {0, "", "", "", {0}, CD_BUF_INIT(CD_BUF_UNBOUNDED),
                          CD_BUF_INIT(CD_BUF_UNBOUNDED), false, false};
    struct cd_buf plain = CD_BUF_INIT(CD_BUF_UNBOUNDED), norm = CD_BUF_INIT(1024),
                  sealed = CD_BUF_INIT(CD_BUF_UNBOUNDED);
    enum cd_err err = CD_OK;

    u->done = 0;
    for (size_t i = 0; i < BATCH; i++) {
        r.found = r.exists = false;
        if ((err = cd_tx_exec(tx, "SELECT seq, kind, lookup FROM identity_reindex ORDER BY seq"
                                  " LIMIT 1",
                              NULL, 0, ident_next_row, &r, NULL)) != CD_OK ||
            !r.found)
            break;
        struct cd_val q[] = {CD_VCSTR(r.kind), CD_VBLOB(r.lookup, sizeof r.lookup),
                             CD_VINT(r.seq)};
        if ((err = cd_tx_exec(tx, "SELECT i.customer_id, i.network, i.value, c.key_wrapped"
                                  " FROM identities i JOIN customers c ON c.id = i.customer_id"
                                  " WHERE i.kind = $1 AND i.lookup = $2",
                              q, 2, ident_value_row, &r, NULL)) != CD_OK ||
            (r.exists && (err = reindex_one(u, tx, &r, &plain, &norm, &sealed)) != CD_OK) ||
            (err = cd_tx_exec(tx, "DELETE FROM identity_reindex WHERE seq = $3", q, 3, NULL,
                              NULL, NULL)) != CD_OK)
            break;
        u->done++;
    }
    if (plain.p)
        cd_crypto_wipe(plain.p, plain.cap);
    if (norm.p)
        cd_crypto_wipe(norm.p, norm.cap);
    cd_buf_free(&plain);
    cd_buf_free(&norm);
    cd_buf_free(&sealed);
    cd_buf_free(&r.value);
    cd_buf_free(&r.wrapped);
    return err;
}

/* ---- driving the batches ---- */

static enum cd_err pending_row(void *ctx, const struct cd_val *cols, size_t n)
{
    *(bool *)ctx = true;
    return CD_OK;
}

static enum cd_err pending_fn(struct cd_tx *tx, void *ctx)
{
    enum cd_err err;

    if ((err = cd_tx_exec(tx, "SELECT 1 FROM idempotency_plain LIMIT 1", NULL, 0, pending_row,
                          ctx, NULL)) != CD_OK ||
        (err = cd_tx_exec(tx, "SELECT 1 FROM thread_reseal LIMIT 1", NULL, 0, pending_row, ctx,
                          NULL)) != CD_OK)
        return err;
    return cd_tx_exec(tx, "SELECT 1 FROM identity_reindex LIMIT 1", NULL, 0, pending_row, ctx,
                      NULL);
}

enum cd_err cd__core_upgrade(struct cd_core *c)
{
    static const cd_tx_fn steps[] = {idem_batch, thread_batch, ident_batch};
    struct upgrade u = {c, 0, 0, 0, 0, 0};
    bool pending = false;
    enum cd_err err;

    if ((err = cd_store_read(c->store, pending_fn, &pending)) != CD_OK || !pending)
        return err;
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        do {
            if ((err = cd_store_write(c->store, steps[s], &u)) != CD_OK)
                return cd_err_set(err, "converting the data of an older database: %s",
                                  cd_err_detail());
            u.converted += u.done;
        } while (u.done == BATCH);
    }
    cd__owners_forget_all(c->owners);
    /* The plaintext is gone from the tables (secure_delete overwrote it); now from the log. */
    if (cd_store_checkpoint(c->store) != CD_OK)
        cd_log(CD_LOG_WARN, "core.upgrade_checkpoint_deferred", "\"reason\":\"%s\"",
               cd_err_name(CD_ERR_BUSY));
    cd_log(CD_LOG_INFO, "core.upgraded",
           "\"rows\":%zu,\"identity_collisions\":%zu,\"lookalikes\":%zu,\"unparsable\":%zu",
           u.converted, u.collisions, u.lookalikes, u.unparsable);
    if (u.collisions || u.lookalikes)
        cd_log(CD_LOG_WARN, "core.possible_duplicates",
               "\"count\":%zu,\"see\":\"GET /v1/possible-duplicates\"",
               u.collisions + u.lookalikes);
    return CD_OK;
}
