/* libFuzzer target: the master RPC decoders. The input is a byte stream of
 * frames, parsed as the server and the client do: each header is decoded
 * (and must re-encode to the same bytes), then its payload goes to the
 * decoder of its method (request or reply). Every input must decode or be
 * refused with a reason and never read past its end (ASan). The first byte
 * also selects a "payload only" pass that feeds the rest to one decoder, so
 * the message decoders are reached without a valid header. */
#include <stdint.h>
#include <string.h>

#include "master_proto.h"

static const unsigned methods[] = {
#define M(N, id, l, rq, rp) id, id | MC_MP_REPLY,
    MC_MP_METHODS(M)
#undef M
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mc_mp_arena_t a = {0};
    const char *why;
    if (size > 0) { /* payload only */
        unsigned m = methods[data[0] % (sizeof methods / sizeof methods[0])];
        why = NULL;
        if (mc_mp_check_payload(m, data + 1, size - 1, &a, &why) && !why) __builtin_trap();
        mc_mp_arena_reset(&a);
    }
    size_t off = 0; /* frame stream */
    while (size - off >= MC_MP_HDR_LEN) {
        mc_mp_hdr_t h;
        why = NULL;
        if (mc_mp_hdr_decode(data + off, size - off, &h, &why)) {
            if (!why) __builtin_trap();
            break;
        }
        uint8_t again[MC_MP_HDR_LEN];
        mc_mp_hdr_encode(&h, again);
        if (memcmp(again, data + off, MC_MP_HDR_LEN) != 0) __builtin_trap();
        if (size - off - MC_MP_HDR_LEN < h.length) break; /* incomplete frame */
        why = NULL;
        if (mc_mp_check_payload(h.method, data + off + MC_MP_HDR_LEN, h.length, &a, &why) && !why)
            __builtin_trap();
        mc_mp_arena_reset(&a);
        off += MC_MP_HDR_LEN + h.length;
    }
    mc_mp_arena_free(&a);
    return 0;
}
