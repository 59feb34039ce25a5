/* The hooks core calls in the path of every contact: the outbound check (decision, topics,
 * quiet hours, frequency caps), the read check, customer changes; and the decision that reads
 * the store for a customer the projection does not know yet. */
#include <stdio.h>
#include <string.h>
#include "audit/audit.h"
#include "consent_int.h"
#include "core/core.h"

/* ---- hooks ---- */

struct caps_q {
    struct cd_str customer_id;
    const char *purpose, *channel;
    enum cd_purpose pu;
    enum cd_consent_channel ch;
    const struct cd__consent_juris *j;
    int64_t now;
    const char *hit; /* a cap that is reached, described */
    char desc[96];
    json_t *caps;
};

static enum cd_err caps_row(void *ctx, const struct cd_val *col, size_t n)
{
    struct caps_q *q = ctx;

    return cd_json_parse(col[0].p, col[0].len, &q->caps);
}

static enum cd_err count_sent(struct cd_tx *tx, struct caps_q *q, int days, bool any_channel,
                              int64_t *count)
{
    return cd_core_outbound_count(tx, q->customer_id, q->purpose,
                                  any_channel ? NULL : q->channel,
                                  q->now - (int64_t)days * CD__DAY_MS, count);
}

static enum cd_err caps_fn(struct cd_tx *tx, void *ctx)
{
    struct caps_q *q = ctx;
    struct cd_val p[1] = {CD_VTEXT(q->customer_id)};
    enum cd_err err;
    int64_t cnt;

    /* The rules' caps, then the customer's own: both must hold. */
    for (size_t i = 0; i < q->j->ncaps; i++) {
        const struct cd__consent_cap *cap = &q->j->caps[i];
        if (cap->purpose != q->pu ||
            (cap->channel != CD_CONSENT_CHANNEL_ANY && cap->channel != q->ch))
            continue;
        if ((err = count_sent(tx, q, cap->days, cap->channel == CD_CONSENT_CHANNEL_ANY, &cnt)) !=
            CD_OK)
            return err;
        if (cnt >= cap->max) {
            snprintf(q->desc, sizeof q->desc, "at most %u per %u days (rules)", cap->max,
                     cap->days);
            q->hit = q->desc;
            return CD_OK;
        }
    }
    if ((err = cd_tx_exec(tx, "SELECT caps FROM consent_preferences WHERE customer_id = $1", p, 1,
                          caps_row, q, NULL)) != CD_OK)
        return err;
    size_t i;
    json_t *v;
    json_array_foreach(q->caps, i, v)
    {
        enum cd_purpose pu;
        enum cd_consent_channel ch = CD_CONSENT_CHANNEL_ANY;
        const char *chs = json_string_value(json_object_get(v, "channel"));
        if (!cd_purpose_parse(cd_str_c(json_string_value(json_object_get(v, "purpose"))), &pu) ||
            pu != q->pu || (chs && !cd_consent_channel_parse(cd_str_c(chs), &ch)) ||
            (ch != CD_CONSENT_CHANNEL_ANY && ch != q->ch))
            continue;
        int64_t max = json_integer_value(json_object_get(v, "max"));
        int days = (int)json_integer_value(json_object_get(v, "days"));
        if ((err = count_sent(tx, q, days, ch == CD_CONSENT_CHANNEL_ANY, &cnt)) != CD_OK)
            return err;
        if (cnt >= max) {
            snprintf(q->desc, sizeof q->desc, "at most %lld per %d days (customer preference)",
                     (long long)max, days);
            q->hit = q->desc;
            return CD_OK;
        }
    }
    return CD_OK;
}

/* Several servers on one database: a decision that must reflect every change acknowledged by
 * any of them is refused (503) while this server's view of the others' changes is older than
 * the bound (store.h, CD_STORE_FEED_BOUND_MS): its feed lost the database. */
static enum cd_err fresh_enough(struct cd_consent *c)
{
    int64_t fresh = cd_store_feed_fresh_ms(c->store);

    if (fresh == INT64_MAX || cd_now_ms() - fresh <= CD_STORE_FEED_BOUND_MS)
        return CD_OK;
    return cd_err_set(CD_ERR_STORE, "this server has not heard from the database for over %d ms "
                                    "and may not know another server's consent changes; retry",
                      CD_STORE_FEED_BOUND_MS);
}

enum cd_err cd_consent_outbound_check(void *ctx, const struct cd_actor *actor,
                                      const char *customer_id, const char *channel,
                                      const char *purpose, struct cd_str topic,
                                      struct cd_str body, const struct cd_core_overrides *ov,
                                      json_t **annotation)
{
    struct cd_consent *c = ctx;
    struct cd_consent_decision d;
    enum cd_purpose pu;
    enum cd_consent_channel ch;
    enum cd_err err;
    bool exists = false;
    char detail[200], ev[CD_ID_MAX];
    int64_t now = cd_now_ms();

    if (!cd_purpose_parse(cd_str_c(purpose), &pu) ||
        !cd_consent_channel_parse(cd_str_c(channel), &ch) || ch == CD_CONSENT_CHANNEL_ANY)
        return cd_err_set(CD_ERR_INVALID, "outbound purpose or channel unknown");
    if ((err = fresh_enough(c)) != CD_OK)
        return err;
    if (c->rules.basis[pu]) {
        /* Service, billing, ...: no consent needed, but a restriction (GDPR Art. 18) still
         * stops the contact. The projection holds it as soon as the restriction is answered
         * (cd_consent_customer_changed), so no read of the store is needed here. */
        if (customer_id == NULL)
            return CD_OK;
        cd_consent_decide(c, cd_str_c(customer_id), pu, ch, now, &d);
        if (d.allow)
            return CD_OK;
        exists = true;
    } else if (customer_id) {
        /* Exact, not eventually consistent: take the customer's jurisdiction and zone now. */
        if ((err = cd__consent_refresh_customer(c, cd_str_c(customer_id), &exists)) != CD_OK)
            return err;
    }
    if (c->rules.basis[pu]) {
        /* decided above */
    } else if (!exists) {
        /* Every member set: the refusal below reads has_event too. */
        d = (struct cd_consent_decision){.allow = false, .reason = "no_consent",
                                         .basis = "none", .regime = "", .has_event = false};
    } else {
        cd_consent_decide_topic(c, cd_str_c(customer_id), pu, ch, topic, now, &d);
    }
    if (d.allow) {
        pthread_rwlock_rdlock(&c->lock);
        uint8_t key[16];
        cd_id_bits(cd_str_c(customer_id), "cus", key);
        const struct cd__cust *cu = cd__proj_find(&c->proj, key);
        const struct cd__consent_juris *j = &c->rules.j[cu ? cu->juris : c->rules.def];
        pthread_rwlock_unlock(&c->lock);
        struct caps_q q = {cd_str_c(customer_id), purpose, channel, pu, ch, j, now, NULL, {0},
                           NULL};
        err = cd_store_read(c->store, caps_fn, &q);
        json_decref(q.caps);
        if (err != CD_OK)
            return err;
        if (q.hit) {
            d.allow = false;
            d.reason = "frequency_cap";
            snprintf(detail, sizeof detail, "frequency_cap: %s %s messages are capped at %s",
                     purpose, channel, q.desc);
        }
    }
    if (d.allow)
        return CD_OK;
    if (strcmp(d.reason, "topic_opted_out") == 0)
        /* A topic is a name from the business's own list (newsletter, offers), not personal
         * data: the sender learns which one to drop. */
        snprintf(detail, sizeof detail, "topic_opted_out: the customer opted out of the topic "
                 "'%.*s'; outbound %s on %s refused by the consent engine",
                 (int)(topic.len < 48 ? topic.len : 48), topic.p, purpose, channel);
    else if (strcmp(d.reason, "restricted") == 0)
        snprintf(detail, sizeof detail, "restricted: processing of this customer's data is "
                 "restricted (GDPR Art. 18); outbound %s on %s refused", purpose, channel);
    else if (strcmp(d.reason, "frequency_cap") != 0)
        snprintf(detail, sizeof detail, "%s: outbound %s on %s refused by the consent engine",
                 d.reason, purpose, channel);
    struct cd_audit_event ae = {.action = "interaction.outbound", .outcome = "denied",
                                .actor_token = actor ? actor->token_id : CD_ACTOR_SYSTEM,
                                .actor_role = actor ? actor->role : CD_ACTOR_SYSTEM,
                                .actor_name = actor ? actor->name : CD_ACTOR_SYSTEM,
                                .purpose = purpose,
                                .request_id = actor ? actor->request_id : NULL,
                                .customer_id = exists ? customer_id : NULL,
                                .resource_id = d.has_event ? cd_consent_decision_event_id(&d, ev)
                                                           : NULL,
                                .categories = "consent", .reason = d.reason};
    if ((err = cd_audit_record(c->store, &ae)) != CD_OK)
        return err;
    return cd_err_set(CD_ERR_CONSENT_DENIED, "%s", detail);
}

enum cd_err cd_consent_decide_exact(struct cd_consent *c, struct cd_str customer_id,
                                    enum cd_purpose purpose, enum cd_consent_channel channel,
                                    struct cd_str topic, int64_t now_ms,
                                    struct cd_consent_decision *d)
{
    bool exists = false;
    enum cd_err err;

    if ((err = fresh_enough(c)) != CD_OK ||
        (err = cd_consent_decide_topic(c, customer_id, purpose, channel, topic, now_ms, d)) !=
            CD_OK ||
        d->allow || strcmp(d->reason, "unknown_customer") != 0)
        return err;
    if ((err = cd__consent_refresh_customer(c, customer_id, &exists)) != CD_OK || !exists)
        return err;
    return cd_consent_decide_topic(c, customer_id, purpose, channel, topic, now_ms, d);
}

bool cd_consent_needs_consent(const struct cd_consent *c, enum cd_purpose purpose)
{
    return (unsigned)purpose >= CD_PURPOSE__COUNT || c->rules.basis[purpose] == NULL;
}

void cd_consent_set_restriction(struct cd_consent *c, unsigned allowed_purposes)
{
    cd__consent_wlock(c);
    c->restriction_allows = allowed_purposes;
    cd__consent_wunlock(c);
}

void cd_consent_customer_changed(void *ctx, const char *customer_id)
{
    struct cd_consent *c = ctx;
    bool exists = false;

    /* On failure the refresher applies the change within a quarter second. */
    if (cd__consent_refresh_customer(c, cd_str_c(customer_id), &exists) != CD_OK)
        cd_log(CD_LOG_WARN, "consent.refresh_deferred", "\"reason\":\"%s\"",
               cd_err_name(CD_ERR_STORE));
}

enum cd_err cd_consent_read_check(void *ctx, const char *customer_id, const char *purpose)
{
    struct cd_consent *c = ctx;
    struct cd_consent_decision d;
    enum cd_purpose pu;
    enum cd_err err;

    if (!cd_purpose_parse(cd_str_c(purpose), &pu))
        return cd_err_set(CD_ERR_CONSENT_DENIED, "unknown purpose");
    if ((err = cd_consent_decide_exact(c, cd_str_c(customer_id), pu, CD_CONSENT_CHANNEL_ANY,
                                       CD_STR_NULL, cd_now_ms(), &d)) != CD_OK)
        return err;
    if (d.allow)
        return CD_OK;
    return cd_err_set(CD_ERR_CONSENT_DENIED, "%s: the customer's consent does not allow %s",
                      d.reason, purpose);
}
