/* master_drain.h: drain jobs of the admin API (upstream's /api/v1/drain_jobs).
 * A job marks one segment draining (mc_master_set_draining: no new replica
 * is placed there) and starts a move job in the core (master_move.h): the
 * segment's owner copies each object to a range the master allocated on
 * another segment, and the replica is swapped. The job is SUCCEEDED when the
 * segment holds no bytes and no task is in flight (or it was unmounted
 * empty), FAILED (with a message) when an object finds no room elsewhere,
 * fails to move too often, or the segment leaves with bytes on it, and
 * CANCELLED on request; at its end the mark is cleared (upstream's form keeps
 * it after a success: the segment is DRAINED, taking no new replica until it
 * is unmounted). Jobs live in memory
 * (a restart forgets them and their marks; every finished move is in the
 * journal). Thread rule: every call is thread-safe (one mutex). */
#ifndef MC_MASTER_DRAIN_H
#define MC_MASTER_DRAIN_H
#include <jansson.h>
#include <stdint.h>

#include "master_service.h"

typedef struct mc_master_drains mc_master_drains_t;

mc_master_drains_t *mc_master_drains_new(mc_master_t *m);
void mc_master_drains_free(mc_master_drains_t *d);
/* Starts a job on segment. Returns 0 with *out = the job's JSON, or
 * MC_ERR_SEGMENT_NOT_FOUND, MC_ERR_INVALID_PARAMS (a job already runs on it;
 * *out is that job), MC_ERR_INTERNAL. */
int mc_master_drain_start(mc_master_drains_t *d, const char *segment, json_t **out);
/* Upstream's form (a JSON body): objects move only to targets (segment names
 * or TE endpoints; none: any other segment), at most max_concurrency tasks at
 * a time (0: the default bound), and with keep_drained the segment stays
 * DRAINED after a success. */
int mc_master_drain_start_opts(mc_master_drains_t *d, const char *segment,
                               const char *const *targets, size_t ntargets,
                               uint64_t max_concurrency, int keep_drained, json_t **out);
/* Upstream's segment status of a mounted segment: *name "OK" (takes
 * replicas), "DRAINING" (a job runs on it) or "DRAINED" (drained and kept out
 * of placement), *code upstream's SegmentStatus number (1, 2, 3). Returns 0
 * or MC_ERR_SEGMENT_NOT_FOUND. */
int mc_master_drain_segment_status(mc_master_drains_t *d, const char *segment, const char **name,
                                   int *code);
/* The job id (0: {"jobs":[every job]}) as JSON, its state brought up to date.
 * Returns 0, or MC_ERR_INVALID_PARAMS for an unknown id. */
int mc_master_drain_query(mc_master_drains_t *d, uint64_t id, json_t **out);
/* Cancels job id (the segment takes new replicas again; tasks not fetched
 * yet are revoked, fetched ones finish). Returns 0 with the job's JSON, or
 * MC_ERR_INVALID_PARAMS for an unknown id. */
int mc_master_drain_cancel(mc_master_drains_t *d, uint64_t id, json_t **out);
#endif
