/* Fuzz target: the persistence record decoder (master_persist_rec.c), which
 * reads the master's files from disk. Every decoded record must re-encode to
 * the same bytes; a file header check must not crash either. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "master_persist_rec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static mc_prec_t rec;
    static uint8_t out[MC_PREC_HDR + MC_PREC_MAX_BODY];
    uint64_t seq, ver;
    size_t off =
        mc_prec_file_check(data, size, MC_PREC_FILE_LOG, &seq, &ver) == 0 ? MC_PREC_FILE_HDR : 0;
    while (off < size) {
        size_t used;
        const char *why;
        if (mc_prec_decode(data + off, size - off, &rec, &used, &why) != MC_PREC_OK) break;
        size_t n = mc_prec_encode(&rec, out, sizeof out);
        if (n != used || memcmp(out, data + off, n) != 0) abort();
        off += used;
    }
    return 0;
}
