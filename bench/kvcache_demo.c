/* kvcache_demo: a KV-cache workload on the store pool, as `make demo` runs it.
 *
 * The coordinator (run without --role) starts two worker processes (itself,
 * exec'd with --role prefill and --role decode), each a store that contributes
 * a segment to the pool, and feeds both the same deterministic stream of
 * requests. A request is a shared prefix (one of a few "system prompts" or
 * documents, popular ones more often) followed by tokens of its own. Its KV
 * cache is cut in blocks of --block_tokens tokens; block i's key is the XXH3 of
 * (key of block i-1, tokens of block i), so equal prefixes give equal keys, as
 * in vLLM's prefix caching. The prefill worker asks the pool which blocks it
 * already has (batch_is_exist), counts the leading hits as reused prefix, and
 * puts the blocks it misses (batch_put_from: "computes" them). The decode
 * worker then fetches the request's whole KV cache (batch_get_into into
 * registered memory), counts hits and verifies every byte. Prefill of request
 * r+1 overlaps decode of request r.
 *
 * Output: prefix hit rate, GB/s and p50/p99 latency of both sides, and the
 * single-thread memcpy GB/s of the same run. Exit status 0 only when every
 * fetched block was found and byte-exact. Workers die with the coordinator
 * (PR_SET_PDEATHSIG), so a failure never leaves processes behind. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include "base_time.h"
#include "bench_util.h"
#include "mooncake/store.h"

#define MAX_BLOCKS 64

typedef struct {
    const char *master, *metadata, *role;
    int requests, prefixes, block_tokens, max_prefix_blocks, max_suffix_blocks;
    uint64_t block_size, segment;
    uint64_t seed;
} opts_t;

static void usage(FILE *f)
{
    fprintf(f, "usage: kvcache_demo --master HOST:PORT --metadata STR [options]\n"
               "  --requests N           requests (1000)\n"
               "  --prefixes N           distinct shared prefixes (12)\n"
               "  --block_size SIZE      KV bytes per block (524288)\n"
               "  --block_tokens N       tokens per block (256)\n"
               "  --max_prefix_blocks N  longest shared prefix, blocks (24)\n"
               "  --max_suffix_blocks N  longest per-request tail, blocks (4)\n"
               "  --segment_size SIZE    bytes each worker contributes (1073741824)\n"
               "  --seed N               workload seed (1)\n");
}

static int parse_opts(int argc, char **argv, opts_t *o)
{
    static const struct option lo[] = {{"master", required_argument, 0, 'm'},
                                       {"metadata", required_argument, 0, 'M'},
                                       {"role", required_argument, 0, 'r'},
                                       {"requests", required_argument, 0, 'n'},
                                       {"prefixes", required_argument, 0, 'p'},
                                       {"block_size", required_argument, 0, 'b'},
                                       {"block_tokens", required_argument, 0, 't'},
                                       {"max_prefix_blocks", required_argument, 0, 'P'},
                                       {"max_suffix_blocks", required_argument, 0, 'X'},
                                       {"segment_size", required_argument, 0, 's'},
                                       {"seed", required_argument, 0, 'e'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    *o = (opts_t){.requests = 1000,
                  .prefixes = 12,
                  .block_tokens = 256,
                  .max_prefix_blocks = 24,
                  .max_suffix_blocks = 4,
                  .block_size = 512 << 10,
                  .segment = 1ull << 30,
                  .seed = 1};
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'm':
            o->master = optarg;
            break;
        case 'M':
            o->metadata = optarg;
            break;
        case 'r':
            o->role = optarg;
            break;
        case 'n':
            o->requests = atoi(optarg);
            break;
        case 'p':
            o->prefixes = atoi(optarg);
            break;
        case 'b':
            o->block_size = strtoull(optarg, NULL, 0);
            break;
        case 't':
            o->block_tokens = atoi(optarg);
            break;
        case 'P':
            o->max_prefix_blocks = atoi(optarg);
            break;
        case 'X':
            o->max_suffix_blocks = atoi(optarg);
            break;
        case 's':
            o->segment = strtoull(optarg, NULL, 0);
            break;
        case 'e':
            o->seed = strtoull(optarg, NULL, 0);
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return -EINVAL;
        }
    }
    if (optind != argc || !o->master || !o->metadata || o->requests < 1 || o->prefixes < 1 ||
        o->block_tokens < 1 || o->block_tokens > 8192 || o->block_size < 16 ||
        o->max_prefix_blocks < 1 || o->max_suffix_blocks < 1 ||
        o->max_prefix_blocks + o->max_suffix_blocks > MAX_BLOCKS)
        return -EINVAL;
    return 0;
}

/* ---------------------------------------------------------------- workload */

static uint64_t mix(uint64_t a, uint64_t b)
{
    uint64_t v[2] = {a, b};
    return XXH3_64bits(v, sizeof v);
}

/* The chained block keys of request r: returns the block count, fills keys
 * (as "kv/<hex>") and tags (the 64-bit chain hashes). */
static int request_blocks(const opts_t *o, int r, char keys[][32], uint64_t *tags)
{
    /* Popular prefixes first: the prefix index is the smaller of two draws. */
    uint64_t h = mix(o->seed, (uint64_t)r);
    int p1 = (int)(h % (uint64_t)o->prefixes), p2 = (int)((h >> 20) % (uint64_t)o->prefixes);
    int p = p1 < p2 ? p1 : p2;
    int plen = 1 + (int)(mix(o->seed ^ 0x5eed, (uint64_t)p) % (uint64_t)o->max_prefix_blocks);
    int slen = 1 + (int)((h >> 40) % (uint64_t)o->max_suffix_blocks);
    /* Hash input: the previous block's hash, then this block's token ids. */
    uint32_t in[2 + 8192], *tokens = in + 2;
    uint64_t prev = 0;
    for (int i = 0; i < plen + slen; i++) {
        /* Token ids: a function of (prefix, block) inside the prefix, of
         * (request, block) in the tail. */
        uint64_t src = i < plen ? mix(0x9e3779b97f4a7c15ull ^ (uint64_t)p, (uint64_t)i)
                                : mix(0xc2b2ae3d27d4eb4full ^ (uint64_t)r, (uint64_t)i);
        for (int t = 0; t < o->block_tokens; t++)
            tokens[t] = (uint32_t)(mix(src, (uint64_t)t) % 128256u);
        memcpy(in, &prev, sizeof prev);
        prev = XXH3_64bits(in, sizeof prev + (size_t)o->block_tokens * sizeof *tokens);
        tags[i] = prev;
        snprintf(keys[i], 32, "kv/%016" PRIx64, prev);
    }
    return plen + slen;
}

/* ------------------------------------------------------------------ worker */

typedef struct {
    mc_bench_hist_t *hist;
    uint64_t blocks, hits, bytes, bad, ns;
} side_t;

static int worker_main(const opts_t *o)
{
    int prefill = strcmp(o->role, "prefill") == 0;
    mc_store_t *s = NULL;
    size_t span = MAX_BLOCKS * o->block_size;
    char *buf = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *ref = malloc(o->block_size);
    char line[256], name[256];
    char keys[MAX_BLOCKS][32];
    uint64_t tags[MAX_BLOCKS];
    const char *kp[MAX_BLOCKS];
    void *bufs[MAX_BLOCKS];
    size_t lens[MAX_BLOCKS];
    int64_t res[MAX_BLOCKS];
    int ex[MAX_BLOCKS], rcs[MAX_BLOCKS], rc;
    if (buf == MAP_FAILED || !ref) return 1;
    madvise(buf, span, MADV_HUGEPAGE); /* as the segments: fewer page walks per copy */
    mc_bench_pattern(ref, o->block_size);
    for (int i = 0; i < MAX_BLOCKS; i++) {
        memcpy(buf + (size_t)i * o->block_size, ref, o->block_size);
        bufs[i] = buf + (size_t)i * o->block_size;
        lens[i] = o->block_size;
    }
    rc = mc_store_create(&s);
    if (rc == 0)
        rc = mc_store_setup(s, "127.0.0.1", o->metadata, o->segment, 64 << 20, "tcp", NULL,
                            o->master);
    if (rc == 0) rc = mc_store_register_buffer(s, buf, span);
    if (rc == 0) rc = mc_store_get_hostname(s, name, sizeof name);
    if (rc) {
        fprintf(stderr, "kvcache_demo %s: store setup failed: %d (%s)\n", o->role, rc,
                mc_err_name(rc));
        mc_store_destroy(s);
        return 1;
    }
    printf("READY %s\n", name);
    fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {
        int r;
        if (sscanf(line, "REQ %d", &r) != 1) break;
        int n = request_blocks(o, r, keys, tags);
        for (int i = 0; i < n; i++)
            kp[i] = keys[i];
        uint64_t t0 = mc_now_ns();
        if (prefill) {
            /* Reuse the longest cached prefix; put ("compute") the rest. */
            rc = mc_store_batch_is_exist(s, kp, (size_t)n, ex);
            int hit = 0;
            while (rc == 0 && hit < n && ex[hit] == 1)
                hit++;
            for (int i = hit; i < n; i++)
                mc_bench_stamp(bufs[i], o->block_size, tags[i]);
            uint64_t p0 = mc_now_ns();
            int put_rc = hit < n ? mc_store_batch_put_from(s, kp + hit, bufs + hit, lens + hit,
                                                           (size_t)(n - hit), NULL, rcs)
                                 : 0;
            uint64_t t1 = mc_now_ns();
            printf("PREFILLED %d %d %d %" PRIu64 " %" PRIu64 " %d\n", r, n, hit, t1 - t0, t1 - p0,
                   rc ? rc : put_rc);
        } else {
            rc = mc_store_batch_get_into(s, kp, bufs, lens, (size_t)n, res);
            uint64_t ns = mc_now_ns() - t0;
            int hits = 0, bad = 0;
            for (int i = 0; i < n; i++) {
                if (res[i] != (int64_t)o->block_size) continue;
                hits++;
                if (!mc_bench_check(bufs[i], o->block_size, tags[i], ref)) bad++;
            }
            printf("FETCHED %d %d %d %d %" PRIu64 " %d\n", r, n, hits, bad, ns, rc);
        }
        fflush(stdout);
    }
    mc_store_unregister_buffer(s, buf);
    mc_store_destroy(s);
    munmap(buf, span);
    free(ref);
    return 0;
}

/* ------------------------------------------------------------- coordinator */

typedef struct {
    pid_t pid;
    FILE *in, *out;
} child_t;

static child_t kids[2];

static int spawn(child_t *c, char *const argv[])
{
    int pin[2], pout[2];
    pid_t parent = getpid();
    if (pipe(pin)) return -errno;
    if (pipe(pout)) {
        close(pin[0]);
        close(pin[1]);
        return -errno;
    }
    pid_t pid = fork();
    if (pid < 0) return -errno;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
        dup2(pin[0], 0);
        dup2(pout[1], 1);
        for (int fd = 3; fd < 1024; fd++)
            close(fd);
        execv(argv[0], argv);
        _exit(127);
    }
    close(pin[0]);
    close(pout[1]);
    c->pid = pid;
    c->in = fdopen(pin[1], "w");
    c->out = fdopen(pout[0], "r");
    return c->in && c->out ? 0 : -ENOMEM;
}

static int expect(child_t *c, char *line, size_t cap, const char *prefix)
{
    if (fgets(line, (int)cap, c->out) && strncmp(line, prefix, strlen(prefix)) == 0) return 0;
    fprintf(stderr, "kvcache_demo: worker %d stopped answering (expected %s)\n", (int)c->pid,
            prefix);
    return -EPIPE;
}

static void stop_kids(int force)
{
    for (int i = 0; i < 2; i++) {
        if (kids[i].pid <= 0) continue;
        if (force) kill(kids[i].pid, SIGKILL);
        if (kids[i].in) fclose(kids[i].in); /* EOF: the worker closes its store */
        if (kids[i].out) fclose(kids[i].out);
        waitpid(kids[i].pid, NULL, 0);
        kids[i].pid = 0;
    }
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "kvcache_demo: time limit reached\n";
    for (int i = 0; i < 2; i++)
        if (kids[i].pid > 0) kill(kids[i].pid, SIGKILL);
    if (write(2, msg, sizeof msg - 1) < 0) _exit(3);
    _exit(3);
}

static int coordinator_main(const opts_t *o, const char *self)
{
    char line[512], bs[32], bt[32], mp[32], ms[32], sg[32], sd[32], np[32];
    side_t pre = {0}, dec = {0};
    uint64_t unique_put = 0, t_start;
    int rc = 0;
    pre.hist = calloc(1, sizeof *pre.hist);
    dec.hist = calloc(1, sizeof *dec.hist);
    if (!pre.hist || !dec.hist) return 1;
    signal(SIGALRM, on_alarm);
    signal(SIGPIPE, SIG_IGN);
    alarm(120);
    snprintf(bs, sizeof bs, "%" PRIu64, o->block_size);
    snprintf(bt, sizeof bt, "%d", o->block_tokens);
    snprintf(mp, sizeof mp, "%d", o->max_prefix_blocks);
    snprintf(ms, sizeof ms, "%d", o->max_suffix_blocks);
    snprintf(sg, sizeof sg, "%" PRIu64, o->segment);
    snprintf(sd, sizeof sd, "%" PRIu64, o->seed);
    snprintf(np, sizeof np, "%d", o->prefixes);
    const char *roles[2] = {"prefill", "decode"};
    for (int i = 0; i < 2; i++) {
        char *argv[] = {(char *)self,
                        "--role",
                        (char *)roles[i],
                        "--master",
                        (char *)o->master,
                        "--metadata",
                        (char *)o->metadata,
                        "--block_size",
                        bs,
                        "--block_tokens",
                        bt,
                        "--max_prefix_blocks",
                        mp,
                        "--max_suffix_blocks",
                        ms,
                        "--segment_size",
                        sg,
                        "--seed",
                        sd,
                        "--prefixes",
                        np,
                        NULL};
        if (spawn(&kids[i], argv) || expect(&kids[i], line, sizeof line, "READY ")) goto fail;
        line[strcspn(line, "\n")] = 0;
        printf("%-8s store %s: %" PRIu64 " MiB segment in the pool\n", roles[i], line + 6,
               o->segment >> 20);
    }
    /* 256 MiB: larger than the caches, as the pool's memory is. */
    size_t mlen = (size_t)256 << 20;
    char *tmp = malloc(mlen);
    if (tmp) memset(tmp, 1, mlen);
    double memcpy_gbps = 0;
    for (int k = 0; tmp && k < 3; k++) { /* best of three: shared machines */
        double g = mc_bench_memcpy_gbps(tmp, mlen, o->block_size);
        memcpy_gbps = g > memcpy_gbps ? g : memcpy_gbps;
    }
    free(tmp);
    printf("workload: %d requests over %d shared prefixes (1-%d blocks) + 1-%d own blocks; "
           "%d tokens = %" PRIu64 " KiB per block\n\n",
           o->requests, o->prefixes, o->max_prefix_blocks, o->max_suffix_blocks, o->block_tokens,
           o->block_size >> 10);
    t_start = mc_now_ns();
    /* Pipeline: prefill r+1 while decode fetches r. */
    for (int r = 0; r <= o->requests; r++) {
        if (r < o->requests) {
            fprintf(kids[0].in, "REQ %d\n", r);
            fflush(kids[0].in);
        }
        if (r > 0) {
            fprintf(kids[1].in, "REQ %d\n", r - 1);
            fflush(kids[1].in);
        }
        int rr, n, hit, err, bad;
        unsigned long long ns, put_ns;
        if (r < o->requests) {
            if (expect(&kids[0], line, sizeof line, "PREFILLED ") ||
                sscanf(line, "PREFILLED %d %d %d %llu %llu %d", &rr, &n, &hit, &ns, &put_ns,
                       &err) != 6)
                goto fail;
            if (err) {
                fprintf(stderr, "kvcache_demo: prefill of request %d failed: %d (%s)\n", rr, err,
                        mc_err_name(err));
                rc = 1;
            }
            pre.blocks += (uint64_t)n;
            pre.hits += (uint64_t)hit;
            pre.bytes += (uint64_t)(n - hit) * o->block_size;
            pre.ns += put_ns;
            unique_put += (uint64_t)(n - hit);
            mc_bench_hist_add(pre.hist, ns);
        }
        if (r > 0) {
            if (expect(&kids[1], line, sizeof line, "FETCHED ") ||
                sscanf(line, "FETCHED %d %d %d %d %llu %d", &rr, &n, &hit, &bad, &ns, &err) != 6)
                goto fail;
            dec.blocks += (uint64_t)n;
            dec.hits += (uint64_t)hit;
            dec.bad += (uint64_t)bad;
            dec.bytes += (uint64_t)hit * o->block_size;
            dec.ns += ns;
            mc_bench_hist_add(dec.hist, ns);
        }
    }
    double wall = (double)(mc_now_ns() - t_start) / 1e9;
    printf("prefill: %" PRIu64 " blocks, %.1f%% found in the pool (prefix hits), %" PRIu64
           " put (%.0f MiB); batch put %.2f GB/s; per request p50 %.0f us, p99 %.0f us\n",
           pre.blocks, 100.0 * (double)pre.hits / (double)pre.blocks, unique_put,
           (double)(unique_put * o->block_size) / 1048576.0,
           pre.ns ? (double)pre.bytes / (double)pre.ns : 0,
           mc_bench_hist_quantile_us(pre.hist, 0.5), mc_bench_hist_quantile_us(pre.hist, 0.99));
    printf("decode:  %" PRIu64 " blocks fetched, hit rate %.1f%%, %.2f GB/s; per request "
           "(%.1f blocks avg) p50 %.0f us, p99 %.0f us\n",
           dec.blocks, 100.0 * (double)dec.hits / (double)dec.blocks,
           dec.ns ? (double)dec.bytes / (double)dec.ns : 0,
           (double)dec.blocks / (double)o->requests, mc_bench_hist_quantile_us(dec.hist, 0.5),
           mc_bench_hist_quantile_us(dec.hist, 0.99));
    printf("single-thread memcpy of the same block size: %.2f GB/s (decode ratio %.2f); "
           "wall %.2f s\n",
           memcpy_gbps,
           memcpy_gbps > 0 && dec.ns ? (double)dec.bytes / (double)dec.ns / memcpy_gbps : 0, wall);
    if (dec.bad || dec.hits != dec.blocks) {
        fprintf(stderr,
                "kvcache_demo: FAILED: %" PRIu64 " blocks missing, %" PRIu64 " with wrong bytes\n",
                dec.blocks - dec.hits, dec.bad);
        rc = 1;
    } else {
        printf("verified: every fetched block byte for byte (%.0f MiB)\n",
               (double)dec.bytes / 1048576.0);
    }
    stop_kids(0);
    free(pre.hist);
    free(dec.hist);
    return rc;
fail:
    stop_kids(1);
    free(pre.hist);
    free(dec.hist);
    return 1;
}

int main(int argc, char **argv)
{
    static opts_t o;
    if (parse_opts(argc, argv, &o)) {
        usage(stderr);
        return 2;
    }
    if (o.role) return worker_main(&o);
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return 1;
    self[n] = 0;
    return coordinator_main(&o, self);
}
