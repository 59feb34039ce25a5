/* The verified-token cache: a small open-addressing table keyed by the token's SHA-256, behind
 * one mutex (the critical section is a hash probe and a copy). When the table is full it is
 * emptied: entries are cheap to recreate and this bounds memory without an eviction list. */
#include <pthread.h>
#include <string.h>
#include "auth.h"
#include "crypto/crypto.h"

#define SLOTS 1024 /* power of two */

struct entry {
    uint8_t hash[CD_CRYPTO_HASH_LEN];
    int64_t expires;
    struct cd_principal p;
    bool used;
};

struct cd_auth_cache {
    pthread_mutex_t mu;
    int64_t ttl_ms;
    size_t count;
    struct entry slots[SLOTS];
};

enum cd_err cd_auth_cache_new(int64_t ttl_ms, struct cd_auth_cache **out)
{
    struct cd_auth_cache *c = cd_calloc(1, sizeof *c);

    if (c == NULL)
        return CD_ERR_NOMEM;
    pthread_mutex_init(&c->mu, NULL);
    c->ttl_ms = ttl_ms;
    *out = c;
    return CD_OK;
}

void cd_auth_cache_free(struct cd_auth_cache *c)
{
    if (c == NULL)
        return;
    pthread_mutex_destroy(&c->mu);
    cd_free(c);
}

void cd_auth_cache_forget(struct cd_auth_cache *c)
{
    pthread_mutex_lock(&c->mu);
    memset(c->slots, 0, sizeof c->slots);
    c->count = 0;
    pthread_mutex_unlock(&c->mu);
}

static size_t slot_of(const uint8_t hash[CD_CRYPTO_HASH_LEN])
{
    size_t h;

    memcpy(&h, hash, sizeof h); /* a SHA-256 is already uniformly spread */
    return h & (SLOTS - 1);
}

enum cd_err cd_auth_verify_cached(struct cd_auth_cache *c, struct cd_store *s, struct cd_str token,
                                  struct cd_principal *out)
{
    uint8_t hash[CD_CRYPTO_HASH_LEN];
    int64_t now = cd_now_ms();
    enum cd_err err;
    bool hit = false;

    if (token.len != CD_TOKEN_LEN)
        return cd_auth_verify(s, token, out); /* reports the malformed token */
    if ((err = cd_crypto_sha256(token.p, token.len, hash)) != CD_OK)
        return err;
    pthread_mutex_lock(&c->mu);
    for (size_t i = slot_of(hash), n = 0; n < SLOTS && c->slots[i].used;
         i = (i + 1) & (SLOTS - 1), n++) {
        if (memcmp(c->slots[i].hash, hash, sizeof hash) == 0) {
            if (c->slots[i].expires > now) {
                *out = c->slots[i].p;
                hit = true;
            }
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
    if (hit)
        return CD_OK;
    if ((err = cd_auth_verify(s, token, out)) != CD_OK)
        return err; /* failures are not cached: a new token works at once */
    pthread_mutex_lock(&c->mu);
    if (c->count >= SLOTS / 2) {
        memset(c->slots, 0, sizeof c->slots);
        c->count = 0;
    }
    size_t i = slot_of(hash);
    while (c->slots[i].used && memcmp(c->slots[i].hash, hash, sizeof hash) != 0)
        i = (i + 1) & (SLOTS - 1);
    if (!c->slots[i].used)
        c->count++;
    memcpy(c->slots[i].hash, hash, sizeof hash);
    c->slots[i].expires = now + c->ttl_ms;
    c->slots[i].p = *out;
    c->slots[i].used = true;
    pthread_mutex_unlock(&c->mu);
    return CD_OK;
}
