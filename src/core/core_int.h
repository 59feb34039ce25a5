/* Inside the core module only. */
#ifndef CD_CORE_INT_H
#define CD_CORE_INT_H

#include "core.h"
#include "crypto/crypto.h"

#define CD_MAX_BODY (256 * 1024)
#define CD_MAX_SUBJECT 1000
#define CD_MAX_META 16384
#define CD_MAX_ATTRS 16384
#define CD_MAX_IDENTITIES 20

struct cd__owners;
struct USpoofChecker;

struct cd_core {
    struct cd_store *store;
    struct cd_core_hooks hooks;
    struct cd__owners *owners; /* recently seen identity owners (owners.c) */
    uint8_t master[CD_CRYPTO_KEY_LEN];    /* wraps the per-customer data keys */
    uint8_t index_key[CD_CRYPTO_KEY_LEN]; /* keys the blind indexes */
    int64_t future_skew_ms; /* how far ahead of the clock an occurred_at may be */
    struct USpoofChecker *spoof; /* ICU's confusable skeletons (identity.c); const once open */
};

/* ICU's spoof checker for confusable skeletons (identity.c). Errors: CD_ERR_INTERNAL. */
enum cd_err cd__core_spoof_open(struct cd_core *c);
void cd__core_spoof_close(struct cd_core *c);

/* The keyed hash of the UTS #39 confusable skeleton of a normalised identity of kind, and
 * whether the value has characters beyond ASCII (look-alikes are sought only where one side
 * has: two ASCII spellings are told apart by anyone reading them).
 * Errors: CD_ERR_NOMEM, CD_ERR_INVALID (ICU refused the text). */
enum cd_err cd__core_identity_skeleton(const struct cd_core *c, struct cd_str kind,
                                       struct cd_str norm, uint8_t out[CD_CRYPTO_HASH_LEN],
                                       bool *beyond_ascii);

/* A normalised identity ready to be stored for a customer. Borrowed views. */
struct cd__identity {
    struct cd_str kind;
    const char *network; /* NULL or "": none */
    const uint8_t *lookup;   /* CD_CRYPTO_HASH_LEN: the blind index */
    const uint8_t *skeleton; /* CD_CRYPTO_HASH_LEN: the skeleton's keyed hash */
    bool beyond_ascii;
    struct cd_str sealed; /* the normalised value sealed for the customer */
};

/* Records an open possible_duplicate link from customer_id's identity (kind, lookup) to
 * other_id's (other_lookup) for reason ("confusable", "normalisation"), with its audit event,
 * unless the two customers already have an open link. */
enum cd_err cd__core_link_record(struct cd_tx *tx, const struct cd_actor *a, struct cd_str kind,
                                 const char *customer_id, const uint8_t *lookup,
                                 const char *other_id, const uint8_t *other_lookup,
                                 const char *reason, int64_t now);

/* Inserts the identity for customer_id and records a possible_duplicate link (and its audit
 * event) to every other customer holding a look-alike (same skeleton; one side beyond ASCII).
 * *links, if not NULL, gets how many were recorded. Errors: CD_ERR_CONFLICT (the identity
 * exists), CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd__core_identity_insert(struct cd_tx *tx, const struct cd_actor *a,
                                     const struct cd__identity *id, const char *customer_id,
                                     int64_t now, size_t *links);
/* The second half of cd__core_identity_insert, for an identity already stored. */
enum cd_err cd__core_identity_link_lookalikes(struct cd_tx *tx, const struct cd_actor *a,
                                              const struct cd__identity *id,
                                              const char *customer_id, int64_t now,
                                              size_t *links);

/* Converts what a database made by an older candor keeps in a form it no longer may (plain
 * Idempotency-Keys and thread ids, identities under older normalisation rules), in batches of
 * writes, then checkpoints the write-ahead log so no old page stays there (upgrade.c). Does
 * nothing, after one read, on a database with nothing left to convert. */
enum cd_err cd__core_upgrade(struct cd_core *c);

/* The owner cache (owners.c): identity (kind, blind index) -> owner id and wrapped key, a hint
 * for sealing before the write. A put carries the generation read before the read that learnt
 * the entry, and is refused if cd__owners_forget_all (erasure, merge) ran since. */
enum cd_err cd__owners_new(struct cd__owners **out);
void cd__owners_free(struct cd__owners *o);
uint64_t cd__owners_generation(struct cd__owners *o);
bool cd__owners_get(struct cd__owners *o, struct cd_str kind,
                    const uint8_t lookup[CD_CRYPTO_HASH_LEN], char customer_id[CD_ID_MAX],
                    uint8_t wrapped[CD_CRYPTO_WRAPPED_LEN]);
void cd__owners_put(struct cd__owners *o, uint64_t generation, struct cd_str kind,
                    const uint8_t lookup[CD_CRYPTO_HASH_LEN], const char *customer_id,
                    const uint8_t *wrapped, size_t wrapped_len);
void cd__owners_forget_all(struct cd__owners *o);

/* A customer's data key, unwrapped for the duration of one operation. */
struct cd__ckey {
    char customer_id[CD_ID_MAX];
    uint8_t key[CD_CRYPTO_KEY_LEN];
};

/* A customer's key opened for another module (core.h, cd_core_vault_open). */
struct cd_core_vault {
    struct cd__ckey k;
};

/* Makes a fresh data key for customer_id and its wrapped form (stored in customers). */
void cd__core_key_new(const struct cd_core *c, const char *customer_id, struct cd__ckey *k,
                      uint8_t wrapped[CD_CRYPTO_WRAPPED_LEN]);
/* Unwraps a stored key. Errors: CD_ERR_CRYPTO (shredded or tampered). */
enum cd_err cd__core_key_open(const struct cd_core *c, const char *customer_id,
                              struct cd_val wrapped, struct cd__ckey *k);
void cd__core_key_wipe(struct cd__ckey *k);

/* The blind index of a normalised identity. */
void cd__core_lookup(const struct cd_core *c, struct cd_str kind, struct cd_str norm,
                     uint8_t out[CD_CRYPTO_HASH_LEN]);

/* Seals plain for (customer, field) into a fresh buffer held by out (reset first). */
enum cd_err cd__core_seal(const struct cd__ckey *k, const char *field, struct cd_str plain,
                          struct cd_buf *out);
/* Opens a sealed column value into out (reset first). NULL columns give an empty out and
 * *present = false. */
enum cd_err cd__core_open(const struct cd__ckey *k, const char *field, struct cd_val sealed,
                          struct cd_buf *out, bool *present);

/* What an interaction's sealed fields are bound to besides their customer and field name (the
 * AEAD associated data, sealed format 2): the row's id and the metadata an edit of which must
 * be detected — channel, direction, occurred_at and purpose, hashed once per row. All of it
 * stays the same for the life of the row, but for the customer, which a merge changes together
 * with a re-sealing. id is borrowed (for the reports). */
struct cd__row_binding {
    struct cd_crypto_row row;
    const char *id;
};
void cd__core_interaction_binding(struct cd__row_binding *b, const char *id, const char *channel,
                                  const char *direction, int64_t occurred_at,
                                  const char *purpose);
/* cd__core_seal in format 2, bound to the row b. */
enum cd_err cd__core_seal_row(const struct cd__ckey *k, const char *field,
                              const struct cd__row_binding *b, struct cd_str plain,
                              struct cd_buf *out);
/* Opens a sealed interaction field of row b (reset first; NULL gives *present = false). A value
 * that does not open — in format 1 (accepted only when legacy is true, by the re-sealing of rows
 * sealed before format 2), copied from another row or left on a row whose bound metadata
 * changed — is an integrity failure: logged and counted (no personal data: the ids and the
 * field name), CD_ERR_INTEGRITY with a detail naming the interaction and the field. */
enum cd_err cd__core_open_row(const struct cd__ckey *k, const char *field,
                              const struct cd__row_binding *b, struct cd_val sealed, bool legacy,
                              struct cd_buf *out, bool *present);
/* The same without logging or counting: CD_ERR_CRYPTO when the value does not belong (the
 * offline check, which reports for itself). */
enum cd_err cd__core_open_row_quiet(const struct cd__ckey *k, const char *field,
                                    const struct cd__row_binding *b, struct cd_val sealed,
                                    bool legacy, struct cd_buf *out, bool *present);

#endif

#include "audit/audit.h"

/* ---- shared helpers (core.c) ---- */

/* Checks a read of a customer's personal data against the restriction flag and, for purposes
 * that need consent, the consent hook. A refusal is recorded in the ledger (outcome "denied")
 * and returned as CD_ERR_PURPOSE_DENIED. */
enum cd_err cd__core_read_allowed(struct cd_core *c, const struct cd_actor *a,
                                  const char *customer_id, bool restricted, const char *action);

/* Fills an audit event from the actor. */
void cd__core_event(struct cd_audit_event *ev, const struct cd_actor *a, const char *action,
                    const char *customer_id, const char *resource_id, unsigned fields);

/* The keyed hash an Idempotency-Key is stored and found by (the key itself is never stored:
 * a client may put personal data in it). Computed before the write; nothing when idem is NULL. */
void cd__core_idem_hash(const struct cd_core *c, const struct cd_idem *idem,
                        uint8_t key_hash[CD_CRYPTO_HASH_LEN]);
/* Idempotency inside a write, by idem's scope and its key's hash: *resource_id gets the id
 * recorded under the key (replay), or stays empty when the key is new.
 * Errors: CD_ERR_IDEMPOTENCY (same key, other request). */
enum cd_err cd__core_idem_check(struct cd_tx *tx, const struct cd_idem *idem,
                                const uint8_t key_hash[CD_CRYPTO_HASH_LEN],
                                char resource_id[CD_ID_MAX]);
enum cd_err cd__core_idem_record(struct cd_tx *tx, const struct cd_idem *idem,
                                 const uint8_t key_hash[CD_CRYPTO_HASH_LEN],
                                 const char *resource_id);

/* Resolves a customer id through merges to the surviving customer; *exists false if unknown. */
enum cd_err cd__core_resolve(struct cd_tx *tx, struct cd_str id, char out[CD_ID_MAX],
                             bool *exists);

/* A page of a list: {"items": items, "next_cursor": ...}. items is always taken (also on
 * failure); when more is true the cursor points after (ms, id), else it is null. */
enum cd_err cd__core_page(json_t *items, bool more, int64_t ms, const char *id, json_t **out);

/* Copies a short text column into a fixed buffer ("" for NULL). */
void cd__core_col_text(struct cd_val v, char *out, size_t n);

/* Records a read of personal data in the audit ledger (durably, before the data is returned). */
enum cd_err cd__core_audit_read(struct cd_core *c, const struct cd_actor *a, const char *action,
                                const char *customer_id, const char *resource_id,
                                unsigned fields);

/* Interaction JSON for one stored row, opened with k. */
struct cd__interaction_row {
    char id[CD_ID_MAX];
    char customer_id[CD_ID_MAX];
    char channel[16];
    char direction[12];
    char purpose[32];
    char thread_id[130]; /* ingestion: the thread id as given (plaintext, never stored) */
    int64_t occurred_at, created_at;
    struct cd_val subject, body, metadata, guard, thread; /* sealed columns as stored */
};
/* What an answer shows of an interaction's sealed fields: nothing (shown false, for a purpose
 * that may not see the conversation), or their plaintext, borrowed. */
struct cd__interaction_text {
    bool shown;
    struct cd_str subject, body, thread_id; /* .p NULL: null */
    struct cd_str metadata;                 /* the JSON text of an object; .p NULL: {} */
};

/* The keyed hash a thread id is found by, for one customer: equal thread ids of different
 * customers hash apart, so the column links nothing across customers. */
void cd__core_thread_hash(const struct cd_core *c, const char *customer_id, struct cd_str thread,
                          uint8_t out[CD_CRYPTO_HASH_LEN]);
/* Appends the interaction as one JSON object, written directly rather than through a jansson
 * tree: ingestion answers and timeline pages are the hottest answers the server builds.
 * extra, if not NULL, is appended before the closing brace (",\"key\":value..."). On failure b
 * is as it was. Errors: CD_ERR_INVALID (a string that is not UTF-8), CD_ERR_NOMEM. */
enum cd_err cd__core_interaction_write(struct cd_buf *b, const struct cd__interaction_row *r,
                                       const struct cd__interaction_text *t, const char *extra);

/* A page cursor as text: base64url("<occurred_at ms>.<id>"). */
#define CD__CURSOR_MAX 100
void cd__core_cursor_text(int64_t ms, const char *id, char out[CD__CURSOR_MAX]);
/* The same as a new JSON string in *out. Errors: CD_ERR_NOMEM. */
enum cd_err cd__core_cursor_encode(int64_t ms, const char *id, json_t **out);
/* Reads a cursor into the position after which the next page starts; an empty cursor is the
 * start (after everything: INT64_MAX, "~"). Errors: CD_ERR_INVALID (not a cursor this server
 * issued). */
enum cd_err cd__core_cursor_decode(struct cd_str cursor, int64_t *ms, char id[CD_ID_MAX]);

/* One interaction as the actor may see it (fields), its read checked and recorded as action;
 * appended to out as JSON. Errors: CD_ERR_NOT_FOUND, CD_ERR_PURPOSE_DENIED, CD_ERR_STORE,
 * CD_ERR_CRYPTO, CD_ERR_INTEGRITY, CD_ERR_NOMEM. */
enum cd_err cd__core_interaction_by_id(struct cd_core *c, const struct cd_actor *a,
                                       struct cd_str id, unsigned fields, const char *action,
                                       struct cd_buf *out);
