/* The export that answers an access or portability request: one ZIP, streamed while it is
 * made, holding every record Candor keeps about the customer as JSON and CSV (the customer and
 * their identities, every interaction, the consent history with its signed receipts, the
 * access log, their requests), the passages of their conversations that may be other people's
 * personal data (found by the guard's PII rules, for review before release), a readable HTML
 * summary, and a manifest (categories, purposes, recipients, retention, sources, and each
 * file's record count and SHA-256). Memory holds one page of interactions at a time. */
#include <stdio.h>
#include <string.h>
#include "audit/audit.h"
#include "consent/consent.h"
#include "crypto/crypto.h"
#include "dsar_int.h"
#include "guard/guard.h"

#define REVIEW_MAX 10000 /* passages listed for review; past it they are counted */
#define ACCESS_PAGE 200

struct cd_dsar_export {
    struct cd_dsar *d;
    char id[CD_ID_MAX], customer_id[CD_ID_MAX];
    enum cd_dsar_type type;
    /* the actor, copied: the export outlives the request that started it */
    char token[CD_ID_MAX], role[32], name[128], purpose[32], req[CD_ID_MAX];
    struct cd_actor actor;
    int64_t at;
};

/* ---- opening ---- */

struct open_ctx {
    struct cd_dsar_export *x;
    struct cd__dsar_row r;
    struct cd_core_customer_ref c;
};

static enum cd_err open_fn(struct cd_tx *tx, void *ctx)
{
    struct open_ctx *o = ctx;
    enum cd_err err;

    if ((err = cd__dsar_load(tx, o->x->id, &o->r)) != CD_OK || !o->r.found)
        return err;
    return cd_core_customer_ref(tx, cd_str_c(o->r.customer_id), &o->c);
}

static void copy(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "");
}

enum cd_err cd_dsar_export_open(struct cd_dsar *d, const struct cd_actor *a, struct cd_str id,
                                struct cd_dsar_export **out)
{
    struct cd_dsar_export *x = cd_calloc(1, sizeof *x);
    struct open_ctx o = {.x = x};
    enum cd_err err;

    *out = NULL;
    cd__dsar_row_init(&o.r);
    if (x == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    x->d = d;
    x->at = cd_now_ms();
    if ((err = cd__dsar_copy_id(id, x->id)) != CD_OK ||
        (err = cd_store_read(d->store, open_fn, &o)) != CD_OK)
        goto out;
    if (!o.r.found) {
        err = cd_err_set(CD_ERR_NOT_FOUND, "no request with this id");
        goto out;
    }
    if (o.r.type != CD_DSAR_ACCESS && o.r.type != CD_DSAR_PORTABILITY) {
        err = cd_err_set(CD_ERR_CONFLICT, "an export answers access and portability requests "
                                          "(this one is %s)", cd_dsar_type_name(o.r.type));
        goto out;
    }
    if (o.r.state != CD_DSAR_IN_PROGRESS && o.r.state != CD_DSAR_EXTENDED &&
        o.r.state != CD_DSAR_COMPLETED) {
        err = cd_err_set(CD_ERR_CONFLICT, "the request is %s: the export is made once it is in "
                                          "progress (the customer verified)",
                         cd_dsar_state_name(o.r.state));
        goto out;
    }
    if (o.c.erased) {
        err = cd_err_set(CD_ERR_CONFLICT, "the customer was erased: nothing of theirs is held");
        goto out;
    }
    x->type = o.r.type;
    copy(x->customer_id, sizeof x->customer_id, o.r.customer_id);
    copy(x->token, sizeof x->token, a->token_id);
    copy(x->role, sizeof x->role, a->role);
    copy(x->name, sizeof x->name, a->name);
    copy(x->purpose, sizeof x->purpose, a->purpose);
    copy(x->req, sizeof x->req, a->request_id);
    x->actor = *a;
    x->actor.token_id = x->token;
    x->actor.role = x->role;
    x->actor.name = x->name;
    x->actor.request_id = x->req;
    x->actor.purpose = a->purpose ? x->purpose : NULL;
    /* The export is one read of everything: the customer's read gate (restriction, consent)
     * decides, and the read is recorded before a byte of it leaves. */
    char resolved[CD_ID_MAX];
    if ((err = cd_core_customer_read_gate(d->core, &x->actor, cd_str_c(x->customer_id),
                                          "export.read", cd_policy_categories(CD_FIELDS_ALL),
                                          resolved)) != CD_OK)
        goto out;
    *out = x;
    x = NULL;
out:
    cd__dsar_row_free(&o.r);
    cd_free(x);
    return err;
}

void cd_dsar_export_free(struct cd_dsar_export *x)
{
    cd_free(x);
}

void cd_dsar_export_name(const struct cd_dsar_export *x, char *out, size_t n)
{
    snprintf(out, n, "candor-export-%s.zip", x->id);
}

/* ---- writing ---- */

struct file_info {
    char name[40];
    const char *about;
    int64_t records;
    char sha256[2 * CD_CRYPTO_HASH_LEN + 1];
};

struct flag_set {
    struct cd_buf json; /* the review items, comma-separated */
    int64_t count, listed;
};

struct writer {
    struct cd_dsar_export *x;
    struct cd__zip zip;
    struct cd_crypto_sha256 h;
    bool hashing;
    struct file_info files[16];
    size_t nfiles;
    struct cd_buf line; /* one CSV line or one JSON item at a time */
    json_t *customer;   /* the customer record (small) */
    json_t *own;        /* the customer's own identity values, lower-cased */
    json_t *channels, *purposes; /* objects used as sets */
    struct flag_set flags;
    int64_t interactions, consent_events, reads, requests;
    bool first; /* no item written yet in the current JSON array */
};

static enum cd_err put(struct writer *w, const void *p, size_t n)
{
    enum cd_err err;

    if (w->hashing && (err = cd_crypto_sha256_update(&w->h, p, n)) != CD_OK)
        return err;
    return cd__zip_write(&w->zip, p, n);
}

static enum cd_err puts_(struct writer *w, const char *s)
{
    return put(w, s, strlen(s));
}

static enum cd_err file_begin(struct writer *w, const char *name, const char *about)
{
    enum cd_err err;

    if (w->nfiles == sizeof w->files / sizeof w->files[0])
        return cd_err_set(CD_ERR_INTERNAL, "export: too many files");
    struct file_info *f = &w->files[w->nfiles];
    memset(f, 0, sizeof *f);
    snprintf(f->name, sizeof f->name, "%s", name);
    f->about = about;
    if ((err = cd__zip_begin(&w->zip, name)) != CD_OK)
        return err;
    w->hashing = true;
    w->first = true;
    return CD_OK;
}

static enum cd_err file_end(struct writer *w, int64_t records)
{
    uint8_t digest[CD_CRYPTO_HASH_LEN];
    struct file_info *f = &w->files[w->nfiles];
    enum cd_err err;

    w->hashing = false;
    if ((err = cd_crypto_sha256_final(&w->h, digest)) != CD_OK)
        return err;
    cd_hex_encode(digest, sizeof digest, f->sha256);
    f->records = records;
    w->nfiles++;
    return cd__zip_end(&w->zip);
}

/* One JSON value as an item of the array being written. */
static enum cd_err json_item(struct writer *w, const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII);
    enum cd_err err;

    if (s == NULL)
        return CD_ERR_NOMEM;
    if ((err = puts_(w, w->first ? "\n" : ",\n")) == CD_OK)
        err = puts_(w, s);
    w->first = false;
    cd_crypto_wipe(s, strlen(s));
    cd_free(s);
    return err;
}

/* ---- CSV (RFC 4180) ---- */

/* One field: quoted when it holds a comma, quote or line break; a value a spreadsheet would
 * run as a formula (=, +, -, @, tab, CR first) is prefixed with an apostrophe (OWASP CSV
 * injection). */
static enum cd_err csv_field(struct cd_buf *b, bool first, const char *s, size_t n)
{
    enum cd_err err;
    bool quote = false;

    if (!first && (err = cd_buf_putc(b, ',')) != CD_OK)
        return err;
    for (size_t i = 0; i < n; i++)
        quote |= s[i] == ',' || s[i] == '"' || s[i] == '\n' || s[i] == '\r';
    if (quote && (err = cd_buf_putc(b, '"')) != CD_OK)
        return err;
    if (n > 0 && strchr("=+-@\t\r", s[0]) && (err = cd_buf_putc(b, '\'')) != CD_OK)
        return err;
    for (size_t i = 0; i < n; i++)
        if ((s[i] == '"' && (err = cd_buf_putc(b, '"')) != CD_OK) ||
            (err = cd_buf_putc(b, s[i])) != CD_OK)
            return err;
    return quote ? cd_buf_putc(b, '"') : CD_OK;
}

/* The members names[] of o as one CSV line (objects and arrays as compact JSON). */
static enum cd_err csv_line(struct writer *w, const json_t *o, const char *const *names)
{
    enum cd_err err = CD_OK;

    cd_buf_reset(&w->line);
    for (size_t i = 0; names[i] && err == CD_OK; i++) {
        const json_t *v = o ? json_object_get(o, names[i]) : NULL;
        if (json_is_string(v)) {
            err = csv_field(&w->line, i == 0, json_string_value(v), json_string_length(v));
        } else if (v == NULL || json_is_null(v)) {
            err = csv_field(&w->line, i == 0, "", 0);
        } else {
            char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            if (s == NULL)
                return CD_ERR_NOMEM;
            err = csv_field(&w->line, i == 0, s, strlen(s));
            cd_free(s);
        }
    }
    if (err == CD_OK && (err = cd_buf_puts(&w->line, "\r\n")) == CD_OK)
        err = put(w, w->line.p, w->line.len);
    return err;
}

static enum cd_err csv_header(struct writer *w, const char *const *names)
{
    enum cd_err err = CD_OK;

    cd_buf_reset(&w->line);
    for (size_t i = 0; names[i] && err == CD_OK; i++)
        err = csv_field(&w->line, i == 0, names[i], strlen(names[i]));
    if (err == CD_OK && (err = cd_buf_puts(&w->line, "\r\n")) == CD_OK)
        err = put(w, w->line.p, w->line.len);
    return err;
}

/* ---- the customer's own identities ---- */

/* The forms a passage of the customer's own identity takes in a conversation: lower-cased, and
 * for a phone number its digits alone ("#" first), so "+44 20 7946 0958" is theirs too. */
static void own_forms(struct cd_str v, char low[320], char digits[64])
{
    size_t nd = 1;

    digits[0] = '#';
    for (size_t i = 0; i < v.len && i < 319; i++) {
        low[i] = (char)(v.p[i] >= 'A' && v.p[i] <= 'Z' ? v.p[i] + 32 : v.p[i]);
        if (v.p[i] >= '0' && v.p[i] <= '9' && nd < 63)
            digits[nd++] = v.p[i];
    }
    low[v.len < 319 ? v.len : 319] = '\0';
    digits[nd] = '\0';
    if (nd < 8) /* too few digits to be a phone number */
        digits[0] = '\0';
}

static enum cd_err own_add(struct writer *w, struct cd_str v)
{
    char low[320], digits[64];

    own_forms(v, low, digits);
    if (json_object_set_new(w->own, low, json_true()) != 0 ||
        (digits[0] && json_object_set_new(w->own, digits, json_true()) != 0))
        return CD_ERR_NOMEM;
    return CD_OK;
}

/* Whether a passage the guard found is the customer's own identity (not another person's). */
static bool own(struct writer *w, struct cd_str match)
{
    char low[320], digits[64];

    if (match.len >= sizeof low)
        return false;
    own_forms(match, low, digits);
    return json_object_get(w->own, low) != NULL ||
           (digits[0] && json_object_get(w->own, digits) != NULL);
}

/* ---- the customer ---- */

static enum cd_err write_customer(struct writer *w)
{
    static const char *const cols[] = {"field", "type", "value", NULL};
    enum cd_err err;
    const char *key;
    json_t *v;
    int64_t n = 0;

    if ((err = cd_core_customer_get(w->x->d->core, &w->x->actor, cd_str_c(w->x->customer_id),
                                    CD_FIELDS_ALL, &w->customer)) != CD_OK)
        return err;
    json_t *ids = json_object_get(w->customer, "identities");
    for (size_t i = 0; i < json_array_size(ids); i++) {
        json_t *val = json_object_get(json_array_get(ids, i), "value");
        if (json_is_string(val) && (err = own_add(w, cd_str_c(json_string_value(val)))) != CD_OK)
            return err;
    }
    char *s = json_dumps(w->customer, JSON_INDENT(2) | JSON_ENSURE_ASCII);
    if (s == NULL)
        return CD_ERR_NOMEM;
    if ((err = file_begin(w, "customer.json", "The customer record and its identities.")) ==
            CD_OK &&
        (err = puts_(w, s)) == CD_OK)
        err = file_end(w, 1);
    cd_crypto_wipe(s, strlen(s));
    cd_free(s);
    if (err != CD_OK)
        return err;
    /* CSV: one line per field, identities and attributes flattened. */
    if ((err = file_begin(w, "customer.csv", "The customer record, one line per field.")) !=
            CD_OK ||
        (err = csv_header(w, cols)) != CD_OK)
        return err;
    json_object_foreach(w->customer, key, v)
    {
        if (strcmp(key, "identities") == 0) {
            for (size_t i = 0; i < json_array_size(v) && err == CD_OK; i++, n++) {
                json_t *e = json_array_get(v, i);
                json_t *row = json_pack("{s:s,s:O,s:O}", "field", "identity", "type",
                                        json_object_get(e, "type"), "value",
                                        json_object_get(e, "value"));
                err = row ? csv_line(w, row, cols) : CD_ERR_NOMEM;
                json_decref(row);
            }
        } else {
            json_t *row = json_pack("{s:s,s:s,s:O}", "field", key, "type", "", "value", v);
            err = row ? csv_line(w, row, cols) : CD_ERR_NOMEM;
            json_decref(row);
            n++;
        }
        if (err != CD_OK)
            return err;
    }
    return file_end(w, n);
}

/* ---- interactions ---- */

static const char *const interaction_cols[] = {
    "id", "occurred_at", "channel", "direction", "purpose", "thread_id", "subject", "body",
    "metadata", NULL};

static enum cd_err json_page(void *ctx, struct cd_str items, int n)
{
    struct writer *w = ctx;
    enum cd_err err;

    if ((err = puts_(w, w->first ? "\n" : ",\n")) != CD_OK ||
        (err = put(w, items.p, items.len)) != CD_OK)
        return err;
    w->first = false;
    w->interactions += n;
    return CD_OK;
}


/* The guard's PII findings in one field of one interaction, listed for review. */
static enum cd_err flag_field(struct writer *w, struct cd_guard *g, const char *id,
                              const char *field, const char *channel, const json_t *text)
{
    struct cd_guard_result *res = NULL;
    struct cd_str s = {json_string_value(text), json_string_length(text)};
    enum cd_err err;

    if (s.p == NULL || s.len == 0)
        return CD_OK;
    /* The package goes out to the customer: the rules for what may leave in a message apply. */
    struct cd_guard_input in = {.text = s, .channel = channel, .outbound = true};
    if ((err = cd_guard_check(g, &in, &res)) != CD_OK)
        return err == CD_ERR_TOO_BIG || err == CD_ERR_INVALID ? CD_OK : err;
    for (size_t i = 0; i < cd_guard_result_count(res) && err == CD_OK; i++) {
        const struct cd_guard_finding *f = cd_guard_result_finding(res, i);
        struct cd_str match = {s.p + f->start, f->end - f->start};
        if (strcmp(f->category, "pii") != 0 || own(w, match))
            continue;
        w->flags.count++;
        if (w->flags.listed >= REVIEW_MAX)
            continue;
        json_t *item = json_pack("{s:s,s:s,s:s,s:I,s:I,s:s%}", "interaction_id", id, "field",
                                 field, "rule", f->rule, "start", (json_int_t)f->start, "end",
                                 (json_int_t)f->end, "match", match.p, match.len);
        char *t = item ? json_dumps(item, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
        json_decref(item);
        if (t == NULL) {
            err = CD_ERR_NOMEM;
            break;
        }
        if ((w->flags.listed > 0 && (err = cd_buf_putc(&w->flags.json, ',')) != CD_OK) ||
            (err = cd_buf_puts(&w->flags.json, t)) != CD_OK) {
            cd_free(t);
            break;
        }
        cd_free(t);
        w->flags.listed++;
    }
    cd_guard_result_free(res);
    return err;
}

static enum cd_err csv_page(void *ctx, struct cd_str items, int n)
{
    struct writer *w = ctx;
    struct cd_guard *g = w->x->d->links.guard;
    json_error_t je;
    enum cd_err err = CD_OK;

    /* The page as one array: small (a page), parsed once. */
    cd_buf_reset(&w->line);
    if ((err = cd_buf_putc(&w->line, '[')) != CD_OK ||
        (err = cd_buf_append(&w->line, items.p, items.len)) != CD_OK ||
        (err = cd_buf_putc(&w->line, ']')) != CD_OK)
        return err;
    json_t *arr = json_loadb(w->line.p, w->line.len, 0, &je);
    cd_crypto_wipe(w->line.p, w->line.len);
    if (arr == NULL)
        return cd_err_set(CD_ERR_INTERNAL, "export: a page of interactions is not JSON");
    for (size_t i = 0; i < json_array_size(arr) && err == CD_OK; i++) {
        json_t *it = json_array_get(arr, i);
        const char *id = json_string_value(json_object_get(it, "id"));
        const char *channel = json_string_value(json_object_get(it, "channel"));
        const char *purpose = json_string_value(json_object_get(it, "purpose"));
        if ((channel && json_object_set_new(w->channels, channel, json_true()) != 0) ||
            (purpose && json_object_set_new(w->purposes, purpose, json_true()) != 0))
            err = CD_ERR_NOMEM;
        if (err == CD_OK)
            err = csv_line(w, it, interaction_cols);
        if (err == CD_OK && g && id)
            err = flag_field(w, g, id, "subject", channel, json_object_get(it, "subject"));
        if (err == CD_OK && g && id)
            err = flag_field(w, g, id, "body", channel, json_object_get(it, "body"));
    }
    json_decref(arr);
    (void)n;
    return err;
}

static enum cd_err write_interactions(struct writer *w)
{
    struct cd_str cid = cd_str_c(w->x->customer_id);
    enum cd_err err;

    if ((err = file_begin(w, "interactions.json", "Every interaction, newest first.")) !=
            CD_OK ||
        (err = puts_(w, "[")) != CD_OK ||
        (err = cd_core_interactions_each(w->x->d->core, cid, json_page, w)) != CD_OK ||
        (err = puts_(w, "\n]\n")) != CD_OK || (err = file_end(w, w->interactions)) != CD_OK)
        return err;
    /* A second walk for the CSV (an archive is written one file at a time). */
    if ((err = file_begin(w, "interactions.csv", "Every interaction, one line each.")) !=
            CD_OK ||
        (err = csv_header(w, interaction_cols)) != CD_OK ||
        (err = cd_core_interactions_each(w->x->d->core, cid, csv_page, w)) != CD_OK)
        return err;
    return file_end(w, w->interactions);
}

/* ---- consent, with receipts ---- */

static const char *const consent_cols[] = {
    "id", "occurred_at", "recorded_at", "purpose", "channel", "state", "legal_basis", "method",
    "collector", "notice_id", "evidence", "receipt", NULL};

static enum cd_err write_consent(struct writer *w)
{
    struct cd_consent *c = w->x->d->links.consent;
    json_t *hist = NULL, *events = NULL;
    enum cd_err err = CD_OK;

    if (c && (err = cd_consent_history(c, cd_str_c(w->x->customer_id), &hist)) != CD_OK &&
        err != CD_ERR_NOT_FOUND)
        return err;
    events = json_object_get(hist, "history");
    /* Each event with its signed receipt, which the customer can verify on their own
     * (/.well-known/candor-keys.json). */
    for (size_t i = 0; i < json_array_size(events) && err == CD_OK; i++) {
        json_t *e = json_array_get(events, i), *rc = NULL;
        const char *id = json_string_value(json_object_get(e, "id"));
        if (id && (err = cd_consent_receipt(c, cd_str_c(id), &rc)) == CD_ERR_NOT_FOUND)
            err = CD_OK;
        if (err == CD_OK && rc && json_object_set_new(e, "receipt", rc) != 0)
            err = CD_ERR_NOMEM;
    }
    w->consent_events = (int64_t)json_array_size(events);
    char *s = err == CD_OK ? json_dumps(hist ? hist : json_object(), JSON_INDENT(2)) : NULL;
    if (err == CD_OK && s == NULL)
        err = CD_ERR_NOMEM;
    if (err == CD_OK &&
        (err = file_begin(w, "consent.json", "Consent: the current state, preferences, and "
                                             "every event with its signed receipt.")) == CD_OK &&
        (err = puts_(w, s)) == CD_OK)
        err = file_end(w, w->consent_events);
    cd_free(s);
    if (err == CD_OK &&
        (err = file_begin(w, "consent.csv", "Every consent event, one line each.")) == CD_OK &&
        (err = csv_header(w, consent_cols)) == CD_OK) {
        for (size_t i = 0; i < json_array_size(events) && err == CD_OK; i++)
            err = csv_line(w, json_array_get(events, i), consent_cols);
        if (err == CD_OK)
            err = file_end(w, w->consent_events);
    }
    json_decref(hist);
    return err;
}

/* ---- the access log ---- */

static const char *const access_cols[] = {"at", "action", "actor_role", "actor_name", "purpose",
                                          "categories", "outcome", "resource_id", NULL};

static enum cd_err write_access_log(struct writer *w)
{
    char cursor[256] = "";
    enum cd_err err;
    bool more = true;
    int pass;

    /* Two walks, JSON then CSV: pages of the log, never all of it in memory. */
    for (pass = 0; pass < 2; pass++) {
        int64_t n = 0;
        if ((err = pass ? file_begin(w, "access_log.csv", "Who read the customer's data, one "
                                                          "line each.")
                        : file_begin(w, "access_log.json", "Who read the customer's data, "
                                                           "when, for which purpose, newest "
                                                           "first.")) != CD_OK ||
            (err = pass ? csv_header(w, access_cols) : puts_(w, "[")) != CD_OK)
            return err;
        cursor[0] = '\0';
        more = true;
        while (more) {
            json_t *page = NULL;
            if ((err = cd_audit_access_log(w->x->d->store, cd_str_c(w->x->customer_id),
                                           cd_str_c(cursor), ACCESS_PAGE, &page)) != CD_OK)
                return err;
            json_t *items = json_object_get(page, "items");
            for (size_t i = 0; i < json_array_size(items) && err == CD_OK; i++, n++) {
                json_t *it = json_array_get(items, i);
                const char *p = json_string_value(json_object_get(it, "purpose"));
                if (pass == 0 && p && json_object_set_new(w->purposes, p, json_true()) != 0)
                    err = CD_ERR_NOMEM;
                if (err == CD_OK)
                    err = pass ? csv_line(w, it, access_cols) : json_item(w, it);
            }
            const char *next = json_string_value(json_object_get(page, "next_cursor"));
            more = next != NULL && next[0] && strlen(next) < sizeof cursor;
            if (more)
                snprintf(cursor, sizeof cursor, "%s", next);
            json_decref(page);
            if (err != CD_OK)
                return err;
        }
        if ((!pass && (err = puts_(w, "\n]\n")) != CD_OK) || (err = file_end(w, n)) != CD_OK)
            return err;
        w->reads = n;
    }
    return CD_OK;
}

/* ---- the customer's requests ---- */

static const char *const request_cols[] = {"id", "type", "state", "regime", "intake",
                                           "received_at", "due_at", "closed_at", NULL};

static enum cd_err write_requests(struct writer *w)
{
    enum cd_err err;

    for (int pass = 0; pass < 2; pass++) {
        char cursor[128] = "";
        int64_t n = 0;
        bool more = true;
        if ((err = pass ? file_begin(w, "requests.csv", "The customer's data-subject requests, "
                                                        "one line each.")
                        : file_begin(w, "requests.json", "The customer's data-subject requests "
                                                         "and their deadlines.")) != CD_OK ||
            (err = pass ? csv_header(w, request_cols) : puts_(w, "[")) != CD_OK)
            return err;
        while (more) {
            json_t *page = NULL;
            struct cd_dsar_query q = {.customer_id = cd_str_c(w->x->customer_id),
                                      .cursor = cd_str_c(cursor),
                                      .limit = 200};
            if ((err = cd_dsar_list(w->x->d, &q, &page)) != CD_OK)
                return err;
            json_t *items = json_object_get(page, "items");
            for (size_t i = 0; i < json_array_size(items) && err == CD_OK; i++, n++)
                err = pass ? csv_line(w, json_array_get(items, i), request_cols)
                           : json_item(w, json_array_get(items, i));
            const char *next = json_string_value(json_object_get(page, "next_cursor"));
            more = next != NULL && strlen(next) < sizeof cursor;
            if (more)
                snprintf(cursor, sizeof cursor, "%s", next);
            json_decref(page);
            if (err != CD_OK)
                return err;
        }
        if ((!pass && (err = puts_(w, "\n]\n")) != CD_OK) || (err = file_end(w, n)) != CD_OK)
            return err;
        w->requests = n;
    }
    return CD_OK;
}

/* ---- review, summary, manifest ---- */

static enum cd_err write_review(struct writer *w)
{
    enum cd_err err;
    char head[320];

    snprintf(head, sizeof head,
             "{\"about\":\"Passages of the conversations that may be other people's personal "
             "data (the guard's PII rules): review them before the package is released.\","
             "\"count\":%lld,\"listed\":%lld,\"items\":[",
             (long long)w->flags.count, (long long)w->flags.listed);
    if ((err = file_begin(w, "review.json", "Passages that may be other people's personal "
                                            "data, to review before release.")) != CD_OK ||
        (err = puts_(w, head)) != CD_OK ||
        (w->flags.json.len && (err = put(w, w->flags.json.p, w->flags.json.len)) != CD_OK) ||
        (err = puts_(w, "]}\n")) != CD_OK)
        return err;
    return file_end(w, w->flags.count);
}

/* Text escaped for HTML. */
static enum cd_err html(struct writer *w, const char *s)
{
    enum cd_err err = CD_OK;
    const char *run = s;

    for (; *s && err == CD_OK; s++) {
        const char *rep = *s == '<' ? "&lt;" : *s == '>' ? "&gt;" : *s == '&' ? "&amp;"
                        : *s == '"' ? "&quot;" : *s == '\'' ? "&#39;" : NULL;
        if (rep == NULL)
            continue;
        if ((err = put(w, run, (size_t)(s - run))) == CD_OK)
            err = puts_(w, rep);
        run = s + 1;
    }
    return err == CD_OK ? puts_(w, run) : err;
}

static enum cd_err html_row(struct writer *w, const char *k, const char *v)
{
    enum cd_err err;

    if ((err = puts_(w, "<tr><th>")) != CD_OK || (err = html(w, k)) != CD_OK ||
        (err = puts_(w, "</th><td>")) != CD_OK || (err = html(w, v ? v : "")) != CD_OK)
        return err;
    return puts_(w, "</td></tr>\n");
}

static enum cd_err html_set(struct writer *w, const char *k, const json_t *set)
{
    struct cd_buf b = CD_BUF_INIT(4096);
    const char *key;
    json_t *v;
    enum cd_err err = CD_OK;

    json_object_foreach((json_t *)set, key, v)
    {
        if ((b.len && (err = cd_buf_puts(&b, ", ")) != CD_OK) ||
            (err = cd_buf_puts(&b, key)) != CD_OK)
            break;
    }
    if (err == CD_OK)
        err = html_row(w, k, b.len ? b.p : "none");
    cd_buf_free(&b);
    return err;
}

static enum cd_err write_summary(struct writer *w)
{
    char n[64], at[CD_TIME_STRLEN];
    const char *name = json_string_value(json_object_get(w->customer, "display_name"));
    enum cd_err err;

    cd_time_format(w->x->at, at);
    if ((err = file_begin(w, "summary.html", "A readable summary of this package.")) != CD_OK ||
        (err = puts_(w, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                        "<title>Your data held by Candor</title>"
                        "<style>body{font-family:sans-serif;max-width:50em;margin:2em auto}"
                        "th{text-align:left;padding-right:1em}</style></head><body>\n"
                        "<h1>Your data</h1>\n<p>This package answers your request ")) != CD_OK ||
        (err = html(w, w->x->id)) != CD_OK || (err = puts_(w, ", made on ")) != CD_OK ||
        (err = html(w, at)) != CD_OK ||
        (err = puts_(w, ". Every record is in the JSON and CSV files beside this one; "
                        "manifest.json lists them.</p>\n<h2>What we hold</h2>\n<table>\n")) !=
            CD_OK ||
        (err = html_row(w, "Name", name ? name : "(none recorded)")) != CD_OK)
        return err;
    json_t *ids = json_object_get(w->customer, "identities");
    for (size_t i = 0; i < json_array_size(ids) && err == CD_OK; i++) {
        json_t *e = json_array_get(ids, i);
        err = html_row(w, json_string_value(json_object_get(e, "type")),
                       json_string_value(json_object_get(e, "value")));
    }
    snprintf(n, sizeof n, "%lld", (long long)w->interactions);
    if (err == CD_OK)
        err = html_row(w, "Conversations (messages)", n);
    if (err == CD_OK)
        err = html_set(w, "Channels", w->channels);
    snprintf(n, sizeof n, "%lld", (long long)w->consent_events);
    if (err == CD_OK)
        err = html_row(w, "Consent events (each with a signed receipt)", n);
    snprintf(n, sizeof n, "%lld", (long long)w->reads);
    if (err == CD_OK)
        err = html_row(w, "Times your data was read (access log)", n);
    if (err == CD_OK)
        err = html_set(w, "Purposes", w->purposes);
    snprintf(n, sizeof n, "%lld", (long long)w->requests);
    if (err == CD_OK)
        err = html_row(w, "Your requests", n);
    if (err == CD_OK)
        err = puts_(w, "</table>\n<h2>Files</h2>\n<ul>\n");
    for (size_t i = 0; i < w->nfiles && err == CD_OK; i++) {
        if ((err = puts_(w, "<li><code>")) == CD_OK && (err = html(w, w->files[i].name)) == CD_OK &&
            (err = puts_(w, "</code>: ")) == CD_OK && (err = html(w, w->files[i].about)) == CD_OK)
            err = puts_(w, "</li>\n");
    }
    if (err == CD_OK)
        err = puts_(w, "</ul>\n<p>If something is wrong or missing, tell us: you may ask us to "
                       "correct it, erase it, or restrict its use.</p>\n</body></html>\n");
    return err == CD_OK ? file_end(w, 1) : err;
}

static json_t *set_list(const json_t *set)
{
    json_t *a = json_array();
    const char *key;
    json_t *v;

    json_object_foreach((json_t *)set, key, v)
    {
        if (a && json_array_append_new(a, json_string(key)) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

struct holds_ctx {
    struct cd_dsar *d;
    const char *customer_id;
    json_t *holds, *recipients;
};

static enum cd_err holds_fn(struct cd_tx *tx, void *ctx)
{
    struct holds_ctx *h = ctx;
    enum cd_err err = CD_OK;

    json_decref(h->holds);
    json_decref(h->recipients);
    h->holds = h->recipients = NULL;
    if (h->d->links.holds_active &&
        (err = h->d->links.holds_active(tx, cd_str_c(h->customer_id), &h->holds)) != CD_OK)
        return err;
    if (h->d->links.recipients_of)
        err = h->d->links.recipients_of(tx, cd_str_c(h->customer_id), &h->recipients);
    return err;
}

static enum cd_err write_manifest(struct writer *w)
{
    struct holds_ctx hc = {w->x->d, w->x->customer_id, NULL, NULL};
    char at[CD_TIME_STRLEN];
    json_t *m = NULL, *files = json_array(), *cats = json_array();
    char *s = NULL;
    enum cd_err err;

    cd_time_format(w->x->at, at);
    if ((err = cd_store_read(w->x->d->store, holds_fn, &hc)) != CD_OK)
        goto out;
    err = CD_ERR_NOMEM;
    if (files == NULL || cats == NULL)
        goto out;
    for (size_t i = 0; i < w->nfiles; i++)
        if (json_array_append_new(files, json_pack("{s:s,s:s,s:I,s:s}", "name",
                                                   w->files[i].name, "about", w->files[i].about,
                                                   "records", (json_int_t)w->files[i].records,
                                                   "sha256", w->files[i].sha256)) != 0)
            goto out;
    /* The categories held: reference always; the others when there is something of them. */
    static const char *const all[] = {"reference", "coarse", "contact", "profile",
                                      "conversation"};
    for (size_t i = 0; i < 5; i++) {
        bool held = i < 2 || (i == 2 && json_array_size(json_object_get(w->customer,
                                                                        "identities")) > 0) ||
                    (i == 3 && json_object_size(json_object_get(w->customer, "attributes"))) ||
                    (i == 4 && w->interactions > 0);
        if (held && json_array_append_new(cats, json_string(all[i])) != 0)
            goto out;
    }
    m = json_pack(
        "{s:s,s:i,s:s,s:s,s:s,s:s,s:o,s:o,s:o,s:o,s:{s:s,s:o},s:o,s:s,s:{s:b,s:I},s:o}",
        "format", "candor-export", "version", 1, "request_id", w->x->id, "request_type",
        cd_dsar_type_name(w->x->type), "customer_id", w->x->customer_id, "generated_at", at,
        "categories", cats, "purposes", set_list(w->purposes), "recipients",
        hc.recipients ? hc.recipients : json_array(), "sources", set_list(w->channels),
        "retention", "policy",
        "Kept while the relationship lasts and as the retention rules allow (docs/retention.md); "
        "a legal hold keeps data longer.",
        "legal_holds", hc.holds ? hc.holds : json_array(), "files", files,
        "hash", "SHA-256 of each file as it is in this archive", "review", "required",
        w->flags.count > 0, "passages", (json_int_t)w->flags.count, "notes",
        json_pack("[s,s]", "Interactions and their CSV are newest first.",
                  "Times are UTC (RFC 3339)."));
    hc.holds = hc.recipients = NULL;
    files = cats = NULL;
    if (m == NULL)
        goto out;
    if ((s = json_dumps(m, JSON_INDENT(2) | JSON_ENSURE_ASCII)) == NULL)
        goto out;
    if ((err = cd__zip_begin(&w->zip, "manifest.json")) == CD_OK &&
        (err = cd__zip_write(&w->zip, s, strlen(s))) == CD_OK)
        err = cd__zip_end(&w->zip);
out:
    cd_free(s);
    json_decref(m);
    json_decref(files);
    json_decref(cats);
    json_decref(hc.holds);
    json_decref(hc.recipients);
    return err;
}

enum cd_err cd_dsar_export_write(struct cd_dsar_export *x, cd_dsar_sink sink, void *ctx)
{
    struct writer *w = cd_calloc(1, sizeof *w);
    enum cd_err err;

    if (w == NULL)
        return CD_ERR_NOMEM;
    w->x = x;
    w->line = CD_BUF_INIT(CD_CORE_ANSWER_MAX);
    w->flags.json = CD_BUF_INIT((size_t)REVIEW_MAX * 1024);
    w->own = json_object();
    w->channels = json_object();
    w->purposes = json_object();
    cd__zip_init(&w->zip, sink, ctx);
    if (w->own == NULL || w->channels == NULL || w->purposes == NULL)
        err = CD_ERR_NOMEM;
    else if ((err = cd_crypto_sha256_init(&w->h)) == CD_OK &&
             (err = write_customer(w)) == CD_OK && (err = write_interactions(w)) == CD_OK &&
             (err = write_consent(w)) == CD_OK && (err = write_access_log(w)) == CD_OK &&
             (err = write_requests(w)) == CD_OK && (err = write_review(w)) == CD_OK &&
             (err = write_summary(w)) == CD_OK && (err = write_manifest(w)) == CD_OK)
        err = cd__zip_finish(&w->zip);
    cd_crypto_sha256_free(&w->h);
    cd__zip_free(&w->zip);
    if (w->line.p)
        cd_crypto_wipe(w->line.p, w->line.cap);
    cd_buf_free(&w->line);
    if (w->flags.json.p)
        cd_crypto_wipe(w->flags.json.p, w->flags.json.cap);
    cd_buf_free(&w->flags.json);
    json_decref(w->customer);
    json_decref(w->own);
    json_decref(w->channels);
    json_decref(w->purposes);
    cd_free(w);
    return err;
}
