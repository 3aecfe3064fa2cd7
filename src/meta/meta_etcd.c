/* meta_etcd.c: the `etcd://` backend of the metadata store (also a connection
 * string without a scheme, as upstream). Keys are stored verbatim (e.g.
 * "mooncake/ram/<seg>"), values are the JSON text as given, so etcdctl and
 * upstream processes on the same cluster read the same records.
 *
 * put of an rpc_meta key is one transaction: create when create_revision is 0,
 * else read the current value; equal bytes are success, different ones
 * -EEXIST (the HTTP server's duplicate rule, without its read-then-write race).
 * The watch op streams every change under a prefix (net_etcd's watch thread)
 * and hands keys to the caller's callback: the transfer engine uses it to
 * forget cached descriptors of peers that re-registered. */
#include "meta_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base_log.h"
#include "net_etcd.h"

#define TAG "meta"
#define ME_WATCH_WAIT_MS 3000

typedef struct {
    mc_etcd_t *etcd;
    pthread_mutex_t lock; /* guards watch */
    mc_etcd_watch_t *watch;
    mc_meta_watch_cb cb;
    void *arg;
} me_t;

static int me_get(void *impl, const char *key, char **val)
{
    me_t *m = impl;
    size_t len;
    return mc_etcd_get(m->etcd, key, strlen(key), val, &len, NULL, NULL);
}

static int me_put(void *impl, const char *key, const char *val)
{
    me_t *m = impl;
    size_t len = strlen(val);
    if (!mc__meta_is_rpc_key(key)) return mc_etcd_put(m->etcd, key, strlen(key), val, len, 0, NULL);
    char *cur = NULL;
    size_t curlen = 0;
    int rc = mc_etcd_create(m->etcd, key, strlen(key), val, len, 0, &cur, &curlen, NULL, NULL);
    if (rc == -EEXIST && cur && curlen == len && !memcmp(cur, val, len)) rc = 0;
    if (rc == -EEXIST) MC_LOGD(TAG, "etcd put '%s': a different rpc_meta record exists; kept", key);
    free(cur);
    return rc;
}

static int me_del(void *impl, const char *key)
{
    me_t *m = impl;
    return mc_etcd_del(m->etcd, key, strlen(key), 0, NULL, NULL);
}

/* net_etcd event -> the caller's (key as a C string; NULL for a reset). */
static void me_on_event(void *arg, const mc_etcd_event_t *ev)
{
    me_t *m = arg;
    if (ev->type == MC_ETCD_EV_RESET) {
        m->cb(m->arg, NULL, 0);
        return;
    }
    char *key = strndup(ev->key, ev->keylen);
    if (!key) { /* cannot name it: make the receiver forget everything */
        m->cb(m->arg, NULL, 0);
        return;
    }
    m->cb(m->arg, key, ev->type == MC_ETCD_EV_DELETE);
    free(key);
}

static int me_watch(void *impl, const char *prefix, mc_meta_watch_cb cb, void *arg)
{
    me_t *m = impl;
    pthread_mutex_lock(&m->lock);
    int rc = -EBUSY;
    if (m->watch) goto out;
    m->cb = cb;
    m->arg = arg;
    rc = mc_etcd_watch_start(m->etcd, prefix, strlen(prefix), 1, 0, me_on_event, m, &m->watch);
    if (rc) goto out;
    rc = mc_etcd_watch_wait_created(m->watch, ME_WATCH_WAIT_MS);
    if (rc)
        MC_LOGW(TAG, "etcd watch on '%s' not confirmed within %d ms; it keeps trying", prefix,
                ME_WATCH_WAIT_MS);
out:
    pthread_mutex_unlock(&m->lock);
    return rc;
}

static void me_unwatch(void *impl)
{
    me_t *m = impl;
    pthread_mutex_lock(&m->lock);
    mc_etcd_watch_t *w = m->watch;
    m->watch = NULL;
    pthread_mutex_unlock(&m->lock);
    mc_etcd_watch_stop(w);
}

static void me_close(void *impl)
{
    me_t *m = impl;
    if (!m) return;
    me_unwatch(m);
    mc_etcd_close(m->etcd);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static const mc__meta_ops_t me_ops = {
    .name = "etcd",
    .get = me_get,
    .put = me_put,
    .del = me_del,
    .close = me_close,
    .watch = me_watch,
    .unwatch = me_unwatch,
};

/* Opens the etcd backend on the endpoint list (net_etcd's syntax). No request
 * is made: an unreachable cluster shows at the first get/put, in one line. */
int mc__meta_etcd_open(const char *endpoints, const mc__meta_ops_t **ops, void **impl)
{
    me_t *m = calloc(1, sizeof *m);
    if (!m) return -ENOMEM;
    int rc = mc_etcd_open(endpoints, &m->etcd);
    if (rc) {
        free(m);
        return rc;
    }
    pthread_mutex_init(&m->lock, NULL);
    *ops = &me_ops;
    *impl = m;
    return 0;
}
