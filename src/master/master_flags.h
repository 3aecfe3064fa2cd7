/* master_flags.h: mooncake_master's command line and config file, compatible
 * with upstream's gflags (spec §1.15): `--flag=value`, `--flag value`, one or
 * two leading dashes, bare `--flag` / `--noflag` for booleans, durations as
 * milliseconds or "500ms"/"10s"/"1m"/"1h", and `--config_path` naming a JSON
 * file whose keys are the flag names (except client_ttl -> client_live_ttl_sec;
 * port, max_threads and config_path are flag-only). Flags given explicitly on
 * the command line win over the file; the file wins over the defaults.
 * Upstream flags that this master does not implement are listed by name: they
 * are accepted with a warning; any other name is an error.
 * Thread rule: the functions touch only their arguments (parse also reads the
 * config file and logs warnings); call them from any one thread.
 * Errors: 0 or a negative errno; messages go to the caller's buffer. */
#ifndef MC_MASTER_FLAGS_H
#define MC_MASTER_FLAGS_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "master_service.h"

#define MC_MASTER_FLAGS_HELP 1 /* parse result: --help was given */

typedef struct {
    char config_path[1024];
    int port;           /* --port, deprecated alias of rpc_port (50051) */
    int rpc_port;       /* 0: use port */
    int rpc_thread_num; /* 0: min(max_threads, cores) */
    int max_threads;    /* 16 */
    char rpc_address[256];
    char rpc_interface[64]; /* NIC whose IPv4 overrides rpc_address ("" = none) */
    int metrics_port;       /* 9003 */
    char metrics_host[256];
    char admin_api_key[256]; /* "": MC_ADMIN_API_KEY, else none (docs/master.md) */
    char cluster_secret_file[4096]; /* "": MC_CLUSTER_SECRET(_FILE), else none */
    char tls_cert_file[4096], tls_key_file[4096], tls_ca_file[4096]; /* "": MC_TLS_*_FILE */
    int enable_http_metadata_server;
    int http_metadata_server_port; /* 8080 */
    char http_metadata_server_host[256];
    char cluster_id[129];
    int enable_ha;
    int enable_ha_replication; /* with enable_ha (docs/master.md "HA replication") */
    char ha_backend_type[16];
    char ha_backend_connstring[1024];
    char etcd_endpoints[1024];
    int enable_metadata_cleanup_on_timeout;
    int ignored_count; /* upstream flags accepted but not implemented */
    /* persistence (ours; docs/master.md "Persistence and recovery") */
    int enable_persistence;  /* true */
    char persist_dir[1024];  /* "": the default below */
    char root_fs_dir[1024];  /* upstream's legacy DISK replica: the SSD tier (core.root_fs_dir) */
    mc_master_config_t core; /* what mc_master_new gets */
} mc_master_flags_t;

/* Fills f with upstream's defaults. */
void mc_master_flags_default(mc_master_flags_t *f);

/* Parses argv[1..argc) (and the --config_path file, if any) into f, starting
 * from the defaults. Returns 0, MC_MASTER_FLAGS_HELP when --help was given, or
 * -EINVAL with a one-line message naming the flag (or config key, with line
 * and column for JSON syntax errors) and the bad value in err (NUL-terminated,
 * truncated to errlen). argv is not modified nor kept. */
int mc_master_flags_parse(mc_master_flags_t *f, int argc, char *const argv[], char *err,
                          size_t errlen);

/* The RPC port to serve on: rpc_port, or port when rpc_port is 0. */
uint16_t mc_master_flags_rpc_port(const mc_master_flags_t *f);

/* When rpc_interface is set, replaces rpc_address with that interface's first
 * IPv4 address. Returns 0, or -ENODEV (message in err) when it has none. */
int mc_master_flags_resolve_interface(mc_master_flags_t *f, char *err, size_t errlen);

/* The persistence directory to use: --persist_dir, or by default
 * $XDG_STATE_HOME/mooncake/master-<rpc port> ($HOME/.local/state when
 * XDG_STATE_HOME is unset). Returns 1 with the path in buf; 0 when
 * persistence is off: --enable_persistence=false, or the RPC port is 0 and no
 * --persist_dir was given (a master on a port picked at random cannot be
 * restarted at the same address, and its files would be found by an unrelated
 * master that gets the same port later); -ENOENT (message in err) when no
 * default can be formed (neither variable set). */
int mc_master_flags_persist_dir(const mc_master_flags_t *f, char *buf, size_t cap, char *err,
                                size_t errlen);

/* Writes the usage text (every implemented flag with its default, then the
 * accepted-but-ignored upstream names). */
void mc_master_flags_usage(FILE *out, const char *prog);

/* Parses a duration: a number of milliseconds, or N followed by ms, s, m or h.
 * Returns 0 or -EINVAL (also on overflow). */
int mc_master_parse_duration_ms(const char *s, uint64_t *ms);
#endif
