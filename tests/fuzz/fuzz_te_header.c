/* libFuzzer target: the transfer engine's frame header decoder. Any input must
 * decode or be refused with a reason, never read past its end, and a decoded
 * header must re-encode to the same bytes. */
#include <stdint.h>
#include <string.h>

#include "te_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mc__te_hdr_t h;
    const char *why = NULL;
    if (mc__te_hdr_decode(data, size, &h, &why) == 0) {
        uint8_t again[MC_TE_HDR_LEN];
        mc__te_hdr_encode(&h, again);
        if (memcmp(again, data, MC_TE_HDR_LEN) != 0) __builtin_trap();
    } else if (!why) {
        __builtin_trap();
    }
    return 0;
}
