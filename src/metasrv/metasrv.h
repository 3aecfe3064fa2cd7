/* metasrv.h: the HTTP metadata server core (libmicrohttpd), a library so that
 * both mooncake_http_metadata_server and mooncake_master can run it.
 * Protocol (upstream-compatible): GET/PUT/DELETE /metadata?key=K, GET /health.
 * Thread rule: start/stop from one thread; requests are served on MHD's threads. */
#ifndef MC_METASRV_H
#define MC_METASRV_H
#include <stdint.h>

typedef struct mc_metasrv mc_metasrv_t;

/* Starts serving on host:port (host NULL or "" = all addresses; port 0 = any free
 * port, read it back with mc_metasrv_port). Returns 0 or a negative errno. */
int mc_metasrv_start(const char *host, uint16_t port, mc_metasrv_t **out);
uint16_t mc_metasrv_port(const mc_metasrv_t *s);
/* Stops serving and frees everything. NULL is a no-op. */
void mc_metasrv_stop(mc_metasrv_t *s);
#endif
