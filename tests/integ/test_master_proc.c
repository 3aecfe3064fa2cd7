/* test_master_proc.c: the real mooncake_master binary ($MC_BIN_DIR) as a
 * process on 127.0.0.1, started through te_harness with every port 0 and the
 * embedded metadata server on. Readiness is its "... listening on HOST:PORT"
 * and "ready" lines read from a pipe (never a sleep). Checks: the admin
 * endpoints and the metadata server answer, garbage on the admin and RPC ports
 * leaves it serving, SIGTERM and SIGINT exit 0, a bad command line or config
 * file exits 2 with a message naming the flag and the usage, --help exits 0,
 * a port in use exits 1, and state made through the RPC (mc_master_client)
 * shows on the admin port until the tick thread expires the silent client. */
#include <errno.h>
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
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "master_client.h"
#include "net_sock.h"
#include "te_harness.h"

#define WAIT_MS 20000

static char bin[1024];

typedef struct {
    th_proc_t p;
    uint16_t rpc, metrics, meta;
} master_t;

/* Parses "mooncake_master: WHAT listening on HOST:PORT"; returns the port or 0. */
static uint16_t port_of(const char *line, const char *what)
{
    char pre[128];
    snprintf(pre, sizeof pre, "mooncake_master: %s listening on ", what);
    if (strncmp(line, pre, strlen(pre)) != 0) return 0;
    const char *colon = strrchr(line, ':');
    return colon ? (uint16_t)atoi(colon + 1) : 0;
}

/* Starts the master with the standard test flags plus extra (NULL-terminated)
 * and waits for its listening lines and "ready". */
static void master_start(master_t *mm, const char *const *extra)
{
    char *argv[40] = {"mooncake_master",
                      "--port=0",
                      "--rpc_address",
                      "127.0.0.1",
                      "--metrics_port=0",
                      "--metrics_host=127.0.0.1",
                      "--enable_http_metadata_server",
                      "--http_metadata_server_port",
                      "0",
                      "--http_metadata_server_host=127.0.0.1"};
    int n = 10;
    for (int i = 0; extra && extra[i] && n < 39; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    memset(mm, 0, sizeof *mm);
    assert_int_equal(th_spawn(&mm->p, bin, argv), 0);
    for (;;) {
        char line[512];
        int rc = th_read_line(&mm->p, line, sizeof line, WAIT_MS);
        if (rc) fail_msg("master: no 'ready' line (%d)", rc);
        uint16_t port;
        if ((port = port_of(line, "rpc"))) mm->rpc = port;
        if ((port = port_of(line, "metrics"))) mm->metrics = port;
        if ((port = port_of(line, "http metadata server"))) mm->meta = port;
        if (!strcmp(line, "mooncake_master: ready")) break;
    }
    assert_true(mm->rpc && mm->metrics && mm->meta);
}

/* Sends raw bytes to port and reads the answer to EOF; returns the HTTP
 * status (0 when none) and the body in body. */
static int http_raw(uint16_t port, const char *req, size_t len, char *body, size_t blen)
{
    int fd;
    assert_int_equal(mc_sock_connect("127.0.0.1", port, 5000, &fd), 0);
    mc_sock_set_timeout(fd, 10000);
    int rc = mc_sock_send_all(fd, req, len);
    assert_true(rc == 0 || rc == -ECONNRESET || rc == -EPIPE);
    shutdown(fd, SHUT_WR);
    static char resp[1 << 16];
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

static int http_get(uint16_t port, const char *target, char *body, size_t blen)
{
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", target);
    return http_raw(port, req, (size_t)n, body, blen);
}

static void assert_serving(const master_t *mm)
{
    char body[4096];
    assert_int_equal(http_get(mm->metrics, "/health", body, sizeof body), 200);
    assert_string_equal(body, "{\"status\":\"ok\",\"role\":\"master\",\"service_ready\":true}");
    assert_int_equal(http_get(mm->meta, "/health", body, sizeof body), 200);
    assert_string_equal(body, "OK");
    int fd;
    assert_int_equal(mc_sock_connect("127.0.0.1", mm->rpc, 5000, &fd), 0);
    close(fd);
}

static int exit_code(int st)
{
    return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_serves_and_stops(void **state)
{
    master_t mm;
    const char *extra[] = {"--client_ttl=5", "--default_kv_lease_ttl", "2s",
                           "--allocation_strategy=free_ratio_first", NULL};
    master_start(&mm, extra);
    assert_serving(&mm);

    char body[1 << 14];
    assert_int_equal(http_get(mm.metrics, "/metrics", body, sizeof body), 200);
    assert_non_null(strstr(body, "\nmaster_key_count 0\n"));
    assert_non_null(strstr(body, "\nmaster_total_capacity_bytes 0\n"));
    assert_non_null(strstr(body, "\nmaster_active_clients 0\n"));
    assert_int_equal(http_get(mm.metrics, "/get_all_segments", body, sizeof body), 200);
    assert_string_equal(body, "");
    assert_int_equal(http_get(mm.metrics, "/get_all_keys", body, sizeof body), 200);
    assert_string_equal(body, "");
    assert_int_equal(http_get(mm.metrics, "/get_segments_detail", body, sizeof body), 200);
    assert_string_equal(body, "{\"total_segments\":0,\"segments\":[]}");
    assert_int_equal(http_get(mm.metrics, "/query_key?key=x", body, sizeof body), 404);
    assert_int_equal(http_get(mm.metrics, "/metrics/summary", body, sizeof body), 200);
    assert_int_equal(http_get(mm.metrics, "/no_such_path", body, sizeof body), 404);

    /* metadata server round trip */
    static const char put[] = "PUT /metadata?key=mooncake/ram/x HTTP/1.1\r\nHost: h\r\n"
                              "Connection: close\r\nContent-Length: 7\r\n\r\n{\"a\":1}";
    assert_int_equal(http_raw(mm.meta, put, sizeof put - 1, body, sizeof body), 200);
    assert_int_equal(http_get(mm.meta, "/metadata?key=mooncake/ram/x", body, sizeof body), 200);
    assert_string_equal(body, "{\"a\":1}");

    /* garbage on the admin and RPC ports */
    static const char garbage[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n";
    http_raw(mm.metrics, garbage, sizeof garbage - 1, NULL, 0);
    http_raw(mm.metrics, "GET /health HTTP/1.1\r\nHo", 24, NULL, 0);
    char junk[4096];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)(i * 131 + 7);
    http_raw(mm.rpc, junk, sizeof junk, NULL, 0);
    http_raw(mm.rpc, "", 0, NULL, 0);
    assert_true(th_alive(&mm.p));
    assert_serving(&mm);

    assert_int_equal(th_signal(&mm.p, SIGTERM), 0);
    assert_int_equal(exit_code(th_finish(&mm.p, WAIT_MS)), 0);
}

static void test_sigint(void **state)
{
    master_t mm;
    master_start(&mm, NULL);
    assert_serving(&mm);
    assert_int_equal(th_signal(&mm.p, SIGINT), 0);
    assert_int_equal(exit_code(th_finish(&mm.p, WAIT_MS)), 0);
}

/* Runs the binary with args through /bin/sh so that stderr joins stdout;
 * collects everything it prints into out and returns its exit code. */
static int run_capture(const char *const *args, char *out, size_t cap)
{
    char *argv[24] = {"sh", "-c", "exec \"$0\" \"$@\" 2>&1", bin};
    int n = 4;
    for (int i = 0; args[i] && n < 23; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    th_proc_t p;
    assert_int_equal(th_spawn(&p, "/bin/sh", argv), 0);
    size_t len = 0;
    out[0] = '\0';
    for (;;) {
        char line[1024];
        int rc = th_read_line(&p, line, sizeof line, WAIT_MS);
        if (rc == -EPIPE) break;
        if (rc) fail_msg("no end of output (%d)", rc);
        int k = snprintf(out + len, cap - len, "%s\n", line);
        if (k > 0 && (size_t)k < cap - len) len += (size_t)k;
    }
    return exit_code(th_finish(&p, WAIT_MS));
}

static void expect_bad(const char *const *args, const char *n1, const char *n2)
{
    static char out[1 << 15];
    int code = run_capture(args, out, sizeof out);
    if (code != 2) fail_msg("'%s': exit %d, want 2; output:\n%s", args[0], code, out);
    if (!strstr(out, "usage: mooncake_master")) fail_msg("no usage in:\n%s", out);
    if (n1 && !strstr(out, n1)) fail_msg("'%s' not in:\n%s", n1, out);
    if (n2 && !strstr(out, n2)) fail_msg("'%s' not in:\n%s", n2, out);
}

static void test_bad_command_lines(void **state)
{
    expect_bad((const char *[]){"--bogus_flag=1", NULL}, "unknown flag '--bogus_flag'", NULL);
    expect_bad((const char *[]){"--eviction_ratio=2", NULL}, "--eviction_ratio", "'2'");
    expect_bad((const char *[]){"--port", "70000", NULL}, "--port", "'70000'");
    expect_bad((const char *[]){"--default_kv_lease_ttl=10x", NULL}, "--default_kv_lease_ttl",
               "'10x'");
    expect_bad((const char *[]){"--allocation_strategy", "nope", NULL}, "--allocation_strategy",
               "'nope'");
    expect_bad((const char *[]){"--metrics_port", NULL}, "--metrics_port", "needs a value");
    expect_bad((const char *[]){"stray", NULL}, "unexpected argument 'stray'", NULL);
    expect_bad((const char *[]){"--enable_ha", NULL}, "--enable_ha", "--etcd_endpoints");
    expect_bad((const char *[]){"--enable_ha", "--etcd_endpoints=127.0.0.1:1", NULL},
               "--rpc_address", "reachable");
    expect_bad((const char *[]){"--enable_ha", "--etcd_endpoints=127.0.0.1:1",
                                "--rpc_address=127.0.0.1", "--ha_backend_type=zookeeper", NULL},
               "--ha_backend_type", "zookeeper");
    expect_bad((const char *[]){"--rpc_interface=nosuchif0", NULL}, "nosuchif0", NULL);

    char path[] = "/tmp/test_master_proc_XXXXXX.json";
    int fd = mkstemps(path, 5);
    assert_true(fd >= 0);
    static const char cfg[] = "{\n  \"rpc_port\": 1,\n  \"metrics_port\": 2,\n}\n";
    assert_int_equal(write(fd, cfg, sizeof cfg - 1), (ssize_t)(sizeof cfg - 1));
    close(fd);
    char arg[128];
    snprintf(arg, sizeof arg, "--config_path=%s", path);
    expect_bad((const char *[]){arg, NULL}, "line 4", "column");
    unlink(path);

    static char out[1 << 15];
    assert_int_equal(run_capture((const char *[]){"--help", NULL}, out, sizeof out), 0);
    assert_non_null(strstr(out, "usage: mooncake_master"));
    assert_non_null(strstr(out, "--eviction_high_watermark_ratio"));
}

static void test_config_file_and_port_in_use(void **state)
{
    /* a config file sets the lease; explicit flags (ports 0) win over its ports */
    char path[] = "/tmp/test_master_proc_XXXXXX.json";
    int fd = mkstemps(path, 5);
    assert_true(fd >= 0);
    static const char cfg[] = "{\"rpc_port\": 1, \"metrics_port\": 1, \"client_live_ttl_sec\": 3,"
                              " \"default_kv_lease_ttl\": \"500ms\", \"enable_ha\": false}";
    assert_int_equal(write(fd, cfg, sizeof cfg - 1), (ssize_t)(sizeof cfg - 1));
    close(fd);
    char arg[128];
    snprintf(arg, sizeof arg, "--config_path=%s", path);
    master_t mm;
    master_start(&mm, (const char *[]){arg, "--rpc_port=0", NULL});
    unlink(path);
    assert_serving(&mm);

    /* a second master on the first one's metrics port fails to start: exit 1 */
    char port[32];
    snprintf(port, sizeof port, "--metrics_port=%u", mm.metrics);
    static char out[1 << 15];
    int code = run_capture((const char *[]){"--port=0", "--rpc_address=127.0.0.1",
                                            "--metrics_host=127.0.0.1", port, NULL},
                           out, sizeof out);
    if (code != 1) fail_msg("exit %d, want 1; output:\n%s", code, out);
    assert_non_null(strstr(out, "metrics cannot serve"));

    assert_serving(&mm);
    assert_int_equal(th_signal(&mm.p, SIGTERM), 0);
    assert_int_equal(exit_code(th_finish(&mm.p, WAIT_MS)), 0);
}

/* Polls the admin endpoint until its body equals want, for up to WAIT_MS. */
static void wait_body(uint16_t port, const char *target, const char *want)
{
    char body[4096];
    for (int waited = 0;; waited += 20) {
        assert_int_equal(http_get(port, target, body, sizeof body), 200);
        if (!strcmp(body, want)) return;
        if (waited > WAIT_MS) fail_msg("%s: '%s', want '%s'", target, body, want);
        poll(NULL, 0, 20);
    }
}

/* State made through the RPC shows on the admin port, and the tick thread
 * expires a client that stops heartbeating (its segment and objects go). */
static void test_rpc_and_admin(void **state)
{
    master_t mm;
    master_start(&mm, (const char *[]){"--client_ttl=1", "--default_kv_lease_ttl=100ms", NULL});
    char addr[64], body[1 << 14];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", mm.rpc);
    mc_master_client_t *c = NULL;
    assert_int_equal(mc_master_client_connect(addr, &c), 0);
    mc_uuid_t me = {11, 22};
    mc_segment_t seg;
    memset(&seg, 0, sizeof seg);
    seg.id = (mc_uuid_t){33, 44};
    snprintf(seg.name, sizeof seg.name, "127.0.0.1:17000");
    snprintf(seg.te_endpoint, sizeof seg.te_endpoint, "127.0.0.1:17000");
    snprintf(seg.protocol, sizeof seg.protocol, "tcp");
    seg.base = 0x7f0000000000ull;
    seg.size = 16ull << 20;
    assert_int_equal(mc_master_client_mount_segment(c, &seg, me), 0);
    mc_replicate_config_t rc = {.replica_num = 1};
    mc_replica_t *r = NULL;
    size_t n = 0;
    assert_int_equal(mc_master_client_put_start(c, me, "obj/1", 8192, &rc, &r, &n), 0);
    assert_int_equal(n, 1);
    free(r);
    assert_int_equal(mc_master_client_put_end(c, me, "obj/1"), 0);

    assert_int_equal(http_get(mm.metrics, "/get_all_segments", body, sizeof body), 200);
    assert_string_equal(body, "127.0.0.1:17000\n");
    assert_int_equal(http_get(mm.metrics, "/get_all_keys", body, sizeof body), 200);
    assert_string_equal(body, "obj/1\n");
    assert_int_equal(http_get(mm.metrics, "/metrics", body, sizeof body), 200);
    assert_non_null(strstr(body, "\nmaster_key_count 1\n"));
    assert_non_null(strstr(body, "\nmaster_total_capacity_bytes 16777216\n"));
    assert_non_null(strstr(body, "\nmaster_active_clients 1\n"));
    assert_int_equal(http_get(mm.metrics, "/query_key?key=obj/1", body, sizeof body), 200);
    assert_non_null(strstr(body, "\"transport_endpoint\":\"127.0.0.1:17000\""));
    assert_non_null(strstr(body, "\"size\":8192"));

    /* no more pings: the client dies after its TTL, its segment and object go */
    wait_body(mm.metrics, "/get_all_segments", "");
    wait_body(mm.metrics, "/get_all_keys", "");
    assert_int_equal(http_get(mm.metrics, "/metrics", body, sizeof body), 200);
    assert_non_null(strstr(body, "\nmaster_active_clients 0\n"));
    /* the client is told to re-mount */
    int st = 0;
    assert_int_equal(mc_master_client_ping(c, me, &st), 0);
    assert_int_equal(st, MC_CLIENT_NEED_REMOUNT);
    mc_master_client_close(c);

    assert_int_equal(th_signal(&mm.p, SIGTERM), 0);
    assert_int_equal(exit_code(th_finish(&mm.p, WAIT_MS)), 0);
}

static int teardown(void **state)
{
    th_reap_all();
    return 0;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (th_bin_path(bin, sizeof bin, "mooncake_master")) {
        fprintf(stderr, "MC_BIN_DIR is not set\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_serves_and_stops, teardown),
        cmocka_unit_test_teardown(test_sigint, teardown),
        cmocka_unit_test_teardown(test_bad_command_lines, teardown),
        cmocka_unit_test_teardown(test_config_file_and_port_in_use, teardown),
        cmocka_unit_test_teardown(test_rpc_and_admin, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
