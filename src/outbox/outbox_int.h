/* Inside the outbox module only. */
#ifndef CD_OUTBOX_INT_H
#define CD_OUTBOX_INT_H

#include "outbox.h"
#include "crypto/crypto.h"

/* Largest serialised payload (reference members, and personal ones, each). Events carry ids
 * and codes: anything near this is a mistake of the caller. */
#define CD__OUTBOX_PAYLOAD_MAX (64 * 1024)

struct cd_outbox {
    struct cd_store *store;
    /* Seals the personal members of events (associated data: customer id and event id). */
    uint8_t payload_key[CD_CRYPTO_KEY_LEN];
    /* Seals subscriptions' signing secrets (associated data: the subscription id). */
    uint8_t secret_key[CD_CRYPTO_KEY_LEN];
};

/* The field name a personal payload is sealed under: "outbox:" + event id. */
#define CD__OUTBOX_FIELD_MAX (CD_ID_MAX + 8)
void cd__outbox_field(const char *event_id, char out[CD__OUTBOX_FIELD_MAX]);

#endif
