/* master_alloc.h: the master's allocator of one mounted segment: hands out
 * ranges of [base, base+size) (an address space of another process; the master
 * never touches the bytes), frees them back with coalescing.
 * Alignment: every range starts on a multiple of MC_ALLOC_ALIGN (absolute
 * address) and occupies a multiple of MC_ALLOC_ALIGN bytes; the bytes lost to
 * rounding count as used.
 * Thread rule: not thread-safe; the caller serialises calls on one allocator
 * (the master keeps a mutex per segment). Different allocators are independent. */
#ifndef MC_MASTER_ALLOC_H
#define MC_MASTER_ALLOC_H
#include <stddef.h>
#include <stdint.h>

#define MC_ALLOC_ALIGN 64u

typedef struct mc_alloc mc_alloc_t;
typedef struct mc_alloc_blk mc_alloc_blk_t; /* one handed-out range */

/* Creates an allocator over [base, base+size). The usable range is the
 * aligned-inward part. MC_ERR_INVALID_PARAMS when it holds no aligned unit or
 * base+size overflows; MC_ERR_INTERNAL on allocation failure. */
int mc_alloc_new(uint64_t base, uint64_t size, mc_alloc_t **out);
/* Frees the allocator and every block still handed out (their handles die). */
void mc_alloc_destroy(mc_alloc_t *a);

/* Hands out a range of at least `size` (> 0) bytes: *blk is the handle to
 * return it with, *addr its start. MC_ERR_NO_AVAILABLE_HANDLE when no free
 * range is large enough; MC_ERR_INVALID_PARAMS for size 0. */
int mc_alloc_get(mc_alloc_t *a, uint64_t size, mc_alloc_blk_t **blk, uint64_t *addr);
/* Hands out exactly [addr, addr + size rounded up to MC_ALLOC_ALIGN), for a
 * range known to be in use already (an object restored after a master
 * restart). MC_ERR_INVALID_PARAMS when addr is not aligned, size is 0 or the
 * range is not inside the usable range; MC_ERR_NO_AVAILABLE_HANDLE when any
 * part of it is handed out already; MC_ERR_INTERNAL on allocation failure.
 * The allocator is unchanged on error. O(1) when claims come in ascending
 * address order (it resumes where the last claim ended), else O(ranges). */
int mc_alloc_claim(mc_alloc_t *a, uint64_t addr, uint64_t size, mc_alloc_blk_t **blk);
/* Returns a range handed out by this allocator; blk dies. */
void mc_alloc_put(mc_alloc_t *a, mc_alloc_blk_t *blk);

/* An opaque pointer kept with a handed-out range (NULL after mc_alloc_get). */
void mc_alloc_blk_set_owner(mc_alloc_blk_t *blk, void *owner);
void *mc_alloc_blk_owner(const mc_alloc_blk_t *blk);
/* Calls fn for every range, free or handed out, in address order (owner is
 * NULL for free ones) until fn returns non-zero, which is returned. Adjacent
 * free ranges never occur (they are coalesced). O(ranges). */
int mc_alloc_each(const mc_alloc_t *a,
                  int (*fn)(uint64_t addr, uint64_t size, int is_free, void *owner, void *arg),
                  void *arg);

uint64_t mc_alloc_blk_addr(const mc_alloc_blk_t *blk);
uint64_t mc_alloc_blk_size(const mc_alloc_blk_t *blk); /* rounded size */

uint64_t mc_alloc_capacity(const mc_alloc_t *a); /* usable bytes */
uint64_t mc_alloc_used(const mc_alloc_t *a);     /* bytes handed out (rounded) */
uint64_t mc_alloc_largest_free(const mc_alloc_t *a);

/* Walks every block and checks the invariants (contiguity, coalescing, bins,
 * counters). 0 when sound, -1 otherwise. For tests; O(blocks). */
int mc_alloc_check(const mc_alloc_t *a);
#endif
