/* master_scan.c: scans of the whole index: remove_all, remove_by_regex and
 * get_replicas_by_regex. */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base_log.h"
#include "master_int.h"

typedef struct {
    const regex_t *re; /* NULL: every key */
    int force;
    uint64_t now;
    char **keys;
    size_t n, cap;
    int oom;
} rm_ctx_t;

static int rm_visit(const char *key, void *val, void *arg)
{
    rm_ctx_t *c = arg;
    mobj_t *o = val;
    if ((c->force || !mc__obj_lease_active(o, c->now)) && mc__obj_all_complete(o) &&
        (!c->re || regexec(c->re, key, 0, NULL, 0) == 0)) {
        if (mc__master_push_key(&c->keys, &c->n, &c->cap, key)) c->oom = 1;
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
                mc__master_erase_locked(m, sh, c.keys[k], o);
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
    if (!mc__obj_has_status(o, MC_REPLICA_COMPLETE) || regexec(c->re, key, 0, NULL, 0) != 0)
        return 0;
    mc_replica_t *r;
    size_t n;
    if (mc__master_fill_out(o, 1, &r, &n)) return 0;
    mc__master_grant_lease(c->m, o, c->now);
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
