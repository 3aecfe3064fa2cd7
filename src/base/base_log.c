/* base_log.c: the project's logger. Lines go to stderr in one write(2) so that
 * lines from different threads and processes never interleave. */
#include "base_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static int log_level = -1;

static int level_from_env(void)
{
    const char *s = getenv("MC_LOG_LEVEL");
    if (!s || !*s) return MC_LOG_INFO;
    if (!strcasecmp(s, "error")) return MC_LOG_ERROR;
    if (!strcasecmp(s, "warn") || !strcasecmp(s, "warning")) return MC_LOG_WARN;
    if (!strcasecmp(s, "debug") || !strcasecmp(s, "trace")) return MC_LOG_DEBUG;
    return MC_LOG_INFO;
}

int mc_log_enabled(int level)
{
    int cur = __atomic_load_n(&log_level, __ATOMIC_RELAXED);
    if (cur < 0) {
        cur = level_from_env();
        __atomic_store_n(&log_level, cur, __ATOMIC_RELAXED);
    }
    return level <= cur;
}

void mc_log_write(int level, const char *tag, const char *fmt, ...)
{
    static const char letters[] = "EWID";
    if (!mc_log_enabled(level)) return;
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%02d:%02d:%02d.%03ld %c [%s] ", tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, letters[level & 3], tag ? tag : "-");
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2) len = sizeof line - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
