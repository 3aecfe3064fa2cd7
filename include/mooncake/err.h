/* mooncake/err.h: error codes of the store and the master, with upstream's
 * numbers (they are part of the Python API). Functions of libmooncake_store and
 * of the master return 0 or one of these. Transfer-engine codes are in te.h. */
#ifndef MOONCAKE_ERR_H
#define MOONCAKE_ERR_H

#ifdef __cplusplus
extern "C" {
#endif

#define MC_ERR_LIST(X)                                                                             \
    X(MC_OK, 0, "ok")                                                                              \
    X(MC_ERR_INTERNAL, -1, "internal error")                                                       \
    X(MC_ERR_BUFFER_OVERFLOW, -10, "buffer overflow")                                              \
    X(MC_ERR_SHARD_INDEX_OUT_OF_RANGE, -100, "shard index out of range")                           \
    X(MC_ERR_SEGMENT_NOT_FOUND, -101, "segment not found")                                         \
    X(MC_ERR_SEGMENT_ALREADY_EXISTS, -102, "segment already exists")                               \
    X(MC_ERR_CLIENT_NOT_FOUND, -103, "client not found")                                           \
    X(MC_ERR_NO_AVAILABLE_HANDLE, -200, "no space available")                                      \
    X(MC_ERR_INVALID_VERSION, -300, "protocol version mismatch")                                   \
    X(MC_ERR_INVALID_KEY, -400, "invalid key")                                                     \
    X(MC_ERR_WRITE_FAIL, -500, "write failed")                                                     \
    X(MC_ERR_INVALID_PARAMS, -600, "invalid parameters")                                           \
    X(MC_ERR_ILLEGAL_CLIENT, -601, "operation by a client that does not own the object")           \
    X(MC_ERR_INVALID_WRITE, -700, "no write in progress")                                          \
    X(MC_ERR_INVALID_READ, -701, "invalid read")                                                   \
    X(MC_ERR_INVALID_REPLICA, -702, "invalid replica")                                             \
    X(MC_ERR_REPLICA_IS_NOT_READY, -703, "replica not ready")                                      \
    X(MC_ERR_OBJECT_NOT_FOUND, -704, "object not found")                                           \
    X(MC_ERR_OBJECT_ALREADY_EXISTS, -705, "object already exists")                                 \
    X(MC_ERR_OBJECT_HAS_LEASE, -706, "object has a read lease")                                    \
    X(MC_ERR_LEASE_EXPIRED, -707, "read lease expired during the transfer")                        \
    X(MC_ERR_OBJECT_HAS_REPLICATION_TASK, -708, "object has a replication task")                   \
    X(MC_ERR_OBJECT_NO_REPLICATION_TASK, -709, "object has no replication task")                   \
    X(MC_ERR_REPLICA_NOT_FOUND, -710, "replica not found")                                         \
    X(MC_ERR_REPLICA_ALREADY_EXISTS, -711, "replica already exists")                               \
    X(MC_ERR_REPLICA_IS_GONE, -712, "replica is gone")                                             \
    X(MC_ERR_REPLICA_NOT_IN_LOCAL_MEMORY, -713, "replica not in local memory")                     \
    X(MC_ERR_OBJECT_REPLICA_BUSY, -714, "object replica busy")                                     \
    X(MC_ERR_TRANSFER_FAIL, -800, "transfer failed")                                               \
    X(MC_ERR_CHECKSUM_MISMATCH, -801, "checksum mismatch")                                         \
    X(MC_ERR_RPC_FAIL, -900, "rpc failed")                                                         \
    X(MC_ERR_RPC_TIMEOUT, -901, "rpc timed out")                                                   \
    X(MC_ERR_UNAVAILABLE_IN_CURRENT_STATUS, -1010, "unavailable in current status")                \
    X(MC_ERR_UNAVAILABLE_IN_CURRENT_MODE, -1011, "unavailable in current mode")                    \
    X(MC_ERR_NOT_SUPPORTED, -1012, "not supported")                                                \
    X(MC_ERR_TASK_NOT_FOUND, -1400, "task not found")                                              \
    X(MC_ERR_TASK_PENDING_LIMIT_EXCEEDED, -1401, "too many pending tasks")                         \
    X(MC_ERR_AUTH_REQUIRED, -1020, "the cluster secret must be proved first")                     \
    X(MC_ERR_AUTH_FAILED, -1021, "cluster secret mismatch")                                        \
    X(MC_ERR_AUTH_OFF, -1022, "the peer has no cluster secret configured")

#define MC__ERR_ENUM(name, value, text) name = value,
enum mc_err { MC_ERR_LIST(MC__ERR_ENUM) };
#undef MC__ERR_ENUM

/* Upstream's name of a code ("OBJECT_NOT_FOUND"), or "UNKNOWN_ERROR". */
const char *mc_err_name(int code);
/* A short English description of a code. */
const char *mc_err_str(int code);

#ifdef __cplusplus
}
#endif
#endif
