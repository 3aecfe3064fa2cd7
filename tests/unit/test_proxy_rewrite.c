/* Unit tests of the proxy's pure parts: request rewriting per mode, answer
 * parsers, admin instance validation, key comparison, UUIDs, argument parsing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "proxy.h"
#include "proxy_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static json_t *load(const char *s)
{
    json_t *j = json_loads(s, 0, NULL);
    assert_non_null(j);
    return j;
}

/* Serialises with sorted keys, for comparisons independent of key order. */
static void assert_json_eq(const char *got, const char *want)
{
    json_t *a = load(got), *b = load(want);
    if (!json_equal(a, b)) fail_msg("got %s\nwant %s", got, want);
    json_decref(a);
    json_decref(b);
}

static const char *BODY = "{\"model\":\"m\",\"prompt\":\"p\",\"max_tokens\":50,\"min_tokens\":4,"
                          "\"min_completion_tokens\":2,\"stream\":true,"
                          "\"stream_options\":{\"include_usage\":true},\"temperature\":0.7}";

static void test_prefill_connector(void **st)
{
    (void)st;
    json_t *b = load(BODY);
    mc__proxy_rw_t rw = {.mode = MC_PROXY_MODE_CONNECTOR, .transfer_id = "xfer-1"};
    char *out;
    size_t len;
    assert_int_equal(mc__proxy_rw_prefill(b, &rw, &out, &len), 0);
    assert_int_equal(strlen(out), len);
    assert_string_equal(out, "{\"model\":\"m\",\"prompt\":\"p\",\"max_tokens\":1,\"stream\":false,"
                             "\"temperature\":0.7,\"kv_transfer_params\":{\"do_remote_decode\":"
                             "true,\"do_remote_prefill\":false,\"transfer_id\":\"xfer-1\"}}");
    free(out);
    /* the original is untouched */
    assert_int_equal(json_integer_value(json_object_get(b, "max_tokens")), 50);
    assert_non_null(json_object_get(b, "stream_options"));
    json_decref(b);
}

static void test_prefill_toy_max_completion(void **st)
{
    (void)st;
    json_t *b = load("{\"messages\":[],\"max_completion_tokens\":7}");
    mc__proxy_rw_t rw = {.mode = MC_PROXY_MODE_TOY};
    char *out;
    size_t len;
    assert_int_equal(mc__proxy_rw_prefill(b, &rw, &out, &len), 0);
    assert_json_eq(out, "{\"messages\":[],\"max_completion_tokens\":1,\"max_tokens\":1,"
                        "\"stream\":false,\"kv_transfer_params\":{\"do_remote_decode\":true,"
                        "\"do_remote_prefill\":false,\"remote_engine_id\":null,"
                        "\"remote_block_ids\":null,\"remote_host\":null,\"remote_port\":null}}");
    free(out);
    json_decref(b);
}

static void test_decode_modes(void **st)
{
    (void)st;
    json_t *b = load("{\"prompt\":\"p\",\"kv_transfer_params\":{\"junk\":1},\"min_tokens\":3}");
    char *out;
    size_t len;
    mc__proxy_rw_t c = {.mode = MC_PROXY_MODE_CONNECTOR,
                        .transfer_id = "xfer-9",
                        .bootstrap_addr = "http://10.0.0.1:8998",
                        .engine_id = "eng"};
    assert_int_equal(mc__proxy_rw_decode(b, &c, &out, &len), 0);
    assert_json_eq(out, "{\"prompt\":\"p\",\"min_tokens\":3,\"kv_transfer_params\":{"
                        "\"do_remote_decode\":false,\"do_remote_prefill\":true,"
                        "\"remote_bootstrap_addr\":\"http://10.0.0.1:8998\","
                        "\"remote_engine_id\":\"eng\",\"transfer_id\":\"xfer-9\"}}");
    free(out);

    json_t *kv = load("{\"remote_host\":\"x\",\"remote_port\":5,\"remote_block_ids\":[1]}");
    mc__proxy_rw_t t = {.mode = MC_PROXY_MODE_TOY, .prefill_kv = kv, .prefill_host = "h"};
    assert_int_equal(mc__proxy_rw_decode(b, &t, &out, &len), 0);
    assert_json_eq(out, "{\"prompt\":\"p\",\"min_tokens\":3,\"kv_transfer_params\":"
                        "{\"remote_host\":\"x\",\"remote_port\":5,\"remote_block_ids\":[1]}}");
    free(out);
    mc__proxy_rw_t d = {.mode = MC_PROXY_MODE_DEMO, .prefill_kv = kv, .prefill_host = "h"};
    assert_int_equal(mc__proxy_rw_decode(b, &d, &out, &len), 0);
    assert_json_eq(out, "{\"prompt\":\"p\",\"min_tokens\":3,\"kv_transfer_params\":"
                        "{\"remote_host\":\"h\",\"remote_port\":5,\"remote_block_ids\":[1]}}");
    free(out);
    /* the prefiller's object is not modified by the demo rewrite */
    assert_string_equal(json_string_value(json_object_get(kv, "remote_host")), "x");
    mc__proxy_rw_t none = {.mode = MC_PROXY_MODE_DEMO};
    assert_int_equal(mc__proxy_rw_decode(b, &none, &out, &len), 0);
    assert_json_eq(out, "{\"prompt\":\"p\",\"kv_transfer_params\":{\"junk\":1},\"min_tokens\":3}");
    free(out);
    json_decref(kv);
    json_decref(b);
}

static void test_decode_keeps_client_bytes(void **st)
{
    (void)st;
    const char *raw = "{ \"prompt\" : \"p\",\n  \"temperature\": 0.70, \"n\": 1e0 }\n";
    json_t *b = load(raw);
    char *out;
    size_t len;
    mc__proxy_rw_t c = {.mode = MC_PROXY_MODE_CONNECTOR,
                        .transfer_id = "x",
                        .bootstrap_addr = "http://h:1",
                        .engine_id = "e",
                        .raw = raw,
                        .raw_len = strlen(raw)};
    assert_int_equal(mc__proxy_rw_decode(b, &c, &out, &len), 0);
    assert_string_equal(out, "{ \"prompt\" : \"p\",\n  \"temperature\": 0.70, \"n\": 1e0 ,"
                             "\"kv_transfer_params\":{\"do_remote_decode\":false,"
                             "\"do_remote_prefill\":true,\"remote_bootstrap_addr\":\"http://h:1\","
                             "\"remote_engine_id\":\"e\",\"transfer_id\":\"x\"}}");
    assert_int_equal(strlen(out), len);
    free(out);
    /* toy without prefill params: the client's bytes, unchanged */
    mc__proxy_rw_t t = {.mode = MC_PROXY_MODE_TOY, .raw = raw, .raw_len = strlen(raw)};
    assert_int_equal(mc__proxy_rw_decode(b, &t, &out, &len), 0);
    assert_string_equal(out, raw);
    free(out);
    json_decref(b);
    /* empty object: no comma */
    b = load("{}");
    c.raw = "{}";
    c.raw_len = 2;
    assert_int_equal(mc__proxy_rw_decode(b, &c, &out, &len), 0);
    assert_int_equal(strncmp(out, "{\"kv_transfer_params\":{", 23), 0);
    free(out);
    json_decref(b);
    /* a client kv_transfer_params is replaced, so the body is re-serialised */
    const char *raw2 = "{\"kv_transfer_params\":{\"junk\":1},\"a\":1}";
    b = load(raw2);
    c.raw = raw2;
    c.raw_len = strlen(raw2);
    assert_int_equal(mc__proxy_rw_decode(b, &c, &out, &len), 0);
    assert_null(strstr(out, "junk"));
    free(out);
    json_decref(b);
}

static void test_numbers_round_trip(void **st)
{
    (void)st;
    json_t *b = load("{\"a\":0.1,\"b\":1e300,\"c\":0.30000000000000004,\"d\":-2.5,\"e\":12}");
    mc__proxy_rw_t rw = {.mode = MC_PROXY_MODE_DEMO};
    char *out;
    size_t len;
    assert_int_equal(mc__proxy_rw_decode(b, &rw, &out, &len), 0);
    json_t *back = load(out);
    assert_true(json_equal(back, b)); /* exact doubles */
    json_decref(back);
    free(out);
    json_decref(b);
    b = load("{\"t\":0.7,\"p\":0.95}");
    assert_int_equal(mc__proxy_rw_decode(b, &rw, &out, &len), 0);
    assert_string_equal(out, "{\"t\":0.7,\"p\":0.95}");
    free(out);
    json_decref(b);
}

static void test_parse_body(void **st)
{
    (void)st;
    char err[128];
    json_t *j;
    assert_int_equal(mc__proxy_parse_body("{}", 2, &j, err, sizeof err), 0);
    json_decref(j);
    assert_int_equal(mc__proxy_parse_body("", 0, &j, err, sizeof err), -EINVAL);
    assert_int_equal(mc__proxy_parse_body("[1]", 3, &j, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "object"));
    assert_int_equal(mc__proxy_parse_body("{\"a\":", 5, &j, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "invalid JSON"));
    assert_int_equal(mc__proxy_parse_body("{\"a\":1,\"a\":2}", 13, &j, err, sizeof err), -EINVAL);
    assert_null(j);
}

static void test_extract_kv(void **st)
{
    (void)st;
    json_t *kv;
    const char *a = "{\"kv_transfer_params\":{\"x\":1}}";
    assert_int_equal(mc__proxy_extract_kv(a, strlen(a), &kv), 0);
    assert_int_equal(json_integer_value(json_object_get(kv, "x")), 1);
    json_decref(kv);
    const char *n = "{\"kv_transfer_params\":null}";
    assert_int_equal(mc__proxy_extract_kv(n, strlen(n), &kv), -ENOENT);
    const char *sse = "data: {\"a\":1}\r\n\r\ndata:{\"kv_transfer_params\":{\"y\":2}}\n\n"
                      "data: [DONE]\n\n";
    assert_int_equal(mc__proxy_extract_kv(sse, strlen(sse), &kv), 0);
    assert_int_equal(json_integer_value(json_object_get(kv, "y")), 2);
    json_decref(kv);
    assert_int_equal(mc__proxy_extract_kv("garbage", 7, &kv), -EINVAL);
    assert_int_equal(mc__proxy_extract_kv("", 0, &kv), -EINVAL);
}

static void test_parse_query(void **st)
{
    (void)st;
    char **ids;
    int n;
    const char *q = "{\"1\":{\"engine_id\":\"b\"},\"0\":{\"engine_id\":\"a\",\"worker_addr\":{}}}";
    assert_int_equal(mc__proxy_parse_query(q, strlen(q), &ids, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(ids[0], "a");
    assert_string_equal(ids[1], "b");
    mc__proxy_free_ids(ids, n);
    const char *bad[] = {"{}",
                         "[]",
                         "{\"0\":{}}",
                         "{\"1\":{\"engine_id\":\"a\"}}",
                         "{\"x\":{\"engine_id\":\"a\"}}",
                         "{\"0\":{\"engine_id\":\"\"}}",
                         "{\"-1\":{\"engine_id\":\"a\"}}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(mc__proxy_parse_query(bad[i], strlen(bad[i]), &ids, &n), -EINVAL);
}

static void test_models_match(void **st)
{
    (void)st;
    char id[64];
    const char *m = "{\"data\":[{\"id\":\"x\"},{\"id\":\"/models/org/Qwen-0.5B\"}]}";
    assert_int_equal(mc__proxy_models_match(m, strlen(m), "Qwen/Qwen-0.5B", id, sizeof id), 0);
    assert_string_equal(id, "/models/org/Qwen-0.5B");
    assert_int_equal(mc__proxy_models_match(m, strlen(m), "", id, sizeof id), 0);
    assert_string_equal(id, "x");
    assert_int_equal(mc__proxy_models_match(m, strlen(m), "other", id, sizeof id), -ENOENT);
    assert_int_equal(mc__proxy_models_match("{}", 2, "", id, sizeof id), -EINVAL);
}

static void test_check_instance(void **st)
{
    (void)st;
    char h[256], err[128];
    uint16_t p;
    assert_int_equal(mc__proxy_check_instance("10.0.0.1:8100", h, sizeof h, &p, err, sizeof err),
                     0);
    assert_string_equal(h, "10.0.0.1");
    assert_int_equal(p, 8100);
    assert_int_equal(mc__proxy_check_instance("[::1]:65535", h, sizeof h, &p, err, sizeof err), 0);
    assert_string_equal(h, "::1");
    assert_int_equal(p, 65535);
    assert_int_equal(mc__proxy_check_instance("my-host_1.local:1", h, sizeof h, &p, err, 128), 0);
    const char *bad[] = {"",        "host",    ":80",   "h:",     "h:0",
                         "h:65536", "h:99999", "h:1x",  "a b:80", "h/p:80",
                         "[zz]:80", "[]:80",   "h:+80", "h:-1",   "h:000080"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(mc__proxy_check_instance(bad[i], h, sizeof h, &p, err, sizeof err),
                         -EINVAL);
}

static void test_key_equal(void **st)
{
    (void)st;
    assert_true(mc__proxy_key_equal("abc", "abc"));
    assert_false(mc__proxy_key_equal("abc", "abd"));
    assert_false(mc__proxy_key_equal("abc", "ab"));
    assert_false(mc__proxy_key_equal("abc", "abcabc"));
    assert_false(mc__proxy_key_equal("abc", ""));
    assert_false(mc__proxy_key_equal("", ""));
}

static void test_uuid(void **st)
{
    (void)st;
    char a[37], b[37];
    mc__proxy_uuid(a);
    mc__proxy_uuid(b);
    assert_int_equal(strlen(a), 36);
    assert_string_not_equal(a, b);
    assert_int_equal(a[8], '-');
    assert_int_equal(a[14], '4');
}

static void test_engine_load(void **st)
{
    (void)st;
    unsigned run = 7, wait = 7;
    static const char m[] =
        "# HELP vllm:num_requests_running Number of requests.\n"
        "# TYPE vllm:num_requests_running gauge\n"
        "vllm:num_requests_running{engine=\"0\",model_name=\"m\"} 3.0\n"
        "vllm:num_requests_running{engine=\"1\",model_name=\"m\"} 2\n"
        "vllm:num_requests_waiting{engine=\"0\",odd=\"a}b\\\"c\"} 4.0 1700000000000\n"
        "vllm:num_requests_waiting_by_reason{reason=\"x\"} 99\n"
        "vllm:num_requests_running_x 50\n"
        "vllm:num_requests_waiting{engine=\"2\"} NaN\n"
        "vllm:num_requests_waiting{engine=\"3\"} -5\n"
        "vllm:num_requests_waiting{engine=\"4\"} 12abc\n"
        "vllm:num_requests_running{engine=\"5\"";
    assert_int_equal(mc__proxy_parse_engine_load(m, sizeof m - 1, &run, &wait), 0);
    assert_int_equal(run, 5);
    assert_int_equal(wait, 4);
    static const char big[] = "vllm:num_requests_waiting 1e300\n";
    assert_int_equal(mc__proxy_parse_engine_load(big, sizeof big - 1, &run, &wait), 0);
    assert_int_equal(wait, 1000000);
    static const char none[] = "# nothing\nother_metric 3\n";
    assert_int_equal(mc__proxy_parse_engine_load(none, sizeof none - 1, &run, &wait), -ENOENT);
    assert_int_equal(mc__proxy_parse_engine_load("", 0, &run, &wait), -ENOENT);
}

static int parse(mc_proxy_config_t *c, char *err, ...)
{
    char *argv[32] = {"mooncake_proxy"};
    int argc = 1;
    va_list ap;
    va_start(ap, err);
    for (char *a; (a = va_arg(ap, char *));)
        argv[argc++] = a;
    va_end(ap);
    return mc_proxy_parse_args(argc, argv, c, err, 256);
}

static void test_args(void **st)
{
    (void)st;
    static mc_proxy_config_t c;
    char err[256];
    assert_int_equal(parse(&c, err, "--prefill", "http://a:1/", "9000", "--prefill", "b:2", "none",
                           "--prefill", "http://c:3", "--decode", "http://d:4", "--port", "9",
                           NULL),
                     0);
    assert_int_equal(c.mode, MC_PROXY_MODE_CONNECTOR);
    assert_int_equal(c.n_inst[0], 3);
    assert_string_equal(c.inst[0][0].url, "http://a:1");
    assert_int_equal(c.inst[0][0].bootstrap_port, 9000);
    assert_string_equal(c.inst[0][1].url, "http://b:2");
    assert_int_equal(c.inst[0][1].bootstrap_port, 8998);
    assert_int_equal(c.inst[0][2].bootstrap_port, 8998);
    assert_int_equal(c.port, 9);

    assert_int_equal(parse(&c, err, "--prefiller-hosts", "a", "b", "--prefiller-ports", "1", "2",
                           "--decoder-port=7", NULL),
                     0);
    assert_int_equal(c.mode, MC_PROXY_MODE_TOY);
    assert_int_equal(c.n_inst[0], 2);
    assert_string_equal(c.inst[0][1].url, "http://b:2");
    assert_string_equal(c.inst[1][0].url, "http://localhost:7");
    assert_int_equal(parse(&c, err, "--prefiller-hosts", "a", "b", "--prefiller-ports", "1", NULL),
                     -EINVAL);

    assert_int_equal(parse(&c, err, "-m", "org/m", "-p", "a:1", "b:2", "-d", "c:3", "--port",
                           "8001", "--scheduling", "least_loaded", NULL),
                     0);
    assert_int_equal(c.mode, MC_PROXY_MODE_DEMO);
    assert_string_equal(c.model, "org/m");
    assert_int_equal(c.n_inst[0], 2);
    assert_int_equal(c.n_inst[1], 1);
    assert_int_equal(c.sched, MC_PROXY_SCHED_LEAST_LOADED);

    /* routing and health options (issue 19), with their defaults */
    assert_int_equal(parse(&c, err, "--decode", "x:1", NULL), 0);
    assert_int_equal(c.sched, MC_PROXY_SCHED_ROUND_ROBIN);
    assert_int_equal(c.cb_failures, 3);
    assert_int_equal(c.cb_backoff_ms, 1000);
    assert_int_equal(c.cb_backoff_max_ms, 30000);
    assert_int_equal(c.prefill_retries, 1);
    assert_int_equal(c.cache_balance_abs, 8);
    assert_true(c.cache_balance_rel == 1.5);
    assert_int_equal(parse(&c, err, "--scheduling=cache_aware", "--cache-balance-abs", "4",
                           "--cache-balance-rel=2.5", "--circuit-failures", "5",
                           "--circuit-backoff-ms", "200", "--circuit-backoff-max-ms", "800",
                           "--prefill-retries", "0", "--prefill", "http://p:1", "--decode", "x:1",
                           NULL),
                     0);
    assert_int_equal(c.sched, MC_PROXY_SCHED_CACHE_AWARE);
    assert_int_equal(c.cache_balance_abs, 4);
    assert_true(c.cache_balance_rel == 2.5);
    assert_int_equal(c.cb_failures, 5);
    assert_int_equal(c.cb_backoff_ms, 200);
    assert_int_equal(c.cb_backoff_max_ms, 800);
    assert_int_equal(c.prefill_retries, 0);
    assert_int_equal(c.n_inst[0], 1); /* --prefill-retries is not --prefill */
    assert_int_equal(parse(&c, err, "--scheduling", "least_tokens", "--decode", "x:1", NULL), 0);
    assert_int_equal(c.sched, MC_PROXY_SCHED_LEAST_TOKENS);
    assert_int_equal(parse(&c, err, "--cache-balance-rel", "0.5", "--decode", "x:1", NULL),
                     -EINVAL);
    assert_int_equal(parse(&c, err, "--cache-balance-rel", "2x", "--decode", "x:1", NULL),
                     -EINVAL);
    assert_int_equal(parse(&c, err, "--prefill-retries", "17", "--decode", "x:1", NULL), -EINVAL);
    assert_int_equal(parse(&c, err, "--circuit-failures", "0", "--decode", "x:1", NULL), -EINVAL);
    /* text prompts' token ids for the KV-event match */
    assert_int_equal(parse(&c, err, "--decode", "x:1", NULL), 0);
    assert_int_equal(c.tokenize, 1);
    assert_int_equal(c.tokenize_timeout_ms, 500);
    assert_int_equal(parse(&c, err, "--tokenize", "off", "--tokenize-timeout-ms=50", "--decode",
                           "x:1", NULL),
                     0);
    assert_int_equal(c.tokenize, 0);
    assert_int_equal(c.tokenize_timeout_ms, 50);
    assert_int_equal(parse(&c, err, "--tokenize=auto", "--decode", "x:1", NULL), 0);
    assert_int_equal(c.tokenize, 1);
    assert_int_equal(parse(&c, err, "--tokenize", "on", "--decode", "x:1", NULL), -EINVAL);
    assert_int_equal(parse(&c, err, "--tokenize-timeout-ms", "0", "--decode", "x:1", NULL),
                     -EINVAL);

    assert_int_equal(parse(&c, err, "--scheduling", "random", "--decode", "x:1", NULL), -EINVAL);
    assert_int_equal(parse(&c, err, "--port", "70000", "--decode", "x:1", NULL), -EINVAL);
    assert_int_equal(parse(&c, err, "--bogus", NULL), -EINVAL);
    assert_int_equal(parse(&c, err, "--port", NULL), -EINVAL);
    assert_int_equal(parse(&c, err, "-m", "m", "--prefiller-host", "a", NULL), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefill_connector),
        cmocka_unit_test(test_prefill_toy_max_completion),
        cmocka_unit_test(test_decode_modes),
        cmocka_unit_test(test_decode_keeps_client_bytes),
        cmocka_unit_test(test_numbers_round_trip),
        cmocka_unit_test(test_parse_body),
        cmocka_unit_test(test_extract_kv),
        cmocka_unit_test(test_parse_query),
        cmocka_unit_test(test_models_match),
        cmocka_unit_test(test_check_instance),
        cmocka_unit_test(test_key_equal),
        cmocka_unit_test(test_uuid),
        cmocka_unit_test(test_args),
        cmocka_unit_test(test_engine_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
