/* Subcommand: staff (accounts for the web console). */
#include <stdio.h>
#include <string.h>
#include "cli_int.h"
#include "crypto/crypto.h"
#include "staff/staff.h"

/* Reads the password from the first line of standard input, never from the command line (where
 * other users and the shell's history would see it). */
static enum cd_err read_password(char *out, size_t n, size_t *len)
{
    if (fgets(out, (int)n, stdin) == NULL)
        return cd_err_set(CD_ERR_INVALID, "give the password on standard input (one line)");
    *len = strcspn(out, "\r\n");
    if (out[*len] == '\0' && *len == n - 1)
        return cd_err_set(CD_ERR_INVALID, "the password is longer than %d characters",
                          CD_STAFF_PASSWORD_MAX);
    out[*len] = '\0';
    return CD_OK;
}

static void print_account(const json_t *a)
{
    const char *locked = json_string_value(json_object_get(a, "locked_until"));

    printf("%s  %-20s  %-11s  %-8s  %s%s%s\n", json_string_value(json_object_get(a, "id")),
           json_string_value(json_object_get(a, "username")),
           json_string_value(json_object_get(a, "role")),
           json_string_value(json_object_get(a, "status")),
           json_string_value(json_object_get(a, "name")), locked ? "  locked until " : "",
           locked ? locked : "");
}

int cd_cli_staff(int argc, char **argv)
{
    struct cd_opt opts[] = {
        {"--data", "DIR", "data directory", NULL, NULL},
        {"--role", "ROLE", "add: admin, supervisor, agent, compliance or integration", NULL, NULL},
        {"--name", "NAME", "add: the person's name as the console and the ledger show it", NULL,
         NULL},
        {"--format", "FMT", "text or json (list)", "text", NULL},
        {NULL, NULL, NULL, NULL, NULL},
    };
    const char *pos[2];
    size_t npos = 0;
    bool help = false;
    struct cd__cli_env env;
    struct cd_staff_actor actor = {"cli", NULL, NULL, NULL};
    enum cd_err err;

    if ((err = cd_cli_parse(argc, argv, opts, pos, 2, &npos, &help)) != CD_OK)
        return cd__cli_fail("staff", err);
    if (help || npos == 0) {
        cd_cli_usage("staff",
                     "add|list|disable|sign-out|reset-password [USERNAME] --data DIR [options]",
                     "Manages the web console's staff accounts. 'add USERNAME' reads the\n"
                     "password (at least 12 characters) from the first line of standard input\n"
                     "and keeps only its Argon2id hash; 'list' shows accounts and their live\n"
                     "sessions; 'disable USERNAME' (or id) stops the account and ends its\n"
                     "sessions; 'sign-out USERNAME' ends its sessions only; 'reset-password\n"
                     "USERNAME' reads a temporary password from standard input, ends the\n"
                     "account's sessions and lifts its lockout; the person must choose their\n"
                     "own password when they next sign in.",
                     opts);
        return help ? 0 : 2;
    }
    if (strcmp(pos[0], "list") != 0 && npos < 2) {
        err = cd_err_set(CD_ERR_INVALID, "usage: candor staff %s USERNAME --data DIR", pos[0]);
        return cd__cli_fail("staff", err);
    }
    if ((err = cd__cli_env_open(cd_cli_get(opts, "--data"), NULL, NULL, &env)) != CD_OK)
        return cd__cli_fail("staff", err);
    if (strcmp(pos[0], "add") == 0) {
        enum cd_role role;
        const char *r = cd_cli_get(opts, "--role"), *name = cd_cli_get(opts, "--name");
        char pw[CD_STAFF_PASSWORD_MAX + 2];
        size_t pwlen = 0;
        json_t *a = NULL;
        if (r == NULL || !cd_role_parse(cd_str_c(r), &role))
            err = cd_err_set(CD_ERR_INVALID, "--role must be admin, supervisor, agent, "
                                             "compliance or integration");
        else if (name == NULL)
            err = cd_err_set(CD_ERR_INVALID, "--name NAME is required");
        else if ((err = read_password(pw, sizeof pw, &pwlen)) == CD_OK &&
                 (err = cd_staff_add(env.store, cd_str_c(pos[1]), cd_str_c(name), role,
                                     (struct cd_str){pw, pwlen}, &actor, &a)) == CD_OK) {
            print_account(a);
            json_decref(a);
        }
        cd_crypto_wipe(pw, sizeof pw);
    } else if (strcmp(pos[0], "reset-password") == 0) {
        char pw[CD_STAFF_PASSWORD_MAX + 2];
        size_t pwlen = 0;
        json_t *a = NULL;
        if ((err = read_password(pw, sizeof pw, &pwlen)) == CD_OK &&
            (err = cd_staff_password_reset(env.store, cd_str_c(pos[1]),
                                           (struct cd_str){pw, pwlen}, &actor, &a)) == CD_OK) {
            print_account(a);
            json_decref(a);
        }
        cd_crypto_wipe(pw, sizeof pw);
    } else if (strcmp(pos[0], "list") == 0) {
        json_t *items = NULL, *a;
        size_t i;
        if ((err = cd_staff_list(env.store, &items)) == CD_OK) {
            if (strcmp(cd_cli_get(opts, "--format"), "json") == 0) {
                json_dumpf(items, stdout, JSON_INDENT(2));
                printf("\n");
            } else {
                json_array_foreach(items, i, a) print_account(a);
            }
            json_decref(items);
        }
    } else if (strcmp(pos[0], "disable") == 0) {
        json_t *a = NULL;
        if ((err = cd_staff_disable(env.store, cd_str_c(pos[1]), &actor, &a)) == CD_OK) {
            print_account(a);
            json_decref(a);
        }
    } else if (strcmp(pos[0], "sign-out") == 0) {
        int64_t ended = 0;
        if ((err = cd_staff_sessions_revoke(env.store, cd_str_c(pos[1]), &actor, &ended)) ==
            CD_OK)
            printf("ended %lld session%s of %s\n", (long long)ended, ended == 1 ? "" : "s",
                   pos[1]);
    } else {
        err = cd_err_set(CD_ERR_INVALID,
                         "unknown staff command '%s' (add, list, disable, sign-out, "
                         "reset-password)",
                         pos[0]);
    }
    cd__cli_env_close(&env);
    return err == CD_OK ? 0 : cd__cli_fail("staff", err);
}
