/* master_disk.h: the master's side of the SSD tier (master_disk.c,
 * docs/store.md "SSD tier"). Store clients set up with enable_ssd_offload
 * mount their local disk; the master hands them offload tasks for objects in
 * their DRAM segment (at put end, or at eviction with --offload_on_evict),
 * records the LOCAL_DISK replicas they report, serves them to readers in the
 * replica lists, and hands out promotions (--promotion_on_hit) and drops
 * (removed or overwritten keys). The disk index is kept apart from the
 * memory index: an object evicted from DRAM leaves the memory index as before
 * (journaled REMOVE) and lives on in the disk index, which the owners rebuild
 * after a master restart by re-registering what their disks hold.
 * master_disk_rpc.c serves these calls as the DISK_* methods.
 * Thread rule: any thread.
 * Errors: 0 or a negative MC_ERR_*; UNAVAILABLE_IN_CURRENT_MODE while the
 * master runs without --enable_offload. */
#ifndef MC_MASTER_DISK_H
#define MC_MASTER_DISK_H
#include <stddef.h>
#include <stdint.h>

#include "master_proto.h"
#include "master_service.h"

/* How long eviction keeps an object whose offload is queued or running
 * before it evicts it anyway. */
#define MC_MASTER_DISK_HOLD_MS 5000
/* Offload tasks queued per client at most (upstream's offloading_queue_limit). */
#define MC_MASTER_DISK_QUEUE_MAX 50000
/* Tasks of one kind per DISK_TASKS answer at most. */
#define MC_MASTER_DISK_TASKS_MAX 4096

typedef struct {
    uint8_t offload_on_evict, promotion_on_hit;
    uint32_t promotion_threshold;
} mc_master_disk_mode_t;

/* Mounts (or re-mounts) the disk `disk` of client: readers of its objects
 * ask `endpoint` ("host:port" of its staging server). *mode: how the master
 * runs the tier. */
int mc_master_disk_mount(mc_master_t *m, mc_uuid_t client, mc_uuid_t disk, const char *name,
                         const char *endpoint, uint64_t quota, mc_master_disk_mode_t *mode);
/* The client's disk is no longer served (its objects are kept, detached,
 * until the same disk mounts again). */
int mc_master_disk_unmount(mc_master_t *m, mc_uuid_t client);
/* How this master runs the tier, for a store about to set up (DISK_CONFIG):
 * *enabled 1 with --enable_offload (or --root_fs_dir); *root_fs_dir the
 * directory of --root_fs_dir ("" without), under which a store set up
 * without enable_ssd_offload keeps its disk. Never fails. */
void mc_master_disk_config(mc_master_t *m, int *enabled, const char **root_fs_dir);

/* Work for a disk's owner: objects to copy from its segment (key, address
 * in its segment, size, stamp), keys to delete, keys to promote. */
typedef struct {
    char **keys;
    uint64_t *addrs, *sizes, *stamps;
    size_t n;
    char **drops, **promotes;
    size_t ndrops, npromotes;
    size_t nalloc_; /* internal */
} mc_master_disk_tasks_t;
int mc_master_disk_tasks(mc_master_t *m, mc_uuid_t client, uint32_t max, mc_master_disk_tasks_t *t);
void mc_master_disk_tasks_free(mc_master_disk_tasks_t *t);
/* Copies the owner wrote: rescan 0 for finished tasks (accepted only while
 * the object still holds the bytes that were copied, same stamp), 1 for
 * records found on its disk at start. rcs[i]: 0 accepted, else the owner
 * deletes its copy. */
int mc_master_disk_add(mc_master_t *m, mc_uuid_t client, const char *const *keys,
                       const uint64_t *sizes, const uint64_t *stamps, size_t n, int rescan,
                       int32_t *rcs);
/* The owner is about to delete copies (its disk eviction, or a failed
 * offload): rcs[i] 0 it may, OBJECT_HAS_LEASE while a reader may be on its way. */
int mc_master_disk_drop(mc_master_t *m, mc_uuid_t client, const char *const *keys, size_t n,
                        uint64_t now_ms, int32_t *rcs);
/* A memory replica (PROCESSING) for an object held on disk only; the owner
 * writes it and ends it with mc_master_put_end (or revokes it). */
int mc_master_promote_start(mc_master_t *m, mc_uuid_t client, const char *key, uint64_t size,
                            const mc_replicate_config_t *cfg, uint64_t now_ms, mc_replica_t **out,
                            size_t *n);

typedef struct {
    uint64_t keys, bytes, clients, offloads, promotions;
    uint64_t promotions_deferred; /* refused: the pool at or past the high watermark */
} mc_master_disk_stats_t;
void mc_master_disk_stats(mc_master_t *m, mc_master_disk_stats_t *st);

/* ---- master_disk_rpc.c: the DISK_* methods and PROMOTE_START on the wire ---- */
#define MC_MASTER_DISK_NOT_MINE 1 /* not one of them */
#define MC_MASTER_DISK_BAD 2      /* the request did not decode; *why says why */
/* Serves one request, appending its reply to o. Returns the status answered
 * (0 or negative, for the counters; -ENOMEM when the reply could not be
 * encoded), MC_MASTER_DISK_NOT_MINE or MC_MASTER_DISK_BAD. */
int mc_master_disk_serve(mc_master_t *m, unsigned method, uint32_t req_id, const uint8_t *p,
                         size_t len, mc_mp_arena_t *a, mc_mp_buf_t *o, uint64_t now_ms,
                         const char **why);
#endif
