/* base_copy.h: a copy that streams past the caches, for bulk moves whose bytes
 * nobody reads soon on this core (a KV block into a pool segment, a batch of
 * them out of it). glibc's memcpy switches to non-temporal stores only for a
 * single copy above about 3/4 of the L3 (~20 MB on the development machine),
 * so a batch of 240 pieces of 1 MiB ran through the cache at 5.3 GB/s where
 * streaming stores reach 7.5 (bench: docs/store.md, "Bulk copies").
 * Thread rule: any thread. */
#ifndef MC_BASE_COPY_H
#define MC_BASE_COPY_H
#include <stddef.h>

/* Batches of at least this many bytes stream their pieces of at least
 * MC_COPY_STREAM_PIECE bytes (smaller ones stay on memcpy). */
#define MC_COPY_STREAM_BATCH (16u << 20)
#define MC_COPY_STREAM_PIECE (64u << 10)

/* memcpy(dst, src, n) for buffers that do not overlap, with non-temporal
 * stores for the 64-byte aligned middle of dst (AVX2 where the CPU has it,
 * SSE2 otherwise; plain memcpy on other architectures), then a store fence,
 * so the bytes are visible to other threads once it returns, as after memcpy. */
void mc_copy_stream(void *dst, const void *src, size_t n);
#endif
