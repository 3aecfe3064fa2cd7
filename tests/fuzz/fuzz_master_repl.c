/* Fuzz target: the HA replication stream reader (master_repl_wire.c), which
 * parses what a leader (or anything that answers on its port) sends a
 * standby, and the leader's checks of a standby's hello and acks (the back
 * channel: every 32-byte window of the input is checked, and an accepted ack
 * must re-encode to the same bytes). The input is fed in
 * two chunks at a split taken from its first byte, as a socket would hand it
 * over; every record handed out must re-encode to a valid frame. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "master_repl_wire.h"

static int on_rec(const mc_prec_t *r, void *arg)
{
    static uint8_t out[MC_PREC_HDR + MC_PREC_MAX_BODY];
    (void)arg;
    if (r->type < MC_PREC_PUT || r->type > MC_PREC_PING) abort();
    if (mc_prec_encode(r, out, sizeof out) == 0) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static mc_prec_t rec;
    static uint8_t buf[1 << 16];
    uint64_t view, id, applied, flags;
    (void)mc_repl_hello_check(data, size, &view, &id);
    for (size_t off = 0; off + MC_REPL_ACK_LEN <= size; off += MC_REPL_ACK_LEN) {
        if (mc_repl_ack_check(data + off, size - off, &applied, &flags) == 0) {
            uint8_t again[MC_REPL_ACK_LEN];
            mc_repl_ack_encode(again, applied, flags);
            if (memcmp(again, data + off, MC_REPL_ACK_LEN) != 0) abort();
        }
    }
    if (size < 1 || size > sizeof buf) return 0;
    size_t split = size > 1 ? data[0] % size : 0;
    mc_repl_reader_t rd = {0};
    size_t have = 0, used = 0;
    const char *why;
    const uint8_t *in = data + 1;
    size_t inlen = size - 1;
    if (split > inlen) split = inlen;
    memcpy(buf, in, split);
    have = split;
    if (mc_repl_reader_feed(&rd, buf, have, &used, &rec, on_rec, NULL, &why) != 0) return 0;
    if (used > have) abort();
    memmove(buf, buf + used, have - used);
    have -= used;
    memcpy(buf + have, in + split, inlen - split);
    have += inlen - split;
    if (mc_repl_reader_feed(&rd, buf, have, &used, &rec, on_rec, NULL, &why) != 0) return 0;
    if (used > have) abort();
    return 0;
}
