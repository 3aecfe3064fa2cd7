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
#include "net_sock.h"

#define TAG "master_view"

struct mc_master_view {
    mc_etcd_t *etcd;
    char key[256];
    char addr[1024]; /* for logs */
};

int mc_master_view_is_ha(const char *addr)
{
    return addr && strncasecmp(addr, "etcd://", 7) == 0;
}

int mc_master_view_open(const char *addr, mc_master_view_t **out)
{
    *out = NULL;
    if (!mc_master_view_is_ha(addr)) return MC_ERR_INVALID_PARAMS;
    mc_master_view_t *v = calloc(1, sizeof *v);
    if (!v) return MC_ERR_INTERNAL;
    snprintf(v->addr, sizeof v->addr, "%s", addr);
    const char *ns = getenv("MC_STORE_CLUSTER_ID");
    snprintf(v->key, sizeof v->key, "mooncake-store/%s/master_view",
             ns && *ns ? ns : "mooncake_cluster");
    if (mc_etcd_open(addr + 7, &v->etcd)) {
        free(v);
        return MC_ERR_INVALID_PARAMS;
    }
    *out = v;
    return 0;
}

void mc_master_view_close(mc_master_view_t *v)
{
    if (!v) return;
    mc_etcd_close(v->etcd);
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
        size_t len = 0;
        mc_etcd_kv_t kv;
        int rc = mc_etcd_get(v->etcd, v->key, strlen(v->key), &val, &len, &kv, NULL);
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
                *view = (uint64_t)kv.create_rev;
                free(val);
                return 0;
            }
        }
        free(val);
        unreachable = rc != 0 && rc != -ENOENT;
        if (mc_now_ms() >= deadline) break;
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    MC_LOGW(TAG, "%s: %s after %llu ms (key %s)", v->addr,
            unreachable ? "etcd unreachable" : "no master leads", (unsigned long long)wait, v->key);
    return MC_ERR_RPC_FAIL;
}
