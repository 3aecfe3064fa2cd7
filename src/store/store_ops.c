/* store_ops.c: the data paths of the store. Every put and get, single or
 * batched, runs through one of two cores working on an array of operations
 * (key + scatter/gather list):
 *   put:  PutStart (one master round trip for the whole batch) -> one TE
 *         WRITE per replica and piece, all in one TE batch (memcpy for
 *         replicas in our own segment) -> PutEnd for keys whose transfers all
 *         succeeded, PutRevoke for the others (one round trip each).
 *   get:  GetReplicaList (one round trip; the lease starts at the request) ->
 *         one replica per key, our own segment first -> TE READ of all keys in
 *         one batch -> LEASE_EXPIRED for every key when the lease ran out.
 *         A key whose lease from an earlier get still runs skips the master
 *         (store_lcache.h); should its read fail or outlast the lease, it is
 *         asked again through the master.
 * Requests for small operations live on the stack; batches allocate their
 * arrays once per call. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base_copy.h"
#include "base_log.h"
#include "base_time.h"
#include "base_mem.h"
#include "store_gbuf.h"
#include "store_int.h"
#include "store_lcache.h"
#include "store_ssd.h"

#define TAG "store"
#define ST_STACK_OPS 4
#define ST_STACK_REQS 32

typedef struct {
    const char *key;
    const mc_store_iov_t *iov; /* pieces, in object order */
    size_t niov;
    uint64_t total; /* put: object size; get: capacity, then object size */
    int rc;         /* per-key result so far */
    int started;    /* put: PutStart/UpsertStart succeeded, End or Revoke owed */
    int pick;       /* get: replica chosen */
    mc_replica_t *reps;
    size_t nreps;
    int cached;           /* get: the replica came from the lease cache (store_lcache.h) */
    uint64_t deadline_ms; /* get: the read lease's end, this client's clock */
    const mc_store_iov_t *iov0; /* as the caller gave them (a retry starts again from these) */
    size_t niov0;
    uint64_t total0;
} st_op_t;

static void st_ops_free_replicas(st_op_t *ops, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(ops[i].reps);
        ops[i].reps = NULL;
        ops[i].nreps = 0;
    }
}

static int st_cfg(const mc_store_t *s, const mc_store_config_t *c, mc_replicate_config_t *o)
{
    mc_store_config_t d;
    if (!c) {
        mc_store_config_init(&d);
        c = &d;
    }
    if (c->replica_num == 0 || c->replica_num > UINT32_MAX ||
        (c->preferred_segments_count && !c->preferred_segments) ||
        c->soft_pin_action < MC_STORE_SOFT_PIN_PRESERVE ||
        c->soft_pin_action > MC_STORE_SOFT_PIN_DISABLE)
        return MC_ERR_INVALID_PARAMS;
    memset(o, 0, sizeof *o);
    o->replica_num = (uint32_t)c->replica_num;
    o->soft_pin_action = (uint8_t)c->soft_pin_action;
    if (c->with_soft_pin) o->soft_pin_action = MC_SOFT_PIN_ENABLE;
    /* a TTL goes to the master with any action: it refuses one without ENABLE
     * (INVALID_PARAMS), as upstream's does */
    if (c->soft_pin_ttl_ms) {
        o->has_soft_pin_ttl = 1;
        o->soft_pin_ttl_ms = c->soft_pin_ttl_ms;
    }
    o->with_hard_pin = c->with_hard_pin != 0;
    o->npreferred = c->preferred_segments_count;
    o->preferred_segments = c->preferred_segments;
    o->prefer_alloc_in_same_node = c->prefer_alloc_in_same_node != 0;
    o->host_id = s->host_id[0] ? s->host_id : NULL;
    return 0;
}

/* 1 when the replica lives in our own memory and is to be copied with memcpy:
 * our segment, or our SSD tier's staging buffer (a disk replica of our own
 * disk, staged for this get). [addr, addr+size) must lie inside one of them:
 * -1 otherwise, a replica we must not touch. With MC_STORE_MEMCPY=0 our own
 * replicas go through the TE too. */
static int st_replica_local(const mc_store_t *s, const mc_replica_t *r)
{
    if (!s->seg || !s->memcpy_local || strcmp(r->endpoint, s->te_name) != 0) return 0;
    uint64_t base = (uint64_t)(uintptr_t)s->seg;
    if (r->addr >= base && r->size <= s->seg_size && r->addr - base <= s->seg_size - r->size)
        return 1;
    return mc__ssd_staging_has(s, r->addr, r->size) ? 1 : -1;
}

/* Copies between the op's pieces and local memory at `mem` (object bytes
 * [0, op->total)). The caller's pieces outside memory registered with te are
 * checked first (mc_mem_check: readable for a put, writable for a get), so
 * that a bad pointer is an error, as it is on the kernel-copy paths (shm,
 * tcp), never a fault here. With stream (a large batch), pieces of
 * MC_COPY_STREAM_PIECE bytes and more bypass the caches (base_copy.h).
 * Returns 0 or INVALID_PARAMS (nothing copied). */
static int st_local_copy(mc_te_t *te, const st_op_t *op, char *mem, int opcode, int stream)
{
    uint64_t off = 0;
    for (size_t j = 0; j < op->niov && off < op->total; j++) {
        uint64_t len = op->iov[j].len;
        if (len > op->total - off) len = op->total - off;
        if (!mc_te_is_registered(te, op->iov[j].ptr, len) &&
            mc_mem_check(op->iov[j].ptr, len, opcode != MC_TE_WRITE)) {
            MC_LOGW(TAG, "key '%s': caller buffer %p (+%llu) is not %s", op->key, op->iov[j].ptr,
                    (unsigned long long)len, opcode == MC_TE_WRITE ? "readable" : "writable");
            return MC_ERR_INVALID_PARAMS;
        }
        off += len;
    }
    off = 0;
    for (size_t j = 0; j < op->niov && off < op->total; j++) {
        uint64_t len = op->iov[j].len;
        if (len > op->total - off) len = op->total - off;
        void *to = opcode == MC_TE_WRITE ? (void *)(mem + off) : op->iov[j].ptr;
        const void *from = opcode == MC_TE_WRITE ? (const void *)op->iov[j].ptr : mem + off;
        if (stream && len >= MC_COPY_STREAM_PIECE)
            mc_copy_stream(to, from, len);
        else
            memcpy(to, from, len);
        off += len;
    }
    return 0;
}

/* Moves the bytes of every op with rc == 0 (and started, for writes): writes
 * go to all its replicas, reads come from reps[pick]. Failed ops get
 * TRANSFER_FAIL (or INVALID_REPLICA). */
static void st_transfer(mc_store_t *s, st_op_t *ops, size_t n, int opcode)
{
    size_t cap = 0;
    uint64_t bytes = 0, all = 0;
    for (size_t i = 0; i < n; i++) {
        if (ops[i].rc || (opcode == MC_TE_WRITE && !ops[i].started)) continue;
        cap += ops[i].niov * (opcode == MC_TE_WRITE ? ops[i].nreps : 1);
        all += ops[i].total;
    }
    int stream = all >= MC_COPY_STREAM_BATCH;
    mc_te_request_t sreq[ST_STACK_REQS];
    size_t sowner[ST_STACK_REQS];
    mc_te_request_t *reqs = sreq;
    size_t *owner = sowner;
    if (cap > ST_STACK_REQS) {
        reqs = malloc(cap * sizeof *reqs);
        owner = malloc(cap * sizeof *owner);
        if (!reqs || !owner) {
            free(reqs);
            free(owner);
            for (size_t i = 0; i < n; i++)
                if (!ops[i].rc) ops[i].rc = MC_ERR_INTERNAL;
            return;
        }
    }
    size_t nreq = 0;
    for (size_t i = 0; i < n; i++) {
        st_op_t *op = &ops[i];
        if (op->rc || (opcode == MC_TE_WRITE && !op->started)) continue;
        size_t first = opcode == MC_TE_WRITE ? 0 : (size_t)op->pick;
        size_t last = opcode == MC_TE_WRITE ? op->nreps : first + 1;
        size_t mark = nreq;
        for (size_t r = first; r < last && !op->rc; r++) {
            const mc_replica_t *rep = &op->reps[r];
            if (rep->size < op->total) {
                op->rc = MC_ERR_INVALID_REPLICA;
                break;
            }
            int local = st_replica_local(s, rep);
            if (local < 0) {
                MC_LOGE(TAG, "key '%s': replica outside our segment", op->key);
                op->rc = MC_ERR_INVALID_REPLICA;
                break;
            }
            if (local) {
                int lrc = st_local_copy(s->te, op, (char *)(uintptr_t)rep->addr, opcode, stream);
                if (lrc) {
                    op->rc = lrc;
                    break;
                }
                int k = opcode == MC_TE_WRITE ? MC__STORE_OP_PUT : MC__STORE_OP_GET;
                atomic_fetch_add_explicit(&s->metrics.local_bytes[k], op->total,
                                          memory_order_relaxed);
                if (opcode == MC_TE_READ)
                    atomic_fetch_add_explicit(&s->metrics.local_hits, 1, memory_order_relaxed);
                continue;
            }
            int32_t h;
            int trc = mc_te_open_segment(s->te, rep->endpoint, &h);
            if (trc) {
                MC_LOGW(TAG, "key '%s': cannot open segment '%s': %s", op->key, rep->endpoint,
                        mc_te_strerror(trc));
                op->rc = MC_ERR_TRANSFER_FAIL;
                break;
            }
            uint64_t off = 0;
            for (size_t j = 0; j < op->niov && off < op->total; j++) {
                uint64_t len = op->iov[j].len;
                if (len > op->total - off) len = op->total - off;
                if (len == 0) continue;
                reqs[nreq] = (mc_te_request_t){.opcode = opcode,
                                               .source = op->iov[j].ptr,
                                               .target_id = h,
                                               .target_offset = rep->addr + off,
                                               .length = len};
                owner[nreq++] = i;
                bytes += len;
                off += len;
            }
        }
        if (op->rc) nreq = mark; /* drop what this op queued */
    }
    if (nreq == 0) goto done;
    uint64_t batch;
    int trc = mc_te_batch_alloc(s->te, nreq, &batch);
    if (trc == 0) {
        /* small batches run on this thread: the handoff to the workers would
         * cost more than the copies */
        trc = bytes <= MC_TE_RUN_INLINE_BYTES ? mc_te_batch_run(s->te, batch, reqs, nreq)
                                              : mc_te_batch_submit(s->te, batch, reqs, nreq);
        if (trc == 0) {
            mc_te_status_t st;
            int timeout = (int)(60000 + bytes / 1000000);
            mc_te_batch_wait(s->te, batch, timeout, &st);
            for (size_t k = 0; k < nreq; k++) {
                mc_te_status_t ts = MC_TE_FAILED;
                if (mc_te_task_status(s->te, batch, k, &ts, NULL) != 0 || ts != MC_TE_COMPLETED)
                    if (!ops[owner[k]].rc) ops[owner[k]].rc = MC_ERR_TRANSFER_FAIL;
            }
        }
        if (mc_te_batch_free(s->te, batch) != 0)
            MC_LOGW(TAG, "TE batch still busy after its deadline; left to the engine");
    }
    if (trc == 0)
        atomic_fetch_add_explicit(
            &s->metrics.te_bytes[opcode == MC_TE_WRITE ? MC__STORE_OP_PUT : MC__STORE_OP_GET],
            bytes, memory_order_relaxed);
    if (trc) {
        MC_LOGW(TAG, "TE batch of %zu requests failed: %s", nreq, mc_te_strerror(trc));
        for (size_t k = 0; k < nreq; k++)
            if (!ops[owner[k]].rc) ops[owner[k]].rc = MC_ERR_TRANSFER_FAIL;
    }
done:
    if (reqs != sreq) {
        free(reqs);
        free(owner);
    }
}

int mc__store_write_out(mc_store_t *s, const char *key, uint64_t src_addr, uint64_t size,
                        const char *dst_endpoint, uint64_t dst_addr)
{
    uint64_t base = (uint64_t)(uintptr_t)s->seg;
    if (!s->seg || size == 0 || src_addr < base || size > s->seg_size ||
        src_addr - base > s->seg_size - size)
        return MC_ERR_INVALID_PARAMS; /* not inside our segment: never read it */
    mc_store_iov_t iov = {(void *)(uintptr_t)src_addr, size};
    mc_replica_t rep = {.addr = dst_addr, .size = size, .status = MC_REPLICA_PROCESSING};
    snprintf(rep.endpoint, sizeof rep.endpoint, "%s", dst_endpoint);
    st_op_t op = {
        .key = key, .iov = &iov, .niov = 1, .total = size, .started = 1, .reps = &rep, .nreps = 1};
    st_transfer(s, &op, 1, MC_TE_WRITE);
    return op.rc;
}

/* Returns the first per-key error, or 0. */
static int st_first_error(const st_op_t *ops, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ops[i].rc) return ops[i].rc;
    return 0;
}

/* The put core (see the top of the file). Per-key results in ops[i].rc. */
static int st_put_core_run(mc_store_t *s, st_op_t *ops, size_t n, const mc_store_config_t *cfg,
                           int upsert)
{
    mc_replicate_config_t rcfg;
    int rc = st_cfg(s, cfg, &rcfg);
    if (rc) {
        for (size_t i = 0; i < n; i++)
            ops[i].rc = rc;
        return rc;
    }
    const char *skeys[ST_STACK_OPS];
    uint64_t ssizes[ST_STACK_OPS];
    int srcs[ST_STACK_OPS];
    const char **keys = skeys;
    uint64_t *sizes = ssizes;
    int *rcs = srcs;
    mc_replica_t **reps = NULL;
    size_t *nreps = NULL;
    if (n > ST_STACK_OPS) {
        keys = malloc(n * sizeof *keys);
        sizes = malloc(n * sizeof *sizes);
        rcs = malloc(n * sizeof *rcs);
        if (!keys || !sizes || !rcs) {
            rc = MC_ERR_INTERNAL;
            goto out;
        }
    }

    /* 1. start; an upsert may replace a replica this store holds a lease on
     * (the master parks the old range): later gets here must see the new bytes */
    if (upsert)
        for (size_t i = 0; i < n; i++)
            if (!ops[i].rc) mc__lcache_drop(s->lcache, ops[i].key);
    if (n == 1) {
        for (size_t i = 0; i < n; i++) {
            st_op_t *op = &ops[i];
            if (op->rc) continue;
            op->rc = upsert ? mc_master_client_upsert_start(s->mc, s->client_id, op->key, op->total,
                                                            &rcfg, &op->reps, &op->nreps)
                            : mc_master_client_put_start(s->mc, s->client_id, op->key, op->total,
                                                         &rcfg, &op->reps, &op->nreps);
        }
    } else {
        size_t m = 0;
        reps = calloc(n, sizeof *reps);
        nreps = calloc(n, sizeof *nreps);
        if (!reps || !nreps) {
            rc = MC_ERR_INTERNAL;
            goto out;
        }
        for (size_t i = 0; i < n; i++)
            if (!ops[i].rc) keys[m] = ops[i].key, sizes[m++] = ops[i].total;
        rc = !m       ? 0
             : upsert ? mc_master_client_batch_upsert_start(s->mc, s->client_id, keys, sizes, m,
                                                            &rcfg, rcs, reps, nreps)
                      : mc_master_client_batch_put_start(s->mc, s->client_id, keys, sizes, m, &rcfg,
                                                         rcs, reps, nreps);
        if (rc) {
            for (size_t i = 0; i < m; i++)
                free(reps[i]); /* whatever a failed call left */
            goto out;
        }
        m = 0;
        for (size_t i = 0; i < n; i++) {
            if (ops[i].rc) continue;
            ops[i].rc = rcs[m];
            ops[i].reps = reps[m];
            ops[i].nreps = nreps[m++];
        }
    }
    for (size_t i = 0; i < n; i++) {
        st_op_t *op = &ops[i];
        if (op->rc == MC_ERR_OBJECT_ALREADY_EXISTS && !upsert) {
            op->rc = 0; /* upstream: an existing key is success, no overwrite */
        } else if (op->rc == 0) {
            op->started = 1;
            if (op->nreps == 0) op->rc = MC_ERR_NO_AVAILABLE_HANDLE;
        }
    }

    /* 2. transfer */
    st_transfer(s, ops, n, MC_TE_WRITE);

    /* 3. end the good ones, revoke the others */
    for (int pass = 0; pass < 2; pass++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (ops[i].started == 1 && ((ops[i].rc == 0) == (pass == 0))) keys[m++] = ops[i].key;
        if (m == 0) continue;
        int crc;
        if (m == 1) {
            crc = pass == 0 ? mc_master_client_put_end(s->mc, s->client_id, keys[0])
                            : mc_master_client_put_revoke(s->mc, s->client_id, keys[0]);
            rcs[0] = crc;
        } else {
            crc = pass == 0 ? mc_master_client_batch_put_end(s->mc, s->client_id, keys, m, rcs)
                            : mc_master_client_batch_put_revoke(s->mc, s->client_id, keys, m, rcs);
            if (crc)
                for (size_t k = 0; k < m; k++)
                    rcs[k] = crc;
        }
        m = 0;
        for (size_t i = 0; i < n; i++) {
            if (ops[i].started != 1 || ((ops[i].rc == 0) != (pass == 0))) continue;
            if (pass == 0 && rcs[m])
                ops[i].rc = rcs[m];
            else if (pass == 1 && rcs[m])
                MC_LOGW(TAG, "revoking put of '%s': error %d", ops[i].key, rcs[m]);
            m++;
        }
        if (pass == 0) /* ends that failed must not be revoked again */
            for (size_t i = 0; i < n; i++)
                if (ops[i].started == 1 && ops[i].rc) ops[i].started = 2;
    }
    rc = 0;
out:
    if (rc)
        for (size_t i = 0; i < n; i++)
            if (!ops[i].rc) ops[i].rc = rc;
    st_ops_free_replicas(ops, n);
    free(reps);
    free(nreps);
    if (keys != skeys) free(keys);
    if (sizes != ssizes) free(sizes);
    if (rcs != srcs) free(rcs);
    return rc ? rc : st_first_error(ops, n);
}

/* Stagings of one get: connections to the owners' staging servers, each
 * with its token, released once the TE reads are done. */
typedef struct {
    int *fds;
    uint64_t *tokens;
    size_t n, cap;
} st_stage_t;

static void st_stage_release(st_stage_t *g)
{
    for (size_t i = 0; i < g->n; i++)
        mc__ssd_release(g->fds[i], g->tokens[i]);
    free(g->fds);
    free(g->tokens);
}

/* Ops whose chosen replica is a LOCAL_DISK one: asks each owner (one request
 * per owner, up to MC_SSD_SRV_KEYS_MAX keys) to stage them, and turns the
 * replica into the staged range of the owner's TE segment, which st_transfer
 * then reads like any memory replica. */
static void st_stage_disk(mc_store_t *s, st_op_t *ops, size_t n, st_stage_t *g)
{
    uint8_t *done = NULL;
    for (size_t i = 0; i < n; i++) {
        st_op_t *op = &ops[i];
        if (op->rc || !op->reps || op->reps[op->pick].kind != MC_REPLICA_LOCAL_DISK) continue;
        if (done && done[i]) continue;
        if (!done && !(done = calloc(n, 1))) {
            op->rc = MC_ERR_INTERNAL;
            continue;
        }
        const char *ep = op->reps[op->pick].endpoint;
        size_t idx[MC_SSD_SRV_KEYS_MAX], m = 0;
        uint64_t bytes = 0;
        for (size_t j = i; j < n && m < MC_SSD_SRV_KEYS_MAX; j++) {
            st_op_t *o = &ops[j];
            if (o->rc || done[j] || !o->reps || o->reps[o->pick].kind != MC_REPLICA_LOCAL_DISK ||
                strcmp(o->reps[o->pick].endpoint, ep) != 0)
                continue;
            done[j] = 1;
            idx[m++] = j;
            bytes += o->total;
        }
        const char **keys = malloc(m * sizeof *keys);
        mc_ssd_staged_t *v = malloc(m * sizeof *v);
        if (g->n == g->cap) {
            size_t nc = g->cap ? g->cap * 2 : 4;
            int *nf = realloc(g->fds, nc * sizeof *nf);
            if (nf) g->fds = nf;
            uint64_t *nt = realloc(g->tokens, nc * sizeof *nt);
            if (nt) g->tokens = nt;
            if (nf && nt) g->cap = nc;
        }
        int rc = keys && v && g->n < g->cap ? 0 : MC_ERR_INTERNAL;
        char te_name[256];
        int fd = -1;
        uint64_t token = 0;
        for (size_t k = 0; k < m && keys; k++)
            keys[k] = ops[idx[k]].key;
        if (rc == 0) rc = mc__ssd_stage(ep, keys, m, bytes, te_name, &fd, &token, v);
        if (rc == 0) {
            g->fds[g->n] = fd;
            g->tokens[g->n++] = token;
        }
        for (size_t k = 0; k < m; k++) {
            st_op_t *o = &ops[idx[k]];
            mc_replica_t *r = &o->reps[o->pick];
            if (rc || v[k].rc) {
                o->rc = rc                                    ? rc
                        : v[k].rc == MC_ERR_CHECKSUM_MISMATCH ? MC_ERR_OBJECT_NOT_FOUND
                                                              : v[k].rc;
                continue;
            }
            if (v[k].size != r->size) { /* not the object the master described */
                o->rc = MC_ERR_INVALID_REPLICA;
                continue;
            }
            r->addr = v[k].addr;
            snprintf(r->endpoint, sizeof r->endpoint, "%s", te_name);
            r->kind = MC_REPLICA_MEMORY;
            __atomic_fetch_add(&s->disk_reads, 1, __ATOMIC_RELAXED);
        }
        free(keys);
        free(v);
    }
    free(done);
}

/* Takes from the lease cache the replica of every op it holds; returns how
 * many ops are left for the master. */
static size_t st_from_cache(mc_store_t *s, st_op_t *ops, size_t n, uint64_t now)
{
    size_t left = 0;
    for (size_t i = 0; i < n; i++) {
        st_op_t *op = &ops[i];
        if (op->rc) continue;
        mc_replica_t rep;
        if (mc__lcache_get(s->lcache, op->key, now, &rep, &op->deadline_ms) &&
            (op->reps = malloc(sizeof rep))) {
            op->reps[0] = rep;
            op->nreps = 1;
            op->cached = 1;
            atomic_fetch_add_explicit(&s->metrics.lease_hits, 1, memory_order_relaxed);
        } else {
            left++;
        }
    }
    return left;
}

/* The get core. Per-key results in ops[i].rc; object sizes in ops[i].total.
 * alloc (allocating gets, else NULL): each op gets a malloc'd buffer of its
 * replica's size in alloc[i], which ops[i].iov then points to; the caller
 * frees it (mc__gbuf_free with the same arena). arena: where those buffers
 * come from first (store_gbuf.h; NULL: malloc only). use_cache: take replicas
 * from the lease cache and fill it. */
static int st_get_core_run(mc_store_t *s, st_op_t *ops, size_t n, mc_store_iov_t *alloc,
                           mc__gbuf_t *arena, int use_cache)
{
    int rc = 0;
    uint64_t ttl = 0;
    uint64_t t0 = mc_now_ms();
    int srcs[ST_STACK_OPS];
    const char *skeys[ST_STACK_OPS];
    int *rcs = srcs;
    const char **keys = skeys;
    mc_replica_t **reps = NULL;
    size_t *nreps = NULL;
    /* the cache only while no other leader can exist (store_lcache.h) */
    size_t ask = use_cache && s->lcache &&
                         t0 < mc_master_client_served_ms(s->mc) + MC_LCACHE_SERVED_MS
                     ? st_from_cache(s, ops, n, t0)
                     : n;
    if (!ask) {
        /* every key from the cache */
    } else if (n == 1) {
        if (!ops[0].rc)
            ops[0].rc =
                mc_master_client_get_replicas(s->mc, ops[0].key, &ops[0].reps, &ops[0].nreps, &ttl);
    } else {
        if (n > ST_STACK_OPS) {
            rcs = malloc(n * sizeof *rcs);
            keys = malloc(n * sizeof *keys);
        }
        reps = calloc(n, sizeof *reps);
        nreps = calloc(n, sizeof *nreps);
        if (!rcs || !keys || !reps || !nreps) {
            rc = MC_ERR_INTERNAL;
            goto out;
        }
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (!ops[i].rc && !ops[i].cached) keys[m++] = ops[i].key;
        rc = m ? mc_master_client_batch_get_replicas(s->mc, keys, m, rcs, reps, nreps, &ttl) : 0;
        if (rc) {
            for (size_t i = 0; i < m; i++)
                free(reps[i]); /* whatever a failed call left */
            goto out;
        }
        m = 0;
        for (size_t i = 0; i < n; i++) {
            if (ops[i].rc || ops[i].cached) continue;
            ops[i].rc = rcs[m];
            ops[i].reps = reps[m];
            ops[i].nreps = nreps[m++];
        }
    }
    for (size_t i = 0; i < n; i++) {
        st_op_t *op = &ops[i];
        if (op->rc) continue;
        int pick = -1;
        for (size_t r = 0; r < op->nreps; r++) {
            if (op->reps[r].status != MC_REPLICA_COMPLETE) continue;
            /* a disk replica only when no memory replica is complete */
            if (pick >= 0 && op->reps[pick].kind == MC_REPLICA_LOCAL_DISK &&
                op->reps[r].kind != MC_REPLICA_LOCAL_DISK)
                pick = -1;
            if (pick < 0) pick = (int)r;
            if (st_replica_local(s, &op->reps[r]) == 1) {
                pick = (int)r;
                break;
            }
        }
        if (pick < 0) {
            op->rc = op->nreps ? MC_ERR_REPLICA_IS_NOT_READY : MC_ERR_OBJECT_NOT_FOUND;
            continue;
        }
        op->pick = pick;
        if (!op->cached) {
            op->deadline_ms = t0 + ttl;
            if (use_cache && ttl && op->reps[pick].kind == MC_REPLICA_MEMORY)
                mc__lcache_put(s->lcache, op->key, &op->reps[pick], op->deadline_ms, ttl);
        }
        if (alloc) {
            uint64_t size = op->reps[pick].size;
            void *buf = size <= s->lbuf_size ? mc__gbuf_alloc(arena, size) : NULL;
            if (!buf && size <= s->lbuf_size) buf = malloc(size ? size : 1);
            if (!buf) {
                op->rc = size <= s->lbuf_size ? MC_ERR_INTERNAL : MC_ERR_INVALID_PARAMS;
                continue;
            }
            alloc[i] = (mc_store_iov_t){buf, size};
            op->iov = &alloc[i];
            op->niov = 1;
            op->total = size;
        }
        if (op->reps[pick].size > op->total) {
            op->rc = MC_ERR_BUFFER_OVERFLOW;
            continue;
        }
        op->total = op->reps[pick].size;
    }
    st_stage_t stg = {0};
    st_stage_disk(s, ops, n, &stg);
    st_transfer(s, ops, n, MC_TE_READ);
    st_stage_release(&stg);
    uint64_t now = mc_now_ms();
    for (size_t i = 0; i < n; i++)
        if (!ops[i].rc && now > ops[i].deadline_ms) ops[i].rc = MC_ERR_LEASE_EXPIRED;
out:
    if (rc)
        for (size_t i = 0; i < n; i++)
            if (!ops[i].rc) ops[i].rc = rc;
    st_ops_free_replicas(ops, n);
    free(reps);
    free(nreps);
    if (rcs != srcs) free(rcs);
    if (keys != skeys) free(keys);
    return rc;
}

/* Counts one call of the put or get core in s->metrics (store_metrics.h). */
static void st_note(mc_store_t *s, int op, const st_op_t *ops, size_t n, uint64_t t0)
{
    uint64_t ok = 0, bytes = 0, err = 0, miss = 0;
    for (size_t i = 0; i < n; i++) {
        if (ops[i].rc == 0) {
            ok++;
            bytes += ops[i].total;
        } else if (op == MC__STORE_OP_GET && ops[i].rc == MC_ERR_OBJECT_NOT_FOUND) {
            miss++;
        } else {
            err++;
        }
    }
    mc__store_metrics_call(&s->metrics, op, n, ok, bytes, err, miss, mc_now_ns() - t0);
}

static int st_put_core(mc_store_t *s, st_op_t *ops, size_t n, const mc_store_config_t *cfg,
                       int upsert)
{
    uint64_t t0 = mc_now_ns();
    int rc = st_put_core_run(s, ops, n, cfg, upsert);
    st_note(s, MC__STORE_OP_PUT, ops, n, t0);
    return rc;
}

/* The ops whose cached replica failed them (the read failed, or outlasted the
 * lease) go through the master again, their cache entries dropped. */
static void st_get_retry(mc_store_t *s, st_op_t *ops, size_t n, mc_store_iov_t *alloc,
                         mc__gbuf_t *arena)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ops[i].cached && ops[i].rc;
    if (!k) return;
    st_op_t *rops = malloc(k * sizeof *rops);
    mc_store_iov_t *ralloc = alloc ? calloc(k, sizeof *ralloc) : NULL;
    size_t *idx = malloc(k * sizeof *idx);
    if (!rops || !idx || (alloc && !ralloc)) goto out; /* they keep their errors */
    k = 0;
    for (size_t i = 0; i < n; i++) {
        st_op_t *op = &ops[i];
        if (!op->cached || !op->rc) continue;
        mc__lcache_drop(s->lcache, op->key);
        if (alloc) {
            mc__gbuf_free(arena, alloc[i].ptr, alloc[i].len);
            alloc[i] = (mc_store_iov_t){0};
        }
        rops[k] = *op;
        rops[k].rc = 0;
        rops[k].cached = 0;
        rops[k].iov = op->iov0;
        rops[k].niov = op->niov0;
        rops[k].total = op->total0;
        idx[k++] = i;
    }
    st_get_core_run(s, rops, k, ralloc, arena, 0);
    for (size_t j = 0; j < k; j++) {
        ops[idx[j]] = rops[j];
        if (alloc) {
            alloc[idx[j]] = ralloc[j];
            if (!rops[j].rc) ops[idx[j]].iov = &alloc[idx[j]];
        }
    }
out:
    free(rops);
    free(ralloc);
    free(idx);
}

static int st_get_core(mc_store_t *s, st_op_t *ops, size_t n, mc_store_iov_t *alloc,
                       mc__gbuf_t *arena)
{
    uint64_t t0 = mc_now_ns();
    int rc = st_get_core_run(s, ops, n, alloc, arena, 1);
    if (s->lcache) st_get_retry(s, ops, n, alloc, arena);
    st_note(s, MC__STORE_OP_GET, ops, n, t0);
    return rc;
}

static uint64_t st_iov_total(const mc_store_iov_t *iov, size_t n, int *bad)
{
    uint64_t t = 0;
    for (size_t i = 0; i < n; i++) {
        if (!iov[i].ptr && iov[i].len) *bad = 1;
        t += iov[i].len;
    }
    return t;
}

/* Validates one op; staged: the object must fit the local buffer. */
static int st_op_init(mc_store_t *s, st_op_t *op, const char *key, const mc_store_iov_t *iov,
                      size_t niov, int staged)
{
    memset(op, 0, sizeof *op);
    op->key = key;
    op->iov = iov;
    op->niov = niov;
    int bad = !key || !*key || (niov && !iov);
    op->total = bad ? 0 : st_iov_total(iov, niov, &bad);
    op->iov0 = iov;
    op->niov0 = niov;
    op->total0 = op->total;
    if (bad) return op->rc = MC_ERR_INVALID_PARAMS;
    if (staged && op->total > s->lbuf_size) {
        MC_LOGW(TAG, "key '%s': %llu bytes do not fit the local buffer of %llu bytes", key,
                (unsigned long long)op->total, (unsigned long long)s->lbuf_size);
        return op->rc = MC_ERR_INVALID_PARAMS;
    }
    return 0;
}

/* One key, pieces given. */
static int st_put_one(mc_store_t *s, const char *key, const mc_store_iov_t *iov, size_t niov,
                      const mc_store_config_t *cfg, int staged, int upsert)
{
    if (!s || !s->ready) return MC_ERR_INVALID_PARAMS;
    st_op_t op;
    int rc = st_op_init(s, &op, key, iov, niov, staged);
    if (rc) return rc;
    if (op.total == 0) return staged ? MC_ERR_INVALID_PARAMS : 0; /* put_from of 0 bytes */
    st_put_core(s, &op, 1, cfg, upsert);
    return op.rc;
}

int mc_store_put(mc_store_t *s, const char *key, const void *value, size_t len,
                 const mc_store_config_t *cfg)
{
    mc_store_iov_t iov = {(void *)(uintptr_t)value, len};
    return st_put_one(s, key, &iov, 1, cfg, 1, 0);
}

int mc_store_put_parts(mc_store_t *s, const char *key, const mc_store_iov_t *parts, size_t n,
                       const mc_store_config_t *cfg)
{
    return st_put_one(s, key, parts, n, cfg, 1, 0);
}

int mc_store_put_from(mc_store_t *s, const char *key, const void *buf, size_t len,
                      const mc_store_config_t *cfg)
{
    mc_store_iov_t iov = {(void *)(uintptr_t)buf, len};
    return st_put_one(s, key, &iov, 1, cfg, 0, 0);
}

int mc_store_upsert(mc_store_t *s, const char *key, const void *value, size_t len,
                    const mc_store_config_t *cfg)
{
    mc_store_iov_t iov = {(void *)(uintptr_t)value, len};
    return st_put_one(s, key, &iov, 1, cfg, 1, 1);
}

int mc_store_upsert_parts(mc_store_t *s, const char *key, const mc_store_iov_t *parts, size_t n,
                          const mc_store_config_t *cfg)
{
    return st_put_one(s, key, parts, n, cfg, 1, 1);
}

int mc_store_upsert_from(mc_store_t *s, const char *key, const void *buf, size_t len,
                         const mc_store_config_t *cfg)
{
    mc_store_iov_t iov = {(void *)(uintptr_t)buf, len};
    return st_put_one(s, key, &iov, 1, cfg, 0, 1);
}

/* Batch put: ops built from either single buffers (bufs/lens) or piece lists. */
static int st_put_batch(mc_store_t *s, const char *const *keys, void *const *bufs,
                        const size_t *lens, const mc_store_iov_t *const *parts,
                        const size_t *nparts, size_t n, const mc_store_config_t *cfg, int *rcs,
                        int staged, int upsert)
{
    if (!s || !s->ready || (n && (!keys || !rcs || (parts ? !nparts : (!bufs || !lens)))))
        return MC_ERR_INVALID_PARAMS;
    if (n == 0) return 0;
    st_op_t sops[ST_STACK_OPS];
    mc_store_iov_t siov[ST_STACK_OPS];
    st_op_t *ops = n > ST_STACK_OPS ? malloc(n * sizeof *ops) : sops;
    mc_store_iov_t *iov = (!parts && n > ST_STACK_OPS) ? malloc(n * sizeof *iov) : siov;
    if (!ops || !iov) {
        if (ops != sops) free(ops);
        if (iov != siov) free(iov);
        for (size_t i = 0; i < n; i++)
            rcs[i] = MC_ERR_INTERNAL;
        return MC_ERR_INTERNAL;
    }
    uint64_t staged_total = 0;
    size_t live = 0;
    for (size_t i = 0; i < n; i++) {
        if (parts) {
            st_op_init(s, &ops[i], keys[i], parts[i], nparts[i], staged);
        } else {
            iov[i] = (mc_store_iov_t){bufs[i], lens[i]};
            st_op_init(s, &ops[i], keys[i], &iov[i], 1, staged);
        }
        if (!ops[i].rc && ops[i].total == 0) {
            if (staged)
                ops[i].rc = MC_ERR_INVALID_PARAMS;
            else
                ops[i].started = -1; /* nothing to store: success */
        }
        if (!ops[i].rc && staged) {
            staged_total += ops[i].total;
            if (staged_total > s->lbuf_size) ops[i].rc = MC_ERR_INVALID_PARAMS;
        }
    }
    /* Zero-length zero-copy puts are left out of the core: compact the array,
     * idx[k] remembering where work item k came from. */
    size_t sidx[ST_STACK_OPS];
    size_t *idx = n > ST_STACK_OPS ? malloc(n * sizeof *idx) : sidx;
    if (!idx) {
        for (size_t i = 0; i < n; i++)
            rcs[i] = MC_ERR_INTERNAL;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (ops[i].started == -1) {
            rcs[i] = 0;
            continue;
        }
        if (live != i) ops[live] = ops[i];
        idx[live++] = i;
    }
    if (live) st_put_core(s, ops, live, cfg, upsert);
    for (size_t k = 0; k < live; k++)
        rcs[idx[k]] = ops[k].rc;
    if (idx != sidx) free(idx);
out:
    if (ops != sops) free(ops);
    if (iov != siov) free(iov);
    for (size_t i = 0; i < n; i++)
        if (rcs[i]) return rcs[i];
    return 0;
}

int mc_store_batch_put_from(mc_store_t *s, const char *const *keys, void *const *bufs,
                            const size_t *lens, size_t n, const mc_store_config_t *cfg, int *rcs)
{
    return st_put_batch(s, keys, bufs, lens, NULL, NULL, n, cfg, rcs, 0, 0);
}

int mc_store_batch_put(mc_store_t *s, const char *const *keys, const void *const *values,
                       const size_t *lens, size_t n, const mc_store_config_t *cfg, int *rcs)
{
    return st_put_batch(s, keys, (void *const *)(uintptr_t)values, lens, NULL, NULL, n, cfg, rcs, 1,
                        0);
}

int mc_store_batch_put_from_multi_buffers(mc_store_t *s, const char *const *keys,
                                          const mc_store_iov_t *const *parts, const size_t *nparts,
                                          size_t n, const mc_store_config_t *cfg, int *rcs)
{
    return st_put_batch(s, keys, NULL, NULL, parts, nparts, n, cfg, rcs, 0, 0);
}

int mc_store_batch_upsert_from(mc_store_t *s, const char *const *keys, void *const *bufs,
                               const size_t *lens, size_t n, const mc_store_config_t *cfg, int *rcs)
{
    return st_put_batch(s, keys, bufs, lens, NULL, NULL, n, cfg, rcs, 0, 1);
}

/* ---- gets ---- */

int64_t mc_store_get_into(mc_store_t *s, const char *key, void *buf, size_t cap)
{
    if (!s || !s->ready || !key || !*key || (!buf && cap)) return MC_ERR_INVALID_PARAMS;
    mc_store_iov_t iov = {buf, cap};
    st_op_t op;
    st_op_init(s, &op, key, &iov, 1, 0);
    st_get_core(s, &op, 1, NULL, NULL);
    return op.rc ? op.rc : (int64_t)op.total;
}

int mc_store_get(mc_store_t *s, const char *key, void **out, size_t *len)
{
    if (!s || !s->ready || !key || !*key || !out || !len) return MC_ERR_INVALID_PARAMS;
    int rc;
    mc_store_batch_get(s, &key, 1, out, len, &rc);
    return rc;
}

/* Allocating gets: the replica list tells each object's size, so one master
 * round trip (GetReplicaList or its batch form) is all; the objects are then
 * read into buffers of that size in one TE batch. The size limit is the local
 * buffer's, as for puts. */
static int st_get_alloc(mc_store_t *s, const char *const *keys, size_t n, void **outs,
                        size_t *lens, int *rcs, mc__gbuf_t *arena)
{
    if (n && (!keys || !outs || !lens || !rcs)) return MC_ERR_INVALID_PARAMS;
    for (size_t i = 0; i < n; i++) {
        outs[i] = NULL;
        lens[i] = 0;
        rcs[i] = MC_ERR_INVALID_PARAMS;
    }
    if (!s || !s->ready) return MC_ERR_INVALID_PARAMS;
    if (n == 0) return 0;
    st_op_t sops[ST_STACK_OPS];
    mc_store_iov_t salloc[ST_STACK_OPS];
    st_op_t *ops = n > ST_STACK_OPS ? malloc(n * sizeof *ops) : sops;
    mc_store_iov_t *alloc = n > ST_STACK_OPS ? calloc(n, sizeof *alloc) : salloc;
    if (alloc == salloc) memset(salloc, 0, sizeof salloc);
    if (!ops || !alloc) {
        if (ops != sops) free(ops);
        if (alloc != salloc) free(alloc);
        for (size_t i = 0; i < n; i++)
            rcs[i] = MC_ERR_INTERNAL;
        return MC_ERR_INTERNAL;
    }
    for (size_t i = 0; i < n; i++) {
        st_op_init(s, &ops[i], keys[i], NULL, 0, 0);
    }
    st_get_core(s, ops, n, alloc, arena);
    int first = 0;
    for (size_t i = 0; i < n; i++) {
        rcs[i] = ops[i].rc;
        if (ops[i].rc) {
            mc__gbuf_free(arena, alloc[i].ptr, alloc[i].len);
            if (!first) first = ops[i].rc;
            continue;
        }
        outs[i] = alloc[i].ptr;
        lens[i] = (size_t)alloc[i].len;
    }
    if (ops != sops) free(ops);
    if (alloc != salloc) free(alloc);
    return first;
}

int mc_store_batch_get(mc_store_t *s, const char *const *keys, size_t n, void **outs, size_t *lens,
                       int *rcs)
{
    return st_get_alloc(s, keys, n, outs, lens, rcs, NULL);
}

/* Get buffers: the allocating get, read into blocks of the local buffer's
 * arena (store_gbuf.h), each wrapped so that it can be released on its own. */
struct mc_store_buffer {
    mc__gbuf_t *arena; /* the block's arena; NULL: malloc'd */
    void *ptr;
    uint64_t len;
};

int mc_store_batch_get_buffers(mc_store_t *s, const char *const *keys, size_t n,
                               mc_store_buffer_t **bufs, int *rcs)
{
    if (n && (!keys || !bufs || !rcs)) return MC_ERR_INVALID_PARAMS;
    for (size_t i = 0; i < n; i++)
        bufs[i] = NULL;
    void *souts[ST_STACK_OPS];
    size_t slens[ST_STACK_OPS];
    void **outs = n > ST_STACK_OPS ? calloc(n, sizeof *outs) : souts;
    size_t *lens = n > ST_STACK_OPS ? calloc(n, sizeof *lens) : slens;
    if (!outs || !lens) {
        if (outs != souts) free(outs);
        if (lens != slens) free(lens);
        for (size_t i = 0; rcs && i < n; i++)
            rcs[i] = MC_ERR_INTERNAL;
        return MC_ERR_INTERNAL;
    }
    mc__gbuf_t *arena = s ? s->gbuf : NULL;
    int first = st_get_alloc(s, keys, n, outs, lens, rcs, arena);
    for (size_t i = 0; i < n; i++) {
        if (rcs[i]) continue;
        mc_store_buffer_t *b = malloc(sizeof *b);
        if (!b) {
            mc__gbuf_free(arena, outs[i], lens[i]);
            rcs[i] = MC_ERR_INTERNAL;
            if (!first) first = MC_ERR_INTERNAL;
            continue;
        }
        *b = (mc_store_buffer_t){mc__gbuf_owns(arena, outs[i]) ? arena : NULL, outs[i], lens[i]};
        bufs[i] = b;
    }
    if (outs != souts) free(outs);
    if (lens != slens) free(lens);
    return first;
}

int mc_store_get_buffer(mc_store_t *s, const char *key, mc_store_buffer_t **buf)
{
    if (!buf) return MC_ERR_INVALID_PARAMS;
    int rc;
    mc_store_batch_get_buffers(s, &key, 1, buf, &rc);
    return rc;
}

void *mc_store_buffer_data(const mc_store_buffer_t *b) { return b ? b->ptr : NULL; }

size_t mc_store_buffer_size(const mc_store_buffer_t *b) { return b ? (size_t)b->len : 0; }

void mc_store_buffer_release(mc_store_buffer_t *b)
{
    if (!b) return;
    mc__gbuf_free(b->arena, b->ptr, b->len);
    free(b);
}

static int st_get_batch(mc_store_t *s, const char *const *keys, void *const *bufs,
                        const size_t *caps, const mc_store_iov_t *const *parts,
                        const size_t *nparts, size_t n, int64_t *res)
{
    if (!s || !s->ready || (n && (!keys || !res || (parts ? !nparts : (!bufs || !caps)))))
        return MC_ERR_INVALID_PARAMS;
    if (n == 0) return 0;
    st_op_t sops[ST_STACK_OPS];
    mc_store_iov_t siov[ST_STACK_OPS];
    st_op_t *ops = n > ST_STACK_OPS ? malloc(n * sizeof *ops) : sops;
    mc_store_iov_t *iov = (!parts && n > ST_STACK_OPS) ? malloc(n * sizeof *iov) : siov;
    if (!ops || !iov) {
        if (ops != sops) free(ops);
        if (iov != siov) free(iov);
        for (size_t i = 0; i < n; i++)
            res[i] = MC_ERR_INTERNAL;
        return MC_ERR_INTERNAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (parts) {
            st_op_init(s, &ops[i], keys[i], parts[i], nparts[i], 0);
        } else {
            iov[i] = (mc_store_iov_t){bufs[i], caps[i]};
            st_op_init(s, &ops[i], keys[i], &iov[i], 1, 0);
        }
    }
    int rc = st_get_core(s, ops, n, NULL, NULL);
    for (size_t i = 0; i < n; i++)
        res[i] = ops[i].rc ? ops[i].rc : (int64_t)ops[i].total;
    if (ops != sops) free(ops);
    if (iov != siov) free(iov);
    return rc;
}

int mc_store_batch_get_into(mc_store_t *s, const char *const *keys, void *const *bufs,
                            const size_t *caps, size_t n, int64_t *res)
{
    return st_get_batch(s, keys, bufs, caps, NULL, NULL, n, res);
}

int mc_store_batch_get_into_multi_buffers(mc_store_t *s, const char *const *keys,
                                          const mc_store_iov_t *const *parts, const size_t *nparts,
                                          size_t n, int64_t *res)
{
    return st_get_batch(s, keys, NULL, NULL, parts, nparts, n, res);
}
