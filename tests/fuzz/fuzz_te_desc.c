/* libFuzzer target: segment descriptor and rpc_meta JSON decoders. A decoded
 * descriptor must be sorted and non-overlapping, and survive a re-encode and
 * decode unchanged; range checks on it must not overflow. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "te_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mc__te_desc_t d;
    char why[256];
    if (mc__te_desc_decode((const char *)data, size, &d, why) == 0) {
        for (size_t i = 1; i < d.nbufs; i++)
            if (d.bufs[i - 1].addr + d.bufs[i - 1].length > d.bufs[i].addr) __builtin_trap();
        for (size_t i = 0; i < d.nbufs; i++) {
            if (!mc__te_desc_contains(&d, d.bufs[i].addr, d.bufs[i].length)) __builtin_trap();
            if (mc__te_desc_contains(&d, d.bufs[i].addr, UINT64_MAX)) __builtin_trap();
        }
        char *json = mc__te_desc_encode(&d);
        mc__te_desc_t again;
        if (json) {
            if (mc__te_desc_decode(json, strlen(json), &again, why) != 0) __builtin_trap();
            if (again.nbufs != d.nbufs || strcmp(again.name, d.name)) __builtin_trap();
            mc__te_desc_clear(&again);
            free(json);
        }
        mc__te_desc_clear(&d);
    }
    char *text = malloc(size + 1), ip[64];
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    uint16_t port;
    mc__te_rpc_decode(text, ip, sizeof ip, &port);
    free(text);
    return 0;
}
