/* base_fdlimit.c: RLIMIT_NOFILE raised at daemon start (base_fdlimit.h). */
#include "base_fdlimit.h"

#include <sys/resource.h>

#include "base_log.h"

uint64_t mc_fdlimit_raise(uint64_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
    rlim_t target = rl.rlim_max;
    if (want && (rlim_t)want < target) target = (rlim_t)want;
    if (target <= rl.rlim_cur) return (uint64_t)rl.rlim_cur;
    rlim_t old = rl.rlim_cur;
    rl.rlim_cur = target;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        MC_LOGW("fdlimit", "cannot raise the open-file limit from %llu to %llu",
                (unsigned long long)old, (unsigned long long)target);
        return (uint64_t)old;
    }
    return (uint64_t)target;
}
