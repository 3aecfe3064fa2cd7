/* base_hist.c: Prometheus text for base_hist.h's histograms. Upper bounds
 * are printed in seconds with %g (1e-06, 2e-06 ... 4.1943), the sum in
 * seconds with nanosecond precision. */
#include "base_hist.h"

#include <inttypes.h>

void mc_hist_write_header(FILE *f, const char *name, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
}

void mc_hist_totals(const mc_hist_t *h, uint64_t *count, uint64_t *sum_ns)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < MC_HIST_BUCKETS; i++)
        n += atomic_load_explicit(&h->b[i], memory_order_relaxed);
    if (count) *count = n;
    if (sum_ns) *sum_ns = atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
}

void mc_hist_write(FILE *f, const char *name, const char *labels, const mc_hist_t *h)
{
    const char *sep = labels && *labels ? "," : "";
    if (!labels) labels = "";
    uint64_t cum = 0;
    for (unsigned i = 0; i < MC_HIST_BUCKETS; i++) {
        cum += atomic_load_explicit(&h->b[i], memory_order_relaxed);
        if (i + 1 < MC_HIST_BUCKETS)
            fprintf(f, "%s_bucket{%s%sle=\"%g\"} %" PRIu64 "\n", name, labels, sep,
                    (double)(1ull << i) * 1e-6, cum);
        else
            fprintf(f, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, sep, cum);
    }
    uint64_t sum = atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
    const char *lb = *labels ? "{" : "", *rb = *labels ? "}" : "";
    fprintf(f, "%s_sum%s%s%s %" PRIu64 ".%09" PRIu64 "\n", name, lb, labels, rb, sum / 1000000000u,
            sum % 1000000000u);
    fprintf(f, "%s_count%s%s%s %" PRIu64 "\n", name, lb, labels, rb, cum);
}
