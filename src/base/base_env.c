/* base_env.c: typed access to MC_* environment variables. */
#include "base_env.h"

#include <errno.h>
#include <stdlib.h>
#include <strings.h>

int64_t mc_env_int(const char *name, int64_t def, int64_t lo, int64_t hi)
{
    const char *s = getenv(name);
    if (!s || !*s) return def;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return def;
    if (v < lo) v = lo;
    if (v > hi) v = hi;
    return v;
}

int mc_env_bool(const char *name, int def)
{
    const char *s = getenv(name);
    if (!s || !*s) return def;
    if (!strcasecmp(s, "1") || !strcasecmp(s, "true") || !strcasecmp(s, "yes") ||
        !strcasecmp(s, "on"))
        return 1;
    if (!strcasecmp(s, "0") || !strcasecmp(s, "false") || !strcasecmp(s, "no") ||
        !strcasecmp(s, "off"))
        return 0;
    return def;
}
