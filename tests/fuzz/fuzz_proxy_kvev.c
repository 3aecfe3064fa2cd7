/* Fuzz target for the decoder of vLLM's KV cache events (the msgpack payload
 * frame the proxy's ZMQ subscriptions receive). Every event handed to the
 * callback must be consistent: a known kind, a BlockStored with exactly one
 * full block of token ids per hash and a block size in range; the decoder must
 * never read past the input (ASan) nor allocate from a declared length the
 * input cannot hold (libFuzzer's malloc limit). The bounds walk runs on its own
 * too, and on every prefix of a short input. */
#include "proxy_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check(void *ud, const mc__proxy_kvev_t *ev)
{
    unsigned *n = ud;
    (*n)++;
    if (ev->kind < MC_KVEV_STORED || ev->kind > MC_KVEV_OTHER) abort();
    if (ev->kind == MC_KVEV_STORED) {
        if (ev->block_size == 0 || ev->block_size > MC_KVEV_MAX_BLOCK_SIZE) abort();
        if ((uint64_t)ev->n_hashes * ev->block_size != ev->n_tokens) abort();
        uint64_t h = MC_KVEV_ROOT;
        for (uint32_t i = 0; i < ev->n_hashes; i++)
            h = mc__proxy_kvev_chain(h, ev->tokens + (size_t)i * ev->block_size, ev->block_size);
        if (h == 0) abort();
    }
    if (ev->kind == MC_KVEV_REMOVED && ev->n_hashes && !ev->hashes) abort();
    if (memchr(ev->medium, 0, sizeof ev->medium) == NULL) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned calls = 0, ne = 0, nb = 0;
    int rc = mc__proxy_kvev_decode(data, size, check, &calls, &ne, &nb);
    if (rc != 0 && rc != -22 && rc != -12) abort();
    if (calls != ne) abort();
    if (rc == -22 && (ne || nb)) abort();
    (void)mc__proxy_kvev_bounded(data, size);
    for (size_t n = 0; size < 64 && n < size; n++)
        (void)mc__proxy_kvev_bounded(data, n);
    return 0;
}
