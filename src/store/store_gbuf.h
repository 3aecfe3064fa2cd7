/* store_gbuf.h: the get buffers of allocating gets (mc_store_batch_get_buffers).
 * An arena over the store's local buffer (anonymous memory registered with the
 * store's engine at setup) hands out page-rounded blocks, first fit from the
 * lowest address, so that the same warm pages serve one get after another:
 * no fresh page faults per get, no mmap/munmap per object (a malloc of a few
 * MiB is an mmap and 256 page faults per MiB on first touch).
 * The arena owns the mapping and counts references: one for the store, one
 * per block handed out; the memory is unmapped when the last is dropped, so a
 * buffer may outlive its store's close. Thread-safe (one mutex). */
#ifndef MC_STORE_GBUF_H
#define MC_STORE_GBUF_H
#include <stddef.h>
#include <stdint.h>

typedef struct mc__gbuf mc__gbuf_t;

/* Takes over the mapping [base, base+size) (munmap'd at the last reference).
 * NULL on ENOMEM (the mapping is then still the caller's). */
mc__gbuf_t *mc__gbuf_new(void *base, uint64_t size);
/* Drops the store's reference (close). NULL: no-op. */
void mc__gbuf_put(mc__gbuf_t *g);
/* A block of at least size bytes (rounded up to 4 KiB) or NULL when no free
 * extent is large enough (the caller falls back to malloc). Takes a reference. */
void *mc__gbuf_alloc(mc__gbuf_t *g, uint64_t size);
/* Gives back a block of mc__gbuf_alloc(g, size) (same size). Pointers outside
 * the arena (or g NULL) are free()d: blocks of the malloc fallback. */
void mc__gbuf_free(mc__gbuf_t *g, void *p, uint64_t size);
/* 1 when p lies inside the arena. */
int mc__gbuf_owns(const mc__gbuf_t *g, const void *p);
/* Takes one more reference (a block's, when it is handed to a buffer object). */
void mc__gbuf_ref(mc__gbuf_t *g);
/* Bytes now handed out (tests). */
uint64_t mc__gbuf_used(mc__gbuf_t *g);

#endif
