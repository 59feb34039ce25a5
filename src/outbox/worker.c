/* The delivery worker: one thread (cd-webhooks) that claims due deliveries, sends each as a
 * signed HTTP POST with libcurl's multi interface (up to `concurrency` at once, so one slow
 * receiver holds one slot, not the queue), and records the outcomes of a round in the same
 * write as the next claim.
 * Claims are durable and leased (deliveries.c): whatever happens to this thread or process, a
 * delivery not recorded as done is sent again — at least once. */
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>
#include "outbox_int.h"

#define IDLE_POLL_MAX_MS 1000 /* an idle worker looks for due deliveries at least this often */
#define BURST_MS 250          /* after a wake-up with nothing found: look every ... */
#define BURST_POLL_MS 10      /* ... 10 ms for 250 ms (the write that woke it commits soon) */
#define GAUGE_MS 1000         /* the queue's size is read again after this long */

const double cd_outbox_latency_le[CD_OUTBOX_LATENCY_BUCKETS] = {0.01, 0.025, 0.05, 0.1, 0.25,
                                                                0.5,  1,     2.5,  5,   10,
                                                                60,   0};

struct inflight {
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    struct cd__claim c;
};

struct cd__worker {
    struct cd_outbox *ob;
    struct cd_outbox_worker_config cfg;
    pthread_t thread;
    CURLM *multi;
    int stop, woken; /* atomic accesses */
    size_t busy;     /* transfers in flight (the worker thread only) */
    struct inflight **slots; /* concurrency of them; NULL: free */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- building a request ---- */

/* The members of the event's personal data the subscription's purpose may receive, and the
 * categories they span. */
static unsigned allowed_categories(const struct cd_outbox_event_type *t, unsigned fields)
{
    unsigned cats = 0;

    for (size_t i = 0; i < t->nmembers; i++) {
        unsigned c = t->members[i].category;
        if (c != CD_FIELDS_REFERENCE && (c & fields) == c)
            cats |= c;
    }
    return cats;
}

/* Adds the personal members the purpose may see to data (when the hook lets them go), and
 * names every other one in *withheld. */
static enum cd_err add_personal(struct cd_outbox *ob, const struct cd_outbox_worker_config *cfg,
                                const struct cd__claim *c, const struct cd_outbox_event_type *t,
                                json_t *data, json_t **withheld)
{
    enum cd_purpose purpose;
    struct cd_policy_grant g = {CD_FIELDS_REFERENCE, false};
    unsigned cats;
    json_t *personal = NULL;
    enum cd_err err = CD_OK;

    if (!cd_purpose_parse(cd_str_c(c->purpose), &purpose) ||
        cd_policy_check(cfg->policy, CD_ROLE_INTEGRATION, purpose, &g) != CD_OK)
        g.fields = CD_FIELDS_REFERENCE;
    cats = allowed_categories(t, g.fields);
    if (cats && cfg->hooks.personal_read &&
        cfg->hooks.personal_read(cfg->hooks.ctx, c->customer_id, purpose, cats, c->sub_id) ==
            CD_OK) {
        struct cd_buf plain = CD_BUF_INIT(CD__OUTBOX_PAYLOAD_MAX + 1);
        char field[CD__OUTBOX_FIELD_MAX];
        cd__outbox_field(c->event_id, field);
        if ((err = cd_crypto_open(ob->payload_key, cd_str_c(c->customer_id),
                                  cd_str_c(field),
                                  (struct cd_str){c->personal.p, c->personal.len}, &plain)) ==
            CD_OK)
            err = cd_json_parse(plain.p, plain.len, &personal);
        if (plain.p)
            cd_crypto_wipe(plain.p, plain.len);
        cd_buf_free(&plain);
        if (err != CD_OK)
            return err;
    } else {
        cats = 0;
    }
    for (size_t i = 0; i < t->nmembers && err == CD_OK; i++) {
        const struct cd_outbox_member *m = &t->members[i];
        json_t *v = personal ? json_object_get(personal, m->name) : NULL;
        if (m->category == CD_FIELDS_REFERENCE)
            continue;
        if (v && (m->category & cats) == m->category) {
            if (json_object_set(data, m->name, v) != 0)
                err = CD_ERR_NOMEM;
        } else if ((*withheld == NULL && (*withheld = json_array()) == NULL) ||
                   json_array_append_new(*withheld, json_string(m->name)) != 0) {
            err = CD_ERR_NOMEM;
        }
    }
    json_decref(personal);
    return err;
}

enum cd_err cd__outbox_body(struct cd_outbox *ob, const struct cd_outbox_worker_config *cfg,
                            const struct cd__claim *c, char **body, size_t *len)
{
    const struct cd_outbox_event_type *t = cd_outbox_event_type(cd_str_c(c->type));
    json_t *members = NULL, *data = json_object(), *withheld = NULL, *env = NULL;
    char ts[CD_TIME_STRLEN];
    const char *key;
    json_t *v;
    enum cd_err err;

    if (t == NULL)
        return cd_err_set(CD_ERR_INTEGRITY, "an event of an unknown type is queued");
    if (data == NULL)
        return CD_ERR_NOMEM;
    if (c->customer_id[0] && (err = cd_json_set_new(data, "customer_id",
                                                    json_string(c->customer_id))) != CD_OK)
        goto out;
    if ((err = cd_json_parse(c->payload, strlen(c->payload), &members)) != CD_OK)
        goto out;
    json_object_foreach(members, key, v) {
        if (json_object_set(data, key, v) != 0) {
            err = CD_ERR_NOMEM;
            goto out;
        }
    }
    if (c->personal.len && (err = add_personal(ob, cfg, c, t, data, &withheld)) != CD_OK)
        goto out;
    cd_time_format(c->created_at, ts);
    env = json_pack("{s:s,s:s,s:s,s:I,s:O}", "id", c->event_id, "type", c->type, "timestamp", ts,
                    "sequence", (json_int_t)c->event_seq, "data", data);
    if (env == NULL || (withheld && json_object_set(env, "withheld", withheld) != 0)) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    err = cd_json_dump(env, body, len);
out:
    json_decref(members);
    json_decref(data);
    json_decref(withheld);
    json_decref(env);
    return err;
}

static size_t discard(char *p, size_t size, size_t n, void *ctx)
{
    (void)p;
    (void)ctx;
    return size * n;
}

/* Adds "name: value" to h; an empty value ("Expect:") removes a header curl would add. */
static enum cd_err add_header(struct curl_slist **h, const char *name, const char *value)
{
    char line[256];
    struct curl_slist *n;

    snprintf(line, sizeof line, value[0] ? "%s: %s" : "%s:", name, value);
    if ((n = curl_slist_append(*h, line)) == NULL)
        return CD_ERR_NOMEM;
    *h = n;
    return CD_OK;
}

/* Builds the signed request of f->c; CD_OK leaves f->easy ready to add. */
static enum cd_err prepare(struct cd__worker *w, struct inflight *f)
{
    uint8_t key[CD_OUTBOX_SECRET_LEN];
    char sig[CD__OUTBOX_SIG_MAX], ts[24], attempt[16];
    size_t len = 0;
    int64_t now_s = cd_now_ms() / 1000;
    enum cd_err err;

    if ((err = cd__outbox_body(w->ob, &w->cfg, &f->c, &f->body, &len)) != CD_OK)
        return err;
    struct cd_val sealed = {CD_VAL_BLOB, 0, f->c.secret.p, f->c.secret.len};
    if ((err = cd__outbox_secret_open(w->ob, f->c.sub_id, sealed, key)) != CD_OK)
        return err;
    cd__outbox_sign(key, sizeof key, f->c.event_id, now_s, (struct cd_str){f->body, len}, sig);
    cd_crypto_wipe(key, sizeof key);
    snprintf(ts, sizeof ts, "%lld", (long long)now_s);
    snprintf(attempt, sizeof attempt, "%u", f->c.attempts);
    /* "Expect:" turns off curl's 100-continue wait for larger bodies. */
    if ((err = add_header(&f->headers, "Content-Type", "application/json")) != CD_OK ||
        (err = add_header(&f->headers, "webhook-id", f->c.event_id)) != CD_OK ||
        (err = add_header(&f->headers, "webhook-timestamp", ts)) != CD_OK ||
        (err = add_header(&f->headers, "webhook-signature", sig)) != CD_OK ||
        (err = add_header(&f->headers, "candor-delivery-id", f->c.id)) != CD_OK ||
        (err = add_header(&f->headers, "candor-attempt", attempt)) != CD_OK ||
        (err = add_header(&f->headers, "User-Agent", "Candor-Webhooks/1")) != CD_OK ||
        (err = add_header(&f->headers, "Expect", "")) != CD_OK)
        return err;
    if ((f->easy = curl_easy_init()) == NULL)
        return CD_ERR_NOMEM;
    long timeout = (long)w->cfg.timeout_ms;
    if (curl_easy_setopt(f->easy, CURLOPT_URL, f->c.url) != CURLE_OK ||
        curl_easy_setopt(f->easy, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
        curl_easy_setopt(f->easy, CURLOPT_POSTFIELDS, f->body) != CURLE_OK ||
        curl_easy_setopt(f->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len) != CURLE_OK ||
        curl_easy_setopt(f->easy, CURLOPT_HTTPHEADER, f->headers) != CURLE_OK ||
        curl_easy_setopt(f->easy, CURLOPT_TIMEOUT_MS, timeout) != CURLE_OK ||
        curl_easy_setopt(f->easy, CURLOPT_CONNECTTIMEOUT_MS, timeout) != CURLE_OK ||
        curl_easy_setopt(f->easy, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
        curl_easy_setopt(f->easy, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
        curl_easy_setopt(f->easy, CURLOPT_WRITEFUNCTION, discard) != CURLE_OK ||
        curl_easy_setopt(f->easy, CURLOPT_PRIVATE, f) != CURLE_OK)
        return cd_err_set(CD_ERR_INTERNAL, "libcurl refused an option");
    return CD_OK;
}

static void inflight_free(struct inflight *f)
{
    if (f == NULL)
        return;
    if (f->easy)
        curl_easy_cleanup(f->easy);
    curl_slist_free_all(f->headers);
    cd_free(f->body);
    cd__outbox_claim_clear(&f->c);
    cd_free(f);
}

/* ---- outcomes ---- */

static void outcome_of(struct cd__worker *w, const struct cd__claim *c, bool ok, long status,
                       const char *error, struct cd__outcome *o)
{
    memset(o, 0, sizeof *o);
    o->seq = c->seq;
    o->event_seq = c->event_seq;
    memcpy(o->id, c->id, CD_ID_MAX);
    o->http_status = (int)status;
    if (ok) {
        o->state = CD__DELIVERED;
        return;
    }
    o->error = error;
    if (status == 410) {
        /* Gone: the receiver says it will never take this; retrying would not change that. */
        o->state = CD__DEAD;
        o->error = "the receiver answered 410 Gone";
    } else if (c->attempts >= w->cfg.max_attempts) {
        o->state = CD__DEAD;
    } else {
        o->state = CD__RETRY;
        o->next_at = cd_now_ms() + cd_outbox_backoff_ms(c->attempts, w->cfg.backoff_base_ms,
                                                        w->cfg.backoff_max_ms);
    }
}

static void count(struct cd__worker *w, const struct cd__outcome *o, size_t n,
                  const int64_t *created)
{
    struct cd_outbox *ob = w->ob;
    int64_t now = cd_now_ms();

    for (size_t i = 0; i < n; i++) {
        if (o[i].state == CD__DELIVERED) {
            double s = (double)(now - created[i]) / 1000.0;
            size_t b = 0;
            while (b + 1 < CD_OUTBOX_LATENCY_BUCKETS && s > cd_outbox_latency_le[b])
                b++;
            __atomic_add_fetch(&ob->delivered, 1, __ATOMIC_RELAXED);
            __atomic_add_fetch(&ob->latency_hist[b], 1, __ATOMIC_RELAXED);
            __atomic_add_fetch(&ob->latency_sum_ms, (uint64_t)(now - created[i]),
                               __ATOMIC_RELAXED);
            continue;
        }
        __atomic_add_fetch(&ob->failed, 1, __ATOMIC_RELAXED);
        if (o[i].state == CD__DEAD) {
            __atomic_add_fetch(&ob->dead_lettered, 1, __ATOMIC_RELAXED);
            cd_log(CD_LOG_WARN, "webhook.dead_lettered", "\"delivery\":\"%s\",\"status\":%d",
                   o[i].id, o[i].http_status);
        }
    }
}

/* ---- the loop ---- */

/* Records the outcomes out[0..*nout) and claims what fits in the free slots, in one write, and
 * starts what it claimed; returns how many were claimed. Outcomes recorded are counted and
 * taken off out; a claim that cannot be prepared is added to out, as a failed attempt. */
static size_t fill(struct cd__worker *w, struct cd__outcome *out, int64_t *created, size_t *nout)
{
    size_t free_slots = w->cfg.concurrency - w->busy, n = 0;
    struct cd__claim *v = NULL;
    bool recorded = false;
    enum cd_err err = cd__outbox_record_claim(w->ob, out, *nout, &recorded,
                                              (int64_t)w->cfg.timeout_ms +
                                                  CD__OUTBOX_LEASE_MARGIN_MS,
                                              free_slots, &v, &n);

    if (err != CD_OK) {
        cd_log(CD_LOG_WARN, "webhook.claim_failed", "\"error\":\"%s\"", cd_err_name(err));
        return 0;
    }
    if (recorded) {
        count(w, out, *nout, created);
        *nout = 0;
    }
    for (size_t i = 0; i < n; i++) {
        struct inflight *f = cd_calloc(1, sizeof *f);
        if (f == NULL) {
            /* The lease brings it back. */
            continue;
        }
        f->c = v[i];
        memset(&v[i], 0, sizeof v[i]);
        if ((err = prepare(w, f)) != CD_OK ||
            curl_multi_add_handle(w->multi, f->easy) != CURLM_OK) {
            cd_log(CD_LOG_WARN, "webhook.prepare_failed", "\"delivery\":\"%s\",\"error\":\"%s\"",
                   f->c.id, cd_err_name(err != CD_OK ? err : CD_ERR_INTERNAL));
            created[*nout] = f->c.created_at;
            outcome_of(w, &f->c, false, 0, "the delivery could not be prepared", &out[(*nout)++]);
            inflight_free(f);
            continue;
        }
        for (size_t k = 0; k < w->cfg.concurrency; k++)
            if (w->slots[k] == NULL) {
                w->slots[k] = f;
                break;
            }
        w->busy++;
    }
    cd__outbox_claims_free(v, n);
    return n;
}

/* Collects the transfers that ended. */
static void harvest(struct cd__worker *w, struct cd__outcome *out, int64_t *created,
                    size_t *nout)
{
    CURLMsg *m;
    int left;

    while ((m = curl_multi_info_read(w->multi, &left)) != NULL) {
        struct inflight *f = NULL;
        long status = 0;
        if (m->msg != CURLMSG_DONE)
            continue;
        CURLcode rc = m->data.result;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&f);
        if (rc == CURLE_OK)
            curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
        bool ok = rc == CURLE_OK && status >= 200 && status < 300;
        created[*nout] = f->c.created_at;
        outcome_of(w, &f->c, ok, status,
                   rc != CURLE_OK ? curl_easy_strerror(rc)
                                  : "the receiver answered with a status other than 2xx",
                   &out[(*nout)++]);
        curl_multi_remove_handle(w->multi, f->easy);
        for (size_t k = 0; k < w->cfg.concurrency; k++)
            if (w->slots[k] == f)
                w->slots[k] = NULL;
        w->busy--;
        inflight_free(f);
    }
}

static void gauges(struct cd__worker *w)
{
    int64_t pending = 0, dead = 0;

    if (cd__outbox_queue_sizes(w->ob, &pending, &dead) == CD_OK) {
        __atomic_store_n(&w->ob->queued, (uint64_t)pending, __ATOMIC_RELAXED);
        __atomic_store_n(&w->ob->dead, (uint64_t)dead, __ATOMIC_RELAXED);
    }
}

/* Records outcomes in a write of their own (when no claim could carry them). */
static void record(struct cd__worker *w, struct cd__outcome *out, int64_t *created, size_t *nout,
                   int64_t *next_look, int64_t now)
{
    enum cd_err err = cd__outbox_record(w->ob, out, *nout);

    if (err == CD_OK) {
        count(w, out, *nout, created);
        /* A customer's next event may be due now that this one is settled. */
        *next_look = now;
    } else { /* the leases bring them back: at least once, never lost */
        cd_log(CD_LOG_WARN, "webhook.record_failed", "\"error\":\"%s\",\"n\":%zu",
               cd_err_name(err), *nout);
    }
    *nout = 0;
}

static void *run(void *arg)
{
    struct cd__worker *w = arg;
    size_t cap = 2 * (size_t)w->cfg.concurrency;
    struct cd__outcome *out = cd_calloc(cap, sizeof *out);
    int64_t *created = cd_calloc(cap, sizeof *created);
    int64_t next_look = 0, burst_until = 0, next_gauge = 0;
    int64_t idle = w->cfg.backoff_base_ms < IDLE_POLL_MAX_MS ? w->cfg.backoff_base_ms
                                                             : IDLE_POLL_MAX_MS;
    /* Outcomes not yet recorded: each frees a slot, so with the transfers in flight they never
     * number more than concurrency before a round, nor more than twice that within one. */
    size_t nout = 0;

    pthread_setname_np(pthread_self(), "cd-webhooks");
    if (idle < BURST_POLL_MS)
        idle = BURST_POLL_MS;
    while (out && created && !__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
        int64_t now = cd_now_ms();
        int running = 0;

        if (__atomic_exchange_n(&w->woken, 0, __ATOMIC_ACQ_REL))
            burst_until = now + BURST_MS;
        curl_multi_perform(w->multi, &running);
        harvest(w, out, created, &nout);
        if (w->busy < w->cfg.concurrency && now >= next_look) {
            size_t free_slots = w->cfg.concurrency - w->busy;
            size_t n = fill(w, out, created, &nout);
            next_look = n == free_slots ? now : now + (now < burst_until ? BURST_POLL_MS : idle);
            if (n) {
                /* On loopback a transfer can end within the call that starts it. What ended
                 * is recorded by the next round's claim, which comes at once. */
                curl_multi_perform(w->multi, &running);
                harvest(w, out, created, &nout);
                if (nout)
                    next_look = now;
            } else if (nout) {
                record(w, out, created, &nout, &next_look, now);
            }
        } else if (nout) {
            record(w, out, created, &nout, &next_look, now);
        }
        if (now >= next_gauge) {
            gauges(w);
            next_gauge = now + GAUGE_MS;
        }
        int64_t wait = next_look - cd_now_ms();
        if (nout)
            wait = 0;
        else if (w->busy >= w->cfg.concurrency || wait > IDLE_POLL_MAX_MS)
            wait = IDLE_POLL_MAX_MS;
        if (wait > 0)
            curl_multi_poll(w->multi, NULL, 0, (int)wait, NULL);
        if (__atomic_load_n(&w->woken, __ATOMIC_ACQUIRE))
            next_look = 0;
    }
    if (nout)
        record(w, out, created, &nout, &next_look, cd_now_ms());
    cd_free(out);
    cd_free(created);
    return NULL;
}

enum cd_err cd_outbox_worker_start(struct cd_outbox *ob, const struct cd_outbox_worker_config *cfg)
{
    struct cd__worker *w;

    if (cfg->concurrency == 0 || cfg->timeout_ms == 0 || cfg->max_attempts == 0 ||
        cfg->backoff_base_ms == 0 || cfg->backoff_max_ms < cfg->backoff_base_ms ||
        cfg->policy == NULL)
        return cd_err_set(CD_ERR_INVALID, "the webhook worker needs a policy and non-zero "
                                          "limits");
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return cd_err_set(CD_ERR_INTERNAL, "libcurl did not initialise");
    if ((w = cd_calloc(1, sizeof *w)) == NULL)
        return CD_ERR_NOMEM;
    w->ob = ob;
    w->cfg = *cfg;
    if ((w->slots = cd_calloc(cfg->concurrency, sizeof *w->slots)) == NULL ||
        (w->multi = curl_multi_init()) == NULL) {
        cd_free(w->slots);
        cd_free(w);
        return CD_ERR_NOMEM;
    }
    /* Connections to a receiver stay open between deliveries. */
    curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS, (long)cfg->concurrency);
    pthread_mutex_lock(&ob->mu);
    if (ob->worker) {
        pthread_mutex_unlock(&ob->mu);
        curl_multi_cleanup(w->multi);
        cd_free(w->slots);
        cd_free(w);
        return cd_err_set(CD_ERR_INVALID, "the webhook worker is already running");
    }
    if (pthread_create(&w->thread, NULL, run, w) != 0) {
        pthread_mutex_unlock(&ob->mu);
        curl_multi_cleanup(w->multi);
        cd_free(w->slots);
        cd_free(w);
        return cd_err_set(CD_ERR_INTERNAL, "cannot start the webhook worker");
    }
    ob->worker = w;
    pthread_mutex_unlock(&ob->mu);
    return CD_OK;
}

void cd_outbox_worker_stop(struct cd_outbox *ob)
{
    struct cd__worker *w;

    pthread_mutex_lock(&ob->mu);
    w = ob->worker;
    ob->worker = NULL;
    if (w) {
        __atomic_store_n(&w->stop, 1, __ATOMIC_RELEASE);
        curl_multi_wakeup(w->multi);
    }
    pthread_mutex_unlock(&ob->mu);
    if (w == NULL)
        return;
    pthread_join(w->thread, NULL);
    /* Transfers still in flight are abandoned: their leases make them due again. */
    for (size_t i = 0; i < w->cfg.concurrency; i++)
        if (w->slots[i]) {
            curl_multi_remove_handle(w->multi, w->slots[i]->easy);
            inflight_free(w->slots[i]);
        }
    curl_multi_cleanup(w->multi);
    cd_free(w->slots);
    cd_free(w);
}

void cd_outbox_worker_wake(struct cd_outbox *ob)
{
    pthread_mutex_lock(&ob->mu);
    if (ob->worker) {
        __atomic_store_n(&ob->worker->woken, 1, __ATOMIC_RELEASE);
        curl_multi_wakeup(ob->worker->multi);
    }
    pthread_mutex_unlock(&ob->mu);
}

void cd_outbox_stats(struct cd_outbox *ob, struct cd_outbox_stats *out)
{
    memset(out, 0, sizeof *out);
    out->delivered = __atomic_load_n(&ob->delivered, __ATOMIC_RELAXED);
    out->failed = __atomic_load_n(&ob->failed, __ATOMIC_RELAXED);
    out->dead_lettered = __atomic_load_n(&ob->dead_lettered, __ATOMIC_RELAXED);
    out->queued = __atomic_load_n(&ob->queued, __ATOMIC_RELAXED);
    out->dead = __atomic_load_n(&ob->dead, __ATOMIC_RELAXED);
    for (size_t i = 0; i < CD_OUTBOX_LATENCY_BUCKETS; i++)
        out->latency_hist[i] = __atomic_load_n(&ob->latency_hist[i], __ATOMIC_RELAXED);
    out->latency_sum = (double)__atomic_load_n(&ob->latency_sum_ms, __ATOMIC_RELAXED) / 1000.0;
    pthread_mutex_lock(&ob->mu);
    out->running = ob->worker != NULL;
    pthread_mutex_unlock(&ob->mu);
}
