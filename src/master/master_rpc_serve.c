/* master_rpc_serve.c: the master RPC's dispatch: one decoded request frame to
 * the core's call (master_service.h) and its reply encoded (master_proto.h),
 * with the per-method counters. The connections, loops and threads around it
 * are master_rpc.c's. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base_log.h"
#include "base_time.h"
#include "master_disk.h"
#include "master_move.h"
#include "master_rpc_int.h"

#define TAG "master_rpc"

/* Decodes request payload p/len of type l into q; on failure returns -1 with
 * x->bad_* set (the caller closes the connection). */
#define DECODE(l, q)                                                                               \
    do {                                                                                           \
        const char *why_;                                                                          \
        if (mc_mp_decode_##l##_req(p, len, x->arena, &q, &why_)) {                                 \
            x->bad_what = "bad " #l " request";                                                    \
            x->bad_why = why_;                                                                     \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

/* Runs `call` (using i) for each key of batch request q and encodes the
 * per-key results as the reply of method l. */
#define BATCH_RCS(l, q, call)                                                                      \
    do {                                                                                           \
        int32_t *rcs_ = malloc((q.n_keys ? q.n_keys : 1) * sizeof *rcs_);                          \
        if (!rcs_) {                                                                               \
            e = mc_mp_encode_status_rep(o, h->method, id, MC_ERR_INTERNAL);                        \
            break;                                                                                 \
        }                                                                                          \
        size_t bad_ = 0;                                                                           \
        for (size_t i = 0; i < q.n_keys; i++) {                                                    \
            rcs_[i] = call;                                                                        \
            bad_ += rcs_[i] < 0;                                                                   \
        }                                                                                          \
        count_items(x->st, h->method, q.n_keys, bad_);                                            \
        e = mc_mp_encode_##l##_rep(o, id, 0,                                                       \
                                   &(mc_mp_##l##_rep_t){.rcs = rcs_, .n_rcs = q.n_keys});          \
        free(rcs_);                                                                                \
    } while (0)

static void count_items(mc_rpc_stats_t *st, unsigned method, size_t n, size_t bad)
{
    atomic_fetch_add_explicit(&st->n_items[method % RPC_METHODS], n, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->n_failed_items[method % RPC_METHODS], bad,
                              memory_order_relaxed);
}

/* Per-key results of a batch: counts them, returns nothing. */
static void count_results(mc_rpc_stats_t *st, unsigned method, const mc_mp_result_t *v,
                          size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += v[i].rc != 0;
    count_items(st, method, n, bad);
}

static void free_results(mc_mp_result_t *v, size_t n)
{
    for (size_t i = 0; i < n && v; i++)
        free(v[i].reps);
    free(v);
}

/* The reply of TASK_FETCH (n tasks of t), as parallel arrays. */
static int rpc_encode_tasks(mc_mp_buf_t *o, uint32_t id, int rc, const mc_master_task_t *t,
                            size_t n)
{
    uint64_t *u = calloc(4 * (n ? n : 1), sizeof *u);
    const char **s = calloc(2 * (n ? n : 1), sizeof *s);
    if (!u || !s) {
        free(u);
        free(s);
        return mc_mp_encode_status_rep(o, MC_MP_TASK_FETCH, id, MC_ERR_INTERNAL);
    }
    for (size_t i = 0; i < n; i++) {
        u[i] = t[i].id;
        u[n + i] = t[i].size;
        u[2 * n + i] = t[i].src_addr;
        u[3 * n + i] = t[i].dst_addr;
        s[i] = t[i].key;
        s[n + i] = t[i].dst_endpoint;
    }
    size_t k = rc ? 0 : n;
    mc_mp_task_fetch_rep_t rep = {.ids = u,
                                  .n_ids = k,
                                  .keys = s,
                                  .n_keys = k,
                                  .sizes = u + n,
                                  .n_sizes = k,
                                  .src_addrs = u + 2 * n,
                                  .n_src_addrs = k,
                                  .dst_addrs = u + 3 * n,
                                  .n_dst_addrs = k,
                                  .dst_endpoints = s + n,
                                  .n_dst_endpoints = k};
    int e = mc_mp_encode_task_fetch_rep(o, id, rc, &rep);
    free(u);
    free(s);
    return e;
}

int mc__rpc_serve(rpc_ctx_t *x, const mc_mp_hdr_t *h, const uint8_t *p, size_t len)
{
    mc_master_t *m = x->m;
    mc_mp_buf_t *o = x->out;
    uint32_t id = h->req_id;
    uint64_t t0 = mc_now_ns(), now = t0 / 1000000u;
    int rc = 0, e = 0;
    mc_replica_t *r = NULL;
    size_t n = 0;
    mc_mp_arena_reset(x->arena);
    switch (h->method) {
    case MC_MP_SERVICE_READY: {
        mc_mp_service_ready_req_t q;
        DECODE(service_ready, q);
        if (strcmp(q.version, MC_MASTER_VERSION) != 0)
            MC_LOGW(TAG, "peer %s: client version %s, master %s", x->peer, q.version,
                    MC_MASTER_VERSION);
        mc_mp_service_ready_rep_t rep = {.version = MC_MASTER_VERSION};
        e = mc_mp_encode_service_ready_rep(o, id, 0, &rep);
        break;
    }
    case MC_MP_MOUNT_SEGMENT: {
        mc_mp_mount_segment_req_t q;
        DECODE(mount_segment, q);
        rc = mc_master_mount_segment(m, &q.seg, q.client, now);
        e = mc_mp_encode_mount_segment_rep(o, id, rc, &(mc_mp_mount_segment_rep_t){0});
        break;
    }
    case MC_MP_REMOUNT_SEGMENTS: {
        mc_mp_remount_segments_req_t q;
        DECODE(remount_segments, q);
        rc = mc_master_remount_segments(m, q.segs, q.n_segs, q.client, now);
        e = mc_mp_encode_remount_segments_rep(o, id, rc, &(mc_mp_remount_segments_rep_t){0});
        break;
    }
    case MC_MP_UNMOUNT_SEGMENT: {
        mc_mp_unmount_segment_req_t q;
        DECODE(unmount_segment, q);
        rc = mc_master_unmount_segment(m, q.segment, q.client);
        e = mc_mp_encode_unmount_segment_rep(o, id, rc, &(mc_mp_unmount_segment_rep_t){0});
        break;
    }
    case MC_MP_PING: {
        mc_mp_ping_req_t q;
        DECODE(ping, q);
        int st = 0;
        rc = mc_master_ping(m, q.client, now, &st);
        if (rc == 0 && st == MC_CLIENT_OK && mc_master_tasks_pending(m, q.client))
            st |= MC_CLIENT_TASKS_PENDING; /* the client fetches them (master_move.h) */
        e = mc_mp_encode_ping_rep(o, id, rc, &(mc_mp_ping_rep_t){.client_status = st});
        break;
    }
    case MC_MP_PUT_START: {
        mc_mp_put_start_req_t q;
        DECODE(put_start, q);
        rc = mc_master_put_start(m, q.client, q.key, q.size, &q.cfg, now, &r, &n);
        e = mc_mp_encode_put_start_rep(o, id, rc,
                                       &(mc_mp_put_start_rep_t){.reps = r, .n_reps = rc ? 0 : n});
        break;
    }
    case MC_MP_PUT_END: {
        mc_mp_put_end_req_t q;
        DECODE(put_end, q);
        rc = mc_master_put_end(m, q.client, q.key, now);
        e = mc_mp_encode_put_end_rep(o, id, rc, &(mc_mp_put_end_rep_t){0});
        break;
    }
    case MC_MP_PUT_REVOKE: {
        mc_mp_put_revoke_req_t q;
        DECODE(put_revoke, q);
        rc = mc_master_put_revoke(m, q.client, q.key);
        e = mc_mp_encode_put_revoke_rep(o, id, rc, &(mc_mp_put_revoke_rep_t){0});
        break;
    }
    case MC_MP_UPSERT_START: {
        mc_mp_upsert_start_req_t q;
        DECODE(upsert_start, q);
        rc = mc_master_upsert_start(m, q.client, q.key, q.size, &q.cfg, now, &r, &n);
        e = mc_mp_encode_upsert_start_rep(
            o, id, rc, &(mc_mp_upsert_start_rep_t){.reps = r, .n_reps = rc ? 0 : n});
        break;
    }
    case MC_MP_GET_REPLICAS: {
        mc_mp_get_replicas_req_t q;
        DECODE(get_replicas, q);
        uint64_t ttl = 0;
        rc = mc_master_get_replicas(m, q.key, now, &r, &n, &ttl);
        e = mc_mp_encode_get_replicas_rep(
            o, id, rc,
            &(mc_mp_get_replicas_rep_t){.reps = r, .n_reps = rc ? 0 : n, .lease_ttl_ms = ttl});
        break;
    }
    case MC_MP_EXIST: {
        mc_mp_exist_req_t q;
        DECODE(exist, q);
        rc = mc_master_exist(m, q.key, now);
        e = mc_mp_encode_exist_rep(o, id, rc < 0 ? rc : 0,
                                   &(mc_mp_exist_rep_t){.exists = rc > 0 ? 1 : 0});
        break;
    }
    case MC_MP_REMOVE: {
        mc_mp_remove_req_t q;
        DECODE(remove, q);
        rc = mc_master_remove(m, q.key, q.force, now);
        e = mc_mp_encode_remove_rep(o, id, rc, &(mc_mp_remove_rep_t){0});
        break;
    }
    case MC_MP_REMOVE_ALL: {
        mc_mp_remove_all_req_t q;
        DECODE(remove_all, q);
        int64_t cnt = mc_master_remove_all(m, q.force, now);
        e = mc_mp_encode_remove_all_rep(o, id, cnt < 0 ? (int32_t)cnt : 0,
                                        &(mc_mp_remove_all_rep_t){.count = cnt});
        break;
    }
    case MC_MP_REMOVE_BY_REGEX: {
        mc_mp_remove_by_regex_req_t q;
        DECODE(remove_by_regex, q);
        int64_t cnt = mc_master_remove_by_regex(m, q.regex, q.force, now);
        e = mc_mp_encode_remove_by_regex_rep(o, id, cnt < 0 ? (int32_t)cnt : 0,
                                             &(mc_mp_remove_by_regex_rep_t){.count = cnt});
        break;
    }
    case MC_MP_BATCH_PUT_START:
    case MC_MP_BATCH_UPSERT_START: { /* same request and reply shapes */
        int upsert = h->method == MC_MP_BATCH_UPSERT_START;
        mc_mp_batch_put_start_req_t q;
        DECODE(batch_put_start, q);
        if (q.n_sizes != q.n_keys) {
            e = mc_mp_encode_status_rep(o, h->method, id, MC_ERR_INVALID_PARAMS);
            break;
        }
        mc_mp_result_t *v = calloc(q.n_keys ? q.n_keys : 1, sizeof *v);
        if (!v) {
            e = mc_mp_encode_status_rep(o, h->method, id, MC_ERR_INTERNAL);
            break;
        }
        for (size_t i = 0; i < q.n_keys; i++) {
            v[i].rc = (upsert ? mc_master_upsert_start : mc_master_put_start)(
                m, q.client, q.keys[i], q.sizes[i], &q.cfg, now, &v[i].reps, &v[i].n);
            if (v[i].rc) v[i].n = 0;
        }
        count_results(x->st, h->method, v, q.n_keys);
        if (upsert)
            e = mc_mp_encode_batch_upsert_start_rep(
                o, id, 0, &(mc_mp_batch_upsert_start_rep_t){.results = v, .n_results = q.n_keys});
        else
            e = mc_mp_encode_batch_put_start_rep(
                o, id, 0, &(mc_mp_batch_put_start_rep_t){.results = v, .n_results = q.n_keys});
        free_results(v, q.n_keys);
        break;
    }
    case MC_MP_BATCH_GET_REPLICAS: {
        mc_mp_batch_get_replicas_req_t q;
        DECODE(batch_get_replicas, q);
        mc_mp_result_t *v = calloc(q.n_keys ? q.n_keys : 1, sizeof *v);
        if (!v) {
            e = mc_mp_encode_status_rep(o, h->method, id, MC_ERR_INTERNAL);
            break;
        }
        uint64_t ttl = 0;
        for (size_t i = 0; i < q.n_keys; i++) {
            uint64_t t = 0;
            v[i].rc = mc_master_get_replicas(m, q.keys[i], now, &v[i].reps, &v[i].n, &t);
            if (v[i].rc)
                v[i].n = 0;
            else
                ttl = t;
        }
        count_results(x->st, h->method, v, q.n_keys);
        e = mc_mp_encode_batch_get_replicas_rep(
            o, id, 0,
            &(mc_mp_batch_get_replicas_rep_t){
                .results = v, .n_results = q.n_keys, .lease_ttl_ms = ttl});
        free_results(v, q.n_keys);
        break;
    }
    case MC_MP_BATCH_PUT_END: {
        mc_mp_batch_put_end_req_t q;
        DECODE(batch_put_end, q);
        BATCH_RCS(batch_put_end, q, mc_master_put_end(m, q.client, q.keys[i], now));
        break;
    }
    case MC_MP_BATCH_PUT_REVOKE: {
        mc_mp_batch_put_revoke_req_t q;
        DECODE(batch_put_revoke, q);
        BATCH_RCS(batch_put_revoke, q, mc_master_put_revoke(m, q.client, q.keys[i]));
        break;
    }
    case MC_MP_BATCH_EXIST: {
        mc_mp_batch_exist_req_t q;
        DECODE(batch_exist, q);
        BATCH_RCS(batch_exist, q, mc_master_exist(m, q.keys[i], now));
        break;
    }
    case MC_MP_BATCH_REMOVE: {
        mc_mp_batch_remove_req_t q;
        DECODE(batch_remove, q);
        BATCH_RCS(batch_remove, q, mc_master_remove(m, q.keys[i], q.force, now));
        break;
    }
    case MC_MP_TASK_FETCH: {
        mc_mp_task_fetch_req_t q;
        DECODE(task_fetch, q);
        mc_master_task_t *t = NULL;
        size_t nt = 0;
        rc = mc_master_task_fetch(m, q.client, q.max, now, &t, &nt);
        e = rpc_encode_tasks(o, id, rc, t, nt);
        mc_master_tasks_free(t, nt);
        break;
    }
    case MC_MP_TASK_COMPLETE: {
        mc_mp_task_complete_req_t q;
        DECODE(task_complete, q);
        rc = mc_master_task_complete(m, q.client, q.id, q.rc, now);
        e = mc_mp_encode_task_complete_rep(o, id, rc, &(mc_mp_task_complete_rep_t){0});
        break;
    }
    case MC_MP_TASK_COPY: {
        mc_mp_task_copy_req_t q;
        DECODE(task_copy, q);
        mc_uuid_t t = {0, 0};
        rc = mc_master_copy_task(m, q.key, q.targets, q.n_targets, now, &t);
        e = mc_mp_encode_task_copy_rep(o, id, rc, &(mc_mp_task_copy_rep_t){.task = t});
        break;
    }
    case MC_MP_TASK_MOVE: {
        mc_mp_task_move_req_t q;
        DECODE(task_move, q);
        mc_uuid_t t = {0, 0};
        rc = mc_master_move_task(m, q.key, q.source, q.target, now, &t);
        e = mc_mp_encode_task_move_rep(o, id, rc, &(mc_mp_task_move_rep_t){.task = t});
        break;
    }
    case MC_MP_TASK_QUERY: {
        mc_mp_task_query_req_t q;
        DECODE(task_query, q);
        mc_master_task_info_t ti;
        rc = mc_master_task_query(m, q.task, &ti);
        e = mc_mp_encode_task_query_rep(o, id, rc,
                                        &(mc_mp_task_query_rep_t){.task = ti.id,
                                                                  .type = (uint8_t)ti.type,
                                                                  .status = (uint8_t)ti.status,
                                                                  .created_ms = ti.created_ms,
                                                                  .updated_ms = ti.updated_ms,
                                                                  .assigned_client =
                                                                      ti.assigned_client,
                                                                  .message = ti.message});
        break;
    }
    case MC_MP_BATCH_REPLICA_CLEAR: {
        mc_mp_batch_replica_clear_req_t q;
        DECODE(batch_replica_clear, q);
        BATCH_RCS(batch_replica_clear, q,
                  mc_master_replica_clear(m, q.client, q.keys[i], q.segment, now));
        break;
    }
    default: { /* the SSD tier's methods (master_disk.c); the header decoder
                * accepts known methods only */
        int drc = mc_master_disk_serve(m, h->method, id, p, len, x->arena, o, now, &x->bad_why);
        if (drc == MC_MASTER_DISK_NOT_MINE || drc == MC_MASTER_DISK_BAD) {
            x->bad_what = drc == MC_MASTER_DISK_BAD ? "bad disk request" : "request";
            if (drc == MC_MASTER_DISK_NOT_MINE) x->bad_why = "unknown method";
            return -1;
        }
        if (drc == -ENOMEM)
            e = drc;
        else
            rc = drc;
        break;
    }
    }
    free(r);
    atomic_fetch_add_explicit(&x->st->n_req[h->method % RPC_METHODS], 1, memory_order_relaxed);
    if (rc < 0 || e)
        atomic_fetch_add_explicit(&x->st->n_fail[h->method % RPC_METHODS], 1,
                                  memory_order_relaxed);
    mc_hist_observe(&x->st->lat[h->method % RPC_METHODS], mc_now_ns() - t0);
    if (e) { /* reply too large or out of memory: an error reply instead */
        MC_LOGW(TAG, "peer %s: %s reply not encodable (%d)", x->peer, mc_mp_method_name(h->method),
                e);
        if (mc_mp_encode_status_rep(o, h->method, id, MC_ERR_INTERNAL)) {
            x->bad_what = "reply";
            x->bad_why = "out of memory";
            return -1;
        }
    }
    return 0;
}

