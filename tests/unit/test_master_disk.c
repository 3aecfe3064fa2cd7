/* Unit tests of the master's side of the SSD tier (master_disk.c) with a fake
 * clock and a segment of fake addresses: objects offloaded at put end become
 * disk replicas, eviction leaves them on disk only, and a promotion never
 * takes the pool past the high watermark (it waits; promoting by eviction
 * churned, each copy pushing out the one promoted before it). Also the
 * DISK_CONFIG answer of --root_fs_dir; with --offload_on_evict, eviction
 * holds an object while its offload is pending, and a stall of the master
 * (no owner could poll meanwhile) extends the hold. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "master_disk.h"
#include "master_int.h"
#include "master_service.h"
#include "mooncake/err.h"

#define MiB (1024ull * 1024ull)

static const mc_uuid_t CA = {1, 1}, DISK = {7, 7};

static mc_master_t *mk(const char *root)
{
    mc_master_config_t cfg;
    mc_master_config_default(&cfg);
    cfg.enable_offload = 1;
    cfg.promotion_on_hit = 1;
    cfg.promotion_admission_threshold = 1;
    snprintf(cfg.root_fs_dir, sizeof cfg.root_fs_dir, "%s", root);
    mc_master_t *m;
    assert_int_equal(mc_master_new(&cfg, &m), 0);
    return m;
}

static void mount_all(mc_master_t *m, uint64_t size, uint64_t now)
{
    mc_segment_t s;
    memset(&s, 0, sizeof s);
    s.id = (mc_uuid_t){1001, 1};
    snprintf(s.name, sizeof s.name, "a:1");
    snprintf(s.te_endpoint, sizeof s.te_endpoint, "a:1");
    snprintf(s.protocol, sizeof s.protocol, "tcp");
    snprintf(s.host_id, sizeof s.host_id, "host-a");
    s.base = 1ull << 32;
    s.size = size;
    assert_int_equal(mc_master_mount_segment(m, &s, CA, now), 0);
    mc_master_disk_mode_t mode;
    assert_int_equal(mc_master_disk_mount(m, CA, DISK, "a:1", "a:2", 1ull << 40, &mode), 0);
}

static void put(mc_master_t *m, const char *key, uint64_t size, uint64_t now)
{
    mc_replicate_config_t c;
    memset(&c, 0, sizeof c);
    c.replica_num = 1;
    mc_replica_t *r = NULL;
    size_t n = 0;
    assert_int_equal(mc_master_put_start(m, CA, key, size, &c, now, &r, &n), 0);
    free(r);
    assert_int_equal(mc_master_put_end(m, CA, key, now), 0);
}

/* The owner's side: takes the offload tasks and reports every copy written. */
static size_t offload_all(mc_master_t *m)
{
    mc_master_disk_tasks_t t;
    assert_int_equal(mc_master_disk_tasks(m, CA, 0, &t), 0);
    int32_t rcs[64];
    assert_true(t.n <= 64);
    if (t.n)
        assert_int_equal(
            mc_master_disk_add(m, CA, (const char *const *)t.keys, t.sizes, t.stamps, t.n, 0, rcs),
            0);
    for (size_t i = 0; i < t.n; i++)
        assert_int_equal(rcs[i], 0);
    size_t n = t.n;
    mc_master_disk_tasks_free(&t);
    return n;
}

static int kinds(mc_master_t *m, const char *key, uint64_t now, int *mem, int *disk)
{
    mc_replica_t *r = NULL;
    size_t n = 0;
    int rc = mc_master_get_replicas(m, key, now, &r, &n, NULL);
    *mem = *disk = 0;
    for (size_t i = 0; i < n; i++) {
        if (r[i].kind == MC_REPLICA_LOCAL_DISK)
            (*disk)++;
        else
            (*mem)++;
    }
    free(r);
    return rc;
}

static void test_promotion_stays_under_high_watermark(void **state)
{
    (void)state;
    mc_master_t *m = mk("");
    uint64_t now = 1000000;
    mount_all(m, 10 * MiB, now);
    char key[16];
    for (int i = 0; i < 10; i++) { /* the pool full, each object on disk too */
        snprintf(key, sizeof key, "k%d", i);
        put(m, key, MiB, now + (uint64_t)i);
    }
    assert_int_equal(offload_all(m), 10);
    mc_master_tick(m, now + 100); /* past the high watermark: the oldest goes */
    int mem, disk;
    assert_int_equal(kinds(m, "k0", now + 101, &mem, &disk), 0);
    assert_int_equal(mem, 0);
    assert_int_equal(disk, 1);
    mc_master_stats_t st;
    mc_master_get_stats(m, &st);
    for (int i = 0; st.allocated_bytes + MiB <= 9 * MiB; i++) { /* back up to the watermark */
        snprintf(key, sizeof key, "x%d", i);
        put(m, key, MiB, now + 101);
        mc_master_get_stats(m, &st);
    }
    uint64_t used = st.allocated_bytes, objects = st.key_count;
    assert_true(used + MiB > 9 * MiB); /* a promotion would pass 90 % */

    /* k0 is hot, but its copy would take the pool past the watermark: it
     * waits, and nothing is evicted for it */
    mc_replicate_config_t c;
    memset(&c, 0, sizeof c);
    c.replica_num = 1;
    mc_replica_t *r = NULL;
    size_t n = 0;
    assert_int_equal(mc_master_promote_start(m, CA, "k0", MiB, &c, now + 102, &r, &n),
                     MC_ERR_NO_AVAILABLE_HANDLE);
    free(r);
    mc_master_get_stats(m, &st);
    assert_int_equal(st.key_count, objects);
    assert_int_equal(st.allocated_bytes, used);
    mc_master_disk_stats_t ds;
    mc_master_disk_stats(m, &ds);
    assert_int_equal(ds.promotions_deferred, 1);
    assert_int_equal(ds.promotions, 0);

    /* room below the watermark: the promotion goes ahead */
    for (int i = 1; i < 10 && st.allocated_bytes + MiB > 9 * MiB; i++) {
        snprintf(key, sizeof key, "k%d", i);
        if (mc_master_remove(m, key, 1, now + 103) == 0) mc_master_get_stats(m, &st);
    }
    r = NULL;
    assert_int_equal(mc_master_promote_start(m, CA, "k0", MiB, &c, now + 104, &r, &n), 0);
    free(r);
    assert_int_equal(mc_master_put_end(m, CA, "k0", now + 105), 0);
    assert_int_equal(kinds(m, "k0", now + 106, &mem, &disk), 0);
    assert_int_equal(mem, 1);
    assert_int_equal(disk, 1);
    mc_master_free(m);
}

/* --offload_on_evict: the pool past its watermark, eviction keeps the
 * objects whose offloads are pending for MC_MASTER_DISK_HOLD_MS; a stall of
 * the master (its loop did not run) extends that by the stall, since no
 * owner could take or report a copy meanwhile; past it they go. */
/* Runs the master's tick (and the owner's heartbeat) from `from` to `to` in
 * steps of 200 ms: a larger jump of the fake clock would read as a stall. */
static void run_until(mc_master_t *m, uint64_t from, uint64_t to)
{
    for (uint64_t t = from; t <= to; t += 200) {
        int st;
        (void)mc_master_ping(m, CA, t, &st);
        mc_master_tick(m, t);
    }
}

static void test_hold_extended_by_stall(void **state)
{
    (void)state;
    mc_master_config_t cfg;
    mc_master_config_default(&cfg);
    cfg.enable_offload = 1;
    cfg.offload_on_evict = 1;
    cfg.default_kv_lease_ttl_ms = 100; /* the gets below hold objects that long */
    mc_master_t *m;
    assert_int_equal(mc_master_new(&cfg, &m), 0);
    uint64_t now = 1000000;
    mount_all(m, 10 * MiB, now);
    char key[16];
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "k%d", i);
        put(m, key, MiB, now + (uint64_t)i);
    }
    int mem, disk;
    mc_master_tick(m, now + 100); /* eviction: k0's offload queued, k0 held */
    assert_int_equal(kinds(m, "k0", now + 101, &mem, &disk), 0);
    assert_int_equal(mem, 1);
    /* the master stopped for 8 s: past the hold of an unstalled master ... */
    mc__master_stalled(m, now + 100, now + 8100, "test");
    uint64_t t = now + 8100 + 1000;
    run_until(m, now + 8100, t);
    for (int i = 0; i < 10; i++) { /* ... every object is still held */
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(kinds(m, key, t + 1, &mem, &disk), 0);
        assert_int_equal(mem, 1);
    }
    /* and past the extended hold, with no copy reported, objects go */
    uint64_t late = now + 100 + 8000 + MC_MASTER_DISK_HOLD_MS + 1000;
    run_until(m, t, late);
    int left = 0;
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "k%d", i);
        left += kinds(m, key, late + 1, &mem, &disk) == 0;
    }
    assert_true(left < 10);
    mc_master_free(m);
}

static void test_disk_config(void **state)
{
    (void)state;
    mc_master_t *m = mk("/srv/mc-root");
    int on = 0;
    const char *root = NULL;
    mc_master_disk_config(m, &on, &root);
    assert_int_equal(on, 1);
    assert_string_equal(root, "/srv/mc-root");
    mc_master_free(m);

    mc_master_config_t cfg;
    mc_master_config_default(&cfg);
    assert_int_equal(mc_master_new(&cfg, &m), 0);
    mc_master_disk_config(m, &on, &root);
    assert_int_equal(on, 0);
    assert_string_equal(root, "");
    mc_master_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_promotion_stays_under_high_watermark),
        cmocka_unit_test(test_disk_config),
        cmocka_unit_test(test_hold_extended_by_stall),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
