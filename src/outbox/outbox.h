/* outbox — the durable outbox of events and what is told to whom.
 *
 * Owns: the event-type table (the one source of truth for which events exist, which members
 * each carries and which of those are personal data), the outbox_events table, written in the
 * same store transaction as the change that causes an event (so an event exists if and only
 * if its change committed), and the per-subscription delivery rows made with it.
 *
 * Payloads carry ids and codes. A member the event table marks personal (a contact address,
 * a one-time code) is sealed at rest under a key derived from the master key, and reaches
 * only a subscription whose purpose may see that member's category.
 *
 * Must never: know about HTTP; log a payload; keep a personal member in clear.
 *
 * Threads: cd_outbox_enqueue runs inside a store write on the writer thread. The event table
 * is constant. A struct cd_outbox is immutable after cd_outbox_open. */
#ifndef CD_OUTBOX_H
#define CD_OUTBOX_H

#include "base/base.h"
#include "policy/policy.h"
#include "store/store.h"

/* ---- the event-type table ---- */

/* One member an event's payload may carry. */
struct cd_outbox_member {
    const char *name;
    json_type type;    /* JSON_STRING, JSON_INTEGER, JSON_TRUE (a boolean), JSON_ARRAY */
    unsigned category; /* CD_FIELDS_REFERENCE: stored and sent as is; any other category
                        * (CD_FIELDS_CONTACT, ...): personal, sealed at rest, sent only to a
                        * subscription whose purpose may see that category */
    bool required;
    const char *about; /* one sentence for the docs */
};

/* One event type. */
struct cd_outbox_event_type {
    const char *name;       /* "consent.changed" */
    const char *about;      /* one sentence for the docs */
    bool customer;          /* the event is about one customer: a customer id is required */
    bool tell_recipients;   /* GDPR Art. 19: every recipient of the customer's data is told */
    const struct cd_outbox_member *members; /* the payload's members (customer_id is not one:
                                             * every event about a customer carries it) */
    size_t nmembers;
};

/* The table, in the order the docs list it; *n gets its length. */
const struct cd_outbox_event_type *cd_outbox_event_types(size_t *n);

/* The event type called name, or NULL. */
const struct cd_outbox_event_type *cd_outbox_event_type(struct cd_str name);

/* The table as JSON for GET /v1/webhooks/event-types: {"items":[{"name","about","customer",
 * "tells_recipients","members":[{"name","type","category","required","about"}]}]}.
 * The caller owns *out. Errors: CD_ERR_NOMEM. */
enum cd_err cd_outbox_event_types_json(json_t **out);

/* ---- the outbox service ---- */

struct cd_outbox;

/* Opens the outbox over s (borrowed; it must outlive the result) with the master key (32
 * bytes, from which the sealing keys are derived; copied) and makes it the one the store's
 * transactions reach (cd_outbox_enqueue seals personal members with it). Errors:
 * CD_ERR_NOMEM. The caller owns *out (cd_outbox_close). */
enum cd_err cd_outbox_open(struct cd_store *s, const uint8_t master[32], struct cd_outbox **out);

/* Detaches the outbox from its store, wipes its keys and frees it. NULL is fine. */
void cd_outbox_close(struct cd_outbox *ob);

/* Who changes subscriptions and recipients, for the ledger. Borrowed for the call. */
struct cd_outbox_actor {
    const char *token_id;   /* "tok_..." or "cli" */
    const char *role;
    const char *name;
    const char *request_id; /* may be NULL */
};

/* ---- enqueueing ---- */

/* Queues one event inside tx. event_type: a name from the event table. customer_id may be
 * CD_STR_NULL (events not about one customer; required for event types about one).
 * payload (borrowed; NULL: no members) is checked against the event type's members (each
 * declared, of its type, the required ones present) and serialised at once; the members the
 * table marks personal are sealed. One delivery row is made for every subscription to the
 * event type that is not deleted (a paused one keeps its deliveries until it is resumed).
 * id_out (may be NULL) gets the event id ("evt_...").
 * Errors: CD_ERR_INVALID (unknown event type, customer id missing or malformed, a member not
 * declared, of the wrong type or missing; the detail names it), CD_ERR_CRYPTO (a personal
 * member, and no outbox is open on this store), CD_ERR_NOMEM, CD_ERR_STORE. */
enum cd_err cd_outbox_enqueue(struct cd_tx *tx, const char *event_type,
                              struct cd_str customer_id, const json_t *payload,
                              char id_out[CD_ID_MAX]);

/* ---- webhook subscriptions ---- */

/* A subscription's secret as shown to its owner: "whsec_" + base64 of 32 random bytes. */
#define CD_OUTBOX_SECRET_LEN 32
#define CD_OUTBOX_SECRET_TEXT (6 + 44 + 1)

/* Creates a subscription. Body: {"url" (https://, or http:// to a loopback address; no user
 * information or fragment; at most 2048 bytes), "events": [event types, or "*" for all]
 * (1 to 64, no repeats), "purpose" (a purpose the policy lets the integration role declare;
 * it decides which personal members the subscription may receive), "description"? (at most
 * 200 bytes), "status"? ("active", the default, or "paused")}. *out: the subscription and,
 * this once, its "secret" (stored sealed; rotate it to get a new one). Recorded in the
 * ledger ("webhook.create"). Errors: CD_ERR_INVALID (the detail names the member),
 * CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_outbox_subscription_create(struct cd_outbox *ob, const struct cd_policy *policy,
                                          const struct cd_outbox_actor *a, const json_t *body,
                                          json_t **out);

/* Every subscription not deleted, oldest first: {"items":[{"id","url","events","purpose",
 * "description","status","created_at","updated_at","created_by","pending","dead"}]}, the
 * last two counting its deliveries waiting and dead-lettered. Errors: CD_ERR_STORE,
 * CD_ERR_NOMEM. */
enum cd_err cd_outbox_subscription_list(struct cd_outbox *ob, json_t **out);

/* One subscription, as listed. Errors: CD_ERR_NOT_FOUND, CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_outbox_subscription_get(struct cd_outbox *ob, struct cd_str id, json_t **out);

/* Changes url, events, purpose, description or status (members as for create, each optional).
 * Pausing keeps the subscription's deliveries queued until it is active again. Recorded in the
 * ledger ("webhook.update"). *out: the subscription. Errors: CD_ERR_INVALID, CD_ERR_NOT_FOUND,
 * CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_outbox_subscription_update(struct cd_outbox *ob, const struct cd_policy *policy,
                                          const struct cd_outbox_actor *a, struct cd_str id,
                                          const json_t *body, json_t **out);

/* Deletes a subscription: no event is queued for it any more and its waiting deliveries are
 * cancelled (kept, with status "cancelled"). Recorded in the ledger ("webhook.delete").
 * Errors: CD_ERR_NOT_FOUND, CD_ERR_STORE. */
enum cd_err cd_outbox_subscription_delete(struct cd_outbox *ob, const struct cd_outbox_actor *a,
                                          struct cd_str id);

/* Replaces the subscription's secret; deliveries signed from now on use the new one.
 * *out: {"id","secret"}. Recorded in the ledger ("webhook.rotate"). Errors:
 * CD_ERR_NOT_FOUND, CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_outbox_subscription_rotate(struct cd_outbox *ob, const struct cd_outbox_actor *a,
                                          struct cd_str id, json_t **out);

/* Queues a webhook.test event for this subscription alone. *out: {"event_id"}.
 * Errors: CD_ERR_NOT_FOUND, CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_outbox_subscription_test(struct cd_outbox *ob, struct cd_str id, json_t **out);

/* ---- deliveries and the dead-letter list ---- */

struct cd_outbox_delivery_query {
    struct cd_str subscription_id; /* empty: every subscription */
    struct cd_str status;          /* pending, delivered, dead, cancelled; empty: all */
    struct cd_str cursor;          /* from next_cursor, or empty */
    int limit;                     /* 1..500 */
};

/* Deliveries, newest first: {"items":[{"id","event_id","event_type","subscription_id",
 * "customer_id","status","attempts","created_at","next_attempt_at","finished_at",
 * "last_status","last_error"}],"next_cursor"}. Errors: CD_ERR_INVALID (status, cursor),
 * CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_outbox_deliveries(struct cd_outbox *ob, const struct cd_outbox_delivery_query *q,
                                 json_t **out);

/* Puts a dead-lettered delivery back in the queue with its attempts counted from zero: it is
 * sent again with its original event id (receivers deduplicate on webhook-id) and, being the
 * oldest of its customer's, before that customer's later deliveries still waiting. Recorded in
 * the ledger ("webhook.replay"). *out: the delivery. Errors: CD_ERR_NOT_FOUND,
 * CD_ERR_CONFLICT (not dead-lettered), CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_outbox_delivery_replay(struct cd_outbox *ob, const struct cd_outbox_actor *a,
                                      struct cd_str id, json_t **out);

/* Replays every dead-lettered delivery (of one subscription when subscription_id is not
 * empty); *n gets how many. Errors: CD_ERR_STORE. */
enum cd_err cd_outbox_dead_replay_all(struct cd_outbox *ob, const struct cd_outbox_actor *a,
                                      struct cd_str subscription_id, uint64_t *n);

/* ---- recipients told (GDPR Art. 19) ---- */

/* Registers a recipient of customers' data. Body: {"name" (1..200 bytes), "kind": "webhook"
 * (told by the events' deliveries to "subscription_id", a live subscription) or "processor"
 * (told by a person, who confirms it; "contact": how to reach it, 1..500 bytes), "purposes":
 * [purposes it receives data for], "categories": [data categories it receives] (each list 1
 * to 16 distinct names), "scope": "all" (every customer's data goes there) or "listed" (only
 * the customers added with cd_outbox_recipient_add_customer)}. Ledger: "recipient.create".
 * *out: the recipient. Errors: CD_ERR_INVALID, CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_outbox_recipient_create(struct cd_outbox *ob, const struct cd_outbox_actor *a,
                                       const json_t *body, json_t **out);

/* The recipients not removed, oldest first ({"items":[...]}), or one (removed ones too):
 * {"id","name","kind","subscription_id","contact","purposes","categories","scope",
 * "created_at","removed_at"}. Errors: CD_ERR_NOT_FOUND, CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_outbox_recipient_list(struct cd_outbox *ob, json_t **out);
enum cd_err cd_outbox_recipient_get(struct cd_outbox *ob, struct cd_str id, json_t **out);

/* Removes a recipient: it is told nothing more (the notices it was sent stay). Ledger:
 * "recipient.remove". Errors: CD_ERR_NOT_FOUND, CD_ERR_STORE. */
enum cd_err cd_outbox_recipient_remove(struct cd_outbox *ob, const struct cd_outbox_actor *a,
                                       struct cd_str id);

/* Records that customer_id's data went to a "listed" recipient (idempotent). The caller has
 * resolved customer_id to a live customer. Ledger: "recipient.disclose".
 * Errors: CD_ERR_NOT_FOUND (recipient), CD_ERR_INVALID, CD_ERR_STORE. */
enum cd_err cd_outbox_recipient_add_customer(struct cd_outbox *ob,
                                             const struct cd_outbox_actor *a, struct cd_str id,
                                             struct cd_str customer_id);

/* The recipients customer_id's data goes to (recipient objects as listed), inside tx: for a
 * data-subject request's manifest. The caller owns *out. Errors: CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_outbox_recipients_of(struct cd_tx *tx, struct cd_str customer_id, json_t **out);

/* Inside core's merge: merged's disclosures become survivor's. Errors: CD_ERR_STORE. */
enum cd_err cd_outbox_customer_merged(struct cd_tx *tx, struct cd_str merged,
                                      struct cd_str survivor);

/* Who was told what about customer_id, oldest first, inside tx: notices made at or after
 * since_ms (0: all), of request_id when it is not empty: a JSON array of {"id",
 * "recipient_id","recipient_name","kind","contact","customer_id","event_id","event_type",
 * "request_id","delivery_id","status" (pending, told, failed),"created_at","told_at",
 * "told_by" ("webhook" or the token that confirmed it),"note"}. The caller owns *out.
 * Errors: CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_outbox_notices(struct cd_tx *tx, struct cd_str customer_id, int64_t since_ms,
                              struct cd_str request_id, json_t **out);

/* Attaches to request_id the notices of customer_id made at or after since_ms that belong to
 * no request yet (a request that erased, rectified or restricted the customer records whom
 * that told). *n (may be NULL) gets how many. Errors: CD_ERR_INVALID (empty request id),
 * CD_ERR_STORE. */
enum cd_err cd_outbox_notices_attach(struct cd_tx *tx, struct cd_str customer_id,
                                     int64_t since_ms, struct cd_str request_id, uint64_t *n);

/* Notices of every customer with that status ("" for all; pending first to work through),
 * oldest first, at most 1000: {"items":[...]}. Errors: CD_ERR_INVALID, CD_ERR_STORE,
 * CD_ERR_NOMEM. */
enum cd_err cd_outbox_notices_list(struct cd_outbox *ob, struct cd_str status, json_t **out);

/* Confirms that a person told a processor: body {"note"? (at most 500 bytes: how, a
 * reference)}. Ledger: "recipient.told". *out: the notice. Errors: CD_ERR_NOT_FOUND,
 * CD_ERR_CONFLICT (a webhook recipient's notice, told by its delivery; already told),
 * CD_ERR_INVALID, CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd_outbox_notice_confirm(struct cd_outbox *ob, const struct cd_outbox_actor *a,
                                     struct cd_str id, const json_t *body, json_t **out);

/* Retention: deletes (or with dry_run counts) the deliveries that finished before
 * deliveries_before and the events made before events_before none of whose deliveries waits
 * or is dead-lettered (0: that kind is kept). *deliveries and *events get how many.
 * Errors: CD_ERR_STORE. */
enum cd_err cd_outbox_expire(struct cd_store *s, int64_t deliveries_before, int64_t events_before,
                             bool dry_run, uint64_t *deliveries, uint64_t *events);

/* ---- the delivery worker ---- */

/* What decides whether a delivery may carry a customer's personal members: called before each
 * delivery that has some, with the subscription's purpose and the categories of those
 * members. CD_OK lets them go (the hook records the read); an error withholds them (the
 * delivery goes with the reference members and "withheld"). May be NULL: withheld always. */
struct cd_outbox_hooks {
    void *ctx;
    enum cd_err (*personal_read)(void *ctx, const char *customer_id, enum cd_purpose purpose,
                                 unsigned categories, const char *subscription_id);
};

struct cd_outbox_worker_config {
    unsigned concurrency;     /* deliveries in flight at once (>= 1) */
    unsigned timeout_ms;      /* one attempt, connecting included */
    unsigned max_attempts;    /* then the delivery is dead-lettered (>= 1) */
    unsigned backoff_base_ms; /* the first retry waits up to this long ... */
    unsigned backoff_max_ms;  /* ... each one up to twice the last, at most this long */
    const struct cd_policy *policy; /* borrowed; outlives the worker */
    struct cd_outbox_hooks hooks;
};
#define CD_OUTBOX_CONCURRENCY 8
#define CD_OUTBOX_TIMEOUT_MS 10000
#define CD_OUTBOX_MAX_ATTEMPTS 20
#define CD_OUTBOX_BACKOFF_BASE_MS 1000
#define CD_OUTBOX_BACKOFF_MAX_MS (6 * 3600 * 1000)

/* The wait before retry number `attempt` (1 for the first retry): full jitter, a uniformly
 * random time in [0, min(max, base * 2^(attempt-1))] milliseconds. */
int64_t cd_outbox_backoff_ms(unsigned attempt, unsigned base_ms, unsigned max_ms);

/* Starts the delivery worker thread (cd-webhooks): it claims due deliveries durably (a
 * claimed delivery a crash interrupted is due again once its lease, the timeout plus 5 s,
 * has passed), sends them signed (docs/webhooks.md), and records each outcome.
 * Errors: CD_ERR_INVALID (a zero in cfg, already started), CD_ERR_INTERNAL (libcurl or the
 * thread could not start), CD_ERR_NOMEM. */
enum cd_err cd_outbox_worker_start(struct cd_outbox *ob, const struct cd_outbox_worker_config *cfg);

/* Stops the worker: deliveries in flight are abandoned (their leases make them due again)
 * and the thread is joined. Safe when not started; cd_outbox_close calls it. */
void cd_outbox_worker_stop(struct cd_outbox *ob);

/* Wakes the worker to look for due deliveries now (after a write that queued some). */
void cd_outbox_worker_wake(struct cd_outbox *ob);

/* Counters since the process started, and the queue as last seen (at most a second old). */
#define CD_OUTBOX_LATENCY_BUCKETS 12
extern const double cd_outbox_latency_le[CD_OUTBOX_LATENCY_BUCKETS]; /* seconds; last +Inf */
struct cd_outbox_stats {
    uint64_t delivered;     /* deliveries a receiver acknowledged (2xx) */
    uint64_t failed;        /* attempts that failed (each retry counts) */
    uint64_t dead_lettered; /* deliveries that ran out of attempts */
    uint64_t queued;        /* deliveries waiting (gauge) */
    uint64_t dead;          /* deliveries in the dead-letter list (gauge) */
    uint64_t latency_hist[CD_OUTBOX_LATENCY_BUCKETS]; /* event queued -> acknowledged */
    double latency_sum;     /* seconds */
    bool running;           /* the worker runs in this process */
};
void cd_outbox_stats(struct cd_outbox *ob, struct cd_outbox_stats *out);

#endif
