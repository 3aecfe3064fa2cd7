/* store_metrics.h: a store client's own metrics (puts and gets with their
 * bytes, latency, errors and misses, reads served from its own segment, bytes
 * moved by the transfer engine), written as Prometheus text on the client's
 * HTTP port (store_srv.h: mooncake_client --enable_http_server, or setup's
 * enable_client_http_server). Counters are relaxed atomics bumped once per
 * call (not per byte); histograms are base_hist.h's. Thread rule: any thread. */
#ifndef MC_STORE_METRICS_H
#define MC_STORE_METRICS_H
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "base_hist.h"

enum { MC__STORE_OP_PUT = 0, MC__STORE_OP_GET = 1, MC__STORE_NOPS = 2 };

typedef struct {
    _Atomic uint64_t calls[MC__STORE_NOPS]; /* API calls (a batch is one) */
    _Atomic uint64_t keys[MC__STORE_NOPS];  /* keys asked */
    _Atomic uint64_t ok_keys[MC__STORE_NOPS];
    _Atomic uint64_t bytes[MC__STORE_NOPS];       /* bytes of the keys that succeeded */
    _Atomic uint64_t errors[MC__STORE_NOPS];      /* keys that failed (a get miss excluded) */
    _Atomic uint64_t get_misses;                  /* gets of a key not in the pool */
    _Atomic uint64_t local_hits;                  /* gets served from our own segment */
    _Atomic uint64_t lease_hits; /* keys read with a cached leased replica (no master trip) */
    _Atomic uint64_t te_bytes[MC__STORE_NOPS];    /* sent/received through the TE (not local) */
    _Atomic uint64_t local_bytes[MC__STORE_NOPS]; /* copied within our own segment */
    mc_hist_t lat[MC__STORE_NOPS];                /* per call, master round trips included */
} mc__store_metrics_t;

/* Records one call of op over nkeys keys: ok_keys succeeded with ok_bytes,
 * errors failed, misses were not found (gets), ns its duration. */
void mc__store_metrics_call(mc__store_metrics_t *mt, int op, uint64_t nkeys, uint64_t ok_keys,
                            uint64_t ok_bytes, uint64_t errors, uint64_t misses, uint64_t ns);
/* Writes every metric as Prometheus text; name is the store's "host:port". */
void mc__store_metrics_write(const mc__store_metrics_t *mt, const char *name, FILE *f);
#endif
