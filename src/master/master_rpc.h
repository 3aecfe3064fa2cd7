/* master_rpc.h: the master's RPC server: a libuv loop that accepts clients,
 * reads pipelined frames (docs/protocol.md, "Master RPC"), decodes them,
 * calls master_service.h and writes the replies. Bad frames close only their
 * connection, with a one-line log naming the peer and the reason.
 * Thread rule: start and stop from one thread; the server runs its own. */
#ifndef MC_MASTER_RPC_H
#define MC_MASTER_RPC_H
#include <stdint.h>

#include "master_service.h"

typedef struct mc_master_rpc mc_master_rpc_t;

/* Serves m on host:port (port 0: any; read it with mc_master_rpc_port). */
int mc_master_rpc_start(mc_master_t *m, const char *host, uint16_t port, mc_master_rpc_t **out);
uint16_t mc_master_rpc_port(const mc_master_rpc_t *r);
void mc_master_rpc_stop(mc_master_rpc_t *r);
#endif
