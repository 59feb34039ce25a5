/* YAML documents for the loaders of rule and policy files (policy, consent rules, guard packs):
 * libyaml's document API, read whole from a file or from bytes, with one error convention,
 * "NAME:LINE: what". The loaders walk the nodes themselves. */
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
