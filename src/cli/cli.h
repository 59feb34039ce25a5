/* cli — the `candor` command: subcommands, their options, and their --help and manual pages,
 * both printed from one option table per subcommand.
 *
 * Owns: start-up and shutdown (signals, the drain), the data directory layout (candor.db,
 * master.key, signing.key, admin.token), where the shared files are found (rule packs), what
 * the binary reports about its build, and wiring the modules together for `serve`.
 * Must never: print a secret except the one token a `token create` or `init` was asked for. */
#ifndef CD_CLI_H
#define CD_CLI_H

#include "base/base.h"

struct cd_opt {
    const char *name;    /* "--data" */
    const char *arg;     /* "DIR", or NULL for a flag */
    const char *help;
    const char *deflt;   /* default value, or NULL */
    const char *value;   /* parsed value; "1" for a set flag */
};

/* Parses argv (after the subcommand) against opts; positional arguments go to pos (at most
 * npos). Errors: CD_ERR_INVALID with a detail. --help sets *help. */
enum cd_err cd_cli_parse(int argc, char **argv, struct cd_opt *opts, const char **pos,
                         size_t npos, size_t *npos_out, bool *help);
/* The value of an option (or its default). */
const char *cd_cli_get(const struct cd_opt *opts, const char *name);
/* The value of a numeric option (or its default) within [min, max].
 * Errors: CD_ERR_INVALID naming the option and the range. */
enum cd_err cd_cli_uint(const struct cd_opt *opts, const char *name, unsigned long min,
                        unsigned long max, unsigned long *out);
/* Prints usage for a subcommand from its table: the --help text, or its manual page when
 * `candor help --man CMD` asked for one. */
void cd_cli_usage(const char *cmd, const char *synopsis, const char *about,
                  const struct cd_opt *opts);

int cd_cli_init(int argc, char **argv);
int cd_cli_serve(int argc, char **argv);
int cd_cli_token(int argc, char **argv);
int cd_cli_staff(int argc, char **argv);
int cd_cli_audit(int argc, char **argv);
int cd_cli_backup(int argc, char **argv);
int cd_cli_guard(int argc, char **argv);
int cd_cli_dsar(int argc, char **argv);
int cd_cli_cases(int argc, char **argv);
int cd_cli_retention(int argc, char **argv);
int cd_cli_webhooks(int argc, char **argv);
int cd_cli_export(int argc, char **argv);
int cd_cli_import(int argc, char **argv);

#endif
