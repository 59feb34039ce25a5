/* YAML documents for the loaders of rule, policy and calendar files: libyaml's document API,
 * read whole from a file or from bytes, with one error convention, "NAME:LINE: what", and
 * typed helpers (a mapping walked by a table of key handlers, lists, text, numbers, booleans)
 * so a loader states what it accepts and refuses everything else with the line it is on. */
#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>
#include "base.h"

enum cd_err cd_yaml_parse(struct cd_yaml *y, const char *name, const char *data, size_t len)
{
    yaml_parser_t parser;
    enum cd_err err = CD_OK;

    y->name = name;
    y->doc = NULL;
    if ((y->doc = cd_malloc(sizeof *y->doc)) == NULL)
        return CD_ERR_NOMEM;
    if (!yaml_parser_initialize(&parser)) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
    if (!yaml_parser_load(&parser, y->doc)) {
        if (parser.error == YAML_MEMORY_ERROR)
            err = CD_ERR_NOMEM;
        else
            err = cd_err_set(CD_ERR_INVALID, "%s:%zu: YAML: %s", name,
                             parser.problem_mark.line + 1,
                             parser.problem ? parser.problem : "syntax error");
    }
    yaml_parser_delete(&parser);
out:
    if (err != CD_OK) {
        cd_free(y->doc);
        y->doc = NULL;
    }
    return err;
}

enum cd_err cd_yaml_load_file(struct cd_yaml *y, const char *path, size_t max)
{
    struct cd_buf b = CD_BUF_INIT(max);
    enum cd_err err = cd_buf_read_file(&b, path);

    y->name = path;
    y->doc = NULL;
    if (err == CD_OK)
        err = cd_yaml_parse(y, path, b.p, b.len);
    cd_buf_free(&b);
    return err;
}

void cd_yaml_free(struct cd_yaml *y)
{
    if (y->doc) {
        yaml_document_delete(y->doc);
        cd_free(y->doc);
        y->doc = NULL;
    }
}

struct yaml_node_s *cd_yaml_root(const struct cd_yaml *y)
{
    return y->doc ? yaml_document_get_root_node(y->doc) : NULL;
}

struct yaml_node_s *cd_yaml_node(const struct cd_yaml *y, int index)
{
    return yaml_document_get_node(y->doc, index);
}

size_t cd_yaml_line(const struct yaml_node_s *n)
{
    return n ? n->start_mark.line + 1 : 1;
}

enum cd_err cd_yaml_bad(const struct cd_yaml *y, const struct yaml_node_s *n, const char *what)
{
    return cd_err_set(CD_ERR_INVALID, "%s:%zu: %s", y->name, cd_yaml_line(n), what);
}

struct cd_str cd_yaml_scalar(const struct yaml_node_s *n)
{
    if (n == NULL || n->type != YAML_SCALAR_NODE)
        return CD_STR_NULL;
    return (struct cd_str){(const char *)n->data.scalar.value, n->data.scalar.length};
}

bool cd_yaml_scalar_is(const struct yaml_node_s *n, const char *s)
{
    struct cd_str v = cd_yaml_scalar(n);

    return v.p != NULL && cd_str_eq_c(v, s);
}

enum cd_err cd_yaml_map(const struct cd_yaml *y, struct yaml_node_s *m, const char *what,
                        const struct cd_yaml_key *keys, size_t nkeys, void *ctx)
{
    uint64_t seen = 0;
    enum cd_err err;
    char msg[256];

    /* A mapping's keys are remembered in one word. */
    assert(nkeys <= 64);
    if (m == NULL || m->type != YAML_MAPPING_NODE) {
        snprintf(msg, sizeof msg, "%s must be a mapping", what);
        return cd_yaml_bad(y, m, msg);
    }
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = cd_yaml_node(y, p->key), *v = cd_yaml_node(y, p->value);
        struct cd_str name = cd_yaml_scalar(k);
        size_t i;

        for (i = 0; i < nkeys; i++)
            if (name.p != NULL && cd_str_eq_c(name, keys[i].name))
                break;
        if (i == nkeys) {
            struct cd_buf list = CD_BUF_INIT(sizeof msg);
            for (size_t j = 0; j < nkeys; j++)
                if (cd_buf_printf(&list, "%s%s", j ? ", " : "", keys[j].name) != CD_OK)
                    break;
            snprintf(msg, sizeof msg, "unknown key '%.*s' in %s (allowed: %s)",
                     name.p ? (int)(name.len > 60 ? 60 : name.len) : 1, name.p ? name.p : "?",
                     what, list.p ? list.p : "");
            cd_buf_free(&list);
            return cd_yaml_bad(y, k, msg);
        }
        if (seen & (UINT64_C(1) << i)) {
            snprintf(msg, sizeof msg, "key '%s' is given twice in %s", keys[i].name, what);
            return cd_yaml_bad(y, k, msg);
        }
        seen |= UINT64_C(1) << i;
        if ((err = keys[i].set(y, v, &keys[i], ctx)) != CD_OK)
            return err;
    }
    for (size_t i = 0; i < nkeys; i++)
        if (keys[i].required && !(seen & (UINT64_C(1) << i))) {
            snprintf(msg, sizeof msg, "%s lacks the required key '%s'", what, keys[i].name);
            return cd_yaml_bad(y, m, msg);
        }
    return CD_OK;
}

enum cd_err cd_yaml_seq(const struct cd_yaml *y, struct yaml_node_s *s, const char *what,
                        cd_yaml_item_fn each, void *ctx)
{
    enum cd_err err;
    char msg[160];

    if (s == NULL || s->type != YAML_SEQUENCE_NODE) {
        snprintf(msg, sizeof msg, "%s must be a list", what);
        return cd_yaml_bad(y, s, msg);
    }
    size_t i = 0;
    for (yaml_node_item_t *it = s->data.sequence.items.start; it < s->data.sequence.items.top;
         it++, i++)
        if ((err = each(y, cd_yaml_node(y, *it), i, ctx)) != CD_OK)
            return err;
    return CD_OK;
}

enum cd_err cd_yaml_str(const struct cd_yaml *y, struct yaml_node_s *n, const char *what,
                        size_t max, struct cd_str *out)
{
    struct cd_str v = cd_yaml_scalar(n);
    char msg[160];

    if (v.p == NULL || v.len == 0 || v.len > max || !cd_utf8_valid(v.p, v.len)) {
        snprintf(msg, sizeof msg, "%s must be text of 1 to %zu bytes", what, max);
        return cd_yaml_bad(y, n, msg);
    }
    *out = v;
    return CD_OK;
}

enum cd_err cd_yaml_int(const struct cd_yaml *y, struct yaml_node_s *n, const char *what,
                        int64_t min, int64_t max, int64_t *out)
{
    struct cd_str v = cd_yaml_scalar(n);
    int64_t x = 0;
    size_t i = 0;
    bool neg = false;
    char msg[160];

    if (v.p != NULL && v.len > 0 && (v.p[0] == '-' || v.p[0] == '+')) {
        neg = v.p[0] == '-';
        i = 1;
    }
    bool ok = v.p != NULL && i < v.len && v.len - i <= 18;
    for (; ok && i < v.len; i++) {
        if (v.p[i] < '0' || v.p[i] > '9')
            ok = false;
        else
            x = x * 10 + (v.p[i] - '0');
    }
    if (neg)
        x = -x;
    if (!ok || x < min || x > max) {
        snprintf(msg, sizeof msg, "%s must be a whole number from %lld to %lld", what,
                 (long long)min, (long long)max);
        return cd_yaml_bad(y, n, msg);
    }
    *out = x;
    return CD_OK;
}

enum cd_err cd_yaml_bool(const struct cd_yaml *y, struct yaml_node_s *n, const char *what,
                         bool *out)
{
    char msg[160];

    if (cd_yaml_scalar_is(n, "true")) {
        *out = true;
        return CD_OK;
    }
    if (cd_yaml_scalar_is(n, "false")) {
        *out = false;
        return CD_OK;
    }
    snprintf(msg, sizeof msg, "%s must be true or false", what);
    return cd_yaml_bad(y, n, msg);
}
