/* guard — the communication guard: checks a message against rule packs before it is sent.
 *
 * Owns: loading rule packs (YAML files in a rules directory), compiling every enabled pattern
 * into one Hyperscan database, the per-thread scratch pool, Unicode normalisation with an
 * offset map back to the original text (template placeholders kept opaque), validators (Luhn,
 * IBAN mod-97, SSN rules, national id checksums, phone numbering plans) and the precedence
 * between personal-data rules, context-word windows, the Flesch–Kincaid grade, verdicts,
 * findings, the redacted copy and inbound masking of card numbers and SSNs (PCI DSS 3.4). The
 * `candor guard` command that prints its findings lives in src/cli.
 *
 * Must never: log or keep message text; cd_err details name rules, files and lines only, never
 * the matched personal data. Knows nothing of HTTP or the store.
 *
 * Threads: a struct cd_guard is shared by all threads. cd_guard_check and cd_guard_mask_inbound
 * may run concurrently with each other and with cd_guard_reload; the compiled rule set is
 * refcounted and swapped atomically, so a check in flight finishes on the set it started with.
 * cd_guard_close must run after every other call on that guard has returned. Results are owned
 * by one thread at a time and keep the rule set they came from alive until freed. */
#ifndef CD_GUARD_H
#define CD_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include "base/base.h"

/* Largest message cd_guard_check and cd_guard_mask_inbound accept, in bytes. */
#define CD_GUARD_MAX_TEXT (4u * 1024 * 1024)

struct cd_guard;
struct cd_guard_result;

enum cd_guard_verdict { CD_GUARD_ALLOW, CD_GUARD_WARN, CD_GUARD_BLOCK };

enum cd_guard_severity { CD_GUARD_INFO, CD_GUARD_SEV_WARN, CD_GUARD_SEV_BLOCK };

/* One message to check. text is borrowed for the duration of the call. channel is "email",
 * "sms", "chat", ... or NULL (any channel). outbound is true for text about to be sent. purpose
 * is what the message is sent for, a purpose of the purpose policy ("service", "marketing",
 * ...), or NULL when it is not declared: the packs' policy entries decide severities by purpose,
 * channel and direction (outbound marketing with false urgency is blocked where the same words
 * in a service reply are warned). */
struct cd_guard_input {
    struct cd_str text;
    const char *channel;
    bool outbound;
    const char *purpose;
};

/* One finding, borrowed from its result. Offsets are into the ORIGINAL text: bytes and UTF-16
 * code units, half-open [start, end). message/suggestion may be "" but never NULL. */
struct cd_guard_finding {
    const char *rule;
    const char *category;
    enum cd_guard_severity severity;
    size_t start, end;
    size_t start_utf16, end_utf16;
    const char *message;
    const char *suggestion;
    const char *const *references;
    size_t nreferences;
};

/* Loads and compiles every *.yaml / *.yml file in rules_dir (sorted by name) into *out.
 * Errors: CD_ERR_IO (the directory or a file cannot be read), CD_ERR_INVALID (a bad rule file or
 * a pattern Hyperscan rejects; the detail names file:line and the rule id), CD_ERR_TOO_BIG (too
 * many rules or patterns), CD_ERR_NOMEM. The caller frees *out with cd_guard_close. */
enum cd_err cd_guard_open(const char *rules_dir, struct cd_guard **out);

/* Same as cd_guard_open, but from YAML documents in memory: n buffers with their display names
 * (used in error details). Used by tests and the fuzzer; data is borrowed. */
enum cd_err cd_guard_open_buffers(const char *const *names, const char *const *data,
                                  const size_t *lens, size_t n, struct cd_guard **out);

/* Loads and compiles rules_dir, then swaps it in atomically. Checks already running finish on
 * the old set. On any error the old set stays in force and the detail names file:line and rule.
 * Errors: as cd_guard_open. */
enum cd_err cd_guard_reload(struct cd_guard *g, const char *rules_dir);

/* Releases g. Results still alive keep their rule set until they are freed. g may be NULL. */
void cd_guard_close(struct cd_guard *g);

/* Number of rules in force (for /metrics and tests). */
size_t cd_guard_rule_count(struct cd_guard *g);

/* Checks one message and gives the result in *out (the caller frees it with
 * cd_guard_result_free). Template placeholders in the text ({{first_name}}, [ORDER NUMBER], %s,
 * ...) are never findings and never count toward the grade. Safe to call from many threads at
 * once.
 * Errors: CD_ERR_INVALID (the text is not valid UTF-8), CD_ERR_TOO_BIG (above
 * CD_GUARD_MAX_TEXT), CD_ERR_NOMEM, CD_ERR_INTERNAL (Hyperscan failed). *out is untouched on
 * failure. */
enum cd_err cd_guard_check(struct cd_guard *g, const struct cd_guard_input *in,
                           struct cd_guard_result **out);

/* The verdict: the highest severity among findings (info → allow, warn → warn, block → block),
 * after each rule's policy for the check's purpose, channel and direction. */
enum cd_guard_verdict cd_guard_result_verdict(const struct cd_guard_result *r);

/* "allow", "warn" or "block". */
const char *cd_guard_verdict_name(enum cd_guard_verdict v);

/* "info", "warn" or "block". */
const char *cd_guard_severity_name(enum cd_guard_severity s);

/* Number of findings, and the i-th (i < count), ordered by start offset. Borrowed from r. */
size_t cd_guard_result_count(const struct cd_guard_result *r);
const struct cd_guard_finding *cd_guard_result_finding(const struct cd_guard_result *r, size_t i);

/* Flesch–Kincaid grade level of the message (0 for text without words). */
double cd_guard_result_grade(const struct cd_guard_result *r);

/* Serialises r as {"verdict","grade_level","findings":[{"rule","category","severity","start",
 * "end","start_utf16","end_utf16","match","message","suggestion","references":[...]}],
 * "redacted"}. "match" is the text the finding covers, except that personal data is given in
 * its masked form (as in the redacted copy: "•••• 4242", "[email]"), never in clear; the spans
 * still point at it. include_matches=false omits "match" (for findings that are stored). The
 * caller owns *out (json_decref). Errors: CD_ERR_NOMEM. */
enum cd_err cd_guard_result_to_json(const struct cd_guard_result *r, bool include_matches,
                                    json_t **out);

/* The redacted copy of the message: card numbers as "•••• 4242", other personal data replaced by
 * a type tag such as "[email]". Borrowed from r. */
struct cd_str cd_guard_result_redacted(const struct cd_guard_result *r);

/* Releases r (may be NULL). */
void cd_guard_result_free(struct cd_guard_result *r);

/* Masks card numbers (Luhn-valid) and US SSNs in inbound text before it is stored (PCI DSS 3.4):
 * cards become "•••• 4242", SSNs "[ssn]". *out is a new NUL-terminated cd_malloc'ed string of
 * *outlen bytes (the caller frees it with cd_free); *masked is the number of replacements.
 * Errors: CD_ERR_INVALID (not UTF-8), CD_ERR_TOO_BIG, CD_ERR_NOMEM, CD_ERR_INTERNAL. Outputs are
 * untouched on failure. */
enum cd_err cd_guard_mask_inbound(struct cd_guard *g, struct cd_str text, char **out,
                                  size_t *outlen, size_t *masked);

/* Validators, exposed for tests and for other modules that must recognise the same data.
 * Each takes the candidate as written (spaces and dashes allowed where the format allows). */
bool cd_guard_luhn_ok(struct cd_str digits);
bool cd_guard_card_ok(struct cd_str s);
bool cd_guard_iban_ok(struct cd_str s);
bool cd_guard_ssn_ok(struct cd_str s);

#endif
