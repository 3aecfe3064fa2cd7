/* master_tick.c: the core's background work, driven by mc_master_tick. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base_log.h"
#include "master_int.h"

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
        mc__master_range_free(m, p->seg, p->blk);
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
    if (!mc__obj_has_status(o, MC_REPLICA_PROCESSING) ||
        c->now < o->put_start_ms + c->m->cfg.put_start_release_timeout_ms)
        return 0;
    size_t j = 0;
    for (size_t i = 0; i < o->nrep; i++) {
        if (o->rep[i].status == MC_REPLICA_PROCESSING)
            mc__master_rep_release(c->m, &o->rep[i]);
        else
            o->rep[j++] = o->rep[i];
    }
    o->nrep = j;
    atomic_fetch_add(&c->m->release_cnt, 1);
    if (j == 0) mc__master_push_key(&c->keys, &c->n, &c->cap, key);
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
            if (o && o->nrep == 0) mc__master_erase_locked(m, sh, c.keys[k], o);
            free(c.keys[k]);
        }
        free(c.keys);
        pthread_mutex_unlock(&sh->mu);
    }
}

void mc_master_tick(mc_master_t *m, uint64_t now_ms)
{
    uint64_t prev = m->last_tick_ms;
    m->last_tick_ms = now_ms;
    if (m->cfg.stall_threshold_ms && prev && now_ms > prev + m->cfg.stall_threshold_ms)
        mc__master_stalled(m, prev, now_ms, "tick thread");
    mc__master_expire_clients(m, now_ms);
    int forced = atomic_exchange(&m->need_evict, 0);
    mc__master_evict_pass(m, now_ms, forced, MC__EPOCH_NONE);
    release_parked(m, now_ms);
    mc__move_tick(m, now_ms);
    uint64_t last = atomic_load(&m->last_zombie_scan_ms);
    /* The zombie scan walks every object (about 40 ms per million keys), so it
     * runs every tenth of the release timeout, within [1 s, 60 s]. */
    uint64_t every = m->cfg.put_start_release_timeout_ms / 10;
    every = every < 1000 ? 1000 : every > 60000 ? 60000 : every;
    if (now_ms >= last + every || now_ms < last) {
        atomic_store(&m->last_zombie_scan_ms, now_ms);
        discard_zombies(m, now_ms);
    }
    mc__persist_tick(m, now_ms);
    mc_master_journal_flush(m); /* what this round erased or restored */
}
