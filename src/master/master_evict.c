/* master_evict.c: eviction of the master core. Two kinds:
 * - passes (mc__master_evict_pass): past the high watermark, or forced, evict
 *   a share of all evictable objects, oldest lease first, soft-pinned last;
 * - room for one put (mc__master_evict_room): when a put finds no free range
 *   large enough, evict the cheapest run of address-contiguous evictable
 *   objects (with the free space between them) that frees a range for it.
 *   Without this, a pass frees many scattered ranges and a large put can
 *   still fail at 80-90 % use.
 * Both hold evict_mu, so one runs at a time, and both bump evict_epoch. They
 * log one line per 10 s at most, with what they did since the last line. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base_log.h"
#include "master_int.h"

#define TAG "master"
#define EVICT_LOG_EVERY_MS 10000

/* ---- eviction ---- */

/* One line per EVICT_LOG_EVERY_MS with what was evicted since the last one.
 * Caller holds evict_mu. */
static void evict_log_locked(mc_master_t *m, uint64_t now)
{
    if (m->ev_log_ms && now < m->ev_log_ms + EVICT_LOG_EVERY_MS) return;
    uint64_t cap = atomic_load(&m->capacity), used = atomic_load(&m->allocated);
    MC_LOGI(TAG,
            "evicted %llu objects (%llu bytes) in %llu passes and %llu objects (%llu bytes) to "
            "make room for %llu large puts since the last line; %.1f%% of %llu bytes in use",
            (unsigned long long)m->ev_log_pass_objs, (unsigned long long)m->ev_log_pass_bytes,
            (unsigned long long)m->ev_log_passes, (unsigned long long)m->ev_log_room_objs,
            (unsigned long long)m->ev_log_room_bytes, (unsigned long long)m->ev_log_rooms,
            cap ? 100.0 * (double)used / (double)cap : 0.0, (unsigned long long)cap);
    m->ev_log_ms = now;
    m->ev_log_pass_objs = m->ev_log_pass_bytes = m->ev_log_passes = 0;
    m->ev_log_room_objs = m->ev_log_room_bytes = m->ev_log_rooms = 0;
}

static int evictable(const mobj_t *o, uint64_t now)
{
    return !o->hard_pin && !o->moving && !mc__obj_lease_active(o, now) && mc__obj_all_complete(o);
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
                          size_t nl, uint64_t *bytes)
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
            if (o && !mc__disk_evict_hold_locked(m, o, now)) {
                *bytes += o->size * o->nrep;
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
    uint64_t bytes = 0;
    if (pop > 0) {
        size_t ntarget = (size_t)ceil((double)pop * target - 1e-9);
        size_t nlower = (size_t)ceil((double)pop * lower - 1e-9);
        if (ntarget == 0) ntarget = 1;
        evicted = evict_class(m, now, 0, ntarget, c.a, c.na, &bytes);
        if (evicted < nlower && evicted < ntarget && m->cfg.allow_evict_soft_pinned_objects)
            evicted += evict_class(m, now, 1, ntarget - evicted, c.b, c.nb, &bytes);
    }
    free(c.a);
    free(c.b);
    if (evicted) {
        atomic_fetch_add(&m->evict_epoch, 1);
        m->ev_log_pass_objs += evicted;
        m->ev_log_pass_bytes += bytes;
        m->ev_log_passes++;
        evict_log_locked(m, now);
    }
    pthread_mutex_unlock(&m->evict_mu);
    return (int)evicted;
}

/* ---- room for one put ---- */

/* Cost of evicting a soft-pinned byte against an unpinned one: a soft-pinned
 * object goes only when no run of unpinned ones would do. */
#define SOFT_COST 64

typedef struct {
    mc_master_t *m;
    uint64_t now, need;
    /* the run being grown: [start, end) over blocks, its evictable cost */
    uint64_t start, end, cost;
    /* ranges of the run, so the left edge can move (a ring would do; runs are short) */
    uint64_t *addr, *len, *costs, *leases;
    size_t head, n, cap;
    uint64_t lease; /* of the range being visited */
    /* best run so far in this segment: least cost, then oldest newest lease */
    int found;
    uint64_t best_start, best_end, best_cost, best_lease;
} room_scan_t;

/* Cost of evicting what sits at one range: 0 for free space, UINT64_MAX when
 * it cannot go (in use, pinned, being written, or its shard is busy: the
 * shard lock is only tried, since the segment lock is held). */
static uint64_t range_cost(room_scan_t *c, uint64_t size, int is_free, const mobj_t *o)
{
    c->lease = 0;
    if (is_free) return 0;
    if (!o) return UINT64_MAX; /* parked space of a preempted put */
    shard_t *sh = &c->m->shards[o->shard];
    if (pthread_mutex_trylock(&sh->mu) != 0) return UINT64_MAX;
    uint64_t cost = UINT64_MAX;
    if (o->key && evictable(o, c->now)) {
        int soft = mc__obj_soft_pinned_now(o, c->now);
        if (!soft || c->m->cfg.allow_evict_soft_pinned_objects)
            cost = size * (soft ? SOFT_COST : 1);
        c->lease = o->lease_ms;
    }
    pthread_mutex_unlock(&sh->mu);
    return cost;
}

static int room_visit(uint64_t addr, uint64_t size, int is_free, void *owner, void *arg)
{
    room_scan_t *c = arg;
    uint64_t cost = range_cost(c, size, is_free, owner);
    if (cost == UINT64_MAX) { /* a barrier: start over after it */
        c->head = c->n = 0;
        c->cost = 0;
        return 0;
    }
    if (c->n == 0) {
        c->head = 0;
        c->start = addr;
        c->cost = 0;
    }
    if (c->head + c->n == c->cap) {
        if (c->head) { /* compact */
            memmove(c->addr, c->addr + c->head, c->n * sizeof *c->addr);
            memmove(c->len, c->len + c->head, c->n * sizeof *c->len);
            memmove(c->costs, c->costs + c->head, c->n * sizeof *c->costs);
            memmove(c->leases, c->leases + c->head, c->n * sizeof *c->leases);
            c->head = 0;
        } else {
            size_t nc = c->cap ? c->cap * 2 : 64;
            uint64_t *na = realloc(c->addr, nc * sizeof *na);
            if (na) c->addr = na;
            uint64_t *nl = realloc(c->len, nc * sizeof *nl);
            if (nl) c->len = nl;
            uint64_t *ncst = realloc(c->costs, nc * sizeof *ncst);
            if (ncst) c->costs = ncst;
            uint64_t *nls = realloc(c->leases, nc * sizeof *nls);
            if (nls) c->leases = nls;
            if (!na || !nl || !ncst || !nls) return -1;
            c->cap = nc;
        }
    }
    size_t t = c->head + c->n++;
    c->addr[t] = addr;
    c->len[t] = size;
    c->costs[t] = cost;
    c->leases[t] = c->lease;
    c->cost += cost;
    c->end = addr + size;
    /* drop ranges on the left while the rest still holds the put */
    while (c->n > 1 && c->end - (c->addr[c->head] + c->len[c->head]) >= c->need) {
        c->cost -= c->costs[c->head];
        c->head++;
        c->n--;
        c->start = c->addr[c->head];
    }
    if (c->end - c->start < c->need || (c->found && c->cost > c->best_cost)) return 0;
    uint64_t newest = 0;
    for (size_t i = c->head; i < c->head + c->n; i++)
        if (c->leases[i] > newest) newest = c->leases[i];
    if (!c->found || c->cost < c->best_cost || newest < c->best_lease) {
        c->found = 1;
        c->best_start = c->start;
        c->best_end = c->end;
        c->best_cost = c->cost;
        c->best_lease = newest;
    }
    return 0;
}

typedef struct {
    mc_master_t *m;
    uint64_t start, end;
    char **keys;
    size_t n, cap;
} room_keys_t;

/* Collects the keys of the objects in [start, end) (shards tried, as above). */
static int room_keys_visit(uint64_t addr, uint64_t size, int is_free, void *owner, void *arg)
{
    room_keys_t *c = arg;
    (void)size;
    if (addr < c->start || addr >= c->end || is_free || !owner) return addr >= c->end;
    const mobj_t *o = owner;
    shard_t *sh = &c->m->shards[o->shard];
    if (pthread_mutex_trylock(&sh->mu) != 0) return 0;
    if (o->key) mc__master_push_key(&c->keys, &c->n, &c->cap, o->key);
    pthread_mutex_unlock(&sh->mu);
    return 0;
}

/* 1 when o still has a replica on segment s inside [start, end). s is only
 * compared, never followed (it may have been unmounted meanwhile). */
static int in_run(const mobj_t *o, const mseg_t *s, uint64_t start, uint64_t end)
{
    for (size_t i = 0; i < o->nrep; i++) {
        if (o->rep[i].seg != s) continue;
        uint64_t a = mc_alloc_blk_addr(o->rep[i].blk);
        if (a >= start && a < end) return 1;
    }
    return 0;
}

int mc__master_evict_room(mc_master_t *m, uint64_t size, uint64_t now)
{
    uint64_t need = (size + MC_ALLOC_ALIGN - 1) / MC_ALLOC_ALIGN * MC_ALLOC_ALIGN;
    pthread_mutex_lock(&m->evict_mu);
    room_scan_t c = {.m = m, .now = now, .need = need};
    mseg_t *best = NULL;
    uint64_t best_start = 0, best_end = 0, best_cost = 0, best_lease = 0;
    room_keys_t k = {m, 0, 0, NULL, 0, 0};
    pthread_rwlock_rdlock(&m->seg_lock);
    for (size_t i = 0; i < m->nsegs; i++) {
        mseg_t *s = m->segs[i];
        if (atomic_load(&s->draining)) continue; /* room there could not be used */
        c.head = c.n = 0;
        c.found = 0;
        pthread_mutex_lock(&s->mu);
        int rc = mc_alloc_each(s->alloc, room_visit, &c);
        pthread_mutex_unlock(&s->mu);
        if (rc == 0 && c.found &&
            (!best || c.best_cost < best_cost ||
             (c.best_cost == best_cost && c.best_lease < best_lease))) {
            best = s;
            best_start = c.best_start;
            best_end = c.best_end;
            best_cost = c.best_cost;
            best_lease = c.best_lease;
        }
    }
    if (best) {
        k.start = best_start;
        k.end = best_end;
        pthread_mutex_lock(&best->mu);
        mc_alloc_each(best->alloc, room_keys_visit, &k);
        pthread_mutex_unlock(&best->mu);
    }
    pthread_rwlock_unlock(&m->seg_lock);
    free(c.addr);
    free(c.len);
    free(c.costs);
    free(c.leases);

    size_t evicted = 0;
    uint64_t bytes = 0;
    for (size_t i = 0; i < k.n; i++) {
        shard_t *sh = mc__master_shard_of(m, k.keys[i]);
        pthread_mutex_lock(&sh->mu);
        mobj_t *o = mc_map_get(sh->map, k.keys[i]);
        if (o && evictable(o, now) && in_run(o, best, best_start, best_end) &&
            !mc__disk_evict_hold_locked(m, o, now)) {
            bytes += o->size * o->nrep;
            atomic_fetch_add(&m->evicted_bytes, o->size * o->nrep);
            atomic_fetch_add(&m->evicted_keys, 1);
            mc__master_erase_locked(m, sh, k.keys[i], o);
            evicted++;
        }
        pthread_mutex_unlock(&sh->mu);
        free(k.keys[i]);
    }
    free(k.keys);
    if (evicted || best) { /* a free run needs no eviction, and still counts as room */
        atomic_fetch_add(&m->evict_epoch, 1);
        m->ev_log_room_objs += evicted;
        m->ev_log_room_bytes += bytes;
        m->ev_log_rooms++;
        evict_log_locked(m, now);
    }
    pthread_mutex_unlock(&m->evict_mu);
    return best ? (int)(evicted ? evicted : 1) : 0;
}
