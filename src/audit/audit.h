/* audit — the tamper-evident ledger of who did what to which customer's data, and why.
 *
 * Owns: the audit_events table (append-only, hash-chained: each entry stores the SHA-256 of
 * its canonical bytes and the hash of the entry before it), the Merkle tree over the entries
 * (RFC 9162 perfect-subtree nodes of 16 leaves and more in audit_nodes, the smaller ones
 * recomputed from the entries), signed tree heads and proofs.
 *
 * Contract: cd_audit_append runs inside a store write transaction, so the event commits or
 * rolls back together with the change it records. Events carry ids, codes and categories,
 * never personal data values.
 *
 * Threads: cd_audit_append and cd_audit_append_prepared are called on the store's writer
 * thread only (they keep the Merkle frontier of the last append in a per-thread cache, checked
 * against the transaction's view of the ledger before every use, so a rolled-back savepoint
 * never leaves it stale); cd_audit_prepare and the query functions may be called from any
 * thread. A struct cd_audit is immutable after cd_audit_open
 * apart from its publisher thread, so any thread may use it. docs/audit.md documents the
 * signed tree head bytes, the proof endpoints and the export format. */
#ifndef CD_AUDIT_H
#define CD_AUDIT_H

#include "base/base.h"
#include "store/store.h"
#include "audit/merkle.h"
#include "crypto/crypto.h"
#include <stdio.h>

/* One event. Every member is borrowed; NULL members are stored as absent. */
struct cd_audit_event {
    const char *action;      /* "customer.create", "timeline.read", "interaction.ingest", ... */
    const char *outcome;     /* "ok", "denied", "error" */
    const char *actor_token; /* token id, "cli" or "system" */
    const char *actor_role;
    const char *actor_name;  /* the token's display name (staff or integration, not a customer) */
    const char *purpose;
    const char *request_id;
    const char *customer_id;
    const char *resource_id; /* interaction id, token id, ... */
    const char *categories;  /* data categories touched, comma-separated */
    const char *reason;      /* for denials and errors: cd_err_name() of the error; for
                              * other events, what the event says it is */
    /* 64 hex digits: the SHA-256 of the canonical form of the record the event wrote (a
     * consent event), binding that row to this entry; see the owner of the record. */
    const char *data_sha256;
    const char *rules;       /* guard rule ids behind a block, mismatch or override, "A,B" */
    const char *override_reason; /* a supervisor's reason for an override (masked by the guard) */
};

/* Appends ev inside tx; *seq (may be NULL) receives its sequence number (1-based).
 * Errors: CD_ERR_STORE, CD_ERR_NOMEM, CD_ERR_INVALID (a member is not UTF-8), CD_ERR_TOO_BIG
 * (nothing appended). */
enum cd_err cd_audit_append(struct cd_tx *tx, const struct cd_audit_event *ev, uint64_t *seq);

/* An event made ready for appending before its write, on the caller's thread: its canonical
 * bytes up to the members only the append knows ("seq" and "ts", the last two in key order),
 * and the columns the listings filter on. Why: the store's writer thread runs every write one
 * after another, and building the bytes there was a seventh of an audited ingest's append.
 * The strings customer_id, action and actor_token stay borrowed from the event. */
struct cd_audit_prepared {
    struct cd_buf bytes; /* private: the head of the canonical bytes, room for the rest */
    const char *customer_id, *action, *actor_token;
};

/* Fills *out from ev (see above); any thread may call it. The caller frees *out with
 * cd_audit_prepared_free, also after appending it. Errors: CD_ERR_NOMEM, CD_ERR_INVALID (a
 * member is not UTF-8), CD_ERR_TOO_BIG; *out then holds nothing to free. */
enum cd_err cd_audit_prepare(const struct cd_audit_event *ev, struct cd_audit_prepared *out);

/* cd_audit_append for a prepared event: the same entry, bytes and hashes as cd_audit_append
 * of the event it was prepared from (with the time of this call). ev is used during the call
 * only and is as it was afterwards, so a write that runs again may append it again.
 * Errors: as cd_audit_append. */
enum cd_err cd_audit_append_prepared(struct cd_tx *tx, struct cd_audit_prepared *ev,
                                     uint64_t *seq);

/* Frees what cd_audit_prepare made. Safe on a freed one. */
void cd_audit_prepared_free(struct cd_audit_prepared *p);

/* Appends ev in its own durable transaction (for reads and denials, which change nothing
 * else). Returns after the event is durable. */
enum cd_err cd_audit_record(struct cd_store *s, const struct cd_audit_event *ev);

/* Lists events as JSON {"items":[...],"next_cursor"} filtered by customer_id, action, actor
 * token (each may be empty), newest first. */
struct cd_audit_query {
    struct cd_str customer_id, action, actor_token, cursor;
    int64_t since_ms, until_ms; /* 0 = unbounded */
    int limit;
};
enum cd_err cd_audit_list(struct cd_store *s, const struct cd_audit_query *q, json_t **out);

/* The customer-visible access log: who (role, name), when, why, which categories, built from
 * the ledger's read events for that customer and the refused attempts on their data
 * (access.denied). {"items":[...],"next_cursor"}. */
enum cd_err cd_audit_access_log(struct cd_store *s, struct cd_str customer_id, struct cd_str cursor,
                                int limit, json_t **out);

/* Checks the hash chain of the whole ledger; on a break returns CD_ERR_INTEGRITY with a detail
 * naming the first bad entry and sets *bad_seq. progress (may be NULL) is called now and then. */
enum cd_err cd_audit_verify(struct cd_store *s, uint64_t *checked, uint64_t *bad_seq,
                            void (*progress)(uint64_t done, uint64_t total));

/* The ledger entry at seq as stored (its canonical bytes), for a module that bound one of its
 * rows to an entry (data_sha256) and checks the binding: *found false when there is no such
 * entry. The bytes are borrowed from the row callback's storage: fn is called with them inside
 * the read. Errors: CD_ERR_STORE, and fn's. */
enum cd_err cd_audit_entry_at(struct cd_tx *tx, uint64_t seq,
                              enum cd_err (*fn)(void *ctx, struct cd_str entry), void *ctx,
                              bool *found);

/* The raw text of member `key` in canonical entry bytes, without parsing the JSON: for a
 * string the characters between its quotes (still escaped), for a number its digits. Returns
 * false when the member is absent. */
bool cd_audit_entry_member(struct cd_str entry, const char *key, struct cd_str *value);

/* ---- the ledger service: signed tree heads and proofs ------------------------------------ */

/* Signed tree head message: enc("candor.audit.sth.v1") || u64be(tree_size) ||
 * u64be(timestamp_ms) || root_hash (32), where enc(x) = u64be(len(x)) || x; 75 bytes. */
#define CD_AUDIT_STH_DOMAIN "candor.audit.sth.v1"
#define CD_AUDIT_STH_MSG_LEN (8 + sizeof CD_AUDIT_STH_DOMAIN - 1 + 8 + 8 + CD_MERKLE_HASH_LEN)

/* One signed tree head (RFC 9162 style). Plain data. */
struct cd_audit_sth {
    uint64_t tree_size;
    int64_t timestamp_ms;
    uint8_t root[CD_MERKLE_HASH_LEN];
    uint8_t signature[CD_CRYPTO_SIG_LEN];
    uint8_t key_id[CD_CRYPTO_HASH_LEN];
};

/* Writes the message a tree head's signature covers into out (see CD_AUDIT_STH_MSG_LEN).
 * Cannot fail. */
void cd_audit_sth_message(uint64_t tree_size, int64_t timestamp_ms,
                          const uint8_t root[CD_MERKLE_HASH_LEN],
                          uint8_t out[CD_AUDIT_STH_MSG_LEN]);

/* Verifies sth's signature under pk and that sth->key_id is pk's key id.
 * Errors: CD_ERR_INTEGRITY (detail names the tree size), hashing errors. */
enum cd_err cd_audit_sth_verify(const struct cd_audit_sth *sth, const uint8_t pk[CD_CRYPTO_PK_LEN]);

/* The JSON form of a tree head: {"tree_size","timestamp","time","root_hash","signature",
 * "key_id"} (hashes and signature in lower-case hex). The caller owns *out.
 * Errors: CD_ERR_NOMEM. */
enum cd_err cd_audit_sth_json(const struct cd_audit_sth *sth, json_t **out);

/* Parses the JSON form back (extra members such as "type" are ignored). obj is borrowed.
 * Errors: CD_ERR_INVALID naming the bad member. */
enum cd_err cd_audit_sth_parse(const json_t *obj, struct cd_audit_sth *out);

/* The ledger as a service: the store plus the Ed25519 signer for tree heads and, when
 * started, a thread that publishes tree heads periodically. */
struct cd_audit;

/* Opens the ledger service over s (borrowed; it must outlive the result). signing_key_path
 * (borrowed) names the Ed25519 seed file, created 0600 if missing; NULL opens a service that
 * cannot sign (publishing fails with CD_ERR_CRYPTO). Completes the Merkle nodes of a ledger
 * written before they existed (one write transaction).
 * Errors: those of cd_crypto_signer_load_or_create, CD_ERR_STORE, CD_ERR_NOMEM.
 * The caller owns *out (cd_audit_close). */
enum cd_err cd_audit_open(struct cd_store *s, const char *signing_key_path, struct cd_audit **out);

/* Stops the publisher thread (if started), wipes the signing key and frees a. NULL is fine. */
void cd_audit_close(struct cd_audit *a);

/* When tree heads are signed while serving (docs/audit.md, "Signed tree heads"). */
struct cd_audit_policy {
    unsigned interval_s;      /* at most this long after the ledger grew (>= 1) */
    uint64_t every_entries;   /* ... or as soon as this many entries were appended (>= 1) */
    const char *heads_path;   /* the heads file every new head is appended to (borrowed, must
                               * outlive the service), or NULL for none */
};
#define CD_AUDIT_HEADS_FILE "audit-heads.jsonl" /* in the data directory */
#define CD_AUDIT_DEFAULT_INTERVAL_S 10
#define CD_AUDIT_DEFAULT_EVERY_ENTRIES 10000

/* Starts the publisher: signs a head now (the start of service; a failure is logged, not
 * returned: the ledger may be damaged, and serving goes on while `candor audit verify` tells
 * what happened), then on a thread whenever the ledger grew by every_entries entries or
 * interval_s seconds passed since it grew, whichever comes first, and a last one when
 * cd_audit_close stops it (a clean shutdown). Each new head is also appended to the heads file,
 * which first catches up with heads the database holds and the file does not (a crash between
 * the two). Errors: CD_ERR_INVALID (a zero in the policy, already started, or no signer),
 * CD_ERR_INTERNAL (cannot start the thread). */
enum cd_err cd_audit_publisher_start(struct cd_audit *a, const struct cd_audit_policy *policy);

/* Signs a tree head for the current ledger size, in one write transaction, unless the newest
 * stored head already has that size, and appends a new head to the heads file when the
 * publisher has one (fsynced; a failure there is logged and made up at the next head, since
 * the head is already durable in the database); *out (may be NULL) receives the newest head,
 * *created (may be NULL) whether it is new. Errors: CD_ERR_CRYPTO (no signer), CD_ERR_STORE,
 * CD_ERR_INTEGRITY (a stored node is missing, or the ledger is shorter than a stored head),
 * CD_ERR_NOMEM. */
enum cd_err cd_audit_publish(struct cd_audit *a, struct cd_audit_sth *out, bool *created);

/* The newest signed tree head. Errors: CD_ERR_NOT_FOUND (none published yet), CD_ERR_STORE. */
enum cd_err cd_audit_sth_latest(struct cd_store *s, struct cd_audit_sth *out);

/* The signer's public key (valid while a lives). Errors: CD_ERR_CRYPTO (no signer). */
enum cd_err cd_audit_public_key(const struct cd_audit *a, uint8_t pk[CD_CRYPTO_PK_LEN]);

/* The store a was opened over (borrowed). */
struct cd_store *cd_audit_store(const struct cd_audit *a);

/* Inclusion proof for entry seq (leaf seq-1) in the tree of the first tree_size entries, as
 * JSON {"seq","leaf_index","tree_size","entry","leaf_hash","root_hash","audit_path":[hex]}.
 * O(log n) node reads in one snapshot. Errors: CD_ERR_INVALID (seq or tree_size is 0),
 * CD_ERR_NOT_FOUND (tree_size exceeds the ledger, or seq > tree_size), CD_ERR_INTEGRITY (a node
 * the ledger should hold is missing), CD_ERR_STORE, CD_ERR_NOMEM. The caller owns *out. */
enum cd_err cd_audit_inclusion(struct cd_store *s, uint64_t seq, uint64_t tree_size,
                               json_t **out);

/* Consistency proof between tree sizes first and second, as JSON {"first","second",
 * "first_root","second_root","proof":[hex]}. Errors: CD_ERR_INVALID (first is 0 or
 * first > second), CD_ERR_NOT_FOUND (second exceeds the ledger), as cd_audit_inclusion
 * otherwise. The caller owns *out. */
enum cd_err cd_audit_consistency(struct cd_store *s, uint64_t first, uint64_t second,
                                 json_t **out);

/* ---- offline verification and export ----------------------------------------------------- */

/* What a full verification found. On failure bad_seq names the first bad entry (0 when the
 * failure concerns no entry, e.g. a bad signature of a head covering nothing). */
struct cd_audit_report {
    uint64_t entries;      /* entries whose chain, leaf, column and tree checks passed */
    uint64_t nodes;        /* stored Merkle nodes checked */
    uint64_t tree_heads;   /* signed tree heads checked (stored and trusted) */
    uint64_t trusted;      /* trusted heads found in the ledger, each with its consistency
                            * proof to the whole ledger verified */
    uint64_t bad_seq;
};

/* Tree heads obtained outside the database: the heads file, consent receipts, a witness's
 * copy. Each keeps where it came from ("FILE:LINE"), for the report. Zero-initialise; free
 * with cd_audit_trusted_free. */
struct cd_audit_trusted {
    struct cd_audit_sth *heads;
    char (*source)[128];
    size_t n, cap;
    size_t skipped; /* lines that were no head (a heads file's partial last line) */
};

/* Adds the heads in text[0..len) (borrowed), read from `source` (a name for the report): one
 * JSON document or JSON lines, each a tree head (cd_audit_sth_json's form, as served by
 * GET /v1/audit/tree-heads/latest or written to the heads file), a consent receipt carrying one
 * ("auditTreeHead"), or the receipt answer of the API ({"receipt": {...}}). An unterminated
 * last line that is not JSON (a crash while appending) is skipped and counted.
 * Errors: CD_ERR_INVALID ("SOURCE:LINE: what"), CD_ERR_NOMEM; heads added before stay. */
enum cd_err cd_audit_trusted_parse(struct cd_audit_trusted *t, const char *text, size_t len,
                                   const char *source);
/* cd_audit_trusted_parse of the file at path; a missing file adds nothing when missing_ok.
 * Errors: CD_ERR_IO, and cd_audit_trusted_parse's. */
enum cd_err cd_audit_trusted_load(struct cd_audit_trusted *t, const char *path, bool missing_ok);
void cd_audit_trusted_free(struct cd_audit_trusted *t);

/* Checks everything the database holds: the hash chain and sequence of every entry, its index
 * columns (customer_id, action, actor_token, ts: what the listings and the access log filter
 * on) against the members of its hashed entry, every stored Merkle node against the tree
 * recomputed from the entries (no node missing or extra, no level below 4 stored), and every
 * stored tree head (root recomputed from the entries, size within the ledger, Ed25519
 * signature under pk, which may be NULL to skip signatures only when there are no heads).
 * trusted (may be NULL) adds heads obtained elsewhere: each must verify under pk, lie within
 * the ledger (a shorter ledger is a truncated tail), have the root recomputed at its size, be
 * stored in the database (a head missing there was deleted), and its RFC 9162 consistency
 * proof to the whole ledger, built from the stored nodes, must verify. progress (may be NULL)
 * is called with (done, total) now and then. Errors: CD_ERR_INTEGRITY with a detail naming
 * the first bad entry (or head), CD_ERR_STORE, CD_ERR_NOMEM, CD_ERR_CRYPTO (heads exist but pk
 * is NULL). */
enum cd_err cd_audit_verify_all(struct cd_store *s, const uint8_t *pk,
                                const struct cd_audit_trusted *trusted,
                                struct cd_audit_report *rep,
                                void (*progress)(uint64_t done, uint64_t total));

/* Writes the ledger as JSON lines to out: {"type":"entry","seq","entry","hash"} per entry in
 * order (entry = the canonical bytes as a JSON string) and, right after the entry that
 * completes it, {"type":"tree_head",...} for each stored head (cd_audit_sth_json members).
 * *entries and *heads (may be NULL) count the lines. Errors: CD_ERR_IO, CD_ERR_STORE,
 * CD_ERR_NOMEM. */
enum cd_err cd_audit_export(struct cd_store *s, FILE *out, uint64_t *entries, uint64_t *heads,
                            void (*progress)(uint64_t done, uint64_t total));

/* Verifies an export read from in without any database, as a third-party auditor: recomputes
 * the chain and the Merkle tree from the entry bytes, checks every tree head's root and
 * signature under pk, and refuses an export whose entries stop before the size of a head it
 * contains or of a trusted head (truncation). Each trusted head (may be NULL) must also verify,
 * match the root recomputed at its size and appear among the export's head lines.
 * rep as cd_audit_verify_all. Errors: CD_ERR_INTEGRITY naming the first bad line/entry,
 * CD_ERR_INVALID (malformed line), CD_ERR_IO, CD_ERR_NOMEM. */
enum cd_err cd_audit_verify_export(FILE *in, const uint8_t pk[CD_CRYPTO_PK_LEN],
                                   const struct cd_audit_trusted *trusted,
                                   struct cd_audit_report *rep,
                                   void (*progress)(uint64_t done, uint64_t total));

#endif
