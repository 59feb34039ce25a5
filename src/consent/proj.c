/* The in-memory projection every decision reads: customers in an open-addressing hash table
 * keyed by the 128 bits of their id (linear probing, load <= 1/2), each with a chain of
 * per-purpose-and-channel states in one array (built in customer order at start, so a
 * customer's states are adjacent). Writers hold c->lock for writing only to apply an event
 * that already committed; decisions hold it for reading. Also: the rebuild from the tables,
 * the time zone and topic dictionaries, and the refresher of customer attributes. */
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include "consent_int.h"

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* Crockford base32 digit value + 1, 0 for anything else (upper case only, as cd_id_new
 * writes). A table: this runs on every decision. */
static const uint8_t crock_tab[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,
    ['7'] = 8,  ['8'] = 9,  ['9'] = 10, ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14,
    ['E'] = 15, ['F'] = 16, ['G'] = 17, ['H'] = 18, ['J'] = 19, ['K'] = 20, ['M'] = 21,
    ['N'] = 22, ['P'] = 23, ['Q'] = 24, ['R'] = 25, ['S'] = 26, ['T'] = 27, ['V'] = 28,
    ['W'] = 29, ['X'] = 30, ['Y'] = 31, ['Z'] = 32,
};

bool cd__consent_id_bits(struct cd_str s, const char *prefix, uint8_t out[16])
{
    size_t pl = strlen(prefix);
    uint64_t hi = 0, lo = 0;

    if (s.len != pl + 27 || memcmp(s.p, prefix, pl) != 0 || s.p[pl] != '_')
        return false;
    const char *o = s.p + pl + 1;
    /* The inverse of cd_id_new: 26 digits of 5 bits = 130 bits, the leading 2 bits zero. */
    for (int i = 0; i < 26; i++) {
        int v = crock_tab[(unsigned char)o[i]] - 1;
        if (v < 0 || (i == 0 && v > 7))
            return false;
        hi = hi << 5 | lo >> 59;
        lo = lo << 5 | (uint64_t)v;
    }
    for (int i = 0; i < 8; i++) {
        out[i] = (uint8_t)(hi >> (56 - 8 * i));
        out[8 + i] = (uint8_t)(lo >> (56 - 8 * i));
    }
    return true;
}

void cd__consent_id_str(const uint8_t raw[16], const char *prefix, char out[CD_ID_MAX])
{
    size_t pl = strlen(prefix);
    uint64_t hi = 0, lo = 0;

    for (int i = 0; i < 8; i++) {
        hi = hi << 8 | raw[i];
        lo = lo << 8 | raw[8 + i];
    }
    memcpy(out, prefix, pl);
    out[pl] = '_';
    char *o = out + pl + 1;
    /* 26 digits of 5 bits from the right; the top digit holds the last 3 bits. */
    for (int i = 25; i >= 0; i--) {
        o[i] = crockford[lo & 31];
        lo = lo >> 5 | hi << 59;
        hi >>= 5;
    }
    o[26] = '\0';
}

/* ---- the hash table ---- */

static uint64_t key_hash(const uint8_t k[16])
{
    uint64_t a, b;

    memcpy(&a, k, 8);
    memcpy(&b, k + 8, 8);
    /* The low half is random; the high half is time. Mix both (splitmix64 finaliser). */
    uint64_t h = a * 0x9E3779B97F4A7C15ull ^ b;
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 29;
    return h;
}

/* 2 MiB: the transparent huge page size on x86-64. */
#define HUGE_ALIGN ((size_t)2 << 20)

/* n bytes aligned to 2 MiB (n a multiple of 2 MiB) or to 64 bytes (smaller n), zeroed, with
 * huge pages requested. *raw receives what to cd_free. The slack before and after the aligned
 * block is never touched, so it costs address space, not memory. */
static void *alloc_aligned(size_t n, void **raw)
{
    size_t al = n >= HUGE_ALIGN ? HUGE_ALIGN : 64;
    char *p = cd_malloc(n + al);

    if ((*raw = p) == NULL)
        return NULL;
    char *q = (char *)(((uintptr_t)p + al - 1) & ~(uintptr_t)(al - 1));
#ifdef MADV_HUGEPAGE
    if (al == HUGE_ALIGN)
        madvise(q, n, MADV_HUGEPAGE);
#endif
    memset(q, 0, n);
    return q;
}

static struct cd__slots *slots_new(size_t n)
{
    struct cd__slots *t = cd_calloc(1, sizeof *t);

    if (t == NULL)
        return NULL;
    size_t bytes = n * sizeof(uint64_t);
    if (bytes >= HUGE_ALIGN)
        bytes = (bytes + HUGE_ALIGN - 1) & ~(HUGE_ALIGN - 1);
    if ((t->s = alloc_aligned(bytes, &t->raw)) == NULL) {
        cd_free(t);
        return NULL;
    }
    t->mask = n - 1;
    return t;
}

static void slots_free(struct cd__slots *t)
{
    while (t) {
        struct cd__slots *next = t->retired;
        cd_free(t->raw);
        cd_free(t);
        t = next;
    }
}

void cd__proj_free(struct cd__proj *p)
{
    for (size_t i = 0; i < p->npages; i++)
        cd_free(p->page_raw[i]);
    for (size_t i = 0; i < p->nopages; i++)
        cd_free(p->opage[i]);
    cd_free(p->page);
    cd_free(p->page_raw);
    cd_free(p->opage);
    slots_free(atomic_load(&p->slots));
    memset(p, 0, sizeof *p);
}

struct cd__cust *cd__proj_cust(const struct cd__proj *p, size_t i)
{
    struct cd__cust *const *dir = p->page;
    size_t pg = i / CD__PROJ_PAGE;

    /* Checked, not trusted: a seqlock reader may hold an index from a torn read. */
    if (dir == NULL || pg >= CD__PROJ_MAX_PAGES || dir[pg] == NULL)
        return NULL;
    return &dir[pg][i % CD__PROJ_PAGE];
}

static const struct cd__ostate *ostate(const struct cd__proj *p, uint32_t i1)
{
    struct cd__ostate *const *dir = p->opage;
    size_t i = (size_t)i1 - 1, pg = i / CD__PROJ_OPAGE;

    if (i1 == 0 || dir == NULL || pg >= CD__PROJ_MAX_OPAGES || dir[pg] == NULL)
        return NULL;
    return &dir[pg][i % CD__PROJ_OPAGE];
}

static struct cd__cust *find_in(const struct cd__proj *p, const struct cd__slots *t,
                                const uint8_t key[16], uint64_t h)
{
    uint64_t tag = h >> 32 << 32;

    if (t == NULL)
        return NULL;
    /* The slot carries 32 bits of the hash: the customer record is touched only on a match.
     * At most mask + 1 probes, so even a torn table cannot loop. */
    for (size_t i = h & t->mask, k = 0; k <= t->mask; i = (i + 1) & t->mask, k++) {
        uint64_t s = t->s[i];
        if (s == 0)
            return NULL;
        if ((s & ~0xffffffffull) != tag)
            continue;
        struct cd__cust *cu = cd__proj_cust(p, (uint32_t)s - 1);
        if (cu && memcmp(cu->key, key, 16) == 0)
            return cu;
    }
    return NULL;
}

struct cd__cust *cd__proj_find(const struct cd__proj *p, const uint8_t key[16])
{
    return find_in(p, atomic_load_explicit(&p->slots, memory_order_acquire), key,
                   key_hash(key));
}

static void slot_put(struct cd__slots *t, uint64_t h, size_t idx)
{
    for (size_t i = h & t->mask;; i = (i + 1) & t->mask)
        if (t->s[i] == 0) {
            t->s[i] = (h >> 32 << 32) | ((uint64_t)idx + 1);
            return;
        }
}

static enum cd_err grow_slots(struct cd__proj *p)
{
    struct cd__slots *old = atomic_load(&p->slots);
    size_t n = old ? (old->mask + 1) * 2 : 1024;
    struct cd__slots *t = slots_new(n);

    if (t == NULL)
        return CD_ERR_NOMEM;
    for (size_t c = 0; c < p->ncust; c++)
        slot_put(t, key_hash(cd__proj_cust(p, c)->key), c);
    /* Readers may still probe the old table: keep it until the projection is freed (the
     * retired tables add up to less than the live one). */
    if (p->shared) {
        t->retired = old;
    } else {
        slots_free(old);
    }
    atomic_store_explicit(&p->slots, t, memory_order_release);
    return CD_OK;
}

enum cd_err cd__proj_upsert(struct cd__proj *p, const uint8_t key[16], struct cd__cust **out)
{
    struct cd__cust *cu = cd__proj_find(p, key);
    struct cd__slots *t = atomic_load(&p->slots);
    size_t n = p->ncust;
    enum cd_err err;

    if (cu) {
        *out = cu;
        return CD_OK;
    }
    if (t == NULL || (n + 1) * 2 > t->mask + 1) {
        if ((err = grow_slots(p)) != CD_OK)
            return err;
        t = atomic_load(&p->slots);
    }
    if (p->page == NULL) {
        if ((p->page = cd_calloc(CD__PROJ_MAX_PAGES, sizeof *p->page)) == NULL ||
            (p->page_raw = cd_calloc(CD__PROJ_MAX_PAGES, sizeof *p->page_raw)) == NULL)
            return CD_ERR_NOMEM;
    }
    if (n / CD__PROJ_PAGE >= p->npages) {
        if (p->npages == CD__PROJ_MAX_PAGES)
            return cd_err_set(CD_ERR_TOO_BIG, "too many customers in the consent projection");
        struct cd__cust *pg = alloc_aligned(CD__PROJ_PAGE * sizeof *pg, &p->page_raw[p->npages]);
        if (pg == NULL)
            return CD_ERR_NOMEM;
        p->page[p->npages++] = pg;
    }
    cu = cd__proj_cust(p, n);
    memset(cu, 0, sizeof *cu);
    memcpy(cu->key, key, 16);
    slot_put(t, key_hash(key), n);
    atomic_store_explicit(&p->ncust, n + 1, memory_order_release);
    *out = cu;
    return CD_OK;
}

const struct cd__cstate *cd__proj_next(const struct cd__proj *p, const struct cd__cust *cu,
                                       struct cd__proj_it *it)
{
    unsigned n = cu->nst < CD__CUST_INLINE ? cu->nst : CD__CUST_INLINE;

    if (!it->in_more) {
        if (it->k < n)
            return &cu->st[it->k++];
        it->in_more = true;
        it->more = cu->more;
    }
    if (it->more == 0 || it->k >= CD__PROJ_MAX_STATES)
        return NULL;
    const struct cd__ostate *o = ostate(p, it->more);
    if (o == NULL)
        return NULL;
    it->k++;
    it->more = o->next;
    return &o->s;
}

const struct cd__cstate *cd__proj_state(const struct cd__proj *p, const struct cd__cust *cu,
                                        unsigned purpose, unsigned channel)
{
    struct cd__proj_it it = {0};

    for (const struct cd__cstate *s; (s = cd__proj_next(p, cu, &it)) != NULL;)
        if (s->purpose == purpose && s->channel == channel)
            return s;
    return NULL;
}

static bool newer(const struct cd__cstate *a, const struct cd__cstate *b)
{
    return a->at > b->at || (a->at == b->at && memcmp(a->event, b->event, 16) > 0);
}

const struct cd__cstate *cd__proj_applicable(const struct cd__proj *p, const struct cd__cust *cu,
                                             unsigned purpose, unsigned channel)
{
    const struct cd__cstate *best = NULL;
    struct cd__proj_it it = {0};

    /* The newest event wins between the channel's own state and the "*" state: "withdraw all"
     * after "give email" denies email; "give email" after "withdraw all" allows email only. */
    for (const struct cd__cstate *s; (s = cd__proj_next(p, cu, &it)) != NULL;) {
        if (s->purpose != purpose ||
            (s->channel != channel && s->channel != CD_CONSENT_CHANNEL_ANY))
            continue;
        if (best == NULL || newer(s, best))
            best = s;
    }
    return best;
}

enum cd_err cd__proj_apply(struct cd__proj *p, struct cd__cust *cu, const struct cd__cstate *s)
{
    /* The projection's own states: writable under the write lock. */
    struct cd__cstate *o = (struct cd__cstate *)cd__proj_state(p, cu, s->purpose, s->channel);

    if (o) {
        /* An imported older event never replaces a newer one. */
        if (!newer(o, s))
            *o = *s;
        return CD_OK;
    }
    if (cu->nst < CD__CUST_INLINE) {
        cu->st[cu->nst] = *s;
        cu->nst++;
        p->nstates++;
        return CD_OK;
    }
    if (p->opage == NULL && (p->opage = cd_calloc(CD__PROJ_MAX_OPAGES, sizeof *p->opage)) == NULL)
        return CD_ERR_NOMEM;
    if (p->nost / CD__PROJ_OPAGE >= p->nopages) {
        if (p->nopages == CD__PROJ_MAX_OPAGES)
            return cd_err_set(CD_ERR_TOO_BIG, "too many states in the consent projection");
        if ((p->opage[p->nopages] = cd_calloc(CD__PROJ_OPAGE, sizeof **p->opage)) == NULL)
            return CD_ERR_NOMEM;
        p->nopages++;
    }
    struct cd__ostate *n = &p->opage[p->nost / CD__PROJ_OPAGE][p->nost % CD__PROJ_OPAGE];
    n->s = *s;
    n->next = 0;
    p->nost++;
    p->nstates++;
    /* Append at the end of the chain, so states loaded in order stay in order. */
    if (cu->more == 0) {
        cu->more = (uint32_t)p->nost;
    } else {
        struct cd__ostate *t = (struct cd__ostate *)ostate(p, cu->more);
        while (t->next)
            t = (struct cd__ostate *)ostate(p, t->next);
        t->next = (uint32_t)p->nost;
    }
    return CD_OK;
}

/* ---- the writer side of the seqlock ---- */

void cd__consent_wlock(struct cd_consent *c)
{
    pthread_rwlock_wrlock(&c->lock);
    /* Odd: a change is in progress. The release fence orders this store before the changes. */
    atomic_store_explicit(&c->seq, atomic_load_explicit(&c->seq, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
}

void cd__consent_wunlock(struct cd_consent *c)
{
    atomic_store_explicit(&c->seq, atomic_load_explicit(&c->seq, memory_order_relaxed) + 1,
                          memory_order_release);
    pthread_rwlock_unlock(&c->lock);
}

/* ---- dictionaries ---- */

uint16_t cd__consent_tz_index(struct cd_consent *c, struct cd_str name)
{
    uint16_t idx = 0;
    struct cd__tz *tz = NULL;

    if (name.len == 0 || name.len >= 64 || cd_str_eq_c(name, "UTC"))
        return 0;
    pthread_mutex_lock(&c->tz_mu);
    size_t n = atomic_load(&c->ntz);
    for (size_t i = 0; i < n; i++)
        if (cd_str_eq_c(name, c->tz_names[i])) {
            idx = (uint16_t)(i + 1);
            goto out;
        }
    if (n == CD__CONSENT_MAX_TZ || cd__tz_load(name, &tz) != CD_OK)
        goto out; /* an unknown zone is treated as UTC */
    memcpy(c->tz_names[n], name.p, name.len);
    c->tz_names[n][name.len] = '\0';
    c->tz[n] = tz;
    atomic_store(&c->ntz, n + 1);
    idx = (uint16_t)(n + 1);
out:
    pthread_mutex_unlock(&c->tz_mu);
    return idx;
}

int cd__consent_topic(struct cd_consent *c, struct cd_str name, bool add)
{
    if (name.len == 0 || name.len >= sizeof c->topics[0])
        return -1;
    for (size_t i = 0; i < c->ntopics; i++)
        if (cd_str_eq_c(name, c->topics[i]))
            return (int)i;
    if (!add || c->ntopics == CD__CONSENT_MAX_TOPICS)
        return -1;
    memcpy(c->topics[c->ntopics], name.p, name.len);
    c->topics[c->ntopics][name.len] = '\0';
    return (int)c->ntopics++;
}

enum cd_err cd__consent_notice_add(struct cd_consent *c, const char *id, struct cd_str name,
                                   uint32_t version, bool material, const uint8_t sha[32])
{
    size_t ni = c->nnames;

    for (size_t i = 0; i < c->nnames; i++)
        if (cd_str_eq_c(name, c->names[i]))
            ni = i;
    if (ni == c->nnames) {
        if (c->nnames == CD__CONSENT_MAX_NAMES || name.len >= sizeof c->names[0])
            return cd_err_set(CD_ERR_TOO_BIG, "too many notice names");
        memcpy(c->names[ni], name.p, name.len);
        c->names[ni][name.len] = '\0';
        c->name_material[ni] = 0;
        c->nnames++;
    }
    if (c->nnotices == CD__CONSENT_MAX_NOTICES)
        return cd_err_set(CD_ERR_TOO_BIG, "too many notices");
    struct cd__notice *n = &c->notices[c->nnotices++];
    n->name = (uint32_t)ni;
    n->version = version;
    memcpy(n->sha, sha, 32);
    snprintf(n->id, sizeof n->id, "%s", id);
    if (material && version > c->name_material[ni])
        c->name_material[ni] = version;
    return CD_OK;
}

uint32_t cd__consent_notice_find(const struct cd_consent *c, struct cd_str id)
{
    for (size_t i = c->nnotices; i > 0; i--)
        if (cd_str_eq_c(id, c->notices[i - 1].id))
            return (uint32_t)i;
    return 0;
}

/* ---- decisions ---- */

static void set(struct cd_consent_decision *d, bool allow, const char *reason, const char *basis)
{
    d->allow = allow;
    d->reason = reason;
    d->basis = basis;
}

/* The decision for cu (NULL: unknown) from the projection, without the event id: *ev gets the
 * event's bits and *has_ev whether there is one (formatted after the read is validated).
 * Reads only; every index is checked, so a torn read under the seqlock is harmless. */
static void decide_cust(const struct cd_consent *c, const struct cd__cust *cu, unsigned purpose,
                        unsigned channel, int topic, int64_t now_ms,
                        struct cd_consent_decision *d, uint8_t ev[16], bool *has_ev)
{
    const struct cd__consent_rules *r = &c->rules;
    unsigned ji = cu ? cu->juris : (unsigned)r->def;
    const struct cd__consent_juris *j = &r->j[ji < CD__CONSENT_MAX_JURIS ? ji : r->def];
    const struct cd__cstate *s = NULL;

    *has_ev = false;
    d->expires_at = 0;
    d->regime = j->name;
    if (r->basis[purpose]) {
        set(d, true, "not_required", r->basis[purpose]);
        return;
    }
    if (cu == NULL) {
        set(d, false, "unknown_customer", "none");
        return;
    }
    /* Inline states first (the common case: no overflow chain). */
    unsigned n = cu->nst < CD__CUST_INLINE ? cu->nst : CD__CUST_INLINE;
    for (unsigned i = 0; i < n; i++) {
        const struct cd__cstate *t = &cu->st[i];
        if (t->purpose == purpose &&
            (t->channel == channel || t->channel == CD_CONSENT_CHANNEL_ANY) &&
            (s == NULL || newer(t, s)))
            s = t;
    }
    if (cu->more) {
        const struct cd__cstate *t = cd__proj_applicable(&c->proj, cu, purpose, channel);
        if (t && (s == NULL || newer(t, s)))
            s = t;
    }
    if (s) {
        memcpy(ev, s->event, 16);
        *has_ev = true;
        d->expires_at = s->expires;
    }
    if (j->mode[purpose] == CD__MODE_OPT_OUT) {
        if (s && (s->state == CD_CONSENT_WITHDRAWN || s->state == CD_CONSENT_REFUSED))
            set(d, false, (s->flags & CD__SF_GPC) ? "gpc" : "opted_out", "none");
        else if (s && s->state == CD_CONSENT_GIVEN)
            set(d, true, "consent_given", "consent");
        else
            set(d, true, "not_opted_out", "legitimate_interest");
    } else if (s == NULL || s->state == CD_CONSENT_REQUESTED) {
        set(d, false, "no_consent", "none");
    } else if (s->state == CD_CONSENT_GIVEN) {
        const struct cd__notice *nt =
            s->notice && s->notice <= CD__CONSENT_MAX_NOTICES ? &c->notices[s->notice - 1] : NULL;
        if (s->expires && s->expires <= now_ms)
            set(d, false, "expired", "none");
        else if (nt && nt->name < CD__CONSENT_MAX_NAMES &&
                 nt->version < c->name_material[nt->name])
            set(d, false, "stale_notice", "none");
        else
            set(d, true, "consent_given",
                (s->flags & CD__SF_IMPLIED) ? "implied_consent" : "consent");
    } else if (s->state == CD_CONSENT_WITHDRAWN) {
        set(d, false, (s->flags & CD__SF_GPC) ? "gpc" : "withdrawn", "none");
    } else if (s->state == CD_CONSENT_REFUSED) {
        set(d, false, "refused", "none");
    } else if (s->state == CD_CONSENT_EXPIRED) {
        set(d, false, "expired", "none");
    } else {
        set(d, false, "invalidated", "none");
    }
    if (!d->allow)
        return;
    if (topic >= 0 && (cu->topics_out >> topic) & 1u) {
        set(d, false, "topic_opted_out", "none");
        return;
    }
    if (channel != CD_CONSENT_CHANNEL_ANY && cu->qh_start) {
        int64_t sec = now_ms / 1000;
        if (cu->tz && cu->tz <= atomic_load(&c->ntz))
            sec += cd__tz_offset(c->tz[cu->tz - 1], sec);
        int m = (int)(((sec / 60) % 1440 + 1440) % 1440);
        int a = cu->qh_start - 1, b = cu->qh_end - 1;
        bool quiet = a <= b ? (m >= a && m < b) : (m >= a || m < b);
        if (quiet)
            set(d, false, "quiet_hours", "none");
    }
}

/* The reader side of the seqlock: the sequence before the read (even: no change in progress,
 * spinning briefly while odd), and whether it is unchanged after it. */
enum { SEQ_TRIES = 4 };

static bool seq_begin(struct cd_consent *c, unsigned *seq)
{
    for (int spin = 0; spin < 256; spin++) {
        *seq = atomic_load_explicit(&c->seq, memory_order_acquire);
        if ((*seq & 1) == 0)
            return true;
    }
    return false;
}

static bool seq_valid(struct cd_consent *c, unsigned seq)
{
    atomic_thread_fence(memory_order_acquire);
    return atomic_load_explicit(&c->seq, memory_order_relaxed) == seq;
}

/* Decides a batch of up to BATCH customers: hashes every key and prefetches its slot, then
 * resolves the slots and prefetches the records, then decides, so the cache misses of the
 * batch overlap instead of forming one chain per customer. Caller validates the read. */
enum { BATCH = 64 };

static void decide_batch(struct cd_consent *c, const uint8_t (*keys)[16], const bool *ok,
                         size_t n, unsigned purpose, unsigned channel, int topic,
                         int64_t now_ms, struct cd_consent_decision *d, uint8_t (*ev)[16],
                         bool *has_ev)
{
    const struct cd__proj *p = &c->proj;
    const struct cd__slots *t = atomic_load_explicit(&p->slots, memory_order_acquire);
    const struct cd__cust *cu[BATCH];
    uint64_t h[BATCH];

    for (size_t i = 0; i < n; i++) {
        h[i] = key_hash(keys[i]);
        if (t)
            __builtin_prefetch(&t->s[h[i] & t->mask]);
    }
    /* The first slot with the key's tag (32 hash bits: a false match is rare), without
     * touching the record yet. */
    for (size_t i = 0; i < n; i++) {
        cu[i] = NULL;
        if (!ok[i] || t == NULL)
            continue;
        uint64_t tag = h[i] >> 32 << 32;
        for (size_t j = h[i] & t->mask, k = 0; k <= t->mask; j = (j + 1) & t->mask, k++) {
            uint64_t sl = t->s[j];
            if (sl == 0)
                break;
            if ((sl & ~0xffffffffull) == tag) {
                cu[i] = cd__proj_cust(p, (uint32_t)sl - 1);
                break;
            }
        }
        if (cu[i])
            for (size_t l = 0; l < sizeof *cu[i]; l += 64)
                __builtin_prefetch((const char *)cu[i] + l);
    }
    for (size_t i = 0; i < n; i++)
        if (cu[i] && memcmp(cu[i]->key, keys[i], 16) != 0)
            cu[i] = find_in(p, t, keys[i], h[i]);
    for (size_t i = 0; i < n; i++)
        decide_cust(c, cu[i], purpose, channel, topic, now_ms, &d[i], ev[i], &has_ev[i]);
}

static void decide_keys(struct cd_consent *c, const uint8_t (*keys)[16], const bool *ok,
                        size_t n, unsigned purpose, unsigned channel, struct cd_str topic,
                        int64_t now_ms, struct cd_consent_decision *d)
{
    uint8_t ev[BATCH][16];
    bool has_ev[BATCH];

    for (size_t start = 0; start < n; start += BATCH) {
        size_t k = n - start < BATCH ? n - start : BATCH;
        unsigned seq;
        bool done = false;
        for (int tries = 0; tries < SEQ_TRIES && !done; tries++) {
            if (!seq_begin(c, &seq))
                continue;
            int tb = topic.len ? cd__consent_topic(c, topic, false) : -1;
            decide_batch(c, keys + start, ok + start, k, purpose, channel, tb, now_ms,
                         d + start, ev, has_ev);
            done = seq_valid(c, seq);
        }
        if (!done) {
            /* A long change (a rebuild) is in progress: wait for it under the lock. */
            pthread_rwlock_rdlock(&c->lock);
            int tb = topic.len ? cd__consent_topic(c, topic, false) : -1;
            decide_batch(c, keys + start, ok + start, k, purpose, channel, tb, now_ms,
                         d + start, ev, has_ev);
            pthread_rwlock_unlock(&c->lock);
        }
        for (size_t i = 0; i < k; i++) {
            if (has_ev[i])
                cd__consent_id_str(ev[i], "cev", d[start + i].event_id);
            else
                d[start + i].event_id[0] = '\0';
        }
    }
}

enum cd_err cd_consent_decide_topic(struct cd_consent *c, struct cd_str customer_id,
                                    enum cd_purpose purpose, enum cd_consent_channel channel,
                                    struct cd_str topic, int64_t now_ms,
                                    struct cd_consent_decision *d)
{
    uint8_t key[1][16];
    bool ok;

    if ((unsigned)purpose >= CD_PURPOSE__COUNT || (unsigned)channel >= CD_CONSENT_CHANNEL__COUNT)
        return cd_err_set(CD_ERR_INVALID, "purpose or channel out of range");
    ok = cd__consent_id_bits(customer_id, "cus", key[0]);
    decide_keys(c, (const uint8_t(*)[16])key, &ok, 1, purpose, channel, topic, now_ms, d);
    return CD_OK;
}

enum cd_err cd_consent_decide(struct cd_consent *c, struct cd_str customer_id,
                              enum cd_purpose purpose, enum cd_consent_channel channel,
                              int64_t now_ms, struct cd_consent_decision *d)
{
    return cd_consent_decide_topic(c, customer_id, purpose, channel, CD_STR_NULL, now_ms, d);
}

enum cd_err cd_consent_decide_many(struct cd_consent *c, const struct cd_str *ids, size_t n,
                                   enum cd_purpose purpose, enum cd_consent_channel channel,
                                   int64_t now_ms, struct cd_consent_decision *out)
{
    uint8_t keys[BATCH][16];
    bool ok[BATCH];

    if ((unsigned)purpose >= CD_PURPOSE__COUNT || (unsigned)channel >= CD_CONSENT_CHANNEL__COUNT)
        return cd_err_set(CD_ERR_INVALID, "purpose or channel out of range");
    for (size_t start = 0; start < n; start += BATCH) {
        size_t k = n - start < BATCH ? n - start : BATCH;
        for (size_t i = 0; i < k; i++)
            ok[i] = cd__consent_id_bits(ids[start + i], "cus", keys[i]);
        decide_keys(c, (const uint8_t(*)[16])keys, ok, k, purpose, channel, CD_STR_NULL,
                    now_ms, out + start);
    }
    return CD_OK;
}

enum cd_err cd_consent_filter(struct cd_consent *c, const struct cd_str *ids, size_t n,
                              enum cd_purpose purpose, enum cd_consent_channel channel,
                              int64_t now_ms, cd_consent_emit_fn emit, void *ctx)
{
    enum { CHUNK = 4096 };
    struct cd_consent_decision *dec = NULL;
    char(*idbuf)[CD_ID_MAX] = NULL;
    uint8_t(*keys)[16] = NULL;
    bool *ok = NULL;
    enum cd_err err = CD_OK;

    if ((unsigned)purpose >= CD_PURPOSE__COUNT || (unsigned)channel >= CD_CONSENT_CHANNEL__COUNT)
        return cd_err_set(CD_ERR_INVALID, "purpose or channel out of range");
    if ((dec = cd_malloc(CHUNK * sizeof *dec)) == NULL ||
        (idbuf = cd_malloc(CHUNK * sizeof *idbuf)) == NULL ||
        (keys = cd_malloc(CHUNK * sizeof *keys)) == NULL ||
        (ok = cd_malloc(CHUNK * sizeof *ok)) == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    /* Decide a chunk (batched, lock-free), then emit it: a slow consumer never holds up
     * writers. Customers added during the walk may or may not be seen; none is seen twice. */
    for (size_t start = 0;; start += CHUNK) {
        size_t k = 0;
        if (ids) {
            for (; start + k < n && k < CHUNK; k++)
                ok[k] = cd__consent_id_bits(ids[start + k], "cus", keys[k]);
        } else {
            /* Every customer: copy the keys under the read lock (records never move, but a
             * key is written once when its record is added). */
            pthread_rwlock_rdlock(&c->lock);
            size_t total = atomic_load(&c->proj.ncust);
            for (; start + k < total && k < CHUNK; k++) {
                memcpy(keys[k], cd__proj_cust(&c->proj, start + k)->key, 16);
                ok[k] = true;
            }
            pthread_rwlock_unlock(&c->lock);
            for (size_t i = 0; i < k; i++)
                cd__consent_id_str(keys[i], "cus", idbuf[i]);
        }
        decide_keys(c, (const uint8_t(*)[16])keys, ok, k, purpose, channel, CD_STR_NULL,
                    now_ms, dec);
        for (size_t i = 0; i < k; i++) {
            struct cd_str id = ids ? ids[start + i] : cd_str_c(idbuf[i]);
            if ((err = emit(ctx, id, &dec[i])) != CD_OK)
                goto out;
        }
        if (k < CHUNK)
            break;
    }
out:
    cd_free(dec);
    cd_free(idbuf);
    cd_free(keys);
    cd_free(ok);
    return err;
}

/* ---- rebuild ---- */

struct rb {
    struct cd_consent *c;
    struct cd__proj *p;
    enum cd_err err;
};

static struct cd_str colstr(const struct cd_val *v)
{
    if (v->type == CD_VAL_TEXT || v->type == CD_VAL_BLOB)
        return (struct cd_str){v->p, v->len};
    return CD_STR_NULL;
}

static enum cd_err notice_row(void *ctx, const struct cd_val *col, size_t n)
{
    struct rb *b = ctx;
    char id[CD_ID_MAX];

    if (col[3].len != 32 || col[0].len >= CD_ID_MAX)
        return cd_err_set(CD_ERR_INTEGRITY, "a notice row is malformed");
    snprintf(id, sizeof id, "%.*s", (int)col[0].len, (const char *)col[0].p);
    return cd__consent_notice_add(b->c, id, colstr(&col[1]), (uint32_t)col[2].i, col[4].i != 0,
                                  col[3].p);
}

static enum cd_err customer_row(void *ctx, const struct cd_val *col, size_t n)
{
    struct rb *b = ctx;
    uint8_t key[16];
    struct cd__cust *cu;
    enum cd_err err;

    if (!cd__consent_id_bits(colstr(&col[0]), "cus", key))
        return CD_OK;
    if ((err = cd__proj_upsert(b->p, key, &cu)) != CD_OK)
        return err;
    cu->juris = cd__consent_rules_find(&b->c->rules, colstr(&col[1]));
    cu->tz = cd__consent_tz_index(b->c, colstr(&col[2]));
    if (col[3].i > b->c->refreshed_until)
        b->c->refreshed_until = col[3].i;
    return CD_OK;
}

static enum cd_err event_row(void *ctx, const struct cd_val *col, size_t n)
{
    struct rb *b = ctx;
    uint8_t key[16];
    struct cd__cust *cu;
    struct cd__cstate s;
    enum cd_purpose pu;
    enum cd_consent_channel ch;
    enum cd_err err;

    memset(&s, 0, sizeof s);
    if (!cd__consent_id_bits(colstr(&col[0]), "cev", s.event) ||
        !cd__consent_id_bits(colstr(&col[1]), "cus", key) ||
        !cd_purpose_parse(colstr(&col[2]), &pu) || !cd_consent_channel_parse(colstr(&col[3]), &ch))
        return cd_err_set(CD_ERR_INTEGRITY, "a consent event row is malformed");
    s.purpose = (uint8_t)pu;
    s.channel = (uint8_t)ch;
    s.state = (uint8_t)col[4].i;
    s.at = col[5].i;
    s.expires = col[6].type == CD_VAL_INT ? col[6].i : 0;
    s.flags = (uint8_t)col[7].i;
    s.notice = col[8].type == CD_VAL_TEXT ? cd__consent_notice_find(b->c, colstr(&col[8])) : 0;
    if ((err = cd__proj_upsert(b->p, key, &cu)) != CD_OK)
        return err;
    return cd__proj_apply(b->p, cu, &s);
}

static enum cd_err prefs_row(void *ctx, const struct cd_val *col, size_t n)
{
    struct rb *b = ctx;
    uint8_t key[16];
    struct cd__cust *cu;
    json_t *topics = NULL;
    enum cd_err err;

    if (!cd__consent_id_bits(colstr(&col[0]), "cus", key))
        return CD_OK;
    if ((err = cd__proj_upsert(b->p, key, &cu)) != CD_OK)
        return err;
    cu->qh_start = col[1].type == CD_VAL_INT ? (uint16_t)(col[1].i + 1) : 0;
    cu->qh_end = col[2].type == CD_VAL_INT ? (uint16_t)(col[2].i + 1) : 0;
    cu->topics_out = 0;
    if (cd_json_parse(col[3].p, col[3].len, &topics) == CD_OK && json_is_array(topics)) {
        size_t i;
        json_t *t;
        json_array_foreach(topics, i, t)
        {
            int bit = cd__consent_topic(b->c, cd_str_c(json_string_value(t)), true);
            if (bit >= 0)
                cu->topics_out |= 1ull << bit;
        }
    }
    json_decref(topics);
    return CD_OK;
}

static enum cd_err rebuild_fn(struct cd_tx *tx, void *ctx)
{
    struct rb *b = ctx;
    enum cd_err err;

    b->c->nnotices = 0;
    b->c->nnames = 0;
    if ((err = cd_tx_exec(tx, "SELECT id, name, version, sha256, material FROM consent_notices "
                              "ORDER BY name, version",
                          NULL, 0, notice_row, b, NULL)) != CD_OK ||
        (err = cd_tx_exec(tx, "SELECT id, jurisdiction, time_zone, updated_at FROM customers "
                              "WHERE merged_into IS NULL ORDER BY id",
                          NULL, 0, customer_row, b, NULL)) != CD_OK ||
        (err = cd_tx_exec(tx, "SELECT id, customer_id, purpose, channel, state_code, "
                              "occurred_at, expires_at, flags, notice_id FROM consent_events "
                              "ORDER BY customer_id, seq",
                          NULL, 0, event_row, b, NULL)) != CD_OK ||
        (err = cd_tx_exec(tx, "SELECT customer_id, quiet_start, quiet_end, topics_out "
                              "FROM consent_preferences",
                          NULL, 0, prefs_row, b, NULL)) != CD_OK)
        return err;
    return CD_OK;
}

enum cd_err cd__consent_rebuild(struct cd_consent *c, struct cd__proj *p)
{
    struct rb b = {c, p, CD_OK};

    return cd_store_read(c->store, rebuild_fn, &b);
}

/* ---- customer attributes: one customer on demand, and the refresher ---- */

struct meta {
    char jur[32];
    char tz[64];
    bool found;
    int64_t updated;
};

static enum cd_err meta_row(void *ctx, const struct cd_val *col, size_t n)
{
    struct meta *m = ctx;
    struct cd_str j = colstr(&col[0]), t = colstr(&col[1]);

    snprintf(m->jur, sizeof m->jur, "%.*s", (int)j.len, j.p ? j.p : "");
    snprintf(m->tz, sizeof m->tz, "%.*s", (int)t.len, t.p ? t.p : "");
    m->found = true;
    return CD_OK;
}

struct meta_q {
    struct cd_str id;
    struct meta m;
};

static enum cd_err meta_fn(struct cd_tx *tx, void *ctx)
{
    struct meta_q *q = ctx;
    struct cd_val p[1] = {CD_VTEXT(q->id)};

    return cd_tx_exec(tx, "SELECT jurisdiction, time_zone FROM customers WHERE id = $1 AND "
                          "merged_into IS NULL",
                      p, 1, meta_row, &q->m, NULL);
}

enum cd_err cd__consent_refresh_customer(struct cd_consent *c, struct cd_str customer_id,
                                         bool *exists)
{
    struct meta_q q = {customer_id, {{0}, {0}, false, 0}};
    uint8_t key[16];
    struct cd__cust *cu;
    enum cd_err err;

    *exists = false;
    if (!cd__consent_id_bits(customer_id, "cus", key))
        return CD_OK;
    if ((err = cd_store_read(c->store, meta_fn, &q)) != CD_OK)
        return err;
    if (!q.m.found)
        return CD_OK;
    *exists = true;
    uint8_t jur = cd__consent_rules_find(&c->rules, cd_str_c(q.m.jur));
    uint16_t tz = cd__consent_tz_index(c, cd_str_c(q.m.tz));
    cd__consent_wlock(c);
    if ((err = cd__proj_upsert(&c->proj, key, &cu)) == CD_OK) {
        cu->juris = jur;
        cu->tz = tz;
    }
    cd__consent_wunlock(c);
    return err;
}

struct refresh {
    struct cd_consent *c;
    int64_t since;
    int64_t max;
    size_t rows;
};

static enum cd_err refresh_row(void *ctx, const struct cd_val *col, size_t n)
{
    struct refresh *r = ctx;
    uint8_t key[16];
    struct cd__cust *cu;
    enum cd_err err = CD_OK;

    r->rows++;
    if (col[3].i > r->max)
        r->max = col[3].i;
    if (!cd__consent_id_bits(colstr(&col[0]), "cus", key))
        return CD_OK;
    uint8_t jur = cd__consent_rules_find(&r->c->rules, colstr(&col[1]));
    uint16_t tz = cd__consent_tz_index(r->c, colstr(&col[2]));
    cd__consent_wlock(r->c);
    if ((err = cd__proj_upsert(&r->c->proj, key, &cu)) == CD_OK) {
        cu->juris = jur;
        cu->tz = tz;
    }
    cd__consent_wunlock(r->c);
    return err;
}

static enum cd_err refresh_fn(struct cd_tx *tx, void *ctx)
{
    struct refresh *r = ctx;
    struct cd_val p[1] = {CD_VINT(r->since)};

    /* ">=" so rows updated in the same millisecond as the last seen one are not missed;
     * re-applying a row is harmless. */
    return cd_tx_exec(tx, "SELECT id, jurisdiction, time_zone, updated_at FROM customers "
                          "WHERE updated_at >= $1 AND merged_into IS NULL "
                          "ORDER BY updated_at LIMIT 5000",
                      p, 1, refresh_row, r, NULL);
}

/* One pass of the refresher; the projection check runs it first so both sides see the same
 * customers table. */
static void refresh_once(struct cd_consent *c)
{
    struct refresh r = {c, c->refreshed_until, c->refreshed_until, 0};

    if (cd_store_read(c->store, refresh_fn, &r) == CD_OK)
        c->refreshed_until = r.max;
}

static void *refresher_main(void *arg)
{
    struct cd_consent *c = arg;

    for (;;) {
        struct timespec ts;
        pthread_mutex_lock(&c->stop_mu);
        clock_gettime(CLOCK_REALTIME, &ts);
        /* Every 250 ms: new customers become known to decisions within a quarter second. */
        ts.tv_nsec += 250 * 1000 * 1000;
        if (ts.tv_nsec >= 1000 * 1000 * 1000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000 * 1000 * 1000;
        }
        while (!c->stopping &&
               pthread_cond_timedwait(&c->stop_cv, &c->stop_mu, &ts) == 0)
            ;
        bool stop = c->stopping;
        pthread_mutex_unlock(&c->stop_mu);
        if (stop)
            return NULL;
        pthread_mutex_lock(&c->refresh_mu);
        refresh_once(c);
        pthread_mutex_unlock(&c->refresh_mu);
    }
}

enum cd_err cd__consent_refresher_start(struct cd_consent *c)
{
    if (pthread_create(&c->refresher, NULL, refresher_main, c) != 0)
        return cd_err_set(CD_ERR_INTERNAL, "cannot start the consent refresher thread");
    c->refresher_started = true;
    return CD_OK;
}

void cd__consent_refresher_stop(struct cd_consent *c)
{
    if (!c->refresher_started)
        return;
    pthread_mutex_lock(&c->stop_mu);
    c->stopping = true;
    pthread_cond_broadcast(&c->stop_cv);
    pthread_mutex_unlock(&c->stop_mu);
    pthread_join(c->refresher, NULL);
    c->refresher_started = false;
}

void cd_consent_stats(struct cd_consent *c, struct cd_consent_stats *out)
{
    pthread_rwlock_rdlock(&c->lock);
    const struct cd__slots *t = atomic_load(&c->proj.slots);
    out->customers = c->proj.ncust;
    out->states = c->proj.nstates;
    out->bytes = c->proj.npages * CD__PROJ_PAGE * sizeof(struct cd__cust) +
                 c->proj.nopages * CD__PROJ_OPAGE * sizeof(struct cd__ostate) +
                 (t ? (t->mask + 1) * sizeof(uint64_t) : 0);
    for (t = t ? t->retired : NULL; t; t = t->retired)
        out->bytes += (t->mask + 1) * sizeof(uint64_t);
    pthread_rwlock_unlock(&c->lock);
}

enum cd_err cd_consent_projection_check(struct cd_consent *c)
{
    struct cd__proj other;
    enum cd_err err;

    memset(&other, 0, sizeof other);
    pthread_mutex_lock(&c->refresh_mu);
    refresh_once(c);
    pthread_mutex_unlock(&c->refresh_mu);
    /* The rebuild also reloads the notice list, so it runs under the write lock. */
    cd__consent_wlock(c);
    if ((err = cd__consent_rebuild(c, &other)) != CD_OK)
        goto out;
    if (other.ncust != c->proj.ncust || other.nstates != c->proj.nstates) {
        err = cd_err_set(CD_ERR_INTEGRITY, "customers: live %zu, rebuilt %zu; states: live "
                         "%zu, rebuilt %zu", (size_t)c->proj.ncust, (size_t)other.ncust,
                         c->proj.nstates, other.nstates);
        goto out;
    }
    for (size_t i = 0; i < c->proj.ncust; i++) {
        const struct cd__cust *a = cd__proj_cust(&c->proj, i), *b = cd__proj_find(&other, a->key);
        char id[CD_ID_MAX];
        cd__consent_id_str(a->key, "cus", id);
        if (b == NULL || a->juris != b->juris || a->tz != b->tz || a->qh_start != b->qh_start ||
            a->qh_end != b->qh_end || a->topics_out != b->topics_out) {
            err = cd_err_set(CD_ERR_INTEGRITY, "customer %s differs", id);
            goto out;
        }
        size_t na = 0, nb = 0;
        struct cd__proj_it ia = {0}, ib = {0};
        for (const struct cd__cstate *s; (s = cd__proj_next(&c->proj, a, &ia)) != NULL; na++) {
            const struct cd__cstate *t = cd__proj_state(&other, b, s->purpose, s->channel);
            if (t == NULL || memcmp(s->event, t->event, 16) != 0 || s->at != t->at ||
                s->expires != t->expires || s->notice != t->notice || s->state != t->state ||
                s->flags != t->flags) {
                err = cd_err_set(CD_ERR_INTEGRITY, "customer %s: state of %s/%s differs", id,
                                 cd_purpose_name((enum cd_purpose)s->purpose),
                                 cd_consent_channel_name((enum cd_consent_channel)s->channel));
                goto out;
            }
        }
        while (cd__proj_next(&other, b, &ib))
            nb++;
        if (na != nb) {
            err = cd_err_set(CD_ERR_INTEGRITY, "customer %s: %zu states live, %zu rebuilt", id,
                             na, nb);
            goto out;
        }
    }
out:
    cd__consent_wunlock(c);
    cd__proj_free(&other);
    return err;
}
