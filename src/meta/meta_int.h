/* Internal backend interface of the metadata store: each backend is one file
 * that fills an mc__meta_ops_t. Thread rule: ops are called from many threads. */
#ifndef MC_META_INT_H
#define MC_META_INT_H
#include <string.h>

#include "mooncake/meta.h"
#include "net_redis.h"

typedef struct {
    const char *name;
    int (*get)(void *impl, const char *key, char **val);
    int (*put)(void *impl, const char *key, const char *val);
    int (*del)(void *impl, const char *key);
    void (*close)(void *impl);
    /* Optional (NULL: -ENOTSUP): starts the one watch of this handle on every
     * key under prefix; stopped by unwatch or close. */
    int (*watch)(void *impl, const char *prefix, mc_meta_watch_cb cb, void *arg);
    void (*unwatch)(void *impl);
} mc__meta_ops_t;

struct mc_meta {
    const mc__meta_ops_t *ops; /* NULL for P2PHANDSHAKE */
    void *impl;
};

/* What a connection string names (mc__meta_parse). */
typedef enum {
    MC__META_P2P,
    MC__META_HTTP,  /* arg: the whole URL */
    MC__META_ETCD,  /* arg: the endpoint list (after "etcd://", or the whole string) */
    MC__META_REDIS, /* redis: the parsed server, user, password, db */
} mc__meta_kind_t;

typedef struct {
    mc__meta_kind_t kind;
    const char *arg; /* points into the parsed string */
    mc_redis_cfg_t redis;
} mc__meta_conn_t;

/* Classifies conn (see meta.h); for redis:// parses the URL (curl's parser;
 * user and password are URL-decoded) and applies MC_REDIS_USERNAME,
 * MC_REDIS_PASSWORD, MC_REDIS_DB_INDEX where the URL does not say. Returns 0
 * or -EINVAL (logged once). No I/O. */
int mc__meta_parse(const char *conn, mc__meta_conn_t *out);

/* Backend constructors: return 0 and fill *ops and *impl, or a negative errno. */
int mc__meta_http_open(const char *url, const mc__meta_ops_t **ops, void **impl);
int mc__meta_etcd_open(const char *endpoints, const mc__meta_ops_t **ops, void **impl);
int mc__meta_redis_open(const mc_redis_cfg_t *cfg, const mc__meta_ops_t **ops, void **impl);

/* The duplicate rule of rpc_meta records (as the HTTP metadata server): a key
 * containing "rpc_meta" that exists keeps its value; putting the same bytes
 * again succeeds, different bytes give -EEXIST. */
static inline int mc__meta_is_rpc_key(const char *key)
{
    return key && strstr(key, "rpc_meta") != NULL;
}
#endif
