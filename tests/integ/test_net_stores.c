/* test_net_stores.c: the etcd and redis clients (src/net/net_etcd.c,
 * net_redis.c) against real servers, which tests/py/meta/test_net_stores.py
 * starts and names in the environment:
 *   MC_TEST_ETCD   etcd endpoint list (a test is skipped when unset)
 *   MC_TEST_REDIS  host:port of a redis-server; MC_TEST_REDIS_PASS its password
 * Covers what the metadata backends and the HA master rely on: revisions,
 * compare-and-create, compare-and-put/delete, leases (grant, keepalive, expiry
 * deleting the bound key, revoke), a prefix watch (events in order, then a
 * clean stop), binary keys and values; for redis AUTH, SELECT, SET NX PX, the
 * lock refresh/release scripts and the create-or-same script. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "net_etcd.h"
#include "net_redis.h"

static char prefix[64]; /* unique per run */

static mc_etcd_t *etcd_or_skip(void)
{
    const char *ep = getenv("MC_TEST_ETCD");
    if (!ep || !*ep) skip();
    mc_etcd_t *e = NULL;
    assert_int_equal(mc_etcd_open(ep, &e), 0);
    return e;
}

static void key(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", prefix, name);
}

static void test_etcd_kv(void **state)
{
    (void)state;
    mc_etcd_t *e = etcd_or_skip();
    char k[128];
    key(k, sizeof k, "kv");
    char *v = NULL;
    size_t vl = 0;
    int64_t rev = 0, rev2 = 0;
    mc_etcd_kv_t kv;
    assert_int_equal(mc_etcd_get(e, k, strlen(k), &v, &vl, &kv, &rev), -ENOENT);
    assert_true(rev > 0);
    /* binary value with a NUL inside */
    const char bin[] = {'a', 0, (char)0xff, 'b'};
    assert_int_equal(mc_etcd_put(e, k, strlen(k), bin, sizeof bin, 0, &rev), 0);
    assert_int_equal(mc_etcd_get(e, k, strlen(k), &v, &vl, &kv, &rev2), 0);
    assert_int_equal(vl, sizeof bin);
    assert_memory_equal(v, bin, sizeof bin);
    assert_int_equal(v[vl], '\0');
    assert_int_equal(kv.mod_rev, rev);
    assert_int_equal(kv.create_rev, rev);
    free(v);
    /* compare-and-create: exists -> current value comes back */
    char *cur = NULL;
    size_t curlen = 0;
    assert_int_equal(mc_etcd_create(e, k, strlen(k), "x", 1, 0, &cur, &curlen, &kv, NULL), -EEXIST);
    assert_int_equal(curlen, sizeof bin);
    assert_memory_equal(cur, bin, sizeof bin);
    free(cur);
    /* compare-and-put on the mod revision */
    assert_int_equal(mc_etcd_put_if_rev(e, k, strlen(k), "y", 1, 0, kv.mod_rev + 100, NULL),
                     -ECANCELED);
    assert_int_equal(mc_etcd_put_if_rev(e, k, strlen(k), "y", 1, 0, kv.mod_rev, &rev), 0);
    assert_true(rev > kv.mod_rev);
    /* compare-and-delete on the value */
    assert_int_equal(mc_etcd_del_if_value(e, k, strlen(k), "z", 1, NULL), -ECANCELED);
    assert_int_equal(mc_etcd_del_if_value(e, k, strlen(k), "y", 1, NULL), 0);
    assert_int_equal(mc_etcd_del(e, k, strlen(k), 0, NULL, NULL), -ENOENT);
    assert_int_equal(mc_etcd_create(e, k, strlen(k), "new", 3, 0, NULL, NULL, NULL, NULL), 0);
    /* prefix delete */
    char k2[128];
    key(k2, sizeof k2, "kv2");
    assert_int_equal(mc_etcd_put(e, k2, strlen(k2), "2", 1, 0, NULL), 0);
    int64_t n = 0;
    assert_int_equal(mc_etcd_del(e, prefix, strlen(prefix), 1, &n, NULL), 0);
    assert_int_equal(n, 2);
    mc_etcd_close(e);
}

static void test_etcd_lease(void **state)
{
    (void)state;
    mc_etcd_t *e = etcd_or_skip();
    char k[128];
    key(k, sizeof k, "leased");
    int64_t id = 0, ttl = 0;
    assert_int_equal(mc_etcd_lease_grant(e, 2, &id), 0);
    assert_true(id != 0);
    assert_int_equal(mc_etcd_create(e, k, strlen(k), "me", 2, id, NULL, NULL, NULL, NULL), 0);
    assert_int_equal(mc_etcd_lease_keepalive(e, id, &ttl), 0);
    assert_true(ttl > 0 && ttl <= 2);
    mc_etcd_kv_t kv;
    char *v;
    size_t vl;
    assert_int_equal(mc_etcd_get(e, k, strlen(k), &v, &vl, &kv, NULL), 0);
    assert_int_equal(kv.lease, id);
    free(v);
    /* let it expire: the bound key goes with it (polled, the TTL is 2 s) */
    int rc = 0;
    for (int i = 0; i < 100 && (rc = mc_etcd_get(e, k, strlen(k), &v, &vl, NULL, NULL)) == 0; i++) {
        free(v);
        usleep(100 * 1000);
    }
    assert_int_equal(rc, -ENOENT);
    assert_int_equal(mc_etcd_lease_keepalive(e, id, &ttl), -ENOENT);
    assert_int_equal(mc_etcd_lease_revoke(e, id), -ENOENT);
    /* revoke deletes the bound key at once */
    assert_int_equal(mc_etcd_lease_grant(e, 30, &id), 0);
    assert_int_equal(mc_etcd_put(e, k, strlen(k), "v", 1, id, NULL), 0);
    assert_int_equal(mc_etcd_lease_revoke(e, id), 0);
    assert_int_equal(mc_etcd_get(e, k, strlen(k), &v, &vl, NULL, NULL), -ENOENT);
    mc_etcd_close(e);
}

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int n;
    char keys[8][128];
    int types[8];
} evlog_t;

static void on_ev(void *arg, const mc_etcd_event_t *ev)
{
    evlog_t *l = arg;
    pthread_mutex_lock(&l->lock);
    if (l->n < 8) {
        snprintf(l->keys[l->n], sizeof l->keys[0], "%.*s", (int)ev->keylen, ev->key ? ev->key : "");
        l->types[l->n] = ev->type;
        l->n++;
    }
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

static int wait_events(evlog_t *l, int n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    pthread_mutex_lock(&l->lock);
    while (l->n < n && pthread_cond_timedwait(&l->cond, &l->lock, &ts) == 0)
        ;
    int got = l->n;
    pthread_mutex_unlock(&l->lock);
    return got;
}

static void test_etcd_watch(void **state)
{
    (void)state;
    mc_etcd_t *e = etcd_or_skip();
    evlog_t l = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    char wp[128], k1[128], k2[128], other[128];
    key(wp, sizeof wp, "w/");
    key(k1, sizeof k1, "w/a");
    key(k2, sizeof k2, "w/b");
    key(other, sizeof other, "x");
    mc_etcd_watch_t *w = NULL;
    assert_int_equal(mc_etcd_watch_start(e, wp, strlen(wp), 1, 0, on_ev, &l, &w), 0);
    assert_int_equal(mc_etcd_watch_wait_created(w, 5000), 0);
    assert_int_equal(mc_etcd_put(e, other, strlen(other), "o", 1, 0, NULL), 0); /* not watched */
    assert_int_equal(mc_etcd_put(e, k1, strlen(k1), "1", 1, 0, NULL), 0);
    assert_int_equal(mc_etcd_put(e, k2, strlen(k2), "2", 1, 0, NULL), 0);
    assert_int_equal(mc_etcd_del(e, k1, strlen(k1), 0, NULL, NULL), 0);
    assert_int_equal(wait_events(&l, 3), 3);
    mc_etcd_watch_stop(w);
    assert_string_equal(l.keys[0], k1);
    assert_int_equal(l.types[0], MC_ETCD_EV_PUT);
    assert_string_equal(l.keys[1], k2);
    assert_string_equal(l.keys[2], k1);
    assert_int_equal(l.types[2], MC_ETCD_EV_DELETE);
    mc_etcd_del(e, prefix, strlen(prefix), 1, NULL, NULL);
    mc_etcd_close(e);
}

static mc_redis_t *redis_or_skip(int db)
{
    const char *hp = getenv("MC_TEST_REDIS");
    if (!hp || !*hp) skip();
    mc_redis_cfg_t c = {0};
    const char *colon = strrchr(hp, ':');
    assert_non_null(colon);
    snprintf(c.host, sizeof c.host, "%.*s", (int)(colon - hp), hp);
    c.port = (uint16_t)atoi(colon + 1);
    const char *pw = getenv("MC_TEST_REDIS_PASS");
    if (pw) snprintf(c.pass, sizeof c.pass, "%s", pw);
    c.db = db;
    mc_redis_t *r = NULL;
    assert_int_equal(mc_redis_open(&c, &r), 0);
    return r;
}

static void test_redis(void **state)
{
    (void)state;
    mc_redis_t *r = redis_or_skip(0);
    char k[128];
    key(k, sizeof k, "r");
    char *v = NULL;
    size_t vl = 0;
    assert_int_equal(mc_redis_get(r, k, &v, &vl), -ENOENT);
    const char bin[] = {'a', 0, 'b'};
    assert_int_equal(mc_redis_set(r, k, bin, sizeof bin), 0);
    assert_int_equal(mc_redis_get(r, k, &v, &vl), 0);
    assert_int_equal(vl, sizeof bin);
    assert_memory_equal(v, bin, sizeof bin);
    free(v);
    /* another database does not see it */
    mc_redis_t *r5 = redis_or_skip(5);
    assert_int_equal(mc_redis_get(r5, k, &v, &vl), -ENOENT);
    mc_redis_close(r5);
    assert_int_equal(mc_redis_del(r, k), 0);
    assert_int_equal(mc_redis_del(r, k), -ENOENT);
    /* the lock */
    assert_int_equal(mc_redis_set_nx(r, k, "me", 2, 60000), 0);
    assert_int_equal(mc_redis_set_nx(r, k, "you", 3, 60000), -EEXIST);
    assert_int_equal(mc_redis_refresh_if(r, k, "you", 3, 60000), -ESTALE);
    assert_int_equal(mc_redis_refresh_if(r, k, "me", 2, 60000), 0);
    assert_int_equal(mc_redis_del_if(r, k, "you", 3), -ESTALE);
    assert_int_equal(mc_redis_del_if(r, k, "me", 2), 0);
    assert_int_equal(mc_redis_refresh_if(r, k, "me", 2, 60000), -ESTALE);
    /* a TTL that runs out frees the lock (polled) */
    assert_int_equal(mc_redis_set_nx(r, k, "me", 2, 200), 0);
    int rc = -EEXIST;
    for (int i = 0; i < 100 && (rc = mc_redis_set_nx(r, k, "you", 3, 60000)) == -EEXIST; i++)
        usleep(20 * 1000);
    assert_int_equal(rc, 0);
    /* create-or-same (the rpc_meta rule) */
    char k2[128];
    key(k2, sizeof k2, "rpc_meta/x");
    assert_int_equal(mc_redis_create_or_same(r, k2, "{\"a\":1}", 7), 0);
    assert_int_equal(mc_redis_create_or_same(r, k2, "{\"a\":1}", 7), 0);
    assert_int_equal(mc_redis_create_or_same(r, k2, "{\"a\":2}", 7), -EEXIST);
    mc_redis_del(r, k);
    mc_redis_del(r, k2);
    mc_redis_close(r);
}

int main(void)
{
    snprintf(prefix, sizeof prefix, "mc-test-%ld-%d", (long)time(NULL), (int)getpid());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_etcd_kv),
        cmocka_unit_test(test_etcd_lease),
        cmocka_unit_test(test_etcd_watch),
        cmocka_unit_test(test_redis),
    };
    return cmocka_run_group_tests_name("net_stores", tests, NULL, NULL);
}
