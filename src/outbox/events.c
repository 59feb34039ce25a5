/* The event-type table and cd_outbox_enqueue: an event row, written in the caller's
 * transaction, and one delivery row per subscription to its type. */
#include <stdio.h>
#include <string.h>
#include "outbox_int.h"
#include "policy/policy.h"

#define REF CD_FIELDS_REFERENCE
#define REQ true
#define OPT false

/* Each table below is the payload of one event type; docs/webhooks.md describes them and a
 * test checks that it names every type and member. */
static const struct cd_outbox_member consent_changed[] = {
    {"consent_event_id", JSON_STRING, REF, REQ, "the consent event recorded (\"cev_...\")"},
    {"purpose", JSON_STRING, REF, REQ, "the purpose the consent is for"},
    {"channel", JSON_STRING, REF, REQ, "the channel, or \"*\" for every channel"},
    {"state", JSON_STRING, REF, REQ, "given, withdrawn, refused, requested, expired or invalidated"},
    {"legal_basis", JSON_STRING, REF, REQ, "the legal basis recorded with it"},
    {"method", JSON_STRING, REF, REQ, "how it was collected (web_form, gpc, unsubscribe, ...)"},
    {"occurred_at", JSON_STRING, REF, REQ, "when the customer gave or withdrew it (RFC 3339)"},
};
static const struct cd_outbox_member customer_erased[] = {
    {"erased_at", JSON_STRING, REF, REQ, "when the customer's key was destroyed (RFC 3339)"},
    {"request_id", JSON_STRING, REF, OPT, "the data-subject request that asked for it"},
};
static const struct cd_outbox_member customer_restricted[] = {
    {"restricted", JSON_TRUE, REF, REQ, "true: processing is now restricted; false: lifted"},
    {"request_id", JSON_STRING, REF, OPT, "the data-subject request that asked for it"},
};
static const struct cd_outbox_member customer_rectified[] = {
    {"categories", JSON_ARRAY, REF, REQ, "the categories of data that changed (contact, "
                                         "profile, coarse)"},
    {"request_id", JSON_STRING, REF, OPT, "the data-subject request that asked for it"},
};
static const struct cd_outbox_member dsar_opened[] = {
    {"request_id", JSON_STRING, REF, REQ, "the request"},
    {"type", JSON_STRING, REF, REQ, "access, portability, erasure, ..."},
    {"received_at", JSON_STRING, REF, REQ, "when it was first received (RFC 3339)"},
    {"due_at", JSON_STRING, REF, REQ, "when it must be answered (RFC 3339)"},
    {"jurisdiction", JSON_STRING, REF, OPT, "the rule its deadline follows"},
};
static const struct cd_outbox_member dsar_due_soon[] = {
    {"request_id", JSON_STRING, REF, REQ, "the request"},
    {"type", JSON_STRING, REF, REQ, "access, portability, erasure, ..."},
    {"due_at", JSON_STRING, REF, REQ, "when it must be answered (RFC 3339)"},
};
static const struct cd_outbox_member dsar_extended[] = {
    {"request_id", JSON_STRING, REF, REQ, "the request"},
    {"type", JSON_STRING, REF, REQ, "access, portability, erasure, ..."},
    {"reason", JSON_STRING, REF, REQ, "why: complexity, number_of_requests or other"},
    {"explanation", JSON_STRING, CD_FIELDS_CONVERSATION, REQ,
     "what the customer is told about the extension, as staff wrote it"},
    {"original_due_at", JSON_STRING, REF, REQ, "the deadline before the extension (RFC 3339)"},
    {"due_at", JSON_STRING, REF, REQ, "the deadline now (RFC 3339)"},
};
static const struct cd_outbox_member dsar_completed[] = {
    {"request_id", JSON_STRING, REF, REQ, "the request"},
    {"type", JSON_STRING, REF, REQ, "access, portability, erasure, ..."},
    {"outcome", JSON_STRING, REF, OPT, "completed, refused or withdrawn"},
    {"completed_at", JSON_STRING, REF, REQ, "when it was closed (RFC 3339)"},
};
static const struct cd_outbox_member dsar_code[] = {
    {"request_id", JSON_STRING, REF, REQ, "the request being verified"},
    {"channel", JSON_STRING, REF, REQ, "the identity type the code goes to (email, phone)"},
    {"to", JSON_STRING, CD_FIELDS_CONTACT, REQ, "the identity on file the code goes to"},
    {"code", JSON_STRING, CD_FIELDS_CONTACT, REQ, "the one-time code"},
    {"expires_at", JSON_STRING, REF, REQ, "when the code stops working (RFC 3339)"},
};
static const struct cd_outbox_member sign_in_code[] = {
    {"challenge_id", JSON_STRING, REF, REQ, "the sign-in attempt the code answers"},
    {"channel", JSON_STRING, REF, REQ, "the identity type the code goes to (email, phone)"},
    {"to", JSON_STRING, CD_FIELDS_CONTACT, REQ, "the identity on file the code goes to"},
    {"code", JSON_STRING, CD_FIELDS_CONTACT, REQ, "the one-time code"},
    {"expires_at", JSON_STRING, REF, REQ, "when the code stops working (RFC 3339)"},
};
static const struct cd_outbox_member case_breached[] = {
    {"case_id", JSON_STRING, REF, REQ, "the case"},
    {"clock", JSON_STRING, REF, REQ, "the service-level clock that ran out"},
    {"due_at", JSON_STRING, REF, REQ, "when it was due (RFC 3339)"},
    {"breached_at", JSON_STRING, REF, REQ, "when the breach was noticed (RFC 3339)"},
};
static const struct cd_outbox_member webhook_test[] = {
    {"subscription_id", JSON_STRING, REF, REQ, "the subscription tested"},
};

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define ABOUT_CUSTOMER true
static const struct cd_outbox_event_type types[] = {
    {"consent.changed", "A consent event was recorded for the customer.", ABOUT_CUSTOMER, false,
     consent_changed, N(consent_changed)},
    {"customer.erased", "The customer's personal data was erased (crypto-shredded).",
     ABOUT_CUSTOMER, true, customer_erased, N(customer_erased)},
    {"customer.restricted", "Processing of the customer's data was restricted, or the "
                            "restriction lifted (GDPR Art. 18).",
     ABOUT_CUSTOMER, true, customer_restricted, N(customer_restricted)},
    {"customer.rectified", "The customer's personal data was corrected or completed.",
     ABOUT_CUSTOMER, true, customer_rectified, N(customer_rectified)},
    {"dsar.opened", "A data-subject request was received.", ABOUT_CUSTOMER, false, dsar_opened,
     N(dsar_opened)},
    {"dsar.due_soon", "A data-subject request is close to its deadline.", ABOUT_CUSTOMER, false,
     dsar_due_soon, N(dsar_due_soon)},
    {"dsar.extended", "A data-subject request's deadline was extended: the customer must be "
                      "told, with the reason, before the first deadline passes.",
     ABOUT_CUSTOMER, false, dsar_extended, N(dsar_extended)},
    {"dsar.completed", "A data-subject request was closed.", ABOUT_CUSTOMER, false,
     dsar_completed, N(dsar_completed)},
    {"dsar.verification_code", "A one-time code to send to the customer, to verify a request.",
     ABOUT_CUSTOMER, false, dsar_code, N(dsar_code)},
    {"customer.sign_in_code", "A one-time code to send to the customer, to sign in to their "
                              "self-service session.",
     ABOUT_CUSTOMER, false, sign_in_code, N(sign_in_code)},
    {"case.breached", "A case missed a service-level deadline.", false, false, case_breached,
     N(case_breached)},
    {"webhook.test", "A test event sent on request to one subscription.", false, false,
     webhook_test, N(webhook_test)},
};

const struct cd_outbox_event_type *cd_outbox_event_types(size_t *n)
{
    *n = N(types);
    return types;
}

const struct cd_outbox_event_type *cd_outbox_event_type(struct cd_str name)
{
    for (size_t i = 0; i < N(types); i++)
        if (cd_str_eq_c(name, types[i].name))
            return &types[i];
    return NULL;
}

static const char *type_name(json_type t)
{
    switch (t) {
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_TRUE:
        return "boolean";
    default:
        return "array";
    }
}

enum cd_err cd_outbox_event_types_json(json_t **out)
{
    json_t *items = json_array();

    if (items == NULL)
        return CD_ERR_NOMEM;
    for (size_t i = 0; i < N(types); i++) {
        json_t *members = json_array();
        for (size_t j = 0; members && j < types[i].nmembers; j++) {
            const struct cd_outbox_member *m = &types[i].members[j];
            if (json_array_append_new(members,
                                      json_pack("{s:s,s:s,s:s,s:b,s:s}", "name", m->name,
                                                "type", type_name(m->type), "category",
                                                cd_policy_categories(m->category), "required",
                                                m->required, "about", m->about)) != 0) {
                json_decref(members);
                members = NULL;
            }
        }
        if (members == NULL ||
            json_array_append_new(items, json_pack("{s:s,s:s,s:b,s:b,s:o}", "name",
                                                   types[i].name, "about", types[i].about,
                                                   "customer", types[i].customer,
                                                   "tells_recipients", types[i].tell_recipients,
                                                   "members", members)) != 0) {
            json_decref(items);
            return CD_ERR_NOMEM;
        }
    }
    *out = json_pack("{s:o}", "items", items);
    return *out ? CD_OK : CD_ERR_NOMEM;
}

/* ---- the service ---- */

enum cd_err cd_outbox_open(struct cd_store *s, const uint8_t master[32], struct cd_outbox **out)
{
    struct cd_outbox *ob = cd_calloc(1, sizeof *ob);

    if (ob == NULL)
        return CD_ERR_NOMEM;
    ob->store = s;
    pthread_mutex_init(&ob->mu, NULL);
    /* Keys of their own: one that opens payloads never opens a subscription's secret. */
    cd_crypto_derive_key(master, "cdoutbx1", 1, ob->payload_key);
    cd_crypto_derive_key(master, "cdoutbx1", 2, ob->secret_key);
    cd_store_service_set(s, CD_STORE_SERVICE_OUTBOX, ob);
    *out = ob;
    return CD_OK;
}

void cd_outbox_close(struct cd_outbox *ob)
{
    if (ob == NULL)
        return;
    cd_outbox_worker_stop(ob);
    if (cd_store_service(ob->store, CD_STORE_SERVICE_OUTBOX) == ob)
        cd_store_service_set(ob->store, CD_STORE_SERVICE_OUTBOX, NULL);
    pthread_mutex_destroy(&ob->mu);
    cd_crypto_wipe(ob->payload_key, sizeof ob->payload_key);
    cd_crypto_wipe(ob->secret_key, sizeof ob->secret_key);
    cd_free(ob);
}

void cd__outbox_field(const char *event_id, char out[CD__OUTBOX_FIELD_MAX])
{
    snprintf(out, CD__OUTBOX_FIELD_MAX, "outbox:%s", event_id);
}

/* ---- enqueueing ---- */

static bool member_type_ok(const struct cd_outbox_member *m, const json_t *v)
{
    if (m->type == JSON_TRUE)
        return json_is_boolean(v);
    return json_typeof(v) == m->type;
}

/* Checks payload against the type's members and splits it: reference members into *ref,
 * personal ones into *personal (NULL when there are none). Both new; the caller owns them. */
static enum cd_err split_payload(const struct cd_outbox_event_type *t, const json_t *payload,
                                 json_t **ref, json_t **personal)
{
    const char *key;
    json_t *v;
    enum cd_err err = CD_OK;

    *ref = json_object();
    *personal = NULL;
    if (*ref == NULL)
        return CD_ERR_NOMEM;
    if (payload && !json_is_object(payload)) {
        err = cd_err_set(CD_ERR_INVALID, "the payload of %s must be an object", t->name);
        goto out;
    }
    json_object_foreach((json_t *)payload, key, v) {
        const struct cd_outbox_member *m = NULL;
        for (size_t i = 0; i < t->nmembers && m == NULL; i++)
            if (strcmp(t->members[i].name, key) == 0)
                m = &t->members[i];
        if (m == NULL) {
            err = cd_err_set(CD_ERR_INVALID, "'%s' is not a member of %s (src/outbox/events.c)",
                             key, t->name);
            goto out;
        }
        if (!member_type_ok(m, v)) {
            err = cd_err_set(CD_ERR_INVALID, "'%s' of %s must be %s %s", key, t->name,
                             m->type == JSON_INTEGER ? "an" : "a", type_name(m->type));
            goto out;
        }
        json_t **dst = m->category == CD_FIELDS_REFERENCE ? ref : personal;
        if (*dst == NULL && (*dst = json_object()) == NULL) {
            err = CD_ERR_NOMEM;
            goto out;
        }
        if (json_object_set(*dst, key, v) != 0) {
            err = CD_ERR_NOMEM;
            goto out;
        }
    }
    for (size_t i = 0; i < t->nmembers; i++)
        if (t->members[i].required &&
            (payload == NULL || json_object_get(payload, t->members[i].name) == NULL)) {
            err = cd_err_set(CD_ERR_INVALID, "%s needs '%s'", t->name, t->members[i].name);
            goto out;
        }
out:
    if (err != CD_OK) {
        json_decref(*ref);
        json_decref(*personal);
        *ref = *personal = NULL;
    }
    return err;
}

/* Seals the personal members for the event into out. */
static enum cd_err seal_personal(struct cd_tx *tx, const json_t *personal, struct cd_str customer,
                                 const char *event_id, struct cd_buf *out)
{
    struct cd_outbox *ob = cd_store_service(cd_tx_store(tx), CD_STORE_SERVICE_OUTBOX);
    char field[CD__OUTBOX_FIELD_MAX];
    char *text = NULL;
    size_t len = 0;
    enum cd_err err;

    if (ob == NULL)
        return cd_err_set(CD_ERR_CRYPTO, "personal members need the outbox's key, and no "
                                         "outbox is open on this store");
    if ((err = cd_json_dump(personal, &text, &len)) != CD_OK)
        return err;
    cd__outbox_field(event_id, field);
    err = cd_crypto_seal(ob->payload_key, customer, cd_str_c(field), (struct cd_str){text, len},
                         out);
    cd_crypto_wipe(text, len);
    cd_free(text);
    return err;
}

struct sub_row {
    char id[CD_ID_MAX];
    json_t *events; /* the subscription's event types */
};

struct subs {
    struct sub_row *v;
    size_t n, cap;
    enum cd_err err;
};

static enum cd_err sub_row_fn(void *ctx, const struct cd_val *cols, size_t n)
{
    struct subs *s = ctx;
    json_t *events = NULL;

    (void)n;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 8;
        struct sub_row *v = cd_realloc(s->v, cap * sizeof *v);
        if (v == NULL)
            return CD_ERR_NOMEM;
        s->v = v;
        s->cap = cap;
    }
    if (cd_json_parse(cols[1].p, cols[1].len, &events) != CD_OK)
        return cd_err_set(CD_ERR_INTEGRITY, "a webhook subscription's event list is not JSON");
    snprintf(s->v[s->n].id, CD_ID_MAX, "%.*s", (int)cols[0].len, (const char *)cols[0].p);
    s->v[s->n++].events = events;
    return CD_OK;
}

static void subs_free(struct subs *s)
{
    for (size_t i = 0; i < s->n; i++)
        json_decref(s->v[i].events);
    cd_free(s->v);
}

static bool subscribed(const json_t *events, const char *type)
{
    size_t i;
    json_t *e;

    json_array_foreach(events, i, e) {
        const char *name = json_string_value(e);
        if (name && (strcmp(name, type) == 0 || strcmp(name, "*") == 0))
            return true;
    }
    return false;
}

enum cd_err cd__outbox_delivery_insert(struct cd_tx *tx, int64_t event_seq, const char *sub_id,
                                       struct cd_str customer_id, int64_t now,
                                       char id[CD_ID_MAX])
{
    cd_id_new("dlv", id);
    struct cd_val p[] = {CD_VCSTR(id), CD_VINT(event_seq), CD_VCSTR(sub_id),
                         customer_id.p ? CD_VTEXT(customer_id) : CD_VNULL, CD_VINT(now)};
    return cd_tx_exec(tx,
                      "INSERT INTO webhook_deliveries(id, event_seq, subscription_id,"
                      " customer_id, status, attempts, next_at, created_at)"
                      " VALUES($1, $2, $3, $4, 'pending', 0, $5, $5)",
                      p, 5, NULL, NULL, NULL);
}

/* One delivery row per subscription to the event's type, in subscription order; a test event
 * goes to the subscription it names alone. *made counts them. */
static enum cd_err fan_out(struct cd_tx *tx, const struct cd_outbox_event_type *t,
                           int64_t event_seq, struct cd_str customer, const json_t *payload,
                           int64_t now, size_t *made)
{
    const char *only = strcmp(t->name, "webhook.test") == 0
                           ? json_string_value(json_object_get(payload, "subscription_id"))
                           : NULL;
    struct subs s = {0};
    char id[CD_ID_MAX];
    enum cd_err err;

    *made = 0;
    if ((err = cd_tx_exec(tx,
                          "SELECT id, events FROM webhook_subscriptions WHERE deleted_at IS NULL"
                          " ORDER BY id",
                          NULL, 0, sub_row_fn, &s, NULL)) != CD_OK)
        goto out;
    for (size_t i = 0; i < s.n; i++) {
        if (only ? strcmp(only, s.v[i].id) != 0 : !subscribed(s.v[i].events, t->name))
            continue;
        if ((err = cd__outbox_delivery_insert(tx, event_seq, s.v[i].id, customer, now, id)) !=
            CD_OK)
            goto out;
        (*made)++;
    }
out:
    subs_free(&s);
    return err;
}

static enum cd_err seq_row(void *ctx, const struct cd_val *cols, size_t n)
{
    (void)n;
    *(int64_t *)ctx = cols[0].i;
    return CD_OK;
}

enum cd_err cd_outbox_enqueue(struct cd_tx *tx, const char *event_type,
                              struct cd_str customer_id, const json_t *payload,
                              char id_out[CD_ID_MAX])
{
    const struct cd_outbox_event_type *t = cd_outbox_event_type(cd_str_c(event_type));
    json_t *ref = NULL, *personal = NULL;
    struct cd_buf sealed = CD_BUF_INIT(CD__OUTBOX_PAYLOAD_MAX + CD_CRYPTO_SEAL_OVERHEAD);
    char *text = NULL;
    size_t len = 0;
    char id[CD_ID_MAX];
    int64_t seq = 0, now = cd_now_ms();
    enum cd_err err;

    if (t == NULL)
        return cd_err_set(CD_ERR_INVALID, "no event type '%s' (src/outbox/events.c)",
                          event_type ? event_type : "");
    if (customer_id.p && !cd_id_valid(customer_id, "cus"))
        return cd_err_set(CD_ERR_INVALID, "%s: malformed customer id", t->name);
    if (t->customer && customer_id.p == NULL)
        return cd_err_set(CD_ERR_INVALID, "%s is about a customer: a customer id is required",
                          t->name);
    if ((err = split_payload(t, payload, &ref, &personal)) != CD_OK)
        return err;
    cd_id_new("evt", id);
    if ((err = cd_json_dump(ref, &text, &len)) != CD_OK)
        goto out;
    if (len > CD__OUTBOX_PAYLOAD_MAX) {
        err = cd_err_set(CD_ERR_TOO_BIG, "the payload of %s is larger than %d bytes", t->name,
                         CD__OUTBOX_PAYLOAD_MAX);
        goto out;
    }
    if (personal && (err = seal_personal(tx, personal, customer_id, id, &sealed)) != CD_OK)
        goto out;
    struct cd_val p[] = {CD_VCSTR(id),
                         CD_VCSTR(t->name),
                         customer_id.p ? CD_VTEXT(customer_id) : CD_VNULL,
                         CD_VINT(now),
                         (struct cd_val){CD_VAL_TEXT, 0, text, len},
                         personal ? CD_VBLOB(sealed.p, sealed.len) : CD_VNULL};
    size_t made = 0;
    if ((err = cd_tx_exec(tx,
                          "INSERT INTO outbox_events(id, type, customer_id, created_at, payload,"
                          " personal) VALUES($1, $2, $3, $4, $5, $6) RETURNING seq",
                          p, 6, seq_row, &seq, NULL)) != CD_OK ||
        (err = fan_out(tx, t, seq, customer_id, payload, now, &made)) != CD_OK)
        goto out;
    if (t->tell_recipients &&
        (err = cd__outbox_recipients_fan_out(tx, t, id, seq, customer_id, payload, now)) !=
            CD_OK)
        goto out;
    if (id_out)
        memcpy(id_out, id, CD_ID_MAX);
    /* The worker may look before this commits; it then looks again shortly. */
    struct cd_outbox *ob = cd_store_service(cd_tx_store(tx), CD_STORE_SERVICE_OUTBOX);
    if (ob && (made || t->tell_recipients))
        cd_outbox_worker_wake(ob);
out:
    json_decref(ref);
    json_decref(personal);
    cd_free(text);
    cd_buf_free(&sealed);
    return err;
}
