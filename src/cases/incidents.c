/* Incidents: one event (an outage, a billing error, a data breach) that touches many customers.
 * An incident links the customers it affects (a list of ids, or a query over their cases), opens
 * an incident follow-up case for each (or keeps the one already open for it), and records, for
 * each customer, whether they were told, on which channel and when — or why not yet.
 *
 * Telling is decided per customer when a notice is asked for: a legal notice (an incident whose
 * notice the law requires, e.g. a personal data breach likely to result in a high risk, GDPR
 * Art. 34) goes out whatever the customer's preferences; any other notice is a service message
 * and goes out only when the consent engine allows the service purpose on that channel now — so
 * a customer's quiet hours defer it (the sweeper tells them once the quiet hours end) and an
 * objection withholds it. Each notice told is a case history row with its ledger entry and an
 * incident.notice event on the outbox, which the sending system receives by webhook; all three in
 * the same transaction as the record that the customer was told. */
#include "audit/audit.h"
#include "cases_int.h"
#include "consent/consent.h"
#include "outbox/outbox.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AFFECT_BATCH 250     /* customers per write transaction */
#define AFFECT_LIST_MAX 1000 /* ids in one request */
#define AFFECT_QUERY_MAX 1000000
#define NOTIFY_BATCH 250
#define INC_TITLE_MAX 200
#define INC_TEXT_MAX 4000

const char *const cd__incident_kinds[] = {"outage",   "billing_error", "data_breach",
                                          "security", "other",         NULL};
const char *const cd__incident_statuses[] = {"open", "monitoring", "resolved", NULL};
enum { I_OPEN, I_MONITORING, I_RESOLVED };
/* What became of the notice to one customer. */
static const char *const notice_states[] = {"pending", "told", "deferred", "withheld", NULL};
enum { N_PENDING, N_TOLD, N_DEFERRED, N_WITHHELD };

void cd_cases_set_consent(struct cd_cases *cs, struct cd_consent *consent)
{
    cs->consent = consent;
}

/* ---- the incident row ---- */

struct incident {
    char id[CD_ID_MAX];
    int kind, status, severity, channel;
    char title[INC_TITLE_MAX + 1];
    char *description; /* cd_malloc'ed, may be NULL */
    char team[CD__CASES_NAME_MAX];
    char tags[CD__CASES_MAX_TAGS][CD__CASES_NAME_MAX];
    size_t ntags;
    bool legal;
    char legal_basis[256];
    int64_t started_at, created_at, updated_at, resolved_at;
    long version;
    bool found;
};

#define INC_COLS                                                                                   \
    "id, kind, status, severity, channel, title, description, team, tags, legal_notice,"           \
    " legal_basis, started_at, created_at, updated_at, resolved_at, version"

static void text_into(const struct cd_val *v, char *out, size_t n)
{
    if (v->type == CD_VAL_TEXT)
        snprintf(out, n, "%.*s", (int)v->len, (const char *)v->p);
    else
        out[0] = '\0';
}

static int name_of(const char *const *list, const struct cd_val *v)
{
    return v->type == CD_VAL_TEXT ? cd__cases_name_index(list, (struct cd_str){v->p, v->len}) : -1;
}

static enum cd_err incident_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct incident *x = ctx;
    char tags[CD__CASES_MAX_TAGS * (CD__CASES_NAME_MAX + 3) + 8];
    json_t *t = NULL;

    (void)n;
    text_into(&c[0], x->id, sizeof x->id);
    x->kind = name_of(cd__incident_kinds, &c[1]);
    x->status = name_of(cd__incident_statuses, &c[2]);
    x->severity = name_of(cd__case_impacts, &c[3]);
    x->channel = name_of(cd__case_channels, &c[4]);
    text_into(&c[5], x->title, sizeof x->title);
    cd_free(x->description);
    x->description = NULL;
    if (c[6].type == CD_VAL_TEXT && (x->description = cd_strndup(c[6].p, c[6].len)) == NULL)
        return CD_ERR_NOMEM;
    text_into(&c[7], x->team, sizeof x->team);
    text_into(&c[8], tags, sizeof tags);
    x->ntags = 0;
    if ((t = json_loads(tags, 0, NULL)) != NULL) {
        size_t i;
        json_t *v;
        json_array_foreach(t, i, v)
        {
            if (x->ntags < CD__CASES_MAX_TAGS)
                snprintf(x->tags[x->ntags++], CD__CASES_NAME_MAX, "%s", json_string_value(v));
        }
    }
    json_decref(t);
    x->legal = c[9].i != 0;
    text_into(&c[10], x->legal_basis, sizeof x->legal_basis);
    x->started_at = c[11].i;
    x->created_at = c[12].i;
    x->updated_at = c[13].i;
    x->resolved_at = c[14].type == CD_VAL_INT ? c[14].i : 0;
    x->version = (long)c[15].i;
    x->found = true;
    return CD_OK;
}

static enum cd_err incident_load(struct cd_tx *tx, struct cd_str id, struct incident *x)
{
    enum cd_err err;

    x->found = false;
    if (!cd_id_valid(id, "inc"))
        return cd_err_set(CD_ERR_NOT_FOUND, "no incident with this id");
    struct cd_val p[] = {CD_VTEXT(id)};
    if ((err = cd_tx_exec(tx, "SELECT " INC_COLS " FROM incidents WHERE id = $1", p, 1,
                          incident_row, x, NULL)) != CD_OK)
        return err;
    return x->found ? CD_OK : cd_err_set(CD_ERR_NOT_FOUND, "no incident with this id");
}

static enum cd_err tags_text(const struct incident *x, char **out)
{
    json_t *a = json_array();
    enum cd_err err = a ? CD_OK : CD_ERR_NOMEM;

    for (size_t i = 0; i < x->ntags && err == CD_OK; i++)
        if (json_array_append_new(a, json_string(x->tags[i])) != 0)
            err = CD_ERR_NOMEM;
    if (err == CD_OK)
        err = cd_json_dump(a, out, NULL);
    json_decref(a);
    return err;
}

static enum cd_err incident_store(struct cd_tx *tx, const struct incident *x, bool insert)
{
    char *tags = NULL;
    enum cd_err err;

    if ((err = tags_text(x, &tags)) != CD_OK)
        return err;
    struct cd_val p[] = {CD_VCSTR(x->id),
                         CD_VCSTR(cd__incident_kinds[x->kind]),
                         CD_VCSTR(cd__incident_statuses[x->status]),
                         CD_VCSTR(cd__case_impacts[x->severity]),
                         CD_VCSTR(cd__case_channels[x->channel]),
                         CD_VCSTR(x->title),
                         x->description ? CD_VCSTR(x->description) : CD_VNULL,
                         x->team[0] ? CD_VCSTR(x->team) : CD_VNULL,
                         CD_VCSTR(tags),
                         CD_VINT(x->legal),
                         x->legal_basis[0] ? CD_VCSTR(x->legal_basis) : CD_VNULL,
                         CD_VINT(x->started_at),
                         CD_VINT(x->created_at),
                         CD_VINT(x->updated_at),
                         x->resolved_at ? CD_VINT(x->resolved_at) : CD_VNULL,
                         CD_VINT(x->version)};
    err = cd_tx_exec(tx,
                     insert ? "INSERT INTO incidents(" INC_COLS ") VALUES($1,$2,$3,$4,$5,$6,$7,$8,"
                              "$9,$10,$11,$12,$13,$14,$15,$16)"
                            : "UPDATE incidents SET kind = $2, status = $3, severity = $4,"
                              " channel = $5, title = $6, description = $7, team = $8, tags = $9,"
                              " legal_notice = $10, legal_basis = $11, started_at = $12,"
                              " created_at = $13, updated_at = $14, resolved_at = $15,"
                              " version = $16 WHERE id = $1",
                     p, 16, NULL, NULL, NULL);
    cd_free(tags);
    return err;
}

/* A ledger entry about the incident itself (no customer). */
static enum cd_err incident_audit(struct cd_tx *tx, const struct cd_actor *a, const char *action,
                                  const char *id)
{
    struct cd_audit_event ev = {.action = action,
                                .outcome = "ok",
                                .actor_token = a ? a->token_id : "system",
                                .actor_role = a ? a->role : "system",
                                .actor_name = a ? a->name : NULL,
                                .request_id = a ? a->request_id : NULL,
                                .resource_id = id};
    return cd_audit_append(tx, &ev, NULL);
}

/* ---- counts and the answer ---- */

struct counts {
    long by_state[4], cases;
};

static enum cd_err count_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct counts *k = ctx;
    int s = name_of(notice_states, &c[0]);

    (void)n;
    if (s >= 0)
        k->by_state[s] = (long)c[1].i;
    return CD_OK;
}

static enum cd_err counts_of(struct cd_tx *tx, const char *id, struct counts *k)
{
    enum cd_err err;
    int64_t cases = 0;

    memset(k, 0, sizeof *k);
    struct cd_val p[] = {CD_VCSTR(id)};
    if ((err = cd_tx_exec(tx,
                          "SELECT notice_status, count(*) FROM incident_customers"
                          " WHERE incident_id = $1 GROUP BY notice_status",
                          p, 1, count_row, k, NULL)) != CD_OK ||
        (err = cd_tx_int(tx, "SELECT count(*) FROM cases WHERE incident_id = $1", p, 1, &cases)) !=
            CD_OK)
        return err;
    k->cases = (long)cases;
    return CD_OK;
}

static json_t *tags_json(const struct incident *x)
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < x->ntags; i++)
        json_array_append_new(a, json_string(x->tags[i]));
    return a;
}

static json_t *incident_json(const struct incident *x, const struct counts *k)
{
    long affected = k->by_state[0] + k->by_state[1] + k->by_state[2] + k->by_state[3];
    json_t *o = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:s,s:o,s:o,s:o,s:{s:b,s:o},s:o,s:o,s:o,s:o,s:i,"
        "s:{s:i,s:i,s:i,s:i,s:i,s:i}}",
        "id", x->id, "kind", cd__incident_kinds[x->kind], "status",
        cd__incident_statuses[x->status], "severity", cd__case_impacts[x->severity], "channel",
        cd__case_channels[x->channel], "title", x->title, "description",
        x->description ? json_string(x->description) : json_null(), "team",
        x->team[0] ? json_string(x->team) : json_null(), "tags", tags_json(x), "legal_notice",
        "required", x->legal, "basis",
        x->legal_basis[0] ? json_string(x->legal_basis) : json_null(), "started_at",
        cd__time_json(x->started_at), "created_at", cd__time_json(x->created_at), "updated_at",
        cd__time_json(x->updated_at), "resolved_at",
        x->resolved_at ? cd__time_json(x->resolved_at) : json_null(), "version", (int)x->version,
        "customers", "affected", (int)affected, "cases", (int)k->cases, "told",
        (int)k->by_state[N_TOLD], "deferred", (int)k->by_state[N_DEFERRED], "withheld",
        (int)k->by_state[N_WITHHELD], "not_yet_told", (int)k->by_state[N_PENDING]);
    return o;
}

struct get_ctx {
    struct cd_str id;
    struct incident x;
    struct counts k;
};

static enum cd_err get_fn(struct cd_tx *tx, void *ctx)
{
    struct get_ctx *g = ctx;
    enum cd_err err = incident_load(tx, g->id, &g->x);

    return err == CD_OK ? counts_of(tx, g->x.id, &g->k) : err;
}

enum cd_err cd_cases_incident_get(struct cd_cases *cs, struct cd_str id, json_t **out)
{
    struct get_ctx g = {.id = id};
    enum cd_err err = cd_store_read(cs->store, get_fn, &g);

    if (err == CD_OK && (*out = incident_json(&g.x, &g.k)) == NULL)
        err = CD_ERR_NOMEM;
    cd_free(g.x.description);
    return err;
}

/* ---- create and change ---- */

static enum cd_err text_in(const json_t *body, const char *key, size_t max, char *out, size_t n,
                           bool required)
{
    struct cd_str s = CD_STR_NULL;
    enum cd_err err = cd_json_str(body, key, required, &s);

    if (err != CD_OK || s.p == NULL)
        return err;
    if (s.len == 0 || s.len > max || s.len >= n || !cd_utf8_valid(s.p, s.len))
        return cd_err_set(CD_ERR_INVALID, "'%s' is 1 to %zu bytes of text", key, max);
    memcpy(out, s.p, s.len);
    out[s.len] = '\0';
    return CD_OK;
}

/* The members a create or a change may set, over x. */
static enum cd_err incident_members(const json_t *body, struct incident *x, bool create)
{
    struct cd_str desc = CD_STR_NULL, team = CD_STR_NULL;
    json_t *legal = NULL, *tags = NULL;
    enum cd_err err;

    if ((err = cd__cases_name_member(body, "kind", cd__incident_kinds, &x->kind)) != CD_OK ||
        (err = cd__cases_name_member(body, "severity", cd__case_impacts, &x->severity)) != CD_OK ||
        (err = cd__cases_name_member(body, "channel", cd__case_channels, &x->channel)) != CD_OK ||
        (err = text_in(body, "title", INC_TITLE_MAX, x->title, sizeof x->title, create)) != CD_OK ||
        (err = cd_json_str(body, "description", false, &desc)) != CD_OK ||
        (err = cd_json_str(body, "team", false, &team)) != CD_OK ||
        (err = cd_json_arr(body, "tags", false, &tags)) != CD_OK ||
        (err = cd_json_obj(body, "legal_notice", false, &legal)) != CD_OK)
        return err;
    if (create && x->kind < 0)
        return cd_err_set(CD_ERR_INVALID, "'kind' is required");
    if (desc.p) {
        if (desc.len > INC_TEXT_MAX || !cd_utf8_valid(desc.p, desc.len))
            return cd_err_set(CD_ERR_INVALID, "'description' is at most %d bytes of text",
                              INC_TEXT_MAX);
        cd_free(x->description);
        if ((x->description = cd_strndup(desc.p, desc.len)) == NULL)
            return CD_ERR_NOMEM;
    }
    if (team.p) {
        if (!cd__cases_slug(team))
            return cd_err_set(CD_ERR_INVALID, "'team' is a name of a-z, 0-9, '-' and '_'");
        snprintf(x->team, sizeof x->team, "%.*s", (int)team.len, team.p);
    }
    if (tags) {
        size_t i;
        json_t *t;
        if (json_array_size(tags) > CD__CASES_MAX_TAGS)
            return cd_err_set(CD_ERR_INVALID, "'tags' holds at most %d names", CD__CASES_MAX_TAGS);
        x->ntags = 0;
        json_array_foreach(tags, i, t)
        {
            struct cd_str s = cd_str_c(json_string_value(t));
            if (!json_is_string(t) || !cd__cases_slug(s))
                return cd_err_set(CD_ERR_INVALID,
                                  "'tags'[%zu] is not a name of a-z, 0-9, '-' "
                                  "and '_'",
                                  i);
            snprintf(x->tags[x->ntags++], CD__CASES_NAME_MAX, "%s", s.p);
        }
    }
    if (legal) {
        static const char *const allowed[] = {"required", "basis", NULL};
        bool req = x->legal;
        char why[300];
        if ((err = cd_json_only(legal, allowed)) != CD_OK ||
            (err = cd_json_bool(legal, "required", true, &req)) != CD_OK ||
            (err = text_in(legal, "basis", 250, x->legal_basis, sizeof x->legal_basis, false)) !=
                CD_OK) {
            snprintf(why, sizeof why, "%s", cd_err_detail());
            return cd_err_set(CD_ERR_INVALID, "'legal_notice': %s", why);
        }
        x->legal = req;
        if (!req)
            x->legal_basis[0] = '\0';
    }
    if (x->legal && !x->legal_basis[0])
        return cd_err_set(CD_ERR_INVALID, "'legal_notice' that is required names its 'basis' "
                                          "(the law that requires the notice)");
    return CD_OK;
}

struct write_ctx {
    struct cd_cases *cs;
    const struct cd_actor *a;
    const struct cd_idem *idem;
    char replay_id[CD_ID_MAX];
    struct incident x;
    const json_t *patch;
    struct cd_str id;
    long version; /* -1: not given */
    int64_t now;
};

static enum cd_err create_fn(struct cd_tx *tx, void *ctx)
{
    struct write_ctx *w = ctx;
    enum cd_err err;

    if ((err = cd_core_idem_check(w->cs->core, tx, w->idem, w->replay_id)) != CD_OK ||
        w->replay_id[0])
        return err;
    if ((err = incident_store(tx, &w->x, true)) != CD_OK ||
        (err = incident_audit(tx, w->a, "incident.create", w->x.id)) != CD_OK)
        return err;
    return cd_core_idem_record(w->cs->core, tx, w->idem, w->x.id);
}

enum cd_err cd_cases_incident_create(struct cd_cases *cs, const struct cd_actor *a,
                                     const json_t *body, const struct cd_idem *idem, json_t **out,
                                     bool *replayed)
{
    static const char *const allowed[] = {"kind", "title", "description",  "severity",   "channel",
                                          "team", "tags",  "legal_notice", "started_at", NULL};
    struct write_ctx w = {.cs = cs, .a = a, .idem = idem, .now = cd_now_ms()};
    struct cd_str started = CD_STR_NULL;
    enum cd_err err;

    w.x.kind = -1;
    w.x.severity = CI_NORMAL;
    w.x.channel = 0;
    if ((err = cd_json_only(body, allowed)) != CD_OK ||
        (err = incident_members(body, &w.x, true)) != CD_OK ||
        (err = cd_json_str(body, "started_at", false, &started)) != CD_OK)
        goto out;
    w.x.started_at = w.now;
    if (started.p && cd_time_parse(started, &w.x.started_at) != CD_OK) {
        err = cd_err_set(CD_ERR_INVALID, "'started_at' must be an RFC 3339 time");
        goto out;
    }
    if (w.x.started_at > w.now + 86400000) {
        err = cd_err_set(CD_ERR_INVALID, "'started_at' is in the future");
        goto out;
    }
    cd_id_new("inc", w.x.id);
    w.x.status = I_OPEN;
    w.x.created_at = w.x.updated_at = w.now;
    w.x.version = 1;
    if ((err = cd_store_write(cs->store, create_fn, &w)) != CD_OK)
        goto out;
    *replayed = w.replay_id[0] != '\0';
    err = cd_cases_incident_get(cs, cd_str_c(*replayed ? w.replay_id : w.x.id), out);
out:
    cd_free(w.x.description);
    return err;
}

/* A change of the incident's status is written into the history of every case opened for it
 * that is still active, so the agent sees it where they work. The ids are read first, the
 * events written after. */
static const char ACTIVE_CASES[] = "SELECT id FROM cases WHERE incident_id = $1"
                                   " AND resolved_at IS NULL AND closed_at IS NULL";

static enum cd_err write_history(struct write_ctx *w, struct cd_tx *tx, const json_t *data)
{
    struct cd__id_list l = {NULL, 0, 0};
    struct cd_val p[] = {CD_VCSTR(w->x.id)};
    enum cd_err err = cd_tx_exec(tx, ACTIVE_CASES, p, 1, cd__cases_id_row, &l, NULL);

    for (size_t i = 0; i < l.n && err == CD_OK; i++) {
        struct cd__case k;
        cd__case_init(&k);
        if ((err = cd__case_load(w->cs, tx, cd_str_c(l.ids[i]), &k)) == CD_OK)
            err = cd__case_event(tx, w->a, &k, "case.incident_update", data, w->now);
        cd__case_free(&k);
    }
    cd_free(l.ids);
    return err;
}

static enum cd_err update_fn(struct cd_tx *tx, void *ctx)
{
    struct write_ctx *w = ctx;
    int before;
    enum cd_err err;

    if ((err = incident_load(tx, w->id, &w->x)) != CD_OK)
        return err;
    if (w->version >= 0 && w->version != w->x.version)
        return cd_err_set(CD_ERR_CONFLICT, "the incident changed since version %ld (it is at %ld)",
                          w->version, w->x.version);
    before = w->x.status;
    if ((err = cd__cases_name_member(w->patch, "status", cd__incident_statuses, &w->x.status)) !=
            CD_OK ||
        (err = incident_members(w->patch, &w->x, false)) != CD_OK)
        return err;
    if (before == I_RESOLVED && w->x.status != I_RESOLVED)
        return cd_err_set(CD_ERR_INVALID, "a resolved incident stays resolved (open a new one)");
    if (w->x.status == I_RESOLVED && before != I_RESOLVED)
        w->x.resolved_at = w->now;
    w->x.updated_at = w->now;
    w->x.version++;
    if ((err = incident_store(tx, &w->x, false)) != CD_OK ||
        (err = incident_audit(tx, w->a, "incident.update", w->x.id)) != CD_OK)
        return err;
    if (before == w->x.status)
        return CD_OK;
    json_t *d = json_pack("{s:s,s:s,s:s}", "incident_id", w->x.id, "from",
                          cd__incident_statuses[before], "to", cd__incident_statuses[w->x.status]);
    if (d == NULL)
        return CD_ERR_NOMEM;
    err = write_history(w, tx, d);
    json_decref(d);
    return err;
}

enum cd_err cd_cases_incident_update(struct cd_cases *cs, const struct cd_actor *a,
                                     struct cd_str id, const json_t *patch, json_t **out)
{
    static const char *const allowed[] = {"status", "title", "description",  "severity", "channel",
                                          "team",   "tags",  "legal_notice", "version",  NULL};
    struct write_ctx w = {
        .cs = cs, .a = a, .patch = patch, .id = id, .version = -1, .now = cd_now_ms()};
    int64_t version = -1;
    enum cd_err err;

    if ((err = cd_json_only(patch, allowed)) != CD_OK ||
        (err = cd_json_int(patch, "version", false, &version)) != CD_OK)
        return err;
    w.version = (long)version;
    if ((err = cd_store_write(cs->store, update_fn, &w)) == CD_OK)
        err = cd_cases_incident_get(cs, cd_str_c(w.x.id), out);
    cd_free(w.x.description);
    return err;
}

/* ---- the list ---- */

struct list_ctx {
    struct cd_str status;
    int64_t cursor_ms;
    char cursor_id[CD_ID_MAX];
    int limit;
    struct incident *xs;
    struct counts *ks;
    size_t n;
    bool more;
};

static enum cd_err list_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct list_ctx *l = ctx;

    if (l->n == (size_t)l->limit) {
        l->more = true;
        return CD_OK;
    }
    return incident_row(&l->xs[l->n++], c, n);
}

static enum cd_err list_fn(struct cd_tx *tx, void *ctx)
{
    struct list_ctx *l = ctx;
    enum cd_err err;

    struct cd_val p[] = {l->status.len ? CD_VTEXT(l->status) : CD_VCSTR(""), CD_VINT(l->cursor_ms),
                         CD_VCSTR(l->cursor_id), CD_VINT((int64_t)l->limit + 1)};
    if ((err = cd_tx_exec(tx,
                          "SELECT " INC_COLS " FROM incidents WHERE ($1 = '' OR status = $1)"
                          " AND (created_at < $2 OR (created_at = $2 AND id < $3))"
                          " ORDER BY created_at DESC, id DESC LIMIT $4",
                          p, 4, list_row, l, NULL)) != CD_OK)
        return err;
    for (size_t i = 0; i < l->n; i++)
        if ((err = counts_of(tx, l->xs[i].id, &l->ks[i])) != CD_OK)
            return err;
    return CD_OK;
}

enum cd_err cd_cases_incident_list(struct cd_cases *cs, struct cd_str status, struct cd_str cursor,
                                   int limit, json_t **out)
{
    struct list_ctx l = {.status = status, .limit = limit, .cursor_ms = INT64_MAX};
    json_t *items = NULL;
    char names[100];
    enum cd_err err;

    if (status.len && cd__cases_name_index(cd__incident_statuses, status) < 0)
        return cd_err_set(CD_ERR_INVALID, "'status' must be %s",
                          cd__cases_name_list(cd__incident_statuses, names, sizeof names));
    if (limit < 1 || limit > 200)
        return cd_err_set(CD_ERR_INVALID, "'limit' must be 1 to 200");
    if (cursor.len && (err = cd__cursor_parse(cursor, "inc", &l.cursor_ms, l.cursor_id)) != CD_OK)
        return err;
    if (!cursor.len)
        snprintf(l.cursor_id, sizeof l.cursor_id, "inc_~");
    if ((l.xs = cd_calloc((size_t)limit, sizeof *l.xs)) == NULL ||
        (l.ks = cd_calloc((size_t)limit, sizeof *l.ks)) == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    if ((err = cd_store_read(cs->store, list_fn, &l)) != CD_OK)
        goto out;
    if ((items = json_array()) == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < l.n; i++) {
        json_t *o = incident_json(&l.xs[i], &l.ks[i]);
        if (o == NULL || json_array_append_new(items, o) != 0) {
            err = CD_ERR_NOMEM;
            goto out;
        }
    }
    char next[128];
    if (l.more)
        cd__cursor_make(l.xs[l.n - 1].created_at, l.xs[l.n - 1].id, next);
    *out = json_pack("{s:O,s:o}", "items", items, "next_cursor",
                     l.more ? json_string(next) : json_null());
    err = *out ? CD_OK : CD_ERR_NOMEM;
out:
    json_decref(items);
    for (size_t i = 0; l.xs && i < l.n; i++)
        cd_free(l.xs[i].description);
    cd_free(l.xs);
    cd_free(l.ks);
    return err;
}

/* ---- affected customers ---- */

struct affect_ctx {
    struct cd_cases *cs;
    const struct cd_actor *a;
    struct cd_str id;
    struct incident x;
    char (*ids)[CD_ID_MAX]; /* the customers to add, as given or found */
    size_t nids, from, to;
    const char *how; /* "list" or "query" */
    int64_t now;
    long added, already, cases_opened, cases_kept, erased;
    json_t *unknown; /* ids of a list that name no customer */
};

static enum cd_err case_id_row(void *ctx, const struct cd_val *c, size_t n)
{
    (void)n;
    text_into(&c[0], ctx, CD_ID_MAX);
    return CD_OK;
}

/* The case an affected customer's follow-up lives in: the active one already opened for this
 * incident, or a new incident follow-up case. */
static enum cd_err follow_up(struct affect_ctx *c, struct cd_tx *tx, const char *customer,
                             char case_id[CD_ID_MAX])
{
    struct cd__case k;
    int64_t n = 0;
    enum cd_err err;

    struct cd_val p[] = {CD_VCSTR(c->x.id), CD_VCSTR(customer)};
    case_id[0] = '\0';
    if ((err = cd_tx_exec(tx,
                          "SELECT id FROM cases WHERE incident_id = $1 AND customer_id = $2"
                          " AND closed_at IS NULL ORDER BY created_at DESC LIMIT 1",
                          p, 2, case_id_row, case_id, &n)) != CD_OK)
        return err;
    if (case_id[0]) {
        c->cases_kept++;
        return CD_OK;
    }
    cd__case_init(&k);
    cd_id_new("cas", k.id);
    snprintf(k.customer_id, sizeof k.customer_id, "%s", customer);
    snprintf(k.incident_id, sizeof k.incident_id, "%s", c->x.id);
    snprintf(k.source, sizeof k.source, "incident");
    snprintf(k.team, sizeof k.team, "%s", c->x.team);
    k.type = CT_INCIDENT;
    k.impact = c->x.severity;
    k.channel = c->x.channel;
    for (size_t i = 0; i < c->x.ntags; i++)
        snprintf(k.tags[k.ntags++], CD__CASES_NAME_MAX, "%s", c->x.tags[i]);
    json_t *d = NULL;
    if ((err = cd__case_new(c->cs, tx, &k, NULL, c->now)) == CD_OK) {
        if ((d = json_pack("{s:s,s:s,s:i,s:s,s:s}", "type", cd__case_types[k.type], "status",
                           cd__case_statuses[k.status], "priority", k.priority, "team", k.team,
                           "incident_id", c->x.id)) == NULL)
            err = CD_ERR_NOMEM;
        else
            err = cd__case_event(tx, c->a, &k, "case.create", d, c->now);
    }
    json_decref(d);
    if (err == CD_OK) {
        snprintf(case_id, CD_ID_MAX, "%s", k.id);
        c->cases_opened++;
    }
    cd__case_free(&k);
    return err;
}

static enum cd_err affect_fn(struct cd_tx *tx, void *ctx)
{
    struct affect_ctx *c = ctx;
    enum cd_err err;

    if ((err = incident_load(tx, c->id, &c->x)) != CD_OK)
        return err;
    if (c->x.status == I_RESOLVED)
        return cd_err_set(CD_ERR_CONFLICT, "the incident is resolved");
    for (size_t i = c->from; i < c->to; i++) {
        char who[CD_ID_MAX], case_id[CD_ID_MAX];
        bool merged = false;
        enum cd_core_customer_state state;
        int64_t n = 0;

        if ((err = cd_core_customer_resolve(tx, cd_str_c(c->ids[i]), who, &merged, &state)) !=
            CD_OK)
            return err;
        if (state == CD_CORE_CUSTOMER_UNKNOWN) {
            if (json_array_append_new(c->unknown, json_string(c->ids[i])) != 0)
                return CD_ERR_NOMEM;
            continue;
        }
        if (state == CD_CORE_CUSTOMER_ERASED) {
            c->erased++;
            continue;
        }
        struct cd_val p[] = {CD_VCSTR(c->x.id), CD_VCSTR(who)};
        if ((err = cd_tx_int(tx,
                             "SELECT count(*) FROM incident_customers WHERE incident_id = $1"
                             " AND customer_id = $2",
                             p, 2, &n)) != CD_OK)
            return err;
        if (n > 0) {
            c->already++;
            continue;
        }
        if ((err = follow_up(c, tx, who, case_id)) != CD_OK)
            return err;
        struct cd_val q[] = {CD_VCSTR(c->x.id), CD_VCSTR(who), CD_VCSTR(case_id), CD_VCSTR(c->how),
                             CD_VINT(c->now)};
        if ((err = cd_tx_exec(tx,
                              "INSERT INTO incident_customers(incident_id, customer_id,"
                              " case_id, added_by, added_at, notice_status, attempts)"
                              " VALUES($1,$2,$3,$4,$5,'pending',0)",
                              q, 5, NULL, NULL, NULL)) != CD_OK)
            return err;
        c->added++;
    }
    return CD_OK;
}

/* The customers a query over cases finds: those with a case matching every member given. */
struct query_ctx {
    struct affect_ctx *c;
    const json_t *q;
};

static enum cd_err id_row(void *ctx, const struct cd_val *v, size_t n)
{
    struct affect_ctx *c = ctx;

    (void)n;
    if (c->nids == AFFECT_QUERY_MAX)
        return cd_err_set(CD_ERR_INVALID, "the query finds more than %d customers; narrow it",
                          AFFECT_QUERY_MAX);
    if (c->nids % 1024 == 0) {
        char(*more)[CD_ID_MAX] = cd_realloc(c->ids, (c->nids + 1024) * CD_ID_MAX);
        if (more == NULL)
            return CD_ERR_NOMEM;
        c->ids = more;
    }
    snprintf(c->ids[c->nids++], CD_ID_MAX, "%.*s", (int)v[0].len, (const char *)v[0].p);
    return CD_OK;
}

struct case_query {
    int type, status_active, channel;
    char tag[CD__CASES_NAME_MAX + 4], team[CD__CASES_NAME_MAX];
    int64_t from, to;
};

static enum cd_err query_fn(struct cd_tx *tx, void *ctx)
{
    struct query_ctx *qc = ctx;
    const struct case_query *q = (const struct case_query *)qc->q;
    char tag[CD__CASES_NAME_MAX + 8] = "";

    if (q->tag[0])
        snprintf(tag, sizeof tag, "%%\"%s\"%%", q->tag);
    struct cd_val p[] = {CD_VCSTR(q->type >= 0 ? cd__case_types[q->type] : ""),
                         CD_VCSTR(q->channel >= 0 ? cd__case_channels[q->channel] : ""),
                         CD_VCSTR(q->team),
                         CD_VCSTR(tag),
                         CD_VINT(q->from),
                         CD_VINT(q->to),
                         CD_VINT(q->status_active)};
    return cd_tx_exec(tx,
                      "SELECT DISTINCT customer_id FROM cases WHERE ($1 = '' OR type = $1)"
                      " AND ($2 = '' OR channel = $2) AND ($3 = '' OR team = $3)"
                      " AND ($4 = '' OR tags LIKE $4) AND created_at >= $5 AND created_at < $6"
                      " AND ($7 = 0 OR (resolved_at IS NULL AND closed_at IS NULL))"
                      " ORDER BY customer_id",
                      p, 7, id_row, qc->c, NULL);
}

static enum cd_err parse_query(const json_t *q, struct case_query *out)
{
    static const char *const allowed[] = {"case_type",   "channel",   "team",        "tag",
                                          "opened_from", "opened_to", "active_only", NULL};
    struct cd_str team = CD_STR_NULL, tag = CD_STR_NULL, from = CD_STR_NULL, to = CD_STR_NULL;
    bool active = false;
    enum cd_err err;

    memset(out, 0, sizeof *out);
    out->type = out->channel = -1;
    out->to = INT64_MAX;
    if ((err = cd_json_only(q, allowed)) != CD_OK ||
        (err = cd__cases_name_member(q, "case_type", cd__case_types, &out->type)) != CD_OK ||
        (err = cd__cases_name_member(q, "channel", cd__case_channels, &out->channel)) != CD_OK ||
        (err = cd_json_str(q, "team", false, &team)) != CD_OK ||
        (err = cd_json_str(q, "tag", false, &tag)) != CD_OK ||
        (err = cd_json_str(q, "opened_from", false, &from)) != CD_OK ||
        (err = cd_json_str(q, "opened_to", false, &to)) != CD_OK ||
        (err = cd_json_bool(q, "active_only", false, &active)) != CD_OK) {
        char why[300];
        snprintf(why, sizeof why, "%s", cd_err_detail());
        return cd_err_set(CD_ERR_INVALID, "'query': %s", why);
    }
    if ((team.p && !cd__cases_slug(team)) || (tag.p && !cd__cases_slug(tag)))
        return cd_err_set(CD_ERR_INVALID, "'query': 'team' and 'tag' are names of a-z, 0-9, "
                                          "'-' and '_'");
    if ((from.p && cd_time_parse(from, &out->from) != CD_OK) ||
        (to.p && cd_time_parse(to, &out->to) != CD_OK))
        return cd_err_set(CD_ERR_INVALID, "'query': 'opened_from' and 'opened_to' are RFC 3339 "
                                          "times");
    if (json_object_size(q) == 0)
        return cd_err_set(CD_ERR_INVALID, "'query' names at least one condition");
    if (team.p)
        snprintf(out->team, sizeof out->team, "%.*s", (int)team.len, team.p);
    if (tag.p)
        snprintf(out->tag, sizeof out->tag, "%.*s", (int)tag.len, tag.p);
    out->status_active = active;
    return CD_OK;
}

enum cd_err cd_cases_incident_affect(struct cd_cases *cs, const struct cd_actor *a,
                                     struct cd_str id, const json_t *body, json_t **out)
{
    static const char *const allowed[] = {"customer_ids", "query", NULL};
    struct affect_ctx c = {.cs = cs, .a = a, .id = id, .now = cd_now_ms()};
    json_t *list = NULL, *query = NULL;
    enum cd_err err;

    if ((err = cd_json_only(body, allowed)) != CD_OK ||
        (err = cd_json_arr(body, "customer_ids", false, &list)) != CD_OK ||
        (err = cd_json_obj(body, "query", false, &query)) != CD_OK)
        return err;
    if ((list == NULL) == (query == NULL))
        return cd_err_set(CD_ERR_INVALID, "name the affected customers by 'customer_ids' or by "
                                          "'query', one of the two");
    if ((c.unknown = json_array()) == NULL)
        return CD_ERR_NOMEM;
    if (list) {
        size_t i;
        json_t *t;
        if (json_array_size(list) == 0 || json_array_size(list) > AFFECT_LIST_MAX) {
            err = cd_err_set(CD_ERR_INVALID, "'customer_ids' lists 1 to %d ids", AFFECT_LIST_MAX);
            goto out;
        }
        if ((c.ids = cd_calloc(json_array_size(list), CD_ID_MAX)) == NULL) {
            err = CD_ERR_NOMEM;
            goto out;
        }
        json_array_foreach(list, i, t)
        {
            if (!json_is_string(t) || !cd_id_valid(cd_str_c(json_string_value(t)), "cus")) {
                err = cd_err_set(CD_ERR_INVALID, "'customer_ids'[%zu] is not a customer id", i);
                goto out;
            }
            snprintf(c.ids[c.nids++], CD_ID_MAX, "%s", json_string_value(t));
        }
        c.how = "list";
    } else {
        struct case_query q;
        struct query_ctx qc = {&c, (const json_t *)&q};
        if ((err = parse_query(query, &q)) != CD_OK ||
            (err = cd_store_read(cs->store, query_fn, &qc)) != CD_OK)
            goto out;
        c.how = "query";
    }
    /* In batches, so a large incident does not hold the writer for long; each batch is whole. */
    for (c.from = 0; c.from < c.nids || c.from == 0; c.from = c.to) {
        c.to = c.from + AFFECT_BATCH < c.nids ? c.from + AFFECT_BATCH : c.nids;
        if ((err = cd_store_write(cs->store, affect_fn, &c)) != CD_OK)
            goto out;
        if (c.nids == 0)
            break;
    }
    *out = json_pack("{s:s,s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:O}", "incident_id", c.x.id, "by", c.how,
                     "matched", (int)c.nids, "added", (int)c.added, "already_affected",
                     (int)c.already, "cases_opened", (int)c.cases_opened, "cases_kept",
                     (int)c.cases_kept, "erased", (int)c.erased, "unknown", c.unknown);
    err = *out ? CD_OK : CD_ERR_NOMEM;
out:
    json_decref(c.unknown);
    cd_free(c.ids);
    cd_free(c.x.description);
    return err;
}

/* ---- who was told ---- */

struct told_list {
    json_t *items;
    int limit;
    char last[CD_ID_MAX];
    bool more;
};

static enum cd_err told_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct told_list *l = ctx;
    char cus[CD_ID_MAX], cas[CD_ID_MAX], st[16], ch[16], reason[64], basis[64], by[16];

    (void)n;
    if (json_array_size(l->items) == (size_t)l->limit) {
        l->more = true;
        return CD_OK;
    }
    text_into(&c[0], cus, sizeof cus);
    text_into(&c[1], cas, sizeof cas);
    text_into(&c[2], by, sizeof by);
    text_into(&c[4], st, sizeof st);
    text_into(&c[5], ch, sizeof ch);
    text_into(&c[7], reason, sizeof reason);
    text_into(&c[8], basis, sizeof basis);
    snprintf(l->last, sizeof l->last, "%s", cus);
    json_t *o = json_pack("{s:s,s:o,s:s,s:o,s:s,s:o,s:o,s:o,s:o,s:i}", "customer_id", cus,
                          "case_id", cas[0] ? json_string(cas) : json_null(), "added_by", by,
                          "added_at", cd__time_json(c[3].i), "notice", st, "channel",
                          ch[0] ? json_string(ch) : json_null(), "at",
                          c[6].type == CD_VAL_INT ? cd__time_json(c[6].i) : json_null(), "reason",
                          reason[0] ? json_string(reason) : json_null(), "basis",
                          basis[0] ? json_string(basis) : json_null(), "attempts", (int)c[9].i);
    return o && json_array_append_new(l->items, o) == 0 ? CD_OK : CD_ERR_NOMEM;
}

struct told_ctx {
    struct cd_str id, notice, after;
    struct told_list *l;
    struct incident x;
};

static enum cd_err told_fn(struct cd_tx *tx, void *ctx)
{
    struct told_ctx *t = ctx;
    enum cd_err err;

    if ((err = incident_load(tx, t->id, &t->x)) != CD_OK)
        return err;
    struct cd_val p[] = {CD_VCSTR(t->x.id), t->notice.len ? CD_VTEXT(t->notice) : CD_VCSTR(""),
                         t->after.len ? CD_VTEXT(t->after) : CD_VCSTR(""),
                         CD_VINT((int64_t)t->l->limit + 1)};
    return cd_tx_exec(tx,
                      "SELECT customer_id, case_id, added_by, added_at, notice_status,"
                      " notice_channel, notice_at, notice_reason, notice_basis, attempts"
                      " FROM incident_customers WHERE incident_id = $1"
                      " AND ($2 = '' OR notice_status = $2) AND customer_id > $3"
                      " ORDER BY customer_id LIMIT $4",
                      p, 4, told_row, t->l, NULL);
}

enum cd_err cd_cases_incident_customers(struct cd_cases *cs, struct cd_str id, struct cd_str notice,
                                        struct cd_str cursor, int limit, json_t **out)
{
    struct told_list l = {.limit = limit};
    struct told_ctx t = {.id = id, .notice = notice, .l = &l};
    char names[100];
    enum cd_err err;

    if (notice.len && cd__cases_name_index(notice_states, notice) < 0)
        return cd_err_set(CD_ERR_INVALID, "'notice' must be %s",
                          cd__cases_name_list(notice_states, names, sizeof names));
    if (cursor.len && !cd_id_valid(cursor, "cus"))
        return cd_err_set(CD_ERR_INVALID, "'cursor' is not a cursor this list gave");
    if (limit < 1 || limit > 1000)
        return cd_err_set(CD_ERR_INVALID, "'limit' must be 1 to 1000");
    t.after = cursor;
    if ((l.items = json_array()) == NULL)
        return CD_ERR_NOMEM;
    if ((err = cd_store_read(cs->store, told_fn, &t)) == CD_OK &&
        (*out = json_pack("{s:s,s:O,s:o}", "incident_id", t.x.id, "items", l.items, "next_cursor",
                          l.more ? json_string(l.last) : json_null())) == NULL)
        err = CD_ERR_NOMEM;
    json_decref(l.items);
    cd_free(t.x.description);
    return err;
}

/* ---- notices ---- */

struct pending {
    char customer[CD_ID_MAX], case_id[CD_ID_MAX], channel[16];
    int state;
};

struct notify_ctx {
    struct cd_cases *cs;
    const struct cd_actor *a;
    struct cd_str id;
    struct incident x;
    int channel; /* -1: each notice's own (the sweeper) */
    bool legal;  /* a legal notice: told whatever the preferences */
    bool sweep;  /* only deferred notices whose time may have come */
    int64_t now;
    char after[CD_ID_MAX]; /* the batch starts after this customer */
    struct pending *p;
    size_t np;
    long told, deferred, withheld;
    json_t *reasons; /* reason -> count, for those withheld */
};

static enum cd_err pending_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct notify_ctx *x = ctx;
    struct pending *p = &x->p[x->np];

    (void)n;
    if (x->np == NOTIFY_BATCH)
        return CD_OK;
    text_into(&c[0], p->customer, sizeof p->customer);
    text_into(&c[1], p->case_id, sizeof p->case_id);
    text_into(&c[2], p->channel, sizeof p->channel);
    p->state = name_of(notice_states, &c[3]);
    x->np++;
    return CD_OK;
}

/* Decides one notice: told (and why it could be), deferred (quiet hours) or withheld. */
static int decide(struct notify_ctx *x, const struct pending *p, const char *channel,
                  const char **reason, const char **basis)
{
    struct cd_consent_decision d;
    enum cd_consent_channel ch;

    if (x->legal) {
        *reason = "legal_notice";
        *basis = "legal_obligation";
        return N_TOLD;
    }
    *basis = NULL;
    if (x->cs->consent == NULL) {
        *reason = "no_consent_engine";
        return N_WITHHELD;
    }
    if (!cd_consent_channel_parse(cd_str_c(channel), &ch) ||
        cd_consent_decide_exact(x->cs->consent, cd_str_c(p->customer), CD_PURPOSE_SERVICE, ch,
                                CD_STR_NULL, x->now, &d) != CD_OK) {
        cd_err_clear();
        *reason = "undecidable";
        return N_WITHHELD;
    }
    *reason = d.reason;
    if (!d.allow)
        return strcmp(d.reason, "quiet_hours") == 0 ? N_DEFERRED : N_WITHHELD;
    /* A service message needs no consent, but still waits for the customer's quiet hours. */
    if (cd_consent_quiet_hours(x->cs->consent, cd_str_c(p->customer), ch, x->now)) {
        *reason = "quiet_hours";
        return N_DEFERRED;
    }
    *basis = d.basis;
    return N_TOLD;
}

static enum cd_err notify_one(struct notify_ctx *x, struct cd_tx *tx, const struct pending *p)
{
    const char *channel = x->channel >= 0 ? cd__case_channels[x->channel] : p->channel;
    const char *reason = NULL, *basis = NULL;
    int state = decide(x, p, channel, &reason, &basis);
    enum cd_err err;

    if (state == N_DEFERRED && p->state == N_DEFERRED) {
        /* Still quiet: only the attempt is counted. */
        struct cd_val q[] = {CD_VCSTR(x->x.id), CD_VCSTR(p->customer)};
        x->deferred++;
        return cd_tx_exec(tx,
                          "UPDATE incident_customers SET attempts = attempts + 1"
                          " WHERE incident_id = $1 AND customer_id = $2",
                          q, 2, NULL, NULL, NULL);
    }
    struct cd_val q[] = {CD_VCSTR(x->x.id),
                         CD_VCSTR(p->customer),
                         CD_VCSTR(notice_states[state]),
                         CD_VCSTR(channel),
                         state == N_TOLD ? CD_VINT(x->now) : CD_VNULL,
                         CD_VCSTR(reason),
                         basis ? CD_VCSTR(basis) : CD_VNULL};
    if ((err = cd_tx_exec(tx,
                          "UPDATE incident_customers SET notice_status = $3,"
                          " notice_channel = $4, notice_at = $5, notice_reason = $6,"
                          " notice_basis = $7, attempts = attempts + 1"
                          " WHERE incident_id = $1 AND customer_id = $2",
                          q, 7, NULL, NULL, NULL)) != CD_OK)
        return err;
    if (state == N_WITHHELD) {
        json_t *n = json_object_get(x->reasons, reason);
        x->withheld++;
        return json_object_set_new(x->reasons, reason, json_integer(json_integer_value(n) + 1)) == 0
                   ? CD_OK
                   : CD_ERR_NOMEM;
    }
    if (state == N_DEFERRED) {
        x->deferred++;
        return CD_OK;
    }
    /* Told: the evidence in the case's history and the ledger, and the event the sending system
     * acts on. */
    x->told++;
    struct cd__case k;
    json_t *d = NULL, *ev = NULL;
    char ev_id[CD_ID_MAX];
    cd__case_init(&k);
    if ((err = cd__case_load(x->cs, tx, cd_str_c(p->case_id), &k)) != CD_OK)
        goto out;
    if ((d = json_pack("{s:s,s:s,s:b,s:s}", "incident_id", x->x.id, "channel", channel,
                       "legal_notice", x->legal, "basis", basis)) == NULL ||
        (ev = json_pack("{s:s,s:s,s:s,s:s,s:b}", "incident_id", x->x.id, "case_id", k.id, "kind",
                        cd__incident_kinds[x->x.kind], "channel", channel, "legal_notice",
                        x->legal)) == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    if ((err = cd__case_event(tx, x->a, &k, "case.incident_notice", d, x->now)) == CD_OK)
        err = cd_outbox_enqueue(tx, "incident.notice", cd_str_c(p->customer), ev, ev_id);
out:
    json_decref(d);
    json_decref(ev);
    cd__case_free(&k);
    return err;
}

static enum cd_err notify_fn(struct cd_tx *tx, void *ctx)
{
    struct notify_ctx *x = ctx;
    enum cd_err err;

    x->np = 0;
    if ((err = incident_load(tx, x->id, &x->x)) != CD_OK)
        return err;
    if (x->legal && !x->x.legal)
        return cd_err_set(CD_ERR_INVALID, "this incident's notice is not one the law requires "
                                          "(set its 'legal_notice' first)");
    struct cd_val p[] = {CD_VCSTR(x->x.id), CD_VINT(x->sweep), CD_VCSTR(x->after)};
    if ((err = cd_tx_exec(tx,
                          "SELECT customer_id, case_id, notice_channel, notice_status"
                          " FROM incident_customers WHERE incident_id = $1 AND customer_id > $3"
                          " AND (($2 = 0 AND notice_status <> 'told') OR notice_status ="
                          " 'deferred') ORDER BY customer_id LIMIT 250",
                          p, 3, pending_row, x, NULL)) != CD_OK)
        return err;
    for (size_t i = 0; i < x->np; i++)
        if ((err = notify_one(x, tx, &x->p[i])) != CD_OK)
            return err;
    return CD_OK;
}

/* Every notice of the incident not yet told, batch by batch (each batch one transaction). */
static enum cd_err notify_all(struct notify_ctx *x)
{
    enum cd_err err;

    x->after[0] = '\0';
    for (;;) {
        long told = x->told, deferred = x->deferred, withheld = x->withheld;
        if ((err = cd_store_write(x->cs->store, notify_fn, x)) != CD_OK) {
            /* A retried batch counts again: take back what the failed attempt counted. */
            x->told = told;
            x->deferred = deferred;
            x->withheld = withheld;
            return err;
        }
        if (x->np < NOTIFY_BATCH)
            return CD_OK;
        snprintf(x->after, sizeof x->after, "%s", x->p[x->np - 1].customer);
    }
}

enum cd_err cd_cases_incident_notify(struct cd_cases *cs, const struct cd_actor *a,
                                     struct cd_str id, const json_t *body, json_t **out)
{
    static const char *const allowed[] = {"channel", "legal_notice", NULL};
    struct notify_ctx x = {.cs = cs, .a = a, .id = id, .channel = -1, .now = cd_now_ms()};
    enum cd_err err;

    if ((err = cd_json_only(body, allowed)) != CD_OK ||
        (err = cd__cases_name_member(body, "channel", cd__case_channels, &x.channel)) != CD_OK ||
        (err = cd_json_bool(body, "legal_notice", false, &x.legal)) != CD_OK)
        return err;
    if (x.channel < 0)
        return cd_err_set(CD_ERR_INVALID, "'channel' is required: the channel the notice goes "
                                          "out on");
    if ((x.p = cd_calloc(NOTIFY_BATCH, sizeof *x.p)) == NULL ||
        (x.reasons = json_object()) == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    if ((err = notify_all(&x)) != CD_OK)
        goto out;
    *out = json_pack("{s:s,s:s,s:b,s:i,s:i,s:i,s:O}", "incident_id", x.x.id, "channel",
                     cd__case_channels[x.channel], "legal_notice", x.legal, "told", (int)x.told,
                     "deferred", (int)x.deferred, "withheld", (int)x.withheld, "withheld_reasons",
                     x.reasons);
    err = *out ? CD_OK : CD_ERR_NOMEM;
out:
    json_decref(x.reasons);
    cd_free(x.p);
    cd_free(x.x.description);
    return err;
}

/* The sweeper's part: deferred notices (quiet hours) decided again, incident by incident. */
struct deferred_ctx {
    char (*ids)[CD_ID_MAX];
    size_t n;
};

static enum cd_err deferred_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct deferred_ctx *d = ctx;

    (void)n;
    if (d->n < 64)
        text_into(&c[0], d->ids[d->n++], CD_ID_MAX);
    return CD_OK;
}

static enum cd_err deferred_fn(struct cd_tx *tx, void *ctx)
{
    return cd_tx_exec(tx,
                      "SELECT DISTINCT incident_id FROM incident_customers"
                      " WHERE notice_status = 'deferred' LIMIT 64",
                      NULL, 0, deferred_row, ctx, NULL);
}

enum cd_err cd__incidents_sweep(struct cd_cases *cs, int64_t now, size_t *told)
{
    char ids[64][CD_ID_MAX];
    struct deferred_ctx d = {ids, 0};
    enum cd_err err;

    if ((err = cd_store_read(cs->store, deferred_fn, &d)) != CD_OK || d.n == 0)
        return err;
    struct pending *p = cd_calloc(NOTIFY_BATCH, sizeof *p);
    json_t *reasons = json_object();
    if (p == NULL || reasons == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < d.n && err == CD_OK; i++) {
        struct notify_ctx x = {.cs = cs,
                               .id = cd_str_c(ids[i]),
                               .channel = -1,
                               .sweep = true,
                               .now = now,
                               .p = p,
                               .reasons = reasons};
        err = notify_all(&x);
        cd_free(x.x.description);
        if (told)
            *told += (size_t)x.told;
    }
out:
    json_decref(reasons);
    cd_free(p);
    return err;
}
