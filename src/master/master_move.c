/* master_move.c: move tasks of drain jobs (master_move.h).
 *
 * State. One list of move jobs and one list of tasks under the moves lock.
 * A task owns its target range (allocated on a segment that is not draining
 * and holds no replica of the object, most free bytes first) until it ends:
 * the range is not in the object's replica list, so readers, the journal and
 * eviction never see a half-written target. The object is marked `moving`
 * for as long as the task lives: eviction skips it and an upsert finds it
 * busy, so its source bytes cannot change under the copy; a removal or
 * eviction that erases it anyway (a forced remove, the purge of its last
 * segment) only detaches it from the task (mc__move_obj_gone_locked).
 *
 * The end of a task (mc_master_task_complete, the tick's deadline, a stop):
 * - success, the object and its source replica still there, the target's
 *   segment still mounted: the source replica entry becomes the target
 *   (COMPLETE, a new replica id), the object's new state is journaled (a PUT
 *   record: a restart or a standby maps the key to the target from then
 *   on, and to the source before it), then the source range is freed, or
 *   parked until the object's read lease ends when readers may still be
 *   reading it;
 * - otherwise the target range is freed, or parked for the task's time
 *   budget when the client may still be writing into it (a deadline passed,
 *   nobody answered). A failure counts against the object unless the object
 *   or its source went meanwhile; after MC_MASTER_MOVE_TRIES failures of one
 *   object the job FAILS with a message, as it does when no other segment
 *   has room for an object.
 *
 * Planning (the tick, every MOVE_PLAN_EVERY_MS per running job): the source
 * segment's ranges are walked in address order under its lock; an owner's
 * shard lock is only tried there (the lock order is shard first), and each
 * candidate key is then checked again under its shard lock. Objects being
 * written (a put in progress) or already moving are skipped and found again
 * on a later round. At most MC_MASTER_MOVE_JOB_INFLIGHT tasks per job and
 * MC_MASTER_MOVE_CLIENT_INFLIGHT fetched tasks per client are in flight.
 *
 * Lock order (master_int.h): shard -> segment table (read) -> moves ->
 * parked / a segment's lock. No moves-lock holder takes a shard lock, so a
 * task is ended in two steps: its key read under the moves lock, then the
 * shard lock taken and the task looked up again by id. */
#include "master_move.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "base_env.h"
#include "base_log.h"
#include "master_disk.h"
#include "master_int.h"

#define TAG "drain"
#define MOVE_PLAN_EVERY_MS 20
#define MOVE_EXPIRE_BATCH 64

typedef struct mjob {
    uint64_t id;
    char seg[MC_NAME_MAX];
    mc_uuid_t seg_id;
    int state, seg_gone;
    uint64_t moved_objs, moved_bytes, failed, inflight;
    char msg[512];
    mc_map_t *tries; /* key -> failed tries (as uintptr_t) */
    uint64_t next_plan_ms;
    uint64_t max_inflight; /* its bound on tasks in flight */
    char **targets;        /* the only segments it may move to (names or endpoints); NULL: any */
    size_t ntargets;
    struct mjob *next;
} mjob_t;

/* A copy or move task of upstream's API (master_move.h): the record
 * query_task answers, and how many of its tasks (one per target) are left. */
typedef struct utask {
    mc_master_task_info_t info;
    uint32_t left; /* its tasks not ended yet */
    struct utask *next, *fin_next; /* every record; the finished ones, oldest first */
} utask_t;

typedef struct mtask {
    uint64_t id;
    mjob_t *job;       /* NULL once the job is forgotten */
    utask_t *ut;       /* the user task it belongs to (no job then) */
    int copy;          /* a copy: the target is added, the source stays */
    mobj_t *obj;       /* NULL once the object went; followed under its shard lock only */
    const mseg_t *src; /* compared only */
    char *key;
    uint64_t size, src_rep, dst_rep, src_addr, dst_addr, deadline_ms;
    mseg_t *dst; /* with blk: the target range; both NULL once that segment went */
    mc_alloc_blk_t *blk;
    char dst_ep[MC_NAME_MAX];
    mc_uuid_t client; /* the source segment's owner, who runs it */
    int sent;         /* fetched by the client */
    struct mtask *next;
} mtask_t;

struct mmoves {
    pthread_mutex_t mu;
    mjob_t *jobs;
    mtask_t *tasks;
    uint64_t next_job, next_task;
    _Atomic uint64_t ntasks, nrunning; /* the tick's fast path */
    uint64_t job_inflight, client_inflight, tries, timeout_ms;
    /* user tasks: a map uuid text -> utask_t, the finished ones in order */
    mc_map_t *utasks;
    utask_t *fin_head, *fin_tail;
    uint64_t nfinished, npending, history, pending_max;
};

int mc__move_init(mc_master_t *m)
{
    struct mmoves *v = calloc(1, sizeof *v);
    if (!v) return -1;
    pthread_mutex_init(&v->mu, NULL);
    v->next_job = v->next_task = 1;
    v->job_inflight = (uint64_t)mc_env_int("MC_MASTER_MOVE_JOB_INFLIGHT", 64, 1, 65536);
    v->client_inflight = (uint64_t)mc_env_int("MC_MASTER_MOVE_CLIENT_INFLIGHT", 8, 1, 1024);
    v->tries = (uint64_t)mc_env_int("MC_MASTER_MOVE_TRIES", 3, 1, 100);
    v->timeout_ms = (uint64_t)mc_env_int("MC_MASTER_MOVE_TIMEOUT_MS", 30000, 100, 3600000);
    v->history = (uint64_t)mc_env_int("MC_MASTER_TASK_HISTORY", 10000, 1, 10000000);
    v->pending_max = (uint64_t)mc_env_int("MC_MASTER_TASK_PENDING_MAX", 10000, 1, 10000000);
    if (!(v->utasks = mc_map_new())) {
        pthread_mutex_destroy(&v->mu);
        free(v);
        return -1;
    }
    m->moves = v;
    return 0;
}

static void task_free(mtask_t *t)
{
    free(t->key);
    free(t);
}

static void job_free(mjob_t *j)
{
    for (size_t i = 0; i < j->ntargets; i++)
        free(j->targets[i]);
    free(j->targets);
    mc_map_free(j->tries, NULL);
    free(j);
}

void mc__move_free(mc_master_t *m)
{
    struct mmoves *v = m->moves;
    if (!v) return;
    while (v->tasks) { /* the allocators go wholesale with the segments */
        mtask_t *t = v->tasks;
        v->tasks = t->next;
        task_free(t);
    }
    while (v->jobs) {
        mjob_t *j = v->jobs;
        v->jobs = j->next;
        job_free(j);
    }
    mc_map_free(v->utasks, free);
    pthread_mutex_destroy(&v->mu);
    free(v);
    m->moves = NULL;
}

/* The time a client has for one task: the base timeout plus 1 ms per KiB
 * (1 MiB/s at worst). */
static uint64_t task_budget(const struct mmoves *v, uint64_t size)
{
    return v->timeout_ms + size / 1024;
}

/* A task that copies o's replica r into [blk) of dst at addr, queued for r's
 * owner to fetch (the caller sets its job, or its upstream task). If not
 * fetched by its deadline, its owner is not polling (gone, or a client
 * without tasks). Caller holds the moves lock. NULL when out of memory. */
static mtask_t *task_queue_locked(mc_master_t *m, mobj_t *o, const mrep_t *r, mseg_t *dst,
                                  mc_alloc_blk_t *blk, uint64_t addr, uint64_t now)
{
    struct mmoves *v = m->moves;
    mtask_t *t = calloc(1, sizeof *t);
    if (!t || !(t->key = strdup(o->key))) {
        free(t);
        return NULL;
    }
    t->id = v->next_task++;
    t->obj = o;
    t->src = r->seg;
    t->size = o->size;
    t->src_rep = r->id;
    t->dst_rep = atomic_fetch_add(&m->next_replica_id, 1);
    t->src_addr = mc_alloc_blk_addr(r->blk);
    t->dst_addr = addr;
    t->dst = dst;
    t->blk = blk;
    snprintf(t->dst_ep, sizeof t->dst_ep, "%s", dst->info.te_endpoint);
    t->client = r->seg->client;
    t->deadline_ms = now + task_budget(v, t->size);
    t->next = v->tasks;
    v->tasks = t;
    atomic_fetch_add(&v->ntasks, 1);
    return t;
}

static mjob_t *job_find_locked(struct mmoves *v, uint64_t id)
{
    for (mjob_t *j = v->jobs; j; j = j->next)
        if (j->id == id) return j;
    return NULL;
}

/* Ends j (FAILED or STOPPED): no new task; those not fetched yet are revoked
 * by the next tick. Caller holds the moves lock. */
static void job_end_locked(struct mmoves *v, mjob_t *j, int state)
{
    if (j->state != MC_MOVE_RUNNING) return;
    j->state = state;
    atomic_fetch_sub(&v->nrunning, 1);
    for (mtask_t *t = v->tasks; t; t = t->next)
        if (t->job == j && !t->sent) t->deadline_ms = 0;
}

static void job_fail_locked(struct mmoves *v, mjob_t *j, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void job_fail_locked(struct mmoves *v, mjob_t *j, const char *fmt, ...)
{
    if (j->state != MC_MOVE_RUNNING) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->msg, sizeof j->msg, fmt, ap);
    va_end(ap);
    MC_LOGW(TAG, "drain of segment '%s' failed: %s (%" PRIu64 " objects, %" PRIu64 " bytes moved)",
            j->seg, j->msg, j->moved_objs, j->moved_bytes);
    job_end_locked(v, j, MC_MOVE_FAILED);
}

/* Keeps [blk) of s allocated, ownerless, until release_ms (the tick frees it). */
static void park_range(mc_master_t *m, mseg_t *s, mc_alloc_blk_t *blk, uint64_t release_ms)
{
    parked_t *p = malloc(sizeof *p);
    pthread_mutex_lock(&s->mu);
    mc_alloc_blk_set_owner(blk, NULL);
    pthread_mutex_unlock(&s->mu);
    if (!p) { /* no memory for the entry: leak the range rather than reuse it early */
        MC_LOGE(TAG, "out of memory parking a range of segment '%s'; it stays allocated",
                s->info.name);
        return;
    }
    p->seg = s;
    p->blk = blk;
    p->release_ms = release_ms;
    pthread_mutex_lock(&m->parked_mu);
    p->next = m->parked;
    m->parked = p;
    pthread_mutex_unlock(&m->parked_mu);
}

/* Returns t's target range: at once when nobody can be writing into it,
 * else parked for the task's budget. Caller holds the moves lock. */
static void target_release_locked(mc_master_t *m, mtask_t *t, int maybe_written, uint64_t now)
{
    if (!t->blk) return;
    if (maybe_written)
        park_range(m, t->dst, t->blk, now + task_budget(m->moves, t->size));
    else
        mc__master_range_free(m, t->dst, t->blk);
    t->blk = NULL;
}

/* ---- jobs ---- */

int mc_master_move_start(mc_master_t *m, const char *segment, uint64_t *job)
{
    return mc_master_move_start_opts(m, segment, NULL, 0, 0, job);
}

int mc_master_move_start_opts(mc_master_t *m, const char *segment, const char *const *targets,
                              size_t ntargets, uint64_t max_inflight, uint64_t *job)
{
    struct mmoves *v = m->moves;
    mjob_t *j = calloc(1, sizeof *j);
    if (!j) return MC_ERR_INTERNAL;
    if (!(j->tries = mc_map_new()) ||
        (ntargets && !(j->targets = calloc(ntargets, sizeof *j->targets)))) {
        job_free(j);
        return MC_ERR_INTERNAL;
    }
    for (size_t i = 0; i < ntargets; i++, j->ntargets++)
        if (!(j->targets[i] = strdup(targets[i]))) {
            job_free(j);
            return MC_ERR_INTERNAL;
        }
    j->max_inflight =
        max_inflight && max_inflight < v->job_inflight ? max_inflight : v->job_inflight;
    snprintf(j->seg, sizeof j->seg, "%s", segment);
    int found = 0;
    pthread_rwlock_rdlock(&m->seg_lock);
    for (size_t i = 0; i < m->nsegs && !found; i++)
        if (strcmp(m->segs[i]->info.name, segment) == 0) {
            j->seg_id = m->segs[i]->info.id;
            found = 1;
        }
    pthread_rwlock_unlock(&m->seg_lock);
    if (!found) {
        job_free(j);
        return MC_ERR_SEGMENT_NOT_FOUND;
    }
    pthread_mutex_lock(&v->mu);
    j->id = v->next_job++;
    j->state = MC_MOVE_RUNNING;
    j->next = v->jobs;
    v->jobs = j;
    atomic_fetch_add(&v->nrunning, 1);
    *job = j->id;
    pthread_mutex_unlock(&v->mu);
    return 0;
}

int mc_master_move_info(mc_master_t *m, uint64_t job, mc_master_move_info_t *out)
{
    struct mmoves *v = m->moves;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&v->mu);
    mjob_t *j = job_find_locked(v, job);
    if (j) {
        out->state = j->state;
        out->segment_gone = j->seg_gone;
        out->moved_objects = j->moved_objs;
        out->moved_bytes = j->moved_bytes;
        out->in_flight = j->inflight;
        out->failed_tasks = j->failed;
        snprintf(out->message, sizeof out->message, "%s", j->msg);
    }
    pthread_mutex_unlock(&v->mu);
    return j ? 0 : MC_ERR_INVALID_PARAMS;
}

void mc_master_move_stop(mc_master_t *m, uint64_t job)
{
    struct mmoves *v = m->moves;
    pthread_mutex_lock(&v->mu);
    mjob_t *j = job_find_locked(v, job);
    if (j) job_end_locked(v, j, MC_MOVE_STOPPED);
    pthread_mutex_unlock(&v->mu);
}

void mc_master_move_forget(mc_master_t *m, uint64_t job)
{
    struct mmoves *v = m->moves;
    pthread_mutex_lock(&v->mu);
    for (mjob_t **pp = &v->jobs; *pp; pp = &(*pp)->next) {
        mjob_t *j = *pp;
        if (j->id != job) continue;
        job_end_locked(v, j, MC_MOVE_STOPPED);
        for (mtask_t *t = v->tasks; t; t = t->next)
            if (t->job == j) t->job = NULL;
        *pp = j->next;
        job_free(j);
        break;
    }
    pthread_mutex_unlock(&v->mu);
}

/* ---- ending a task ---- */

/* Swaps o's source replica r for t's target and journals o; then frees the
 * source range (or parks it while o's read lease runs). Caller holds o's
 * shard lock, the segment table's read lock and the moves lock. */
static void task_commit_locked(mc_master_t *m, mtask_t *t, mobj_t *o, mrep_t *r, uint64_t now)
{
    mseg_t *src = r->seg;
    mc_alloc_blk_t *sblk = r->blk;
    pthread_mutex_lock(&t->dst->mu);
    mc_alloc_blk_set_owner(t->blk, o); /* eviction's walk finds the object there now */
    pthread_mutex_unlock(&t->dst->mu);
    r->id = t->dst_rep;
    r->seg = t->dst;
    r->blk = t->blk;
    r->status = MC_REPLICA_COMPLETE;
    t->blk = NULL;
    if (o->moving) o->moving--;
    /* in the journal before the source range can be handed to another put */
    mc__journal_put_locked(m, o, now);
    /* readers under a lease may still read the source; with the SSD tier its
     * owner may be offloading from it (as long as eviction would wait) */
    uint64_t keep = mc__obj_lease_active(o, now) ? o->lease_ms : 0;
    if (m->disk && keep < now + MC_MASTER_DISK_HOLD_MS) keep = now + MC_MASTER_DISK_HOLD_MS;
    if (keep)
        park_range(m, src, sblk, keep);
    else
        mc__master_range_free(m, src, sblk);
}

/* A copy's end: o gets t's target as one more COMPLETE replica (its source
 * stays). o is reallocated one replica larger, so every pointer to it moves
 * to the new copy first (the index, its ranges' owners, other tasks), then
 * the object's new state is journaled. -1 (o unchanged) when out of memory.
 * Caller holds o's shard lock, the table's read lock and the moves lock. */
static int copy_commit_locked(mc_master_t *m, shard_t *sh, mtask_t *t, mobj_t *o, uint64_t now)
{
    struct mmoves *v = m->moves;
    mobj_t *n = malloc(sizeof *o + ((size_t)o->nrep + 1) * sizeof o->rep[0]);
    if (!n) return -1;
    memcpy(n, o, sizeof *o + (size_t)o->nrep * sizeof o->rep[0]);
    mrep_t *r = &n->rep[n->nrep++];
    r->id = t->dst_rep;
    r->seg = t->dst;
    r->blk = t->blk;
    r->status = MC_REPLICA_COMPLETE;
    t->blk = NULL;
    if (n->moving) n->moving--;
    void *old = NULL;
    mc_map_put(sh->map, o->key, n, &old); /* the key is there: no allocation, cannot fail */
    assert(old == o);
    for (size_t i = 0; i < n->nrep; i++) {
        if (!n->rep[i].blk) continue;
        pthread_mutex_lock(&n->rep[i].seg->mu);
        mc_alloc_blk_set_owner(n->rep[i].blk, n); /* eviction's walk finds n */
        pthread_mutex_unlock(&n->rep[i].seg->mu);
    }
    for (mtask_t *x = v->tasks; x; x = x->next)
        if (x->obj == o) x->obj = n;
    free(o);
    mc__journal_put_locked(m, n, now);
    return 0;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ut ends (status FAILED or SUCCESS, why for a failure): its record joins
 * the finished ones, the oldest of which are forgotten past the history
 * bound. Caller holds the moves lock. */
static void utask_finish_locked(struct mmoves *v, utask_t *ut, int status, const char *why)
{
    if (ut->info.status == MC_TASK_PENDING && v->npending) v->npending--;
    ut->info.status = status;
    ut->info.updated_ms = wall_ms();
    if (status == MC_TASK_FAILED && why && !ut->info.message[0])
        snprintf(ut->info.message, sizeof ut->info.message, "%s", why);
    ut->fin_next = NULL;
    if (v->fin_tail)
        v->fin_tail->fin_next = ut;
    else
        v->fin_head = ut;
    v->fin_tail = ut;
    v->nfinished++;
    while (v->nfinished > v->history && v->fin_head) {
        utask_t *x = v->fin_head;
        v->fin_head = x->fin_next;
        if (!v->fin_head) v->fin_tail = NULL;
        v->nfinished--;
        char txt[48];
        mc__master_uuid_text(x->info.id, txt);
        free(mc_map_del(v->utasks, txt));
    }
}

/* One of ut's tasks ended (ok: it did its part). Caller holds the moves lock. */
static void utask_step_locked(struct mmoves *v, utask_t *ut, int ok, const char *why)
{
    if (!ok && !ut->info.message[0]) snprintf(ut->info.message, sizeof ut->info.message, "%s", why);
    if (ut->left && --ut->left) return;
    utask_finish_locked(v, ut, ut->info.message[0] ? MC_TASK_FAILED : MC_TASK_SUCCESS, NULL);
}

enum { END_OK, END_FAILED, END_TIMEOUT };

/* Ends task id (how: END_*; why: the client's or our reason). client: the
 * reporting client (NULL: the tick). */
static int task_end(mc_master_t *m, uint64_t id, const mc_uuid_t *client, int how, const char *why,
                    uint64_t now)
{
    struct mmoves *v = m->moves;
    pthread_mutex_lock(&v->mu);
    mtask_t *t = v->tasks;
    while (t && t->id != id)
        t = t->next;
    if (!t || (client && !mc__uuid_eq(t->client, *client))) {
        pthread_mutex_unlock(&v->mu);
        return t ? MC_ERR_ILLEGAL_CLIENT : MC_ERR_OBJECT_NOT_FOUND;
    }
    char *key = strdup(t->key);
    pthread_mutex_unlock(&v->mu);
    if (!key) return MC_ERR_INTERNAL;

    shard_t *sh = mc__master_shard_of(m, key);
    pthread_mutex_lock(&sh->mu);
    pthread_rwlock_rdlock(&m->seg_lock);
    pthread_mutex_lock(&v->mu);
    mtask_t **pp = &v->tasks;
    while (*pp && (*pp)->id != id)
        pp = &(*pp)->next;
    int rc = 0;
    if (!*pp) { /* ended meanwhile (another report, the tick) */
        rc = MC_ERR_OBJECT_NOT_FOUND;
        goto out;
    }
    t = *pp;
    *pp = t->next;
    atomic_fetch_sub(&v->ntasks, 1);
    mjob_t *j = t->job;
    if (j) j->inflight--;
    mobj_t *o = t->obj;
    mrep_t *r = NULL;
    for (size_t i = 0; o && i < o->nrep && !r; i++)
        if (o->rep[i].id == t->src_rep && o->rep[i].status == MC_REPLICA_COMPLETE && o->rep[i].blk)
            r = &o->rep[i];
    int counts = 1; /* a failure of the move itself (not of the object going away) */
    if (!o || !r) {
        why = !o ? "the object was removed meanwhile" : "its source replica went meanwhile";
        counts = 0;
    } else if (how == END_OK && (!t->blk || t->dst->gone)) {
        how = END_FAILED;
        why = "the target's segment was unmounted meanwhile";
    }
    int done = 0;
    if (how == END_OK && r && t->copy) {
        done = copy_commit_locked(m, sh, t, o, now) == 0;
        if (!done) {
            how = END_FAILED;
            why = "out of memory adding the replica";
        }
    } else if (how == END_OK && r) {
        task_commit_locked(m, t, o, r, now);
        done = 1;
    }
    if (done && j) {
        j->moved_objs++;
        j->moved_bytes += t->size;
    }
    if (t->ut && !done)
        MC_LOGW(TAG, "%s task of '%.128s' (%" PRIu64 " bytes) to segment '%s' failed: %s",
                t->copy ? "copy" : "move", t->key, t->size, t->dst_ep, why);
    if (t->ut) utask_step_locked(v, t->ut, done, why);
    if (!done) {
        /* reported: the client stopped writing; a deadline: it may still be */
        target_release_locked(m, t, how == END_TIMEOUT && t->sent, now);
        if (o && o->moving) o->moving--;
        if (counts && j && j->state == MC_MOVE_RUNNING) {
            uintptr_t n = (uintptr_t)mc_map_get(j->tries, t->key) + 1;
            if (mc_map_put(j->tries, t->key, (void *)n, NULL) != 0) n = v->tries;
            j->failed++;
            char who[48];
            mc__master_uuid_text(t->client, who);
            MC_LOGW(TAG,
                    "move of '%.128s' (%" PRIu64 " bytes) off segment '%s' to '%s' by client %s "
                    "failed (try %llu of %llu): %s",
                    t->key, t->size, j->seg, t->dst_ep, who, (unsigned long long)n,
                    (unsigned long long)v->tries, why);
            if (n >= v->tries)
                job_fail_locked(v, j, "object '%.128s' was not moved after %llu tries: %s", t->key,
                                (unsigned long long)n, why);
        }
    }
    task_free(t);
out:
    pthread_mutex_unlock(&v->mu);
    pthread_rwlock_unlock(&m->seg_lock);
    pthread_mutex_unlock(&sh->mu);
    free(key);
    return rc;
}

int mc_master_task_complete(mc_master_t *m, mc_uuid_t client, uint64_t id, int rc, uint64_t now_ms)
{
    char why[64];
    snprintf(why, sizeof why, "the client reported error %d", rc);
    return task_end(m, id, &client, rc == 0 ? END_OK : END_FAILED, why, now_ms);
}

/* ---- the client's side ---- */

/* A task to hand out: its drain job runs, or it is a user task's. */
static int task_live(const mtask_t *t)
{
    return t->job ? t->job->state == MC_MOVE_RUNNING : t->ut != NULL;
}

int mc_master_tasks_pending(mc_master_t *m, mc_uuid_t client)
{
    struct mmoves *v = m->moves;
    if (atomic_load_explicit(&v->ntasks, memory_order_relaxed) == 0) return 0;
    int any = 0;
    pthread_mutex_lock(&v->mu);
    for (mtask_t *t = v->tasks; t && !any; t = t->next)
        any = !t->sent && t->deadline_ms && task_live(t) && mc__uuid_eq(t->client, client);
    pthread_mutex_unlock(&v->mu);
    return any;
}

int mc_master_task_fetch(mc_master_t *m, mc_uuid_t client, uint32_t max, uint64_t now_ms,
                         mc_master_task_t **out, size_t *n)
{
    struct mmoves *v = m->moves;
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&v->mu);
    uint64_t busy = 0;
    for (mtask_t *t = v->tasks; t; t = t->next)
        busy += t->sent && mc__uuid_eq(t->client, client);
    uint64_t room = busy < v->client_inflight ? v->client_inflight - busy : 0;
    if (room > max) room = max;
    mc_master_task_t *o = room ? calloc(room, sizeof *o) : NULL;
    size_t k = 0;
    for (mtask_t *t = v->tasks; o && t && k < room; t = t->next) {
        if (t->sent || !t->deadline_ms || !task_live(t) || !mc__uuid_eq(t->client, client))
            continue;
        o[k].key = strdup(t->key);
        o[k].dst_endpoint = strdup(t->dst_ep);
        if (!o[k].key || !o[k].dst_endpoint) {
            free(o[k].key);
            free(o[k].dst_endpoint);
            break;
        }
        o[k].id = t->id;
        o[k].size = t->size;
        o[k].src_addr = t->src_addr;
        o[k].dst_addr = t->dst_addr;
        t->sent = 1;
        t->deadline_ms = now_ms + task_budget(v, t->size);
        if (t->ut && t->ut->info.status == MC_TASK_PENDING) {
            t->ut->info.status = MC_TASK_PROCESSING;
            t->ut->info.updated_ms = wall_ms();
            if (v->npending) v->npending--;
        }
        k++;
    }
    pthread_mutex_unlock(&v->mu);
    if (room && !o) return MC_ERR_INTERNAL;
    if (!k) {
        free(o);
        o = NULL;
    }
    *out = o;
    *n = k;
    return 0;
}

/* ---- hooks ---- */

void mc__move_obj_gone_locked(mc_master_t *m, mobj_t *o)
{
    struct mmoves *v = m->moves;
    pthread_mutex_lock(&v->mu);
    for (mtask_t *t = v->tasks; t; t = t->next)
        if (t->obj == o) {
            t->obj = NULL;
            if (!t->sent) t->deadline_ms = 0; /* nobody writes it: revoked by the tick */
        }
    pthread_mutex_unlock(&v->mu);
    o->moving = 0;
}

void mc__move_seg_gone(mc_master_t *m, mseg_t *s)
{
    struct mmoves *v = m->moves;
    pthread_mutex_lock(&v->mu);
    for (mtask_t *t = v->tasks; t; t = t->next) {
        if (t->dst == s) { /* its allocator goes with it */
            t->dst = NULL;
            t->blk = NULL;
            if (!t->sent) t->deadline_ms = 0;
        }
        if (t->src == s) t->deadline_ms = 0; /* its owner left: nothing to copy from */
    }
    for (mjob_t *j = v->jobs; j; j = j->next)
        if (j->state == MC_MOVE_RUNNING && mc__uuid_eq(j->seg_id, s->info.id)) j->seg_gone = 1;
    pthread_mutex_unlock(&v->mu);
}

/* ---- planning ---- */

typedef struct {
    mc_master_t *m;
    char **keys;
    size_t n, cap, want;
} plan_scan_t;

static int plan_visit(uint64_t addr, uint64_t size, int is_free, void *owner, void *arg)
{
    plan_scan_t *c = arg;
    (void)addr;
    (void)size;
    if (is_free || !owner) return 0; /* free, or parked (no object) */
    const mobj_t *o = owner;
    shard_t *sh = &c->m->shards[o->shard];
    if (pthread_mutex_trylock(&sh->mu) != 0) return 0; /* found again next round */
    if (o->key && !o->moving && mc__obj_all_complete(o))
        mc__master_push_key(&c->keys, &c->n, &c->cap, o->key);
    pthread_mutex_unlock(&sh->mu);
    return c->n >= c->want;
}

static int cmp_free_desc(const void *a, const void *b)
{
    const mseg_t *x = *(mseg_t *const *)a, *y = *(mseg_t *const *)b;
    uint64_t ux = atomic_load(&x->used), uy = atomic_load(&y->used);
    uint64_t fx = ux < x->capacity ? x->capacity - ux : 0;
    uint64_t fy = uy < y->capacity ? y->capacity - uy : 0;
    return fx < fy ? 1 : fx > fy ? -1 : 0;
}

/* A range of o's size on a segment that takes replicas and holds none of o,
 * most free bytes first. Caller holds o's shard lock and the table's read lock. */
static int pick_target(mc_master_t *m, const mobj_t *o, char *const *only, size_t nonly,
                       mseg_t **dst, mc_alloc_blk_t **blk, uint64_t *addr)
{
    mseg_t **c = malloc((m->nsegs ? m->nsegs : 1) * sizeof *c);
    if (!c) return 0;
    size_t k = 0;
    for (size_t i = 0; i < m->nsegs; i++) {
        mseg_t *s = m->segs[i];
        if (atomic_load(&s->draining) || s->capacity < o->size) continue;
        int allowed = nonly == 0;
        for (size_t t = 0; t < nonly && !allowed; t++)
            allowed = !strcmp(only[t], s->info.name) || !strcmp(only[t], s->info.te_endpoint);
        if (!allowed) continue;
        int used = 0;
        for (size_t r = 0; r < o->nrep && !used; r++)
            used = strcmp(o->rep[r].seg->info.name, s->info.name) == 0;
        if (!used) c[k++] = s;
    }
    qsort(c, k, sizeof *c, cmp_free_desc);
    int got = 0;
    for (size_t i = 0; i < k && !got; i++) {
        pthread_mutex_lock(&c[i]->mu);
        got = mc_alloc_get(c[i]->alloc, o->size, blk, addr) == 0;
        pthread_mutex_unlock(&c[i]->mu);
        if (got) {
            uint64_t sz = mc_alloc_blk_size(*blk);
            atomic_fetch_add(&c[i]->used, sz);
            atomic_fetch_add(&m->allocated, sz);
            *dst = c[i];
        }
    }
    free(c);
    return got;
}

/* Makes a task for key when its object still has a complete replica on the
 * job's segment. Returns 1 when the job stopped (failed, ended). */
static int plan_one(mc_master_t *m, uint64_t jid, mc_uuid_t seg_id, char *const *only,
                    size_t nonly, const char *key, uint64_t now)
{
    struct mmoves *v = m->moves;
    shard_t *sh = mc__master_shard_of(m, key);
    int stop = 0;
    pthread_mutex_lock(&sh->mu);
    mobj_t *o = mc_map_get(sh->map, key);
    if (!o || o->moving || !mc__obj_all_complete(o)) goto out;
    mrep_t *r = NULL;
    for (size_t i = 0; i < o->nrep && !r; i++)
        if (o->rep[i].status == MC_REPLICA_COMPLETE && o->rep[i].blk &&
            mc__uuid_eq(o->rep[i].seg->info.id, seg_id))
            r = &o->rep[i];
    if (!r) goto out;
    pthread_rwlock_rdlock(&m->seg_lock);
    mseg_t *dst = NULL;
    mc_alloc_blk_t *blk = NULL;
    uint64_t addr = 0;
    int got = !r->seg->gone && pick_target(m, o, only, nonly, &dst, &blk, &addr);
    pthread_mutex_lock(&v->mu);
    mjob_t *j = job_find_locked(v, jid);
    mtask_t *t = NULL;
    if (!j || j->state != MC_MOVE_RUNNING) {
        stop = 1;
    } else if (!got) {
        job_fail_locked(v, j,
                        "no room elsewhere: no segment other than '%s'%s has %" PRIu64
                        " free contiguous bytes for '%.128s' (the others are full, draining or "
                        "hold a replica of it already)",
                        j->seg, j->ntargets ? " among the job's targets" : "", o->size, key);
        stop = 1;
    } else if (!(t = task_queue_locked(m, o, r, dst, blk, addr, now))) {
        stop = 1;
    }
    if (!t) {
        if (got) mc__master_range_free(m, dst, blk);
    } else {
        t->job = j;
        j->inflight++;
        stop = j->inflight >= j->max_inflight;
        o->moving = 1;
    }
    pthread_mutex_unlock(&v->mu);
    pthread_rwlock_unlock(&m->seg_lock);
out:
    pthread_mutex_unlock(&sh->mu);
    return stop;
}

static void plan_job(mc_master_t *m, uint64_t jid, mc_uuid_t seg_id, size_t want, uint64_t now)
{
    plan_scan_t c = {m, NULL, 0, 0, want};
    int found = 0;
    pthread_rwlock_rdlock(&m->seg_lock);
    for (size_t i = 0; i < m->nsegs && !found; i++) {
        mseg_t *s = m->segs[i];
        if (!mc__uuid_eq(s->info.id, seg_id)) continue;
        found = 1;
        pthread_mutex_lock(&s->mu);
        mc_alloc_each(s->alloc, plan_visit, &c);
        pthread_mutex_unlock(&s->mu);
    }
    pthread_rwlock_unlock(&m->seg_lock);
    if (!found) {
        struct mmoves *v = m->moves;
        pthread_mutex_lock(&v->mu);
        mjob_t *j = job_find_locked(v, jid);
        if (j) j->seg_gone = 1;
        pthread_mutex_unlock(&v->mu);
    }
    /* the job's targets, copied: the job may be forgotten meanwhile */
    char **only = NULL;
    size_t nonly = 0;
    int oom = 0;
    if (c.n) {
        struct mmoves *v = m->moves;
        pthread_mutex_lock(&v->mu);
        mjob_t *j = job_find_locked(v, jid);
        if (j && j->ntargets && (only = calloc(j->ntargets, sizeof *only)))
            for (; nonly < j->ntargets && !oom; nonly++)
                oom = !(only[nonly] = strdup(j->targets[nonly]));
        oom |= j && j->ntargets && !only;
        pthread_mutex_unlock(&v->mu);
    }
    size_t i = 0;
    for (; i < c.n && !oom; i++) {
        int stop = plan_one(m, jid, seg_id, only, nonly, c.keys[i], now);
        free(c.keys[i]);
        if (stop) break;
    }
    for (i++; i < c.n; i++)
        free(c.keys[i]);
    if (oom && c.n) free(c.keys[0]);
    free(c.keys);
    for (size_t k = 0; k < nonly; k++)
        free(only[k]);
    free(only);
}

void mc__move_tick(mc_master_t *m, uint64_t now)
{
    struct mmoves *v = m->moves;
    if (!v || (atomic_load(&v->ntasks) == 0 && atomic_load(&v->nrunning) == 0)) return;
    /* tasks past their deadline (or revoked: deadline 0) */
    static const char *const whys[] = {
        "revoked (its job ended, its object, source or target went)",
        "its client did not report within the task's time budget",
        "its client did not fetch it in time (not polling for tasks?)"};
    uint64_t ids[MOVE_EXPIRE_BATCH];
    int why[MOVE_EXPIRE_BATCH];
    size_t ne = 0;
    pthread_mutex_lock(&v->mu);
    for (mtask_t *t = v->tasks; t && ne < MOVE_EXPIRE_BATCH; t = t->next)
        if (t->deadline_ms <= now) {
            why[ne] = !t->deadline_ms ? 0 : t->sent ? 1 : 2;
            ids[ne++] = t->id;
        }
    pthread_mutex_unlock(&v->mu);
    for (size_t i = 0; i < ne; i++)
        task_end(m, ids[i], NULL, END_TIMEOUT, whys[why[i]], now);
    /* new tasks */
    struct {
        uint64_t id;
        mc_uuid_t seg;
        size_t want;
    } plan[16];
    size_t np = 0;
    pthread_mutex_lock(&v->mu);
    for (mjob_t *j = v->jobs; j && np < 16; j = j->next) {
        if (j->state != MC_MOVE_RUNNING || j->inflight >= j->max_inflight || now < j->next_plan_ms)
            continue;
        j->next_plan_ms = now + MOVE_PLAN_EVERY_MS;
        plan[np].id = j->id;
        plan[np].seg = j->seg_id;
        plan[np++].want = (size_t)(j->max_inflight - j->inflight);
    }
    pthread_mutex_unlock(&v->mu);
    for (size_t i = 0; i < np; i++)
        plan_job(m, plan[i].id, plan[i].seg, plan[i].want, now);
}

/* ---- copy / move tasks (upstream's CreateCopyTask / CreateMoveTask) ---- */

#define TASK_TARGETS_MAX 64 /* MC_MASTER_MAX_REPLICAS */

/* The mounted segment called name (its name or TE endpoint), or NULL.
 * Caller holds the table's read lock. */
static mseg_t *seg_named_locked(mc_master_t *m, const char *name)
{
    for (size_t i = 0; i < m->nsegs; i++) {
        mseg_t *s = m->segs[i];
        if (!s->gone && (strcmp(s->info.name, name) == 0 || strcmp(s->info.te_endpoint, name) == 0))
            return s;
    }
    return NULL;
}

static int obj_on_seg(const mobj_t *o, const mseg_t *s)
{
    for (size_t i = 0; i < o->nrep; i++)
        if (o->rep[i].seg == s || strcmp(o->rep[i].seg->info.name, s->info.name) == 0) return 1;
    return 0;
}

/* A range of size bytes on s (no eviction). Caller holds the table's read lock. */
static int alloc_on(mc_master_t *m, mseg_t *s, uint64_t size, mc_alloc_blk_t **blk, uint64_t *addr)
{
    if (s->capacity < size) return 0;
    pthread_mutex_lock(&s->mu);
    int got = mc_alloc_get(s->alloc, size, blk, addr) == 0;
    pthread_mutex_unlock(&s->mu);
    if (got) {
        uint64_t sz = mc_alloc_blk_size(*blk);
        atomic_fetch_add(&s->used, sz);
        atomic_fetch_add(&m->allocated, sz);
    }
    return got;
}

/* A random (version 4) UUID no record has. Caller holds the moves lock. */
static mc_uuid_t utask_uuid_locked(struct mmoves *v)
{
    for (;;) {
        uint64_t b[2];
        if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) { /* no entropy: clock and counter */
            static _Atomic uint64_t ctr;
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            b[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)ts.tv_sec;
            b[1] = atomic_fetch_add(&ctr, 1) * 0xbf58476d1ce4e5b9ull ^ (uint64_t)(uintptr_t)v;
        }
        mc_uuid_t u = {(b[0] & ~(0xF0ull << 48)) | (0x40ull << 48), (b[1] & ~0xC0ull) | 0x80ull};
        char txt[48];
        mc__master_uuid_text(u, txt);
        if (!mc_map_get(v->utasks, txt)) return u;
    }
}

/* A new PENDING record of type for client; NULL with *rc set. Caller holds
 * the moves lock. */
static utask_t *utask_new_locked(struct mmoves *v, int type, mc_uuid_t client, int *rc)
{
    if (v->npending >= v->pending_max) {
        MC_LOGW(TAG, "task refused: %llu tasks are pending already (MC_MASTER_TASK_PENDING_MAX)",
                (unsigned long long)v->npending);
        *rc = MC_ERR_TASK_PENDING_LIMIT_EXCEEDED;
        return NULL;
    }
    utask_t *ut = calloc(1, sizeof *ut);
    if (!ut) {
        *rc = MC_ERR_INTERNAL;
        return NULL;
    }
    ut->info.id = utask_uuid_locked(v);
    ut->info.type = type;
    ut->info.status = MC_TASK_PENDING;
    ut->info.created_ms = ut->info.updated_ms = wall_ms();
    ut->info.assigned_client = client;
    char txt[48];
    mc__master_uuid_text(ut->info.id, txt);
    if (mc_map_put(v->utasks, txt, ut, NULL) != 0) {
        free(ut);
        *rc = MC_ERR_INTERNAL;
        return NULL;
    }
    v->npending++;
    return ut;
}

/* A task of ut for the owner of o's replica r, into [blk) of dst. Caller
 * holds o's shard lock, the table's read lock and the moves lock. Returns 0
 * or -1 (out of memory: the caller frees blk). */
static int utask_add_locked(mc_master_t *m, utask_t *ut, mobj_t *o, const mrep_t *r, mseg_t *dst,
                            mc_alloc_blk_t *blk, uint64_t addr, int copy, uint64_t now)
{
    mtask_t *t = task_queue_locked(m, o, r, dst, blk, addr, now);
    if (!t) return -1;
    t->ut = ut;
    t->copy = copy;
    ut->left++;
    o->moving++;
    return 0;
}

/* Why o cannot have a copy or move task now (NULL: it can). */
static const char *obj_busy(const mobj_t *o)
{
    if (o->moving)
        return "OBJECT_HAS_REPLICATION_TASK: the object has a copy, move or drain task in progress";
    if (!mc__obj_all_complete(o)) return "REPLICA_IS_NOT_READY: a write of the object is in progress";
    return NULL;
}

/* A complete memory replica of o, at random among them; NULL when none. */
static mrep_t *pick_source(mobj_t *o)
{
    size_t ok = 0;
    for (size_t i = 0; i < o->nrep; i++)
        ok += o->rep[i].status == MC_REPLICA_COMPLETE && o->rep[i].blk && !o->rep[i].seg->gone;
    if (!ok) return NULL;
    uint64_t b = 0;
    if (getrandom(&b, sizeof b, 0) != (ssize_t)sizeof b) b = (uint64_t)wall_ms();
    size_t want = (size_t)(b % ok);
    for (size_t i = 0; i < o->nrep; i++)
        if (o->rep[i].status == MC_REPLICA_COMPLETE && o->rep[i].blk && !o->rep[i].seg->gone &&
            want-- == 0)
            return &o->rep[i];
    return NULL;
}

int mc_master_copy_task(mc_master_t *m, const char *key, const char *const *targets, size_t n,
                        uint64_t now, mc_uuid_t *id)
{
    struct mmoves *v = m->moves;
    memset(id, 0, sizeof *id);
    if (!targets || n == 0 || n > TASK_TARGETS_MAX) {
        MC_LOGW(TAG, "copy task of '%.128s' refused: %zu targets (1 to %d)", key ? key : "", n,
                TASK_TARGETS_MAX);
        return MC_ERR_INVALID_PARAMS;
    }
    if (mc__master_key_check(key)) return MC_ERR_OBJECT_NOT_FOUND;
    shard_t *sh = mc__master_shard_of(m, key);
    mseg_t *dst[TASK_TARGETS_MAX];
    size_t nd = 0;
    int rc = 0;
    pthread_mutex_lock(&sh->mu);
    pthread_rwlock_rdlock(&m->seg_lock);
    mobj_t *o = mc_map_get(sh->map, key);
    if (!o) {
        rc = MC_ERR_OBJECT_NOT_FOUND;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        mseg_t *s = targets[i] ? seg_named_locked(m, targets[i]) : NULL;
        if (!s || atomic_load(&s->draining)) {
            MC_LOGW(TAG, "copy task of '%.128s' refused: target segment '%.128s' is %s", key,
                    targets[i] ? targets[i] : "(null)", s ? "draining" : "not mounted");
            rc = s ? MC_ERR_UNAVAILABLE_IN_CURRENT_STATUS : MC_ERR_INVALID_PARAMS;
            goto out;
        }
        int dup = obj_on_seg(o, s); /* a target with a replica already is skipped */
        for (size_t k = 0; k < nd && !dup; k++)
            dup = dst[k] == s;
        if (!dup) dst[nd++] = s;
    }
    int mem = 0;
    for (size_t i = 0; i < o->nrep; i++)
        mem += o->rep[i].blk != NULL;
    if (!mem) {
        MC_LOGW(TAG, "copy task of '%.128s' refused: no memory replica to copy from", key);
        rc = MC_ERR_INTERNAL;
        goto out;
    }
    mrep_t *src = pick_source(o);
    pthread_mutex_lock(&v->mu);
    utask_t *ut = utask_new_locked(v, MC_TASK_REPLICA_COPY,
                                   src ? src->seg->client : o->rep[0].seg->client, &rc);
    if (!ut) goto out_moves;
    *id = ut->info.id;
    const char *fail = obj_busy(o);
    char why[256];
    if (!fail && !src) fail = "REPLICA_NOT_FOUND: no complete replica to copy from";
    if (!fail && o->nrep + nd > TASK_TARGETS_MAX) fail = "INVALID_PARAMS: too many replicas";
    mc_alloc_blk_t *blk[TASK_TARGETS_MAX];
    uint64_t addr[TASK_TARGETS_MAX];
    size_t got = 0;
    while (!fail && got < nd) {
        if (alloc_on(m, dst[got], o->size, &blk[got], &addr[got])) {
            got++;
        } else {
            snprintf(why, sizeof why,
                     "NO_AVAILABLE_HANDLE: segment '%.128s' has no %llu free contiguous bytes",
                     dst[got]->info.name, (unsigned long long)o->size);
            fail = why;
        }
    }
    if (fail)
        for (size_t i = 0; i < got; i++)
            mc__master_range_free(m, dst[i], blk[i]);
    for (size_t i = 0; !fail && i < nd; i++)
        if (utask_add_locked(m, ut, o, src, dst[i], blk[i], addr[i], 1, now)) {
            fail = "INTERNAL_ERROR: out of memory";
            for (size_t k = i; k < nd; k++)
                mc__master_range_free(m, dst[k], blk[k]);
            for (mtask_t *t = v->tasks; t; t = t->next) /* the tick revokes those made */
                if (t->ut == ut) t->deadline_ms = 0;
        }
    if (fail && ut->left == 0) {
        MC_LOGW(TAG, "copy task of '%.128s' failed: %s", key, fail);
        utask_finish_locked(v, ut, MC_TASK_FAILED, fail);
    } else if (fail) {
        snprintf(ut->info.message, sizeof ut->info.message, "%s", fail);
    } else if (nd == 0) { /* every target holds a replica already */
        utask_finish_locked(v, ut, MC_TASK_SUCCESS, NULL);
    }
out_moves:
    pthread_mutex_unlock(&v->mu);
out:
    pthread_rwlock_unlock(&m->seg_lock);
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

int mc_master_move_task(mc_master_t *m, const char *key, const char *source, const char *target,
                        uint64_t now, mc_uuid_t *id)
{
    struct mmoves *v = m->moves;
    memset(id, 0, sizeof *id);
    if (mc__master_key_check(key)) return MC_ERR_OBJECT_NOT_FOUND;
    if (!source || !target) return MC_ERR_INVALID_PARAMS;
    shard_t *sh = mc__master_shard_of(m, key);
    int rc = 0;
    pthread_mutex_lock(&sh->mu);
    pthread_rwlock_rdlock(&m->seg_lock);
    mobj_t *o = mc_map_get(sh->map, key);
    mseg_t *dst = NULL, *srcseg = NULL;
    mrep_t *r = NULL;
    if (!o) {
        rc = MC_ERR_OBJECT_NOT_FOUND;
        goto out;
    }
    dst = seg_named_locked(m, target);
    srcseg = seg_named_locked(m, source);
    if (strcmp(source, target) == 0 || (dst && dst == srcseg)) {
        MC_LOGW(TAG, "move task of '%.128s' refused: source and target are segment '%.128s'", key,
                target);
        rc = MC_ERR_INVALID_PARAMS;
        goto out;
    }
    if (!dst || atomic_load(&dst->draining)) {
        MC_LOGW(TAG, "move task of '%.128s' refused: target segment '%.128s' is %s", key, target,
                dst ? "draining" : "not mounted");
        rc = dst ? MC_ERR_UNAVAILABLE_IN_CURRENT_STATUS : MC_ERR_INVALID_PARAMS;
        goto out;
    }
    for (size_t i = 0; srcseg && i < o->nrep && !r; i++)
        if (o->rep[i].seg == srcseg) r = &o->rep[i];
    if (!r) {
        MC_LOGW(TAG, "move task of '%.128s' refused: it has no replica on segment '%.128s'", key,
                source);
        rc = MC_ERR_INVALID_PARAMS;
        goto out;
    }
    pthread_mutex_lock(&v->mu);
    utask_t *ut = utask_new_locked(v, MC_TASK_REPLICA_MOVE, r->seg->client, &rc);
    if (!ut) goto out_moves;
    *id = ut->info.id;
    const char *fail = obj_busy(o);
    char why[256];
    if (!fail && (r->status != MC_REPLICA_COMPLETE || !r->blk))
        fail = "REPLICA_NOT_FOUND: the source replica is not complete";
    mc_alloc_blk_t *blk = NULL;
    uint64_t addr = 0;
    if (!fail && obj_on_seg(o, dst)) {
        /* the target holds a replica already: the source one just goes (its
         * range kept while readers may still read it) */
        mseg_t *ss = r->seg;
        mc_alloc_blk_t *sblk = r->blk;
        size_t k = (size_t)(r - o->rep);
        memmove(&o->rep[k], &o->rep[k + 1], (o->nrep - k - 1) * sizeof o->rep[0]);
        o->nrep--;
        if (o->durable) mc__journal_put_locked(m, o, now);
        uint64_t keep = mc__obj_lease_active(o, now) ? o->lease_ms : 0;
        if (m->disk && keep < now + MC_MASTER_DISK_HOLD_MS) keep = now + MC_MASTER_DISK_HOLD_MS;
        if (keep)
            park_range(m, ss, sblk, keep);
        else
            mc__master_range_free(m, ss, sblk);
        utask_finish_locked(v, ut, MC_TASK_SUCCESS, NULL);
        goto out_moves;
    }
    if (!fail && !alloc_on(m, dst, o->size, &blk, &addr)) {
        snprintf(why, sizeof why,
                 "NO_AVAILABLE_HANDLE: segment '%.128s' has no %llu free contiguous bytes",
                 dst->info.name, (unsigned long long)o->size);
        fail = why;
    }
    if (!fail && utask_add_locked(m, ut, o, r, dst, blk, addr, 0, now)) {
        mc__master_range_free(m, dst, blk);
        fail = "INTERNAL_ERROR: out of memory";
    }
    if (fail) {
        MC_LOGW(TAG, "move task of '%.128s' failed: %s", key, fail);
        utask_finish_locked(v, ut, MC_TASK_FAILED, fail);
    }
out_moves:
    pthread_mutex_unlock(&v->mu);
out:
    pthread_rwlock_unlock(&m->seg_lock);
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

int mc_master_task_query(mc_master_t *m, mc_uuid_t id, mc_master_task_info_t *out)
{
    struct mmoves *v = m->moves;
    char txt[48];
    mc__master_uuid_text(id, txt);
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&v->mu);
    const utask_t *ut = mc_map_get(v->utasks, txt);
    if (ut) *out = ut->info;
    pthread_mutex_unlock(&v->mu);
    return ut ? 0 : MC_ERR_TASK_NOT_FOUND;
}
