/* meta_redis.c: the `redis://` backend of the metadata store: plain GET, SET
 * and DEL of the keys (e.g. "mooncake/ram/<seg>") with the JSON text as the
 * value, as upstream's redis plugin. put of an rpc_meta key runs a small Lua
 * script (net_redis's create-or-same) so that the duplicate rule is atomic.
 * Redis has no change feed here (keyspace notifications need server
 * configuration), so there is no watch: cached descriptors are refreshed when
 * a transfer finds them stale, as with the http backend. */
#include "meta_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "net_redis.h"

static int mr_get(void *impl, const char *key, char **val)
{
    return mc_redis_get(impl, key, val, NULL);
}

static int mr_put(void *impl, const char *key, const char *val)
{
    size_t len = strlen(val);
    return mc__meta_is_rpc_key(key) ? mc_redis_create_or_same(impl, key, val, len)
                                    : mc_redis_set(impl, key, val, len);
}

static int mr_del(void *impl, const char *key)
{
    return mc_redis_del(impl, key);
}

static void mr_close(void *impl)
{
    mc_redis_close(impl);
}

static const mc__meta_ops_t mr_ops = {
    .name = "redis",
    .get = mr_get,
    .put = mr_put,
    .del = mr_del,
    .close = mr_close,
};

/* Connects now (net_redis: -EIO unreachable, -EACCES auth refused, one line each). */
int mc__meta_redis_open(const mc_redis_cfg_t *cfg, const mc__meta_ops_t **ops, void **impl)
{
    mc_redis_t *r;
    int rc = mc_redis_open(cfg, &r);
    if (rc) return rc;
    *ops = &mr_ops;
    *impl = r;
    return 0;
}
