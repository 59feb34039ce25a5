/* Customers and their identities: create, read, find by identity, list, update, add an
 * identity, merge. Personal fields are sealed before the write transaction starts, so the
 * writer thread only runs SQL. */
#include <stdio.h>
#include <string.h>
#include "core_int.h"
#include "outbox/outbox.h"

struct ident_in {
    struct cd_str type;
    char network[72];
    struct cd_buf norm;   /* canonical value */
    struct cd_buf sealed; /* sealed canonical value */
    uint8_t lookup[CD_CRYPTO_HASH_LEN];
    uint8_t skeleton[CD_CRYPTO_HASH_LEN];
    bool beyond_ascii;
};

static void idents_free(struct ident_in *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        cd_buf_free(&v[i].norm);
        cd_buf_free(&v[i].sealed);
    }
    cd_free(v);
}

/* Parses {"type","value","network"?} and computes its canonical form and blind index. */
static enum cd_err parse_identity(struct cd_core *c, const json_t *o, struct ident_in *id)
{
    static const char *const allowed[] = {"type", "value", "network", NULL};
    struct cd_str value = CD_STR_NULL, network = CD_STR_NULL;
    enum cd_err err;

    id->norm = CD_BUF_INIT(1024);
    id->sealed = CD_BUF_INIT(2048);
    if (!json_is_object(o))
        return cd_err_set(CD_ERR_INVALID, "an identity is an object {\"type\",\"value\"}");
    if ((err = cd_json_only(o, allowed)) != CD_OK ||
        (err = cd_json_str(o, "type", true, &id->type)) != CD_OK ||
        (err = cd_json_str(o, "value", true, &value)) != CD_OK ||
        (err = cd_json_str(o, "network", false, &network)) != CD_OK)
        return err;
    if ((err = cd_core_identity_normalize(id->type, network, value, &id->norm)) != CD_OK)
        return err;
    id->network[0] = '\0';
    if (cd_str_eq_c(id->type, "social") || cd_str_eq_c(id->type, "external")) {
        const char *colon = memchr(id->norm.p, ':', id->norm.len);
        size_t n = colon ? (size_t)(colon - id->norm.p) : 0;
        if (n >= sizeof id->network)
            n = sizeof id->network - 1;
        memcpy(id->network, id->norm.p, n);
        id->network[n] = '\0';
    }
    cd__core_lookup(c, id->type, (struct cd_str){id->norm.p, id->norm.len}, id->lookup);
    return cd__core_identity_skeleton(c, id->type, (struct cd_str){id->norm.p, id->norm.len},
                                      id->skeleton, &id->beyond_ascii);
}

/* The identity as the API shows it: social and external values without the network prefix. */
static json_t *identity_json(struct cd_str type, struct cd_str norm, const char *network)
{
    json_t *o = json_object();
    struct cd_str v = norm;

    if (o == NULL)
        return NULL;
    if (network && network[0]) {
        size_t skip = strlen(network) + 1;
        if (skip <= v.len)
            v.p += skip, v.len -= skip;
        if (json_object_set_new(o, "network", json_string(network)) != 0)
            goto fail;
    }
    if (json_object_set_new(o, "type", json_stringn(type.p, type.len)) != 0 ||
        json_object_set_new(o, "value", json_stringn(v.p, v.len)) != 0)
        goto fail;
    return o;
fail:
    json_decref(o);
    return NULL;
}

static enum cd_err check_short(const json_t *body, const char *key, size_t max, struct cd_str *out)
{
    enum cd_err err = cd_json_str(body, key, false, out);

    if (err == CD_OK && out->len > max)
        return cd_err_set(CD_ERR_INVALID, "member '%s' is longer than %zu bytes", key, max);
    if (err == CD_OK && out->p && memchr(out->p, 0, out->len))
        return cd_err_set(CD_ERR_INVALID, "member '%s' may not contain NUL characters", key);
    return err;
}

/* The profile fields a create or an update may carry. */
struct profile_in {
    struct cd_str display_name, locale, time_zone, jurisdiction;
    char *attributes; /* serialised attributes object, cd_malloc'ed */
    bool has_display_name, has_attributes, has_locale, has_time_zone, has_jurisdiction;
};

static enum cd_err parse_profile(const json_t *body, struct profile_in *p)
{
    enum cd_err err;
    json_t *attrs = NULL;

    memset(p, 0, sizeof *p);
    p->has_display_name = json_object_get(body, "display_name") != NULL;
    p->has_attributes = json_object_get(body, "attributes") != NULL;
    p->has_locale = json_object_get(body, "locale") != NULL;
    p->has_time_zone = json_object_get(body, "time_zone") != NULL;
    p->has_jurisdiction = json_object_get(body, "jurisdiction") != NULL;
    if ((err = check_short(body, "display_name", 200, &p->display_name)) != CD_OK ||
        (err = check_short(body, "locale", CD_CUSTOMER_LOCALE_MAX, &p->locale)) != CD_OK ||
        (err = check_short(body, "time_zone", CD_CUSTOMER_TZ_MAX, &p->time_zone)) != CD_OK ||
        (err = check_short(body, "jurisdiction", CD_CUSTOMER_JURISDICTION_MAX,
                           &p->jurisdiction)) != CD_OK ||
        (err = cd_json_obj(body, "attributes", false, &attrs)) != CD_OK)
        return err;
    if (attrs) {
        size_t n = 0;
        if ((err = cd_json_dump(attrs, &p->attributes, &n)) != CD_OK)
            return err;
        if (n > CD_MAX_ATTRS)
            return cd_err_set(CD_ERR_INVALID, "attributes are larger than %d bytes",
                              CD_MAX_ATTRS);
    }
    return CD_OK;
}

/* Tells the capabilities that follow customers (core_hooks.customer_changed) of a committed
 * change. */
static void changed(struct cd_core *c, const char *customer_id)
{
    if (c->hooks.customer_changed)
        c->hooks.customer_changed(c->hooks.ctx, customer_id);
}

/* ---- reading a customer ---- */

struct customer_row {
    bool found;
    char id[CD_ID_MAX];
    char merged_into[CD_ID_MAX];
    int64_t created_at, updated_at, merged_at, erased_at;
    char locale[CD_CUSTOMER_LOCALE_MAX + 1], time_zone[CD_CUSTOMER_TZ_MAX + 1],
        jurisdiction[CD_CUSTOMER_JURISDICTION_MAX + 1];
    bool restricted;
    struct cd_buf display_name, attributes, wrapped; /* sealed bytes */
    bool has_display_name, has_attributes;
    json_t *identities; /* built after the key is opened */
    struct cd_buf ident_rows; /* kind \0 network \0 sealed-len(8) sealed ... */
};

static enum cd_err customer_row_fn(void *ctx, const struct cd_val *cols, size_t n)
{
    struct customer_row *r = ctx;
    enum cd_err err = CD_OK;

    r->found = true;
    cd__core_col_text(cols[0], r->id, sizeof r->id);
    r->created_at = cols[1].i;
    r->updated_at = cols[2].i;
    cd__core_col_text(cols[3], r->merged_into, sizeof r->merged_into);
    r->merged_at = cols[4].type == CD_VAL_INT ? cols[4].i : 0;
    r->has_display_name = cols[5].type == CD_VAL_BLOB;
    r->has_attributes = cols[6].type == CD_VAL_BLOB;
    if (r->has_display_name)
        err = cd_buf_append(&r->display_name, cols[5].p, cols[5].len);
    if (err == CD_OK && r->has_attributes)
        err = cd_buf_append(&r->attributes, cols[6].p, cols[6].len);
    cd__core_col_text(cols[7], r->locale, sizeof r->locale);
    cd__core_col_text(cols[8], r->time_zone, sizeof r->time_zone);
    cd__core_col_text(cols[9], r->jurisdiction, sizeof r->jurisdiction);
    if (err == CD_OK && cols[10].type == CD_VAL_BLOB)
        err = cd_buf_append(&r->wrapped, cols[10].p, cols[10].len);
    r->restricted = cols[11].type == CD_VAL_INT && cols[11].i != 0;
    r->erased_at = cols[12].type == CD_VAL_INT ? cols[12].i : 0;
    return err;
}

static enum cd_err ident_row_fn(void *ctx, const struct cd_val *cols, size_t n)
{
    struct customer_row *r = ctx;
    uint64_t len = cols[2].len;
    enum cd_err err;

    /* Packed as: kind NUL network NUL length(8 bytes) sealed-bytes. */
    if ((err = cd_buf_append(&r->ident_rows, cols[0].p, cols[0].len)) != CD_OK ||
        (err = cd_buf_putc(&r->ident_rows, '\0')) != CD_OK ||
        (err = cd_buf_append(&r->ident_rows, cols[1].type == CD_VAL_TEXT ? cols[1].p : "",
                             cols[1].type == CD_VAL_TEXT ? cols[1].len : 0)) != CD_OK ||
        (err = cd_buf_putc(&r->ident_rows, '\0')) != CD_OK ||
        (err = cd_buf_append(&r->ident_rows, &len, sizeof len)) != CD_OK ||
        (err = cd_buf_append(&r->ident_rows, cols[2].p, cols[2].len)) != CD_OK)
        return err;
    return CD_OK;
}

static void customer_row_init(struct customer_row *r)
{
    memset(r, 0, sizeof *r);
    r->display_name = CD_BUF_INIT(4096);
    r->attributes = CD_BUF_INIT(CD_MAX_ATTRS + 1024);
    r->wrapped = CD_BUF_INIT(256);
    r->ident_rows = CD_BUF_INIT(64 * 1024);
}

static void customer_row_free(struct customer_row *r)
{
    cd_buf_free(&r->display_name);
    cd_buf_free(&r->attributes);
    cd_buf_free(&r->wrapped);
    cd_buf_free(&r->ident_rows);
}

static const char SELECT_CUSTOMER[] =
    "SELECT id, created_at, updated_at, merged_into, merged_at, display_name, attributes,"
    " locale, time_zone, jurisdiction, key_wrapped, restricted, erased_at FROM customers"
    " WHERE id = $1";

static enum cd_err load_customer(struct cd_tx *tx, const char *id, struct customer_row *r)
{
    struct cd_val p[] = {CD_VCSTR(id)};
    enum cd_err err;

    if ((err = cd_tx_exec(tx, SELECT_CUSTOMER, p, 1, customer_row_fn, r, NULL)) != CD_OK)
        return err;
    if (!r->found || r->merged_into[0])
        return CD_OK;
    return cd_tx_exec(tx, "SELECT kind, network, value FROM identities WHERE customer_id = $1"
                          " ORDER BY created_at, kind",
                      p, 1, ident_row_fn, r, NULL);
}

static enum cd_err set_time(json_t *o, const char *key, int64_t ms)
{
    char ts[CD_TIME_STRLEN];

    cd_time_format(ms, ts);
    return cd_json_set_new(o, key, json_string(ts));
}

static enum cd_err set_opt_str(json_t *o, const char *key, const char *v)
{
    return cd_json_set_new(o, key, v[0] ? json_string(v) : json_null());
}

/* Builds the customer JSON from a loaded row, opening sealed fields the categories allow. */
static enum cd_err customer_json(struct cd_core *c, struct customer_row *r, unsigned fields,
                                 json_t **out)
{
    json_t *o = json_object(), *idents = NULL, *v = NULL;
    struct cd__ckey k;
    struct cd_buf plain = CD_BUF_INIT(CD_MAX_ATTRS + 1024);
    bool present = false, key_open = false;
    enum cd_err err = CD_ERR_NOMEM;

    if (o == NULL)
        return CD_ERR_NOMEM;
    if (cd_json_set_new(o, "id", json_string(r->id)) != CD_OK)
        goto out;
    if (r->merged_into[0]) {
        if (cd_json_set_new(o, "status", json_string("merged")) != CD_OK ||
            cd_json_set_new(o, "merged_into", json_string(r->merged_into)) != CD_OK ||
            set_time(o, "merged_at", r->merged_at) != CD_OK)
            goto out;
        err = CD_OK;
        goto done;
    }
    if (r->erased_at) {
        if (cd_json_set_new(o, "status", json_string("erased")) != CD_OK ||
            set_time(o, "erased_at", r->erased_at) != CD_OK)
            goto out;
        err = CD_OK;
        goto done;
    }
    if (cd_json_set_new(o, "status", json_string("active")) != CD_OK ||
        cd_json_set_new(o, "restricted", json_boolean(r->restricted)) != CD_OK ||
        set_time(o, "created_at", r->created_at) != CD_OK ||
        set_time(o, "updated_at", r->updated_at) != CD_OK)
        goto out;
    if (fields & (CD_FIELDS_CONTACT | CD_FIELDS_PROFILE)) {
        struct cd_val w = {CD_VAL_BLOB, 0, r->wrapped.p, r->wrapped.len};
        if (r->wrapped.len == 0)
            w.type = CD_VAL_NULL;
        if ((err = cd__core_key_open(c, r->id, w, &k)) != CD_OK)
            goto out;
        key_open = true;
    }
    if (fields & CD_FIELDS_CONTACT) {
        struct cd_val dn = {r->has_display_name ? CD_VAL_BLOB : CD_VAL_NULL, 0, r->display_name.p,
                            r->display_name.len};
        if ((err = cd__core_open(&k, "display_name", dn, &plain, &present)) != CD_OK)
            goto out;
        err = CD_ERR_NOMEM;
        if (cd_json_set_new(o, "display_name",
                            present ? json_stringn(plain.p, plain.len) : json_null()) != CD_OK)
            goto out;
        if ((idents = json_array()) == NULL)
            goto out;
        /* Walk the packed identity rows. */
        const char *p = r->ident_rows.p, *end = p + r->ident_rows.len;
        while (p && p < end) {
            const char *kind = p, *network = p + strlen(p) + 1;
            const char *lenp = network + strlen(network) + 1;
            uint64_t len;
            memcpy(&len, lenp, sizeof len);
            struct cd_val sv = {CD_VAL_BLOB, 0, lenp + sizeof len, (size_t)len};
            if ((err = cd__core_open(&k, "identity", sv, &plain, &present)) != CD_OK)
                goto out;
            err = CD_ERR_NOMEM;
            json_t *ij = identity_json(cd_str_c(kind), (struct cd_str){plain.p, plain.len},
                                       network);
            if (ij == NULL || json_array_append_new(idents, ij) != 0)
                goto out;
            p = lenp + sizeof len + len;
        }
        if (cd_json_set_new(o, "identities", idents) != CD_OK) {
            idents = NULL;
            goto out;
        }
        idents = NULL;
    }
    if (fields & CD_FIELDS_PROFILE) {
        struct cd_val av = {r->has_attributes ? CD_VAL_BLOB : CD_VAL_NULL, 0, r->attributes.p,
                            r->attributes.len};
        if ((err = cd__core_open(&k, "attributes", av, &plain, &present)) != CD_OK)
            goto out;
        err = CD_ERR_NOMEM;
        if (present) {
            json_error_t jerr;
            v = json_loadb(plain.p, plain.len, 0, &jerr);
            if (v == NULL) {
                err = cd_err_set(CD_ERR_INTEGRITY, "stored attributes are not valid JSON");
                goto out;
            }
        } else if ((v = json_object()) == NULL) {
            goto out;
        }
        if (cd_json_set_new(o, "attributes", v) != CD_OK) {
            v = NULL;
            goto out;
        }
        v = NULL;
    }
    if ((fields & CD_FIELDS_COARSE) &&
        (set_opt_str(o, "locale", r->locale) != CD_OK ||
         set_opt_str(o, "time_zone", r->time_zone) != CD_OK ||
         set_opt_str(o, "jurisdiction", r->jurisdiction) != CD_OK))
        goto out;
    err = CD_OK;
done:
    *out = o;
    o = NULL;
out:
    if (key_open)
        cd__core_key_wipe(&k);
    if (plain.p)
        cd_crypto_wipe(plain.p, plain.cap);
    cd_buf_free(&plain);
    json_decref(idents);
    json_decref(v);
    json_decref(o);
    return err;
}

struct get_ctx {
    struct cd_str id;
    struct customer_row row;
};

static enum cd_err get_fn(struct cd_tx *tx, void *ctx)
{
    struct get_ctx *g = ctx;
    char id[CD_ID_MAX];

    if (!cd_id_valid(g->id, "cus"))
        return cd_err_set(CD_ERR_NOT_FOUND, "no customer with this id");
    memcpy(id, g->id.p, g->id.len);
    id[g->id.len] = '\0';
    return load_customer(tx, id, &g->row);
}

/* Reads the customer g->id into g->row (which the caller initialised and frees).
 * Errors: CD_ERR_NOT_FOUND, CD_ERR_STORE, CD_ERR_NOMEM. */
static enum cd_err get_customer(struct cd_core *c, struct get_ctx *g)
{
    enum cd_err err = cd_store_read(c->store, get_fn, g);

    if (err == CD_OK && !g->row.found)
        err = cd_err_set(CD_ERR_NOT_FOUND, "no customer with this id");
    return err;
}

/* Reads, audits (as `action`) and renders a customer. action NULL: nothing beyond the
 * reference fields is read, or the caller records the read itself. */
static enum cd_err read_customer(struct cd_core *c, const struct cd_actor *a, struct cd_str id,
                                 unsigned fields, const char *action, json_t **out)
{
    struct get_ctx g = {id, {0}};
    enum cd_err err;

    customer_row_init(&g.row);
    if ((err = get_customer(c, &g)) != CD_OK)
        goto out;
    if (action && !g.row.merged_into[0] && !g.row.erased_at) {
        if ((err = cd__core_read_allowed(c, a, g.row.id, g.row.restricted, action)) != CD_OK)
            goto out;
        if ((err = cd__core_audit_read(c, a, action, g.row.id, NULL, fields)) != CD_OK)
            goto out;
    }
    err = customer_json(c, &g.row, fields, out);
out:
    customer_row_free(&g.row);
    return err;
}

/* The customer as the answer of a write (or a list) shows it: a read under the actor's purpose,
 * checked and recorded, when fields hold more than the reference fields; a read the purpose
 * may not make (restriction, consent) is recorded as refused and leaves the reference fields
 * only, so a write that succeeded is not answered with an error. */
static enum cd_err customer_answer(struct cd_core *c, const struct cd_actor *a, struct cd_str id,
                                   unsigned fields, json_t **out)
{
    enum cd_err err = CD_ERR_PURPOSE_DENIED;

    if (fields & ~(unsigned)CD_FIELDS_REFERENCE)
        err = read_customer(c, a, id, fields, "customer.read", out);
    if (err == CD_ERR_PURPOSE_DENIED)
        err = read_customer(c, a, id, CD_FIELDS_REFERENCE, NULL, out);
    return err;
}

enum cd_err cd_core_customer_get(struct cd_core *c, const struct cd_actor *a, struct cd_str id,
                                 unsigned fields, json_t **out)
{
    return read_customer(c, a, id, fields, "customer.read", out);
}

enum cd_err cd_core_customer_read_gate(struct cd_core *c, const struct cd_actor *a,
                                       struct cd_str id, const char *action,
                                       const char *categories, char resolved[CD_ID_MAX])
{
    struct get_ctx g = {id, {0}};
    struct cd_audit_event ev;
    enum cd_err err;

    customer_row_init(&g.row);
    if ((err = get_customer(c, &g)) != CD_OK)
        goto out;
    /* A merged id stands for its survivor; an erased customer holds nothing to restrict. */
    snprintf(resolved, CD_ID_MAX, "%s", g.row.merged_into[0] ? g.row.merged_into : g.row.id);
    if (!g.row.merged_into[0] && !g.row.erased_at &&
        (err = cd__core_read_allowed(c, a, g.row.id, g.row.restricted, action)) != CD_OK)
        goto out;
    cd__core_event(&ev, a, action, g.row.id, NULL, 0);
    ev.categories = categories;
    err = cd_audit_record(c->store, &ev);
out:
    customer_row_free(&g.row);
    return err;
}

/* ---- find by identity ---- */

struct find_ctx {
    const uint8_t *lookup;
    struct cd_str type;
    char id[CD_ID_MAX];
};

static enum cd_err find_row(void *ctx, const struct cd_val *cols, size_t n)
{
    cd__core_col_text(cols[0], ctx, CD_ID_MAX);
    return CD_OK;
}

static enum cd_err find_fn(struct cd_tx *tx, void *ctx)
{
    struct find_ctx *f = ctx;
    struct cd_val p[] = {CD_VTEXT(f->type), CD_VBLOB(f->lookup, CD_CRYPTO_HASH_LEN)};

    return cd_tx_exec(tx, "SELECT customer_id FROM identities WHERE kind = $1 AND lookup = $2",
                      p, 2, find_row, f->id, NULL);
}

enum cd_err cd_core_customer_find(struct cd_core *c, const struct cd_actor *a, struct cd_str type,
                                  struct cd_str network, struct cd_str value, unsigned fields,
                                  json_t **out)
{
    struct cd_buf norm = CD_BUF_INIT(1024);
    uint8_t lookup[CD_CRYPTO_HASH_LEN];
    struct find_ctx f = {lookup, type, ""};
    enum cd_err err;

    if ((err = cd_core_identity_normalize(type, network, value, &norm)) != CD_OK)
        goto out;
    cd__core_lookup(c, type, (struct cd_str){norm.p, norm.len}, lookup);
    if ((err = cd_store_read(c->store, find_fn, &f)) != CD_OK)
        goto out;
    if (!f.id[0]) {
        err = cd_err_set(CD_ERR_NOT_FOUND, "no customer holds this identity");
        goto out;
    }
    err = read_customer(c, a, cd_str_c(f.id), fields, "customer.read", out);
out:
    cd_buf_free(&norm);
    return err;
}

/* ---- create ---- */

struct create_ctx {
    struct cd_core *c;
    const struct cd_actor *a;
    const struct cd_idem *idem;
    uint8_t idem_hash[CD_CRYPTO_HASH_LEN];
    char id[CD_ID_MAX];
    uint8_t wrapped[CD_CRYPTO_WRAPPED_LEN];
    struct profile_in prof;
    struct cd_buf sealed_name, sealed_attrs;
    struct ident_in *idents;
    size_t nident;
    char replay_id[CD_ID_MAX];
    int64_t now;
};

/* Fails with CD_ERR_CONFLICT if any identity already belongs to a customer other than self. */
static enum cd_err check_identities_free(struct cd_tx *tx, struct ident_in *idents, size_t n,
                                         const char *self)
{
    enum cd_err err;

    for (size_t i = 0; i < n; i++) {
        struct find_ctx f = {idents[i].lookup, idents[i].type, ""};
        if ((err = find_fn(tx, &f)) != CD_OK)
            return err;
        if (f.id[0] && strcmp(f.id, self) != 0)
            return cd_err_set(CD_ERR_CONFLICT,
                              "identity %zu (%.*s) already belongs to customer %s", i + 1,
                              (int)idents[i].type.len, idents[i].type.p, f.id);
        if (f.id[0])
            return cd_err_set(CD_ERR_CONFLICT, "identity %zu (%.*s) is already on this customer",
                              i + 1, (int)idents[i].type.len, idents[i].type.p);
    }
    return CD_OK;
}

static enum cd_err insert_identities(struct cd_tx *tx, const struct cd_actor *a,
                                     struct ident_in *idents, size_t n, const char *customer_id,
                                     int64_t now)
{
    enum cd_err err;

    for (size_t i = 0; i < n; i++) {
        struct cd__identity id = {idents[i].type,     idents[i].network,
                                  idents[i].lookup,   idents[i].skeleton,
                                  idents[i].beyond_ascii,
                                  {idents[i].sealed.p, idents[i].sealed.len}};
        if ((err = cd__core_identity_insert(tx, a, &id, customer_id, now, NULL)) != CD_OK)
            return err == CD_ERR_CONFLICT
                       ? cd_err_set(CD_ERR_CONFLICT, "identity %zu is listed twice", i + 1)
                       : err;
    }
    return CD_OK;
}

static struct cd_val opt_blob(const struct cd_buf *b, bool has)
{
    return has ? CD_VBLOB(b->p, b->len) : CD_VNULL;
}

static struct cd_val opt_text(struct cd_str s)
{
    return s.p ? CD_VTEXT(s) : CD_VNULL;
}

static enum cd_err create_fn(struct cd_tx *tx, void *ctx)
{
    struct create_ctx *cc = ctx;
    struct cd_audit_event ev;
    enum cd_err err;

    if ((err = cd__core_idem_check(tx, cc->idem, cc->idem_hash, cc->replay_id)) != CD_OK || cc->replay_id[0])
        return err;
    if ((err = check_identities_free(tx, cc->idents, cc->nident, "")) != CD_OK)
        return err;
    struct cd_val p[] = {CD_VCSTR(cc->id),
                         CD_VINT(cc->now),
                         opt_blob(&cc->sealed_name, cc->prof.display_name.p != NULL),
                         opt_blob(&cc->sealed_attrs, cc->prof.attributes != NULL),
                         opt_text(cc->prof.locale),
                         opt_text(cc->prof.time_zone),
                         opt_text(cc->prof.jurisdiction),
                         CD_VBLOB(cc->wrapped, sizeof cc->wrapped)};
    if ((err = cd_tx_exec(tx, "INSERT INTO customers(id, created_at, updated_at, display_name,"
                              " attributes, locale, time_zone, jurisdiction, key_wrapped)"
                              " VALUES($1,$2,$2,$3,$4,$5,$6,$7,$8)",
                          p, 8, NULL, NULL, NULL)) != CD_OK)
        return err;
    if ((err = insert_identities(tx, cc->a, cc->idents, cc->nident, cc->id, cc->now)) != CD_OK)
        return err;
    cd__core_event(&ev, cc->a, "customer.create", cc->id, NULL, 0);
    if ((err = cd_audit_append(tx, &ev, NULL)) != CD_OK)
        return err;
    return cd__core_idem_record(tx, cc->idem, cc->idem_hash, cc->id);
}

/* Parses and seals the identities array of a body. */
static enum cd_err prepare_identities(struct cd_core *c, const json_t *arr,
                                      const struct cd__ckey *k, struct ident_in **out, size_t *n)
{
    size_t count = arr ? json_array_size(arr) : 0, i;
    struct ident_in *v;
    enum cd_err err = CD_OK;

    *out = NULL;
    *n = 0;
    if (count > CD_MAX_IDENTITIES)
        return cd_err_set(CD_ERR_INVALID, "at most %d identities", CD_MAX_IDENTITIES);
    if (count == 0)
        return CD_OK;
    if ((v = cd_calloc(count, sizeof *v)) == NULL)
        return CD_ERR_NOMEM;
    for (i = 0; i < count && err == CD_OK; i++) {
        err = parse_identity(c, json_array_get(arr, i), &v[i]);
        if (err == CD_OK)
            err = cd__core_seal(k, "identity", (struct cd_str){v[i].norm.p, v[i].norm.len},
                                &v[i].sealed);
        if (err == CD_ERR_INVALID)
            cd_err_set(err, "identities[%zu]: %s", i, cd_err_detail());
    }
    if (err != CD_OK) {
        idents_free(v, i);
        return err;
    }
    *out = v;
    *n = count;
    return CD_OK;
}

static enum cd_err seal_profile(const struct cd__ckey *k, const struct profile_in *p,
                                struct cd_buf *name, struct cd_buf *attrs)
{
    enum cd_err err = CD_OK;

    if (p->display_name.p)
        err = cd__core_seal(k, "display_name", p->display_name, name);
    if (err == CD_OK && p->attributes)
        err = cd__core_seal(k, "attributes", cd_str_c(p->attributes), attrs);
    return err;
}

enum cd_err cd_core_customer_create(struct cd_core *c, const struct cd_actor *a,
                                    const json_t *body, const struct cd_idem *idem,
                                    unsigned fields, json_t **out, bool *replayed)
{
    static const char *const allowed[] = {"display_name", "attributes", "locale", "time_zone",
                                          "jurisdiction", "identities", NULL};
    struct create_ctx cc = {.c = c, .a = a, .idem = idem};
    struct cd__ckey k;
    json_t *arr = NULL;
    enum cd_err err;

    cc.sealed_name = CD_BUF_INIT(4096);
    cc.sealed_attrs = CD_BUF_INIT(CD_MAX_ATTRS + 1024);
    cd_id_new("cus", cc.id);
    cd__core_key_new(c, cc.id, &k, cc.wrapped);
    if ((err = cd_json_only(body, allowed)) != CD_OK ||
        (err = parse_profile(body, &cc.prof)) != CD_OK ||
        (err = cd_json_arr(body, "identities", false, &arr)) != CD_OK ||
        (err = prepare_identities(c, arr, &k, &cc.idents, &cc.nident)) != CD_OK ||
        (err = seal_profile(&k, &cc.prof, &cc.sealed_name, &cc.sealed_attrs)) != CD_OK)
        goto out;
    cc.now = cd_now_ms();
    cd__core_idem_hash(c, idem, cc.idem_hash);
    if ((err = cd_store_write(c->store, create_fn, &cc)) != CD_OK)
        goto out;
    *replayed = cc.replay_id[0] != '\0';
    err = customer_answer(c, a, cd_str_c(*replayed ? cc.replay_id : cc.id), fields, out);
out:
    cd__core_key_wipe(&k);
    idents_free(cc.idents, cc.nident);
    cd_free(cc.prof.attributes);
    cd_buf_free(&cc.sealed_name);
    cd_buf_free(&cc.sealed_attrs);
    return err;
}

/* ---- update, add identity ---- */

struct update_ctx {
    struct cd_core *c;
    const struct cd_actor *a;
    const char *id;
    const json_t *patch;
    struct profile_in prof;
    struct ident_in *idents;
    size_t nident;
    const char *action;
};

/* Loads a customer that can still be changed, inside a write: CD_ERR_NOT_FOUND, or
 * CD_ERR_CONFLICT when it was merged (act on the survivor) or erased. */
static enum cd_err load_live_customer(struct cd_tx *tx, const char *id, struct customer_row *r)
{
    struct cd_val p[] = {CD_VCSTR(id)};
    enum cd_err err;

    if ((err = cd_tx_exec(tx, SELECT_CUSTOMER, p, 1, customer_row_fn, r, NULL)) != CD_OK)
        return err;
    if (!r->found)
        return cd_err_set(CD_ERR_NOT_FOUND, "no customer with this id");
    if (r->merged_into[0])
        return cd_err_set(CD_ERR_CONFLICT, "customer %s was merged into %s; act on the survivor",
                          r->id, r->merged_into);
    if (r->erased_at)
        return cd_err_set(CD_ERR_CONFLICT, "customer %s was erased", r->id);
    return CD_OK;
}

/* Loads the live customer's key inside the write. */
static enum cd_err key_for_update(struct cd_tx *tx, struct cd_core *c, const char *id,
                                  struct cd__ckey *k)
{
    struct customer_row r;
    enum cd_err err;

    customer_row_init(&r);
    if ((err = load_live_customer(tx, id, &r)) == CD_OK) {
        struct cd_val w = {r.wrapped.len ? CD_VAL_BLOB : CD_VAL_NULL, 0, r.wrapped.p,
                           r.wrapped.len};
        err = cd__core_key_open(c, id, w, k);
    }
    customer_row_free(&r);
    return err;
}

/* The categories a change of the profile or identities touched, as the policy names them. */
static json_t *changed_categories(const struct update_ctx *u)
{
    json_t *cats = json_array();
    bool contact = u->nident > 0 || u->prof.has_display_name;
    bool coarse = u->prof.has_locale || u->prof.has_time_zone || u->prof.has_jurisdiction;

    if (cats && ((contact && json_array_append_new(cats, json_string("contact")) != 0) ||
                 (u->prof.has_attributes && json_array_append_new(cats, json_string("profile")) != 0) ||
                 (coarse && json_array_append_new(cats, json_string("coarse")) != 0))) {
        json_decref(cats);
        return NULL;
    }
    return cats;
}

/* A correction or completion of a customer's data is told to whoever receives it (GDPR
 * Arts. 16 and 19), in the transaction that makes it. */
static enum cd_err rectified(struct cd_tx *tx, const struct update_ctx *u)
{
    json_t *cats = changed_categories(u), *payload;
    enum cd_err err;

    if (cats == NULL)
        return CD_ERR_NOMEM;
    if (json_array_size(cats) == 0) { /* an empty patch changed nothing */
        json_decref(cats);
        return CD_OK;
    }
    if ((payload = json_pack("{s:o}", "categories", cats)) == NULL)
        return CD_ERR_NOMEM;
    err = cd_outbox_enqueue(tx, "customer.rectified", cd_str_c(u->id), payload, NULL);
    json_decref(payload);
    return err;
}

static enum cd_err update_fn(struct cd_tx *tx, void *ctx)
{
    struct update_ctx *u = ctx;
    struct cd__ckey k;
    struct cd_buf name = CD_BUF_INIT(4096), attrs = CD_BUF_INIT(CD_MAX_ATTRS + 1024);
    struct cd_audit_event ev;
    enum cd_err err;
    int64_t now = cd_now_ms();

    if ((err = key_for_update(tx, u->c, u->id, &k)) != CD_OK)
        return err;
    /* Sealing happens here because the key is only known inside the transaction; updates are
     * rare next to ingestion. */
    if ((err = seal_profile(&k, &u->prof, &name, &attrs)) != CD_OK)
        goto out;
    for (size_t i = 0; i < u->nident; i++)
        if ((err = cd__core_seal(&k, "identity",
                                 (struct cd_str){u->idents[i].norm.p, u->idents[i].norm.len},
                                 &u->idents[i].sealed)) != CD_OK)
            goto out;
    struct cd_val p[] = {CD_VCSTR(u->id),
                         CD_VINT(now),
                         CD_VINT(u->prof.has_display_name),
                         opt_blob(&name, u->prof.display_name.p != NULL),
                         CD_VINT(u->prof.has_attributes),
                         opt_blob(&attrs, u->prof.attributes != NULL),
                         CD_VINT(u->prof.has_locale),
                         opt_text(u->prof.locale),
                         CD_VINT(u->prof.has_time_zone),
                         opt_text(u->prof.time_zone),
                         CD_VINT(u->prof.has_jurisdiction),
                         opt_text(u->prof.jurisdiction)};
    if ((err = cd_tx_exec(tx,
                          "UPDATE customers SET updated_at = $2,"
                          " display_name = CASE WHEN $3 = 1 THEN $4 ELSE display_name END,"
                          " attributes = CASE WHEN $5 = 1 THEN $6 ELSE attributes END,"
                          " locale = CASE WHEN $7 = 1 THEN $8 ELSE locale END,"
                          " time_zone = CASE WHEN $9 = 1 THEN $10 ELSE time_zone END,"
                          " jurisdiction = CASE WHEN $11 = 1 THEN $12 ELSE jurisdiction END"
                          " WHERE id = $1",
                          p, 12, NULL, NULL, NULL)) != CD_OK)
        goto out;
    if ((err = check_identities_free(tx, u->idents, u->nident, u->id)) != CD_OK ||
        (err = insert_identities(tx, u->a, u->idents, u->nident, u->id, now)) != CD_OK)
        goto out;
    cd__core_event(&ev, u->a, u->action, u->id, NULL, 0);
    if ((err = cd_audit_append(tx, &ev, NULL)) != CD_OK)
        goto out;
    err = rectified(tx, u);
out:
    cd__core_key_wipe(&k);
    cd_buf_free(&name);
    cd_buf_free(&attrs);
    return err;
}

static enum cd_err copy_id(struct cd_str id, char out[CD_ID_MAX])
{
    if (!cd_id_valid(id, "cus"))
        return cd_err_set(CD_ERR_NOT_FOUND, "no customer with this id");
    memcpy(out, id.p, id.len);
    out[id.len] = '\0';
    return CD_OK;
}

enum cd_err cd_core_customer_update(struct cd_core *c, const struct cd_actor *a, struct cd_str id,
                                    const json_t *patch, unsigned fields, json_t **out)
{
    static const char *const allowed[] = {"display_name", "attributes", "locale", "time_zone",
                                          "jurisdiction", NULL};
    struct update_ctx u = {.c = c, .a = a, .patch = patch, .action = "customer.update"};
    char cid[CD_ID_MAX];
    enum cd_err err;

    if ((err = copy_id(id, cid)) != CD_OK || (err = cd_json_only(patch, allowed)) != CD_OK ||
        (err = parse_profile(patch, &u.prof)) != CD_OK)
        goto out;
    u.id = cid;
    if ((err = cd_store_write(c->store, update_fn, &u)) != CD_OK)
        goto out;
    changed(c, cid);
    err = customer_answer(c, a, id, fields, out);
out:
    cd_free(u.prof.attributes);
    return err;
}

enum cd_err cd_core_identity_add(struct cd_core *c, const struct cd_actor *a, struct cd_str id,
                                 const json_t *body, unsigned fields, json_t **out)
{
    struct update_ctx u = {.c = c, .a = a, .action = "identity.add"};
    char cid[CD_ID_MAX];
    enum cd_err err;

    memset(&u.prof, 0, sizeof u.prof);
    if ((err = copy_id(id, cid)) != CD_OK)
        return err;
    if ((u.idents = cd_calloc(1, sizeof *u.idents)) == NULL)
        return CD_ERR_NOMEM;
    u.nident = 1;
    if ((err = parse_identity(c, body, &u.idents[0])) != CD_OK)
        goto out;
    u.id = cid;
    if ((err = cd_store_write(c->store, update_fn, &u)) != CD_OK)
        goto out;
    err = customer_answer(c, a, id, fields, out);
out:
    idents_free(u.idents, u.nident);
    return err;
}

/* ---- list ---- */

struct list_ctx {
    int64_t before_ms;
    char before_id[CD_ID_MAX];
    int limit;
    json_t *items;
    int count;
    unsigned fields;
    struct cd_core *c;
    enum cd_err err;
    char ids[201][CD_ID_MAX];
};

static enum cd_err list_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct list_ctx *l = ctx;

    if (l->count < 201)
        cd__core_col_text(cols[0], l->ids[l->count], CD_ID_MAX);
    l->count++;
    return CD_OK;
}

static enum cd_err list_fn(struct cd_tx *tx, void *ctx)
{
    struct list_ctx *l = ctx;
    struct cd_val p[] = {CD_VINT(l->before_ms), CD_VCSTR(l->before_id), CD_VINT(l->limit + 1)};

    return cd_tx_exec(tx, "SELECT id FROM customers WHERE merged_into IS NULL"
                          " AND (created_at, id) < ($1, $2) ORDER BY created_at DESC, id DESC"
                          " LIMIT $3",
                      p, 3, list_row, l, NULL);
}

enum cd_err cd_core_customer_list(struct cd_core *c, const struct cd_actor *a,
                                  struct cd_str cursor, int limit, unsigned fields, json_t **out)
{
    struct list_ctx *l = cd_calloc(1, sizeof *l);
    json_t *items = NULL;
    enum cd_err err;

    if (l == NULL)
        return CD_ERR_NOMEM;
    if (limit < 1 || limit > 200) {
        err = cd_err_set(CD_ERR_INVALID, "limit must be between 1 and 200");
        goto out;
    }
    l->limit = limit;
    if ((err = cd__core_cursor_decode(cursor, &l->before_ms, l->before_id)) != CD_OK)
        goto out;
    if ((err = cd_store_read(c->store, list_fn, l)) != CD_OK)
        goto out;
    err = CD_ERR_NOMEM;
    if ((items = json_array()) == NULL)
        goto out;
    int shown = l->count > limit ? limit : l->count;
    int64_t last_ms = 0;
    for (int i = 0; i < shown; i++) {
        json_t *cj = NULL;
        /* A customer the purpose may not read is listed with nothing beyond the reference. */
        err = customer_answer(c, a, cd_str_c(l->ids[i]), fields, &cj);
        if (err != CD_OK)
            goto out;
        if (json_array_append_new(items, cj) != 0) {
            err = CD_ERR_NOMEM;
            goto out;
        }
        if ((err = cd_time_parse(cd_str_c(json_string_value(json_object_get(cj, "created_at"))),
                                 &last_ms)) != CD_OK)
            goto out;
    }
    err = cd__core_page(items, l->count > limit, last_ms, shown ? l->ids[shown - 1] : "", out);
    items = NULL;
out:
    json_decref(items);
    cd_free(l);
    return err;
}

/* ---- merge ---- */

struct merge_ctx {
    struct cd_core *c;
    const struct cd_actor *a;
    char survivor[CD_ID_MAX], merged[CD_ID_MAX];
};

struct reseal_row {
    struct cd_tx *tx;
    const struct cd__ckey *from, *to;
    enum cd_err err;
};

/* Re-seals every personal column of the merged customer under the survivor's key, so each
 * row stays bound to the customer it belongs to and erasing the survivor erases it all. */
static enum cd_err reseal_value(const struct cd__ckey *from, const struct cd__ckey *to,
                                const char *field, struct cd_val v, struct cd_buf *plain,
                                struct cd_buf *sealed, bool *present)
{
    enum cd_err err = cd__core_open(from, field, v, plain, present);

    if (err != CD_OK || !*present)
        return err;
    return cd__core_seal(to, field, (struct cd_str){plain->p, plain->len}, sealed);
}

struct id_list {
    struct cd_buf ids; /* NUL-separated */
};

static enum cd_err collect_id(void *ctx, const struct cd_val *cols, size_t n)
{
    struct id_list *l = ctx;
    enum cd_err err = cd_buf_append(&l->ids, cols[0].p, cols[0].len);

    return err == CD_OK ? cd_buf_putc(&l->ids, '\0') : err;
}

/* An identity's key as "<hex lookup>:<kind>", made here rather than in SQL: SQLite's hex() and
 * PostgreSQL's encode() are not one dialect. */
static enum cd_err collect_identity(void *ctx, const struct cd_val *cols, size_t n)
{
    struct id_list *l = ctx;
    char hex[2 * CD_CRYPTO_HASH_LEN + 1];
    enum cd_err err;

    if (n < 2 || cols[0].len != CD_CRYPTO_HASH_LEN)
        return cd_err_set(CD_ERR_INTERNAL, "an identity lookup of %zu bytes", cols[0].len);
    cd_hex_encode(cols[0].p, cols[0].len, hex);
    if ((err = cd_buf_append(&l->ids, hex, 2 * CD_CRYPTO_HASH_LEN)) != CD_OK ||
        (err = cd_buf_putc(&l->ids, ':')) != CD_OK ||
        (err = cd_buf_append(&l->ids, cols[1].p, cols[1].len)) != CD_OK)
        return err;
    return cd_buf_putc(&l->ids, '\0');
}

#define ONE_ROW_COLS 8

struct one_row {
    struct cd_val cols[ONE_ROW_COLS];
    struct cd_buf copy[ONE_ROW_COLS];
    bool found;
};

static enum cd_err one_row_fn(void *ctx, const struct cd_val *cols, size_t n)
{
    struct one_row *r = ctx;
    enum cd_err err;

    r->found = true;
    for (size_t i = 0; i < n && i < ONE_ROW_COLS; i++) {
        r->cols[i] = cols[i];
        if (cols[i].type == CD_VAL_BLOB || cols[i].type == CD_VAL_TEXT) {
            cd_buf_reset(&r->copy[i]);
            if ((err = cd_buf_append(&r->copy[i], cols[i].p, cols[i].len)) != CD_OK)
                return err;
            r->cols[i].p = r->copy[i].p;
        }
    }
    return CD_OK;
}

static enum cd_err reseal_table(const struct cd_core *c, struct cd_tx *tx,
                                const struct cd__ckey *from, const struct cd__ckey *to,
                                bool interactions)
{
    /* Unbounded: the ids of one customer's rows, and values of rows the store holds (capped
     * when they were written). */
    struct id_list l = {CD_BUF_INIT(CD_BUF_UNBOUNDED)};
    struct one_row r;
    struct cd_buf plain = CD_BUF_INIT(CD_BUF_UNBOUNDED), sealed[4];
    uint8_t thread_hash[CD_CRYPTO_HASH_LEN];
    enum cd_err err;
    static const char *const ifields[4] = {"subject", "body", "metadata", "thread_id"};

    memset(&r, 0, sizeof r);
    for (int i = 0; i < ONE_ROW_COLS; i++)
        r.copy[i] = CD_BUF_INIT(CD_BUF_UNBOUNDED);
    for (int i = 0; i < 4; i++)
        sealed[i] = CD_BUF_INIT(CD_BUF_UNBOUNDED);
    struct cd_val p[] = {CD_VCSTR(from->customer_id)};
    err = interactions ? cd_tx_exec(tx, "SELECT id FROM interactions WHERE customer_id = $1", p,
                                    1, collect_id, &l, NULL)
                       : cd_tx_exec(tx, "SELECT lookup, kind FROM identities WHERE customer_id = $1",
                                    p, 1, collect_identity, &l, NULL);
    if (err != CD_OK)
        goto out;
    for (const char *id = l.ids.p; id && id < l.ids.p + l.ids.len; id += strlen(id) + 1) {
        bool present[4] = {false, false, false, false};
        r.found = false;
        if (interactions) {
            struct cd_val q[] = {CD_VCSTR(id)};
            if ((err = cd_tx_exec(tx, "SELECT subject, body, metadata, thread, channel,"
                                      " direction, occurred_at, purpose FROM interactions"
                                      " WHERE id = $1",
                                  q, 1, one_row_fn, &r, NULL)) != CD_OK)
                goto out;
            /* The fields stay bound to their row; only the customer in the binding changes. A
             * value that does not belong to its row stops the merge (an integrity failure). */
            char ch[16], dir[12], pur[32];
            struct cd__row_binding b;
            cd__core_col_text(r.cols[4], ch, sizeof ch);
            cd__core_col_text(r.cols[5], dir, sizeof dir);
            cd__core_col_text(r.cols[7], pur, sizeof pur);
            cd__core_interaction_binding(&b, id, ch, dir, r.cols[6].i, pur);
            for (int i = 0; i < 4; i++) {
                if ((err = cd__core_open_row(from, ifields[i], &b, r.cols[i], false, &plain,
                                             &present[i])) != CD_OK ||
                    (present[i] &&
                     (err = cd__core_seal_row(to, ifields[i], &b,
                                              (struct cd_str){plain.p, plain.len},
                                              &sealed[i])) != CD_OK))
                    goto out;
            }
            /* The thread's hash is the survivor's now; plain still holds the thread id. */
            if (present[3])
                cd__core_thread_hash(c, to->customer_id, (struct cd_str){plain.p, plain.len},
                                     thread_hash);
            struct cd_val u[] = {CD_VCSTR(id),
                                 opt_blob(&sealed[0], present[0]),
                                 opt_blob(&sealed[1], present[1]),
                                 opt_blob(&sealed[2], present[2]),
                                 CD_VCSTR(to->customer_id),
                                 opt_blob(&sealed[3], present[3]),
                                 present[3] ? CD_VBLOB(thread_hash, sizeof thread_hash) : CD_VNULL};
            if ((err = cd_tx_exec(tx, "UPDATE interactions SET subject = $2, body = $3,"
                                      " metadata = $4, customer_id = $5, thread = $6,"
                                      " thread_hash = $7, legacy_seal = NULL WHERE id = $1",
                                  u, 7, NULL, NULL, NULL)) != CD_OK)
                goto out;
        } else {
            /* id is "<hex lookup>:<kind>" */
            uint8_t lookup[CD_CRYPTO_HASH_LEN];
            const char *kind = id + 2 * CD_CRYPTO_HASH_LEN + 1;
            if ((err = cd_hex_decode((struct cd_str){id, 2 * CD_CRYPTO_HASH_LEN}, lookup,
                                     sizeof lookup)) != CD_OK)
                goto out;
            struct cd_val q[] = {CD_VCSTR(kind), CD_VBLOB(lookup, sizeof lookup)};
            if ((err = cd_tx_exec(tx, "SELECT value FROM identities WHERE kind = $1"
                                      " AND lookup = $2",
                                  q, 2, one_row_fn, &r, NULL)) != CD_OK)
                goto out;
            if ((err = reseal_value(from, to, "identity", r.cols[0], &plain, &sealed[0],
                                    &present[0])) != CD_OK)
                goto out;
            struct cd_val u[] = {CD_VCSTR(kind), CD_VBLOB(lookup, sizeof lookup),
                                 opt_blob(&sealed[0], present[0]), CD_VCSTR(to->customer_id)};
            if ((err = cd_tx_exec(tx, "UPDATE identities SET value = $3, customer_id = $4"
                                      " WHERE kind = $1 AND lookup = $2",
                                  u, 4, NULL, NULL, NULL)) != CD_OK)
                goto out;
        }
    }
out:
    if (plain.p)
        cd_crypto_wipe(plain.p, plain.cap);
    cd_buf_free(&plain);
    for (int i = 0; i < ONE_ROW_COLS; i++)
        cd_buf_free(&r.copy[i]);
    for (int i = 0; i < 4; i++)
        cd_buf_free(&sealed[i]);
    cd_buf_free(&l.ids);
    return err;
}

static enum cd_err merge_fn(struct cd_tx *tx, void *ctx)
{
    struct merge_ctx *m = ctx;
    struct cd__ckey ks, km;
    struct cd_audit_event ev;
    enum cd_err err;
    bool ks_open = false, km_open = false;
    int64_t now = cd_now_ms();

    if ((err = key_for_update(tx, m->c, m->survivor, &ks)) != CD_OK)
        goto out;
    ks_open = true;
    if ((err = key_for_update(tx, m->c, m->merged, &km)) != CD_OK)
        goto out;
    km_open = true;
    if ((err = reseal_table(m->c, tx, &km, &ks, false)) != CD_OK ||
        (err = reseal_table(m->c, tx, &km, &ks, true)) != CD_OK)
        goto out;
    /* Other modules' values sealed for the merged customer move in the same transaction: its
     * key is destroyed below. */
    if (m->c->hooks.customer_merged) {
        struct cd_core_vault from = {km}, to = {ks};
        err = m->c->hooks.customer_merged(m->c->hooks.ctx, tx, m->merged, m->survivor, &from,
                                          &to);
        cd__core_key_wipe(&from.k);
        cd__core_key_wipe(&to.k);
        if (err != CD_OK)
            goto out;
    }
    /* The merged record keeps no personal data and no key: only the pointer. */
    struct cd_val p[] = {CD_VCSTR(m->merged), CD_VCSTR(m->survivor), CD_VINT(now),
                         CD_VCSTR(m->a->token_id),
                         m->a->request_id ? CD_VCSTR(m->a->request_id) : CD_VNULL};
    /* A restriction the person asked for under either id holds for the one they are now. */
    if ((err = cd_tx_exec(tx, "UPDATE customers SET restricted = 1, updated_at = $3"
                              " WHERE id = $2 AND restricted = 0 AND EXISTS(SELECT 1 FROM"
                              " customers WHERE id = $1 AND restricted <> 0)",
                          p, 3, NULL, NULL, NULL)) != CD_OK ||
        (err = cd_tx_exec(tx, "UPDATE customers SET merged_into = $2, merged_at = $3,"
                              " updated_at = $3, display_name = NULL, attributes = NULL,"
                              " key_wrapped = NULL WHERE id = $1",
                          p, 3, NULL, NULL, NULL)) != CD_OK ||
        (err = cd_tx_exec(tx, "UPDATE customers SET merged_into = $2 WHERE merged_into = $1", p,
                          2, NULL, NULL, NULL)) != CD_OK ||
        (err = cd_tx_exec(tx, "INSERT INTO merges(merged_id, survivor_id, merged_at, actor,"
                              " request_id) VALUES($1,$2,$3,$4,$5)",
                          p, 5, NULL, NULL, NULL)) != CD_OK)
        goto out;
    /* Whoever received the merged customer's data received the survivor's. */
    if ((err = cd_outbox_customer_merged(tx, cd_str_c(m->merged), cd_str_c(m->survivor))) !=
        CD_OK)
        goto out;
    /* Possible duplicates: a link between the two is settled by the merge; the merged
     * customer's other open links are the survivor's now. */
    if ((err = cd_tx_exec(tx, "UPDATE identity_links SET status = 'merged', resolved_at = $3,"
                              " resolved_by = $4 WHERE status = 'open' AND"
                              " ((customer_id = $1 AND other_id = $2) OR"
                              " (customer_id = $2 AND other_id = $1))",
                          p, 4, NULL, NULL, NULL)) != CD_OK ||
        (err = cd_tx_exec(tx, "UPDATE identity_links SET customer_id = $2"
                              " WHERE customer_id = $1 AND status = 'open'",
                          p, 2, NULL, NULL, NULL)) != CD_OK ||
        (err = cd_tx_exec(tx, "UPDATE identity_links SET other_id = $2"
                              " WHERE other_id = $1 AND status = 'open'",
                          p, 2, NULL, NULL, NULL)) != CD_OK)
        goto out;
    cd__core_event(&ev, m->a, "customer.merge", m->survivor, m->merged, 0);
    /* Other servers on the database forget their owners too (cd_core_changed). */
    if ((err = cd_tx_notify(tx, CD_CORE_TOPIC_OWNERS)) != CD_OK)
        goto out;
    err = cd_audit_append(tx, &ev, NULL);
out:
    if (ks_open)
        cd__core_key_wipe(&ks);
    if (km_open)
        cd__core_key_wipe(&km);
    return err;
}

enum cd_err cd_core_customer_merge(struct cd_core *c, const struct cd_actor *a,
                                   struct cd_str survivor, struct cd_str merged, unsigned fields,
                                   json_t **out)
{
    struct merge_ctx m = {c, a, "", ""};
    enum cd_err err;

    if ((err = copy_id(survivor, m.survivor)) != CD_OK)
        return err;
    if (!cd_id_valid(merged, "cus"))
        return cd_err_set(CD_ERR_NOT_FOUND, "no customer with the id given in 'merge'");
    memcpy(m.merged, merged.p, merged.len);
    m.merged[merged.len] = '\0';
    if (strcmp(m.survivor, m.merged) == 0)
        return cd_err_set(CD_ERR_INVALID, "a customer cannot be merged into itself");
    err = cd_store_write(c->store, merge_fn, &m);
    cd__owners_forget_all(c->owners); /* the merged customer's identities have a new owner */
    if (err != CD_OK)
        return err;
    changed(c, m.merged);
    changed(c, m.survivor);
    return customer_answer(c, a, survivor, fields, out);
}

void cd_core_changed(struct cd_core *c, const char *topic)
{
    if (topic == NULL || strcmp(topic, CD_CORE_TOPIC_OWNERS) == 0)
        cd__owners_forget_all(c->owners);
}

/* ---- restriction and crypto-shredding: changes of a customer's own state ---- */

struct change_ctx {
    const struct cd_actor *a;
    char id[CD_ID_MAX];
    bool on; /* restrict: restricted or not */
};

/* Runs fn in a write for the customer id and answers with the customer's reference fields. */
static enum cd_err run_change(struct cd_core *c, const struct cd_actor *a, struct cd_str id,
                              cd_tx_fn fn, bool on, json_t **out)
{
    struct change_ctx cc = {a, "", on};
    enum cd_err err;

    if ((err = copy_id(id, cc.id)) != CD_OK)
        return err;
    if ((err = cd_store_write(c->store, fn, &cc)) != CD_OK)
        return err;
    changed(c, cc.id);
    return read_customer(c, a, id, CD_FIELDS_REFERENCE, NULL, out);
}

/* The shape every change of a customer's own state shares: the customer must still be live,
 * the statements run (each may use any of the parameters), and the change is recorded in the
 * ledger under action. */
static enum cd_err change_live_customer(struct cd_tx *tx, const struct cd_actor *a,
                                        const char *id, const char *const *sql, size_t nsql,
                                        const struct cd_val *p, size_t np, const char *action,
                                        const char *event, const json_t *payload)
{
    struct customer_row r;
    struct cd_audit_event ev;
    enum cd_err err;

    customer_row_init(&r);
    if ((err = load_live_customer(tx, id, &r)) != CD_OK)
        goto out;
    for (size_t i = 0; i < nsql; i++)
        if ((err = cd_tx_exec(tx, sql[i], p, np, NULL, NULL, NULL)) != CD_OK)
            goto out;
    cd__core_event(&ev, a, action, id, NULL, 0);
    if ((err = cd_audit_append(tx, &ev, NULL)) != CD_OK)
        goto out;
    /* Whoever receives the customer's data is told, in the same transaction (GDPR Art. 19). */
    err = cd_outbox_enqueue(tx, event, cd_str_c(id), payload, NULL);
out:
    customer_row_free(&r);
    return err;
}

enum cd_err cd_core_customer_restrict_in(struct cd_tx *tx, const struct cd_actor *a,
                                         const char *id, bool restricted)
{
    static const char *const sql[] = {
        "UPDATE customers SET restricted = $2, updated_at = $3 WHERE id = $1"};
    struct cd_val p[] = {CD_VCSTR(id), CD_VINT(restricted), CD_VINT(cd_now_ms())};
    json_t *payload = json_pack("{s:b}", "restricted", restricted);
    enum cd_err err;

    if (payload == NULL)
        return CD_ERR_NOMEM;
    err = change_live_customer(tx, a, id, sql, 1, p, 3,
                               restricted ? "customer.restrict" : "customer.unrestrict",
                               "customer.restricted", payload);
    json_decref(payload);
    return err;
}

static enum cd_err restrict_fn(struct cd_tx *tx, void *ctx)
{
    struct change_ctx *rc = ctx;
    return cd_core_customer_restrict_in(tx, rc->a, rc->id, rc->on);
}

enum cd_err cd_core_customer_restrict(struct cd_core *c, const struct cd_actor *a,
                                      struct cd_str id, bool restricted, unsigned fields,
                                      json_t **out)
{
    (void)fields; /* the answer carries the reference fields: the state is what changed */
    return run_change(c, a, id, restrict_fn, restricted, out);
}

/* Every statement of an erasure, in an order that lets each find what it deletes by what is
 * still there: idempotency records by the ids they point to, then the interactions, the
 * identities (with their blind indexes and skeleton hashes), the rows an upgrade would still
 * convert, the possible-duplicate links, and last the customer's own columns and key.
 * secure_delete is on: the freed cells are overwritten, not just unlinked. */
static const char *const erase_sql[] = {
    "DELETE FROM idempotency WHERE resource_id = $1 OR resource_id IN"
    " (SELECT id FROM interactions WHERE customer_id = $1)",
    "DELETE FROM idempotency_plain WHERE resource_id = $1 OR resource_id IN"
    " (SELECT id FROM interactions WHERE customer_id = $1)",
    "DELETE FROM thread_reseal WHERE id IN (SELECT id FROM interactions WHERE customer_id = $1)",
    "DELETE FROM interactions WHERE customer_id = $1",
    "DELETE FROM identity_reindex WHERE EXISTS (SELECT 1 FROM identities i WHERE"
    " i.customer_id = $1 AND i.kind = identity_reindex.kind AND i.lookup = identity_reindex.lookup)",
    "DELETE FROM identities WHERE customer_id = $1",
    "DELETE FROM identity_links WHERE customer_id = $1 OR other_id = $1",
    "UPDATE customers SET key_wrapped = NULL, display_name = NULL, attributes = NULL,"
    " locale = NULL, time_zone = NULL, jurisdiction = NULL, erased_at = $2, updated_at = $2"
    " WHERE id = $1",
};
enum { ERASE_IDEM, ERASE_IDEM_PLAIN, ERASE_RESEAL, ERASE_INTERACTIONS, ERASE_REINDEX,
       ERASE_IDENTITIES, ERASE_LINKS, ERASE_CUSTOMER, ERASE__COUNT };

enum cd_err cd_core_customer_erase_in(struct cd_tx *tx, const struct cd_actor *a,
                                      struct cd_str id, struct cd_core_erase_counts *n)
{
    struct customer_row r;
    struct cd_audit_event ev;
    char cid[CD_ID_MAX];
    int64_t changes[ERASE__COUNT] = {0};
    enum cd_err err;

    memset(n, 0, sizeof *n);
    if ((err = copy_id(id, cid)) != CD_OK)
        return err;
    customer_row_init(&r);
    if ((err = load_live_customer(tx, cid, &r)) != CD_OK)
        goto out;
    struct cd_val p[] = {CD_VCSTR(cid), CD_VINT(cd_now_ms())};
    for (size_t i = 0; i < ERASE__COUNT; i++)
        if ((err = cd_tx_exec(tx, erase_sql[i], p, i == ERASE_CUSTOMER ? 2 : 1, NULL, NULL,
                              &changes[i])) != CD_OK)
            goto out;
    n->idempotency_keys = changes[ERASE_IDEM] + changes[ERASE_IDEM_PLAIN];
    n->interactions = changes[ERASE_INTERACTIONS];
    n->identities = changes[ERASE_IDENTITIES];
    n->links = changes[ERASE_LINKS];
    cd__core_event(&ev, a, "customer.erase", cid, NULL, 0);
    if ((err = cd_audit_append(tx, &ev, NULL)) != CD_OK)
        goto out;
    /* No other server on the database keeps a copy of the destroyed key (cd_core_changed). */
    if ((err = cd_tx_notify(tx, CD_CORE_TOPIC_OWNERS)) != CD_OK)
        goto out;
    /* Whoever receives the customer's data is told, in the same transaction (GDPR Art. 19). */
    char ts[CD_TIME_STRLEN];
    cd_time_format(cd_now_ms(), ts);
    json_t *payload = json_pack("{s:s}", "erased_at", ts);
    if (payload == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    err = cd_outbox_enqueue(tx, "customer.erased", cd_str_c(cid), payload, NULL);
    json_decref(payload);
out:
    customer_row_free(&r);
    return err;
}

void cd_core_customer_erase_done(struct cd_core *c, bool committed)
{
    /* Whatever the outcome, no cached copy of the destroyed wrapped key may stay in memory. */
    cd__owners_forget_all(c->owners);
    /* The key is gone from the database; now from the write-ahead log too. Readers holding an
     * old snapshot can delay that: the next checkpoint (automatic) then completes it. */
    if (committed && cd_store_checkpoint(c->store) != CD_OK)
        cd_log(CD_LOG_WARN, "core.erase_checkpoint_deferred", "\"reason\":\"%s\"",
               cd_err_name(CD_ERR_BUSY));
}

struct shred_ctx {
    const struct cd_actor *a;
    struct cd_str id;
    struct cd_core_erase_counts n;
};

static enum cd_err shred_fn(struct cd_tx *tx, void *ctx)
{
    struct shred_ctx *sc = ctx;
    return cd_core_customer_erase_in(tx, sc->a, sc->id, &sc->n);
}

enum cd_err cd_core_customer_shred(struct cd_core *c, const struct cd_actor *a, struct cd_str id,
                                   json_t **out)
{
    struct shred_ctx sc = {a, id, {0}};
    enum cd_err err = cd_store_write(c->store, shred_fn, &sc);

    cd_core_customer_erase_done(c, err == CD_OK);
    if (err != CD_OK)
        return err;
    return read_customer(c, a, id, CD_FIELDS_REFERENCE, NULL, out);
}
