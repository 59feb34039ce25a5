/* The in-memory projection every decision reads: customers in an open-addressing table of
 * 64-byte slots, found from a hash of the id string as the API receives it. A slot holds the
 * id's 26 digits and, per purpose, the verdict as far as it depends on the customer's state
 * and jurisdiction alone, with a reference to the event it rests on; so the usual decision
 * reads one cache line, addressed straight from the hash, and nothing else. The customer's
 * record (attributes, states) lies elsewhere and is read when the slot says so (expiry,
 * notices, several states for a purpose, quiet hours, topics). Event ids live in a pool whose
 * entries never change, so a decision points at its event instead of copying it. Writers
 * hold c->lock for writing only to apply an event that already committed; decisions read
 * without it (a seqlock). Also: the rebuild from the tables, the time zone and topic
 * dictionaries, and the refresher of customer attributes. */
#include <assert.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include "audit/audit.h"
#include "consent_int.h"
#include "core/core.h"

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

/* Always inlined (decision paths): every call level pushes registers, and stores queued
 * behind a cache miss are what stops consecutive decisions from overlapping. */
#define ALWAYS_INLINE inline __attribute__((always_inline))

/* ---- verdicts ---- */

/* A decision's outcome as a small code, turned into (allow, reason, basis) by one table
 * lookup at the end: the compiler otherwise materialises every (reason, basis) pair of
 * string constants on the stack at each call, stores that sit in the store queue behind the
 * slot's cache miss. Four bits: a slot holds one per purpose (struct cd__slot). */
enum verdict {
    V_NOT_REQUIRED, /* basis from the rules */
    V_UNKNOWN,
    V_CONSENT_GIVEN,
    V_IMPLIED,
    V_NOT_OPTED_OUT,
    V_NO_CONSENT,
    V_OPTED_OUT,
    V_GPC,
    V_WITHDRAWN,
    V_REFUSED,
    V_EXPIRED,
    V_INVALIDATED,
    V_STALE,
    V_TOPIC,
    V_QUIET,
    V_RECORD = 15,     /* in a slot's pv: decide from the record */
    V_RESTRICTED = 16, /* only ever decided from the record, never held in a slot */
};

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

/* The verdict of the applicable state s (NULL: none) under a regime that is opt-out or not:
 * the part of a decision that reads the state. Run when a record decides, and by slot_fill
 * to resolve a slot's verdicts (then s has no notice and no expiry, and c may be NULL). */
static ALWAYS_INLINE enum verdict state_verdict(const struct cd_consent *c, bool opt_out,
                                                const struct cd__state *s, int64_t now_ms)
{
    /* A record that failed its integrity check (bind.c) denies in every regime. */
    if (s && (s->flags & CD__SF_INTEGRITY))
        return V_INVALIDATED;
    if (opt_out) {
        if (s && (s->state == CD_CONSENT_WITHDRAWN || s->state == CD_CONSENT_REFUSED))
            return (s->flags & CD__SF_GPC) ? V_GPC : V_OPTED_OUT;
        if (s && s->state == CD_CONSENT_GIVEN)
            return V_CONSENT_GIVEN;
        return V_NOT_OPTED_OUT;
    }
    if (s == NULL || s->state == CD_CONSENT_REQUESTED)
        return V_NO_CONSENT;
    if (s->state == CD_CONSENT_GIVEN) {
        const struct cd__notice *nt =
            s->notice && s->notice <= CD__CONSENT_MAX_NOTICES ? &c->notices[s->notice - 1] : NULL;
        if (s->expires && s->expires <= now_ms)
            return V_EXPIRED;
        if (nt && nt->name < CD__CONSENT_MAX_NAMES && nt->version < c->name_material[nt->name])
            return V_STALE;
        return (s->flags & CD__SF_IMPLIED) ? V_IMPLIED : V_CONSENT_GIVEN;
    }
    if (s->state == CD_CONSENT_WITHDRAWN)
        return (s->flags & CD__SF_GPC) ? V_GPC : V_WITHDRAWN;
    if (s->state == CD_CONSENT_REFUSED)
        return V_REFUSED;
    if (s->state == CD_CONSENT_EXPIRED)
        return V_EXPIRED;
    return V_INVALIDATED;
}

/* ---- the hash table, the records and the event pool ---- */

/* The key of a customer id string as the API receives it ("cus_" + 26 digits), or NULL when
 * it cannot be one. Only the shape is checked: a string that is not canonical matches no
 * stored key. */
static const char *id_key(struct cd_str id)
{
    if (id.len != 4 + CD__KEY_LEN || id.p == NULL || memcmp(id.p, "cus_", 4) != 0)
        return NULL;
    return id.p + 4;
}

static uint64_t load64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static uint64_t key_hash(const char k[CD__KEY_LEN])
{
    /* The 16 random digits of the id (cd_id_new: 10 digits of time, then 80 random bits), as
     * two words, each multiplied so that the top half of the product depends on all of it;
     * home() takes the top 32 bits. Ids made in the same millisecond differ by one in the
     * random part, which the multiplication spreads as well. Few instructions on purpose:
     * every one of them waits for the caller's id string to arrive. */
    return load64(k + 10) * 0x9E3779B97F4A7C15ull ^ load64(k + 18) * 0xD6E8FEB86659FD93ull;
}

/* The home slot: the top 32 bits of the hash scaled to n (n < 2^32). */
static size_t home(uint64_t h, size_t n)
{
    return (size_t)((h >> 32) * (uint64_t)n >> 32);
}

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

/* The slots the fast path's probe looks at (probe_near). */
#define PROBE_NEAR 16

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

static struct cd__cust *record(const struct cd__proj *p, uint32_t rec)
{
    struct cd__cust *const *dir = p->cpage;
    size_t pg = rec / CD__PROJ_CPAGE;

    if (dir == NULL || pg >= CD__PROJ_MAX_CPAGES || dir[pg] == NULL)
        return NULL;
    return &dir[pg][rec % CD__PROJ_CPAGE];
}

static const uint8_t *ev_bits(const struct cd__proj *p, uint32_t i1)
{
    uint8_t(*const *dir)[16] = p->epage;
    size_t i = (size_t)i1 - 1, pg = i / CD__PROJ_EPAGE;

    if (i1 == 0 || dir == NULL || pg >= CD__PROJ_MAX_EPAGES || dir[pg] == NULL)
        return NULL;
    return dir[pg][i % CD__PROJ_EPAGE];
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

/* The pool entry of a state's ev, for the fast path: no checks that wait for the slot (the
 * directory covers every 32-bit ev; a torn ev gives a pointer that is never followed, as the
 * decision is retried). */
static inline const uint8_t *ev_ptr(const struct cd__proj *p, uint32_t ev)
{
    uint32_t e = ev - 1;
    uint8_t(*page)[16] = p->epage[e >> CD__PROJ_EPAGE_SHIFT];

    return page ? page[e & (CD__PROJ_EPAGE - 1)] : NULL;
}

/* Loads one word of the slot at i, for a batch of slots at random addresses (decide_many:
 * loads overlap the batch's misses better than prefetches). The empty asm keeps the loaded
 * word, so the compiler cannot drop the load. */
static ALWAYS_INLINE void touch_slot(const struct cd__table *t, size_t i)
{
    uint64_t a;

    memcpy(&a, t->r[i].key, 8);
    __asm__ volatile("" : : "r"(a));
}

/* Probes t for key from slot i (its home). At most n probes, so even a torn table under the
 * seqlock cannot loop; an empty slot ends the probe (no removals, so no tombstones). With
 * SSE2 (every x86-64) the key is held in two vector registers, compared 16 bytes at a time
 * (bytes 0-15 and 10-25): four general registers fewer in the decision's fast path, whose
 * spills are stores queued behind the slot's cache miss. */
#ifdef __SSE2__
#include <emmintrin.h>

struct probe_key {
    __m128i k0, k1; /* key bytes 0-15 and 10-25 */
};

static ALWAYS_INLINE struct probe_key probe_key(const char *key)
{
    return (struct probe_key){_mm_loadu_si128((const __m128i *)key),
                              _mm_loadu_si128((const __m128i *)(key + CD__KEY_LEN - 16))};
}

static ALWAYS_INLINE bool slot_has(const struct cd__slot *sl, struct probe_key k)
{
    __m128i a = _mm_cmpeq_epi8(_mm_load_si128((const __m128i *)sl->key), k.k0),
            b = _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(sl->key + CD__KEY_LEN - 16)),
                               k.k1);

    return _mm_movemask_epi8(_mm_and_si128(a, b)) == 0xFFFF;
}
#else
struct probe_key {
    const char *p;
};

static ALWAYS_INLINE struct probe_key probe_key(const char *key)
{
    return (struct probe_key){key};
}

static ALWAYS_INLINE bool slot_has(const struct cd__slot *sl, struct probe_key k)
{
    const char *a = sl->key, *b = k.p;

    return ((load64(a) ^ load64(b)) | (load64(a + 8) ^ load64(b + 8)) |
            (load64(a + 16) ^ load64(b + 16)) | (load64(a + 18) ^ load64(b + 18))) == 0;
}
#endif

static ALWAYS_INLINE const struct cd__slot *probe(const struct cd__table *t, const char *key,
                                                  size_t i)
{
    struct probe_key k = probe_key(key);

    for (size_t n = 0; n < t->n; n++) {
        const struct cd__slot *sl = &t->r[i];
        if (slot_has(sl, k))
            return sl;
        if (sl->key[0] == '\0')
            return NULL;
        if (++i == t->n)
            i = 0;
    }
    return NULL;
}

/* The fast path's probe: PROBE_NEAR slots from i, without wrapping around the end of the
 * table (the table is followed by PROBE_NEAR empty slots), so it needs neither a counter nor
 * the table's size: registers fewer, and fewer instructions waiting for the id string. NULL
 * when key is not there, and when it may lie further: the slow path probes again in full. */
static ALWAYS_INLINE const struct cd__slot *probe_near(const struct cd__table *t,
                                                       const char *key, size_t i)
{
    struct probe_key k = probe_key(key);
    const struct cd__slot *sl = &t->r[i], *end = sl + PROBE_NEAR;

    for (; sl < end; sl++) {
        if (slot_has(sl, k))
            return sl;
        if (sl->key[0] == '\0')
            return NULL;
    }
    return NULL;
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
    for (size_t i = 0; old && i < old->n; i++)
        if (old->r[i].key[0] != '\0')
            *slot_free(t, old->r[i].key) = old->r[i];
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
    memcpy(cu->key, key, CD__KEY_LEN);
    cu->idx = (uint32_t)n;
    sl = slot_free(t, key);
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

/* Whether the event (at, bits) is newer than the held state b: later, or at the same
 * millisecond the greater id (read; bits of a torn ev compare as zeros). */
static bool newer(const struct cd__proj *p, int64_t at, const uint8_t *bits,
                  const struct cd__state *b)
{
    static const uint8_t zero[16];
    const uint8_t *bb = ev_bits(p, b->ev);

    if (at != b->at)
        return at > b->at;
    return memcmp(bits ? bits : zero, bb ? bb : zero, 16) > 0;
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

/* A customer's attributes as the core gives them, for the projection: its
 * jurisdiction rule and time zone (looked up before the write lock: the zone may load a file),
 * its restriction, and the customer it was merged into (survivor "" when none). */
struct cattr {
    uint8_t key[16];
    uint8_t juris;
    uint16_t tz;
    bool restricted;
    char survivor[CD_ID_MAX]; /* "" when not merged */
    int64_t merged_at;
};

/* The projection's form of the core's attributes of a customer; false when the id is not a
 * customer id. */
static bool cattr_from(struct cd_consent *c, const struct cd_core_customer_attrs *in,
                       struct cattr *a)
{
    if (!cd_id_bits(in->id, "cus", a->key))
        return false;
    a->juris = cd__consent_rules_find(&c->rules, in->jurisdiction);
    a->tz = cd__consent_tz_index(c, in->time_zone);
    struct cd_str sv = in->survivor_id;
    a->restricted = in->restricted;
    snprintf(a->survivor, sizeof a->survivor, "%.*s", (int)(sv.len < CD_ID_MAX ? sv.len : 0),
             sv.p ? sv.p : "");
    a->merged_at = in->merged_at;
    return true;
}

/* Applies a customer's attributes to p (write lock, or p private), and its merge when it was
 * merged and `merges` is true. */
static enum cd_err cattr_apply(struct cd__proj *p, const struct cattr *a, bool merges)
{
    struct cd__cust *cu, *sv;
    uint8_t skey[16];
    enum cd_err err;

    if ((err = cd__proj_upsert(p, a->key, &cu)) != CD_OK)
        return err;
    cu->juris = a->juris;
    cu->tz = a->tz;
    cu->rflags = (uint8_t)(a->restricted ? cu->rflags | CD__RF_RESTRICTED
                                         : cu->rflags & ~CD__RF_RESTRICTED);
    cd__proj_sync(p, cu);
    if (!merges || !cd_id_bits(cd_str_c(a->survivor), "cus", skey))
        return CD_OK;
    /* Records never move, so cu stays good while the survivor is added. */
    if ((err = cd__proj_upsert(p, skey, &sv)) != CD_OK)
        return err;
    return cd__proj_merge(p, cu, sv, a->merged_at);
}

static enum cd_err customer_row(void *ctx, const struct cd_core_customer_attrs *in)
{
    struct rb *b = ctx;
    struct cattr a;
    enum cd_err err;

    if (!cattr_from(b->c, in, &a))
        return CD_OK;
    /* Merges are applied after every customer, in the order they happened (merge_row). */
    if ((err = cattr_apply(b->p, &a, false)) != CD_OK)
        return err;
    if (in->updated_at > b->c->refreshed_until)
        b->c->refreshed_until = in->updated_at;
    return CD_OK;
}

static enum cd_err merge_row(void *ctx, struct cd_str merged_id, struct cd_str survivor_id,
                             int64_t merged_at)
{
    struct rb *b = ctx;
    uint8_t ck[16], pk[16];
    struct cd__cust *child, *parent;
    enum cd_err err;

    if (!cd_id_bits(merged_id, "cus", ck) || !cd_id_bits(survivor_id, "cus", pk))
        return cd_err_set(CD_ERR_INTEGRITY, "a merges row is malformed");
    if ((err = cd__proj_upsert(b->p, ck, &child)) != CD_OK ||
        (err = cd__proj_upsert(b->p, pk, &parent)) != CD_OK)
        return err;
    return cd__proj_merge(b->p, child, parent, merged_at);
}

/* An event that does not match its ledger entry (or was never bound to one) must not count:
 * its customer, and the customer its entry names if another, are denied every purpose that
 * needs consent (cd__consent_taint), and the failure is logged and counted. */
static enum cd_err event_unverified(struct rb *b, const struct cd_val *col, struct cd_str entry,
                                    const char *why)
{
    uint8_t key[16], event[16] = {0};
    struct cd_str id = colstr(&col[CD__EC_ID]), cust = colstr(&col[CD__EC_CUSTOMER]), other;
    char raw[CD_ID_MAX] = "", safe_id[CD_ID_MAX];
    enum cd_err err = CD_OK;

    cd_id_bits(id, "cev", event);
    if (id.p && id.len < sizeof raw) {
        memcpy(raw, id.p, id.len);
        raw[id.len] = '\0';
    }
    cd_log_safe(raw, safe_id, sizeof safe_id); /* the column may hold anything now */
    cd_integrity_report(CD_INTEGRITY_CONSENT_EVENT,
                        "\"event_id\":\"%s\",\"detail\":\"%s; its customer's consent is "
                        "denied until the record is repaired\"",
                        safe_id, why);
    if (cd_id_bits(cust, "cus", key))
        err = cd__consent_taint(b->p, key, event);
    if (err == CD_OK && entry.p && cd_audit_entry_member(entry, "customer_id", &other) &&
        !cd_str_eq(other, cust) && cd_id_bits(other, "cus", key))
        err = cd__consent_taint(b->p, key, event);
    return err;
}

static enum cd_err event_row(void *ctx, const struct cd_val *col, size_t n)
{
    struct rb *b = ctx;
    uint8_t key[16], digest[32];
    struct cd__cust *cu;
    struct cd__cstate s;
    enum cd_purpose pu;
    enum cd_consent_channel ch;
    enum cd_err err;
    struct cd_str entry = colstr(&col[CD__EC__COUNT + 1]);
    const char *why = NULL;

    /* Only events that verify count (bind.c): the row must match the digest in its entry. */
    if (col[CD__EC__COUNT].type == CD_VAL_NULL)
        why = "it is not bound to the ledger (its signed receipt disagreed with its columns)";
    else if (entry.p == NULL)
        why = "the ledger entry its audit_seq points to is missing";
    else if ((err = cd__consent_event_digest(col, digest)) != CD_OK)
        return err;
    else
        why = cd__consent_entry_binds(entry, col, digest);
    if (why)
        return event_unverified(b, col, entry, why);
    memset(&s, 0, sizeof s);
    if (!cd_id_bits(colstr(&col[CD__EC_ID]), "cev", s.event) ||
        !cd_id_bits(colstr(&col[CD__EC_CUSTOMER]), "cus", key) ||
        !cd_purpose_parse(colstr(&col[CD__EC_PURPOSE]), &pu) ||
        !cd_consent_channel_parse(colstr(&col[CD__EC_CHANNEL]), &ch))
        return cd_err_set(CD_ERR_INTEGRITY, "a consent event row is malformed");
    s.purpose = (uint8_t)pu;
    s.channel = (uint8_t)ch;
    s.state = (uint8_t)col[CD__EC_STATE_CODE].i;
    s.at = col[CD__EC_OCCURRED].i;
    s.expires = col[CD__EC_EXPIRES].type == CD_VAL_INT ? col[CD__EC_EXPIRES].i : 0;
    s.flags = (uint8_t)col[CD__EC_FLAGS].i;
    s.notice = col[CD__EC_NOTICE_ID].type == CD_VAL_TEXT
                   ? cd__consent_notice_find(b->c, colstr(&col[CD__EC_NOTICE_ID]))
                   : 0;
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

    if (!cd_id_bits(colstr(&col[0]), "cus", key))
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
    cd__proj_sync(b->p, cu);
    return CD_OK;
}

#define EVENTS_SQL                                                                           \
    "SELECT " CD__CONSENT_EVENT_COLS ", audit_seq, (SELECT entry FROM audit_events a"          \
    " WHERE a.seq = consent_events.audit_seq), seq FROM consent_events"
#define NOTICES_SQL "SELECT id, name, version, sha256, material FROM consent_notices"
#define PREFS_SQL "SELECT customer_id, quiet_start, quiet_end, topics_out FROM consent_preferences"

static enum cd_err rebuild_fn(struct cd_tx *tx, void *ctx)
{
    struct rb *b = ctx;
    enum cd_err err;
    int64_t upto = 0;

    b->c->nnotices = 0;
    b->c->nnames = 0;
    /* Where the feed's catch-up starts (cd_consent_changed): every event up to it is in this
     * snapshot, since events are numbered in commit order (one writer at a time). */
    if ((err = cd_tx_int(tx, "SELECT coalesce(max(seq), 0) FROM consent_events", NULL, 0,
                         &upto)) != CD_OK)
        return err;
    b->c->events_upto = upto;
    if ((err = cd_tx_exec(tx, NOTICES_SQL " ORDER BY name, version",
                          NULL, 0, notice_row, b, NULL)) != CD_OK ||
        (err = cd_core_customers_attrs(tx, customer_row, b)) != CD_OK ||
        (err = cd_tx_exec(tx, EVENTS_SQL " ORDER BY customer_id, seq", NULL, 0, event_row, b,
                          NULL)) != CD_OK ||
        (err = cd_tx_exec(tx, PREFS_SQL, NULL, 0, prefs_row, b, NULL)) != CD_OK ||
        (err = cd_core_merges(tx, merge_row, b)) != CD_OK)
        return err;
    return CD_OK;
}

enum cd_err cd__consent_rebuild(struct cd_consent *c, struct cd__proj *p)
{
    struct rb b = {c, p, CD_OK};

    p->rules = &c->rules;

    return cd_store_read(c->store, rebuild_fn, &b);
}

/* ---- what other servers on the same database changed ----
 *
 * Announced on the store's feed, applied here on the feed thread to the shared projection,
 * each row under the write lock as a local change is. Events are caught up by their number:
 * one writer at a time across the servers numbers them in commit order, so "every event after
 * the last one seen" misses none, also after a lost feed. Re-applying an event this server
 * already applied changes nothing (the newer state wins, and it is the same one). */

/* A row handler of the rebuild, run on the shared projection under the write lock. */
struct locked_rb {
    struct rb b;
    cd_row_fn row;
    int64_t upto; /* the highest event number seen (events only) */
};

static enum cd_err locked_row(void *ctx, const struct cd_val *col, size_t n)
{
    struct locked_rb *l = ctx;
    enum cd_err err;

    if (l->row == notice_row && col[0].type == CD_VAL_TEXT) {
        pthread_rwlock_rdlock(&l->b.c->lock);
        bool known = cd__consent_notice_find(l->b.c, colstr(&col[0])) != 0;
        pthread_rwlock_unlock(&l->b.c->lock);
        if (known)
            return CD_OK;
    }
    /* An event's customer may be new to this server: its attributes (jurisdiction, time zone,
     * restriction, merge) are read first, as a local event reads them before it applies. */
    uint8_t key[16];
    if (l->row == event_row && cd_id_bits(colstr(&col[CD__EC_CUSTOMER]), "cus", key)) {
        pthread_rwlock_rdlock(&l->b.c->lock);
        bool known = cd__proj_find(&l->b.c->proj, key) != NULL;
        pthread_rwlock_unlock(&l->b.c->lock);
        bool exists;
        if (!known &&
            (err = cd__consent_refresh_customer(l->b.c, colstr(&col[CD__EC_CUSTOMER]),
                                                &exists)) != CD_OK)
            return err;
    }
    cd__consent_wlock(l->b.c);
    err = l->row(&l->b, col, n);
    cd__consent_wunlock(l->b.c);
    if (l->row == event_row && n > CD__EC__COUNT + 2 && col[CD__EC__COUNT + 2].i > l->upto)
        l->upto = col[CD__EC__COUNT + 2].i;
    return err;
}

struct catch_up {
    struct cd_consent *c;
    const char *sql;
    struct cd_val p[1];
    size_t np;
    struct locked_rb l;
};

static enum cd_err catch_up_fn(struct cd_tx *tx, void *ctx)
{
    struct catch_up *q = ctx;

    return cd_tx_exec(tx, q->sql, q->p, q->np, locked_row, &q->l, NULL);
}

/* Runs sql (with at most one parameter p) and applies each row with row. */
static enum cd_err catch_up(struct cd_consent *c, const char *sql, const struct cd_val *p,
                            cd_row_fn row, int64_t *upto)
{
    struct catch_up q = {c, sql, {p ? *p : CD_VNULL}, p != NULL,
                         {{c, &c->proj, CD_OK}, row, upto ? *upto : 0}};
    enum cd_err err = cd_store_read(c->store, catch_up_fn, &q);

    if (upto)
        *upto = q.l.upto; /* as far as it got: the rows before a failure are applied */
    return err;
}

void cd_consent_changed(struct cd_consent *c, const char *topic)
{
    static const char prefs[] = "consent.preferences ";
    enum cd_err err = CD_OK;
    bool all = topic == NULL;

    pthread_mutex_lock(&c->changes_mu);
    if (all || strcmp(topic, "consent.notices") == 0)
        err = catch_up(c, NOTICES_SQL " ORDER BY name, version", NULL, notice_row, NULL);
    if (err == CD_OK && (all || strcmp(topic, "consent.events") == 0)) {
        struct cd_val after = CD_VINT(c->events_upto);
        err = catch_up(c, EVENTS_SQL " WHERE seq > $1 ORDER BY seq", &after, event_row,
                       &c->events_upto);
    }
    if (err == CD_OK && all)
        err = catch_up(c, PREFS_SQL, NULL, prefs_row, NULL);
    else if (err == CD_OK && strncmp(topic, prefs, sizeof prefs - 1) == 0) {
        struct cd_val id = CD_VCSTR(topic + sizeof prefs - 1);
        err = catch_up(c, PREFS_SQL " WHERE customer_id = $1", &id, prefs_row, NULL);
    }
    pthread_mutex_unlock(&c->changes_mu);
    /* The feed goes on; what failed here is read again at the next announcement of its kind,
     * or at the resync that follows a lost connection. */
    if (err != CD_OK)
        cd_log(CD_LOG_ERROR, "consent.catch_up_failed", "\"error\":\"%s\"", cd_err_name(err));
}

/* ---- customer attributes: one customer on demand, and the refresher ---- */

struct meta_q {
    struct cd_consent *c;
    struct cd_str id;
    struct cattr a;
    bool found;
};

static enum cd_err meta_row(void *ctx, const struct cd_core_customer_attrs *in)
{
    struct meta_q *q = ctx;

    q->found = cattr_from(q->c, in, &q->a);
    return CD_OK;
}

static enum cd_err meta_fn(struct cd_tx *tx, void *ctx)
{
    struct meta_q *q = ctx;

    return cd_core_customer_attrs(tx, q->id, meta_row, q);
}

enum cd_err cd__consent_refresh_customer(struct cd_consent *c, struct cd_str customer_id,
                                         bool *exists)
{
    struct meta_q q;
    uint8_t key[16];
    enum cd_err err;

    *exists = false;
    memset(&q, 0, sizeof q);
    q.c = c;
    q.id = customer_id;
    if (!cd_id_bits(customer_id, "cus", key))
        return CD_OK;
    if ((err = cd_store_read(c->store, meta_fn, &q)) != CD_OK)
        return err;
    if (!q.found)
        return CD_OK;
    *exists = true;
    cd__consent_wlock(c);
    err = cattr_apply(&c->proj, &q.a, true);
    cd__consent_wunlock(c);
    return err;
}

/* Customers are found by updated_at, which is stamped when a request starts, not when its
 * write commits: a row can commit after one stamped later, and the clock can step back. So each
 * pass looks REFRESH_LAG_MS behind the newest stamp seen so far (applying a row twice is
 * harmless) and walks (updated_at, id) pages, so a busy window never stalls it. A customer
 * missed even so is found when a decision asks for them (cd_consent_decide_exact). */
#define REFRESH_LAG_MS 2000
#define REFRESH_PAGE 5000

struct refresh {
    struct cd_consent *c;
    int64_t after_ts; /* the page starts after (after_ts, after_id) */
    char after_id[CD_ID_MAX];
    int64_t max;
    size_t rows;
};

static enum cd_err refresh_row(void *ctx, const struct cd_core_customer_attrs *in)
{
    struct refresh *r = ctx;
    struct cattr a;
    enum cd_err err;

    r->rows++;
    if (in->updated_at > r->max)
        r->max = in->updated_at;
    r->after_ts = in->updated_at;
    struct cd_str id = in->id;
    snprintf(r->after_id, sizeof r->after_id, "%.*s", (int)(id.len < CD_ID_MAX ? id.len : 0),
             id.p ? id.p : "");
    if (!cattr_from(r->c, in, &a))
        return CD_OK;
    cd__consent_wlock(r->c);
    err = cattr_apply(&r->c->proj, &a, true);
    cd__consent_wunlock(r->c);
    return err;
}

static enum cd_err refresh_fn(struct cd_tx *tx, void *ctx)
{
    struct refresh *r = ctx;

    /* A restriction and a merge stamp updated_at too, so they are followed here as well. */
    return cd_core_customers_changed(tx, r->after_ts, cd_str_c(r->after_id), REFRESH_PAGE,
                                     refresh_row, r);
}

/* One pass of the refresher; the projection check runs it first so both sides see the same
 * customers table. */
static void refresh_once(struct cd_consent *c)
{
    struct refresh r = {c, c->refreshed_until - REFRESH_LAG_MS, "", c->refreshed_until, 0};

    do {
        r.rows = 0;
        if (cd_store_read(c->store, refresh_fn, &r) != CD_OK)
            return; /* the next pass starts again from the same point */
    } while (r.rows == REFRESH_PAGE);
    c->refreshed_until = r.max;
}

static void *refresher_main(void *arg)
{
    struct cd_consent *c = arg;

    pthread_setname_np(pthread_self(), "cd-consent"); /* per-thread CPU in top and /proc */
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
