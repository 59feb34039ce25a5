/* Signatures as the Standard Webhooks specification writes them (standardwebhooks.com): the
 * receiver recomputes HMAC-SHA256 over "<webhook-id>.<webhook-timestamp>.<body>" with the
 * secret it was given and compares. docs/webhooks.md has a verifier. */
#include <stdio.h>
#include <string.h>
#include "outbox_int.h"

void cd__outbox_sign(const uint8_t *key, size_t keylen, const char *msg_id, int64_t timestamp,
                     struct cd_str body, char out[CD__OUTBOX_SIG_MAX])
{
    char ts[24];
    uint8_t mac[CD_CRYPTO_HASH_LEN];

    snprintf(ts, sizeof ts, "%lld", (long long)timestamp);
    struct cd_str parts[] = {cd_str_c(msg_id), CD_STR("."), cd_str_c(ts), CD_STR("."), body};
    cd_crypto_hmac_sha256(key, keylen, parts, sizeof parts / sizeof parts[0], mac);
    memcpy(out, "v1,", 3);
    cd_b64_encode(mac, sizeof mac, out + 3);
}

int64_t cd_outbox_backoff_ms(unsigned attempt, unsigned base_ms, unsigned max_ms)
{
    uint64_t cap = base_ms, r;

    /* Doubling stops at max: no shift overflows however many attempts there are. */
    for (unsigned i = 1; i < attempt && cap < max_ms; i++)
        cap *= 2;
    if (cap > max_ms)
        cap = max_ms;
    cd_random_bytes(&r, sizeof r);
    return (int64_t)(r % (cap + 1));
}
