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

#endif
