/* Erasure of a customer, the consent engine's part: their events, preferences and unsubscribe
 * nonces go in the erasure's transaction (the ledger keeps that events existed, by id), and
 * the projection forgets them once it committed. */
#include <string.h>
#include "consent_int.h"

enum cd_err cd_consent_erase_in(struct cd_tx *tx, struct cd_str customer_id, int64_t *events)
{
    struct cd_val p[] = {CD_VTEXT(customer_id)};
    enum cd_err err;

    *events = 0;
    if ((err = cd_tx_exec(tx, "DELETE FROM consent_events WHERE customer_id = $1", p, 1, NULL,
                          NULL, events)) != CD_OK ||
        (err = cd_tx_exec(tx, "DELETE FROM consent_preferences WHERE customer_id = $1", p, 1,
                          NULL, NULL, NULL)) != CD_OK)
        return err;
    return cd_tx_exec(tx, "DELETE FROM consent_unsub_nonces WHERE customer_id = $1", p, 1, NULL,
                      NULL, NULL);
}

void cd_consent_forget(struct cd_consent *c, struct cd_str customer_id)
{
    uint8_t key[16];
    struct cd__cust *cu;

    if (c == NULL || !cd_id_bits(customer_id, "cus", key))
        return;
    /* Customers are never removed from the table (no tombstones): the record is emptied, as a
     * customer with no event and no preference under the default (strictest) rule, which is
     * what a rebuild from the tables would now make of them. */
    cd__consent_wlock(c);
    if ((cu = cd__proj_find(&c->proj, key)) != NULL) {
        cu->nst = 0;
        cu->more = 0;
        memset(cu->st, 0, sizeof cu->st);
        cu->juris = (uint8_t)c->rules.def;
        cu->tz = 0;
        cu->qh_start = cu->qh_end = 0;
        cu->topics_out = 0;
        cd__proj_sync(&c->proj, cu);
    }
    cd__consent_wunlock(c);
}
