/* The purpose policy, loaded from YAML (libyaml's document API keeps line numbers, so every
 * mistake is reported as FILE:LINE). The built-in default is config/policy.yaml, embedded. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>
#include "policy.h"

__asm__(".section .rodata\n"
        ".global cd_policy_default_yaml\n"
        ".type cd_policy_default_yaml, @object\n"
        "cd_policy_default_yaml:\n"
        ".incbin \"config/policy.yaml\"\n"
        ".byte 0\n"
        ".previous\n");
extern const char cd_policy_default_yaml[];

#define POLICY_MAX_BYTES (1024 * 1024) /* a policy is a page of YAML; anything larger is a mistake */

/* One loaded policy; immutable once published. */
struct table {
    unsigned roles[CD_PURPOSE__COUNT]; /* CD_ROLE_BIT mask */
    struct cd_policy_grant grant[CD_PURPOSE__COUNT];
    bool defined[CD_PURPOSE__COUNT];
    unsigned restricted;  /* restricted_purposes, bit per purpose */
    unsigned promotional; /* promotional_purposes, bit per purpose */
};

/* Readers take the current table with one atomic load and never wait. A table replaced by a
 * reload is kept until cd_policy_free, so a request that loaded it a moment before the swap
 * never reads freed memory; only reloads that change the policy retire one (a few hundred
 * bytes each). */
struct retired {
    struct table *t;
    struct retired *next;
};

struct cd_policy {
    _Atomic(struct table *) cur;
    pthread_mutex_t mu; /* serialises reloads */
    struct retired *retired;
};

static const char *const category_names[] = {"reference", "contact", "profile", "conversation",
                                             "coarse"};

const char *cd_policy_categories(unsigned fields)
{
    static char table[32][64];
    static bool ready;

    /* Built once, before threads start (cd_policy_load calls this), then read-only. */
    if (!ready) {
        for (unsigned f = 0; f < 32; f++) {
            size_t n = 0;
            table[f][0] = '\0';
            for (unsigned b = 0; b < 5; b++)
                if (f & (1u << b))
                    n += (size_t)snprintf(table[f] + n, sizeof table[f] - n, "%s%s",
                                          n ? "," : "", category_names[b]);
        }
        ready = true;
    }
    return table[fields & 31];
}

struct loader {
    struct cd_yaml y;
    struct table *p;
};

static enum cd_err bad(const struct loader *l, const yaml_node_t *n, const char *what)
{
    return cd_yaml_bad(&l->y, n, what);
}

/* Parses a sequence of names with parse(name) -> bit; ORs the bits into *mask. */
static enum cd_err name_list(struct loader *l, yaml_node_t *seq, const char *what,
                             bool (*parse)(struct cd_str, unsigned *), unsigned *mask)
{
    char msg[160];

    if (seq->type != YAML_SEQUENCE_NODE) {
        snprintf(msg, sizeof msg, "%s must be a list", what);
        return bad(l, seq, msg);
    }
    for (yaml_node_item_t *it = seq->data.sequence.items.start;
         it < seq->data.sequence.items.top; it++) {
        yaml_node_t *n = cd_yaml_node(&l->y, *it);
        unsigned bit = 0;
        if (n == NULL || n->type != YAML_SCALAR_NODE || !parse(cd_yaml_scalar(n), &bit)) {
            snprintf(msg, sizeof msg, "unknown %s '%.*s'", what,
                     n && n->type == YAML_SCALAR_NODE ? (int)n->data.scalar.length : 0,
                     n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : "");
            return bad(l, n ? n : seq, msg);
        }
        *mask |= bit;
    }
    return CD_OK;
}

static bool parse_role_bit(struct cd_str s, unsigned *bit)
{
    enum cd_role r;
    if (!cd_role_parse(s, &r))
        return false;
    *bit = CD_ROLE_BIT(r);
    return true;
}

bool cd_policy_category_parse(struct cd_str s, unsigned *bit)
{
    for (unsigned b = 0; b < 5; b++)
        if (cd_str_eq_c(s, category_names[b])) {
            *bit = 1u << b;
            return true;
        }
    return false;
}

static bool parse_purpose_bit(struct cd_str s, unsigned *bit)
{
    enum cd_purpose p;
    if (!cd_purpose_parse(s, &p))
        return false;
    *bit = 1u << p;
    return true;
}

static enum cd_err load_purpose(struct loader *l, enum cd_purpose pu, yaml_node_t *map)
{
    bool have_roles = false, have_cats = false;

    if (map->type != YAML_MAPPING_NODE)
        return bad(l, map, "a purpose is a mapping with roles and categories");
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top;
         pr++) {
        yaml_node_t *k = cd_yaml_node(&l->y, pr->key);
        yaml_node_t *v = cd_yaml_node(&l->y, pr->value);
        enum cd_err err;
        if (cd_yaml_scalar_is(k, "roles")) {
            if ((err = name_list(l, v, "role", parse_role_bit, &l->p->roles[pu])) != CD_OK)
                return err;
            have_roles = true;
        } else if (cd_yaml_scalar_is(k, "categories")) {
            if ((err = name_list(l, v, "category", cd_policy_category_parse,
                                 &l->p->grant[pu].fields)) != CD_OK)
                return err;
            have_cats = true;
        } else if (cd_yaml_scalar_is(k, "consent")) {
            /* One answer per question: the consent rules alone say which purposes need it. */
            return bad(l, k, "'consent' is decided by the consent rules "
                             "(rules/consent/jurisdictions.yaml, not_required), not the policy");
        } else {
            return bad(l, k, "unknown key in a purpose (roles, categories)");
        }
    }
    if (!have_roles || !have_cats)
        return bad(l, map, "a purpose needs roles and categories");
    if (!(l->p->grant[pu].fields & CD_FIELDS_REFERENCE))
        return bad(l, map, "every purpose must include the reference category");
    l->p->defined[pu] = true;
    return CD_OK;
}

static enum cd_err load_root(struct loader *l)
{
    yaml_node_t *root = cd_yaml_root(&l->y);
    bool have_version = false;

    if (root == NULL || root->type != YAML_MAPPING_NODE)
        return bad(l, root, "the policy must be a mapping (version, restricted_purposes, "
                            "promotional_purposes, purposes)");
    for (yaml_node_pair_t *pr = root->data.mapping.pairs.start;
         pr < root->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = cd_yaml_node(&l->y, pr->key);
        yaml_node_t *v = cd_yaml_node(&l->y, pr->value);
        enum cd_err err;
        if (cd_yaml_scalar_is(k, "version")) {
            if (!cd_yaml_scalar_is(v, "1"))
                return bad(l, v, "only policy version 1 is supported");
            have_version = true;
        } else if (cd_yaml_scalar_is(k, "restricted_purposes")) {
            if ((err = name_list(l, v, "purpose", parse_purpose_bit, &l->p->restricted)) != CD_OK)
                return err;
        } else if (cd_yaml_scalar_is(k, "promotional_purposes")) {
            if ((err = name_list(l, v, "purpose", parse_purpose_bit, &l->p->promotional)) !=
                CD_OK)
                return err;
        } else if (cd_yaml_scalar_is(k, "purposes")) {
            if (v->type != YAML_MAPPING_NODE)
                return bad(l, v, "purposes must be a mapping of purpose name to rules");
            for (yaml_node_pair_t *pp = v->data.mapping.pairs.start;
                 pp < v->data.mapping.pairs.top; pp++) {
                yaml_node_t *pk = cd_yaml_node(&l->y, pp->key);
                enum cd_purpose pu;
                if (pk == NULL || pk->type != YAML_SCALAR_NODE ||
                    !cd_purpose_parse(cd_yaml_scalar(pk), &pu))
                    return bad(l, pk, "unknown purpose (see the list in the brief)");
                if (l->p->defined[pu])
                    return bad(l, pk, "purpose defined twice");
                if ((err = load_purpose(l, pu, cd_yaml_node(&l->y, pp->value))) !=
                    CD_OK)
                    return err;
            }
        } else {
            return bad(l, k, "unknown key (version, restricted_purposes, promotional_purposes, "
                             "purposes)");
        }
    }
    if (!have_version)
        return bad(l, root, "version: 1 is required");
    for (int i = 0; i < CD_PURPOSE__COUNT; i++) {
        if (!l->p->defined[i]) {
            char msg[96];
            snprintf(msg, sizeof msg, "purpose '%s' is not defined", cd_purpose_name(i));
            return bad(l, root, msg);
        }
        l->p->grant[i].allowed_when_restricted = l->p->restricted & (1u << i);
    }
    return CD_OK;
}

/* Loads a table from path, or from the built-in default when path is NULL. */
static enum cd_err load_table(const char *path, struct table **out)
{
    struct loader l;
    enum cd_err err;

    memset(&l, 0, sizeof l);
    cd_policy_categories(0);
    if ((l.p = cd_calloc(1, sizeof *l.p)) == NULL)
        return CD_ERR_NOMEM;
    if (path)
        err = cd_yaml_load_file(&l.y, path, POLICY_MAX_BYTES);
    else
        err = cd_yaml_parse(&l.y, "config/policy.yaml (built in)", cd_policy_default_yaml,
                            strlen(cd_policy_default_yaml));
    if (err == CD_OK && (err = load_root(&l)) == CD_OK) {
        *out = l.p;
        l.p = NULL;
    }
    cd_yaml_free(&l.y);
    cd_free(l.p);
    return err;
}

enum cd_err cd_policy_load(const char *path, struct cd_policy **out)
{
    struct cd_policy *p = cd_calloc(1, sizeof *p);
    struct table *t = NULL;
    enum cd_err err;

    if (p == NULL)
        return CD_ERR_NOMEM;
    if ((err = load_table(path, &t)) != CD_OK) {
        cd_free(p);
        return err;
    }
    atomic_init(&p->cur, t);
    pthread_mutex_init(&p->mu, NULL);
    *out = p;
    return CD_OK;
}

enum cd_err cd_policy_reload(struct cd_policy *p, const char *path, bool *changed)
{
    struct table *t = NULL;
    struct retired *r = NULL;
    enum cd_err err;

    *changed = false;
    if ((err = load_table(path, &t)) != CD_OK)
        return err;
    pthread_mutex_lock(&p->mu);
    struct table *old = atomic_load(&p->cur);
    /* Both tables were zeroed before loading, so equal content compares equal bytes. */
    if (memcmp(old, t, sizeof *t) == 0) {
        cd_free(t);
    } else if ((r = cd_malloc(sizeof *r)) == NULL) {
        cd_free(t);
        err = CD_ERR_NOMEM;
    } else {
        r->t = old;
        r->next = p->retired;
        p->retired = r;
        atomic_store_explicit(&p->cur, t, memory_order_release);
        *changed = true;
    }
    pthread_mutex_unlock(&p->mu);
    return err;
}

void cd_policy_free(struct cd_policy *p)
{
    if (p == NULL)
        return;
    for (struct retired *r = p->retired, *next; r; r = next) {
        next = r->next;
        cd_free(r->t);
        cd_free(r);
    }
    cd_free(atomic_load(&p->cur));
    pthread_mutex_destroy(&p->mu);
    cd_free(p);
}

enum cd_err cd_policy_check(const struct cd_policy *p, enum cd_role role, enum cd_purpose purpose,
                            struct cd_policy_grant *grant)
{
    const struct table *t = atomic_load_explicit(&p->cur, memory_order_acquire);

    if ((unsigned)purpose >= CD_PURPOSE__COUNT || !(t->roles[purpose] & CD_ROLE_BIT(role)))
        return cd_err_set(CD_ERR_PURPOSE_DENIED,
                          "the %s role may not use personal data for the purpose '%s'",
                          cd_role_name(role), cd_purpose_name(purpose));
    *grant = t->grant[purpose];
    return CD_OK;
}

unsigned cd_policy_restricted_purposes(const struct cd_policy *p)
{
    return atomic_load_explicit(&p->cur, memory_order_acquire)->restricted;
}

bool cd_policy_promotional(const struct cd_policy *p, enum cd_purpose purpose)
{
    const struct table *t = atomic_load_explicit(&p->cur, memory_order_acquire);

    return (unsigned)purpose < CD_PURPOSE__COUNT && ((t->promotional >> purpose) & 1u);
}
