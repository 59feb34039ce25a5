/* Validators that run on candidate matches only: checksums and structural rules that turn a
 * digit pattern into personal data with high precision. Each takes the normalised candidate. */
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

bool cd_guard_card_ok(struct cd_str s)
{
    char d[24];
    size_t n = digits_of(s, d, sizeof d);

    /* Groups must be separated consistently: "4242 4242 4242 4242" or runs of digits. */
    return n >= 12 && n <= 19 && !all_same(d, n) && card_brand_ok(d, n) && luhn(d, n);
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

bool cd_guard_iban_ok(struct cd_str s)
{
    char b[40];
    size_t n = 0, want = 0;
    unsigned rem = 0;

    for (size_t i = 0; i < s.len; i++) {
        char c = s.p[i];
        if (c == ' ' || c == '-')
            continue;
        if (alnum_val(c) < 0 || n == sizeof b)
            return false;
        b[n++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    if (n < 15)
        return false;
    for (size_t i = 0; i < sizeof iban_len / sizeof iban_len[0]; i++)
        if (b[0] == iban_len[i].cc[0] && b[1] == iban_len[i].cc[1])
            want = iban_len[i].len;
    if (want == 0 || n != want || b[2] < '0' || b[2] > '9' || b[3] < '0' || b[3] > '9')
        return false;
    /* Move the first four characters to the end, read letters as 10..35, reduce mod 97. */
    for (size_t k = 0; k < n; k++) {
        int v = alnum_val(b[(k + 4) % n]);
        rem = v >= 10 ? (rem * 100 + (unsigned)v) % 97 : (rem * 10 + (unsigned)v) % 97;
    }
    return rem == 1;
}

bool cd_guard_ssn_ok(struct cd_str s)
{
    char d[12];
    size_t n = digits_of(s, d, sizeof d);
    int area, group, serial;

    if (n != 9)
        return false;
    area = prefix(d, 3);
    group = (d[3] - '0') * 10 + (d[4] - '0');
    serial = prefix(d + 5, 4);
    /* SSA rules: no area 000, 666 or 900-999; no group 00; no serial 0000; and the numbers
     * published in advertising (078-05-1120, 219-09-9999) are not anyone's. */
    if (area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0)
        return false;
    if ((area == 78 && group == 5 && serial == 1120) || (area == 219 && group == 9 &&
                                                         serial == 9999))
        return false;
    if (all_same(d, n) || memcmp(d, "123456789", 9) == 0)
        return false;
    return true;
}

static bool bsn_ok(struct cd_str s)
{
    char d[12];
    size_t n = digits_of(s, d, sizeof d);
    int sum = 0;

    if (n != 9 || all_same(d, n))
        return false;
    for (size_t i = 0; i < 8; i++)
        sum += (int)(9 - i) * (d[i] - '0');
    sum -= d[8] - '0';
    return sum % 11 == 0;
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

static bool aadhaar_ok(struct cd_str s)
{
    char d[16];
    size_t n = digits_of(s, d, sizeof d);

    return n == 12 && d[0] >= '2' && !all_same(d, n) && verhoeff_ok(d, n);
}

static bool cpf_ok(struct cd_str s)
{
    char d[16];
    size_t n = digits_of(s, d, sizeof d);
    int s1 = 0, s2 = 0;

    if (n != 11 || all_same(d, n))
        return false;
    for (int i = 0; i < 9; i++)
        s1 += (d[i] - '0') * (10 - i);
    s1 = (s1 * 10) % 11 % 10;
    for (int i = 0; i < 10; i++)
        s2 += (d[i] - '0') * (11 - i);
    s2 = (s2 * 10) % 11 % 10;
    return s1 == d[9] - '0' && s2 == d[10] - '0';
}

static bool dni_ok(struct cd_str s)
{
    static const char letters[] = "trwagmyfpdxbnjzsqvhlcke";
    char d[12];
    size_t n = 0;
    long v = 0;
    char last;

    if (s.len < 9)
        return false;
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
            return false;
        d[n++] = c;
    }
    if (n != 8)
        return false;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (d[i] - '0');
    return letters[v % 23] == last;
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

static bool aba_ok(struct cd_str s)
{
    char d[12];
    size_t n = digits_of(s, d, sizeof d);
    int sum = 0;

    if (n != 9 || all_same(d, n))
        return false;
    for (int i = 0; i < 9; i += 3)
        sum += 3 * (d[i] - '0') + 7 * (d[i + 1] - '0') + (d[i + 2] - '0');
    return sum % 10 == 0;
}

static bool nanp_ok(const char *d)
{
    /* North American numbering: area and exchange codes start 2-9; toll-free numbers and the
     * fictional 555-01xx range belong to businesses and films, not people. */
    int area = prefix(d, 3);

    if (d[0] < '2' || d[3] < '2')
        return false;
    if (area == 800 || area == 833 || area == 844 || area == 855 || area == 866 || area == 877 ||
        area == 888 || area == 900)
        return false;
    return !(prefix(d + 3, 3) == 555 && d[6] == '0' && d[7] == '1');
}

static bool phone_ok(struct cd_str s)
{
    char d[20];
    size_t n = 0;
    bool plus = false;

    for (size_t i = 0; i < s.len; i++) {
        char c = s.p[i];
        if (c >= '0' && c <= '9') {
            if (n == sizeof d)
                return false;
            d[n++] = c;
        } else if (c == '+') {
            plus = true;
        } else if (!strchr(" -.()/", c)) {
            return false;
        }
    }
    if (n < 10 || n > 15 || all_same(d, n))
        return false;
    if (plus) {
        if (d[0] == '1')
            return n == 11 && nanp_ok(d + 1);
        /* UK freephone (+44 800/808) is a business line. */
        return !(memcmp(d, "44800", 5) == 0 || memcmp(d, "44808", 5) == 0);
    }
    if (n == 11 && d[0] == '1')
        return nanp_ok(d + 1);
    if (n == 10 && d[0] >= '2')
        return nanp_ok(d);
    /* A national number with trunk prefix 0; freephone, non-geographic and premium ranges
     * (080x, 084x, 087x, 03xx, 090x in the UK) are businesses. */
    if (d[0] == '0' && n <= 11)
        return !(memcmp(d, "080", 3) == 0 || memcmp(d, "084", 3) == 0 ||
                 memcmp(d, "087", 3) == 0 || memcmp(d, "03", 2) == 0 ||
                 memcmp(d, "090", 3) == 0);
    return false;
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
        "helpdesk", "mail", "example", "user", "name", "yourname", "test"};
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

bool cd__guard_validate(enum cd__guard_validator v, struct cd_str s)
{
    switch (v) {
    case CD__GUARD_V_NONE:
        return true;
    case CD__GUARD_V_CARD:
        return cd_guard_card_ok(s);
    case CD__GUARD_V_LUHN: {
        char d[24];
        size_t n = digits_of(s, d, sizeof d);
        return n >= 8 && !all_same(d, n) && luhn(d, n);
    }
    case CD__GUARD_V_IBAN:
        return cd_guard_iban_ok(s);
    case CD__GUARD_V_SSN:
        return cd_guard_ssn_ok(s);
    case CD__GUARD_V_BSN:
        return bsn_ok(s);
    case CD__GUARD_V_AADHAAR:
        return aadhaar_ok(s);
    case CD__GUARD_V_CPF:
        return cpf_ok(s);
    case CD__GUARD_V_DNI:
        return dni_ok(s);
    case CD__GUARD_V_NINO:
        return nino_ok(s);
    case CD__GUARD_V_ABA:
        return aba_ok(s);
    case CD__GUARD_V_PHONE:
        return phone_ok(s);
    case CD__GUARD_V_EMAIL:
        return email_ok(s);
    case CD__GUARD_V_ADDRESS:
        return address_ok(s);
    }
    return false;
}
