/* Reading MC_* environment variables with defaults and bounds. Thread-safe
 * as long as nobody calls setenv concurrently. */
#ifndef MC_BASE_ENV_H
#define MC_BASE_ENV_H
#include <stdint.h>

/* Integer value of `name`, or `def` when unset or unparsable; clamped to [lo, hi]. */
int64_t mc_env_int(const char *name, int64_t def, int64_t lo, int64_t hi);
/* 1 for "1/true/yes/on", 0 for "0/false/no/off", `def` when unset or other. */
int mc_env_bool(const char *name, int def);
#endif
