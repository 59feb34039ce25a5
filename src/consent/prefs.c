/* A customer's preferences: topics opted out of, quiet hours and frequency caps, written with
 * their audit event in one transaction and then taken into the projection. */
#include <stdio.h>
#include <string.h>
#include "audit/audit.h"
#include "consent_int.h"
#include "core/core.h"

/* ---- preferences ---- */

struct prefs_w {
    const struct cd_actor *a;
    struct cd_str customer_id;
    int qs, qe;
    char *topics, *caps;
    bool found;
};

static enum cd_err prefs_fn(struct cd_tx *tx, void *ctx)
{
    struct prefs_w *w = ctx;
    struct cd_core_customer_ref ref;
    enum cd_err err = cd_core_customer_ref(tx, w->customer_id, &ref);

    if (err != CD_OK)
        return err;
    /* A merged id's preferences are its survivor's: it takes none of its own. */
    if (!ref.exists || ref.merged_into[0])
        return cd_err_set(CD_ERR_NOT_FOUND, "no customer with this id");
    struct cd_val p[6] = {CD_VTEXT(w->customer_id),
                          w->qs >= 0 ? CD_VINT(w->qs) : CD_VNULL,
                          w->qe >= 0 ? CD_VINT(w->qe) : CD_VNULL,
                          CD_VCSTR(w->topics), CD_VCSTR(w->caps), CD_VINT(cd_now_ms())};
    if ((err = cd_tx_exec(tx, "INSERT INTO consent_preferences(customer_id, quiet_start, "
                              "quiet_end, topics_out, caps, updated_at) VALUES($1,$2,$3,$4,$5,$6) "
                              "ON CONFLICT(customer_id) DO UPDATE SET quiet_start = $2, "
                              "quiet_end = $3, topics_out = $4, caps = $5, updated_at = $6",
                          p, 6, NULL, NULL, NULL)) != CD_OK)
        return err;
    char cid[CD_ID_MAX], topic[CD_ID_MAX + 32];
    cd__consent_copy(cid, sizeof cid, w->customer_id);
    snprintf(topic, sizeof topic, "consent.preferences %s", cid);
    if ((err = cd_tx_notify(tx, topic)) != CD_OK)
        return err;
    struct cd_audit_event ae = {.action = "consent.preferences", .outcome = "ok",
                                .actor_token = w->a->token_id, .actor_role = w->a->role,
                                .actor_name = w->a->name, .request_id = w->a->request_id,
                                .customer_id = cid, .categories = "consent"};
    return cd_audit_append(tx, &ae, NULL);
}

static int parse_hhmm(struct cd_str s)
{
    if (s.len != 5 || s.p[2] != ':')
        return -1;
    for (int i = 0; i < 5; i++)
        if (i != 2 && (s.p[i] < '0' || s.p[i] > '9'))
            return -1;
    int h = (s.p[0] - '0') * 10 + (s.p[1] - '0'), m = (s.p[3] - '0') * 10 + (s.p[4] - '0');
    return h < 24 && m < 60 ? h * 60 + m : -1;
}

enum cd_err cd_consent_preferences_set(struct cd_consent *c, const struct cd_actor *a,
                                       struct cd_str customer_id, const json_t *body)
{
    static const char *const allowed[] = {"topics_opted_out", "quiet_hours", "caps", NULL};
    struct prefs_w w = {a, customer_id, -1, -1, NULL, NULL, false};
    json_t *topics = NULL, *qh = NULL, *caps = NULL;
    uint64_t mask = 0;
    uint8_t key[16];
    enum cd_err err;
    size_t i;
    json_t *v;

    if (!cd_id_bits(customer_id, "cus", key))
        return cd_err_set(CD_ERR_NOT_FOUND, "no customer with this id");
    if ((err = cd_json_only(body, allowed)) != CD_OK ||
        (err = cd_json_arr(body, "topics_opted_out", false, &topics)) != CD_OK ||
        (err = cd_json_arr(body, "caps", false, &caps)) != CD_OK)
        return err;
    qh = json_object_get(body, "quiet_hours");
    if (qh && !json_is_null(qh)) {
        struct cd_str s = CD_STR_NULL, e = CD_STR_NULL;
        if (!json_is_object(qh) || cd_json_str(qh, "start", true, &s) != CD_OK ||
            cd_json_str(qh, "end", true, &e) != CD_OK || (w.qs = parse_hhmm(s)) < 0 ||
            (w.qe = parse_hhmm(e)) < 0 || w.qs == w.qe)
            return cd_err_set(CD_ERR_INVALID, "'quiet_hours' must be {\"start\":\"HH:MM\","
                                              "\"end\":\"HH:MM\"} with start != end");
    }
    json_array_foreach(topics, i, v)
    {
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 40)
            return cd_err_set(CD_ERR_INVALID, "'topics_opted_out' must be topic names of 1 to 40 "
                                              "characters");
    }
    if (topics && json_array_size(topics) > 32)
        return cd_err_set(CD_ERR_INVALID, "at most 32 topics");
    json_array_foreach(caps, i, v)
    {
        struct cd_str p = CD_STR_NULL, ch = CD_STR("*");
        int64_t max = -1, days = -1;
        enum cd_purpose pu;
        enum cd_consent_channel cch;
        static const char *const cap_keys[] = {"purpose", "channel", "max", "days", NULL};
        if (!json_is_object(v) || cd_json_only(v, cap_keys) != CD_OK ||
            cd_json_str(v, "purpose", true, &p) != CD_OK ||
            cd_json_str(v, "channel", false, &ch) != CD_OK ||
            cd_json_int(v, "max", true, &max) != CD_OK ||
            cd_json_int(v, "days", true, &days) != CD_OK || !cd_purpose_parse(p, &pu) ||
            !cd_consent_channel_parse(ch, &cch) || max < 0 || max > 10000 || days < 1 ||
            days > 3660)
            return cd_err_set(CD_ERR_INVALID, "each cap is {\"purpose\",\"channel\"?,\"max\" "
                                              "(0..10000),\"days\" (1..3660)}");
    }
    if (caps && json_array_size(caps) > 16)
        return cd_err_set(CD_ERR_INVALID, "at most 16 caps");
    json_t *empty = json_array();
    if (empty == NULL)
        return CD_ERR_NOMEM;
    w.topics = json_dumps(topics ? topics : empty, JSON_COMPACT);
    w.caps = json_dumps(caps ? caps : empty, JSON_COMPACT);
    json_decref(empty);
    if (w.topics == NULL || w.caps == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    if ((err = cd_store_write(c->store, prefs_fn, &w)) != CD_OK)
        goto out;
    cd__consent_wlock(c);
    struct cd__cust *cu = NULL;
    json_array_foreach(topics, i, v)
    {
        int bit = cd__consent_topic(c, cd_str_c(json_string_value(v)), true);
        if (bit >= 0)
            mask |= 1ull << bit;
    }
    if ((err = cd__proj_upsert(&c->proj, key, &cu)) == CD_OK) {
        cu->qh_start = w.qs >= 0 ? (uint16_t)(w.qs + 1) : 0;
        cu->qh_end = w.qe >= 0 ? (uint16_t)(w.qe + 1) : 0;
        cu->topics_out = mask;
        cd__proj_sync(&c->proj, cu);
    }
    cd__consent_wunlock(c);
    if (err == CD_OK) {
        bool exists;
        /* The customer's time zone matters for quiet hours: take it now. */
        err = cd__consent_refresh_customer(c, customer_id, &exists);
    }
out:
    cd_free(w.topics);
    cd_free(w.caps);
    return err;
}
