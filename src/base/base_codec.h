/* Bounds-checked little-endian cursor codec for our binary wire formats.
 * A reader never reads past its end: the first short read sets `err` and every
 * later read returns zeros, so a parser checks `err` once at the end.
 * Not thread-safe per cursor; cursors are cheap stack values. */
#ifndef MC_BASE_CODEC_H
#define MC_BASE_CODEC_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
    int err;
} mc_rd_t;

typedef struct {
    uint8_t *p;
    uint8_t *end;
    int err;
} mc_wr_t;

static inline mc_rd_t mc_rd_init(const void *buf, size_t len)
{
    mc_rd_t r = {(const uint8_t *)buf, (const uint8_t *)buf + len, 0};
    return r;
}
static inline mc_wr_t mc_wr_init(void *buf, size_t len)
{
    mc_wr_t w = {(uint8_t *)buf, (uint8_t *)buf + len, 0};
    return w;
}
static inline size_t mc_rd_left(const mc_rd_t *r)
{
    return r->err ? 0 : (size_t)(r->end - r->p);
}

/* Copies n bytes out; on a short buffer sets err and zero-fills dst. */
static inline void mc_rd_bytes(mc_rd_t *r, void *dst, size_t n)
{
    if (r->err || (size_t)(r->end - r->p) < n) {
        r->err = 1;
        memset(dst, 0, n);
        return;
    }
    memcpy(dst, r->p, n);
    r->p += n;
}
static inline void mc_wr_bytes(mc_wr_t *w, const void *src, size_t n)
{
    if (w->err || (size_t)(w->end - w->p) < n) {
        w->err = 1;
        return;
    }
    memcpy(w->p, src, n);
    w->p += n;
}

#define MC__CODEC_INT(bits)                                                                        \
    static inline uint##bits##_t mc_rd_u##bits(mc_rd_t *r)                                         \
    {                                                                                              \
        uint8_t b[bits / 8];                                                                       \
        mc_rd_bytes(r, b, sizeof b);                                                               \
        uint##bits##_t v = 0;                                                                      \
        for (size_t i = 0; i < sizeof b; i++) v |= (uint##bits##_t)b[i] << (8 * i);                \
        return v;                                                                                  \
    }                                                                                              \
    static inline void mc_wr_u##bits(mc_wr_t *w, uint##bits##_t v)                                 \
    {                                                                                              \
        uint8_t b[bits / 8];                                                                       \
        for (size_t i = 0; i < sizeof b; i++) b[i] = (uint8_t)(v >> (8 * i));                      \
        mc_wr_bytes(w, b, sizeof b);                                                               \
    }
MC__CODEC_INT(8)
MC__CODEC_INT(16)
MC__CODEC_INT(32)
MC__CODEC_INT(64)
#undef MC__CODEC_INT

#endif
