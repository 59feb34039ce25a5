/* `candor guard`: checks messages with the communication guard — files, whole folders of
 * templates, or one message per line — on every core, and reports them as text, JSON or
 * SARIF 2.1.0 (for code-review tools), with the exit status of the worst verdict.
 *
 * Three phases, each a simple parallel loop over an array: the paths are expanded into input
 * files (folders walked, globs expanded), the files are read and split into messages, and the
 * messages are checked. Reports are printed in input order, so output is the same whatever the
 * number of threads. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <glob.h>
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli_int.h"
#include "guard/guard.h"
#include "policy/policy.h"

/* Its own exit codes: 0, 1 and 2 are the verdicts, so scripts can branch on them. */
enum { EXIT_USAGE = 3, EXIT_INPUT = 4 };

enum fmt { FMT_TEXT, FMT_JSON, FMT_SARIF };

/* More input files than this is a mistake (a walk from "/"), not a repository. */
#define MAX_FILES 1000000u

/* One input file, or standard input. */
struct src {
    char *path;    /* as given or found in a walk; "-" for standard input */
    bool named;    /* named on the command line (not found in a folder) */
    char *data;    /* NUL-terminated */
    size_t len;
    char *problem; /* why it could not be checked, or NULL */
    bool binary;   /* a binary file found in a folder: skipped, not a problem */
    bool loaded;
};

/* One message: a whole file, or one line of it with --lines. */
struct msg {
    size_t src;
    size_t line; /* the line of the file the message starts on (1-based) */
    size_t off, len;
    char *problem;
    enum cd_guard_verdict verdict;
    size_t nfindings;
    json_t *json; /* the API's answer, with path and line/column of each finding */
    char *text;   /* the text report (text format), or NULL when there is nothing to say */
};

struct run {
    struct cd_guard *g;
    const char *channel, *purpose;
    bool outbound, lines;
    enum fmt fmt;
    size_t max_size;
    struct src *srcs;
    size_t nsrcs, capsrcs;
    struct msg *msgs;
    size_t nmsgs, capmsgs;
    const char *include, *exclude; /* comma-separated globs, or NULL */
    bool nomem;
};

/* ---- a parallel loop ---- */

struct pool {
    atomic_size_t next;
    size_t n;
    void (*fn)(struct run *, size_t);
    struct run *run;
};

static void *pool_main(void *arg)
{
    struct pool *p = arg;
    size_t i;

    while ((i = atomic_fetch_add(&p->next, 1)) < p->n)
        p->fn(p->run, i);
    return NULL;
}

/* Runs fn(run, i) for every i < n on up to jobs threads (the caller's among them). */
static void parallel(struct run *run, size_t n, unsigned jobs, void (*fn)(struct run *, size_t))
{
    struct pool p = {.n = n, .fn = fn, .run = run};
    pthread_t th[256];
    unsigned started = 0;

    atomic_init(&p.next, 0);
    if (jobs > n)
        jobs = (unsigned)n;
    for (unsigned k = 1; k < jobs && k < 256; k++)
        if (pthread_create(&th[started], NULL, pool_main, &p) == 0)
            started++;
    pool_main(&p); /* if no thread could start, this one does it all */
    for (unsigned k = 0; k < started; k++)
        pthread_join(th[k], NULL);
}

/* ---- finding the input files ---- */

static bool add_src(struct run *r, const char *path, bool named, const char *problem)
{
    struct src *s;

    if (r->nsrcs == r->capsrcs) {
        size_t nc = r->capsrcs ? r->capsrcs * 2 : 64;
        struct src *ns = cd_realloc(r->srcs, nc * sizeof *ns);
        if (ns == NULL)
            return false;
        r->srcs = ns;
        r->capsrcs = nc;
    }
    s = &r->srcs[r->nsrcs];
    memset(s, 0, sizeof *s);
    s->named = named;
    if ((s->path = cd_strdup(path)) == NULL ||
        (problem && (s->problem = cd_strdup(problem)) == NULL)) {
        cd_free(s->path);
        cd_free(s->problem);
        return false;
    }
    r->nsrcs++;
    return true;
}

/* Whether name (a file's path relative to the folder walked, and its last part) matches one of
 * the comma-separated globs: a glob with a "/" is matched against the relative path, any other
 * against the name. */
static bool matches(const char *globs, const char *rel, const char *base)
{
    char one[512];

    while (*globs) {
        size_t n = strcspn(globs, ",");
        if (n && n < sizeof one) {
            memcpy(one, globs, n);
            one[n] = '\0';
            if (fnmatch(one, strchr(one, '/') ? rel : base, 0) == 0)
                return true;
        }
        globs += n + (globs[n] == ',');
    }
    return false;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Adds the files under dir, in name order. Names starting with "." (.git, .cache) and links to
 * folders are not followed. rel is dir relative to the folder the walk began at. */
static bool walk(struct run *r, const char *dir, const char *rel, unsigned depth)
{
    DIR *d;
    struct dirent *e;
    char **names = NULL;
    size_t n = 0, cap = 0;
    bool ok = true;

    if (depth > 64)
        return add_src(r, dir, false, "folders nested more than 64 deep; not followed");
    if ((d = opendir(dir)) == NULL) {
        char why[300];
        snprintf(why, sizeof why, "cannot open the folder: %s", strerror(errno));
        return add_src(r, dir, false, why);
    }
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 32;
            char **nn = cd_realloc(names, nc * sizeof *nn);
            if (nn == NULL) {
                ok = false;
                break;
            }
            names = nn;
            cap = nc;
        }
        if ((names[n] = cd_strdup(e->d_name)) == NULL) {
            ok = false;
            break;
        }
        n++;
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; ok && i < n; i++) {
        char path[CD_PATH_MAX], sub[CD_PATH_MAX];
        struct stat st;
        if ((size_t)snprintf(path, sizeof path, "%s%s%s", dir,
                             dir[strlen(dir) - 1] == '/' ? "" : "/", names[i]) >= sizeof path ||
            (size_t)snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] ? "/" : "", names[i]) >=
                sizeof sub) {
            ok = add_src(r, names[i], false, "path too long");
            continue;
        }
        if (lstat(path, &st) != 0) {
            char why[300];
            snprintf(why, sizeof why, "cannot read: %s", strerror(errno));
            ok = add_src(r, path, false, why);
            continue;
        }
        if (r->exclude && matches(r->exclude, sub, names[i]))
            continue;
        if (S_ISDIR(st.st_mode)) {
            ok = walk(r, path, sub, depth + 1);
            continue;
        }
        if (S_ISLNK(st.st_mode) && (stat(path, &st) != 0 || !S_ISREG(st.st_mode)))
            continue; /* links are followed to files only, so a walk cannot loop */
        if (!S_ISREG(st.st_mode))
            continue; /* sockets, fifos and devices in a tree are not templates */
        if (r->include && !matches(r->include, sub, names[i]))
            continue;
        if (r->nsrcs >= MAX_FILES) {
            cd_err_set(CD_ERR_TOO_BIG, "more than %u files", MAX_FILES);
            ok = false;
            break;
        }
        ok = add_src(r, path, false, NULL);
    }
    for (size_t i = 0; i < n; i++)
        cd_free(names[i]);
    cd_free(names);
    return ok;
}

/* A path named on the command line: a file, a folder (walked), "-", or a glob the shell did not
 * expand (quoted, as in a CI configuration). */
static bool expand(struct run *r, const char *arg)
{
    struct stat st;

    if (strcmp(arg, "-") == 0)
        return add_src(r, "-", true, NULL);
    if (stat(arg, &st) == 0)
        return S_ISDIR(st.st_mode) ? walk(r, arg, "", 0) : add_src(r, arg, true, NULL);
    if (strpbrk(arg, "*?[")) {
        glob_t gl;
        int rc = glob(arg, 0, NULL, &gl);
        bool ok = true;
        if (rc == GLOB_NOMATCH)
            return add_src(r, arg, true, "no file matches this pattern");
        if (rc != 0)
            return add_src(r, arg, true, "the pattern cannot be expanded");
        for (size_t i = 0; ok && i < gl.gl_pathc; i++)
            ok = stat(gl.gl_pathv[i], &st) == 0 && S_ISDIR(st.st_mode)
                     ? walk(r, gl.gl_pathv[i], "", 0)
                     : add_src(r, gl.gl_pathv[i], true, NULL);
        globfree(&gl);
        return ok;
    }
    char why[300];
    snprintf(why, sizeof why, "cannot read: %s", strerror(errno));
    return add_src(r, arg, true, why);
}

/* ---- reading ---- */

/* The offset of the first byte that does not start valid UTF-8, or n if all of p is valid
 * (overlong forms, surrogates and code points above U+10FFFF are invalid). */
static size_t utf8_bad_at(const unsigned char *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned char c = p[i];
        size_t k;
        unsigned long cp;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF)
            k = 1, cp = c & 0x1F;
        else if (c >= 0xE0 && c <= 0xEF)
            k = 2, cp = c & 0x0F;
        else if (c >= 0xF0 && c <= 0xF4)
            k = 3, cp = c & 0x07;
        else
            return i;
        if (i + k >= n)
            return i;
        for (size_t j = 1; j <= k; j++) {
            if ((p[i + j] & 0xC0) != 0x80)
                return i;
            cp = cp << 6 | (p[i + j] & 0x3F);
        }
        if ((k == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return i;
        i += k + 1;
    }
    return n;
}

static size_t line_of(const char *p, size_t off)
{
    size_t l = 1;

    for (size_t i = 0; i < off; i++)
        l += p[i] == '\n';
    return l;
}

static void set_problem(char **slot, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_problem(char **slot, const char *fmt, ...)
{
    char buf[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    *slot = cd_strdup(buf); /* NULL on no memory: the message then reads as unchecked below */
}

static enum cd_err read_fd(int fd, size_t cap, char **out, size_t *len, bool *too_big)
{
    struct cd_buf b = CD_BUF_INIT(cap + 1);
    char chunk[65536];
    ssize_t got;
    enum cd_err err = CD_OK;

    *too_big = false;
    while ((got = read(fd, chunk, sizeof chunk)) != 0) {
        if (got < 0) {
            if (errno == EINTR)
                continue;
            err = cd_err_set(CD_ERR_IO, "%s", strerror(errno));
            goto out;
        }
        if (b.len + (size_t)got > cap) {
            *too_big = true;
            goto out;
        }
        if ((err = cd_buf_append(&b, chunk, (size_t)got)) != CD_OK)
            goto out;
    }
    if ((err = cd_buf_reserve(&b, 1)) != CD_OK)
        goto out;
    b.p[b.len] = '\0';
    *out = cd_buf_take(&b, len);
out:
    cd_buf_free(&b);
    return err;
}

static void load_src(struct run *r, size_t i)
{
    struct src *s = &r->srcs[i];
    int fd;
    struct stat st;
    bool too_big = false;
    enum cd_err err;

    if (s->problem || s->loaded)
        return;
    s->loaded = true;
    if (strcmp(s->path, "-") == 0) {
        fd = STDIN_FILENO;
    } else if ((fd = open(s->path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
        set_problem(&s->problem, "cannot read: %s", strerror(errno));
        return;
    }
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size > r->max_size) {
        set_problem(&s->problem, "%lld bytes, above the limit of %zu bytes (--max-size)",
                    (long long)st.st_size, r->max_size);
        goto out;
    }
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        set_problem(&s->problem, "a folder");
        goto out;
    }
    if ((err = read_fd(fd, r->max_size, &s->data, &s->len, &too_big)) != CD_OK) {
        set_problem(&s->problem, "cannot read: %s", cd_err_detail()[0] ? cd_err_detail()
                                                                       : cd_err_name(err));
        goto out;
    }
    if (too_big) {
        set_problem(&s->problem, "above the limit of %zu bytes (--max-size)", r->max_size);
        goto out;
    }
    if (memchr(s->data, '\0', s->len)) {
        /* A NUL byte never occurs in text: an image or archive in a folder of templates is
         * skipped; one named on the command line is reported. */
        if (s->named)
            set_problem(&s->problem, "a binary file (it holds NUL bytes), not checked");
        else
            s->binary = true;
        goto out;
    }
    if (!r->lines) {
        size_t bad = utf8_bad_at((const unsigned char *)s->data, s->len);
        if (bad < s->len)
            set_problem(&s->problem, "not valid UTF-8 at byte %zu (line %zu)", bad,
                        line_of(s->data, bad));
    }
out:
    if (fd != STDIN_FILENO)
        close(fd);
    if (s->problem || s->binary) {
        cd_free(s->data);
        s->data = NULL;
    }
}

static bool add_msg(struct run *r, size_t src, size_t line, size_t off, size_t len)
{
    if (r->nmsgs == r->capmsgs) {
        size_t nc = r->capmsgs ? r->capmsgs * 2 : 64;
        struct msg *nm = cd_realloc(r->msgs, nc * sizeof *nm);
        if (nm == NULL)
            return false;
        r->msgs = nm;
        r->capmsgs = nc;
    }
    r->msgs[r->nmsgs++] = (struct msg){.src = src, .line = line, .off = off, .len = len};
    return true;
}

/* Splits the files into messages: each file, or each non-blank line with --lines. */
static bool split(struct run *r)
{
    for (size_t i = 0; i < r->nsrcs; i++) {
        const struct src *s = &r->srcs[i];
        if (s->data == NULL)
            continue;
        if (!r->lines) {
            if (!add_msg(r, i, 1, 0, s->len))
                return false;
            continue;
        }
        size_t line = 1;
        for (size_t a = 0; a <= s->len; line++) {
            const char *nl = memchr(s->data + a, '\n', s->len - a);
            size_t b = nl ? (size_t)(nl - s->data) : s->len, e = b;
            if (e > a && s->data[e - 1] == '\r')
                e--;
            size_t k = a;
            while (k < e && (s->data[k] == ' ' || s->data[k] == '\t'))
                k++;
            if (k < e && !add_msg(r, i, line, a, e - a))
                return false;
            if (nl == NULL)
                break;
            a = b + 1;
        }
    }
    return true;
}

/* ---- checking ---- */

/* Moves i back to a character boundary. */
static size_t boundary(const char *p, size_t i)
{
    while (i > 0 && ((unsigned char)p[i] & 0xC0) == 0x80)
        i--;
    return i;
}

/* Line and column (1-based, in characters) of byte off of p. */
static void line_col(const char *p, size_t off, size_t *line, size_t *col)
{
    size_t l = 1, c = 1;

    for (size_t i = 0; i < off; i++) {
        if (p[i] == '\n') {
            l++;
            c = 1;
        } else if (((unsigned char)p[i] & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

/* The masked form of finding k's text when it is personal data (the answer's "match" differs
 * from the text it covers), else NULL. */
static const char *mask_of(const json_t *findings, const struct cd_guard_result *res,
                           const char *text, size_t k)
{
    const struct cd_guard_finding *f = cd_guard_result_finding(res, k);
    const char *m = json_string_value(json_object_get(json_array_get(findings, k), "match"));

    if (f == NULL || m == NULL)
        return NULL;
    return strlen(m) == f->end - f->start && memcmp(m, text + f->start, strlen(m)) == 0 ? NULL
                                                                                         : m;
}

/* The finding in its context, marked »…«; personal data in the window is shown masked, as the
 * answers of the API show it. */
static enum cd_err put_span(struct cd_buf *b, const json_t *findings,
                            const struct cd_guard_result *res, const char *text, size_t len,
                            size_t st, size_t en)
{
    size_t a = st > 40 ? boundary(text, st - 40) : 0;
    size_t z = en + 40 < len ? boundary(text, en + 40) : len;
    size_t n = cd_guard_result_count(res);
    enum cd_err err = cd_buf_append(b, "    > ", 6);

    for (size_t i = a; err == CD_OK && i < z; i++) {
        if (i == st)
            err = cd_buf_append(b, "\xC2\xBB", 2); /* » */
        if (i == en && err == CD_OK)
            err = cd_buf_append(b, "\xC2\xAB", 2); /* « */
        const char *m = NULL;
        size_t end = i;
        for (size_t k = 0; k < n; k++) {
            const struct cd_guard_finding *f = cd_guard_result_finding(res, k);
            if (f->start != i)
                continue;
            const char *mk = mask_of(findings, res, text, k);
            if (mk && f->end > end) {
                m = mk;
                end = f->end;
            }
        }
        if (m && err == CD_OK) {
            if (end > z)
                end = z;
            if (st > i && st < end)
                err = cd_buf_append(b, "\xC2\xBB", 2);
            if (err == CD_OK)
                err = cd_buf_append(b, m, strlen(m));
            if (err == CD_OK && en > i && en < end) {
                err = cd_buf_append(b, "\xC2\xAB", 2);
                en = i; /* printed */
            }
            i = end - 1;
            continue;
        }
        char c = text[i] == '\n' || text[i] == '\r' || text[i] == '\t' ? ' ' : text[i];
        if (err == CD_OK)
            err = cd_buf_append(b, &c, 1);
    }
    if (err == CD_OK && en == z)
        err = cd_buf_append(b, "\xC2\xAB", 2);
    if (err == CD_OK)
        err = cd_buf_append(b, "\n", 1);
    return err;
}

static const char *display(const struct src *s)
{
    return strcmp(s->path, "-") == 0 ? "<stdin>" : s->path;
}

/* The text report of one checked message: nothing when it has no findings. */
static enum cd_err text_report(const struct run *r, const struct msg *m,
                               const struct cd_guard_result *res, const json_t *j, char **out)
{
    const struct src *s = &r->srcs[m->src];
    const char *text = s->data + m->off;
    const json_t *findings = json_object_get(j, "findings");
    size_t n = cd_guard_result_count(res);
    /* Unbounded: the report of one message already read within --max-size. */
    struct cd_buf b = CD_BUF_INIT(CD_BUF_UNBOUNDED);
    enum cd_err err;

    *out = NULL;
    if (n == 0)
        return CD_OK;
    if (r->lines)
        err = cd_buf_printf(&b, "%s:%zu: %s: %zu finding%s, grade level %.1f\n", display(s),
                            m->line, cd_guard_verdict_name(m->verdict), n, n == 1 ? "" : "s",
                            cd_guard_result_grade(res));
    else
        err = cd_buf_printf(&b, "%s: %s: %zu finding%s, grade level %.1f\n", display(s),
                            cd_guard_verdict_name(m->verdict), n, n == 1 ? "" : "s",
                            cd_guard_result_grade(res));
    for (size_t i = 0; err == CD_OK && i < n; i++) {
        const struct cd_guard_finding *f = cd_guard_result_finding(res, i);
        size_t line, col;
        line_col(text, f->start, &line, &col);
        err = cd_buf_printf(&b, "%s:%zu:%zu: %s [%s, %s] %s\n", display(s), m->line + line - 1,
                            col, f->rule, f->category, cd_guard_severity_name(f->severity),
                            f->message);
        if (err == CD_OK)
            err = put_span(&b, findings, res, text, m->len, f->start, f->end);
        if (err == CD_OK && f->suggestion[0])
            err = cd_buf_printf(&b, "    suggestion: %s\n", f->suggestion);
        for (size_t k = 0; err == CD_OK && k < f->nreferences; k++)
            err = cd_buf_printf(&b, "    see: %s\n", f->references[k]);
    }
    if (err == CD_OK && (err = cd_buf_reserve(&b, 1)) == CD_OK) {
        size_t l;
        b.p[b.len] = '\0';
        *out = cd_buf_take(&b, &l);
    }
    cd_buf_free(&b);
    return err;
}

/* Adds where each finding is in the file: line, column, end_line, end_column (1-based, columns
 * in characters, the end exclusive) and the byte offset in the file. */
static enum cd_err place(const struct run *r, const struct msg *m,
                         const struct cd_guard_result *res, json_t *j)
{
    const struct src *s = &r->srcs[m->src];
    const char *text = s->data + m->off;
    json_t *findings = json_object_get(j, "findings");

    if (json_object_set_new(j, "path", json_string(display(s))) ||
        (r->lines && json_object_set_new(j, "line", json_integer((json_int_t)m->line))))
        return CD_ERR_NOMEM;
    for (size_t i = 0; i < cd_guard_result_count(res); i++) {
        const struct cd_guard_finding *f = cd_guard_result_finding(res, i);
        json_t *o = json_array_get(findings, i);
        size_t l0, c0, l1, c1;
        line_col(text, f->start, &l0, &c0);
        line_col(text, f->end, &l1, &c1);
        if (json_object_set_new(o, "line", json_integer((json_int_t)(m->line + l0 - 1))) ||
            json_object_set_new(o, "column", json_integer((json_int_t)c0)) ||
            json_object_set_new(o, "end_line", json_integer((json_int_t)(m->line + l1 - 1))) ||
            json_object_set_new(o, "end_column", json_integer((json_int_t)c1)) ||
            json_object_set_new(o, "file_offset", json_integer((json_int_t)(m->off + f->start))))
            return CD_ERR_NOMEM;
    }
    return CD_OK;
}

static void check_msg(struct run *r, size_t i)
{
    struct msg *m = &r->msgs[i];
    const struct src *s = &r->srcs[m->src];
    struct cd_guard_result *res = NULL;
    enum cd_err err;

    if (r->lines) {
        size_t bad = utf8_bad_at((const unsigned char *)s->data + m->off, m->len);
        if (bad < m->len) {
            set_problem(&m->problem, "line %zu: not valid UTF-8 at byte %zu of the line",
                        m->line, bad);
            return;
        }
    }
    struct cd_guard_input in = {{s->data + m->off, m->len}, r->channel, r->outbound, r->purpose};
    if ((err = cd_guard_check(r->g, &in, &res)) != CD_OK) {
        set_problem(&m->problem, "%s%s%s", cd_err_name(err), cd_err_detail()[0] ? ": " : "",
                    cd_err_detail());
        return;
    }
    m->verdict = cd_guard_result_verdict(res);
    m->nfindings = cd_guard_result_count(res);
    if ((err = cd_guard_result_to_json(res, true, &m->json)) != CD_OK ||
        (err = place(r, m, res, m->json)) != CD_OK ||
        (r->fmt == FMT_TEXT && (err = text_report(r, m, res, m->json, &m->text)) != CD_OK)) {
        set_problem(&m->problem, "out of memory");
        json_decref(m->json);
        m->json = NULL;
    }
    if (r->fmt == FMT_TEXT) { /* the text is printed; the answer is not needed any more */
        json_decref(m->json);
        m->json = NULL;
    }
    cd_guard_result_free(res);
}

/* ---- reports ---- */

struct tally {
    size_t files, checked, allow, warn, block, problems, binary;
};

static struct tally count(const struct run *r)
{
    struct tally t = {0};

    for (size_t i = 0; i < r->nsrcs; i++) {
        t.files++;
        t.problems += r->srcs[i].problem != NULL;
        t.binary += r->srcs[i].binary;
    }
    for (size_t i = 0; i < r->nmsgs; i++) {
        const struct msg *m = &r->msgs[i];
        if (m->problem) {
            t.problems++;
            continue;
        }
        t.checked++;
        if (m->verdict == CD_GUARD_BLOCK)
            t.block++;
        else if (m->verdict == CD_GUARD_WARN)
            t.warn++;
        else
            t.allow++;
    }
    return t;
}

static void summary(FILE *out, const struct run *r, const struct tally *t)
{
    fprintf(out, "candor guard: %zu message%s checked in %zu file%s: %zu allow, %zu warn, %zu "
                 "block",
            t->checked, t->checked == 1 ? "" : "s", t->files, t->files == 1 ? "" : "s", t->allow,
            t->warn, t->block);
    if (t->problems)
        fprintf(out, "; %zu could not be checked", t->problems);
    if (t->binary)
        fprintf(out, "; %zu binary file%s skipped", t->binary, t->binary == 1 ? "" : "s");
    fprintf(out, " (purpose %s, channel %s, %s)\n", r->purpose ? r->purpose : "not declared",
            r->channel ? r->channel : "any", r->outbound ? "outbound" : "inbound");
}

static enum cd_err emit(json_t *j)
{
    char *s = NULL;
    size_t sl;
    enum cd_err err = cd_json_dump(j, &s, &sl);

    if (err == CD_OK) {
        fwrite(s, 1, sl, stdout);
        putchar('\n');
    }
    cd_free(s);
    return err;
}

/* Each problem once: a file's, or a message's (a line of a file). */
static json_t *problems_json(const struct run *r)
{
    json_t *arr = json_array();

    for (size_t i = 0; arr && i < r->nsrcs; i++)
        if (r->srcs[i].problem &&
            json_array_append_new(arr, json_pack("{s:s,s:s}", "path", display(&r->srcs[i]),
                                                 "error", r->srcs[i].problem))) {
            json_decref(arr);
            return NULL;
        }
    for (size_t i = 0; arr && i < r->nmsgs; i++) {
        const struct msg *m = &r->msgs[i];
        if (m->problem &&
            json_array_append_new(arr, json_pack("{s:s,s:I,s:s}", "path",
                                                 display(&r->srcs[m->src]), "line",
                                                 (json_int_t)m->line, "error", m->problem))) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

static enum cd_err report_json(const struct run *r, const struct tally *t)
{
    json_t *o = NULL, *results = json_array(), *skipped = json_array(), *errors;
    enum cd_err err = CD_ERR_NOMEM;

    errors = problems_json(r);
    if (results == NULL || skipped == NULL || errors == NULL)
        goto out;
    for (size_t i = 0; i < r->nmsgs; i++)
        if (r->msgs[i].json && json_array_append(results, r->msgs[i].json))
            goto out;
    for (size_t i = 0; i < r->nsrcs; i++)
        if (r->srcs[i].binary &&
            json_array_append_new(skipped, json_pack("{s:s,s:s}", "path", r->srcs[i].path,
                                                     "reason", "binary file")))
            goto out;
    o = json_pack("{s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:s?,s:s?,s:s},s:O,s:O,s:O}", "summary",
                  "files", (json_int_t)t->files, "messages", (json_int_t)t->checked, "allow",
                  (json_int_t)t->allow, "warn", (json_int_t)t->warn, "block",
                  (json_int_t)t->block, "errors", (json_int_t)t->problems, "skipped",
                  (json_int_t)t->binary, "purpose", r->purpose, "channel", r->channel,
                  "direction", r->outbound ? "outbound" : "inbound", "results", results,
                  "errors", errors, "skipped", skipped);
    if (o == NULL)
        goto out;
    err = emit(o);
out:
    json_decref(o);
    json_decref(results);
    json_decref(skipped);
    json_decref(errors);
    return err;
}

/* A path as a URI reference (RFC 3986): relative paths stay relative (so code-review tools
 * resolve them against the checkout), absolute ones become file:// URIs; bytes other than
 * unreserved characters and "/" are percent-encoded. */
static json_t *uri_of(const char *path)
{
    /* Unbounded: a name the walk has already opened. */
    struct cd_buf b = CD_BUF_INIT(CD_BUF_UNBOUNDED);
    json_t *j = NULL;
    size_t l;

    if (strcmp(path, "-") == 0)
        return json_string("stdin");
    if (path[0] == '/' && cd_buf_append(&b, "file://", 7) != CD_OK)
        goto out;
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        bool keep = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (*p >= '0' && *p <= '9') || strchr("-._~/", *p);
        if ((keep ? cd_buf_append(&b, (const char *)p, 1) : cd_buf_printf(&b, "%%%02X", *p)) !=
            CD_OK)
            goto out;
    }
    if (cd_buf_reserve(&b, 1) == CD_OK) {
        char *s;
        b.p[b.len] = '\0';
        s = cd_buf_take(&b, &l);
        j = json_string(s);
        cd_free(s);
    }
out:
    cd_buf_free(&b);
    return j;
}

static const char *sarif_level(const char *severity)
{
    return strcmp(severity, "block") == 0 ? "error" : strcmp(severity, "warn") == 0 ? "warning"
                                                                                      : "note";
}

/* The index of rule id in the driver's rules, adding it (from the finding's metadata) when it
 * is new. */
static json_int_t rule_index(json_t *rules, json_t *index, const json_t *f)
{
    const char *id = json_string_value(json_object_get(f, "rule"));
    json_t *at = json_object_get(index, id);
    json_int_t k;

    if (at)
        return json_integer_value(at);
    k = (json_int_t)json_array_size(rules);
    json_t *rule = json_pack(
        "{s:s,s:{s:O},s:{s:O},s:{s:O,s:O}}", "id", id, "shortDescription", "text",
        json_object_get(f, "message"), "help", "text", json_object_get(f, "suggestion"),
        "properties", "category", json_object_get(f, "category"), "references",
        json_object_get(f, "references"));
    if (rule == NULL || json_array_append_new(rules, rule) ||
        json_object_set_new(index, id, json_integer(k)))
        return -1;
    return k;
}

static json_t *sarif_location(const char *path, const json_t *region)
{
    json_t *uri = uri_of(path);

    if (uri == NULL)
        return NULL;
    json_t *loc = json_pack("{s:{s:{s:o,s:s}}}", "physicalLocation", "artifactLocation", "uri",
                            uri, "uriBaseId", "%SRCROOT%");
    if (loc && region &&
        json_object_set(json_object_get(loc, "physicalLocation"), "region", (json_t *)region)) {
        json_decref(loc);
        return NULL;
    }
    if (loc && path[0] == '/')
        json_object_del(json_object_get(json_object_get(loc, "physicalLocation"),
                                        "artifactLocation"),
                        "uriBaseId");
    return loc;
}

static enum cd_err report_sarif(const struct run *r, const struct tally *t)
{
    json_t *rules = json_array(), *index = json_object(), *results = json_array(),
           *notes = json_array(), *o = NULL;
    enum cd_err err = CD_ERR_NOMEM;

    if (!rules || !index || !results || !notes)
        goto out;
    for (size_t i = 0; i < r->nmsgs; i++) {
        const struct msg *m = &r->msgs[i];
        const json_t *fs = json_object_get(m->json, "findings");
        size_t k;
        json_t *f;
        json_array_foreach(fs, k, f) {
            json_int_t ri = rule_index(rules, index, f);
            json_int_t st = json_integer_value(json_object_get(f, "start"));
            json_int_t en = json_integer_value(json_object_get(f, "end"));
            json_t *region = json_pack(
                "{s:O,s:O,s:O,s:O,s:O,s:I}", "startLine", json_object_get(f, "line"),
                "startColumn", json_object_get(f, "column"), "endLine",
                json_object_get(f, "end_line"), "endColumn", json_object_get(f, "end_column"),
                "byteOffset", json_object_get(f, "file_offset"), "byteLength", en - st);
            json_t *loc = region ? sarif_location(r->srcs[m->src].path, region) : NULL;
            const char *sugg = json_string_value(json_object_get(f, "suggestion"));
            char msgtext[2048];
            snprintf(msgtext, sizeof msgtext, "%s%s%s",
                     json_string_value(json_object_get(f, "message")),
                     sugg && sugg[0] ? " " : "", sugg ? sugg : "");
            json_t *res = loc && ri >= 0
                              ? json_pack("{s:O,s:I,s:s,s:{s:s},s:[o],s:{s:O,s:O,s:s?}}",
                                          "ruleId", json_object_get(f, "rule"), "ruleIndex", ri,
                                          "level",
                                          sarif_level(json_string_value(
                                              json_object_get(f, "severity"))),
                                          "message", "text", msgtext, "locations", loc,
                                          "properties", "category",
                                          json_object_get(f, "category"), "severity",
                                          json_object_get(f, "severity"), "purpose",
                                          r->purpose)
                              : NULL;
            json_decref(region);
            if (res == NULL) {
                if (loc && ri >= 0)
                    goto out;
                json_decref(loc);
                goto out;
            }
            if (json_array_append_new(results, res))
                goto out;
        }
    }
    for (size_t i = 0; i < r->nsrcs; i++) {
        const struct src *s = &r->srcs[i];
        if (!s->problem && !s->binary)
            continue;
        json_t *loc = sarif_location(s->path, NULL);
        char text[700];
        snprintf(text, sizeof text, "%s: %s", display(s),
                 s->problem ? s->problem : "a binary file, skipped");
        json_t *n = loc ? json_pack("{s:s,s:{s:s},s:[o]}", "level", s->problem ? "error" : "note",
                                    "message", "text", text, "locations", loc)
                        : NULL;
        if (n == NULL || json_array_append_new(notes, n))
            goto out;
    }
    for (size_t i = 0; i < r->nmsgs; i++) {
        const struct msg *m = &r->msgs[i];
        if (!m->problem)
            continue;
        json_t *region = json_pack("{s:I}", "startLine", (json_int_t)m->line);
        json_t *loc = region ? sarif_location(r->srcs[m->src].path, region) : NULL;
        char text[700];
        json_decref(region);
        snprintf(text, sizeof text, "%s: %s", display(&r->srcs[m->src]), m->problem);
        json_t *n = loc ? json_pack("{s:s,s:{s:s},s:[o]}", "level", "error", "message", "text",
                                    text, "locations", loc)
                        : NULL;
        if (n == NULL || json_array_append_new(notes, n))
            goto out;
    }
    o = json_pack("{s:s,s:s,s:[{s:{s:{s:s,s:s,s:O}},s:s,s:[{s:b,s:O}],s:O}]}", "$schema",
                  "https://json.schemastore.org/sarif-2.1.0.json", "version", "2.1.0", "runs",
                  "tool", "driver", "name", "candor guard", "version", cd__cli_build_version,
                  "rules", rules, "columnKind",
                  "unicodeCodePoints", "invocations", "executionSuccessful",
                  t->problems == 0, "toolExecutionNotifications", notes, "results", results);
    if (o == NULL)
        goto out;
    err = emit(o);
out:
    json_decref(o);
    json_decref(rules);
    json_decref(index);
    json_decref(results);
    json_decref(notes);
    return err;
}

static void report_text(const struct run *r)
{
    for (size_t i = 0; i < r->nsrcs; i++)
        if (r->srcs[i].problem)
            fprintf(stderr, "candor guard: %s: %s\n", display(&r->srcs[i]), r->srcs[i].problem);
    for (size_t i = 0; i < r->nmsgs; i++) {
        const struct msg *m = &r->msgs[i];
        if (m->problem)
            fprintf(stderr, "candor guard: %s: %s\n", display(&r->srcs[m->src]), m->problem);
        else if (m->text)
            fputs(m->text, stdout);
    }
}

static void run_free(struct run *r)
{
    for (size_t i = 0; i < r->nsrcs; i++) {
        cd_free(r->srcs[i].path);
        cd_free(r->srcs[i].data);
        cd_free(r->srcs[i].problem);
    }
    for (size_t i = 0; i < r->nmsgs; i++) {
        cd_free(r->msgs[i].problem);
        cd_free(r->msgs[i].text);
        json_decref(r->msgs[i].json);
    }
    cd_free(r->srcs);
    cd_free(r->msgs);
    cd_guard_close(r->g);
}

int cd_cli_guard(int argc, char **argv)
{
    struct cd_opt opts[] = {
        {"--rules", "DIR", "rule packs directory (default: see candor(1), FILES)", NULL, NULL},
        {"--format", "FMT", "text, json or sarif (SARIF 2.1.0, for code-review tools)", "text",
         NULL},
        {"--purpose", "NAME",
         "what the messages are sent for (service, marketing, ...): the packs' policy decides "
         "severities by it",
         NULL, NULL},
        {"--channel", "NAME", "channel the messages go out on (email, sms, chat, ...)", NULL,
         NULL},
        {"--inbound", NULL, "check messages received from customers instead of ones to send",
         NULL, NULL},
        {"--lines", NULL, "one message per line (blank lines are skipped)", NULL, NULL},
        {"--include", "GLOBS",
         "in folders, check only files matching one of these comma-separated globs (*.txt,*.md; "
         "a glob with a / matches the path below the folder)",
         NULL, NULL},
        {"--exclude", "GLOBS", "in folders, skip files and folders matching these globs", NULL,
         NULL},
        {"--max-size", "BYTES", "largest file (or line) checked", "4194304", NULL},
        {"--jobs", "N", "threads (default: one per core)", NULL, NULL},
        {NULL, NULL, NULL, NULL, NULL},
    };
    const char **pos = NULL;
    size_t npos = 0;
    bool help = false;
    struct run r = {0};
    char rules[CD_PATH_MAX];
    const char *from = NULL;
    unsigned long max_size, jobs;
    int rc = EXIT_INPUT;
    enum cd_err err;

    if ((pos = cd_calloc((size_t)argc + 1, sizeof *pos)) == NULL) {
        fprintf(stderr, "candor guard: out of memory\n");
        return EXIT_INPUT;
    }
    if ((err = cd_cli_parse(argc, argv, opts, pos, (size_t)argc, &npos, &help)) != CD_OK) {
        fprintf(stderr, "candor guard: %s\n", cd_err_detail());
        cd_free(pos);
        return EXIT_USAGE;
    }
    if (help || npos == 0) {
        cd_cli_usage(
            "guard", "[options] PATH...",
            "Checks messages before they are sent: personal data that should not leave,\n"
            "misleading promises, pressure tactics, hidden costs and jargon. Each PATH is a\n"
            "file (one message), a folder (every file below it, in name order; names starting\n"
            "with '.' skipped), a quoted glob, or '-' for standard input; with --lines every\n"
            "line is a message. Messages are checked in parallel, reported in input order.\n"
            "Text output marks each finding in its context and gives the suggestion and\n"
            "references; --format json gives the API's answer per message; --format sarif\n"
            "gives SARIF 2.1.0 for code scanning. A summary line ends the output (on stderr\n"
            "for json and sarif). Files that cannot be checked (unreadable, not UTF-8, binary\n"
            "when named, above --max-size) are reported one by one and the rest are checked.\n"
            "\n"
            "Exit status: the worst verdict, 0 allow, 1 warn, 2 block; 3 usage error; 4 rules\n"
            "that do not load or any input that could not be checked.",
            opts);
        cd_free(pos);
        return help ? 0 : EXIT_USAGE;
    }
    const char *format = cd_cli_get(opts, "--format");
    r.channel = cd_cli_get(opts, "--channel");
    r.purpose = cd_cli_get(opts, "--purpose");
    r.outbound = cd_cli_get(opts, "--inbound") == NULL;
    r.lines = cd_cli_get(opts, "--lines") != NULL;
    r.include = cd_cli_get(opts, "--include");
    r.exclude = cd_cli_get(opts, "--exclude");
    r.fmt = strcmp(format, "json") == 0 ? FMT_JSON : strcmp(format, "sarif") == 0 ? FMT_SARIF
                                                                                  : FMT_TEXT;
    enum cd_purpose pu;
    if (strcmp(format, "text") != 0 && r.fmt == FMT_TEXT) {
        fprintf(stderr, "candor guard: --format must be text, json or sarif\n");
        goto usage;
    }
    if (r.purpose && !cd_purpose_parse(cd_str_c(r.purpose), &pu)) {
        fprintf(stderr, "candor guard: --purpose must be one of: %s\n", cd_purpose_list());
        goto usage;
    }
    if (cd_cli_uint(opts, "--max-size", 1, CD_GUARD_MAX_TEXT, &max_size) != CD_OK) {
        fprintf(stderr, "candor guard: %s\n", cd_err_detail());
        goto usage;
    }
    jobs = (unsigned long)sysconf(_SC_NPROCESSORS_ONLN);
    if (jobs < 1)
        jobs = 1;
    if (cd_cli_get(opts, "--jobs") && cd_cli_uint(opts, "--jobs", 1, 256, &jobs) != CD_OK) {
        fprintf(stderr, "candor guard: %s\n", cd_err_detail());
        goto usage;
    }
    if (jobs > 256)
        jobs = 256;
    r.max_size = max_size;
    size_t nstdin = 0;
    for (size_t i = 0; i < npos; i++)
        nstdin += strcmp(pos[i], "-") == 0;
    if (nstdin > 1) {
        fprintf(stderr, "candor guard: '-' (standard input) may be named once\n");
        goto usage;
    }
    if (cd__cli_rules_dir(cd_cli_get(opts, "--rules"), rules, sizeof rules, &from) != CD_OK) {
        fprintf(stderr, "candor guard: %s\n", cd_err_detail());
        goto out;
    }
    if ((err = cd_guard_open(rules, &r.g)) != CD_OK) {
        fprintf(stderr, "candor guard: rules: %s\n", cd_err_detail()[0] ? cd_err_detail()
                                                                         : cd_err_name(err));
        goto out;
    }
    for (size_t i = 0; i < npos; i++)
        if (!expand(&r, pos[i])) {
            fprintf(stderr, "candor guard: %s\n",
                    cd_err_detail()[0] ? cd_err_detail() : "out of memory");
            goto out;
        }
    /* Standard input is read here, not by a worker thread. */
    for (size_t i = 0; i < r.nsrcs; i++)
        if (strcmp(r.srcs[i].path, "-") == 0)
            load_src(&r, i);
    parallel(&r, r.nsrcs, (unsigned)jobs, load_src);
    if (!split(&r)) {
        fprintf(stderr, "candor guard: out of memory\n");
        goto out;
    }
    parallel(&r, r.nmsgs, (unsigned)jobs, check_msg);
    struct tally t = count(&r);
    if (r.fmt == FMT_TEXT) {
        report_text(&r);
        summary(stdout, &r, &t);
    } else {
        if ((r.fmt == FMT_JSON ? report_json(&r, &t) : report_sarif(&r, &t)) != CD_OK) {
            fprintf(stderr, "candor guard: out of memory\n");
            goto out;
        }
        summary(stderr, &r, &t);
    }
    rc = t.problems ? EXIT_INPUT : t.block ? 2 : t.warn ? 1 : 0;
    goto out;
usage:
    rc = EXIT_USAGE;
out:
    fflush(stdout);
    run_free(&r);
    cd_free(pos);
    return rc;
}
