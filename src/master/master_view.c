/* master_view.c: the client side of HA masters: reads the leader's address
 * and view from etcd (master_view.h). */
#include "master_view.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base_env.h"
#include "base_log.h"
#include "base_time.h"
#include "mooncake/err.h"
#include "net_etcd.h"
#include "net_redis.h"
#include "net_sock.h"

#define TAG "master_view"

struct mc_master_view {
    mc_etcd_t *etcd;   /* etcd:// */
    mc_redis_t *redis; /* redis:// */
    char key[256], vkey[272];
    char addr[1024]; /* for logs (credentials of a redis URL are not kept) */
};

int mc_master_view_is_ha(const char *addr)
{
    return addr && (strncasecmp(addr, "etcd://", 7) == 0 || strncasecmp(addr, "redis://", 8) == 0);
}

/* The leader's address (malloc'd) and view: 0, -ENOENT, or another error. */
static int view_read(mc_master_view_t *v, char **val, uint64_t *view)
{
    size_t len = 0;
    if (v->etcd) {
        mc_etcd_kv_t kv;
        int rc = mc_etcd_get(v->etcd, v->key, strlen(v->key), val, &len, &kv, NULL);
        if (rc == 0) *view = (uint64_t)kv.create_rev;
        return rc;
    }
    int rc = mc_redis_get(v->redis, v->key, val, &len);
    if (rc) return rc;
    char *ver = NULL;
    *view = 0;
    if (mc_redis_get(v->redis, v->vkey, &ver, &len) == 0) *view = strtoull(ver, NULL, 10);
    free(ver);
    return 0;
}

int mc_master_view_open(const char *addr, mc_master_view_t **out)
{
    *out = NULL;
    if (!mc_master_view_is_ha(addr)) return MC_ERR_INVALID_PARAMS;
    mc_master_view_t *v = calloc(1, sizeof *v);
    if (!v) return MC_ERR_INTERNAL;
    const char *ns = getenv("MC_STORE_CLUSTER_ID");
    ns = ns && *ns ? ns : "mooncake_cluster";
    if (strncasecmp(addr, "redis://", 8) == 0) {
        mc_redis_cfg_t rc;
        snprintf(v->key, sizeof v->key, "mooncake-store/{%s}/master_view", ns);
        snprintf(v->vkey, sizeof v->vkey, "%s_version", v->key);
        int bad = mc_redis_parse_url(addr, &rc) || mc_redis_open(&rc, &v->redis);
        snprintf(v->addr, sizeof v->addr, "redis://%s:%u", rc.host, rc.port);
        memset(&rc, 0, sizeof rc); /* the password */
        if (bad) {
            free(v);
            return MC_ERR_INVALID_PARAMS;
        }
    } else {
        snprintf(v->addr, sizeof v->addr, "%s", addr);
        snprintf(v->key, sizeof v->key, "mooncake-store/%s/master_view", ns);
        if (mc_etcd_open(addr + 7, &v->etcd)) {
            free(v);
            return MC_ERR_INVALID_PARAMS;
        }
    }
    *out = v;
    return 0;
}

void mc_master_view_close(mc_master_view_t *v)
{
    if (!v) return;
    mc_etcd_close(v->etcd);
    mc_redis_close(v->redis);
    free(v);
}

int mc_master_view_resolve(void *arg, char *host, size_t hostlen, uint16_t *port, uint64_t *view)
{
    mc_master_view_t *v = arg;
    uint64_t wait = (uint64_t)mc_env_int("MC_MASTER_VIEW_WAIT_MS", 10000, 0, 3600000);
    uint64_t deadline = mc_now_ms() + wait;
    int unreachable = 0, told = 0;
    for (;;) {
        char *val = NULL;
        uint64_t cur = 0;
        int rc = view_read(v, &val, &cur);
        if (rc == 0) {
            char h[256];
            uint16_t p = 0;
            int bad = mc_net_split_hostport(val, h, sizeof h, &p) || !p || strlen(h) >= hostlen;
            if (bad && !told++) {
                MC_LOGW(TAG, "%s: malformed leader address '%.64s' under %s; ignored", v->addr, val,
                        v->key);
            } else if (!bad) {
                snprintf(host, hostlen, "%s", h);
                *port = p;
                *view = cur;
                free(val);
                return 0;
            }
        }
        free(val);
        unreachable = rc != 0 && rc != -ENOENT;
        if (unreachable && v->redis)
            break; /* net_redis said why; it does not come back by waiting */
        if (mc_now_ms() >= deadline) break;
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    MC_LOGW(TAG, "%s: %s after %llu ms (key %s)", v->addr,
            unreachable ? "etcd unreachable" : "no master leads", (unsigned long long)wait, v->key);
    return MC_ERR_RPC_FAIL;
}
