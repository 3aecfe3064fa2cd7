/* te_engine.c: the engine object: start-up (naming, listener, metadata
 * records), registered memory, segment handles, notifications and teardown.
 * Batches live in te_batch.c, peers in te_peer.c, the listener in te_server.c. */
#include <errno.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base_env.h"
#include "base_log.h"
#include "base_time.h"
#include "net_auth.h"
#include "net_sock.h"
#include "te_int.h"

#define TAG "te"

int mc_te_create(mc_te_t **out)
{
    mc_te_t *te = calloc(1, sizeof *te);
    if (!te) return MC_TE_ERR_MEMORY;
    pthread_rwlock_init(&te->bufs_lock, NULL);
    pthread_mutex_init(&te->peers_lock, NULL);
    pthread_mutex_init(&te->conns_lock, NULL);
    pthread_cond_init(&te->conns_cond, NULL);
    pthread_mutex_init(&te->notify_lock, NULL);
    pthread_mutex_init(&te->batch_lock, NULL);
    pthread_mutex_init(&te->work_lock, NULL);
    pthread_cond_init(&te->work_cond, NULL);
    te->listen_fd = te->wake_pipe[0] = te->wake_pipe[1] = -1;
    te->reg_gen = 1;
    te->peers_by_name = mc_map_new();
    te->cappeers = 8;
    te->peers = calloc(te->cappeers, sizeof *te->peers);
    te->npeers = 1; /* id 0 is the local segment */
    if (!te->peers_by_name || !te->peers) {
        mc_map_free(te->peers_by_name, NULL);
        free(te->peers);
        free(te);
        return MC_TE_ERR_MEMORY;
    }
    *out = te;
    return 0;
}

/* boot id + pid namespace + network namespace. Equal pid namespaces on one
 * boot are what process_vm_readv needs; the network namespace is added because
 * a process in another one is another host as far as the pool is concerned
 * (a container, or a test host in tests/cluster): its bytes must cross the
 * network path, never a shortcut through this kernel's memory. */
static void read_host_id(char *buf, size_t len)
{
    char boot[64] = "", pid_ns[64] = "", net_ns[64] = "";
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (f) {
        if (!fgets(boot, sizeof boot, f)) boot[0] = '\0';
        fclose(f);
        boot[strcspn(boot, "\n")] = '\0';
    }
    ssize_t n = readlink("/proc/self/ns/pid", pid_ns, sizeof pid_ns - 1);
    pid_ns[n > 0 ? n : 0] = '\0';
    n = readlink("/proc/self/ns/net", net_ns, sizeof net_ns - 1);
    net_ns[n > 0 ? n : 0] = '\0';
    if (boot[0] && pid_ns[0] && net_ns[0])
        snprintf(buf, len, "%s/%s/%s", boot, pid_ns, net_ns);
    else
        buf[0] = '\0';
}

/* The address to advertise and bind: MC_TCP_BIND_ADDRESS, else the host part
 * of the local name when it resolves to IPv4, else the first local address. */
static void pick_ip(const char *host, char *ip, size_t len)
{
    const char *env = getenv("MC_TCP_BIND_ADDRESS");
    if (env && *env) {
        snprintf(ip, len, "%s", env);
        return;
    }
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai;
    if (host[0] && getaddrinfo(host, NULL, &hints, &ai) == 0) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, ip, (socklen_t)len);
        freeaddrinfo(ai);
        return;
    }
    mc_net_local_ip(ip, len);
}

/* conn for logs: credentials in "scheme://user:password@host" become "***". */
static const char *log_conn(const char *conn, char *buf, size_t len)
{
    const char *at = strchr(conn, '@'), *sch = strstr(conn, "://");
    if (!at || !sch || at < sch) return conn;
    snprintf(buf, len, "%.*s***%s", (int)(sch + 3 - conn), conn, at);
    return buf;
}

/* Subscribes to changes of every segment's records where the store has a
 * change feed (etcd), so that peers that re-register are re-read on their
 * next use rather than after a failed transfer. Without a feed (http, redis)
 * descriptors are re-read when a transfer finds them stale, as before. */
static void watch_peers(mc_te_t *te)
{
    char key[512];
    if (mc_meta_key(key, sizeof key, "ram", "")) return;
    size_t kl = strlen(key);
    if (kl < 4) return;
    key[kl - 4] = '\0'; /* drop "ram/" */
    snprintf(te->meta_prefix, sizeof te->meta_prefix, "%s", key);
    int rc = mc_meta_watch(te->meta, te->meta_prefix, mc__te_on_meta_change, te);
    if (rc == 0) MC_LOGD(TAG, "watching '%s' for peers that re-register", te->meta_prefix);
}

int mc_te_init(mc_te_t *te, const char *local_name, const char *conn, const char *protocol,
               const char *devices)
{
    if (!te || te->initialized || !local_name || !*local_name || !conn ||
        strlen(local_name) >= sizeof te->local_name)
        return MC_TE_ERR_INVALID_ARGUMENT;
    /* "tcp" (or none) and "rdma"; anything else is refused, so that a typo
     * is not silently another transport */
    int want_rdma = protocol && !strcasecmp(protocol, "rdma");
    if (protocol && *protocol && !want_rdma && strcasecmp(protocol, "tcp") != 0) {
        MC_LOGE(TAG, "unknown protocol '%s' (accepted: tcp, rdma)", protocol);
        return MC_TE_ERR_INVALID_ARGUMENT;
    }
    snprintf(te->local_name, sizeof te->local_name, "%s", local_name);
    int rc = mc_meta_open(conn, &te->meta);
    if (rc) {
        char lc[512];
        MC_LOGE(TAG, "cannot open metadata '%s'", log_conn(conn, lc, sizeof lc));
        return MC_TE_ERR_METADATA;
    }
    te->p2p = mc_meta_is_p2p(te->meta);
    te->force_tcp = mc_env_bool("MC_FORCE_TCP", 0);
    te->lanes = (int)mc_env_int("MC_TCP_LANES_PER_PEER", 4, 1, MC_TE_MAX_LANES);
    /* one worker per core: more only add context switches to a copy-bound
     * path (measured on 2 cores: 2 workers 7.9-8.0 GB/s over tcp, 4 workers 5.4-5.9) */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    te->nworkers = (int)mc_env_int("MC_TE_WORKERS", ncpu < 2 ? 2 : ncpu > 16 ? 16 : ncpu, 1, 64);
    te->piece_min = (uint64_t)mc_env_int("MC_TE_PIECE_MIN", 2 << 20, 4096, 1ll << 30);
    /* small tcp pieces in a row run as one pipeline (te_tcp.c); 0: one round trip each */
    te->tcp_pipeline = (int)mc_env_int("MC_TE_TCP_PIPELINE", 1, 0, 1);
    te->io_timeout_ms = (int)mc_env_int("MC_TE_IO_TIMEOUT_MS", 30000, 100, 3600000);
    te->connect_timeout_ms = (int)mc_env_int("MC_HANDSHAKE_CONNECT_TIMEOUT", 5, 1, 600) * 1000;
    te->auth_key = mc_auth_cluster_key();
    /* server limits, docs/transfer-engine.md "Server limits" */
    te->frame_base_ms = (uint64_t)te->io_timeout_ms;
    te->frame_min_rate = (uint64_t)mc_env_int("MC_TE_FRAME_MIN_RATE", 1 << 20, 1, 1ll << 40);
    te->max_conns = (size_t)mc_env_int("MC_TE_MAX_CONNS", 1024, 1, 1 << 20);
    te->notify_max_count = (size_t)mc_env_int("MC_TE_NOTIFY_MAX_COUNT", 4096, 1, 1 << 24);
    te->notify_max_bytes = (size_t)mc_env_int("MC_TE_NOTIFY_MAX_BYTES", 64ll << 20, 1, 1ll << 40);
    read_host_id(te->host_id, sizeof te->host_id);

    char host[256];
    uint16_t name_port = 0;
    if (mc_net_split_hostport(local_name, host, sizeof host, &name_port))
        snprintf(host, sizeof host, "%s", local_name);
    pick_ip(host, te->ip, sizeof te->ip);
    uint16_t lo = (uint16_t)mc_env_int("MC_MIN_RPC_PORT", 15000, 1, 65535);
    uint16_t hi = (uint16_t)mc_env_int("MC_MAX_RPC_PORT", 17000, 1, 65535);
    rc = mc_sock_listen_range(te->ip, lo, hi, 500, &te->listen_fd, &te->port);
    if (rc) {
        MC_LOGE(TAG, "cannot listen on %s in ports %u-%u: %s", te->ip, lo, hi, strerror(-rc));
        return MC_TE_ERR_SOCKET;
    }
    mc_auth_note_listener(TAG, "transfer engine", te->ip, te->port);
    /* rdma with no usable device: one warning (what was looked for, what was
     * found), then tcp, so that configs saying "rdma" keep working */
    if (want_rdma) mc__te_rdma_open(te, devices);
    if (te->p2p)
        snprintf(te->seg_name, sizeof te->seg_name, "%s:%u", te->ip, te->port);
    else
        snprintf(te->seg_name, sizeof te->seg_name, "%s", local_name);

    if ((rc = mc__te_claim_name(te))) return rc;
    if (!te->p2p) watch_peers(te);
    te->initialized = 1;
    if ((rc = mc__te_publish(te)) || (rc = mc__te_server_start(te)) ||
        (rc = mc__te_workers_start(te)))
        return rc;
    char lc[512];
    MC_LOGI(TAG, "segment '%s' serving on %s:%u (metadata %s%s)", te->seg_name, te->ip, te->port,
            log_conn(conn, lc, sizeof lc), te->force_tcp ? ", MC_FORCE_TCP" : "");
    return 0;
}

void mc_te_destroy(mc_te_t *te)
{
    if (!te) return;
    if (te->meta) mc_meta_unwatch(te->meta); /* its callback reads the peer table */
    if (te->initialized && !te->p2p) {
        char key[512];
        mc_meta_key(key, sizeof key, "ram", te->seg_name);
        mc_meta_del(te->meta, key);
        mc_meta_key(key, sizeof key, "rpc_meta", te->seg_name);
        mc_meta_del(te->meta, key);
    }
    mc__te_server_stop(te);
    if (te->workers) mc__te_workers_stop(te);
    mc__te_rdma_close(te); /* closes the buffers' registrations too */
    mc__te_batches_free(te);
    mc__te_peers_free(te);
    mc_te_notify_free(te->notifies, te->nnotify);
    free(te->bufs);
    mc_meta_close(te->meta);
    pthread_rwlock_destroy(&te->bufs_lock);
    pthread_mutex_destroy(&te->peers_lock);
    pthread_mutex_destroy(&te->conns_lock);
    pthread_cond_destroy(&te->conns_cond);
    pthread_mutex_destroy(&te->notify_lock);
    pthread_mutex_destroy(&te->batch_lock);
    pthread_mutex_destroy(&te->work_lock);
    pthread_cond_destroy(&te->work_cond);
    free(te);
}

int mc_te_get_rpc_port(const mc_te_t *te)
{
    return te && te->initialized ? te->port : -1;
}

const char *mc_te_segment_name(const mc_te_t *te)
{
    return te->seg_name;
}

/* Index of the first buffer with addr > a (binary search). */
static size_t upper_bound_locked(const mc_te_t *te, uint64_t a)
{
    size_t lo = 0, hi = te->nbufs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (te->bufs[mid].addr <= a)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int mc__te_local_contains_locked(const mc_te_t *te, uint64_t addr, uint64_t len)
{
    mc__te_desc_t view = {.nbufs = te->nbufs, .bufs = te->bufs};
    return mc__te_desc_contains(&view, addr, len);
}

int mc_te_is_registered(mc_te_t *te, const void *addr, size_t len)
{
    pthread_rwlock_rdlock(&te->bufs_lock);
    int ok = mc__te_local_contains_locked(te, (uint64_t)(uintptr_t)addr, len);
    pthread_rwlock_unlock(&te->bufs_lock);
    return ok;
}

int mc__te_self_desc(mc_te_t *te, mc__te_desc_t *d)
{
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", te->seg_name);
    snprintf(d->protocol, sizeof d->protocol, "%s", te->rdma ? "rdma" : "tcp");
    mc__te_rdma_self_desc(te, d);
    snprintf(d->ip, sizeof d->ip, "%s", te->ip);
    snprintf(d->host_id, sizeof d->host_id, "%s", te->host_id);
    d->port = te->port;
    d->pid = getpid();
    d->start_time = mc__te_proc_start_time(d->pid);
    d->gen_addr = (uint64_t)(uintptr_t)&te->reg_gen;
    pthread_rwlock_rdlock(&te->bufs_lock);
    d->gen = __atomic_load_n(&te->reg_gen, __ATOMIC_ACQUIRE);
    if (te->nbufs) {
        d->bufs = malloc(te->nbufs * sizeof *d->bufs);
        if (d->bufs) {
            memcpy(d->bufs, te->bufs, te->nbufs * sizeof *d->bufs);
            d->nbufs = te->nbufs;
        }
    }
    int ok = !te->nbufs || d->bufs;
    pthread_rwlock_unlock(&te->bufs_lock);
    return ok ? 0 : MC_TE_ERR_MEMORY;
}

int mc__te_publish(mc_te_t *te)
{
    if (te->p2p || !te->initialized) return 0;
    mc__te_desc_t d;
    int rc = mc__te_self_desc(te, &d);
    if (rc) return rc;
    char *json = mc__te_desc_encode(&d), key[512];
    mc__te_desc_clear(&d);
    mc_meta_key(key, sizeof key, "ram", te->seg_name);
    rc = json ? mc_meta_put(te->meta, key, json) : -ENOMEM;
    free(json);
    if (rc) {
        MC_LOGE(TAG, "cannot publish the descriptor of '%s': %s", te->seg_name, strerror(-rc));
        return MC_TE_ERR_METADATA;
    }
    return 0;
}

int mc_te_republish(mc_te_t *te)
{
    if (!te || !te->initialized) return MC_TE_ERR_INVALID_ARGUMENT;
    int rc = mc__te_claim_name(te);
    return rc ? rc : mc__te_publish(te);
}

/* Inserts b (its range checked here, its rdma registration made by the
 * caller) into the table. */
static int add_buf_locked(mc_te_t *te, const mc__te_buf_t *b)
{
    uint64_t a = b->addr, len = b->length;
    size_t i = upper_bound_locked(te, a);
    if ((i > 0 && te->bufs[i - 1].addr + te->bufs[i - 1].length > a) ||
        (i < te->nbufs && a + len > te->bufs[i].addr))
        return MC_TE_ERR_ADDRESS_OVERLAPPED;
    if (te->nbufs == te->capbufs) {
        size_t cap = te->capbufs ? te->capbufs * 2 : 16;
        mc__te_buf_t *n = realloc(te->bufs, cap * sizeof *n);
        if (!n) return MC_TE_ERR_MEMORY;
        te->bufs = n;
        te->capbufs = cap;
    }
    memmove(&te->bufs[i + 1], &te->bufs[i], (te->nbufs - i) * sizeof *te->bufs);
    te->bufs[i] = *b;
    te->nbufs++;
    return 0;
}

/* Removes the buffer starting at addr and copies it to *out. */
static int del_buf_locked(mc_te_t *te, void *addr, mc__te_buf_t *out)
{
    uint64_t a = (uint64_t)(uintptr_t)addr;
    size_t i = upper_bound_locked(te, a);
    if (i == 0 || te->bufs[i - 1].addr != a) return MC_TE_ERR_ADDRESS_NOT_REGISTERED;
    *out = te->bufs[i - 1];
    memmove(&te->bufs[i - 1], &te->bufs[i], (te->nbufs - i) * sizeof *te->bufs);
    te->nbufs--;
    return 0;
}

int mc_te_register_batch(mc_te_t *te, void *const *addrs, const size_t *lens, size_t n,
                         const char *location)
{
    if (!te || !te->initialized || (n && (!addrs || !lens))) return MC_TE_ERR_INVALID_ARGUMENT;
    if (n == 0) return 0;
    mc__te_buf_t *bs = calloc(n, sizeof *bs);
    if (!bs) return MC_TE_ERR_MEMORY;
    /* the rdma registrations first, outside the table's lock (pinning can be
     * slow); stop at the first that fails */
    int rc = 0;
    size_t ready = 0, done = 0;
    for (; ready < n && rc == 0; ready++) {
        mc__te_buf_t *b = &bs[ready];
        b->addr = (uint64_t)(uintptr_t)addrs[ready];
        b->length = lens[ready];
        snprintf(b->location, sizeof b->location, "%s", location && *location ? location : "*");
        if (!addrs[ready] || lens[ready] == 0 || b->addr + b->length < b->addr)
            rc = MC_TE_ERR_INVALID_ARGUMENT;
        else
            rc = mc__te_rdma_reg(te, b);
    }
    size_t nok = rc ? ready - 1 : ready; /* bs[nok] failed, when rc */
    pthread_rwlock_wrlock(&te->bufs_lock);
    int arc = 0;
    for (; done < nok && arc == 0; done++)
        arc = add_buf_locked(te, &bs[done]);
    __atomic_add_fetch(&te->reg_gen, 1, __ATOMIC_RELEASE);
    pthread_rwlock_unlock(&te->bufs_lock);
    size_t added = arc ? done - 1 : done;
    for (size_t i = added; i < nok; i++) /* refused by the table: not published */
        mc__te_rdma_dereg(te, &bs[i]);
    if (arc) rc = arc;
    size_t bad = arc ? done - 1 : ready - 1;
    if (rc)
        MC_LOGW(TAG, "register %p (+%zu): %s", addrs[bad], lens[bad], mc_te_strerror(rc));
    free(bs);
    int prc = added ? mc__te_publish(te) : 0;
    return rc ? rc : prc;
}

int mc_te_register(mc_te_t *te, void *addr, size_t len, const char *location)
{
    return mc_te_register_batch(te, &addr, &len, 1, location);
}

int mc_te_unregister_batch(mc_te_t *te, void *const *addrs, size_t n)
{
    if (!te || !te->initialized || (n && !addrs)) return MC_TE_ERR_INVALID_ARGUMENT;
    int rc = 0;
    size_t done = 0, nrem = 0;
    mc__te_buf_t one, *removed = n > 1 ? malloc(n * sizeof *removed) : &one;
    if (!removed) return MC_TE_ERR_MEMORY;
    pthread_rwlock_wrlock(&te->bufs_lock); /* server ops check their range under it shared */
    /* same-host peers see the new generation before their next copy */
    __atomic_add_fetch(&te->reg_gen, 1, __ATOMIC_RELEASE);
    for (; done < n && rc == 0; done++)
        if ((rc = del_buf_locked(te, addrs[done], &removed[nrem])) == 0) nrem++;
    pthread_rwlock_unlock(&te->bufs_lock);
    /* tcp transfers that were checked against these buffers before they went
     * are cut, not waited for: after this no server thread touches them */
    mc__te_server_fence(te, removed, nrem);
    for (size_t i = 0; i < nrem; i++) /* the NICs refuse remote access from here on */
        mc__te_rdma_dereg(te, &removed[i]);
    if (removed != &one) free(removed);
    int prc = nrem ? mc__te_publish(te) : 0;
    return rc ? rc : prc;
}

int mc_te_unregister(mc_te_t *te, void *addr)
{
    return mc_te_unregister_batch(te, &addr, 1);
}

int mc_te_open_segment(mc_te_t *te, const char *name, int32_t *handle)
{
    if (!te || !te->initialized || !handle) return MC_TE_ERR_INVALID_ARGUMENT;
    return mc__te_peer_open(te, name, handle);
}

int mc_te_close_segment(mc_te_t *te, int32_t handle)
{
    if (handle == MC_TE_LOCAL_SEGMENT) return 0;
    mc__te_peer_t *p = mc__te_peer_get(te, handle);
    if (!p) return MC_TE_ERR_INVALID_ARGUMENT;
    mc__te_peer_drop_conns(p);
    pthread_mutex_lock(&p->lock);
    p->have_desc = 0; /* re-read on next use */
    pthread_mutex_unlock(&p->lock);
    return 0;
}

int mc_te_first_buffer(mc_te_t *te, const char *name, uint64_t *addr, uint64_t *len)
{
    int32_t h;
    int rc = mc_te_open_segment(te, name, &h);
    if (rc) return rc;
    rc = MC_TE_ERR_ADDRESS_NOT_REGISTERED;
    if (h == MC_TE_LOCAL_SEGMENT) {
        pthread_rwlock_rdlock(&te->bufs_lock);
        if (te->nbufs) *addr = te->bufs[0].addr, *len = te->bufs[0].length, rc = 0;
        pthread_rwlock_unlock(&te->bufs_lock);
        return rc;
    }
    mc__te_peer_t *p = mc__te_peer_get(te, h);
    pthread_mutex_lock(&p->lock);
    if (p->have_desc && p->desc.nbufs)
        *addr = p->desc.bufs[0].addr, *len = p->desc.bufs[0].length, rc = 0;
    pthread_mutex_unlock(&p->lock);
    return rc;
}

const char *mc_te_segment_transport(mc_te_t *te, int32_t handle)
{
    if (handle == MC_TE_LOCAL_SEGMENT) return "local";
    mc__te_peer_t *p = mc__te_peer_get(te, handle);
    if (!p) return "none";
    pthread_mutex_lock(&p->lock);
    int shm = p->shm_state == 1, rdma = p->rdma_state == 1 && te->rdma;
    pthread_mutex_unlock(&p->lock);
    return rdma ? "rdma" : shm ? "shm" : "tcp";
}

/* Logs a drop: the first of a burst at once, then at most one line every 10 s
 * while drops go on; a burst ends when a notification is queued again.
 * Caller holds notify_lock. */
static void notify_drop_locked(mc_te_t *te, const char *name, const char *peer, size_t len)
{
    te->notify_dropped++;
    te->notify_burst++;
    uint64_t now = mc_now_ms();
    if (te->notify_warn_ms && now - te->notify_warn_ms < 10000) return;
    MC_LOGW(TAG,
            "peer %s: notification queue full (%zu queued, %zu bytes; limits %zu, %zu): "
            "dropped %llu, the latest '%s' of %zu bytes (%llu dropped in all)",
            peer, te->nnotify, te->notify_bytes, te->notify_max_count, te->notify_max_bytes,
            (unsigned long long)te->notify_burst, name, len,
            (unsigned long long)te->notify_dropped);
    te->notify_warn_ms = now ? now : 1;
    te->notify_burst = 0;
}

int mc__te_notify_push(mc_te_t *te, char *name, char *msg, const char *peer)
{
    size_t len = strlen(name) + strlen(msg);
    int st = MC_TE_ST_OK;
    pthread_mutex_lock(&te->notify_lock);
    if (te->nnotify >= te->notify_max_count || len > te->notify_max_bytes - te->notify_bytes ||
        te->notify_bytes > te->notify_max_bytes) {
        notify_drop_locked(te, name, peer, len);
        st = MC_TE_ST_QUEUE_FULL;
        goto out;
    }
    if (te->nnotify == te->capnotify) {
        size_t cap = te->capnotify ? te->capnotify * 2 : 16;
        mc_te_notify_t *n = realloc(te->notifies, cap * sizeof *n);
        if (!n) {
            MC_LOGE(TAG, "peer %s: out of memory: notification from '%s' dropped", peer, name);
            te->notify_dropped++;
            st = MC_TE_ST_QUEUE_FULL;
            goto out;
        }
        te->notifies = n;
        te->capnotify = cap;
    }
    te->notifies[te->nnotify++] = (mc_te_notify_t){name, msg};
    te->notify_bytes += len;
    te->notify_warn_ms = 0; /* a burst of drops, if any, is over */
    te->notify_burst = 0;
    name = msg = NULL;
out:
    pthread_mutex_unlock(&te->notify_lock);
    free(name);
    free(msg);
    return st;
}

uint64_t mc_te_notify_dropped(mc_te_t *te)
{
    pthread_mutex_lock(&te->notify_lock);
    uint64_t n = te->notify_dropped;
    pthread_mutex_unlock(&te->notify_lock);
    return n;
}

int mc_te_notify_fetch(mc_te_t *te, mc_te_notify_t **out, size_t *n)
{
    pthread_mutex_lock(&te->notify_lock);
    *out = te->notifies;
    *n = te->nnotify;
    te->notifies = NULL;
    te->nnotify = te->capnotify = 0;
    te->notify_bytes = 0;
    pthread_mutex_unlock(&te->notify_lock);
    return 0;
}

void mc_te_notify_free(mc_te_notify_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].name);
        free(v[i].msg);
    }
    free(v);
}

int mc_te_notify_send(mc_te_t *te, const char *segment, const char *name, const char *msg)
{
    if (!te || !te->initialized || !segment || !name || !msg) return MC_TE_ERR_INVALID_ARGUMENT;
    char ip[64];
    uint16_t port;
    int rc = mc__te_resolve_endpoint(te, segment, ip, sizeof ip, &port);
    if (rc) return rc;
    char *payload = mc__te_notify_encode(name, msg);
    if (!payload) return MC_TE_ERR_MEMORY;
    rc = mc__te_rpc_call(te, ip, port, MC_TE_OP_NOTIFY, payload, NULL, NULL);
    free(payload);
    return rc;
}

int mc_te_probe(mc_te_t *te, const char *segment)
{
    if (!te || !te->initialized || !segment) return MC_TE_ERR_INVALID_ARGUMENT;
    char ip[64];
    uint16_t port;
    int rc = mc__te_resolve_endpoint(te, segment, ip, sizeof ip, &port);
    return rc ? rc : mc__te_rpc_call(te, ip, port, MC_TE_OP_PROBE, NULL, NULL, NULL);
}

const char *mc_te_strerror(int err)
{
    switch (err) {
    case MC_TE_OK:
        return "ok";
    case MC_TE_ERR_INVALID_ARGUMENT:
        return "invalid argument";
    case MC_TE_ERR_TOO_MANY_REQUESTS:
        return "too many requests for the batch";
    case MC_TE_ERR_ADDRESS_NOT_REGISTERED:
        return "address not registered";
    case MC_TE_ERR_BATCH_BUSY:
        return "batch busy";
    case MC_TE_ERR_DEVICE_NOT_FOUND:
        return "device not found";
    case MC_TE_ERR_ADDRESS_OVERLAPPED:
        return "address overlaps a registered buffer";
    case MC_TE_ERR_DNS:
        return "name resolution failed";
    case MC_TE_ERR_SOCKET:
        return "socket error";
    case MC_TE_ERR_MALFORMED_JSON:
        return "malformed JSON";
    case MC_TE_ERR_REJECT_HANDSHAKE:
        return "handshake rejected";
    case MC_TE_ERR_METADATA:
        return "metadata error";
    case MC_TE_ERR_ENDPOINT:
        return "endpoint error";
    case MC_TE_ERR_CONTEXT:
        return "engine stopping";
    case MC_TE_ERR_MEMORY:
        return "out of memory";
    case MC_TE_ERR_NOT_IMPLEMENTED:
        return "not implemented";
    default:
        return "unknown error";
    }
}
