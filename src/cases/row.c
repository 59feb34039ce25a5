/* The case row: reading and writing it, its history (each entry bound to the ledger), its
 * sealed values, and the case as its readers see it. */
#include <stdio.h>
#include <string.h>
#include "audit/audit.h"
#include "cases_int.h"
#include "crypto/crypto.h"
#include "outbox/outbox.h"
#include "policy/policy.h"


#define NCOLS 47

void cd__case_init(struct cd__case *k)
{
    memset(k, 0, sizeof *k);
    k->remedy = -1;
    k->outcome = -1;
    k->queue_len = -1; /* not counted yet */
    k->sealed = CD_BUF_INIT(4096);
}

void cd__case_free(struct cd__case *k)
{
    cd_buf_free(&k->sealed);
}

static void text(struct cd_val v, char *out, size_t n)
{
    size_t len = 0;

    if (v.type == CD_VAL_TEXT || v.type == CD_VAL_BLOB)
        len = v.len < n - 1 ? v.len : n - 1;
    if (len)
        memcpy(out, v.p, len);
    out[len] = '\0';
}

static int64_t num(struct cd_val v)
{
    return v.type == CD_VAL_INT ? v.i : 0;
}

static int name_of(const char *const *list, struct cd_val v)
{
    return v.type == CD_VAL_TEXT ? cd__cases_name_index(list, (struct cd_str){v.p, v.len}) : -1;
}

static void tags_from(struct cd__case *k, struct cd_val v)
{
    json_t *a = NULL;

    k->ntags = 0;
    if (v.type != CD_VAL_TEXT || cd_json_parse(v.p, v.len, &a) != CD_OK) {
        cd_err_clear();
        return;
    }
    for (size_t i = 0; i < json_array_size(a) && k->ntags < CD__CASES_MAX_TAGS; i++) {
        const char *t = json_string_value(json_array_get(a, i));
        if (t)
            snprintf(k->tags[k->ntags++], CD__CASES_NAME_MAX, "%s", t);
    }
    json_decref(a);
}

enum cd_err cd__case_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct cd__case_read *r = ctx;
    struct cd__case *k = r->k;
    char sla[1024];

    if (n < NCOLS)
        return cd_err_set(CD_ERR_INTERNAL, "case row with %zu columns", n);
    r->found = true;
    text(c[0], k->id, sizeof k->id);
    text(c[1], k->customer_id, sizeof k->customer_id);
    k->type = name_of(cd__case_types, c[2]);
    k->status = name_of(cd__case_statuses, c[3]);
    if (k->type < 0 || k->status < 0)
        return cd_err_set(CD_ERR_INTEGRITY, "case %s has an unknown type or status", k->id);
    k->priority = (int)num(c[4]);
    k->impact = name_of(cd__case_impacts, c[5]);
    if (k->impact < 0)
        k->impact = CI_NORMAL;
    k->channel = name_of(cd__case_channels, c[6]);
    text(c[7], k->team, sizeof k->team);
    text(c[8], k->skill, sizeof k->skill);
    text(c[9], k->assignee, sizeof k->assignee);
    tags_from(k, c[10]);
    text(c[11], k->source, sizeof k->source);
    text(c[12], k->complaint_rules, sizeof k->complaint_rules);
    text(c[13], k->incident_id, sizeof k->incident_id);
    text(c[14], k->follows, sizeof k->follows);
    text(c[15], k->priority_why, sizeof k->priority_why);
    text(c[16], sla, sizeof sla);
    cd__sla_load(r->cs, sla, &k->sla);
    int64_t *t[] = {&k->created_at,  &k->updated_at,    &k->opened_at,  &k->fr_due,
                    &k->fr_at,       &k->fr_breached,   &k->nr_start,   &k->nr_due,
                    &k->nr_breaches, &k->nr_breached,   &k->rs_due,     &k->rs_paused_ms,
                    &k->rs_paused_since, &k->rs_breached, &k->queue_due, &k->watch_at};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        *t[i] = num(c[17 + i]);
    k->breached = (unsigned)num(c[33]);
    k->queued = num(c[34]) != 0;
    k->queue_len = (long)num(c[36]);
    k->resolved_at = num(c[37]);
    k->closed_at = num(c[38]);
    k->reopened = (long)num(c[39]);
    k->remedy = name_of(cd__case_remedies, c[40]);
    k->has_amount = c[41].type == CD_VAL_INT;
    k->remedy_amount = num(c[41]);
    text(c[42], k->remedy_currency, sizeof k->remedy_currency);
    k->outcome = name_of(cd__case_outcomes, c[43]);
    cd_buf_reset(&k->sealed);
    if (c[44].type == CD_VAL_BLOB && cd_buf_append(&k->sealed, c[44].p, c[44].len) != CD_OK)
        return CD_ERR_NOMEM;
    text(c[45], k->flagged, sizeof k->flagged);
    k->version = (long)num(c[46]);
    k->stored = true;
    k->stored_queued = k->queued;
    snprintf(k->stored_team, sizeof k->stored_team, "%s", k->team);
    return CD_OK;
}

enum cd_err cd__case_load(struct cd_cases *cs, struct cd_tx *tx, struct cd_str id,
                          struct cd__case *k)
{
    struct cd__case_read r = {cs, k, false};
    enum cd_err err;

    if (!cd_id_valid(id, "cas"))
        return cd_err_set(CD_ERR_NOT_FOUND, "no case with this id");
    struct cd_val p[] = {CD_VTEXT(id)};
    if ((err = cd_tx_exec(tx, "SELECT " CD__CASE_COLS " FROM cases WHERE id = $1", p, 1,
                          cd__case_row, &r, NULL)) != CD_OK)
        return err;
    return r.found ? CD_OK : cd_err_set(CD_ERR_NOT_FOUND, "no case with this id");
}

static struct cd_val opt_text(const char *s)
{
    return s && s[0] ? CD_VCSTR(s) : CD_VNULL;
}

static struct cd_val opt_int(int64_t v)
{
    return v ? CD_VINT(v) : CD_VNULL;
}

static struct cd_val opt_name(const char *const *list, int i)
{
    return i >= 0 ? CD_VCSTR(list[i]) : CD_VNULL;
}

/* Adds delta to team's waiting count. */
static enum cd_err queue_count_add(struct cd_tx *tx, const char *team, int64_t delta)
{
    struct cd_val p[] = {CD_VCSTR(team), CD_VINT(delta)};

    return cd_tx_exec(tx,
                      "INSERT INTO case_queue_counts(team, waiting) VALUES($1, $2)"
                      " ON CONFLICT(team) DO UPDATE SET"
                      " waiting = case_queue_counts.waiting + excluded.waiting",
                      p, 2, NULL, NULL, NULL);
}

/* The waiting counts after the row went from what k->stored_* says to k's queue and team. */
static enum cd_err queue_count_follow(struct cd_tx *tx, struct cd__case *k)
{
    bool was = k->stored && k->stored_queued;
    bool same_team = was && strcmp(k->stored_team, k->team) == 0;
    enum cd_err err = CD_OK;

    if (was && !(k->queued && same_team))
        err = queue_count_add(tx, k->stored_team, -1);
    if (err == CD_OK && k->queued && !same_team)
        err = queue_count_add(tx, k->team, 1);
    if (err == CD_OK) {
        k->stored = true;
        k->stored_queued = k->queued;
        snprintf(k->stored_team, sizeof k->stored_team, "%s", k->team);
    }
    return err;
}

enum cd_err cd__case_store(struct cd_tx *tx, struct cd__case *k, bool insert)
{
    json_t *tags = json_array();
    char *tags_s = NULL, *sla_s = NULL;
    enum cd_err err = CD_ERR_NOMEM;

    for (size_t i = 0; tags && i < k->ntags; i++)
        if (json_array_append_new(tags, json_string(k->tags[i])) != 0)
            goto out;
    if (tags == NULL || (err = cd_json_dump(tags, &tags_s, NULL)) != CD_OK ||
        (err = cd__sla_dump(&k->sla, &sla_s)) != CD_OK)
        goto out;
    struct cd_val p[NCOLS] = {
        CD_VCSTR(k->id),
        CD_VCSTR(k->customer_id),
        CD_VCSTR(cd__case_types[k->type]),
        CD_VCSTR(cd__case_statuses[k->status]),
        CD_VINT(k->priority),
        CD_VCSTR(cd__case_impacts[k->impact]),
        opt_name(cd__case_channels, k->channel),
        CD_VCSTR(k->team),
        opt_text(k->skill),
        opt_text(k->assignee),
        CD_VCSTR(tags_s),
        CD_VCSTR(k->source),
        opt_text(k->complaint_rules),
        opt_text(k->incident_id),
        opt_text(k->follows),
        CD_VCSTR(k->priority_why),
        opt_text(sla_s),
        CD_VINT(k->created_at),
        CD_VINT(k->updated_at),
        CD_VINT(k->opened_at),
        opt_int(k->fr_due),
        opt_int(k->fr_at),
        opt_int(k->fr_breached),
        opt_int(k->nr_start),
        opt_int(k->nr_due),
        CD_VINT(k->nr_breaches),
        opt_int(k->nr_breached),
        opt_int(k->rs_due),
        CD_VINT(k->rs_paused_ms),
        opt_int(k->rs_paused_since),
        opt_int(k->rs_breached),
        opt_int(k->queue_due),
        opt_int(k->watch_at),
        CD_VINT(k->breached),
        CD_VINT(k->queued),
        CD_VINT(k->queue_due ? k->queue_due : CD__CASES_MS_NEVER),
        CD_VINT(k->queue_len),
        opt_int(k->resolved_at),
        opt_int(k->closed_at),
        CD_VINT(k->reopened),
        opt_name(cd__case_remedies, k->remedy),
        k->has_amount ? CD_VINT(k->remedy_amount) : CD_VNULL,
        opt_text(k->remedy_currency),
        opt_name(cd__case_outcomes, k->outcome),
        k->sealed.len ? CD_VBLOB(k->sealed.p, k->sealed.len) : CD_VNULL,
        opt_text(k->flagged),
        CD_VINT(k->version),
    };
    if (insert) {
        err = cd_tx_exec(tx,
                         "INSERT INTO cases(" CD__CASE_COLS ") VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,"
                         "$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24,$25,$26,$27,"
                         "$28,$29,$30,$31,$32,$33,$34,$35,$36,$37,$38,$39,$40,$41,$42,$43,$44,$45,"
                         "$46,$47)",
                         p, NCOLS, NULL, NULL, NULL);
        goto out;
    }
    /* The id and the creation never change; every other column is written as a whole. */
    err = cd_tx_exec(
        tx,
        "UPDATE cases SET customer_id = $2, type = $3, status = $4, priority = $5, impact = $6,"
        " channel = $7, team = $8, skill = $9, assignee = $10, tags = $11, source = $12,"
        " complaint_rules = $13, incident_id = $14, follows = $15, priority_why = $16, sla = $17,"
        " updated_at = $19, opened_at = $20, fr_due = $21, fr_at = $22, fr_breached = $23,"
        " nr_start = $24, nr_due = $25, nr_breaches = $26, nr_breached = $27, rs_due = $28,"
        " rs_paused_ms = $29, rs_paused_since = $30, rs_breached = $31, queue_due = $32,"
        " watch_at = $33, breached = $34, queued = $35, queue_rank = $36, queue_len = $37,"
        " resolved_at = $38, closed_at = $39, reopened = $40, remedy = $41, remedy_amount = $42,"
        " remedy_currency = $43, outcome = $44, sealed = $45, flagged = $46, version = $47"
        " WHERE id = $1 AND created_at = $18",
        p, NCOLS, NULL, NULL, NULL);
out:
    if (err == CD_OK)
        err = queue_count_follow(tx, k);
    json_decref(tags);
    cd_free(tags_s);
    cd_free(sla_s);
    return err;
}

/* ---- history ---- */

enum cd_err cd__case_event(struct cd_tx *tx, const struct cd_actor *a, const struct cd__case *k,
                           const char *action, const json_t *data, int64_t at)
{
    char *data_s = NULL, *canon = NULL, hex[2 * CD_CRYPTO_HASH_LEN + 1];
    uint8_t h[CD_CRYPTO_HASH_LEN];
    const char *actor = a ? a->token_id : "system";
    json_t *c = NULL;
    uint64_t seq = 0;
    enum cd_err err;

    if ((err = cd_json_dump(data, &data_s, NULL)) != CD_OK)
        goto out;
    /* The row's digest, over its columns in a canonical form, goes into the ledger entry: an
     * edited history row no longer matches the hashed ledger. */
    if ((c = json_pack("{s:s,s:s,s:I,s:s,s:s}", "case_id", k->id, "action", action, "at",
                       (json_int_t)at, "actor", actor, "data", data_s)) == NULL ||
        (canon = json_dumps(c, JSON_COMPACT | JSON_SORT_KEYS)) == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    if ((err = cd_crypto_sha256(canon, strlen(canon), h)) != CD_OK)
        goto out;
    cd_hex_encode(h, sizeof h, hex);
    struct cd_audit_event ev = {.action = action,
                                .outcome = "ok",
                                .actor_token = actor,
                                .actor_role = a ? a->role : "system",
                                .actor_name = a ? a->name : NULL,
                                .purpose = a ? a->purpose : NULL,
                                .request_id = a ? a->request_id : NULL,
                                .customer_id = k->customer_id,
                                .resource_id = k->id,
                                .data_sha256 = hex};
    if ((err = cd_audit_append(tx, &ev, &seq)) != CD_OK)
        goto out;
    struct cd_val p[] = {CD_VCSTR(k->id),  CD_VINT(at),      CD_VCSTR(action),
                         CD_VCSTR(actor), CD_VCSTR(data_s), CD_VINT((int64_t)seq)};
    err = cd_tx_exec(tx, "INSERT INTO case_events(case_id, at, action, actor, data, audit_seq)"
                         " VALUES($1,$2,$3,$4,$5,$6)",
                     p, 6, NULL, NULL, NULL);
out:
    json_decref(c);
    cd_free(data_s);
    cd_free(canon);
    return err;
}

enum cd_err cd__case_breaches(struct cd_tx *tx, const struct cd__case *k, unsigned bits,
                              int64_t at)
{
    enum cd_err err = CD_OK;

    for (int c = 0; c < CK__COUNT && err == CD_OK; c++) {
        if (!((bits >> c) & 1u))
            continue;
        /* A breach is dated by the deadline that passed, noticed at `at`. */
        int64_t due = c == CK_FIRST ? k->fr_breached : c == CK_NEXT ? k->nr_breached
                                                                    : k->rs_breached;
        json_t *d = json_pack("{s:s,s:s,s:o,s:o}", "case_id", k->id, "clock",
                              cd__case_clocks[c], "due_at", cd__time_json(due), "breached_at",
                              cd__time_json(at));
        if (d == NULL)
            return CD_ERR_NOMEM;
        if ((err = cd__case_event(tx, NULL, k, "case.sla_breached", d, at)) == CD_OK)
            err = cd_outbox_enqueue(tx, "case.breached", CD_STR_NULL, d, NULL);
        json_decref(d);
    }
    return err;
}

enum cd_err cd__case_link(struct cd_tx *tx, const char *case_id, const char *interaction_id,
                          const char *direction, int64_t at)
{
    struct cd_val p[] = {CD_VCSTR(interaction_id), CD_VCSTR(case_id), CD_VCSTR(direction),
                         CD_VINT(at)};
    return cd_tx_exec(tx, "INSERT INTO case_interactions(interaction_id, case_id, direction,"
                          " occurred_at) VALUES($1,$2,$3,$4) ON CONFLICT DO NOTHING",
                      p, 4, NULL, NULL, NULL);
}

/* ---- sealed values ---- */

static void sealed_field(const struct cd__case *k, char out[CD_ID_MAX + 16])
{
    snprintf(out, CD_ID_MAX + 16, "cases.sealed:%s", k->id);
}

enum cd_err cd__sensitive_seal(struct cd_cases *cs, struct cd_tx *tx, const struct cd__case *k,
                               const struct cd__sensitive *s, struct cd_buf *out)
{
    struct cd_core_vault *v = NULL;
    json_t *o = NULL, *flags;
    char *plain = NULL, field[CD_ID_MAX + 16];
    size_t len = 0;
    enum cd_err err = CD_ERR_NOMEM;

    cd_buf_reset(out);
    if (s->vulnerability == 0 && !s->has_value)
        return CD_OK;
    if ((o = json_object()) == NULL || (flags = json_array()) == NULL ||
        json_object_set_new(o, "vulnerability", flags) != 0)
        goto out;
    for (int i = 0; cd__case_vulnerabilities[i]; i++)
        if (((s->vulnerability >> i) & 1u) &&
            json_array_append_new(flags, json_string(cd__case_vulnerabilities[i])) != 0)
            goto out;
    if (s->has_value) {
        json_t *val = json_object();
        if (val == NULL || json_object_set_new(o, "customer_value", val) != 0 ||
            (s->tier[0] && cd_json_set_new(val, "tier", json_string(s->tier)) != CD_OK) ||
            (s->has_spend &&
             (cd_json_set_new(val, "spend_minor", json_integer(s->spend_minor)) != CD_OK ||
              cd_json_set_new(val, "currency", json_string(s->currency)) != CD_OK)))
            goto out;
    }
    sealed_field(k, field);
    if ((err = cd_json_dump(o, &plain, &len)) != CD_OK ||
        (err = cd_core_vault_open(cs->core, tx, cd_str_c(k->customer_id), &v)) != CD_OK)
        goto out;
    err = cd_core_vault_seal(v, field, (struct cd_str){plain, len}, out);
out:
    cd_core_vault_close(v);
    if (plain)
        cd_crypto_wipe(plain, len);
    cd_free(plain);
    json_decref(o);
    return err;
}

static void sensitive_from(struct cd__sensitive *s, const json_t *o)
{
    json_t *flags = json_object_get(o, "vulnerability");
    json_t *val = json_object_get(o, "customer_value");
    const char *t;

    for (size_t i = 0; i < json_array_size(flags); i++) {
        int f = cd__cases_name_index(cd__case_vulnerabilities,
                                     cd_str_c(json_string_value(json_array_get(flags, i))));
        if (f >= 0)
            s->vulnerability |= 1u << f;
    }
    if (!json_is_object(val))
        return;
    s->has_value = true;
    if ((t = json_string_value(json_object_get(val, "tier"))) != NULL)
        snprintf(s->tier, sizeof s->tier, "%s", t);
    if (json_is_integer(json_object_get(val, "spend_minor"))) {
        s->has_spend = true;
        s->spend_minor = json_integer_value(json_object_get(val, "spend_minor"));
        snprintf(s->currency, sizeof s->currency, "%s",
                 (t = json_string_value(json_object_get(val, "currency"))) ? t : "");
    }
}

enum cd_err cd__sensitive_open(struct cd_cases *cs, struct cd_tx *tx, const struct cd__case *k,
                               struct cd__sensitive *s, bool *ok)
{
    struct cd_core_vault *v = NULL;
    struct cd_buf plain = CD_BUF_INIT(8192);
    char field[CD_ID_MAX + 16];
    json_t *o = NULL;
    bool present = false;
    enum cd_err err = CD_OK;

    memset(s, 0, sizeof *s);
    *ok = true;
    if (k->sealed.len == 0)
        return CD_OK;
    sealed_field(k, field);
    err = cd_core_vault_open(cs->core, tx, cd_str_c(k->customer_id), &v);
    if (err == CD_ERR_CRYPTO || err == CD_ERR_NOT_FOUND) {
        /* Erased (the key is destroyed): the values are gone for good. */
        *ok = false;
        err = CD_OK;
        cd_err_clear();
        goto out;
    }
    if (err != CD_OK)
        goto out;
    struct cd_val sv = CD_VBLOB(k->sealed.p, k->sealed.len);
    if ((err = cd_core_vault_unseal(v, field, sv, &plain, &present)) != CD_OK) {
        if (err == CD_ERR_CRYPTO)
            cd_integrity_report(CD_INTEGRITY_SEALED_FIELD, "\"case\":\"%s\",\"field\":\"sealed\"",
                                k->id);
        goto out;
    }
    if (present && cd_json_parse_object(plain.p, plain.len, &o) == CD_OK)
        sensitive_from(s, o);
    cd_err_clear();
out:
    if (plain.p)
        cd_crypto_wipe(plain.p, plain.len);
    cd_buf_free(&plain);
    json_decref(o);
    cd_core_vault_close(v);
    return err;
}

/* ---- the case as its readers see it ---- */

json_t *cd__time_json(int64_t ms)
{
    char t[CD_TIME_STRLEN];

    if (ms == 0)
        return json_null();
    cd_time_format(ms, t);
    return json_string(t);
}

static const char *clock_state(int64_t due, int64_t met, int64_t breached, bool running,
                               bool paused, int64_t now)
{
    if (met)
        return breached ? "met_late" : "met";
    if (paused)
        return "paused";
    if (!running)
        return "none";
    return breached || (due && now >= due) ? "breached" : "running";
}

static json_t *clock_json(const char *state, int64_t due, int64_t met, int64_t breached)
{
    return json_pack("{s:s,s:o,s:o,s:o}", "state", state, "due_at", cd__time_json(due),
                     "met_at", cd__time_json(met), "breached_at", cd__time_json(breached));
}

static json_t *sla_json(const struct cd__case *k, int64_t now)
{
    json_t *o, *targets;
    char t[64];

    if (!k->sla.has_policy)
        return json_null();
    if ((targets = json_object()) == NULL)
        return NULL;
    for (int c = 0; c < CK__COUNT; c++)
        if (k->sla.has[c]) {
            cd_period_format(&k->sla.p[c], t, sizeof t);
            json_object_set_new(targets, cd__case_clocks[c], json_string(t));
        }
    bool rs_paused = k->rs_paused_since != 0 && !k->resolved_at;
    bool nr_marked = k->nr_start && k->nr_breached >= k->nr_start;
    json_t *fr = clock_json(clock_state(k->fr_due, k->fr_at, k->fr_breached, k->fr_due != 0,
                                        false, now),
                            k->fr_due, k->fr_at, k->fr_breached);
    json_t *nr = clock_json(clock_state(k->nr_due, 0, nr_marked ? k->nr_breached : 0,
                                        k->nr_due != 0, false, now),
                            k->nr_due, 0, nr_marked ? k->nr_breached : 0);
    json_t *rs = clock_json(clock_state(k->rs_due, k->resolved_at, k->rs_breached,
                                        k->rs_due != 0 && k->status != CS_CLOSED, rs_paused,
                                        now),
                            rs_paused ? 0 : k->rs_due, k->resolved_at, k->rs_breached);
    if (nr)
        json_object_set_new(nr, "breaches", json_integer(k->nr_breaches));
    if (rs) {
        json_object_set_new(rs, "paused_ms", json_integer(k->rs_paused_ms));
        json_object_set_new(rs, "paused_since",
                            cd__time_json(rs_paused ? k->rs_paused_since : 0));
    }
    o = json_pack("{s:s,s:s,s:s,s:i,s:o,s:o,s:o,s:o}", "policy", k->sla.policy, "version",
                  k->sla.version, "calendar", k->sla.calendar, "target", k->sla.target,
                  "targets", targets, "first_response", fr, "next_response", nr, "resolution",
                  rs);
    return o;
}

/* The priority explanation; the customer-value factor only where value may be shown. */
static json_t *why_json(const struct cd__case *k, const struct cd_cases_view *v)
{
    json_t *o = NULL, *factors;

    if (cd_json_parse_object(k->priority_why, strlen(k->priority_why), &o) != CD_OK) {
        cd_err_clear();
        return json_null();
    }
    factors = json_object_get(o, "factors");
    for (size_t i = json_array_size(factors); !v->value && i > 0; i--)
        if (cd_str_eq_c(cd_str_c(json_string_value(
                            json_object_get(json_array_get(factors, i - 1), "factor"))),
                        "customer_value"))
            json_array_remove(factors, i - 1);
    return o;
}

static json_t *string_list(const char (*s)[CD__CASES_NAME_MAX], size_t n)
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, json_string(s[i]));
    return a;
}

static json_t *nullable(const char *s)
{
    return s && s[0] ? json_string(s) : json_null();
}

static json_t *parsed_or_null(const char *s)
{
    json_t *v = NULL;

    if (s[0] == '\0' || cd_json_parse(s, strlen(s), &v) != CD_OK) {
        cd_err_clear();
        return json_null();
    }
    return v;
}

static json_t *remedy_json(const struct cd__case *k)
{
    if (k->remedy < 0)
        return json_null();
    return json_pack("{s:s,s:o,s:o}", "type", cd__case_remedies[k->remedy], "amount_minor",
                     k->has_amount ? json_integer(k->remedy_amount) : json_null(), "currency",
                     nullable(k->remedy_currency));
}

static enum cd_err add_sensitive(json_t *o, const struct cd__sensitive *s,
                                 const struct cd_cases_view *v)
{
    json_t *flags = json_array();

    for (int i = 0; flags && cd__case_vulnerabilities[i]; i++)
        if ((s->vulnerability >> i) & 1u)
            json_array_append_new(flags, json_string(cd__case_vulnerabilities[i]));
    if (cd_json_set_new(o, "vulnerability", flags) != CD_OK)
        return CD_ERR_NOMEM;
    if (!v->value)
        return CD_OK;
    if (!s->has_value)
        return cd_json_set_new(o, "customer_value", json_null());
    return cd_json_set_new(o, "customer_value",
                           json_pack("{s:o,s:o,s:o}", "tier", nullable(s->tier), "spend_minor",
                                     s->has_spend ? json_integer(s->spend_minor) : json_null(),
                                     "currency", nullable(s->currency)));
}

enum cd_err cd__case_json(const struct cd__case *k, const struct cd__sensitive *sens,
                          const struct cd_cases_view *v, int64_t now, json_t **out)
{
    json_t *o;

    o = json_pack("{s:s,s:s,s:s,s:s,s:i,s:s,s:o,s:s,s:o,s:o,s:o,s:s,s:o,s:o,s:o,s:o,s:o,s:o,"
                  "s:o,s:o,s:o,s:o,s:i,s:o,s:o,s:o,s:i,s:i}",
                  "id", k->id, "customer_id", k->customer_id, "type", cd__case_types[k->type],
                  "status", cd__case_statuses[k->status], "priority", k->priority, "impact",
                  cd__case_impacts[k->impact], "channel",
                  k->channel >= 0 ? json_string(cd__case_channels[k->channel]) : json_null(),
                  "team", k->team, "skill", nullable(k->skill), "assignee",
                  nullable(k->assignee), "tags", string_list(k->tags, k->ntags), "source",
                  k->source, "complaint_rules", parsed_or_null(k->complaint_rules),
                  "incident_id", nullable(k->incident_id), "follows", nullable(k->follows),
                  "priority_why", why_json(k, v), "sla", sla_json(k, now), "created_at",
                  cd__time_json(k->created_at), "updated_at", cd__time_json(k->updated_at),
                  "opened_at", cd__time_json(k->opened_at), "resolved_at",
                  cd__time_json(k->resolved_at), "closed_at", cd__time_json(k->closed_at),
                  "reopened", (int)k->reopened, "remedy", remedy_json(k), "outcome",
                  k->outcome >= 0 ? json_string(cd__case_outcomes[k->outcome]) : json_null(),
                  "flagged", nullable(k->flagged), "queue_length_at_open", (int)k->queue_len,
                  "version", (int)k->version);
    if (o == NULL)
        return CD_ERR_NOMEM;
    if ((v->fields & CD_FIELDS_PROFILE) && sens && add_sensitive(o, sens, v) != CD_OK) {
        json_decref(o);
        return CD_ERR_NOMEM;
    }
    *out = o;
    return CD_OK;
}
