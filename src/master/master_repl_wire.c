/* master_repl_wire.c: the hello, the header and the frame reader of the HA
 * replication stream (master_repl_wire.h). Frames are the persistence
 * records, decoded by mc_prec_decode, which checks each frame's length
 * bound and checksum before its body. */
#include "master_repl_wire.h"

#include <string.h>
#include <xxhash.h>

#include "base_codec.h"

static const uint8_t hello_magic[8] = {'M', 'C', 'R', 'E', 'P', 'L', 'H', '2'};
static const uint8_t ack_magic[8] = {'M', 'C', 'R', 'E', 'P', 'L', 'A', '1'};
static const uint8_t hdr_magic[8] = {'M', 'C', 'R', 'E', 'P', 'L', 'S', '1'};

void mc_repl_hello_encode(uint8_t out[MC_REPL_HELLO_LEN], uint64_t view, uint64_t id)
{
    mc_wr_t w = mc_wr_init(out, MC_REPL_HELLO_LEN);
    mc_wr_bytes(&w, hello_magic, 8);
    mc_wr_u64(&w, view);
    mc_wr_u64(&w, id);
    mc_wr_u64(&w, XXH3_64bits(out, 24));
}

int mc_repl_hello_check(const uint8_t *buf, size_t len, uint64_t *view, uint64_t *id)
{
    if (len < MC_REPL_HELLO_LEN || memcmp(buf, hello_magic, 8) != 0) return -1;
    mc_rd_t r = mc_rd_init(buf + 8, 24);
    uint64_t v = mc_rd_u64(&r), i = mc_rd_u64(&r), sum = mc_rd_u64(&r);
    if (r.err || i == 0 || sum != XXH3_64bits(buf, 24)) return -1;
    *view = v;
    *id = i;
    return 0;
}

void mc_repl_ack_encode(uint8_t out[MC_REPL_ACK_LEN], uint64_t applied, uint64_t flags)
{
    mc_wr_t w = mc_wr_init(out, MC_REPL_ACK_LEN);
    mc_wr_bytes(&w, ack_magic, 8);
    mc_wr_u64(&w, applied);
    mc_wr_u64(&w, flags);
    mc_wr_u64(&w, XXH3_64bits(out, 24));
}

int mc_repl_ack_check(const uint8_t *buf, size_t len, uint64_t *applied, uint64_t *flags)
{
    if (len < MC_REPL_ACK_LEN || memcmp(buf, ack_magic, 8) != 0) return -1;
    mc_rd_t r = mc_rd_init(buf + 8, 24);
    uint64_t a = mc_rd_u64(&r), f = mc_rd_u64(&r), sum = mc_rd_u64(&r);
    if (r.err || sum != XXH3_64bits(buf, 24) || (f & ~(uint64_t)MC_REPL_ACK_SYNCED)) return -1;
    *applied = a;
    *flags = f;
    return 0;
}

void mc_repl_hdr_encode(uint8_t out[MC_REPL_HDR_LEN], uint64_t view, uint64_t version)
{
    mc_wr_t w = mc_wr_init(out, MC_REPL_HDR_LEN);
    mc_wr_bytes(&w, hdr_magic, 8);
    mc_wr_u64(&w, view);
    mc_wr_u64(&w, version);
    mc_wr_u64(&w, XXH3_64bits(out, 24));
}

static int hdr_check(const uint8_t *buf, uint64_t *view, uint64_t *version)
{
    if (memcmp(buf, hdr_magic, 8) != 0) return -1;
    mc_rd_t r = mc_rd_init(buf + 8, 24);
    uint64_t v = mc_rd_u64(&r), ver = mc_rd_u64(&r), sum = mc_rd_u64(&r);
    if (r.err || sum != XXH3_64bits(buf, 24)) return -1;
    *view = v;
    *version = ver;
    return 0;
}

int mc_repl_reader_feed(mc_repl_reader_t *rd, const uint8_t *buf, size_t len, size_t *used,
                        mc_prec_t *scratch, int (*on_rec)(const mc_prec_t *r, void *arg), void *arg,
                        const char **why)
{
    size_t off = 0;
    *used = 0;
    *why = "";
    if (!rd->have_hdr) {
        if (len < MC_REPL_HDR_LEN) return 0;
        if (hdr_check(buf, &rd->view, &rd->version)) {
            *why = "bad stream header";
            return -1;
        }
        rd->have_hdr = 1;
        off = MC_REPL_HDR_LEN;
    }
    while (off < len) {
        size_t n;
        int d = mc_prec_decode(buf + off, len - off, scratch, &n, why);
        if (d == MC_PREC_SHORT) break;
        if (d != MC_PREC_OK) {
            *used = off;
            return -1;
        }
        off += n;
        rd->records++;
        int rc = on_rec(scratch, arg);
        if (rc) {
            *used = off;
            return rc;
        }
    }
    *used = off;
    return 0;
}
