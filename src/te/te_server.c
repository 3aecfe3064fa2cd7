/* te_server.c: the engine's listener. One thread accepts; each connection gets
 * a thread that reads frames and serves them: READ/WRITE move bytes straight
 * between the socket and registered memory (no user-space copy), META returns
 * our descriptor, NOTIFY queues a notification, PROBE answers.
 *
 * Why threads and blocking sockets rather than an event loop: a data request
 * is one recv()/send() of up to many MiB straight into the target buffer, the
 * number of connections is small (lanes x peers), and a blocked thread costs
 * nothing while the kernel copies. Bad input closes only its own connection. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base_env.h"
#include "base_log.h"
#include "net_sock.h"
#include "te_int.h"

#define TAG "te-server"

typedef struct {
    mc_te_t *te;
    int fd;
    char peer[80];
} conn_t;

static void conn_forget(mc_te_t *te, int fd)
{
    pthread_mutex_lock(&te->conns_lock);
    for (size_t i = 0; i < te->nconns; i++)
        if (te->conn_fds[i] == fd) {
            te->conn_fds[i] = te->conn_fds[--te->nconns];
            break;
        }
    close(fd);
    pthread_cond_broadcast(&te->conns_cond);
    pthread_mutex_unlock(&te->conns_lock);
}

/* Reads a bounded handshake payload into a malloc'd NUL-terminated buffer. */
static int read_payload(conn_t *c, uint64_t len, char **out)
{
    uint64_t max = (uint64_t)mc_env_int("MC_HANDSHAKE_MAX_LENGTH", 1 << 20, 1, 128 << 20);
    if (len > max) {
        MC_LOGW(TAG, "peer %s: payload of %llu bytes exceeds the %llu limit; closing", c->peer,
                (unsigned long long)len, (unsigned long long)max);
        return -1;
    }
    char *p = malloc(len + 1);
    if (!p) return -1;
    if (mc_sock_recv_all(c->fd, p, len) != 0) {
        MC_LOGW(TAG, "peer %s: truncated payload; closing", c->peer);
        free(p);
        return -1;
    }
    p[len] = '\0';
    *out = p;
    return 0;
}

/* Serves one READ or WRITE. Returns 0 to keep the connection, -1 to close it. */
static int serve_data(conn_t *c, const mc__te_hdr_t *h)
{
    mc_te_t *te = c->te;
    int write = h->opcode == MC_TE_OP_WRITE;
    pthread_rwlock_rdlock(&te->bufs_lock);
    if (!mc__te_local_contains_locked(te, h->addr, h->length)) {
        pthread_rwlock_unlock(&te->bufs_lock);
        MC_LOGW(TAG, "peer %s: %s of %llu bytes at 0x%llx is outside registered memory; refused",
                c->peer, write ? "WRITE" : "READ", (unsigned long long)h->length,
                (unsigned long long)h->addr);
        mc__te_send_frame(c->fd, h->opcode | MC_TE_OP_REPLY, h->req_id, MC_TE_ST_OUT_OF_RANGE,
                          h->addr, 0, NULL);
        return write ? -1 : 0; /* a refused WRITE leaves its payload unread: resync by closing */
    }
    void *mem = (void *)(uintptr_t)h->addr;
    int rc;
    if (write) {
        rc = mc_sock_recv_all(c->fd, mem, h->length);
        if (rc == 0)
            rc = mc__te_send_frame(c->fd, MC_TE_OP_WRITE | MC_TE_OP_REPLY, h->req_id, MC_TE_ST_OK,
                                   h->addr, 0, NULL);
    } else {
        rc = mc__te_send_frame(c->fd, MC_TE_OP_READ | MC_TE_OP_REPLY, h->req_id, MC_TE_ST_OK,
                               h->addr, h->length, mem);
    }
    pthread_rwlock_unlock(&te->bufs_lock);
    if (rc) MC_LOGW(TAG, "peer %s: connection lost during %s: %s", c->peer,
                    write ? "WRITE" : "READ", strerror(-rc));
    return rc ? -1 : 0;
}

static int serve_control(conn_t *c, const mc__te_hdr_t *h)
{
    mc_te_t *te = c->te;
    char *payload = NULL;
    if (h->length && read_payload(c, h->length, &payload)) return -1;
    int rc = 0;
    if (h->opcode == MC_TE_OP_META) {
        mc__te_desc_t self;
        char *json = NULL;
        if (mc__te_self_desc(te, &self) == 0) {
            json = mc__te_desc_encode(&self);
            mc__te_desc_clear(&self);
        }
        rc = mc__te_send_frame(c->fd, MC_TE_OP_META | MC_TE_OP_REPLY, h->req_id,
                               json ? MC_TE_ST_OK : MC_TE_ST_BAD_REQUEST, 0,
                               json ? strlen(json) : 0, json);
        free(json);
    } else if (h->opcode == MC_TE_OP_NOTIFY) {
        char *name, *msg;
        if (!payload || mc__te_notify_decode(payload, h->length, &name, &msg) != 0) {
            MC_LOGW(TAG, "peer %s: malformed notification; closing", c->peer);
            rc = -1;
        } else {
            mc__te_notify_push(te, name, msg);
            rc = mc__te_send_frame(c->fd, MC_TE_OP_NOTIFY | MC_TE_OP_REPLY, h->req_id,
                                   MC_TE_ST_OK, 0, 0, NULL);
        }
    } else { /* PROBE */
        rc = mc__te_send_frame(c->fd, MC_TE_OP_PROBE | MC_TE_OP_REPLY, h->req_id, MC_TE_ST_OK, 0,
                               0, NULL);
    }
    free(payload);
    return rc ? -1 : 0;
}

static void *conn_main(void *arg)
{
    conn_t *c = arg;
    mc_te_t *te = c->te;
    mc_sock_set_timeout(c->fd, te->io_timeout_ms);
    for (;;) {
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        if (poll(&pfd, 1, -1) < 0 && errno != EINTR) break;
        if (atomic_load(&te->stopping)) break;
        uint8_t buf[MC_TE_HDR_LEN];
        ssize_t peek = recv(c->fd, buf, 1, MSG_PEEK);
        if (peek < 0 && errno == EINTR) continue;
        if (peek <= 0) break; /* closed or reset between frames: not an error */
        int rc = mc_sock_recv_all(c->fd, buf, sizeof buf);
        if (rc) { /* part of a header, then close, reset or timeout */
            MC_LOGW(TAG, "peer %s: truncated header (%s); closing", c->peer, strerror(-rc));
            break;
        }
        mc__te_hdr_t h;
        const char *why;
        if (mc__te_hdr_decode(buf, sizeof buf, &h, &why) != 0) {
            MC_LOGW(TAG, "peer %s: %s; closing", c->peer, why);
            break;
        }
        if (h.opcode & MC_TE_OP_REPLY) {
            MC_LOGW(TAG, "peer %s: unexpected reply frame; closing", c->peer);
            break;
        }
        int keep = (h.opcode == MC_TE_OP_READ || h.opcode == MC_TE_OP_WRITE) ? serve_data(c, &h)
                                                                               : serve_control(c, &h);
        if (keep) break;
    }
    conn_forget(te, c->fd);
    free(c);
    return NULL;
}

static void *listener_main(void *arg)
{
    mc_te_t *te = arg;
    for (;;) {
        struct pollfd pfd[2] = {{.fd = te->listen_fd, .events = POLLIN},
                                {.fd = te->wake_pipe[0], .events = POLLIN}};
        if (poll(pfd, 2, -1) < 0 && errno != EINTR) break;
        if (atomic_load(&te->stopping) || pfd[1].revents) break;
        if (!(pfd[0].revents & POLLIN)) continue;
        int fd = accept4(te->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) continue;
        mc_sock_tune(fd);
        conn_t *c = calloc(1, sizeof *c);
        pthread_mutex_lock(&te->conns_lock);
        if (c && te->nconns == te->capconns) {
            size_t cap = te->capconns ? te->capconns * 2 : 16;
            int *n = realloc(te->conn_fds, cap * sizeof *n);
            if (n) te->conn_fds = n, te->capconns = cap;
        }
        if (!c || te->nconns == te->capconns) {
            pthread_mutex_unlock(&te->conns_lock);
            MC_LOGE(TAG, "out of memory accepting a connection");
            free(c);
            close(fd);
            continue;
        }
        te->conn_fds[te->nconns++] = fd;
        pthread_mutex_unlock(&te->conns_lock);
        c->te = te;
        c->fd = fd;
        mc_sock_peer_str(fd, c->peer, sizeof c->peer);
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, conn_main, c) != 0) {
            MC_LOGE(TAG, "cannot start a thread for peer %s", c->peer);
            conn_forget(te, fd);
            free(c);
        }
        pthread_attr_destroy(&attr);
    }
    return NULL;
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
    for (size_t i = 0; i < te->nconns; i++) shutdown(te->conn_fds[i], SHUT_RDWR);
    while (te->nconns) pthread_cond_wait(&te->conns_cond, &te->conns_lock);
    pthread_mutex_unlock(&te->conns_lock);
    free(te->conn_fds);
    te->conn_fds = NULL;
    if (te->listen_fd >= 0) close(te->listen_fd);
    if (te->wake_pipe[0] >= 0) close(te->wake_pipe[0]), close(te->wake_pipe[1]);
    te->listen_fd = te->wake_pipe[0] = te->wake_pipe[1] = -1;
}
