/* Inside the projection: what the slot table (proj.c) and decisions (decide.c) both read on
 * the decision path, as inline functions so a decision still compiles to one function with no
 * calls: the verdict codes and a state's verdict, the key of an id and its hash, page lookups,
 * and the probing of the table. Readers follow the seqlock rules of proj.c. */
#ifndef CD_CONSENT_PROJ_INT_H
#define CD_CONSENT_PROJ_INT_H

#include <string.h>
#include "consent_int.h"

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

/* The key of a customer id string as the API receives it ("cus_" + 26 digits), or NULL when
 * it cannot be one. Only the shape is checked: a string that is not canonical matches no
 * stored key. */
static inline const char *id_key(struct cd_str id)
{
    if (id.len != 4 + CD__KEY_LEN || id.p == NULL || memcmp(id.p, "cus_", 4) != 0)
        return NULL;
    return id.p + 4;
}

static inline uint64_t load64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t key_hash(const char k[CD__KEY_LEN])
{
    /* The 16 random digits of the id (cd_id_new: 10 digits of time, then 80 random bits), as
     * two words, each multiplied so that the top half of the product depends on all of it;
     * home() takes the top 32 bits. Ids made in the same millisecond differ by one in the
     * random part, which the multiplication spreads as well. Few instructions on purpose:
     * every one of them waits for the caller's id string to arrive. */
    return load64(k + 10) * 0x9E3779B97F4A7C15ull ^ load64(k + 18) * 0xD6E8FEB86659FD93ull;
}

/* The home slot: the top 32 bits of the hash scaled to n (n < 2^32). */
static inline size_t home(uint64_t h, size_t n)
{
    return (size_t)((h >> 32) * (uint64_t)n >> 32);
}

/* The slots the fast path's probe looks at (probe_near). */
#define PROBE_NEAR 16

static inline struct cd__cust *record(const struct cd__proj *p, uint32_t rec)
{
    struct cd__cust *const *dir = p->cpage;
    size_t pg = rec / CD__PROJ_CPAGE;

    if (dir == NULL || pg >= CD__PROJ_MAX_CPAGES || dir[pg] == NULL)
        return NULL;
    return &dir[pg][rec % CD__PROJ_CPAGE];
}

static inline const uint8_t *ev_bits(const struct cd__proj *p, uint32_t i1)
{
    uint8_t(*const *dir)[16] = p->epage;
    size_t i = (size_t)i1 - 1, pg = i / CD__PROJ_EPAGE;

    if (i1 == 0 || dir == NULL || pg >= CD__PROJ_MAX_EPAGES || dir[pg] == NULL)
        return NULL;
    return dir[pg][i % CD__PROJ_EPAGE];
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

/* Whether the event (at, bits) is newer than the held state b: later, or at the same
 * millisecond the greater id (read; bits of a torn ev compare as zeros). */
static inline bool newer(const struct cd__proj *p, int64_t at, const uint8_t *bits,
                  const struct cd__state *b)
{
    static const uint8_t zero[16];
    const uint8_t *bb = ev_bits(p, b->ev);

    if (at != b->at)
        return at > b->at;
    return memcmp(bits ? bits : zero, bb ? bb : zero, 16) > 0;
}

#endif
