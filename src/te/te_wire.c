/* te_wire.c: the transfer engine's frame header, the one binary format spoken
 * between engines (handshake and data alike). Layout in docs/protocol.md. */
#include <errno.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/time.h>

#include "base_codec.h"
#include "base_time.h"
#include "net_sock.h"
#include "te_int.h"

void mc__te_hdr_encode(const mc__te_hdr_t *h, uint8_t out[MC_TE_HDR_LEN])
{
    mc_wr_t w = mc_wr_init(out, MC_TE_HDR_LEN);
    mc_wr_u32(&w, h->magic);
    mc_wr_u8(&w, h->version);
    mc_wr_u8(&w, h->opcode);
    mc_wr_u16(&w, h->flags);
    mc_wr_u32(&w, h->req_id);
    mc_wr_u32(&w, (uint32_t)h->status);
    mc_wr_u64(&w, h->addr);
    mc_wr_u64(&w, h->length);
}

int mc__te_hdr_decode(const uint8_t *buf, size_t len, mc__te_hdr_t *h, const char **why)
{
    mc_rd_t r = mc_rd_init(buf, len);
    h->magic = mc_rd_u32(&r);
    h->version = mc_rd_u8(&r);
    h->opcode = mc_rd_u8(&r);
    h->flags = mc_rd_u16(&r);
    h->req_id = mc_rd_u32(&r);
    h->status = (int32_t)mc_rd_u32(&r);
    h->addr = mc_rd_u64(&r);
    h->length = mc_rd_u64(&r);
    if (r.err) {
        *why = "truncated header";
        return -1;
    }
    if (h->magic != MC_TE_MAGIC) {
        *why = "bad magic";
        return -1;
    }
    if (h->version != MC_TE_VERSION) {
        *why = "unsupported protocol version";
        return -1;
    }
    switch (h->opcode & ~MC_TE_OP_REPLY) {
    case MC_TE_OP_READ:
    case MC_TE_OP_WRITE:
    case MC_TE_OP_META:
    case MC_TE_OP_NOTIFY:
    case MC_TE_OP_PROBE:
    case MC_TE_OP_AUTH_HELLO:
    case MC_TE_OP_AUTH_PROOF:
        break;
    default:
        *why = "unknown opcode";
        return -1;
    }
    if (h->flags != 0) {
        *why = "unknown flags";
        return -1;
    }
    return 0;
}

int mc__te_send_frame(int fd, uint8_t opcode, uint32_t req_id, int32_t status, uint64_t addr,
                      uint64_t length, const void *payload)
{
    mc__te_hdr_t h = {MC_TE_MAGIC, MC_TE_VERSION, opcode, 0, req_id, status, addr, length};
    uint8_t buf[MC_TE_HDR_LEN];
    mc__te_hdr_encode(&h, buf);
    int rc = mc_sock_send_all(fd, buf, sizeof buf);
    if (rc == 0 && length && payload) rc = mc_sock_send_all(fd, payload, length);
    return rc;
}

/* One direction of mc__te_io_by: returns bytes moved (>0), 0 on a peer close
 * (receive only), or -errno. */
static ssize_t io_once(int fd, void *buf, size_t len, int dir_send)
{
    return dir_send ? send(fd, buf, len, MSG_NOSIGNAL) : recv(fd, buf, len, MSG_WAITALL);
}

/* Lowers (or raises back) the socket timeouts of fd for what is left until
 * deadline_ms; -ETIME when it passed. See mc__te_io_by. */
static int fit_timeout(int fd, uint64_t deadline_ms, int io_ms, int *cur_ms)
{
    uint64_t now = mc_now_ms();
    if (now >= deadline_ms) return -ETIME;
    uint64_t left = deadline_ms - now;
    int ms = left < (uint64_t)io_ms ? (int)left : io_ms;
    /* the socket timeout may run past the deadline by tol: so only a frame
     * that used up its time (the slow path) costs setsockopt calls */
    int tol = io_ms / 8 < 1000 ? io_ms / 8 : 1000;
    if (ms + tol < *cur_ms || ms > *cur_ms + tol) {
        struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        *cur_ms = ms;
    }
    return 0;
}

/* What a failed send/recv means under the deadline rules: 1 to try again,
 * else the error to return. */
static int io_error(int io_ms, int cur_ms)
{
    if (errno == EINTR) return 1;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return cur_ms >= io_ms ? -ETIMEDOUT /* silent for a whole I/O timeout */
                               : 1;         /* the frame deadline decides at the top */
    return -errno;
}

int mc__te_io_by(int fd, void *buf, size_t len, int dir_send, uint64_t deadline_ms, int io_ms,
                 int *cur_ms)
{
    char *p = buf;
    while (len) {
        int rc = fit_timeout(fd, deadline_ms, io_ms, cur_ms);
        if (rc) return rc;
        ssize_t n = io_once(fd, p, len, dir_send);
        if (n == 0) return -ECONNRESET;
        if (n < 0) {
            if ((rc = io_error(io_ms, *cur_ms)) == 1) continue;
            return rc;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

ssize_t mc__te_recv_some_by(int fd, void *buf, size_t cap, uint64_t deadline_ms, int io_ms,
                            int *cur_ms)
{
    for (;;) {
        int rc = fit_timeout(fd, deadline_ms, io_ms, cur_ms);
        if (rc) return rc;
        ssize_t n = recv(fd, buf, cap, 0);
        if (n > 0) return n;
        if (n == 0) return -ECONNRESET;
        if ((rc = io_error(io_ms, *cur_ms)) == 1) continue;
        return rc;
    }
}

ssize_t mc__te_iov_recv_some_by(int fd, struct iovec *iov, size_t n, uint64_t deadline_ms,
                                int io_ms, int *cur_ms)
{
    for (;;) {
        int rc = fit_timeout(fd, deadline_ms, io_ms, cur_ms);
        if (rc) return rc;
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = n < IOV_MAX ? n : IOV_MAX};
        ssize_t k = recvmsg(fd, &mh, 0);
        if (k > 0) return k;
        if (k == 0) return -ECONNRESET;
        if ((rc = io_error(io_ms, *cur_ms)) == 1) continue;
        return rc;
    }
}

void mc__te_iov_advance(struct iovec **iov, size_t *n, size_t done)
{
    while (*n && (done || !(*iov)->iov_len)) {
        if (!(*iov)->iov_len) { /* sent or filled, or empty from the start */
            (*iov)++, (*n)--;
            continue;
        }
        size_t step = done < (*iov)->iov_len ? done : (*iov)->iov_len;
        (*iov)->iov_base = (char *)(*iov)->iov_base + step;
        (*iov)->iov_len -= step;
        done -= step;
    }
}

int mc__te_iov_send_by(int fd, struct iovec *iov, size_t n, uint64_t deadline_ms, int io_ms,
                       int *cur_ms)
{
    while (n) {
        if (!iov->iov_len) { /* sent, or nothing to send */
            iov++, n--;
            continue;
        }
        int rc = fit_timeout(fd, deadline_ms, io_ms, cur_ms);
        if (rc) return rc;
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = n < IOV_MAX ? n : IOV_MAX};
        ssize_t k = sendmsg(fd, &mh, MSG_NOSIGNAL);
        if (k < 0) {
            if ((rc = io_error(io_ms, *cur_ms)) == 1) continue;
            return rc;
        }
        mc__te_iov_advance(&iov, &n, (size_t)k); /* step over what went */
    }
    return 0;
}

int mc__te_send_frame_by(int fd, uint8_t opcode, uint32_t req_id, int32_t status, uint64_t addr,
                         uint64_t length, const void *payload, uint64_t deadline_ms, int io_ms,
                         int *cur_ms)
{
    mc__te_hdr_t h = {MC_TE_MAGIC, MC_TE_VERSION, opcode, 0, req_id, status, addr, length};
    uint8_t buf[MC_TE_HDR_LEN];
    mc__te_hdr_encode(&h, buf);
    /* header and payload in one call: a small frame is one segment on the wire */
    struct iovec iov[2] = {{buf, sizeof buf},
                           {(void *)(uintptr_t)payload, length && payload ? (size_t)length : 0}};
    return mc__te_iov_send_by(fd, iov, 2, deadline_ms, io_ms, cur_ms);
}
