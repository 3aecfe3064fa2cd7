/* mooncake_master: the master daemon, a thin main() around the core
 * (master_service.h), its RPC server (master_rpc.h), the admin/metrics HTTP
 * server (master_admin.h) and, with --enable_http_metadata_server, the
 * embedded HTTP metadata server (metasrv.h). Flags as upstream's
 * (master_flags.h; --help lists them).
 *
 * On start it prints one line per listener on stdout, flushed, with the real
 * port (port 0 picks a free one), then "mooncake_master: ready":
 *   mooncake_master: http metadata server listening on HOST:PORT
 *   mooncake_master: rpc listening on HOST:PORT
 *   mooncake_master: metrics listening on HOST:PORT
 * A tick thread drives the core's background work (eviction, client expiry,
 * zombie puts) every 10 ms. SIGINT or SIGTERM stop it gracefully, exit 0. A bad
 * command line or config file exits 2 with the message and the usage; a
 * failure to start exits 1. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base_env.h"
#include "base_fdlimit.h"
#include "base_log.h"
#include "base_sig.h"
#include "base_time.h"
#include "base_version.h"
#include "master_admin.h"
#include "master_flags.h"
#include "master_ha.h"
#include "master_metaclean.h"
#include "master_persist.h"
#include "master_repl.h"
#include "master_rpc.h"
#include "master_service.h"
#include "metasrv.h"
#include "net_auth.h"
#include "net_tls.h"

#define TICK_MS 10

static const char *const prog = "mooncake_master";

typedef struct {
    mc_master_t *m;
    pthread_t thr;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* CLOCK_MONOTONIC */
    int stop;            /* under lock */
} ticker_t;

/* The tick thread: mc_master_tick every TICK_MS until stop is set. */
static void *ticker_main(void *arg)
{
    ticker_t *t = arg;
    pthread_mutex_lock(&t->lock);
    while (!t->stop) {
        pthread_mutex_unlock(&t->lock);
        mc_master_tick(t->m, mc_now_ms());
        pthread_mutex_lock(&t->lock);
        struct timespec ts = mc_deadline_ts(CLOCK_MONOTONIC, TICK_MS);
        while (!t->stop && pthread_cond_timedwait(&t->cond, &t->lock, &ts) != ETIMEDOUT) {
        }
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

static int ticker_start(ticker_t *t, mc_master_t *m)
{
    pthread_condattr_t ca;
    t->m = m;
    t->stop = 0;
    pthread_mutex_init(&t->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cond, &ca);
    pthread_condattr_destroy(&ca);
    int rc = pthread_create(&t->thr, NULL, ticker_main, t);
    if (rc) {
        pthread_cond_destroy(&t->cond);
        pthread_mutex_destroy(&t->lock);
        return -rc;
    }
    return 0;
}

static void ticker_stop(ticker_t *t)
{
    pthread_mutex_lock(&t->lock);
    t->stop = 1;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->thr, NULL);
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->lock);
}

static void announce(const char *what, const char *host, unsigned port)
{
    printf("%s: %s listening on %s:%u\n", prog, what, host && *host ? host : "0.0.0.0", port);
    fflush(stdout);
}

/* HA glue: the RPC gate reads ha once it is set (no request is served
 * before). A master elected leader adopts the index it replicated from the
 * previous leader (master_repl.h): its objects become visible as their
 * segments remount. A master that stops leading empties its core, cuts its
 * standbys, follows the new leader, and closes its clients' connections so
 * that they find the new leader at once. */
typedef struct {
    mc_master_ha_t *_Atomic ha;
    mc_master_rpc_t *_Atomic rpc;
    mc_repl_t *_Atomic repl;
    mc_master_t *m;
    char self[320]; /* this master's "<rpc_address>:<port>" */
} ha_glue_t;

static int ha_gate(void *arg, uint64_t now_ms, uint64_t *view)
{
    ha_glue_t *g = arg;
    mc_master_ha_t *h = atomic_load(&g->ha);
    *view = 0;
    return h ? mc_master_ha_serving(h, now_ms, view) : 0;
}

/* The leader a standby follows: its replication address, from etcd. */
static int repl_target(void *arg, char *addr, size_t len, uint64_t *view)
{
    ha_glue_t *g = arg;
    mc_master_ha_t *h = atomic_load(&g->ha);
    if (!h) return 0;
    mc_master_ha_info_t in;
    mc_master_ha_info(h, &in);
    if (!in.repl_known || !strcmp(in.role, "leader")) return 0;
    snprintf(addr, len, "%s", in.leader_repl);
    *view = in.view;
    return 1;
}

/* The in-sync set of this leader's view (the ISR thread of master_repl.c). */
static int repl_isr_write(void *arg, uint64_t view, const char *val)
{
    ha_glue_t *g = arg;
    mc_master_ha_t *h = atomic_load(&g->ha);
    return h ? mc_master_ha_isr_put(h, view, val) : -1;
}

/* A standby elected leader: adopts its replicated table only when the
 * in-sync set of the view it followed lists it (docs/master.md "HA
 * replication"); otherwise the old leader may have handed out again ranges
 * whose removal this table lacks, so it starts empty (its own files' table
 * is older still). */
static void ha_adopt(ha_glue_t *g, mc_repl_t *repl)
{
    mc_repl_taken_t tk;
    struct mrestore *t = mc_repl_take(repl, &tk);
    char *isr = NULL;
    mc_master_ha_t *h = atomic_load(&g->ha);
    int rc = h ? mc_master_ha_isr_get(h, &isr) : -1;
    if (!t) { /* never followed: its own files' table, if it was the last leader */
        char last[320];
        if (rc == 0 && mc_repl_isr_leader(isr, last, sizeof last) && strcmp(last, g->self) != 0) {
            mc_master_restore_adopt(g->m, NULL, 0, "", 0);
            MC_LOGW("master",
                    "not restoring from this master's own files (if any): leader %s served after "
                    "them (the in-sync set names it); starting with an empty index",
                    last);
        }
        free(isr);
        return;
    }
    const char *why = NULL;
    if (!tk.synced)
        why = "its base was incomplete";
    else if (rc == -ENOENT)
        why = "no in-sync set was written";
    else if (rc)
        why = "the in-sync set could not be read";
    else if (!mc_repl_isr_lists(isr, tk.view, tk.id))
        why = "the in-sync set of the view it followed does not list this standby";
    if (why) {
        MC_LOGW("master",
                "not adopting %llu objects replicated from %s at view %llu: %s (in-sync set: "
                "'%s', this standby %016llx); starting with an empty index",
                (unsigned long long)mc_master_restore_table_count(t), tk.from,
                (unsigned long long)tk.view, why, isr ? isr : "", (unsigned long long)tk.id);
        mc_master_restore_table_free(t);
        mc_master_restore_adopt(g->m, NULL, 0, "", 0); /* nor its own files' older table */
    } else {
        mc_master_restore_adopt(g->m, t, tk.version, tk.from, mc_now_ms());
    }
    free(isr);
}

static void ha_change(void *arg, int leading, uint64_t view)
{
    ha_glue_t *g = arg;
    mc_repl_t *repl = atomic_load(&g->repl);
    (void)view;
    mc_master_clear(g->m, leading ? "a new leader term starts" : "this master stopped leading");
    if (leading) {
        if (repl) ha_adopt(g, repl);
        return;
    }
    if (repl) mc_repl_lost(repl);
    mc_master_restore_adopt(g->m, NULL, 0, "", 0); /* its restore state is stale now */
    mc_master_rpc_drop_clients(atomic_load(&g->rpc));
}

static void metrics_all(FILE *out, void *arg)
{
    ha_glue_t *g = arg;
    mc_master_rpc_metrics(out, atomic_load(&g->rpc));
    mc_repl_t *repl = atomic_load(&g->repl);
    if (repl) mc_repl_metrics(out, repl);
}

/* Checks the HA flags; 0, or 2 with a message. */
static int ha_check(const mc_master_flags_t *fl)
{
    if (!fl->enable_ha) return 0;
    int redis = !strcmp(fl->ha_backend_type, "redis");
    if (!redis && strcmp(fl->ha_backend_type, "etcd") != 0) {
        fprintf(stderr, "%s: --ha_backend_type=%s: want etcd or redis\n", prog,
                fl->ha_backend_type);
        return 2;
    }
    if (redis && strncasecmp(fl->ha_backend_connstring, "redis://", 8) != 0) {
        fprintf(stderr,
                "%s: --ha_backend_type=redis needs --ha_backend_connstring=redis://host:port\n",
                prog);
        return 2;
    }
    if (!fl->ha_backend_connstring[0] && !fl->etcd_endpoints[0]) {
        fprintf(stderr, "%s: --enable_ha needs --etcd_endpoints (or --ha_backend_connstring)\n",
                prog);
        return 2;
    }
    if (!fl->rpc_address[0] || !strcmp(fl->rpc_address, "0.0.0.0")) {
        fprintf(stderr,
                "%s: --enable_ha needs --rpc_address set to this master's reachable "
                "address (clients are sent there)\n",
                prog);
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (mc_version_flag(argc, argv, prog)) return 0;
    mc_master_flags_t fl;
    char err[1024];
    if (mc_log_take_format_flag(&argc, argv, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", prog, err);
        mc_master_flags_usage(stderr, prog);
        return 2;
    }
    int rc = mc_master_flags_parse(&fl, argc, argv, err, sizeof err);
    if (rc == MC_MASTER_FLAGS_HELP) {
        mc_master_flags_usage(stdout, prog);
        return 0;
    }
    if (rc == 0) rc = mc_master_flags_resolve_interface(&fl, err, sizeof err);
    if (rc) {
        fprintf(stderr, "%s: %s\n", prog, err);
        mc_master_flags_usage(stderr, prog);
        return 2;
    }
    if ((rc = ha_check(&fl))) {
        mc_master_flags_usage(stderr, prog);
        return rc;
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
    /* --rpc_thread_num: the RPC server's event loops (0: min(--max_threads, cores)) */
    unsigned rpc_loops = fl.rpc_thread_num > 0 ? (unsigned)fl.rpc_thread_num
                                               : mc_master_rpc_default_loops();
    if (fl.rpc_thread_num <= 0 && rpc_loops > (unsigned)fl.max_threads)
        rpc_loops = (unsigned)fl.max_threads;
    if (rpc_loops > 64) {
        MC_LOGW("master", "--rpc_thread_num %u: the RPC server runs at most 64 event loops",
                rpc_loops);
        rpc_loops = 64;
    }

    /* Block the stop signals before any thread starts (they inherit the mask),
     * so that only mc_sig_wait_stop below sees them. */
    sigset_t stop;
    mc_sig_block_stop(&stop);
    mc_fdlimit_raise(0); /* connection caps, not EMFILE, bound the listeners */

    int code = 1;
    mc_metasrv_t *meta = NULL;
    mc_master_t *m = NULL;
    mc_persist_t *persist = NULL;
    mc_master_rpc_t *rpc = NULL;
    mc_master_admin_t *admin = NULL;
    mc_master_ha_t *ha = NULL;
    mc_master_metaclean_t *clean = NULL;
    mc_repl_t *repl = NULL;
    ha_glue_t glue = {NULL, NULL, NULL, NULL, ""};
    ticker_t tick;
    int ticking = 0;

    if (fl.enable_http_metadata_server) {
        rc = mc_metasrv_start(fl.http_metadata_server_host, (uint16_t)fl.http_metadata_server_port,
                              &meta);
        if (rc) {
            fprintf(stderr, "%s: http metadata server cannot serve on %s:%d: %s\n", prog,
                    fl.http_metadata_server_host, fl.http_metadata_server_port, strerror(-rc));
            goto out;
        }
        announce("http metadata server", fl.http_metadata_server_host, mc_metasrv_port(meta));
    }
    fl.core.stall_threshold_ms = 1000; /* a stopped master does not expire its clients */
    if (fl.enable_metadata_cleanup_on_timeout) {
        char conn[1024];
        if (mc_master_metaclean_conn(conn, sizeof conn, meta ? mc_metasrv_port(meta) : 0)) {
            MC_LOGW("master", "--enable_metadata_cleanup_on_timeout: no metadata store known "
                              "(set MOONCAKE_TE_META_DATA_SERVER); no records will be deleted");
        } else if (mc_master_metaclean_start(conn, &clean) == 0) {
            fl.core.on_segment_expired = mc_master_metaclean_push;
            fl.core.on_segment_expired_arg = clean;
        }
    }
    rc = mc_master_new(&fl.core, &m);
    if (rc) {
        fprintf(stderr, "%s: cannot create the master: error %d\n", prog, rc);
        goto out;
    }
    /* persistence: replay before anything is served */
    char pdir[1024];
    rc = mc_master_flags_persist_dir(&fl, pdir, sizeof pdir, err, sizeof err);
    if (rc == 1) {
        rc = mc_persist_open(pdir, &persist, err, sizeof err);
        if (rc == 0) rc = mc_master_persist_attach(m, persist, mc_now_ms(), err, sizeof err);
        if (rc) {
            fprintf(stderr, "%s: %s\n", prog, err);
            goto out;
        }
    } else if (rc < 0) {
        fprintf(stderr, "%s: %s\n", prog, err);
        goto out;
    } else {
        MC_LOGI("master", "persistence off (%s): a restart starts with an empty index",
                fl.enable_persistence ? "rpc port 0 and no --persist_dir"
                                      : "--enable_persistence=false");
    }
    rc = ticker_start(&tick, m);
    if (rc) {
        fprintf(stderr, "%s: cannot start the tick thread: %s\n", prog, strerror(-rc));
        goto out;
    }
    ticking = 1;
    uint16_t rpc_port = mc_master_flags_rpc_port(&fl);
    glue.m = m;
    mc_master_rpc_opts_t ro = {fl.enable_ha ? ha_gate : NULL, &glue, rpc_loops};
    rc = mc_master_rpc_start_opts(m, fl.rpc_address, rpc_port, &ro, &rpc);
    if (rc) {
        fprintf(stderr, "%s: rpc cannot serve on %s:%u: error %d\n", prog, fl.rpc_address, rpc_port,
                rc);
        goto out;
    }
    atomic_store(&glue.rpc, rpc);
    announce("rpc", fl.rpc_address, mc_master_rpc_port(rpc));
    char repl_addr[320] = "";
    snprintf(glue.self, sizeof glue.self, "%s:%u", fl.rpc_address, mc_master_rpc_port(rpc));
    /* On with HA unless --enable_ha_replication=false or MC_MASTER_REPL=0:
     * freed ranges wait for the in-sync standbys' acknowledgment, and a new
     * leader adopts its table only when the in-sync set lists it
     * (docs/master.md "HA replication"). Off, a new leader starts empty. */
    if (fl.enable_ha && fl.enable_ha_replication && mc_env_int("MC_MASTER_REPL", 1, 0, 1)) {
        mc_repl_config_t rc_cfg = {.host = fl.rpc_address,
                                   .port = (uint16_t)mc_env_int("MC_MASTER_REPL_PORT", 0, 0, 65535),
                                   .serving = ha_gate,
                                   .target = repl_target,
                                   .isr_write = repl_isr_write,
                                   .arg = &glue};
        snprintf(rc_cfg.self, sizeof rc_cfg.self, "%s", glue.self);
        if ((rc = mc_repl_start(m, &rc_cfg, &repl))) {
            fprintf(stderr, "%s: replication cannot serve on %s: %s\n", prog, fl.rpc_address,
                    strerror(-rc));
            goto out;
        }
        atomic_store(&glue.repl, repl);
        snprintf(repl_addr, sizeof repl_addr, "%s:%u", fl.rpc_address, mc_repl_port(repl));
        announce("repl", fl.rpc_address, mc_repl_port(repl));
    }
    if (fl.enable_ha) {
        char me[320];
        snprintf(me, sizeof me, "%s:%u", fl.rpc_address, mc_master_rpc_port(rpc));
        mc_master_ha_config_t hc = {
            .backend = fl.ha_backend_type,
            .endpoints = fl.ha_backend_connstring[0] ? fl.ha_backend_connstring : fl.etcd_endpoints,
            .cluster_id = fl.cluster_id,
            .advertise = me,
            .lease_ttl_s = (int)mc_env_int("MC_HA_LEASE_TTL_S", 5, 2, 3600),
            .repl_advertise = repl_addr[0] ? repl_addr : NULL,
            .on_change = ha_change,
            .arg = &glue};
        if ((rc = mc_master_ha_start(&hc, &ha))) {
            fprintf(stderr, "%s: cannot start the election on etcd %s: error %d\n", prog,
                    hc.endpoints, rc);
            goto out;
        }
        atomic_store(&glue.ha, ha);
    }
    mc_master_admin_opts_t ao = {.host = fl.metrics_host,
                                 .port = (uint16_t)fl.metrics_port,
                                 .extra = metrics_all,
                                 .extra_arg = &glue,
                                 .api_key = fl.admin_api_key};
    rc = mc_master_admin_start_opts(m, &ao, &admin);
    if (rc) {
        fprintf(stderr, "%s: metrics cannot serve on %s:%d: %s\n", prog, fl.metrics_host,
                fl.metrics_port, strerror(-rc));
        goto out;
    }
    if (ha) mc_master_admin_set_ha(admin, ha);
    announce("metrics", fl.metrics_host, mc_master_admin_port(admin));
    MC_LOGI("master",
            "version " MC_MASTER_VERSION ", cluster %s, lease %llu ms, client ttl %llu ms, "
            "eviction %.2f above %.2f, %s allocation",
            fl.cluster_id, (unsigned long long)fl.core.default_kv_lease_ttl_ms,
            (unsigned long long)fl.core.client_ttl_ms, fl.core.eviction_ratio,
            fl.core.eviction_high_watermark_ratio,
            fl.core.allocation_strategy == MC_ALLOC_FREE_RATIO_FIRST ? "free_ratio_first"
                                                                     : "random");
    printf("%s: ready\n", prog);
    fflush(stdout);

    int sig = mc_sig_wait_stop(&stop);
    MC_LOGI("master", "signal %d, stopping", sig);
    code = 0;
out:
    /* Stop the servers before the core they call goes away; resign first so a
     * standby takes over without waiting for the lease. */
    mc_master_admin_stop(admin);
    mc_master_ha_stop(ha);
    atomic_store(&glue.ha, NULL);
    if (rpc) mc_master_rpc_stop(rpc);
    if (ticking) ticker_stop(&tick);
    atomic_store(&glue.repl, NULL);
    mc_repl_stop(repl);
    mc_master_metaclean_stop(clean);
    if (m) mc_master_free(m);
    mc_persist_close(persist);
    mc_metasrv_stop(meta);
    return code;
}
