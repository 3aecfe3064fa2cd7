/* Unit tests of the master's core (master_service.c) with a fake clock and
 * segments made of fake address ranges (the core never touches data):
 * validation, two-phase put, replica placement, best effort, leases and
 * removal, regex removal, upsert, eviction order and triggers, zombie puts,
 * client liveness and remount, unmount, stats, and a multi-threaded smoke test
 * (run under ASan/UBSan). */
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "master_service.h"

#define KiB 1024ull
#define MiB (1024ull * 1024ull)

static mc_uuid_t CA = {1, 1}, CB = {2, 2}, CC = {3, 3};

static mc_master_t *mk(const mc_master_config_t *cfg)
{
    mc_master_t *m;
    assert_int_equal(mc_master_new(cfg, &m), 0);
    return m;
}

static mc_segment_t segdesc(mc_uuid_t client, uint64_t idlo, const char *name, uint64_t base,
                            uint64_t size)
{
    mc_segment_t s;
    memset(&s, 0, sizeof s);
    s.id = (mc_uuid_t){client.hi + 1000, idlo};
    snprintf(s.name, sizeof s.name, "%s", name);
    snprintf(s.te_endpoint, sizeof s.te_endpoint, "%s", name);
    snprintf(s.protocol, sizeof s.protocol, "tcp");
    snprintf(s.host_id, sizeof s.host_id, "host-%llu", (unsigned long long)client.hi);
    s.base = base;
    s.size = size;
    return s;
}

static mc_segment_t mount(mc_master_t *m, mc_uuid_t client, uint64_t idlo, const char *name,
                          uint64_t base, uint64_t size, uint64_t now)
{
    mc_segment_t s = segdesc(client, idlo, name, base, size);
    assert_int_equal(mc_master_mount_segment(m, &s, client, now), 0);
    return s;
}

static mc_replicate_config_t rcfg(uint32_t n)
{
    mc_replicate_config_t c;
    memset(&c, 0, sizeof c);
    c.replica_num = n;
    return c;
}

static int put_full(mc_master_t *m, mc_uuid_t c, const char *key, uint64_t size,
                    const mc_replicate_config_t *cfg, uint64_t now)
{
    mc_replica_t *r = NULL;
    size_t n = 0;
    int rc = mc_master_put_start(m, c, key, size, cfg, now, &r, &n);
    free(r);
    if (rc) return rc;
    return mc_master_put_end(m, c, key, now);
}

static int put1(mc_master_t *m, const char *key, uint64_t size, uint64_t now)
{
    mc_replicate_config_t c = rcfg(1);
    return put_full(m, CA, key, size, &c, now);
}

static void count_key(const char *key, void *arg)
{
    (void)key;
    (*(int *)arg)++;
}

typedef struct {
    const char *want;
    int found;
} find_t;
static void find_key(const char *key, void *arg)
{
    find_t *f = arg;
    if (strcmp(key, f->want) == 0) f->found = 1;
}
/* Whether key is in the index, without granting a lease. */
static int has_key(mc_master_t *m, const char *key)
{
    find_t f = {key, 0};
    mc_master_each_key(m, find_key, &f);
    return f.found;
}

static uint64_t allocated(mc_master_t *m)
{
    mc_master_stats_t st;
    mc_master_get_stats(m, &st);
    return st.allocated_bytes;
}

/* ---- validation ---- */

static void test_validation(void **state)
{
    (void)state;
    mc_master_t *m = mk(NULL);
    mount(m, CA, 1, "a:1", 0x100000, 1 * MiB, 0);
    mc_replicate_config_t c = rcfg(1);
    mc_replica_t *r = NULL;
    size_t n = 0;
    assert_int_equal(mc_master_put_start(m, CA, "", 10, &c, 0, &r, &n), MC_ERR_INVALID_PARAMS);
    assert_int_equal(mc_master_put_start(m, CA, "k", 0, &c, 0, &r, &n), MC_ERR_INVALID_PARAMS);
    mc_replicate_config_t z = rcfg(0);
    assert_int_equal(mc_master_put_start(m, CA, "k", 10, &z, 0, &r, &n), MC_ERR_INVALID_PARAMS);
    char *longkey = malloc(4098);
    memset(longkey, 'x', 4097);
    longkey[4097] = 0;
    assert_int_equal(mc_master_put_start(m, CA, longkey, 10, &c, 0, &r, &n), MC_ERR_INVALID_PARAMS);
    longkey[4096] = 0; /* exactly 4096 is fine */
    assert_int_equal(put_full(m, CA, longkey, 10, &c, 0), 0);
    free(longkey);
    /* soft pin rules */
    mc_replicate_config_t sp = rcfg(1);
    sp.has_soft_pin_ttl = 1;
    sp.soft_pin_ttl_ms = 1000;
    sp.soft_pin_action = MC_SOFT_PIN_PRESERVE;
    assert_int_equal(mc_master_put_start(m, CA, "s", 10, &sp, 0, &r, &n), MC_ERR_INVALID_PARAMS);
    sp.soft_pin_action = MC_SOFT_PIN_DISABLE;
    assert_int_equal(mc_master_put_start(m, CA, "s", 10, &sp, 0, &r, &n), MC_ERR_INVALID_PARAMS);
    sp.soft_pin_action = MC_SOFT_PIN_ENABLE;
    sp.soft_pin_ttl_ms = 86400000ull + 1;
    assert_int_equal(mc_master_put_start(m, CA, "s", 10, &sp, 0, &r, &n), MC_ERR_INVALID_PARAMS);
    sp.soft_pin_ttl_ms = 86400000ull;
    assert_int_equal(put_full(m, CA, "s", 10, &sp, 0), 0);
    mc_master_stats_t st;
    mc_master_get_stats(m, &st);
    assert_int_equal(st.soft_pin_key_count, 1);
    /* segments */
    mc_segment_t s0 = segdesc(CA, 9, "a:1", 0x900000, 0);
    assert_int_equal(mc_master_mount_segment(m, &s0, CA, 0), MC_ERR_INVALID_PARAMS);
    mc_segment_t ov = segdesc(CA, 10, "a:1", 0x100000 + 512 * KiB, 1 * MiB);
    assert_int_equal(mc_master_mount_segment(m, &ov, CA, 0), MC_ERR_INVALID_PARAMS);
    mc_segment_t other = segdesc(CB, 10, "b:1", 0x100000 + 512 * KiB, 1 * MiB);
    assert_int_equal(mc_master_mount_segment(m, &other, CB, 0), 0); /* other process */
    mc_segment_t again = segdesc(CA, 1, "a:1", 0x100000, 1 * MiB);
    assert_int_equal(mc_master_mount_segment(m, &again, CA, 0), 0); /* same id: success */
    mc_segment_t noname = segdesc(CA, 11, "", 0x5000000, 1 * MiB);
    assert_int_equal(mc_master_mount_segment(m, &noname, CA, 0), MC_ERR_INVALID_PARAMS);
    mc_master_get_stats(m, &st);
    assert_int_equal(st.segment_count, 2);
    assert_int_equal(st.capacity_bytes, 2 * MiB);
    mc_master_free(m);
}

/* ---- two-phase put ---- */

static void test_put_flow(void **state)
{
    (void)state;
    mc_master_t *m = mk(NULL);
    mount(m, CA, 1, "a:1", 0x100000, 1 * MiB, 0);
    mc_replicate_config_t c = rcfg(1);
    mc_replica_t *r = NULL;
    size_t n = 0;
    uint64_t ttl = 0;
    assert_int_equal(mc_master_put_start(m, CA, "k", 1000, &c, 5, &r, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].status, MC_REPLICA_PROCESSING);
    assert_int_equal(r[0].size, 1000);
    assert_string_equal(r[0].endpoint, "a:1");
    assert_true(r[0].addr >= 0x100000 && r[0].addr + 1000 <= 0x100000 + MiB);
    free(r);
    assert_int_equal(mc_master_get_replicas(m, "k", 6, &r, &n, &ttl), MC_ERR_REPLICA_IS_NOT_READY);
    assert_int_equal(mc_master_exist(m, "k", 6), 0);
    assert_int_equal(mc_master_put_end(m, CB, "k", 7), MC_ERR_ILLEGAL_CLIENT);
    assert_int_equal(mc_master_put_revoke(m, CB, "k"), MC_ERR_ILLEGAL_CLIENT);
    assert_int_equal(mc_master_put_end(m, CA, "k", 7), 0);
    assert_int_equal(mc_master_put_end(m, CA, "k", 8), 0); /* repeated end: no-op */
    assert_int_equal(mc_master_put_end(m, CB, "k", 8), MC_ERR_ILLEGAL_CLIENT);
    assert_int_equal(mc_master_put_revoke(m, CA, "k"), MC_ERR_INVALID_WRITE);
    assert_int_equal(mc_master_get_replicas(m, "k", 9, &r, &n, &ttl), 0);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].status, MC_REPLICA_COMPLETE);
    assert_int_equal(ttl, 10000);
    free(r);
    /* put never overwrites */
    assert_int_equal(mc_master_put_start(m, CB, "k", 1000, &c, 10, &r, &n),
                     MC_ERR_OBJECT_ALREADY_EXISTS);
    /* end/revoke of a key with no write */
    assert_int_equal(mc_master_put_end(m, CA, "none", 10), MC_ERR_INVALID_WRITE);
    assert_int_equal(mc_master_put_revoke(m, CA, "none"), MC_ERR_INVALID_WRITE);
    /* revoke returns the space and drops the key */
    uint64_t before = allocated(m);
    assert_int_equal(mc_master_put_start(m, CA, "rv", 4096, &c, 10, &r, &n), 0);
    free(r);
    assert_int_equal(allocated(m), before + 4096);
    assert_int_equal(mc_master_put_revoke(m, CA, "rv"), 0);
    assert_int_equal(allocated(m), before);
    assert_int_equal(mc_master_get_replicas(m, "rv", 11, &r, &n, &ttl), MC_ERR_OBJECT_NOT_FOUND);
    assert_int_equal(mc_master_put_end(m, CA, "rv", 11), MC_ERR_INVALID_WRITE);
    mc_master_free(m);
}

/* ---- placement ---- */

static void test_replicas_distinct_segments(void **state)
{
    (void)state;
    for (int strategy = 0; strategy < 2; strategy++) {
        mc_master_config_t cfg;
        mc_master_config_default(&cfg);
        cfg.allocation_strategy = strategy ? MC_ALLOC_FREE_RATIO_FIRST : MC_ALLOC_RANDOM;
        mc_master_t *m = mk(&cfg);
        const mc_uuid_t cl[5] = {{10, 1}, {11, 1}, {12, 1}, {13, 1}, {14, 1}};
        for (int i = 0; i < 5; i++) {
            char name[32];
            snprintf(name, sizeof name, "h%d:1", i);
            mount(m, cl[i], 1, name, 0x1000000, 64 * MiB, 0);
        }
        mc_replicate_config_t c = rcfg(3);
        for (int k = 0; k < 50; k++) {
            char key[32];
            snprintf(key, sizeof key, "key%d", k);
            mc_replica_t *r = NULL;
            size_t n = 0;
            assert_int_equal(mc_master_put_start(m, CA, key, 100 * KiB, &c, 0, &r, &n), 0);
            assert_int_equal(n, 3);
            for (size_t i = 0; i < n; i++)
                for (size_t j = i + 1; j < n; j++)
                    assert_string_not_equal(r[i].endpoint, r[j].endpoint);
            free(r);
        }
        /* preferred segment comes first */
        const char *pref[] = {"h3:1"};
        mc_replicate_config_t p = rcfg(2);
        p.npreferred = 1;
        p.preferred_segments = pref;
        for (int k = 0; k < 10; k++) {
            char key[32];
            snprintf(key, sizeof key, "pref%d", k);
            mc_replica_t *r = NULL;
            size_t n = 0;
            assert_int_equal(mc_master_put_start(m, CA, key, KiB, &p, 0, &r, &n), 0);
            assert_int_equal(n, 2);
            assert_string_equal(r[0].endpoint, "h3:1");
            assert_string_not_equal(r[1].endpoint, "h3:1");
            free(r);
        }
        mc_master_free(m);
    }
}

static void test_free_ratio_first(void **state)
{
    (void)state;
    mc_master_config_t cfg;
    mc_master_config_default(&cfg);
    cfg.allocation_strategy = MC_ALLOC_FREE_RATIO_FIRST;
    mc_master_t *m = mk(&cfg);
    mount(m, CA, 1, "a:1", 0x100000, 4 * MiB, 0);
    mount(m, CB, 1, "b:1", 0x100000, 4 * MiB, 0);
    mount(m, CC, 1, "c:1", 0x100000, 4 * MiB, 0);
    const char *pa[] = {"a:1"}, *pb[] = {"b:1"};
    mc_replicate_config_t ca = rcfg(1), cb = rcfg(1), one = rcfg(1);
    ca.npreferred = 1;
    ca.preferred_segments = pa;
    cb.npreferred = 1;
    cb.preferred_segments = pb;
    assert_int_equal(put_full(m, CA, "fa", 3 * MiB, &ca, 0), 0);
    assert_int_equal(put_full(m, CA, "fb", 1 * MiB, &cb, 0), 0);
    /* c:1 is the freest, then b:1 */
    for (int i = 0; i < 8; i++) {
        char key[16];
        snprintf(key, sizeof key, "x%d", i);
        mc_replica_t *r = NULL;
        size_t n = 0;
        assert_int_equal(mc_master_put_start(m, CA, key, 64 * KiB, &one, 0, &r, &n), 0);
        assert_string_equal(r[0].endpoint, "c:1");
        free(r);
    }
    mc_replicate_config_t two = rcfg(2);
    mc_replica_t *r = NULL;
    size_t n = 0;
    assert_int_equal(mc_master_put_start(m, CA, "y", 64 * KiB, &two, 0, &r, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(r[0].endpoint, "c:1");
    assert_string_equal(r[1].endpoint, "b:1");
    free(r);
    mc_master_free(m);
}

static void test_best_effort_partial(void **state)
{
    (void)state;
    mc_master_t *m = mk(NULL);
    /* two segments of the same process (same name) and one other */
    mount(m, CA, 1, "a:1", 0x100000, 1 * MiB, 0);
    mount(m, CA, 2, "a:1", 0x900000, 1 * MiB, 0);
    mount(m, CB, 1, "b:1", 0x100000, 1 * MiB, 0);
    mc_replicate_config_t c = rcfg(4);
    mc_replica_t *r = NULL;
    size_t n = 0;
    assert_int_equal(mc_master_put_start(m, CA, "k", 1000, &c, 0, &r, &n), 0);
    assert_int_equal(n, 2); /* one per segment name */
    assert_string_not_equal(r[0].endpoint, r[1].endpoint);
    free(r);
    /* no segment could ever hold 2 MiB: bad input (-600), nothing evicted */
    mc_replicate_config_t one = rcfg(1);
    assert_int_equal(mc_master_put_start(m, CA, "big", 2 * MiB, &one, 0, &r, &n),
                     MC_ERR_INVALID_PARAMS);
    /* fill b:1 so that a 2-replica put gets only a:1 */
    const char *pb[] = {"b:1"};
    mc_replicate_config_t onb = rcfg(1);
    onb.npreferred = 1;
    onb.preferred_segments = pb;
    assert_int_equal(put_full(m, CB, "fill", MiB - 64 * KiB, &onb, 0), 0);
    mc_replicate_config_t two = rcfg(2);
    assert_int_equal(mc_master_put_start(m, CA, "k2", 512 * KiB, &two, 0, &r, &n), 0);
    assert_int_equal(n, 1);
    free(r);
    mc_master_free(m);
}

static void test_no_segments(void **state)
{
    (void)state;
    mc_master_t *m = mk(NULL);
    mc_replicate_config_t c = rcfg(1);
    mc_replica_t *r = NULL;
    size_t n = 0;
    assert_int_equal(mc_master_put_start(m, CA, "k", 10, &c, 0, &r, &n),
                     MC_ERR_NO_AVAILABLE_HANDLE);
    assert_null(r);
    mc_master_free(m);
}

/* ---- leases and removal ---- */

static void test_leases_and_remove(void **state)
{
    (void)state;
    mc_master_config_t cfg;
    mc_master_config_default(&cfg);
    cfg.default_kv_lease_ttl_ms = 500;
    mc_master_t *m = mk(&cfg);
    mount(m, CA, 1, "a:1", 0x100000, 4 * MiB, 0);
    assert_int_equal(mc_master_remove(m, "nope", 0, 0), MC_ERR_OBJECT_NOT_FOUND);
    assert_int_equal(put1(m, "k", 100, 1000), 0);
    /* right after put the object is removable (lease = now) */
    assert_int_equal(put1(m, "k2", 100, 1000), 0);
    assert_int_equal(mc_master_remove(m, "k2", 0, 1000), 0);
    /* get grants a lease: max(lease, now + ttl) */
    mc_replica_t *r = NULL;
    size_t n = 0;
    uint64_t ttl;
    assert_int_equal(mc_master_get_replicas(m, "k", 1100, &r, &n, &ttl), 0);
    free(r);
    assert_int_equal(ttl, 500);
    assert_int_equal(mc_master_remove(m, "k", 0, 1599), MC_ERR_OBJECT_HAS_LEASE);
    /* an earlier read does not shorten the lease */
    assert_int_equal(mc_master_exist(m, "k", 1050), 1);
    assert_int_equal(mc_master_remove(m, "k", 0, 1599), MC_ERR_OBJECT_HAS_LEASE);
    assert_int_equal(mc_master_remove(m, "k", 0, 1600), 0);
    assert_int_equal(mc_master_exist(m, "k", 1600), 0);
    /* exist grants a lease too; force overrides it */
    assert_int_equal(put1(m, "e", 100, 2000), 0);
    assert_int_equal(mc_master_exist(m, "e", 2000), 1);
    assert_int_equal(mc_master_remove(m, "e", 0, 2100), MC_ERR_OBJECT_HAS_LEASE);
    uint64_t before = allocated(m);
    assert_int_equal(mc_master_remove(m, "e", 1, 2100), 0);
    /* a forced removal under a lease parks the range until the lease's end
     * (2500): a reader holding the lease never sees it reused */
    assert_int_equal(allocated(m), before);
    mc_master_tick(m, 2499);
    assert_int_equal(allocated(m), before);
    mc_master_tick(m, 2500);
    assert_true(allocated(m) < before);
    /* in-progress object: not ready even with force */
    mc_replicate_config_t c = rcfg(1);
    assert_int_equal(mc_master_put_start(m, CA, "p", 100, &c, 3000, &r, &n), 0);
    free(r);
    assert_int_equal(mc_master_remove(m, "p", 0, 3000), MC_ERR_REPLICA_IS_NOT_READY);
    assert_int_equal(mc_master_remove(m, "p", 1, 3000), MC_ERR_REPLICA_IS_NOT_READY);
    assert_int_equal(mc_master_put_end(m, CA, "p", 3001), 0);
    assert_int_equal(mc_master_remove(m, "p", 0, 3001), 0);
    assert_int_equal(allocated(m), 0);
    mc_master_free(m);
}

/* upstream's BatchReplicaClear, one key at a time */
static void test_replica_clear(void **state)
{
    (void)state;
    mc_master_config_t cfg;
    mc_master_config_default(&cfg);
    cfg.default_kv_lease_ttl_ms = 500;
    mc_master_t *m = mk(&cfg);
    mount(m, CA, 1, "a:1", 0x100000, 4 * MiB, 0);
    mount(m, CB, 1, "b:1", 0x100000, 4 * MiB, 0);
    assert_int_equal(mc_master_replica_clear(m, CA, "nope", "", 0), MC_ERR_OBJECT_NOT_FOUND);
    mc_replicate_config_t two = rcfg(2);
    assert_int_equal(put_full(m, CA, "k", 100 * KiB, &two, 1000), 0);
    uint64_t full = allocated(m);
    /* only its writer clears it, and not under a read lease */
    assert_int_equal(mc_master_replica_clear(m, CB, "k", "", 1000), MC_ERR_ILLEGAL_CLIENT);
    assert_int_equal(mc_master_exist(m, "k", 1000), 1);
    assert_int_equal(mc_master_replica_clear(m, CA, "k", "", 1499), MC_ERR_OBJECT_HAS_LEASE);
    /* one segment's replica: the other stays, its space is freed */
    assert_int_equal(mc_master_replica_clear(m, CA, "k", "c:1", 1500), MC_ERR_REPLICA_NOT_FOUND);
    assert_int_equal(mc_master_replica_clear(m, CA, "k", "a:1", 1500), 0);
    assert_int_equal(allocated(m), full / 2);
    mc_replica_t *r = NULL;
    size_t n = 0;
    uint64_t ttl;
    assert_int_equal(mc_master_get_replicas(m, "k", 1500, &r, &n, &ttl), 0);
    assert_int_equal(n, 1);
    assert_string_equal(r[0].endpoint, "b:1");
    free(r);
    assert_int_equal(mc_master_replica_clear(m, CA, "k", "a:1", 2000), MC_ERR_REPLICA_NOT_FOUND);
    /* its last replica: the object goes */
    assert_int_equal(mc_master_replica_clear(m, CA, "k", "b:1", 2000), 0);
    assert_false(has_key(m, "k"));
    assert_int_equal(allocated(m), 0);
    /* "" clears every replica; a write in progress is not cleared */
    assert_int_equal(put_full(m, CA, "k2", 100, &two, 3000), 0);
    assert_int_equal(mc_master_replica_clear(m, CA, "k2", NULL, 3000), 0);
    assert_false(has_key(m, "k2"));
    mc_replicate_config_t one = rcfg(1);
    assert_int_equal(mc_master_put_start(m, CA, "p", 100, &one, 4000, &r, &n), 0);
    free(r);
    assert_int_equal(mc_master_replica_clear(m, CA, "p", "", 4000), MC_ERR_REPLICA_IS_NOT_READY);
    assert_int_equal(mc_master_put_end(m, CA, "p", 4001), 0);
    assert_int_equal(mc_master_replica_clear(m, CA, "p", "", 4001), 0);
    assert_int_equal(allocated(m), 0);
    mc_master_free(m);
}

typedef struct {
    int calls;
    size_t reps;
} rx_t;
static void rx_cb(const char *key, const mc_replica_t *r, size_t n, void *arg)
{
    rx_t *x = arg;
    x->calls++;
    x->reps += n;
    assert_int_equal(key[0], 'a');
    for (size_t i = 0; i < n; i++)
        assert_int_equal(r[i].status, MC_REPLICA_COMPLETE);
}

/* A pattern with catastrophic backtracking on a long key is refused within
 * its match limit, and removes nothing (the reproduction took 44-57 s
 * per call with one such key under the old engine). PCRE2 answers the
 * issue's own key at once (no 'b' in it); this key makes it backtrack. */
static void test_regex_hostile_refused(void **state)
{
    (void)state;
    mc_master_t *m = mk(NULL);
    mount(m, CA, 1, "a:1", 0x100000, 16 * MiB, 0);
    char key[602]; /* a 'b' at the end defeats PCRE2's required-character shortcut */
    memset(key, 'a', 596);
    memcpy(key + 596, "0000b", 6);
    assert_int_equal(put1(m, key, 1000, 0), 0);
    assert_int_equal(put1(m, "aab", 1000, 0), 0);
    assert_int_equal(mc_master_remove_by_regex(m, "(a|a?)+\\1b", 1, 100), MC_ERR_INVALID_PARAMS);
    assert_true(has_key(m, key));
    assert_true(has_key(m, "aab")); /* it matches, but the pattern was refused as a whole */
    rx_t x = {0, 0};
    assert_int_equal(mc_master_get_replicas_by_regex(m, "(a|a?)+\\1b", 100, rx_cb, &x),
                     MC_ERR_INVALID_PARAMS);
    /* PCRE2 syntax: a lookahead and \\d work */
    assert_int_equal(mc_master_remove_by_regex(m, "^a(?=a)\\d*b$", 1, 100), 0);
    assert_int_equal(mc_master_remove_by_regex(m, "^a+\\d{4}b$", 1, 100), 1);
    assert_false(has_key(m, key));
    mc_master_free(m);
}

/* A mount that claims another client's address range at the same TE endpoint
 * is refused (it would make two keys share bytes); the same range at another
 * endpoint (another process) is fine. */
static void test_mount_overlap_other_client(void **state)
{
    (void)state;
    mc_master_t *m = mk(NULL);
    mount(m, CA, 1, "victim:1", 0x100000, 16 * MiB, 0);
    mc_segment_t s = segdesc(CB, 2, "evil:1", 0x100000 + MiB, MiB);
    snprintf(s.te_endpoint, sizeof s.te_endpoint, "victim:1");
    assert_int_equal(mc_master_mount_segment(m, &s, CB, 0), MC_ERR_INVALID_PARAMS);
    s = segdesc(CB, 3, "other:1", 0x100000, 16 * MiB);
    assert_int_equal(mc_master_mount_segment(m, &s, CB, 0), 0);
    mc_master_stats_t st;
    mc_master_get_stats(m, &st);
    assert_int_equal(st.segment_count, 2);
    for (int i = 0; i < 50; i++) { /* every replica lands in a distinct range per endpoint */
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(put1(m, key, 64 * KiB, 0), 0);
    }
    mc_master_free(m);
}

/* A large put into a full segment whose read leases are scattered over its
 * addresses: eviction frees one contiguous run for it (8 objects of 1 MiB),
 * not a share of the oldest leases (which left no 8 MiB hole and failed). */
static void test_evict_room_contiguous(void **state)
{
    (void)state;
    mc_master_config_t cfg;
    mc_master_config_default(&cfg);
    cfg.default_kv_lease_ttl_ms = 100;
    mc_master_t *m = mk(&cfg);
    mount(m, CA, 1, "a:1", 0x100000, 64 * MiB, 0);
    char key[32];
    for (int i = 0; i < 64; i++) {
        snprintf(key, sizeof key, "k%02d", i);
        assert_int_equal(put1(m, key, MiB, 0), 0);
    }
    /* leases expire in an order unrelated to addresses: k(i*37 % 64) oldest */
    for (int i = 0; i < 64; i++) {
        snprintf(key, sizeof key, "k%02d", (i * 37) % 64);
        assert_int_equal(mc_master_exist(m, key, 1000 + (uint64_t)i), 1);
    }
    /* keys k00..k15 stay leased: the run must come from elsewhere */
    for (int i = 0; i < 16; i++) {
        snprintf(key, sizeof key, "k%02d", i);
        assert_int_equal(mc_master_exist(m, key, 5000), 1);
    }
    assert_int_equal(put1(m, "big", 8 * MiB, 2000), 0);
    mc_master_stats_t st;
    mc_master_get_stats(m, &st);
    assert_int_equal(st.evicted_key_count, 8);
    for (int i = 0; i < 16; i++) {
        snprintf(key, sizeof key, "k%02d", i);
        assert_true(has_key(m, key));
    }
    /* all leased: no run can be freed, the put fails and nothing is lost */
    for (int i = 0; i < 64; i++) {
        snprintf(key, sizeof key, "k%02d", i);
        mc_master_exist(m, key, 9000);
    }
    assert_int_equal(mc_master_exist(m, "big", 9000), 1);
    assert_int_equal(put1(m, "big2", 8 * MiB, 9000), MC_ERR_NO_AVAILABLE_HANDLE);
    mc_master_get_stats(m, &st);
    assert_int_equal(st.evicted_key_count, 8);
    mc_master_free(m);
}

static void test_remove_all_and_regex(void **state)
{
    (void)state;
    mc_master_config_t cfg;
    mc_master_config_default(&cfg);
    cfg.default_kv_lease_ttl_ms = 1000;
    mc_master_t *m = mk(&cfg);
    mount(m, CA, 1, "a:1", 0x100000, 16 * MiB, 0);
    const char *keys[] = {"a1", "a2", "a3", "b1", "b2"};
    for (int i = 0; i < 5; i++)
        assert_int_equal(put1(m, keys[i], 1000, 0), 0);
    mc_replicate_config_t c = rcfg(1);
    mc_replica_t *r = NULL;
    size_t n = 0;
    assert_int_equal(mc_master_put_start(m, CA, "a-inprogress", 10, &c, 0, &r, &n), 0);
    free(r);
    assert_int_equal(mc_master_exist(m, "a1", 10), 1); /* lease until 1010 */
    assert_int_equal(mc_master_remove_by_regex(m, "(", 0, 20), MC_ERR_INVALID_PARAMS);
    assert_int_equal(mc_master_remove_by_regex(m, "^a[0-9]+$", 0, 20), 2); /* a2 a3 */
    assert_true(has_key(m, "a1"));
    assert_false(has_key(m, "a2"));
    assert_true(has_key(m, "b1"));
    /* regex query: only complete a-keys (a1), leases granted */
    rx_t x = {0, 0};
    assert_int_equal(mc_master_get_replicas_by_regex(m, "^a", 2000, rx_cb, &x), 0);
    assert_int_equal(x.calls, 1);
    assert_int_equal(x.reps, 1);
    assert_int_equal(mc_master_remove(m, "a1", 0, 2500), MC_ERR_OBJECT_HAS_LEASE);
    assert_int_equal(mc_master_get_replicas_by_regex(m, "[", 2000, rx_cb, &x),
                     MC_ERR_INVALID_PARAMS);
    /* remove_all skips leased and in-progress; force takes leased ones */
    assert_int_equal(mc_master_remove_all(m, 0, 2500), 2); /* b1 b2 */
    assert_int_equal(mc_master_remove_all(m, 1, 2500), 1); /* a1 */
    mc_master_tick(m, 3000); /* a1's range was parked until its lease ended (3000) */
    int cnt = 0;
    mc_master_each_key(m, count_key, &cnt);
    assert_int_equal(cnt, 1); /* a-inprogress */
    assert_int_equal(mc_master_put_end(m, CA, "a-inprogress", 2600), 0);
    assert_int_equal(mc_master_remove_all(m, 0, 2600), 1);
    assert_int_equal(allocated(m), 0);
    mc_master_free(m);
}

/* ---- upsert ---- */

static void test_upsert(void **state)
{
    (void)state;
    mc_master_config_t cfg;
    mc_master_config_default(&cfg);
    cfg.default_kv_lease_ttl_ms = 100;
    mc_master_t *m = mk(&cfg);
    mount(m, CA, 1, "a:1", 0x100000, 4 * MiB, 0);
    mc_replicate_config_t c = rcfg(1);
    mc_replica_t *r = NULL, *r2 = NULL;
    size_t n = 0, n2 = 0;
    /* new key: like put */
    assert_int_equal(mc_master_upsert_start(m, CA, "u", 1000, &c, 0, &r, &n), 0);
    assert_int_equal(n, 1);
    /* in progress: busy */
    assert_int_equal(mc_master_upsert_start(m, CB, "u", 1000, &c, 1, &r2, &n2),
                     MC_ERR_OBJECT_REPLICA_BUSY);
    assert_int_equal(mc_master_put_end(m, CA, "u", 2), 0);
    /* same size: same buffer, back to PROCESSING, owned by the new writer */
    assert_int_equal(mc_master_upsert_start(m, CB, "u", 1000, &c, 3, &r2, &n2), 0);
    assert_int_equal(n2, 1);
    assert_int_equal(r2[0].addr, r[0].addr);
    assert_int_equal(r2[0].status, MC_REPLICA_PROCESSING);
    free(r2);
    uint64_t ttl;
    assert_int_equal(mc_master_get_replicas(m, "u", 4, &r2, &n2, &ttl),
                     MC_ERR_REPLICA_IS_NOT_READY);
    assert_int_equal(mc_master_put_end(m, CA, "u", 5), MC_ERR_ILLEGAL_CLIENT);
    assert_int_equal(mc_master_put_end(m, CB, "u", 5), 0);
    assert_int_equal(allocated(m), 1024);
    /* leased (until 110): same size, yet a fresh buffer; the old one stays
     * allocated (parked) until the lease ends, then the tick frees it */
    assert_int_equal(mc_master_get_replicas(m, "u", 10, &r2, &n2, &ttl), 0);
    free(r2);
    assert_int_equal(mc_master_upsert_start(m, CA, "u", 1000, &c, 50, &r2, &n2), 0);
    assert_int_equal(n2, 1);
    assert_true(r2[0].addr != r[0].addr);
    assert_int_equal(r2[0].status, MC_REPLICA_PROCESSING);
    uint64_t fresh = r2[0].addr;
    free(r2);
    assert_int_equal(allocated(m), 2048);
    assert_int_equal(mc_master_get_replicas(m, "u", 51, &r2, &n2, &ttl),
                     MC_ERR_REPLICA_IS_NOT_READY);
    assert_int_equal(mc_master_put_end(m, CA, "u", 52), 0);
    assert_int_equal(mc_master_get_replicas(m, "u", 53, &r2, &n2, &ttl), 0); /* lease to 153 */
    assert_int_equal(r2[0].addr, fresh);
    free(r2);
    mc_master_tick(m, 109);
    assert_int_equal(allocated(m), 2048);
    mc_master_tick(m, 110);
    assert_int_equal(allocated(m), 1024);
    /* another write in progress or a move: busy, lease or not */
    assert_int_equal(mc_master_upsert_start(m, CB, "u", 1000, &c, 60, &r2, &n2), 0);
    free(r2);
    assert_int_equal(mc_master_upsert_start(m, CA, "u", 1000, &c, 61, &r2, &n2),
                     MC_ERR_OBJECT_REPLICA_BUSY);
    assert_int_equal(mc_master_put_end(m, CB, "u", 62), 0);
    mc_master_tick(m, 153); /* the lease of the get at 53 ends: its range goes */
    assert_int_equal(allocated(m), 1024);
    /* another size after the lease: new buffer of the new size, old one freed */
    assert_int_equal(mc_master_upsert_start(m, CA, "u", 200 * KiB, &c, 200, &r2, &n2), 0);
    assert_int_equal(n2, 1);
    assert_int_equal(r2[0].size, 200 * KiB);
    free(r2);
    assert_int_equal(allocated(m), 200 * KiB);
    assert_int_equal(mc_master_put_end(m, CA, "u", 201), 0);
    assert_int_equal(mc_master_get_replicas(m, "u", 202, &r2, &n2, &ttl), 0);
    assert_int_equal(r2[0].size, 200 * KiB);
    free(r2);
    free(r);
    mc_master_free(m);
}

/* ---- eviction ---- */

/* One segment of `slots` x 64 KiB; every object is 64 KiB. */
static mc_master_t *evict_setup(int slots, double ratio, double hwm, int allow_soft)
{
    mc_master_config_t cfg;
    mc_master_config_default(&cfg);
    cfg.default_kv_lease_ttl_ms = 1000;
    cfg.eviction_ratio = ratio;
    cfg.eviction_high_watermark_ratio = hwm;
    cfg.allow_evict_soft_pinned_objects = allow_soft;
    cfg.client_ttl_ms = 1000000000ull;
    mc_master_t *m = mk(&cfg);
    mount(m, CA, 1, "a:1", 0x10000000, (uint64_t)slots * 64 * KiB, 0);
    return m;
}

static void test_evict_oldest_lease_first(void **state)
{
    (void)state;
    mc_master_t *m = evict_setup(10, 0.05, 0.95, 1);
    char key[16];
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(put1(m, key, 64 * KiB, 10 + (uint64_t)i), 0);
    }
    /* k0 is read later than the others were written */
    assert_int_equal(mc_master_exist(m, "k0", 100), 1);
    /* full: the put evicts synchronously ceil(10 * 0.05) = 1 object, the oldest lease (k1) */
    assert_int_equal(put1(m, "n1", 64 * KiB, 5000), 0);
    assert_false(has_key(m, "k1"));
    assert_true(has_key(m, "k0"));
    assert_true(has_key(m, "k2"));
    assert_int_equal(put1(m, "n2", 64 * KiB, 5001), 0);
    assert_false(has_key(m, "k2"));
    assert_true(has_key(m, "k0"));
    mc_master_stats_t st;
    mc_master_get_stats(m, &st);
    assert_int_equal(st.evicted_key_count, 2);
    assert_int_equal(st.evicted_size_bytes, 128 * KiB);
    assert_int_equal(st.key_count, 10);
    mc_master_free(m);
}

static void test_evict_pins_and_leases(void **state)
{
    (void)state;
    mc_master_t *m = evict_setup(4, 0.05, 0.95, 1);
    mc_replicate_config_t hard = rcfg(1), soft = rcfg(1);
    hard.with_hard_pin = 1;
    soft.soft_pin_action = MC_SOFT_PIN_ENABLE; /* default TTL 30 min */
    assert_int_equal(put_full(m, CA, "hard", 64 * KiB, &hard, 1), 0);
    assert_int_equal(put_full(m, CA, "soft", 64 * KiB, &soft, 2), 0);
    assert_int_equal(put1(m, "plain", 64 * KiB, 3), 0);
    assert_int_equal(put1(m, "leased", 64 * KiB, 4), 0);
    assert_int_equal(mc_master_exist(m, "leased", 5000), 1); /* lease until 6000 */
    /* plain goes first although soft has an older lease */
    assert_int_equal(put1(m, "n1", 64 * KiB, 5000), 0);
    assert_false(has_key(m, "plain"));
    assert_true(has_key(m, "soft"));
    assert_int_equal(mc_master_exist(m, "n1", 5000), 1);
    /* only soft is evictable now: evicted since allowed and needed */
    assert_int_equal(put1(m, "n2", 64 * KiB, 5000), 0);
    assert_false(has_key(m, "soft"));
    assert_int_equal(mc_master_exist(m, "n2", 5000), 1);
    /* hard-pinned and leased objects never: no space */
    assert_int_equal(put1(m, "n3", 64 * KiB, 5500), MC_ERR_NO_AVAILABLE_HANDLE);
    assert_true(has_key(m, "hard"));
    assert_true(has_key(m, "leased"));
    assert_true(has_key(m, "n1"));
    assert_true(has_key(m, "n2"));
    /* once the leases are over, the put succeeds; hard stays */
    assert_int_equal(put1(m, "n3", 64 * KiB, 7000), 0);
    assert_true(has_key(m, "hard"));
    mc_master_free(m);
}

static void test_evict_soft_not_allowed(void **state)
{
    (void)state;
    mc_master_t *m = evict_setup(2, 0.05, 0.95, 0);
    mc_replicate_config_t soft = rcfg(1);
    soft.soft_pin_action = MC_SOFT_PIN_ENABLE;
    soft.has_soft_pin_ttl = 1;
    soft.soft_pin_ttl_ms = 10000;
    assert_int_equal(put_full(m, CA, "s0", 64 * KiB, &soft, 0), 0);
    assert_int_equal(put_full(m, CA, "s1", 64 * KiB, &soft, 100), 0);
    assert_int_equal(put1(m, "n", 64 * KiB, 5000), MC_ERR_NO_AVAILABLE_HANDLE);
    /* the pin deadline counts from put_end: s0 expires at 10000, s1 at 10100 */
    assert_int_equal(put1(m, "n", 64 * KiB, 10050), 0);
    assert_false(has_key(m, "s0"));
    assert_true(has_key(m, "s1"));
    mc_master_free(m);
}

static void test_evict_high_watermark_tick(void **state)
{
    (void)state;
    mc_master_t *m = evict_setup(20, 0.1, 0.5, 1);
    char key[16];
    for (int i = 0; i < 15; i++) {
        snprintf(key, sizeof key, "k%02d", i);
        assert_int_equal(put1(m, key, 64 * KiB, 100 + (uint64_t)i), 0);
    }
    mc_master_tick(m, 200);
    /* used 0.75 > 0.5: target = 0.75 - 0.5 + 0.1 = 0.35 -> ceil(15 * 0.35) = 6 */
    mc_master_stats_t st;
    mc_master_get_stats(m, &st);
    assert_int_equal(st.evicted_key_count, 6);
    for (int i = 0; i < 15; i++) {
        snprintf(key, sizeof key, "k%02d", i);
        if (i < 6)
            assert_false(has_key(m, key));
        else
            assert_true(has_key(m, key));
    }
    /* now at 0.45: below the watermark, nothing more */
    mc_master_tick(m, 300);
    mc_master_get_stats(m, &st);
    assert_int_equal(st.evicted_key_count, 6);
    mc_master_free(m);
}

/* ---- zombie puts ---- */

static void test_zombie_preempt_and_release(void **state)
{
    (void)state;
    mc_master_config_t cfg;
    mc_master_config_default(&cfg);
    cfg.client_ttl_ms = 1000000000ull;
    mc_master_t *m = mk(&cfg);
    mount(m, CA, 1, "a:1", 0x100000, 4 * MiB, 0);
    mc_replicate_config_t c = rcfg(1);
    mc_replica_t *r = NULL;
    size_t n = 0;
    assert_int_equal(mc_master_put_start(m, CA, "z", 64 * KiB, &c, 1000, &r, &n), 0);
    free(r);
    /* not yet a zombie */
    assert_int_equal(mc_master_put_start(m, CB, "z", 64 * KiB, &c, 30999, &r, &n),
                     MC_ERR_OBJECT_ALREADY_EXISTS);
    /* after the discard timeout the new put preempts it */
    assert_int_equal(mc_master_put_start(m, CB, "z", 64 * KiB, &c, 31000, &r, &n), 0);
    free(r);
    mc_master_stats_t st;
    mc_master_get_stats(m, &st);
    assert_int_equal(st.put_start_discard_cnt, 1);
    assert_int_equal(st.allocated_bytes, 128 * KiB); /* the old space is parked */
    assert_int_equal(mc_master_put_end(m, CA, "z", 31001), MC_ERR_ILLEGAL_CLIENT);
    assert_int_equal(mc_master_put_end(m, CB, "z", 31001), 0);
    mc_master_tick(m, 1000 + 600000 - 1);
    mc_master_get_stats(m, &st);
    assert_int_equal(st.allocated_bytes, 128 * KiB);
    mc_master_tick(m, 1000 + 600000);
    mc_master_get_stats(m, &st);
    assert_int_equal(st.allocated_bytes, 64 * KiB); /* released */
    assert_int_equal(st.put_start_release_cnt, 1);
    /* a complete object is never preempted */
    assert_int_equal(mc_master_put_start(m, CA, "z", 64 * KiB, &c, 10000000, &r, &n),
                     MC_ERR_OBJECT_ALREADY_EXISTS);
    /* a put that never ends is discarded by the tick after the release timeout */
    assert_int_equal(mc_master_put_start(m, CA, "lost", 64 * KiB, &c, 700000, &r, &n), 0);
    free(r);
    mc_master_tick(m, 700000 + 599999);
    assert_true(has_key(m, "lost"));
    /* the scan runs every tenth of the release timeout (60 s here) */
    mc_master_tick(m, 700000 + 600000 + 60000);
    assert_false(has_key(m, "lost"));
    mc_master_get_stats(m, &st);
    assert_int_equal(st.allocated_bytes, 64 * KiB);
    mc_master_free(m);
}

/* ---- clients ---- */

static void test_client_expiry(void **state)
{
    (void)state;
    mc_master_t *m = mk(NULL); /* client TTL 10 s */
    mount(m, CA, 1, "a:1", 0x100000, 4 * MiB, 0);
    mount(m, CB, 1, "b:1", 0x100000, 4 * MiB, 0);
    const char *pa[] = {"a:1"}, *pb[] = {"b:1"};
    mc_replicate_config_t ca = rcfg(1), cb = rcfg(1), both = rcfg(2);
    ca.npreferred = 1;
    ca.preferred_segments = pa;
    cb.npreferred = 1;
    cb.preferred_segments = pb;
    assert_int_equal(put_full(m, CA, "onA", 1000, &ca, 0), 0);
    assert_int_equal(put_full(m, CA, "onB", 1000, &cb, 0), 0);
    assert_int_equal(put_full(m, CA, "onBoth", 1000, &both, 0), 0);
    int st = 0;
    assert_int_equal(mc_master_ping(m, CB, 9000, &st), 0);
    mc_master_tick(m, 9999);
    mc_master_stats_t s;
    mc_master_get_stats(m, &s);
    assert_int_equal(s.segment_count, 2);
    mc_master_tick(m, 10000); /* A's deadline (0 + 10000) passed */
    mc_master_get_stats(m, &s);
    assert_int_equal(s.segment_count, 1);
    assert_int_equal(s.active_clients, 1);
    assert_int_equal(s.capacity_bytes, 4 * MiB);
    assert_false(has_key(m, "onA"));
    assert_true(has_key(m, "onB"));
    mc_replica_t *r = NULL;
    size_t n = 0;
    uint64_t ttl;
    assert_int_equal(mc_master_get_replicas(m, "onBoth", 10001, &r, &n, &ttl), 0);
    assert_int_equal(n, 1);
    assert_string_equal(r[0].endpoint, "b:1");
    free(r);
    assert_int_equal(s.allocated_bytes, 2048);
    assert_int_equal(s.key_count, 2);
    /* B keeps pinging, A is gone for good */
    assert_int_equal(mc_master_ping(m, CB, 18000, &st), 0);
    mc_master_tick(m, 20000);
    mc_master_get_stats(m, &s);
    assert_int_equal(s.segment_count, 1);
    mc_master_free(m);
}

static void test_need_remount(void **state)
{
    (void)state;
    mc_master_t *m = mk(NULL);
    int st = 0;
    mc_segment_t s = mount(m, CC, 1, "c:1", 0x100000, MiB, 0);
    assert_int_equal(mc_master_ping(m, CC, 100, &st), 0);
    assert_int_equal(st, MC_CLIENT_NEED_REMOUNT); /* mount does not make it alive */
    assert_int_equal(mc_master_remount_segments(m, &s, 1, CC, 200), 0);
    assert_int_equal(mc_master_ping(m, CC, 300, &st), 0);
    assert_int_equal(st, MC_CLIENT_OK);
    mc_master_stats_t stt;
    mc_master_get_stats(m, &stt);
    assert_int_equal(stt.segment_count, 1); /* remount of the same id did not duplicate */
    /* silent past its TTL: expired, segments gone, and a ping needs a remount again */
    mc_master_tick(m, 300 + 10000);
    mc_master_get_stats(m, &stt);
    assert_int_equal(stt.segment_count, 0);
    assert_int_equal(mc_master_ping(m, CC, 20000, &st), 0);
    assert_int_equal(st, MC_CLIENT_NEED_REMOUNT);
    assert_int_equal(mc_master_remount_segments(m, &s, 1, CC, 20001), 0);
    assert_int_equal(mc_master_ping(m, CC, 20002, &st), 0);
    assert_int_equal(st, MC_CLIENT_OK);
    mc_master_get_stats(m, &stt);
    assert_int_equal(stt.segment_count, 1);
    assert_int_equal(stt.capacity_bytes, MiB);
    /* a fresh client's first ping */
    assert_int_equal(mc_master_ping(m, CB, 20003, &st), 0);
    assert_int_equal(st, MC_CLIENT_NEED_REMOUNT);
    mc_master_free(m);
}

typedef struct {
    int n;
    uint64_t used;
} seginfo_t;
static void seg_cb(const mc_master_segment_info_t *s, void *arg)
{
    seginfo_t *x = arg;
    x->n++;
    x->used += s->used_bytes;
}

static void test_unmount(void **state)
{
    (void)state;
    mc_master_t *m = mk(NULL);
    mc_segment_t a = mount(m, CA, 1, "a:1", 0x100000, 4 * MiB, 0);
    mount(m, CB, 1, "b:1", 0x100000, 4 * MiB, 0);
    mc_replicate_config_t two = rcfg(2), one = rcfg(1);
    const char *pa[] = {"a:1"};
    one.npreferred = 1;
    one.preferred_segments = pa;
    assert_int_equal(put_full(m, CA, "x", 1000, &two, 0), 0);
    assert_int_equal(put_full(m, CA, "y", 1000, &one, 0), 0);
    seginfo_t si = {0, 0};
    mc_master_each_segment(m, seg_cb, &si);
    assert_int_equal(si.n, 2);
    assert_int_equal(si.used, 3 * 1024);
    assert_int_equal(mc_master_unmount_segment(m, (mc_uuid_t){77, 77}, CA), 0); /* unknown */
    assert_int_equal(mc_master_unmount_segment(m, a.id, CB), MC_ERR_INVALID_PARAMS);
    assert_int_equal(mc_master_unmount_segment(m, a.id, CA), 0);
    assert_false(has_key(m, "y"));
    assert_true(has_key(m, "x"));
    mc_master_stats_t st;
    mc_master_get_stats(m, &st);
    assert_int_equal(st.segment_count, 1);
    assert_int_equal(st.allocated_bytes, 1024);
    assert_int_equal(st.key_count, 1);
    assert_int_equal(mc_master_remove(m, "x", 0, 1), 0);
    mc_master_get_stats(m, &st);
    assert_int_equal(st.allocated_bytes, 0);
    mc_master_free(m);
}

/* ---- threads ---- */

typedef struct {
    mc_master_t *m;
    int id;
    _Atomic uint64_t *clock;
    int bad, puts, gets;
} thr_t;

static void *worker(void *arg)
{
    thr_t *t = arg;
    mc_uuid_t me = {100 + (uint64_t)t->id, 1};
    unsigned seed = (unsigned)t->id * 7919u + 1;
    mc_replicate_config_t c = rcfg(2);
    for (int i = 0; i < 3000; i++) {
        uint64_t now = atomic_fetch_add(t->clock, 1);
        char key[32];
        snprintf(key, sizeof key, "key%d", rand_r(&seed) % 300);
        mc_replica_t *r = NULL;
        size_t n = 0;
        uint64_t ttl;
        int rc, op = rand_r(&seed) % 6;
        uint64_t size = 1 + (uint64_t)(rand_r(&seed) % (64 * 1024));
        switch (op) {
        case 0:
        case 1:
            rc = mc_master_put_start(t->m, me, key, size, &c, now, &r, &n);
            free(r);
            if (rc == 0) {
                t->puts++;
                if (rand_r(&seed) % 4 == 0)
                    rc = mc_master_put_revoke(t->m, me, key);
                else
                    rc = mc_master_put_end(t->m, me, key, now);
                /* INVALID_WRITE: the churn segment took the only replicas */
                if (rc && rc != MC_ERR_INVALID_WRITE) t->bad++;
            } else if (rc != MC_ERR_OBJECT_ALREADY_EXISTS && rc != MC_ERR_NO_AVAILABLE_HANDLE) {
                t->bad++;
            }
            break;
        case 2:
            rc = mc_master_upsert_start(t->m, me, key, size, &c, now, &r, &n);
            free(r);
            if (rc == 0) {
                rc = mc_master_put_end(t->m, me, key, now);
                if (rc && rc != MC_ERR_INVALID_WRITE) t->bad++;
            } else if (rc != MC_ERR_OBJECT_REPLICA_BUSY && rc != MC_ERR_NO_AVAILABLE_HANDLE) {
                t->bad++;
            }
            break;
        case 3:
            rc = mc_master_get_replicas(t->m, key, now, &r, &n, &ttl);
            free(r);
            if (rc == 0) t->gets++;
            if (rc && rc != MC_ERR_OBJECT_NOT_FOUND && rc != MC_ERR_REPLICA_IS_NOT_READY) t->bad++;
            break;
        case 4:
            rc = mc_master_remove(t->m, key, rand_r(&seed) % 2, now);
            if (rc && rc != MC_ERR_OBJECT_NOT_FOUND && rc != MC_ERR_OBJECT_HAS_LEASE &&
                rc != MC_ERR_REPLICA_IS_NOT_READY)
                t->bad++;
            break;
        default:
            (void)mc_master_exist(t->m, key, now);
            break;
        }
    }
    return NULL;
}

typedef struct {
    mc_master_t *m;
    _Atomic uint64_t *clock;
    _Atomic int *stop;
} ticker_t;

static void *ticker(void *arg)
{
    ticker_t *t = arg;
    mc_uuid_t cl = {999, 1};
    uint64_t i = 0;
    while (!atomic_load(t->stop)) {
        uint64_t now = atomic_load(t->clock);
        mc_master_tick(t->m, now);
        /* a segment that comes and goes under the others' feet */
        mc_segment_t s = segdesc(cl, 1 + (i++ % 4), "churn:1", 0x40000000, 2 * MiB);
        mc_master_mount_segment(t->m, &s, cl, now);
        int st;
        mc_master_ping(t->m, cl, now, &st);
        mc_master_unmount_segment(t->m, s.id, cl);
        mc_master_stats_t stats;
        mc_master_get_stats(t->m, &stats);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    mc_master_config_t cfg;
    mc_master_config_default(&cfg);
    cfg.default_kv_lease_ttl_ms = 5;
    cfg.client_ttl_ms = 1000000000ull;
    mc_master_t *m = mk(&cfg);
    for (int i = 0; i < 4; i++) {
        char name[16];
        snprintf(name, sizeof name, "s%d:1", i);
        mount(m, (mc_uuid_t){50 + (uint64_t)i, 1}, 1, name, 0x100000, 8 * MiB, 0);
    }
    _Atomic uint64_t clock = 1;
    _Atomic int stop = 0;
    enum { NT = 4 };
    pthread_t th[NT], tk;
    thr_t t[NT];
    ticker_t tt = {m, &clock, &stop};
    assert_int_equal(pthread_create(&tk, NULL, ticker, &tt), 0);
    for (int i = 0; i < NT; i++) {
        t[i] = (thr_t){m, i, &clock, 0, 0, 0};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &t[i]), 0);
    }
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(t[i].bad, 0);
        assert_true(t[i].puts > 50); /* the run did real work */
        assert_true(t[i].gets > 50);
    }
    atomic_store(&stop, 1);
    pthread_join(tk, NULL);
    /* every put ended or was revoked: a forced remove_all empties the pool */
    uint64_t end = atomic_load(&clock);
    mc_master_remove_all(m, 1, end);
    mc_master_tick(m, end + cfg.default_kv_lease_ttl_ms); /* ranges parked under leases */
    mc_master_stats_t st;
    mc_master_get_stats(m, &st);
    assert_int_equal(st.key_count, 0);
    assert_int_equal(st.allocated_bytes, 0);
    assert_int_equal(st.segment_count, 4);
    mc_master_free(m);
}

/* A put while no segment is mounted (a restarted master before its stores
 * remount) fails without forcing an eviction pass: before, the pass ran at
 * the next tick and evicted objects of the segments that had come back. */
static void test_put_without_segments_evicts_nothing(void **state)
{
    (void)state;
    mc_master_t *m = mk(NULL);
    assert_int_equal(put1(m, "early", 100, 0), MC_ERR_NO_AVAILABLE_HANDLE);
    mount(m, CA, 1, "a:1", 0x100000, 1 * MiB, 0);
    assert_int_equal(put1(m, "x", 100, 0), 0);
    mc_master_tick(m, 5000); /* the lease of x is over, the client alive */
    mc_replica_t *r = NULL;
    size_t n = 0;
    assert_int_equal(mc_master_get_replicas(m, "x", 5000, &r, &n, NULL), 0);
    free(r);
    mc_master_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_put_flow),
        cmocka_unit_test(test_replicas_distinct_segments),
        cmocka_unit_test(test_free_ratio_first),
        cmocka_unit_test(test_best_effort_partial),
        cmocka_unit_test(test_no_segments),
        cmocka_unit_test(test_leases_and_remove),
        cmocka_unit_test(test_replica_clear),
        cmocka_unit_test(test_remove_all_and_regex),
        cmocka_unit_test(test_regex_hostile_refused),
        cmocka_unit_test(test_mount_overlap_other_client),
        cmocka_unit_test(test_evict_room_contiguous),
        cmocka_unit_test(test_upsert),
        cmocka_unit_test(test_evict_oldest_lease_first),
        cmocka_unit_test(test_evict_pins_and_leases),
        cmocka_unit_test(test_evict_soft_not_allowed),
        cmocka_unit_test(test_evict_high_watermark_tick),
        cmocka_unit_test(test_zombie_preempt_and_release),
        cmocka_unit_test(test_client_expiry),
        cmocka_unit_test(test_need_remount),
        cmocka_unit_test(test_unmount),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_put_without_segments_evicts_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
