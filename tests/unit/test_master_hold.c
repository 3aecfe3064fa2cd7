/* Unit tests of held frees (master_hold.c) on the real core with fake
 * segments: while the hold callback says so, a freed range stays out of its
 * allocator (a put does not get it) until released up to its position; a
 * range held in a segment that unmounts goes with it; with the hold off,
 * frees are immediate. Run under ASan/UBSan. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "master_service.h"

#define KiB 1024ull

static mc_uuid_t CA = {1, 1};

typedef struct {
    int on;
    uint64_t pos; /* the journal position handed to the core */
} hold_t;

static int hold_cb(void *arg, uint64_t *pos)
{
    hold_t *h = arg;
    if (!h->on) return 0;
    *pos = h->pos;
    return 1;
}

static mc_master_t *setup(hold_t *h, mc_segment_t *seg)
{
    mc_master_config_t cfg;
    mc_master_config_default(&cfg);
    cfg.eviction_ratio = 0; /* nothing is evicted to make room here */
    mc_master_t *m;
    assert_int_equal(mc_master_new(&cfg, &m), 0);
    mc_master_set_free_hold(m, hold_cb, h, 0);
    memset(seg, 0, sizeof *seg);
    seg->id = (mc_uuid_t){1001, 1};
    snprintf(seg->name, sizeof seg->name, "s0");
    snprintf(seg->te_endpoint, sizeof seg->te_endpoint, "s0");
    snprintf(seg->protocol, sizeof seg->protocol, "tcp");
    snprintf(seg->host_id, sizeof seg->host_id, "host-1");
    seg->base = 1ull << 20;
    seg->size = 2 * KiB;
    assert_int_equal(mc_master_mount_segment(m, seg, CA, 0), 0);
    return m;
}

/* Puts key (1 KiB, hard-pinned: eviction never takes it) and returns the
 * address of its replica; 0 when it failed. */
static uint64_t put_at(mc_master_t *m, const char *key)
{
    mc_replicate_config_t c;
    memset(&c, 0, sizeof c);
    c.replica_num = 1;
    c.with_hard_pin = 1;
    mc_replica_t *r = NULL;
    size_t n = 0;
    if (mc_master_put_start(m, CA, key, KiB, &c, 0, &r, &n) != 0) return 0;
    uint64_t addr = n ? r[0].addr : 0;
    free(r);
    assert_int_equal(mc_master_put_end(m, CA, key, 0), 0);
    return addr;
}

static void test_held_range_not_reused_until_released(void **state)
{
    (void)state;
    hold_t h = {1, 7};
    mc_segment_t seg;
    mc_master_t *m = setup(&h, &seg);
    uint64_t a = put_at(m, "a");
    assert_true(a != 0);
    assert_int_equal(mc_master_remove(m, "a", 1, 0), 0);
    assert_int_equal(mc_master_held_bytes(m), KiB);
    assert_int_equal(mc_master_held_total(m), 1);
    uint64_t b = put_at(m, "b"); /* the other half: a's range is held */
    assert_true(b != 0 && b != a);
    assert_int_equal(put_at(m, "c"), 0);               /* full: the held KiB is not handed out */
    assert_int_equal(mc_master_release_held(m, 6), 0); /* not acked that far */
    assert_int_equal(mc_master_held_bytes(m), KiB);
    assert_int_equal(mc_master_release_held(m, 7), KiB);
    assert_int_equal(mc_master_held_bytes(m), 0);
    assert_int_equal(put_at(m, "c"), a); /* released: handed out again */
    mc_master_free(m);
}

static void test_held_range_goes_with_its_segment(void **state)
{
    (void)state;
    hold_t h = {1, 3};
    mc_segment_t seg;
    mc_master_t *m = setup(&h, &seg);
    assert_true(put_at(m, "a") != 0);
    assert_true(put_at(m, "b") != 0);
    assert_int_equal(mc_master_remove(m, "a", 1, 0), 0);
    assert_int_equal(mc_master_held_bytes(m), KiB);
    assert_int_equal(mc_master_unmount_segment(m, seg.id, CA), 0);
    assert_int_equal(mc_master_held_bytes(m), 0);
    assert_int_equal(mc_master_release_held(m, UINT64_MAX), 0); /* nothing left to touch */
    mc_master_free(m);
}

static void test_no_hold_frees_at_once(void **state)
{
    (void)state;
    hold_t h = {0, 0};
    mc_segment_t seg;
    mc_master_t *m = setup(&h, &seg);
    uint64_t a = put_at(m, "a");
    assert_true(put_at(m, "b") != 0);
    assert_int_equal(mc_master_remove(m, "a", 1, 0), 0);
    assert_int_equal(mc_master_held_bytes(m), 0);
    assert_int_equal(mc_master_held_total(m), 0);
    assert_int_equal(put_at(m, "c"), a);
    mc_master_free(m);
}

static void test_free_with_ranges_still_held(void **state)
{
    (void)state;
    hold_t h = {1, 1};
    mc_segment_t seg;
    mc_master_t *m = setup(&h, &seg);
    assert_true(put_at(m, "a") != 0);
    assert_int_equal(mc_master_remove(m, "a", 1, 0), 0);
    mc_master_free(m); /* the held entry is freed with the core (ASan checks) */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_held_range_not_reused_until_released),
        cmocka_unit_test(test_held_range_goes_with_its_segment),
        cmocka_unit_test(test_no_hold_frees_at_once),
        cmocka_unit_test(test_free_with_ranges_still_held),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
