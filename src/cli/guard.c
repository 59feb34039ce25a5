/* `candor guard`: check one message from a file or stdin and print the findings. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli_int.h"
#include "guard/guard.h"

/* Its own exit codes: 0, 1 and 2 are the verdicts, so scripts can branch on them. */
enum { EXIT_USAGE = 3, EXIT_INPUT = 4 };

static enum cd_err read_all(FILE *f, char **out, size_t *len)
{
    struct cd_buf b = CD_BUF_INIT(CD_GUARD_MAX_TEXT);
    char chunk[16384];
    size_t got;
    enum cd_err err = CD_OK;

    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
        if ((err = cd_buf_append(&b, chunk, got)) != CD_OK)
            goto out;
    if (ferror(f)) {
        err = cd_err_set(CD_ERR_IO, "read error");
        goto out;
    }
    if ((err = cd_buf_reserve(&b, 1)) != CD_OK)
        goto out;
    *out = cd_buf_take(&b, len);
out:
    cd_buf_free(&b);
    return err;
}

/* Moves i back to a character boundary. */
static size_t boundary(const char *p, size_t i)
{
    while (i > 0 && ((unsigned char)p[i] & 0xC0) == 0x80)
        i--;
    return i;
}

/* The findings of a result as the JSON answer gives them, for printing: a personal-data
 * finding's text is printed in its masked form, as the answers of the API give it. */
struct shown {
    const json_t *findings; /* the "findings" array of cd_guard_result_to_json */
    const struct cd_guard_result *r;
};

/* The masked text of finding k when it is personal data, else NULL. */
static const char *mask_of(const struct shown *sh, const char *text, size_t k)
{
    const struct cd_guard_finding *f = cd_guard_result_finding(sh->r, k);
    const char *m = json_string_value(json_object_get(json_array_get(sh->findings, k), "match"));

    if (f == NULL || m == NULL)
        return NULL;
    return strlen(m) == f->end - f->start && memcmp(m, text + f->start, strlen(m)) == 0 ? NULL
                                                                                         : m;
}

static void print_span(const struct shown *sh, const char *text, size_t len, size_t st,
                       size_t en)
{
    size_t a = st > 40 ? boundary(text, st - 40) : 0;
    size_t b = en + 40 < len ? boundary(text, en + 40) : len;
    size_t n = cd_guard_result_count(sh->r);

    fputs("    > ", stdout);
    for (size_t i = a; i < b; i++) {
        if (i == st)
            fputs("\xC2\xBB", stdout); /* » */
        if (i == en)
            fputs("\xC2\xAB", stdout); /* « */
        const char *m = NULL;
        for (size_t k = 0; k < n && m == NULL; k++)
            if (cd_guard_result_finding(sh->r, k)->start == i)
                m = mask_of(sh, text, k);
        if (m) {
            /* Personal data in the window is printed masked; the marks stay where they are. */
            size_t end = i;
            for (size_t k = 0; k < n; k++)
                if (cd_guard_result_finding(sh->r, k)->start == i &&
                    cd_guard_result_finding(sh->r, k)->end > end)
                    end = cd_guard_result_finding(sh->r, k)->end;
            if (end > b)
                end = b;
            if (st > i && st < end)
                fputs("\xC2\xBB", stdout);
            fputs(m, stdout);
            if (en > i && en < end) {
                fputs("\xC2\xAB", stdout);
                en = i; /* printed */
            }
            i = end - 1;
            continue;
        }
        putchar(text[i] == '\n' || text[i] == '\r' || text[i] == '\t' ? ' ' : text[i]);
    }
    if (en == b)
        fputs("\xC2\xAB", stdout);
    putchar('\n');
}

static void line_col(const char *text, size_t off, size_t *line, size_t *col)
{
    size_t l = 1, c = 1;

    for (size_t i = 0; i < off; i++) {
        if (text[i] == '\n') {
            l++;
            c = 1;
        } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

int cd_cli_guard(int argc, char **argv)
{
    struct cd_opt opts[] = {
        {"--rules", "DIR", "rule packs directory (default: see candor(1), FILES)", NULL, NULL},
        {"--format", "FMT", "text or json", "text", NULL},
        {"--channel", "NAME", "channel the message goes out on (email, sms, chat, ...)", NULL,
         NULL},
        {"--inbound", NULL, "check a message received from a customer instead of one to send",
         NULL, NULL},
        {NULL, NULL, NULL, NULL, NULL},
    };
    const char *pos[1], *from = NULL;
    size_t npos = 0;
    bool help = false;
    struct cd_guard *g = NULL;
    struct cd_guard_result *r = NULL;
    char *text = NULL, rules[CD__CLI_PATH_MAX];
    size_t len = 0;
    int rc = EXIT_INPUT;
    enum cd_err err;

    if ((err = cd_cli_parse(argc, argv, opts, pos, 1, &npos, &help)) != CD_OK) {
        fprintf(stderr, "candor guard: %s\n", cd_err_detail());
        return EXIT_USAGE;
    }
    if (help || npos == 0) {
        cd_cli_usage("guard", "[options] FILE|-",
                     "Checks a message before it is sent: personal data that should not leave,\n"
                     "misleading promises, pressure tactics, hidden costs and jargon. FILE '-'\n"
                     "reads standard input. Text output marks each finding in its context and\n"
                     "gives the suggestion and references; --format json gives the API's answer.\n"
                     "\n"
                     "Exit status: 0 allow, 1 warn, 2 block, 3 usage error, 4 unreadable input or\n"
                     "rules (including invalid UTF-8).",
                     opts);
        return help ? 0 : EXIT_USAGE;
    }
    const char *file = pos[0], *format = cd_cli_get(opts, "--format");
    const char *channel = cd_cli_get(opts, "--channel");
    bool outbound = cd_cli_get(opts, "--inbound") == NULL;
    if (strcmp(format, "text") != 0 && strcmp(format, "json") != 0) {
        fprintf(stderr, "candor guard: --format must be text or json\n");
        return EXIT_USAGE;
    }
    if (cd__cli_rules_dir(cd_cli_get(opts, "--rules"), rules, sizeof rules, &from) != CD_OK) {
        fprintf(stderr, "candor guard: %s\n", cd_err_detail());
        return EXIT_INPUT;
    }
    if (strcmp(file, "-") == 0) {
        err = read_all(stdin, &text, &len);
    } else {
        FILE *f = fopen(file, "rb");
        if (f == NULL) {
            fprintf(stderr, "candor guard: %s: %s\n", file, strerror(errno));
            goto out;
        }
        err = read_all(f, &text, &len);
        fclose(f);
    }
    if (err != CD_OK) {
        fprintf(stderr, "candor guard: %s: %s %s\n", file, cd_err_name(err), cd_err_detail());
        goto out;
    }
    if ((err = cd_guard_open(rules, &g)) != CD_OK) {
        fprintf(stderr, "candor guard: rules: %s\n", cd_err_detail()[0] ? cd_err_detail()
                                                                         : cd_err_name(err));
        goto out;
    }
    struct cd_guard_input in = {{text, len}, channel, outbound};
    if ((err = cd_guard_check(g, &in, &r)) != CD_OK) {
        fprintf(stderr, "candor guard: %s: %s%s%s\n", file, cd_err_name(err),
                cd_err_detail()[0] ? ": " : "", cd_err_detail());
        goto out;
    }
    if (strcmp(format, "json") == 0) {
        json_t *j = NULL;
        char *s = NULL;
        size_t sl;
        if (cd_guard_result_to_json(r, true, &j) != CD_OK || cd_json_dump(j, &s, &sl) != CD_OK) {
            json_decref(j);
            fprintf(stderr, "candor guard: out of memory\n");
            goto out;
        }
        fwrite(s, 1, sl, stdout);
        putchar('\n');
        cd_free(s);
        json_decref(j);
    } else {
        size_t n = cd_guard_result_count(r);
        json_t *j = NULL;
        if (cd_guard_result_to_json(r, true, &j) != CD_OK) {
            fprintf(stderr, "candor guard: out of memory\n");
            goto out;
        }
        struct shown sh = {json_object_get(j, "findings"), r};
        printf("%s: %zu finding%s, grade level %.1f\n",
               cd_guard_verdict_name(cd_guard_result_verdict(r)), n, n == 1 ? "" : "s",
               cd_guard_result_grade(r));
        for (size_t i = 0; i < n; i++) {
            const struct cd_guard_finding *f = cd_guard_result_finding(r, i);
            size_t line, col;
            line_col(text, f->start, &line, &col);
            printf("%s:%zu:%zu: %s [%s, %s] %s\n", strcmp(file, "-") ? file : "<stdin>", line,
                   col, f->rule, f->category, cd_guard_severity_name(f->severity), f->message);
            print_span(&sh, text, len, f->start, f->end);
            if (f->suggestion[0])
                printf("    suggestion: %s\n", f->suggestion);
            for (size_t k = 0; k < f->nreferences; k++)
                printf("    see: %s\n", f->references[k]);
        }
        json_decref(j);
    }
    rc = (int)cd_guard_result_verdict(r);
out:
    cd_guard_result_free(r);
    cd_guard_close(g);
    cd_free(text);
    return rc;
}
