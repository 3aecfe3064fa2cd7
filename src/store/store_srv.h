/* store_srv.h: the HTTP endpoint of a standalone mooncake_client that its
 * dummy clients (mc_store_setup_dummy) ask for the pool's configuration.
 * Routes (libmicrohttpd, JSON bodies by jansson; docs/store.md):
 *   GET /v1/client_config  the configuration a dummy sets itself up with
 *   GET /health            {"status": "ok" | "master_unreachable", ...}
 *   GET /metrics           the store's own metrics (store_metrics.h), Prometheus text
 * Unknown paths answer 404, other methods 405 (with Allow), request bodies
 * over 4 KiB 413, all with a JSON {"error": ...} body and one log line.
 * Thread rule: start/stop from one thread; the server answers from its own
 * threads and only reads the store through thread-safe calls. */
#ifndef MC_STORE_SRV_H
#define MC_STORE_SRV_H
#include <stdint.h>

#include "mooncake/store.h"

typedef struct mc_store_srv mc_store_srv_t;

/* What /v1/client_config reports besides the store's name; strings are copied. */
typedef struct {
    const char *master_server_address;
    const char *metadata_server;
    const char *protocol;
    const char *device_names;
    const char *tenant_id;
    uint64_t global_segment_size;
    uint64_t local_buffer_size;
} mc_store_srv_info_t;

/* Serves on host:port (host NULL/"" = all addresses; port 0 = a free port)
 * for the set-up store s, which must outlive the server. Returns 0, or a
 * negative errno (-EADDRINUSE, -ENOMEM, -EIO when MHD cannot start). */
int mc_store_srv_start(mc_store_t *s, const mc_store_srv_info_t *info, const char *host,
                       uint16_t port, mc_store_srv_t **out);
/* The port served on. */
uint16_t mc_store_srv_port(const mc_store_srv_t *srv);
/* Stops serving (waits for requests in progress) and frees. NULL is a no-op. */
void mc_store_srv_stop(mc_store_srv_t *srv);
#endif
