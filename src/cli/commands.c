/* Subcommands: init, serve, token, audit. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "auth/auth.h"
#include "audit/audit.h"
#include "cli_int.h"
#include "crypto/crypto.h"
#include "http/http.h"

/* ---- init ---- */

int cd_cli_init(int argc, char **argv)
{
    struct cd_opt opts[] = {
        {"--data", "DIR", "data directory to create", NULL, NULL},
        {NULL, NULL, NULL, NULL, NULL},
    };
    const char *pos[1];
    size_t npos = 0;
    bool help = false;
    struct cd__cli_env env;
    char path[4200], token[CD_TOKEN_LEN + 2], id[CD_ID_MAX];
    enum cd_err err;
    struct stat st;

    if ((err = cd_cli_parse(argc, argv, opts, pos, 0, &npos, &help)) != CD_OK)
        return cd__cli_fail("init", err);
    if (help) {
        cd_cli_usage("init", "--data DIR",
                     "Creates a data directory: the SQLite database, the master key (wraps every\n"
                     "customer's data key), the signing key, and an admin API token written to\n"
                     "DIR/admin.token (mode 0600).",
                     opts);
        return 0;
    }
    const char *dir = cd_cli_get(opts, "--data");
    if (dir == NULL)
        return cd__cli_fail("init", cd_err_set(CD_ERR_INVALID, "--data DIR is required"));
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return cd__cli_fail("init", cd_err_set(CD_ERR_IO, "cannot create %s: %s", dir,
                                               strerror(errno)));
    snprintf(path, sizeof path, "%s/candor.db", dir);
    if (stat(path, &st) == 0)
        return cd__cli_fail("init", cd_err_set(CD_ERR_CONFLICT,
                                               "%s is already initialised (%s exists)", dir,
                                               path));
    if ((err = cd__cli_env_open(dir, NULL, &env)) != CD_OK)
        return cd__cli_fail("init", err);
    struct cd_crypto_signer signer;
    snprintf(path, sizeof path, "%s/%s", dir, CD_CRYPTO_SIGNING_KEY_FILE);
    if ((err = cd_crypto_signer_load_or_create(path, &signer)) != CD_OK)
        goto out;
    cd_crypto_signer_wipe(&signer);
    if ((err = cd_auth_token_create(env.store, CD_ROLE_ADMIN, CD_STR("admin (candor init)"), "cli",
                                    NULL, token, id)) != CD_OK)
        goto out;
    token[CD_TOKEN_LEN] = '\n';
    token[CD_TOKEN_LEN + 1] = '\0';
    snprintf(path, sizeof path, "%s/admin.token", dir);
    err = cd__cli_write_secret_file(path, token);
    cd_crypto_wipe(token, sizeof token);
    if (err == CD_OK)
        printf("initialised %s\nadmin token (%s) written to %s (mode 0600)\n", dir, id, path);
out:
    cd__cli_env_close(&env);
    return err == CD_OK ? 0 : cd__cli_fail("init", err);
}

/* ---- token ---- */

int cd_cli_token(int argc, char **argv)
{
    struct cd_opt opts[] = {
        {"--data", "DIR", "data directory", NULL, NULL},
        {"--role", "ROLE", "admin, supervisor, agent, compliance or integration", NULL, NULL},
        {"--name", "NAME", "who or what uses the token (shown in access logs)", NULL, NULL},
        {"--format", "FMT", "text or json (list)", "text", NULL},
        {NULL, NULL, NULL, NULL, NULL},
    };
    const char *pos[2];
    size_t npos = 0;
    bool help = false;
    struct cd__cli_env env;
    enum cd_err err;

    if ((err = cd_cli_parse(argc, argv, opts, pos, 2, &npos, &help)) != CD_OK)
        return cd__cli_fail("token", err);
    if (help || npos == 0) {
        cd_cli_usage("token", "create|list|revoke [ID] --data DIR [options]",
                     "Manages API tokens. 'create' prints the new token once (only its hash is\n"
                     "stored); 'list' shows ids, roles and names; 'revoke ID' disables a token.",
                     opts);
        return help ? 0 : 2;
    }
    if ((err = cd__cli_env_open(cd_cli_get(opts, "--data"), NULL, &env)) != CD_OK)
        return cd__cli_fail("token", err);
    if (strcmp(pos[0], "create") == 0) {
        enum cd_role role;
        const char *r = cd_cli_get(opts, "--role"), *name = cd_cli_get(opts, "--name");
        char token[CD_TOKEN_LEN + 1], id[CD_ID_MAX];
        if (r == NULL || !cd_role_parse(cd_str_c(r), &role)) {
            err = cd_err_set(CD_ERR_INVALID, "--role must be admin, supervisor, agent, "
                                             "compliance or integration");
        } else if (name == NULL) {
            err = cd_err_set(CD_ERR_INVALID, "--name NAME is required");
        } else if ((err = cd_auth_token_create(env.store, role, cd_str_c(name), "cli", NULL,
                                               token, id)) == CD_OK) {
            printf("%s\n", token);
            fprintf(stderr, "created %s (%s); the token above is shown only once\n", id, r);
            cd_crypto_wipe(token, sizeof token);
        }
    } else if (strcmp(pos[0], "list") == 0) {
        json_t *items = NULL;
        if ((err = cd_auth_token_list(env.store, &items)) == CD_OK) {
            if (strcmp(cd_cli_get(opts, "--format"), "json") == 0) {
                json_dumpf(items, stdout, JSON_INDENT(2));
                printf("\n");
            } else {
                size_t i;
                json_t *t;
                json_array_foreach(items, i, t)
                {
                    printf("%s  %-11s  %-8s  %s\n", json_string_value(json_object_get(t, "id")),
                           json_string_value(json_object_get(t, "role")),
                           json_is_null(json_object_get(t, "revoked_at")) ? "active" : "revoked",
                           json_string_value(json_object_get(t, "name")));
                }
            }
            json_decref(items);
        }
    } else if (strcmp(pos[0], "revoke") == 0) {
        if (npos < 2)
            err = cd_err_set(CD_ERR_INVALID, "usage: candor token revoke ID --data DIR");
        else if ((err = cd_auth_token_revoke(env.store, cd_str_c(pos[1]), "cli", NULL)) == CD_OK)
            printf("revoked %s\n", pos[1]);
    } else {
        err = cd_err_set(CD_ERR_INVALID, "unknown token command '%s' (create, list, revoke)",
                         pos[0]);
    }
    cd__cli_env_close(&env);
    return err == CD_OK ? 0 : cd__cli_fail("token", err);
}

/* ---- audit ---- */

static void verify_progress(uint64_t done, uint64_t total)
{
    fprintf(stderr, "\rverified %llu of %llu entries", (unsigned long long)done,
            (unsigned long long)total);
}

int cd_cli_audit(int argc, char **argv)
{
    struct cd_opt opts[] = {
        {"--data", "DIR", "data directory", NULL, NULL},
        {NULL, NULL, NULL, NULL, NULL},
    };
    const char *pos[1];
    size_t npos = 0;
    bool help = false;
    struct cd__cli_env env;
    enum cd_err err;
    uint64_t checked = 0, bad = 0;

    if ((err = cd_cli_parse(argc, argv, opts, pos, 1, &npos, &help)) != CD_OK)
        return cd__cli_fail("audit", err);
    if (help || npos == 0) {
        cd_cli_usage("audit", "verify --data DIR",
                     "Checks the audit ledger offline: every entry's hash chain. On a break it\n"
                     "names the first bad entry and exits 1.",
                     opts);
        return help ? 0 : 2;
    }
    if (strcmp(pos[0], "verify") != 0)
        return cd__cli_fail("audit", cd_err_set(CD_ERR_INVALID, "unknown audit command '%s'",
                                                pos[0]));
    if ((err = cd__cli_env_open(cd_cli_get(opts, "--data"), NULL, &env)) != CD_OK)
        return cd__cli_fail("audit", err);
    err = cd_audit_verify(env.store, &checked, &bad, isatty(2) ? verify_progress : NULL);
    if (isatty(2))
        fprintf(stderr, "\n");
    if (err == CD_OK)
        printf("ok: %llu entries verified\n", (unsigned long long)checked);
    else
        fprintf(stderr, "FAILED at entry %llu: %s\n", (unsigned long long)bad, cd_err_detail());
    cd__cli_env_close(&env);
    return err == CD_OK ? 0 : 1;
}

/* ---- serve ---- */

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    stop_requested = sig;
}

int cd_cli_serve(int argc, char **argv)
{
    struct cd_opt opts[] = {
        {"--data", "DIR", "data directory (see candor init)", NULL, NULL},
        {"--listen", "ADDR", "address to listen on", "127.0.0.1:8080", NULL},
        {"--db", "URL", "database URL instead of DIR/candor.db", NULL, NULL},
        {"--demo", NULL, "load deterministic demo data if the database is empty", NULL, NULL},
        {"--workers", "N", "worker threads for requests that touch the database", "64", NULL},
        {"--threads", "N", "HTTP event threads", "2", NULL},
        {"--max-body", "BYTES", "largest request body accepted", "1048576", NULL},
        {"--rules", "DIR", "communication guard rule packs", "rules", NULL},
        {"--policy", "FILE", "purpose policy (default: the built-in config/policy.yaml)", NULL,
         NULL},
        {NULL, NULL, NULL, NULL, NULL},
    };
    const char *pos[1];
    size_t npos = 0;
    bool help = false;
    struct cd__cli_env env;
    struct cd_http *http = NULL;
    struct cd_policy *policy = NULL;
    enum cd_err err;

    if ((err = cd_cli_parse(argc, argv, opts, pos, 0, &npos, &help)) != CD_OK)
        return cd__cli_fail("serve", err);
    if (help) {
        cd_cli_usage("serve", "--data DIR [--listen ADDR] [--demo] [options]",
                     "Serves the HTTP/JSON API until SIGINT or SIGTERM.", opts);
        return 0;
    }
    const char *data = cd_cli_get(opts, "--data");
    if ((err = cd__cli_env_open(data, cd_cli_get(opts, "--db"), &env)) != CD_OK)
        return cd__cli_fail("serve", err);
    if (cd_cli_get(opts, "--demo")) {
        uint64_t t0 = cd_mono_ns();
        if ((err = cd_core_load_demo(env.core, 1200, 24000, 180)) != CD_OK)
            goto out;
        cd_log(CD_LOG_INFO, "demo.ready", "\"ms\":%llu",
               (unsigned long long)((cd_mono_ns() - t0) / 1000000));
    }
    if ((err = cd_policy_load(cd_cli_get(opts, "--policy"), &policy)) != CD_OK)
        goto out;
    struct cd_app app = {.store = env.store,
                         .core = env.core,
                         .policy = policy,
                         .data_dir = data,
                         .rules_dir = cd_cli_get(opts, "--rules")};
    struct cd_http_config cfg = {cd_cli_get(opts, "--listen"),
                                 (unsigned)strtoul(cd_cli_get(opts, "--threads"), NULL, 10),
                                 (unsigned)strtoul(cd_cli_get(opts, "--workers"), NULL, 10),
                                 (size_t)strtoull(cd_cli_get(opts, "--max-body"), NULL, 10)};
    if ((err = cd_http_start(&cfg, &app, &http)) != CD_OK)
        goto out;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    cd_log(CD_LOG_INFO, "serve.listening", "\"port\":%u,\"store\":\"%s\"", cd_http_port(http),
           cd_store_backend(env.store));
    fprintf(stdout, "candor listening on http://%s (admin token: %s/admin.token)\n",
            cfg.listen, data);
    fflush(stdout);
    while (!stop_requested)
        pause();
    cd_log(CD_LOG_INFO, "serve.stopping", "\"signal\":%d", (int)stop_requested);
    cd_http_stop(http);
out:
    cd_policy_free(policy);
    cd__cli_env_close(&env);
    return err == CD_OK ? 0 : cd__cli_fail("serve", err);
}
