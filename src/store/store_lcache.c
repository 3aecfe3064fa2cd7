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

/* The slot key would live in, locked; NULL (nothing locked) when c is off or
 * the key too long to cache. *len and *hash: the key's. */
static lc_slot_t *lc_lock(mc__lcache_t *c, const char *key, size_t *len, uint64_t *hash)
{
    if (!c) return NULL;
    *len = strlen(key);
    if (*len >= LC_KEY_MAX) return NULL;
    *hash = XXH3_64bits(key, *len);
    size_t i = (size_t)*hash & c->mask;
    pthread_mutex_lock(&c->mu[i % LC_STRIPES]);
    return &c->slots[i];
}

static void lc_unlock(mc__lcache_t *c, lc_slot_t *sl)
{
    pthread_mutex_unlock(&c->mu[(size_t)(sl - c->slots) % LC_STRIPES]);
}

/* 1 when sl holds key (an entry, live or not). Caller holds sl's lock. */
static int lc_holds(const lc_slot_t *sl, const char *key, size_t len, uint64_t hash)
{
    return sl->hash == hash && memcmp(sl->key, key, len + 1) == 0;
}

int mc__lcache_get(mc__lcache_t *c, const char *key, uint64_t now_ms, mc_replica_t *rep,
                   uint64_t *deadline_ms)
{
    size_t len;
    uint64_t h;
    lc_slot_t *sl = lc_lock(c, key, &len, &h);
    if (!sl) return 0;
    int hit = 0;
    if (sl->deadline_ms && lc_holds(sl, key, len, h)) {
        if (now_ms + sl->margin_ms < sl->deadline_ms) {
            *rep = sl->rep;
            *deadline_ms = sl->deadline_ms;
            hit = 1;
        } else {
            sl->deadline_ms = 0; /* the lease is (nearly) over: ask the master */
        }
    }
    lc_unlock(c, sl);
    return hit;
}

void mc__lcache_put(mc__lcache_t *c, const char *key, const mc_replica_t *rep, uint64_t deadline_ms,
                    uint64_t ttl_ms)
{
    size_t len;
    uint64_t h;
    lc_slot_t *sl = deadline_ms ? lc_lock(c, key, &len, &h) : NULL;
    if (!sl) return;
    sl->hash = h;
    sl->deadline_ms = deadline_ms;
    sl->margin_ms = ttl_ms / 10 + 1;
    sl->rep = *rep;
    memcpy(sl->key, key, len + 1);
    lc_unlock(c, sl);
}

void mc__lcache_drop(mc__lcache_t *c, const char *key)
{
    size_t len;
    uint64_t h;
    lc_slot_t *sl = lc_lock(c, key, &len, &h);
    if (!sl) return;
    if (lc_holds(sl, key, len, h)) sl->deadline_ms = 0;
    lc_unlock(c, sl);
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
