/* Unit tests of the proxy's vLLM KV event decoder (proxy_kvev_decode.c) and of
 * the --kv-events arguments. The first payload is what msgspec (the encoder vLLM
 * 0.32 uses) writes for an EventBatch of a BlockStored, a BlockRemoved and an
 * AllBlocksCleared with vLLM's struct options (batch array_like, events tagged
 * maps), byte for byte. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "proxy.h"
#include "proxy_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

static const unsigned char v032[] =
    "\x93\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00\x93\x88\xa4\x74\x79\x70"
    "\x65\xab\x42\x6c\x6f\x63\x6b\x53\x74\x6f\x72\x65\x64\xac\x62\x6c"
    "\x6f\x63\x6b\x5f\x68\x61\x73\x68\x65\x73\x91\xc4\x04\x01\x01\x01"
    "\x01\xb1\x70\x61\x72\x65\x6e\x74\x5f\x62\x6c\x6f\x63\x6b\x5f\x68"
    "\x61\x73\x68\xc0\xa9\x74\x6f\x6b\x65\x6e\x5f\x69\x64\x73\x94\x01"
    "\x02\x03\x04\xaa\x62\x6c\x6f\x63\x6b\x5f\x73\x69\x7a\x65\x04\xa7"
    "\x6c\x6f\x72\x61\x5f\x69\x64\xc0\xa6\x6d\x65\x64\x69\x75\x6d\xa3"
    "\x47\x50\x55\xa9\x6c\x6f\x72\x61\x5f\x6e\x61\x6d\x65\xc0\x83\xa4"
    "\x74\x79\x70\x65\xac\x42\x6c\x6f\x63\x6b\x52\x65\x6d\x6f\x76\x65"
    "\x64\xac\x62\x6c\x6f\x63\x6b\x5f\x68\x61\x73\x68\x65\x73\x91\x05"
    "\xa6\x6d\x65\x64\x69\x75\x6d\xa3\x47\x50\x55\x81\xa4\x74\x79\x70"
    "\x65\xb0\x41\x6c\x6c\x42\x6c\x6f\x63\x6b\x73\x43\x6c\x65\x61\x72"
    "\x65\x64\xc0";

#define V032_LEN (sizeof v032 - 1) /* the literal's NUL is not part of it */

typedef struct {
    int n;
    mc__proxy_kvev_t ev[8];
    uint32_t tokens[8][8];
    uint64_t hashes[8][4];
} seen_t;

static void keep(void *ud, const mc__proxy_kvev_t *ev)
{
    seen_t *s = ud;
    assert_true(s->n < 8);
    s->ev[s->n] = *ev;
    assert_true(ev->n_tokens <= 8 && ev->n_hashes <= 4);
    if (ev->n_tokens) memcpy(s->tokens[s->n], ev->tokens, ev->n_tokens * 4);
    if (ev->n_hashes) memcpy(s->hashes[s->n], ev->hashes, ev->n_hashes * 8);
    s->ev[s->n].tokens = NULL;
    s->ev[s->n].hashes = NULL;
    s->n++;
}

static void test_vllm_032_bytes(void **st)
{
    (void)st;
    seen_t s = {0};
    unsigned ne, nb;
    assert_int_equal(mc__proxy_kvev_decode(v032, V032_LEN, keep, &s, &ne, &nb), 0);
    assert_int_equal(ne, 3);
    assert_int_equal(nb, 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.ev[0].kind, MC_KVEV_STORED);
    assert_int_equal(s.ev[0].n_hashes, 1);
    static const unsigned char h1[4] = {1, 1, 1, 1};
    assert_true(s.hashes[0][0] == XXH3_64bits(h1, 4));
    assert_int_equal(s.ev[0].has_parent, 0);
    assert_int_equal(s.ev[0].block_size, 4);
    assert_int_equal(s.ev[0].n_tokens, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(s.tokens[0][i], i + 1);
    assert_string_equal(s.ev[0].medium, "GPU");
    assert_int_equal(s.ev[0].lora, 0);
    assert_int_equal(s.ev[1].kind, MC_KVEV_REMOVED);
    assert_int_equal(s.ev[1].n_hashes, 1);
    static const unsigned char le5[8] = {5};
    assert_true(s.hashes[1][0] == XXH3_64bits(le5, 8)); /* an integer hash */
    assert_int_equal(s.ev[2].kind, MC_KVEV_CLEARED);
    /* every strict prefix is refused whole, nothing is applied */
    for (size_t n = 0; n < V032_LEN; n++) {
        seen_t t = {0};
        assert_int_equal(mc__proxy_kvev_decode(v032, n, keep, &t, &ne, &nb), -EINVAL);
        assert_int_equal(t.n, 0);
    }
}

static void test_array_form_and_bad_events(void **st)
{
    (void)st;
    /* [1, [["BlockStored", [7], 9, [5, 6], 2, nil, nil], ["BlockStored", [8], nil, [1], 2],
     *      ["Unknown"], ["BlockRemoved", [1.5]]]] */
    static const unsigned char b[] = {
        0x92, 0x01, 0x94,
        0x97, 0xab, 'B', 'l', 'o', 'c', 'k', 'S', 't', 'o', 'r', 'e', 'd', 0x91, 0x07, 0x09,
        0x92, 0x05, 0x06, 0x02, 0xc0, 0xc0,
        0x95, 0xab, 'B', 'l', 'o', 'c', 'k', 'S', 't', 'o', 'r', 'e', 'd', 0x91, 0x08, 0xc0,
        0x91, 0x01, 0x02,
        0x91, 0xa7, 'U', 'n', 'k', 'n', 'o', 'w', 'n',
        0x92, 0xac, 'B', 'l', 'o', 'c', 'k', 'R', 'e', 'm', 'o', 'v', 'e', 'd', 0x91, 0xcb,
        0x3f, 0xf8, 0, 0, 0, 0, 0, 0};
    seen_t s = {0};
    unsigned ne, nb;
    assert_int_equal(mc__proxy_kvev_decode(b, sizeof b, keep, &s, &ne, &nb), 0);
    assert_int_equal(ne, 2);
    assert_int_equal(nb, 2); /* one token for a block of 2; a float hash */
    assert_int_equal(s.ev[0].kind, MC_KVEV_STORED);
    assert_int_equal(s.ev[0].has_parent, 1);
    assert_int_equal(s.ev[0].block_size, 2);
    assert_int_equal(s.tokens[0][1], 6);
    assert_int_equal(s.ev[1].kind, MC_KVEV_OTHER);
}

static void test_bounds(void **st)
{
    (void)st;
    /* [1.0, array32 of 2^32-1]: refused before msgpack-c allocates for it */
    static const unsigned char huge[] = {0x92, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0,
                                         0xdd, 0xff, 0xff, 0xff, 0xff};
    assert_int_equal(mc__proxy_kvev_bounded(huge, sizeof huge), -EINVAL);
    unsigned ne, nb;
    seen_t s = {0};
    assert_int_equal(mc__proxy_kvev_decode(huge, sizeof huge, keep, &s, &ne, &nb), -EINVAL);
    static const unsigned char map32[] = {0xdf, 0, 0, 0, 1, 0x01, 0x02};
    assert_int_equal(mc__proxy_kvev_bounded(map32, sizeof map32), 0);
    assert_int_equal(mc__proxy_kvev_bounded(map32, 6), -EINVAL);
    unsigned char deep[40];
    memset(deep, 0x91, sizeof deep); /* 40 nested one-element arrays */
    deep[39] = 0x01;
    assert_int_equal(mc__proxy_kvev_bounded(deep, sizeof deep), -EINVAL);
    assert_int_equal(mc__proxy_kvev_bounded(deep + 30, 10), 0);
    static const unsigned char str[] = {0xdb, 0, 0, 0, 9, 'a'};
    assert_int_equal(mc__proxy_kvev_bounded(str, sizeof str), -EINVAL);
    assert_int_equal(mc__proxy_kvev_bounded((const unsigned char[]){0xc1}, 1), -EINVAL);
    assert_int_equal(mc__proxy_kvev_decode(v032, V032_LEN + 1, keep, &s, &ne, &nb), -EINVAL);
}

static void test_chain(void **st)
{
    (void)st;
    uint32_t t[130];
    for (int i = 0; i < 130; i++)
        t[i] = (uint32_t)i * 7919u;
    uint64_t a = mc__proxy_kvev_chain(MC_KVEV_ROOT, t, 130);
    assert_true(a != 0);
    assert_true(a == mc__proxy_kvev_chain(MC_KVEV_ROOT, t, 130));
    assert_true(a != mc__proxy_kvev_chain(MC_KVEV_ROOT + 1, t, 130));
    t[129]++;
    assert_true(a != mc__proxy_kvev_chain(MC_KVEV_ROOT, t, 130));
}

static int parse(mc_proxy_config_t *c, char *err, ...)
{
    char *argv[32] = {"mooncake_proxy"};
    int argc = 1;
    va_list ap;
    va_start(ap, err);
    for (char *a; (a = va_arg(ap, char *));)
        argv[argc++] = a;
    va_end(ap);
    return mc_proxy_parse_args(argc, argv, c, err, 256);
}

static void test_args(void **st)
{
    (void)st;
    static mc_proxy_config_t c;
    char err[256];
    assert_int_equal(parse(&c, err, "--prefill", "a:1", "--decode", "d:2", "--kv-events",
                           "http://a:1/=tcp://a:5557", "--kv-events=b:2=tcp://b:5558",
                           "--kv-events-topic", "kv", NULL),
                     0);
    assert_int_equal(c.n_kvev, 2);
    assert_string_equal(c.kvev[0].inst, "a:1");
    assert_string_equal(c.kvev[0].endpoint, "tcp://a:5557");
    assert_string_equal(c.kvev[1].inst, "b:2");
    assert_string_equal(c.kvev[1].endpoint, "tcp://b:5558");
    assert_string_equal(c.kvev_topic, "kv");
    assert_int_equal(parse(&c, err, "--kv-events", "a:1", NULL), -EINVAL);
    assert_int_equal(parse(&c, err, "--kv-events", "=tcp://x:1", NULL), -EINVAL);
    assert_int_equal(parse(&c, err, "--kv-events", "a:1=x:1", NULL), -EINVAL);
    assert_non_null(strstr(err, "--kv-events"));
    assert_int_equal(parse(&c, err, "--kv-events", NULL), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vllm_032_bytes), cmocka_unit_test(test_array_form_and_bad_events),
        cmocka_unit_test(test_bounds),         cmocka_unit_test(test_chain),
        cmocka_unit_test(test_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
