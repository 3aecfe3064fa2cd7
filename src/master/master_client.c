/* master_client.c: the typed, blocking client of the master RPC. A client
 * object holds up to MC_MASTER_LANES (default 4) connections, "lanes": a
 * thread always calls on the same lane (threads are dealt lanes in turn at
 * their first call), and a lane connects at its first call (the first one at
 * connect, to check the address and version). On a lane, requests from many
 * threads are pipelined: a caller registers a waiter under `mu` (getting a
 * request id), writes its whole frame under `wmu`, and then either waits on
 * its own condition variable or, when no other caller is reading the socket,
 * becomes the "leader": it reads and parses reply frames itself, hands each
 * to the waiter with the same id, and gives the role to another waiter once
 * its own reply is in (leader/follower). A lone caller thus reads its own
 * reply with no thread switch (spinning for it first when that pays: see
 * MC_RPC_SPIN_US below), and concurrent callers never wait for each other's
 * round trips. A caller whose deadline passes returns RPC_TIMEOUT (a
 * late reply is dropped; the connection stays, except for a client that
 * resolves its master through etcd or redis: the next call resolves and
 * connects again). When a connection fails, its leader fails every waiter
 * with RPC_FAIL and marks it broken; the next call on the lane connects again
 * (with the version handshake). Before sending on a lane idle for 10 ms, the
 * connection is checked for a hang-up, so a master restart costs no call.
 * The newest leader view is shared by the lanes: a lane connected under an
 * older view than one seen since reconnects at its next call, so the lane
 * that finds a new leader (the heartbeat's, say) moves them all. With TLS
 * files (net_tls.h) a connection is TLS from its first byte (mc_tls_sock_*),
 * under the secret's exchange and the version handshake. Lock order: a
 * lane's mu before its wmu, and before the client's resolve_mu. */
#include "master_client.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "base_env.h"
#include "base_log.h"
#include "base_time.h"
#include "master_proto.h"
#include "net_auth.h"
#include "net_sock.h"
#include "net_tls.h"

#define TAG "master_client"
#define RBUF_MIN 65536

typedef struct waiter {
    struct waiter *next;
    uint32_t id;
    uint8_t method;
    int done;
    int rc; /* transport result: 0 or MC_ERR_RPC_FAIL */
    mc_mp_hdr_t hdr;
    uint8_t *payload; /* malloc'd reply payload */
    pthread_cond_t cv;
} waiter_t;

/* One connection to the master and the callers pipelining on it. */
typedef struct lane {
    struct mc_master_client *mc;
    char host[256]; /* this lane's master (a resolve may move it) */
    uint16_t port;
    pthread_mutex_t mu;     /* everything below but the read buffer */
    pthread_mutex_t wmu;    /* writes on fd; fd changes under mu + wmu */
    int fd;                 /* -1: not connected */
    mc_tls_conn_t *tls;     /* fd's TLS session, NULL: plaintext; changes with fd */
    uint64_t gen;           /* connection generation */
    int broken;             /* the connection failed; the next call reconnects */
    int leader;             /* a caller is reading the socket */
    pthread_cond_t idle_cv; /* leader became 0 */
    uint32_t next_id;
    uint64_t last_ns;   /* when a request last went out (the idle check) */
    uint64_t conn_view; /* the leader view the connection was made under */
    _Atomic uint64_t rtt_ns; /* recent round trips (a moving average, written under mu) */
    waiter_t *pending;
    /* read buffer: touched only by the leader */
    uint8_t *rbuf;
    size_t rlen, rcap;
} lane_t;

struct mc_master_client {
    char host[256]; /* the master first connected to, for logs */
    uint16_t port;
    int connect_timeout_ms, timeout_ms; /* <= 0: none */
    pthread_condattr_t cattr;
    _Atomic int closing;
    /* The newest leader view seen (replies, the resolver, on any lane); sent
     * in requests. A reply with an older view comes from a replaced leader. */
    _Atomic uint64_t view;
    /* Send time (mc_now_ns) of the newest request a serving master answered
     * (mc_master_client_served_ms). */
    _Atomic uint64_t served_ns;
    mc_master_resolve_fn resolve; /* NULL: host/port are fixed */
    void *resolve_arg;
    pthread_mutex_t resolve_mu; /* one resolve at a time (its arg is not thread-safe) */
    uint64_t spin_ns; /* MC_RPC_SPIN_US: how long a leader polls for its reply before sleeping */
    size_t nlanes;
    lane_t lanes[];
};

/* A leader spins for its reply (MC_RPC_SPIN_US, recv without waiting)
 * before it sleeps in poll only when the spin is likely to pay (spin_pays):
 * no other call of the process overlapped one in the last millisecond (other
 * threads would need the core it takes; so at most one caller spins), and
 * the lane's recent round trips are shorter than the spin (a master across a
 * network answers later: the spin would only burn the core). A sleep and
 * wake-up on each side of a loopback round trip cost about as much as the
 * master's work. */
static _Atomic int in_flight; /* calls of this process waiting for replies */
static _Atomic uint64_t shared_until; /* no spin before this (mc_now_ns) */
#define SHARED_HOLD_NS 1000000ull

static int spin_pays(const lane_t *l)
{
    uint64_t spin = l->mc->spin_ns;
    return spin && atomic_load_explicit(&l->rtt_ns, memory_order_relaxed) < spin &&
           mc_now_ns() > atomic_load_explicit(&shared_until, memory_order_relaxed);
}

/* Raises the newest view seen to v (never lowers it). */
static void view_raise(mc_master_client_t *mc, uint64_t v)
{
    uint64_t cur = atomic_load(&mc->view);
    while (v > cur && !atomic_compare_exchange_weak(&mc->view, &cur, v)) {
    }
}

/* ---------------------------------------------------------------- reading */

/* Fails every pending waiter. Caller holds mu. */
static void fail_all_locked(lane_t *l)
{
    for (waiter_t *w = l->pending; w; w = w->next) {
        w->done = 1;
        w->rc = MC_ERR_RPC_FAIL;
        pthread_cond_signal(&w->cv);
    }
    l->pending = NULL;
}

/* Records the view of a reply. Returns -1 when it is older than the newest
 * one seen (the reply must not be trusted), else 0. */
static int note_view(lane_t *l, uint64_t view)
{
    if (view < atomic_load(&l->mc->view)) return -1;
    view_raise(l->mc, view);
    return 0;
}

/* Hands one reply to its waiter (payload copied first, outside the lock). */
static void deliver(lane_t *l, const mc_mp_hdr_t *h, const uint8_t *payload)
{
    uint8_t *copy = NULL;
    if (h->length) {
        copy = malloc(h->length);
        if (!copy) return; /* the waiter times out */
        memcpy(copy, payload, h->length);
    }
    pthread_mutex_lock(&l->mu);
    for (waiter_t **pp = &l->pending; *pp; pp = &(*pp)->next) {
        waiter_t *w = *pp;
        if (w->id != h->req_id) continue;
        *pp = w->next;
        w->hdr = *h;
        w->payload = copy;
        w->done = 1;
        pthread_cond_signal(&w->cv);
        copy = NULL;
        break;
    }
    pthread_mutex_unlock(&l->mu);
    free(copy); /* nobody waits for it any more */
}

/* Delivers every complete frame in the read buffer and keeps a partial one
 * (growing the buffer to hold it). Returns 0, or -1 with *why on a bad frame. */
static int parse_replies(lane_t *l, const char **why)
{
    size_t off = 0, partial = 0; /* size of a frame not complete yet */
    int rc = 0;
    while (l->rlen - off >= MC_MP_HDR_LEN) {
        mc_mp_hdr_t h;
        if (mc_mp_hdr_decode(l->rbuf + off, l->rlen - off, &h, why)) {
            rc = -1;
            break;
        }
        if (!(h.method & MC_MP_REPLY)) {
            *why = "a request frame from the master";
            rc = -1;
            break;
        }
        if (note_view(l, h.view)) {
            *why = "a reply under an older leader view (that master was replaced)";
            rc = -1;
            break;
        }
        size_t need = MC_MP_HDR_LEN + (size_t)h.length;
        if (l->rlen - off < need) {
            partial = need;
            break;
        }
        deliver(l, &h, l->rbuf + off + MC_MP_HDR_LEN);
        off += need;
    }
    memmove(l->rbuf, l->rbuf + off, l->rlen - off);
    l->rlen -= off;
    if (rc) return rc;
    size_t want = partial > RBUF_MIN ? partial : RBUF_MIN;
    if (l->rcap != want && (partial > l->rcap || l->rcap > RBUF_MIN)) {
        uint8_t *nb = realloc(l->rbuf, want); /* grow for a big frame, shrink after it */
        if (!nb) {
            *why = "out of memory for a reply";
            return -1;
        }
        l->rbuf = nb;
        l->rcap = want;
    }
    return 0;
}

/* The leader's work: reads replies from fd until w is answered or the
 * deadline (dl, CLOCK_MONOTONIC; NULL: none) passes. On a failure of the
 * connection marks it broken and fails every waiter (w included). Called
 * without mu, with l->leader set by the caller. */
static void lead(lane_t *l, int fd, mc_tls_conn_t *t, waiter_t *w,
                 const struct timespec *dl)
{
    const char *why = NULL;
    char ebuf[128];
    int bad = 0, spun = 0;
    for (;;) {
        pthread_mutex_lock(&l->mu);
        int done = w->done;
        pthread_mutex_unlock(&l->mu);
        if (done) return;
        int ms = -1;
        if (dl) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            int64_t left_ns =
                (int64_t)(dl->tv_sec - now.tv_sec) * 1000000000 + (dl->tv_nsec - now.tv_nsec);
            if (left_ns <= 0) return;
            int64_t left = (left_ns + 999999) / 1000000; /* round up: no busy loop */
            ms = left > 1000000 ? 1000000 : (int)left;
        }
        if (l->rcap - l->rlen == 0) { /* cannot happen: parse_replies keeps room */
            why = "read buffer full";
            goto fail;
        }
        /* what already came first (TLS may hold decrypted bytes), for a while
         * the first time round when a spin pays, then wait */
        uint64_t until = !spun && spin_pays(l) ? mc_now_ns() + l->mc->spin_ns : 0;
        spun = 1;
        ssize_t n;
        do
            n = mc_tls_sock_recv(t, fd, l->rbuf + l->rlen, l->rcap - l->rlen, MSG_DONTWAIT);
        while (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && until && mc_now_ns() < until);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd p = {.fd = fd, .events = POLLIN};
            int r = poll(&p, 1, ms);
            if (r == 0) return; /* deadline */
            if (r > 0 || errno == EINTR) continue;
        }
        if (n <= 0) {
            why = n == 0                        ? "closed by the master"
                  : errno == EPROTO && t        ? mc_tls_conn_why(t)
                                                : strerror_r(errno, ebuf, sizeof ebuf);
            goto fail;
        }
        l->rlen += (size_t)n;
        if (parse_replies(l, &why)) {
            bad = 1;
            goto fail;
        }
    }
fail:
    pthread_mutex_lock(&l->mu);
    if (bad)
        MC_LOGE(TAG, "master %s:%u: bad reply frame: %s; closing the connection", l->host, l->port,
                why);
    else if (!l->mc->closing)
        MC_LOGW(TAG, "master %s:%u: connection lost (%s)", l->host, l->port, why);
    l->broken = 1;
    l->rlen = 0;
    fail_all_locked(l);
    pthread_mutex_unlock(&l->mu);
}

/* ---------------------------------------------------------------- connect */

static void set_timeo(int fd, int opt, int ms)
{
    struct timeval tv = {0, 0};
    if (ms > 0) {
        tv.tv_sec = ms / 1000;
        tv.tv_usec = (ms % 1000) * 1000;
    }
    setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof tv);
}

/* Sends the frame in b on a fresh blocking fd and receives one reply frame:
 * its header in *h and, when its status is 0, its payload (malloc'd, at most
 * max bytes) in *payload. Returns 0 or MC_ERR_RPC_FAIL / MC_ERR_RPC_TIMEOUT
 * with *why. */
static int round_trip(lane_t *l, int fd, const mc_mp_buf_t *b, size_t max,
                      mc_mp_hdr_t *h, uint8_t **payload, const char **why)
{
    *payload = NULL;
    mc_tls_conn_t *t = l->tls;
    int e = mc_tls_sock_send_all(t, fd, b->p, b->len);
    if (e) return e == -ETIMEDOUT ? MC_ERR_RPC_TIMEOUT : MC_ERR_RPC_FAIL;
    uint8_t hb[MC_MP_HDR_LEN];
    e = mc_tls_sock_recv_all(t, fd, hb, sizeof hb);
    if (e) {
        *why = e == -EPROTO && t ? mc_tls_conn_why(t) : "no answer";
        return e == -ETIMEDOUT ? MC_ERR_RPC_TIMEOUT : MC_ERR_RPC_FAIL;
    }
    if (mc_mp_hdr_decode(hb, sizeof hb, h, why)) return MC_ERR_RPC_FAIL;
    if (h->status != 0 || !h->length) return 0;
    if (h->length > max || !(*payload = malloc(h->length))) {
        *why = "an oversized reply";
        return MC_ERR_RPC_FAIL;
    }
    e = mc_tls_sock_recv_all(t, fd, *payload, h->length);
    if (e) {
        free(*payload);
        *payload = NULL;
        *why = "a truncated reply";
        return e == -ETIMEDOUT ? MC_ERR_RPC_TIMEOUT : MC_ERR_RPC_FAIL;
    }
    return 0;
}

/* Proves the cluster secret to the master on a fresh fd, and checks the
 * master's proof (net_auth.h), when this process has a cluster key. Returns
 * 0, MC_ERR_AUTH_OFF / MC_ERR_AUTH_FAILED / MC_ERR_INVALID_VERSION with one
 * error line saying which, or an RPC error. */
static int prove_secret(lane_t *l, int fd)
{
    const mc_auth_key_t *k = mc_auth_cluster_key();
    if (!k) return 0;
    mc_mp_buf_t b = {.view = atomic_load(&l->mc->view)};
    mc_mp_arena_t a = {0};
    uint8_t *payload = NULL;
    const char *why = NULL;
    mc_mp_hdr_t h;
    mc_mp_auth_hello_req_t q = {.auth_version = MC_AUTH_VERSION};
    int rc = MC_ERR_INTERNAL;
    if (mc_auth_nonce(q.nonce) || mc_mp_encode_auth_hello_req(&b, 0, &q)) goto out;
    rc = round_trip(l, fd, &b, 4096, &h, &payload, &why);
    if (rc) goto out;
    rc = MC_ERR_RPC_FAIL;
    if (h.method != (MC_MP_AUTH_HELLO | MC_MP_REPLY)) {
        why = "an unexpected reply to the secret's HELLO";
        goto out;
    }
    if (h.status) {
        rc = h.status;
        MC_LOGE(TAG, "master %s:%u: %s", l->host, l->port,
                h.status == MC_ERR_AUTH_OFF
                    ? "it has no cluster secret configured, and this client has one: not using it"
                : h.status == MC_ERR_INVALID_VERSION
                    ? "it speaks another version of the secret's handshake (upgrade one side)"
                    : "it refused the secret's HELLO");
        goto out;
    }
    mc_mp_auth_hello_rep_t r;
    if (mc_mp_decode_auth_hello_rep(payload, h.length, &a, &r, &why)) goto out;
    if (!mc_auth_mac_ok(k, 'S', "master", q.nonce, r.nonce, r.mac)) {
        MC_LOGE(TAG,
                "master %s:%u proved another cluster secret than this client's (the cluster "
                "secrets differ): not using it",
                l->host, l->port);
        rc = MC_ERR_AUTH_FAILED;
        goto out;
    }
    mc_mp_auth_proof_req_t p;
    mc_auth_mac(k, 'C', "master", r.nonce, q.nonce, p.mac);
    b.len = 0;
    free(payload);
    payload = NULL;
    if (mc_mp_encode_auth_proof_req(&b, 1, &p)) {
        rc = MC_ERR_INTERNAL;
        goto out;
    }
    rc = round_trip(l, fd, &b, 0, &h, &payload, &why);
    if (rc) goto out;
    if (h.method != (MC_MP_AUTH_PROOF | MC_MP_REPLY) || h.status) {
        rc = h.status ? h.status : MC_ERR_RPC_FAIL;
        MC_LOGE(TAG, "master %s:%u refused this client's proof (the cluster secrets differ)",
                l->host, l->port);
        goto out;
    }
    rc = 0;
out:
    if (rc && why) MC_LOGW(TAG, "master %s:%u: secret handshake failed: %s", l->host, l->port, why);
    free(payload);
    mc_mp_arena_free(&a);
    mc_mp_buf_free(&b);
    return rc;
}

/* Sends SERVICE_READY on a fresh blocking fd and checks the master's version.
 * Returns 0, MC_ERR_INVALID_VERSION, MC_ERR_AUTH_*, or MC_ERR_RPC_FAIL /
 * MC_ERR_RPC_TIMEOUT. */
static int handshake(lane_t *l, int fd)
{
    mc_mp_buf_t b = {0};
    mc_mp_arena_t a = {0};
    uint8_t *payload = NULL;
    const char *why = NULL;
    int rc = MC_ERR_RPC_FAIL;
    mc_mp_service_ready_req_t q = {.version = MC_MASTER_VERSION};
    b.view = atomic_load(&l->mc->view);
    set_timeo(fd, SO_RCVTIMEO, l->mc->timeout_ms);
    if ((rc = prove_secret(l, fd))) return rc;
    rc = MC_ERR_RPC_FAIL;
    if (mc_mp_encode_service_ready_req(&b, 0, &q)) goto out;
    int e = mc_tls_sock_send_all(l->tls, fd, b.p, b.len);
    if (e) {
        rc = e == -ETIMEDOUT ? MC_ERR_RPC_TIMEOUT : MC_ERR_RPC_FAIL;
        goto out;
    }
    uint8_t hb[MC_MP_HDR_LEN];
    mc_mp_hdr_t h;
    e = mc_tls_sock_recv_all(l->tls, fd, hb, sizeof hb);
    if (e) {
        rc = e == -ETIMEDOUT ? MC_ERR_RPC_TIMEOUT : MC_ERR_RPC_FAIL;
        why = e == -EPROTO && l->tls ? mc_tls_conn_why(l->tls) : "no answer to SERVICE_READY";
        goto out;
    }
    if (mc_mp_hdr_decode(hb, sizeof hb, &h, &why)) goto out;
    if (h.method == (MC_MP_SERVICE_READY | MC_MP_REPLY) &&
        h.status == MC_ERR_UNAVAILABLE_IN_CURRENT_STATUS) {
        why = "it is not the leader (a standby, or a leader that lost its lease)";
        goto out;
    }
    if (h.status == MC_ERR_AUTH_REQUIRED) {
        MC_LOGE(TAG,
                "master %s:%u requires the cluster secret, and this client has none (set "
                "MC_CLUSTER_SECRET or MC_CLUSTER_SECRET_FILE)",
                l->host, l->port);
        rc = MC_ERR_AUTH_REQUIRED;
        goto out;
    }
    if (h.method != (MC_MP_SERVICE_READY | MC_MP_REPLY) || h.status != 0) {
        why = "unexpected reply to SERVICE_READY";
        goto out;
    }
    if (h.view < atomic_load(&l->mc->view)) {
        why = "it serves under an older leader view than one already seen (replaced)";
        goto out;
    }
    view_raise(l->mc, h.view);
    l->conn_view = h.view;
    if (h.length > MC_MP_STR_MAX + 4 || !(payload = malloc(h.length + 1))) {
        why = "oversized SERVICE_READY reply";
        goto out;
    }
    e = mc_tls_sock_recv_all(l->tls, fd, payload, h.length);
    if (e) {
        rc = e == -ETIMEDOUT ? MC_ERR_RPC_TIMEOUT : MC_ERR_RPC_FAIL;
        goto out;
    }
    mc_mp_service_ready_rep_t rep;
    if (mc_mp_decode_service_ready_rep(payload, h.length, &a, &rep, &why)) goto out;
    if (strcmp(rep.version, MC_MASTER_VERSION) != 0) {
        MC_LOGE(TAG, "master %s:%u speaks version %s, this client %s", l->host, l->port,
                rep.version, MC_MASTER_VERSION);
        rc = MC_ERR_INVALID_VERSION;
        goto out;
    }
    set_timeo(fd, SO_RCVTIMEO, 0);
    rc = 0;
out:
    if (rc && why) MC_LOGW(TAG, "master %s:%u: handshake failed: %s", l->host, l->port, why);
    free(payload);
    mc_mp_arena_free(&a);
    mc_mp_buf_free(&b);
    return rc;
}

/* With TLS files, runs the TLS handshake on the fresh fd and keeps its
 * session in l->tls (nobody sends or reads yet: fd is not published).
 * Returns 0 or MC_ERR_RPC_FAIL / MC_ERR_RPC_TIMEOUT after one line saying
 * why. Caller holds mu. */
static int connect_tls_locked(lane_t *l, int fd)
{
    if (!mc_tls_files()) return 0;
    char err[320];
    l->tls = mc_tls_conn_new(0, l->host, err, sizeof err);
    int e = l->tls ? 0 : -EPROTO;
    if (l->tls) {
        set_timeo(fd, SO_RCVTIMEO, l->mc->timeout_ms);
        e = mc_tls_sock_handshake(l->tls, fd, err, sizeof err);
    }
    if (e == 0) return 0;
    MC_LOGE(TAG, "master %s:%u: %s", l->host, l->port, err);
    return e == -ETIMEDOUT ? MC_ERR_RPC_TIMEOUT : MC_ERR_RPC_FAIL;
}

/* Marks a connection idle for IDLE_CHECK_NS broken when the master hung up
 * (it stopped or restarted, or closed an idle connection), so that the next
 * request goes on a fresh connection. A busy lane is not polled: a master
 * restart takes far longer than the gap between its requests. Caller holds
 * mu and nobody leads. */
#define IDLE_CHECK_NS (10 * 1000000ull)
static void check_idle_locked(lane_t *l)
{
    if (mc_now_ns() - l->last_ns < IDLE_CHECK_NS) return;
    struct pollfd p = {.fd = l->fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) l->broken = 1;
}

/* Makes sure a live connection exists: retires a broken one (after its
 * leader, woken by a shutdown, has failed the waiters) and connects again.
 * Caller holds mu (released while waiting for the leader). */
static int ensure_connected_locked(lane_t *l)
{
    for (;;) {
        /* another lane found a newer leader: this one talks to a replaced one */
        if (l->fd >= 0 && l->mc->resolve && l->conn_view < atomic_load(&l->mc->view))
            l->broken = 1;
        if (l->fd >= 0 && !l->broken && !l->leader) check_idle_locked(l);
        if (l->fd >= 0 && !l->broken) return 0;
        if (!l->leader) break;
        shutdown(l->fd, SHUT_RDWR);
        pthread_cond_wait(&l->idle_cv, &l->mu);
    }
    fail_all_locked(l); /* requests sent on the old connection get no answer */
    if (l->fd >= 0) {
        pthread_mutex_lock(&l->wmu);
        close(l->fd);
        l->fd = -1;
        mc_tls_conn_free(l->tls);
        l->tls = NULL;
        l->gen++;
        pthread_mutex_unlock(&l->wmu);
    }
    l->broken = 0;
    l->rlen = 0;
    if (!l->rbuf) {
        l->rbuf = malloc(RBUF_MIN);
        if (!l->rbuf) return MC_ERR_INTERNAL;
        l->rcap = RBUF_MIN;
    }
    if (l->mc->resolve) { /* find the leader again: it may have changed */
        uint64_t view = 0;
        pthread_mutex_lock(&l->mc->resolve_mu);
        int r = l->mc->resolve(l->mc->resolve_arg, l->host, sizeof l->host, &l->port, &view);
        pthread_mutex_unlock(&l->mc->resolve_mu);
        if (r) return r;
        view_raise(l->mc, view);
    }
    int fd = -1;
    int e = mc_sock_connect(l->host, l->port,
                            l->mc->connect_timeout_ms > 0 ? l->mc->connect_timeout_ms : -1, &fd);
    if (e) {
        char eb[128];
        MC_LOGW(TAG, "connect to master %s:%u failed: %s", l->host, l->port,
                strerror_r(-e, eb, sizeof eb));
        return e == -ETIMEDOUT ? MC_ERR_RPC_TIMEOUT : MC_ERR_RPC_FAIL;
    }
    mc_sock_tune(fd);
    set_timeo(fd, SO_SNDTIMEO, l->mc->timeout_ms);
    int rc = connect_tls_locked(l, fd);
    if (rc == 0) rc = handshake(l, fd);
    if (rc) {
        mc_tls_conn_free(l->tls);
        l->tls = NULL;
        close(fd);
        return rc;
    }
    pthread_mutex_lock(&l->wmu);
    l->fd = fd;
    l->gen++;
    pthread_mutex_unlock(&l->wmu);
    return 0;
}

int mc_master_client_connect(const char *addr, mc_master_client_t **out)
{
    return mc_master_client_connect_resolved(addr, NULL, NULL, out);
}

static void lane_init(mc_master_client_t *mc, lane_t *l)
{
    l->mc = mc;
    memcpy(l->host, mc->host, sizeof l->host);
    l->port = mc->port;
    l->fd = -1;
    pthread_mutex_init(&l->mu, NULL);
    pthread_mutex_init(&l->wmu, NULL);
    pthread_cond_init(&l->idle_cv, NULL);
}

static void lane_destroy(lane_t *l)
{
    if (l->fd >= 0) close(l->fd);
    mc_tls_conn_free(l->tls);
    free(l->rbuf);
    pthread_cond_destroy(&l->idle_cv);
    pthread_mutex_destroy(&l->wmu);
    pthread_mutex_destroy(&l->mu);
}

int mc_master_client_connect_resolved(const char *addr, mc_master_resolve_fn resolve, void *arg,
                                      mc_master_client_t **out)
{
    *out = NULL;
    size_t n = (size_t)mc_env_int("MC_MASTER_LANES", 4, 1, 64);
    mc_master_client_t *c = calloc(1, sizeof *c + n * sizeof(lane_t));
    if (!c) return MC_ERR_INTERNAL;
    c->resolve = resolve;
    c->resolve_arg = arg;
    if (!resolve &&
        (!addr || mc_net_split_hostport(addr, c->host, sizeof c->host, &c->port) || !c->port)) {
        MC_LOGE(TAG, "bad master address '%s' (want host:port)", addr ? addr : "(null)");
        free(c);
        return MC_ERR_INVALID_PARAMS;
    }
    c->connect_timeout_ms = (int)mc_env_int("MC_RPC_CONNECT_TIMEOUT_MS", 30000, -1, 86400000);
    c->timeout_ms = (int)mc_env_int("MC_RPC_TIMEOUT_MS", 30000, -1, 86400000);
    c->spin_ns = (uint64_t)mc_env_int("MC_RPC_SPIN_US", 50, 0, 1000) * 1000;
    pthread_condattr_init(&c->cattr);
    pthread_condattr_setclock(&c->cattr, CLOCK_MONOTONIC);
    pthread_mutex_init(&c->resolve_mu, NULL);
    c->nlanes = n;
    for (size_t i = 0; i < n; i++) lane_init(c, &c->lanes[i]);
    /* the first lane now, to check the address and the version; the others
     * on their first call */
    lane_t *l = &c->lanes[0];
    pthread_mutex_lock(&l->mu);
    int rc = ensure_connected_locked(l);
    pthread_mutex_unlock(&l->mu);
    if (rc) {
        mc_master_client_close(c);
        return rc;
    }
    if (resolve) {
        memcpy(c->host, l->host, sizeof c->host);
        c->port = l->port;
    }
    *out = c;
    return 0;
}

uint64_t mc_master_client_served_ms(mc_master_client_t *c)
{
    return c ? atomic_load(&c->served_ns) / 1000000u : 0;
}

void mc_master_client_close(mc_master_client_t *c)
{
    if (!c) return;
    atomic_store(&c->closing, 1);
    for (size_t i = 0; i < c->nlanes; i++) lane_destroy(&c->lanes[i]);
    pthread_mutex_destroy(&c->resolve_mu);
    pthread_condattr_destroy(&c->cattr);
    free(c);
}

/* ---------------------------------------------------------------- calls */

/* Removes w from the pending list if it is still there. Caller holds mu. */
static void unlink_locked(lane_t *l, waiter_t *w)
{
    for (waiter_t **pp = &l->pending; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            return;
        }
}

/* When nobody leads, wakes the first waiter so that it takes the lead (a
 * waiter sleeps only while someone leads). Caller holds mu. */
static void wake_successor_locked(lane_t *l)
{
    if (!l->leader && l->pending) pthread_cond_signal(&l->pending->cv);
}

static int passed(const struct timespec *dl)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > dl->tv_sec || (now.tv_sec == dl->tv_sec && now.tv_nsec >= dl->tv_nsec);
}

/* One round trip: f is a whole request frame (its req_id is filled in here).
 * On 0 the reply's status is returned and, when it is 0, *payload (malloc'd,
 * may be NULL when empty) and *len hold the reply payload. Otherwise
 * MC_ERR_RPC_FAIL / MC_ERR_RPC_TIMEOUT, or the connect errors. */
static int lane_rpc(lane_t *l, mc_mp_buf_t *f, uint8_t **payload, uint32_t *len)
{
    *payload = NULL;
    *len = 0;
    waiter_t w = {0};
    w.method = f->p[5];
    pthread_cond_init(&w.cv, &l->mc->cattr);
    struct timespec dl, *dlp = NULL;
    if (l->mc->timeout_ms > 0) {
        dl = mc_deadline_ts(CLOCK_MONOTONIC, (uint64_t)l->mc->timeout_ms);
        dlp = &dl;
    }
    pthread_mutex_lock(&l->mu);
    int rc = l->mc->closing ? MC_ERR_RPC_FAIL : ensure_connected_locked(l);
    if (rc) {
        pthread_mutex_unlock(&l->mu);
        goto out;
    }
    w.id = ++l->next_id;
    w.next = l->pending;
    l->pending = &w;
    uint64_t t0 = l->last_ns = mc_now_ns();
    uint64_t gen = l->gen, view = atomic_load(&l->mc->view);
    int fd = l->fd;
    pthread_mutex_unlock(&l->mu);

    mc_wr_t wr = mc_wr_init(f->p + 8, 4);
    mc_wr_u32(&wr, w.id);
    mc_wr_t wv = mc_wr_init(f->p + 20, 8);
    mc_wr_u64(&wv, view);
    pthread_mutex_lock(&l->wmu);
    int e = gen == l->gen ? mc_tls_sock_send_all(l->tls, fd, f->p, f->len) : -EPIPE;
    if (e && gen == l->gen) shutdown(fd, SHUT_RDWR); /* the stream is cut mid-frame */
    pthread_mutex_unlock(&l->wmu);
    if (e) {
        char eb[128];
        MC_LOGW(TAG, "master %s:%u: send failed: %s", l->host, l->port,
                strerror_r(-e, eb, sizeof eb));
        pthread_mutex_lock(&l->mu);
        unlink_locked(l, &w);
        if (gen == l->gen) l->broken = 1; /* the next call reconnects */
        wake_successor_locked(l);
        pthread_mutex_unlock(&l->mu);
        rc = MC_ERR_RPC_FAIL;
        goto out;
    }

    pthread_mutex_lock(&l->mu);
    while (!w.done) {
        if (!l->leader && (gen != l->gen || l->broken)) {
            unlink_locked(l, &w); /* sent on a dead connection nobody reads */
            rc = MC_ERR_RPC_FAIL;
            break;
        }
        if (!l->leader) {
            l->leader = 1;
            mc_tls_conn_t *t = l->tls; /* fd's: it stays while this thread leads */
            pthread_mutex_unlock(&l->mu);
            lead(l, fd, t, &w, dlp);
            pthread_mutex_lock(&l->mu);
            l->leader = 0;
            pthread_cond_broadcast(&l->idle_cv);
            if (!w.done && dlp && passed(dlp)) {
                unlink_locked(l, &w);
                rc = MC_ERR_RPC_TIMEOUT;
                break;
            }
            continue;
        }
        if (!dlp) {
            pthread_cond_wait(&w.cv, &l->mu);
        } else if (pthread_cond_timedwait(&w.cv, &l->mu, dlp) == ETIMEDOUT && !w.done) {
            unlink_locked(l, &w);
            rc = MC_ERR_RPC_TIMEOUT;
            break;
        }
    }
    /* An HA master that does not answer may have been replaced (a leader
     * stopped past its lease keeps its sockets open): the next call finds
     * the leader again instead of waiting on this connection. */
    if (rc == MC_ERR_RPC_TIMEOUT && l->mc->resolve && gen == l->gen) l->broken = 1;
    if (!rc) {
        uint64_t avg = atomic_load_explicit(&l->rtt_ns, memory_order_relaxed);
        avg = (avg * 7 + (mc_now_ns() - t0)) / 8;
        atomic_store_explicit(&l->rtt_ns, avg, memory_order_relaxed);
    }
    wake_successor_locked(l);
    pthread_mutex_unlock(&l->mu);
    if (rc) {
        if (rc == MC_ERR_RPC_TIMEOUT)
            MC_LOGW(TAG, "master %s:%u: %s timed out after %d ms", l->host, l->port,
                    mc_mp_method_name(w.method), l->mc->timeout_ms);
        goto out;
    }
    if (w.rc) {
        rc = w.rc;
        goto out;
    }
    if (w.hdr.method != (w.method | MC_MP_REPLY)) {
        MC_LOGE(TAG, "master %s:%u: reply of another method to request %u", l->host, l->port, w.id);
        rc = MC_ERR_RPC_FAIL;
        goto out;
    }
    rc = w.hdr.status;
    if (rc != MC_ERR_UNAVAILABLE_IN_CURRENT_STATUS) { /* its gate let the request in */
        uint64_t was = atomic_load(&l->mc->served_ns);
        while (was < t0 && !atomic_compare_exchange_weak(&l->mc->served_ns, &was, t0)) {
        }
    }
    if (rc == 0) {
        *payload = w.payload;
        *len = w.hdr.length;
        w.payload = NULL;
    }
out:
    free(w.payload);
    pthread_cond_destroy(&w.cv);
    return rc;
}

/* A thread's lane number: threads take 0, 1, 2, ... in the order of their
 * first call, so up to nlanes concurrent callers each have a connection of
 * their own (its replies read by the caller itself, on its own master loop). */
static _Atomic unsigned next_slot;
static _Thread_local unsigned my_slot; /* slot + 1; 0: none yet */

static int rpc(mc_master_client_t *c, mc_mp_buf_t *f, uint8_t **payload, uint32_t *len)
{
    if (!my_slot) my_slot = atomic_fetch_add(&next_slot, 1) + 1;
    if (atomic_fetch_add(&in_flight, 1) > 0)
        atomic_store_explicit(&shared_until, mc_now_ns() + SHARED_HOLD_NS, memory_order_relaxed);
    int rc = lane_rpc(&c->lanes[(my_slot - 1) % c->nlanes], f, payload, len);
    atomic_fetch_sub(&in_flight, 1);
    return rc;
}

static const uint8_t empty_[1];

static int enc_err(int e)
{
    return e == -ENOMEM ? MC_ERR_INTERNAL : MC_ERR_INVALID_PARAMS;
}

/* Encodes request q of method l, runs it and decodes the reply into *repp
 * (arena a). Sets rc to 0 or an error. */
#define CALL(l, qp, repp, a, rc)                                                                   \
    do {                                                                                           \
        mc_mp_buf_t b_ = {0};                                                                      \
        uint8_t *pl_ = NULL;                                                                       \
        uint32_t n_ = 0;                                                                           \
        int e_ = mc_mp_encode_##l##_req(&b_, 0, qp);                                               \
        rc = e_ ? enc_err(e_) : rpc(c, &b_, &pl_, &n_);                                            \
        mc_mp_buf_free(&b_);                                                                       \
        const char *why_ = NULL;                                                                   \
        if (rc == 0 && mc_mp_decode_##l##_rep(pl_ ? pl_ : empty_, n_, a, repp, &why_)) {           \
            MC_LOGE(TAG, "master %s:%u: bad %s reply: %s", c->host, c->port, #l, why_);            \
            rc = MC_ERR_RPC_FAIL;                                                                  \
        }                                                                                          \
        free(pl_);                                                                                 \
    } while (0)

/* A malloc'd copy of n replicas (NULL when n is 0). */
static int copy_reps(const mc_replica_t *r, size_t n, mc_replica_t **out, size_t *nout)
{
    *out = NULL;
    *nout = 0;
    if (!n) return 0;
    mc_replica_t *v = malloc(n * sizeof *v);
    if (!v) return MC_ERR_INTERNAL;
    memcpy(v, r, n * sizeof *v);
    *out = v;
    *nout = n;
    return 0;
}

int mc_master_client_mount_segment(mc_master_client_t *c, const mc_segment_t *seg, mc_uuid_t client)
{
    mc_mp_arena_t a = {0};
    mc_mp_mount_segment_req_t q = {.seg = *seg, .client = client};
    mc_mp_mount_segment_rep_t rep;
    int rc;
    CALL(mount_segment, &q, &rep, &a, rc);
    mc_mp_arena_free(&a);
    return rc;
}

int mc_master_client_remount_segments(mc_master_client_t *c, const mc_segment_t *segs, size_t n,
                                      mc_uuid_t client)
{
    mc_mp_arena_t a = {0};
    mc_mp_remount_segments_req_t q = {.segs = segs, .n_segs = n, .client = client};
    mc_mp_remount_segments_rep_t rep;
    int rc;
    CALL(remount_segments, &q, &rep, &a, rc);
    mc_mp_arena_free(&a);
    return rc;
}

int mc_master_client_unmount_segment(mc_master_client_t *c, mc_uuid_t segment, mc_uuid_t client)
{
    mc_mp_arena_t a = {0};
    mc_mp_unmount_segment_req_t q = {.segment = segment, .client = client};
    mc_mp_unmount_segment_rep_t rep;
    int rc;
    CALL(unmount_segment, &q, &rep, &a, rc);
    mc_mp_arena_free(&a);
    return rc;
}

int mc_master_client_ping(mc_master_client_t *c, mc_uuid_t client, int *status)
{
    mc_mp_arena_t a = {0};
    mc_mp_ping_req_t q = {.client = client};
    mc_mp_ping_rep_t rep;
    int rc;
    CALL(ping, &q, &rep, &a, rc);
    if (rc == 0 && status) *status = rep.client_status;
    mc_mp_arena_free(&a);
    return rc;
}

int mc_master_client_put_start(mc_master_client_t *c, mc_uuid_t client, const char *key,
                               uint64_t size, const mc_replicate_config_t *cfg, mc_replica_t **out,
                               size_t *n)
{
    mc_mp_arena_t a = {0};
    *out = NULL;
    *n = 0;
    if (!cfg || !key) return MC_ERR_INVALID_PARAMS;
    mc_mp_put_start_req_t q = {.client = client, .key = key, .size = size, .cfg = *cfg};
    mc_mp_put_start_rep_t rep;
    int rc;
    *out = NULL;
    *n = 0;
    CALL(put_start, &q, &rep, &a, rc);
    if (rc == 0) rc = copy_reps(rep.reps, rep.n_reps, out, n);
    mc_mp_arena_free(&a);
    return rc;
}

int mc_master_client_put_end(mc_master_client_t *c, mc_uuid_t client, const char *key)
{
    mc_mp_arena_t a = {0};
    mc_mp_put_end_req_t q = {.client = client, .key = key};
    mc_mp_put_end_rep_t rep;
    int rc;
    CALL(put_end, &q, &rep, &a, rc);
    mc_mp_arena_free(&a);
    return rc;
}

int mc_master_client_put_revoke(mc_master_client_t *c, mc_uuid_t client, const char *key)
{
    mc_mp_arena_t a = {0};
    mc_mp_put_revoke_req_t q = {.client = client, .key = key};
    mc_mp_put_revoke_rep_t rep;
    int rc;
    CALL(put_revoke, &q, &rep, &a, rc);
    mc_mp_arena_free(&a);
    return rc;
}

int mc_master_client_upsert_start(mc_master_client_t *c, mc_uuid_t client, const char *key,
                                  uint64_t size, const mc_replicate_config_t *cfg,
                                  mc_replica_t **out, size_t *n)
{
    mc_mp_arena_t a = {0};
    *out = NULL;
    *n = 0;
    if (!cfg || !key) return MC_ERR_INVALID_PARAMS;
    mc_mp_upsert_start_req_t q = {.client = client, .key = key, .size = size, .cfg = *cfg};
    mc_mp_upsert_start_rep_t rep;
    int rc;
    *out = NULL;
    *n = 0;
    CALL(upsert_start, &q, &rep, &a, rc);
    if (rc == 0) rc = copy_reps(rep.reps, rep.n_reps, out, n);
    mc_mp_arena_free(&a);
    return rc;
}

int mc_master_client_get_replicas(mc_master_client_t *c, const char *key, mc_replica_t **out,
                                  size_t *n, uint64_t *lease_ttl_ms)
{
    mc_mp_arena_t a = {0};
    mc_mp_get_replicas_req_t q = {.key = key};
    mc_mp_get_replicas_rep_t rep;
    int rc;
    *out = NULL;
    *n = 0;
    CALL(get_replicas, &q, &rep, &a, rc);
    if (rc == 0) {
        if (lease_ttl_ms) *lease_ttl_ms = rep.lease_ttl_ms;
        rc = copy_reps(rep.reps, rep.n_reps, out, n);
    }
    mc_mp_arena_free(&a);
    return rc;
}

int mc_master_client_exist(mc_master_client_t *c, const char *key)
{
    mc_mp_arena_t a = {0};
    mc_mp_exist_req_t q = {.key = key};
    mc_mp_exist_rep_t rep;
    int rc;
    CALL(exist, &q, &rep, &a, rc);
    mc_mp_arena_free(&a);
    return rc ? rc : rep.exists ? 1 : 0;
}

int mc_master_client_remove(mc_master_client_t *c, const char *key, int force)
{
    mc_mp_arena_t a = {0};
    mc_mp_remove_req_t q = {.key = key, .force = force ? 1 : 0};
    mc_mp_remove_rep_t rep;
    int rc;
    CALL(remove, &q, &rep, &a, rc);
    mc_mp_arena_free(&a);
    return rc;
}

int64_t mc_master_client_remove_all(mc_master_client_t *c, int force)
{
    mc_mp_arena_t a = {0};
    mc_mp_remove_all_req_t q = {.force = force ? 1 : 0};
    mc_mp_remove_all_rep_t rep;
    int rc;
    CALL(remove_all, &q, &rep, &a, rc);
    mc_mp_arena_free(&a);
    return rc ? rc : rep.count;
}

int64_t mc_master_client_remove_by_regex(mc_master_client_t *c, const char *regex, int force)
{
    mc_mp_arena_t a = {0};
    mc_mp_remove_by_regex_req_t q = {.regex = regex, .force = force ? 1 : 0};
    mc_mp_remove_by_regex_rep_t rep;
    int rc;
    CALL(remove_by_regex, &q, &rep, &a, rc);
    mc_mp_arena_free(&a);
    return rc ? rc : rep.count;
}

/* ---------------------------------------------------------------- batches */

/* Copies per-key results into rcs/reps/nreps; a count mismatch is RPC_FAIL. */
static int take_results(mc_master_client_t *c, const mc_mp_result_t *v, size_t nv, size_t n,
                        int *rcs, mc_replica_t **reps, size_t *nreps)
{
    if (nv != n) {
        MC_LOGE(TAG, "master %s:%u: %zu results for %zu keys", c->host, c->port, nv, n);
        return MC_ERR_RPC_FAIL;
    }
    for (size_t i = 0; i < n; i++) {
        rcs[i] = v[i].rc;
        if (copy_reps(v[i].reps, v[i].n, &reps[i], &nreps[i])) {
            for (size_t j = 0; j < i; j++) {
                free(reps[j]);
                reps[j] = NULL;
                nreps[j] = 0;
            }
            return MC_ERR_INTERNAL;
        }
    }
    return 0;
}

static int take_rcs(mc_master_client_t *c, const int32_t *v, size_t nv, size_t n, int *rcs)
{
    if (nv != n) {
        MC_LOGE(TAG, "master %s:%u: %zu results for %zu keys", c->host, c->port, nv, n);
        return MC_ERR_RPC_FAIL;
    }
    for (size_t i = 0; i < n; i++)
        rcs[i] = v[i];
    return 0;
}

static void clear_reps(size_t n, mc_replica_t **reps, size_t *nreps)
{
    for (size_t i = 0; i < n; i++) {
        reps[i] = NULL;
        nreps[i] = 0;
    }
}

int mc_master_client_batch_put_start(mc_master_client_t *c, mc_uuid_t client,
                                     const char *const *keys, const uint64_t *sizes, size_t n,
                                     const mc_replicate_config_t *cfg, int *rcs,
                                     mc_replica_t **reps, size_t *nreps)
{
    mc_mp_arena_t a = {0};
    clear_reps(n, reps, nreps);
    if (!cfg) return MC_ERR_INVALID_PARAMS;
    mc_mp_batch_put_start_req_t q = {
        .client = client, .keys = keys, .n_keys = n, .sizes = sizes, .n_sizes = n, .cfg = *cfg};
    mc_mp_batch_put_start_rep_t rep;
    int rc;
    if (n == 0) return 0;
    CALL(batch_put_start, &q, &rep, &a, rc);
    if (rc == 0) rc = take_results(c, rep.results, rep.n_results, n, rcs, reps, nreps);
    mc_mp_arena_free(&a);
    return rc;
}

int mc_master_client_batch_upsert_start(mc_master_client_t *c, mc_uuid_t client,
                                        const char *const *keys, const uint64_t *sizes, size_t n,
                                        const mc_replicate_config_t *cfg, int *rcs,
                                        mc_replica_t **reps, size_t *nreps)
{
    mc_mp_arena_t a = {0};
    clear_reps(n, reps, nreps);
    if (!cfg) return MC_ERR_INVALID_PARAMS;
    mc_mp_batch_upsert_start_req_t q = {
        .client = client, .keys = keys, .n_keys = n, .sizes = sizes, .n_sizes = n, .cfg = *cfg};
    mc_mp_batch_upsert_start_rep_t rep;
    int rc;
    if (n == 0) return 0;
    CALL(batch_upsert_start, &q, &rep, &a, rc);
    if (rc == 0) rc = take_results(c, rep.results, rep.n_results, n, rcs, reps, nreps);
    mc_mp_arena_free(&a);
    return rc;
}

int mc_master_client_batch_put_end(mc_master_client_t *c, mc_uuid_t client, const char *const *keys,
                                   size_t n, int *rcs)
{
    mc_mp_arena_t a = {0};
    mc_mp_batch_put_end_req_t q = {.client = client, .keys = keys, .n_keys = n};
    mc_mp_batch_put_end_rep_t rep;
    int rc;
    if (n == 0) return 0;
    CALL(batch_put_end, &q, &rep, &a, rc);
    if (rc == 0) rc = take_rcs(c, rep.rcs, rep.n_rcs, n, rcs);
    mc_mp_arena_free(&a);
    return rc;
}

int mc_master_client_batch_put_revoke(mc_master_client_t *c, mc_uuid_t client,
                                      const char *const *keys, size_t n, int *rcs)
{
    mc_mp_arena_t a = {0};
    mc_mp_batch_put_revoke_req_t q = {.client = client, .keys = keys, .n_keys = n};
    mc_mp_batch_put_revoke_rep_t rep;
    int rc;
    if (n == 0) return 0;
    CALL(batch_put_revoke, &q, &rep, &a, rc);
    if (rc == 0) rc = take_rcs(c, rep.rcs, rep.n_rcs, n, rcs);
    mc_mp_arena_free(&a);
    return rc;
}

int mc_master_client_batch_get_replicas(mc_master_client_t *c, const char *const *keys, size_t n,
                                        int *rcs, mc_replica_t **reps, size_t *nreps,
                                        uint64_t *lease_ttl_ms)
{
    mc_mp_arena_t a = {0};
    mc_mp_batch_get_replicas_req_t q = {.keys = keys, .n_keys = n};
    mc_mp_batch_get_replicas_rep_t rep;
    int rc;
    clear_reps(n, reps, nreps);
    if (n == 0) return 0;
    CALL(batch_get_replicas, &q, &rep, &a, rc);
    if (rc == 0) {
        if (lease_ttl_ms) *lease_ttl_ms = rep.lease_ttl_ms;
        rc = take_results(c, rep.results, rep.n_results, n, rcs, reps, nreps);
    }
    mc_mp_arena_free(&a);
    return rc;
}

int mc_master_client_batch_exist(mc_master_client_t *c, const char *const *keys, size_t n, int *rcs)
{
    mc_mp_arena_t a = {0};
    mc_mp_batch_exist_req_t q = {.keys = keys, .n_keys = n};
    mc_mp_batch_exist_rep_t rep;
    int rc;
    if (n == 0) return 0;
    CALL(batch_exist, &q, &rep, &a, rc);
    if (rc == 0) rc = take_rcs(c, rep.rcs, rep.n_rcs, n, rcs);
    mc_mp_arena_free(&a);
    return rc;
}

int mc_master_client_batch_remove(mc_master_client_t *c, const char *const *keys, size_t n,
                                  int force, int *rcs)
{
    mc_mp_arena_t a = {0};
    mc_mp_batch_remove_req_t q = {.keys = keys, .n_keys = n, .force = force ? 1 : 0};
    mc_mp_batch_remove_rep_t rep;
    int rc;
    if (n == 0) return 0;
    CALL(batch_remove, &q, &rep, &a, rc);
    if (rc == 0) rc = take_rcs(c, rep.rcs, rep.n_rcs, n, rcs);
    mc_mp_arena_free(&a);
    return rc;
}

int mc_master_client_batch_replica_clear(mc_master_client_t *c, mc_uuid_t client,
                                         const char *const *keys, size_t n, const char *segment,
                                         int *rcs)
{
    mc_mp_arena_t a = {0};
    mc_mp_batch_replica_clear_req_t q = {
        .client = client, .keys = keys, .n_keys = n, .segment = segment ? segment : ""};
    mc_mp_batch_replica_clear_rep_t rep;
    int rc;
    if (n == 0) return 0;
    CALL(batch_replica_clear, &q, &rep, &a, rc);
    if (rc == 0) rc = take_rcs(c, rep.rcs, rep.n_rcs, n, rcs);
    mc_mp_arena_free(&a);
    return rc;
}

/* ---- the SSD tier ---- */

int mc_master_client_disk_config(mc_master_client_t *c, mc_uuid_t client, int *enabled, char *root,
                                 size_t cap)
{
    mc_mp_arena_t a = {0};
    mc_mp_disk_config_req_t q = {.client = client};
    mc_mp_disk_config_rep_t rep;
    int rc;
    CALL(disk_config, &q, &rep, &a, rc);
    if (rc == 0) {
        *enabled = rep.enabled;
        if (strlen(rep.root_fs_dir) >= cap)
            rc = MC_ERR_INVALID_PARAMS;
        else
            memcpy(root, rep.root_fs_dir, strlen(rep.root_fs_dir) + 1);
    }
    mc_mp_arena_free(&a);
    return rc;
}

int mc_master_client_disk_mount(mc_master_client_t *c, mc_uuid_t client, mc_uuid_t disk,
                                const char *name, const char *endpoint, uint64_t quota,
                                int *offload_on_evict, int *promotion_on_hit,
                                uint32_t *promotion_threshold)
{
    mc_mp_arena_t a = {0};
    mc_mp_disk_mount_req_t q = {
        .client = client, .disk = disk, .name = name, .endpoint = endpoint, .quota = quota};
    mc_mp_disk_mount_rep_t rep;
    int rc;
    CALL(disk_mount, &q, &rep, &a, rc);
    if (rc == 0) {
        *offload_on_evict = rep.offload_on_evict;
        *promotion_on_hit = rep.promotion_on_hit;
        *promotion_threshold = rep.promotion_threshold;
    }
    mc_mp_arena_free(&a);
    return rc;
}

int mc_master_client_disk_unmount(mc_master_client_t *c, mc_uuid_t client)
{
    mc_mp_arena_t a = {0};
    mc_mp_disk_unmount_req_t q = {.client = client};
    mc_mp_disk_unmount_rep_t rep;
    int rc;
    CALL(disk_unmount, &q, &rep, &a, rc);
    mc_mp_arena_free(&a);
    return rc;
}

static char **dup_strs(const char *const *v, size_t n)
{
    char **o = calloc(n ? n : 1, sizeof *o);
    if (!o) return NULL;
    for (size_t i = 0; i < n; i++)
        if (!(o[i] = strdup(v[i]))) {
            while (i-- > 0)
                free(o[i]);
            free(o);
            return NULL;
        }
    return o;
}

static uint64_t *dup_u64s(const uint64_t *v, size_t n)
{
    uint64_t *o = malloc((n ? n : 1) * sizeof *o);
    if (o && n) memcpy(o, v, n * sizeof *o);
    return o;
}

void mc_master_client_disk_tasks_free(mc_master_client_disk_tasks_t *t)
{
    for (size_t i = 0; t->keys && i < t->n; i++)
        free(t->keys[i]);
    for (size_t i = 0; t->drops && i < t->ndrops; i++)
        free(t->drops[i]);
    for (size_t i = 0; t->promotes && i < t->npromotes; i++)
        free(t->promotes[i]);
    free(t->keys);
    free(t->drops);
    free(t->promotes);
    free(t->addrs);
    free(t->sizes);
    free(t->stamps);
    memset(t, 0, sizeof *t);
}

int mc_master_client_disk_tasks(mc_master_client_t *c, mc_uuid_t client, uint32_t max,
                                mc_master_client_disk_tasks_t *t)
{
    memset(t, 0, sizeof *t);
    mc_mp_arena_t a = {0};
    mc_mp_disk_tasks_req_t q = {.client = client, .max = max};
    mc_mp_disk_tasks_rep_t rep;
    int rc;
    CALL(disk_tasks, &q, &rep, &a, rc);
    if (rc == 0) {
        if (rep.n_addrs != rep.n_keys || rep.n_sizes != rep.n_keys || rep.n_stamps != rep.n_keys) {
            MC_LOGE(TAG, "master %s:%u: disk tasks of unequal lengths", c->host, c->port);
            rc = MC_ERR_RPC_FAIL;
        } else {
            t->keys = dup_strs(rep.keys, rep.n_keys);
            t->addrs = dup_u64s(rep.addrs, rep.n_keys);
            t->sizes = dup_u64s(rep.sizes, rep.n_keys);
            t->stamps = dup_u64s(rep.stamps, rep.n_keys);
            t->drops = dup_strs(rep.drops, rep.n_drops);
            t->promotes = dup_strs(rep.promotes, rep.n_promotes);
            t->n = t->keys ? rep.n_keys : 0;
            t->ndrops = t->drops ? rep.n_drops : 0;
            t->npromotes = t->promotes ? rep.n_promotes : 0;
            if (!t->keys || !t->addrs || !t->sizes || !t->stamps || !t->drops || !t->promotes) {
                mc_master_client_disk_tasks_free(t);
                rc = MC_ERR_INTERNAL;
            }
        }
    }
    mc_mp_arena_free(&a);
    return rc;
}

int mc_master_client_disk_add(mc_master_client_t *c, mc_uuid_t client, const char *const *keys,
                              const uint64_t *sizes, const uint64_t *stamps, size_t n, int rescan,
                              int *rcs)
{
    mc_mp_arena_t a = {0};
    mc_mp_disk_add_req_t q = {.client = client,
                              .keys = keys,
                              .n_keys = n,
                              .sizes = sizes,
                              .n_sizes = n,
                              .stamps = stamps,
                              .n_stamps = n,
                              .rescan = rescan ? 1 : 0};
    mc_mp_disk_add_rep_t rep;
    int rc;
    if (n == 0) return 0;
    CALL(disk_add, &q, &rep, &a, rc);
    if (rc == 0) rc = take_rcs(c, rep.rcs, rep.n_rcs, n, rcs);
    mc_mp_arena_free(&a);
    return rc;
}

int mc_master_client_disk_drop(mc_master_client_t *c, mc_uuid_t client, const char *const *keys,
                               size_t n, int *rcs)
{
    mc_mp_arena_t a = {0};
    mc_mp_disk_drop_req_t q = {.client = client, .keys = keys, .n_keys = n};
    mc_mp_disk_drop_rep_t rep;
    int rc;
    if (n == 0) return 0;
    CALL(disk_drop, &q, &rep, &a, rc);
    if (rc == 0) rc = take_rcs(c, rep.rcs, rep.n_rcs, n, rcs);
    mc_mp_arena_free(&a);
    return rc;
}

int mc_master_client_promote_start(mc_master_client_t *c, mc_uuid_t client, const char *key,
                                   uint64_t size, const mc_replicate_config_t *cfg,
                                   mc_replica_t **out, size_t *n)
{
    mc_mp_arena_t a = {0};
    *out = NULL;
    *n = 0;
    if (!cfg || !key) return MC_ERR_INVALID_PARAMS;
    mc_mp_promote_start_req_t q = {.client = client, .key = key, .size = size, .cfg = *cfg};
    mc_mp_promote_start_rep_t rep;
    int rc;
    CALL(promote_start, &q, &rep, &a, rc);
    if (rc == 0) rc = copy_reps(rep.reps, rep.n_reps, out, n);
    mc_mp_arena_free(&a);
    return rc;
}

int mc_master_client_task_fetch(mc_master_client_t *c, mc_uuid_t client, uint32_t max,
                                mc_master_task_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    mc_mp_arena_t a = {0};
    mc_mp_task_fetch_req_t q = {.client = client, .max = max};
    mc_mp_task_fetch_rep_t rep;
    int rc;
    CALL(task_fetch, &q, &rep, &a, rc);
    size_t k = rc ? 0 : rep.n_ids;
    if (rc == 0 && (rep.n_keys != k || rep.n_sizes != k || rep.n_src_addrs != k ||
                    rep.n_dst_addrs != k || rep.n_dst_endpoints != k || k > max)) {
        MC_LOGE(TAG, "master %s:%u: move tasks of unequal lengths", c->host, c->port);
        rc = MC_ERR_RPC_FAIL;
    }
    mc_master_task_t *t = NULL;
    if (rc == 0 && k && !(t = calloc(k, sizeof *t))) rc = MC_ERR_INTERNAL;
    for (size_t i = 0; rc == 0 && i < k; i++) {
        t[i].id = rep.ids[i];
        t[i].size = rep.sizes[i];
        t[i].src_addr = rep.src_addrs[i];
        t[i].dst_addr = rep.dst_addrs[i];
        t[i].key = strdup(rep.keys[i]);
        t[i].dst_endpoint = strdup(rep.dst_endpoints[i]);
        if (!t[i].key || !t[i].dst_endpoint) rc = MC_ERR_INTERNAL;
    }
    mc_mp_arena_free(&a);
    if (rc) {
        mc_master_tasks_free(t, k);
        return rc;
    }
    *out = t;
    *n = k;
    return 0;
}

int mc_master_client_task_complete(mc_master_client_t *c, mc_uuid_t client, uint64_t id, int rc_)
{
    mc_mp_arena_t a = {0};
    mc_mp_task_complete_req_t q = {.client = client, .id = id, .rc = rc_};
    mc_mp_task_complete_rep_t rep;
    int rc;
    CALL(task_complete, &q, &rep, &a, rc);
    mc_mp_arena_free(&a);
    return rc;
}

int mc_master_client_copy_task(mc_master_client_t *c, const char *key, const char *const *targets,
                               size_t n, mc_uuid_t *task)
{
    mc_mp_arena_t a = {0};
    *task = (mc_uuid_t){0, 0};
    if (!key || (n && !targets)) return MC_ERR_INVALID_PARAMS;
    mc_mp_task_copy_req_t q = {.key = key, .targets = targets, .n_targets = n};
    mc_mp_task_copy_rep_t rep;
    int rc;
    CALL(task_copy, &q, &rep, &a, rc);
    if (rc == 0) *task = rep.task;
    mc_mp_arena_free(&a);
    return rc;
}

int mc_master_client_move_task(mc_master_client_t *c, const char *key, const char *source,
                               const char *target, mc_uuid_t *task)
{
    mc_mp_arena_t a = {0};
    *task = (mc_uuid_t){0, 0};
    if (!key || !source || !target) return MC_ERR_INVALID_PARAMS;
    mc_mp_task_move_req_t q = {.key = key, .source = source, .target = target};
    mc_mp_task_move_rep_t rep;
    int rc;
    CALL(task_move, &q, &rep, &a, rc);
    if (rc == 0) *task = rep.task;
    mc_mp_arena_free(&a);
    return rc;
}

int mc_master_client_task_query(mc_master_client_t *c, mc_uuid_t task, mc_master_task_info_t *out)
{
    mc_mp_arena_t a = {0};
    memset(out, 0, sizeof *out);
    mc_mp_task_query_req_t q = {.task = task};
    mc_mp_task_query_rep_t rep;
    int rc;
    CALL(task_query, &q, &rep, &a, rc);
    if (rc == 0) {
        out->id = rep.task;
        out->type = rep.type;
        out->status = rep.status;
        out->created_ms = rep.created_ms;
        out->updated_ms = rep.updated_ms;
        out->assigned_client = rep.assigned_client;
        snprintf(out->message, sizeof out->message, "%s", rep.message ? rep.message : "");
    }
    mc_mp_arena_free(&a);
    return rc;
}
