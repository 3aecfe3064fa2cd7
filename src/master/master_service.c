/* master_service.c: the master's state machine (see master_service.h), no I/O.
 *
 * State. Objects live in MC_MASTER_SHARDS index shards chosen by XXH3 of the
 * key, each a string map under its own mutex. Segments live in a table under a
 * rwlock; each segment has an allocator (master_alloc.c) under its own mutex.
 * Clients (id -> heartbeat deadline, alive flag) live in a map under a mutex.
 * Space of preempted zombie puts is "parked" in a list until its release time.
 *
 * Lock order: shard -> segment table (read) -> segment; shard -> parked ->
 * segment. The client mutex and the segment table's write side are only taken
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
#include "master_service.h"

#include "base_log.h"

#include <math.h>
#include <pthread.h>
#include <regex.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "base_map.h"
#include "master_alloc.h"

#define MC_MASTER_SHARDS 1024
#define MC_MASTER_KEY_MAX 4096

typedef struct mseg {
    mc_segment_t info;
    mc_uuid_t client;
    pthread_mutex_t mu;
    mc_alloc_t *alloc;
    uint64_t capacity;
    _Atomic uint64_t used;
} mseg_t;

typedef struct {
    uint64_t id;
    mseg_t *seg;
    mc_alloc_blk_t *blk;
    uint64_t addr;
    int status;
} mrep_t;

/* Kept small: with one replica an object is one 104-byte allocation (a
 * 112-byte malloc chunk), part of the master's per-object memory budget. */
typedef struct {
    mc_uuid_t client; /* last writer */
    uint64_t size;
    uint64_t put_start_ms;
    uint64_t lease_ms; /* read lease deadline */
    uint64_t soft_pin_ttl_ms;
    uint64_t soft_pin_deadline_ms; /* 0 until the first replica completes */
    uint32_t nrep;
    uint8_t soft_pin; /* soft pin requested */
    uint8_t hard_pin;
    mrep_t rep[]; /* allocated with room for cap replicas */
} mobj_t;
_Static_assert(sizeof(mobj_t) + sizeof(mrep_t) <= 104, "one-replica object outgrew its chunk");

typedef struct parked {
    mseg_t *seg;
    mc_alloc_blk_t *blk;
    uint64_t release_ms;
    struct parked *next;
} parked_t;

typedef struct {
    mc_uuid_t id;
    uint64_t deadline_ms;
    int alive; /* in the alive set (set by remount only) */
} mclient_t;

typedef struct {
    pthread_mutex_t mu;
    mc_map_t *map;
} shard_t;

struct mc_master {
    mc_master_config_t cfg;
    shard_t shards[MC_MASTER_SHARDS];

    pthread_rwlock_t seg_lock;
    mseg_t **segs;
    size_t nsegs, segs_cap;

    pthread_mutex_t client_mu;
    mc_map_t *clients; /* uuid text -> mclient_t */

    pthread_mutex_t parked_mu;
    parked_t *parked;

    _Atomic uint64_t allocated, capacity, key_count, soft_pin_count;
    _Atomic uint64_t evicted_keys, evicted_bytes, discard_cnt, release_cnt;
    _Atomic uint64_t next_replica_id;
    _Atomic int need_evict;
    _Atomic uint64_t last_zombie_scan_ms;
    _Atomic uint64_t evict_epoch; /* bumped by every pass that evicted */
    pthread_mutex_t evict_mu;     /* one eviction pass at a time */
};

void mc_master_config_default(mc_master_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->default_kv_lease_ttl_ms = 10000;
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

/* ---- small helpers ---- */

static int uuid_eq(mc_uuid_t a, mc_uuid_t b)
{
    return a.hi == b.hi && a.lo == b.lo;
}

static void uuid_text(mc_uuid_t u, char buf[48])
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

static shard_t *shard_of(mc_master_t *m, const char *key)
{
    /* High bits: the shard's own map indexes its slots by the low bits of the
     * same XXH3 hash, so taking the low bits here would pile every key of a
     * shard into 1/1024 of its slots. */
    return &m->shards[(XXH3_64bits(key, strlen(key)) >> 40) % MC_MASTER_SHARDS];
}

static int key_check(const char *key)
{
    if (!key || !key[0]) return MC_ERR_INVALID_PARAMS;
    if (strnlen(key, MC_MASTER_KEY_MAX + 1) > MC_MASTER_KEY_MAX) return MC_ERR_INVALID_PARAMS;
    return 0;
}

static int lease_active(const mobj_t *o, uint64_t now)
{
    return o->lease_ms > now;
}

static int has_status(const mobj_t *o, int status)
{
    for (size_t i = 0; i < o->nrep; i++)
        if (o->rep[i].status == status) return 1;
    return 0;
}

static int all_complete(const mobj_t *o)
{
    return o->nrep > 0 && !has_status(o, MC_REPLICA_PROCESSING);
}

/* Soft pin still protecting o (in progress counts as pinned). */
static int soft_pinned_now(const mobj_t *o, uint64_t now)
{
    if (!o->soft_pin) return 0;
    return o->soft_pin_deadline_ms == 0 || now < o->soft_pin_deadline_ms;
}

/* Returns a replica's range to its segment. Caller holds the object's shard
 * lock (which keeps r->seg alive). */
static void rep_release(mc_master_t *m, mrep_t *r)
{
    mseg_t *s = r->seg;
    pthread_mutex_lock(&s->mu);
    uint64_t sz = mc_alloc_blk_size(r->blk);
    mc_alloc_put(s->alloc, r->blk);
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_sub(&s->used, sz);
    atomic_fetch_sub(&m->allocated, sz);
    r->blk = NULL;
}

static void rep_fill(const mobj_t *o, const mrep_t *r, mc_replica_t *out)
{
    memset(out, 0, sizeof *out);
    out->id = r->id;
    out->addr = r->addr;
    out->size = o->size;
    snprintf(out->endpoint, sizeof out->endpoint, "%s", r->seg->info.te_endpoint);
    out->status = r->status;
}

static void obj_set_soft_pin(mc_master_t *m, mobj_t *o, int on)
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
static void obj_erase_locked(mc_master_t *m, shard_t *sh, const char *key, mobj_t *o)
{
    for (size_t i = 0; i < o->nrep; i++)
        rep_release(m, &o->rep[i]);
    mc_map_del(sh->map, key);
    obj_set_soft_pin(m, o, 0);
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
    m->next_replica_id = 1;
    *out = m;
    return 0;
fail:
    while (i-- > 0) {
        mc_map_free(m->shards[i].map, NULL);
        pthread_mutex_destroy(&m->shards[i].mu);
    }
    free(m);
    return MC_ERR_INTERNAL;
}

static void seg_free(mseg_t *s)
{
    mc_alloc_destroy(s->alloc);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void mc_master_free(mc_master_t *m)
{
    if (!m) return;
    /* Allocators are destroyed wholesale, so replicas need not be returned. */
    for (size_t i = 0; i < MC_MASTER_SHARDS; i++) {
        mc_map_free(m->shards[i].map, free);
        pthread_mutex_destroy(&m->shards[i].mu);
    }
    for (size_t i = 0; i < m->nsegs; i++)
        seg_free(m->segs[i]);
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
    free(m);
}

/* ---- clients ---- */

/* Extends the client's deadline (creating it); sets alive when mark_alive.
 * Returns the alive flag, or MC_ERR_INTERNAL. */
static int client_touch(mc_master_t *m, mc_uuid_t client, uint64_t now, int mark_alive)
{
    char id[48];
    uuid_text(client, id);
    int rc;
    pthread_mutex_lock(&m->client_mu);
    mclient_t *c = mc_map_get(m->clients, id);
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c || mc_map_put(m->clients, id, c, NULL) != 0) {
            free(c);
            rc = MC_ERR_INTERNAL;
            goto out;
        }
    }
    c->id = client;
    c->deadline_ms = now + m->cfg.client_ttl_ms;
    if (mark_alive) c->alive = 1;
    rc = c->alive;
out:
    pthread_mutex_unlock(&m->client_mu);
    return rc;
}

int mc_master_ping(mc_master_t *m, mc_uuid_t client, uint64_t now_ms, int *status)
{
    int rc = client_touch(m, client, now_ms, 0);
    if (rc < 0) return rc;
    *status = rc ? MC_CLIENT_OK : MC_CLIENT_NEED_REMOUNT;
    return 0;
}

/* ---- segments ---- */

static mseg_t *seg_find_locked(mc_master_t *m, mc_uuid_t id, size_t *idx)
{
    for (size_t i = 0; i < m->nsegs; i++)
        if (uuid_eq(m->segs[i]->info.id, id)) {
            if (idx) *idx = i;
            return m->segs[i];
        }
    return NULL;
}

/* Mounts one segment without touching the client table. */
static int seg_mount(mc_master_t *m, const mc_segment_t *seg, mc_uuid_t client)
{
    if (!seg || seg->size == 0 || seg->base + seg->size < seg->base) return MC_ERR_INVALID_PARAMS;
    if (strnlen(seg->name, MC_NAME_MAX) == 0 || strnlen(seg->name, MC_NAME_MAX) == MC_NAME_MAX ||
        strnlen(seg->te_endpoint, MC_NAME_MAX) == MC_NAME_MAX ||
        strnlen(seg->protocol, sizeof seg->protocol) == sizeof seg->protocol ||
        strnlen(seg->host_id, sizeof seg->host_id) == sizeof seg->host_id)
        return MC_ERR_INVALID_PARAMS;
    mseg_t *s = calloc(1, sizeof *s);
    if (!s) return MC_ERR_INTERNAL;
    int rc = mc_alloc_new(seg->base, seg->size, &s->alloc);
    if (rc) {
        free(s);
        return rc;
    }
    s->info = *seg;
    if (!s->info.te_endpoint[0]) memcpy(s->info.te_endpoint, s->info.name, MC_NAME_MAX);
    s->client = client;
    s->capacity = mc_alloc_capacity(s->alloc);
    pthread_mutex_init(&s->mu, NULL);

    pthread_rwlock_wrlock(&m->seg_lock);
    if (seg_find_locked(m, seg->id, NULL)) { /* same id again: success */
        rc = 0;
        goto drop;
    }
    for (size_t i = 0; i < m->nsegs; i++) {
        const mseg_t *o = m->segs[i];
        if (uuid_eq(o->client, client) && seg->base < o->info.base + o->info.size &&
            o->info.base < seg->base + seg->size) {
            rc = MC_ERR_INVALID_PARAMS;
            goto drop;
        }
    }
    if (m->nsegs == m->segs_cap) {
        size_t nc = m->segs_cap ? m->segs_cap * 2 : 16;
        mseg_t **ns = realloc(m->segs, nc * sizeof *ns);
        if (!ns) {
            rc = MC_ERR_INTERNAL;
            goto drop;
        }
        m->segs = ns;
        m->segs_cap = nc;
    }
    m->segs[m->nsegs++] = s;
    atomic_fetch_add(&m->capacity, s->capacity);
    pthread_rwlock_unlock(&m->seg_lock);
    return 0;
drop:
    pthread_rwlock_unlock(&m->seg_lock);
    seg_free(s);
    return rc;
}

int mc_master_mount_segment(mc_master_t *m, const mc_segment_t *seg, mc_uuid_t client,
                            uint64_t now_ms)
{
    int rc = seg_mount(m, seg, client);
    if (rc) return rc;
    rc = client_touch(m, client, now_ms, 0);
    return rc < 0 ? rc : 0;
}

int mc_master_remount_segments(mc_master_t *m, const mc_segment_t *segs, size_t n, mc_uuid_t client,
                               uint64_t now_ms)
{
    for (size_t i = 0; i < n; i++) {
        int rc = seg_mount(m, &segs[i], client);
        if (rc) return rc;
    }
    int rc = client_touch(m, client, now_ms, 1);
    return rc < 0 ? rc : 0;
}

typedef struct {
    mseg_t *s;
    char **gone;
    size_t n, cap;
    int oom;
} purge_ctx_t;

/* mc_map_each visitor: drops o's replicas on c->s (their space dies with the
 * allocator) and notes keys left without a replica. */
static int purge_visit(const char *key, void *val, void *arg)
{
    purge_ctx_t *c = arg;
    mobj_t *o = val;
    size_t j = 0;
    for (size_t i = 0; i < o->nrep; i++)
        if (o->rep[i].seg != c->s) o->rep[j++] = o->rep[i];
    o->nrep = j;
    if (j == 0) {
        if (c->n == c->cap) {
            size_t nc = c->cap ? c->cap * 2 : 16;
            char **ng = realloc(c->gone, nc * sizeof *ng);
            if (!ng) {
                c->oom = 1; /* the shard is walked again */
                return 0;
            }
            c->gone = ng;
            c->cap = nc;
        }
        char *k = strdup(key);
        if (k)
            c->gone[c->n++] = k;
        else
            c->oom = 1;
    }
    return 0;
}

/* Drops every reference to s (already out of the table) and frees it. Objects
 * left without a replica are erased. Takes each shard lock, then parked. */
static void seg_purge(mc_master_t *m, mseg_t *s)
{
    for (size_t i = 0; i < MC_MASTER_SHARDS; i++) {
        shard_t *sh = &m->shards[i];
        pthread_mutex_lock(&sh->mu);
        if (mc_map_size(sh->map) == 0) {
            pthread_mutex_unlock(&sh->mu);
            continue;
        }
        for (int pass = 0; pass < 4; pass++) { /* more passes only after an OOM */
            purge_ctx_t c = {s, NULL, 0, 0, 0};
            mc_map_each(sh->map, purge_visit, &c);
            for (size_t k = 0; k < c.n; k++) {
                mobj_t *o = mc_map_del(sh->map, c.gone[k]);
                if (o) {
                    obj_set_soft_pin(m, o, 0);
                    atomic_fetch_sub(&m->key_count, 1);
                    free(o);
                }
                free(c.gone[k]);
            }
            free(c.gone);
            if (!c.oom) break;
        }
        pthread_mutex_unlock(&sh->mu);
    }
    pthread_mutex_lock(&m->parked_mu);
    for (parked_t **pp = &m->parked; *pp;) {
        parked_t *p = *pp;
        if (p->seg == s) {
            *pp = p->next;
            free(p);
        } else {
            pp = &p->next;
        }
    }
    pthread_mutex_unlock(&m->parked_mu);
    atomic_fetch_sub(&m->allocated, atomic_load(&s->used));
    atomic_fetch_sub(&m->capacity, s->capacity);
    seg_free(s);
}

int mc_master_unmount_segment(mc_master_t *m, mc_uuid_t segment, mc_uuid_t client)
{
    size_t idx;
    pthread_rwlock_wrlock(&m->seg_lock);
    mseg_t *s = seg_find_locked(m, segment, &idx);
    if (!s) {
        pthread_rwlock_unlock(&m->seg_lock);
        return 0;
    }
    if (!uuid_eq(s->client, client)) {
        pthread_rwlock_unlock(&m->seg_lock);
        return MC_ERR_INVALID_PARAMS;
    }
    memmove(&m->segs[idx], &m->segs[idx + 1], (m->nsegs - idx - 1) * sizeof *m->segs);
    m->nsegs--;
    pthread_rwlock_unlock(&m->seg_lock);
    seg_purge(m, s);
    return 0;
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
    if (name_used(o, s)) return 0;
    mc_alloc_blk_t *blk;
    uint64_t addr;
    pthread_mutex_lock(&s->mu);
    int rc = mc_alloc_get(s->alloc, o->size, &blk, &addr);
    pthread_mutex_unlock(&s->mu);
    if (rc) return 0;
    uint64_t sz = mc_alloc_blk_size(blk);
    atomic_fetch_add(&s->used, sz);
    atomic_fetch_add(&m->allocated, sz);
    mrep_t *r = &o->rep[o->nrep++];
    r->id = atomic_fetch_add(&m->next_replica_id, 1);
    r->seg = s;
    r->blk = blk;
    r->addr = addr;
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
    uint64_t rel = o->put_start_ms + m->cfg.put_start_release_timeout_ms;
    pthread_mutex_lock(&m->parked_mu);
    for (size_t i = 0; i < o->nrep; i++) {
        parked_t *p = malloc(sizeof *p);
        if (!p) {
            pthread_mutex_unlock(&m->parked_mu);
            rep_release(m, &o->rep[i]);
            pthread_mutex_lock(&m->parked_mu);
            continue;
        }
        p->seg = o->rep[i].seg;
        p->blk = o->rep[i].blk;
        p->release_ms = rel;
        p->next = m->parked;
        m->parked = p;
    }
    pthread_mutex_unlock(&m->parked_mu);
    o->nrep = 0;
    obj_erase_locked(m, sh, key, o);
    atomic_fetch_add(&m->discard_cnt, 1);
}

static int fill_out(const mobj_t *o, int only_complete, mc_replica_t **out, size_t *n)
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

#define EPOCH_NONE UINT64_MAX
static int evict_pass(mc_master_t *m, uint64_t now, int forced, uint64_t seen_epoch);

/* Validates a put/upsert; *soft and *ttl receive the soft pin to apply
 * (-1 = keep, for PRESERVE). */
static int check_put(const char *key, uint64_t size, const mc_replicate_config_t *cfg,
                     const mc_master_config_t *mc, int *soft, uint64_t *ttl)
{
    int rc = key_check(key);
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

/* Usable capacity of the largest mounted segment, 0 when none is mounted. */
static uint64_t largest_segment(mc_master_t *m)
{
    uint64_t best = 0;
    pthread_rwlock_rdlock(&m->seg_lock);
    for (size_t i = 0; i < m->nsegs; i++)
        if (m->segs[i]->capacity > best) best = m->segs[i]->capacity;
    pthread_rwlock_unlock(&m->seg_lock);
    return best;
}

static int start_common(mc_master_t *m, mc_uuid_t client, const char *key, uint64_t size,
                        const mc_replicate_config_t *cfg, uint64_t now, mc_replica_t **out,
                        size_t *n, int upsert)
{
    *out = NULL;
    *n = 0;
    int soft;
    uint64_t ttl;
    int rc = check_put(key, size, cfg, &m->cfg, &soft, &ttl);
    if (rc) return rc;
    /* an object no segment could ever hold is bad input, not a reason to evict */
    uint64_t largest = largest_segment(m);
    if (largest && size > largest) {
        MC_LOGW("master", "put of '%.64s': %llu bytes exceed the largest segment (%llu bytes)",
                key, (unsigned long long)size, (unsigned long long)largest);
        return MC_ERR_INVALID_PARAMS;
    }
    shard_t *sh = shard_of(m, key);
    size_t want =
        cfg->replica_num > MC_MASTER_MAX_REPLICAS ? MC_MASTER_MAX_REPLICAS : cfg->replica_num;
    for (int attempt = 0;; attempt++) {
        uint64_t epoch = atomic_load(&m->evict_epoch);
        pthread_mutex_lock(&sh->mu);
        mobj_t *o = mc_map_get(sh->map, key);
        if (o) {
            int zombie = !has_status(o, MC_REPLICA_COMPLETE) &&
                         now >= o->put_start_ms + m->cfg.put_start_discard_timeout_ms;
            if (zombie) {
                obj_discard_locked(m, sh, key, o);
            } else if (!upsert) {
                pthread_mutex_unlock(&sh->mu);
                return MC_ERR_OBJECT_ALREADY_EXISTS;
            } else if (has_status(o, MC_REPLICA_PROCESSING) || lease_active(o, now)) {
                pthread_mutex_unlock(&sh->mu);
                return MC_ERR_OBJECT_REPLICA_BUSY;
            } else if (o->size == size) { /* update in place */
                for (size_t i = 0; i < o->nrep; i++)
                    o->rep[i].status = MC_REPLICA_PROCESSING;
                o->client = client;
                o->put_start_ms = now;
                if (soft >= 0) {
                    obj_set_soft_pin(m, o, soft);
                    o->soft_pin_ttl_ms = ttl;
                    o->soft_pin_deadline_ms = 0;
                }
                rc = fill_out(o, 0, out, n);
                pthread_mutex_unlock(&sh->mu);
                return rc;
            } else {
                obj_erase_locked(m, sh, key, o);
            }
        }
        o = calloc(1, sizeof *o + want * sizeof o->rep[0]);
        if (!o) {
            pthread_mutex_unlock(&sh->mu);
            return MC_ERR_INTERNAL;
        }
        o->client = client;
        o->size = size;
        o->put_start_ms = now;
        o->hard_pin = !!cfg->with_hard_pin;
        o->soft_pin_ttl_ms = ttl;
        alloc_replicas(m, o, want, cfg);
        if (o->nrep == 0) {
            free(o);
            pthread_mutex_unlock(&sh->mu);
            if (attempt == 0 && evict_pass(m, now, 1, epoch) > 0) continue;
            if (m->cfg.eviction_ratio > 0) atomic_store(&m->need_evict, 1);
            return MC_ERR_NO_AVAILABLE_HANDLE;
        }
        if (mc_map_put(sh->map, key, o, NULL) != 0) {
            for (size_t i = 0; i < o->nrep; i++)
                rep_release(m, &o->rep[i]);
            free(o);
            pthread_mutex_unlock(&sh->mu);
            return MC_ERR_INTERNAL;
        }
        atomic_fetch_add(&m->key_count, 1);
        if (soft > 0) obj_set_soft_pin(m, o, 1);
        rc = fill_out(o, 0, out, n);
        pthread_mutex_unlock(&sh->mu);
        return rc;
    }
}

int mc_master_put_start(mc_master_t *m, mc_uuid_t client, const char *key, uint64_t size,
                        const mc_replicate_config_t *cfg, uint64_t now_ms, mc_replica_t **out,
                        size_t *n)
{
    return start_common(m, client, key, size, cfg, now_ms, out, n, 0);
}

int mc_master_upsert_start(mc_master_t *m, mc_uuid_t client, const char *key, uint64_t size,
                           const mc_replicate_config_t *cfg, uint64_t now_ms, mc_replica_t **out,
                           size_t *n)
{
    return start_common(m, client, key, size, cfg, now_ms, out, n, 1);
}

int mc_master_put_end(mc_master_t *m, mc_uuid_t client, const char *key, uint64_t now_ms)
{
    if (key_check(key)) return MC_ERR_INVALID_WRITE;
    shard_t *sh = shard_of(m, key);
    int rc = 0;
    pthread_mutex_lock(&sh->mu);
    mobj_t *o = mc_map_get(sh->map, key);
    if (!o) {
        rc = MC_ERR_INVALID_WRITE;
    } else if (!uuid_eq(o->client, client)) {
        rc = MC_ERR_ILLEGAL_CLIENT;
    } else if (has_status(o, MC_REPLICA_PROCESSING)) {
        for (size_t i = 0; i < o->nrep; i++)
            o->rep[i].status = MC_REPLICA_COMPLETE;
        o->lease_ms = now_ms;
        if (o->soft_pin && o->soft_pin_deadline_ms == 0)
            o->soft_pin_deadline_ms = now_ms + o->soft_pin_ttl_ms;
    }
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

int mc_master_put_revoke(mc_master_t *m, mc_uuid_t client, const char *key)
{
    if (key_check(key)) return MC_ERR_INVALID_WRITE;
    shard_t *sh = shard_of(m, key);
    int rc = 0;
    pthread_mutex_lock(&sh->mu);
    mobj_t *o = mc_map_get(sh->map, key);
    if (!o || !has_status(o, MC_REPLICA_PROCESSING)) {
        rc = o && !uuid_eq(o->client, client) ? MC_ERR_ILLEGAL_CLIENT : MC_ERR_INVALID_WRITE;
    } else if (!uuid_eq(o->client, client)) {
        rc = MC_ERR_ILLEGAL_CLIENT;
    } else {
        size_t j = 0;
        for (size_t i = 0; i < o->nrep; i++) {
            if (o->rep[i].status == MC_REPLICA_PROCESSING)
                rep_release(m, &o->rep[i]);
            else
                o->rep[j++] = o->rep[i];
        }
        o->nrep = j;
        if (j == 0) obj_erase_locked(m, sh, key, o);
    }
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

/* ---- reads ---- */

static void grant_lease(mc_master_t *m, mobj_t *o, uint64_t now)
{
    uint64_t t = now + m->cfg.default_kv_lease_ttl_ms;
    if (t > o->lease_ms) o->lease_ms = t;
}

int mc_master_get_replicas(mc_master_t *m, const char *key, uint64_t now_ms, mc_replica_t **out,
                           size_t *n, uint64_t *lease_ttl_ms)
{
    *out = NULL;
    *n = 0;
    if (key_check(key)) return MC_ERR_OBJECT_NOT_FOUND;
    shard_t *sh = shard_of(m, key);
    int rc;
    pthread_mutex_lock(&sh->mu);
    mobj_t *o = mc_map_get(sh->map, key);
    if (!o) {
        rc = MC_ERR_OBJECT_NOT_FOUND;
    } else if (!has_status(o, MC_REPLICA_COMPLETE)) {
        rc = has_status(o, MC_REPLICA_PROCESSING) ? MC_ERR_REPLICA_IS_NOT_READY
                                                  : MC_ERR_OBJECT_NOT_FOUND;
    } else {
        rc = fill_out(o, 1, out, n);
        if (rc == 0) {
            grant_lease(m, o, now_ms);
            if (lease_ttl_ms) *lease_ttl_ms = m->cfg.default_kv_lease_ttl_ms;
        }
    }
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

int mc_master_exist(mc_master_t *m, const char *key, uint64_t now_ms)
{
    if (key_check(key)) return 0;
    shard_t *sh = shard_of(m, key);
    int rc = 0;
    pthread_mutex_lock(&sh->mu);
    mobj_t *o = mc_map_get(sh->map, key);
    if (o && has_status(o, MC_REPLICA_COMPLETE)) {
        grant_lease(m, o, now_ms);
        rc = 1;
    }
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

/* ---- removal ---- */

int mc_master_remove(mc_master_t *m, const char *key, int force, uint64_t now_ms)
{
    if (key_check(key)) return MC_ERR_OBJECT_NOT_FOUND;
    shard_t *sh = shard_of(m, key);
    int rc = 0;
    pthread_mutex_lock(&sh->mu);
    mobj_t *o = mc_map_get(sh->map, key);
    if (!o)
        rc = MC_ERR_OBJECT_NOT_FOUND;
    else if (!force && lease_active(o, now_ms))
        rc = MC_ERR_OBJECT_HAS_LEASE;
    else if (!all_complete(o))
        rc = MC_ERR_REPLICA_IS_NOT_READY;
    else
        obj_erase_locked(m, sh, key, o);
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

typedef struct {
    const regex_t *re; /* NULL: every key */
    int force;
    uint64_t now;
    char **keys;
    size_t n, cap;
    int oom;
} rm_ctx_t;

static int push_key(char ***keys, size_t *n, size_t *cap, const char *key)
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

static int rm_visit(const char *key, void *val, void *arg)
{
    rm_ctx_t *c = arg;
    mobj_t *o = val;
    if ((c->force || !lease_active(o, c->now)) && all_complete(o) &&
        (!c->re || regexec(c->re, key, 0, NULL, 0) == 0)) {
        if (push_key(&c->keys, &c->n, &c->cap, key)) c->oom = 1;
    }
    return 0;
}

static int64_t remove_matching(mc_master_t *m, const regex_t *re, int force, uint64_t now)
{
    int64_t count = 0;
    for (size_t i = 0; i < MC_MASTER_SHARDS; i++) {
        shard_t *sh = &m->shards[i];
        pthread_mutex_lock(&sh->mu);
        rm_ctx_t c = {re, force, now, NULL, 0, 0, 0};
        mc_map_each(sh->map, rm_visit, &c);
        for (size_t k = 0; k < c.n; k++) {
            mobj_t *o = mc_map_get(sh->map, c.keys[k]);
            if (o) {
                obj_erase_locked(m, sh, c.keys[k], o);
                count++;
            }
            free(c.keys[k]);
        }
        free(c.keys);
        pthread_mutex_unlock(&sh->mu);
    }
    return count;
}

int64_t mc_master_remove_all(mc_master_t *m, int force, uint64_t now_ms)
{
    return remove_matching(m, NULL, force, now_ms);
}

int64_t mc_master_remove_by_regex(mc_master_t *m, const char *regex, int force, uint64_t now_ms)
{
    regex_t re;
    if (!regex || regcomp(&re, regex, REG_EXTENDED | REG_NOSUB) != 0) return MC_ERR_INVALID_PARAMS;
    int64_t n = remove_matching(m, &re, force, now_ms);
    regfree(&re);
    return n;
}

typedef struct {
    mc_master_t *m;
    const regex_t *re;
    uint64_t now;
    void (*fn)(const char *, const mc_replica_t *, size_t, void *);
    void *arg;
} rx_ctx_t;

static int rx_visit(const char *key, void *val, void *arg)
{
    rx_ctx_t *c = arg;
    mobj_t *o = val;
    if (!has_status(o, MC_REPLICA_COMPLETE) || regexec(c->re, key, 0, NULL, 0) != 0) return 0;
    mc_replica_t *r;
    size_t n;
    if (fill_out(o, 1, &r, &n)) return 0;
    grant_lease(c->m, o, c->now);
    c->fn(key, r, n, c->arg);
    free(r);
    return 0;
}

int mc_master_get_replicas_by_regex(mc_master_t *m, const char *regex, uint64_t now_ms,
                                    void (*fn)(const char *key, const mc_replica_t *r, size_t n,
                                               void *arg),
                                    void *arg)
{
    regex_t re;
    if (!regex || !fn || regcomp(&re, regex, REG_EXTENDED | REG_NOSUB) != 0)
        return MC_ERR_INVALID_PARAMS;
    rx_ctx_t c = {m, &re, now_ms, fn, arg};
    for (size_t i = 0; i < MC_MASTER_SHARDS; i++) {
        shard_t *sh = &m->shards[i];
        pthread_mutex_lock(&sh->mu);
        mc_map_each(sh->map, rx_visit, &c);
        pthread_mutex_unlock(&sh->mu);
    }
    regfree(&re);
    return 0;
}

/* ---- eviction ---- */

static int evictable(const mobj_t *o, uint64_t now)
{
    return !o->hard_pin && !lease_active(o, now) && all_complete(o);
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
    int r = soft_pinned_now(o, c->now) ? push_u64(&c->b, &c->nb, &c->capb, o->lease_ms)
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
    if (c->budget == 0 || !evictable(o, c->now) || soft_pinned_now(o, c->now) != c->soft) return 0;
    if (o->lease_ms > c->thr) return 0;
    if (o->lease_ms == c->thr) {
        if (c->ties == 0) return 0;
        c->ties--;
    }
    if (push_key(&c->keys, &c->n, &c->cap, key) == 0) c->budget--;
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
                obj_erase_locked(m, sh, c.keys[j], o);
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
static int evict_pass(mc_master_t *m, uint64_t now, int forced, uint64_t seen_epoch)
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
    if (seen_epoch != EPOCH_NONE && atomic_load(&m->evict_epoch) != seen_epoch) {
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

/* ---- background ---- */

typedef struct {
    char *key;
    mc_uuid_t id;
} exp_item_t;

typedef struct {
    uint64_t now;
    exp_item_t *v;
    size_t n, cap;
} exp_ctx_t;

static int exp_visit(const char *key, void *val, void *arg)
{
    exp_ctx_t *c = arg;
    const mclient_t *cl = val;
    if (cl->deadline_ms > c->now) return 0;
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 16;
        exp_item_t *nv = realloc(c->v, nc * sizeof *nv);
        if (!nv) return 0; /* retried at the next tick */
        c->v = nv;
        c->cap = nc;
    }
    char *k = strdup(key);
    if (!k) return 0;
    c->v[c->n].key = k;
    c->v[c->n++].id = cl->id;
    return 0;
}

/* Forgets clients whose heartbeat deadline passed and unmounts their
 * segments. Takes the client mutex, then (alone) the segment table. */
static void expire_clients(mc_master_t *m, uint64_t now)
{
    exp_ctx_t c = {now, NULL, 0, 0};
    pthread_mutex_lock(&m->client_mu);
    mc_map_each(m->clients, exp_visit, &c);
    for (size_t i = 0; i < c.n; i++)
        free(mc_map_del(m->clients, c.v[i].key));
    pthread_mutex_unlock(&m->client_mu);
    for (size_t i = 0; i < c.n; i++) {
        free(c.v[i].key);
        for (;;) { /* unmount the client's segments one at a time */
            mseg_t *s = NULL;
            pthread_rwlock_wrlock(&m->seg_lock);
            for (size_t j = 0; j < m->nsegs; j++)
                if (uuid_eq(m->segs[j]->client, c.v[i].id)) {
                    s = m->segs[j];
                    memmove(&m->segs[j], &m->segs[j + 1], (m->nsegs - j - 1) * sizeof *m->segs);
                    m->nsegs--;
                    break;
                }
            pthread_rwlock_unlock(&m->seg_lock);
            if (!s) break;
            seg_purge(m, s);
        }
    }
    free(c.v);
}

static void release_parked(mc_master_t *m, uint64_t now)
{
    pthread_mutex_lock(&m->parked_mu);
    for (parked_t **pp = &m->parked; *pp;) {
        parked_t *p = *pp;
        if (p->release_ms > now) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        pthread_mutex_lock(&p->seg->mu);
        uint64_t sz = mc_alloc_blk_size(p->blk);
        mc_alloc_put(p->seg->alloc, p->blk);
        pthread_mutex_unlock(&p->seg->mu);
        atomic_fetch_sub(&p->seg->used, sz);
        atomic_fetch_sub(&m->allocated, sz);
        atomic_fetch_add(&m->release_cnt, 1);
        free(p);
    }
    pthread_mutex_unlock(&m->parked_mu);
}

typedef struct {
    mc_master_t *m;
    uint64_t now;
    char **keys;
    size_t n, cap;
} zmb_ctx_t;

/* Drops PROCESSING replicas older than the release timeout; notes objects
 * left empty. */
static int zombie_visit(const char *key, void *val, void *arg)
{
    zmb_ctx_t *c = arg;
    mobj_t *o = val;
    if (!has_status(o, MC_REPLICA_PROCESSING) ||
        c->now < o->put_start_ms + c->m->cfg.put_start_release_timeout_ms)
        return 0;
    size_t j = 0;
    for (size_t i = 0; i < o->nrep; i++) {
        if (o->rep[i].status == MC_REPLICA_PROCESSING)
            rep_release(c->m, &o->rep[i]);
        else
            o->rep[j++] = o->rep[i];
    }
    o->nrep = j;
    atomic_fetch_add(&c->m->release_cnt, 1);
    if (j == 0) push_key(&c->keys, &c->n, &c->cap, key);
    return 0;
}

static void discard_zombies(mc_master_t *m, uint64_t now)
{
    for (size_t i = 0; i < MC_MASTER_SHARDS; i++) {
        shard_t *sh = &m->shards[i];
        pthread_mutex_lock(&sh->mu);
        zmb_ctx_t c = {m, now, NULL, 0, 0};
        mc_map_each(sh->map, zombie_visit, &c);
        for (size_t k = 0; k < c.n; k++) {
            mobj_t *o = mc_map_get(sh->map, c.keys[k]);
            if (o && o->nrep == 0) obj_erase_locked(m, sh, c.keys[k], o);
            free(c.keys[k]);
        }
        free(c.keys);
        pthread_mutex_unlock(&sh->mu);
    }
}

void mc_master_tick(mc_master_t *m, uint64_t now_ms)
{
    expire_clients(m, now_ms);
    int forced = atomic_exchange(&m->need_evict, 0);
    evict_pass(m, now_ms, forced, EPOCH_NONE);
    release_parked(m, now_ms);
    uint64_t last = atomic_load(&m->last_zombie_scan_ms);
    /* The zombie scan walks every object (about 40 ms per million keys), so it
     * runs every tenth of the release timeout, within [1 s, 60 s]. */
    uint64_t every = m->cfg.put_start_release_timeout_ms / 10;
    every = every < 1000 ? 1000 : every > 60000 ? 60000 : every;
    if (now_ms >= last + every || now_ms < last) {
        atomic_store(&m->last_zombie_scan_ms, now_ms);
        discard_zombies(m, now_ms);
    }
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
        fn(&info, arg);
    }
    pthread_rwlock_unlock(&m->seg_lock);
}
