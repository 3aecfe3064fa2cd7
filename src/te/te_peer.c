/* te_peer.c: what the engine knows about other segments: their descriptors
 * (cached per process, re-fetched when a transfer finds them stale) and a pool
 * of up to `lanes` persistent connections per peer. Also the one-shot control
 * exchange (META, NOTIFY, PROBE) used for P2P handshakes and notifications. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base_env.h"
#include "base_log.h"
#include "base_time.h"
#include "net_sock.h"
#include "te_int.h"

#define TAG "te-peer"

mc__te_peer_t *mc__te_peer_get(mc_te_t *te, int32_t id)
{
    mc__te_peer_t *p = NULL;
    pthread_mutex_lock(&te->peers_lock);
    if (id > 0 && (size_t)id < te->npeers) p = te->peers[id];
    pthread_mutex_unlock(&te->peers_lock);
    return p;
}

int mc__te_rpc_call(mc_te_t *te, const char *ip, uint16_t port, uint8_t opcode, const char *payload,
                    char **reply, size_t *reply_len)
{
    int fd, rc = mc_sock_connect(ip, port, te->connect_timeout_ms, &fd);
    if (rc) {
        MC_LOGW(TAG, "cannot reach %s:%u: %s", ip, port, strerror(-rc));
        return MC_TE_ERR_SOCKET;
    }
    mc_sock_set_timeout(fd, te->io_timeout_ms);
    char *body = NULL;
    /* the whole exchange has a deadline: a peer that answers a byte at a
     * time holds the caller for a bounded time */
    size_t plen = payload ? strlen(payload) : 0;
    uint64_t max = (uint64_t)mc_env_int("MC_HANDSHAKE_MAX_LENGTH", 1 << 20, 1, 128 << 20);
    uint64_t deadline = mc__te_frame_deadline(te, mc_now_ms(), plen + max);
    int cur = te->io_timeout_ms, io = te->io_timeout_ms;
    mc__te_hdr_t h;
    if ((rc = mc__te_auth_client(te, fd, ip, port, deadline))) { /* logged */
        close(fd);
        return rc;
    }
    rc = mc__te_send_frame_by(fd, opcode, 1, 0, 0, plen, payload, deadline, io, &cur);
    if (rc == 0) {
        uint8_t buf[MC_TE_HDR_LEN];
        const char *why = "connection closed";
        rc = mc__te_io_by(fd, buf, sizeof buf, 0, deadline, io, &cur);
        if (rc == 0 && mc__te_hdr_decode(buf, sizeof buf, &h, &why) != 0) rc = -EPROTO;
        if (rc == 0 && h.opcode != (opcode | MC_TE_OP_REPLY))
            why = "mismatched reply", rc = -EPROTO;
        if (rc == 0 && h.length > max) why = "reply too long", rc = -EPROTO;
        if (rc == 0 && h.status == MC_TE_ST_QUEUE_FULL) { /* the caller reports it */
            close(fd);
            return MC_TE_ERR_TOO_MANY_REQUESTS;
        }
        if (rc == 0 && h.status != MC_TE_ST_OK) why = "request rejected", rc = -EPROTO;
        if (rc == 0 && !(body = malloc(h.length + 1))) rc = -ENOMEM;
        if (rc == 0 && (rc = mc__te_io_by(fd, body, h.length, 0, deadline, io, &cur)) == 0)
            body[h.length] = '\0';
        if (rc)
            MC_LOGW(TAG, "handshake with %s:%u failed: %s", ip, port,
                    rc == -EPROTO  ? why
                    : rc == -ETIME ? "no whole answer by the exchange's deadline"
                                   : strerror(-rc));
    }
    close(fd);
    if (rc) {
        free(body);
        return rc == -EPROTO ? MC_TE_ERR_REJECT_HANDSHAKE : MC_TE_ERR_SOCKET;
    }
    if (reply) {
        *reply = body;
        if (reply_len) *reply_len = h.length;
    } else {
        free(body);
    }
    return 0;
}

int mc__te_resolve_endpoint(mc_te_t *te, const char *name, char *ip, size_t iplen, uint16_t *port)
{
    if (!strcmp(name, te->seg_name) || !strcmp(name, te->local_name)) {
        snprintf(ip, iplen, "%s", te->ip);
        *port = te->port;
        return 0;
    }
    if (te->p2p)
        return mc_net_split_hostport(name, ip, iplen, port) ? MC_TE_ERR_INVALID_ARGUMENT : 0;
    char key[512], *val = NULL;
    if (mc_meta_key(key, sizeof key, "rpc_meta", name)) return MC_TE_ERR_INVALID_ARGUMENT;
    int rc = mc_meta_get(te->meta, key, &val);
    if (rc) {
        MC_LOGW(TAG, "no rpc_meta record for segment '%s' (%s)", name, strerror(-rc));
        return MC_TE_ERR_METADATA;
    }
    rc = mc__te_rpc_decode(val, ip, iplen, port);
    if (rc) MC_LOGW(TAG, "malformed rpc_meta record for segment '%s'", name);
    free(val);
    return rc;
}

/* Fetches a descriptor: from the store, or in P2P mode by a META exchange. */
static int fetch_desc(mc_te_t *te, const char *name, mc__te_desc_t *d)
{
    char *json = NULL, why[256] = "";
    size_t len = 0;
    int rc;
    char ip[64] = "";
    uint16_t port = 0;
    if (te->p2p) {
        if (mc_net_split_hostport(name, ip, sizeof ip, &port)) {
            MC_LOGW(TAG, "segment name '%s' is not ip:port, as P2PHANDSHAKE needs", name);
            return MC_TE_ERR_INVALID_ARGUMENT;
        }
        mc__te_desc_t self;
        char *mine = NULL;
        if (mc__te_self_desc(te, &self) == 0) {
            mine = mc__te_desc_encode(&self);
            mc__te_desc_clear(&self);
        }
        rc = mc__te_rpc_call(te, ip, port, MC_TE_OP_META, mine, &json, &len);
        free(mine);
        if (rc) return rc;
    } else {
        char key[512];
        if (mc_meta_key(key, sizeof key, "ram", name)) return MC_TE_ERR_INVALID_ARGUMENT;
        rc = mc_meta_get(te->meta, key, &json);
        if (rc) {
            MC_LOGW(TAG, "no descriptor for segment '%s' (%s)", name, strerror(-rc));
            return MC_TE_ERR_METADATA;
        }
        len = strlen(json);
    }
    rc = mc__te_desc_decode(json, len, d, why);
    free(json);
    if (rc) {
        MC_LOGW(TAG, "descriptor of segment '%s' rejected: %s", name, why);
        return rc;
    }
    if (te->p2p) snprintf(d->ip, sizeof d->ip, "%s", ip), d->port = port;
    if (!d->ip[0] || !d->port) {
        uint16_t rport;
        rc = mc__te_resolve_endpoint(te, name, d->ip, sizeof d->ip, &rport);
        if (rc) {
            mc__te_desc_clear(d);
            return rc;
        }
        if (!d->port) d->port = rport;
    }
    return 0;
}

int mc__te_peer_refresh(mc_te_t *te, mc__te_peer_t *p)
{
    mc__te_desc_t d;
    /* a change reported while we read is kept for the next use */
    pthread_mutex_lock(&p->lock);
    int was_stale = p->stale;
    p->stale = 0;
    pthread_mutex_unlock(&p->lock);
    int rc = fetch_desc(te, p->name, &d);
    if (rc) {
        pthread_mutex_lock(&p->lock);
        p->stale |= was_stale;
        pthread_mutex_unlock(&p->lock);
        return rc;
    }
    /* both ends on the same rdma provider: rdma, also for a same-host peer
     * (the NIC loops back), so that protocol "rdma" means rdma */
    int rdma = mc__te_rdma_usable(te, &d);
    int shm = !rdma && !te->force_tcp && d.host_id[0] && !strcmp(d.host_id, te->host_id) &&
              d.pid > 0;
    int pidfd = shm ? mc__te_shm_attach(d.pid, d.start_time) : -1;
    if (shm && pidfd < 0) shm = 0; /* stale descriptor of a process that is gone */
    pthread_mutex_lock(&p->lock);
    int moved = p->have_desc && (strcmp(p->desc.ip, d.ip) || p->desc.port != d.port);
    if (!p->have_desc || p->desc.rdma_nnics != d.rdma_nnics ||
        memcmp(p->desc.rdma_nics, d.rdma_nics, sizeof d.rdma_nics))
        p->rdma_av_set = 0; /* other endpoints (a restart): look them up again */
    p->rdma_state = rdma;
    mc__te_desc_clear(&p->desc);
    p->desc = d;
    p->have_desc = 1;
    if (p->shm_state != 0 || shm == 0) p->shm_state = shm; /* a refused shm stays off */
    if (p->pidfd >= 0) close(p->pidfd);
    p->pidfd = p->shm_state == 1 ? pidfd : -1;
    if (p->pidfd != pidfd && pidfd >= 0) close(pidfd);
    pthread_mutex_unlock(&p->lock);
    if (moved) mc__te_peer_drop_conns(p);
    MC_LOGD(TAG, "segment '%s': %zu buffers at %s:%u via %s", p->name, d.nbufs, d.ip, d.port,
            rdma ? "rdma" : shm ? "shm" : "tcp");
    return 0;
}

/* Marks p stale (caller holds te->peers_lock); logs when a cached descriptor
 * is dropped. */
static void mark_stale_locked(mc__te_peer_t *p, const char *why)
{
    pthread_mutex_lock(&p->lock);
    int had = p->have_desc && !p->stale;
    p->stale = 1;
    pthread_mutex_unlock(&p->lock);
    if (had) MC_LOGI(TAG, "segment '%s': %s; its descriptor will be read again", p->name, why);
}

void mc__te_on_meta_change(void *arg, const char *key, int deleted)
{
    mc_te_t *te = arg;
    pthread_mutex_lock(&te->peers_lock);
    if (!key) { /* the change feed reconnected: anything may have changed */
        for (size_t i = 1; i < te->npeers; i++)
            mark_stale_locked(te->peers[i], "metadata watch resynchronised");
    } else {
        const char *name = NULL;
        size_t pl = strlen(te->meta_prefix);
        if (!strncmp(key, te->meta_prefix, pl)) {
            const char *rest = key + pl;
            if (!strncmp(rest, "ram/", 4))
                name = rest + 4;
            else if (!strncmp(rest, "rpc_meta/", 9))
                name = rest + 9;
        }
        mc__te_peer_t *p = name ? mc_map_get(te->peers_by_name, name) : NULL;
        MC_LOGD(TAG, "metadata change: '%s' %s%s", key, deleted ? "deleted" : "written",
                p ? "" : " (no cached peer)");
        if (p) mark_stale_locked(p, deleted ? "its record was deleted" : "it re-registered");
    }
    pthread_mutex_unlock(&te->peers_lock);
}

int mc__te_peer_open(mc_te_t *te, const char *name, int32_t *id)
{
    if (!name || !*name || strlen(name) >= sizeof(((mc__te_peer_t *)0)->name))
        return MC_TE_ERR_INVALID_ARGUMENT;
    if (!strcmp(name, te->seg_name) || !strcmp(name, te->local_name)) {
        *id = MC_TE_LOCAL_SEGMENT;
        return 0;
    }
    pthread_mutex_lock(&te->peers_lock);
    mc__te_peer_t *p = mc_map_get(te->peers_by_name, name);
    if (!p) {
        if (te->npeers == te->cappeers) {
            size_t cap = te->cappeers * 2;
            mc__te_peer_t **n = realloc(te->peers, cap * sizeof *n);
            if (!n) goto oom;
            te->peers = n;
            te->cappeers = cap;
        }
        p = calloc(1, sizeof *p);
        if (!p) goto oom;
        p->id = (int32_t)te->npeers;
        snprintf(p->name, sizeof p->name, "%s", name);
        pthread_mutex_init(&p->lock, NULL);
        pthread_cond_init(&p->cond, NULL);
        p->shm_state = -1;
        p->pidfd = -1;
        if (mc_map_put(te->peers_by_name, name, p, NULL)) {
            free(p);
            goto oom;
        }
        te->peers[te->npeers++] = p;
    }
    pthread_mutex_unlock(&te->peers_lock);
    pthread_mutex_lock(&p->lock);
    int have = p->have_desc && !p->stale;
    pthread_mutex_unlock(&p->lock);
    int rc = have ? 0 : mc__te_peer_refresh(te, p);
    if (rc == 0) *id = p->id;
    return rc;
oom:
    pthread_mutex_unlock(&te->peers_lock);
    return MC_TE_ERR_MEMORY;
}

int mc__te_peer_endpoint(mc_te_t *te, mc__te_peer_t *p, char *ip, size_t iplen, uint16_t *port)
{
    pthread_mutex_lock(&p->lock);
    int have = p->have_desc && !p->stale;
    pthread_mutex_unlock(&p->lock);
    if (!have) {
        int rc = mc__te_peer_refresh(te, p);
        if (rc) return rc;
    }
    pthread_mutex_lock(&p->lock);
    snprintf(ip, iplen, "%s", p->desc.ip);
    *port = p->desc.port;
    pthread_mutex_unlock(&p->lock);
    return 0;
}

int mc__te_peer_check_range(mc_te_t *te, mc__te_peer_t *p, uint64_t addr, uint64_t len)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        pthread_mutex_lock(&p->lock);
        int ok = p->have_desc && mc__te_desc_contains(&p->desc, addr, len);
        pthread_mutex_unlock(&p->lock);
        if (ok) return 0;
        if (attempt == 0 && mc__te_peer_refresh(te, p) != 0) break;
    }
    MC_LOGW(TAG, "segment '%s': %llu bytes at 0x%llx are not inside its registered buffers",
            p->name, (unsigned long long)len, (unsigned long long)addr);
    return MC_TE_ERR_ADDRESS_NOT_REGISTERED;
}

int mc__te_conn_get(mc_te_t *te, mc__te_peer_t *p, int *fd, int *reused)
{
    pthread_mutex_lock(&p->lock);
    while (p->nidle == 0 && p->nopen >= te->lanes)
        pthread_cond_wait(&p->cond, &p->lock);
    if (p->nidle) {
        *fd = p->idle[--p->nidle];
        *reused = 1;
        pthread_mutex_unlock(&p->lock);
        return 0;
    }
    p->nopen++;
    pthread_mutex_unlock(&p->lock);
    *reused = 0;
    char ip[64];
    uint16_t port;
    int rc = mc__te_peer_endpoint(te, p, ip, sizeof ip, &port);
    if (rc == 0) {
        rc = mc_sock_connect(ip, port, te->connect_timeout_ms, fd);
        if (rc) {
            uint64_t now = mc_now_ms();
            pthread_mutex_lock(&p->lock);
            int warn = now - p->last_warn_ms >= 1000;
            if (warn) p->last_warn_ms = now;
            pthread_mutex_unlock(&p->lock);
            if (warn)
                MC_LOGW(TAG, "segment '%s': cannot connect to %s:%u: %s", p->name, ip, port,
                        strerror(-rc));
            rc = MC_TE_ERR_SOCKET;
        }
    }
    if (rc) {
        pthread_mutex_lock(&p->lock);
        p->nopen--;
        pthread_cond_signal(&p->cond);
        pthread_mutex_unlock(&p->lock);
        return rc;
    }
    mc_sock_tune(*fd);
    mc_sock_set_timeout(*fd, te->io_timeout_ms);
    rc = mc__te_auth_client(te, *fd, ip, port, mc__te_frame_deadline(te, mc_now_ms(), 0));
    if (rc) { /* logged; a lane that cannot prove the secret is not opened */
        close(*fd);
        *fd = -1;
        pthread_mutex_lock(&p->lock);
        p->nopen--;
        pthread_cond_signal(&p->cond);
        pthread_mutex_unlock(&p->lock);
        return rc;
    }
    return 0;
}

void mc__te_conn_put(mc_te_t *te, mc__te_peer_t *p, int fd, int broken)
{
    pthread_mutex_lock(&p->lock);
    if (broken || fd < 0 || p->nidle >= MC_TE_MAX_LANES) {
        if (fd >= 0) close(fd);
        p->nopen--;
    } else {
        p->idle[p->nidle++] = fd;
    }
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

void mc__te_peer_drop_conns(mc__te_peer_t *p)
{
    pthread_mutex_lock(&p->lock);
    for (int i = 0; i < p->nidle; i++)
        close(p->idle[i]);
    p->nopen -= p->nidle;
    p->nidle = 0;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

void mc__te_peers_free(mc_te_t *te)
{
    for (size_t i = 1; i < te->npeers; i++) {
        mc__te_peer_t *p = te->peers[i];
        mc__te_peer_drop_conns(p);
        mc__te_desc_clear(&p->desc);
        if (p->pidfd >= 0) close(p->pidfd);
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->cond);
        free(p);
    }
    free(te->peers);
    te->peers = NULL;
    te->npeers = 0;
    mc_map_free(te->peers_by_name, NULL);
    te->peers_by_name = NULL;
}
