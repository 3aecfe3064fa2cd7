/* master_view.h: finding the leader of HA masters, for clients. A master
 * address of the form "etcd://h1:2379;h2:2379" (',' also separates) names the
 * etcd cluster where the masters elect their leader; the leader is the value
 * of "mooncake-store/<ns>/master_view" ("host:port"), its view the key's
 * create revision. "redis://[user:pw@]host:port[/db]" names a redis server
 * instead: keys "mooncake-store/{<ns>}/master_view" and "..._version". ns is MC_STORE_CLUSTER_ID, else "mooncake_cluster", as
 * upstream's clients; the masters' --cluster_id must match.
 * Thread rule: mc_master_view_resolve may be called from many threads (the
 * etcd client is thread-safe); open and close from one. */
#ifndef MC_MASTER_VIEW_H
#define MC_MASTER_VIEW_H
#include <stddef.h>
#include <stdint.h>

typedef struct mc_master_view mc_master_view_t;

/* 1 when addr names HA masters (etcd:// or redis://), else 0. */
int mc_master_view_is_ha(const char *addr);
/* Opens the etcd client for addr. MC_ERR_INVALID_PARAMS for a bad list. */
int mc_master_view_open(const char *addr, mc_master_view_t **out);
void mc_master_view_close(mc_master_view_t *v);
/* Reads the current leader; while there is none (an election in progress),
 * reads again every 100 ms for up to MC_MASTER_VIEW_WAIT_MS (default 10000).
 * Fits mc_master_resolve_fn. MC_ERR_RPC_FAIL (one line) when no leader
 * appears in time or etcd cannot be reached. */
int mc_master_view_resolve(void *v, char *host, size_t hostlen, uint16_t *port, uint64_t *view);
#endif
