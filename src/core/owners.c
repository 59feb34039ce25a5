/* The owner cache: which customer holds an identity, and that customer's wrapped data key,
 * for identities seen recently. Why: every ingest by identity seals its fields before the write
 * (see pre_seal in interactions.c) and needed a read transaction to learn the owner and key;
 * on a busy server that read was a quarter of the request threads' time.
 *
 * For the sealing it is only a hint. The write reads the identity's owner again inside its
 * transaction and uses the early sealing only if it is the customer the fields were sealed for
 * (whose wrapped key cannot have changed meanwhile: owner_by_identity in interactions.c), so a
 * stale entry costs a second sealing, never a wrong row. It is also exact once a change has
 * committed, which is why the outbound consent and guard hooks may decide for the owner it
 * names: an identity changes owner only by a merge or an erasure, and forgetting (on both)
 * wipes every slot and bumps a generation, and an entry learnt from a read that began before
 * the forgetting is refused. So no owner outlives its merge here, and no copy of a shredded key
 * outlives the erasure.
 *
 * A fixed table of slots (direct-mapped by the blind index, which is already a keyed hash), each
 * guarded by one of a few striped locks; memory is bounded and nothing is allocated per use. */
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include "core_int.h"

#define OWNER_SLOTS 65536 /* a power of two; about 9 MB */
#define OWNER_STRIPES 64
#define KIND_MAX 16

struct owner_slot {
    bool used;
    char kind[KIND_MAX];
    uint8_t lookup[CD_CRYPTO_HASH_LEN];
    char customer_id[CD_ID_MAX];
    uint8_t wrapped[CD_CRYPTO_WRAPPED_LEN];
};

struct cd__owners {
    pthread_mutex_t stripe[OWNER_STRIPES];
    atomic_uint_fast64_t generation;
    struct owner_slot slot[OWNER_SLOTS];
};

enum cd_err cd__owners_new(struct cd__owners **out)
{
    struct cd__owners *o = cd_calloc(1, sizeof *o);

    if (o == NULL)
        return CD_ERR_NOMEM;
    for (int i = 0; i < OWNER_STRIPES; i++)
        pthread_mutex_init(&o->stripe[i], NULL);
    *out = o;
    return CD_OK;
}

void cd__owners_free(struct cd__owners *o)
{
    if (o == NULL)
        return;
    for (int i = 0; i < OWNER_STRIPES; i++)
        pthread_mutex_destroy(&o->stripe[i]);
    cd_crypto_wipe(o->slot, sizeof o->slot);
    cd_free(o);
}

static size_t slot_of(const uint8_t lookup[CD_CRYPTO_HASH_LEN])
{
    uint64_t h;

    memcpy(&h, lookup, sizeof h);
    return (size_t)(h & (OWNER_SLOTS - 1));
}

static bool kind_fits(struct cd_str kind)
{
    return kind.len > 0 && kind.len < KIND_MAX;
}

uint64_t cd__owners_generation(struct cd__owners *o)
{
    return atomic_load(&o->generation);
}

bool cd__owners_get(struct cd__owners *o, struct cd_str kind,
                    const uint8_t lookup[CD_CRYPTO_HASH_LEN], char customer_id[CD_ID_MAX],
                    uint8_t wrapped[CD_CRYPTO_WRAPPED_LEN])
{
    size_t i = slot_of(lookup);
    struct owner_slot *s = &o->slot[i];
    bool hit;

    if (!kind_fits(kind))
        return false;
    pthread_mutex_lock(&o->stripe[i % OWNER_STRIPES]);
    hit = s->used && memcmp(s->lookup, lookup, CD_CRYPTO_HASH_LEN) == 0 &&
          strlen(s->kind) == kind.len && memcmp(s->kind, kind.p, kind.len) == 0;
    if (hit) {
        memcpy(customer_id, s->customer_id, CD_ID_MAX);
        memcpy(wrapped, s->wrapped, CD_CRYPTO_WRAPPED_LEN);
    }
    pthread_mutex_unlock(&o->stripe[i % OWNER_STRIPES]);
    return hit;
}

void cd__owners_put(struct cd__owners *o, uint64_t generation, struct cd_str kind,
                    const uint8_t lookup[CD_CRYPTO_HASH_LEN], const char *customer_id,
                    const uint8_t *wrapped, size_t wrapped_len)
{
    size_t i = slot_of(lookup);
    struct owner_slot *s = &o->slot[i];

    if (!kind_fits(kind) || wrapped_len != CD_CRYPTO_WRAPPED_LEN ||
        strlen(customer_id) >= CD_ID_MAX)
        return;
    pthread_mutex_lock(&o->stripe[i % OWNER_STRIPES]);
    /* Checked under the lock that cd__owners_forget_all also takes for this slot: a put that
     * saw the old generation either lands before the wipe or is refused here. */
    if (atomic_load(&o->generation) == generation) {
        s->used = true;
        memcpy(s->kind, kind.p, kind.len);
        s->kind[kind.len] = '\0';
        memcpy(s->lookup, lookup, CD_CRYPTO_HASH_LEN);
        snprintf(s->customer_id, sizeof s->customer_id, "%s", customer_id);
        memcpy(s->wrapped, wrapped, CD_CRYPTO_WRAPPED_LEN);
    }
    pthread_mutex_unlock(&o->stripe[i % OWNER_STRIPES]);
}

void cd__owners_forget_all(struct cd__owners *o)
{
    atomic_fetch_add(&o->generation, 1);
    for (int st = 0; st < OWNER_STRIPES; st++) {
        pthread_mutex_lock(&o->stripe[st]);
        for (size_t i = (size_t)st; i < OWNER_SLOTS; i += OWNER_STRIPES)
            if (o->slot[i].used)
                cd_crypto_wipe(&o->slot[i], sizeof o->slot[i]);
        pthread_mutex_unlock(&o->stripe[st]);
    }
}
