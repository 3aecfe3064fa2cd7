/* master_drain.c: drain jobs (master_drain.h). A short list of jobs under one
 * mutex; each has a move job in the core (master_move.h), which the master's
 * tick drives. A job's state is brought up to date when it is read (the
 * segment's used bytes and the move job's progress from the core). At most
 * DRAIN_MAX_JOBS are kept: the oldest finished one goes for a new one. */
#include "master_drain.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base_log.h"
#include "base_time.h"
#include "master_move.h"

#define DRAIN_MAX_JOBS 256

typedef enum { DJ_RUNNING, DJ_SUCCEEDED, DJ_FAILED, DJ_CANCELLED } dj_state_t;

typedef struct {
    uint64_t id;
    char segment[MC_NAME_MAX];
    dj_state_t state;
    uint64_t created_ms, finished_ms; /* wall clock */
    uint64_t initial_bytes, remaining_bytes;
    int gone;                 /* the segment was unmounted */
    uint64_t move;            /* its move job in the core */
    mc_master_move_info_t mv; /* the move job's progress when last read */
    char message[512];        /* why it failed */
    int keep;                 /* upstream's form: DRAINED (no new replicas) once it succeeded */
} dj_t;

struct mc_master_drains {
    mc_master_t *m;
    pthread_mutex_t mu;
    dj_t *jobs;
    size_t n;
    uint64_t next_id;
};

static uint64_t dj_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

mc_master_drains_t *mc_master_drains_new(mc_master_t *m)
{
    mc_master_drains_t *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->m = m;
    d->next_id = 1;
    pthread_mutex_init(&d->mu, NULL);
    return d;
}

void mc_master_drains_free(mc_master_drains_t *d)
{
    if (!d) return;
    for (size_t i = 0; i < d->n; i++)
        mc_master_move_forget(d->m, d->jobs[i].move);
    pthread_mutex_destroy(&d->mu);
    free(d->jobs);
    free(d);
}

typedef struct {
    const char *name;
    int found;
    uint64_t used;
} dj_find_t;

static void dj_find(const mc_master_segment_info_t *si, void *arg)
{
    dj_find_t *q = arg;
    if (q->found || strcmp(si->seg.name, q->name) != 0) return;
    q->found = 1;
    q->used = si->used_bytes;
}

typedef struct {
    const char *name;
    int found, draining;
} dj_seg_t;

static void dj_seg_visit(const mc_master_segment_info_t *si, void *arg)
{
    dj_seg_t *q = arg;
    if (q->found || strcmp(si->seg.name, q->name) != 0) return;
    q->found = 1;
    q->draining = si->draining;
}

/* Brings a running job up to date. Caller holds d->mu. */
static void dj_end_locked(mc_master_drains_t *d, dj_t *j, dj_state_t state, int found)
{
    j->state = state;
    j->finished_ms = dj_wall_ms();
    mc_master_move_stop(d->m, j->move); /* tasks in flight finish or are revoked */
    /* takes replicas again, unless upstream's DRAINED state: until it is unmounted */
    if (found && !(state == DJ_SUCCEEDED && j->keep))
        mc_master_set_draining(d->m, j->segment, 0, NULL);
}

static void dj_refresh_locked(mc_master_drains_t *d, dj_t *j)
{
    mc_master_move_info(d->m, j->move, &j->mv); /* counters also after the end */
    if (j->state != DJ_RUNNING) return;
    dj_find_t q = {j->segment, 0, 0};
    mc_master_each_segment(d->m, dj_find, &q);
    uint64_t before = j->remaining_bytes;
    j->gone = !q.found || j->mv.segment_gone;
    j->remaining_bytes = q.found ? q.used : 0;
    if (j->mv.state == MC_MOVE_FAILED) {
        snprintf(j->message, sizeof j->message, "%s", j->mv.message);
        dj_end_locked(d, j, DJ_FAILED, q.found);
    } else if (j->gone && before > 0) {
        snprintf(j->message, sizeof j->message,
                 "segment '%s' was unmounted before it was drained (its owner unmounted it or "
                 "stopped sending heartbeats); %llu bytes were in use on it when last read",
                 j->segment, (unsigned long long)before);
        MC_LOGW("drain", "drain of segment '%s' failed: %s", j->segment, j->message);
        dj_end_locked(d, j, DJ_FAILED, 0);
    } else if (j->gone || (q.used == 0 && j->mv.in_flight == 0)) {
        dj_end_locked(d, j, DJ_SUCCEEDED, q.found); /* empty: reusable */
    }
}

static json_t *dj_json(const dj_t *j)
{
    static const char *const names[] = {"RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"};
    /* upstream's JobStatus names and numbers (CREATED 0, PLANNING 1, RUNNING 2, ...) */
    static const char *const up_names[] = {"RUNNING", "SUCCEEDED", "FAILED", "CANCELED"};
    static const int up_codes[] = {2, 3, 4, 5};
    char id[24];
    snprintf(id, sizeof id, "%llu", (unsigned long long)j->id);
    double pct = j->initial_bytes
                     ? 100.0 *
                           (double)(j->initial_bytes - (j->remaining_bytes < j->initial_bytes
                                                            ? j->remaining_bytes
                                                            : j->initial_bytes)) /
                           (double)j->initial_bytes
                     : 100.0;
    json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:f, s:b, s:I, s:I, s:I, s:I, s:s}",
                     "job_id", id, "segment", j->segment, "status", names[j->state], "created_ms",
                     (json_int_t)j->created_ms, "finished_ms", (json_int_t)j->finished_ms,
                     "initial_bytes", (json_int_t)j->initial_bytes, "remaining_bytes",
                     (json_int_t)j->remaining_bytes, "progress_percent", pct, "segment_unmounted",
                     j->gone, "moved_objects", (json_int_t)j->mv.moved_objects, "moved_bytes",
                     (json_int_t)j->mv.moved_bytes, "tasks_in_flight", (json_int_t)j->mv.in_flight,
                     "failed_tasks", (json_int_t)j->mv.failed_tasks, "message", j->message);
    /* upstream's fields of a drain job's query, next to ours */
    json_t *up = json_pack(
        "{s:b, s:i, s:s, s:i, s:s, s:I, s:I, s:[s], s:I, s:I, s:I, s:I, s:I}", "success", 1,
        "type", 0, "type_name", "DRAIN", "status_code", up_codes[j->state], "status_name",
        up_names[j->state], "created_at_ms_epoch", (json_int_t)j->created_ms,
        "last_updated_at_ms_epoch", (json_int_t)(j->finished_ms ? j->finished_ms : dj_wall_ms()),
        "segments", j->segment, "succeeded_units", (json_int_t)j->mv.moved_objects,
        "failed_units", (json_int_t)j->mv.failed_tasks, "blocked_units", (json_int_t)0,
        "active_units", (json_int_t)j->mv.in_flight, "migrated_bytes",
        (json_int_t)j->mv.moved_bytes);
    if (o && up) json_object_update(o, up);
    json_decref(up);
    return o;
}

static dj_t *dj_get_locked(mc_master_drains_t *d, uint64_t id)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->jobs[i].id == id) return &d->jobs[i];
    return NULL;
}

int mc_master_drain_start(mc_master_drains_t *d, const char *segment, json_t **out)
{
    return mc_master_drain_start_opts(d, segment, NULL, 0, 0, 0, out);
}

int mc_master_drain_start_opts(mc_master_drains_t *d, const char *segment,
                               const char *const *targets, size_t ntargets,
                               uint64_t max_concurrency, int keep_drained, json_t **out)
{
    *out = NULL;
    if (!segment || !*segment || strlen(segment) >= MC_NAME_MAX) return MC_ERR_INVALID_PARAMS;
    int rc = 0;
    pthread_mutex_lock(&d->mu);
    for (size_t i = 0; i < d->n; i++) {
        dj_t *j = &d->jobs[i];
        dj_refresh_locked(d, j);
        if (j->state == DJ_RUNNING && !strcmp(j->segment, segment)) {
            *out = dj_json(j);
            rc = MC_ERR_INVALID_PARAMS;
            goto out;
        }
    }
    for (size_t i = 0; i < ntargets; i++) { /* upstream's checks of the targets */
        dj_find_t q = {targets[i], 0, 0};
        dj_seg_t t = {targets[i], 0, 0};
        mc_master_each_segment(d->m, dj_find, &q);
        mc_master_each_segment(d->m, dj_seg_visit, &t);
        if (!strcmp(targets[i], segment)) {
            rc = MC_ERR_INVALID_PARAMS;
            goto out;
        }
        if (!q.found) {
            rc = MC_ERR_SEGMENT_NOT_FOUND;
            goto out;
        }
        if (t.draining) {
            rc = MC_ERR_UNAVAILABLE_IN_CURRENT_STATUS;
            goto out;
        }
    }
    uint64_t used = 0, move = 0;
    if ((rc = mc_master_set_draining(d->m, segment, 1, &used))) goto out;
    if ((rc = mc_master_move_start_opts(d->m, segment, targets, ntargets, max_concurrency,
                                        &move))) {
        mc_master_set_draining(d->m, segment, 0, NULL);
        goto out;
    }
    if (d->n == DRAIN_MAX_JOBS) { /* drop the oldest finished job */
        size_t k = 0;
        while (k < d->n && d->jobs[k].state == DJ_RUNNING)
            k++;
        if (k == d->n) {
            mc_master_move_forget(d->m, move);
            mc_master_set_draining(d->m, segment, 0, NULL);
            rc = MC_ERR_INTERNAL;
            goto out;
        }
        mc_master_move_forget(d->m, d->jobs[k].move);
        memmove(&d->jobs[k], &d->jobs[k + 1], (d->n - k - 1) * sizeof *d->jobs);
        d->n--;
    } else {
        dj_t *nj = realloc(d->jobs, (d->n + 1) * sizeof *nj);
        if (!nj) {
            mc_master_move_forget(d->m, move);
            mc_master_set_draining(d->m, segment, 0, NULL);
            rc = MC_ERR_INTERNAL;
            goto out;
        }
        d->jobs = nj;
    }
    dj_t *j = &d->jobs[d->n++];
    memset(j, 0, sizeof *j);
    j->id = d->next_id++;
    snprintf(j->segment, sizeof j->segment, "%s", segment);
    j->state = DJ_RUNNING;
    j->created_ms = dj_wall_ms();
    j->initial_bytes = j->remaining_bytes = used;
    j->move = move;
    j->keep = keep_drained;
    dj_refresh_locked(d, j);
    *out = dj_json(j);
out:
    pthread_mutex_unlock(&d->mu);
    return rc;
}

int mc_master_drain_query(mc_master_drains_t *d, uint64_t id, json_t **out)
{
    int rc = 0;
    pthread_mutex_lock(&d->mu);
    if (id == 0) {
        json_t *arr = json_array();
        for (size_t i = 0; arr && i < d->n; i++) {
            dj_refresh_locked(d, &d->jobs[i]);
            json_array_append_new(arr, dj_json(&d->jobs[i]));
        }
        *out = json_pack("{s:o}", "jobs", arr ? arr : json_array());
    } else {
        dj_t *j = dj_get_locked(d, id);
        if (j) dj_refresh_locked(d, j);
        *out = j ? dj_json(j) : NULL;
        rc = j ? 0 : MC_ERR_INVALID_PARAMS;
    }
    pthread_mutex_unlock(&d->mu);
    return rc;
}

int mc_master_drain_cancel(mc_master_drains_t *d, uint64_t id, json_t **out)
{
    pthread_mutex_lock(&d->mu);
    dj_t *j = dj_get_locked(d, id);
    if (j) {
        dj_refresh_locked(d, j);
        if (j->state == DJ_RUNNING) dj_end_locked(d, j, DJ_CANCELLED, 1);
        *out = dj_json(j);
    } else {
        *out = NULL;
    }
    pthread_mutex_unlock(&d->mu);
    return j ? 0 : MC_ERR_INVALID_PARAMS;
}

int mc_master_drain_segment_status(mc_master_drains_t *d, const char *segment, const char **name,
                                   int *code)
{
    dj_seg_t q = {segment, 0, 0};
    pthread_mutex_lock(&d->mu);
    for (size_t i = 0; i < d->n; i++) /* jobs that just ended clear or keep their mark */
        if (d->jobs[i].state == DJ_RUNNING && !strcmp(d->jobs[i].segment, segment))
            dj_refresh_locked(d, &d->jobs[i]);
    mc_master_each_segment(d->m, dj_seg_visit, &q);
    int running = 0;
    for (size_t i = 0; i < d->n && !running; i++)
        running = d->jobs[i].state == DJ_RUNNING && !strcmp(d->jobs[i].segment, segment);
    pthread_mutex_unlock(&d->mu);
    if (!q.found) return MC_ERR_SEGMENT_NOT_FOUND;
    /* upstream's SegmentStatus: OK 1, DRAINING 2, DRAINED 3 */
    *name = !q.draining ? "OK" : running ? "DRAINING" : "DRAINED";
    *code = !q.draining ? 1 : running ? 2 : 3;
    return 0;
}
