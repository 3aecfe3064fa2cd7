/* Unit tests of the lease cache (src/store/store_lcache.c): a hit returns the
 * replica put and its deadline; the margin (a tenth of the TTL) turns a hit
 * near the lease's end into a miss; keys sharing a set all stay while the set
 * has room, and a key arriving at a full set displaces only the entry whose
 * lease ends first; a put of a cached key replaces its own entry; drop and
 * clear forget; a working set a quarter of the cache's size is held whole;
 * keys too long to cache and a cache of 0 slots never hit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "store_lcache.h"

static mc_replica_t rep_of(uint64_t addr)
{
    mc_replica_t r;
    memset(&r, 0, sizeof r);
    r.addr = addr;
    r.size = 4096;
    r.status = MC_REPLICA_COMPLETE;
    r.kind = MC_REPLICA_MEMORY;
    snprintf(r.endpoint, sizeof r.endpoint, "seg-%llu", (unsigned long long)addr);
    return r;
}

static int hit(mc__lcache_t *c, const char *key, uint64_t now, uint64_t *addr)
{
    mc_replica_t r;
    uint64_t dl = 0;
    if (!mc__lcache_get(c, key, now, &r, &dl)) return 0;
    *addr = r.addr;
    return 1;
}

static void test_hit_margin_drop(void **st)
{
    (void)st;
    mc__lcache_t *c;
    assert_int_equal(mc__lcache_new(64, &c), 0);
    mc_replica_t r = rep_of(7);
    mc__lcache_put(c, "a", &r, 1000 + 500, 500); /* sent at 1000, TTL 500: margin 51 */
    mc_replica_t got;
    uint64_t dl = 0, addr = 0;
    assert_int_equal(mc__lcache_get(c, "a", 1000, &got, &dl), 1);
    assert_int_equal(dl, 1500);
    assert_memory_equal(&got, &r, sizeof r);
    assert_int_equal(hit(c, "a", 1448, &addr), 1);
    assert_int_equal(hit(c, "a", 1449, &addr), 0); /* within the margin: over */
    assert_int_equal(hit(c, "a", 1000, &addr), 0); /* and forgotten */
    mc__lcache_put(c, "a", &r, 1500, 500);
    mc__lcache_drop(c, "a");
    assert_int_equal(hit(c, "a", 1000, &addr), 0);
    assert_int_equal(hit(c, "never-put", 1000, &addr), 0);
    mc__lcache_free(c);
}

/* A cache of 8 slots is one set: every key shares it. */
static void test_full_set_displaces_earliest(void **st)
{
    (void)st;
    mc__lcache_t *c;
    assert_int_equal(mc__lcache_new(8, &c), 0);
    char key[16];
    uint64_t addr = 0;
    for (int i = 0; i < 8; i++) {
        snprintf(key, sizeof key, "k%d", i);
        mc_replica_t r = rep_of((uint64_t)i);
        /* all sent at 1000; k3's lease ends first */
        uint64_t end = i == 3 ? 5000 : 10000 + (uint64_t)i;
        mc__lcache_put(c, key, &r, end, end - 1000);
    }
    for (int i = 0; i < 8; i++) {
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(hit(c, key, 100, &addr), 1);
        assert_int_equal(addr, (uint64_t)i);
    }
    /* a cached key's put replaces its own entry, not another's */
    mc_replica_t r5 = rep_of(55);
    mc__lcache_put(c, "k5", &r5, 20000, 19000);
    mc_replica_t r8 = rep_of(8);
    mc__lcache_put(c, "k8", &r8, 20000, 19000);
    assert_int_equal(hit(c, "k3", 100, &addr), 0);
    assert_int_equal(hit(c, "k8", 100, &addr), 1);
    assert_int_equal(addr, 8);
    assert_int_equal(hit(c, "k5", 100, &addr), 1);
    assert_int_equal(addr, 55);
    for (int i = 0; i < 8; i++) {
        if (i == 3) continue;
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(hit(c, key, 100, &addr), 1);
    }
    /* sent at 10003: k0, k1, k2 have expired; one of them makes room, and
     * every live entry stays */
    mc__lcache_put(c, "k9", &r8, 11003, 1000);
    assert_int_equal(hit(c, "k9", 100, &addr), 1);
    for (int i = 4; i < 9; i++) {
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(hit(c, key, 100, &addr), 1);
    }
    int old = hit(c, "k0", 100, &addr) + hit(c, "k1", 100, &addr) + hit(c, "k2", 100, &addr);
    assert_int_equal(old, 2);
    mc__lcache_clear(c);
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(hit(c, key, 100, &addr), 0);
    }
    mc__lcache_free(c);
}

/* 1024 keys in 4096 slots (the store's default): all of them stay. */
static void test_working_set_held(void **st)
{
    (void)st;
    mc__lcache_t *c;
    assert_int_equal(mc__lcache_new(4096, &c), 0);
    char key[32];
    for (int i = 0; i < 1024; i++) {
        snprintf(key, sizeof key, "r4096-%d", i);
        mc_replica_t r = rep_of((uint64_t)i);
        mc__lcache_put(c, key, &r, 60000, 5000);
    }
    int hits = 0;
    uint64_t addr = 0;
    for (int i = 0; i < 1024; i++) {
        snprintf(key, sizeof key, "r4096-%d", i);
        if (hit(c, key, 1000, &addr) && addr == (uint64_t)i) hits++;
    }
    assert_int_equal(hits, 1024);
    mc__lcache_free(c);
}

static void test_long_key_and_off(void **st)
{
    (void)st;
    mc__lcache_t *c;
    assert_int_equal(mc__lcache_new(64, &c), 0);
    char big[300];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    mc_replica_t r = rep_of(1);
    uint64_t addr = 0;
    mc__lcache_put(c, big, &r, 60000, 5000);
    assert_int_equal(hit(c, big, 1000, &addr), 0);
    mc__lcache_free(c);
    assert_int_equal(mc__lcache_new(0, &c), 0);
    assert_null(c);
    mc__lcache_put(c, "a", &r, 60000, 5000);
    assert_int_equal(hit(c, "a", 1000, &addr), 0);
    mc__lcache_drop(c, "a");
    mc__lcache_clear(c);
    mc__lcache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_margin_drop),
        cmocka_unit_test(test_full_set_displaces_earliest),
        cmocka_unit_test(test_working_set_held),
        cmocka_unit_test(test_long_key_and_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
