/* What this binary is: its version, the commit it was built from, where an installed copy keeps
 * its shared files, and the libraries it runs on. The build writes build_info.h
 * (scripts/build-info.sh); this is the one file that includes it, so a new commit recompiles
 * only this file. */
#include <hs.h>
#include <jansson.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <utf8proc.h>
#include <yaml.h>
#include "build_info.h"
#include "cli_int.h"

const char cd__cli_build_version[] = CD_BUILD_VERSION;
const char cd__cli_build_commit[] = CD_BUILD_COMMIT;
const char cd__cli_build_date[] = CD_BUILD_DATE;
const char cd__cli_build_sharedir[] = CD_BUILD_SHAREDIR;

/* Why here rather than through each module: these are facts about the process (which shared
 * libraries the loader picked), asked once for a bug report, not uses of the libraries. */
void cd__cli_print_version(bool verbose)
{
    printf("candor %s (commit %s, %s)\n", cd__cli_build_version, cd__cli_build_commit,
           cd__cli_build_date);
    if (!verbose)
        return;
    char rules[CD_PATH_MAX];
    const char *from = NULL;
    if (cd__cli_rules_dir(NULL, rules, sizeof rules, &from) == CD_OK)
        printf("rule packs: %s (%s)\n", rules, from);
    else
        printf("rule packs: none found (%s)\n", cd_err_detail());
    printf("libraries (as loaded):\n");
    printf("  SQLite %s\n", sqlite3_libversion());
    printf("  libsodium %s\n", sodium_version_string());
    printf("  %s\n", OpenSSL_version(OPENSSL_VERSION));
    printf("  Hyperscan %s\n", hs_version());
    printf("  libmicrohttpd %s\n", MHD_get_version());
    printf("  jansson %s\n", jansson_version_str());
    printf("  utf8proc %s\n", utf8proc_version());
    printf("  libyaml %s\n", yaml_get_version_string());
}
