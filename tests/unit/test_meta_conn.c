/* test_meta_conn.c: metadata connection strings (src/meta/meta.c) and etcd
 * endpoint lists (src/net/net_etcd.c), parsed without any server: the
 * backend each string names, redis URLs with credentials, database and the
 * MC_REDIS_* variables, malformed strings refused with -EINVAL; and the etcd
 * gateway answer decoders on hand-made answers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "meta_int.h"
#include "net_etcd.h"

static void clear_env(void)
{
    unsetenv("MC_REDIS_USERNAME");
    unsetenv("MC_REDIS_PASSWORD");
    unsetenv("MC_REDIS_DB_INDEX");
}

static void test_kinds(void **state)
{
    (void)state;
    mc__meta_conn_t c;
    assert_int_equal(mc__meta_parse("P2PHANDSHAKE", &c), 0);
    assert_int_equal(c.kind, MC__META_P2P);
    assert_int_equal(mc__meta_parse("http://127.0.0.1:8080/metadata", &c), 0);
    assert_int_equal(c.kind, MC__META_HTTP);
    assert_int_equal(mc__meta_parse("HTTPS://h/metadata", &c), 0);
    assert_int_equal(c.kind, MC__META_HTTP);
    assert_int_equal(mc__meta_parse("etcd://h1:2379;h2:2379", &c), 0);
    assert_int_equal(c.kind, MC__META_ETCD);
    assert_string_equal(c.arg, "h1:2379;h2:2379");
    /* upstream: a string without a scheme is etcd */
    assert_int_equal(mc__meta_parse("10.0.0.1:2379", &c), 0);
    assert_int_equal(c.kind, MC__META_ETCD);
    assert_string_equal(c.arg, "10.0.0.1:2379");
    assert_int_equal(mc__meta_parse("redis://127.0.0.1:6379", &c), 0);
    assert_int_equal(c.kind, MC__META_REDIS);
    assert_int_equal(mc__meta_parse("", &c), -EINVAL);
    assert_int_equal(mc__meta_parse(NULL, &c), -EINVAL);
    assert_int_equal(mc__meta_parse("k8s://x", &c), -EINVAL);
    assert_int_equal(mc__meta_parse("ftp://h:1", &c), -EINVAL);
}

static void test_redis_urls(void **state)
{
    (void)state;
    clear_env();
    mc__meta_conn_t c;
    assert_int_equal(mc__meta_parse("redis://10.1.2.3:7000", &c), 0);
    assert_string_equal(c.redis.host, "10.1.2.3");
    assert_int_equal(c.redis.port, 7000);
    assert_string_equal(c.redis.user, "");
    assert_string_equal(c.redis.pass, "");
    assert_int_equal(c.redis.db, 0);

    assert_int_equal(mc__meta_parse("redis://myhost", &c), 0);
    assert_string_equal(c.redis.host, "myhost");
    assert_int_equal(c.redis.port, 6379);

    assert_int_equal(mc__meta_parse("redis://alice:p%40ss%3Aw@h:6380/12", &c), 0);
    assert_string_equal(c.redis.user, "alice");
    assert_string_equal(c.redis.pass, "p@ss:w");
    assert_string_equal(c.redis.host, "h");
    assert_int_equal(c.redis.port, 6380);
    assert_int_equal(c.redis.db, 12);

    /* password only */
    assert_int_equal(mc__meta_parse("redis://:pw@h:1/", &c), 0);
    assert_string_equal(c.redis.user, "");
    assert_string_equal(c.redis.pass, "pw");
    assert_int_equal(c.redis.db, 0);

    assert_int_equal(mc__meta_parse("redis://[::1]:6379", &c), 0);
    assert_string_equal(c.redis.host, "::1");

    assert_int_equal(mc__meta_parse("redis://h:1/256", &c), -EINVAL);
    assert_int_equal(mc__meta_parse("redis://h:1/x", &c), -EINVAL);
    assert_int_equal(mc__meta_parse("redis://h:99999", &c), -EINVAL);
    assert_int_equal(mc__meta_parse("redis://h:1?db=2", &c), -EINVAL);
    assert_int_equal(mc__meta_parse("redis://", &c), -EINVAL);
}

static void test_redis_env(void **state)
{
    (void)state;
    clear_env();
    setenv("MC_REDIS_USERNAME", "envuser", 1);
    setenv("MC_REDIS_PASSWORD", "envpw", 1);
    setenv("MC_REDIS_DB_INDEX", "7", 1);
    mc__meta_conn_t c;
    assert_int_equal(mc__meta_parse("redis://h:1", &c), 0);
    assert_string_equal(c.redis.user, "envuser");
    assert_string_equal(c.redis.pass, "envpw");
    assert_int_equal(c.redis.db, 7);
    /* the URL wins where it says something */
    assert_int_equal(mc__meta_parse("redis://u:p@h:1/3", &c), 0);
    assert_string_equal(c.redis.user, "u");
    assert_string_equal(c.redis.pass, "p");
    assert_int_equal(c.redis.db, 3);
    setenv("MC_REDIS_DB_INDEX", "300", 1);
    assert_int_equal(mc__meta_parse("redis://h:1", &c), -EINVAL);
    setenv("MC_REDIS_DB_INDEX", "abc", 1);
    assert_int_equal(mc__meta_parse("redis://h:1", &c), -EINVAL);
    clear_env();
}

static void expect_endpoints(const char *list, int n, const char *const *want)
{
    mc_etcd_t *e = NULL;
    assert_int_equal(mc_etcd_open(list, &e), 0);
    assert_int_equal(mc_etcd_endpoint_count(e), n);
    for (int i = 0; i < n; i++)
        assert_string_equal(mc_etcd_endpoint(e, i), want[i]);
    assert_null(mc_etcd_endpoint(e, n));
    mc_etcd_close(e);
}

static void test_etcd_endpoints(void **state)
{
    (void)state;
    const char *const two[] = {"h1:2379", "h2:2380"};
    expect_endpoints("h1:2379;h2:2380", 2, two);
    expect_endpoints("h1:2379,h2:2380", 2, two);
    expect_endpoints(" http://h1:2379/ ; HTTPS://h2:2380;", 2, two);
    const char *const one[] = {"[::1]:2379"};
    expect_endpoints("[::1]:2379", 1, one);
    mc_etcd_t *e = NULL;
    assert_int_equal(mc_etcd_open("", &e), -EINVAL);
    assert_int_equal(mc_etcd_open(";;", &e), -EINVAL);
    assert_int_equal(mc_etcd_open("h1", &e), -EINVAL);
    assert_int_equal(mc_etcd_open("h1:", &e), -EINVAL);
    assert_int_equal(mc_etcd_open("h1:0", &e), -EINVAL);
    assert_int_equal(mc_etcd_open("h1:70000", &e), -EINVAL);
    assert_int_equal(mc_etcd_open("h1:23x9", &e), -EINVAL);
    assert_int_equal(mc_etcd_open("http://h1:2379/v3", &e), -EINVAL);
    assert_int_equal(mc_etcd_open("u@h1:2379", &e), -EINVAL);
    char many[512] = "";
    for (int i = 0; i <= MC_ETCD_MAX_ENDPOINTS; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "h%d:1;", i);
    assert_int_equal(mc_etcd_open(many, &e), -EINVAL);
    /* the metadata layer takes the same lists */
    mc_meta_t *m = NULL;
    assert_int_equal(mc_meta_open("etcd://h1:1,h2:2", &m), 0);
    assert_int_equal(mc_meta_is_p2p(m), 0);
    mc_meta_close(m);
    assert_int_equal(mc_meta_open("etcd://", &m), -EINVAL);
}

static int nev;
static char last_key[64];
static int last_type;

static void count_cb(void *arg, const mc_etcd_event_t *ev)
{
    (void)arg;
    nev++;
    last_type = ev->type;
    snprintf(last_key, sizeof last_key, "%.*s", (int)ev->keylen, ev->key);
}

static void test_decoders(void **state)
{
    (void)state;
    const char *ok = "{\"header\":{\"revision\":\"9\"},\"kvs\":[{\"key\":\"Zm9v\","
                     "\"create_revision\":\"2\",\"mod_revision\":\"8\",\"version\":\"3\","
                     "\"value\":\"YmFy\"}],\"count\":\"1\"}";
    char *v = NULL;
    size_t vl = 0;
    mc_etcd_kv_t kv;
    int64_t rev = 0;
    assert_int_equal(mc_etcd_parse_range(ok, strlen(ok), &v, &vl, &kv, &rev), 0);
    assert_int_equal(vl, 3);
    assert_string_equal(v, "bar");
    assert_int_equal(kv.create_rev, 2);
    assert_int_equal(kv.mod_rev, 8);
    assert_int_equal(kv.version, 3);
    assert_int_equal(rev, 9);
    free(v);
    const char *none = "{\"header\":{\"revision\":\"4\"}}";
    assert_int_equal(mc_etcd_parse_range(none, strlen(none), &v, &vl, &kv, &rev), -ENOENT);
    assert_int_equal(rev, 4);
    const char *bad[] = {
        "{",
        "[]",
        "{\"header\":{\"revision\":\"x\"}}",
        "{\"count\":\"1\"}",
        "{\"kvs\":[{\"key\":\"Zm9\"}]}",
        "{\"kvs\":[{\"key\":\"Zm9v\",\"value\":\"Y=Fy\"}]}",
        "{\"kvs\":[{\"key\":5}]}",
        "{\"kvs\":{}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(mc_etcd_parse_range(bad[i], strlen(bad[i]), &v, &vl, &kv, &rev), -EPROTO);

    int created = 0, canceled = 0;
    const char *cr = "{\"result\":{\"header\":{\"revision\":\"4\"},\"created\":true}}";
    nev = 0;
    assert_int_equal(mc_etcd_parse_watch(cr, strlen(cr), count_cb, NULL, &created, &canceled), 0);
    assert_int_equal(created, 1);
    assert_int_equal(nev, 0);
    const char *evs = "{\"result\":{\"events\":[{\"kv\":{\"key\":\"Zm9v\",\"mod_revision\":\"5\","
                      "\"value\":\"YmFy\"}},{\"type\":\"DELETE\",\"kv\":{\"key\":\"YWI=\"}}]}}";
    assert_int_equal(mc_etcd_parse_watch(evs, strlen(evs), count_cb, NULL, &created, &canceled), 0);
    assert_int_equal(nev, 2);
    assert_int_equal(last_type, MC_ETCD_EV_DELETE);
    assert_string_equal(last_key, "ab");
    const char *cn = "{\"result\":{\"canceled\":true,\"compact_revision\":\"3\"}}";
    assert_int_equal(mc_etcd_parse_watch(cn, strlen(cn), count_cb, NULL, &created, &canceled), 0);
    assert_int_equal(canceled, 1);
    const char *err = "{\"error\":{\"grpc_code\":14,\"message\":\"unavailable\"}}";
    assert_int_equal(mc_etcd_parse_watch(err, strlen(err), count_cb, NULL, &created, &canceled),
                     -EPROTO);
    const char *badtype = "{\"result\":{\"events\":[{\"type\":\"X\",\"kv\":{\"key\":\"YWI=\"}}]}}";
    assert_int_equal(
        mc_etcd_parse_watch(badtype, strlen(badtype), count_cb, NULL, &created, &canceled),
        -EPROTO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kinds),     cmocka_unit_test(test_redis_urls),
        cmocka_unit_test(test_redis_env), cmocka_unit_test(test_etcd_endpoints),
        cmocka_unit_test(test_decoders),
    };
    return cmocka_run_group_tests_name("meta_conn", tests, NULL, NULL);
}
