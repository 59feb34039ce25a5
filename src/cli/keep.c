/* Subcommands: retention (run the rules now, dry or not; print them) and webhooks (the
 * dead-letter list and its replay). */
#include <stdio.h>
#include <string.h>
#include "cli_int.h"
#include "outbox/outbox.h"
#include "retention/retention.h"

static const struct cd_actor cli_actor = {"cli", "admin", "candor command line", NULL, NULL,
                                          true, false};

static void print_json(const json_t *v)
{
    json_dumpf(v, stdout, JSON_INDENT(2));
    printf("\n");
}

/* ---- retention ---- */

int cd_cli_retention(int argc, char **argv)
{
    struct cd_opt opts[] = {
        {"--data", "DIR", "data directory (run)", NULL, NULL},
        {"--rules", "DIR", "rule packs, with retention/rules.yaml (default: see candor(1), FILES)",
         NULL, NULL},
        {"--dry-run", NULL, "list what would go (counts and ids) and change nothing", NULL, NULL},
        {NULL, NULL, NULL, NULL, NULL},
    };
    const char *pos[1], *from = NULL;
    size_t npos = 0;
    bool help = false;
    char rules_dir[CD_PATH_MAX], path[CD_PATH_MAX + 32];
    struct cd_retention_rules *rules = NULL;
    struct cd__cli_env env;
    json_t *out = NULL;
    bool env_open = false;
    enum cd_err err;

    if ((err = cd_cli_parse(argc, argv, opts, pos, 1, &npos, &help)) != CD_OK)
        return cd__cli_fail("retention", err);
    if (help || npos == 0) {
        cd_cli_usage("retention", "run --data DIR [--dry-run] | rules [--rules DIR]",
                     "Applies the retention rules (RULES/retention/rules.yaml, docs/retention.md):\n"
                     "'run' deletes what each rule finds expired — interactions and what was\n"
                     "derived from them, whole customers by crypto-shredding, finished webhook\n"
                     "deliveries and old events — and leaves every customer under a legal hold\n"
                     "alone; it prints a report (counts, and with --dry-run the ids that would go,\n"
                     "never personal data) and records the counts in the audit ledger. 'rules'\n"
                     "checks the rules file and prints it. `candor serve` also runs the rules on a\n"
                     "schedule (--retention-every).",
                     opts);
        return help ? 0 : 2;
    }
    if ((err = cd__cli_rules_dir(cd_cli_get(opts, "--rules"), rules_dir, sizeof rules_dir,
                                 &from)) != CD_OK)
        return cd__cli_fail("retention", err);
    snprintf(path, sizeof path, "%s/retention/rules.yaml", rules_dir);
    if ((err = cd_retention_rules_load(path, &rules)) != CD_OK)
        goto out;
    if (strcmp(pos[0], "rules") == 0) {
        if ((err = cd_retention_rules_json(rules, &out)) == CD_OK)
            print_json(out);
    } else if (strcmp(pos[0], "run") == 0) {
        if ((err = cd__cli_env_open(cd_cli_get(opts, "--data"), NULL, NULL, &env)) != CD_OK)
            goto out;
        env_open = true;
        /* The command line lists every id a dry run finds; the API caps the list. */
        if ((err = cd_retention_run(env.core, rules, &cli_actor,
                                    cd_cli_get(opts, "--dry-run") != NULL, SIZE_MAX, &out)) ==
            CD_OK)
            print_json(out);
    } else {
        err = cd_err_set(CD_ERR_INVALID, "unknown retention command '%s' (run, rules)", pos[0]);
    }
out:
    json_decref(out);
    if (env_open)
        cd__cli_env_close(&env);
    cd_retention_rules_free(rules);
    return err == CD_OK ? 0 : cd__cli_fail("retention", err);
}

/* ---- webhooks ---- */

int cd_cli_webhooks(int argc, char **argv)
{
    struct cd_opt opts[] = {
        {"--data", "DIR", "data directory", NULL, NULL},
        {"--subscription", "ID", "only this subscription's deliveries", NULL, NULL},
        {"--all", NULL, "replay: every dead-lettered delivery (of --subscription)", NULL, NULL},
        {"--limit", "N", "dead-letters: at most this many, newest first", "100", NULL},
        {NULL, NULL, NULL, NULL, NULL},
    };
    static const struct cd_outbox_actor actor = {"cli", "admin", "candor command line", NULL};
    const char *pos[2], *sub = NULL;
    size_t npos = 0;
    bool help = false;
    unsigned long limit = 100;
    struct cd__cli_env env;
    json_t *out = NULL;
    enum cd_err err;

    if ((err = cd_cli_parse(argc, argv, opts, pos, 2, &npos, &help)) != CD_OK)
        return cd__cli_fail("webhooks", err);
    if (help || npos == 0) {
        cd_cli_usage("webhooks", "dead-letters | replay (ID | --all) --data DIR [options]",
                     "The webhook deliveries that ran out of attempts (docs/webhooks.md):\n"
                     "'dead-letters' lists them as JSON, newest first; 'replay ID' puts one back\n"
                     "in the queue with its attempts counted from zero, 'replay --all' every one\n"
                     "(of --subscription). A running `candor serve` sends them: each goes with\n"
                     "its original webhook-id, and before its customer's later events. Each\n"
                     "replay is recorded in the audit ledger.",
                     opts);
        return help ? 0 : 2;
    }
    sub = cd_cli_get(opts, "--subscription");
    if ((err = cd_cli_uint(opts, "--limit", 1, 500, &limit)) != CD_OK)
        return cd__cli_fail("webhooks", err);
    if (sub && !cd_id_valid(cd_str_c(sub), "whs"))
        return cd__cli_fail("webhooks", cd_err_set(CD_ERR_INVALID, "--subscription: not a "
                                                                   "subscription id"));
    if ((err = cd__cli_env_open(cd_cli_get(opts, "--data"), NULL, NULL, &env)) != CD_OK)
        return cd__cli_fail("webhooks", err);
    if (strcmp(pos[0], "dead-letters") == 0) {
        struct cd_outbox_delivery_query q = {cd_str_c(sub), CD_STR("dead"), CD_STR_NULL,
                                             (int)limit};
        if ((err = cd_outbox_deliveries(env.outbox, &q, &out)) == CD_OK)
            print_json(out);
    } else if (strcmp(pos[0], "replay") == 0 && cd_cli_get(opts, "--all")) {
        uint64_t n = 0;
        if (npos > 1)
            err = cd_err_set(CD_ERR_INVALID, "give a delivery id or --all, not both");
        else if ((err = cd_outbox_dead_replay_all(env.outbox, &actor, cd_str_c(sub), &n)) ==
                 CD_OK)
            printf("replayed %llu\n", (unsigned long long)n);
    } else if (strcmp(pos[0], "replay") == 0) {
        if (npos < 2)
            err = cd_err_set(CD_ERR_INVALID, "usage: candor webhooks replay (ID | --all) "
                                             "--data DIR");
        else if ((err = cd_outbox_delivery_replay(env.outbox, &actor, cd_str_c(pos[1]), &out)) ==
                 CD_OK)
            printf("replayed %s\n", pos[1]);
    } else {
        err = cd_err_set(CD_ERR_INVALID, "unknown webhooks command '%s' (dead-letters, replay)",
                         pos[0]);
    }
    json_decref(out);
    cd__cli_env_close(&env);
    return err == CD_OK ? 0 : cd__cli_fail("webhooks", err);
}
