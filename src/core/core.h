/* core — customers, their identities, and the omnichannel interactions on their timeline.
 *
 * Owns: the customers, identities, interactions, idempotency and merges tables (through the
 * store); identity normalisation (email, E.164 phone, social handles, external ids); identity
 * resolution (an interaction names an identity, core finds or creates the customer); merges;
 * the timeline with keyset cursors; the field-category trimming of every customer-data
 * response (a caller passes the categories its purpose may see, core returns nothing else).
 *
 * Input and output are jansson values: handlers hand over the parsed request body, core
 * validates it (errors name the member) and returns a new JSON value the caller owns.
 * Must never: know about HTTP (no status codes, no headers).
 *
 * Threads: every function may be called from any thread; struct cd_core is immutable after
 * cd_core_open, except the hooks, which are set once before serving. */
#ifndef CD_CORE_H
#define CD_CORE_H

#include "base/base.h"
#include "policy/policy.h"
#include "store/store.h"

struct cd_core;

/* A customer's data key opened for another module that keeps personal data of that customer
 * in its own tables (cd_core_vault_open). Opaque; wiped by cd_core_vault_close. */
struct cd_core_vault;

/* What the capabilities that follow interactions (cases) may learn of one before its write,
 * on the caller's thread, while its text is still in clear. Borrowed for the call. */
struct cd_core_content {
    const char *direction; /* "inbound" or "outbound" */
    const char *channel;
    const char *purpose;
    struct cd_str subject, body; /* inbound text after masking; empty when absent */
    const json_t *metadata;      /* the request's metadata object, or NULL */
};

/* An interaction inside the write transaction that stores it, after its row and its audit
 * event. Borrowed for the call. */
struct cd_core_recorded {
    const struct cd_actor *actor;
    const char *id, *customer_id, *channel, *direction, *purpose;
    int64_t occurred_at, created_at;
    bool customer_created;
    bool threaded; /* it carries a thread_id */
    /* Earlier interactions of the same customer on the same thread, newest first (at most
     * CD_CORE_THREAD_PREV_MAX; none without a thread_id). */
    const char (*thread_prev)[CD_ID_MAX];
    size_t nthread_prev;
    const json_t *note; /* what the annotate hook gave for this interaction, or NULL */
};
#define CD_CORE_THREAD_PREV_MAX 8

/* A supervisor's reasoned overrides on an outbound message: the body's guard_override (of a
 * guard block) and purpose_override (of content that does not fit the declared purpose). The
 * reasons are borrowed from the request body. */
struct cd_core_overrides {
    bool guard, purpose;
    struct cd_str guard_reason, purpose_reason;
};

/* Validation and enforcement hooks the other capabilities plug into the ingestion path.
 * Each may be NULL. They run before anything is stored, except recorded and customer_merged,
 * which run inside the write they follow. */
struct cd_core_hooks {
    void *ctx;
    /* Outbound messages: may refuse (CD_ERR_PURPOSE_DENIED, CD_ERR_CONSENT_DENIED,
     * CD_ERR_GUARD_BLOCKED, CD_ERR_PURPOSE_MISMATCH with a detail) or attach findings
     * (*annotation, a JSON object the caller owns that is stored with the interaction, in
     * clear, and returned). `body` is the text about to be sent; `topic` the message's topic
     * (the interaction's metadata.topic, empty when it names none); ov the overrides (NULL:
     * none). An override the hook honoured is described in the annotation: "overridden":
     * true with "overridden_rules" and "override_reason" (a guard block), "purpose_override":
     * {"rules", "reason"} (a purpose mismatch); reasons as the hook would have them kept
     * (personal data masked). On a refusal with findings, *annotation holds them. */
    enum cd_err (*outbound_check)(void *ctx, const struct cd_actor *actor,
                                  const char *customer_id, const char *channel,
                                  const char *purpose, struct cd_str topic, struct cd_str body,
                                  const struct cd_core_overrides *ov, json_t **annotation);
    /* Inbound messages: may rewrite the body before storage (masking card numbers). *out is
     * cd_malloc'ed or NULL to keep the body as is. */
    enum cd_err (*inbound_filter)(void *ctx, struct cd_str body, char **out, size_t *outlen);
    /* Reads for a purpose that needs consent: CD_OK to allow, an error with a detail to
     * refuse. Without this hook such reads are refused. */
    enum cd_err (*read_consent)(void *ctx, const char *customer_id, const char *purpose);
    /* After a committed change of a customer's restriction, merge (called for both ids) or
     * profile, before the change is answered: capabilities that keep their own view of
     * customers (the consent engine) take it at once. */
    void (*customer_changed)(void *ctx, const char *customer_id);
    /* Every interaction (either direction), before its write and after inbound masking: what
     * the capabilities that follow interactions need to know of its content, which the write
     * keeps sealed, as a JSON object the caller owns (*note; NULL: nothing). An error refuses
     * the interaction. */
    enum cd_err (*annotate)(void *ctx, const struct cd_actor *actor,
                            const struct cd_core_content *in, json_t **note);
    /* Every new interaction (not a replay), inside its write transaction: keeps other
     * capabilities' records in step with it (cases open, reopen and stop their clocks). On the
     * store's writer thread: SQL and computation only, no blocking. An error fails the write
     * (with the interaction); the function may run twice for one write (store.h). */
    enum cd_err (*recorded)(void *ctx, struct cd_tx *tx, const struct cd_core_recorded *r);
    /* Inside a merge's write transaction, after core moved its own rows: the module moves
     * what it keeps of `merged` to `survivor`, re-sealing values sealed for merged (opened
     * with from) for the survivor (with to). Both vaults are valid for the call only. */
    enum cd_err (*customer_merged)(void *ctx, struct cd_tx *tx, const char *merged,
                                   const char *survivor, const struct cd_core_vault *from,
                                   const struct cd_core_vault *to);
};

/* Opens core on an open store with the master key (32 bytes, copied). The caller keeps
 * ownership of store. */
enum cd_err cd_core_open(struct cd_store *store, const uint8_t master[32], struct cd_core **out);
struct cd_store *cd_core_store(struct cd_core *c);
void cd_core_set_hooks(struct cd_core *c, const struct cd_core_hooks *hooks);

/* How far ahead of the server's clock an interaction's occurred_at may be (clock skew between
 * the sending system and this one); later times are refused. Set once before serving. */
#define CD_CORE_FUTURE_SKEW_DEFAULT_MS (24LL * 3600 * 1000)
void cd_core_set_future_skew(struct cd_core *c, int64_t ms);
void cd_core_close(struct cd_core *c);

/* Optional idempotency for a write: the same scope+key with the same request hash replays the
 * first result (*replayed = true); with a different hash the write fails with
 * CD_ERR_IDEMPOTENCY and nothing changes. */
struct cd_idem {
    const char *scope; /* e.g. token id + route */
    struct cd_str key;
    uint8_t request_hash[32];
};

/* ---- identities ---- */

/* Normalises an identity: email (lower-cased, shape checked), phone (E.164 with a valid
 * country code; formatting characters dropped; "00" prefix accepted), social (handle without
 * '@', lower-cased, network from a known list), external (system + id, exact).
 * Writes the canonical value to out (a buffer with a max). Errors: CD_ERR_INVALID. */
enum cd_err cd_core_identity_normalize(struct cd_str type, struct cd_str network,
                                       struct cd_str value, struct cd_buf *out);

/* ---- sealed values kept by other modules ---- */

/* Opens customer_id's data key, read inside tx (a read or write transaction of the caller),
 * for sealing and opening values another module keeps about the customer in its own tables.
 * Errors: CD_ERR_NOT_FOUND (no such live customer: unknown or merged), CD_ERR_CRYPTO (the
 * customer was erased: the key is destroyed), CD_ERR_STORE, CD_ERR_NOMEM. The caller closes
 * *out with cd_core_vault_close, which wipes the key. */
enum cd_err cd_core_vault_open(struct cd_core *c, struct cd_tx *tx, struct cd_str customer_id,
                               struct cd_core_vault **out);
void cd_core_vault_close(struct cd_core_vault *v);
/* The customer the vault is for (borrowed from v). */
const char *cd_core_vault_customer(const struct cd_core_vault *v);
/* Seals plain under the vault's key, bound to the customer and to `field` (a name that says
 * which table, row and column it belongs to, "cases.sealed:cas_...": a value copied to
 * another row does not open). out is reset first. Errors: CD_ERR_NOMEM, CD_ERR_TOO_BIG. */
enum cd_err cd_core_vault_seal(const struct cd_core_vault *v, const char *field,
                               struct cd_str plain, struct cd_buf *out);
/* Opens a value sealed by cd_core_vault_seal for the same customer and field into out (reset
 * first); a NULL column gives *present = false. Errors: CD_ERR_CRYPTO (does not open: edited,
 * copied from elsewhere), CD_ERR_NOMEM, CD_ERR_TOO_BIG. */
enum cd_err cd_core_vault_unseal(const struct cd_core_vault *v, const char *field,
                                 struct cd_val sealed, struct cd_buf *out, bool *present);

/* ---- for other modules, inside their own transactions ---- */

/* An interaction's customer (as stored: a merge moves interactions to the survivor), its
 * direction ("inbound"/"outbound", at least 9 bytes) and when it occurred, inside tx.
 * Errors: CD_ERR_NOT_FOUND, CD_ERR_STORE. */
enum cd_err cd_core_interaction_facts(struct cd_tx *tx, struct cd_str id,
                                      char customer_id[CD_ID_MAX], char direction[16],
                                      int64_t *occurred_at);

/* Idempotency of another module's create, in core's table (keys kept as keyed hashes):
 * _check inside the write gives the resource a replay answers for (resource_id[0] == '\0':
 * none); a key used with another request is CD_ERR_IDEMPOTENCY. _record stores it with the
 * new resource, in the same write. idem NULL: no key, nothing happens. Errors: CD_ERR_STORE. */
enum cd_err cd_core_idem_check(struct cd_core *c, struct cd_tx *tx, const struct cd_idem *idem,
                               char resource_id[CD_ID_MAX]);
enum cd_err cd_core_idem_record(struct cd_core *c, struct cd_tx *tx, const struct cd_idem *idem,
                                const char *resource_id);

/* ---- customers ---- */

/* The answers of the writes below (create, update, add an identity, merge) are reads of the
 * customer under the actor's purpose: with fields beyond CD_FIELDS_REFERENCE, restriction and
 * consent are checked and the read is recorded ("customer.read"); a read they refuse is
 * recorded as refused and the answer keeps the reference fields only (the write stands). With
 * CD_FIELDS_REFERENCE alone nothing personal is answered and no read is recorded. */

/* Body: {"display_name"?, "attributes"?: {..}, "locale"?, "time_zone"?, "jurisdiction"?,
 * "identities"?: [{"type","value","network"?}]}. *out: the customer, trimmed to fields.
 * Errors: CD_ERR_INVALID, CD_ERR_CONFLICT (an identity already belongs to another customer),
 * CD_ERR_IDEMPOTENCY, CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_core_customer_create(struct cd_core *c, const struct cd_actor *a,
                                    const json_t *body, const struct cd_idem *idem,
                                    unsigned fields, json_t **out, bool *replayed);

/* The customer. A merged customer answers {"id","status":"merged","merged_into"}.
 * Errors: CD_ERR_NOT_FOUND, CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_core_customer_get(struct cd_core *c, const struct cd_actor *a, struct cd_str id,
                                 unsigned fields, json_t **out);

/* For answers about a customer that core does not build (their consents, their access log):
 * checks that the actor's purpose may read the customer's data (restriction, consent; a
 * refusal is recorded and returned as CD_ERR_PURPOSE_DENIED), then records the read as
 * `action` with `categories` (borrowed), durably, before the caller answers. resolved gets the
 * customer the id stands for (a merged id's survivor). Errors: CD_ERR_NOT_FOUND,
 * CD_ERR_PURPOSE_DENIED, CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_core_customer_read_gate(struct cd_core *c, const struct cd_actor *a,
                                       struct cd_str id, const char *action,
                                       const char *categories, char resolved[CD_ID_MAX]);

/* Finds the customer holding an identity. Errors: CD_ERR_INVALID, CD_ERR_NOT_FOUND. */
enum cd_err cd_core_customer_find(struct cd_core *c, const struct cd_actor *a, struct cd_str type,
                                  struct cd_str network, struct cd_str value, unsigned fields,
                                  json_t **out);

/* Lists customers (newest first), cursor-paginated: {"items":[...],"next_cursor":...}. */
enum cd_err cd_core_customer_list(struct cd_core *c, const struct cd_actor *a,
                                  struct cd_str cursor, int limit, unsigned fields, json_t **out);

/* Applies a partial update ({"display_name","attributes","locale","time_zone","jurisdiction"};
 * null removes). Errors: CD_ERR_INVALID, CD_ERR_NOT_FOUND, CD_ERR_CONFLICT (merged). */
enum cd_err cd_core_customer_update(struct cd_core *c, const struct cd_actor *a, struct cd_str id,
                                    const json_t *patch, unsigned fields, json_t **out);

/* Adds an identity {"type","value","network"?} to a customer.
 * Errors: CD_ERR_INVALID, CD_ERR_NOT_FOUND, CD_ERR_CONFLICT (held by another customer). */
enum cd_err cd_core_identity_add(struct cd_core *c, const struct cd_actor *a, struct cd_str id,
                                 const json_t *body, unsigned fields, json_t **out);

/* Restricts (GDPR Art. 18) or lifts the restriction of processing of a customer's data:
 * while restricted, reads are refused to every purpose but those the policy allows
 * (legal_obligation, security). The change is recorded in the ledger.
 * Errors: CD_ERR_NOT_FOUND, CD_ERR_CONFLICT (merged). */
enum cd_err cd_core_customer_restrict(struct cd_core *c, const struct cd_actor *a,
                                      struct cd_str id, bool restricted, unsigned fields,
                                      json_t **out);
/* The same inside the caller's transaction (a data-subject request completed with it), for a
 * customer id (NUL-terminated). Errors: CD_ERR_NOT_FOUND, CD_ERR_CONFLICT, CD_ERR_STORE. */
enum cd_err cd_core_customer_restrict_in(struct cd_tx *tx, const struct cd_actor *a,
                                         const char *id, bool restricted);

/* Erasure by crypto-shredding, inside the caller's transaction (a data-subject request's, so
 * the request, its tombstone and the erasure commit together): destroys the customer's data
 * key and deletes their interactions, identities (with their blind indexes), idempotency
 * records, possible-duplicate links and every sealed column, and records customer.erase in the
 * ledger. Every copy of their personal data elsewhere (backups, replicas) is ciphertext under
 * a key that no longer exists (see docs/crypto.md for the backup window). The customer id stays
 * and answers "erased". *n counts what was deleted (no personal data). Call
 * cd_core_customer_erase_done once the transaction committed or failed.
 * Errors: CD_ERR_NOT_FOUND, CD_ERR_CONFLICT (merged: erase the survivor; already erased),
 * CD_ERR_STORE. */
struct cd_core_erase_counts {
    int64_t interactions, identities, idempotency_keys, links;
};
enum cd_err cd_core_customer_erase_in(struct cd_tx *tx, const struct cd_actor *a,
                                      struct cd_str id, struct cd_core_erase_counts *n);
/* After an erasure's transaction: empties the owner cache (it may hold the destroyed wrapped
 * key) and, when it committed, checkpoints the write-ahead log so no page image of the key
 * stays there. */
void cd_core_customer_erase_done(struct cd_core *c, bool committed);
/* cd_core_customer_erase_in in a write of its own, then cd_core_customer_erase_done; *out: the
 * customer's reference fields (status "erased"). Errors: as cd_core_customer_erase_in. */
enum cd_err cd_core_customer_shred(struct cd_core *c, const struct cd_actor *a, struct cd_str id,
                                   json_t **out);

/* Several servers on one database: a merge or an erasure made by another server changes the
 * owner of identities (or destroys a key) that this server's owner cache may hold. Both
 * announce CD_CORE_TOPIC_OWNERS in their transaction; given it (or NULL, a full resync after
 * the store's feed was reconnected), this forgets every cached owner, as the server that made
 * the change does. Other topics are ignored. Any thread (the store's feed thread). */
#define CD_CORE_TOPIC_OWNERS "core.owners"
void cd_core_changed(struct cd_core *c, const char *topic);

/* Merges customer `merged` into `survivor`: identities and interactions move, the merged id
 * then answers with a pointer to the survivor, a restriction of either holds for the survivor,
 * and the merge is recorded.
 * Errors: CD_ERR_INVALID (same id), CD_ERR_NOT_FOUND, CD_ERR_CONFLICT (either already merged). */
enum cd_err cd_core_customer_merge(struct cd_core *c, const struct cd_actor *a,
                                   struct cd_str survivor, struct cd_str merged, unsigned fields,
                                   json_t **out);

/* ---- what other modules may know of customers and interactions (src/core/refs.c) ---- */

/* A customer as another module sees it inside its own transaction: no personal data but the
 * jurisdiction code, which decides the law that applies. */
struct cd_core_customer_ref {
    char id[CD_ID_MAX];
    bool exists;
    char merged_into[CD_ID_MAX]; /* "" unless merged */
    bool erased;
    bool restricted;
    char jurisdiction[16]; /* "" when none is known */
};
/* Reads the customer id inside tx (a malformed id is simply not found).
 * Errors: CD_ERR_STORE. */
enum cd_err cd_core_customer_ref(struct cd_tx *tx, struct cd_str id,
                                 struct cd_core_customer_ref *out);

/* An interaction as another module sees it: whose it is, which way it went, when. */
struct cd_core_interaction_ref {
    bool exists;
    char customer_id[CD_ID_MAX];
    char direction[12];
    int64_t occurred_at;
};
/* Reads the interaction id inside tx (a malformed id is simply not found).
 * Errors: CD_ERR_STORE. */
enum cd_err cd_core_interaction_ref(struct cd_tx *tx, struct cd_str id,
                                    struct cd_core_interaction_ref *out);

/* A customer's attributes as a module that keeps its own view of customers needs them
 * (consent's projection): the law that applies and the local time, the restriction, and the
 * merge. No personal data but the jurisdiction code and the time zone. Strings are borrowed
 * from the row for the duration of the callback. */
struct cd_core_customer_attrs {
    struct cd_str id;
    struct cd_str jurisdiction; /* empty when none */
    struct cd_str time_zone;    /* empty when none */
    bool restricted;
    struct cd_str survivor_id; /* the customer it was merged into; empty when not merged */
    int64_t merged_at;         /* 0 when not merged */
    int64_t updated_at;        /* stamped by every change: profile, restriction, merge */
};
typedef enum cd_err (*cd_core_attrs_fn)(void *ctx, const struct cd_core_customer_attrs *a);
/* Inside tx, calls fn with the attributes of customer id; not at all when there is none.
 * Errors: CD_ERR_STORE, fn's. */
enum cd_err cd_core_customer_attrs(struct cd_tx *tx, struct cd_str id, cd_core_attrs_fn fn,
                                   void *ctx);
/* Inside tx, calls fn for every customer, in id order. An error from fn stops the walk and is
 * returned. Errors: CD_ERR_STORE, fn's. */
enum cd_err cd_core_customers_attrs(struct cd_tx *tx, cd_core_attrs_fn fn, void *ctx);
/* Inside tx, calls fn for at most limit customers whose (updated_at, id) comes after
 * (after_ms, after_id), in that order: a page of the customers changed since. Errors: as
 * cd_core_customers_attrs. */
enum cd_err cd_core_customers_changed(struct cd_tx *tx, int64_t after_ms, struct cd_str after_id,
                                      int limit, cd_core_attrs_fn fn, void *ctx);

/* Inside tx, calls fn for every merge in the order they happened (merged_at, then the merged
 * id); the ids are borrowed for the call. Errors: CD_ERR_STORE, fn's. */
typedef enum cd_err (*cd_core_merge_fn)(void *ctx, struct cd_str merged_id,
                                        struct cd_str survivor_id, int64_t merged_at);
enum cd_err cd_core_merges(struct cd_tx *tx, cd_core_merge_fn fn, void *ctx);

/* Inside tx, the number of outbound interactions of customer_id for purpose that occurred at
 * or after since_ms, on channel (NULL: on any channel), for frequency caps.
 * Errors: CD_ERR_STORE. */
enum cd_err cd_core_outbound_count(struct cd_tx *tx, struct cd_str customer_id,
                                   const char *purpose, const char *channel, int64_t since_ms,
                                   int64_t *count);

/* A note another module keeps about a customer (a request's details, a reason written to the
 * customer), sealed under the customer's data key with field as associated data, so erasing
 * the customer shreds it too. *out is reset first. Each reads the key in its own read
 * transaction. Errors: CD_ERR_NOT_FOUND (no such customer), CD_ERR_CRYPTO (the customer was
 * erased: the key is gone), CD_ERR_INTEGRITY (a sealed note that does not open under its
 * customer and field), CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_core_note_seal(struct cd_core *c, struct cd_str customer_id, const char *field,
                              struct cd_str plain, struct cd_buf *out);
enum cd_err cd_core_note_open(struct cd_core *c, struct cd_str customer_id, const char *field,
                              struct cd_val sealed, struct cd_buf *out);

enum cd_core_customer_state {
    CD_CORE_CUSTOMER_UNKNOWN, /* no customer has this id (or it is malformed) */
    CD_CORE_CUSTOMER_LIVE,
    CD_CORE_CUSTOMER_ERASED, /* crypto-shredded: the id and the record of what happened stay */
};

/* Resolves id through merges inside tx: *state says whether a customer has the id, and
 * resolved gets the id of the customer it now is (the survivor when it was merged, else id
 * itself; "" when unknown) and *merged whether that differs. Errors: CD_ERR_STORE. */
enum cd_err cd_core_customer_resolve(struct cd_tx *tx, struct cd_str id,
                                     char resolved[CD_ID_MAX], bool *merged,
                                     enum cd_core_customer_state *state);

/* The ids of every customer merged into survivor, directly or through earlier merges, as a
 * new JSON array of strings (empty when none) the caller owns. Errors: CD_ERR_STORE,
 * CD_ERR_NOMEM. */
enum cd_err cd_core_customer_merged_ids(struct cd_tx *tx, struct cd_str survivor, json_t **ids);

/* ---- retention (the rules and the job are src/retention's) ---- */

/* The next page of interactions of purpose whose retention ended, by id after after_id (""
 * for the first page), at most limit: those that occurred before cutoff, or, with
 * after_last_contact, all of a customer's whose newest interaction (any purpose) is older
 * than cutoff. *out: a new JSON array of [interaction id, customer id] the caller owns.
 * Errors: CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_core_interactions_expiring(struct cd_core *c, const char *purpose, int64_t cutoff,
                                          bool after_last_contact, const char *after_id,
                                          int limit, json_t **out);

/* Deletes the interactions ids names ([[interaction id, customer id], ...], as
 * cd_core_interactions_expiring gives them) in one write, with what was derived from them
 * (their Idempotency-Key records, re-sealing marks), and records one ledger event per
 * customer ("interactions.expire", resource run_id). *deleted: rows deleted (an id deleted
 * meanwhile counts nothing). Errors: CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_core_interactions_expire(struct cd_core *c, const struct cd_actor *a,
                                        const json_t *ids, const char *run_id, uint64_t *deleted);

/* The next page of live customers (not merged, not erased) with no contact since cutoff:
 * created and last changed before it, and no interaction at or after it. Ids after after_id,
 * at most limit, as a new JSON array of strings. Errors: CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_core_customers_inactive(struct cd_core *c, int64_t cutoff, const char *after_id,
                                       int limit, json_t **out);

/* Deletes (or with dry_run counts) the Idempotency-Key records made before cutoff; *n gets
 * how many. Errors: CD_ERR_STORE. */
enum cd_err cd_core_idempotency_expire(struct cd_core *c, int64_t cutoff, bool dry_run,
                                       uint64_t *n);

/* ---- possible duplicates ---- */

/* A customer created from an identity that looks like another customer's (equal UTS #39
 * confusable skeletons, one of the two values beyond ASCII) is linked to that customer as a
 * possible duplicate ("reason": "confusable"); so are two customers whose identities became
 * one when identities were normalised again on an upgrade ("normalisation"). Nothing is
 * merged on a resemblance: a supervisor merges or dismisses. */

/* Lists links, newest first, with status "open" (empty: open), "merged", "dismissed" or "all":
 * {"items":[{"id","status","reason","identity_type","customer_id","other_customer_id",
 * "created_at","resolved_at","resolved_by"}],"next_cursor"}. An open link also carries
 * "identities": [{"customer_id","value","unusual_characters":["U+0430 CYRILLIC SMALL LETTER
 * A",..]}] when fields include contact data and both customers may be read for the purpose;
 * each such read is audited for its customer ("possible_duplicate.read").
 * Errors: CD_ERR_INVALID (status, cursor, limit 1..200), CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_core_duplicates_list(struct cd_core *c, const struct cd_actor *a,
                                    struct cd_str status, struct cd_str cursor, int limit,
                                    unsigned fields, json_t **out);

/* Merges the two customers of an open link (cd_core_customer_merge, which closes the link as
 * "merged"); survivor is one of them, or empty for the customer who held the look-alike first.
 * *out: the link. Errors: CD_ERR_NOT_FOUND, CD_ERR_CONFLICT (not open, or a customer was
 * merged or erased), CD_ERR_INVALID (survivor not one of the two). */
enum cd_err cd_core_duplicate_merge(struct cd_core *c, const struct cd_actor *a, struct cd_str id,
                                    struct cd_str survivor, json_t **out);

/* Dismisses an open link: the two are different people. Recorded in the ledger. *out: the
 * link. Errors: CD_ERR_NOT_FOUND, CD_ERR_CONFLICT (not open). */
enum cd_err cd_core_duplicate_dismiss(struct cd_core *c, const struct cd_actor *a,
                                      struct cd_str id, json_t **out);

/* ---- interactions ---- */

/* Ingests one interaction. Body: {"customer_id" | "identity": {"type","value","network"?},
 * "channel", "direction", "occurred_at"? (not before 1970, not beyond the future skew),
 * "thread_id"?, "subject"?, "body"?, "metadata"?: {..}, "purpose"? (default "service"),
 * "guard_override"?: {"reason"}, "purpose_override"?: {"reason"}} (reasons of 10 to 500
 * characters). An identity that no customer holds creates the customer. Outbound messages pass
 * the outbound hook first.
 * Errors: CD_ERR_INVALID, CD_ERR_NOT_FOUND (customer_id), CD_ERR_GUARD_BLOCKED,
 * CD_ERR_PURPOSE_MISMATCH, CD_ERR_PURPOSE_DENIED, CD_ERR_CONSENT_DENIED, CD_ERR_FORBIDDEN
 * (override by a role that may not),
 * CD_ERR_IDEMPOTENCY, CD_ERR_STORE, CD_ERR_NOMEM. The answer, the interaction as a JSON
 * object (with "customer_created"), is appended to out, trimmed to fields: the subject, body
 * and metadata only with CD_FIELDS_CONVERSATION, and then only as the request carried them
 * (after masking) — no stored data, so nothing is checked, and the ingestion's own ledger entry
 * names the purpose and the categories echoed. A replayed Idempotency-Key answers with the
 * stored interaction, a read (checked and recorded) when fields go beyond
 * CD_FIELDS_REFERENCE. On CD_ERR_GUARD_BLOCKED and CD_ERR_PURPOSE_MISMATCH, *findings
 * receives the guard's findings (the caller owns them) when the hook gave any. An override
 * the hook honoured is recorded with the write, as a guard.override or purpose.override audit
 * event carrying the rule ids and the reason. */
enum cd_err cd_core_interaction_ingest(struct cd_core *c, const struct cd_actor *a,
                                       const json_t *body, const struct cd_idem *idem,
                                       unsigned fields, struct cd_buf *out, json_t **findings,
                                       bool *replayed);

/* The same operation for servers, in three steps so that no thread waits for the group commit:
 * _start does everything before the write on the calling thread and queues the write (errors
 * as above, and then nothing more happens; on CD_ERR_GUARD_BLOCKED and
 * CD_ERR_PURPOSE_MISMATCH *out gets the findings).
 * After CD_OK, done(done_ctx, op) is called exactly once, on the store's writer thread, when the
 * write is durable or failed: it must only hand op on (no blocking, no store calls). Then
 * _finish, called exactly once on any thread, returns what cd_core_interaction_ingest would and
 * frees op. body, a and the views in idem must stay valid until _finish. _finish reads the
 * store only for a replayed Idempotency-Key, which cd_core_ingest_finish_reads tells.
 * id gets the id of the interaction answered for (new, or the one a replay found) whenever
 * the write is durable, even when building the answer then failed (out of memory): the caller
 * can still say what was created. */
struct cd_core_ingest;
typedef void (*cd_core_ingest_done)(void *ctx, struct cd_core_ingest *op);
enum cd_err cd_core_interaction_ingest_start(struct cd_core *c, const struct cd_actor *a,
                                             const json_t *body, const struct cd_idem *idem,
                                             unsigned fields, cd_core_ingest_done done,
                                             void *done_ctx, json_t **out);
bool cd_core_ingest_finish_reads(const struct cd_core_ingest *op);
enum cd_err cd_core_interaction_ingest_finish(struct cd_core_ingest *op, struct cd_buf *out,
                                              bool *replayed, char id[CD_ID_MAX]);

/* A buffer maximum that holds any answer written as text below: a timeline page of 200
 * interactions at their largest. */
#define CD_CORE_ANSWER_MAX ((size_t)256 * 1024 * 1024)

/* One interaction, as a JSON object appended to out. Errors: CD_ERR_NOT_FOUND. */
enum cd_err cd_core_interaction_get(struct cd_core *c, const struct cd_actor *a, struct cd_str id,
                                    unsigned fields, struct cd_buf *out);

struct cd_timeline_query {
    struct cd_str cursor;    /* from a previous page's next_cursor, or empty */
    int limit;               /* 1..200 */
    struct cd_str channel;   /* filter, or empty */
    struct cd_str direction; /* filter, or empty */
    struct cd_str thread_id; /* filter: one thread, or empty */
};

/* A page of the customer's timeline, newest first, appended to out as JSON text:
 * {"customer_id","items":[..], "next_cursor": "..." or null}; on failure out is unchanged. Keyset pagination on (occurred_at, id), so pages stay stable
 * while new interactions arrive. A merged id follows to its survivor.
 * Errors: CD_ERR_INVALID (bad cursor or filter), CD_ERR_NOT_FOUND. */
enum cd_err cd_core_timeline(struct cd_core *c, const struct cd_actor *a, struct cd_str customer_id,
                             const struct cd_timeline_query *q, unsigned fields, struct cd_buf *out);

/* The customer an interaction belongs to (a reference, for the record of a refused attempt
 * on it). Errors: CD_ERR_NOT_FOUND, CD_ERR_STORE. */
enum cd_err cd_core_interaction_customer(struct cd_core *c, struct cd_str id,
                                         char customer_id[CD_ID_MAX]);

/* Every interaction of a customer (merges followed), newest first, for an export: pages of
 * CD_CORE_EXPORT_PAGE, each read in its own transaction and handed to fn as the JSON text of
 * its items ("{..},{..}", every field, as on the timeline; borrowed for the call) with their
 * number, so memory holds one page whatever the history's length. No read is recorded: the
 * caller has checked the purpose and records the export as one read. An error from fn stops
 * the walk and is returned. Errors: CD_ERR_NOT_FOUND, CD_ERR_STORE, CD_ERR_NOMEM, fn's. */
#define CD_CORE_EXPORT_PAGE 100
typedef enum cd_err (*cd_core_page_fn)(void *ctx, struct cd_str items, int n);
enum cd_err cd_core_interactions_each(struct cd_core *c, struct cd_str customer_id,
                                      cd_core_page_fn fn, void *ctx);

/* The longest locale, time zone and jurisdiction code a customer may have, in bytes; buffers
 * that hold one are a byte longer. */
#define CD_CUSTOMER_LOCALE_MAX 35
#define CD_CUSTOMER_TZ_MAX 64
#define CD_CUSTOMER_JURISDICTION_MAX 16

/* True if s names a channel / direction. */
bool cd_core_channel_valid(struct cd_str s);
bool cd_core_direction_valid(struct cd_str s);

/* ---- sealed values against their rows ---- */

/* Re-seals in format 2 (bound to the row: docs/crypto.md) the interaction fields sealed before
 * it, which migration 10 marked, in write transactions of up to 200 rows, and clears each
 * row's mark. Run at start, before serving: a server never opens format 1 in an interaction.
 * A row whose values do not open under its customer's key as they are is left as it is (still
 * marked, its content unreadable until repaired) and reported as an integrity failure.
 * *resealed and *refused (may be NULL) count the rows. Errors: CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_core_reseal_legacy(struct cd_core *c, uint64_t *resealed, uint64_t *refused);

/* What cd_core_verify_rows checked; bad_id names the row of the first failure. */
struct cd_core_rows_report {
    uint64_t interactions;  /* interaction rows */
    uint64_t fields;        /* their sealed fields opened */
    uint64_t legacy_fields; /* ... of which in format 1, in rows still marked for re-sealing */
    uint64_t identities;
    uint64_t customers;
    char bad_id[CD_ID_MAX];
};

/* The offline check of every sealed value (`candor audit verify`; needs the master key): each
 * interaction field opens under its customer's key bound to its row (id, channel, direction,
 * occurred_at, purpose), each identity and customer field under its customer's key. A value
 * copied onto another row, a row moved to another customer and a row whose bound metadata was
 * edited are each named (the row and the field). Read-only. progress (may be NULL) is called
 * now and then. Errors: CD_ERR_INTEGRITY (the detail names the row), CD_ERR_STORE,
 * CD_ERR_NOMEM. */
enum cd_err cd_core_verify_rows(struct cd_core *c, struct cd_core_rows_report *rep,
                                void (*progress)(uint64_t done, uint64_t total));

/* The ids of up to max live customers, oldest first, into ids; *n gets how many (demo data of
 * other modules, benchmarks: references only, nothing is read of the customers).
 * Errors: CD_ERR_STORE. */
enum cd_err cd_core_customer_ids(struct cd_core *c, size_t max, char (*ids)[CD_ID_MAX],
                                 size_t *n);

/* Loads deterministic demo data: `customers` customers and about `interactions` interactions
 * over all channels and the last `days` days. Idempotent: does nothing if customers exist. */
enum cd_err cd_core_load_demo(struct cd_core *c, int customers, int interactions, int days);

#endif
