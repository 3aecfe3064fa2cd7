/* Unit tests of src/base: the hash map, the bounds-checked codec, environment
 * parsing and the error-code names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base_codec.h"
#include "base_copy.h"
#include "base_env.h"
#include "base_map.h"
#include "mooncake/err.h"

static int count_cb(const char *key, void *val, void *arg)
{
    (void)key;
    (void)val;
    (*(size_t *)arg)++;
    return 0;
}

static void test_map(void **state)
{
    (void)state;
    mc_map_t *m = mc_map_new();
    assert_non_null(m);
    char key[32];
    for (uintptr_t i = 1; i <= 5000; i++) { /* forces several grows */
        snprintf(key, sizeof key, "k%lu", (unsigned long)i);
        assert_int_equal(mc_map_put(m, key, (void *)i, NULL), 0);
    }
    assert_int_equal(mc_map_size(m), 5000);
    for (uintptr_t i = 1; i <= 5000; i++) {
        snprintf(key, sizeof key, "k%lu", (unsigned long)i);
        assert_ptr_equal(mc_map_get(m, key), (void *)i);
    }
    void *old = NULL;
    assert_int_equal(mc_map_put(m, "k7", (void *)77, &old), 0);
    assert_ptr_equal(old, (void *)7);
    assert_int_equal(mc_map_size(m), 5000);
    assert_ptr_equal(mc_map_del(m, "k7"), (void *)77);
    assert_null(mc_map_get(m, "k7"));
    assert_null(mc_map_del(m, "k7"));
    assert_null(mc_map_get(m, "absent"));
    size_t n = 0;
    mc_map_each(m, count_cb, &n);
    assert_int_equal(n, 4999);
    mc_map_free(m, NULL);
}

static void test_codec(void **state)
{
    (void)state;
    uint8_t buf[15];
    mc_wr_t w = mc_wr_init(buf, sizeof buf);
    mc_wr_u8(&w, 0xab);
    mc_wr_u16(&w, 0x1234);
    mc_wr_u32(&w, 0xdeadbeef);
    mc_wr_u64(&w, 0x0102030405060708ull);
    assert_int_equal(w.err, 0);
    mc_wr_u8(&w, 1); /* one byte too many */
    assert_int_equal(w.err, 1);
    assert_int_equal(buf[1], 0x34); /* little-endian */

    mc_rd_t r = mc_rd_init(buf, sizeof buf);
    assert_int_equal(mc_rd_u8(&r), 0xab);
    assert_int_equal(mc_rd_u16(&r), 0x1234);
    assert_int_equal(mc_rd_u32(&r), 0xdeadbeef);
    assert_int_equal(mc_rd_u64(&r), 0x0102030405060708ull);
    assert_int_equal(r.err, 0);
    assert_int_equal(mc_rd_left(&r), 0);
    assert_int_equal(mc_rd_u32(&r), 0); /* past the end: zero and err, never a read */
    assert_int_equal(r.err, 1);
    assert_int_equal(mc_rd_u8(&r), 0);

    r = mc_rd_init(buf, 3);
    assert_int_equal(mc_rd_u32(&r), 0);
    assert_int_equal(r.err, 1);
}

static void test_env(void **state)
{
    (void)state;
    setenv("MC_TEST_INT", "42", 1);
    assert_int_equal(mc_env_int("MC_TEST_INT", 7, 0, 100), 42);
    assert_int_equal(mc_env_int("MC_TEST_INT", 7, 0, 10), 10);
    setenv("MC_TEST_INT", "4x", 1);
    assert_int_equal(mc_env_int("MC_TEST_INT", 7, 0, 100), 7);
    unsetenv("MC_TEST_INT");
    assert_int_equal(mc_env_int("MC_TEST_INT", 7, 0, 100), 7);
    setenv("MC_TEST_BOOL", "yes", 1);
    assert_int_equal(mc_env_bool("MC_TEST_BOOL", 0), 1);
    setenv("MC_TEST_BOOL", "off", 1);
    assert_int_equal(mc_env_bool("MC_TEST_BOOL", 1), 0);
    setenv("MC_TEST_BOOL", "maybe", 1);
    assert_int_equal(mc_env_bool("MC_TEST_BOOL", 1), 1);
}

static void test_err_names(void **state)
{
    (void)state;
    assert_string_equal(mc_err_name(MC_OK), "OK");
    assert_string_equal(mc_err_name(-704), "OBJECT_NOT_FOUND");
    assert_string_equal(mc_err_name(-200), "NO_AVAILABLE_HANDLE");
    assert_string_equal(mc_err_name(-1), "INTERNAL_ERROR");
    assert_string_equal(mc_err_name(-12345), "UNKNOWN_ERROR");
    assert_string_equal(mc_err_str(-706), "object has a read lease");
    assert_string_equal(mc_err_str(-12345), "unknown error");
}

/* mc_copy_stream equals memcpy for every alignment of both ends and every
 * length around its head, line and 4-page boundaries, and touches nothing
 * outside [dst, dst+n). */
static void test_copy_stream(void **state)
{
    (void)state;
    enum { MAX = 3 * 16384 + 1000, PAD = 64 };
    unsigned char *src = malloc(MAX + PAD), *dst = malloc(MAX + 2 * PAD);
    assert_non_null(src);
    assert_non_null(dst);
    for (size_t i = 0; i < MAX + PAD; i++)
        src[i] = (unsigned char)(i * 131 + 7);
    static const size_t lens[] = {0,    1,    63,   64,    255,   256,   257,   1000,
                                  4095, 4096, 4097, 16383, 16384, 16385, 20000, MAX};
    for (size_t so = 0; so < 3; so++)
        for (size_t d = 0; d < PAD; d += 9)
            for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
                size_t n = lens[k];
                memset(dst, 0xEE, MAX + 2 * PAD);
                mc_copy_stream(dst + PAD + d, src + so * 21, n);
                assert_memory_equal(dst + PAD + d, src + so * 21, n);
                for (size_t i = 0; i < PAD + d; i++)
                    assert_int_equal(dst[i], 0xEE);
                for (size_t i = PAD + d + n; i < MAX + 2 * PAD; i++)
                    assert_int_equal(dst[i], 0xEE);
            }
    free(src);
    free(dst);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_map),
        cmocka_unit_test(test_codec),
        cmocka_unit_test(test_env),
        cmocka_unit_test(test_err_names),
        cmocka_unit_test(test_copy_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
