/* te_int.h: internals shared by the transfer engine's files. Not installed.
 * Lock order: te->peers_lock > peer->lock; te->bufs_lock > te->conns_lock
 * (a server checks a range under bufs_lock shared and records its in-flight op
 * under conns_lock before it lets bufs_lock go; no lock is held across a
 * network wait). bufs_lock is exclusive only for (un)register's table edits. */
#ifndef MC_TE_INT_H
#define MC_TE_INT_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "base_map.h"
#include "mooncake/meta.h"
#include "mooncake/te.h"
#include "net_auth.h"

/* ---- wire (te_wire.c), documented in docs/protocol.md ---- */
#define MC_TE_MAGIC 0x4554434Du /* "MCTE" little-endian */
#define MC_TE_VERSION 1
#define MC_TE_HDR_LEN 32
enum {
    MC_TE_OP_READ = 0,
    MC_TE_OP_WRITE = 1,
    MC_TE_OP_META = 0x10,   /* payload: requester's descriptor JSON; reply: ours */
    MC_TE_OP_NOTIFY = 0x11, /* payload: {"name","notify_msg"} */
    MC_TE_OP_PROBE = 0x12,  /* no payload */
    /* the cluster secret's exchange (net_auth.h), first on a connection when
     * a secret is configured: HELLO payload u8 version + 32-byte nonce, its
     * reply nonce + MAC (64 bytes); PROOF payload the 32-byte MAC */
    MC_TE_OP_AUTH_HELLO = 0x13,
    MC_TE_OP_AUTH_PROOF = 0x14,
    MC_TE_OP_REPLY = 0x80, /* or-ed into the opcode of a reply */
};
/* Remote status codes carried in replies. */
enum {
    MC_TE_ST_OK = 0,
    MC_TE_ST_OUT_OF_RANGE = 1, /* address range not inside one registered buffer */
    MC_TE_ST_BAD_REQUEST = 2,
    MC_TE_ST_QUEUE_FULL = 3,    /* NOTIFY: the target's notification queue is full; dropped */
    MC_TE_ST_AUTH_REQUIRED = 4, /* a request before the cluster secret was proved */
    MC_TE_ST_AUTH_FAILED = 5,   /* a wrong proof, or an exchange out of order */
    MC_TE_ST_AUTH_OFF = 6,      /* HELLO to an engine that has no cluster secret */
    MC_TE_ST_AUTH_VERSION = 7,  /* HELLO of another handshake version */
};
#define MC_TE_AUTH_HELLO_LEN 33
#define MC_TE_AUTH_HELLO_REP_LEN 64

typedef struct {
    uint32_t magic;
    uint8_t version;
    uint8_t opcode;
    uint16_t flags;
    uint32_t req_id;
    int32_t status;
    uint64_t addr;
    uint64_t length;
} mc__te_hdr_t;

void mc__te_hdr_encode(const mc__te_hdr_t *h, uint8_t out[MC_TE_HDR_LEN]);
/* Decodes and validates magic, version and opcode; returns 0 or -1 with *why set
 * to a static reason string. Never reads past len. */
int mc__te_hdr_decode(const uint8_t *buf, size_t len, mc__te_hdr_t *h, const char **why);
/* Sends a header whose length field is `length`, followed by `length` bytes of
 * payload when payload is non-NULL (a READ request carries a length but no
 * payload). 0 or negative errno. */
int mc__te_send_frame(int fd, uint8_t opcode, uint32_t req_id, int32_t status, uint64_t addr,
                      uint64_t length, const void *payload);
/* Sends (dir_send=1) or receives exactly len bytes before deadline_ms
 * (mc_now_ms clock), whatever pace the peer keeps. The socket's SO_RCVTIMEO
 * and SO_SNDTIMEO are *cur_ms on entry: they are lowered as the deadline
 * nears (and raised back to io_ms at the next call that has the time), so a
 * peer that trickles bytes cannot stretch one frame past its deadline (by more
 * than min(io_ms / 8, 1 s): the slack that spares a frame at normal pace any
 * setsockopt call).
 * Returns 0, -ETIME when the deadline passed, -ETIMEDOUT when nothing moved for
 * io_ms, -ECONNRESET on a peer close, or another -errno. */
int mc__te_io_by(int fd, void *buf, size_t len, int dir_send, uint64_t deadline_ms, int io_ms,
                 int *cur_ms);
/* Sends every byte of iov[0..n) (sendmsg, as many at once as the socket takes)
 * under the rules of mc__te_io_by; advances iov as it goes. */
struct iovec;
int mc__te_iov_send_by(int fd, struct iovec *iov, size_t n, uint64_t deadline_ms, int io_ms,
                       int *cur_ms);
/* One recv of at most cap bytes (whatever has arrived, at least one byte) under
 * the rules of mc__te_io_by: returns the bytes received or a negative errno. */
ssize_t mc__te_recv_some_by(int fd, void *buf, size_t cap, uint64_t deadline_ms, int io_ms,
                            int *cur_ms);
/* The same with recvmsg into iov[0..n) (which it does not advance). */
ssize_t mc__te_iov_recv_some_by(int fd, struct iovec *iov, size_t n, uint64_t deadline_ms,
                                int io_ms, int *cur_ms);
/* Steps *iov / *n over `done` bytes and over the empty entries that follow. */
void mc__te_iov_advance(struct iovec **iov, size_t *n, size_t done);
/* mc__te_send_frame under a deadline, as mc__te_io_by, header and payload in one call. */
int mc__te_send_frame_by(int fd, uint8_t opcode, uint32_t req_id, int32_t status, uint64_t addr,
                         uint64_t length, const void *payload, uint64_t deadline_ms, int io_ms,
                         int *cur_ms);

/* Proves the cluster secret on a freshly connected fd to the engine at
 * ip:port and checks its proof (te_auth.c), within deadline_ms; a no-op
 * without a cluster key. Returns 0, or MC_TE_ERR_REJECT_HANDSHAKE /
 * MC_TE_ERR_SOCKET after one line naming the peer and the cause. */
int mc__te_auth_client(mc_te_t *te, int fd, const char *ip, uint16_t port, uint64_t deadline_ms);

/* ---- segment descriptor (te_desc.c) ---- */
/* NICs (libfabric domains) and endpoints per NIC of the rdma transport. */
#define MC_TE_RDMA_MAX_NICS 8
#define MC_TE_RDMA_MAX_EPS 4
#define MC_TE_RDMA_ADDR_MAX 64 /* bytes of one endpoint address (fi_getname) */
typedef struct {
    uint64_t addr;
    uint64_t length;
    char location[32];
    /* rdma: the remote key of this buffer on each NIC (descriptor "rkey");
     * locally also the transport's registration record (never encoded) */
    uint64_t rkey[MC_TE_RDMA_MAX_NICS];
    void *rdma_mr;
} mc__te_buf_t;

typedef struct {
    char name[64]; /* the domain, e.g. "mlx5_0", "lo" */
    size_t neps, addr_len;
    uint8_t addr[MC_TE_RDMA_MAX_EPS][MC_TE_RDMA_ADDR_MAX];
} mc__te_nic_t;

typedef struct {
    char name[256];
    char protocol[16];
    char ip[64];       /* where the listener is (from rpc_meta or the descriptor) */
    uint16_t port;     /* the listener (tcp_data_port) */
    char host_id[128]; /* boot id + pid ns + net ns: equal means same host, shm usable */
    int64_t pid;
    uint64_t start_time; /* of pid, from /proc/<pid>/stat: guards against pid reuse */
    uint64_t gen_addr;   /* address of the owner's registration generation (shm) */
    uint64_t gen;        /* the generation this descriptor describes */
    size_t nbufs;
    mc__te_buf_t *bufs; /* sorted by addr, non-overlapping */
    /* rdma ("rdma" object): provider name, remote addressing by virtual
     * address (1) or offset in the buffer (0), the NICs with their endpoints */
    char rdma_prov[64];
    int rdma_virt;
    size_t rdma_nnics;
    mc__te_nic_t rdma_nics[MC_TE_RDMA_MAX_NICS];
} mc__te_desc_t;

/* Encodes d as compact JSON (malloc'd). NULL on allocation failure. */
char *mc__te_desc_encode(const mc__te_desc_t *d);
/* Parses JSON into *d (d->bufs malloc'd; free with mc__te_desc_clear).
 * Returns 0, or MC_TE_ERR_MALFORMED_JSON with a reason written to why[256]. */
int mc__te_desc_decode(const char *json, size_t len, mc__te_desc_t *d, char *why);
void mc__te_desc_clear(mc__te_desc_t *d);
/* 1 when [addr, addr+len) lies inside one buffer of d (len > 0, no overflow). */
int mc__te_desc_contains(const mc__te_desc_t *d, uint64_t addr, uint64_t len);
/* The buffer of d that holds all of [addr, +len) (len 0: addr inside or at
 * its end), or NULL. */
const mc__te_buf_t *mc__te_desc_find(const mc__te_desc_t *d, uint64_t addr, uint64_t len);
/* rpc_meta record {"ip_or_host_name","rpc_port"}. */
char *mc__te_rpc_encode(const char *ip, uint16_t port);
int mc__te_rpc_decode(const char *json, char *ip, size_t iplen, uint16_t *port);
/* Notification payload {"name","notify_msg"}. */
char *mc__te_notify_encode(const char *name, const char *msg);
int mc__te_notify_decode(const char *json, size_t len, char **name, char **msg);

/* ---- peers (te_peer.c) ---- */
#define MC_TE_MAX_LANES 16
typedef struct mc__te_peer {
    int32_t id;
    char name[256];
    pthread_mutex_t lock;
    pthread_cond_t cond;
    mc__te_desc_t desc; /* under lock */
    int have_desc;
    int stale;     /* the store reported a change of its records: re-read before use */
    int shm_state; /* 1 usable, 0 not (other host, forced tcp, or refused) */
    int pidfd;     /* of the peer process while shm_state == 1, else -1 */
    int rdma_state; /* 1: both ends speak the same rdma provider (before shm) */
    /* rdma: the peer's endpoints in our address vectors, per local NIC and
     * peer endpoint (valid when the bit of rdma_av_set is set); under lock */
    uint64_t rdma_fi[MC_TE_RDMA_MAX_NICS][MC_TE_RDMA_MAX_EPS];
    uint64_t rdma_av_set;
    int rdma_down; /* its listener refused while rdma slices hung: checked first */
    int idle[MC_TE_MAX_LANES];
    int nidle, nopen;
    uint64_t last_warn_ms; /* connect failures are logged at most once a second */
} mc__te_peer_t;

/* ---- transports (transport/) ---- */
typedef struct {
    const char *name;
    /* Moves one piece synchronously. Returns 0, or MC_TE_ERR_* with *timed_out
     * set when the peer did not answer in time. */
    int (*xfer)(mc_te_t *te, mc__te_peer_t *p, int opcode, void *local, uint64_t remote,
                uint64_t len, int *timed_out);
} mc__te_transport_t;
/* Internal xfer result: the target's registrations changed since its
 * descriptor was read; refresh and check the range again. */
#define MC__TE_STALE (-10000)
extern const mc__te_transport_t mc__te_tcp;
extern const mc__te_transport_t mc__te_shm;
extern const mc__te_transport_t mc__te_rdma;

/* ---- rdma on libfabric (transport/te_rdma.c) ---- */
typedef struct mc__te_rdma mc__te_rdma_t;
typedef struct mc__te_piece mc__te_piece_t;
/* Opens the NICs named in devices (comma-separated libfabric domain names;
 * NULL/"": see docs/transfer-engine.md "RDMA") with MC_TE_RDMA_EPS endpoints
 * each, libfabric loaded with dlopen. Returns 0 with te->rdma set, or -1 after
 * one warning line naming what was looked for and what was found (the engine
 * then runs tcp). Before the engine publishes anything. */
int mc__te_rdma_open(mc_te_t *te, const char *devices);
/* Stops the progress threads and frees every endpoint, registration and
 * domain. After the workers stopped. NULL te->rdma is a no-op. */
void mc__te_rdma_close(mc_te_t *te);
/* Registers [b->addr, +b->length) with every NIC for remote read and write;
 * sets b->rkey and b->rdma_mr. 0 (also without rdma) or MC_TE_ERR_MEMORY after
 * a line naming the NIC and the cause (nothing stays registered). */
int mc__te_rdma_reg(mc_te_t *te, mc__te_buf_t *b);
/* Closes b's registrations: remote access to it fails from here on. */
void mc__te_rdma_dereg(mc_te_t *te, mc__te_buf_t *b);
/* Fills d's "rdma" part (provider, addressing, NICs) for our descriptor. */
void mc__te_rdma_self_desc(mc_te_t *te, mc__te_desc_t *d);
/* 1 when peer descriptor d can be reached over our rdma NICs. */
int mc__te_rdma_usable(mc_te_t *te, const mc__te_desc_t *d);
/* As mc__te_tcp_xfer_many, over rdma: the slices of n pieces (one
 * direction, all to p) in flight together under one deadline. */
size_t mc__te_rdma_xfer_many(mc_te_t *te, mc__te_peer_t *p, int opcode, mc__te_piece_t *const *pcs,
                             size_t n, int *rest_rc, int *rest_timed_out);
/* Bytes each local NIC moved (initiator side) since start, for tests and
 * benches; returns the number of NICs (0 without rdma). */
size_t mc__te_rdma_nic_bytes(mc_te_t *te, uint64_t *out, size_t cap);
typedef struct mc__te_piece mc__te_piece_t;
/* Moves n pieces (one direction, all to same-host peer p) with
 * process_vm_readv/writev calls of many iovecs each; before each call it checks
 * every range against p's descriptor, that the process is alive (pidfd) and
 * that its registration generation is the descriptor's, as shm_xfer does per
 * piece. Returns how many leading pieces were moved; the caller runs the rest
 * one by one (which refreshes, falls back to tcp or fails as usual). */
size_t mc__te_shm_xfer_many(mc_te_t *te, mc__te_peer_t *p, int opcode, mc__te_piece_t *const *pcs,
                            size_t n);
/* Moves n pieces (one direction, all to peer p over tcp) as one pipeline on one
 * pooled connection: every request frame in one sendmsg (the payloads of WRITEs
 * with them), then the replies in order, matched by request id (the piece's
 * index). Returns how many leading pieces were moved. When the peer timed out,
 * *rest_rc is MC_TE_ERR_SOCKET and *rest_timed_out 1: the caller fails the rest
 * without trying again (one line says why); otherwise *rest_rc is 0 and the
 * caller runs the rest one by one (a refused range, a stale connection). */
size_t mc__te_tcp_xfer_many(mc_te_t *te, mc__te_peer_t *p, int opcode, mc__te_piece_t *const *pcs,
                            size_t n, int *rest_rc, int *rest_timed_out);
/* Start time of a process (field 22 of /proc/<pid>/stat), 0 if unknown. */
uint64_t mc__te_proc_start_time(int64_t pid);
/* Opens a pidfd for pid if it is still the process that started at start_time;
 * -1 otherwise. */
int mc__te_shm_attach(int64_t pid, uint64_t start_time);

/* ---- batches and workers (te_batch.c) ---- */
typedef struct mc__te_batch mc__te_batch_t;

struct mc__te_piece {
    struct mc__te_piece *next;
    mc__te_batch_t *batch;
    uint32_t task;
    int opcode;
    int32_t target;
    char *local;
    uint64_t remote;
    uint64_t len;
    int shm; /* the peer was reached over shm at submit: the piece may join a group */
    int tcp; /* a remote peer not reached over shm at submit: it may join a tcp pipeline */
};

/* ---- the engine ---- */
struct mc_te {
    char local_name[256];
    char seg_name[256];
    char ip[64];
    uint16_t port;
    int p2p;
    int force_tcp;
    char host_id[128];
    mc_meta_t *meta;
    int initialized;

    /* registered buffers, sorted by addr; reg_gen grows with every change and
     * same-host peers read it (process_vm_readv) before each copy */
    pthread_rwlock_t bufs_lock;
    uint64_t reg_gen;
    mc__te_buf_t *bufs;
    size_t nbufs, capbufs;

    /* peers by name and by id (id 0 = self) */
    pthread_mutex_t peers_lock;
    mc_map_t *peers_by_name;
    mc__te_peer_t **peers;
    size_t npeers, cappeers;

    /* server: listener thread + one thread per connection */
    int listen_fd;
    int wake_pipe[2];
    pthread_t listener;
    int listener_running;
    pthread_mutex_t conns_lock;
    pthread_cond_t conns_cond;  /* a connection ended or finished a data op */
    struct mc__te_conn **conns; /* under conns_lock, with their in-flight ops */
    size_t nconns, capconns;
    size_t max_conns;          /* MC_TE_MAX_CONNS */
    uint64_t conn_cap_hits;    /* connections refused at the cap */
    uint64_t conn_cap_warn_ms; /* last log line about the cap */
    uint64_t frame_base_ms;    /* whole-frame deadline: base + length / rate */
    uint64_t frame_min_rate;   /* bytes per second (MC_TE_FRAME_MIN_RATE) */
    atomic_int stopping;
    const mc_auth_key_t *auth_key; /* the cluster key (net_auth.h); NULL: open */
    mc_auth_refusals_t auth_refusals;

    /* notifications received, bounded in count and bytes; a full queue drops
     * (and counts) what arrives until the application fetches */
    pthread_mutex_t notify_lock;
    mc_te_notify_t *notifies;
    size_t nnotify, capnotify;
    size_t notify_bytes;     /* name + msg bytes queued */
    size_t notify_max_count; /* MC_TE_NOTIFY_MAX_COUNT */
    size_t notify_max_bytes; /* MC_TE_NOTIFY_MAX_BYTES */
    uint64_t notify_dropped; /* since start */
    uint64_t notify_burst;   /* dropped since the last log line */
    uint64_t notify_warn_ms; /* time of that line; 0: no burst in progress */

    /* batches and the worker pool */
    pthread_mutex_t batch_lock;
    mc__te_batch_t **batches; /* slot table; id = slot | generation << 32 */
    uint32_t *batch_gen;
    size_t nbatch_slots;
    pthread_mutex_t work_lock;
    pthread_cond_t work_cond;
    mc__te_piece_t *work_head, *work_tail;
    pthread_t *workers;
    int nworkers;
    int lanes;
    int tcp_pipeline; /* MC_TE_TCP_PIPELINE: small tcp pieces group into pipelines */
    uint64_t piece_min;
    int io_timeout_ms;
    int connect_timeout_ms;
    mc__te_rdma_t *rdma; /* NULL: no rdma (protocol tcp, or no usable device) */
    /* "mooncake/[<cluster>/]": what the metadata watch covers (etcd only) */
    char meta_prefix[512];
};

/* te_engine.c */
/* Checks that [addr, addr+len) lies in one local registered buffer. Caller holds
 * bufs_lock (shared or exclusive). */
int mc__te_local_contains_locked(const mc_te_t *te, uint64_t addr, uint64_t len);
/* Fills d with this engine's descriptor (under bufs_lock shared). */
int mc__te_self_desc(mc_te_t *te, mc__te_desc_t *d);
/* Republishes the descriptor to the metadata store (no-op in P2P mode). */
int mc__te_publish(mc_te_t *te);
/* Adds a received notification from peer (ip:port, for logs), taking name and
 * msg. Returns 0, or MC_TE_ST_QUEUE_FULL when the queue is at its bound (the
 * strings are freed, the drop counted and logged once per burst). */
int mc__te_notify_push(mc_te_t *te, char *name, char *msg, const char *peer);

/* te_name.c */
/* Publishes mooncake/rpc_meta/<segment> (no-op in P2P mode). When another
 * record holds the name, its owner is asked who it is: a live engine keeps the
 * name (MC_TE_ERR_METADATA, logged with its address); one that is provably
 * gone (nothing listens there, or a listener that is not that segment) loses
 * it to us, under a takeover lock so that one of several claimants wins. */
int mc__te_claim_name(mc_te_t *te);

/* te_server.c */
int mc__te_server_start(mc_te_t *te);
void mc__te_server_stop(mc_te_t *te);
/* The deadline of a frame of `len` payload bytes that started at start_ms:
 * frame_base_ms + len / frame_min_rate (ms, mc_now_ms clock), saturating. The
 * server applies it to every frame it serves, the initiators to each exchange. */
uint64_t mc__te_frame_deadline(const mc_te_t *te, uint64_t start_ms, uint64_t len);
/* Called by unregister after the buffers left te->bufs (bufs_lock released):
 * shuts down every connection whose in-flight READ/WRITE overlaps one of the n
 * removed ranges and waits until none does, so no server thread touches that
 * memory once this returns. Those threads are in a socket call, which a
 * shutdown ends at once: the wait is short whatever pace the peer keeps. */
void mc__te_server_fence(mc_te_t *te, const mc__te_buf_t *removed, size_t n);

/* te_peer.c */
mc__te_peer_t *mc__te_peer_get(mc_te_t *te, int32_t id);
int mc__te_peer_open(mc_te_t *te, const char *name, int32_t *id);
/* (Re)fetches the descriptor of p from metadata or by handshake. */
int mc__te_peer_refresh(mc_te_t *te, mc__te_peer_t *p);
/* Metadata watch callback (mc_meta_watch_cb, arg = te): a change of a peer's
 * ram or rpc_meta record marks that peer stale, so its next open re-reads
 * the descriptor; key NULL marks every peer. Takes te->peers_lock. */
void mc__te_on_meta_change(void *arg, const char *key, int deleted);
/* Copies the listener address of p, fetching the descriptor when missing. */
int mc__te_peer_endpoint(mc_te_t *te, mc__te_peer_t *p, char *ip, size_t iplen, uint16_t *port);
/* Checks a remote range against p's descriptor, refreshing it once on a miss. */
int mc__te_peer_check_range(mc_te_t *te, mc__te_peer_t *p, uint64_t addr, uint64_t len);
/* Connection pool: take an idle connection or open a new one (blocks while
 * `lanes` are busy); give it back (fd < 0 or broken=1 closes it). */
int mc__te_conn_get(mc_te_t *te, mc__te_peer_t *p, int *fd, int *reused);
void mc__te_conn_put(mc_te_t *te, mc__te_peer_t *p, int fd, int broken);
void mc__te_peer_drop_conns(mc__te_peer_t *p);
void mc__te_peers_free(mc_te_t *te);
/* One request/response exchange on a fresh connection to a named segment:
 * sends opcode with payload, returns the reply payload (malloc'd, may be NULL). */
int mc__te_rpc_call(mc_te_t *te, const char *ip, uint16_t port, uint8_t opcode, const char *payload,
                    char **reply, size_t *reply_len);
/* Resolves the listener of a segment name without a descriptor exchange. */
int mc__te_resolve_endpoint(mc_te_t *te, const char *name, char *ip, size_t iplen, uint16_t *port);

/* te_batch.c */
int mc__te_workers_start(mc_te_t *te);
void mc__te_workers_stop(mc_te_t *te);
void mc__te_batches_free(mc_te_t *te);
#endif
