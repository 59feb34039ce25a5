/* candor — one binary, many subcommands. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "cli.h"
#include "crypto/crypto.h"
#include "guard/guard.h"

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *about;
};

static const struct command commands[] = {
    {"init", cd_cli_init, "create a data directory with keys and an admin token"},
    {"serve", cd_cli_serve, "serve the HTTP/JSON API"},
    {"token", cd_cli_token, "create, list and revoke API tokens"},
    {"audit", cd_cli_audit, "verify or export the tamper-evident audit ledger"},
    {"guard", cd_guard_cli, "check a message with the communication guard"},
    {NULL, NULL, NULL},
};

static void usage(void)
{
    printf("usage: candor COMMAND [options]\n\n"
           "Candor: customer experience that respects consent, privacy and fairness.\n\n"
           "commands:\n");
    for (const struct command *c = commands; c->name; c++)
        printf("  %-8s %s\n", c->name, c->about);
    printf("\nRun 'candor COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
    /* Everything candor creates (database, keys, tokens, exports) is its owner's alone. */
    umask(077);
    cd_json_init();
    if (cd_crypto_init() != CD_OK) {
        fprintf(stderr, "candor: cannot initialise the crypto library\n");
        return 1;
    }
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage();
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("candor 0.1.0\n");
        return 0;
    }
    for (const struct command *c = commands; c->name; c++)
        if (strcmp(argv[1], c->name) == 0) /* guard parses from argv[1], like a main() */
            return c->run == cd_guard_cli ? c->run(argc - 1, argv + 1) : c->run(argc - 2, argv + 2);
    fprintf(stderr, "candor: unknown command '%s' (see candor --help)\n", argv[1]);
    return 2;
}
