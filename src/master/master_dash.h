/* master_dash.h: the web dashboard of the admin port (src/master/dashboard/,
 * compiled into the binary by embed.cmake) and the JSON it polls,
 * /api/v1/status. Thread rule: any thread (reads the core and HA through
 * their thread-safe calls). */
#ifndef MC_MASTER_DASH_H
#define MC_MASTER_DASH_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "master_service.h"

typedef struct mc_master_ha mc_master_ha_t;

typedef struct {
    const char *path;  /* "/dashboard/app.js" */
    const char *ctype; /* Content-Type */
    const unsigned char *data;
    size_t len;
} mc_master_dash_asset_t;

/* Generated table, ended by an entry whose path is NULL. */
extern const mc_master_dash_asset_t mc_master_dash_assets[];

/* The asset at path, or NULL. */
const mc_master_dash_asset_t *mc_master_dash_asset(const char *path);

/* /api/v1/status: version, HA role and leader, uptime, totals, every segment
 * (usage, draining) and every client (heartbeat age). ha may be NULL (no
 * HA). Returns a new reference, NULL on out of memory. */
json_t *mc_master_dash_status(mc_master_t *m, mc_master_ha_t *ha, uint64_t start_unix_ms,
                              uint64_t start_mono_ms);
#endif
