/* master_rpc_int.h: what the master RPC's connection side (master_rpc.c) and
 * its dispatch (master_rpc_serve.c) share. Internal. */
#ifndef MC_MASTER_RPC_INT_H
#define MC_MASTER_RPC_INT_H
#include <stdatomic.h>
#include <stdint.h>

#include "base_hist.h"
#include "master_proto.h"
#include "master_service.h"

#define RPC_METHODS 64 /* method ids are below 0x40 (master_proto.h) */

/* Per method id: requests served, those answered with an error status, and
 * for batches the keys asked and the keys that failed. Written by the loop
 * threads and the thread pool, read by the admin server's threads. */
typedef struct {
    _Atomic uint64_t n_req[RPC_METHODS], n_fail[RPC_METHODS];
    _Atomic uint64_t n_items[RPC_METHODS], n_failed_items[RPC_METHODS];
    mc_hist_t lat[RPC_METHODS]; /* the time per request, decode to reply encoded */
} mc_rpc_stats_t;

/* Where a request is served: on a loop (a connection's arena and output) or
 * on the thread pool (a job's). bad_* say why a request did not decode. */
typedef struct {
    mc_master_t *m;
    mc_rpc_stats_t *st;
    mc_mp_arena_t *arena;
    mc_mp_buf_t *out;
    const char *peer;
    const char *bad_what, *bad_why;
} rpc_ctx_t;

/* Serves one request frame h/p/len, appending its reply to x->out. Runs on a
 * loop thread or on the thread pool (the core is thread-safe). Returns 0, or
 * -1 when the request is malformed (x->bad_* set; the caller closes). */
int mc__rpc_serve(rpc_ctx_t *x, const mc_mp_hdr_t *h, const uint8_t *p, size_t len);
#endif
