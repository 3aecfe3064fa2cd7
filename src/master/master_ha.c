/* master_ha.c: leader election of HA masters on etcd or redis (master_ha.h).
 *
 * Two backends fill one set of operations (campaign, refresh, resign, read):
 *   etcd:  grant a lease, create the view key bound to it in one transaction
 *          (compare create_revision = 0); the view is the key's create
 *          revision; refresh = lease keepalive; resign = revoke.
 *   redis: SET key me NX PX ttl; the view is INCR of "<key>_version";
 *          refresh = PEXPIRE if the key still holds me (Lua); resign = DEL if
 *          it holds me. One redis server is a single point of failure: use
 *          etcd where the pool must survive one.
 * One election thread per master runs this state machine:
 *   candidate: campaign. Won: leading. The key exists: standby.
 *   leading:   refresh the lease every ttl/5; each success moves the serving
 *              deadline to (send time + remaining TTL - 1 s). A refresh that
 *              finds the lease gone, or no success before the deadline, ends
 *              the term: on_change(0), then campaign again.
 *   standby:   read the key every STANDBY_POLL_MS; once it is gone (the
 *              leader's lease ran out or it resigned), campaign.
 * Errors reaching etcd are logged once when they start and once when they
 * end (net_etcd names the endpoints and causes), never once per retry. */
#include "master_ha.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base_log.h"
#include "base_time.h"
#include "mooncake/err.h"
#include "net_etcd.h"
#include "net_redis.h"

#define TAG "master_ha"
#define STANDBY_POLL_MS 100
#define RETRY_MS 500
#define SAFETY_MS 1000 /* a leader stops this long before etcd may expire its lease */

struct mc_master_ha;

typedef struct {
    const char *name;
    /* 0: this master leads under *view. -EEXIST: another one does (*leader
     * malloc'd, *view). Other: the store cannot be reached. */
    int (*campaign)(struct mc_master_ha *h, uint64_t *view, char **leader);
    /* 0 with the time left in *left_ms; -ENOENT: the term is over; other:
     * the store cannot be reached. */
    int (*refresh)(struct mc_master_ha *h, int64_t *left_ms);
    void (*resign)(struct mc_master_ha *h);
    /* 0 with the current leader (malloc'd) and view; -ENOENT: none. */
    int (*read)(struct mc_master_ha *h, char **leader, uint64_t *view);
    /* the replication key: publish this leader's (under its lease), read the current one */
    int (*put_repl)(struct mc_master_ha *h, const char *val);
    int (*get_repl)(struct mc_master_ha *h, char **val);
    /* the in-sync set key: written only while this master holds view's key */
    int (*put_isr)(struct mc_master_ha *h, uint64_t view, const char *val);
    int (*get_isr)(struct mc_master_ha *h, char **val);
} ha_backend_t;

struct mc_master_ha {
    mc_master_ha_config_t cfg;
    char key[256], vkey[272], rkey[272], ikey[280], me[320], cluster[160], repl_val[360],
        repl_adv[320];
    const ha_backend_t *be;
    mc_etcd_t *etcd;
    int64_t lease; /* etcd: the lease of this term */
    mc_redis_t *redis;
    pthread_t thr;
    int running;
    pthread_mutex_t mu; /* stop, cv, and the leader fields below */
    pthread_cond_t cv;  /* CLOCK_MONOTONIC */
    int stop;
    const char *state;
    int leader_known;
    char leader[320];
    uint64_t leader_view;
    int repl_known;
    char leader_repl[320];
    _Atomic int leading;
    _Atomic uint64_t valid_until_ms, view;
    _Atomic uint64_t won, lost;
};

/* Sleeps ms or until stop; returns 1 when stopping. */
static int nap(mc_master_ha_t *h, int ms)
{
    struct timespec ts = mc_deadline_ts(CLOCK_MONOTONIC, (uint64_t)ms);
    pthread_mutex_lock(&h->mu);
    while (!h->stop && pthread_cond_timedwait(&h->cv, &h->mu, &ts) != ETIMEDOUT) {
    }
    int stop = h->stop;
    pthread_mutex_unlock(&h->mu);
    return stop;
}

static void set_state(mc_master_ha_t *h, const char *state, const char *leader, uint64_t view)
{
    pthread_mutex_lock(&h->mu);
    if (view != h->leader_view || !leader) h->repl_known = 0;
    h->state = state;
    h->leader_known = leader != NULL;
    snprintf(h->leader, sizeof h->leader, "%s", leader ? leader : "");
    h->leader_view = view;
    pthread_mutex_unlock(&h->mu);
}

/* ---- etcd ---- */

static int etcd_campaign(mc_master_ha_t *h, uint64_t *view, char **leader)
{
    int rc = mc_etcd_lease_grant(h->etcd, h->cfg.lease_ttl_s, &h->lease);
    if (rc) return rc;
    char *cur = NULL;
    size_t curlen = 0;
    mc_etcd_kv_t kv;
    int64_t rev = 0;
    rc = mc_etcd_create(h->etcd, h->key, strlen(h->key), h->me, strlen(h->me), h->lease, &cur,
                        &curlen, &kv, &rev);
    if (rc == 0) {
        *view = (uint64_t)rev;
        return 0;
    }
    mc_etcd_lease_revoke(h->etcd, h->lease);
    h->lease = 0;
    if (rc == -EEXIST) {
        *view = (uint64_t)kv.create_rev;
        *leader = cur;
        return -EEXIST;
    }
    free(cur);
    return rc;
}

static int etcd_refresh(mc_master_ha_t *h, int64_t *left_ms)
{
    int64_t left = 0;
    int rc = mc_etcd_lease_keepalive(h->etcd, h->lease, &left);
    if (rc == 0 && left <= 0) rc = -ENOENT;
    *left_ms = left * 1000;
    return rc;
}

static void etcd_resign(mc_master_ha_t *h)
{
    mc_etcd_lease_revoke(h->etcd, h->lease); /* deletes the key */
    h->lease = 0;
}

static int etcd_read(mc_master_ha_t *h, char **leader, uint64_t *view)
{
    size_t len = 0;
    mc_etcd_kv_t kv;
    int rc = mc_etcd_get(h->etcd, h->key, strlen(h->key), leader, &len, &kv, NULL);
    if (rc == 0) *view = (uint64_t)kv.create_rev;
    return rc;
}

static int etcd_put_repl(mc_master_ha_t *h, const char *val)
{
    return mc_etcd_put(h->etcd, h->rkey, strlen(h->rkey), val, strlen(val), h->lease, NULL);
}

static int etcd_get_repl(mc_master_ha_t *h, char **val)
{
    size_t len = 0;
    return mc_etcd_get(h->etcd, h->rkey, strlen(h->rkey), val, &len, NULL, NULL);
}

static int etcd_put_isr(mc_master_ha_t *h, uint64_t view, const char *val)
{
    return mc_etcd_put_if_created(h->etcd, h->key, strlen(h->key), (int64_t)view, h->ikey,
                                  strlen(h->ikey), val, strlen(val), NULL);
}

static int etcd_get_isr(mc_master_ha_t *h, char **val)
{
    size_t len = 0;
    return mc_etcd_get(h->etcd, h->ikey, strlen(h->ikey), val, &len, NULL, NULL);
}

static const ha_backend_t etcd_backend = {"etcd",        etcd_campaign, etcd_refresh,
                                          etcd_resign,   etcd_read,     etcd_put_repl,
                                          etcd_get_repl, etcd_put_isr,  etcd_get_isr};

/* ---- redis ---- */

static int redis_read(mc_master_ha_t *h, char **leader, uint64_t *view)
{
    size_t len = 0;
    int rc = mc_redis_get(h->redis, h->key, leader, &len);
    if (rc) return rc;
    char *v = NULL;
    *view = 0;
    if (mc_redis_get(h->redis, h->vkey, &v, &len) == 0) *view = strtoull(v, NULL, 10);
    free(v);
    return 0;
}

static int redis_campaign(mc_master_ha_t *h, uint64_t *view, char **leader)
{
    int rc =
        mc_redis_set_nx(h->redis, h->key, h->me, strlen(h->me), (int64_t)h->cfg.lease_ttl_s * 1000);
    if (rc == -EEXIST) {
        rc = redis_read(h, leader, view);
        return rc == -ENOENT ? -EAGAIN : rc ? rc : -EEXIST; /* gone meanwhile: campaign again */
    }
    if (rc) return rc;
    int64_t v = 0;
    if ((rc = mc_redis_incr(h->redis, h->vkey, &v))) {
        mc_redis_del_if(h->redis, h->key, h->me, strlen(h->me));
        return rc;
    }
    *view = (uint64_t)v;
    return 0;
}

static int redis_refresh(mc_master_ha_t *h, int64_t *left_ms)
{
    *left_ms = (int64_t)h->cfg.lease_ttl_s * 1000;
    int rc = mc_redis_refresh_if(h->redis, h->key, h->me, strlen(h->me), *left_ms);
    if (rc == 0 && h->repl_val[0])
        mc_redis_refresh_if(h->redis, h->rkey, h->repl_val, strlen(h->repl_val), *left_ms);
    return rc == -ESTALE ? -ENOENT : rc;
}

static void redis_resign(mc_master_ha_t *h)
{
    mc_redis_del_if(h->redis, h->key, h->me, strlen(h->me));
}

static int redis_put_repl(mc_master_ha_t *h, const char *val)
{
    mc_redis_del(h->redis, h->rkey); /* a previous leader's, not expired yet */
    return mc_redis_set_nx(h->redis, h->rkey, val, strlen(val), (int64_t)h->cfg.lease_ttl_s * 1000);
}

static int redis_get_repl(mc_master_ha_t *h, char **val)
{
    size_t len = 0;
    return mc_redis_get(h->redis, h->rkey, val, &len);
}

static int redis_put_isr(mc_master_ha_t *h, uint64_t view, const char *val)
{
    char v[24];
    snprintf(v, sizeof v, "%llu", (unsigned long long)view);
    return mc_redis_set_if_term(h->redis, h->key, h->me, h->vkey, v, h->ikey, val, strlen(val));
}

static int redis_get_isr(mc_master_ha_t *h, char **val)
{
    size_t len = 0;
    return mc_redis_get(h->redis, h->ikey, val, &len);
}

static const ha_backend_t redis_backend = {"redis",        redis_campaign, redis_refresh,
                                           redis_resign,   redis_read,     redis_put_repl,
                                           redis_get_repl, redis_put_isr,  redis_get_isr};

/* Holds the term while it can; returns when the term ends or on stop. */
static void lead(mc_master_ha_t *h, uint64_t view, uint64_t granted_at)
{
    int ttl = h->cfg.lease_ttl_s;
    atomic_store(&h->view, view);
    atomic_store(&h->valid_until_ms, granted_at + (uint64_t)ttl * 1000 - SAFETY_MS);
    atomic_fetch_add(&h->won, 1);
    MC_LOGI(TAG, "elected leader of cluster '%s' at view %llu (%s, lease %d s)", h->cluster,
            (unsigned long long)view, h->me, ttl);
    h->repl_val[0] = '\0';
    if (h->cfg.repl_advertise) {
        snprintf(h->repl_val, sizeof h->repl_val, "%s %llu", h->cfg.repl_advertise,
                 (unsigned long long)view);
        if (h->be->put_repl(h, h->repl_val))
            MC_LOGW(TAG,
                    "cannot publish the replication address %s: standbys will not follow "
                    "this leader until its next term",
                    h->cfg.repl_advertise);
    }
    /* the new term's state is in place before the gate opens */
    if (h->cfg.on_change) h->cfg.on_change(h->cfg.arg, 1, view);
    set_state(h, "serving", h->me, view);
    atomic_store(&h->leading, 1);
    const char *why = NULL;
    int failing = 0;
    while (!nap(h, ttl * 1000 / 5)) {
        uint64_t sent = mc_now_ms();
        int64_t left = 0;
        int rc = h->be->refresh(h, &left);
        if (rc == 0) {
            atomic_store(&h->valid_until_ms, sent + (uint64_t)left - SAFETY_MS);
            if (failing) MC_LOGI(TAG, "lease refreshed again");
            failing = 0;
            continue;
        }
        if (rc == -ENOENT) {
            why = "its lease expired in the store";
            break;
        }
        if (!failing++)
            MC_LOGW(TAG,
                    "cannot refresh the leader lease (%s unreachable); serving until %llu ms "
                    "from now at most",
                    h->be->name, (unsigned long long)(atomic_load(&h->valid_until_ms) - sent));
        if (mc_now_ms() >= atomic_load(&h->valid_until_ms)) {
            why = "its lease could not be refreshed in time";
            break;
        }
    }
    atomic_store(&h->leading, 0);
    atomic_store(&h->valid_until_ms, 0);
    pthread_mutex_lock(&h->mu);
    int stopping = h->stop;
    pthread_mutex_unlock(&h->mu);
    if (stopping) {
        h->be->resign(h); /* deletes the key: a standby takes over now */
        MC_LOGI(TAG, "resigned as leader of cluster '%s' (view %llu)", h->cluster,
                (unsigned long long)view);
    } else {
        atomic_fetch_add(&h->lost, 1);
        MC_LOGW(TAG, "lost leadership of cluster '%s' at view %llu: %s; serving nothing",
                h->cluster, (unsigned long long)view, why);
    }
    set_state(h, "standby", NULL, 0);
    if (h->cfg.on_change) h->cfg.on_change(h->cfg.arg, 0, 0);
}

/* Reads the leader's replication key; keeps it when it names view. */
static void learn_repl(mc_master_ha_t *h, uint64_t view)
{
    char *val = NULL;
    if (h->be->get_repl(h, &val) != 0) return;
    char addr[320];
    unsigned long long v = 0;
    if (sscanf(val, "%319s %llu", addr, &v) == 2 && v == view) {
        pthread_mutex_lock(&h->mu);
        if (h->leader_view == view) {
            snprintf(h->leader_repl, sizeof h->leader_repl, "%s", addr);
            h->repl_known = 1;
        }
        pthread_mutex_unlock(&h->mu);
    }
    free(val);
}

/* Waits while someone else leads. Returns when the key is gone, or on stop. */
static void follow(mc_master_ha_t *h, const char *leader, uint64_t view)
{
    set_state(h, "standby", leader, view);
    MC_LOGI(TAG, "standby in cluster '%s': leader %s at view %llu", h->cluster, leader,
            (unsigned long long)view);
    learn_repl(h, view);
    int failing = 0;
    while (!nap(h, STANDBY_POLL_MS)) {
        char *val = NULL;
        uint64_t cur = 0;
        int rc = h->be->read(h, &val, &cur);
        if (rc == -ENOENT) {
            MC_LOGI(TAG, "leader %s of view %llu is gone; campaigning", leader,
                    (unsigned long long)view);
            return;
        }
        if (rc) {
            failing = 1; /* the store's client logged the cause */
            continue;
        }
        if (failing) MC_LOGI(TAG, "%s reachable again", h->be->name);
        failing = 0;
        if (cur != view) { /* another term started meanwhile */
            view = cur;
            set_state(h, "standby", val, view);
            MC_LOGI(TAG, "new leader %s at view %llu", val, (unsigned long long)view);
        }
        free(val);
        pthread_mutex_lock(&h->mu);
        int known = h->repl_known;
        pthread_mutex_unlock(&h->mu);
        if (!known) learn_repl(h, view);
    }
}

static void *election_main(void *arg)
{
    mc_master_ha_t *h = arg;
    int failing = 0;
    for (;;) {
        pthread_mutex_lock(&h->mu);
        int stop = h->stop;
        pthread_mutex_unlock(&h->mu);
        if (stop) break;
        set_state(h, "candidate", NULL, 0);
        uint64_t t0 = mc_now_ms(), view = 0;
        char *leader = NULL;
        int rc = h->be->campaign(h, &view, &leader);
        if (rc == 0) {
            failing = 0;
            lead(h, view, t0);
        } else if (rc == -EEXIST) {
            failing = 0;
            follow(h, leader ? leader : "?", view);
        } else if (rc != -EAGAIN) {
            if (!failing++)
                MC_LOGW(TAG, "cannot campaign: %s unreachable; retrying quietly", h->be->name);
            nap(h, RETRY_MS);
        }
        free(leader);
    }
    return NULL;
}

int mc_master_ha_start(const mc_master_ha_config_t *cfg, mc_master_ha_t **out)
{
    *out = NULL;
    if (!cfg || !cfg->endpoints || !*cfg->endpoints || !cfg->advertise || !*cfg->advertise ||
        cfg->lease_ttl_s < 2) {
        MC_LOGE(TAG, "HA needs etcd endpoints, an advertised address and a lease of >= 2 s");
        return MC_ERR_INVALID_PARAMS;
    }
    mc_master_ha_t *h = calloc(1, sizeof *h);
    if (!h) return MC_ERR_INTERNAL;
    h->cfg = *cfg;
    snprintf(h->cluster, sizeof h->cluster, "%s",
             cfg->cluster_id && *cfg->cluster_id ? cfg->cluster_id : "mooncake_cluster");
    snprintf(h->me, sizeof h->me, "%s", cfg->advertise);
    if (cfg->repl_advertise) {
        snprintf(h->repl_adv, sizeof h->repl_adv, "%s", cfg->repl_advertise);
        h->cfg.repl_advertise = h->repl_adv;
    }
    h->state = "starting";
    int redis = cfg->backend && !strcmp(cfg->backend, "redis");
    if (redis) { /* the hash tag keeps both keys on one slot of a redis cluster */
        snprintf(h->key, sizeof h->key, "mooncake-store/{%s}/master_view", h->cluster);
        snprintf(h->vkey, sizeof h->vkey, "%s_version", h->key);
        snprintf(h->rkey, sizeof h->rkey, "mooncake-store/{%s}/master_repl", h->cluster);
        snprintf(h->ikey, sizeof h->ikey, "mooncake-store/{%s}/master_repl_isr", h->cluster);
        mc_redis_cfg_t rc;
        h->be = &redis_backend;
        if (mc_redis_parse_url(cfg->endpoints, &rc) || mc_redis_open(&rc, &h->redis)) {
            memset(&rc, 0, sizeof rc);
            free(h);
            return MC_ERR_INVALID_PARAMS;
        }
        memset(&rc, 0, sizeof rc); /* the password */
    } else {
        snprintf(h->key, sizeof h->key, "mooncake-store/%s/master_view", h->cluster);
        snprintf(h->rkey, sizeof h->rkey, "mooncake-store/%s/master_repl", h->cluster);
        snprintf(h->ikey, sizeof h->ikey, "mooncake-store/%s/master_repl_isr", h->cluster);
        h->be = &etcd_backend;
        if (mc_etcd_open(cfg->endpoints, &h->etcd)) {
            free(h);
            return MC_ERR_INVALID_PARAMS;
        }
    }
    pthread_mutex_init(&h->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&h->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&h->thr, NULL, election_main, h) != 0) {
        mc_etcd_close(h->etcd);
        mc_redis_close(h->redis);
        pthread_cond_destroy(&h->cv);
        pthread_mutex_destroy(&h->mu);
        free(h);
        return MC_ERR_INTERNAL;
    }
    h->running = 1;
    *out = h;
    return 0;
}

void mc_master_ha_stop(mc_master_ha_t *h)
{
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    h->stop = 1;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    if (h->running) pthread_join(h->thr, NULL);
    mc_etcd_close(h->etcd);
    mc_redis_close(h->redis);
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

int mc_master_ha_serving(void *arg, uint64_t now_ms, uint64_t *view)
{
    mc_master_ha_t *h = arg;
    *view = atomic_load(&h->view);
    return atomic_load(&h->leading) && now_ms < atomic_load(&h->valid_until_ms);
}

void mc_master_ha_info(mc_master_ha_t *h, mc_master_ha_info_t *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&h->mu);
    uint64_t view;
    int serving = mc_master_ha_serving(h, mc_now_ms(), &view);
    out->state = serving ? "serving" : strcmp(h->state, "serving") == 0 ? "standby" : h->state;
    out->role = serving ? "leader" : "standby";
    out->leader_known = h->leader_known;
    snprintf(out->leader, sizeof out->leader, "%s", h->leader);
    out->view = h->leader_view;
    out->repl_known = h->repl_known && h->leader_known;
    snprintf(out->leader_repl, sizeof out->leader_repl, "%s", h->leader_repl);
    pthread_mutex_unlock(&h->mu);
    out->elections_won = atomic_load(&h->won);
    out->leadership_lost = atomic_load(&h->lost);
}

int mc_master_ha_isr_put(mc_master_ha_t *h, uint64_t view, const char *val)
{
    return h->be->put_isr(h, view, val);
}

int mc_master_ha_isr_get(mc_master_ha_t *h, char **val)
{
    *val = NULL;
    return h->be->get_isr(h, val);
}
