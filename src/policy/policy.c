/* The purpose policy, loaded from YAML through base's typed helpers (a key table per mapping:
 * every mistake is reported as FILE:LINE, unknown and repeated keys are refused, and every
 * purpose must be defined). The built-in default is config/policy.yaml, embedded. */
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
    struct table *p;
    enum cd_purpose pu; /* the purpose being read */
};

/* Parses a list of names with parse(name) -> bit; ORs the bits into *mask. */
struct name_list {
    const char *what;
    bool (*parse)(struct cd_str, unsigned *);
    unsigned *mask;
};

static enum cd_err name_item(const struct cd_yaml *y, yaml_node_t *n, size_t i, void *ctx)
{
    const struct name_list *nl = ctx;
    struct cd_str s = cd_yaml_scalar(n);
    unsigned bit = 0;
    char msg[160];

    if (s.p == NULL || !nl->parse(s, &bit)) {
        snprintf(msg, sizeof msg, "unknown %s '%.*s'", nl->what,
                 s.p ? (int)(s.len > 60 ? 60 : s.len) : 0, s.p ? s.p : "");
        return cd_yaml_bad(y, n, msg);
    }
    *nl->mask |= bit;
    return CD_OK;
}

static enum cd_err name_list(const struct cd_yaml *y, yaml_node_t *seq, const char *what,
                             bool (*parse)(struct cd_str, unsigned *), unsigned *mask)
{
    struct name_list nl = {what, parse, mask};
    char msg[64];

    snprintf(msg, sizeof msg, "a list of %ss", what);
    return cd_yaml_seq(y, seq, msg, name_item, &nl);
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

/* ---- one purpose: {roles, categories} ---- */

static enum cd_err purpose_roles(const struct cd_yaml *y, yaml_node_t *v,
                                 const struct cd_yaml_key *k, void *ctx)
{
    struct loader *l = ctx;

    return name_list(y, v, "role", parse_role_bit, &l->p->roles[l->pu]);
}

static enum cd_err purpose_categories(const struct cd_yaml *y, yaml_node_t *v,
                                      const struct cd_yaml_key *k, void *ctx)
{
    struct loader *l = ctx;

    return name_list(y, v, "category", cd_policy_category_parse, &l->p->grant[l->pu].fields);
}

static enum cd_err purpose_consent(const struct cd_yaml *y, yaml_node_t *v,
                                   const struct cd_yaml_key *k, void *ctx)
{
    /* One answer per question: the consent rules alone say which purposes need it. The key is
     * in the table so the refusal says where the answer lives. */
    return cd_yaml_bad(y, v, "'consent' is decided by the consent rules "
                             "(rules/consent/jurisdictions.yaml, not_required), not the policy");
}

static enum cd_err load_purpose(const struct cd_yaml *y, yaml_node_t *map,
                                const struct cd_yaml_key *k, void *ctx)
{
    static const struct cd_yaml_key keys[] = {
        {"roles", true, purpose_roles, 0},
        {"categories", true, purpose_categories, 0},
        {"consent", false, purpose_consent, 0},
    };
    struct loader *l = ctx;
    enum cd_err err;

    l->pu = (enum cd_purpose)k->arg;
    if ((err = cd_yaml_map(y, map, "a purpose", keys, sizeof keys / sizeof keys[0], l)) != CD_OK)
        return err;
    if (!(l->p->grant[l->pu].fields & CD_FIELDS_REFERENCE))
        return cd_yaml_bad(y, map, "every purpose must include the reference category");
    return CD_OK;
}

/* ---- the file ---- */

static enum cd_err root_version(const struct cd_yaml *y, yaml_node_t *v,
                                const struct cd_yaml_key *k, void *ctx)
{
    return cd_yaml_scalar_is(v, "1") ? CD_OK
                                     : cd_yaml_bad(y, v, "only policy version 1 is supported");
}

/* restricted_purposes and promotional_purposes: arg says which. */
static enum cd_err root_purpose_set(const struct cd_yaml *y, yaml_node_t *v,
                                    const struct cd_yaml_key *k, void *ctx)
{
    struct loader *l = ctx;

    return name_list(y, v, "purpose", parse_purpose_bit,
                     k->arg ? &l->p->promotional : &l->p->restricted);
}

static enum cd_err root_purposes(const struct cd_yaml *y, yaml_node_t *v,
                                 const struct cd_yaml_key *k, void *ctx)
{
    /* One key per purpose, from the purposes' own list; each must be defined. */
    static const struct cd_yaml_key keys[CD_PURPOSE__COUNT] = {
#define PURPOSE_KEY(id, name) {name, true, load_purpose, CD_PURPOSE_##id},
        CD_PURPOSES(PURPOSE_KEY)
#undef PURPOSE_KEY
    };
    return cd_yaml_map(y, v, "purposes", keys, CD_PURPOSE__COUNT, ctx);
}

static enum cd_err load_root(const struct cd_yaml *y, struct loader *l)
{
    static const struct cd_yaml_key keys[] = {
        {"version", true, root_version, 0},
        {"restricted_purposes", false, root_purpose_set, 0},
        {"promotional_purposes", false, root_purpose_set, 1},
        {"purposes", true, root_purposes, 0},
    };
    enum cd_err err;

    if ((err = cd_yaml_map(y, cd_yaml_root(y), "the policy", keys, sizeof keys / sizeof keys[0],
                           l)) != CD_OK)
        return err;
    for (int i = 0; i < CD_PURPOSE__COUNT; i++)
        l->p->grant[i].allowed_when_restricted = l->p->restricted & (1u << i);
    return CD_OK;
}

/* Loads a table from path, or from the built-in default when path is NULL. */
static enum cd_err load_table(const char *path, struct table **out)
{
    struct cd_yaml y = {0};
    struct loader l = {0};
    enum cd_err err;

    cd_policy_categories(0);
    if ((l.p = cd_calloc(1, sizeof *l.p)) == NULL)
        return CD_ERR_NOMEM;
    if (path)
        err = cd_yaml_load_file(&y, path, POLICY_MAX_BYTES);
    else
        err = cd_yaml_parse(&y, "config/policy.yaml (built in)", cd_policy_default_yaml,
                            strlen(cd_policy_default_yaml));
    if (err == CD_OK && (err = load_root(&y, &l)) == CD_OK) {
        *out = l.p;
        l.p = NULL;
    }
    cd_yaml_free(&y);
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
