/* Raising the process's open-file limit, so that a listener runs out of its
 * own connection cap (which it logs) long before the kernel's EMFILE.
 * Thread rule: call once at start, before threads accept connections. */
#ifndef MC_BASE_FDLIMIT_H
#define MC_BASE_FDLIMIT_H
#include <stdint.h>

/* Raises RLIMIT_NOFILE's soft limit to min(want, hard limit); never lowers
 * it. Returns the soft limit in force afterwards (the old one when the call
 * failed). want 0 means "as high as the hard limit allows". */
uint64_t mc_fdlimit_raise(uint64_t want);
#endif
