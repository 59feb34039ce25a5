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

struct cd_guard;
struct cd_policy;

/* The in-path checks installed into core (hooks.c). Members are borrowed; any may be NULL.
 * The consent engine plugs in through its three hook functions (same shapes as core's). */
struct cd__cli_hooks {
    struct cd_store *store;
    struct cd_guard *guard;
    const struct cd_policy *policy; /* role x purpose on sends; promotional purposes */
    void *consent;
    enum cd_err (*consent_outbound)(void *ctx, const struct cd_actor *actor,
                                    const char *customer_id, const char *channel,
                                    const char *purpose, struct cd_str topic,
                                    struct cd_str body, const struct cd_core_overrides *ov,
                                    json_t **annotation);
    enum cd_err (*consent_read)(void *ctx, const char *customer_id, const char *purpose);
    void (*consent_changed)(void *ctx, const char *customer_id);
};
void cd__cli_hooks_install(struct cd__cli_hooks *h, struct cd_core *core);

/* Opens the store and keys of a data directory (db_url overrides the SQLite file). */
enum cd_err cd__cli_env_open(const char *data_dir, const char *db_url, struct cd__cli_env *env);
void cd__cli_env_close(struct cd__cli_env *env);
/* Creates a 0600 file holding text; fails if it exists. */
enum cd_err cd__cli_write_secret_file(const char *path, const char *text);
/* Prints "candor CMD: detail" and returns the exit code for err. */
int cd__cli_fail(const char *cmd, enum cd_err err);

#endif
