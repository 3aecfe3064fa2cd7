/* mooncake/te.h: the transfer engine (TE). One engine owns one *segment*, named
 * by its local server name; the caller registers buffers inside it, and peers
 * read and write those buffers one-sidedly by absolute address, in batches.
 *
 * Transports: "tcp" (any host), "shm" (same host, chosen automatically for
 * local peers unless MC_FORCE_TCP=1) and "rdma" (libfabric: verbs/EFA NICs,
 * one-sided RMA into registered memory; chosen for every peer whose engine
 * has it too, same-host peers included; docs/transfer-engine.md "RDMA").
 * Metadata: "http://host:port/metadata" or
 * "P2PHANDSHAKE" (the segment name becomes "<ip>:<rpc_port>").
 *
 * Thread rule: every function except mc_te_destroy may be called from many
 * threads at once on one engine. mc_te_destroy must be the last call.
 * Errors: functions return 0 or one of the negative MC_TE_ERR_* codes below,
 * which keep upstream's numbers. */
#ifndef MOONCAKE_TE_H
#define MOONCAKE_TE_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    MC_TE_OK = 0,
    MC_TE_ERR_INVALID_ARGUMENT = -1,
    MC_TE_ERR_TOO_MANY_REQUESTS = -2,
    MC_TE_ERR_ADDRESS_NOT_REGISTERED = -3,
    MC_TE_ERR_BATCH_BUSY = -4,
    MC_TE_ERR_DEVICE_NOT_FOUND = -6,
    MC_TE_ERR_ADDRESS_OVERLAPPED = -7,
    MC_TE_ERR_DNS = -101,
    MC_TE_ERR_SOCKET = -102,
    MC_TE_ERR_MALFORMED_JSON = -103,
    MC_TE_ERR_REJECT_HANDSHAKE = -104,
    MC_TE_ERR_METADATA = -200,
    MC_TE_ERR_ENDPOINT = -201,
    MC_TE_ERR_CONTEXT = -202,
    MC_TE_ERR_MEMORY = -302,
    MC_TE_ERR_NOT_IMPLEMENTED = -303,
};

typedef enum { MC_TE_READ = 0, MC_TE_WRITE = 1 } mc_te_opcode_t;

typedef enum {
    MC_TE_WAITING = 0,
    MC_TE_PENDING = 1,
    MC_TE_INVALID = 2,
    MC_TE_CANCELED = 3,
    MC_TE_COMPLETED = 4,
    MC_TE_TIMEOUT = 5,
    MC_TE_FAILED = 6,
} mc_te_status_t;

/* Segment handle 0 is always the engine's own segment. */
#define MC_TE_LOCAL_SEGMENT 0
#define MC_TE_INVALID_BATCH UINT64_MAX

typedef struct {
    int opcode;             /* MC_TE_READ: remote -> source; MC_TE_WRITE: source -> remote */
    void *source;           /* local address, inside or outside registered memory */
    int32_t target_id;      /* from mc_te_open_segment */
    uint64_t target_offset; /* absolute address in the target process */
    uint64_t length;
} mc_te_request_t;

typedef struct {
    char *name; /* malloc'd */
    char *msg;  /* malloc'd */
} mc_te_notify_t;

typedef struct mc_te mc_te_t;

/* Allocates an engine; nothing runs until mc_te_init. */
int mc_te_create(mc_te_t **out);
/* Starts the engine: binds its listener, installs transports, publishes the
 * segment. local_name is "host" or "host:port"; conn is the metadata string;
 * protocol is "tcp" (or NULL/"") or "rdma" (any case); any other string is
 * refused with MC_TE_ERR_INVALID_ARGUMENT after a line naming the accepted
 * ones. "rdma" opens the NICs named in devices (comma-separated libfabric
 * domain names, e.g. "mlx5_0,mlx5_1"; NULL/"": every NIC of the first
 * hardware provider); where libfabric or such a device is missing, one
 * warning names what was looked for and what was found, and the engine runs
 * tcp (and shm), as with "tcp". Software providers (tcp;ofi_rxm) are used
 * only when FI_PROVIDER names them (CI).
 * A name whose rpc_meta record belongs to a live engine is refused
 * (MC_TE_ERR_METADATA, logged with its address); a record left by an engine
 * that is gone (killed, say) is taken over (docs/transfer-engine.md "Naming"). */
int mc_te_init(mc_te_t *te, const char *local_name, const char *conn, const char *protocol,
               const char *devices);
/* Stops threads, removes the published records, frees the engine. NULL is a no-op. */
void mc_te_destroy(mc_te_t *te);

/* Publishes the engine's rpc_meta record and segment descriptor again, e.g.
 * after a restarted metadata server lost them. No-op in P2P mode. */
int mc_te_republish(mc_te_t *te);

/* The port the engine's listener (handshake and tcp data) is bound to. */
int mc_te_get_rpc_port(const mc_te_t *te);
/* The segment name peers use: local_name, or "<ip>:<rpc_port>" in P2P mode. */
const char *mc_te_segment_name(const mc_te_t *te);

/* Registers [addr, addr+len) for remote access; location is a tag like "cpu:0"
 * ("*" when NULL). MC_TE_ERR_ADDRESS_OVERLAPPED if it overlaps a registered buffer. */
int mc_te_register(mc_te_t *te, void *addr, size_t len, const char *location);
/* Unregisters the buffer starting at addr. tcp transfers into or out of it that
 * are in flight are cut (their connections shut down), never waited for, and
 * none touches the buffer once this returns. MC_TE_ERR_ADDRESS_NOT_REGISTERED if
 * none starts there. */
int mc_te_unregister(mc_te_t *te, void *addr);
/* Batch forms: publish the descriptor once. Stop at the first error. */
int mc_te_register_batch(mc_te_t *te, void *const *addrs, const size_t *lens, size_t n,
                         const char *location);
int mc_te_unregister_batch(mc_te_t *te, void *const *addrs, size_t n);
/* 1 when [addr, addr+len) lies inside one buffer registered with this engine,
 * else 0. Registered memory is the caller's promise that the range is mapped,
 * so copy paths skip their pointer probe for it (mc_mem_check). Thread-safe. */
int mc_te_is_registered(mc_te_t *te, const void *addr, size_t len);

/* Resolves a segment by name and returns its handle (its own name gives 0). */
int mc_te_open_segment(mc_te_t *te, const char *name, int32_t *handle);
/* Drops the cached descriptor and idle connections of a segment. */
int mc_te_close_segment(mc_te_t *te, int32_t handle);
/* Address and length of the first registered buffer of a segment. */
int mc_te_first_buffer(mc_te_t *te, const char *name, uint64_t *addr, uint64_t *len);

/* Allocates a batch for up to capacity requests. */
int mc_te_batch_alloc(mc_te_t *te, size_t capacity, uint64_t *batch_id);
/* Queues n requests; they run at once on the engine's workers. A request with a
 * bad segment handle or a NULL source is refused before anything is queued. */
int mc_te_batch_submit(mc_te_t *te, uint64_t batch_id, const mc_te_request_t *reqs, size_t n);
/* As mc_te_batch_submit, but the calling thread moves the requests itself and
 * returns when they are done (their status is final). For small batches, where
 * handing pieces to the workers and back costs more than moving them; larger
 * ones are better submitted, so that the workers share them. Requests to one
 * peer reached over the network (tcp, rdma) run here too, as one pipeline: a
 * stalled peer then holds the caller until the engine's frame deadline
 * (MC_TE_IO_TIMEOUT_MS, plus the bytes at the minimum rate), which
 * mc_te_batch_wait's own deadline does not shorten. A batch with requests to
 * two or more such peers is queued instead, exactly as by mc_te_batch_submit,
 * so that the workers move them side by side: wait for it as usual. */
int mc_te_batch_run(mc_te_t *te, uint64_t batch_id, const mc_te_request_t *reqs, size_t n);
/* Up to this many bytes in all, the sync helpers (mc_te_transfer_sync, the
 * store's transfers) use mc_te_batch_run. */
#define MC_TE_RUN_INLINE_BYTES (256u * 1024u)
/* Status of one task, and the bytes it moved so far (may be NULL). */
int mc_te_task_status(mc_te_t *te, uint64_t batch_id, size_t task, mc_te_status_t *status,
                      uint64_t *transferred);
/* Whole batch: COMPLETED when every task is, FAILED/TIMEOUT when any is and the
 * rest are done, PENDING otherwise (WAITING when nothing was submitted). */
int mc_te_batch_status(mc_te_t *te, uint64_t batch_id, mc_te_status_t *status);
/* Blocks until the batch is no longer PENDING or timeout_ms passes (<0: forever). */
int mc_te_batch_wait(mc_te_t *te, uint64_t batch_id, int timeout_ms, mc_te_status_t *status);
/* Frees a batch; MC_TE_ERR_BATCH_BUSY while tasks are still running. */
int mc_te_batch_free(mc_te_t *te, uint64_t batch_id);

/* Runs n requests and waits for all of them. 0 when all completed, else the
 * first failure as MC_TE_ERR_* (timeouts included as MC_TE_ERR_SOCKET). */
int mc_te_transfer_sync(mc_te_t *te, const mc_te_request_t *reqs, size_t n);

/* Sends a notification {name, msg} to the engine that owns segment. 0 once the
 * target queued it; MC_TE_ERR_TOO_MANY_REQUESTS when the target's queue was full
 * and it dropped this one. */
int mc_te_notify_send(mc_te_t *te, const char *segment, const char *name, const char *msg);
/* Takes every notification received so far (array and strings malloc'd; free
 * with mc_te_notify_free), in arrival order. Until they are fetched, at most
 * MC_TE_NOTIFY_MAX_COUNT (4096) notifications of MC_TE_NOTIFY_MAX_BYTES (64 MiB)
 * of names and messages in all are kept; more are dropped and counted. */
int mc_te_notify_fetch(mc_te_t *te, mc_te_notify_t **out, size_t *n);
void mc_te_notify_free(mc_te_notify_t *v, size_t n);
/* Notifications dropped at a full queue since the engine started. */
uint64_t mc_te_notify_dropped(mc_te_t *te);
/* Round trip to a peer's listener; 0 when it answered. */
int mc_te_probe(mc_te_t *te, const char *segment);

/* Human-readable text for an MC_TE_ERR_* code. */
const char *mc_te_strerror(int err);
/* Name of the transport the engine uses for a segment: "local", "shm", "tcp" or "rdma". */
const char *mc_te_segment_transport(mc_te_t *te, int32_t handle);

#ifdef __cplusplus
}
#endif
#endif
