/* The ledger as a service: signed tree heads over the Merkle tree that cd_audit_append keeps
 * in audit_nodes, the publisher thread, and inclusion and consistency proofs. A tree head is
 * signed on the writer thread inside a write transaction, so its size and root describe a
 * committed prefix of the ledger exactly; once committed it is appended to the heads file
 * (heads.c), outside the database. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "audit_int.h"

#define HASH_LEN CD__AUDIT_HASH_LEN

struct cd_audit {
    struct cd_store *store;
    bool can_sign;
    struct cd_crypto_signer signer;
    uint8_t key_id[CD_CRYPTO_HASH_LEN];
    /* One publish at a time, so the heads file receives the heads in the order of their
     * sizes; the heads file's descriptor (-1: none) and the largest size it holds. */
    pthread_mutex_t publish_mu;
    int heads_fd;
    uint64_t file_upto;
    /* the publisher thread (waits on the process-wide wake_cv, below) */
    pthread_t thread;
    bool running;
    bool stop; /* under wake_mu */
    uint_fast64_t published; /* the process's append count at the last head (publisher only) */
    struct cd_audit_policy policy;
};

/* ---- tree heads ---- */

static void put_u64be(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

void cd_audit_sth_message(uint64_t tree_size, int64_t timestamp_ms,
                          const uint8_t root[CD_MERKLE_HASH_LEN],
                          uint8_t out[CD_AUDIT_STH_MSG_LEN])
{
    static const char domain[] = CD_AUDIT_STH_DOMAIN;
    uint8_t *p = out;

    put_u64be(p, sizeof domain - 1);
    memcpy(p + 8, domain, sizeof domain - 1);
    p += 8 + sizeof domain - 1;
    put_u64be(p, tree_size);
    put_u64be(p + 8, (uint64_t)timestamp_ms);
    memcpy(p + 16, root, CD_MERKLE_HASH_LEN);
}

enum cd_err cd_audit_sth_verify(const struct cd_audit_sth *sth, const uint8_t pk[CD_CRYPTO_PK_LEN])
{
    uint8_t msg[CD_AUDIT_STH_MSG_LEN], id[CD_CRYPTO_HASH_LEN];
    enum cd_err err;

    if ((err = cd_crypto_pubkey_id(pk, id)) != CD_OK)
        return err;
    if (memcmp(id, sth->key_id, sizeof id) != 0)
        return cd_err_set(CD_ERR_INTEGRITY,
                          "the tree head of size %llu was signed by another key (key id differs)",
                          (unsigned long long)sth->tree_size);
    cd_audit_sth_message(sth->tree_size, sth->timestamp_ms, sth->root, msg);
    if (cd_crypto_verify(pk, msg, sizeof msg, sth->signature) != CD_OK)
        return cd_err_set(CD_ERR_INTEGRITY,
                          "the signature of the tree head of size %llu does not verify",
                          (unsigned long long)sth->tree_size);
    return CD_OK;
}

enum cd_err cd_audit_sth_json(const struct cd_audit_sth *sth, json_t **out)
{
    char root[2 * HASH_LEN + 1], sig[2 * CD_CRYPTO_SIG_LEN + 1], kid[2 * HASH_LEN + 1];
    char t[CD_TIME_STRLEN];

    cd_hex_encode(sth->root, HASH_LEN, root);
    cd_hex_encode(sth->signature, CD_CRYPTO_SIG_LEN, sig);
    cd_hex_encode(sth->key_id, HASH_LEN, kid);
    cd_time_format(sth->timestamp_ms, t);
    *out = json_pack("{s:I,s:I,s:s,s:s,s:s,s:s}", "tree_size", (json_int_t)sth->tree_size,
                     "timestamp", (json_int_t)sth->timestamp_ms, "time", t, "root_hash", root,
                     "signature", sig, "key_id", kid);
    return *out ? CD_OK : CD_ERR_NOMEM;
}

static enum cd_err hex_member(const json_t *obj, const char *key, uint8_t *out, size_t n)
{
    struct cd_str v = CD_STR_NULL;
    enum cd_err err = cd_json_str(obj, key, true, &v);

    if (err != CD_OK)
        return err;
    if (v.len != 2 * n || cd_hex_decode(v, out, n) != CD_OK)
        return cd_err_set(CD_ERR_INVALID, "'%s' must be %zu hex digits", key, 2 * n);
    return CD_OK;
}

enum cd_err cd_audit_sth_parse(const json_t *obj, struct cd_audit_sth *out)
{
    struct cd_audit_sth s;
    int64_t size = 0, ts = 0;
    enum cd_err err;

    if (!json_is_object(obj))
        return cd_err_set(CD_ERR_INVALID, "a tree head must be a JSON object");
    if ((err = cd_json_int(obj, "tree_size", true, &size)) != CD_OK ||
        (err = cd_json_int(obj, "timestamp", true, &ts)) != CD_OK ||
        (err = hex_member(obj, "root_hash", s.root, HASH_LEN)) != CD_OK ||
        (err = hex_member(obj, "signature", s.signature, CD_CRYPTO_SIG_LEN)) != CD_OK ||
        (err = hex_member(obj, "key_id", s.key_id, HASH_LEN)) != CD_OK)
        return err;
    if (size < 0 || ts < 0)
        return cd_err_set(CD_ERR_INVALID, "'tree_size' and 'timestamp' must not be negative");
    s.tree_size = (uint64_t)size;
    s.timestamp_ms = ts;
    *out = s;
    return CD_OK;
}

enum cd_err cd__audit_sth_row(const struct cd_val *cols, size_t n, struct cd_audit_sth *out)
{
    if (n < 5 || cols[0].type != CD_VAL_INT || cols[1].type != CD_VAL_INT ||
        cols[2].type != CD_VAL_BLOB || cols[2].len != HASH_LEN || cols[3].type != CD_VAL_BLOB ||
        cols[3].len != CD_CRYPTO_SIG_LEN || cols[4].type != CD_VAL_BLOB ||
        cols[4].len != HASH_LEN || cols[0].i < 0)
        return cd_err_set(CD_ERR_INTEGRITY, "a stored tree head is malformed");
    out->tree_size = (uint64_t)cols[0].i;
    out->timestamp_ms = cols[1].i;
    memcpy(out->root, cols[2].p, HASH_LEN);
    memcpy(out->signature, cols[3].p, CD_CRYPTO_SIG_LEN);
    memcpy(out->key_id, cols[4].p, HASH_LEN);
    return CD_OK;
}

struct sth_one {
    struct cd_audit_sth *sth;
    bool found;
};

static enum cd_err sth_one_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct sth_one *o = ctx;
    enum cd_err err = cd__audit_sth_row(cols, n, o->sth);

    o->found = err == CD_OK;
    return err;
}

static enum cd_err latest_in(struct cd_tx *tx, struct cd_audit_sth *out, bool *found)
{
    struct sth_one o = {out, false};
    enum cd_err err = cd_tx_exec(tx,
                                 "SELECT " CD__AUDIT_STH_COLS " FROM audit_tree_heads"
                                 " ORDER BY tree_size DESC LIMIT 1",
                                 NULL, 0, sth_one_row, &o, NULL);
    *found = o.found;
    return err;
}

struct sth_list {
    struct cd_audit_sth *v;
    size_t n, cap;
};

static enum cd_err sth_list_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct sth_list *l = ctx;

    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        struct cd_audit_sth *v = cd_realloc(l->v, cap * sizeof *v);
        if (v == NULL)
            return CD_ERR_NOMEM;
        l->v = v;
        l->cap = cap;
    }
    enum cd_err err = cd__audit_sth_row(cols, n, &l->v[l->n]);
    if (err == CD_OK)
        l->n++;
    return err;
}

enum cd_err cd__audit_sth_all(struct cd_tx *tx, struct cd_audit_sth **out, size_t *n)
{
    struct sth_list l = {NULL, 0, 0};
    enum cd_err err = cd_tx_exec(tx,
                                 "SELECT " CD__AUDIT_STH_COLS " FROM audit_tree_heads"
                                 " ORDER BY tree_size",
                                 NULL, 0, sth_list_row, &l, NULL);
    if (err != CD_OK) {
        cd_free(l.v);
        return err;
    }
    *out = l.v;
    *n = l.n;
    return CD_OK;
}

enum cd_err cd__audit_size(struct cd_tx *tx, uint64_t *size)
{
    int64_t v = 0;
    enum cd_err err = cd_tx_int(tx, "SELECT coalesce(max(seq), 0) FROM audit_events", NULL, 0, &v);

    if (err == CD_OK)
        *size = v > 0 ? (uint64_t)v : 0;
    return err;
}

/* A missing node where the ledger's size says there must be one is tamper evidence, not a
 * missing resource. */
static enum cd_err node_missing_is_integrity(enum cd_err err)
{
    if (err == CD_ERR_NOT_FOUND)
        return cd_err_set(CD_ERR_INTEGRITY, "%s", cd_err_detail());
    return err;
}

struct publish_ctx {
    struct cd_audit *a;
    struct cd_audit_sth sth;
    bool created;
};

static enum cd_err publish_fn(struct cd_tx *tx, void *ctx)
{
    struct publish_ctx *p = ctx;
    struct cd_audit_sth last, s;
    bool have = false;
    uint64_t size = 0;
    uint8_t msg[CD_AUDIT_STH_MSG_LEN];
    enum cd_err err;

    p->created = false;
    if ((err = cd__audit_current_root(tx, &size, s.root)) != CD_OK)
        return node_missing_is_integrity(err);
    if ((err = latest_in(tx, &last, &have)) != CD_OK)
        return err;
    if (have && last.tree_size == size) {
        p->sth = last;
        return CD_OK;
    }
    if (have && last.tree_size > size)
        return cd_err_set(CD_ERR_INTEGRITY,
                          "the ledger has %llu entries but a tree head of size %llu was "
                          "published: entries were removed",
                          (unsigned long long)size, (unsigned long long)last.tree_size);
    s.tree_size = size;
    s.timestamp_ms = cd_now_ms();
    if (have && s.timestamp_ms < last.timestamp_ms)
        s.timestamp_ms = last.timestamp_ms; /* never go back in time, even if the clock does */
    cd_audit_sth_message(s.tree_size, s.timestamp_ms, s.root, msg);
    cd_crypto_sign(&p->a->signer, msg, sizeof msg, s.signature);
    memcpy(s.key_id, p->a->key_id, HASH_LEN);
    struct cd_val v[] = {CD_VINT(s.tree_size), CD_VINT(s.timestamp_ms), CD_VBLOB(s.root, HASH_LEN),
                         CD_VBLOB(s.signature, CD_CRYPTO_SIG_LEN), CD_VBLOB(s.key_id, HASH_LEN)};
    if ((err = cd_tx_exec(tx,
                          "INSERT INTO audit_tree_heads(tree_size, ts, root, signature, key_id)"
                          " VALUES($1,$2,$3,$4,$5)",
                          v, 5, NULL, NULL, NULL)) != CD_OK)
        return err;
    p->sth = s;
    p->created = true;
    return CD_OK;
}

struct since {
    uint64_t after;
    struct sth_list l;
};

static enum cd_err since_fn(struct cd_tx *tx, void *ctx)
{
    struct since *q = ctx;
    struct cd_val p[] = {CD_VINT(q->after)};

    return cd_tx_exec(tx,
                      "SELECT " CD__AUDIT_STH_COLS " FROM audit_tree_heads WHERE tree_size > $1"
                      " ORDER BY tree_size",
                      p, 1, sth_list_row, &q->l, NULL);
}

/* Appends to the heads file every stored head it does not hold yet (normally the one just
 * signed; more after a crash or a failed append). Under publish_mu. A failure is logged and
 * counted: the heads are durable in the database and the next call makes them up. */
static void heads_file_catch_up(struct cd_audit *a)
{
    struct since q = {a->file_upto, {NULL, 0, 0}};
    enum cd_err err;

    if (a->heads_fd < 0)
        return;
    if ((err = cd_store_read(a->store, since_fn, &q)) == CD_OK && q.l.n > 0 &&
        (err = cd__audit_heads_append(a->heads_fd, q.l.v, q.l.n)) == CD_OK)
        a->file_upto = q.l.v[q.l.n - 1].tree_size;
    if (err != CD_OK)
        cd_log(CD_LOG_ERROR, "audit.heads_file_failed", "\"error\":\"%s\"", cd_err_name(err));
    cd_free(q.l.v);
}

enum cd_err cd_audit_publish(struct cd_audit *a, struct cd_audit_sth *out, bool *created)
{
    struct publish_ctx p;
    enum cd_err err;

    memset(&p, 0, sizeof p);
    p.a = a;
    if (!a->can_sign)
        return cd_err_set(CD_ERR_CRYPTO, "no signing key: tree heads cannot be signed");
    pthread_mutex_lock(&a->publish_mu);
    err = cd_store_write(a->store, publish_fn, &p);
    if (err == CD_OK && (p.created || a->file_upto < p.sth.tree_size))
        heads_file_catch_up(a);
    pthread_mutex_unlock(&a->publish_mu);
    if (err != CD_OK)
        return err;
    if (p.created)
        cd_log(CD_LOG_INFO, "audit.tree_head", "\"tree_size\":%llu",
               (unsigned long long)p.sth.tree_size);
    if (out)
        *out = p.sth;
    if (created)
        *created = p.created;
    return CD_OK;
}

static enum cd_err latest_fn(struct cd_tx *tx, void *ctx)
{
    struct sth_one *o = ctx;
    bool found = false;
    enum cd_err err = latest_in(tx, o->sth, &found);

    o->found = found;
    return err;
}

enum cd_err cd_audit_sth_latest(struct cd_store *s, struct cd_audit_sth *out)
{
    struct cd_audit_sth sth;
    struct sth_one o = {&sth, false};
    enum cd_err err = cd_store_read(s, latest_fn, &o);

    if (err != CD_OK)
        return err;
    if (!o.found)
        return cd_err_set(CD_ERR_NOT_FOUND, "no tree head has been published yet");
    *out = sth;
    return CD_OK;
}

/* ---- the service ---- */

static enum cd_err ensure_nodes_fn(struct cd_tx *tx, void *ctx)
{
    uint64_t size = 0;
    int64_t any = 0;
    enum cd_err err;
    struct cd_merkle_frontier *f;

    if ((err = cd__audit_size(tx, &size)) != CD_OK ||
        (err = cd_tx_int(tx, "SELECT EXISTS(SELECT 1 FROM audit_nodes)", NULL, 0, &any)) != CD_OK)
        return err;
    /* Only a ledger from before migration 2 has entries and no nodes at all (a ledger of fewer
     * than 2^CD__AUDIT_NODE_MIN_LEVEL entries needs none); nodes that disagree with the entries
     * are tamper evidence for `candor audit verify`, never repaired. */
    if (size >> CD__AUDIT_NODE_MIN_LEVEL == 0 || any)
        return CD_OK;
    if ((f = cd_malloc(sizeof *f)) == NULL)
        return CD_ERR_NOMEM;
    err = cd__audit_rebuild_nodes(tx, size, f);
    cd_free(f);
    return err;
}

enum cd_err cd_audit_open(struct cd_store *s, const char *signing_key_path, struct cd_audit **out)
{
    struct cd_audit *a = cd_calloc(1, sizeof *a);
    enum cd_err err = CD_OK;

    if (a == NULL)
        return CD_ERR_NOMEM;
    a->store = s;
    a->heads_fd = -1;
    pthread_mutex_init(&a->publish_mu, NULL);
    if (signing_key_path) {
        if ((err = cd_crypto_signer_load_or_create(signing_key_path, &a->signer)) != CD_OK ||
            (err = cd_crypto_pubkey_id(a->signer.pk, a->key_id)) != CD_OK)
            goto out;
        a->can_sign = true;
    }
    if ((err = cd_store_write(s, ensure_nodes_fn, NULL)) != CD_OK)
        goto out;
    *out = a;
    a = NULL;
out:
    cd_audit_close(a);
    return err;
}

/* ---- the publisher ----
 *
 * A head is due when the ledger grew by policy.every_entries entries or policy.interval_s
 * seconds passed, whichever comes first. The appends are counted where they happen, on the
 * store's writer thread (cd__audit_appended), which has a transaction but no service at hand;
 * so the counter, the threshold that wakes the publishers and their condition variable are
 * process-wide, with no lifetime to race with a service being closed. A process normally has
 * one publisher; with several (tests), each wakes for the nearest threshold of all and
 * re-arms its own, and counts the appends of every ledger of the process, which only makes it
 * sign a little early. */
static atomic_uint_fast64_t appends;                       /* appends made by this process */
static atomic_uint_fast64_t wake_at = UINT64_MAX;          /* wake the publishers here */
static pthread_mutex_t wake_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake_cv;
static pthread_once_t wake_once = PTHREAD_ONCE_INIT;

static void wake_init(void)
{
    pthread_condattr_t ca;

    /* The wait uses the monotonic clock so a wall-clock jump neither stalls nor floods it. */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&wake_cv, &ca);
    pthread_condattr_destroy(&ca);
}

void cd__audit_appended(void)
{
    uint_fast64_t n = atomic_fetch_add_explicit(&appends, 1, memory_order_relaxed) + 1;

    /* One load and compare per append; the lock only once per threshold reached. */
    if (n >= atomic_load_explicit(&wake_at, memory_order_relaxed)) {
        atomic_store_explicit(&wake_at, UINT64_MAX, memory_order_relaxed);
        pthread_mutex_lock(&wake_mu);
        pthread_cond_broadcast(&wake_cv);
        pthread_mutex_unlock(&wake_mu);
    }
}

/* Lowers the process-wide threshold to at (never raises it: another publisher may need less). */
static void arm(uint_fast64_t at)
{
    uint_fast64_t cur = atomic_load_explicit(&wake_at, memory_order_relaxed);

    while (at < cur &&
           !atomic_compare_exchange_weak_explicit(&wake_at, &cur, at, memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
}

/* Signs a head if the ledger grew (a publish of an unchanged ledger signs nothing); failures
 * are logged, and an integrity failure (the ledger is shorter than a stored head) counted. */
static void publish_logged(struct cd_audit *a, const char *when)
{
    /* Among several servers on one database, the one holding the store's lease signs: heads
     * are made once, not once per server (store.h, "several servers on one database"). */
    if (!cd_store_lease_held(a->store))
        return;
    cd_err_clear();
    enum cd_err err = cd_audit_publish(a, NULL, NULL);
    if (err == CD_ERR_INTEGRITY)
        cd_integrity_report(CD_INTEGRITY_TREE_HEAD, "\"when\":\"%s\"", when);
    else if (err != CD_OK)
        cd_log(CD_LOG_ERROR, "audit.tree_head_failed", "\"when\":\"%s\",\"error\":\"%s\"",
               when, cd_err_name(err));
}

static void *publisher_main(void *arg)
{
    struct cd_audit *a = arg;
    uint_fast64_t published = a->published;

    pthread_setname_np(pthread_self(), "cd-heads"); /* per-thread CPU in top and /proc */
    pthread_mutex_lock(&wake_mu);
    while (!a->stop) {
        struct timespec until;
        uint_fast64_t due = published + a->policy.every_entries;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += a->policy.interval_s;
        for (;;) {
            if (a->stop || atomic_load(&appends) >= due)
                break;
            arm(due);
            if (pthread_cond_timedwait(&wake_cv, &wake_mu, &until) == ETIMEDOUT)
                break;
        }
        if (a->stop)
            break;
        uint_fast64_t now = atomic_load(&appends);
        /* Nothing was appended here: no head to sign, no transaction to run; unless other
         * servers append to the same ledger, which this count does not see. */
        if (now == published && !cd_store_shared(a->store))
            continue;
        pthread_mutex_unlock(&wake_mu);
        publish_logged(a, "running");
        published = now;
        pthread_mutex_lock(&wake_mu);
    }
    pthread_mutex_unlock(&wake_mu);
    return NULL;
}

/* Opens the heads file and makes it catch up with the database; reports a file whose last
 * head the database does not hold (the database lost heads or entries since it was written). */
static enum cd_err heads_file_start(struct cd_audit *a)
{
    struct cd_audit_sth last, stored;
    bool have = false;
    enum cd_err err;

    if ((err = cd__audit_heads_open(a->policy.heads_path, &a->heads_fd, &last, &have)) != CD_OK)
        return err;
    if (have) {
        struct since q = {last.tree_size ? last.tree_size - 1 : 0, {NULL, 0, 0}};
        err = cd_store_read(a->store, since_fn, &q);
        if (err == CD_OK) {
            bool found = q.l.n > 0 && q.l.v[0].tree_size == last.tree_size;
            if (found)
                stored = q.l.v[0];
            if (!found || stored.timestamp_ms != last.timestamp_ms ||
                memcmp(stored.root, last.root, HASH_LEN) != 0)
                cd_integrity_report(CD_INTEGRITY_TREE_HEAD,
                                    "\"heads_file_tree_size\":%llu,\"detail\":\"the database "
                                    "does not hold the heads file's last head; run candor audit "
                                    "verify\"",
                                    (unsigned long long)last.tree_size);
        }
        cd_free(q.l.v);
        if (err != CD_OK)
            return err;
        a->file_upto = last.tree_size;
    }
    heads_file_catch_up(a);
    return CD_OK;
}

enum cd_err cd_audit_publisher_start(struct cd_audit *a, const struct cd_audit_policy *policy)
{
    enum cd_err err;

    if (policy->interval_s == 0 || policy->every_entries == 0 || a->running || !a->can_sign)
        return cd_err_set(CD_ERR_INVALID, "the tree head publisher needs a signing key, an "
                                          "interval of at least one second and at least one "
                                          "entry per head");
    pthread_once(&wake_once, wake_init);
    a->policy = *policy;
    if (policy->heads_path) {
        pthread_mutex_lock(&a->publish_mu);
        err = heads_file_start(a);
        pthread_mutex_unlock(&a->publish_mu);
        if (err != CD_OK)
            return err;
    }
    a->published = atomic_load(&appends);
    publish_logged(a, "start");
    a->stop = false;
    if (pthread_create(&a->thread, NULL, publisher_main, a) != 0)
        return cd_err_set(CD_ERR_INTERNAL, "cannot start the tree head publisher");
    a->running = true;
    return CD_OK;
}

void cd_audit_close(struct cd_audit *a)
{
    if (a == NULL)
        return;
    if (a->running) {
        pthread_mutex_lock(&wake_mu);
        a->stop = true;
        pthread_cond_broadcast(&wake_cv);
        pthread_mutex_unlock(&wake_mu);
        pthread_join(a->thread, NULL);
        /* A clean shutdown leaves a head over every entry, here and in the heads file. The
         * caller's error detail (a failed start closes the service too) is kept. */
        char detail[512];
        snprintf(detail, sizeof detail, "%s", cd_err_detail());
        publish_logged(a, "stop");
        cd_err_set(CD_OK, "%s", detail);
    }
    if (a->heads_fd >= 0)
        close(a->heads_fd);
    pthread_mutex_destroy(&a->publish_mu);
    cd_crypto_signer_wipe(&a->signer);
    cd_free(a);
}

enum cd_err cd_audit_public_key(const struct cd_audit *a, uint8_t pk[CD_CRYPTO_PK_LEN])
{
    if (!a->can_sign)
        return cd_err_set(CD_ERR_CRYPTO, "no signing key is loaded");
    memcpy(pk, a->signer.pk, CD_CRYPTO_PK_LEN);
    return CD_OK;
}

struct cd_store *cd_audit_store(const struct cd_audit *a)
{
    return a->store;
}

/* ---- proofs ---- */

static json_t *hex_json(const uint8_t *h)
{
    char hex[2 * HASH_LEN + 1];

    cd_hex_encode(h, HASH_LEN, hex);
    return json_string(hex);
}

static enum cd_err path_json(const struct cd_merkle_proof *p, json_t **out)
{
    json_t *arr = json_array();

    if (arr == NULL)
        return CD_ERR_NOMEM;
    for (unsigned i = 0; i < p->len; i++) {
        if (json_array_append_new(arr, hex_json(p->nodes[i])) != 0) {
            json_decref(arr);
            return CD_ERR_NOMEM;
        }
    }
    *out = arr;
    return CD_OK;
}

struct proof_args {
    uint64_t a, b; /* seq and tree size, or first and second */
    json_t *out;
};

struct entry_out {
    char *p;
    size_t len;
};

static enum cd_err entry_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct entry_out *e = ctx;

    if (n < 1 || (cols[0].type != CD_VAL_BLOB && cols[0].type != CD_VAL_TEXT))
        return cd_err_set(CD_ERR_INTEGRITY, "an audit entry is malformed");
    if ((e->p = cd_strndup(cols[0].p, cols[0].len)) == NULL)
        return CD_ERR_NOMEM;
    e->len = cols[0].len;
    return CD_OK;
}

/* A proof is asked for a tree of tree_size entries: the ledger must hold that many. */
static enum cd_err tree_in_ledger(struct cd_tx *tx, uint64_t tree_size)
{
    uint64_t size = 0;
    enum cd_err err = cd__audit_size(tx, &size);

    if (err == CD_OK && tree_size > size)
        err = cd_err_set(CD_ERR_NOT_FOUND, "tree size %llu exceeds the ledger (%llu entries)",
                         (unsigned long long)tree_size, (unsigned long long)size);
    return err;
}

static enum cd_err inclusion_fn(struct cd_tx *tx, void *ctx)
{
    struct proof_args *pa = ctx;
    struct cd_merkle_proof *proof = NULL;
    struct entry_out e = {NULL, 0};
    uint8_t leaf[HASH_LEN], root[HASH_LEN];
    json_t *path = NULL;
    enum cd_err err;

    if ((err = tree_in_ledger(tx, pa->b)) != CD_OK)
        return err;
    if (pa->a > pa->b)
        return cd_err_set(CD_ERR_NOT_FOUND, "entry %llu is not in the tree of size %llu",
                          (unsigned long long)pa->a, (unsigned long long)pa->b);
    if ((proof = cd_malloc(sizeof *proof)) == NULL)
        return CD_ERR_NOMEM;
    struct cd_val p[] = {CD_VINT(pa->a)};
    if ((err = cd_tx_exec(tx, "SELECT entry FROM audit_events WHERE seq = $1", p, 1, entry_row, &e,
                          NULL)) != CD_OK)
        goto out;
    if (e.p == NULL) {
        err = cd_err_set(CD_ERR_INTEGRITY, "audit entry %llu is missing",
                         (unsigned long long)pa->a);
        goto out;
    }
    if ((err = cd__audit_node_get(tx, 0, pa->a - 1, leaf)) != CD_OK ||
        (err = cd_merkle_inclusion_proof(pa->a - 1, pa->b, cd__audit_node_get, tx, proof)) !=
            CD_OK ||
        (err = cd_merkle_root(pa->b, cd__audit_node_get, tx, root)) != CD_OK) {
        err = node_missing_is_integrity(err);
        goto out;
    }
    if ((err = path_json(proof, &path)) != CD_OK)
        goto out;
    pa->out = json_pack("{s:I,s:I,s:I,s:s%,s:o,s:o,s:o}", "seq", (json_int_t)pa->a, "leaf_index",
                        (json_int_t)(pa->a - 1), "tree_size", (json_int_t)pa->b, "entry", e.p,
                        e.len, "leaf_hash", hex_json(leaf), "root_hash", hex_json(root),
                        "audit_path", path);
    path = NULL;
    err = pa->out ? CD_OK : CD_ERR_NOMEM;
out:
    json_decref(path);
    cd_free(e.p);
    cd_free(proof);
    return err;
}

enum cd_err cd_audit_inclusion(struct cd_store *s, uint64_t seq, uint64_t tree_size, json_t **out)
{
    struct proof_args pa = {seq, tree_size, NULL};
    enum cd_err err;

    if (seq == 0 || tree_size == 0)
        return cd_err_set(CD_ERR_INVALID, "'seq' and 'tree_size' must be positive integers");
    if ((err = cd_store_read(s, inclusion_fn, &pa)) != CD_OK)
        return err;
    *out = pa.out;
    return CD_OK;
}

static enum cd_err consistency_fn(struct cd_tx *tx, void *ctx)
{
    struct proof_args *pa = ctx;
    struct cd_merkle_proof *proof = NULL;
    uint8_t r1[HASH_LEN], r2[HASH_LEN];
    json_t *path = NULL;
    enum cd_err err;

    if ((err = tree_in_ledger(tx, pa->b)) != CD_OK)
        return err;
    if ((proof = cd_malloc(sizeof *proof)) == NULL)
        return CD_ERR_NOMEM;
    if ((err = cd_merkle_consistency_proof(pa->a, pa->b, cd__audit_node_get, tx, proof)) !=
            CD_OK ||
        (err = cd_merkle_root(pa->a, cd__audit_node_get, tx, r1)) != CD_OK ||
        (err = cd_merkle_root(pa->b, cd__audit_node_get, tx, r2)) != CD_OK) {
        err = node_missing_is_integrity(err);
        goto out;
    }
    if ((err = path_json(proof, &path)) != CD_OK)
        goto out;
    pa->out = json_pack("{s:I,s:I,s:o,s:o,s:o}", "first", (json_int_t)pa->a, "second",
                        (json_int_t)pa->b, "first_root", hex_json(r1), "second_root",
                        hex_json(r2), "proof", path);
    path = NULL;
    err = pa->out ? CD_OK : CD_ERR_NOMEM;
out:
    json_decref(path);
    cd_free(proof);
    return err;
}

enum cd_err cd_audit_consistency(struct cd_store *s, uint64_t first, uint64_t second,
                                 json_t **out)
{
    struct proof_args pa = {first, second, NULL};
    enum cd_err err;

    if (first == 0 || second == 0)
        return cd_err_set(CD_ERR_INVALID, "'first' and 'second' must be positive integers");
    if (first > second)
        return cd_err_set(CD_ERR_INVALID, "'first' must not exceed 'second'");
    if ((err = cd_store_read(s, consistency_fn, &pa)) != CD_OK)
        return err;
    *out = pa.out;
    return CD_OK;
}
