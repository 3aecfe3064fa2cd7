/* master_evict.c: eviction of the master core. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base_log.h"
#include "master_int.h"

/* ---- eviction ---- */

static int evictable(const mobj_t *o, uint64_t now)
{
    return !o->hard_pin && !mc__obj_lease_active(o, now) && mc__obj_all_complete(o);
}

typedef struct {
    uint64_t now;
    uint64_t *a, *b; /* leases of non-soft-pinned / soft-pinned candidates */
    size_t na, nb, capa, capb;
    int oom;
} ev_collect_t;

static int push_u64(uint64_t **v, size_t *n, size_t *cap, uint64_t x)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 256;
        uint64_t *nv = realloc(*v, nc * sizeof *nv);
        if (!nv) return -1;
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = x;
    return 0;
}

static int ev_collect_visit(const char *key, void *val, void *arg)
{
    ev_collect_t *c = arg;
    const mobj_t *o = val;
    if (!evictable(o, c->now)) return 0;
    int r = mc__obj_soft_pinned_now(o, c->now) ? push_u64(&c->b, &c->nb, &c->capb, o->lease_ms)
                                               : push_u64(&c->a, &c->na, &c->capa, o->lease_ms);
    if (r) c->oom = 1;
    return 0;
}

typedef struct {
    uint64_t now, thr;
    int soft;
    size_t ties, budget;
    char **keys;
    size_t n, cap;
} ev_pick_t;

static int ev_pick_visit(const char *key, void *val, void *arg)
{
    ev_pick_t *c = arg;
    const mobj_t *o = val;
    if (c->budget == 0 || !evictable(o, c->now) || mc__obj_soft_pinned_now(o, c->now) != c->soft)
        return 0;
    if (o->lease_ms > c->thr) return 0;
    if (o->lease_ms == c->thr) {
        if (c->ties == 0) return 0;
        c->ties--;
    }
    if (mc__master_push_key(&c->keys, &c->n, &c->cap, key) == 0) c->budget--;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Evicts up to k objects of one class (soft-pinned or not) with the oldest
 * leases; leases[] are that class's candidates. Returns the count evicted. */
static size_t evict_class(mc_master_t *m, uint64_t now, int soft, size_t k, uint64_t *leases,
                          size_t nl)
{
    if (k == 0 || nl == 0) return 0;
    if (k > nl) k = nl;
    qsort(leases, nl, sizeof *leases, cmp_u64);
    uint64_t thr = leases[k - 1];
    size_t nless = 0;
    while (nless < nl && leases[nless] < thr)
        nless++;
    ev_pick_t c = {now, thr, soft, k - nless, k, NULL, 0, 0};
    size_t evicted = 0;
    for (size_t i = 0; i < MC_MASTER_SHARDS && c.budget > 0; i++) {
        shard_t *sh = &m->shards[i];
        pthread_mutex_lock(&sh->mu);
        c.n = 0;
        mc_map_each(sh->map, ev_pick_visit, &c);
        for (size_t j = 0; j < c.n; j++) {
            mobj_t *o = mc_map_get(sh->map, c.keys[j]);
            if (o) {
                atomic_fetch_add(&m->evicted_bytes, o->size * o->nrep);
                atomic_fetch_add(&m->evicted_keys, 1);
                mc__master_erase_locked(m, sh, c.keys[j], o);
                evicted++;
            }
            free(c.keys[j]);
        }
        pthread_mutex_unlock(&sh->mu);
    }
    free(c.keys);
    return evicted;
}

/* One eviction pass: runs when usage is past the high watermark, or when
 * forced (a put found no space). A put passes the eviction epoch it saw before
 * allocating: when another pass evicted since, it returns 1 at once without
 * evicting (the put just retries), so a burst of failing puts does not evict
 * once per put. Returns the number of objects evicted. Takes no lock on entry;
 * takes shard locks one at a time. */
int mc__master_evict_pass(mc_master_t *m, uint64_t now, int forced, uint64_t seen_epoch)
{
    uint64_t cap = atomic_load(&m->capacity);
    if (cap == 0) return 0;
    double used = (double)atomic_load(&m->allocated) / (double)cap;
    double hwm = m->cfg.eviction_high_watermark_ratio, ratio = m->cfg.eviction_ratio;
    int over = used > hwm;
    if (!over && !(forced && ratio > 0)) return 0;
    double target = ratio;
    if (used - hwm + ratio > target) target = used - hwm + ratio;
    if (target > 1) target = 1;
    double lower = target / 2;
    if (used - hwm > lower) lower = used - hwm;

    pthread_mutex_lock(&m->evict_mu);
    if (seen_epoch != MC__EPOCH_NONE && atomic_load(&m->evict_epoch) != seen_epoch) {
        pthread_mutex_unlock(&m->evict_mu);
        return 1;
    }
    ev_collect_t c = {now, NULL, NULL, 0, 0, 0, 0, 0};
    for (size_t i = 0; i < MC_MASTER_SHARDS; i++) {
        shard_t *sh = &m->shards[i];
        pthread_mutex_lock(&sh->mu);
        mc_map_each(sh->map, ev_collect_visit, &c);
        pthread_mutex_unlock(&sh->mu);
    }
    size_t pop = c.na + c.nb, evicted = 0;
    if (pop > 0) {
        size_t ntarget = (size_t)ceil((double)pop * target - 1e-9);
        size_t nlower = (size_t)ceil((double)pop * lower - 1e-9);
        if (ntarget == 0) ntarget = 1;
        evicted = evict_class(m, now, 0, ntarget, c.a, c.na);
        if (evicted < nlower && evicted < ntarget && m->cfg.allow_evict_soft_pinned_objects)
            evicted += evict_class(m, now, 1, ntarget - evicted, c.b, c.nb);
    }
    free(c.a);
    free(c.b);
    if (evicted) atomic_fetch_add(&m->evict_epoch, 1);
    pthread_mutex_unlock(&m->evict_mu);
    return (int)evicted;
}
