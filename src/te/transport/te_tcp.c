/* te_tcp.c: the initiator half of the tcp transport. A piece is one request on
 * a pooled persistent connection: header, then the payload for a WRITE; the
 * reply header, then the payload for a READ. Bytes go straight between the
 * socket and the caller's buffer. A connection that fails is closed; a piece
 * that failed on a reused (possibly stale) connection is retried once on a new
 * one, after re-reading the peer's descriptor. Small pieces in a row to one
 * peer run as a pipeline (mc__te_tcp_xfer_many): all requests out in one
 * sendmsg, then the replies in order, so a batch of them costs about one round
 * trip plus its bytes; the replies are read with recvmsg straight into place
 * (read_replies). The server half is te_server.c, which answers a pipeline
 * with one send. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "base_log.h"
#include "base_time.h"
#include "net_sock.h"
#include "te_int.h"

#define TAG "te-tcp"

/* One exchange on fd, within the frame deadline of its length
 * (mc__te_frame_deadline): a target that trickles its answer fails the piece
 * rather than holding the worker. Returns 0, a negative errno for
 * connection-level failures (-ETIME past the deadline), or 1 when the peer
 * refused the range. */
/* Reads the reply to request req_id (opcode, len bytes at local) under the
 * deadline: for a READ its payload lands in local. Returns 0, 1 when the peer
 * refused the range, or a negative errno (-EPROTO: not the reply expected). */
/* Checks a reply header to request req_id (opcode; a READ's payload must be
 * len bytes): 0, 1 when the peer refused the range, -EPROTO otherwise. */
static int check_reply(const uint8_t *buf, int opcode, uint32_t req_id, uint64_t len)
{
    mc__te_hdr_t h;
    const char *why;
    if (mc__te_hdr_decode(buf, MC_TE_HDR_LEN, &h, &why) || h.opcode != (opcode | MC_TE_OP_REPLY) ||
        h.req_id != req_id)
        return -EPROTO;
    if (h.status != MC_TE_ST_OK) return 1;
    return opcode == MC_TE_OP_READ && h.length != len ? -EPROTO : 0;
}

static int read_reply(int fd, int opcode, uint32_t req_id, void *local, uint64_t len,
                      uint64_t deadline, int io, int *cur)
{
    uint8_t buf[MC_TE_HDR_LEN];
    int rc = mc__te_io_by(fd, buf, sizeof buf, 0, deadline, io, cur);
    if (rc == 0) rc = check_reply(buf, opcode, req_id, len);
    if (rc == 0 && opcode == MC_TE_OP_READ) rc = mc__te_io_by(fd, local, len, 0, deadline, io, cur);
    return rc;
}

/* Reads the replies of a pipeline of n pieces, scattered straight into place:
 * reply header i into hdrs[i] (the request headers are no longer needed), a
 * READ's payload into its piece, as many replies a recvmsg as have arrived.
 * Returns how many pieces, in order, came back whole and right; *rc is then 0,
 * 1 when reply `moved` refused its range, or a negative errno (-EPROTO: not
 * the reply expected). After a bad reply the bytes that followed it may have
 * landed in the buffers of the pieces not moved, which the caller runs again
 * or fails; the connection must then be closed. */
static size_t read_replies(int fd, int opcode, mc__te_piece_t *const *pcs, size_t n,
                           uint8_t (*hdrs)[MC_TE_HDR_LEN], struct iovec *iov, uint64_t deadline,
                           int io, int *cur, int *rc)
{
    int read = opcode == MC_TE_OP_READ;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        iov[k++] = (struct iovec){hdrs[i], MC_TE_HDR_LEN};
        if (read) iov[k++] = (struct iovec){pcs[i]->local, pcs[i]->len};
    }
    struct iovec *next = iov;
    uint64_t got = 0, off = 0; /* bytes received; where reply `moved` starts */
    size_t moved = 0;
    int checked = 0; /* whether the header of reply `moved` was checked */
    *rc = 0;
    while (moved < n) {
        ssize_t r = mc__te_iov_recv_some_by(fd, next, k, deadline, io, cur);
        if (r < 0) {
            *rc = (int)r;
            break;
        }
        got += (uint64_t)r;
        mc__te_iov_advance(&next, &k, (size_t)r);
        while (moved < n && got >= off + MC_TE_HDR_LEN) {
            uint64_t len = read ? pcs[moved]->len : 0;
            if (!checked) {
                if ((*rc = check_reply(hdrs[moved], opcode, (uint32_t)moved, len))) return moved;
                checked = 1;
            }
            if (got < off + MC_TE_HDR_LEN + len) break; /* its payload is still coming */
            off += MC_TE_HDR_LEN + len;
            moved++;
            checked = 0;
        }
    }
    return moved;
}

static int exchange(mc_te_t *te, int fd, int opcode, void *local, uint64_t remote, uint64_t len)
{
    int io = te->io_timeout_ms, cur = io;
    uint64_t deadline = mc__te_frame_deadline(te, mc_now_ms(), len);
    int rc = mc__te_send_frame_by(fd, (uint8_t)opcode, 0, 0, remote, len,
                                  opcode == MC_TE_OP_WRITE ? local : NULL, deadline, io, &cur);
    if (rc == 0) rc = read_reply(fd, opcode, 0, local, len, deadline, io, &cur);
    if (rc == 0 && cur != io) mc_sock_set_timeout(fd, io); /* back in the pool as it was */
    return rc;
}

static int tcp_xfer(mc_te_t *te, mc__te_peer_t *p, int opcode, void *local, uint64_t remote,
                    uint64_t len, int *timed_out)
{
    for (int attempt = 0;; attempt++) {
        int fd, reused;
        int rc = mc__te_conn_get(te, p, &fd, &reused);
        if (rc) {
            if (attempt == 0 && mc__te_peer_refresh(te, p) == 0) continue;
            return rc;
        }
        rc = exchange(te, fd, opcode, local, remote, len);
        if (rc == 0) {
            mc__te_conn_put(te, p, fd, 0);
            return 0;
        }
        if (rc == 1) { /* refused: a refused WRITE closes the connection server-side */
            mc__te_conn_put(te, p, fd, opcode == MC_TE_OP_WRITE);
            MC_LOGW(TAG, "segment '%s' refused %llu bytes at 0x%llx (not registered there)",
                    p->name, (unsigned long long)len, (unsigned long long)remote);
            return MC_TE_ERR_ADDRESS_NOT_REGISTERED;
        }
        mc__te_conn_put(te, p, fd, 1);
        if (rc == -ETIMEDOUT || rc == -ETIME) {
            if (rc == -ETIME)
                MC_LOGW(TAG, "segment '%s': %llu bytes not moved by their deadline", p->name,
                        (unsigned long long)len);
            else
                MC_LOGW(TAG, "segment '%s': no answer within %d ms", p->name, te->io_timeout_ms);
            *timed_out = 1;
            return MC_TE_ERR_SOCKET;
        }
        if (reused && attempt == 0) continue; /* a stale pooled connection: try a fresh one */
        MC_LOGW(TAG, "segment '%s': transfer failed: %s", p->name,
                rc == -EPROTO ? "protocol error" : strerror(-rc));
        return MC_TE_ERR_SOCKET;
    }
}

size_t mc__te_tcp_xfer_many(mc_te_t *te, mc__te_peer_t *p, int opcode, mc__te_piece_t *const *pcs,
                            size_t n, int *rest_rc, int *rest_timed_out)
{
    *rest_rc = 0;
    *rest_timed_out = 0;
    for (size_t i = 0; i < n; i++) /* the pipeline stops before a range the descriptor lacks */
        if (mc__te_peer_check_range(te, p, pcs[i]->remote, pcs[i]->len)) {
            n = i;
            break;
        }
    if (n < 2) return 0; /* one piece: the single path, with its retries */
    uint8_t(*hdrs)[MC_TE_HDR_LEN] = malloc(n * sizeof *hdrs);
    struct iovec *iov = malloc(2 * n * sizeof *iov);
    int fd = -1, reused = 0;
    if (!hdrs || !iov || mc__te_conn_get(te, p, &fd, &reused)) {
        free(hdrs);
        free(iov);
        return 0;
    }
    int write = opcode == MC_TE_OP_WRITE;
    uint64_t total = 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        mc__te_hdr_t h = {MC_TE_MAGIC,     MC_TE_VERSION, (uint8_t)opcode, 0, (uint32_t)i, 0,
                          pcs[i]->remote, pcs[i]->len};
        mc__te_hdr_encode(&h, hdrs[i]);
        iov[k++] = (struct iovec){hdrs[i], MC_TE_HDR_LEN};
        if (write) iov[k++] = (struct iovec){pcs[i]->local, pcs[i]->len};
        total += pcs[i]->len;
    }
    int io = te->io_timeout_ms, cur = io;
    uint64_t deadline = mc__te_frame_deadline(te, mc_now_ms(), total);
    int rc = mc__te_iov_send_by(fd, iov, k, deadline, io, &cur);
    size_t moved = rc == 0 ? read_replies(fd, opcode, pcs, n, hdrs, iov, deadline, io, &cur, &rc)
                           : 0;
    if (rc == 0 && cur != io) mc_sock_set_timeout(fd, io); /* back in the pool as it was */
    /* replies left unread (or a refused WRITE's payload): the connection goes */
    mc__te_conn_put(te, p, fd, moved != n);
    free(hdrs);
    free(iov);
    if (rc == -ETIMEDOUT || rc == -ETIME) { /* the peer is stuck: no piece tries again */
        MC_LOGW(TAG, "segment '%s': %s; %zu of %zu pipelined pieces not moved", p->name,
                rc == -ETIME ? "the pipeline's bytes not moved by their deadline"
                             : "no answer within the I/O timeout",
                n - moved, n);
        *rest_rc = MC_TE_ERR_SOCKET;
        *rest_timed_out = 1;
    } else if (rc && rc != 1 && !reused) {
        MC_LOGD(TAG, "segment '%s': pipeline of %zu pieces stopped after %zu: %s", p->name, n,
                moved, rc == -EPROTO ? "protocol error" : strerror(-rc));
    }
    return moved;
}

const mc__te_transport_t mc__te_tcp = {"tcp", tcp_xfer};
