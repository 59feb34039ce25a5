/* The names of roles and purposes, derived from the lists in policy.h: the one source of truth
 * the API, the docs and the OpenAPI document are checked against. */
#include "policy.h"

static const char *const role_names[CD_ROLE__COUNT] = CD_NAME_ARRAY(CD_ROLES);
static const char *const purpose_names[CD_PURPOSE__COUNT] = CD_NAME_ARRAY(CD_PURPOSES);

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
    return CD_NAME_LIST(CD_PURPOSES);
}
