/* master_liveness.c: clients (heartbeats, expiry) and segments (mount,
 * remount, unmount, purge) of the master core. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base_log.h"
#include "master_int.h"

#define TAG "master"

/* ---- clients ---- */

/* Extends the client's deadline (creating it); sets alive when mark_alive.
 * Returns the alive flag, or MC_ERR_INTERNAL. */
static int client_touch(mc_master_t *m, mc_uuid_t client, uint64_t now, int mark_alive)
{
    char id[48];
    mc__master_uuid_text(client, id);
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

static int extend_visit(const char *key, void *val, void *arg)
{
    (void)key;
    ((mclient_t *)val)->deadline_ms += *(const uint64_t *)arg;
    return 0;
}

void mc__master_extend_deadlines_locked(mc_master_t *m, uint64_t gap_ms)
{
    mc_map_each(m->clients, extend_visit, &gap_ms);
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
        if (mc__uuid_eq(m->segs[i]->info.id, id)) {
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
    /* Two segments overlap when they share an address range in one process:
     * the same owner, or the same TE endpoint (whoever claims it), since
     * replicas in both would hand out the same bytes to different keys. */
    for (size_t i = 0; i < m->nsegs; i++) {
        const mseg_t *o = m->segs[i];
        if (seg->base >= o->info.base + o->info.size || o->info.base >= seg->base + seg->size)
            continue;
        int same_owner = mc__uuid_eq(o->client, client);
        if (!same_owner && strcmp(o->info.te_endpoint, s->info.te_endpoint) != 0) continue;
        char a[48], b[48];
        mc__master_uuid_text(client, a);
        mc__master_uuid_text(o->client, b);
        MC_LOGW(TAG,
                "mount of segment '%s' by client %s refused: [0x%llx, +%llu) at endpoint %s "
                "overlaps segment '%s' of %s client %s",
                s->info.name, a, (unsigned long long)seg->base, (unsigned long long)seg->size,
                s->info.te_endpoint, o->info.name, same_owner ? "the same" : "another", b);
        rc = MC_ERR_INVALID_PARAMS;
        goto drop;
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
    /* Ranges of objects restored from the log are claimed before anything
     * else can be allocated in the segment. */
    mc__restore_claim_locked(m, s);
    m->segs[m->nsegs++] = s;
    atomic_fetch_add(&m->capacity, s->capacity);
    pthread_rwlock_unlock(&m->seg_lock);
    return 0;
drop:
    pthread_rwlock_unlock(&m->seg_lock);
    mc__master_seg_free(s);
    return rc;
}

/* seg_mount under restore_mu, then the restored objects it completed become visible. */
static int seg_mount_restoring(mc_master_t *m, const mc_segment_t *seg, mc_uuid_t client,
                               uint64_t now)
{
    pthread_mutex_lock(&m->restore_mu);
    int rc = seg_mount(m, seg, client);
    if (rc == 0 && m->restore) mc__restore_settle_locked(m, now);
    pthread_mutex_unlock(&m->restore_mu);
    return rc;
}

int mc_master_mount_segment(mc_master_t *m, const mc_segment_t *seg, mc_uuid_t client,
                            uint64_t now_ms)
{
    int rc = seg_mount_restoring(m, seg, client, now_ms);
    if (rc) return rc;
    rc = client_touch(m, client, now_ms, 0);
    return rc < 0 ? rc : 0;
}

int mc_master_remount_segments(mc_master_t *m, const mc_segment_t *segs, size_t n, mc_uuid_t client,
                               uint64_t now_ms)
{
    for (size_t i = 0; i < n; i++) {
        int rc = seg_mount_restoring(m, &segs[i], client, now_ms);
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
void mc__master_seg_purge(mc_master_t *m, mseg_t *s, const char *why)
{
    uint64_t lost = 0;
    mc__restore_seg_gone(m, s);
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
                    if (o->moving) mc__move_obj_gone_locked(m, o);
                    mc__master_set_soft_pin(m, o, 0);
                    atomic_fetch_sub(&m->key_count, 1);
                    free(o);
                    lost++;
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
    mc__move_seg_gone(m, s); /* task targets allocated in s */
    mc__hold_seg_gone(m, s);
    uint64_t used = atomic_load(&s->used);
    atomic_fetch_sub(&m->allocated, used);
    atomic_fetch_sub(&m->capacity, s->capacity);
    atomic_fetch_add(&m->unmounted_segments, 1);
    atomic_fetch_add(&m->purged_objects, lost);
    MC_LOGI(TAG,
            "segment '%s' (endpoint %s, %llu bytes, %llu in use) unmounted: %s; %llu objects "
            "left without a replica purged",
            s->info.name, s->info.te_endpoint, (unsigned long long)s->capacity,
            (unsigned long long)used, why, (unsigned long long)lost);
    mc__master_seg_free(s);
}

mseg_t *mc__master_seg_detach_locked(mc_master_t *m, size_t idx)
{
    mseg_t *s = m->segs[idx];
    memmove(&m->segs[idx], &m->segs[idx + 1], (m->nsegs - idx - 1) * sizeof *m->segs);
    m->nsegs--;
    s->gone = 1;
    /* Under the table's write lock: a remount of the same id (after an
     * expiry) and the puts placed in it are logged after this. */
    mc__journal_unmount_locked(m, s->info.id);
    return s;
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
    if (!mc__uuid_eq(s->client, client)) {
        pthread_rwlock_unlock(&m->seg_lock);
        return MC_ERR_INVALID_PARAMS;
    }
    mc__master_seg_detach_locked(m, idx);
    pthread_rwlock_unlock(&m->seg_lock);
    mc__master_seg_purge(m, s, "unmount requested by its owner");
    return 0;
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
    uint64_t late_ms; /* of the first expired client, for the log line */
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

/* 1 while the RPC loop has not turned for a second: no heartbeat could have
 * been served, so nobody is expired (logged once per stall). Tick thread. */
static int loop_stalled(mc_master_t *m, uint64_t now)
{
    uint64_t alive = atomic_load(&m->loop_alive_ms);
    if (!alive || now < alive + 1000) {
        m->loop_stall_logged = 0;
        return 0;
    }
    if (!m->loop_stall_logged)
        MC_LOGW(TAG, "the RPC loop has not run for %llu ms: expiring no client until it does",
                (unsigned long long)(now - alive));
    m->loop_stall_logged = 1;
    return 1;
}

void mc__master_stalled(mc_master_t *m, uint64_t start_ms, uint64_t end_ms, const char *who)
{
    pthread_mutex_lock(&m->client_mu);
    uint64_t from = start_ms > m->stall_covered_ms ? start_ms : m->stall_covered_ms;
    uint64_t gap = end_ms > from ? end_ms - from : 0;
    if (gap) {
        m->stall_covered_ms = end_ms;
        mc__master_extend_deadlines_locked(m, gap);
    }
    size_t n = mc_map_size(m->clients);
    pthread_mutex_unlock(&m->client_mu);
    mc__disk_extend_holds(m, gap); /* no offload could land meanwhile either */
    if (gap)
        MC_LOGW(TAG,
                "the %s did not run for %llu ms (process stopped or starved): %zu clients' "
                "deadlines extended by %llu ms, the offload holds too",
                who, (unsigned long long)(end_ms - start_ms), n, (unsigned long long)gap);
}

void mc_master_note_loop(mc_master_t *m, uint64_t now_ms, uint64_t prev_ms, uint64_t oldest_ms)
{
    if (now_ms && prev_ms && now_ms > prev_ms + 1000)
        mc__master_stalled(m, prev_ms, now_ms, "RPC event loop");
    atomic_store(&m->loop_alive_ms, oldest_ms);
}

/* Forgets clients whose heartbeat deadline passed and unmounts their
 * segments. Takes the client mutex, then (alone) the segment table. */
void mc__master_expire_clients(mc_master_t *m, uint64_t now)
{
    if (loop_stalled(m, now)) return;
    exp_ctx_t c = {now, NULL, 0, 0, 0};
    pthread_mutex_lock(&m->client_mu);
    mc_map_each(m->clients, exp_visit, &c);
    for (size_t i = 0; i < c.n; i++) {
        mclient_t *cl = mc_map_del(m->clients, c.v[i].key);
        if (cl) {
            uint64_t last = cl->deadline_ms - m->cfg.client_ttl_ms; /* its last heartbeat */
            MC_LOGI(TAG, "client %s expired: no heartbeat for %llu ms (client_ttl %llu ms)",
                    c.v[i].key, (unsigned long long)(now - last),
                    (unsigned long long)m->cfg.client_ttl_ms);
        }
        free(cl);
    }
    atomic_fetch_add(&m->expired_clients, c.n);
    pthread_mutex_unlock(&m->client_mu);
    for (size_t i = 0; i < c.n; i++) {
        free(c.v[i].key);
        mc__disk_client_gone(m, c.v[i].id);
        for (;;) { /* unmount the client's segments one at a time */
            mseg_t *s = NULL;
            pthread_rwlock_wrlock(&m->seg_lock);
            for (size_t j = 0; j < m->nsegs; j++)
                if (mc__uuid_eq(m->segs[j]->client, c.v[i].id)) {
                    s = mc__master_seg_detach_locked(m, j);
                    break;
                }
            pthread_rwlock_unlock(&m->seg_lock);
            if (!s) break;
            mc_segment_t info = s->info;
            mc__master_seg_purge(m, s, "its client expired");
            if (m->cfg.on_segment_expired)
                m->cfg.on_segment_expired(m->cfg.on_segment_expired_arg, &info);
        }
    }
    free(c.v);
}

static int collect_visit(const char *key, void *val, void *arg)
{
    (void)val;
    exp_ctx_t *c = arg;
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 16;
        exp_item_t *nv = realloc(c->v, nc * sizeof *nv);
        if (!nv) return 1;
        c->v = nv;
        c->cap = nc;
    }
    c->v[c->n].key = strdup(key);
    if (c->v[c->n].key) c->n++;
    return 0;
}

void mc_master_clear(mc_master_t *m, const char *why)
{
    exp_ctx_t c = {0, NULL, 0, 0, 0};
    pthread_mutex_lock(&m->client_mu);
    mc_map_each(m->clients, collect_visit, &c);
    for (size_t i = 0; i < c.n; i++) {
        free(mc_map_del(m->clients, c.v[i].key));
        free(c.v[i].key);
    }
    pthread_mutex_unlock(&m->client_mu);
    free(c.v);
    size_t nseg = 0;
    for (;;) {
        pthread_rwlock_wrlock(&m->seg_lock);
        mseg_t *s = m->nsegs ? m->segs[--m->nsegs] : NULL;
        pthread_rwlock_unlock(&m->seg_lock);
        if (!s) break;
        mc__master_seg_purge(m, s, why);
        nseg++;
    }
    mc__disk_clear(m);
    if (c.n || nseg) MC_LOGI(TAG, "cleared %zu clients and %zu segments: %s", c.n, nseg, why);
}
