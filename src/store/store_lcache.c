/* store_lcache.c: the cache of leased replica descriptors (store_lcache.h).
 * Each slot holds one key (copied, up to LC_KEY_MAX bytes), its replica and
 * the lease's end. Slots come in sets of LC_WAYS; a key lives in the set its
 * XXH3 hash picks, in any of its ways, so keys whose hashes share a set do not
 * push each other out while the set has room (a direct-mapped cache lost
 * about one key in five of a working set a quarter of its size, and a batch
 * with one lost key pays the master's round trip for all). A set's lock is its
 * stripe's (set index mod LC_STRIPES). A lookup compares the stored hash
 * before the key. A new key takes the way of its own key, else a free or
 * expired way, else the way whose lease ends first. */
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <xxhash.h>

#include "mooncake/err.h"
#include "store_lcache.h"

#define LC_STRIPES 64
#define LC_KEY_MAX 256
#define LC_WAYS 8

typedef struct {
    uint64_t hash;
    uint64_t deadline_ms; /* 0: empty */
    uint64_t margin_ms;
    mc_replica_t rep;
    char key[LC_KEY_MAX];
} lc_slot_t;

struct mc__lcache {
    size_t mask; /* sets - 1 */
    lc_slot_t *slots;
    pthread_mutex_t mu[LC_STRIPES];
};

int mc__lcache_new(size_t slots, mc__lcache_t **out)
{
    *out = NULL;
    if (!slots) return 0;
    size_t n = LC_WAYS;
    while (n < slots && n < ((size_t)1 << 24)) n <<= 1;
    mc__lcache_t *c = calloc(1, sizeof *c);
    if (!c) return MC_ERR_INTERNAL;
    c->slots = calloc(n, sizeof *c->slots);
    if (!c->slots) {
        free(c);
        return MC_ERR_INTERNAL;
    }
    c->mask = n / LC_WAYS - 1;
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

/* The first way of the set key would live in, locked; NULL (nothing locked)
 * when c is off or the key too long to cache. *len and *hash: the key's. */
static lc_slot_t *lc_lock(mc__lcache_t *c, const char *key, size_t *len, uint64_t *hash)
{
    if (!c) return NULL;
    *len = strlen(key);
    if (*len >= LC_KEY_MAX) return NULL;
    *hash = XXH3_64bits(key, *len);
    size_t set = (size_t)*hash & c->mask;
    pthread_mutex_lock(&c->mu[set % LC_STRIPES]);
    return &c->slots[set * LC_WAYS];
}

static void lc_unlock(mc__lcache_t *c, lc_slot_t *set)
{
    pthread_mutex_unlock(&c->mu[(size_t)(set - c->slots) / LC_WAYS % LC_STRIPES]);
}

/* The way of set holding key (an entry, live or not), or NULL. Caller holds
 * set's lock. */
static lc_slot_t *lc_find(lc_slot_t *set, const char *key, size_t len, uint64_t hash)
{
    for (int w = 0; w < LC_WAYS; w++)
        if (set[w].deadline_ms && set[w].hash == hash && memcmp(set[w].key, key, len + 1) == 0)
            return &set[w];
    return NULL;
}

/* The way of set a new entry for key takes: its own, else a free or expired
 * one, else the one whose lease ends first. Caller holds set's lock. */
static lc_slot_t *lc_victim(lc_slot_t *set, const char *key, size_t len, uint64_t hash,
                            uint64_t now_ms)
{
    lc_slot_t *own = lc_find(set, key, len, hash);
    if (own) return own;
    lc_slot_t *v = &set[0];
    for (int w = 0; w < LC_WAYS; w++) {
        if (!set[w].deadline_ms || set[w].deadline_ms <= now_ms) return &set[w];
        if (set[w].deadline_ms < v->deadline_ms) v = &set[w];
    }
    return v;
}

int mc__lcache_get(mc__lcache_t *c, const char *key, uint64_t now_ms, mc_replica_t *rep,
                   uint64_t *deadline_ms)
{
    size_t len;
    uint64_t h;
    lc_slot_t *set = lc_lock(c, key, &len, &h);
    if (!set) return 0;
    int hit = 0;
    lc_slot_t *sl = lc_find(set, key, len, h);
    if (sl) {
        if (now_ms + sl->margin_ms < sl->deadline_ms) {
            *rep = sl->rep;
            *deadline_ms = sl->deadline_ms;
            hit = 1;
        } else {
            sl->deadline_ms = 0; /* the lease is (nearly) over: ask the master */
        }
    }
    lc_unlock(c, set);
    return hit;
}

void mc__lcache_put(mc__lcache_t *c, const char *key, const mc_replica_t *rep, uint64_t deadline_ms,
                    uint64_t ttl_ms)
{
    size_t len;
    uint64_t h;
    lc_slot_t *set = deadline_ms ? lc_lock(c, key, &len, &h) : NULL;
    if (!set) return;
    lc_slot_t *sl = lc_victim(set, key, len, h, deadline_ms - ttl_ms);
    sl->hash = h;
    sl->deadline_ms = deadline_ms;
    sl->margin_ms = ttl_ms / 10 + 1;
    sl->rep = *rep;
    memcpy(sl->key, key, len + 1);
    lc_unlock(c, set);
}

void mc__lcache_drop(mc__lcache_t *c, const char *key)
{
    size_t len;
    uint64_t h;
    lc_slot_t *set = lc_lock(c, key, &len, &h);
    if (!set) return;
    lc_slot_t *sl = lc_find(set, key, len, h);
    if (sl) sl->deadline_ms = 0;
    lc_unlock(c, set);
}

void mc__lcache_clear(mc__lcache_t *c)
{
    if (!c) return;
    for (size_t set = 0; set <= c->mask; set++) {
        pthread_mutex_t *mu = &c->mu[set % LC_STRIPES];
        pthread_mutex_lock(mu);
        for (int w = 0; w < LC_WAYS; w++) c->slots[set * LC_WAYS + w].deadline_ms = 0;
        pthread_mutex_unlock(mu);
    }
}
