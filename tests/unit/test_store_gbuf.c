/* Unit tests of the get buffers' arena (src/store/store_gbuf.c): first fit
 * from the lowest address with 4 KiB rounding, the same block again after a
 * release (warm pages), extents merged back in any release order (the whole
 * arena is one extent again), NULL when full (the callers' malloc fallback,
 * whose blocks mc__gbuf_free frees), and the mapping kept until the last
 * block is released after the store's reference is gone; then threads
 * allocating, filling, checking and releasing at once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>
#include <sys/mman.h>

#include "store_gbuf.h"

#define KB 1024u
#define ARENA (64u * KB)

static mc__gbuf_t *mk(char **base)
{
    void *p = mmap(NULL, ARENA, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    mc__gbuf_t *g = mc__gbuf_new(p, ARENA);
    assert_non_null(g);
    *base = p;
    return g;
}

static void test_first_fit_and_reuse(void **st)
{
    (void)st;
    char *b;
    mc__gbuf_t *g = mk(&b);
    char *a1 = mc__gbuf_alloc(g, 1);
    char *a2 = mc__gbuf_alloc(g, 4 * KB + 1);
    char *a3 = mc__gbuf_alloc(g, 4 * KB);
    assert_ptr_equal(a1, b);
    assert_ptr_equal(a2, b + 4 * KB);
    assert_ptr_equal(a3, b + 12 * KB);
    assert_int_equal(mc__gbuf_used(g), 16 * KB);
    assert_true(mc__gbuf_owns(g, a3) && !mc__gbuf_owns(g, b + ARENA) && !mc__gbuf_owns(NULL, b));
    mc__gbuf_free(g, a2, 4 * KB + 1);
    assert_ptr_equal(mc__gbuf_alloc(g, 8 * KB), a2); /* the same block again */
    assert_null(mc__gbuf_alloc(g, 0));
    assert_null(mc__gbuf_alloc(g, ARENA + 1));
    mc__gbuf_free(g, a1, 1);
    mc__gbuf_free(g, a3, 4 * KB);
    mc__gbuf_free(g, a2, 8 * KB);
    assert_int_equal(mc__gbuf_used(g), 0);
    assert_ptr_equal(mc__gbuf_alloc(g, ARENA), b); /* one extent again */
    mc__gbuf_free(g, b, ARENA);
    mc__gbuf_put(g);
}

static void test_merge_any_order_and_full(void **st)
{
    (void)st;
    char *b;
    mc__gbuf_t *g = mk(&b);
    char *v[16];
    for (int i = 0; i < 16; i++) {
        v[i] = mc__gbuf_alloc(g, 4 * KB);
        assert_ptr_equal(v[i], b + (size_t)i * 4 * KB);
    }
    assert_null(mc__gbuf_alloc(g, 1)); /* full: the caller mallocs */
    void *m = malloc(100);
    mc__gbuf_free(g, m, 100); /* not the arena's: freed (ASan checks) */
    int order[16] = {3, 5, 4, 0, 15, 1, 14, 2, 8, 10, 9, 6, 7, 12, 11, 13};
    for (int i = 0; i < 16; i++)
        mc__gbuf_free(g, v[order[i]], 4 * KB);
    assert_int_equal(mc__gbuf_used(g), 0);
    assert_ptr_equal(mc__gbuf_alloc(g, ARENA), b);
    mc__gbuf_free(g, b, ARENA);
    mc__gbuf_put(g);
}

static void test_outlives_store_reference(void **st)
{
    (void)st;
    char *b;
    mc__gbuf_t *g = mk(&b);
    char *x = mc__gbuf_alloc(g, 10 * KB);
    memset(x, 0x5a, 10 * KB);
    mc__gbuf_put(g); /* the store closes: x's reference keeps the mapping */
    for (size_t i = 0; i < 10 * KB; i++)
        assert_int_equal((unsigned char)x[i], 0x5a);
    mc__gbuf_free(g, x, 10 * KB); /* the last reference: unmapped, freed */
}

typedef struct {
    mc__gbuf_t *g;
    int id;
    int bad;
} thr_t;

static void *worker(void *arg)
{
    thr_t *t = arg;
    for (int r = 0; r < 2000; r++) {
        size_t n = 1 + (size_t)((r * 7 + t->id * 13) % 9000);
        unsigned char *p = mc__gbuf_alloc(t->g, n);
        int fb = !p;
        if (fb) p = malloc(n); /* as the store does when the arena is full */
        memset(p, t->id + r, n);
        for (size_t i = 0; i < n; i += 97)
            if (p[i] != (unsigned char)(t->id + r)) t->bad++;
        mc__gbuf_free(fb ? NULL : t->g, p, n);
    }
    return NULL;
}

static void test_threads(void **st)
{
    (void)st;
    char *b;
    mc__gbuf_t *g = mk(&b);
    pthread_t th[4];
    thr_t t[4];
    for (int i = 0; i < 4; i++) {
        t[i] = (thr_t){g, i, 0};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &t[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(t[i].bad, 0);
    }
    assert_int_equal(mc__gbuf_used(g), 0);
    mc__gbuf_put(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_fit_and_reuse),
        cmocka_unit_test(test_merge_any_order_and_full),
        cmocka_unit_test(test_outlives_store_reference),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
