/* candor — one binary, many subcommands (listed in help.c). */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "cli_int.h"
#include "crypto/crypto.h"

int main(int argc, char **argv)
{
    const struct cd__cli_command *c;

    /* Everything candor creates (database, keys, tokens, exports) is its owner's alone. */
    umask(077);
    cd_json_init();
    if (cd_crypto_init() != CD_OK) {
        fprintf(stderr, "candor: cannot initialise the crypto library\n");
        return 1;
    }
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        cd__cli_usage_all();
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "help") == 0)
        return cd__cli_help(argc - 2, argv + 2);
    if (strcmp(argv[1], "--version") == 0) {
        bool verbose = argc == 3 && strcmp(argv[2], "--verbose") == 0;
        if (argc > 3 || (argc == 3 && !verbose)) {
            fprintf(stderr, "candor: --version takes only --verbose\n");
            return 2;
        }
        cd__cli_print_version(verbose);
        return 0;
    }
    if ((c = cd__cli_find(argv[1])) != NULL)
        return c->run(argc - 2, argv + 2);
    fprintf(stderr, "candor: unknown command '%s' (see candor --help)\n", argv[1]);
    return 2;
}
