/* te_wire.c: the transfer engine's frame header, the one binary format spoken
 * between engines (handshake and data alike). Layout in docs/protocol.md. */
#include <errno.h>

#include "base_codec.h"
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
