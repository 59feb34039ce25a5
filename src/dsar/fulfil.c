/* Fulfilment: doing what a request asks and closing it. Erasure shreds the customer in the same
 * transaction as the request's completion and its tombstone, unless a legal hold keeps the
 * data; restriction is applied in that transaction too; objection, opting out of sale or
 * sharing and limiting the use of sensitive data become consent withdrawals, so the refusal in
 * the path applies at once; rectification corrects the customer's record. */
#include <stdio.h>
#include <string.h>
#include "consent/consent.h"
#include "dsar_int.h"

void cd_dsar_set_links(struct cd_dsar *d, const struct cd_dsar_links *l)
{
    d->links = *l;
}

enum cd_err cd__dsar_tell(struct cd_dsar *d, struct cd_tx *tx, const char *type,
                          const char *customer_id, json_t *payload)
{
    enum cd_err err = CD_OK;

    if (payload == NULL)
        return CD_ERR_NOMEM;
    if (d->links.enqueue)
        err = d->links.enqueue(tx, type, cd_str_c(customer_id), payload, NULL);
    json_decref(payload);
    return err;
}

json_t *cd__dsar_time(int64_t ms)
{
    char ts[CD_TIME_STRLEN];
    cd_time_format(ms, ts);
    return json_string(ts);
}

/* Makes the notices to recipients made since since_ms (by what the request changed, inside
 * this transaction or just before it) the request's own: it then shows whom it told. */
static enum cd_err attach_told(struct cd_dsar *d, struct cd_tx *tx, const struct cd__dsar_row *r,
                               int64_t since_ms)
{
    if (d->links.notices_attach == NULL)
        return CD_OK;
    return d->links.notices_attach(tx, cd_str_c(r->customer_id), since_ms, cd_str_c(r->id),
                                   NULL);
}

/* Closes the request as completed inside tx: state, history, ledger, and dsar.completed. */
static enum cd_err complete_in(struct cd_dsar *d, struct cd_tx *tx, const struct cd_actor *a,
                               const struct cd__dsar_row *r, const char *reason, int64_t now)
{
    struct cd_val p[] = {CD_VCSTR(r->id), CD_VINT(now)};
    enum cd_err err;

    if ((err = cd_tx_exec(tx, "UPDATE dsar_requests SET state = 'completed', closed_at = $2,"
                              " acknowledged_at = coalesce(acknowledged_at, $2), updated_at = $2"
                              " WHERE id = $1",
                          p, 2, NULL, NULL, NULL)) != CD_OK ||
        (err = cd__dsar_record(tx, a, r->id, r->customer_id, "dsar.completed",
                               cd_dsar_state_name(r->state), "completed", reason, now)) != CD_OK)
        return err;
    return cd__dsar_tell(d, tx, "dsar.completed", r->customer_id,
                json_pack("{s:s,s:s,s:s,s:o}", "request_id", r->id, "type",
                          cd_dsar_type_name(r->type), "outcome", "completed", "completed_at",
                          cd__dsar_time(now)));
}

struct fulfil_ctx {
    struct cd_dsar *d;
    const struct cd_actor *a;
    char id[CD_ID_MAX];
    enum cd_dsar_type expect; /* CD_DSAR_TYPE__COUNT: any */
    json_t *holds;            /* out: the holds that kept an erasure from happening */
    bool erased;              /* out: the customer was erased (the caches must follow) */
    char customer_id[CD_ID_MAX];
};

/* Loads the request inside tx and checks it may be fulfilled now. */
static enum cd_err ready(struct cd_tx *tx, struct fulfil_ctx *fc, struct cd__dsar_row *r)
{
    enum cd_err err;

    if ((err = cd__dsar_load(tx, fc->id, r)) != CD_OK)
        return err;
    if (!r->found)
        return cd_err_set(CD_ERR_NOT_FOUND, "no request with this id");
    if (r->state != CD_DSAR_IN_PROGRESS && r->state != CD_DSAR_EXTENDED)
        return cd_err_set(CD_ERR_CONFLICT, "a request is fulfilled once it is in progress (this "
                                           "one is %s)", cd_dsar_state_name(r->state));
    snprintf(fc->customer_id, sizeof fc->customer_id, "%s", r->customer_id);
    return CD_OK;
}

/* ---- erasure ---- */

static enum cd_err erase_fn(struct cd_tx *tx, void *ctx)
{
    struct fulfil_ctx *fc = ctx;
    struct cd_dsar *d = fc->d;
    struct cd__dsar_row r;
    struct cd_core_erase_counts n;
    int64_t now = cd_now_ms(), events = 0, requests = 0;
    enum cd_err err;

    fc->erased = false; /* outputs start afresh: the store may run this twice */
    json_decref(fc->holds);
    fc->holds = NULL;
    cd__dsar_row_init(&r);
    if ((err = ready(tx, fc, &r)) != CD_OK)
        goto out;
    /* A hold read in the same transaction: one placed at the same moment is seen by the
     * erasure or is placed on an erased customer, never missed. */
    if (d->links.holds_active &&
        (err = d->links.holds_active(tx, cd_str_c(r.customer_id), &fc->holds)) != CD_OK)
        goto out;
    if (json_array_size(fc->holds) > 0) {
        err = cd_err_set(CD_ERR_CONFLICT,
                         "a legal hold keeps this customer's data (%zu in force): the erasure "
                         "cannot happen; refuse the request with reason legal_hold and tell the "
                         "customer why, or erase once the hold is released",
                         json_array_size(fc->holds));
        goto out;
    }
    struct cd_val p[] = {CD_VCSTR(r.customer_id)};
    if ((err = cd_core_customer_erase_in(tx, fc->a, cd_str_c(r.customer_id), &n)) != CD_OK ||
        (err = cd_consent_erase_in(tx, cd_str_c(r.customer_id), &events)) != CD_OK ||
        /* What the customer wrote and what was written to them went with their key; the
         * requests stay as the record of what was asked and answered. */
        (err = cd_tx_exec(tx, "UPDATE dsar_requests SET details = NULL, extension_note = NULL,"
                              " refusal_note = NULL WHERE customer_id = $1",
                          p, 1, NULL, NULL, &requests)) != CD_OK ||
        (err = cd_tx_exec(tx, "DELETE FROM dsar_verifications WHERE customer_id = $1", p, 1,
                          NULL, NULL, NULL)) != CD_OK)
        goto out;
    char counts[256];
    snprintf(counts, sizeof counts,
             "{\"consent_events\":%lld,\"identities\":%lld,\"idempotency_keys\":%lld,"
             "\"interactions\":%lld,\"possible_duplicate_links\":%lld,\"requests_cleared\":%lld}",
             (long long)events, (long long)n.identities, (long long)n.idempotency_keys,
             (long long)n.interactions, (long long)n.links, (long long)requests);
    struct cd_val t[] = {CD_VCSTR(r.customer_id), CD_VCSTR(r.id), CD_VINT(now),
                         CD_VCSTR(r.regime),      CD_VCSTR(counts), CD_VCSTR(fc->a->role),
                         CD_VCSTR(fc->a->token_id)};
    if ((err = cd_tx_exec(tx, "INSERT INTO dsar_tombstones(customer_id, request_id, erased_at,"
                              " regime, counts, actor_role, actor_token)"
                              " VALUES($1,$2,$3,$4,$5,$6,$7)",
                          t, 7, NULL, NULL, NULL)) != CD_OK ||
        /* core told customer.erased to the recipients, in this transaction */
        (err = attach_told(d, tx, &r, now)) != CD_OK ||
        (err = complete_in(d, tx, fc->a, &r, "erased", now)) != CD_OK)
        goto out;
    fc->erased = true;
out:
    cd__dsar_row_free(&r);
    return err;
}

/* ---- restriction ---- */

static enum cd_err restrict_fn(struct cd_tx *tx, void *ctx)
{
    struct fulfil_ctx *fc = ctx;
    struct cd__dsar_row r;
    int64_t now = cd_now_ms();
    enum cd_err err;

    cd__dsar_row_init(&r);
    if ((err = ready(tx, fc, &r)) != CD_OK ||
        (err = cd_core_customer_restrict_in(tx, fc->a, r.customer_id, true)) != CD_OK ||
        (err = attach_told(fc->d, tx, &r, now)) != CD_OK)
        goto out;
    err = complete_in(fc->d, tx, fc->a, &r, "restricted", now);
out:
    cd__dsar_row_free(&r);
    return err;
}

/* ---- completion of what was done outside the transaction ---- */

struct complete_ctx {
    struct fulfil_ctx *fc;
    const char *reason;
    const char *event;     /* an event to tell besides dsar.completed, or NULL */
    json_t *event_payload; /* borrowed */
    int64_t changed_at;    /* when the change whose notices become the request's began (0:
                            * it told no recipient) */
};

static enum cd_err complete_fn(struct cd_tx *tx, void *ctx)
{
    struct complete_ctx *cc = ctx;
    struct cd__dsar_row r;
    enum cd_err err;

    cd__dsar_row_init(&r);
    if ((err = ready(tx, cc->fc, &r)) == CD_OK && cc->event)
        err = cd__dsar_tell(cc->fc->d, tx, cc->event, r.customer_id, json_incref(cc->event_payload));
    if (err == CD_OK && cc->changed_at)
        err = attach_told(cc->fc->d, tx, &r, cc->changed_at);
    if (err == CD_OK)
        err = complete_in(cc->fc->d, tx, cc->fc->a, &r, cc->reason, cd_now_ms());
    cd__dsar_row_free(&r);
    return err;
}

/* The purposes each kind of objection withdraws, unless the body names them. */
static const enum cd_purpose objection_purposes[] = {
    CD_PURPOSE_MARKETING, CD_PURPOSE_PERSONALIZATION, CD_PURPOSE_ANALYTICS, CD_PURPOSE_RESEARCH};
static const enum cd_purpose sale_purposes[] = {CD_PURPOSE_SALE_OR_SHARING,
                                                CD_PURPOSE_TARGETED_ADVERTISING};
static const enum cd_purpose sensitive_purposes[] = {
    CD_PURPOSE_PERSONALIZATION, CD_PURPOSE_TARGETED_ADVERTISING, CD_PURPOSE_ANALYTICS};

static enum cd_err withdraw(struct cd_dsar *d, const struct cd_actor *a, const char *req_id,
                            const char *customer_id, enum cd_purpose pu, json_t *recorded)
{
    char evidence[64];
    json_t *out = NULL;
    enum cd_err err;

    snprintf(evidence, sizeof evidence, "data-subject request %s", req_id);
    json_t *body = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "customer_id", customer_id,
                             "purpose", cd_purpose_name(pu), "channel", "*", "state",
                             "withdrawn", "method", "api", "collector", "candor dsar",
                             "evidence", evidence);
    if (body == NULL)
        return CD_ERR_NOMEM;
    err = cd_consent_record(d->links.consent, a, body, &out);
    json_decref(body);
    if (err == CD_OK &&
        json_array_append(recorded, json_object_get(out, "id")) != 0)
        err = CD_ERR_NOMEM;
    json_decref(out);
    return err;
}

static enum cd_err purposes_of(const json_t *body, enum cd_dsar_type t, enum cd_purpose *out,
                               size_t *n)
{
    json_t *list = NULL;
    enum cd_err err = cd_json_arr(body, "purposes", false, &list);
    const enum cd_purpose *def = t == CD_DSAR_OBJECTION     ? objection_purposes
                                 : t == CD_DSAR_OPT_OUT_SALE ? sale_purposes
                                                             : sensitive_purposes;
    size_t ndef = t == CD_DSAR_OBJECTION     ? sizeof objection_purposes / sizeof *def
                  : t == CD_DSAR_OPT_OUT_SALE ? sizeof sale_purposes / sizeof *def
                                              : sizeof sensitive_purposes / sizeof *def;

    if (err != CD_OK)
        return err;
    if (list == NULL) {
        memcpy(out, def, ndef * sizeof *def);
        *n = ndef;
        return CD_OK;
    }
    if (json_array_size(list) == 0 || json_array_size(list) > CD_PURPOSE__COUNT)
        return cd_err_set(CD_ERR_INVALID, "'purposes' must list 1 to %d purposes",
                          CD_PURPOSE__COUNT);
    *n = 0;
    for (size_t i = 0; i < json_array_size(list); i++) {
        const char *s = json_string_value(json_array_get(list, i));
        if (s == NULL || !cd_purpose_parse(cd_str_c(s), &out[*n]))
            return cd_err_set(CD_ERR_INVALID, "'purposes' must name purposes: %s",
                              cd_purpose_list());
        (*n)++;
    }
    return CD_OK;
}

enum cd_err cd_dsar_fulfil(struct cd_dsar *d, const struct cd_actor *a, struct cd_str id,
                           const json_t *body, json_t **out, json_t **holds)
{
    static const char *const none[] = {NULL};
    static const char *const with_purposes[] = {"purposes", NULL};
    static const char *const with_changes[] = {"changes", NULL};
    struct fulfil_ctx fc = {.d = d, .a = a};
    struct cd__dsar_row r;
    json_t *result = NULL;
    enum cd_err err;

    *holds = NULL;
    cd__dsar_row_init(&r);
    if ((err = cd__dsar_copy_id(id, fc.id)) != CD_OK || (err = cd__dsar_read(d, fc.id, &r)) != CD_OK)
        goto out;
    /* Checked again inside each write; here so that nothing is done for a request that is not
     * (yet, or any more) in progress. */
    if (r.state != CD_DSAR_IN_PROGRESS && r.state != CD_DSAR_EXTENDED) {
        err = cd_err_set(CD_ERR_CONFLICT, "a request is fulfilled once it is in progress (this "
                                          "one is %s)", cd_dsar_state_name(r.state));
        goto out;
    }
    switch (r.type) {
    case CD_DSAR_ERASURE:
        if ((err = cd_json_only(body, none)) != CD_OK)
            goto out;
        err = cd_store_write(d->store, erase_fn, &fc);
        if (fc.erased || err == CD_OK) {
            /* Whatever the outcome, no cache may keep what the erasure destroyed. */
            cd_core_customer_erase_done(d->core, err == CD_OK);
            if (err == CD_OK)
                cd_consent_forget(d->links.consent, cd_str_c(fc.customer_id));
        }
        if (err == CD_ERR_CONFLICT && fc.holds) {
            *holds = fc.holds;
            fc.holds = NULL;
        }
        break;
    case CD_DSAR_RESTRICTION:
        if ((err = cd_json_only(body, none)) == CD_OK)
            err = cd_store_write(d->store, restrict_fn, &fc);
        break;
    case CD_DSAR_OBJECTION:
    case CD_DSAR_OPT_OUT_SALE:
    case CD_DSAR_LIMIT_SENSITIVE: {
        enum cd_purpose pu[CD_PURPOSE__COUNT];
        size_t n = 0;
        json_t *recorded = json_array();
        if (recorded == NULL) {
            err = CD_ERR_NOMEM;
            goto out;
        }
        if ((err = cd_json_only(body, with_purposes)) == CD_OK &&
            (err = purposes_of(body, r.type, pu, &n)) == CD_OK &&
            d->links.consent == NULL)
            err = cd_err_set(CD_ERR_BUSY, "the consent engine is not running");
        /* Each withdrawal is its own consent event with its receipt, in force when it is
         * recorded; the request closes once every one of them is. */
        for (size_t i = 0; err == CD_OK && i < n; i++)
            err = withdraw(d, a, fc.id, r.customer_id, pu[i], recorded);
        if (err == CD_OK) {
            struct complete_ctx cc = {&fc, "consent_withdrawn", NULL, NULL, 0};
            err = cd_store_write(d->store, complete_fn, &cc);
        }
        if (err == CD_OK)
            result = json_pack("{s:o}", "consent_events", recorded);
        else
            json_decref(recorded);
        break;
    }
    case CD_DSAR_RECTIFICATION: {
        json_t *changes = NULL, *customer = NULL;
        if ((err = cd_json_only(body, with_changes)) != CD_OK ||
            (err = cd_json_obj(body, "changes", true, &changes)) != CD_OK)
            goto out;
        /* The correction applies to the next read (core tells customer.rectified to the
         * recipients with it); the request closes after it. */
        int64_t changed_at = cd_now_ms();
        if ((err = cd_core_customer_update(d->core, a, cd_str_c(r.customer_id), changes,
                                           CD_FIELDS_REFERENCE, &customer)) != CD_OK)
            goto out;
        json_decref(customer);
        struct complete_ctx cc = {&fc, "rectified", NULL, NULL, changed_at};
        err = cd_store_write(d->store, complete_fn, &cc);
        break;
    }
    default:
        err = cd_err_set(CD_ERR_CONFLICT, "%s requests are fulfilled by the export: download it "
                                          "(GET /v1/dsar/{id}/export), then complete the request",
                         cd_dsar_type_name(r.type));
        goto out;
    }
    if (err != CD_OK)
        goto out;
    if ((err = cd_dsar_get(d, cd_str_c(fc.id), NULL, false, out)) == CD_OK && result &&
        json_object_update(*out, result) != 0)
        err = CD_ERR_NOMEM;
out:
    json_decref(result);
    json_decref(fc.holds);
    cd__dsar_row_free(&r);
    return err;
}
