/* mooncake_client: the standalone store client (upstream's real_client_main),
 * a thin main() over libmooncake_store. It mounts a --global_segment_size
 * segment of its DRAM to the master, keeps it alive with heartbeats, and
 * serves dummy clients (MooncakeDistributedStore.setup_dummy in serving
 * processes) on --port: they ask it for the pool's configuration over HTTP
 * (store_srv.h; docs/store.md "Standalone client and dummy clients") and then
 * put into and get from the pool themselves, so their bytes land in this
 * process's segment.
 *
 * Flags are upstream's (spec §5.3), `--flag=value` or `--flag value`
 * (base_flags.h); sizes as upstream's C++ parser ("4 GB", "512MB", "0").
 * On start it prints, flushed:
 *   mooncake_client: store HOST:PORT mounted N bytes on master ADDR
 *   mooncake_client: dummy clients listening on HOST:PORT  (HOST: --host's address)
 *   [mooncake_client: http listening on HOST:PORT]         (--enable_http_server)
 *   mooncake_client: ready
 * SIGINT or SIGTERM unmount the segment and exit 0. A bad command line exits
 * 2 with the message and the usage; a failure to start exits 1. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base_fdlimit.h"
#include "base_flags.h"
#include "base_log.h"
#include "base_sig.h"
#include "mooncake/store.h"
#include "net_sock.h"
#include "store_srv.h"
#include "base_version.h"
#include "net_auth.h"
#include "net_tls.h"

static const char *const prog = "mooncake_client";

typedef struct {
    char host[256];
    char metadata_server[1024];
    char device_names[256];
    char master_server_address[256];
    char protocol[32];
    int port;
    uint64_t global_segment_size;
    uint64_t local_buffer_size;
    int threads;
    char tenant_id[128];
    int enable_offload;
    int start_offload_rpc_server;
    int enable_http_server;
    int http_port;
    char cluster_secret_file[4096];
    char tls_cert_file[4096], tls_key_file[4096], tls_ca_file[4096];
} cl_flags_t;

enum { CL_STR, CL_INT, CL_SIZE, CL_BOOL };

typedef struct {
    const char *name;
    int type;
    size_t off, size;
    int lo, hi; /* CL_INT bounds */
    const char *def;
    const char *help;
} cl_def_t;

#define CL_F(field) offsetof(cl_flags_t, field), sizeof(((cl_flags_t *)0)->field)

static const cl_def_t cl_defs[] = {
    {"host", CL_STR, CL_F(host), 0, 0, "0.0.0.0",
     "this store's hostname or IP (\"ip:port\" fixes the port); 0.0.0.0 = this host's address"},
    {"metadata_server", CL_STR, CL_F(metadata_server), 0, 0, "http://127.0.0.1:8080/metadata",
     "transfer-engine metadata (http://... or P2PHANDSHAKE)"},
    {"device_names", CL_STR, CL_F(device_names), 0, 0, "", "RDMA devices (unused by tcp)"},
    {"master_server_address", CL_STR, CL_F(master_server_address), 0, 0, "127.0.0.1:50051",
     "mooncake_master RPC address"},
    {"protocol", CL_STR, CL_F(protocol), 0, 0, "tcp", "transfer protocol"},
    {"port", CL_INT, CL_F(port), 0, 65535, "50052",
     "port dummy clients connect to (HTTP); 0 = any free port"},
    {"global_segment_size", CL_SIZE, CL_F(global_segment_size), 0, 0, "4 GB",
     "DRAM contributed to the pool (\"4 GB\", \"512MB\", bytes)"},
    {"local_buffer_size", CL_SIZE, CL_F(local_buffer_size), 0, 0, "0", "staging buffer size"},
    {"threads", CL_INT, CL_F(threads), 1, 1024, "1",
     "accepted; the transfer engine runs one worker per CPU"},
    {"tenant_id", CL_STR, CL_F(tenant_id), 0, 0, "default",
     "reported to dummy clients; tenants are not implemented"},
    {"enable_offload", CL_BOOL, CL_F(enable_offload), 0, 0, "false",
     "SSD tier on MOONCAKE_OFFLOAD_FILE_STORAGE_PATH (the master needs --enable_offload)"},
    {"start_offload_rpc_server", CL_BOOL, CL_F(start_offload_rpc_server), 0, 0, "true",
     "accepted; the SSD tier's staging server always runs with --enable_offload"},
    {"enable_http_server", CL_BOOL, CL_F(enable_http_server), 0, 0, "false",
     "also serve /health and /v1/client_config on --http_port"},
    {"http_port", CL_INT, CL_F(http_port), 0, 65535, "9300", "its port; 0 = any free port"},
    {"cluster_secret_file", CL_STR, CL_F(cluster_secret_file), 0, 0, "",
     "file holding the cluster secret (docs/security.md); default MC_CLUSTER_SECRET(_FILE)"},
    {"tls_cert_file", CL_STR, CL_F(tls_cert_file), 0, 0, "",
     "PEM certificate this client presents (mutual TLS; docs/security.md); default "
     "MC_TLS_CERT_FILE"},
    {"tls_key_file", CL_STR, CL_F(tls_key_file), 0, 0, "",
     "PEM private key of --tls_cert_file; default MC_TLS_KEY_FILE"},
    {"tls_ca_file", CL_STR, CL_F(tls_ca_file), 0, 0, "",
     "PEM cluster CA: the master and metadata server are TLS and must prove it signed their "
     "certificates; default MC_TLS_CA_FILE"},
};
#define CL_NDEFS (sizeof cl_defs / sizeof cl_defs[0])

static int cl_lookup(void *ctx, const char *name, size_t len, int *is_bool)
{
    (void)ctx;
    for (size_t i = 0; i < CL_NDEFS; i++)
        if (strlen(cl_defs[i].name) == len && !memcmp(cl_defs[i].name, name, len)) {
            *is_bool = cl_defs[i].type == CL_BOOL;
            return (int)i;
        }
    return -1;
}

static int cl_apply(void *ctx, int idx, const char *v, const char *what, char *err, size_t errlen)
{
    const cl_def_t *d = &cl_defs[idx];
    char *dst = (char *)ctx + d->off;
    switch (d->type) {
    case CL_STR:
        if (strlen(v) >= d->size) {
            snprintf(err, errlen, "bad value for %s: longer than %zu bytes", what, d->size - 1);
            return -EINVAL;
        }
        memcpy(dst, v, strlen(v) + 1);
        return 0;
    case CL_INT: {
        char *end;
        errno = 0;
        long x = strtol(v, &end, 10);
        if (!*v || *end || errno || x < d->lo || x > d->hi) {
            snprintf(err, errlen, "bad value '%s' for %s: want an integer in [%d, %d]", v, what,
                     d->lo, d->hi);
            return -EINVAL;
        }
        *(int *)dst = (int)x;
        return 0;
    }
    case CL_SIZE:
        if (mc_parse_byte_size(v, (uint64_t *)dst)) {
            snprintf(err, errlen,
                     "bad value '%s' for %s: want a size like \"4 GB\", \"512MB\" or bytes", v,
                     what);
            return -EINVAL;
        }
        return 0;
    default: {
        int b = mc_flags_bool_word(v);
        if (b < 0) {
            snprintf(err, errlen, "bad value '%s' for %s: want true or false", v, what);
            return -EINVAL;
        }
        *(int *)dst = b;
        return 0;
    }
    }
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: %s [--flag=value | --flag value | --bool_flag | --nobool_flag] ...\n"
            "The standalone store client: mounts a segment to the master and serves dummy\n"
            "clients (setup_dummy) on --port. Flags:\n",
            prog);
    for (size_t i = 0; i < CL_NDEFS; i++)
        fprintf(out, "  --%-26s %s (default \"%s\")\n", cl_defs[i].name, cl_defs[i].help,
                cl_defs[i].def);
    fprintf(out, "  --%-26s %s (default \"text\")\n", "log_format",
            "log lines on stderr: text, or json (one object per line; MC_LOG_FORMAT)");
    fprintf(out, "  --%-26s show this help and exit\n", "help");
    fprintf(out, "  --%-26s print the version and exit\n", "version");
}

/* Parses argv into f (defaults first). 0, MC_FLAGS_HELP or -EINVAL (err). */
static int parse(cl_flags_t *f, int argc, char **argv, char *err, size_t errlen)
{
    memset(f, 0, sizeof *f);
    for (size_t i = 0; i < CL_NDEFS; i++) {
        int rc = cl_apply(f, (int)i, cl_defs[i].def, cl_defs[i].name, err, errlen);
        if (rc) return rc; /* a bad default: a bug, reported as such */
    }
    const mc_flags_ops_t ops = {cl_lookup, cl_apply, f};
    int rc = mc_flags_scan(argc, argv, &ops, err, errlen);
    if (rc) return rc;
    if (!f->host[0] || !f->master_server_address[0] || !f->metadata_server[0]) {
        snprintf(err, errlen,
                 "--host, --master_server_address and --metadata_server must not be "
                 "empty");
        return -EINVAL;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (mc_version_flag(argc, argv, prog)) return 0;
    cl_flags_t fl;
    char err[512];
    if (mc_log_take_format_flag(&argc, argv, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", prog, err);
        usage(stderr);
        return 2;
    }
    int rc = parse(&fl, argc, argv, err, sizeof err);
    if (rc == MC_FLAGS_HELP) {
        usage(stdout);
        return 0;
    }
    if (rc) {
        fprintf(stderr, "%s: %s\n", prog, err);
        usage(stderr);
        return 2;
    }
    if (fl.cluster_secret_file[0] &&
        mc_auth_use_secret_file(fl.cluster_secret_file, err, sizeof err)) {
        fprintf(stderr, "%s: --cluster_secret_file: %s\n", prog, err);
        return 2;
    }
    if (mc_tls_use_files(fl.tls_cert_file, fl.tls_key_file, fl.tls_ca_file, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", prog, err);
        return 2;
    }
    if (fl.threads != 1)
        MC_LOGI("client", "--threads=%d: the transfer engine runs one worker per CPU", fl.threads);

    /* 0.0.0.0 cannot name a store that peers connect to: advertise this host.
     * The dummy-client and http ports bind what --host names (its address
     * part), all addresses only for 0.0.0.0. */
    char host[256], bind_host[256];
    if (!strcmp(fl.host, "0.0.0.0"))
        mc_net_local_ip(host, sizeof host);
    else
        snprintf(host, sizeof host, "%s", fl.host);
    snprintf(bind_host, sizeof bind_host, "%s", fl.host);
    char *colon = strrchr(bind_host, ':');
    if (colon && !strchr(bind_host, ']') && strchr(bind_host, ':') == colon) *colon = '\0';
    const char *listen_host = strcmp(bind_host, "0.0.0.0") ? bind_host : NULL;

    /* Block the stop signals before any thread starts (they inherit the mask). */
    sigset_t stop;
    mc_sig_block_stop(&stop);
    /* Room for the HTTP ports' connection limits (MC_HTTP_MAX_CONNECTIONS). */
    mc_fdlimit_raise(65536);

    int code = 1;
    mc_store_t *s = NULL;
    mc_store_srv_t *srv = NULL, *http = NULL;
    char name[512];
    if (mc_store_create(&s)) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return 1;
    }
    if (fl.enable_offload) (void)mc_store_set_ssd_offload(s, 1, NULL);
    rc = mc_store_setup(s, host, fl.metadata_server, fl.global_segment_size, fl.local_buffer_size,
                        fl.protocol, fl.device_names, fl.master_server_address);
    if (rc) {
        fprintf(stderr, "%s: cannot set up the store on master %s: error %d (%s)\n", prog,
                fl.master_server_address, rc, mc_err_name(rc));
        goto out;
    }
    mc_store_get_hostname(s, name, sizeof name);
    printf("%s: store %s mounted %" PRIu64 " bytes on master %s\n", prog, name,
           fl.global_segment_size, fl.master_server_address);
    fflush(stdout);

    const mc_store_srv_info_t info = {
        fl.master_server_address, fl.metadata_server,  fl.protocol, fl.device_names, fl.tenant_id,
        fl.global_segment_size,   fl.local_buffer_size};
    rc = mc_store_srv_start(s, &info, listen_host, (uint16_t)fl.port, &srv);
    if (rc) {
        fprintf(stderr, "%s: cannot serve dummy clients on port %d: %s\n", prog, fl.port,
                strerror(-rc));
        goto out;
    }
    printf("%s: dummy clients listening on %s:%u\n", prog, listen_host ? listen_host : "0.0.0.0",
           mc_store_srv_port(srv));
    if (fl.enable_http_server) {
        rc = mc_store_srv_start(s, &info, listen_host, (uint16_t)fl.http_port, &http);
        if (rc) {
            fprintf(stderr, "%s: cannot serve http on port %d: %s\n", prog, fl.http_port,
                    strerror(-rc));
            goto out;
        }
        printf("%s: http listening on %s:%u\n", prog, listen_host ? listen_host : "0.0.0.0",
               mc_store_srv_port(http));
    }
    printf("%s: ready\n", prog);
    fflush(stdout);

    int sig = mc_sig_wait_stop(&stop);
    MC_LOGI("client", "signal %d, unmounting and stopping", sig);
    code = 0;
out:
    mc_store_srv_stop(http);
    mc_store_srv_stop(srv);
    rc = mc_store_close(s);
    if (rc && code == 0) MC_LOGW("client", "close: error %d (%s)", rc, mc_err_name(rc));
    mc_store_destroy(s);
    return code;
}
