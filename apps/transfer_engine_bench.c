/* transfer_engine_bench: target and initiator of a transfer-engine throughput
 * test, with upstream's flags. The target registers a buffer and serves until
 * SIGINT/SIGTERM; the initiator drives READ or WRITE batches at it from
 * --threads threads for --duration seconds and prints GB/s, ops/s and batch
 * latency percentiles, next to single-thread memcpy GB/s measured on the same
 * buffers in the same run, and one TCP loopback stream's GB/s (the kernel's
 * limit for a single lane). --verify also checks data both ways byte for byte. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base_time.h"
#include "bench_util.h"
#include "mooncake/te.h"
#include "net_sock.h"
#include "base_version.h"

typedef struct {
    const char *mode, *metadata, *segment, *local_name, *protocol, *device, *operation;
    int threads, batch, duration, json, verify;
    uint64_t block, buffer;
} opts_t;

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: transfer_engine_bench --mode target|initiator [options]\n"
            "  --metadata_server S   http://host:port/metadata or P2PHANDSHAKE\n"
            "                        (default http://127.0.0.1:8080/metadata)\n"
            "  --local_server_name N this segment's name, host[:port] (default 127.0.0.1)\n"
            "  --segment_id N        initiator: the target's segment name\n"
            "  --protocol P          tcp (force tcp), shm, auto (shm for same-host peers;\n"
            "                        default) or rdma (libfabric; a peer that has it too is\n"
            "                        reached over rdma, also on this host; no device: tcp)\n"
            "  --device_name D       rdma: NICs (libfabric domains), comma-separated\n"
            "  --operation read|write  (default read)\n"
            "  --threads N           initiator threads (default 2)\n"
            "  --batch_size N        requests per batch (default 16)\n"
            "  --block_size BYTES    bytes per request (default 65536)\n"
            "  --buffer_size BYTES   registered buffer on each side (default 1 GiB)\n"
            "  --duration SECONDS    initiator run time (default 10)\n"
            "  --verify              initiator: write and read back a pattern, byte for byte\n"
            "  --json                print one JSON object with the results\n"
            "  --help                this text\n"
            "  --version             print the version and exit\n");
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') return -1;
    *out = v;
    return 0;
}

static int parse_opts(int argc, char **argv, opts_t *o)
{
    static const struct option longs[] = {
        {"mode", 1, 0, 'm'},         {"metadata_server", 1, 0, 'M'}, {"segment_id", 1, 0, 's'},
        {"local_server_name", 1, 0, 'l'}, {"protocol", 1, 0, 'p'},   {"device_name", 1, 0, 'D'},
        {"operation", 1, 0, 'o'},    {"threads", 1, 0, 't'},         {"batch_size", 1, 0, 'b'},
        {"block_size", 1, 0, 'B'},   {"buffer_size", 1, 0, 'S'},     {"duration", 1, 0, 'd'},
        {"json", 0, 0, 'j'},         {"verify", 0, 0, 'v'},          {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    *o = (opts_t){.mode = NULL, .metadata = "http://127.0.0.1:8080/metadata",
                  .local_name = "127.0.0.1", .protocol = "auto", .operation = "read",
                  .threads = 2, .batch = 16, .duration = 10, .block = 65536,
                  .buffer = 1ull << 30};
    int c, idx = 0;
    uint64_t v;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", longs, &idx)) != -1) {
        switch (c) {
        case 'm': o->mode = optarg; break;
        case 'M': o->metadata = optarg; break;
        case 's': o->segment = optarg; break;
        case 'l': o->local_name = optarg; break;
        case 'p': o->protocol = optarg; break;
        case 'D': o->device = optarg; break;
        case 'o': o->operation = optarg; break;
        case 'j': o->json = 1; break;
        case 'v': o->verify = 1; break;
        case 'h': usage(stdout); exit(0);
        case 't': case 'b': case 'd': case 'B': case 'S':
            if (parse_u64(optarg, &v) || v == 0 || (c != 'B' && c != 'S' && v > 1024)) {
                fprintf(stderr, "transfer_engine_bench: bad value '%s' for --%s\n", optarg,
                        longs[idx].name);
                return -1;
            }
            if (c == 't') o->threads = (int)v;
            if (c == 'b') o->batch = (int)v;
            if (c == 'd') o->duration = (int)v;
            if (c == 'B') o->block = v;
            if (c == 'S') o->buffer = v;
            break;
        default:
            fprintf(stderr, "transfer_engine_bench: unknown or incomplete option '%s'\n",
                    argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "transfer_engine_bench: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (!o->mode || (strcmp(o->mode, "target") && strcmp(o->mode, "initiator"))) {
        fprintf(stderr, "transfer_engine_bench: --mode must be target or initiator\n");
        return -1;
    }
    if (strcmp(o->operation, "read") && strcmp(o->operation, "write")) {
        fprintf(stderr, "transfer_engine_bench: --operation must be read or write\n");
        return -1;
    }
    if (!strcmp(o->mode, "initiator")) {
        if (!o->segment) {
            fprintf(stderr, "transfer_engine_bench: initiator needs --segment_id\n");
            return -1;
        }
        if ((uint64_t)o->threads * (uint64_t)o->batch * o->block > o->buffer) {
            fprintf(stderr, "transfer_engine_bench: threads x batch_size x block_size exceeds "
                            "--buffer_size\n");
            return -1;
        }
    }
    return 0;
}

static void *alloc_buffer(uint64_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    madvise(p, size, MADV_HUGEPAGE); /* as pool segments are: fewer page walks per copy */
    memset(p, 0x5a, size); /* fault the pages in before timing anything */
    return p;
}

/* The engine's protocol: "rdma" when asked for, else tcp (with shm for
 * same-host peers unless --protocol tcp set MC_FORCE_TCP). */
static const char *engine_protocol(const opts_t *o)
{
    return !strcasecmp(o->protocol, "rdma") ? "rdma" : NULL;
}

static int run_target(const opts_t *o)
{
    mc_te_t *te;
    if (mc_te_create(&te) || mc_te_init(te, o->local_name, o->metadata, engine_protocol(o), o->device)) {
        fprintf(stderr, "transfer_engine_bench: engine start failed\n");
        return 1;
    }
    void *buf = alloc_buffer(o->buffer);
    int rc = buf ? mc_te_register(te, buf, o->buffer, "cpu:0") : MC_TE_ERR_MEMORY;
    if (rc) {
        fprintf(stderr, "transfer_engine_bench: register failed: %s\n", mc_te_strerror(rc));
        mc_te_destroy(te);
        return 1;
    }
    printf("READY segment=%s addr=0x%" PRIxPTR " size=%" PRIu64 "\n", mc_te_segment_name(te),
           (uintptr_t)buf, o->buffer);
    fflush(stdout);
    while (!stop_flag) pause();
    mc_te_destroy(te);
    munmap(buf, o->buffer);
    return 0;
}

typedef struct {
    const opts_t *o;
    mc_te_t *te;
    int32_t seg;
    char *local;       /* this thread's region of the local buffer */
    uint64_t remote;   /* and of the target's buffer */
    uint64_t region;   /* bytes in each region, a multiple of batch x block */
    uint64_t deadline_ns;
    uint64_t ops, errors;
    double *lat_us;
    size_t nlat, caplat;
} worker_t;

static void *initiator_main(void *arg)
{
    worker_t *w = arg;
    const opts_t *o = w->o;
    mc_te_request_t *reqs = calloc((size_t)o->batch, sizeof *reqs);
    int op = !strcmp(o->operation, "write") ? MC_TE_WRITE : MC_TE_READ;
    uint64_t span = (uint64_t)o->batch * o->block, off = 0;
    uint64_t id;
    if (!reqs || mc_te_batch_alloc(w->te, (size_t)o->batch, &id)) {
        free(reqs);
        w->errors++;
        return NULL;
    }
    mc_te_batch_free(w->te, id);
    while (mc_now_ns() < w->deadline_ns && !stop_flag) {
        /* walk the whole region so that data comes from memory, not cache */
        for (int i = 0; i < o->batch; i++)
            reqs[i] = (mc_te_request_t){op, w->local + off + (uint64_t)i * o->block, w->seg,
                                        w->remote + off + (uint64_t)i * o->block, o->block};
        off = off + span >= w->region ? 0 : off + span;
        uint64_t t0 = mc_now_ns();
        mc_te_batch_alloc(w->te, (size_t)o->batch, &id);
        mc_te_status_t st = MC_TE_FAILED;
        if (mc_te_batch_submit(w->te, id, reqs, (size_t)o->batch) == 0)
            mc_te_batch_wait(w->te, id, -1, &st);
        mc_te_batch_free(w->te, id);
        if (st != MC_TE_COMPLETED) {
            w->errors++;
            break;
        }
        w->ops += (uint64_t)o->batch;
        if (w->nlat == w->caplat) {
            size_t cap = w->caplat ? w->caplat * 2 : 4096;
            double *n = realloc(w->lat_us, cap * sizeof *n);
            if (!n) break;
            w->lat_us = n;
            w->caplat = cap;
        }
        w->lat_us[w->nlat++] = (double)(mc_now_ns() - t0) / 1000.0;
    }
    free(reqs);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    int fd;
    char *buf;
    uint64_t size, total, block;
} sink_t;

static void *sink_main(void *arg)
{
    sink_t *k = arg;
    for (uint64_t got = 0, off = 0; got < k->total; got += k->block) {
        if (mc_sock_recv_all(k->fd, k->buf + off, k->block)) break;
        off = off + 2 * k->block > k->size ? 0 : off + k->block;
    }
    return NULL;
}

/* One TCP stream over loopback, block-sized sends from the first half of the
 * buffer into the second, 1 GiB in all: the kernel's limit for one lane. */
static double measure_loopback(char *buf, uint64_t size, uint64_t block)
{
    int lfd, cfd = -1, sfd = -1;
    uint16_t port;
    double gbps = 0;
    uint64_t half = size / 2, total = (1ull << 30) / block * block;
    if (block > half || mc_sock_listen("127.0.0.1", 0, 1, &lfd, &port)) return 0;
    if (mc_sock_connect("127.0.0.1", port, 1000, &cfd) == 0 &&
        (sfd = accept(lfd, NULL, NULL)) >= 0) {
        mc_sock_tune(cfd);
        mc_sock_tune(sfd);
        sink_t k = {sfd, buf + half, half, total, block};
        pthread_t t;
        uint64_t t0 = mc_now_ns(), off = 0;
        pthread_create(&t, NULL, sink_main, &k);
        for (uint64_t sent = 0; sent < total; sent += block) {
            if (mc_sock_send_all(cfd, buf + off, block)) break;
            off = off + 2 * block > half ? 0 : off + block;
        }
        pthread_join(t, NULL);
        gbps = (double)total / (double)(mc_now_ns() - t0);
    }
    if (cfd >= 0) close(cfd);
    if (sfd >= 0) close(sfd);
    close(lfd);
    return gbps;
}

static int verify(mc_te_t *te, int32_t seg, char *local, uint64_t remote, uint64_t span)
{
    char *back = local + span;
    for (uint64_t i = 0; i < span; i++) local[i] = (char)((i * 2654435761u) >> 13);
    memset(back, 0, span);
    mc_te_request_t w = {MC_TE_WRITE, local, seg, remote, span};
    mc_te_request_t r = {MC_TE_READ, back, seg, remote, span};
    int rc = mc_te_transfer_sync(te, &w, 1);
    if (rc == 0) rc = mc_te_transfer_sync(te, &r, 1);
    if (rc) {
        fprintf(stderr, "transfer_engine_bench: verify transfer failed: %s\n", mc_te_strerror(rc));
        return 1;
    }
    if (memcmp(local, back, span) != 0) {
        fprintf(stderr, "transfer_engine_bench: verify FAILED: data differs\n");
        return 1;
    }
    return 0;
}

static int run_initiator(const opts_t *o)
{
    if (!strcmp(o->protocol, "tcp")) setenv("MC_FORCE_TCP", "1", 1);
    mc_te_t *te;
    if (mc_te_create(&te) || mc_te_init(te, o->local_name, o->metadata, engine_protocol(o), o->device)) {
        fprintf(stderr, "transfer_engine_bench: engine start failed\n");
        return 1;
    }
    int rc = 1;
    uint64_t span = (uint64_t)o->batch * o->block;
    uint64_t region = o->buffer / (uint64_t)o->threads / span * span; /* >= span: checked */
    uint64_t need = region * (uint64_t)o->threads;
    char *local = alloc_buffer(o->buffer);
    int32_t seg;
    uint64_t raddr, rlen;
    worker_t *ws = calloc((size_t)o->threads, sizeof *ws);
    pthread_t *tids = calloc((size_t)o->threads, sizeof *tids);
    if (!local || !ws || !tids) goto out;
    if (mc_te_register(te, local, o->buffer, "cpu:0") || mc_te_open_segment(te, o->segment, &seg) ||
        mc_te_first_buffer(te, o->segment, &raddr, &rlen)) {
        fprintf(stderr, "transfer_engine_bench: cannot open segment '%s'\n", o->segment);
        goto out;
    }
    if (rlen < need) {
        fprintf(stderr, "transfer_engine_bench: target buffer (%" PRIu64 ") is smaller than %" PRIu64
                        "\n", rlen, need);
        goto out;
    }
    double memcpy_gbps = mc_bench_memcpy_gbps(local, o->buffer, o->block);
    double loopback_gbps = measure_loopback(local, o->buffer, o->block);
    if (o->verify && verify(te, seg, local, raddr, span < o->buffer / 2 ? span : o->buffer / 2))
        goto out;
    uint64_t t0 = mc_now_ns();
    for (int i = 0; i < o->threads; i++) {
        ws[i] = (worker_t){.o = o, .te = te, .seg = seg, .local = local + (uint64_t)i * region,
                           .remote = raddr + (uint64_t)i * region, .region = region,
                           .deadline_ns = t0 + (uint64_t)o->duration * 1000000000ull};
        pthread_create(&tids[i], NULL, initiator_main, &ws[i]);
    }
    uint64_t ops = 0, errors = 0;
    size_t nlat = 0;
    for (int i = 0; i < o->threads; i++) {
        pthread_join(tids[i], NULL);
        ops += ws[i].ops;
        errors += ws[i].errors;
        nlat += ws[i].nlat;
    }
    double secs = (double)(mc_now_ns() - t0) / 1e9;
    double *lat = malloc((nlat ? nlat : 1) * sizeof *lat);
    size_t k = 0;
    for (int i = 0; i < o->threads; i++)
        for (size_t j = 0; lat && j < ws[i].nlat; j++) lat[k++] = ws[i].lat_us[j];
    if (lat && k) qsort(lat, k, sizeof *lat, cmp_double);
    double p50 = k ? lat[k / 2] : 0, p99 = k ? lat[(k * 99) / 100 < k ? (k * 99) / 100 : k - 1] : 0;
    free(lat);
    double gbps = (double)(ops * o->block) / secs / 1e9;
    const char *transport = mc_te_segment_transport(te, seg);
    if (o->json) {
        printf("{\"mode\":\"initiator\",\"protocol\":\"%s\",\"operation\":\"%s\",\"threads\":%d,"
               "\"batch_size\":%d,\"block_size\":%" PRIu64 ",\"duration_s\":%.3f,\"ops\":%" PRIu64
               ",\"errors\":%" PRIu64 ",\"gbps\":%.3f,\"ops_per_s\":%.1f,\"p50_us\":%.1f,"
               "\"p99_us\":%.1f,\"memcpy_gbps\":%.3f,\"ratio_to_memcpy\":%.3f,"
               "\"tcp_loopback_gbps\":%.3f,\"ratio_to_loopback\":%.3f,\"verified\":%s}\n",
               transport, o->operation, o->threads, o->batch, o->block, secs, ops, errors, gbps,
               (double)ops / secs, p50, p99, memcpy_gbps, gbps / memcpy_gbps, loopback_gbps,
               loopback_gbps > 0 ? gbps / loopback_gbps : 0, o->verify ? "true" : "false");
    } else {
        printf("transport %s, %s, %d threads, batch %d x %" PRIu64 " B, %.1f s\n", transport,
               o->operation, o->threads, o->batch, o->block, secs);
        printf("  %.3f GB/s, %.0f ops/s, batch latency p50 %.1f us, p99 %.1f us\n", gbps,
               (double)ops / secs, p50, p99);
        printf("  single-thread memcpy %.3f GB/s: ratio %.2f; one tcp loopback stream %.3f GB/s: "
               "ratio %.2f%s\n", memcpy_gbps, gbps / memcpy_gbps, loopback_gbps,
               loopback_gbps > 0 ? gbps / loopback_gbps : 0,
               o->verify ? "; data verified both ways" : "");
    }
    rc = errors ? 1 : 0;
    if (errors) fprintf(stderr, "transfer_engine_bench: %" PRIu64 " batches failed\n", errors);
out:
    for (int i = 0; ws && i < o->threads; i++) free(ws[i].lat_us);
    free(ws);
    free(tids);
    mc_te_destroy(te);
    if (local) munmap(local, o->buffer);
    return rc;
}

int main(int argc, char **argv)
{
    if (mc_version_flag(argc, argv, "transfer_engine_bench")) return 0;
    opts_t o;
    if (parse_opts(argc, argv, &o) ||
        (strcmp(o.protocol, "tcp") && strcmp(o.protocol, "shm") && strcmp(o.protocol, "auto") &&
         strcasecmp(o.protocol, "rdma") &&
         (fprintf(stderr, "transfer_engine_bench: unknown --protocol '%s' (tcp, shm, auto, rdma)\n",
                  o.protocol),
          1))) {
        usage(stderr);
        return 2;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    return !strcmp(o.mode, "target") ? run_target(&o) : run_initiator(&o);
}
