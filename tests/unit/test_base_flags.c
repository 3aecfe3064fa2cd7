/* Unit tests of base_flags (argv scanner, byte sizes) and base_mem (memory
 * checks), with cmocka. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "base_flags.h"
#include "base_mem.h"

static void test_byte_size(void **st)
{
    (void)st;
    static const struct {
        const char *in;
        uint64_t want;
    } ok[] = {{"0", 0},
              {"4 GB", 4ull << 30},
              {"4GB", 4ull << 30},
              {" 512 mb ", 512ull << 20},
              {"1.5g", 3ull << 29},
              {"2147483648", 2147483648ull},
              {"16K", 16384},
              {"3b", 3},
              {"1TB", 1ull << 40},
              {"infinite", UINT64_MAX},
              {"INFINITE", UINT64_MAX}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        uint64_t v = 1;
        assert_int_equal(mc_parse_byte_size(ok[i].in, &v), 0);
        assert_true(v == ok[i].want);
    }
    static const char *const bad[] = {"",    "50%",   "-1", "GB",    "4 XB",
                                      "1e3", "1.2.3", ".",  "4 G B", "99999999999999999999",
                                      "16EB"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t v = 7;
        assert_int_equal(mc_parse_byte_size(bad[i], &v), -EINVAL);
        assert_true(v == 7);
    }
    uint64_t v;
    assert_int_equal(mc_parse_byte_size("16777216 TB", &v), -EINVAL); /* 2^64 */
}

typedef struct {
    int flag;   /* --flag (bool) */
    char s[16]; /* --name */
    int calls;
} fx_t;

static int fx_lookup(void *ctx, const char *name, size_t len, int *is_bool)
{
    (void)ctx;
    if (len == 4 && !memcmp(name, "flag", 4)) {
        *is_bool = 1;
        return 0;
    }
    if (len == 4 && !memcmp(name, "name", 4)) {
        *is_bool = 0;
        return 1;
    }
    return -1;
}

static int fx_apply(void *ctx, int idx, const char *v, const char *what, char *err, size_t errlen)
{
    fx_t *f = ctx;
    f->calls++;
    if (idx == 0) {
        int b = mc_flags_bool_word(v);
        if (b < 0) {
            snprintf(err, errlen, "bad %s", what);
            return -EINVAL;
        }
        f->flag = b;
        return 0;
    }
    if (strlen(v) >= sizeof f->s) return -EINVAL;
    strcpy(f->s, v);
    return 0;
}

static int scan(fx_t *f, char *err, size_t errlen, int argc, ...)
{
    char *argv[16] = {"prog"};
    va_list ap;
    va_start(ap, argc);
    for (int i = 1; i < argc; i++)
        argv[i] = va_arg(ap, char *);
    va_end(ap);
    memset(f, 0, sizeof *f);
    const mc_flags_ops_t ops = {fx_lookup, fx_apply, f};
    return mc_flags_scan(argc, argv, &ops, err, errlen);
}

static void test_scan(void **st)
{
    (void)st;
    fx_t f;
    char err[128];
    assert_int_equal(scan(&f, err, sizeof err, 3, "--name", "a b"), 0);
    assert_string_equal(f.s, "a b");
    assert_int_equal(scan(&f, err, sizeof err, 2, "-name=x"), 0);
    assert_string_equal(f.s, "x");
    assert_int_equal(scan(&f, err, sizeof err, 2, "--flag"), 0);
    assert_int_equal(f.flag, 1);
    assert_int_equal(scan(&f, err, sizeof err, 3, "--flag", "false"), 0);
    assert_int_equal(f.flag, 0);
    assert_int_equal(scan(&f, err, sizeof err, 3, "--flag", "--name=y"), 0);
    assert_int_equal(f.flag, 1);
    assert_string_equal(f.s, "y");
    f.flag = 1;
    assert_int_equal(scan(&f, err, sizeof err, 2, "--noflag"), 0);
    assert_int_equal(f.flag, 0);
    assert_int_equal(f.calls, 1);
    assert_int_equal(scan(&f, err, sizeof err, 3, "--name=z", "--help"), MC_FLAGS_HELP);
    assert_int_equal(scan(&f, err, sizeof err, 2, "-h"), MC_FLAGS_HELP);
    assert_int_equal(scan(&f, err, sizeof err, 2, "--"), 0);
    assert_int_equal(scan(&f, err, sizeof err, 3, "--", "x"), -EINVAL);
    assert_non_null(strstr(err, "unexpected argument 'x'"));
    assert_int_equal(scan(&f, err, sizeof err, 2, "--nope=1"), -EINVAL);
    assert_non_null(strstr(err, "unknown flag '--nope'"));
    assert_int_equal(scan(&f, err, sizeof err, 2, "--noname"), -EINVAL); /* not a bool */
    assert_int_equal(scan(&f, err, sizeof err, 2, "--name"), -EINVAL);
    assert_non_null(strstr(err, "--name needs a value"));
    assert_int_equal(scan(&f, err, sizeof err, 2, "--flag=perhaps"), -EINVAL);
    assert_string_equal(err, "bad --flag");
    assert_int_equal(scan(&f, err, sizeof err, 2, "-"), -EINVAL);
}

static void test_mem_check(void **st)
{
    (void)st;
    const size_t pg = 4096, n = 8 * pg;
    char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    for (size_t i = 0; i < n; i++)
        p[i] = (char)(i * 7);
    assert_int_equal(mc_mem_check(p, n, 1), 0);
    assert_int_equal(mc_mem_check(p + 5, n - 10, 0), 0);
    assert_int_equal(mc_mem_check(NULL, 0, 1), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(p[i], (char)(i * 7)); /* unchanged by the probe */
    assert_int_equal(mprotect(p + 3 * pg, pg, PROT_READ), 0);
    assert_int_equal(mc_mem_check(p, n, 0), 0);
    assert_int_equal(mc_mem_check(p, n, 1), -EFAULT);
    assert_int_equal(mc_mem_check(p + 3 * pg + 100, 1, 1), -EFAULT);
    assert_int_equal(mc_mem_check(p + 4 * pg, 4 * pg, 1), 0); /* the pipe was drained */
    assert_int_equal(mprotect(p + 6 * pg, pg, PROT_NONE), 0);
    assert_int_equal(mc_mem_check(p + 5 * pg, 2 * pg, 0), -EFAULT);
    assert_int_equal(mc_mem_check(p + 4 * pg, pg, 1), 0);
    assert_int_equal(munmap(p + 7 * pg, pg), 0);
    assert_int_equal(mc_mem_check(p + 7 * pg, 1, 0), -EFAULT);
    assert_int_equal(mc_mem_check((void *)(uintptr_t)-8, 64, 0), -EFAULT); /* wraps */
    for (size_t i = 0; i < 3 * pg; i++)
        assert_int_equal(p[i], (char)(i * 7));
    munmap(p, 7 * pg);
}

/* A forked child never shares its parent's probe pipe: both probe at once,
 * and every probe succeeds with the memory unchanged. */
static void test_mem_check_fork(void **st)
{
    (void)st;
    const size_t n = 64 * 4096;
    char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    memset(p, 0x11, n);
    assert_int_equal(mc_mem_check(p, n, 1), 0); /* the parent's pipe exists now */
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        memset(p, 0x22, n);
        int bad = 0;
        for (int i = 0; i < 2000; i++)
            bad |= mc_mem_check(p, n, 1) != 0;
        for (size_t i = 0; i < n; i++)
            bad |= p[i] != 0x22;
        _exit(bad);
    }
    int bad = 0;
    for (int i = 0; i < 2000; i++)
        bad |= mc_mem_check(p, n, 1) != 0;
    for (size_t i = 0; i < n; i++)
        bad |= p[i] != 0x11;
    int status = 0;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(bad, 0);
    munmap(p, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_byte_size),
        cmocka_unit_test(test_scan),
        cmocka_unit_test(test_mem_check),
        cmocka_unit_test(test_mem_check_fork),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
