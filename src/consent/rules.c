/* Jurisdiction rules as data: rules/consent/jurisdictions.yaml, loaded with libyaml's document
 * API so every mistake is reported as FILE:LINE. Every purpose that needs consent must be
 * either opt_in or opt_out in every jurisdiction, so no rule is silently missing. */
#include <stdio.h>
#include <string.h>
#include <yaml.h>
#include "consent_int.h"

#define RULES_MAX_BYTES (1024 * 1024) /* a few pages of YAML; anything larger is a mistake */

struct loader {
    struct cd_yaml y;
    struct cd__consent_rules *r;
};

static enum cd_err bad(const struct loader *l, const yaml_node_t *n, const char *what)
{
    return cd_yaml_bad(&l->y, n, what);
}

static yaml_node_t *node(struct loader *l, int i)
{
    return cd_yaml_node(&l->y, i);
}

static enum cd_err purpose_list(struct loader *l, yaml_node_t *seq, uint8_t *mode, uint8_t m,
                                const struct cd__consent_rules *r)
{
    if (seq->type != YAML_SEQUENCE_NODE)
        return bad(l, seq, "expected a list of purposes");
    for (yaml_node_item_t *it = seq->data.sequence.items.start;
         it < seq->data.sequence.items.top; it++) {
        yaml_node_t *n = node(l, *it);
        enum cd_purpose pu;
        if (!cd_purpose_parse(cd_yaml_scalar(n), &pu))
            return bad(l, n, "unknown purpose");
        if (r->basis[pu])
            return bad(l, n, "this purpose is listed under not_required");
        if (mode[pu] != CD__MODE_NOT_REQUIRED)
            return bad(l, n, "purpose listed twice in this jurisdiction");
        mode[pu] = m;
    }
    return CD_OK;
}

static enum cd_err parse_int(struct loader *l, yaml_node_t *n, long min, long max, long *out)
{
    struct cd_str s = cd_yaml_scalar(n);
    char buf[24], *end = NULL;

    if (s.p == NULL || s.len == 0 || s.len >= sizeof buf)
        return bad(l, n, "expected an integer");
    memcpy(buf, s.p, s.len);
    buf[s.len] = '\0';
    *out = strtol(buf, &end, 10);
    if (*end || *out < min || *out > max)
        return bad(l, n, "integer out of range");
    return CD_OK;
}

static enum cd_err load_cap(struct loader *l, yaml_node_t *map, struct cd__consent_cap *cap)
{
    bool have_p = false, have_m = false;
    enum cd_err err;
    long v;

    if (map->type != YAML_MAPPING_NODE)
        return bad(l, map, "a cap is {purpose, channel, max, days}");
    cap->channel = CD_CONSENT_CHANNEL_ANY;
    cap->days = 1;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node(l, p->key), *v2 = node(l, p->value);
        struct cd_str key = cd_yaml_scalar(k);
        if (cd_str_eq_c(key, "purpose")) {
            enum cd_purpose pu;
            if (!cd_purpose_parse(cd_yaml_scalar(v2), &pu))
                return bad(l, v2, "unknown purpose");
            cap->purpose = (uint8_t)pu;
            have_p = true;
        } else if (cd_str_eq_c(key, "channel")) {
            enum cd_consent_channel ch;
            if (!cd_consent_channel_parse(cd_yaml_scalar(v2), &ch))
                return bad(l, v2, "unknown channel");
            cap->channel = (uint8_t)ch;
        } else if (cd_str_eq_c(key, "max")) {
            if ((err = parse_int(l, v2, 0, 10000, &v)) != CD_OK)
                return err;
            cap->max = (uint16_t)v;
            have_m = true;
        } else if (cd_str_eq_c(key, "days")) {
            if ((err = parse_int(l, v2, 1, 3660, &v)) != CD_OK)
                return err;
            cap->days = (uint16_t)v;
        } else {
            return bad(l, k, "unknown key in cap (purpose, channel, max, days)");
        }
    }
    if (!have_p || !have_m)
        return bad(l, map, "a cap needs purpose and max");
    return CD_OK;
}

static enum cd_err load_juris(struct loader *l, yaml_node_t *map, bool *is_default)
{
    struct cd__consent_rules *r = l->r;
    struct cd__consent_juris *j;
    enum cd_err err;

    if (map->type != YAML_MAPPING_NODE)
        return bad(l, map, "a jurisdiction is a mapping (name, match, opt_in, opt_out, ...)");
    if (r->n == CD__CONSENT_MAX_JURIS)
        return bad(l, map, "too many jurisdictions");
    j = &r->j[r->n];
    memset(j, 0, sizeof *j);
    *is_default = false;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node(l, p->key), *v = node(l, p->value);
        struct cd_str key = cd_yaml_scalar(k), val = cd_yaml_scalar(v);
        if (cd_str_eq_c(key, "name")) {
            if (val.len == 0 || val.len >= sizeof j->name)
                return bad(l, v, "name must have 1 to 15 characters");
            memcpy(j->name, val.p, val.len);
        } else if (cd_str_eq_c(key, "match")) {
            if (v->type != YAML_SEQUENCE_NODE)
                return bad(l, v, "match is a list of jurisdiction codes");
            for (yaml_node_item_t *it = v->data.sequence.items.start;
                 it < v->data.sequence.items.top; it++) {
                struct cd_str m = cd_yaml_scalar(node(l, *it));
                if (m.len == 0 || m.len >= 16 || j->nmatch == CD__CONSENT_MAX_MATCH)
                    return bad(l, node(l, *it), "bad or too many codes");
                memcpy(j->match[j->nmatch++], m.p, m.len);
            }
        } else if (cd_str_eq_c(key, "opt_in")) {
            if ((err = purpose_list(l, v, j->mode, CD__MODE_OPT_IN, r)) != CD_OK)
                return err;
        } else if (cd_str_eq_c(key, "opt_out")) {
            if ((err = purpose_list(l, v, j->mode, CD__MODE_OPT_OUT, r)) != CD_OK)
                return err;
        } else if (cd_str_eq_c(key, "default")) {
            *is_default = cd_str_eq_c(val, "true");
        } else if (cd_str_eq_c(key, "implied_consent_days")) {
            long d;
            if ((err = parse_int(l, v, 1, 36600, &d)) != CD_OK)
                return err;
            j->implied_days = (int)d;
        } else if (cd_str_eq_c(key, "caps")) {
            if (v->type != YAML_SEQUENCE_NODE)
                return bad(l, v, "caps is a list");
            for (yaml_node_item_t *it = v->data.sequence.items.start;
                 it < v->data.sequence.items.top; it++) {
                if (j->ncaps == CD__CONSENT_MAX_CAPS)
                    return bad(l, v, "too many caps");
                if ((err = load_cap(l, node(l, *it), &j->caps[j->ncaps++])) != CD_OK)
                    return err;
            }
        } else {
            return bad(l, k, "unknown key (name, match, default, opt_in, opt_out, "
                             "implied_consent_days, caps)");
        }
    }
    if (!j->name[0])
        return bad(l, map, "a jurisdiction needs a name");
    for (int pu = 0; pu < CD_PURPOSE__COUNT; pu++)
        if (r->basis[pu] == NULL && j->mode[pu] == CD__MODE_NOT_REQUIRED) {
            char msg[160];
            snprintf(msg, sizeof msg, "jurisdiction %s must list purpose %s under opt_in or "
                                      "opt_out", j->name, cd_purpose_name((enum cd_purpose)pu));
            return bad(l, map, msg);
        }
    r->n++;
    return CD_OK;
}

static enum cd_err load_root(struct loader *l)
{
    yaml_node_t *root = cd_yaml_root(&l->y);
    yaml_node_t *juris = NULL;
    struct cd__consent_rules *r = l->r;
    bool have_default = false, have_version = false;
    enum cd_err err;
    static const char *const bases[] = {"contract", "legal_obligation", "legitimate_interest",
                                        "vital_interest", "public_task", NULL};

    if (root == NULL || root->type != YAML_MAPPING_NODE)
        return bad(l, root, "the rules file must be a mapping");
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node(l, p->key), *v = node(l, p->value);
        struct cd_str key = cd_yaml_scalar(k);
        if (cd_str_eq_c(key, "version")) {
            if (!cd_str_eq_c(cd_yaml_scalar(v), "1"))
                return bad(l, v, "version must be 1");
            have_version = true;
        } else if (cd_str_eq_c(key, "not_required")) {
            if (v->type != YAML_MAPPING_NODE)
                return bad(l, v, "not_required maps purpose -> legal basis");
            for (yaml_node_pair_t *q = v->data.mapping.pairs.start;
                 q < v->data.mapping.pairs.top; q++) {
                enum cd_purpose pu;
                yaml_node_t *pk = node(l, q->key), *pv = node(l, q->value);
                if (!cd_purpose_parse(cd_yaml_scalar(pk), &pu))
                    return bad(l, pk, "unknown purpose");
                r->basis[pu] = NULL;
                for (size_t b = 0; bases[b]; b++)
                    if (cd_str_eq_c(cd_yaml_scalar(pv), bases[b]))
                        r->basis[pu] = bases[b];
                if (r->basis[pu] == NULL)
                    return bad(l, pv, "legal basis must be contract, legal_obligation, "
                                      "legitimate_interest, vital_interest or public_task");
            }
        } else if (cd_str_eq_c(key, "gpc_purposes")) {
            if (v->type != YAML_SEQUENCE_NODE)
                return bad(l, v, "gpc_purposes is a list of purposes");
            for (yaml_node_item_t *it = v->data.sequence.items.start;
                 it < v->data.sequence.items.top; it++) {
                enum cd_purpose pu;
                if (!cd_purpose_parse(cd_yaml_scalar(node(l, *it)), &pu))
                    return bad(l, node(l, *it), "unknown purpose");
                r->gpc_purposes |= 1u << pu;
            }
        } else if (cd_str_eq_c(key, "jurisdictions")) {
            juris = v; /* after not_required, whatever the order in the file */
        } else {
            return bad(l, k, "unknown key (version, not_required, gpc_purposes, jurisdictions)");
        }
    }
    if (!have_version)
        return bad(l, root, "missing 'version: 1'");
    if (juris == NULL || juris->type != YAML_SEQUENCE_NODE)
        return bad(l, root, "missing the list 'jurisdictions'");
    for (yaml_node_item_t *it = juris->data.sequence.items.start;
         it < juris->data.sequence.items.top; it++) {
        bool is_default = false;
        if ((err = load_juris(l, node(l, *it), &is_default)) != CD_OK)
            return err;
        if (is_default) {
            if (have_default)
                return bad(l, node(l, *it), "only one jurisdiction may be the default");
            have_default = true;
            r->def = r->n - 1;
        }
    }
    if (!have_default)
        return bad(l, juris, "one jurisdiction must be 'default: true' (the strictest)");
    return CD_OK;
}

enum cd_err cd__consent_rules_load(const char *path, struct cd__consent_rules *out)
{
    struct loader l;
    enum cd_err err;

    memset(&l, 0, sizeof l);
    memset(out, 0, sizeof *out);
    l.r = out;
    if (path == NULL)
        return cd_err_set(CD_ERR_IO, "no consent rules file given");
    if ((err = cd_yaml_load_file(&l.y, path, RULES_MAX_BYTES)) == CD_OK)
        err = load_root(&l);
    cd_yaml_free(&l.y);
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
