/* mooncake_proxy: OpenAI-compatible router for disaggregated prefill/decode (XpYd).
 *
 * One process, one thread: a libmicrohttpd front in external-epoll mode and a
 * libcurl multi for the upstream legs share a single event loop, so nothing in
 * the proxy needs a lock. The command line accepts the flags of the three
 * upstream Python proxies (see docs/proxy.md):
 *   connector mode  --prefill URL [BOOTSTRAP_PORT|none] ... --decode URL ...
 *   toy mode        --prefiller-host(s) H.. --prefiller-port(s) P.. --decoder-host(s) ...
 *   demo mode       --model M -p host:port.. -d host:port.. [--scheduling round_robin]
 *
 * Thread rule: mc_proxy_run() and everything it calls run on the caller's thread;
 * mc_proxy_stop() is async-signal-safe and may be called from anywhere. */
#ifndef MC_PROXY_H
#define MC_PROXY_H
#include <stddef.h>
#include <stdint.h>

enum { MC_PROXY_MODE_CONNECTOR = 0, MC_PROXY_MODE_TOY = 1, MC_PROXY_MODE_DEMO = 2 };
enum {
    MC_PROXY_SCHED_ROUND_ROBIN = 0,
    MC_PROXY_SCHED_LEAST_LOADED = 1,
    MC_PROXY_SCHED_LEAST_TOKENS = 2,
    MC_PROXY_SCHED_CACHE_AWARE = 3,
    MC_PROXY_N_SCHED
};
enum { MC_PROXY_PREFILL = 0, MC_PROXY_DECODE = 1 };

#define MC_PROXY_MAX_CLI_INST 64
#define MC_PROXY_DEFAULT_BOOTSTRAP 8998

typedef struct {
    char url[320];           /* "http://host:port" (no trailing slash) */
    uint16_t bootstrap_port; /* connector-mode prefillers; 0 elsewhere */
} mc_proxy_inst_arg_t;

#define MC_PROXY_MAX_KV_EVENTS 64

/* --kv-events INSTANCE=ENDPOINT: where a prefill instance publishes vLLM KV events. */
typedef struct {
    char inst[300];     /* "host:port", as the instance's name in /status */
    char endpoint[256]; /* ZMQ endpoint to connect a SUB socket to, "tcp://host:port" */
} mc_proxy_kvev_arg_t;

typedef struct {
    int mode;
    char host[256]; /* listen address, default 127.0.0.1 */
    uint16_t port;  /* listen port, default 8000; 0 = kernel picks */
    char model[256];
    int sched;
    int n_inst[2];
    mc_proxy_inst_arg_t inst[2][MC_PROXY_MAX_CLI_INST];
    int connect_timeout_ms;    /* upstream TCP connect, default 10 s */
    int first_byte_timeout_ms; /* upstream first response byte, default 6 h */
    int health_interval_ms;    /* health check period, default 5 s */
    size_t max_body;           /* largest accepted client body, default 8 MiB */
    int max_conns;             /* front connection limit, default 4096 */
    int cb_failures;           /* consecutive failures that open an instance's circuit (3) */
    int cb_backoff_ms;         /* first backoff of an open circuit, doubling (1000) */
    int cb_backoff_max_ms;     /* largest backoff (30000) */
    int prefill_retries;       /* failed prefill legs started again elsewhere, at most (1) */
    int cache_balance_abs;     /* cache_aware: load wins when max - min load exceeds this (8) */
    double cache_balance_rel;  /* ... and max load exceeds this times the min (1.5) */
    int n_kvev;                /* --kv-events subscriptions */
    mc_proxy_kvev_arg_t kvev[MC_PROXY_MAX_KV_EVENTS];
    char kvev_topic[128];      /* --kv-events-topic: ZMQ subscription prefix (default "") */
    int tokenize;              /* --tokenize auto (1, default) | off (0): text prompts' ids */
    int tokenize_timeout_ms;   /* --tokenize-timeout-ms: bound of one /tokenize call (500) */
} mc_proxy_config_t;

/* Fills *cfg from argv (argv[0] is skipped). Returns 0; 1 when --help was asked
 * (usage already printed to stdout); -EINVAL with a reason in err otherwise. */
int mc_proxy_parse_args(int argc, char **argv, mc_proxy_config_t *cfg, char *err, size_t errlen);
/* Prints the usage text to f (a FILE *). */
void mc_proxy_usage(void *f);

typedef struct mc_proxy mc_proxy_t;

/* Creates the proxy and binds its listening socket. The config is copied.
 * On success *out owns the proxy (free with mc_proxy_free); returns 0 or a
 * negative errno (-EADDRINUSE, -ENOMEM, -EIO). */
int mc_proxy_new(const mc_proxy_config_t *cfg, mc_proxy_t **out);
/* Port the front listens on (useful with port 0). */
uint16_t mc_proxy_port(const mc_proxy_t *px);
/* Runs the event loop until mc_proxy_stop(); then cancels every upstream leg
 * and closes every client connection. Returns 0 or a negative errno. */
int mc_proxy_run(mc_proxy_t *px);
/* Asks a running loop to return. Async-signal-safe. */
void mc_proxy_stop(mc_proxy_t *px);
void mc_proxy_free(mc_proxy_t *px);

#endif
