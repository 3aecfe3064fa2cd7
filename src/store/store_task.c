/* store_task.c: the store's side of drain jobs' move tasks (master_move.h,
 * docs/protocol.md TASK_FETCH / TASK_COMPLETE). The master hands a task for
 * an object on our segment to us, its owner: we hold the bytes and write
 * them with our transfer engine to the target range the master allocated on
 * another segment, then report. The heartbeat thread runs them when a ping
 * reply carries MC_CLIENT_TASKS_PENDING, so an idle store costs nothing: a
 * bounded number of rounds of ST_TASK_BATCH tasks, with a ping after each
 * round (it keeps our heartbeat going and says whether more wait). A task
 * whose source is not inside our segment is refused (reported failed), never
 * read. A close stops between tasks. */
#include <inttypes.h>

#include "base_log.h"
#include "store_int.h"

#define TAG "store"
#define ST_TASK_BATCH 8   /* tasks per fetch (the master bounds a client's in flight too) */
#define ST_TASK_ROUNDS 64 /* fetches per heartbeat */

/* 1 once close asked the heartbeat thread to stop: the tasks left are not
 * run (the master revokes them at their deadline). */
static int st_stopping(mc_store_t *s)
{
    pthread_mutex_lock(&s->hb_lock);
    int stop = s->hb_stop;
    pthread_mutex_unlock(&s->hb_lock);
    return stop;
}

void mc__store_run_tasks(mc_store_t *s)
{
    for (int round = 0; round < ST_TASK_ROUNDS && !st_stopping(s); round++) {
        mc_master_task_t *t = NULL;
        size_t n = 0;
        int rc = mc_master_client_task_fetch(s->mc, s->client_id, ST_TASK_BATCH, &t, &n);
        if (rc) {
            MC_LOGW(TAG, "fetching move tasks from master %s failed: error %d", s->master_addr, rc);
            return;
        }
        if (n == 0) return;
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
        int st = 0;
        if (mc_master_client_ping(s->mc, s->client_id, &st) || !(st & MC_CLIENT_TASKS_PENDING))
            return;
    }
}
