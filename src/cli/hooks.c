/* The in-path checks on core's ingestion, composed from the capabilities that provide them:
 * the purpose policy first (may this role send for this purpose at all?), then consent
 * (cheap, in memory: may this customer be contacted for this purpose now? a restriction of
 * processing included), then the communication guard (may this text be sent, and does it fit
 * the purpose it is sent for?). Inbound text has card numbers and SSNs masked before anything
 * is stored. */
#include <stdio.h>
#include <string.h>
#include "audit/audit.h"
#include "cases/cases.h"
#include "cli_int.h"
#include "consent/consent.h"
#include "guard/guard.h"
#include "policy/policy.h"

/* The category of the rules that recognise promotional content (rules/marketing.yaml). */
#define MARKETING "marketing"
/* The category of the rules that recognise the words of a complaint (rules/complaint.yaml). */
#define COMPLAINT "complaint"

/* Longest list of rule ids an audit event carries ("A,B,..."). */
#define RULES_MAX 1000

static bool blocks(const struct cd_guard_finding *f)
{
    return f->severity == CD_GUARD_SEV_BLOCK;
}

static bool promotes(const struct cd_guard_finding *f)
{
    return strcmp(f->category, MARKETING) == 0;
}

/* The ids of the rules whose findings satisfy keep, each once, in order: as "A,B" in out (cut
 * short with "..."), and appended to arr when it is not NULL. Returns how many findings kept. */
static size_t rules_of(const struct cd_guard_result *res,
                       bool (*keep)(const struct cd_guard_finding *), char out[RULES_MAX + 1],
                       json_t *arr)
{
    size_t n = cd_guard_result_count(res), kept = 0, len = 0;

    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const struct cd_guard_finding *f = cd_guard_result_finding(res, i);
        bool seen = false;
        if (!keep(f))
            continue;
        kept++;
        for (size_t k = 0; k < i && !seen; k++)
            seen = keep(cd_guard_result_finding(res, k)) &&
                   strcmp(cd_guard_result_finding(res, k)->rule, f->rule) == 0;
        if (seen)
            continue;
        if (arr)
            json_array_append_new(arr, json_string(f->rule));
        if (len + strlen(f->rule) + 5 > RULES_MAX) {
            if (strcmp(out + (len > 4 ? len - 4 : 0), ",...") != 0)
                len += (size_t)snprintf(out + len, RULES_MAX + 1 - len, ",...");
            continue;
        }
        len += (size_t)snprintf(out + len, RULES_MAX + 1 - len, "%s%s", len ? "," : "", f->rule);
    }
    return kept;
}

/* Records a refusal in the ledger: it is evidence, written before it is answered. Its reason
 * is the name of the error it is answered with (why). */
static enum cd_err refused(struct cd__cli_hooks *h, const struct cd_actor *a,
                           const char *customer_id, const char *action, const char *purpose,
                           enum cd_err why, const char *rules)
{
    struct cd_audit_event ev = {.action = action,
                                .outcome = "denied",
                                .actor_token = a->token_id,
                                .actor_role = a->role,
                                .actor_name = a->name,
                                .purpose = purpose,
                                .request_id = a->request_id,
                                .customer_id = customer_id,
                                .reason = cd_err_name(why),
                                .rules = rules};
    return cd_audit_record(h->store, &ev);
}

/* Role x purpose on a send, as on a read: the purpose policy names the roles that may use
 * each purpose, and contacting someone for a purpose uses it. A refusal is an attempt on the
 * customer's data: access.denied, in their access log. */
static enum cd_err send_allowed(struct cd__cli_hooks *h, const struct cd_actor *a,
                                const char *customer_id, const char *purpose)
{
    struct cd_policy_grant g;
    enum cd_purpose pu;
    enum cd_role role;
    enum cd_err err;

    if (h->policy == NULL)
        return CD_OK;
    if (cd_purpose_parse(cd_str_c(purpose), &pu) && cd_role_parse(cd_str_c(a->role), &role) &&
        cd_policy_check(h->policy, role, pu, &g) == CD_OK)
        return CD_OK;
    if ((err = refused(h, a, customer_id, "access.denied", purpose, CD_ERR_PURPOSE_DENIED,
                       NULL)) != CD_OK)
        return err;
    return cd_err_set(CD_ERR_PURPOSE_DENIED,
                      "the %s role may not send messages for the purpose '%s' (purpose policy)",
                      a->role, purpose);
}

static bool may_override(const struct cd_actor *a)
{
    enum cd_role role;

    return cd_role_parse(cd_str_c(a->role), &role) &&
           (role == CD_ROLE_SUPERVISOR || role == CD_ROLE_ADMIN);
}

/* The reason of an override as it is kept (in the ledger and, in clear, with the message):
 * whatever personal data the guard finds in it masked, as in a redacted copy. */
static enum cd_err kept_reason(struct cd__cli_hooks *h, struct cd_str reason, json_t **out)
{
    struct cd_guard_input in = {reason, NULL, true, NULL};
    struct cd_guard_result *res = NULL;
    enum cd_err err = cd_guard_check(h->guard, &in, &res);

    if (err != CD_OK)
        return err;
    struct cd_str r = cd_guard_result_redacted(res);
    *out = json_stringn(r.p, r.len);
    cd_guard_result_free(res);
    return *out ? CD_OK : CD_ERR_NOMEM;
}

/* A refusal of the guard: the findings for the sender in *annotation (personal data masked;
 * nothing of it is stored), and the refusal recorded as action with the ids of the rules keep
 * selects, which rules receives. */
static enum cd_err refuse(struct cd__cli_hooks *h, const struct cd_actor *a,
                          const struct cd_guard_result *res, const char *customer_id,
                          const char *purpose, bool (*keep)(const struct cd_guard_finding *),
                          const char *action, enum cd_err why, char rules[RULES_MAX + 1],
                          json_t **annotation)
{
    enum cd_err err;

    rules_of(res, keep, rules, NULL);
    if ((err = cd_guard_result_to_json(res, true, annotation)) != CD_OK)
        return err;
    return refused(h, a, customer_id, action, purpose, why, rules);
}

/* An override as it is kept with the message: in obj, the ids of the rules keep selects (at
 * rules_key) and the reason (masked, at reason_key). */
static enum cd_err describe_override(struct cd__cli_hooks *h, const struct cd_guard_result *res,
                                     bool (*keep)(const struct cd_guard_finding *),
                                     struct cd_str reason, json_t *obj, const char *rules_key,
                                     const char *reason_key)
{
    char rules[RULES_MAX + 1];
    json_t *arr = json_array(), *kept = NULL;
    enum cd_err err;

    if (arr == NULL)
        return CD_ERR_NOMEM;
    rules_of(res, keep, rules, arr);
    if ((err = cd_json_set_new(obj, rules_key, arr)) != CD_OK ||
        (err = kept_reason(h, reason, &kept)) != CD_OK)
        return err;
    return cd_json_set_new(obj, reason_key, kept);
}

static enum cd_err guard_outbound(struct cd__cli_hooks *h, const struct cd_actor *a,
                                  const char *customer_id, const char *channel,
                                  const char *purpose, struct cd_str body,
                                  const struct cd_core_overrides *ov, json_t **annotation)
{
    static const struct cd_core_overrides none = {false, false, CD_STR_NULL, CD_STR_NULL};
    /* The declared purpose weighs the findings: pressure in a marketing message blocks. */
    struct cd_guard_input in = {body, channel, true, purpose};
    struct cd_guard_result *res = NULL;
    char rules[RULES_MAX + 1];
    enum cd_purpose pu;
    enum cd_err err;

    if (ov == NULL)
        ov = &none;
    if ((err = cd_guard_check(h->guard, &in, &res)) != CD_OK)
        return err;
    enum cd_guard_verdict v = cd_guard_result_verdict(res);
    /* Promotional content sent under a purpose that may not carry it: a message that reads
     * as marketing is marketing, whatever it was declared as (its consent, caps and quiet
     * hours are marketing's). */
    bool mismatch = cd_purpose_parse(cd_str_c(purpose), &pu) &&
                    !(h->policy && cd_policy_promotional(h->policy, pu)) &&
                    rules_of(res, promotes, rules, NULL) > 0;
    if (v == CD_GUARD_ALLOW && !mismatch)
        goto out;
    if (v == CD_GUARD_BLOCK && !ov->guard) {
        size_t n = cd_guard_result_count(res);
        if ((err = refuse(h, a, res, customer_id, purpose, blocks, "guard.block",
                          CD_ERR_GUARD_BLOCKED, rules, annotation)) == CD_OK)
            err = cd_err_set(CD_ERR_GUARD_BLOCKED,
                             "the communication guard blocked this message (%zu finding%s); "
                             "reword it, or a supervisor may override with a reason",
                             n, n == 1 ? "" : "s");
        goto out;
    }
    if (mismatch && !ov->purpose) {
        if ((err = refuse(h, a, res, customer_id, purpose, promotes, "purpose.mismatch",
                          CD_ERR_PURPOSE_MISMATCH, rules, annotation)) == CD_OK)
            err = cd_err_set(CD_ERR_PURPOSE_MISMATCH,
                             "this message reads as marketing (%s) but is sent for the purpose "
                             "'%s': send it for the purpose marketing, where the customer's "
                             "consent decides, reword it, or a supervisor may override with a "
                             "reason (purpose_override)",
                             rules, purpose);
        goto out;
    }
    if ((v == CD_GUARD_BLOCK || mismatch) && !may_override(a)) {
        err = cd_err_set(CD_ERR_FORBIDDEN, "only a supervisor or admin may override %s",
                         v == CD_GUARD_BLOCK ? "a block of the communication guard"
                                             : "a purpose mismatch");
        goto out;
    }
    /* Warnings and overrides are stored with the findings, without the matched text. */
    if ((err = cd_guard_result_to_json(res, false, annotation)) != CD_OK)
        goto out;
    json_object_del(*annotation, "redacted");
    if (v == CD_GUARD_BLOCK &&
        ((err = cd_json_set_new(*annotation, "overridden", json_true())) != CD_OK ||
         (err = describe_override(h, res, blocks, ov->guard_reason, *annotation,
                                  "overridden_rules", "override_reason")) != CD_OK))
        goto out;
    if (mismatch) {
        json_t *po = json_object();
        if ((err = cd_json_set_new(*annotation, "purpose_override", po)) != CD_OK ||
            (err = cd_json_set_new(po, "declared", json_string(purpose))) != CD_OK)
            goto out;
        err = describe_override(h, res, promotes, ov->purpose_reason, po, "rules", "reason");
    }
out:
    cd_guard_result_free(res);
    return err;
}

static enum cd_err outbound_check(void *ctx, const struct cd_actor *a, const char *customer_id,
                                  const char *channel, const char *purpose, struct cd_str topic,
                                  struct cd_str body, const struct cd_core_overrides *ov,
                                  json_t **annotation)
{
    struct cd__cli_hooks *h = ctx;
    enum cd_err err;

    if ((err = send_allowed(h, a, customer_id, purpose)) != CD_OK)
        return err;
    if (h->consent_outbound &&
        (err = h->consent_outbound(h->consent, a, customer_id, channel, purpose, topic, body, ov,
                                   annotation)) != CD_OK)
        return err;
    if (h->guard)
        return guard_outbound(h, a, customer_id, channel, purpose, body, ov, annotation);
    return CD_OK;
}

static enum cd_err inbound_filter(void *ctx, struct cd_str body, char **out, size_t *outlen)
{
    struct cd__cli_hooks *h = ctx;
    size_t masked = 0;
    enum cd_err err;

    if (h->guard == NULL)
        return CD_OK;
    if ((err = cd_guard_mask_inbound(h->guard, body, out, outlen, &masked)) != CD_OK)
        return err;
    if (masked == 0) { /* nothing to mask: keep the original */
        cd_free(*out);
        *out = NULL;
    }
    return CD_OK;
}

static enum cd_err read_consent(void *ctx, const char *customer_id, const char *purpose)
{
    struct cd__cli_hooks *h = ctx;

    if (h->consent_read == NULL)
        return cd_err_set(CD_ERR_CONSENT_DENIED, "no consent engine is configured");
    return h->consent_read(h->consent, customer_id, purpose);
}

static void customer_changed(void *ctx, const char *customer_id)
{
    struct cd__cli_hooks *h = ctx;

    if (h->consent_changed)
        h->consent_changed(h->consent, customer_id);
}

static bool complains(const struct cd_guard_finding *f)
{
    return strcmp(f->category, COMPLAINT) == 0;
}

/* The ids of the complaint rules (the guard's complaint category) that text fires, appended
 * to rules once each (rules already there from another part of the text are not repeated). */
static enum cd_err complaint_rules(struct cd__cli_hooks *h, struct cd_str text,
                                   const char *channel, json_t *rules)
{
    struct cd_guard_input in = {text, channel, false, NULL};
    struct cd_guard_result *res = NULL;
    char ids[RULES_MAX + 1];
    json_t *found = NULL;
    size_t i;
    json_t *r;
    enum cd_err err;

    if (text.len == 0)
        return CD_OK;
    if ((err = cd_guard_check(h->guard, &in, &res)) != CD_OK)
        return err;
    if ((found = json_array()) == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    rules_of(res, complains, ids, found);
    json_array_foreach(found, i, r)
    {
        bool seen = false;
        for (size_t k = 0; k < json_array_size(rules) && !seen; k++)
            seen = json_equal(json_array_get(rules, k), r);
        if (!seen && json_array_append(rules, r) != 0)
            err = CD_ERR_NOMEM;
    }
out:
    json_decref(found);
    cd_guard_result_free(res);
    return err;
}

/* Before the write: what the cases module needs of the text, while it is in clear (the words
 * of a complaint, read by the guard's complaint rules). */
static enum cd_err annotate(void *ctx, const struct cd_actor *actor,
                            const struct cd_core_content *in, json_t **note)
{
    struct cd__cli_hooks *h = ctx;
    json_t *rules = NULL;
    enum cd_err err = CD_OK;

    if (h->cases == NULL)
        return CD_OK;
    if (h->guard && strcmp(in->direction, "inbound") == 0 &&
        cd_cases_recognises_complaints(h->cases)) {
        if ((rules = json_array()) == NULL)
            return CD_ERR_NOMEM;
        if ((err = complaint_rules(h, in->subject, in->channel, rules)) != CD_OK ||
            (err = complaint_rules(h, in->body, in->channel, rules)) != CD_OK)
            goto out;
    }
    err = cd_cases_annotate(h->cases, in, rules, note);
out:
    json_decref(rules);
    return err;
}

static enum cd_err recorded(void *ctx, struct cd_tx *tx, const struct cd_core_recorded *r)
{
    struct cd__cli_hooks *h = ctx;

    return h->cases ? cd_cases_recorded(h->cases, tx, r) : CD_OK;
}

static enum cd_err customer_merged(void *ctx, struct cd_tx *tx, const char *merged,
                                   const char *survivor, const struct cd_core_vault *from,
                                   const struct cd_core_vault *to)
{
    struct cd__cli_hooks *h = ctx;

    return h->cases ? cd_cases_customer_merged(h->cases, tx, merged, survivor, from, to) : CD_OK;
}

/* The outbox's worker asks before personal members go to a subscription: consent decides
 * where the purpose rests on it (a restriction of processing included), as for any read, and
 * the read is written to the customer's access log before anything is sent. */
static enum cd_err outbox_personal_read(void *ctx, const char *customer_id,
                                        enum cd_purpose purpose, unsigned categories,
                                        const char *subscription_id)
{
    struct cd__cli_hooks *h = ctx;
    const char *name = cd_purpose_name(purpose);
    enum cd_err err;

    if (h->store == NULL)
        return cd_err_set(CD_ERR_INTERNAL, "no store to record the read in");
    if ((h->consent == NULL || cd_consent_needs_consent(h->consent, purpose)) &&
        (err = read_consent(h, customer_id, name)) != CD_OK)
        return err;
    struct cd_audit_event ev = {.action = "webhook.read",
                                .outcome = "ok",
                                .actor_token = CD_ACTOR_SYSTEM,
                                .actor_role = cd_role_name(CD_ROLE_INTEGRATION),
                                .actor_name = subscription_id,
                                .purpose = name,
                                .customer_id = customer_id,
                                .resource_id = subscription_id,
                                .categories = cd_policy_categories(categories)};
    return cd_audit_record(h->store, &ev);
}

void cd__cli_hooks_install(struct cd__cli_hooks *h, struct cd_core *core)
{
    struct cd_core_hooks hooks = {.ctx = h,
                                  .outbound_check = outbound_check,
                                  .inbound_filter = inbound_filter,
                                  .read_consent = read_consent,
                                  .customer_changed = customer_changed,
                                  .annotate = annotate,
                                  .recorded = recorded,
                                  .customer_merged = customer_merged};

    cd_core_set_hooks(core, &hooks);
    h->outbox = (struct cd_outbox_hooks){h, outbox_personal_read};
}
