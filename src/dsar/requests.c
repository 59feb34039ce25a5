/* Requests: opening one (also from an interaction that carried it), its lifecycle, the
 * extension, the listings by deadline and the counts /metrics shows. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "audit/audit.h"
#include "crypto/crypto.h"
#include "dsar_int.h"

enum cd_err cd_dsar_open(struct cd_store *s, struct cd_core *core, struct cd_dsar_rules *rules,
                         struct cd_dsar **out)
{
    struct cd_dsar *d = cd_calloc(1, sizeof *d);

    if (d == NULL) {
        cd_dsar_rules_free(rules);
        return CD_ERR_NOMEM;
    }
    d->store = s;
    d->core = core;
    d->rules = rules;
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->wake, NULL);
    *out = d;
    return CD_OK;
}

void cd_dsar_close(struct cd_dsar *d)
{
    if (d == NULL)
        return;
    cd__dsar_stop(d);
    pthread_cond_destroy(&d->wake);
    pthread_mutex_destroy(&d->mu);
    cd_dsar_rules_free(d->rules);
    cd_free(d);
}

const struct cd_dsar_rules *cd_dsar_rules(const struct cd_dsar *d)
{
    return d->rules;
}

/* ---- one request as stored ---------------------------------------------------------------- */

#define REQUEST_COLS                                                                             \
    "id, customer_id, type, state, regime, intake, interaction_id, received_at, created_at,"    \
    " updated_at, ack_due_at, acknowledged_at, due_at, original_due_at, unrolled_due_at,"       \
    " extended_at, extension_reason, extension_note, closed_at, refusal_reason, refusal_note,"  \
    " details, verified_at"


void cd__dsar_row_init(struct cd__dsar_row *r)
{
    memset(r, 0, sizeof *r);
    r->ext_note = CD_BUF_INIT(2 * CD__DSAR_TEXT_MAX);
    r->refusal_note = CD_BUF_INIT(2 * CD__DSAR_TEXT_MAX);
    r->details = CD_BUF_INIT(2 * CD__DSAR_TEXT_MAX);
}

void cd__dsar_row_free(struct cd__dsar_row *r)
{
    cd_buf_free(&r->ext_note);
    cd_buf_free(&r->refusal_note);
    cd_buf_free(&r->details);
}

static void col_text(struct cd_val v, char *out, size_t n)
{
    size_t len = v.type == CD_VAL_TEXT ? (v.len < n - 1 ? v.len : n - 1) : 0;

    if (len)
        memcpy(out, v.p, len);
    out[len] = '\0';
}

static int64_t col_int(struct cd_val v)
{
    return v.type == CD_VAL_INT ? v.i : 0;
}

static enum cd_err col_blob(struct cd_val v, struct cd_buf *b, bool *has)
{
    cd_buf_reset(b);
    *has = v.type == CD_VAL_BLOB;
    return *has ? cd_buf_append(b, v.p, v.len) : CD_OK;
}

static enum cd_err req_row_fn(void *ctx, const struct cd_val *c, size_t n)
{
    struct cd__dsar_row *r = ctx;
    char type[32], state[32];
    enum cd_err err;

    r->found = true;
    col_text(c[0], r->id, sizeof r->id);
    col_text(c[1], r->customer_id, sizeof r->customer_id);
    col_text(c[2], type, sizeof type);
    col_text(c[3], state, sizeof state);
    if (!cd_dsar_type_parse(cd_str_c(type), &r->type) ||
        !cd_dsar_state_parse(cd_str_c(state), &r->state))
        return cd_err_set(CD_ERR_INTEGRITY, "request %s has an unknown type or state", r->id);
    col_text(c[4], r->regime, sizeof r->regime);
    col_text(c[5], r->intake, sizeof r->intake);
    col_text(c[6], r->interaction_id, sizeof r->interaction_id);
    r->received_at = col_int(c[7]);
    r->created_at = col_int(c[8]);
    r->updated_at = col_int(c[9]);
    r->ack_due_at = col_int(c[10]);
    r->acknowledged_at = col_int(c[11]);
    r->due_at = col_int(c[12]);
    r->original_due_at = col_int(c[13]);
    r->unrolled_due_at = col_int(c[14]);
    r->extended_at = col_int(c[15]);
    col_text(c[16], r->ext_reason, sizeof r->ext_reason);
    r->closed_at = col_int(c[18]);
    r->verified_at = col_int(c[22]);
    col_text(c[19], r->refusal_reason, sizeof r->refusal_reason);
    if ((err = col_blob(c[17], &r->ext_note, &r->has_ext_note)) != CD_OK ||
        (err = col_blob(c[20], &r->refusal_note, &r->has_refusal_note)) != CD_OK ||
        (err = col_blob(c[21], &r->details, &r->has_details)) != CD_OK)
        return err;
    return CD_OK;
}

enum cd_err cd__dsar_load(struct cd_tx *tx, const char *id, struct cd__dsar_row *r)
{
    struct cd_val p[] = {CD_VCSTR(id)};

    r->found = false;
    return cd_tx_exec(tx, "SELECT " REQUEST_COLS " FROM dsar_requests WHERE id = $1", p, 1,
                      req_row_fn, r, NULL);
}

struct read_ctx {
    const char *id;
    struct cd__dsar_row *r;
};

static enum cd_err read_fn(struct cd_tx *tx, void *ctx)
{
    struct read_ctx *rc = ctx;
    return cd__dsar_load(tx, rc->id, rc->r);
}

enum cd_err cd__dsar_read(struct cd_dsar *d, const char *id, struct cd__dsar_row *r)
{
    struct read_ctx rc = {id, r};
    enum cd_err err;

    if ((err = cd_store_read(d->store, read_fn, &rc)) != CD_OK)
        return err;
    return r->found ? CD_OK : cd_err_set(CD_ERR_NOT_FOUND, "no request with this id");
}

enum cd_err cd__dsar_copy_id(struct cd_str id, char out[CD_ID_MAX])
{
    if (!cd_id_valid(id, "dsr"))
        return cd_err_set(CD_ERR_NOT_FOUND, "no request with this id");
    memcpy(out, id.p, id.len);
    out[id.len] = '\0';
    return CD_OK;
}

bool cd__dsar_open_state(enum cd_dsar_state s)
{
    return s <= CD_DSAR_EXTENDED;
}

/* ---- the ledger and the history ----------------------------------------------------------- */

enum cd_err cd__dsar_record(struct cd_tx *tx, const struct cd_actor *a, const char *req_id,
                                 const char *customer_id, const char *action, const char *from,
                                 const char *to, const char *reason, int64_t now)
{
    struct cd_audit_event ev = {.action = action,
                                .outcome = "ok",
                                .actor_token = a->token_id,
                                .actor_role = a->role,
                                .actor_name = a->name,
                                .purpose = a->purpose,
                                .request_id = a->request_id,
                                .customer_id = customer_id,
                                .resource_id = req_id,
                                .reason = reason};
    int64_t seq = 0;
    struct cd_val q[] = {CD_VCSTR(req_id)};
    enum cd_err err;

    if ((err = cd_tx_int(tx, "SELECT coalesce(max(seq), 0) FROM dsar_history WHERE request_id = $1",
                         q, 1, &seq)) != CD_OK)
        return err;
    struct cd_val p[] = {CD_VCSTR(req_id),
                         CD_VINT(seq + 1),
                         CD_VINT(now),
                         from ? CD_VCSTR(from) : CD_VNULL,
                         CD_VCSTR(to),
                         CD_VCSTR(a->role),
                         CD_VCSTR(a->token_id),
                         reason ? CD_VCSTR(reason) : CD_VNULL};
    if ((err = cd_tx_exec(tx, "INSERT INTO dsar_history(request_id, seq, at, from_state, to_state,"
                              " actor_role, actor_token, reason) VALUES($1,$2,$3,$4,$5,$6,$7,$8)",
                          p, 8, NULL, NULL, NULL)) != CD_OK)
        return err;
    return cd_audit_append(tx, &ev, NULL);
}

/* ---- texts written to or by the customer -------------------------------------------------- */

/* An optional text member of at most CD__DSAR_TEXT_MAX bytes, sealed for the customer. */
static enum cd_err seal_text(struct cd_dsar *d, const json_t *body, const char *key,
                             bool required, const char *customer_id, const char *field,
                             struct cd_buf *out, bool *has)
{
    struct cd_str s = CD_STR_NULL;
    enum cd_err err;

    *has = false;
    if ((err = cd_json_str(body, key, required, &s)) != CD_OK)
        return err;
    if (s.p == NULL)
        return CD_OK;
    if (s.len == 0 || s.len > CD__DSAR_TEXT_MAX)
        return cd_err_set(CD_ERR_INVALID, "'%s' must be 1 to %d bytes of text", key,
                          CD__DSAR_TEXT_MAX);
    if ((err = cd_core_note_seal(d->core, cd_str_c(customer_id), field, s, out)) != CD_OK)
        return err == CD_ERR_CRYPTO ? cd_err_set(CD_ERR_CONFLICT, "the customer was erased")
                                    : err;
    *has = true;
    return CD_OK;
}

/* ---- opening a request -------------------------------------------------------------------- */

struct create_ctx {
    struct cd_dsar *d;
    const struct cd_actor *a;
    enum cd_dsar_type type;
    enum cd_dsar_intake intake;
    char customer_id[CD_ID_MAX];
    struct cd_str interaction_id;
    struct cd_str jurisdiction; /* from the body, or empty */
    int64_t received_at;        /* from the body, or now */
    struct cd_buf details;
    bool has_details;
    char id[CD_ID_MAX];
};

static const char *const intake_names[] = {"api", "self_service", "interaction"};

static enum cd_err create_fn(struct cd_tx *tx, void *ctx)
{
    struct create_ctx *cc = ctx;
    struct cd_core_customer_ref cust;
    struct cd_dsar_deadlines dl;
    int64_t now = cd_now_ms(), received = cc->received_at;
    enum cd_err err;

    if ((err = cd_core_customer_ref(tx, cd_str_c(cc->customer_id), &cust)) != CD_OK)
        return err;
    if (!cust.exists)
        return cd_err_set(CD_ERR_NOT_FOUND, "no customer with the id in 'customer_id'");
    if (cust.merged_into[0])
        return cd_err_set(CD_ERR_CONFLICT, "customer %s was merged into %s; open the request on "
                                           "the survivor", cust.id, cust.merged_into);
    if (cust.erased)
        return cd_err_set(CD_ERR_CONFLICT, "customer %s was erased", cust.id);
    if (cc->interaction_id.p) {
        struct cd_core_interaction_ref in;
        if ((err = cd_core_interaction_ref(tx, cc->interaction_id, &in)) != CD_OK)
            return err;
        if (!in.exists)
            return cd_err_set(CD_ERR_NOT_FOUND, "no interaction with the id in "
                                                "'interaction_id'");
        if (strcmp(in.customer_id, cust.id) != 0)
            return cd_err_set(CD_ERR_CONFLICT, "the interaction belongs to another customer");
        if (strcmp(in.direction, "inbound") != 0)
            return cd_err_set(CD_ERR_CONFLICT, "only an inbound interaction carries a request");
        /* The clock started when the message that carried the request arrived. */
        received = in.occurred_at;
    }
    const char *regime = cd_dsar_regime_for(
        cc->d->rules, cc->jurisdiction.len ? cc->jurisdiction : cd_str_c(cust.jurisdiction));
    if ((err = cd_dsar_deadlines(cc->d->rules, cd_str_c(regime), cc->type, received, &dl)) !=
        CD_OK)
        return err;
    cd_id_new("dsr", cc->id);
    struct cd_val p[] = {CD_VCSTR(cc->id),
                         CD_VCSTR(cust.id),
                         CD_VCSTR(cd_dsar_type_name(cc->type)),
                         CD_VCSTR("received"),
                         CD_VCSTR(regime),
                         CD_VCSTR(intake_names[cc->intake]),
                         cc->interaction_id.p ? CD_VTEXT(cc->interaction_id) : CD_VNULL,
                         CD_VINT(received),
                         CD_VINT(now),
                         dl.acknowledge ? CD_VINT(dl.acknowledge) : CD_VNULL,
                         CD_VINT(dl.answer),
                         dl.unrolled ? CD_VINT(dl.unrolled) : CD_VNULL,
                         cc->has_details ? CD_VBLOB(cc->details.p, cc->details.len) : CD_VNULL};
    if ((err = cd_tx_exec(tx, "INSERT INTO dsar_requests(id, customer_id, type, state, regime,"
                              " intake, interaction_id, received_at, created_at, updated_at,"
                              " ack_due_at, due_at, original_due_at, unrolled_due_at, details)"
                              " VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$9,$10,$11,$11,$12,$13)",
                          p, 13, NULL, NULL, NULL)) != CD_OK)
        return err;
    if ((err = cd__dsar_record(tx, cc->a, cc->id, cust.id, "dsar.open", NULL, "received",
                               cd_dsar_type_name(cc->type), now)) != CD_OK)
        return err;
    /* The customer signed in to their own session to file it: that verified who they are
     * (proportionate, 11 CCR 7060), so the request goes ahead at once, receipt confirmed. */
    if (cc->intake == CD_DSAR_INTAKE_SELF_SERVICE) {
        struct cd_val v[] = {CD_VCSTR(cc->id), CD_VINT(now)};
        if ((err = cd_tx_exec(tx, "UPDATE dsar_requests SET state = 'in_progress',"
                                  " verified_at = $2, acknowledged_at = $2 WHERE id = $1",
                              v, 2, NULL, NULL, NULL)) != CD_OK ||
            (err = cd__dsar_record(tx, cc->a, cc->id, cust.id, "dsar.verified", "received",
                                   "in_progress", "session", now)) != CD_OK)
            return err;
    }
    return cd__dsar_tell(cc->d, tx, "dsar.opened", cust.id,
                         json_pack("{s:s,s:s,s:o,s:o,s:s}", "request_id", cc->id, "type",
                                   cd_dsar_type_name(cc->type), "received_at",
                                   cd__dsar_time(received), "due_at", cd__dsar_time(dl.answer),
                                   "jurisdiction", regime));
}

static bool code_shape(struct cd_str s)
{
    if (s.len < 2 || s.len >= CD__DSAR_CODE_MAX)
        return false;
    for (size_t i = 0; i < s.len; i++)
        if (!((s.p[i] >= 'A' && s.p[i] <= 'Z') || s.p[i] == '-'))
            return false;
    return true;
}

/* The customer an interaction belongs to, read before the write (to seal the details for
 * them); the write checks it again. */
struct owner_read {
    struct cd_str id;
    struct cd_core_interaction_ref in;
};

static enum cd_err owner_read_fn(struct cd_tx *tx, void *ctx)
{
    struct owner_read *o = ctx;
    return cd_core_interaction_ref(tx, o->id, &o->in);
}

enum cd_err cd_dsar_create(struct cd_dsar *d, const struct cd_actor *a, const json_t *body,
                           enum cd_dsar_intake intake, json_t **out)
{
    static const char *const allowed[] = {"customer_id", "type",         "received_at",
                                          "jurisdiction", "interaction_id", "details", NULL};
    struct create_ctx cc = {.d = d, .a = a, .intake = intake,
                            .details = CD_BUF_INIT(2 * CD__DSAR_TEXT_MAX)};
    struct cd_str type = CD_STR_NULL, cust = CD_STR_NULL, at = CD_STR_NULL;
    enum cd_err err;

    if ((err = cd_json_only(body, allowed)) != CD_OK ||
        (err = cd_json_str(body, "type", true, &type)) != CD_OK ||
        (err = cd_json_str(body, "customer_id", false, &cust)) != CD_OK ||
        (err = cd_json_str(body, "received_at", false, &at)) != CD_OK ||
        (err = cd_json_str(body, "jurisdiction", false, &cc.jurisdiction)) != CD_OK ||
        (err = cd_json_str(body, "interaction_id", false, &cc.interaction_id)) != CD_OK)
        goto out;
    if (!cd_dsar_type_parse(type, &cc.type)) {
        err = cd_err_set(CD_ERR_INVALID, "'type' must be one of access, portability, "
                                         "rectification, erasure, restriction, objection, "
                                         "opt_out_sale_sharing, limit_sensitive_use");
        goto out;
    }
    if (cc.jurisdiction.p && !code_shape(cc.jurisdiction)) {
        err = cd_err_set(CD_ERR_INVALID, "'jurisdiction' must be a code such as EU, UK or US-CA");
        goto out;
    }
    cc.received_at = cd_now_ms();
    if (at.p) {
        int64_t ms;
        if (cd_time_parse(at, &ms) != CD_OK) {
            err = cd_err_set(CD_ERR_INVALID, "'received_at' must be an RFC 3339 time");
            goto out;
        }
        /* A request cannot have been received later than now (a minute for clock drift). */
        if (ms > cc.received_at + 60000 || ms < 0) {
            err = cd_err_set(CD_ERR_INVALID, "'received_at' must not be in the future");
            goto out;
        }
        cc.received_at = ms;
    }
    if (intake == CD_DSAR_INTAKE_INTERACTION && cc.interaction_id.p == NULL) {
        err = cd_err_set(CD_ERR_INVALID, "'interaction_id' is required to convert an interaction");
        goto out;
    }
    if (cc.interaction_id.p && !cd_id_valid(cc.interaction_id, "int")) {
        err = cd_err_set(CD_ERR_NOT_FOUND, "no interaction with the id in 'interaction_id'");
        goto out;
    }
    if (cust.p == NULL && cc.interaction_id.p) {
        struct owner_read o = {.id = cc.interaction_id};
        if ((err = cd_store_read(d->store, owner_read_fn, &o)) != CD_OK)
            goto out;
        if (!o.in.exists) {
            err = cd_err_set(CD_ERR_NOT_FOUND, "no interaction with the id in 'interaction_id'");
            goto out;
        }
        snprintf(cc.customer_id, sizeof cc.customer_id, "%s", o.in.customer_id);
    } else if (cust.p == NULL) {
        err = cd_err_set(CD_ERR_INVALID, "'customer_id' is required (or 'interaction_id')");
        goto out;
    } else if (!cd_id_valid(cust, "cus")) {
        err = cd_err_set(CD_ERR_NOT_FOUND, "no customer with the id in 'customer_id'");
        goto out;
    } else {
        memcpy(cc.customer_id, cust.p, cust.len);
        cc.customer_id[cust.len] = '\0';
    }
    if ((err = seal_text(d, body, "details", false, cc.customer_id, "dsar.details", &cc.details,
                         &cc.has_details)) != CD_OK) {
        if (err == CD_ERR_NOT_FOUND)
            err = cd_err_set(CD_ERR_NOT_FOUND, "no customer with the id in 'customer_id'");
        goto out;
    }
    if ((err = cd_store_write(d->store, create_fn, &cc)) != CD_OK)
        goto out;
    err = cd_dsar_get(d, cd_str_c(cc.id), NULL, false, out);
out:
    cd_buf_free(&cc.details);
    return err;
}

/* ---- reading ------------------------------------------------------------------------------ */

static json_t *time_or_null(int64_t ms)
{
    char ts[CD_TIME_STRLEN];

    if (ms == 0)
        return json_null();
    cd_time_format(ms, ts);
    return json_string(ts);
}

/* The local date (YYYY-MM-DD) of the instant just before ms in the regime's calendar: the last
 * day of a period that ends at ms. */
static json_t *last_day(const struct cd__dsar_regime *g, int64_t ms)
{
    int32_t y;
    int m, day;
    char s[16];

    if (ms == 0 || g == NULL)
        return json_null();
    cd_civil_from_days(cd_tz_day(cd_calendar_tz(g->cal), ms - 1), &y, &m, &day);
    snprintf(s, sizeof s, "%04d-%02d-%02d", (int)y, m, day);
    return json_string(s);
}

static enum cd_err open_note(struct cd_dsar *d, const struct cd__dsar_row *r, const char *field,
                             const struct cd_buf *sealed, bool has, json_t **out)
{
    struct cd_buf plain = CD_BUF_INIT(2 * CD__DSAR_TEXT_MAX);
    enum cd_err err;

    *out = json_null();
    if (!has)
        return CD_OK;
    err = cd_core_note_open(d->core, cd_str_c(r->customer_id), field,
                            CD_VBLOB(sealed->p, sealed->len), &plain);
    if (err == CD_ERR_CRYPTO)
        err = CD_OK; /* erased since: the text went with the customer's key */
    else if (err == CD_OK)
        *out = json_stringn(plain.p ? plain.p : "", plain.len);
    if (plain.p)
        cd_crypto_wipe(plain.p, plain.len);
    cd_buf_free(&plain);
    return *out ? err : CD_ERR_NOMEM;
}

/* The JSON form of a request; texts opened only when asked. */
static enum cd_err request_json(struct cd_dsar *d, const struct cd__dsar_row *r, bool with_texts,
                                json_t **out)
{
    const struct cd__dsar_regime *g = cd__dsar_regime(d->rules, cd_str_c(r->regime));
    int64_t now = cd_now_ms();
    bool open = cd__dsar_open_state(r->state);
    bool overdue = open && now >= r->due_at;
    bool due_soon =
        open && !overdue && r->due_at - now <= (int64_t)d->rules->due_soon_days * 86400000;
    json_t *o, *ext = json_null(), *refusal = json_null(), *deadline, *details = json_null();
    json_t *ext_text = NULL, *ref_text = NULL;
    char rule[64] = "";
    enum cd_err err = CD_OK;

    if (g) {
        struct cd_period p = g->p[r->type].answer;
        if (r->extended_at && g->p[r->type].has_ext)
            p.n += g->p[r->type].ext.n;
        cd_period_format(&p, rule, sizeof rule);
    }
    deadline = json_pack("{s:s,s:s,s:s,s:o}", "rule", rule, "calendar",
                         g ? cd_calendar_id(g->cal) : "", "basis", g ? g->basis : "",
                         "rolled_from", last_day(g, r->unrolled_due_at));
    if (with_texts) {
        if ((err = open_note(d, r, "dsar.details", &r->details, r->has_details, &details)) !=
                CD_OK ||
            (err = open_note(d, r, "dsar.extension", &r->ext_note, r->has_ext_note,
                             &ext_text)) != CD_OK ||
            (err = open_note(d, r, "dsar.refusal", &r->refusal_note, r->has_refusal_note,
                             &ref_text)) != CD_OK)
            goto out;
    }
    if (r->extended_at)
        ext = json_pack("{s:s,s:o,s:O}", "reason", r->ext_reason, "extended_at",
                        time_or_null(r->extended_at), "explanation",
                        ext_text ? ext_text : json_null());
    if (r->state == CD_DSAR_REFUSED)
        refusal = json_pack("{s:s,s:O,s:s}", "reason", r->refusal_reason, "explanation",
                            ref_text ? ref_text : json_null(), "complaint",
                            g ? g->authority : "");
    o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,"
                  "s:b,s:b,s:o}",
                  "id", r->id, "customer_id", r->customer_id, "type",
                  cd_dsar_type_name(r->type), "state", cd_dsar_state_name(r->state), "regime",
                  r->regime, "regime_name", g ? g->name : "", "intake", r->intake,
                  "interaction_id",
                  r->interaction_id[0] ? json_string(r->interaction_id) : json_null(),
                  "received_at", time_or_null(r->received_at), "acknowledge_by",
                  time_or_null(r->ack_due_at), "acknowledged_at",
                  time_or_null(r->acknowledged_at), "due_at", time_or_null(r->due_at),
                  "original_due_at", time_or_null(r->original_due_at), "deadline", deadline,
                  "extension", ext, "refusal", refusal, "closed_at", time_or_null(r->closed_at),
                  "overdue", overdue, "due_soon", due_soon, "details", details);
    if (o && cd_json_set_new(o, "verified_at", time_or_null(r->verified_at)) != CD_OK) {
        json_decref(o);
        o = NULL;
    }
    details = NULL;
    if (o == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    *out = o;
out:
    json_decref(details);
    json_decref(ext_text);
    json_decref(ref_text);
    return err;
}

static enum cd_err history_row(void *ctx, const struct cd_val *c, size_t n)
{
    json_t *items = ctx;
    char from[32], to[32], role[32], reason[32];

    col_text(c[1], from, sizeof from);
    col_text(c[2], to, sizeof to);
    col_text(c[3], role, sizeof role);
    col_text(c[4], reason, sizeof reason);
    json_t *h = json_pack("{s:o,s:o,s:s,s:s,s:o}", "at", time_or_null(c[0].i), "from",
                          from[0] ? json_string(from) : json_null(), "to", to, "actor", role,
                          "reason", reason[0] ? json_string(reason) : json_null());
    return h && json_array_append_new(items, h) == 0 ? CD_OK : CD_ERR_NOMEM;
}

struct get_ctx {
    struct cd_dsar *d;
    const char *id;
    struct cd__dsar_row r;
    json_t *history;
    json_t *tombstone; /* the erasure this request made, or NULL */
    json_t *told;      /* the recipients told of what it changed */
};

static enum cd_err tombstone_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct get_ctx *g = ctx;
    char customer[CD_ID_MAX], role[32];
    json_t *counts = c[2].type == CD_VAL_TEXT ? json_loadb(c[2].p, c[2].len, 0, NULL) : NULL;

    col_text(c[0], customer, sizeof customer);
    col_text(c[3], role, sizeof role);
    json_decref(g->tombstone);
    g->tombstone = json_pack("{s:s,s:o,s:o,s:s}", "customer_id", customer, "erased_at",
                             time_or_null(c[1].i), "counts", counts ? counts : json_object(),
                             "erased_by", role);
    return g->tombstone ? CD_OK : CD_ERR_NOMEM;
}

static enum cd_err get_fn(struct cd_tx *tx, void *ctx)
{
    struct get_ctx *g = ctx;
    struct cd_val p[] = {CD_VCSTR(g->id)};
    enum cd_err err;

    json_array_clear(g->history);
    json_decref(g->told);
    g->told = NULL;
    if ((err = cd__dsar_load(tx, g->id, &g->r)) != CD_OK || !g->r.found)
        return err;
    if ((err = cd_tx_exec(tx, "SELECT at, from_state, to_state, actor_role, reason FROM"
                              " dsar_history WHERE request_id = $1 ORDER BY seq",
                          p, 1, history_row, g->history, NULL)) != CD_OK)
        return err;
    if (g->d->links.notices &&
        (err = g->d->links.notices(tx, cd_str_c(g->r.customer_id), 0, cd_str_c(g->id),
                                   &g->told)) != CD_OK)
        return err;
    return cd_tx_exec(tx, "SELECT customer_id, erased_at, counts, actor_role FROM"
                          " dsar_tombstones WHERE request_id = $1",
                      p, 1, tombstone_row, g, NULL);
}

enum cd_err cd_dsar_get(struct cd_dsar *d, struct cd_str id, const char *customer_id,
                        bool with_texts, json_t **out)
{
    char rid[CD_ID_MAX];
    struct get_ctx g = {.d = d, .id = rid, .history = json_array()};
    json_t *o = NULL;
    enum cd_err err;

    cd__dsar_row_init(&g.r);
    if (g.history == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    if ((err = cd__dsar_copy_id(id, rid)) != CD_OK ||
        (err = cd_store_read(d->store, get_fn, &g)) != CD_OK)
        goto out;
    if (!g.r.found || (customer_id && strcmp(customer_id, g.r.customer_id) != 0)) {
        err = cd_err_set(CD_ERR_NOT_FOUND, "no request with this id");
        goto out;
    }
    if ((err = request_json(d, &g.r, with_texts, &o)) != CD_OK)
        goto out;
    if (json_object_set(o, "history", g.history) != 0 ||
        json_object_set_new(o, "recipients_told", g.told ? json_incref(g.told) : json_array()) !=
            0 ||
        (g.tombstone && json_object_set(o, "tombstone", g.tombstone) != 0)) {
        json_decref(o);
        err = CD_ERR_NOMEM;
        goto out;
    }
    *out = o;
out:
    json_decref(g.history);
    json_decref(g.tombstone);
    json_decref(g.told);
    cd__dsar_row_free(&g.r);
    return err;
}

/* ---- listing ------------------------------------------------------------------------------ */

#define CURSOR_MAX 100

static void cursor_text(int64_t ms, const char *id, char out[CURSOR_MAX])
{
    char raw[64];
    int n = snprintf(raw, sizeof raw, "%lld.%s", (long long)ms, id);

    cd_b64url_encode(raw, (size_t)n, out);
}

static enum cd_err cursor_parse(struct cd_str cursor, int64_t *ms, char id[CD_ID_MAX])
{
    char raw[64], *dot, *end = NULL;
    size_t n = 0;

    if (cd_b64url_decode(cursor, raw, sizeof raw - 1, &n) != CD_OK)
        goto bad;
    raw[n] = '\0';
    if ((dot = memchr(raw, '.', n)) == NULL)
        goto bad;
    *dot = '\0';
    *ms = strtoll(raw, &end, 10);
    if (end == raw || *end != '\0' || !cd_id_valid(cd_str_c(dot + 1), "dsr"))
        goto bad;
    snprintf(id, CD_ID_MAX, "%s", dot + 1);
    return CD_OK;
bad:
    return cd_err_set(CD_ERR_INVALID, "the cursor is not one this server issued");
}

struct list_ctx {
    struct cd_dsar *d;
    const struct cd_dsar_query *q;
    bool by_due;
    int64_t now, cur_ms;
    char cur_id[CD_ID_MAX];
    json_t *items;
    int count;
    int64_t last_ms;
    char last_id[CD_ID_MAX];
    enum cd_err err;
};

static enum cd_err list_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct list_ctx *l = ctx;
    struct cd__dsar_row r;
    json_t *o = NULL;
    enum cd_err err;

    if (++l->count > l->q->limit)
        return CD_OK; /* the one past the page only says there is more */
    cd__dsar_row_init(&r);
    if ((err = req_row_fn(&r, c, n)) == CD_OK && (err = request_json(l->d, &r, false, &o)) == CD_OK &&
        json_array_append_new(l->items, o) != 0)
        err = CD_ERR_NOMEM;
    l->last_ms = l->by_due ? r.due_at : r.received_at;
    snprintf(l->last_id, sizeof l->last_id, "%s", r.id);
    cd__dsar_row_free(&r);
    return err;
}

static enum cd_err list_fn(struct cd_tx *tx, void *ctx)
{
    struct list_ctx *l = ctx;
    const struct cd_dsar_query *q = l->q;
    int64_t soon = l->now + (int64_t)l->d->rules->due_soon_days * 86400000;
    struct cd_val p[] = {CD_VTEXT(q->customer_id),
                         CD_VTEXT(q->type),
                         CD_VTEXT(q->state),
                         CD_VINT(l->cur_ms),
                         CD_VCSTR(l->cur_id),
                         CD_VINT(q->limit + 1),
                         CD_VINT(l->now),
                         CD_VINT(soon)};
    /* Every filter is a term that is true when the filter is empty, so one statement serves;
     * each statement is given the parameters it uses ($1..$6, then the times it compares). */
#define FILTERS                                                                                  \
    " AND ($1 = '' OR customer_id = $1) AND ($2 = '' OR type = $2)"                              \
    " AND ($3 = '' OR state = $3 OR ($3 = 'open' AND closed_at IS NULL)"                          \
    " OR ($3 = 'closed' AND closed_at IS NOT NULL))"
    l->count = 0;
    json_array_clear(l->items);
    if (cd_str_eq_c(q->due, "overdue"))
        return cd_tx_exec(tx,
                          "SELECT " REQUEST_COLS " FROM dsar_requests WHERE closed_at IS NULL"
                          " AND (due_at <= $7 OR (acknowledged_at IS NULL AND ack_due_at <= $7))"
                          " AND (due_at, id) > ($4, $5)" FILTERS " ORDER BY due_at, id LIMIT $6",
                          p, 7, list_row, l, NULL);
    if (cd_str_eq_c(q->due, "due_soon"))
        return cd_tx_exec(tx,
                          "SELECT " REQUEST_COLS " FROM dsar_requests WHERE closed_at IS NULL"
                          " AND due_at > $7 AND due_at <= $8"
                          " AND (due_at, id) > ($4, $5)" FILTERS " ORDER BY due_at, id LIMIT $6",
                          p, 8, list_row, l, NULL);
    return cd_tx_exec(tx,
                      "SELECT " REQUEST_COLS " FROM dsar_requests WHERE (received_at, id) < ($4, $5)"
                      FILTERS " ORDER BY received_at DESC, id DESC LIMIT $6",
                      p, 6, list_row, l, NULL);
#undef FILTERS
}

enum cd_err cd_dsar_list(struct cd_dsar *d, const struct cd_dsar_query *q, json_t **out)
{
    struct list_ctx l = {.d = d, .q = q, .now = cd_now_ms(), .items = json_array()};
    enum cd_dsar_type t;
    enum cd_dsar_state s;
    enum cd_err err;
    json_t *next = NULL;

    if (l.items == NULL)
        return CD_ERR_NOMEM;
    if (q->type.len && !cd_dsar_type_parse(q->type, &t))
        err = cd_err_set(CD_ERR_INVALID, "'type' names no request type");
    else if (q->state.len && !cd_str_eq_c(q->state, "open") && !cd_str_eq_c(q->state, "closed") &&
             !cd_dsar_state_parse(q->state, &s))
        err = cd_err_set(CD_ERR_INVALID, "'state' must be a state, open or closed");
    else if (q->due.len && !cd_str_eq_c(q->due, "overdue") && !cd_str_eq_c(q->due, "due_soon"))
        err = cd_err_set(CD_ERR_INVALID, "'due' must be overdue or due_soon");
    else if (q->limit < 1 || q->limit > 200)
        err = cd_err_set(CD_ERR_INVALID, "'limit' must be 1 to 200");
    else
        err = CD_OK;
    if (err != CD_OK)
        goto out;
    l.by_due = q->due.len > 0;
    if (q->cursor.len) {
        if ((err = cursor_parse(q->cursor, &l.cur_ms, l.cur_id)) != CD_OK)
            goto out;
    } else if (l.by_due) {
        l.cur_ms = INT64_MIN;
        snprintf(l.cur_id, sizeof l.cur_id, "%s", "");
    } else {
        l.cur_ms = INT64_MAX;
        snprintf(l.cur_id, sizeof l.cur_id, "%s", "~"); /* after every id */
    }
    if ((err = cd_store_read(d->store, list_fn, &l)) != CD_OK)
        goto out;
    if (l.count > q->limit) {
        char cur[CURSOR_MAX];
        cursor_text(l.last_ms, l.last_id, cur);
        next = json_string(cur);
    } else {
        next = json_null();
    }
    *out = json_pack("{s:O,s:o}", "items", l.items, "next_cursor", next);
    err = *out ? CD_OK : CD_ERR_NOMEM;
out:
    json_decref(l.items);
    return err;
}

/* ---- changes of state --------------------------------------------------------------------- */

static const char *const refusal_reasons[] = {
    "manifestly_unfounded", "excessive", "identity_not_verified", "exemption", "legal_hold",
    "not_applicable", NULL};
static const char *const extension_reasons[] = {"complexity", "number_of_requests", "other",
                                                NULL};

static bool in_list(struct cd_str s, const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        if (cd_str_eq_c(s, list[i]))
            return true;
    return false;
}

struct change_ctx {
    struct cd_dsar *d;
    const struct cd_actor *a;
    char id[CD_ID_MAX];
    enum cd_dsar_state to;
    bool extend, acknowledge;
    char reason[32];
    struct cd_buf note;
    bool has_note;
    struct cd_str explanation; /* the extension's, in clear for the customer (borrowed) */
};

static enum cd_err change_fn(struct cd_tx *tx, void *ctx)
{
    struct change_ctx *cc = ctx;
    struct cd__dsar_row r;
    int64_t now = cd_now_ms();
    char action[40];
    enum cd_err err;

    cd__dsar_row_init(&r);
    if ((err = cd__dsar_load(tx, cc->id, &r)) != CD_OK)
        goto out;
    if (!r.found) {
        err = cd_err_set(CD_ERR_NOT_FOUND, "no request with this id");
        goto out;
    }
    const char *from = cd_dsar_state_name(r.state);
    int64_t ack = r.acknowledged_at ? r.acknowledged_at : now;
    if (cc->acknowledge) {
        if (!cd__dsar_open_state(r.state) || r.acknowledged_at) {
            err = cd_err_set(CD_ERR_CONFLICT, "the request is %s",
                             r.acknowledged_at ? "acknowledged already" : "closed");
            goto out;
        }
        struct cd_val p[] = {CD_VCSTR(cc->id), CD_VINT(now)};
        if ((err = cd_tx_exec(tx, "UPDATE dsar_requests SET acknowledged_at = $2, updated_at = $2"
                                  " WHERE id = $1", p, 2, NULL, NULL, NULL)) == CD_OK)
            err = cd__dsar_record(tx, cc->a, cc->id, r.customer_id, "dsar.acknowledge", from, from,
                                NULL, now);
        goto out;
    }
    if (cc->extend) {
        struct cd_dsar_deadlines dl;
        if (r.state != CD_DSAR_IN_PROGRESS || r.extended_at) {
            err = cd_err_set(CD_ERR_CONFLICT,
                             r.extended_at ? "the request was extended already; the law allows "
                                             "one extension"
                                           : "only a request in progress can be extended (it is "
                                             "%s)",
                             from);
            goto out;
        }
        if (now >= r.due_at) {
            err = cd_err_set(CD_ERR_CONFLICT, "the deadline has passed: an extension must be "
                                              "made, and the customer told, before it");
            goto out;
        }
        if ((err = cd_dsar_deadlines(cc->d->rules, cd_str_c(r.regime), r.type, r.received_at,
                                     &dl)) != CD_OK)
            goto out;
        if (dl.extended == 0) {
            err = cd_err_set(CD_ERR_CONFLICT, "the %s rules allow no extension for %s requests",
                             r.regime, cd_dsar_type_name(r.type));
            goto out;
        }
        struct cd_val p[] = {CD_VCSTR(cc->id), CD_VINT(now), CD_VINT(dl.extended),
                             CD_VCSTR(cc->reason), CD_VBLOB(cc->note.p, cc->note.len),
                             CD_VINT(ack)};
        if ((err = cd_tx_exec(tx, "UPDATE dsar_requests SET state = 'extended', extended_at = $2,"
                                  " due_at = $3, extension_reason = $4, extension_note = $5,"
                                  " acknowledged_at = $6, updated_at = $2, due_soon_at = NULL"
                                  " WHERE id = $1",
                              p, 6, NULL, NULL, NULL)) != CD_OK ||
            (err = cd__dsar_record(tx, cc->a, cc->id, r.customer_id, "dsar.extend", from,
                                   "extended", cc->reason, now)) != CD_OK)
            goto out;
        /* The law wants the customer told of the extension and its reasons (GDPR Art. 12(3),
         * CCPA 1798.130(a)(2)): whoever writes to them subscribes to dsar.extended. */
        err = cd__dsar_tell(cc->d, tx, "dsar.extended", r.customer_id,
                            json_pack("{s:s,s:s,s:s,s:s%,s:o,s:o}", "request_id", cc->id, "type",
                                      cd_dsar_type_name(r.type), "reason", cc->reason,
                                      "explanation", cc->explanation.p, cc->explanation.len,
                                      "original_due_at", cd__dsar_time(r.due_at), "due_at",
                                      cd__dsar_time(dl.extended)));
        goto out;
    }
    if (!cd_dsar_transition_allowed(r.state, cc->to)) {
        err = cd_err_set(CD_ERR_CONFLICT, "a request that is %s cannot become %s", from,
                         cd_dsar_state_name(cc->to));
        goto out;
    }
    bool closes = !cd__dsar_open_state(cc->to);
    struct cd_val p[] = {CD_VCSTR(cc->id),
                         CD_VINT(now),
                         CD_VCSTR(cd_dsar_state_name(cc->to)),
                         closes ? CD_VINT(now) : CD_VNULL,
                         cc->to == CD_DSAR_REFUSED ? CD_VCSTR(cc->reason) : CD_VNULL,
                         cc->has_note && cc->to == CD_DSAR_REFUSED
                             ? CD_VBLOB(cc->note.p, cc->note.len)
                             : CD_VNULL,
                         CD_VINT(ack)};
    if ((err = cd_tx_exec(tx, "UPDATE dsar_requests SET state = $3, closed_at = $4,"
                              " refusal_reason = $5, refusal_note = $6, acknowledged_at = $7,"
                              " updated_at = $2 WHERE id = $1",
                          p, 7, NULL, NULL, NULL)) != CD_OK)
        goto out;
    /* A code pending for a request that moves on is void: the decision was made otherwise. */
    if (cc->to != CD_DSAR_VERIFYING &&
        (err = cd_tx_exec(tx, "DELETE FROM dsar_verifications WHERE request_id = $1", p, 1, NULL,
                          NULL, NULL)) != CD_OK)
        goto out;
    snprintf(action, sizeof action, "dsar.%s", cd_dsar_state_name(cc->to));
    if ((err = cd__dsar_record(tx, cc->a, cc->id, r.customer_id, action, from,
                               cd_dsar_state_name(cc->to), cc->reason[0] ? cc->reason : NULL,
                               now)) != CD_OK || !closes)
        goto out;
    err = cd__dsar_tell(cc->d, tx, "dsar.completed", r.customer_id,
                        json_pack("{s:s,s:s,s:s,s:o}", "request_id", cc->id, "type",
                                  cd_dsar_type_name(r.type), "outcome",
                                  cd_dsar_state_name(cc->to), "completed_at",
                                  cd__dsar_time(now)));
out:
    cd__dsar_row_free(&r);
    return err;
}

static enum cd_err run_change(struct cd_dsar *d, struct change_ctx *cc, const json_t *body,
                              const char *note_key, bool note_required, const char *field,
                              json_t **out)
{
    struct cd__dsar_row r;
    enum cd_err err = CD_OK;

    /* The customer of the request, read before the change: its texts are sealed for them. */
    cd__dsar_row_init(&r);
    if (note_key) {
        if ((err = cd__dsar_read(d, cc->id, &r)) != CD_OK)
            goto out;
        if ((err = seal_text(d, body, note_key, note_required, r.customer_id, field,
                             &cc->note, &cc->has_note)) != CD_OK)
            goto out;
    }
    if ((err = cd_store_write(d->store, change_fn, cc)) == CD_OK)
        err = cd_dsar_get(d, cd_str_c(cc->id), NULL, false, out);
out:
    cd__dsar_row_free(&r);
    return err;
}

enum cd_err cd_dsar_transition(struct cd_dsar *d, const struct cd_actor *a, struct cd_str id,
                               const json_t *body, json_t **out)
{
    static const char *const allowed[] = {"state", "reason", "explanation", NULL};
    struct change_ctx cc = {.d = d, .a = a, .note = CD_BUF_INIT(2 * CD__DSAR_TEXT_MAX)};
    struct cd_str state = CD_STR_NULL, reason = CD_STR_NULL;
    enum cd_err err;

    if ((err = cd__dsar_copy_id(id, cc.id)) != CD_OK || (err = cd_json_only(body, allowed)) != CD_OK ||
        (err = cd_json_str(body, "state", true, &state)) != CD_OK ||
        (err = cd_json_str(body, "reason", false, &reason)) != CD_OK)
        goto out;
    if (!cd_dsar_state_parse(state, &cc.to) || cc.to == CD_DSAR_EXTENDED ||
        cc.to == CD_DSAR_RECEIVED) {
        err = cd_err_set(CD_ERR_INVALID, "'state' must be verifying, in_progress, completed, "
                                         "refused or withdrawn (extend with POST "
                                         "/v1/dsar/{id}/extension)");
        goto out;
    }
    if (cc.to == CD_DSAR_REFUSED && (reason.p == NULL || !in_list(reason, refusal_reasons))) {
        err = cd_err_set(CD_ERR_INVALID, "refusing needs a 'reason': manifestly_unfounded, "
                                         "excessive, identity_not_verified, exemption, "
                                         "legal_hold or not_applicable");
        goto out;
    }
    if (reason.p && cc.to != CD_DSAR_REFUSED) {
        err = cd_err_set(CD_ERR_INVALID, "'reason' is given only when refusing");
        goto out;
    }
    if (reason.p)
        snprintf(cc.reason, sizeof cc.reason, "%.*s", (int)reason.len, reason.p);
    if (json_object_get(body, "explanation") && cc.to != CD_DSAR_REFUSED) {
        err = cd_err_set(CD_ERR_INVALID, "'explanation' is given only when refusing");
        goto out;
    }
    err = run_change(d, &cc, body, cc.to == CD_DSAR_REFUSED ? "explanation" : NULL, false,
                     "dsar.refusal", out);
out:
    cd_buf_free(&cc.note);
    return err;
}

enum cd_err cd_dsar_extend(struct cd_dsar *d, const struct cd_actor *a, struct cd_str id,
                           const json_t *body, json_t **out)
{
    static const char *const allowed[] = {"reason", "explanation", NULL};
    struct change_ctx cc = {.d = d, .a = a, .extend = true,
                            .note = CD_BUF_INIT(2 * CD__DSAR_TEXT_MAX)};
    struct cd_str reason = CD_STR_NULL;
    enum cd_err err;

    if ((err = cd__dsar_copy_id(id, cc.id)) != CD_OK || (err = cd_json_only(body, allowed)) != CD_OK ||
        (err = cd_json_str(body, "reason", true, &reason)) != CD_OK)
        goto out;
    if (!in_list(reason, extension_reasons)) {
        err = cd_err_set(CD_ERR_INVALID, "'reason' must be complexity, number_of_requests or "
                                         "other");
        goto out;
    }
    snprintf(cc.reason, sizeof cc.reason, "%.*s", (int)reason.len, reason.p);
    /* run_change checks the explanation (required, its length) as it seals it. */
    if ((err = cd_json_str(body, "explanation", false, &cc.explanation)) != CD_OK)
        goto out;
    err = run_change(d, &cc, body, "explanation", true, "dsar.extension", out);
out:
    cd_buf_free(&cc.note);
    return err;
}

enum cd_err cd_dsar_acknowledge(struct cd_dsar *d, const struct cd_actor *a, struct cd_str id,
                                json_t **out)
{
    struct change_ctx cc = {.d = d, .a = a, .acknowledge = true,
                            .note = CD_BUF_INIT(2 * CD__DSAR_TEXT_MAX)};
    enum cd_err err;

    if ((err = cd__dsar_copy_id(id, cc.id)) == CD_OK)
        err = run_change(d, &cc, NULL, NULL, false, NULL, out);
    cd_buf_free(&cc.note);
    return err;
}

/* ---- counts ------------------------------------------------------------------------------- */

static enum cd_err count_row(void *ctx, const struct cd_val *c, size_t n)
{
    struct cd_dsar_counts *out = ctx;
    char state[32];
    enum cd_dsar_state s;

    col_text(c[0], state, sizeof state);
    if (cd_dsar_state_parse(cd_str_c(state), &s))
        out->by_state[s] = (uint64_t)c[1].i;
    return CD_OK;
}

struct counts_ctx {
    int64_t now;
    struct cd_dsar_counts *out;
};

static enum cd_err counts_fn(struct cd_tx *tx, void *ctx)
{
    struct counts_ctx *cc = ctx;
    struct cd_val p[] = {CD_VINT(cc->now)};
    int64_t n = 0;
    enum cd_err err;

    memset(cc->out, 0, sizeof *cc->out);
    if ((err = cd_tx_exec(tx, "SELECT state, count(*) FROM dsar_requests GROUP BY state", NULL, 0,
                          count_row, cc->out, NULL)) != CD_OK ||
        (err = cd_tx_int(tx, "SELECT count(*) FROM dsar_requests WHERE closed_at IS NULL"
                             " AND due_at <= $1", p, 1, &n)) != CD_OK)
        return err;
    cc->out->overdue = (uint64_t)n;
    if ((err = cd_tx_int(tx, "SELECT count(*) FROM dsar_requests WHERE closed_at IS NULL"
                             " AND acknowledged_at IS NULL AND ack_due_at <= $1",
                         p, 1, &n)) != CD_OK)
        return err;
    cc->out->ack_overdue = (uint64_t)n;
    return CD_OK;
}

enum cd_err cd_dsar_counts(struct cd_store *s, int64_t now_ms, struct cd_dsar_counts *out)
{
    struct counts_ctx cc = {now_ms, out};
    return cd_store_read(s, counts_fn, &cc);
}
