/* master_service.c: the master's state machine (see master_service.h), no I/O:
 * objects, allocation, two-phase puts, reads and single removals. Clients and
 * segments are in master_liveness.c, pattern scans in master_scan.c, eviction
 * in master_evict.c, background work in master_tick.c (shared state: master_int.h).
 *
 * State. Objects live in MC_MASTER_SHARDS index shards chosen by XXH3 of the
 * key, each a string map under its own mutex. Segments live in a table under a
 * rwlock; each segment has an allocator (master_alloc.c) under its own mutex.
 * Clients (id -> heartbeat deadline, alive flag) live in a map under a mutex.
 * Space of preempted zombie puts is "parked" in a list until its release time.
 *
 * Lock order: shard -> segment table (read) -> segment; shard -> parked ->
 * segment; shard -> segment table (read) -> moves -> parked / segment (the
 * move tasks of drain jobs, master_move.c).
 * The client mutex and the segment table's write side are only taken
 * with no other lock held. A replica points at its segment and allocator
 * block; such a pointer is only followed under the object's shard lock (or the
 * parked lock for parked space). Unmount takes the segment out of the table
 * first (so nothing new is allocated there), then visits every shard and the
 * parked list dropping references, and only then frees the segment.
 *
 * Decisions (where upstream is silent or C-specific):
 * - empty keys, keys longer than MC_MASTER_KEY_MAX (4096) bytes, size 0,
 *   replica_num 0, objects larger than the largest mounted segment:
 *   MC_ERR_INVALID_PARAMS (as the bad-input rule says).
 * - put_end/put_revoke on a missing key: MC_ERR_INVALID_WRITE (no write in
 *   progress); put_revoke with nothing PROCESSING: MC_ERR_INVALID_WRITE.
 * - allocation walks every mounted segment (upstream stops after 100 tries), so
 *   a put fails with NO_AVAILABLE_HANDLE only when no segment has room.
 * - preempted zombie space is released at put_start_time + release timeout;
 *   puts that never end are dropped by the tick's zombie scan, which runs every
 *   tenth of the release timeout (clamped to [1 s, 60 s]), so up to that late.
 * - upsert with another size frees the old replicas before allocating the new
 *   ones; when that allocation fails the object is gone (its old bytes were
 *   about to be replaced anyway).
 * - callbacks (each_key, each_segment, get_replicas_by_regex) run with an
 *   internal lock held and must not call back into the master. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "base_log.h"
#include "master_int.h"
void mc_master_config_default(mc_master_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->default_kv_lease_ttl_ms = 10000;
    cfg->promotion_admission_threshold = 2;
    cfg->default_kv_soft_pin_ttl_ms = 1800000;
    cfg->max_kv_soft_pin_ttl_ms = 86400000;
    cfg->allow_evict_soft_pinned_objects = 1;
    cfg->eviction_ratio = 0.05;
    cfg->eviction_high_watermark_ratio = 0.90;
    cfg->client_ttl_ms = 10000;
    cfg->put_start_discard_timeout_ms = 30000;
    cfg->put_start_release_timeout_ms = 600000;
    cfg->allocation_strategy = MC_ALLOC_RANDOM;
}

void mc__master_uuid_text(mc_uuid_t u, char buf[48])
{
    snprintf(buf, 48, "%llu-%llu", (unsigned long long)u.hi, (unsigned long long)u.lo);
}

static uint64_t rand64(void)
{
    static _Atomic uint64_t seed_ctr = 0x9e3779b97f4a7c15ull;
    static _Thread_local uint64_t s;
    if (!s) {
        uint64_t t = atomic_fetch_add(&seed_ctr, 0x9e3779b97f4a7c15ull);
        s = XXH3_64bits(&t, sizeof t) | 1;
    }
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
}

static size_t shard_index(const char *key)
{
    /* High bits: the shard's own map indexes its slots by the low bits of the
     * same XXH3 hash, so taking the low bits here would pile every key of a
     * shard into 1/1024 of its slots. */
    return (XXH3_64bits(key, strlen(key)) >> 40) % MC_MASTER_SHARDS;
}

shard_t *mc__master_shard_of(mc_master_t *m, const char *key)
{
    return &m->shards[shard_index(key)];
}

int mc__master_key_check(const char *key)
{
    if (!key || !key[0]) return MC_ERR_INVALID_PARAMS;
    if (strnlen(key, MC_MASTER_KEY_MAX + 1) > MC_MASTER_KEY_MAX) return MC_ERR_INVALID_PARAMS;
    return 0;
}
void mc__master_range_free(mc_master_t *m, mseg_t *s, mc_alloc_blk_t *blk)
{
    if (m->free_hold && mc__hold_range(m, s, blk)) return;
    pthread_mutex_lock(&s->mu);
    uint64_t sz = mc_alloc_blk_size(blk);
    mc_alloc_put(s->alloc, blk);
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_sub(&s->used, sz);
    atomic_fetch_sub(&m->allocated, sz);
}

/* Returns a replica's range to its segment. Caller holds the object's shard
 * lock (which keeps r->seg alive). */
void mc__master_rep_release(mc_master_t *m, mrep_t *r)
{
    mc__master_range_free(m, r->seg, r->blk);
    r->blk = NULL;
}

static void rep_fill(const mobj_t *o, const mrep_t *r, mc_replica_t *out)
{
    memset(out, 0, sizeof *out);
    out->id = r->id;
    out->addr = mc_alloc_blk_addr(r->blk);
    out->size = o->size;
    snprintf(out->endpoint, sizeof out->endpoint, "%s", r->seg->info.te_endpoint);
    out->status = r->status;
}

void mc__master_set_soft_pin(mc_master_t *m, mobj_t *o, int on)
{
    if (o->soft_pin == on) return;
    o->soft_pin = on;
    if (on)
        atomic_fetch_add(&m->soft_pin_count, 1);
    else
        atomic_fetch_sub(&m->soft_pin_count, 1);
}

/* Frees every replica of o and o itself; erases key from the shard map.
 * Caller holds the shard lock. */
void mc__master_erase_locked(mc_master_t *m, shard_t *sh, const char *key, mobj_t *o)
{
    if (o->durable) mc__journal_remove_locked(m, o);
    if (o->moving) mc__move_obj_gone_locked(m, o);
    for (size_t i = 0; i < o->nrep; i++)
        mc__master_rep_release(m, &o->rep[i]);
    mc_map_del(sh->map, key);
    mc__master_set_soft_pin(m, o, 0);
    atomic_fetch_sub(&m->key_count, 1);
    free(o);
}

/* ---- lifecycle ---- */

int mc_master_new(const mc_master_config_t *cfg, mc_master_t **out)
{
    *out = NULL;
    mc_master_t *m = calloc(1, sizeof *m);
    if (!m) return MC_ERR_INTERNAL;
    if (cfg)
        m->cfg = *cfg;
    else
        mc_master_config_default(&m->cfg);
    if (m->cfg.eviction_ratio < 0 || m->cfg.eviction_ratio > 1 ||
        m->cfg.eviction_high_watermark_ratio < 0 || m->cfg.eviction_high_watermark_ratio > 1) {
        free(m);
        return MC_ERR_INVALID_PARAMS;
    }
    size_t i = 0;
    for (; i < MC_MASTER_SHARDS; i++) {
        m->shards[i].map = mc_map_new();
        if (!m->shards[i].map) goto fail;
        pthread_mutex_init(&m->shards[i].mu, NULL);
    }
    m->clients = mc_map_new();
    if (!m->clients) goto fail;
    pthread_rwlock_init(&m->seg_lock, NULL);
    pthread_mutex_init(&m->client_mu, NULL);
    pthread_mutex_init(&m->parked_mu, NULL);
    pthread_mutex_init(&m->evict_mu, NULL);
    pthread_mutex_init(&m->restore_mu, NULL);
    m->next_replica_id = 1;
    if (m->cfg.enable_offload && !(m->disk = mc__disk_new(&m->cfg))) goto fail_disk;
    if (mc__move_init(m) != 0) goto fail_moves;
    *out = m;
    return 0;
fail_moves:
    mc__disk_free(m->disk);
fail_disk:
    mc_map_free(m->clients, NULL);
fail:
    while (i-- > 0) {
        mc_map_free(m->shards[i].map, NULL);
        pthread_mutex_destroy(&m->shards[i].mu);
    }
    free(m);
    return MC_ERR_INTERNAL;
}

void mc__master_seg_free(mseg_t *s)
{
    mc_alloc_destroy(s->alloc);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void mc_master_free(mc_master_t *m)
{
    if (!m) return;
    mc__restore_free(m);
    mc__move_free(m);
    mc__hold_free(m);
    mc__disk_free(m->disk);
    /* Allocators are destroyed wholesale, so replicas need not be returned. */
    for (size_t i = 0; i < MC_MASTER_SHARDS; i++) {
        mc_map_free(m->shards[i].map, free);
        pthread_mutex_destroy(&m->shards[i].mu);
    }
    for (size_t i = 0; i < m->nsegs; i++)
        mc__master_seg_free(m->segs[i]);
    free(m->segs);
    while (m->parked) {
        parked_t *p = m->parked;
        m->parked = p->next;
        free(p);
    }
    mc_map_free(m->clients, free);
    pthread_rwlock_destroy(&m->seg_lock);
    pthread_mutex_destroy(&m->client_mu);
    pthread_mutex_destroy(&m->parked_mu);
    pthread_mutex_destroy(&m->evict_mu);
    pthread_mutex_destroy(&m->restore_mu);
    free(m);
}

/* ---- allocation ---- */

/* Caps replicas per object: placement is per segment name, and a request for
 * more than this many is served best effort anyway. */
#define MC_MASTER_MAX_REPLICAS 64

static int name_used(const mobj_t *o, const mseg_t *s)
{
    for (size_t i = 0; i < o->nrep; i++)
        if (strcmp(o->rep[i].seg->info.name, s->info.name) == 0) return 1;
    return 0;
}

/* Tries to place one replica of o on s. Caller holds the shard lock and the
 * segment table's read lock. Returns 1 when placed. */
static int try_seg(mc_master_t *m, mobj_t *o, mseg_t *s)
{
    if (name_used(o, s) || atomic_load_explicit(&s->draining, memory_order_relaxed)) return 0;
    mc_alloc_blk_t *blk;
    uint64_t addr;
    pthread_mutex_lock(&s->mu);
    int rc = mc_alloc_get(s->alloc, o->size, &blk, &addr);
    if (rc == 0) mc_alloc_blk_set_owner(blk, o); /* for eviction's walk (master_evict.c) */
    pthread_mutex_unlock(&s->mu);
    if (rc) return 0;
    uint64_t sz = mc_alloc_blk_size(blk);
    atomic_fetch_add(&s->used, sz);
    atomic_fetch_add(&m->allocated, sz);
    mrep_t *r = &o->rep[o->nrep++];
    r->id = atomic_fetch_add(&m->next_replica_id, 1);
    r->seg = s;
    r->blk = blk;
    r->status = MC_REPLICA_PROCESSING;
    return 1;
}

static double free_ratio(const mseg_t *s)
{
    uint64_t used = atomic_load(&s->used);
    return s->capacity ? (double)(s->capacity - (used > s->capacity ? s->capacity : used)) /
                             (double)s->capacity
                       : 0;
}

static int cmp_free_ratio(const void *a, const void *b)
{
    double fa = free_ratio(*(mseg_t *const *)a), fb = free_ratio(*(mseg_t *const *)b);
    return fa < fb ? 1 : fa > fb ? -1 : 0;
}

/* Places up to `want` replicas of o, each on a different segment name:
 * preferred segments in order, then same-host segments when asked, then the
 * strategy (free_ratio_first: a sample sorted by free ratio), then a walk over
 * every segment from a random start. Caller holds the shard lock. */
static void alloc_replicas(mc_master_t *m, mobj_t *o, size_t want, const mc_replicate_config_t *cfg)
{
    pthread_rwlock_rdlock(&m->seg_lock);
    size_t n = m->nsegs;
    mseg_t **sample = NULL;
    while (o->nrep < want && n > 0) {
        int got = 0;
        for (size_t p = 0; !got && p < cfg->npreferred; p++) {
            const char *name = cfg->preferred_segments ? cfg->preferred_segments[p] : NULL;
            if (!name) continue;
            for (size_t i = 0; !got && i < n; i++)
                if (strcmp(m->segs[i]->info.name, name) == 0) got = try_seg(m, o, m->segs[i]);
        }
        if (!got && cfg->prefer_alloc_in_same_node && cfg->host_id && cfg->host_id[0]) {
            for (size_t i = 0; !got && i < n; i++)
                if (strcmp(m->segs[i]->info.host_id, cfg->host_id) == 0)
                    got = try_seg(m, o, m->segs[i]);
        }
        if (!got && m->cfg.allocation_strategy == MC_ALLOC_FREE_RATIO_FIRST) {
            size_t k = 6 * (want - o->nrep);
            if (k > n) k = n;
            if (!sample) sample = malloc(n * sizeof *sample);
            if (sample) {
                size_t start = (size_t)(rand64() % n);
                for (size_t i = 0; i < k; i++)
                    sample[i] = m->segs[(start + i) % n];
                qsort(sample, k, sizeof *sample, cmp_free_ratio);
                for (size_t i = 0; !got && i < k; i++)
                    got = try_seg(m, o, sample[i]);
            }
        }
        if (!got) {
            size_t start = (size_t)(rand64() % n);
            for (size_t i = 0; !got && i < n; i++)
                got = try_seg(m, o, m->segs[(start + i) % n]);
        }
        if (!got) break;
    }
    free(sample);
    pthread_rwlock_unlock(&m->seg_lock);
}

/* Parks o's replicas until their release time (space stays allocated), then
 * erases o. Caller holds the shard lock. */
static void obj_discard_locked(mc_master_t *m, shard_t *sh, const char *key, mobj_t *o)
{
    mc__master_erase_parked_locked(m, sh, key, o,
                                   o->put_start_ms + m->cfg.put_start_release_timeout_ms);
    atomic_fetch_add(&m->discard_cnt, 1);
}

void mc__master_erase_parked_locked(mc_master_t *m, shard_t *sh, const char *key, mobj_t *o,
                                    uint64_t rel)
{
    pthread_mutex_lock(&m->parked_mu);
    for (size_t i = 0; i < o->nrep; i++) {
        parked_t *p = malloc(sizeof *p);
        if (!p) {
            pthread_mutex_unlock(&m->parked_mu);
            mc__master_rep_release(m, &o->rep[i]);
            pthread_mutex_lock(&m->parked_mu);
            continue;
        }
        p->seg = o->rep[i].seg;
        p->blk = o->rep[i].blk;
        pthread_mutex_lock(&p->seg->mu); /* parked space has no owner to evict */
        mc_alloc_blk_set_owner(p->blk, NULL);
        pthread_mutex_unlock(&p->seg->mu);
        p->release_ms = rel;
        p->next = m->parked;
        m->parked = p;
    }
    pthread_mutex_unlock(&m->parked_mu);
    o->nrep = 0;
    mc__master_erase_locked(m, sh, key, o);
}

void mc__master_erase_removed_locked(mc_master_t *m, shard_t *sh, const char *key, mobj_t *o,
                                     uint64_t now)
{
    if (mc__obj_lease_active(o, now))
        mc__master_erase_parked_locked(m, sh, key, o, o->lease_ms);
    else
        mc__master_erase_locked(m, sh, key, o);
}

int mc__master_fill_out(const mobj_t *o, int only_complete, mc_replica_t **out, size_t *n)
{
    size_t k = 0;
    for (size_t i = 0; i < o->nrep; i++)
        if (!only_complete || o->rep[i].status == MC_REPLICA_COMPLETE) k++;
    mc_replica_t *r = calloc(k ? k : 1, sizeof *r);
    if (!r) return MC_ERR_INTERNAL;
    k = 0;
    for (size_t i = 0; i < o->nrep; i++)
        if (!only_complete || o->rep[i].status == MC_REPLICA_COMPLETE)
            rep_fill(o, &o->rep[i], &r[k++]);
    *out = r;
    *n = k;
    return 0;
}

/* Validates a put/upsert; *soft and *ttl receive the soft pin to apply
 * (-1 = keep, for PRESERVE). */
static int check_put(const char *key, uint64_t size, const mc_replicate_config_t *cfg,
                     const mc_master_config_t *mc, int *soft, uint64_t *ttl)
{
    int rc = mc__master_key_check(key);
    if (rc) return rc;
    if (size == 0 || !cfg || cfg->replica_num == 0) return MC_ERR_INVALID_PARAMS;
    if (cfg->npreferred && !cfg->preferred_segments) return MC_ERR_INVALID_PARAMS;
    if (cfg->has_soft_pin_ttl && cfg->soft_pin_action != MC_SOFT_PIN_ENABLE)
        return MC_ERR_INVALID_PARAMS;
    *soft = -1;
    *ttl = 0;
    switch (cfg->soft_pin_action) {
    case MC_SOFT_PIN_PRESERVE:
        break;
    case MC_SOFT_PIN_DISABLE:
        *soft = 0;
        break;
    case MC_SOFT_PIN_ENABLE:
        *ttl = cfg->has_soft_pin_ttl ? cfg->soft_pin_ttl_ms : mc->default_kv_soft_pin_ttl_ms;
        if (*ttl > mc->max_kv_soft_pin_ttl_ms) return MC_ERR_INVALID_PARAMS;
        *soft = *ttl > 0;
        break;
    default:
        return MC_ERR_INVALID_PARAMS;
    }
    return 0;
}

/* Usable capacity of the largest mounted segment that takes replicas (not
 * draining), 0 when there is none. */
static uint64_t largest_segment(mc_master_t *m)
{
    uint64_t best = 0;
    pthread_rwlock_rdlock(&m->seg_lock);
    for (size_t i = 0; i < m->nsegs; i++)
        if (!atomic_load(&m->segs[i]->draining) && m->segs[i]->capacity > best)
            best = m->segs[i]->capacity; /* a draining segment takes no replica */
    pthread_rwlock_unlock(&m->seg_lock);
    return best;
}

int mc__master_start(mc_master_t *m, mc_uuid_t client, const char *key, uint64_t size,
                     const mc_replicate_config_t *cfg, uint64_t now, mc_replica_t **out, size_t *n,
                     int mode)
{
    int upsert = mode == MC__START_UPSERT;
    *out = NULL;
    *n = 0;
    int soft;
    uint64_t ttl;
    int rc = check_put(key, size, cfg, &m->cfg, &soft, &ttl);
    if (rc) return rc;
    /* an object no segment could ever hold is bad input, not a reason to evict */
    uint64_t largest = largest_segment(m);
    /* Nothing mounted (a master that just restarted, before its stores
     * remount): eviction cannot make room, and a pass forced now would run
     * once they are back, evicting objects at any usage. */
    if (largest == 0) return MC_ERR_NO_AVAILABLE_HANDLE;
    if (size > largest) {
        MC_LOGW("master", "put of '%.64s': %llu bytes exceed the largest segment (%llu bytes)", key,
                (unsigned long long)size, (unsigned long long)largest);
        return MC_ERR_INVALID_PARAMS;
    }
    shard_t *sh = mc__master_shard_of(m, key);
    size_t want =
        cfg->replica_num > MC_MASTER_MAX_REPLICAS ? MC_MASTER_MAX_REPLICAS : cfg->replica_num;
    int waits = 0;
    for (int attempt = 0;; attempt++) {
        uint64_t epoch = atomic_load(&m->evict_epoch);
        pthread_mutex_lock(&sh->mu);
        mobj_t *o = mc_map_get(sh->map, key);
        if (o) {
            int zombie = !mc__obj_has_status(o, MC_REPLICA_COMPLETE) &&
                         now >= o->put_start_ms + m->cfg.put_start_discard_timeout_ms;
            if (zombie) {
                obj_discard_locked(m, sh, key, o);
            } else if (!upsert) { /* a promotion too: it is in memory already */
                pthread_mutex_unlock(&sh->mu);
                return MC_ERR_OBJECT_ALREADY_EXISTS;
            } else if (mc__obj_has_status(o, MC_REPLICA_PROCESSING) || o->moving) {
                pthread_mutex_unlock(&sh->mu);
                return MC_ERR_OBJECT_REPLICA_BUSY;
            } else if (o->size == size && !mc__obj_lease_active(o, now)) { /* in place */
                /* its bytes are about to change: no longer a completed object */
                if (o->durable) mc__journal_remove_locked(m, o);
                mc__disk_forget_locked(m, key);
                for (size_t i = 0; i < o->nrep; i++)
                    o->rep[i].status = MC_REPLICA_PROCESSING;
                o->client = client;
                /* strictly later: the SSD tier tells incarnations apart by it */
                o->put_start_ms = now > o->put_start_ms ? now : o->put_start_ms + 1;
                if (soft >= 0) {
                    mc__master_set_soft_pin(m, o, soft);
                    o->soft_pin_ttl_ms = ttl;
                    o->soft_pin_deadline_ms = 0;
                }
                rc = mc__master_fill_out(o, 0, out, n);
                pthread_mutex_unlock(&sh->mu);
                return rc;
            } else {
                /* Another size, or a read lease running: the new bytes go to
                 * fresh ranges; the old ones are parked until the lease ends
                 * (freed at once without one), so a reader under the lease
                 * never sees its bytes change. */
                if (soft < 0 && o->soft_pin) { /* PRESERVE keeps the soft pin */
                    soft = 1;
                    ttl = o->soft_pin_ttl_ms;
                }
                mc__master_erase_removed_locked(m, sh, key, o, now);
            }
        }
        if (m->disk) { /* a key on disk only: a put finds it, an upsert replaces it */
            int on_disk = mc__disk_has_locked(m, key);
            if (mode == MC__START_PUT && on_disk) {
                pthread_mutex_unlock(&sh->mu);
                return MC_ERR_OBJECT_ALREADY_EXISTS;
            }
            if (mode == MC__START_PROMOTE && !on_disk) {
                pthread_mutex_unlock(&sh->mu);
                return MC_ERR_OBJECT_NOT_FOUND;
            }
            if (upsert) mc__disk_forget_locked(m, key);
        } else if (mode == MC__START_PROMOTE) {
            pthread_mutex_unlock(&sh->mu);
            return MC_ERR_OBJECT_NOT_FOUND;
        }
        o = calloc(1, sizeof *o + want * sizeof o->rep[0]);
        if (!o) {
            pthread_mutex_unlock(&sh->mu);
            return MC_ERR_INTERNAL;
        }
        o->client = client;
        o->size = size;
        o->put_start_ms = now;
        o->shard = (uint16_t)(sh - m->shards);
        o->hard_pin = !!cfg->with_hard_pin;
        o->soft_pin_ttl_ms = ttl;
        alloc_replicas(m, o, want, cfg);
        if (o->nrep == 0) {
            free(o);
            pthread_mutex_unlock(&sh->mu);
            /* Ranges freed just before, or by the eviction below, may be held
             * for the in-sync standbys (master_hold.c): they come back within
             * one ack, so wait for that (twice at most) before evicting more. */
            if (waits < 2 && mc__hold_wait(m, size)) {
                waits++;
                attempt--;
                continue;
            }
            /* First make contiguous room for this very put; failing that (all
             * candidates leased or pinned), one general pass; then give up. */
            if (attempt == 0 && mc__master_evict_room(m, size, now) > 0) continue;
            if (attempt <= 1 && mc__master_evict_pass(m, now, 1, epoch) > 0) {
                attempt = 1;
                continue;
            }
            if (m->cfg.eviction_ratio > 0) atomic_store(&m->need_evict, 1);
            return MC_ERR_NO_AVAILABLE_HANDLE;
        }
        if (mc_map_put(sh->map, key, o, NULL) != 0) {
            for (size_t i = 0; i < o->nrep; i++)
                mc__master_rep_release(m, &o->rep[i]);
            free(o);
            pthread_mutex_unlock(&sh->mu);
            return MC_ERR_INTERNAL;
        }
        o->key = mc_map_stored_key(sh->map, key);
        atomic_fetch_add(&m->key_count, 1);
        if (soft > 0) mc__master_set_soft_pin(m, o, 1);
        rc = mc__master_fill_out(o, 0, out, n);
        pthread_mutex_unlock(&sh->mu);
        return rc;
    }
}

int mc_master_put_start(mc_master_t *m, mc_uuid_t client, const char *key, uint64_t size,
                        const mc_replicate_config_t *cfg, uint64_t now_ms, mc_replica_t **out,
                        size_t *n)
{
    return mc__master_start(m, client, key, size, cfg, now_ms, out, n, MC__START_PUT);
}

int mc_master_upsert_start(mc_master_t *m, mc_uuid_t client, const char *key, uint64_t size,
                           const mc_replicate_config_t *cfg, uint64_t now_ms, mc_replica_t **out,
                           size_t *n)
{
    return mc__master_start(m, client, key, size, cfg, now_ms, out, n, MC__START_UPSERT);
}

int mc_master_put_end(mc_master_t *m, mc_uuid_t client, const char *key, uint64_t now_ms)
{
    if (mc__master_key_check(key)) return MC_ERR_INVALID_WRITE;
    shard_t *sh = mc__master_shard_of(m, key);
    int rc = 0;
    pthread_mutex_lock(&sh->mu);
    mobj_t *o = mc_map_get(sh->map, key);
    if (!o) {
        rc = MC_ERR_INVALID_WRITE;
    } else if (!mc__uuid_eq(o->client, client)) {
        rc = MC_ERR_ILLEGAL_CLIENT;
    } else if (mc__obj_has_status(o, MC_REPLICA_PROCESSING)) {
        for (size_t i = 0; i < o->nrep; i++)
            o->rep[i].status = MC_REPLICA_COMPLETE;
        o->lease_ms = now_ms;
        if (o->soft_pin && o->soft_pin_deadline_ms == 0)
            o->soft_pin_deadline_ms = now_ms + o->soft_pin_ttl_ms;
        mc__journal_put_locked(m, o, now_ms); /* in the log before the reply */
        /* a promotion: the copy of an object just read past the admission
         * threshold, leased as a get's (eviction goes oldest lease first;
         * with its put end's lease it went first, and promoting churned) */
        if (mc__disk_put_end_locked(m, o, now_ms)) mc__master_grant_lease(m, o, now_ms);
    }
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

int mc_master_put_revoke(mc_master_t *m, mc_uuid_t client, const char *key)
{
    if (mc__master_key_check(key)) return MC_ERR_INVALID_WRITE;
    shard_t *sh = mc__master_shard_of(m, key);
    int rc = 0;
    pthread_mutex_lock(&sh->mu);
    mobj_t *o = mc_map_get(sh->map, key);
    if (!o || !mc__obj_has_status(o, MC_REPLICA_PROCESSING)) {
        rc = o && !mc__uuid_eq(o->client, client) ? MC_ERR_ILLEGAL_CLIENT : MC_ERR_INVALID_WRITE;
    } else if (!mc__uuid_eq(o->client, client)) {
        rc = MC_ERR_ILLEGAL_CLIENT;
    } else {
        size_t j = 0;
        for (size_t i = 0; i < o->nrep; i++) {
            if (o->rep[i].status == MC_REPLICA_PROCESSING)
                mc__master_rep_release(m, &o->rep[i]);
            else
                o->rep[j++] = o->rep[i];
        }
        o->nrep = j;
        if (j == 0) mc__master_erase_locked(m, sh, key, o);
    }
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

/* ---- reads ---- */

void mc__master_grant_lease(mc_master_t *m, mobj_t *o, uint64_t now)
{
    uint64_t t = now + m->cfg.default_kv_lease_ttl_ms;
    if (t > o->lease_ms) o->lease_ms = t;
}

int mc_master_get_replicas(mc_master_t *m, const char *key, uint64_t now_ms, mc_replica_t **out,
                           size_t *n, uint64_t *lease_ttl_ms)
{
    *out = NULL;
    *n = 0;
    if (mc__master_key_check(key)) return MC_ERR_OBJECT_NOT_FOUND;
    shard_t *sh = mc__master_shard_of(m, key);
    int rc;
    pthread_mutex_lock(&sh->mu);
    mobj_t *o = mc_map_get(sh->map, key);
    if (!o) {
        rc = MC_ERR_OBJECT_NOT_FOUND;
    } else if (!mc__obj_has_status(o, MC_REPLICA_COMPLETE)) {
        rc = mc__obj_has_status(o, MC_REPLICA_PROCESSING) ? MC_ERR_REPLICA_IS_NOT_READY
                                                          : MC_ERR_OBJECT_NOT_FOUND;
    } else {
        rc = mc__master_fill_out(o, 1, out, n);
        if (rc == 0) {
            mc__master_grant_lease(m, o, now_ms);
            rc = mc__disk_append(m, key, now_ms, out, n);
        }
    }
    pthread_mutex_unlock(&sh->mu);
    /* nothing readable in DRAM: the disk tier may hold it */
    if (m->disk && (rc == MC_ERR_OBJECT_NOT_FOUND || rc == MC_ERR_REPLICA_IS_NOT_READY)) {
        int drc = mc__disk_get(m, key, now_ms, out, n);
        if (drc != MC_ERR_OBJECT_NOT_FOUND) rc = drc;
    }
    if (rc == 0 && lease_ttl_ms) *lease_ttl_ms = m->cfg.default_kv_lease_ttl_ms;
    if (rc) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

int mc_master_exist(mc_master_t *m, const char *key, uint64_t now_ms)
{
    if (mc__master_key_check(key)) return 0;
    shard_t *sh = mc__master_shard_of(m, key);
    int rc = 0;
    pthread_mutex_lock(&sh->mu);
    mobj_t *o = mc_map_get(sh->map, key);
    if (o && mc__obj_has_status(o, MC_REPLICA_COMPLETE)) {
        mc__master_grant_lease(m, o, now_ms);
        rc = 1;
    }
    pthread_mutex_unlock(&sh->mu);
    if (!rc) rc = mc__disk_exist(m, key, now_ms);
    return rc;
}

/* ---- removal ---- */

int mc_master_remove(mc_master_t *m, const char *key, int force, uint64_t now_ms)
{
    if (mc__master_key_check(key)) return MC_ERR_OBJECT_NOT_FOUND;
    shard_t *sh = mc__master_shard_of(m, key);
    int rc = 0;
    pthread_mutex_lock(&sh->mu);
    mobj_t *o = mc_map_get(sh->map, key);
    if (!o)
        rc = MC_ERR_OBJECT_NOT_FOUND;
    else if (!force && mc__obj_lease_active(o, now_ms))
        rc = MC_ERR_OBJECT_HAS_LEASE;
    else if (!mc__obj_all_complete(o))
        rc = MC_ERR_REPLICA_IS_NOT_READY;
    else
        mc__master_erase_removed_locked(m, sh, key, o, now_ms);
    rc = mc__disk_remove(m, key, force, now_ms, rc); /* its disk copy goes with it */
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

static int rep_on_segment(const mrep_t *r, const char *segment)
{
    return strcmp(r->seg->info.name, segment) == 0 ||
           strcmp(r->seg->info.te_endpoint, segment) == 0;
}

int mc_master_replica_clear(mc_master_t *m, mc_uuid_t client, const char *key, const char *segment,
                            uint64_t now_ms)
{
    if (mc__master_key_check(key)) return MC_ERR_OBJECT_NOT_FOUND;
    shard_t *sh = mc__master_shard_of(m, key);
    int rc = 0;
    pthread_mutex_lock(&sh->mu);
    mobj_t *o = mc_map_get(sh->map, key);
    size_t on = 0;
    if (o && segment && *segment)
        for (size_t i = 0; i < o->nrep; i++)
            on += o->rep[i].status == MC_REPLICA_COMPLETE && rep_on_segment(&o->rep[i], segment);
    if (!o)
        rc = MC_ERR_OBJECT_NOT_FOUND;
    else if (!mc__uuid_eq(o->client, client))
        rc = MC_ERR_ILLEGAL_CLIENT;
    else if (mc__obj_lease_active(o, now_ms))
        rc = MC_ERR_OBJECT_HAS_LEASE;
    else if (!segment || !*segment || on == o->nrep) {
        /* every replica goes: the object goes, as remove (its disk copy too) */
        if (!mc__obj_all_complete(o))
            rc = MC_ERR_REPLICA_IS_NOT_READY;
        else
            mc__master_erase_locked(m, sh, key, o);
        rc = mc__disk_remove(m, key, 0, now_ms, rc);
    } else if (on == 0) {
        rc = MC_ERR_REPLICA_NOT_FOUND;
    } else { /* some replicas stay: drop those on segment, log what is left */
        size_t j = 0;
        for (size_t i = 0; i < o->nrep; i++) {
            if (o->rep[i].status == MC_REPLICA_COMPLETE && rep_on_segment(&o->rep[i], segment))
                mc__master_rep_release(m, &o->rep[i]);
            else
                o->rep[j++] = o->rep[i];
        }
        o->nrep = (uint16_t)j;
        if (o->durable) mc__journal_put_locked(m, o, now_ms);
    }
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

int mc__master_push_key(char ***keys, size_t *n, size_t *cap, const char *key)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 32;
        char **nk = realloc(*keys, nc * sizeof *nk);
        if (!nk) return -1;
        *keys = nk;
        *cap = nc;
    }
    char *k = strdup(key);
    if (!k) return -1;
    (*keys)[(*n)++] = k;
    return 0;
}

/* ---- introspection ---- */

void mc_master_get_stats(mc_master_t *m, mc_master_stats_t *st)
{
    memset(st, 0, sizeof *st);
    st->allocated_bytes = atomic_load(&m->allocated);
    st->capacity_bytes = atomic_load(&m->capacity);
    st->key_count = atomic_load(&m->key_count);
    st->soft_pin_key_count = atomic_load(&m->soft_pin_count);
    st->evicted_key_count = atomic_load(&m->evicted_keys);
    st->evicted_size_bytes = atomic_load(&m->evicted_bytes);
    st->put_start_discard_cnt = atomic_load(&m->discard_cnt);
    st->put_start_release_cnt = atomic_load(&m->release_cnt);
    st->expired_clients = atomic_load(&m->expired_clients);
    st->unmounted_segments = atomic_load(&m->unmounted_segments);
    st->purged_objects = atomic_load(&m->purged_objects);
    pthread_mutex_lock(&m->client_mu);
    st->active_clients = mc_map_size(m->clients);
    pthread_mutex_unlock(&m->client_mu);
    pthread_rwlock_rdlock(&m->seg_lock);
    st->segment_count = m->nsegs;
    pthread_rwlock_unlock(&m->seg_lock);
}

typedef struct {
    void (*fn)(const char *, void *);
    void *arg;
} key_ctx_t;

static int key_visit(const char *key, void *val, void *arg)
{
    key_ctx_t *c = arg;
    c->fn(key, c->arg);
    return 0;
}

void mc_master_each_key(mc_master_t *m, void (*fn)(const char *key, void *arg), void *arg)
{
    if (!fn) return;
    key_ctx_t c = {fn, arg};
    for (size_t i = 0; i < MC_MASTER_SHARDS; i++) {
        shard_t *sh = &m->shards[i];
        pthread_mutex_lock(&sh->mu);
        mc_map_each(sh->map, key_visit, &c);
        pthread_mutex_unlock(&sh->mu);
    }
}

void mc_master_each_segment(mc_master_t *m,
                            void (*fn)(const mc_master_segment_info_t *s, void *arg), void *arg)
{
    if (!fn) return;
    pthread_rwlock_rdlock(&m->seg_lock);
    for (size_t i = 0; i < m->nsegs; i++) {
        mc_master_segment_info_t info;
        info.seg = m->segs[i]->info;
        info.client = m->segs[i]->client;
        info.used_bytes = atomic_load(&m->segs[i]->used);
        info.draining = atomic_load(&m->segs[i]->draining);
        fn(&info, arg);
    }
    pthread_rwlock_unlock(&m->seg_lock);
}
