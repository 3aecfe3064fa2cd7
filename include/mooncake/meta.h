/* mooncake/meta.h: the transfer-engine metadata store, a key -> JSON text map
 * reached through a connection string (docs/metadata.md):
 *   "P2PHANDSHAKE"              no store; peers exchange descriptors directly
 *   "http://host:port/metadata" client of the HTTP metadata protocol (also https://)
 *   "etcd://h1:2379;h2:2379"    etcd v3 (JSON gateway); ',' also separates; a
 *                               string without "://" (e.g. "h1:2379") is etcd too
 *   "redis://[user:password@]host:port[/db]"  MC_REDIS_USERNAME, MC_REDIS_PASSWORD,
 *                               MC_REDIS_DB_INDEX apply where the URL is silent
 * Every backend keeps the same keys and values; a key containing "rpc_meta"
 * follows the HTTP server's duplicate rule (see mc_meta_put). A backend returns
 * stored values as they are: callers validate the JSON (and log what they reject).
 * Thread rule: one mc_meta_t may be used from many threads at once. */
#ifndef MOONCAKE_META_H
#define MOONCAKE_META_H
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mc_meta mc_meta_t;

/* Opens the backend named by conn. Returns 0, -EINVAL for an unknown or
 * malformed string, -ENOMEM; redis connects (and authenticates) here: -EIO
 * when unreachable, -EACCES when AUTH fails. http and etcd make no request. */
int mc_meta_open(const char *conn, mc_meta_t **out);
void mc_meta_close(mc_meta_t *m);
/* 1 when conn was P2PHANDSHAKE (get/put/del then return -ENOTSUP). */
int mc_meta_is_p2p(const mc_meta_t *m);
/* Value of key as a malloc'd NUL-terminated string (caller frees).
 * -ENOENT when absent, -EIO when the store cannot be reached or answers otherwise. */
int mc_meta_get(mc_meta_t *m, const char *key, char **val);
/* Stores val (JSON text) under key. For a key containing "rpc_meta" that
 * exists: 0 when it holds exactly val, else -EEXIST and the value is kept
 * (atomic on etcd and redis). -EIO on other failures. */
int mc_meta_put(mc_meta_t *m, const char *key, const char *val);
/* Deletes key. -ENOENT when absent, -EIO on failure. */
int mc_meta_del(mc_meta_t *m, const char *key);
/* Watch callback: key (NUL-terminated) was written (deleted=0) or deleted;
 * key NULL means events may have been lost (the stream reconnected): forget
 * everything derived from earlier values. Runs on the watch thread. */
typedef void (*mc_meta_watch_cb)(void *arg, const char *key, int deleted);
/* Starts the (single) watch of m on every key that starts with prefix and
 * waits up to 3 s for the store to confirm it. 0; -ENOTSUP when the backend
 * has no change feed (P2PHANDSHAKE, http, redis); -EBUSY when m already
 * watches; -ETIMEDOUT when not confirmed yet (it keeps trying in the
 * background); -ENOMEM. */
int mc_meta_watch(mc_meta_t *m, const char *prefix, mc_meta_watch_cb cb, void *arg);
/* Stops the watch (no callback runs after it returns); no-op without one.
 * Must not be called from the callback. mc_meta_close also stops it. */
void mc_meta_unwatch(mc_meta_t *m);
/* Deletes both records of a segment ("ram" and "rpc_meta" keys of name,
 * cluster prefix included), as the master's
 * --enable_metadata_cleanup_on_timeout does for a client that expired.
 * Returns 0 when both are gone (absent counts as gone), else the first error. */
int mc_meta_del_segment(mc_meta_t *m, const char *name);
/* Writes the full key "mooncake/[<MC_METADATA_CLUSTER_ID>/]<kind>/<name>" into buf
 * (kind is "ram" or "rpc_meta"). Returns -ENAMETOOLONG when it does not fit. */
int mc_meta_key(char *buf, size_t len, const char *kind, const char *name);

#ifdef __cplusplus
}
#endif
#endif
