/* Possible duplicates: a customer created from an identity that looks like another customer's
 * (same UTS #39 confusable skeleton, one of them beyond ASCII), or two identities that became
 * one under a new normalisation, is linked to that customer for a supervisor to merge or
 * dismiss. Core never merges on a resemblance: two people can have look-alike addresses, and
 * an impostor is exactly who would choose one. */
#include <stdio.h>
#include <string.h>
#include <unicode/uchar.h>
#include <utf8proc.h>
#include "core_int.h"

#define MAX_LINKS_PER_IDENTITY 16

struct lookalikes {
    size_t n;
    char customer_id[MAX_LINKS_PER_IDENTITY][CD_ID_MAX];
    uint8_t lookup[MAX_LINKS_PER_IDENTITY][CD_CRYPTO_HASH_LEN];
};

static enum cd_err lookalike_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct lookalikes *l = ctx;

    if (l->n >= MAX_LINKS_PER_IDENTITY || cols[1].len != CD_CRYPTO_HASH_LEN)
        return CD_OK;
    cd__core_col_text(cols[0], l->customer_id[l->n], CD_ID_MAX);
    memcpy(l->lookup[l->n], cols[1].p, CD_CRYPTO_HASH_LEN);
    l->n++;
    return CD_OK;
}

enum cd_err cd__core_link_record(struct cd_tx *tx, const struct cd_actor *a, struct cd_str kind,
                                 const char *customer_id, const uint8_t *lookup,
                                 const char *other_id, const uint8_t *other_lookup,
                                 const char *reason, int64_t now)
{
    struct cd_audit_event ev;
    char id[CD_ID_MAX];
    int64_t open_links = 0;
    enum cd_err err;
    struct cd_val q[] = {CD_VCSTR(customer_id), CD_VCSTR(other_id)};

    /* One open link per pair of customers is enough for a supervisor to look at them. */
    if ((err = cd_tx_int(tx, "SELECT count(*) FROM identity_links WHERE status = 'open' AND"
                             " ((customer_id = $1 AND other_id = $2) OR"
                             " (customer_id = $2 AND other_id = $1))",
                         q, 2, &open_links)) != CD_OK || open_links > 0)
        return err;
    cd_id_new("dup", id);
    struct cd_val p[] = {CD_VCSTR(id),
                         CD_VCSTR(customer_id),
                         CD_VCSTR(other_id),
                         CD_VTEXT(kind),
                         CD_VBLOB(lookup, CD_CRYPTO_HASH_LEN),
                         CD_VBLOB(other_lookup, CD_CRYPTO_HASH_LEN),
                         CD_VCSTR(reason),
                         CD_VINT(now)};
    if ((err = cd_tx_exec(tx, "INSERT INTO identity_links(id, customer_id, other_id, kind,"
                              " lookup, other_lookup, reason, status, created_at)"
                              " VALUES($1,$2,$3,$4,$5,$6,$7,'open',$8)",
                          p, 8, NULL, NULL, NULL)) != CD_OK)
        return err;
    cd__core_event(&ev, a, "identity.possible_duplicate", customer_id, id, 0);
    return cd_audit_append(tx, &ev, NULL);
}

enum cd_err cd__core_identity_insert(struct cd_tx *tx, const struct cd_actor *a,
                                     const struct cd__identity *id, const char *customer_id,
                                     int64_t now, size_t *links)
{
    enum cd_err err;
    struct cd_val p[] = {CD_VTEXT(id->kind),
                         CD_VBLOB(id->lookup, CD_CRYPTO_HASH_LEN),
                         CD_VCSTR(customer_id),
                         CD_VBLOB(id->sealed.p, id->sealed.len),
                         id->network && id->network[0] ? CD_VCSTR(id->network) : CD_VNULL,
                         CD_VINT(now),
                         CD_VBLOB(id->skeleton, CD_CRYPTO_HASH_LEN),
                         CD_VINT(id->beyond_ascii)};

    if ((err = cd_tx_exec(tx, "INSERT INTO identities(kind, lookup, customer_id, value, network,"
                              " created_at, skeleton, beyond_ascii)"
                              " VALUES($1,$2,$3,$4,$5,$6,$7,$8)",
                          p, 8, NULL, NULL, NULL)) != CD_OK)
        return err;
    return cd__core_identity_link_lookalikes(tx, a, id, customer_id, now, links);
}

enum cd_err cd__core_identity_link_lookalikes(struct cd_tx *tx, const struct cd_actor *a,
                                              const struct cd__identity *id,
                                              const char *customer_id, int64_t now,
                                              size_t *links)
{
    struct lookalikes l = {0};
    enum cd_err err;

    if (links)
        *links = 0;
    /* By the skeleton alone: its keyed hash already separates kinds (identity.c). */
    struct cd_val q[] = {CD_VBLOB(id->skeleton, CD_CRYPTO_HASH_LEN), CD_VCSTR(customer_id),
                         CD_VINT(id->beyond_ascii)};
    if ((err = cd_tx_exec(tx, "SELECT customer_id, lookup FROM identities WHERE skeleton = $1"
                              " AND customer_id <> $2 AND ($3 = 1 OR beyond_ascii = 1)",
                          q, 3, lookalike_row, &l, NULL)) != CD_OK)
        return err;
    for (size_t i = 0; i < l.n; i++) {
        if ((err = cd__core_link_record(tx, a, id->kind, customer_id, id->lookup,
                                        l.customer_id[i], l.lookup[i], "confusable", now)) !=
            CD_OK)
            return err;
        if (links)
            (*links)++;
    }
    return CD_OK;
}

/* ---- the API: list, merge, dismiss ---- */

struct link_row {
    char id[CD_ID_MAX], customer_id[CD_ID_MAX], other_id[CD_ID_MAX];
    char kind[16], reason[24], status[16], resolved_by[CD_ID_MAX];
    uint8_t lookup[CD_CRYPTO_HASH_LEN], other_lookup[CD_CRYPTO_HASH_LEN];
    int64_t created_at, resolved_at;
};

#define LINK_COLUMNS                                                                           \
    "id, customer_id, other_id, kind, lookup, other_lookup, reason, status, created_at,"      \
    " resolved_at, resolved_by"

struct link_page {
    struct link_row *rows; /* max of them */
    int count, max;
};

static enum cd_err link_row_fn(void *ctx, const struct cd_val *cols, size_t n)
{
    struct link_page *pg = ctx;
    struct link_row *r;

    if (pg->count >= pg->max)
        return CD_OK;
    r = &pg->rows[pg->count++];
    memset(r, 0, sizeof *r);
    cd__core_col_text(cols[0], r->id, sizeof r->id);
    cd__core_col_text(cols[1], r->customer_id, sizeof r->customer_id);
    cd__core_col_text(cols[2], r->other_id, sizeof r->other_id);
    cd__core_col_text(cols[3], r->kind, sizeof r->kind);
    if (cols[4].len == CD_CRYPTO_HASH_LEN)
        memcpy(r->lookup, cols[4].p, CD_CRYPTO_HASH_LEN);
    if (cols[5].len == CD_CRYPTO_HASH_LEN)
        memcpy(r->other_lookup, cols[5].p, CD_CRYPTO_HASH_LEN);
    cd__core_col_text(cols[6], r->reason, sizeof r->reason);
    cd__core_col_text(cols[7], r->status, sizeof r->status);
    r->created_at = cols[8].i;
    r->resolved_at = cols[9].type == CD_VAL_INT ? cols[9].i : 0;
    cd__core_col_text(cols[10], r->resolved_by, sizeof r->resolved_by);
    return CD_OK;
}

struct list_q {
    struct link_page *pg;
    struct cd_str status;
    int64_t before_ms;
    char before_id[CD_ID_MAX];
    int limit;
};

static enum cd_err list_fn(struct cd_tx *tx, void *ctx)
{
    struct list_q *q = ctx;
    struct cd_val p[] = {CD_VTEXT(q->status), CD_VINT(q->before_ms), CD_VCSTR(q->before_id),
                         CD_VINT(q->limit + 1)};

    return cd_tx_exec(tx, "SELECT " LINK_COLUMNS " FROM identity_links"
                          " WHERE ($1 = 'all' OR status = $1) AND (created_at, id) < ($2, $3)"
                          " ORDER BY created_at DESC, id DESC LIMIT $4",
                      p, 4, link_row_fn, q->pg, NULL);
}

/* One side of a link as a read sees it: the customer's restriction, key and the identity. */
struct side {
    struct cd_str customer_id;
    const uint8_t *lookup;
    struct cd_str kind;
    bool found, restricted;
    struct cd_buf wrapped, sealed;
};

static enum cd_err side_customer_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct side *s = ctx;

    s->found = true;
    s->restricted = cols[1].type == CD_VAL_INT && cols[1].i != 0;
    cd_buf_reset(&s->wrapped);
    return cols[0].type == CD_VAL_BLOB ? cd_buf_append(&s->wrapped, cols[0].p, cols[0].len)
                                       : CD_OK;
}

static enum cd_err side_identity_row(void *ctx, const struct cd_val *cols, size_t n)
{
    struct side *s = ctx;

    cd_buf_reset(&s->sealed);
    return cd_buf_append(&s->sealed, cols[0].p, cols[0].len);
}

static enum cd_err side_fn(struct cd_tx *tx, void *ctx)
{
    struct side *s = ctx;
    struct cd_val p[] = {CD_VTEXT(s->customer_id)};
    struct cd_val q[] = {CD_VTEXT(s->kind), CD_VBLOB(s->lookup, CD_CRYPTO_HASH_LEN),
                         CD_VTEXT(s->customer_id)};
    enum cd_err err;

    if ((err = cd_tx_exec(tx, "SELECT key_wrapped, restricted FROM customers WHERE id = $1"
                              " AND merged_into IS NULL AND erased_at IS NULL",
                          p, 1, side_customer_row, s, NULL)) != CD_OK)
        return err;
    return cd_tx_exec(tx, "SELECT value FROM identities WHERE kind = $1 AND lookup = $2"
                          " AND customer_id = $3",
                      q, 3, side_identity_row, s, NULL);
}

/* The code points of value beyond ASCII, named ("U+0430 CYRILLIC SMALL LETTER A"), so a
 * supervisor sees what the eye does not. At most eight. */
static json_t *unusual_characters(struct cd_str value)
{
    json_t *arr = json_array();
    utf8proc_ssize_t i = 0;

    while (arr && (size_t)i < value.len && json_array_size(arr) < 8) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)value.p + i,
                                              (utf8proc_ssize_t)value.len - i, &cp);
        char name[96] = "", text[128];
        UErrorCode st = U_ZERO_ERROR;
        if (k <= 0)
            break;
        i += k;
        if (cp < 0x80)
            continue;
        u_charName(cp, U_UNICODE_CHAR_NAME, name, sizeof name, &st);
        snprintf(text, sizeof text, "U+%04X%s%s", (unsigned)cp, name[0] ? " " : "", name);
        if (json_array_append_new(arr, json_string(text)) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

/* {"customer_id","value","unusual_characters"} for one side, opened with its customer's key;
 * value null when the identity is no longer the customer's. */
static enum cd_err side_json(struct cd_core *c, struct side *s, json_t **out)
{
    struct cd__ckey k;
    struct cd_buf plain = CD_BUF_INIT(4096);
    bool present = false;
    enum cd_err err;
    char cid[CD_ID_MAX];
    json_t *o = NULL;

    snprintf(cid, sizeof cid, "%.*s", (int)s->customer_id.len, s->customer_id.p);
    if ((o = json_pack("{s:s}", "customer_id", cid)) == NULL)
        return CD_ERR_NOMEM;
    if (s->sealed.len && s->wrapped.len) {
        struct cd_val w = CD_VBLOB(s->wrapped.p, s->wrapped.len);
        struct cd_val v = CD_VBLOB(s->sealed.p, s->sealed.len);
        if ((err = cd__core_key_open(c, cid, w, &k)) != CD_OK)
            goto out;
        err = cd__core_open(&k, "identity", v, &plain, &present);
        cd__core_key_wipe(&k);
        if (err != CD_OK)
            goto out;
    }
    err = CD_ERR_NOMEM;
    if (cd_json_set_new(o, "value", present ? json_stringn(plain.p, plain.len) : json_null()) !=
            CD_OK ||
        cd_json_set_new(o, "unusual_characters",
                        unusual_characters(present ? (struct cd_str){plain.p, plain.len}
                                                   : CD_STR(""))) != CD_OK)
        goto out;
    *out = o;
    o = NULL;
    err = CD_OK;
out:
    if (plain.p)
        cd_crypto_wipe(plain.p, plain.cap);
    cd_buf_free(&plain);
    json_decref(o);
    return err;
}

/* The link as the API shows it; with the identities when the purpose may see contact data and
 * both customers may be read for it (each read audited), else without them. */
static enum cd_err link_json(struct cd_core *c, const struct cd_actor *a, const struct link_row *r,
                             unsigned fields, json_t **out)
{
    char created[CD_TIME_STRLEN], resolved[CD_TIME_STRLEN];
    struct side sides[2] = {
        {cd_str_c(r->customer_id), r->lookup, cd_str_c(r->kind), false, false,
         CD_BUF_INIT(256), CD_BUF_INIT(4096)},
        {cd_str_c(r->other_id), r->other_lookup, cd_str_c(r->kind), false, false,
         CD_BUF_INIT(256), CD_BUF_INIT(4096)}};
    json_t *o, *idents = NULL;
    enum cd_err err = CD_OK;

    cd_time_format(r->created_at, created);
    cd_time_format(r->resolved_at, resolved);
    o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:o,s:o}", "id", r->id, "status", r->status,
                  "reason", r->reason, "identity_type", r->kind, "customer_id", r->customer_id,
                  "other_customer_id", r->other_id, "created_at", created, "resolved_at",
                  r->resolved_at ? json_string(resolved) : json_null(), "resolved_by",
                  r->resolved_by[0] ? json_string(r->resolved_by) : json_null());
    if (o == NULL)
        return CD_ERR_NOMEM;
    if (!(fields & CD_FIELDS_CONTACT) || strcmp(r->status, "open") != 0)
        goto done;
    for (int i = 0; i < 2 && err == CD_OK; i++)
        err = cd_store_read(c->store, side_fn, &sides[i]);
    if (err != CD_OK)
        goto out;
    for (int i = 0; i < 2; i++) {
        if (!sides[i].found)
            goto done; /* merged or erased meanwhile: nothing to show */
        err = cd__core_read_allowed(c, a, i ? r->other_id : r->customer_id, sides[i].restricted,
                                    "possible_duplicate.read");
        if (err == CD_ERR_PURPOSE_DENIED) {
            cd_err_clear();
            err = CD_OK;
            goto done; /* listed, without the identities */
        }
        if (err != CD_OK)
            goto out;
    }
    for (int i = 0; i < 2; i++)
        if ((err = cd__core_audit_read(c, a, "possible_duplicate.read",
                                       i ? r->other_id : r->customer_id, r->id, fields)) != CD_OK)
            goto out;
    if ((idents = json_array()) == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    for (int i = 0; i < 2; i++) {
        json_t *sj = NULL;
        if ((err = side_json(c, &sides[i], &sj)) != CD_OK)
            goto out;
        if (json_array_append_new(idents, sj) != 0) {
            err = CD_ERR_NOMEM;
            goto out;
        }
    }
    err = cd_json_set_new(o, "identities", idents);
    idents = NULL;
    if (err != CD_OK)
        goto out;
done:
    *out = o;
    o = NULL;
    err = CD_OK;
out:
    for (int i = 0; i < 2; i++) {
        cd_buf_free(&sides[i].wrapped);
        cd_buf_free(&sides[i].sealed);
    }
    json_decref(idents);
    json_decref(o);
    return err;
}

enum cd_err cd_core_duplicates_list(struct cd_core *c, const struct cd_actor *a,
                                    struct cd_str status, struct cd_str cursor, int limit,
                                    unsigned fields, json_t **out)
{
    struct link_page page = {NULL, 0, 0}, *pg = &page;
    struct list_q q = {pg, status.len ? status : CD_STR("open"), 0, "", limit};
    json_t *items = NULL;
    enum cd_err err;

    if (!cd_str_eq_c(q.status, "open") && !cd_str_eq_c(q.status, "merged") &&
        !cd_str_eq_c(q.status, "dismissed") && !cd_str_eq_c(q.status, "all")) {
        err = cd_err_set(CD_ERR_INVALID, "status must be open, merged, dismissed or all");
        goto out;
    }
    if (limit < 1 || limit > 200) {
        err = cd_err_set(CD_ERR_INVALID, "limit must be between 1 and 200");
        goto out;
    }
    pg->max = limit + 1;
    if ((pg->rows = cd_calloc((size_t)pg->max, sizeof *pg->rows)) == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    if ((err = cd__core_cursor_decode(cursor, &q.before_ms, q.before_id)) != CD_OK ||
        (err = cd_store_read(c->store, list_fn, &q)) != CD_OK)
        goto out;
    if ((items = json_array()) == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    int shown = pg->count > limit ? limit : pg->count;
    for (int i = 0; i < shown; i++) {
        json_t *lj = NULL;
        if ((err = link_json(c, a, &pg->rows[i], fields, &lj)) != CD_OK)
            goto out;
        if (json_array_append_new(items, lj) != 0) {
            err = CD_ERR_NOMEM;
            goto out;
        }
    }
    err = cd__core_page(items, pg->count > limit, shown ? pg->rows[shown - 1].created_at : 0,
                        shown ? pg->rows[shown - 1].id : "", out);
    items = NULL;
out:
    json_decref(items);
    cd_free(pg->rows);
    return err;
}

struct one_link {
    char id[CD_ID_MAX];
    struct link_row row;
    struct link_page pg;
};

static enum cd_err one_link_fn(struct cd_tx *tx, void *ctx)
{
    struct one_link *l = ctx;
    struct cd_val p[] = {CD_VCSTR(l->id)};

    l->pg = (struct link_page){&l->row, 0, 1};
    return cd_tx_exec(tx, "SELECT " LINK_COLUMNS " FROM identity_links WHERE id = $1", p, 1,
                      link_row_fn, &l->pg, NULL);
}

/* Reads one link by id into l. Errors: CD_ERR_NOT_FOUND. */
static enum cd_err load_link(struct cd_core *c, struct cd_str id, struct one_link *l)
{
    enum cd_err err;

    if (!cd_id_valid(id, "dup"))
        return cd_err_set(CD_ERR_NOT_FOUND, "no possible duplicate with this id");
    snprintf(l->id, sizeof l->id, "%.*s", (int)id.len, id.p);
    if ((err = cd_store_read(c->store, one_link_fn, l)) != CD_OK)
        return err;
    return l->pg.count ? CD_OK : cd_err_set(CD_ERR_NOT_FOUND, "no possible duplicate with this id");
}

static enum cd_err answer_link(struct cd_core *c, const struct cd_actor *a, struct cd_str id,
                               json_t **out)
{
    struct one_link *l = cd_calloc(1, sizeof *l);
    enum cd_err err;

    if (l == NULL)
        return CD_ERR_NOMEM;
    if ((err = load_link(c, id, l)) == CD_OK)
        err = link_json(c, a, &l->pg.rows[0], CD_FIELDS_REFERENCE, out);
    cd_free(l);
    return err;
}

enum cd_err cd_core_duplicate_merge(struct cd_core *c, const struct cd_actor *a, struct cd_str id,
                                    struct cd_str survivor, json_t **out)
{
    struct one_link *l = cd_calloc(1, sizeof *l);
    json_t *merged = NULL;
    enum cd_err err;

    if (l == NULL)
        return CD_ERR_NOMEM;
    if ((err = load_link(c, id, l)) != CD_OK)
        goto out;
    const struct link_row *r = &l->pg.rows[0];
    if (strcmp(r->status, "open") != 0) {
        err = cd_err_set(CD_ERR_CONFLICT, "this possible duplicate was already %s", r->status);
        goto out;
    }
    /* By default the customer who held the look-alike first survives. */
    const char *keep = r->other_id, *drop = r->customer_id;
    if (survivor.p && cd_str_eq_c(survivor, r->customer_id)) {
        keep = r->customer_id;
        drop = r->other_id;
    } else if (survivor.p && !cd_str_eq_c(survivor, r->other_id)) {
        err = cd_err_set(CD_ERR_INVALID, "'survivor' must be one of the two customers linked");
        goto out;
    }
    if ((err = cd_core_customer_merge(c, a, cd_str_c(keep), cd_str_c(drop), CD_FIELDS_REFERENCE,
                                      &merged)) != CD_OK)
        goto out;
    err = answer_link(c, a, id, out);
out:
    json_decref(merged);
    cd_free(l);
    return err;
}

struct dismiss_ctx {
    const struct cd_actor *a;
    char id[CD_ID_MAX];
    char customer_id[CD_ID_MAX];
};

static enum cd_err dismiss_fn(struct cd_tx *tx, void *ctx)
{
    struct dismiss_ctx *d = ctx;
    struct cd_audit_event ev;
    struct link_row row;
    struct link_page pg = {&row, 0, 1};
    int64_t changes = 0;
    enum cd_err err;
    struct cd_val p[] = {CD_VCSTR(d->id), CD_VINT(cd_now_ms()), CD_VCSTR(d->a->token_id)};

    if ((err = cd_tx_exec(tx, "SELECT " LINK_COLUMNS " FROM identity_links WHERE id = $1", p, 1,
                          link_row_fn, &pg, NULL)) != CD_OK)
        return err;
    if (pg.count == 0)
        return cd_err_set(CD_ERR_NOT_FOUND, "no possible duplicate with this id");
    if ((err = cd_tx_exec(tx, "UPDATE identity_links SET status = 'dismissed',"
                              " resolved_at = $2, resolved_by = $3"
                              " WHERE id = $1 AND status = 'open'",
                          p, 3, NULL, NULL, &changes)) != CD_OK)
        return err;
    if (changes == 0)
        return cd_err_set(CD_ERR_CONFLICT, "this possible duplicate was already %s",
                          pg.rows[0].status);
    cd__core_event(&ev, d->a, "possible_duplicate.dismiss", pg.rows[0].customer_id, d->id, 0);
    return cd_audit_append(tx, &ev, NULL);
}

enum cd_err cd_core_duplicate_dismiss(struct cd_core *c, const struct cd_actor *a,
                                      struct cd_str id, json_t **out)
{
    struct dismiss_ctx d = {a, "", ""};
    enum cd_err err;

    if (!cd_id_valid(id, "dup"))
        return cd_err_set(CD_ERR_NOT_FOUND, "no possible duplicate with this id");
    snprintf(d.id, sizeof d.id, "%.*s", (int)id.len, id.p);
    if ((err = cd_store_write(c->store, dismiss_fn, &d)) != CD_OK)
        return err;
    return answer_link(c, a, id, out);
}
