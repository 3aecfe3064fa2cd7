/* Command-line parsing for mooncake_proxy. One parser accepts the flags of the
 * three upstream Python proxies and picks the mode from them:
 *   --model/-m present                      -> demo mode (disagg_proxy_demo.py)
 *   --prefiller-* / --decoder-* present     -> toy mode (toy_proxy_server.py)
 *   otherwise --prefill URL [PORT] --decode -> connector mode (mooncake_connector_proxy.py)
 * Long options also accept the "--flag=value" form, as argparse does. */
#include "proxy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mc_proxy_usage(void *fp)
{
    FILE *f = fp;
    fputs("usage: mooncake_proxy [common options] MODE OPTIONS\n"
          "\n"
          "connector mode (vLLM MooncakeConnector, mooncake_connector_proxy.py):\n"
          "  --prefill URL [BOOTSTRAP_PORT|none]   repeatable; bootstrap port default 8998\n"
          "  --decode URL                          repeatable\n"
          "toy mode (toy_proxy_server.py):\n"
          "  --prefiller-host(s) H... --prefiller-port(s) P...   default localhost 8100\n"
          "  --decoder-host(s) H...   --decoder-port(s) P...     default localhost 8200\n"
          "demo mode (disagg_proxy_demo.py):\n"
          "  --model/-m MODEL -p/--prefill host:port... -d/--decode host:port...\n"
          "common options:\n"
          "  --host ADDR                 listen address (default 127.0.0.1)\n"
          "  --port N                    listen port (default 8000; 0 = any)\n"
          "  --log_format text|json      log lines on stderr (default text; MC_LOG_FORMAT)\n"
          "  --version                   print the version and exit\n"
          "  --scheduling round_robin|least_loaded|least_tokens|cache_aware (default round_robin)\n"
          "  --cache-balance-abs N       cache_aware: load wins past this load gap (default 8)\n"
          "  --cache-balance-rel R       ... and when max load > R x min load (default 1.5)\n"
          "  --kv-events HOST:PORT=ENDPOINT  cache_aware: read the vLLM KV events the prefill\n"
          "                              instance HOST:PORT publishes on ZMQ ENDPOINT (repeatable)\n"
          "  --kv-events-topic T         ZMQ topic of those events (default: all)\n"
          "  --tokenize auto|off         cache_aware with KV events: a text prompt's token ids\n"
          "                              come from a publishing prefiller's POST /tokenize\n"
          "                              before it is routed (default auto)\n"
          "  --tokenize-timeout-ms N     bound of that call; past it the approximate index\n"
          "                              routes (default 500)\n"
          "  --circuit-failures N        failures in a row that open a circuit (default 3)\n"
          "  --circuit-backoff-ms N      first backoff of an open circuit, doubling (default 1000)\n"
          "  --circuit-backoff-max-ms N  largest backoff (default 30000)\n"
          "  --prefill-retries N         failed prefill legs retried elsewhere (default 1)\n"
          "  --connect-timeout-ms N      upstream connect timeout (default 10000)\n"
          "  --first-byte-timeout-ms N   upstream first-byte timeout (default 21600000)\n"
          "  --health-interval-ms N      health check period (default 5000)\n"
          "  --max-body-bytes N          largest client body (default 8388608)\n"
          "  --max-connections N         front connection limit (default 4096)\n"
          "environment: ADMIN_API_KEY enables /instances/add and /instances/remove;\n"
          "  OPENAI_API_KEY is sent as 'Authorization: Bearer' when the client sends none;\n"
          "  MC_LOG_LEVEL=error|warn|info|debug.\n",
          f);
}

static int is_opt(const char *a)
{
    return a[0] == '-' && a[1] && !(a[1] >= '0' && a[1] <= '9');
}

/* Matches argv[*i] against name; on a match stores the inline "=value" (or NULL). */
static int match(const char *arg, const char *name, const char **inl)
{
    size_t n = strlen(name);
    if (strncmp(arg, name, n) != 0) return 0;
    if (arg[n] == 0) {
        *inl = NULL;
        return 1;
    }
    if (arg[n] == '=' && name[1] == '-') {
        *inl = arg + n + 1;
        return 1;
    }
    return 0;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *e;
    errno = 0;
    long v = strtol(s, &e, 10);
    if (errno || e == s || *e || v < lo || v > hi) return -EINVAL;
    *out = v;
    return 0;
}

/* "host:port" or "http://host:port[/]" -> "http://host:port" without the slash. */
static int norm_url(const char *in, char *out, size_t len)
{
    const char *p = strstr(in, "://");
    int n = p ? snprintf(out, len, "%s", in) : snprintf(out, len, "http://%s", in);
    if (n < 0 || (size_t)n >= len) return -EINVAL;
    size_t l = strlen(out);
    while (l > 0 && out[l - 1] == '/')
        out[--l] = 0;
    const char *auth = strstr(out, "://") + 3;
    if (*auth == 0 || *auth == '/' || *auth == ':') return -EINVAL;
    if (strncmp(out, "http://", 7) != 0 && strncmp(out, "https://", 8) != 0) return -EINVAL;
    return 0;
}

static int add_inst(mc_proxy_config_t *c, int g, const char *url, uint16_t boot, char *err,
                    size_t errlen)
{
    if (c->n_inst[g] >= MC_PROXY_MAX_CLI_INST) {
        snprintf(err, errlen, "too many %s instances (max %d)", g ? "decode" : "prefill",
                 MC_PROXY_MAX_CLI_INST);
        return -EINVAL;
    }
    mc_proxy_inst_arg_t *a = &c->inst[g][c->n_inst[g]];
    if (norm_url(url, a->url, sizeof a->url) != 0) {
        snprintf(err, errlen, "bad instance URL '%s'", url);
        return -EINVAL;
    }
    a->bootstrap_port = boot;
    c->n_inst[g]++;
    return 0;
}

/* "INSTANCE=ENDPOINT": INSTANCE is host:port (an http:// prefix and a trailing
 * slash are dropped), ENDPOINT a ZMQ endpoint such as tcp://host:port. */
static int parse_kvev(mc_proxy_config_t *c, const char *val, char *err, size_t errlen)
{
    if (c->n_kvev >= MC_PROXY_MAX_KV_EVENTS) {
        snprintf(err, errlen, "too many --kv-events (max %d)", MC_PROXY_MAX_KV_EVENTS);
        return -EINVAL;
    }
    mc_proxy_kvev_arg_t *k = &c->kvev[c->n_kvev];
    const char *eq = strchr(val, '=');
    const char *host = val;
    if (strncmp(host, "http://", 7) == 0) host += 7;
    else if (strncmp(host, "https://", 8) == 0) host += 8;
    size_t hl = eq ? (size_t)(eq - host) : 0;
    while (hl > 0 && host[hl - 1] == '/')
        hl--;
    if (!eq || eq < host || hl == 0 || hl >= sizeof k->inst || !strstr(eq + 1, "://") ||
        snprintf(k->endpoint, sizeof k->endpoint, "%s", eq + 1) >= (int)sizeof k->endpoint) {
        snprintf(err, errlen, "--kv-events: '%s' is not HOST:PORT=tcp://HOST:PORT", val);
        return -EINVAL;
    }
    memcpy(k->inst, host, hl);
    k->inst[hl] = 0;
    c->n_kvev++;
    return 0;
}

static void defaults(mc_proxy_config_t *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->host, sizeof c->host, "127.0.0.1");
    c->port = 8000;
    c->connect_timeout_ms = 10000;
    c->first_byte_timeout_ms = 6 * 3600 * 1000;
    c->health_interval_ms = 5000;
    c->max_body = 8u << 20;
    c->max_conns = 4096;
    c->cb_failures = 3;
    c->cb_backoff_ms = 1000;
    c->cb_backoff_max_ms = 30000;
    c->prefill_retries = 1;
    c->cache_balance_abs = 8;
    c->cache_balance_rel = 1.5;
    c->tokenize = 1;
    c->tokenize_timeout_ms = 500;
}

int mc_proxy_parse_args(int argc, char **argv, mc_proxy_config_t *c, char *err, size_t errlen)
{
    const char *inl;
    /* Toy mode host and port lists, paired at the end. */
    const char *th[2][MC_PROXY_MAX_CLI_INST], *tp[2][MC_PROXY_MAX_CLI_INST];
    int nth[2] = {0, 0}, ntp[2] = {0, 0};
    int toy = 0, demo = 0;
    long v;

    defaults(c);
    for (int i = 1; i < argc; i++) {
        if (match(argv[i], "--model", &inl) || match(argv[i], "-m", &inl)) demo = 1;
        if (strncmp(argv[i], "--prefiller-", 12) == 0 || strncmp(argv[i], "--decoder-", 10) == 0)
            toy = 1;
    }
    if (demo && toy) {
        snprintf(err, errlen, "--model (demo mode) cannot be mixed with --prefiller/--decoder");
        return -EINVAL;
    }
    c->mode = demo ? MC_PROXY_MODE_DEMO : toy ? MC_PROXY_MODE_TOY : MC_PROXY_MODE_CONNECTOR;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
#define NEED_VAL()                                                                                 \
    do {                                                                                           \
        if (inl) {                                                                                 \
            val = inl;                                                                             \
        } else if (i + 1 < argc) {                                                                 \
            val = argv[++i];                                                                       \
        } else {                                                                                   \
            snprintf(err, errlen, "%s needs a value", a);                                          \
            return -EINVAL;                                                                        \
        }                                                                                          \
    } while (0)
#define NUM_OPT(name, lo, hi, field)                                                               \
    if (match(a, name, &inl)) {                                                                    \
        NEED_VAL();                                                                                \
        if (parse_long(val, lo, hi, &v) != 0) {                                                    \
            snprintf(err, errlen, "%s: '%s' is not a number in %ld..%ld", name, val, (long)(lo),   \
                     (long)(hi));                                                                  \
            return -EINVAL;                                                                        \
        }                                                                                          \
        field = v;                                                                                 \
        continue;                                                                                  \
    }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            mc_proxy_usage(stdout);
            return 1;
        }
        if (match(a, "--host", &inl)) {
            NEED_VAL();
            if (snprintf(c->host, sizeof c->host, "%s", val) >= (int)sizeof c->host) {
                snprintf(err, errlen, "--host too long");
                return -EINVAL;
            }
            continue;
        }
        NUM_OPT("--port", 0, 65535, c->port)
        NUM_OPT("--connect-timeout-ms", 1, 3600000, c->connect_timeout_ms)
        NUM_OPT("--first-byte-timeout-ms", 1, 2000000000, c->first_byte_timeout_ms)
        NUM_OPT("--health-interval-ms", 10, 3600000, c->health_interval_ms)
        NUM_OPT("--max-body-bytes", 1024, 1L << 30, c->max_body)
        NUM_OPT("--max-connections", 1, 1000000, c->max_conns)
        NUM_OPT("--circuit-failures", 1, 1000, c->cb_failures)
        NUM_OPT("--circuit-backoff-ms", 1, 3600000, c->cb_backoff_ms)
        NUM_OPT("--circuit-backoff-max-ms", 1, 86400000, c->cb_backoff_max_ms)
        NUM_OPT("--prefill-retries", 0, 16, c->prefill_retries)
        NUM_OPT("--cache-balance-abs", 0, 1000000, c->cache_balance_abs)
        NUM_OPT("--tokenize-timeout-ms", 1, 600000, c->tokenize_timeout_ms)
        if (match(a, "--tokenize", &inl)) {
            NEED_VAL();
            if (strcmp(val, "auto") != 0 && strcmp(val, "off") != 0) {
                snprintf(err, errlen, "--tokenize must be auto or off");
                return -EINVAL;
            }
            c->tokenize = strcmp(val, "auto") == 0;
            continue;
        }
        if (match(a, "--cache-balance-rel", &inl)) {
            NEED_VAL();
            char *end = NULL;
            double r = strtod(val, &end);
            if (!end || end == val || *end || !(r >= 1.0 && r <= 1e6)) {
                snprintf(err, errlen, "--cache-balance-rel: '%s' is not a number in 1..1e6", val);
                return -EINVAL;
            }
            c->cache_balance_rel = r;
            continue;
        }
        if (match(a, "--kv-events", &inl)) {
            NEED_VAL();
            if (parse_kvev(c, val, err, errlen) != 0) return -EINVAL;
            continue;
        }
        if (match(a, "--kv-events-topic", &inl)) {
            NEED_VAL();
            if (snprintf(c->kvev_topic, sizeof c->kvev_topic, "%s", val) >=
                (int)sizeof c->kvev_topic) {
                snprintf(err, errlen, "--kv-events-topic too long");
                return -EINVAL;
            }
            continue;
        }
        if (match(a, "--scheduling", &inl)) {
            NEED_VAL();
            if (strcmp(val, "round_robin") == 0) {
                c->sched = MC_PROXY_SCHED_ROUND_ROBIN;
            } else if (strcmp(val, "least_loaded") == 0) {
                c->sched = MC_PROXY_SCHED_LEAST_LOADED;
            } else if (strcmp(val, "least_tokens") == 0) {
                c->sched = MC_PROXY_SCHED_LEAST_TOKENS;
            } else if (strcmp(val, "cache_aware") == 0) {
                c->sched = MC_PROXY_SCHED_CACHE_AWARE;
            } else {
                snprintf(err, errlen, "--scheduling must be round_robin, least_loaded, "
                                      "least_tokens or cache_aware");
                return -EINVAL;
            }
            continue;
        }
        if (match(a, "--model", &inl) || match(a, "-m", &inl)) {
            NEED_VAL();
            snprintf(c->model, sizeof c->model, "%s", val);
            continue;
        }
        int g = -1;
        if (match(a, "--prefill", &inl) || (demo && match(a, "-p", &inl))) g = MC_PROXY_PREFILL;
        if (match(a, "--decode", &inl) || (demo && match(a, "-d", &inl))) g = MC_PROXY_DECODE;
        if (g >= 0 && !toy) {
            if (demo) { /* nargs='+' host:port values */
                int n = 0;
                if (inl) {
                    if (add_inst(c, g, inl, 0, err, errlen)) return -EINVAL;
                    n++;
                }
                while (i + 1 < argc && !is_opt(argv[i + 1])) {
                    if (add_inst(c, g, argv[++i], 0, err, errlen)) return -EINVAL;
                    n++;
                }
                if (n == 0) {
                    snprintf(err, errlen, "%s needs at least one host:port", a);
                    return -EINVAL;
                }
                continue;
            }
            NEED_VAL();
            uint16_t boot = 0;
            if (g == MC_PROXY_PREFILL) {
                boot = MC_PROXY_DEFAULT_BOOTSTRAP;
                if (i + 1 < argc && !is_opt(argv[i + 1]) && !inl) {
                    const char *b = argv[i + 1];
                    if (strcmp(b, "none") == 0) {
                        i++;
                    } else if (parse_long(b, 1, 65535, &v) == 0) {
                        boot = (uint16_t)v;
                        i++;
                    }
                }
            }
            if (add_inst(c, g, val, boot, err, errlen)) return -EINVAL;
            continue;
        }
        int tg = -1, tport = 0;
        if (match(a, "--prefiller-hosts", &inl) || match(a, "--prefiller-host", &inl)) tg = 0;
        if (match(a, "--prefiller-ports", &inl) || match(a, "--prefiller-port", &inl))
            tg = 0, tport = 1;
        if (match(a, "--decoder-hosts", &inl) || match(a, "--decoder-host", &inl)) tg = 1;
        if (match(a, "--decoder-ports", &inl) || match(a, "--decoder-port", &inl))
            tg = 1, tport = 1;
        if (tg >= 0) {
            const char **dst = tport ? tp[tg] : th[tg];
            int *n = tport ? &ntp[tg] : &nth[tg];
            *n = 0; /* argparse: a repeated flag replaces the earlier list */
            if (inl) dst[(*n)++] = inl;
            while (i + 1 < argc && !is_opt(argv[i + 1])) {
                if (*n >= MC_PROXY_MAX_CLI_INST) {
                    snprintf(err, errlen, "too many values for %s", a);
                    return -EINVAL;
                }
                dst[(*n)++] = argv[++i];
            }
            if (*n == 0) {
                snprintf(err, errlen, "%s needs at least one value", a);
                return -EINVAL;
            }
            continue;
        }
        snprintf(err, errlen, "unknown argument '%s' (see --help)", a);
        return -EINVAL;
#undef NEED_VAL
#undef NUM_OPT
    }

    if (toy) {
        static const char *defh = "localhost";
        static const char *defp[2] = {"8100", "8200"};
        for (int g = 0; g < 2; g++) {
            if (nth[g] == 0) th[g][nth[g]++] = defh;
            if (ntp[g] == 0) tp[g][ntp[g]++] = defp[g];
            if (nth[g] != ntp[g]) {
                snprintf(err, errlen, "number of %s hosts (%d) and ports (%d) must match",
                         g ? "decoder" : "prefiller", nth[g], ntp[g]);
                return -EINVAL;
            }
            for (int k = 0; k < nth[g]; k++) {
                char u[300];
                if (parse_long(tp[g][k], 1, 65535, &v) != 0) {
                    snprintf(err, errlen, "bad port '%s'", tp[g][k]);
                    return -EINVAL;
                }
                snprintf(u, sizeof u, "%s:%ld", th[g][k], v);
                if (add_inst(c, g, u, 0, err, errlen)) return -EINVAL;
            }
        }
    }
    if (c->mode == MC_PROXY_MODE_DEMO && c->model[0] == 0) {
        snprintf(err, errlen, "--model needs a value");
        return -EINVAL;
    }
    if (c->mode == MC_PROXY_MODE_CONNECTOR && c->n_inst[0] + c->n_inst[1] == 0) {
        snprintf(err, errlen,
                 "no upstreams: give --prefill/--decode URLs, --prefiller-*/--decoder-* or "
                 "--model with -p/-d (see --help); instances can also be added at run time");
        /* An empty proxy is legal when the admin API will populate it. */
        if (!getenv("ADMIN_API_KEY")) return -EINVAL;
        err[0] = 0;
    }
    return 0;
}
