/* dsar — data-subject requests: their deadlines, their lifecycle and their fulfilment.
 *
 * Owns: the dsar_requests and dsar_history tables (a request and every change of its state),
 * and the deadline rules (RULES/dsar/regimes.yaml: per legal regime, the periods to
 * acknowledge and to answer each type of request, the extension allowed, the business calendar
 * they are counted by and the authority a customer may complain to). docs/dsar.md describes the
 * lifecycle, the deadlines and their legal basis.
 *
 * Contract: every change of a request is written in one store transaction together with its
 * audit event, so the ledger holds every transition. A request carries ids, codes and times;
 * what staff write to the customer (the reasons for an extension or a refusal) is sealed under
 * the customer's data key (src/core), so it is shredded with the rest of their data while the
 * request itself stays as the record of what was asked and answered.
 *
 * Must never: know about HTTP; put personal data in the ledger or in error details.
 *
 * Threads: a struct cd_dsar is immutable after cd_dsar_open (the rules never change while it is
 * open) but for the watcher's counts, kept under a lock; every function may be called from any
 * thread. */
#ifndef CD_DSAR_H
#define CD_DSAR_H

#include "base/base.h"
#include "calendar/calendar.h"
#include "core/core.h"
#include "store/store.h"

/* The kinds of request (GDPR Art. 15-21, CCPA/CPRA 1798.100-1798.125). */
enum cd_dsar_type {
    CD_DSAR_ACCESS,          /* a copy of the data and how it is used (Art. 15, right to know) */
    CD_DSAR_PORTABILITY,     /* the data in a machine-readable form (Art. 20) */
    CD_DSAR_RECTIFICATION,   /* correct or complete (Art. 16, right to correct) */
    CD_DSAR_ERASURE,         /* delete (Art. 17, right to delete) */
    CD_DSAR_RESTRICTION,     /* restrict processing (Art. 18) */
    CD_DSAR_OBJECTION,       /* object to processing (Art. 21) */
    CD_DSAR_OPT_OUT_SALE,    /* opt out of sale or sharing (1798.120) */
    CD_DSAR_LIMIT_SENSITIVE, /* limit the use of sensitive personal information (1798.121) */
    CD_DSAR_TYPE__COUNT
};

/* The lifecycle. Open states: received, verifying, in_progress, extended. */
enum cd_dsar_state {
    CD_DSAR_RECEIVED,
    CD_DSAR_VERIFYING,
    CD_DSAR_IN_PROGRESS,
    CD_DSAR_EXTENDED,
    CD_DSAR_COMPLETED,
    CD_DSAR_REFUSED,
    CD_DSAR_WITHDRAWN,
    CD_DSAR_STATE__COUNT
};

/* Names as the API shows them ("opt_out_sale_sharing", "in_progress"); parsers return false for
 * unknown names. */
const char *cd_dsar_type_name(enum cd_dsar_type t);
bool cd_dsar_type_parse(struct cd_str s, enum cd_dsar_type *out);
const char *cd_dsar_state_name(enum cd_dsar_state s);
bool cd_dsar_state_parse(struct cd_str s, enum cd_dsar_state *out);
/* Whether the lifecycle allows going from one state to the other (extended is reached only by
 * cd_dsar_extend). */
bool cd_dsar_transition_allowed(enum cd_dsar_state from, enum cd_dsar_state to);

/* ---- deadline rules ------------------------------------------------------------------------ */

struct cd_dsar_rules;

/* Parses the regimes file (YAML, docs/dsar.md has the format) named `name` in messages; every
 * calendar it names must be in cals (borrowed: it must outlive the rules).
 * Errors: CD_ERR_INVALID "NAME:LINE: what" (unknown or missing keys, a period that does not
 * parse, an extension in another unit than its answer, an unknown calendar or request type, a
 * jurisdiction code matched twice, not exactly one default regime), CD_ERR_NOMEM. The caller
 * owns *out (cd_dsar_rules_free). */
enum cd_err cd_dsar_rules_parse(const struct cd_calendars *cals, const char *name,
                                const char *data, size_t len, struct cd_dsar_rules **out);
/* Reads and parses the file at path. Errors: as above, CD_ERR_IO. */
enum cd_err cd_dsar_rules_load(const struct cd_calendars *cals, const char *path,
                               struct cd_dsar_rules **out);
void cd_dsar_rules_free(struct cd_dsar_rules *r);

/* A request's deadlines, as the rules set them. Instants in ms; 0 when there is none. */
struct cd_dsar_deadlines {
    const char *regime;   /* the regime's id (borrowed from the rules) */
    int64_t acknowledge;  /* when receipt must be confirmed to the customer */
    int64_t answer;       /* when the request must be answered */
    int64_t extended;     /* the answer's deadline once extended (0: no extension allowed) */
    int64_t unrolled;     /* the answer's last day before it moved to a business day (0: it did
                           * not move) */
};

/* The regime whose match list holds jurisdiction (a customer's jurisdiction code, "" for none),
 * or the default regime: its id. */
const char *cd_dsar_regime_for(const struct cd_dsar_rules *r, struct cd_str jurisdiction);
/* The deadlines of a request of type t under regime (an id) received at received_ms.
 * Errors: CD_ERR_NOT_FOUND (no such regime), CD_ERR_INVALID (the calendar has no working time
 * within ten years). */
enum cd_err cd_dsar_deadlines(const struct cd_dsar_rules *r, struct cd_str regime,
                              enum cd_dsar_type t, int64_t received_ms,
                              struct cd_dsar_deadlines *out);
/* The regimes as JSON for GET /v1/dsar/regimes: {"items":[{"id","name","calendar","authority",
 * "basis","match":[..],"default","deadlines":{"<type>":{"acknowledge","answer",
 * "roll_to_business_day","extension"}}}],"due_soon_days"}. The caller owns *out.
 * Errors: CD_ERR_NOMEM. */
enum cd_err cd_dsar_rules_json(const struct cd_dsar_rules *r, json_t **out);

/* ---- the service --------------------------------------------------------------------------- */

struct cd_dsar;

/* Opens the service over s and core (borrowed; they outlive it) with the rules (taken: the
 * service frees them, also on failure). Errors: CD_ERR_NOMEM. */
enum cd_err cd_dsar_open(struct cd_store *s, struct cd_core *core, struct cd_dsar_rules *rules,
                         struct cd_dsar **out);
void cd_dsar_close(struct cd_dsar *d);
const struct cd_dsar_rules *cd_dsar_rules(const struct cd_dsar *d);

/* How a request reached Candor. */
enum cd_dsar_intake {
    CD_DSAR_INTAKE_API,          /* staff or an integration filed it */
    CD_DSAR_INTAKE_SELF_SERVICE, /* the customer, in a self-service session */
    CD_DSAR_INTAKE_INTERACTION,  /* converted from an inbound interaction */
};

/* Opens a request. Body: {"customer_id", "type", "received_at"? (RFC 3339, not in the future;
 * default now), "interaction_id"? (an inbound interaction of that customer that carried the
 * request: the clock then starts when it was received, whatever received_at says),
 * "jurisdiction"? (a code such as "EU" or "US-CA" naming the law that applies, when it is not
 * the customer's own), "details"? (what the customer asked, up to 4,000 characters; sealed)}.
 * With CD_DSAR_INTAKE_INTERACTION the body must name interaction_id. The request starts
 * "received", with its deadlines from the rules; the opening is recorded in the ledger
 * ("dsar.open"). With CD_DSAR_INTAKE_SELF_SERVICE (the customer, signed in to their own
 * session, is a verified requester) it goes on at once to "in_progress", verified and
 * acknowledged ("dsar.verified", reason "session"). *out: the request (cd_dsar_get's form).
 * Errors: CD_ERR_INVALID (the detail names the member), CD_ERR_NOT_FOUND (customer or
 * interaction), CD_ERR_CONFLICT (the customer was merged or erased; an interaction of another
 * customer or outbound), CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_dsar_create(struct cd_dsar *d, const struct cd_actor *a, const json_t *body,
                           enum cd_dsar_intake intake, json_t **out);

/* One request: {"id","customer_id","type","state","regime","regime_name","intake",
 * "interaction_id","received_at","acknowledge_by","acknowledged_at","due_at",
 * "original_due_at","deadline":{"rule","calendar","basis","rolled_from"},"extension":
 * {"reason","explanation","extended_at"} | null,"refusal":{"reason","explanation",
 * "complaint"} | null,"closed_at","overdue","due_soon","history":[{"at","from","to","actor",
 * "reason"}],"recipients_told":[{"recipient_id","recipient_name","kind","event_type","status"
 * (pending, told, failed),"created_at","told_at","told_by",...}]} (the recipients of the
 * customer's data told of the erasure, rectification or restriction the request made, as
 * cd_outbox_notices shows them; empty for other requests, or without the link). The sealed texts (details, explanations) are opened only when with_texts is
 * true; the caller has then checked and records the read. customer_id, when not NULL, must be
 * the request's customer (a self-service session sees its own requests only).
 * Errors: CD_ERR_NOT_FOUND, CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_dsar_get(struct cd_dsar *d, struct cd_str id, const char *customer_id,
                        bool with_texts, json_t **out);

/* Which requests a listing shows. */
struct cd_dsar_query {
    struct cd_str customer_id; /* one customer's, or empty */
    struct cd_str state;       /* one state, "open", "closed", or empty (all) */
    struct cd_str type;        /* one type, or empty */
    struct cd_str due;         /* "overdue", "due_soon" (open requests only), or empty */
    struct cd_str cursor;
    int limit; /* 1..200 */
};

/* Requests, newest received first, or by deadline (soonest first) for due=overdue|due_soon:
 * {"items":[request without history and texts],"next_cursor"}.
 * Errors: CD_ERR_INVALID (a filter or the cursor), CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_dsar_list(struct cd_dsar *d, const struct cd_dsar_query *q, json_t **out);

/* Moves a request to another state. Body: {"state", "reason"? (a code; required to refuse:
 * manifestly_unfounded, excessive, identity_not_verified, exemption, legal_hold,
 * not_applicable), "explanation"? (to the customer, up to 4,000 characters)}. Refusing names
 * the authority the customer may complain to, from the regime. Recorded in the ledger
 * ("dsar.<state>") and the request's history in one transaction. *out: the request.
 * Errors: CD_ERR_INVALID, CD_ERR_NOT_FOUND, CD_ERR_CONFLICT (the lifecycle does not allow it:
 * the detail names both states), CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_dsar_transition(struct cd_dsar *d, const struct cd_actor *a, struct cd_str id,
                               const json_t *body, json_t **out);

/* Extends the deadline as the regime allows, once, before the original deadline passes (GDPR
 * Art. 12(3), CCPA 1798.130(a)(2)). Body: {"reason": "complexity" | "number_of_requests" |
 * "other", "explanation" (to the customer, 1..4,000 characters)}. The request must be in
 * progress; it becomes "extended", and dsar.extended (with the reason and the explanation,
 * sealed at rest) is told in the same transaction, so that the customer hears of it. Errors: CD_ERR_INVALID, CD_ERR_NOT_FOUND, CD_ERR_CONFLICT
 * (already extended, not in progress, past its deadline, or the regime allows no extension for
 * this type), CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_dsar_extend(struct cd_dsar *d, const struct cd_actor *a, struct cd_str id,
                           const json_t *body, json_t **out);

/* Records that receipt was confirmed to the customer (CCPA's ten business days). Leaving
 * "received" records it too. Errors: CD_ERR_NOT_FOUND, CD_ERR_CONFLICT (closed, or already
 * acknowledged), CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_dsar_acknowledge(struct cd_dsar *d, const struct cd_actor *a, struct cd_str id,
                                json_t **out);

/* What the service reaches in other modules, wired by whoever opens it (src/cli/serve.c); any
 * may be NULL. enqueue has the shape of cd_outbox_enqueue (src/outbox: events written in the
 * transaction of the change that causes them) and holds_active that of
 * cd_retention_holds_active (src/retention: the legal holds in force on a customer, read in
 * the erasure's transaction). Without holds_active no hold is known; without enqueue nothing
 * is told; without consent, objections and opt-outs cannot be fulfilled. */
struct cd_consent;
struct cd_guard;
struct cd_dsar_links {
    enum cd_err (*enqueue)(struct cd_tx *tx, const char *event_type, struct cd_str customer_id,
                           const json_t *payload, char id_out[CD_ID_MAX]);
    enum cd_err (*holds_active)(struct cd_tx *tx, struct cd_str customer_id, json_t **holds);
    /* the recipients a customer's data goes to (a JSON array), for the export's manifest */
    enum cd_err (*recipients_of)(struct cd_tx *tx, struct cd_str customer_id, json_t **out);
    /* who was told about a request's change of the customer's data (GDPR Art. 19): the shapes
     * of cd_outbox_notices_attach (the notices made since since_ms that belong to no request
     * become the request's) and cd_outbox_notices (a request's notices, a JSON array) */
    enum cd_err (*notices_attach)(struct cd_tx *tx, struct cd_str customer_id, int64_t since_ms,
                                  struct cd_str request_id, uint64_t *n);
    enum cd_err (*notices)(struct cd_tx *tx, struct cd_str customer_id, int64_t since_ms,
                           struct cd_str request_id, json_t **out);
    struct cd_consent *consent;
    struct cd_guard *guard; /* its PII rules flag other people's data in an export */
};
/* Sets the links; call before serving. */
void cd_dsar_set_links(struct cd_dsar *d, const struct cd_dsar_links *l);

/* Does what a request in progress (or extended) asks, and completes it:
 *  - erasure, body {}: in one transaction, unless a legal hold is in force (then nothing
 *    changes, CD_ERR_CONFLICT, and *holds gets the holds): the customer is crypto-shredded and
 *    their rows deleted (cd_core_customer_erase_in), their consent events, preferences and
 *    nonces deleted, the texts of their requests cleared, a tombstone recorded (ids, times,
 *    counts; no personal data), customer.erased and dsar.completed told; then the owner cache
 *    and the consent projection forget them and the write-ahead log is checkpointed;
 *  - restriction, body {}: processing restricted (GDPR Art. 18) in the same transaction;
 *  - objection, opt_out_sale_sharing, limit_sensitive_use, body {"purposes"?: [..]}: a
 *    withdrawal (consent event with its receipt) for each purpose, in force at once; by
 *    default objection withdraws marketing, personalization, analytics and research, opting
 *    out withdraws sale_or_sharing and targeted_advertising, limiting withdraws
 *    personalization, targeted_advertising and analytics;
 *  - rectification, body {"changes": {customer fields, as PATCH /v1/customers/{id}}}.
 * The notices to recipients that an erasure, rectification or restriction made become the
 * request's (its "recipients_told"), in the transaction that completes it.
 * Access and portability are fulfilled by the export. *out: the request, completed (with
 * "consent_events" for withdrawals). Errors: CD_ERR_INVALID, CD_ERR_NOT_FOUND,
 * CD_ERR_CONFLICT (not in progress; a hold; access and portability), CD_ERR_BUSY (no consent
 * engine), CD_ERR_STORE, CD_ERR_NOMEM. The caller owns *holds. */
enum cd_err cd_dsar_fulfil(struct cd_dsar *d, const struct cd_actor *a, struct cd_str id,
                           const json_t *body, json_t **out, json_t **holds);

/* ---- identity verification by a one-time code ---- */

/* Sends a one-time code to verify the customer behind a request that is received or verifying
 * (GDPR Art. 12(6), 11 CCR 7060): the code (8 digits, valid 15 minutes) goes to the customer's
 * identity on file of the channel named (body {"channel"?: "email" (default) | "phone"}) as
 * the outbox event dsar.verification_code, whose address and code are sealed at rest and reach
 * only a subscription whose purpose may see contact data. Candor keeps a keyed hash of the
 * code; a new code replaces the one pending; at most 3 are sent for one request. Reading the
 * identity is recorded on the customer's access log (purpose legal_obligation); the request
 * becomes "verifying" ("dsar.verification_sent" in the ledger, with the channel, never the
 * code). *out: {"request_id","channel","expires_at","attempts_left","sends_left"}.
 * Errors: CD_ERR_INVALID, CD_ERR_NOT_FOUND, CD_ERR_CONFLICT (not received or verifying; no
 * identity of that channel; 3 codes sent already), CD_ERR_BUSY (no outbox wired),
 * CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_dsar_verification_send(struct cd_dsar *d, const struct cd_actor *a,
                                      struct cd_str id, const json_t *body, json_t **out);

/* Checks the code the customer gives back (body {"code": 8 digits}), comparing keyed hashes in
 * constant time. The right code within its 15 minutes verifies the request: it goes
 * "in_progress" ("dsar.verified"), *out gets the request. A wrong one counts an attempt; the
 * fifth wrong one, or a check after expiry, voids the code. Each decision (verified,
 * attempts exhausted, expired) deletes the verification artefact and is in the ledger.
 * On CD_ERR_CONFLICT *failure gets {"outcome": "mismatch" | "attempts_exhausted" | "expired" |
 * "none_pending", "attempts_left"} (the caller owns it): a code checked again after the
 * decision (a replay) finds none pending. Errors: CD_ERR_INVALID (not 8 digits; not counted),
 * CD_ERR_NOT_FOUND, CD_ERR_CONFLICT, CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_dsar_verification_check(struct cd_dsar *d, const struct cd_actor *a,
                                       struct cd_str id, const json_t *body, json_t **out,
                                       json_t **failure);

/* ---- the export (access, portability) ---- */

struct cd_dsar_export;

/* Where the export's bytes go, in order; an error stops it (the client went away). */
typedef enum cd_err (*cd_dsar_sink)(void *ctx, const void *p, size_t n);

/* Prepares the export that answers an access or portability request that is in progress,
 * extended or completed, and records it in the ledger as one read of every category
 * ("export.read", with a's purpose) before anything is written. a is copied: the export may
 * outlive the caller's request. The caller owns *out (cd_dsar_export_free).
 * Errors: CD_ERR_NOT_FOUND, CD_ERR_CONFLICT (another type; not yet in progress; the customer
 * was erased), CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_dsar_export_open(struct cd_dsar *d, const struct cd_actor *a, struct cd_str id,
                                struct cd_dsar_export **out);

/* Writes the export to sink as a ZIP, streamed: customer.json/.csv, interactions.json/.csv
 * (every interaction, newest first), consent.json/.csv (the current state, preferences and
 * every event with its signed receipt), access_log.json/.csv, requests.json/.csv, review.json
 * (passages of the conversations the guard's PII rules find that are not the customer's own
 * identities: possibly other people's data, to review before release; at most 10,000 listed,
 * all counted), summary.html, and manifest.json last (categories, purposes, recipients,
 * retention and legal holds, sources, each file's record count and SHA-256). Memory holds a
 * page of interactions at a time. Errors: the sink's, CD_ERR_NOT_FOUND, CD_ERR_TOO_BIG (past
 * 4 GiB), CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_dsar_export_write(struct cd_dsar_export *x, cd_dsar_sink sink, void *ctx);

/* The file name to offer: "candor-export-<request id>.zip". */
void cd_dsar_export_name(const struct cd_dsar_export *x, char *out, size_t n);

void cd_dsar_export_free(struct cd_dsar_export *x);

/* Counts for /metrics: requests by state, and the open ones past their deadline (answer or
 * acknowledgement) at now_ms. Errors: CD_ERR_STORE. */
struct cd_dsar_counts {
    uint64_t by_state[CD_DSAR_STATE__COUNT];
    uint64_t overdue;
    uint64_t ack_overdue;
};
enum cd_err cd_dsar_counts(struct cd_store *s, int64_t now_ms, struct cd_dsar_counts *out);

/* Starts the watcher thread ("cd-dsar"): at once and then every interval_ms it counts the
 * requests (cd_dsar_counts) for /metrics, which reads the last counts without touching the
 * store (it is answered on the event thread). cd_dsar_close stops it.
 * Errors: CD_ERR_INTERNAL (no thread). */
enum cd_err cd_dsar_start(struct cd_dsar *d, unsigned interval_ms);
/* The counts of the watcher's last pass; false before the first one. Any thread. */
bool cd_dsar_counts_cached(struct cd_dsar *d, struct cd_dsar_counts *out);

#endif
