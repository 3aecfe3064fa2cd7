/* te_server.c: the engine's listener. One thread accepts; each connection gets
 * a thread that reads frames and serves them: READ/WRITE move bytes straight
 * between the socket and registered memory (no user-space copy but for the
 * start of a WRITE's payload that came in with the read-ahead), META returns
 * our descriptor, NOTIFY queues a notification, PROBE answers. Requests are
 * read ahead (RBUF_LEN) and their replies queued until no whole request is
 * left, so a pipeline of small pieces is answered with one sendmsg.
 *
 * Limits (docs/transfer-engine.md "Server limits"): at most MC_TE_MAX_CONNS
 * connections (idle ones included; more are closed at accept, logged once a
 * second); every frame, header to reply, has a whole-frame deadline of
 * MC_TE_IO_TIMEOUT_MS + length / MC_TE_FRAME_MIN_RATE, so a peer that trickles
 * bytes holds a thread (and a control payload's memory) for a bounded time. No
 * lock is held while bytes move: a data op is recorded in the connection
 * table, and unregister shuts down the connections whose op overlaps the
 * buffers it removes (mc__te_server_fence) rather than waiting for them.
 *
 * Why threads and blocking sockets rather than an event loop: a data request
 * is one recv()/send() of up to many MiB straight into the target buffer, the
 * number of connections is small (lanes x peers), and a blocked thread costs
 * nothing while the kernel copies. Bad input closes only its own connection. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base_env.h"
#include "base_log.h"
#include "base_time.h"
#include "net_auth.h"
#include "net_sock.h"
#include "te_int.h"

#define TAG "te-server"

/* One accepted connection. The op fields describe the data transfer in flight
 * (op_len 0: none) and are read and written under te->conns_lock. */
typedef struct mc__te_conn {
    mc_te_t *te;
    int fd;
    char peer[80];
    uint64_t op_addr, op_len;
    int fenced;           /* shut down by mc__te_server_fence */
    int cur_ms;           /* SO_RCVTIMEO/SO_SNDTIMEO now set on fd */
    uint64_t deadline_ms; /* of the frame being served */
    /* the cluster secret's exchange (net_auth.h): authed once PROOF checked */
    int authed, hello_seen;
    uint8_t nonce_c[MC_AUTH_NONCE_LEN], nonce_s[MC_AUTH_NONCE_LEN];
    /* read-ahead: received bytes not yet served are rbuf[rpos..rlen) */
    uint8_t *rbuf;
    size_t rpos, rlen;
    /* replies queued for one sendmsg (flush_replies): nq headers in qhdr, their
     * iovecs (a READ's payload points into registered memory) in qiov */
    uint8_t (*qhdr)[MC_TE_HDR_LEN];
    struct iovec *qiov;
    size_t nq, nqiov;
    uint64_t qbytes, qstart_ms;
} conn_t;

/* Read-ahead per connection: a pipeline of small requests arrives in one recv. */
#define RBUF_LEN (64 * 1024)
/* Queued replies go out when this many are queued or hold this many bytes, and
 * always before the thread waits for more requests. */
#define QMAX 256
#define QBYTES_MAX (1024 * 1024)

static void conn_forget(mc_te_t *te, conn_t *c)
{
    pthread_mutex_lock(&te->conns_lock);
    for (size_t i = 0; i < te->nconns; i++)
        if (te->conns[i] == c) {
            te->conns[i] = te->conns[--te->nconns];
            break;
        }
    close(c->fd);
    pthread_cond_broadcast(&te->conns_cond);
    pthread_mutex_unlock(&te->conns_lock);
    free(c->rbuf);
    free(c->qhdr);
    free(c->qiov);
    free(c);
}

uint64_t mc__te_frame_deadline(const mc_te_t *te, uint64_t start_ms, uint64_t len)
{
    uint64_t q = len / te->frame_min_rate, r = len % te->frame_min_rate;
    uint64_t extra =
        q > UINT64_MAX / 4000 ? UINT64_MAX / 4 : q * 1000 + r * 1000 / te->frame_min_rate;
    uint64_t d = start_ms + te->frame_base_ms;
    return extra > UINT64_MAX - d ? UINT64_MAX : d + extra;
}

/* Logs why a frame's I/O failed, naming the peer. */
static void log_io_fail(conn_t *c, const char *what, uint64_t len, int rc)
{
    pthread_mutex_lock(&c->te->conns_lock);
    int fenced = c->fenced;
    pthread_mutex_unlock(&c->te->conns_lock);
    if (rc == -ETIME)
        MC_LOGW(TAG,
                "peer %s: %s of %llu bytes not done by its deadline (%llu ms + %llu B/s); "
                "closing",
                c->peer, what, (unsigned long long)len, (unsigned long long)c->te->frame_base_ms,
                (unsigned long long)c->te->frame_min_rate);
    else if (fenced)
        MC_LOGW(TAG, "peer %s: %s of %llu bytes cut: its buffer was unregistered; closing", c->peer,
                what, (unsigned long long)len);
    else
        MC_LOGW(TAG, "peer %s: connection lost during %s of %llu bytes: %s", c->peer, what,
                (unsigned long long)len, strerror(-rc));
}

static int conn_io(conn_t *c, void *buf, size_t len, int dir_send)
{
    return mc__te_io_by(c->fd, buf, len, dir_send, c->deadline_ms, c->te->io_timeout_ms,
                        &c->cur_ms);
}

/* Reads len bytes of the current frame: first what the read-ahead holds, the
 * rest straight from the socket into buf. */
static int conn_read(conn_t *c, void *buf, size_t len)
{
    size_t have = c->rlen - c->rpos, k = have < len ? have : len;
    memcpy(buf, c->rbuf + c->rpos, k);
    c->rpos += k;
    return len > k ? conn_io(c, (char *)buf + k, len - k, 0) : 0;
}

/* Sends the queued replies, all in one sendmsg where the socket takes them,
 * under the deadline of their bytes from when the first was queued. The
 * memory of the queued READs is no longer touched afterwards. */
static int flush_replies(conn_t *c)
{
    if (!c->nq) return 0;
    c->deadline_ms = mc__te_frame_deadline(c->te, c->qstart_ms, c->qbytes);
    int rc = mc__te_iov_send_by(c->fd, c->qiov, c->nqiov, c->deadline_ms, c->te->io_timeout_ms,
                                &c->cur_ms);
    if (rc) log_io_fail(c, c->nq > 1 ? "pipelined replies" : "reply", c->qbytes, rc);
    pthread_mutex_lock(&c->te->conns_lock);
    c->op_len = 0;
    pthread_cond_broadcast(&c->te->conns_cond);
    pthread_mutex_unlock(&c->te->conns_lock);
    c->nq = c->nqiov = 0;
    c->qbytes = 0;
    return rc;
}

/* Queues a reply (payload: length bytes that stay valid until the flush). */
static int queue_reply(conn_t *c, uint8_t opcode, uint32_t req_id, int32_t status, uint64_t addr,
                       uint64_t length, const void *payload)
{
    if (c->nq == QMAX && flush_replies(c)) return -1;
    if (!c->nq) c->qstart_ms = mc_now_ms();
    mc__te_hdr_t h = {MC_TE_MAGIC, MC_TE_VERSION, opcode, 0, req_id, status, addr, length};
    mc__te_hdr_encode(&h, c->qhdr[c->nq]);
    c->qiov[c->nqiov++] = (struct iovec){c->qhdr[c->nq++], MC_TE_HDR_LEN};
    if (length && payload) {
        c->qiov[c->nqiov++] = (struct iovec){(void *)(uintptr_t)payload, (size_t)length};
        c->qbytes += length;
    }
    return c->qbytes >= QBYTES_MAX ? flush_replies(c) : 0;
}

/* A reply sent at once, after any queued before it. */
static int conn_reply(conn_t *c, uint8_t opcode, uint32_t req_id, int32_t status, uint64_t addr,
                      uint64_t length, const void *payload)
{
    if (flush_replies(c)) return -1;
    return mc__te_send_frame_by(c->fd, opcode, req_id, status, addr, length, payload,
                                c->deadline_ms, c->te->io_timeout_ms, &c->cur_ms);
}

/* Reads a bounded handshake payload into a malloc'd NUL-terminated buffer,
 * within the frame's deadline. */
static int read_payload(conn_t *c, const mc__te_hdr_t *h, char **out)
{
    uint64_t len = h->length;
    uint64_t max = (uint64_t)mc_env_int("MC_HANDSHAKE_MAX_LENGTH", 1 << 20, 1, 128 << 20);
    if (len > max) {
        MC_LOGW(TAG, "peer %s: payload of %llu bytes exceeds the %llu limit; closing", c->peer,
                (unsigned long long)len, (unsigned long long)max);
        return -1;
    }
    char *p = malloc(len + 1);
    if (!p) return -1;
    int rc = conn_read(c, p, len);
    if (rc) {
        log_io_fail(c, "control payload", len, rc);
        free(p);
        return -1;
    }
    p[len] = '\0';
    *out = p;
    return 0;
}

/* Serves one READ or WRITE. The range is checked and the op recorded under
 * bufs_lock (shared); the bytes then move with no lock held, so unregister
 * never waits for the peer: it shuts this connection down instead
 * (mc__te_server_fence). A READ's reply is queued with its payload in place
 * (registered memory, sent at the flush); the op span recorded covers every
 * queued READ until then. Returns 0 to keep the connection, -1 to close it. */
static int serve_data(conn_t *c, const mc__te_hdr_t *h)
{
    mc_te_t *te = c->te;
    int write = h->opcode == MC_TE_OP_WRITE;
    pthread_rwlock_rdlock(&te->bufs_lock);
    int ok = mc__te_local_contains_locked(te, h->addr, h->length);
    if (ok) {
        pthread_mutex_lock(&te->conns_lock);
        if (!c->op_len) {
            c->op_addr = h->addr;
            c->op_len = h->length;
        } else { /* queued READs too: the span of them all */
            uint64_t lo = c->op_addr < h->addr ? c->op_addr : h->addr;
            uint64_t hi = c->op_addr + c->op_len, e = h->addr + h->length;
            c->op_addr = lo;
            c->op_len = (hi > e ? hi : e) - lo;
        }
        pthread_mutex_unlock(&te->conns_lock);
    }
    pthread_rwlock_unlock(&te->bufs_lock);
    if (!ok) {
        MC_LOGW(TAG, "peer %s: %s of %llu bytes at 0x%llx is outside registered memory; refused",
                c->peer, write ? "WRITE" : "READ", (unsigned long long)h->length,
                (unsigned long long)h->addr);
        if (write) { /* its payload stays unread: resync by closing */
            conn_reply(c, h->opcode | MC_TE_OP_REPLY, h->req_id, MC_TE_ST_OUT_OF_RANGE, h->addr,
                       0, NULL);
            return -1;
        }
        return queue_reply(c, h->opcode | MC_TE_OP_REPLY, h->req_id, MC_TE_ST_OUT_OF_RANGE,
                           h->addr, 0, NULL);
    }
    void *mem = (void *)(uintptr_t)h->addr;
    if (!write)
        return queue_reply(c, MC_TE_OP_READ | MC_TE_OP_REPLY, h->req_id, MC_TE_ST_OK, h->addr,
                           h->length, mem);
    int rc = conn_read(c, mem, h->length);
    /* a cut op logs before it lets a fencing unregister return, so the line
     * is there by the time the application sees the unregister done */
    if (rc) log_io_fail(c, "WRITE", h->length, rc);
    if (rc || !c->qbytes) { /* no queued READ left in the span: the memory is no longer touched */
        pthread_mutex_lock(&te->conns_lock);
        c->op_len = 0;
        pthread_cond_broadcast(&te->conns_cond);
        pthread_mutex_unlock(&te->conns_lock);
    }
    if (rc) return -1;
    return queue_reply(c, MC_TE_OP_WRITE | MC_TE_OP_REPLY, h->req_id, MC_TE_ST_OK, h->addr, 0,
                       NULL);
}

static int serve_control(conn_t *c, const mc__te_hdr_t *h)
{
    mc_te_t *te = c->te;
    char *payload = NULL;
    if (h->length && read_payload(c, h, &payload)) return -1;
    int rc = 0;
    if (h->opcode == MC_TE_OP_META) {
        mc__te_desc_t self;
        char *json = NULL;
        if (mc__te_self_desc(te, &self) == 0) {
            json = mc__te_desc_encode(&self);
            mc__te_desc_clear(&self);
        }
        rc =
            conn_reply(c, MC_TE_OP_META | MC_TE_OP_REPLY, h->req_id,
                       json ? MC_TE_ST_OK : MC_TE_ST_BAD_REQUEST, 0, json ? strlen(json) : 0, json);
        free(json);
    } else if (h->opcode == MC_TE_OP_NOTIFY) {
        char *name, *msg;
        if (!payload || mc__te_notify_decode(payload, h->length, &name, &msg) != 0) {
            MC_LOGW(TAG, "peer %s: malformed notification; closing", c->peer);
            free(payload);
            return -1;
        } else {
            free(payload); /* before the queue takes msg: one copy of it at a time */
            payload = NULL;
            int st = mc__te_notify_push(te, name, msg, c->peer);
            rc = conn_reply(c, MC_TE_OP_NOTIFY | MC_TE_OP_REPLY, h->req_id, st, 0, 0, NULL);
        }
    } else { /* PROBE */
        rc = conn_reply(c, MC_TE_OP_PROBE | MC_TE_OP_REPLY, h->req_id, MC_TE_ST_OK, 0, 0, NULL);
    }
    if (rc) log_io_fail(c, "control reply", 0, rc);
    free(payload);
    return rc ? -1 : 0;
}

/* Answers h with an auth status and logs why in one line naming the peer (at
 * most one a second, with the count since the last). The caller closes. */
static void auth_refuse(conn_t *c, const mc__te_hdr_t *h, int32_t st, const char *why)
{
    conn_reply(c, h->opcode | MC_TE_OP_REPLY, h->req_id, st, 0, 0, NULL);
    char who[96];
    snprintf(who, sizeof who, "peer %s", c->peer);
    mc_auth_refused(&c->te->auth_refusals, TAG, who, why);
}

/* One frame of the cluster secret's exchange (HELLO or PROOF). Returns 0 to
 * keep the connection, -1 to close it. */
static int serve_auth(conn_t *c, const mc__te_hdr_t *h)
{
    mc_te_t *te = c->te;
    int hello = h->opcode == MC_TE_OP_AUTH_HELLO;
    size_t want = hello ? MC_TE_AUTH_HELLO_LEN : MC_AUTH_MAC_LEN;
    uint8_t p[MC_TE_AUTH_HELLO_LEN];
    if (h->length != want) {
        MC_LOGW(TAG, "peer %s: %s of %llu bytes (want %zu); closing", c->peer,
                hello ? "AUTH_HELLO" : "AUTH_PROOF", (unsigned long long)h->length, want);
        return -1;
    }
    int rc = conn_read(c, p, want);
    if (rc) {
        log_io_fail(c, "auth payload", want, rc);
        return -1;
    }
    if (!te->auth_key) /* an open engine: the client decides whether to go on */
        return conn_reply(c, h->opcode | MC_TE_OP_REPLY, h->req_id, MC_TE_ST_AUTH_OFF, 0, 0, NULL)
                   ? -1
                   : 0;
    if (c->authed || (hello && c->hello_seen) || (!hello && !c->hello_seen)) {
        auth_refuse(c, h, MC_TE_ST_AUTH_FAILED, "the secret's exchange out of order");
        return -1;
    }
    if (hello) {
        if (p[0] != MC_AUTH_VERSION) {
            char w[96];
            snprintf(w, sizeof w, "handshake version %u (this engine speaks %u)", p[0],
                     MC_AUTH_VERSION);
            auth_refuse(c, h, MC_TE_ST_AUTH_VERSION, w);
            return -1;
        }
        if (mc_auth_nonce(c->nonce_s)) {
            auth_refuse(c, h, MC_TE_ST_AUTH_FAILED, "no random bytes for a nonce");
            return -1;
        }
        memcpy(c->nonce_c, p + 1, MC_AUTH_NONCE_LEN);
        c->hello_seen = 1;
        uint8_t r[MC_TE_AUTH_HELLO_REP_LEN];
        memcpy(r, c->nonce_s, MC_AUTH_NONCE_LEN);
        mc_auth_mac(te->auth_key, 'S', "te", c->nonce_c, c->nonce_s, r + MC_AUTH_NONCE_LEN);
        return conn_reply(c, h->opcode | MC_TE_OP_REPLY, h->req_id, MC_TE_ST_OK, 0, sizeof r, r)
                   ? -1
                   : 0;
    }
    if (!mc_auth_mac_ok(te->auth_key, 'C', "te", c->nonce_s, c->nonce_c, p)) {
        auth_refuse(c, h, MC_TE_ST_AUTH_FAILED, "wrong cluster secret");
        return -1;
    }
    c->authed = 1;
    return conn_reply(c, h->opcode | MC_TE_OP_REPLY, h->req_id, MC_TE_ST_OK, 0, 0, NULL) ? -1 : 0;
}

/* Makes the next frame's header whole in the read-ahead. What has arrived is
 * taken without waiting; before the thread waits for more, the queued replies
 * go out, so a pipeline is answered with one send. Returns 0, 1 when the
 * connection ended between frames (closed, reset, the engine stopping: not an
 * error), or -1 after a logged failure. */
static int next_header(conn_t *c)
{
    mc_te_t *te = c->te;
    size_t have = c->rlen - c->rpos;
    if (have >= MC_TE_HDR_LEN) return 0;
    memmove(c->rbuf, c->rbuf + c->rpos, have);
    c->rpos = 0;
    c->rlen = have;
    ssize_t n = recv(c->fd, c->rbuf + c->rlen, RBUF_LEN - c->rlen, MSG_DONTWAIT);
    if (n > 0) c->rlen += (size_t)n;
    if (c->rlen >= MC_TE_HDR_LEN) return 0;
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        if (!c->rlen) return 1;
        MC_LOGW(TAG, "peer %s: truncated header (%s); closing", c->peer,
                n == 0 ? "closed" : strerror(errno));
        return -1;
    }
    if (flush_replies(c)) return -1;
    while (!c->rlen) { /* between frames a connection may idle as long as the peer keeps it
                        * (pooled lanes); it counts against MC_TE_MAX_CONNS meanwhile */
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int pr = poll(&pfd, 1, -1);
        if (pr < 0 && errno != EINTR) return 1;
        if (atomic_load(&te->stopping)) return 1;
        if (pr > 0) break;
    }
    c->deadline_ms = mc__te_frame_deadline(te, mc_now_ms(), 0);
    while (c->rlen < MC_TE_HDR_LEN) {
        ssize_t k = mc__te_recv_some_by(c->fd, c->rbuf + c->rlen, RBUF_LEN - c->rlen,
                                        c->deadline_ms, te->io_timeout_ms, &c->cur_ms);
        if (k < 0) {
            if (!c->rlen && k != -ETIME) return 1; /* closed or reset between frames */
            if (k == -ETIME)
                log_io_fail(c, "frame header", MC_TE_HDR_LEN, (int)k);
            else
                MC_LOGW(TAG, "peer %s: truncated header (%s); closing", c->peer,
                        strerror((int)-k));
            return -1;
        }
        c->rlen += (size_t)k;
    }
    return 0;
}

static void *conn_main(void *arg)
{
    conn_t *c = arg;
    mc_te_t *te = c->te;
    c->cur_ms = te->io_timeout_ms;
    c->authed = te->auth_key == NULL;
    mc_sock_set_timeout(c->fd, te->io_timeout_ms);
    c->rbuf = malloc(RBUF_LEN);
    c->qhdr = malloc(QMAX * sizeof *c->qhdr);
    c->qiov = malloc(2 * QMAX * sizeof *c->qiov);
    if (!c->rbuf || !c->qhdr || !c->qiov) {
        MC_LOGE(TAG, "out of memory serving peer %s; closing", c->peer);
        conn_forget(te, c);
        return NULL;
    }
    while (next_header(c) == 0) {
        uint64_t start = mc_now_ms();
        mc__te_hdr_t h;
        const char *why;
        int bad = mc__te_hdr_decode(c->rbuf + c->rpos, MC_TE_HDR_LEN, &h, &why);
        c->rpos += MC_TE_HDR_LEN;
        if (bad) {
            MC_LOGW(TAG, "peer %s: %s; closing", c->peer, why);
            break;
        }
        if (h.opcode & MC_TE_OP_REPLY) {
            MC_LOGW(TAG, "peer %s: unexpected reply frame; closing", c->peer);
            break;
        }
        c->deadline_ms = mc__te_frame_deadline(te, start, h.length);
        if (h.opcode == MC_TE_OP_AUTH_HELLO || h.opcode == MC_TE_OP_AUTH_PROOF) {
            if (serve_auth(c, &h)) break;
            continue;
        }
        if (!c->authed) {
            auth_refuse(c, &h, MC_TE_ST_AUTH_REQUIRED,
                        c->hello_seen ? "a request before its proof of the cluster secret"
                                      : "no proof of the cluster secret (an engine without "
                                        "MC_CLUSTER_SECRET, or an old one)");
            break;
        }
        int keep = (h.opcode == MC_TE_OP_READ || h.opcode == MC_TE_OP_WRITE) ? serve_data(c, &h)
                                                                             : serve_control(c, &h);
        if (keep) break;
    }
    flush_replies(c); /* what was served before a bad frame is still answered */
    conn_forget(te, c);
    return NULL;
}

/* Logs a connection refused at the cap, at most once a second; the line
 * carries how many were refused since the last one. */
static void cap_warn(mc_te_t *te, int fd)
{
    uint64_t now = mc_now_ms(), hits;
    pthread_mutex_lock(&te->conns_lock);
    hits = ++te->conn_cap_hits;
    int warn = now - te->conn_cap_warn_ms >= 1000;
    if (warn) te->conn_cap_warn_ms = now, te->conn_cap_hits = 0;
    pthread_mutex_unlock(&te->conns_lock);
    if (warn) {
        char peer[80];
        mc_sock_peer_str(fd, peer, sizeof peer);
        MC_LOGW(TAG,
                "peer %s: connection refused: %zu connections open (MC_TE_MAX_CONNS); %llu "
                "refused since the last such line",
                peer, te->max_conns, (unsigned long long)hits);
    }
}

static void *listener_main(void *arg)
{
    mc_te_t *te = arg;
    uint64_t accept_warn_ms = 0;
    for (;;) {
        struct pollfd pfd[2] = {{.fd = te->listen_fd, .events = POLLIN},
                                {.fd = te->wake_pipe[0], .events = POLLIN}};
        if (poll(pfd, 2, -1) < 0 && errno != EINTR) break;
        if (atomic_load(&te->stopping) || pfd[1].revents) break;
        if (!(pfd[0].revents & POLLIN)) continue;
        int fd = accept4(te->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* the connection stays queued and poll would return at once:
                 * back off instead of spinning, and say why once a second */
                uint64_t now = mc_now_ms();
                if (now - accept_warn_ms >= 1000) {
                    accept_warn_ms = now;
                    MC_LOGW(TAG, "cannot accept a connection: %s; retrying", strerror(errno));
                }
                poll(NULL, 0, 50);
            }
            continue;
        }
        pthread_mutex_lock(&te->conns_lock);
        int full = te->nconns >= te->max_conns;
        pthread_mutex_unlock(&te->conns_lock);
        if (full) {
            cap_warn(te, fd);
            close(fd);
            continue;
        }
        mc_sock_tune(fd);
        conn_t *c = calloc(1, sizeof *c);
        pthread_mutex_lock(&te->conns_lock);
        if (c && te->nconns == te->capconns) {
            size_t cap = te->capconns ? te->capconns * 2 : 16;
            conn_t **n = realloc(te->conns, cap * sizeof *n);
            if (n) te->conns = n, te->capconns = cap;
        }
        if (!c || te->nconns == te->capconns) {
            pthread_mutex_unlock(&te->conns_lock);
            MC_LOGE(TAG, "out of memory accepting a connection");
            free(c);
            close(fd);
            continue;
        }
        c->te = te;
        c->fd = fd;
        te->conns[te->nconns++] = c;
        pthread_mutex_unlock(&te->conns_lock);
        mc_sock_peer_str(fd, c->peer, sizeof c->peer);
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, conn_main, c) != 0) {
            MC_LOGE(TAG, "cannot start a thread for peer %s", c->peer);
            conn_forget(te, c);
        }
        pthread_attr_destroy(&attr);
    }
    return NULL;
}

void mc__te_server_fence(mc_te_t *te, const mc__te_buf_t *removed, size_t n)
{
    if (!n) return;
    pthread_mutex_lock(&te->conns_lock);
    for (;;) {
        int busy = 0;
        for (size_t i = 0; i < te->nconns; i++) {
            conn_t *c = te->conns[i];
            if (!c->op_len) continue;
            for (size_t k = 0; k < n; k++) {
                const mc__te_buf_t *b = &removed[k];
                if (c->op_addr < b->addr + b->length && b->addr < c->op_addr + c->op_len) {
                    if (!c->fenced) {
                        c->fenced = 1;
                        shutdown(c->fd, SHUT_RDWR); /* ends its recv/send now */
                    }
                    busy = 1;
                    break;
                }
            }
        }
        if (!busy) break;
        pthread_cond_wait(&te->conns_cond, &te->conns_lock);
    }
    pthread_mutex_unlock(&te->conns_lock);
}

int mc__te_server_start(mc_te_t *te)
{
    if (pipe2(te->wake_pipe, O_CLOEXEC) != 0) return MC_TE_ERR_SOCKET;
    if (pthread_create(&te->listener, NULL, listener_main, te) != 0) return MC_TE_ERR_SOCKET;
    te->listener_running = 1;
    return 0;
}

void mc__te_server_stop(mc_te_t *te)
{
    atomic_store(&te->stopping, 1);
    if (te->listener_running) {
        ssize_t w = write(te->wake_pipe[1], "x", 1);
        (void)w;
        pthread_join(te->listener, NULL);
        te->listener_running = 0;
    }
    pthread_mutex_lock(&te->conns_lock);
    for (size_t i = 0; i < te->nconns; i++)
        shutdown(te->conns[i]->fd, SHUT_RDWR);
    while (te->nconns)
        pthread_cond_wait(&te->conns_cond, &te->conns_lock);
    pthread_mutex_unlock(&te->conns_lock);
    free(te->conns);
    te->conns = NULL;
    if (te->listen_fd >= 0) close(te->listen_fd);
    if (te->wake_pipe[0] >= 0) close(te->wake_pipe[0]), close(te->wake_pipe[1]);
    te->listen_fd = te->wake_pipe[0] = te->wake_pipe[1] = -1;
}
