/* Per-address throttles: a bounded table of how often each client address did something in
 * the current window. The table never grows: when it is full, the entry whose window began
 * longest ago makes room, so memory stays fixed whatever the number of addresses. An address is
 * never logged. */
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include "http_int.h"

struct slot {
    uint8_t key[16];
    bool used;
    int64_t start; /* when this address's window began */
    unsigned count;
};

struct cd_throttle {
    pthread_mutex_t mu;
    unsigned limit;
    int64_t window_ms;
    size_t n;
    struct slot slots[];
};

enum cd_err cd__throttle_new(size_t slots, unsigned limit, int64_t window_ms,
                             struct cd_throttle **out)
{
    struct cd_throttle *t;

    if (slots == 0 || limit == 0 || window_ms <= 0)
        return cd_err_set(CD_ERR_INVALID, "a throttle needs slots, a limit and a window");
    t = cd_calloc(1, sizeof *t + slots * sizeof t->slots[0]);
    if (t == NULL)
        return CD_ERR_NOMEM;
    pthread_mutex_init(&t->mu, NULL);
    t->limit = limit;
    t->window_ms = window_ms;
    t->n = slots;
    *out = t;
    return CD_OK;
}

void cd__throttle_free(struct cd_throttle *t)
{
    if (t == NULL)
        return;
    pthread_mutex_destroy(&t->mu);
    cd_free(t);
}

/* The slot of key, a free one, or the oldest; reset when its window is over. Under t->mu. */
static struct slot *slot_of(struct cd_throttle *t, const uint8_t key[16], int64_t now)
{
    struct slot *hit = NULL, *victim = NULL;

    for (size_t i = 0; i < t->n && hit == NULL; i++) {
        struct slot *s = &t->slots[i];
        if (s->used && memcmp(s->key, key, 16) == 0)
            hit = s;
        else if (victim == NULL || (victim->used && (!s->used || s->start < victim->start)))
            victim = s;
    }
    if (hit == NULL) {
        hit = victim;
        memcpy(hit->key, key, 16);
        hit->used = true;
        hit->start = now;
        hit->count = 0;
    }
    if (now - hit->start >= t->window_ms) {
        hit->start = now;
        hit->count = 0;
    }
    return hit;
}

int64_t cd__throttle_take(struct cd_throttle *t, const uint8_t key[16], int64_t now)
{
    int64_t wait = 0;

    pthread_mutex_lock(&t->mu);
    struct slot *s = slot_of(t, key, now);
    if (s->count >= t->limit)
        wait = s->start + t->window_ms - now;
    else
        s->count++;
    pthread_mutex_unlock(&t->mu);
    return wait;
}

void cd__throttle_refund(struct cd_throttle *t, const uint8_t key[16])
{
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < t->n; i++) {
        struct slot *s = &t->slots[i];
        if (s->used && memcmp(s->key, key, 16) == 0) {
            if (s->count > 0)
                s->count--;
            break;
        }
    }
    pthread_mutex_unlock(&t->mu);
}

void cd__throttle_key(const struct sockaddr *sa, uint8_t key[16])
{
    memset(key, 0, 16);
    if (sa == NULL)
        return;
    if (sa->sa_family == AF_INET) {
        /* As an IPv4-mapped IPv6 address, so the two families share one key space. */
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        /* One /64: a single host commonly holds a whole one. */
        memcpy(key, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 8);
    }
}
