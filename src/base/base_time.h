/* Monotonic clock helpers. Thread-safe. */
#ifndef MC_BASE_TIME_H
#define MC_BASE_TIME_H
#include <stdint.h>
#include <time.h>

static inline uint64_t mc_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
static inline uint64_t mc_now_ms(void)
{
    return mc_now_ns() / 1000000ull;
}
/* The time ms milliseconds from now on clock: a deadline for
 * pthread_cond_timedwait (CLOCK_MONOTONIC for a condition variable made with
 * that clock attribute, else CLOCK_REALTIME). */
static inline struct timespec mc_deadline_ts(clockid_t clock, uint64_t ms)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + (ms % 1000) * 1000000ull;
    ts.tv_sec += (time_t)(ms / 1000 + ns / 1000000000ull);
    ts.tv_nsec = (long)(ns % 1000000000ull);
    return ts;
}
#endif
