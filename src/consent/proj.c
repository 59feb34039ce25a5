/* The in-memory projection every decision reads: customers in an open-addressing table of
 * 64-byte slots, found from a hash of the id string as the API receives it. A slot holds the
 * id's 26 digits and, per purpose, the verdict as far as it depends on the customer's state
 * and jurisdiction alone, with a reference to the event it rests on; so the usual decision
 * reads one cache line, addressed straight from the hash, and nothing else. The customer's
 * record (attributes, states) lies elsewhere and is read when the slot says so (expiry,
 * notices, several states for a purpose, quiet hours, topics). Event ids live in a pool whose
 * entries never change, so a decision points at its event instead of copying it. Writers
 * hold c->lock for writing only to apply an event that already committed; decisions read
 * without it (a seqlock, whose writer side is here). Also: the time zone, topic and notice
 * dictionaries, the projection's size, and the check of the live projection against one
 * rebuilt. Decisions are decide.c, the rebuild rebuild.c, the refresher refresh.c. */
#include <assert.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include "proj_int.h"

/* ---- the hash table, the records and the event pool ---- */

/* 2 MiB: the transparent huge page size on x86-64. */
#define HUGE_ALIGN ((size_t)2 << 20)

/* n bytes aligned to 2 MiB (n a multiple of 2 MiB) or to 64 bytes (smaller n), zeroed, with
 * huge pages requested, then extra zeroed bytes. *raw receives what to cd_free. The slack
 * before and after the aligned block is never touched, so it costs address space, not memory.
 * Large blocks come zeroed from the kernel (calloc of a fresh mapping clears nothing), so the
 * huge-page request comes before the first touch and a table of hundreds of MiB is not written
 * twice. */
static void *alloc_aligned(size_t n, size_t extra, void **raw)
{
    size_t al = n >= HUGE_ALIGN ? HUGE_ALIGN : 64;
    char *p = cd_calloc(1, n + extra + al);

    if ((*raw = p) == NULL)
        return NULL;
    char *q = (char *)(((uintptr_t)p + al - 1) & ~(uintptr_t)(al - 1));
#ifdef MADV_HUGEPAGE
    if (al == HUGE_ALIGN)
        madvise(q, n, MADV_HUGEPAGE);
#endif
    return q;
}

/* Slots per 2 MiB: from this size on, tables come in whole huge pages. */
#define TABLE_PAGE (HUGE_ALIGN / sizeof(struct cd__slot))

static struct cd__table *table_new(size_t n)
{
    struct cd__table *t = cd_calloc(1, sizeof *t);

    if (t == NULL)
        return NULL;
    t->n = n;
    t->bytes = n * sizeof(struct cd__slot);
    /* PROBE_NEAR more slots after the last, always empty: the fast path's probe stops there
     * without looking at n. */
    if ((t->r = alloc_aligned(t->bytes, PROBE_NEAR * sizeof(struct cd__slot), &t->raw)) == NULL) {
        cd_free(t);
        return NULL;
    }
    return t;
}

static void table_free(struct cd__table *t)
{
    while (t) {
        struct cd__table *next = t->retired;
        cd_free(t->raw);
        cd_free(t);
        t = next;
    }
}

/* The next table size: doubling up to one 2 MiB page, then x 5/4 in whole pages, so a table
 * is between 1/2 and 4/5 full once it is large (64 / 0.64 bytes of slot per customer just
 * after a growth). */
static size_t table_next(size_t n)
{
    if (n == 0)
        return 256;
    if (n < TABLE_PAGE)
        return n * 2;
    size_t m = n + n / 4;
    return (m + TABLE_PAGE - 1) / TABLE_PAGE * TABLE_PAGE;
}

void cd__proj_free(struct cd__proj *p)
{
    for (size_t i = 0; i < p->ncpages; i++)
        cd_free(p->cpage[i]);
    cd_free(p->cpage);
    for (size_t i = 0; i < p->nopages; i++)
        cd_free(p->opage[i]);
    cd_free(p->opage);
    for (size_t i = 0; i < p->nepages; i++)
        cd_free(p->epage[i]);
    cd_free(p->epage);
    for (size_t i = 0; i < p->nmpages; i++)
        cd_free(p->mpage[i]);
    cd_free(p->mpage);
    table_free(atomic_load(&p->table));
    memset(p, 0, sizeof *p);
}

/* Page lookups (read): every index is checked, so a torn read under the seqlock cannot
 * leave the pages. NULL when out of range. */
static const struct cd__ostate *ostate(const struct cd__proj *p, uint32_t i1)
{
    struct cd__ostate *const *dir = p->opage;
    size_t i = (size_t)i1 - 1, pg = i / CD__PROJ_OPAGE;

    if (i1 == 0 || dir == NULL || pg >= CD__PROJ_MAX_OPAGES || dir[pg] == NULL)
        return NULL;
    return &dir[pg][i % CD__PROJ_OPAGE];
}

const struct cd__merge *cd__proj_merge_entry(const struct cd__proj *p, uint32_t i1)
{
    struct cd__merge *const *dir = p->mpage;
    size_t i = (size_t)i1 - 1, pg = i / CD__PROJ_MPAGE;

    if (i1 == 0 || dir == NULL || pg >= CD__PROJ_MAX_MPAGES || dir[pg] == NULL)
        return NULL;
    return &dir[pg][i % CD__PROJ_MPAGE];
}

const struct cd__cust *cd__proj_record(const struct cd__proj *p, uint32_t idx)
{
    return record(p, idx);
}

const struct cd__cust *cd__proj_root(const struct cd__proj *p, const struct cd__cust *cu)
{
    for (unsigned depth = 0; cu && (cu->rflags & CD__RF_MERGED); depth++) {
        const struct cd__merge *e = cd__proj_merge_entry(p, cu->mg);
        if (e == NULL || depth == CD__PROJ_MAX_DEPTH)
            return NULL;
        cu = record(p, e->parent);
    }
    return cu;
}

static const struct cd__slot *find_slot(const struct cd__proj *p, const char key[CD__KEY_LEN])
{
    const struct cd__table *t = atomic_load_explicit(&p->table, memory_order_acquire);

    return t ? probe(t, key, home(key_hash(key), t->n)) : NULL;
}

struct cd__cust *cd__proj_find_key(const struct cd__proj *p, const char key[CD__KEY_LEN])
{
    const struct cd__slot *sl = find_slot(p, key);

    return sl ? record(p, sl->rec) : NULL;
}

struct cd__cust *cd__proj_find(const struct cd__proj *p, const uint8_t key[16])
{
    char k[CD_ID_DIGITS_ROOM];

    cd_id_digits(key, k);
    return cd__proj_find_key(p, k);
}

/* Whether the PROBE_NEAR slots after t's last are empty, as the fast path's probe needs. */
static bool tail_empty(const struct cd__table *t)
{
    for (size_t i = 0; i < PROBE_NEAR; i++)
        if (t->r[t->n + i].key[0] != '\0')
            return false;
    return true;
}

/* The free slot for key in t (writer; t is never full). */
static struct cd__slot *slot_free(struct cd__table *t, const char *key)
{
    size_t i = home(key_hash(key), t->n);

    while (t->r[i].key[0] != '\0')
        if (++i == t->n)
            i = 0;
    return &t->r[i];
}

/* Whether one more customer would make the table more than 4/5 full. At that load linear
 * probing stays short (2.5 probes on average when found, most of them in the home slot's
 * neighbours, the next cache lines). */
static bool needs_growth(const struct cd__proj *p)
{
    const struct cd__table *t = atomic_load(&p->table);

    return t == NULL || (p->ncust + 1) * 5 > t->n * 4;
}

/* The next, larger table with every slot of the current one (writer). Reads the current
 * table only, so lock-free readers may keep using it meanwhile. */
static enum cd_err grow_build(const struct cd__proj *p, struct cd__table **out)
{
    const struct cd__table *old = atomic_load(&p->table);
    size_t n = table_next(old ? old->n : 0);
    struct cd__table *t;

    if (n >= (size_t)1 << 32)
        return cd_err_set(CD_ERR_TOO_BIG, "too many customers in the consent projection");
    if ((t = table_new(n)) == NULL)
        return CD_ERR_NOMEM;
    size_t moved = 0;
    for (size_t i = 0; old && i < old->n; i++)
        if (old->r[i].key[0] != '\0') {
            *slot_free(t, old->r[i].key) = old->r[i];
            moved++;
        }
    assert(moved == p->ncust); /* every customer has one slot */
    *out = t;
    return CD_OK;
}

/* Makes t the table and retires the old one (writer; inside a change, seq odd, when shared). */
static void grow_publish(struct cd__proj *p, struct cd__table *t)
{
    struct cd__table *old = atomic_load(&p->table);

    atomic_store_explicit(&p->table, t, memory_order_release);
    if (!p->shared) {
        table_free(old);
        return;
    }
    /* A reader may still be probing the old table: keep its address range until the
     * projection is freed, but give large tables' pages back as soon as the change is over
     * (cd__consent_wunlock: giving back hundreds of MiB takes milliseconds that decisions
     * need not wait for). A reader racing that reads zeros, finds nothing and retries,
     * because the sequence moved when the table was switched. */
    t->retired = old;
    if (p->to_drop)
        cd__proj_drop_retired(p);
    p->to_drop = old;
}

void cd__proj_drop_retired(struct cd__proj *p)
{
    struct cd__table *old = p->to_drop;

    p->to_drop = NULL;
#ifdef MADV_DONTNEED
    if (old && old->bytes >= HUGE_ALIGN && madvise(old->r, old->bytes, MADV_DONTNEED) == 0)
        old->dropped = true;
#endif
}

/* A new record at index rec (writer): its page and the directory are allocated at first use. */
static struct cd__cust *record_new(struct cd__proj *p, size_t rec)
{
    size_t pg = rec / CD__PROJ_CPAGE;

    if (p->cpage == NULL && (p->cpage = cd_calloc(CD__PROJ_MAX_CPAGES, sizeof *p->cpage)) == NULL)
        return NULL;
    if (pg >= p->ncpages) {
        if ((p->cpage[pg] = cd_calloc(CD__PROJ_CPAGE, sizeof **p->cpage)) == NULL)
            return NULL;
        p->ncpages = pg + 1;
    }
    return &p->cpage[pg][rec % CD__PROJ_CPAGE];
}

static void slot_fill(const struct cd__proj *p, struct cd__slot *sl, const struct cd__cust *cu);

enum cd_err cd__proj_upsert(struct cd__proj *p, const uint8_t bits[16], struct cd__cust **out)
{
    char key[CD_ID_DIGITS_ROOM];
    struct cd__table *t = atomic_load(&p->table);
    size_t n = p->ncust;
    struct cd__cust *cu;
    struct cd__slot *sl;
    enum cd_err err;

    cd_id_digits(bits, key);
    if ((cu = cd__proj_find_key(p, key)) != NULL) {
        *out = cu;
        return CD_OK;
    }
    if (n >= CD__PROJ_MAX_CUST)
        return cd_err_set(CD_ERR_TOO_BIG, "too many customers in the consent projection");
    /* The record first: it is not reachable until the slot holds its key. */
    if ((cu = record_new(p, n)) == NULL)
        return CD_ERR_NOMEM;
    /* Usually grown already by cd__consent_wlock, before the change began. */
    if (needs_growth(p)) {
        struct cd__table *nt;
        if ((err = grow_build(p, &nt)) != CD_OK)
            return err;
        grow_publish(p, nt);
        t = nt;
    }
    /* At most 4/5 full after this one (needs_growth), so slot_free finds a free slot. */
    assert((n + 1) * 5 <= t->n * 4);
    memcpy(cu->key, key, CD__KEY_LEN);
    cu->idx = (uint32_t)n;
    sl = slot_free(t, key);
    CD_DEBUG_ASSERT(tail_empty(t));
    memcpy(sl->key, key, CD__KEY_LEN);
    sl->rec = (uint32_t)n;
    slot_fill(p, sl, cu);
    atomic_store_explicit(&p->ncust, n + 1, memory_order_release);
    *out = cu;
    return CD_OK;
}

/* Writes what a decision reads of cu into its slot sl (see struct cd__slot). A purpose's
 * verdict is resolved here, under the customer's jurisdiction, when it depends on nothing
 * that changes without a write to this customer: the state, GPC and implied flags, the
 * regime's mode and the purposes that need no consent (the rules are loaded once). Expiry
 * (the clock), notices (a newer material version) and everything unusual are left to the
 * record. Without rules (a projection made by a unit test) the record decides everything. */
static void slot_fill(const struct cd__proj *p, struct cd__slot *sl, const struct cd__cust *cu)
{
    const struct cd__consent_rules *r = p->rules;
    const struct cd__consent_juris *j =
        r ? &r->j[cu->juris < CD__CONSENT_MAX_JURIS ? cu->juris : r->def] : NULL;
    unsigned n = cu->nst < CD__CUST_INLINE ? cu->nst : CD__CUST_INLINE;
    struct cd__proj_it it = {0};
    bool seen[CD_PURPOSE__COUNT] = {false};

    sl->juris = cu->juris;
    sl->flags = (uint8_t)((cu->qh_start ? CD__HF_QH : 0) | (cu->topics_out ? CD__HF_TOPICS : 0) |
                          ((cu->rflags & CD__RF_RESTRICTED) ? CD__HF_RESTRICTED : 0) |
                          ((cu->rflags & CD__RF_MERGED) ? CD__HF_MERGED : 0) |
                          ((cu->rflags & CD__RF_GROUP) ? CD__HF_GROUP : 0));
    memset(sl->ev, 0, sizeof sl->ev);
    for (unsigned pu = 0; pu < CD_PURPOSE__COUNT; pu++)
        sl->pv[pu] = j == NULL ? V_RECORD
                               : (uint8_t)(state_verdict(NULL, j->mode[pu] == CD__MODE_OPT_OUT,
                                                         NULL, 0) |
                                           CD__PV_NO_EVENT);
    for (unsigned k = 0; k < n; k++) {
        const struct cd__state *s = &cu->st[k];
        sl->ev[k] = s->ev;
        if (j == NULL || s->purpose >= CD_PURPOSE__COUNT)
            continue;
        /* A second state for the purpose (another channel), a channel's own state, an expiry,
         * a notice: the record decides. */
        if (seen[s->purpose] || s->channel != CD_CONSENT_CHANNEL_ANY || s->expires ||
            s->notice) {
            sl->pv[s->purpose] = V_RECORD;
        } else {
            /* No notice, no expiry: state_verdict reads neither c nor the clock. */
            enum verdict v = state_verdict(NULL, j->mode[s->purpose] == CD__MODE_OPT_OUT, s, 0);
            sl->pv[s->purpose] = (uint8_t)(v | k << CD__PV_K_SHIFT);
        }
        seen[s->purpose] = true;
    }
    /* States in overflow: the record decides for their purposes. */
    it.in_more = true;
    it.more = cu->more;
    for (const struct cd__state *s; (s = cd__proj_next(p, cu, &it)) != NULL;)
        if (s->purpose < CD_PURPOSE__COUNT)
            sl->pv[s->purpose] = V_RECORD;
    /* Purposes that need no consent are decided by the rules alone, on no event. */
    for (unsigned pu = 0; pu < CD_PURPOSE__COUNT && r; pu++)
        if (r->basis[pu])
            sl->pv[pu] = (uint8_t)(V_NOT_REQUIRED | CD__PV_NO_EVENT);
}

void cd__proj_sync(struct cd__proj *p, const struct cd__cust *cu)
{
    /* The projection's own slot: writable under the write lock. */
    struct cd__slot *sl = (struct cd__slot *)find_slot(p, cu->key);

    assert(sl != NULL); /* every record was added with its slot */
    slot_fill(p, sl, cu);
}

const struct cd__state *cd__proj_next(const struct cd__proj *p, const struct cd__cust *cu,
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

const struct cd__state *cd__proj_state(const struct cd__proj *p, const struct cd__cust *cu,
                                       unsigned purpose, unsigned channel)
{
    struct cd__proj_it it = {0};

    for (const struct cd__state *s; (s = cd__proj_next(p, cu, &it)) != NULL;)
        if (s->purpose == purpose && s->channel == channel)
            return s;
    return NULL;
}

const struct cd__state *cd__proj_applicable(const struct cd__proj *p, const struct cd__cust *cu,
                                            unsigned purpose, unsigned channel)
{
    const struct cd__state *best = NULL;
    struct cd__proj_it it = {0};

    /* The newest event wins between the channel's own state and the "*" state: "withdraw all"
     * after "give email" denies email; "give email" after "withdraw all" allows email only. */
    for (const struct cd__state *s; (s = cd__proj_next(p, cu, &it)) != NULL;) {
        if (s->purpose != purpose ||
            (s->channel != channel && s->channel != CD_CONSENT_CHANNEL_ANY))
            continue;
        if (best == NULL || newer(p, s->at, ev_bits(p, s->ev), best))
            best = s;
    }
    return best;
}

/* Puts the event id bits in the pool for a state whose pool index is *ev (writer): in place
 * while the projection is private, else in a new entry (a decision may point at the old
 * one). */
static enum cd_err ev_put(struct cd__proj *p, const uint8_t bits[16], uint32_t *ev)
{
    if (!p->shared && *ev != 0) {
        memcpy((uint8_t *)ev_bits(p, *ev), bits, 16);
        return CD_OK;
    }
    if (p->nev >= UINT32_MAX - 1)
        return cd_err_set(CD_ERR_TOO_BIG, "too many events in the consent projection");
    if (p->epage == NULL && (p->epage = cd_calloc(CD__PROJ_MAX_EPAGES, sizeof *p->epage)) == NULL)
        return CD_ERR_NOMEM;
    if (p->nev / CD__PROJ_EPAGE >= p->nepages) {
        if ((p->epage[p->nepages] = cd_malloc(CD__PROJ_EPAGE * sizeof **p->epage)) == NULL)
            return CD_ERR_NOMEM;
        p->nepages++;
    }
    memcpy(p->epage[p->nev / CD__PROJ_EPAGE][p->nev % CD__PROJ_EPAGE], bits, 16);
    *ev = (uint32_t)++p->nev;
    return CD_OK;
}

/* Sets the held state o from the event s, its id put in the pool first: a failure leaves o
 * whole. */
static enum cd_err state_set(struct cd__proj *p, struct cd__state *o, const struct cd__cstate *s)
{
    uint32_t ev = o->ev;
    enum cd_err err;

    if ((err = ev_put(p, s->event, &ev)) != CD_OK)
        return err;
    *o = (struct cd__state){.at = s->at, .expires = s->expires, .notice = s->notice, .ev = ev,
                            .purpose = s->purpose, .channel = s->channel, .state = s->state,
                            .flags = s->flags};
    return CD_OK;
}

static enum cd_err apply(struct cd__proj *p, struct cd__cust *cu, const struct cd__cstate *s)
{
    /* The projection's own states: writable under the write lock. */
    struct cd__state *o = (struct cd__state *)cd__proj_state(p, cu, s->purpose, s->channel);
    enum cd_err err;

    if (o) {
        /* An imported older event never replaces a newer one. */
        if (!newer(p, s->at, s->event, o))
            return CD_OK; /* (the same event again changes nothing either) */
        return state_set(p, o, s);
    }
    if (cu->nst < CD__CUST_INLINE) {
        cu->st[cu->nst].ev = 0;
        if ((err = state_set(p, &cu->st[cu->nst], s)) != CD_OK)
            return err;
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
    n->s.ev = 0;
    if ((err = state_set(p, &n->s, s)) != CD_OK)
        return err;
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

enum cd_err cd__proj_apply(struct cd__proj *p, struct cd__cust *cu, const struct cd__cstate *s)
{
    enum cd_err err = apply(p, cu, s);

    /* Also on failure: the caller may have changed the record's attributes before. */
    cd__proj_sync(p, cu);
    return err;
}

/* A new merge entry and its index + 1 (writer): its page and the directory are allocated at
 * first use; entries never move, so a lock-free reader may follow them. */
static enum cd_err merge_new(struct cd__proj *p, struct cd__merge **out, uint32_t *i1)
{
    size_t pg = p->nmg / CD__PROJ_MPAGE;

    if (pg >= CD__PROJ_MAX_MPAGES)
        return cd_err_set(CD_ERR_TOO_BIG, "too many merges in the consent projection");
    if (p->mpage == NULL && (p->mpage = cd_calloc(CD__PROJ_MAX_MPAGES, sizeof *p->mpage)) == NULL)
        return CD_ERR_NOMEM;
    if (pg >= p->nmpages) {
        if ((p->mpage[pg] = cd_calloc(CD__PROJ_MPAGE, sizeof **p->mpage)) == NULL)
            return CD_ERR_NOMEM;
        p->nmpages = pg + 1;
    }
    *out = &p->mpage[pg][p->nmg % CD__PROJ_MPAGE];
    *i1 = (uint32_t)++p->nmg;
    return CD_OK;
}

enum cd_err cd__proj_merge(struct cd__proj *p, struct cd__cust *child, struct cd__cust *parent,
                           int64_t at)
{
    struct cd__merge *e = NULL;
    uint32_t i1 = 0;
    enum cd_err err;

    if (child == parent)
        return cd_err_set(CD_ERR_INVALID, "a customer cannot be merged into itself");
    if (child->rflags & CD__RF_MERGED)
        return CD_OK; /* applied before */
    /* The projection's own records: writable under the write lock. */
    struct cd__cust *root = (struct cd__cust *)cd__proj_root(p, parent);
    if (root == NULL || root == child)
        return cd_err_set(CD_ERR_INTEGRITY, "merges of %.*s form a cycle", CD__KEY_LEN,
                          child->key);
    if ((err = merge_new(p, &e, &i1)) != CD_OK)
        return err;
    /* The root's list becomes: the child's entry, the child's own group, the root's group. */
    uint32_t rest = (root->rflags & CD__RF_GROUP) ? root->mg : 0, head = rest;
    if (child->rflags & CD__RF_GROUP) {
        struct cd__merge *t = (struct cd__merge *)cd__proj_merge_entry(p, child->mg);
        head = child->mg;
        for (size_t n = 0; t && t->next && n < p->nmg; n++)
            t = (struct cd__merge *)cd__proj_merge_entry(p, t->next);
        if (t)
            t->next = rest;
    }
    *e = (struct cd__merge){.at = at, .child = child->idx, .parent = parent->idx, .next = head};
    child->rflags = (uint8_t)((child->rflags & ~CD__RF_GROUP) | CD__RF_MERGED);
    child->mg = i1;
    root->rflags |= CD__RF_GROUP;
    root->mg = i1;
    cd__proj_sync(p, child);
    cd__proj_sync(p, root);
    return CD_OK;
}

/* ---- the writer side of the seqlock ---- */

void cd__consent_wlock(struct cd_consent *c)
{
    struct cd__table *grown = NULL;

    pthread_rwlock_wrlock(&c->lock);
    /* If the change may add a customer to a full table, copy the table into a larger one now,
     * while the sequence is still even: nobody else writes (we hold the lock), so lock-free
     * decisions go on reading the old table during the copy (at a million customers, a few
     * hundred milliseconds) instead of waiting for it. Only the switch happens inside the
     * change. On failure the insert tries again and reports the error. */
    if (c->proj.shared && needs_growth(&c->proj) && grow_build(&c->proj, &grown) != CD_OK)
        grown = NULL;
    /* Odd: a change is in progress. The release fence orders this store before the changes. */
    atomic_store_explicit(&c->seq, atomic_load_explicit(&c->seq, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    if (grown)
        grow_publish(&c->proj, grown);
}

void cd__consent_wunlock(struct cd_consent *c)
{
    atomic_store_explicit(&c->seq, atomic_load_explicit(&c->seq, memory_order_relaxed) + 1,
                          memory_order_release);
    /* After the change: decisions need not wait while a replaced table's pages go back. */
    if (c->proj.to_drop)
        cd__proj_drop_retired(&c->proj);
    pthread_rwlock_unlock(&c->lock);
}

/* ---- dictionaries ---- */

uint16_t cd__consent_tz_index(struct cd_consent *c, struct cd_str name)
{
    uint16_t idx = 0;
    struct cd_tz *tz = NULL;

    if (name.len == 0 || cd_str_eq_c(name, "UTC"))
        return 0;
    pthread_mutex_lock(&c->tz_mu);
    size_t n = atomic_load(&c->ntz);
    for (size_t i = 0; i < n; i++)
        if (cd_str_eq_c(name, cd_tz_name(c->tz[i]))) {
            idx = (uint16_t)(i + 1);
            goto out;
        }
    if (n == CD__CONSENT_MAX_TZ || cd_tz_load(name, &tz) != CD_OK)
        goto out; /* an unknown zone is treated as UTC */
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

void cd_consent_stats(struct cd_consent *c, struct cd_consent_stats *out)
{
    pthread_rwlock_rdlock(&c->lock);
    const struct cd__proj *p = &c->proj;
    const struct cd__table *t = atomic_load(&p->table);
    out->customers = p->ncust;
    out->states = p->nstates;
    out->bytes = p->ncpages * CD__PROJ_CPAGE * sizeof(struct cd__cust) +
                 p->nopages * CD__PROJ_OPAGE * sizeof(struct cd__ostate) +
                 p->nepages * CD__PROJ_EPAGE * sizeof **p->epage;
    /* Retired tables whose pages were given back hold no memory. */
    for (; t; t = t->retired)
        if (!t->dropped)
            out->bytes += t->bytes;
    pthread_rwlock_unlock(&c->lock);
}

enum cd_err cd_consent_projection_check(struct cd_consent *c)
{
    struct cd__proj other;
    enum cd_err err;

    memset(&other, 0, sizeof other);
    pthread_mutex_lock(&c->refresh_mu);
    cd__consent_refresh_once(c);
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
    const struct cd__table *live = atomic_load(&c->proj.table);
    for (size_t i = 0; live && i < live->n; i++) {
        const struct cd__slot *sl = &live->r[i];
        if (sl->key[0] == '\0')
            continue;
        const struct cd__cust *a = record(&c->proj, sl->rec);
        const struct cd__cust *b = cd__proj_find_key(&other, sl->key);
        char id[CD_ID_MAX];
        snprintf(id, sizeof id, "cus_%.*s", CD__KEY_LEN, sl->key);
        /* The slot must say what its record says: decisions read only the slot. */
        struct cd__slot want = *sl;
        if (a != NULL)
            slot_fill(&c->proj, &want, a);
        if (a == NULL || memcmp(a->key, sl->key, CD__KEY_LEN) != 0 ||
            memcmp(&want, sl, sizeof want) != 0) {
            err = cd_err_set(CD_ERR_INTEGRITY, "customer %s: slot differs from its record", id);
            goto out;
        }
        if (b == NULL || a->juris != b->juris || a->tz != b->tz || a->qh_start != b->qh_start ||
            a->qh_end != b->qh_end || a->topics_out != b->topics_out ||
            a->rflags != b->rflags) {
            err = cd_err_set(CD_ERR_INTEGRITY, "customer %s differs", id);
            goto out;
        }
        if (a->rflags & CD__RF_MERGED) {
            const struct cd__merge *ma = cd__proj_merge_entry(&c->proj, a->mg);
            const struct cd__merge *mb = cd__proj_merge_entry(&other, b->mg);
            const struct cd__cust *pa = ma ? record(&c->proj, ma->parent) : NULL;
            const struct cd__cust *pb = mb ? record(&other, mb->parent) : NULL;
            if (pa == NULL || pb == NULL || ma->at != mb->at ||
                memcmp(pa->key, pb->key, CD__KEY_LEN) != 0) {
                err = cd_err_set(CD_ERR_INTEGRITY, "customer %s: merge differs", id);
                goto out;
            }
        }
        size_t na = 0, nb = 0;
        struct cd__proj_it ia = {0}, ib = {0};
        for (const struct cd__state *s; (s = cd__proj_next(&c->proj, a, &ia)) != NULL; na++) {
            const struct cd__state *t = cd__proj_state(&other, b, s->purpose, s->channel);
            const uint8_t *bits = ev_bits(&c->proj, s->ev);
            const uint8_t *tbits = t ? ev_bits(&other, t->ev) : NULL;
            if (t == NULL || bits == NULL || tbits == NULL || memcmp(bits, tbits, 16) != 0 ||
                s->at != t->at || s->expires != t->expires || s->notice != t->notice ||
                s->state != t->state || s->flags != t->flags) {
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
