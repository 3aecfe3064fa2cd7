/* test_store: libmooncake_store against the real mooncake_master on loopback.
 * The master (with its embedded HTTP metadata server, a 2 s lease, long enough for a get on a
 * loaded machine, and a 2 s client TTL) runs as a child; stores A and B live in this process
 * (each with its own segment and an automatic port, so distinct names), store processes
 * (store_test_peer) are spawned where a test needs one to die or to use tcp.
 * Checks: bytes put by one store and read by another are identical (1 B ...
 * 16 MiB, across in-process shm, memcpy and tcp between processes), the
 * zero-copy and batch forms, exist/size/remove and leases, remove_all and
 * remove_by_regex, a store on a caller-owned engine, no space, a killed store's objects
 * disappearing, and a master restart after which the stores remount and serve by themselves.
 * Waiting is always on a condition (pipe lines, a polled predicate with a
 * deadline), never a fixed sleep. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>

#include <cmocka.h>

#include "mooncake/store.h"
#include "te_harness.h"

#define SEG_SIZE (128ull << 20)
#define LBUF_SIZE (32ull << 20)
#define LEASE_MS 2000
#define LEASE_MS_STR "2000"
#define CLIENT_TTL_S 2

static th_proc_t g_master;
static uint16_t g_rpc_port, g_meta_port;
static char g_master_addr[64], g_meta_url[128];
/* the master's persistence directory: its own, never the default under $HOME */
static char g_persist_dir[64];
static mc_store_t *g_a, *g_b;
static char g_a_name[256], g_b_name[256];

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A pause inside a bounded polling loop (the loop's deadline bounds it). */
static void poll_pause(void)
{
    poll(NULL, 0, 20);
}

static uint64_t rand_seed(void)
{
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, 0) != (ssize_t)sizeof s) s = now_ms();
    return s;
}

/* The port of a "mooncake_master: <what> listening on HOST:PORT" line, 0 if
 * the line is not one about `what`. */
static uint16_t listen_port(const char *line, const char *what)
{
    char pat[128];
    snprintf(pat, sizeof pat, ": %s listening on ", what);
    const char *at = strstr(line, pat);
    if (!at) return 0;
    const char *c = strrchr(at + strlen(pat), ':');
    unsigned long p = c ? strtoul(c + 1, NULL, 10) : 0;
    return p < 65536 ? (uint16_t)p : 0;
}

/* Starts mooncake_master; rpc/meta 0 = kernel-chosen ports. Reads its stdout
 * until it has said where the RPC and the metadata server listen. */
static int master_start(uint16_t rpc, uint16_t meta)
{
    char path[1024], rpcs[16], metas[16], ttl[16];
    if (th_bin_path(path, sizeof path, "mooncake_master")) return -ENOENT;
    snprintf(rpcs, sizeof rpcs, "%u", rpc);
    snprintf(metas, sizeof metas, "%u", meta);
    snprintf(ttl, sizeof ttl, "%d", CLIENT_TTL_S);
    /* --port is what --rpc_port 0 falls back to: both 0 for a kernel-chosen port. */
    char *argv[] = {path,
                    "--port",
                    rpcs,
                    "--rpc_port",
                    rpcs,
                    "--metrics_port",
                    "0",
                    "--enable_http_metadata_server=true",
                    "--http_metadata_server_port",
                    metas,
                    "--http_metadata_server_host",
                    "127.0.0.1",
                    "--rpc_address",
                    "127.0.0.1",
                    "--default_kv_lease_ttl",
                    LEASE_MS_STR,
                    "--client_ttl",
                    ttl,
                    "--persist_dir",
                    g_persist_dir,
                    NULL};
    int rc = th_spawn(&g_master, path, argv);
    if (rc) return rc;
    g_rpc_port = g_meta_port = 0;
    uint64_t deadline = now_ms() + 15000;
    for (;;) { /* listener lines, then "mooncake_master: ready" */
        char line[1024];
        uint64_t now = now_ms();
        if (now >= deadline) return -ETIMEDOUT;
        rc = th_read_line(&g_master, line, sizeof line, (int)(deadline - now));
        if (rc) return rc;
        fprintf(stderr, "master: %s\n", line);
        uint16_t p;
        if ((p = listen_port(line, "http metadata server"))) g_meta_port = p;
        if ((p = listen_port(line, "rpc"))) g_rpc_port = p;
        if (strstr(line, ": ready")) break;
    }
    if (!g_rpc_port || !g_meta_port) return -EPROTO;
    snprintf(g_master_addr, sizeof g_master_addr, "127.0.0.1:%u", g_rpc_port);
    snprintf(g_meta_url, sizeof g_meta_url, "http://127.0.0.1:%u/metadata", g_meta_port);
    return 0;
}

static int store_new(mc_store_t **s, uint64_t seg, char *name, size_t cap)
{
    int rc = mc_store_create(s);
    if (rc) return rc;
    rc = mc_store_setup(*s, "127.0.0.1", g_meta_url, seg, LBUF_SIZE, th_protocol(), NULL, g_master_addr);
    if (rc) {
        mc_store_destroy(*s);
        *s = NULL;
        return rc;
    }
    return name ? mc_store_get_hostname(*s, name, cap) : 0;
}

static int group_setup(void **state)
{
    (void)state;
    int rc = master_start(0, 0);
    if (rc) {
        fprintf(stderr, "cannot start mooncake_master: %s\n", strerror(-rc));
        th_reap_all();
        return -1;
    }
    if (store_new(&g_a, SEG_SIZE, g_a_name, sizeof g_a_name) ||
        store_new(&g_b, SEG_SIZE, g_b_name, sizeof g_b_name)) {
        fprintf(stderr, "store setup failed\n");
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    mc_store_destroy(g_a);
    mc_store_destroy(g_b);
    g_a = g_b = NULL;
    if (th_alive(&g_master)) th_signal(&g_master, SIGTERM); /* graceful stop, exit 0 */
    assert_int_equal(th_finish(&g_master, 5000), 0);
    th_reap_all();
    return 0;
}

static void cfg_prefer(mc_store_config_t *cfg, const char **name)
{
    mc_store_config_init(cfg);
    cfg->preferred_segments = name;
    cfg->preferred_segments_count = 1;
}

/* Polls pred(arg) until it is true or timeout_ms passes; returns it. */
static int wait_for(int (*pred)(void *), void *arg, int timeout_ms)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        if (pred(arg)) return 1;
        if (now_ms() >= deadline) return 0;
        poll_pause();
    }
}

/* ---- tests ---- */

static void test_names(void **state)
{
    (void)state;
    assert_string_not_equal(g_a_name, g_b_name);
    assert_int_equal(strncmp(g_a_name, "127.0.0.1:", 10), 0);
    unsigned port = (unsigned)atoi(g_a_name + 10);
    assert_true(port >= MC_STORE_CLIENT_MIN_PORT && port <= MC_STORE_CLIENT_MAX_PORT);
    assert_int_equal(mc_store_health_check(g_a), 0);
    mc_store_t *fresh;
    assert_int_equal(mc_store_create(&fresh), 0);
    assert_int_equal(mc_store_health_check(fresh), 1);
    assert_int_equal(mc_store_close(fresh), 0);
    mc_store_destroy(fresh);
}

/* Put by one store into the other's segment, read back by the other. */
static void put_get_between(mc_store_t *w, mc_store_t *r, const char *target, size_t size,
                            const char *key)
{
    char *val = malloc(size), *got = malloc(size);
    assert_non_null(val);
    assert_non_null(got);
    th_pattern(val, size, rand_seed());
    mc_store_config_t cfg;
    const char *pref = target;
    cfg_prefer(&cfg, &pref);
    assert_int_equal(mc_store_put(w, key, val, size, &cfg), 0);
    memset(got, 0xA5, size);
    assert_int_equal(mc_store_get_into(r, key, got, size), (int64_t)size);
    assert_memory_equal(got, val, size);
    /* The allocating form, from the writer too (memcpy from the other's... or own segment). */
    void *out = NULL;
    size_t len = 0;
    assert_int_equal(mc_store_get(w, key, &out, &len), 0);
    assert_int_equal(len, size);
    assert_memory_equal(out, val, size);
    free(out);
    free(val);
    free(got);
}

static void test_put_get_sizes(void **state)
{
    (void)state;
    static const size_t sizes[] = {1, 7, 4096, 65537, 1u << 20, 3u << 20, 16u << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char key[64];
        snprintf(key, sizeof key, "sizes/ab/%zu", sizes[i]);
        put_get_between(g_a, g_b, g_b_name, sizes[i], key); /* A writes B's segment */
        snprintf(key, sizeof key, "sizes/ba/%zu", sizes[i]);
        put_get_between(g_b, g_b, g_a_name, sizes[i], key); /* B writes A's, reads remote */
        snprintf(key, sizeof key, "sizes/aa/%zu", sizes[i]);
        put_get_between(g_a, g_b, g_a_name, sizes[i], key); /* A writes its own (memcpy) */
    }
    /* A miss, a buffer too small. */
    char small[4];
    assert_int_equal(mc_store_get_into(g_a, "sizes/none", small, sizeof small),
                     MC_ERR_OBJECT_NOT_FOUND);
    assert_int_equal(mc_store_get_into(g_a, "sizes/ab/4096", small, sizeof small),
                     MC_ERR_BUFFER_OVERFLOW);
    void *out = (void *)1;
    size_t len = 1;
    assert_int_equal(mc_store_get(g_a, "sizes/none", &out, &len), MC_ERR_OBJECT_NOT_FOUND);
    assert_null(out);

    /* The allocating batch form: remote, own-segment, a miss and an empty key
     * in one call; each found object equals what get_into reads. */
    const char *keys[] = {"sizes/ab/4096", "sizes/none", "sizes/aa/65537",  "",
                          "sizes/ba/7",    "sizes/ab/1", "sizes/ba/3145728"};
    enum { NK = sizeof keys / sizeof keys[0] };
    void *outs[NK];
    size_t lens[NK];
    int rcs[NK];
    assert_int_equal(mc_store_batch_get(g_b, keys, NK, outs, lens, rcs), MC_ERR_OBJECT_NOT_FOUND);
    for (size_t i = 0; i < NK; i++) {
        if (i == 1 || i == 3) {
            assert_int_equal(rcs[i], i == 1 ? MC_ERR_OBJECT_NOT_FOUND : MC_ERR_INVALID_PARAMS);
            assert_null(outs[i]);
            continue;
        }
        assert_int_equal(rcs[i], 0);
        assert_int_equal(lens[i], strtoull(strrchr(keys[i], '/') + 1, NULL, 10));
        char *want = malloc(lens[i] + 1);
        assert_non_null(want);
        assert_int_equal(mc_store_get_into(g_b, keys[i], want, lens[i] + 1), (int64_t)lens[i]);
        assert_memory_equal(outs[i], want, lens[i]);
        free(want);
        free(outs[i]);
    }
}

/* Over tcp between processes: the peer (MC_FORCE_TCP) writes into A's segment
 * and reads what A wrote into its own. */
static void test_tcp_peer(void **state)
{
    (void)state;
    char path[1024], segs[32], line[512];
    assert_int_equal(th_bin_path(path, sizeof path, "store_test_peer"), 0);
    snprintf(segs, sizeof segs, "%llu", (unsigned long long)SEG_SIZE);
    char *argv[] = {path, g_master_addr, g_meta_url, segs, "tcp", NULL};
    th_proc_t p;
    assert_int_equal(th_spawn(&p, path, argv), 0);
    assert_int_equal(th_read_line(&p, line, sizeof line, 15000), 0);
    assert_int_equal(strncmp(line, "READY ", 6), 0);
    char pname[512];
    snprintf(pname, sizeof pname, "%s", line + 6);

    static const size_t sizes[] = {1, 65536, 1u << 20, 16u << 20};
    for (size_t i = 0; i < 4; i++) {
        uint64_t seed = rand_seed() >> 1;
        char key[64];
        snprintf(key, sizeof key, "tcp/pa/%zu", sizes[i]);
        assert_int_equal(th_cmd(&p, line, sizeof line, 30000, "PUT %s %zu %" PRIu64 " %s", key,
                                sizes[i], seed, g_a_name),
                         0);
        assert_string_equal(line, "RC 0");
        char *want = malloc(sizes[i]), *got = malloc(sizes[i]);
        th_pattern(want, sizes[i], seed);
        assert_int_equal(mc_store_get_into(g_b, key, got, sizes[i]), (int64_t)sizes[i]);
        assert_memory_equal(got, want, sizes[i]);
        /* A writes into the peer's segment (shm from here); the peer reads
         * A's segment over tcp. */
        snprintf(key, sizeof key, "tcp/ap/%zu", sizes[i]);
        const char *pref = pname;
        mc_store_config_t cfg;
        cfg_prefer(&cfg, &pref);
        assert_int_equal(mc_store_put(g_a, key, want, sizes[i], &cfg), 0);
        assert_int_equal(
            th_cmd(&p, line, sizeof line, 30000, "GET %s %zu %" PRIu64, key, sizes[i], seed), 0);
        char expect[64];
        snprintf(expect, sizeof expect, "RC %zu", sizes[i]);
        assert_string_equal(line, expect);
        snprintf(key, sizeof key, "tcp/aa/%zu", sizes[i]);
        pref = g_a_name;
        assert_int_equal(mc_store_put(g_a, key, want, sizes[i], &cfg), 0);
        assert_int_equal(
            th_cmd(&p, line, sizeof line, 30000, "GET %s %zu %" PRIu64, key, sizes[i], seed), 0);
        assert_string_equal(line, expect);
        free(want);
        free(got);
    }
    assert_int_equal(th_cmd(&p, line, sizeof line, 10000, "QUIT"), 0);
    assert_int_equal(th_finish(&p, 10000), 0);
}

static void test_zero_copy(void **state)
{
    (void)state;
    size_t size = 16u << 20;
    char *src = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *dst = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(src != MAP_FAILED && dst != MAP_FAILED);
    assert_int_equal(mc_store_register_buffer(g_a, src, size), 0);
    assert_int_equal(mc_store_register_buffer(g_b, dst, size), 0);
    th_pattern(src, size, rand_seed());
    mc_store_config_t cfg;
    const char *pref = g_b_name;
    cfg_prefer(&cfg, &pref);
    assert_int_equal(mc_store_put_from(g_a, "zc/big", src, size, &cfg), 0);
    assert_int_equal(mc_store_get_into(g_b, "zc/big", dst, size), (int64_t)size);
    assert_memory_equal(dst, src, size);
    /* Size 0 stores nothing and succeeds. */
    assert_int_equal(mc_store_put_from(g_a, "zc/empty", src, 0, &cfg), 0);
    assert_int_equal(mc_store_is_exist(g_a, "zc/empty"), 0);

    /* Batches: 16 objects of 64 KiB + i from the registered buffers. */
    enum { N = 16 };
    char keys_s[N][32];
    const char *keys[N];
    void *bufs[N], *outs[N];
    size_t lens[N];
    int rcs[N];
    int64_t res[N];
    size_t off = 0;
    for (int i = 0; i < N; i++) {
        snprintf(keys_s[i], sizeof keys_s[i], "zc/batch/%d", i);
        keys[i] = keys_s[i];
        lens[i] = (64u << 10) + (size_t)i;
        bufs[i] = src + off;
        outs[i] = dst + off;
        off += lens[i];
    }
    th_pattern(src, off, rand_seed());
    memset(dst, 0, off);
    cfg.preferred_segments_count = 0;
    assert_int_equal(mc_store_batch_put_from(g_a, keys, bufs, lens, N, &cfg, rcs), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(rcs[i], 0);
    assert_int_equal(mc_store_batch_get_into(g_b, keys, outs, lens, N, res), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(res[i], (int64_t)lens[i]);
    assert_memory_equal(dst, src, off);
    /* Existing keys: success, no overwrite. */
    th_pattern(src, lens[0], rand_seed());
    assert_int_equal(mc_store_batch_put_from(g_a, keys, bufs, lens, 1, &cfg, rcs), 0);
    assert_int_equal(rcs[0], 0);
    assert_int_equal(mc_store_get_into(g_b, keys[0], dst + size - lens[0], lens[0]),
                     (int64_t)lens[0]);
    assert_memory_equal(dst + size - lens[0], dst, lens[0]);

    /* batch_put (staged) and batch_is_exist with a miss in the middle. */
    const char *k2[3] = {"zc/staged/0", "zc/staged/1", "zc/staged/2"};
    const void *v2[3] = {src, src + 100, src + 200};
    size_t l2[3] = {100, 100, 100};
    assert_int_equal(mc_store_batch_put(g_b, k2, v2, l2, 3, NULL, rcs), 0);
    const char *k3[3] = {"zc/staged/0", "zc/none", "zc/staged/2"};
    int ex[3];
    assert_int_equal(mc_store_batch_is_exist(g_a, k3, 3, ex), 0);
    assert_int_equal(ex[0], 1);
    assert_int_equal(ex[1], 0);
    assert_int_equal(ex[2], 1);
    void *o3[3] = {dst, dst + 100, dst + 200};
    assert_int_equal(mc_store_batch_get_into(g_a, k3, o3, l2, 3, res), 0);
    assert_int_equal(res[0], 100);
    assert_int_equal(res[1], MC_ERR_OBJECT_NOT_FOUND);
    assert_int_equal(res[2], 100);
    assert_memory_equal(dst, src, 100);
    assert_memory_equal(dst + 200, src + 200, 100);

    /* Multi-buffer scatter/gather: object i = 3 pieces. */
    mc_store_iov_t pin[2][3], pout[2][3];
    const mc_store_iov_t *pp[2] = {pin[0], pin[1]}, *po[2] = {pout[0], pout[1]};
    size_t np[2] = {3, 3};
    const char *mk[2] = {"zc/multi/0", "zc/multi/1"};
    th_pattern(src, 1u << 20, rand_seed());
    memset(dst, 0, 1u << 20);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++) {
            size_t o = (size_t)(i * 3 + j) * 70000;
            pin[i][j] = (mc_store_iov_t){src + o, 1000 + (size_t)j * 33333};
            pout[i][j] = (mc_store_iov_t){dst + o, 1000 + (size_t)j * 33333};
        }
    assert_int_equal(mc_store_batch_put_from_multi_buffers(g_a, mk, pp, np, 2, &cfg, rcs), 0);
    assert_int_equal(mc_store_batch_get_into_multi_buffers(g_b, mk, po, np, 2, res), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(res[i], 3000 + 33333 * 3);
        for (int j = 0; j < 3; j++)
            assert_memory_equal(pout[i][j].ptr, pin[i][j].ptr, pin[i][j].len);
    }
    /* put_parts: one object from the pieces, read back whole. */
    assert_int_equal(mc_store_put_parts(g_a, "zc/parts", pin[0], 3, NULL), 0);
    char *whole = malloc(3000 + 33333 * 3);
    assert_int_equal(mc_store_get_into(g_b, "zc/parts", whole, 3000 + 33333 * 3), 3000 + 33333 * 3);
    size_t w = 0;
    for (int j = 0; j < 3; j++) {
        assert_memory_equal(whole + w, pin[0][j].ptr, pin[0][j].len);
        w += pin[0][j].len;
    }
    free(whole);

    assert_int_equal(mc_store_unregister_buffer(g_a, src), 0);
    assert_int_equal(mc_store_unregister_buffer(g_b, dst), 0);
    assert_int_equal(mc_store_unregister_buffer(g_b, dst), MC_ERR_INVALID_PARAMS);
    munmap(src, size);
    munmap(dst, size);
}

static int removable(void *key)
{
    return mc_store_remove(g_b, key, 0) == 0;
}

static void test_exist_size_remove_lease(void **state)
{
    (void)state;
    char val[1000];
    th_pattern(val, sizeof val, 7);
    /* Right after a put, remove succeeds (no lease yet). */
    assert_int_equal(mc_store_put(g_a, "lease/0", val, sizeof val, NULL), 0);
    assert_int_equal(mc_store_remove(g_b, "lease/0", 0), 0);
    assert_int_equal(mc_store_is_exist(g_a, "lease/0"), 0);
    assert_int_equal(mc_store_remove(g_b, "lease/0", 0), MC_ERR_OBJECT_NOT_FOUND);

    assert_int_equal(mc_store_put(g_a, "lease/1", val, sizeof val, NULL), 0);
    assert_int_equal(mc_store_get_size(g_b, "lease/1"), (int64_t)sizeof val);
    assert_int_equal(mc_store_is_exist(g_b, "lease/1"), 1);
    /* A read lease: remove refused until it expires. */
    char got[1000];
    assert_int_equal(mc_store_get_into(g_b, "lease/1", got, sizeof got), (int64_t)sizeof val);
    uint64_t t0 = now_ms();
    int rc = mc_store_remove(g_b, "lease/1", 0);
    if (now_ms() - t0 < LEASE_MS) assert_int_equal(rc, MC_ERR_OBJECT_HAS_LEASE);
    assert_true(wait_for(removable, "lease/1", LEASE_MS + 5000));
    assert_true(now_ms() - t0 >= LEASE_MS - 50);
    assert_int_equal(mc_store_is_exist(g_a, "lease/1"), 0);
    assert_int_equal(mc_store_get_size(g_a, "lease/1"), MC_ERR_OBJECT_NOT_FOUND);
    assert_int_equal(mc_store_get_into(g_a, "lease/1", got, sizeof got), MC_ERR_OBJECT_NOT_FOUND);

    /* force removes despite a lease. */
    assert_int_equal(mc_store_put(g_a, "lease/2", val, sizeof val, NULL), 0);
    assert_int_equal(mc_store_is_exist(g_a, "lease/2"), 1);
    assert_int_equal(mc_store_remove(g_a, "lease/2", 1), 0);

    /* put of an existing key: 0, not overwritten; upsert overwrites. */
    char other[1000];
    th_pattern(other, sizeof other, 8);
    assert_int_equal(mc_store_put(g_a, "lease/3", val, sizeof val, NULL), 0);
    assert_int_equal(mc_store_put(g_b, "lease/3", other, sizeof other, NULL), 0);
    assert_int_equal(mc_store_get_into(g_a, "lease/3", got, sizeof got), (int64_t)sizeof val);
    assert_memory_equal(got, val, sizeof val);
    assert_true(wait_for(removable, "lease/3", 5000)); /* let the lease pass for upsert */
    assert_int_equal(mc_store_put(g_a, "lease/3", val, sizeof val, NULL), 0);
    assert_int_equal(mc_store_upsert(g_b, "lease/3", other, sizeof other, NULL), 0);
    assert_int_equal(mc_store_get_into(g_a, "lease/3", got, sizeof got), (int64_t)sizeof other);
    assert_memory_equal(got, other, sizeof other);

    /* Upsert while a read lease runs (same size): it succeeds at once; the
     * upserting store's next get (its lease cache entry dropped) and another
     * store's get see the new bytes. The old range's release after the lease
     * is test_master_service's test_upsert. */
    char third[1000];
    th_pattern(third, sizeof third, 10);
    assert_int_equal(mc_store_put(g_a, "lease/5", val, sizeof val, NULL), 0);
    assert_int_equal(mc_store_get_into(g_b, "lease/5", got, sizeof got), (int64_t)sizeof val);
    assert_memory_equal(got, val, sizeof val);
    assert_int_equal(mc_store_upsert(g_b, "lease/5", third, sizeof third, NULL), 0);
    assert_int_equal(mc_store_get_into(g_b, "lease/5", got, sizeof got), (int64_t)sizeof third);
    assert_memory_equal(got, third, sizeof third);
    assert_int_equal(mc_store_upsert(g_a, "lease/5", other, sizeof other, NULL), 0); /* leased */
    assert_int_equal(mc_store_get_into(g_a, "lease/5", got, sizeof got), (int64_t)sizeof other);
    assert_memory_equal(got, other, sizeof other);
    assert_int_equal(mc_store_remove(g_a, "lease/5", 1), 0);

    /* Batch upsert (one master round trip): a new key and an existing one, new size. */
    assert_true(wait_for(removable, "lease/3", 5000));
    char big[3000];
    th_pattern(big, sizeof big, 9);
    const char *ukeys[] = {"lease/3", "lease/4"};
    void *ubufs[] = {big, other};
    size_t ulens[] = {sizeof big, sizeof other};
    int urcs[2] = {-1, -1};
    assert_int_equal(mc_store_batch_upsert_from(g_b, ukeys, ubufs, ulens, 2, NULL, urcs), 0);
    assert_int_equal(urcs[0], 0);
    assert_int_equal(urcs[1], 0);
    char got3[3000];
    assert_int_equal(mc_store_get_into(g_a, "lease/3", got3, sizeof got3), (int64_t)sizeof big);
    assert_memory_equal(got3, big, sizeof big);
    assert_int_equal(mc_store_get_into(g_a, "lease/4", got, sizeof got), (int64_t)sizeof other);
    assert_memory_equal(got, other, sizeof other);

    /* Bad arguments. */
    assert_int_equal(mc_store_put(g_a, "", val, 1, NULL), MC_ERR_INVALID_PARAMS);
    assert_int_equal(mc_store_put(g_a, "lease/zero", val, 0, NULL), MC_ERR_INVALID_PARAMS);
    mc_store_config_t cfg;
    mc_store_config_init(&cfg);
    cfg.replica_num = 0;
    assert_int_equal(mc_store_put(g_a, "lease/r0", val, 1, &cfg), MC_ERR_INVALID_PARAMS);
}

static void test_replicas(void **state)
{
    (void)state;
    char val[5000], got[5000];
    th_pattern(val, sizeof val, 11);
    mc_store_config_t cfg;
    mc_store_config_init(&cfg);
    cfg.replica_num = 2;
    assert_int_equal(mc_store_put(g_a, "rep/2", val, sizeof val, &cfg), 0);
    assert_int_equal(mc_store_get_into(g_a, "rep/2", got, sizeof got), (int64_t)sizeof val);
    assert_memory_equal(got, val, sizeof val);
    assert_int_equal(mc_store_get_into(g_b, "rep/2", got, sizeof got), (int64_t)sizeof val);
    assert_memory_equal(got, val, sizeof val);
    /* Two replicas on two distinct segments, A's and B's. */
    mc_store_replica_desc_t *d;
    size_t n;
    assert_int_equal(mc_store_get_replica_desc(g_a, "rep/2", &d, &n), 0);
    assert_int_equal(n, 2);
    assert_string_not_equal(d[0].endpoint, d[1].endpoint);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(d[i].size, sizeof val);
        assert_int_equal(d[i].status, 3);
        assert_true(strcmp(d[i].endpoint, g_a_name) == 0 || strcmp(d[i].endpoint, g_b_name) == 0);
    }
    free(d);
    assert_int_equal(mc_store_get_replica_desc(g_a, "rep/none", &d, &n), MC_ERR_OBJECT_NOT_FOUND);
}

/* P2PHANDSHAKE metadata (vLLM's default): TE segment names are "ip:rpc_port",
 * resolved by asking the peer; the stores still use their hostnames as names. */
static void test_p2p(void **state)
{
    (void)state;
    mc_store_t *c, *d;
    char cn[256], dn[256];
    assert_int_equal(mc_store_create(&c), 0);
    assert_int_equal(mc_store_create(&d), 0);
    assert_int_equal(mc_store_setup(c, "127.0.0.1", "P2PHANDSHAKE", 16u << 20, 16u << 20, "tcp",
                                    NULL, g_master_addr),
                     0);
    assert_int_equal(mc_store_setup(d, "127.0.0.1", "P2PHANDSHAKE", 16u << 20, 16u << 20, "tcp",
                                    NULL, g_master_addr),
                     0);
    assert_int_equal(mc_store_get_hostname(c, cn, sizeof cn), 0);
    assert_int_equal(mc_store_get_hostname(d, dn, sizeof dn), 0);
    size_t size = 1u << 20;
    char *val = malloc(size), *got = malloc(size);
    th_pattern(val, size, rand_seed());
    mc_store_config_t cfg;
    const char *pref = dn;
    cfg_prefer(&cfg, &pref);
    assert_int_equal(mc_store_put(c, "p2p/cd", val, size, &cfg), 0);
    assert_int_equal(mc_store_get_into(c, "p2p/cd", got, size), (int64_t)size);
    assert_memory_equal(got, val, size);
    memset(got, 0, size);
    assert_int_equal(mc_store_get_into(d, "p2p/cd", got, size), (int64_t)size);
    assert_memory_equal(got, val, size);
    pref = cn;
    assert_int_equal(mc_store_put(d, "p2p/dc", val, size, &cfg), 0);
    memset(got, 0, size);
    assert_int_equal(mc_store_get_into(d, "p2p/dc", got, size), (int64_t)size);
    assert_memory_equal(got, val, size);
    free(val);
    free(got);
    assert_int_equal(mc_store_close(c), 0);
    assert_int_equal(mc_store_close(d), 0);
    mc_store_destroy(c);
    mc_store_destroy(d);
    /* Closed stores unmounted their segments: their objects are gone. */
    assert_int_equal(mc_store_is_exist(g_a, "p2p/cd"), 0);
    assert_int_equal(mc_store_is_exist(g_a, "p2p/dc"), 0);
}

/* A store set up on the test's own engine (mc_store_setup_with_engine): its
 * name is the engine's segment name, buffers registered on the engine serve
 * the zero-copy calls, bytes cross to and from store B exactly, and the
 * engine outlives the store (usable after close, and again for a new store). */
static void test_shared_engine(void **state)
{
    (void)state;
    mc_te_t *te, *raw;
    assert_int_equal(mc_te_create(&raw), 0);
    mc_store_t *e;
    assert_int_equal(mc_store_create(&e), 0);
    /* An engine not initialised is refused. */
    assert_int_equal(mc_store_setup_with_engine(e, raw, 16u << 20, 16u << 20, "tcp", g_master_addr),
                     MC_ERR_INVALID_PARAMS);
    assert_int_equal(mc_store_setup_with_engine(e, NULL, 0, 0, "tcp", g_master_addr),
                     MC_ERR_INVALID_PARAMS);
    mc_te_destroy(raw);

    char tname[64];
    snprintf(tname, sizeof tname, "127.0.0.1:%u", 20000u + (unsigned)(rand_seed() % 20000u));
    assert_int_equal(mc_te_create(&te), 0);
    assert_int_equal(mc_te_init(te, tname, g_meta_url, "tcp", NULL), 0);
    size_t size = 4u << 20;
    char *ubuf = mmap(NULL, 2 * size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *want = malloc(size), *got = malloc(size);
    assert_true(ubuf != MAP_FAILED && want && got);
    assert_int_equal(mc_te_register(te, ubuf, 2 * size, "cpu:0"), 0);

    assert_int_equal(mc_store_setup_with_engine(e, te, 16u << 20, 16u << 20, "tcp", g_master_addr),
                     0);
    char ename[256];
    assert_int_equal(mc_store_get_hostname(e, ename, sizeof ename), 0);
    assert_string_equal(ename, mc_te_segment_name(te));
    assert_int_equal(mc_store_health_check(e), 0);
    /* Set up twice: refused. */
    assert_int_equal(mc_store_setup_with_engine(e, te, 0, 0, "tcp", g_master_addr),
                     MC_ERR_INVALID_PARAMS);

    /* e -> B's segment from the engine-registered buffer, read back by B. */
    th_pattern(ubuf, size, rand_seed());
    memcpy(want, ubuf, size);
    mc_store_config_t cfg;
    const char *pref = g_b_name;
    cfg_prefer(&cfg, &pref);
    assert_int_equal(mc_store_put_from(e, "eng/e2b", ubuf, size, &cfg), 0);
    assert_int_equal(mc_store_get_into(g_b, "eng/e2b", got, size), (int64_t)size);
    assert_memory_equal(got, want, size);
    /* A -> e's segment (the engine's), read by e into the engine-registered buffer. */
    pref = ename;
    th_pattern(want, size, rand_seed());
    assert_int_equal(mc_store_put(g_a, "eng/a2e", want, size, &cfg), 0);
    mc_store_replica_desc_t *rd = NULL;
    size_t nrd = 0;
    assert_int_equal(mc_store_get_replica_desc(g_a, "eng/a2e", &rd, &nrd), 0);
    assert_int_equal(nrd, 1);
    assert_string_equal(rd[0].endpoint, ename);
    free(rd);
    memset(ubuf + size, 0, size);
    assert_int_equal(mc_store_get_into(e, "eng/a2e", ubuf + size, size), (int64_t)size);
    assert_memory_equal(ubuf + size, want, size);
    memset(got, 0, size);
    assert_int_equal(mc_store_get_into(g_b, "eng/a2e", got, size), (int64_t)size);
    assert_memory_equal(got, want, size);
    /* The staging path (put/get of unregistered memory) on the shared engine. */
    assert_int_equal(mc_store_put(e, "eng/staged", want, 1000, NULL), 0);
    void *v = NULL;
    size_t vlen = 0;
    assert_int_equal(mc_store_get(g_a, "eng/staged", &v, &vlen), 0);
    assert_int_equal(vlen, 1000);
    assert_memory_equal(v, want, 1000);
    free(v);

    /* Close: the engine lives on and still moves bytes (read B's replica of
     * eng/e2b by address); its segment is unmounted, so e's objects are gone. */
    assert_int_equal(mc_store_close(e), 0);
    assert_int_equal(mc_store_is_exist(g_a, "eng/a2e"), 0);
    assert_int_equal(mc_store_get_replica_desc(g_a, "eng/e2b", &rd, &nrd), 0);
    assert_int_equal(nrd, 1);
    int32_t h = -1;
    assert_int_equal(mc_te_open_segment(te, rd[0].endpoint, &h), 0);
    memset(ubuf, 0, size);
    mc_te_request_t rq = {.opcode = MC_TE_READ,
                          .source = ubuf,
                          .target_id = h,
                          .target_offset = rd[0].addr,
                          .length = size};
    free(rd);
    /* The read is re-checked against B's bytes below (lease not needed:
     * nothing removes eng/e2b meanwhile). */
    assert_int_equal(mc_te_transfer_sync(te, &rq, 1), 0);
    memset(got, 0, size);
    assert_int_equal(mc_store_get_into(g_b, "eng/e2b", got, size), (int64_t)size);
    assert_memory_equal(ubuf, got, size);
    /* A second store on the same engine: close unregistered the first one's memory. */
    assert_int_equal(mc_store_setup_with_engine(e, te, 16u << 20, 16u << 20, NULL, g_master_addr),
                     0);
    assert_int_equal(mc_store_put_from(e, "eng/again", ubuf, 4096, NULL), 0);
    assert_int_equal(mc_store_get_into(g_a, "eng/again", got, 4096), 4096);
    assert_memory_equal(got, ubuf, 4096);
    mc_store_destroy(e); /* closes; the engine is still the test's */
    assert_int_equal(mc_te_unregister(te, ubuf), 0);
    mc_te_destroy(te);
    munmap(ubuf, 2 * size);
    free(want);
    free(got);
}

static void test_remove_all_regex(void **state)
{
    (void)state;
    char val[100];
    th_pattern(val, sizeof val, 3);
    const char *keys[] = {"rx/a1", "rx/a2", "ry/b"};
    for (int i = 0; i < 3; i++)
        assert_int_equal(mc_store_put(g_a, keys[i], val, sizeof val, NULL), 0);
    assert_int_equal(mc_store_remove_by_regex(g_b, "^rx/", 0), 2);
    assert_int_equal(mc_store_is_exist(g_b, "rx/a1"), 0);
    assert_int_equal(mc_store_is_exist(g_b, "ry/b"), 1);
    assert_true(mc_store_remove_by_regex(g_b, "(", 0) < 0);
    /* remove_all with force takes everything, leases or not. */
    int64_t n = mc_store_remove_all(g_a, 1);
    assert_true(n >= 1);
    assert_int_equal(mc_store_is_exist(g_b, "ry/b"), 0);
    assert_int_equal(mc_store_is_exist(g_b, "sizes/ab/1"), 0);
    assert_int_equal(mc_store_remove_all(g_a, 0), 0);
}

static void test_no_space(void **state)
{
    (void)state;
    size_t size = SEG_SIZE + 4096;
    char *big = malloc(size);
    assert_non_null(big);
    memset(big, 1, size);
    int rc = mc_store_put_from(g_a, "big/1", big, size, NULL);
    /* Larger than any segment: bad input (INVALID_PARAMS), as the issue says. */
    assert_int_equal(rc, MC_ERR_INVALID_PARAMS);
    assert_int_equal(mc_store_is_exist(g_a, "big/1"), 0);
    /* Staged put over the local buffer: INVALID_PARAMS. */
    assert_int_equal(mc_store_put(g_a, "big/2", big, LBUF_SIZE + 1, NULL), MC_ERR_INVALID_PARAMS);
    free(big);
}

/* ---- memory pressure: eviction makes room and puts keep succeeding ---- */

static void test_eviction(void **state)
{
    (void)state;
    /* 3x the pool (two 128 MiB segments) in 4 MiB objects: every put must
     * succeed because older, unleased objects are evicted to make room. */
    enum { N = 192 };
    const size_t size = 4u << 20;
    char *val = malloc(size), *got = malloc(size);
    assert_non_null(val);
    assert_non_null(got);
    for (unsigned i = 0; i < N; i++) {
        char key[32];
        snprintf(key, sizeof key, "ev/%u", i);
        th_pattern(val, size, 1000 + i);
        int rc = mc_store_put(i & 1 ? g_b : g_a, key, val, size, NULL);
        if (rc) fail_msg("put %s under memory pressure: %d", key, rc);
    }
    unsigned present = 0;
    for (unsigned i = 0; i < N; i++) {
        char key[32];
        snprintf(key, sizeof key, "ev/%u", i);
        int64_t n = mc_store_get_into(g_a, key, got, size);
        if (n == MC_ERR_OBJECT_NOT_FOUND) continue;
        assert_int_equal(n, (int64_t)size);
        th_pattern(val, size, 1000 + i);
        assert_memory_equal(got, val, size); /* what survived is exactly what was put */
        present++;
    }
    assert_true(present > 0);
    assert_true(present < N); /* it cannot all fit: something was evicted */
    char key[32];
    snprintf(key, sizeof key, "ev/%u", N - 1);
    assert_int_equal(mc_store_is_exist(g_b, key), 1); /* the newest object survived */
    assert_true(mc_store_remove_all(g_a, 1) >= (int64_t)present);
    free(val);
    free(got);
}

/* ---- concurrent writers and readers under a checker ---- */

/* Every key's value is a function of the key (size and bytes), so a checker
 * needs no shared state: any successful get must return exactly those bytes. */
static size_t mt_size(unsigned k)
{
    return 1 + (size_t)((k * 2654435761u) % (256u << 10));
}

typedef struct {
    int id;
    int fails; /* bytes that did not match, or unexpected errors */
    int gets_ok;
} mt_arg_t;

static void *mt_main(void *p)
{
    mt_arg_t *a = p;
    mc_store_t *s = (a->id & 1) ? g_b : g_a;
    char *val = malloc(256u << 10), *got = malloc(256u << 10);
    uint64_t r = (uint64_t)a->id * 0x9E3779B97F4A7C15ull + 1;
    for (int i = 0; i < 300 && val && got; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        unsigned k = (unsigned)(r % 40);
        char key[32];
        snprintf(key, sizeof key, "mt/%u", k);
        size_t size = mt_size(k);
        int op = (int)((r >> 20) % 8);
        if (op < 3) {
            th_pattern(val, size, k);
            int rc = mc_store_put(s, key, val, size, NULL);
            if (rc && rc != MC_ERR_OBJECT_HAS_LEASE && rc != MC_ERR_REPLICA_IS_NOT_READY) {
                fprintf(stderr, "mt put %s: %d\n", key, rc);
                a->fails++;
            }
        } else if (op < 7) {
            int64_t n = mc_store_get_into(s, key, got, 256u << 10);
            if (n >= 0) {
                th_pattern(val, size, k);
                if ((size_t)n != size || memcmp(got, val, size) != 0)
                    a->fails++;
                else
                    a->gets_ok++;
            } else if (n != MC_ERR_OBJECT_NOT_FOUND && n != MC_ERR_REPLICA_IS_NOT_READY &&
                       n != MC_ERR_LEASE_EXPIRED) {
                fprintf(stderr, "mt get %s: %lld\n", key, (long long)n);
                a->fails++;
            }
        } else {
            int rc = mc_store_remove(s, key, 0);
            if (rc && rc != MC_ERR_OBJECT_NOT_FOUND && rc != MC_ERR_OBJECT_HAS_LEASE &&
                rc != MC_ERR_REPLICA_IS_NOT_READY) {
                fprintf(stderr, "mt remove %s: %d\n", key, rc);
                a->fails++;
            }
        }
    }
    free(val);
    free(got);
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    enum { T = 6 };
    pthread_t th[T];
    mt_arg_t args[T];
    for (int i = 0; i < T; i++) {
        args[i] = (mt_arg_t){.id = i};
        assert_int_equal(pthread_create(&th[i], NULL, mt_main, &args[i]), 0);
    }
    int ok = 0;
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].fails, 0);
        ok += args[i].gets_ok;
    }
    fprintf(stderr, "concurrent: %d verified gets\n", ok);
    assert_true(ok > 0);
    assert_true(mc_store_remove_all(g_a, 1) >= 0);
}

static int key_gone(void *key)
{
    return mc_store_is_exist(g_a, key) == 0;
}

static void test_killed_store(void **state)
{
    (void)state;
    char path[1024], segs[32], line[512];
    assert_int_equal(th_bin_path(path, sizeof path, "store_test_peer"), 0);
    snprintf(segs, sizeof segs, "%llu", (unsigned long long)SEG_SIZE);
    char *argv[] = {path, g_master_addr, g_meta_url, segs, NULL};
    th_proc_t p;
    assert_int_equal(th_spawn(&p, path, argv), 0);
    assert_int_equal(th_read_line(&p, line, sizeof line, 15000), 0);
    assert_int_equal(strncmp(line, "READY ", 6), 0);
    char pname[512];
    snprintf(pname, sizeof pname, "%s", line + 6);
    assert_int_equal(th_cmd(&p, line, sizeof line, 30000, "PUT kill/p 100000 5 %s", pname), 0);
    assert_string_equal(line, "RC 0");
    char val[100];
    th_pattern(val, sizeof val, 9);
    mc_store_config_t cfg; /* in A's segment: random placement could pick the peer's */
    const char *pref = g_a_name;
    cfg_prefer(&cfg, &pref);
    assert_int_equal(mc_store_put(g_a, "kill/a", val, sizeof val, &cfg), 0);
    char *got = malloc(100000), *want = malloc(100000);
    th_pattern(want, 100000, 5);
    assert_int_equal(mc_store_get_into(g_b, "kill/p", got, 100000), 100000);
    assert_memory_equal(got, want, 100000);

    uint64_t t0 = now_ms();
    assert_int_equal(th_signal(&p, SIGKILL), 0);
    assert_true(wait_for(key_gone, "kill/p", (CLIENT_TTL_S + 3) * 1000));
    fprintf(stderr, "objects of the killed store gone after %llu ms\n",
            (unsigned long long)(now_ms() - t0));
    assert_int_equal(mc_store_get_into(g_b, "kill/p", got, 100000), MC_ERR_OBJECT_NOT_FOUND);
    /* Others' objects intact, the master still serving. */
    assert_int_equal(mc_store_get_into(g_b, "kill/a", got, 100000), (int64_t)sizeof val);
    assert_memory_equal(got, val, sizeof val);
    free(got);
    free(want);
}

static int put_works(void *arg)
{
    (void)arg;
    char val[256];
    th_pattern(val, sizeof val, 13);
    return mc_store_put(g_a, "restart/probe", val, sizeof val, NULL) == 0 &&
           mc_store_health_check(g_a) == 0 && mc_store_health_check(g_b) == 0;
}

static int master_down(void *arg)
{
    (void)arg;
    return mc_store_health_check(g_a) == 2;
}

static void test_master_restart(void **state)
{
    (void)state;
    uint16_t rpc = g_rpc_port, meta = g_meta_port;
    assert_int_equal(th_signal(&g_master, SIGKILL), 0);
    /* The next heartbeat fails: health_check reports the master unreachable,
     * and operations fail with an RPC error instead of hanging. */
    assert_true(wait_for(master_down, NULL, 5000));
    char v[8] = "x";
    int prc = mc_store_put(g_b, "restart/down", v, 1, NULL);
    assert_true(prc == MC_ERR_RPC_FAIL || prc == MC_ERR_RPC_TIMEOUT);
    /* The ports may need a moment to be free again: retry the start. */
    int rc = -1;
    for (int i = 0; i < 50 && rc; i++) {
        rc = master_start(rpc, meta);
        if (rc) {
            th_finish(&g_master, 2000);
            poll_pause();
        }
    }
    assert_int_equal(rc, 0);
    assert_int_equal(g_rpc_port, rpc);
    /* The stores notice (NEED_REMOUNT) and remount by themselves. */
    assert_true(wait_for(put_works, NULL, 15000));
    put_get_between(g_a, g_b, g_b_name, 1u << 20, "restart/ab");
    put_get_between(g_b, g_a, g_a_name, 4096, "restart/ba");
    /* A store started after the restart finds A's segment (re-published). */
    mc_store_t *c;
    assert_int_equal(store_new(&c, 0, NULL, 0), 0);
    char *got = malloc(1u << 20);
    assert_int_equal(mc_store_get_into(c, "restart/ab", got, 1u << 20), 1 << 20);
    const char *pref = g_a_name;
    mc_store_config_t cfg;
    cfg_prefer(&cfg, &pref);
    assert_int_equal(mc_store_put(g_b, "restart/a2", got, 1u << 20, &cfg), 0);
    char *got2 = malloc(1u << 20);
    assert_int_equal(mc_store_get_into(c, "restart/a2", got2, 1u << 20), 1 << 20);
    assert_memory_equal(got, got2, 1u << 20);
    free(got);
    free(got2);
    assert_int_equal(mc_store_close(c), 0);
    mc_store_destroy(c);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    snprintf(g_persist_dir, sizeof g_persist_dir, "/tmp/mc_test_store.XXXXXX");
    if (!mkdtemp(g_persist_dir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_put_get_sizes),
        cmocka_unit_test(test_tcp_peer),
        cmocka_unit_test(test_zero_copy),
        cmocka_unit_test(test_exist_size_remove_lease),
        cmocka_unit_test(test_replicas),
        cmocka_unit_test(test_p2p),
        cmocka_unit_test(test_shared_engine),
        cmocka_unit_test(test_remove_all_regex),
        cmocka_unit_test(test_no_space),
        cmocka_unit_test(test_eviction),
        cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_killed_store),
        cmocka_unit_test(test_master_restart),
    };
    int rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_persist_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_persist_dir);
    return rc;
}
