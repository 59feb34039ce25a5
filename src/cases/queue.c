/* Lists of cases, agents, and the fair queue.
 *
 * The queue serves the case whose earliest running deadline comes first (earliest deadline
 * first), among the cases waiting for an agent in the agent's teams whose skill, if any, the
 * agent has. A deadline comes from the SLA targets of the case's type, priority and channel,
 * and priority comes from the issue, so that is how urgency counts; customer value never
 * enters unless a disclosed value policy is on (it then shows in the priority's factors).
 * Ties go to the higher priority, then to the case waiting longest. The choice and the
 * assignment are one write transaction: two agents asking at once get two different cases
 * (the store's single writer runs one claim after the other, and the claim re-checks that the
 * case is still unassigned, which also holds for several servers on one database). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "audit/audit.h"
#include "cases_int.h"
#include "policy/policy.h"

#define SCAN_MAX 64   /* candidates read per team per claim (SCAN_MAX_TEXT below) */
#define LIST_MAX 200

/* ---- cursors: "<ms>.<id>" in base64url ---- */

void cd__cursor_make(int64_t ms, const char *id, char out[128])
{
    char raw[80];
    int n = snprintf(raw, sizeof raw, "%lld.%s", (long long)ms, id);

    cd_b64url_encode(raw, (size_t)n, out);
}

enum cd_err cd__cursor_parse(struct cd_str c, const char *prefix, int64_t *ms,
                             char id[CD_ID_MAX])
{
    char raw[96];
    size_t n = 0;
    char *dot, *end;

    if (c.len > 120 || cd_b64url_decode(c, raw, sizeof raw - 1, &n) != CD_OK)
        return cd_err_set(CD_ERR_INVALID, "'cursor' is not a cursor this list gave");
    raw[n] = '\0';
    if ((dot = strchr(raw, '.')) == NULL || !cd_id_valid(cd_str_c(dot + 1), prefix))
        return cd_err_set(CD_ERR_INVALID, "'cursor' is not a cursor this list gave");
    *dot = '\0';
    *ms = strtoll(raw, &end, 10);
    if (*end != '\0')
        return cd_err_set(CD_ERR_INVALID, "'cursor' is not a cursor this list gave");
    snprintf(id, CD_ID_MAX, "%s", dot + 1);
    return CD_OK;
}

/* ---- recording reads of many customers in one write ---- */

struct reads_ctx {
    const struct cd_actor *a;
    const char *categories;
    const char (*customers)[CD_ID_MAX];
    const char (*cases)[CD_ID_MAX];
    size_t n;
};

static enum cd_err reads_fn(struct cd_tx *tx, void *ctx)
{
    struct reads_ctx *r = ctx;
    enum cd_err err = CD_OK;

    for (size_t i = 0; i < r->n && err == CD_OK; i++) {
        struct cd_audit_event ev = {.action = "case.read",
                                    .outcome = "ok",
                                    .actor_token = r->a->token_id,
                                    .actor_role = r->a->role,
                                    .actor_name = r->a->name,
                                    .purpose = r->a->purpose,
                                    .request_id = r->a->request_id,
                                    .customer_id = r->customers[i],
                                    .resource_id = r->cases[i],
                                    .categories = r->categories};
        err = cd_audit_append(tx, &ev, NULL);
    }
    return err;
}

/* Records the reads of every case listed, durably, before the list is answered. */
static enum cd_err record_reads(struct cd_cases *cs, const struct cd_actor *a,
                                const struct cd_cases_view *v, struct cd__case *ks, size_t n)
{
    char(*cust)[CD_ID_MAX] = NULL, (*ids)[CD_ID_MAX] = NULL;
    enum cd_err err;

    if (a == NULL || n == 0 || !(v->fields & ~CD_FIELDS_REFERENCE))
        return CD_OK;
    if ((cust = cd_calloc(n, CD_ID_MAX)) == NULL || (ids = cd_calloc(n, CD_ID_MAX)) == NULL) {
        cd_free(cust);
        return CD_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        memcpy(cust[i], ks[i].customer_id, CD_ID_MAX);
        memcpy(ids[i], ks[i].id, CD_ID_MAX);
    }
    struct reads_ctx r = {a,
                          cd_policy_categories(v->fields & (CD_FIELDS_REFERENCE |
                                                            CD_FIELDS_PROFILE)),
                          (const char(*)[CD_ID_MAX])cust, (const char(*)[CD_ID_MAX])ids, n};
    err = cd_store_write(cs->store, reads_fn, &r);
    cd_free(cust);
    cd_free(ids);
    return err;
}

/* ---- lists ---- */

struct list_ctx {
    struct cd_cases *cs;
    const struct cd_cases_query *q;
    const struct cd_cases_view *v;
    int64_t now;
    struct cd__case *ks;
    struct cd__sensitive *sens;
    bool *sens_ok;
    size_t n, max;
    bool more;
    int64_t max_soon; /* the widest due_soon window of any policy, ms */
};

static enum cd_err list_row(void *ctx, const struct cd_val *c, size_t ncols)
{
    struct list_ctx *l = ctx;
    struct cd__case_read r = {l->cs, &l->ks[l->n], false};
    enum cd_err err;

    if (l->n == l->max) {
        l->more = true;
        return CD_OK;
    }
    cd_buf_reset(&l->ks[l->n].sealed);
    if ((err = cd__case_row(&r, c, ncols)) != CD_OK)
        return err;
    /* A due-soon case is one whose own policy's window has begun. */
    if (cd_str_eq_c(l->q->sla, "due_soon")) {
        struct cd__case *k = &l->ks[l->n];
        if (l->now < cd__sla_soon(&k->sla, k->queue_due))
            return CD_OK;
    }
    l->n++;
    return CD_OK;
}

/* The filters every list takes, $2 to $9: each is '' (or the widest bound) when not given.
 * The store caches statements by their text, so the lists are four literal statements: by
 * customer (its index), due soon and breached (theirs), and the rest by creation. */
#define LIST_FILTERS                                                                              \
    " AND ($2 = '' OR status = $2) AND ($3 = '' OR type = $3) AND ($4 = '' OR team = $4)"      \
    " AND ($5 = '' OR assignee = $5) AND ($6 = '' OR incident_id = $6)"                          \
    " AND ($7 = '' OR tags LIKE $7) AND created_at >= $8 AND created_at < $9"
#define BY_CREATION                                                                               \
    " AND (created_at < $10 OR (created_at = $10 AND id < $11))"                                  \
    " ORDER BY created_at DESC, id DESC LIMIT $12"

static const char LIST_BY_CUSTOMER[] = "SELECT " CD__CASE_COLS " FROM cases WHERE"
                                       " customer_id = $1" LIST_FILTERS BY_CREATION;
static const char LIST_ALL[] = "SELECT " CD__CASE_COLS " FROM cases WHERE $1 = ''" LIST_FILTERS
                               BY_CREATION;
static const char LIST_BREACHED[] =
    "SELECT " CD__CASE_COLS " FROM cases WHERE ($1 = '' OR customer_id = $1)" LIST_FILTERS
    " AND resolved_at IS NULL AND closed_at IS NULL AND (breached <> 0 OR watch_at < $13)"
    BY_CREATION;
static const char LIST_DUE_SOON[] =
    "SELECT " CD__CASE_COLS " FROM cases WHERE ($1 = '' OR customer_id = $1)" LIST_FILTERS
    " AND queue_due IS NOT NULL AND queue_due >= $13 AND queue_due < $14"
    " AND (queue_due > $10 OR (queue_due = $10 AND id > $11))"
    " ORDER BY queue_due, id LIMIT $12";

static enum cd_err list_fn(struct cd_tx *tx, void *ctx)
{
    struct list_ctx *l = ctx;
    const struct cd_cases_query *q = l->q;
    char id[CD_ID_MAX] = "", tag[CD__CASES_NAME_MAX + 8] = "";
    int64_t cms = 0;
    enum cd_err err;
    bool soon = cd_str_eq_c(q->sla, "due_soon"), breached = cd_str_eq_c(q->sla, "breached");
    const char *sql = breached ? LIST_BREACHED
                      : soon   ? LIST_DUE_SOON
                      : q->customer_id.len ? LIST_BY_CUSTOMER
                                           : LIST_ALL;

    l->n = 0;
    l->more = false;
    if (q->cursor.len && (err = cd__cursor_parse(q->cursor, "cas", &cms, id)) != CD_OK)
        return err;
    if (!q->cursor.len)
        cms = soon ? INT64_MIN : INT64_MAX;
    /* tags is a JSON array of slugs: a quoted match cannot hit part of another name */
    if (q->tag.len)
        snprintf(tag, sizeof tag, "%%\"%.*s\"%%", (int)q->tag.len, q->tag.p);
    struct cd_val p[] = {CD_VTEXT(q->customer_id),
                         CD_VTEXT(q->status),
                         CD_VTEXT(q->type),
                         CD_VTEXT(q->team),
                         CD_VTEXT(q->assignee),
                         CD_VTEXT(q->incident_id),
                         CD_VCSTR(tag),
                         CD_VINT(q->created_from),
                         CD_VINT(q->created_to ? q->created_to : INT64_MAX),
                         CD_VINT(cms),
                         CD_VCSTR(id),
                         CD_VINT((int64_t)l->max + 1),
                         CD_VINT(l->now),
                         CD_VINT(l->now + l->max_soon)};
    for (size_t i = 0; i < 6; i++)
        if (p[i].p == NULL)
            p[i] = CD_VCSTR("");
    if ((err = cd_tx_exec(tx, sql, p, soon ? 14 : breached ? 13 : 12, list_row, l, NULL)) !=
        CD_OK)
        return err;
    for (size_t i = 0; i < l->n && (l->v->fields & CD_FIELDS_PROFILE); i++)
        if ((err = cd__sensitive_open(l->cs, tx, &l->ks[i], &l->sens[i], &l->sens_ok[i])) !=
            CD_OK)
            return err;
    return CD_OK;
}

static enum cd_err check_query(const struct cd_cases_query *q)
{
    struct { struct cd_str v; const char *const *names; const char *what; } named[] = {
        {q->status, cd__case_statuses, "status"}, {q->type, cd__case_types, "type"}};
    char list[200];

    for (size_t i = 0; i < 2; i++)
        if (named[i].v.len && cd__cases_name_index(named[i].names, named[i].v) < 0)
            return cd_err_set(CD_ERR_INVALID, "'%s' must be %s", named[i].what,
                              cd__cases_name_list(named[i].names, list, sizeof list));
    if ((q->team.len && !cd__cases_slug(q->team)) || (q->tag.len && !cd__cases_slug(q->tag)))
        return cd_err_set(CD_ERR_INVALID, "'team' and 'tag' are names of a-z, 0-9, '-', '_'");
    if (q->sla.len && !cd_str_eq_c(q->sla, "due_soon") && !cd_str_eq_c(q->sla, "breached"))
        return cd_err_set(CD_ERR_INVALID, "'sla' must be due_soon or breached");
    if (q->customer_id.len && !cd_id_valid(q->customer_id, "cus"))
        return cd_err_set(CD_ERR_INVALID, "'customer_id' is not a customer id");
    if (q->assignee.len && !cd_id_valid(q->assignee, "agt"))
        return cd_err_set(CD_ERR_INVALID, "'assignee' is not an agent id");
    if (q->incident_id.len && !cd_id_valid(q->incident_id, "inc"))
        return cd_err_set(CD_ERR_INVALID, "'incident_id' is not an incident id");
    if (q->limit < 1 || q->limit > LIST_MAX)
        return cd_err_set(CD_ERR_INVALID, "'limit' must be 1 to %d", LIST_MAX);
    return CD_OK;
}

enum cd_err cd_cases_list(struct cd_cases *cs, const struct cd_actor *a,
                          const struct cd_cases_query *q, const struct cd_cases_view *v,
                          json_t **out)
{
    struct list_ctx l = {.cs = cs, .q = q, .v = v, .now = cd_now_ms(), .max = (size_t)q->limit};
    json_t *items = NULL, *o = NULL;
    enum cd_err err;

    if ((err = check_query(q)) != CD_OK)
        return err;
    for (size_t i = 0; i < cs->npolicies; i++) {
        struct cd__applied ap = {.due_soon = cs->policies[i].due_soon};
        int64_t w = 0 - cd__sla_soon(&ap, 0);
        if (w > l.max_soon)
            l.max_soon = w;
    }
    if ((l.ks = cd_calloc(l.max, sizeof *l.ks)) == NULL ||
        (l.sens = cd_calloc(l.max, sizeof *l.sens)) == NULL ||
        (l.sens_ok = cd_calloc(l.max, sizeof *l.sens_ok)) == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < l.max; i++)
        cd__case_init(&l.ks[i]);
    if ((err = cd_store_read(cs->store, list_fn, &l)) != CD_OK)
        goto out;
    if ((items = json_array()) == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < l.n; i++) {
        json_t *c = NULL;
        if ((err = cd__case_json(&l.ks[i], l.sens_ok[i] ? &l.sens[i] : NULL, v, l.now, &c)) !=
                CD_OK ||
            (err = json_array_append_new(items, c) ? CD_ERR_NOMEM : CD_OK) != CD_OK)
            goto out;
    }
    char cursor[128];
    bool soon = cd_str_eq_c(q->sla, "due_soon");
    if (l.more && l.n)
        cd__cursor_make(soon ? l.ks[l.n - 1].queue_due : l.ks[l.n - 1].created_at,
                        l.ks[l.n - 1].id, cursor);
    if ((o = json_pack("{s:O,s:o}", "items", items,
                       "next_cursor", l.more && l.n ? json_string(cursor) : json_null())) ==
        NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    if ((err = record_reads(cs, a, v, l.ks, l.n)) != CD_OK)
        goto out;
    *out = o;
    o = NULL;
out:
    json_decref(o);
    json_decref(items);
    for (size_t i = 0; l.ks && i < l.max; i++)
        cd__case_free(&l.ks[i]);
    cd_free(l.ks);
    cd_free(l.sens);
    cd_free(l.sens_ok);
    return err;
}

/* ---- agents ---- */

static json_t *names_json_of(const char (*names)[CD__CASES_NAME_MAX], size_t n)
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_string(names[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

struct agent {
    char id[CD_ID_MAX], token_id[CD_ID_MAX], name[128];
    char teams[CD__CASES_MAX_LIST][CD__CASES_NAME_MAX];
    size_t nteams;
    char skills[16][CD__CASES_NAME_MAX];
    size_t nskills;
    bool active, found;
    int64_t created_at, updated_at;
};

static void names_from(const struct cd_val v, char (*out)[CD__CASES_NAME_MAX], size_t max,
                       size_t *n)
{
    json_t *a = NULL;

    *n = 0;
    if (v.type != CD_VAL_TEXT || cd_json_parse(v.p, v.len, &a) != CD_OK) {
        cd_err_clear();
        return;
    }
    for (size_t i = 0; i < json_array_size(a) && *n < max; i++)
        snprintf(out[(*n)++], CD__CASES_NAME_MAX, "%s",
                 json_string_value(json_array_get(a, i)) ? json_string_value(json_array_get(a, i))
                                                         : "");
    json_decref(a);
}

static enum cd_err agent_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct agent *g = ctx;

    g->found = true;
    snprintf(g->id, sizeof g->id, "%.*s", (int)c[0].len, (const char *)c[0].p);
    snprintf(g->token_id, sizeof g->token_id, "%.*s", (int)c[1].len,
             c[1].type == CD_VAL_TEXT ? (const char *)c[1].p : "");
    snprintf(g->name, sizeof g->name, "%.*s", (int)c[2].len, (const char *)c[2].p);
    names_from(c[3], g->teams, CD__CASES_MAX_LIST, &g->nteams);
    names_from(c[4], g->skills, 16, &g->nskills);
    g->active = c[5].i != 0;
    g->created_at = c[6].i;
    g->updated_at = c[7].i;
    return CD_OK;
}

#define AGENT_COLS "id, token_id, name, teams, skills, active, created_at, updated_at"

/* The agent by id, or by its token (by_token). */
static enum cd_err agent_load(struct cd_tx *tx, bool by_token, struct cd_str v, struct agent *g)
{
    struct cd_val p[] = {CD_VTEXT(v)};

    memset(g, 0, sizeof *g);
    return cd_tx_exec(tx,
                      by_token ? "SELECT " AGENT_COLS " FROM case_agents WHERE token_id = $1"
                               : "SELECT " AGENT_COLS " FROM case_agents WHERE id = $1",
                      p, 1, agent_row, g, NULL);
}

static json_t *agent_json(const struct agent *g)
{
    return json_pack("{s:s,s:o,s:s,s:o,s:o,s:b,s:o,s:o}", "id", g->id, "token_id",
                     g->token_id[0] ? json_string(g->token_id) : json_null(), "name", g->name,
                     "teams", names_json_of(g->teams, g->nteams), "skills",
                     names_json_of(g->skills, g->nskills), "active", g->active, "created_at",
                     cd__time_json(g->created_at), "updated_at", cd__time_json(g->updated_at));
}

struct agent_put {
    struct cd_str id;
    struct agent g;
    char *teams_s, *skills_s;
    bool created;
};

static enum cd_err agent_put_fn(struct cd_tx *tx, void *ctx)
{
    struct agent_put *u = ctx;
    struct agent old;
    int64_t n = 0;
    enum cd_err err;

    u->created = false;
    if (u->g.token_id[0]) {
        struct cd_val q[] = {CD_VCSTR(u->g.token_id), CD_VCSTR(u->g.id)};
        if ((err = cd_tx_int(tx, "SELECT count(*) FROM case_agents WHERE token_id = $1"
                                 " AND id <> $2",
                             q, 2, &n)) != CD_OK)
            return err;
        if (n > 0)
            return cd_err_set(CD_ERR_CONFLICT, "this token is already another agent's");
    }
    if ((err = agent_load(tx, false, cd_str_c(u->g.id), &old)) != CD_OK)
        return err;
    u->created = !old.found;
    u->g.created_at = old.found ? old.created_at : u->g.updated_at;
    struct cd_val p[] = {CD_VCSTR(u->g.id),
                         u->g.token_id[0] ? CD_VCSTR(u->g.token_id) : CD_VNULL,
                         CD_VCSTR(u->g.name),
                         CD_VCSTR(u->teams_s),
                         CD_VCSTR(u->skills_s),
                         CD_VINT(u->g.active),
                         CD_VINT(u->g.created_at),
                         CD_VINT(u->g.updated_at)};
    if ((err = cd_tx_exec(tx, "INSERT INTO case_agents(" AGENT_COLS ")"
                              " VALUES($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT(id) DO UPDATE SET"
                              " token_id = $2, name = $3, teams = $4, skills = $5, active = $6,"
                              " updated_at = $8",
                          p, 8, NULL, NULL, NULL)) != CD_OK)
        return err;
    struct cd_audit_event ev = {.action = u->created ? "agent.create" : "agent.update",
                                .outcome = "ok",
                                .actor_token = "system",
                                .resource_id = u->g.id};
    return cd_audit_append(tx, &ev, NULL);
}

static enum cd_err slug_list(const json_t *body, const char *key, bool required,
                             char (*out)[CD__CASES_NAME_MAX], size_t max, size_t *n)
{
    json_t *a = json_object_get(body, key), *t;
    size_t i;

    *n = 0;
    if (a == NULL)
        return required ? cd_err_set(CD_ERR_INVALID, "'%s' is required", key) : CD_OK;
    if (!json_is_array(a) || json_array_size(a) > max || (required && json_array_size(a) == 0))
        return cd_err_set(CD_ERR_INVALID, "'%s' is a list of %s%zu names", key,
                          required ? "1 to " : "at most ", max);
    json_array_foreach(a, i, t) {
        struct cd_str s = cd_str_c(json_string_value(t));
        if (!json_is_string(t) || !cd__cases_slug(s))
            return cd_err_set(CD_ERR_INVALID, "'%s' holds names of a-z, 0-9, '-' and '_'", key);
        snprintf(out[(*n)++], CD__CASES_NAME_MAX, "%.*s", (int)s.len, s.p);
    }
    return CD_OK;
}

enum cd_err cd_cases_agent_put(struct cd_cases *cs, const struct cd_actor *a, struct cd_str id,
                               const json_t *body, json_t **out, bool *created)
{
    static const char *const allowed[] = {"name", "token_id", "teams", "skills", "active", NULL};
    struct agent_put u = {.id = id};
    struct cd_str name = CD_STR_NULL, tok = CD_STR_NULL;
    json_t *teams = NULL, *skills = NULL;
    bool active = true;
    enum cd_err err;

    (void)a;
    if ((err = cd_json_only(body, allowed)) != CD_OK ||
        (err = cd_json_str(body, "name", true, &name)) != CD_OK ||
        (err = cd_json_str(body, "token_id", false, &tok)) != CD_OK ||
        (err = cd_json_bool(body, "active", false, &active)) != CD_OK ||
        (err = slug_list(body, "teams", true, u.g.teams, CD__CASES_MAX_LIST, &u.g.nteams)) !=
            CD_OK ||
        (err = slug_list(body, "skills", false, u.g.skills, 16, &u.g.nskills)) != CD_OK)
        return err;
    if (name.len == 0 || name.len >= sizeof u.g.name || !cd_utf8_valid(name.p, name.len))
        return cd_err_set(CD_ERR_INVALID, "'name' is 1 to %zu bytes of text", sizeof u.g.name - 1);
    if (tok.p && !cd_id_valid(tok, "tok"))
        return cd_err_set(CD_ERR_INVALID, "'token_id' is a token id (tok_...)");
    if (id.len && !cd_id_valid(id, "agt"))
        return cd_err_set(CD_ERR_NOT_FOUND, "no agent with this id");
    if (id.len)
        snprintf(u.g.id, sizeof u.g.id, "%.*s", (int)id.len, id.p);
    else
        cd_id_new("agt", u.g.id);
    snprintf(u.g.name, sizeof u.g.name, "%.*s", (int)name.len, name.p);
    snprintf(u.g.token_id, sizeof u.g.token_id, "%.*s", (int)tok.len, tok.p ? tok.p : "");
    u.g.active = active;
    u.g.updated_at = cd_now_ms();
    if ((teams = names_json_of(u.g.teams, u.g.nteams)) == NULL ||
        (skills = names_json_of(u.g.skills, u.g.nskills)) == NULL ||
        (err = cd_json_dump(teams, &u.teams_s, NULL)) != CD_OK ||
        (err = cd_json_dump(skills, &u.skills_s, NULL)) != CD_OK) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    if ((err = cd_store_write(cs->store, agent_put_fn, &u)) != CD_OK)
        goto out;
    *created = u.created;
    err = cd_cases_agent_get(cs, cd_str_c(u.g.id), out);
out:
    json_decref(teams);
    json_decref(skills);
    cd_free(u.teams_s);
    cd_free(u.skills_s);
    return err;
}

struct agent_read {
    struct cd_str id;
    struct agent g;
    json_t *items; /* list */
};

static enum cd_err agent_get_fn(struct cd_tx *tx, void *ctx)
{
    struct agent_read *r = ctx;
    return agent_load(tx, false, r->id, &r->g);
}

enum cd_err cd_cases_agent_get(struct cd_cases *cs, struct cd_str id, json_t **out)
{
    struct agent_read r = {.id = id};
    enum cd_err err;

    if (!cd_id_valid(id, "agt"))
        return cd_err_set(CD_ERR_NOT_FOUND, "no agent with this id");
    if ((err = cd_store_read(cs->store, agent_get_fn, &r)) != CD_OK)
        return err;
    if (!r.g.found)
        return cd_err_set(CD_ERR_NOT_FOUND, "no agent with this id");
    return (*out = agent_json(&r.g)) ? CD_OK : CD_ERR_NOMEM;
}

static enum cd_err agent_list_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct agent_read *r = ctx;
    struct agent g;
    json_t *o;

    memset(&g, 0, sizeof g);
    agent_row(&g, c, n);
    if ((o = agent_json(&g)) == NULL || json_array_append_new(r->items, o) != 0)
        return CD_ERR_NOMEM;
    return CD_OK;
}

static enum cd_err agent_list_fn(struct cd_tx *tx, void *ctx)
{
    struct agent_read *r = ctx;

    json_array_clear(r->items);
    return cd_tx_exec(tx, "SELECT " AGENT_COLS " FROM case_agents ORDER BY name, id", NULL, 0,
                      agent_list_row, r, NULL);
}

enum cd_err cd_cases_agent_list(struct cd_cases *cs, json_t **out)
{
    struct agent_read r = {.items = json_array()};
    enum cd_err err;

    if (r.items == NULL)
        return CD_ERR_NOMEM;
    if ((err = cd_store_read(cs->store, agent_list_fn, &r)) != CD_OK) {
        json_decref(r.items);
        return err;
    }
    return (*out = json_pack("{s:o}", "items", r.items)) ? CD_OK : CD_ERR_NOMEM;
}

/* ---- the queue ---- */

/* What the queue order needs of a waiting case: the whole row is read only for the case
 * chosen, so a scan past cases the agent lacks the skills for stays cheap. */
struct cand {
    char id[CD_ID_MAX], skill[CD__CASES_NAME_MAX];
    int64_t rank;
    int priority;
};

struct next_ctx {
    struct cd_cases *cs;
    const struct cd_actor *a;
    struct cd_str agent_id;
    bool claim;
    int64_t now;
    struct agent g;
    struct cd__case k;         /* the case served (loaded once chosen) */
    struct cand best;          /* the case chosen so far */
    bool found;
    long waiting;              /* cases waiting in the agent's teams (a preview counts them) */
    long skipped_skill;        /* ahead of it, but needing a skill the agent lacks */
    /* candidates of the team being read */
    struct cand *cand;
    size_t ncand;
};

static enum cd_err cand_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct next_ctx *x = ctx;
    struct cand *k = &x->cand[x->ncand];

    (void)n;
    if (x->ncand == SCAN_MAX)
        return CD_OK;
    snprintf(k->id, sizeof k->id, "%.*s", (int)c[0].len, (const char *)c[0].p);
    if (c[1].type == CD_VAL_TEXT)
        snprintf(k->skill, sizeof k->skill, "%.*s", (int)c[1].len, (const char *)c[1].p);
    else
        k->skill[0] = '\0';
    k->rank = c[2].i;
    k->priority = (int)c[3].i;
    x->ncand++;
    return CD_OK;
}

static bool has_skill(const struct agent *g, const char *skill)
{
    if (skill[0] == '\0')
        return true;
    for (size_t i = 0; i < g->nskills; i++)
        if (strcmp(g->skills[i], skill) == 0)
            return true;
    return false;
}

/* Earlier in the queue: earlier deadline (the cases_queue index's rank, written by row.c),
 * then more urgent, then older (ids follow time). */
static bool before(const struct cand *a, const struct cand *b)
{
    if (a->rank != b->rank)
        return a->rank < b->rank;
    if (a->priority != b->priority)
        return a->priority < b->priority;
    return strcmp(a->id, b->id) < 0;
}

/* One team's waiting cases in queue order, after (rank, priority, id), a batch at a time. */
#define SCAN_MAX_TEXT "64"
static const char QUEUE_NEXT[] =
    "SELECT id, skill, queue_rank, priority FROM cases WHERE queued = 1 AND team = $1 AND"
    " (queue_rank > $2 OR"
    " (queue_rank = $2 AND (priority > $3 OR (priority = $3 AND id > $4))))"
    " ORDER BY queue_rank, priority, id LIMIT " SCAN_MAX_TEXT;

/* The best case of one team for agent g into x->best (when better than what x holds). Reads
 * in queue order (the cases_queue index) and stops at the first case the agent may take. */
static enum cd_err best_of_team(struct next_ctx *x, struct cd_tx *tx, const char *team)
{
    int64_t rank = -1, prio = 0;
    char last[CD_ID_MAX] = "";
    enum cd_err err;

    if (!x->claim) {
        /* How many wait, exact as the agent looks (one row of the counts every store of a
         * case keeps), for a preview only. */
        long n = 0;
        if ((err = cd__queue_len(x->cs, tx, team, &n)) != CD_OK)
            return err;
        x->waiting += n;
    }
    for (;;) {
        x->ncand = 0;
        struct cd_val p[] = {CD_VCSTR(team), CD_VINT(rank), CD_VINT(prio), CD_VCSTR(last)};
        if ((err = cd_tx_exec(tx, QUEUE_NEXT, p, 4, cand_row, x, NULL)) != CD_OK)
            return err;
        for (size_t i = 0; i < x->ncand; i++) {
            const struct cand *c = &x->cand[i];
            if (x->found && !before(c, &x->best))
                return CD_OK; /* another team's case comes first */
            if (!has_skill(&x->g, c->skill)) {
                x->skipped_skill++;
                continue;
            }
            x->best = *c;
            x->found = true;
            return CD_OK;
        }
        if (x->ncand < SCAN_MAX)
            return CD_OK;
        /* A whole batch needed skills the agent lacks: read on after the last one. */
        const struct cand *e = &x->cand[x->ncand - 1];
        rank = e->rank;
        prio = e->priority;
        snprintf(last, sizeof last, "%s", e->id);
    }
}

static enum cd_err next_fn(struct cd_tx *tx, void *ctx)
{
    struct next_ctx *x = ctx;
    enum cd_err err;

    x->found = false;
    x->waiting = x->skipped_skill = 0;
    if (x->agent_id.len)
        err = agent_load(tx, false, x->agent_id, &x->g);
    else
        err = agent_load(tx, true, cd_str_c(x->a->token_id), &x->g);
    if (err != CD_OK)
        return err;
    if (!x->g.found)
        return cd_err_set(CD_ERR_NOT_FOUND, x->agent_id.len ? "no agent with this id"
                                                            : "this token is no agent's (PUT "
                                                              "/v1/agents/{id} with its token_id)");
    if (!x->g.active)
        return cd_err_set(CD_ERR_CONFLICT, "the agent is not active");
    for (size_t t = 0; t < x->g.nteams; t++)
        if ((err = best_of_team(x, tx, x->g.teams[t])) != CD_OK)
            return err;
    if (!x->found)
        return CD_OK;
    struct cd__case *k = &x->k;
    if ((err = cd__case_load(x->cs, tx, cd_str_c(x->best.id), k)) != CD_OK || !x->claim)
        return err;
    /* The claim: only if still unassigned, in this transaction. */
    int from = k->status;
    snprintf(k->assignee, sizeof k->assignee, "%s", x->g.id);
    if (k->status == CS_NEW &&
        (err = (k->status = CS_OPEN, cd__clocks_apply(k, CE_STATUS, from, x->now, NULL))) !=
            CD_OK)
        return err;
    if ((err = cd__clocks_apply(k, CE_REFRESH, 0, x->now, NULL)) != CD_OK)
        return err;
    k->updated_at = x->now;
    k->version++;
    int64_t changed = 0;
    struct cd_val p[] = {CD_VCSTR(k->id), CD_VCSTR(x->g.id)};
    if ((err = cd_tx_exec(tx, "UPDATE cases SET assignee = $2 WHERE id = $1 AND queued = 1"
                              " AND assignee IS NULL",
                          p, 2, NULL, NULL, &changed)) != CD_OK)
        return err;
    if (changed != 1)
        return cd_err_set(CD_ERR_CONFLICT, "the case was taken meanwhile; ask again");
    json_t *d = json_pack("{s:s,s:o}", "assignee", x->g.id, "deadline",
                          cd__time_json(k->queue_due));
    if (d == NULL)
        return CD_ERR_NOMEM;
    if ((err = cd__case_store(tx, k, false)) == CD_OK)
        err = cd__case_event(tx, x->a, k, "case.claim", d, x->now);
    json_decref(d);
    return err;
}

/* Why the case is next, in words and figures. */
static json_t *why_next(const struct next_ctx *x, const struct cd_cases_view *v)
{
    const struct cd__case *k = &x->k;
    const char *clock = "none";
    char t[CD_TIME_STRLEN], text[600];
    json_t *o, *why = NULL;

    if (k->queue_due == k->fr_due && k->fr_due && !k->fr_at)
        clock = "first_response";
    else if (k->queue_due == k->nr_due && k->nr_due)
        clock = "next_response";
    else if (k->queue_due)
        clock = "resolution";
    cd_time_format(k->queue_due, t);
    if (k->queue_due)
        snprintf(text, sizeof text,
                 "Earliest deadline first: its %s is due %s (%s), the earliest among the cases "
                 "waiting in your teams that you have the skills for (this one is in %s); "
                 "priority %d comes from the issue.",
                 clock, t, x->now >= k->queue_due ? "already overdue" : "not yet due", k->team,
                 k->priority);
    else
        snprintf(text, sizeof text,
                 "No case waiting in your teams has a running deadline; this one has priority %d "
                 "and has waited longest among those of that priority.",
                 k->priority);
    if (cd_json_parse_object(k->priority_why, strlen(k->priority_why), &why) != CD_OK) {
        cd_err_clear();
        why = json_null();
    }
    /* In blind mode the factors an agent sees never include customer value. */
    json_t *factors = json_object_get(why, "factors");
    for (size_t i = json_array_size(factors); !v->value && i > 0; i--)
        if (cd_str_eq_c(cd_str_c(json_string_value(
                            json_object_get(json_array_get(factors, i - 1), "factor"))),
                        "customer_value"))
            json_array_remove(factors, i - 1);
    o = json_pack("{s:s,s:s,s:o,s:o,s:o,s:s,s:i,s:s}", "summary", text, "clock", clock,
                  "deadline", cd__time_json(k->queue_due), "priority", why, "waiting_in_teams",
                  x->claim ? json_null() : json_integer(x->waiting), "order",
                  "deadline, then priority, then time waiting", "skipped_for_skills",
                  (int)x->skipped_skill, "customer_value",
                  x->cs->set.value.on ? "counted under the disclosed policy" : "never counted");
    return o;
}

enum cd_err cd_cases_queue_next(struct cd_cases *cs, const struct cd_actor *a,
                                struct cd_str agent_id, bool claim,
                                const struct cd_cases_view *v, json_t **out)
{
    struct next_ctx x = {.cs = cs, .a = a, .agent_id = agent_id, .claim = claim,
                         .now = cd_now_ms()};
    json_t *c = NULL, *o = NULL;
    enum cd_err err;

    if (agent_id.len && !cd_id_valid(agent_id, "agt"))
        return cd_err_set(CD_ERR_NOT_FOUND, "no agent with this id");
    cd__case_init(&x.k);
    if ((x.cand = cd_calloc(SCAN_MAX, sizeof *x.cand)) == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    /* A lost race (another server claimed it first) is retried with the next case. */
    for (int attempt = 0; attempt < 5; attempt++) {
        err = claim ? cd_store_write(cs->store, next_fn, &x)
                    : cd_store_read(cs->store, next_fn, &x);
        if (err != CD_ERR_CONFLICT || !x.g.found || !x.g.active)
            break;
    }
    if (err != CD_OK)
        goto out;
    if (x.found && (err = cd_cases_get(cs, a, cd_str_c(x.k.id), v, &c)) != CD_OK)
        goto out;
    o = json_pack("{s:o,s:o,s:o,s:b}", "case", c ? c : json_null(), "why",
                  x.found ? why_next(&x, v) : json_null(), "agent",
                  json_pack("{s:s,s:s}", "id", x.g.id, "name", x.g.name), "claimed",
                  claim && x.found);
    c = NULL;
    if (o == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    *out = o;
out:
    json_decref(c);
    cd__case_free(&x.k);
    cd_free(x.cand);
    return err;
}
