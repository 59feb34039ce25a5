/* audit — the tamper-evident ledger of who did what to which customer's data, and why.
 *
 * Owns: the audit_events table (append-only, hash-chained: each entry stores the SHA-256 of
 * its canonical bytes and the hash of the entry before it), the Merkle tree over the entries
 * (RFC 9162 perfect-subtree nodes in audit_nodes), signed tree heads and proofs.
 *
 * Contract: cd_audit_append runs inside a store write transaction, so the event commits or
 * rolls back together with the change it records. Events carry ids, codes and categories,
 * never personal data values.
 *
 * Threads: cd_audit_append is called on the store's writer thread only; readers may call the
 * query functions from any thread. */
#ifndef CD_AUDIT_H
#define CD_AUDIT_H

#include "base/base.h"
#include "store/store.h"

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
    const char *reason;      /* for denials and errors: the problem type */
};

/* Appends ev inside tx; *seq (may be NULL) receives its sequence number (1-based).
 * Errors: CD_ERR_STORE, CD_ERR_NOMEM (nothing appended). */
enum cd_err cd_audit_append(struct cd_tx *tx, const struct cd_audit_event *ev, uint64_t *seq);

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
 * the ledger's read events for that customer. {"items":[...],"next_cursor"}. */
enum cd_err cd_audit_access_log(struct cd_store *s, struct cd_str customer_id, struct cd_str cursor,
                                int limit, json_t **out);

/* Checks the hash chain of the whole ledger; on a break returns CD_ERR_INTEGRITY with a detail
 * naming the first bad entry and sets *bad_seq. progress (may be NULL) is called now and then. */
enum cd_err cd_audit_verify(struct cd_store *s, uint64_t *checked, uint64_t *bad_seq,
                            void (*progress)(uint64_t done, uint64_t total));

#endif
