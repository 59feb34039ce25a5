/* Inside the cli module only. */
#ifndef CD_CLI_INT_H
#define CD_CLI_INT_H

#include "cli.h"
#include "core/core.h"
#include "store/store.h"

struct cd__cli_env {
    struct cd_store *store;
    struct cd_core *core;
    uint8_t master[32];
};

/* Opens the store and keys of a data directory (db_url overrides the SQLite file). */
enum cd_err cd__cli_env_open(const char *data_dir, const char *db_url, struct cd__cli_env *env);
void cd__cli_env_close(struct cd__cli_env *env);
/* Creates a 0600 file holding text; fails if it exists. */
enum cd_err cd__cli_write_secret_file(const char *path, const char *text);
/* Prints "candor CMD: detail" and returns the exit code for err. */
int cd__cli_fail(const char *cmd, enum cd_err err);

#endif
