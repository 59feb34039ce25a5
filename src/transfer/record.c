/* The interchange records and the readers that make them: NDJSON lines, CSV rows through a
 * column mapping, Zendesk tickets. Everything here is pure: no store, no keys. */
#include <stdio.h>
#include <string.h>
#include "transfer_int.h"

#define IDENTITY_MAX 1024

static const char *const customer_members[] = {
    "type", "id", "display_name", "attributes", "locale", "time_zone", "jurisdiction",
    "identities", "restricted", NULL};
static const char *const interaction_members[] = {
    "type",    "id",   "customer_id", "identity", "channel", "direction", "occurred_at",
    "thread_id", "subject", "body", "metadata", "purpose", NULL};

void cd_transfer_record_free(struct cd_transfer_record *rec)
{
    json_decref(rec->body);
    rec->body = NULL;
}

/* A source id: a string of 1 to CD_TRANSFER_ID_MAX bytes, into out. */
static enum cd_err source_id(const json_t *o, const char *key, bool required,
                             char out[CD_TRANSFER_ID_MAX + 1])
{
    struct cd_str s = CD_STR_NULL;
    enum cd_err err;

    out[0] = '\0';
    if ((err = cd_json_str(o, key, required, &s)) != CD_OK)
        return err;
    if (s.p == NULL)
        return CD_OK;
    if (s.len == 0 || s.len > CD_TRANSFER_ID_MAX || memchr(s.p, '\0', s.len))
        return cd_err_set(CD_ERR_INVALID, "'%s' must be a string of 1 to %d bytes", key,
                          CD_TRANSFER_ID_MAX);
    memcpy(out, s.p, s.len);
    out[s.len] = '\0';
    return CD_OK;
}

/* An identity {"type","value","network"?}, its value normalised as core will (so a check
 * finds a malformed address before the import starts). */
static enum cd_err identity_check(const json_t *id, const char *where)
{
    static const char *const allowed[] = {"type", "value", "network", NULL};
    struct cd_str type = CD_STR_NULL, value = CD_STR_NULL, network = CD_STR_NULL;
    struct cd_buf norm = CD_BUF_INIT(IDENTITY_MAX);
    enum cd_err err;

    if (!json_is_object(id))
        return cd_err_set(CD_ERR_INVALID, "'%s' must be an object", where);
    if ((err = cd_json_only(id, allowed)) != CD_OK ||
        (err = cd_json_str(id, "type", true, &type)) != CD_OK ||
        (err = cd_json_str(id, "value", true, &value)) != CD_OK ||
        (err = cd_json_str(id, "network", false, &network)) != CD_OK)
        return cd_err_set(err, "'%s': %s", where, cd_err_detail());
    err = cd_core_identity_normalize(type, network, value, &norm);
    cd_buf_free(&norm);
    if (err == CD_ERR_INVALID)
        return cd_err_set(err, "'%s': %s", where, cd_err_detail());
    return err;
}

static enum cd_err customer_record(const json_t *o, struct cd_transfer_record *rec)
{
    static const char *const copied[] = {"display_name", "attributes", "locale", "time_zone",
                                         "jurisdiction", "identities", NULL};
    struct cd_str s;
    json_t *v = NULL;
    enum cd_err err;
    char where[48];

    if ((err = cd_json_only(o, customer_members)) != CD_OK)
        return err;
    v = json_object_get(o, "display_name");
    if (v && !json_is_string(v) && !json_is_null(v))
        return cd_err_set(CD_ERR_INVALID, "'display_name' must be a string or null");
    if ((err = cd_json_obj(o, "attributes", false, &v)) != CD_OK ||
        (err = cd_json_str(o, "locale", false, &s)) != CD_OK ||
        (err = cd_json_str(o, "time_zone", false, &s)) != CD_OK ||
        (err = cd_json_str(o, "jurisdiction", false, &s)) != CD_OK ||
        (err = cd_json_bool(o, "restricted", false, &rec->restricted)) != CD_OK)
        return err;
    v = NULL;
    if ((err = cd_json_arr(o, "identities", false, &v)) != CD_OK)
        return err;
    for (size_t i = 0; i < json_array_size(v); i++) {
        snprintf(where, sizeof where, "identities[%zu]", i);
        if ((err = identity_check(json_array_get(v, i), where)) != CD_OK)
            return err;
    }
    for (size_t i = 0; copied[i]; i++)
        if ((err = cd_json_copy_key(rec->body, o, copied[i])) != CD_OK)
            return err;
    return CD_OK;
}

static enum cd_err interaction_record(const json_t *o, struct cd_transfer_record *rec)
{
    static const char *const copied[] = {"identity", "channel",   "direction",
                                         "occurred_at", "thread_id", "subject",
                                         "body",     "metadata",  "purpose", NULL};
    struct cd_str channel = CD_STR_NULL, direction = CD_STR_NULL, at = CD_STR_NULL,
                  purpose = CD_STR_NULL, s;
    const json_t *ident = json_object_get(o, "identity");
    enum cd_purpose pu;
    json_t *v;
    int64_t ms;
    enum cd_err err;

    if ((err = cd_json_only(o, interaction_members)) != CD_OK ||
        (err = source_id(o, "customer_id", false, rec->customer)) != CD_OK)
        return err;
    if ((rec->customer[0] != '\0') == (ident != NULL))
        return cd_err_set(CD_ERR_INVALID, "give one of 'customer_id' and 'identity'");
    if (ident && (err = identity_check(ident, "identity")) != CD_OK)
        return err;
    if ((err = cd_json_str(o, "channel", true, &channel)) != CD_OK ||
        (err = cd_json_str(o, "direction", true, &direction)) != CD_OK ||
        (err = cd_json_str(o, "occurred_at", true, &at)) != CD_OK ||
        (err = cd_json_str(o, "purpose", false, &purpose)) != CD_OK ||
        (err = cd_json_str(o, "thread_id", false, &s)) != CD_OK ||
        (err = cd_json_str(o, "subject", false, &s)) != CD_OK ||
        (err = cd_json_str(o, "body", false, &s)) != CD_OK ||
        (err = cd_json_obj(o, "metadata", false, &v)) != CD_OK)
        return err;
    if (!cd_core_channel_valid(channel))
        return cd_err_set(CD_ERR_INVALID, "'channel' is not a channel");
    if (!cd_core_direction_valid(direction))
        return cd_err_set(CD_ERR_INVALID, "'direction' must be inbound or outbound");
    if (cd_time_parse(at, &ms) != CD_OK)
        return cd_err_set(CD_ERR_INVALID, "'occurred_at' must be an RFC 3339 time");
    if (purpose.p && !cd_purpose_parse(purpose, &pu))
        return cd_err_set(CD_ERR_INVALID, "'purpose' is not a purpose (%s)", cd_purpose_list());
    for (size_t i = 0; copied[i]; i++)
        if ((err = cd_json_copy_key(rec->body, o, copied[i])) != CD_OK)
            return err;
    return CD_OK;
}

enum cd_err cd_transfer_record_from_json(const json_t *o, struct cd_transfer_record *rec)
{
    struct cd_str type = CD_STR_NULL;
    enum cd_err err;

    memset(rec, 0, sizeof *rec);
    if (!json_is_object(o))
        return cd_err_set(CD_ERR_INVALID, "a record is a JSON object");
    if ((err = cd_json_str(o, "type", true, &type)) != CD_OK ||
        (err = source_id(o, "id", true, rec->id)) != CD_OK)
        return err;
    if ((rec->body = json_object()) == NULL)
        return CD_ERR_NOMEM;
    if (cd_str_eq_c(type, "customer")) {
        rec->kind = CD_TRANSFER_CUSTOMER;
        return customer_record(o, rec);
    }
    if (cd_str_eq_c(type, "interaction")) {
        rec->kind = CD_TRANSFER_INTERACTION;
        return interaction_record(o, rec);
    }
    return cd_err_set(CD_ERR_INVALID, "'type' must be customer or interaction");
}

enum cd_err cd_transfer_record_parse(struct cd_str line, struct cd_transfer_record *rec)
{
    json_t *o = NULL;
    enum cd_err err;

    memset(rec, 0, sizeof *rec);
    if (line.len && line.p[line.len - 1] == '\r')
        line.len--;
    if ((err = cd_json_parse_object(line.p, line.len, &o)) != CD_OK)
        return err;
    err = cd_transfer_record_from_json(o, rec);
    json_decref(o);
    return err;
}

/* ---- CSV ---- */

bool cd_transfer_csv_complete(struct cd_str text)
{
    bool open = false;

    for (size_t i = 0; i < text.len; i++)
        if (text.p[i] == '"')
            open = !open;
    return !open;
}

enum cd_err cd_transfer_csv_split(struct cd_str rec, char delim, json_t **fields)
{
    struct cd_buf f = CD_BUF_INIT(CD_TRANSFER_LINE_MAX);
    json_t *arr = json_array();
    size_t i = 0;
    enum cd_err err = CD_OK;

    *fields = NULL;
    if (arr == NULL)
        return CD_ERR_NOMEM;
    if (rec.len && rec.p[rec.len - 1] == '\r')
        rec.len--;
    for (;;) {
        f.len = 0;
        if (i < rec.len && rec.p[i] == '"') {
            for (i++;; i++) {
                if (i >= rec.len) {
                    err = cd_err_set(CD_ERR_INVALID, "a quoted field is not closed");
                    goto out;
                }
                if (rec.p[i] == '"') {
                    if (i + 1 < rec.len && rec.p[i + 1] == '"') {
                        i++;
                    } else {
                        i++;
                        break;
                    }
                }
                if ((err = cd_buf_putc(&f, rec.p[i])) != CD_OK)
                    goto out;
            }
            if (i < rec.len && rec.p[i] != delim) {
                err = cd_err_set(CD_ERR_INVALID, "text after a closing quote (field %zu)",
                                 json_array_size(arr) + 1);
                goto out;
            }
        } else {
            size_t start = i;
            while (i < rec.len && rec.p[i] != delim) {
                if (rec.p[i] == '"') {
                    err = cd_err_set(CD_ERR_INVALID, "a quote inside an unquoted field (field "
                                                     "%zu)", json_array_size(arr) + 1);
                    goto out;
                }
                i++;
            }
            if ((err = cd_buf_append(&f, rec.p + start, i - start)) != CD_OK)
                goto out;
        }
        json_t *s = json_stringn(f.p ? f.p : "", f.len);
        if (s == NULL) {
            /* jansson refuses invalid UTF-8 as well as failing to allocate. */
            err = cd_utf8_valid(f.p, f.len) ? CD_ERR_NOMEM
                                            : cd_err_set(CD_ERR_INVALID, "field %zu is not UTF-8",
                                                         json_array_size(arr) + 1);
            goto out;
        }
        if (json_array_append_new(arr, s) != 0) {
            err = CD_ERR_NOMEM;
            goto out;
        }
        if (i >= rec.len)
            break;
        i++; /* the delimiter */
    }
    *fields = arr;
    arr = NULL;
out:
    json_decref(arr);
    cd_buf_free(&f);
    return err;
}

/* ---- column mapping ---- */


static const char *const map_fields[] = {"id",          "customer_id", "identity.type",
                                         "identity.value", "identity.network", "channel",
                                         "direction",   "occurred_at", "thread_id",
                                         "subject",     "body",        "purpose",
                                         NULL};

static bool map_field_known(const char *f)
{
    if (strncmp(f, "metadata.", 9) == 0)
        return f[9] != '\0';
    for (size_t i = 0; map_fields[i]; i++)
        if (strcmp(f, map_fields[i]) == 0)
            return true;
    return false;
}

void cd_transfer_map_free(struct cd_transfer_map *m)
{
    if (m == NULL)
        return;
    json_decref(m->columns);
    json_decref(m->values);
    json_decref(m->index);
    cd_free(m);
}

char cd_transfer_map_delimiter(const struct cd_transfer_map *m)
{
    return m->delim;
}

enum cd_err cd_transfer_map_parse(struct cd_str text, struct cd_transfer_map **out)
{
    static const char *const allowed[] = {"delimiter", "columns", "values", NULL};
    struct cd_transfer_map *m = NULL;
    struct cd_str delim = CD_STR_NULL;
    json_t *o = NULL, *cols = NULL, *vals = NULL, *v;
    const char *k;
    bool has_id = false;
    enum cd_err err;

    *out = NULL;
    if ((err = cd_json_parse_object(text.p, text.len, &o)) != CD_OK ||
        (err = cd_json_only(o, allowed)) != CD_OK ||
        (err = cd_json_str(o, "delimiter", false, &delim)) != CD_OK ||
        (err = cd_json_obj(o, "columns", true, &cols)) != CD_OK ||
        (err = cd_json_obj(o, "values", false, &vals)) != CD_OK)
        goto out;
    if (delim.p && (delim.len != 1 || delim.p[0] == '"' || delim.p[0] == '\n' ||
                    delim.p[0] == '\r' || (unsigned char)delim.p[0] >= 0x80)) {
        err = cd_err_set(CD_ERR_INVALID, "'delimiter' must be one ASCII character (not a quote "
                                         "or a line break)");
        goto out;
    }
    json_object_foreach(cols, k, v)
    {
        if (!json_is_string(v) || !map_field_known(json_string_value(v))) {
            err = cd_err_set(CD_ERR_INVALID, "'columns'.'%s' must name a field: %s", k,
                             "id, customer_id, identity.type, identity.value, identity.network, "
                             "channel, direction, occurred_at, thread_id, subject, body, "
                             "purpose or metadata.NAME");
            goto out;
        }
        has_id |= strcmp(json_string_value(v), "id") == 0;
    }
    json_object_foreach(vals, k, v)
        if (!map_field_known(k) || strcmp(k, "id") == 0 || !json_is_string(v)) {
            err = cd_err_set(CD_ERR_INVALID, "'values'.'%s' must be a field other than id, "
                                             "with a string", k);
            goto out;
        }
    if (!has_id) {
        err = cd_err_set(CD_ERR_INVALID, "'columns' must map a column to id (it makes a re-run "
                                         "skip what is already imported)");
        goto out;
    }
    if ((m = cd_calloc(1, sizeof *m)) == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    m->delim = delim.p ? delim.p[0] : ',';
    m->columns = json_incref(cols);
    m->values = vals ? json_incref(vals) : json_object();
    if (m->values == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    *out = m;
    m = NULL;
out:
    cd_transfer_map_free(m);
    json_decref(o);
    return err;
}

enum cd_err cd_transfer_map_header(struct cd_transfer_map *m, const json_t *header)
{
    json_t *index = json_object(), *v;
    const char *k;
    size_t i;

    if (index == NULL)
        return CD_ERR_NOMEM;
    json_array_foreach(header, i, v)
    {
        const json_t *field = json_object_get(m->columns, json_string_value(v));
        if (field == NULL)
            continue;
        if (json_object_get(index, json_string_value(field))) {
            json_decref(index);
            return cd_err_set(CD_ERR_INVALID, "the header names a mapped column twice, or two "
                                              "columns fill one field (column %zu)", i + 1);
        }
        if (json_object_set_new(index, json_string_value(field), json_integer((json_int_t)i))) {
            json_decref(index);
            return CD_ERR_NOMEM;
        }
    }
    json_object_foreach(m->columns, k, v)
        if (json_object_get(index, json_string_value(v)) == NULL) {
            json_decref(index);
            return cd_err_set(CD_ERR_INVALID, "the header has no column '%s' (mapped to %s)", k,
                              json_string_value(v));
        }
    json_decref(m->index);
    m->index = index;
    m->ncols = json_array_size(header);
    return CD_OK;
}

/* Sets field (dotted: identity.value, metadata.NAME) of rec to s. */
static enum cd_err set_field(json_t *rec, const char *field, json_t *s)
{
    const char *dot = strchr(field, '.');
    json_t *sub;

    if (dot == NULL)
        return cd_json_set_new(rec, field, s);
    char parent[16];
    snprintf(parent, sizeof parent, "%.*s", (int)(dot - field), field);
    if ((sub = json_object_get(rec, parent)) == NULL) {
        if (cd_json_set_new(rec, parent, json_object()) != CD_OK) {
            json_decref(s);
            return CD_ERR_NOMEM;
        }
        sub = json_object_get(rec, parent);
    }
    return cd_json_set_new(sub, dot + 1, s);
}

enum cd_err cd_transfer_map_row(const struct cd_transfer_map *m, const json_t *row,
                                struct cd_transfer_record *rec)
{
    json_t *o = json_pack("{s:s}", "type", "interaction"), *v;
    const char *k;
    enum cd_err err = CD_OK;

    memset(rec, 0, sizeof *rec);
    if (o == NULL)
        return CD_ERR_NOMEM;
    if (m->index == NULL || json_array_size(row) != m->ncols) {
        json_decref(o);
        return cd_err_set(CD_ERR_INVALID, "the row has %zu fields, the header %zu",
                          json_array_size(row), m->ncols);
    }
    json_object_foreach(m->values, k, v)
        if ((err = set_field(o, k, json_incref(v))) != CD_OK)
            goto out;
    json_object_foreach(m->index, k, v)
    {
        json_t *cell = json_array_get(row, (size_t)json_integer_value(v));
        if (json_string_length(cell) == 0)
            continue;
        if ((err = set_field(o, k, json_incref(cell))) != CD_OK)
            goto out;
    }
    err = cd_transfer_record_from_json(o, rec);
out:
    json_decref(o);
    return err;
}

/* ---- Zendesk ---- */

/* Zendesk's via.channel names as Candor channels; others are "app". */
static const char *zendesk_channel(const char *via)
{
    static const char *const map[][2] = {
        {"email", "email"}, {"web", "chat"},    {"chat", "chat"},       {"native_messaging", "chat"},
        {"api", "app"},     {"mobile_sdk", "app"}, {"voice", "phone"},  {"sms", "sms"},
        {"twitter", "social"}, {"facebook", "social"}, {"instagram_dm", "social"},
        {"whatsapp", "social"}, {NULL, NULL}};
    for (size_t i = 0; via && map[i][0]; i++)
        if (strcmp(via, map[i][0]) == 0)
            return map[i][1];
    return "app";
}

/* A Zendesk id: a number, or a string of digits, as text. */
static bool zendesk_id(const json_t *v, char out[32])
{
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        snprintf(out, 32, "%lld", (long long)json_integer_value(v));
        return true;
    }
    const char *s = json_string_value(v);
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 30 || strspn(s, "0123456789") != n)
        return false;
    snprintf(out, 32, "%s", s);
    return true;
}

enum cd_err cd_transfer_zendesk_ticket(const json_t *ticket, json_t **out)
{
    const json_t *comments = json_object_get(ticket, "comments"), *c;
    const char *subject = json_string_value(json_object_get(ticket, "subject"));
    const char *via = json_string_value(
        json_object_get(json_object_get(ticket, "via"), "channel"));
    char tid[32], requester[32], author[32], cid[32], id[CD_TRANSFER_ID_MAX + 1];
    json_t *arr = NULL;
    size_t i;

    *out = NULL;
    if (!json_is_object(ticket))
        return cd_err_set(CD_ERR_INVALID, "a ticket is a JSON object");
    if (!zendesk_id(json_object_get(ticket, "id"), tid))
        return cd_err_set(CD_ERR_INVALID, "'id' must be a ticket number");
    if (!zendesk_id(json_object_get(ticket, "requester_id"), requester))
        return cd_err_set(CD_ERR_INVALID, "'requester_id' must be a user number");
    if (!json_is_array(comments))
        return cd_err_set(CD_ERR_INVALID, "'comments' must be an array (export tickets with "
                                          "their comments)");
    if ((arr = json_array()) == NULL)
        return CD_ERR_NOMEM;
    json_array_foreach(comments, i, c)
    {
        const json_t *pub = json_object_get(c, "public");
        const json_t *body = json_object_get(c, "plain_body");
        const json_t *at = json_object_get(c, "created_at");
        if (!json_is_object(c) || !zendesk_id(json_object_get(c, "id"), cid) ||
            !zendesk_id(json_object_get(c, "author_id"), author) || !json_is_string(at)) {
            json_decref(arr);
            return cd_err_set(CD_ERR_INVALID, "'comments[%zu]' must have a numeric id and "
                                              "author_id and a created_at", i);
        }
        /* A private comment is an agents' note, not part of the exchange with the customer. */
        if (json_is_false(pub))
            continue;
        if (!json_is_string(body))
            body = json_object_get(c, "body");
        snprintf(id, sizeof id, "zendesk:%s:%s", tid, cid);
        const char *cvia = json_string_value(
            json_object_get(json_object_get(c, "via"), "channel"));
        json_t *r = json_pack("{s:s,s:s,s:{s:s,s:s,s:s},s:s,s:s,s:O,s:s,s:{s:s,s:s}}", "type",
                              "interaction", "id", id, "identity", "type", "external", "network",
                              "zendesk", "value", requester, "channel",
                              zendesk_channel(cvia ? cvia : via), "direction",
                              strcmp(author, requester) == 0 ? "inbound" : "outbound",
                              "occurred_at", at, "thread_id", tid, "metadata", "source",
                              "zendesk", "author_id", author);
        if (r && ((json_is_string(body) &&
                   cd_json_set_new(r, "body", json_incref((json_t *)body)) != CD_OK) ||
                  (subject && cd_json_set_new(r, "subject", json_string(subject)) != CD_OK))) {
            json_decref(r);
            r = NULL;
        }
        if (json_array_append_new(arr, r) != 0) {
            json_decref(arr);
            return CD_ERR_NOMEM;
        }
    }
    *out = arr;
    return CD_OK;
}
