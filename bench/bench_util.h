/* bench_util.h: helpers shared by the benchmark and demo programs: the
 * single-thread memcpy reference (the yardstick every figure is a ratio to),
 * a log-bucketed latency histogram that merges across threads and processes,
 * and the value pattern readers verify byte for byte.
 *
 * Thread rule: every function is pure or works on the caller's objects only;
 * a histogram is owned by one thread at a time (merge after joining).
 * Errors: functions return 0 or a negative errno where they can fail. */
#ifndef MC_BENCH_UTIL_H
#define MC_BENCH_UTIL_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Single-thread memcpy GB/s (1e9 bytes/s): block-sized copies from the first
 * half of buf to the second, walking all of it, until at least 1 GiB moved. */
double mc_bench_memcpy_gbps(char *buf, uint64_t size, uint64_t block);

/* Latency histogram: buckets 1% wide from 1 ns to ~100 s. */
#define MC_BENCH_HIST_BUCKETS 2600
typedef struct {
    uint64_t n[MC_BENCH_HIST_BUCKETS];
    uint64_t count;
} mc_bench_hist_t;

void mc_bench_hist_add(mc_bench_hist_t *h, uint64_t ns);
void mc_bench_hist_merge(mc_bench_hist_t *into, const mc_bench_hist_t *from);
/* The q-quantile (0 < q <= 1) in microseconds (bucket midpoint); 0 when empty. */
double mc_bench_hist_quantile_us(const mc_bench_hist_t *h, double q);
/* Writes the non-empty buckets as " idx:count" pairs (no newline). */
void mc_bench_hist_write(const mc_bench_hist_t *h, FILE *f);
/* Adds the pairs written by mc_bench_hist_write; -EINVAL on malformed text. */
int mc_bench_hist_parse(mc_bench_hist_t *h, const char *text);

/* The reference bytes of a value: byte i depends only on i. */
void mc_bench_pattern(void *buf, size_t len);
/* Stamps a value already holding the pattern with tag in its first and last
 * 8 bytes (values shorter than 16 bytes: the first min(len, 8) only). */
void mc_bench_stamp(void *buf, size_t len, uint64_t tag);
/* 1 when buf (len bytes) is the pattern stamped with tag, else 0. ref holds
 * the pattern of at least len bytes. */
int mc_bench_check(const void *buf, size_t len, uint64_t tag, const void *ref);
#endif
