/* master_int.h: the master core's internal state, shared by the files of the
 * core (master_service.c: objects and allocation; master_liveness.c: clients
 * and segments; master_scan.c: whole-index scans by pattern; master_evict.c:
 * eviction; master_tick.c: background work). Nothing outside src/master's core
 * includes it. The locking rules are in master_service.c's top comment. */
#ifndef MC_MASTER_INT_H
#define MC_MASTER_INT_H
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "base_map.h"
#include "master_alloc.h"
#include "master_service.h"

#define MC_MASTER_SHARDS 1024
#define MC_MASTER_KEY_MAX 4096

typedef struct mseg {
    mc_segment_t info;
    mc_uuid_t client;
    pthread_mutex_t mu;
    mc_alloc_t *alloc;
    uint64_t capacity;
    _Atomic uint64_t used;
    int gone;             /* out of the table (set under its write lock): not snapshotted */
    _Atomic int draining; /* a drain job runs: no new replica is placed here (master_inspect.c) */
} mseg_t;

typedef struct {
    uint64_t id;
    mseg_t *seg;
    mc_alloc_blk_t *blk; /* its range (mc_alloc_blk_addr); the blk's owner is the object */
    int status;
} mrep_t;

/* Kept small: with one replica an object is one 104-byte allocation (a
 * 112-byte malloc chunk), part of the master's per-object memory budget. */
typedef struct {
    mc_uuid_t client; /* last writer */
    uint64_t size;
    uint64_t put_start_ms;
    uint64_t lease_ms; /* read lease deadline */
    uint64_t soft_pin_ttl_ms;
    uint64_t soft_pin_deadline_ms; /* 0 until the first replica completes */
    const char *key;               /* the index's copy of the key (read under the shard lock) */
    uint16_t nrep;
    uint8_t soft_pin; /* soft pin requested */
    uint8_t hard_pin;
    uint16_t shard;  /* index of its shard; set before any range is owned */
    uint8_t durable; /* its completion is in the persistence log (master_recover.c) */
    uint8_t moving;  /* a drain's move task copies it (master_move.c): not evicted, not rewritten */
    mrep_t rep[];    /* allocated with room for cap replicas */
} mobj_t;
_Static_assert(sizeof(mobj_t) + sizeof(mrep_t) <= 104, "one-replica object outgrew its chunk");

typedef struct parked {
    mseg_t *seg;
    mc_alloc_blk_t *blk;
    uint64_t release_ms;
    struct parked *next;
} parked_t;

/* A freed range held until the standbys acknowledged its removal (master_hold.c). */
typedef struct held {
    mseg_t *seg;
    mc_alloc_blk_t *blk;
    uint64_t pos, size;
    struct held *next;
} held_t;

typedef struct {
    mc_uuid_t id;
    uint64_t deadline_ms;
    int alive; /* in the alive set (set by remount only) */
} mclient_t;

typedef struct {
    pthread_mutex_t mu;
    mc_map_t *map;
} shard_t;

struct mc_master {
    mc_master_config_t cfg;
    shard_t shards[MC_MASTER_SHARDS];

    pthread_rwlock_t seg_lock;
    mseg_t **segs;
    size_t nsegs, segs_cap;

    pthread_mutex_t client_mu;
    mc_map_t *clients; /* uuid text -> mclient_t */

    pthread_mutex_t parked_mu;
    parked_t *parked;

    _Atomic uint64_t allocated, capacity, key_count, soft_pin_count;
    _Atomic uint64_t evicted_keys, evicted_bytes, discard_cnt, release_cnt;
    _Atomic uint64_t next_replica_id;
    _Atomic int need_evict;
    _Atomic uint64_t last_zombie_scan_ms;
    _Atomic uint64_t evict_epoch; /* bumped by every pass that evicted */
    pthread_mutex_t evict_mu;     /* one eviction pass at a time */
    _Atomic uint64_t expired_clients, unmounted_segments, purged_objects;
    /* eviction's rate-limited log line (evict_mu) */
    uint64_t ev_log_ms, ev_log_pass_objs, ev_log_pass_bytes, ev_log_passes;
    uint64_t ev_log_room_objs, ev_log_room_bytes, ev_log_rooms;
    _Atomic uint64_t loop_alive_ms; /* last mc_master_note_loop; 0: no loop watched */
    uint64_t stall_covered_ms;      /* end of the last stall compensated (client_mu) */
    uint64_t last_tick_ms;          /* tick thread only */
    int loop_stall_logged;          /* tick thread only */

    /* persistence (master_recover.c); NULL: off */
    struct mc_persist *persist;
    _Atomic uint64_t version;   /* mutation counter of the log's records */
    pthread_mutex_t restore_mu; /* outermost lock: the restore table and its claims */
    struct mrestore *restore;   /* objects awaiting their segments; NULL when none */
    /* HA replication (master_repl.c): every journal frame also goes here;
     * set once before the master serves (mc_master_set_repl_sink) */
    void (*repl_sink)(void *arg, const void *frame, size_t len);
    void *repl_arg;
    /* held frees (master_hold.c): set once before the master serves */
    int (*free_hold)(void *arg, uint64_t *pos);
    void *free_hold_arg;
    pthread_mutex_t held_mu; /* innermost but a segment's mu (taken inside it) */
    pthread_cond_t held_cv;  /* a release happened (held_gen moved) */
    uint64_t held_gen, hold_wait_ms;
    _Atomic int hold_stalled; /* a wait timed out: none until the next release */
    held_t *held_head, **held_tail;
    _Atomic uint64_t held_bytes, held_total;

    struct mdisk *disk;   /* the SSD tier's index (master_disk.c); NULL: --enable_offload off */
    struct mmoves *moves; /* drain jobs' move tasks (master_move.c) */
};
#define MC__EPOCH_NONE UINT64_MAX

static inline int mc__uuid_eq(mc_uuid_t a, mc_uuid_t b)
{
    return a.hi == b.hi && a.lo == b.lo;
}

static inline int mc__obj_lease_active(const mobj_t *o, uint64_t now)
{
    return o->lease_ms > now;
}

static inline int mc__obj_has_status(const mobj_t *o, int status)
{
    for (size_t i = 0; i < o->nrep; i++)
        if (o->rep[i].status == status) return 1;
    return 0;
}

static inline int mc__obj_all_complete(const mobj_t *o)
{
    return o->nrep > 0 && !mc__obj_has_status(o, MC_REPLICA_PROCESSING);
}

/* Soft pin still protecting o (in progress counts as pinned). */
static inline int mc__obj_soft_pinned_now(const mobj_t *o, uint64_t now)
{
    if (!o->soft_pin) return 0;
    return o->soft_pin_deadline_ms == 0 || now < o->soft_pin_deadline_ms;
}

/* master_service.c */
void mc__master_uuid_text(mc_uuid_t u, char buf[48]);
shard_t *mc__master_shard_of(mc_master_t *m, const char *key);
int mc__master_key_check(const char *key);
/* Returns blk to s's allocator and takes its bytes off the usage counters.
 * Caller keeps s alive (a shard, parked or restore lock). */
void mc__master_range_free(mc_master_t *m, mseg_t *s, mc_alloc_blk_t *blk);
/* Returns a replica's range to its segment. Caller holds the object's shard lock. */
void mc__master_rep_release(mc_master_t *m, mrep_t *r);
void mc__master_set_soft_pin(mc_master_t *m, mobj_t *o, int on);
/* Frees o's replicas and o; erases key. Caller holds the shard lock. */
void mc__master_erase_locked(mc_master_t *m, shard_t *sh, const char *key, mobj_t *o);
/* Erases o, its ranges parked (allocated, ownerless) until release_ms, when the
 * tick frees them. Caller holds sh's lock. */
void mc__master_erase_parked_locked(mc_master_t *m, shard_t *sh, const char *key, mobj_t *o,
                                    uint64_t release_ms);
/* A removal of o (forced, or with no lease): while a read lease still runs, its
 * ranges are parked until the lease ends, so a reader holding the lease (a get
 * in flight, or a client's lease cache) never sees them reused. Caller holds
 * sh's lock. */
void mc__master_erase_removed_locked(mc_master_t *m, shard_t *sh, const char *key, mobj_t *o,
                                     uint64_t now);
/* o's replicas (COMPLETE ones only when only_complete) as a malloc'd array. */
int mc__master_fill_out(const mobj_t *o, int only_complete, mc_replica_t **out, size_t *n);
void mc__master_grant_lease(mc_master_t *m, mobj_t *o, uint64_t now);
/* Appends a strdup of key to a growing array; -1 on allocation failure. */
int mc__master_push_key(char ***keys, size_t *n, size_t *cap, const char *key);
void mc__master_seg_free(mseg_t *s);

/* The start of a write: a put (OBJECT_ALREADY_EXISTS for an existing key),
 * an upsert, or a promotion (a key held on disk only gets a memory replica). */
enum { MC__START_PUT = 0, MC__START_UPSERT = 1, MC__START_PROMOTE = 2 };
int mc__master_start(mc_master_t *m, mc_uuid_t client, const char *key, uint64_t size,
                     const mc_replicate_config_t *cfg, uint64_t now, mc_replica_t **out, size_t *n,
                     int mode);

/* master_liveness.c */
/* Drops every reference to s (already out of the table) and frees it. */
void mc__master_seg_purge(mc_master_t *m, mseg_t *s, const char *why);
/* Pushes every client's deadline gap_ms later. Caller holds client_mu. */
void mc__master_extend_deadlines_locked(mc_master_t *m, uint64_t gap_ms);
/* Forgets clients whose heartbeat deadline passed and unmounts their segments. */
void mc__master_expire_clients(mc_master_t *m, uint64_t now);
/* The master was unresponsive over [start_ms, end_ms]: extends every client's
 * deadline by the part of it not compensated yet. */
void mc__master_stalled(mc_master_t *m, uint64_t start_ms, uint64_t end_ms, const char *who);

/* master_liveness.c: takes m->segs[idx] out of the table and logs that its
 * replicas are gone. Caller holds seg_lock for writing. */
mseg_t *mc__master_seg_detach_locked(mc_master_t *m, size_t idx);

/* master_recover.c (no-ops while persistence is off) */
/* Logs o's completion (whole state) and marks it durable. Caller holds its shard lock. */
void mc__journal_put_locked(mc_master_t *m, mobj_t *o, uint64_t now);
/* Logs the erasure of a durable object. Caller holds its shard lock. */
void mc__journal_remove_locked(mc_master_t *m, mobj_t *o);
/* Logs that segment id went. Caller holds seg_lock for writing. */
void mc__journal_unmount_locked(mc_master_t *m, mc_uuid_t id);
/* A segment is about to enter the table: claims the ranges of objects that
 * await it. Caller holds restore_mu and seg_lock for writing. */
void mc__restore_claim_locked(mc_master_t *m, mseg_t *s);
/* Makes visible every awaiting object whose replicas are all settled.
 * Caller holds restore_mu only. */
void mc__restore_settle_locked(mc_master_t *m, uint64_t now);
/* s leaves (purge): ranges claimed in it for awaiting objects are lost.
 * Takes restore_mu; caller holds no lock. */
void mc__restore_seg_gone(mc_master_t *m, mseg_t *s);
/* Tick: the restore's grace period, snapshots. */
void mc__persist_tick(mc_master_t *m, uint64_t now);
void mc__restore_free(mc_master_t *m);

/* HA replication (master_recover.c; master_repl.c drives them). A frame
 * callback returns 0, or nonzero to stop. */
typedef int (*mc__frame_fn)(void *arg, const void *frame, size_t len);
/* Calls fn with the PUT frame of every completed, journaled object of shard
 * i, under the shard lock (fn must not block on the network). */
int mc__repl_dump_shard(mc_master_t *m, size_t i, mc__frame_fn fn, void *arg);
/* Calls fn with a PUT frame for every restored object still awaiting its
 * segments (its replicas not known to be lost), under restore_mu. */
int mc__repl_dump_pending(mc_master_t *m, mc__frame_fn fn, void *arg);

/* master_move.c: move tasks of drain jobs (master_move.h). Lock order: a
 * shard lock, the segment table (read), then the moves lock; the moves lock
 * before the parked lock and a segment's lock. */
int mc__move_init(mc_master_t *m);
void mc__move_free(mc_master_t *m);
/* Tick: plans new tasks for running jobs, revokes tasks past their deadline. */
void mc__move_tick(mc_master_t *m, uint64_t now);
/* o (moving) is about to be freed: its task loses it. Caller holds its shard lock. */
void mc__move_obj_gone_locked(mc_master_t *m, mobj_t *o);
/* s left the table and is about to be freed: task targets in it are lost.
 * Caller holds no lock. */
void mc__move_seg_gone(mc_master_t *m, mseg_t *s);
/* master_hold.c */
/* 1 when s/blk was held (its bytes are off the counters), 0 to free it now.
 * Caller as for mc__master_range_free. */
int mc__hold_range(mc_master_t *m, mseg_t *s, mc_alloc_blk_t *blk);
/* s leaves: its held ranges go with its allocator. Caller holds no core lock. */
void mc__hold_seg_gone(mc_master_t *m, mseg_t *s);
/* A put found no room: when at least size bytes are held, waits up to
 * hold_wait_ms for a release; 1 when one happened (try again), else 0.
 * Caller holds no core lock. */
int mc__hold_wait(mc_master_t *m, uint64_t size);
void mc__hold_free(mc_master_t *m);

/* master_evict.c */
/* One eviction pass (see master_evict.c); returns the number of objects evicted. */
int mc__master_evict_pass(mc_master_t *m, uint64_t now, int forced, uint64_t seen_epoch);
/* Evicts the cheapest run of address-contiguous evictable objects (and free
 * space) in one segment that frees at least size contiguous bytes. Returns
 * the number of objects evicted (0: no such run). Takes no lock on entry. */
int mc__master_evict_room(mc_master_t *m, uint64_t size, uint64_t now);

/* master_disk.c: hooks of the SSD tier into the memory index. Lock order: a
 * shard lock, then the disk lock; the _locked ones run under the object's
 * shard lock. No-ops while --enable_offload is off (m->disk NULL). */
struct mdisk *mc__disk_new(const mc_master_config_t *cfg);
void mc__disk_free(struct mdisk *d);

/* ---- hooks of the memory index (master_service.c, master_evict.c, master_liveness.c) ---- */
/* 1 when key has a served disk replica (a put must not overwrite it); a
 * copy on a detached disk is forgotten (the put makes a new incarnation). */
int mc__disk_has_locked(mc_master_t *m, const char *key);
/* key is being overwritten (upsert): its disk replica and any offload go;
 * the owner is told to delete its copy. */
void mc__disk_forget_locked(mc_master_t *m, const char *key);
/* o just completed: queue its offload (offload at put end). Returns 1 when
 * it was a promotion (o has a disk copy), 0 otherwise. */
int mc__disk_put_end_locked(mc_master_t *m, const mobj_t *o, uint64_t now);
/* Eviction is about to erase o: 1 to keep it a while longer (its offload is
 * queued or running, --offload_on_evict), 0 to go ahead. */
int mc__disk_evict_hold_locked(mc_master_t *m, const mobj_t *o, uint64_t now);
/* The master did not run for gap_ms (stopped or starved): no owner could
 * poll or report an offload meanwhile, so every hold is extended by it (as
 * the clients' deadlines are). Takes the disk lock alone. */
void mc__disk_extend_holds(mc_master_t *m, uint64_t gap_ms);
/* Appends the LOCAL_DISK replica of key (if any) to the malloc'd array out (n entries). */
int mc__disk_append(mc_master_t *m, const char *key, uint64_t now, mc_replica_t **out, size_t *n);
/* A get that found no readable memory replica: key's disk replica, with a
 * lease, and a promotion queued once it is hot. OBJECT_NOT_FOUND when none. */
int mc__disk_get(mc_master_t *m, const char *key, uint64_t now, mc_replica_t **out, size_t *n);
/* 1 when key has a readable disk replica (a lease is granted), else 0. */
int mc__disk_exist(mc_master_t *m, const char *key, uint64_t now);
/* Removal of key (the memory part answered mem_rc): returns the combined
 * result (0 when either copy went). */
int mc__disk_remove(mc_master_t *m, const char *key, int force, uint64_t now, int mem_rc);
/* Removes every removable disk-only object; returns how many. */
int64_t mc__disk_remove_all(mc_master_t *m, int force, uint64_t now);
/* A client expired or unmounted: its disk replicas stop being served (kept,
 * detached, until the same disk mounts again). */
void mc__disk_client_gone(mc_master_t *m, mc_uuid_t client);
/* Every client detached (HA term change). */
void mc__disk_clear(mc_master_t *m);
#endif
