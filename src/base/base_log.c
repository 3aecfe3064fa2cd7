/* base_log.c: the project's logger. Lines go to stderr in one write(2) so that
 * lines from different threads and processes never interleave. Two formats:
 * the default human-readable "<time> <L> [<tag>] <message>", and JSON for log
 * shippers (--log_format json on every daemon, or MC_LOG_FORMAT=json): one
 * object per line, {"ts":"<RFC 3339 UTC, ms>","level":"info","tag":...,
 * "msg":...}, encoded by jansson (a message that is not UTF-8 has its
 * non-ASCII bytes replaced by '?', so every line stays valid JSON). */
#include "base_log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

static int log_level = -1;
static int log_format = -1; /* MC_LOG_FMT_*; -1: not read from the environment yet */

static int format_from_name(const char *s)
{
    if (!s || !*s || !strcasecmp(s, "text")) return MC_LOG_FMT_TEXT;
    if (!strcasecmp(s, "json")) return MC_LOG_FMT_JSON;
    return -1;
}

int mc_log_set_format(const char *name)
{
    int f = format_from_name(name);
    if (f < 0) return -EINVAL;
    __atomic_store_n(&log_format, f, __ATOMIC_RELAXED);
    return 0;
}

static int current_format(void)
{
    int f = __atomic_load_n(&log_format, __ATOMIC_RELAXED);
    if (f < 0) {
        f = format_from_name(getenv("MC_LOG_FORMAT"));
        if (f < 0) f = MC_LOG_FMT_TEXT;
        __atomic_store_n(&log_format, f, __ATOMIC_RELAXED);
    }
    return f;
}

int mc_log_take_format_flag(int *argc, char **argv, char *err, size_t errlen)
{
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i], *v = NULL;
        const char *n = a[0] == '-' ? (a[1] == '-' ? a + 2 : a + 1) : NULL;
        size_t nl = n ? strcspn(n, "=") : 0;
        int match =
            n && nl == 10 && (!strncmp(n, "log_format", 10) || !strncmp(n, "log-format", 10));
        if (!match) {
            argv[out++] = argv[i];
            continue;
        }
        if (n[nl] == '=') {
            v = n + nl + 1;
        } else if (i + 1 < *argc) {
            v = argv[++i];
        } else {
            snprintf(err, errlen, "flag '%s' needs a value (text or json)", a);
            return -EINVAL;
        }
        if (mc_log_set_format(v)) {
            snprintf(err, errlen, "bad value for --log_format: '%s' (want text or json)", v);
            return -EINVAL;
        }
    }
    argv[out] = NULL; /* argv[argc] stays NULL, as main() got it */
    *argc = out;
    return 0;
}

/* Writes one JSON line for (level, tag, msg); the time is ts. */
static void write_json(int level, const char *tag, const char *msg, const struct timespec *ts,
                       const struct tm *tm)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    char when[40];
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm->tm_year + 1900,
             tm->tm_mon + 1, tm->tm_mday, tm->tm_hour, tm->tm_min, tm->tm_sec,
             ts->tv_nsec / 1000000);
    json_t *m = json_string(msg), *t = json_string(tag ? tag : "-");
    char ascii[1024];
    if (!m) { /* not UTF-8: keep the ASCII, mark the rest */
        size_t i = 0;
        for (; msg[i] && i + 1 < sizeof ascii; i++)
            ascii[i] = (unsigned char)msg[i] < 0x80 ? msg[i] : '?';
        ascii[i] = '\0';
        m = json_string(ascii);
    }
    if (!t) t = json_string("?");
    json_t *o = json_pack("{s:s, s:s, s:o*, s:o*}", "ts", when, "level", names[level & 3], "tag", t,
                          "msg", m);
    char *line = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (!line) return;
    size_t len = strlen(line);
    char *nl = realloc(line, len + 2);
    if (nl) {
        line = nl;
        line[len++] = '\n';
        ssize_t w = write(STDERR_FILENO, line, len);
        (void)w;
    }
    free(line);
}

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
    if (current_format() == MC_LOG_FMT_JSON) {
        char msg[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        write_json(level, tag, msg, &ts, &tm);
        return;
    }
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
