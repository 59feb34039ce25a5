/* guard internals: the compiled rule set, the loader, normalisation and validators.
 * Only src/guard/ includes this header. */
#ifndef CD_GUARD_INT_H
#define CD_GUARD_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <hs/hs.h>
#include "guard/guard.h"

/* Hard limits for rule files, so a hostile or broken pack fails cleanly. */
#define CD__GUARD_MAX_FILE (1u << 20)
#define CD__GUARD_MAX_RULES 20000u
#define CD__GUARD_MAX_PATTERNS 100000u
#define CD__GUARD_MAX_PATTERN_LEN 2000u
#define CD__GUARD_MAX_MATCHES (1u << 18)
#define CD__GUARD_MAX_UNLESS 4

enum cd__guard_kind {
    CD__GUARD_EXISTENCE,
    CD__GUARD_SUBSTITUTION,
    CD__GUARD_PII,
    CD__GUARD_READABILITY,
    CD__GUARD_OCCURRENCE,
};

enum cd__guard_validator {
    CD__GUARD_V_NONE,
    CD__GUARD_V_CARD,    /* Luhn plus issuer prefix and length */
    CD__GUARD_V_LUHN,    /* Luhn only (e.g. Canadian SIN) */
    CD__GUARD_V_IBAN,    /* country length and mod-97 */
    CD__GUARD_V_SSN,     /* US SSN structural rules */
    CD__GUARD_V_BSN,     /* Dutch BSN eleven-test */
    CD__GUARD_V_AADHAAR, /* Indian Aadhaar, Verhoeff */
    CD__GUARD_V_CPF,     /* Brazilian CPF, two mod-11 digits */
    CD__GUARD_V_DNI,     /* Spanish DNI/NIE letter */
    CD__GUARD_V_NINO,    /* UK National Insurance number prefixes */
    CD__GUARD_V_ABA,     /* US routing number checksum */
    CD__GUARD_V_PHONE,   /* a personal number in an E.164 or national plan, not a business range */
    CD__GUARD_V_PHONE_LOCAL, /* grouped national digits without a trunk 0, where phone_check has no say */
    CD__GUARD_V_EMAIL,   /* an address whose local part is not a role (support@, info@) */
    CD__GUARD_V_ADDRESS, /* house number and street words, not "19 one way" */
};

/* What a validator says about a candidate. FAILED means the candidate has the shape the
 * validator checks (length, issuer or country prefix, separators) but fails its own check digits
 * or issuing rules: it is some other number written like one (an order number in card groups, a
 * mistyped IBAN), so no weaker rule may report it either (check.c, precedence). */
enum cd__guard_vres { CD__GUARD_VR_NO, CD__GUARD_VR_FAILED, CD__GUARD_VR_OK };

enum cd__guard_measure { CD__GUARD_COUNT, CD__GUARD_UPPERCASE };

/* A window of context patterns around a candidate: any hit of one of pats whose span comes
 * within `before` bytes before the candidate or `after` bytes after it; with sentence set, only
 * hits in the candidate's own sentence count. */
struct cd__guard_ctx {
    uint32_t *pats;
    size_t npats;
    uint32_t before, after;
    bool sentence;
};

struct cd__guard_chsev {
    const char *channel; /* a channel name, "inbound" or "outbound" */
    enum cd_guard_severity severity;
};

enum cd__guard_dir { CD__GUARD_ANY_DIR, CD__GUARD_OUT, CD__GUARD_IN };

/* One entry of a severity policy ("policy" in a pack): when every condition holds, findings of
 * the rule take severity. An empty list of purposes or channels holds for any value; a list of
 * purposes never holds for a check that declares none. */
struct cd__guard_pol {
    const char **purposes;
    size_t npurposes;
    const char **channels;
    size_t nchannels;
    enum cd__guard_dir dir;
    enum cd_guard_severity severity;
};

/* A policy entry at the top of a pack: it applies to the rules of every pack (loaded before or
 * after it) that its selectors name, after the rules' own entries, in file order. */
struct cd__guard_setpol {
    struct cd__guard_pol pol;
    const char **rules; /* ids, or prefixes ending in "*" ("PRESSURE.*") */
    size_t nrules;
    const char **categories;
    size_t ncategories;
    const char *file;
    int line;
};

struct cd__guard_rule {
    const char *id, *category, *message, *suggestion, *file;
    const char **refs;
    size_t nrefs;
    int line;
    enum cd__guard_kind kind;
    enum cd_guard_severity severity;
    bool inbound, outbound;
    const char **channels; /* NULL = every channel */
    size_t nchannels;
    struct cd__guard_chsev *chsev;
    size_t nchsev;
    struct cd__guard_pol *pol; /* the rule's own entries, then the packs' (later wins) */
    size_t npol;
    enum cd__guard_validator validator;
    const char *redact; /* "card", a tag like "email", or NULL (not redacted) */
    struct cd__guard_ctx context;
    struct cd__guard_ctx unless[CD__GUARD_MAX_UNLESS]; /* any hit suppresses the candidate */
    size_t nunless;
    /* Bytes a candidate's start extends back over before it is validated ("extend_left"), so a
     * pattern may begin at a rare anchor (the "@" of an e-mail address) instead of at a
     * variable-length run that start-of-match tracking must follow everywhere. */
    uint8_t extend_left[32];
    bool has_extend_left;
    /* The rule's own patterns and the context and unless patterns it looks at, compiled with
     * start-of-match (ids: indexes in the set's pats); NULL for rules without patterns. */
    hs_database_t *db;
    double max_grade;
    uint32_t min_words;
    enum cd__guard_measure measure;
    uint32_t max_count;
    double max_ratio;
    uint32_t min_letters;
};

#define CD__GUARD_NO_RULE UINT32_MAX

/* One Hyperscan expression. rule is CD__GUARD_NO_RULE for context/unless patterns. */
struct cd__guard_pat {
    const char *expr;
    const char *replacement; /* substitution: the better word */
    const char *term;        /* substitution: the word as written in the pack */
    uint32_t rule;
    int line;
    const char *file;
};

/* A compiled, immutable rule set. Shared by reference: the guard holds one reference, every
 * check in flight and every live result another. The scratch pool is the only mutable part. */
struct cd__guard_set {
    atomic_long refs;
    struct cd_arena arena; /* every string and small array of the set */
    struct cd__guard_rule *rules;
    size_t nrules, caprules;
    struct cd__guard_pat *pats;
    size_t npats, cappats;
    struct cd__guard_setpol *setpol; /* pack-level policy entries, in file order */
    size_t nsetpol, capsetpol;
    /* The first pass: every rule's own patterns, without start-of-match, each reporting once
     * with its rule's index as id. Only the rules it finds are scanned again with their own
     * database, so exact spans and context words are found for the few rules a message may
     * hold, not tracked for every pattern over every byte. */
    hs_database_t *db;
    hs_scratch_t *proto; /* large enough for every database; never scanned with; cloned */
    pthread_mutex_t pool_lock;
    hs_scratch_t **pool;
    size_t npool, cappool;
};

struct cd_guard {
    pthread_mutex_t lock; /* guards cur only */
    struct cd__guard_set *cur;
};

/* Loader (load.c). Parses one YAML document of len bytes into set; name is used in errors. */
enum cd_err cd__guard_load_yaml(struct cd__guard_set *set, const char *name, const char *data,
                                size_t len);
/* Appends the pack-level policy entries to the rules they select, once every pack is loaded.
 * Errors: CD_ERR_INVALID (an entry selects no rule; the detail names file:line), CD_ERR_NOMEM. */
enum cd_err cd__guard_apply_policy(struct cd__guard_set *set);
/* Compiles set->pats into set->db and allocates the prototype scratch. */
enum cd_err cd__guard_compile(struct cd__guard_set *set);
struct cd__guard_set *cd__guard_set_new(void);
void cd__guard_set_unref(struct cd__guard_set *set);

/* What normalisation learns about the original text on the way (ASCII letters only, outside
 * placeholders). */
struct cd__guard_norm_stats {
    size_t letters, upper;
};

/* The byte that stands for a template placeholder in the matching key (ASCII SUB). A literal
 * SUB in the text becomes a space, so the byte always means a placeholder; patterns may write
 * it as \x1a where a placeholder can stand for a value ("only \x1a left"). */
#define CD__GUARD_SLOT '\x1a'

/* Normalisation (norm.c). Produces the matching key of text (NFKD compatibility, case folded,
 * marks, zero-width and format characters stripped, common confusables mapped to ASCII) in
 * *norm (cd_malloc'ed, *nlen bytes) and, unless the key is a byte-for-byte lower-cased copy,
 * *map: for each byte of *norm the byte offset in text of the character it came from (*map NULL
 * means identity). With placeholders true, every template placeholder ({{name}}, {name}, %s,
 * ${name}, [FIRST NAME], *|FNAME|*, <<Name>>, ...; see cd__guard_placeholder_len) becomes one
 * CD__GUARD_SLOT byte mapped to the placeholder's first byte, so its words are never matched,
 * counted as capitals or graded. text must be valid UTF-8. Errors: CD_ERR_NOMEM, CD_ERR_TOO_BIG. */
enum cd_err cd__guard_normalise(struct cd_str text, bool placeholders, char **norm, size_t *nlen,
                                uint32_t **map, struct cd__guard_norm_stats *st);

/* Length in bytes of the template placeholder that starts at p[0] (p[0..n) is the rest of the
 * text; prev is the byte before p, or 0 at the start), or 0 if none starts there. Placeholders
 * never hold more than four digits, so a card number or an SSN cannot hide in one. */
size_t cd__guard_placeholder_len(const char *p, size_t n, char prev);

/* True if p[0..n) is valid UTF-8; a word-at-a-time fast path for ASCII. */
bool cd__guard_utf8_ok(const char *p, size_t n);

/* Flesch–Kincaid grade of normalised text, with the word count. */
double cd__guard_fk_grade(const char *p, size_t n, size_t *words);

/* Runs validator v on the candidate key[from, to) of the normalised text key[0..klen). The
 * validator may look at the bytes around the candidate (a card is never preceded by "+", a phone
 * number is not a fragment of a longer run of digit groups). */
enum cd__guard_vres cd__guard_validate(enum cd__guard_validator v, const char *key, size_t klen,
                                       size_t from, size_t to);

/* UTF-16 code units in the valid UTF-8 range p[0..n). */
size_t cd__guard_utf16_len(const char *p, size_t n);

#endif
