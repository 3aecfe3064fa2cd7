/* master_move.h: move tasks, the part of a drain job (master_drain.h) that
 * moves objects off a segment. The master never touches data: for each
 * object with a replica on the draining segment it allocates a target range
 * on another segment and hands a task to the source segment's owner, which
 * holds the bytes in its own memory and writes them to the target with its
 * transfer engine (TASK_FETCH / TASK_COMPLETE, docs/protocol.md). A
 * completed task swaps the replica (the target becomes COMPLETE, the source
 * range is freed, or parked until the object's read lease ends) and journals
 * the object's new state; a failed or timed-out one revokes the target and
 * is retried a bounded number of times. Owners learn that tasks wait from
 * their heartbeat's reply (MC_CLIENT_TASKS_PENDING). The core (master_move.c)
 * keeps the tasks and a move job per drain job; the tick plans and expires.
 *
 * Copy and move tasks (upstream's CreateCopyTask / CreateMoveTask /
 * QueryTask) run on the same machinery: a *user task*, named by a random
 * UUID, is one or more of these tasks (one per target segment) for the
 * owner of the source replica; a copy adds the target as a new replica
 * (the source stays), a move swaps it as a drain does. Either journals the
 * object's new replica set when it completes. The user task's record
 * (PENDING until its owner fetches it, PROCESSING, then SUCCESS or FAILED
 * with a message) lives in memory, as upstream's: the last
 * MC_MASTER_TASK_HISTORY (10000) finished ones are kept for query_task.
 * Thread rule: every call is thread-safe. */
#ifndef MC_MASTER_MOVE_H
#define MC_MASTER_MOVE_H
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "master_service.h"

/* Set in a PING reply's client_status next to MC_CLIENT_OK when move tasks
 * wait for that client (never with NEED_REMOUNT). */
#define MC_CLIENT_TASKS_PENDING 0x100

enum { MC_MOVE_RUNNING = 0, MC_MOVE_FAILED = 1, MC_MOVE_STOPPED = 2 };

typedef struct {
    int state;        /* MC_MOVE_* */
    int segment_gone; /* the segment left the table while the job ran */
    uint64_t moved_objects, moved_bytes;
    uint64_t in_flight;    /* tasks allocated and not finished */
    uint64_t failed_tasks; /* tasks that failed or timed out (retried) */
    char message[512];     /* why it failed; empty otherwise */
} mc_master_move_info_t;

/* Starts moving every object off the mounted segment name. *job: its id.
 * MC_ERR_SEGMENT_NOT_FOUND, MC_ERR_INTERNAL. */
int mc_master_move_start(mc_master_t *m, const char *segment, uint64_t *job);
/* The same with upstream's drain options: targets (segment names or TE
 * endpoints; NULL/0: any other segment) are the only segments objects may
 * move to; max_inflight (0: MC_MASTER_MOVE_JOB_INFLIGHT) bounds its tasks in
 * flight, and is capped by that bound. */
int mc_master_move_start_opts(mc_master_t *m, const char *segment, const char *const *targets,
                              size_t ntargets, uint64_t max_inflight, uint64_t *job);
/* The job's progress; MC_ERR_INVALID_PARAMS for an unknown id. */
int mc_master_move_info(mc_master_t *m, uint64_t job, mc_master_move_info_t *out);
/* No new tasks for job: those not fetched yet are revoked, fetched ones may
 * still finish (and count). A running job becomes STOPPED. */
void mc_master_move_stop(mc_master_t *m, uint64_t job);
/* Forgets a stopped or failed job (its remaining tasks are detached from it). */
void mc_master_move_forget(mc_master_t *m, uint64_t job);

/* ---- copy / move tasks (upstream's numbers: TaskType, TaskStatus) ---- */
enum { MC_TASK_REPLICA_COPY = 0, MC_TASK_REPLICA_MOVE = 1 };
enum { MC_TASK_PENDING = 0, MC_TASK_PROCESSING = 1, MC_TASK_FAILED = 2, MC_TASK_SUCCESS = 3 };

typedef struct {
    mc_uuid_t id;
    int type, status;                   /* MC_TASK_* */
    int64_t created_ms, updated_ms;     /* since the epoch (wall clock) */
    mc_uuid_t assigned_client;          /* the owner of the source replica */
    char message[256];                  /* why it failed; empty otherwise */
} mc_master_task_info_t;

/* Upstream's CreateCopyTask: key gets a replica on each of targets (segment
 * names or TE endpoints; a target that holds one already is skipped), copied
 * by the owner of one of its complete memory replicas. *id: the task.
 * Errors (no task made): INVALID_PARAMS (no targets, over 64, an unmounted
 * target), OBJECT_NOT_FOUND, UNAVAILABLE_IN_CURRENT_STATUS (a target is
 * draining), INTERNAL (no complete memory replica to copy from),
 * TASK_PENDING_LIMIT_EXCEEDED. What fails later (no room on a target, the
 * object busy with another task) is the task's FAILED status. now_ms: the
 * core's clock. */
int mc_master_copy_task(mc_master_t *m, const char *key, const char *const *targets, size_t n,
                        uint64_t now_ms, mc_uuid_t *id);
/* Upstream's CreateMoveTask: key's replica on source moves to target (when
 * target holds one already, the source replica is just dropped). Errors:
 * OBJECT_NOT_FOUND, INVALID_PARAMS (source = target, target unmounted, no
 * replica on source), UNAVAILABLE_IN_CURRENT_STATUS (target draining),
 * TASK_PENDING_LIMIT_EXCEEDED. */
int mc_master_move_task(mc_master_t *m, const char *key, const char *source, const char *target,
                        uint64_t now_ms, mc_uuid_t *id);
/* The task's record; TASK_NOT_FOUND when unknown or pruned. */
int mc_master_task_query(mc_master_t *m, mc_uuid_t id, mc_master_task_info_t *out);

/* 1 when tasks wait for client (not fetched yet). */
int mc_master_tasks_pending(mc_master_t *m, mc_uuid_t client);

typedef struct {
    uint64_t id;
    char *key;
    uint64_t size;
    uint64_t src_addr; /* in the client's own segment */
    uint64_t dst_addr;
    char *dst_endpoint; /* TE segment name of the target */
} mc_master_task_t;
/* Up to max of client's waiting tasks (at most the per-client bound in
 * flight); each now runs against its deadline. *out malloc'd (free with
 * mc_master_tasks_free), *n may be 0. */
int mc_master_task_fetch(mc_master_t *m, mc_uuid_t client, uint32_t max, uint64_t now_ms,
                         mc_master_task_t **out, size_t *n);
static inline void mc_master_tasks_free(mc_master_task_t *t, size_t n)
{
    for (size_t i = 0; t && i < n; i++) {
        free(t[i].key);
        free(t[i].dst_endpoint);
    }
    free(t);
}
/* The client finished task id: rc 0 when the target holds the bytes.
 * Returns 0, MC_ERR_OBJECT_NOT_FOUND (no such task: it timed out or was
 * revoked), MC_ERR_ILLEGAL_CLIENT (not its task). */
int mc_master_task_complete(mc_master_t *m, mc_uuid_t client, uint64_t id, int rc, uint64_t now_ms);
#endif
