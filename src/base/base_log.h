/* One-line logging to stderr. Thread-safe: each call writes one whole line.
 * Level from MC_LOG_LEVEL (error|warn|info|debug, default info); format text
 * (default) or JSON, one object per line with ts, level, tag and msg
 * (MC_LOG_FORMAT=json, or --log_format json through mc_log_take_format_flag). */
#ifndef MC_BASE_LOG_H
#define MC_BASE_LOG_H
#include <stddef.h>

enum { MC_LOG_ERROR = 0, MC_LOG_WARN = 1, MC_LOG_INFO = 2, MC_LOG_DEBUG = 3 };

/* Writes "<time> <L> [<tag>] <message>\n" when level is enabled. */
void mc_log_write(int level, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int mc_log_enabled(int level);

enum { MC_LOG_FMT_TEXT = 0, MC_LOG_FMT_JSON = 1 };
/* Sets the format by name ("text" or "json", any case). Returns 0 or -EINVAL. */
int mc_log_set_format(const char *name);
/* Takes --log_format V / --log_format=V (one or two dashes, '_' or '-') out
 * of argv, so that a daemon's own parser never sees it, and sets the format.
 * Returns 0, or -EINVAL with a one-line message in err for a missing or bad
 * value. Call first in main(), before any thread logs. */
int mc_log_take_format_flag(int *argc, char **argv, char *err, size_t errlen);

#define MC_LOGE(tag, ...) mc_log_write(MC_LOG_ERROR, tag, __VA_ARGS__)
#define MC_LOGW(tag, ...) mc_log_write(MC_LOG_WARN, tag, __VA_ARGS__)
#define MC_LOGI(tag, ...) mc_log_write(MC_LOG_INFO, tag, __VA_ARGS__)
#define MC_LOGD(tag, ...)                                                                          \
    do {                                                                                           \
        if (mc_log_enabled(MC_LOG_DEBUG)) mc_log_write(MC_LOG_DEBUG, tag, __VA_ARGS__);            \
    } while (0)

#endif
