/* store_lcache.c: the cache of leased replica descriptors (store_lcache.h).
 * Each slot holds one key (copied, up to LC_KEY_MAX bytes), its replica and
 * the lease's end; a slot's lock is its stripe's (slot index mod LC_STRIPES).
 * Lookups hash the key with XXH3 and compare the stored hash before the key. */
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <xxhash.h>

#include "mooncake/err.h"
#include "store_lcache.h"

#define LC_STRIPES 64
#define LC_KEY_MAX 256

typedef struct {
    uint64_t hash;
    uint64_t deadline_ms; /* 0: empty */
    uint64_t margin_ms;
    mc_replica_t rep;
    char key[LC_KEY_MAX];
} lc_slot_t;

struct mc__lcache {
    size_t mask;
    lc_slot_t *slots;
    pthread_mutex_t mu[LC_STRIPES];
};

int mc__lcache_new(size_t slots, mc__lcache_t **out)
{
    *out = NULL;
    if (!slots) return 0;
    size_t n = 1;
    while (n < slots && n < ((size_t)1 << 24)) n <<= 1;
    mc__lcache_t *c = calloc(1, sizeof *c);
    if (!c) return MC_ERR_INTERNAL;
    c->slots = calloc(n, sizeof *c->slots);
    if (!c->slots) {
        free(c);
        return MC_ERR_INTERNAL;
    }
    c->mask = n - 1;
    for (size_t i = 0; i < LC_STRIPES; i++) pthread_mutex_init(&c->mu[i], NULL);
    *out = c;
    return 0;
}

void mc__lcache_free(mc__lcache_t *c)
{
    if (!c) return;
    for (size_t i = 0; i < LC_STRIPES; i++) pthread_mutex_destroy(&c->mu[i]);
    free(c->slots);
    free(c);
}

/* The slot key would live in and its lock. */
static lc_slot_t *lc_slot(mc__lcache_t *c, const char *key, size_t len, uint64_t *hash,
                          pthread_mutex_t **mu)
{
    *hash = XXH3_64bits(key, len);
    size_t i = (size_t)*hash & c->mask;
    *mu = &c->mu[i % LC_STRIPES];
    return &c->slots[i];
}

int mc__lcache_get(mc__lcache_t *c, const char *key, uint64_t now_ms, mc_replica_t *rep,
                   uint64_t *deadline_ms)
{
    if (!c) return 0;
    size_t len = strlen(key);
    if (len >= LC_KEY_MAX) return 0;
    uint64_t h;
    pthread_mutex_t *mu;
    lc_slot_t *sl = lc_slot(c, key, len, &h, &mu);
    int hit = 0;
    pthread_mutex_lock(mu);
    if (sl->deadline_ms && sl->hash == h && memcmp(sl->key, key, len + 1) == 0) {
        if (now_ms + sl->margin_ms < sl->deadline_ms) {
            *rep = sl->rep;
            *deadline_ms = sl->deadline_ms;
            hit = 1;
        } else {
            sl->deadline_ms = 0; /* the lease is (nearly) over: ask the master */
        }
    }
    pthread_mutex_unlock(mu);
    return hit;
}

void mc__lcache_put(mc__lcache_t *c, const char *key, const mc_replica_t *rep, uint64_t deadline_ms,
                    uint64_t ttl_ms)
{
    if (!c || !deadline_ms) return;
    size_t len = strlen(key);
    if (len >= LC_KEY_MAX) return;
    uint64_t h;
    pthread_mutex_t *mu;
    lc_slot_t *sl = lc_slot(c, key, len, &h, &mu);
    pthread_mutex_lock(mu);
    sl->hash = h;
    sl->deadline_ms = deadline_ms;
    sl->margin_ms = ttl_ms / 10 + 1;
    sl->rep = *rep;
    memcpy(sl->key, key, len + 1);
    pthread_mutex_unlock(mu);
}

void mc__lcache_drop(mc__lcache_t *c, const char *key)
{
    if (!c) return;
    size_t len = strlen(key);
    if (len >= LC_KEY_MAX) return;
    uint64_t h;
    pthread_mutex_t *mu;
    lc_slot_t *sl = lc_slot(c, key, len, &h, &mu);
    pthread_mutex_lock(mu);
    if (sl->hash == h && memcmp(sl->key, key, len + 1) == 0) sl->deadline_ms = 0;
    pthread_mutex_unlock(mu);
}

void mc__lcache_clear(mc__lcache_t *c)
{
    if (!c) return;
    for (size_t i = 0; i <= c->mask; i++) {
        pthread_mutex_t *mu = &c->mu[i % LC_STRIPES];
        pthread_mutex_lock(mu);
        c->slots[i].deadline_ms = 0;
        pthread_mutex_unlock(mu);
    }
}
