/* master_metrics.h: the master's own Prometheus text for /metrics (the RPC
 * server's per-method counters and latency histograms are appended by
 * mc_master_rpc_metrics through the admin server's hook). Names follow
 * Prometheus conventions (counters end in _total, no _count gauges); the
 * upstream names that its Grafana board and existing scripts read are
 * written as well (docs/master.md "Metrics"). Thread rule: any thread. */
#ifndef MC_MASTER_METRICS_H
#define MC_MASTER_METRICS_H
#include <stdint.h>
#include <stdio.h>

#include "master_service.h"

typedef struct {
    uint64_t start_unix_ms; /* wall clock at start */
    uint64_t start_mono_ms; /* monotonic clock at start */
    int leader;             /* 1 while this master serves (always without HA) */
} mc_master_metrics_info_t;

/* Writes every metric of the core, build info and uptime to f. */
void mc_master_metrics_write(FILE *f, mc_master_t *m, const mc_master_metrics_info_t *in);
#endif
