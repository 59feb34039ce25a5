/* Batch ingestion: POST /v1/interactions:batch {"items": [body, ...]}.
 *
 * Up to CD_HTTP_BATCH_MAX interactions, each the body of POST /v1/interactions with an optional
 * "idempotency_key", each through the same path (validation, purpose, consent and guard hooks,
 * sealing, its audit entry) as a single ingestion. Why a batch: every item's write is queued
 * before the first is waited for, so the batch shares group commits instead of paying one round
 * trip and one commit wait per item. The answer is 200 with one result per item, in order:
 * {"status": 201 or 200 (a replayed key), "interaction": {...}} or {"status": 4xx/5xx,
 * "problem": {...}}; an item's failure never undoes another's. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include "http_int.h"

#define BATCH_KEY "idempotency_key"

/* Makes one item's entry: its body without its key, and the key scoped like a single
 * ingestion's, bound to the item's canonical JSON (so the same item under the same key is a
 * replay wherever it sits in a batch). */
static enum cd_err entry_make(struct cd_req *r, const json_t *raw, size_t i,
                              struct cd__http_batch_entry *e)
{
    const json_t *key;
    char name[48], *canon;
    enum cd_err err;

    if (!json_is_object(raw))
        return cd_err_set(CD_ERR_INVALID, "'items[%zu]' must be an object", i);
    /* json_copy skips a member it cannot allocate: a short copy is out of memory too. */
    if ((e->body = json_copy((json_t *)raw)) == NULL ||
        json_object_size(e->body) != json_object_size(raw))
        return CD_ERR_NOMEM;
    if ((key = json_object_get(raw, BATCH_KEY)) == NULL)
        return CD_OK;
    snprintf(name, sizeof name, "'items[%zu].%s'", i, BATCH_KEY);
    if (!json_is_string(key))
        return cd_err_set(CD_ERR_INVALID, "%s must be a string of 1 to 255 characters", name);
    json_incref((json_t *)key); /* it stays valid once deleted from the body */
    json_object_del(e->body, BATCH_KEY);
    e->key = (json_t *)key;
    if ((canon = json_dumps(e->body, JSON_COMPACT | JSON_SORT_KEYS)) == NULL)
        return CD_ERR_NOMEM;
    struct cd_str k = {json_string_value(key), json_string_length(key)};
    err = cd__http_idem_make(r, name, k, cd_str_c(canon), &e->idem);
    cd_free(canon);
    e->has_idem = err == CD_OK;
    return err;
}

void cd__http_batch_entries_free(struct cd__http_batch_entry *e, size_t n)
{
    for (size_t i = 0; e && i < n; i++) {
        json_decref(e[i].body);
        json_decref(e[i].key);
    }
    cd_free(e);
}

enum cd_err cd__http_batch_parse(struct cd_req *r, struct cd__http_batch_entry **out,
                                 size_t *nout)
{
    const json_t *items = json_object_get(r->json, "items");
    struct cd__http_batch_entry *e = NULL;
    size_t n = json_array_size(items);
    const char *k;
    json_t *v;
    enum cd_err err = CD_OK;

    *out = NULL;
    *nout = 0;
    json_object_foreach((json_t *)r->json, k, v)
        if (strcmp(k, "items") != 0)
            return cd_err_set(CD_ERR_INVALID, "unknown member '%s' (the batch has 'items')", k);
    if (!json_is_array(items) || n == 0 || n > CD_HTTP_BATCH_MAX)
        return cd_err_set(CD_ERR_INVALID, "'items' must be an array of 1 to %d interactions",
                          CD_HTTP_BATCH_MAX);
    if ((e = cd_calloc(n, sizeof *e)) == NULL)
        return CD_ERR_NOMEM;
    /* Every item is checked before any is written: a malformed batch stores nothing. */
    for (size_t i = 0; i < n && err == CD_OK; i++)
        err = entry_make(r, json_array_get(items, i), i, &e[i]);
    if (err != CD_OK) {
        cd__http_batch_entries_free(e, n);
        return err;
    }
    *out = e;
    *nout = n;
    return CD_OK;
}

json_t *cd__http_batch_result(enum cd_err err, json_t *interaction, bool replayed,
                              const char *detail, json_t *ext, const char *request_id)
{
    json_t *res = json_object(), *p;

    if (res == NULL)
        goto fail;
    if (err == CD_OK) {
        json_decref(ext);
        ext = NULL;
        if (interaction == NULL ||
            cd_json_set_new(res, "status", json_integer(replayed ? 200 : 201)) != CD_OK)
            goto fail;
        if (cd_json_set_new(res, "interaction", interaction) != CD_OK) {
            json_decref(res);
            return NULL;
        }
        return res;
    }
    json_decref(interaction);
    const struct cd_problem_kind *k = cd__http_problem_of(err);
    if ((p = cd__http_problem_json(k, detail, NULL, request_id, ext)) == NULL) {
        json_decref(res);
        return NULL;
    }
    if (cd_json_set_new(res, "status", json_integer(k->status)) != CD_OK) {
        json_decref(p);
        json_decref(res);
        return NULL;
    }
    if (cd_json_set_new(res, "problem", p) != CD_OK) {
        json_decref(res);
        return NULL;
    }
    return res;
fail:
    json_decref(res);
    json_decref(interaction);
    json_decref(ext);
    return NULL;
}

json_t *cd__http_batch_answer(json_t *results)
{
    json_t *resp = json_object(), *res;
    size_t i, ok = 0;

    json_array_foreach(results, i, res)
        if (json_integer_value(json_object_get(res, "status")) < 300)
            ok++;
    size_t n = json_array_size(results);
    /* cd_json_set_new takes results whatever happens. */
    if (resp == NULL) {
        json_decref(results);
        return NULL;
    }
    if (cd_json_set_new(resp, "items", results) != CD_OK ||
        cd_json_set_new(resp, "succeeded", json_integer((json_int_t)ok)) != CD_OK ||
        cd_json_set_new(resp, "failed", json_integer((json_int_t)(n - ok))) != CD_OK) {
        json_decref(resp);
        return NULL;
    }
    return resp;
}

/* ---- the writes ---- */

struct batch;
struct batch_item {
    struct batch *b;
    struct cd_core_ingest *op; /* set when its write is through */
    enum cd_err err;           /* a failure before the write */
    char detail[256];
    json_t *ext; /* a guard verdict's members, for the problem */
};

struct batch {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t pending; /* items whose write is queued and not through */
};

static void batch_item_written(void *ctx, struct cd_core_ingest *op)
{
    struct batch_item *it = ctx;

    pthread_mutex_lock(&it->b->mu);
    it->op = op;
    it->b->pending--;
    pthread_cond_signal(&it->b->cv);
    pthread_mutex_unlock(&it->b->mu);
}

/* One item's result: the interaction the finish step wrote, or the problem of its failure. The
 * item's op is finished (and freed) whatever happens. */
static json_t *batch_item_result(struct cd_req *r, struct batch_item *it)
{
    json_t *v = NULL;
    enum cd_err err = it->err;
    bool replayed = false;
    char id[CD_ID_MAX] = "";

    if (err == CD_OK && it->op) {
        struct cd_buf out = CD_BUF_INIT(CD_CORE_ANSWER_MAX);
        err = cd_core_interaction_ingest_finish(it->op, &out, &replayed, id);
        it->op = NULL;
        if (err == CD_OK && (v = json_loadb(out.p, out.len, 0, NULL)) == NULL)
            err = CD_ERR_NOMEM;
        if (err != CD_OK)
            snprintf(it->detail, sizeof it->detail, "%s", cd_err_detail());
        cd_buf_free(&out);
        if (err == CD_ERR_NOMEM && id[0] && !replayed) {
            /* Durable: say what was created, as a single ingestion does. */
            err = CD_OK;
            v = json_pack("{s:s}", "id", id);
        }
    }
    json_t *ext = it->ext;
    it->ext = NULL;
    return cd__http_batch_result(err, v, replayed, it->detail, ext, r->request_id);
}

enum cd_err cd__http_interactions_batch(struct cd_req *r)
{
    struct batch b = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    struct cd__http_batch_entry *e = NULL;
    struct batch_item *it = NULL;
    unsigned fields = cd__http_fields(r);
    size_t n = 0;
    json_t *results = NULL;
    enum cd_err err;

    if ((err = cd__http_batch_parse(r, &e, &n)) != CD_OK)
        return err;
    if ((it = cd_calloc(n, sizeof *it)) == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *o = NULL;
        it[i].b = &b;
        pthread_mutex_lock(&b.mu);
        b.pending++;
        pthread_mutex_unlock(&b.mu);
        cd_err_clear();
        it[i].err = cd_core_interaction_ingest_start(r->app->core, &r->actor, e[i].body,
                                                     e[i].has_idem ? &e[i].idem : NULL, fields,
                                                     batch_item_written, &it[i], &o);
        if (it[i].err == CD_OK)
            continue;
        pthread_mutex_lock(&b.mu);
        b.pending--;
        pthread_mutex_unlock(&b.mu);
        snprintf(it[i].detail, sizeof it[i].detail, "%s", cd_err_detail());
        /* The problem carries the verdict, as a single ingestion's does. */
        if (it[i].err == CD_ERR_GUARD_BLOCKED || it[i].err == CD_ERR_PURPOSE_MISMATCH)
            it[i].ext = o;
        else
            json_decref(o);
    }
    pthread_mutex_lock(&b.mu);
    while (b.pending > 0)
        pthread_cond_wait(&b.cv, &b.mu);
    pthread_mutex_unlock(&b.mu);
    if ((results = json_array()) == NULL)
        err = CD_ERR_NOMEM;
    /* Every item is finished (its op freed), whatever happens to the answer. */
    for (size_t i = 0; i < n; i++) {
        json_t *res = batch_item_result(r, &it[i]);
        if (json_array_append_new(results, res) != 0) /* res is taken, even without results */
            err = CD_ERR_NOMEM;
    }
    if (err == CD_OK && (r->resp_json = cd__http_batch_answer(results)) == NULL)
        err = CD_ERR_NOMEM;
    else if (err != CD_OK)
        json_decref(results);
out:
    for (size_t i = 0; it && i < n; i++)
        json_decref(it[i].ext);
    cd_free(it);
    cd__http_batch_entries_free(e, n);
    pthread_mutex_destroy(&b.mu);
    pthread_cond_destroy(&b.cv);
    return err;
}
