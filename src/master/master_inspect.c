/* master_inspect.c: what the admin server and the dashboard show about the
 * core beyond master_service.c's introspection: the clients with the age of
 * their last heartbeat, and the draining mark of segments (drain jobs,
 * master_drain.c). Clients are copied under client_mu and handed to the
 * caller's function after it is released, so a slow consumer (an HTTP
 * answer being built) never holds up heartbeats. */
#include <stdlib.h>
#include <string.h>

#include "master_int.h"

typedef struct {
    mc_master_client_info_t *v;
    size_t n, cap;
    uint64_t now, ttl;
} cl_copy_t;

static int cl_visit(const char *key, void *val, void *arg)
{
    (void)key;
    cl_copy_t *c = arg;
    const mclient_t *cl = val;
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 64;
        mc_master_client_info_t *nv = realloc(c->v, ncap * sizeof *nv);
        if (!nv) return 1; /* stop: show what fits */
        c->v = nv;
        c->cap = ncap;
    }
    mc_master_client_info_t *o = &c->v[c->n++];
    o->id = cl->id;
    o->alive = cl->alive;
    /* the deadline is last heartbeat + ttl, pushed later by stalls */
    uint64_t last = cl->deadline_ms > c->ttl ? cl->deadline_ms - c->ttl : 0;
    o->heartbeat_age_ms = c->now > last ? c->now - last : 0;
    o->ttl_left_ms = cl->deadline_ms > c->now ? cl->deadline_ms - c->now : 0;
    return 0;
}

void mc_master_each_client(mc_master_t *m, uint64_t now_ms,
                           void (*fn)(const mc_master_client_info_t *c, void *arg), void *arg)
{
    cl_copy_t c = {NULL, 0, 0, now_ms, m->cfg.client_ttl_ms};
    pthread_mutex_lock(&m->client_mu);
    mc_map_each(m->clients, cl_visit, &c);
    pthread_mutex_unlock(&m->client_mu);
    for (size_t i = 0; fn && i < c.n; i++)
        fn(&c.v[i], arg);
    free(c.v);
}

int mc_master_set_draining(mc_master_t *m, const char *name, int on, uint64_t *used_bytes)
{
    int rc = MC_ERR_SEGMENT_NOT_FOUND;
    pthread_rwlock_rdlock(&m->seg_lock);
    for (size_t i = 0; i < m->nsegs; i++) {
        mseg_t *s = m->segs[i];
        if (strcmp(s->info.name, name) != 0) continue;
        atomic_store(&s->draining, on ? 1 : 0);
        if (used_bytes) *used_bytes = atomic_load(&s->used);
        rc = 0;
        break;
    }
    pthread_rwlock_unlock(&m->seg_lock);
    return rc;
}
