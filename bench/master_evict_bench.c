/* master_evict_bench.c: at what pool utilization does a large put first fail?
 *
 * Drives the master's core (master_service.h) in-process with a fake clock,
 * as the daemon would be driven by a mixed KV-cache workload: puts of sizes
 * drawn log-uniformly from 4 KiB to 8 MiB into a fixed set of segments, reads
 * of recent keys (each read grants a lease, so recently read objects cannot
 * be evicted), the tick every 10 ms of fake time, and every `--probe_every`
 * operations one 8 MiB put. For every 8 MiB put that fails, the utilization
 * (allocated / capacity) at that moment is recorded. The core never touches
 * the bytes, so the segments are address ranges only and the run is
 * deterministic for a seed.
 *
 * Output: one JSON line per cell (high watermark), with the number of probe
 * puts, how many failed, the lowest utilization at which one failed (null when
 * none did), the utilization seen by the probes (min, median), and the
 * evictions. The target: no 8 MiB put fails below 95 % use.
 *
 *   master_evict_bench [--ops N] [--segments N] [--segment_mib N] [--seed S]
 *                      [--probe_every N] [--read_ratio R] [--lease_ms N] */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "master_service.h"

#define MiB (1024ull * 1024ull)

static uint64_t rng_state;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static double rnd01(void)
{
    return (double)(rnd() >> 11) / (double)(1ull << 53);
}

/* 4 KiB .. 8 MiB, log-uniform. */
static uint64_t rnd_size(void)
{
    double lg = 12.0 + rnd01() * 11.0;
    uint64_t s = (uint64_t)(1ull << (int)lg);
    return s + (uint64_t)(rnd01() * (double)s);
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    uint64_t ops, segments, segment_mib, seed, probe_every, lease_ms;
    double read_ratio;
} opts_t;

static double utilization(mc_master_t *m)
{
    mc_master_stats_t st;
    mc_master_get_stats(m, &st);
    return st.capacity_bytes ? (double)st.allocated_bytes / (double)st.capacity_bytes : 0;
}

static int put(mc_master_t *m, mc_uuid_t c, const char *key, uint64_t size, uint64_t now)
{
    mc_replicate_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.replica_num = 1;
    mc_replica_t *r = NULL;
    size_t n = 0;
    int rc = mc_master_put_start(m, c, key, size, &cfg, now, &r, &n);
    free(r);
    if (rc) return rc;
    return mc_master_put_end(m, c, key, now);
}

static int run_cell(const opts_t *o, double hwm)
{
    mc_master_config_t cfg;
    mc_master_config_default(&cfg);
    cfg.eviction_high_watermark_ratio = hwm;
    cfg.default_kv_lease_ttl_ms = o->lease_ms;
    cfg.client_ttl_ms = UINT64_MAX / 4; /* liveness is not what is measured */
    mc_master_t *m;
    if (mc_master_new(&cfg, &m)) return -1;
    mc_uuid_t client = {7, 7};
    for (uint64_t i = 0; i < o->segments; i++) {
        mc_segment_t s;
        memset(&s, 0, sizeof s);
        s.id = (mc_uuid_t){100, i};
        snprintf(s.name, sizeof s.name, "seg%" PRIu64, i);
        snprintf(s.protocol, sizeof s.protocol, "tcp");
        s.base = (i + 1) << 40;
        s.size = o->segment_mib * MiB;
        if (mc_master_mount_segment(m, &s, client, 0)) return -1;
    }
    rng_state = o->seed * 0x9e3779b97f4a7c15ull | 1;
    uint64_t now = 1, next_key = 0, probes = 0, fails = 0, other_fails = 0;
    double min_fail = 2.0;
    size_t nutil = 0;
    double *util = malloc((o->ops / o->probe_every + 1) * sizeof *util);
    char key[64];
    for (uint64_t op = 0; op < o->ops; op++) {
        now += 1;
        if (now % 10 == 0) mc_master_tick(m, now);
        if (op % o->probe_every == o->probe_every - 1) {
            double u = utilization(m);
            snprintf(key, sizeof key, "probe%" PRIu64, op);
            probes++;
            if (util) util[nutil++] = u;
            if (put(m, client, key, 8 * MiB, now) != 0) {
                fails++;
                if (u < min_fail) min_fail = u;
            }
            continue;
        }
        if (next_key > 0 && rnd01() < o->read_ratio) { /* a recent key, skewed to the newest */
            uint64_t back =
                (uint64_t)(rnd01() * rnd01() * (double)(next_key < 2000 ? next_key : 2000));
            snprintf(key, sizeof key, "k%" PRIu64, next_key - 1 - back);
            mc_master_exist(m, key, now);
            continue;
        }
        snprintf(key, sizeof key, "k%" PRIu64, next_key++);
        if (put(m, client, key, rnd_size(), now) != 0) other_fails++;
    }
    qsort(util, nutil, sizeof *util, cmp_dbl);
    mc_master_stats_t st;
    mc_master_get_stats(m, &st);
    printf("{\"bench\":\"master_evict\",\"high_watermark\":%.2f,\"ops\":%" PRIu64
           ",\"segments\":%" PRIu64 ",\"segment_mib\":%" PRIu64 ",\"seed\":%" PRIu64
           ",\"lease_ms\":%" PRIu64 ",\"read_ratio\":%.2f,\"probe_puts_8mib\":%" PRIu64
           ",\"probe_failures\":%" PRIu64 ",\"min_util_at_failure\":",
           hwm, o->ops, o->segments, o->segment_mib, o->seed, o->lease_ms, o->read_ratio, probes,
           fails);
    if (fails)
        printf("%.4f", min_fail);
    else
        printf("null");
    printf(",\"probe_util_min\":%.4f,\"probe_util_median\":%.4f,\"other_put_failures\":%" PRIu64
           ",\"evicted_keys\":%" PRIu64 ",\"evicted_bytes\":%" PRIu64
           ",\"target_min_util\":0.95}\n",
           nutil ? util[0] : 0, nutil ? util[nutil / 2] : 0, other_fails, st.evicted_key_count,
           st.evicted_size_bytes);
    fflush(stdout);
    free(util);
    mc_master_free(m);
    return 0;
}

static uint64_t arg_u64(const char *v)
{
    return strtoull(v, NULL, 10);
}

int main(int argc, char **argv)
{
    opts_t o = {.ops = 200000,
                .segments = 2,
                .segment_mib = 128,
                .seed = 1,
                .probe_every = 50,
                .lease_ms = 2000,
                .read_ratio = 0.3};
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: %s [--ops N] [--segments N] [--segment_mib N] [--seed S] "
                   "[--probe_every N] [--read_ratio R] [--lease_ms N]\n"
                   "Runs the master's core on a mixed put/read workload with an 8 MiB put every "
                   "N ops, at high watermarks 0.90 and 1.00;\nprints one JSON line per cell "
                   "with the lowest utilization at which an 8 MiB put failed.\n",
                   argv[0]);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "%s: %s needs a value (see --help)\n", argv[0], a);
            return 2;
        }
        if (!strcmp(a, "--ops"))
            o.ops = arg_u64(v);
        else if (!strcmp(a, "--segments"))
            o.segments = arg_u64(v);
        else if (!strcmp(a, "--segment_mib"))
            o.segment_mib = arg_u64(v);
        else if (!strcmp(a, "--seed"))
            o.seed = arg_u64(v);
        else if (!strcmp(a, "--probe_every"))
            o.probe_every = arg_u64(v);
        else if (!strcmp(a, "--lease_ms"))
            o.lease_ms = arg_u64(v);
        else if (!strcmp(a, "--read_ratio"))
            o.read_ratio = strtod(v, NULL);
        else {
            fprintf(stderr, "%s: unknown option %s (see --help)\n", argv[0], a);
            return 2;
        }
    }
    if (!o.ops || !o.segments || !o.segment_mib || o.segment_mib < 16 || !o.probe_every) {
        fprintf(stderr, "%s: --ops, --segments, --probe_every must be > 0, --segment_mib >= 16\n",
                argv[0]);
        return 2;
    }
    if (run_cell(&o, 0.90) || run_cell(&o, 1.00)) return 1;
    return 0;
}
