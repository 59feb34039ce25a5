/* JSON glue over jansson: strict parsing with located errors and typed member access. */
#include <string.h>
#include "base.h"

/* jansson's parser does not survive every failed allocation: its lexer drops a failed buffer
 * growth silently and later copies the token past the end of a short buffer (a heap
 * overflow), and a failed string copy is reported as a syntax error. So while this thread
 * parses, the first failure makes every later allocation of the parse fail too (the lexer
 * then stops at its next allocation instead of copying), and the parse reports CD_ERR_NOMEM
 * whatever jansson says. */
static _Thread_local bool parsing, parse_oom;

static void *json_alloc(size_t n)
{
    void *p;

    if (parsing && parse_oom)
        return NULL;
    p = cd_malloc(n);
    if (p == NULL && parsing)
        parse_oom = true;
    return p;
}

void cd_json_init(void)
{
    json_set_alloc_funcs(json_alloc, cd_free);
}

enum cd_err cd_json_parse(const char *p, size_t n, json_t **out)
{
    json_error_t jerr;
    json_t *v;

    if (n == 0)
        return cd_err_set(CD_ERR_INVALID, "the request body is empty; a JSON document is required");
    /* jansson rejects invalid UTF-8 and NUL bytes itself and reports where. */
    parsing = true;
    parse_oom = false;
    v = json_loadb(p, n, JSON_REJECT_DUPLICATES, &jerr);
    parsing = false;
    if (parse_oom) {
        json_decref(v);
        return CD_ERR_NOMEM;
    }
    if (v == NULL) {
        if (json_error_code(&jerr) == json_error_out_of_memory)
            return CD_ERR_NOMEM;
        return cd_err_set(CD_ERR_INVALID, "malformed JSON at line %d, column %d: %s", jerr.line,
                          jerr.column, jerr.text);
    }
    *out = v;
    return CD_OK;
}

enum cd_err cd_json_parse_object(const char *p, size_t n, json_t **out)
{
    enum cd_err err;
    json_t *v = NULL;

    if ((err = cd_json_parse(p, n, &v)) != CD_OK)
        return err;
    if (!json_is_object(v)) {
        json_decref(v);
        return cd_err_set(CD_ERR_INVALID, "the request body must be a JSON object");
    }
    *out = v;
    return CD_OK;
}

enum cd_err cd_json_only(const json_t *obj, const char *const *allowed)
{
    const char *key;
    json_t *val;

    json_object_foreach((json_t *)obj, key, val) {
        const char *const *a = allowed;
        while (*a && strcmp(*a, key) != 0)
            a++;
        if (*a == NULL) {
            char safe[64];
            return cd_err_set(CD_ERR_INVALID, "unknown member '%s'",
                              cd_log_safe(key, safe, sizeof safe));
        }
    }
    return CD_OK;
}

static enum cd_err member(const json_t *obj, const char *key, bool required, json_t **v)
{
    *v = json_object_get(obj, key);
    if (*v == NULL || json_is_null(*v)) {
        *v = NULL;
        if (required)
            return cd_err_set(CD_ERR_INVALID, "member '%s' is required", key);
    }
    return CD_OK;
}

static enum cd_err wrong_type(const char *key, const char *type)
{
    return cd_err_set(CD_ERR_INVALID, "member '%s' must be %s", key, type);
}

enum cd_err cd_json_str(const json_t *obj, const char *key, bool required, struct cd_str *out)
{
    json_t *v;
    enum cd_err err = member(obj, key, required, &v);

    if (err != CD_OK || v == NULL)
        return err;
    if (!json_is_string(v))
        return wrong_type(key, "a string");
    out->p = json_string_value(v);
    out->len = json_string_length(v);
    return CD_OK;
}

enum cd_err cd_json_int(const json_t *obj, const char *key, bool required, int64_t *out)
{
    json_t *v;
    enum cd_err err = member(obj, key, required, &v);

    if (err != CD_OK || v == NULL)
        return err;
    if (!json_is_integer(v))
        return wrong_type(key, "an integer");
    *out = json_integer_value(v);
    return CD_OK;
}

enum cd_err cd_json_bool(const json_t *obj, const char *key, bool required, bool *out)
{
    json_t *v;
    enum cd_err err = member(obj, key, required, &v);

    if (err != CD_OK || v == NULL)
        return err;
    if (!json_is_boolean(v))
        return wrong_type(key, "true or false");
    *out = json_is_true(v);
    return CD_OK;
}

enum cd_err cd_json_obj(const json_t *obj, const char *key, bool required, json_t **out)
{
    json_t *v;
    enum cd_err err = member(obj, key, required, &v);

    if (err != CD_OK || v == NULL)
        return err;
    if (!json_is_object(v))
        return wrong_type(key, "an object");
    *out = v;
    return CD_OK;
}

enum cd_err cd_json_arr(const json_t *obj, const char *key, bool required, json_t **out)
{
    json_t *v;
    enum cd_err err = member(obj, key, required, &v);

    if (err != CD_OK || v == NULL)
        return err;
    if (!json_is_array(v))
        return wrong_type(key, "an array");
    *out = v;
    return CD_OK;
}

/* ---- writing JSON strings directly ---- */

/* Decodes one UTF-8 sequence of p[0..n) as jansson accepts it (no overlong forms, surrogates
 * or code points above U+10FFFF). Returns its length, or 0 when invalid. */
static size_t utf8_next(const unsigned char *p, size_t n, uint32_t *cp)
{
    size_t len;
    uint32_t v;

    if (p[0] < 0x80) {
        *cp = p[0];
        return 1;
    }
    if (p[0] < 0xC2)
        return 0;
    if (p[0] < 0xE0) {
        len = 2;
        v = p[0] & 0x1F;
    } else if (p[0] < 0xF0) {
        len = 3;
        v = p[0] & 0x0F;
    } else if (p[0] < 0xF5) {
        len = 4;
        v = p[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        v = v << 6 | (p[i] & 0x3F);
    }
    if ((len == 3 && (v < 0x800 || (v >= 0xD800 && v <= 0xDFFF))) ||
        (len == 4 && (v < 0x10000 || v > 0x10FFFF)))
        return 0;
    *cp = v;
    return len;
}

static enum cd_err put_u16_escape(struct cd_buf *b, uint32_t u)
{
    static const char hex[] = "0123456789ABCDEF";
    char e[6] = {'\\', 'u', hex[u >> 12 & 15], hex[u >> 8 & 15], hex[u >> 4 & 15], hex[u & 15]};

    return cd_buf_append(b, e, sizeof e);
}

/* ascii: escape every non-ASCII code point (\u); otherwise copy valid UTF-8 as it is. */
static enum cd_err put_json_string(struct cd_buf *b, struct cd_str s, bool ascii)
{
    const unsigned char *p = (const unsigned char *)s.p, *end = p + s.len;
    size_t mark = b->len;
    enum cd_err err;

    if ((err = cd_buf_putc(b, '"')) != CD_OK)
        return err;
    while (p < end) {
        const unsigned char *run = p;
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
            p++;
        if (p > run && (err = cd_buf_append(b, run, (size_t)(p - run))) != CD_OK)
            goto fail;
        if (p == end)
            break;
        uint32_t cp = 0;
        size_t len = utf8_next(p, (size_t)(end - p), &cp);
        const char *short_esc = NULL;
        if (len == 0) {
            err = cd_err_set(CD_ERR_INVALID, "the text is not valid UTF-8");
            goto fail;
        }
        if (!ascii && cp >= 0x80) {
            if ((err = cd_buf_append(b, p, len)) != CD_OK)
                goto fail;
            p += len;
            continue;
        }
        p += len;
        switch (cp) {
        case '"':
            short_esc = "\\\"";
            break;
        case '\\':
            short_esc = "\\\\";
            break;
        case '\b':
            short_esc = "\\b";
            break;
        case '\f':
            short_esc = "\\f";
            break;
        case '\n':
            short_esc = "\\n";
            break;
        case '\r':
            short_esc = "\\r";
            break;
        case '\t':
            short_esc = "\\t";
            break;
        default:
            break;
        }
        if (short_esc)
            err = cd_buf_append(b, short_esc, 2);
        else if (cp < 0x10000)
            err = put_u16_escape(b, cp);
        else if ((err = put_u16_escape(b, 0xD800 | ((cp - 0x10000) >> 10))) == CD_OK)
            err = put_u16_escape(b, 0xDC00 | ((cp - 0x10000) & 0x3FF));
        if (err != CD_OK)
            goto fail;
    }
    if ((err = cd_buf_putc(b, '"')) == CD_OK)
        return CD_OK;
fail:
    b->len = mark; /* nothing of the string stays */
    if (b->p)
        b->p[mark] = '\0';
    return err;
}

enum cd_err cd_buf_json_string(struct cd_buf *b, struct cd_str s)
{
    return put_json_string(b, s, true);
}

enum cd_err cd_buf_json_text(struct cd_buf *b, struct cd_str s)
{
    return put_json_string(b, s, false);
}

bool cd_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    uint32_t cp;

    while (p < end) {
        size_t len = utf8_next(p, (size_t)(end - p), &cp);
        if (len == 0)
            return false;
        p += len;
    }
    return true;
}

enum cd_err cd_json_dump(const json_t *v, char **out, size_t *len)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

    if (s == NULL)
        return CD_ERR_NOMEM;
    *out = s;
    if (len)
        *len = strlen(s);
    return CD_OK;
}

enum cd_err cd_json_set_new(json_t *obj, const char *key, json_t *v)
{
    if (v == NULL || json_object_set_new(obj, key, v) != 0)
        return CD_ERR_NOMEM;
    return CD_OK;
}

enum cd_err cd_json_copy_key(json_t *dst, const json_t *src, const char *key)
{
    json_t *v = json_object_get(src, key);

    if (v == NULL)
        return CD_OK;
    return json_object_set(dst, key, v) == 0 ? CD_OK : CD_ERR_NOMEM;
}

enum cd_err cd_json_set_strn(json_t *obj, const char *key, const char *p, size_t n)
{
    return cd_json_set_new(obj, key, json_stringn(p, n));
}
