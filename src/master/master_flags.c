/* master_flags.c: mooncake_master's flags and JSON config file. One table
 * (mf_defs) describes every flag this master knows: its type, where it is
 * stored in mc_master_flags_t, its bounds, its default (applied through the
 * same parser as user values, so the usage text and the defaults cannot
 * disagree) and its config-file key. Upstream flags we do not implement are in
 * the table too, with no storage: their values are still checked against their
 * type, then ignored with a warning. Parsing goes in three steps: defaults,
 * then the command line (recording which flags were explicit), then the config
 * file for the keys the command line did not set; cross-flag checks last. */
#include "master_flags.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ifaddrs.h>
#include <inttypes.h>
#include <math.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "base_flags.h"
#include "base_log.h"

enum {
    MF_BOOL,     /* int 0/1 */
    MF_INT,      /* int in [lo, hi] */
    MF_U64,      /* uint64_t in [lo, hi] (ignored flags only) */
    MF_SEC_MS,   /* seconds in [lo, hi], stored as uint64_t milliseconds */
    MF_DUR_MS,   /* duration, stored as uint64_t milliseconds */
    MF_DOUBLE,   /* double in [dlo, dhi] */
    MF_STR,      /* char[size] */
    MF_STRATEGY, /* mc_alloc_strategy_t */
    MF_CLUSTER,  /* char[size] of [0-9A-Za-z_.-], 1..128 */
};

enum {
    MF_IGNORED = 1,     /* upstream flag we accept and ignore */
    MF_REJECT_TRUE = 2, /* ignored bool whose "true" would promise a missing feature */
    MF_FLAG_ONLY = 4,   /* not read from the config file */
};

#define MF_NONE ((size_t)-1)
#define MF_F(field) offsetof(mc_master_flags_t, field), sizeof(((mc_master_flags_t *)0)->field)
#define MF_C(field)                                                                                \
    offsetof(mc_master_flags_t, core.field), sizeof(((mc_master_flags_t *)0)->core.field)

typedef struct {
    const char *name;
    int type;
    size_t off, size; /* MF_NONE for ignored flags */
    int64_t lo, hi;   /* integer bounds (MF_INT, MF_U64 as unsigned, MF_SEC_MS) */
    double dlo, dhi;  /* MF_DOUBLE bounds */
    const char *def;  /* default, as it would be written on the command line */
    int attr;         /* MF_IGNORED... */
    const char *cfg;  /* config-file key when not the name */
    const char *help;
} mf_def_t;

static const mf_def_t mf_defs[] = {
    {"config_path", MF_STR, MF_F(config_path), 0, 0, 0, 0, "", MF_FLAG_ONLY, NULL,
     "JSON config file; explicit flags win over it"},
    {"port", MF_INT, MF_F(port), 0, 65535, 0, 0, "50051", MF_FLAG_ONLY, NULL,
     "RPC port (deprecated alias of --rpc_port); 0 = any free port"},
    {"rpc_port", MF_INT, MF_F(rpc_port), 0, 65535, 0, 0, "0", 0, NULL, "RPC port; 0 = use --port"},
    {"rpc_address", MF_STR, MF_F(rpc_address), 0, 0, 0, 0, "0.0.0.0", 0, NULL, "RPC bind address"},
    {"rpc_interface", MF_STR, MF_F(rpc_interface), 0, 0, 0, 0, "", 0, NULL,
     "network interface whose IPv4 address overrides --rpc_address"},
    {"rpc_thread_num", MF_INT, MF_F(rpc_thread_num), 0, 1024, 0, 0, "0", 0, NULL,
     "RPC event loops, each on its own thread; 0 = min(--max_threads, cores, 64)"},
    {"max_threads", MF_INT, MF_F(max_threads), 1, 1024, 0, 0, "16", MF_FLAG_ONLY, NULL,
     "RPC threads (deprecated)"},
    {"metrics_port", MF_INT, MF_F(metrics_port), 0, 65535, 0, 0, "9003", 0, NULL,
     "admin/metrics HTTP port; 0 = any free port"},
    {"metrics_host", MF_STR, MF_F(metrics_host), 0, 0, 0, 0, "0.0.0.0", 0, NULL,
     "admin/metrics HTTP bind address"},
    {"admin_api_key", MF_STR, MF_F(admin_api_key), 0, 0, 0, 0, "", 0, NULL,
     "key the admin endpoints that change state require (Authorization: Bearer KEY); "
     "default MC_ADMIN_API_KEY; with none they are served only on a loopback --metrics_host"},
    {"cluster_secret_file", MF_STR, MF_F(cluster_secret_file), 0, 0, 0, 0, "", 0, NULL,
     "file holding the cluster secret every connection must prove (docs/security.md); "
     "default MC_CLUSTER_SECRET / MC_CLUSTER_SECRET_FILE; with none the pool is open"},
    {"tls_cert_file", MF_STR, MF_F(tls_cert_file), 0, 0, 0, 0, "", 0, NULL,
     "PEM certificate: the RPC, metadata and admin listeners serve TLS (docs/security.md); "
     "default MC_TLS_CERT_FILE; with none they are plaintext"},
    {"tls_key_file", MF_STR, MF_F(tls_key_file), 0, 0, 0, 0, "", 0, NULL,
     "PEM private key of --tls_cert_file; default MC_TLS_KEY_FILE"},
    {"tls_ca_file", MF_STR, MF_F(tls_ca_file), 0, 0, 0, 0, "", 0, NULL,
     "PEM cluster CA: clients must present a certificate it signed (mutual TLS); default "
     "MC_TLS_CA_FILE"},
    {"default_kv_lease_ttl", MF_DUR_MS, MF_C(default_kv_lease_ttl_ms), 0, 0, 0, 0, "10000", 0, NULL,
     "read lease granted by a get (ms, or 500ms/10s/1m/1h)"},
    {"default_kv_soft_pin_ttl", MF_DUR_MS, MF_C(default_kv_soft_pin_ttl_ms), 0, 0, 0, 0, "1800000",
     0, NULL, "soft pin lifetime (duration)"},
    {"max_kv_soft_pin_ttl", MF_DUR_MS, MF_C(max_kv_soft_pin_ttl_ms), 0, 0, 0, 0, "86400000", 0,
     NULL, "longest soft pin a client may ask for (duration)"},
    {"allow_evict_soft_pinned_objects", MF_BOOL, MF_C(allow_evict_soft_pinned_objects), 0, 0, 0, 0,
     "true", 0, NULL, "soft-pinned objects may be evicted (last)"},
    {"eviction_ratio", MF_DOUBLE, MF_C(eviction_ratio), 0, 0, 0.0, 1.0, "0.05", 0, NULL,
     "share of capacity freed by one eviction pass, in [0, 1]"},
    {"eviction_high_watermark_ratio", MF_DOUBLE, MF_C(eviction_high_watermark_ratio), 0, 0, 0.0,
     1.0, "0.9", 0, NULL, "usage above which eviction runs, in [0, 1]"},
    {"client_ttl", MF_SEC_MS, MF_C(client_ttl_ms), 1, INT64_MAX / 1000, 0, 0, "10", 0,
     "client_live_ttl_sec", "seconds without a heartbeat after which a client is dead"},
    {"put_start_discard_timeout_sec", MF_SEC_MS, MF_C(put_start_discard_timeout_ms), 0,
     INT64_MAX / 1000, 0, 0, "30", 0, NULL,
     "seconds after which an unfinished put may be preempted"},
    {"put_start_release_timeout_sec", MF_SEC_MS, MF_C(put_start_release_timeout_ms), 0,
     INT64_MAX / 1000, 0, 0, "600", 0, NULL,
     "seconds after which an unfinished put's space is released"},
    {"allocation_strategy", MF_STRATEGY, MF_C(allocation_strategy), 0, 0, 0, 0, "random", 0, NULL,
     "random or free_ratio_first"},
    {"enable_http_metadata_server", MF_BOOL, MF_F(enable_http_metadata_server), 0, 0, 0, 0, "false",
     0, NULL, "also serve the HTTP metadata server"},
    {"http_metadata_server_port", MF_INT, MF_F(http_metadata_server_port), 0, 65535, 0, 0, "8080",
     0, NULL, "its port; 0 = any free port"},
    {"http_metadata_server_host", MF_STR, MF_F(http_metadata_server_host), 0, 0, 0, 0, "0.0.0.0", 0,
     NULL, "its bind address"},
    {"cluster_id", MF_CLUSTER, MF_F(cluster_id), 0, 0, 0, 0, "mooncake_cluster", 0, NULL,
     "cluster name ([0-9A-Za-z_.-], at most 128)"},
    /* HA (docs/master.md "HA masters") */
    {"enable_ha", MF_BOOL, MF_F(enable_ha), 0, 0, 0, 0, "false", 0, NULL,
     "elect a leader among masters on etcd; only the leader serves"},
    {"enable_ha_replication", MF_BOOL, MF_F(enable_ha_replication), 0, 0, 0, 0, "true", 0, NULL,
     "with --enable_ha: standbys follow the leader's journal and a new leader serves the whole "
     "index (MC_MASTER_REPL=0 also turns it off)"},
    {"ha_backend_type", MF_STR, MF_F(ha_backend_type), 0, 0, 0, 0, "etcd", 0, NULL,
     "where the election runs: etcd or redis"},
    {"ha_backend_connstring", MF_STR, MF_F(ha_backend_connstring), 0, 0, 0, 0, "", 0, NULL,
     "its endpoints (h1:2379;h2:2379); empty: --etcd_endpoints"},
    {"etcd_endpoints", MF_STR, MF_F(etcd_endpoints), 0, 0, 0, 0, "", 0, NULL,
     "etcd endpoints (h1:2379;h2:2379) for --enable_ha"},
    {"enable_metadata_cleanup_on_timeout", MF_BOOL, MF_F(enable_metadata_cleanup_on_timeout), 0, 0,
     0, 0, "false", 0, NULL,
     "delete an expired client's TE records from the metadata store (MOONCAKE_TE_META_DATA_SERVER, "
     "the metadata_server of MOONCAKE_CONFIG_PATH, or the embedded server)"},

    /* SSD tier (docs/store.md "SSD tier") */
    {"enable_offload", MF_BOOL, MF_C(enable_offload), 0, 0, 0, 0, "false", 0, NULL,
     "serve the SSD tier: clients with enable_ssd_offload keep objects on their local disk"},
    {"offload_on_evict", MF_BOOL, MF_C(offload_on_evict), 0, 0, 0, 0, "false", 0, NULL,
     "offload an object when it is evicted from DRAM (default: at put end)"},
    {"promotion_on_hit", MF_BOOL, MF_C(promotion_on_hit), 0, 0, 0, 0, "false", 0, NULL,
     "copy objects held on disk only back to DRAM once they are hot"},
    {"promotion_admission_threshold", MF_INT, MF_C(promotion_admission_threshold), 1, 1000000, 0, 0,
     "2", 0, NULL, "gets of a disk-only object before it is promoted"},
    {"root_fs_dir", MF_STR, MF_F(root_fs_dir), 0, 0, 0, 0, "", 0, NULL,
     "upstream's legacy DISK replica: turns the SSD tier on (--enable_offload); stores set up "
     "without enable_ssd_offload keep their objects under DIR/store-N"},

    /* persistence (ours): mc_master_flags_persist_dir */
    {"enable_persistence", MF_BOOL, MF_F(enable_persistence), 0, 0, 0, 0, "true", 0, NULL,
     "log index mutations to --persist_dir and restore the objects at start"},
    {"persist_dir", MF_STR, MF_F(persist_dir), 0, 0, 0, 0, "", 0, NULL,
     "persistence directory (default $XDG_STATE_HOME or ~/.local/state, "
     "/mooncake/master-[<rpc address>-]<rpc port>; off for port 0 unless given)"},

/* Upstream flags accepted for compatibility; the value is checked, then ignored. */
#define MF_IGN(n, t, d)                                                                            \
    {                                                                                              \
        n, t, MF_NONE, 0, INT64_MIN, INT64_MAX, -INFINITY, INFINITY, d, MF_IGNORED, NULL, NULL     \
    }
#define MF_IGNB(n, d) MF_IGN(n, MF_BOOL, d)
#define MF_IGNI(n, d) MF_IGN(n, MF_INT, d)
#define MF_IGNU(n, d)                                                                              \
    {                                                                                              \
        n, MF_U64, MF_NONE, 0, 0, INT64_MAX, 0, 0, d, MF_IGNORED, NULL, NULL                       \
    }
#define MF_IGND(n, d) MF_IGN(n, MF_DOUBLE, d)
#define MF_IGNS(n, d) MF_IGN(n, MF_STR, d)
    MF_IGNI("rpc_conn_timeout_seconds", "0"),
    MF_IGNB("rpc_enable_tcp_no_delay", "true"),
    MF_IGNB("enable_metric_reporting", "true"),
    MF_IGND("nof_eviction_ratio", "0.05"),
    MF_IGND("nof_eviction_high_watermark_ratio", "0.9"),
    MF_IGNI("nof_heartbeat_interval_sec", "10"),
    MF_IGNI("nof_heartbeat_probe_timeout_ms", "1000"),
    MF_IGNI("nof_heartbeat_failures_threshold", "3"),

    MF_IGNB("enable_oplog", "false"),
    MF_IGNI("oplog_poll_interval_ms", "1000"),
    MF_IGNI("oplog_batch_max_entries", "1024"),
    MF_IGNI("batch_oplog_retry_timeout_sec", "180"),
    MF_IGN("global_file_segment_size", MF_INT, "0"),
    MF_IGNS("memory_allocator", "offset"),
    MF_IGNS("pod_name", ""),
    MF_IGNS("pod_namespace", ""),
    MF_IGNB("enable_disk_eviction", "true"),
    MF_IGNU("quota_bytes", "0"),
    MF_IGNB("enable_multi_tenants", "false"),
    MF_IGNS("tenant_quota_connector_type", "file"),
    MF_IGNS("tenant_quota_connector_uri", ""),
    MF_IGNB("offload_force_evict", "false"),
    MF_IGNU("offloading_queue_limit", "50000"),
    MF_IGND("offload_cap_ratio", "0.5"),
    MF_IGNU("promotion_queue_limit", "50000"),
    MF_IGNU("promotion_max_per_heartbeat", "1"),
    MF_IGNS("dynamic_replication_mode", "off"),
    MF_IGNU("dynamic_replication_heat_window_seconds", "10"),
    MF_IGND("dynamic_replication_admission_qps_threshold", "0.8"),
    MF_IGNU("dynamic_replication_max_memory_replicas", "2"),
    MF_IGNB("enable_kv_events", "false"),
    MF_IGNS("kv_events_bind_endpoint", ""),
    MF_IGNS("kv_events_backend_id", ""),
    MF_IGNS("kv_events_model_name", ""),
    MF_IGNS("kv_events_additional_salt", ""),
    MF_IGNS("kv_events_lora_name", ""),
    MF_IGNU("kv_events_block_size", "0"),
    MF_IGNU("kv_events_dp_rank", "0"),
    MF_IGNS("kv_events_tenant_id", "default"),
    MF_IGNB("kv_events_emit_legacy_compat", "true"),
    MF_IGNB("kv_events_emit_object_key", "true"),
    MF_IGNU("kv_events_queue_capacity", "65536"),
    MF_IGNB("enable_snapshot", "false"),
    MF_IGNB("enable_snapshot_restore", "false"),
    MF_IGNU("snapshot_interval_seconds", "600"),
    MF_IGNU("snapshot_child_timeout_seconds", "300"),
    MF_IGNU("snapshot_retention_count", "2"),
    MF_IGNS("snapshot_backup_dir", ""),
    MF_IGNS("snapshot_object_store_type", ""),
    MF_IGNS("snapshot_payload_store_type", ""),
    MF_IGNS("snapshot_payload_backend_type", ""),
    MF_IGNS("snapshot_catalog_store_type", ""),
    MF_IGNS("snapshot_catalog_store_connstring", ""),
    MF_IGNS("snapshot_catalog_backend_type", ""),
    MF_IGNS("snapshot_catalog_backend_connstring", ""),
    MF_IGNU("max_total_finished_tasks", "10000"),
    MF_IGNU("max_total_pending_tasks", "10000"),
    MF_IGNU("max_total_processing_tasks", "10000"),
    MF_IGNU("pending_task_timeout_sec", "300"),
    MF_IGNU("processing_task_timeout_sec", "300"),
    MF_IGNU("max_retry_attempts", "10"),
    MF_IGNB("enable_cxl", "false"),
    MF_IGNS("cxl_path", "/dev/dax0.0"),
    MF_IGNU("cxl_size", "8589934592"),
    MF_IGNS("log_dir", ""),
    /* glog's own flags, which upstream's binary also takes (log level: MC_LOG_LEVEL) */
    {"v", MF_INT, MF_NONE, 0, INT64_MIN, INT64_MAX, 0, 0, "0", MF_IGNORED | MF_FLAG_ONLY, NULL,
     NULL},
    {"minloglevel", MF_INT, MF_NONE, 0, INT64_MIN, INT64_MAX, 0, 0, "0", MF_IGNORED | MF_FLAG_ONLY,
     NULL, NULL},
    {"stderrthreshold", MF_INT, MF_NONE, 0, INT64_MIN, INT64_MAX, 0, 0, "2",
     MF_IGNORED | MF_FLAG_ONLY, NULL, NULL},
    {"logtostderr", MF_BOOL, MF_NONE, 0, 0, 0, 0, 0, "false", MF_IGNORED | MF_FLAG_ONLY, NULL,
     NULL},
    {"alsologtostderr", MF_BOOL, MF_NONE, 0, 0, 0, 0, 0, "false", MF_IGNORED | MF_FLAG_ONLY, NULL,
     NULL},
};
#define MF_NDEFS (sizeof mf_defs / sizeof mf_defs[0])

static const char *const mf_tag = "master";

static void mf_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void mf_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static const mf_def_t *mf_find(const char *name, size_t len)
{
    for (size_t i = 0; i < MF_NDEFS; i++)
        if (strlen(mf_defs[i].name) == len && !memcmp(mf_defs[i].name, name, len))
            return &mf_defs[i];
    return NULL;
}

/* Unsigned decimal without sign or spaces; -EINVAL when malformed or > UINT64_MAX. */
static int mf_u64(const char *s, uint64_t *out)
{
    if (!isdigit((unsigned char)*s)) return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return -EINVAL;
    *out = v;
    return 0;
}

/* Signed decimal; -EINVAL when malformed or out of int64 range. */
static int mf_i64(const char *s, int64_t *out)
{
    const char *p = s;
    if (*p == '-' || *p == '+') p++;
    if (!isdigit((unsigned char)*p)) return -EINVAL;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return -EINVAL;
    *out = v;
    return 0;
}

int mc_master_parse_duration_ms(const char *s, uint64_t *ms)
{
    if (!s || !isdigit((unsigned char)*s)) return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno) return -EINVAL;
    uint64_t mul;
    if (!*end || !strcmp(end, "ms")) {
        mul = 1;
    } else if (!strcmp(end, "s")) {
        mul = 1000;
    } else if (!strcmp(end, "m")) {
        mul = 60000;
    } else if (!strcmp(end, "h")) {
        mul = 3600000;
    } else {
        return -EINVAL;
    }
    if (v > UINT64_MAX / mul) return -EINVAL;
    *ms = (uint64_t)v * mul;
    return 0;
}

static int mf_cluster_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '_' && c != '.' && c != '-') return 0;
    }
    return 1;
}

/* Checks value v for flag d and, unless d has no storage (ignored flag),
 * stores it into f. `what` names the source for messages ("--eviction_ratio",
 * "config key 'eviction_ratio'"). Returns 0 or -EINVAL with err filled. */
static int mf_apply(mc_master_flags_t *f, const mf_def_t *d, const char *v, const char *what,
                    char *err, size_t errlen)
{
    char *dst = d->off == MF_NONE ? NULL : (char *)f + d->off;
    switch (d->type) {
    case MF_BOOL: {
        int b = mc_flags_bool_word(v);
        if (b < 0) goto bad_bool;
        if ((d->attr & MF_REJECT_TRUE) && b) {
            mf_err(err, errlen, "%s=%s: not supported by this master (no HA mode)", what, v);
            return -EINVAL;
        }
        if (dst) *(int *)dst = b;
        return 0;
    }
    case MF_INT: {
        int64_t x;
        if (mf_i64(v, &x) || x < d->lo || x > d->hi) {
            mf_err(err, errlen,
                   "bad value '%s' for %s: want an integer in [%" PRId64 ", %" PRId64 "]", v, what,
                   d->lo, d->hi);
            return -EINVAL;
        }
        if (dst) *(int *)dst = (int)x;
        return 0;
    }
    case MF_U64: {
        uint64_t x;
        if (mf_u64(v, &x) || x > (uint64_t)d->hi) {
            mf_err(err, errlen, "bad value '%s' for %s: want a non-negative integer", v, what);
            return -EINVAL;
        }
        if (dst) *(uint64_t *)dst = x;
        return 0;
    }
    case MF_SEC_MS: {
        uint64_t x;
        if (mf_u64(v, &x) || x < (uint64_t)d->lo || x > (uint64_t)d->hi) {
            mf_err(err, errlen,
                   "bad value '%s' for %s: want whole seconds in [%" PRId64 ", %" PRId64 "]", v,
                   what, d->lo, d->hi);
            return -EINVAL;
        }
        if (dst) *(uint64_t *)dst = x * 1000;
        return 0;
    }
    case MF_DUR_MS: {
        uint64_t ms;
        if (mc_master_parse_duration_ms(v, &ms)) {
            mf_err(err, errlen,
                   "bad value '%s' for %s: want milliseconds or a duration like 500ms, 10s, 1m, 1h",
                   v, what);
            return -EINVAL;
        }
        if (dst) *(uint64_t *)dst = ms;
        return 0;
    }
    case MF_DOUBLE: {
        char *end;
        errno = 0;
        double x = *v ? strtod(v, &end) : NAN;
        if (!*v || errno || *end || !isfinite(x) || x < d->dlo || x > d->dhi) {
            if (isfinite(d->dlo))
                mf_err(err, errlen, "bad value '%s' for %s: want a number in [%g, %g]", v, what,
                       d->dlo, d->dhi);
            else
                mf_err(err, errlen, "bad value '%s' for %s: want a number", v, what);
            return -EINVAL;
        }
        if (dst) *(double *)dst = x;
        return 0;
    }
    case MF_STR:
    case MF_CLUSTER:
        if (d->type == MF_CLUSTER && !mf_cluster_ok(v)) {
            mf_err(err, errlen, "bad value '%s' for %s: want 1 to 128 of [0-9A-Za-z_.-]", v, what);
            return -EINVAL;
        }
        if (dst) {
            if (strlen(v) >= d->size) {
                mf_err(err, errlen, "bad value for %s: longer than %zu bytes", what, d->size - 1);
                return -EINVAL;
            }
            memcpy(dst, v, strlen(v) + 1);
        }
        return 0;
    case MF_STRATEGY: {
        mc_alloc_strategy_t s;
        if (!strcmp(v, "random")) {
            s = MC_ALLOC_RANDOM;
        } else if (!strcmp(v, "free_ratio_first")) {
            s = MC_ALLOC_FREE_RATIO_FIRST;
        } else {
            mf_err(err, errlen,
                   "bad value '%s' for %s: want random or free_ratio_first (cxl, "
                   "ssd_free_ratio_first and local_first are not implemented)",
                   v, what);
            return -EINVAL;
        }
        if (dst) *(mc_alloc_strategy_t *)dst = s;
        return 0;
    }
    }
    mf_err(err, errlen, "internal error: flag %s has no type", d->name);
    return -EINVAL;
bad_bool:
    mf_err(err, errlen, "bad value '%s' for %s: want true or false", v, what);
    return -EINVAL;
}

void mc_master_flags_default(mc_master_flags_t *f)
{
    memset(f, 0, sizeof *f);
    for (size_t i = 0; i < MF_NDEFS; i++) {
        int rc = mf_apply(f, &mf_defs[i], mf_defs[i].def, mf_defs[i].name, NULL, 0);
        (void)rc;
    }
}

uint16_t mc_master_flags_rpc_port(const mc_master_flags_t *f)
{
    return (uint16_t)(f->rpc_port ? f->rpc_port : f->port);
}

static const char *mf_cfg_key(const mf_def_t *d)
{
    return d->cfg ? d->cfg : d->name;
}

/* Converts a JSON value to the text the flag parser takes. Strings must be
 * JSON strings; other flags take numbers, booleans, or strings. Returns 0, or
 * -EINVAL for a type that cannot be a value of d (null, object, array). */
static int mf_json_text(const mf_def_t *d, json_t *v, char *buf, size_t cap, const char **out)
{
    if (json_is_string(v)) {
        *out = json_string_value(v);
        return 0;
    }
    if (d->type == MF_STR || d->type == MF_CLUSTER || d->type == MF_STRATEGY) return -EINVAL;
    if (json_is_true(v)) {
        *out = "true";
    } else if (json_is_false(v)) {
        *out = "false";
    } else if (json_is_integer(v)) {
        snprintf(buf, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        *out = buf;
    } else if (json_is_real(v)) {
        snprintf(buf, cap, "%.17g", json_real_value(v));
        *out = buf;
    } else {
        return -EINVAL;
    }
    return 0;
}

/* 1 when v (already validated for d) spells d's default: an ignored flag left
 * at its default needs no warning. */
static int mf_is_default(const mf_def_t *d, const char *v)
{
    if (d->type == MF_BOOL) return mc_flags_bool_word(v) == mc_flags_bool_word(d->def);
    if (d->type == MF_DOUBLE) return strtod(v, NULL) == strtod(d->def, NULL);
    return !strcmp(v, d->def);
}

/* Applies the JSON object in path to every flag not in explicit[]. */
static int mf_load_config(mc_master_flags_t *f, const char *path, const unsigned char *explicit,
                          char *err, size_t errlen)
{
    size_t pl = strlen(path);
    if ((pl >= 5 && !strcmp(path + pl - 5, ".yaml")) ||
        (pl >= 4 && !strcmp(path + pl - 4, ".yml"))) {
        mf_err(err, errlen, "config file %s: YAML is not supported, use JSON", path);
        return -EINVAL;
    }
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (je.line <= 0)
            mf_err(err, errlen, "config file %s: %s", path, je.text);
        else
            mf_err(err, errlen, "config file %s: line %d, column %d: %s", path, je.line, je.column,
                   je.text);
        return -EINVAL;
    }
    int rc = 0;
    if (!json_is_object(root)) {
        mf_err(err, errlen, "config file %s: want a JSON object at the top", path);
        rc = -EINVAL;
        goto out;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        const mf_def_t *d = NULL;
        for (size_t i = 0; i < MF_NDEFS && !d; i++)
            if (!(mf_defs[i].attr & MF_FLAG_ONLY) && !strcmp(mf_cfg_key(&mf_defs[i]), key))
                d = &mf_defs[i];
        if (!d) {
            const mf_def_t *fd = mf_find(key, strlen(key));
            if (fd && (fd->attr & MF_FLAG_ONLY))
                MC_LOGW(mf_tag, "config file %s: key '%s' is command-line only, ignored", path,
                        key);
            else if (fd && fd->cfg)
                MC_LOGW(mf_tag, "config file %s: unknown key '%s' ignored (the file's key is '%s')",
                        path, key, fd->cfg);
            else
                MC_LOGW(mf_tag, "config file %s: unknown key '%s' ignored", path, key);
            continue;
        }
        char what[160], num[64];
        snprintf(what, sizeof what, "config key '%s'", key);
        const char *text;
        if (mf_json_text(d, val, num, sizeof num, &text)) {
            mf_err(err, errlen, "config file %s: bad value for key '%s': want a %s", path, key,
                   d->type == MF_STR || d->type == MF_CLUSTER || d->type == MF_STRATEGY
                       ? "string"
                       : "number, boolean or string");
            rc = -EINVAL;
            goto out;
        }
        if (explicit[d - mf_defs]) continue; /* the command line wins */
        char sub[256];
        rc = mf_apply(f, d, text, what, sub, sizeof sub);
        if (rc) {
            mf_err(err, errlen, "config file %s: %s", path, sub);
            goto out;
        }
        if (d->attr & MF_IGNORED) {
            f->ignored_count++;
            if (!mf_is_default(d, text))
                MC_LOGW(mf_tag, "config file %s: key '%s' is not implemented, ignored", path, key);
        }
    }
out:
    json_decref(root);
    return rc;
}

/* The command line goes through base_flags' scanner; these two adapt it to mf_defs. */
typedef struct {
    mc_master_flags_t *f;
    unsigned char *explicit;
} mf_scan_t;

static int mf_scan_lookup(void *ctx, const char *name, size_t len, int *is_bool)
{
    (void)ctx;
    const mf_def_t *d = mf_find(name, len);
    if (!d) return -1;
    *is_bool = d->type == MF_BOOL;
    return (int)(d - mf_defs);
}

static int mf_scan_apply(void *ctx, int idx, const char *v, const char *what, char *err,
                         size_t errlen)
{
    mf_scan_t *sc = ctx;
    const mf_def_t *d = &mf_defs[idx];
    int rc = mf_apply(sc->f, d, v, what, err, errlen);
    if (rc) return rc;
    sc->explicit[idx] = 1;
    if (d->attr & MF_IGNORED) {
        sc->f->ignored_count++;
        if (!mf_is_default(d, v))
            MC_LOGW(mf_tag, "flag %s is not implemented by this master, ignored", what);
    }
    return 0;
}

int mc_master_flags_parse(mc_master_flags_t *f, int argc, char *const argv[], char *err,
                          size_t errlen)
{
    unsigned char explicit[MF_NDEFS];
    memset(explicit, 0, sizeof explicit);
    mc_master_flags_default(f);
    if (err && errlen) err[0] = '\0';

    mf_scan_t sc = {f, explicit};
    const mc_flags_ops_t ops = {mf_scan_lookup, mf_scan_apply, &sc};
    int rc = mc_flags_scan(argc, argv, &ops, err, errlen);
    if (rc == MC_FLAGS_HELP) return MC_MASTER_FLAGS_HELP;
    if (rc) return rc;

    if (f->config_path[0]) {
        rc = mf_load_config(f, f->config_path, explicit, err, errlen);
        if (rc) return rc;
    }

    if (f->root_fs_dir[0]) { /* upstream's legacy DISK replica, served by the SSD tier */
        _Static_assert(sizeof f->core.root_fs_dir == sizeof f->root_fs_dir, "same size");
        f->core.enable_offload = 1;
        memcpy(f->core.root_fs_dir, f->root_fs_dir, sizeof f->root_fs_dir);
    }
    const mc_master_config_t *c = &f->core;
    if (c->put_start_release_timeout_ms < c->put_start_discard_timeout_ms) {
        mf_err(err, errlen,
               "bad value '%" PRIu64 "' for --put_start_release_timeout_sec: must not be less than "
               "--put_start_discard_timeout_sec (%" PRIu64 ")",
               c->put_start_release_timeout_ms / 1000, c->put_start_discard_timeout_ms / 1000);
        return -EINVAL;
    }
    if (c->default_kv_soft_pin_ttl_ms > c->max_kv_soft_pin_ttl_ms) {
        mf_err(err, errlen,
               "bad value '%" PRIu64 "ms' for --default_kv_soft_pin_ttl: above "
               "--max_kv_soft_pin_ttl (%" PRIu64 "ms)",
               c->default_kv_soft_pin_ttl_ms, c->max_kv_soft_pin_ttl_ms);
        return -EINVAL;
    }
    return 0;
}

int mc_master_flags_resolve_interface(mc_master_flags_t *f, char *err, size_t errlen)
{
    if (!f->rpc_interface[0]) return 0;
    struct ifaddrs *ifs = NULL, *it;
    if (getifaddrs(&ifs) != 0) {
        mf_err(err, errlen, "--rpc_interface=%s: cannot list interfaces: %s", f->rpc_interface,
               strerror(errno));
        return -ENODEV;
    }
    int rc = -ENODEV;
    for (it = ifs; it; it = it->ifa_next) {
        if (!it->ifa_addr || it->ifa_addr->sa_family != AF_INET) continue;
        if (strcmp(it->ifa_name, f->rpc_interface) != 0) continue;
        const struct sockaddr_in *sin = (const struct sockaddr_in *)it->ifa_addr;
        if (inet_ntop(AF_INET, &sin->sin_addr, f->rpc_address, sizeof f->rpc_address)) {
            rc = 0;
            break;
        }
    }
    freeifaddrs(ifs);
    if (rc)
        mf_err(err, errlen, "--rpc_interface=%s: no such interface with an IPv4 address",
               f->rpc_interface);
    return rc;
}

int mc_master_flags_persist_dir(const mc_master_flags_t *f, char *buf, size_t cap, char *err,
                                size_t errlen)
{
    if (!f->enable_persistence) return 0;
    if (f->persist_dir[0]) {
        if (strlen(f->persist_dir) >= cap) {
            mf_err(err, errlen, "--persist_dir: longer than %zu bytes", cap - 1);
            return -EINVAL;
        }
        memcpy(buf, f->persist_dir, strlen(f->persist_dir) + 1);
        return 1;
    }
    unsigned port = mc_master_flags_rpc_port(f);
    if (port == 0) return 0;
    /* masters bound to different addresses of one machine (network
     * namespaces, several NICs) keep apart: the address is in the name
     * unless the master binds every address */
    char who[300];
    const char *a = f->rpc_address;
    if (!a[0] || !strcmp(a, "0.0.0.0") || !strcmp(a, "::"))
        snprintf(who, sizeof who, "master-%u", port);
    else
        snprintf(who, sizeof who, "master-%s-%u", a, port);
    const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    int n;
    if (xdg && xdg[0] == '/')
        n = snprintf(buf, cap, "%s/mooncake/%s", xdg, who);
    else if (home && home[0] == '/')
        n = snprintf(buf, cap, "%s/.local/state/mooncake/%s", home, who);
    else {
        mf_err(err, errlen,
               "persistence: neither XDG_STATE_HOME nor HOME is set; give "
               "--persist_dir=DIR or --enable_persistence=false");
        return -ENOENT;
    }
    if (n < 0 || (size_t)n >= cap) {
        mf_err(err, errlen,
               "persistence: the default directory's path is too long; give "
               "--persist_dir=DIR");
        return -EINVAL;
    }
    return 1;
}

void mc_master_flags_usage(FILE *out, const char *prog)
{
    fprintf(out,
            "usage: %s [--flag=value | --flag value | --bool_flag | --nobool_flag] ...\n"
            "Flags (upstream-compatible; durations are milliseconds or N{ms,s,m,h}):\n",
            prog);
    for (size_t i = 0; i < MF_NDEFS; i++) {
        const mf_def_t *d = &mf_defs[i];
        if (d->attr & MF_IGNORED) continue;
        fprintf(out, "  --%-32s %s (default \"%s\")\n", d->name, d->help, d->def);
    }
    fprintf(out, "  --%-32s %s (default \"text\")\n", "log_format",
            "log lines on stderr: text, or json (one object per line; MC_LOG_FORMAT)");
    fprintf(out, "  --%-32s show this help and exit\n", "help");
    fprintf(out, "  --%-32s print the version and exit\n", "version");
    fprintf(out, "Config file keys are the flag names (client_ttl is client_live_ttl_sec);\n"
                 "port, max_threads and config_path are command-line only.\n"
                 "Accepted for compatibility and ignored (not implemented):");
    int col = 80;
    for (size_t i = 0; i < MF_NDEFS; i++) {
        if (!(mf_defs[i].attr & MF_IGNORED)) continue;
        size_t n = strlen(mf_defs[i].name) + 3;
        if (col + (int)n > 78) {
            fputs("\n ", out);
            col = 1;
        }
        fprintf(out, " --%s", mf_defs[i].name);
        col += (int)n;
    }
    fputc('\n', out);
}
