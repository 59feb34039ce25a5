/* consent — the consent and preferences engine, enforced in the path of every contact.
 *
 * Owns: the consent ledger (consent_events: one row per event, ISO/IEC TS 27560 states, each
 * with a signed receipt), versioned content-addressed notices (consent_notices), preferences
 * (consent_preferences: topics, quiet hours, frequency caps) and one-click unsubscribe nonces
 * (consent_unsub_nonces); the jurisdiction rules (a YAML file, rules/consent/jurisdictions.yaml);
 * the receipt key (DATA/receipts.key, Ed25519) and the unsubscribe MAC key
 * (DATA/unsubscribe.key); and the in-memory projection every decision reads. docs/consent.md
 * describes the model, the reason codes and the receipt format.
 *
 * Contract: every event is appended in one store write transaction together with its audit
 * event, which carries the digest of the event's columns (the row keeps the entry's seq), so
 * an edited row no longer matches the hashed ledger; the projection is updated after that
 * transaction committed, so a decision never rests on an event that is not durable, and it is
 * rebuilt only from events that match their ledger entries (an event that does not leaves its
 * customer denied for every purpose that needs consent, and is logged and counted). Decisions (cd_consent_decide) read only the
 * projection and never touch the store; frequency caps, which count recorded outbound
 * interactions, are checked by cd_consent_outbound_check, which does.
 *
 * Must never: know about HTTP; put personal data in the audit ledger or in error details
 * (events carry ids, codes and categories; evidence is an opaque reference).
 *
 * Threads: every function may be called from any thread once cd_consent_open returned. The
 * projection is written under one lock (writers hold it only to apply an already committed
 * event); decisions read it without taking the lock (a seqlock: no shared write on the read
 * side, a read that raced a writer is retried), other readers take it for reading. A
 * background thread refreshes customer attributes (jurisdiction, time zone, restriction,
 * merge) from the core every 250 ms. Customers and interactions are the core's: consent reads
 * them only through core's functions, inside its own transactions. */
#ifndef CD_CONSENT_H
#define CD_CONSENT_H

#include "base/base.h"
#include "policy/policy.h"
#include "store/store.h"

struct cd_consent;
struct cd_core_overrides;

/* Channels as small ints, the channels (CD_CHANNELS) after CD_CONSENT_CHANNEL_ANY, which
 * is "*" (all channels). */
enum cd_consent_channel {
    CD_CONSENT_CHANNEL_ANY,
#define CD__CONSENT_CHANNEL_ENUM(id, name) CD_CONSENT_CHANNEL_##id,
    CD_CHANNELS(CD__CONSENT_CHANNEL_ENUM)
#undef CD__CONSENT_CHANNEL_ENUM
    CD_CONSENT_CHANNEL__COUNT
};

/* ISO/IEC TS 27560 consent states. */
enum cd_consent_state {
    CD_CONSENT_NONE, /* no event: not a stored state */
    CD_CONSENT_REQUESTED,
    CD_CONSENT_GIVEN,
    CD_CONSENT_REFUSED,
    CD_CONSENT_WITHDRAWN,
    CD_CONSENT_EXPIRED,
    CD_CONSENT_INVALIDATED,
    CD_CONSENT_STATE__COUNT
};

/* A decision. reason, basis and regime are static strings. The event the decision rests on
 * (has_event false: it rests on no event, rules alone) is held as a pointer to its id's 128
 * bits in the engine's memory, which never change or go away while the engine is open;
 * callers that show it format it with cd_consent_decision_event_id. Neither the 26 digits nor
 * a copy of the 16 bytes are made by the decision: both would wait for the customer's cache
 * miss (the bytes from a second line), while most callers (a hook that allows, a read check,
 * the bulk filter's counts) never look at them. */
struct cd_consent_decision {
    bool allow;
    bool has_event;
    const char *reason; /* consent_given, not_required, not_opted_out, no_consent, refused,
                         * withdrawn, expired, invalidated, stale_notice, opted_out, gpc,
                         * quiet_hours, frequency_cap, topic_opted_out, restricted,
                         * unknown_customer */
    const char *basis;  /* consent, implied_consent, contract, legal_obligation,
                         * legitimate_interest, none */
    const char *regime; /* the jurisdiction rule applied ("EU", "US-CA", "default", ...) */
    const uint8_t *event; /* the event id's 128 bits, when has_event (borrowed from c) */
    int64_t expires_at; /* ms, 0 = none */
};

/* The id of the event d rests on ("cev_" + 26 digits), written to out and returned; "" when
 * d rests on no event. Pure formatting of d and the 16 bytes it points to, so it may be
 * called at any time after the decision, from any thread, until the engine is closed. */
const char *cd_consent_decision_event_id(const struct cd_consent_decision *d,
                                         char out[CD_ID_MAX]);

/* Names as they appear in the API. Parsers return false for unknown names. */
const char *cd_consent_channel_name(enum cd_consent_channel ch);
bool cd_consent_channel_parse(struct cd_str s, enum cd_consent_channel *out);
const char *cd_consent_state_name(enum cd_consent_state st);

/* Opens the engine over s (borrowed; must outlive the result): loads the jurisdiction rules
 * from rules_path (borrowed), the receipt key DATA/receipts.key and the unsubscribe key
 * DATA/unsubscribe.key (both created 0600 if missing; data_dir borrowed), rebuilds the
 * projection from the tables and starts the refresher thread.
 * Errors: CD_ERR_INVALID ("FILE:LINE: what" for a bad rules file), CD_ERR_IO, CD_ERR_CRYPTO,
 * CD_ERR_STORE, CD_ERR_NOMEM. The caller owns *out (cd_consent_close). */
enum cd_err cd_consent_open(struct cd_store *s, const char *data_dir, const char *rules_path,
                            struct cd_consent **out);

/* Stops the refresher, wipes the keys and frees c. NULL is fine. */
void cd_consent_close(struct cd_consent *c);

/* Decides whether purpose may be used for customer_id (borrowed) on channel at now_ms, from
 * the projection only: the jurisdiction rule of the customer, the newest applicable event
 * (channel-specific or "*", whichever is newer), expiry, notice staleness, GPC, topic opt-outs
 * (topic may be empty) and quiet hours (only for a specific channel). Never blocks on the store.
 * Errors: none besides CD_ERR_INVALID for an out-of-range purpose or channel. */
enum cd_err cd_consent_decide(struct cd_consent *c, struct cd_str customer_id,
                              enum cd_purpose purpose, enum cd_consent_channel channel,
                              int64_t now_ms, struct cd_consent_decision *d);
enum cd_err cd_consent_decide_topic(struct cd_consent *c, struct cd_str customer_id,
                                    enum cd_purpose purpose, enum cd_consent_channel channel,
                                    struct cd_str topic, int64_t now_ms,
                                    struct cd_consent_decision *d);
/* cd_consent_decide_topic where an exact answer matters more than speed (one check over HTTP,
 * reads of personal data): a customer the projection does not know yet (created moments ago,
 * before the refresher's next pass) is looked up in the store once and decided again. Errors:
 * those of cd_consent_decide_topic, CD_ERR_STORE. */
enum cd_err cd_consent_decide_exact(struct cd_consent *c, struct cd_str customer_id,
                                    enum cd_purpose purpose, enum cd_consent_channel channel,
                                    struct cd_str topic, int64_t now_ms,
                                    struct cd_consent_decision *d);

/* Several servers on one database: applies another server's change announced on the store's
 * feed (cd_store_feed_start) to the projection. topic "consent.events" (new events: caught up
 * by their number, none missed), "consent.preferences CUSTOMER_ID", "consent.notices"; other
 * topics are ignored. NULL: a full resync (every event after the last one applied, every
 * notice not known, every customer's preferences), after the feed was (re)connected. Runs on
 * the feed thread; a failure is logged and made up at the next announcement of its kind.
 * cd_consent_decide_exact and cd_consent_outbound_check refuse with CD_ERR_STORE (503) while
 * the feed has not confirmed the others' changes for CD_STORE_FEED_BOUND_MS. */
void cd_consent_changed(struct cd_consent *c, const char *topic);
/* Whether the customer's quiet hours hold at now_ms (in their time zone) for a message on
 * channel, from the projection: for messages that need no consent and still wait for the
 * customer's quiet hours to end (a service notice of an incident). false for "*", an unknown
 * customer or one without quiet hours. Never blocks on the store. */
bool cd_consent_quiet_hours(struct cd_consent *c, struct cd_str customer_id,
                            enum cd_consent_channel channel, int64_t now_ms);

/* Decides purpose on channel for each of ids[0..n) (borrowed) into out[0..n), as
 * cd_consent_decide does, in batches whose memory reads overlap (the fast path for many
 * customers at once). Errors: CD_ERR_INVALID for an out-of-range purpose or channel. */
enum cd_err cd_consent_decide_many(struct cd_consent *c, const struct cd_str *ids, size_t n,
                                   enum cd_purpose purpose, enum cd_consent_channel channel,
                                   int64_t now_ms, struct cd_consent_decision *out);

/* Bulk audience filter. For each id in ids[0..n) (or, when ids is NULL, every customer the
 * projection knows), decides and calls emit(ctx, id, decision); emit returning an error stops
 * the walk and is returned. Decided in chunks, emitted outside any lock.
 * emit must not call back into c. */
typedef enum cd_err (*cd_consent_emit_fn)(void *ctx, struct cd_str customer_id,
                                          const struct cd_consent_decision *d);
enum cd_err cd_consent_filter(struct cd_consent *c, const struct cd_str *ids, size_t n,
                              enum cd_purpose purpose, enum cd_consent_channel channel,
                              int64_t now_ms, cd_consent_emit_fn emit, void *ctx);

/* Records one consent event. Body (JSON object, borrowed): {"customer_id", "purpose",
 * "channel"? ("*"), "state" (given|withdrawn|refused|requested|expired|invalidated),
 * "legal_basis"? (consent), "method", "collector"?, "notice_id"?, "notice_sha256"?, "evidence"?,
 * "expires_at"?, "occurred_at"?, "purchase_at"? (CASL implied consent), "language"?}.
 * Giving and withdrawing take the same fields. gpc_request_id (may be NULL) marks that the
 * request carried Sec-GPC: 1 and also records the GPC opt-out (see cd_consent_gpc).
 * *out: {"event": ..., "receipt": ...}; the caller owns it.
 * Errors: CD_ERR_INVALID (the detail names the member; nothing recorded), CD_ERR_NOT_FOUND
 * (customer or notice), CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_consent_record(struct cd_consent *c, const struct cd_actor *a, const json_t *body,
                              json_t **out);

/* Records a Global Privacy Control opt-out for customer_id (borrowed): a withdrawn event with
 * method gpc for each GPC purpose of the rules (sale_or_sharing, targeted_advertising), with
 * the request id and time as evidence, unless the customer already opted out or explicitly
 * opted in after an earlier GPC opt-out. *out: {"customer_id","recorded":[event ids],
 * "skipped":[{purpose, reason}]}. Errors: CD_ERR_NOT_FOUND, CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_consent_gpc(struct cd_consent *c, const struct cd_actor *a,
                           struct cd_str customer_id, json_t **out);

/* The customer's current state per purpose and channel (from the projection), preferences and
 * full event history (from the store), as {"customer_id","jurisdiction","current":[..],
 * "preferences":{..},"history":[..]}. Errors: CD_ERR_NOT_FOUND, CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_consent_history(struct cd_consent *c, struct cd_str customer_id, json_t **out);

/* Publishes a notice {"name","text","material"?(false),"language"?}: content-addressed (the id
 * derives from the SHA-256 of the text), version = previous version of that name + 1. A
 * material version makes consents given under older versions of that name stale. Publishing
 * the same text again answers the existing notice (*created false).
 * Errors: CD_ERR_INVALID, CD_ERR_CONFLICT (same text under another name), CD_ERR_STORE. */
enum cd_err cd_consent_notice_publish(struct cd_consent *c, const struct cd_actor *a,
                                      const json_t *body, json_t **out, bool *created);
/* One notice with its text. Errors: CD_ERR_NOT_FOUND, CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_consent_notice_get(struct cd_consent *c, struct cd_str id, json_t **out);

/* The signed receipt of an event: {"payload" (the exact signed bytes, base64url),
 * "receipt" (the same, parsed), "signature" (hex), "alg":"Ed25519","key_id" (hex)}.
 * Errors: CD_ERR_NOT_FOUND, CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_consent_receipt(struct cd_consent *c, struct cd_str event_id, json_t **out);
/* The receipt public key as JSON for /.well-known/candor-keys.json. */
enum cd_err cd_consent_keys_json(struct cd_consent *c, json_t **out);
/* Verifies a receipt payload and hex signature under the engine's key (tests, tools).
 * Errors: CD_ERR_INTEGRITY, CD_ERR_INVALID. */
enum cd_err cd_consent_receipt_verify(struct cd_consent *c, struct cd_str payload,
                                      struct cd_str sig_hex);

/* Replaces the customer's preferences: {"topics_opted_out"?: [names], "quiet_hours"?:
 * {"start":"HH:MM","end":"HH:MM"} | null, "caps"?: [{"purpose","channel","max","days"}]}.
 * Answers nothing: the consent view is a read of its own (cd_consent_history).
 * Errors: CD_ERR_INVALID, CD_ERR_NOT_FOUND, CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_consent_preferences_set(struct cd_consent *c, const struct cd_actor *a,
                                       struct cd_str customer_id, const json_t *body);

/* ---- one-click unsubscribe (RFC 8058) ---- */

/* Issues an unsubscribe link for (customer, purpose, channel): a token carrying a fresh
 * stored nonce and a keyed BLAKE2b MAC. base_url is borrowed ("https://mail.example.com").
 * *out: {"token","url","headers":{"List-Unsubscribe","List-Unsubscribe-Post"}}.
 * Errors: CD_ERR_INVALID, CD_ERR_NOT_FOUND, CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_consent_unsubscribe_link(struct cd_consent *c, const struct cd_actor *a,
                                        struct cd_str customer_id, enum cd_purpose purpose,
                                        enum cd_consent_channel channel, struct cd_str base_url,
                                        json_t **out);
/* Checks a token without using it: CD_OK and *purpose and *channel when it is genuine and unused.
 * Errors: CD_ERR_NOT_FOUND (forged or unknown), CD_ERR_CONFLICT (already used), CD_ERR_STORE. */
enum cd_err cd_consent_unsubscribe_peek(struct cd_consent *c, struct cd_str token,
                                        enum cd_purpose *purpose, enum cd_consent_channel *channel);
/* Uses a token: records a withdrawn event (method unsubscribe) and marks the nonce used in
 * one transaction. Errors: as _peek (nothing changes), CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_consent_unsubscribe(struct cd_consent *c, struct cd_str token,
                                   const char *request_id, json_t **out);

/* ---- hooks for core ---- */

/* struct cd_core_hooks.outbound_check for ctx = struct cd_consent *: refuses an outbound
 * interaction whose purpose needs consent when the decision is deny, when it names a topic
 * (may be empty; borrowed) the customer opted out of, when the customer's quiet hours hold,
 * or when a frequency cap (the customer's or the rules') is reached, counting recorded
 * outbound interactions. A refusal is recorded in the audit ledger (outcome "denied") and
 * returned as CD_ERR_CONSENT_DENIED with detail "<reason>: ...". Purposes that need no
 * consent pass. A NULL customer_id (a new customer) has no consent: refused for opt-in
 * purposes. *annotation is left untouched. */
enum cd_err cd_consent_outbound_check(void *ctx, const struct cd_actor *actor,
                                      const char *customer_id, const char *channel,
                                      const char *purpose, struct cd_str topic,
                                      struct cd_str body, const struct cd_core_overrides *ov,
                                      json_t **annotation);

/* struct cd_core_hooks.read_consent for ctx = struct cd_consent *: CD_OK when the decision
 * for (customer, purpose, "*") allows, else CD_ERR_CONSENT_DENIED with the reason. */
enum cd_err cd_consent_read_check(void *ctx, const char *customer_id, const char *purpose);

/* ---- erasure ---- */

/* Inside the transaction of a customer's erasure (src/dsar): deletes their consent events,
 * preferences and unsubscribe nonces; *events gets the number of events deleted. The ledger
 * keeps that they existed (their entries carry ids and codes only).
 * Errors: CD_ERR_STORE. */
enum cd_err cd_consent_erase_in(struct cd_tx *tx, struct cd_str customer_id, int64_t *events);
/* After that transaction committed: the projection forgets the customer (no state, no
 * preference, the default rule), so no decision and no bulk audience rests on what was erased.
 * c may be NULL. */
void cd_consent_forget(struct cd_consent *c, struct cd_str customer_id);

/* struct cd_core_hooks.customer_changed for ctx = struct cd_consent *: takes the customer's
 * jurisdiction, time zone, restriction and merge from the store at once, so decisions on this
 * node follow a restriction or a merge from the moment it is answered (other nodes: within a
 * quarter second, by the refresher). */
void cd_consent_customer_changed(void *ctx, const char *customer_id);

/* Whether purpose needs the customer's consent: a purpose the rules do not list under
 * not_required. The one answer to that question for the whole server (the purpose gate asks
 * it too). */
bool cd_consent_needs_consent(const struct cd_consent *c, enum cd_purpose purpose);

/* The purposes a restriction of processing (GDPR Art. 18) leaves allowed, bit per purpose,
 * from the purpose policy (cd_policy_restricted_purposes); until set, a restricted customer
 * is denied every purpose. A restricted customer's decisions deny every other purpose with
 * reason "restricted". Call before serving. */
void cd_consent_set_restriction(struct cd_consent *c, unsigned allowed_purposes);

/* ---- offline verification ---- */

/* What cd_consent_verify found. On failure event_id names the first bad event. */
struct cd_consent_report {
    uint64_t events;       /* events whose binding (and receipt, when checked) verified */
    uint64_t receipt_only; /* of them, events from before binding, checked by receipt only */
    char event_id[CD_ID_MAX];
};

/* Checks every consent event, in order, against what the database cannot rewrite without
 * the keys: its ledger entry (audit_seq; the entry's data_sha256 is the digest of the row's
 * columns and its resource_id the event id) and, when receipts_pk is given, its Ed25519-signed
 * receipt (the signature, and every column the receipt carries). An event recorded before
 * binding existed is checked against its receipt only. The detail names the event and, where
 * the receipt tells, the column that was edited. The ledger's own chain is
 * cd_audit_verify_all's business. Errors: CD_ERR_INTEGRITY, CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_consent_verify(struct cd_store *s, const uint8_t *receipts_pk,
                              struct cd_consent_report *rep);

/* ---- introspection (tests, bench, metrics) ---- */

struct cd_consent_stats {
    size_t customers;  /* customers in the projection */
    size_t states;     /* customer x purpose x channel states */
    size_t bytes;      /* memory held by the projection */
};
void cd_consent_stats(struct cd_consent *c, struct cd_consent_stats *out);

/* Rebuilds a second projection from the tables and compares it with the live one.
 * Errors: CD_ERR_INTEGRITY naming the first difference, CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_consent_projection_check(struct cd_consent *c);

/* Local time helper (exposed for tests): minutes since local midnight of utc_ms in the IANA
 * zone tz (borrowed), read by the calendar module (cd_tz_load; never touches TZ or tzset).
 * Errors: CD_ERR_INVALID (bad name), CD_ERR_NOT_FOUND (no such zone), CD_ERR_NOMEM. */
enum cd_err cd_consent_local_minutes(struct cd_str tz, int64_t utc_ms, int *minutes);

#endif
