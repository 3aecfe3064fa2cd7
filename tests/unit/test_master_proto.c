/* test_master_proto.c: the master RPC codec. Every message (request and
 * reply) is filled with generated values, encoded, decoded and compared,
 * field by field, by code generated from the same X-macro declarations as
 * the codec; then the limits, the frame header checks, every truncation of
 * every message, trailing bytes and random garbage. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "master_proto.h"

/* ---------------------------------------------------------------- filling */

static uint64_t seed = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    return seed;
}

/* Test storage: everything allocated while filling goes to one arena. */
static mc_mp_arena_t fill_arena;

static char *rstr(size_t maxlen)
{
    size_t n = rnd() % (maxlen + 1);
    char *s = mc_mp_arena_alloc(&fill_arena, n + 1);
    for (size_t i = 0; i < n; i++)
        s[i] = (char)('a' + rnd() % 26);
    return s;
}

static void rfstr(char *dst, size_t cap)
{
    size_t n = rnd() % cap;
    for (size_t i = 0; i < n; i++)
        dst[i] = (char)('A' + rnd() % 26);
    dst[n] = 0;
}

static void fill_seg(mc_segment_t *s)
{
    memset(s, 0, sizeof *s);
    s->id.hi = rnd();
    s->id.lo = rnd();
    rfstr(s->name, sizeof s->name);
    s->base = rnd();
    s->size = rnd();
    rfstr(s->te_endpoint, sizeof s->te_endpoint);
    rfstr(s->protocol, sizeof s->protocol);
    rfstr(s->host_id, sizeof s->host_id);
}

static void fill_rep(mc_replica_t *r)
{
    memset(r, 0, sizeof *r);
    r->id = rnd();
    r->addr = rnd();
    r->size = rnd();
    rfstr(r->endpoint, sizeof r->endpoint);
    r->status = (int)(rnd() % 4);
}

static mc_replica_t *fill_reps(size_t *n)
{
    *n = rnd() % 4;
    mc_replica_t *v = mc_mp_arena_alloc(&fill_arena, (*n + 1) * sizeof *v);
    for (size_t i = 0; i < *n; i++)
        fill_rep(&v[i]);
    return v;
}

static void fill_rcfg(mc_replicate_config_t *c)
{
    memset(c, 0, sizeof *c);
    c->replica_num = (uint32_t)rnd();
    c->soft_pin_action = (uint8_t)(rnd() % 3);
    c->has_soft_pin_ttl = (int)(rnd() % 2);
    c->soft_pin_ttl_ms = rnd();
    c->with_hard_pin = (int)(rnd() % 2);
    c->npreferred = rnd() % 3;
    const char **v = mc_mp_arena_alloc(&fill_arena, (c->npreferred + 1) * sizeof *v);
    for (size_t i = 0; i < c->npreferred; i++)
        v[i] = rstr(40);
    c->preferred_segments = v;
    c->prefer_alloc_in_same_node = (int)(rnd() % 2);
    c->host_id = rnd() % 2 ? rstr(30) : NULL;
}

#define ARR(T, f, fillexpr)                                                                        \
    do {                                                                                           \
        size_t k_ = rnd() % 5;                                                                     \
        T *v_ = mc_mp_arena_alloc(&fill_arena, (k_ + 1) * sizeof *v_);                             \
        for (size_t i = 0; i < k_; i++)                                                            \
            fillexpr;                                                                              \
        m->f = v_;                                                                                 \
        m->n_##f = k_;                                                                             \
    } while (0)

#define FILL_U8(f) m->f = (uint8_t)rnd();
#define FILL_U32(f) m->f = (uint32_t)rnd();
#define FILL_I32(f) m->f = (int32_t)rnd();
#define FILL_U64(f) m->f = rnd();
#define FILL_I64(f) m->f = (int64_t)rnd();
#define FILL_UUID(f) m->f = (mc_uuid_t){rnd(), rnd()};
#define FILL_B32(f)                                                                                \
    for (size_t i = 0; i < 32; i++)                                                                \
        m->f[i] = (uint8_t)rnd();
#define FILL_STR(f) m->f = rstr(100);
#define FILL_SEG(f) fill_seg(&m->f);
#define FILL_SEGS(f) ARR(mc_segment_t, f, fill_seg(&v_[i]));
#define FILL_RCFG(f) fill_rcfg(&m->f);
#define FILL_REPS(f) ARR(mc_replica_t, f, fill_rep(&v_[i]));
#define FILL_STRS(f) ARR(const char *, f, v_[i] = rstr(60));
#define FILL_U64S(f) ARR(uint64_t, f, v_[i] = rnd());
#define FILL_I32S(f) ARR(int32_t, f, v_[i] = (int32_t)rnd());
#define FILL_RESULTS(f)                                                                            \
    ARR(mc_mp_result_t, f, (v_[i].rc = -(int32_t)(rnd() % 1000), v_[i].reps = fill_reps(&v_[i].n)));
#define FILL(kind, n) FILL_##kind(n)

/* ---------------------------------------------------------------- comparing */

static void cmp_seg(const mc_segment_t *a, const mc_segment_t *b)
{
    assert_true(a->id.hi == b->id.hi && a->id.lo == b->id.lo);
    assert_string_equal(a->name, b->name);
    assert_true(a->base == b->base && a->size == b->size);
    assert_string_equal(a->te_endpoint, b->te_endpoint);
    assert_string_equal(a->protocol, b->protocol);
    assert_string_equal(a->host_id, b->host_id);
}

static void cmp_rep(const mc_replica_t *a, const mc_replica_t *b)
{
    assert_true(a->id == b->id && a->addr == b->addr && a->size == b->size);
    assert_string_equal(a->endpoint, b->endpoint);
    assert_int_equal(a->status, b->status);
}

static void cmp_rcfg(const mc_replicate_config_t *a, const mc_replicate_config_t *b)
{
    assert_int_equal(a->replica_num, b->replica_num);
    assert_int_equal(a->soft_pin_action, b->soft_pin_action);
    assert_int_equal(a->has_soft_pin_ttl, b->has_soft_pin_ttl);
    assert_true(a->soft_pin_ttl_ms == b->soft_pin_ttl_ms);
    assert_int_equal(a->with_hard_pin, b->with_hard_pin);
    assert_int_equal(a->npreferred, b->npreferred);
    for (size_t i = 0; i < a->npreferred; i++)
        assert_string_equal(a->preferred_segments[i], b->preferred_segments[i]);
    assert_int_equal(a->prefer_alloc_in_same_node, b->prefer_alloc_in_same_node);
    assert_int_equal(a->host_id == NULL, b->host_id == NULL);
    if (a->host_id) assert_string_equal(a->host_id, b->host_id);
}

#define CMP_ARR(f, body)                                                                           \
    do {                                                                                           \
        assert_int_equal(x->n_##f, y->n_##f);                                                      \
        for (size_t i = 0; i < x->n_##f; i++)                                                      \
            body;                                                                                  \
    } while (0)

#define CMP_U8(f) assert_int_equal(x->f, y->f);
#define CMP_U32(f) assert_int_equal(x->f, y->f);
#define CMP_I32(f) assert_int_equal(x->f, y->f);
#define CMP_U64(f) assert_true(x->f == y->f);
#define CMP_I64(f) assert_true(x->f == y->f);
#define CMP_UUID(f) assert_true(x->f.hi == y->f.hi && x->f.lo == y->f.lo);
#define CMP_B32(f) assert_memory_equal(x->f, y->f, 32);
#define CMP_STR(f) assert_string_equal(x->f, y->f);
#define CMP_SEG(f) cmp_seg(&x->f, &y->f);
#define CMP_SEGS(f) CMP_ARR(f, cmp_seg(&x->f[i], &y->f[i]));
#define CMP_RCFG(f) cmp_rcfg(&x->f, &y->f);
#define CMP_REPS(f) CMP_ARR(f, cmp_rep(&x->f[i], &y->f[i]));
#define CMP_STRS(f) CMP_ARR(f, assert_string_equal(x->f[i], y->f[i]));
#define CMP_U64S(f) CMP_ARR(f, assert_true(x->f[i] == y->f[i]));
#define CMP_I32S(f) CMP_ARR(f, assert_int_equal(x->f[i], y->f[i]));
#define CMP_RESULTS(f)                                                                             \
    CMP_ARR(f, {                                                                                   \
        assert_int_equal(x->f[i].rc, y->f[i].rc);                                                  \
        assert_int_equal(x->f[i].n, y->f[i].n);                                                    \
        for (size_t j = 0; j < x->f[i].n; j++)                                                     \
            cmp_rep(&x->f[i].reps[j], &y->f[i].reps[j]);                                           \
    });
#define CMP(kind, n) CMP_##kind(n)

/* ---------------------------------------------------------------- helpers */

/* Checks the header of the single frame in b and returns its payload. */
static const uint8_t *frame_payload(const mc_mp_buf_t *b, unsigned method, uint32_t id,
                                    int32_t status, size_t *len)
{
    mc_mp_hdr_t h;
    const char *why = NULL;
    assert_true(b->len >= MC_MP_HDR_LEN);
    assert_int_equal(mc_mp_hdr_decode(b->p, b->len, &h, &why), 0);
    assert_int_equal(h.method, method);
    assert_int_equal(h.req_id, id);
    assert_int_equal(h.status, status);
    assert_int_equal(h.length, b->len - MC_MP_HDR_LEN);
    *len = h.length;
    return b->p + MC_MP_HDR_LEN;
}

/* Every strict prefix of a valid payload is rejected, and so is one more byte. */
static void check_truncations(unsigned method, const uint8_t *p, size_t len)
{
    mc_mp_arena_t a = {0};
    const char *why;
    for (size_t k = 0; k < len; k++) {
        uint8_t *copy = malloc(k ? k : 1); /* exact size: ASan sees any overread */
        memcpy(copy, p, k);
        why = NULL;
        assert_int_not_equal(mc_mp_check_payload(method, copy, k, &a, &why), 0);
        assert_non_null(why);
        free(copy);
        mc_mp_arena_reset(&a);
    }
    uint8_t *more = malloc(len + 1);
    memcpy(more, p, len);
    more[len] = 0;
    assert_int_not_equal(mc_mp_check_payload(method, more, len + 1, &a, &why), 0);
    assert_string_equal(why, "trailing bytes after the message");
    free(more);
    mc_mp_arena_free(&a);
}

/* ---------------------------------------------------------------- round trips */

#define RT(N, id, l, rq, rp)                                                                       \
    static void rt_##l(int iter)                                                                   \
    {                                                                                              \
        mc_mp_arena_t a = {0};                                                                     \
        mc_mp_buf_t b = {0};                                                                       \
        const char *why = NULL;                                                                    \
        size_t len;                                                                                \
        const uint8_t *p;                                                                          \
        {                                                                                          \
            mc_mp_##l##_req_t in, out, *m = &in, *x = &in, *y = &out;                              \
            memset(&in, 0, sizeof in);                                                             \
            rq(FILL)(void) m;                                                                      \
            assert_int_equal(mc_mp_encode_##l##_req(&b, (uint32_t)iter, &in), 0);                  \
            p = frame_payload(&b, id, (uint32_t)iter, 0, &len);                                    \
            assert_int_equal(mc_mp_decode_##l##_req(p, len, &a, &out, &why), 0);                   \
            rq(CMP)(void) x;                                                                       \
            (void)y;                                                                               \
            if (iter < 4) check_truncations(id, p, len);                                           \
            mc_mp_buf_free(&b);                                                                    \
        }                                                                                          \
        {                                                                                          \
            mc_mp_##l##_rep_t in, out, *m = &in, *x = &in, *y = &out;                              \
            memset(&in, 0, sizeof in);                                                             \
            rp(FILL)(void) m;                                                                      \
            assert_int_equal(mc_mp_encode_##l##_rep(&b, (uint32_t)iter, 0, &in), 0);               \
            p = frame_payload(&b, id | MC_MP_REPLY, (uint32_t)iter, 0, &len);                      \
            assert_int_equal(mc_mp_decode_##l##_rep(p, len, &a, &out, &why), 0);                   \
            rp(CMP)(void) x;                                                                       \
            (void)y;                                                                               \
            if (iter < 4) check_truncations(id | MC_MP_REPLY, p, len);                             \
            mc_mp_buf_free(&b);                                                                    \
            /* an error reply has no payload whatever m holds */                                   \
            assert_int_equal(mc_mp_encode_##l##_rep(&b, 7, MC_ERR_OBJECT_NOT_FOUND, &in), 0);      \
            frame_payload(&b, id | MC_MP_REPLY, 7, MC_ERR_OBJECT_NOT_FOUND, &len);                 \
            assert_int_equal(len, 0);                                                              \
            mc_mp_buf_free(&b);                                                                    \
        }                                                                                          \
        mc_mp_arena_free(&a);                                                                      \
    }
MC_MP_METHODS(RT)

static void test_round_trip_all(void **state)
{
    for (int iter = 0; iter < 40; iter++) {
#define RUN(N, id, l, rq, rp) rt_##l(iter);
        MC_MP_METHODS(RUN)
#undef RUN
        mc_mp_arena_reset(&fill_arena);
    }
    mc_mp_arena_free(&fill_arena);
}

/* Several frames in one buffer (as pipelined), each one decodable in turn. */
static void test_pipelined_frames(void **state)
{
    mc_mp_buf_t b = {0};
    for (uint32_t i = 0; i < 100; i++) {
        mc_mp_exist_req_t q = {.key = i % 2 ? "odd" : "even"};
        assert_int_equal(mc_mp_encode_exist_req(&b, i, &q), 0);
    }
    size_t off = 0;
    mc_mp_arena_t a = {0};
    for (uint32_t i = 0; i < 100; i++) {
        mc_mp_hdr_t h;
        const char *why;
        assert_int_equal(mc_mp_hdr_decode(b.p + off, b.len - off, &h, &why), 0);
        assert_int_equal(h.req_id, i);
        mc_mp_exist_req_t q;
        assert_int_equal(mc_mp_decode_exist_req(b.p + off + MC_MP_HDR_LEN, h.length, &a, &q, &why),
                         0);
        assert_string_equal(q.key, i % 2 ? "odd" : "even");
        off += MC_MP_HDR_LEN + h.length;
    }
    assert_int_equal(off, b.len);
    mc_mp_arena_free(&a);
    mc_mp_buf_free(&b);
}

/* ---------------------------------------------------------------- limits */

static void test_string_limits(void **state)
{
    char *big = malloc(MC_MP_STR_MAX + 2);
    memset(big, 'k', MC_MP_STR_MAX + 1);
    big[MC_MP_STR_MAX] = 0; /* exactly the limit */
    mc_mp_buf_t b = {0};
    mc_mp_arena_t a = {0};
    const char *why = NULL;
    size_t len;
    mc_mp_get_replicas_req_t q = {.key = big}, out;
    assert_int_equal(mc_mp_encode_get_replicas_req(&b, 1, &q), 0);
    const uint8_t *p = frame_payload(&b, MC_MP_GET_REPLICAS, 1, 0, &len);
    assert_int_equal(mc_mp_decode_get_replicas_req(p, len, &a, &out, &why), 0);
    assert_int_equal(strlen(out.key), MC_MP_STR_MAX);
    mc_mp_buf_free(&b);

    big[MC_MP_STR_MAX] = 'k'; /* one over: the encoder refuses, the buffer is untouched */
    big[MC_MP_STR_MAX + 1] = 0;
    assert_int_equal(mc_mp_encode_get_replicas_req(&b, 1, &q), -EINVAL);
    assert_int_equal(b.len, 0);
    mc_mp_buf_free(&b);

    /* and a hand-made over-limit string is rejected by the decoder */
    uint8_t *raw = malloc(4 + MC_MP_STR_MAX + 1);
    mc_wr_t w = mc_wr_init(raw, 4);
    mc_wr_u32(&w, MC_MP_STR_MAX + 1);
    memset(raw + 4, 'k', MC_MP_STR_MAX + 1);
    assert_int_equal(mc_mp_decode_get_replicas_req(raw, 4 + MC_MP_STR_MAX + 1, &a, &out, &why), -1);
    assert_string_equal(why, "string too long");
    /* a length beyond the payload */
    w = mc_wr_init(raw, 4);
    mc_wr_u32(&w, 1000);
    assert_int_equal(mc_mp_decode_get_replicas_req(raw, 10, &a, &out, &why), -1);
    assert_string_equal(why, "truncated string");
    /* a NUL byte inside */
    w = mc_wr_init(raw, 4);
    mc_wr_u32(&w, 3);
    memcpy(raw + 4, "a\0b", 3);
    assert_int_equal(mc_mp_decode_get_replicas_req(raw, 7, &a, &out, &why), -1);
    assert_string_equal(why, "NUL byte in a string");
    free(raw);
    free(big);
    mc_mp_arena_free(&a);
}

static void test_fixed_field_limits(void **state)
{
    /* a segment name must fit mc_segment_t.name (255 characters) */
    mc_mp_mount_segment_req_t q, out;
    memset(&q, 0, sizeof q);
    memset(q.seg.name, 'n', sizeof q.seg.name - 1);
    strcpy(q.seg.protocol, "tcp");
    mc_mp_buf_t b = {0};
    mc_mp_arena_t a = {0};
    const char *why = NULL;
    size_t len;
    assert_int_equal(mc_mp_encode_mount_segment_req(&b, 1, &q), 0);
    const uint8_t *p = frame_payload(&b, MC_MP_MOUNT_SEGMENT, 1, 0, &len);
    assert_int_equal(mc_mp_decode_mount_segment_req(p, len, &a, &out, &why), 0);
    assert_int_equal(strlen(out.seg.name), sizeof q.seg.name - 1);
    assert_string_equal(out.seg.protocol, "tcp");
    /* patch the name's length to 256 (and make room): rejected */
    uint8_t *raw = malloc(len + 1);
    memcpy(raw, p, 20);
    mc_wr_t w = mc_wr_init(raw + 16, 4);
    mc_wr_u32(&w, 256);
    raw[20] = 'n';
    memcpy(raw + 21, p + 20, len - 20);
    assert_int_equal(mc_mp_decode_mount_segment_req(raw, len + 1, &a, &out, &why), -1);
    assert_string_equal(why, "string too long");
    free(raw);
    mc_mp_buf_free(&b);
    mc_mp_arena_free(&a);
}

static void test_count_limits(void **state)
{
    mc_mp_arena_t a = {0};
    const char *why = NULL;
    uint8_t raw[64] = {0};
    mc_wr_t w;
    mc_mp_batch_exist_req_t q;
    /* over the batch limit */
    w = mc_wr_init(raw, 4);
    mc_wr_u32(&w, MC_MP_BATCH_MAX + 1);
    assert_int_equal(mc_mp_decode_batch_exist_req(raw, sizeof raw, &a, &q, &why), -1);
    assert_string_equal(why, "too many keys");
    /* under the limit but more than the payload can hold: nothing allocated */
    w = mc_wr_init(raw, 4);
    mc_wr_u32(&w, 1000000);
    assert_int_equal(mc_mp_decode_batch_exist_req(raw, sizeof raw, &a, &q, &why), -1);
    assert_string_equal(why, "array count exceeds the payload");
    assert_null(a.head);
    /* zero keys is a valid (empty) batch */
    w = mc_wr_init(raw, 4);
    mc_wr_u32(&w, 0);
    assert_int_equal(mc_mp_decode_batch_exist_req(raw, 4, &a, &q, &why), 0);
    assert_int_equal(q.n_keys, 0);
    /* replicas over their limit */
    mc_mp_get_replicas_rep_t r;
    w = mc_wr_init(raw, 4);
    mc_wr_u32(&w, MC_MP_REPLICAS_MAX + 1);
    assert_int_equal(mc_mp_decode_get_replicas_rep(raw, sizeof raw, &a, &r, &why), -1);
    assert_string_equal(why, "too many replicas");
    /* the encoder refuses too many replicas */
    mc_replica_t *reps = calloc(MC_MP_REPLICAS_MAX + 1, sizeof *reps);
    mc_mp_buf_t b = {0};
    mc_mp_get_replicas_rep_t rin = {.reps = reps, .n_reps = MC_MP_REPLICAS_MAX + 1};
    assert_int_equal(mc_mp_encode_get_replicas_rep(&b, 1, 0, &rin), -EINVAL);
    rin.n_reps = MC_MP_REPLICAS_MAX; /* the limit itself is fine */
    assert_int_equal(mc_mp_encode_get_replicas_rep(&b, 1, 0, &rin), 0);
    size_t len;
    const uint8_t *p = frame_payload(&b, MC_MP_GET_REPLICAS | MC_MP_REPLY, 1, 0, &len);
    assert_int_equal(mc_mp_decode_get_replicas_rep(p, len, &a, &r, &why), 0);
    assert_int_equal(r.n_reps, MC_MP_REPLICAS_MAX);
    free(reps);
    mc_mp_buf_free(&b);
    mc_mp_arena_free(&a);
}

static void test_rcfg_flags(void **state)
{
    mc_mp_put_start_req_t q = {.key = "k", .size = 10}, out;
    q.cfg.replica_num = 1;
    q.cfg.soft_pin_action = 3; /* no such action */
    mc_mp_buf_t b = {0};
    mc_mp_arena_t a = {0};
    const char *why = NULL;
    size_t len;
    assert_int_equal(mc_mp_encode_put_start_req(&b, 1, &q), 0);
    const uint8_t *p = frame_payload(&b, MC_MP_PUT_START, 1, 0, &len);
    assert_int_equal(mc_mp_decode_put_start_req(p, len, &a, &out, &why), -1);
    assert_string_equal(why, "bad replicate config flag");
    mc_mp_buf_free(&b);
    mc_mp_arena_free(&a);
}

/* ---------------------------------------------------------------- header */

static void test_header(void **state)
{
    mc_mp_hdr_t h = {MC_MP_MAGIC, MC_MP_VERSION, MC_MP_PING, 0, 42, 0, 16, 0x1122334455667788ull},
                g;
    uint8_t raw[MC_MP_HDR_LEN];
    const char *why = NULL;
    mc_mp_hdr_encode(&h, raw);
    assert_int_equal(raw[0], 'M');
    assert_int_equal(raw[3], 'R');
    assert_int_equal(mc_mp_hdr_decode(raw, sizeof raw, &g, &why), 0);
    assert_int_equal(g.req_id, 42);
    assert_int_equal(g.length, 16);
    assert_int_equal(g.view, 0x1122334455667788ull); /* the leader view round-trips */
    assert_int_equal(raw[20], 0x88);                 /* little-endian at offset 20 */
    assert_int_equal(mc_mp_hdr_decode(raw, MC_MP_HDR_LEN - 1, &g, &why), -1);
    assert_string_equal(why, "truncated header");

    struct {
        mc_mp_hdr_t h;
        const char *why;
    } bad[] = {
        {{0x12345678, MC_MP_VERSION, MC_MP_PING, 0, 1, 0, 0, 0}, "bad magic"},
        {{MC_MP_MAGIC, 1, MC_MP_PING, 0, 1, 0, 0, 0}, "unsupported protocol version"},
        {{MC_MP_MAGIC, MC_MP_VERSION, 0x7f, 0, 1, 0, 0, 0}, "unknown method"},
        {{MC_MP_MAGIC, MC_MP_VERSION, 0, 0, 1, 0, 0, 0}, "unknown method"},
        {{MC_MP_MAGIC, MC_MP_VERSION, MC_MP_PING, 1, 1, 0, 0, 0}, "unknown flags"},
        {{MC_MP_MAGIC, MC_MP_VERSION, MC_MP_PING, 0, 1, -1, 0, 0}, "nonzero status in a request"},
        {{MC_MP_MAGIC, MC_MP_VERSION, MC_MP_PING, 0, 1, 0, MC_MP_FRAME_MAX + 1, 0},
         "frame longer than 64 MiB"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mc_mp_hdr_encode(&bad[i].h, raw);
        assert_int_equal(mc_mp_hdr_decode(raw, sizeof raw, &g, &why), -1);
        assert_string_equal(why, bad[i].why);
    }
    /* a reply may carry a status; the frame limit itself is fine */
    h.method = MC_MP_PING | MC_MP_REPLY;
    h.status = MC_ERR_CLIENT_NOT_FOUND;
    h.length = MC_MP_FRAME_MAX;
    mc_mp_hdr_encode(&h, raw);
    assert_int_equal(mc_mp_hdr_decode(raw, sizeof raw, &g, &why), 0);
    assert_int_equal(g.status, MC_ERR_CLIENT_NOT_FOUND);
    assert_string_equal(mc_mp_method_name(MC_MP_BATCH_EXIST), "BATCH_EXIST");
    assert_null(mc_mp_method_name(0x7f));
}

/* ---------------------------------------------------------------- garbage */

static void test_garbage(void **state)
{
    static const unsigned methods[] = {
#define M(N, id, l, rq, rp) id, id | MC_MP_REPLY,
        MC_MP_METHODS(M)
#undef M
    };
    mc_mp_arena_t a = {0};
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = rnd() % 200;
        uint8_t *p = malloc(len ? len : 1);
        for (size_t i = 0; i < len; i++)
            p[i] = (uint8_t)(rnd() % 7 == 0 ? 0xff : rnd() % 8);
        const char *why = NULL;
        unsigned m = methods[rnd() % (sizeof methods / sizeof methods[0])];
        if (mc_mp_check_payload(m, p, len, &a, &why)) assert_non_null(why);
        mc_mp_hdr_t h;
        (void)mc_mp_hdr_decode(p, len, &h, &why);
        free(p);
        mc_mp_arena_reset(&a);
    }
    mc_mp_arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_all), cmocka_unit_test(test_pipelined_frames),
        cmocka_unit_test(test_string_limits),  cmocka_unit_test(test_fixed_field_limits),
        cmocka_unit_test(test_count_limits),   cmocka_unit_test(test_rcfg_flags),
        cmocka_unit_test(test_header),         cmocka_unit_test(test_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
