/* test_te_transfer.c: the transfer engine across real processes on 127.0.0.1.
 * The test process is the initiator (engines in this process); te_test_peer
 * processes are the targets, driven over their stdin/stdout; a real
 * mooncake_http_metadata_server holds the records. Checked byte for byte:
 * tcp (MC_FORCE_TCP=1) and same-host shm transfers of random sizes from 1 B to
 * 64 MiB at unaligned addresses, 8 threads on one engine, bounds checks through
 * the API and as raw frames on the peer's listener, peers killed mid-transfer,
 * descriptor refresh after re-registration, P2PHANDSHAKE, notifications.
 * No sleeps as synchronisation: readiness is a line on a pipe, every wait has a
 * deadline, every child is reaped (th_reap_all in the group teardown).
 * MC_TEST_SEED=<n> replays a run's random sizes and offsets. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <xxhash.h>

#include "mooncake/meta.h"
#include "mooncake/te.h"
#include "net_sock.h"
#include "te_harness.h"

#define MIB (1ull << 20)
#define T_MS 20000           /* deadline for one peer command or start-up */
#define PEER_SIZE (80 * MIB) /* main buffer of peer A */
#define LOCAL_SIZE (64 * MIB + 4096)
#define WIRE_MS 5000 /* deadline for one raw-socket exchange */

static th_proc_t metasrv;
static char meta_url[128];
static th_peer_t peer_a;
static mc_te_t *te_tcp, *te_shm;
static int32_t a_tcp, a_shm; /* peer A's handle in each engine */
static unsigned char *lbuf, *lbuf2;
static uint64_t rng;

static uint64_t rnd(void)
{
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* An initiator engine; force_tcp sets MC_FORCE_TCP=1 for its init only. */
static mc_te_t *engine(const char *name, const char *conn, int force_tcp)
{
    mc_te_t *te = NULL;
    if (mc_te_create(&te)) return NULL;
    if (force_tcp) setenv("MC_FORCE_TCP", "1", 1);
    int rc = mc_te_init(te, name, conn, force_tcp ? th_protocol() : "tcp", NULL);
    unsetenv("MC_FORCE_TCP");
    if (rc) {
        fprintf(stderr, "engine %s: %s\n", name, mc_te_strerror(rc));
        mc_te_destroy(te);
        return NULL;
    }
    return te;
}

/* ---- peer commands ---- */

static void peer_cmd(th_peer_t *p, char *reply, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void peer_cmd(th_peer_t *p, char *reply, size_t cap, const char *fmt, ...)
{
    char cmd[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = th_cmd(&p->proc, reply, cap, T_MS, "%s", cmd);
    if (rc) fail_msg("peer %s: '%s': %s", p->segment, cmd, strerror(-rc));
    if (!strncmp(reply, "ERR", 3)) fail_msg("peer %s: '%s': %s", p->segment, cmd, reply);
}

static void peer_fill(th_peer_t *p, uint64_t seed, uint64_t off, uint64_t len)
{
    char r[128];
    peer_cmd(p, r, sizeof r, "FILL %" PRIu64 " %" PRIu64 " %" PRIu64, seed, off, len);
    assert_string_equal(r, "OK");
}

static uint64_t peer_hash(th_peer_t *p, uint64_t off, uint64_t len)
{
    char r[128];
    peer_cmd(p, r, sizeof r, "HASH %" PRIu64 " %" PRIu64, off, len);
    return strtoull(r, NULL, 16);
}

/* ---- transfers ---- */

static int xfer(mc_te_t *te, int op, void *local, int32_t h, uint64_t remote, uint64_t len)
{
    mc_te_request_t r = {op, local, h, remote, len};
    return mc_te_transfer_sync(te, &r, 1);
}

/* WRITE a fresh pattern from local+lofs to peer offset roff, then compare the
 * peer's XXH3 of the range with ours. */
static void write_and_verify(mc_te_t *te, int32_t h, th_peer_t *p, size_t lofs, uint64_t roff,
                             uint64_t len)
{
    uint64_t seed = rnd();
    th_pattern(lbuf + lofs, len, seed);
    int rc = xfer(te, MC_TE_WRITE, lbuf + lofs, h, p->addr + roff, len);
    if (rc) fail_msg("WRITE %" PRIu64 " B at +%" PRIu64 ": %s", len, roff, mc_te_strerror(rc));
    uint64_t want = XXH3_64bits(lbuf + lofs, len);
    uint64_t got = peer_hash(p, roff, len);
    if (got != want)
        fail_msg("WRITE %" PRIu64 " B (local +%zu, remote +%" PRIu64 "): peer hash %016" PRIx64
                 " != %016" PRIx64,
                 len, lofs, roff, got, want);
}

/* The peer FILLs [roff, roff+len); we READ it into lbuf2+lofs (guard bytes
 * around it) and compare with the locally generated pattern byte for byte. */
static void fill_and_read(mc_te_t *te, int32_t h, th_peer_t *p, size_t lofs, uint64_t roff,
                          uint64_t len)
{
    uint64_t seed = rnd();
    peer_fill(p, seed, roff, len);
    size_t g0 = lofs < 16 ? lofs : 16;
    memset(lbuf2 + lofs - g0, 0xA5, len + g0 + 16);
    int rc = xfer(te, MC_TE_READ, lbuf2 + lofs, h, p->addr + roff, len);
    if (rc) fail_msg("READ %" PRIu64 " B at +%" PRIu64 ": %s", len, roff, mc_te_strerror(rc));
    th_pattern(lbuf + lofs, len, seed);
    if (memcmp(lbuf + lofs, lbuf2 + lofs, len)) {
        size_t i = 0;
        while (lbuf[lofs + i] == lbuf2[lofs + i])
            i++;
        fail_msg("READ %" PRIu64 " B (local +%zu, remote +%" PRIu64 "): first difference at %zu",
                 len, lofs, roff, i);
    }
    for (size_t i = 0; i < g0; i++)
        assert_int_equal(lbuf2[lofs - g0 + i], 0xA5);
    for (size_t i = 0; i < 16; i++)
        assert_int_equal(lbuf2[lofs + len + i], 0xA5);
}

static void transfers(mc_te_t *te, int32_t h, const char *transport)
{
    assert_string_equal(mc_te_segment_transport(te, h), transport);
    uint64_t sizes[18] = {1,       2, 7, 4095, 4097, 65537, MIB + 3, 4 * MIB + 13, 17 * MIB + 5,
                          64 * MIB};
    for (int i = 10; i < 18; i++) { /* log-uniform in [1, 64 MiB] */
        uint64_t bits = rnd() % 27;
        sizes[i] = 1 + rnd() % (1ull << bits);
    }
    for (int i = 0; i < 18; i++) {
        uint64_t len = sizes[i];
        size_t lofs = (size_t)(1 + rnd() % 63);
        uint64_t roff = rnd() % (PEER_SIZE - len + 1);
        write_and_verify(te, h, &peer_a, lofs, roff, len);
        lofs = (size_t)(1 + rnd() % 63);
        roff = rnd() % (PEER_SIZE - len + 1);
        fill_and_read(te, h, &peer_a, lofs, roff, len);
    }
    /* zero-length requests complete, alone and in a batch */
    assert_int_equal(xfer(te, MC_TE_WRITE, lbuf, h, peer_a.addr, 0), 0);
    assert_int_equal(xfer(te, MC_TE_READ, lbuf, h, peer_a.addr + 5, 0), 0);
    uint64_t b;
    mc_te_status_t st;
    mc_te_request_t zr[2] = {{MC_TE_READ, lbuf, h, peer_a.addr, 0},
                             {MC_TE_WRITE, lbuf + 1, h, peer_a.addr + 1, 0}};
    assert_int_equal(mc_te_batch_alloc(te, 2, &b), 0);
    assert_int_equal(mc_te_batch_submit(te, b, zr, 2), 0);
    assert_int_equal(mc_te_batch_wait(te, b, T_MS, &st), 0);
    assert_int_equal(st, MC_TE_COMPLETED);
    assert_int_equal(mc_te_batch_free(te, b), 0);
    assert_string_equal(mc_te_segment_transport(te, h), transport); /* no silent fallback */
}

/* ---- batches of small pieces: grouped into one copy per peer (shm), and
 * run on the calling thread (mc_te_batch_run) or by the workers ---- */

#define SB_N 40
#define SB_STRIDE 8192

/* Runs n requests in one batch (run: on this thread) and returns the batch
 * status; each task's status goes to ts[]. */
static mc_te_status_t sb_batch(mc_te_t *te, const mc_te_request_t *r, size_t n, int run,
                               mc_te_status_t *ts)
{
    uint64_t b;
    mc_te_status_t st;
    assert_int_equal(mc_te_batch_alloc(te, n, &b), 0);
    if (run) {
        assert_int_equal(mc_te_batch_run(te, b, r, n), 0);
        assert_int_equal(mc_te_batch_status(te, b, &st), 0);
        assert_int_not_equal(st, MC_TE_PENDING); /* one peer: done on return, tcp too */
    } else {
        assert_int_equal(mc_te_batch_submit(te, b, r, n), 0);
    }
    assert_int_equal(mc_te_batch_wait(te, b, T_MS, &st), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(mc_te_task_status(te, b, i, &ts[i], NULL), 0);
    assert_int_equal(mc_te_batch_free(te, b), 0);
    return st;
}

static void small_batches(mc_te_t *te, int32_t h)
{
    mc_te_request_t r[SB_N];
    mc_te_status_t ts[SB_N];
    /* a page this process may neither read nor write: a bad local pointer */
    void *bad = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(bad != MAP_FAILED);
    for (int run = 0; run < 2; run++) {
        uint64_t seed = rnd();
        for (size_t i = 0; i < SB_N; i++) {
            uint64_t len = 1 + (i * 997 + rnd()) % 6000;
            r[i] = (mc_te_request_t){MC_TE_WRITE, lbuf + 1 + i * SB_STRIDE, h,
                                     peer_a.addr + 3 + i * SB_STRIDE, len};
            th_pattern(r[i].source, len, seed + i);
        }
        assert_int_equal(sb_batch(te, r, SB_N, run, ts), MC_TE_COMPLETED);
        for (size_t i = 0; i < SB_N; i++)
            assert_int_equal(peer_hash(&peer_a, 3 + i * SB_STRIDE, r[i].length),
                             XXH3_64bits(r[i].source, r[i].length));
        /* READ them back into lbuf2; one task reads into the bad page and
         * fails alone, the others complete byte for byte */
        memset(lbuf2, 0xA5, SB_N * SB_STRIDE + 64);
        for (size_t i = 0; i < SB_N; i++)
            r[i] = (mc_te_request_t){MC_TE_READ, lbuf2 + 1 + i * SB_STRIDE, h,
                                     peer_a.addr + 3 + i * SB_STRIDE, r[i].length};
        size_t badi = 7 + (size_t)run * 20;
        r[badi].source = bad;
        if (r[badi].length > 4096) r[badi].length = 4096;
        assert_int_equal(sb_batch(te, r, SB_N, run, ts), MC_TE_FAILED);
        for (size_t i = 0; i < SB_N; i++) {
            assert_int_equal(ts[i], i == badi ? MC_TE_FAILED : MC_TE_COMPLETED);
            if (i == badi) continue;
            assert_memory_equal(lbuf2 + 1 + i * SB_STRIDE, lbuf + 1 + i * SB_STRIDE, r[i].length);
            assert_int_equal(lbuf2[1 + i * SB_STRIDE + r[i].length], 0xA5);
        }
        /* a range outside the peer's buffers in the middle fails alone too */
        r[badi] = (mc_te_request_t){MC_TE_WRITE, lbuf, h, peer_a.addr + peer_a.size - 10, 100};
        for (size_t i = 0; i < SB_N; i++) r[i].opcode = MC_TE_WRITE;
        assert_int_equal(sb_batch(te, r, SB_N, run, ts), MC_TE_FAILED);
        for (size_t i = 0; i < SB_N; i++)
            assert_int_equal(ts[i], i == badi ? MC_TE_FAILED : MC_TE_COMPLETED);
    }
    munmap(bad, 4096);
}

static void test_small_batches_tcp(void **state)
{
    (void)state;
    small_batches(te_tcp, a_tcp);
}

static void test_small_batches_shm(void **state)
{
    (void)state;
    small_batches(te_shm, a_shm);
    assert_string_equal(mc_te_segment_transport(te_shm, a_shm), "shm");
}

static void test_transfer_tcp(void **state)
{
    (void)state;
    transfers(te_tcp, a_tcp, th_net_transport());
}

static void test_transfer_shm(void **state)
{
    (void)state;
    transfers(te_shm, a_shm, "shm");
}

/* ---- many threads on one engine ---- */

#define NTHREADS 8
#define NSLOTS 8
#define NROUNDS 3

typedef struct {
    mc_te_t *te;
    int32_t h;
    uint64_t base; /* offset of this thread's region in peer A's buffer */
    uint64_t slot_off[NSLOTS + 1];
    uint64_t seed[NSLOTS], from[NSLOTS]; /* what each slot holds now: pattern(seed) at from */
    uint64_t wseed;
    unsigned char *local, *expect;
    char err[256];
} worker_t;

static void *worker(void *arg)
{
    worker_t *w = arg;
    for (int r = 0; r < NROUNDS && !w->err[0]; r++) {
        mc_te_request_t reqs[NSLOTS];
        uint64_t lofs[NSLOTS];
        for (int j = 0; j < NSLOTS; j++) {
            uint64_t len = w->slot_off[j + 1] - w->slot_off[j];
            lofs[j] = w->slot_off[j] + (uint64_t)j * 8 + (uint64_t)r + 1; /* unaligned */
            int op = (j + r) % 2 ? MC_TE_WRITE : MC_TE_READ;
            if (op == MC_TE_WRITE)
                th_pattern(w->local + lofs[j], len, w->wseed + (uint64_t)r);
            else
                memset(w->local + lofs[j], 0, len);
            reqs[j] = (mc_te_request_t){op, w->local + lofs[j], w->h,
                                        peer_a.addr + w->base + w->slot_off[j], len};
        }
        uint64_t b;
        mc_te_status_t st;
        int rc = mc_te_batch_alloc(w->te, NSLOTS, &b);
        if (!rc) rc = mc_te_batch_submit(w->te, b, reqs, NSLOTS / 2);
        if (!rc) rc = mc_te_batch_submit(w->te, b, reqs + NSLOTS / 2, NSLOTS / 2);
        if (!rc) rc = mc_te_batch_wait(w->te, b, T_MS, &st);
        if (rc) {
            snprintf(w->err, sizeof w->err, "round %d: %s", r, mc_te_strerror(rc));
            break;
        }
        if (st != MC_TE_COMPLETED)
            snprintf(w->err, sizeof w->err, "round %d: batch status %d", r, (int)st);
        for (int j = 0; j < NSLOTS && !w->err[0]; j++) {
            mc_te_status_t ts;
            uint64_t moved = 0;
            mc_te_task_status(w->te, b, (size_t)j, &ts, &moved);
            if (ts != MC_TE_COMPLETED || moved != reqs[j].length)
                snprintf(w->err, sizeof w->err,
                         "round %d task %d: status %d, %" PRIu64 " of %" PRIu64 " B", r, j, (int)ts,
                         moved, reqs[j].length);
        }
        if ((rc = mc_te_batch_free(w->te, b)) && !w->err[0])
            snprintf(w->err, sizeof w->err, "round %d: free: %s", r, mc_te_strerror(rc));
        for (int j = 0; j < NSLOTS && !w->err[0]; j++) {
            uint64_t len = reqs[j].length;
            if (reqs[j].opcode == MC_TE_WRITE) {
                w->seed[j] = w->wseed + (uint64_t)r, w->from[j] = 0;
                continue;
            }
            th_pattern_at(w->expect, len, w->seed[j], w->from[j]);
            if (memcmp(w->expect, w->local + lofs[j], len))
                snprintf(w->err, sizeof w->err, "round %d slot %d: READ bytes differ", r, j);
        }
    }
    return NULL;
}

static void threads(mc_te_t *te, int32_t h)
{
    static worker_t ws[NTHREADS];
    pthread_t tids[NTHREADS];
    uint64_t region = PEER_SIZE / NTHREADS;
    for (int i = 0; i < NTHREADS; i++) {
        worker_t *w = &ws[i];
        memset(w, 0, sizeof *w);
        w->te = te;
        w->h = h;
        w->base = (uint64_t)i * region;
        w->wseed = rnd();
        uint64_t fseed = rnd();
        peer_fill(&peer_a, fseed, w->base, region);
        w->slot_off[0] = 0;
        for (int j = 1; j < NSLOTS; j++) /* uneven slots: 1 B .. 1.25 MiB, the last one the rest */
            w->slot_off[j] = w->slot_off[j - 1] + 1 + rnd() % (region / NSLOTS * 2 - 1) / 2;
        w->slot_off[NSLOTS] = region;
        for (int j = 0; j < NSLOTS; j++)
            w->seed[j] = fseed, w->from[j] = w->slot_off[j];
        w->local = malloc(region + 4096);
        w->expect = malloc(region);
        assert_non_null(w->local);
        assert_non_null(w->expect);
    }
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&tids[i], NULL, worker, &ws[i]), 0);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(tids[i], NULL);
    char err[300] = "";
    for (int i = 0; i < NTHREADS; i++) {
        worker_t *w = &ws[i];
        if (w->err[0] && !err[0]) snprintf(err, sizeof err, "thread %d: %s", i, w->err);
        /* the peer's memory holds what the last round wrote (or the FILL) */
        for (int j = 0; j < NSLOTS && !err[0]; j++) {
            uint64_t len = w->slot_off[j + 1] - w->slot_off[j];
            th_pattern_at(w->expect, len, w->seed[j], w->from[j]);
            if (peer_hash(&peer_a, w->base + w->slot_off[j], len) != XXH3_64bits(w->expect, len))
                snprintf(err, sizeof err, "thread %d slot %d: peer bytes differ", i, j);
        }
        free(w->local);
        free(w->expect);
    }
    if (err[0]) fail_msg("%s", err);
}

static void test_threads_tcp(void **state)
{
    (void)state;
    threads(te_tcp, a_tcp);
}

static void test_threads_shm(void **state)
{
    (void)state;
    threads(te_shm, a_shm);
}

/* ---- bounds through the API ---- */

static void bounds_api(mc_te_t *te, int32_t h)
{
    const uint64_t a = peer_a.addr, n = peer_a.size;
    const struct {
        uint64_t addr, len;
    } bad[] = {
        {a + n - 10, 100},                /* runs past the end */
        {a + n, 1},                       /* just past the end */
        {a - 1, 2},                       /* starts before the buffer */
        {UINT64_MAX - 10, 100},           /* wraps around */
        {UINT64_MAX - 4 * MIB, 16 * MIB}, /* wraps, in several pieces' worth */
        {a + 16, UINT64_MAX - 8},         /* length wraps */
        {0x1000, 64},                     /* never registered */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (int op = MC_TE_READ; op <= MC_TE_WRITE; op++) {
            int rc = xfer(te, op, lbuf, h, bad[i].addr, bad[i].len);
            if (rc != MC_TE_ERR_ADDRESS_NOT_REGISTERED)
                fail_msg("%s of %" PRIu64 " B at 0x%" PRIx64 ": got %d (%s)", op ? "WRITE" : "READ",
                         bad[i].len, bad[i].addr, rc, mc_te_strerror(rc));
        }
        /* batch form: the task fails, the others in the batch still complete */
        mc_te_request_t r[3] = {{MC_TE_WRITE, lbuf, h, a, 4096},
                                {MC_TE_WRITE, lbuf, h, bad[i].addr, bad[i].len},
                                {MC_TE_READ, lbuf2, h, a, 4096}};
        uint64_t b;
        mc_te_status_t st, ts;
        assert_int_equal(mc_te_batch_alloc(te, 3, &b), 0);
        assert_int_equal(mc_te_batch_submit(te, b, r, 3), 0);
        assert_int_equal(mc_te_batch_wait(te, b, T_MS, &st), 0);
        assert_int_equal(st, MC_TE_FAILED);
        assert_int_equal(mc_te_task_status(te, b, 0, &ts, NULL), 0);
        assert_int_equal(ts, MC_TE_COMPLETED);
        assert_int_equal(mc_te_task_status(te, b, 1, &ts, NULL), 0);
        assert_int_equal(ts, MC_TE_FAILED);
        assert_int_equal(mc_te_task_status(te, b, 2, &ts, NULL), 0);
        assert_int_equal(ts, MC_TE_COMPLETED);
        assert_int_equal(mc_te_batch_free(te, b), 0);
    }
    write_and_verify(te, h, &peer_a, 3, 12345, 100000); /* still serving */
}

static void test_bounds_api(void **state)
{
    (void)state;
    bounds_api(te_tcp, a_tcp);
    bounds_api(te_shm, a_shm);
}

/* ---- bounds and bad input as raw frames on the peer's listener ---- */

enum { W_READ = 0, W_WRITE = 1, W_META = 0x10, W_PROBE = 0x12, W_REPLY = 0x80 };

typedef struct {
    uint32_t magic;
    uint8_t version, opcode;
    uint16_t flags;
    uint32_t req_id;
    int32_t status;
    uint64_t addr, length;
} frame_t;

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void encode(const frame_t *f, uint8_t out[32])
{
    put_le(out, f->magic, 4);
    out[4] = f->version;
    out[5] = f->opcode;
    put_le(out + 6, f->flags, 2);
    put_le(out + 8, f->req_id, 4);
    put_le(out + 12, (uint32_t)f->status, 4);
    put_le(out + 16, f->addr, 8);
    put_le(out + 24, f->length, 8);
}

static frame_t req(uint8_t op, uint32_t id, uint64_t addr, uint64_t len)
{
    return (frame_t){0x4554434Du, 1, op, 0, id, 0, addr, len};
}

static int wire_connect(uint16_t port)
{
    int fd = -1;
    int rc = mc_sock_connect("127.0.0.1", port, WIRE_MS, &fd);
    if (rc) fail_msg("connect 127.0.0.1:%u: %s", port, strerror(-rc));
    mc_sock_set_timeout(fd, WIRE_MS);
    return fd;
}

static void wire_send(int fd, const void *buf, size_t len)
{
    int rc = mc_sock_send_all(fd, buf, len);
    if (rc) fail_msg("send: %s", strerror(-rc));
}

static void wire_send_frame(int fd, const frame_t *f)
{
    uint8_t b[32];
    encode(f, b);
    wire_send(fd, b, sizeof b);
}

static frame_t wire_reply(int fd)
{
    uint8_t b[32];
    int rc = mc_sock_recv_all(fd, b, sizeof b);
    if (rc) fail_msg("no reply header: %s", strerror(-rc));
    frame_t f = {(uint32_t)get_le(b, 4),
                 b[4],
                 b[5],
                 (uint16_t)get_le(b + 6, 2),
                 (uint32_t)get_le(b + 8, 4),
                 (int32_t)(uint32_t)get_le(b + 12, 4),
                 get_le(b + 16, 8),
                 get_le(b + 24, 8)};
    assert_int_equal(f.magic, 0x4554434Du);
    assert_int_equal(f.version, 1);
    return f;
}

/* The peer must close the connection (EOF or reset) within WIRE_MS. */
static void wire_expect_closed(int fd, const char *what)
{
    int64_t deadline = now_ms() + WIRE_MS;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int left = (int)(deadline - now_ms());
        if (left <= 0 || poll(&p, 1, left) <= 0) fail_msg("%s: connection not closed", what);
        char c[256];
        ssize_t n = recv(fd, c, sizeof c, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) break;
        if (n > 0) fail_msg("%s: %zd unexpected bytes before close", what, n);
    }
    close(fd);
}

/* Sends raw bytes on a fresh connection and expects it closed. */
static void wire_bad(uint16_t port, const void *bytes, size_t len, int half_close, const char *what)
{
    int fd = wire_connect(port);
    wire_send(fd, bytes, len);
    if (half_close) shutdown(fd, SHUT_WR);
    wire_expect_closed(fd, what);
}

static void wire_bad_frame(uint16_t port, frame_t f, const char *what)
{
    uint8_t b[32];
    encode(&f, b);
    wire_bad(port, b, sizeof b, 0, what);
}

/* The rpc port of a segment as published under mooncake/rpc_meta/<name>. */
static uint16_t rpc_port_of(const char *segment)
{
    mc_meta_t *m = NULL;
    char key[512], *val = NULL;
    assert_int_equal(mc_meta_open(meta_url, &m), 0);
    assert_int_equal(mc_meta_key(key, sizeof key, "rpc_meta", segment), 0);
    int rc = mc_meta_get(m, key, &val);
    mc_meta_close(m);
    if (rc) fail_msg("GET %s: %s", key, strerror(-rc));
    json_error_t jerr;
    json_t *j = json_loads(val, 0, &jerr);
    free(val);
    json_int_t port = j ? json_integer_value(json_object_get(j, "rpc_port")) : 0;
    const char *ip = j ? json_string_value(json_object_get(j, "ip_or_host_name")) : NULL;
    assert_non_null(ip);
    assert_string_equal(ip, "127.0.0.1");
    json_decref(j);
    assert_true(port > 0 && port < 65536);
    return (uint16_t)port;
}

static void test_bounds_wire(void **state)
{
    (void)state;
    const uint64_t a = peer_a.addr, n = peer_a.size;
    uint16_t port = rpc_port_of(peer_a.segment);
    uint64_t seed = rnd();
    peer_fill(&peer_a, seed, 4096, 8192);
    unsigned char *exp = lbuf, *got = lbuf2;
    th_pattern(exp, 8192, seed);

    /* one connection: probe, refused READs (range, overflow, unregistered), and
     * it keeps serving the good READs and WRITEs in between */
    int fd = wire_connect(port);
    frame_t f = req(W_PROBE, 7, 0, 0);
    wire_send_frame(fd, &f);
    frame_t r = wire_reply(fd);
    assert_int_equal(r.opcode, W_PROBE | W_REPLY);
    assert_int_equal(r.req_id, 7);
    assert_int_equal(r.status, 0);
    const uint64_t bad_reads[][2] = {{a + n - 8, 64},       {a + n, 1},      {a - 4096, 4097},
                                     {UINT64_MAX - 16, 64}, {a, UINT64_MAX}, {0x1000, 64}};
    for (size_t i = 0; i < sizeof bad_reads / sizeof bad_reads[0]; i++) {
        f = req(W_READ, 100 + (uint32_t)i, bad_reads[i][0], bad_reads[i][1]);
        wire_send_frame(fd, &f);
        r = wire_reply(fd);
        assert_int_equal(r.opcode, W_READ | W_REPLY);
        assert_int_equal(r.req_id, 100 + i);
        assert_int_equal(r.status, 1);
        assert_int_equal(r.length, 0); /* no bytes follow a refusal */
        f = req(W_READ, 200 + (uint32_t)i, a + 4096 + i, 8192 - i);
        wire_send_frame(fd, &f);
        r = wire_reply(fd);
        assert_int_equal(r.opcode, W_READ | W_REPLY);
        assert_int_equal(r.req_id, 200 + i);
        assert_int_equal(r.status, 0);
        assert_int_equal(r.length, 8192 - i);
        assert_int_equal(mc_sock_recv_all(fd, got, 8192 - i), 0);
        assert_memory_equal(got, exp + i, 8192 - i);
    }
    /* a pipeline in one send (READ, refused READ, WRITE and its payload, READ
     * of what it wrote, PROBE) is answered whole, in order, on one connection */
    {
        static unsigned char wire[5 * 32 + 2000], wpay[2000];
        th_pattern(wpay, sizeof wpay, seed + 7);
        const frame_t fs[5] = {req(W_READ, 500, a + 4096, 1000), req(W_READ, 501, a + n - 8, 64),
                               req(W_WRITE, 502, a + 200003, 2000),
                               req(W_READ, 503, a + 200003, 2000), req(W_PROBE, 504, 0, 0)};
        size_t len = 0;
        for (size_t i = 0; i < 5; i++) {
            encode(&fs[i], wire + len);
            len += 32;
            if (i == 2) memcpy(wire + len, wpay, sizeof wpay), len += sizeof wpay;
        }
        wire_send(fd, wire, len);
        const uint64_t want_len[5] = {1000, 0, 0, 2000, 0};
        const int32_t want_st[5] = {0, 1, 0, 0, 0};
        for (size_t i = 0; i < 5; i++) {
            r = wire_reply(fd);
            assert_int_equal(r.opcode, fs[i].opcode | W_REPLY);
            assert_int_equal(r.req_id, 500 + i);
            assert_int_equal(r.status, want_st[i]);
            assert_int_equal(r.length, want_len[i]);
            if (!want_len[i]) continue;
            assert_int_equal(mc_sock_recv_all(fd, got, want_len[i]), 0);
            assert_memory_equal(got, i == 0 ? exp : wpay, want_len[i]);
        }
    }
    /* a good WRITE on the same connection lands byte for byte */
    th_pattern(exp, 3000, seed + 1);
    f = req(W_WRITE, 300, a + 100001, 3000);
    wire_send_frame(fd, &f);
    wire_send(fd, exp, 3000);
    r = wire_reply(fd);
    assert_int_equal(r.opcode, W_WRITE | W_REPLY);
    assert_int_equal(r.req_id, 300);
    assert_int_equal(r.status, 0);
    assert_int_equal(peer_hash(&peer_a, 100001, 3000), XXH3_64bits(exp, 3000));
    /* a refused WRITE: status 1, then the server closes (its payload is unread) */
    f = req(W_WRITE, 301, a + n - 100, 4096);
    wire_send_frame(fd, &f);
    r = wire_reply(fd);
    assert_int_equal(r.opcode, W_WRITE | W_REPLY);
    assert_int_equal(r.req_id, 301);
    assert_int_equal(r.status, 1);
    wire_expect_closed(fd, "refused WRITE");
    const uint64_t bad_writes[][2] = {{UINT64_MAX - 16, 64}, {0x1000, 64}, {a - 1, 2}};
    for (size_t i = 0; i < sizeof bad_writes / sizeof bad_writes[0]; i++) {
        fd = wire_connect(port);
        f = req(W_WRITE, 400, bad_writes[i][0], bad_writes[i][1]);
        wire_send_frame(fd, &f);
        r = wire_reply(fd);
        assert_int_equal(r.status, 1);
        wire_expect_closed(fd, "refused WRITE");
    }

    /* malformed input closes the connection */
    static const char garbage[] = "GET /metadata?key=x HTTP/1.1\r\nHost: a\r\n\r\n";
    wire_bad(port, garbage, sizeof garbage - 1, 0, "garbage");
    f = req(W_PROBE, 1, 0, 0);
    f.magic = 0x4554434Eu;
    wire_bad_frame(port, f, "bad magic");
    f = req(W_PROBE, 1, 0, 0);
    f.version = 2;
    wire_bad_frame(port, f, "bad version");
    f = req(W_PROBE, 1, 0, 0);
    f.version = 0;
    wire_bad_frame(port, f, "version 0");
    wire_bad_frame(port, req(0x33, 1, 0, 0), "unknown opcode");
    wire_bad_frame(port, req(0x02, 1, a, 16), "unknown data opcode");
    wire_bad_frame(port, req(W_READ | W_REPLY, 1, a, 16), "reply sent as a request");
    f = req(W_READ, 1, a, 16);
    f.flags = 1;
    wire_bad_frame(port, f, "unknown flags");
    wire_bad_frame(port, req(W_META, 1, 0, 1ull << 40), "oversized META payload");
    uint8_t hdr[32];
    f = req(W_READ, 1, a, 16);
    encode(&f, hdr);
    wire_bad(port, hdr, 10, 1, "truncated header");
    wire_bad(port, hdr, 31, 1, "header one byte short");
    f = req(W_WRITE, 1, a + 8192, 4096); /* in range, but the payload stops short */
    encode(&f, hdr);
    memcpy(got, hdr, 32);
    memset(got + 32, 0x5A, 100);
    wire_bad(port, got, 132, 1, "truncated WRITE payload");
    unsigned char noise[256];
    th_pattern(noise, sizeof noise, seed + 2);
    wire_bad(port, noise, sizeof noise, 0, "random bytes");

    /* the peer survived all of it and still moves bytes */
    assert_true(th_alive(&peer_a.proc));
    write_and_verify(te_tcp, a_tcp, &peer_a, 5, 777, 3 * MIB + 1);
    fill_and_read(te_tcp, a_tcp, &peer_a, 9, 4 * MIB + 3, 5 * MIB + 7);
    fill_and_read(te_shm, a_shm, &peer_a, 1, 3, 4097);
}

/* ---- a peer killed mid-transfer ---- */

#define KILL_N 32
#define KILL_LEN (8 * MIB)

static size_t count_unfinished(mc_te_t *te, uint64_t b, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        mc_te_status_t ts;
        assert_int_equal(mc_te_task_status(te, b, i, &ts, NULL), 0);
        k += ts != MC_TE_COMPLETED && ts != MC_TE_FAILED;
    }
    return k;
}

/* Submits KILL_N writes of KILL_LEN to h and returns the batch id. */
static uint64_t submit_big(mc_te_t *te, int32_t h, uint64_t base)
{
    mc_te_request_t r[KILL_N];
    for (int i = 0; i < KILL_N; i++)
        r[i] = (mc_te_request_t){MC_TE_WRITE, lbuf + 1, h, base + (uint64_t)i * KILL_LEN, KILL_LEN};
    uint64_t b;
    assert_int_equal(mc_te_batch_alloc(te, KILL_N, &b), 0);
    assert_int_equal(mc_te_batch_submit(te, b, r, KILL_N), 0);
    return b;
}

/* Waits (bounded) until some bytes of batch b have moved. */
static void wait_progress(mc_te_t *te, uint64_t b)
{
    int64_t deadline = now_ms() + T_MS;
    for (;;) {
        for (size_t i = 0; i < KILL_N; i++) {
            mc_te_status_t ts;
            uint64_t moved = 0;
            assert_int_equal(mc_te_task_status(te, b, i, &ts, &moved), 0);
            if (moved || ts == MC_TE_COMPLETED) return;
        }
        if (now_ms() > deadline) fail_msg("no progress within %d ms", T_MS);
        poll(NULL, 0, 1); /* a polling interval, not a synchronisation */
    }
}

/* After the kill: the batch settles (not PENDING) well inside 10 s, every task
 * is COMPLETED or FAILED, and the batch can be freed. Returns its status. */
static mc_te_status_t settle(mc_te_t *te, uint64_t b)
{
    mc_te_status_t st;
    int64_t t0 = now_ms();
    assert_int_equal(mc_te_batch_wait(te, b, 10000, &st), 0);
    int64_t took = now_ms() - t0;
    if (st == MC_TE_PENDING) fail_msg("batch still PENDING after %" PRId64 " ms", took);
    assert_int_equal(count_unfinished(te, b, KILL_N), 0);
    assert_int_equal(mc_te_batch_free(te, b), 0);
    return st;
}

static void test_kill_tcp(void **state)
{
    (void)state;
    th_peer_t pb;
    assert_int_equal(th_peer_start(&pb, "te-peer-kill-tcp", meta_url, KILL_N * KILL_LEN, T_MS), 0);
    int32_t h;
    assert_int_equal(mc_te_open_segment(te_tcp, pb.segment, &h), 0);
    write_and_verify(te_tcp, h, &pb, 1, 3, 65536); /* it works before */
    th_pattern(lbuf + 1, KILL_LEN, rnd());

    uint64_t b = submit_big(te_tcp, h, pb.addr);
    wait_progress(te_tcp, b);
    /* Freeze the peer so that the batch cannot finish before the kill: with more
     * unfinished tasks than lanes, some were never answered and never will be. */
    assert_int_equal(th_signal(&pb.proc, SIGSTOP), 0);
    uint64_t victim = b, other = MC_TE_INVALID_BATCH;
    if (count_unfinished(te_tcp, b, KILL_N) <= 2 * 4) {
        other = b; /* too fast: a second batch, sent to the frozen peer */
        victim = submit_big(te_tcp, h, pb.addr);
    }
    assert_int_equal(th_signal(&pb.proc, SIGKILL), 0); /* also reaps */
    assert_int_equal(settle(te_tcp, victim), MC_TE_FAILED);
    if (other != MC_TE_INVALID_BATCH) settle(te_tcp, other);

    /* later transfers to the dead peer fail quickly; others still work */
    int64_t t0 = now_ms();
    assert_int_not_equal(xfer(te_tcp, MC_TE_WRITE, lbuf, h, pb.addr, 4096), 0);
    assert_true(now_ms() - t0 < 10000);
    write_and_verify(te_tcp, a_tcp, &peer_a, 7, 11, 6 * MIB + 1);
    fill_and_read(te_tcp, a_tcp, &peer_a, 3, 5, 2 * MIB + 3);
    mc_te_close_segment(te_tcp, h);
}

/* A pipeline of small READs (te_tcp.c) to a peer that stops answering fails
 * as a whole after one I/O timeout, not one timeout per piece. */
static void test_pipeline_stalled_tcp(void **state)
{
    (void)state;
    enum { N = 32, LEN = 4096, IO_MS = 1000 };
    setenv("MC_TE_IO_TIMEOUT_MS", "1000", 1);
    mc_te_t *te = engine("te-pipeline-stall", meta_url, 1);
    unsetenv("MC_TE_IO_TIMEOUT_MS");
    assert_non_null(te);
    th_peer_t pb;
    assert_int_equal(th_peer_start(&pb, "te-peer-stall-tcp", meta_url, 1 * MIB, T_MS), 0);
    int32_t h;
    assert_int_equal(mc_te_open_segment(te, pb.segment, &h), 0);
    write_and_verify(te, h, &pb, 1, 3, 65536); /* it works before; a connection is pooled */
    assert_int_equal(th_signal(&pb.proc, SIGSTOP), 0);
    mc_te_request_t r[N];
    for (int i = 0; i < N; i++)
        r[i] = (mc_te_request_t){MC_TE_READ, lbuf2 + (size_t)i * LEN, h,
                                 pb.addr + (uint64_t)i * LEN, LEN};
    uint64_t b;
    mc_te_status_t st;
    assert_int_equal(mc_te_batch_alloc(te, N, &b), 0);
    int64_t t0 = now_ms();
    assert_int_equal(mc_te_batch_submit(te, b, r, N), 0);
    assert_int_equal(mc_te_batch_wait(te, b, T_MS, &st), 0);
    int64_t took = now_ms() - t0;
    assert_int_equal(st, MC_TE_TIMEOUT);
    for (int i = 0; i < N; i++) {
        mc_te_status_t ts;
        assert_int_equal(mc_te_task_status(te, b, (size_t)i, &ts, NULL), 0);
        assert_int_equal(ts, MC_TE_TIMEOUT);
    }
    if (took > 4 * IO_MS) fail_msg("the stalled pipeline took %" PRId64 " ms to fail", took);
    assert_int_equal(mc_te_batch_free(te, b), 0);
    assert_int_equal(th_signal(&pb.proc, SIGKILL), 0);
    mc_te_close_segment(te, h);
    mc_te_destroy(te);
}

static void test_kill_shm(void **state)
{
    (void)state;
    th_peer_t pc;
    assert_int_equal(th_peer_start(&pc, "te-peer-kill-shm", meta_url, KILL_N * KILL_LEN, T_MS), 0);
    int32_t h;
    assert_int_equal(mc_te_open_segment(te_shm, pc.segment, &h), 0);
    assert_string_equal(mc_te_segment_transport(te_shm, h), "shm");
    write_and_verify(te_shm, h, &pc, 1, 3, 65536);
    th_pattern(lbuf + 1, KILL_LEN, rnd());

    uint64_t b = submit_big(te_shm, h, pc.addr);
    wait_progress(te_shm, b);
    assert_int_equal(th_signal(&pc.proc, SIGKILL), 0);
    mc_te_status_t st = settle(te_shm, b); /* may have finished before the kill */
    assert_true(st == MC_TE_FAILED || st == MC_TE_COMPLETED);

    /* a batch after the kill fails, in bounded time, task by task */
    int64_t t0 = now_ms();
    b = submit_big(te_shm, h, pc.addr);
    assert_int_equal(settle(te_shm, b), MC_TE_FAILED);
    assert_true(now_ms() - t0 < 10000);
    assert_int_not_equal(xfer(te_shm, MC_TE_READ, lbuf2, h, pc.addr, 4096), 0);
    write_and_verify(te_shm, a_shm, &peer_a, 7, 11, 6 * MIB + 1);
    fill_and_read(te_shm, a_shm, &peer_a, 3, 5, 2 * MIB + 3);
    mc_te_close_segment(te_shm, h);
}

/* ---- re-registration: the cached descriptor is refreshed on a miss ---- */

static void rereg(mc_te_t *te, int32_t h)
{
    char r[128];
    /* the descriptor is cached now */
    write_and_verify(te, h, &peer_a, 1, 1, 4096);
    peer_cmd(&peer_a, r, sizeof r, "REG %llu", 3 * MIB);
    unsigned long long nb = 0;
    assert_int_equal(sscanf(r, "OK %llx", &nb), 1);

    uint64_t seed = rnd(), len = 2 * MIB + 77;
    th_pattern(lbuf + 3, len, seed);
    int rc = xfer(te, MC_TE_WRITE, lbuf + 3, h, nb + 1001, len);
    if (rc) fail_msg("WRITE into the new buffer: %s", mc_te_strerror(rc));
    peer_cmd(&peer_a, r, sizeof r, "HASHAT %llx %" PRIu64, nb + 1001, len);
    assert_int_equal(strtoull(r, NULL, 16), XXH3_64bits(lbuf + 3, len));
    peer_cmd(&peer_a, r, sizeof r, "FILLAT %" PRIu64 " %llx %" PRIu64, seed + 1, nb + 5, len);
    assert_int_equal(xfer(te, MC_TE_READ, lbuf2 + 7, h, nb + 5, len), 0);
    th_pattern(lbuf, len, seed + 1);
    assert_memory_equal(lbuf, lbuf2 + 7, len);

    peer_cmd(&peer_a, r, sizeof r, "UNREG %llx", nb);
    assert_string_equal(r, "OK");
    assert_int_equal(xfer(te, MC_TE_WRITE, lbuf, h, nb + 1001, 4096),
                     MC_TE_ERR_ADDRESS_NOT_REGISTERED);
    assert_int_equal(xfer(te, MC_TE_READ, lbuf2, h, nb, 4096), MC_TE_ERR_ADDRESS_NOT_REGISTERED);
    write_and_verify(te, h, &peer_a, 1, 1, 4096);

    /* unregistered but still mapped: the cached descriptor still lists it, yet
     * no write may land there (shm reads the owner's registration generation) */
    peer_cmd(&peer_a, r, sizeof r, "REG %llu", 1 * MIB);
    assert_int_equal(sscanf(r, "OK %llx", &nb), 1);
    th_pattern(lbuf, 4096, seed + 2);
    assert_int_equal(xfer(te, MC_TE_WRITE, lbuf, h, nb, 4096), 0); /* cached now */
    peer_cmd(&peer_a, r, sizeof r, "UNREG %llx keep", nb);
    assert_string_equal(r, "OK");
    peer_cmd(&peer_a, r, sizeof r, "HASHAT %llx 4096", nb);
    uint64_t before = strtoull(r, NULL, 16);
    th_pattern(lbuf, 4096, seed + 3);
    assert_int_equal(xfer(te, MC_TE_WRITE, lbuf, h, nb, 4096), MC_TE_ERR_ADDRESS_NOT_REGISTERED);
    peer_cmd(&peer_a, r, sizeof r, "HASHAT %llx 4096", nb);
    assert_int_equal(strtoull(r, NULL, 16), before);
    /* the same for a batch of small writes (one grouped copy on shm), on this
     * thread and on the workers */
    for (int run = 0; run < 2; run++) {
        mc_te_request_t w[8];
        mc_te_status_t ts[8];
        for (int i = 0; i < 8; i++)
            w[i] = (mc_te_request_t){MC_TE_WRITE, lbuf + 512 * i, h, nb + 512 * (uint64_t)i, 512};
        assert_int_equal(sb_batch(te, w, 8, run, ts), MC_TE_FAILED);
        for (int i = 0; i < 8; i++)
            assert_int_equal(ts[i], MC_TE_FAILED);
        peer_cmd(&peer_a, r, sizeof r, "HASHAT %llx 4096", nb);
        assert_int_equal(strtoull(r, NULL, 16), before);
    }
}

static void test_rereg(void **state)
{
    (void)state;
    rereg(te_tcp, a_tcp);
    rereg(te_shm, a_shm);
}

/* ---- notifications and probes ---- */

static void test_notify_http(void **state)
{
    (void)state;
    char r[256];
    assert_int_equal(mc_te_probe(te_tcp, peer_a.segment), 0);
    assert_int_equal(mc_te_notify_send(te_tcp, peer_a.segment, "from-tcp", "hello-http"), 0);
    assert_int_equal(mc_te_notify_send(te_shm, peer_a.segment, "from-shm", "second"), 0);
    peer_cmd(&peer_a, r, sizeof r, "NOTIFIES");
    assert_string_equal(r, "2 from-tcp=hello-http from-shm=second");
    peer_cmd(&peer_a, r, sizeof r, "NOTIFIES");
    assert_string_equal(r, "0");
    assert_int_not_equal(mc_te_probe(te_tcp, "no-such-segment"), 0);
}

/* ---- P2PHANDSHAKE ---- */

static void test_p2p(void **state)
{
    (void)state;
    th_peer_t pp;
    char r[256];
    assert_int_equal(th_peer_start(&pp, "127.0.0.1", "P2PHANDSHAKE", 16 * MIB, T_MS), 0);
    unsigned port = 0;
    char tail = 0;
    assert_int_equal(sscanf(pp.segment, "127.0.0.1:%u%c", &port, &tail), 1);
    assert_true(port > 0 && port < 65536);
    mc_te_t *tes[2] = {engine("127.0.0.1", "P2PHANDSHAKE", 1),
                       engine("127.0.0.1", "P2PHANDSHAKE", 0)};
    const char *want[2] = {th_net_transport(), "shm"};
    for (int i = 0; i < 2; i++) {
        mc_te_t *te = tes[i];
        if (!te) fail_msg("P2P engine %d did not start", i);
        assert_int_equal(strncmp(mc_te_segment_name(te), "127.0.0.1:", 10), 0);
        int32_t h;
        assert_int_equal(mc_te_open_segment(te, pp.segment, &h), 0);
        assert_string_equal(mc_te_segment_transport(te, h), want[i]);
        const uint64_t lens[] = {1, 4097, 5 * MIB + 1};
        for (int k = 0; k < 3; k++) {
            write_and_verify(te, h, &pp, (size_t)(1 + k), 17 * (uint64_t)k, lens[k]);
            fill_and_read(te, h, &pp, (size_t)(2 + k), 16 * MIB - lens[k], lens[k]);
        }
        assert_int_equal(xfer(te, MC_TE_WRITE, lbuf, h, pp.addr + 16 * MIB - 1, 2),
                         MC_TE_ERR_ADDRESS_NOT_REGISTERED);
        assert_int_equal(mc_te_probe(te, pp.segment), 0);
        assert_int_equal(mc_te_notify_send(te, pp.segment, want[i], i ? "p2p-two" : "p2p-one"), 0);
        /* the peer is reachable as ip:port on the wire too */
        int fd = wire_connect((uint16_t)port);
        frame_t f = req(W_PROBE, 9, 0, 0);
        wire_send_frame(fd, &f);
        assert_int_equal(wire_reply(fd).opcode, W_PROBE | W_REPLY);
        close(fd);
    }
    peer_cmd(&pp, r, sizeof r, "NOTIFIES");
    char want_r[64];
    snprintf(want_r, sizeof want_r, "2 %s=p2p-one shm=p2p-two", th_net_transport());
    assert_string_equal(r, want_r);
    for (int i = 0; i < 2; i++)
        mc_te_destroy(tes[i]);
    assert_int_equal(th_finish(&pp.proc, T_MS), 0); /* clean exit, leak-free under ASan */
}

/* ---- fixtures ---- */

static int setup(void **state)
{
    (void)state;
    const char *s = getenv("MC_TEST_SEED");
    rng = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)getpid() << 20;
    printf("# MC_TEST_SEED=%" PRIu64 "\n", rng);
    fflush(stdout);
    signal(SIGPIPE, SIG_IGN);
    setenv("MC_TCP_BIND_ADDRESS", "127.0.0.1", 1); /* engines here and in the peers */
    uint16_t port;
    if (th_metasrv_start(&metasrv, &port, T_MS)) return -1;
    snprintf(meta_url, sizeof meta_url, "http://127.0.0.1:%u/metadata", port);
    if (th_peer_start(&peer_a, "te-peer-a", meta_url, PEER_SIZE, T_MS)) goto fail;
    lbuf = malloc(LOCAL_SIZE);
    lbuf2 = malloc(LOCAL_SIZE);
    te_tcp = engine("te-init-tcp", meta_url, 1);
    te_shm = engine("te-init-shm", meta_url, 0);
    if (!lbuf || !lbuf2 || !te_tcp || !te_shm) goto fail;
    if (mc_te_open_segment(te_tcp, peer_a.segment, &a_tcp) ||
        mc_te_open_segment(te_shm, peer_a.segment, &a_shm))
        goto fail;
    return 0;
fail:
    th_reap_all();
    return -1;
}

static int teardown(void **state)
{
    (void)state;
    int ok = 1;
    mc_te_destroy(te_tcp);
    mc_te_destroy(te_shm);
    if (peer_a.proc.pid > 0) {
        int st = th_finish(&peer_a.proc, T_MS);
        if (st != 0) fprintf(stderr, "peer A exited with status 0x%x\n", st), ok = 0;
    }
    if (metasrv.pid > 0) {
        th_signal(&metasrv, SIGTERM);
        if (th_finish(&metasrv, T_MS) != 0) ok = 0;
    }
    th_reap_all();
    free(lbuf);
    free(lbuf2);
    return ok ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transfer_tcp), cmocka_unit_test(test_transfer_shm),
        cmocka_unit_test(test_small_batches_tcp), cmocka_unit_test(test_small_batches_shm),
        cmocka_unit_test(test_threads_tcp),  cmocka_unit_test(test_threads_shm),
        cmocka_unit_test(test_bounds_api),   cmocka_unit_test(test_bounds_wire),
        cmocka_unit_test(test_rereg),        cmocka_unit_test(test_notify_http),
        cmocka_unit_test(test_kill_tcp),     cmocka_unit_test(test_kill_shm),
        cmocka_unit_test(test_p2p),          cmocka_unit_test(test_pipeline_stalled_tcp),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
