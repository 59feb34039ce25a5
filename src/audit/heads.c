/* Signed tree heads outside the database: the heads file the server appends every new head to
 * (DATA/audit-heads.jsonl, one JSON line per head, fsynced), and the trusted heads a verifier
 * is given (that file, consent receipts, a witness's copy). A head that left the database
 * cannot be taken back by editing the database: `candor audit verify` finds a ledger shorter
 * than, or different from, any of them, and a stored head that was deleted. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "audit_int.h"

#define HEAD_LINE_MAX 1024 /* a head's JSON line is about 330 bytes */
#define TAIL_READ 4096     /* enough for the last complete line of a heads file */

/* ---- trusted heads ---- */

static enum cd_err trusted_add(struct cd_audit_trusted *t, const struct cd_audit_sth *h,
                               const char *where)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16;
        struct cd_audit_sth *heads = cd_realloc(t->heads, cap * sizeof *heads);
        if (heads == NULL)
            return CD_ERR_NOMEM;
        t->heads = heads;
        char(*src)[128] = cd_realloc(t->source, cap * sizeof *src);
        if (src == NULL)
            return CD_ERR_NOMEM;
        t->source = src;
        t->cap = cap;
    }
    t->heads[t->n] = *h;
    snprintf(t->source[t->n], sizeof t->source[t->n], "%s", where);
    t->n++;
    return CD_OK;
}

/* The tree head an object holds: itself, a consent receipt's "auditTreeHead", or that of the
 * receipt inside the API's receipt answer. NULL when it holds none. */
static const json_t *head_in(const json_t *o)
{
    const json_t *r;

    if (json_object_get(o, "tree_size"))
        return o;
    if ((r = json_object_get(o, "auditTreeHead")) != NULL)
        return r;
    if ((r = json_object_get(o, "receipt")) != NULL && json_is_object(r))
        return json_object_get(r, "auditTreeHead");
    return NULL;
}

/* Adds the head o holds; where is "SOURCE" or "SOURCE:LINE". */
static enum cd_err add_object(struct cd_audit_trusted *t, const json_t *o, const char *source,
                              size_t line)
{
    const json_t *h = json_is_object(o) ? head_in(o) : NULL;
    struct cd_audit_sth sth;
    char where[128];
    enum cd_err err;

    if (line)
        snprintf(where, sizeof where, "%.100s:%zu", source, line);
    else
        snprintf(where, sizeof where, "%.120s", source);
    if (h == NULL)
        return cd_err_set(CD_ERR_INVALID, "%s: neither a tree head nor a consent receipt that "
                                          "carries one",
                          where);
    if ((err = cd_audit_sth_parse(h, &sth)) != CD_OK)
        return cd_err_set(err, "%s: %s", where, cd_err_detail());
    return trusted_add(t, &sth, where);
}

enum cd_err cd_audit_trusted_parse(struct cd_audit_trusted *t, const char *text, size_t len,
                                   const char *source)
{
    json_t *doc = NULL;
    enum cd_err err;

    /* One JSON document (a head saved from the API, a receipt), else JSON lines. cd_json_parse
     * tells an allocation that failed from text that is not one document. */
    if ((err = cd_json_parse(text, len, &doc)) == CD_OK) {
        err = add_object(t, doc, source, 0);
        json_decref(doc);
        return err;
    }
    if (err == CD_ERR_NOMEM)
        return err;
    err = CD_OK;
    size_t lineno = 0;
    for (const char *p = text, *end = text + len; p < end && err == CD_OK;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        lineno++;
        size_t n = (size_t)(e - p);
        while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n > 0) {
            json_t *o = NULL;
            err = cd_json_parse(p, n, &o);
            if (err == CD_ERR_INVALID && nl == NULL) {
                t->skipped++; /* a partial last line: the writer crashed while appending */
                err = CD_OK;
            } else if (err == CD_ERR_INVALID) {
                err = cd_err_set(CD_ERR_INVALID, "%s:%zu: not JSON (%s)", source, lineno,
                                 cd_err_detail());
            } else if (err == CD_OK) {
                err = add_object(t, o, source, lineno);
                json_decref(o);
            }
        }
        p = nl ? nl + 1 : end;
    }
    return err;
}

enum cd_err cd_audit_trusted_load(struct cd_audit_trusted *t, const char *path, bool missing_ok)
{
    struct cd_buf b = CD_BUF_INIT((size_t)1 << 34);
    struct stat st;
    enum cd_err err;

    if (missing_ok && stat(path, &st) != 0 && errno == ENOENT)
        return CD_OK;
    if ((err = cd_buf_read_file(&b, path)) == CD_OK)
        err = cd_audit_trusted_parse(t, b.p ? b.p : "", b.len, path);
    cd_buf_free(&b);
    return err;
}

void cd_audit_trusted_free(struct cd_audit_trusted *t)
{
    cd_free(t->heads);
    cd_free(t->source);
    memset(t, 0, sizeof *t);
}

/* ---- the heads file ---- */

enum cd_err cd__audit_heads_open(const char *path, int *fd, struct cd_audit_sth *last,
                                 bool *have_last)
{
    char buf[TAIL_READ + 1];
    struct stat st;
    enum cd_err err = CD_OK;
    bool created = false;
    int f = open(path, O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW);

    *have_last = false;
    if (f < 0 && errno == ENOENT) {
        f = open(path, O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        created = f >= 0;
    }
    if (f < 0)
        return cd_err_set(CD_ERR_IO, "cannot open the heads file %s: %s", path, strerror(errno));
    if (fstat(f, &st) != 0 || !S_ISREG(st.st_mode)) {
        err = cd_err_set(CD_ERR_IO, "the heads file %s is not a regular file", path);
        goto out;
    }
    if (created) {
        /* The new name must survive a crash as the heads in it will. */
        char dir[CD_PATH_MAX];
        const char *slash = strrchr(path, '/');
        snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
        int d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (d >= 0) {
            fsync(d);
            close(d);
        }
        goto done;
    }
    off_t size = st.st_size, from = size > TAIL_READ ? size - TAIL_READ : 0;
    ssize_t got = pread(f, buf, (size_t)(size - from), from);
    if (got != size - from) {
        err = cd_err_set(CD_ERR_IO, "cannot read the heads file %s", path);
        goto out;
    }
    buf[got] = '\0';
    /* A last line without its newline was cut by a crash while it was appended: it never was
     * a head anyone could have seen as written, and the next append must start a line. */
    char *end = buf + got;
    if (got > 0 && end[-1] != '\n') {
        char *nl = memrchr(buf, '\n', (size_t)got);
        off_t keep = nl ? from + (nl + 1 - buf) : from;
        if (nl == NULL && from > 0) {
            err = cd_err_set(CD_ERR_IO, "the heads file %s ends in a line too long to be a head",
                             path);
            goto out;
        }
        if (ftruncate(f, keep) != 0 || fsync(f) != 0) {
            err = cd_err_set(CD_ERR_IO, "cannot cut the partial last line of %s: %s", path,
                             strerror(errno));
            goto out;
        }
        cd_log(CD_LOG_WARN, "audit.heads_file_repaired", "\"cut_bytes\":%lld",
               (long long)(size - keep));
        end = nl ? nl + 1 : buf;
    }
    if (end > buf) {
        /* The last complete line. */
        char *e = end - 1, *s = e;
        while (s > buf && s[-1] != '\n')
            s--;
        json_t *o = NULL;
        enum cd_err perr = cd_json_parse(s, (size_t)(e - s), &o);
        if (perr == CD_ERR_NOMEM) {
            err = perr;
            goto out;
        }
        if (perr != CD_OK || cd_audit_sth_parse(o, last) != CD_OK)
            cd_integrity_report(CD_INTEGRITY_TREE_HEAD, "\"heads_file\":\"last line unreadable\"");
        else
            *have_last = true;
        json_decref(o);
    }
done:
    *fd = f;
    f = -1;
out:
    if (f >= 0)
        close(f);
    return err;
}

enum cd_err cd__audit_heads_append(int fd, const struct cd_audit_sth *heads, size_t n)
{
    struct cd_buf b = CD_BUF_INIT(n * HEAD_LINE_MAX + 1);
    enum cd_err err = CD_OK;

    for (size_t i = 0; i < n && err == CD_OK; i++) {
        json_t *o = NULL;
        char *line = NULL;
        if ((err = cd_audit_sth_json(&heads[i], &o)) != CD_OK)
            break;
        line = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(o);
        if (line == NULL) {
            err = CD_ERR_NOMEM;
            break;
        }
        if ((err = cd_buf_puts(&b, line)) == CD_OK)
            err = cd_buf_putc(&b, '\n');
        cd_free(line);
    }
    /* One write per call: O_APPEND puts it whole at the end; a crash mid-write leaves at most
     * a partial last line, which the next open cuts. */
    for (size_t off = 0; err == CD_OK && off < b.len;) {
        ssize_t w = write(fd, b.p + off, b.len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            err = cd_err_set(CD_ERR_IO, "cannot append to the heads file: %s", strerror(errno));
        else
            off += (size_t)w;
    }
    if (err == CD_OK && b.len > 0 && fdatasync(fd) != 0)
        err = cd_err_set(CD_ERR_IO, "cannot sync the heads file: %s", strerror(errno));
    cd_buf_free(&b);
    return err;
}
