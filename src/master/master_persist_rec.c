/* master_persist_rec.c: encoder and decoder of the persistence records
 * (master_persist_rec.h). Bodies are written with the base cursor codec; the
 * decoder checks the frame's length bound and checksum before it looks at the
 * body, then every field (type, key length and bytes, flags, replica count,
 * no trailing bytes), so a record either decodes whole or is refused. */
#include "master_persist_rec.h"

#include <string.h>
#include <xxhash.h>

#include "base_codec.h"

static const uint8_t file_magic[8] = {'M', 'C', 'M', 'P', 'E', 'R', 'S', '1'};

static int key_ok(const char *key, size_t *len)
{
    if (!key) return 0;
    size_t n = strnlen(key, MC_PREC_KEY_MAX + 1);
    *len = n;
    return n > 0 && n <= MC_PREC_KEY_MAX;
}

size_t mc_prec_encode(const mc_prec_t *r, uint8_t *buf, size_t cap)
{
    if (cap < MC_PREC_HDR) return 0;
    mc_wr_t w = mc_wr_init(buf + MC_PREC_HDR, cap - MC_PREC_HDR);
    size_t klen = 0;
    mc_wr_u8(&w, (uint8_t)r->type);
    switch (r->type) {
    case MC_PREC_PUT:
        if (!key_ok(r->key, &klen) || r->size == 0 || r->nrep == 0 || r->nrep > MC_PREC_MAX_REPS)
            return 0;
        mc_wr_u32(&w, (uint32_t)klen);
        mc_wr_bytes(&w, r->key, klen);
        mc_wr_u64(&w, r->size);
        mc_wr_u64(&w, r->version);
        mc_wr_u8(&w, (uint8_t)((r->soft_pin ? 1 : 0) | (r->hard_pin ? 2 : 0)));
        mc_wr_u64(&w, r->soft_pin_ttl_ms);
        mc_wr_u64(&w, r->soft_pin_deadline_ms);
        mc_wr_u32(&w, r->nrep);
        for (uint32_t i = 0; i < r->nrep; i++) {
            if (r->rep[i].size == 0) return 0;
            mc_wr_u64(&w, r->rep[i].seg.hi);
            mc_wr_u64(&w, r->rep[i].seg.lo);
            mc_wr_u64(&w, r->rep[i].addr);
            mc_wr_u64(&w, r->rep[i].size);
        }
        break;
    case MC_PREC_REMOVE:
        if (!key_ok(r->key, &klen)) return 0;
        mc_wr_u32(&w, (uint32_t)klen);
        mc_wr_bytes(&w, r->key, klen);
        mc_wr_u64(&w, r->version);
        break;
    case MC_PREC_UNMOUNT:
        mc_wr_u64(&w, r->segment.hi);
        mc_wr_u64(&w, r->segment.lo);
        break;
    case MC_PREC_END:
        mc_wr_u64(&w, r->count);
        break;
    case MC_PREC_PING:
        mc_wr_u64(&w, r->version);
        mc_wr_u64(&w, r->ping_ms);
        break;
    default:
        return 0;
    }
    if (w.err) return 0;
    size_t body = (size_t)(w.p - (buf + MC_PREC_HDR));
    if (body > MC_PREC_MAX_BODY) return 0;
    mc_wr_t h = mc_wr_init(buf, MC_PREC_HDR);
    mc_wr_u32(&h, (uint32_t)body);
    mc_wr_u64(&h, XXH3_64bits(buf + MC_PREC_HDR, body));
    return MC_PREC_HDR + body;
}

/* Reads a key (u32 length, bytes without NUL) into out->keybuf. */
static int rd_key(mc_rd_t *rd, mc_prec_t *out)
{
    uint32_t n = mc_rd_u32(rd);
    if (rd->err || n == 0 || n > MC_PREC_KEY_MAX || mc_rd_left(rd) < n) return -1;
    mc_rd_bytes(rd, out->keybuf, n);
    out->keybuf[n] = '\0';
    if (memchr(out->keybuf, '\0', n)) return -1;
    out->key = out->keybuf;
    return 0;
}

int mc_prec_decode(const uint8_t *buf, size_t len, mc_prec_t *out, size_t *used, const char **why)
{
    *why = "";
    *used = 0;
    if (len < MC_PREC_HDR) return MC_PREC_SHORT;
    mc_rd_t h = mc_rd_init(buf, MC_PREC_HDR);
    uint32_t body = mc_rd_u32(&h);
    uint64_t sum = mc_rd_u64(&h);
    if (body == 0 || body > MC_PREC_MAX_BODY) {
        *why = "record length out of bounds";
        return MC_PREC_BAD;
    }
    if (len - MC_PREC_HDR < body) return MC_PREC_SHORT;
    const uint8_t *b = buf + MC_PREC_HDR;
    if (XXH3_64bits(b, body) != sum) {
        *why = "checksum mismatch";
        return MC_PREC_BAD;
    }
    memset(out, 0, offsetof(mc_prec_t, keybuf));
    out->keybuf[0] = '\0';
    mc_rd_t rd = mc_rd_init(b, body);
    out->type = mc_rd_u8(&rd);
    switch (out->type) {
    case MC_PREC_PUT: {
        if (rd_key(&rd, out)) goto bad;
        out->size = mc_rd_u64(&rd);
        out->version = mc_rd_u64(&rd);
        uint8_t fl = mc_rd_u8(&rd);
        if (fl & ~3u) goto bad;
        out->soft_pin = fl & 1;
        out->hard_pin = (fl >> 1) & 1;
        out->soft_pin_ttl_ms = mc_rd_u64(&rd);
        out->soft_pin_deadline_ms = mc_rd_u64(&rd);
        out->nrep = mc_rd_u32(&rd);
        if (rd.err || out->size == 0 || out->nrep == 0 || out->nrep > MC_PREC_MAX_REPS) goto bad;
        for (uint32_t i = 0; i < out->nrep; i++) {
            out->rep[i].seg.hi = mc_rd_u64(&rd);
            out->rep[i].seg.lo = mc_rd_u64(&rd);
            out->rep[i].addr = mc_rd_u64(&rd);
            out->rep[i].size = mc_rd_u64(&rd);
            if (out->rep[i].size == 0) goto bad;
        }
        break;
    }
    case MC_PREC_REMOVE:
        if (rd_key(&rd, out)) goto bad;
        out->version = mc_rd_u64(&rd);
        break;
    case MC_PREC_UNMOUNT:
        out->segment.hi = mc_rd_u64(&rd);
        out->segment.lo = mc_rd_u64(&rd);
        break;
    case MC_PREC_END:
        out->count = mc_rd_u64(&rd);
        break;
    case MC_PREC_PING:
        out->version = mc_rd_u64(&rd);
        out->ping_ms = mc_rd_u64(&rd);
        break;
    default:
        *why = "unknown record type";
        return MC_PREC_BAD;
    }
    if (rd.err || mc_rd_left(&rd) != 0) goto bad;
    *used = MC_PREC_HDR + body;
    return MC_PREC_OK;
bad:
    *why = "malformed record body";
    return MC_PREC_BAD;
}

void mc_prec_file_header(uint8_t out[MC_PREC_FILE_HDR], int kind, uint64_t seq, uint64_t version)
{
    mc_wr_t w = mc_wr_init(out, MC_PREC_FILE_HDR);
    mc_wr_bytes(&w, file_magic, sizeof file_magic);
    mc_wr_u32(&w, (uint32_t)kind);
    mc_wr_u32(&w, 1);
    mc_wr_u64(&w, seq);
    mc_wr_u64(&w, version);
    mc_wr_u64(&w, XXH3_64bits(out, 32));
}

int mc_prec_file_check(const uint8_t *buf, size_t len, int kind, uint64_t *seq, uint64_t *version)
{
    if (len < MC_PREC_FILE_HDR || memcmp(buf, file_magic, sizeof file_magic) != 0) return -1;
    mc_rd_t r = mc_rd_init(buf + 8, MC_PREC_FILE_HDR - 8);
    uint32_t k = mc_rd_u32(&r), fmt = mc_rd_u32(&r);
    uint64_t s = mc_rd_u64(&r), v = mc_rd_u64(&r), sum = mc_rd_u64(&r);
    if (r.err || k != (uint32_t)kind || fmt != 1 || sum != XXH3_64bits(buf, 32)) return -1;
    *seq = s;
    *version = v;
    return 0;
}
