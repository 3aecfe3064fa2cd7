/* master_repl_wire.h: the framing of the HA replication stream
 * (master_repl.c), from a standby to the leader and back, over one TCP
 * connection:
 *   standby -> leader: hello, 32 bytes: magic "MCREPLH2", u64 view (the
 *     leader view the standby read from etcd), u64 id (random per standby
 *     process, never 0: its name in the in-sync set), u64 XXH3-64 of the 24
 *     before. Then acks (the back channel), 32 bytes each: magic "MCREPLA1",
 *     u64 applied (tail records applied since the END of the base; 0 before),
 *     u64 flags (MC_REPL_ACK_SYNCED: the whole base was applied), u64 XXH3-64
 *     of the 24 before; after the records of each read are applied (at most
 *     one per MC_REPL_ACK_MS), and at least every PING interval.
 *   leader -> standby: header, 32 bytes: magic "MCREPLS1", u64 view, u64
 *     version (the leader's mutation counter when the standby subscribed),
 *     u64 XXH3-64 of the 24 before; then record frames (master_persist_rec.h):
 *     the base (PUT per object), one END with the base's count, then every
 *     record the leader logged after the subscription, in order, and a PING
 *     every 200 ms of silence.
 * Thread rule: pure functions of their arguments; any thread.
 * The reader and the ack check parse network bytes: bounds-checked, with a
 * fuzz target (fuzz_master_repl). */
#ifndef MC_MASTER_REPL_WIRE_H
#define MC_MASTER_REPL_WIRE_H
#include <stddef.h>
#include <stdint.h>

#include "master_persist_rec.h"

#define MC_REPL_HELLO_LEN 32
#define MC_REPL_HDR_LEN 32
#define MC_REPL_ACK_LEN 32
#define MC_REPL_ACK_SYNCED 1u
#define MC_REPL_ACK_MS 1

void mc_repl_hello_encode(uint8_t out[MC_REPL_HELLO_LEN], uint64_t view, uint64_t id);
/* 0 with *view and *id (nonzero), or -1 when it is not a hello. */
int mc_repl_hello_check(const uint8_t *buf, size_t len, uint64_t *view, uint64_t *id);
void mc_repl_ack_encode(uint8_t out[MC_REPL_ACK_LEN], uint64_t applied, uint64_t flags);
/* 0 with *applied and *flags (only known bits), or -1 when buf[0..len) does
 * not start with a valid ack (len < MC_REPL_ACK_LEN included). */
int mc_repl_ack_check(const uint8_t *buf, size_t len, uint64_t *applied, uint64_t *flags);
void mc_repl_hdr_encode(uint8_t out[MC_REPL_HDR_LEN], uint64_t view, uint64_t version);

/* The standby's side: bytes in, records out. */
typedef struct {
    int have_hdr;
    uint64_t view, version; /* from the header */
    uint64_t records;       /* frames decoded so far */
} mc_repl_reader_t;

/* Parses buf[0..len): the header (once), then every whole frame, calling
 * on_rec for each (a nonzero return stops with that value). *used gets the
 * bytes consumed (the rest is a frame cut short: read more and call again
 * with it at the front). Returns 0, the callback's value, or -1 with *why
 * (static text) for a bad header or frame. scratch holds one record. */
int mc_repl_reader_feed(mc_repl_reader_t *rd, const uint8_t *buf, size_t len, size_t *used,
                        mc_prec_t *scratch, int (*on_rec)(const mc_prec_t *r, void *arg), void *arg,
                        const char **why);
#endif
