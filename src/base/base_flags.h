/* base_flags.h: gflags-style command-line scanning shared by the daemons
 * (mooncake_master, mooncake_client), plus the value parsers they share.
 *
 * Syntax: `--flag=value`, `--flag value`, one or two leading dashes; for
 * booleans a bare `--flag` (true; a following true/false word is its value)
 * and `--noflag`; `--help` / `-h` stops the scan; `--` ends the flags and
 * nothing may follow it. The caller owns its flag table: `lookup` maps a name
 * to an index, `apply` checks and stores one value.
 * Thread rule: the functions touch only their arguments; any thread.
 * Errors: 0 or -EINVAL with a one-line message in the caller's buffer. */
#ifndef MC_BASE_FLAGS_H
#define MC_BASE_FLAGS_H
#include <stddef.h>
#include <stdint.h>

#define MC_FLAGS_HELP 1 /* mc_flags_scan result: --help was given */

typedef struct {
    /* Index (>= 0) of the flag named name[0..len), or -1 when unknown; sets
     * *is_bool for boolean flags. */
    int (*lookup)(void *ctx, const char *name, size_t len, int *is_bool);
    /* Checks and stores value v of flag idx; `what` is "--<name>" for
     * messages. Returns 0 or -EINVAL with err filled. */
    int (*apply)(void *ctx, int idx, const char *v, const char *what, char *err, size_t errlen);
    void *ctx;
} mc_flags_ops_t;

/* Scans argv[1..argc) in order, calling ops->apply once per flag given.
 * Returns 0, MC_FLAGS_HELP, or -EINVAL (unknown flag, missing value, stray
 * argument, or apply's error) with the message in err (NUL-terminated,
 * truncated to errlen). argv is neither modified nor kept. */
int mc_flags_scan(int argc, char *const argv[], const mc_flags_ops_t *ops, char *err,
                  size_t errlen);

/* gflags' boolean spellings (true/t/yes/y/1, false/f/no/n/0, any case):
 * 1 or 0, or -1 when s is none of them. */
int mc_flags_bool_word(const char *s);

/* Upstream's C++ byte-size parser: optional spaces, a non-negative decimal
 * (fraction allowed), optional spaces, an optional unit B, K/KB, M/MB, G/GB,
 * T/TB (any case, powers of 1024), optional spaces; "infinite" is
 * UINT64_MAX. "4 GB", "512MB", "1.5g", "2147483648". Returns 0, or -EINVAL
 * for anything else ("50%", "-1", "", overflow). */
int mc_parse_byte_size(const char *s, uint64_t *out);
#endif
