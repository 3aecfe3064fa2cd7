/* mooncake/store.h: the store client (libmooncake_store), linked into serving
 * processes. A store contributes a segment of its DRAM to the pool, keeps a
 * local staging buffer, talks to the master over its private RPC and moves
 * bytes with the transfer engine (mooncake/te.h): memcpy for replicas in its
 * own segment, shm for same-host peers, tcp otherwise.
 *
 * Objects are immutable KV blocks: put of an existing key succeeds without
 * overwriting (the upsert forms overwrite); reads are protected by the read
 * lease the master grants, and fail with MC_ERR_LEASE_EXPIRED when the lease
 * ran out during the transfer. Design and flows: docs/store.md.
 *
 * Thread rule: mc_store_create, mc_store_setup(_with_engine), mc_store_close and
 * mc_store_destroy must not run concurrently with any other call on the same
 * store; every other function may be called from many threads at once.
 * One heartbeat thread per set-up store runs in the background.
 * Errors: 0 or a negative MC_ERR_* from mooncake/err.h (upstream's numbers);
 * functions documented to return counts or sizes return them as >= 0. */
#ifndef MOONCAKE_STORE_H
#define MOONCAKE_STORE_H
#include <stddef.h>
#include <stdint.h>

#include "mooncake/err.h"
#include "mooncake/te.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Default range of the automatic port of a local_hostname given without one
 * (environment MC_STORE_CLIENT_MIN_PORT / MC_STORE_CLIENT_MAX_PORT). */
#define MC_STORE_CLIENT_MIN_PORT 12300
#define MC_STORE_CLIENT_MAX_PORT 14300
/* Attempts at setup when the chosen name collides (MC_STORE_CLIENT_SETUP_RETRIES). */
#define MC_STORE_CLIENT_SETUP_RETRIES 20

typedef struct mc_store mc_store_t;

/* Soft-pin actions (values of upstream's SoftPinAction). */
enum {
    MC_STORE_SOFT_PIN_PRESERVE = 0,
    MC_STORE_SOFT_PIN_ENABLE = 1,
    MC_STORE_SOFT_PIN_DISABLE = 2
};

/* Upstream's ReplicateConfig. A NULL config pointer means the defaults
 * (mc_store_config_init). */
typedef struct {
    size_t replica_num;                    /* >= 1 (default 1) */
    int with_soft_pin;                     /* 1: soft pin with the master's default TTL */
    int soft_pin_action;                   /* MC_STORE_SOFT_PIN_*; ENABLE also when with_soft_pin */
    uint64_t soft_pin_ttl_ms;              /* 0: master default; else needs ENABLE (INVALID_PARAMS) */
    int with_hard_pin;                     /* never evicted */
    const char *const *preferred_segments; /* segment names tried first, in order */
    size_t preferred_segments_count;
    int prefer_alloc_in_same_node;
} mc_store_config_t;

/* Fills cfg with the defaults (one replica, no pins, no preference). */
void mc_store_config_init(mc_store_config_t *cfg);

/* One piece of a scatter/gather list. */
typedef struct {
    void *ptr;
    size_t len;
} mc_store_iov_t;

/* Allocates an unconfigured store. */
int mc_store_create(mc_store_t **out);
/* Closes (if needed) and frees. NULL is a no-op. Last call on a store. */
void mc_store_destroy(mc_store_t *s);

/* Connects the store (spec §2.1):
 *  - local_hostname: "host" or "host:port". Without a port a free port in
 *    [MC_STORE_CLIENT_MIN_PORT, MAX_PORT] is held and "host:port" becomes the
 *    name (retried up to MC_STORE_CLIENT_SETUP_RETRIES times on a collision).
 *  - metadata_server: the TE metadata string ("http://h:p/metadata", "P2PHANDSHAKE").
 *  - global_segment_size: bytes contributed to the pool (0: pure client);
 *    anonymous memory with huge pages advised, registered with the TE and mounted on the master.
 *  - local_buffer_size: staging buffer (0: put/get of unregistered memory fail).
 *  - protocol ("tcp"; NULL/"" = tcp), device_names (may be NULL).
 *  - master_server_addr: "host:port" of mooncake_master.
 * Errors: INVALID_PARAMS for bad arguments or a store already set up,
 * INTERNAL_ERROR when the TE could not start (every port tried), the master's
 * connect/mount errors otherwise. On failure the store may be set up again. */
int mc_store_setup(mc_store_t *s, const char *local_hostname, const char *metadata_server,
                   uint64_t global_segment_size, uint64_t local_buffer_size, const char *protocol,
                   const char *device_names, const char *master_server_addr);
/* As mc_store_setup, but on the caller's transfer engine te (mc_te_init done)
 * instead of an engine of the store's own (upstream's setup(..., engine)):
 * the segment and the staging buffer are registered on te, the store's name
 * (mc_store_get_hostname, the mounted segment's name) is mc_te_segment_name(te),
 * and buffers the caller registers on te (mc_te_register) are usable with the
 * zero-copy calls. te's name, metadata and devices are fixed by mc_te_init;
 * protocol is recorded in the mounted segment (NULL/"" = tcp).
 * Lifetime: the caller owns te and it must outlive the store: close (or
 * destroy) the store before mc_te_destroy. mc_store_close unregisters the
 * store's own segment and staging buffer from te and never destroys it;
 * buffers registered through mc_store_register_buffer stay registered on te.
 * Thread rule: te may be used by the caller from other threads meanwhile.
 * Errors: INVALID_PARAMS for bad arguments, an engine not initialised or a
 * store already set up; INTERNAL_ERROR when registering on te failed (e.g. an
 * overlapping buffer); the master's connect/mount errors otherwise. */
int mc_store_setup_with_engine(mc_store_t *s, mc_te_t *te, uint64_t global_segment_size,
                               uint64_t local_buffer_size, const char *protocol,
                               const char *master_server_addr);
/* Sets s up as a dummy client of the standalone mooncake_client serving at
 * client_server_address ("host:port", its --port; upstream's setup_dummy):
 * asks it for its configuration (GET http://host:port/v1/client_config,
 * docs/store.md) and becomes a pure client (no segment) of the same master,
 * metadata server and protocol, named "host:<automatic port>" after the
 * address's host, with a local_buffer_size staging buffer. Its puts land in
 * the pool the standalone client (and any other store) contributes; its gets
 * read from there, with this process's transfer engine (zero copy for
 * put_from / get_into). mem_pool_size is upstream's shared-memory pool between
 * the two processes; nothing is shared here, so it is only checked
 * (<= 1 TiB). Errors: INVALID_PARAMS for bad arguments or a store already set
 * up; RPC_FAIL when the standalone client cannot be reached or answers badly
 * (one log line naming the address); INVALID_VERSION for another protocol
 * version; mc_store_setup's errors otherwise. Thread rule: as mc_store_setup. */
int mc_store_setup_dummy(mc_store_t *s, uint64_t mem_pool_size, uint64_t local_buffer_size,
                         const char *client_server_address);
/* SSD tier (docs/store.md "SSD tier"): asks the next setup of s to keep
 * objects of its segment on its local disk under path (NULL or "": the
 * environment's MOONCAKE_OFFLOAD_FILE_STORAGE_PATH, else /data/file_storage),
 * as upstream's setup(..., enable_ssd_offload, ssd_offload_path). The master
 * must run with --enable_offload; setup then fails with
 * UNAVAILABLE_IN_CURRENT_MODE (-1011) when it does not, and needs
 * global_segment_size > 0. Call before setup. */
int mc_store_set_ssd_offload(mc_store_t *s, int enable, const char *path);
/* Counters of the SSD tier; INVALID_PARAMS when it does not run. */
typedef struct {
    uint64_t keys, bytes_used, quota;
    uint64_t written_bytes, read_bytes, dropped_corrupt, evicted_buckets;
    uint64_t offloaded, promoted, served;
} mc_store_ssd_stats_t;
int mc_store_ssd_stats(mc_store_t *s, mc_store_ssd_stats_t *st);
/* Objects this store's gets were served from a LOCAL_DISK replica (staged
 * by the disk's owner), since it was created: upstream's
 * get_offload_rpc_read_count. Any thread. */
uint64_t mc_store_offload_read_count(mc_store_t *s);
/* Unmounts the segment, stops the heartbeat, disconnects, frees the memory
 * (and destroys the engine unless it is the caller's). A store never set up: 0. */
int mc_store_close(mc_store_t *s);

/* The final "host:port" name into buf (NUL-terminated; INVALID_PARAMS when it
 * does not fit or the store is not set up). */
int mc_store_get_hostname(mc_store_t *s, char *buf, size_t cap);
/* The transfer engine the store moves bytes with (its own, or the one given to
 * mc_store_setup_with_engine); NULL while not set up. Valid until close. */
mc_te_t *mc_store_get_engine(mc_store_t *s);
/* 0 healthy, 1 not set up or closed, 2 master unreachable (last heartbeat failed). */
int mc_store_health_check(mc_store_t *s);

/* ---- puts: 0 or error; an existing key is success without overwrite ---- */
/* Copies value from unregistered memory; len must fit the local buffer
 * (INVALID_PARAMS otherwise, and always with local_buffer_size 0). */
int mc_store_put(mc_store_t *s, const char *key, const void *value, size_t len,
                 const mc_store_config_t *cfg);
/* The parts concatenated form one object (same local-buffer rule). */
int mc_store_put_parts(mc_store_t *s, const char *key, const mc_store_iov_t *parts, size_t n,
                       const mc_store_config_t *cfg);
/* Zero copy: the TE reads the caller's buffer directly (register it with
 * mc_store_register_buffer for transports that need it). len 0: 0, nothing stored. */
int mc_store_put_from(mc_store_t *s, const char *key, const void *buf, size_t len,
                      const mc_store_config_t *cfg);
/* n objects, one master round trip each way, all transfers in one TE batch.
 * rcs[i] is each key's result; the return is the first error or 0. */
int mc_store_batch_put_from(mc_store_t *s, const char *const *keys, void *const *bufs,
                            const size_t *lens, size_t n, const mc_store_config_t *cfg, int *rcs);
/* As batch_put_from with the local-buffer rule (upstream put_batch). */
int mc_store_batch_put(mc_store_t *s, const char *const *keys, const void *const *values,
                       const size_t *lens, size_t n, const mc_store_config_t *cfg, int *rcs);
/* Object i is the concatenation of parts[i][0..nparts[i]) (vLLM's multi-buffer form). */
int mc_store_batch_put_from_multi_buffers(mc_store_t *s, const char *const *keys,
                                          const mc_store_iov_t *const *parts, const size_t *nparts,
                                          size_t n, const mc_store_config_t *cfg, int *rcs);

/* ---- upserts: as the puts, but an existing key is overwritten ---- */
int mc_store_upsert(mc_store_t *s, const char *key, const void *value, size_t len,
                    const mc_store_config_t *cfg);
int mc_store_upsert_parts(mc_store_t *s, const char *key, const mc_store_iov_t *parts, size_t n,
                          const mc_store_config_t *cfg);
int mc_store_upsert_from(mc_store_t *s, const char *key, const void *buf, size_t len,
                         const mc_store_config_t *cfg);
int mc_store_batch_upsert_from(mc_store_t *s, const char *const *keys, void *const *bufs,
                               const size_t *lens, size_t n, const mc_store_config_t *cfg,
                               int *rcs);

/* ---- gets: bytes read (>= 0) or negative error ---- */
/* Reads the object into buf (the TE writes it directly; registered or not).
 * OBJECT_NOT_FOUND on a miss, BUFFER_OVERFLOW when cap is smaller than the
 * object, LEASE_EXPIRED when the lease ran out meanwhile. */
int64_t mc_store_get_into(mc_store_t *s, const char *key, void *buf, size_t cap);
/* Allocating form: *out is malloc'd (free with free()), *len its size. Same
 * errors; the object must fit the local buffer (INVALID_PARAMS otherwise). */
int mc_store_get(mc_store_t *s, const char *key, void **out, size_t *len);
/* Batch form of mc_store_get: one master round trip and one transfer batch for
 * all n keys. Per key: rcs[i], and on success outs[i] (malloc'd; free with
 * free()) and lens[i]; outs[i] NULL otherwise. Returns the first error or 0. */
int mc_store_batch_get(mc_store_t *s, const char *const *keys, size_t n, void **outs, size_t *lens,
                       int *rcs);
/* Get buffers: the allocating get without a fresh allocation per object. Each
 * object is read into a block of this store's local buffer (local_buffer_size
 * at setup; memory registered with its engine, whose pages stay mapped and
 * warm from one get to the next), or into a malloc'd block when the local
 * buffer has no room left. Per key: rcs[i] and, on success, bufs[i] (NULL
 * otherwise); same errors as mc_store_batch_get. A buffer holds its bytes
 * until mc_store_buffer_release, which any thread may call, also after the
 * store was closed or destroyed (the local buffer is unmapped when the last
 * buffer is released). Returns the first error or 0. */
typedef struct mc_store_buffer mc_store_buffer_t;
int mc_store_batch_get_buffers(mc_store_t *s, const char *const *keys, size_t n,
                               mc_store_buffer_t **bufs, int *rcs);
int mc_store_get_buffer(mc_store_t *s, const char *key, mc_store_buffer_t **buf);
void *mc_store_buffer_data(const mc_store_buffer_t *b);
size_t mc_store_buffer_size(const mc_store_buffer_t *b);
void mc_store_buffer_release(mc_store_buffer_t *b);
/* n objects, one master round trip, one TE batch; res[i] bytes or negative. */
int mc_store_batch_get_into(mc_store_t *s, const char *const *keys, void *const *bufs,
                            const size_t *caps, size_t n, int64_t *res);
/* Object i is scattered over parts[i][0..nparts[i]) in order. */
int mc_store_batch_get_into_multi_buffers(mc_store_t *s, const char *const *keys,
                                          const mc_store_iov_t *const *parts, const size_t *nparts,
                                          size_t n, int64_t *res);

/* ---- queries and removal ---- */
/* 1 exists, 0 not, negative error (grants a read lease, as upstream). */
int mc_store_is_exist(mc_store_t *s, const char *key);
/* res[i] as is_exist; one round trip. Return 0 unless the round trip failed. */
int mc_store_batch_is_exist(mc_store_t *s, const char *const *keys, size_t n, int *res);
/* Size in bytes (>= 0) or negative (OBJECT_NOT_FOUND on a miss). Grants a lease. */
int64_t mc_store_get_size(mc_store_t *s, const char *key);
/* OBJECT_NOT_FOUND, OBJECT_HAS_LEASE (unless force), REPLICA_IS_NOT_READY. */
int mc_store_remove(mc_store_t *s, const char *key, int force);
/* rcs[i] as remove; one round trip. */
int mc_store_batch_remove(mc_store_t *s, const char *const *keys, size_t n, int force, int *rcs);
/* Upstream's batch_replica_clear: for each key this store wrote and no read
 * lease holds, drops its replicas on segment (a segment name; NULL or "":
 * all of them, and the object). rcs[i]: 0 cleared, else OBJECT_NOT_FOUND,
 * ILLEGAL_CLIENT (written by another client), OBJECT_HAS_LEASE,
 * REPLICA_IS_NOT_READY, REPLICA_NOT_FOUND (none on segment). One round trip;
 * the return is 0 unless it failed. */
int mc_store_batch_replica_clear(mc_store_t *s, const char *const *keys, size_t n,
                                 const char *segment, int *rcs);
/* Count removed (>= 0) or negative. */
int64_t mc_store_remove_all(mc_store_t *s, int force);
/* Keys matching a POSIX extended regex; count or negative (INVALID_PARAMS for a bad regex). */
int64_t mc_store_remove_by_regex(mc_store_t *s, const char *regex, int force);

/* Where an object's replicas are (upstream's get_replica_desc): a malloc'd
 * array (free with free()) of *n descriptors. Grants a read lease.
 * OBJECT_NOT_FOUND on a miss. */
typedef struct {
    uint64_t addr; /* address in the owner's process */
    uint64_t size;
    char endpoint[256]; /* TE segment name of the owner */
    int status;         /* upstream's ReplicaStatus: 2 PROCESSING, 3 COMPLETE */
    int kind;           /* upstream's ReplicaType: 0 MEMORY, 2 LOCAL_DISK (endpoint: the
                           owner's staging server "host:port", addr 0) */
} mc_store_replica_desc_t;
int mc_store_get_replica_desc(mc_store_t *s, const char *key, mc_store_replica_desc_t **out,
                              size_t *n);

/* ---- copy / move tasks (upstream's create_copy_task & co.; docs/python.md) ---- */
/* A task's id: upstream's UUID, a pair of u64 (its text "hi-lo"). */
typedef struct {
    uint64_t hi, lo;
} mc_store_task_id_t;
typedef struct {
    mc_store_task_id_t id;
    int type;   /* upstream's TaskType: 0 REPLICA_COPY, 1 REPLICA_MOVE */
    int status; /* upstream's TaskStatus: 0 PENDING, 1 PROCESSING, 2 FAILED, 3 SUCCESS */
    int64_t created_at_ms_epoch, last_updated_at_ms_epoch;
    mc_store_task_id_t assigned_client; /* the client that copies (the source's owner) */
    char message[256];                  /* why it failed */
} mc_store_task_info_t;
/* key gets a replica on each of targets (segment names; one that holds a
 * replica already is skipped), copied by the owner of one of its replicas;
 * the source stays. 0 and *id, else INVALID_PARAMS (no targets, an unmounted
 * one), OBJECT_NOT_FOUND, UNAVAILABLE_IN_CURRENT_STATUS (a target drains),
 * TASK_PENDING_LIMIT_EXCEEDED; *id then 0-0. The copy runs later: its
 * outcome is mc_store_query_task's. */
int mc_store_create_copy_task(mc_store_t *s, const char *key, const char *const *targets,
                              size_t n, mc_store_task_id_t *id);
/* key's replica on source moves to target. Errors as copy's, and
 * INVALID_PARAMS for source = target or no replica on source. */
int mc_store_create_move_task(mc_store_t *s, const char *key, const char *source,
                              const char *target, mc_store_task_id_t *id);
/* The task's record; TASK_NOT_FOUND (unknown, or pruned from the master's
 * history of finished tasks). */
int mc_store_query_task(mc_store_t *s, mc_store_task_id_t id, mc_store_task_info_t *out);

/* ---- registered memory (TE registration of caller memory) ---- */
int mc_store_register_buffer(mc_store_t *s, void *buf, size_t len);
int mc_store_unregister_buffer(mc_store_t *s, void *buf);

#ifdef __cplusplus
}
#endif
#endif
