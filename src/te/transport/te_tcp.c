/* te_tcp.c: the initiator half of the tcp transport. A piece is one request on
 * a pooled persistent connection: header, then the payload for a WRITE; the
 * reply header, then the payload for a READ. Bytes go straight between the
 * socket and the caller's buffer. A connection that fails is closed; a piece
 * that failed on a reused (possibly stale) connection is retried once on a new
 * one, after re-reading the peer's descriptor. The server half is te_server.c. */
#include <errno.h>
#include <string.h>

#include "base_log.h"
#include "net_sock.h"
#include "te_int.h"

#define TAG "te-tcp"

/* One exchange on fd. Returns 0, a negative errno for connection-level
 * failures, or 1 when the peer refused the range. */
static int exchange(int fd, int opcode, void *local, uint64_t remote, uint64_t len)
{
    int rc = mc__te_send_frame(fd, (uint8_t)opcode, 0, 0, remote, len,
                               opcode == MC_TE_OP_WRITE ? local : NULL);
    if (rc) return rc;
    uint8_t buf[MC_TE_HDR_LEN];
    if ((rc = mc_sock_recv_all(fd, buf, sizeof buf))) return rc;
    mc__te_hdr_t h;
    const char *why;
    if (mc__te_hdr_decode(buf, sizeof buf, &h, &why) || h.opcode != (opcode | MC_TE_OP_REPLY))
        return -EPROTO;
    if (h.status != MC_TE_ST_OK) return 1;
    if (opcode == MC_TE_OP_READ) {
        if (h.length != len) return -EPROTO;
        return mc_sock_recv_all(fd, local, len);
    }
    return 0;
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
        rc = exchange(fd, opcode, local, remote, len);
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
        if (rc == -ETIMEDOUT) {
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
