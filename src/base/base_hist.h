/* base_hist.h: latency histograms cheap enough for every request of a hot
 * loop, written as Prometheus text. Buckets are fixed and log-scale: bucket i
 * holds durations below 2^i microseconds (1 us, 2 us, 4 us ... 2^22 us =
 * 4.19 s), the last one everything longer (+Inf). An observation is one
 * count-leading-zeros and two relaxed atomic adds; no lock, no allocation.
 * Thread rule: mc_hist_observe from any number of threads at once; the
 * writers read with relaxed loads, so a scrape may see a bucket and the sum
 * of slightly different moments (Prometheus tolerates it). */
#ifndef MC_BASE_HIST_H
#define MC_BASE_HIST_H
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#define MC_HIST_BUCKETS 24 /* 23 finite upper bounds + Inf */

typedef struct {
    _Atomic uint64_t b[MC_HIST_BUCKETS]; /* per bucket (not cumulative) */
    _Atomic uint64_t sum_ns;
} mc_hist_t;

/* Records one duration of ns nanoseconds. */
static inline void mc_hist_observe(mc_hist_t *h, uint64_t ns)
{
    uint64_t us = ns / 1000;
    unsigned i = us ? 64u - (unsigned)__builtin_clzll(us) : 0u; /* us < 2^i */
    if (i > MC_HIST_BUCKETS - 1) i = MC_HIST_BUCKETS - 1;
    atomic_fetch_add_explicit(&h->b[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
}

/* Writes the "# HELP" and "# TYPE ... histogram" lines of metric name. */
void mc_hist_write_header(FILE *f, const char *name, const char *help);
/* Writes name_bucket{labels,le=...} (cumulative), name_sum (seconds) and
 * name_count for h. labels: "" or `method="put_start"` (no braces). */
void mc_hist_write(FILE *f, const char *name, const char *labels, const mc_hist_t *h);
/* The count and the sum (ns) of h; either out-param may be NULL. */
void mc_hist_totals(const mc_hist_t *h, uint64_t *count, uint64_t *sum_ns);
#endif
