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
uint16_t mc_master_rpc_port(const mc_master_rpc_t *r);
void mc_master_rpc_stop(mc_master_rpc_t *r);
/* Appends the per-method request counters as Prometheus text
 * (master_<method>_{requests,failures}_total; batches also _items_total and
 * _failed_items_total). rpc is the mc_master_rpc_t; safe from any thread
 * while the server runs. Fits mc_master_admin_metrics_fn. */
void mc_master_rpc_metrics(FILE *out, void *rpc);
#endif
