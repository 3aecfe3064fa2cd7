/* master_disk.c: the master's side of the SSD tier (see master_disk.h and
 * docs/store.md "SSD tier"). State, under one mutex (taken after a shard
 * lock, never before):
 *   clients  one record per disk, by disk id (the directory's identity,
 *            which survives a client restart): its current client id, the
 *            staging server readers ask, and its work queues (offloads,
 *            drops, promotions);
 *   ents     key -> the object's LOCAL_DISK replica (owner, size, stamp,
 *            read lease, hit count). Served only while the owner is attached;
 *   pend     key -> an offload queued or handed out (owner, stamp).
 * The stamp of an object is its put_start_ms, which an upsert moves forward:
 * a copy the owner reports is accepted only under the stamp the task was
 * handed out with, so a copy of bytes that changed meanwhile never becomes
 * a replica. Removal and upsert drop both the replica and the task, and tell
 * the owner to delete its copy. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base_log.h"
#include "base_map.h"
#include "master_disk.h"
#include "master_int.h"

#define TAG "master"

typedef struct {
    char **v;
    size_t head, n, cap;
} kqueue_t;

typedef struct dclient {
    mc_uuid_t disk;   /* the disk's identity */
    mc_uuid_t client; /* its current client */
    int attached;
    int fresh; /* attached since this master first saw it: no history */
    char name[MC_NAME_MAX];
    char endpoint[MC_NAME_MAX];
    uint64_t quota;
    kqueue_t offloads, drops, promotes;
} dclient_t;

typedef struct {
    dclient_t *owner;
    uint64_t size, stamp, lease_ms;
    uint32_t hits;
    uint8_t promoting;
} dent_t;

typedef struct {
    dclient_t *owner;
    uint64_t queued_ms;
    uint64_t stamp; /* set when handed out; 0 before */
} dpend_t;

struct mdisk {
    pthread_mutex_t mu;
    mc_map_t *ents, *pend;
    dclient_t **cl;
    size_t ncl, capcl;
    int offload_on_evict, promotion_on_hit;
    uint32_t threshold;
    uint64_t lease_ttl_ms;
    uint64_t bytes; /* of attached entries... of all entries (mu) */
    _Atomic uint64_t offloads, promotions, promotions_deferred;
    _Atomic uint64_t hold_expired; /* objects evicted before their disk copy landed */
};

/* ---- small helpers ---- */

static int kq_push(kqueue_t *q, const char *key)
{
    if (q->n >= MC_MASTER_DISK_QUEUE_MAX) return -1;
    if (q->head + q->n == q->cap) {
        if (q->head) {
            memmove(q->v, q->v + q->head, q->n * sizeof *q->v);
            q->head = 0;
        } else {
            size_t nc = q->cap ? q->cap * 2 : 64;
            char **nv = realloc(q->v, nc * sizeof *nv);
            if (!nv) return -1;
            q->v = nv;
            q->cap = nc;
        }
    }
    char *k = strdup(key);
    if (!k) return -1;
    q->v[q->head + q->n++] = k;
    return 0;
}

static char *kq_pop(kqueue_t *q)
{
    if (!q->n) return NULL;
    char *k = q->v[q->head++];
    if (--q->n == 0) q->head = 0;
    return k;
}

static void kq_clear(kqueue_t *q)
{
    for (size_t i = 0; i < q->n; i++)
        free(q->v[q->head + i]);
    q->head = q->n = 0;
}

static void kq_free(kqueue_t *q)
{
    kq_clear(q);
    free(q->v);
    q->v = NULL;
    q->cap = 0;
}

struct mdisk *mc__disk_new(const mc_master_config_t *cfg)
{
    struct mdisk *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->ents = mc_map_new();
    d->pend = mc_map_new();
    if (!d->ents || !d->pend) {
        mc_map_free(d->ents, NULL);
        mc_map_free(d->pend, NULL);
        free(d);
        return NULL;
    }
    pthread_mutex_init(&d->mu, NULL);
    d->offload_on_evict = cfg->offload_on_evict;
    d->promotion_on_hit = cfg->promotion_on_hit;
    d->threshold =
        cfg->promotion_admission_threshold > 0 ? (uint32_t)cfg->promotion_admission_threshold : 1;
    d->lease_ttl_ms = cfg->default_kv_lease_ttl_ms;
    if (cfg->root_fs_dir[0]) /* not upstream's shared directory: a warning */
        MC_LOGW(TAG,
                "--root_fs_dir=%s: upstream's legacy DISK replica is served by the SSD tier: "
                "stores set up without enable_ssd_offload keep their objects under %s/store-N "
                "as LOCAL_DISK replicas (offload %s)",
                cfg->root_fs_dir, cfg->root_fs_dir,
                cfg->offload_on_evict ? "on eviction" : "at put end");
    return d;
}

void mc__disk_free(struct mdisk *d)
{
    if (!d) return;
    mc_map_free(d->ents, free);
    mc_map_free(d->pend, free);
    for (size_t i = 0; i < d->ncl; i++) {
        kq_free(&d->cl[i]->offloads);
        kq_free(&d->cl[i]->drops);
        kq_free(&d->cl[i]->promotes);
        free(d->cl[i]);
    }
    free(d->cl);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

/* The attached disk of client id, or NULL. Caller holds d->mu. */
static dclient_t *by_client_locked(struct mdisk *d, mc_uuid_t id)
{
    for (size_t i = 0; i < d->ncl; i++)
        if (d->cl[i]->attached && mc__uuid_eq(d->cl[i]->client, id)) return d->cl[i];
    return NULL;
}

static dclient_t *by_disk_locked(struct mdisk *d, mc_uuid_t disk)
{
    for (size_t i = 0; i < d->ncl; i++)
        if (mc__uuid_eq(d->cl[i]->disk, disk)) return d->cl[i];
    return NULL;
}

/* The attached disk owning a memory replica of o (the client whose segment
 * holds it), or NULL. Caller holds o's shard lock and d->mu. */
static dclient_t *owner_of_locked(struct mdisk *d, const mobj_t *o)
{
    for (size_t i = 0; i < o->nrep; i++) {
        if (o->rep[i].status != MC_REPLICA_COMPLETE || !o->rep[i].seg) continue;
        dclient_t *c = by_client_locked(d, o->rep[i].seg->client);
        if (c) return c;
    }
    return NULL;
}

static void ent_erase_locked(struct mdisk *d, const char *key, int tell_owner)
{
    dent_t *e = mc_map_del(d->ents, key);
    if (!e) return;
    d->bytes -= e->size;
    if (tell_owner && e->owner->attached) (void)kq_push(&e->owner->drops, key);
    free(e);
}

static int queue_offload_locked(struct mdisk *d, dclient_t *c, const char *key, uint64_t now)
{
    if (mc_map_get(d->pend, key)) return 0;
    dpend_t *p = calloc(1, sizeof *p);
    if (!p) return -1;
    p->owner = c;
    p->queued_ms = now;
    if (mc_map_put(d->pend, key, p, NULL) != 0) {
        free(p);
        return -1;
    }
    if (kq_push(&c->offloads, key) != 0) {
        free(mc_map_del(d->pend, key));
        return -1;
    }
    return 0;
}

/* ---- hooks ---- */

int mc__disk_has_locked(mc_master_t *m, const char *key)
{
    struct mdisk *d = m->disk;
    if (!d) return 0;
    pthread_mutex_lock(&d->mu);
    dent_t *e = mc_map_get(d->ents, key);
    int has = e && e->owner->attached;
    if (e && !has) ent_erase_locked(d, key, 0); /* a new incarnation: the detached copy is stale */
    pthread_mutex_unlock(&d->mu);
    return has;
}

void mc__disk_forget_locked(mc_master_t *m, const char *key)
{
    struct mdisk *d = m->disk;
    if (!d) return;
    pthread_mutex_lock(&d->mu);
    ent_erase_locked(d, key, 1);
    free(mc_map_del(d->pend, key));
    pthread_mutex_unlock(&d->mu);
}

int mc__disk_put_end_locked(mc_master_t *m, const mobj_t *o, uint64_t now)
{
    struct mdisk *d = m->disk;
    if (!d) return 0;
    pthread_mutex_lock(&d->mu);
    dent_t *e = mc_map_get(d->ents, o->key);
    if (e) { /* a promotion completed: the disk copy stays, the count restarts */
        e->promoting = 0;
        e->hits = 0;
    } else if (!d->offload_on_evict) {
        dclient_t *c = owner_of_locked(d, o);
        if (c) (void)queue_offload_locked(d, c, o->key, now);
    }
    pthread_mutex_unlock(&d->mu);
    return e != NULL;
}

int mc__disk_evict_hold_locked(mc_master_t *m, const mobj_t *o, uint64_t now)
{
    struct mdisk *d = m->disk;
    if (!d) return 0;
    int hold = 0;
    pthread_mutex_lock(&d->mu);
    dent_t *e = mc_map_get(d->ents, o->key);
    if (!e || !e->owner->attached) {
        dpend_t *p = mc_map_get(d->pend, o->key);
        if (p) {
            hold = now < p->queued_ms + MC_MASTER_DISK_HOLD_MS;
            /* it goes now: a copy finishing later would be of a range
             * that may hold another object by then */
            if (!hold) {
                uint64_t k = atomic_fetch_add(&d->hold_expired, 1) + 1;
                if ((k & (k - 1)) == 0) /* 1, 2, 4, ...: not a line per object */
                    MC_LOGW(TAG, "'%.128s' evicted before its disk copy landed (offload %s %" PRIu64
                            " ms ago; %" PRIu64 " so far)", o->key,
                            p->stamp ? "handed out" : "queued", now - p->queued_ms, k);
                free(mc_map_del(d->pend, o->key));
            }
        } else if (d->offload_on_evict) {
            dclient_t *c = owner_of_locked(d, o);
            hold = c && queue_offload_locked(d, c, o->key, now) == 0;
        }
    }
    pthread_mutex_unlock(&d->mu);
    return hold;
}

static int extend_visit(const char *key, void *val, void *arg)
{
    (void)key;
    ((dpend_t *)val)->queued_ms += *(const uint64_t *)arg;
    return 0;
}

void mc__disk_extend_holds(mc_master_t *m, uint64_t gap_ms)
{
    struct mdisk *d = m->disk;
    if (!d || !gap_ms) return;
    pthread_mutex_lock(&d->mu);
    mc_map_each(d->pend, extend_visit, &gap_ms);
    pthread_mutex_unlock(&d->mu);
}

static void fill_rep(const dent_t *e, mc_replica_t *r)
{
    memset(r, 0, sizeof *r);
    r->id = 0; /* one disk replica per object */
    r->addr = 0;
    r->size = e->size;
    memcpy(r->endpoint, e->owner->endpoint, sizeof r->endpoint);
    r->status = MC_REPLICA_COMPLETE;
    r->kind = MC_REPLICA_LOCAL_DISK;
}

int mc__disk_append(mc_master_t *m, const char *key, uint64_t now, mc_replica_t **out, size_t *n)
{
    struct mdisk *d = m->disk;
    if (!d) return 0;
    int rc = 0;
    pthread_mutex_lock(&d->mu);
    dent_t *e = mc_map_get(d->ents, key);
    if (e && e->owner->attached) {
        mc_replica_t *v = realloc(*out, (*n + 1) * sizeof *v);
        if (!v) {
            rc = MC_ERR_INTERNAL;
        } else {
            fill_rep(e, &v[*n]);
            *out = v;
            (*n)++;
            uint64_t t = now + d->lease_ttl_ms;
            if (t > e->lease_ms) e->lease_ms = t;
        }
    }
    pthread_mutex_unlock(&d->mu);
    return rc;
}

int mc__disk_get(mc_master_t *m, const char *key, uint64_t now, mc_replica_t **out, size_t *n)
{
    struct mdisk *d = m->disk;
    if (!d) return MC_ERR_OBJECT_NOT_FOUND;
    int rc = MC_ERR_OBJECT_NOT_FOUND;
    pthread_mutex_lock(&d->mu);
    dent_t *e = mc_map_get(d->ents, key);
    if (e && e->owner->attached) {
        mc_replica_t *v = malloc(sizeof *v);
        if (!v) {
            rc = MC_ERR_INTERNAL;
        } else {
            fill_rep(e, v);
            *out = v;
            *n = 1;
            rc = 0;
            uint64_t t = now + d->lease_ttl_ms;
            if (t > e->lease_ms) e->lease_ms = t;
            if (e->hits < UINT32_MAX) e->hits++;
            if (d->promotion_on_hit && !e->promoting && e->hits >= d->threshold &&
                kq_push(&e->owner->promotes, key) == 0)
                e->promoting = 1;
        }
    }
    pthread_mutex_unlock(&d->mu);
    return rc;
}

int mc__disk_exist(mc_master_t *m, const char *key, uint64_t now)
{
    struct mdisk *d = m->disk;
    if (!d) return 0;
    pthread_mutex_lock(&d->mu);
    dent_t *e = mc_map_get(d->ents, key);
    int has = e && e->owner->attached;
    if (has) {
        uint64_t t = now + d->lease_ttl_ms;
        if (t > e->lease_ms) e->lease_ms = t;
    }
    pthread_mutex_unlock(&d->mu);
    return has;
}

int mc__disk_remove(mc_master_t *m, const char *key, int force, uint64_t now, int mem_rc)
{
    struct mdisk *d = m->disk;
    if (!d || (mem_rc != 0 && mem_rc != MC_ERR_OBJECT_NOT_FOUND)) return mem_rc;
    int rc = mem_rc;
    pthread_mutex_lock(&d->mu);
    dent_t *e = mc_map_get(d->ents, key);
    if (e) {
        if (mem_rc == MC_ERR_OBJECT_NOT_FOUND && e->owner->attached && !force &&
            e->lease_ms > now) {
            rc = MC_ERR_OBJECT_HAS_LEASE;
        } else {
            if (mem_rc == MC_ERR_OBJECT_NOT_FOUND && e->owner->attached) rc = 0;
            ent_erase_locked(d, key, 1);
        }
    }
    if (rc == 0) free(mc_map_del(d->pend, key));
    pthread_mutex_unlock(&d->mu);
    return rc;
}

typedef struct {
    uint64_t now;
    int force;
    char **keys;
    size_t n, cap;
} rm_all_t;

static int rm_all_visit(const char *key, void *val, void *arg)
{
    rm_all_t *c = arg;
    const dent_t *e = val;
    if (!e->owner->attached || (!c->force && e->lease_ms > c->now)) return 0;
    (void)mc__master_push_key(&c->keys, &c->n, &c->cap, key);
    return 0;
}

int64_t mc__disk_remove_all(mc_master_t *m, int force, uint64_t now)
{
    struct mdisk *d = m->disk;
    if (!d) return 0;
    rm_all_t c = {now, force, NULL, 0, 0};
    pthread_mutex_lock(&d->mu);
    mc_map_each(d->ents, rm_all_visit, &c);
    for (size_t i = 0; i < c.n; i++) {
        ent_erase_locked(d, c.keys[i], 1);
        free(mc_map_del(d->pend, c.keys[i]));
        free(c.keys[i]);
    }
    pthread_mutex_unlock(&d->mu);
    free(c.keys);
    return (int64_t)c.n;
}

typedef struct {
    struct mdisk *d;
    dclient_t *c;
    char **keys;
    size_t n, cap;
} own_t;

static int pend_of_visit(const char *key, void *val, void *arg)
{
    own_t *o = arg;
    if (((dpend_t *)val)->owner == o->c) (void)mc__master_push_key(&o->keys, &o->n, &o->cap, key);
    return 0;
}

/* c goes away (its client expired or unmounted): not served, no work. */
static void detach_locked(struct mdisk *d, dclient_t *c, const char *why)
{
    if (!c->attached) return;
    c->attached = 0;
    c->fresh = 0;
    kq_clear(&c->offloads);
    kq_clear(&c->drops);
    kq_clear(&c->promotes);
    own_t o = {d, c, NULL, 0, 0};
    mc_map_each(d->pend, pend_of_visit, &o);
    for (size_t i = 0; i < o.n; i++) {
        free(mc_map_del(d->pend, o.keys[i]));
        free(o.keys[i]);
    }
    free(o.keys);
    char id[48];
    mc__master_uuid_text(c->client, id);
    MC_LOGI(TAG, "disk of client %s (%s, staging %s) detached: %s; its objects are not served", id,
            c->name, c->endpoint, why);
}

void mc__disk_client_gone(mc_master_t *m, mc_uuid_t client)
{
    struct mdisk *d = m->disk;
    if (!d) return;
    pthread_mutex_lock(&d->mu);
    dclient_t *c = by_client_locked(d, client);
    if (c) detach_locked(d, c, "its client expired");
    pthread_mutex_unlock(&d->mu);
}

void mc__disk_clear(mc_master_t *m)
{
    struct mdisk *d = m->disk;
    if (!d) return;
    pthread_mutex_lock(&d->mu);
    for (size_t i = 0; i < d->ncl; i++)
        detach_locked(d, d->cl[i], "the master was cleared");
    pthread_mutex_unlock(&d->mu);
}

void mc_master_disk_stats(mc_master_t *m, mc_master_disk_stats_t *st)
{
    memset(st, 0, sizeof *st);
    struct mdisk *d = m->disk;
    if (!d) return;
    pthread_mutex_lock(&d->mu);
    st->keys = mc_map_size(d->ents);
    st->bytes = d->bytes;
    for (size_t i = 0; i < d->ncl; i++)
        st->clients += d->cl[i]->attached;
    pthread_mutex_unlock(&d->mu);
    st->offloads = atomic_load(&d->offloads);
    st->promotions = atomic_load(&d->promotions);
    st->promotions_deferred = atomic_load(&d->promotions_deferred);
}

/* ---- the DISK_* methods ---- */

int mc_master_disk_mount(mc_master_t *m, mc_uuid_t client, mc_uuid_t disk, const char *name,
                         const char *endpoint, uint64_t quota, mc_master_disk_mode_t *mode)
{
    struct mdisk *d = m->disk;
    memset(mode, 0, sizeof *mode);
    if (!d) {
        char cid[48];
        mc__master_uuid_text(client, cid);
        MC_LOGW(TAG,
                "client %s (%s) asked to mount its SSD tier; refused: the master runs without "
                "--enable_offload",
                cid, name);
        return MC_ERR_UNAVAILABLE_IN_CURRENT_MODE;
    }
    if (strlen(name) >= MC_NAME_MAX || strlen(endpoint) >= MC_NAME_MAX || !*endpoint)
        return MC_ERR_INVALID_PARAMS;
    pthread_mutex_lock(&d->mu);
    dclient_t *c = by_disk_locked(d, disk);
    int rc = 0;
    if (!c) {
        if (d->ncl == d->capcl) {
            size_t nc = d->capcl ? d->capcl * 2 : 8;
            dclient_t **nv = realloc(d->cl, nc * sizeof *nv);
            if (!nv) {
                rc = MC_ERR_INTERNAL;
                goto out;
            }
            d->cl = nv;
            d->capcl = nc;
        }
        c = calloc(1, sizeof *c);
        if (!c) {
            rc = MC_ERR_INTERNAL;
            goto out;
        }
        c->disk = disk;
        c->fresh = 1;
        d->cl[d->ncl++] = c;
    } else if (c->attached && !mc__uuid_eq(c->client, client)) {
        detach_locked(d, c, "mounted again by another client");
    }
    c->client = client;
    c->attached = 1;
    c->quota = quota;
    snprintf(c->name, sizeof c->name, "%s", name);
    snprintf(c->endpoint, sizeof c->endpoint, "%s", endpoint);
    char id[48];
    mc__master_uuid_text(client, id);
    MC_LOGI(TAG, "disk of client %s (%s) mounted: staging %s, quota %llu bytes", id, c->name,
            c->endpoint, (unsigned long long)c->quota);
    mode->offload_on_evict = (uint8_t)d->offload_on_evict;
    mode->promotion_on_hit = (uint8_t)d->promotion_on_hit;
    mode->promotion_threshold = d->threshold;
out:
    pthread_mutex_unlock(&d->mu);
    return rc;
}

/* Accepts one copy the owner c reports: a finished offload (rescan 0: only
 * under the task's stamp), or a record its disk held at start (rescan 1:
 * accepted when the master holds the same incarnation, or nothing at all
 * and has no history of this disk; a disk it saw before lost the keys that
 * were removed or overwritten meanwhile). Caller holds key's shard lock and
 * d->mu. */
static int add_one_locked(struct mdisk *d, dclient_t *c, const mobj_t *o, const char *key,
                          uint64_t size, uint64_t stamp, int rescan)
{
    dpend_t *p = mc_map_get(d->pend, key);
    int from_task = 0;
    if (p && p->owner == c) {
        from_task = p->stamp == stamp && !rescan;
        free(mc_map_del(d->pend, key));
    }
    /* a finished offload counts only while the object still holds the range
     * that was copied (its task alive, the same stamp) */
    if (!rescan && (!from_task || !o)) return MC_ERR_REPLICA_IS_GONE;
    if (o && (o->size != size || o->put_start_ms != stamp || !mc__obj_all_complete(o)))
        return MC_ERR_REPLICA_IS_GONE; /* memory holds other bytes */
    dent_t *e = mc_map_get(d->ents, key);
    if (e) {
        if (e->owner != c || e->size != size || e->stamp != stamp) return MC_ERR_REPLICA_IS_GONE;
        return 0; /* known already (an entry kept while the disk was detached) */
    }
    if (rescan && !o && !c->fresh) return MC_ERR_REPLICA_IS_GONE;
    e = calloc(1, sizeof *e);
    if (!e) return MC_ERR_INTERNAL;
    e->owner = c;
    e->size = size;
    e->stamp = stamp;
    if (mc_map_put(d->ents, key, e, NULL) != 0) {
        free(e);
        return MC_ERR_INTERNAL;
    }
    d->bytes += size;
    if (from_task) atomic_fetch_add(&d->offloads, 1);
    return 0;
}

int mc_master_disk_add(mc_master_t *m, mc_uuid_t client, const char *const *keys,
                       const uint64_t *sizes, const uint64_t *stamps, size_t n, int rescan,
                       int32_t *rcs)
{
    struct mdisk *d = m->disk;
    if (!d) return MC_ERR_UNAVAILABLE_IN_CURRENT_MODE;
    for (size_t i = 0; i < n; i++) {
        const char *key = keys[i];
        if (mc__master_key_check(key) || sizes[i] == 0) {
            rcs[i] = MC_ERR_INVALID_PARAMS;
            continue;
        }
        shard_t *sh = mc__master_shard_of(m, key);
        pthread_mutex_lock(&sh->mu);
        const mobj_t *o = mc_map_get(sh->map, key);
        pthread_mutex_lock(&d->mu);
        dclient_t *c = by_client_locked(d, client);
        rcs[i] =
            c ? add_one_locked(d, c, o, key, sizes[i], stamps[i], rescan) : MC_ERR_CLIENT_NOT_FOUND;
        pthread_mutex_unlock(&d->mu);
        pthread_mutex_unlock(&sh->mu);
    }
    return 0;
}

int mc_master_disk_drop(mc_master_t *m, mc_uuid_t client, const char *const *keys, size_t n,
                        uint64_t now, int32_t *rcs)
{
    struct mdisk *d = m->disk;
    if (!d) return MC_ERR_UNAVAILABLE_IN_CURRENT_MODE;
    pthread_mutex_lock(&d->mu);
    dclient_t *c = by_client_locked(d, client);
    for (size_t i = 0; i < n; i++) {
        const char *key = keys[i];
        if (!c) {
            rcs[i] = MC_ERR_CLIENT_NOT_FOUND;
            continue;
        }
        dpend_t *p = mc_map_get(d->pend, key);
        if (p && p->owner == c) free(mc_map_del(d->pend, key)); /* an offload that failed */
        dent_t *e = mc_map_get(d->ents, key);
        if (!e || e->owner != c) {
            rcs[i] = 0; /* not (or no longer) a replica: the owner may delete it */
        } else if (e->lease_ms > now) {
            rcs[i] = MC_ERR_OBJECT_HAS_LEASE; /* a reader may be on its way */
        } else {
            ent_erase_locked(d, key, 0);
            rcs[i] = 0;
        }
    }
    pthread_mutex_unlock(&d->mu);
    return c ? 0 : MC_ERR_CLIENT_NOT_FOUND;
}

void mc_master_disk_tasks_free(mc_master_disk_tasks_t *t)
{
    for (size_t i = 0; i < t->nalloc_ && t->keys; i++)
        free(t->keys[i]);
    for (size_t i = 0; i < t->ndrops; i++)
        free(t->drops[i]);
    for (size_t i = 0; i < t->npromotes; i++)
        free(t->promotes[i]);
    free(t->keys);
    free(t->addrs);
    free(t->sizes);
    free(t->stamps);
    free(t->drops);
    free(t->promotes);
    memset(t, 0, sizeof *t);
}

int mc_master_disk_tasks(mc_master_t *m, mc_uuid_t client, uint32_t max, mc_master_disk_tasks_t *t)
{
    struct mdisk *d = m->disk;
    memset(t, 0, sizeof *t);
    if (!d) return MC_ERR_UNAVAILABLE_IN_CURRENT_MODE;
    if (max == 0 || max > MC_MASTER_DISK_TASKS_MAX) max = MC_MASTER_DISK_TASKS_MAX;
    t->keys = calloc(max, sizeof *t->keys);
    t->addrs = calloc(max, sizeof *t->addrs);
    t->sizes = calloc(max, sizeof *t->sizes);
    t->stamps = calloc(max, sizeof *t->stamps);
    t->drops = calloc(max, sizeof *t->drops);
    t->promotes = calloc(max, sizeof *t->promotes);
    if (!t->keys || !t->addrs || !t->sizes || !t->stamps || !t->drops || !t->promotes)
        return MC_ERR_INTERNAL;
    pthread_mutex_lock(&d->mu);
    dclient_t *c = by_client_locked(d, client);
    if (!c) {
        pthread_mutex_unlock(&d->mu);
        return MC_ERR_CLIENT_NOT_FOUND;
    }
    size_t np = 0;
    char *k;
    while (np < max && (k = kq_pop(&c->offloads)))
        t->keys[np++] = k;
    while (t->ndrops < max && (k = kq_pop(&c->drops)))
        t->drops[t->ndrops++] = k;
    while (t->npromotes < max && (k = kq_pop(&c->promotes)))
        t->promotes[t->npromotes++] = k;
    pthread_mutex_unlock(&d->mu);
    t->nalloc_ = np;
    /* where each object is now, under its shard lock: it may have gone */
    for (size_t i = 0; i < np; i++) {
        const char *key = t->keys[i];
        shard_t *sh = mc__master_shard_of(m, key);
        pthread_mutex_lock(&sh->mu);
        const mobj_t *o = mc_map_get(sh->map, key);
        uint64_t addr = 0;
        int ok = 0;
        if (o && mc__obj_all_complete(o)) {
            for (size_t r = 0; r < o->nrep && !ok; r++) {
                const mrep_t *rp = &o->rep[r];
                if (rp->seg && rp->blk && mc__uuid_eq(rp->seg->client, client)) {
                    addr = mc_alloc_blk_addr(rp->blk);
                    ok = 1;
                }
            }
        }
        pthread_mutex_lock(&d->mu);
        dpend_t *p = mc_map_get(d->pend, key);
        if (ok && p && p->owner == c && c->attached) {
            p->stamp = o->put_start_ms;
            t->addrs[t->n] = addr;
            t->sizes[t->n] = o->size;
            t->stamps[t->n] = o->put_start_ms;
            char *tmp = t->keys[t->n]; /* compact: keys[0..n) are the tasks */
            t->keys[t->n] = t->keys[i];
            t->keys[i] = tmp;
            t->n++;
        } else if (p && p->owner == c) {
            free(mc_map_del(d->pend, key));
        }
        pthread_mutex_unlock(&d->mu);
        pthread_mutex_unlock(&sh->mu);
    }
    return 0;
}

int mc_master_promote_start(mc_master_t *m, mc_uuid_t client, const char *key, uint64_t size,
                            const mc_replicate_config_t *cfg, uint64_t now, mc_replica_t **out,
                            size_t *n)
{
    struct mdisk *d = m->disk;
    *out = NULL;
    *n = 0;
    if (!d) return MC_ERR_UNAVAILABLE_IN_CURRENT_MODE;
    /* Promotion never evicts, and waits while the pool is at or past the
     * high watermark (the next get re-queues it), as upstream gates it: on
     * the pool's use before the copy, so a pool that eviction brought back
     * under the watermark takes promotions. Promoting by eviction churns:
     * each copy pushes out the one promoted before it. */
    uint64_t cap = atomic_load(&m->capacity), used = atomic_load(&m->allocated);
    int rc = (double)used >= m->cfg.eviction_high_watermark_ratio * (double)cap
                 ? MC_ERR_NO_AVAILABLE_HANDLE
                 : mc__master_start(m, client, key, size, cfg, now, out, n, MC__START_PROMOTE);
    if (rc == MC_ERR_NO_AVAILABLE_HANDLE) atomic_fetch_add(&d->promotions_deferred, 1);
    pthread_mutex_lock(&d->mu);
    dent_t *e = mc_map_get(d->ents, key);
    if (e) e->promoting = rc == 0; /* cleared at put end; a failure may be retried */
    pthread_mutex_unlock(&d->mu);
    if (rc == 0) atomic_fetch_add(&d->promotions, 1);
    return rc;
}

void mc_master_disk_config(mc_master_t *m, int *enabled, const char **root_fs_dir)
{
    *enabled = m->disk != NULL;
    *root_fs_dir = m->disk ? m->cfg.root_fs_dir : "";
}

int mc_master_disk_unmount(mc_master_t *m, mc_uuid_t client)
{
    struct mdisk *d = m->disk;
    if (!d) return MC_ERR_UNAVAILABLE_IN_CURRENT_MODE;
    pthread_mutex_lock(&d->mu);
    dclient_t *c = by_client_locked(d, client);
    if (c) detach_locked(d, c, "its client unmounted it");
    pthread_mutex_unlock(&d->mu);
    return 0;
}
