/* policy — roles, purposes and which purpose may see which categories of customer data.
 *
 * Owns: the table of purposes (after the W3C Data Privacy Vocabulary) and roles, and the
 * purpose policy: which roles may declare which purposes, which field categories each purpose
 * may see, and which purposes need the customer's consent. The policy is data: a file loaded
 * at start (see policy/purposes.conf) and validated with errors naming file and line.
 *
 * Must never: know about HTTP or the store.
 * Threads: immutable after load; any thread may read it. */
#ifndef CD_POLICY_H
#define CD_POLICY_H

#include "base/base.h"

enum cd_role {
    CD_ROLE_ADMIN,
    CD_ROLE_SUPERVISOR,
    CD_ROLE_AGENT,
    CD_ROLE_COMPLIANCE,
    CD_ROLE_INTEGRATION,
    CD_ROLE__COUNT
};
#define CD_ROLE_BIT(r) (1u << (r))
#define CD_ROLES_ALL ((1u << CD_ROLE__COUNT) - 1)

enum cd_purpose {
    CD_PURPOSE_SERVICE,
    CD_PURPOSE_BILLING,
    CD_PURPOSE_LEGAL_OBLIGATION,
    CD_PURPOSE_FRAUD_PREVENTION,
    CD_PURPOSE_SECURITY,
    CD_PURPOSE_MARKETING,
    CD_PURPOSE_PERSONALIZATION,
    CD_PURPOSE_ANALYTICS,
    CD_PURPOSE_TARGETED_ADVERTISING,
    CD_PURPOSE_SALE_OR_SHARING,
    CD_PURPOSE_RESEARCH,
    CD_PURPOSE__COUNT
};

/* Names as they appear in the API ("admin", "service", ...). */
const char *cd_role_name(enum cd_role r);
const char *cd_purpose_name(enum cd_purpose p);
/* Parse a name; false if unknown. */
bool cd_role_parse(struct cd_str s, enum cd_role *out);
bool cd_purpose_parse(struct cd_str s, enum cd_purpose *out);
/* A comma-separated list of every purpose name, for error messages and docs. */
const char *cd_purpose_list(void);

#endif
