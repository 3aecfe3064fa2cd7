/* store_int.h: the store object shared by store_client.c (life cycle,
 * heartbeat, master pass-through) and store_ops.c (data paths).
 * Thread rule: fields set by setup are read-only until close; master_down is
 * atomic; the heartbeat fields are guarded by hb_lock. */
#ifndef MC_STORE_INT_H
#define MC_STORE_INT_H
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "master_client.h"
#include "mooncake/store.h"
#include "mooncake/te.h"
#include "store_metrics.h"

struct mc_store {
    int ready;                  /* set up and not closed */
    char hostname[MC_NAME_MAX]; /* "host:port", the store's identity */
    char te_name[MC_NAME_MAX];  /* TE segment name (= hostname unless P2P) */
    char master_addr[MC_NAME_MAX];
    char host_id[128];
    mc_uuid_t client_id;
    int port_fd; /* holds the automatic port, -1 when none */

    mc_te_t *te;
    int te_owned;       /* 1: started by setup, destroyed at close; 0: the caller's */
    int seg_registered; /* seg / lbuf registered with te (unregistered at close) */
    int lbuf_registered;
    mc_master_client_t *mc;
    struct mc_master_view *view; /* HA masters (etcd://...): finds the leader */

    void *seg; /* segment contributed to the pool (anonymous, THP advised) */
    uint64_t seg_size;
    int seg_mounted;
    mc_segment_t segdesc;

    void *lbuf; /* staging buffer, registered */
    uint64_t lbuf_size;
    struct mc__gbuf *gbuf; /* lbuf's arena of get buffers (store_gbuf.h); owns the mapping */
    pthread_t pf_thread;   /* segment prefault (store_prefault.c) */
    int pf_running;
    _Atomic int pf_stop;
    _Atomic uint64_t pf_done; /* bytes of seg populated so far */

    pthread_t hb_thread;
    int hb_running;
    int hb_stop;
    int hb_interval_ms;
    pthread_mutex_t hb_lock;
    pthread_cond_t hb_cond;
    int master_down; /* last ping failed */
    /* move tasks (store_task.c): their thread, started at the first task,
     * woken by the heartbeat (task_wake and task_cond under hb_lock) */
    pthread_t task_thread;
    int task_running;
    int task_wake;
    pthread_cond_t task_cond;
    struct mc__lcache *lcache;   /* leased replicas (store_lcache.h); NULL: MC_STORE_LEASE_CACHE=0 */
    int memcpy_local;            /* MC_STORE_MEMCPY (default 1): own-segment replicas by memcpy */
    mc__store_metrics_t metrics; /* store_metrics.h: what /metrics on the client port shows */

    /* SSD tier (store_ssd.c): asked for before setup, running after it */
    int ssd_enable;
    char ssd_path[1024];
    struct mc_ssd_tier *ssd;
    uint64_t disk_reads; /* objects this store read from a LOCAL_DISK replica (atomic) */
};

/* ---- segment prefault (store_prefault.c) ---- */
/* Setup, once the segment is allocated: a thread faults its pages in, step
 * by step (MC_STORE_PREFAULT=0: not). */
void mc__store_prefault_start(mc_store_t *s);
/* Teardown, before the segment is unmapped: stops and joins that thread. */
void mc__store_prefault_stop(mc_store_t *s);
/* Bytes populated so far (tests, metrics). */
uint64_t mc__store_prefaulted(const mc_store_t *s);

/* ---- move tasks of drain jobs (store_task.c, master_move.h) ---- */
/* Writes [src_addr, +size) of our own segment to dst_addr of the TE segment
 * dst_endpoint (store_ops.c). INVALID_PARAMS when the source is not inside
 * our segment; TRANSFER_FAIL and the like from the transfer. */
int mc__store_write_out(mc_store_t *s, const char *key, uint64_t src_addr, uint64_t size,
                        const char *dst_endpoint, uint64_t dst_addr);
/* The heartbeat saw MC_CLIENT_TASKS_PENDING: wakes the task thread (starts
 * it the first time), which fetches and runs tasks until none is left. */
void mc__store_run_tasks(mc_store_t *s);
/* Close: stops and joins the task thread (after the heartbeat's, with
 * hb_stop set). */
void mc__store_stop_tasks(mc_store_t *s);

/* ---- the SSD tier (store_ssd.c) ---- */
/* Starts the tier on a store whose segment is mounted (setup). */
int mc__ssd_start(mc_store_t *s);
/* Without enable_ssd_offload: when the master runs with upstream's legacy
 * --root_fs_dir, asks for the tier on ROOT/store-N (the first free one). */
void mc__ssd_from_master(mc_store_t *s);
/* 1 when [addr, addr+size) lies inside the staging buffer of s's running
 * tier (where its staging server puts the disk records it serves). */
int mc__ssd_staging_has(const mc_store_t *s, uint64_t addr, uint64_t size);
/* Stops it (close): the master stops serving the disk's objects. */
void mc__ssd_stop(mc_store_t *s);
/* The master asked for a remount: mount the disk again and re-register. */
void mc__ssd_need_remount(mc_store_t *s);
int mc__ssd_stats(mc_store_t *s, mc_store_ssd_stats_t *st);
struct mc_ssd_staged;
/* Reader side: asks the staging server at endpoint to stage n keys (bytes:
 * their total size, for the deadline). On 0: te_name, token and v[i] filled,
 * *fd the open connection to pass to mc__ssd_release after the TE reads. */
int mc__ssd_stage(const char *endpoint, const char *const *keys, size_t n, uint64_t bytes,
                  char te_name[256], int *fd, uint64_t *token, struct mc_ssd_staged *v);
void mc__ssd_release(int fd, uint64_t token);

/* ---- dummy clients (store_dummy.c, docs/store.md "Standalone client") ---- */
#define MC__STORE_DUMMY_PROTO 1 /* "version" of GET /v1/client_config */
#define MC__STORE_DUMMY_PATH "/v1/client_config"
#define MC__STORE_DUMMY_MAX_BODY (64 * 1024) /* larger answers are refused */

/* What a standalone mooncake_client tells its dummies. */
typedef struct {
    char name[MC_NAME_MAX]; /* the standalone client's store name (its segment) */
    char master_server_address[MC_NAME_MAX];
    char metadata_server[1024];
    char protocol[32];
    char device_names[256];
    char tenant_id[128];
} mc__store_dummy_cfg_t;

/* Decodes the JSON body of GET /v1/client_config (len bytes, not necessarily
 * NUL-terminated) into out. Returns 0; MC_ERR_INVALID_VERSION when "version"
 * is not MC__STORE_DUMMY_PROTO; MC_ERR_RPC_FAIL for anything malformed (not
 * JSON, not an object, a required string missing, empty or too long). */
int mc__store_dummy_cfg_parse(const char *body, size_t len, mc__store_dummy_cfg_t *out);
#endif
