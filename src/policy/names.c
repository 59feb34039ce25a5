/* The tables of roles and purposes: the one source of truth the API, the docs and the
 * OpenAPI document are checked against. */
#include "policy.h"

static const char *const role_names[CD_ROLE__COUNT] = {
    [CD_ROLE_ADMIN] = "admin",           [CD_ROLE_SUPERVISOR] = "supervisor",
    [CD_ROLE_AGENT] = "agent",           [CD_ROLE_COMPLIANCE] = "compliance",
    [CD_ROLE_INTEGRATION] = "integration",
};

static const char *const purpose_names[CD_PURPOSE__COUNT] = {
    [CD_PURPOSE_SERVICE] = "service",
    [CD_PURPOSE_BILLING] = "billing",
    [CD_PURPOSE_LEGAL_OBLIGATION] = "legal_obligation",
    [CD_PURPOSE_FRAUD_PREVENTION] = "fraud_prevention",
    [CD_PURPOSE_SECURITY] = "security",
    [CD_PURPOSE_MARKETING] = "marketing",
    [CD_PURPOSE_PERSONALIZATION] = "personalization",
    [CD_PURPOSE_ANALYTICS] = "analytics",
    [CD_PURPOSE_TARGETED_ADVERTISING] = "targeted_advertising",
    [CD_PURPOSE_SALE_OR_SHARING] = "sale_or_sharing",
    [CD_PURPOSE_RESEARCH] = "research",
};

const char *cd_role_name(enum cd_role r)
{
    return (unsigned)r < CD_ROLE__COUNT ? role_names[r] : "unknown";
}

const char *cd_purpose_name(enum cd_purpose p)
{
    return (unsigned)p < CD_PURPOSE__COUNT ? purpose_names[p] : "unknown";
}

bool cd_role_parse(struct cd_str s, enum cd_role *out)
{
    for (int i = 0; i < CD_ROLE__COUNT; i++)
        if (cd_str_eq_c(s, role_names[i])) {
            *out = (enum cd_role)i;
            return true;
        }
    return false;
}

bool cd_purpose_parse(struct cd_str s, enum cd_purpose *out)
{
    for (int i = 0; i < CD_PURPOSE__COUNT; i++)
        if (cd_str_eq_c(s, purpose_names[i])) {
            *out = (enum cd_purpose)i;
            return true;
        }
    return false;
}

const char *cd_purpose_list(void)
{
    return "service, billing, legal_obligation, fraud_prevention, security, marketing, "
           "personalization, analytics, targeted_advertising, sale_or_sharing, research";
}
