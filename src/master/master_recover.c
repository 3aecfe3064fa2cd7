/* master_recover.c: the core's side of persistence (master_persist.c holds
 * the files): what goes into the log, the table of objects to restore after
 * a restart, their return as their segments remount, and the snapshot's
 * contents.
 *
 * Logging. A completed object is logged whole (PUT: key, size, replicas as
 * segment id + range, pins, the soft pin's wall-clock deadline) by put_end;
 * the erasure of a logged ("durable") object (remove, eviction, remove_all,
 * patterns, upsert's replacement or rewrite, zombie scans) logs REMOVE from
 * mc__master_erase_locked; a segment leaving the table logs UNMOUNT, which
 * stands for every replica on it. Records are appended while the object's
 * shard lock (or the segment table's write lock) is held, so the log has each
 * key's mutations in their order, and a range freed by an erase is in the log
 * before any put can be handed it.
 *
 * Restore. At start the records are applied to a table (key -> entry: the
 * object's last logged state and the ordinal of its record). UNMOUNT records
 * are kept per segment with their ordinal; a replica logged before its
 * segment's last UNMOUNT is dropped. When the log lost records in the middle
 * (a barrier), every entry logged before the loss is dropped, since the lost
 * record may have removed it: the master keeps only what it can prove. Then
 * each entry's replicas are indexed by segment id, in address order.
 * An entry becomes a visible object when every replica is settled: its
 * segment remounted and the range claimed in that segment's allocator
 * (mc_alloc_claim, before the segment enters the table, so no put can be
 * placed over it), or refused (outside the segment, overlapping another
 * claim: one log line each, and the entry is logged again without that
 * replica), or lost (its segment was purged, or did not come back within the
 * grace period, 2 x client_ttl). After the grace period the table is gone;
 * segments that never came back are logged as UNMOUNT. A restored object gets
 * a fresh read lease, so readers that were reading it across the restart are
 * not evicted under.
 *
 * HA replication. A standby applies the leader's record stream (master_repl.c)
 * to a table of its own with the same restore_apply; when it is elected it
 * adopts that table as its restore state (mc_master_restore_adopt): the same
 * claims, checks and grace period as after a restart, and every adopted
 * entry is logged into its own journal, so that a restart of the new leader
 * keeps them. The leader's side of a stream's base is here too: the frames
 * of every journaled object, shard by shard, and of the entries it still
 * restores itself. */

#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base_log.h"
#include "base_time.h"
#include "master_int.h"
#include "master_persist.h"

#define TAG "persist"
#define REFUSE_LOG_MAX 10

enum { RR_WAIT = 0, RR_CLAIMED, RR_REFUSED, RR_LOST };

typedef struct {
    mc_uuid_t seg;
    uint64_t addr, size;
    mseg_t *s; /* RR_CLAIMED */
    mc_alloc_blk_t *blk;
    uint8_t state;
} rrep_t;

typedef struct {
    const char *key; /* the table's copy */
    uint64_t size, version, ttl, deadline_wall, ord;
    uint8_t soft, hard, done;
    uint16_t nrep, nwait;
    rrep_t rep[];
} rent_t;

typedef struct {
    rent_t *e;
    uint16_t ri;
} rref_t;

typedef struct {
    mc_uuid_t id;
    uint64_t dead_ord; /* ordinal of its last UNMOUNT record, 0: none */
    int mounted, gone;
    rref_t *v;
    size_t n, cap;
} rseg_t;

typedef struct mrestore {
    mc_map_t *objs; /* key -> rent_t */
    mc_map_t *segs; /* uuid text -> rseg_t */
    uint64_t ord, barrier;
    uint64_t deadline_ms;
    int indexed;
    /* for the summary line */
    uint64_t restored, refused, lost_reps, dropped, superseded, unprovable;
    uint64_t nentries, pending;
} mrestore_t;

/* ---- logging ---- */

static _Thread_local mc_prec_t tl_rec;
static _Thread_local uint8_t tl_buf[MC_PREC_HDR + MC_PREC_MAX_BODY];

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Fills r with o's state (replicas in segments still in the table only);
 * returns the replica count. Wall-clock deadline from (now, wall). */
static uint32_t rec_of(mc_prec_t *r, const mobj_t *o, uint64_t now, uint64_t wall)
{
    memset(r, 0, offsetof(mc_prec_t, keybuf));
    r->type = MC_PREC_PUT;
    r->key = o->key;
    r->size = o->size;
    r->soft_pin = o->soft_pin;
    r->hard_pin = o->hard_pin;
    r->soft_pin_ttl_ms = o->soft_pin_ttl_ms;
    if (o->soft_pin && o->soft_pin_deadline_ms) {
        int64_t left = (int64_t)(o->soft_pin_deadline_ms - now);
        r->soft_pin_deadline_ms = (uint64_t)((int64_t)wall + left);
        if (!r->soft_pin_deadline_ms) r->soft_pin_deadline_ms = 1;
    }
    for (size_t i = 0; i < o->nrep && r->nrep < MC_PREC_MAX_REPS; i++) {
        const mrep_t *p = &o->rep[i];
        if (p->status != MC_REPLICA_COMPLETE || !p->blk || p->seg->gone) continue;
        r->rep[r->nrep].seg = p->seg->info.id;
        r->rep[r->nrep].addr = mc_alloc_blk_addr(p->blk);
        r->rep[r->nrep].size = mc_alloc_blk_size(p->blk);
        r->nrep++;
    }
    return r->nrep;
}

static int journaling(const mc_master_t *m)
{
    return m->persist || m->repl_sink;
}

void mc_master_journal_flush(mc_master_t *m)
{
    if (m->persist) mc_persist_flush(m->persist);
}

/* One record to the log and to the replication stream. 0 when it went to
 * at least one of them. */
static int emit(mc_master_t *m, const uint8_t *frame, size_t n)
{
    int rc = -1;
    if (m->persist && mc_persist_append(m->persist, frame, n) == 0) rc = 0;
    if (m->repl_sink) {
        m->repl_sink(m->repl_arg, frame, n);
        rc = 0;
    }
    return rc;
}

void mc__journal_put_locked(mc_master_t *m, mobj_t *o, uint64_t now)
{
    if (!journaling(m) || !o->key) return;
    mc_prec_t *r = &tl_rec;
    if (!rec_of(r, o, now, wall_ms())) return;
    r->version = atomic_fetch_add(&m->version, 1) + 1;
    size_t n = mc_prec_encode(r, tl_buf, sizeof tl_buf);
    if (n && emit(m, tl_buf, n) == 0) o->durable = 1;
}

void mc__journal_remove_locked(mc_master_t *m, mobj_t *o)
{
    o->durable = 0;
    if (!journaling(m) || !o->key) return;
    mc_prec_t *r = &tl_rec;
    memset(r, 0, offsetof(mc_prec_t, keybuf));
    r->type = MC_PREC_REMOVE;
    r->key = o->key;
    r->version = atomic_fetch_add(&m->version, 1) + 1;
    size_t n = mc_prec_encode(r, tl_buf, sizeof tl_buf);
    if (n) emit(m, tl_buf, n);
}

void mc__journal_unmount_locked(mc_master_t *m, mc_uuid_t id)
{
    if (!journaling(m)) return;
    mc_prec_t *r = &tl_rec;
    memset(r, 0, offsetof(mc_prec_t, keybuf));
    r->type = MC_PREC_UNMOUNT;
    r->segment = id;
    size_t n = mc_prec_encode(r, tl_buf, sizeof tl_buf);
    if (n) emit(m, tl_buf, n);
}

void mc_master_set_repl_sink(mc_master_t *m, void (*sink)(void *arg, const void *frame, size_t len),
                             void *arg)
{
    m->repl_arg = arg;
    m->repl_sink = sink;
}

/* ---- the restore table ---- */

static rseg_t *rseg_get(mrestore_t *t, mc_uuid_t id, int create)
{
    char k[48];
    mc__master_uuid_text(id, k);
    rseg_t *g = mc_map_get(t->segs, k);
    if (g || !create) return g;
    g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->id = id;
    if (mc_map_put(t->segs, k, g, NULL) != 0) {
        free(g);
        return NULL;
    }
    return g;
}

static void rseg_free(void *v)
{
    rseg_t *g = v;
    free(g->v);
    free(g);
}

/* Applies one record to the table (also the entry point for a standby). */
static int restore_apply(const mc_prec_t *r, void *arg)
{
    mrestore_t *t = arg;
    t->ord++;
    switch (r->type) {
    case MC_PREC_PUT: {
        rent_t *e = calloc(1, sizeof *e + r->nrep * sizeof e->rep[0]);
        if (!e) return MC_ERR_INTERNAL;
        e->size = r->size;
        e->version = r->version;
        e->ttl = r->soft_pin_ttl_ms;
        e->deadline_wall = r->soft_pin_deadline_ms;
        e->soft = (uint8_t)r->soft_pin;
        e->hard = (uint8_t)r->hard_pin;
        e->ord = t->ord;
        e->nrep = (uint16_t)r->nrep;
        for (uint32_t i = 0; i < r->nrep; i++) {
            e->rep[i].seg = r->rep[i].seg;
            e->rep[i].addr = r->rep[i].addr;
            e->rep[i].size = r->rep[i].size;
        }
        void *old = NULL;
        if (mc_map_put(t->objs, r->key, e, &old) != 0) {
            free(e);
            return MC_ERR_INTERNAL;
        }
        free(old);
        e->key = mc_map_stored_key(t->objs, r->key);
        return 0;
    }
    case MC_PREC_REMOVE:
        free(mc_map_del(t->objs, r->key));
        return 0;
    case MC_PREC_UNMOUNT: {
        rseg_t *g = rseg_get(t, r->segment, 1);
        if (!g) return MC_ERR_INTERNAL;
        g->dead_ord = t->ord;
        return 0;
    }
    default:
        return 0;
    }
}

static void restore_barrier(void *arg)
{
    mrestore_t *t = arg;
    t->barrier = t->ord;
}

typedef struct {
    mrestore_t *t;
    char **drop;
    size_t n, cap;
    int oom;
} idx_ctx_t;

/* Drops what cannot be proven or whose segment went later; notes empty entries. */
static int idx_filter_visit(const char *key, void *val, void *arg)
{
    idx_ctx_t *c = arg;
    rent_t *e = val;
    size_t j = 0;
    if (e->ord > c->t->barrier) {
        for (size_t i = 0; i < e->nrep; i++) {
            rseg_t *g = rseg_get(c->t, e->rep[i].seg, 0);
            if (g && g->dead_ord > e->ord) continue;
            e->rep[j++] = e->rep[i];
        }
    } else {
        c->t->unprovable++;
    }
    e->nrep = (uint16_t)j;
    e->nwait = (uint16_t)j;
    if (j == 0 && mc__master_push_key(&c->drop, &c->n, &c->cap, key) != 0) c->oom = 1;
    return 0;
}

static int idx_ref_visit(const char *key, void *val, void *arg)
{
    (void)key;
    idx_ctx_t *c = arg;
    rent_t *e = val;
    for (uint16_t i = 0; i < e->nrep; i++) {
        rseg_t *g = rseg_get(c->t, e->rep[i].seg, 1);
        if (!g) {
            c->oom = 1;
            return 1;
        }
        if (g->n == g->cap) {
            size_t nc = g->cap ? g->cap * 2 : 64;
            rref_t *nv = realloc(g->v, nc * sizeof *nv);
            if (!nv) {
                c->oom = 1;
                return 1;
            }
            g->v = nv;
            g->cap = nc;
        }
        g->v[g->n].e = e;
        g->v[g->n++].ri = i;
    }
    c->t->nentries++;
    c->t->pending++;
    return 0;
}

static int cmp_ref(const void *a, const void *b)
{
    const rref_t *x = a, *y = b;
    uint64_t p = x->e->rep[x->ri].addr, q = y->e->rep[y->ri].addr;
    return p < q ? -1 : p > q;
}

static int sort_visit(const char *key, void *val, void *arg)
{
    (void)key;
    (void)arg;
    rseg_t *g = val;
    if (g->n > 1) qsort(g->v, g->n, sizeof *g->v, cmp_ref);
    return 0;
}

/* After replay: filter, then index the replicas by segment in address order. */
static int restore_index(mrestore_t *t)
{
    idx_ctx_t c = {t, NULL, 0, 0, 0};
    mc_map_each(t->objs, idx_filter_visit, &c);
    for (size_t i = 0; i < c.n; i++) {
        free(mc_map_del(t->objs, c.drop[i]));
        free(c.drop[i]);
    }
    free(c.drop);
    if (c.oom) return MC_ERR_INTERNAL;
    mc_map_each(t->objs, idx_ref_visit, &c);
    if (c.oom) return MC_ERR_INTERNAL;
    mc_map_each(t->segs, sort_visit, NULL);
    t->indexed = 1;
    return 0;
}

static void restore_table_free(mrestore_t *t)
{
    if (!t) return;
    mc_map_free(t->objs, free);
    mc_map_free(t->segs, rseg_free);
    free(t);
}

void mc__restore_free(mc_master_t *m)
{
    restore_table_free(m->restore);
    m->restore = NULL;
}

/* ---- claims ---- */

void mc__restore_claim_locked(mc_master_t *m, mseg_t *s)
{
    mrestore_t *t = m->restore;
    if (!t) return;
    rseg_t *g = rseg_get(t, s->info.id, 0);
    if (!g || g->mounted || g->gone) return;
    g->mounted = 1;
    uint64_t claimed = 0, bytes = 0, refused = 0;
    for (size_t i = 0; i < g->n; i++) {
        rent_t *e = g->v[i].e;
        rrep_t *r = &e->rep[g->v[i].ri];
        if (e->done || r->state != RR_WAIT) continue;
        mc_alloc_blk_t *blk;
        int rc = mc_alloc_claim(s->alloc, r->addr, r->size, &blk);
        e->nwait--;
        if (rc == 0) {
            r->state = RR_CLAIMED;
            r->s = s;
            r->blk = blk;
            claimed++;
            bytes += mc_alloc_blk_size(blk);
            continue;
        }
        r->state = RR_REFUSED;
        t->refused++;
        if (refused++ < REFUSE_LOG_MAX)
            MC_LOGW(TAG,
                    "restore of '%.128s' on segment '%s' refused: [0x%" PRIx64 ", +%" PRIu64
                    ") %s the segment [0x%" PRIx64 ", +%" PRIu64 ")",
                    e->key, s->info.name, r->addr, r->size,
                    rc == MC_ERR_NO_AVAILABLE_HANDLE ? "overlaps another object in"
                                                     : "lies outside",
                    s->info.base, s->info.size);
    }
    atomic_fetch_add(&s->used, bytes);
    atomic_fetch_add(&m->allocated, bytes);
    if (g->n == 0) return;
    MC_LOGI(TAG,
            "segment '%s' remounted: %" PRIu64 " ranges of restored objects claimed (%" PRIu64
            " bytes), %" PRIu64 " refused",
            s->info.name, claimed, bytes, refused);
}

/* Returns a claimed range to its segment (the entry will not be an object). */
static void unclaim(mc_master_t *m, rrep_t *r)
{
    mc__master_range_free(m, r->s, r->blk);
    r->blk = NULL;
    r->state = RR_LOST;
}

/* Entry e, all replicas settled, becomes an object (or goes). restore_mu held. */
static void settle_one(mc_master_t *m, mrestore_t *t, rent_t *e, uint64_t now, uint64_t wall)
{
    e->done = 1;
    t->pending--;
    size_t nclaimed = 0, nrefused = 0;
    for (size_t i = 0; i < e->nrep; i++) {
        nclaimed += e->rep[i].state == RR_CLAIMED;
        nrefused += e->rep[i].state == RR_REFUSED;
        t->lost_reps += e->rep[i].state == RR_LOST || e->rep[i].state == RR_WAIT;
    }
    shard_t *sh = mc__master_shard_of(m, e->key);
    pthread_mutex_lock(&sh->mu);
    if (mc_map_get(sh->map, e->key)) { /* put again since the restart: that one wins */
        for (size_t i = 0; i < e->nrep; i++)
            if (e->rep[i].state == RR_CLAIMED) unclaim(m, &e->rep[i]);
        t->superseded++;
        goto out;
    }
    if (nclaimed == 0) {
        if (nrefused) { /* logged as gone, so a later restart cannot bring it back */
            mobj_t tmp = {.key = e->key};
            mc__journal_remove_locked(m, &tmp);
        }
        t->dropped++;
        goto out;
    }
    mobj_t *o = calloc(1, sizeof *o + nclaimed * sizeof o->rep[0]);
    if (!o) goto fail;
    o->size = e->size;
    o->put_start_ms = now;
    o->lease_ms = now + m->cfg.default_kv_lease_ttl_ms; /* readers across the restart */
    o->soft_pin_ttl_ms = e->ttl;
    o->hard_pin = e->hard;
    o->shard = (uint16_t)(sh - m->shards);
    if (e->soft) {
        if (e->deadline_wall) {
            int64_t left = (int64_t)(e->deadline_wall - wall);
            o->soft_pin_deadline_ms = left > 0 ? now + (uint64_t)left : (now ? now : 1);
        }
    }
    for (size_t i = 0; i < e->nrep; i++) {
        rrep_t *r = &e->rep[i];
        if (r->state != RR_CLAIMED) continue;
        mrep_t *p = &o->rep[o->nrep++];
        p->id = atomic_fetch_add(&m->next_replica_id, 1);
        p->seg = r->s;
        p->blk = r->blk;
        p->status = MC_REPLICA_COMPLETE;
    }
    if (mc_map_put(sh->map, e->key, o, NULL) != 0) {
        free(o);
        goto fail;
    }
    o->key = mc_map_stored_key(sh->map, e->key);
    for (size_t i = 0; i < o->nrep; i++) {
        pthread_mutex_lock(&o->rep[i].seg->mu);
        mc_alloc_blk_set_owner(o->rep[i].blk, o);
        pthread_mutex_unlock(&o->rep[i].seg->mu);
    }
    atomic_fetch_add(&m->key_count, 1);
    if (e->soft) mc__master_set_soft_pin(m, o, 1);
    o->durable = 1;
    if (nrefused) mc__journal_put_locked(m, o, now); /* without the refused replicas */
    t->restored++;
    goto out;
fail:
    for (size_t i = 0; i < e->nrep; i++)
        if (e->rep[i].state == RR_CLAIMED) unclaim(m, &e->rep[i]);
    t->dropped++;
out:
    pthread_mutex_unlock(&sh->mu);
}

static void restore_finish_locked(mc_master_t *m, uint64_t now);

typedef struct {
    mc_master_t *m;
    mrestore_t *t;
    uint64_t now, wall;
    int all; /* grace over: settle everything, waiting replicas are lost */
} settle_ctx_t;

static int settle_visit(const char *key, void *val, void *arg)
{
    (void)key;
    settle_ctx_t *c = arg;
    rent_t *e = val;
    if (!e->done && (c->all || e->nwait == 0)) settle_one(c->m, c->t, e, c->now, c->wall);
    return 0;
}

void mc__restore_settle_locked(mc_master_t *m, uint64_t now)
{
    mrestore_t *t = m->restore;
    if (!t) return;
    settle_ctx_t c = {m, t, now, wall_ms(), 0};
    mc_map_each(t->objs, settle_visit, &c);
    if (t->pending == 0) restore_finish_locked(m, now);
}

void mc__restore_seg_gone(mc_master_t *m, mseg_t *s)
{
    pthread_mutex_lock(&m->restore_mu);
    mrestore_t *t = m->restore;
    rseg_t *g = t ? rseg_get(t, s->info.id, 0) : NULL;
    if (g && g->mounted && !g->gone) {
        g->gone = 1;
        for (size_t i = 0; i < g->n; i++) {
            rent_t *e = g->v[i].e;
            rrep_t *r = &e->rep[g->v[i].ri];
            if (!e->done && r->state == RR_CLAIMED && r->s == s) {
                r->state = RR_LOST; /* its range dies with the allocator */
                r->blk = NULL;
                r->s = NULL;
            }
        }
    }
    pthread_mutex_unlock(&m->restore_mu);
}

typedef struct {
    mc_master_t *m;
    uint64_t segs_missing;
} miss_ctx_t;

/* A segment that never came back: its replicas are logged gone. */
static int missing_visit(const char *key, void *val, void *arg)
{
    (void)key;
    miss_ctx_t *c = arg;
    rseg_t *g = val;
    if (g->mounted || g->n == 0) return 0;
    c->segs_missing++;
    pthread_rwlock_wrlock(&c->m->seg_lock);
    mc__journal_unmount_locked(c->m, g->id);
    pthread_rwlock_unlock(&c->m->seg_lock);
    return 0;
}

/* Settles every entry (the grace period is over, or nothing awaits a
 * segment any more), logs the summary and frees the table. restore_mu held. */
static void restore_finish_locked(mc_master_t *m, uint64_t now)
{
    mrestore_t *t = m->restore;
    if (!t) return;
    settle_ctx_t c = {m, t, now, wall_ms(), 1};
    mc_map_each(t->objs, settle_visit, &c);
    miss_ctx_t mc = {m, 0};
    mc_map_each(t->segs, missing_visit, &mc);
    MC_LOGI(TAG,
            "restore finished: %" PRIu64 " of %" PRIu64 " objects restored; %" PRIu64
            " replicas lost with %" PRIu64 " segments that did not remount within %" PRIu64
            " ms, %" PRIu64 " refused, %" PRIu64 " objects dropped without a replica, %" PRIu64
            " put again meanwhile",
            t->restored, t->nentries, t->lost_reps, mc.segs_missing, 2 * m->cfg.client_ttl_ms,
            t->refused, t->dropped, t->superseded);
    m->restore = NULL;
    restore_table_free(t);
    malloc_trim(0); /* the table was as large as the index */
}

/* ---- snapshots ---- */

typedef struct {
    mc_master_t *m;
    mc_persist_snap_t *w;
    uint64_t now, wall;
    int err;
} snap_ctx_t;

/* Child side: no locks, no allocation (the tl buffers were touched before fork). */
static int snap_visit(const char *key, void *val, void *arg)
{
    (void)key;
    snap_ctx_t *c = arg;
    const mobj_t *o = val;
    if (!o->durable || !mc__obj_all_complete(o)) return 0;
    mc_prec_t *r = &tl_rec;
    if (!rec_of(r, o, c->now, c->wall)) return 0;
    size_t n = mc_prec_encode(r, tl_buf, sizeof tl_buf);
    if (!n || mc_persist_snap_add(c->w, tl_buf, n) != 0) {
        c->err = 1;
        return 1;
    }
    return 0;
}

static int snap_fill(mc_persist_snap_t *w, void *arg)
{
    snap_ctx_t *c = arg;
    c->w = w;
    for (size_t i = 0; i < MC_MASTER_SHARDS && !c->err; i++)
        mc_map_each(c->m->shards[i].map, snap_visit, c);
    return c->err ? -1 : 0;
}

/* Quiesces the index (every shard, the segment table, the log), forks the
 * snapshot child and releases everything. Tick thread. */
static void snapshot(mc_master_t *m, uint64_t now)
{
    snap_ctx_t c = {m, NULL, now, wall_ms(), 0};
    memset(&tl_rec, 0, sizeof tl_rec); /* fault the thread's buffers in before the fork */
    memset(tl_buf, 0, sizeof tl_buf);
    for (size_t i = 0; i < MC_MASTER_SHARDS; i++)
        pthread_mutex_lock(&m->shards[i].mu);
    pthread_rwlock_rdlock(&m->seg_lock);
    mc_persist_lock(m->persist);
    mc_persist_snapshot_locked(m->persist, atomic_load(&m->version), snap_fill, &c);
    mc_persist_unlock(m->persist);
    pthread_rwlock_unlock(&m->seg_lock);
    for (size_t i = MC_MASTER_SHARDS; i-- > 0;)
        pthread_mutex_unlock(&m->shards[i].mu);
}

void mc__persist_tick(mc_master_t *m, uint64_t now)
{
    if (!m->persist && !m->repl_sink) return;
    if (m->persist) mc_persist_poll(m->persist, now);
    /* a mount may hold restore_mu while it claims ranges: the next tick will do */
    if (pthread_mutex_trylock(&m->restore_mu) != 0) return;
    if (m->restore && now >= m->restore->deadline_ms) restore_finish_locked(m, now);
    int restoring = m->restore != NULL;
    pthread_mutex_unlock(&m->restore_mu);
    /* no snapshot while objects await their segments: they are in the log only */
    if (m->persist && !restoring && mc_persist_want_snapshot(m->persist, now)) snapshot(m, now);
}

/* ---- start ---- */

int mc_master_persist_attach(mc_master_t *m, mc_persist_t *p, uint64_t now_ms, char *err,
                             size_t errlen)
{
    uint64_t t0 = mc_now_ms();
    mrestore_t *t = calloc(1, sizeof *t);
    if (!t) return MC_ERR_INTERNAL;
    t->objs = mc_map_new();
    t->segs = mc_map_new();
    if (!t->objs || !t->segs) {
        restore_table_free(t);
        return MC_ERR_INTERNAL;
    }
    mc_persist_replay_ops_t ops = {restore_apply, restore_barrier, t};
    mc_persist_replay_stats_t st;
    int rc = mc_persist_replay(p, &ops, &st);
    if (rc == 0) rc = restore_index(t);
    if (rc) {
        snprintf(err, errlen, "persist dir '%s': replay failed: error %d", mc_persist_dir(p), rc);
        restore_table_free(t);
        return rc < 0 ? rc : MC_ERR_INTERNAL;
    }
    atomic_store(&m->version, st.version);
    uint64_t grace = 2 * m->cfg.client_ttl_ms;
    t->deadline_ms = now_ms + grace;
    uint64_t ms = mc_now_ms() - t0;
    if (st.damaged)
        MC_LOGW(TAG,
                "%s/%s; recovered %" PRIu64 " objects from what precedes and follows it "
                "(%" PRIu64 " dropped as unprovable, %d damaged places, %" PRIu64
                " records in %" PRIu64 " files); the master starts with these",
                mc_persist_dir(p), st.damage, t->nentries, t->unprovable, st.ndamage, st.records,
                st.files);
    else if (st.files == 0)
        MC_LOGI(TAG, "persistence in %s: nothing to recover", mc_persist_dir(p));
    else
        MC_LOGI(TAG,
                "recovered %" PRIu64 " objects from %s (%s, %" PRIu64 " records, %" PRIu64
                " files, %" PRIu64 " bytes) in %" PRIu64 " ms; they become readable as their "
                "segments remount (grace %" PRIu64 " ms)",
                t->nentries, mc_persist_dir(p), st.have_snapshot ? "snapshot and log" : "log",
                st.records, st.files, st.bytes, ms, grace);
    if (t->nentries == 0) {
        restore_table_free(t);
        t = NULL;
    }
    m->restore = t;
    rc = mc_persist_start(p, st.version, err, errlen);
    if (rc) {
        mc__restore_free(m);
        return rc;
    }
    m->persist = p;
    return 0;
}

/* ---- HA replication ---- */

struct mrestore *mc_master_restore_table_new(void)
{
    mrestore_t *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->objs = mc_map_new();
    t->segs = mc_map_new();
    if (!t->objs || !t->segs) {
        restore_table_free(t);
        return NULL;
    }
    return t;
}

void mc_master_restore_table_free(struct mrestore *t)
{
    restore_table_free(t);
}

int mc_master_restore_table_apply(struct mrestore *t, const void *rec)
{
    return restore_apply(rec, t);
}

uint64_t mc_master_restore_table_count(const struct mrestore *t)
{
    return t ? mc_map_size(t->objs) : 0;
}

typedef struct {
    mc__frame_fn fn;
    void *arg;
    uint64_t now, wall;
    int stop;
} dump_ctx_t;

static int dump_obj_visit(const char *key, void *val, void *arg)
{
    (void)key;
    dump_ctx_t *c = arg;
    const mobj_t *o = val;
    if (!o->durable || !mc__obj_all_complete(o)) return 0;
    mc_prec_t *r = &tl_rec;
    if (!rec_of(r, o, c->now, c->wall)) return 0;
    size_t n = mc_prec_encode(r, tl_buf, sizeof tl_buf);
    if (n && c->fn(c->arg, tl_buf, n)) {
        c->stop = 1;
        return 1;
    }
    return 0;
}

int mc__repl_dump_shard(mc_master_t *m, size_t i, mc__frame_fn fn, void *arg)
{
    dump_ctx_t c = {fn, arg, mc_now_ms(), wall_ms(), 0};
    shard_t *sh = &m->shards[i];
    pthread_mutex_lock(&sh->mu);
    mc_map_each(sh->map, dump_obj_visit, &c);
    pthread_mutex_unlock(&sh->mu);
    return c.stop;
}

/* The PUT record of entry e (replicas not known lost). 0: nothing to send. */
static size_t entry_frame(const rent_t *e, int all, uint64_t version)
{
    mc_prec_t *r = &tl_rec;
    memset(r, 0, offsetof(mc_prec_t, keybuf));
    r->type = MC_PREC_PUT;
    r->key = e->key;
    r->size = e->size;
    r->version = version ? version : e->version;
    r->soft_pin = e->soft;
    r->hard_pin = e->hard;
    r->soft_pin_ttl_ms = e->ttl;
    r->soft_pin_deadline_ms = e->deadline_wall;
    for (size_t i = 0; i < e->nrep && r->nrep < MC_PREC_MAX_REPS; i++) {
        const rrep_t *p = &e->rep[i];
        if (!all && p->state != RR_WAIT && p->state != RR_CLAIMED) continue;
        r->rep[r->nrep].seg = p->seg;
        r->rep[r->nrep].addr = p->addr;
        r->rep[r->nrep].size = p->size;
        r->nrep++;
    }
    return r->nrep ? mc_prec_encode(r, tl_buf, sizeof tl_buf) : 0;
}

static int dump_ent_visit(const char *key, void *val, void *arg)
{
    (void)key;
    dump_ctx_t *c = arg;
    const rent_t *e = val;
    if (e->done) return 0;
    size_t n = entry_frame(e, 0, 0);
    if (n && c->fn(c->arg, tl_buf, n)) {
        c->stop = 1;
        return 1;
    }
    return 0;
}

int mc__repl_dump_pending(mc_master_t *m, mc__frame_fn fn, void *arg)
{
    dump_ctx_t c = {fn, arg, 0, 0, 0};
    pthread_mutex_lock(&m->restore_mu);
    if (m->restore) mc_map_each(m->restore->objs, dump_ent_visit, &c);
    pthread_mutex_unlock(&m->restore_mu);
    return c.stop;
}

typedef struct {
    mc_master_t *m;
    uint64_t logged;
} adopt_ctx_t;

/* Logs an adopted entry into this master's own journal (and stream). */
static int adopt_log_visit(const char *key, void *val, void *arg)
{
    (void)key;
    adopt_ctx_t *c = arg;
    size_t n = entry_frame(val, 1, atomic_fetch_add(&c->m->version, 1) + 1);
    if (n && emit(c->m, tl_buf, n) == 0) c->logged++;
    return 0;
}

int mc_master_restore_adopt(mc_master_t *m, struct mrestore *t, uint64_t version, const char *from,
                            uint64_t now_ms)
{
    uint64_t t0 = mc_now_ms();
    pthread_mutex_lock(&m->restore_mu);
    mc__restore_free(m);
    if (!t) {
        pthread_mutex_unlock(&m->restore_mu);
        return 0;
    }
    int rc = restore_index(t);
    if (rc) {
        restore_table_free(t);
        pthread_mutex_unlock(&m->restore_mu);
        MC_LOGE(TAG, "cannot adopt the index replicated from %s: out of memory", from);
        return rc;
    }
    uint64_t v = atomic_load(&m->version);
    if (version > v) atomic_store(&m->version, version);
    adopt_ctx_t c = {m, 0};
    if (journaling(m)) mc_map_each(t->objs, adopt_log_visit, &c);
    uint64_t grace = 2 * m->cfg.client_ttl_ms;
    t->deadline_ms = now_ms + grace;
    MC_LOGI(TAG,
            "adopted %" PRIu64 " objects replicated from %s (%" PRIu64 " logged here) in %" PRIu64
            " ms; they become readable as their segments remount (grace %" PRIu64 " ms)",
            t->nentries, from, c.logged, mc_now_ms() - t0, grace);
    if (t->nentries == 0)
        restore_table_free(t);
    else
        m->restore = t;
    pthread_mutex_unlock(&m->restore_mu);
    return 0;
}
