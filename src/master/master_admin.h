/* master_admin.h: the master's admin/metrics HTTP server (libmicrohttpd), with
 * upstream's endpoints (spec §1.13):
 *
 *   GET  /metrics              Prometheus text (text/plain; version=0.0.4)
 *   GET  /metrics/summary      human-readable summary
 *   GET  /health               {"status":"ok","role":"master","service_ready":true}
 *   GET  /get_all_keys         keys, one a line
 *   GET  /get_all_segments     segment names, one a line
 *   GET  /query_key?key=K      200 {"success":true,"data":[...]} | 404 {"success":false,...}
 *   GET  /query_segment?segment=NAME   text usage of one segment
 *   GET  /get_segments_detail  JSON detail of every segment
 *   POST /api/v1/remove_all    {"removed_count":N}                      [admin key]
 *   GET  /                     dashboard (Accept: text/html), else the endpoint list
 *   GET  /api                  the endpoint list as JSON
 *   GET  /api/v1/status        role, leader, totals, segments, clients (JSON)
 *   POST /api/v1/drain_jobs?segment=NAME, GET /api/v1/drain_jobs[/query?job_id=N],
 *   POST /api/v1/drain_jobs/cancel?job_id=N   drain jobs (master_drain.h)  [admin key]
 *   GET  /dashboard/...        the dashboard's files (built into the binary)
 *
 * [admin key]: served only with the key (mc_master_admin_opts_t.api_key or
 * MC_ADMIN_API_KEY) in "Authorization: Bearer KEY" or "X-API-Key", and with
 * no key configured only when bound to a loopback address (else 403).
 *
 * Another path is 404, another method 405; each refused request is logged in
 * one line naming the peer. It reads the master only through master_service.h.
 * Thread rule: start and stop from one thread; requests are served on MHD's
 * threads (the core is thread-safe). */
#ifndef MC_MASTER_ADMIN_H
#define MC_MASTER_ADMIN_H
#include <stdint.h>
#include <stdio.h>

#include "master_service.h"

typedef struct mc_master_admin mc_master_admin_t;
typedef struct mc_master_ha mc_master_ha_t;

/* Appends more Prometheus text to /metrics (e.g. the RPC server's per-request
 * counters). Called on an MHD thread, possibly several at once. */
typedef void (*mc_master_admin_metrics_fn)(FILE *out, void *arg);

/* Serves m on host:port (host NULL or "" = all addresses, "::" for IPv6;
 * port 0 = any free port, read it with mc_master_admin_port). extra may be
 * NULL. m must outlive the server. Returns 0, a negative errno from bind or
 * listen, -ENOMEM, or -EIO when libmicrohttpd refuses to start. */
int mc_master_admin_start(mc_master_t *m, const char *host, uint16_t port,
                          mc_master_admin_metrics_fn extra, void *extra_arg,
                          mc_master_admin_t **out);

typedef struct {
    const char *host; /* NULL or "" = all addresses */
    uint16_t port;
    mc_master_admin_metrics_fn extra; /* may be NULL */
    void *extra_arg;
    const char *api_key; /* NULL or "": MC_ADMIN_API_KEY, else none */
} mc_master_admin_opts_t;
/* As mc_master_admin_start, with an admin key. */
int mc_master_admin_start_opts(mc_master_t *m, const mc_master_admin_opts_t *o,
                               mc_master_admin_t **out);
struct sockaddr;
/* 1 when sa is a loopback address (127.0.0.0/8, ::1, ::ffff:127.x). */
int mc_master_admin_sockaddr_is_loopback(const struct sockaddr *sa);
uint16_t mc_master_admin_port(const mc_master_admin_t *a);
/* Stops serving (joins MHD's threads) and frees a. NULL is a no-op. */
void mc_master_admin_stop(mc_master_admin_t *a);
/* With HA: /health, /role, /ha_status and /leader answer from ha, and every
 * other endpoint but /metrics answers 503 (-1011) while this master does not
 * serve. Call once, right after start; ha must outlive the server. */
void mc_master_admin_set_ha(mc_master_admin_t *a, mc_master_ha_t *ha);
#endif
