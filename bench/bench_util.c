/* bench_util.c: the memcpy yardstick, latency histograms and value patterns
 * of the benchmark and demo programs (see bench_util.h). The histogram keeps
 * counts in buckets whose bounds grow by 1%, so any quantile is known within
 * 1% whatever the spread, and two histograms merge by adding counts — which is
 * how worker processes report to their coordinator. */
#include "bench_util.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base_time.h"

double mc_bench_memcpy_gbps(char *buf, uint64_t size, uint64_t block)
{
    uint64_t half = size / 2, moved = 0, t0 = mc_now_ns();
    if (block == 0 || block > half) return 0;
    while (moved < (1ull << 30))
        for (uint64_t off = 0; off + block <= half; off += block) {
            memcpy(buf + half + off, buf + off, block);
            moved += block;
        }
    return (double)moved / (double)(mc_now_ns() - t0);
}

static const double hist_base = 1.01;

void mc_bench_hist_add(mc_bench_hist_t *h, uint64_t ns)
{
    int i = ns <= 1 ? 0 : (int)(log((double)ns) / log(hist_base));
    if (i >= MC_BENCH_HIST_BUCKETS) i = MC_BENCH_HIST_BUCKETS - 1;
    h->n[i]++;
    h->count++;
}

void mc_bench_hist_merge(mc_bench_hist_t *into, const mc_bench_hist_t *from)
{
    for (int i = 0; i < MC_BENCH_HIST_BUCKETS; i++)
        into->n[i] += from->n[i];
    into->count += from->count;
}

double mc_bench_hist_quantile_us(const mc_bench_hist_t *h, double q)
{
    if (h->count == 0) return 0;
    uint64_t want = (uint64_t)ceil(q * (double)h->count), seen = 0;
    if (want == 0) want = 1;
    for (int i = 0; i < MC_BENCH_HIST_BUCKETS; i++) {
        seen += h->n[i];
        if (seen >= want) return pow(hist_base, i + 0.5) / 1000.0;
    }
    return pow(hist_base, MC_BENCH_HIST_BUCKETS) / 1000.0;
}

void mc_bench_hist_write(const mc_bench_hist_t *h, FILE *f)
{
    for (int i = 0; i < MC_BENCH_HIST_BUCKETS; i++)
        if (h->n[i]) fprintf(f, " %d:%llu", i, (unsigned long long)h->n[i]);
}

int mc_bench_hist_parse(mc_bench_hist_t *h, const char *text)
{
    const char *p = text;
    for (;;) {
        while (*p == ' ')
            p++;
        if (*p == '\0' || *p == '\n') return 0;
        char *end;
        long i = strtol(p, &end, 10);
        if (end == p || *end != ':' || i < 0 || i >= MC_BENCH_HIST_BUCKETS) return -EINVAL;
        p = end + 1;
        unsigned long long c = strtoull(p, &end, 10);
        if (end == p) return -EINVAL;
        p = end;
        h->n[i] += c;
        h->count += c;
    }
}

void mc_bench_pattern(void *buf, size_t len)
{
    unsigned char *b = buf;
    for (size_t i = 0; i < len; i++)
        b[i] = (unsigned char)((i * 2654435761u) >> 13);
}

void mc_bench_stamp(void *buf, size_t len, uint64_t tag)
{
    memcpy(buf, &tag, len < 8 ? len : 8);
    if (len >= 16) memcpy((char *)buf + len - 8, &tag, 8);
}

int mc_bench_check(const void *buf, size_t len, uint64_t tag, const void *ref)
{
    const char *b = buf;
    if (len < 16) return memcmp(b, &tag, len < 8 ? len : 8) == 0;
    return memcmp(b, &tag, 8) == 0 && memcmp(b + len - 8, &tag, 8) == 0 &&
           memcmp(b + 8, (const char *)ref + 8, len - 16) == 0;
}
