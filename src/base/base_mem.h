/* base_mem.h: checking caller memory before a user-space copy touches it.
 * Thread rule: any thread (each thread uses a pipe of its own). */
#ifndef MC_BASE_MEM_H
#define MC_BASE_MEM_H
#include <stddef.h>

/* Whether this process may read (and, with writable, write) every page of
 * [p, p+len), so that a memcpy there cannot fault. The kernel checks it: one
 * byte per page goes into a per-thread pipe with writev (EFAULT on a hole or a
 * PROT_NONE page) and, with writable, comes back to the same place with readv
 * (EFAULT on a read-only page). The bytes written back are the bytes just
 * read, inside the range the caller is about to overwrite, so memory is
 * unchanged unless another thread writes that range meanwhile (a race the
 * caller already has with its copy). About 2 syscalls per 1 MiB (1 MiB:
 * ~10 us on the development machine). Returns 0 when the range is usable
 * (len 0 included, or the check could not be made: no pipe), -EFAULT when
 * it is not. */
int mc_mem_check(const void *p, size_t len, int writable);
#endif
