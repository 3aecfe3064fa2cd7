/* Unit tests of net_tls.c: the files (a key without its certificate, a
 * missing file and a key of another certificate are refused with a reason
 * naming the file), the memory-BIO engine between a server and a client
 * connection in one process (handshake, bytes both ways exactly, a client
 * certificate required, plaintext fed to a server), and the record sniffer.
 * Certificates are made with the openssl CLI into a temporary directory. */
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

#include "net_tls.h"

static char dir[] = "/tmp/mc_tls_XXXXXX";
static char ca[256], cert[256], key[256], other_key[256];

static int setup_pki(void **st)
{
    (void)st;
    if (!mkdtemp(dir)) return -1;
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-keyout ca.key -out ca.pem -days 2 -subj /CN=ca && "
             "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout s.key "
             "-out s.csr -subj /CN=s && printf 'subjectAltName=IP:127.0.0.1\\n' > s.ext && "
             "openssl x509 -req -in s.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out s.pem "
             "-days 2 -extfile s.ext && "
             "openssl genpkey -algorithm ec -pkeyopt ec_paramgen_curve:P-256 -out o.key",
             dir);
    if (system(cmd) != 0) return -1;
    snprintf(ca, sizeof ca, "%s/ca.pem", dir);
    snprintf(cert, sizeof cert, "%s/s.pem", dir);
    snprintf(key, sizeof key, "%s/s.key", dir);
    snprintf(other_key, sizeof other_key, "%s/o.key", dir);
    unsetenv("MC_TLS_CERT_FILE");
    unsetenv("MC_TLS_KEY_FILE");
    unsetenv("MC_TLS_CA_FILE");
    return 0;
}

static int teardown_pki(void **st)
{
    (void)st;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_files(void **st)
{
    (void)st;
    char err[8192];
    assert_int_equal(mc_tls_use_files("", "", "", err, sizeof err), 0);
    assert_null(mc_tls_files()); /* nothing set: TLS off */
    assert_int_equal(mc_tls_use_files("", key, ca, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "--tls_cert_file"));
    assert_int_equal(mc_tls_use_files("/nonexistent.pem", key, ca, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "/nonexistent.pem"));
    assert_int_equal(mc_tls_use_files(cert, other_key, ca, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "does not match"));
    assert_non_null(strstr(err, other_key));
    assert_int_equal(mc_tls_use_files(cert, key, ca, err, sizeof err), 0);
    assert_non_null(mc_tls_files());
    assert_string_equal(mc_tls_files()->ca, ca);
}

/* Moves what a has for the wire into b. */
static void move(mc_tls_conn_t *a, mc_tls_conn_t *b)
{
    uint8_t *p;
    size_t n;
    assert_int_equal(mc_tls_conn_take_out(a, &p, &n), 0);
    if (n) assert_int_equal(mc_tls_conn_feed(b, p, n), 0);
    free(p);
}

/* Runs the handshake between s and c; returns what the server's last read said. */
static ssize_t handshake(mc_tls_conn_t *s, mc_tls_conn_t *c)
{
    uint8_t buf[64];
    ssize_t rs = 0, rc = 0;
    for (int i = 0; i < 10; i++) {
        rc = mc_tls_conn_read(c, buf, sizeof buf);
        move(c, s);
        rs = mc_tls_conn_read(s, buf, sizeof buf);
        move(s, c);
        if (rs < 0 || rc < 0 || (mc_tls_conn_ready(s) && mc_tls_conn_ready(c))) break;
    }
    return rs < 0 ? rs : rc;
}

static void test_engine_pair(void **st)
{
    (void)st;
    char err[512];
    assert_int_equal(mc_tls_use_files(cert, key, ca, err, sizeof err), 0);
    mc_tls_conn_t *s = mc_tls_conn_new(1, NULL, err, sizeof err);
    mc_tls_conn_t *c = mc_tls_conn_new(0, "127.0.0.1", err, sizeof err);
    assert_non_null(s);
    assert_non_null(c);
    assert_int_equal(handshake(s, c), 0);
    assert_true(mc_tls_conn_ready(s) && mc_tls_conn_ready(c));
    char name[256];
    mc_tls_conn_peer_name(s, name, sizeof name);
    assert_non_null(strstr(name, "CN=s")); /* the client presented s.pem */
    static uint8_t big[100000], got[100000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 131 + 7);
    assert_int_equal(mc_tls_conn_write(s, big, sizeof big), 0);
    move(s, c);
    size_t have = 0;
    while (have < sizeof got) {
        ssize_t n = mc_tls_conn_read(c, got + have, sizeof got - have);
        assert_true(n > 0);
        have += (size_t)n;
    }
    assert_memory_equal(big, got, sizeof big);
    assert_int_equal(mc_tls_conn_write(c, "ping", 4), 0);
    move(c, s);
    char four[8] = {0};
    assert_int_equal(mc_tls_conn_read(s, four, sizeof four), 4);
    assert_string_equal(four, "ping");
    mc_tls_conn_free(s);
    mc_tls_conn_free(c);
}

static void test_client_certificate_required(void **st)
{
    (void)st;
    char err[512];
    assert_int_equal(mc_tls_use_files(cert, key, ca, err, sizeof err), 0);
    mc_tls_conn_t *s = mc_tls_conn_new(1, NULL, err, sizeof err);
    assert_int_equal(mc_tls_use_files("", "", ca, err, sizeof err), 0); /* no certificate */
    mc_tls_conn_t *c = mc_tls_conn_new(0, "127.0.0.1", err, sizeof err);
    assert_non_null(s);
    assert_non_null(c);
    assert_int_equal(handshake(s, c), -EPROTO);
    assert_non_null(strstr(mc_tls_conn_why(s), "did not return a certificate"));
    assert_int_equal(mc_tls_conn_write(s, "x", 1), -EPROTO);
    mc_tls_conn_free(s);
    mc_tls_conn_free(c);
}

static void test_wrong_name(void **st)
{
    (void)st;
    char err[512];
    assert_int_equal(mc_tls_use_files(cert, key, ca, err, sizeof err), 0);
    mc_tls_conn_t *s = mc_tls_conn_new(1, NULL, err, sizeof err);
    mc_tls_conn_t *c = mc_tls_conn_new(0, "127.0.0.2", err, sizeof err); /* not in s.pem */
    assert_int_equal(handshake(s, c), -EPROTO);
    assert_non_null(strstr(mc_tls_conn_why(c), "certificate verify failed"));
    mc_tls_conn_free(s);
    mc_tls_conn_free(c);
}

static void test_plaintext_to_server(void **st)
{
    (void)st;
    char err[512];
    assert_int_equal(mc_tls_use_files(cert, key, ca, err, sizeof err), 0);
    mc_tls_conn_t *s = mc_tls_conn_new(1, NULL, err, sizeof err);
    assert_int_equal(mc_tls_conn_feed(s, "MCMR\3\1\0\0", 8), 0);
    uint8_t buf[16];
    assert_int_equal(mc_tls_conn_read(s, buf, sizeof buf), -EPROTO);
    assert_non_null(strstr(mc_tls_conn_why(s), "TLS expected"));
    mc_tls_conn_free(s);
}

static void test_looks_like_tls(void **st)
{
    (void)st;
    assert_true(mc_tls_looks_like_tls((const uint8_t *)"\x16\x03\x01", 3));
    assert_true(mc_tls_looks_like_tls((const uint8_t *)"\x16", 1));
    assert_false(mc_tls_looks_like_tls((const uint8_t *)"MCMR", 4));
    assert_false(mc_tls_looks_like_tls((const uint8_t *)"GET /", 5));
    assert_false(mc_tls_looks_like_tls((const uint8_t *)"", 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_engine_pair),
        cmocka_unit_test(test_client_certificate_required),
        cmocka_unit_test(test_wrong_name),
        cmocka_unit_test(test_plaintext_to_server),
        cmocka_unit_test(test_looks_like_tls),
    };
    return cmocka_run_group_tests(tests, setup_pki, teardown_pki);
}
