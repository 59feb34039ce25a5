/* Decisions: one customer, many at once, and the bulk audience filter, read from the projection
 * without its lock (the seqlock's reader side), falling back to the customer's record and, under
 * the lock, to the full probe; the merge group's applicable state; topics and quiet hours; and the
 * event id a decision names. */
#include <assert.h>
#include <string.h>
#include "proj_int.h"

/* "cev_" and the 26 digits of an event's 128 bits, terminated: what every caller that shows
 * a decision's event calls (an HTTP answer, a bulk line, an audit record). The digits are
 * written in place, with the encoder's scratch bytes after them. */
static inline void event_id_str(const uint8_t raw[16], char out[CD_ID_MAX])
{
    _Static_assert(CD_ID_MAX >= 4 + CD_ID_DIGITS_ROOM, "an event id and the scratch bytes fit");
    memcpy(out, "cev_", 4);
    cd_id_digits(raw, out + 4);
    out[4 + CD_ID_DIGITS] = '\0';
}

const char *cd_consent_decision_event_id(const struct cd_consent_decision *d,
                                         char out[CD_ID_MAX])
{
    if (d->has_event && d->event)
        event_id_str(d->event, out);
    else
        out[0] = '\0';
    return out;
}

static const struct {
    bool allow;
    const char *reason, *basis;
} verdicts[] = {
    [V_NOT_REQUIRED] = {true, "not_required", NULL},
    [V_UNKNOWN] = {false, "unknown_customer", "none"},
    [V_CONSENT_GIVEN] = {true, "consent_given", "consent"},
    [V_IMPLIED] = {true, "consent_given", "implied_consent"},
    [V_NOT_OPTED_OUT] = {true, "not_opted_out", "legitimate_interest"},
    [V_NO_CONSENT] = {false, "no_consent", "none"},
    [V_OPTED_OUT] = {false, "opted_out", "none"},
    [V_GPC] = {false, "gpc", "none"},
    [V_WITHDRAWN] = {false, "withdrawn", "none"},
    [V_REFUSED] = {false, "refused", "none"},
    [V_EXPIRED] = {false, "expired", "none"},
    [V_INVALIDATED] = {false, "invalidated", "none"},
    [V_STALE] = {false, "stale_notice", "none"},
    [V_TOPIC] = {false, "topic_opted_out", "none"},
    [V_QUIET] = {false, "quiet_hours", "none"},
    [V_RESTRICTED] = {false, "restricted", "none"},
};

/* ---- decisions ---- */

/* Minutes since local midnight of instant ms in tz (NULL: UTC). */
static int local_minute(const struct cd_tz *tz, int64_t ms)
{
    int64_t sec = ms / 1000;

    if (tz)
        sec += cd_tz_offset(tz, sec);
    return (int)(((sec / 60) % 1440 + 1440) % 1440);
}

enum cd_err cd_consent_local_minutes(struct cd_str tzname, int64_t utc_ms, int *minutes)
{
    struct cd_tz *tz = NULL;
    enum cd_err err = cd_tz_load(tzname, &tz);

    if (err != CD_OK)
        return err;
    *minutes = local_minute(tz, utc_ms);
    cd_tz_free(tz);
    return CD_OK;
}

/* The checks after a verdict that allows: topic opt-outs and quiet hours, from the record. */
static enum verdict prefs_verdict(const struct cd_consent *c, const struct cd__cust *cu,
                                  unsigned channel, int topic, int64_t now_ms, enum verdict v)
{
    if (topic >= 0 && (cu->topics_out >> topic) & 1u)
        return V_TOPIC;
    if (channel != CD_CONSENT_CHANNEL_ANY && cu->qh_start) {
        int m = local_minute(cu->tz && cu->tz <= atomic_load(&c->ntz) ? c->tz[cu->tz - 1] : NULL,
                             now_ms);
        int a = cu->qh_start - 1, b = cu->qh_end - 1;
        bool quiet = a <= b ? (m >= a && m < b) : (m >= a || m < b);
        if (quiet)
            return V_QUIET;
    }
    return v;
}

/* ---- merge groups ---- */

/* The path from cu up to its group's root (read, bounded): each record's idx and the time of
 * the merge that took it up a level. Returns the number of records on the path. */
static unsigned group_path(const struct cd__proj *p, const struct cd__cust *cu,
                           uint32_t idx[CD__PROJ_MAX_DEPTH], int64_t at[CD__PROJ_MAX_DEPTH])
{
    unsigned n = 0;

    while (cu && n < CD__PROJ_MAX_DEPTH) {
        idx[n] = cu->idx;
        if (!(cu->rflags & CD__RF_MERGED))
            return n + 1;
        const struct cd__merge *e = cd__proj_merge_entry(p, cu->mg);
        if (e == NULL)
            break;
        at[n++] = e->at;
        cu = record(p, e->parent);
    }
    return n;
}

/* When the records x and y became one customer: the later of the two merges that brought
 * each one's branch to their lowest common ancestor (merge times grow toward the root). No
 * common ancestor found (a torn read) counts as joined now, which only ever denies. */
static int64_t joined_at(const struct cd__proj *p, const struct cd__cust *x,
                         const struct cd__cust *y)
{
    uint32_t xi[CD__PROJ_MAX_DEPTH], yi[CD__PROJ_MAX_DEPTH];
    int64_t xa[CD__PROJ_MAX_DEPTH], ya[CD__PROJ_MAX_DEPTH];
    unsigned nx = group_path(p, x, xi, xa), ny = group_path(p, y, yi, ya);

    for (unsigned i = 0; i < nx; i++)
        for (unsigned j = 0; j < ny; j++)
            if (xi[i] == yi[j]) {
                int64_t tx = i ? xa[i - 1] : INT64_MIN, ty = j ? ya[j - 1] : INT64_MIN;
                return tx > ty ? tx : ty;
            }
    return INT64_MAX;
}

/* The state a decision for the group of root rests on, for (purpose, channel) (read): of each
 * member's applicable state, the newest, except that consent given on one side before it was
 * joined to a side that had withdrawn or refused does not count — a withdrawal on either side
 * before the merge wins; a choice made after the merge decides as usual. */
static const struct cd__state *group_applicable(const struct cd__proj *p,
                                                const struct cd__cust *root, unsigned purpose,
                                                unsigned channel)
{
    const struct cd__state *st[CD__PROJ_MAX_GROUP], *best = NULL;
    const struct cd__cust *side[CD__PROJ_MAX_GROUP], *m = root;
    const struct cd__merge *e = NULL;
    unsigned n = 0;

    for (unsigned walked = 0; m && walked < CD__PROJ_MAX_GROUP; walked++) {
        const struct cd__state *s = cd__proj_applicable(p, m, purpose, channel);
        if (s) {
            st[n] = s;
            side[n++] = m;
        }
        e = cd__proj_merge_entry(p, e ? e->next : root->mg);
        m = e ? record(p, e->child) : NULL;
    }
    for (unsigned i = 0; i < n; i++) {
        bool overruled = false;
        for (unsigned k = 0; k < n && st[i]->state == CD_CONSENT_GIVEN && !overruled; k++)
            overruled = side[k] != side[i] &&
                        (st[k]->state == CD_CONSENT_WITHDRAWN ||
                         st[k]->state == CD_CONSENT_REFUSED) &&
                        st[i]->at < joined_at(p, side[i], side[k]);
        if (!overruled && (best == NULL || newer(p, st[i]->at, ev_bits(p, st[i]->ev), best)))
            best = st[i];
    }
    return best;
}

/* A decision from the record (NULL: unknown): several states for the purpose (channels,
 * overflow), an expiry or a notice, quiet hours or topics that may apply, a restriction, or a
 * merge (the group's root decides, from every member's states). *d's event and expiry are
 * preset to none; its regime is set here. A torn read under the seqlock gives some verdict,
 * which the caller discards. Out of line: the fast path stays short. */
static __attribute__((noinline)) enum verdict decide_rec(const struct cd_consent *c,
                                                         const struct cd__cust *cu,
                                                         unsigned purpose, unsigned channel,
                                                         int topic, int64_t now_ms,
                                                         struct cd_consent_decision *d)
{
    if (cu == NULL)
        return c->rules.basis[purpose] ? V_NOT_REQUIRED : V_UNKNOWN;
    if ((cu = cd__proj_root(&c->proj, cu)) == NULL)
        return V_UNKNOWN;
    const struct cd__consent_juris *j =
        &c->rules.j[cu->juris < CD__CONSENT_MAX_JURIS ? cu->juris : c->rules.def];
    d->regime = j->name;
    /* A restriction (GDPR Art. 18) leaves only the purposes the policy names. */
    if ((cu->rflags & CD__RF_RESTRICTED) && !((c->restriction_allows >> purpose) & 1u))
        return V_RESTRICTED;
    if (c->rules.basis[purpose])
        return V_NOT_REQUIRED;
    const struct cd__state *s = (cu->rflags & CD__RF_GROUP)
                                    ? group_applicable(&c->proj, cu, purpose, channel)
                                    : cd__proj_applicable(&c->proj, cu, purpose, channel);
    if (s) {
        d->event = ev_bits(&c->proj, s->ev);
        d->has_event = d->event != NULL;
        d->expires_at = s->expires;
    }
    enum verdict v = state_verdict(c, j->mode[purpose] == CD__MODE_OPT_OUT, s, now_ms);
    return verdicts[v].allow ? prefs_verdict(c, cu, channel, topic, now_ms, v) : v;
}

/* The verdict for the customer of slot sl (NULL: unknown) from the slot alone, false when the
 * record must be read (pv says so, or fmask names quiet hours or topics the customer has);
 * writes the event, expiry and regime of *d. Reads only; every index is checked, so a torn
 * read under the seqlock is harmless (the caller retries and every member of *d is written
 * again). Few instructions wait for the slot's cache miss, and its branches are
 * predictable: consecutive decisions overlap their misses only while the work that waits
 * fits in the core's scheduler and reorder window. */
static ALWAYS_INLINE bool slot_verdict(const struct cd_consent *c, const struct cd__slot *sl,
                                       unsigned purpose, unsigned fmask, enum verdict *v,
                                       struct cd_consent_decision *d)
{
    const struct cd__consent_rules *r = &c->rules;
    const uint8_t *ev = NULL;

    if (sl == NULL) {
        d->has_event = false;
        d->event = NULL;
        d->expires_at = 0;
        d->regime = r->j[r->def].name;
        *v = r->basis[purpose] ? V_NOT_REQUIRED : V_UNKNOWN;
        return true;
    }
    unsigned pv = sl->pv[purpose], k = pv >> CD__PV_K_SHIFT;
    if ((pv & CD__PV_VERDICT) == V_RECORD || (sl->flags & fmask))
        return false;
    if (k < CD__CUST_INLINE)
        ev = ev_ptr(&c->proj, sl->ev[k]);
    /* Each member once: stores wait in the queue until the decision retires. */
    _Static_assert((CD__CONSENT_MAX_JURIS & (CD__CONSENT_MAX_JURIS - 1)) == 0,
                   "a mask keeps a torn jurisdiction index in range");
    d->regime = r->j[sl->juris & (CD__CONSENT_MAX_JURIS - 1)].name;
    d->event = ev;
    d->has_event = ev != NULL;
    d->expires_at = 0;
    *v = (enum verdict)(pv & CD__PV_VERDICT);
    return true;
}

/* The flags of a slot that make a decision read the record. */
static ALWAYS_INLINE unsigned record_flags(unsigned channel, bool topic)
{
    return (channel != CD_CONSENT_CHANNEL_ANY ? CD__HF_QH : 0) | (topic ? CD__HF_TOPICS : 0) |
           CD__HF_RECORD;
}

/* The verdict for the customer of slot sl (NULL: unknown), from the slot or the record. */
static ALWAYS_INLINE enum verdict decide_slot(const struct cd_consent *c,
                                              const struct cd__slot *sl, unsigned purpose,
                                              unsigned channel, int topic, int64_t now_ms,
                                              struct cd_consent_decision *d)
{
    enum verdict v;

    if (slot_verdict(c, sl, purpose, record_flags(channel, topic >= 0), &v, d))
        return v;
    d->has_event = false;
    d->event = NULL;
    d->expires_at = 0;
    return decide_rec(c, record(&c->proj, sl->rec), purpose, channel, topic, now_ms, d);
}

/* Sets allow, reason and basis of *d from v. */
static ALWAYS_INLINE void set_verdict(const struct cd_consent *c, enum verdict v,
                                      unsigned purpose, struct cd_consent_decision *d)
{
    d->allow = verdicts[v].allow;
    d->reason = verdicts[v].reason;
    d->basis = v == V_NOT_REQUIRED ? c->rules.basis[purpose] : verdicts[v].basis;
}

/* The reader side of the seqlock: the sequence before the read (even: no change in progress,
 * spinning briefly while odd), and whether it is unchanged after it. */
enum { SEQ_TRIES = 4 };

static ALWAYS_INLINE bool seq_begin(struct cd_consent *c, unsigned *seq)
{
    for (int spin = 0; spin < 256; spin++) {
        *seq = atomic_load_explicit(&c->seq, memory_order_acquire);
        if ((*seq & 1) == 0)
            return true;
    }
    return false;
}

static ALWAYS_INLINE bool seq_valid(struct cd_consent *c, unsigned seq)
{
    atomic_thread_fence(memory_order_acquire);
    return atomic_load_explicit(&c->seq, memory_order_relaxed) == seq;
}

/* The slot for key (NULL: none or not an id) in the current table (read). */
static ALWAYS_INLINE const struct cd__slot *lookup(const struct cd__proj *p, const char *key,
                                                   uint64_t h)
{
    const struct cd__table *t = atomic_load_explicit(&p->table, memory_order_acquire);

    if (key == NULL || t == NULL)
        return NULL;
    return probe(t, key, home(h, t->n));
}

/* A long change (a growth, a rebuild) is in progress: wait for it under the lock. Out of
 * line, so that the single decision's fast path needs fewer registers (each one saved and
 * restored is a store and a load held until the decision retires). */
static __attribute__((noinline)) void decide_locked(struct cd_consent *c, const char *key,
                                                    uint64_t h, unsigned purpose,
                                                    unsigned channel, struct cd_str topic,
                                                    int64_t now_ms, struct cd_consent_decision *d)
{
    pthread_rwlock_rdlock(&c->lock);
    int tb = topic.len ? cd__consent_topic(c, topic, false) : -1;
    enum verdict v = decide_slot(c, lookup(&c->proj, key, h), purpose, channel, tb, now_ms, d);
    pthread_rwlock_unlock(&c->lock);
    set_verdict(c, v, purpose, d);
}

/* One decision, with retries, the full probe and the record when the slot sends there (the
 * single decisions that decide_fast leaves). */
static ALWAYS_INLINE void decide_one(struct cd_consent *c, struct cd_str id, unsigned purpose,
                                     unsigned channel, struct cd_str topic, int64_t now_ms,
                                     struct cd_consent_decision *d)
{
    const char *key = id_key(id);
    uint64_t h = key ? key_hash(key) : 0;
    unsigned seq;

    for (int tries = 0; tries < SEQ_TRIES; tries++) {
        if (!seq_begin(c, &seq))
            continue;
        int tb = topic.len ? cd__consent_topic(c, topic, false) : -1;
        enum verdict v = decide_slot(c, lookup(&c->proj, key, h), purpose, channel, tb, now_ms, d);
        if (seq_valid(c, seq)) {
            set_verdict(c, v, purpose, d);
            return;
        }
    }
    decide_locked(c, key, h, purpose, channel, topic, now_ms, d);
}

/* The fast path of a single decision, for the usual customer: one try, no call, no record,
 * a probe of the slots near the home one only. Returns false, with *d perhaps half written,
 * when it cannot decide alone (the slot sends it to the record, a change is in progress, the
 * key is not near its home): decide_one then decides again from the start. Kept free of
 * calls and loops that hold values: each value kept is a register saved and restored, a
 * store and a load held in the queues until the decision retires, and consecutive decisions
 * overlap their cache misses only while the work between them fits in the core's
 * scheduler and reorder window. */
static ALWAYS_INLINE bool decide_fast(struct cd_consent *c, struct cd_str id, unsigned purpose,
                                      unsigned channel, struct cd_str topic,
                                      struct cd_consent_decision *d)
{
    const char *key = id_key(id);
    unsigned seq = atomic_load_explicit(&c->seq, memory_order_acquire);
    const struct cd__table *t = atomic_load_explicit(&c->proj.table, memory_order_acquire);

    if (key == NULL || (seq & 1) || t == NULL)
        return false;
    const struct cd__slot *sl = probe_near(t, key, home(key_hash(key), t->n));
    enum verdict v;

    /* Unknown here may be found further: the slow path decides it. */
    if (sl == NULL || !slot_verdict(c, sl, purpose, record_flags(channel, topic.len != 0), &v, d))
        return false;
    if (!seq_valid(c, seq))
        return false;
    set_verdict(c, v, purpose, d);
    return true;
}

/* Every other single decision. Returns CD_OK, for the public functions to return. */
static __attribute__((noinline)) enum cd_err decide_slow(struct cd_consent *c, struct cd_str id,
                                                         unsigned purpose, unsigned channel,
                                                         struct cd_str topic, int64_t now_ms,
                                                         struct cd_consent_decision *d)
{
    decide_one(c, id, purpose, channel, topic, now_ms, d);
    return CD_OK;
}

/* Decides a batch of up to BATCH customers: hashes every id and loads its home slot, then
 * probes and decides, so the cache misses of the batch overlap instead of forming one chain
 * per customer. Caller validates the read. */
enum { BATCH = 32 };

static void decide_batch(struct cd_consent *c, const char *const *keys, const uint64_t *h,
                         size_t n, unsigned purpose, unsigned channel, int64_t now_ms,
                         bool in_order, struct cd_consent_decision *d)
{
    const struct cd__table *t = atomic_load_explicit(&c->proj.table, memory_order_acquire);

    /* Slots in address order (the walk, which has just read them) are cached or on their
     * way: asking for them again only cost time there. */
    for (size_t i = 0; i < n && !in_order; i++)
        if (keys[i] && t)
            touch_slot(t, home(h[i], t->n));
    for (size_t i = 0; i < n; i++) {
        const struct cd__slot *sl = keys[i] && t ? probe(t, keys[i], home(h[i], t->n)) : NULL;
        set_verdict(c, decide_slot(c, sl, purpose, channel, -1, now_ms, &d[i]), purpose, &d[i]);
    }
}

static void decide_ids(struct cd_consent *c, const struct cd_str *ids, size_t n,
                       unsigned purpose, unsigned channel, int64_t now_ms, bool in_order,
                       struct cd_consent_decision *d)
{
    const char *keys[BATCH];
    uint64_t h[BATCH];

    for (size_t start = 0; start < n; start += BATCH) {
        size_t k = n - start < BATCH ? n - start : BATCH;
        unsigned seq;
        bool done = false;
        for (size_t i = 0; i < k; i++) {
            keys[i] = id_key(ids[start + i]);
            h[i] = keys[i] ? key_hash(keys[i]) : 0;
        }
        for (int tries = 0; tries < SEQ_TRIES && !done; tries++) {
            if (!seq_begin(c, &seq))
                continue;
            decide_batch(c, keys, h, k, purpose, channel, now_ms, in_order, d + start);
            done = seq_valid(c, seq);
        }
        if (!done) {
            /* A long change (a growth, a rebuild) is in progress: wait for it under the lock. */
            pthread_rwlock_rdlock(&c->lock);
            decide_batch(c, keys, h, k, purpose, channel, now_ms, in_order, d + start);
            pthread_rwlock_unlock(&c->lock);
        }
    }
}

static bool in_range(enum cd_purpose purpose, enum cd_consent_channel channel)
{
    return (unsigned)purpose < CD_PURPOSE__COUNT && (unsigned)channel < CD_CONSENT_CHANNEL__COUNT;
}

enum cd_err cd_consent_decide_topic(struct cd_consent *c, struct cd_str customer_id,
                                    enum cd_purpose purpose, enum cd_consent_channel channel,
                                    struct cd_str topic, int64_t now_ms,
                                    struct cd_consent_decision *d)
{
    if (!in_range(purpose, channel))
        return cd_err_set(CD_ERR_INVALID, "purpose or channel out of range");
    if (decide_fast(c, customer_id, purpose, channel, topic, d))
        return CD_OK;
    return decide_slow(c, customer_id, purpose, channel, topic, now_ms, d);
}

enum cd_err cd_consent_decide(struct cd_consent *c, struct cd_str customer_id,
                              enum cd_purpose purpose, enum cd_consent_channel channel,
                              int64_t now_ms, struct cd_consent_decision *d)
{
    if (!in_range(purpose, channel))
        return cd_err_set(CD_ERR_INVALID, "purpose or channel out of range");
    if (decide_fast(c, customer_id, purpose, channel, CD_STR_NULL, d))
        return CD_OK;
    return decide_slow(c, customer_id, purpose, channel, CD_STR_NULL, now_ms, d);
}

enum cd_err cd_consent_decide_many(struct cd_consent *c, const struct cd_str *ids, size_t n,
                                   enum cd_purpose purpose, enum cd_consent_channel channel,
                                   int64_t now_ms, struct cd_consent_decision *out)
{
    if (!in_range(purpose, channel))
        return cd_err_set(CD_ERR_INVALID, "purpose or channel out of range");
    decide_ids(c, ids, n, purpose, channel, now_ms, false, out);
    return CD_OK;
}

enum cd_err cd_consent_filter(struct cd_consent *c, const struct cd_str *ids, size_t n,
                              enum cd_purpose purpose, enum cd_consent_channel channel,
                              int64_t now_ms, cd_consent_emit_fn emit, void *ctx)
{
    enum { CHUNK = 4096 };
    struct cd_consent_decision *dec = NULL;
    char(*idbuf)[CD_ID_MAX] = NULL;
    struct cd_str *views = NULL;
    uint8_t *seen = NULL; /* walk of every customer: bit per idx already emitted */
    size_t nseen = 0, pos = 0;
    const struct cd__table *wt = NULL;
    enum cd_err err = CD_OK;

    if (!in_range(purpose, channel))
        return cd_err_set(CD_ERR_INVALID, "purpose or channel out of range");
    if (ids == NULL) {
        pthread_rwlock_rdlock(&c->lock);
        nseen = atomic_load(&c->proj.ncust);
        pthread_rwlock_unlock(&c->lock);
    }
    if ((dec = cd_malloc(CHUNK * sizeof *dec)) == NULL ||
        (ids == NULL && (idbuf = cd_malloc(CHUNK * sizeof *idbuf)) == NULL) ||
        (ids == NULL && (views = cd_malloc(CHUNK * sizeof *views)) == NULL) ||
        (ids == NULL && (seen = cd_calloc(nseen / 8 + 1, 1)) == NULL)) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    /* Decide a chunk (batched, lock-free), then emit it: a slow consumer never holds up
     * writers. Every customer is walked in table order, so the records are read in address
     * order; if the table grows during the walk, the walk starts over in the new table and
     * skips those already emitted (the bitmap, by arrival index). Customers added during the
     * walk are not seen; none is seen twice. */
    for (size_t start = 0;; start += CHUNK) {
        size_t k = 0;
        const struct cd_str *chunk = ids ? ids + start : views;
        if (ids) {
            k = n - start < CHUNK ? n - start : CHUNK;
        } else {
            pthread_rwlock_rdlock(&c->lock);
            const struct cd__table *t = atomic_load(&c->proj.table);
            if (t != wt) {
                wt = t;
                pos = 0;
            }
            for (; t && pos < t->n && k < CHUNK; pos++) {
                const struct cd__slot *sl = &t->r[pos];
                uint32_t i = sl->rec;
                /* A merged id is its survivor, listed once under the survivor's id. */
                if (sl->key[0] == '\0' || (sl->flags & CD__HF_MERGED) || i >= nseen ||
                    (seen[i / 8] >> (i % 8)) & 1)
                    continue;
                seen[i / 8] |= (uint8_t)(1u << (i % 8));
                memcpy(idbuf[k], "cus_", 4);
                memcpy(idbuf[k] + 4, sl->key, CD__KEY_LEN);
                idbuf[k][4 + CD__KEY_LEN] = '\0';
                views[k] = (struct cd_str){idbuf[k], 4 + CD__KEY_LEN};
                k++;
            }
            pthread_rwlock_unlock(&c->lock);
        }
        decide_ids(c, chunk, k, purpose, channel, now_ms, ids == NULL, dec);
        for (size_t i = 0; i < k; i++)
            if ((err = emit(ctx, chunk[i], &dec[i])) != CD_OK)
                goto out;
        if (k < CHUNK)
            break;
    }
out:
    cd_free(dec);
    cd_free(idbuf);
    cd_free(views);
    cd_free(seen);
    return err;
}

bool cd_consent_quiet_hours(struct cd_consent *c, struct cd_str customer_id,
                            enum cd_consent_channel channel, int64_t now_ms)
{
    const char *key = id_key(customer_id);
    bool quiet = false;

    if (key == NULL || channel == CD_CONSENT_CHANNEL_ANY || channel >= CD_CONSENT_CHANNEL__COUNT)
        return false;
    /* Under the lock, as other readers of the record do: no seqlock retries for a rare call. */
    pthread_rwlock_rdlock(&c->lock);
    const struct cd__cust *cu = cd__proj_find_key(&c->proj, key);
    quiet = cu && prefs_verdict(c, cu, channel, -1, now_ms, V_NOT_REQUIRED) == V_QUIET;
    pthread_rwlock_unlock(&c->lock);
    return quiet;
}
