/* store_task.c: the store's side of drain jobs' move tasks (master_move.h,
 * docs/protocol.md TASK_FETCH / TASK_COMPLETE). The master hands a task for
 * an object on our segment to us, its owner: we hold the bytes and write
 * them with our transfer engine to the target range the master allocated on
 * another segment, then report. A ping reply carrying MC_CLIENT_TASKS_PENDING
 * makes the heartbeat wake the task thread (started at the first task, so an
 * idle store costs nothing); the thread fetches ST_TASK_BATCH tasks at a time
 * until none is left. The heartbeat goes on meanwhile: a long copy never
 * makes the master expire us. A task whose source is not inside our segment
 * is refused (reported failed), never read. A close stops between tasks
 * (the master revokes what is left at its deadline). The same tasks carry
 * upstream's copy and move tasks (mc_store_create_copy_task & co., whose
 * requests are at the end of this file). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base_log.h"
#include "base_time.h"
#include "store_int.h"

#define TAG "store"
#define ST_TASK_BATCH 8   /* tasks per fetch (the master bounds a client's in flight too) */
#define ST_TASK_RETRIES 3 /* empty fetches after a batch before waiting for a heartbeat */
#define ST_TASK_NAP_MS 30

static int st_stopping(mc_store_t *s)
{
    pthread_mutex_lock(&s->hb_lock);
    int stop = s->hb_stop;
    pthread_mutex_unlock(&s->hb_lock);
    return stop;
}

/* Waits ms (or until close). */
static void st_nap(mc_store_t *s, int ms)
{
    struct timespec ts = mc_deadline_ts(CLOCK_REALTIME, (uint64_t)ms);
    pthread_mutex_lock(&s->hb_lock);
    if (!s->hb_stop) pthread_cond_timedwait(&s->task_cond, &s->hb_lock, &ts);
    pthread_mutex_unlock(&s->hb_lock);
}

/* Fetches and runs tasks until the master has none for us: after a batch,
 * an empty answer is asked again ST_TASK_RETRIES times ST_TASK_NAP_MS apart
 * (the master plans new tasks every 20 ms), then the next heartbeat wakes us. */
static void st_run_all(mc_store_t *s)
{
    int empty = ST_TASK_RETRIES;
    while (!st_stopping(s)) {
        mc_master_task_t *t = NULL;
        size_t n = 0;
        int rc = mc_master_client_task_fetch(s->mc, s->client_id, ST_TASK_BATCH, &t, &n);
        if (rc) {
            MC_LOGW(TAG, "fetching move tasks from master %s failed: error %d", s->master_addr, rc);
            return;
        }
        if (n == 0) {
            if (empty-- <= 0) return;
            st_nap(s, ST_TASK_NAP_MS);
            continue;
        }
        empty = ST_TASK_RETRIES;
        for (size_t i = 0; i < n && !st_stopping(s); i++) {
            int trc = mc__store_write_out(s, t[i].key, t[i].src_addr, t[i].size, t[i].dst_endpoint,
                                          t[i].dst_addr);
            if (trc)
                MC_LOGW(TAG,
                        "move task %" PRIu64 " of '%.128s' (%" PRIu64
                        " bytes) to segment '%s' failed: error %d%s",
                        t[i].id, t[i].key, t[i].size, t[i].dst_endpoint, trc,
                        trc == MC_ERR_INVALID_PARAMS ? " (its source is not in our segment)" : "");
            int crc = mc_master_client_task_complete(s->mc, s->client_id, t[i].id, trc);
            if (crc)
                MC_LOGW(TAG, "reporting move task %" PRIu64 " to master %s failed: error %d%s",
                        t[i].id, s->master_addr, crc,
                        crc == MC_ERR_OBJECT_NOT_FOUND ? " (it was revoked meanwhile)" : "");
        }
        mc_master_tasks_free(t, n);
    }
}

static void *st_task_main(void *arg)
{
    mc_store_t *s = arg;
    pthread_mutex_lock(&s->hb_lock);
    while (!s->hb_stop) {
        while (!s->task_wake && !s->hb_stop)
            pthread_cond_wait(&s->task_cond, &s->hb_lock);
        if (s->hb_stop) break;
        s->task_wake = 0;
        pthread_mutex_unlock(&s->hb_lock);
        st_run_all(s);
        pthread_mutex_lock(&s->hb_lock);
    }
    pthread_mutex_unlock(&s->hb_lock);
    return NULL;
}

void mc__store_run_tasks(mc_store_t *s)
{
    pthread_mutex_lock(&s->hb_lock);
    if (!s->task_running && !s->hb_stop) {
        if (pthread_create(&s->task_thread, NULL, st_task_main, s) == 0)
            s->task_running = 1;
        else
            MC_LOGE(TAG, "cannot start the move task thread; tasks are left to time out");
    }
    s->task_wake = 1;
    pthread_cond_signal(&s->task_cond);
    pthread_mutex_unlock(&s->hb_lock);
}

void mc__store_stop_tasks(mc_store_t *s)
{
    pthread_mutex_lock(&s->hb_lock);
    int running = s->task_running;
    pthread_cond_broadcast(&s->task_cond);
    pthread_mutex_unlock(&s->hb_lock);
    if (running) pthread_join(s->task_thread, NULL);
    s->task_running = 0;
    s->task_wake = 0;
}

/* ---- upstream's copy / move tasks: the requests ---- */

int mc_store_create_copy_task(mc_store_t *s, const char *key, const char *const *targets,
                              size_t n, mc_store_task_id_t *id)
{
    if (id) *id = (mc_store_task_id_t){0, 0};
    if (!s || !s->ready || !key || !id || (n && !targets)) return MC_ERR_INVALID_PARAMS;
    mc_uuid_t u;
    int rc = mc_master_client_copy_task(s->mc, key, targets, n, &u);
    if (rc == 0) *id = (mc_store_task_id_t){u.hi, u.lo};
    return rc;
}

int mc_store_create_move_task(mc_store_t *s, const char *key, const char *source,
                              const char *target, mc_store_task_id_t *id)
{
    if (id) *id = (mc_store_task_id_t){0, 0};
    if (!s || !s->ready || !key || !source || !target || !id) return MC_ERR_INVALID_PARAMS;
    mc_uuid_t u;
    int rc = mc_master_client_move_task(s->mc, key, source, target, &u);
    if (rc == 0) *id = (mc_store_task_id_t){u.hi, u.lo};
    return rc;
}

int mc_store_query_task(mc_store_t *s, mc_store_task_id_t id, mc_store_task_info_t *out)
{
    if (!out) return MC_ERR_INVALID_PARAMS;
    memset(out, 0, sizeof *out);
    if (!s || !s->ready) return MC_ERR_INVALID_PARAMS;
    mc_master_task_info_t ti;
    int rc = mc_master_client_task_query(s->mc, (mc_uuid_t){id.hi, id.lo}, &ti);
    if (rc) return rc;
    out->id = (mc_store_task_id_t){ti.id.hi, ti.id.lo};
    out->type = ti.type;
    out->status = ti.status;
    out->created_at_ms_epoch = ti.created_ms;
    out->last_updated_at_ms_epoch = ti.updated_ms;
    out->assigned_client = (mc_store_task_id_t){ti.assigned_client.hi, ti.assigned_client.lo};
    snprintf(out->message, sizeof out->message, "%s", ti.message);
    return 0;
}
