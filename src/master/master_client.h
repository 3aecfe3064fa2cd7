/* master_client.h: the client side of the master RPC, as typed calls. A
 * client object holds up to MC_MASTER_LANES (default 4, 1..64) connections,
 * each opened at the first call of a thread dealt to it; the threads on one
 * connection pipeline their requests (each carries a request id; replies are
 * routed to callers by it), so concurrent callers never wait for each other's
 * round trips.
 * Thread rule: all calls are thread-safe; mc_master_client_close is last.
 * Errors: 0 or a negative MC_ERR_* (transport failure MC_ERR_RPC_FAIL, no
 * answer within MC_RPC_TIMEOUT_MS (default 30000) MC_ERR_RPC_TIMEOUT, a master
 * of another protocol version MC_ERR_INVALID_VERSION); the master's own error
 * codes are passed through unchanged. Broken connections are re-established
 * on the next call. */
#ifndef MC_MASTER_CLIENT_H
#define MC_MASTER_CLIENT_H
#include <stddef.h>
#include <stdint.h>

#include "master_move.h"
#include "master_service.h"

typedef struct mc_master_client mc_master_client_t;

/* Connects to "host:port" and checks the master's version. */
int mc_master_client_connect(const char *addr, mc_master_client_t **out);

/* Finds the master to talk to: writes its host and port and the leader view
 * it was elected under (0 without HA). Called with the client's lock held
 * before every (re)connect, so it may block up to its own timeout. Returns 0
 * or a negative MC_ERR_* (the connect fails with it). */
typedef int (*mc_master_resolve_fn)(void *arg, char *host, size_t hostlen, uint16_t *port,
                                    uint64_t *view);
/* The same with the address found by resolve (addr is only for logs; may be
 * NULL). A reply under a view older than the newest seen fails its
 * connection, and the next call resolves again: so a client never acts on a
 * replaced leader's answer. arg must outlive the client. */
int mc_master_client_connect_resolved(const char *addr, mc_master_resolve_fn resolve, void *arg,
                                      mc_master_client_t **out);
void mc_master_client_close(mc_master_client_t *c);
/* When (mc_now_ms) the newest request that a serving master answered was sent,
 * any method and status but "not the leader" (-1010); 0 before any. An HA
 * leader stops serving at least a second before etcd may expire its lease
 * (master_ha.c SAFETY_MS), so no other leader can have been elected before
 * this time + 1 s: what the store's lease cache relies on (store_lcache.h). */
uint64_t mc_master_client_served_ms(mc_master_client_t *c);

int mc_master_client_mount_segment(mc_master_client_t *c, const mc_segment_t *seg,
                                   mc_uuid_t client);
int mc_master_client_remount_segments(mc_master_client_t *c, const mc_segment_t *segs, size_t n,
                                      mc_uuid_t client);
int mc_master_client_unmount_segment(mc_master_client_t *c, mc_uuid_t segment, mc_uuid_t client);
int mc_master_client_ping(mc_master_client_t *c, mc_uuid_t client, int *status);

/* Replica arrays returned through out-params are malloc'd; free with free(). */
int mc_master_client_put_start(mc_master_client_t *c, mc_uuid_t client, const char *key,
                               uint64_t size, const mc_replicate_config_t *cfg, mc_replica_t **out,
                               size_t *n);
int mc_master_client_put_end(mc_master_client_t *c, mc_uuid_t client, const char *key);
int mc_master_client_put_revoke(mc_master_client_t *c, mc_uuid_t client, const char *key);
int mc_master_client_upsert_start(mc_master_client_t *c, mc_uuid_t client, const char *key,
                                  uint64_t size, const mc_replicate_config_t *cfg,
                                  mc_replica_t **out, size_t *n);
int mc_master_client_get_replicas(mc_master_client_t *c, const char *key, mc_replica_t **out,
                                  size_t *n, uint64_t *lease_ttl_ms);
/* 1 exists, 0 not, negative error. */
int mc_master_client_exist(mc_master_client_t *c, const char *key);
int mc_master_client_remove(mc_master_client_t *c, const char *key, int force);
/* Count removed (>= 0) or negative error. */
int64_t mc_master_client_remove_all(mc_master_client_t *c, int force);
int64_t mc_master_client_remove_by_regex(mc_master_client_t *c, const char *regex, int force);

/* Batch forms: one round trip for n keys; per-key results in rcs[i] (0 or
 * negative), replicas in reps[i]/nreps[i] (malloc'd each). The call's own
 * return is 0 unless the round trip itself failed. */
int mc_master_client_batch_put_start(mc_master_client_t *c, mc_uuid_t client,
                                     const char *const *keys, const uint64_t *sizes, size_t n,
                                     const mc_replicate_config_t *cfg, int *rcs,
                                     mc_replica_t **reps, size_t *nreps);
/* Batch insert-or-update: per key as mc_master_client_upsert_start. */
int mc_master_client_batch_upsert_start(mc_master_client_t *c, mc_uuid_t client,
                                        const char *const *keys, const uint64_t *sizes, size_t n,
                                        const mc_replicate_config_t *cfg, int *rcs,
                                        mc_replica_t **reps, size_t *nreps);
int mc_master_client_batch_put_end(mc_master_client_t *c, mc_uuid_t client, const char *const *keys,
                                   size_t n, int *rcs);
int mc_master_client_batch_put_revoke(mc_master_client_t *c, mc_uuid_t client,
                                      const char *const *keys, size_t n, int *rcs);
int mc_master_client_batch_get_replicas(mc_master_client_t *c, const char *const *keys, size_t n,
                                        int *rcs, mc_replica_t **reps, size_t *nreps,
                                        uint64_t *lease_ttl_ms);
/* rcs[i]: 1 exists, 0 not, negative error. */
int mc_master_client_batch_exist(mc_master_client_t *c, const char *const *keys, size_t n,
                                 int *rcs);
int mc_master_client_batch_remove(mc_master_client_t *c, const char *const *keys, size_t n,
                                  int force, int *rcs);
/* BATCH_REPLICA_CLEAR (mc_master_replica_clear per key; segment NULL/"": all). */
int mc_master_client_batch_replica_clear(mc_master_client_t *c, mc_uuid_t client,
                                         const char *const *keys, size_t n, const char *segment,
                                         int *rcs);

/* ---- the SSD tier (master_disk.h; docs/protocol.md DISK_*) ---- */
/* *mode: how the master runs the tier. UNAVAILABLE_IN_CURRENT_MODE: the
 * master has no --enable_offload. */
int mc_master_client_disk_mount(mc_master_client_t *c, mc_uuid_t client, mc_uuid_t disk,
                                const char *name, const char *endpoint, uint64_t quota,
                                int *offload_on_evict, int *promotion_on_hit,
                                uint32_t *promotion_threshold);
int mc_master_client_disk_unmount(mc_master_client_t *c, mc_uuid_t client);
/* How the master runs the tier (DISK_CONFIG): *enabled, and its
 * --root_fs_dir into root[0..cap) ("" without). A master older than the
 * method answers an error. */
int mc_master_client_disk_config(mc_master_client_t *c, mc_uuid_t client, int *enabled, char *root,
                                 size_t cap);
/* Work for this client's disk; arrays malloc'd (free with
 * mc_master_client_disk_tasks_free). */
typedef struct {
    char **keys;
    uint64_t *addrs, *sizes, *stamps;
    size_t n;
    char **drops, **promotes;
    size_t ndrops, npromotes;
} mc_master_client_disk_tasks_t;
int mc_master_client_disk_tasks(mc_master_client_t *c, mc_uuid_t client, uint32_t max,
                                mc_master_client_disk_tasks_t *t);
void mc_master_client_disk_tasks_free(mc_master_client_disk_tasks_t *t);
int mc_master_client_disk_add(mc_master_client_t *c, mc_uuid_t client, const char *const *keys,
                              const uint64_t *sizes, const uint64_t *stamps, size_t n, int rescan,
                              int *rcs);
int mc_master_client_disk_drop(mc_master_client_t *c, mc_uuid_t client, const char *const *keys,
                               size_t n, int *rcs);
int mc_master_client_promote_start(mc_master_client_t *c, mc_uuid_t client, const char *key,
                                   uint64_t size, const mc_replicate_config_t *cfg,
                                   mc_replica_t **out, size_t *n);

/* ---- move tasks of drain jobs (master_move.h; docs/protocol.md TASK_*) ---- */
/* Up to max tasks for this client; *out malloc'd (mc_master_tasks_free), *n may be 0. */
int mc_master_client_task_fetch(mc_master_client_t *c, mc_uuid_t client, uint32_t max,
                                mc_master_task_t **out, size_t *n);
/* Reports task id done (rc 0: the target holds the bytes). */
int mc_master_client_task_complete(mc_master_client_t *c, mc_uuid_t client, uint64_t id, int rc);
/* Upstream's CreateCopyTask / CreateMoveTask / QueryTask (TASK_COPY,
 * TASK_MOVE, TASK_QUERY; mc_master_copy_task & co. give the errors). */
int mc_master_client_copy_task(mc_master_client_t *c, const char *key, const char *const *targets,
                               size_t n, mc_uuid_t *task);
int mc_master_client_move_task(mc_master_client_t *c, const char *key, const char *source,
                               const char *target, mc_uuid_t *task);
int mc_master_client_task_query(mc_master_client_t *c, mc_uuid_t task, mc_master_task_info_t *out);
#endif
