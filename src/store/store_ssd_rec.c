/* store_ssd_rec.c: the bytes of the SSD tier: the records of the bucket files
 * and the frames of the staging protocol (formats in store_ssd.h). Pure
 * functions; the decoders read bytes from disk or from the network, check
 * every length against the buffer and the limits before using it, and have
 * a fuzz target (fuzz_store_ssd). */
#include <string.h>

#include <xxhash.h>

#include "base_codec.h"
#include "store_ssd.h"

#define REC_MAGIC 0x5253434Du /* "MCSR" */
#define REC_VERSION 2

uint64_t mc_ssd_rec_len(size_t key_len, uint64_t data_len)
{
    uint64_t n = MC_SSD_REC_HDR + key_len + data_len;
    return (n + MC_SSD_REC_ALIGN - 1) / MC_SSD_REC_ALIGN * MC_SSD_REC_ALIGN;
}

void mc_ssd_rec_encode(const mc_ssd_rec_t *r, uint8_t out[MC_SSD_REC_HDR])
{
    mc_wr_t w = mc_wr_init(out, MC_SSD_REC_HDR);
    mc_wr_u32(&w, REC_MAGIC);
    mc_wr_u16(&w, REC_VERSION);
    mc_wr_u16(&w, MC_SSD_REC_HDR);
    mc_wr_u32(&w, r->key_len);
    mc_wr_u32(&w, 0);
    mc_wr_u64(&w, r->data_len);
    mc_wr_u64(&w, r->stamp);
    mc_wr_u64(&w, r->data_sum);
    mc_wr_u64(&w, r->key_sum);
    mc_wr_u64(&w, r->rec_len);
    mc_wr_u64(&w, XXH3_64bits(out, 56));
}

int mc_ssd_rec_decode(const uint8_t *buf, size_t len, mc_ssd_rec_t *r, const char **why)
{
    if (len < MC_SSD_REC_HDR) return *why = "short header", -1;
    mc_rd_t rd = mc_rd_init(buf, MC_SSD_REC_HDR);
    uint32_t magic = mc_rd_u32(&rd);
    uint16_t ver = mc_rd_u16(&rd), hl = mc_rd_u16(&rd);
    r->key_len = mc_rd_u32(&rd);
    uint32_t zero = mc_rd_u32(&rd);
    r->data_len = mc_rd_u64(&rd);
    r->stamp = mc_rd_u64(&rd);
    r->data_sum = mc_rd_u64(&rd);
    r->key_sum = mc_rd_u64(&rd);
    r->rec_len = mc_rd_u64(&rd);
    uint64_t sum = mc_rd_u64(&rd);
    if (magic != REC_MAGIC) return *why = "bad magic", -1;
    if (sum != XXH3_64bits(buf, 56)) return *why = "header checksum mismatch", -1;
    if ((ver != 1 && ver != REC_VERSION) || hl != MC_SSD_REC_HDR || zero)
        return *why = "unknown version", -1;
    if (r->key_len == 0 || r->key_len > MC_SSD_KEY_MAX) return *why = "bad key length", -1;
    if (r->data_len == 0 || r->data_len > MC_SSD_DATA_MAX) return *why = "bad value length", -1;
    uint64_t want = ver == 1 ? MC_SSD_ALIGN_UP(MC_SSD_REC_HDR + r->key_len + r->data_len)
                             : mc_ssd_rec_len(r->key_len, r->data_len);
    if (r->rec_len != want) return *why = "bad record length", -1;
    return 0;
}

int mc_ssd_rec_verify(const uint8_t *buf, size_t len, mc_ssd_rec_t *r, const char **why)
{
    if (mc_ssd_rec_decode(buf, len, r, why)) return -1;
    if (len < r->rec_len) return *why = "torn record", -1;
    if (XXH3_64bits(buf + MC_SSD_REC_HDR, r->key_len) != r->key_sum)
        return *why = "key checksum mismatch", -1;
    if (XXH3_64bits(buf + MC_SSD_REC_HDR + r->key_len, r->data_len) != r->data_sum)
        return *why = "value checksum mismatch", -1;
    return 0;
}

/* ---- version 3: journal entries, values in whole blocks ---- */

#define JENT_MAGIC 0x4A53434Du /* "MCSJ" */
#define JENT_VERSION 3

uint64_t mc_ssd_jent_len(size_t key_len)
{
    uint64_t n = MC_SSD_JENT_HDR + key_len;
    return (n + MC_SSD_REC_ALIGN - 1) / MC_SSD_REC_ALIGN * MC_SSD_REC_ALIGN;
}

uint64_t mc_ssd_val_off(uint64_t tail, uint64_t size)
{
    if (size >= MC_SSD_ALIGN) return MC_SSD_ALIGN_UP(tail);
    uint64_t off = (tail + MC_SSD_REC_ALIGN - 1) / MC_SSD_REC_ALIGN * MC_SSD_REC_ALIGN;
    if (off / MC_SSD_ALIGN != (off + size - 1) / MC_SSD_ALIGN) off = MC_SSD_ALIGN_UP(off);
    return off;
}

void mc_ssd_jent_encode(const mc_ssd_jent_t *e, uint8_t out[MC_SSD_JENT_HDR])
{
    mc_wr_t w = mc_wr_init(out, MC_SSD_JENT_HDR);
    mc_wr_u32(&w, JENT_MAGIC);
    mc_wr_u16(&w, JENT_VERSION);
    mc_wr_u16(&w, MC_SSD_JENT_HDR);
    mc_wr_u32(&w, e->key_len);
    mc_wr_u32(&w, 0);
    mc_wr_u64(&w, e->off);
    mc_wr_u64(&w, e->data_len);
    mc_wr_u64(&w, e->stamp);
    mc_wr_u64(&w, e->data_sum);
    mc_wr_u64(&w, e->key_sum);
    mc_wr_u64(&w, XXH3_64bits(out, 56));
}

int mc_ssd_jent_decode(const uint8_t *buf, size_t len, mc_ssd_jent_t *e, const char **why)
{
    if (len < MC_SSD_JENT_HDR) return *why = "short entry", -1;
    mc_rd_t rd = mc_rd_init(buf, MC_SSD_JENT_HDR);
    uint32_t magic = mc_rd_u32(&rd);
    uint16_t ver = mc_rd_u16(&rd), hl = mc_rd_u16(&rd);
    e->key_len = mc_rd_u32(&rd);
    uint32_t zero = mc_rd_u32(&rd);
    e->off = mc_rd_u64(&rd);
    e->data_len = mc_rd_u64(&rd);
    e->stamp = mc_rd_u64(&rd);
    e->data_sum = mc_rd_u64(&rd);
    e->key_sum = mc_rd_u64(&rd);
    uint64_t sum = mc_rd_u64(&rd);
    if (magic != JENT_MAGIC) return *why = "bad magic", -1;
    if (sum != XXH3_64bits(buf, 56)) return *why = "entry checksum mismatch", -1;
    if (ver != JENT_VERSION || hl != MC_SSD_JENT_HDR || zero) return *why = "unknown version", -1;
    if (e->key_len == 0 || e->key_len > MC_SSD_KEY_MAX) return *why = "bad key length", -1;
    if (e->data_len == 0 || e->data_len > MC_SSD_DATA_MAX || e->off > MC_SSD_DATA_MAX)
        return *why = "bad value length", -1;
    if (e->off != mc_ssd_val_off(e->off, e->data_len)) return *why = "misplaced value", -1;
    if (len < mc_ssd_jent_len(e->key_len)) return *why = "torn entry", -1;
    if (XXH3_64bits(buf + MC_SSD_JENT_HDR, e->key_len) != e->key_sum)
        return *why = "key checksum mismatch", -1;
    return 0;
}

/* ---- staging protocol ---- */

void mc_ssd_hdr_encode(const mc_ssd_hdr_t *h, uint8_t out[MC_SSD_SRV_HDR])
{
    mc_wr_t w = mc_wr_init(out, MC_SSD_SRV_HDR);
    mc_wr_u32(&w, MC_SSD_SRV_MAGIC);
    mc_wr_u8(&w, 1);
    mc_wr_u8(&w, h->op);
    mc_wr_u16(&w, 0);
    mc_wr_u32(&w, (uint32_t)h->status);
    mc_wr_u32(&w, h->len);
}

int mc_ssd_hdr_decode(const uint8_t *buf, size_t len, int reply, mc_ssd_hdr_t *h, const char **why)
{
    if (len < MC_SSD_SRV_HDR) return *why = "truncated header", -1;
    mc_rd_t r = mc_rd_init(buf, MC_SSD_SRV_HDR);
    uint32_t magic = mc_rd_u32(&r);
    uint8_t ver = mc_rd_u8(&r);
    h->op = mc_rd_u8(&r);
    uint16_t flags = mc_rd_u16(&r);
    h->status = (int32_t)mc_rd_u32(&r);
    h->len = mc_rd_u32(&r);
    if (magic != MC_SSD_SRV_MAGIC) return *why = "bad magic", -1;
    if (ver != 1) return *why = "bad version", -1;
    if (flags) return *why = "bad flags", -1;
    if (((h->op & 0x80) != 0) != (reply != 0)) return *why = "wrong direction", -1;
    uint8_t op = h->op & 0x7f;
    if (op != MC_SSD_OP_STAGE && op != MC_SSD_OP_AUTH_HELLO && op != MC_SSD_OP_AUTH_PROOF &&
        !(op == MC_SSD_OP_RELEASE && !reply))
        return *why = "bad op", -1;
    if (!reply && h->status) return *why = "status in a request", -1;
    if (h->len > MC_SSD_SRV_FRAME_MAX) return *why = "frame too large", -1;
    return 0;
}

int mc_ssd_stage_req_decode(const uint8_t *p, size_t len, mc_ssd_stage_req_t *q, const char **why)
{
    mc_rd_t r = mc_rd_init(p, len);
    q->n = mc_rd_u32(&r);
    if (r.err) return *why = "truncated count", -1;
    if (q->n == 0 || q->n > MC_SSD_SRV_KEYS_MAX) return *why = "bad key count", -1;
    for (uint32_t i = 0; i < q->n; i++) {
        uint32_t kl = mc_rd_u32(&r);
        if (r.err) return *why = "truncated key", -1;
        if (kl == 0 || kl > MC_SSD_KEY_MAX) return *why = "bad key length", -1;
        if (mc_rd_left(&r) < kl) return *why = "truncated key", -1;
        q->key[i] = r.p;
        q->klen[i] = kl;
        if (memchr(q->key[i], 0, kl)) return *why = "NUL in key", -1;
        r.p += kl;
    }
    if (mc_rd_left(&r)) return *why = "trailing bytes", -1;
    return 0;
}

int mc_ssd_stage_rep_decode(const uint8_t *p, size_t len, char name[256], uint64_t *token,
                            mc_ssd_staged_t *v, uint32_t want, const char **why)
{
    mc_rd_t r = mc_rd_init(p, len);
    uint32_t nl = mc_rd_u32(&r);
    if (r.err || nl == 0 || nl > 255 || mc_rd_left(&r) < nl) return *why = "bad name", -1;
    mc_rd_bytes(&r, name, nl);
    name[nl] = '\0';
    if (memchr(name, 0, nl)) return *why = "NUL in name", -1;
    *token = mc_rd_u64(&r);
    uint32_t n = mc_rd_u32(&r);
    if (r.err) return *why = "truncated reply", -1;
    if (n != want) return *why = "wrong entry count", -1;
    for (uint32_t i = 0; i < n; i++) {
        v[i].rc = (int32_t)mc_rd_u32(&r);
        v[i].addr = mc_rd_u64(&r);
        v[i].size = mc_rd_u64(&r);
    }
    if (r.err) return *why = "truncated entries", -1;
    if (mc_rd_left(&r)) return *why = "trailing bytes", -1;
    return 0;
}
