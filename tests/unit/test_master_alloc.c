/* Unit tests of the master's per-segment allocator (master_alloc.c): alignment,
 * accounting, exhaustion, the first-fit fallback inside a size class,
 * coalescing, and a randomised alloc/free stress that checks after every step
 * that no two live ranges overlap and that the allocator's invariants hold. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "master_alloc.h"
#include "mooncake/err.h"

static void test_bad_params(void **state)
{
    (void)state;
    mc_alloc_t *a;
    assert_int_equal(mc_alloc_new(0x1000, 0, &a), MC_ERR_INVALID_PARAMS);
    assert_int_equal(mc_alloc_new(UINT64_MAX - 10, 100, &a), MC_ERR_INVALID_PARAMS);
    assert_int_equal(mc_alloc_new(0x1001, 64, &a), MC_ERR_INVALID_PARAMS); /* no aligned unit */
    assert_int_equal(mc_alloc_new(0x1000, 4096, &a), 0);
    mc_alloc_blk_t *b;
    uint64_t addr;
    assert_int_equal(mc_alloc_get(a, 0, &b, &addr), MC_ERR_INVALID_PARAMS);
    assert_int_equal(mc_alloc_get(a, 4097, &b, &addr), MC_ERR_NO_AVAILABLE_HANDLE);
    mc_alloc_destroy(a);
}

static void test_alignment_and_accounting(void **state)
{
    (void)state;
    mc_alloc_t *a;
    /* unaligned base: the usable range is aligned inward */
    assert_int_equal(mc_alloc_new(0x10010, 64 * 100 + 40, &a), 0);
    assert_int_equal(mc_alloc_capacity(a), 64 * 99);
    mc_alloc_blk_t *b1, *b2;
    uint64_t a1, a2;
    assert_int_equal(mc_alloc_get(a, 1, &b1, &a1), 0);
    assert_int_equal(a1 % MC_ALLOC_ALIGN, 0);
    assert_true(a1 >= 0x10010);
    assert_int_equal(mc_alloc_blk_size(b1), 64);
    assert_int_equal(mc_alloc_get(a, 65, &b2, &a2), 0);
    assert_int_equal(a2 % MC_ALLOC_ALIGN, 0);
    assert_int_equal(mc_alloc_blk_size(b2), 128);
    assert_int_equal(mc_alloc_used(a), 192);
    assert_int_equal(mc_alloc_check(a), 0);
    mc_alloc_put(a, b1);
    assert_int_equal(mc_alloc_used(a), 128);
    mc_alloc_put(a, b2);
    assert_int_equal(mc_alloc_used(a), 0);
    assert_int_equal(mc_alloc_largest_free(a), mc_alloc_capacity(a)); /* fully coalesced */
    assert_int_equal(mc_alloc_check(a), 0);
    mc_alloc_destroy(a);
}

static void test_exhaustion_and_reuse(void **state)
{
    (void)state;
    mc_alloc_t *a;
    assert_int_equal(mc_alloc_new(0, 64 * 64, &a), 0);
    mc_alloc_blk_t *b[64];
    uint64_t addr;
    for (int i = 0; i < 64; i++) {
        assert_int_equal(mc_alloc_get(a, 64, &b[i], &addr), 0);
        assert_int_equal(addr, (uint64_t)i * 64);
    }
    mc_alloc_blk_t *x;
    assert_int_equal(mc_alloc_get(a, 1, &x, &addr), MC_ERR_NO_AVAILABLE_HANDLE);
    /* free two neighbours: a 128-byte request fits only once they coalesce */
    mc_alloc_put(a, b[10]);
    assert_int_equal(mc_alloc_get(a, 128, &x, &addr), MC_ERR_NO_AVAILABLE_HANDLE);
    mc_alloc_put(a, b[11]);
    assert_int_equal(mc_alloc_check(a), 0);
    assert_int_equal(mc_alloc_get(a, 128, &x, &addr), 0);
    assert_int_equal(addr, 640);
    mc_alloc_destroy(a); /* frees blocks still handed out */
}

static void test_fit_within_class(void **state)
{
    (void)state;
    /* One free block of 100 units: a 97-unit request rounds up past its class,
     * so only the first-fit scan of the class can find it. */
    mc_alloc_t *a;
    assert_int_equal(mc_alloc_new(0, 64 * 100, &a), 0);
    mc_alloc_blk_t *b;
    uint64_t addr;
    assert_int_equal(mc_alloc_get(a, 64 * 97, &b, &addr), 0);
    assert_int_equal(mc_alloc_largest_free(a), 64 * 3);
    assert_int_equal(mc_alloc_get(a, 64 * 98, &b, &addr), MC_ERR_NO_AVAILABLE_HANDLE);
    assert_int_equal(mc_alloc_check(a), 0);
    mc_alloc_destroy(a);
}

typedef struct {
    mc_alloc_blk_t *b;
    uint64_t addr, size;
} live_t;

static int cmp_live(const void *x, const void *y)
{
    const live_t *a = x, *b = y;
    return a->addr < b->addr ? -1 : a->addr > b->addr;
}

static void check_disjoint(live_t *v, size_t n, uint64_t lo, uint64_t hi)
{
    live_t *s = malloc((n ? n : 1) * sizeof *s);
    assert_non_null(s);
    memcpy(s, v, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_live);
    for (size_t i = 0; i < n; i++) {
        assert_true(s[i].addr >= lo);
        assert_true(s[i].addr + s[i].size <= hi);
        if (i) assert_true(s[i - 1].addr + s[i - 1].size <= s[i].addr);
    }
    free(s);
}

static void test_random_stress(void **state)
{
    (void)state;
    const uint64_t base = 0x7f0000000040ull, size = 64ull << 20;
    mc_alloc_t *a;
    assert_int_equal(mc_alloc_new(base, size, &a), 0);
    enum { MAXLIVE = 2000, STEPS = 20000 };
    live_t *live = calloc(MAXLIVE, sizeof *live);
    assert_non_null(live);
    size_t n = 0, fails = 0;
    uint64_t sum = 0;
    srand(12345);
    for (int step = 0; step < STEPS; step++) {
        int do_alloc = n == 0 || (n < MAXLIVE && rand() % 100 < 55);
        if (do_alloc) {
            uint64_t sz;
            int kind = rand() % 10;
            if (kind < 6)
                sz = 1 + (uint64_t)(rand() % 4096);
            else if (kind < 9)
                sz = 1 + (uint64_t)(rand() % (256 * 1024));
            else
                sz = 1 + (uint64_t)(rand() % (4 << 20));
            live_t l;
            int rc = mc_alloc_get(a, sz, &l.b, &l.addr);
            if (rc) {
                assert_int_equal(rc, MC_ERR_NO_AVAILABLE_HANDLE);
                /* a failure is only allowed when no free block is large enough */
                assert_true(mc_alloc_largest_free(a) < sz);
                fails++;
                continue;
            }
            l.size = mc_alloc_blk_size(l.b);
            assert_true(l.size >= sz);
            assert_int_equal(l.addr % MC_ALLOC_ALIGN, 0);
            live[n++] = l;
            sum += l.size;
        } else {
            size_t i = (size_t)rand() % n;
            sum -= live[i].size;
            mc_alloc_put(a, live[i].b);
            live[i] = live[--n];
        }
        assert_int_equal(mc_alloc_used(a), sum);
        if (step % 97 == 0) {
            check_disjoint(live, n, base, base + size);
            assert_int_equal(mc_alloc_check(a), 0);
        }
    }
    check_disjoint(live, n, base, base + size);
    assert_int_equal(mc_alloc_check(a), 0);
    while (n)
        mc_alloc_put(a, live[--n].b);
    assert_int_equal(mc_alloc_used(a), 0);
    assert_int_equal(mc_alloc_largest_free(a), mc_alloc_capacity(a));
    assert_int_equal(mc_alloc_check(a), 0);
    (void)fails;
    free(live);
    mc_alloc_destroy(a);
}

/* mc_alloc_claim: exact ranges anywhere (ascending, descending, adjacent),
 * refusals outside the segment, unaligned and overlapping, then frees that
 * coalesce back into one free range. */
static void test_claim(void **state)
{
    (void)state;
    mc_alloc_t *a;
    const uint64_t base = 0x100000, cap = 64 * 1000;
    assert_int_equal(mc_alloc_new(base, cap, &a), 0);
    mc_alloc_blk_t *b[8];
    assert_int_equal(mc_alloc_claim(a, base + 640, 100, &b[0]), 0); /* rounded to 128 */
    assert_int_equal(mc_alloc_blk_addr(b[0]), base + 640);
    assert_int_equal(mc_alloc_blk_size(b[0]), 128);
    assert_int_equal(mc_alloc_claim(a, base + 768, 64, &b[1]), 0); /* adjacent after */
    assert_int_equal(mc_alloc_claim(a, base, 64, &b[2]), 0);       /* first unit, behind the hint */
    assert_int_equal(mc_alloc_claim(a, base + cap - 64, 64, &b[3]), 0); /* last unit */
    assert_int_equal(mc_alloc_used(a), 128 + 64 + 64 + 64);
    assert_int_equal(mc_alloc_check(a), 0);
    mc_alloc_blk_t *x = (mc_alloc_blk_t *)1;
    /* overlaps: inside, straddling the start, straddling the end, the same */
    assert_int_equal(mc_alloc_claim(a, base + 704, 64, &x), MC_ERR_NO_AVAILABLE_HANDLE);
    assert_null(x);
    assert_int_equal(mc_alloc_claim(a, base + 576, 128, &x), MC_ERR_NO_AVAILABLE_HANDLE);
    assert_int_equal(mc_alloc_claim(a, base + 768, 4096, &x), MC_ERR_NO_AVAILABLE_HANDLE);
    assert_int_equal(mc_alloc_claim(a, base + 640, 128, &x), MC_ERR_NO_AVAILABLE_HANDLE);
    /* outside, unaligned, empty, wrapping */
    assert_int_equal(mc_alloc_claim(a, base - 64, 64, &x), MC_ERR_INVALID_PARAMS);
    assert_int_equal(mc_alloc_claim(a, base + cap, 64, &x), MC_ERR_INVALID_PARAMS);
    assert_int_equal(mc_alloc_claim(a, base + cap - 64, 128, &x), MC_ERR_INVALID_PARAMS);
    assert_int_equal(mc_alloc_claim(a, base + 65, 64, &x), MC_ERR_INVALID_PARAMS);
    assert_int_equal(mc_alloc_claim(a, base + 64, 0, &x), MC_ERR_INVALID_PARAMS);
    assert_int_equal(mc_alloc_claim(a, base + 64, UINT64_MAX - 10, &x), MC_ERR_INVALID_PARAMS);
    assert_int_equal(mc_alloc_check(a), 0);
    assert_int_equal(mc_alloc_used(a), 320);
    /* gets never hand out a claimed byte */
    mc_alloc_blk_t *g;
    uint64_t ga;
    while (mc_alloc_get(a, 64, &g, &ga) == 0) {
        assert_true(ga + 64 <= base + 640 || ga >= base + 832);
        assert_true(ga >= base + 64 && ga + 64 <= base + cap - 64);
    }
    assert_int_equal(mc_alloc_used(a), cap);
    mc_alloc_destroy(a);

    /* claims then frees in any order coalesce back to one range */
    assert_int_equal(mc_alloc_new(base, cap, &a), 0);
    for (int i = 0; i < 8; i++)
        assert_int_equal(mc_alloc_claim(a, base + (uint64_t)(7 - i) * 64 * 100, 64 * 50, &b[i]), 0);
    assert_int_equal(mc_alloc_check(a), 0);
    int order[8] = {3, 0, 7, 5, 1, 6, 2, 4};
    for (int i = 0; i < 8; i++) {
        mc_alloc_put(a, b[order[i]]);
        assert_int_equal(mc_alloc_check(a), 0);
    }
    assert_int_equal(mc_alloc_used(a), 0);
    assert_int_equal(mc_alloc_largest_free(a), cap);
    /* the hint survives the node it pointed at being merged away */
    assert_int_equal(mc_alloc_claim(a, base + 64, 64, &b[0]), 0);
    assert_int_equal(mc_alloc_claim(a, base + 256, 64, &b[1]), 0);
    mc_alloc_put(a, b[0]);
    mc_alloc_put(a, b[1]);
    assert_int_equal(mc_alloc_claim(a, base + 512, 64, &b[2]), 0);
    assert_int_equal(mc_alloc_check(a), 0);
    mc_alloc_destroy(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_alignment_and_accounting),
        cmocka_unit_test(test_exhaustion_and_reuse),
        cmocka_unit_test(test_fit_within_class),
        cmocka_unit_test(test_random_stress),
        cmocka_unit_test(test_claim),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
