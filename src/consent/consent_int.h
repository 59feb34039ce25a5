/* Inside the consent module only: the rules, the projection, recording events and binding them
 * to the ledger. What decisions and the slot table share inline is proj_int.h. */
#ifndef CD_CONSENT_INT_H
#define CD_CONSENT_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include "calendar/calendar.h"
#include "consent.h"
#include "crypto/crypto.h"

/* ---- jurisdiction rules (rules.c) ---- */

enum cd__consent_mode { CD__MODE_NOT_REQUIRED, CD__MODE_OPT_IN, CD__MODE_OPT_OUT };

#define CD__CONSENT_MAX_CAPS 16
#define CD__CONSENT_MAX_JURIS 32
#define CD__CONSENT_MAX_MATCH 48

struct cd__consent_cap {
    uint8_t purpose, channel; /* channel ANY = every channel */
    uint16_t max;
    uint16_t days;
};

struct cd__consent_juris {
    char name[16];
    char match[CD__CONSENT_MAX_MATCH][16];
    size_t nmatch;
    uint8_t mode[CD_PURPOSE__COUNT];
    int implied_days; /* CASL: implied consent lasts this long after the purchase; 0 = n/a */
    struct cd__consent_cap caps[CD__CONSENT_MAX_CAPS];
    size_t ncaps;
};

struct cd__consent_rules {
    struct cd__consent_juris j[CD__CONSENT_MAX_JURIS];
    size_t n;
    size_t def; /* index of the default (strictest) rule */
    const char *basis[CD_PURPOSE__COUNT]; /* legal basis of not-required purposes */
    unsigned gpc_purposes;                /* bit per purpose */
};

/* Loads and validates the rules file. Errors: CD_ERR_INVALID "FILE:LINE: what", CD_ERR_IO. */
enum cd_err cd__consent_rules_load(const char *path, struct cd__consent_rules *out);
/* The index of the rule for a jurisdiction code ("EU", "US-CA"); the default when unknown. */
uint8_t cd__consent_rules_find(const struct cd__consent_rules *r, struct cd_str code);

/* ---- the projection (proj.c) ---- */

enum {
    CD__SF_GPC = 1,      /* the event came from a Global Privacy Control signal */
    CD__SF_OVER_GPC = 2, /* an explicit opt-in given after a GPC opt-out */
    CD__SF_IMPLIED = 4,  /* implied consent (CASL) */
    CD__SF_UNSUB = 8,    /* one-click unsubscribe */
    CD__SF_INTEGRITY = 16, /* not an event: a customer's record failed its integrity check
                            * (bind.c) and every purpose is invalidated */
};


/* An event to apply to the projection (cd__proj_apply). */
struct cd__cstate {
    uint8_t event[16]; /* the event id's 128 bits */
    int64_t at;        /* occurred_at, ms */
    int64_t expires;   /* ms, 0 = none */
    uint32_t notice;   /* notice index + 1, 0 = none */
    uint8_t purpose, channel, state, flags;
};

/* One customer x purpose x channel state as held: the newest event for it, whose id lies in
 * the event pool (struct cd__proj). 32 bytes. */
struct cd__state {
    int64_t at;      /* occurred_at, ms */
    int64_t expires; /* ms, 0 = none */
    uint32_t notice; /* notice index + 1, 0 = none */
    uint32_t ev;     /* event pool index + 1 */
    uint8_t purpose, channel, state, flags;
};

/* States held in the customer record; more go to the overflow pool (rare: a sixth purpose or
 * channel-specific states). */
#define CD__CUST_INLINE 5

/* A customer id in the projection: the 26 Crockford base32 digits after "cus_", exactly as
 * cd_id_new writes them (canonical: upper case, first digit 0-7). A decision hashes and
 * compares the caller's string as it comes, without decoding it; a string that is not
 * canonical never equals a stored key, so it is unknown, as an id that does not parse. */
#define CD__KEY_LEN CD_ID_DIGITS

/* A customer's record: everything the projection holds about them. Records live in pages by
 * arrival order that never move (struct cd__proj), so a record pointer stays valid until the
 * projection is freed. Decisions rarely read it: its hash slot (struct cd__slot) holds what
 * they need. A writer that changes juris, tz, quiet hours or topics calls cd__proj_sync. */
struct cd__cust {
    char key[CD__KEY_LEN]; /* as in the slot */
    uint8_t juris;
    uint8_t nst;         /* states in st[] */
    uint32_t more;       /* first overflow state, pool index + 1, 0 = none */
    uint32_t idx;        /* arrival order: 0 for the first customer added, and so on */
    uint16_t tz;         /* tz cache index + 1, 0 = UTC */
    uint16_t qh_start;   /* quiet hours, minutes + 1, 0 = none */
    uint16_t qh_end;
    uint8_t rflags;      /* CD__RF_* */
    uint32_t mg;         /* merge entry index + 1 (see CD__RF_MERGED and CD__RF_GROUP), 0 = none */
    uint64_t topics_out; /* bit per topic in the topic dictionary */
    struct cd__state st[CD__CUST_INLINE];
};
_Static_assert(sizeof(struct cd__cust) == 216, "a customer record is 216 bytes");

/* What a decision reads: a customer's hash slot, one cache line holding the key and, per
 * purpose, what the verdict needs (pv) and where its event id lies (ev), so a decision reads
 * this line and nothing else unless the customer is unusual for that purpose (then pv says
 * to read the record, rec). A copy of the record's contents, rewritten by cd__proj_sync
 * whenever the record changes (inside the change). */
struct cd__slot {
    _Alignas(64) char key[CD__KEY_LEN]; /* key[0] == '\0': an empty slot */
    uint8_t juris;
    uint8_t flags; /* CD__HF_* */
    /* Per purpose: the verdict (proj_int.h, enum verdict) as far as the slot can tell it, and the
     * position k in the record's st[] of the state it rests on (CD__PV_NO_EVENT: none);
     * verdict 15 (V_RECORD): decide from the record. */
    uint8_t pv[CD_PURPOSE__COUNT];
    uint32_t ev[CD__CUST_INLINE]; /* the ev of the record's st[] */
    uint32_t rec;                 /* the record's idx */
};
_Static_assert(sizeof(struct cd__slot) == 64, "a hash slot is one cache line");

/* A record's state beyond its consents (struct cd__cust.rflags). */
enum {
    CD__RF_RESTRICTED = 1, /* processing is restricted (GDPR Art. 18) */
    CD__RF_MERGED = 2,     /* merged into another customer: mg is its own merge entry */
    CD__RF_GROUP = 4,      /* others were merged into this one: mg is the first of their entries */
};

enum {
    CD__HF_QH = 1,     /* quiet hours set: a decision for a channel reads the record */
    CD__HF_TOPICS = 2, /* topics opted out: a decision naming a topic reads the record */
    CD__HF_RESTRICTED = 4, /* CD__RF_RESTRICTED: every decision reads the record */
    CD__HF_MERGED = 8,     /* CD__RF_MERGED: every decision reads the record (the survivor's) */
    CD__HF_GROUP = 16,     /* CD__RF_GROUP: every decision reads the records of the group */
    CD__HF_RECORD = CD__HF_RESTRICTED | CD__HF_MERGED | CD__HF_GROUP,
};
enum {
    CD__PV_VERDICT = 15,
    CD__PV_K_SHIFT = 4,
    CD__PV_NO_EVENT = 7 << CD__PV_K_SHIFT,
};

/* An overflow state, chained per customer. */
struct cd__ostate {
    struct cd__state s;
    uint32_t next; /* pool index + 1, 0 = end */
};

/* A merge as the projection holds it: child was merged into parent at `at`. A group (a
 * customer with the customers merged into it, directly or through others) lists its members'
 * entries from the root's mg through next; each member's mg is its own entry. Merge times grow
 * toward the root: a customer is merged only into a live one. */
struct cd__merge {
    int64_t at;      /* merged_at, ms */
    uint32_t child;  /* record idx */
    uint32_t parent; /* record idx */
    uint32_t next;   /* the next entry of the group, index + 1, 0 = end */
};

struct cd__notice {
    uint32_t name;    /* index into names */
    uint32_t version;
    uint8_t sha[32];
    char id[CD_ID_MAX];
};

/* The hash table of slots: n slots in open addressing (linear probing; a key's home is
 * hash * n / 2^64, so n need not be a power of two), at most 4/5 full. Customers are never
 * removed, so there are no tombstones; PROBE_NEAR (proj_int.h) empty slots follow the last, so
 * the single decision's probe never wraps. Grown by copying the slots into a new table (x 5/4,
 * whole 2 MiB pages; the records do not move); the replaced table is kept (retired) until the
 * projection is freed, because a lock-free reader may still be probing it, but its pages are
 * given back to the kernel (madvise MADV_DONTNEED: a late reader reads zeros, sees empty
 * slots, and retries on the sequence counter). */
struct cd__table {
    size_t n;
    size_t bytes;              /* n * sizeof(struct cd__slot) */
    bool dropped;              /* pages given back (retired) */
    struct cd__table *retired; /* the table this one replaced */
    void *raw;                 /* what cd_calloc returned */
    struct cd__slot *r;
};

/* Records, overflow states and event ids live in fixed pages that never move; the page
 * directories are allocated once, at their first use. */
#define CD__PROJ_MAX_CUST 0xFFFFFFFFu /* rec is 32 bits */
#define CD__PROJ_CPAGE 8192u          /* records per page */
#define CD__PROJ_MAX_CPAGES (((size_t)CD__PROJ_MAX_CUST + 1) / CD__PROJ_CPAGE)
#define CD__PROJ_OPAGE 4096u
#define CD__PROJ_MAX_OPAGES 4096u /* 16 million overflow states */
#define CD__PROJ_EPAGE_SHIFT 16u
#define CD__PROJ_EPAGE (1u << CD__PROJ_EPAGE_SHIFT) /* event ids per page (1 MiB) */
#define CD__PROJ_MAX_EPAGES (1u << (32 - CD__PROJ_EPAGE_SHIFT)) /* every (ev - 1) >> shift */
#define CD__PROJ_MAX_STATES (CD_PURPOSE__COUNT * CD_CONSENT_CHANNEL__COUNT)
#define CD__PROJ_MPAGE 4096u
#define CD__PROJ_MAX_MPAGES 1024u /* 4 million merges */
#define CD__PROJ_MAX_GROUP 64u    /* members of one group a decision reads; more are left out */
#define CD__PROJ_MAX_DEPTH 16u    /* merges above one another a decision follows */

/* The event pool holds the 128 bits of the event of every state, each written once and
 * never changed or freed until the projection is: a decision points into it (struct
 * cd_consent_decision.event) instead of copying 16 bytes from a second cache line. A state
 * replaced in a shared projection gets a new entry (the old one stays, 16 bytes per event
 * applied since the start); while the projection is private (the rebuild), in place. */
struct cd__proj {
    _Atomic(struct cd__table *) table;
    _Atomic size_t ncust;
    struct cd__cust **cpage;   /* CD__PROJ_MAX_CPAGES entries */
    size_t ncpages;
    struct cd__ostate **opage; /* CD__PROJ_MAX_OPAGES entries */
    size_t nopages, nost;
    uint8_t (**epage)[16];     /* CD__PROJ_MAX_EPAGES entries */
    size_t nepages, nev;
    struct cd__merge **mpage;  /* CD__PROJ_MAX_MPAGES entries */
    size_t nmpages, nmg;
    size_t nstates; /* customer x purpose x channel states */
    bool shared;    /* visible to lock-free readers: replaced tables are retired */
    const struct cd__consent_rules *rules; /* borrowed; NULL: slots send every decision to
                                            * the records */
    struct cd__table *to_drop; /* retired in the current change; pages given back after it */
};

#define CD__CONSENT_MAX_TZ 1024
#define CD__CONSENT_MAX_TOPICS 64
#define CD__CONSENT_MAX_NOTICES 65536
#define CD__CONSENT_MAX_NAMES 4096

struct cd_consent {
    struct cd_store *store;
    struct cd__consent_rules rules;
    struct cd_crypto_signer signer;
    uint8_t key_id[CD_CRYPTO_HASH_LEN];
    uint8_t unsub_key[CD_CRYPTO_KEY_LEN];
    /* Writers hold lock for writing and bump seq around every change of proj, notices,
     * names and topics (odd while a change is in progress). Decisions read without the lock
     * (seqlock: read seq, read, check seq unchanged, else retry; after a few retries they
     * take lock for reading). Other readers take lock for reading. */
    pthread_rwlock_t lock;
    _Alignas(64) atomic_uint seq;
    _Alignas(64) struct cd__proj proj;
    struct cd__notice *notices;
    size_t nnotices;
    char (*names)[64];
    uint32_t *name_material; /* newest material version per name */
    size_t nnames;
    char topics[CD__CONSENT_MAX_TOPICS][48];
    size_t ntopics;
    /* The purposes a restriction (GDPR Art. 18) leaves allowed, bit per purpose, from the
     * purpose policy (cd_consent_set_restriction); 0 until set: a restriction denies all. */
    unsigned restriction_allows;
    /* time zones: published once, never moved, so readers index without the lock */
    pthread_mutex_t tz_mu;
    struct cd_tz *tz[CD__CONSENT_MAX_TZ];
    atomic_size_t ntz;
    /* the refresher */
    pthread_t refresher;
    bool refresher_started;
    pthread_mutex_t refresh_mu; /* one refresher pass at a time */
    pthread_mutex_t stop_mu;
    pthread_cond_t stop_cv;
    bool stopping;
    int64_t refreshed_until;
    /* What other servers changed (cd_consent_changed): one catch-up at a time, and the number
     * of the last consent event applied by it or loaded by the rebuild. */
    pthread_mutex_t changes_mu;
    int64_t events_upto;
};

/* Projection operations. "read" means: c->lock for reading, or inside a seqlock read
 * section (then every pointer followed is checked and the result validated by seq). */
void cd__proj_free(struct cd__proj *p);
/* Finds the customer by the 128 bits of its id, or by its key (read). NULL when absent. */
struct cd__cust *cd__proj_find(const struct cd__proj *p, const uint8_t key[16]);
struct cd__cust *cd__proj_find_key(const struct cd__proj *p, const char key[CD__KEY_LEN]);
/* Finds or adds the customer (write lock). May grow the table (the slots move, the records
 * do not). Errors: CD_ERR_NOMEM, CD_ERR_TOO_BIG. */
enum cd_err cd__proj_upsert(struct cd__proj *p, const uint8_t key[16], struct cd__cust **out);
/* Gives back the pages of the table retired in the current change (write lock, after the
 * change's sequence number went even again). */
void cd__proj_drop_retired(struct cd__proj *p);
/* Sets the state for (purpose, channel) unless a newer one is held, and syncs the customer's
 * slot (write lock). */
enum cd_err cd__proj_apply(struct cd__proj *p, struct cd__cust *cu, const struct cd__cstate *s);
/* Rewrites the customer's slot from the record: after a writer changed juris, tz, quiet hours,
 * topics or rflags (write lock). */
void cd__proj_sync(struct cd__proj *p, const struct cd__cust *cu);
/* Records that child was merged into parent at `at` (write lock): from then on a decision for
 * either answers for the group's root, from the states of all its members. Applying a merge
 * again, or merges in any order, gives the same projection. Errors: CD_ERR_NOMEM,
 * CD_ERR_TOO_BIG, CD_ERR_INVALID (a customer merged into itself). */
enum cd_err cd__proj_merge(struct cd__proj *p, struct cd__cust *child, struct cd__cust *parent,
                           int64_t at);
/* The root of cu's group (cu unless it was merged), or NULL on a torn read (read). */
const struct cd__cust *cd__proj_root(const struct cd__proj *p, const struct cd__cust *cu);
/* The merge entry index + 1 i1, or NULL (read). */
const struct cd__merge *cd__proj_merge_entry(const struct cd__proj *p, uint32_t i1);
/* The record of idx, or NULL (read). */
const struct cd__cust *cd__proj_record(const struct cd__proj *p, uint32_t idx);
/* Walks a customer's states: struct cd__proj_it it = {0}; while ((s = cd__proj_next(..)))
 * (read). Bounded, so a torn read under the seqlock cannot loop. */
struct cd__proj_it {
    unsigned k;
    bool in_more;
    uint32_t more;
};
const struct cd__state *cd__proj_next(const struct cd__proj *p, const struct cd__cust *cu,
                                       struct cd__proj_it *it);
/* The state for (purpose, channel) exactly, or NULL (read). */
const struct cd__state *cd__proj_state(const struct cd__proj *p, const struct cd__cust *cu,
                                        unsigned purpose, unsigned channel);
/* The newest of (purpose, channel) and (purpose, ANY), or NULL (read). */
const struct cd__state *cd__proj_applicable(const struct cd__proj *p, const struct cd__cust *cu,
                                             unsigned purpose, unsigned channel);
/* The writer side of c->lock and c->seq. */
void cd__consent_wlock(struct cd_consent *c);
void cd__consent_wunlock(struct cd_consent *c);

/* A tz cache index + 1 for a zone name (0 for empty/unknown zones: UTC). Loads the file once. */
uint16_t cd__consent_tz_index(struct cd_consent *c, struct cd_str name);
/* A topic's bit index, adding it when add is true (caller holds the write lock when adding).
 * -1 when unknown (or the dictionary is full). */
int cd__consent_topic(struct cd_consent *c, struct cd_str name, bool add);
/* Adds a notice to the in-memory list (write lock). */
enum cd_err cd__consent_notice_add(struct cd_consent *c, const char *id, struct cd_str name,
                                   uint32_t version, bool material, const uint8_t sha[32]);
/* A notice index + 1 by id, 0 when unknown (read lock). */
uint32_t cd__consent_notice_find(const struct cd_consent *c, struct cd_str id);

/* ---- the rebuild (rebuild.c) ---- */

/* Rebuilds proj, notices and meta from the tables into p (no lock needed: p is private). */
enum cd_err cd__consent_rebuild(struct cd_consent *c, struct cd__proj *p);

/* ---- customer attributes and the refresher (refresh.c) ---- */

/* A customer's attributes as the core gives them, for the projection: its
 * jurisdiction rule and time zone (looked up before the write lock: the zone may load a file),
 * its restriction, and the customer it was merged into (survivor "" when none). */
struct cd__cattr {
    uint8_t key[16];
    uint8_t juris;
    uint16_t tz;
    bool restricted;
    char survivor[CD_ID_MAX]; /* "" when not merged */
    int64_t merged_at;
};

/* The projection's form of the core's attributes of a customer; false when the id is not a
 * customer id. Looks the time zone up (may load its file): call before the write lock. */
struct cd_core_customer_attrs;
bool cd__consent_cattr_from(struct cd_consent *c, const struct cd_core_customer_attrs *in,
                            struct cd__cattr *a);
/* Applies a customer's attributes to p (write lock, or p private), and its merge when it was
 * merged and `merges` is true. Errors: those of cd__proj_upsert and cd__proj_merge. */
enum cd_err cd__consent_cattr_apply(struct cd__proj *p, const struct cd__cattr *a, bool merges);
enum cd_err cd__consent_refresher_start(struct cd_consent *c);
void cd__consent_refresher_stop(struct cd_consent *c);
/* One pass of the refresher: every customer changed since the last pass (refresh_mu held). */
void cd__consent_refresh_once(struct cd_consent *c);
/* Re-reads one customer's jurisdiction, time zone, restriction and merge, and updates the
 * projection. *exists: the core knows the customer (merged or not). */
enum cd_err cd__consent_refresh_customer(struct cd_consent *c, struct cd_str customer_id,
                                         bool *exists);

/* ---- recording events (ledger.c), for the files that record one ---- */

/* The longest jurisdiction code a consent event may name, in bytes: the API's limit (a
 * customer's is CD_CUSTOMER_JURISDICTION_MAX). */
#define CD__EVENT_JURISDICTION_MAX 31
#define CD__DAY_MS (86400LL * 1000)

/* The channel names by enum cd_consent_channel, "*" first. */
extern const char *const cd__consent_channel_names[CD_CONSENT_CHANNEL__COUNT];

/* One event, fully validated, ready to be written. Strings are borrowed or inline. */
struct cd__ev {
    char id[CD_ID_MAX];
    char customer_id[CD_ID_MAX];
    enum cd_purpose purpose;
    enum cd_consent_channel channel;
    enum cd_consent_state state;
    char basis[32];
    char jurisdiction[CD__EVENT_JURISDICTION_MAX + 1];
    char notice_id[CD_ID_MAX];
    uint8_t notice_sha[32];
    bool has_notice, has_notice_sha;
    char method[16];
    char collector[128];
    char evidence[256];
    char language[16];
    int64_t expires_at, occurred_at, recorded_at, purchase_at;
    unsigned flags;
    const struct cd_actor *actor;
    const char *request_id;
    const char *audit_action;
    /* the signed receipt */
    char *receipt;
    size_t receipt_len;
    uint8_t sig[CD_CRYPTO_SIG_LEN];
    /* unsubscribe: the nonce to mark used in the same transaction */
    const uint8_t *nonce;
};

/* A new event by actor a (NULL: the system) for the audit action `action`: a fresh id, the
 * recording time, everything else zero. */
void cd__consent_ev_init(struct cd__ev *e, const struct cd_actor *a, const char *action);
/* Signs the receipt, writes the event with its audit entry in one transaction and applies it to
 * the projection; *out (may be NULL) gets the event as JSON. e->receipt is the caller's to free.
 * Errors: CD_ERR_NOT_FOUND (customer or notice), CD_ERR_INVALID (a notice hash that is not the
 * notice's; implied consent where the rules have none, or without a purchase), CD_ERR_STORE,
 * CD_ERR_CRYPTO, CD_ERR_NOMEM. */
enum cd_err cd__consent_record_ev(struct cd_consent *c, struct cd__ev *e, json_t **out);
/* Copies s into dst (capacity n), cut to fit and terminated. */
void cd__consent_copy(char *dst, size_t n, struct cd_str s);
/* True if s is valid UTF-8 of at most max bytes without control characters. */
bool cd__consent_printable(struct cd_str s, size_t max);

/* ---- binding events to the ledger (bind.c) ----
 *
 * A consent event's columns, in this order, are its canonical form: SHA-256 over an injective
 * encoding of them is the data_sha256 of its ledger entry (whose seq the row keeps in
 * audit_seq). The receipt is bound through its signature, which the form includes. */
#define CD__CONSENT_EVENT_COLS                                                                 \
    "id, customer_id, purpose, channel, state, state_code, legal_basis, jurisdiction,"          \
    " notice_id, notice_sha256, method, collector, evidence, expires_at, occurred_at,"          \
    " recorded_at, request_id, actor_token, flags, signature, language, purchase_at"
enum {
    CD__EC_ID, CD__EC_CUSTOMER, CD__EC_PURPOSE, CD__EC_CHANNEL, CD__EC_STATE, CD__EC_STATE_CODE,
    CD__EC_BASIS, CD__EC_JURISDICTION, CD__EC_NOTICE_ID, CD__EC_NOTICE_SHA, CD__EC_METHOD,
    CD__EC_COLLECTOR, CD__EC_EVIDENCE, CD__EC_EXPIRES, CD__EC_OCCURRED, CD__EC_RECORDED,
    CD__EC_REQUEST, CD__EC_ACTOR, CD__EC_FLAGS, CD__EC_SIGNATURE, CD__EC_LANGUAGE,
    CD__EC_PURCHASE, CD__EC__COUNT
};

/* The canonical digest of an event's columns (cols[CD__EC__COUNT], as stored or about to be).
 * Errors: those of cd_crypto_sha256, CD_ERR_NOMEM. */
enum cd_err cd__consent_event_digest(const struct cd_val *cols, uint8_t out[32]);
/* Whether the ledger entry binds the event: a consent.* entry naming the event id whose
 * data_sha256 is digest. Returns NULL when it does, else what differs. */
const char *cd__consent_entry_binds(struct cd_str entry, const struct cd_val *cols,
                                    const uint8_t digest[32]);
/* Whether the signed receipt says what the columns say: its signature under pk (NULL: not
 * checked) and every column it carries. *column gets NULL when it does, else the first column
 * that differs ("signature" when the signature does not verify). Errors: CD_ERR_NOMEM (then
 * nothing was found). */
enum cd_err cd__consent_receipt_differs(const struct cd_val *cols, struct cd_str receipt,
                                        const uint8_t *pk, const char **column);
/* Binds the events recorded before binding existed (audit_seq NULL): each whose signed receipt
 * agrees with its columns gets a consent.bind ledger entry carrying its digest. The others stay
 * unbound, are reported, and count as integrity failures in the projection. Errors:
 * CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd__consent_bind_legacy(struct cd_consent *c);
/* The projection's answer to an event that does not verify: every purpose of the customer is
 * invalidated until the record is repaired (write lock, or a private projection). */
enum cd_err cd__consent_taint(struct cd__proj *p, const uint8_t key[16], const uint8_t event[16]);

#endif
