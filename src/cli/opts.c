/* Option parsing and --help from the option tables. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"

enum cd_err cd_cli_parse(int argc, char **argv, struct cd_opt *opts, const char **pos,
                         size_t npos, size_t *npos_out, bool *help)
{
    size_t np = 0;

    *help = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *help = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || strcmp(a, "-") == 0) {
            if (np >= npos)
                return cd_err_set(CD_ERR_INVALID, "unexpected argument '%s'", a);
            pos[np++] = a;
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
        struct cd_opt *o = opts;
        for (; o->name; o++)
            if (strlen(o->name) == nlen && strncmp(o->name, a, nlen) == 0)
                break;
        if (o->name == NULL)
            return cd_err_set(CD_ERR_INVALID, "unknown option '%.*s' (see --help)", (int)nlen, a);
        if (o->arg == NULL) {
            if (eq)
                return cd_err_set(CD_ERR_INVALID, "option '%s' takes no value", o->name);
            o->value = "1";
        } else if (eq) {
            o->value = eq + 1;
        } else if (i + 1 < argc) {
            o->value = argv[++i];
        } else {
            return cd_err_set(CD_ERR_INVALID, "option '%s' needs a value %s", o->name, o->arg);
        }
    }
    *npos_out = np;
    return CD_OK;
}

const char *cd_cli_get(const struct cd_opt *opts, const char *name)
{
    for (; opts->name; opts++)
        if (strcmp(opts->name, name) == 0)
            return opts->value ? opts->value : opts->deflt;
    return NULL;
}

enum cd_err cd_cli_uint(const struct cd_opt *opts, const char *name, unsigned long min,
                        unsigned long max, unsigned long *out)
{
    const char *v = cd_cli_get(opts, name);
    char *end = NULL;
    unsigned long n;

    if (v == NULL || *v < '0' || *v > '9')
        goto bad;
    n = strtoul(v, &end, 10);
    if (*end != '\0' || n < min || n > max)
        goto bad;
    *out = n;
    return CD_OK;
bad:
    return cd_err_set(CD_ERR_INVALID, "%s must be a whole number from %lu to %lu", name, min,
                      max);
}

void cd_cli_usage(const char *cmd, const char *synopsis, const char *about,
                  const struct cd_opt *opts)
{
    printf("usage: candor %s %s\n\n%s\n", cmd, synopsis, about);
    if (opts && opts->name)
        printf("\noptions:\n");
    for (; opts && opts->name; opts++) {
        char left[48];
        snprintf(left, sizeof left, "%s%s%s", opts->name, opts->arg ? " " : "",
                 opts->arg ? opts->arg : "");
        printf("  %-24s %s", left, opts->help);
        if (opts->deflt)
            printf(" (default: %s)", opts->deflt);
        printf("\n");
    }
    printf("  %-24s %s\n", "--help", "show this help");
}
