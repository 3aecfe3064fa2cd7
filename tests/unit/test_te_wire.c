/* Unit tests of the transfer engine's parsers and encoders: the frame header,
 * segment descriptors (round trip and every rejection), range checks, rpc_meta
 * records and notification payloads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "te_int.h"

static void test_header_round_trip(void **state)
{
    (void)state;
    mc__te_hdr_t in = {MC_TE_MAGIC, MC_TE_VERSION, MC_TE_OP_WRITE | MC_TE_OP_REPLY, 0,
                       0xdeadbeef, -7, 0x7fff12345678ull, 1ull << 40};
    uint8_t buf[MC_TE_HDR_LEN];
    mc__te_hdr_encode(&in, buf);
    assert_int_equal(buf[0], 'M'); /* little-endian magic spells MCTE */
    assert_int_equal(buf[3], 'E');
    mc__te_hdr_t out;
    const char *why = NULL;
    assert_int_equal(mc__te_hdr_decode(buf, sizeof buf, &out, &why), 0);
    assert_memory_equal(&in, &out, sizeof in);
}

static void expect_reject(const uint8_t *buf, size_t len, const char *reason)
{
    mc__te_hdr_t h;
    const char *why = NULL;
    assert_int_equal(mc__te_hdr_decode(buf, len, &h, &why), -1);
    assert_non_null(why);
    assert_string_equal(why, reason);
}

static void test_header_rejects(void **state)
{
    (void)state;
    mc__te_hdr_t h = {MC_TE_MAGIC, MC_TE_VERSION, MC_TE_OP_READ, 0, 1, 0, 4096, 4096};
    uint8_t buf[MC_TE_HDR_LEN], bad[MC_TE_HDR_LEN];
    mc__te_hdr_encode(&h, buf);
    for (size_t n = 0; n < MC_TE_HDR_LEN; n++) expect_reject(buf, n, "truncated header");
    memcpy(bad, buf, sizeof bad);
    bad[0] ^= 1;
    expect_reject(bad, sizeof bad, "bad magic");
    memcpy(bad, buf, sizeof bad);
    bad[4] = 2;
    expect_reject(bad, sizeof bad, "unsupported protocol version");
    memcpy(bad, buf, sizeof bad);
    bad[5] = 0x15;
    expect_reject(bad, sizeof bad, "unknown opcode");
    memcpy(bad, buf, sizeof bad);
    bad[6] = 1;
    expect_reject(bad, sizeof bad, "unknown flags");
}

static void test_desc_round_trip(void **state)
{
    (void)state;
    mc__te_buf_t bufs[2] = {{.addr = 0x20000, .length = 4096, .location = "cpu:0"},
                              {.addr = 0x10000, .length = 8192, .location = "cpu:1"}};
    mc__te_desc_t d = {.name = "10.0.0.1:12345", .protocol = "tcp", .ip = "127.0.0.1",
                       .port = 15123, .host_id = "boot/pid:[1]", .pid = 4242,
                       .start_time = 987654, .nbufs = 2, .bufs = bufs};
    char *json = mc__te_desc_encode(&d);
    assert_non_null(json);
    assert_non_null(strstr(json, "\"tcp_data_port\":15123"));
    mc__te_desc_t out;
    char why[256] = "";
    assert_int_equal(mc__te_desc_decode(json, strlen(json), &out, why), 0);
    assert_string_equal(out.name, d.name);
    assert_string_equal(out.protocol, "tcp");
    assert_string_equal(out.ip, "127.0.0.1");
    assert_string_equal(out.host_id, d.host_id);
    assert_int_equal(out.port, 15123);
    assert_int_equal(out.pid, 4242);
    assert_int_equal(out.start_time, 987654);
    assert_int_equal(out.nbufs, 2);
    /* decoded buffers come back sorted by address */
    assert_int_equal(out.bufs[0].addr, 0x10000);
    assert_string_equal(out.bufs[0].location, "cpu:1");
    assert_int_equal(out.bufs[1].length, 4096);
    mc__te_desc_clear(&out);
    free(json);
}

/* The rdma part: provider, addressing, NICs with endpoint addresses, one key
 * per NIC on every buffer (keys above INT64_MAX included); and what is refused. */
static void test_desc_rdma(void **state)
{
    (void)state;
    mc__te_buf_t bufs[2] = {{.addr = 0x20000, .length = 4096, .location = "a", .rkey = {7, 9}},
                            {.addr = 0x10000, .length = 8192, .location = "b",
                             .rkey = {UINT64_MAX - 1, 3}}};
    mc__te_desc_t d = {.name = "n", .protocol = "rdma", .ip = "127.0.0.1", .port = 1,
                       .nbufs = 2, .bufs = bufs, .rdma_prov = "verbs;ofi_rxm", .rdma_virt = 1,
                       .rdma_nnics = 2};
    for (size_t i = 0; i < 2; i++) {
        snprintf(d.rdma_nics[i].name, sizeof d.rdma_nics[i].name, "mlx5_%zu", i);
        d.rdma_nics[i].neps = 2;
        d.rdma_nics[i].addr_len = 16;
        for (size_t j = 0; j < 2; j++)
            for (size_t k = 0; k < 16; k++)
                d.rdma_nics[i].addr[j][k] = (uint8_t)(i * 100 + j * 16 + k * 15);
    }
    char *json = mc__te_desc_encode(&d), why[256] = "";
    assert_non_null(json);
    mc__te_desc_t out;
    assert_int_equal(mc__te_desc_decode(json, strlen(json), &out, why), 0);
    assert_string_equal(out.rdma_prov, "verbs;ofi_rxm");
    assert_int_equal(out.rdma_virt, 1);
    assert_int_equal(out.rdma_nnics, 2);
    assert_string_equal(out.rdma_nics[1].name, "mlx5_1");
    assert_memory_equal(out.rdma_nics, d.rdma_nics, sizeof d.rdma_nics);
    assert_true(out.bufs[0].addr == 0x10000 && out.bufs[0].rkey[0] == UINT64_MAX - 1);
    assert_true(out.bufs[1].rkey[1] == 9);
    mc__te_desc_clear(&out);
    free(json);
    const char *bad[] = {
        /* a key missing for the second NIC */
        "{\"name\":\"n\",\"protocol\":\"rdma\",\"tcp_data_port\":1,\"buffers\":[{\"name\":\"a\","
        "\"addr\":4096,\"length\":1,\"rkey\":[1]}],\"rdma\":{\"provider\":\"p\",\"virt_addr\":"
        "true,\"devices\":[{\"name\":\"x\",\"endpoints\":[\"00\"]},{\"name\":\"y\","
        "\"endpoints\":[\"01\"]}]}}",
        /* odd-length and non-hex addresses, addresses of two lengths */
        "{\"name\":\"n\",\"protocol\":\"rdma\",\"tcp_data_port\":1,\"rdma\":{\"provider\":\"p\","
        "\"virt_addr\":false,\"devices\":[{\"name\":\"x\",\"endpoints\":[\"0\"]}]}}",
        "{\"name\":\"n\",\"protocol\":\"rdma\",\"tcp_data_port\":1,\"rdma\":{\"provider\":\"p\","
        "\"virt_addr\":false,\"devices\":[{\"name\":\"x\",\"endpoints\":[\"zz\"]}]}}",
        "{\"name\":\"n\",\"protocol\":\"rdma\",\"tcp_data_port\":1,\"rdma\":{\"provider\":\"p\","
        "\"virt_addr\":false,\"devices\":[{\"name\":\"x\",\"endpoints\":[\"00\",\"0000\"]}]}}",
        /* no devices */
        "{\"name\":\"n\",\"protocol\":\"rdma\",\"tcp_data_port\":1,\"rdma\":{\"provider\":\"p\","
        "\"virt_addr\":false,\"devices\":[]}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(mc__te_desc_decode(bad[i], strlen(bad[i]), &out, why),
                         MC_TE_ERR_MALFORMED_JSON);
        assert_true(why[0] != '\0');
    }
}

static void test_desc_upstream_shape(void **state)
{
    (void)state;
    /* a descriptor as upstream's tcp transport writes it: no fields of ours */
    const char *j = "{\"name\":\"node1:12345\",\"protocol\":\"tcp\",\"tcp_data_port\":16001,"
                    "\"timestamp\":\"1700000000\",\"buffers\":[{\"name\":\"node1:12345\","
                    "\"addr\":140000000000000,\"length\":1048576}]}";
    mc__te_desc_t d;
    char why[256];
    assert_int_equal(mc__te_desc_decode(j, strlen(j), &d, why), 0);
    assert_int_equal(d.nbufs, 1);
    assert_int_equal(d.pid, 0);
    assert_string_equal(d.host_id, "");
    mc__te_desc_clear(&d);
}

static void test_desc_rejects(void **state)
{
    (void)state;
    static const struct {
        const char *json, *reason;
    } cases[] = {
        {"not json", "invalid JSON"},
        {"[1,2]", "not an object"},
        {"{\"protocol\":\"tcp\",\"tcp_data_port\":1}", "missing field 'name'"},
        {"{\"name\":\"\",\"protocol\":\"tcp\",\"tcp_data_port\":1}", "'name'"},
        {"{\"name\":\"a\",\"protocol\":\"tcp\",\"tcp_data_port\":70000}", "tcp_data_port"},
        {"{\"name\":\"a\",\"protocol\":\"tcp\",\"tcp_data_port\":\"1\"}", "tcp_data_port"},
        {"{\"name\":\"a\",\"protocol\":\"tcp\",\"tcp_data_port\":1,\"buffers\":{}}", "array"},
        {"{\"name\":\"a\",\"protocol\":\"tcp\",\"tcp_data_port\":1,\"buffers\":[{\"name\":\"x\","
         "\"addr\":0,\"length\":1}]}",
         "zero"},
        {"{\"name\":\"a\",\"protocol\":\"tcp\",\"tcp_data_port\":1,\"buffers\":[{\"name\":\"x\","
         "\"addr\":4096,\"length\":-5}]}",
         "negative"},
        {"{\"name\":\"a\",\"protocol\":\"tcp\",\"tcp_data_port\":1,\"buffers\":[{\"name\":\"x\","
         "\"addr\":4096,\"length\":4096},{\"name\":\"y\",\"addr\":6000,\"length\":10}]}",
         "overlap"},
        {"{\"name\":\"a\",\"protocol\":\"tcp\",\"tcp_data_port\":1,\"buffers\":[{\"name\":\"\","
         "\"addr\":4096,\"length\":4096}]}",
         "'name'"},
        {"{\"name\":\"a\",\"name\":\"b\",\"protocol\":\"tcp\",\"tcp_data_port\":1}", "invalid JSON"},
        {"{\"name\":\"a\",\"protocol\":\"tcp\",\"tcp_data_port\":1,\"mc_pid\":-1}", "mc_pid"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mc__te_desc_t d;
        char why[256] = "";
        int rc = mc__te_desc_decode(cases[i].json, strlen(cases[i].json), &d, why);
        if (rc != MC_TE_ERR_MALFORMED_JSON || !strstr(why, cases[i].reason))
            fail_msg("case %zu: rc %d why '%s', expected '%s'", i, rc, why, cases[i].reason);
        assert_null(d.bufs);
    }
}

static void test_desc_contains(void **state)
{
    (void)state;
    mc__te_buf_t bufs[2] = {{.addr = 0x1000, .length = 0x1000, .location = "a"},
                              {.addr = 0x4000, .length = 0x100, .location = "b"}};
    mc__te_desc_t d = {.nbufs = 2, .bufs = bufs};
    assert_true(mc__te_desc_contains(&d, 0x1000, 0x1000));
    assert_true(mc__te_desc_contains(&d, 0x1fff, 1));
    assert_true(mc__te_desc_contains(&d, 0x40ff, 1));
    assert_false(mc__te_desc_contains(&d, 0x1000, 0x1001)); /* one byte past the end */
    assert_false(mc__te_desc_contains(&d, 0x1fff, 2));
    assert_false(mc__te_desc_contains(&d, 0x0fff, 2));      /* starts before */
    assert_false(mc__te_desc_contains(&d, 0x2000, 1));      /* in the gap */
    assert_false(mc__te_desc_contains(&d, 0x1000, 0));      /* zero length */
    assert_false(mc__te_desc_contains(&d, 0x1800, UINT64_MAX)); /* overflow */
    assert_false(mc__te_desc_contains(&d, UINT64_MAX, 2));
    assert_false(mc__te_desc_contains(&d, 0x4000, 0x3000));  /* spans a gap into nothing */
}

static void test_rpc_and_notify(void **state)
{
    (void)state;
    char *rec = mc__te_rpc_encode("127.0.0.1", 15555), ip[64];
    uint16_t port = 0;
    assert_int_equal(mc__te_rpc_decode(rec, ip, sizeof ip, &port), 0);
    assert_string_equal(ip, "127.0.0.1");
    assert_int_equal(port, 15555);
    free(rec);
    assert_int_not_equal(mc__te_rpc_decode("{\"ip_or_host_name\":\"h\",\"rpc_port\":0}", ip,
                                           sizeof ip, &port),
                         0);
    assert_int_not_equal(mc__te_rpc_decode("{\"rpc_port\":1}", ip, sizeof ip, &port), 0);
    assert_int_not_equal(mc__te_rpc_decode("garbage", ip, sizeof ip, &port), 0);

    char *n = mc__te_notify_encode("req-1", "done \"quoted\"");
    char *name, *msg;
    assert_int_equal(mc__te_notify_decode(n, strlen(n), &name, &msg), 0);
    assert_string_equal(name, "req-1");
    assert_string_equal(msg, "done \"quoted\"");
    free(name);
    free(msg);
    free(n);
    assert_int_not_equal(mc__te_notify_decode("{\"name\":1}", 10, &name, &msg), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_round_trip), cmocka_unit_test(test_header_rejects),
        cmocka_unit_test(test_desc_round_trip),   cmocka_unit_test(test_desc_upstream_shape),
        cmocka_unit_test(test_desc_rdma),
        cmocka_unit_test(test_desc_rejects),      cmocka_unit_test(test_desc_contains),
        cmocka_unit_test(test_rpc_and_notify),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
