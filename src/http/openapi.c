/* The OpenAPI document: docs/openapi.yaml is embedded in the binary at build time and turned
 * into JSON once, at start-up, with libyaml. Plain scalars that look like numbers, booleans or
 * null become those JSON types; quoted scalars stay strings. */
#include <string.h>
#include <yaml.h>
#include "http_int.h"

/* The bytes of docs/openapi.yaml, NUL-terminated (see the Makefile dependency). */
__asm__(".section .rodata\n"
        ".global cd_openapi_yaml\n"
        ".type cd_openapi_yaml, @object\n"
        "cd_openapi_yaml:\n"
        ".incbin \"docs/openapi.yaml\"\n"
        ".byte 0\n"
        ".previous\n");

static json_t *scalar(const yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    char *end = NULL;

    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return json_stringn(v, n);
    if (strcmp(v, "true") == 0)
        return json_true();
    if (strcmp(v, "false") == 0)
        return json_false();
    if (strcmp(v, "null") == 0 || strcmp(v, "~") == 0)
        return json_null();
    if (n > 0 && ((v[0] >= '0' && v[0] <= '9') || v[0] == '-')) {
        long long i = strtoll(v, &end, 10);
        if (*end == '\0')
            return json_integer(i);
        double d = strtod(v, &end);
        if (*end == '\0')
            return json_real(d);
    }
    return json_stringn(v, n);
}

/* Parses one node starting at the current event. */
static json_t *node(yaml_parser_t *p, yaml_event_t *ev, int depth)
{
    json_t *out = NULL, *key = NULL, *val;
    yaml_event_t next;

    if (depth > 64)
        return NULL;
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        return scalar(ev);
    case YAML_SEQUENCE_START_EVENT:
        out = json_array();
        for (;;) {
            if (!yaml_parser_parse(p, &next))
                goto fail;
            if (next.type == YAML_SEQUENCE_END_EVENT) {
                yaml_event_delete(&next);
                return out;
            }
            val = node(p, &next, depth + 1);
            yaml_event_delete(&next);
            if (val == NULL || json_array_append_new(out, val) != 0)
                goto fail;
        }
    case YAML_MAPPING_START_EVENT:
        out = json_object();
        for (;;) {
            if (!yaml_parser_parse(p, &next))
                goto fail;
            if (next.type == YAML_MAPPING_END_EVENT) {
                yaml_event_delete(&next);
                return out;
            }
            if (next.type != YAML_SCALAR_EVENT) {
                yaml_event_delete(&next);
                goto fail;
            }
            key = json_stringn((const char *)next.data.scalar.value, next.data.scalar.length);
            yaml_event_delete(&next);
            if (key == NULL || !yaml_parser_parse(p, &next))
                goto fail;
            val = node(p, &next, depth + 1);
            yaml_event_delete(&next);
            if (val == NULL || json_object_set_new(out, json_string_value(key), val) != 0)
                goto fail;
            json_decref(key);
            key = NULL;
        }
    default:
        return NULL;
    }
fail:
    json_decref(key);
    json_decref(out);
    return NULL;
}

enum cd_err cd__http_openapi_json(json_t **out)
{
    yaml_parser_t p;
    yaml_event_t ev;
    json_t *doc = NULL;
    bool ok = true;

    if (!yaml_parser_initialize(&p))
        return CD_ERR_NOMEM;
    yaml_parser_set_input_string(&p, (const unsigned char *)cd_openapi_yaml,
                                 strlen(cd_openapi_yaml));
    while (ok && doc == NULL) {
        if (!yaml_parser_parse(&p, &ev)) {
            ok = false;
            break;
        }
        if (ev.type == YAML_MAPPING_START_EVENT)
            doc = node(&p, &ev, 0);
        else if (ev.type == YAML_STREAM_END_EVENT)
            ok = false;
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    if (doc == NULL)
        return cd_err_set(CD_ERR_INTERNAL, "the embedded OpenAPI document does not parse");
    *out = doc;
    return CD_OK;
}
