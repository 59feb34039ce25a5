/* The deadline rules: RULES/dsar/regimes.yaml, validated when the server starts, and the
 * arithmetic of a request's deadlines by the business calendar its regime names. */
#include <string.h>
#include <yaml.h>
#include "dsar_int.h"

static const char *const type_names[CD_DSAR_TYPE__COUNT] = {
    "access",      "portability", "rectification",        "erasure",
    "restriction", "objection",   "opt_out_sale_sharing", "limit_sensitive_use",
};
static const char *const state_names[CD_DSAR_STATE__COUNT] = {
    "received", "verifying", "in_progress", "extended", "completed", "refused", "withdrawn",
};

const char *cd_dsar_type_name(enum cd_dsar_type t)
{
    return (unsigned)t < CD_DSAR_TYPE__COUNT ? type_names[t] : "?";
}

bool cd_dsar_type_parse(struct cd_str s, enum cd_dsar_type *out)
{
    for (int i = 0; i < CD_DSAR_TYPE__COUNT; i++)
        if (cd_str_eq_c(s, type_names[i])) {
            *out = (enum cd_dsar_type)i;
            return true;
        }
    return false;
}

const char *cd_dsar_state_name(enum cd_dsar_state s)
{
    return (unsigned)s < CD_DSAR_STATE__COUNT ? state_names[s] : "?";
}

bool cd_dsar_state_parse(struct cd_str s, enum cd_dsar_state *out)
{
    for (int i = 0; i < CD_DSAR_STATE__COUNT; i++)
        if (cd_str_eq_c(s, state_names[i])) {
            *out = (enum cd_dsar_state)i;
            return true;
        }
    return false;
}

bool cd_dsar_transition_allowed(enum cd_dsar_state from, enum cd_dsar_state to)
{
    /* Rows: from; bits: to. A closed request never changes again; extended is reached by an
     * extension only, which has rules of its own (once, before the deadline). */
#define B(s) (1u << (s))
    static const unsigned allowed[CD_DSAR_STATE__COUNT] = {
        [CD_DSAR_RECEIVED] = B(CD_DSAR_VERIFYING) | B(CD_DSAR_IN_PROGRESS) | B(CD_DSAR_REFUSED) |
                             B(CD_DSAR_WITHDRAWN),
        [CD_DSAR_VERIFYING] = B(CD_DSAR_IN_PROGRESS) | B(CD_DSAR_REFUSED) | B(CD_DSAR_WITHDRAWN),
        [CD_DSAR_IN_PROGRESS] = B(CD_DSAR_COMPLETED) | B(CD_DSAR_REFUSED) | B(CD_DSAR_WITHDRAWN),
        [CD_DSAR_EXTENDED] = B(CD_DSAR_COMPLETED) | B(CD_DSAR_REFUSED) | B(CD_DSAR_WITHDRAWN),
    };
#undef B
    return (unsigned)from < CD_DSAR_STATE__COUNT && (unsigned)to < CD_DSAR_STATE__COUNT &&
           (allowed[from] & (1u << to)) != 0;
}

/* ---- loading ------------------------------------------------------------------------------ */

void cd_dsar_rules_free(struct cd_dsar_rules *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n; i++) {
        cd_free(r->r[i].name);
        cd_free(r->r[i].authority);
        cd_free(r->r[i].basis);
        cd_free(r->r[i].match);
    }
    cd_free(r->r);
    cd_free(r);
}

struct load {
    const struct cd_calendars *cals;
    struct cd_dsar_rules *rules;
    struct cd__dsar_regime *reg; /* the regime being read */
    struct cd__dsar_periods *per; /* the periods being read */
    bool have_all;               /* the regime's deadlines name "all" */
    bool set[CD_DSAR_TYPE__COUNT];
};

static enum cd_err period(const struct cd_yaml *y, yaml_node_t *v, const char *what,
                          struct cd_period *out)
{
    struct cd_str s;
    enum cd_err err;
    char msg[200];

    if ((err = cd_yaml_str(y, v, what, 64, &s)) != CD_OK)
        return err;
    if (cd_period_parse(s, out) != CD_OK) {
        snprintf(msg, sizeof msg, "%s: %s", what, cd_err_detail());
        return cd_yaml_bad(y, v, msg);
    }
    return CD_OK;
}

static enum cd_err per_ack(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                           void *ctx)
{
    struct load *l = ctx;
    l->per->has_ack = true;
    return period(y, v, "acknowledge", &l->per->ack);
}

static enum cd_err per_answer(const struct cd_yaml *y, yaml_node_t *v,
                              const struct cd_yaml_key *k, void *ctx)
{
    struct load *l = ctx;
    bool roll = l->per->answer.roll_to_business_day; /* the key may come before this one */
    enum cd_err err = period(y, v, "answer", &l->per->answer);

    l->per->answer.roll_to_business_day = roll;
    return err;
}

static enum cd_err per_roll(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                            void *ctx)
{
    struct load *l = ctx;
    return cd_yaml_bool(y, v, "roll_to_business_day", &l->per->answer.roll_to_business_day);
}

static enum cd_err per_ext(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                           void *ctx)
{
    struct load *l = ctx;
    l->per->has_ext = true;
    return period(y, v, "extension", &l->per->ext);
}

/* One entry of a regime's deadlines: "all" (arg -1) or a request type (arg its index). */
static enum cd_err deadline_entry(const struct cd_yaml *y, yaml_node_t *v,
                                  const struct cd_yaml_key *k, void *ctx)
{
    static const struct cd_yaml_key keys[] = {
        {"acknowledge", false, per_ack, 0},
        {"answer", true, per_answer, 0},
        {"roll_to_business_day", false, per_roll, 0},
        {"extension", false, per_ext, 0},
    };
    struct load *l = ctx;
    struct cd__dsar_periods p = {0};
    enum cd_err err;

    l->per = &p;
    if ((err = cd_yaml_map(y, v, k->name, keys, sizeof keys / sizeof keys[0], l)) != CD_OK)
        return err;
    /* An extension adds to the answer's period, counted from the same start: so it must count
     * in the same unit ("2 months" on "1 month" is "3 months" from receipt). */
    if (p.has_ext && p.ext.unit != p.answer.unit)
        return cd_yaml_bad(y, v, "extension must count in the same unit as answer");
    p.ext.roll_to_business_day = p.answer.roll_to_business_day;
    if (k->arg < 0) {
        l->have_all = true;
        for (int t = 0; t < CD_DSAR_TYPE__COUNT; t++)
            if (!l->set[t])
                l->reg->p[t] = p;
    } else {
        l->set[k->arg] = true;
        l->reg->p[k->arg] = p;
    }
    return CD_OK;
}

static enum cd_err reg_deadlines(const struct cd_yaml *y, yaml_node_t *v,
                                 const struct cd_yaml_key *k, void *ctx)
{
    struct cd_yaml_key keys[CD_DSAR_TYPE__COUNT + 1];
    struct load *l = ctx;
    enum cd_err err;

    keys[0] = (struct cd_yaml_key){"all", true, deadline_entry, -1};
    for (int t = 0; t < CD_DSAR_TYPE__COUNT; t++)
        keys[t + 1] = (struct cd_yaml_key){type_names[t], false, deadline_entry, t};
    l->have_all = false;
    memset(l->set, 0, sizeof l->set);
    /* "all" fills every type not named on its own, wherever it stands in the mapping. */
    if ((err = cd_yaml_map(y, v, "deadlines", keys, CD_DSAR_TYPE__COUNT + 1, l)) != CD_OK)
        return err;
    return CD_OK;
}

static enum cd_err text_dup(const struct cd_yaml *y, yaml_node_t *v, const char *what, size_t max,
                            char **out)
{
    struct cd_str s;
    enum cd_err err;

    if ((err = cd_yaml_str(y, v, what, max, &s)) != CD_OK)
        return err;
    cd_free(*out);
    *out = cd_strndup(s.p, s.len);
    return *out ? CD_OK : CD_ERR_NOMEM;
}

static enum cd_err reg_id(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                          void *ctx)
{
    struct load *l = ctx;
    struct cd_str s;
    enum cd_err err;

    if ((err = cd_yaml_str(y, v, "id", CD__DSAR_ID_MAX - 1, &s)) != CD_OK)
        return err;
    for (size_t i = 0; i < s.len; i++)
        if (!((s.p[i] >= 'a' && s.p[i] <= 'z') || (s.p[i] >= '0' && s.p[i] <= '9') ||
              s.p[i] == '-' || s.p[i] == '_'))
            return cd_yaml_bad(y, v, "id must use only a-z, 0-9, '-' and '_'");
    if (cd__dsar_regime(l->rules, s) != NULL)
        return cd_yaml_bad(y, v, "a regime with this id is already defined");
    memcpy(l->reg->id, s.p, s.len);
    l->reg->id[s.len] = '\0';
    return CD_OK;
}

static enum cd_err reg_name(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                            void *ctx)
{
    struct load *l = ctx;
    return text_dup(y, v, "name", 200, &l->reg->name);
}

static enum cd_err reg_authority(const struct cd_yaml *y, yaml_node_t *v,
                                 const struct cd_yaml_key *k, void *ctx)
{
    struct load *l = ctx;
    return text_dup(y, v, "authority", 1000, &l->reg->authority);
}

static enum cd_err reg_basis(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                             void *ctx)
{
    struct load *l = ctx;
    return text_dup(y, v, "basis", 1000, &l->reg->basis);
}

static enum cd_err reg_calendar(const struct cd_yaml *y, yaml_node_t *v,
                                const struct cd_yaml_key *k, void *ctx)
{
    struct load *l = ctx;
    struct cd_str s;
    enum cd_err err;

    if ((err = cd_yaml_str(y, v, "calendar", CD_CALENDAR_ID_MAX, &s)) != CD_OK)
        return err;
    if ((l->reg->cal = cd_calendars_find(l->cals, s)) == NULL)
        return cd_yaml_bad(y, v, "calendar names no loaded calendar (RULES/calendars/*.yaml, "
                                 "or the built-in 24x7)");
    return CD_OK;
}

static enum cd_err reg_default(const struct cd_yaml *y, yaml_node_t *v,
                               const struct cd_yaml_key *k, void *ctx)
{
    struct load *l = ctx;
    return cd_yaml_bool(y, v, "default", &l->reg->is_default);
}

static enum cd_err reg_receipt_day(const struct cd_yaml *y, yaml_node_t *v,
                                   const struct cd_yaml_key *k, void *ctx)
{
    struct load *l = ctx;
    return cd_yaml_bool(y, v, "answer_counts_day_of_receipt", &l->reg->answer_counts_receipt_day);
}

static bool code_taken(const struct cd_dsar_rules *r, const struct cd__dsar_regime *upto,
                       struct cd_str code)
{
    for (size_t i = 0; i < r->n; i++)
        for (size_t j = 0; j < r->r[i].nmatch; j++)
            if (cd_str_eq_c(code, r->r[i].match[j]))
                return true;
    for (size_t j = 0; j < upto->nmatch; j++)
        if (cd_str_eq_c(code, upto->match[j]))
            return true;
    return false;
}

static enum cd_err match_item(const struct cd_yaml *y, yaml_node_t *v, size_t i, void *ctx)
{
    struct load *l = ctx;
    struct cd_str s;
    enum cd_err err;

    if ((err = cd_yaml_str(y, v, "a jurisdiction code", CD__DSAR_CODE_MAX - 1, &s)) != CD_OK)
        return err;
    if (code_taken(l->rules, l->reg, s))
        return cd_yaml_bad(y, v, "this jurisdiction code is matched by another regime already");
    memcpy(l->reg->match[l->reg->nmatch], s.p, s.len);
    l->reg->match[l->reg->nmatch][s.len] = '\0';
    l->reg->nmatch++;
    return CD_OK;
}

static enum cd_err reg_match(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                             void *ctx)
{
    struct load *l = ctx;
    size_t n = v && v->type == YAML_SEQUENCE_NODE
                   ? (size_t)(v->data.sequence.items.top - v->data.sequence.items.start)
                   : 0;

    if ((l->reg->match = cd_calloc(n ? n : 1, sizeof *l->reg->match)) == NULL)
        return CD_ERR_NOMEM;
    return cd_yaml_seq(y, v, "match", match_item, l);
}

static enum cd_err regime_item(const struct cd_yaml *y, yaml_node_t *v, size_t i, void *ctx)
{
    static const struct cd_yaml_key keys[] = {
        {"id", true, reg_id, 0},
        {"name", true, reg_name, 0},
        {"match", false, reg_match, 0},
        {"default", false, reg_default, 0},
        {"calendar", true, reg_calendar, 0},
        {"authority", true, reg_authority, 0},
        {"basis", true, reg_basis, 0},
        {"answer_counts_day_of_receipt", false, reg_receipt_day, 0},
        {"deadlines", true, reg_deadlines, 0},
    };
    struct load *l = ctx;
    struct cd__dsar_regime *reg = &l->rules->r[l->rules->n];
    enum cd_err err;

    memset(reg, 0, sizeof *reg);
    l->reg = reg;
    err = cd_yaml_map(y, v, "a regime", keys, sizeof keys / sizeof keys[0], l);
    if (err == CD_OK && !reg->is_default && reg->nmatch == 0)
        err = cd_yaml_bad(y, v, "a regime that is not the default must match jurisdictions");
    if (err != CD_OK) {
        cd_free(reg->name);
        cd_free(reg->authority);
        cd_free(reg->basis);
        cd_free(reg->match);
        return err;
    }
    if (reg->is_default)
        l->rules->def = l->rules->n;
    l->rules->n++;
    return CD_OK;
}

static enum cd_err key_version(const struct cd_yaml *y, yaml_node_t *v,
                               const struct cd_yaml_key *k, void *ctx)
{
    int64_t version;
    return cd_yaml_int(y, v, "version", 1, 1, &version);
}

static enum cd_err key_due_soon(const struct cd_yaml *y, yaml_node_t *v,
                                const struct cd_yaml_key *k, void *ctx)
{
    struct load *l = ctx;
    int64_t days;
    enum cd_err err = cd_yaml_int(y, v, "due_soon_days", 1, 60, &days);

    l->rules->due_soon_days = (int)days;
    return err;
}

static enum cd_err key_regimes(const struct cd_yaml *y, yaml_node_t *v,
                               const struct cd_yaml_key *k, void *ctx)
{
    struct load *l = ctx;
    size_t n = v && v->type == YAML_SEQUENCE_NODE
                   ? (size_t)(v->data.sequence.items.top - v->data.sequence.items.start)
                   : 0;
    size_t defaults = 0;
    enum cd_err err;

    if ((l->rules->r = cd_calloc(n ? n : 1, sizeof *l->rules->r)) == NULL)
        return CD_ERR_NOMEM;
    if ((err = cd_yaml_seq(y, v, "regimes", regime_item, l)) != CD_OK)
        return err;
    for (size_t i = 0; i < l->rules->n; i++)
        defaults += l->rules->r[i].is_default;
    if (defaults != 1)
        return cd_yaml_bad(y, v, "exactly one regime must be the default (default: true), for "
                                 "customers whose jurisdiction no regime matches");
    return CD_OK;
}

enum cd_err cd_dsar_rules_parse(const struct cd_calendars *cals, const char *name,
                                const char *data, size_t len, struct cd_dsar_rules **out)
{
    static const struct cd_yaml_key keys[] = {
        {"version", true, key_version, 0},
        {"due_soon_days", true, key_due_soon, 0},
        {"regimes", true, key_regimes, 0},
    };
    struct cd_yaml y = {0};
    struct load l = {.cals = cals};
    enum cd_err err;

    if ((l.rules = cd_calloc(1, sizeof *l.rules)) == NULL)
        return CD_ERR_NOMEM;
    if ((err = cd_yaml_parse(&y, name, data, len)) != CD_OK ||
        (err = cd_yaml_map(&y, cd_yaml_root(&y), "the regimes file", keys,
                           sizeof keys / sizeof keys[0], &l)) != CD_OK) {
        cd_dsar_rules_free(l.rules);
        goto out;
    }
    *out = l.rules;
out:
    cd_yaml_free(&y);
    return err;
}

enum cd_err cd_dsar_rules_load(const struct cd_calendars *cals, const char *path,
                               struct cd_dsar_rules **out)
{
    struct cd_buf b = CD_BUF_INIT(1024 * 1024);
    enum cd_err err = cd_buf_read_file(&b, path);

    if (err == CD_OK)
        err = cd_dsar_rules_parse(cals, path, b.p, b.len, out);
    cd_buf_free(&b);
    return err;
}

/* ---- deadlines ---------------------------------------------------------------------------- */

const struct cd__dsar_regime *cd__dsar_regime(const struct cd_dsar_rules *r, struct cd_str id)
{
    for (size_t i = 0; i < r->n; i++)
        if (cd_str_eq_c(id, r->r[i].id))
            return &r->r[i];
    return NULL;
}

const char *cd_dsar_regime_for(const struct cd_dsar_rules *r, struct cd_str jurisdiction)
{
    for (size_t i = 0; i < r->n; i++)
        for (size_t j = 0; jurisdiction.len && j < r->r[i].nmatch; j++)
            if (cd_str_eq_c(jurisdiction, r->r[i].match[j]))
                return r->r[i].id;
    return r->r[r->def].id;
}

enum cd_err cd_dsar_deadlines(const struct cd_dsar_rules *r, struct cd_str regime,
                              enum cd_dsar_type t, int64_t received_ms,
                              struct cd_dsar_deadlines *out)
{
    const struct cd__dsar_regime *reg = cd__dsar_regime(r, regime);
    enum cd_err err;

    if (reg == NULL || (unsigned)t >= CD_DSAR_TYPE__COUNT)
        return cd_err_set(CD_ERR_NOT_FOUND, "no such regime in the rules");
    const struct cd__dsar_periods *p = &reg->p[t];
    const struct cd_tz *tz = cd_calendar_tz(reg->cal);
    /* Counting the day of receipt as the first day is counting from the end of the day before. */
    int64_t start = received_ms;
    if (reg->answer_counts_receipt_day && p->answer.unit >= CD_PERIOD_DAYS &&
        p->answer.unit <= CD_PERIOD_MONTHS)
        start = cd_tz_instant(tz, cd_tz_day(tz, received_ms), 0) - 1;
    memset(out, 0, sizeof *out);
    out->regime = reg->id;
    if ((err = cd_calendar_period_end(reg->cal, start, &p->answer, &out->answer)) != CD_OK)
        return err;
    if (p->answer.roll_to_business_day) {
        struct cd_period plain = p->answer;
        plain.roll_to_business_day = false;
        if ((err = cd_calendar_period_end(reg->cal, start, &plain, &out->unrolled)) != CD_OK)
            return err;
        if (out->unrolled == out->answer)
            out->unrolled = 0;
    }
    if (p->has_ack &&
        (err = cd_calendar_period_end(reg->cal, received_ms, &p->ack, &out->acknowledge)) != CD_OK)
        return err;
    if (p->has_ext) {
        struct cd_period total = p->answer;
        total.n += p->ext.n;
        if ((err = cd_calendar_period_end(reg->cal, start, &total, &out->extended)) != CD_OK)
            return err;
    }
    return CD_OK;
}

static json_t *period_json(const struct cd_period *p, bool has)
{
    char text[64];

    if (!has)
        return json_null();
    cd_period_format(p, text, sizeof text);
    return json_string(text);
}

enum cd_err cd_dsar_rules_json(const struct cd_dsar_rules *r, json_t **out)
{
    json_t *items = json_array();

    for (size_t i = 0; items && i < r->n; i++) {
        const struct cd__dsar_regime *g = &r->r[i];
        json_t *match = json_array(), *dl = json_object();
        for (size_t j = 0; match && j < g->nmatch; j++)
            if (json_array_append_new(match, json_string(g->match[j])) != 0)
                goto nomem_reg;
        for (int t = 0; dl && t < CD_DSAR_TYPE__COUNT; t++) {
            const struct cd__dsar_periods *p = &g->p[t];
            if (json_object_set_new(
                    dl, type_names[t],
                    json_pack("{s:o,s:o,s:b,s:o}", "acknowledge", period_json(&p->ack, p->has_ack),
                              "answer", period_json(&p->answer, true), "roll_to_business_day",
                              p->answer.roll_to_business_day, "extension",
                              period_json(&p->ext, p->has_ext))) != 0)
                goto nomem_reg;
        }
        if (match == NULL || dl == NULL ||
            json_array_append_new(
                items, json_pack("{s:s,s:s,s:s,s:s,s:s,s:O,s:b,s:b,s:O}", "id", g->id, "name",
                                 g->name, "calendar", cd_calendar_id(g->cal), "authority",
                                 g->authority, "basis", g->basis, "match", match, "default",
                                 g->is_default, "answer_counts_day_of_receipt",
                                 g->answer_counts_receipt_day, "deadlines", dl)) != 0)
            goto nomem_reg;
        json_decref(match);
        json_decref(dl);
        continue;
    nomem_reg:
        json_decref(match);
        json_decref(dl);
        json_decref(items);
        return CD_ERR_NOMEM;
    }
    if (items == NULL)
        return CD_ERR_NOMEM;
    *out = json_pack("{s:o,s:i}", "items", items, "due_soon_days", r->due_soon_days);
    return *out ? CD_OK : CD_ERR_NOMEM;
}
