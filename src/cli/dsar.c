/* `candor dsar`: data-subject requests on a data directory, for a privacy officer at a shell
 * (the same calls the API makes, recorded in the ledger as the "cli" actor). */
#include <stdio.h>
#include <string.h>
#include "calendar/calendar.h"
#include "cli_int.h"
#include "consent/consent.h"
#include "dsar/dsar.h"
#include "outbox/outbox.h"
#include "retention/retention.h"

/* The CLI acts for the operator who runs it on the data directory: the privacy office. */
static const struct cd_actor cli_actor = {"cli", "admin", "candor dsar (command line)", NULL,
                                          "legal_obligation", true, false};

static void print_request(const json_t *r)
{
    const char *due = json_string_value(json_object_get(r, "due_at"));
    bool overdue = json_is_true(json_object_get(r, "overdue"));
    bool soon = json_is_true(json_object_get(r, "due_soon"));

    printf("%s  %-20s  %-11s  %-8s  due %s%s  %s\n", json_string_value(json_object_get(r, "id")),
           json_string_value(json_object_get(r, "type")),
           json_string_value(json_object_get(r, "state")),
           json_string_value(json_object_get(r, "regime")), due ? due : "-",
           overdue ? " OVERDUE" : soon ? " (due soon)" : "",
           json_string_value(json_object_get(r, "customer_id")));
}

static void print_json(const json_t *v)
{
    json_dumpf(v, stdout, JSON_INDENT(2));
    printf("\n");
}

/* --body-like options into a JSON object: each (option, member) pair given is copied. */
static enum cd_err body_from(const struct cd_opt *opts, const char *const (*map)[2], json_t **out)
{
    json_t *b = json_object();

    for (size_t i = 0; b && map[i][0]; i++) {
        const char *v = cd_cli_get(opts, map[i][0]);
        if (v && json_object_set_new(b, map[i][1], json_string(v)) != 0) {
            json_decref(b);
            b = NULL;
        }
    }
    *out = b;
    return b ? CD_OK : CD_ERR_NOMEM;
}

static enum cd_err run(const char *cmd, const char **pos, size_t npos, const struct cd_opt *opts,
                       struct cd_dsar *d, bool json)
{
    static const char *const (open_map[])[2] = {{"--customer", "customer_id"},
                                                {"--type", "type"},
                                                {"--received-at", "received_at"},
                                                {"--jurisdiction", "jurisdiction"},
                                                {"--interaction", "interaction_id"},
                                                {NULL, NULL}};
    static const char *const (move_map[])[2] = {
        {"--state", "state"}, {"--reason", "reason"}, {"--explanation", "explanation"},
        {NULL, NULL}};
    json_t *body = NULL, *out = NULL;
    enum cd_err err;

    if (strcmp(cmd, "list") == 0) {
        struct cd_dsar_query q = {cd_str_c(cd_cli_get(opts, "--customer")),
                                  cd_str_c(cd_cli_get(opts, "--state")),
                                  cd_str_c(cd_cli_get(opts, "--type")),
                                  cd_str_c(cd_cli_get(opts, "--due")), CD_STR_NULL, 200};
        if ((err = cd_dsar_list(d, &q, &out)) != CD_OK)
            return err;
        if (json)
            print_json(out);
        else
            for (size_t i = 0; i < json_array_size(json_object_get(out, "items")); i++)
                print_request(json_array_get(json_object_get(out, "items"), i));
        json_decref(out);
        return CD_OK;
    }
    if (strcmp(cmd, "open") == 0) {
        if ((err = body_from(opts, open_map, &body)) == CD_OK)
            err = cd_dsar_create(d, &cli_actor, body,
                                 cd_cli_get(opts, "--interaction") ? CD_DSAR_INTAKE_INTERACTION
                                                                   : CD_DSAR_INTAKE_API,
                                 &out);
    } else if (npos < 2) {
        return cd_err_set(CD_ERR_INVALID, "usage: candor dsar %s ID --data DIR", cmd);
    } else if (strcmp(cmd, "show") == 0) {
        /* Ids, states and deadlines; what the customer wrote is read through the API, under
         * a purpose and recorded. */
        err = cd_dsar_get(d, cd_str_c(pos[1]), NULL, false, &out);
    } else if (strcmp(cmd, "move") == 0) {
        if ((err = body_from(opts, move_map, &body)) == CD_OK)
            err = cd_dsar_transition(d, &cli_actor, cd_str_c(pos[1]), body, &out);
    } else if (strcmp(cmd, "extend") == 0) {
        static const char *const (ext_map[])[2] = {
            {"--reason", "reason"}, {"--explanation", "explanation"}, {NULL, NULL}};
        if ((err = body_from(opts, ext_map, &body)) == CD_OK)
            err = cd_dsar_extend(d, &cli_actor, cd_str_c(pos[1]), body, &out);
    } else if (strcmp(cmd, "acknowledge") == 0) {
        err = cd_dsar_acknowledge(d, &cli_actor, cd_str_c(pos[1]), &out);
    } else if (strcmp(cmd, "fulfil") == 0) {
        json_t *holds = NULL;
        json_error_t jerr;
        const char *text = cd_cli_get(opts, "--body");
        if ((body = json_loads(text ? text : "{}", 0, &jerr)) == NULL)
            return cd_err_set(CD_ERR_INVALID, "--body is not JSON: %s", jerr.text);
        err = cd_dsar_fulfil(d, &cli_actor, cd_str_c(pos[1]), body, &out, &holds);
        /* The holds name the matters that keep the data: the operator needs them to answer. */
        for (size_t i = 0; i < json_array_size(holds); i++) {
            json_t *h = json_array_get(holds, i);
            fprintf(stderr, "hold %s: %s (%s)\n", json_string_value(json_object_get(h, "id")),
                    json_string_value(json_object_get(h, "reason")),
                    json_string_value(json_object_get(h, "legal_basis")));
        }
        json_decref(holds);
    } else {
        return cd_err_set(CD_ERR_INVALID, "unknown dsar command '%s' (list, open, show, move, "
                                          "extend, acknowledge, fulfil)", cmd);
    }
    json_decref(body);
    if (err == CD_OK) {
        if (json)
            print_json(out);
        else
            print_request(out);
    }
    json_decref(out);
    return err;
}

int cd_cli_dsar(int argc, char **argv)
{
    struct cd_opt opts[] = {
        {"--data", "DIR", "data directory", NULL, NULL},
        {"--rules", "DIR", "rules directory (RULES/dsar/regimes.yaml, RULES/calendars); default: "
                           "as candor serve finds it", NULL, NULL},
        {"--customer", "ID", "open: the customer; list: only this customer's requests", NULL,
         NULL},
        {"--type", "TYPE", "open, list: access, portability, rectification, erasure, "
                           "restriction, objection, opt_out_sale_sharing, limit_sensitive_use",
         NULL, NULL},
        {"--received-at", "TIME", "open: when the request was received (RFC 3339; default now)",
         NULL, NULL},
        {"--jurisdiction", "CODE", "open: the law that applies when not the customer's (EU, "
                                   "US-CA, ...)", NULL, NULL},
        {"--interaction", "ID", "open: the inbound interaction that carried the request (its "
                                "time starts the clock)", NULL, NULL},
        {"--state", "STATE", "move: verifying, in_progress, completed, refused or withdrawn; "
                             "list: a state, open or closed", NULL, NULL},
        {"--reason", "CODE", "move to refused, extend: why (see docs/dsar.md)", NULL, NULL},
        {"--explanation", "TEXT", "move to refused, extend: what the customer is told", NULL,
         NULL},
        {"--due", "WHICH", "list: overdue or due_soon", NULL, NULL},
        {"--body", "JSON", "fulfil: what the request needs ({\"changes\": {...}} to rectify, "
                           "{\"purposes\": [...]} to object or opt out; default {})", NULL, NULL},
        {"--format", "FMT", "text or json", "text", NULL},
        {NULL, NULL, NULL, NULL, NULL},
    };
    const char *pos[2];
    size_t npos = 0;
    bool help = false;
    char rules[CD_PATH_MAX], path[CD_PATH_MAX + 32];
    const char *from = NULL;
    struct cd__cli_env env;
    struct cd_calendars *cals = NULL;
    struct cd_dsar_rules *dr = NULL;
    struct cd_dsar *d = NULL;
    struct cd_consent *consent = NULL;
    enum cd_err err;

    if ((err = cd_cli_parse(argc, argv, opts, pos, 2, &npos, &help)) != CD_OK)
        return cd__cli_fail("dsar", err);
    if (help || npos == 0) {
        cd_cli_usage("dsar",
                     "list|open|show|move|extend|acknowledge|fulfil [ID] --data DIR [options]",
                     "Data-subject requests (docs/dsar.md). 'list' shows requests (--due\n"
                     "overdue or due_soon for the deadline lists); 'open' files one; 'show ID'\n"
                     "prints one with its history; 'move ID --state S' changes its state;\n"
                     "'extend ID --reason R --explanation TEXT' extends its deadline once;\n"
                     "'acknowledge ID' records that receipt was confirmed; 'fulfil ID' does\n"
                     "what a request in progress asks (erasure, restriction, rectification,\n"
                     "objection, opt-outs) and completes it. Every change is in the audit\n"
                     "ledger, made by the actor \"cli\".",
                     opts);
        return help ? 0 : 2;
    }
    if ((err = cd__cli_rules_dir(cd_cli_get(opts, "--rules"), rules, sizeof rules, &from)) !=
        CD_OK)
        return cd__cli_fail("dsar", err);
    snprintf(path, sizeof path, "%s/calendars", rules);
    if ((err = cd_calendars_new(&cals)) != CD_OK ||
        (err = cd_calendars_load_dir(cals, path)) != CD_OK)
        goto out_cals;
    snprintf(path, sizeof path, "%s/dsar/regimes.yaml", rules);
    if ((err = cd_dsar_rules_load(cals, path, &dr)) != CD_OK)
        goto out_cals;
    if ((err = cd__cli_env_open(cd_cli_get(opts, "--data"), NULL, NULL, &env)) != CD_OK) {
        cd_dsar_rules_free(dr);
        goto out_cals;
    }
    /* Fulfilling an objection or an opt-out records consent withdrawals: the consent engine
     * (the receipts' key is in the data directory) is opened for that command alone. */
    snprintf(path, sizeof path, "%s/consent/jurisdictions.yaml", rules);
    if ((err = cd_dsar_open(env.store, env.core, dr, &d)) == CD_OK &&
        (strcmp(pos[0], "fulfil") != 0 ||
         (err = cd_consent_open(env.store, cd_cli_get(opts, "--data"), path, &consent)) ==
             CD_OK)) {
        cd_dsar_set_links(d, &(struct cd_dsar_links){.enqueue = cd_outbox_enqueue,
                                                     .holds_active = cd_retention_holds_active,
                                                     .notices_attach = cd_outbox_notices_attach,
                                                     .notices = cd_outbox_notices,
                                                     .consent = consent});
        err = run(pos[0], pos, npos, opts, d, strcmp(cd_cli_get(opts, "--format"), "json") == 0);
    }
    cd_dsar_close(d);
    cd_consent_close(consent);
    cd__cli_env_close(&env);
out_cals:
    cd_calendars_free(cals);
    return err == CD_OK ? 0 : cd__cli_fail("dsar", err);
}
