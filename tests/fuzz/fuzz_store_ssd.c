/* libFuzzer target: the SSD tier's decoders of bytes from disk and from the
 * network (store_ssd_rec.c): record headers and whole records read back from
 * bucket files, the staging protocol's frame headers (both directions), STAGE
 * requests and replies, and version 3's journal entries. The first byte
 * picks the decoder. A record or entry accepted by the decoder is re-encoded
 * and must give back the same header (version 1 and 2 records are only read:
 * version 2 headers re-encode as they were). */
#include <stdint.h>
#include <string.h>

#include "store_ssd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t which = data[0];
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    const char *why = NULL;
    switch (which % 6) {
    case 5: {
        mc_ssd_jent_t e;
        if (mc_ssd_jent_decode(p, n, &e, &why) == 0) {
            if (e.key_len == 0 || e.key_len > MC_SSD_KEY_MAX || mc_ssd_jent_len(e.key_len) > n ||
                mc_ssd_val_off(e.off, e.data_len) != e.off)
                __builtin_trap();
            uint8_t again[MC_SSD_JENT_HDR];
            mc_ssd_jent_encode(&e, again);
            if (memcmp(again, p, MC_SSD_JENT_HDR) != 0) __builtin_trap();
        } else if (!why) {
            __builtin_trap();
        }
        break;
    }
    case 0: {
        mc_ssd_rec_t r;
        if (mc_ssd_rec_decode(p, n, &r, &why) == 0) {
            if (r.key_len == 0 || r.key_len > MC_SSD_KEY_MAX || r.rec_len % MC_SSD_REC_ALIGN ||
                r.rec_len < MC_SSD_REC_HDR + r.key_len + r.data_len)
                __builtin_trap();
            uint8_t again[MC_SSD_REC_HDR];
            mc_ssd_rec_encode(&r, again); /* written as version 2: version 1 is only read */
            if (p[4] == 2 && memcmp(again, p, MC_SSD_REC_HDR) != 0) __builtin_trap();
        } else if (!why) {
            __builtin_trap();
        }
        break;
    }
    case 1: {
        mc_ssd_rec_t r;
        if (mc_ssd_rec_verify(p, n, &r, &why) == 0 && r.rec_len > n) __builtin_trap();
        break;
    }
    case 2:
    case 3: {
        mc_ssd_hdr_t h;
        if (mc_ssd_hdr_decode(p, n, which % 6 == 3, &h, &why) == 0 && h.len > MC_SSD_SRV_FRAME_MAX)
            __builtin_trap();
        break;
    }
    default: {
        static mc_ssd_stage_req_t q;
        if (mc_ssd_stage_req_decode(p, n, &q, &why) == 0) {
            for (uint32_t i = 0; i < q.n; i++)
                if (q.key[i] < p || q.key[i] + q.klen[i] > p + n) __builtin_trap();
        }
        char name[256];
        uint64_t token;
        static mc_ssd_staged_t v[MC_SSD_SRV_KEYS_MAX];
        uint32_t want = n ? p[0] % 8 : 0;
        if (mc_ssd_stage_rep_decode(p, n, name, &token, v, want, &why) == 0 &&
            strnlen(name, sizeof name) == sizeof name)
            __builtin_trap();
        break;
    }
    }
    return 0;
}
