/* `candor cases`: the SLA report and case lists as CSV or JSON, an ETA, and a sweep now, on a
 * data directory (also while the server runs: SQLite in WAL mode lets both read and write).
 * Exports carry reference data only (ids, types, statuses, teams, deadlines): never a case's
 * sealed values, so customer value (spend, tier) is in no export, whatever blind mode says. */
#include <stdio.h>
#include <string.h>
#include "calendar/calendar.h"
#include "cases/cases.h"
#include "cli_int.h"

struct cases_env {
    struct cd__cli_env env;
    bool env_open;
    struct cd_calendars *cals;
    struct cd_cases *cs;
};

static enum cd_err cases_env_open(const struct cd_opt *opts, struct cases_env *e)
{
    char rules[CD_PATH_MAX], dir[CD_PATH_MAX + 16];
    const char *from = NULL;
    enum cd_err err;

    memset(e, 0, sizeof *e);
    if ((err = cd__cli_rules_dir(cd_cli_get(opts, "--rules"), rules, sizeof rules, &from)) !=
        CD_OK)
        return err;
    snprintf(dir, sizeof dir, "%s/calendars", rules);
    if ((err = cd__cli_env_open(cd_cli_get(opts, "--data"), NULL, NULL, &e->env)) != CD_OK)
        return err;
    e->env_open = true;
    if ((err = cd_calendars_new(&e->cals)) != CD_OK ||
        (err = cd_calendars_load_dir(e->cals, dir)) != CD_OK)
        return err;
    return cd_cases_open(e->env.store, e->env.core, e->cals, rules, &e->cs);
}

static void cases_env_close(struct cases_env *e)
{
    cd_cases_close(e->cs);
    cd_calendars_free(e->cals);
    if (e->env_open)
        cd__cli_env_close(&e->env);
}

/* ---- CSV (RFC 4180) ---- */

static void csv_field(const char *s, bool last)
{
    if (s == NULL)
        s = "";
    if (strpbrk(s, ",\"\r\n") == NULL) {
        fputs(s, stdout);
    } else {
        putchar('"');
        for (; *s; s++) {
            if (*s == '"')
                putchar('"');
            putchar(*s);
        }
        putchar('"');
    }
    fputs(last ? "\r\n" : ",", stdout);
}

/* A JSON value as a CSV field: strings as they are, numbers as written, null empty. */
static void csv_json(const json_t *v, bool last)
{
    char num[64];

    num[0] = '\0';
    if (json_is_string(v)) {
        csv_field(json_string_value(v), last);
        return;
    }
    if (json_is_integer(v))
        snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(num, sizeof num, "%.3f", json_real_value(v));
    else if (json_is_boolean(v))
        snprintf(num, sizeof num, "%s", json_is_true(v) ? "true" : "false");
    csv_field(num, last);
}

/* A column: a path of up to three keys into each row. */
struct column {
    const char *name;
    const char *path[3];
};

static const json_t *at(const json_t *row, const char *const path[3])
{
    const json_t *v = row;

    for (int i = 0; i < 3 && path[i] && v; i++)
        v = json_object_get(v, path[i]);
    return v;
}

static void csv_rows(const json_t *rows, const struct column *cols, size_t ncols)
{
    for (size_t c = 0; c < ncols; c++)
        csv_field(cols[c].name, c + 1 == ncols);
    for (size_t i = 0; i < json_array_size(rows); i++)
        for (size_t c = 0; c < ncols; c++)
            csv_json(at(json_array_get(rows, i), cols[c].path), c + 1 == ncols);
}

static const struct column report_cols[] = {
    {"period_start", {"period_start"}},
    {"group", {"group"}},
    {"opened", {"opened"}},
    {"resolved", {"resolved"}},
    {"open", {"open"}},
    {"first_response_measured", {"first_response", "measured"}},
    {"first_response_met", {"first_response", "met"}},
    {"first_response_breached", {"first_response", "breached"}},
    {"first_response_pending", {"first_response", "pending"}},
    {"first_response_met_pct", {"first_response", "met_pct"}},
    {"first_response_p50_seconds", {"first_response", "p50_seconds"}},
    {"first_response_p90_seconds", {"first_response", "p90_seconds"}},
    {"next_response_breaches", {"next_response", "breaches"}},
    {"resolution_measured", {"resolution", "measured"}},
    {"resolution_met", {"resolution", "met"}},
    {"resolution_breached", {"resolution", "breached"}},
    {"resolution_pending", {"resolution", "pending"}},
    {"resolution_met_pct", {"resolution", "met_pct"}},
    {"resolution_p50_seconds", {"resolution", "p50_seconds"}},
    {"resolution_p90_seconds", {"resolution", "p90_seconds"}},
};

/* Reference fields only: what an export of cases may carry. */
static const struct column list_cols[] = {
    {"id", {"id"}},
    {"customer_id", {"customer_id"}},
    {"type", {"type"}},
    {"status", {"status"}},
    {"priority", {"priority"}},
    {"impact", {"impact"}},
    {"channel", {"channel"}},
    {"team", {"team"}},
    {"assignee", {"assignee"}},
    {"created_at", {"created_at"}},
    {"sla_policy", {"sla", "policy"}},
    {"first_response_due", {"sla", "first_response", "due_at"}},
    {"first_response_at", {"sla", "first_response", "met_at"}},
    {"first_response_state", {"sla", "first_response", "state"}},
    {"resolution_due", {"sla", "resolution", "due_at"}},
    {"resolved_at", {"resolved_at"}},
    {"resolution_state", {"sla", "resolution", "state"}},
    {"remedy", {"remedy", "type"}},
    {"remedy_amount_minor", {"remedy", "amount_minor"}},
    {"remedy_currency", {"remedy", "currency"}},
    {"outcome", {"outcome"}},
};

static enum cd_err print_json(const json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2));

    if (s == NULL)
        return CD_ERR_NOMEM;
    puts(s);
    cd_free(s);
    return CD_OK;
}

static enum cd_err time_opt(const struct cd_opt *opts, const char *name, int64_t *out)
{
    const char *v = cd_cli_get(opts, name);
    enum cd_err err;

    if (v == NULL)
        return CD_OK;
    if ((err = cd_time_parse(cd_str_c(v), out)) != CD_OK)
        return cd_err_set(CD_ERR_INVALID, "%s must be an RFC 3339 time", name);
    return CD_OK;
}

static enum cd_err cmd_report(struct cases_env *e, const struct cd_opt *opts, bool csv)
{
    struct cd_cases_report_query q = {0, 0, cd_cli_get(opts, "--period"),
                                      cd_cli_get(opts, "--time-zone"),
                                      cd_cli_get(opts, "--group")};
    json_t *r = NULL;
    enum cd_err err;

    if ((err = time_opt(opts, "--from", &q.from_ms)) != CD_OK ||
        (err = time_opt(opts, "--to", &q.to_ms)) != CD_OK)
        return err;
    if (q.to_ms == 0)
        q.to_ms = cd_now_ms();
    if (q.from_ms == 0)
        q.from_ms = q.to_ms - 365LL * 86400 * 1000;
    if (q.group && strcmp(q.group, "none") == 0)
        q.group = NULL;
    if ((err = cd_cases_sla_report(e->cs, &q, &r)) != CD_OK)
        return err;
    if (csv)
        csv_rows(json_object_get(r, "rows"), report_cols,
                 sizeof report_cols / sizeof report_cols[0]);
    else
        err = print_json(r);
    json_decref(r);
    return err;
}

static enum cd_err cmd_list(struct cases_env *e, const struct cd_opt *opts, bool csv)
{
    static const struct cd_actor cli = {"cli", "admin", "candor cases", NULL, NULL, false, false};
    const struct cd_cases_view v = {CD_FIELDS_REFERENCE, false};
    struct cd_cases_query q = {.status = cd_str_c(cd_cli_get(opts, "--status")),
                               .team = cd_str_c(cd_cli_get(opts, "--team")),
                               .type = cd_str_c(cd_cli_get(opts, "--type")),
                               .sla = cd_str_c(cd_cli_get(opts, "--sla")),
                               .limit = 200};
    json_t *all = json_array(), *page = NULL;
    unsigned long max = 0;
    enum cd_err err;

    if (all == NULL)
        return CD_ERR_NOMEM;
    if ((err = cd_cli_uint(opts, "--limit", 1, 10000000, &max)) != CD_OK ||
        (err = time_opt(opts, "--from", &q.created_from)) != CD_OK ||
        (err = time_opt(opts, "--to", &q.created_to)) != CD_OK)
        goto out;
    /* Page by page, in the list's order, up to --limit cases. */
    char cursor[160] = "";
    for (;;) {
        q.cursor = cd_str_c(cursor[0] ? cursor : NULL);
        if (json_array_size(all) + 200 > max)
            q.limit = (int)(max - json_array_size(all));
        if (q.limit <= 0 || (err = cd_cases_list(e->cs, &cli, &q, &v, &page)) != CD_OK)
            break;
        json_array_extend(all, json_object_get(page, "items"));
        const char *next = json_string_value(json_object_get(page, "next_cursor"));
        snprintf(cursor, sizeof cursor, "%s", next ? next : "");
        json_decref(page);
        page = NULL;
        if (!next)
            break;
    }
    if (err != CD_OK)
        goto out;
    if (csv)
        csv_rows(all, list_cols, sizeof list_cols / sizeof list_cols[0]);
    else
        err = print_json(all);
out:
    json_decref(all);
    return err;
}

int cd_cli_cases(int argc, char **argv)
{
    struct cd_opt opts[] = {
        {"--data", "DIR", "data directory", NULL, NULL},
        {"--rules", "DIR", "rules directory with cases/ and sla/ (default: see candor(1), FILES)",
         NULL, NULL},
        {"--format", "FMT", "csv or json", "csv", NULL},
        {"--from", "TIME", "report: cases opened from this RFC 3339 time; list: created from "
                           "(default: a year before --to)", NULL, NULL},
        {"--to", "TIME", "... until this time, excluded (default: now)", NULL, NULL},
        {"--period", "P", "report: day, week, month or all", "month", NULL},
        {"--group", "G", "report: team, type, channel, priority or none", "team", NULL},
        {"--time-zone", "ZONE", "report: the IANA zone periods are cut in", "UTC", NULL},
        {"--status", "S", "list: only cases in this status", NULL, NULL},
        {"--team", "T", "list: only this team's cases", NULL, NULL},
        {"--type", "T", "list: only cases of this type", NULL, NULL},
        {"--sla", "S", "list: due_soon or breached", NULL, NULL},
        {"--limit", "N", "list: at most N cases", "100000", NULL},
        {NULL, NULL, NULL, NULL, NULL},
    };
    const char *pos[2];
    size_t npos = 0;
    bool help = false;
    struct cases_env e;
    enum cd_err err;

    if ((err = cd_cli_parse(argc, argv, opts, pos, 2, &npos, &help)) != CD_OK)
        return cd__cli_fail("cases", err);
    if (help || npos == 0) {
        cd_cli_usage(
            "cases", "report|list|eta ID|sweep --data DIR [options]",
            "report  the SLA report: per period and group, cases opened, resolved and open, and\n"
            "        for first response and resolution the cases measured, met, breached and\n"
            "        pending, the share met and the 50th and 90th percentiles of the times\n"
            "        (elapsed), and next-response breaches.\n"
            "list    cases with their deadlines, remedies and outcomes (reference data only:\n"
            "        no sealed values, so no customer value in any export).\n"
            "eta ID  when case ID is likely to be resolved, from the history of similar cases\n"
            "        (JSON; no time is given when the history is too small).\n"
            "sweep   marks now the breaches of deadlines no one met and closes resolved cases\n"
            "        past their reopen window (the server does this every --sla-sweep ms).\n"
            "CSV is RFC 4180 with a header row. See docs/cases.md.",
            opts);
        return help ? 0 : 2;
    }
    const char *fmt = cd_cli_get(opts, "--format");
    if (strcmp(fmt, "csv") != 0 && strcmp(fmt, "json") != 0)
        return cd__cli_fail("cases", cd_err_set(CD_ERR_INVALID, "--format is csv or json"));
    bool csv = strcmp(fmt, "csv") == 0;
    if (strcmp(pos[0], "report") && strcmp(pos[0], "list") && strcmp(pos[0], "eta") &&
        strcmp(pos[0], "sweep"))
        return cd__cli_fail("cases", cd_err_set(CD_ERR_INVALID, "unknown cases command '%s' "
                                                                "(report, list, eta, sweep)",
                                                pos[0]));
    if (strcmp(pos[0], "eta") == 0 && npos < 2)
        return cd__cli_fail("cases", cd_err_set(CD_ERR_INVALID, "eta needs a case id"));
    if ((err = cases_env_open(opts, &e)) != CD_OK)
        goto out;
    if (strcmp(pos[0], "report") == 0) {
        err = cmd_report(&e, opts, csv);
    } else if (strcmp(pos[0], "list") == 0) {
        err = cmd_list(&e, opts, csv);
    } else if (strcmp(pos[0], "eta") == 0) {
        json_t *o = NULL;
        if ((err = cd_cases_eta(e.cs, cd_str_c(pos[1]), cd_now_ms(), &o)) == CD_OK)
            err = print_json(o);
        json_decref(o);
    } else {
        size_t n = 0;
        if ((err = cd_cases_sweep(e.cs, cd_now_ms(), &n)) == CD_OK)
            printf("%zu breaches marked and cases closed\n", n);
    }
out:
    cases_env_close(&e);
    return err == CD_OK ? 0 : cd__cli_fail("cases", err);
}
