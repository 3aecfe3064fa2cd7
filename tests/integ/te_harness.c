/* te_harness.c: spawning, line I/O, reaping and the byte pattern for the
 * transfer engine's multi-process tests (see te_harness.h). Every wait is a
 * poll() on a pipe or a pidfd with a deadline; nothing sleeps to synchronise. */
#include "te_harness.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- pattern ---- */

static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static uint64_t word(uint64_t seed, uint64_t i)
{
    return mix(seed * 0xD1B54A32D192ED03ull ^ i);
}

void th_pattern_at(void *buf, size_t len, uint64_t seed, uint64_t from)
{
    unsigned char *p = buf;
    size_t done = 0;
    while (done < len && (from + done) % 8) { /* head up to a word boundary of the stream */
        uint64_t w = word(seed, (from + done) / 8);
        p[done] = (unsigned char)(w >> (8 * ((from + done) % 8)));
        done++;
    }
    for (; len - done >= 8; done += 8) {
        uint64_t w = word(seed, (from + done) / 8);
        unsigned char b[8];
        for (int k = 0; k < 8; k++)
            b[k] = (unsigned char)(w >> (8 * k));
        memcpy(p + done, b, 8);
    }
    for (; done < len; done++) {
        uint64_t w = word(seed, (from + done) / 8);
        p[done] = (unsigned char)(w >> (8 * ((from + done) % 8)));
    }
}

void th_pattern(void *buf, size_t len, uint64_t seed)
{
    th_pattern_at(buf, len, seed, 0);
}

/* ---- children ---- */

#define TH_MAX_CHILDREN 32
static pid_t children[TH_MAX_CHILDREN];

static void track(pid_t pid, int add)
{
    for (int i = 0; i < TH_MAX_CHILDREN; i++)
        if (add ? children[i] == 0 : children[i] == pid) {
            children[i] = add ? pid : 0;
            return;
        }
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int th_spawn(th_proc_t *p, const char *path, char *const argv[])
{
    int pin[2], pout[2];
    memset(p, 0, sizeof *p);
    p->in = p->out = -1;
    if (pipe2(pin, O_CLOEXEC)) return -errno;
    if (pipe2(pout, O_CLOEXEC)) {
        int e = -errno;
        close(pin[0]), close(pin[1]);
        return e;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = -errno;
        close(pin[0]), close(pin[1]), close(pout[0]), close(pout[1]);
        return e;
    }
    if (pid == 0) { /* async-signal-safe calls only from here on */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(126);
        if (dup2(pin[0], 0) < 0 || dup2(pout[1], 1) < 0) _exit(126);
#ifdef SYS_close_range
        syscall(SYS_close_range, 3u, ~0u, 0u);
#endif
        execv(path, argv);
        _exit(127);
    }
    close(pin[0]);
    close(pout[1]);
    p->pid = pid;
    p->in = pin[1];
    p->out = pout[0];
    track(pid, 1);
    return 0;
}

int th_read_line(th_proc_t *p, char *line, size_t cap, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        char *nl = memchr(p->buf, '\n', p->len);
        if (nl) {
            size_t n = (size_t)(nl - p->buf);
            size_t k = n < cap - 1 ? n : cap - 1;
            memcpy(line, p->buf, k);
            line[k] = '\0';
            memmove(p->buf, nl + 1, p->len - n - 1);
            p->len -= n + 1;
            return 0;
        }
        if (p->len == sizeof p->buf) return -E2BIG;
        int64_t left = deadline - now_ms();
        if (left <= 0) return -ETIMEDOUT;
        struct pollfd pfd = {.fd = p->out, .events = POLLIN};
        int r = poll(&pfd, 1, (int)left);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -errno;
        if (r == 0) return -ETIMEDOUT;
        ssize_t n = read(p->out, p->buf + p->len, sizeof p->buf - p->len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -EPIPE;
        p->len += (size_t)n;
    }
}

int th_cmd(th_proc_t *p, char *reply, size_t cap, int timeout_ms, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line - 1) return -EINVAL;
    line[n++] = '\n';
    if (p->in < 0) return -EPIPE;
    for (int off = 0; off < n;) {
        ssize_t w = write(p->in, line + off, (size_t)(n - off));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -EPIPE;
        off += (int)w;
    }
    return th_read_line(p, reply, cap, timeout_ms);
}

static void close_pipes(th_proc_t *p)
{
    if (p->in >= 0) close(p->in);
    if (p->out >= 0) close(p->out);
    p->in = p->out = -1;
}

static void reaped(th_proc_t *p, int status)
{
    track(p->pid, 0);
    p->pid = 0;
    p->status = status;
    close_pipes(p);
}

int th_alive(th_proc_t *p)
{
    if (p->pid <= 0) return 0;
    int st;
    pid_t r = waitpid(p->pid, &st, WNOHANG);
    if (r == p->pid) {
        reaped(p, st);
        return 0;
    }
    return 1;
}

/* Waits for the child to exit within timeout_ms; 0 when it did (reaped). */
static int wait_exit(th_proc_t *p, int timeout_ms)
{
    int pfd = (int)syscall(SYS_pidfd_open, p->pid, 0);
    if (pfd >= 0) {
        struct pollfd q = {.fd = pfd, .events = POLLIN};
        int r;
        do
            r = poll(&q, 1, timeout_ms);
        while (r < 0 && errno == EINTR);
        close(pfd);
        if (r <= 0) return -ETIMEDOUT;
    }
    int st = 0;
    pid_t w;
    do
        w = waitpid(p->pid, &st, 0);
    while (w < 0 && errno == EINTR);
    reaped(p, st);
    return 0;
}

int th_finish(th_proc_t *p, int timeout_ms)
{
    if (p->pid <= 0) return p->status;
    if (p->in >= 0) close(p->in);
    p->in = -1;
    if (wait_exit(p, timeout_ms) == 0) return p->status;
    fprintf(stderr, "te_harness: child %d did not exit within %d ms; killing it\n", (int)p->pid,
            timeout_ms);
    kill(p->pid, SIGKILL);
    wait_exit(p, -1);
    return -ETIMEDOUT;
}

int th_signal(th_proc_t *p, int sig)
{
    if (p->pid <= 0) return -ESRCH;
    if (kill(p->pid, sig)) return -errno;
    if (sig == SIGKILL) return wait_exit(p, -1);
    return 0;
}

void th_reap_all(void)
{
    for (int i = 0; i < TH_MAX_CHILDREN; i++) {
        if (children[i] <= 0) continue;
        pid_t pid = children[i];
        children[i] = 0;
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
        }
    }
}

/* ---- the two programs the tests start ---- */

int th_bin_path(char *buf, size_t cap, const char *name)
{
    const char *dir = getenv("MC_BIN_DIR");
    if (!dir || !*dir) return -ENOENT;
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int th_metasrv_start(th_proc_t *p, uint16_t *port, int timeout_ms)
{
    char path[1024], line[256];
    int rc = th_bin_path(path, sizeof path, "mooncake_http_metadata_server");
    if (rc) return rc;
    char *argv[] = {path, "--host", "127.0.0.1", "--port", "0", NULL};
    if ((rc = th_spawn(p, path, argv))) return rc;
    /* it prints "listening on <host>:<port>" once serving */
    rc = th_read_line(p, line, sizeof line, timeout_ms);
    const char *colon = rc ? NULL : strrchr(line, ':');
    long v = colon && !strncmp(line, "listening on ", 13) ? strtol(colon + 1, NULL, 10) : 0;
    if (v <= 0 || v > 65535) {
        fprintf(stderr, "te_harness: metadata server said '%s' (%s)\n", rc ? "" : line,
                rc ? strerror(-rc) : "no port");
        th_signal(p, SIGKILL);
        return rc ? rc : -EPROTO;
    }
    *port = (uint16_t)v;
    return 0;
}

int th_peer_spawn(th_peer_t *peer, const char *name, const char *metadata, uint64_t size,
                  const char *log)
{
    char path[1024], sz[32];
    memset(peer, 0, sizeof *peer);
    int rc = th_bin_path(path, sizeof path, "te_test_peer");
    if (rc) return rc;
    snprintf(sz, sizeof sz, "%" PRIu64, size);
    char *argv[] = {path,     "--name", (char *)name,         "--metadata", (char *)metadata,
                    "--size", sz,       log ? "--log" : NULL, (char *)log,  NULL};
    snprintf(peer->segment, sizeof peer->segment, "%s", name);
    peer->size = size;
    return th_spawn(&peer->proc, path, argv);
}

int th_peer_ready(th_peer_t *peer, int timeout_ms)
{
    char line[512];
    int rc = th_read_line(&peer->proc, line, sizeof line, timeout_ms);
    unsigned long long addr = 0, got = 0;
    if (rc == 0 && (sscanf(line, "READY %255s %llx %llu", peer->segment, &addr, &got) != 3 ||
                    got != peer->size || addr == 0))
        rc = -EPROTO;
    if (rc) {
        fprintf(stderr, "te_harness: peer '%s' did not get ready: %s\n", peer->segment,
                rc == -EPROTO ? line : strerror(-rc));
        th_signal(&peer->proc, SIGKILL);
        return rc;
    }
    peer->addr = addr;
    return 0;
}

int th_peer_start(th_peer_t *peer, const char *name, const char *metadata, uint64_t size,
                  int timeout_ms)
{
    int rc = th_peer_spawn(peer, name, metadata, size, NULL);
    return rc ? rc : th_peer_ready(peer, timeout_ms);
}

const char *th_protocol(void)
{
    const char *p = getenv("MC_TEST_PROTOCOL");
    return p && *p ? p : "tcp";
}

const char *th_net_transport(void)
{
    return strcmp(th_protocol(), "rdma") ? "tcp" : "rdma";
}
