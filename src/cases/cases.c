/* Opening the module, priority and routing, and the operations on one case: open, read, list,
 * change, link interactions, history. Each change is one store write with its ledger events. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "audit/audit.h"
#include "cases_int.h"
#include "crypto/crypto.h"
#include "policy/policy.h"

/* ---- open / close ---- */

static enum cd_err add_policy(struct cd_cases *cs, const char *name, const char *data,
                              size_t len)
{
    struct cd__sla_policy *p;
    enum cd_err err;

    if (cs->npolicies == CD__CASES_MAX_POLICIES)
        return cd_err_set(CD_ERR_INVALID, "%s: too many SLA policies (at most %d)", name,
                          CD__CASES_MAX_POLICIES);
    p = &cs->policies[cs->npolicies];
    if ((err = cd__sla_policy_parse(p, cs->cals, name, data, len)) != CD_OK)
        return err;
    for (size_t i = 0; i < cs->npolicies; i++)
        if (strcmp(cs->policies[i].id, p->id) == 0)
            return cd_err_set(CD_ERR_INVALID, "%s: an SLA policy with the id '%s' is already "
                                              "loaded",
                              name, p->id);
    cs->npolicies++;
    return CD_OK;
}

static enum cd_err cases_new(struct cd_store *store, struct cd_core *core,
                             const struct cd_calendars *cals, struct cd_cases **out)
{
    struct cd_cases *cs = cd_calloc(1, sizeof *cs);

    if (cs == NULL || (cs->policies = cd_calloc(CD__CASES_MAX_POLICIES,
                                                sizeof *cs->policies)) == NULL) {
        cd_free(cs);
        return CD_ERR_NOMEM;
    }
    cs->store = store;
    cs->core = core;
    cs->cals = cals;
    cs->always = cd_calendars_find(cals, CD_STR("24x7"));
    cd__settings_defaults(&cs->set);
    pthread_mutex_init(&cs->mu, NULL);
    pthread_cond_init(&cs->cv, NULL);
    *out = cs;
    return CD_OK;
}

enum cd_err cd_cases_open_buffers(struct cd_store *store, struct cd_core *core,
                                  const struct cd_calendars *cals, const char *settings,
                                  const char *const *names, const char *const *policies,
                                  size_t n, struct cd_cases **out)
{
    struct cd_cases *cs = NULL;
    enum cd_err err;

    if ((err = cases_new(store, core, cals, &cs)) != CD_OK)
        return err;
    if (settings && (err = cd__settings_parse(&cs->set, "settings.yaml", settings,
                                              strlen(settings))) != CD_OK)
        goto fail;
    for (size_t i = 0; i < n; i++)
        if ((err = add_policy(cs, names[i], policies[i], strlen(policies[i]))) != CD_OK)
            goto fail;
    *out = cs;
    return CD_OK;
fail:
    cd_cases_close(cs);
    return err;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.yaml files of dir in name order; a missing dir has none. */
static enum cd_err yaml_files(const char *dir, char ***names, size_t *n)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t cap = 0;

    *names = NULL;
    *n = 0;
    if (d == NULL)
        return CD_OK;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len <= 5 || e->d_name[0] == '.' || strcmp(e->d_name + len - 5, ".yaml") != 0)
            continue;
        if (*n == cap) {
            char **nn = cd_realloc(*names, (cap = cap ? cap * 2 : 8) * sizeof *nn);
            if (nn == NULL)
                goto nomem;
            *names = nn;
        }
        if (((*names)[*n] = cd_strdup(e->d_name)) == NULL)
            goto nomem;
        (*n)++;
    }
    closedir(d);
    qsort(*names, *n, sizeof **names, cmp_name);
    return CD_OK;
nomem:
    closedir(d);
    return CD_ERR_NOMEM;
}

static enum cd_err load_file(struct cd_cases *cs, const char *path, bool policy)
{
    struct cd_buf b = CD_BUF_INIT(CD__CASES_MAX_FILE);
    enum cd_err err;

    if ((err = cd_buf_read_file(&b, path)) == CD_OK)
        err = policy ? add_policy(cs, path, b.p, b.len)
                     : cd__settings_parse(&cs->set, path, b.p, b.len);
    cd_buf_free(&b);
    return err;
}

enum cd_err cd_cases_open(struct cd_store *store, struct cd_core *core,
                          const struct cd_calendars *cals, const char *rules_dir,
                          struct cd_cases **out)
{
    struct cd_cases *cs = NULL;
    char path[4200], **names = NULL;
    size_t n = 0;
    FILE *f;
    enum cd_err err;

    if ((err = cases_new(store, core, cals, &cs)) != CD_OK)
        return err;
    snprintf(path, sizeof path, "%s/cases/settings.yaml", rules_dir);
    if ((f = fopen(path, "r")) != NULL) {
        fclose(f);
        if ((err = load_file(cs, path, false)) != CD_OK)
            goto out;
    }
    snprintf(path, sizeof path, "%s/sla", rules_dir);
    if ((err = yaml_files(path, &names, &n)) != CD_OK)
        goto out;
    for (size_t i = 0; i < n && err == CD_OK; i++) {
        snprintf(path, sizeof path, "%s/sla/%s", rules_dir, names[i]);
        err = load_file(cs, path, true);
    }
out:
    for (size_t i = 0; i < n; i++)
        cd_free(names[i]);
    cd_free(names);
    if (err != CD_OK) {
        cd_cases_close(cs);
        return err;
    }
    cd_log(CD_LOG_INFO, "cases.loaded", "\"sla_policies\":%zu,\"blind\":%s", cs->npolicies,
           cs->set.blind ? "true" : "false");
    *out = cs;
    return CD_OK;
}

void cd_cases_close(struct cd_cases *cs)
{
    if (cs == NULL)
        return;
    if (cs->sweeper_running) {
        pthread_mutex_lock(&cs->mu);
        cs->stop = true;
        pthread_cond_signal(&cs->cv);
        pthread_mutex_unlock(&cs->mu);
        pthread_join(cs->sweeper, NULL);
    }
    pthread_mutex_destroy(&cs->mu);
    pthread_cond_destroy(&cs->cv);
    cd_free(cs->policies);
    cd_free(cs);
}

bool cd_cases_value_visible(const struct cd_cases *cs, const char *role)
{
    return !(cs->set.blind && role && strcmp(role, "agent") == 0);
}

/* ---- priority and routing ---- */

int cd__priority(const struct cd_cases *cs, int type, int impact, unsigned vulnerability,
                 const char *tier, char *why, size_t n)
{
    const struct cd__settings *s = &cs->set;
    int p = s->base[type];
    size_t len;

    len = (size_t)snprintf(why, n, "{\"factors\":[{\"factor\":\"type\",\"value\":\"%s\","
                                   "\"effect\":\"base %d\"}",
                           cd__case_types[type], s->base[type]);
    if (s->impact_step[impact] != 0 && len < n)
        len += (size_t)snprintf(why + len, n - len,
                                ",{\"factor\":\"impact\",\"value\":\"%s\",\"effect\":%d}",
                                cd__case_impacts[impact], s->impact_step[impact]);
    p += s->impact_step[impact];
    /* The flags themselves are sensitive: the explanation says only that there was one. */
    if (vulnerability && s->vulnerability_step != 0 && len < n) {
        len += (size_t)snprintf(why + len, n - len,
                                ",{\"factor\":\"vulnerability\",\"value\":\"the customer told "
                                "us of circumstances that make them vulnerable\",\"effect\":%d}",
                                s->vulnerability_step);
        p += s->vulnerability_step;
    }
    /* Customer value counts only under a value policy the settings disclose. The tier is
     * personal data kept sealed: the explanation names the policy, not the tier. */
    for (size_t i = 0; s->value.on && tier && tier[0] && i < s->value.n; i++) {
        if (strcmp(s->value.tiers[i], tier) != 0 || s->value.steps[i] == 0)
            continue;
        if (len < n)
            len += (size_t)snprintf(why + len, n - len,
                                    ",{\"factor\":\"customer_value\",\"value\":\"a tier the "
                                    "disclosed value policy ranks higher\",\"effect\":%d,"
                                    "\"policy\":\"disclosed\"}",
                                    s->value.steps[i]);
        p += s->value.steps[i];
    }
    if (p < 1)
        p = 1;
    if (p > 4)
        p = 4;
    if (len < n)
        snprintf(why + len, n - len, "],\"priority\":%d,\"customer_value\":\"%s\"}", p,
                 s->value.on ? "counted under the disclosed policy" : "never counted");
    return p;
}

void cd__route(const struct cd_cases *cs, const struct cd__case_facts *f, char *team, char *skill)
{
    bool have_team = false, have_skill = false;

    team[0] = skill[0] = '\0';
    for (size_t i = 0; i < cs->set.nroutes && !(have_team && have_skill); i++) {
        const struct cd__route *r = &cs->set.routes[i];
        if (!cd__when_matches(&r->when, f))
            continue;
        if (!have_team && r->team[0]) {
            snprintf(team, CD__CASES_NAME_MAX, "%s", r->team);
            have_team = true;
        }
        if (!have_skill && r->skill[0]) {
            snprintf(skill, CD__CASES_NAME_MAX, "%s", r->skill);
            have_skill = true;
        }
    }
    if (!have_team)
        snprintf(team, CD__CASES_NAME_MAX, "%s", cs->set.default_team);
}

static struct cd__case_facts facts_of(const struct cd__case *k)
{
    return (struct cd__case_facts){k->type, k->channel, k->priority, k->team,
                                   (const char(*)[CD__CASES_NAME_MAX])k->tags, k->ntags};
}

enum cd_err cd__case_new(struct cd_cases *cs, struct cd_tx *tx, struct cd__case *k,
                         const struct cd__sensitive *sens, int64_t at)
{
    char team[CD__CASES_NAME_MAX], skill[CD__CASES_NAME_MAX];
    enum cd_err err;

    k->status = CS_NEW;
    k->created_at = k->updated_at = at;
    k->priority = cd__priority(cs, k->type, k->impact, sens ? sens->vulnerability : 0,
                               sens && sens->has_value ? sens->tier : NULL, k->priority_why,
                               sizeof k->priority_why);
    struct cd__case_facts f = facts_of(k);
    cd__route(cs, &f, team, skill);
    if (!k->team[0])
        snprintf(k->team, sizeof k->team, "%s", team);
    if (!k->skill[0])
        snprintf(k->skill, sizeof k->skill, "%s", skill);
    f.team = k->team;
    cd__sla_choose(cs, &f, &k->sla);
    if ((k->queue_len < 0 && (err = cd__queue_len(cs, tx, k->team, &k->queue_len)) != CD_OK) ||
        (err = cd__clocks_apply(k, CE_OPEN, 0, at, NULL)) != CD_OK)
        return err;
    k->version = 1;
    if (sens && (err = cd__sensitive_seal(cs, tx, k, sens, &k->sealed)) != CD_OK)
        return err;
    return cd__case_store(tx, k, true);
}

/* ---- parsing what callers send ---- */

enum cd_err cd__cases_name_member(const json_t *body, const char *key, const char *const *list,
                                  int *out)
{
    struct cd_str s = CD_STR_NULL;
    char names[300];
    enum cd_err err = cd_json_str(body, key, false, &s);

    if (err != CD_OK || s.p == NULL)
        return err;
    if ((*out = cd__cases_name_index(list, s)) < 0)
        return cd_err_set(CD_ERR_INVALID, "'%s' must be %s", key,
                          cd__cases_name_list(list, names, sizeof names));
    return CD_OK;
}

static enum cd_err slug_member(const json_t *body, const char *key, char out[CD__CASES_NAME_MAX])
{
    struct cd_str s = CD_STR_NULL;
    enum cd_err err = cd_json_str(body, key, false, &s);

    if (err != CD_OK || s.p == NULL)
        return err;
    if (!cd__cases_slug(s))
        return cd_err_set(CD_ERR_INVALID, "'%s' is a name of a-z, 0-9, '-' and '_' (at most %d)",
                          key, CD__CASES_NAME_MAX - 1);
    memcpy(out, s.p, s.len);
    out[s.len] = '\0';
    return CD_OK;
}

static enum cd_err tags_member(const json_t *body, struct cd__case *k)
{
    json_t *a = json_object_get(body, "tags");
    size_t i;
    json_t *t;

    if (a == NULL)
        return CD_OK;
    if (!json_is_array(a) || json_array_size(a) > CD__CASES_MAX_TAGS)
        return cd_err_set(CD_ERR_INVALID, "'tags' is a list of at most %d names",
                          CD__CASES_MAX_TAGS);
    k->ntags = 0;
    json_array_foreach(a, i, t) {
        struct cd_str s = cd_str_c(json_string_value(t));
        if (!json_is_string(t) || !cd__cases_slug(s))
            return cd_err_set(CD_ERR_INVALID, "'tags' holds names of a-z, 0-9, '-' and '_'");
        bool dup = false;
        for (size_t j = 0; j < k->ntags && !dup; j++)
            dup = cd_str_eq_c(s, k->tags[j]);
        if (!dup)
            snprintf(k->tags[k->ntags++], CD__CASES_NAME_MAX, "%.*s", (int)s.len, s.p);
    }
    return CD_OK;
}

static bool currency_ok(struct cd_str s)
{
    if (s.len != 3)
        return false;
    for (size_t i = 0; i < 3; i++)
        if (s.p[i] < 'A' || s.p[i] > 'Z')
            return false;
    return true;
}

/* "vulnerability" and "customer_value" into *s (changed tells which were given). */
static enum cd_err sensitive_members(const json_t *body, struct cd__sensitive *s, bool *changed)
{
    json_t *flags = json_object_get(body, "vulnerability");
    json_t *val = json_object_get(body, "customer_value");
    char names[200];
    size_t i;
    json_t *t;
    enum cd_err err;

    if (flags) {
        if (!json_is_array(flags))
            return cd_err_set(CD_ERR_INVALID, "'vulnerability' is a list of %s",
                              cd__cases_name_list(cd__case_vulnerabilities, names, sizeof names));
        s->vulnerability = 0;
        json_array_foreach(flags, i, t) {
            int f = cd__cases_name_index(cd__case_vulnerabilities, cd_str_c(json_string_value(t)));
            if (f < 0)
                return cd_err_set(CD_ERR_INVALID, "'vulnerability' holds %s",
                                  cd__cases_name_list(cd__case_vulnerabilities, names,
                                                      sizeof names));
            s->vulnerability |= 1u << f;
        }
        *changed = true;
    }
    if (val == NULL)
        return CD_OK;
    *changed = true;
    s->has_value = false;
    s->tier[0] = '\0';
    s->has_spend = false;
    if (json_is_null(val))
        return CD_OK;
    static const char *const allowed[] = {"tier", "spend_minor", "currency", NULL};
    struct cd_str tier = CD_STR_NULL, cur = CD_STR_NULL;
    int64_t spend = -1;
    if (!json_is_object(val) || (err = cd_json_only(val, allowed)) != CD_OK ||
        (err = cd_json_str(val, "tier", false, &tier)) != CD_OK ||
        (err = cd_json_int(val, "spend_minor", false, &spend)) != CD_OK ||
        (err = cd_json_str(val, "currency", false, &cur)) != CD_OK)
        return cd_err_set(CD_ERR_INVALID, "'customer_value' is {\"tier\", \"spend_minor\", "
                                          "\"currency\"}");
    if (tier.p && !cd__cases_slug(tier))
        return cd_err_set(CD_ERR_INVALID, "'customer_value.tier' is a name of a-z, 0-9, '-', '_'");
    if (json_object_get(val, "spend_minor") && (spend < 0 || !cur.p || !currency_ok(cur)))
        return cd_err_set(CD_ERR_INVALID, "'customer_value.spend_minor' is a whole number of "
                                          "minor units, 0 or more, with a 'currency' (ISO 4217)");
    s->has_value = true;
    if (tier.p)
        snprintf(s->tier, sizeof s->tier, "%.*s", (int)tier.len, tier.p);
    if (spend >= 0) {
        s->has_spend = true;
        s->spend_minor = spend;
        snprintf(s->currency, sizeof s->currency, "%.*s", (int)cur.len, cur.p);
    }
    return CD_OK;
}

/* ---- reads, and recording them ---- */

/* A read of the case's customer beyond reference fields (categories per view): checked by
 * core's read gate (a restriction of processing, or missing consent for the purpose, refuses
 * it and is recorded) and recorded durably before the data leaves. */
static enum cd_err record_read(struct cd_cases *cs, const struct cd_actor *a,
                               const char *customer_id, const struct cd_cases_view *v)
{
    char resolved[CD_ID_MAX];

    if (a == NULL || !(v->fields & ~CD_FIELDS_REFERENCE))
        return CD_OK;
    return cd_core_customer_read_gate(cs->core, a, cd_str_c(customer_id), "case.read",
                                      cd_policy_categories(v->fields & (CD_FIELDS_REFERENCE |
                                                                        CD_FIELDS_PROFILE)),
                                      resolved);
}

struct link_row {
    json_t *items;
};

static enum cd_err link_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct link_row *l = ctx;
    char id[CD_ID_MAX], dir[16];
    json_t *o;

    snprintf(id, sizeof id, "%.*s", (int)c[0].len, (const char *)c[0].p);
    snprintf(dir, sizeof dir, "%.*s", (int)c[1].len, (const char *)c[1].p);
    if ((o = json_pack("{s:s,s:s,s:o}", "id", id, "direction", dir, "occurred_at",
                       cd__time_json(c[2].i))) == NULL ||
        json_array_append_new(l->items, o) != 0)
        return CD_ERR_NOMEM;
    return CD_OK;
}

struct get_ctx {
    struct cd_cases *cs;
    struct cd_str id;
    const struct cd_cases_view *v;
    struct cd__case k;
    struct cd__sensitive sens;
    bool sens_ok;
    json_t *links;
};

static enum cd_err get_fn(struct cd_tx *tx, void *ctx)
{
    struct get_ctx *g = ctx;
    struct link_row l;
    enum cd_err err;

    if ((err = cd__case_load(g->cs, tx, g->id, &g->k)) != CD_OK)
        return err;
    if ((g->v->fields & CD_FIELDS_PROFILE) &&
        (err = cd__sensitive_open(g->cs, tx, &g->k, &g->sens, &g->sens_ok)) != CD_OK)
        return err;
    json_array_clear(g->links);
    l.items = g->links;
    struct cd_val p[] = {CD_VCSTR(g->k.id)};
    return cd_tx_exec(tx, "SELECT interaction_id, direction, occurred_at FROM case_interactions"
                          " WHERE case_id = $1 ORDER BY occurred_at, interaction_id",
                      p, 1, link_row, &l, NULL);
}

/* The case as cd_cases_get answers it, read in its own transaction. */
static enum cd_err answer(struct cd_cases *cs, struct cd_str id, const struct cd_cases_view *v,
                          json_t **out, char customer_id[CD_ID_MAX])
{
    struct get_ctx g = {.cs = cs, .id = id, .v = v};
    enum cd_err err;

    cd__case_init(&g.k);
    if ((g.links = json_array()) == NULL)
        return CD_ERR_NOMEM;
    if ((err = cd_store_read(cs->store, get_fn, &g)) != CD_OK ||
        (err = cd__case_json(&g.k, g.sens_ok ? &g.sens : NULL, v, cd_now_ms(), out)) !=
            CD_OK)
        goto out;
    if (cd_json_set_new(*out, "interactions", g.links) != CD_OK) {
        g.links = NULL;
        json_decref(*out);
        *out = NULL;
        err = CD_ERR_NOMEM;
        goto out;
    }
    g.links = NULL;
    if ((v->fields & CD_FIELDS_PROFILE) && !g.sens_ok &&
        cd_json_set_new(*out, "sensitive", json_string("erased")) != CD_OK)
        err = CD_ERR_NOMEM;
    if (customer_id)
        snprintf(customer_id, CD_ID_MAX, "%s", g.k.customer_id);
out:
    json_decref(g.links);
    cd__case_free(&g.k);
    return err;
}

enum cd_err cd_cases_get(struct cd_cases *cs, const struct cd_actor *a, struct cd_str id,
                         const struct cd_cases_view *v, json_t **out)
{
    char customer[CD_ID_MAX];
    json_t *o = NULL;
    enum cd_err err;

    if ((err = answer(cs, id, v, &o, customer)) != CD_OK)
        return err;
    if ((err = record_read(cs, a, customer, v)) != CD_OK) {
        json_decref(o);
        return err;
    }
    *out = o;
    return CD_OK;
}

struct owner_ctx {
    struct cd_str id;
    char *customer_id;
    bool found;
};

static enum cd_err owner_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct owner_ctx *o = ctx;

    o->found = true;
    snprintf(o->customer_id, CD_ID_MAX, "%.*s", (int)c[0].len, (const char *)c[0].p);
    return CD_OK;
}

static enum cd_err owner_fn(struct cd_tx *tx, void *ctx)
{
    struct owner_ctx *o = ctx;
    struct cd_val p[] = {CD_VTEXT(o->id)};

    return cd_tx_exec(tx, "SELECT customer_id FROM cases WHERE id = $1", p, 1, owner_row, o,
                      NULL);
}

enum cd_err cd_cases_customer(struct cd_cases *cs, struct cd_str id, char customer_id[CD_ID_MAX])
{
    struct owner_ctx o = {id, customer_id, false};
    enum cd_err err;

    if (!cd_id_valid(id, "cas"))
        return cd_err_set(CD_ERR_NOT_FOUND, "no case with this id");
    if ((err = cd_store_read(cs->store, owner_fn, &o)) != CD_OK)
        return err;
    return o.found ? CD_OK : cd_err_set(CD_ERR_NOT_FOUND, "no case with this id");
}

/* ---- create ---- */

struct create_ctx {
    struct cd_cases *cs;
    const struct cd_actor *a;
    const struct cd_idem *idem;
    struct cd__case k;
    struct cd__sensitive sens;
    bool has_sens;
    struct cd_str customer_in;
    json_t *interactions; /* borrowed from the body */
    char replay_id[CD_ID_MAX];
    int64_t now;
};

/* Links each interaction of the list (ids of k's customer) to k; an outbound one made after
 * the case opened answers it. */
static enum cd_err link_list(struct cd_tx *tx, struct cd__case *k, const json_t *ids,
                             int64_t *last_in, int64_t *last_out)
{
    size_t i;
    json_t *t;
    enum cd_err err;

    json_array_foreach(ids, i, t) {
        char owner[CD_ID_MAX], dir[16];
        int64_t at = 0;
        int64_t n = 0;
        if ((err = cd_core_interaction_facts(tx, cd_str_c(json_string_value(t)), owner, dir,
                                             &at)) != CD_OK ||
            strcmp(owner, k->customer_id) != 0)
            return cd_err_set(CD_ERR_NOT_FOUND, "'interactions'[%zu] is no interaction of this "
                                                "case's customer",
                              i);
        /* An interaction belongs to one case that is still open at a time. */
        struct cd_val p[] = {CD_VCSTR(json_string_value(t)), CD_VCSTR(k->id)};
        if ((err = cd_tx_int(tx, "SELECT count(*) FROM case_interactions ci JOIN cases c"
                                 " ON c.id = ci.case_id WHERE ci.interaction_id = $1"
                                 " AND ci.case_id <> $2 AND c.closed_at IS NULL"
                                 " AND c.resolved_at IS NULL",
                             p, 2, &n)) != CD_OK)
            return err;
        if (n > 0)
            return cd_err_set(CD_ERR_CONFLICT, "'interactions'[%zu] already belongs to another "
                                               "open case",
                              i);
        if ((err = cd__case_link(tx, k->id, json_string_value(t), dir, at)) != CD_OK)
            return err;
        int64_t *last = strcmp(dir, "outbound") == 0 ? last_out : last_in;
        if (at > *last)
            *last = at;
    }
    return CD_OK;
}

static enum cd_err create_fn(struct cd_tx *tx, void *ctx)
{
    struct create_ctx *c = ctx;
    struct cd__case *k = &c->k;
    bool merged = false;
    enum cd_core_customer_state state;
    int64_t last_in = 0, last_out = 0;
    json_t *data = NULL;
    enum cd_err err;

    if ((err = cd_core_idem_check(c->cs->core, tx, c->idem, c->replay_id)) != CD_OK ||
        c->replay_id[0])
        return err;
    if ((err = cd_core_customer_resolve(tx, c->customer_in, k->customer_id, &merged, &state)) !=
        CD_OK)
        return err;
    if (state == CD_CORE_CUSTOMER_UNKNOWN)
        return cd_err_set(CD_ERR_NOT_FOUND, "no customer with the id in 'customer_id'");
    if (state == CD_CORE_CUSTOMER_ERASED)
        return cd_err_set(CD_ERR_CONFLICT, "the customer was erased");
    cd_id_new("cas", k->id);
    snprintf(k->source, sizeof k->source, "api");
    if ((err = cd__case_new(c->cs, tx, k, c->has_sens ? &c->sens : NULL, c->now)) != CD_OK)
        return err;
    if (c->interactions && (err = link_list(tx, k, c->interactions, &last_in, &last_out)) != CD_OK)
        return err;
    if (last_out >= k->opened_at && last_out &&
        ((err = cd__clocks_apply(k, CE_OUTBOUND, 0, last_out, NULL)) != CD_OK ||
         (err = cd__case_store(tx, k, false)) != CD_OK))
        return err;
    if ((data = json_pack("{s:s,s:s,s:i,s:s}", "type", cd__case_types[k->type], "status",
                          cd__case_statuses[k->status], "priority", k->priority, "team",
                          k->team)) == NULL)
        return CD_ERR_NOMEM;
    err = cd__case_event(tx, c->a, k, "case.create", data, c->now);
    json_decref(data);
    if (err != CD_OK)
        return err;
    return cd_core_idem_record(c->cs->core, tx, c->idem, k->id);
}

enum cd_err cd_cases_create(struct cd_cases *cs, const struct cd_actor *a, const json_t *body,
                            const struct cd_idem *idem, const struct cd_cases_view *v,
                            json_t **out, bool *replayed)
{
    static const char *const allowed[] = {"customer_id", "type", "impact", "channel", "team",
                                          "skill", "tags", "vulnerability", "customer_value",
                                          "interactions", NULL};
    struct create_ctx c = {.cs = cs, .a = a, .idem = idem, .now = cd_now_ms()};
    enum cd_err err;

    cd__case_init(&c.k);
    c.k.type = cs->set.default_type;
    c.k.impact = CI_NORMAL;
    c.k.channel = 0;
    if ((err = cd_json_only(body, allowed)) != CD_OK ||
        (err = cd_json_str(body, "customer_id", true, &c.customer_in)) != CD_OK ||
        (err = cd__cases_name_member(body, "type", cd__case_types, &c.k.type)) != CD_OK ||
        (err = cd__cases_name_member(body, "impact", cd__case_impacts, &c.k.impact)) != CD_OK ||
        (err = cd__cases_name_member(body, "channel", cd__case_channels, &c.k.channel)) != CD_OK ||
        (err = slug_member(body, "team", c.k.team)) != CD_OK ||
        (err = slug_member(body, "skill", c.k.skill)) != CD_OK ||
        (err = tags_member(body, &c.k)) != CD_OK ||
        (err = sensitive_members(body, &c.sens, &c.has_sens)) != CD_OK ||
        (err = cd_json_arr(body, "interactions", false, &c.interactions)) != CD_OK)
        goto out;
    if (json_array_size(c.interactions) > 100) {
        err = cd_err_set(CD_ERR_INVALID, "'interactions' lists at most 100 ids");
        goto out;
    }
    if ((err = cd_store_write(cs->store, create_fn, &c)) != CD_OK)
        goto out;
    *replayed = c.replay_id[0] != '\0';
    err = cd_cases_get(cs, a, cd_str_c(*replayed ? c.replay_id : c.k.id), v, out);
out:
    cd__case_free(&c.k);
    return err;
}

/* ---- update ---- */

struct update_ctx {
    struct cd_cases *cs;
    const struct cd_actor *a;
    struct cd_str id;
    const json_t *patch;
    int64_t now;
};

static json_t *change(json_t *changes, const char *key, json_t *from, json_t *to)
{
    if (changes && from && to)
        json_object_set_new(changes, key, json_pack("[oo]", from, to));
    else {
        json_decref(from);
        json_decref(to);
    }
    return changes;
}

static json_t *str_or_null(const char *s)
{
    return s && s[0] ? json_string(s) : json_null();
}

/* Checks that agent id names an active agent, inside tx. */
static enum cd_err agent_exists(struct cd_tx *tx, const char *id)
{
    int64_t n = 0;
    struct cd_val p[] = {CD_VCSTR(id)};
    enum cd_err err = cd_tx_int(tx, "SELECT count(*) FROM case_agents WHERE id = $1", p, 1, &n);

    if (err == CD_OK && n == 0)
        return cd_err_set(CD_ERR_NOT_FOUND, "'assignee' names no agent");
    return err;
}

/* The remedy of a patch into k. */
static enum cd_err remedy_member(const json_t *patch, struct cd__case *k, json_t *changes)
{
    static const char *const allowed[] = {"type", "amount_minor", "currency", NULL};
    json_t *r = json_object_get(patch, "remedy");
    struct cd_str cur = CD_STR_NULL;
    int64_t amount = -1;
    int type = -1;
    enum cd_err err;

    if (r == NULL)
        return CD_OK;
    if (!json_is_object(r) || (err = cd_json_only(r, allowed)) != CD_OK ||
        (err = cd__cases_name_member(r, "type", cd__case_remedies, &type)) != CD_OK ||
        (err = cd_json_int(r, "amount_minor", false, &amount)) != CD_OK ||
        (err = cd_json_str(r, "currency", false, &cur)) != CD_OK || type < 0)
        return cd_err_set(CD_ERR_INVALID, "'remedy' is {\"type\": refund, credit, apology, fix "
                                          "or none, \"amount_minor\"?, \"currency\"?}");
    bool money = type == 0 || type == 1;
    if (money && (amount <= 0 || !cur.p || !currency_ok(cur)))
        return cd_err_set(CD_ERR_INVALID, "a refund or credit has an 'amount_minor' above 0 and "
                                          "a 'currency' (ISO 4217, e.g. EUR)");
    if (!money && (json_object_get(r, "amount_minor") || cur.p))
        return cd_err_set(CD_ERR_INVALID, "only a refund or credit has an amount");
    change(changes, "remedy", k->remedy >= 0 ? json_string(cd__case_remedies[k->remedy])
                                             : json_null(),
           json_string(cd__case_remedies[type]));
    k->remedy = type;
    k->has_amount = money;
    k->remedy_amount = money ? amount : 0;
    snprintf(k->remedy_currency, sizeof k->remedy_currency, "%.*s", (int)cur.len,
             cur.p ? cur.p : "");
    return CD_OK;
}

static enum cd_err status_change(struct cd__case *k, int to, int64_t now, json_t *changes,
                                 unsigned *breached)
{
    int from = k->status;

    if (to == from)
        return CD_OK;
    if (!cd__cases_transition_ok(from, to))
        return cd_err_set(CD_ERR_INVALID, "a case cannot go from %s to %s",
                          cd__case_statuses[from], cd__case_statuses[to]);
    if (to == CS_RESOLVED && (k->remedy < 0 || k->outcome < 0))
        return cd_err_set(CD_ERR_INVALID, "resolving a case records its 'remedy' and its "
                                          "'outcome' (given now or before)");
    change(changes, "status", json_string(cd__case_statuses[from]),
           json_string(cd__case_statuses[to]));
    k->status = to;
    return cd__clocks_apply(k, CE_STATUS, from, now, breached);
}

static enum cd_err patch_members(struct update_ctx *u, struct cd_tx *tx, struct cd__case *k,
                                 struct cd__sensitive *s, bool *sens_changed, json_t *changes,
                                 int *status_to)
{
    const json_t *p = u->patch;
    int type = k->type, impact = k->impact, outcome = -1;
    char team[CD__CASES_NAME_MAX] = "", skill[CD__CASES_NAME_MAX] = "";
    enum cd_err err;

    if ((err = cd__cases_name_member(p, "status", cd__case_statuses, status_to)) != CD_OK ||
        (err = cd__cases_name_member(p, "type", cd__case_types, &type)) != CD_OK ||
        (err = cd__cases_name_member(p, "impact", cd__case_impacts, &impact)) != CD_OK ||
        (err = cd__cases_name_member(p, "outcome", cd__case_outcomes, &outcome)) != CD_OK ||
        (err = slug_member(p, "team", team)) != CD_OK ||
        (err = remedy_member(p, k, changes)) != CD_OK)
        return err;
    if (json_is_null(json_object_get(p, "skill"))) {
        change(changes, "skill", str_or_null(k->skill), json_null());
        k->skill[0] = '\0';
    } else if ((err = slug_member(p, "skill", skill)) != CD_OK) {
        return err;
    } else if (skill[0]) {
        change(changes, "skill", str_or_null(k->skill), json_string(skill));
        snprintf(k->skill, sizeof k->skill, "%s", skill);
    }
    if (type != k->type)
        change(changes, "type", json_string(cd__case_types[k->type]),
               json_string(cd__case_types[type]));
    if (impact != k->impact)
        change(changes, "impact", json_string(cd__case_impacts[k->impact]),
               json_string(cd__case_impacts[impact]));
    k->type = type;
    k->impact = impact;
    if (outcome >= 0) {
        change(changes, "outcome", k->outcome >= 0 ? json_string(cd__case_outcomes[k->outcome])
                                                   : json_null(),
               json_string(cd__case_outcomes[outcome]));
        k->outcome = outcome;
    }
    if (team[0] && strcmp(team, k->team) != 0) {
        change(changes, "team", json_string(k->team), json_string(team));
        snprintf(k->team, sizeof k->team, "%s", team);
    }
    if (json_object_get(p, "tags")) {
        json_t *before = json_array();
        for (size_t i = 0; before && i < k->ntags; i++)
            json_array_append_new(before, json_string(k->tags[i]));
        if ((err = tags_member(p, k)) != CD_OK) {
            json_decref(before);
            return err;
        }
        json_t *after = json_array();
        for (size_t i = 0; after && i < k->ntags; i++)
            json_array_append_new(after, json_string(k->tags[i]));
        change(changes, "tags", before, after);
    }
    json_t *as = json_object_get(p, "assignee");
    if (as) {
        struct cd_str who = cd_str_c(json_string_value(as));
        if (!json_is_null(as) && (!json_is_string(as) || !cd_id_valid(who, "agt")))
            return cd_err_set(CD_ERR_INVALID, "'assignee' is an agent id or null");
        if (who.p && (err = agent_exists(tx, json_string_value(as))) != CD_OK)
            return err;
        change(changes, "assignee", str_or_null(k->assignee), str_or_null(who.p));
        snprintf(k->assignee, sizeof k->assignee, "%s", who.p ? who.p : "");
    }
    if ((err = sensitive_members(p, s, sens_changed)) != CD_OK)
        return err;
    if (*sens_changed)
        change(changes, "sensitive", json_string("before"), json_string("changed"));
    return CD_OK;
}

static enum cd_err update_fn(struct cd_tx *tx, void *ctx)
{
    struct update_ctx *u = ctx;
    struct cd__case k;
    struct cd__sensitive s;
    bool sens_ok = true, sens_changed = false;
    int status_to = -1;
    unsigned breached = 0, b2 = 0;
    json_t *changes = json_object(), *data = NULL;
    int64_t version = -1;
    struct cd_str reason = CD_STR_NULL;
    enum cd_err err;

    cd__case_init(&k);
    if (changes == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    if ((err = cd__case_load(u->cs, tx, u->id, &k)) != CD_OK ||
        (err = cd_json_int(u->patch, "version", false, &version)) != CD_OK ||
        (err = cd_json_str(u->patch, "reason", false, &reason)) != CD_OK)
        goto out;
    if (version >= 0 && version != k.version) {
        err = cd_err_set(CD_ERR_CONFLICT, "the case changed since version %lld (it is at %ld "
                                          "now): read it again",
                         (long long)version, k.version);
        goto out;
    }
    if (k.status == CS_CLOSED) {
        err = cd_err_set(CD_ERR_CONFLICT, "the case is closed; a new message opens a new case");
        goto out;
    }
    if ((err = cd__sensitive_open(u->cs, tx, &k, &s, &sens_ok)) != CD_OK)
        goto out;
    int prio_before = k.priority, type_before = k.type;
    char team_before[CD__CASES_NAME_MAX];
    snprintf(team_before, sizeof team_before, "%s", k.team);
    if ((err = patch_members(u, tx, &k, &s, &sens_changed, changes, &status_to)) != CD_OK)
        goto out;
    if (sens_changed && !sens_ok) {
        err = cd_err_set(CD_ERR_CONFLICT, "the customer was erased");
        goto out;
    }
    /* Priority comes from the issue; a change of type, impact or the flags re-ranks it. */
    k.priority = cd__priority(u->cs, k.type, k.impact, s.vulnerability,
                              s.has_value ? s.tier : NULL, k.priority_why,
                              sizeof k.priority_why);
    if (k.priority != prio_before)
        change(changes, "priority", json_integer(prio_before), json_integer(k.priority));
    if (k.type != type_before || k.priority != prio_before || strcmp(team_before, k.team)) {
        struct cd__case_facts f = facts_of(&k);
        cd__sla_choose(u->cs, &f, &k.sla);
        if ((err = cd__clocks_apply(&k, CE_RETARGET, 0, u->now, NULL)) != CD_OK)
            goto out;
    }
    /* A case someone takes is open: it no longer waits in the queue as new. */
    if (status_to < 0 && k.status == CS_NEW && k.assignee[0])
        status_to = CS_OPEN;
    if (status_to >= 0 && (err = status_change(&k, status_to, u->now, changes, &breached)) !=
                              CD_OK)
        goto out;
    if (json_object_size(changes) == 0) {
        err = CD_OK; /* nothing to change: no write, no event */
        goto out;
    }
    if (sens_changed && (err = cd__sensitive_seal(u->cs, tx, &k, &s, &k.sealed)) != CD_OK)
        goto out;
    if ((err = cd__clocks_apply(&k, CE_REFRESH, 0, u->now, &b2)) != CD_OK)
        goto out;
    k.updated_at = u->now;
    k.version++;
    if ((data = json_pack("{s:O}", "changes", changes)) == NULL ||
        (reason.p && cd_json_set_strn(data, "reason", reason.p,
                                      reason.len > 500 ? 500 : reason.len) != CD_OK)) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    const char *action = status_to == CS_RESOLVED   ? "case.resolve"
                         : status_to == CS_REOPENED ? "case.reopen"
                         : status_to == CS_CLOSED   ? "case.close"
                                                    : "case.update";
    if ((err = cd__case_store(tx, &k, false)) != CD_OK ||
        (err = cd__case_event(tx, u->a, &k, action, data, u->now)) != CD_OK)
        goto out;
    err = cd__case_breaches(tx, &k, breached | b2, u->now);
out:
    json_decref(changes);
    json_decref(data);
    cd__case_free(&k);
    return err;
}

enum cd_err cd_cases_update(struct cd_cases *cs, const struct cd_actor *a, struct cd_str id,
                            const json_t *patch, const struct cd_cases_view *v, json_t **out)
{
    static const char *const allowed[] = {"status", "type", "impact", "team", "skill",
                                          "assignee", "tags", "vulnerability", "customer_value",
                                          "remedy", "outcome", "reason", "version", NULL};
    struct update_ctx u = {cs, a, id, patch, cd_now_ms()};
    struct cd_str reason = CD_STR_NULL;
    enum cd_err err;

    if ((err = cd_json_only(patch, allowed)) != CD_OK ||
        (err = cd_json_str(patch, "reason", false, &reason)) != CD_OK)
        return err;
    if (reason.len > 500)
        return cd_err_set(CD_ERR_INVALID, "'reason' has at most 500 characters");
    if ((err = cd_store_write(cs->store, update_fn, &u)) != CD_OK)
        return err;
    return cd_cases_get(cs, a, id, v, out);
}

/* ---- links ---- */

struct link_ctx {
    struct cd_cases *cs;
    const struct cd_actor *a;
    struct cd_str id;
    const json_t *ids;
    int64_t now;
};

static enum cd_err link_fn(struct cd_tx *tx, void *ctx)
{
    struct link_ctx *l = ctx;
    struct cd__case k;
    int64_t last_in = 0, last_out = 0;
    unsigned breached = 0;
    json_t *data = NULL;
    enum cd_err err;

    cd__case_init(&k);
    if ((err = cd__case_load(l->cs, tx, l->id, &k)) != CD_OK)
        goto out;
    if (k.status == CS_CLOSED) {
        err = cd_err_set(CD_ERR_CONFLICT, "the case is closed");
        goto out;
    }
    if ((err = link_list(tx, &k, l->ids, &last_in, &last_out)) != CD_OK)
        goto out;
    /* In the order they happened: a message before an answer asks, one after it asks again. */
    if (last_in && last_in >= k.opened_at && last_in > last_out &&
        (err = cd__clocks_apply(&k, CE_INBOUND, 0, last_in, NULL)) != CD_OK)
        goto out;
    if (last_out && last_out >= k.opened_at &&
        (err = cd__clocks_apply(&k, CE_OUTBOUND, 0, last_out, &breached)) != CD_OK)
        goto out;
    if (last_in > last_out && last_out && last_in >= k.opened_at &&
        (err = cd__clocks_apply(&k, CE_INBOUND, 0, last_in, NULL)) != CD_OK)
        goto out;
    k.updated_at = l->now;
    k.version++;
    if ((data = json_pack("{s:O}", "interactions", l->ids)) == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    if ((err = cd__case_store(tx, &k, false)) != CD_OK ||
        (err = cd__case_event(tx, l->a, &k, "case.link", data, l->now)) != CD_OK)
        goto out;
    err = cd__case_breaches(tx, &k, breached, l->now);
out:
    json_decref(data);
    cd__case_free(&k);
    return err;
}

enum cd_err cd_cases_link(struct cd_cases *cs, const struct cd_actor *a, struct cd_str id,
                          const json_t *body, const struct cd_cases_view *v, json_t **out)
{
    static const char *const allowed[] = {"interactions", NULL};
    struct link_ctx l = {cs, a, id, NULL, cd_now_ms()};
    json_t *ids = NULL;
    enum cd_err err;

    if ((err = cd_json_only(body, allowed)) != CD_OK ||
        (err = cd_json_arr(body, "interactions", true, &ids)) != CD_OK)
        return err;
    if (json_array_size(ids) == 0 || json_array_size(ids) > 100)
        return cd_err_set(CD_ERR_INVALID, "'interactions' lists 1 to 100 interaction ids");
    l.ids = ids;
    if ((err = cd_store_write(cs->store, link_fn, &l)) != CD_OK)
        return err;
    return cd_cases_get(cs, a, id, v, out);
}

/* ---- history ---- */

struct events_ctx {
    struct cd_cases *cs;
    struct cd_str id;
    json_t *items;
    bool found;
};

static enum cd_err event_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct events_ctx *e = ctx;
    json_t *data = NULL, *o;
    char action[64], actor[CD_ID_MAX];

    snprintf(action, sizeof action, "%.*s", (int)c[2].len, (const char *)c[2].p);
    snprintf(actor, sizeof actor, "%.*s", (int)c[3].len, (const char *)c[3].p);
    if (cd_json_parse(c[4].p, c[4].len, &data) != CD_OK)
        data = json_null();
    cd_err_clear();
    o = json_pack("{s:I,s:o,s:s,s:s,s:o,s:o}", "seq", (json_int_t)c[0].i, "at",
                  cd__time_json(c[1].i), "action", action, "actor", actor, "data", data,
                  "audit_seq", c[5].type == CD_VAL_INT ? json_integer(c[5].i) : json_null());
    if (o == NULL || json_array_append_new(e->items, o) != 0)
        return CD_ERR_NOMEM;
    return CD_OK;
}

static enum cd_err events_fn(struct cd_tx *tx, void *ctx)
{
    struct events_ctx *e = ctx;
    int64_t n = 0;
    struct cd_val p[] = {CD_VTEXT(e->id)};
    enum cd_err err;

    json_array_clear(e->items);
    if ((err = cd_tx_int(tx, "SELECT count(*) FROM cases WHERE id = $1", p, 1, &n)) != CD_OK)
        return err;
    if (n == 0)
        return cd_err_set(CD_ERR_NOT_FOUND, "no case with this id");
    return cd_tx_exec(tx, "SELECT seq, at, action, actor, data, audit_seq FROM case_events"
                          " WHERE case_id = $1 ORDER BY seq",
                      p, 1, event_row, e, NULL);
}

enum cd_err cd_cases_events(struct cd_cases *cs, struct cd_str id, json_t **out)
{
    struct events_ctx e = {cs, id, json_array(), false};
    enum cd_err err;

    if (e.items == NULL)
        return CD_ERR_NOMEM;
    if (!cd_id_valid(id, "cas")) {
        json_decref(e.items);
        return cd_err_set(CD_ERR_NOT_FOUND, "no case with this id");
    }
    if ((err = cd_store_read(cs->store, events_fn, &e)) != CD_OK) {
        json_decref(e.items);
        return err;
    }
    *out = json_pack("{s:o}", "items", e.items);
    return *out ? CD_OK : CD_ERR_NOMEM;
}

/* ---- merges ---- */

enum cd_err cd__cases_id_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct cd__id_list *l = ctx;

    (void)n;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char(*ids)[CD_ID_MAX] = cd_realloc(l->ids, cap * sizeof *ids);
        if (ids == NULL)
            return CD_ERR_NOMEM;
        l->ids = ids;
        l->cap = cap;
    }
    snprintf(l->ids[l->n++], CD_ID_MAX, "%.*s", (int)c[0].len, (const char *)c[0].p);
    return CD_OK;
}

enum cd_err cd_cases_customer_merged(struct cd_cases *cs, struct cd_tx *tx, const char *merged,
                                     const char *survivor, const struct cd_core_vault *from,
                                     const struct cd_core_vault *to)
{
    struct cd__id_list m = {NULL, 0, 0};
    struct cd_buf plain = CD_BUF_INIT(8192), sealed = CD_BUF_INIT(16384);
    enum cd_err err;

    struct cd_val p[] = {CD_VCSTR(merged)};
    if ((err = cd_tx_exec(tx, "SELECT id FROM cases WHERE customer_id = $1", p, 1, cd__cases_id_row,
                          &m, NULL)) != CD_OK)
        goto out;
    for (size_t i = 0; i < m.n; i++) {
        struct cd__case k;
        bool present = false;
        char field[CD_ID_MAX + 16];
        cd__case_init(&k);
        if ((err = cd__case_load(cs, tx, cd_str_c(m.ids[i]), &k)) == CD_OK &&
            k.sealed.len) {
            snprintf(field, sizeof field, "cases.sealed:%s", k.id);
            struct cd_val sv = CD_VBLOB(k.sealed.p, k.sealed.len);
            if ((err = cd_core_vault_unseal(from, field, sv, &plain, &present)) == CD_OK &&
                present)
                err = cd_core_vault_seal(to, field, (struct cd_str){plain.p, plain.len}, &sealed);
        }
        if (err == CD_OK) {
            struct cd_val u[] = {CD_VCSTR(k.id), CD_VCSTR(survivor),
                                 k.sealed.len && present ? CD_VBLOB(sealed.p, sealed.len)
                                                         : CD_VNULL};
            err = cd_tx_exec(tx, "UPDATE cases SET customer_id = $2, sealed = $3,"
                                 " version = version + 1 WHERE id = $1",
                             u, 3, NULL, NULL, NULL);
        }
        if (err == CD_OK) {
            snprintf(k.customer_id, sizeof k.customer_id, "%s", survivor);
            json_t *d = json_pack("{s:s,s:s}", "merged", merged, "survivor", survivor);
            err = d ? cd__case_event(tx, NULL, &k, "case.customer_merged", d, cd_now_ms())
                    : CD_ERR_NOMEM;
            json_decref(d);
        }
        cd__case_free(&k);
        if (err != CD_OK)
            goto out;
    }
    /* The incidents that affected the merged customer affect the survivor (once each). */
    struct cd_val q[] = {CD_VCSTR(merged), CD_VCSTR(survivor)};
    if ((err = cd_tx_exec(tx, "UPDATE incident_customers SET customer_id = $2"
                              " WHERE customer_id = $1 AND incident_id NOT IN (SELECT incident_id"
                              " FROM incident_customers WHERE customer_id = $2)",
                          q, 2, NULL, NULL, NULL)) != CD_OK ||
        (err = cd_tx_exec(tx, "DELETE FROM incident_customers WHERE customer_id = $1", q, 1,
                          NULL, NULL, NULL)) != CD_OK)
        goto out;
out:
    if (plain.p)
        cd_crypto_wipe(plain.p, plain.len);
    cd_buf_free(&plain);
    cd_buf_free(&sealed);
    cd_free(m.ids);
    return err;
}
