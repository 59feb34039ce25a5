/* Handlers for the outbox and webhooks: the event types, subscriptions, deliveries and the
 * dead-letter list. */
#include "http_int.h"
#include "outbox/outbox.h"

enum cd_err cd__http_event_types(struct cd_req *r)
{
    return cd_outbox_event_types_json(&r->resp_json);
}
