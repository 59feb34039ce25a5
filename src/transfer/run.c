/* The import and the export: files walked record by record, core called for each. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "crypto/crypto.h"
#include "transfer_int.h"

/* Interaction writes queued before the import waits for them: enough to fill the writer's
 * group commits, few enough that a window's bodies stay small in memory. */
#define WINDOW 128
/* Customers walked per page of an export. */
#define EXPORT_PAGE 200

/* ---- reading a file ---- */

struct reader {
    FILE *in;
    const struct cd_transfer_import *im;
    struct cd_buf line; /* the current line (CSV: record), without its line break */
    uint64_t lineno;    /* the line the current record starts on */
    uint64_t next;      /* the line the next record starts on */
    uint64_t bytes, total;
    bool header_done;
    struct cd_transfer_map *map; /* CSV: a copy bound to the header */
    json_t *pending;             /* Zendesk: the ticket's records not yet handed out */
    size_t pending_i;
};

/* Reads one line into r->line (appending), without its line break; *got is false at the end
 * of the file. Byte by byte rather than with fgets, so a NUL byte in a line stays in it (and
 * makes the line malformed) instead of cutting it short unseen. */
static enum cd_err line_append(struct reader *r, const char *p, size_t n)
{
    enum cd_err err = cd_buf_append(&r->line, p, n);

    if (err == CD_ERR_TOO_BIG)
        return cd_err_set(err, "the line is longer than %zu bytes", CD_TRANSFER_LINE_MAX);
    return err;
}

static enum cd_err read_line(struct reader *r, bool *got)
{
    char chunk[65536];
    size_t n = 0;
    int c;
    enum cd_err err = CD_OK;

    *got = false;
    while ((c = getc_unlocked(r->in)) != EOF) {
        *got = true;
        r->bytes++;
        if (c == '\n')
            break;
        chunk[n++] = (char)c;
        if (n == sizeof chunk) {
            if (err == CD_OK)
                err = line_append(r, chunk, n);
            n = 0; /* a line too long is read to its end, so the next starts where it should */
        }
    }
    if (ferror(r->in))
        return cd_err_set(CD_ERR_IO, "cannot read the input");
    if (err == CD_OK && n)
        err = line_append(r, chunk, n);
    return err;
}

/* The next record of the file into *rec; *eof at the end. A record that cannot be made is
 * returned as the error (with r->lineno set), and the next call goes on after it. */
static enum cd_err next_record(struct reader *r, struct cd_transfer_record *rec, bool *eof)
{
    json_t *o = NULL;
    bool got;
    enum cd_err err;

    memset(rec, 0, sizeof *rec);
    *eof = false;
    if (r->pending && r->pending_i < json_array_size(r->pending))
        return cd_transfer_record_from_json(json_array_get(r->pending, r->pending_i++), rec);
    json_decref(r->pending);
    r->pending = NULL;
    for (;;) {
        r->line.len = 0;
        r->lineno = ++r->next;
        if ((err = read_line(r, &got)) != CD_OK) {
            r->line.len = 0;
            return err == CD_ERR_TOO_BIG ? CD_ERR_INVALID : err;
        }
        if (!got) {
            *eof = true;
            return CD_OK;
        }
        if (r->im->format == CD_TRANSFER_CSV) {
            /* A quoted field may hold line breaks: read on until the quotes close. */
            while (!cd_transfer_csv_complete((struct cd_str){r->line.p, r->line.len})) {
                if ((err = cd_buf_putc(&r->line, '\n')) != CD_OK ||
                    (err = read_line(r, &got)) != CD_OK)
                    return err == CD_ERR_TOO_BIG ? CD_ERR_INVALID : err;
                if (!got)
                    return cd_err_set(CD_ERR_INVALID, "the file ends inside a quoted field");
                r->next++;
            }
        }
        /* Blank lines separate nothing and are skipped. */
        if (r->line.len == 0 || (r->line.len == 1 && r->line.p[0] == '\r'))
            continue;
        break;
    }
    struct cd_str text = {r->line.p, r->line.len};
    switch (r->im->format) {
    case CD_TRANSFER_NDJSON:
        return cd_transfer_record_parse(text, rec);
    case CD_TRANSFER_CSV: {
        json_t *fields = NULL;
        if ((err = cd_transfer_csv_split(text, cd_transfer_map_delimiter(r->map), &fields)) !=
            CD_OK)
            return err;
        if (!r->header_done) {
            err = cd_transfer_map_header(r->map, fields);
            json_decref(fields);
            if (err != CD_OK)
                return err;
            r->header_done = true;
            return next_record(r, rec, eof);
        }
        err = cd_transfer_map_row(r->map, fields, rec);
        json_decref(fields);
        return err;
    }
    case CD_TRANSFER_ZENDESK:
        if (text.p[text.len - 1] == '\r')
            text.len--;
        if ((err = cd_json_parse_object(text.p, text.len, &o)) != CD_OK)
            return err;
        err = cd_transfer_zendesk_ticket(o, &r->pending);
        json_decref(o);
        if (err != CD_OK)
            return err;
        r->pending_i = 0;
        return next_record(r, rec, eof);
    }
    return cd_err_set(CD_ERR_INVALID, "unknown format");
}

static enum cd_err reader_open(struct reader *r, const struct cd_transfer_import *im, FILE *in)
{
    struct stat st;

    memset(r, 0, sizeof *r);
    r->in = in;
    r->im = im;
    r->line = CD_BUF_INIT(CD_TRANSFER_LINE_MAX);
    if (fseek(in, 0, SEEK_SET) != 0)
        return cd_err_set(CD_ERR_IO, "the input must be a file (it is read twice: checked, "
                                     "then imported)");
    if (fstat(fileno(in), &st) == 0)
        r->total = (uint64_t)st.st_size;
    if (im->format == CD_TRANSFER_CSV) {
        if (im->map == NULL)
            return cd_err_set(CD_ERR_INVALID, "a CSV import needs a column mapping");
        /* The header binds a mapping of this run's own, so the caller's stays unbound. */
        if ((r->map = cd_calloc(1, sizeof *r->map)) == NULL)
            return CD_ERR_NOMEM;
        *r->map = *im->map;
        json_incref(r->map->columns);
        json_incref(r->map->values);
        r->map->index = NULL;
    }
    return CD_OK;
}

static void reader_close(struct reader *r)
{
    cd_buf_free(&r->line);
    cd_transfer_map_free(r->map);
    json_decref(r->pending);
}

static void show_progress(const struct cd_transfer_import *im, const struct reader *r,
                     uint64_t *last)
{
    if (im->progress && (r->bytes - *last >= 256 * 1024 || r->bytes == r->total)) {
        *last = r->bytes;
        im->progress(im->ctx, r->bytes, r->total);
    }
}

enum cd_err cd_transfer_check(const struct cd_transfer_import *im, FILE *in, uint64_t *bad)
{
    struct reader r;
    struct cd_transfer_record rec;
    uint64_t last = 0;
    bool eof = false;
    enum cd_err err;

    *bad = 0;
    if ((err = reader_open(&r, im, in)) != CD_OK)
        goto out;
    while (!eof) {
        cd_err_clear();
        err = next_record(&r, &rec, &eof);
        cd_transfer_record_free(&rec);
        if (err == CD_ERR_INVALID) {
            (*bad)++;
            im->report(im->ctx, r.lineno, err, cd_err_detail());
            if (r.im->format == CD_TRANSFER_CSV && !r.header_done)
                break; /* without a header no row can be read */
            err = CD_OK;
        } else if (err != CD_OK) {
            goto out;
        }
        show_progress(im, &r, &last);
    }
    err = CD_OK;
out:
    reader_close(&r);
    return err;
}

/* ---- importing ---- */

/* Source customer ids to the ids of the customers they became, for the interactions that
 * follow them in the file. */
struct ids {
    json_t *map;
};

static const char *customer_for(const struct ids *ids, const char *source)
{
    const char *to = json_string_value(json_object_get(ids->map, source));
    return to ? to : source; /* a customer of this deployment named by its own id */
}

/* The Idempotency-Key of a record: the import's own scope and the source id, bound to the
 * record's content and its source customer, so the same record is a replay and a changed one
 * is refused. */
static enum cd_err record_idem(const struct cd_transfer_record *rec, struct cd_idem *idem)
{
    char *canon = json_dumps(rec->body, JSON_COMPACT | JSON_SORT_KEYS);
    enum cd_err err;

    if (canon == NULL)
        return CD_ERR_NOMEM;
    idem->scope = rec->kind == CD_TRANSFER_CUSTOMER ? "import customer" : "import interaction";
    idem->key = cd_str_c(rec->id);
    struct cd_str parts[3] = {cd_str_c(idem->scope), cd_str_c(rec->customer), cd_str_c(canon)};
    err = cd_crypto_sha256v(parts, 3, idem->request_hash);
    cd_free(canon);
    return err;
}

struct slot {
    struct cd_transfer_record rec;
    struct cd_idem idem;
    uint64_t line;
    struct cd_core_ingest *op;
    enum cd_err err;
    struct window *w;
};

struct window {
    struct cd_pending pending;
    size_t n;
    struct slot slots[WINDOW];
};

static void slot_written(void *ctx, struct cd_core_ingest *op)
{
    struct slot *s = ctx;

    s->op = op;
    cd_pending_done(&s->w->pending);
}

static bool fatal(enum cd_err err)
{
    return err == CD_ERR_STORE || err == CD_ERR_NOMEM || err == CD_ERR_BUSY;
}

/* Waits for every queued write, finishes each and counts it. Returns the first fatal error. */
static enum cd_err window_drain(struct window *w, const struct cd_transfer_import *im,
                                struct cd_transfer_counts *n)
{
    enum cd_err first = CD_OK;

    cd_pending_wait(&w->pending);
    for (size_t i = 0; i < w->n; i++) {
        struct slot *s = &w->slots[i];
        enum cd_err err = s->err;
        bool replayed = false;
        char id[CD_ID_MAX];
        if (err == CD_OK && s->op) {
            struct cd_buf out = CD_BUF_INIT(CD_CORE_ANSWER_MAX);
            cd_err_clear();
            err = cd_core_interaction_ingest_finish(s->op, &out, &replayed, id);
            s->op = NULL;
            cd_buf_free(&out);
            if (err == CD_ERR_NOMEM && id[0])
                err = CD_OK; /* durable; only the answer could not be made */
            if (err != CD_OK)
                im->report(im->ctx, s->line, err, cd_err_detail());
        }
        if (err == CD_OK)
            replayed ? n->existing++ : n->created++;
        else
            n->failed++;
        if (fatal(err) && first == CD_OK)
            first = err;
        cd_transfer_record_free(&s->rec);
    }
    w->n = 0;
    return first;
}

static enum cd_err import_customer(struct cd_core *core, const struct cd_actor *a,
                                   struct cd_transfer_record *rec, struct ids *ids,
                                   bool *replayed)
{
    struct cd_idem idem;
    json_t *out = NULL, *o2 = NULL;
    enum cd_err err;

    if ((err = record_idem(rec, &idem)) != CD_OK ||
        (err = cd_core_customer_create(core, a, rec->body, &idem, CD_FIELDS_REFERENCE, &out,
                                       replayed)) != CD_OK)
        return err;
    const char *id = json_string_value(json_object_get(out, "id"));
    if (id == NULL || json_object_set_new(ids->map, rec->id, json_string(id)) != 0)
        err = CD_ERR_NOMEM;
    /* A restriction travels with the customer; restricting again changes nothing. */
    if (err == CD_OK && rec->restricted &&
        !json_is_true(json_object_get(out, "restricted")))
        err = cd_core_customer_restrict(core, a, cd_str_c(id), true, CD_FIELDS_REFERENCE, &o2);
    json_decref(o2);
    json_decref(out);
    return err;
}

enum cd_err cd_transfer_import_run(struct cd_core *core, const struct cd_actor *a,
                                   const struct cd_transfer_import *im, FILE *in,
                                   struct cd_transfer_counts *n)
{
    struct reader r;
    struct ids ids = {json_object()};
    struct window *w = cd_calloc(1, sizeof *w);
    uint64_t last = 0;
    bool eof = false;
    enum cd_err err;

    memset(n, 0, sizeof *n);
    if (w == NULL || ids.map == NULL) {
        cd_free(w);
        json_decref(ids.map);
        return CD_ERR_NOMEM;
    }
    w->pending = (struct cd_pending)CD_PENDING_INIT;
    if ((err = reader_open(&r, im, in)) != CD_OK)
        goto out;
    while (!eof) {
        struct slot *s = &w->slots[w->n];
        cd_err_clear();
        err = next_record(&r, &s->rec, &eof);
        if (err != CD_OK || eof) {
            cd_transfer_record_free(&s->rec);
            if (err == CD_ERR_INVALID) {
                n->lines++;
                n->failed++;
                im->report(im->ctx, r.lineno, err, cd_err_detail());
                if (r.im->format == CD_TRANSFER_CSV && !r.header_done)
                    break;
                continue;
            }
            if (err != CD_OK)
                goto out;
            break;
        }
        n->lines++;
        if (s->rec.kind == CD_TRANSFER_CUSTOMER) {
            /* Interactions queued before this customer may name it by identity: they go
             * first, as they come first in the file. */
            if ((err = window_drain(w, im, n)) != CD_OK)
                goto out;
            bool replayed = false;
            cd_err_clear();
            err = import_customer(core, a, &s->rec, &ids, &replayed);
            cd_transfer_record_free(&s->rec);
            if (err == CD_OK) {
                replayed ? n->existing++ : n->created++;
            } else {
                n->failed++;
                im->report(im->ctx, r.lineno, err, cd_err_detail());
                if (fatal(err))
                    goto out;
            }
            show_progress(im, &r, &last);
            continue;
        }
        s->line = r.lineno;
        s->w = w;
        s->op = NULL;
        /* The key binds the record as the file has it, its customer by the source's id. */
        if ((err = record_idem(&s->rec, &s->idem)) != CD_OK ||
            (s->rec.customer[0] &&
             (err = cd_json_set_new(s->rec.body, "customer_id",
                                    json_string(customer_for(&ids, s->rec.customer)))) !=
                 CD_OK)) {
            cd_transfer_record_free(&s->rec);
            goto out;
        }
        cd_pending_add(&w->pending);
        json_t *findings = NULL;
        s->err = cd_core_interaction_ingest_start(core, a, s->rec.body, &s->idem,
                                                  CD_FIELDS_REFERENCE, slot_written, s,
                                                  &findings);
        json_decref(findings);
        if (s->err != CD_OK) {
            cd_pending_done(&w->pending);
            im->report(im->ctx, s->line, s->err, cd_err_detail());
        }
        w->n++;
        if (w->n == WINDOW && (err = window_drain(w, im, n)) != CD_OK)
            goto out;
        show_progress(im, &r, &last);
    }
    err = window_drain(w, im, n);
    if (im->progress)
        im->progress(im->ctx, r.bytes, r.total);
out:
    if (window_drain(w, im, n) != CD_OK && err == CD_OK)
        err = CD_ERR_STORE;
    reader_close(&r);
    cd_pending_destroy(&w->pending);
    cd_free(w);
    json_decref(ids.map);
    return err;
}

/* ---- exporting ---- */

struct exp {
    struct cd_core *core;
    const struct cd_actor *a;
    unsigned fields;
    FILE *out;
    cd_transfer_report_fn report;
    cd_transfer_progress_fn progress;
    void *ctx;
    uint64_t written;
    const char *customer; /* the customer whose interactions are written */
};

static enum cd_err put(struct exp *x, json_t *rec)
{
    char *s = NULL;
    size_t n;
    enum cd_err err = cd_json_dump(rec, &s, &n);

    if (err == CD_OK && (fwrite(s, 1, n, x->out) != n || fputc('\n', x->out) == EOF))
        err = cd_err_set(CD_ERR_IO, "cannot write the export");
    cd_free(s);
    if (err == CD_OK && ++x->written % 1000 == 0 && x->progress)
        x->progress(x->ctx, x->written, 0);
    return err;
}

/* Copies o's members named in keys to rec, leaving out nulls (an absent member imports the
 * same and keeps the record valid). */
static enum cd_err pick(json_t *rec, const json_t *o, const char *const *keys)
{
    for (size_t i = 0; keys[i]; i++) {
        const json_t *v = json_object_get(o, keys[i]);
        if (v && !json_is_null(v) && cd_json_copy_key(rec, o, keys[i]) != CD_OK)
            return CD_ERR_NOMEM;
    }
    return CD_OK;
}

static enum cd_err export_page(void *ctx, struct cd_str items, int count)
{
    static const char *const keys[] = {"id",        "channel", "direction", "occurred_at",
                                       "purpose",   "thread_id", "subject", "body",
                                       "metadata",  NULL};
    static const char *const refs[] = {"id", "channel", "direction", "occurred_at", "purpose",
                                       NULL};
    struct exp *x = ctx;
    struct cd_buf arr = CD_BUF_INIT(CD_CORE_ANSWER_MAX);
    json_t *page = NULL, *it;
    size_t i;
    enum cd_err err;

    if ((err = cd_buf_putc(&arr, '[')) != CD_OK ||
        (err = cd_buf_append(&arr, items.p, items.len)) != CD_OK ||
        (err = cd_buf_putc(&arr, ']')) != CD_OK ||
        (err = cd_json_parse(arr.p, arr.len, &page)) != CD_OK)
        goto out;
    json_array_foreach(page, i, it)
    {
        json_t *rec = json_pack("{s:s,s:s}", "type", "interaction", "customer_id", x->customer);
        /* The conversation's text only when the purpose may see it. */
        if (rec == NULL ||
            (err = pick(rec, it, (x->fields & CD_FIELDS_CONVERSATION) ? keys : refs)) != CD_OK) {
            json_decref(rec);
            err = CD_ERR_NOMEM;
            goto out;
        }
        err = put(x, rec);
        json_decref(rec);
        if (err != CD_OK)
            goto out;
    }
out:
    json_decref(page);
    cd_buf_free(&arr);
    return err;
}

/* One customer and their interactions. A customer the purpose may not read is reported and
 * skipped (CD_OK). */
static enum cd_err export_customer(struct exp *x, const char *id)
{
    static const char *const keys[] = {"id",           "display_name", "attributes",
                                       "locale",       "time_zone",    "jurisdiction",
                                       "identities",   "restricted",   NULL};
    json_t *c = NULL, *rec = NULL;
    char resolved[CD_ID_MAX];
    enum cd_err err;

    cd_err_clear();
    err = cd_core_customer_get(x->core, x->a, cd_str_c(id), x->fields, &c);
    if (err == CD_OK && !cd_str_eq_c(cd_str_c(json_string_value(json_object_get(c, "status"))),
                                     "active")) {
        json_decref(c);
        return CD_OK; /* merged or erased: nothing of their own to move */
    }
    /* The interactions are read for the same purpose, and the read is recorded. */
    if (err == CD_OK)
        err = cd_core_customer_read_gate(x->core, x->a, cd_str_c(id), "customer.export",
                                         cd_policy_categories(x->fields), resolved);
    if (err == CD_ERR_PURPOSE_DENIED || err == CD_ERR_CONSENT_DENIED || err == CD_ERR_NOT_FOUND) {
        char why[512];
        snprintf(why, sizeof why, "customer %s: %s", id, cd_err_detail());
        x->report(x->ctx, 0, err, why);
        json_decref(c);
        return CD_OK;
    }
    if (err != CD_OK)
        goto out;
    if ((rec = json_pack("{s:s}", "type", "customer")) == NULL ||
        (err = pick(rec, c, keys)) != CD_OK) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    if ((err = put(x, rec)) != CD_OK)
        goto out;
    x->customer = id;
    err = cd_core_interactions_each(x->core, cd_str_c(id), export_page, x);
out:
    json_decref(rec);
    json_decref(c);
    return err;
}

enum cd_err cd_transfer_export_run(struct cd_core *core, const struct cd_actor *a,
                                   unsigned fields, const json_t *ids, FILE *out,
                                   cd_transfer_report_fn report, cd_transfer_progress_fn progress,
                                   void *ctx, uint64_t *written)
{
    struct exp x = {core, a, fields, out, report, progress, ctx, 0, NULL};
    json_t *page = NULL, *it;
    char cursor[256] = "";
    size_t i;
    enum cd_err err = CD_OK;

    *written = 0;
    if (ids) {
        json_array_foreach(ids, i, it)
            if ((err = export_customer(&x, json_string_value(it))) != CD_OK)
                goto out;
    } else {
        /* The list answers references only: listing reads no personal data. */
        do {
            if ((err = cd_core_customer_list(core, a, cd_str_c(cursor), EXPORT_PAGE,
                                             CD_FIELDS_REFERENCE, &page)) != CD_OK)
                goto out;
            json_array_foreach(json_object_get(page, "items"), i, it)
            {
                const char *st = json_string_value(json_object_get(it, "status"));
                if (st && strcmp(st, "active") != 0)
                    continue;
                if ((err = export_customer(&x, json_string_value(json_object_get(it, "id")))) !=
                    CD_OK)
                    goto out;
            }
            const char *next = json_string_value(json_object_get(page, "next_cursor"));
            snprintf(cursor, sizeof cursor, "%s", next ? next : "");
            json_decref(page);
            page = NULL;
        } while (cursor[0]);
    }
    if (fflush(out) != 0)
        err = cd_err_set(CD_ERR_IO, "cannot write the export");
out:
    json_decref(page);
    *written = x.written;
    return err;
}
