/* master_service.h: the master's state machine, free of I/O: segments and
 * their allocators, the sharded object index, two-phase puts, read leases,
 * removal, eviction and client liveness. The RPC layer (master_rpc.c) and the
 * admin HTTP (master_admin.c) call it; unit tests drive it directly with a fake
 * clock (every call takes `now_ms`).
 * Thread rule: every function may be called from many threads at once
 * (index shards and the segment table have their own locks).
 * Errors: 0 or a negative MC_ERR_* from mooncake/err.h. */
#ifndef MC_MASTER_SERVICE_H
#define MC_MASTER_SERVICE_H
#include <stddef.h>
#include <stdint.h>

#include "mooncake/err.h"

#define MC_MASTER_VERSION "2.0.0" /* checked by clients at connect (INVALID_VERSION) */
#define MC_NAME_MAX 256

typedef struct {
    uint64_t hi, lo;
} mc_uuid_t;

typedef struct {
    mc_uuid_t id;                  /* chosen by the client */
    char name[MC_NAME_MAX];        /* the client's local_hostname, e.g. "10.0.0.5:12345" */
    uint64_t base, size;           /* address range in the owner process */
    char te_endpoint[MC_NAME_MAX]; /* TE segment name readers open */
    char protocol[16];             /* "tcp" */
    char host_id[128];
} mc_segment_t;

enum { MC_SOFT_PIN_PRESERVE = 0, MC_SOFT_PIN_ENABLE = 1, MC_SOFT_PIN_DISABLE = 2 };

typedef struct {
    uint32_t replica_num;    /* >= 1 */
    uint8_t soft_pin_action; /* MC_SOFT_PIN_* */
    int has_soft_pin_ttl;
    uint64_t soft_pin_ttl_ms;
    int with_hard_pin;
    size_t npreferred;
    const char *const *preferred_segments; /* segment names, tried first, in order */
    int prefer_alloc_in_same_node;
    const char *host_id; /* writer's host, for prefer_alloc_in_same_node; may be NULL */
} mc_replicate_config_t;

enum { MC_REPLICA_PROCESSING = 2, MC_REPLICA_COMPLETE = 3 };
/* Replica kinds, upstream's ReplicaType numbers. */
enum { MC_REPLICA_MEMORY = 0, MC_REPLICA_LOCAL_DISK = 2 };

typedef struct {
    uint64_t id;
    uint64_t addr, size;        /* LOCAL_DISK: addr 0 */
    char endpoint[MC_NAME_MAX]; /* MEMORY: TE segment name holding it; LOCAL_DISK: the
                                   owner's staging server "host:port" */
    int status;                 /* MC_REPLICA_* */
    int kind;                   /* MC_REPLICA_MEMORY or MC_REPLICA_LOCAL_DISK */
} mc_replica_t;

enum { MC_CLIENT_OK = 1, MC_CLIENT_NEED_REMOUNT = 2 };

typedef enum { MC_ALLOC_RANDOM = 0, MC_ALLOC_FREE_RATIO_FIRST = 1 } mc_alloc_strategy_t;

typedef struct {
    uint64_t default_kv_lease_ttl_ms;      /* 10000 */
    uint64_t default_kv_soft_pin_ttl_ms;   /* 1800000 */
    uint64_t max_kv_soft_pin_ttl_ms;       /* 86400000 */
    int allow_evict_soft_pinned_objects;   /* 1 */
    double eviction_ratio;                 /* 0.05 */
    double eviction_high_watermark_ratio;  /* 0.90 */
    uint64_t client_ttl_ms;                /* 10000 */
    uint64_t put_start_discard_timeout_ms; /* 30000 */
    uint64_t put_start_release_timeout_ms; /* 600000 */
    mc_alloc_strategy_t allocation_strategy;
    /* A gap of more than this between two ticks means the master itself was
     * stopped or starved: client deadlines are extended by the gap rather than
     * expired. 0 (the default here; the daemon sets 1000) turns that off, for
     * tests that drive the tick with a fake clock. */
    uint64_t stall_threshold_ms;
    /* Called on the tick thread for each segment of an expired client, once
     * it is unmounted (the daemon deletes its metadata records there, with
     * --enable_metadata_cleanup_on_timeout). Must not block. NULL: none. */
    void (*on_segment_expired)(void *arg, const mc_segment_t *seg);
    void *on_segment_expired_arg;
    /* SSD tier (master_disk.c): clients with enable_ssd_offload keep objects
     * of their segment on their local disk as LOCAL_DISK replicas. */
    int enable_offload;                /* false: DISK_* requests are refused */
    int offload_on_evict;              /* false: offload at put end instead */
    int promotion_on_hit;              /* copy disk-only objects back to DRAM */
    int promotion_admission_threshold; /* 2: gets of a disk-only object before */
    /* upstream's legacy --root_fs_dir: the tier is on, and stores set up
     * without enable_ssd_offload put theirs under this directory ("": none) */
    char root_fs_dir[1024];
} mc_master_config_t;

/* Fills cfg with upstream's defaults. */
void mc_master_config_default(mc_master_config_t *cfg);

typedef struct mc_master mc_master_t;

int mc_master_new(const mc_master_config_t *cfg, mc_master_t **out);
void mc_master_free(mc_master_t *m);

/* ---- segments and clients ---- */
/* Adds a segment owned by client (same id again: 0). */
int mc_master_mount_segment(mc_master_t *m, const mc_segment_t *seg, mc_uuid_t client,
                            uint64_t now_ms);
/* Re-adds all of a client's segments and marks it alive (after NEED_REMOUNT). */
int mc_master_remount_segments(mc_master_t *m, const mc_segment_t *segs, size_t n, mc_uuid_t client,
                               uint64_t now_ms);
/* Drops a segment: replicas on it go, objects left without one disappear. Unknown id: 0. */
int mc_master_unmount_segment(mc_master_t *m, mc_uuid_t segment, mc_uuid_t client);
/* Forgets every client and unmounts every segment (objects go with them), for
 * a master whose leader term changed (HA). why goes into the log lines. */
void mc_master_clear(mc_master_t *m, const char *why);
/* Heartbeat: extends the client's deadline; *status is MC_CLIENT_OK when it is
 * in the alive set (filled only by remount), else MC_CLIENT_NEED_REMOUNT. */
int mc_master_ping(mc_master_t *m, mc_uuid_t client, uint64_t now_ms, int *status);

/* ---- objects ---- */
/* Allocates replicas (PROCESSING) for a new key of `size` bytes. Returns
 * MC_ERR_OBJECT_ALREADY_EXISTS for an existing key (unless it is a zombie put
 * older than the discard timeout, which is preempted), MC_ERR_NO_AVAILABLE_HANDLE
 * when nothing could be allocated even after eviction. *out is malloc'd. */
int mc_master_put_start(mc_master_t *m, mc_uuid_t client, const char *key, uint64_t size,
                        const mc_replicate_config_t *cfg, uint64_t now_ms, mc_replica_t **out,
                        size_t *n);
/* Marks the writer's replicas COMPLETE (ILLEGAL_CLIENT for another client,
 * INVALID_WRITE when no put is in progress; a repeated end after success: 0). */
int mc_master_put_end(mc_master_t *m, mc_uuid_t client, const char *key, uint64_t now_ms);
/* Drops the writer's PROCESSING replicas; the object goes if none is left. */
int mc_master_put_revoke(mc_master_t *m, mc_uuid_t client, const char *key);
/* Insert or update: a new key is a put; same size with no read lease running
 * reuses the buffers; otherwise (another size, or a lease) the old replicas go
 * and new ones are allocated, the old ranges parked until the lease ends so
 * readers under it never see their bytes change. OBJECT_REPLICA_BUSY while
 * another write or a move holds the object. */
int mc_master_upsert_start(mc_master_t *m, mc_uuid_t client, const char *key, uint64_t size,
                           const mc_replicate_config_t *cfg, uint64_t now_ms, mc_replica_t **out,
                           size_t *n);
/* COMPLETE replicas of key and the lease granted (now + default lease TTL).
 * OBJECT_NOT_FOUND, or REPLICA_IS_NOT_READY while only in-progress replicas exist. */
int mc_master_get_replicas(mc_master_t *m, const char *key, uint64_t now_ms, mc_replica_t **out,
                           size_t *n, uint64_t *lease_ttl_ms);
/* 1 when a readable replica exists (and grants a lease), 0 when not. */
int mc_master_exist(mc_master_t *m, const char *key, uint64_t now_ms);
/* Removal rules of upstream: OBJECT_NOT_FOUND, OBJECT_HAS_LEASE (unless force),
 * REPLICA_IS_NOT_READY (even with force). */
int mc_master_remove(mc_master_t *m, const char *key, int force, uint64_t now_ms);
/* Upstream's BatchReplicaClear for one key: drops the COMPLETE replicas of key
 * on segment (its name or TE endpoint; NULL or "": every replica, and the
 * object with them, as remove) when client wrote it and no read lease is
 * active. The object goes when no replica is left. 0 when cleared, else
 * OBJECT_NOT_FOUND, ILLEGAL_CLIENT (another client wrote it), OBJECT_HAS_LEASE,
 * REPLICA_IS_NOT_READY (a write in progress), REPLICA_NOT_FOUND (none on segment). */
int mc_master_replica_clear(mc_master_t *m, mc_uuid_t client, const char *key, const char *segment,
                            uint64_t now_ms);
/* Removes every removable object (lease expired or force, all replicas
 * complete); returns the count (>= 0). */
int64_t mc_master_remove_all(mc_master_t *m, int force, uint64_t now_ms);
/* The same for keys matching a PCRE2 pattern (searched anywhere in the key).
 * INVALID_PARAMS for a bad pattern, or one that hits the match, depth or scan
 * time limits (master_scan.c), and then nothing is removed. */
int64_t mc_master_remove_by_regex(mc_master_t *m, const char *regex, int force, uint64_t now_ms);
/* Keys matching regex with their complete replicas (leases granted). Calls fn
 * for each; *out arrays are owned by the callee for the duration of fn only.
 * INVALID_PARAMS as for remove_by_regex; the caller then discards what fn got. */
int mc_master_get_replicas_by_regex(mc_master_t *m, const char *regex, uint64_t now_ms,
                                    void (*fn)(const char *key, const mc_replica_t *r, size_t n,
                                               void *arg),
                                    void *arg);

/* ---- background work, called every ~10 ms by the daemon ---- */
/* Evicts past the high watermark (oldest lease first, soft-pinned last,
 * hard-pinned never), expires clients whose TTL passed (unmounting their
 * segments), discards zombie puts and releases their parked space. */
void mc_master_tick(mc_master_t *m, uint64_t now_ms);

/* Called by each of the RPC server's event loops every ~100 ms with the time
 * of this and of its previous call (prev 0: first call; now 0: the loops
 * stopped), and oldest_ms, the last call of the slowest loop. When now - prev
 * passes a second that loop was stalled, and client deadlines are extended by
 * the stall (once, also when another loop or the tick saw the same stall);
 * while oldest_ms is a second old, no client is expired, since that loop's
 * clients could not have been served. */
void mc_master_note_loop(mc_master_t *m, uint64_t now_ms, uint64_t prev_ms, uint64_t oldest_ms);

/* ---- persistence (master_recover.c, master_persist.h) ---- */
struct mc_persist;
/* Replays the persistence directory p (opened, locked) into a table of
 * objects to restore, which become visible as their segments remount (within
 * 2 x client_ttl of now_ms), starts a new log segment and logs every index
 * mutation into p from now on. Logs one line with what was recovered (one
 * line, at WARN, naming the first damaged place when records were torn or
 * corrupt). Call once, before the master serves; p must outlive m.
 * Errors: a replay or file error, with a message in err. */
/* Writes the journal records appended so far (mc_persist_flush). The RPC
 * server calls it before it sends the replies of a batch, the admin server
 * after a mutating request, the tick every round. No-op without persistence. */
void mc_master_journal_flush(mc_master_t *m);
int mc_master_persist_attach(mc_master_t *m, struct mc_persist *p, uint64_t now_ms, char *err,
                             size_t errlen);

/* ---- HA replication (master_recover.c, master_repl.h) ---- */
struct mrestore;
/* Every journal record (PUT, REMOVE, UNMOUNT) is also handed to sink, on the
 * thread that logs it, under the object's shard lock: sink must not block.
 * Call before the master serves; with a sink the core journals also while
 * persistence is off. */
void mc_master_set_repl_sink(mc_master_t *m, void (*sink)(void *arg, const void *frame, size_t len),
                             void *arg);
/* Held frees (master_hold.c): while hold(arg, &pos) returns 1, a range the
 * core frees (remove, eviction, replacement, revoke, a discarded put's parked
 * space...) is not returned to its allocator at once: it is held with pos
 * (the journal position of the record that freed it, or a later one) until
 * mc_master_release_held(m, p) with p >= pos. Its bytes leave the usage
 * counters at once (eviction does not evict more for them) and show in
 * mc_master_held_bytes. A put that finds no room while at least its size is
 * held waits up to wait_ms for a release (twice at most: before it evicts,
 * and after; none while a wait timed out and no release followed), then
 * evicts or fails as usual. hold runs on the freeing thread
 * under core locks: it must not block. Call before the master serves. */
void mc_master_set_free_hold(mc_master_t *m, int (*hold)(void *arg, uint64_t *pos), void *arg,
                             uint64_t wait_ms);
/* Returns every held range whose position is <= upto to its allocator
 * (UINT64_MAX: all of them); the bytes released. Any thread. */
uint64_t mc_master_release_held(mc_master_t *m, uint64_t upto);
/* Bytes held now, and ranges held since start. */
uint64_t mc_master_held_bytes(mc_master_t *m);
uint64_t mc_master_held_total(mc_master_t *m);
/* A table of objects to restore, filled from a leader's replication stream. */
struct mrestore *mc_master_restore_table_new(void);
void mc_master_restore_table_free(struct mrestore *t);
/* Applies one record (master_persist_rec.h) to t: 0 or MC_ERR_INTERNAL. */
int mc_master_restore_table_apply(struct mrestore *t, const void *rec);
uint64_t mc_master_restore_table_count(const struct mrestore *t);
/* Takes t (owned from now on; NULL: none) as m's restore state: the objects
 * in it become visible as their segments remount, within 2 x client_ttl of
 * now_ms, through the same claims and checks as after a restart; each is
 * logged into m's own journal. Whatever restore state m had is dropped. One
 * log line says what was adopted from whom. version: the highest mutation
 * counter seen; m's counter continues above it. */
int mc_master_restore_adopt(mc_master_t *m, struct mrestore *t, uint64_t version, const char *from,
                            uint64_t now_ms);

/* ---- introspection for /metrics and the admin endpoints ---- */
typedef struct {
    uint64_t allocated_bytes, capacity_bytes;
    uint64_t key_count, soft_pin_key_count, active_clients, segment_count;
    uint64_t evicted_key_count, evicted_size_bytes;
    uint64_t put_start_discard_cnt, put_start_release_cnt;
    uint64_t expired_clients, unmounted_segments, purged_objects; /* since start */
} mc_master_stats_t;
void mc_master_get_stats(mc_master_t *m, mc_master_stats_t *st);

typedef struct {
    mc_segment_t seg;
    mc_uuid_t client;
    uint64_t used_bytes;
    int draining; /* mc_master_set_draining */
} mc_master_segment_info_t;
/* Calls fn for every key, then for every segment (either fn may be NULL). */
void mc_master_each_key(mc_master_t *m, void (*fn)(const char *key, void *arg), void *arg);
void mc_master_each_segment(mc_master_t *m,
                            void (*fn)(const mc_master_segment_info_t *s, void *arg), void *arg);

/* ---- clients and drains (master_inspect.c) ---- */
typedef struct {
    mc_uuid_t id;
    uint64_t heartbeat_age_ms; /* since its last heartbeat (or mount) */
    uint64_t ttl_left_ms;      /* until it expires without another */
    int alive;                 /* in the alive set (its segments are served) */
} mc_master_client_info_t;
/* Calls fn for every known client, outside the master's locks (a copy is
 * taken first). Thread-safe. */
void mc_master_each_client(mc_master_t *m, uint64_t now_ms,
                           void (*fn)(const mc_master_client_info_t *c, void *arg), void *arg);
/* Marks the mounted segment name as draining (on 1) or not (0): while it
 * drains, no new replica is placed on it; the objects already there stay
 * readable until they are removed or evicted. Returns 0, or
 * MC_ERR_SEGMENT_NOT_FOUND. Out-params (may be NULL): its used bytes now. */
int mc_master_set_draining(mc_master_t *m, const char *name, int on, uint64_t *used_bytes);
#endif
