/* test_master_admin.c: the admin/metrics HTTP server (master_admin.h) in
 * process, over a real master core holding two segments and a few objects:
 * every endpoint's status, content type and body, the read lease granted by
 * /query_key, URL-decoded keys, 404/405/413 with the server still serving,
 * garbage bytes on the socket, and the extra-metrics hook. Requests go over
 * loopback sockets with Connection: close and are read to EOF. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "base_time.h"
#include "master_admin.h"
#include "master_flags.h"
#include "master_service.h"
#include "net_sock.h"

typedef struct {
    int status;
    char head[4096];
    char *body; /* malloc'd, NUL-terminated */
    size_t blen;
} resp_t;

typedef struct {
    mc_master_t *m;
    mc_master_admin_t *a;
    uint16_t port;
} fix_t;

/* Sends raw bytes and reads the answer until the server closes it. */
static void raw(uint16_t port, const char *req, size_t len, resp_t *r)
{
    int fd;
    assert_int_equal(mc_sock_connect("127.0.0.1", port, 5000, &fd), 0);
    mc_sock_set_timeout(fd, 10000);
    int rc = mc_sock_send_all(fd, req, len);
    assert_true(rc == 0 || rc == -ECONNRESET || rc == -EPIPE);
    shutdown(fd, SHUT_WR);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (n + 1 == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t k = recv(fd, buf + n, cap - 1 - n, 0);
        if (k <= 0) break;
        n += (size_t)k;
    }
    close(fd);
    buf[n] = '\0';
    memset(r, 0, sizeof *r);
    if (n >= 12 && !strncmp(buf, "HTTP/1.", 7)) r->status = atoi(buf + 9);
    char *sep = strstr(buf, "\r\n\r\n");
    size_t hl = sep ? (size_t)(sep - buf) : n;
    snprintf(r->head, sizeof r->head, "%.*s", (int)hl, buf);
    const char *b = sep ? sep + 4 : buf + n;
    r->blen = n - (size_t)(b - buf);
    r->body = malloc(r->blen + 1);
    memcpy(r->body, b, r->blen + 1);
    free(buf);
}

static int req(uint16_t port, const char *method, const char *target, resp_t *r)
{
    char q[2048];
    int n = snprintf(q, sizeof q, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                     method, target);
    raw(port, q, (size_t)n, r);
    return r->status;
}

static void has(const char *hay, const char *needle)
{
    if (!strstr(hay, needle)) fail_msg("'%s' not in:\n%s", needle, hay);
}

static void extra_metrics(FILE *out, void *arg)
{
    fprintf(out, "master_test_extra_total %d\n", *(int *)arg);
}

static int extra_value = 42;

static mc_segment_t seg(const char *name, uint64_t lo, uint64_t base)
{
    mc_segment_t s;
    memset(&s, 0, sizeof s);
    s.id.hi = 7;
    s.id.lo = lo;
    snprintf(s.name, sizeof s.name, "%s", name);
    snprintf(s.te_endpoint, sizeof s.te_endpoint, "%s", name);
    snprintf(s.protocol, sizeof s.protocol, "tcp");
    s.base = base;
    s.size = 64ull << 20;
    return s;
}

static void put(mc_master_t *m, mc_uuid_t c, const char *key, uint64_t size, uint32_t replicas)
{
    mc_replicate_config_t rc = {.replica_num = replicas};
    mc_replica_t *r = NULL;
    size_t n = 0;
    assert_int_equal(mc_master_put_start(m, c, key, size, &rc, mc_now_ms(), &r, &n), 0);
    assert_int_equal(n, replicas);
    free(r);
    assert_int_equal(mc_master_put_end(m, c, key, mc_now_ms()), 0);
}

static int setup(void **state)
{
    fix_t *f = calloc(1, sizeof *f);
    mc_master_config_t cfg;
    mc_master_config_default(&cfg);
    assert_int_equal(mc_master_new(&cfg, &f->m), 0);
    mc_uuid_t c = {1, 2};
    mc_segment_t a = seg("10.0.0.1:12345", 1, 0x100000000ull);
    mc_segment_t b = seg("10.0.0.2:12346", 2, 0x200000000ull);
    assert_int_equal(mc_master_mount_segment(f->m, &a, c, mc_now_ms()), 0);
    assert_int_equal(mc_master_mount_segment(f->m, &b, c, mc_now_ms()), 0);
    put(f->m, c, "k1", 4096, 2);
    put(f->m, c, "a b/c?", 1000, 1);
    assert_int_equal(
        mc_master_admin_start(f->m, "127.0.0.1", 0, extra_metrics, &extra_value, &f->a), 0);
    f->port = mc_master_admin_port(f->a);
    assert_true(f->port > 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fix_t *f = *state;
    mc_master_admin_stop(f->a);
    mc_master_free(f->m);
    free(f);
    return 0;
}

static void test_health_and_metrics(void **state)
{
    fix_t *f = *state;
    resp_t r;
    assert_int_equal(req(f->port, "GET", "/health", &r), 200);
    assert_string_equal(r.body, "{\"status\":\"ok\",\"role\":\"master\",\"service_ready\":true}");
    has(r.head, "application/json");
    free(r.body);

    assert_int_equal(req(f->port, "HEAD", "/health", &r), 200);
    assert_int_equal(r.blen, 0);
    free(r.body);

    assert_int_equal(req(f->port, "GET", "/metrics", &r), 200);
    has(r.head, "text/plain; version=0.0.4");
    has(r.body, "# TYPE master_key_count gauge\nmaster_key_count 2\n");
    has(r.body, "\nmaster_total_capacity_bytes 134217728\n");
    has(r.body, "\nmaster_allocated_bytes ");
    has(r.body, "\nmaster_soft_pin_key_count 0\n");
    has(r.body, "\nmaster_active_clients 1\n");
    has(r.body, "\nmaster_evicted_key_count 0\n");
    has(r.body, "\nmaster_evicted_size_bytes 0\n");
    has(r.body, "\nmaster_put_start_discard_cnt 0\n");
    has(r.body, "\nmaster_put_start_release_cnt 0\n");
    has(r.body, "\nmaster_test_extra_total 42\n");
    free(r.body);

    assert_int_equal(req(f->port, "GET", "/metrics/summary", &r), 200);
    has(r.body, "Keys: 2 (soft-pinned 0)");
    has(r.body, "of 128.00 MB");
    has(r.body, "Clients: 1 active, segments: 2");
    free(r.body);
}

static void test_lists(void **state)
{
    fix_t *f = *state;
    resp_t r;
    assert_int_equal(req(f->port, "GET", "/get_all_keys", &r), 200);
    assert_int_equal(r.blen, strlen("k1\na b/c?\n"));
    has(r.body, "k1\n");
    has(r.body, "a b/c?\n");
    free(r.body);

    /* a key with a line break, a backslash and a tab stays one line */
    put(f->m, (mc_uuid_t){1, 2}, "two\nlines\\\t", 100, 1);
    assert_int_equal(req(f->port, "GET", "/get_all_keys", &r), 200);
    has(r.body, "two\\nlines\\\\\\x09\n");
    assert_null(strstr(r.body, "two\n"));
    free(r.body);
    assert_int_equal(mc_master_remove(f->m, "two\nlines\\\t", 1, mc_now_ms()), 0);

    assert_int_equal(req(f->port, "GET", "/get_all_segments", &r), 200);
    assert_int_equal(r.blen, 2 * strlen("10.0.0.1:12345\n"));
    has(r.body, "10.0.0.1:12345\n");
    has(r.body, "10.0.0.2:12346\n");
    free(r.body);

    assert_int_equal(req(f->port, "GET", "/query_segment?segment=10.0.0.2:12346", &r), 200);
    has(r.body, "10.0.0.2:12346\nUsed(bytes): ");
    has(r.body, "\nCapacity(bytes) : 67108864\n");
    free(r.body);
    assert_int_equal(req(f->port, "GET", "/query_segment?segment=nope", &r), 404);
    free(r.body);
    assert_int_equal(req(f->port, "GET", "/query_segment", &r), 400);
    free(r.body);

    assert_int_equal(req(f->port, "GET", "/get_segments_detail", &r), 200);
    json_error_t je;
    json_t *j = json_loads(r.body, 0, &je);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "total_segments")), 2);
    json_t *segs = json_object_get(j, "segments");
    assert_int_equal(json_array_size(segs), 2);
    int seen = 0;
    for (size_t i = 0; i < 2; i++) {
        json_t *s = json_array_get(segs, i);
        const char *name = json_string_value(json_object_get(s, "segment_name"));
        assert_non_null(name);
        if (strcmp(name, "10.0.0.1:12345") != 0) continue;
        seen = 1;
        assert_string_equal(json_string_value(json_object_get(s, "segment_id")), "7-1");
        assert_string_equal(json_string_value(json_object_get(s, "client_id")), "1-2");
        assert_string_equal(json_string_value(json_object_get(s, "base_address")), "0x100000000");
        assert_int_equal(json_integer_value(json_object_get(s, "size_bytes")), 64 << 20);
        assert_string_equal(json_string_value(json_object_get(s, "size_human")), "64.00 MB");
        assert_string_equal(json_string_value(json_object_get(s, "te_endpoint")), "10.0.0.1:12345");
        assert_string_equal(json_string_value(json_object_get(s, "protocol")), "tcp");
        assert_string_equal(json_string_value(json_object_get(s, "status")), "OK");
        assert_true(json_integer_value(json_object_get(s, "allocator_used_bytes")) >= 4096);
        assert_int_equal(json_integer_value(json_object_get(s, "allocator_capacity_bytes")),
                         64 << 20);
        assert_true(json_is_real(json_object_get(s, "allocator_usage_percent")));
    }
    assert_true(seen);
    json_decref(j);
    free(r.body);
}

static void test_query_key(void **state)
{
    fix_t *f = *state;
    resp_t r;
    /* no lease yet: remove would succeed, so check on the other key after querying it */
    assert_int_equal(req(f->port, "GET", "/query_key?key=k1", &r), 200);
    has(r.head, "application/json");
    json_error_t je;
    json_t *j = json_loads(r.body, 0, &je);
    assert_non_null(j);
    assert_true(json_is_true(json_object_get(j, "success")));
    json_t *data = json_object_get(j, "data");
    assert_int_equal(json_array_size(data), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *d = json_array_get(data, i);
        const char *ep = json_string_value(json_object_get(d, "transport_endpoint"));
        assert_non_null(ep);
        assert_true(!strcmp(ep, "10.0.0.1:12345") || !strcmp(ep, "10.0.0.2:12346"));
        assert_true(json_integer_value(json_object_get(d, "buffer_address")) >= 0x100000000ll);
        assert_int_equal(json_integer_value(json_object_get(d, "size")), 4096);
    }
    json_decref(j);
    free(r.body);
    /* the query granted a read lease, as upstream's */
    assert_int_equal(mc_master_remove(f->m, "k1", 0, mc_now_ms()), MC_ERR_OBJECT_HAS_LEASE);

    /* URL-decoded key */
    assert_int_equal(req(f->port, "GET", "/query_key?key=a%20b%2Fc%3F", &r), 200);
    has(r.body, "\"size\":1000");
    free(r.body);

    assert_int_equal(req(f->port, "GET", "/query_key?key=nope", &r), 404);
    assert_string_equal(r.body, "{\"success\":false,\"error_code\":-704,"
                                "\"error_message\":\"OBJECT_NOT_FOUND\"}");
    free(r.body);
    assert_int_equal(req(f->port, "GET", "/query_key", &r), 400);
    has(r.body, "\"error_code\":-600");
    free(r.body);
    assert_int_equal(req(f->port, "GET", "/query_key?key=", &r), 400);
    free(r.body);
}

static void test_remove_all(void **state)
{
    fix_t *f = *state;
    resp_t r;
    /* k1 has a lease from a query; the other key goes */
    assert_int_equal(req(f->port, "GET", "/query_key?key=k1", &r), 200);
    free(r.body);
    assert_int_equal(req(f->port, "GET", "/api/v1/remove_all", &r), 405);
    has(r.head, "Allow: POST");
    free(r.body);
    assert_int_equal(req(f->port, "POST", "/api/v1/remove_all", &r), 200);
    assert_string_equal(r.body, "{\"removed_count\":1}");
    free(r.body);
    assert_int_equal(req(f->port, "GET", "/metrics", &r), 200);
    has(r.body, "\nmaster_key_count 1\n");
    free(r.body);
}

static void test_bad_requests(void **state)
{
    fix_t *f = *state;
    resp_t r;
    assert_int_equal(req(f->port, "GET", "/nope", &r), 404);
    free(r.body);
    assert_int_equal(req(f->port, "GET", "/metrics/", &r), 404);
    free(r.body);
    assert_int_equal(req(f->port, "POST", "/health", &r), 405);
    has(r.head, "Allow: GET, HEAD");
    free(r.body);
    assert_int_equal(req(f->port, "DELETE", "/metrics", &r), 405);
    free(r.body);

    static const char big[] = "POST /api/v1/remove_all HTTP/1.1\r\nHost: x\r\n"
                              "Content-Length: 100000000\r\n\r\nabc";
    raw(f->port, big, sizeof big - 1, &r);
    assert_int_equal(r.status, 413);
    free(r.body);

    /* a small body is read and dropped */
    static const char small[] = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                "Content-Length: 5\r\n\r\nhello";
    raw(f->port, small, sizeof small - 1, &r);
    assert_int_equal(r.status, 200);
    free(r.body);

    static const char garbage[] = "\x00\x01\x02\xff garbage\r\n\r\n";
    raw(f->port, garbage, sizeof garbage - 1, &r);
    assert_true(r.status == 0 || r.status == 400);
    free(r.body);
    raw(f->port, "GET /health HTTP/1.1\r\nHost:", 26, &r); /* truncated */
    free(r.body);
    raw(f->port, "", 0, &r); /* connect and close */
    free(r.body);

    assert_int_equal(req(f->port, "GET", "/health", &r), 200);
    free(r.body);
}

static void test_bind_errors(void **state)
{
    fix_t *f = *state;
    mc_master_admin_t *a2 = NULL;
    /* the port is taken */
    assert_true(mc_master_admin_start(f->m, "127.0.0.1", f->port, NULL, NULL, &a2) < 0);
    assert_true(mc_master_admin_start(f->m, "no.such.host.invalid", 0, NULL, NULL, &a2) < 0);
    mc_master_admin_stop(NULL);
}

/* The daemon's flag defaults are the core's defaults. */
static void test_flag_defaults_match_core(void **state)
{
    mc_master_flags_t f;
    mc_master_config_t c;
    mc_master_flags_default(&f);
    mc_master_config_default(&c);
    assert_int_equal(f.core.default_kv_lease_ttl_ms, c.default_kv_lease_ttl_ms);
    assert_int_equal(f.core.default_kv_soft_pin_ttl_ms, c.default_kv_soft_pin_ttl_ms);
    assert_int_equal(f.core.max_kv_soft_pin_ttl_ms, c.max_kv_soft_pin_ttl_ms);
    assert_int_equal(f.core.allow_evict_soft_pinned_objects, c.allow_evict_soft_pinned_objects);
    assert_true(f.core.eviction_ratio == c.eviction_ratio);
    assert_true(f.core.eviction_high_watermark_ratio == c.eviction_high_watermark_ratio);
    assert_int_equal(f.core.client_ttl_ms, c.client_ttl_ms);
    assert_int_equal(f.core.put_start_discard_timeout_ms, c.put_start_discard_timeout_ms);
    assert_int_equal(f.core.put_start_release_timeout_ms, c.put_start_release_timeout_ms);
    assert_int_equal(f.core.allocation_strategy, c.allocation_strategy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_health_and_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bind_errors, setup, teardown),
        cmocka_unit_test(test_flag_defaults_match_core),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
