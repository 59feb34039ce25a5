/* Jurisdiction rules as data: rules/consent/jurisdictions.yaml, walked with base's typed YAML
 * helpers (a table of key handlers per mapping), so every mistake is reported as FILE:LINE and
 * an unknown or repeated key is refused. Every purpose that needs consent must be either opt_in
 * or opt_out in every jurisdiction, so no rule is silently missing. */
#include <stdio.h>
#include <string.h>
#include <yaml.h>
#include "consent_int.h"

#define RULES_MAX_BYTES (1024 * 1024) /* a few pages of YAML; anything larger is a mistake */

struct loader {
    struct cd__consent_rules *r;
    yaml_node_t *juris;              /* the list, read after not_required */
    struct cd__consent_juris *j;     /* the jurisdiction being read */
    bool is_default;                 /* it said default: true */
    uint8_t mode;                    /* what a purpose list sets (opt_in, opt_out) */
    struct cd__consent_cap *cap;     /* the cap being read */
    bool cap_channel;                /* it named a channel */
};

static enum cd_err purpose_of(const struct cd_yaml *y, yaml_node_t *n, enum cd_purpose *out)
{
    char msg[300];

    if (cd_purpose_parse(cd_yaml_scalar(n), out))
        return CD_OK;
    snprintf(msg, sizeof msg, "unknown purpose (one of %s)", cd_purpose_list());
    return cd_yaml_bad(y, n, msg);
}

/* ---- a cap: {purpose, channel?, max, days?} ---- */

static enum cd_err cap_purpose(const struct cd_yaml *y, yaml_node_t *v,
                               const struct cd_yaml_key *k, void *ctx)
{
    struct loader *l = ctx;
    enum cd_purpose pu;
    enum cd_err err = purpose_of(y, v, &pu);

    if (err == CD_OK)
        l->cap->purpose = (uint8_t)pu;
    return err;
}

static enum cd_err cap_channel(const struct cd_yaml *y, yaml_node_t *v,
                               const struct cd_yaml_key *k, void *ctx)
{
    struct loader *l = ctx;
    enum cd_consent_channel ch;

    if (!cd_consent_channel_parse(cd_yaml_scalar(v), &ch))
        return cd_yaml_bad(y, v, "unknown channel");
    l->cap->channel = (uint8_t)ch;
    return CD_OK;
}

/* max and days: whole numbers within [min, max] of the entry's range. */
static enum cd_err cap_number(const struct cd_yaml *y, yaml_node_t *v,
                              const struct cd_yaml_key *k, void *ctx)
{
    struct loader *l = ctx;
    bool is_max = k->arg == 0;
    int64_t n;
    enum cd_err err = cd_yaml_int(y, v, k->name, is_max ? 0 : 1, is_max ? 10000 : 3660, &n);

    if (err != CD_OK)
        return err;
    if (is_max)
        l->cap->max = (uint16_t)n;
    else
        l->cap->days = (uint16_t)n;
    return CD_OK;
}

static enum cd_err cap_item(const struct cd_yaml *y, yaml_node_t *v, size_t i, void *ctx)
{
    static const struct cd_yaml_key keys[] = {
        {"purpose", true, cap_purpose, 0},
        {"channel", false, cap_channel, 0},
        {"max", true, cap_number, 0},
        {"days", false, cap_number, 1},
    };
    struct loader *l = ctx;

    if (l->j->ncaps == CD__CONSENT_MAX_CAPS)
        return cd_yaml_bad(y, v, "too many caps");
    l->cap = &l->j->caps[l->j->ncaps++];
    l->cap->channel = CD_CONSENT_CHANNEL_ANY;
    l->cap->days = 1;
    return cd_yaml_map(y, v, "a cap", keys, sizeof keys / sizeof keys[0], l);
}

/* ---- a jurisdiction ---- */

static enum cd_err juris_name(const struct cd_yaml *y, yaml_node_t *v,
                              const struct cd_yaml_key *k, void *ctx)
{
    struct loader *l = ctx;
    struct cd_str s;
    enum cd_err err = cd_yaml_str(y, v, "name", sizeof l->j->name - 1, &s);

    if (err == CD_OK)
        memcpy(l->j->name, s.p, s.len);
    return err;
}

static enum cd_err match_item(const struct cd_yaml *y, yaml_node_t *v, size_t i, void *ctx)
{
    struct cd__consent_juris *j = ((struct loader *)ctx)->j;
    struct cd_str s;
    enum cd_err err;

    if (j->nmatch == CD__CONSENT_MAX_MATCH)
        return cd_yaml_bad(y, v, "too many codes");
    if ((err = cd_yaml_str(y, v, "a code", sizeof j->match[0] - 1, &s)) != CD_OK)
        return err;
    memcpy(j->match[j->nmatch++], s.p, s.len);
    return CD_OK;
}

static enum cd_err juris_match(const struct cd_yaml *y, yaml_node_t *v,
                               const struct cd_yaml_key *k, void *ctx)
{
    return cd_yaml_seq(y, v, "match (a list of jurisdiction codes)", match_item, ctx);
}

static enum cd_err mode_item(const struct cd_yaml *y, yaml_node_t *v, size_t i, void *ctx)
{
    struct loader *l = ctx;
    enum cd_purpose pu;
    enum cd_err err;

    if ((err = purpose_of(y, v, &pu)) != CD_OK)
        return err;
    if (l->r->basis[pu])
        return cd_yaml_bad(y, v, "this purpose is listed under not_required");
    if (l->j->mode[pu] != CD__MODE_NOT_REQUIRED)
        return cd_yaml_bad(y, v, "purpose listed twice in this jurisdiction");
    l->j->mode[pu] = l->mode;
    return CD_OK;
}

/* opt_in and opt_out: lists of purposes; arg is the mode they set. */
static enum cd_err juris_mode(const struct cd_yaml *y, yaml_node_t *v,
                              const struct cd_yaml_key *k, void *ctx)
{
    struct loader *l = ctx;

    l->mode = (uint8_t)k->arg;
    return cd_yaml_seq(y, v, k->name, mode_item, l);
}

static enum cd_err juris_default(const struct cd_yaml *y, yaml_node_t *v,
                                 const struct cd_yaml_key *k, void *ctx)
{
    return cd_yaml_bool(y, v, "default", &((struct loader *)ctx)->is_default);
}

static enum cd_err juris_implied(const struct cd_yaml *y, yaml_node_t *v,
                                 const struct cd_yaml_key *k, void *ctx)
{
    struct loader *l = ctx;
    int64_t d;
    enum cd_err err = cd_yaml_int(y, v, "implied_consent_days", 1, 36600, &d);

    if (err == CD_OK)
        l->j->implied_days = (int)d;
    return err;
}

static enum cd_err juris_caps(const struct cd_yaml *y, yaml_node_t *v,
                              const struct cd_yaml_key *k, void *ctx)
{
    return cd_yaml_seq(y, v, "caps", cap_item, ctx);
}

static enum cd_err juris_item(const struct cd_yaml *y, yaml_node_t *v, size_t i, void *ctx)
{
    static const struct cd_yaml_key keys[] = {
        {"name", true, juris_name, 0},
        {"match", false, juris_match, 0},
        {"default", false, juris_default, 0},
        {"opt_in", false, juris_mode, CD__MODE_OPT_IN},
        {"opt_out", false, juris_mode, CD__MODE_OPT_OUT},
        {"implied_consent_days", false, juris_implied, 0},
        {"caps", false, juris_caps, 0},
    };
    struct loader *l = ctx;
    struct cd__consent_rules *r = l->r;
    enum cd_err err;

    if (r->n == CD__CONSENT_MAX_JURIS)
        return cd_yaml_bad(y, v, "too many jurisdictions");
    l->j = &r->j[r->n];
    memset(l->j, 0, sizeof *l->j);
    l->is_default = false;
    if ((err = cd_yaml_map(y, v, "a jurisdiction", keys, sizeof keys / sizeof keys[0], l)) !=
        CD_OK)
        return err;
    /* No rule may be silently missing: every purpose that needs consent is opt_in or opt_out. */
    for (int pu = 0; pu < CD_PURPOSE__COUNT; pu++)
        if (r->basis[pu] == NULL && l->j->mode[pu] == CD__MODE_NOT_REQUIRED) {
            char msg[160];
            snprintf(msg, sizeof msg,
                     "jurisdiction %s must list purpose %s under opt_in or opt_out", l->j->name,
                     cd_purpose_name((enum cd_purpose)pu));
            return cd_yaml_bad(y, v, msg);
        }
    if (l->is_default) {
        if (r->def != SIZE_MAX)
            return cd_yaml_bad(y, v, "only one jurisdiction may be the default");
        r->def = r->n;
    }
    r->n++;
    return CD_OK;
}

/* ---- the file ---- */

static enum cd_err root_version(const struct cd_yaml *y, yaml_node_t *v,
                                const struct cd_yaml_key *k, void *ctx)
{
    int64_t version;

    return cd_yaml_int(y, v, "version", 1, 1, &version);
}

static enum cd_err basis_of(const struct cd_yaml *y, yaml_node_t *v,
                            const struct cd_yaml_key *k, void *ctx)
{
    static const char *const bases[] = {"contract", "legal_obligation", "legitimate_interest",
                                        "vital_interest", "public_task"};
    struct loader *l = ctx;

    for (size_t b = 0; b < sizeof bases / sizeof bases[0]; b++)
        if (cd_yaml_scalar_is(v, bases[b])) {
            l->r->basis[k->arg] = bases[b];
            return CD_OK;
        }
    return cd_yaml_bad(y, v, "legal basis must be contract, legal_obligation, "
                             "legitimate_interest, vital_interest or public_task");
}

static enum cd_err root_not_required(const struct cd_yaml *y, yaml_node_t *v,
                                     const struct cd_yaml_key *k, void *ctx)
{
    /* One key per purpose: the purposes' table is the key table. */
    static const struct cd_yaml_key keys[CD_PURPOSE__COUNT] = {
#define BASIS_KEY(id, name) {name, false, basis_of, CD_PURPOSE_##id},
        CD_PURPOSES(BASIS_KEY)
#undef BASIS_KEY
    };
    return cd_yaml_map(y, v, "not_required (purpose: legal basis)", keys, CD_PURPOSE__COUNT,
                       ctx);
}

static enum cd_err gpc_item(const struct cd_yaml *y, yaml_node_t *v, size_t i, void *ctx)
{
    struct loader *l = ctx;
    enum cd_purpose pu;
    enum cd_err err = purpose_of(y, v, &pu);

    if (err == CD_OK)
        l->r->gpc_purposes |= 1u << pu;
    return err;
}

static enum cd_err root_gpc(const struct cd_yaml *y, yaml_node_t *v,
                            const struct cd_yaml_key *k, void *ctx)
{
    return cd_yaml_seq(y, v, "gpc_purposes", gpc_item, ctx);
}

static enum cd_err root_juris(const struct cd_yaml *y, yaml_node_t *v,
                              const struct cd_yaml_key *k, void *ctx)
{
    ((struct loader *)ctx)->juris = v; /* after not_required, whatever the order in the file */
    return CD_OK;
}

static enum cd_err load_root(const struct cd_yaml *y, struct loader *l)
{
    static const struct cd_yaml_key keys[] = {
        {"version", true, root_version, 0},
        {"not_required", false, root_not_required, 0},
        {"gpc_purposes", false, root_gpc, 0},
        {"jurisdictions", true, root_juris, 0},
    };
    yaml_node_t *root = cd_yaml_root(y);
    enum cd_err err;

    if ((err = cd_yaml_map(y, root, "the rules file", keys, sizeof keys / sizeof keys[0], l)) !=
            CD_OK ||
        (err = cd_yaml_seq(y, l->juris, "jurisdictions", juris_item, l)) != CD_OK)
        return err;
    if (l->r->def == SIZE_MAX)
        return cd_yaml_bad(y, l->juris, "one jurisdiction must be 'default: true' (the strictest)");
    return CD_OK;
}

enum cd_err cd__consent_rules_load(const char *path, struct cd__consent_rules *out)
{
    struct cd_yaml y = {0};
    struct loader l = {.r = out};
    enum cd_err err;

    memset(out, 0, sizeof *out);
    out->def = SIZE_MAX;
    if (path == NULL)
        return cd_err_set(CD_ERR_IO, "no consent rules file given");
    if ((err = cd_yaml_load_file(&y, path, RULES_MAX_BYTES)) == CD_OK)
        err = load_root(&y, &l);
    cd_yaml_free(&y);
    return err;
}

uint8_t cd__consent_rules_find(const struct cd__consent_rules *r, struct cd_str code)
{
    for (size_t i = 0; i < r->n; i++) {
        if (cd_str_eq_c(code, r->j[i].name))
            return (uint8_t)i;
        for (size_t m = 0; m < r->j[i].nmatch; m++)
            if (cd_str_eq_c(code, r->j[i].match[m]))
                return (uint8_t)i;
    }
    return (uint8_t)r->def;
}
