/* test_master_flags.c: mooncake_master's flag and config-file parser
 * (master_flags.h): upstream's defaults, every flag form (--f=v, --f v, -f,
 * bare and --no booleans), durations, bounds, unknown flags and bad values with
 * messages naming them, the accepted-and-ignored upstream flags, and the JSON
 * config file with command-line precedence and syntax errors located by line
 * and column. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "master_flags.h"

/* Parses the NULL-terminated flags (argv[0] supplied here). */
static int parse(mc_master_flags_t *f, char *err, size_t errlen, ...)
{
    char *argv[64] = {"mooncake_master"};
    int argc = 1;
    va_list ap;
    va_start(ap, errlen);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 63;)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    return mc_master_flags_parse(f, argc, argv, err, errlen);
}

#define PARSE_OK(f, ...)                                                                           \
    do {                                                                                           \
        char e_[512];                                                                              \
        int rc_ = parse(f, e_, sizeof e_, __VA_ARGS__, (char *)NULL);                              \
        if (rc_ != 0) fail_msg("parse failed (%d): %s", rc_, e_);                                  \
    } while (0)

/* Expects -EINVAL and every needle in the message. */
static void parse_bad(const char *needle1, const char *needle2, ...)
{
    char *argv[64] = {"mooncake_master"};
    int argc = 1;
    va_list ap;
    va_start(ap, needle2);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 63;)
        argv[argc++] = a;
    va_end(ap);
    mc_master_flags_t f;
    char err[512];
    int rc = mc_master_flags_parse(&f, argc, argv, err, sizeof err);
    if (rc != -EINVAL) fail_msg("'%s ...' gave %d, want -EINVAL", argc > 1 ? argv[1] : "", rc);
    if (needle1 && !strstr(err, needle1)) fail_msg("message '%s' lacks '%s'", err, needle1);
    if (needle2 && !strstr(err, needle2)) fail_msg("message '%s' lacks '%s'", err, needle2);
}

static void test_defaults(void **state)
{
    mc_master_flags_t f;
    PARSE_OK(&f, (char *)NULL);
    assert_int_equal(f.port, 50051);
    assert_int_equal(f.rpc_port, 0);
    assert_int_equal(mc_master_flags_rpc_port(&f), 50051);
    assert_string_equal(f.rpc_address, "0.0.0.0");
    assert_int_equal(f.metrics_port, 9003);
    assert_string_equal(f.metrics_host, "0.0.0.0");
    assert_int_equal(f.enable_http_metadata_server, 0);
    assert_int_equal(f.http_metadata_server_port, 8080);
    assert_string_equal(f.http_metadata_server_host, "0.0.0.0");
    assert_string_equal(f.cluster_id, "mooncake_cluster");
    assert_int_equal(f.max_threads, 16);
    assert_int_equal(f.rpc_thread_num, 0);
    assert_string_equal(f.config_path, "");
    const mc_master_config_t *c = &f.core;
    assert_int_equal(c->default_kv_lease_ttl_ms, 10000);
    assert_int_equal(c->default_kv_soft_pin_ttl_ms, 1800000);
    assert_int_equal(c->max_kv_soft_pin_ttl_ms, 86400000);
    assert_int_equal(c->allow_evict_soft_pinned_objects, 1);
    assert_true(c->eviction_ratio == 0.05);
    assert_true(c->eviction_high_watermark_ratio == 0.9);
    assert_int_equal(c->client_ttl_ms, 10000);
    assert_int_equal(c->put_start_discard_timeout_ms, 30000);
    assert_int_equal(c->put_start_release_timeout_ms, 600000);
    assert_int_equal(c->allocation_strategy, MC_ALLOC_RANDOM);
    assert_int_equal(f.ignored_count, 0);

    mc_master_flags_t g;
    mc_master_flags_default(&g);
    assert_memory_equal(&f, &g, sizeof f);
}

static void test_forms(void **state)
{
    mc_master_flags_t f;
    /* --f=v and --f v, one and two dashes */
    PARSE_OK(&f, "--port=1234", "--rpc_address", "127.0.0.1", "-metrics_port=0", "-metrics_host",
             "::1", "--rpc_thread_num=4", "--max_threads", "8", "--http_metadata_server_port=0",
             "--http_metadata_server_host", "127.0.0.1", "--cluster_id=my.cluster-1_x");
    assert_int_equal(f.port, 1234);
    assert_int_equal(mc_master_flags_rpc_port(&f), 1234);
    assert_string_equal(f.rpc_address, "127.0.0.1");
    assert_int_equal(f.metrics_port, 0);
    assert_string_equal(f.metrics_host, "::1");
    assert_int_equal(f.rpc_thread_num, 4);
    assert_int_equal(f.max_threads, 8);
    assert_int_equal(f.http_metadata_server_port, 0);
    assert_string_equal(f.http_metadata_server_host, "127.0.0.1");
    assert_string_equal(f.cluster_id, "my.cluster-1_x");

    /* rpc_port wins over port when nonzero; later flags win over earlier ones */
    PARSE_OK(&f, "--port=1", "--rpc_port", "2", "--port", "3");
    assert_int_equal(f.port, 3);
    assert_int_equal(mc_master_flags_rpc_port(&f), 2);

    /* an empty string value */
    PARSE_OK(&f, "--rpc_interface=");
    assert_string_equal(f.rpc_interface, "");

    PARSE_OK(&f, "--eviction_ratio=0.25", "--eviction_high_watermark_ratio", "1", "--client_ttl=60",
             "--put_start_discard_timeout_sec", "5", "--put_start_release_timeout_sec=7",
             "--allocation_strategy", "free_ratio_first");
    assert_true(f.core.eviction_ratio == 0.25);
    assert_true(f.core.eviction_high_watermark_ratio == 1.0);
    assert_int_equal(f.core.client_ttl_ms, 60000);
    assert_int_equal(f.core.put_start_discard_timeout_ms, 5000);
    assert_int_equal(f.core.put_start_release_timeout_ms, 7000);
    assert_int_equal(f.core.allocation_strategy, MC_ALLOC_FREE_RATIO_FIRST);
    PARSE_OK(&f, "--allocation_strategy=random", "--eviction_ratio", "0");
    assert_int_equal(f.core.allocation_strategy, MC_ALLOC_RANDOM);
    assert_true(f.core.eviction_ratio == 0.0);

    /* "--" ends the flags */
    PARSE_OK(&f, "--port=7", "--");
    assert_int_equal(f.port, 7);
}

static void test_bools(void **state)
{
    mc_master_flags_t f;
    PARSE_OK(&f, "--enable_http_metadata_server");
    assert_int_equal(f.enable_http_metadata_server, 1);
    PARSE_OK(&f, "--enable_http_metadata_server=false");
    assert_int_equal(f.enable_http_metadata_server, 0);
    PARSE_OK(&f, "--enable_http_metadata_server=1");
    assert_int_equal(f.enable_http_metadata_server, 1);
    PARSE_OK(&f, "--enable_http_metadata_server=true", "--allow_evict_soft_pinned_objects=0");
    assert_int_equal(f.enable_http_metadata_server, 1);
    assert_int_equal(f.core.allow_evict_soft_pinned_objects, 0);
    PARSE_OK(&f, "--noallow_evict_soft_pinned_objects");
    assert_int_equal(f.core.allow_evict_soft_pinned_objects, 0);
    PARSE_OK(&f, "-enable_http_metadata_server", "--metrics_port=5");
    assert_int_equal(f.enable_http_metadata_server, 1);
    assert_int_equal(f.metrics_port, 5);
    /* a following true/false word is the value */
    PARSE_OK(&f, "--enable_http_metadata_server", "false", "--allow_evict_soft_pinned_objects",
             "FALSE");
    assert_int_equal(f.enable_http_metadata_server, 0);
    assert_int_equal(f.core.allow_evict_soft_pinned_objects, 0);
    PARSE_OK(&f, "--enable_http_metadata_server", "1");
    assert_int_equal(f.enable_http_metadata_server, 1);
    parse_bad("enable_http_metadata_server", "'maybe'", "--enable_http_metadata_server=maybe",
              (char *)NULL);
    parse_bad("unexpected argument 'maybe'", NULL, "--enable_http_metadata_server", "maybe",
              (char *)NULL);
    parse_bad("unknown flag '--noport'", NULL, "--noport", (char *)NULL);
}

static void test_durations(void **state)
{
    uint64_t ms;
    assert_int_equal(mc_master_parse_duration_ms("1234", &ms), 0);
    assert_int_equal(ms, 1234);
    assert_int_equal(mc_master_parse_duration_ms("500ms", &ms), 0);
    assert_int_equal(ms, 500);
    assert_int_equal(mc_master_parse_duration_ms("10s", &ms), 0);
    assert_int_equal(ms, 10000);
    assert_int_equal(mc_master_parse_duration_ms("1m", &ms), 0);
    assert_int_equal(ms, 60000);
    assert_int_equal(mc_master_parse_duration_ms("1h", &ms), 0);
    assert_int_equal(ms, 3600000);
    assert_int_equal(mc_master_parse_duration_ms("0", &ms), 0);
    assert_int_equal(ms, 0);
    const char *bad[] = {"",
                         "s",
                         "10x",
                         "-5",
                         "1.5s",
                         " 10",
                         "10 s",
                         "10S",
                         "+3",
                         "1d",
                         "5us",
                         "99999999999999999999",
                         "9999999999999999h"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (mc_master_parse_duration_ms(bad[i], &ms) != -EINVAL)
            fail_msg("duration '%s' accepted", bad[i]);

    mc_master_flags_t f;
    PARSE_OK(&f, "--default_kv_lease_ttl=10s", "--default_kv_soft_pin_ttl", "2m",
             "--max_kv_soft_pin_ttl=1h");
    assert_int_equal(f.core.default_kv_lease_ttl_ms, 10000);
    assert_int_equal(f.core.default_kv_soft_pin_ttl_ms, 120000);
    assert_int_equal(f.core.max_kv_soft_pin_ttl_ms, 3600000);
    PARSE_OK(&f, "--default_kv_lease_ttl", "500ms");
    assert_int_equal(f.core.default_kv_lease_ttl_ms, 500);
    PARSE_OK(&f, "--default_kv_lease_ttl=250");
    assert_int_equal(f.core.default_kv_lease_ttl_ms, 250);
    parse_bad("--default_kv_lease_ttl", "'10x'", "--default_kv_lease_ttl=10x", (char *)NULL);
    parse_bad("--default_kv_soft_pin_ttl", "above --max_kv_soft_pin_ttl",
              "--default_kv_soft_pin_ttl=2h", "--max_kv_soft_pin_ttl=1h", (char *)NULL);
}

static void test_bad_values(void **state)
{
    parse_bad("unknown flag '--bogus'", NULL, "--bogus=1", (char *)NULL);
    parse_bad("unknown flag '--bogus'", NULL, "--bogus", (char *)NULL);
    parse_bad("unknown flag '-x'", NULL, "-x", (char *)NULL);
    parse_bad("unexpected argument 'stray'", NULL, "stray", (char *)NULL);
    parse_bad("unexpected argument '-'", NULL, "-", (char *)NULL);
    parse_bad("unexpected argument 'x'", NULL, "--", "x", (char *)NULL);
    parse_bad("--port", "needs a value", "--port", (char *)NULL);
    parse_bad("--port", "'70000'", "--port=70000", (char *)NULL);
    parse_bad("--port", "'-1'", "--port", "-1", (char *)NULL);
    parse_bad("--rpc_port", "'abc'", "--rpc_port=abc", (char *)NULL);
    parse_bad("--metrics_port", "''", "--metrics_port=", (char *)NULL);
    parse_bad("--metrics_port", "'12 '", "--metrics_port=12 ", (char *)NULL);
    parse_bad("--eviction_ratio", "'1.5'", "--eviction_ratio=1.5", (char *)NULL);
    parse_bad("--eviction_ratio", "'-0.1'", "--eviction_ratio", "-0.1", (char *)NULL);
    parse_bad("--eviction_ratio", "'nan'", "--eviction_ratio=nan", (char *)NULL);
    parse_bad("--eviction_high_watermark_ratio", "'x'", "--eviction_high_watermark_ratio=x",
              (char *)NULL);
    parse_bad("--client_ttl", "'0'", "--client_ttl=0", (char *)NULL);
    parse_bad("--client_ttl", "'10s'", "--client_ttl=10s", (char *)NULL);
    parse_bad("--put_start_discard_timeout_sec", "'-3'", "--put_start_discard_timeout_sec=-3",
              (char *)NULL);
    parse_bad("--put_start_release_timeout_sec", "must not be less",
              "--put_start_discard_timeout_sec=100", "--put_start_release_timeout_sec=50",
              (char *)NULL);
    parse_bad("--allocation_strategy", "'cxl'", "--allocation_strategy=cxl", (char *)NULL);
    parse_bad("--allocation_strategy", "'fastest'", "--allocation_strategy", "fastest",
              (char *)NULL);
    parse_bad("--cluster_id", "'a/b'", "--cluster_id=a/b", (char *)NULL);
    parse_bad("--cluster_id", "''", "--cluster_id=", (char *)NULL);
    char longid[200];
    memset(longid, 'a', 129);
    longid[129] = '\0';
    char flag[256];
    snprintf(flag, sizeof flag, "--cluster_id=%s", longid);
    parse_bad("--cluster_id", NULL, flag, (char *)NULL);
    char longhost[400] = "--rpc_address=";
    memset(longhost + 14, 'h', 300);
    longhost[314] = '\0';
    parse_bad("--rpc_address", "longer than", longhost, (char *)NULL);
}

static void test_help_and_ignored(void **state)
{
    mc_master_flags_t f;
    char err[256];
    assert_int_equal(parse(&f, err, sizeof err, "--help", (char *)NULL), MC_MASTER_FLAGS_HELP);
    assert_int_equal(parse(&f, err, sizeof err, "--port=1", "-h", (char *)NULL),
                     MC_MASTER_FLAGS_HELP);
    assert_int_equal(parse(&f, err, sizeof err, "-help", (char *)NULL), MC_MASTER_FLAGS_HELP);

    PARSE_OK(&f, "--enable_ha=false", "--rpc_enable_tcp_no_delay", "--memory_allocator=offset",
             "--etcd_endpoints", "a;b", "--quota_bytes=100", "--offload_cap_ratio=0.3",
             "--noenable_metric_reporting", "--log_dir=/tmp");
    assert_int_equal(f.ignored_count, 6); /* enable_ha and etcd_endpoints are real now */
    assert_int_equal(f.enable_ha, 0);
    assert_string_equal(f.etcd_endpoints, "a;b");
    PARSE_OK(&f, "--enable_ha", "--ha_backend_type=etcd", "--ha_backend_connstring", "h:1");
    assert_int_equal(f.enable_ha, 1);
    assert_string_equal(f.ha_backend_type, "etcd");
    assert_string_equal(f.ha_backend_connstring, "h:1");
    PARSE_OK(&f, "-v=1", "--logtostderr", "--minloglevel", "0");
    assert_int_equal(f.ignored_count, 3);
    parse_bad("--v", "'x'", "-v", "x", (char *)NULL);
    parse_bad("--enable_ha", "'maybe'", "--enable_ha=maybe", (char *)NULL);
    parse_bad("--quota_bytes", "'-1'", "--quota_bytes=-1", (char *)NULL);
    parse_bad("--rpc_conn_timeout_seconds", "'x'", "--rpc_conn_timeout_seconds=x", (char *)NULL);

    /* the usage names implemented flags with defaults and the ignored ones */
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    assert_non_null(m);
    mc_master_flags_usage(m, "mooncake_master");
    fclose(m);
    assert_non_null(strstr(buf, "usage: mooncake_master"));
    assert_non_null(strstr(buf, "--default_kv_lease_ttl"));
    assert_non_null(strstr(buf, "\"50051\""));
    assert_non_null(strstr(buf, "--enable_ha"));
    free(buf);
}

/* Writes text to a fresh temporary file named with suffix; path into buf. */
static void write_tmp(char *buf, size_t cap, const char *suffix, const char *text)
{
    snprintf(buf, cap, "/tmp/test_master_flags_XXXXXX%s", suffix);
    int fd = mkstemps(buf, (int)strlen(suffix));
    assert_true(fd >= 0);
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
}

static void test_config_file(void **state)
{
    char path[256], arg[300];
    write_tmp(path, sizeof path, ".json",
              "{\n"
              "  \"rpc_port\": 6000,\n"
              "  \"rpc_address\": \"127.0.0.1\",\n"
              "  \"metrics_port\": 6001,\n"
              "  \"default_kv_lease_ttl\": \"5s\",\n"
              "  \"default_kv_soft_pin_ttl\": 60000,\n"
              "  \"eviction_ratio\": 0.1,\n"
              "  \"eviction_high_watermark_ratio\": 1.0,\n"
              "  \"client_live_ttl_sec\": 60,\n"
              "  \"allow_evict_soft_pinned_objects\": false,\n"
              "  \"enable_http_metadata_server\": true,\n"
              "  \"http_metadata_server_port\": 8181,\n"
              "  \"allocation_strategy\": \"free_ratio_first\",\n"
              "  \"cluster_id\": \"from_file\",\n"
              "  \"enable_ha\": false,\n"
              "  \"some_future_key\": 3\n"
              "}\n");
    mc_master_flags_t f;
    snprintf(arg, sizeof arg, "--config_path=%s", path);
    PARSE_OK(&f, arg);
    assert_string_equal(f.config_path, path);
    assert_int_equal(f.rpc_port, 6000);
    assert_int_equal(mc_master_flags_rpc_port(&f), 6000);
    assert_string_equal(f.rpc_address, "127.0.0.1");
    assert_int_equal(f.metrics_port, 6001);
    assert_int_equal(f.core.default_kv_lease_ttl_ms, 5000);
    assert_int_equal(f.core.default_kv_soft_pin_ttl_ms, 60000);
    assert_true(f.core.eviction_ratio == 0.1);
    assert_true(f.core.eviction_high_watermark_ratio == 1.0);
    assert_int_equal(f.core.client_ttl_ms, 60000);
    assert_int_equal(f.core.allow_evict_soft_pinned_objects, 0);
    assert_int_equal(f.enable_http_metadata_server, 1);
    assert_int_equal(f.http_metadata_server_port, 8181);
    assert_int_equal(f.core.allocation_strategy, MC_ALLOC_FREE_RATIO_FIRST);
    assert_string_equal(f.cluster_id, "from_file");
    assert_int_equal(f.ignored_count, 0); /* enable_ha is a real key now */

    /* explicit flags win, before or after --config_path, even when equal to the default */
    PARSE_OK(&f, "--rpc_port=7000", arg, "--client_ttl", "10", "--noenable_http_metadata_server",
             "--eviction_ratio=0.05");
    assert_int_equal(f.rpc_port, 7000);
    assert_int_equal(f.core.client_ttl_ms, 10000);
    assert_int_equal(f.enable_http_metadata_server, 0);
    assert_true(f.core.eviction_ratio == 0.05);
    assert_int_equal(f.metrics_port, 6001); /* still from the file */
    unlink(path);

    /* command-line-only keys in the file are ignored; client_ttl is not a file key */
    write_tmp(path, sizeof path, ".json", "{\"port\": 1, \"client_ttl\": 99}");
    snprintf(arg, sizeof arg, "--config_path=%s", path);
    PARSE_OK(&f, arg);
    assert_int_equal(f.port, 50051);
    assert_int_equal(f.core.client_ttl_ms, 10000);
    unlink(path);
}

static void test_config_errors(void **state)
{
    char path[256], arg[300];
    /* trailing comma: a syntax error located by line and column */
    write_tmp(path, sizeof path, ".json", "{\n  \"rpc_port\": 6000,\n  \"metrics_port\": 1,\n}\n");
    snprintf(arg, sizeof arg, "--config_path=%s", path);
    parse_bad("line 4", "column", arg, (char *)NULL);
    parse_bad(path, NULL, arg, (char *)NULL);
    unlink(path);

    write_tmp(path, sizeof path, ".json", "{\"eviction_ratio\": 2}");
    snprintf(arg, sizeof arg, "--config_path=%s", path);
    parse_bad("config key 'eviction_ratio'", "'2'", arg, (char *)NULL);
    /* ... unless the command line sets it */
    mc_master_flags_t f;
    PARSE_OK(&f, arg, "--eviction_ratio=0.5");
    assert_true(f.core.eviction_ratio == 0.5);
    unlink(path);

    write_tmp(path, sizeof path, ".json", "{\"rpc_address\": 5}");
    snprintf(arg, sizeof arg, "--config_path=%s", path);
    parse_bad("'rpc_address'", "want a string", arg, (char *)NULL);
    unlink(path);

    write_tmp(path, sizeof path, ".json", "{\"client_live_ttl_sec\": null}");
    snprintf(arg, sizeof arg, "--config_path=%s", path);
    parse_bad("'client_live_ttl_sec'", NULL, arg, (char *)NULL);
    unlink(path);

    write_tmp(path, sizeof path, ".json", "{\"enable_ha\": 3}");
    snprintf(arg, sizeof arg, "--config_path=%s", path);
    parse_bad("enable_ha", NULL, arg, (char *)NULL);
    unlink(path);

    write_tmp(path, sizeof path, ".json", "{\"rpc_port\": 1, \"rpc_port\": 2}");
    snprintf(arg, sizeof arg, "--config_path=%s", path);
    parse_bad("duplicate", NULL, arg, (char *)NULL);
    unlink(path);

    write_tmp(path, sizeof path, ".json", "[1, 2]");
    snprintf(arg, sizeof arg, "--config_path=%s", path);
    parse_bad("JSON object", NULL, arg, (char *)NULL);
    unlink(path);

    write_tmp(path, sizeof path, ".yaml", "rpc_port: 1\n");
    snprintf(arg, sizeof arg, "--config_path=%s", path);
    parse_bad("YAML", NULL, arg, (char *)NULL);
    unlink(path);

    parse_bad("/nonexistent/master.json", NULL, "--config_path", "/nonexistent/master.json",
              (char *)NULL);
}

static void test_interface(void **state)
{
    mc_master_flags_t f;
    char err[256];
    PARSE_OK(&f, "--rpc_interface=lo");
    assert_int_equal(mc_master_flags_resolve_interface(&f, err, sizeof err), 0);
    assert_string_equal(f.rpc_address, "127.0.0.1");
    PARSE_OK(&f, "--rpc_interface=nosuchif0");
    assert_int_equal(mc_master_flags_resolve_interface(&f, err, sizeof err), -ENODEV);
    assert_non_null(strstr(err, "nosuchif0"));
    PARSE_OK(&f, "--rpc_address=1.2.3.4");
    assert_int_equal(mc_master_flags_resolve_interface(&f, err, sizeof err), 0);
    assert_string_equal(f.rpc_address, "1.2.3.4");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),    cmocka_unit_test(test_forms),
        cmocka_unit_test(test_bools),       cmocka_unit_test(test_durations),
        cmocka_unit_test(test_bad_values),  cmocka_unit_test(test_help_and_ignored),
        cmocka_unit_test(test_config_file), cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_interface),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
