/* master_rpc.h: the master's RPC server: libuv loops that accept clients,
 * reads pipelined frames (docs/protocol.md, "Master RPC"), decodes them,
 * calls master_service.h and writes the replies. Bad frames close only their
 * connection, with a one-line log naming the peer and the reason.
 * Thread rule: start and stop from one thread; the server runs its own. */
#ifndef MC_MASTER_RPC_H
#define MC_MASTER_RPC_H
#include <stdint.h>
#include <stdio.h>

#include "master_service.h"

typedef struct mc_master_rpc mc_master_rpc_t;

/* Serves m on host:port (port 0: any; read it with mc_master_rpc_port), on
 * one event loop. */
int mc_master_rpc_start(mc_master_t *m, const char *host, uint16_t port, mc_master_rpc_t **out);

/* Whether this master may serve now (HA: it leads and its lease is valid),
 * and the leader view it serves under. Called on the loop threads for every
 * request frame, from several at once, so it must be cheap, thread-safe and
 * never block. */
typedef int (*mc_master_rpc_gate_fn)(void *arg, uint64_t now_ms, uint64_t *view);

typedef struct {
    /* NULL: always serve. Else every request first passes through gate: while
     * it says no, or when a request carries a view newer than the gate's, the
     * request is answered with UNAVAILABLE_IN_CURRENT_STATUS (-1010) and the
     * connection is closed once that answer is written. */
    mc_master_rpc_gate_fn gate;
    void *gate_arg;
    /* event loops, each on its own thread, sharing the listening socket; a
     * connection is served by the loop that accepted it (0: 1; at most 64) */
    unsigned loops;
} mc_master_rpc_opts_t;

/* mc_master_rpc_start with options (o may be NULL). */
int mc_master_rpc_start_opts(mc_master_t *m, const char *host, uint16_t port,
                             const mc_master_rpc_opts_t *o, mc_master_rpc_t **out);
/* The loop count for --rpc_thread_num 0: the CPUs online (at most 64). */
unsigned mc_master_rpc_default_loops(void);
unsigned mc_master_rpc_loops(const mc_master_rpc_t *r);
/* Closes every client connection (on the loop thread, soon): for a leader
 * that stepped down, so that its clients look for the new one at once. */
void mc_master_rpc_drop_clients(mc_master_rpc_t *r);
uint16_t mc_master_rpc_port(const mc_master_rpc_t *r);
void mc_master_rpc_stop(mc_master_rpc_t *r);
/* Appends the per-method request counters as Prometheus text
 * (master_<method>_{requests,failures}_total; batches also _items_total and
 * _failed_items_total). rpc is the mc_master_rpc_t; safe from any thread
 * while the server runs. Fits mc_master_admin_metrics_fn. */
void mc_master_rpc_metrics(FILE *out, void *rpc);
#endif
