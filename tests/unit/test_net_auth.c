/* Unit tests of net_auth.c: the key of a secret, secret files (newline,
 * length limits, a reason that names the file and never the secret), MACs
 * that depend on every input, constant-time checks, hex, loopback hosts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "net_auth.h"

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_secret_file(void **st)
{
    char path[] = "/tmp/mc_auth_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    const char *secret = "0123456789abcdef0123456789abcdef";
    mc_auth_key_t a, b;
    char err[256];
    mc_auth_key_from(secret, strlen(secret), &a);
    write_file(path, "0123456789abcdef0123456789abcdef\n"); /* the newline is not the secret */
    assert_int_equal(mc_auth_key_from_file(path, &b, err, sizeof err), 0);
    assert_memory_equal(a.k, b.k, sizeof a.k);
    write_file(path, "0123456789abcdef0123456789abcdef\r\n");
    assert_int_equal(mc_auth_key_from_file(path, &b, err, sizeof err), 0);
    assert_memory_equal(a.k, b.k, sizeof a.k);
    write_file(path, "short-secret\n");
    assert_int_not_equal(mc_auth_key_from_file(path, &b, err, sizeof err), 0);
    assert_non_null(strstr(err, path));
    assert_null(strstr(err, "short-secret")); /* never the secret itself */
    unlink(path);
    assert_int_not_equal(mc_auth_key_from_file(path, &b, err, sizeof err), 0);
    assert_non_null(strstr(err, path));
}

static void test_mac(void **st)
{
    mc_auth_key_t k, k2;
    mc_auth_key_from("a cluster secret of length", 26, &k);
    mc_auth_key_from("a cluster secret of lengtH", 26, &k2);
    uint8_t a[MC_AUTH_NONCE_LEN], b[MC_AUTH_NONCE_LEN], m[MC_AUTH_MAC_LEN], m2[MC_AUTH_MAC_LEN];
    assert_int_equal(mc_auth_nonce(a), 0);
    assert_int_equal(mc_auth_nonce(b), 0);
    assert_memory_not_equal(a, b, sizeof a); /* fresh nonces */
    mc_auth_mac(&k, 'C', "master", a, b, m);
    assert_true(mc_auth_mac_ok(&k, 'C', "master", a, b, m));
    assert_false(mc_auth_mac_ok(&k2, 'C', "master", a, b, m)); /* another secret */
    assert_false(mc_auth_mac_ok(&k, 'S', "master", a, b, m));  /* the other role */
    assert_false(mc_auth_mac_ok(&k, 'C', "te", a, b, m));      /* another service */
    assert_false(mc_auth_mac_ok(&k, 'C', "master", b, a, m));  /* nonces swapped */
    memcpy(m2, m, sizeof m);
    m2[31] ^= 1;
    assert_false(mc_auth_mac_ok(&k, 'C', "master", a, b, m2));
}

static void test_hex_and_hosts(void **st)
{
    uint8_t in[4] = {0x00, 0x9f, 0xa0, 0xff}, out[4];
    char hex[9];
    mc_auth_hex(in, 4, hex);
    assert_string_equal(hex, "009fa0ff");
    assert_int_equal(mc_auth_unhex("009FA0ff", out, 4), 0);
    assert_memory_equal(in, out, 4);
    assert_int_not_equal(mc_auth_unhex("009fa0f", out, 4), 0);
    assert_int_not_equal(mc_auth_unhex("009fa0fg", out, 4), 0);
    assert_int_not_equal(mc_auth_unhex(NULL, out, 4), 0);
    assert_true(mc_auth_host_is_loopback("127.0.0.1"));
    assert_true(mc_auth_host_is_loopback("127.3.2.1"));
    assert_true(mc_auth_host_is_loopback("::1"));
    assert_true(mc_auth_host_is_loopback("localhost"));
    assert_false(mc_auth_host_is_loopback("0.0.0.0"));
    assert_false(mc_auth_host_is_loopback(""));
    assert_false(mc_auth_host_is_loopback(NULL));
    assert_false(mc_auth_host_is_loopback("10.0.0.1"));
    assert_false(mc_auth_host_is_loopback("128.0.0.1"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_secret_file),
        cmocka_unit_test(test_mac),
        cmocka_unit_test(test_hex_and_hosts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
