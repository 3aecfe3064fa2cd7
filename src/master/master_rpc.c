/* master_rpc.c: the master's RPC server. One libuv loop on its own thread
 * accepts connections; each connection reads into its own buffer (alloc_cb
 * hands out the free tail), parses every complete frame in what arrived,
 * decodes the request, calls the core (master_service.h) with a monotonic
 * now_ms and appends the reply to an output buffer that is written with one
 * uv_write per read, so pipelined requests are answered in order and in
 * batches. A bad frame or request closes only its connection, with one log
 * line naming the peer and the reason. When a client stops reading its
 * replies the connection stops reading requests until its write queue drains.
 * Stop is a uv_async: it closes every handle and the loop thread ends.
 *
 * Liveness (heartbeats, mounts) is never starved by one request:
 * - whole-index scans (REMOVE_ALL, REMOVE_BY_REGEX) run on libuv's thread
 *   pool; their connection reads nothing more until the reply is queued, so
 *   its replies stay in order, while every other connection is served;
 * - a 100 ms timer tells the core the loop is turning; when it fires late by
 *   more than a second (the process was stopped or starved), the core extends
 *   every client's deadline by the stall (mc_master_note_loop).
 * Limits on what one peer can hold (environment, logged when hit):
 *   MC_MASTER_RPC_MAX_CONNECTIONS (default 8192): at the cap, the connection
 *     idle longest is closed for a new one if it has been idle 5 s, else the
 *     new one is refused;
 *   MC_MASTER_RPC_IDLE_TIMEOUT_S (default 120): a connection with no request
 *     for that long is closed (clients reconnect on their next call; live
 *     stores heartbeat every second);
 *   MC_MASTER_RPC_FRAME_TIMEOUT_S (default 30): a frame must arrive whole
 *     within that time of its first byte;
 *   the receive buffer grows with the bytes that arrived (at most doubling),
 *     never to a frame's announced length up front, and all connections'
 *     buffers together stay under MC_MASTER_RPC_MAX_BUFFERED (default 1 GiB).
 * With TLS files (net_tls.h) every connection is TLS: what libuv reads goes
 * into the connection's TLS session (a loop-wide buffer receives it), the
 * plaintext it yields lands in the receive buffer as above (tls_pump), and
 * replies are encrypted on flush. A peer that sends plaintext, or fails the
 * handshake, is closed with one line naming it and the cause. */
#include "master_rpc.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "base_env.h"
#include "base_hist.h"
#include "base_log.h"
#include "base_time.h"
#include "master_disk.h"
#include "master_move.h"
#include "master_proto.h"
#include "net_auth.h"
#include "net_sock.h"
#include "net_tls.h"

#define TAG "master_rpc"
#define CONN_BUF_MIN 65536
/* Reply bytes queued on one connection that pause reading its requests
 * (MC_MASTER_RPC_MAX_QUEUED, default 64 MiB); reading resumes below a quarter. */
#define WQ_HIGH_DEFAULT (64 << 20)

#define RPC_METHODS 64 /* method ids are below 0x40 (master_proto.h) */
#define LOOP_TIMER_MS 100
#define SWEEP_EVERY_MS 1000
#define IDLE_EVICT_MS 5000
#define TLS_RX_LEN 65536

struct job;

typedef struct conn {
    uv_tcp_t tcp;
    mc_master_rpc_t *srv;
    struct conn *prev, *next;
    char peer[64];
    uint8_t *buf;
    size_t len, cap;
    size_t need;             /* length of the frame being received, 0 between frames */
    uint64_t frame_start_ms; /* when its first byte arrived */
    uint64_t active_ms;      /* last request served (or accept) */
    mc_mp_arena_t arena;
    mc_mp_buf_t out;
    struct job *job; /* a request running on the thread pool */
    int closing, paused;
    int close_after_write; /* refused by the gate: close once the answer is out */
    /* the cluster secret's exchange (net_auth.h): authed once PROOF checked */
    int authed, hello_seen;
    uint8_t nonce_c[MC_AUTH_NONCE_LEN], nonce_s[MC_AUTH_NONCE_LEN];
    int any_frame;       /* a frame header was seen */
    mc_tls_conn_t *tls; /* NULL: plaintext */
} conn_t;

/* A request served off the loop: its own copy of the payload, arena and
 * reply buffer. conn becomes NULL when the connection closed meanwhile. */
typedef struct job {
    uv_work_t work;
    mc_master_rpc_t *srv;
    conn_t *conn; /* touched on the loop thread only */
    mc_mp_hdr_t hdr;
    uint8_t *payload;
    char peer[64];
    mc_mp_arena_t arena;
    mc_mp_buf_t out;
    int bad; /* the request did not decode: close */
    const char *bad_what, *bad_why;
} job_t;

typedef struct {
    uv_write_t req;
    uint8_t *data;
} wreq_t;

struct mc_master_rpc {
    mc_master_t *m;
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_async_t stop;
    uv_async_t drop; /* mc_master_rpc_drop_clients */
    mc_master_rpc_gate_fn gate;
    void *gate_arg;
    uint64_t refused; /* requests refused by the gate since the last log line */
    uint64_t last_refuse_log_ms;
    const mc_auth_key_t *key; /* the cluster key, NULL: connections need no proof */
    mc_auth_refusals_t auth_refusals;
    int tls;          /* connections are TLS (net_tls.h) */
    mc_auth_refusals_t tls_refusals;
    uint8_t *tls_rx; /* TLS_RX_LEN bytes: what libuv read, before decryption */
    uv_timer_t timer;
    uv_thread_t thread;
    uint16_t port;
    size_t wq_high, wq_low;
    conn_t *conns;
    size_t nconns, max_conns;
    size_t buffered, max_buffered; /* receive buffer bytes of every connection */
    uint64_t idle_timeout_ms, frame_timeout_ms;
    uint64_t last_timer_ms, last_sweep_ms, last_cap_log_ms;
    uint64_t cap_refused; /* connections refused at the cap since the last log line */
    /* Per method id: requests served, those answered with an error status,
     * and for batches the keys asked and the keys that failed. Written by
     * the loop thread, read by the admin server's threads. */
    _Atomic uint64_t n_req[RPC_METHODS], n_fail[RPC_METHODS];
    _Atomic uint64_t n_items[RPC_METHODS], n_failed_items[RPC_METHODS];
    mc_hist_t lat[RPC_METHODS]; /* serve()'s time per request, decode to reply encoded */
};

/* ---------------------------------------------------------------- conns */

static void conn_free_cb(uv_handle_t *h)
{
    conn_t *c = h->data;
    if (c->job) c->job->conn = NULL; /* its reply is dropped when it ends */
    c->srv->buffered -= c->cap;
    mc_tls_conn_free(c->tls);
    free(c->buf);
    mc_mp_arena_free(&c->arena);
    mc_mp_buf_free(&c->out);
    free(c);
}

/* Closes c once (unlinks it; memory goes in the close callback). */
static void conn_close(conn_t *c)
{
    if (c->closing) return;
    c->closing = 1;
    if (c->prev)
        c->prev->next = c->next;
    else
        c->srv->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->srv->nconns--;
    uv_close((uv_handle_t *)&c->tcp, conn_free_cb);
}

static void bad_frame(conn_t *c, const char *what, const char *why)
{
    MC_LOGW(TAG, "peer %s: %s: %s; closing the connection", c->peer, what, why);
    conn_close(c);
}

/* Resizes c's receive buffer to ncap (>= c->len), within the server's budget
 * of buffered bytes. Returns 0, or -1 (buffer unchanged). */
static int conn_resize(conn_t *c, size_t ncap)
{
    mc_master_rpc_t *srv = c->srv;
    if (ncap > c->cap && srv->buffered + (ncap - c->cap) > srv->max_buffered) return -1;
    uint8_t *nb = realloc(c->buf, ncap);
    if (!nb) return -1;
    srv->buffered = srv->buffered - c->cap + ncap;
    c->buf = nb;
    c->cap = ncap;
    return 0;
}

/* Hands libuv the free tail of c's buffer. A full buffer holding part of a
 * frame grows, at most doubling, so memory follows the bytes that arrived
 * rather than the length a header announced. */
static void conn_room(conn_t *c)
{
    if (!c->cap && conn_resize(c, CONN_BUF_MIN))
        MC_LOGW(TAG,
                "peer %s: no memory for a receive buffer (MC_MASTER_RPC_MAX_BUFFERED: %zu "
                "bytes buffered in all)",
                c->peer, c->srv->buffered);
    if (c->cap && c->len == c->cap && c->need > c->cap) {
        size_t ncap = c->cap * 2 < c->need ? c->cap * 2 : c->need;
        if (conn_resize(c, ncap))
            MC_LOGW(TAG,
                    "peer %s: no memory for %zu more bytes of a %zu-byte frame "
                    "(MC_MASTER_RPC_MAX_BUFFERED: %zu bytes buffered in all)",
                    c->peer, ncap - c->cap, c->need, c->srv->buffered);
    }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    conn_t *c = h->data;
    (void)suggested;
    if (c->tls) { /* ciphertext: decrypted into c->buf by tls_pump */
        out->base = (char *)c->srv->tls_rx;
        out->len = TLS_RX_LEN;
        return;
    }
    conn_room(c);
    if (c->cap == c->len) { /* libuv reports UV_ENOBUFS and read_cb closes */
        out->base = NULL;
        out->len = 0;
        return;
    }
    out->base = (char *)c->buf + c->len;
    out->len = c->cap - c->len;
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void tls_pump(conn_t *c);

static void write_cb(uv_write_t *req, int status)
{
    wreq_t *w = (wreq_t *)req;
    conn_t *c = req->handle->data;
    free(w->data);
    free(w);
    if (c->closing) return;
    if (status < 0) { /* the peer is gone (reset); a paused reader would not notice */
        MC_LOGD(TAG, "peer %s: write failed: %s", c->peer, uv_strerror(status));
        conn_close(c);
        return;
    }
    if (c->close_after_write && uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) == 0) {
        conn_close(c);
        return;
    }
    if (c->paused && !c->job &&
        uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) < c->srv->wq_low) {
        c->paused = 0;
        MC_LOGD(TAG, "peer %s: replies drained, reading again", c->peer);
        uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
        if (c->tls) tls_pump(c); /* requests decrypted before the pause */
    }
}
/* ---------------------------------------------------------------- dispatch */

/* Where a request is served: on the loop (a connection's arena and output)
 * or on the thread pool (a job's). bad_* say why a request did not decode. */
typedef struct {
    mc_master_rpc_t *srv;
    mc_mp_arena_t *arena;
    mc_mp_buf_t *out;
    const char *peer;
    const char *bad_what, *bad_why;
} rpc_ctx_t;

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
        count_items(x->srv, h->method, q.n_keys, bad_);                                            \
        e = mc_mp_encode_##l##_rep(o, id, 0,                                                       \
                                   &(mc_mp_##l##_rep_t){.rcs = rcs_, .n_rcs = q.n_keys});          \
        free(rcs_);                                                                                \
    } while (0)

static void count_items(mc_master_rpc_t *srv, unsigned method, size_t n, size_t bad)
{
    atomic_fetch_add_explicit(&srv->n_items[method % RPC_METHODS], n, memory_order_relaxed);
    atomic_fetch_add_explicit(&srv->n_failed_items[method % RPC_METHODS], bad,
                              memory_order_relaxed);
}

/* Per-key results of a batch: counts them, returns nothing. */
static void count_results(mc_master_rpc_t *srv, unsigned method, const mc_mp_result_t *v, size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += v[i].rc != 0;
    count_items(srv, method, n, bad);
}

static void free_results(mc_mp_result_t *v, size_t n)
{
    for (size_t i = 0; i < n && v; i++)
        free(v[i].reps);
    free(v);
}

/* Serves one request frame, appending its reply to x->out. Runs on the loop
 * thread or on the thread pool (the core is thread-safe). Returns 0, or -1
 * when the request is malformed (x->bad_* set). */
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

static int serve(rpc_ctx_t *x, const mc_mp_hdr_t *h, const uint8_t *p, size_t len)
{
    mc_master_t *m = x->srv->m;
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
        count_results(x->srv, h->method, v, q.n_keys);
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
        count_results(x->srv, h->method, v, q.n_keys);
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
    atomic_fetch_add_explicit(&x->srv->n_req[h->method % RPC_METHODS], 1, memory_order_relaxed);
    if (rc < 0 || e)
        atomic_fetch_add_explicit(&x->srv->n_fail[h->method % RPC_METHODS], 1,
                                  memory_order_relaxed);
    mc_hist_observe(&x->srv->lat[h->method % RPC_METHODS], mc_now_ns() - t0);
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

/* Queues len bytes at data (malloc'd, owned from here) for the peer. */
static void send_bytes(conn_t *c, uint8_t *data, size_t len)
{
    wreq_t *w = malloc(sizeof *w);
    if (!w) {
        free(data);
        bad_frame(c, "reply", "out of memory");
        return;
    }
    w->data = data;
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int e = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_cb);
    if (e) {
        free(w->data);
        free(w);
        MC_LOGW(TAG, "peer %s: write failed: %s; closing the connection", c->peer, uv_strerror(e));
        conn_close(c);
        return;
    }
    if (!c->paused && uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > c->srv->wq_high) {
        c->paused = 1;
        MC_LOGD(TAG, "peer %s: %zu reply bytes queued, pausing its requests", c->peer,
                uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp));
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
}

/* Sends what c's TLS session has for the peer (handshake records, replies,
 * an alert). */
static void tls_send_out(conn_t *c)
{
    uint8_t *data;
    size_t len;
    if (c->closing) return;
    if (mc_tls_conn_take_out(c->tls, &data, &len)) {
        bad_frame(c, "TLS", "out of memory");
        return;
    }
    if (len) send_bytes(c, data, len);
}

/* Writes what serve appended to c->out, after the journal records those
 * replies depend on (so a kill of the master after a reply loses nothing);
 * on TLS, encrypted. */
static void flush(conn_t *c)
{
    if (!c->out.len || c->closing) return;
    mc_master_journal_flush(c->srv->m);
    if (c->tls) {
        int e = mc_tls_conn_write(c->tls, c->out.p, c->out.len);
        c->out.len = 0; /* the buffer is kept for the next replies */
        if (e) {
            bad_frame(c, "TLS", e == -ENOMEM ? "out of memory" : mc_tls_conn_why(c->tls));
            return;
        }
        tls_send_out(c);
        return;
    }
    uint8_t *data = c->out.p;
    size_t len = c->out.len;
    memset(&c->out, 0, sizeof c->out);
    send_bytes(c, data, len);
}

/* Methods that walk the whole index: served on the thread pool. */
static int is_scan(unsigned method)
{
    return method == MC_MP_REMOVE_ALL || method == MC_MP_REMOVE_BY_REGEX;
}

static void parse_frames(conn_t *c);

/* Refuses c for the cluster secret: answers h with status, logs one line
 * naming the peer (at most one a second, with the count since the last) and
 * closes c once the answer is written. */
/* Answers h with status, reads nothing more from c and closes it once the
 * answer is written. */
static void refuse_and_close(conn_t *c, const mc_mp_hdr_t *h, int32_t status)
{
    if (mc_mp_encode_status_rep(&c->out, h->method, h->req_id, status) == 0)
        c->close_after_write = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    flush(c);
    if (!c->closing && !c->close_after_write) conn_close(c);
}

static void auth_refuse(conn_t *c, const mc_mp_hdr_t *h, int status, const char *why)
{
    char who[80];
    snprintf(who, sizeof who, "peer %s", c->peer);
    mc_auth_refused(&c->srv->auth_refusals, TAG, who, why);
    refuse_and_close(c, h, status);
}

/* The cluster secret's exchange, before any other request (net_auth.h).
 * Returns 0 when h is for the service, 1 when it was an exchange frame that
 * was answered, -1 when c was refused. */
static int auth_step(conn_t *c, const mc_mp_hdr_t *h, const uint8_t *p)
{
    mc_master_rpc_t *srv = c->srv;
    const char *why = NULL;
    if (h->method != MC_MP_AUTH_HELLO && h->method != MC_MP_AUTH_PROOF) {
        if (!srv->key || c->authed) return 0;
        auth_refuse(c, h, MC_ERR_AUTH_REQUIRED,
                    c->hello_seen ? "a request before its proof of the cluster secret"
                                  : "no proof of the cluster secret (a client without "
                                    "MC_CLUSTER_SECRET, or an old one)");
        return -1;
    }
    if (!srv->key) { /* an open master: the client decides whether to go on */
        mc_mp_encode_status_rep(&c->out, h->method, h->req_id, MC_ERR_AUTH_OFF);
        return 1;
    }
    if (c->authed) {
        auth_refuse(c, h, MC_ERR_AUTH_FAILED, "a second exchange on a proved connection");
        return -1;
    }
    mc_mp_arena_reset(&c->arena);
    if (h->method == MC_MP_AUTH_HELLO) {
        mc_mp_auth_hello_req_t q;
        if (c->hello_seen || mc_mp_decode_auth_hello_req(p, h->length, &c->arena, &q, &why)) {
            auth_refuse(c, h, MC_ERR_AUTH_FAILED, why ? why : "a second HELLO");
            return -1;
        }
        if (q.auth_version != MC_AUTH_VERSION) {
            char w[96];
            snprintf(w, sizeof w, "handshake version %u (this master speaks %u)", q.auth_version,
                     MC_AUTH_VERSION);
            auth_refuse(c, h, MC_ERR_INVALID_VERSION, w);
            return -1;
        }
        if (mc_auth_nonce(c->nonce_s)) {
            auth_refuse(c, h, MC_ERR_INTERNAL, "no random bytes for a nonce");
            return -1;
        }
        memcpy(c->nonce_c, q.nonce, sizeof c->nonce_c);
        c->hello_seen = 1;
        mc_mp_auth_hello_rep_t r;
        memcpy(r.nonce, c->nonce_s, sizeof r.nonce);
        mc_auth_mac(srv->key, 'S', "master", c->nonce_c, c->nonce_s, r.mac);
        mc_mp_encode_auth_hello_rep(&c->out, h->req_id, 0, &r);
        return 1;
    }
    mc_mp_auth_proof_req_t q;
    if (!c->hello_seen || mc_mp_decode_auth_proof_req(p, h->length, &c->arena, &q, &why)) {
        auth_refuse(c, h, MC_ERR_AUTH_FAILED, why ? why : "a PROOF without a HELLO");
        return -1;
    }
    if (!mc_auth_mac_ok(srv->key, 'C', "master", c->nonce_s, c->nonce_c, q.mac)) {
        auth_refuse(c, h, MC_ERR_AUTH_FAILED, "wrong cluster secret");
        return -1;
    }
    c->authed = 1;
    mc_mp_encode_auth_proof_rep(&c->out, h->req_id, 0, NULL);
    return 1;
}

/* Passes request h through the server's gate (HA). Sets the view replies
 * carry; when the gate refuses, answers h with -1010 and closes the
 * connection (refuse_and_close). Returns 1 when refused. */
static int gate_refuses(conn_t *c, const mc_mp_hdr_t *h)
{
    mc_master_rpc_t *srv = c->srv;
    if (!srv->gate) return 0;
    uint64_t view = 0, now = c->active_ms;
    int serving = srv->gate(srv->gate_arg, now, &view);
    c->out.view = view;
    if (serving && h->view <= view) return 0;
    srv->refused++;
    if (now >= srv->last_refuse_log_ms + 10000) { /* one line per 10 s */
        MC_LOGW(TAG, "peer %s: %s refused: %s (%llu refused since the last line)", c->peer,
                mc_mp_method_name(h->method),
                serving ? "the client knows a newer leader view" : "this master is not the leader",
                (unsigned long long)srv->refused);
        srv->last_refuse_log_ms = now;
        srv->refused = 0;
    }
    refuse_and_close(c, h, MC_ERR_UNAVAILABLE_IN_CURRENT_STATUS);
    return 1;
}

static void job_work(uv_work_t *w)
{
    job_t *j = w->data;
    rpc_ctx_t x = {j->srv, &j->arena, &j->out, j->peer, NULL, NULL};
    if (serve(&x, &j->hdr, j->payload, j->hdr.length)) {
        j->bad = 1;
        j->bad_what = x.bad_what;
        j->bad_why = x.bad_why;
    }
}

static void job_done(uv_work_t *w, int status)
{
    job_t *j = w->data;
    conn_t *c = j->conn;
    (void)status;
    if (c && !c->closing) {
        c->job = NULL;
        if (j->bad) {
            bad_frame(c, j->bad_what, j->bad_why);
        } else {
            mc_mp_buf_free(&c->out); /* empty: parse_frames flushed before queueing */
            c->out = j->out;
            memset(&j->out, 0, sizeof j->out);
            c->active_ms = mc_now_ms();
            flush(c);
            if (!c->closing && !c->paused) {
                uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
                parse_frames(c); /* requests that arrived before the pause */
                if (c->tls) tls_pump(c);
            }
        }
    } else if (c) {
        c->job = NULL;
    }
    free(j->payload);
    mc_mp_arena_free(&j->arena);
    mc_mp_buf_free(&j->out);
    free(j);
}

/* Queues the scan request h/p on the thread pool; c reads nothing more until
 * it is answered. Returns 0, or -1 when c was closed. */
static int queue_job(conn_t *c, const mc_mp_hdr_t *h, const uint8_t *p)
{
    job_t *j = calloc(1, sizeof *j);
    if (j) j->payload = malloc(h->length ? h->length : 1);
    if (!j || !j->payload) {
        free(j);
        bad_frame(c, "request", "out of memory");
        return -1;
    }
    memcpy(j->payload, p, h->length);
    j->hdr = *h;
    j->out.view = c->out.view;
    j->srv = c->srv;
    j->conn = c;
    j->work.data = j;
    snprintf(j->peer, sizeof j->peer, "%s", c->peer);
    if (uv_queue_work(&c->srv->loop, &j->work, job_work, job_done)) {
        free(j->payload);
        free(j);
        bad_frame(c, "request", "cannot queue it");
        return -1;
    }
    c->job = j;
    uv_read_stop((uv_stream_t *)&c->tcp);
    return 0;
}

/* Serves every complete frame in c->buf; keeps a partial one. Stops at a scan
 * request, which goes to the thread pool (job_done calls this again). */
static void parse_frames(conn_t *c)
{
    size_t off = 0;
    c->need = 0;
    while (!c->closing && !c->job && c->len - off >= MC_MP_HDR_LEN) {
        mc_mp_hdr_t h;
        const char *why;
        if (mc_mp_hdr_decode(c->buf + off, c->len - off, &h, &why)) {
            if (!c->any_frame && !c->tls && mc_tls_looks_like_tls(c->buf, c->len))
                bad_frame(c, "TLS handshake on a plaintext listener",
                          "the peer expects TLS and this master has none (start it with "
                          "--tls_cert_file/--tls_key_file, or connect without TLS)");
            else
                bad_frame(c, "bad frame", why);
            return;
        }
        c->any_frame = 1;
        if (h.method & MC_MP_REPLY) {
            bad_frame(c, "bad frame", "a reply frame sent to the master");
            return;
        }
        size_t need = MC_MP_HDR_LEN + (size_t)h.length;
        if (c->len - off < need) {
            c->need = need;
            break;
        }
        c->active_ms = mc_now_ms();
        const uint8_t *p = c->buf + off + MC_MP_HDR_LEN;
        off += need;
        int a = auth_step(c, &h, p);
        if (a < 0) break;
        if (a > 0) continue;
        if (gate_refuses(c, &h)) break;
        if (is_scan(h.method)) {
            flush(c); /* replies before it go first */
            if (c->closing || queue_job(c, &h, p)) return;
            break;
        }
        rpc_ctx_t x = {c->srv, &c->arena, &c->out, c->peer, NULL, NULL};
        if (serve(&x, &h, p, h.length)) {
            bad_frame(c, x.bad_what, x.bad_why);
            return;
        }
    }
    if (c->closing) return;
    memmove(c->buf, c->buf + off, c->len - off);
    c->len -= off;
    if (!c->len) c->need = 0;
    if (c->need && off) c->frame_start_ms = mc_now_ms(); /* a new frame started in this read */
    if (c->cap > CONN_BUF_MIN && c->len <= CONN_BUF_MIN && c->need <= CONN_BUF_MIN)
        conn_resize(c, CONN_BUF_MIN); /* shrink after a big frame */
    flush(c);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = s->data;
    if (nread < 0) {
        if (nread == UV_ENOBUFS) /* alloc_cb said why */
            MC_LOGD(TAG, "peer %s: no buffer for its frame; closing the connection", c->peer);
        else if (nread != UV_EOF)
            MC_LOGD(TAG, "peer %s: read failed: %s", c->peer, uv_strerror((int)nread));
        else if (c->len)
            MC_LOGW(TAG, "peer %s: closed in the middle of a frame (%zu bytes)", c->peer, c->len);
        conn_close(c);
        return;
    }
    if (nread == 0 || c->closing) return;
    if (c->tls) {
        if (mc_tls_conn_feed(c->tls, buf->base, (size_t)nread)) {
            bad_frame(c, "TLS", "out of memory");
            return;
        }
        if (!c->len) c->frame_start_ms = mc_now_ms(); /* a handshake is held to it too */
        tls_pump(c);
        return;
    }
    if (c->len == 0) c->frame_start_ms = mc_now_ms();
    c->len += (size_t)nread;
    parse_frames(c);
}

/* Decrypts what c's TLS session holds into c->buf and serves it, while c
 * reads (not closing, no scan running, not paused), then sends what the
 * session has for the peer. A failed handshake or record is one line naming
 * the peer; its alert goes out before the connection closes. */
static void tls_pump(conn_t *c)
{
    while (!c->closing && !c->job && !c->paused) {
        conn_room(c);
        if (c->cap == c->len) {
            bad_frame(c, "frame", "no buffer for it");
            return;
        }
        ssize_t n = mc_tls_conn_read(c->tls, c->buf + c->len, c->cap - c->len);
        if (n == 0) break;
        if (n < 0) {
            if (n == -EPIPE) {
                conn_close(c); /* the peer's close_notify */
                return;
            }
            mc_tls_refused(&c->srv->tls_refusals, TAG, c->peer, mc_tls_conn_why(c->tls));
            tls_send_out(c); /* the alert, then close once it is written */
            if (c->closing) return;
            uv_read_stop((uv_stream_t *)&c->tcp);
            if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) == 0)
                conn_close(c);
            else
                c->close_after_write = 1;
            return;
        }
        if (c->len == 0) c->frame_start_ms = mc_now_ms();
        c->len += (size_t)n;
        parse_frames(c);
    }
    tls_send_out(c);
}

/* At the connection cap: closes the connection idle longest when it has been
 * idle IDLE_EVICT_MS, making room. Returns 1 when room was made. */
static int make_room(mc_master_rpc_t *srv, uint64_t now)
{
    conn_t *oldest = NULL;
    for (conn_t *c = srv->conns; c; c = c->next)
        if (!c->job && !c->len && (!oldest || c->active_ms < oldest->active_ms)) oldest = c;
    if (!oldest || now < oldest->active_ms + IDLE_EVICT_MS) return 0;
    MC_LOGD(TAG, "peer %s: closed (idle %llu ms) to make room at the connection cap", oldest->peer,
            (unsigned long long)(now - oldest->active_ms));
    conn_close(oldest);
    return 1;
}

static void on_conn(uv_stream_t *l, int status)
{
    mc_master_rpc_t *srv = l->data;
    if (status < 0) {
        MC_LOGW(TAG, "accept failed: %s", uv_strerror(status));
        return;
    }
    conn_t *c = calloc(1, sizeof *c);
    if (!c) return;
    c->srv = srv;
    uv_tcp_init(&srv->loop, &c->tcp);
    c->tcp.data = c;
    c->next = srv->conns;
    if (srv->conns) srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    c->active_ms = mc_now_ms();
    if (uv_accept(l, (uv_stream_t *)&c->tcp)) {
        conn_close(c);
        return;
    }
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
        mc_sock_peer_str(fd, c->peer, sizeof c->peer);
    else
        snprintf(c->peer, sizeof c->peer, "?");
    if (srv->nconns > srv->max_conns && !make_room(srv, c->active_ms)) {
        srv->cap_refused++;
        if (c->active_ms - srv->last_cap_log_ms >= 10000) { /* one line per 10 s */
            MC_LOGW(TAG,
                    "connection cap of %zu reached (MC_MASTER_RPC_MAX_CONNECTIONS): refused "
                    "peer %s and %llu more since the last line",
                    srv->max_conns, c->peer, (unsigned long long)(srv->cap_refused - 1));
            srv->last_cap_log_ms = c->active_ms;
            srv->cap_refused = 0;
        }
        conn_close(c);
        return;
    }
    if (srv->tls) {
        char err[256];
        if (!(c->tls = mc_tls_conn_new(1, NULL, err, sizeof err))) {
            MC_LOGW(TAG, "peer %s: %s; closing the connection", c->peer, err);
            conn_close(c);
            return;
        }
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

/* ---------------------------------------------------------------- timer */

/* Closes connections idle past the idle timeout (one line per sweep for all
 * of them) and frames incomplete past the frame timeout (one line each). */
static void sweep(mc_master_rpc_t *srv, uint64_t now)
{
    size_t idle = 0;
    char first[64] = "";
    for (conn_t *c = srv->conns, *next; c; c = next) {
        next = c->next;
        if (c->job) continue;
        if (c->len && now > c->frame_start_ms + srv->frame_timeout_ms) {
            MC_LOGW(TAG,
                    "peer %s: frame incomplete %llu ms after its first byte (%zu of %zu bytes; "
                    "MC_MASTER_RPC_FRAME_TIMEOUT_S); closing the connection",
                    c->peer, (unsigned long long)(now - c->frame_start_ms), c->len,
                    c->need ? c->need : (size_t)MC_MP_HDR_LEN);
            conn_close(c);
        } else if (!c->len && now > c->active_ms + srv->idle_timeout_ms) {
            if (!idle++) snprintf(first, sizeof first, "%s", c->peer);
            conn_close(c);
        }
    }
    if (idle)
        MC_LOGI(TAG,
                "closed %zu connections idle for %llu s (MC_MASTER_RPC_IDLE_TIMEOUT_S), "
                "peer %s among them",
                idle, (unsigned long long)(srv->idle_timeout_ms / 1000), first);
}

/* Every LOOP_TIMER_MS: tells the core the loop turns (or how long it stalled)
 * and sweeps the connections once a second. */
static void timer_cb(uv_timer_t *t)
{
    mc_master_rpc_t *srv = t->data;
    uint64_t now = mc_now_ms();
    uint64_t late = now - srv->last_timer_ms;
    if (late > LOOP_TIMER_MS + 1000) /* the loop stalled: it was not the peers' fault */
        for (conn_t *c = srv->conns; c; c = c->next) { /* a read may have come first */
            c->active_ms = c->active_ms + late < now ? c->active_ms + late : now;
            c->frame_start_ms = c->frame_start_ms + late < now ? c->frame_start_ms + late : now;
        }
    mc_master_note_loop(srv->m, now, srv->last_timer_ms);
    srv->last_timer_ms = now;
    if (now - srv->last_sweep_ms >= SWEEP_EVERY_MS) {
        srv->last_sweep_ms = now;
        sweep(srv, now);
    }
}

/* ---------------------------------------------------------------- lifecycle */

static void drop_cb(uv_async_t *a)
{
    mc_master_rpc_t *srv = a->data;
    size_t n = srv->nconns;
    while (srv->conns)
        conn_close(srv->conns);
    if (n) MC_LOGI(TAG, "closed all %zu client connections (no longer the leader)", n);
}

void mc_master_rpc_drop_clients(mc_master_rpc_t *r)
{
    if (r) uv_async_send(&r->drop);
}

static void stop_cb(uv_async_t *a)
{
    mc_master_rpc_t *srv = a->data;
    while (srv->conns)
        conn_close(srv->conns);
    uv_close((uv_handle_t *)&srv->listener, NULL);
    uv_close((uv_handle_t *)&srv->stop, NULL);
    uv_close((uv_handle_t *)&srv->drop, NULL);
    uv_close((uv_handle_t *)&srv->timer, NULL);
    mc_master_note_loop(srv->m, 0, 0); /* no loop to watch any more */
}

static void loop_main(void *arg)
{
    mc_master_rpc_t *srv = arg;
    uv_run(&srv->loop, UV_RUN_DEFAULT);
}

/* libuv writes with write(2): a peer that resets must not kill the process
 * with SIGPIPE. Ignores it unless the embedder installed a handler. */
static void ignore_sigpipe(void)
{
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
}

int mc_master_rpc_start(mc_master_t *m, const char *host, uint16_t port, mc_master_rpc_t **out)
{
    return mc_master_rpc_start_gated(m, host, port, NULL, NULL, out);
}

int mc_master_rpc_start_gated(mc_master_t *m, const char *host, uint16_t port,
                              mc_master_rpc_gate_fn gate, void *gate_arg, mc_master_rpc_t **out)
{
    *out = NULL;
    ignore_sigpipe();
    mc_master_rpc_t *srv = calloc(1, sizeof *srv);
    if (!srv) return MC_ERR_INTERNAL;
    srv->m = m;
    srv->gate = gate;
    srv->gate_arg = gate_arg;
    srv->key = mc_auth_cluster_key();
    srv->wq_high =
        (size_t)mc_env_int("MC_MASTER_RPC_MAX_QUEUED", WQ_HIGH_DEFAULT, 4096, (int64_t)1 << 40);
    srv->wq_low = srv->wq_high / 4;
    srv->max_conns = (size_t)mc_env_int("MC_MASTER_RPC_MAX_CONNECTIONS", 8192, 1, 1 << 24);
    srv->max_buffered = (size_t)mc_env_int("MC_MASTER_RPC_MAX_BUFFERED", (int64_t)1 << 30, 1 << 20,
                                           (int64_t)1 << 40);
    srv->idle_timeout_ms =
        (uint64_t)mc_env_int("MC_MASTER_RPC_IDLE_TIMEOUT_S", 120, 1, 86400 * 365) * 1000;
    srv->frame_timeout_ms =
        (uint64_t)mc_env_int("MC_MASTER_RPC_FRAME_TIMEOUT_S", 30, 1, 86400) * 1000;
    srv->last_timer_ms = srv->last_sweep_ms = mc_now_ms();
    if (mc_tls_files()) { /* a server context must exist: try one connection */
        char err[256];
        mc_tls_conn_t *t = mc_tls_conn_new(1, NULL, err, sizeof err);
        srv->tls_rx = t ? malloc(TLS_RX_LEN) : NULL;
        mc_tls_conn_free(t);
        if (!srv->tls_rx) {
            MC_LOGE(TAG, "cannot serve TLS on %s:%u: %s", host ? host : "*", port,
                    t ? "out of memory" : err);
            free(srv);
            return MC_ERR_RPC_FAIL;
        }
        srv->tls = 1;
    }
    int fd = -1, e;
    e = mc_sock_listen(host, port, 511, &fd, &srv->port);
    if (e) {
        MC_LOGE(TAG, "cannot listen on %s:%u: %s", host ? host : "*", port, strerror(-e));
        free(srv->tls_rx);
        free(srv);
        return MC_ERR_RPC_FAIL;
    }
    if ((e = uv_loop_init(&srv->loop))) goto fail_fd;
    uv_tcp_init(&srv->loop, &srv->listener);
    srv->listener.data = srv;
    if ((e = uv_tcp_open(&srv->listener, fd)) == 0) fd = -1; /* the listener owns it */
    if (e || (e = uv_listen((uv_stream_t *)&srv->listener, 511, on_conn))) {
        uv_close((uv_handle_t *)&srv->listener, NULL);
        goto fail_loop;
    }
    uv_async_init(&srv->loop, &srv->stop, stop_cb);
    srv->stop.data = srv;
    uv_async_init(&srv->loop, &srv->drop, drop_cb);
    srv->drop.data = srv;
    uv_timer_init(&srv->loop, &srv->timer);
    srv->timer.data = srv;
    uv_timer_start(&srv->timer, timer_cb, LOOP_TIMER_MS, LOOP_TIMER_MS);
    if ((e = uv_thread_create(&srv->thread, loop_main, srv))) {
        stop_cb(&srv->stop);
        goto fail_loop;
    }
    mc_auth_note_listener(TAG, "master RPC", host, srv->port);
    if (srv->tls) mc_tls_note_listener(TAG, "master RPC", host, srv->port);
    *out = srv;
    return 0;
fail_loop:
    uv_run(&srv->loop, UV_RUN_DEFAULT);
    uv_loop_close(&srv->loop);
fail_fd:
    if (fd >= 0) close(fd);
    MC_LOGE(TAG, "cannot serve on %s:%u: %s", host ? host : "*", port, uv_strerror(e));
    free(srv->tls_rx);
    free(srv);
    return MC_ERR_RPC_FAIL;
}

uint16_t mc_master_rpc_port(const mc_master_rpc_t *r)
{
    return r->port;
}

void mc_master_rpc_stop(mc_master_rpc_t *r)
{
    if (!r) return;
    uv_async_send(&r->stop);
    uv_thread_join(&r->thread);
    uv_loop_close(&r->loop);
    free(r->tls_rx);
    free(r);
}

/* ---------------------------------------------------------------- metrics */

/* Metric stem of a method: upstream's names where it has them. */
static const char *metric_stem(unsigned method, char *buf, size_t cap)
{
    switch (method) {
    case MC_MP_GET_REPLICAS:
        return "get_replica_list";
    case MC_MP_BATCH_GET_REPLICAS:
        return "batch_get_replica_list";
    case MC_MP_EXIST:
        return "exist_key";
    case MC_MP_BATCH_EXIST:
        return "batch_exist_key";
    default:
        break;
    }
    const char *name = mc_mp_method_name(method);
    if (!name) return NULL;
    size_t i = 0;
    for (; name[i] && i + 1 < cap; i++)
        buf[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] - 'A' + 'a' : name[i]);
    buf[i] = 0;
    return buf;
}

static void rpc_metric(FILE *f, const char *stem, const char *what, const char *help, uint64_t v)
{
    fprintf(f, "# HELP master_%s_%s_total %s\n# TYPE master_%s_%s_total counter\n", stem, what,
            help, stem, what);
    fprintf(f, "master_%s_%s_total %" PRIu64 "\n", stem, what, v);
}

void mc_master_rpc_metrics(FILE *out, void *rpc)
{
    mc_master_rpc_t *r = rpc;
    char buf[48];
    for (unsigned m = 0; m < RPC_METHODS; m++) {
        const char *stem = metric_stem(m, buf, sizeof buf);
        if (!stem) continue;
        rpc_metric(out, stem, "requests", "Requests served",
                   atomic_load_explicit(&r->n_req[m], memory_order_relaxed));
        rpc_metric(out, stem, "failures", "Requests answered with an error status",
                   atomic_load_explicit(&r->n_fail[m], memory_order_relaxed));
        if (strncmp(stem, "batch_", 6) != 0) continue;
        rpc_metric(out, stem, "items", "Keys in batch requests",
                   atomic_load_explicit(&r->n_items[m], memory_order_relaxed));
        rpc_metric(out, stem, "failed_items", "Keys of batch requests that failed (not found, ...)",
                   atomic_load_explicit(&r->n_failed_items[m], memory_order_relaxed));
    }
    mc_hist_write_header(out, "master_rpc_duration_seconds",
                         "Time the master spent on one request, decode to reply encoded");
    for (unsigned m = 0; m < RPC_METHODS; m++) {
        const char *stem = metric_stem(m, buf, sizeof buf);
        if (!stem) continue;
        char label[80];
        snprintf(label, sizeof label, "method=\"%s\"", stem);
        mc_hist_write(out, "master_rpc_duration_seconds", label, &r->lat[m]);
    }
}
