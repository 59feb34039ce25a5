/* The names of the case model, the status machine, and the two kinds of data that shape how
 * cases are treated: the settings (RULES/cases/settings.yaml) and the SLA policies
 * (RULES/sla/NAME.yaml). Both are read with the typed YAML helpers, so a mistake is refused with
 * its file and line, and nothing is guessed. */
#include <stdio.h>
#include <string.h>
#include <yaml.h>
#include "cases_int.h"
#include "crypto/crypto.h"

const char *const cd__case_types[CT__COUNT + 1] = {"question", "complaint", "request",
                                                   "incident_follow_up", NULL};
const char *const cd__case_statuses[CS__COUNT + 1] = {
    "new", "open", "pending_customer", "pending_third_party", "resolved", "closed", "reopened",
    NULL};
const char *const cd__case_impacts[CI__COUNT + 1] = {"low", "normal", "high", "critical", NULL};
const char *const cd__case_clocks[CK__COUNT + 1] = {"first_response", "next_response",
                                                    "resolution", NULL};
const char *const cd__case_channels[] = {"email", "sms",  "phone", "chat",      "social",
                                         "app",   "push", "post",  "in_person", NULL};
const char *const cd__case_remedies[] = {"refund", "credit", "apology", "fix", "none", NULL};
const char *const cd__case_outcomes[] = {"upheld",    "partially_upheld", "not_upheld",
                                         "answered",  "fulfilled",        "withdrawn",
                                         "no_response", NULL};
/* The four drivers of vulnerability of the UK FCA's guidance on the fair treatment of
 * vulnerable customers (FG21/1): health, life events, resilience, capability. */
const char *const cd__case_vulnerabilities[] = {"health", "life_event", "resilience",
                                                "capability", NULL};

int cd__cases_name_index(const char *const *list, struct cd_str s)
{
    for (int i = 0; list[i]; i++)
        if (cd_str_eq_c(s, list[i]))
            return i;
    return -1;
}

const char *cd__cases_name_list(const char *const *list, char *buf, size_t n)
{
    size_t len = 0, count = 0;

    while (list[count])
        count++;
    buf[0] = '\0';
    for (size_t i = 0; i < count && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%s", i == 0 ? "" : i + 1 == count ? " or "
                                                                                        : ", ",
                                list[i]);
    return buf;
}

bool cd__cases_slug(struct cd_str s)
{
    if (s.len == 0 || s.len >= CD__CASES_NAME_MAX)
        return false;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* The status machine. A closed case is final: a new message opens a new case. */
bool cd__cases_transition_ok(enum cd__case_status from, enum cd__case_status to)
{
#define B(s) (1u << (s))
    static const unsigned next[CS__COUNT] = {
        [CS_NEW] = B(CS_OPEN) | B(CS_PENDING_CUSTOMER) | B(CS_PENDING_THIRD_PARTY) |
                   B(CS_RESOLVED),
        [CS_OPEN] = B(CS_PENDING_CUSTOMER) | B(CS_PENDING_THIRD_PARTY) | B(CS_RESOLVED),
        [CS_PENDING_CUSTOMER] = B(CS_OPEN) | B(CS_PENDING_THIRD_PARTY) | B(CS_RESOLVED),
        [CS_PENDING_THIRD_PARTY] = B(CS_OPEN) | B(CS_PENDING_CUSTOMER) | B(CS_RESOLVED),
        [CS_RESOLVED] = B(CS_CLOSED) | B(CS_REOPENED),
        [CS_CLOSED] = 0,
        [CS_REOPENED] = B(CS_OPEN) | B(CS_PENDING_CUSTOMER) | B(CS_PENDING_THIRD_PARTY) |
                        B(CS_RESOLVED),
    };
#undef B
    return (unsigned)from < CS__COUNT && (unsigned)to < CS__COUNT && ((next[from] >> to) & 1u);
}

/* ---- conditions ---- */

static bool in_names(const char (*names)[CD__CASES_NAME_MAX], size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (s && strcmp(names[i], s) == 0)
            return true;
    return false;
}

bool cd__when_matches(const struct cd__when *w, const struct cd__case_facts *f)
{
    if (w->types && !((w->types >> f->type) & 1u))
        return false;
    if (w->channels && (f->channel < 0 || !((w->channels >> f->channel) & 1u)))
        return false;
    if (w->priorities && !((w->priorities >> f->priority) & 1u))
        return false;
    if (w->nteams && !in_names(w->teams, w->nteams, f->team))
        return false;
    if (w->ntags) {
        bool any = false;
        for (size_t i = 0; i < f->ntags && !any; i++)
            any = in_names(w->tags, w->ntags, f->tags[i]);
        if (!any)
            return false;
    }
    return true;
}

/* A scalar or a list of scalars, each handed to one(). */
static enum cd_err scalars(const struct cd_yaml *y, yaml_node_t *n, const char *what,
                           enum cd_err (*one)(const struct cd_yaml *y, yaml_node_t *n,
                                              const char *what, void *ctx),
                           void *ctx)
{
    enum cd_err err;

    if (n->type == YAML_SCALAR_NODE)
        return one(y, n, what, ctx);
    if (n->type != YAML_SEQUENCE_NODE)
        return cd_yaml_bad(y, n, "expected a name or a list of names");
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++)
        if ((err = one(y, cd_yaml_node(y, *it), what, ctx)) != CD_OK)
            return err;
    return CD_OK;
}

struct mask_ctx {
    unsigned *mask;
    const char *const *names;
};

static enum cd_err mask_one(const struct cd_yaml *y, yaml_node_t *n, const char *what, void *ctx)
{
    struct mask_ctx *m = ctx;
    char msg[256], list[200];
    int i = cd__cases_name_index(m->names, cd_yaml_scalar(n));

    if (i < 0) {
        snprintf(msg, sizeof msg, "%s must be %s", what,
                 cd__cases_name_list(m->names, list, sizeof list));
        return cd_yaml_bad(y, n, msg);
    }
    *m->mask |= 1u << i;
    return CD_OK;
}

static enum cd_err prio_one(const struct cd_yaml *y, yaml_node_t *n, const char *what, void *ctx)
{
    int64_t v;
    enum cd_err err = cd_yaml_int(y, n, what, 1, 4, &v);

    if (err == CD_OK)
        *(unsigned *)ctx |= 1u << v;
    return err;
}

struct names_ctx {
    char (*names)[CD__CASES_NAME_MAX];
    size_t *n;
};

static enum cd_err name_one(const struct cd_yaml *y, yaml_node_t *n, const char *what, void *ctx)
{
    struct names_ctx *c = ctx;
    struct cd_str s = cd_yaml_scalar(n);
    char msg[160];

    if (!cd__cases_slug(s)) {
        snprintf(msg, sizeof msg, "%s must be a name of a-z, 0-9, '-' and '_' (at most %d)",
                 what, CD__CASES_NAME_MAX - 1);
        return cd_yaml_bad(y, n, msg);
    }
    if (*c->n == CD__CASES_MAX_LIST)
        return cd_yaml_bad(y, n, "too many names in one list (at most 8)");
    memcpy(c->names[*c->n], s.p, s.len);
    c->names[(*c->n)++][s.len] = '\0';
    return CD_OK;
}

static enum cd_err w_types(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                           void *ctx)
{
    struct cd__when *w = ctx;
    struct mask_ctx m = {&w->types, cd__case_types};
    return scalars(y, v, "type", mask_one, &m);
}

static enum cd_err w_channels(const struct cd_yaml *y, yaml_node_t *v,
                              const struct cd_yaml_key *k, void *ctx)
{
    struct cd__when *w = ctx;
    struct mask_ctx m = {&w->channels, cd__case_channels};
    return scalars(y, v, "channel", mask_one, &m);
}

static enum cd_err w_prios(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                           void *ctx)
{
    struct cd__when *w = ctx;
    return scalars(y, v, "priority", prio_one, &w->priorities);
}

static enum cd_err w_tags(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                          void *ctx)
{
    struct cd__when *w = ctx;
    struct names_ctx c = {w->tags, &w->ntags};
    return scalars(y, v, "tags", name_one, &c);
}

static enum cd_err w_teams(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                           void *ctx)
{
    struct cd__when *w = ctx;
    struct names_ctx c = {w->teams, &w->nteams};
    return scalars(y, v, "team", name_one, &c);
}

static enum cd_err parse_when(const struct cd_yaml *y, yaml_node_t *v, const char *what,
                              struct cd__when *w)
{
    static const struct cd_yaml_key keys[] = {
        {"type", false, w_types, 0},     {"channel", false, w_channels, 0},
        {"priority", false, w_prios, 0}, {"tags", false, w_tags, 0},
        {"team", false, w_teams, 0},
    };
    memset(w, 0, sizeof *w);
    return cd_yaml_map(y, v, what, keys, sizeof keys / sizeof keys[0], w);
}

static bool when_empty(const struct cd__when *w)
{
    return !w->types && !w->channels && !w->priorities && !w->ntags && !w->nteams;
}

/* ---- shared value readers ---- */

static enum cd_err read_period(const struct cd_yaml *y, yaml_node_t *v, const char *what,
                               struct cd_period *out)
{
    struct cd_str s;
    enum cd_err err = cd_yaml_str(y, v, what, 64, &s);
    char msg[300];

    if (err != CD_OK)
        return err;
    if (cd_period_parse(s, out) != CD_OK) {
        snprintf(msg, sizeof msg, "%s: %s", what, cd_err_detail());
        return cd_yaml_bad(y, v, msg);
    }
    return CD_OK;
}

static enum cd_err read_name(const struct cd_yaml *y, yaml_node_t *v, const char *what,
                             char out[CD__CASES_NAME_MAX])
{
    size_t n = 0;
    char names[1][CD__CASES_NAME_MAX];
    struct names_ctx c = {names, &n};
    enum cd_err err;

    if (v->type != YAML_SCALAR_NODE)
        return cd_yaml_bad(y, v, "expected one name");
    if ((err = name_one(y, v, what, &c)) == CD_OK)
        memcpy(out, names[0], CD__CASES_NAME_MAX);
    return err;
}

static enum cd_err read_text(const struct cd_yaml *y, yaml_node_t *v, const char *what,
                             char *out, size_t n)
{
    struct cd_str s;
    enum cd_err err = cd_yaml_str(y, v, what, n - 1, &s);

    if (err == CD_OK) {
        memcpy(out, s.p, s.len);
        out[s.len] = '\0';
    }
    return err;
}

/* ---- settings ---- */

void cd__settings_defaults(struct cd__settings *s)
{
    memset(s, 0, sizeof *s);
    s->open_from_inbound = true;
    s->recognise_complaints = true;
    /* push is an outbound channel: nothing a customer sends arrives on it */
    for (int i = 0; cd__case_channels[i]; i++)
        if (strcmp(cd__case_channels[i], "push") != 0)
            s->intake_channels |= 1u << i;
    s->default_type = CT_QUESTION;
    snprintf(s->default_team, sizeof s->default_team, "support");
    s->reopen_window = (struct cd_period){CD_PERIOD_DAYS, 7, false};
    s->base[CT_QUESTION] = 3;
    s->base[CT_COMPLAINT] = 2;
    s->base[CT_REQUEST] = 3;
    s->base[CT_INCIDENT] = 2;
    s->impact_step[CI_LOW] = 1;
    s->impact_step[CI_NORMAL] = 0;
    s->impact_step[CI_HIGH] = -1;
    s->impact_step[CI_CRITICAL] = -2;
    s->vulnerability_step = -1;
    s->blind = true;
    s->eta_min_sample = 20;
    s->eta_max_sample = 2000;
    s->eta_history_days = 365;
}

static enum cd_err s_bool(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                          void *ctx)
{
    return cd_yaml_bool(y, v, k->name, (bool *)((char *)ctx + k->arg));
}

static enum cd_err s_channels(const struct cd_yaml *y, yaml_node_t *v,
                              const struct cd_yaml_key *k, void *ctx)
{
    struct cd__settings *s = ctx;
    struct mask_ctx m = {&s->intake_channels, cd__case_channels};

    s->intake_channels = 0;
    return scalars(y, v, "channels", mask_one, &m);
}

static enum cd_err s_default_type(const struct cd_yaml *y, yaml_node_t *v,
                                  const struct cd_yaml_key *k, void *ctx)
{
    struct cd__settings *s = ctx;
    unsigned mask = 0;
    struct mask_ctx m = {&mask, cd__case_types};
    enum cd_err err;

    if (v->type != YAML_SCALAR_NODE)
        return cd_yaml_bad(y, v, "default_type is one type");
    if ((err = mask_one(y, v, "default_type", &m)) == CD_OK)
        s->default_type = __builtin_ctz(mask);
    return err;
}

static enum cd_err s_default_team(const struct cd_yaml *y, yaml_node_t *v,
                                  const struct cd_yaml_key *k, void *ctx)
{
    return read_name(y, v, "default_team", ((struct cd__settings *)ctx)->default_team);
}

static enum cd_err s_reopen(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                            void *ctx)
{
    return read_period(y, v, "reopen_window", &((struct cd__settings *)ctx)->reopen_window);
}

static enum cd_err s_intake(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                            void *ctx)
{
    static const struct cd_yaml_key keys[] = {
        {"open_from_inbound", false, s_bool, offsetof(struct cd__settings, open_from_inbound)},
        {"recognise_complaints", false, s_bool,
         offsetof(struct cd__settings, recognise_complaints)},
        {"channels", false, s_channels, 0},
        {"default_type", false, s_default_type, 0},
        {"default_team", false, s_default_team, 0},
        {"reopen_window", false, s_reopen, 0},
    };
    return cd_yaml_map(y, v, "intake", keys, sizeof keys / sizeof keys[0], ctx);
}

/* One step or base value of the priority table, at the int k->arg points to. */
static enum cd_err s_int_at(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                            void *ctx)
{
    int64_t n;
    enum cd_err err = cd_yaml_int(y, v, k->name, -3, 4, &n);

    if (err == CD_OK)
        *(int *)((char *)ctx + k->arg) = (int)n;
    return err;
}

static enum cd_err s_base(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                          void *ctx)
{
    struct cd_yaml_key keys[CT__COUNT];
    enum cd_err err;

    for (int i = 0; i < CT__COUNT; i++)
        keys[i] = (struct cd_yaml_key){cd__case_types[i], false, s_int_at,
                                       (intptr_t)(offsetof(struct cd__settings, base) +
                                                  (size_t)i * sizeof(int))};
    if ((err = cd_yaml_map(y, v, "base", keys, CT__COUNT, ctx)) != CD_OK)
        return err;
    for (int i = 0; i < CT__COUNT; i++)
        if (((struct cd__settings *)ctx)->base[i] < 1)
            return cd_yaml_bad(y, v, "a base priority is 1 (most urgent) to 4");
    return CD_OK;
}

static enum cd_err s_impact(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                            void *ctx)
{
    struct cd_yaml_key keys[CI__COUNT];

    for (int i = 0; i < CI__COUNT; i++)
        keys[i] = (struct cd_yaml_key){cd__case_impacts[i], false, s_int_at,
                                       (intptr_t)(offsetof(struct cd__settings, impact_step) +
                                                  (size_t)i * sizeof(int))};
    return cd_yaml_map(y, v, "impact", keys, CI__COUNT, ctx);
}

static enum cd_err tier_item(const struct cd_yaml *y, yaml_node_t *key, yaml_node_t *val,
                             struct cd__settings *s)
{
    int64_t step;
    enum cd_err err;

    if (s->value.n == CD__CASES_MAX_TIERS)
        return cd_yaml_bad(y, key, "too many tiers (at most 16)");
    if ((err = read_name(y, key, "a tier", s->value.tiers[s->value.n])) != CD_OK ||
        (err = cd_yaml_int(y, val, "a tier's step", -3, 0, &step)) != CD_OK)
        return err;
    s->value.steps[s->value.n++] = (int)step;
    return CD_OK;
}

static enum cd_err v_tiers(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                           void *ctx)
{
    struct cd__settings *s = ctx;
    enum cd_err err;

    if (v->type != YAML_MAPPING_NODE)
        return cd_yaml_bad(y, v, "tiers maps a tier name to its step (-3 to 0)");
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++)
        if ((err = tier_item(y, cd_yaml_node(y, p->key), cd_yaml_node(y, p->value), s)) != CD_OK)
            return err;
    return CD_OK;
}

static enum cd_err v_disclosure(const struct cd_yaml *y, yaml_node_t *v,
                                const struct cd_yaml_key *k, void *ctx)
{
    struct cd__settings *s = ctx;
    enum cd_err err = read_text(y, v, "disclosure", s->value.disclosure,
                                sizeof s->value.disclosure);

    /* A disclosure says where customers can read the policy; a few words cannot. */
    if (err == CD_OK && strlen(s->value.disclosure) < 40)
        return cd_yaml_bad(y, v, "disclosure must say, in at least 40 characters, what the "
                                 "policy is and where customers can read it");
    return err;
}

static enum cd_err s_value(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                           void *ctx)
{
    static const struct cd_yaml_key keys[] = {{"tiers", true, v_tiers, 0},
                                              {"disclosure", true, v_disclosure, 0}};
    struct cd__settings *s = ctx;
    enum cd_err err = cd_yaml_map(y, v, "customer_value", keys, 2, ctx);

    s->value.on = err == CD_OK;
    return err;
}

static enum cd_err s_vuln(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                          void *ctx)
{
    int64_t n;
    enum cd_err err = cd_yaml_int(y, v, "vulnerability", -3, 0, &n);

    if (err == CD_OK)
        ((struct cd__settings *)ctx)->vulnerability_step = (int)n;
    return err;
}

static enum cd_err s_priority(const struct cd_yaml *y, yaml_node_t *v,
                              const struct cd_yaml_key *k, void *ctx)
{
    static const struct cd_yaml_key keys[] = {
        {"base", false, s_base, 0},
        {"impact", false, s_impact, 0},
        {"vulnerability", false, s_vuln, 0},
        {"customer_value", false, s_value, 0},
    };
    return cd_yaml_map(y, v, "priority", keys, sizeof keys / sizeof keys[0], ctx);
}

static enum cd_err r_when(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                          void *ctx)
{
    return parse_when(y, v, "when", &((struct cd__route *)ctx)->when);
}

static enum cd_err r_team(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                          void *ctx)
{
    return read_name(y, v, "team", ((struct cd__route *)ctx)->team);
}

static enum cd_err r_skill(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                           void *ctx)
{
    return read_name(y, v, "skill", ((struct cd__route *)ctx)->skill);
}

static enum cd_err route_item(const struct cd_yaml *y, yaml_node_t *item, size_t i, void *ctx)
{
    static const struct cd_yaml_key keys[] = {{"when", true, r_when, 0},
                                              {"team", false, r_team, 0},
                                              {"skill", false, r_skill, 0}};
    struct cd__settings *s = ctx;
    enum cd_err err;

    if (s->nroutes == CD__CASES_MAX_ROUTES)
        return cd_yaml_bad(y, item, "too many routing rules (at most 32)");
    struct cd__route *r = &s->routes[s->nroutes];
    memset(r, 0, sizeof *r);
    if ((err = cd_yaml_map(y, item, "a routing rule", keys, 3, r)) != CD_OK)
        return err;
    if (!r->team[0] && !r->skill[0])
        return cd_yaml_bad(y, item, "a routing rule sets a team, a skill or both");
    s->nroutes++;
    return CD_OK;
}

static enum cd_err s_routing(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                             void *ctx)
{
    ((struct cd__settings *)ctx)->nroutes = 0;
    return cd_yaml_seq(y, v, "routing", route_item, ctx);
}

static enum cd_err s_queue(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                           void *ctx)
{
    static const struct cd_yaml_key keys[] = {
        {"blind", true, s_bool, offsetof(struct cd__settings, blind)}};
    return cd_yaml_map(y, v, "queue", keys, 1, ctx);
}

static enum cd_err e_int(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                         void *ctx)
{
    int64_t n;
    enum cd_err err = cd_yaml_int(y, v, k->name, 1, 100000, &n);

    if (err == CD_OK)
        *(int *)((char *)ctx + k->arg) = (int)n;
    return err;
}

static enum cd_err s_eta(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                         void *ctx)
{
    static const struct cd_yaml_key keys[] = {
        {"min_sample", false, e_int, offsetof(struct cd__settings, eta_min_sample)},
        {"max_sample", false, e_int, offsetof(struct cd__settings, eta_max_sample)},
        {"history_days", false, e_int, offsetof(struct cd__settings, eta_history_days)},
    };
    struct cd__settings *s = ctx;
    enum cd_err err = cd_yaml_map(y, v, "eta", keys, sizeof keys / sizeof keys[0], ctx);

    if (err == CD_OK && s->eta_max_sample < s->eta_min_sample)
        return cd_yaml_bad(y, v, "max_sample must be at least min_sample");
    return err;
}

enum cd_err cd__settings_parse(struct cd__settings *s, const char *name, const char *data,
                               size_t len)
{
    static const struct cd_yaml_key keys[] = {
        {"intake", false, s_intake, 0},   {"priority", false, s_priority, 0},
        {"routing", false, s_routing, 0}, {"queue", false, s_queue, 0},
        {"eta", false, s_eta, 0},
    };
    struct cd_yaml y = {0};
    enum cd_err err;

    if ((err = cd_yaml_parse(&y, name, data, len)) == CD_OK)
        err = cd_yaml_map(&y, cd_yaml_root(&y), "the case settings", keys,
                          sizeof keys / sizeof keys[0], s);
    cd_yaml_free(&y);
    return err;
}

/* ---- SLA policies ---- */

struct policy_load {
    struct cd__sla_policy *p;
    const struct cd_calendars *cals;
    struct cd__sla_target *t; /* the target being read */
};

static enum cd_err p_id(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                        void *ctx)
{
    return read_name(y, v, "id", ((struct policy_load *)ctx)->p->id);
}

static enum cd_err p_name(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                          void *ctx)
{
    struct cd__sla_policy *p = ((struct policy_load *)ctx)->p;
    return read_text(y, v, "name", p->name, sizeof p->name);
}

static enum cd_err p_calendar(const struct cd_yaml *y, yaml_node_t *v,
                              const struct cd_yaml_key *k, void *ctx)
{
    struct policy_load *l = ctx;
    enum cd_err err = read_text(y, v, "calendar", l->p->calendar, sizeof l->p->calendar);

    if (err != CD_OK)
        return err;
    if ((l->p->cal = cd_calendars_find(l->cals, cd_str_c(l->p->calendar))) == NULL)
        return cd_yaml_bad(y, v, "calendar names no loaded calendar (GET /v1/calendars lists "
                                 "them)");
    return CD_OK;
}

static enum cd_err p_applies(const struct cd_yaml *y, yaml_node_t *v,
                             const struct cd_yaml_key *k, void *ctx)
{
    return parse_when(y, v, "applies_to", &((struct policy_load *)ctx)->p->applies);
}

static enum cd_err p_pause(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                           void *ctx)
{
    struct cd__sla_policy *p = ((struct policy_load *)ctx)->p;
    struct mask_ctx m = {&p->pause_on, cd__case_statuses};
    enum cd_err err;

    p->pause_on = 0;
    if ((err = scalars(y, v, "pause_on", mask_one, &m)) != CD_OK)
        return err;
    if (p->pause_on & ~((1u << CS_PENDING_CUSTOMER) | (1u << CS_PENDING_THIRD_PARTY)))
        return cd_yaml_bad(y, v, "pause_on names pending_customer and/or pending_third_party");
    return CD_OK;
}

static enum cd_err p_soon(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                          void *ctx)
{
    struct cd__sla_policy *p = ((struct policy_load *)ctx)->p;
    enum cd_err err = read_period(y, v, "due_soon", &p->due_soon);

    /* Elapsed time, so the due-soon list is one index range whatever each case's calendar. */
    if (err == CD_OK && p->due_soon.unit != CD_PERIOD_MINUTES &&
        p->due_soon.unit != CD_PERIOD_HOURS)
        return cd_yaml_bad(y, v, "due_soon is elapsed time in minutes or hours (\"2 hours\")");
    return err;
}

static enum cd_err t_when(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                          void *ctx)
{
    return parse_when(y, v, "when", &((struct policy_load *)ctx)->t->when);
}

static enum cd_err t_clock(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                           void *ctx)
{
    struct cd__sla_target *t = ((struct policy_load *)ctx)->t;
    enum cd_err err = read_period(y, v, k->name, &t->p[k->arg]);

    if (err == CD_OK && t->p[k->arg].n == 0)
        return cd_yaml_bad(y, v, "a target of zero time is breached as it starts");
    t->has[k->arg] = err == CD_OK;
    return err;
}

static enum cd_err target_item(const struct cd_yaml *y, yaml_node_t *item, size_t i, void *ctx)
{
    static const struct cd_yaml_key keys[] = {
        {"when", true, t_when, 0},
        {"first_response", false, t_clock, CK_FIRST},
        {"next_response", false, t_clock, CK_NEXT},
        {"resolution", false, t_clock, CK_RESOLUTION},
    };
    struct policy_load *l = ctx;
    enum cd_err err;

    if (l->p->ntargets == CD__CASES_MAX_TARGETS)
        return cd_yaml_bad(y, item, "too many targets (at most 32)");
    l->t = &l->p->targets[l->p->ntargets];
    memset(l->t, 0, sizeof *l->t);
    if ((err = cd_yaml_map(y, item, "a target", keys, sizeof keys / sizeof keys[0], l)) !=
        CD_OK)
        return err;
    if (!l->t->has[CK_FIRST] && !l->t->has[CK_NEXT] && !l->t->has[CK_RESOLUTION])
        return cd_yaml_bad(y, item, "a target names at least one of first_response, "
                                    "next_response, resolution");
    l->p->ntargets++;
    return CD_OK;
}

static enum cd_err p_targets(const struct cd_yaml *y, yaml_node_t *v,
                             const struct cd_yaml_key *k, void *ctx)
{
    struct policy_load *l = ctx;
    enum cd_err err = cd_yaml_seq(y, v, "targets", target_item, ctx);

    if (err != CD_OK)
        return err;
    /* Every case the policy applies to gets targets: the last row catches the rest. */
    if (l->p->ntargets == 0 || !when_empty(&l->p->targets[l->p->ntargets - 1].when))
        return cd_yaml_bad(y, v, "the last target must apply to every case (when: {})");
    return CD_OK;
}

enum cd_err cd__sla_policy_parse(struct cd__sla_policy *p, const struct cd_calendars *cals,
                                 const char *name, const char *data, size_t len)
{
    static const struct cd_yaml_key keys[] = {
        {"id", true, p_id, 0},
        {"name", true, p_name, 0},
        {"calendar", true, p_calendar, 0},
        {"applies_to", false, p_applies, 0},
        {"pause_on", false, p_pause, 0},
        {"due_soon", false, p_soon, 0},
        {"targets", true, p_targets, 0},
    };
    struct policy_load l = {p, cals, NULL};
    struct cd_yaml y = {0};
    uint8_t h[CD_CRYPTO_HASH_LEN];
    char hex[2 * CD_CRYPTO_HASH_LEN + 1];
    enum cd_err err;

    memset(p, 0, sizeof *p);
    p->pause_on = 1u << CS_PENDING_CUSTOMER;
    p->due_soon = (struct cd_period){CD_PERIOD_HOURS, 1, false};
    if ((err = cd_yaml_parse(&y, name, data, len)) == CD_OK)
        err = cd_yaml_map(&y, cd_yaml_root(&y), "an SLA policy", keys,
                          sizeof keys / sizeof keys[0], &l);
    cd_yaml_free(&y);
    if (err != CD_OK)
        return err;
    /* The version names the exact text that applied; a case records it. */
    if ((err = cd_crypto_sha256(data, len, h)) != CD_OK)
        return err;
    cd_hex_encode(h, sizeof h, hex);
    memcpy(p->version, hex, sizeof p->version - 1);
    p->version[sizeof p->version - 1] = '\0';
    return CD_OK;
}

/* ---- as JSON ---- */

static json_t *mask_json(unsigned mask, const char *const *names)
{
    json_t *a = json_array();

    for (int i = 0; a && names[i]; i++)
        if ((mask >> i) & 1u)
            json_array_append_new(a, json_string(names[i]));
    return a;
}

static json_t *names_json(const char (*names)[CD__CASES_NAME_MAX], size_t n)
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, json_string(names[i]));
    return a;
}

static json_t *when_json(const struct cd__when *w)
{
    json_t *o = json_object();
    json_t *prios = json_array();

    for (int i = 1; prios && i <= 4; i++)
        if ((w->priorities >> i) & 1u)
            json_array_append_new(prios, json_integer(i));
    if (o == NULL)
        return NULL;
    if (w->types)
        json_object_set_new(o, "type", mask_json(w->types, cd__case_types));
    if (w->channels)
        json_object_set_new(o, "channel", mask_json(w->channels, cd__case_channels));
    if (w->priorities)
        json_object_set_new(o, "priority", prios);
    else
        json_decref(prios);
    if (w->ntags)
        json_object_set_new(o, "tags", names_json(w->tags, w->ntags));
    if (w->nteams)
        json_object_set_new(o, "team", names_json(w->teams, w->nteams));
    return o;
}

static json_t *period_json(const struct cd_period *p)
{
    char t[64];

    cd_period_format(p, t, sizeof t);
    return json_string(t);
}

json_t *cd__policy_json(const struct cd__sla_policy *p)
{
    json_t *targets = json_array();
    json_t *o;

    for (size_t i = 0; targets && i < p->ntargets; i++) {
        const struct cd__sla_target *t = &p->targets[i];
        json_t *row = json_pack("{s:o}", "when", when_json(&t->when));
        for (int c = 0; row && c < CK__COUNT; c++)
            if (t->has[c])
                json_object_set_new(row, cd__case_clocks[c], period_json(&t->p[c]));
        json_array_append_new(targets, row);
    }
    o = json_pack("{s:s,s:s,s:s,s:s,s:o,s:o,s:o,s:o}", "id", p->id, "name", p->name,
                  "version", p->version, "calendar", p->calendar, "applies_to",
                  when_json(&p->applies), "pause_on", mask_json(p->pause_on, cd__case_statuses),
                  "due_soon", period_json(&p->due_soon), "targets", targets);
    return o;
}

enum cd_err cd_cases_policies_json(const struct cd_cases *cs, json_t **out)
{
    const struct cd__settings *s = &cs->set;
    json_t *pol = json_array(), *base = json_object(), *impact = json_object(), *routes =
                                                                                 json_array();
    json_t *o = NULL, *value = NULL;

    if (pol == NULL || base == NULL || impact == NULL || routes == NULL)
        goto fail;
    for (size_t i = 0; i < cs->npolicies; i++)
        if (json_array_append_new(pol, cd__policy_json(&cs->policies[i])) != 0)
            goto fail;
    for (int t = 0; t < CT__COUNT; t++)
        json_object_set_new(base, cd__case_types[t], json_integer(s->base[t]));
    for (int i = 0; i < CI__COUNT; i++)
        json_object_set_new(impact, cd__case_impacts[i], json_integer(s->impact_step[i]));
    for (size_t i = 0; i < s->nroutes; i++)
        json_array_append_new(routes,
                              json_pack("{s:o,s:o,s:o}", "when", when_json(&s->routes[i].when),
                                        "team", s->routes[i].team[0]
                                                    ? json_string(s->routes[i].team)
                                                    : json_null(),
                                        "skill", s->routes[i].skill[0]
                                                     ? json_string(s->routes[i].skill)
                                                     : json_null()));
    if (s->value.on) {
        json_t *tiers = json_object();
        for (size_t i = 0; tiers && i < s->value.n; i++)
            json_object_set_new(tiers, s->value.tiers[i], json_integer(s->value.steps[i]));
        value = json_pack("{s:o,s:s}", "tiers", tiers, "disclosure", s->value.disclosure);
    } else {
        value = json_null();
    }
    char reopen[64];
    cd_period_format(&s->reopen_window, reopen, sizeof reopen);
    o = json_pack("{s:o,s:{s:s,s:o,s:o,s:i,s:o},s:o,s:{s:b,s:s},s:{s:b,s:b,s:s,s:s,s:s,s:o},"
                  "s:{s:i,s:i,s:i}}",
                  "policies", pol, "priority", "scale", "1 (most urgent) to 4", "base", base,
                  "impact", impact, "vulnerability", s->vulnerability_step, "customer_value",
                  value, "routing", routes, "queue", "blind", s->blind, "order",
                  "earliest deadline first within the agent's teams and skills, then priority, "
                  "then time waiting",
                  "intake", "open_from_inbound", s->open_from_inbound, "recognise_complaints",
                  s->recognise_complaints, "default_type", cd__case_types[s->default_type],
                  "default_team", s->default_team, "reopen_window", reopen, "channels",
                  mask_json(s->intake_channels, cd__case_channels), "eta", "min_sample",
                  s->eta_min_sample, "max_sample", s->eta_max_sample, "history_days",
                  s->eta_history_days);
    *out = o;
    return o ? CD_OK : CD_ERR_NOMEM;
fail:
    json_decref(pol);
    json_decref(base);
    json_decref(impact);
    json_decref(routes);
    return CD_ERR_NOMEM;
}
