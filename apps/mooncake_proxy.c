/* mooncake_proxy: thin main() over src/proxy. Parses the command line of any of
 * the three upstream proxies, prints "listening on http://HOST:PORT" on stdout
 * once the socket is bound, and runs until SIGINT/SIGTERM. */
#include "proxy.h"

#include "base_fdlimit.h"
#include "base_log.h"
#include "base_version.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static mc_proxy_t *g_px;

static void on_signal(int sig)
{
    (void)sig;
    if (g_px) mc_proxy_stop(g_px);
}

int main(int argc, char **argv)
{
    if (mc_version_flag(argc, argv, "mooncake_proxy")) return 0;
    static mc_proxy_config_t cfg;
    char err[512] = "";
    if (mc_log_take_format_flag(&argc, argv, err, sizeof err)) {
        fprintf(stderr, "mooncake_proxy: %s\n", err);
        return 2;
    }
    int rc = mc_proxy_parse_args(argc, argv, &cfg, err, sizeof err);
    if (rc == 1) return 0;
    if (rc < 0) {
        fprintf(stderr, "mooncake_proxy: %s\n", err);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    /* Room for --max-connections clients plus their upstream legs. */
    mc_fdlimit_raise(65536);
    rc = mc_proxy_new(&cfg, &g_px);
    if (rc < 0) {
        fprintf(stderr, "mooncake_proxy: cannot start (%s)\n", strerror(-rc));
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    static const char *const modes[] = {"connector", "toy", "demo"};
    MC_LOGI("proxy", "%s mode, %d prefill + %d decode instances, listening on %s:%u",
            modes[cfg.mode], cfg.n_inst[0], cfg.n_inst[1], cfg.host, mc_proxy_port(g_px));
    printf("listening on http://%s:%u\n", cfg.host, mc_proxy_port(g_px));
    fflush(stdout);
    rc = mc_proxy_run(g_px);
    mc_proxy_free(g_px);
    g_px = NULL;
    return rc < 0 ? 1 : 0;
}
