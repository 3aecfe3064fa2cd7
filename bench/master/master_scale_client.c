/* master_scale_client: the load side of bench/master/scale_bench.py. N
 * connections to a mooncake_master (one thread and one mc_master_client
 * each) issue metadata requests for a fixed time, and one JSON line says how
 * many keys per second the master served:
 *   get: batch_get_replicas of keys put beforehand (B keys per request; B = 1
 *        uses get_replicas), the lookup a KV-cache hit starts with;
 *   put: batch_put_start then batch_put_end of fresh keys (two requests per
 *        batch, counted once per key).
 * Every reply is checked (status, replica count, size); a wrong one counts
 * as an error and the run exits non-zero.
 *
 *   master_scale_client --master HOST:PORT --conns N --batch B --op get|put
 *       [--seconds S] [--keys K (get: keys put first, default 4096)] */
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base_time.h"
#include "master_client.h"

#define MAX_BATCH 1024
#define VALUE 4096

typedef struct {
    const char *addr;
    int conns, batch, seconds, keys, put;
} opts_t;

typedef struct {
    const opts_t *o;
    int id;
    mc_master_client_t *c;
    uint64_t done, errors;
} worker_t;

static _Atomic int stop;
static pthread_barrier_t start_line; /* the workers and main: the interval starts at once */
static const mc_uuid_t CLIENT = {0x5ca1e, 1};

static mc_replicate_config_t one_replica(void)
{
    mc_replicate_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.replica_num = 1;
    return cfg;
}

/* batch_put_start + batch_put_end of keys[0..n); returns how many failed. */
static uint64_t put_keys(mc_master_client_t *c, char **keys, size_t n)
{
    mc_replicate_config_t cfg = one_replica();
    uint64_t sizes[MAX_BATCH] = {0};
    int rcs[MAX_BATCH];
    mc_replica_t *reps[MAX_BATCH] = {0};
    size_t nreps[MAX_BATCH];
    for (size_t i = 0; i < n; i++)
        sizes[i] = VALUE;
    uint64_t bad = 0;
    if (mc_master_client_batch_put_start(c, CLIENT, (const char *const *)keys, sizes, n, &cfg, rcs,
                                         reps, nreps))
        return n;
    for (size_t i = 0; i < n; i++) {
        bad += rcs[i] != 0 || nreps[i] != 1;
        free(reps[i]);
    }
    if (mc_master_client_batch_put_end(c, CLIENT, (const char *const *)keys, n, rcs)) return n;
    for (size_t i = 0; i < n; i++)
        bad += rcs[i] != 0;
    return bad;
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    const opts_t *o = w->o;
    size_t b = (size_t)o->batch;
    char *keys[MAX_BATCH];
    for (size_t i = 0; i < b; i++)
        keys[i] = malloc(64);
    uint64_t seq = 0;
    pthread_barrier_wait(&start_line);
    while (!atomic_load(&stop)) {
        if (o->put) {
            for (size_t i = 0; i < b; i++)
                snprintf(keys[i], 64, "scale/%d/%" PRIu64, w->id, seq++);
            w->errors += put_keys(w->c, keys, b);
        } else {
            for (size_t i = 0; i < b; i++)
                snprintf(keys[i], 64, "base/%" PRIu64, (seq++ * 7919 + (uint64_t)w->id) %
                                                           (uint64_t)o->keys);
            uint64_t ttl = 0;
            if (b == 1) {
                mc_replica_t *r = NULL;
                size_t n = 0;
                int rc = mc_master_client_get_replicas(w->c, keys[0], &r, &n, &ttl);
                w->errors += rc != 0 || n != 1 || r[0].size != VALUE;
                free(r);
            } else {
                int rcs[MAX_BATCH];
                mc_replica_t *reps[MAX_BATCH] = {0};
                size_t nreps[MAX_BATCH];
                if (mc_master_client_batch_get_replicas(w->c, (const char *const *)keys, b, rcs,
                                                        reps, nreps, &ttl)) {
                    w->errors += b;
                } else {
                    for (size_t i = 0; i < b; i++) {
                        w->errors += rcs[i] != 0 || nreps[i] != 1 || reps[i][0].size != VALUE;
                        free(reps[i]);
                    }
                }
            }
        }
        w->done += b;
    }
    for (size_t i = 0; i < b; i++)
        free(keys[i]);
    return NULL;
}

static int usage(void)
{
    fprintf(stderr, "usage: master_scale_client --master HOST:PORT --conns N --batch B --op "
                    "get|put [--seconds S] [--keys K]\n");
    return 2;
}

int main(int argc, char **argv)
{
    opts_t o = {NULL, 1, 1, 2, 4096, 0};
    static const struct option lo[] = {{"master", required_argument, 0, 'm'},
                                       {"conns", required_argument, 0, 'c'},
                                       {"batch", required_argument, 0, 'b'},
                                       {"op", required_argument, 0, 'o'},
                                       {"seconds", required_argument, 0, 's'},
                                       {"keys", required_argument, 0, 'k'},
                                       {0, 0, 0, 0}};
    const char *op = "get";
    for (int ch; (ch = getopt_long(argc, argv, "", lo, NULL)) != -1;) {
        switch (ch) {
        case 'm': o.addr = optarg; break;
        case 'c': o.conns = atoi(optarg); break;
        case 'b': o.batch = atoi(optarg); break;
        case 'o': op = optarg; break;
        case 's': o.seconds = atoi(optarg); break;
        case 'k': o.keys = atoi(optarg); break;
        default: return usage();
        }
    }
    o.put = strcmp(op, "put") == 0;
    if (!o.addr || o.conns < 1 || o.conns > 1024 || o.batch < 1 || o.batch > MAX_BATCH ||
        o.seconds < 1 || o.keys < 1 || (!o.put && strcmp(op, "get") != 0))
        return usage();
    worker_t *w = calloc((size_t)o.conns, sizeof *w);
    pthread_t *th = calloc((size_t)o.conns, sizeof *th);
    if (!w || !th) return 1;
    for (int i = 0; i < o.conns; i++) {
        w[i] = (worker_t){&o, i, NULL, 0, 0};
        int rc = mc_master_client_connect(o.addr, &w[i].c);
        if (rc) {
            fprintf(stderr, "master_scale_client: cannot connect to %s: error %d\n", o.addr, rc);
            return 1;
        }
    }
    mc_segment_t seg;
    memset(&seg, 0, sizeof seg);
    seg.id = (mc_uuid_t){0x5ca1e, 2};
    snprintf(seg.name, sizeof seg.name, "scale-bench");
    snprintf(seg.te_endpoint, sizeof seg.te_endpoint, "127.0.0.1:1");
    snprintf(seg.protocol, sizeof seg.protocol, "tcp");
    seg.base = 1ull << 40;
    seg.size = 64ull << 30; /* address space only: no bytes move */
    int rc = mc_master_client_mount_segment(w[0].c, &seg, CLIENT);
    if (rc) {
        fprintf(stderr, "master_scale_client: mount failed: error %d\n", rc);
        return 1;
    }
    if (!o.put) { /* the keys gets look up */
        char *keys[MAX_BATCH];
        for (int i = 0; i < 256; i++)
            keys[i] = malloc(64);
        for (int k = 0; k < o.keys; k += 256) {
            size_t n = (size_t)(o.keys - k < 256 ? o.keys - k : 256);
            for (size_t i = 0; i < n; i++)
                snprintf(keys[i], 64, "base/%zu", (size_t)k + i);
            if (put_keys(w[0].c, keys, n)) {
                fprintf(stderr, "master_scale_client: the keys to look up could not be put\n");
                return 1;
            }
        }
        for (int i = 0; i < 256; i++)
            free(keys[i]);
    }
    pthread_barrier_init(&start_line, NULL, (unsigned)o.conns + 1);
    for (int i = 0; i < o.conns; i++)
        pthread_create(&th[i], NULL, worker_main, &w[i]);
    pthread_barrier_wait(&start_line);
    uint64_t t0 = mc_now_ns();
    struct timespec ts = {o.seconds, 0};
    nanosleep(&ts, NULL); /* the measured interval */
    atomic_store(&stop, 1);
    uint64_t done = 0, errors = 0;
    for (int i = 0; i < o.conns; i++) {
        pthread_join(th[i], NULL);
        done += w[i].done;
        errors += w[i].errors;
    }
    double secs = (double)(mc_now_ns() - t0) / 1e9;
    mc_master_client_unmount_segment(w[0].c, seg.id, CLIENT);
    for (int i = 0; i < o.conns; i++)
        mc_master_client_close(w[i].c);
    printf("{\"op\":\"%s\",\"conns\":%d,\"batch\":%d,\"seconds\":%.3f,\"keys\":%" PRIu64
           ",\"keys_per_s\":%.0f,\"requests_per_s\":%.0f,\"errors\":%" PRIu64 "}\n",
           op, o.conns, o.batch, secs, done, (double)done / secs,
           (double)done / (double)o.batch * (o.put ? 2 : 1) / secs, errors);
    free(w);
    free(th);
    return errors ? 1 : 0;
}
