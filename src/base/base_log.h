/* One-line logging to stderr. Thread-safe: each call writes one whole line.
 * Level from MC_LOG_LEVEL (error|warn|info|debug, default info). */
#ifndef MC_BASE_LOG_H
#define MC_BASE_LOG_H

enum { MC_LOG_ERROR = 0, MC_LOG_WARN = 1, MC_LOG_INFO = 2, MC_LOG_DEBUG = 3 };

/* Writes "<time> <L> [<tag>] <message>\n" when level is enabled. */
void mc_log_write(int level, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int mc_log_enabled(int level);

#define MC_LOGE(tag, ...) mc_log_write(MC_LOG_ERROR, tag, __VA_ARGS__)
#define MC_LOGW(tag, ...) mc_log_write(MC_LOG_WARN, tag, __VA_ARGS__)
#define MC_LOGI(tag, ...) mc_log_write(MC_LOG_INFO, tag, __VA_ARGS__)
#define MC_LOGD(tag, ...)                                                                          \
    do {                                                                                           \
        if (mc_log_enabled(MC_LOG_DEBUG)) mc_log_write(MC_LOG_DEBUG, tag, __VA_ARGS__);            \
    } while (0)

#endif
