/* master_rpc.c: the master's RPC server. N libuv loops (--rpc_thread_num), each
 * on its own thread. The first one also accepts: it hands each new connection
 * to the loops in turn (a queue and a uv_async each), and a connection lives
 * on its loop from then on. The core
 * is thread-safe (sharded index, its own locks), so loops share nothing but
 * the counters, the buffer budget and the connection cap (atomics). Each
 * connection reads into its own buffer (alloc_cb
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
 * into the connection's TLS session (a buffer per loop receives it), the
 * plaintext it yields lands in the receive buffer as above (tls_pump), and
 * replies are encrypted on flush. A peer that sends plaintext, or fails the
 * handshake, is closed with one line naming it and the cause. */
#include "master_rpc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "base_env.h"
#include "base_hist.h"
#include "base_log.h"
#include "base_time.h"
#include "master_proto.h"
#include "master_rpc_int.h"
#include "net_auth.h"
#include "net_sock.h"
#include "net_tls.h"

#define TAG "master_rpc"
#define CONN_BUF_MIN 65536
/* Reply bytes queued on one connection that pause reading its requests
 * (MC_MASTER_RPC_MAX_QUEUED, default 64 MiB); reading resumes below a quarter. */
#define WQ_HIGH_DEFAULT (64 << 20)

#define LOOP_TIMER_MS 100
#define SWEEP_EVERY_MS 1000
#define IDLE_EVICT_MS 5000
#define MAX_LOOPS 64
#define TLS_RX_LEN 65536

struct job;
struct rpc_loop;

typedef struct conn {
    uv_tcp_t tcp;
    mc_master_rpc_t *srv;
    struct rpc_loop *lp; /* the loop it lives on */
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

/* One event loop and what only its thread touches. */
typedef struct rpc_loop {
    mc_master_rpc_t *srv;
    unsigned idx;
    uv_loop_t loop;
    uint8_t *tls_rx; /* TLS_RX_LEN bytes (TLS only): what libuv read, before decryption */
    uv_async_t adopt; /* sockets accepted for this loop wait in afd */
    pthread_mutex_t amu;
    int *afd;
    size_t nafd, cafd;
    uv_async_t stop;
    uv_async_t drop; /* mc_master_rpc_drop_clients */
    uv_timer_t timer;
    uv_thread_t thread;
    int running;
    conn_t *conns;
    _Atomic size_t nconns; /* read by the metrics */
    uint64_t refused; /* requests refused by the gate since the last log line */
    uint64_t last_refuse_log_ms;
    uint64_t last_timer_ms, last_sweep_ms, last_cap_log_ms;
    uint64_t cap_refused; /* connections refused at the cap since the last log line */
} rpc_loop_t;

struct mc_master_rpc {
    mc_master_t *m;
    mc_master_rpc_gate_fn gate; /* called from every loop's thread */
    void *gate_arg;
    const mc_auth_key_t *key; /* the cluster key, NULL: connections need no proof */
    mc_auth_refusals_t auth_refusals;
    int tls; /* connections are TLS (net_tls.h) */
    mc_auth_refusals_t tls_refusals;
    uint16_t port;
    size_t wq_high, wq_low;
    size_t max_conns, max_buffered;
    _Atomic size_t nconns;   /* of every loop */
    _Atomic size_t buffered; /* receive buffer bytes of every connection */
    uint64_t idle_timeout_ms, frame_timeout_ms;
    unsigned nloops;
    rpc_loop_t *loops;
    _Atomic uint64_t *alive_ms; /* per loop: its timer's last turn */
    /* the listening socket, watched by loop 0 (accept_cb) */
    int lfd;
    uv_poll_t accept_poll;
    int accept_paused; /* out of descriptors: loop 0's timer resumes accepting */
    unsigned next_loop;
    uint64_t last_accept_log_ms;
    mc_rpc_stats_t st; /* per method (master_rpc_int.h) */
};

/* ---------------------------------------------------------------- conns */

static void conn_free_cb(uv_handle_t *h)
{
    conn_t *c = h->data;
    if (c->job) c->job->conn = NULL; /* its reply is dropped when it ends */
    atomic_fetch_sub(&c->srv->buffered, c->cap);
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
        c->lp->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->lp->nconns--;
    atomic_fetch_sub(&c->srv->nconns, 1);
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
    if (ncap > c->cap) { /* reserve the growth in the budget first: loops race for it */
        size_t more = ncap - c->cap;
        if (atomic_fetch_add(&srv->buffered, more) + more > srv->max_buffered) {
            atomic_fetch_sub(&srv->buffered, more);
            return -1;
        }
    }
    uint8_t *nb = realloc(c->buf, ncap);
    if (!nb) {
        if (ncap > c->cap) atomic_fetch_sub(&srv->buffered, ncap - c->cap);
        return -1;
    }
    if (ncap < c->cap) atomic_fetch_sub(&srv->buffered, c->cap - ncap);
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
                c->peer, atomic_load(&c->srv->buffered));
    if (c->cap && c->len == c->cap && c->need > c->cap) {
        size_t ncap = c->cap * 2 < c->need ? c->cap * 2 : c->need;
        if (conn_resize(c, ncap))
            MC_LOGW(TAG,
                    "peer %s: no memory for %zu more bytes of a %zu-byte frame "
                    "(MC_MASTER_RPC_MAX_BUFFERED: %zu bytes buffered in all)",
                    c->peer, ncap - c->cap, c->need, atomic_load(&c->srv->buffered));
    }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    conn_t *c = h->data;
    (void)suggested;
    if (c->tls) { /* ciphertext: decrypted into c->buf by tls_pump */
        out->base = (char *)c->lp->tls_rx;
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
    rpc_loop_t *lp = c->lp;
    if (!srv->gate) return 0;
    uint64_t view = 0, now = c->active_ms;
    int serving = srv->gate(srv->gate_arg, now, &view);
    c->out.view = view;
    if (serving && h->view <= view) return 0;
    lp->refused++;
    if (now >= lp->last_refuse_log_ms + 10000) { /* one line per 10 s (per loop) */
        MC_LOGW(TAG, "peer %s: %s refused: %s (%llu refused since the last line)", c->peer,
                mc_mp_method_name(h->method),
                serving ? "the client knows a newer leader view" : "this master is not the leader",
                (unsigned long long)lp->refused);
        lp->last_refuse_log_ms = now;
        lp->refused = 0;
    }
    refuse_and_close(c, h, MC_ERR_UNAVAILABLE_IN_CURRENT_STATUS);
    return 1;
}

static void job_work(uv_work_t *w)
{
    job_t *j = w->data;
    rpc_ctx_t x = {j->srv->m, &j->srv->st, &j->arena, &j->out, j->peer, NULL, NULL};
    if (mc__rpc_serve(&x, &j->hdr, j->payload, j->hdr.length)) {
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
    if (uv_queue_work(&c->lp->loop, &j->work, job_work, job_done)) {
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
        rpc_ctx_t x = {c->srv->m, &c->srv->st, &c->arena, &c->out, c->peer, NULL, NULL};
        if (mc__rpc_serve(&x, &h, p, h.length)) {
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

/* At the connection cap: closes the connection of lp idle longest when it has
 * been idle IDLE_EVICT_MS, making room. Returns 1 when room was made. */
static int make_room(rpc_loop_t *lp, uint64_t now)
{
    conn_t *oldest = NULL;
    for (conn_t *c = lp->conns; c; c = c->next)
        if (!c->job && !c->len && (!oldest || c->active_ms < oldest->active_ms)) oldest = c;
    if (!oldest || now < oldest->active_ms + IDLE_EVICT_MS) return 0;
    MC_LOGD(TAG, "peer %s: closed (idle %llu ms) to make room at the connection cap", oldest->peer,
            (unsigned long long)(now - oldest->active_ms));
    conn_close(oldest);
    return 1;
}

/* Serves socket fd on lp (lp's thread), or refuses it at the connection cap. */
static void adopt_one(rpc_loop_t *lp, int fd)
{
    mc_master_rpc_t *srv = lp->srv;
    conn_t *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->srv = srv;
    c->lp = lp;
    uv_tcp_init(&lp->loop, &c->tcp);
    c->tcp.data = c;
    c->next = lp->conns;
    if (lp->conns) lp->conns->prev = c;
    lp->conns = c;
    lp->nconns++;
    size_t total = atomic_fetch_add(&srv->nconns, 1) + 1;
    c->active_ms = mc_now_ms();
    mc_sock_peer_str(fd, c->peer, sizeof c->peer);
    if (uv_tcp_open(&c->tcp, fd)) {
        close(fd);
        conn_close(c);
        return;
    }
    if (total > srv->max_conns && !make_room(lp, c->active_ms)) {
        lp->cap_refused++;
        if (c->active_ms - lp->last_cap_log_ms >= 10000) { /* one line per 10 s */
            MC_LOGW(TAG,
                    "connection cap of %zu reached (MC_MASTER_RPC_MAX_CONNECTIONS): refused "
                    "peer %s and %llu more since the last line",
                    srv->max_conns, c->peer, (unsigned long long)(lp->cap_refused - 1));
            lp->last_cap_log_ms = c->active_ms;
            lp->cap_refused = 0;
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

static void adopt_cb(uv_async_t *a)
{
    rpc_loop_t *lp = a->data;
    for (;;) {
        pthread_mutex_lock(&lp->amu);
        int fd = lp->nafd ? lp->afd[--lp->nafd] : -1;
        pthread_mutex_unlock(&lp->amu);
        if (fd < 0) return;
        adopt_one(lp, fd);
    }
}

/* Hands fd to lp. Returns 0, or -1 (fd not taken). */
static int hand_over(rpc_loop_t *lp, int fd)
{
    pthread_mutex_lock(&lp->amu);
    if (lp->nafd == lp->cafd) {
        size_t nc = lp->cafd ? lp->cafd * 2 : 16;
        int *n = realloc(lp->afd, nc * sizeof *n);
        if (!n) {
            pthread_mutex_unlock(&lp->amu);
            return -1;
        }
        lp->afd = n;
        lp->cafd = nc;
    }
    lp->afd[lp->nafd++] = fd;
    pthread_mutex_unlock(&lp->amu);
    uv_async_send(&lp->adopt);
    return 0;
}

/* Loop 0: the listening socket is readable. Accepts what waits and deals the
 * sockets to the loops in turn (its own ones directly). */
static void accept_cb(uv_poll_t *h, int status, int events)
{
    mc_master_rpc_t *srv = h->data;
    (void)events;
    if (status < 0) return;
    for (int i = 0; i < 64; i++) { /* then let the loop serve its connections */
        int fd = accept4(srv->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
                errno == ECONNABORTED)
                return;
            uint64_t now = mc_now_ms();
            if (now >= srv->last_accept_log_ms + 10000) {
                MC_LOGW(TAG, "accept failed: %s; accepting again in %d ms", strerror(errno),
                        LOOP_TIMER_MS);
                srv->last_accept_log_ms = now;
            }
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                uv_poll_stop(h); /* it would stay readable: loop 0's timer resumes it */
                srv->accept_paused = 1;
            }
            return;
        }
        rpc_loop_t *lp = &srv->loops[srv->next_loop++ % srv->nloops];
        if (lp == &srv->loops[0])
            adopt_one(lp, fd);
        else if (hand_over(lp, fd))
            close(fd);
    }
}

/* ---------------------------------------------------------------- timer */

/* Closes connections idle past the idle timeout (one line per sweep for all
 * of them) and frames incomplete past the frame timeout (one line each). */
static void sweep(rpc_loop_t *lp, uint64_t now)
{
    mc_master_rpc_t *srv = lp->srv;
    size_t idle = 0;
    char first[64] = "";
    for (conn_t *c = lp->conns, *next; c; c = next) {
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

/* Every LOOP_TIMER_MS: tells the core the loops turn (or how long this one
 * stalled) and sweeps the connections once a second. The core is told the
 * last turn of the slowest loop: its clients' heartbeats wait on that one. */
static void timer_cb(uv_timer_t *t)
{
    rpc_loop_t *lp = t->data;
    mc_master_rpc_t *srv = lp->srv;
    uint64_t now = mc_now_ms();
    uint64_t late = now - lp->last_timer_ms;
    if (late > LOOP_TIMER_MS + 1000) /* the loop stalled: it was not the peers' fault */
        for (conn_t *c = lp->conns; c; c = c->next) { /* a read may have come first */
            c->active_ms = c->active_ms + late < now ? c->active_ms + late : now;
            c->frame_start_ms = c->frame_start_ms + late < now ? c->frame_start_ms + late : now;
        }
    atomic_store(&srv->alive_ms[lp->idx], now);
    uint64_t oldest = now;
    for (unsigned i = 0; i < srv->nloops; i++) {
        uint64_t a = atomic_load(&srv->alive_ms[i]);
        if (a && a < oldest) oldest = a;
    }
    mc_master_note_loop(srv->m, now, lp->last_timer_ms, oldest);
    if (lp->idx == 0 && srv->accept_paused && !uv_is_closing((uv_handle_t *)&srv->accept_poll)) {
        srv->accept_paused = 0;
        uv_poll_start(&srv->accept_poll, UV_READABLE, accept_cb);
    }
    lp->last_timer_ms = now;
    if (now - lp->last_sweep_ms >= SWEEP_EVERY_MS) {
        lp->last_sweep_ms = now;
        sweep(lp, now);
    }
}

/* ---------------------------------------------------------------- lifecycle */

static void drop_cb(uv_async_t *a)
{
    rpc_loop_t *lp = a->data;
    size_t n = lp->nconns;
    while (lp->conns)
        conn_close(lp->conns);
    if (n)
        MC_LOGI(TAG, "closed %zu client connections of loop %u (no longer the leader)", n,
                lp->idx);
}

void mc_master_rpc_drop_clients(mc_master_rpc_t *r)
{
    if (!r) return;
    for (unsigned i = 0; i < r->nloops; i++)
        uv_async_send(&r->loops[i].drop);
}

static void stop_cb(uv_async_t *a)
{
    rpc_loop_t *lp = a->data;
    while (lp->conns)
        conn_close(lp->conns);
    if (lp->idx == 0) uv_close((uv_handle_t *)&lp->srv->accept_poll, NULL);
    adopt_cb(&lp->adopt); /* sockets handed over meanwhile: served, then closed below */
    while (lp->conns)
        conn_close(lp->conns);
    uv_close((uv_handle_t *)&lp->adopt, NULL);
    uv_close((uv_handle_t *)&lp->stop, NULL);
    uv_close((uv_handle_t *)&lp->drop, NULL);
    uv_close((uv_handle_t *)&lp->timer, NULL);
    atomic_store(&lp->srv->alive_ms[lp->idx], 0);
    mc_master_note_loop(lp->srv->m, 0, 0, 0); /* no loop to watch any more */
}

static void loop_main(void *arg)
{
    rpc_loop_t *lp = arg;
    uv_run(&lp->loop, UV_RUN_DEFAULT);
}

/* libuv writes with write(2): a peer that resets must not kill the process
 * with SIGPIPE. Ignores it unless the embedder installed a handler. */
static void ignore_sigpipe(void)
{
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
}

/* Sets up loop lp (loop 0 also watches the listening socket) and starts its
 * thread. Returns 0 or a libuv error (lp is then torn down). */
static int loop_start(mc_master_rpc_t *srv, rpc_loop_t *lp, unsigned idx)
{
    lp->srv = srv;
    lp->idx = idx;
    lp->last_timer_ms = lp->last_sweep_ms = mc_now_ms();
    pthread_mutex_init(&lp->amu, NULL);
    if (srv->tls && !(lp->tls_rx = malloc(TLS_RX_LEN))) return UV_ENOMEM;
    int e;
    if ((e = uv_loop_init(&lp->loop))) return e;
    if (idx == 0) {
        if ((e = uv_poll_init(&lp->loop, &srv->accept_poll, srv->lfd))) {
            uv_loop_close(&lp->loop);
            return e;
        }
        srv->accept_poll.data = srv;
        uv_poll_start(&srv->accept_poll, UV_READABLE, accept_cb);
    }
    uv_async_init(&lp->loop, &lp->adopt, adopt_cb);
    lp->adopt.data = lp;
    uv_async_init(&lp->loop, &lp->stop, stop_cb);
    lp->stop.data = lp;
    uv_async_init(&lp->loop, &lp->drop, drop_cb);
    lp->drop.data = lp;
    uv_timer_init(&lp->loop, &lp->timer);
    lp->timer.data = lp;
    uv_timer_start(&lp->timer, timer_cb, LOOP_TIMER_MS, LOOP_TIMER_MS);
    if ((e = uv_thread_create(&lp->thread, loop_main, lp))) {
        stop_cb(&lp->stop);
        uv_run(&lp->loop, UV_RUN_DEFAULT);
        uv_loop_close(&lp->loop);
        return e;
    }
    lp->running = 1;
    return 0;
}

static void loop_join(rpc_loop_t *lp)
{
    if (!lp->running) return;
    uv_thread_join(&lp->thread);
    uv_loop_close(&lp->loop);
    lp->running = 0;
}

/* Loop 0 first: once it has stopped, nobody hands the others a socket. */
static void loops_stop(mc_master_rpc_t *r)
{
    if (r->loops[0].running) uv_async_send(&r->loops[0].stop);
    loop_join(&r->loops[0]);
    for (unsigned i = 1; i < r->nloops; i++)
        if (r->loops[i].running) uv_async_send(&r->loops[i].stop);
    for (unsigned i = 1; i < r->nloops; i++)
        loop_join(&r->loops[i]);
}

static void rpc_free(mc_master_rpc_t *r)
{
    for (unsigned i = 0; r->loops && i < r->nloops; i++) {
        for (size_t k = 0; k < r->loops[i].nafd; k++)
            close(r->loops[i].afd[k]);
        free(r->loops[i].afd);
        free(r->loops[i].tls_rx);
        if (r->loops[i].srv) pthread_mutex_destroy(&r->loops[i].amu);
    }
    if (r->lfd >= 0) close(r->lfd);
    free(r->loops);
    free((void *)r->alive_ms);
    free(r);
}

unsigned mc_master_rpc_default_loops(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > MAX_LOOPS ? MAX_LOOPS : (unsigned)n;
}

int mc_master_rpc_start(mc_master_t *m, const char *host, uint16_t port, mc_master_rpc_t **out)
{
    return mc_master_rpc_start_opts(m, host, port, NULL, out);
}

int mc_master_rpc_start_opts(mc_master_t *m, const char *host, uint16_t port,
                             const mc_master_rpc_opts_t *o, mc_master_rpc_t **out)
{
    *out = NULL;
    ignore_sigpipe();
    mc_master_rpc_t *srv = calloc(1, sizeof *srv);
    if (!srv) return MC_ERR_INTERNAL;
    srv->m = m;
    srv->lfd = -1;
    srv->gate = o ? o->gate : NULL;
    srv->gate_arg = o ? o->gate_arg : NULL;
    srv->nloops = o && o->loops ? o->loops : 1;
    if (srv->nloops > MAX_LOOPS) srv->nloops = MAX_LOOPS;
    srv->loops = calloc(srv->nloops, sizeof *srv->loops);
    srv->alive_ms = calloc(srv->nloops, sizeof *srv->alive_ms);
    if (!srv->loops || !srv->alive_ms) {
        rpc_free(srv);
        return MC_ERR_INTERNAL;
    }
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
    if (mc_tls_files()) { /* a server context must exist: try one connection */
        char err[256];
        mc_tls_conn_t *t = mc_tls_conn_new(1, NULL, err, sizeof err);
        int ok = t != NULL;
        mc_tls_conn_free(t);
        if (!ok) {
            MC_LOGE(TAG, "cannot serve TLS on %s:%u: %s", host ? host : "*", port, err);
            rpc_free(srv);
            return MC_ERR_RPC_FAIL;
        }
        srv->tls = 1;
    }
    int e = mc_sock_listen(host, port, 511, &srv->lfd, &srv->port);
    if (e) {
        MC_LOGE(TAG, "cannot listen on %s:%u: %s", host ? host : "*", port, strerror(-e));
        srv->lfd = -1;
        rpc_free(srv);
        return MC_ERR_RPC_FAIL;
    }
    int fl = fcntl(srv->lfd, F_GETFL);
    if (fl < 0 || fcntl(srv->lfd, F_SETFL, fl | O_NONBLOCK) < 0) e = uv_translate_sys_error(errno);
    /* loops other than 0 first: loop 0 accepts, and hands sockets to the others */
    for (unsigned k = 0; !e && k < srv->nloops; k++) {
        unsigned i = (k + 1) % srv->nloops;
        e = loop_start(srv, &srv->loops[i], i);
    }
    if (e) {
        loops_stop(srv);
        MC_LOGE(TAG, "cannot serve on %s:%u: %s", host ? host : "*", port, uv_strerror(e));
        rpc_free(srv);
        return MC_ERR_RPC_FAIL;
    }
    mc_auth_note_listener(TAG, "master RPC", host, srv->port);
    if (srv->tls) mc_tls_note_listener(TAG, "master RPC", host, srv->port);
    if (srv->nloops > 1) MC_LOGI(TAG, "serving on %u event loops", srv->nloops);
    *out = srv;
    return 0;
}

uint16_t mc_master_rpc_port(const mc_master_rpc_t *r)
{
    return r->port;
}

unsigned mc_master_rpc_loops(const mc_master_rpc_t *r)
{
    return r->nloops;
}

void mc_master_rpc_stop(mc_master_rpc_t *r)
{
    if (!r) return;
    loops_stop(r);
    rpc_free(r);
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
                   atomic_load_explicit(&r->st.n_req[m], memory_order_relaxed));
        rpc_metric(out, stem, "failures", "Requests answered with an error status",
                   atomic_load_explicit(&r->st.n_fail[m], memory_order_relaxed));
        if (strncmp(stem, "batch_", 6) != 0) continue;
        rpc_metric(out, stem, "items", "Keys in batch requests",
                   atomic_load_explicit(&r->st.n_items[m], memory_order_relaxed));
        rpc_metric(out, stem, "failed_items", "Keys of batch requests that failed (not found, ...)",
                   atomic_load_explicit(&r->st.n_failed_items[m], memory_order_relaxed));
    }
    fprintf(out, "# HELP master_rpc_loops RPC event loops (--rpc_thread_num)\n"
                 "# TYPE master_rpc_loops gauge\nmaster_rpc_loops %u\n",
            r->nloops);
    fprintf(out, "# HELP master_rpc_connections Client connections served by each event loop\n"
                 "# TYPE master_rpc_connections gauge\n");
    for (unsigned i = 0; i < r->nloops; i++)
        fprintf(out, "master_rpc_connections{loop=\"%u\"} %zu\n", i,
                atomic_load(&r->loops[i].nconns));
    mc_hist_write_header(out, "master_rpc_duration_seconds",
                         "Time the master spent on one request, decode to reply encoded");
    for (unsigned m = 0; m < RPC_METHODS; m++) {
        const char *stem = metric_stem(m, buf, sizeof buf);
        if (!stem) continue;
        char label[80];
        snprintf(label, sizeof label, "method=\"%s\"", stem);
        mc_hist_write(out, "master_rpc_duration_seconds", label, &r->st.lat[m]);
    }
}
