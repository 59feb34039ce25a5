/* Validators that run on candidate matches only: checksums, issuing rules and numbering plans
 * that turn a digit pattern into personal data with high precision. Each takes the normalised
 * candidate and says OK, NO (not this kind of data) or FAILED (this kind's shape, but its check
 * digits or issuing rules fail: some other number written like one). */
#include <string.h>
#include "guard/guard_int.h"

/* Copies the digits of s (skipping spaces, dashes and dots) into d (capacity cap); returns the
 * count, or 0 if s holds another character or too many digits. */
static size_t digits_of(struct cd_str s, char *d, size_t cap)
{
    size_t n = 0;

    for (size_t i = 0; i < s.len; i++) {
        char c = s.p[i];
        if (c >= '0' && c <= '9') {
            if (n == cap)
                return 0;
            d[n++] = c;
        } else if (c != ' ' && c != '-' && c != '.' && c != '/') {
            return 0;
        }
    }
    return n;
}

static enum cd__guard_vres vr(bool shape, bool valid)
{
    return !shape ? CD__GUARD_VR_NO : valid ? CD__GUARD_VR_OK : CD__GUARD_VR_FAILED;
}

static bool all_same(const char *d, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (d[i] != d[0])
            return false;
    return true;
}

static bool luhn(const char *d, size_t n)
{
    int sum = 0;

    for (size_t i = 0; i < n; i++) {
        int v = d[n - 1 - i] - '0';
        if (i & 1) {
            v *= 2;
            if (v > 9)
                v -= 9;
        }
        sum += v;
    }
    return sum % 10 == 0;
}

bool cd_guard_luhn_ok(struct cd_str s)
{
    char d[32];
    size_t n = digits_of(s, d, sizeof d);

    return n >= 2 && luhn(d, n);
}

static int prefix(const char *d, size_t k)
{
    int v = 0;

    for (size_t i = 0; i < k; i++)
        v = v * 10 + (d[i] - '0');
    return v;
}

/* Issuer prefixes and lengths of the major card networks (ISO/IEC 7812 IIN ranges). */
static bool card_brand_ok(const char *d, size_t n)
{
    int p1 = prefix(d, 1), p2 = prefix(d, 2), p3 = prefix(d, 3), p4 = prefix(d, 4),
        p6 = prefix(d, 6);

    if (p1 == 4)
        return n == 13 || n == 16 || n == 19; /* Visa */
    if ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720))
        return n == 16; /* Mastercard */
    if (p2 == 34 || p2 == 37)
        return n == 15; /* American Express */
    if (p4 == 6011 || p2 == 65 || (p3 >= 644 && p3 <= 649) || (p6 >= 622126 && p6 <= 622925))
        return n >= 16 && n <= 19; /* Discover */
    if (p4 >= 3528 && p4 <= 3589)
        return n >= 16 && n <= 19; /* JCB */
    if (p2 == 36 || p2 == 38 || p2 == 39 || (p3 >= 300 && p3 <= 305) || p3 == 309)
        return n >= 14 && n <= 19; /* Diners Club */
    if (p2 == 62)
        return n >= 16 && n <= 19; /* UnionPay */
    if (p2 == 50 || (p2 >= 56 && p2 <= 58) || p2 == 63 || p2 == 67 || p2 == 60)
        return n >= 12 && n <= 19; /* Maestro and other debit */
    return false;
}

/* Card numbers are printed run together or with a first group of four (4-4-4-4, Amex 4-6-5,
 * Diners 4-6-4) or, for 19-digit UnionPay, six; "41 3569 0172 846" is a meter or account
 * number, whatever its check digit. */
static bool card_grouping_ok(struct cd_str s, size_t n)
{
    size_t first = 0;

    while (first < s.len && s.p[first] >= '0' && s.p[first] <= '9')
        first++;
    return first == s.len || first == 4 || (first == 6 && n == 19);
}

static enum cd__guard_vres card_check(struct cd_str s)
{
    char d[24];
    size_t n = digits_of(s, d, sizeof d);

    return vr(n >= 12 && n <= 19 && !all_same(d, n) && card_brand_ok(d, n) &&
                  card_grouping_ok(s, n),
              luhn(d, n));
}

bool cd_guard_card_ok(struct cd_str s)
{
    return card_check(s) == CD__GUARD_VR_OK;
}

/* IBAN lengths by country (ISO 13616 registry). */
static const struct {
    char cc[3];
    unsigned char len;
} iban_len[] = {
    {"ad", 24}, {"ae", 23}, {"al", 28}, {"at", 20}, {"az", 28}, {"ba", 20}, {"be", 16},
    {"bg", 22}, {"bh", 22}, {"br", 29}, {"by", 28}, {"ch", 21}, {"cr", 22}, {"cy", 28},
    {"cz", 24}, {"de", 22}, {"dk", 18}, {"do", 28}, {"ee", 20}, {"eg", 29}, {"es", 24},
    {"fi", 18}, {"fo", 18}, {"fr", 27}, {"gb", 22}, {"ge", 22}, {"gi", 23}, {"gl", 18},
    {"gr", 27}, {"gt", 28}, {"hr", 21}, {"hu", 28}, {"ie", 22}, {"il", 23}, {"iq", 23},
    {"is", 26}, {"it", 27}, {"jo", 30}, {"kw", 30}, {"kz", 20}, {"lb", 28}, {"lc", 32},
    {"li", 21}, {"lt", 20}, {"lu", 20}, {"lv", 21}, {"mc", 27}, {"md", 24}, {"me", 22},
    {"mk", 19}, {"mr", 27}, {"mt", 31}, {"mu", 30}, {"nl", 18}, {"no", 15}, {"pk", 24},
    {"pl", 28}, {"ps", 29}, {"pt", 25}, {"qa", 29}, {"ro", 24}, {"rs", 22}, {"sa", 24},
    {"sc", 31}, {"se", 24}, {"si", 19}, {"sk", 24}, {"sm", 27}, {"st", 25}, {"sv", 28},
    {"tl", 23}, {"tn", 24}, {"tr", 26}, {"ua", 29}, {"va", 22}, {"vg", 24}, {"xk", 20},
};

static int alnum_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'Z')
        return c - 'A' + 10;
    return -1;
}

static enum cd__guard_vres iban_check(struct cd_str s)
{
    char b[40];
    size_t n = 0, want = 0;
    unsigned rem = 0;

    for (size_t i = 0; i < s.len; i++) {
        char c = s.p[i];
        if (c == ' ' || c == '-')
            continue;
        if (alnum_val(c) < 0 || n == sizeof b)
            return CD__GUARD_VR_NO;
        b[n++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    if (n < 15)
        return CD__GUARD_VR_NO;
    for (size_t i = 0; i < sizeof iban_len / sizeof iban_len[0]; i++)
        if (b[0] == iban_len[i].cc[0] && b[1] == iban_len[i].cc[1])
            want = iban_len[i].len;
    if (want == 0 || n != want || b[2] < '0' || b[2] > '9' || b[3] < '0' || b[3] > '9')
        return CD__GUARD_VR_NO;
    /* Move the first four characters to the end, read letters as 10..35, reduce mod 97. */
    for (size_t k = 0; k < n; k++) {
        int v = alnum_val(b[(k + 4) % n]);
        rem = v >= 10 ? (rem * 100 + (unsigned)v) % 97 : (rem * 10 + (unsigned)v) % 97;
    }
    return vr(true, rem == 1);
}

bool cd_guard_iban_ok(struct cd_str s)
{
    return iban_check(s) == CD__GUARD_VR_OK;
}

static enum cd__guard_vres ssn_check(struct cd_str s)
{
    char d[12];
    size_t n = digits_of(s, d, sizeof d);
    int area, group, serial;

    if (n != 9)
        return CD__GUARD_VR_NO;
    area = prefix(d, 3);
    group = (d[3] - '0') * 10 + (d[4] - '0');
    serial = prefix(d + 5, 4);
    /* SSA rules: no area 000, 666 or 900-999; no group 00; no serial 0000; and the numbers
     * published in advertising (078-05-1120, 219-09-9999) are not anyone's. */
    if (area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0)
        return CD__GUARD_VR_FAILED;
    if ((area == 78 && group == 5 && serial == 1120) || (area == 219 && group == 9 &&
                                                         serial == 9999))
        return CD__GUARD_VR_FAILED;
    if (all_same(d, n) || memcmp(d, "123456789", 9) == 0)
        return CD__GUARD_VR_FAILED;
    return CD__GUARD_VR_OK;
}

bool cd_guard_ssn_ok(struct cd_str s)
{
    return ssn_check(s) == CD__GUARD_VR_OK;
}

static enum cd__guard_vres bsn_check(struct cd_str s)
{
    char d[12];
    size_t n = digits_of(s, d, sizeof d);
    int sum = 0;

    if (n != 9 || all_same(d, n))
        return CD__GUARD_VR_NO;
    for (size_t i = 0; i < 8; i++)
        sum += (int)(9 - i) * (d[i] - '0');
    sum -= d[8] - '0';
    return vr(true, sum % 11 == 0);
}

static bool verhoeff_ok(const char *d, size_t n)
{
    static const unsigned char mul[10][10] = {
        {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 2, 3, 4, 0, 6, 7, 8, 9, 5},
        {2, 3, 4, 0, 1, 7, 8, 9, 5, 6}, {3, 4, 0, 1, 2, 8, 9, 5, 6, 7},
        {4, 0, 1, 2, 3, 9, 5, 6, 7, 8}, {5, 9, 8, 7, 6, 0, 4, 3, 2, 1},
        {6, 5, 9, 8, 7, 1, 0, 4, 3, 2}, {7, 6, 5, 9, 8, 2, 1, 0, 4, 3},
        {8, 7, 6, 5, 9, 3, 2, 1, 0, 4}, {9, 8, 7, 6, 5, 4, 3, 2, 1, 0}};
    static const unsigned char perm[8][10] = {
        {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 5, 7, 6, 2, 8, 3, 0, 9, 4},
        {5, 8, 0, 3, 7, 9, 6, 1, 4, 2}, {8, 9, 1, 6, 0, 4, 3, 5, 2, 7},
        {9, 4, 5, 3, 1, 2, 6, 8, 7, 0}, {4, 2, 8, 6, 5, 7, 3, 9, 0, 1},
        {2, 7, 9, 3, 8, 0, 6, 4, 1, 5}, {7, 0, 4, 6, 9, 1, 3, 2, 5, 8}};
    int c = 0;

    for (size_t i = 0; i < n; i++)
        c = mul[c][perm[i % 8][d[n - 1 - i] - '0']];
    return c == 0;
}

static enum cd__guard_vres aadhaar_check(struct cd_str s)
{
    char d[16];
    size_t n = digits_of(s, d, sizeof d);

    return vr(n == 12 && d[0] >= '2' && !all_same(d, n), verhoeff_ok(d, n));
}

static enum cd__guard_vres cpf_check(struct cd_str s)
{
    char d[16];
    size_t n = digits_of(s, d, sizeof d);
    int s1 = 0, s2 = 0;

    if (n != 11 || all_same(d, n))
        return CD__GUARD_VR_NO;
    for (int i = 0; i < 9; i++)
        s1 += (d[i] - '0') * (10 - i);
    s1 = (s1 * 10) % 11 % 10;
    for (int i = 0; i < 10; i++)
        s2 += (d[i] - '0') * (11 - i);
    s2 = (s2 * 10) % 11 % 10;
    return vr(true, s1 == d[9] - '0' && s2 == d[10] - '0');
}

static enum cd__guard_vres dni_check(struct cd_str s)
{
    static const char letters[] = "trwagmyfpdxbnjzsqvhlcke";
    char d[12];
    size_t n = 0;
    long v = 0;
    char last;

    if (s.len < 9)
        return CD__GUARD_VR_NO;
    last = s.p[s.len - 1];
    for (size_t i = 0; i + 1 < s.len; i++) {
        char c = s.p[i];
        if (i == 0 && (c == 'x' || c == 'y' || c == 'z')) {
            d[n++] = (char)('0' + (c - 'x')); /* NIE: X=0, Y=1, Z=2 */
            continue;
        }
        if (c == '-' || c == ' ')
            continue;
        if (c < '0' || c > '9' || n >= 8)
            return CD__GUARD_VR_NO;
        d[n++] = c;
    }
    if (n != 8)
        return CD__GUARD_VR_NO;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (d[i] - '0');
    return vr(true, letters[v % 23] == last);
}

static bool nino_ok(struct cd_str s)
{
    char b[9];
    size_t n = 0;

    for (size_t i = 0; i < s.len; i++) {
        if (s.p[i] == ' ')
            continue;
        if (n == sizeof b)
            return false;
        b[n++] = s.p[i];
    }
    if (n != 9 && n != 8)
        return false;
    /* HMRC: the first letter is not D, F, I, Q, U or V; the second not those or O; the
     * prefixes BG, GB, KN, NK, NT, TN and ZZ are never issued; suffix A-D. */
    if (strchr("dfiquv", b[0]) || strchr("dfiquvo", b[1]))
        return false;
    static const char *const bad[] = {"bg", "gb", "kn", "nk", "nt", "tn", "zz"};
    for (size_t i = 0; i < 7; i++)
        if (b[0] == bad[i][0] && b[1] == bad[i][1])
            return false;
    for (size_t i = 2; i < 8; i++)
        if (b[i] < '0' || b[i] > '9')
            return false;
    return n == 8 || (b[8] >= 'a' && b[8] <= 'd');
}

static enum cd__guard_vres aba_check(struct cd_str s)
{
    char d[12];
    size_t n = digits_of(s, d, sizeof d);
    int sum = 0;

    if (n != 9 || all_same(d, n))
        return CD__GUARD_VR_NO;
    for (int i = 0; i < 9; i += 3)
        sum += 3 * (d[i] - '0') + 7 * (d[i + 1] - '0') + (d[i + 2] - '0');
    return vr(true, sum % 10 == 0);
}

/* North American numbering: area and exchange codes start 2-9; N11 codes are services, N00
 * codes ("easily recognisable codes": 800, 900, 500, 600, ...) and toll-free areas belong to
 * businesses, and the fictional 555-01xx range to films. */
static bool nanp_ok(const char *d)
{
    int area = prefix(d, 3);

    if (d[0] < '2' || d[3] < '2')
        return false;
    if ((d[1] == '0' && d[2] == '0') || (d[1] == '1' && d[2] == '1') ||
        (d[4] == '1' && d[5] == '1'))
        return false;
    if (area == 833 || area == 844 || area == 855 || area == 866 || area == 877 || area == 888)
        return false;
    return !(prefix(d + 3, 3) == 555 && d[6] == '0' && d[7] == '1');
}

/* Country calling codes (ITU-T E.164) with the lengths of their national significant numbers
 * and the national ranges that belong to businesses (freephone, shared-cost, premium-rate and
 * non-geographic numbers), which are not anyone's personal number. */
static const struct {
    const char *cc;
    unsigned char min, max;
    const char *business; /* comma-separated NSN prefixes */
} plans[] = {
    {"1", 10, 10, ""},       {"7", 10, 10, "800"},     {"20", 8, 10, "800,900"},
    {"27", 9, 9, "80,86"},   {"30", 10, 10, "800,801,90"}, {"31", 9, 9, "800,900,906,909"},
    {"32", 8, 9, "800,70,90"}, {"33", 9, 9, "80,81,82,89"}, {"34", 9, 9, "80,90"},
    {"36", 8, 9, "80,90"},   {"39", 6, 11, "800,803,89"}, {"40", 9, 9, "800,90"},
    {"41", 9, 9, "800,84,90"}, {"43", 4, 13, "800,810,820,900"}, {"44", 9, 10, "80,84,87,9,3,500"},
    {"45", 8, 8, "80,90"},   {"46", 7, 10, "20,900"},  {"47", 8, 8, "800,810,820,829"},
    {"48", 9, 9, "800,70"},  {"49", 6, 13, "800,180,900,137,138"}, {"51", 8, 9, "80"},
    {"52", 10, 10, "800,900"}, {"53", 8, 8, ""},       {"54", 10, 11, "800,600"},
    {"55", 10, 11, "800,300"}, {"56", 9, 9, "800,600"}, {"57", 10, 10, "1800"},
    {"58", 10, 10, "800"},   {"60", 8, 10, "1800,1300"}, {"61", 9, 9, "13,18,19"},
    {"62", 8, 12, "800"},    {"63", 10, 10, "1800"},   {"64", 8, 10, "800,508,900"},
    {"65", 8, 8, "800,1800"}, {"66", 8, 9, "1800"},    {"81", 9, 10, "120,570,800,990"},
    {"82", 8, 10, "80,1588"}, {"84", 9, 10, "1800,1900"}, {"86", 10, 11, "400,800"},
    {"90", 10, 10, "800,444,850,900"}, {"91", 10, 10, "1800,1860"}, {"92", 9, 10, "800,900"},
    {"93", 9, 9, ""},        {"94", 9, 9, "800"},      {"95", 8, 10, ""},
    {"98", 10, 10, ""},      {"212", 9, 9, "80"},      {"213", 8, 9, "800"},
    {"216", 8, 8, "80"},     {"233", 9, 9, "800"},     {"234", 8, 10, "800"},
    {"254", 9, 9, "800"},    {"255", 9, 9, "800"},     {"256", 9, 9, "800"},
    {"351", 9, 9, "800,808,707,760"}, {"352", 4, 11, "800"}, {"353", 7, 9, "1800,1850,1890,15"},
    {"354", 7, 7, "800"},    {"356", 8, 8, "800"},     {"357", 8, 8, "800,900"},
    {"358", 5, 12, "800"},   {"359", 8, 9, "800"},     {"370", 8, 8, "800"},
    {"371", 8, 8, "80"},     {"372", 7, 8, "800"},     {"380", 9, 9, "800"},
    {"385", 8, 9, "800"},    {"386", 8, 8, "80"},      {"420", 9, 9, "800"},
    {"421", 9, 9, "800"},    {"852", 8, 8, "800"},     {"853", 8, 8, ""},
    {"880", 10, 10, "800"},  {"886", 8, 9, "800"},     {"961", 7, 8, ""},
    {"962", 8, 9, "800"},    {"965", 8, 8, "1800"},    {"966", 9, 9, "800"},
    {"968", 8, 8, "800"},    {"971", 8, 9, "800,600"}, {"972", 8, 9, "1800,1700"},
    {"973", 8, 8, "80"},     {"974", 8, 8, "800"},
};

static bool starts_with_any(const char *d, size_t n, const char *list)
{
    while (*list) {
        size_t k = strcspn(list, ",");
        if (k <= n && memcmp(d, list, k) == 0)
            return true;
        list += k + (list[k] == ',');
    }
    return false;
}

/* A number written with a country code: the code, the length of the rest, business ranges. */
static bool international_ok(const char *d, size_t n)
{
    for (size_t i = 0; i < sizeof plans / sizeof plans[0]; i++) {
        size_t cl = strlen(plans[i].cc);
        if (n <= cl || memcmp(d, plans[i].cc, cl) != 0)
            continue;
        /* Codes are prefix-free, so this is the only plan that can apply. */
        if (n - cl < plans[i].min || n - cl > plans[i].max)
            return false;
        if (cl == 1 && d[0] == '1')
            return nanp_ok(d + 1);
        return !starts_with_any(d + cl, n - cl, plans[i].business);
    }
    return n >= 8 && n <= 15; /* a code not in the table: E.164 lengths only */
}

/* Ranges that are services in national writing. g[0] is the length of the first digit group
 * (the whole number when it is written without separators), ng the number of groups. The UK
 * writes its non-geographic numbers with four or five digits first (0345, 0800, 09058); a
 * three-digit first group is how Japanese mobiles (090-1234-5678) and German cities
 * (030 12345678) are written, and a six-digit one Indian mobiles with their trunk 0
 * (098765 43210), so those are people and places. A run-together number is read the UK way,
 * except for the Japanese mobile ranges the UK does not use. */
static bool national_business(const char *d, size_t n, const unsigned char *g, size_t ng)
{
    static const char *const anywhere[] = {"0800", "0808", "0500", "0120", "0570", "0990",
                                           "0180", "0137", "0900", "0906", "0909"};
    /* Japanese mobiles: 070, 080 or 090, then eight digits, written 3-4-4 or run together; the
     * UK uses 0800, 0808 and 0900 for services, so a run-together 0x00 or 0808 stays one. */
    bool jp_mobile = n == 11 && (d[1] == '7' || d[1] == '8' || d[1] == '9') && d[2] == '0' &&
                     ((ng > 1 && g[0] == 3) ||
                      (ng == 1 && d[3] != '0' && !(d[1] == '8' && d[3] == '8')));

    if (jp_mobile)
        return false;
    for (size_t i = 0; i < sizeof anywhere / sizeof anywhere[0]; i++)
        if (memcmp(d, anywhere[i], 4) == 0)
            return true;
    if (n == 11 && (ng == 1 || g[0] == 4 || g[0] == 5) &&
        (memcmp(d, "084", 3) == 0 || memcmp(d, "087", 3) == 0 || memcmp(d, "03", 2) == 0 ||
         memcmp(d, "09", 2) == 0))
        return true;
    /* France writes its 08 special-rate numbers in pairs; Korea's 080 is freephone. */
    if (n == 10 && d[1] == '8' && (ng == 5 || (ng == 4 && g[0] == 4)))
        return true;
    return n == 10 && memcmp(d, "080", 3) == 0 && ng > 1 && g[0] == 3;
}

/* True if [from, to) of key continues a longer run of digit groups on either side ("1234 5678
 * 9012 3456 78" holds many ten-digit windows, none of them a phone number). */
static bool digit_fragment(const char *key, size_t klen, size_t from, size_t to)
{
    if (from > 0 && key[from - 1] >= '0' && key[from - 1] <= '9')
        return true;
    if (from > 1 && strchr(" -./", key[from - 1]) && key[from - 2] >= '0' && key[from - 2] <= '9')
        return true;
    if (to < klen && key[to] >= '0' && key[to] <= '9')
        return true;
    return to + 1 < klen && strchr(" -./", key[to]) && key[to + 1] >= '0' && key[to + 1] <= '9';
}

/* True if [from, to) is a window of a longer run of digit groups, such as a payment reference
 * "2489 1489 3557 6838 5690 04": digits or a separator and a digit before it, or digits, or the
 * same separator and another group of four or more digits, after it. An expiry date or a
 * security code after a card number ("4242 4242 4242 4242 12/27") is not a longer run. */
static bool card_fragment(const char *key, size_t klen, size_t from, size_t to)
{
    size_t k = to + 1, len = 0;

    if (from > 0 && key[from - 1] >= '0' && key[from - 1] <= '9')
        return true;
    if (from > 1 && strchr(" -", key[from - 1]) && key[from - 2] >= '0' && key[from - 2] <= '9')
        return true;
    if (to < klen && key[to] >= '0' && key[to] <= '9')
        return true;
    if (to >= klen || !strchr(" -", key[to]))
        return false;
    while (k < klen && key[k] >= '0' && key[k] <= '9') {
        k++;
        len++;
    }
    if (len < 4)
        return false;
    for (size_t i = from; i < to; i++) /* the number's own separator continues the run */
        if (key[i] == key[to])
            return true;
    return false;
}

/* A personal phone number: an international number in a known plan (or of E.164 length) that
 * is not a business range, or a national number in one of the national writings: North
 * American, trunk-0 numbers of 9-12 digits (most of Europe, Asia, Africa and Oceania), Chinese
 * mobiles (1[3-9] and nine digits), Greek numbers (2x landlines, 69x mobiles) and Indian
 * mobiles written 5-5. */
/* The digits of a written phone number and the lengths of their groups. */
struct phone_digits {
    char d[20];
    unsigned char g[8];
    size_t n, ng;
    bool plus;        /* written with "+" */
    bool dot_or_dash; /* groups separated by ".", "-" or "/" somewhere */
};

/* Reads key[from, to) into p. False if it holds anything but digits and the separators of
 * phone numbers, or more digits or groups than any number has. */
static bool phone_digits_of(const char *key, size_t from, size_t to, struct phone_digits *p)
{
    bool in_group = false;

    *p = (struct phone_digits){0};
    for (size_t i = from; i < to; i++) {
        char c = key[i];
        if (c >= '0' && c <= '9') {
            if (p->n == sizeof p->d || (!in_group && p->ng == sizeof p->g))
                return false;
            if (!in_group)
                p->g[p->ng++] = 0;
            p->g[p->ng - 1]++;
            in_group = true;
            p->d[p->n++] = c;
            continue;
        }
        in_group = false;
        if (c == '+') {
            p->plus = true;
        } else if (c == '(' && p->plus && i + 2 < to && key[i + 1] == '0' && key[i + 2] == ')') {
            i += 2; /* "+44 (0)20 ...": the trunk prefix written in brackets */
        } else if (!strchr(" -.()/", c)) {
            return false;
        }
        p->dot_or_dash |= c == '.' || c == '-' || c == '/';
    }
    return true;
}

static enum cd__guard_vres phone_check(const char *key, size_t klen, size_t from, size_t to)
{
    struct phone_digits p;
    char *d = p.d;
    const unsigned char *g = p.g;
    size_t n, ng;
    bool plus;

    if (digit_fragment(key, klen, from, to) || !phone_digits_of(key, from, to, &p))
        return CD__GUARD_VR_NO;
    n = p.n;
    ng = p.ng;
    plus = p.plus;
    if (n < 9 || n > 15 || all_same(d, n))
        return CD__GUARD_VR_NO;
    if (!plus && d[0] == '0' && d[1] == '0') { /* 00 is the international prefix */
        memmove(d, d + 2, n - 2);
        n -= 2;
        plus = true;
    }
    if (plus)
        return international_ok(d, n) ? CD__GUARD_VR_OK : CD__GUARD_VR_NO;
    if (d[0] == '0') {
        if (national_business(d, n, g, ng))
            return CD__GUARD_VR_NO;
        if (n == 9) /* 02-123-4567 (Israel, Seoul, Brussels): only with its area group */
            return ng > 1 && g[0] == 2 ? CD__GUARD_VR_OK : CD__GUARD_VR_NO;
        return n >= 10 && n <= 12 ? CD__GUARD_VR_OK : CD__GUARD_VR_NO;
    }
    if (n == 10 && d[0] >= '2' && nanp_ok(d))
        return CD__GUARD_VR_OK;
    if (n == 11 && d[0] == '1') {
        if (nanp_ok(d + 1) && (ng == 1 || g[0] == 1))
            return CD__GUARD_VR_OK;
        if (d[1] >= '3' && (ng == 1 || g[0] == 3)) /* Chinese mobile, 139 1234 5678 */
            return CD__GUARD_VR_OK;
        return CD__GUARD_VR_NO;
    }
    if (n == 10 && ((d[0] == '2' && ng > 1) || (d[0] == '6' && d[1] == '9')))
        return CD__GUARD_VR_OK; /* Greece: 210 123 4567, 2310 123456, 694 123 4567 */
    if (n == 10 && d[0] >= '6' && ng == 2 && g[0] == 5)
        return CD__GUARD_VR_OK; /* Indian mobile, 98765 43210 */
    return CD__GUARD_VR_NO;
}

/* A number written the national way in a plan without a trunk prefix (Portugal 912 345 678,
 * Poland 512 345 678, Denmark 20 12 34 56, Norway 412 34 567, Spain, Italy, Singapore, Hong
 * Kong, Mexico, Brazil's (11) 91234-5678): 8 to 11 digits in groups of two or more. Such digits
 * are as often a reference, an amount or a date, so the rule that uses this asks for phone words
 * nearby; here the shape is checked, freephone, shared-cost and premium prefixes (800, 808,
 * 900-902, 1800, 1300, 1900, 707, 89) are services, written dates (30.11.2026, 2026-11-30) are
 * not numbers, and what phone_check already reports is left to it. */
static enum cd__guard_vres phone_local_check(const char *key, size_t klen, size_t from,
                                             size_t to)
{
    struct phone_digits p;
    const unsigned char *g = p.g;

    if (digit_fragment(key, klen, from, to) || !phone_digits_of(key, from, to, &p) || p.plus)
        return CD__GUARD_VR_NO;
    if (p.n < 8 || p.n > 11 || p.ng < 2 || p.d[0] == '0' || all_same(p.d, p.n))
        return CD__GUARD_VR_NO;
    for (size_t k = 0; k < p.ng; k++)
        if (g[k] < 2)
            return CD__GUARD_VR_NO;
    if (p.dot_or_dash && p.ng == 3 &&
        ((g[0] == 2 && g[1] == 2 && g[2] == 4) || (g[0] == 4 && g[1] == 2 && g[2] == 2)))
        return CD__GUARD_VR_NO;
    if (starts_with_any(p.d, p.n, "800,801,808,900,901,902,1800,1300,1900,707,89"))
        return CD__GUARD_VR_NO;
    return phone_check(key, klen, from, to) == CD__GUARD_VR_OK ? CD__GUARD_VR_NO
                                                                : CD__GUARD_VR_OK;
}

static bool email_ok(struct cd_str s)
{
    /* Role mailboxes belong to organisations, not people. */
    static const char *const roles[] = {
        "support", "help", "info", "noreply", "no-reply", "donotreply", "do-not-reply",
        "contact", "service", "services", "customerservice", "customercare", "care", "billing",
        "privacy", "dpo", "sales", "team", "hello", "admin", "feedback", "returns", "orders",
        "accounts", "accounting", "security", "abuse", "postmaster", "webmaster", "press",
        "media", "legal", "compliance", "complaints", "careers", "jobs", "hr", "office",
        "enquiries", "inquiries", "marketing", "newsletter", "notifications", "alerts",
        "reservations", "bookings", "shop", "store", "partners", "investors", "refunds",
        "helpdesk", "mail", "example", "user", "name", "yourname", "test",
        /* The same mailboxes in other languages. */
        "kontakt", "kundenservice", "kundendienst", "hilfe", "anfrage", "buchung", "rechnung",
        "contacto", "soporte", "ayuda", "atencion", "reservas", "ventas", "facturacion",
        "assistance", "serviceclient", "service-client", "aide", "commercial", "contatti",
        "assistenza", "prenotazioni", "suporte", "atendimento", "klantenservice", "klantendienst",
        "informatie", "kundeservice", "kundtjanst", "asiakaspalvelu", "obsluga", "biuro"};
    size_t at = 0;

    while (at < s.len && s.p[at] != '@')
        at++;
    if (at == 0 || at >= s.len)
        return false;
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
        if (strlen(roles[i]) == at && memcmp(roles[i], s.p, at) == 0)
            return false;
    return true;
}

static bool address_ok(struct cd_str s)
{
    /* Words between the number and the street type must look like a street name, not a
     * phrase ("19 one way", "3 more days"). */
    static const char *const stop[] = {
        "one", "two", "three", "four", "five", "a", "an", "the", "of", "to", "for", "in", "on",
        "at", "per", "and", "or", "more", "days", "hours", "minutes", "years", "months", "weeks",
        "items", "people", "other", "times", "percent", "off", "is", "are", "was", "by", "from",
        "with", "your", "our", "my", "it", "this", "that", "way", "ways", "am", "pm", "x", "kg",
        "cm", "mm", "lbs", "units", "pieces", "orders", "free"};
    size_t i = 0;

    while (i < s.len && ((s.p[i] >= '0' && s.p[i] <= '9') || s.p[i] == ',' || s.p[i] == ' '))
        i++;
    while (i < s.len) {
        size_t st = i;
        while (i < s.len && s.p[i] != ' ')
            i++;
        size_t wl = i - st;
        if (i >= s.len)
            break; /* the last word is the street type itself */
        for (size_t k = 0; k < sizeof stop / sizeof stop[0]; k++)
            if (strlen(stop[k]) == wl && memcmp(stop[k], s.p + st, wl) == 0)
                return false;
        while (i < s.len && s.p[i] == ' ')
            i++;
    }
    return true;
}

enum cd__guard_vres cd__guard_validate(enum cd__guard_validator v, const char *key, size_t klen,
                                       size_t from, size_t to)
{
    struct cd_str s = {key + from, to - from};

    switch (v) {
    case CD__GUARD_V_NONE:
        return CD__GUARD_VR_OK;
    case CD__GUARD_V_CARD:
        /* Card numbers are never written after "+": "+49 151 2345 6789" is a phone number. */
        if ((from > 0 && key[from - 1] == '+') || card_fragment(key, klen, from, to))
            return CD__GUARD_VR_NO;
        return card_check(s);
    case CD__GUARD_V_LUHN: {
        char d[24];
        size_t n = digits_of(s, d, sizeof d);
        return vr(n >= 8 && !all_same(d, n), luhn(d, n));
    }
    case CD__GUARD_V_IBAN:
        return iban_check(s);
    case CD__GUARD_V_SSN:
        return ssn_check(s);
    case CD__GUARD_V_BSN:
        return bsn_check(s);
    case CD__GUARD_V_AADHAAR:
        return aadhaar_check(s);
    case CD__GUARD_V_CPF:
        return cpf_check(s);
    case CD__GUARD_V_DNI:
        return dni_check(s);
    case CD__GUARD_V_NINO:
        return nino_ok(s) ? CD__GUARD_VR_OK : CD__GUARD_VR_NO;
    case CD__GUARD_V_ABA:
        return aba_check(s);
    case CD__GUARD_V_PHONE:
        return phone_check(key, klen, from, to);
    case CD__GUARD_V_PHONE_LOCAL:
        return phone_local_check(key, klen, from, to);
    case CD__GUARD_V_EMAIL:
        return email_ok(s) ? CD__GUARD_VR_OK : CD__GUARD_VR_NO;
    case CD__GUARD_V_ADDRESS:
        return address_ok(s) ? CD__GUARD_VR_OK : CD__GUARD_VR_NO;
    }
    return CD__GUARD_VR_NO;
}
