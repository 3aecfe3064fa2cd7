/* test_metasrv.c: the HTTP metadata server core (src/metasrv) driven in-process
 * on 127.0.0.1, through the real mc_meta http:// client (src/meta/meta_http.c)
 * and through raw libcurl requests for the protocol's edge cases: statuses and
 * bodies of spec §4, the duplicate rpc_meta rule, key stripping and escaping,
 * the body limit, and many client threads at once. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "metasrv.h"
#include "mooncake/meta.h"

static mc_metasrv_t *srv;
static char base[64]; /* http://127.0.0.1:PORT */
static char meta_url[96];

typedef struct {
    long status;
    char *body;
    size_t len, cap;
} resp_t;

typedef struct {
    const char *data;
    size_t len, off;
} upload_t;

static size_t collect(char *p, size_t sz, size_t n, void *arg)
{
    resp_t *r = arg;
    if (r->len + sz * n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 4096;
        while (cap < r->len + sz * n + 1)
            cap *= 2;
        char *nb = realloc(r->body, cap);
        if (!nb) return 0;
        r->body = nb;
        r->cap = cap;
    }
    memcpy(r->body + r->len, p, sz * n);
    r->len += sz * n;
    r->body[r->len] = '\0';
    return sz * n;
}

static size_t feed(char *p, size_t sz, size_t n, void *arg)
{
    upload_t *u = arg;
    size_t k = sz * n;
    if (k > u->len - u->off) k = u->len - u->off;
    memcpy(p, u->data + u->off, k);
    u->off += k;
    return k;
}

/* One raw request to base + pathq. body may be NULL; chunked 1 sends it with
 * Transfer-Encoding: chunked; chunked 2 sends it with a length and waits for
 * the server's verdict first (Expect: 100-continue), as a client that wants
 * the answer to an oversized body must: without it, the client may still be
 * sending when the server answers and closes. Fails the test on a transport
 * error. */
static void raw(const char *method, const char *pathq, const void *body, size_t blen, int chunked,
                resp_t *r)
{
    char url[4096];
    snprintf(url, sizeof url, "%s%s", base, pathq);
    memset(r, 0, sizeof *r);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    upload_t up = {body, blen, 0};
    struct curl_slist *h =
        curl_slist_append(NULL, chunked == 2 ? "Expect: 100-continue" : "Expect:");
    if (chunked == 2) chunked = 0;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (!strcmp(method, "HEAD")) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    if (body && chunked) {
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, feed);
        curl_easy_setopt(c, CURLOPT_READDATA, &up);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    } else if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    }
    CURLcode cc = curl_easy_perform(c);
    if (cc != CURLE_OK) fail_msg("%s %s: %s", method, url, curl_easy_strerror(cc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

/* raw() and checks status and, when want is not NULL, the exact body. */
static void expect(const char *method, const char *pathq, const char *body, long status,
                   const char *want)
{
    resp_t r;
    raw(method, pathq, body, body ? strlen(body) : 0, 0, &r);
    if (r.status != status)
        fail_msg("%s %s: status %ld, want %ld (body '%s')", method, pathq, r.status, status,
                 r.body ? r.body : "");
    if (want) {
        assert_non_null(r.body);
        assert_string_equal(r.body, want);
    }
    free(r.body);
}

static mc_meta_t *open_client(void)
{
    mc_meta_t *m = NULL;
    assert_int_equal(mc_meta_open(meta_url, &m), 0);
    assert_false(mc_meta_is_p2p(m));
    return m;
}

static void test_round_trip(void **st)
{
    mc_meta_t *m = open_client();
    const char *v = "{\"name\":\"127.0.0.1:1234\",\"protocol\":\"tcp\",\"tcp_data_port\":1234,"
                    "\"buffers\":[{\"name\":\"n\",\"addr\":140737488355328,\"length\":4096}],"
                    "\"x\":\"caf\xc3\xa9 \\\"q\\\" \\n\"}";
    char *got = NULL;
    assert_int_equal(mc_meta_get(m, "mooncake/ram/rt", &got), -ENOENT);
    assert_int_equal(mc_meta_put(m, "mooncake/ram/rt", v), 0);
    assert_int_equal(mc_meta_get(m, "mooncake/ram/rt", &got), 0);
    assert_string_equal(got, v);
    free(got);
    /* non-rpc_meta keys are replaced */
    assert_int_equal(mc_meta_put(m, "mooncake/ram/rt", "{\"v\":2}"), 0);
    assert_int_equal(mc_meta_get(m, "mooncake/ram/rt", &got), 0);
    assert_string_equal(got, "{\"v\":2}");
    free(got);
    /* an empty value is a value */
    assert_int_equal(mc_meta_put(m, "mooncake/ram/empty", ""), 0);
    assert_int_equal(mc_meta_get(m, "mooncake/ram/empty", &got), 0);
    assert_string_equal(got, "");
    free(got);
    assert_int_equal(mc_meta_del(m, "mooncake/ram/empty"), 0);
    assert_int_equal(mc_meta_del(m, "mooncake/ram/rt"), 0);
    assert_int_equal(mc_meta_del(m, "mooncake/ram/rt"), -ENOENT);
    got = NULL;
    assert_int_equal(mc_meta_get(m, "mooncake/ram/rt", &got), -ENOENT);
    assert_null(got);
    mc_meta_close(m);
}

static void test_raw_statuses(void **st)
{
    expect("GET", "/health", NULL, 200, "OK");
    expect("GET", "/metadata?key=raw1", NULL, 404, "metadata not found");
    expect("DELETE", "/metadata?key=raw1", NULL, 404, "metadata not found");
    expect("PUT", "/metadata?key=raw1", "{\"a\":1}", 200, "metadata updated");
    expect("GET", "/metadata?key=raw1", NULL, 200, "{\"a\":1}");
    expect("DELETE", "/metadata?key=raw1", NULL, 200, "metadata deleted");
    /* GET answers application/json */
    expect("PUT", "/metadata?key=ct", "{}", 200, NULL);
    CURL *c = curl_easy_init();
    char url[128];
    snprintf(url, sizeof url, "%s/metadata?key=ct", base);
    resp_t r = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    char *ct = NULL;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    assert_non_null(ct);
    assert_string_equal(ct, "application/json");
    curl_easy_cleanup(c);
    free(r.body);
}

static void test_bad_keys(void **st)
{
    expect("GET", "/metadata", NULL, 400, "Missing key");
    expect("GET", "/metadata?key=", NULL, 400, "Missing key");
    expect("GET", "/metadata?other=x", NULL, 400, "Missing key");
    expect("PUT", "/metadata?key=%20%09%0A", "{}", 400, "Missing key");
    expect("DELETE", "/metadata?key=%20", NULL, 400, "Missing key");
    expect("GET", "/metadata?key=a%00b", NULL, 400, "Missing key");
    /* surrounding whitespace is stripped: " sk " and "sk" are one key */
    expect("PUT", "/metadata?key=%20sk%09", "{\"s\":1}", 200, "metadata updated");
    expect("GET", "/metadata?key=sk", NULL, 200, "{\"s\":1}");
    expect("DELETE", "/metadata?key=%20sk", NULL, 200, "metadata deleted");
}

static void test_methods_and_paths(void **st)
{
    expect("POST", "/metadata?key=a", "{}", 405, NULL);
    expect("PATCH", "/metadata?key=a", "{}", 405, NULL);
    expect("OPTIONS", "/metadata?key=a", NULL, 405, NULL);
    expect("HEAD", "/metadata?key=a", NULL, 405, NULL);
    expect("PUT", "/health", "x", 405, NULL);
    expect("DELETE", "/health", NULL, 405, NULL);
    expect("GET", "/", NULL, 404, NULL);
    expect("GET", "/metadata/x?key=a", NULL, 404, NULL);
    expect("PUT", "/nope?key=a", "{}", 404, NULL);
    expect("GET", "/healthz", NULL, 404, NULL);
    /* a body on a GET is read and ignored */
    expect("PUT", "/metadata?key=gb", "{\"g\":1}", 200, NULL);
    expect("GET", "/metadata?key=gb", "ignored body", 200, "{\"g\":1}");
    expect("GET", "/health", NULL, 200, "OK");
}

static void test_rpc_meta_duplicate(void **st)
{
    const char *k = "/metadata?key=mooncake/rpc_meta/node1";
    const char *v1 = "{\"ip_or_host_name\":\"10.0.0.1\",\"rpc_port\":12345}";
    expect("PUT", k, v1, 200, "metadata updated");
    expect("PUT", k, v1, 200, "metadata unchanged");
    expect("PUT", k, "{\"ip_or_host_name\":\"10.0.0.2\",\"rpc_port\":12345}", 400,
           "Duplicate rpc_meta key not allowed");
    expect("GET", k, NULL, 200, v1);
    /* through the client: identical is fine, different is -EEXIST */
    mc_meta_t *m = open_client();
    assert_int_equal(mc_meta_put(m, "mooncake/rpc_meta/node1", v1), 0);
    assert_int_equal(mc_meta_put(m, "mooncake/rpc_meta/node1", "{}"), -EEXIST);
    /* after a delete the name is free again */
    assert_int_equal(mc_meta_del(m, "mooncake/rpc_meta/node1"), 0);
    assert_int_equal(mc_meta_put(m, "mooncake/rpc_meta/node1", "{}"), 0);
    assert_int_equal(mc_meta_del(m, "mooncake/rpc_meta/node1"), 0);
    mc_meta_close(m);
}

static void test_body_limit(void **st)
{
    size_t lim = 16u << 20;
    char *big = malloc(lim + 1);
    assert_non_null(big);
    for (size_t i = 0; i < lim + 1; i++)
        big[i] = (char)('a' + i % 26);
    resp_t r;
    raw("PUT", "/metadata?key=big", big, lim + 1, 2, &r); /* refused from its length */
    assert_int_equal(r.status, 413);
    free(r.body);
    raw("PUT", "/metadata?key=big", big, lim + 1, 1, &r); /* chunked: no length announced */
    assert_int_equal(r.status, 413);
    free(r.body);
    expect("GET", "/metadata?key=big", NULL, 404, NULL);
    /* exactly the limit is accepted and comes back byte for byte */
    raw("PUT", "/metadata?key=big", big, lim, 1, &r);
    assert_int_equal(r.status, 200);
    free(r.body);
    raw("GET", "/metadata?key=big", NULL, 0, 0, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, lim);
    assert_memory_equal(r.body, big, lim);
    free(r.body);
    expect("DELETE", "/metadata?key=big", NULL, 200, NULL);
    free(big);
    expect("GET", "/health", NULL, 200, "OK");
}

static void test_escaped_keys(void **st)
{
    mc_meta_t *m = open_client();
    const char *keys[] = {"mooncake/ram/a b",         "mooncake/ram/x&key=y",
                          "mooncake/ram/p%20q",       "mooncake/ram/plus+sign",
                          "mooncake/ram/q?r#s",       "mooncake/ram/10.0.0.1:80",
                          "mooncake/ram/\xe6\x97\xa5"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char val[64], *got = NULL;
        snprintf(val, sizeof val, "{\"i\":%zu}", i);
        assert_int_equal(mc_meta_put(m, keys[i], val), 0);
        assert_int_equal(mc_meta_get(m, keys[i], &got), 0);
        assert_string_equal(got, val);
        free(got);
    }
    /* the server stored the exact key text: raw escaped lookups find them */
    expect("GET", "/metadata?key=mooncake%2Fram%2Fa%20b", NULL, 200, "{\"i\":0}");
    expect("GET", "/metadata?key=mooncake/ram/x%26key%3Dy", NULL, 200, "{\"i\":1}");
    expect("GET", "/metadata?key=mooncake/ram/p%2520q", NULL, 200, "{\"i\":2}");
    expect("GET", "/metadata?key=mooncake/ram/plus%2Bsign", NULL, 200, "{\"i\":3}");
    expect("GET", "/metadata?key=mooncake/ram/x", NULL, 404, NULL);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        assert_int_equal(mc_meta_del(m, keys[i]), 0);
    mc_meta_close(m);
}

static void test_cluster_prefix(void **st)
{
    char k[128];
    unsetenv("MC_METADATA_CLUSTER_ID");
    assert_int_equal(mc_meta_key(k, sizeof k, "ram", "seg:1"), 0);
    assert_string_equal(k, "mooncake/ram/seg:1");
    setenv("MC_METADATA_CLUSTER_ID", "c1", 1);
    assert_int_equal(mc_meta_key(k, sizeof k, "ram", "seg:1"), 0);
    assert_string_equal(k, "mooncake/c1/ram/seg:1");
    setenv("MC_METADATA_CLUSTER_ID", "c2/", 1);
    assert_int_equal(mc_meta_key(k, sizeof k, "rpc_meta", "srv"), 0);
    assert_string_equal(k, "mooncake/c2/rpc_meta/srv");
    char small[10];
    assert_int_equal(mc_meta_key(small, sizeof small, "rpc_meta", "srv"), -ENAMETOOLONG);

    mc_meta_t *m = open_client();
    assert_int_equal(mc_meta_put(m, k, "{\"rpc_port\":1}"), 0);
    expect("GET", "/metadata?key=mooncake/c2/rpc_meta/srv", NULL, 200, "{\"rpc_port\":1}");
    expect("GET", "/metadata?key=mooncake/rpc_meta/srv", NULL, 404, NULL);
    /* the duplicate rule applies to prefixed rpc_meta keys too */
    assert_int_equal(mc_meta_put(m, k, "{\"rpc_port\":2}"), -EEXIST);
    assert_int_equal(mc_meta_del(m, k), 0);
    mc_meta_close(m);
    unsetenv("MC_METADATA_CLUSTER_ID");
}

static void test_client_errors(void **st)
{
    mc_meta_t *m = NULL;
    assert_int_equal(mc_meta_open("http://", &m), -EINVAL);
    assert_int_equal(mc_meta_open("http://exa mple.com:80/metadata", &m), -EINVAL);
    /* a URL with a query already gets &key= */
    char url[160];
    snprintf(url, sizeof url, "%s/metadata?x=1", base);
    assert_int_equal(mc_meta_open(url, &m), 0);
    assert_int_equal(mc_meta_put(m, "q", "{}"), 0);
    char *got = NULL;
    assert_int_equal(mc_meta_get(m, "q", &got), 0);
    assert_string_equal(got, "{}");
    free(got);
    assert_int_equal(mc_meta_del(m, "q"), 0);
    mc_meta_close(m);
    /* a server that answers something other than 200/404 (here: 405) is -EIO */
    snprintf(url, sizeof url, "%s/health", base);
    assert_int_equal(mc_meta_open(url, &m), 0);
    assert_int_equal(mc_meta_put(m, "mooncake/rpc_meta/z", "{}"), -EIO);
    assert_int_equal(mc_meta_del(m, "z"), -EIO);
    mc_meta_close(m);
    /* a blank key is refused by the server with 400: -EIO for a non-rpc_meta key */
    m = open_client();
    assert_int_equal(mc_meta_put(m, "  ", "{}"), -EIO);
    assert_int_equal(mc_meta_get(m, "", &got), -EIO);
    mc_meta_close(m);
    /* nobody listening: -EIO, promptly */
    mc_metasrv_t *tmp = NULL;
    assert_int_equal(mc_metasrv_start("127.0.0.1", 0, &tmp), 0);
    snprintf(url, sizeof url, "http://127.0.0.1:%u/metadata", mc_metasrv_port(tmp));
    mc_metasrv_stop(tmp);
    assert_int_equal(mc_meta_open(url, &m), 0);
    assert_int_equal(mc_meta_get(m, "k", &got), -EIO);
    assert_int_equal(mc_meta_put(m, "k", "{}"), -EIO);
    assert_int_equal(mc_meta_del(m, "k"), -EIO);
    mc_meta_close(m);
}

static void test_start_errors(void **st)
{
    mc_metasrv_t *s2 = NULL;
    assert_int_equal(mc_metasrv_start("127.0.0.1", mc_metasrv_port(srv), &s2), -EADDRINUSE);
    assert_null(s2);
    assert_true(mc_metasrv_start("no.such.host.invalid", 0, &s2) < 0);
    mc_metasrv_stop(NULL);
}

#define NTHREADS 6
#define NOPS 150

typedef struct {
    mc_meta_t *m;
    int id;
    int won;     /* rpc_meta race: 1 when this thread's PUT was the one kept */
    int failure; /* first failed step, 0 when all went well */
} worker_t;

static void *worker(void *arg)
{
    worker_t *w = arg;
    char key[64], val[96], *got;
    for (int i = 0; i < NOPS && !w->failure; i++) {
        snprintf(key, sizeof key, "mooncake/ram/t%d/k%d", w->id, i % 10);
        snprintf(val, sizeof val, "{\"t\":%d,\"i\":%d,\"pad\":\"%0*d\"}", w->id, i, i % 40, 0);
        if (mc_meta_put(w->m, key, val)) w->failure = 1;
        got = NULL;
        if (!w->failure && (mc_meta_get(w->m, key, &got) || strcmp(got, val))) w->failure = 2;
        free(got);
        if (!w->failure && i % 7 == 6) {
            if (mc_meta_del(w->m, key)) w->failure = 3;
            got = NULL;
            if (!w->failure && mc_meta_get(w->m, key, &got) != -ENOENT) w->failure = 4;
            free(got);
        }
    }
    /* everyone claims one rpc_meta name with its own body: exactly one wins */
    snprintf(val, sizeof val, "{\"ip_or_host_name\":\"h%d\",\"rpc_port\":1}", w->id);
    int rc = mc_meta_put(w->m, "mooncake/rpc_meta/contested", val);
    if (rc == 0)
        w->won = 1;
    else if (rc != -EEXIST)
        w->failure = 5;
    return NULL;
}

static void test_concurrent(void **st)
{
    mc_meta_t *m = open_client(); /* one client shared by every thread */
    pthread_t th[NTHREADS];
    worker_t w[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        w[i] = (worker_t){.m = m, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &w[i]), 0);
    }
    int winners = 0, winner = -1;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        if (w[i].failure) fail_msg("thread %d failed at step %d", i, w[i].failure);
        if (w[i].won) winners++, winner = i;
    }
    assert_int_equal(winners, 1);
    char *got = NULL, want[96];
    snprintf(want, sizeof want, "{\"ip_or_host_name\":\"h%d\",\"rpc_port\":1}", winner);
    assert_int_equal(mc_meta_get(m, "mooncake/rpc_meta/contested", &got), 0);
    assert_string_equal(got, want);
    free(got);
    mc_meta_close(m);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (mc_metasrv_start("127.0.0.1", 0, &srv)) {
        fprintf(stderr, "cannot start the metadata server\n");
        return 1;
    }
    if (mc_metasrv_port(srv) == 0) return 1;
    snprintf(base, sizeof base, "http://127.0.0.1:%u", mc_metasrv_port(srv));
    snprintf(meta_url, sizeof meta_url, "%s/metadata", base);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),         cmocka_unit_test(test_raw_statuses),
        cmocka_unit_test(test_bad_keys),           cmocka_unit_test(test_methods_and_paths),
        cmocka_unit_test(test_rpc_meta_duplicate), cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_escaped_keys),       cmocka_unit_test(test_cluster_prefix),
        cmocka_unit_test(test_client_errors),      cmocka_unit_test(test_start_errors),
        cmocka_unit_test(test_concurrent),
    };
    int rc = cmocka_run_group_tests_name("metasrv", tests, NULL, NULL);
    mc_metasrv_stop(srv);
    curl_global_cleanup();
    return rc;
}
