/* The list of subcommands, `candor --help`, `candor help` and candor(1). */
#include <stdio.h>
#include <string.h>
#include "cli_int.h"

const struct cd__cli_command cd__cli_commands[] = {
    {"init", cd_cli_init, "create a data directory with keys and an admin token"},
    {"serve", cd_cli_serve, "serve the HTTP/JSON API"},
    {"token", cd_cli_token, "create, list and revoke API tokens"},
    {"staff", cd_cli_staff, "add, list and disable staff accounts for the web console"},
    {"audit", cd_cli_audit, "verify or export the tamper-evident audit ledger"},
    {"guard", cd_cli_guard, "check a message with the communication guard"},
    {"dsar", cd_cli_dsar, "open, list and handle data-subject requests"},
    {"cases", cd_cli_cases, "SLA reports, case lists, ETAs and sweeps, as CSV or JSON"},
    {"export", cd_cli_export, "write customers and their interactions as NDJSON, read for a purpose"},
    {"import", cd_cli_import, "read customers and interactions from NDJSON, CSV or a Zendesk export"},
    {"backup", cd_cli_backup, "copy the database consistently while it is in use"},
    {"retention", cd_cli_retention, "apply the retention rules now, or list what they would delete"},
    {"webhooks", cd_cli_webhooks, "list and replay webhook deliveries that ran out of attempts"},
    {NULL, NULL, NULL},
};

static const char summary[] = "customer experience that respects consent, privacy and fairness";

static const char description[] =
    "Candor puts the ethics of customer service in the path of every interaction and keeps the\n"
    "evidence: purpose-bound access to personal data, a tamper-evident audit ledger, personal\n"
    "data encrypted per customer, a consent engine, and a guard that checks what is sent.\n"
    "\n"
    "Each command has its own options and manual page; 'candor COMMAND --help' prints them.";

/* The FILES section of candor(1): the one place the lookup order is described to users. Both
 * %s are the compiled-in shared-files directory. */
#define FILES_TEXT \
    "A data directory (candor init --data DIR, mode 0700) holds, each with mode 0600,\n"   \
    "candor.db (the SQLite database) or database.url (the URL of its PostgreSQL\n"          \
    "database, candor init --db), master.key, signing.key, receipts.key,\n"                 \
    "unsubscribe.key and admin.token. candor backup copies a SQLite database (pg_dump\n"   \
    "a PostgreSQL one); the keys are backed up apart.\n"                                   \
    "\n" \
    "The guard's rule packs and the consent jurisdictions (RULES/consent/jurisdictions.yaml)\n" \
    "are found in the first of:\n" \
    "  1. --rules DIR\n" \
    "  2. $CANDOR_SHARE_DIR/rules\n" \
    "  3. BIN/../share/candor/rules, BIN being where the candor executable is\n" \
    "  4. the source checkout's rules/, for an executable still in its build/ directory\n" \
    "  5. the compiled-in directory (for this build: %s/rules)\n" \
    "The working directory plays no part. 'candor --version --verbose' shows which was found.\n" \
    "The purpose policy is built in; %s/policy.yaml is a copy to start from for\n"   \
    "'candor serve --policy FILE'."

void cd__cli_usage_all(void)
{
    printf("usage: candor COMMAND [options]\n       candor --version [--verbose]\n\n"
           "Candor: %s.\n\ncommands:\n", summary);
    for (const struct cd__cli_command *c = cd__cli_commands; c->name; c++)
        printf("  %-8s %s\n", c->name, c->about);
    printf("\nRun 'candor COMMAND --help' for a command's options, 'man candor-COMMAND' for its\n"
           "manual page.\n");
}

static void man_candor(void)
{
    char files[2048];

    snprintf(files, sizeof files, FILES_TEXT, cd__cli_build_sharedir, cd__cli_build_sharedir);
    cd__cli_man_header("candor");
    printf(".SH NAME\ncandor \\- ");
    cd__cli_man_str(summary);
    printf("\n.SH SYNOPSIS\n.B candor\n\\fICOMMAND\\fR [\\fIoptions\\fR]\n.br\n"
           ".B candor \\-\\-version\n[\\fB\\-\\-verbose\\fR]\n.SH DESCRIPTION\n");
    cd__cli_man_paragraphs(description);
    printf(".SH COMMANDS\n");
    for (const struct cd__cli_command *c = cd__cli_commands; c->name; c++) {
        printf(".TP\n.B %s\n", c->name);
        cd__cli_man_str(c->about);
        printf("; see \\fBcandor\\-%s\\fR(1).\n", c->name);
    }
    printf(".SH OPTIONS\n.TP\n.B \\-\\-version\nprint the version and the commit this binary was "
           "built from; with \\fB\\-\\-verbose\\fR also the rule packs found and the versions of "
           "the libraries.\n.TP\n.B \\-\\-help\nlist the commands.\n.SH FILES\n");
    cd__cli_man_paragraphs(files);
    cd__cli_man_tail(NULL);
}

const struct cd__cli_command *cd__cli_find(const char *name)
{
    for (const struct cd__cli_command *c = cd__cli_commands; c->name; c++)
        if (strcmp(name, c->name) == 0)
            return c;
    return NULL;
}

/* candor help [COMMAND] | help --man [COMMAND] | help --commands. The last two are for the
 * build, which writes the manual pages with them. */
int cd__cli_help(int argc, char **argv)
{
    const struct cd__cli_command *c;
    char *h[] = {"--help", NULL};

    if (argc == 0) {
        cd__cli_usage_all();
        return 0;
    }
    if (strcmp(argv[0], "--commands") == 0 && argc == 1) {
        for (c = cd__cli_commands; c->name; c++)
            printf("%s\n", c->name);
        return 0;
    }
    bool man = strcmp(argv[0], "--man") == 0;
    if (man && argc == 1) {
        man_candor();
        return 0;
    }
    if (argc != (man ? 2 : 1) || (c = cd__cli_find(argv[man ? 1 : 0])) == NULL) {
        fprintf(stderr, "candor help: unknown command (see candor --help)\n");
        return 2;
    }
    if (man)
        cd__cli_man_begin(c->about);
    return c->run(1, h);
}
