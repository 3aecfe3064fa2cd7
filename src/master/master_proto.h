/* master_proto.h: the wire format of the master RPC (docs/protocol.md,
 * "Master RPC, version 1"): a 20-byte frame header and one request and one
 * reply message per method, each declared once below with X-macros. From
 * those declarations this header generates the message structs and the
 * encoders/decoders of master_proto.c, so a field is added in one place.
 *
 * Decoders never read past their input, reject lengths and counts over the
 * limits below, reject trailing bytes, and say why through `*why` (a static
 * string). Decoded strings and arrays live in a caller-supplied arena
 * (mc_mp_arena_t) and stay valid until it is reset or freed.
 * Thread rule: all functions are reentrant; an arena or a buffer belongs to
 * one thread at a time.
 * Errors: 0 or -1 (decode; reason in *why) / -ENOMEM (encode, arena). */
#ifndef MC_MASTER_PROTO_H
#define MC_MASTER_PROTO_H
#include <stddef.h>
#include <stdint.h>

#include "base_codec.h"
#include "master_service.h"

/* ---- frame header ---- */
#define MC_MP_MAGIC 0x524D434Du /* the bytes "M C M R" */
#define MC_MP_VERSION 3 /* 2: the header carries the leader view; 3: replicas carry a kind */
#define MC_MP_HDR_LEN 28
#define MC_MP_REPLY 0x80u /* set in `method` of a reply */

/* ---- limits (enforced by the decoders) ---- */
#define MC_MP_FRAME_MAX (64u << 20) /* payload bytes of one frame */
#define MC_MP_STR_MAX 65536u        /* a key, regex or version string */
#define MC_MP_BATCH_MAX 1048576u    /* keys of one batch */
#define MC_MP_REPLICAS_MAX 1024u    /* replicas of one object */
#define MC_MP_SEGMENTS_MAX 65536u   /* segments of one remount */
#define MC_MP_PREFERRED_MAX 1024u   /* preferred segments of one config */

typedef struct {
    uint32_t magic;
    uint8_t version;
    uint8_t method; /* mc_mp_method_t, | MC_MP_REPLY in replies */
    uint16_t flags; /* 0 */
    uint32_t req_id;
    int32_t status;  /* 0 in requests; replies: 0 or a negative MC_ERR_* */
    uint32_t length; /* payload bytes that follow */
    /* The leader view (an etcd revision with HA, else 0): in a reply, the
     * view the master serves under; in a request, the newest view the client
     * has seen. A client refuses a reply older than its view; a master refuses
     * a request newer than its own (it has been replaced). */
    uint64_t view;
} mc_mp_hdr_t;

void mc_mp_hdr_encode(const mc_mp_hdr_t *h, uint8_t out[MC_MP_HDR_LEN]);
/* Decodes and validates a header from buf (at least MC_MP_HDR_LEN bytes, else
 * "truncated header"): magic, version, a known method, flags 0, status 0 in a
 * request, length <= MC_MP_FRAME_MAX. Returns 0 or -1 with *why set. */
int mc_mp_hdr_decode(const uint8_t *buf, size_t len, mc_mp_hdr_t *h, const char **why);

/* ---- growable output buffer ---- */
typedef struct {
    uint8_t *p;
    size_t len, cap;
    int err;       /* set on allocation failure; later writes are ignored */
    uint64_t view; /* written into the header of every frame encoded here */
} mc_mp_buf_t;
void mc_mp_buf_free(mc_mp_buf_t *b);

/* ---- arena for decoded messages ---- */
typedef struct mc_mp_chunk mc_mp_chunk_t;
typedef struct {
    mc_mp_chunk_t *head;
} mc_mp_arena_t;
/* n bytes, 16-aligned, zeroed; NULL when out of memory. */
void *mc_mp_arena_alloc(mc_mp_arena_t *a, size_t n);
/* Frees everything but the newest chunk when it is small (kept for reuse). */
void mc_mp_arena_reset(mc_mp_arena_t *a);
void mc_mp_arena_free(mc_mp_arena_t *a);

/* Per-key result of the batch forms that return replicas. */
typedef struct {
    int32_t rc;
    mc_replica_t *reps;
    size_t n;
} mc_mp_result_t;

/* ---- messages ----
 * Field kinds: U8 U32 I32 U64 I64 (integers), UUID (2 x u64: hi, lo), B32 (32 bytes),
 * STR (u32 length + bytes, <= MC_MP_STR_MAX, no NUL byte; decoded NUL-terminated),
 * SEG (mc_segment_t), SEGS (u32 count + SEG), RCFG (mc_replicate_config_t),
 * REPS (u32 count + replicas), STRS (u32 count + STR), U64S / I32S (u32 count + ints),
 * RESULTS (u32 count + (i32 rc, REPS)).
 * An array field `x` is a pointer `x` plus a count `n_x`. */
#define MC_MP_NONE(F)

#define MC_MP_SERVICE_READY_REQ(F) F(STR, version)
#define MC_MP_SERVICE_READY_REP(F) F(STR, version)
#define MC_MP_MOUNT_SEGMENT_REQ(F) F(SEG, seg) F(UUID, client)
#define MC_MP_REMOUNT_SEGMENTS_REQ(F) F(SEGS, segs) F(UUID, client)
#define MC_MP_UNMOUNT_SEGMENT_REQ(F) F(UUID, segment) F(UUID, client)
#define MC_MP_PING_REQ(F) F(UUID, client)
#define MC_MP_PING_REP(F) F(I32, client_status)
#define MC_MP_PUT_START_REQ(F) F(UUID, client) F(STR, key) F(U64, size) F(RCFG, cfg)
#define MC_MP_PUT_START_REP(F) F(REPS, reps)
#define MC_MP_KEY_CLIENT_REQ(F) F(UUID, client) F(STR, key)
#define MC_MP_GET_REPLICAS_REQ(F) F(STR, key)
#define MC_MP_GET_REPLICAS_REP(F) F(REPS, reps) F(U64, lease_ttl_ms)
#define MC_MP_EXIST_REQ(F) F(STR, key)
#define MC_MP_EXIST_REP(F) F(U8, exists)
#define MC_MP_REMOVE_REQ(F) F(STR, key) F(U8, force)
#define MC_MP_REMOVE_ALL_REQ(F) F(U8, force)
#define MC_MP_COUNT_REP(F) F(I64, count)
#define MC_MP_REMOVE_BY_REGEX_REQ(F) F(STR, regex) F(U8, force)
#define MC_MP_BATCH_PUT_START_REQ(F) F(UUID, client) F(STRS, keys) F(U64S, sizes) F(RCFG, cfg)
#define MC_MP_BATCH_RESULTS_REP(F) F(RESULTS, results)
#define MC_MP_BATCH_KEYS_CLIENT_REQ(F) F(UUID, client) F(STRS, keys)
#define MC_MP_BATCH_KEYS_REQ(F) F(STRS, keys)
#define MC_MP_BATCH_GET_REPLICAS_REP(F) F(RESULTS, results) F(U64, lease_ttl_ms)
#define MC_MP_BATCH_RCS_REP(F) F(I32S, rcs)
#define MC_MP_BATCH_REMOVE_REQ(F) F(STRS, keys) F(U8, force)
#define MC_MP_BATCH_REPLICA_CLEAR_REQ(F) F(UUID, client) F(STRS, keys) F(STR, segment)
/* the SSD tier (master_disk.c, docs/store.md "SSD tier") */
#define MC_MP_DISK_MOUNT_REQ(F)                                                                    \
    F(UUID, client) F(UUID, disk) F(STR, name) F(STR, endpoint) F(U64, quota)
#define MC_MP_DISK_MOUNT_REP(F)                                                                    \
    F(U8, offload_on_evict) F(U8, promotion_on_hit) F(U32, promotion_threshold)
#define MC_MP_DISK_TASKS_REQ(F) F(UUID, client) F(U32, max)
#define MC_MP_DISK_TASKS_REP(F)                                                                    \
    F(STRS, keys) F(U64S, addrs) F(U64S, sizes) F(U64S, stamps) F(STRS, drops) F(STRS, promotes)
#define MC_MP_DISK_ADD_REQ(F)                                                                      \
    F(UUID, client) F(STRS, keys) F(U64S, sizes) F(U64S, stamps) F(U8, rescan)
#define MC_MP_CLIENT_REQ(F) F(UUID, client)
/* the cluster secret's challenge-response (net_auth.h, docs/security.md) */
#define MC_MP_AUTH_HELLO_REQ(F) F(U8, auth_version) F(B32, nonce)
#define MC_MP_AUTH_HELLO_REP(F) F(B32, nonce) F(B32, mac)
#define MC_MP_AUTH_PROOF_REQ(F) F(B32, mac)
/* move tasks of drain jobs (master_move.h) */
#define MC_MP_TASK_FETCH_REQ(F) F(UUID, client) F(U32, max)
#define MC_MP_TASK_FETCH_REP(F)                                                                    \
    F(U64S, ids)                                                                                   \
    F(STRS, keys) F(U64S, sizes) F(U64S, src_addrs) F(U64S, dst_addrs) F(STRS, dst_endpoints)
#define MC_MP_TASK_COMPLETE_REQ(F) F(UUID, client) F(U64, id) F(I32, rc)
#define MC_MP_DISK_CONFIG_REP(F) F(U8, enabled) F(STR, root_fs_dir)
/* copy / move tasks of upstream's API (master_move.h) */
#define MC_MP_TASK_COPY_REQ(F) F(STR, key) F(STRS, targets)
#define MC_MP_TASK_MOVE_REQ(F) F(STR, key) F(STR, source) F(STR, target)
#define MC_MP_TASK_ID_REP(F) F(UUID, task)
#define MC_MP_TASK_QUERY_REQ(F) F(UUID, task)
#define MC_MP_TASK_QUERY_REP(F)                                                                    \
    F(UUID, task) F(U8, type) F(U8, status) F(I64, created_ms) F(I64, updated_ms)                  \
    F(UUID, assigned_client) F(STR, message)

/* X(NAME, method id, lower_name, request fields, reply fields) */
#define MC_MP_METHODS(X)                                                                           \
    X(SERVICE_READY, 0x01, service_ready, MC_MP_SERVICE_READY_REQ, MC_MP_SERVICE_READY_REP)        \
    X(MOUNT_SEGMENT, 0x02, mount_segment, MC_MP_MOUNT_SEGMENT_REQ, MC_MP_NONE)                     \
    X(REMOUNT_SEGMENTS, 0x03, remount_segments, MC_MP_REMOUNT_SEGMENTS_REQ, MC_MP_NONE)            \
    X(UNMOUNT_SEGMENT, 0x04, unmount_segment, MC_MP_UNMOUNT_SEGMENT_REQ, MC_MP_NONE)               \
    X(PING, 0x05, ping, MC_MP_PING_REQ, MC_MP_PING_REP)                                            \
    X(AUTH_HELLO, 0x06, auth_hello, MC_MP_AUTH_HELLO_REQ, MC_MP_AUTH_HELLO_REP)                    \
    X(AUTH_PROOF, 0x07, auth_proof, MC_MP_AUTH_PROOF_REQ, MC_MP_NONE)                              \
    X(PUT_START, 0x10, put_start, MC_MP_PUT_START_REQ, MC_MP_PUT_START_REP)                        \
    X(PUT_END, 0x11, put_end, MC_MP_KEY_CLIENT_REQ, MC_MP_NONE)                                    \
    X(PUT_REVOKE, 0x12, put_revoke, MC_MP_KEY_CLIENT_REQ, MC_MP_NONE)                              \
    X(UPSERT_START, 0x13, upsert_start, MC_MP_PUT_START_REQ, MC_MP_PUT_START_REP)                  \
    X(GET_REPLICAS, 0x14, get_replicas, MC_MP_GET_REPLICAS_REQ, MC_MP_GET_REPLICAS_REP)            \
    X(EXIST, 0x15, exist, MC_MP_EXIST_REQ, MC_MP_EXIST_REP)                                        \
    X(REMOVE, 0x16, remove, MC_MP_REMOVE_REQ, MC_MP_NONE)                                          \
    X(REMOVE_ALL, 0x17, remove_all, MC_MP_REMOVE_ALL_REQ, MC_MP_COUNT_REP)                         \
    X(REMOVE_BY_REGEX, 0x18, remove_by_regex, MC_MP_REMOVE_BY_REGEX_REQ, MC_MP_COUNT_REP)          \
    X(BATCH_PUT_START, 0x20, batch_put_start, MC_MP_BATCH_PUT_START_REQ, MC_MP_BATCH_RESULTS_REP)  \
    X(BATCH_PUT_END, 0x21, batch_put_end, MC_MP_BATCH_KEYS_CLIENT_REQ, MC_MP_BATCH_RCS_REP)        \
    X(BATCH_PUT_REVOKE, 0x22, batch_put_revoke, MC_MP_BATCH_KEYS_CLIENT_REQ, MC_MP_BATCH_RCS_REP)  \
    X(BATCH_GET_REPLICAS, 0x23, batch_get_replicas, MC_MP_BATCH_KEYS_REQ,                          \
      MC_MP_BATCH_GET_REPLICAS_REP)                                                                \
    X(BATCH_EXIST, 0x24, batch_exist, MC_MP_BATCH_KEYS_REQ, MC_MP_BATCH_RCS_REP)                   \
    X(BATCH_REMOVE, 0x25, batch_remove, MC_MP_BATCH_REMOVE_REQ, MC_MP_BATCH_RCS_REP)               \
    X(BATCH_UPSERT_START, 0x26, batch_upsert_start, MC_MP_BATCH_PUT_START_REQ,                     \
      MC_MP_BATCH_RESULTS_REP)                                                                     \
    X(BATCH_REPLICA_CLEAR, 0x2A, batch_replica_clear, MC_MP_BATCH_REPLICA_CLEAR_REQ,               \
      MC_MP_BATCH_RCS_REP)                                                                         \
    X(DISK_MOUNT, 0x30, disk_mount, MC_MP_DISK_MOUNT_REQ, MC_MP_DISK_MOUNT_REP)                    \
    X(DISK_TASKS, 0x31, disk_tasks, MC_MP_DISK_TASKS_REQ, MC_MP_DISK_TASKS_REP)                    \
    X(DISK_ADD, 0x32, disk_add, MC_MP_DISK_ADD_REQ, MC_MP_BATCH_RCS_REP)                           \
    X(DISK_DROP, 0x33, disk_drop, MC_MP_BATCH_KEYS_CLIENT_REQ, MC_MP_BATCH_RCS_REP)                \
    X(PROMOTE_START, 0x34, promote_start, MC_MP_PUT_START_REQ, MC_MP_PUT_START_REP)                \
    X(DISK_UNMOUNT, 0x35, disk_unmount, MC_MP_CLIENT_REQ, MC_MP_NONE)                              \
    X(DISK_CONFIG, 0x36, disk_config, MC_MP_CLIENT_REQ, MC_MP_DISK_CONFIG_REP)                    \
    X(TASK_FETCH, 0x38, task_fetch, MC_MP_TASK_FETCH_REQ, MC_MP_TASK_FETCH_REP)                    \
    X(TASK_COMPLETE, 0x39, task_complete, MC_MP_TASK_COMPLETE_REQ, MC_MP_NONE)                          \
    X(TASK_COPY, 0x3A, task_copy, MC_MP_TASK_COPY_REQ, MC_MP_TASK_ID_REP)                          \
    X(TASK_MOVE, 0x3B, task_move, MC_MP_TASK_MOVE_REQ, MC_MP_TASK_ID_REP)                          \
    X(TASK_QUERY, 0x3C, task_query, MC_MP_TASK_QUERY_REQ, MC_MP_TASK_QUERY_REP)

#define MC__MP_ENUM(N, id, l, rq, rp) MC_MP_##N = id,
typedef enum { MC_MP_METHODS(MC__MP_ENUM) } mc_mp_method_t;
#undef MC__MP_ENUM

/* Appends a reply frame of `method` with a negative status and no payload. */
int mc_mp_encode_status_rep(mc_mp_buf_t *b, uint8_t method, uint32_t req_id, int32_t status);

/* Decodes a payload of `method` (with MC_MP_REPLY set: the reply) into a
 * scratch message and drops it: 0 when valid, else -1 with *why. For tests,
 * fuzzing and logs. */
int mc_mp_check_payload(unsigned method, const uint8_t *p, size_t len, mc_mp_arena_t *a,
                        const char **why);

/* Upper-case name of a method ("PUT_START"), or NULL when unknown. */
const char *mc_mp_method_name(unsigned method);

/* Struct members of each field kind. */
#define MC__MP_DECL_U8(n) uint8_t n;
#define MC__MP_DECL_U32(n) uint32_t n;
#define MC__MP_DECL_I32(n) int32_t n;
#define MC__MP_DECL_U64(n) uint64_t n;
#define MC__MP_DECL_I64(n) int64_t n;
#define MC__MP_DECL_UUID(n) mc_uuid_t n;
#define MC__MP_DECL_B32(n) uint8_t n[32];
#define MC__MP_DECL_STR(n) const char *n;
#define MC__MP_DECL_SEG(n) mc_segment_t n;
#define MC__MP_DECL_SEGS(n)                                                                        \
    const mc_segment_t *n;                                                                         \
    size_t n_##n;
#define MC__MP_DECL_RCFG(n) mc_replicate_config_t n;
#define MC__MP_DECL_REPS(n)                                                                        \
    const mc_replica_t *n;                                                                         \
    size_t n_##n;
#define MC__MP_DECL_STRS(n)                                                                        \
    const char *const *n;                                                                          \
    size_t n_##n;
#define MC__MP_DECL_U64S(n)                                                                        \
    const uint64_t *n;                                                                             \
    size_t n_##n;
#define MC__MP_DECL_I32S(n)                                                                        \
    const int32_t *n;                                                                              \
    size_t n_##n;
#define MC__MP_DECL_RESULTS(n)                                                                     \
    const mc_mp_result_t *n;                                                                       \
    size_t n_##n;
#define MC__MP_DECL(kind, n) MC__MP_DECL_##kind(n)

/* For every method: mc_mp_<name>_req_t, mc_mp_<name>_rep_t (reply payload,
 * present only when the reply's status is 0) and their codecs.
 * encode_*: appends one whole frame (header + payload) to b; a reply with
 * status < 0 carries no payload and `m` may be NULL. Returns 0 or -ENOMEM.
 * decode_*: parses exactly `len` payload bytes into *m, allocating from a. */
#define MC__MP_PROTOS(N, id, l, rq, rp)                                                            \
    typedef struct {                                                                               \
        rq(MC__MP_DECL) uint8_t unused_;                                                           \
    } mc_mp_##l##_req_t;                                                                           \
    typedef struct {                                                                               \
        rp(MC__MP_DECL) uint8_t unused_;                                                           \
    } mc_mp_##l##_rep_t;                                                                           \
    int mc_mp_encode_##l##_req(mc_mp_buf_t *b, uint32_t req_id, const mc_mp_##l##_req_t *m);       \
    int mc_mp_encode_##l##_rep(mc_mp_buf_t *b, uint32_t req_id, int32_t status,                    \
                               const mc_mp_##l##_rep_t *m);                                        \
    int mc_mp_decode_##l##_req(const uint8_t *p, size_t len, mc_mp_arena_t *a,                     \
                               mc_mp_##l##_req_t *m, const char **why);                            \
    int mc_mp_decode_##l##_rep(const uint8_t *p, size_t len, mc_mp_arena_t *a,                     \
                               mc_mp_##l##_rep_t *m, const char **why);
MC_MP_METHODS(MC__MP_PROTOS)
#undef MC__MP_PROTOS

#endif
