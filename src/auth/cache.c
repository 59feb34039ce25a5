/* The verified-token cache: a small open-addressing table keyed by the token's SHA-256, behind
 * one mutex (the critical section is a hash probe and a copy). When the table is full it is
 * emptied: entries are cheap to recreate and this bounds memory without an eviction list.
 * The revocation counter is read again by the first request that finds the last reading older
 * than CD_AUTH_EPOCH_CHECK_MS; a changed counter empties the table. Requests that come while
 * that read runs answer from the table as it is, so no request waits for another's read. */
#include <pthread.h>
#include <string.h>
#include "auth_int.h"
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
    int64_t revocations;    /* the counter as last read */
    int64_t epoch_read_at;  /* when (0: never) */
    bool epoch_reading;     /* a request is reading it now */
    /* Bumped whenever the table is emptied: an entry verified against the database before
     * that is not put in afterwards (its token may be the one just revoked). */
    uint64_t generation;
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

/* Called with c->mu held. */
static void empty(struct cd_auth_cache *c)
{
    memset(c->slots, 0, sizeof c->slots);
    c->count = 0;
    c->generation++;
}

void cd_auth_cache_forget(struct cd_auth_cache *c)
{
    pthread_mutex_lock(&c->mu);
    empty(c);
    pthread_mutex_unlock(&c->mu);
}

/* Reads the revocation counter if the last reading is too old and no other request is reading
 * it; empties the table when it changed. A failed read is tried again by the next request. */
static void epoch_refresh(struct cd_auth_cache *c, struct cd_store *s, int64_t now)
{
    int64_t revocations = 0;
    enum cd_err err;

    pthread_mutex_lock(&c->mu);
    if (c->epoch_reading ||
        (c->epoch_read_at && now - c->epoch_read_at < CD_AUTH_EPOCH_CHECK_MS)) {
        pthread_mutex_unlock(&c->mu);
        return;
    }
    c->epoch_reading = true;
    pthread_mutex_unlock(&c->mu);
    err = cd__auth_revocations(s, &revocations);
    pthread_mutex_lock(&c->mu);
    c->epoch_reading = false;
    if (err == CD_OK) {
        if (revocations != c->revocations) {
            empty(c);
            c->revocations = revocations;
        }
        c->epoch_read_at = now;
    }
    pthread_mutex_unlock(&c->mu);
    if (err != CD_OK)
        cd_err_clear();
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
    epoch_refresh(c, s, now);
    pthread_mutex_lock(&c->mu);
    uint64_t generation = c->generation;
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
    if (c->generation != generation) {
        pthread_mutex_unlock(&c->mu); /* emptied meanwhile: verified, but not cached */
        return CD_OK;
    }
    if (c->count >= SLOTS / 2)
        empty(c);
    size_t i = slot_of(hash);
    while (c->slots[i].used && memcmp(c->slots[i].hash, hash, sizeof hash) != 0)
        i = (i + 1) & (SLOTS - 1);
    if (!c->slots[i].used)
        c->count++;
    memcpy(c->slots[i].hash, hash, sizeof hash);
    /* Never past the token's own expiry: an expired token is refused at once. */
    c->slots[i].expires = now + c->ttl_ms;
    if (out->expires_at && out->expires_at < c->slots[i].expires)
        c->slots[i].expires = out->expires_at;
    c->slots[i].p = *out;
    c->slots[i].used = true;
    pthread_mutex_unlock(&c->mu);
    return CD_OK;
}
