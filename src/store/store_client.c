/* store_client.c: the life of a store: setup (naming with an automatic port,
 * transfer engine, segment (huge pages advised), staging buffer, mount on the master;
 * or, with mc_store_setup_with_engine, the same on a caller-owned engine), the
 * heartbeat thread (ping every second, every 200 ms while the master is
 * unreachable; remount and re-publish the TE
 * records when the master answers NEED_REMOUNT), close, and the thin calls
 * that pass straight to the master (exist, remove, ...). The data paths (put,
 * get and their batch forms) are in store_ops.c. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base_env.h"
#include "base_log.h"
#include "base_time.h"
#include "mooncake/meta.h"
#include "net_sock.h"
#include "master_view.h"
#include "store_gbuf.h"
#include "store_int.h"
#include "store_lcache.h"

#define TAG "store"

void mc_store_config_init(mc_store_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->replica_num = 1;
    cfg->soft_pin_action = MC_STORE_SOFT_PIN_PRESERVE;
}

int mc_store_create(mc_store_t **out)
{
    if (!out) return MC_ERR_INVALID_PARAMS;
    mc_store_t *s = calloc(1, sizeof *s);
    if (!s) return MC_ERR_INTERNAL;
    pthread_mutex_init(&s->hb_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->hb_cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&s->task_cond, NULL);
    s->port_fd = -1;
    *out = s;
    return 0;
}

void mc_store_destroy(mc_store_t *s)
{
    if (!s) return;
    mc_store_close(s);
    pthread_mutex_destroy(&s->hb_lock);
    pthread_cond_destroy(&s->hb_cond);
    pthread_cond_destroy(&s->task_cond);
    free(s);
}

static mc_uuid_t st_uuid(void)
{
    mc_uuid_t u = {0, 0};
    if (getrandom(&u, sizeof u, 0) != (ssize_t)sizeof u) {
        uint64_t t = mc_now_ns() ^ ((uint64_t)getpid() << 32);
        u.hi = t * 0x9E3779B97F4A7C15ull;
        u.lo = (uint64_t)(uintptr_t)&u ^ t;
    }
    return u;
}

/* The host a segment is on, for the master's prefer_alloc_in_same_node: boot id
 * and network namespace (another namespace is another host, as in the TE). */
static void st_read_host_id(char *buf, size_t len)
{
    char boot[64] = "", net_ns[64] = "";
    buf[0] = '\0';
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (!f) return;
    if (!fgets(boot, sizeof boot, f)) boot[0] = '\0';
    fclose(f);
    boot[strcspn(boot, "\n")] = '\0';
    ssize_t n = readlink("/proc/self/ns/net", net_ns, sizeof net_ns - 1);
    net_ns[n > 0 ? n : 0] = '\0';
    if (boot[0]) snprintf(buf, len, "%s%s%s", boot, net_ns[0] ? "/" : "", net_ns);
}

/* Holds port on all addresses (bound, not listening) so that no other store on
 * this host picks the same name; the fd stays open until close. */
static int st_hold_port(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Starts the TE under the name `name`; 0 or the TE's error (engine freed). */
static int st_te_start(mc_store_t *s, const char *name, const char *metadata, const char *protocol,
                       const char *devices)
{
    int rc = mc_te_create(&s->te);
    if (rc) return rc;
    rc = mc_te_init(s->te, name, metadata, protocol, devices);
    if (rc) {
        mc_te_destroy(s->te);
        s->te = NULL;
    }
    return rc;
}

/* A metadata store that cannot be reached fails every name alike, so it is
 * checked once before the port loop: one read of a key nobody writes. The
 * backend logs the one line that names the store and the cause. Returns 0
 * when the store answered (absent is an answer). */
static int st_probe_metadata(const char *metadata)
{
    mc_meta_t *m;
    int rc = mc_meta_open(metadata, &m);
    if (rc) return rc;
    char key[128], *val = NULL;
    if (!mc_meta_is_p2p(m) && mc_meta_key(key, sizeof key, "rpc_meta", "setup-probe") == 0) {
        rc = mc_meta_get(m, key, &val);
        free(val);
        if (rc == -ENOENT) rc = 0;
    }
    mc_meta_close(m);
    return rc;
}

/* Picks the name and starts the TE (spec §2.1 step 1). */
static int st_start_engine(mc_store_t *s, const char *local_hostname, const char *metadata,
                           const char *protocol, const char *devices)
{
    char host[MC_NAME_MAX];
    uint16_t port = 0;
    if (mc_net_split_hostport(local_hostname, host, sizeof host, &port) == 0 && port != 0) {
        snprintf(s->hostname, sizeof s->hostname, "%s", local_hostname);
        int rc = st_te_start(s, s->hostname, metadata, protocol, devices);
        if (rc)
            MC_LOGE(TAG, "transfer engine for '%s' failed: %s", s->hostname, mc_te_strerror(rc));
        return rc ? MC_ERR_INTERNAL : 0;
    }
    snprintf(host, sizeof host, "%s", local_hostname);
    if (st_probe_metadata(metadata)) {
        MC_LOGE(TAG, "metadata store not usable (see above); setup stops here");
        return MC_ERR_INTERNAL;
    }
    int64_t lo = mc_env_int("MC_STORE_CLIENT_MIN_PORT", MC_STORE_CLIENT_MIN_PORT, 1, 65535);
    int64_t hi = mc_env_int("MC_STORE_CLIENT_MAX_PORT", MC_STORE_CLIENT_MAX_PORT, lo, 65535);
    int64_t tries =
        mc_env_int("MC_STORE_CLIENT_SETUP_RETRIES", MC_STORE_CLIENT_SETUP_RETRIES, 1, 1000);
    uint32_t r = 0;
    for (int64_t i = 0; i < tries; i++) {
        if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) r = (uint32_t)mc_now_ns();
        uint16_t p = (uint16_t)(lo + (int64_t)(r % (uint32_t)(hi - lo + 1)));
        int fd = st_hold_port(p);
        if (fd < 0) continue;
        int n = snprintf(s->hostname, sizeof s->hostname, "%s:%u", host, p);
        if (n < 0 || (size_t)n >= sizeof s->hostname) {
            close(fd);
            return MC_ERR_INVALID_PARAMS;
        }
        int rc = st_te_start(s, s->hostname, metadata, protocol, devices);
        if (rc == 0) {
            s->port_fd = fd;
            return 0;
        }
        MC_LOGW(TAG, "name '%s' unusable (%s); trying another port", s->hostname,
                mc_te_strerror(rc));
        close(fd);
    }
    MC_LOGE(TAG, "no usable port for '%s' in %lld-%lld after %lld tries", host, (long long)lo,
            (long long)hi, (long long)tries);
    s->hostname[0] = '\0';
    return MC_ERR_INTERNAL;
}

/* Segment memory: anonymous private pages with transparent huge pages
 * requested. Peers reach it through the TE (process_vm_readv/writev on the
 * same host, tcp otherwise), which pins the pages of every transfer: with
 * 2 MiB pages that is one page walk per 2 MiB instead of 512, which more than
 * doubled 1 MiB get/put throughput over shm (a memfd's shmem pages are 4 KiB
 * unless the host's shmem_enabled policy says otherwise). */
static int st_alloc_segment(mc_store_t *s, uint64_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        MC_LOGE(TAG, "mmap segment of %llu bytes: %s", (unsigned long long)size, strerror(errno));
        return MC_ERR_INTERNAL;
    }
    (void)madvise(p, size, MADV_HUGEPAGE); /* best effort (THP policy) */
    s->seg = p;
    s->seg_size = size;
    return 0;
}

/* Re-publishes the TE records: a restarted master's embedded metadata server
 * lost them. */
static void st_republish(mc_store_t *s)
{
    int rc = mc_te_republish(s->te);
    if (rc) MC_LOGW(TAG, "re-publishing segment '%s': %s", s->te_name, mc_te_strerror(rc));
}

static int st_remount(mc_store_t *s)
{
    mc__lcache_clear(s->lcache); /* a new master: take its word again */
    st_republish(s);
    int rc = mc_master_client_remount_segments(s->mc, &s->segdesc, 1, s->client_id);
    if (rc)
        MC_LOGW(TAG, "remount of '%s' failed: error %d", s->hostname, rc);
    else
        MC_LOGI(TAG, "segment of '%s' remounted", s->hostname);
    return rc;
}

static void *st_heartbeat_main(void *arg)
{
    mc_store_t *s = arg;
    int fails = 0;
    pthread_mutex_lock(&s->hb_lock);
    while (!s->hb_stop) {
        /* while the master is unreachable, try every 200 ms: a restarted master
         * or a new HA leader gets the remount within a fraction of a second */
        int every = fails && s->hb_interval_ms > 200 ? 200 : s->hb_interval_ms;
        struct timespec ts = mc_deadline_ts(CLOCK_MONOTONIC, (uint64_t)every);
        while (!s->hb_stop && pthread_cond_timedwait(&s->hb_cond, &s->hb_lock, &ts) != ETIMEDOUT) {
        }
        if (s->hb_stop) break;
        pthread_mutex_unlock(&s->hb_lock);
        int status = 0;
        int rc = mc_master_client_ping(s->mc, s->client_id, &status);
        if (rc) {
            if (fails++ == 0)
                MC_LOGW(TAG, "heartbeat to master %s failed: error %d", s->master_addr, rc);
            __atomic_store_n(&s->master_down, 1, __ATOMIC_RELAXED);
        } else {
            if (fails) MC_LOGI(TAG, "master %s reachable again", s->master_addr);
            fails = 0;
            __atomic_store_n(&s->master_down, 0, __ATOMIC_RELAXED);
            if (status == MC_CLIENT_NEED_REMOUNT && st_remount(s) == 0) mc__ssd_need_remount(s);
            if (status & MC_CLIENT_TASKS_PENDING) mc__store_run_tasks(s);
        }
        pthread_mutex_lock(&s->hb_lock);
    }
    pthread_mutex_unlock(&s->hb_lock);
    return NULL;
}

static void st_stop_heartbeat(mc_store_t *s)
{
    if (!s->hb_running) return;
    pthread_mutex_lock(&s->hb_lock);
    s->hb_stop = 1;
    pthread_cond_broadcast(&s->hb_cond);
    pthread_mutex_unlock(&s->hb_lock);
    pthread_join(s->hb_thread, NULL);
    s->hb_running = 0;
    mc__store_stop_tasks(s); /* hb_stop is still set */
}

/* Frees everything setup acquired; safe on a partly set-up store. */
static void st_teardown(mc_store_t *s)
{
    st_stop_heartbeat(s);
    mc__store_prefault_stop(s);
    if (s->mc) {
        mc_master_client_close(s->mc);
        s->mc = NULL;
    }
    mc_master_view_close(s->view);
    s->view = NULL;
    if (s->te && s->te_owned) {
        mc_te_destroy(s->te);
    } else if (s->te) {
        /* The caller's engine lives on: take our memory out of it first (waits
         * for server-side transfers into it). */
        if (s->seg_registered) (void)mc_te_unregister(s->te, s->seg);
        if (s->lbuf_registered) (void)mc_te_unregister(s->te, s->lbuf);
    }
    s->te = NULL;
    s->te_owned = 0;
    s->seg_registered = s->lbuf_registered = 0;
    if (s->seg) munmap(s->seg, s->seg_size);
    if (s->gbuf)
        mc__gbuf_put(s->gbuf); /* unmaps lbuf once no get buffer is out */
    else if (s->lbuf)
        munmap(s->lbuf, s->lbuf_size);
    s->gbuf = NULL;
    if (s->port_fd >= 0) close(s->port_fd);
    s->seg = s->lbuf = NULL;
    s->seg_size = s->lbuf_size = 0;
    s->port_fd = -1;
    s->seg_mounted = 0;
    mc__lcache_free(s->lcache);
    s->lcache = NULL;
    s->hb_stop = 0;
    s->master_down = 0;
}

/* The common setup: with te NULL the store starts (and owns) its own engine
 * from local_hostname/metadata_server/device_names; otherwise it borrows te
 * (already initialised, caller-owned) and takes its segment name as its name. */
static int st_setup(mc_store_t *s, mc_te_t *te, const char *local_hostname,
                    const char *metadata_server, uint64_t global_segment_size,
                    uint64_t local_buffer_size, const char *protocol, const char *device_names,
                    const char *master_server_addr)
{
    int rc;
    /* the transfer engine's protocols; anything else is a mistake to report,
     * not a reason to run tcp quietly ("rdma" without a device still runs tcp,
     * after the engine's warning) */
    if (protocol && *protocol && strcasecmp(protocol, "tcp") && strcasecmp(protocol, "rdma")) {
        MC_LOGE(TAG, "setup: unknown protocol '%s' (accepted: tcp, rdma)", protocol);
        return MC_ERR_INVALID_PARAMS;
    }
    snprintf(s->master_addr, sizeof s->master_addr, "%s", master_server_addr);
    s->client_id = st_uuid();
    s->hb_interval_ms = (int)mc_env_int("MC_STORE_HEARTBEAT_MS", 1000, 10, 60000);
    s->memcpy_local = mc_env_bool("MC_STORE_MEMCPY", 1);
    if ((rc = mc__lcache_new((size_t)mc_env_int("MC_STORE_LEASE_CACHE", 4096, 0, 1 << 24),
                             &s->lcache)))
        goto fail;
    st_read_host_id(s->host_id, sizeof s->host_id);

    if (mc_master_view_is_ha(master_server_addr)) { /* HA masters: follow the leader */
        if ((rc = mc_master_view_open(master_server_addr, &s->view))) goto fail;
        rc = mc_master_client_connect_resolved(master_server_addr, mc_master_view_resolve, s->view,
                                               &s->mc);
    } else {
        rc = mc_master_client_connect(master_server_addr, &s->mc);
    }
    if (rc) {
        /* the master client has logged the cause; auth refusals are final */
        if (rc == MC_ERR_AUTH_REQUIRED || rc == MC_ERR_AUTH_FAILED || rc == MC_ERR_AUTH_OFF)
            MC_LOGD(TAG, "cannot connect to master %s: %s", master_server_addr, mc_err_name(rc));
        else
            MC_LOGE(TAG, "cannot connect to master %s: error %d (%s)", master_server_addr, rc,
                    mc_err_name(rc));
        s->mc = NULL;
        goto fail;
    }
    if (te) {
        s->te = te;
        s->te_owned = 0;
        snprintf(s->hostname, sizeof s->hostname, "%s", mc_te_segment_name(te));
    } else {
        if ((rc = st_start_engine(s, local_hostname, metadata_server, protocol, device_names)))
            goto fail;
        s->te_owned = 1;
    }
    snprintf(s->te_name, sizeof s->te_name, "%s", mc_te_segment_name(s->te));

    if (local_buffer_size) {
        void *p = mmap(NULL, local_buffer_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
        if (p == MAP_FAILED) {
            MC_LOGE(TAG, "local buffer of %llu bytes: %s", (unsigned long long)local_buffer_size,
                    strerror(errno));
            rc = MC_ERR_INTERNAL;
            goto fail;
        }
        (void)madvise(p, local_buffer_size, MADV_HUGEPAGE); /* best effort, as the segment */
        s->lbuf = p;
        s->lbuf_size = local_buffer_size;
        s->gbuf = mc__gbuf_new(p, local_buffer_size); /* NULL: allocating gets use malloc */
        if ((rc = mc_te_register(s->te, s->lbuf, s->lbuf_size, "cpu:0"))) {
            MC_LOGE(TAG, "registering the local buffer: %s", mc_te_strerror(rc));
            rc = MC_ERR_INTERNAL;
            goto fail;
        }
        s->lbuf_registered = 1;
    }

    if (global_segment_size) {
        if ((rc = st_alloc_segment(s, global_segment_size))) goto fail;
        mc__store_prefault_start(s);
        if ((rc = mc_te_register(s->te, s->seg, s->seg_size, "cpu:0"))) {
            MC_LOGE(TAG, "registering the segment: %s", mc_te_strerror(rc));
            rc = MC_ERR_INTERNAL;
            goto fail;
        }
        s->seg_registered = 1;
        mc_segment_t *d = &s->segdesc;
        memset(d, 0, sizeof *d);
        d->id = st_uuid();
        snprintf(d->name, sizeof d->name, "%s", s->hostname);
        d->base = (uint64_t)(uintptr_t)s->seg;
        d->size = s->seg_size;
        snprintf(d->te_endpoint, sizeof d->te_endpoint, "%s", s->te_name);
        snprintf(d->protocol, sizeof d->protocol, "%s", protocol && *protocol ? protocol : "tcp");
        snprintf(d->host_id, sizeof d->host_id, "%s", s->host_id);
        if ((rc = mc_master_client_mount_segment(s->mc, d, s->client_id))) {
            MC_LOGE(TAG, "mounting segment '%s' on master %s: error %d", s->hostname,
                    master_server_addr, rc);
            goto fail;
        }
        s->seg_mounted = 1;
        s->hb_stop = 0;
        if (pthread_create(&s->hb_thread, NULL, st_heartbeat_main, s) != 0) {
            rc = MC_ERR_INTERNAL;
            goto fail;
        }
        s->hb_running = 1;
    }
    mc__ssd_from_master(s);
    if (s->ssd_enable && (rc = mc__ssd_start(s))) goto fail;
    s->ready = 1;
    MC_LOGI(TAG, "store '%s' up: segment %llu bytes, local buffer %llu bytes, master %s",
            s->hostname, (unsigned long long)global_segment_size,
            (unsigned long long)local_buffer_size, master_server_addr);
    return 0;
fail:
    st_stop_heartbeat(s);
    if (s->seg_mounted && s->mc)
        mc_master_client_unmount_segment(s->mc, s->segdesc.id, s->client_id);
    st_teardown(s);
    s->hostname[0] = '\0';
    return rc;
}

int mc_store_setup(mc_store_t *s, const char *local_hostname, const char *metadata_server,
                   uint64_t global_segment_size, uint64_t local_buffer_size, const char *protocol,
                   const char *device_names, const char *master_server_addr)
{
    if (!s || s->ready || !local_hostname || !*local_hostname || !metadata_server ||
        !master_server_addr || !*master_server_addr || strlen(local_hostname) >= MC_NAME_MAX - 8 ||
        strlen(master_server_addr) >= sizeof s->master_addr || local_buffer_size > (1ull << 40))
        return MC_ERR_INVALID_PARAMS;
    return st_setup(s, NULL, local_hostname, metadata_server, global_segment_size,
                    local_buffer_size, protocol, device_names, master_server_addr);
}

int mc_store_setup_with_engine(mc_store_t *s, mc_te_t *te, uint64_t global_segment_size,
                               uint64_t local_buffer_size, const char *protocol,
                               const char *master_server_addr)
{
    if (!s || s->ready || !te || !master_server_addr || !*master_server_addr ||
        strlen(master_server_addr) >= sizeof s->master_addr || local_buffer_size > (1ull << 40))
        return MC_ERR_INVALID_PARAMS;
    const char *name = mc_te_segment_name(te);
    if (!name || !*name || strlen(name) >= sizeof s->hostname) {
        MC_LOGE(TAG, "setup with an engine that is not initialised");
        return MC_ERR_INVALID_PARAMS;
    }
    return st_setup(s, te, NULL, NULL, global_segment_size, local_buffer_size, protocol, NULL,
                    master_server_addr);
}

int mc_store_close(mc_store_t *s)
{
    if (!s || !s->ready) return 0;
    s->ready = 0;
    int rc = 0;
    /* The heartbeat first: a remount racing with the unmount would re-add
     * a segment that is about to be freed. */
    st_stop_heartbeat(s);
    mc__ssd_stop(s); /* the disk is no longer served: before the segment goes */
    if (s->seg_mounted) {
        rc = mc_master_client_unmount_segment(s->mc, s->segdesc.id, s->client_id);
        if (rc)
            MC_LOGW(TAG, "unmounting '%s' from master %s: error %d", s->hostname, s->master_addr,
                    rc);
    }
    st_teardown(s);
    return rc;
}

mc_te_t *mc_store_get_engine(mc_store_t *s)
{
    return s && s->ready ? s->te : NULL;
}

int mc_store_get_hostname(mc_store_t *s, char *buf, size_t cap)
{
    if (!s || !s->ready || !buf) return MC_ERR_INVALID_PARAMS;
    size_t n = strlen(s->hostname);
    if (n >= cap) return MC_ERR_INVALID_PARAMS;
    memcpy(buf, s->hostname, n + 1);
    return 0;
}

int mc_store_health_check(mc_store_t *s)
{
    if (!s || !s->ready) return 1;
    if (!s->hb_running) { /* pure client: no heartbeat, ask now */
        int status = 0;
        return mc_master_client_ping(s->mc, s->client_id, &status) ? 2 : 0;
    }
    return __atomic_load_n(&s->master_down, __ATOMIC_RELAXED) ? 2 : 0;
}

/* ---- calls that go straight to the master ---- */

static int st_key_ok(const char *key)
{
    return key && *key;
}

int mc_store_is_exist(mc_store_t *s, const char *key)
{
    if (!s || !s->ready || !st_key_ok(key)) return MC_ERR_INVALID_PARAMS;
    return mc_master_client_exist(s->mc, key);
}

int mc_store_batch_is_exist(mc_store_t *s, const char *const *keys, size_t n, int *res)
{
    if (!s || !s->ready || (n && (!keys || !res))) return MC_ERR_INVALID_PARAMS;
    if (n == 0) return 0;
    return mc_master_client_batch_exist(s->mc, keys, n, res);
}

int64_t mc_store_get_size(mc_store_t *s, const char *key)
{
    if (!s || !s->ready || !st_key_ok(key)) return MC_ERR_INVALID_PARAMS;
    mc_replica_t *r = NULL;
    size_t n = 0;
    uint64_t ttl = 0;
    int rc = mc_master_client_get_replicas(s->mc, key, &r, &n, &ttl);
    if (rc) return rc;
    int64_t size = n ? (int64_t)r[0].size : MC_ERR_OBJECT_NOT_FOUND;
    free(r);
    return size;
}

int mc_store_get_replica_desc(mc_store_t *s, const char *key, mc_store_replica_desc_t **out,
                              size_t *n)
{
    if (!s || !s->ready || !st_key_ok(key) || !out || !n) return MC_ERR_INVALID_PARAMS;
    *out = NULL;
    *n = 0;
    mc_replica_t *r = NULL;
    size_t nr = 0;
    uint64_t ttl = 0;
    int rc = mc_master_client_get_replicas(s->mc, key, &r, &nr, &ttl);
    if (rc) return rc;
    mc_store_replica_desc_t *d = nr ? calloc(nr, sizeof *d) : NULL;
    if (nr && !d) {
        free(r);
        return MC_ERR_INTERNAL;
    }
    _Static_assert(sizeof d->endpoint >= sizeof r->endpoint, "endpoint fits");
    for (size_t i = 0; i < nr; i++) {
        d[i].addr = r[i].addr;
        d[i].size = r[i].size;
        d[i].status = r[i].status;
        d[i].kind = r[i].kind;
        memcpy(d[i].endpoint, r[i].endpoint, sizeof r[i].endpoint);
        d[i].endpoint[sizeof d[i].endpoint - 1] = '\0';
    }
    free(r);
    *out = d;
    *n = nr;
    return 0;
}

int mc_store_remove(mc_store_t *s, const char *key, int force)
{
    if (!s || !s->ready || !st_key_ok(key)) return MC_ERR_INVALID_PARAMS;
    mc__lcache_drop(s->lcache, key);
    return mc_master_client_remove(s->mc, key, force);
}

int mc_store_batch_remove(mc_store_t *s, const char *const *keys, size_t n, int force, int *rcs)
{
    if (!s || !s->ready || (n && (!keys || !rcs))) return MC_ERR_INVALID_PARAMS;
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if (keys[i]) mc__lcache_drop(s->lcache, keys[i]);
    return mc_master_client_batch_remove(s->mc, keys, n, force, rcs);
}

int mc_store_batch_replica_clear(mc_store_t *s, const char *const *keys, size_t n,
                                 const char *segment, int *rcs)
{
    if (!s || !s->ready || (n && (!keys || !rcs))) return MC_ERR_INVALID_PARAMS;
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if (keys[i]) mc__lcache_drop(s->lcache, keys[i]);
    return mc_master_client_batch_replica_clear(s->mc, s->client_id, keys, n, segment, rcs);
}

int64_t mc_store_remove_all(mc_store_t *s, int force)
{
    if (!s || !s->ready) return MC_ERR_INVALID_PARAMS;
    mc__lcache_clear(s->lcache);
    return mc_master_client_remove_all(s->mc, force);
}

int64_t mc_store_remove_by_regex(mc_store_t *s, const char *regex, int force)
{
    if (!s || !s->ready || !regex) return MC_ERR_INVALID_PARAMS;
    mc__lcache_clear(s->lcache);
    return mc_master_client_remove_by_regex(s->mc, regex, force);
}

int mc_store_register_buffer(mc_store_t *s, void *buf, size_t len)
{
    if (!s || !s->ready || !buf || !len) return MC_ERR_INVALID_PARAMS;
    int rc = mc_te_register(s->te, buf, len, "cpu:0");
    if (rc == MC_TE_ERR_ADDRESS_OVERLAPPED) return MC_ERR_INVALID_PARAMS;
    return rc ? MC_ERR_INTERNAL : 0;
}

int mc_store_unregister_buffer(mc_store_t *s, void *buf)
{
    if (!s || !s->ready || !buf) return MC_ERR_INVALID_PARAMS;
    int rc = mc_te_unregister(s->te, buf);
    if (rc == MC_TE_ERR_ADDRESS_NOT_REGISTERED) return MC_ERR_INVALID_PARAMS;
    return rc ? MC_ERR_INTERNAL : 0;
}

int mc_store_set_ssd_offload(mc_store_t *s, int enable, const char *path)
{
    if (!s || s->ready || (path && strlen(path) >= sizeof s->ssd_path))
        return MC_ERR_INVALID_PARAMS;
    s->ssd_enable = enable != 0;
    snprintf(s->ssd_path, sizeof s->ssd_path, "%s", path ? path : "");
    return 0;
}

uint64_t mc_store_offload_read_count(mc_store_t *s)
{
    return s ? __atomic_load_n(&s->disk_reads, __ATOMIC_RELAXED) : 0;
}

int mc_store_ssd_stats(mc_store_t *s, mc_store_ssd_stats_t *st)
{
    if (!s || !s->ready || !st) return MC_ERR_INVALID_PARAMS;
    return mc__ssd_stats(s, st);
}
