/* The in-path checks on core's ingestion, composed from the capabilities that provide them:
 * consent first (cheap, in memory: may this customer be contacted for this purpose now?), then
 * the communication guard (may this text be sent?). Inbound text has card numbers and SSNs
 * masked before anything is stored. */
#include <string.h>
#include "audit/audit.h"
#include "cases/cases.h"
#include "cli_int.h"
#include "guard/guard.h"

/* The category of the rules that recognise the words of a complaint (rules/complaint.yaml). */
#define COMPLAINT "complaint"

static enum cd_err record_block(struct cd__cli_hooks *h, const struct cd_actor *a,
                                const char *customer_id)
{
    struct cd_audit_event ev = {.action = "guard.block",
                                .outcome = "denied",
                                .actor_token = a->token_id,
                                .actor_role = a->role,
                                .actor_name = a->name,
                                .purpose = a->purpose,
                                .request_id = a->request_id,
                                .customer_id = customer_id,
                                .reason = "guard-blocked"};
    return cd_audit_record(h->store, &ev);
}

static enum cd_err guard_outbound(struct cd__cli_hooks *h, const struct cd_actor *a,
                                  const char *customer_id, const char *channel,
                                  struct cd_str body, bool override, json_t **annotation)
{
    struct cd_guard_input in = {body, channel, true};
    struct cd_guard_result *res = NULL;
    enum cd_guard_verdict v;
    enum cd_err err;

    if ((err = cd_guard_check(h->guard, &in, &res)) != CD_OK)
        return err;
    v = cd_guard_result_verdict(res);
    if (v == CD_GUARD_ALLOW)
        goto out;
    if (v == CD_GUARD_BLOCK && !override) {
        /* The sender sees what to fix (matches included: it is their own text); nothing of it
         * is stored. */
        size_t n = cd_guard_result_count(res);
        if ((err = cd_guard_result_to_json(res, true, annotation)) != CD_OK ||
            (err = record_block(h, a, customer_id)) != CD_OK)
            goto out;
        err = cd_err_set(CD_ERR_GUARD_BLOCKED,
                         "the communication guard blocked this message (%zu finding%s); reword "
                         "it, or a supervisor may override with a reason",
                         n, n == 1 ? "" : "s");
        goto out;
    }
    if (v == CD_GUARD_BLOCK && strcmp(a->role, "supervisor") != 0 &&
        strcmp(a->role, "admin") != 0) {
        err = cd_err_set(CD_ERR_FORBIDDEN, "only a supervisor or admin may override a block of "
                                           "the communication guard");
        goto out;
    }
    /* Warnings and overridden blocks are stored with the findings, without the matched text. */
    if ((err = cd_guard_result_to_json(res, false, annotation)) != CD_OK)
        goto out;
    json_object_del(*annotation, "redacted");
    if (v == CD_GUARD_BLOCK && cd_json_set_new(*annotation, "overridden", json_true()) != CD_OK)
        err = CD_ERR_NOMEM;
out:
    cd_guard_result_free(res);
    return err;
}

static enum cd_err outbound_check(void *ctx, const struct cd_actor *a, const char *customer_id,
                                  const char *channel, const char *purpose, struct cd_str topic,
                                  struct cd_str body, bool override, json_t **annotation)
{
    struct cd__cli_hooks *h = ctx;
    enum cd_err err;

    if (h->consent_outbound &&
        (err = h->consent_outbound(h->consent, a, customer_id, channel, purpose, topic, body,
                                   override, annotation)) != CD_OK)
        return err;
    if (h->guard)
        return guard_outbound(h, a, customer_id, channel, body, override, annotation);
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

/* The ids of the complaint rules (the guard's complaint category) that text fires, appended
 * to rules once each. */
static enum cd_err complaint_rules(struct cd__cli_hooks *h, struct cd_str text,
                                   const char *channel, json_t *rules)
{
    struct cd_guard_input in = {text, channel, false};
    struct cd_guard_result *res = NULL;
    enum cd_err err;

    if (text.len == 0)
        return CD_OK;
    if ((err = cd_guard_check(h->guard, &in, &res)) != CD_OK)
        return err;
    for (size_t i = 0; i < cd_guard_result_count(res) && err == CD_OK; i++) {
        const struct cd_guard_finding *f = cd_guard_result_finding(res, i);
        bool seen = false;
        if (strcmp(f->category, COMPLAINT) != 0)
            continue;
        for (size_t k = 0; k < json_array_size(rules) && !seen; k++)
            seen = strcmp(json_string_value(json_array_get(rules, k)), f->rule) == 0;
        if (!seen && json_array_append_new(rules, json_string(f->rule)) != 0)
            err = CD_ERR_NOMEM;
    }
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

void cd__cli_hooks_install(struct cd__cli_hooks *h, struct cd_core *core)
{
    struct cd_core_hooks hooks = {h,        outbound_check, inbound_filter, read_consent,
                                  annotate, recorded,       customer_merged};

    cd_core_set_hooks(core, &hooks);
}
