/* te_batch.c: batches and the worker pool. Submitting splits each request into
 * up to `lanes` pieces (of at least piece_min bytes) and queues them; workers
 * move pieces through the transport the peer needs (local memcpy, shm, tcp)
 * and count tasks down. Batch ids are slot | generation << 32, so a stale or
 * forged id is refused instead of touching freed memory. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base_log.h"
#include "base_mem.h"
#include "base_time.h"
#include "te_int.h"

#define TAG "te-batch"

typedef struct {
    atomic_int status;
    atomic_uint pieces_left;
    atomic_int err;  /* 0, MC_TE_FAILED or MC_TE_TIMEOUT */
    atomic_int code; /* first MC_TE_ERR_* of its pieces */
    atomic_ullong done_bytes;
} task_t;

typedef struct chunk {
    struct chunk *next;
    mc__te_piece_t pieces[];
} chunk_t;

struct mc__te_batch {
    size_t cap, n;
    atomic_uint pending; /* tasks not yet finished */
    atomic_uint failed, timed_out;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    chunk_t *chunks;
    task_t tasks[];
};

static mc__te_batch_t *lookup_locked(mc_te_t *te, uint64_t id)
{
    size_t slot = (size_t)(id & 0xffffffffu);
    uint32_t gen = (uint32_t)(id >> 32);
    if (slot >= te->nbatch_slots || te->batch_gen[slot] != gen) return NULL;
    return te->batches[slot];
}

static mc__te_batch_t *lookup(mc_te_t *te, uint64_t id)
{
    pthread_mutex_lock(&te->batch_lock);
    mc__te_batch_t *b = lookup_locked(te, id);
    pthread_mutex_unlock(&te->batch_lock);
    return b;
}

int mc_te_batch_alloc(mc_te_t *te, size_t capacity, uint64_t *batch_id)
{
    *batch_id = MC_TE_INVALID_BATCH;
    if (!te || !te->initialized || capacity == 0 || capacity > (1u << 20))
        return MC_TE_ERR_INVALID_ARGUMENT;
    mc__te_batch_t *b = calloc(1, sizeof *b + capacity * sizeof(task_t));
    if (!b) return MC_TE_ERR_MEMORY;
    b->cap = capacity;
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
    pthread_mutex_lock(&te->batch_lock);
    size_t slot = 0;
    while (slot < te->nbatch_slots && te->batches[slot])
        slot++;
    if (slot == te->nbatch_slots) {
        size_t n = te->nbatch_slots ? te->nbatch_slots * 2 : 64;
        mc__te_batch_t **nb = realloc(te->batches, n * sizeof *nb);
        if (nb) te->batches = nb;
        uint32_t *ng = nb ? realloc(te->batch_gen, n * sizeof *ng) : NULL;
        if (!ng) {
            pthread_mutex_unlock(&te->batch_lock);
            free(b);
            return MC_TE_ERR_MEMORY;
        }
        te->batch_gen = ng;
        for (size_t i = te->nbatch_slots; i < n; i++)
            te->batches[i] = NULL, ng[i] = 1;
        te->nbatch_slots = n;
    }
    te->batches[slot] = b;
    *batch_id = (uint64_t)slot | (uint64_t)te->batch_gen[slot] << 32;
    pthread_mutex_unlock(&te->batch_lock);
    return 0;
}

static void batch_destroy(mc__te_batch_t *b)
{
    for (chunk_t *c = b->chunks, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    pthread_mutex_destroy(&b->lock);
    pthread_cond_destroy(&b->cond);
    free(b);
}

int mc_te_batch_free(mc_te_t *te, uint64_t batch_id)
{
    pthread_mutex_lock(&te->batch_lock);
    mc__te_batch_t *b = lookup_locked(te, batch_id);
    if (!b) {
        pthread_mutex_unlock(&te->batch_lock);
        return MC_TE_ERR_INVALID_ARGUMENT;
    }
    if (atomic_load(&b->pending)) {
        pthread_mutex_unlock(&te->batch_lock);
        return MC_TE_ERR_BATCH_BUSY;
    }
    size_t slot = (size_t)(batch_id & 0xffffffffu);
    te->batches[slot] = NULL;
    if (++te->batch_gen[slot] == 0) te->batch_gen[slot] = 1;
    pthread_mutex_unlock(&te->batch_lock);
    batch_destroy(b);
    return 0;
}

void mc__te_batches_free(mc_te_t *te)
{
    for (size_t i = 0; i < te->nbatch_slots; i++)
        if (te->batches[i]) batch_destroy(te->batches[i]);
    free(te->batches);
    free(te->batch_gen);
    te->batches = NULL;
    te->batch_gen = NULL;
    te->nbatch_slots = 0;
}

static void task_finish(mc__te_batch_t *b, task_t *t)
{
    int err = atomic_load(&t->err);
    if (err == MC_TE_FAILED) atomic_fetch_add(&b->failed, 1);
    if (err == MC_TE_TIMEOUT) atomic_fetch_add(&b->timed_out, 1);
    atomic_store(&t->status, err ? err : MC_TE_COMPLETED);
    if (atomic_fetch_sub(&b->pending, 1) == 1) {
        pthread_mutex_lock(&b->lock);
        pthread_cond_broadcast(&b->cond);
        pthread_mutex_unlock(&b->lock);
    }
}

/* Pieces a request is split into: ceil(length / piece_min), at most lanes.
 * Computed without length + piece_min - 1, which wraps for lengths near
 * UINT64_MAX (such a request used to "complete" as zero-length). A request
 * whose remote or local range wraps runs as one piece, so that the range check
 * refuses it whole instead of serving pieces that wrapped to low addresses. */
static uint64_t pieces_for(const mc_te_t *te, const mc_te_request_t *r)
{
    uint64_t len = r->length, k = len / te->piece_min + (len % te->piece_min != 0);
    if (r->target_offset + len < r->target_offset ||
        (uintptr_t)r->source + len < (uintptr_t)r->source)
        k = k ? 1 : 0;
    return k > (uint64_t)te->lanes ? (uint64_t)te->lanes : k;
}

static void run_list(mc_te_t *te, mc__te_piece_t *head);

#define PEER_LISTS 16 /* see submit */

/* Submits n requests: queued for the workers, or (run) moved by the calling
 * thread before it returns. */
static int submit(mc_te_t *te, uint64_t batch_id, const mc_te_request_t *reqs, size_t n, int run)
{
    mc__te_batch_t *b = lookup(te, batch_id);
    if (!b || (!reqs && n)) return MC_TE_ERR_INVALID_ARGUMENT;
    if (n == 0) return 0;
    size_t npieces = 0;
    int32_t net_peer = 0; /* the one peer reached over the network, if any */
    for (size_t i = 0; i < n; i++) {
        const mc_te_request_t *r = &reqs[i];
        if ((r->opcode != MC_TE_READ && r->opcode != MC_TE_WRITE) || (r->length && !r->source) ||
            r->target_id < 0 || (r->target_id > 0 && !mc__te_peer_get(te, r->target_id)))
            return MC_TE_ERR_INVALID_ARGUMENT;
        npieces += (size_t)pieces_for(te, r);
        if (run && r->target_id > 0 && r->target_id != net_peer) {
            /* pieces to two peers over the network go to the workers, which
             * run them side by side: see mc_te_batch_run */
            mc__te_peer_t *p = mc__te_peer_get(te, r->target_id);
            pthread_mutex_lock(&p->lock);
            int shm = p->shm_state == 1;
            pthread_mutex_unlock(&p->lock);
            if (!shm && net_peer) run = 0;
            if (!shm) net_peer = r->target_id;
        }
    }
    pthread_mutex_lock(&b->lock);
    if (b->n + n > b->cap) {
        pthread_mutex_unlock(&b->lock);
        return MC_TE_ERR_TOO_MANY_REQUESTS;
    }
    size_t first = b->n;
    b->n += n;
    chunk_t *c = npieces ? malloc(sizeof *c + npieces * sizeof(mc__te_piece_t)) : NULL;
    if (npieces && !c) {
        b->n -= n;
        pthread_mutex_unlock(&b->lock);
        return MC_TE_ERR_MEMORY;
    }
    if (c) c->next = b->chunks, b->chunks = c;
    atomic_fetch_add(&b->pending, (unsigned)n);
    pthread_mutex_unlock(&b->lock);

    /* Pieces to the same target are listed together, in the order of their
     * first request: the groups (consecutive pieces to one peer, see
     * groups_with) are then as long as the batch allows when its keys are
     * spread over several owners. Targets past the first PEER_LISTS share the
     * last list. */
    struct {
        int32_t target;
        mc__te_piece_t *head, **tail;
    } lists[PEER_LISTS + 1];
    size_t nlists = 0;
    lists[PEER_LISTS].head = NULL;
    lists[PEER_LISTS].tail = &lists[PEER_LISTS].head;
    size_t used = 0;
    int32_t shm_id = 0; /* the last remote target looked up, and whether it was shm */
    int shm = 0;
    for (size_t i = 0; i < n; i++) {
        const mc_te_request_t *r = &reqs[i];
        task_t *t = &b->tasks[first + i];
        atomic_store(&t->err, 0);
        atomic_store(&t->code, 0);
        atomic_store(&t->done_bytes, 0);
        uint64_t k = pieces_for(te, r);
        if (k == 0) { /* zero-length: done without I/O */
            atomic_store(&t->pieces_left, 0);
            task_finish(b, t);
            continue;
        }
        atomic_store(&t->pieces_left, (unsigned)k);
        atomic_store(&t->status, MC_TE_PENDING);
        if (r->target_id > 0 && r->target_id != shm_id) {
            mc__te_peer_t *peer = mc__te_peer_get(te, r->target_id);
            pthread_mutex_lock(&peer->lock);
            shm = peer->shm_state == 1;
            pthread_mutex_unlock(&peer->lock);
            shm_id = r->target_id;
        }
        size_t li = 0;
        while (li < nlists && lists[li].target != r->target_id)
            li++;
        if (li == nlists && nlists < PEER_LISTS) {
            lists[li].target = r->target_id;
            lists[li].head = NULL;
            lists[li].tail = &lists[li].head;
            nlists++;
        } else if (li == nlists) {
            li = PEER_LISTS;
        }
        uint64_t step = r->length / k + (r->length % k != 0), off = 0;
        for (uint64_t j = 0; j < k; j++) {
            mc__te_piece_t *p = &c->pieces[used++];
            uint64_t len = r->length - off < step ? r->length - off : step;
            *p = (mc__te_piece_t){NULL,
                                  b,
                                  (uint32_t)(first + i),
                                  r->opcode,
                                  r->target_id,
                                  (char *)r->source + off,
                                  r->target_offset + off,
                                  len,
                                  r->target_id > 0 && shm,
                                  r->target_id > 0 && !shm && te->tcp_pipeline};
            off += len;
            *lists[li].tail = p;
            lists[li].tail = &p->next;
        }
    }
    mc__te_piece_t *head = NULL, **tail = &head;
    for (size_t li = 0; li <= PEER_LISTS; li++) {
        if (li == nlists) li = PEER_LISTS;
        if (!lists[li].head) continue;
        *tail = lists[li].head;
        tail = lists[li].tail;
    }
    if (head && run) {
        run_list(te, head);
    } else if (head) {
        pthread_mutex_lock(&te->work_lock);
        if (te->work_tail)
            te->work_tail->next = head;
        else
            te->work_head = head;
        te->work_tail = (mc__te_piece_t *)((char *)tail - offsetof(mc__te_piece_t, next));
        pthread_cond_broadcast(&te->work_cond);
        pthread_mutex_unlock(&te->work_lock);
    }
    return 0;
}

int mc_te_batch_submit(mc_te_t *te, uint64_t batch_id, const mc_te_request_t *reqs, size_t n)
{
    return submit(te, batch_id, reqs, n, 0);
}

int mc_te_batch_run(mc_te_t *te, uint64_t batch_id, const mc_te_request_t *reqs, size_t n)
{
    return submit(te, batch_id, reqs, n, 1);
}

/* Moves one piece; returns 0 or MC_TE_ERR_*, *timed_out on a timeout. */
static int run_piece(mc_te_t *te, mc__te_piece_t *pc, int *timed_out)
{
    if (pc->target == MC_TE_LOCAL_SEGMENT) {
        pthread_rwlock_rdlock(&te->bufs_lock);
        int ok = mc__te_local_contains_locked(te, pc->remote, pc->len);
        /* the caller's side, unless registered, is unchecked memory: a bad
         * pointer is an error here as on the kernel-copy transports, never a fault */
        if (ok && !mc__te_local_contains_locked(te, (uint64_t)(uintptr_t)pc->local, pc->len) &&
            mc_mem_check(pc->local, pc->len, pc->opcode != MC_TE_WRITE)) {
            pthread_rwlock_unlock(&te->bufs_lock);
            MC_LOGW(TAG, "local buffer %p (+%llu) is not %s", pc->local,
                    (unsigned long long)pc->len,
                    pc->opcode == MC_TE_WRITE ? "readable" : "writable");
            return MC_TE_ERR_INVALID_ARGUMENT;
        }
        if (ok) {
            void *remote = (void *)(uintptr_t)pc->remote;
            if (pc->opcode == MC_TE_WRITE)
                memmove(remote, pc->local, pc->len);
            else
                memmove(pc->local, remote, pc->len);
        }
        pthread_rwlock_unlock(&te->bufs_lock);
        return ok ? 0 : MC_TE_ERR_ADDRESS_NOT_REGISTERED;
    }
    mc__te_peer_t *p = mc__te_peer_get(te, pc->target);
    int rc = mc__te_peer_check_range(te, p, pc->remote, pc->len);
    pthread_mutex_lock(&p->lock);
    int rdma = p->rdma_state == 1;
    pthread_mutex_unlock(&p->lock);
    if (rc == 0 && rdma) {
        rc = mc__te_rdma.xfer(te, p, pc->opcode, pc->local, pc->remote, pc->len, timed_out);
        /* a refused key (the target re-registered) or a failure (it may have
         * restarted): read its descriptor again, check the range, once more */
        if ((rc == MC__TE_STALE || (rc == MC_TE_ERR_SOCKET && !*timed_out)) &&
            mc__te_peer_refresh(te, p) == 0) {
            int was = rc;
            rc = mc__te_peer_check_range(te, p, pc->remote, pc->len);
            pthread_mutex_lock(&p->lock);
            rdma = p->rdma_state == 1;
            pthread_mutex_unlock(&p->lock);
            if (rc == 0 && rdma)
                rc = mc__te_rdma.xfer(te, p, pc->opcode, pc->local, pc->remote, pc->len,
                                      timed_out);
            else if (rc == 0)
                rc = was == MC__TE_STALE ? MC__TE_STALE : MC_TE_ERR_NOT_IMPLEMENTED;
        }
        if (rc == MC__TE_STALE) rc = MC_TE_ERR_ADDRESS_NOT_REGISTERED;
        if (rc != MC_TE_ERR_NOT_IMPLEMENTED) return rc;
        rc = 0; /* the peer speaks no rdma any more: the paths below */
    }
    int use_tcp = 0;
    for (int attempt = 0; rc == 0 && attempt < 3; attempt++) {
        pthread_mutex_lock(&p->lock);
        int shm = !use_tcp && p->shm_state == 1;
        pthread_mutex_unlock(&p->lock);
        rc = (shm ? &mc__te_shm : &mc__te_tcp)
                 ->xfer(te, p, pc->opcode, pc->local, pc->remote, pc->len, timed_out);
        if (!shm || rc == 0) break;
        if (rc == MC_TE_ERR_NOT_IMPLEMENTED) { /* shm cannot decide: the owner's server will */
            use_tcp = 1;
            rc = 0;
            continue;
        }
        /* registrations changed, or the process went away (it may have
         * restarted): read the descriptor again and re-check the range */
        if (attempt == 0 && mc__te_peer_refresh(te, p) == 0) {
            rc = mc__te_peer_check_range(te, p, pc->remote, pc->len);
            continue;
        }
        if (rc == MC__TE_STALE) { /* the published descriptor lags: ask the owner's server */
            use_tcp = 1;
            rc = 0;
            continue;
        }
        break;
    }
    if (rc == MC__TE_STALE) rc = MC_TE_ERR_ADDRESS_NOT_REGISTERED;
    return rc;
}

/* Records the result of a piece and finishes its task when it was the last.
 * The piece (and its batch, once finished) must not be touched afterwards. */
static void piece_done(mc__te_piece_t *pc, int rc, int timed_out)
{
    mc__te_batch_t *b = pc->batch;
    task_t *t = &b->tasks[pc->task];
    if (rc) {
        int expect = 0;
        atomic_compare_exchange_strong(&t->err, &expect, timed_out ? MC_TE_TIMEOUT : MC_TE_FAILED);
        expect = 0;
        atomic_compare_exchange_strong(&t->code, &expect, rc);
    } else {
        atomic_fetch_add(&t->done_bytes, pc->len);
    }
    if (atomic_fetch_sub(&t->pieces_left, 1) == 1) task_finish(b, t);
}

/* Small pieces in a row to the same remote peer and in the same direction run
 * as one group. On shm that is one liveness and generation check and one
 * process_vm_readv/writev for all of them (mc__te_shm_xfer_many) instead of
 * three syscalls each; on tcp one pipeline on one connection
 * (mc__te_tcp_xfer_many): one round trip for the group instead of one per
 * piece. Large pieces stay single, so that the workers and lanes share them. */
#define GROUP_PIECE_MAX (64 * 1024)
#define GROUP_BYTES_MAX (512 * 1024)
#define GROUP_MAX 256

/* Whether b joins the group that a starts (bytes so far). */
static int groups_with(const mc__te_piece_t *a, const mc__te_piece_t *b, uint64_t bytes)
{
    return (a->shm || a->tcp) && a->len <= GROUP_PIECE_MAX && b->shm == a->shm &&
           b->tcp == a->tcp && b->target == a->target && b->opcode == a->opcode &&
           b->len <= GROUP_PIECE_MAX && bytes + b->len <= GROUP_BYTES_MAX;
}

/* Runs a group (see above) and finishes its pieces. */
static void run_group(mc_te_t *te, mc__te_piece_t **pcs, size_t n)
{
    size_t moved = 0;
    int rest_rc = 0, rest_timed_out = 0;
    if (n > 1) {
        mc__te_peer_t *p = mc__te_peer_get(te, pcs[0]->target);
        pthread_mutex_lock(&p->lock);
        int shm = p->shm_state == 1, rdma = p->rdma_state == 1;
        pthread_mutex_unlock(&p->lock);
        if (rdma && pcs[0]->tcp)
            moved = mc__te_rdma_xfer_many(te, p, pcs[0]->opcode, pcs, n, &rest_rc,
                                          &rest_timed_out);
        else if (shm && pcs[0]->shm)
            moved = mc__te_shm_xfer_many(te, p, pcs[0]->opcode, pcs, n);
        else if (!shm && pcs[0]->tcp)
            moved = mc__te_tcp_xfer_many(te, p, pcs[0]->opcode, pcs, n, &rest_rc,
                                         &rest_timed_out);
    }
    for (size_t i = 0; i < n; i++) {
        int timed_out = rest_timed_out;
        int rc = i < moved ? 0 : rest_rc ? rest_rc : run_piece(te, pcs[i], &timed_out);
        piece_done(pcs[i], rc, timed_out);
    }
}

/* Runs a list of pieces on the calling thread, in groups. */
static void run_list(mc_te_t *te, mc__te_piece_t *head)
{
    mc__te_piece_t *grp[GROUP_MAX];
    while (head) {
        size_t n = 0;
        uint64_t bytes = 0;
        do {
            grp[n++] = head;
            bytes += head->len;
            head = head->next; /* read before the piece is finished */
        } while (head && n < GROUP_MAX && groups_with(grp[0], head, bytes));
        run_group(te, grp, n);
    }
}

static void *worker_main(void *arg)
{
    mc_te_t *te = arg;
    mc__te_piece_t *grp[GROUP_MAX];
    for (;;) {
        pthread_mutex_lock(&te->work_lock);
        while (!te->work_head && !atomic_load(&te->stopping))
            pthread_cond_wait(&te->work_cond, &te->work_lock);
        if (!te->work_head) { /* stopping and drained */
            pthread_mutex_unlock(&te->work_lock);
            return NULL;
        }
        size_t n = 0;
        uint64_t bytes = 0;
        do {
            mc__te_piece_t *pc = te->work_head;
            grp[n++] = pc;
            bytes += pc->len;
            te->work_head = pc->next;
        } while (te->work_head && n < GROUP_MAX && groups_with(grp[0], te->work_head, bytes));
        if (!te->work_head) te->work_tail = NULL;
        pthread_mutex_unlock(&te->work_lock);

        if (atomic_load(&te->stopping)) {
            for (size_t i = 0; i < n; i++)
                piece_done(grp[i], MC_TE_ERR_CONTEXT, 0);
            continue;
        }
        run_group(te, grp, n);
    }
}

int mc__te_workers_start(mc_te_t *te)
{
    te->workers = calloc((size_t)te->nworkers, sizeof *te->workers);
    if (!te->workers) return MC_TE_ERR_MEMORY;
    for (int i = 0; i < te->nworkers; i++)
        if (pthread_create(&te->workers[i], NULL, worker_main, te) != 0) {
            te->nworkers = i;
            return MC_TE_ERR_CONTEXT;
        }
    return 0;
}

void mc__te_workers_stop(mc_te_t *te)
{
    pthread_mutex_lock(&te->work_lock);
    atomic_store(&te->stopping, 1);
    pthread_cond_broadcast(&te->work_cond);
    pthread_mutex_unlock(&te->work_lock);
    for (int i = 0; i < te->nworkers; i++)
        pthread_join(te->workers[i], NULL);
    free(te->workers);
    te->workers = NULL;
}

int mc_te_task_status(mc_te_t *te, uint64_t batch_id, size_t task, mc_te_status_t *status,
                      uint64_t *transferred)
{
    pthread_mutex_lock(&te->batch_lock);
    mc__te_batch_t *b = lookup_locked(te, batch_id);
    int rc = MC_TE_ERR_INVALID_ARGUMENT;
    if (b && task < b->cap) {
        int submitted = task < b->n; /* b->n only grows; read under batch_lock is enough */
        *status = submitted ? (mc_te_status_t)atomic_load(&b->tasks[task].status) : MC_TE_WAITING;
        if (transferred) *transferred = submitted ? atomic_load(&b->tasks[task].done_bytes) : 0;
        rc = 0;
    }
    pthread_mutex_unlock(&te->batch_lock);
    return rc;
}

static mc_te_status_t summarize(mc__te_batch_t *b, size_t n)
{
    if (n == 0) return MC_TE_WAITING;
    if (atomic_load(&b->pending)) return MC_TE_PENDING;
    if (atomic_load(&b->failed)) return MC_TE_FAILED;
    if (atomic_load(&b->timed_out)) return MC_TE_TIMEOUT;
    return MC_TE_COMPLETED;
}

int mc_te_batch_status(mc_te_t *te, uint64_t batch_id, mc_te_status_t *status)
{
    pthread_mutex_lock(&te->batch_lock);
    mc__te_batch_t *b = lookup_locked(te, batch_id);
    if (b) {
        pthread_mutex_lock(&b->lock);
        *status = summarize(b, b->n);
        pthread_mutex_unlock(&b->lock);
    }
    pthread_mutex_unlock(&te->batch_lock);
    return b ? 0 : MC_TE_ERR_INVALID_ARGUMENT;
}

int mc_te_batch_wait(mc_te_t *te, uint64_t batch_id, int timeout_ms, mc_te_status_t *status)
{
    mc__te_batch_t *b = lookup(te, batch_id);
    if (!b) return MC_TE_ERR_INVALID_ARGUMENT;
    struct timespec deadline = {0, 0}; /* unused without a timeout */
    if (timeout_ms >= 0) deadline = mc_deadline_ts(CLOCK_REALTIME, (uint64_t)timeout_ms);
    pthread_mutex_lock(&b->lock);
    while (atomic_load(&b->pending)) {
        if (timeout_ms < 0)
            pthread_cond_wait(&b->cond, &b->lock);
        else if (pthread_cond_timedwait(&b->cond, &b->lock, &deadline) == ETIMEDOUT)
            break;
    }
    *status = summarize(b, b->n);
    pthread_mutex_unlock(&b->lock);
    return 0;
}

int mc_te_transfer_sync(mc_te_t *te, const mc_te_request_t *reqs, size_t n)
{
    if (n == 0) return 0;
    uint64_t id;
    int rc = mc_te_batch_alloc(te, n, &id);
    if (rc) return rc;
    uint64_t bytes = 0; /* stops counting past the limit: lengths may be huge */
    for (size_t i = 0; i < n && bytes <= MC_TE_RUN_INLINE_BYTES; i++)
        bytes +=
            reqs[i].length < MC_TE_RUN_INLINE_BYTES ? reqs[i].length : MC_TE_RUN_INLINE_BYTES + 1;
    rc = bytes <= MC_TE_RUN_INLINE_BYTES ? mc_te_batch_run(te, id, reqs, n)
                                         : mc_te_batch_submit(te, id, reqs, n);
    if (rc == 0) {
        mc_te_status_t st;
        mc_te_batch_wait(te, id, -1, &st);
        mc__te_batch_t *b = lookup(te, id);
        for (size_t i = 0; st != MC_TE_COMPLETED && i < n && !rc; i++)
            rc = atomic_load(&b->tasks[i].code);
        if (st != MC_TE_COMPLETED && !rc) rc = MC_TE_ERR_SOCKET;
    }
    mc_te_batch_free(te, id);
    return rc;
}
