/* mooncake_http_metadata_server: the standalone HTTP metadata server, a thin
 * main() around src/metasrv. Command line as upstream's console script:
 *   mooncake_http_metadata_server [--port 8080] [--host 0.0.0.0] [--log-level INFO]
 * Prints "listening on <host>:<port>" once serving (port 0 picks a free port and
 * prints the real one) and runs until SIGINT or SIGTERM, then exits 0. A bad
 * command line exits 2 with the usage; a failure to start exits 1. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base_fdlimit.h"
#include "base_log.h"
#include "base_sig.h"
#include "metasrv.h"
#include "base_version.h"
#include "net_auth.h"
#include "net_tls.h"

static const char *prog = "mooncake_http_metadata_server";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s [--port PORT] [--host HOST] [--log-level LEVEL] [--help] [--version]\n"
            "  --port PORT        TCP port to listen on, 0 = any free port (default 8080)\n"
            "  --host HOST        address to bind (default 0.0.0.0)\n"
            "  --log-level LEVEL  DEBUG, INFO, WARNING, ERROR or CRITICAL (default INFO)\n"
            "  --log_format FMT   text or json (one object per line; default text)\n"
            "  --cluster-secret-file FILE  the cluster secret every request must prove\n"
            "                     (docs/security.md; default MC_CLUSTER_SECRET(_FILE))\n"
            "  --tls-cert-file FILE, --tls-key-file FILE  serve HTTPS with this PEM\n"
            "                     certificate and key (default MC_TLS_CERT_FILE/KEY_FILE)\n"
            "  --tls-ca-file FILE  require client certificates signed by this CA (mutual\n"
            "                     TLS; default MC_TLS_CA_FILE)\n"
            "  --help             show this help and exit\n"
            "  --version          print the version and exit\n"
            "Serves GET/PUT/DELETE /metadata?key=K and GET /health.\n",
            prog);
}

static int bad_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "%s: ", prog);
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    usage(stderr);
    return 2;
}

/* Maps a Python-style level name to MC_LOG_LEVEL's vocabulary; NULL if unknown. */
static const char *map_level(const char *v)
{
    static const struct {
        const char *in, *out;
    } t[] = {{"debug", "debug"}, {"trace", "debug"}, {"info", "info"},      {"warning", "warn"},
             {"warn", "warn"},   {"error", "error"}, {"critical", "error"}, {"fatal", "error"}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (!strcasecmp(v, t[i].in)) return t[i].out;
    return NULL;
}

int main(int argc, char **argv)
{
    if (mc_version_flag(argc, argv, "mooncake_http_metadata_server")) return 0;
    const char *host = "0.0.0.0";
    long port = 8080;
    const char *tls_cert = NULL, *tls_key = NULL, *tls_ca = NULL;
    char lerr[256];
    if (mc_log_take_format_flag(&argc, argv, lerr, sizeof lerr)) return bad_usage("%s", lerr);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (strncmp(a, "--", 2) != 0) return bad_usage("unexpected argument '%s'", a);
        const char *eq = strchr(a, '=');
        size_t nl = eq ? (size_t)(eq - a) : strlen(a);
        const char *val;
        char name[32];
        if (nl >= sizeof name) return bad_usage("unknown flag '%s'", a);
        memcpy(name, a, nl);
        name[nl] = '\0';
        /* Upstream's flags are spelled with '-'; accept '_' as well. */
        for (char *p = name + 2; *p; p++)
            if (*p == '_') *p = '-';
        if (strcmp(name, "--port") && strcmp(name, "--host") && strcmp(name, "--log-level") &&
            strcmp(name, "--cluster-secret-file") && strcmp(name, "--tls-cert-file") &&
            strcmp(name, "--tls-key-file") && strcmp(name, "--tls-ca-file"))
            return bad_usage("unknown flag '%s'", a);
        if (eq) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            return bad_usage("flag '%s' needs a value", a);
        }
        if (!strcmp(name, "--port")) {
            char *end;
            errno = 0;
            port = strtol(val, &end, 10);
            if (!*val || *end || errno || port < 0 || port > 65535)
                return bad_usage("bad --port value '%s' (want 0..65535)", val);
        } else if (!strcmp(name, "--cluster-secret-file")) {
            char why[512];
            if (mc_auth_use_secret_file(val, why, sizeof why)) return bad_usage("%s", why);
        } else if (!strcmp(name, "--tls-cert-file")) {
            tls_cert = val;
        } else if (!strcmp(name, "--tls-key-file")) {
            tls_key = val;
        } else if (!strcmp(name, "--tls-ca-file")) {
            tls_ca = val;
        } else if (!strcmp(name, "--host")) {
            if (!*val) return bad_usage("bad --host value '%s' (empty)", val);
            host = val;
        } else {
            const char *lvl = map_level(val);
            if (!lvl) return bad_usage("bad --log-level value '%s'", val);
            setenv("MC_LOG_LEVEL", lvl, 1); /* read by the logger on first use */
        }
    }

    char terr[4352];
    if (mc_tls_use_files(tls_cert, tls_key, tls_ca, terr, sizeof terr)) {
        fprintf(stderr, "%s: %s\n", prog, terr);
        return 2;
    }

    /* Block the stop signals before MHD starts its threads (they inherit the
     * mask), so that only mc_sig_wait_stop below sees them. */
    sigset_t stop;
    mc_sig_block_stop(&stop);
    /* Room for the listener's connection limit (MC_HTTP_MAX_CONNECTIONS). */
    mc_fdlimit_raise(65536);

    mc_metasrv_t *srv = NULL;
    int rc = mc_metasrv_start(host, (uint16_t)port, &srv);
    if (rc) {
        fprintf(stderr, "%s: cannot serve on %s:%ld: %s\n", prog, host, port, strerror(-rc));
        return 1;
    }
    printf("listening on %s:%u\n", host, mc_metasrv_port(srv));
    fflush(stdout);

    int sig = mc_sig_wait_stop(&stop);
    MC_LOGI("metasrv", "signal %d, stopping", sig);
    mc_metasrv_stop(srv);
    return 0;
}
