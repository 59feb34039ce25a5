/* Rule pack loader and compiler: YAML files (libyaml document API) into a rule set, then every
 * pattern of the set into one Hyperscan block-mode database.
 *
 * Errors always name "file:line: rule ID: what", so a user extending a pack can fix it without
 * reading this code. A failed load leaves nothing behind: the caller drops the whole set. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>
#include "guard/guard_int.h"

struct ld {
    struct cd__guard_set *set;
    const char *file; /* arena copy of the display name */
    yaml_document_t *doc;
    const char *rule_id; /* for error details; NULL before the id is known */
};

/* "FILE:LINE: rule ID: what" once the rule's id is known, else as cd_yaml_bad. */
static enum cd_err fail(struct ld *l, const yaml_node_t *n, const char *what)
{
    if (l->rule_id)
        return cd_err_set(CD_ERR_INVALID, "%s:%zu: rule %s: %s", l->file, cd_yaml_line(n),
                          l->rule_id, what);
    return cd_err_set(CD_ERR_INVALID, "%s:%zu: %s", l->file, cd_yaml_line(n), what);
}

static yaml_node_t *node(struct ld *l, int idx)
{
    return yaml_document_get_node(l->doc, idx);
}

static bool is_scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE;
}

/* An arena copy of a scalar (NUL-terminated; scalars with NUL bytes are rejected). */
static enum cd_err scalar_dup(struct ld *l, const yaml_node_t *n, const char **out)
{
    char *s;

    if (!is_scalar(n))
        return fail(l, n, "expected a string");
    if (memchr(n->data.scalar.value, '\0', n->data.scalar.length))
        return fail(l, n, "string contains a NUL byte");
    s = cd_arena_strndup(&l->set->arena, (const char *)n->data.scalar.value,
                         n->data.scalar.length);
    if (s == NULL)
        return CD_ERR_NOMEM;
    *out = s;
    return CD_OK;
}

static enum cd_err parse_uint(struct ld *l, const yaml_node_t *n, uint32_t max, uint32_t *out)
{
    char buf[24];
    char *end;
    unsigned long v;

    if (!is_scalar(n) || n->data.scalar.length == 0 || n->data.scalar.length >= sizeof buf)
        return fail(l, n, "expected a whole number");
    memcpy(buf, n->data.scalar.value, n->data.scalar.length);
    buf[n->data.scalar.length] = '\0';
    errno = 0;
    v = strtoul(buf, &end, 10);
    if (errno || *end || buf[0] == '-' || v > max)
        return fail(l, n, "expected a whole number in range");
    *out = (uint32_t)v;
    return CD_OK;
}

static enum cd_err parse_double(struct ld *l, const yaml_node_t *n, double lo, double hi,
                                double *out)
{
    char buf[32];
    char *end;
    double v;

    if (!is_scalar(n) || n->data.scalar.length == 0 || n->data.scalar.length >= sizeof buf)
        return fail(l, n, "expected a number");
    memcpy(buf, n->data.scalar.value, n->data.scalar.length);
    buf[n->data.scalar.length] = '\0';
    errno = 0;
    v = strtod(buf, &end);
    if (errno || *end || !(v >= lo && v <= hi))
        return fail(l, n, "expected a number in range");
    *out = v;
    return CD_OK;
}

static int hexval(unsigned char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* One byte of a byte-set body at s[*i]: a literal, or \xHH, or \ and a literal. Returns -1 on
 * a malformed escape. */
static int set_byte(const unsigned char *s, size_t n, size_t *i)
{
    if (s[*i] != '\\')
        return s[(*i)++];
    if (*i + 1 >= n)
        return -1;
    if (s[*i + 1] == 'x') {
        int h, lo;
        if (*i + 3 >= n || (h = hexval(s[*i + 2])) < 0 || (lo = hexval(s[*i + 3])) < 0)
            return -1;
        *i += 4;
        return h * 16 + lo;
    }
    *i += 2;
    return s[*i - 1];
}

/* A set of bytes written like the inside of a regular-expression class: "a-z0-9._%+\x80-\xff-"
 * (ranges, \xHH escapes, a literal "-" first or last). Letters stand for both cases. */
static enum cd_err parse_byteset(struct ld *l, const yaml_node_t *n, uint8_t set[32])
{
    const unsigned char *s;
    size_t len, i = 0;

    if (!is_scalar(n) || n->data.scalar.length == 0 || n->data.scalar.length > 200)
        return fail(l, n, "extend_left must be a class of bytes like \"a-z0-9._-\"");
    s = n->data.scalar.value;
    len = n->data.scalar.length;
    memset(set, 0, 32);
    while (i < len) {
        int a = set_byte(s, len, &i), b;
        if (a < 0)
            return fail(l, n, "extend_left: bad escape (use \\xHH)");
        b = a;
        if (i + 1 < len && s[i] == '-') {
            i++;
            if ((b = set_byte(s, len, &i)) < 0 || b < a)
                return fail(l, n, "extend_left: bad range");
        }
        for (int c = a; c <= b; c++) {
            set[c >> 3] |= (uint8_t)(1u << (c & 7));
            if (c >= 'a' && c <= 'z')
                set[(c - 32) >> 3] |= (uint8_t)(1u << ((c - 32) & 7));
        }
    }
    return CD_OK;
}

static enum cd_err parse_bool(struct ld *l, const yaml_node_t *n, bool *out)
{
    if (cd_yaml_scalar_is(n, "true") || cd_yaml_scalar_is(n, "yes") || cd_yaml_scalar_is(n, "on"))
        *out = true;
    else if (cd_yaml_scalar_is(n, "false") || cd_yaml_scalar_is(n, "no") ||
             cd_yaml_scalar_is(n, "off"))
        *out = false;
    else
        return fail(l, n, "expected true or false");
    return CD_OK;
}

static enum cd_err parse_severity(struct ld *l, const yaml_node_t *n,
                                  enum cd_guard_severity *out)
{
    if (cd_yaml_scalar_is(n, "info"))
        *out = CD_GUARD_INFO;
    else if (cd_yaml_scalar_is(n, "warn"))
        *out = CD_GUARD_SEV_WARN;
    else if (cd_yaml_scalar_is(n, "block"))
        *out = CD_GUARD_SEV_BLOCK;
    else
        return fail(l, n, "severity must be info, warn or block");
    return CD_OK;
}

/* A list of strings; a single scalar counts as a list of one. Copies into the arena. */
static enum cd_err string_list(struct ld *l, const yaml_node_t *n, const char ***out, size_t *cnt)
{
    size_t count, i = 0;
    const char **v;
    enum cd_err err;

    if (is_scalar(n)) {
        if ((v = cd_arena_alloc(&l->set->arena, sizeof *v)) == NULL)
            return CD_ERR_NOMEM;
        if ((err = scalar_dup(l, n, &v[0])) != CD_OK)
            return err;
        *out = v;
        *cnt = 1;
        return CD_OK;
    }
    if (!n || n->type != YAML_SEQUENCE_NODE)
        return fail(l, n, "expected a list of strings");
    count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count > CD__GUARD_MAX_PATTERNS)
        return fail(l, n, "list too long");
    if ((v = cd_arena_alloc(&l->set->arena, (count ? count : 1) * sizeof *v)) == NULL)
        return CD_ERR_NOMEM;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++)
        if ((err = scalar_dup(l, node(l, *it), &v[i++])) != CD_OK)
            return err;
    *out = v;
    *cnt = count;
    return CD_OK;
}

/* Turns a literal phrase into a pattern: metacharacters escaped, runs of spaces match any
 * whitespace, and word boundaries at ends that are word characters. */
static enum cd_err phrase_regex(struct ld *l, const char *ph, const char **out)
{
    struct cd_buf b = CD_BUF_INIT(CD__GUARD_MAX_PATTERN_LEN * 4);
    enum cd_err err = CD_OK;
    size_t n = strlen(ph);
    char *s;

    while (n && ph[n - 1] == ' ')
        n--;
    while (n && *ph == ' ')
        ph++, n--;
    if (n == 0) {
        err = CD_ERR_INVALID;
        goto out;
    }
#define ISW(c) (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z') || \
                ((c) >= '0' && (c) <= '9') || (c) == '_')
    if (ISW(ph[0]) && (err = cd_buf_puts(&b, "\\b")) != CD_OK)
        goto out;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)ph[i];
        if (c == ' ') {
            while (i + 1 < n && ph[i + 1] == ' ')
                i++;
            err = cd_buf_puts(&b, "\\s+");
        } else if (c == '\'') {
            err = cd_buf_puts(&b, "'?"); /* "dont" and "don't" alike */
        } else if (strchr("\\^$.|?*+()[]{}/-#", c)) {
            if ((err = cd_buf_putc(&b, '\\')) == CD_OK)
                err = cd_buf_putc(&b, (char)c);
        } else {
            err = cd_buf_putc(&b, (char)(c >= 'A' && c <= 'Z' ? c + 32 : c));
        }
        if (err != CD_OK)
            goto out;
    }
    if (ISW(ph[n - 1]) && (err = cd_buf_puts(&b, "\\b")) != CD_OK)
        goto out;
#undef ISW
    if ((s = cd_arena_strndup(&l->set->arena, b.p, b.len)) == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    *out = s;
out:
    cd_buf_free(&b);
    return err;
}

static enum cd_err add_pat(struct ld *l, const yaml_node_t *at, const char *expr, uint32_t rule,
                           const char *term, const char *repl, uint32_t *id)
{
    struct cd__guard_set *s = l->set;

    if (strlen(expr) > CD__GUARD_MAX_PATTERN_LEN)
        return fail(l, at, "pattern too long");
    if (expr[0] == '\0')
        return fail(l, at, "empty pattern");
    if (rule == CD__GUARD_NO_RULE) {
        /* Context patterns are shared between rules: one Hyperscan id per distinct text. */
        for (size_t i = 0; i < s->npats; i++)
            if (s->pats[i].rule == CD__GUARD_NO_RULE && strcmp(s->pats[i].expr, expr) == 0) {
                *id = (uint32_t)i;
                return CD_OK;
            }
    }
    if (s->npats >= CD__GUARD_MAX_PATTERNS)
        return cd_err_set(CD_ERR_TOO_BIG, "%s: more than %u patterns", l->file,
                          CD__GUARD_MAX_PATTERNS);
    if (s->npats == s->cappats) {
        size_t nc = s->cappats ? s->cappats * 2 : 256;
        struct cd__guard_pat *np = cd_realloc(s->pats, nc * sizeof *np);
        if (np == NULL)
            return CD_ERR_NOMEM;
        s->pats = np;
        s->cappats = nc;
    }
    s->pats[s->npats] = (struct cd__guard_pat){expr, repl, term, rule,
                                               (int)at->start_mark.line + 1, l->file};
    *id = (uint32_t)s->npats++;
    return CD_OK;
}

/* patterns: regex list, phrases: literal list; both add main patterns of rule ri. */
static enum cd_err add_list(struct ld *l, const yaml_node_t *n, bool phrases, uint32_t ri,
                            uint32_t **ids, size_t *nids)
{
    const char **v;
    size_t cnt, base = nids ? *nids : 0;
    enum cd_err err;

    if ((err = string_list(l, n, &v, &cnt)) != CD_OK)
        return err;
    if (ids) {
        uint32_t *nv = cd_arena_alloc(&l->set->arena, (base + cnt + 1) * sizeof *nv);
        if (nv == NULL)
            return CD_ERR_NOMEM;
        if (base)
            memcpy(nv, *ids, base * sizeof *nv);
        *ids = nv;
    }
    for (size_t i = 0; i < cnt; i++) {
        const char *expr = v[i];
        uint32_t id;
        if (phrases && (err = phrase_regex(l, v[i], &expr)) != CD_OK)
            return err == CD_ERR_INVALID ? fail(l, n, "empty phrase") : err;
        if ((err = add_pat(l, n, expr, ri, NULL, NULL, &id)) != CD_OK)
            return err;
        if (ids)
            (*ids)[(*nids)++] = id;
    }
    return CD_OK;
}

static enum cd_err parse_ctx(struct ld *l, const yaml_node_t *n, struct cd__guard_ctx *c)
{
    enum cd_err err;

    if (n && n->type == YAML_SEQUENCE_NODE)
        return add_list(l, n, false, CD__GUARD_NO_RULE, &c->pats, &c->npats);
    if (!n || n->type != YAML_MAPPING_NODE)
        return fail(l, n, "context must be a list of patterns or a mapping");
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(l, p->key), *v = node(l, p->value);
        if (cd_yaml_scalar_is(k, "patterns"))
            err = add_list(l, v, false, CD__GUARD_NO_RULE, &c->pats, &c->npats);
        else if (cd_yaml_scalar_is(k, "phrases"))
            err = add_list(l, v, true, CD__GUARD_NO_RULE, &c->pats, &c->npats);
        else if (cd_yaml_scalar_is(k, "before"))
            err = parse_uint(l, v, 10000, &c->before);
        else if (cd_yaml_scalar_is(k, "after"))
            err = parse_uint(l, v, 10000, &c->after);
        else if (cd_yaml_scalar_is(k, "sentence"))
            err = parse_bool(l, v, &c->sentence);
        else
            err = fail(l, k, "unknown key in context (patterns, phrases, before, after, sentence)");
        if (err != CD_OK)
            return err;
    }
    if (c->npats == 0)
        return fail(l, n, "context has no patterns");
    return CD_OK;
}

struct defaults {
    const char *category;
    enum cd_guard_severity severity;
    bool has_severity;
    const yaml_node_t *scope, *channels, *references;
};

static bool id_ok(const yaml_node_t *n)
{
    size_t len = n->data.scalar.length;
    const unsigned char *s = n->data.scalar.value;
    bool dot = false;

    if (len == 0 || len > 64 || s[0] < 'A' || s[0] > 'Z')
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        if (c == '.') {
            if (i + 1 == len || s[i + 1] == '.')
                return false;
            dot = true;
        } else if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) {
            return false;
        }
    }
    return dot;
}

static enum cd_err parse_scope(struct ld *l, const yaml_node_t *n, struct cd__guard_rule *r)
{
    const char **v;
    size_t cnt;
    enum cd_err err;

    if ((err = string_list(l, n, &v, &cnt)) != CD_OK)
        return err;
    r->inbound = r->outbound = false;
    for (size_t i = 0; i < cnt; i++) {
        if (strcmp(v[i], "inbound") == 0)
            r->inbound = true;
        else if (strcmp(v[i], "outbound") == 0)
            r->outbound = true;
        else
            return fail(l, n, "scope must be inbound and/or outbound");
    }
    return CD_OK;
}

static enum cd_err parse_channels(struct ld *l, const yaml_node_t *n, struct cd__guard_rule *r)
{
    enum cd_err err;

    if ((err = string_list(l, n, &r->channels, &r->nchannels)) != CD_OK)
        return err;
    for (size_t i = 0; i < r->nchannels; i++)
        if (strcmp(r->channels[i], "all") == 0) {
            r->channels = NULL;
            r->nchannels = 0;
            break;
        }
    return CD_OK;
}

/* A lower-case name such as a purpose or channel ("marketing", "sms"). */
static bool name_ok(const char *s)
{
    if (*s < 'a' || *s > 'z' || strlen(s) > 64)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    return true;
}

static enum cd_err name_list(struct ld *l, const yaml_node_t *n, const char *what,
                             const char ***out, size_t *cnt)
{
    enum cd_err err = string_list(l, n, out, cnt);

    for (size_t i = 0; err == CD_OK && i < *cnt; i++)
        if (!name_ok((*out)[i])) {
            char msg[160];
            snprintf(msg, sizeof msg, "%s must be lower-case names (a-z, 0-9, _)", what);
            err = fail(l, n, msg);
        }
    return err;
}

/* One policy entry: {purpose, channel, direction, severity}, and with sel (at the top of a
 * pack) the selectors rules and categories, of which at least one is required. */
static enum cd_err parse_pol(struct ld *l, const yaml_node_t *n, struct cd__guard_pol *p,
                             struct cd__guard_setpol *sel)
{
    enum cd_err err = CD_OK;
    bool has_sev = false;

    if (!n || n->type != YAML_MAPPING_NODE)
        return fail(l, n, "a policy entry is a mapping (purpose, channel, direction, severity)");
    for (yaml_node_pair_t *q = n->data.mapping.pairs.start; q < n->data.mapping.pairs.top; q++) {
        yaml_node_t *k = node(l, q->key), *v = node(l, q->value);
        if (cd_yaml_scalar_is(k, "purpose"))
            err = name_list(l, v, "purpose", &p->purposes, &p->npurposes);
        else if (cd_yaml_scalar_is(k, "channel"))
            err = name_list(l, v, "channel", &p->channels, &p->nchannels);
        else if (cd_yaml_scalar_is(k, "direction")) {
            if (cd_yaml_scalar_is(v, "outbound"))
                p->dir = CD__GUARD_OUT;
            else if (cd_yaml_scalar_is(v, "inbound"))
                p->dir = CD__GUARD_IN;
            else
                err = fail(l, v, "direction must be inbound or outbound");
        } else if (cd_yaml_scalar_is(k, "severity")) {
            err = parse_severity(l, v, &p->severity);
            has_sev = true;
        } else if (sel && cd_yaml_scalar_is(k, "rules"))
            err = string_list(l, v, &sel->rules, &sel->nrules);
        else if (sel && cd_yaml_scalar_is(k, "categories"))
            err = string_list(l, v, &sel->categories, &sel->ncategories);
        else
            err = fail(l, k, sel ? "unknown key in policy (rules, categories, purpose, channel, "
                                   "direction, severity)"
                                 : "unknown key in policy (purpose, channel, direction, "
                                   "severity)");
        if (err != CD_OK)
            return err;
    }
    if (!has_sev)
        return fail(l, n, "a policy entry needs a severity (info, warn or block)");
    if (sel && sel->nrules == 0 && sel->ncategories == 0)
        return fail(l, n, "a pack's policy entry names the rules or categories it applies to");
    return CD_OK;
}

/* A rule's "policy": a list of entries into r->pol. */
static enum cd_err parse_rule_pol(struct ld *l, const yaml_node_t *n, struct cd__guard_rule *r)
{
    size_t cnt;
    enum cd_err err;

    if (!n || n->type != YAML_SEQUENCE_NODE)
        return fail(l, n, "policy must be a list of entries");
    cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if ((r->pol = cd_arena_alloc(&l->set->arena, (cnt ? cnt : 1) * sizeof *r->pol)) == NULL)
        return CD_ERR_NOMEM;
    memset(r->pol, 0, (cnt ? cnt : 1) * sizeof *r->pol);
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++)
        if ((err = parse_pol(l, node(l, *it), &r->pol[r->npol++], NULL)) != CD_OK)
            return err;
    return CD_OK;
}

/* A pack's top-level "policy": entries kept in the set until every pack is loaded. */
static enum cd_err parse_set_pol(struct ld *l, const yaml_node_t *n)
{
    struct cd__guard_set *s = l->set;
    enum cd_err err;

    if (!n || n->type != YAML_SEQUENCE_NODE)
        return fail(l, n, "policy must be a list of entries");
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        struct cd__guard_setpol sp = {0};
        const yaml_node_t *e = node(l, *it);
        if ((err = parse_pol(l, e, &sp.pol, &sp)) != CD_OK)
            return err;
        sp.file = l->file;
        sp.line = (int)cd_yaml_line(e);
        if (s->nsetpol >= CD__GUARD_MAX_RULES)
            return cd_err_set(CD_ERR_TOO_BIG, "%s: more than %u policy entries", l->file,
                              CD__GUARD_MAX_RULES);
        if (s->nsetpol == s->capsetpol) {
            size_t nc = s->capsetpol ? s->capsetpol * 2 : 16;
            struct cd__guard_setpol *np = cd_realloc(s->setpol, nc * sizeof *np);
            if (np == NULL)
                return CD_ERR_NOMEM;
            s->setpol = np;
            s->capsetpol = nc;
        }
        s->setpol[s->nsetpol++] = sp;
    }
    return CD_OK;
}

static bool selects(const struct cd__guard_setpol *sp, const struct cd__guard_rule *r)
{
    for (size_t i = 0; i < sp->nrules; i++) {
        size_t n = strlen(sp->rules[i]);
        if (n && sp->rules[i][n - 1] == '*' ? strncmp(sp->rules[i], r->id, n - 1) == 0
                                            : strcmp(sp->rules[i], r->id) == 0)
            return true;
    }
    for (size_t i = 0; i < sp->ncategories; i++)
        if (strcmp(sp->categories[i], r->category) == 0)
            return true;
    return false;
}

enum cd_err cd__guard_apply_policy(struct cd__guard_set *s)
{
    /* Every selector must name something, so a misspelt rule id fails the load instead of
     * silently leaving the default in force. */
    for (size_t k = 0; k < s->nsetpol; k++) {
        const struct cd__guard_setpol *sp = &s->setpol[k];
        const char *what = NULL, *kind = NULL;
        for (size_t i = 0; i < sp->nrules && !what; i++) {
            struct cd__guard_setpol one = {.rules = &sp->rules[i], .nrules = 1};
            size_t j = 0;
            while (j < s->nrules && !selects(&one, &s->rules[j]))
                j++;
            if (j == s->nrules) {
                what = sp->rules[i];
                kind = "rule";
            }
        }
        for (size_t i = 0; i < sp->ncategories && !what; i++) {
            struct cd__guard_setpol one = {.categories = &sp->categories[i], .ncategories = 1};
            size_t j = 0;
            while (j < s->nrules && !selects(&one, &s->rules[j]))
                j++;
            if (j == s->nrules) {
                what = sp->categories[i];
                kind = "category";
            }
        }
        if (what)
            return cd_err_set(CD_ERR_INVALID, "%s:%d: policy names the %s %s, which no loaded "
                                              "rule has",
                              sp->file, sp->line, kind, what);
    }
    for (size_t j = 0; j < s->nrules && s->nsetpol; j++) {
        struct cd__guard_rule *r = &s->rules[j];
        size_t add = 0;
        struct cd__guard_pol *np;
        for (size_t k = 0; k < s->nsetpol; k++)
            add += selects(&s->setpol[k], r);
        if (add == 0)
            continue;
        if ((np = cd_arena_alloc(&s->arena, (r->npol + add) * sizeof *np)) == NULL)
            return CD_ERR_NOMEM;
        if (r->npol)
            memcpy(np, r->pol, r->npol * sizeof *np);
        for (size_t k = 0; k < s->nsetpol; k++)
            if (selects(&s->setpol[k], r))
                np[r->npol++] = s->setpol[k].pol;
        r->pol = np;
    }
    return CD_OK;
}

static const struct {
    const char *name;
    enum cd__guard_validator v;
} validators[] = {
    {"card", CD__GUARD_V_CARD},   {"luhn", CD__GUARD_V_LUHN},       {"iban", CD__GUARD_V_IBAN},
    {"ssn", CD__GUARD_V_SSN},     {"bsn", CD__GUARD_V_BSN},         {"aadhaar", CD__GUARD_V_AADHAAR},
    {"cpf", CD__GUARD_V_CPF},     {"dni", CD__GUARD_V_DNI},         {"nino", CD__GUARD_V_NINO},
    {"aba", CD__GUARD_V_ABA},     {"phone", CD__GUARD_V_PHONE},     {"email", CD__GUARD_V_EMAIL},
    {"address", CD__GUARD_V_ADDRESS}, {"phone_local", CD__GUARD_V_PHONE_LOCAL},
};

static enum cd_err parse_rule(struct ld *l, const yaml_node_t *n, const struct defaults *d)
{
    struct cd__guard_set *s = l->set;
    struct cd__guard_rule r = {0};
    uint32_t ri = (uint32_t)s->nrules;
    const yaml_node_t *kind = NULL, *patterns = NULL, *phrases = NULL, *swap = NULL,
                      *context = NULL, *unless = NULL, *idn = NULL;
    bool has_sev = d->has_severity, has_max = false, has_grade = false, enabled = true;
    enum cd_err err = CD_OK;

    l->rule_id = NULL;
    if (!n || n->type != YAML_MAPPING_NODE)
        return fail(l, n, "each rule must be a mapping");
    r.line = (int)n->start_mark.line + 1;
    r.file = l->file;
    r.category = d->category;
    r.severity = d->severity;
    r.outbound = true;
    r.message = r.suggestion = "";
    r.min_words = 30;
    r.min_letters = 20;
    r.context.before = r.context.after = 60;
    /* The id first, so every later error can name the rule. */
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++)
        if (cd_yaml_scalar_is(node(l, p->key), "id"))
            idn = node(l, p->value);
    if (!idn || !is_scalar(idn) || !id_ok(idn))
        return fail(l, idn ? idn : n, "rule needs an id like PII.CARD (A-Z, 0-9, _ and dots)");
    if ((err = scalar_dup(l, idn, &r.id)) != CD_OK)
        return err;
    l->rule_id = r.id;
    for (size_t i = 0; i < s->nrules; i++)
        if (strcmp(s->rules[i].id, r.id) == 0) {
            char what[300];
            snprintf(what, sizeof what, "duplicate id (first defined at %s:%d)", s->rules[i].file,
                     s->rules[i].line);
            return fail(l, idn, what);
        }
    if (d->scope && (err = parse_scope(l, d->scope, &r)) != CD_OK)
        return err;
    if (d->channels && (err = parse_channels(l, d->channels, &r)) != CD_OK)
        return err;
    if (d->references && (err = string_list(l, d->references, &r.refs, &r.nrefs)) != CD_OK)
        return err;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(l, p->key), *v = node(l, p->value);
        if (cd_yaml_scalar_is(k, "id"))
            continue;
        else if (cd_yaml_scalar_is(k, "kind"))
            kind = v;
        else if (cd_yaml_scalar_is(k, "category"))
            err = scalar_dup(l, v, &r.category);
        else if (cd_yaml_scalar_is(k, "severity")) {
            err = parse_severity(l, v, &r.severity);
            has_sev = true;
        } else if (cd_yaml_scalar_is(k, "message"))
            err = scalar_dup(l, v, &r.message);
        else if (cd_yaml_scalar_is(k, "suggestion"))
            err = scalar_dup(l, v, &r.suggestion);
        else if (cd_yaml_scalar_is(k, "references"))
            err = string_list(l, v, &r.refs, &r.nrefs);
        else if (cd_yaml_scalar_is(k, "scope"))
            err = parse_scope(l, v, &r);
        else if (cd_yaml_scalar_is(k, "channels"))
            err = parse_channels(l, v, &r);
        else if (cd_yaml_scalar_is(k, "channel_severity")) {
            if (!v || v->type != YAML_MAPPING_NODE) {
                err = fail(l, v, "channel_severity must map channels to severities");
            } else {
                size_t cnt = (size_t)(v->data.mapping.pairs.top - v->data.mapping.pairs.start);
                r.chsev = cd_arena_alloc(&s->arena, (cnt ? cnt : 1) * sizeof *r.chsev);
                if (r.chsev == NULL)
                    return CD_ERR_NOMEM;
                for (yaml_node_pair_t *q = v->data.mapping.pairs.start;
                     err == CD_OK && q < v->data.mapping.pairs.top; q++) {
                    err = scalar_dup(l, node(l, q->key), &r.chsev[r.nchsev].channel);
                    if (err == CD_OK)
                        err = parse_severity(l, node(l, q->value), &r.chsev[r.nchsev++].severity);
                }
            }
        } else if (cd_yaml_scalar_is(k, "policy"))
            err = parse_rule_pol(l, v, &r);
        else if (cd_yaml_scalar_is(k, "patterns"))
            patterns = v;
        else if (cd_yaml_scalar_is(k, "phrases"))
            phrases = v;
        else if (cd_yaml_scalar_is(k, "swap"))
            swap = v;
        else if (cd_yaml_scalar_is(k, "validator")) {
            size_t i;
            for (i = 0; i < sizeof validators / sizeof validators[0]; i++)
                if (cd_yaml_scalar_is(v, validators[i].name))
                    break;
            if (i == sizeof validators / sizeof validators[0])
                err = fail(l, v, "unknown validator (card, luhn, iban, ssn, bsn, aadhaar, cpf, "
                                 "dni, nino, aba, phone, email, address)");
            else
                r.validator = validators[i].v;
        } else if (cd_yaml_scalar_is(k, "extend_left")) {
            err = parse_byteset(l, v, r.extend_left);
            r.has_extend_left = true;
        } else if (cd_yaml_scalar_is(k, "redact"))
            err = scalar_dup(l, v, &r.redact);
        else if (cd_yaml_scalar_is(k, "context"))
            context = v;
        else if (cd_yaml_scalar_is(k, "unless"))
            unless = v;
        else if (cd_yaml_scalar_is(k, "max_grade")) {
            err = parse_double(l, v, 0, 100, &r.max_grade);
            has_grade = true;
        } else if (cd_yaml_scalar_is(k, "min_words"))
            err = parse_uint(l, v, 1000000, &r.min_words);
        else if (cd_yaml_scalar_is(k, "measure")) {
            if (cd_yaml_scalar_is(v, "count"))
                r.measure = CD__GUARD_COUNT;
            else if (cd_yaml_scalar_is(v, "uppercase"))
                r.measure = CD__GUARD_UPPERCASE;
            else
                err = fail(l, v, "measure must be count or uppercase");
        } else if (cd_yaml_scalar_is(k, "max")) {
            has_max = true;
            err = parse_double(l, v, 0, 1000000, &r.max_ratio);
            r.max_count = (uint32_t)r.max_ratio;
        } else if (cd_yaml_scalar_is(k, "min_letters"))
            err = parse_uint(l, v, 1000000, &r.min_letters);
        else if (cd_yaml_scalar_is(k, "enabled"))
            err = parse_bool(l, v, &enabled);
        else
            err = fail(l, k, "unknown key in rule");
        if (err != CD_OK)
            return err;
    }
    if (!has_sev)
        return fail(l, n, "missing severity (info, warn or block)");
    if (r.category == NULL)
        return fail(l, n, "missing category");
    if (!r.inbound && !r.outbound)
        return fail(l, n, "empty scope");
    if (!kind)
        return fail(l, n, "missing kind (existence, substitution, pii, readability, occurrence)");
    if (cd_yaml_scalar_is(kind, "existence"))
        r.kind = CD__GUARD_EXISTENCE;
    else if (cd_yaml_scalar_is(kind, "substitution"))
        r.kind = CD__GUARD_SUBSTITUTION;
    else if (cd_yaml_scalar_is(kind, "pii"))
        r.kind = CD__GUARD_PII;
    else if (cd_yaml_scalar_is(kind, "readability"))
        r.kind = CD__GUARD_READABILITY;
    else if (cd_yaml_scalar_is(kind, "occurrence"))
        r.kind = CD__GUARD_OCCURRENCE;
    else
        return fail(l, kind, "unknown kind (existence, substitution, pii, readability, "
                             "occurrence)");
    if (!enabled)
        return CD_OK;
    switch (r.kind) {
    case CD__GUARD_EXISTENCE:
    case CD__GUARD_PII:
        if (!patterns && !phrases)
            return fail(l, n, "needs patterns or phrases");
        break;
    case CD__GUARD_SUBSTITUTION:
        if (!swap || swap->type != YAML_MAPPING_NODE ||
            swap->data.mapping.pairs.top == swap->data.mapping.pairs.start)
            return fail(l, swap ? swap : n, "substitution needs a swap mapping (word: better)");
        break;
    case CD__GUARD_READABILITY:
        if (!has_grade)
            return fail(l, n, "readability needs max_grade");
        break;
    case CD__GUARD_OCCURRENCE:
        if (!has_max)
            return fail(l, n, "occurrence needs max");
        if (r.measure == CD__GUARD_COUNT && !patterns && !phrases)
            return fail(l, n, "occurrence by count needs patterns or phrases");
        break;
    }
    if (r.kind == CD__GUARD_PII && r.redact == NULL) {
        const char *dot = strrchr(r.id, '.');
        char tag[65];
        size_t k = 0;
        for (const char *c = dot + 1; *c && k < sizeof tag - 1; c++)
            tag[k++] = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
        tag[k] = '\0';
        if ((r.redact = cd_arena_strndup(&s->arena, tag, k)) == NULL)
            return CD_ERR_NOMEM;
    }
    if (patterns && (err = add_list(l, patterns, false, ri, NULL, NULL)) != CD_OK)
        return err;
    if (phrases && (err = add_list(l, phrases, true, ri, NULL, NULL)) != CD_OK)
        return err;
    if (swap) {
        for (yaml_node_pair_t *p = swap->data.mapping.pairs.start;
             p < swap->data.mapping.pairs.top; p++) {
            const char *term, *better, *expr;
            uint32_t id;
            if ((err = scalar_dup(l, node(l, p->key), &term)) != CD_OK ||
                (err = scalar_dup(l, node(l, p->value), &better)) != CD_OK)
                return err;
            if ((err = phrase_regex(l, term, &expr)) != CD_OK)
                return err == CD_ERR_INVALID ? fail(l, node(l, p->key), "empty word") : err;
            if ((err = add_pat(l, node(l, p->key), expr, ri, term, better, &id)) != CD_OK)
                return err;
        }
    }
    if (context && (err = parse_ctx(l, context, &r.context)) != CD_OK)
        return err;
    if (unless && unless->type == YAML_SEQUENCE_NODE &&
        unless->data.sequence.items.top > unless->data.sequence.items.start &&
        node(l, *unless->data.sequence.items.start) &&
        node(l, *unless->data.sequence.items.start)->type == YAML_MAPPING_NODE) {
        /* A list of windows, each with its own patterns and distances. */
        for (yaml_node_item_t *it = unless->data.sequence.items.start;
             it < unless->data.sequence.items.top; it++) {
            if (r.nunless == CD__GUARD_MAX_UNLESS)
                return fail(l, unless, "at most 4 unless windows");
            r.unless[r.nunless].before = 30;
            if ((err = parse_ctx(l, node(l, *it), &r.unless[r.nunless++])) != CD_OK)
                return err;
        }
    } else if (unless) {
        r.unless[0].before = 30;
        r.nunless = 1;
        if ((err = parse_ctx(l, unless, &r.unless[0])) != CD_OK)
            return err;
    }
    if (s->nrules >= CD__GUARD_MAX_RULES)
        return cd_err_set(CD_ERR_TOO_BIG, "%s: more than %u rules", l->file, CD__GUARD_MAX_RULES);
    if (s->nrules == s->caprules) {
        size_t nc = s->caprules ? s->caprules * 2 : 64;
        struct cd__guard_rule *nr = cd_realloc(s->rules, nc * sizeof *nr);
        if (nr == NULL)
            return CD_ERR_NOMEM;
        s->rules = nr;
        s->caprules = nc;
    }
    s->rules[s->nrules++] = r;
    return CD_OK;
}

static enum cd_err parse_defaults(struct ld *l, const yaml_node_t *n, struct defaults *d)
{
    enum cd_err err = CD_OK;

    if (!n || n->type != YAML_MAPPING_NODE)
        return fail(l, n, "defaults must be a mapping");
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(l, p->key), *v = node(l, p->value);
        if (cd_yaml_scalar_is(k, "category"))
            err = scalar_dup(l, v, &d->category);
        else if (cd_yaml_scalar_is(k, "severity")) {
            err = parse_severity(l, v, &d->severity);
            d->has_severity = true;
        } else if (cd_yaml_scalar_is(k, "scope"))
            d->scope = v;
        else if (cd_yaml_scalar_is(k, "channels"))
            d->channels = v;
        else if (cd_yaml_scalar_is(k, "references"))
            d->references = v;
        else
            err = fail(l, k, "unknown key in defaults (category, severity, scope, channels, "
                             "references)");
        if (err != CD_OK)
            return err;
    }
    return CD_OK;
}

enum cd_err cd__guard_load_yaml(struct cd__guard_set *set, const char *name, const char *data,
                                size_t len)
{
    struct cd_yaml y = {NULL, NULL};
    struct ld l = {set, NULL, NULL, NULL};
    struct defaults d = {0};
    const yaml_node_t *root, *rules = NULL;
    enum cd_err err = CD_OK;

    if ((l.file = cd_arena_strndup(&set->arena, name, strlen(name))) == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    if (len > CD__GUARD_MAX_FILE) {
        err = cd_err_set(CD_ERR_TOO_BIG, "%s: rule file above %u bytes", name,
                         CD__GUARD_MAX_FILE);
        goto out;
    }
    if ((err = cd_yaml_parse(&y, l.file, data, len)) != CD_OK)
        goto out;
    l.doc = y.doc;
    if ((root = cd_yaml_root(&y)) == NULL)
        goto out; /* an empty file holds no rules */
    if (root->type != YAML_MAPPING_NODE) {
        err = fail(&l, root, "a rule file is a mapping with pack, defaults and rules");
        goto out;
    }
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node(&l, p->key), *v = node(&l, p->value);
        if (cd_yaml_scalar_is(k, "pack") || cd_yaml_scalar_is(k, "description")) {
            if (!is_scalar(v)) {
                err = fail(&l, v, "pack and description must be strings");
                goto out;
            }
        } else if (cd_yaml_scalar_is(k, "defaults")) {
            if ((err = parse_defaults(&l, v, &d)) != CD_OK)
                goto out;
        } else if (cd_yaml_scalar_is(k, "rules")) {
            rules = v;
        } else if (cd_yaml_scalar_is(k, "policy")) {
            if ((err = parse_set_pol(&l, v)) != CD_OK)
                goto out;
        } else {
            err = fail(&l, k, "unknown top-level key (pack, description, defaults, policy, "
                              "rules)");
            goto out;
        }
    }
    if (rules == NULL)
        goto out;
    if (rules->type != YAML_SEQUENCE_NODE) {
        err = fail(&l, rules, "rules must be a list");
        goto out;
    }
    for (yaml_node_item_t *it = rules->data.sequence.items.start;
         it < rules->data.sequence.items.top; it++)
        if ((err = parse_rule(&l, node(&l, *it), &d)) != CD_OK)
            goto out;
out:
    cd_yaml_free(&y);
    return err;
}

/* ---- the compiled-database cache ----
 * Compiling every pattern with start-of-match tracking takes seconds; the result depends only
 * on the expressions, their flags and the Hyperscan build. So the serialized database is kept
 * in a cache directory ($CANDOR_CACHE_DIR, else $XDG_CACHE_HOME/candor, else ~/.cache/candor)
 * under a BLAKE2b hash of exactly those inputs. A file that is not ours, is writable by others,
 * or does not deserialize is ignored and the set is compiled as before. */

static pthread_once_t hs_alloc_once = PTHREAD_ONCE_INIT;

static void set_hs_allocator(void)
{
    /* Hyperscan's serialized bytes and compile errors then come from our allocator. */
    hs_set_misc_allocator(cd_malloc, cd_free);
}

static bool cache_dir(char *out, size_t n)
{
    const char *d = getenv("CANDOR_CACHE_DIR"), *x = getenv("XDG_CACHE_HOME"),
               *h = getenv("HOME");
    int w;

    if (d && d[0])
        w = snprintf(out, n, "%s", d);
    else if (x && x[0])
        w = snprintf(out, n, "%s/candor", x);
    else if (h && h[0])
        w = snprintf(out, n, "%s/.cache/candor", h);
    else
        return false;
    return w > 0 && (size_t)w < n;
}

static bool cache_path(const char *const *exprs, const unsigned *flags, const unsigned *ids,
                       size_t n, char *out, size_t cap)
{
    crypto_generichash_state st;
    unsigned char key[32];
    char dir[3000], hex[65];
    const char *ver = hs_version();

    if (!cache_dir(dir, sizeof dir))
        return false;
    crypto_generichash_init(&st, NULL, 0, sizeof key);
    crypto_generichash_update(&st, (const unsigned char *)ver, strlen(ver) + 1);
    for (size_t i = 0; i < n; i++) {
        crypto_generichash_update(&st, (const unsigned char *)exprs[i], strlen(exprs[i]) + 1);
        crypto_generichash_update(&st, (const unsigned char *)&flags[i], sizeof flags[i]);
        crypto_generichash_update(&st, (const unsigned char *)&ids[i], sizeof ids[i]);
    }
    crypto_generichash_final(&st, key, sizeof key);
    cd_hex_encode(key, sizeof key, hex);
    int w = snprintf(out, cap, "%s/guard-%.32s.hsdb", dir, hex);
    return w > 0 && (size_t)w < cap;
}

static hs_database_t *cache_load(const char *path)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    hs_database_t *db = NULL;
    char *bytes = NULL;

    if (fd < 0)
        return NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
        (st.st_mode & 022) || st.st_size <= 0 || st.st_size > 256 * 1024 * 1024)
        goto out;
    if ((bytes = cd_malloc((size_t)st.st_size)) == NULL ||
        read(fd, bytes, (size_t)st.st_size) != st.st_size)
        goto out;
    if (hs_deserialize_database(bytes, (size_t)st.st_size, &db) != HS_SUCCESS)
        db = NULL;
out:
    cd_free(bytes);
    close(fd);
    return db;
}

static void cache_store(const char *path, const hs_database_t *db)
{
    char *bytes = NULL, tmp[3300], dir[3000];
    size_t len = 0;
    int fd = -1;

    if (!cache_dir(dir, sizeof dir) || hs_serialize_database(db, &bytes, &len) != HS_SUCCESS)
        return;
    /* mkdir -p, one level at a time; failures show up as a failed open below. */
    for (char *p = dir + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(dir, 0700);
            *p = '/';
        }
    mkdir(dir, 0700);
    snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0)
        goto out;
    if (write(fd, bytes, len) != (ssize_t)len || fsync(fd) != 0 || rename(tmp, path) != 0)
        unlink(tmp);
out:
    if (fd >= 0)
        close(fd);
    cd_free(bytes);
}

/* Compiles one database: n expressions with their flags and ids; pat[i] is expression i's index
 * in s->pats, for error details. Taken from the cache when it was compiled before. */
static enum cd_err compile_db(const struct cd__guard_set *s, const char *const *exprs,
                              const unsigned *flags, const unsigned *ids, const uint32_t *pat,
                              size_t n, hs_database_t **db)
{
    hs_compile_error_t *cerr = NULL;
    enum cd_err err = CD_OK;
    char cpath[3200];
    bool cacheable = cache_path(exprs, flags, ids, n, cpath, sizeof cpath);

    if (cacheable && (*db = cache_load(cpath)) != NULL)
        return CD_OK;
    if (hs_compile_multi(exprs, flags, ids, (unsigned)n, HS_MODE_BLOCK, NULL, db, &cerr) !=
        HS_SUCCESS) {
        if (cerr && cerr->expression >= 0 && (size_t)cerr->expression < n) {
            const struct cd__guard_pat *p = &s->pats[pat[cerr->expression]];
            const char *rid = p->rule == CD__GUARD_NO_RULE ? "(context pattern)"
                                                           : s->rules[p->rule].id;
            err = cd_err_set(CD_ERR_INVALID, "%s:%d: rule %s: pattern rejected: %s", p->file,
                             p->line, rid, cerr->message);
        } else {
            err = cd_err_set(CD_ERR_INVALID, "rule set rejected by Hyperscan: %s",
                             cerr ? cerr->message : "unknown error");
        }
        *db = NULL;
        if (cerr)
            hs_free_compile_error(cerr);
        return err;
    }
    if (cacheable)
        cache_store(cpath, *db);
    return CD_OK;
}

/* Adds pattern index k to the list (once). */
static void add_once(uint32_t *list, size_t *n, uint32_t k)
{
    for (size_t i = 0; i < *n; i++)
        if (list[i] == k)
            return;
    list[(*n)++] = k;
}

/* Two levels (see guard_int.h): the first pass is every rule's own patterns without
 * start-of-match, each reporting once, as the rule's index; each rule then has its own database
 * with start-of-match of its patterns and the context and unless patterns it looks at, scanned
 * only when the first pass found the rule. */
enum cd_err cd__guard_compile(struct cd__guard_set *s)
{
    enum cd_err err = CD_OK;
    const char **exprs = NULL;
    unsigned *flags = NULL, *ids = NULL;
    uint32_t *pat = NULL;
    size_t n = s->npats, m;

    if (n == 0)
        return CD_OK; /* nothing to scan: readability and uppercase rules still work */
    exprs = cd_malloc(n * sizeof *exprs);
    flags = cd_malloc(n * sizeof *flags);
    ids = cd_malloc(n * sizeof *ids);
    pat = cd_malloc(n * sizeof *pat);
    if (!exprs || !flags || !ids || !pat) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    pthread_once(&hs_alloc_once, set_hs_allocator);
    /* Each rule's database first, so an error names the rule of the pattern Hyperscan rejects,
     * as a start-of-match compile sees it. */
    for (size_t ri = 0; ri < s->nrules; ri++) {
        struct cd__guard_rule *r = &s->rules[ri];
        m = 0;
        for (size_t i = 0; i < n; i++)
            if (s->pats[i].rule == ri)
                pat[m++] = (uint32_t)i;
        if (m == 0)
            continue; /* readability and uppercase rules scan nothing */
        for (size_t k = 0; k < r->context.npats; k++)
            add_once(pat, &m, r->context.pats[k]);
        for (size_t u = 0; u < r->nunless; u++)
            for (size_t k = 0; k < r->unless[u].npats; k++)
                add_once(pat, &m, r->unless[u].pats[k]);
        for (size_t i = 0; i < m; i++) {
            exprs[i] = s->pats[pat[i]].expr;
            flags[i] = HS_FLAG_SOM_LEFTMOST | HS_FLAG_CASELESS;
            ids[i] = pat[i];
        }
        if ((err = compile_db(s, exprs, flags, ids, pat, m, &r->db)) != CD_OK)
            goto out;
        if (hs_alloc_scratch(r->db, &s->proto) != HS_SUCCESS) {
            err = CD_ERR_NOMEM;
            goto out;
        }
    }
    m = 0;
    for (size_t i = 0; i < n; i++) {
        if (s->pats[i].rule == CD__GUARD_NO_RULE)
            continue;
        exprs[m] = s->pats[i].expr;
        flags[m] = HS_FLAG_CASELESS | HS_FLAG_SINGLEMATCH;
        ids[m] = s->pats[i].rule;
        pat[m++] = (uint32_t)i;
    }
    if (m && (err = compile_db(s, exprs, flags, ids, pat, m, &s->db)) != CD_OK)
        goto out;
    if (s->db && hs_alloc_scratch(s->db, &s->proto) != HS_SUCCESS) {
        err = CD_ERR_NOMEM;
        goto out;
    }
out:
    cd_free(exprs);
    cd_free(flags);
    cd_free(ids);
    cd_free(pat);
    return err;
}

struct cd__guard_set *cd__guard_set_new(void)
{
    struct cd__guard_set *s = cd_calloc(1, sizeof *s);

    if (s == NULL)
        return NULL;
    atomic_init(&s->refs, 1);
    s->arena = CD_ARENA_INIT(0);
    pthread_mutex_init(&s->pool_lock, NULL);
    return s;
}

void cd__guard_set_unref(struct cd__guard_set *s)
{
    if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    for (size_t i = 0; i < s->npool; i++)
        hs_free_scratch(s->pool[i]);
    cd_free(s->pool);
    if (s->proto)
        hs_free_scratch(s->proto);
    if (s->db)
        hs_free_database(s->db);
    for (size_t i = 0; i < s->nrules; i++)
        if (s->rules[i].db)
            hs_free_database(s->rules[i].db);
    cd_free(s->rules);
    cd_free(s->pats);
    cd_free(s->setpol);
    cd_arena_free(&s->arena);
    pthread_mutex_destroy(&s->pool_lock);
    cd_free(s);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static enum cd_err read_file(const char *path, char **out, size_t *len)
{
    struct cd_buf b = CD_BUF_INIT(CD__GUARD_MAX_FILE);
    enum cd_err err = cd_buf_read_file(&b, path);

    if (err == CD_OK)
        *out = cd_buf_take(&b, len);
    else if (err == CD_ERR_TOO_BIG)
        cd_err_set(err, "%s: rule file above %u bytes", path, CD__GUARD_MAX_FILE);
    cd_buf_free(&b);
    return err;
}

static bool yaml_name(const char *n)
{
    size_t len = strlen(n);

    if (n[0] == '.')
        return false;
    return (len > 5 && strcmp(n + len - 5, ".yaml") == 0) ||
           (len > 4 && strcmp(n + len - 4, ".yml") == 0);
}

/* Loads every pack of dir into a new compiled set. */
static enum cd_err load_dir(const char *dir, struct cd__guard_set **out)
{
    enum cd_err err = CD_OK;
    struct cd__guard_set *s = NULL;
    DIR *d = NULL;
    struct dirent *e;
    char **names = NULL;
    size_t n = 0, cap = 0;
    char *data = NULL;

    if (dir == NULL)
        return cd_err_set(CD_ERR_INVALID, "no rules directory");
    if ((d = opendir(dir)) == NULL) {
        err = cd_err_set(CD_ERR_IO, "%s: cannot open rules directory: %s", dir, strerror(errno));
        goto out;
    }
    while ((e = readdir(d)) != NULL) {
        if (!yaml_name(e->d_name))
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char **nn = cd_realloc(names, nc * sizeof *nn);
            if (nn == NULL) {
                err = CD_ERR_NOMEM;
                goto out;
            }
            names = nn;
            cap = nc;
        }
        if ((names[n] = cd_strdup(e->d_name)) == NULL) {
            err = CD_ERR_NOMEM;
            goto out;
        }
        n++;
    }
    if (n)
        qsort(names, n, sizeof *names, cmp_names);
    if ((s = cd__guard_set_new()) == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        char path[CD_PATH_MAX];
        size_t len;
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, names[i]) >= sizeof path) {
            err = cd_err_set(CD_ERR_INVALID, "%s: path too long", names[i]);
            goto out;
        }
        if ((err = read_file(path, &data, &len)) != CD_OK)
            goto out;
        if ((err = cd__guard_load_yaml(s, path, data, len)) != CD_OK)
            goto out;
        cd_free(data);
        data = NULL;
    }
    if ((err = cd__guard_apply_policy(s)) != CD_OK || (err = cd__guard_compile(s)) != CD_OK)
        goto out;
    *out = s;
    s = NULL;
out:
    cd_free(data);
    for (size_t i = 0; i < n; i++)
        cd_free(names[i]);
    cd_free(names);
    if (d)
        closedir(d);
    cd__guard_set_unref(s);
    return err;
}

static enum cd_err guard_new(struct cd__guard_set *s, struct cd_guard **out)
{
    struct cd_guard *g = cd_calloc(1, sizeof *g);

    if (g == NULL)
        return CD_ERR_NOMEM;
    pthread_mutex_init(&g->lock, NULL);
    g->cur = s;
    *out = g;
    return CD_OK;
}

enum cd_err cd_guard_open(const char *rules_dir, struct cd_guard **out)
{
    struct cd__guard_set *s = NULL;
    enum cd_err err;

    if ((err = load_dir(rules_dir, &s)) != CD_OK)
        return err;
    if ((err = guard_new(s, out)) != CD_OK)
        cd__guard_set_unref(s);
    return err;
}

enum cd_err cd_guard_open_buffers(const char *const *names, const char *const *data,
                                  const size_t *lens, size_t n, struct cd_guard **out)
{
    struct cd__guard_set *s = cd__guard_set_new();
    enum cd_err err = CD_OK;

    if (s == NULL)
        return CD_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        if ((err = cd__guard_load_yaml(s, names[i], data[i], lens[i])) != CD_OK)
            goto out;
    if ((err = cd__guard_apply_policy(s)) != CD_OK || (err = cd__guard_compile(s)) != CD_OK)
        goto out;
    if ((err = guard_new(s, out)) != CD_OK)
        goto out;
    s = NULL;
out:
    cd__guard_set_unref(s);
    return err;
}

enum cd_err cd_guard_reload(struct cd_guard *g, const char *rules_dir)
{
    struct cd__guard_set *s = NULL, *old;
    enum cd_err err;

    if ((err = load_dir(rules_dir, &s)) != CD_OK)
        return err;
    pthread_mutex_lock(&g->lock);
    old = g->cur;
    g->cur = s;
    pthread_mutex_unlock(&g->lock);
    cd__guard_set_unref(old);
    return CD_OK;
}

void cd_guard_close(struct cd_guard *g)
{
    if (g == NULL)
        return;
    cd__guard_set_unref(g->cur);
    pthread_mutex_destroy(&g->lock);
    cd_free(g);
}

size_t cd_guard_rule_count(struct cd_guard *g)
{
    size_t n;

    pthread_mutex_lock(&g->lock);
    n = g->cur->nrules;
    pthread_mutex_unlock(&g->lock);
    return n;
}
