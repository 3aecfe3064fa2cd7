/* test_te_rdma.c: what only the rdma transport has, over libfabric's software
 * provider (FI_PROVIDER=tcp, set by ctest): slices striped over two NICs (two
 * domains on "lo", in this process and in the target te_test_peer), checked
 * byte for byte and per NIC; a domain registration that fails
 * (MC_TE_RDMA_FAIL_REG); the FI_MR_LOCAL path (MC_TE_RDMA_MR_LOCAL: sources
 * registered for the piece); a target killed mid-transfer; and the protocol
 * strings: unknown refused, "rdma" without a device or without libfabric runs
 * tcp. No sleeps: readiness is a line on a pipe, every wait has a deadline. */
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <xxhash.h>

#include "mooncake/te.h"
#include "te_harness.h"
#include "te_int.h"

#define MIB (1ull << 20)
#define T_MS 20000
#define PEER_SIZE (72 * MIB)
#define LEN (64 * MIB + 4093)

static th_proc_t metasrv;
static char meta_url[128];
static th_peer_t peer;
static unsigned char *lbuf, *lbuf2;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static mc_te_t *engine(const char *name, const char *protocol, const char *devices, int want_rc)
{
    mc_te_t *te = NULL;
    assert_int_equal(mc_te_create(&te), 0);
    int rc = mc_te_init(te, name, meta_url, protocol, devices);
    assert_int_equal(rc, want_rc);
    if (rc) {
        mc_te_destroy(te);
        return NULL;
    }
    return te;
}

static uint64_t peer_hash(th_peer_t *p, uint64_t off, uint64_t len)
{
    char r[128];
    assert_int_equal(th_cmd(&p->proc, r, sizeof r, T_MS, "HASH %" PRIu64 " %" PRIu64, off, len), 0);
    return strtoull(r, NULL, 16);
}

static int xfer(mc_te_t *te, int op, void *local, int32_t h, uint64_t remote, uint64_t len)
{
    mc_te_request_t r = {op, local, h, remote, len};
    return mc_te_transfer_sync(te, &r, 1);
}

/* WRITE a pattern, compare the target's hash, READ it back into lbuf2. */
static void round_trip(mc_te_t *te, int32_t h, uint64_t seed, size_t lofs, uint64_t roff,
                       uint64_t len)
{
    th_pattern(lbuf + lofs, len, seed);
    assert_int_equal(xfer(te, MC_TE_WRITE, lbuf + lofs, h, peer.addr + roff, len), 0);
    assert_int_equal(peer_hash(&peer, roff, len), XXH3_64bits(lbuf + lofs, len));
    memset(lbuf2, 0x5A, len + 2);
    assert_int_equal(xfer(te, MC_TE_READ, lbuf2 + 1, h, peer.addr + roff, len), 0);
    assert_memory_equal(lbuf2 + 1, lbuf + lofs, len);
    assert_int_equal(lbuf2[0], 0x5A);
    assert_int_equal(lbuf2[len + 1], 0x5A);
}

/* Two NICs (two domains on lo) here and in the target: every NIC carries a
 * fair share of the slices, and the bytes are exact. */
static void test_two_nics(void **state)
{
    (void)state;
    mc_te_t *te = engine("rdma-two-nics", "rdma", "lo,lo", 0);
    uint64_t before[2] = {0, 0}, after[2] = {0, 0};
    assert_int_equal(mc__te_rdma_nic_bytes(te, before, 2), 2);
    int32_t h;
    assert_int_equal(mc_te_open_segment(te, peer.segment, &h), 0);
    assert_string_equal(mc_te_segment_transport(te, h), "rdma");
    round_trip(te, h, 11, 3, 5, LEN);
    assert_int_equal(mc__te_rdma_nic_bytes(te, after, 2), 2);
    uint64_t n0 = after[0] - before[0], n1 = after[1] - before[1];
    printf("# NIC bytes: %" PRIu64 " + %" PRIu64 "\n", n0, n1);
    assert_true(n0 + n1 == 2 * (uint64_t)LEN); /* the WRITE and the READ, nothing else */
    assert_true(n0 >= (n0 + n1) / 4 && n1 >= (n0 + n1) / 4);
    /* many small pieces in one batch (one set of slices) spread too */
    mc_te_request_t r[64];
    for (size_t i = 0; i < 64; i++) {
        th_pattern(lbuf + i * 8192, 5000, 100 + i);
        r[i] = (mc_te_request_t){MC_TE_WRITE, lbuf + i * 8192, h, peer.addr + 1 + i * 8192, 5000};
    }
    assert_int_equal(mc_te_transfer_sync(te, r, 64), 0);
    for (size_t i = 0; i < 64; i += 9)
        assert_int_equal(peer_hash(&peer, 1 + i * 8192, 5000), XXH3_64bits(lbuf + i * 8192, 5000));
    mc_te_destroy(te);
}

/* A registration that the second NIC refuses fails as a whole: nothing stays
 * registered or published; the same range registers once it works again. */
static void test_registration_fails(void **state)
{
    (void)state;
    mc_te_t *te = engine("rdma-reg-fail", "rdma", "lo,lo", 0);
    unsigned char *a = lbuf, *b = lbuf + 8 * MIB;
    setenv("MC_TE_RDMA_FAIL_REG", "1", 1);
    assert_int_equal(mc_te_register(te, a, MIB, "cpu:0"), MC_TE_ERR_MEMORY);
    unsetenv("MC_TE_RDMA_FAIL_REG");
    assert_int_equal(mc_te_is_registered(te, a, 1), 0);
    assert_int_equal(mc_te_unregister(te, a), MC_TE_ERR_ADDRESS_NOT_REGISTERED);
    /* a batch stops at the failing one; those before it stay */
    assert_int_equal(mc_te_register(te, a, MIB, "cpu:0"), 0);
    void *addrs[2] = {b, b + 2 * MIB};
    size_t lens[2] = {MIB, MIB};
    assert_int_equal(mc_te_unregister(te, a), 0);
    setenv("MC_TE_RDMA_FAIL_REG", "0", 1);
    assert_int_equal(mc_te_register_batch(te, addrs, lens, 2, "cpu:0"), MC_TE_ERR_MEMORY);
    unsetenv("MC_TE_RDMA_FAIL_REG");
    assert_int_equal(mc_te_is_registered(te, b, 1), 0);
    assert_int_equal(mc_te_register_batch(te, addrs, lens, 2, "cpu:0"), 0);
    assert_int_equal(mc_te_is_registered(te, b + 2 * MIB, MIB), 1);
    /* the registered buffer serves as a source (its own keys) */
    int32_t h;
    assert_int_equal(mc_te_open_segment(te, peer.segment, &h), 0);
    th_pattern(b, MIB, 77);
    assert_int_equal(xfer(te, MC_TE_WRITE, b, h, peer.addr + 100, MIB), 0);
    assert_int_equal(peer_hash(&peer, 100, MIB), XXH3_64bits(b, MIB));
    assert_int_equal(mc_te_unregister_batch(te, addrs, 2), 0);
    mc_te_destroy(te);
}

/* Providers that need local registrations (verbs: FI_MR_LOCAL): sources in
 * registered buffers use theirs, others are registered for the piece. */
static void test_mr_local(void **state)
{
    (void)state;
    setenv("MC_TE_RDMA_MR_LOCAL", "1", 1);
    mc_te_t *te = engine("rdma-mr-local", "rdma", "lo,lo", 0);
    unsetenv("MC_TE_RDMA_MR_LOCAL");
    int32_t h;
    assert_int_equal(mc_te_open_segment(te, peer.segment, &h), 0);
    round_trip(te, h, 21, 1, 7, 3 * MIB + 5); /* unregistered source and sink */
    assert_int_equal(mc_te_register(te, lbuf, 8 * MIB, "cpu:0"), 0);
    round_trip(te, h, 22, 0, 9, 5 * MIB);
    assert_int_equal(mc_te_unregister(te, lbuf), 0);
    mc_te_destroy(te);
}

/* A target killed while 32 x 8 MiB READs run: the batch settles FAILED well
 * inside 10 s (its listener is gone, so no slice waits for the I/O
 * timeout), later transfers to it fail quickly, another peer still works. */
static void test_peer_killed(void **state)
{
    (void)state;
    enum { N = 32 };
    mc_te_t *te = engine("rdma-kill", "rdma", "lo,lo", 0);
    th_peer_t v;
    assert_int_equal(th_peer_start(&v, "rdma-victim", meta_url, N * 2 * MIB, T_MS), 0);
    int32_t h, ha;
    assert_int_equal(mc_te_open_segment(te, v.segment, &h), 0);
    assert_int_equal(mc_te_open_segment(te, peer.segment, &ha), 0);
    mc_te_request_t r[N];
    for (int i = 0; i < N; i++)
        r[i] = (mc_te_request_t){MC_TE_READ, lbuf, h, v.addr + (uint64_t)i * 2 * MIB, 2 * MIB};
    assert_int_equal(xfer(te, MC_TE_READ, lbuf, h, v.addr, 4096), 0); /* it works before */
    assert_int_equal(th_signal(&v.proc, SIGSTOP), 0); /* nothing completes after this */
    uint64_t b;
    assert_int_equal(mc_te_batch_alloc(te, N, &b), 0);
    assert_int_equal(mc_te_batch_submit(te, b, r, N), 0);
    assert_int_equal(th_signal(&v.proc, SIGKILL), 0);
    int64_t t0 = now_ms();
    mc_te_status_t st;
    assert_int_equal(mc_te_batch_wait(te, b, 10000, &st), 0);
    int64_t took = now_ms() - t0;
    printf("# settled in %" PRId64 " ms\n", took);
    assert_int_equal(st, MC_TE_FAILED);
    for (int i = 0; i < N; i++) {
        mc_te_status_t ts;
        assert_int_equal(mc_te_task_status(te, b, (size_t)i, &ts, NULL), 0);
        assert_true(ts == MC_TE_FAILED || ts == MC_TE_COMPLETED);
    }
    assert_int_equal(mc_te_batch_free(te, b), 0);
    t0 = now_ms();
    assert_int_not_equal(xfer(te, MC_TE_WRITE, lbuf, h, v.addr, 4096), 0);
    assert_true(now_ms() - t0 < 5000);
    round_trip(te, ha, 31, 0, 0, 2 * MIB + 1);
    mc_te_destroy(te);
}

/* Protocol strings: unknown refused; "rdma" with a device that is not there,
 * or without libfabric, is tcp (one warning); the descriptor says so. */
static void test_protocol_strings(void **state)
{
    (void)state;
    mc_te_t *te;
    assert_null(engine("rdma-bogus", "bogus", NULL, MC_TE_ERR_INVALID_ARGUMENT));
    assert_null(engine("rdma-shm", "shm", NULL, MC_TE_ERR_INVALID_ARGUMENT));
    setenv("MC_FORCE_TCP", "1", 1); /* the peer is on this host: not shm */
    te = engine("rdma-nodev", "rdma", "erdma_0", 0);
    unsetenv("MC_FORCE_TCP");
    int32_t h;
    assert_int_equal(mc_te_open_segment(te, peer.segment, &h), 0);
    assert_string_equal(mc_te_segment_transport(te, h), "tcp");
    round_trip(te, h, 41, 0, 3, 65536);
    mc_te_destroy(te);
    /* (without libfabric: tests/py case_protocol_strings, in a fresh process,
     * since the library is loaded once per process) */
    /* without FI_PROVIDER the software provider is never chosen */
    char *fp = getenv("FI_PROVIDER") ? strdup(getenv("FI_PROVIDER")) : NULL;
    unsetenv("FI_PROVIDER");
    te = engine("rdma-nosw", "rdma", NULL, 0);
    assert_int_equal(mc__te_rdma_nic_bytes(te, NULL, 0), 0);
    mc_te_destroy(te);
    if (fp) setenv("FI_PROVIDER", fp, 1), free(fp);
}

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    setenv("MC_TCP_BIND_ADDRESS", "127.0.0.1", 1);
    setenv("MC_TEST_PROTOCOL", "rdma", 1); /* te_test_peer: rdma on two NICs */
    setenv("MC_TEST_RDMA_DEVICES", "lo,lo", 1);
    uint16_t port;
    if (th_metasrv_start(&metasrv, &port, T_MS)) return -1;
    snprintf(meta_url, sizeof meta_url, "http://127.0.0.1:%u/metadata", port);
    if (th_peer_start(&peer, "rdma-peer", meta_url, PEER_SIZE, T_MS)) goto fail;
    lbuf = malloc(PEER_SIZE);
    lbuf2 = malloc(PEER_SIZE);
    if (!lbuf || !lbuf2) goto fail;
    return 0;
fail:
    th_reap_all();
    return -1;
}

static int teardown(void **state)
{
    (void)state;
    int ok = th_finish(&peer.proc, T_MS) == 0;
    th_signal(&metasrv, SIGTERM);
    ok &= th_finish(&metasrv, T_MS) == 0;
    th_reap_all();
    free(lbuf);
    free(lbuf2);
    return ok ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_nics),     cmocka_unit_test(test_registration_fails),
        cmocka_unit_test(test_mr_local),     cmocka_unit_test(test_peer_killed),
        cmocka_unit_test(test_protocol_strings),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
