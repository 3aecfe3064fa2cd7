/* test_te_limits.c: the transfer engine's defences against peers that die or
 * misbehave, across real processes on 127.0.0.1 (te_test_peer targets, a real
 * mooncake_http_metadata_server, raw sockets speaking the TE frame format):
 *
 *   - a segment name whose owner was killed (kill -9) is taken back at once by
 *     a restarted process, also when another segment or a non-TE listener now
 *     holds the dead owner's port; a live owner keeps it, and so does one that
 *     does not answer in time; of two claimants at once one wins;
 *   - unregister completes while a peer drips a WRITE into the buffer (or
 *     stalls a READ out of it): the connection is cut and the memory is not
 *     written after unregister returned;
 *   - a frame (header, data or control payload) that drips slower than its
 *     whole-frame deadline is cut with one log line naming the peer;
 *   - connections over MC_TE_MAX_CONNS are closed at accept;
 *   - notifications beyond the queue's bound are refused to the sender and
 *     counted; the target's RSS stays bounded; the kept ones arrive byte for
 *     byte, in order.
 * No sleeps as synchronisation: readiness is a reply line, bytes seen in
 * memory, or a socket event; every wait has a deadline. */
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
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <jansson.h>
#include <netinet/in.h>
#include <xxhash.h>

#include "mooncake/meta.h"
#include "mooncake/te.h"
#include "net_sock.h"
#include "te_harness.h"

#define MIB (1ull << 20)
#define T_MS 20000     /* deadline for one peer command or start-up */
#define WIRE_MS 10000  /* deadline for a connection to be closed */
#define QUICK_MS 10000 /* unregister must answer within this (it waits for nobody) */

enum { W_READ = 0, W_WRITE = 1, W_META = 0x10, W_PROBE = 0x12, W_REPLY = 0x80 };

static th_proc_t metasrv;
static char meta_url[128];
static char tmpdir[256];

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- peers ---- */

static void peer_cmd(th_peer_t *p, char *reply, size_t cap, int ms, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void peer_cmd(th_peer_t *p, char *reply, size_t cap, int ms, const char *fmt, ...)
{
    char cmd[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = th_cmd(&p->proc, reply, cap, ms, "%s", cmd);
    if (rc) fail_msg("peer %s: '%s': %s", p->segment, cmd, strerror(-rc));
    if (!strncmp(reply, "ERR", 3)) fail_msg("peer %s: '%s': %s", p->segment, cmd, reply);
}

static uint64_t peer_hashat(th_peer_t *p, uint64_t addr, uint64_t len)
{
    char r[128];
    peer_cmd(p, r, sizeof r, T_MS, "HASHAT %" PRIx64 " %" PRIu64, addr, len);
    return strtoull(r, NULL, 16);
}

static uint64_t peer_reg(th_peer_t *p, uint64_t len)
{
    char r[128];
    peer_cmd(p, r, sizeof r, T_MS, "REG %" PRIu64, len);
    uint64_t a = strtoull(r + 3, NULL, 16);
    assert_true(a != 0);
    return a;
}

/* Starts a peer with extra environment "K=V" strings (NULL-terminated) for its
 * start only, logging to <tmpdir>/<log> when log is not NULL. */
static void peer_start_env(th_peer_t *p, const char *name, uint64_t size, const char *log,
                           const char *const *env)
{
    char path[512];
    if (log) snprintf(path, sizeof path, "%s/%s", tmpdir, log);
    for (size_t i = 0; env && env[i]; i++)
        putenv((char *)env[i]);
    int rc = th_peer_spawn(p, name, meta_url, size, log ? path : NULL);
    for (size_t i = 0; env && env[i]; i++) {
        char k[128];
        snprintf(k, sizeof k, "%.*s", (int)strcspn(env[i], "="), env[i]);
        unsetenv(k);
    }
    if (rc == 0) rc = th_peer_ready(p, T_MS);
    if (rc) fail_msg("peer %s did not start: %s", name, strerror(-rc));
}

/* Lines of <tmpdir>/<log> that contain both needles. */
static int log_count(const char *log, const char *a, const char *b)
{
    char path[512], line[4096];
    snprintf(path, sizeof path, "%s/%s", tmpdir, log);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, a) && (!b || strstr(line, b));
    fclose(f);
    return n;
}

/* VmRSS of pid in bytes. */
static uint64_t vmrss(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    uint64_t kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %" SCNu64, &kb) == 1) break;
    fclose(f);
    assert_true(kb > 0);
    return kb * 1024;
}

/* ---- metadata ---- */

static int meta_get(const char *kind, const char *name, char **val)
{
    mc_meta_t *m = NULL;
    char key[512];
    assert_int_equal(mc_meta_open(meta_url, &m), 0);
    assert_int_equal(mc_meta_key(key, sizeof key, kind, name), 0);
    int rc = mc_meta_get(m, key, val);
    mc_meta_close(m);
    return rc;
}

/* The rpc port of a segment as published under mooncake/rpc_meta/<name>. */
static uint16_t rpc_port_of(const char *segment)
{
    char *val = NULL;
    int rc = meta_get("rpc_meta", segment, &val);
    if (rc) fail_msg("GET rpc_meta/%s: %s", segment, strerror(-rc));
    json_error_t jerr;
    json_t *j = json_loads(val, 0, &jerr);
    free(val);
    json_int_t port = j ? json_integer_value(json_object_get(j, "rpc_port")) : 0;
    json_decref(j);
    assert_true(port > 0 && port < 65536);
    return (uint16_t)port;
}

/* ---- raw frames ---- */

static void encode(uint8_t out[32], uint8_t op, uint32_t id, uint64_t addr, uint64_t len)
{
    memset(out, 0, 32);
    const uint64_t f[] = {0x4554434Du, 1, op};
    out[0] = (uint8_t)f[0], out[1] = (uint8_t)(f[0] >> 8), out[2] = (uint8_t)(f[0] >> 16);
    out[3] = (uint8_t)(f[0] >> 24), out[4] = (uint8_t)f[1], out[5] = (uint8_t)f[2];
    for (int i = 0; i < 4; i++)
        out[8 + i] = (uint8_t)(id >> (8 * i));
    for (int i = 0; i < 8; i++) {
        out[16 + i] = (uint8_t)(addr >> (8 * i));
        out[24 + i] = (uint8_t)(len >> (8 * i));
    }
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

/* "127.0.0.1:<port>" of our end of fd: how the server names us in its log. */
static void local_str(int fd, char *buf, size_t len)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    snprintf(buf, len, "peer 127.0.0.1:%u:", ntohs(sa.sin_port));
}

/* A PROBE round trip on fd: 0 when answered. */
static int wire_probe(int fd)
{
    uint8_t b[32];
    encode(b, W_PROBE, 9, 0, 0);
    if (mc_sock_send_all(fd, b, 32)) return -1;
    if (mc_sock_recv_all(fd, b, 32)) return -1;
    return b[5] == (W_PROBE | W_REPLY) && b[12] == 0 ? 0 : -1;
}

/* 1 when the peer closed fd (EOF or reset) within ms, 0 otherwise. Drains
 * whatever bytes come before the close. */
static int wire_closed_within(int fd, int ms)
{
    int64_t deadline = now_ms() + ms;
    static char sink[1 << 16];
    for (;;) {
        int left = (int)(deadline - now_ms());
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, left) <= 0) return 0;
        ssize_t n = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return 1;
    }
}

/* A thread that sends one byte every interval_ms on fd until the peer closes
 * the connection or max bytes went; the interval is the drip's pace, not a
 * synchronisation. */
typedef struct {
    int fd;
    int interval_ms;
    int max;
    unsigned char byte;
    int sent;
    int closed; /* the server closed the connection */
    pthread_t t;
} drip_t;

static void *drip_main(void *arg)
{
    drip_t *d = arg;
    while (d->sent < __atomic_load_n(&d->max, __ATOMIC_RELAXED)) {
        struct pollfd p = {.fd = d->fd, .events = POLLIN};
        int r = poll(&p, 1, d->interval_ms);
        if (r > 0) {
            char c;
            ssize_t n = recv(d->fd, &c, 1, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN)) {
                d->closed = 1;
                return NULL;
            }
            continue; /* a reply byte: keep dripping */
        }
        if (send(d->fd, &d->byte, 1, MSG_NOSIGNAL) != 1) {
            d->closed = 1;
            return NULL;
        }
        d->sent++;
    }
    return NULL;
}

static void drip_start(drip_t *d, int fd, int interval_ms, int max, unsigned char byte)
{
    *d = (drip_t){.fd = fd, .interval_ms = interval_ms, .max = max, .byte = byte};
    assert_int_equal(pthread_create(&d->t, NULL, drip_main, d), 0);
}

/* ---- 1. a killed engine's name ---- */

static void test_name_takeover(void **state)
{
    (void)state;
    const char *name = "te-limits-name";
    th_peer_t a, b, z;
    char r[128], *val = NULL;

    /* kill -9 and restart at once: the name comes back */
    peer_start_env(&a, name, MIB, NULL, NULL);
    uint16_t old_port = rpc_port_of(name);
    th_signal(&a.proc, SIGKILL);
    peer_start_env(&a, name, MIB, "takeover.log", NULL);
    uint16_t port = rpc_port_of(name);
    assert_int_not_equal(port, old_port);
    assert_int_equal(log_count("takeover.log", "took over", "which is gone"), 1);
    int fd = wire_connect(port);
    assert_int_equal(wire_probe(fd), 0);
    close(fd);

    /* a second one while the first is live is refused, naming the live owner */
    assert_int_equal(th_peer_spawn(&b, name, meta_url, MIB, NULL), 0);
    char line[512];
    assert_int_equal(th_read_line(&b.proc, line, sizeof line, T_MS), -EPIPE);
    int st = th_finish(&b.proc, T_MS);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    assert_int_equal(rpc_port_of(name), port);
    peer_cmd(&a, r, sizeof r, T_MS, "HASH 0 4096");

    /* the dead owner's port now serves another segment: gone too */
    th_signal(&a.proc, SIGKILL);
    char env_lo[64], env_hi[64];
    snprintf(env_lo, sizeof env_lo, "MC_MIN_RPC_PORT=%u", port);
    snprintf(env_hi, sizeof env_hi, "MC_MAX_RPC_PORT=%u", port);
    const char *const env[] = {env_lo, env_hi, NULL};
    peer_start_env(&z, "te-limits-other", MIB, NULL, env);
    assert_int_equal(rpc_port_of("te-limits-other"), port);
    peer_start_env(&a, name, MIB, "takeover2.log", NULL);
    assert_int_equal(log_count("takeover2.log", "took over", "now serves segment"), 1);
    uint16_t port2 = rpc_port_of(name);
    assert_int_not_equal(port2, port);

    /* two claimants of a dead owner's name at once: exactly one wins, and no
     * takeover lock is left behind */
    for (int round = 0; round < 3; round++) {
        th_signal(&a.proc, SIGKILL);
        uint16_t stale = rpc_port_of(name);
        th_peer_t c[2];
        for (int i = 0; i < 2; i++)
            assert_int_equal(th_peer_spawn(&c[i], name, meta_url, MIB, NULL), 0);
        int ready[2], wins = 0;
        for (int i = 0; i < 2; i++) {
            ready[i] = th_peer_ready(&c[i], T_MS) == 0;
            wins += ready[i];
        }
        assert_int_equal(wins, 1);
        int w = ready[0] ? 0 : 1;
        st = c[1 - w].proc.status;
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 1);
        /* the winner may draw the dead owner's port again: then its record is
         * the stale one byte for byte and needs no takeover; either way the
         * name's record now leads to the live winner */
        uint16_t now = rpc_port_of(name);
        fd = wire_connect(now);
        assert_int_equal(wire_probe(fd), 0);
        close(fd);
        peer_cmd(&c[w], r, sizeof r, T_MS, "HASH 0 4096");
        char lock[128];
        snprintf(lock, sizeof lock, "%s~takeover@127.0.0.1:%u", name, stale);
        assert_int_equal(meta_get("rpc_meta", lock, &val), -ENOENT);
        a = c[w];
    }
    assert_int_equal(th_finish(&a.proc, T_MS), 0);
    assert_int_equal(th_finish(&z.proc, T_MS), 0);
}

/* A stand-in for whatever listens at a stale record's address: accepts one
 * connection, reads a frame header, answers `answer` (NULL: nothing) and keeps
 * the connection until the client closes it. */
typedef struct {
    int lfd;
    uint16_t port;
    const char *answer;
    pthread_t t;
} squatter_t;

static void *squatter_main(void *arg)
{
    squatter_t *q = arg;
    int fd = accept(q->lfd, NULL, NULL);
    if (fd < 0) return NULL;
    char hdr[32], sink[256];
    mc_sock_set_timeout(fd, T_MS);
    if (mc_sock_recv_all(fd, hdr, sizeof hdr) == 0 && q->answer)
        mc_sock_send_all(fd, q->answer, strlen(q->answer));
    while (recv(fd, sink, sizeof sink, 0) > 0) /* until the client gives up */
        ;
    close(fd);
    return NULL;
}

static void squatter_start(squatter_t *q, const char *answer)
{
    q->answer = answer;
    assert_int_equal(mc_sock_listen("127.0.0.1", 0, 4, &q->lfd, &q->port), 0);
    assert_int_equal(pthread_create(&q->t, NULL, squatter_main, q), 0);
}

static void squatter_stop(squatter_t *q)
{
    pthread_join(q->t, NULL);
    close(q->lfd);
}

/* Puts a stale rpc_meta record for name that points at 127.0.0.1:port. */
static void meta_put_rpc(const char *name, uint16_t port)
{
    mc_meta_t *m = NULL;
    char key[512], val[128];
    assert_int_equal(mc_meta_open(meta_url, &m), 0);
    assert_int_equal(mc_meta_key(key, sizeof key, "rpc_meta", name), 0);
    snprintf(val, sizeof val, "{\"ip_or_host_name\":\"127.0.0.1\",\"rpc_port\":%u}", port);
    assert_int_equal(mc_meta_put(m, key, val), 0);
    mc_meta_close(m);
}

/* Whoever holds the recorded address decides: a listener that is not a TE
 * engine means gone; one that never answers might be a live engine that is
 * slow, so the name is refused (within the handshake connect timeout). */
static void test_name_squatters(void **state)
{
    (void)state;
    static squatter_t q; /* static: the thread may outlive a failed assertion */
    th_peer_t a;
    const char *const env[] = {"MC_HANDSHAKE_CONNECT_TIMEOUT=1", NULL};

    squatter_start(&q, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    meta_put_rpc("te-limits-squat-http", q.port);
    peer_start_env(&a, "te-limits-squat-http", MIB, "squat.log", env);
    assert_int_equal(log_count("squat.log", "took over", "is not a transfer engine"), 1);
    assert_int_not_equal(rpc_port_of("te-limits-squat-http"), q.port);
    assert_int_equal(th_finish(&a.proc, T_MS), 0);
    squatter_stop(&q);

    squatter_start(&q, NULL); /* silent: accepts, reads, never answers */
    meta_put_rpc("te-limits-squat-mute", q.port);
    char path[512], line[512];
    snprintf(path, sizeof path, "%s/mute.log", tmpdir);
    putenv((char *)env[0]);
    int rc = th_peer_spawn(&a, "te-limits-squat-mute", meta_url, MIB, path);
    unsetenv("MC_HANDSHAKE_CONNECT_TIMEOUT");
    assert_int_equal(rc, 0);
    assert_int_equal(th_read_line(&a.proc, line, sizeof line, T_MS), -EPIPE);
    int st = th_finish(&a.proc, T_MS);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    assert_int_equal(log_count("mute.log", "may be live", "no answer from 127.0.0.1"), 1);
    assert_int_equal(rpc_port_of("te-limits-squat-mute"), q.port); /* left as it was */
    squatter_stop(&q);
}

/* ---- 2. unregister while a peer drips a WRITE or stalls a READ ---- */

static void test_unregister_drip(void **state)
{
    (void)state;
    th_peer_t p;
    char r[128];
    peer_start_env(&p, "te-limits-unreg", MIB, "unreg.log", NULL);
    uint16_t port = rpc_port_of(p.segment);

    /* WRITE: the frame announces 64 KiB and the bytes come one at a time */
    uint64_t b = peer_reg(&p, MIB);
    peer_cmd(&p, r, sizeof r, T_MS, "FILLAT 7 %" PRIx64 " %" PRIu64, b, (uint64_t)MIB);
    unsigned char first;
    th_pattern(&first, 1, 7);
    unsigned char drip_byte = (unsigned char)~first;
    uint64_t h_first = peer_hashat(&p, b, 1);
    int fd = wire_connect(port);
    uint8_t hdr[32];
    encode(hdr, W_WRITE, 1, b, 64 * 1024);
    wire_send(fd, hdr, 32);
    wire_send(fd, &drip_byte, 1);
    /* ready: the first byte landed, so the server is inside the WRITE */
    int64_t deadline = now_ms() + T_MS;
    while (peer_hashat(&p, b, 1) == h_first)
        if (now_ms() > deadline) fail_msg("the first WRITE byte never landed");
    static drip_t d; /* static: outlives this frame if an assertion jumps out */
    drip_start(&d, fd, 50, 400, drip_byte);
    int rc = th_cmd(&p.proc, r, sizeof r, QUICK_MS, "UNREG %" PRIx64 " keep", b);
    if (rc) {
        __atomic_store_n(&d.max, 0, __ATOMIC_RELAXED);
        pthread_join(d.t, NULL);
        fail_msg("unregister blocked by a dripping WRITE: %s", strerror(-rc));
    }
    assert_string_equal(r, "OK");
    uint64_t h_after = peer_hashat(&p, b, MIB);
    pthread_join(d.t, NULL);
    assert_true(d.closed); /* the dripping connection was cut */
    assert_true(d.sent < d.max);
    close(fd);
    assert_int_equal(peer_hashat(&p, b, MIB), h_after); /* nothing written after unregister */
    assert_int_equal(log_count("unreg.log", "its buffer was unregistered", NULL), 1);

    assert_int_equal(th_finish(&p.proc, T_MS), 0);
}

static void test_unregister_stalled_read(void **state)
{
    (void)state;
    th_peer_t p;
    char r[128];
    peer_start_env(&p, "te-limits-unreg-read", MIB, "unreg-read.log", NULL);
    uint16_t port = rpc_port_of(p.segment);
    uint8_t hdr[32];
    /* READ: 48 MiB asked for and never read past the first bytes */
    uint64_t b2 = peer_reg(&p, 48 * MIB);
    int fd = wire_connect(port);
    encode(hdr, W_READ, 2, b2, 48 * MIB);
    wire_send(fd, hdr, 32);
    uint8_t reply[32 + 4096];
    assert_int_equal(mc_sock_recv_all(fd, reply, sizeof reply), 0); /* it is sending */
    assert_int_equal(reply[5], W_READ | W_REPLY);
    int rc = th_cmd(&p.proc, r, sizeof r, QUICK_MS, "UNREG %" PRIx64, b2);
    if (rc) fail_msg("unregister blocked by a stalled READ: %s", strerror(-rc));
    assert_string_equal(r, "OK");
    assert_true(wire_closed_within(fd, WIRE_MS));
    close(fd);
    assert_int_equal(log_count("unreg-read.log", "its buffer was unregistered", NULL), 1);

    /* still serving */
    fd = wire_connect(port);
    assert_int_equal(wire_probe(fd), 0);
    close(fd);
    assert_int_equal(th_finish(&p.proc, T_MS), 0);
}

/* ---- 3. whole-frame deadline ---- */

/* Drips frame bytes on a fresh connection (after `head` bytes sent at once) and
 * expects the server to cut it, with one log line naming us. */
static void drip_cut(uint16_t port, const uint8_t *head, size_t nhead, const char *log,
                     const char *needle)
{
    int fd = wire_connect(port);
    char me[64];
    local_str(fd, me, sizeof me);
    if (nhead) wire_send(fd, head, nhead);
    static drip_t d;
    drip_start(&d, fd, 50, 200, 'x'); /* 200 bytes at 20 B/s: 10 s, far past 1 s + */
    pthread_join(d.t, NULL);
    close(fd);
    if (!d.closed) fail_msg("a frame dripping at 20 B/s was not cut (%s)", needle);
    assert_int_equal(log_count(log, me, needle), 1);
}

static void test_frame_deadline(void **state)
{
    (void)state;
    th_peer_t p;
    const char *const env[] = {"MC_TE_IO_TIMEOUT_MS=1000", NULL}; /* deadline 1 s + len/1 MiB/s */
    peer_start_env(&p, "te-limits-deadline", MIB, "deadline.log", env);
    uint16_t port = rpc_port_of(p.segment);
    uint8_t hdr[32];
    encode(hdr, W_WRITE, 1, p.addr, 64 * 1024);
    drip_cut(port, hdr, 32, "deadline.log", "WRITE of 65536 bytes not done by its deadline");
    encode(hdr, W_META, 2, 0, 1000);
    drip_cut(port, hdr, 32, "deadline.log", "control payload of 1000 bytes not done by its");
    encode(hdr, W_PROBE, 3, 0, 0);
    drip_cut(port, hdr, 4, "deadline.log", "frame header of 32 bytes not done by its deadline");
    /* a frame at normal pace is served on the same engine */
    int fd = wire_connect(port);
    assert_int_equal(wire_probe(fd), 0);
    close(fd);
    char r[128];
    peer_cmd(&p, r, sizeof r, T_MS, "HASH 0 4096");
    assert_int_equal(th_finish(&p.proc, T_MS), 0);
}

/* ---- 4. connection cap ---- */

static void test_conn_cap(void **state)
{
    (void)state;
    th_peer_t p;
    const char *const env[] = {"MC_TE_MAX_CONNS=8", NULL};
    peer_start_env(&p, "te-limits-cap", MIB, "cap.log", env);
    uint16_t port = rpc_port_of(p.segment);
    int fds[8];
    for (int i = 0; i < 8; i++) {
        fds[i] = wire_connect(port);
        assert_int_equal(wire_probe(fds[i]), 0); /* accepted and served */
    }
    int extra = wire_connect(port);
    char me[64];
    local_str(extra, me, sizeof me);
    assert_true(wire_closed_within(extra, WIRE_MS));
    close(extra);
    assert_int_equal(log_count("cap.log", me, "MC_TE_MAX_CONNS"), 1);
    /* the idle ones still work; one closed makes room again */
    assert_int_equal(wire_probe(fds[3]), 0);
    close(fds[0]);
    int64_t deadline = now_ms() + T_MS;
    for (;;) { /* until the server noticed the close: bounded retries */
        int fd = wire_connect(port);
        int ok = wire_probe(fd) == 0;
        close(fd);
        if (ok) break;
        if (now_ms() > deadline) fail_msg("no room after a connection closed");
    }
    for (int i = 1; i < 8; i++)
        close(fds[i]);
    assert_int_equal(th_finish(&p.proc, T_MS), 0);
}

/* ---- 5. bounded notification queue ---- */

#define NOTE_N 150
#define NOTE_LEN 1000000
#define NOTE_BOUND (8 * MIB)

/* Message i: NOTE_LEN letters derived from the pattern of seed 1000 + i. */
static void note_msg(char *buf, int i)
{
    th_pattern(buf, NOTE_LEN, 1000 + (uint64_t)i);
    for (size_t j = 0; j < NOTE_LEN; j++)
        buf[j] = (char)('a' + (unsigned char)buf[j] % 26);
    buf[NOTE_LEN] = '\0';
}

static void test_notify_bound(void **state)
{
    (void)state;
    th_peer_t p;
    char env_b[64], env_asan[512];
    snprintf(env_b, sizeof env_b, "MC_TE_NOTIFY_MAX_BYTES=%llu", (unsigned long long)NOTE_BOUND);
    /* ASan keeps freed blocks in a quarantine (256 MiB by default): a small
     * one, so that the target's RSS shows what the engine keeps */
    const char *asan = getenv("ASAN_OPTIONS");
    snprintf(env_asan, sizeof env_asan, "ASAN_OPTIONS=%s%squarantine_size_mb=4", asan ? asan : "",
             asan && *asan ? ":" : "");
    char *saved = asan ? strdup(asan) : NULL;
    const char *const env[] = {env_b, env_asan, NULL};
    peer_start_env(&p, "te-limits-notify", MIB, "notify.log", env);
    if (saved) setenv("ASAN_OPTIONS", saved, 1), free(saved);

    mc_te_t *te = NULL;
    assert_int_equal(mc_te_create(&te), 0);
    assert_int_equal(mc_te_init(te, "te-limits-sender", meta_url, th_protocol(), NULL), 0);
    char *msg = malloc(NOTE_LEN + 1);
    assert_non_null(msg);
    uint64_t rss0 = vmrss(p.proc.pid);
    XXH3_state_t *st = XXH3_createState();
    XXH3_64bits_reset(st);
    int kept = 0, refused = 0;
    for (int i = 0; i < NOTE_N; i++) {
        char name[32];
        snprintf(name, sizeof name, "n%03d", i);
        note_msg(msg, i);
        int rc = mc_te_notify_send(te, p.segment, name, msg);
        if (rc == 0) {
            if (refused) fail_msg("notification %d kept after %d refused", i, refused);
            kept++;
            XXH3_64bits_update(st, name, strlen(name) + 1);
            XXH3_64bits_update(st, msg, NOTE_LEN + 1);
        } else {
            assert_int_equal(rc, MC_TE_ERR_TOO_MANY_REQUESTS);
            refused++;
        }
    }
    uint64_t rss1 = vmrss(p.proc.pid);
    if (rss1 > rss0 + 64 * MIB)
        fail_msg("target RSS grew by %llu MiB for a queue bounded at 8 MiB",
                 (unsigned long long)((rss1 - rss0) / MIB));
    /* 8 messages of 1000004 bytes fit in 8 MiB, a 9th does not */
    assert_int_equal(kept, 8);
    assert_int_equal(refused, NOTE_N - 8);
    char r[128], want[64];
    peer_cmd(&p, r, sizeof r, T_MS, "NOTIFYSTAT");
    snprintf(want, sizeof want, "8 %d %016llx", NOTE_N - 8,
             (unsigned long long)XXH3_64bits_digest(st));
    assert_string_equal(r, want);
    assert_true(log_count("notify.log", "notification queue full", NULL) >= 1);
    /* fetched: the queue takes notifications again, the count of drops stays */
    assert_int_equal(mc_te_notify_send(te, p.segment, "again", "x"), 0);
    XXH3_64bits_reset(st);
    XXH3_64bits_update(st, "again", 6);
    XXH3_64bits_update(st, "x", 2);
    peer_cmd(&p, r, sizeof r, T_MS, "NOTIFYSTAT");
    snprintf(want, sizeof want, "1 %d %016llx", NOTE_N - 8,
             (unsigned long long)XXH3_64bits_digest(st));
    assert_string_equal(r, want);
    assert_int_equal(th_finish(&p.proc, T_MS), 0);

    /* the count bound: 5 kept of 8 small ones */
    const char *const env_n[] = {"MC_TE_NOTIFY_MAX_COUNT=5", NULL};
    peer_start_env(&p, "te-limits-notify-n", MIB, NULL, env_n);
    XXH3_64bits_reset(st);
    for (int i = 0; i < 8; i++) {
        char name[16], m[16];
        snprintf(name, sizeof name, "c%d", i);
        snprintf(m, sizeof m, "msg-%d", i);
        int rc = mc_te_notify_send(te, p.segment, name, m);
        assert_int_equal(rc, i < 5 ? 0 : MC_TE_ERR_TOO_MANY_REQUESTS);
        if (rc == 0) {
            XXH3_64bits_update(st, name, strlen(name) + 1);
            XXH3_64bits_update(st, m, strlen(m) + 1);
        }
    }
    peer_cmd(&p, r, sizeof r, T_MS, "NOTIFYSTAT");
    snprintf(want, sizeof want, "5 3 %016llx", (unsigned long long)XXH3_64bits_digest(st));
    assert_string_equal(r, want);
    assert_int_equal(th_finish(&p.proc, T_MS), 0);
    XXH3_freeState(st);
    free(msg);
    mc_te_destroy(te);
}

/* ---- fixture ---- */

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    setenv("MC_TCP_BIND_ADDRESS", "127.0.0.1", 1); /* engines here and in the peers */
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_te_limits.XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    uint16_t port;
    if (th_metasrv_start(&metasrv, &port, T_MS)) return -1;
    snprintf(meta_url, sizeof meta_url, "http://127.0.0.1:%u/metadata", port);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int ok = 1;
    if (metasrv.pid > 0) {
        th_signal(&metasrv, SIGTERM);
        if (th_finish(&metasrv, T_MS) != 0) ok = 0;
    }
    th_reap_all();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) ok = 0;
    return ok ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_takeover),   cmocka_unit_test(test_name_squatters),
        cmocka_unit_test(test_unregister_drip), cmocka_unit_test(test_unregister_stalled_read),
        cmocka_unit_test(test_frame_deadline),  cmocka_unit_test(test_conn_cap),
        cmocka_unit_test(test_notify_bound),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
