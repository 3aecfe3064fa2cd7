/* te_tcp.c: the initiator half of the tcp transport. A piece is one request on
 * a pooled persistent connection: header, then the payload for a WRITE; the
 * reply header, then the payload for a READ. Bytes go straight between the
 * socket and the caller's buffer. A connection that fails is closed; a piece
 * that failed on a reused (possibly stale) connection is retried once on a new
 * one, after re-reading the peer's descriptor. The server half is te_server.c. */
#include <errno.h>
#include <string.h>

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
static int exchange(mc_te_t *te, int fd, int opcode, void *local, uint64_t remote, uint64_t len)
{
    int io = te->io_timeout_ms, cur = io;
    uint64_t deadline = mc__te_frame_deadline(te, mc_now_ms(), len);
    int rc = mc__te_send_frame_by(fd, (uint8_t)opcode, 0, 0, remote, len,
                                  opcode == MC_TE_OP_WRITE ? local : NULL, deadline, io, &cur);
    uint8_t buf[MC_TE_HDR_LEN];
    mc__te_hdr_t h;
    const char *why;
    if (rc == 0) rc = mc__te_io_by(fd, buf, sizeof buf, 0, deadline, io, &cur);
    if (rc == 0 &&
        (mc__te_hdr_decode(buf, sizeof buf, &h, &why) || h.opcode != (opcode | MC_TE_OP_REPLY)))
        rc = -EPROTO;
    if (rc == 0 && h.status != MC_TE_ST_OK) rc = 1;
    if (rc == 0 && opcode == MC_TE_OP_READ)
        rc = h.length != len ? -EPROTO : mc__te_io_by(fd, local, len, 0, deadline, io, &cur);
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

const mc__te_transport_t mc__te_tcp = {"tcp", tcp_xfer};
