/* master_drain.h: drain jobs of the admin API (upstream's /api/v1/drain_jobs).
 * A job marks one segment draining (mc_master_set_draining): no new replica
 * is placed there, the objects on it stay readable, and the job is done when
 * the segment holds no bytes (its objects were removed or evicted) or was
 * unmounted. The master never moves data, so a drain does not copy objects
 * elsewhere (upstream has clients copy them; docs/master.md). Jobs live in
 * memory (a restart forgets them and their marks). Thread rule: every call
 * is thread-safe (one mutex). */
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
/* The job id (0: {"jobs":[every job]}) as JSON, its state brought up to date.
 * Returns 0, or MC_ERR_INVALID_PARAMS for an unknown id. */
int mc_master_drain_query(mc_master_drains_t *d, uint64_t id, json_t **out);
/* Cancels job id (the segment takes new replicas again). Returns 0 with the
 * job's JSON, or MC_ERR_INVALID_PARAMS for an unknown id. */
int mc_master_drain_cancel(mc_master_drains_t *d, uint64_t id, json_t **out);
#endif
