/* mooncake/meta.h: the transfer-engine metadata store, a key -> JSON text map
 * reached through a connection string:
 *   "P2PHANDSHAKE"              no store; peers exchange descriptors directly
 *   "http://host:port/metadata" client of the HTTP metadata protocol (also https://)
 * (etcd:// and redis:// are one more backend file each, in src/meta/.)
 * Thread rule: one mc_meta_t may be used from many threads at once. */
#ifndef MOONCAKE_META_H
#define MOONCAKE_META_H
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mc_meta mc_meta_t;

/* Opens the backend named by conn. Returns 0, -EINVAL for an unknown or
 * malformed string, -ENOMEM. */
int mc_meta_open(const char *conn, mc_meta_t **out);
void mc_meta_close(mc_meta_t *m);
/* 1 when conn was P2PHANDSHAKE (get/put/del then return -ENOTSUP). */
int mc_meta_is_p2p(const mc_meta_t *m);
/* Value of key as a malloc'd NUL-terminated string (caller frees).
 * -ENOENT when absent, -EIO when the store cannot be reached or answers otherwise. */
int mc_meta_get(mc_meta_t *m, const char *key, char **val);
/* Stores val (JSON text) under key. -EEXIST when the store refuses a
 * duplicate rpc_meta key, -EIO on other failures. */
int mc_meta_put(mc_meta_t *m, const char *key, const char *val);
/* Deletes key. -ENOENT when absent, -EIO on failure. */
int mc_meta_del(mc_meta_t *m, const char *key);
/* Writes the full key "mooncake/[<MC_METADATA_CLUSTER_ID>/]<kind>/<name>" into buf
 * (kind is "ram" or "rpc_meta"). Returns -ENAMETOOLONG when it does not fit. */
int mc_meta_key(char *buf, size_t len, const char *kind, const char *name);

#ifdef __cplusplus
}
#endif
#endif
