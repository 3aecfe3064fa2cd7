/* test_metasrv_proc.c: the real mooncake_http_metadata_server binary
 * ($MC_BIN_DIR/mooncake_http_metadata_server) as a process on 127.0.0.1: its
 * command line (both flag forms, bad flags exit 2 with the usage), readiness
 * through its "listening on host:port" line read from a pipe, bad input on raw
 * sockets (garbage bytes, truncated requests, oversized headers and bodies)
 * after which it must keep serving, the mc_meta client against it, and a clean
 * exit 0 on SIGTERM and SIGINT. No sleeps: every wait is on a pipe, a socket or
 * the child's pidfd, with a timeout. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "mooncake/meta.h"
#include "net_sock.h"

#define WAIT_MS 20000

typedef struct {
    pid_t pid;
    int out, err; /* read ends of the child's stdout and stderr */
    uint16_t port;
    char outbuf[4096], errbuf[65536];
    size_t outlen, errlen;
} child_t;

static char bin[1024];

/* Starts bin with args (NULL-terminated, without argv[0]). */
static void spawn(child_t *c, const char *const *args)
{
    int po[2], pe[2];
    memset(c, 0, sizeof *c);
    assert_int_equal(pipe2(po, O_CLOEXEC), 0);
    assert_int_equal(pipe2(pe, O_CLOEXEC), 0);
    const char *argv[16] = {bin};
    int n = 1;
    while (args[n - 1] && n < 15) {
        argv[n] = args[n - 1];
        n++;
    }
    argv[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(po[1], 1);
        dup2(pe[1], 2);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    c->pid = pid;
    c->out = po[0];
    c->err = pe[0];
}

/* Reads what is available from fd into buf (keeping it NUL-terminated);
 * returns 0 at EOF, 1 otherwise. */
static int pump(int fd, char *buf, size_t cap, size_t *len)
{
    char tmp[4096];
    ssize_t r = read(fd, tmp, sizeof tmp);
    if (r <= 0) return r < 0 && errno == EINTR;
    size_t k = (size_t)r;
    if (k > cap - 1 - *len) k = cap - 1 - *len;
    memcpy(buf + *len, tmp, k);
    *len += k;
    buf[*len] = '\0';
    return 1;
}

/* Waits until stdout holds a full "listening on HOST:PORT\n" line; fills c->port.
 * Fails the test when the child exits or nothing comes within WAIT_MS. */
static void wait_listening(child_t *c)
{
    for (;;) {
        char *l = strstr(c->outbuf, "listening on ");
        char *nl = l ? strchr(l, '\n') : NULL;
        if (nl) {
            char *colon = nl;
            while (colon > l && *colon != ':')
                colon--;
            c->port = (uint16_t)atoi(colon + 1);
            assert_true(c->port > 0);
            return;
        }
        struct pollfd p = {c->out, POLLIN, 0};
        int r = poll(&p, 1, WAIT_MS);
        if (r <= 0) fail_msg("no 'listening' line within %d ms", WAIT_MS);
        if (!pump(c->out, c->outbuf, sizeof c->outbuf, &c->outlen))
            fail_msg("server exited before listening; stdout '%s'", c->outbuf);
    }
}

/* Drains both pipes to EOF and reaps the child (bounded by WAIT_MS through a
 * pidfd where the kernel has one); returns the wait status. */
static int finish(child_t *c)
{
    struct pollfd p[2] = {{c->out, POLLIN, 0}, {c->err, POLLIN, 0}};
    int open_fds = 2;
    while (open_fds) {
        int r = poll(p, 2, WAIT_MS);
        if (r <= 0) fail_msg("child %d did not close its output within %d ms", c->pid, WAIT_MS);
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || !p[i].revents) continue;
            int more = i == 0 ? pump(c->out, c->outbuf, sizeof c->outbuf, &c->outlen)
                              : pump(c->err, c->errbuf, sizeof c->errbuf, &c->errlen);
            if (!more) {
                close(p[i].fd);
                p[i].fd = -1;
                open_fds--;
            }
        }
    }
#ifdef SYS_pidfd_open
    int pfd = (int)syscall(SYS_pidfd_open, c->pid, 0);
    if (pfd >= 0) {
        struct pollfd q = {pfd, POLLIN, 0};
        if (poll(&q, 1, WAIT_MS) <= 0) fail_msg("child %d did not exit", c->pid);
        close(pfd);
    }
#endif
    int st = 0;
    assert_int_equal(waitpid(c->pid, &st, 0), c->pid);
    return st;
}

/* Connects to the child, sends req (len bytes), shuts down writing when
 * half_close, and reads the answer until the server closes (or 10 s). Returns
 * the HTTP status, 0 when the server closed without answering. */
static int http_raw(uint16_t port, const void *req, size_t len, int half_close, char *body,
                    size_t blen)
{
    int fd;
    assert_int_equal(mc_sock_connect("127.0.0.1", port, 5000, &fd), 0);
    mc_sock_set_timeout(fd, 10000);
    int rc = mc_sock_send_all(fd, req, len);
    /* the server may answer (413) and close before taking everything */
    assert_true(rc == 0 || rc == -ECONNRESET || rc == -EPIPE);
    if (half_close) shutdown(fd, SHUT_WR);
    char resp[8192];
    size_t n = 0;
    for (;;) {
        ssize_t r = recv(fd, resp + n, sizeof resp - 1 - n, 0);
        if (r <= 0) break;
        n += (size_t)r;
        if (n == sizeof resp - 1) break;
    }
    close(fd);
    resp[n] = '\0';
    int status = 0;
    if (n >= 12 && !strncmp(resp, "HTTP/1.", 7)) status = atoi(resp + 9);
    if (body) {
        char *b = strstr(resp, "\r\n\r\n");
        snprintf(body, blen, "%s", b ? b + 4 : "");
    }
    return status;
}

static int http_simple(uint16_t port, const char *method, const char *target, const char *body,
                       char *out, size_t olen)
{
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     method, target, body ? strlen(body) : 0, body ? body : "");
    return http_raw(port, req, (size_t)n, 0, out, olen);
}

static void assert_healthy(uint16_t port)
{
    char body[64];
    assert_int_equal(http_simple(port, "GET", "/health", NULL, body, sizeof body), 200);
    assert_string_equal(body, "OK");
}

static void run_expect_exit(const char *const *args, int code, const char *in_stdout,
                            const char *in_stderr)
{
    child_t c;
    spawn(&c, args);
    int st = finish(&c);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != code)
        fail_msg("'%s ...': status 0x%x, want exit %d; stderr '%s'", args[0] ? args[0] : "", st,
                 code, c.errbuf);
    if (in_stdout && !strstr(c.outbuf, in_stdout))
        fail_msg("stdout lacks '%s': '%s'", in_stdout, c.outbuf);
    if (in_stderr && !strstr(c.errbuf, in_stderr))
        fail_msg("stderr lacks '%s': '%s'", in_stderr, c.errbuf);
}

static void test_flags(void **st)
{
    static const char *const bad[][4] = {
        {"--bogus", NULL},
        {"--port", NULL},
        {"--port", "abc", NULL},
        {"--port=70000", NULL},
        {"--port=-1", NULL},
        {"--port=", NULL},
        {"--log-level", "LOUD", NULL},
        {"--host=", NULL},
        {"stray", NULL},
        {"--port=8080x", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        run_expect_exit(bad[i], 2, NULL, "usage:");
    const char *const help[] = {"--help", NULL};
    run_expect_exit(help, 0, "usage:", NULL);
    const char *const help2[] = {"--port", "1", "--help", NULL};
    run_expect_exit(help2, 0, "--port", NULL);
}

static void test_serve_bad_input_and_sigterm(void **st)
{
    child_t c;
    const char *const args[] = {"--port", "0", "--host=127.0.0.1", "--log-level", "INFO", NULL};
    spawn(&c, args);
    wait_listening(&c);
    assert_non_null(strstr(c.outbuf, "listening on 127.0.0.1:"));
    assert_healthy(c.port);

    /* the real client against the process */
    char url[128], *got = NULL;
    snprintf(url, sizeof url, "http://127.0.0.1:%u/metadata", c.port);
    mc_meta_t *m = NULL;
    assert_int_equal(mc_meta_open(url, &m), 0);
    assert_int_equal(mc_meta_put(m, "mooncake/rpc_meta/p", "{\"rpc_port\":7}"), 0);
    assert_int_equal(mc_meta_put(m, "mooncake/rpc_meta/p", "{\"rpc_port\":8}"), -EEXIST);
    assert_int_equal(mc_meta_get(m, "mooncake/rpc_meta/p", &got), 0);
    assert_string_equal(got, "{\"rpc_port\":7}");
    free(got);

    /* garbage bytes, binary and text */
    unsigned char junk[4096];
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < sizeof junk; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        junk[i] = (unsigned char)x;
    }
    int s = http_raw(c.port, junk, sizeof junk, 1, NULL, 0);
    assert_true(s == 0 || (s >= 400 && s < 500));
    assert_healthy(c.port);
    const char *text = "HELLO THERE\r\n\r\n";
    s = http_raw(c.port, text, strlen(text), 1, NULL, 0);
    assert_true(s == 0 || (s >= 400 && s < 500));
    /* connect and say nothing, many times (a port scan, TCP health probes):
     * logged at once, then in one line per 10 s with the count */
    for (int i = 0; i < 50; i++) {
        s = http_raw(c.port, "", 0, 1, NULL, 0);
        assert_int_equal(s, 0);
    }
    assert_healthy(c.port);

    /* a 64 KiB header line */
    size_t hl = 65536;
    char *big = malloc(hl + 256);
    assert_non_null(big);
    int n = snprintf(big, 256, "GET /metadata?key=a HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(big + n, 'a', hl);
    memcpy(big + n + hl, "\r\n\r\n", 4);
    s = http_raw(c.port, big, (size_t)n + hl + 4, 1, NULL, 0);
    assert_true(s == 0 || (s >= 400 && s < 500));
    free(big);
    assert_healthy(c.port);

    /* a body announced far over the limit is refused before it is sent */
    const char *huge = "PUT /metadata?key=huge HTTP/1.1\r\nHost: x\r\n"
                       "Content-Length: 1073741824\r\n\r\n";
    char body[256];
    assert_int_equal(http_raw(c.port, huge, strlen(huge), 0, body, sizeof body), 413);
    /* a chunked body that grows over the limit is read, dropped and refused */
    size_t chunk = 1u << 20, nchunks = 20;
    size_t cap = 256 + nchunks * (chunk + 16);
    char *req = malloc(cap);
    assert_non_null(req);
    size_t off = (size_t)snprintf(req, cap,
                                  "PUT /metadata?key=huge HTTP/1.1\r\nHost: x\r\n"
                                  "Transfer-Encoding: chunked\r\n\r\n");
    for (size_t i = 0; i < nchunks; i++) {
        off += (size_t)snprintf(req + off, cap - off, "%zx\r\n", chunk);
        memset(req + off, '7', chunk);
        off += chunk;
        memcpy(req + off, "\r\n", 2);
        off += 2;
    }
    memcpy(req + off, "0\r\n\r\n", 5);
    off += 5;
    assert_int_equal(http_raw(c.port, req, off, 0, body, sizeof body), 413);
    free(req);
    /* a body cut short by the peer stores nothing */
    const char *cut = "PUT /metadata?key=cut HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc";
    s = http_raw(c.port, cut, strlen(cut), 1, NULL, 0);
    assert_true(s == 0 || (s >= 400 && s < 500));
    assert_int_equal(http_simple(c.port, "GET", "/metadata?key=huge", NULL, body, sizeof body),
                     404);
    assert_int_equal(http_simple(c.port, "GET", "/metadata?key=cut", NULL, body, sizeof body), 404);
    assert_int_equal(http_simple(c.port, "POST", "/metadata?key=x", "{}", body, sizeof body), 405);
    assert_int_equal(http_simple(c.port, "GET", "/metadata?key=%20", NULL, body, sizeof body), 400);

    /* still serving, with its data intact */
    assert_healthy(c.port);
    got = NULL;
    assert_int_equal(mc_meta_get(m, "mooncake/rpc_meta/p", &got), 0);
    assert_string_equal(got, "{\"rpc_port\":7}");
    free(got);
    mc_meta_close(m);

    /* a second server on the same port fails to start: exit 1 */
    char pbuf[16];
    snprintf(pbuf, sizeof pbuf, "%u", c.port);
    const char *const dup[] = {"--host", "127.0.0.1", "--port", pbuf, NULL};
    run_expect_exit(dup, 1, NULL, "cannot serve");

    assert_int_equal(kill(c.pid, SIGTERM), 0);
    int ws = finish(&c);
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0)
        fail_msg("status 0x%x after SIGTERM; stderr:\n%s", ws, c.errbuf);
    /* one line per refused request, naming the peer */
    assert_non_null(strstr(c.errbuf, "127.0.0.1:"));
    assert_non_null(strstr(c.errbuf, "-> 413 request body too large"));
    assert_non_null(strstr(c.errbuf, "-> 405 method not allowed"));
    assert_non_null(strstr(c.errbuf, "connection closed without a valid HTTP request"));
    /* rate-limited: not a line per connection (the run takes well under 30 s) */
    int silent_lines = 0;
    for (const char *p = c.errbuf; (p = strstr(p, "connection closed without a valid HTTP")); p++)
        silent_lines++;
    if (silent_lines > 3) fail_msg("%d lines for silent connections:\n%s", silent_lines, c.errbuf);
    assert_null(strstr(c.errbuf, "Sanitizer"));
    assert_null(strstr(c.errbuf, "runtime error"));
}

static void test_sigint(void **st)
{
    child_t c;
    const char *const args[] = {"--host", "127.0.0.1", "--port=0", "--log_level=warning", NULL};
    spawn(&c, args);
    wait_listening(&c);
    assert_healthy(c.port);
    assert_int_equal(kill(c.pid, SIGINT), 0);
    int ws = finish(&c);
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0)
        fail_msg("status 0x%x after SIGINT; stderr:\n%s", ws, c.errbuf);
}

int main(void)
{
    const char *dir = getenv("MC_BIN_DIR");
    if (!dir || !*dir) {
        fprintf(stderr, "MC_BIN_DIR is not set (run through ctest)\n");
        return 1;
    }
    snprintf(bin, sizeof bin, "%s/mooncake_http_metadata_server", dir);
    if (access(bin, X_OK) != 0) {
        fprintf(stderr, "%s: not built\n", bin);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_serve_bad_input_and_sigterm),
        cmocka_unit_test(test_sigint),
    };
    return cmocka_run_group_tests_name("metasrv_proc", tests, NULL, NULL);
}
