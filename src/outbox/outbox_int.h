/* Inside the outbox module only. */
#ifndef CD_OUTBOX_INT_H
#define CD_OUTBOX_INT_H

#include <pthread.h>
#include "outbox.h"
#include "crypto/crypto.h"

/* Largest serialised payload (reference members, and personal ones, each). Events carry ids
 * and codes: anything near this is a mistake of the caller. */
#define CD__OUTBOX_PAYLOAD_MAX (64 * 1024)

/* How long a claim holds a delivery beyond the attempt's timeout: a worker that died (or a
 * server that was killed) leaves it due again after this. */
#define CD__OUTBOX_LEASE_MARGIN_MS 5000

struct cd__worker; /* worker.c */

struct cd_outbox {
    struct cd_store *store;
    /* Seals the personal members of events (associated data: customer id and event id). */
    uint8_t payload_key[CD_CRYPTO_KEY_LEN];
    /* Seals subscriptions' signing secrets (associated data: the subscription id). */
    uint8_t secret_key[CD_CRYPTO_KEY_LEN];
    /* The worker, when started; mu guards the pointer for wake-ups from other threads. */
    pthread_mutex_t mu;
    struct cd__worker *worker;
    /* Counters (atomic accesses) and the queue as last seen, for /metrics. */
    uint64_t delivered, failed, dead_lettered, queued, dead;
    uint64_t latency_hist[CD_OUTBOX_LATENCY_BUCKETS];
    uint64_t latency_sum_ms;
};

/* The field name a personal payload is sealed under: "outbox:" + event id. */
#define CD__OUTBOX_FIELD_MAX (CD_ID_MAX + 8)
void cd__outbox_field(const char *event_id, char out[CD__OUTBOX_FIELD_MAX]);

/* Checks a subscription's URL (webhooks.c). Errors: CD_ERR_INVALID, CD_ERR_NOMEM. */
enum cd_err cd__outbox_url_check(struct cd_str url);
/* Whether subscription id exists and is not deleted, inside tx (webhooks.c). Errors:
 * CD_ERR_NOT_FOUND, CD_ERR_STORE. */
enum cd_err cd__outbox_sub_live(struct cd_tx *tx, struct cd_str id);
/* Opens a subscription's sealed secret into raw. Errors: CD_ERR_CRYPTO. */
enum cd_err cd__outbox_secret_open(const struct cd_outbox *ob, const char *id, struct cd_val v,
                                   uint8_t raw[CD_OUTBOX_SECRET_LEN]);
/* Appends a ledger event for a change of a subscription, delivery or recipient. */
enum cd_err cd__outbox_ledger(struct cd_tx *tx, const struct cd_outbox_actor *a,
                              const char *action, const char *customer_id,
                              const char *resource_id);

/* The Standard Webhooks signature of one message: "v1," + base64 of HMAC-SHA256 under key of
 * "<msg_id>.<timestamp>.<body>" (sign.c). */
#define CD__OUTBOX_SIG_MAX (3 + 44 + 1)
void cd__outbox_sign(const uint8_t *key, size_t keylen, const char *msg_id, int64_t timestamp,
                     struct cd_str body, char out[CD__OUTBOX_SIG_MAX]);

/* ---- deliveries (deliveries.c) ---- */

struct cd__claim;
/* The body of a claimed delivery (worker.c): {"id","type","timestamp","sequence","data":
 * {customer_id?, reference members, the personal members the subscription's purpose and
 * cfg->hooks allow},"withheld"?: [personal members left out]}. *body is cd_malloc'ed.
 * Errors: CD_ERR_INTEGRITY (an unknown type queued), CD_ERR_CRYPTO, CD_ERR_NOMEM. */
enum cd_err cd__outbox_body(struct cd_outbox *ob, const struct cd_outbox_worker_config *cfg,
                            const struct cd__claim *c, char **body, size_t *len);

/* One claimed delivery with what sending it needs. Owned by the claimer. */
struct cd__claim {
    int64_t seq;
    char id[CD_ID_MAX];
    unsigned attempts; /* this one included */
    char event_id[CD_ID_MAX];
    char type[48];
    char customer_id[CD_ID_MAX]; /* "" for an event about no customer */
    int64_t event_seq, created_at;
    char *payload;            /* the reference members, JSON text */
    struct cd_buf personal;   /* the sealed personal members, or empty */
    char sub_id[CD_ID_MAX];
    char *url;
    char purpose[32];
    struct cd_buf secret;     /* sealed */
};

/* Claims up to max due deliveries (see DUE_SQL) for lease_ms. *out and *n: the claims (the
 * caller frees them with cd__outbox_claims_free); none is an empty answer, not an error. */
enum cd_err cd__outbox_claim(struct cd_outbox *ob, int64_t lease_ms, size_t max,
                             struct cd__claim **out, size_t *n);
void cd__outbox_claims_free(struct cd__claim *v, size_t n);
/* Records the outcomes done[0..ndone) (struct cd__outcome, below) and claims as
 * cd__outbox_claim does, in one write: one commit (one fsync) per round of the worker instead
 * of two. *recorded (may be NULL) is true when the outcomes were written; when nothing was due
 * no write is made and they are still the caller's to record. */
struct cd__outcome;
enum cd_err cd__outbox_record_claim(struct cd_outbox *ob, const struct cd__outcome *done,
                                    size_t ndone, bool *recorded, int64_t lease_ms, size_t max,
                                    struct cd__claim **out, size_t *n);
/* Frees what one claim holds (not the claim itself). */
void cd__outbox_claim_clear(struct cd__claim *k);

enum cd__state { CD__DELIVERED, CD__RETRY, CD__DEAD };

/* What became of one attempt. */
struct cd__outcome {
    int64_t seq, event_seq;
    char id[CD_ID_MAX];
    enum cd__state state;
    int http_status;   /* 0: no answer */
    const char *error; /* static text, or NULL */
    int64_t next_at;   /* CD__RETRY: when it is due again */
};

/* Records outcomes in one write. Errors: CD_ERR_STORE, CD_ERR_NOMEM. */
enum cd_err cd__outbox_record(struct cd_outbox *ob, const struct cd__outcome *v, size_t n);

/* The deliveries waiting and dead-lettered. */
enum cd_err cd__outbox_queue_sizes(struct cd_outbox *ob, int64_t *pending, int64_t *dead);

/* ---- recipients told (recipients.c) ---- */

/* Makes the notices an event owes the recipients of its customer's data (GDPR Art. 19), inside
 * the event's transaction: a recipient that is a webhook subscription is told by a delivery
 * of the event (the one its subscription already has, or one made here), which tells the
 * notice when it is acknowledged; any other recipient gets a notice a person confirms. */
enum cd_err cd__outbox_recipients_fan_out(struct cd_tx *tx, const struct cd_outbox_event_type *t,
                                          const char *event_id, int64_t event_seq,
                                          struct cd_str customer_id, const json_t *payload,
                                          int64_t now);
/* A delivery ended: its notices are told (delivered) or failed (dead-lettered). */
enum cd_err cd__outbox_notices_settle(struct cd_tx *tx, const char *delivery_id, bool delivered,
                                      int64_t now);
/* A dead-lettered delivery was replayed: its failed notices wait again. */
enum cd_err cd__outbox_notices_reopen(struct cd_tx *tx, const char *delivery_id);
/* A subscription was deleted: the notices its waiting deliveries carried failed. */
enum cd_err cd__outbox_notices_cancel(struct cd_tx *tx, const char *subscription_id,
                                      int64_t now);

/* Inserts one delivery row for the event and subscription; id gets its id. */
enum cd_err cd__outbox_delivery_insert(struct cd_tx *tx, int64_t event_seq, const char *sub_id,
                                       struct cd_str customer_id, int64_t now,
                                       char id[CD_ID_MAX]);

#endif
