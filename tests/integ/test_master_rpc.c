/* test_master_rpc.c: the master RPC end to end in one process: a real core
 * (mc_master_t) served by mc_master_rpc_start on 127.0.0.1:0 and driven by
 * mc_master_client: every call and its error codes, many threads pipelining
 * on one client, malformed frames on raw sockets (only that connection
 * closes, the server keeps serving), reconnect after a server restart, and
 * RPC_TIMEOUT against a server that answers the handshake and then stays
 * silent. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "base_codec.h"
#include "master_client.h"
#include "master_proto.h"
#include "master_rpc.h"
#include "net_sock.h"

typedef struct {
    mc_master_t *m;
    mc_master_rpc_t *rpc;
    char addr[64];
} server_t;

static void server_start(server_t *s, uint16_t port)
{
    mc_master_config_t cfg;
    mc_master_config_default(&cfg);
    assert_int_equal(mc_master_new(&cfg, &s->m), 0);
    assert_int_equal(mc_master_rpc_start(s->m, "127.0.0.1", port, &s->rpc), 0);
    snprintf(s->addr, sizeof s->addr, "127.0.0.1:%u", mc_master_rpc_port(s->rpc));
}

static void server_stop(server_t *s)
{
    mc_master_rpc_stop(s->rpc);
    mc_master_free(s->m);
}

static const mc_uuid_t CLIENT = {1, 2}, OTHER = {3, 4};

static void mount(mc_master_client_t *c, uint64_t hi, const char *name)
{
    mc_segment_t seg;
    memset(&seg, 0, sizeof seg);
    seg.id = (mc_uuid_t){hi, 99};
    snprintf(seg.name, sizeof seg.name, "%s", name);
    snprintf(seg.te_endpoint, sizeof seg.te_endpoint, "%s", name);
    snprintf(seg.protocol, sizeof seg.protocol, "tcp");
    snprintf(seg.host_id, sizeof seg.host_id, "host-a");
    seg.base = 0x10000000ull * hi;
    seg.size = 256ull << 20;
    assert_int_equal(mc_master_client_mount_segment(c, &seg, CLIENT), 0);
}

/* What mc_master_rpc_metrics appends to /metrics, as a malloc'd string. */
static char *metrics_text(mc_master_rpc_t *rpc)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    mc_master_rpc_metrics(f, rpc);
    fclose(f);
    return text;
}

static mc_replicate_config_t one_replica(void)
{
    mc_replicate_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.replica_num = 1;
    return cfg;
}

/* ---------------------------------------------------------------- calls */

static void test_calls(void **state)
{
    server_t s;
    server_start(&s, 0);
    mc_master_client_t *c;
    assert_int_equal(mc_master_client_connect(s.addr, &c), 0);
    int st = 0;
    assert_int_equal(mc_master_client_ping(c, CLIENT, &st), 0);
    mount(c, 1, "127.0.0.1:20001");
    mount(c, 2, "127.0.0.1:20002");

    mc_replicate_config_t cfg = one_replica();
    const char *pref[] = {"127.0.0.1:20002"};
    cfg.replica_num = 2;
    cfg.npreferred = 1;
    cfg.preferred_segments = pref;
    cfg.host_id = "host-a";
    mc_replica_t *r = NULL;
    size_t n = 0;
    assert_int_equal(mc_master_client_put_start(c, CLIENT, "k1", 4096, &cfg, &r, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(r[0].size, 4096);
    assert_string_not_equal(r[0].endpoint, r[1].endpoint);
    free(r);
    /* visible only after put_end; only the writer may end it */
    assert_int_equal(mc_master_client_exist(c, "k1"), 0);
    assert_int_equal(mc_master_client_put_end(c, OTHER, "k1"), MC_ERR_ILLEGAL_CLIENT);
    assert_int_equal(mc_master_client_put_end(c, CLIENT, "k1"), 0);
    assert_int_equal(mc_master_client_exist(c, "k1"), 1);
    assert_int_equal(mc_master_client_put_start(c, CLIENT, "k1", 4096, &cfg, &r, &n),
                     MC_ERR_OBJECT_ALREADY_EXISTS);
    assert_null(r);
    uint64_t ttl = 0;
    assert_int_equal(mc_master_client_get_replicas(c, "k1", &r, &n, &ttl), 0);
    assert_int_equal(n, 2);
    assert_int_equal(r[0].status, MC_REPLICA_COMPLETE);
    assert_true(ttl > 0);
    free(r);
    assert_int_equal(mc_master_client_get_replicas(c, "nope", &r, &n, &ttl),
                     MC_ERR_OBJECT_NOT_FOUND);
    /* the lease blocks a plain remove */
    assert_int_equal(mc_master_client_remove(c, "k1", 0), MC_ERR_OBJECT_HAS_LEASE);
    assert_int_equal(mc_master_client_remove(c, "k1", 1), 0);
    assert_int_equal(mc_master_client_exist(c, "k1"), 0);

    /* revoke and upsert */
    cfg = one_replica();
    assert_int_equal(mc_master_client_put_start(c, CLIENT, "k2", 100, &cfg, &r, &n), 0);
    free(r);
    assert_int_equal(mc_master_client_put_revoke(c, CLIENT, "k2"), 0);
    assert_int_equal(mc_master_client_exist(c, "k2"), 0);
    assert_int_equal(mc_master_client_upsert_start(c, CLIENT, "k3", 100, &cfg, &r, &n), 0);
    assert_int_equal(n, 1);
    free(r);
    assert_int_equal(mc_master_client_put_end(c, CLIENT, "k3"), 0);
    /* bad input is the core's INVALID_PARAMS, passed through */
    assert_int_equal(mc_master_client_put_start(c, CLIENT, "", 100, &cfg, &r, &n),
                     MC_ERR_INVALID_PARAMS);
    cfg.replica_num = 0;
    assert_int_equal(mc_master_client_put_start(c, CLIENT, "k4", 100, &cfg, &r, &n),
                     MC_ERR_INVALID_PARAMS);
    cfg = one_replica();
    /* a key over 4 KiB reaches the master, which refuses it */
    char *long_key = malloc(5001);
    memset(long_key, 'l', 5000);
    long_key[5000] = 0;
    int lrc = mc_master_client_put_start(c, CLIENT, long_key, 100, &cfg, &r, &n);
    assert_int_equal(lrc, MC_ERR_INVALID_PARAMS);
    free(long_key);
    assert_int_equal(mc_master_client_put_start(c, CLIENT, "k5", 100, NULL, &r, &n),
                     MC_ERR_INVALID_PARAMS);
    /* a key over the codec's limit never leaves the client */
    char *huge = malloc(MC_MP_STR_MAX + 2);
    memset(huge, 'h', MC_MP_STR_MAX + 1);
    huge[MC_MP_STR_MAX + 1] = 0;
    assert_int_equal(mc_master_client_exist(c, huge), MC_ERR_INVALID_PARAMS);
    free(huge);

    /* batches */
    enum { N = 50 };
    char names[N][32];
    const char *keys[N];
    uint64_t sizes[N];
    int rcs[N];
    mc_replica_t *reps[N];
    size_t nreps[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "batch/%d", i);
        keys[i] = names[i];
        sizes[i] = 1000 + (uint64_t)i;
    }
    keys[N - 1] = "k3"; /* exists already */
    assert_int_equal(
        mc_master_client_batch_put_start(c, CLIENT, keys, sizes, N, &cfg, rcs, reps, nreps), 0);
    for (int i = 0; i < N - 1; i++) {
        assert_int_equal(rcs[i], 0);
        assert_int_equal(nreps[i], 1);
        assert_int_equal(reps[i][0].size, sizes[i]);
        free(reps[i]);
    }
    assert_int_equal(rcs[N - 1], MC_ERR_OBJECT_ALREADY_EXISTS);
    assert_null(reps[N - 1]);
    assert_int_equal(mc_master_client_batch_put_end(c, CLIENT, keys, N - 1, rcs), 0);
    for (int i = 0; i < N - 1; i++)
        assert_int_equal(rcs[i], 0);
    keys[N - 1] = "missing";
    assert_int_equal(mc_master_client_batch_exist(c, keys, N, rcs), 0);
    for (int i = 0; i < N - 1; i++)
        assert_int_equal(rcs[i], 1);
    assert_int_equal(rcs[N - 1], 0);
    assert_int_equal(mc_master_client_batch_get_replicas(c, keys, N, rcs, reps, nreps, &ttl), 0);
    for (int i = 0; i < N - 1; i++) {
        assert_int_equal(rcs[i], 0);
        assert_int_equal(nreps[i], 1);
        free(reps[i]);
    }
    assert_int_equal(rcs[N - 1], MC_ERR_OBJECT_NOT_FOUND);
    assert_int_equal(mc_master_client_batch_remove(c, keys, 10, 1, rcs), 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(rcs[i], 0);
    assert_int_equal(mc_master_client_batch_put_revoke(c, CLIENT, keys, 1, rcs), 0);
    assert_true(rcs[0] < 0); /* removed: nothing to revoke */
    assert_int_equal(mc_master_client_remove_by_regex(c, "^batch/1[0-9]$", 1), 10);
    assert_int_equal(mc_master_client_remove_by_regex(c, "([", 1), MC_ERR_INVALID_PARAMS);
    assert_int_equal(mc_master_client_remove_all(c, 1), N - 1 - 20 + 1); /* + k3 */
    assert_int_equal(mc_master_client_batch_exist(c, keys, 0, rcs), 0);

    /* segments */
    assert_int_equal(mc_master_client_unmount_segment(c, (mc_uuid_t){1, 99}, CLIENT), 0);
    mc_segment_t segs[2];
    memset(segs, 0, sizeof segs);
    for (int i = 0; i < 2; i++) {
        segs[i].id = (mc_uuid_t){10 + (uint64_t)i, 1};
        snprintf(segs[i].name, sizeof segs[i].name, "127.0.0.1:%d", 21000 + i);
        memcpy(segs[i].te_endpoint, segs[i].name, sizeof segs[i].te_endpoint); /* same size */
        snprintf(segs[i].protocol, sizeof segs[i].protocol, "tcp");
        segs[i].base = 0x100000000ull * (uint64_t)(i + 1);
        segs[i].size = 64ull << 20;
    }
    assert_int_equal(mc_master_client_remount_segments(c, segs, 2, OTHER), 0);
    assert_int_equal(mc_master_client_ping(c, OTHER, &st), 0);
    assert_int_equal(st, MC_CLIENT_OK);

    mc_master_client_close(c);
    server_stop(&s);
}

/* ---------------------------------------------------------------- threads */

typedef struct {
    mc_master_client_t *c;
    int id;
    int ok;
} worker_t;

enum { THREADS = 8, OPS = 300 };

static void *worker(void *arg)
{
    worker_t *w = arg;
    mc_replicate_config_t cfg = one_replica();
    for (int i = 0; i < OPS; i++) {
        char key[64];
        snprintf(key, sizeof key, "t%d/%d", w->id, i);
        mc_replica_t *r = NULL;
        size_t n = 0;
        if (mc_master_client_put_start(w->c, CLIENT, key, 512 + (uint64_t)i, &cfg, &r, &n) ||
            n != 1 || r[0].size != 512 + (uint64_t)i)
            return NULL;
        free(r);
        if (mc_master_client_put_end(w->c, CLIENT, key)) return NULL;
        if (mc_master_client_exist(w->c, key) != 1) return NULL;
        uint64_t ttl;
        if (mc_master_client_get_replicas(w->c, key, &r, &n, &ttl) || n != 1 ||
            r[0].size != 512 + (uint64_t)i)
            return NULL;
        free(r);
    }
    w->ok = 1;
    return NULL;
}

/* THREADS workers on client c at once, every one of their replies right. */
static void run_workers(mc_master_client_t *c)
{
    pthread_t th[THREADS];
    worker_t w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker_t){c, i, 0};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        assert_true(w[i].ok);
    }
}

static void test_threads(void **state)
{
    server_t s;
    server_start(&s, 0);
    mc_master_client_t *c;
    assert_int_equal(mc_master_client_connect(s.addr, &c), 0);
    mount(c, 1, "127.0.0.1:20001");
    run_workers(c);
    assert_int_equal(mc_master_client_remove_all(c, 1), THREADS * OPS);
    mc_master_client_close(c);
    server_stop(&s);
}

/* The sum of master_rpc_connections over the loops, from /metrics. */
static int connections(mc_master_rpc_t *rpc)
{
    char *text = metrics_text(rpc);
    int sum = 0;
    for (const char *p = text; (p = strstr(p, "\nmaster_rpc_connections{")); p++) {
        const char *v = strchr(p, '}');
        assert_non_null(v);
        sum += atoi(v + 1);
    }
    free(text);
    return sum;
}

/* A master on a free loopback port with `loops` event loops. */
static void server_start_loops(server_t *s, int loops)
{
    mc_master_config_t cfg;
    mc_master_config_default(&cfg);
    assert_int_equal(mc_master_new(&cfg, &s->m), 0);
    mc_master_rpc_opts_t o = {NULL, NULL, loops};
    assert_int_equal(mc_master_rpc_start_opts(s->m, "127.0.0.1", 0, &o, &s->rpc), 0);
    snprintf(s->addr, sizeof s->addr, "127.0.0.1:%u", mc_master_rpc_port(s->rpc));
}

/* One client object, many threads: a thread calls on its own lane
 * (MC_MASTER_LANES connections at most, opened at their first call), every
 * reply right; with one lane all threads share one connection. */
static void test_lanes(void **state)
{
    (void)state;
    server_t s;
    server_start_loops(&s, 2);
    const char *lanes[] = {"3", "1"};
    for (int round = 0; round < 2; round++) {
        setenv("MC_MASTER_LANES", lanes[round], 1);
        mc_master_client_t *c;
        assert_int_equal(mc_master_client_connect(s.addr, &c), 0);
        assert_int_equal(connections(s.rpc), 1); /* the others wait for a caller */
        if (round == 0) mount(c, 1, "127.0.0.1:20001");
        run_workers(c);
        assert_int_equal(connections(s.rpc), atoi(lanes[round]));
        assert_int_equal(mc_master_client_remove_all(c, 1), THREADS * OPS);
        mc_master_client_close(c);
        /* the server notices the closes */
        for (int i = 0; i < 5000 && connections(s.rpc); i++) usleep(1000);
        assert_int_equal(connections(s.rpc), 0);
    }
    unsetenv("MC_MASTER_LANES");
    mc_master_rpc_stop(s.rpc);
    mc_master_free(s.m);
}

/* Several event loops (--rpc_thread_num): connections are dealt to the loops
 * in turn, each served by its own thread against the one core, every reply
 * right; a second server still cannot take the port; stop with connections
 * open on every loop. */
static void test_loops(void **state)
{
    (void)state;
    enum { LOOPS = 4, CONNS = 16 };
    server_t s;
    server_start_loops(&s, LOOPS);
    assert_int_equal(mc_master_rpc_loops(s.rpc), LOOPS);
    mc_master_rpc_opts_t o = {NULL, NULL, LOOPS};
    mc_master_rpc_t *dup = NULL;
    assert_int_equal(
        mc_master_rpc_start_opts(s.m, "127.0.0.1", mc_master_rpc_port(s.rpc), &o, &dup),
        MC_ERR_RPC_FAIL);
    assert_null(dup);
    mc_master_client_t *c[CONNS];
    for (int i = 0; i < CONNS; i++) {
        assert_int_equal(mc_master_client_connect(s.addr, &c[i]), 0);
        int st;
        assert_int_equal(mc_master_client_ping(c[i], CLIENT, &st), 0); /* served: adopted */
    }
    mount(c[0], 1, "127.0.0.1:20001");
    /* dealt in turn: CONNS / LOOPS each */
    char *text = metrics_text(s.rpc);
    assert_non_null(strstr(text, "\nmaster_rpc_loops 4\n"));
    for (int i = 0; i < LOOPS; i++) {
        char want[64];
        snprintf(want, sizeof want, "\nmaster_rpc_connections{loop=\"%d\"} %d\n", i,
                 CONNS / LOOPS);
        if (!strstr(text, want)) fail_msg("metrics lack %s:\n%s", want, text);
    }
    free(text);
    pthread_t th[CONNS];
    worker_t w[CONNS];
    for (int i = 0; i < CONNS; i++) {
        w[i] = (worker_t){c[i], i, 0};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &w[i]), 0);
    }
    for (int i = 0; i < CONNS; i++) {
        pthread_join(th[i], NULL);
        assert_true(w[i].ok);
    }
    assert_int_equal(mc_master_client_remove_all(c[1], 1), CONNS * OPS);
    mc_master_rpc_stop(s.rpc); /* every loop still has its connections */
    int st;
    for (int i = 0; i < CONNS; i++) {
        assert_int_equal(mc_master_client_ping(c[i], CLIENT, &st), MC_ERR_RPC_FAIL);
        mc_master_client_close(c[i]);
    }
    mc_master_free(s.m);
}

/* ---------------------------------------------------------------- big frames */

enum { PIPE_FRAMES = 24 };

typedef struct {
    int fd;
    const mc_mp_buf_t *frame;
    int count;
    int rc;
    int done;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} piper_t;

/* Sends `count` copies of a request frame, numbered 0.. in req_id. */
static void *piper_main(void *arg)
{
    piper_t *pp = arg;
    uint8_t *f = malloc(pp->frame->len);
    memcpy(f, pp->frame->p, pp->frame->len);
    for (int i = 0; i < pp->count && !pp->rc; i++) {
        mc_wr_t w = mc_wr_init(f + 8, 4);
        mc_wr_u32(&w, (uint32_t)i);
        pp->rc = mc_sock_send_all(pp->fd, f, pp->frame->len);
    }
    free(f);
    pthread_mutex_lock(&pp->mu);
    pp->done = 1;
    pthread_cond_signal(&pp->cv);
    pthread_mutex_unlock(&pp->mu);
    return NULL;
}

/* Batches whose frames are megabytes long: both sides grow their buffers. */
static void test_large_batches(void **state)
{
    server_t s;
    setenv("MC_MASTER_RPC_MAX_QUEUED", "65536", 1);
    server_start(&s, 0);
    unsetenv("MC_MASTER_RPC_MAX_QUEUED");
    mc_master_client_t *c;
    assert_int_equal(mc_master_client_connect(s.addr, &c), 0);
    mount(c, 1, "127.0.0.1:20001");
    enum { N = 20000 };
    char *names = malloc((size_t)N * 48);
    const char **keys = malloc(N * sizeof *keys);
    uint64_t *sizes = malloc(N * sizeof *sizes);
    int *rcs = malloc(N * sizeof *rcs);
    mc_replica_t **reps = malloc(N * sizeof *reps);
    size_t *nreps = malloc(N * sizeof *nreps);
    for (int i = 0; i < N; i++) {
        snprintf(names + (size_t)i * 48, 48, "large/batch/key/with/a/long/name/%08d", i);
        keys[i] = names + (size_t)i * 48;
        sizes[i] = 1024;
    }
    mc_replicate_config_t cfg = one_replica();
    assert_int_equal(
        mc_master_client_batch_put_start(c, CLIENT, keys, sizes, N, &cfg, rcs, reps, nreps), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(rcs[i], 0);
        assert_int_equal(nreps[i], 1);
        free(reps[i]);
    }
    assert_int_equal(mc_master_client_batch_put_end(c, CLIENT, keys, N, rcs), 0);
    assert_int_equal(mc_master_client_batch_get_replicas(c, keys, N, rcs, reps, nreps, NULL), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(rcs[i], 0);
        assert_int_equal(reps[i][0].size, 1024);
        free(reps[i]);
    }
    assert_int_equal(mc_master_client_batch_exist(c, keys, N, rcs), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(rcs[i], 1);
    /* small calls still work on the same connection after the big frames */
    assert_int_equal(mc_master_client_exist(c, keys[N - 1]), 1);

    /* a raw client pipelines requests whose replies (1 MiB each) exceed what
     * the server queues per connection (64 KiB here): the server pauses
     * reading it, resumes as the replies drain, and every reply arrives */
    mc_mp_buf_t req = {0};
    mc_mp_batch_get_replicas_req_t q = {.keys = keys, .n_keys = N};
    assert_int_equal(mc_mp_encode_batch_get_replicas_req(&req, 0, &q), 0);
    piper_t pp = {.frame = &req, .count = PIPE_FRAMES};
    pthread_mutex_init(&pp.mu, NULL);
    pthread_cond_init(&pp.cv, NULL);
    assert_int_equal(mc_sock_connect("127.0.0.1", mc_master_rpc_port(s.rpc), 2000, &pp.fd), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, piper_main, &pp), 0);
    /* Read nothing until the sender is done or stuck (the server paused and
     * the socket buffers are full), so that replies pile up on the server.
     * The outcome does not depend on this wait, only the path taken does. */
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 2;
    pthread_mutex_lock(&pp.mu);
    while (!pp.done && pthread_cond_timedwait(&pp.cv, &pp.mu, &dl) == 0) {
    }
    pthread_mutex_unlock(&pp.mu);
    size_t total = 0;
    for (int i = 0; i < PIPE_FRAMES; i++) {
        uint8_t hb[MC_MP_HDR_LEN];
        mc_mp_hdr_t h;
        const char *why;
        assert_int_equal(mc_sock_recv_all(pp.fd, hb, sizeof hb), 0);
        assert_int_equal(mc_mp_hdr_decode(hb, sizeof hb, &h, &why), 0);
        assert_int_equal(h.req_id, (uint32_t)i);
        assert_int_equal(h.status, 0);
        uint8_t *p = malloc(h.length);
        assert_int_equal(mc_sock_recv_all(pp.fd, p, h.length), 0);
        mc_mp_arena_t a = {0};
        mc_mp_batch_get_replicas_rep_t rep;
        assert_int_equal(mc_mp_decode_batch_get_replicas_rep(p, h.length, &a, &rep, &why), 0);
        assert_int_equal(rep.n_results, N);
        assert_int_equal(rep.results[N - 1].rc, 0);
        mc_mp_arena_free(&a);
        free(p);
        total += h.length;
    }
    pthread_join(th, NULL);
    assert_int_equal(pp.rc, 0);
    assert_true(total > PIPE_FRAMES * (1u << 20));
    pthread_cond_destroy(&pp.cv);
    pthread_mutex_destroy(&pp.mu);
    close(pp.fd);
    mc_mp_buf_free(&req);
    assert_int_equal(mc_master_client_remove_all(c, 1), N);
    free(names);
    free(keys);
    free(sizes);
    free(rcs);
    free(reps);
    free(nreps);
    mc_master_client_close(c);
    server_stop(&s);
}

/* ---------------------------------------------------------------- bad frames */

/* Sends raw bytes on a fresh connection and expects the server to close it. */
static void expect_closed(const char *addr_port_host, uint16_t port, const void *bytes, size_t len)
{
    int fd;
    assert_int_equal(mc_sock_connect(addr_port_host, port, 2000, &fd), 0);
    mc_sock_set_timeout(fd, 10000);
    assert_int_equal(mc_sock_send_all(fd, bytes, len), 0);
    uint8_t buf[256];
    ssize_t n;
    do
        n = recv(fd, buf, sizeof buf, 0);
    while (n > 0); /* a reply may come first (valid frames before the bad one) */
    assert_true(n == 0 || (n < 0 && errno == ECONNRESET));
    close(fd);
}

static void hdr(uint8_t *out, uint32_t magic, uint8_t ver, uint8_t method, uint16_t flags,
                int32_t status, uint32_t len)
{
    mc_mp_hdr_t h = {magic, ver, method, flags, 1, status, len, 0};
    mc_mp_hdr_encode(&h, out);
}

static void test_bad_frames(void **state)
{
    server_t s;
    server_start(&s, 0);
    uint16_t port = mc_master_rpc_port(s.rpc);
    mc_master_client_t *c;
    assert_int_equal(mc_master_client_connect(s.addr, &c), 0);
    assert_int_equal(mc_master_client_exist(c, "x"), 0);

    uint8_t f[256];
    memset(f, 0, sizeof f);
    hdr(f, 0xdeadbeef, 1, MC_MP_PING, 0, 0, 0);
    expect_closed("127.0.0.1", port, f, MC_MP_HDR_LEN);
    hdr(f, MC_MP_MAGIC, 9, MC_MP_PING, 0, 0, 0);
    expect_closed("127.0.0.1", port, f, MC_MP_HDR_LEN);
    hdr(f, MC_MP_MAGIC, 1, 0x66, 0, 0, 0);
    expect_closed("127.0.0.1", port, f, MC_MP_HDR_LEN);
    hdr(f, MC_MP_MAGIC, 1, MC_MP_PING | MC_MP_REPLY, 0, 0, 0); /* a reply sent to the server */
    expect_closed("127.0.0.1", port, f, MC_MP_HDR_LEN);
    hdr(f, MC_MP_MAGIC, 1, MC_MP_PING, 0, 0, MC_MP_FRAME_MAX + 1); /* oversized */
    expect_closed("127.0.0.1", port, f, MC_MP_HDR_LEN);
    hdr(f, MC_MP_MAGIC, 1, MC_MP_PING, 0, 0, 3); /* payload too short for a uuid */
    expect_closed("127.0.0.1", port, f, MC_MP_HDR_LEN + 3);
    hdr(f, MC_MP_MAGIC, 1, MC_MP_EXIST, 0, 0, 8); /* string length past the payload */
    mc_wr_t w = mc_wr_init(f + MC_MP_HDR_LEN, 4);
    mc_wr_u32(&w, 1000);
    expect_closed("127.0.0.1", port, f, MC_MP_HDR_LEN + 8);
    hdr(f, MC_MP_MAGIC, 1, MC_MP_BATCH_EXIST, 0, 0, 4); /* count past the payload */
    w = mc_wr_init(f + MC_MP_HDR_LEN, 4);
    mc_wr_u32(&w, 900000);
    expect_closed("127.0.0.1", port, f, MC_MP_HDR_LEN + 4);
    /* a valid request, then garbage in the same write: the reply comes, then the close */
    mc_mp_buf_t b = {0};
    assert_int_equal(mc_mp_encode_ping_req(&b, 5, &(mc_mp_ping_req_t){.client = CLIENT}), 0);
    uint8_t junk[MC_MP_HDR_LEN] = {'G', 'E', 'T', ' ', '/'};
    mc_mp_buf_t all = {0};
    memcpy(f, b.p, b.len);
    memcpy(f + b.len, junk, sizeof junk);
    expect_closed("127.0.0.1", port, f, b.len + sizeof junk);
    mc_mp_buf_free(&b);
    mc_mp_buf_free(&all);
    /* a connection that leaves mid-frame */
    int fd;
    assert_int_equal(mc_sock_connect("127.0.0.1", port, 2000, &fd), 0);
    hdr(f, MC_MP_MAGIC, 1, MC_MP_EXIST, 0, 0, 100);
    assert_int_equal(mc_sock_send_all(fd, f, MC_MP_HDR_LEN + 10), 0);
    close(fd);

    /* the well-behaved client was never disturbed */
    int st;
    assert_int_equal(mc_master_client_ping(c, CLIENT, &st), 0);
    assert_int_equal(mc_master_client_exist(c, "x"), 0);
    mc_master_client_close(c);
    server_stop(&s);
}

/* ---------------------------------------------------------------- restart */

static void test_reconnect(void **state)
{
    server_t s;
    server_start(&s, 0);
    uint16_t port = mc_master_rpc_port(s.rpc);
    mc_master_client_t *c;
    assert_int_equal(mc_master_client_connect(s.addr, &c), 0);
    int st;
    assert_int_equal(mc_master_client_ping(c, CLIENT, &st), 0);
    server_stop(&s);
    assert_int_equal(mc_master_client_ping(c, CLIENT, &st), MC_ERR_RPC_FAIL);
    server_start(&s, port);
    /* the port is taken now: a second server cannot start there */
    mc_master_rpc_t *dup = NULL;
    assert_int_equal(mc_master_rpc_start(s.m, "127.0.0.1", port, &dup), MC_ERR_RPC_FAIL);
    assert_null(dup);
    /* a fresh master: the client must re-mount */
    assert_int_equal(mc_master_client_ping(c, CLIENT, &st), 0);
    assert_int_equal(st, MC_CLIENT_NEED_REMOUNT);
    mount(c, 1, "127.0.0.1:20001");
    assert_int_equal(mc_master_client_exist(c, "x"), 0);
    mc_master_client_close(c);
    server_stop(&s);
    /* no server at all */
    assert_int_equal(mc_master_client_connect(s.addr, &c), MC_ERR_RPC_FAIL);
    assert_null(c);
    assert_int_equal(mc_master_client_connect("nonsense", &c), MC_ERR_INVALID_PARAMS);
}

/* ---------------------------------------------------------------- timeout */

typedef struct {
    int lfd;
    const char *version;
    int answered;
} silent_t;

/* Accepts one client, answers its SERVICE_READY with `version`, then reads
 * everything and answers nothing until the client goes away. */
static void *silent_main(void *arg)
{
    silent_t *s = arg;
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0) return NULL;
    uint8_t hb[MC_MP_HDR_LEN];
    mc_mp_hdr_t h;
    const char *why;
    if (mc_sock_recv_all(fd, hb, sizeof hb) == 0 &&
        mc_mp_hdr_decode(hb, sizeof hb, &h, &why) == 0) {
        uint8_t *p = malloc(h.length + 1);
        if (mc_sock_recv_all(fd, p, h.length) == 0) {
            mc_mp_buf_t b = {0};
            mc_mp_service_ready_rep_t rep = {.version = s->version};
            mc_mp_encode_service_ready_rep(&b, h.req_id, 0, &rep);
            mc_sock_send_all(fd, b.p, b.len);
            mc_mp_buf_free(&b);
            s->answered = 1;
        }
        free(p);
    }
    uint8_t buf[4096];
    while (recv(fd, buf, sizeof buf, 0) > 0) {
    }
    close(fd);
    return NULL;
}

typedef struct {
    mc_master_client_t *c;
    int *rc;
} timeout_arg_t;

static void *timeout_caller(void *arg)
{
    timeout_arg_t a = *(timeout_arg_t *)arg;
    *a.rc = mc_master_client_exist(a.c, "k");
    return NULL;
}

static void test_timeout_and_version(void **state)
{
    setenv("MC_RPC_TIMEOUT_MS", "300", 1);
    int lfd;
    uint16_t port;
    assert_int_equal(mc_sock_listen("127.0.0.1", 0, 16, &lfd, &port), 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", port);

    /* answers the handshake, then nothing: each request times out */
    silent_t s = {lfd, MC_MASTER_VERSION, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, silent_main, &s), 0);
    mc_master_client_t *c;
    assert_int_equal(mc_master_client_connect(addr, &c), 0);
    int st;
    assert_int_equal(mc_master_client_ping(c, CLIENT, &st), MC_ERR_RPC_TIMEOUT);
    assert_int_equal(mc_master_client_exist(c, "k"), MC_ERR_RPC_TIMEOUT);
    /* several callers at once on one connection: each one times out (the
     * reading role passes on) */
    mc_master_client_close(c);
    pthread_join(th, NULL);
    setenv("MC_MASTER_LANES", "1", 1);
    assert_int_equal(pthread_create(&th, NULL, silent_main, &s), 0);
    assert_int_equal(mc_master_client_connect(addr, &c), 0);
    unsetenv("MC_MASTER_LANES");
    pthread_t tt[4];
    int trc[4];
    timeout_arg_t targ[4];
    for (int i = 0; i < 4; i++) {
        trc[i] = 0;
        targ[i] = (timeout_arg_t){c, &trc[i]};
        assert_int_equal(pthread_create(&tt[i], NULL, timeout_caller, &targ[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(tt[i], NULL);
        assert_int_equal(trc[i], MC_ERR_RPC_TIMEOUT);
    }
    mc_master_client_close(c);
    pthread_join(th, NULL);

    /* a master of another version */
    silent_t v = {lfd, "0.9.9", 0};
    assert_int_equal(pthread_create(&th, NULL, silent_main, &v), 0);
    assert_int_equal(mc_master_client_connect(addr, &c), MC_ERR_INVALID_VERSION);
    pthread_join(th, NULL);
    assert_true(v.answered);

    /* nobody accepts (the kernel completes the connection in the backlog)
     * and nobody answers the handshake */
    assert_int_equal(mc_master_client_connect(addr, &c), MC_ERR_RPC_TIMEOUT);
    close(lfd);
    unsetenv("MC_RPC_TIMEOUT_MS");
}

/* ---------------------------------------------------------------- metrics */

/* The per-method counters that mc_master_rpc_metrics appends to /metrics. */
static void test_metrics(void **state)
{
    (void)state;
    server_t s;
    server_start(&s, 0);
    mc_master_client_t *c;
    assert_int_equal(mc_master_client_connect(s.addr, &c), 0);
    mount(c, 1, "127.0.0.1:20001");
    mc_replicate_config_t cfg = one_replica();
    mc_replica_t *r = NULL;
    size_t n = 0;
    uint64_t ttl = 0;
    assert_int_equal(mc_master_client_put_start(c, CLIENT, "m1", 4096, &cfg, &r, &n), 0);
    free(r);
    assert_int_equal(mc_master_client_put_end(c, CLIENT, "m1"), 0);
    assert_int_equal(mc_master_client_get_replicas(c, "m1", &r, &n, &ttl), 0);
    free(r);
    assert_int_equal(mc_master_client_get_replicas(c, "nope", &r, &n, &ttl),
                     MC_ERR_OBJECT_NOT_FOUND);
    const char *keys[] = {"m1", "nope", "m1"};
    int rcs[3];
    mc_replica_t *reps[3] = {0};
    size_t nreps[3];
    assert_int_equal(mc_master_client_batch_get_replicas(c, keys, 3, rcs, reps, nreps, &ttl), 0);
    for (int i = 0; i < 3; i++)
        free(reps[i]);
    assert_int_equal(mc_master_client_batch_exist(c, keys, 3, rcs), 0);

    char *text = metrics_text(s.rpc);
    const char *want[] = {
        "\nmaster_put_start_requests_total 1\n",
        "\nmaster_put_end_requests_total 1\n",
        "\nmaster_get_replica_list_requests_total 2\n",
        "\nmaster_get_replica_list_failures_total 1\n",
        "\nmaster_batch_get_replica_list_requests_total 1\n",
        "\nmaster_batch_get_replica_list_failures_total 0\n",
        "\nmaster_batch_get_replica_list_items_total 3\n",
        "\nmaster_batch_get_replica_list_failed_items_total 1\n",
        "\nmaster_batch_exist_key_items_total 3\n",
        "\nmaster_batch_exist_key_failed_items_total 0\n",
        "# TYPE master_ping_requests_total counter\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        if (!strstr(text, want[i])) fail_msg("metrics lack %s:\n%s", want[i], text);
    free(text);
    mc_master_client_close(c);
    server_stop(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_calls),     cmocka_unit_test(test_bad_frames),
        cmocka_unit_test(test_threads),   cmocka_unit_test(test_large_batches),
        cmocka_unit_test(test_reconnect), cmocka_unit_test(test_timeout_and_version),
        cmocka_unit_test(test_metrics),   cmocka_unit_test(test_loops),
        cmocka_unit_test(test_lanes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
