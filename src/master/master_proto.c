/* master_proto.c: encoders and decoders of the master RPC. The frame header
 * is written by hand; every message codec is generated from the X-macro
 * declarations of master_proto.h by expanding each field kind into a call of
 * one of the kind codecs below. Writers append to a growable buffer; readers
 * use the bounds-checked cursor of base_codec.h, check every length and count
 * against its limit and against the bytes left before allocating, and keep
 * the first reason of failure. Layout: docs/protocol.md, "Master RPC". */
#include "master_proto.h"

#include <errno.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- header */

void mc_mp_hdr_encode(const mc_mp_hdr_t *h, uint8_t out[MC_MP_HDR_LEN])
{
    mc_wr_t w = mc_wr_init(out, MC_MP_HDR_LEN);
    mc_wr_u32(&w, h->magic);
    mc_wr_u8(&w, h->version);
    mc_wr_u8(&w, h->method);
    mc_wr_u16(&w, h->flags);
    mc_wr_u32(&w, h->req_id);
    mc_wr_u32(&w, (uint32_t)h->status);
    mc_wr_u32(&w, h->length);
    mc_wr_u64(&w, h->view);
}

const char *mc_mp_method_name(unsigned method)
{
    switch (method) {
#define MC__MP_NAME(N, id, l, rq, rp)                                                              \
    case id:                                                                                       \
        return #N;
        MC_MP_METHODS(MC__MP_NAME)
#undef MC__MP_NAME
    default:
        return NULL;
    }
}

int mc_mp_hdr_decode(const uint8_t *buf, size_t len, mc_mp_hdr_t *h, const char **why)
{
    mc_rd_t r = mc_rd_init(buf, len);
    h->magic = mc_rd_u32(&r);
    h->version = mc_rd_u8(&r);
    h->method = mc_rd_u8(&r);
    h->flags = mc_rd_u16(&r);
    h->req_id = mc_rd_u32(&r);
    h->status = (int32_t)mc_rd_u32(&r);
    h->length = mc_rd_u32(&r);
    h->view = mc_rd_u64(&r);
    if (r.err) {
        *why = "truncated header";
        return -1;
    }
    if (h->magic != MC_MP_MAGIC) {
        *why = "bad magic";
        return -1;
    }
    if (h->version != MC_MP_VERSION) {
        *why = "unsupported protocol version";
        return -1;
    }
    if (!mc_mp_method_name(h->method & ~MC_MP_REPLY)) {
        *why = "unknown method";
        return -1;
    }
    if (h->flags != 0) {
        *why = "unknown flags";
        return -1;
    }
    if (!(h->method & MC_MP_REPLY) && h->status != 0) {
        *why = "nonzero status in a request";
        return -1;
    }
    if (h->length > MC_MP_FRAME_MAX) {
        *why = "frame longer than 64 MiB";
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- buffer */

void mc_mp_buf_free(mc_mp_buf_t *b)
{
    uint64_t view = b->view;
    free(b->p);
    memset(b, 0, sizeof *b);
    b->view = view;
}

/* Reserves n bytes at the end of b; NULL (and b->err = -ENOMEM) on failure. */
static uint8_t *buf_reserve(mc_mp_buf_t *b, size_t n)
{
    if (b->err) return NULL;
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) goto fail;
            cap *= 2;
        }
        uint8_t *p = realloc(b->p, cap);
        if (!p) goto fail;
        b->p = p;
        b->cap = cap;
    }
    uint8_t *p = b->p + b->len;
    b->len += n;
    return p;
fail:
    b->err = -ENOMEM;
    return NULL;
}

static void put_bytes(mc_mp_buf_t *b, const void *src, size_t n)
{
    uint8_t *p = buf_reserve(b, n);
    if (p && n) memcpy(p, src, n);
}

#define MC__MP_PUT_INT(bits)                                                                       \
    static void put_u##bits(mc_mp_buf_t *b, uint##bits##_t v)                                      \
    {                                                                                              \
        uint8_t *p = buf_reserve(b, bits / 8);                                                     \
        if (!p) return;                                                                            \
        mc_wr_t w = mc_wr_init(p, bits / 8);                                                       \
        mc_wr_u##bits(&w, v);                                                                      \
    }
MC__MP_PUT_INT(8)
MC__MP_PUT_INT(32)
MC__MP_PUT_INT(64)
#undef MC__MP_PUT_INT

static void put_fail(mc_mp_buf_t *b, int err)
{
    if (!b->err) b->err = err;
}

static void put_count(mc_mp_buf_t *b, size_t n, size_t max)
{
    if (n > max) put_fail(b, -EINVAL);
    put_u32(b, (uint32_t)n);
}

static void put_strn(mc_mp_buf_t *b, const char *s, size_t n)
{
    if (n > MC_MP_STR_MAX) put_fail(b, -EINVAL);
    put_u32(b, (uint32_t)n);
    put_bytes(b, s, n);
}

/* A C string (NULL encodes as ""). */
static void put_str(mc_mp_buf_t *b, const char *s)
{
    put_strn(b, s ? s : "", s ? strlen(s) : 0);
}

/* A fixed char array (its NUL terminator is not required). */
static void put_fstr(mc_mp_buf_t *b, const char *s, size_t cap)
{
    put_strn(b, s, strnlen(s, cap - 1));
}

/* ---------------------------------------------------------------- arena */

#define MC__MP_ARENA_KEEP 65536 /* largest chunk a reset keeps */

struct mc_mp_chunk {
    mc_mp_chunk_t *next;
    size_t cap, used;
    alignas(16) uint8_t data[];
};

void *mc_mp_arena_alloc(mc_mp_arena_t *a, size_t n)
{
    if (n > SIZE_MAX - 64) return NULL;
    n = (n + 15) & ~(size_t)15;
    mc_mp_chunk_t *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = c ? c->cap * 2 : 4096;
        if (cap > (1u << 24)) cap = 1u << 24;
        if (cap < n) cap = n;
        c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

void mc_mp_arena_reset(mc_mp_arena_t *a)
{
    if (!a->head) return;
    mc_mp_chunk_t *c = a->head->next;
    while (c) {
        mc_mp_chunk_t *next = c->next;
        free(c);
        c = next;
    }
    a->head->next = NULL;
    a->head->used = 0;
    if (a->head->cap > MC__MP_ARENA_KEEP) { /* a big message's chunk is not kept */
        free(a->head);
        a->head = NULL;
    }
}

void mc_mp_arena_free(mc_mp_arena_t *a)
{
    mc_mp_arena_reset(a);
    free(a->head);
    a->head = NULL;
}

/* ---------------------------------------------------------------- decoding */

typedef struct {
    mc_rd_t r;
    mc_mp_arena_t *a;
    const char *why; /* first failure */
} dec_t;

static void dec_fail(dec_t *d, const char *why)
{
    if (!d->why) d->why = why;
    d->r.err = 1;
}

static void *dec_alloc(dec_t *d, size_t n)
{
    void *p = mc_mp_arena_alloc(d->a, n);
    if (!p) dec_fail(d, "out of memory");
    return p;
}

/* Reads a u32 count, checks it against max and against the bytes left
 * (each element takes at least `min_wire` bytes). 0 on any failure. */
static size_t dec_count(dec_t *d, size_t max, size_t min_wire, const char *what)
{
    uint32_t n = mc_rd_u32(&d->r);
    if (d->r.err) return 0;
    if (n > max) {
        dec_fail(d, what);
        return 0;
    }
    if ((uint64_t)n * min_wire > mc_rd_left(&d->r)) {
        dec_fail(d, "array count exceeds the payload");
        return 0;
    }
    return n;
}

/* Reads a string of at most `max` bytes without NUL bytes; returns a pointer
 * to its bytes inside the input (not terminated) and its length. */
static const uint8_t *dec_strn(dec_t *d, size_t max, uint32_t *len)
{
    *len = mc_rd_u32(&d->r);
    if (d->r.err) return NULL;
    if (*len > max) {
        dec_fail(d, "string too long");
        return NULL;
    }
    if (mc_rd_left(&d->r) < *len) {
        dec_fail(d, "truncated string");
        return NULL;
    }
    const uint8_t *p = d->r.p;
    if (memchr(p, 0, *len)) {
        dec_fail(d, "NUL byte in a string");
        return NULL;
    }
    d->r.p += *len;
    return p;
}

static const char *dec_str(dec_t *d)
{
    uint32_t n;
    const uint8_t *p = dec_strn(d, MC_MP_STR_MAX, &n);
    if (!p) return "";
    char *s = dec_alloc(d, (size_t)n + 1);
    if (!s) return "";
    memcpy(s, p, n);
    return s;
}

/* Into a fixed array of `cap` bytes (at most cap - 1 characters). */
static void dec_fstr(dec_t *d, char *dst, size_t cap)
{
    uint32_t n;
    const uint8_t *p = dec_strn(d, cap - 1, &n);
    if (!p) {
        dst[0] = 0;
        return;
    }
    memcpy(dst, p, n);
    dst[n] = 0;
}

/* ---------------------------------------------------------------- kinds */

#define SEG_MIN_WIRE (16 + 4 + 8 + 8 + 4 + 4 + 4)
#define REP_MIN_WIRE (8 + 8 + 8 + 4 + 4 + 1)

static void enc_uuid(mc_mp_buf_t *b, mc_uuid_t u)
{
    put_u64(b, u.hi);
    put_u64(b, u.lo);
}
static mc_uuid_t dec_uuid(dec_t *d)
{
    mc_uuid_t u;
    u.hi = mc_rd_u64(&d->r);
    u.lo = mc_rd_u64(&d->r);
    return u;
}

static void enc_seg(mc_mp_buf_t *b, const mc_segment_t *s)
{
    enc_uuid(b, s->id);
    put_fstr(b, s->name, sizeof s->name);
    put_u64(b, s->base);
    put_u64(b, s->size);
    put_fstr(b, s->te_endpoint, sizeof s->te_endpoint);
    put_fstr(b, s->protocol, sizeof s->protocol);
    put_fstr(b, s->host_id, sizeof s->host_id);
}
static void dec_seg(dec_t *d, mc_segment_t *s)
{
    s->id = dec_uuid(d);
    dec_fstr(d, s->name, sizeof s->name);
    s->base = mc_rd_u64(&d->r);
    s->size = mc_rd_u64(&d->r);
    dec_fstr(d, s->te_endpoint, sizeof s->te_endpoint);
    dec_fstr(d, s->protocol, sizeof s->protocol);
    dec_fstr(d, s->host_id, sizeof s->host_id);
}

static void enc_segs(mc_mp_buf_t *b, const mc_segment_t *s, size_t n)
{
    put_count(b, n, MC_MP_SEGMENTS_MAX);
    for (size_t i = 0; i < n; i++)
        enc_seg(b, &s[i]);
}
static const mc_segment_t *dec_segs(dec_t *d, size_t *n)
{
    *n = dec_count(d, MC_MP_SEGMENTS_MAX, SEG_MIN_WIRE, "too many segments");
    if (!*n) return NULL;
    mc_segment_t *s = dec_alloc(d, *n * sizeof *s);
    if (!s) return *n = 0, NULL;
    for (size_t i = 0; i < *n && !d->r.err; i++)
        dec_seg(d, &s[i]);
    return s;
}

static void enc_rcfg(mc_mp_buf_t *b, const mc_replicate_config_t *c)
{
    put_u32(b, c->replica_num);
    put_u8(b, c->soft_pin_action);
    put_u8(b, c->has_soft_pin_ttl ? 1 : 0);
    put_u64(b, c->soft_pin_ttl_ms);
    put_u8(b, c->with_hard_pin ? 1 : 0);
    put_count(b, c->npreferred, MC_MP_PREFERRED_MAX);
    for (size_t i = 0; i < c->npreferred; i++)
        put_str(b, c->preferred_segments[i]);
    put_u8(b, c->prefer_alloc_in_same_node ? 1 : 0);
    put_u8(b, c->host_id ? 1 : 0);
    if (c->host_id) put_str(b, c->host_id);
}
static void dec_rcfg(dec_t *d, mc_replicate_config_t *c)
{
    memset(c, 0, sizeof *c);
    c->replica_num = mc_rd_u32(&d->r);
    c->soft_pin_action = mc_rd_u8(&d->r);
    c->has_soft_pin_ttl = mc_rd_u8(&d->r);
    c->soft_pin_ttl_ms = mc_rd_u64(&d->r);
    c->with_hard_pin = mc_rd_u8(&d->r);
    c->npreferred = dec_count(d, MC_MP_PREFERRED_MAX, 4, "too many preferred segments");
    if (c->npreferred) {
        const char **v = dec_alloc(d, c->npreferred * sizeof *v);
        if (!v) {
            c->npreferred = 0;
            return;
        }
        for (size_t i = 0; i < c->npreferred; i++)
            v[i] = dec_str(d);
        c->preferred_segments = v;
    }
    c->prefer_alloc_in_same_node = mc_rd_u8(&d->r);
    uint8_t has_host = mc_rd_u8(&d->r);
    if (has_host) c->host_id = dec_str(d);
    if (d->r.err) return;
    if (c->soft_pin_action > MC_SOFT_PIN_DISABLE || c->has_soft_pin_ttl > 1 ||
        c->with_hard_pin > 1 || c->prefer_alloc_in_same_node > 1 || has_host > 1)
        dec_fail(d, "bad replicate config flag");
}

static void enc_rep(mc_mp_buf_t *b, const mc_replica_t *r)
{
    put_u64(b, r->id);
    put_u64(b, r->addr);
    put_u64(b, r->size);
    put_fstr(b, r->endpoint, sizeof r->endpoint);
    put_u32(b, (uint32_t)r->status);
    put_u8(b, (uint8_t)r->kind);
}
static void dec_rep(dec_t *d, mc_replica_t *r)
{
    r->id = mc_rd_u64(&d->r);
    r->addr = mc_rd_u64(&d->r);
    r->size = mc_rd_u64(&d->r);
    dec_fstr(d, r->endpoint, sizeof r->endpoint);
    r->status = (int32_t)mc_rd_u32(&d->r);
    r->kind = mc_rd_u8(&d->r);
    if (!d->r.err && r->kind != MC_REPLICA_MEMORY && r->kind != MC_REPLICA_LOCAL_DISK)
        dec_fail(d, "bad replica kind");
}

static void enc_reps(mc_mp_buf_t *b, const mc_replica_t *r, size_t n)
{
    put_count(b, n, MC_MP_REPLICAS_MAX);
    for (size_t i = 0; i < n; i++)
        enc_rep(b, &r[i]);
}
static mc_replica_t *dec_reps(dec_t *d, size_t *n)
{
    *n = dec_count(d, MC_MP_REPLICAS_MAX, REP_MIN_WIRE, "too many replicas");
    if (!*n) return NULL;
    mc_replica_t *r = dec_alloc(d, *n * sizeof *r);
    if (!r) return *n = 0, NULL;
    for (size_t i = 0; i < *n && !d->r.err; i++)
        dec_rep(d, &r[i]);
    return r;
}

static void enc_strs(mc_mp_buf_t *b, const char *const *s, size_t n)
{
    put_count(b, n, MC_MP_BATCH_MAX);
    for (size_t i = 0; i < n; i++)
        put_str(b, s[i]);
}
static const char *const *dec_strs(dec_t *d, size_t *n)
{
    *n = dec_count(d, MC_MP_BATCH_MAX, 4, "too many keys");
    if (!*n) return NULL;
    const char **v = dec_alloc(d, *n * sizeof *v);
    if (!v) return *n = 0, NULL;
    for (size_t i = 0; i < *n && !d->r.err; i++)
        v[i] = dec_str(d);
    return v;
}

static void enc_u64s(mc_mp_buf_t *b, const uint64_t *v, size_t n)
{
    put_count(b, n, MC_MP_BATCH_MAX);
    for (size_t i = 0; i < n; i++)
        put_u64(b, v[i]);
}
static const uint64_t *dec_u64s(dec_t *d, size_t *n)
{
    *n = dec_count(d, MC_MP_BATCH_MAX, 8, "too many values");
    if (!*n) return NULL;
    uint64_t *v = dec_alloc(d, *n * sizeof *v);
    if (!v) return *n = 0, NULL;
    for (size_t i = 0; i < *n; i++)
        v[i] = mc_rd_u64(&d->r);
    return v;
}

static void enc_i32s(mc_mp_buf_t *b, const int32_t *v, size_t n)
{
    put_count(b, n, MC_MP_BATCH_MAX);
    for (size_t i = 0; i < n; i++)
        put_u32(b, (uint32_t)v[i]);
}
static const int32_t *dec_i32s(dec_t *d, size_t *n)
{
    *n = dec_count(d, MC_MP_BATCH_MAX, 4, "too many values");
    if (!*n) return NULL;
    int32_t *v = dec_alloc(d, *n * sizeof *v);
    if (!v) return *n = 0, NULL;
    for (size_t i = 0; i < *n; i++)
        v[i] = (int32_t)mc_rd_u32(&d->r);
    return v;
}

static void enc_results(mc_mp_buf_t *b, const mc_mp_result_t *v, size_t n)
{
    put_count(b, n, MC_MP_BATCH_MAX);
    for (size_t i = 0; i < n; i++) {
        put_u32(b, (uint32_t)v[i].rc);
        enc_reps(b, v[i].reps, v[i].n);
    }
}
static const mc_mp_result_t *dec_results(dec_t *d, size_t *n)
{
    *n = dec_count(d, MC_MP_BATCH_MAX, 8, "too many results");
    if (!*n) return NULL;
    mc_mp_result_t *v = dec_alloc(d, *n * sizeof *v);
    if (!v) return *n = 0, NULL;
    for (size_t i = 0; i < *n && !d->r.err; i++) {
        v[i].rc = (int32_t)mc_rd_u32(&d->r);
        v[i].reps = dec_reps(d, &v[i].n);
    }
    return v;
}

/* ---------------------------------------------------------------- messages */

#define MC__MP_ENC_U8(n) put_u8(b, m->n);
#define MC__MP_ENC_U32(n) put_u32(b, m->n);
#define MC__MP_ENC_I32(n) put_u32(b, (uint32_t)m->n);
#define MC__MP_ENC_U64(n) put_u64(b, m->n);
#define MC__MP_ENC_I64(n) put_u64(b, (uint64_t)m->n);
#define MC__MP_ENC_UUID(n) enc_uuid(b, m->n);
#define MC__MP_ENC_B32(n) put_bytes(b, m->n, 32);
#define MC__MP_ENC_STR(n) put_str(b, m->n);
#define MC__MP_ENC_SEG(n) enc_seg(b, &m->n);
#define MC__MP_ENC_SEGS(n) enc_segs(b, m->n, m->n_##n);
#define MC__MP_ENC_RCFG(n) enc_rcfg(b, &m->n);
#define MC__MP_ENC_REPS(n) enc_reps(b, m->n, m->n_##n);
#define MC__MP_ENC_STRS(n) enc_strs(b, m->n, m->n_##n);
#define MC__MP_ENC_U64S(n) enc_u64s(b, m->n, m->n_##n);
#define MC__MP_ENC_I32S(n) enc_i32s(b, m->n, m->n_##n);
#define MC__MP_ENC_RESULTS(n) enc_results(b, m->n, m->n_##n);
#define MC__MP_ENC(kind, n) MC__MP_ENC_##kind(n)

#define MC__MP_DEC_U8(n) m->n = mc_rd_u8(&d->r);
#define MC__MP_DEC_U32(n) m->n = mc_rd_u32(&d->r);
#define MC__MP_DEC_I32(n) m->n = (int32_t)mc_rd_u32(&d->r);
#define MC__MP_DEC_U64(n) m->n = mc_rd_u64(&d->r);
#define MC__MP_DEC_I64(n) m->n = (int64_t)mc_rd_u64(&d->r);
#define MC__MP_DEC_UUID(n) m->n = dec_uuid(d);
#define MC__MP_DEC_B32(n) mc_rd_bytes(&d->r, m->n, 32);
#define MC__MP_DEC_STR(n) m->n = dec_str(d);
#define MC__MP_DEC_SEG(n) dec_seg(d, &m->n);
#define MC__MP_DEC_SEGS(n) m->n = dec_segs(d, &m->n_##n);
#define MC__MP_DEC_RCFG(n) dec_rcfg(d, &m->n);
#define MC__MP_DEC_REPS(n) m->n = dec_reps(d, &m->n_##n);
#define MC__MP_DEC_STRS(n) m->n = dec_strs(d, &m->n_##n);
#define MC__MP_DEC_U64S(n) m->n = dec_u64s(d, &m->n_##n);
#define MC__MP_DEC_I32S(n) m->n = dec_i32s(d, &m->n_##n);
#define MC__MP_DEC_RESULTS(n) m->n = dec_results(d, &m->n_##n);
#define MC__MP_DEC(kind, n) MC__MP_DEC_##kind(n)

/* Starts a frame: reserves the header; returns its offset. */
static size_t frame_begin(mc_mp_buf_t *b)
{
    size_t off = b->len;
    buf_reserve(b, MC_MP_HDR_LEN);
    return off;
}

/* Completes the frame started at off (or drops it on error). */
static int frame_end(mc_mp_buf_t *b, size_t off, uint8_t method, uint32_t req_id, int32_t status)
{
    int err = b->err;
    if (!err && b->len - off - MC_MP_HDR_LEN > MC_MP_FRAME_MAX) err = -EMSGSIZE;
    if (err) {
        if (b->len > off) b->len = off;
        b->err = 0;
        return err;
    }
    mc_mp_hdr_t h = {MC_MP_MAGIC,
                     MC_MP_VERSION,
                     method,
                     0,
                     req_id,
                     status,
                     (uint32_t)(b->len - off - MC_MP_HDR_LEN),
                     b->view};
    mc_mp_hdr_encode(&h, b->p + off);
    return 0;
}

int mc_mp_encode_status_rep(mc_mp_buf_t *b, uint8_t method, uint32_t req_id, int32_t status)
{
    size_t off = frame_begin(b);
    return frame_end(b, off, (uint8_t)(method | MC_MP_REPLY), req_id, status);
}

/* Finishes a decode: the first failure, else trailing bytes, else 0. */
static int dec_finish(dec_t *d, const char **why)
{
    if (d->r.err) {
        *why = d->why ? d->why : "truncated message";
        return -1;
    }
    if (d->r.p != d->r.end) {
        *why = "trailing bytes after the message";
        return -1;
    }
    return 0;
}

#define MC__MP_CODECS(N, id, l, rq, rp)                                                            \
    int mc_mp_encode_##l##_req(mc_mp_buf_t *b, uint32_t req_id, const mc_mp_##l##_req_t *m)        \
    {                                                                                              \
        size_t off = frame_begin(b);                                                               \
        rq(MC__MP_ENC)(void) m;                                                                    \
        return frame_end(b, off, id, req_id, 0);                                                   \
    }                                                                                              \
    int mc_mp_encode_##l##_rep(mc_mp_buf_t *b, uint32_t req_id, int32_t status,                    \
                               const mc_mp_##l##_rep_t *m)                                         \
    {                                                                                              \
        size_t off = frame_begin(b);                                                               \
        if (status == 0) {                                                                         \
            rp(MC__MP_ENC)(void) m;                                                                \
        }                                                                                          \
        return frame_end(b, off, id | MC_MP_REPLY, req_id, status);                                \
    }                                                                                              \
    int mc_mp_decode_##l##_req(const uint8_t *p, size_t len, mc_mp_arena_t *a,                     \
                               mc_mp_##l##_req_t *m, const char **why)                             \
    {                                                                                              \
        dec_t dd = {mc_rd_init(p, len), a, NULL}, *d = &dd;                                        \
        memset(m, 0, sizeof *m);                                                                   \
        rq(MC__MP_DEC)(void) d;                                                                    \
        return dec_finish(d, why);                                                                 \
    }                                                                                              \
    int mc_mp_decode_##l##_rep(const uint8_t *p, size_t len, mc_mp_arena_t *a,                     \
                               mc_mp_##l##_rep_t *m, const char **why)                             \
    {                                                                                              \
        dec_t dd = {mc_rd_init(p, len), a, NULL}, *d = &dd;                                        \
        memset(m, 0, sizeof *m);                                                                   \
        rp(MC__MP_DEC)(void) d;                                                                    \
        return dec_finish(d, why);                                                                 \
    }
MC_MP_METHODS(MC__MP_CODECS)
#undef MC__MP_CODECS

int mc_mp_check_payload(unsigned method, const uint8_t *p, size_t len, mc_mp_arena_t *a,
                        const char **why)
{
    union {
#define MC__MP_MEMBERS(N, id, l, rq, rp)                                                           \
    mc_mp_##l##_req_t l##_req;                                                                     \
    mc_mp_##l##_rep_t l##_rep;
        MC_MP_METHODS(MC__MP_MEMBERS)
#undef MC__MP_MEMBERS
    } u;
    switch (method) {
#define MC__MP_CHECK(N, id, l, rq, rp)                                                             \
    case id:                                                                                       \
        return mc_mp_decode_##l##_req(p, len, a, &u.l##_req, why);                                 \
    case id | MC_MP_REPLY:                                                                         \
        return mc_mp_decode_##l##_rep(p, len, a, &u.l##_rep, why);
        MC_MP_METHODS(MC__MP_CHECK)
#undef MC__MP_CHECK
    default:
        *why = "unknown method";
        return -1;
    }
}
