/* master_rpc.h: the master's RPC server: a libuv loop that accepts clients,
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

/* Serves m on host:port (port 0: any; read it with mc_master_rpc_port). */
int mc_master_rpc_start(mc_master_t *m, const char *host, uint16_t port, mc_master_rpc_t **out);

/* Whether this master may serve now (HA: it leads and its lease is valid),
 * and the leader view it serves under. Called on the loop thread for every
 * request frame, so it must be cheap and never block. */
typedef int (*mc_master_rpc_gate_fn)(void *arg, uint64_t now_ms, uint64_t *view);
/* The same as mc_master_rpc_start, with every request first passed through
 * gate: while it says no, or when a request carries a view newer than the
 * gate's, the request is answered with UNAVAILABLE_IN_CURRENT_STATUS (-1010)
 * and the connection is closed once that answer is written. */
int mc_master_rpc_start_gated(mc_master_t *m, const char *host, uint16_t port,
                              mc_master_rpc_gate_fn gate, void *gate_arg, mc_master_rpc_t **out);
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
