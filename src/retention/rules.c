/* The retention rules: RULES/retention/rules.yaml, read with the typed YAML helpers and checked
 * whole before anything runs (a mistake names its file and line). docs/retention.md documents
 * the format and the defaults. */
#include <stdio.h>
#include <string.h>
#include <yaml.h>
#include "calendar/calendar.h"
#include "retention_int.h"

#define RULES_MAX_BYTES (256 * 1024)
#define RULES_MAX 64
#define WHY_MAX 500

/* The data sets the rules speak of: what "after" may count from, and whether a purpose may
 * narrow a rule. The ledger and the consent records are kept for good: see why in
 * docs/retention.md; a rule must say so. */
const struct cd__ret_data cd__ret_data[CD__RET__COUNT] = {
    [CD__RET_INTERACTIONS] = {"interactions", {"occurred", "last_contact"}, true, false, true},
    [CD__RET_CUSTOMERS] = {"customers", {"last_contact", NULL}, false, false, true},
    [CD__RET_IDEMPOTENCY] = {"idempotency_keys", {"created", NULL}, false, false, false},
    [CD__RET_DELIVERIES] = {"webhook_deliveries", {"finished", NULL}, false, false, false},
    [CD__RET_EVENTS] = {"outbox_events", {"created", NULL}, false, false, false},
    [CD__RET_LEDGER] = {"audit_ledger", {NULL, NULL}, false, true, true},
    [CD__RET_CONSENT] = {"consent_records", {NULL, NULL}, false, true, true},
};

struct load {
    struct cd_retention_rules *r;
    struct cd__ret_rule cur;
    struct cd_str after; /* checked once data is known */
    yaml_node_t *after_node, *purpose_node;
    struct cd_str purpose;
};

static enum cd_err key_version(const struct cd_yaml *y, yaml_node_t *v,
                               const struct cd_yaml_key *k, void *ctx)
{
    int64_t version;
    enum cd_err err = cd_yaml_int(y, v, "version", 1, 1, &version);
    (void)k;
    (void)ctx;
    return err;
}

static enum cd_err key_data(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                            void *ctx)
{
    struct load *l = ctx;
    struct cd_str s;
    enum cd_err err = cd_yaml_str(y, v, "data", 64, &s);

    (void)k;
    if (err != CD_OK)
        return err;
    for (int d = 0; d < CD__RET__COUNT; d++)
        if (cd_str_eq_c(s, cd__ret_data[d].name)) {
            l->cur.data = d;
            return CD_OK;
        }
    return cd_yaml_bad(y, v, "unknown data: interactions, customers, idempotency_keys, "
                             "webhook_deliveries, outbox_events, audit_ledger, consent_records");
}

static enum cd_err key_purpose(const struct cd_yaml *y, yaml_node_t *v,
                               const struct cd_yaml_key *k, void *ctx)
{
    struct load *l = ctx;
    enum cd_purpose p;
    enum cd_err err = cd_yaml_str(y, v, "purpose", 64, &l->purpose);

    (void)k;
    if (err != CD_OK)
        return err;
    if (!cd_purpose_parse(l->purpose, &p))
        return cd_yaml_bad(y, v, "unknown purpose");
    l->cur.purpose = (int)p;
    l->purpose_node = v;
    return CD_OK;
}

/* "forever", or "N days|weeks|months|years" (a year is twelve months). */
static enum cd_err key_keep(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                            void *ctx)
{
    struct load *l = ctx;
    struct cd_str s;
    char text[48];
    enum cd_err err = cd_yaml_str(y, v, "keep", 40, &s);

    (void)k;
    if (err != CD_OK)
        return err;
    snprintf(l->cur.keep, sizeof l->cur.keep, "%.*s", (int)s.len, s.p);
    if (cd_str_eq_c(s, "forever")) {
        l->cur.forever = true;
        return CD_OK;
    }
    /* Years are months to the calendar; "1 year" and "3 years" read as people write them. */
    const char *sp = memchr(s.p, ' ', s.len);
    struct cd_str unit = sp ? (struct cd_str){sp + 1, s.len - (size_t)(sp + 1 - s.p)}
                            : CD_STR_NULL;
    if (cd_str_eq_c(unit, "year") || cd_str_eq_c(unit, "years")) {
        snprintf(text, sizeof text, "%.*s months", (int)(sp - s.p), s.p);
        if (cd_period_parse(cd_str_c(text), &l->cur.period) != CD_OK ||
            l->cur.period.n > 100000 / 12)
            return cd_yaml_bad(y, v, "keep must be forever, or N days, weeks, months or years");
        l->cur.period.n *= 12;
    } else if (cd_period_parse(s, &l->cur.period) != CD_OK ||
               (l->cur.period.unit != CD_PERIOD_DAYS && l->cur.period.unit != CD_PERIOD_WEEKS &&
                l->cur.period.unit != CD_PERIOD_MONTHS)) {
        return cd_yaml_bad(y, v, "keep must be forever, or N days, weeks, months or years");
    }
    if (l->cur.period.n < 1)
        return cd_yaml_bad(y, v, "keep must be at least 1 day");
    return CD_OK;
}

static enum cd_err key_after(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                             void *ctx)
{
    struct load *l = ctx;
    (void)k;
    l->after_node = v;
    return cd_yaml_str(y, v, "after", 32, &l->after);
}

static enum cd_err key_why(const struct cd_yaml *y, yaml_node_t *v, const struct cd_yaml_key *k,
                           void *ctx)
{
    struct load *l = ctx;
    struct cd_str s;
    enum cd_err err = cd_yaml_str(y, v, "why", WHY_MAX, &s);

    (void)k;
    if (err == CD_OK)
        snprintf(l->cur.why, sizeof l->cur.why, "%.*s", (int)s.len, s.p);
    return err;
}

/* One rule, checked against its data set and the rules before it. */
static enum cd_err rule(const struct cd_yaml *y, yaml_node_t *item, size_t index, void *ctx)
{
    static const struct cd_yaml_key keys[] = {
        {"data", true, key_data, 0},   {"purpose", false, key_purpose, 0},
        {"keep", true, key_keep, 0},   {"after", false, key_after, 0},
        {"why", true, key_why, 0},
    };
    struct load *l = ctx;
    enum cd_err err;

    (void)index;
    memset(&l->cur, 0, sizeof l->cur);
    l->cur.purpose = -1;
    l->after = CD_STR_NULL;
    l->after_node = l->purpose_node = NULL;
    if (l->r->n == RULES_MAX)
        return cd_yaml_bad(y, item, "too many rules");
    if ((err = cd_yaml_map(y, item, "a rule", keys, sizeof keys / sizeof keys[0], l)) != CD_OK)
        return err;
    const struct cd__ret_data *d = &cd__ret_data[l->cur.data];
    if (l->cur.purpose >= 0 && !d->purpose_ok)
        return cd_yaml_bad(y, l->purpose_node, "this data has no purpose of its own");
    if (d->forever_only && !l->cur.forever)
        return cd_yaml_bad(y, item, "this data is kept for good (keep: forever): the ledger "
                                    "and consent records are the evidence, and cannot be cut");
    if (!d->forever_only && l->cur.forever)
        return cd_yaml_bad(y, item, "personal data needs a limit: keep N days, weeks, months "
                                    "or years");
    if (l->cur.forever) {
        if (l->after.p)
            return cd_yaml_bad(y, l->after_node, "after means nothing for data kept forever");
    } else {
        int a = -1;
        for (int i = 0; i < 2 && d->afters[i]; i++)
            if (l->after.p && cd_str_eq_c(l->after, d->afters[i]))
                a = i;
        if (a < 0)
            return cd_yaml_bad(y, l->after_node ? l->after_node : item,
                               d->afters[1] ? "after must be occurred or last_contact"
                                            : "after must name when the period starts (see "
                                              "docs/retention.md)");
        l->cur.after = a;
    }
    for (size_t i = 0; i < l->r->n; i++)
        if (l->r->v[i].data == l->cur.data && l->r->v[i].purpose == l->cur.purpose)
            return cd_yaml_bad(y, item, "a rule for this data (and purpose) is already given");
    l->r->v[l->r->n++] = l->cur;
    return CD_OK;
}

static enum cd_err key_rules(const struct cd_yaml *y, yaml_node_t *v,
                             const struct cd_yaml_key *k, void *ctx)
{
    (void)k;
    return cd_yaml_seq(y, v, "rules", rule, ctx);
}

enum cd_err cd_retention_rules_parse(const char *name, const char *data, size_t len,
                                     struct cd_retention_rules **out)
{
    static const struct cd_yaml_key keys[] = {{"version", true, key_version, 0},
                                              {"rules", true, key_rules, 0}};
    struct cd_yaml y = {0};
    struct load l = {0};
    enum cd_err err;

    if ((l.r = cd_calloc(1, sizeof *l.r)) == NULL ||
        (l.r->v = cd_calloc(RULES_MAX, sizeof *l.r->v)) == NULL) {
        cd_retention_rules_free(l.r);
        return CD_ERR_NOMEM;
    }
    if ((err = cd_yaml_parse(&y, name, data, len)) != CD_OK ||
        (err = cd_yaml_map(&y, cd_yaml_root(&y), "the retention rules", keys, 2, &l)) != CD_OK)
        goto out;
    /* Every data set that must be covered is, interactions by a rule for any purpose. */
    for (int d = 0; d < CD__RET__COUNT && err == CD_OK; d++) {
        bool found = false;
        for (size_t i = 0; i < l.r->n; i++)
            found |= l.r->v[i].data == d && l.r->v[i].purpose < 0;
        if (cd__ret_data[d].required && !found)
            err = cd_err_set(CD_ERR_INVALID, "%s: no rule for %s%s (docs/retention.md)", name,
                             cd__ret_data[d].name,
                             cd__ret_data[d].purpose_ok ? " without a purpose" : "");
    }
out:
    cd_yaml_free(&y);
    if (err != CD_OK) {
        cd_retention_rules_free(l.r);
        return err;
    }
    *out = l.r;
    return CD_OK;
}

enum cd_err cd_retention_rules_load(const char *path, struct cd_retention_rules **out)
{
    struct cd_buf b = CD_BUF_INIT(RULES_MAX_BYTES);
    enum cd_err err = cd_buf_read_file(&b, path);

    if (err == CD_OK)
        err = cd_retention_rules_parse(path, b.p, b.len, out);
    cd_buf_free(&b);
    return err;
}

void cd_retention_rules_free(struct cd_retention_rules *r)
{
    if (r == NULL)
        return;
    cd_free(r->v);
    cd_free(r);
}

/* The instant before which data of rule r has expired, at now: now less the period, months
 * counted on the UTC calendar (the last day of a shorter month when the day does not exist). */
int64_t cd__ret_cutoff(const struct cd__ret_rule *r, int64_t now)
{
    struct cd_civil c;
    int64_t day = 86400000;

    switch (r->period.unit) {
    case CD_PERIOD_DAYS:
        return now - (int64_t)r->period.n * day;
    case CD_PERIOD_WEEKS:
        return now - (int64_t)r->period.n * 7 * day;
    default:
        break;
    }
    cd_tz_civil(NULL, now, &c);
    int64_t months = (int64_t)c.year * 12 + (c.month - 1) - r->period.n;
    int32_t year = (int32_t)(months / 12);
    int month = (int)(months % 12) + 1;
    int dim = cd_days_in_month(year, month);
    int64_t ms_of_day = now - cd_days_from_civil(c.year, c.month, c.day) * day;
    return cd_days_from_civil(year, month, c.day > dim ? dim : c.day) * day + ms_of_day;
}

enum cd_err cd__ret_rule_json(const struct cd__ret_rule *r, json_t **out)
{
    const struct cd__ret_data *d = &cd__ret_data[r->data];

    *out = json_pack("{s:s,s:o,s:s,s:o,s:s}", "data", d->name, "purpose",
                     r->purpose >= 0 ? json_string(cd_purpose_name((enum cd_purpose)r->purpose))
                                     : json_null(),
                     "keep", r->keep, "after",
                     r->forever ? json_null() : json_string(d->afters[r->after]), "why", r->why);
    return *out ? CD_OK : CD_ERR_NOMEM;
}

enum cd_err cd_retention_rules_json(const struct cd_retention_rules *r, json_t **out)
{
    json_t *items = json_array();

    if (items == NULL)
        return CD_ERR_NOMEM;
    for (size_t i = 0; i < r->n; i++) {
        json_t *o = NULL;
        if (cd__ret_rule_json(&r->v[i], &o) != CD_OK || json_array_append_new(items, o) != 0) {
            json_decref(items);
            return CD_ERR_NOMEM;
        }
    }
    *out = json_pack("{s:o}", "rules", items);
    return *out ? CD_OK : CD_ERR_NOMEM;
}

