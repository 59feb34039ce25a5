/* `candor export` and `candor import`: a deployment's customers and interactions out as
 * NDJSON, and NDJSON, CSV or a Zendesk export in (docs/import-export.md). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "cli_int.h"
#include "consent/consent.h"
#include "policy/policy.h"
#include "transfer/transfer.h"

struct ui {
    const char *cmd;
    bool tty; /* a progress bar on a terminal; none when stderr is piped */
    bool drawn;
};

static void report(void *ctx, uint64_t line, enum cd_err err, const char *detail)
{
    struct ui *u = ctx;

    if (u->drawn)
        fputc('\n', stderr);
    u->drawn = false;
    if (line)
        fprintf(stderr, "candor %s: line %llu: %s\n", u->cmd, (unsigned long long)line,
                detail && detail[0] ? detail : cd_err_name(err));
    else
        fprintf(stderr, "candor %s: %s\n", u->cmd, detail && detail[0] ? detail : cd_err_name(err));
}

static void progress(void *ctx, uint64_t done, uint64_t total)
{
    struct ui *u = ctx;

    if (!u->tty)
        return;
    if (total) {
        int pct = (int)(done * 100 / total), w = pct / 4;
        fprintf(stderr, "\r%s [%.*s%*s] %3d%%", u->cmd, w, "#########################", 25 - w,
                "", pct);
    } else {
        fprintf(stderr, "\r%s: %llu records", u->cmd, (unsigned long long)done);
    }
    u->drawn = true;
}

/* ---- export ---- */

/* A new file, 0600 (an export holds personal data), never one that exists. NULL on failure,
 * with a detail. */
static FILE *create_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;

    if (f == NULL) {
        cd_err_set(CD_ERR_IO, "cannot create %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
    }
    return f;
}

int cd_cli_export(int argc, char **argv)
{
    struct cd_opt opts[] = {
        {"--data", "DIR", "data directory (see candor init)", NULL, NULL},
        {"--purpose", "PURPOSE", "why the data is read (required; it decides which categories "
                                 "are exported and is recorded for every customer)", NULL, NULL},
        {"--customer", "ID[,ID...]", "only these customers (default: every live customer)", NULL,
         NULL},
        {"--out", "FILE", "write to FILE (created 0600, never replaced) instead of standard "
                          "output", NULL, NULL},
        {"--rules", "DIR", "rules directory (RULES/consent/jurisdictions.yaml); default: as "
                           "candor serve finds it", NULL, NULL},
        {NULL, NULL, NULL, NULL, NULL},
    };
    const char *pos[1];
    size_t npos = 0;
    bool help = false;
    struct ui u = {"export", isatty(2) == 1, false};
    struct cd__cli_env env;
    struct cd_policy *policy = NULL;
    struct cd_policy_grant grant;
    struct cd_consent *consent = NULL;
    enum cd_purpose pu;
    json_t *ids = NULL;
    FILE *out = stdout;
    char rules[CD_PATH_MAX], path[CD_PATH_MAX + 32];
    const char *from;
    uint64_t written = 0;
    bool env_open = false;
    enum cd_err err;

    if ((err = cd_cli_parse(argc, argv, opts, pos, 0, &npos, &help)) != CD_OK)
        return cd__cli_fail("export", err);
    if (help) {
        cd_cli_usage("export", "--data DIR --purpose PURPOSE [--customer ID,...] [--out FILE]",
                     "Writes customers with their identities, then each one's interactions, as\n"
                     "NDJSON: one record a line, streamed as it is read (docs/import-export.md).\n"
                     "Personal data is decrypted only as far as PURPOSE may see it (the purpose\n"
                     "policy for the admin role, consent where the purpose needs it), and every\n"
                     "customer's read is recorded in the audit ledger by the actor \"cli\". A\n"
                     "customer the purpose may not read is named on standard error and left out.\n"
                     "'candor import' reads the file back, into this deployment or another.",
                     opts);
        return 0;
    }
    const char *data = cd_cli_get(opts, "--data"), *purpose = cd_cli_get(opts, "--purpose");
    const char *customers = cd_cli_get(opts, "--customer"), *file = cd_cli_get(opts, "--out");
    if (purpose == NULL)
        return cd__cli_fail("export", cd_err_set(CD_ERR_PURPOSE_MISSING,
                                                 "--purpose is required (%s)",
                                                 cd_purpose_list()));
    if (!cd_purpose_parse(cd_str_c(purpose), &pu))
        return cd__cli_fail("export", cd_err_set(CD_ERR_INVALID, "--purpose: unknown purpose "
                                                                 "'%s' (%s)", purpose,
                                                 cd_purpose_list()));
    if ((err = cd_policy_load(NULL, &policy)) != CD_OK ||
        (err = cd_policy_check(policy, CD_ROLE_ADMIN, pu, &grant)) != CD_OK)
        goto out;
    if (customers) {
        if ((ids = json_array()) == NULL) {
            err = CD_ERR_NOMEM;
            goto out;
        }
        for (const char *p = customers; *p;) {
            size_t n = strcspn(p, ",");
            if (n && json_array_append_new(ids, json_stringn(p, n)) != 0) {
                err = CD_ERR_NOMEM;
                goto out;
            }
            p += n + (p[n] == ',');
        }
    }
    if ((err = cd__cli_rules_dir(cd_cli_get(opts, "--rules"), rules, sizeof rules, &from)) !=
        CD_OK)
        goto out;
    if ((err = cd__cli_env_open(data, NULL, NULL, &env)) != CD_OK)
        goto out;
    env_open = true;
    /* Consent decides reads for a purpose that needs it, as it does for the API. */
    snprintf(path, sizeof path, "%s/consent/jurisdictions.yaml", rules);
    if ((err = cd_consent_open(env.store, data, path, &consent)) != CD_OK)
        goto out;
    cd_core_set_hooks(env.core, &(struct cd_core_hooks){.ctx = consent,
                                                        .read_consent = cd_consent_read_check});
    if (file && (out = create_file(file)) == NULL) {
        out = stdout;
        err = CD_ERR_IO;
        goto out;
    }
    const struct cd_actor actor = {"cli", "admin", "candor export (command line)", NULL, purpose,
                                   grant.allowed_when_restricted,
                                   cd_consent_needs_consent(consent, pu)};
    err = cd_transfer_export_run(env.core, &actor, grant.fields, ids, out, report, progress, &u,
                                 &written);
    if (out != stdout && fclose(out) != 0 && err == CD_OK)
        err = cd_err_set(CD_ERR_IO, "cannot write %s", file);
    out = stdout;
    if (u.drawn)
        fputc('\n', stderr);
    if (err == CD_OK)
        fprintf(stderr, "candor export: %llu records (categories %s, purpose %s)\n",
                (unsigned long long)written, cd_policy_categories(grant.fields), purpose);
out:
    if (out != stdout)
        fclose(out);
    cd_consent_close(consent);
    if (env_open)
        cd__cli_env_close(&env);
    cd_policy_free(policy);
    json_decref(ids);
    return err == CD_OK ? 0 : cd__cli_fail("export", err);
}

/* ---- import ---- */

static enum cd_err load_map(const char *path, struct cd_transfer_map **map)
{
    struct cd_buf text = CD_BUF_INIT(1024 * 1024);
    enum cd_err err = cd_buf_read_file(&text, path);

    if (err == CD_OK && (err = cd_transfer_map_parse((struct cd_str){text.p, text.len}, map)) !=
                            CD_OK)
        err = cd_err_set(err, "%s: %s", path, cd_err_detail());
    cd_buf_free(&text);
    return err;
}

int cd_cli_import(int argc, char **argv)
{
    struct cd_opt opts[] = {
        {"--data", "DIR", "data directory (see candor init)", NULL, NULL},
        {"--format", "FORMAT", "ndjson (candor export), csv (with --map) or zendesk (a Zendesk "
                               "JSON export of tickets with their comments)", "ndjson", NULL},
        {"--map", "FILE", "csv: the column mapping (JSON; docs/import-export.md)", NULL, NULL},
        {"--check", NULL, "check every record and report, without storing anything", NULL,
         NULL},
        {NULL, NULL, NULL, NULL, NULL},
    };
    const char *pos[1];
    size_t npos = 0;
    bool help = false;
    struct ui u = {"import", isatty(2) == 1, false};
    struct cd_transfer_map *map = NULL;
    struct cd_transfer_import im = {CD_TRANSFER_NDJSON, NULL, report, progress, &u};
    struct cd_transfer_counts n = {0, 0, 0, 0};
    struct cd__cli_env env;
    FILE *in = NULL;
    uint64_t bad = 0;
    bool env_open = false;
    enum cd_err err;

    if ((err = cd_cli_parse(argc, argv, opts, pos, 1, &npos, &help)) != CD_OK)
        return cd__cli_fail("import", err);
    if (help) {
        cd_cli_usage("import", "--data DIR [--format ndjson|csv|zendesk] [--map FILE] [--check] "
                               "FILE",
                     "Reads customers and interactions from FILE into the deployment in DIR:\n"
                     "every record through the same validation, sealing (under its customer's\n"
                     "own key) and audit ledger as the API, as the actor \"cli\".\n"
                     "\n"
                     "The whole file is checked first: if any record is malformed (each is\n"
                     "named by its line), nothing is stored. Then each record is stored whole or\n"
                     "not at all; a record the deployment refuses (an identity that belongs to\n"
                     "another customer, say) is named by its line and the others go on. An import\n"
                     "is idempotent by the records' ids: running it again stores nothing twice,\n"
                     "so an interrupted or partly refused import is completed by running it again.\n"
                     "Exit status 1 when any record was refused.",
                     opts);
        return 0;
    }
    const char *fmt = cd_cli_get(opts, "--format"), *mapf = cd_cli_get(opts, "--map");
    if (npos != 1)
        return cd__cli_fail("import", cd_err_set(CD_ERR_INVALID, "name the FILE to import"));
    if (strcmp(fmt, "ndjson") == 0)
        im.format = CD_TRANSFER_NDJSON;
    else if (strcmp(fmt, "csv") == 0)
        im.format = CD_TRANSFER_CSV;
    else if (strcmp(fmt, "zendesk") == 0)
        im.format = CD_TRANSFER_ZENDESK;
    else
        return cd__cli_fail("import", cd_err_set(CD_ERR_INVALID, "--format: ndjson, csv or "
                                                                 "zendesk"));
    if ((im.format == CD_TRANSFER_CSV) != (mapf != NULL))
        return cd__cli_fail("import", cd_err_set(CD_ERR_INVALID, "--map FILE goes with --format "
                                                                 "csv, and only with it"));
    if (mapf && (err = load_map(mapf, &map)) != CD_OK)
        goto out;
    im.map = map;
    if ((in = fopen(pos[0], "r")) == NULL) {
        err = cd_err_set(CD_ERR_IO, "cannot open %s", pos[0]);
        goto out;
    }
    if ((err = cd_transfer_check(&im, in, &bad)) != CD_OK)
        goto out;
    if (u.drawn)
        fputc('\n', stderr);
    u.drawn = false;
    if (bad) {
        err = cd_err_set(CD_ERR_INVALID, "%llu malformed record%s in %s: nothing imported",
                         (unsigned long long)bad, bad == 1 ? "" : "s", pos[0]);
        goto out;
    }
    if (cd_cli_get(opts, "--check")) {
        fprintf(stderr, "candor import: %s is well formed\n", pos[0]);
        goto out;
    }
    if ((err = cd__cli_env_open(cd_cli_get(opts, "--data"), NULL, NULL, &env)) != CD_OK)
        goto out;
    env_open = true;
    static const struct cd_actor actor = {"cli", "admin", "candor import (command line)", NULL,
                                          NULL, false, false};
    err = cd_transfer_import_run(env.core, &actor, &im, in, &n);
    if (u.drawn)
        fputc('\n', stderr);
    fprintf(stderr, "candor import: %llu records: %llu created, %llu already there, %llu "
                    "refused\n",
            (unsigned long long)n.lines, (unsigned long long)n.created,
            (unsigned long long)n.existing, (unsigned long long)n.failed);
    if (err == CD_OK && n.failed)
        err = cd_err_set(CD_ERR_INVALID, "%llu record%s refused (named above); run the import "
                                         "again once they are fixed",
                         (unsigned long long)n.failed, n.failed == 1 ? "" : "s");
out:
    if (in)
        fclose(in);
    if (env_open)
        cd__cli_env_close(&env);
    cd_transfer_map_free(map);
    return err == CD_OK ? 0 : cd__cli_fail("import", err);
}
