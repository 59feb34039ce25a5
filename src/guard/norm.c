/* Unicode normalisation for matching, template placeholders, UTF-16 offsets and the
 * Flesch–Kincaid grade.
 *
 * The matching key is built one character at a time with utf8proc_decompose_char, so every
 * output byte knows which input character produced it (the offset map) and utf8proc never
 * allocates. ASCII text without placeholders takes a fast path: lower-casing only, and the map
 * is the identity. */
#include <string.h>
#include <utf8proc.h>
#include "guard/guard_int.h"

static unsigned char lower_tab[256];
static pthread_once_t lower_once = PTHREAD_ONCE_INIT;

static void lower_init(void)
{
    for (int i = 0; i < 256; i++)
        lower_tab[i] = (unsigned char)((i >= 'A' && i <= 'Z') ? i + 32 : i);
    /* The placeholder byte must only ever come from a placeholder. */
    lower_tab[(unsigned char)CD__GUARD_SLOT] = ' ';
}

/* ---- template placeholders ----
 * Templates hold fields that a mail-merge or template engine fills in later. Their names
 * ("{{Order Number}}", "[FIRST NAME]") are not words of the message: they must not match rules,
 * count as capitals or raise the grade. The grammar below covers the common engines (Mustache,
 * Handlebars, Jinja and Liquid, Python and .NET format strings, printf, shell and JavaScript
 * template literals, Mailchimp merge tags, Word mail merge, bracketed fields). */

#define PH_MAX 64     /* longest placeholder name */
#define PH_DIGITS 4   /* a placeholder never holds more digits than this */

static bool ph_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool ph_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool ph_ident(unsigned char c)
{
    return ph_alpha(c) || ph_digit(c) || c == '_';
}

/* The length of a placeholder that opens with open (olen bytes) and closes with close, holding
 * 1..max bytes that are not newlines, braces or further delimiters; 0 if there is none. */
static size_t ph_delimited(const unsigned char *p, size_t n, const char *open, size_t olen,
                           const char *close, size_t clen, size_t max)
{
    size_t digits = 0;

    if (n < olen + clen || memcmp(p, open, olen) != 0)
        return 0;
    for (size_t i = olen; i + clen <= n && i - olen <= max; i++) {
        if (memcmp(p + i, close, clen) == 0)
            return i > olen ? i + clen : 0;
        if (p[i] == '\n' || p[i] == '\r' || p[i] == open[0] || (olen > 1 && p[i] == close[0] &&
                                                              close[0] != open[0]))
            return 0;
        if (ph_digit(p[i]) && ++digits > PH_DIGITS)
            return 0;
    }
    return 0;
}

/* "{name}", "{Order Number}", "{0}", "{}": identifier characters, spaces, dots, colons and
 * dashes, starting with a letter or underscore, or one or two digits. */
static size_t ph_brace(const unsigned char *p, size_t n)
{
    size_t i = 1;

    if (n >= 2 && p[1] == '}')
        return 2;
    if (n >= 3 && ph_digit(p[1])) {
        while (i < n && i < 3 && ph_digit(p[i]))
            i++;
        return i < n && p[i] == '}' ? i + 1 : 0;
    }
    if (n < 3 || !(ph_alpha(p[1]) || p[1] == '_'))
        return 0;
    for (size_t digits = 0; i < n && i <= PH_MAX; i++) {
        unsigned char c = p[i];
        if (c == '}')
            return i + 1;
        if (!(ph_ident(c) || c == ' ' || c == '.' || c == ':' || c == '-'))
            return 0;
        if (ph_digit(c) && ++digits > PH_DIGITS)
            return 0;
    }
    return 0;
}

/* printf conversions: "%s", "%d", "%1$s", "%.2f", "%ld", "%@" and Python's "%(name)s". */
static size_t ph_printf(const unsigned char *p, size_t n)
{
    size_t i = 1;

    if (i < n && p[i] == '(') {
        size_t k = ph_delimited(p + 1, n - 1, "(", 1, ")", 1, PH_MAX);
        if (k == 0)
            return 0;
        i += k;
    } else {
        size_t st = i;
        while (i < n && ph_digit(p[i]))
            i++;
        if (i > st && !(i < n && p[i] == '$'))
            i = st; /* digits without '$' are a width */
        else if (i > st)
            i++;
        while (i < n && (p[i] == '-' || p[i] == '+' || p[i] == '0' || p[i] == '#'))
            i++;
        while (i < n && ph_digit(p[i]))
            i++;
        if (i + 1 < n && p[i] == '.' && ph_digit(p[i + 1]))
            for (i++; i < n && ph_digit(p[i]); i++)
                ;
        while (i < n && (p[i] == 'h' || p[i] == 'l' || p[i] == 'z' || p[i] == 'j' ||
                         p[i] == 't' || p[i] == 'L' || p[i] == 'q'))
            i++;
    }
    if (i >= n || p[i] == '\0' || !strchr("sdiuoxXfFeEgGcp@", p[i]))
        return 0;
    i++;
    /* "%same" is not "%s" followed by "ame". */
    return i < n && ph_ident(p[i]) ? 0 : i;
}

/* "%NAME%" and "%%NAME%%" (Windows-style and many mail tools). */
static size_t ph_percent_name(const unsigned char *p, size_t n)
{
    size_t o = n >= 2 && p[1] == '%' ? 2 : 1, i = o;

    while (i < n && i - o <= PH_MAX && ph_ident(p[i]))
        i++;
    if (i - o < 2 || !ph_alpha(p[o]) || i + o > n || p[i] != '%' || (o == 2 && p[i + 1] != '%'))
        return 0;
    return i + o;
}

/* "[FIRST NAME]", "[Customer Name]", "[order_id]": a field name in brackets, written in capitals,
 * in title case (at most four words) or with underscores. "[Yes, add it]" and "[email]" are not. */
static size_t ph_bracket(const unsigned char *p, size_t n)
{
    size_t i = 1, words = 0, digits = 0;
    bool lower = false, title = true, underscore = false, start = true;

    if (n < 3 || !ph_alpha(p[1]))
        return 0;
    for (; i < n && i <= PH_MAX; i++) {
        unsigned char c = p[i];
        if (c == ']')
            break;
        if (c == ' ') {
            start = true;
            continue;
        }
        if (!(ph_ident(c) || c == '.' || c == '/' || c == '-'))
            return 0;
        if (ph_digit(c) && ++digits > PH_DIGITS)
            return 0;
        underscore |= c == '_';
        lower |= c >= 'a' && c <= 'z';
        if (start) {
            words++;
            if (!(c >= 'A' && c <= 'Z') && !ph_digit(c))
                title = false;
        }
        start = false;
    }
    if (i >= n || p[i] != ']' || p[i - 1] == ' ')
        return 0;
    return (!lower || underscore || (title && words <= 4)) ? i + 1 : 0;
}

size_t cd__guard_placeholder_len(const char *s, size_t n, char prevc)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned char prev = (unsigned char)prevc;
    size_t k;

    if (n < 2)
        return 0;
    switch (p[0]) {
    case '{':
        if ((k = ph_delimited(p, n, "{{{", 3, "}}}", 3, PH_MAX)) != 0 ||
            (k = ph_delimited(p, n, "{{", 2, "}}", 2, PH_MAX)) != 0)
            return k;
        if (p[1] == '%')
            return ph_delimited(p, n, "{%", 2, "%}", 2, 2 * PH_MAX);
        return ph_brace(p, n);
    case '$':
        if (p[1] != '{')
            return 0;
        k = ph_brace(p + 1, n - 1);
        return k ? k + 1 : 0;
    case '%':
        /* "50%s" is a number and a letter, not a conversion. */
        if (ph_ident(prev) || prev == '%')
            return 0;
        return (k = ph_printf(p, n)) != 0 ? k : ph_percent_name(p, n);
    case '*':
        return p[1] == '|' ? ph_delimited(p, n, "*|", 2, "|*", 2, PH_MAX) : 0;
    case '<':
        return ph_delimited(p, n, "<<", 2, ">>", 2, PH_MAX);
    case '[':
        if ((k = ph_delimited(p, n, "[[", 2, "]]", 2, PH_MAX)) != 0)
            return k;
        return ph_bracket(p, n);
    case 0xC2: /* « ... » (Word mail merge) */
        return p[1] == 0xAB ? ph_delimited(p, n, "\xC2\xAB", 2, "\xC2\xBB", 2, PH_MAX) : 0;
    }
    return 0;
}

/* Bytes that may open a placeholder. */
static bool ph_opener(unsigned char c)
{
    return c == '{' || c == '$' || c == '%' || c == '*' || c == '<' || c == '[' || c == 0xC2;
}

/* Decodes one character of valid UTF-8 at p, storing its length in *len. */
static int32_t decode(const unsigned char *p, size_t *len)
{
    if (p[0] < 0x80) {
        *len = 1;
        return p[0];
    }
    if (p[0] < 0xE0) {
        *len = 2;
        return (int32_t)((p[0] & 0x1F) << 6 | (p[1] & 0x3F));
    }
    if (p[0] < 0xF0) {
        *len = 3;
        return (int32_t)((p[0] & 0x0F) << 12 | (p[1] & 0x3F) << 6 | (p[2] & 0x3F));
    }
    *len = 4;
    return (int32_t)((p[0] & 0x07) << 18 | (p[1] & 0x3F) << 12 | (p[2] & 0x3F) << 6 |
                     (p[3] & 0x3F));
}

/* Characters that look like ASCII letters, digits or punctuation but survive NFKC and case
 * folding (Cyrillic and Greek homoglyphs, typographic quotes and dashes). Sorted by code. */
static const struct {
    int32_t from;
    char to;
} confusables[] = {
    {0x00B4, '\''}, {0x01C0, 'l'}, {0x0251, 'a'}, {0x0261, 'g'}, {0x0269, 'i'}, {0x02B9, '\''},
    {0x02BB, '\''}, {0x02BC, '\''}, {0x02C8, '\''}, {0x03B1, 'a'}, {0x03B9, 'i'}, {0x03BA, 'k'},
    {0x03BD, 'v'}, {0x03BF, 'o'}, {0x03C1, 'p'}, {0x03C3, 'o'}, {0x03C5, 'u'}, {0x03C7, 'x'},
    {0x0430, 'a'}, {0x0432, 'b'}, {0x0435, 'e'}, {0x043A, 'k'}, {0x043C, 'm'}, {0x043D, 'h'},
    {0x043E, 'o'}, {0x0440, 'p'}, {0x0441, 'c'}, {0x0442, 't'}, {0x0443, 'y'}, {0x0445, 'x'},
    {0x0455, 's'}, {0x0456, 'i'}, {0x0458, 'j'}, {0x04BB, 'h'}, {0x04CF, 'l'}, {0x0501, 'd'},
    {0x051B, 'q'}, {0x051D, 'w'}, {0x0561, 'w'}, {0x0578, 'n'}, {0x057D, 'u'}, {0x0585, 'o'},
    {0x2010, '-'}, {0x2011, '-'}, {0x2012, '-'}, {0x2013, '-'}, {0x2014, '-'}, {0x2015, '-'},
    {0x2018, '\''}, {0x2019, '\''}, {0x201A, '\''}, {0x201B, '\''}, {0x201C, '"'}, {0x201D, '"'},
    {0x201E, '"'}, {0x201F, '"'}, {0x2032, '\''}, {0x2212, '-'}, {0x2217, '*'}, {0x2219, '.'},
    {0x2223, 'l'}, {0x2794, '>'}, {0xFF0D, '-'},
};

static int confusable(int32_t cp)
{
    size_t lo = 0, hi = sizeof confusables / sizeof confusables[0];

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (confusables[mid].from == cp)
            return (unsigned char)confusables[mid].to;
        if (confusables[mid].from < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* Zero-width and invisible characters that utf8proc's "default ignorable" set may not cover in
 * every version, and bidi controls used to hide text. */
static bool invisible(int32_t cp)
{
    return (cp >= 0x200B && cp <= 0x200F) || (cp >= 0x202A && cp <= 0x202E) ||
           (cp >= 0x2060 && cp <= 0x2064) || cp == 0xFEFF || cp == 0x00AD || cp == 0x034F ||
           cp == 0x180E || (cp >= 0xFE00 && cp <= 0xFE0F) || (cp >= 0xE0100 && cp <= 0xE01EF);
}

static size_t ascii_prefix(const unsigned char *p, size_t n)
{
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w & 0x8080808080808080ull)
            break;
    }
    while (i < n && p[i] < 0x80)
        i++;
    return i;
}

bool cd__guard_utf8_ok(const char *p, size_t n)
{
    size_t a = ascii_prefix((const unsigned char *)p, n);

    return a == n || cd_utf8_valid(p + a, n - a);
}

enum cd_err cd__guard_normalise(struct cd_str text, bool placeholders, char **norm, size_t *nlen,
                                uint32_t **map, struct cd__guard_norm_stats *st)
{
    enum cd_err err = CD_OK;
    const unsigned char *p = (const unsigned char *)text.p;
    unsigned char *out = NULL;
    uint32_t *m = NULL;
    size_t i, o = 0, cap;
    bool ascii = true;

    pthread_once(&lower_once, lower_init);
    if (text.len > CD_GUARD_MAX_TEXT) {
        err = cd_err_set(CD_ERR_TOO_BIG, "message above %u bytes", CD_GUARD_MAX_TEXT);
        goto out;
    }
    ascii = ascii_prefix(p, text.len) == text.len;
    st->letters = st->upper = 0;
    if (ascii) {
        size_t up = 0, low = 0;
        if ((out = cd_malloc(text.len + 1)) == NULL) {
            err = CD_ERR_NOMEM;
            goto out;
        }
        for (i = 0; i < text.len; i++) {
            unsigned char c = p[i];
            /* A placeholder needs the offset map: start again on the general path. */
            if (placeholders && ph_opener(c) &&
                cd__guard_placeholder_len(text.p + i, text.len - i, i ? text.p[i - 1] : 0))
                break;
            up += (unsigned char)(c - 'A') < 26;
            low += (unsigned char)(c - 'a') < 26;
            out[i] = lower_tab[c];
        }
        if (i == text.len) {
            st->letters = up + low;
            st->upper = up;
            out[text.len] = '\0';
            *norm = (char *)out;
            *nlen = text.len;
            *map = NULL;
            return CD_OK;
        }
        cd_free(out);
        out = NULL;
    }
    /* Compatibility decomposition rarely expands by more than 3x in bytes; grow if it does. */
    cap = text.len + 64;
    out = cd_malloc(cap + 1);
    m = cd_malloc((cap + 1) * sizeof *m);
    if (out == NULL || m == NULL) {
        err = CD_ERR_NOMEM;
        goto out;
    }
    for (i = 0; i < text.len;) {
        size_t clen;
        int32_t cp = decode(p + i, &clen);
        int32_t dec[32];
        utf8proc_ssize_t nd;
        int bound = 0;

        if (o + 4 * 32 + 1 > cap) {
            size_t ncap = cap * 2 + 256;
            unsigned char *nout;
            uint32_t *nm;
            if (ncap > 4 * (size_t)CD_GUARD_MAX_TEXT + 1024) {
                err = cd_err_set(CD_ERR_TOO_BIG, "normalised message too large");
                goto out;
            }
            if ((nout = cd_realloc(out, ncap + 1)) == NULL) {
                err = CD_ERR_NOMEM;
                goto out;
            }
            out = nout;
            if ((nm = cd_realloc(m, (ncap + 1) * sizeof *m)) == NULL) {
                err = CD_ERR_NOMEM;
                goto out;
            }
            m = nm;
            cap = ncap;
        }
        if (placeholders && ph_opener(p[i])) {
            size_t ph = cd__guard_placeholder_len(text.p + i, text.len - i, i ? text.p[i - 1] : 0);
            if (ph) {
                m[o] = (uint32_t)i;
                out[o++] = CD__GUARD_SLOT;
                i += ph;
                continue;
            }
        }
        if (cp < 0x80) {
            st->upper += (unsigned)(cp - 'A') < 26;
            st->letters += (unsigned)(cp - 'A') < 26 || (unsigned)(cp - 'a') < 26;
            m[o] = (uint32_t)i;
            out[o++] = lower_tab[cp];
            i += clen;
            continue;
        }
        if (invisible(cp)) {
            i += clen;
            continue;
        }
        nd = utf8proc_decompose_char(cp, dec, 32,
                                     UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT | UTF8PROC_CASEFOLD |
                                         UTF8PROC_IGNORE | UTF8PROC_STRIPMARK,
                                     &bound);
        if (nd < 0 || nd > 32) {
            /* Not decomposable (unassigned): keep the character as it is. */
            dec[0] = cp;
            nd = 1;
        }
        for (utf8proc_ssize_t k = 0; k < nd; k++) {
            int32_t c = dec[k];
            int conf = c >= 0x80 ? confusable(c) : -1;
            utf8proc_uint8_t enc[4];
            utf8proc_ssize_t elen;

            if (invisible(c))
                continue;
            if (conf >= 0)
                c = conf;
            if (c < 0x80) {
                m[o] = (uint32_t)i;
                out[o++] = lower_tab[c];
                continue;
            }
            elen = utf8proc_encode_char(c, enc);
            for (utf8proc_ssize_t e = 0; e < elen; e++) {
                m[o] = (uint32_t)i;
                out[o++] = enc[e];
            }
        }
        i += clen;
    }
    out[o] = '\0';
    m[o] = (uint32_t)text.len;
    *norm = (char *)out;
    *nlen = o;
    *map = m;
    out = NULL;
    m = NULL;
out:
    cd_free(out);
    cd_free(m);
    return err;
}

size_t cd__guard_utf16_len(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t units = 0;

    /* Every byte that is not a continuation byte starts a character (1 unit); 4-byte
     * sequences are surrogate pairs (2 units). */
    for (size_t i = 0; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            units++;
        if (p[i] >= 0xF0)
            units++;
    }
    return units;
}

static bool is_vowel(unsigned char c)
{
    return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u' || c == 'y';
}

static size_t syllables(const unsigned char *w, size_t n)
{
    size_t count = 0;
    bool prev = false;

    for (size_t i = 0; i < n; i++) {
        bool v = is_vowel(w[i]);
        if (v && !prev)
            count++;
        prev = v;
    }
    /* A final silent e ("make"), but not "-le" after a consonant ("table"). */
    if (n > 2 && w[n - 1] == 'e' && !is_vowel(w[n - 2]) && !(w[n - 2] == 'l' && n > 3 &&
                                                            !is_vowel(w[n - 3])))
        count--;
    if (n > 3 && w[n - 1] == 'd' && w[n - 2] == 'e' && !is_vowel(w[n - 3]) && w[n - 3] != 't' &&
        w[n - 3] != 'd' && count > 1)
        count--;
    return count ? count : 1;
}

double cd__guard_fk_grade(const char *s, size_t n, size_t *nwords)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t words = 0, sentences = 0, syl = 0, i = 0;
    bool pending = false; /* words seen since the last sentence end */

    while (i < n) {
        unsigned char c = p[i];
        if (c >= 'a' && c <= 'z') {
            size_t st = i;
            while (i < n && ((p[i] >= 'a' && p[i] <= 'z') || p[i] == '\''))
                i++;
            words++;
            syl += syllables(p + st, i - st);
            pending = true;
            continue;
        }
        if ((c == '.' || c == '!' || c == '?') && pending &&
            (i + 1 == n || p[i + 1] == ' ' || p[i + 1] == '\n' || p[i + 1] == '\r' ||
             p[i + 1] == '"' || p[i + 1] == ')')) {
            sentences++;
            pending = false;
        } else if (c == '\n' && i + 1 < n && p[i + 1] == '\n' && pending) {
            sentences++; /* a paragraph break ends a sentence without a full stop */
            pending = false;
        }
        i++;
    }
    if (pending)
        sentences++;
    *nwords = words;
    if (words == 0)
        return 0.0;
    double g = 0.39 * (double)words / (double)sentences + 11.8 * (double)syl / (double)words -
               15.59;
    return g < 0 ? 0.0 : g;
}
