/* mooncake_store_bench: throughput and latency of the store client across
 * processes. The coordinator (this program without --worker) optionally
 * spawns its own mooncake_master (--spawn: embedded metadata server, ports
 * 0, addresses read from its printed lines), then starts --clients worker
 * processes (itself, exec'd with --worker), each a store contributing its own
 * segment, and drives them cell by cell over their stdin/stdout:
 *
 *   PEERS n0 n1 ...          names of every worker's segment
 *   LOAD op size batch thr   prepare a cell (readers' data is preloaded)  -> LOADED
 *   MEMCPY size              single-thread memcpy on its own buffers      -> MEMCPY gbps
 *   GO secs                  run the cell                                 -> DONE ... HIST ...
 *   CLEAN                    remove the cell's keys                       -> CLEANED
 *   FILL first count         put count 16-byte objects (master memory)    -> FILLED errors
 *   QUIT                     close the store and exit
 *
 * Placement keeps every timed transfer across a process boundary: worker i
 * puts into the segment of worker i+1, and reads (get, exist) the objects that
 * worker i+1 wrote into its own segment, so writer and reader are different
 * processes. Only the first --active workers issue operations (default all).
 * Reads verify a sample of values byte for byte (--verify_every); one bad
 * value fails the run. Figures: keys/s, GB/s (1e9 B/s), p50/p99 latency per
 * call (one batch), next to single-thread memcpy GB/s of the same buffers in
 * the same run. Usage: --help. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include "base_time.h"
#include "bench_util.h"
#include "mooncake/store.h"
#include "net_tls.h"

#define MAX_CLIENTS 16
#define MAX_THREADS 64
#define LINE_MAX_LEN (64 * 1024)
#define MEM_KEY_LEN 40 /* strlen of the master_mem keys */

typedef struct {
    const char *master, *metadata, *master_bin, *ops, *sizes;
    const char *persist_dir; /* --spawn: the master's --persist_dir (NULL: persistence off) */
    int spawn, clients, active, threads, batch, json, force_tcp, verify_every;
    double duration;
    uint64_t segment, local_buffer, objects;
    int worker; /* -1 in the coordinator */
} opts_t;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mooncake_store_bench (--spawn | --master HOST:PORT --metadata STR) [options]\n"
            "       mooncake_store_bench --ssd DIR [QD [SECONDS]]   SSD tier cells next to fio\n"
            "  --spawn               start a mooncake_master (embedded metadata server, ports 0)\n"
            "  --master_bin PATH     its binary (default: next to this program)\n"
            "  --persist_dir DIR     the spawned master persists its index in DIR (default off)\n"
            "  --master HOST:PORT    an existing master; --metadata its TE metadata string\n"
            "  --clients N           worker processes, each a store with a segment (2)\n"
            "  --active N            workers issuing operations; the others only hold data (all)\n"
            "  --threads N           threads per active worker (1)\n"
            "  --batch N             keys per call; > 1 uses the batch API (1)\n"
            "  --value_size LIST     comma-separated sizes, K/M suffixes (4K,1M)\n"
            "  --ops LIST            put,put_plain,get,get_plain,exist,master_mem (put,get,exist)\n"
            "  --duration SECS       per cell (3)\n"
            "  --segment_size SIZE   per worker (1G); --local_buffer SIZE (64M or 2x value)\n"
            "  --objects N           objects for master_mem (1000000; needs --spawn)\n"
            "  --force_tcp           MC_FORCE_TCP=1 for the workers (default: shm same host)\n"
            "  --verify_every N      byte-compare one read call in N (8; 1 = all)\n"
            "  --json                one JSON object per cell on stdout\n");
}

static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0) return -EINVAL;
    uint64_t m = 1;
    if (*end == 'K' || *end == 'k')
        m = 1024, end++;
    else if (*end == 'M' || *end == 'm')
        m = 1024 * 1024, end++;
    else if (*end == 'G' || *end == 'g')
        m = 1024ull * 1024 * 1024, end++;
    if (*end == 'i' || *end == 'B') end++;
    if (*end == 'B') end++;
    if (*end) return -EINVAL;
    *out = (uint64_t)(v * (double)m);
    return 0;
}

static int parse_opts(int argc, char **argv, opts_t *o)
{
    static const struct option lo[] = {{"spawn", no_argument, 0, 'S'},
                                       {"persist_dir", required_argument, 0, 'P'},
                                       {"master_bin", required_argument, 0, 'B'},
                                       {"master", required_argument, 0, 'm'},
                                       {"metadata", required_argument, 0, 'M'},
                                       {"clients", required_argument, 0, 'c'},
                                       {"active", required_argument, 0, 'a'},
                                       {"threads", required_argument, 0, 't'},
                                       {"batch", required_argument, 0, 'b'},
                                       {"value_size", required_argument, 0, 'v'},
                                       {"ops", required_argument, 0, 'o'},
                                       {"duration", required_argument, 0, 'd'},
                                       {"segment_size", required_argument, 0, 's'},
                                       {"local_buffer", required_argument, 0, 'l'},
                                       {"objects", required_argument, 0, 'n'},
                                       {"force_tcp", no_argument, 0, 'T'},
                                       {"verify_every", required_argument, 0, 'V'},
                                       {"json", no_argument, 0, 'j'},
                                       {"worker", required_argument, 0, 'W'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    *o = (opts_t){.ops = "put,get,exist",
                  .sizes = "4K,1M",
                  .clients = 2,
                  .threads = 1,
                  .batch = 1,
                  .verify_every = 8,
                  .duration = 3,
                  .segment = 1ull << 30,
                  .objects = 1000000,
                  .worker = -1};
    int c;
    uint64_t v;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'S':
            o->spawn = 1;
            break;
        case 'P':
            o->persist_dir = optarg;
            break;
        case 'B':
            o->master_bin = optarg;
            break;
        case 'm':
            o->master = optarg;
            break;
        case 'M':
            o->metadata = optarg;
            break;
        case 'c':
            o->clients = atoi(optarg);
            break;
        case 'a':
            o->active = atoi(optarg);
            break;
        case 't':
            o->threads = atoi(optarg);
            break;
        case 'b':
            o->batch = atoi(optarg);
            break;
        case 'v':
            o->sizes = optarg;
            break;
        case 'o':
            o->ops = optarg;
            break;
        case 'd':
            o->duration = atof(optarg);
            break;
        case 's':
            if (parse_size(optarg, &o->segment)) return -EINVAL;
            break;
        case 'l':
            if (parse_size(optarg, &o->local_buffer)) return -EINVAL;
            break;
        case 'n':
            if (parse_size(optarg, &v)) return -EINVAL;
            o->objects = v;
            break;
        case 'T':
            o->force_tcp = 1;
            break;
        case 'V':
            o->verify_every = atoi(optarg);
            break;
        case 'j':
            o->json = 1;
            break;
        case 'W':
            o->worker = atoi(optarg);
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return -EINVAL;
        }
    }
    if (optind != argc || o->clients < 2 || o->clients > MAX_CLIENTS || o->threads < 1 ||
        o->threads > MAX_THREADS || o->batch < 1 || o->batch > 4096 || o->duration <= 0 ||
        o->verify_every < 1 || o->active < 0 || o->active > o->clients || o->segment == 0)
        return -EINVAL;
    if (o->active == 0) o->active = o->clients;
    if (o->worker < 0 && !o->spawn && (!o->master || !o->metadata)) return -EINVAL;
    return 0;
}

/* ------------------------------------------------------------------ worker */

enum { OP_PUT, OP_PUT_PLAIN, OP_GET, OP_GET_PLAIN, OP_EXIST, OP_MASTER_MEM };
static const char *const op_names[] = {"put",       "put_plain", "get",
                                       "get_plain", "exist",     "master_mem"};

static int op_from_name(const char *s)
{
    for (int i = 0; i < (int)(sizeof op_names / sizeof *op_names); i++)
        if (strcmp(s, op_names[i]) == 0) return i;
    return -1;
}

typedef struct worker worker_t;

typedef struct {
    worker_t *w;
    int idx;
    char *buf; /* nslots value-sized slots; registered */
    size_t nslots;
    mc_bench_hist_t hist;
    uint64_t keys, bytes, errors, verified, bad;
    uint64_t busy_ns; /* time spent outside the timed work (removing rounds) */
    uint64_t run_ns;
} wthread_t;

struct worker {
    opts_t *o;
    int id;
    mc_store_t *store;
    char names[MAX_CLIENTS][256];
    int op;
    uint64_t size;
    int batch, threads;
    uint64_t preload; /* keys each worker preloaded into its own segment */
    char *ref;        /* pattern of size bytes */
    wthread_t th[MAX_THREADS];
    double secs;
    uint64_t cell;
};

static void key_of(char *k, size_t cap, const char *kind, uint64_t cell, int w, int t,
                   uint64_t round, uint64_t i)
{
    snprintf(k, cap, "bench/%s/c%" PRIu64 "/w%d/t%d/r%" PRIu64 "/%" PRIu64, kind, cell, w, t, round,
             i);
}

static uint64_t tag_of(const char *key)
{
    return XXH3_64bits(key, strlen(key));
}

/* Slots of a thread: enough for one batch, and spanning >= 64 MiB so the
 * timed transfers walk memory the way the memcpy reference does. */
static int thread_buffers(worker_t *w, wthread_t *t)
{
    size_t want = (size_t)64 << 20;
    t->nslots = want / w->size;
    if (t->nslots < (size_t)w->batch) t->nslots = (size_t)w->batch;
    size_t len = t->nslots * w->size;
    t->buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (t->buf == MAP_FAILED) {
        t->buf = NULL;
        return -ENOMEM;
    }
    madvise(t->buf, len, MADV_HUGEPAGE); /* as the segments: fewer page walks per copy */
    for (size_t i = 0; i < t->nslots; i++)
        memcpy(t->buf + i * w->size, w->ref, w->size);
    if (w->op != OP_PUT_PLAIN && w->op != OP_GET_PLAIN) {
        int rc = mc_store_register_buffer(w->store, t->buf, len);
        if (rc) return rc;
    }
    return 0;
}

static void thread_free(worker_t *w, wthread_t *t)
{
    if (!t->buf) return;
    if (w->op != OP_PUT_PLAIN && w->op != OP_GET_PLAIN)
        mc_store_unregister_buffer(w->store, t->buf);
    munmap(t->buf, t->nslots * w->size);
    t->buf = NULL;
}

/* Puts keys [0, n) of kind/round from this thread into segment `seg`. */
static int put_batch(worker_t *w, wthread_t *t, char keys[][160], size_t n, size_t slot0, int seg,
                     int plain)
{
    const char *kp[4096];
    void *bufs[4096];
    size_t lens[4096];
    int rcs[4096];
    const char *pref[1] = {w->names[seg]};
    mc_store_config_t cfg;
    mc_store_config_init(&cfg);
    cfg.preferred_segments = pref;
    cfg.preferred_segments_count = 1;
    for (size_t j = 0; j < n; j++) {
        char *b = t->buf + ((slot0 + j) % t->nslots) * w->size;
        mc_bench_stamp(b, w->size, tag_of(keys[j]));
        kp[j] = keys[j];
        bufs[j] = b;
        lens[j] = w->size;
    }
    if (n == 1)
        return plain ? mc_store_put(w->store, kp[0], bufs[0], lens[0], &cfg)
                     : mc_store_put_from(w->store, kp[0], bufs[0], lens[0], &cfg);
    int rc = plain ? mc_store_batch_put(w->store, kp, (const void *const *)bufs, lens, n, &cfg, rcs)
                   : mc_store_batch_put_from(w->store, kp, bufs, lens, n, &cfg, rcs);
    return rc;
}

static uint64_t preload_count(worker_t *w)
{
    uint64_t n = w->o->segment / 5 * 2 / (w->size + 64);
    if (n > 16384) n = 16384;
    uint64_t min = (uint64_t)w->batch * (uint64_t)w->threads;
    return n < min ? min : n;
}

/* One line on stderr about the first wrong value a thread read. */
static void report_bad(const worker_t *w, const char *key, const unsigned char *got)
{
    const unsigned char *ref = (const unsigned char *)w->ref;
    uint64_t tag = tag_of(key), head = 0;
    size_t first = 8, nbad = 0;
    memcpy(&head, got, 8);
    for (size_t i = 8; i + 8 < w->size; i++)
        if (got[i] != ref[i] && nbad++ == 0) first = i;
    fprintf(stderr,
            "store_bench worker %d: WRONG BYTES in '%s' (%" PRIu64 " B): head tag %s, %zu bytes "
            "differ from byte %zu\n",
            w->id, key, w->size, head == tag ? "ok" : "wrong", nbad, first);
}

static void *thread_main(void *arg)
{
    wthread_t *t = arg;
    worker_t *w = t->w;
    int peer = (w->id + 1) % w->o->clients;
    size_t n = (size_t)w->batch;
    char(*keys)[160] = calloc(n, 160);
    const char *kp[4096];
    void *bufs[4096];
    size_t caps[4096];
    int64_t res[4096];
    int ex[4096];
    if (!keys) {
        t->errors++;
        return NULL;
    }
    /* Put rounds hold at most 40% of the peer's segment, split by thread. */
    uint64_t per_round = w->o->segment / 5 * 2 / (w->size + 64) / (uint64_t)w->threads;
    if (per_round < n) per_round = n;
    uint64_t round = 0, in_round = 0, slot = (uint64_t)t->idx * 7919, calls = 0;
    uint64_t seq = (uint64_t)t->idx * 104729;
    uint64_t t0 = mc_now_ns(), deadline = t0 + (uint64_t)(w->secs * 1e9);
    for (;;) {
        uint64_t now = mc_now_ns();
        if (now >= deadline + t->busy_ns) break;
        int rc = 0;
        if (w->op == OP_PUT || w->op == OP_PUT_PLAIN) {
            if (in_round + n > per_round) { /* untimed: free the round's space */
                uint64_t b0 = mc_now_ns();
                for (uint64_t i = 0; i < in_round; i += n) {
                    size_t m = in_round - i < n ? in_round - i : n;
                    for (size_t j = 0; j < m; j++) {
                        key_of(keys[j], 160, "p", w->cell, w->id, t->idx, round, i + j);
                        kp[j] = keys[j];
                    }
                    mc_store_batch_remove(w->store, kp, m, 1, ex);
                }
                round++;
                in_round = 0;
                t->busy_ns += mc_now_ns() - b0;
                continue;
            }
            for (size_t j = 0; j < n; j++)
                key_of(keys[j], 160, "p", w->cell, w->id, t->idx, round, in_round + j);
            uint64_t a = mc_now_ns();
            rc = put_batch(w, t, keys, n, slot, peer, w->op == OP_PUT_PLAIN);
            mc_bench_hist_add(&t->hist, mc_now_ns() - a);
            in_round += n;
            if (rc)
                t->errors++;
            else {
                t->keys += n;
                t->bytes += n * w->size;
            }
            slot += n;
            continue;
        }
        /* Reads: keys the peer preloaded into its own segment. */
        for (size_t j = 0; j < n; j++) {
            key_of(keys[j], 160, "g", w->cell, peer, 0, 0, (seq + j) % w->preload);
            kp[j] = keys[j];
            bufs[j] = t->buf + ((slot + j) % t->nslots) * w->size;
            caps[j] = w->size;
        }
        seq += n;
        slot += n;
        int verify = (calls++ % (uint64_t)w->o->verify_every) == 0;
        uint64_t a = mc_now_ns();
        void *plain_out = NULL;
        if (w->op == OP_EXIST) {
            if (n == 1)
                ex[0] = mc_store_is_exist(w->store, kp[0]);
            else
                rc = mc_store_batch_is_exist(w->store, kp, n, ex);
            mc_bench_hist_add(&t->hist, mc_now_ns() - a);
            for (size_t j = 0; j < n; j++)
                if (rc || ex[j] != 1)
                    t->errors++;
                else
                    t->keys++;
            continue;
        }
        if (n == 1 && w->op == OP_GET_PLAIN) {
            size_t len = 0;
            rc = mc_store_get(w->store, kp[0], &plain_out, &len);
            res[0] = rc ? rc : (int64_t)len;
        } else if (n == 1) {
            res[0] = mc_store_get_into(w->store, kp[0], bufs[0], caps[0]);
        } else {
            rc = mc_store_batch_get_into(w->store, kp, bufs, caps, n, res);
        }
        mc_bench_hist_add(&t->hist, mc_now_ns() - a);
        for (size_t j = 0; j < n; j++) {
            if (res[j] != (int64_t)w->size) {
                t->errors++;
                continue;
            }
            t->keys++;
            t->bytes += w->size;
            if (verify) {
                const void *got = plain_out ? plain_out : bufs[j];
                if (mc_bench_check(got, w->size, tag_of(kp[j]), w->ref))
                    t->verified++;
                else if (t->bad++ == 0)
                    report_bad(w, kp[j], got);
            }
        }
        free(plain_out);
        (void)rc;
    }
    t->run_ns = mc_now_ns() - t0 - t->busy_ns;
    /* Leave nothing behind: remove this thread's put keys. */
    for (uint64_t i = 0; i < in_round; i += n) {
        size_t m = in_round - i < n ? in_round - i : n;
        for (size_t j = 0; j < m; j++) {
            key_of(keys[j], 160, "p", w->cell, w->id, t->idx, round, i + j);
            kp[j] = keys[j];
        }
        mc_store_batch_remove(w->store, kp, m, 1, ex);
    }
    free(keys);
    return NULL;
}

/* Preloads this worker's read set into its own segment (untimed). */
static int preload(worker_t *w)
{
    wthread_t *t = &w->th[0];
    char(*keys)[160] = calloc(64, 160);
    int rc = 0;
    if (!keys) return -ENOMEM;
    /* A batch never holds more keys than there are slots: each key's stamp
     * must stay in its slot until the batch's transfers are done. */
    uint64_t per = t->nslots < 64 ? t->nslots : 64;
    for (uint64_t i = 0; i < w->preload && rc == 0; i += per) {
        size_t m = w->preload - i < per ? (size_t)(w->preload - i) : (size_t)per;
        for (size_t j = 0; j < m; j++)
            key_of(keys[j], 160, "g", w->cell, w->id, 0, 0, i + j);
        rc = put_batch(w, t, keys, m, 0, w->id, 0);
    }
    free(keys);
    return rc;
}

/* Writes (then removes) as much as one put round holds into the peer's
 * segment, so timed puts do not pay the segment's first-touch page faults
 * (steady state of a long-running pool; upstream's RDMA registration pins
 * the pages up front). Untimed. */
static int warm_peer(worker_t *w)
{
    int peer = (w->id + 1) % w->o->clients, rc = 0, rcs[64];
    uint64_t total = w->o->segment / 5 * 2 / (w->size + 64);
    char(*keys)[160] = calloc(64, 160);
    const char *kp[64];
    if (!keys) return -ENOMEM;
    if (w->id >= w->o->active) total = 0;
    uint64_t per = w->th[0].nslots < 64 ? w->th[0].nslots : 64; /* as in preload */
    for (uint64_t i = 0; i < total && rc == 0; i += per) {
        size_t m = total - i < per ? (size_t)(total - i) : (size_t)per;
        for (size_t j = 0; j < m; j++)
            key_of(keys[j], 160, "w", w->cell, w->id, 0, 0, i + j);
        rc = put_batch(w, &w->th[0], keys, m, 0, peer, 0);
    }
    for (uint64_t i = 0; i < total; i += 64) {
        size_t m = total - i < 64 ? (size_t)(total - i) : 64;
        for (size_t j = 0; j < m; j++) {
            key_of(keys[j], 160, "w", w->cell, w->id, 0, 0, i + j);
            kp[j] = keys[j];
        }
        mc_store_batch_remove(w->store, kp, m, 1, rcs);
    }
    free(keys);
    return rc;
}

static int cell_load(worker_t *w, const char *op, uint64_t size, int batch, int threads)
{
    w->op = op_from_name(op);
    w->size = size;
    w->batch = batch;
    w->threads = threads;
    w->cell++;
    w->ref = malloc(size);
    if (w->op < 0 || !w->ref) return -EINVAL;
    mc_bench_pattern(w->ref, size);
    memset(w->th, 0, sizeof w->th);
    int rc = 0;
    for (int i = 0; i < threads && rc == 0; i++) {
        w->th[i].w = w;
        w->th[i].idx = i;
        rc = thread_buffers(w, &w->th[i]);
    }
    w->preload = 0;
    if (rc == 0 && (w->op == OP_PUT || w->op == OP_PUT_PLAIN)) rc = warm_peer(w);
    if (rc == 0 && (w->op == OP_GET || w->op == OP_GET_PLAIN || w->op == OP_EXIST)) {
        w->preload = preload_count(w);
        int op0 = w->op; /* preload from registered buffers */
        rc = preload(w);
        w->op = op0;
    }
    return rc;
}

static void cell_clean(worker_t *w)
{
    char keys[64][160];
    const char *kp[64];
    int rcs[64];
    for (uint64_t i = 0; i < w->preload; i += 64) {
        size_t m = w->preload - i < 64 ? (size_t)(w->preload - i) : 64;
        for (size_t j = 0; j < m; j++) {
            key_of(keys[j], sizeof keys[j], "g", w->cell, w->id, 0, 0, i + j);
            kp[j] = keys[j];
        }
        mc_store_batch_remove(w->store, kp, m, 1, rcs);
    }
    for (int i = 0; i < w->threads; i++)
        thread_free(w, &w->th[i]);
    free(w->ref);
    w->ref = NULL;
}

static int cell_go(worker_t *w, double secs, FILE *out)
{
    pthread_t tids[MAX_THREADS];
    int started = 0;
    w->secs = secs;
    if (w->id < w->o->active)
        for (; started < w->threads; started++)
            if (pthread_create(&tids[started], NULL, thread_main, &w->th[started])) break;
    for (int i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    mc_bench_hist_t *h = calloc(1, sizeof *h);
    if (!h) return -ENOMEM;
    uint64_t keys = 0, bytes = 0, errors = 0, verified = 0, bad = 0;
    double kps = 0, bps = 0;
    for (int i = 0; i < started; i++) {
        wthread_t *t = &w->th[i];
        keys += t->keys;
        bytes += t->bytes;
        errors += t->errors;
        verified += t->verified;
        bad += t->bad;
        double s = (double)t->run_ns / 1e9;
        if (s > 0) {
            kps += (double)t->keys / s;
            bps += (double)t->bytes / s;
        }
        mc_bench_hist_merge(h, &t->hist);
    }
    fprintf(out, "DONE %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %.3f %.3f HIST",
            keys, bytes, errors, verified, bad, kps, bps);
    mc_bench_hist_write(h, out);
    fputc('\n', out);
    fflush(out);
    free(h);
    return 0;
}

static int fill(worker_t *w, uint64_t first, uint64_t count)
{
    char(*keys)[160] = calloc(64, 160);
    const char *kp[64];
    const void *vals[64];
    size_t lens[64];
    int rcs[64];
    uint64_t errors = 0;
    char val[16];
    if (!keys) return -ENOMEM;
    memset(val, 'v', sizeof val);
    for (uint64_t i = 0; i < count; i += 64) {
        size_t m = count - i < 64 ? (size_t)(count - i) : 64;
        for (size_t j = 0; j < m; j++) {
            /* 40-byte keys (MEM_KEY_LEN), the size of a hex block hash with a prefix */
            snprintf(keys[j], 160, "mem/%012" PRIu64 "-kvcache-block-hash-0000", first + i + j);
            kp[j] = keys[j];
            vals[j] = val;
            lens[j] = sizeof val;
        }
        mc_store_batch_put(w->store, kp, vals, lens, m, NULL, rcs);
        for (size_t j = 0; j < m; j++)
            errors += rcs[j] != 0;
    }
    free(keys);
    return (int)(errors > 1000000 ? 1000000 : errors);
}

static int worker_main(opts_t *o)
{
    static worker_t w;
    char *line = malloc(LINE_MAX_LEN);
    uint64_t lb = o->local_buffer ? o->local_buffer : 64ull << 20;
    int rc = line ? mc_store_create(&w.store) : -ENOMEM;
    w.o = o;
    w.id = o->worker;
    if (rc == 0)
        rc = mc_store_setup(w.store, "127.0.0.1", o->metadata, o->segment, lb, "tcp", NULL,
                            o->master);
    if (rc) {
        fprintf(stderr, "store_bench worker %d: setup failed: %d\n", w.id, rc);
        return 1;
    }
    char name[256];
    mc_store_get_hostname(w.store, name, sizeof name);
    printf("READY %s\n", name);
    fflush(stdout);
    while (fgets(line, LINE_MAX_LEN, stdin)) {
        char op[32];
        unsigned long long a, b;
        int batch, threads;
        double d;
        if (strncmp(line, "PEERS ", 6) == 0) {
            char *save = NULL, *tok = strtok_r(line + 6, " \n", &save);
            for (int i = 0; tok && i < MAX_CLIENTS; i++, tok = strtok_r(NULL, " \n", &save))
                snprintf(w.names[i], sizeof w.names[i], "%s", tok);
            printf("OK\n");
        } else if (sscanf(line, "LOAD %31s %llu %d %d", op, &a, &batch, &threads) == 4) {
            rc = cell_load(&w, op, a, batch, threads);
            printf("LOADED %d\n", rc);
        } else if (sscanf(line, "MEMCPY %llu", &a) == 1) {
            /* Best of three: a conservative ceiling on a shared machine. */
            double best = 0;
            for (int k = 0; k < 3; k++) {
                double g = mc_bench_memcpy_gbps(w.th[0].buf, w.th[0].nslots * w.size, a);
                best = g > best ? g : best;
            }
            printf("MEMCPY %.3f\n", best);
        } else if (sscanf(line, "GO %lf", &d) == 1) {
            cell_go(&w, d, stdout);
        } else if (strncmp(line, "CLEAN", 5) == 0) {
            cell_clean(&w);
            printf("CLEANED\n");
        } else if (sscanf(line, "FILL %llu %llu", &a, &b) == 2) {
            printf("FILLED %d\n", fill(&w, a, b));
        } else if (strncmp(line, "QUIT", 4) == 0) {
            break;
        } else {
            printf("ERR unknown command\n");
        }
        fflush(stdout);
    }
    mc_store_destroy(w.store);
    free(line);
    return 0;
}

/* ------------------------------------------------------------- coordinator */

typedef struct {
    pid_t pid;
    FILE *in, *out;
} child_t;

static child_t kids[MAX_CLIENTS + 1]; /* [MAX_CLIENTS] is the master */

static void kill_all(void)
{
    for (int i = 0; i <= MAX_CLIENTS; i++)
        if (kids[i].pid > 0) kill(kids[i].pid, SIGKILL);
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "mooncake_store_bench: time limit reached, killing workers\n";
    kill_all();
    if (write(2, msg, sizeof msg - 1) < 0) _exit(3);
    _exit(3);
}

/* Starts argv with piped stdin/stdout; force_tcp sets MC_FORCE_TCP=1 for it. */
static int spawn(child_t *c, char *const argv[], int force_tcp)
{
    int pin[2], pout[2];
    if (pipe(pin)) return -errno;
    if (pipe(pout)) {
        close(pin[0]);
        close(pin[1]);
        return -errno;
    }
    pid_t pid = fork();
    if (pid < 0) return -errno;
    if (pid == 0) {
        dup2(pin[0], 0);
        dup2(pout[1], 1);
        for (int fd = 3; fd < 1024; fd++)
            close(fd);
        if (force_tcp) setenv("MC_FORCE_TCP", "1", 1);
        execv(argv[0], argv);
        fprintf(stderr, "cannot exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(pin[0]);
    close(pout[1]);
    c->pid = pid;
    c->in = fdopen(pin[1], "w");
    c->out = fdopen(pout[0], "r");
    return c->in && c->out ? 0 : -ENOMEM;
}

static int read_line(child_t *c, char *line, const char *prefix)
{
    while (fgets(line, LINE_MAX_LEN, c->out)) {
        if (strncmp(line, prefix, strlen(prefix)) == 0) return 0;
    }
    fprintf(stderr, "mooncake_store_bench: process %d ended before '%s'\n", (int)c->pid, prefix);
    return -EPIPE;
}

static void send_all(int n, const char *fmt, const char *arg)
{
    for (int i = 0; i < n; i++) {
        fprintf(kids[i].in, fmt, arg);
        fflush(kids[i].in);
    }
}

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    long kib = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
    fclose(f);
    return kib;
}

static int start_master(opts_t *o, const char *self, char *master, char *metadata)
{
    char bin[4096], line[1024];
    if (o->master_bin)
        snprintf(bin, sizeof bin, "%s", o->master_bin);
    else {
        snprintf(bin, sizeof bin, "%s", self);
        char *slash = strrchr(bin, '/');
        snprintf(slash ? slash + 1 : bin, sizeof bin - (size_t)(slash ? slash + 1 - bin : 0),
                 "mooncake_master");
    }
    char *argv[] = {bin,
                    "--enable_http_metadata_server",
                    "--http_metadata_server_port=0",
                    "--http_metadata_server_host=127.0.0.1",
                    "--rpc_port=0",
                    "--port=0",
                    "--rpc_address=127.0.0.1",
                    "--metrics_port=0",
                    "--metrics_host=127.0.0.1",
                    NULL,
                    NULL,
                    NULL};
    if (o->persist_dir) {
        argv[9] = "--persist_dir";
        argv[10] = (char *)o->persist_dir;
    }
    child_t *c = &kids[MAX_CLIENTS];
    if (spawn(c, argv, 0)) return -1;
    char host[256];
    unsigned port;
    while (fgets(line, sizeof line, c->out)) {
        if (sscanf(line, "mooncake_master: http metadata server listening on %255[^:]:%u", host,
                   &port) == 2)
            snprintf(metadata, 512, "%s://%s:%u/metadata", mc_tls_files() ? "https" : "http",
                     host, port); /* MC_TLS_*_FILE: the master serves TLS (net_tls.h) */
        else if (sscanf(line, "mooncake_master: rpc listening on %255[^:]:%u", host, &port) == 2)
            snprintf(master, 512, "%s:%u", host, port);
        else if (strncmp(line, "mooncake_master: ready", 22) == 0)
            return master[0] && metadata[0] ? 0 : -1;
    }
    fprintf(stderr, "mooncake_store_bench: %s did not become ready\n", bin);
    return -1;
}

static void stop_children(void)
{
    /* Workers first (they unmount from the live master), then the master. */
    for (int i = 0; i <= MAX_CLIENTS; i++) {
        child_t *c = &kids[i];
        if (c->pid <= 0) continue;
        if (i == MAX_CLIENTS)
            kill(c->pid, SIGTERM);
        else if (c->in) {
            fprintf(c->in, "QUIT\n");
            fflush(c->in);
        }
        if (c->in) fclose(c->in);
        if (c->out) fclose(c->out);
        waitpid(c->pid, NULL, 0);
        c->pid = 0;
    }
}

static int run_master_mem(opts_t *o, char *line)
{
    pid_t mp = kids[MAX_CLIENTS].pid;
    if (mp <= 0) {
        fprintf(stderr, "mooncake_store_bench: master_mem needs --spawn\n");
        return -1;
    }
    long before = rss_kib(mp);
    uint64_t per = o->objects / (uint64_t)o->clients, t0 = mc_now_ns();
    char cmd[128];
    for (int i = 0; i < o->clients; i++) {
        uint64_t cnt = i == o->clients - 1 ? o->objects - per * (uint64_t)i : per;
        snprintf(cmd, sizeof cmd, "FILL %" PRIu64 " %" PRIu64 "\n", per * (uint64_t)i, cnt);
        fputs(cmd, kids[i].in);
        fflush(kids[i].in);
    }
    int errors = 0;
    for (int i = 0; i < o->clients; i++) {
        if (read_line(&kids[i], line, "FILLED ")) return -1;
        errors += atoi(line + 7);
    }
    double secs = (double)(mc_now_ns() - t0) / 1e9;
    long after = rss_kib(mp);
    const size_t keylen = MEM_KEY_LEN;
    double per_obj = (double)(after - before) * 1024.0 / (double)o->objects;
    if (o->json)
        printf("{\"bench\":\"store\",\"op\":\"master_mem\",\"objects\":%" PRIu64
               ",\"value_size\":16,\"key_len\":%zu,\"errors\":%d,\"rss_before_kib\":%ld,"
               "\"rss_after_kib\":%ld,\"bytes_per_object\":%.1f,"
               "\"bytes_per_object_minus_key\":%.1f,\"fill_keys_per_s\":%.0f}\n",
               o->objects, keylen, errors, before, after, per_obj, per_obj - (double)keylen,
               (double)o->objects / secs);
    else
        printf("master_mem: %" PRIu64 " objects (16 B values, %zu B keys, %d errors): master RSS "
               "%ld -> %ld KiB, %.1f B/object, %.1f B/object beyond the key (fill %.0f keys/s)\n",
               o->objects, keylen, errors, before, after, per_obj, per_obj - (double)keylen,
               (double)o->objects / secs);
    fflush(stdout);
    return errors ? -1 : 0;
}

static int run_cell(opts_t *o, const char *op, uint64_t size, char *line, int *bad_run)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "LOAD %s %" PRIu64 " %d %d\n", op, size, o->batch, o->threads);
    send_all(o->clients, "%s", cmd);
    int rc = 0;
    for (int i = 0; i < o->clients; i++) {
        if (read_line(&kids[i], line, "LOADED ")) return -1;
        if (atoi(line + 7)) {
            fprintf(stderr, "worker %d: LOAD %s %" PRIu64 " failed: %d\n", i, op, size,
                    atoi(line + 7));
            rc = -1;
        }
    }
    double memcpy_gbps = 0;
    if (rc == 0) {
        snprintf(cmd, sizeof cmd, "MEMCPY %" PRIu64 "\n", size);
        fputs(cmd, kids[0].in);
        fflush(kids[0].in);
        if (read_line(&kids[0], line, "MEMCPY ")) return -1;
        memcpy_gbps = atof(line + 7);
        snprintf(cmd, sizeof cmd, "GO %.3f\n", o->duration);
        send_all(o->clients, "%s", cmd);
    }
    mc_bench_hist_t *h = calloc(1, sizeof *h);
    uint64_t keys = 0, errors = 0, verified = 0, bad = 0;
    double kps = 0, bps = 0;
    for (int i = 0; rc == 0 && i < o->clients; i++) {
        unsigned long long k, b, e, v, x;
        double kk, bb;
        int pos = 0;
        if (read_line(&kids[i], line, "DONE ")) return -1;
        if (sscanf(line, "DONE %llu %llu %llu %llu %llu %lf %lf HIST%n", &k, &b, &e, &v, &x, &kk,
                   &bb, &pos) < 7 ||
            !h || mc_bench_hist_parse(h, line + pos)) {
            fprintf(stderr, "worker %d: bad report\n", i);
            rc = -1;
            break;
        }
        keys += k;
        errors += e;
        verified += v;
        bad += x;
        kps += kk;
        bps += bb;
    }
    send_all(o->clients, "%s", "CLEAN\n");
    for (int i = 0; i < o->clients; i++)
        if (read_line(&kids[i], line, "CLEANED")) rc = -1;
    if (rc == 0) {
        double gbps = bps / 1e9, p50 = mc_bench_hist_quantile_us(h, 0.5),
               p99 = mc_bench_hist_quantile_us(h, 0.99);
        int ok = bad == 0 && (verified > 0 || strcmp(op, "exist") == 0 || op[0] == 'p');
        if (!ok) *bad_run = 1;
        if (o->json)
            printf("{\"bench\":\"store\",\"op\":\"%s\",\"transport\":\"%s\",\"value_size\":%" PRIu64
                   ",\"batch\":%d,\"threads\":%d,\"clients\":%d,\"active\":%d,\"duration_s\":%.1f,"
                   "\"keys\":%" PRIu64 ",\"ops_per_s\":%.0f,\"calls_per_s\":%.0f,\"gbps\":%.3f,"
                   "\"p50_us\":%.1f,\"p99_us\":%.1f,\"memcpy_gbps\":%.3f,\"ratio_to_memcpy\":%.3f,"
                   "\"errors\":%" PRIu64 ",\"verified_values\":%" PRIu64 ",\"verified\":%s}\n",
                   op, o->force_tcp ? "tcp" : "shm", size, o->batch, o->threads, o->clients,
                   o->active, o->duration, keys, kps, kps / o->batch, gbps, p50, p99, memcpy_gbps,
                   memcpy_gbps > 0 ? gbps / memcpy_gbps : 0, errors, verified,
                   ok ? "true" : "false");
        else
            printf("%-9s %-4s %8" PRIu64 " B  batch %-4d x%d thr  %10.0f keys/s %8.3f GB/s  "
                   "p50 %8.1f us  p99 %8.1f us  memcpy %6.2f GB/s ratio %.2f  errors %" PRIu64
                   "  verified %" PRIu64 "%s\n",
                   op, o->force_tcp ? "tcp" : "shm", size, o->batch, o->threads, kps, gbps, p50,
                   p99, memcpy_gbps, memcpy_gbps > 0 ? gbps / memcpy_gbps : 0, errors, verified,
                   ok ? "" : "  VERIFY FAILED");
        fflush(stdout);
    }
    free(h);
    return rc;
}

static int coordinator_main(opts_t *o, const char *self)
{
    char master[512] = "", metadata[512] = "", segs[64], seg[64], lbs[64], wid[16];
    char *line = malloc(LINE_MAX_LEN);
    int rc = 0, bad_run = 0;
    if (!line) return 1;
    /* Safety net: a wedged worker never hangs the run. */
    int nops = 1, nsizes = 1;
    uint64_t max_size = 0, sz_v;
    for (const char *p = o->ops; *p; p++)
        nops += *p == ',';
    for (const char *p = o->sizes; *p; p++) {
        nsizes += *p == ',';
        if ((p == o->sizes || p[-1] == ',') && sscanf(p, "%63[^,]", segs) == 1 &&
            parse_size(segs, &sz_v) == 0 && sz_v > max_size)
            max_size = sz_v;
    }
    if (o->local_buffer == 0) o->local_buffer = 64ull << 20;
    if (o->local_buffer < 2 * max_size * (uint64_t)o->batch)
        o->local_buffer = 2 * max_size * (uint64_t)o->batch;
    signal(SIGALRM, on_alarm);
    alarm((unsigned)(120 + nops * nsizes * (o->duration * 2 + 30)));
    signal(SIGPIPE, SIG_IGN);
    if (o->spawn) {
        if (start_master(o, self, master, metadata)) goto fail;
        o->master = master;
        o->metadata = metadata;
    }
    snprintf(seg, sizeof seg, "%" PRIu64, o->segment);
    snprintf(lbs, sizeof lbs, "%" PRIu64, o->local_buffer);
    snprintf(segs, sizeof segs, "%d", o->active);
    for (int i = 0; i < o->clients; i++) {
        snprintf(wid, sizeof wid, "%d", i);
        char cl[16], vs[16];
        snprintf(cl, sizeof cl, "%d", o->clients);
        snprintf(vs, sizeof vs, "%d", o->verify_every);
        char *argv[] = {(char *)self,
                        "--worker",
                        wid,
                        "--master",
                        (char *)o->master,
                        "--metadata",
                        (char *)o->metadata,
                        "--segment_size",
                        seg,
                        "--local_buffer",
                        lbs,
                        "--clients",
                        cl,
                        "--active",
                        segs,
                        "--verify_every",
                        vs,
                        NULL};
        if (spawn(&kids[i], argv, o->force_tcp)) goto fail;
    }
    char peers[MAX_CLIENTS * 260] = "PEERS";
    for (int i = 0; i < o->clients; i++) {
        if (read_line(&kids[i], line, "READY ")) goto fail;
        line[strcspn(line, "\n")] = 0;
        strcat(peers, " ");
        strcat(peers, line + 6);
    }
    strcat(peers, "\n");
    send_all(o->clients, "%s", peers);
    for (int i = 0; i < o->clients; i++)
        if (read_line(&kids[i], line, "OK")) goto fail;
    if (!o->json)
        printf("mooncake_store_bench: master %s, %d clients (%d active), transport %s\n", o->master,
               o->clients, o->active, o->force_tcp ? "tcp (MC_FORCE_TCP)" : "shm (same host)");
    char ops[256];
    snprintf(ops, sizeof ops, "%s", o->ops);
    char *so = NULL;
    for (char *op = strtok_r(ops, ",", &so); op && rc == 0; op = strtok_r(NULL, ",", &so)) {
        if (op_from_name(op) < 0) {
            fprintf(stderr, "mooncake_store_bench: unknown op '%s'\n", op);
            goto fail;
        }
        if (strcmp(op, "master_mem") == 0) {
            rc = run_master_mem(o, line);
            continue;
        }
        char sizes[256];
        snprintf(sizes, sizeof sizes, "%s", o->sizes);
        char *ss = NULL;
        for (char *sz = strtok_r(sizes, ",", &ss); sz && rc == 0; sz = strtok_r(NULL, ",", &ss)) {
            uint64_t size;
            if (parse_size(sz, &size) || size < 16 || size * (uint64_t)o->batch > (512ull << 20)) {
                fprintf(stderr,
                        "mooncake_store_bench: bad value size '%s' (16 B .. 512 MiB/batch)\n", sz);
                goto fail;
            }
            rc = run_cell(o, op, size, line, &bad_run);
        }
    }
    stop_children();
    free(line);
    alarm(0);
    return rc || bad_run ? 1 : 0;
fail:
    kill_all();
    stop_children();
    free(line);
    return 1;
}

int mc_bench_ssd_main(const char *dir, int qd, double seconds); /* store_bench_ssd.c */

int main(int argc, char **argv)
{
    static opts_t o;
    /* --ssd DIR [QD [SECONDS]]: the SSD tier's cells next to fio (store_bench_ssd.c) */
    if (argc >= 3 && strcmp(argv[1], "--ssd") == 0)
        return mc_bench_ssd_main(argv[2], argc > 3 ? atoi(argv[3]) : 8,
                                 argc > 4 ? atof(argv[4]) : 3.0);
    if (parse_opts(argc, argv, &o)) {
        usage(stderr);
        return 2;
    }
    if (o.worker >= 0) return worker_main(&o);
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return 1;
    self[n] = 0;
    /* The master binary is looked up next to argv[0]'s real location. */
    return coordinator_main(&o, self);
}
