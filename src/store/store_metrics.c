/* store_metrics.c: the store client's Prometheus text (store_metrics.h).
 * Names start with mooncake_client_ (counters end in _total, latencies are
 * histograms in seconds); each series carries the store's name as a label so
 * that several clients scraped into one Prometheus stay apart. */
#include "store_metrics.h"

#include <inttypes.h>

void mc__store_metrics_call(mc__store_metrics_t *mt, int op, uint64_t nkeys, uint64_t ok_keys,
                            uint64_t ok_bytes, uint64_t errors, uint64_t misses, uint64_t ns)
{
    const memory_order r = memory_order_relaxed;
    atomic_fetch_add_explicit(&mt->calls[op], 1, r);
    atomic_fetch_add_explicit(&mt->keys[op], nkeys, r);
    atomic_fetch_add_explicit(&mt->ok_keys[op], ok_keys, r);
    atomic_fetch_add_explicit(&mt->bytes[op], ok_bytes, r);
    if (errors) atomic_fetch_add_explicit(&mt->errors[op], errors, r);
    if (misses) atomic_fetch_add_explicit(&mt->get_misses, misses, r);
    mc_hist_observe(&mt->lat[op], ns);
}

static void sm_counter(FILE *f, const char *name, const char *help, const char *labels,
                       uint64_t put, uint64_t get, int by_op)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    if (by_op) {
        fprintf(f, "%s{%s,op=\"put\"} %" PRIu64 "\n", name, labels, put);
        fprintf(f, "%s{%s,op=\"get\"} %" PRIu64 "\n", name, labels, get);
    } else {
        fprintf(f, "%s{%s} %" PRIu64 "\n", name, labels, get);
    }
}

#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)

void mc__store_metrics_write(const mc__store_metrics_t *mt, const char *name, FILE *f)
{
    char labels[320];
    snprintf(labels, sizeof labels, "store=\"%s\"", name);
    const int P = MC__STORE_OP_PUT, G = MC__STORE_OP_GET;
    sm_counter(f, "mooncake_client_calls_total", "API calls (a batch counts once)", labels,
               LD(mt->calls[P]), LD(mt->calls[G]), 1);
    sm_counter(f, "mooncake_client_keys_total", "Keys asked for", labels, LD(mt->keys[P]),
               LD(mt->keys[G]), 1);
    sm_counter(f, "mooncake_client_keys_ok_total", "Keys that succeeded", labels,
               LD(mt->ok_keys[P]), LD(mt->ok_keys[G]), 1);
    sm_counter(f, "mooncake_client_bytes_total", "Object bytes of the keys that succeeded", labels,
               LD(mt->bytes[P]), LD(mt->bytes[G]), 1);
    sm_counter(f, "mooncake_client_errors_total",
               "Keys that failed (a get of a missing key is a miss, not an error)", labels,
               LD(mt->errors[P]), LD(mt->errors[G]), 1);
    sm_counter(f, "mooncake_client_get_misses_total", "Gets of a key not in the pool", labels, 0,
               LD(mt->get_misses), 0);
    sm_counter(f, "mooncake_client_local_hits_total",
               "Gets served from this client's own segment (no transfer)", labels, 0,
               LD(mt->local_hits), 0);
    sm_counter(f, "mooncake_client_lease_cache_hits_total",
               "Keys read with the replica of a read lease still running (no master round trip)",
               labels, 0, LD(mt->lease_hits), 0);
    sm_counter(f, "mooncake_client_transfer_bytes_total",
               "Bytes moved by the transfer engine to (put) or from (get) other segments", labels,
               LD(mt->te_bytes[P]), LD(mt->te_bytes[G]), 1);
    sm_counter(f, "mooncake_client_local_copy_bytes_total",
               "Bytes copied within this client's own segment", labels, LD(mt->local_bytes[P]),
               LD(mt->local_bytes[G]), 1);
    mc_hist_write_header(f, "mooncake_client_op_duration_seconds",
                         "Time of one put or get call, master round trips and transfers included");
    char l2[360];
    snprintf(l2, sizeof l2, "%s,op=\"put\"", labels);
    mc_hist_write(f, "mooncake_client_op_duration_seconds", l2, &mt->lat[P]);
    snprintf(l2, sizeof l2, "%s,op=\"get\"", labels);
    mc_hist_write(f, "mooncake_client_op_duration_seconds", l2, &mt->lat[G]);
}
