/* bench_proxy_kvev.h: bench_proxy's fake vLLM KV event publisher (one thread). */
#ifndef BENCH_PROXY_KVEV_H
#define BENCH_PROXY_KVEV_H
#include <stdint.h>
#include <stdlib.h>

/* Binds the publisher on 127.0.0.1; its port into *port. 0 or -1. */
int bench_kvev_open(uint16_t *port);
/* Waits up to timeout_ms for a subscriber, then publishes one BlockStored of the
 * n / bs full blocks of toks. Returns the blocks published, or -1. */
int bench_kvev_publish(const uint32_t *toks, int n, int bs, int timeout_ms);
void bench_kvev_close(void);
#endif
