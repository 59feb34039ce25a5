/* Test-only entry points into the consent engine (consent_testing.h). This file is linked into
 * the unit tests, the fuzz drivers and the benchmarks, never into the candor binary. */
#include <string.h>
#include "consent_int.h"
#include "consent_testing.h"

enum cd_err cd_consent_debug_apply(struct cd_consent *c, struct cd_str customer_id,
                                   struct cd_str jurisdiction, enum cd_purpose purpose,
                                   enum cd_consent_channel channel, enum cd_consent_state state,
                                   int64_t at_ms)
{
    struct cd__cstate s;
    struct cd__cust *cu;
    uint8_t key[16];
    enum cd_err err;

    if (!cd_id_bits(customer_id, "cus", key))
        return cd_err_set(CD_ERR_INVALID, "not a customer id");
    memset(&s, 0, sizeof s);
    cd_random_bytes(s.event, 16);
    s.purpose = (uint8_t)purpose;
    s.channel = (uint8_t)channel;
    s.state = (uint8_t)state;
    s.at = at_ms;
    cd__consent_wlock(c);
    if ((err = cd__proj_upsert(&c->proj, key, &cu)) == CD_OK) {
        cu->juris = cd__consent_rules_find(&c->rules, jurisdiction);
        err = cd__proj_apply(&c->proj, cu, &s);
    }
    cd__consent_wunlock(c);
    return err;
}
