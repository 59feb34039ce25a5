/* policy — roles, purposes and which purpose may see which categories of customer data.
 *
 * Owns: the table of purposes (after the W3C Data Privacy Vocabulary), roles and channels, the
 * actor every domain call names (who acts, in which role, for which purpose), and the
 * purpose policy: which roles may use which purposes (to read, and to send), which field
 * categories each purpose may see, which purposes a restriction of processing (GDPR Art. 18)
 * leaves allowed, and which purposes may carry promotional content. Whether a purpose needs
 * the customer's consent is not the policy's to say: the consent rules decide that, once, for
 * everyone (rules/consent/jurisdictions.yaml, not_required). The policy is data: a file loaded
 * at start (config/policy.yaml) and validated with errors naming file and line.
 *
 * Must never: know about HTTP or the store.
 * Threads: any thread may read it at any time; cd_policy_reload swaps in a new policy
 * atomically, so a check sees the old policy or the new one, never a mix. */
#ifndef CD_POLICY_H
#define CD_POLICY_H

#include "base/base.h"

/* The roles, X(ENUMERATOR, "api name"): the one list the enum, the names, the parser, the
 * help texts and the error messages derive from. */
#define CD_ROLES(X)                                                                                \
    X(ADMIN, "admin")                                                                              \
    X(SUPERVISOR, "supervisor")                                                                    \
    X(AGENT, "agent")                                                                              \
    X(COMPLIANCE, "compliance")                                                                    \
    X(INTEGRATION, "integration")

enum cd_role {
#define CD__ROLE_ENUM(id, name) CD_ROLE_##id,
    CD_ROLES(CD__ROLE_ENUM)
#undef CD__ROLE_ENUM
    CD_ROLE__COUNT
};
/* "admin, supervisor, ..." as a string literal, for option tables and messages. */
#define CD_ROLE_NAMES CD_NAME_LIST(CD_ROLES)
#define CD_ROLE_BIT(r) (1u << (r))
#define CD_ROLES_ALL ((1u << CD_ROLE__COUNT) - 1)

/* The purposes (after the W3C Data Privacy Vocabulary), X(ENUMERATOR, "api name"): the one
 * list the enum, the names, the parser and cd_purpose_list derive from. The order is the
 * enum's, which the policy file's tables follow. */
#define CD_PURPOSES(X)                                                                             \
    X(SERVICE, "service")                                                                          \
    X(BILLING, "billing")                                                                          \
    X(LEGAL_OBLIGATION, "legal_obligation")                                                        \
    X(FRAUD_PREVENTION, "fraud_prevention")                                                        \
    X(SECURITY, "security")                                                                        \
    X(MARKETING, "marketing")                                                                      \
    X(PERSONALIZATION, "personalization")                                                          \
    X(ANALYTICS, "analytics")                                                                      \
    X(TARGETED_ADVERTISING, "targeted_advertising")                                                \
    X(SALE_OR_SHARING, "sale_or_sharing")                                                          \
    X(RESEARCH, "research")

enum cd_purpose {
#define CD__PURPOSE_ENUM(id, name) CD_PURPOSE_##id,
    CD_PURPOSES(CD__PURPOSE_ENUM)
#undef CD__PURPOSE_ENUM
    CD_PURPOSE__COUNT
};

/* The channels a contact travels on, X(ENUMERATOR, "api name"): the one list the core's
 * validation of interactions, consent's channel enum (which adds "*") and the demo data derive
 * from. The order
 * is stored: consent keeps channel numbers in its tokens, so entries are only ever appended. */
#define CD_CHANNELS(X)                                                                             \
    X(EMAIL, "email")                                                                              \
    X(SMS, "sms")                                                                                  \
    X(PHONE, "phone")                                                                              \
    X(CHAT, "chat")                                                                                \
    X(SOCIAL, "social")                                                                            \
    X(APP, "app")                                                                                  \
    X(PUSH, "push")                                                                                \
    X(POST, "post")                                                                                \
    X(IN_PERSON, "in_person")

/* Categories of customer data a response may carry (bit flags). */
enum {
    CD_FIELDS_REFERENCE = 1u << 0,    /* ids, channel, direction, timestamps, thread ids */
    CD_FIELDS_CONTACT = 1u << 1,      /* identities (email, phone, handles), display name */
    CD_FIELDS_PROFILE = 1u << 2,      /* free-form attributes */
    CD_FIELDS_CONVERSATION = 1u << 3, /* interaction subjects, bodies and metadata */
    CD_FIELDS_COARSE = 1u << 4,       /* locale, time zone, jurisdiction */
    CD_FIELDS_ALL = 0x1fu,
};

/* What a role may do when it declares a purpose. */
struct cd_policy_grant {
    unsigned fields;              /* CD_FIELDS_* the purpose may see */
    bool allowed_when_restricted; /* may read customers under a GDPR Art. 18 restriction */
};

/* Who is acting, and why. Borrowed for the call; ids and names are never personal data of
 * customers (a token's display name belongs to staff or an integration). */
struct cd_actor {
    const char *token_id;   /* "tok_..." or "cli" */
    const char *role;       /* a role name (CD_ROLES) */
    const char *name;       /* token display name */
    const char *request_id; /* for the audit trail */
    const char *purpose;    /* declared purpose, or NULL */
    /* May read restricted customers (the purpose policy); consent decides per customer (the
     * consent rules' answer for the purpose). */
    bool restricted_ok;
    bool needs_consent;
};

/* What Candor does by itself (a schedule, the conversion of old data at open, demo data,
 * binding events recorded before the ledger bound them) is recorded under this token id and
 * role: no token and no person acted, so no role of the policy applies (cd_role_parse refuses
 * it, and with it every check that asks for a role). */
#define CD_ACTOR_SYSTEM "system"
/* The initialiser of such an actor, named by what acts ("retention schedule"). */
#define CD_ACTOR_SYSTEM_INIT(what)                                                               \
    {CD_ACTOR_SYSTEM, CD_ACTOR_SYSTEM, what, NULL, NULL, false, false}

struct cd_policy;

/* Loads the policy from a YAML file, or the built-in config/policy.yaml when path is NULL.
 * Errors: CD_ERR_INVALID with a detail "FILE:LINE: what is wrong", CD_ERR_IO, CD_ERR_NOMEM.
 * The caller frees *out with cd_policy_free. */
enum cd_err cd_policy_load(const char *path, struct cd_policy **out);
void cd_policy_free(struct cd_policy *p);

/* Loads the policy again from path (NULL: the built-in one) and, if it differs, puts it in
 * force for every check that starts afterwards; *changed tells whether it did. On any error the
 * policy in force stays. May run while other threads call cd_policy_check. Errors: as
 * cd_policy_load. */
enum cd_err cd_policy_reload(struct cd_policy *p, const char *path, bool *changed);

/* Decides whether role may use purpose; fills *grant. Errors: CD_ERR_PURPOSE_DENIED with a
 * detail naming the role and purpose. */
enum cd_err cd_policy_check(const struct cd_policy *p, enum cd_role role, enum cd_purpose purpose,
                            struct cd_policy_grant *grant);

/* One category's bit (CD_FIELDS_*) from its name ("reference", "contact", "profile",
 * "conversation", "coarse"); false if unknown. */
bool cd_policy_category_parse(struct cd_str s, unsigned *bit);

/* The purposes a restriction of processing leaves allowed (restricted_purposes), bit per
 * purpose. */
unsigned cd_policy_restricted_purposes(const struct cd_policy *p);

/* Whether a message for purpose may carry promotional content (promotional_purposes): other
 * purposes may not, and the guard's marketing findings then refuse the message. */
bool cd_policy_promotional(const struct cd_policy *p, enum cd_purpose purpose);

/* "reference,contact,..." for a set of categories; a static string. */
const char *cd_policy_categories(unsigned fields);

/* Names as they appear in the API ("admin", "service", ...). */
const char *cd_role_name(enum cd_role r);
const char *cd_purpose_name(enum cd_purpose p);
/* Parse a name; false if unknown. */
bool cd_role_parse(struct cd_str s, enum cd_role *out);
bool cd_purpose_parse(struct cd_str s, enum cd_purpose *out);
/* A comma-separated list of every purpose name, for error messages and docs. */
const char *cd_purpose_list(void);

#endif
