/* store_bench_ssd.c: the SSD-tier cells of mooncake_store_bench
 * (`mooncake_store_bench --ssd DIR`): for object sizes 4 KiB .. 4 MiB, the
 * tier's write GB/s (batched appends through store_ssd_io.c, what an offload
 * does) and read GB/s (records read and checked, --ssd_qd readers at once,
 * what staging does), each next to fio on the same directory in the same run
 * as the limit: sequential O_DIRECT writes with the tier's write shape
 * (1 MiB pieces, 8 in flight, to a new fallocated file) in rounds
 * alternating with the tier's (ABBA), reads of the same block size at the
 * same queue depth (random for 4 KiB, sequential above), io_uring engine,
 * run before and after the tier's reads (the ratio is over their mean);
 * where a read spans more than the value (legacy records), also fio's
 * random read at that span. One JSON line per cell; ratios are payload GB/s
 * over fio's GB/s. MC_BENCH_SSD_SIZES picks sizes. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base_time.h"
#include "bench_util.h"
#include "store_ssd.h"

static double fio_gbps(const char *dir, const char *rw, uint64_t bs, int qd, uint64_t size)
{
    char cmd[2048];
    if (strcmp(rw, "write") == 0) { /* a new file each time, as the tier writes new buckets */
        snprintf(cmd, sizeof cmd, "%s/fio.lim", dir);
        unlink(cmd);
    }
    snprintf(cmd, sizeof cmd,
             "fio --name=lim --directory=%s --filename=fio.lim --rw=%s --bs=%" PRIu64
             " --iodepth=%d --direct=1 --ioengine=io_uring --size=%" PRIu64
             " --runtime=4 --time_based=%d --numjobs=1 --group_reporting --output-format=terse "
             "--terse-version=3 2>/dev/null",
             dir, rw, bs, qd, size, strcmp(rw, "write") != 0);
    FILE *p = popen(cmd, "r");
    if (!p) return 0;
    char line[8192];
    double kbs = 0;
    if (fgets(line, sizeof line, p)) {
        /* terse v3: field 7 read bandwidth KiB/s, field 48 write bandwidth KiB/s */
        char *save = NULL, *tok = strtok_r(line, ";", &save);
        for (int f = 1; tok; f++, tok = strtok_r(NULL, ";", &save)) {
            if (f == 7 && strncmp(rw, "write", 5) != 0) kbs = atof(tok);
            if (f == 48 && strncmp(rw, "write", 5) == 0) kbs = atof(tok);
        }
    }
    pclose(p);
    return kbs * 1024 / 1e9;
}

typedef struct {
    mc_ssd_disk_t *d;
    char **keys;
    size_t nkeys;
    uint64_t size, rec;
    uint64_t deadline_ns;
    uint64_t bytes, bad;
    mc_bench_hist_t h;
    unsigned seed;
} rd_t;

static void *reader(void *arg)
{
    rd_t *r = arg;
    uint8_t *buf = NULL;
    if (posix_memalign((void **)&buf, MC_SSD_ALIGN, r->rec)) return NULL;
    while (mc_now_ns() < r->deadline_ns) {
        size_t i = (size_t)rand_r(&r->seed) % r->nkeys;
        const uint8_t *data;
        uint64_t sz;
        uint64_t t0 = mc_now_ns();
        int rc = mc_ssd_disk_read(r->d, r->keys[i], buf, r->rec, &data, &sz);
        mc_bench_hist_add(&r->h, mc_now_ns() - t0);
        if (rc || sz != r->size)
            r->bad++;
        else
            r->bytes += sz;
    }
    free(buf);
    return NULL;
}

int mc_bench_ssd_main(const char *dir, int qd, double seconds)
{
    static const uint64_t sizes[] = {4096, 65536, 262144, 1 << 20, 4 << 20};
    mkdir(dir, 0755);
    uint64_t total = 1ull << 30; /* written per cell */
    int bad_run = 0;
    /* MC_BENCH_SSD_SIZES: a comma-separated subset of the sizes (bytes) */
    const char *only = getenv("MC_BENCH_SSD_SIZES");
    for (size_t c = 0; c < sizeof sizes / sizeof *sizes; c++) {
        uint64_t size = sizes[c];
        if (only && *only) {
            int hit = 0;
            for (const char *q = only; *q; q++) {
                char *e;
                unsigned long long v = strtoull(q, &e, 10);
                if (e != q && v == size) hit = 1;
                q = *e ? e : e - 1;
            }
            if (!hit) continue;
        }
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/tier-%" PRIu64, dir, size);
        char rm[4200];
        snprintf(rm, sizeof rm, "rm -rf '%s'", sub);
        if (system(rm) != 0) return 1;
        mc_ssd_disk_config_t cfg = {.path = sub,
                                    .quota = 4ull << 30,
                                    .bucket = 256ull << 20,
                                    .high = 0.99,
                                    .low = 0.98,
                                    .write_buf = 8ull << 20};
        mc_ssd_disk_t *d;
        if (mc_ssd_disk_open(&cfg, &d)) return 1;
        size_t n = (size_t)(total / size);
        char **keys = calloc(n, sizeof *keys);
        uint8_t *val = malloc(size);
        mc_bench_pattern(val, size);
        /* what the offload thread hands the disk per call: about 256 MiB of
         * objects, 16 to 4096 of them (store_ssd.c, TASKS_PER_POLL_*);
         * MC_BENCH_SSD_BATCH to try another */
        size_t batch = (size_t)((256ull << 20) / size);
        batch = batch < 16 ? 16 : batch > 4096 ? 4096 : batch;
        if (getenv("MC_BENCH_SSD_BATCH") && atoi(getenv("MC_BENCH_SSD_BATCH")) > 0)
            batch = (size_t)atoi(getenv("MC_BENCH_SSD_BATCH"));
        const void **srcs = calloc(batch, sizeof *srcs);
        uint64_t *szs = calloc(batch, sizeof *szs), *stamps = calloc(batch, sizeof *stamps);
        int *rcs = calloc(batch, sizeof *rcs);
        for (size_t i = 0; i < n; i++) {
            char k[64];
            snprintf(k, sizeof k, "bench-%" PRIu64 "-%zu", size, i);
            keys[i] = strdup(k);
        }
        for (size_t i = 0; i < batch; i++) {
            srcs[i] = val;
            szs[i] = size;
        }
        /* Writes in WROUNDS alternating rounds, a quarter of the objects
         * each, against fio writing as many bytes to a new file: fio first
         * in rounds 0 and 3, the tier first in 1 and 2 (ABBA: the disk's
         * drift, and what one side's writes leave the host to flush for the
         * other, weigh on both). Each side's figure is its bytes over its
         * time, all rounds together. */
        enum { WROUNDS = 4 };
        double fw_sec = 0, wsec = 0, fwr[WROUNDS] = {0}, twr[WROUNDS] = {0};
        uint64_t wbytes = 0, fw_bytes = 0, per = (n + WROUNDS - 1) / WROUNDS;
        for (int r = 0; r < WROUNDS; r++) {
            size_t from = (size_t)r * per, to = from + per < n ? from + per : n;
            uint64_t rb = (uint64_t)(to - from) * size, tb = 0;
            for (int side = 0; side < 2; side++) {
                int fio_now = (side == 0) == (r == 0 || r == 3);
                if (fio_now) {
                    fwr[r] = fio_gbps(dir, "write", 1 << 20, 8, rb);
                    if (fwr[r] > 0) {
                        fw_sec += (double)rb / (fwr[r] * 1e9);
                        fw_bytes += rb;
                    }
                    continue;
                }
                uint64_t t0 = mc_now_ns();
                for (size_t i = from; i < to; i += batch) {
                    size_t k = to - i < batch ? to - i : batch;
                    mc_ssd_disk_write(d, (const char *const *)keys + i, srcs, szs, stamps, k, rcs);
                    for (size_t j = 0; j < k; j++)
                        if (rcs[j] == 0) tb += size;
                }
                double sec = (double)(mc_now_ns() - t0) / 1e9;
                wsec += sec;
                wbytes += tb;
                twr[r] = (double)tb / sec / 1e9;
            }
        }
        double wg = (double)wbytes / wsec / 1e9;
        double fw = fw_sec > 0 ? (double)fw_bytes / fw_sec / 1e9 : 0;
        char lim[4200];
        snprintf(lim, sizeof lim, "%s/fio.lim", dir);
        unlink(lim); /* the read cells' fio file is laid out afresh (1 GiB) */
        /* what a read of one object takes: its value and the 4 KiB blocks
         * around it (4 KiB for a 4 KiB value since the format's version 3) */
        uint64_t span = mc_ssd_disk_rec_len(d, keys[0], NULL, NULL);
        uint64_t rec = span + MC_SSD_ALIGN;
        /* the read limit on both sides of the tier's reads (the disk is shared
         * and drifts): the ratio is over their mean */
        const char *frw = size == 4096 ? "randread" : "read";
        double fr0 = fio_gbps(dir, frw, size, qd, total);
        rd_t *rs = calloc((size_t)qd, sizeof *rs);
        pthread_t *th = calloc((size_t)qd, sizeof *th);
        uint64_t deadline = mc_now_ns() + (uint64_t)(seconds * 1e9);
        uint64_t t0 = mc_now_ns();
        for (int q = 0; q < qd; q++) {
            rs[q] =
                (rd_t){d, keys, n, size, rec, deadline, 0, 0, {{0}, 0}, (unsigned)q * 7919u + 1};
            pthread_create(&th[q], NULL, reader, &rs[q]);
        }
        uint64_t rbytes = 0, bad = 0;
        mc_bench_hist_t h = {{0}, 0};
        for (int q = 0; q < qd; q++) {
            pthread_join(th[q], NULL);
            rbytes += rs[q].bytes;
            bad += rs[q].bad;
            mc_bench_hist_merge(&h, &rs[q].h);
        }
        double rsec = (double)(mc_now_ns() - t0) / 1e9;
        double rg = (double)rbytes / rsec / 1e9;
        double fr1 = fio_gbps(dir, frw, size, qd, total), fr = (fr0 + fr1) / 2;
        /* what a read costs the disk when it spans more than the value
         * (version 2 records: 8 KiB for a 4 KiB value): fio's random read at
         * that span is then the format's limit (span_ratio: reads/s over
         * fio's reads/s) */
        double fs = size == 4096 && span != size ? fio_gbps(dir, "randread", span, qd, total) : 0;
        double span_ratio = fs > 0 ? (rg / (double)size) / (fs / (double)span) : 0;
        bad_run |= bad != 0;
        printf("{\"bench\":\"ssd\",\"size\":%" PRIu64 ",\"qd\":%d,\"direct\":%d,"
               "\"write_gbps\":%.3f,\"fio_seq_write_gbps\":%.3f,\"write_ratio\":%.2f,"
               "\"read_gbps\":%.3f,\"fio_%s_gbps\":%.3f,\"fio_before\":%.3f,\"fio_after\":%.3f,"
               "\"read_ratio\":%.2f,\"read_p50_us\":%.1f,\"read_p99_us\":%.1f,\"bad\":%" PRIu64
               ",\"write_rounds\":[%.3f,%.3f,%.3f,%.3f],\"fio_write_rounds\":[%.3f,%.3f,%.3f,%.3f]",
               size, qd, mc_ssd_disk_direct(d), wg, fw, fw > 0 ? wg / fw : 0, rg,
               size == 4096 ? "randread" : "seqread", fr, fr0, fr1, fr > 0 ? rg / fr : 0,
               mc_bench_hist_quantile_us(&h, 0.5), mc_bench_hist_quantile_us(&h, 0.99), bad, twr[0],
               twr[1], twr[2], twr[3], fwr[0], fwr[1], fwr[2], fwr[3]);
        printf(",\"span\":%" PRIu64, span);
        if (fs > 0)
            printf(",\"fio_randread_span_gbps\":%.3f,\"span_ratio\":%.2f", fs, span_ratio);
        printf("}\n");
        fflush(stdout);
        free(rs);
        free(th);
        mc_ssd_keys_free(keys, n);
        free(val);
        free(srcs);
        free(szs);
        free(stamps);
        free(rcs);
        mc_ssd_disk_close(d);
        if (system(rm) != 0) return 1;
    }
    char lim[4200];
    snprintf(lim, sizeof lim, "%s/fio.lim", dir);
    unlink(lim);
    return bad_run;
}
