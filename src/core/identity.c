/* Identity normalisation: one canonical spelling per identity, so the same person writing from
 * "Ana@Example.COM" and "ana@example.com", "ａｎａ@example.com" (fullwidth), "ana\u200b@example.com"
 * (a zero-width space), or "+44 20 7946 0958" and "0044 2079460958", is recognised as one
 * customer. Unicode first (utf8proc: NFKC, case folding, default-ignorable code points
 * removed), then the rules of the identity's type.
 *
 * Look-alikes that normalisation keeps apart ("аna" with a Cyrillic а) are found by their
 * confusable skeleton (Unicode UTS #39, computed by ICU's uspoof, which ships the Unicode
 * confusables data): equal skeletons mean "may be the same person", never "is". */
#include <stdio.h>
#include <string.h>
#include <unicode/uspoof.h>
#include <utf8proc.h>
#include "core.h"
#include "core_int.h"

#define MAX_IDENTITY 320
#define MAX_CODEPOINTS 1024 /* after compatibility decomposition of MAX_IDENTITY bytes */

/* ITU-T E.164 assigned country calling codes (1 to 3 digits). A number must start with one. */
static const char *const country_codes[] = {
    "1", "7", "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45",
    "46", "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62",
    "63", "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98",
    "211", "212", "213", "216", "218", "220", "221", "222", "223", "224", "225", "226", "227",
    "228", "229", "230", "231", "232", "233", "234", "235", "236", "237", "238", "239", "240",
    "241", "242", "243", "244", "245", "246", "247", "248", "249", "250", "251", "252", "253",
    "254", "255", "256", "257", "258", "260", "261", "262", "263", "264", "265", "266", "267",
    "268", "269", "290", "291", "297", "298", "299", "350", "351", "352", "353", "354", "355",
    "356", "357", "358", "359", "370", "371", "372", "373", "374", "375", "376", "377", "378",
    "379", "380", "381", "382", "383", "385", "386", "387", "389", "420", "421", "423", "500",
    "501", "502", "503", "504", "505", "506", "507", "508", "509", "590", "591", "592", "593",
    "594", "595", "596", "597", "598", "599", "670", "672", "673", "674", "675", "676", "677",
    "678", "679", "680", "681", "682", "683", "685", "686", "687", "688", "689", "690", "691",
    "692", "800", "808", "850", "852", "853", "855", "856", "870", "878", "880", "881", "882",
    "883", "886", "888", "960", "961", "962", "963", "964", "965", "966", "967", "968", "970",
    "971", "972", "973", "974", "975", "976", "977", "979", "992", "993", "994", "995", "996",
    "998", NULL};

static const char *const networks[] = {"x", "twitter", "facebook", "instagram", "linkedin",
                                       "tiktok", "whatsapp", "telegram", "mastodon", "bluesky",
                                       "threads", "youtube", "reddit", "wechat", "line", "viber",
                                       "signal", "discord", "trustpilot", NULL};

static bool known_country_code(const char *digits)
{
    for (const char *const *cc = country_codes; *cc; cc++)
        if (strncmp(digits, *cc, strlen(*cc)) == 0)
            return true;
    return false;
}

static enum cd_err normalize_phone(struct cd_str v, struct cd_buf *out)
{
    char digits[20];
    size_t n = 0, i = 0;

    while (i < v.len && v.p[i] == ' ')
        i++;
    if (i + 1 < v.len && v.p[i] == '0' && v.p[i + 1] == '0')
        i += 2; /* the international call prefix 00 means '+' */
    else if (i < v.len && v.p[i] == '+')
        i++;
    else
        return cd_err_set(CD_ERR_INVALID, "phone numbers must be in international format with a "
                                          "country code, e.g. +44 20 7946 0958");
    for (; i < v.len; i++) {
        char ch = v.p[i];
        if (ch >= '0' && ch <= '9') {
            if (n >= 15)
                return cd_err_set(CD_ERR_INVALID, "a phone number has at most 15 digits (E.164)");
            digits[n++] = ch;
        } else if (ch != ' ' && ch != '-' && ch != '.' && ch != '(' && ch != ')') {
            return cd_err_set(CD_ERR_INVALID, "a phone number may contain only digits, spaces, "
                                              "'-', '.', '(', ')' after the '+'");
        }
    }
    digits[n] = '\0';
    if (n < 8 || digits[0] == '0')
        return cd_err_set(CD_ERR_INVALID, "a phone number has 8 to 15 digits and a country code");
    if (!known_country_code(digits))
        return cd_err_set(CD_ERR_INVALID, "the phone number's country code is not assigned");
    if (cd_buf_putc(out, '+') != CD_OK || cd_buf_append(out, digits, n) != CD_OK)
        return CD_ERR_NOMEM;
    return CD_OK;
}

static char lower(char ch)
{
    return ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
}

static struct cd_str trim(struct cd_str s)
{
    while (s.len && (s.p[0] == ' ' || s.p[0] == '\t'))
        s.p++, s.len--;
    while (s.len && (s.p[s.len - 1] == ' ' || s.p[s.len - 1] == '\t'))
        s.len--;
    return s;
}

static enum cd_err normalize_email(struct cd_str v, struct cd_buf *out)
{
    const char *at = NULL;
    size_t dots_after_at = 0;

    v = trim(v);
    if (v.len < 3 || v.len > 254)
        return cd_err_set(CD_ERR_INVALID, "an email address has 3 to 254 characters");
    for (size_t i = 0; i < v.len; i++) {
        unsigned char ch = (unsigned char)v.p[i];
        if (ch == '@') {
            if (at)
                return cd_err_set(CD_ERR_INVALID, "an email address has exactly one '@'");
            at = v.p + i;
        } else if (ch <= ' ' || ch == '"' || ch == '(' || ch == ')' || ch == ',' || ch == ':' ||
                   ch == ';' || ch == '<' || ch == '>' || ch == '[' || ch == ']' || ch == '\\') {
            return cd_err_set(CD_ERR_INVALID, "an email address may not contain spaces or "
                                              "the characters \"(),:;<>[]\\");
        } else if (at && ch == '.') {
            dots_after_at++;
        }
    }
    if (at == NULL || at == v.p || at == v.p + v.len - 1 || at - v.p > 64)
        return cd_err_set(CD_ERR_INVALID, "an email address looks like name@example.com");
    if (dots_after_at == 0 || at[1] == '.' || v.p[v.len - 1] == '.' ||
        memmem(at, (size_t)(v.p + v.len - at), "..", 2))
        return cd_err_set(CD_ERR_INVALID, "the email domain must be a full domain name");
    if (cd_buf_reserve(out, v.len) != CD_OK)
        return CD_ERR_NOMEM;
    /* Addresses are compared case-insensitively in practice, local part included. */
    for (size_t i = 0; i < v.len; i++)
        out->p[out->len++] = lower(v.p[i]);
    out->p[out->len] = '\0';
    return CD_OK;
}

static bool network_known(struct cd_str n)
{
    for (const char *const *k = networks; *k; k++)
        if (cd_str_eq_c(n, *k))
            return true;
    return false;
}

static enum cd_err normalize_social(struct cd_str network, struct cd_str v, struct cd_buf *out)
{
    char net[24];
    size_t i;

    if (network.len == 0 || network.len >= sizeof net)
        return cd_err_set(CD_ERR_INVALID, "a social identity needs a 'network', e.g. instagram");
    for (i = 0; i < network.len; i++)
        net[i] = lower(network.p[i]);
    net[i] = '\0';
    if (!network_known(cd_str_c(net)))
        return cd_err_set(CD_ERR_INVALID, "unknown social network '%s'",
                          cd_log_safe(net, (char[24]){0}, 24));
    if (strcmp(net, "twitter") == 0)
        memcpy(net, "x", 2); /* one network, two names */
    v = trim(v);
    if (v.len && v.p[0] == '@')
        v.p++, v.len--;
    if (v.len == 0 || v.len > 100)
        return cd_err_set(CD_ERR_INVALID, "a social handle has 1 to 100 characters");
    for (i = 0; i < v.len; i++)
        if ((unsigned char)v.p[i] <= ' ')
            return cd_err_set(CD_ERR_INVALID, "a social handle may not contain spaces");
    if (cd_buf_printf(out, "%s:", net) != CD_OK || cd_buf_reserve(out, v.len) != CD_OK)
        return CD_ERR_NOMEM;
    for (i = 0; i < v.len; i++)
        out->p[out->len++] = lower(v.p[i]);
    out->p[out->len] = '\0';
    return CD_OK;
}

static enum cd_err normalize_external(struct cd_str system, struct cd_str v, struct cd_buf *out)
{
    if (system.len == 0 || system.len > 64)
        return cd_err_set(CD_ERR_INVALID, "an external identity needs a 'network' naming the "
                                          "system it comes from, e.g. shopify");
    for (size_t i = 0; i < system.len; i++)
        if (system.p[i] == ':' || (unsigned char)system.p[i] <= ' ')
            return cd_err_set(CD_ERR_INVALID, "the external system name may not contain ':' "
                                              "or spaces");
    if (v.len == 0 || v.len > 200)
        return cd_err_set(CD_ERR_INVALID, "an external id has 1 to 200 characters");
    if (cd_buf_append(out, system.p, system.len) != CD_OK || cd_buf_putc(out, ':') != CD_OK ||
        cd_buf_append(out, v.p, v.len) != CD_OK)
        return CD_ERR_NOMEM;
    return CD_OK;
}

/* NFKC, case folding when fold is true, and no default-ignorable code points (zero-width
 * spaces and joiners, soft hyphens, bidi controls, variation selectors): what a reader cannot
 * see or tell apart does not tell two identities apart. The result goes to dst (cap bytes),
 * *n its length. ASCII text, the usual case, is only lower-cased: NFKC leaves it as it is and
 * no ASCII character is default-ignorable. Errors: CD_ERR_INVALID (too long once decomposed). */
static enum cd_err unicode_fold(struct cd_str v, bool fold, char *dst, size_t cap, size_t *n)
{
    int32_t cps[MAX_CODEPOINTS];
    /* COMPOSE here too: without DECOMPOSE or COMPOSE utf8proc decomposes nothing. */
    utf8proc_option_t opt = UTF8PROC_STABLE | UTF8PROC_COMPAT | UTF8PROC_COMPOSE |
                            UTF8PROC_IGNORE | (fold ? UTF8PROC_CASEFOLD : 0);
    utf8proc_ssize_t len;
    size_t i;

    for (i = 0; i < v.len && (unsigned char)v.p[i] < 0x80; i++)
        ;
    if (i == v.len) {
        if (v.len > cap)
            return cd_err_set(CD_ERR_INVALID, "the identity value is too long");
        for (i = 0; i < v.len; i++)
            dst[i] = fold ? lower(v.p[i]) : v.p[i];
        *n = v.len;
        return CD_OK;
    }
    len = utf8proc_decompose((const utf8proc_uint8_t *)v.p, (utf8proc_ssize_t)v.len, cps,
                             MAX_CODEPOINTS, opt);
    if (len < 0 || len > MAX_CODEPOINTS)
        return cd_err_set(CD_ERR_INVALID, "the identity value is too long once normalised");
    /* Composes (the C of NFKC) and writes UTF-8 over the code points, which it never outgrows. */
    len = utf8proc_reencode(cps, len, opt);
    if (len < 0 || (size_t)len > cap)
        return cd_err_set(CD_ERR_INVALID, "the identity value is too long once normalised");
    memcpy(dst, cps, (size_t)len);
    *n = (size_t)len;
    return CD_OK;
}

enum cd_err cd_core_identity_normalize(struct cd_str type, struct cd_str network,
                                       struct cd_str value, struct cd_buf *out)
{
    char folded[MAX_IDENTITY];
    size_t n = 0;
    enum cd_err err;
    /* External ids are another system's keys: their case may matter there. */
    bool external = cd_str_eq_c(type, "external");

    if (!cd_utf8_valid(value.p, value.len) || memchr(value.p, 0, value.len))
        return cd_err_set(CD_ERR_INVALID, "the identity value is not valid UTF-8 text");
    if (value.len > MAX_IDENTITY)
        return cd_err_set(CD_ERR_INVALID, "the identity value is too long");
    if ((err = unicode_fold(value, !external, folded, sizeof folded, &n)) != CD_OK)
        return err;
    value = (struct cd_str){folded, n};
    if (cd_str_eq_c(type, "email"))
        return normalize_email(value, out);
    if (cd_str_eq_c(type, "phone"))
        return normalize_phone(value, out);
    if (cd_str_eq_c(type, "social"))
        return normalize_social(network, value, out);
    if (external)
        return normalize_external(network, value, out);
    return cd_err_set(CD_ERR_INVALID,
                      "identity 'type' must be one of email, phone, social, external");
}

enum cd_err cd__core_spoof_open(struct cd_core *c)
{
    UErrorCode st = U_ZERO_ERROR;

    c->spoof = uspoof_open(&st);
    if (U_FAILURE(st)) {
        c->spoof = NULL;
        return cd_err_set(CD_ERR_INTERNAL, "ICU's confusable data cannot be loaded: %s",
                          u_errorName(st));
    }
    return CD_OK;
}

void cd__core_spoof_close(struct cd_core *c)
{
    if (c->spoof)
        uspoof_close(c->spoof);
    c->spoof = NULL;
}

enum cd_err cd__core_identity_skeleton(const struct cd_core *c, struct cd_str kind,
                                       struct cd_str norm, uint8_t out[CD_CRYPTO_HASH_LEN],
                                       bool *beyond_ascii)
{
    char skel[4 * MAX_CODEPOINTS], tag[32];
    UErrorCode st = U_ZERO_ERROR;
    int32_t n;

    *beyond_ascii = false;
    for (size_t i = 0; i < norm.len; i++)
        if ((unsigned char)norm.p[i] >= 0x80)
            *beyond_ascii = true;
    n = uspoof_getSkeletonUTF8(c->spoof, 0, norm.p, (int32_t)norm.len, skel, sizeof skel, &st);
    if (U_FAILURE(st) || n < 0 || (size_t)n > sizeof skel)
        return cd_err_set(st == U_MEMORY_ALLOCATION_ERROR ? CD_ERR_NOMEM : CD_ERR_INVALID,
                          "the identity's confusable skeleton cannot be computed (%s)",
                          u_errorName(st));
    /* Its own domain: a skeleton never equals the blind index of a value. */
    snprintf(tag, sizeof tag, "skeleton:%.*s", (int)kind.len, kind.p);
    cd_crypto_blind_index(c->index_key, cd_str_c(tag), (struct cd_str){skel, (size_t)n}, out);
    return CD_OK;
}
