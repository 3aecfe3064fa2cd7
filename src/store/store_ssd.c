/* store_ssd.c: the SSD tier inside a store (docs/store.md "SSD tier").
 * Started by setup when the store was asked for it (enable_ssd_offload) and
 * has a segment:
 *   - the disk (store_ssd_io.c) is opened on the offload path and mounted on
 *     the master (DISK_MOUNT), and every record it holds is re-registered
 *     (DISK_ADD, rescan): a store restarted on the same path serves its
 *     objects again;
 *   - the offload thread polls the master for work every
 *     MC_STORE_OFFLOAD_POLL_MS (50): objects to copy from our segment to disk
 *     (straight from the segment into the write buffer: one copy), copies to
 *     delete, objects to promote (read from disk, written to the memory
 *     replica the master allocates); and it evicts whole buckets, oldest
 *     first, past the disk's high watermark, telling the master first
 *     (DISK_DROP: a key a reader holds a lease on keeps its bucket a while);
 *   - the staging server answers readers: STAGE reads the records into the
 *     staging buffer (registered with the TE) and replies with their
 *     addresses; the reader pulls the values with a TE READ and releases them
 *     (or they are reclaimed after MC_STORE_OFFLOAD_STAGE_TTL_MS, 5000). One
 *     disk read and one network copy per byte.
 * The reader's side (mc__ssd_stage / mc__ssd_release) is at the end. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base_codec.h"
#include "base_env.h"
#include "base_log.h"
#include "base_time.h"
#include "net_auth.h"
#include "net_sock.h"
#include "store_int.h"
#include "store_ssd.h"

#define TAG "ssd"
#define SRV_CONNS 64
#define SRV_FRAME_TIMEOUT_MS 10000
#define SRV_IDLE_TIMEOUT_MS 60000
#define STAGE_MAX 4096 /* staged reads held at once */
/* Offload tasks asked for per poll: about OFFLOAD_BATCH_BYTES of the last
 * poll's object size, within [TASKS_PER_POLL_MIN, TASKS_PER_POLL_MAX] (the
 * master answers 4096 at most). Small objects come in large batches (each
 * disk write call ends by waiting for its writes: 4096 objects of 4 KiB are
 * 16 MiB per wait, not 4), large ones in batches the disk writes in well
 * under the master's offload hold (MC_MASTER_DISK_HOLD_MS). */
#define TASKS_PER_POLL_MIN 16
#define TASKS_PER_POLL_MAX 4096
#define TASKS_PER_POLL_FIRST 1024
#define OFFLOAD_BATCH_BYTES (256ull << 20)
#define SSD_ROOT_DIRS_MAX 1024 /* store-N directories tried under the master's --root_fs_dir */
#define ADD_CHUNK 1024

typedef struct {
    uint64_t token;
    uint64_t off, len; /* range of the staging buffer */
    uint64_t deadline_ms;
} stage_t;

typedef struct {
    int fd;
    uint8_t hdr[MC_SSD_SRV_HDR];
    size_t got;    /* bytes of the current frame so far */
    uint8_t *body; /* payload buffer once the header is in */
    uint32_t body_len;
    uint64_t frame_start_ms, last_ms;
    char peer[64];
    /* the cluster secret's exchange (net_auth.h): authed once PROOF checked */
    int authed, hello_seen;
    uint8_t nc[MC_AUTH_NONCE_LEN], ns[MC_AUTH_NONCE_LEN];
} sconn_t;

struct mc_ssd_tier {
    mc_store_t *s;
    mc_ssd_disk_t *disk;
    uint64_t quota;
    int offload_on_evict, promotion_on_hit;
    uint32_t promotion_threshold;
    int poll_ms;
    uint32_t poll_n; /* tasks asked for per poll (offload thread) */
    uint64_t stage_ttl_ms;

    /* staging buffer */
    uint8_t *stg;
    uint64_t stg_size;
    int stg_registered;
    pthread_mutex_t stg_mu;
    stage_t stages[STAGE_MAX]; /* sorted by off */
    size_t nstages;
    uint64_t next_token;

    /* staging server */
    int lfd;
    char endpoint[MC_NAME_MAX];
    pthread_t srv_thread;
    int srv_running;
    int wake[2];

    /* offload thread */
    pthread_t off_thread;
    int off_running;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int stop;
    int need_mount; /* (re)mount the disk and re-register its records */
    uint64_t offloaded, promoted, evicted_keys, served;
};

/* ---- staging buffer ---- */

/* Finds room for len bytes (4 KiB aligned); 0 and *off, or -1 when full.
 * Reclaims stagings past their deadline first. Caller holds stg_mu. */
static int stg_alloc_locked(struct mc_ssd_tier *t, uint64_t len, uint64_t now, uint64_t *token,
                            uint64_t *off)
{
    size_t j = 0;
    for (size_t i = 0; i < t->nstages; i++)
        if (t->stages[i].deadline_ms > now) t->stages[j++] = t->stages[i];
    t->nstages = j;
    if (t->nstages == STAGE_MAX || len > t->stg_size) return -1;
    uint64_t at = 0;
    size_t pos = 0;
    for (; pos < t->nstages; pos++) {
        if (t->stages[pos].off >= at + len) break;
        at = MC_SSD_ALIGN_UP(t->stages[pos].off + t->stages[pos].len);
    }
    if (at + len > t->stg_size) return -1;
    memmove(&t->stages[pos + 1], &t->stages[pos], (t->nstages - pos) * sizeof *t->stages);
    t->stages[pos] = (stage_t){*token, at, len, now + t->stage_ttl_ms};
    t->nstages++;
    *off = at;
    return 0;
}

static void stg_release(struct mc_ssd_tier *t, uint64_t token)
{
    pthread_mutex_lock(&t->stg_mu);
    size_t j = 0;
    for (size_t i = 0; i < t->nstages; i++)
        if (t->stages[i].token != token) t->stages[j++] = t->stages[i];
    t->nstages = j;
    pthread_mutex_unlock(&t->stg_mu);
}

/* ---- staging server ---- */

static int send_all(int fd, const void *buf, size_t len, int timeout_ms)
{
    const uint8_t *p = buf;
    uint64_t end = mc_now_ms() + (uint64_t)timeout_ms;
    while (len) {
        ssize_t k = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k > 0) {
            p += k;
            len -= (size_t)k;
            continue;
        }
        if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return -1;
        uint64_t now = mc_now_ms();
        if (now >= end) return -1;
        struct pollfd pf = {fd, POLLOUT, 0};
        (void)poll(&pf, 1, (int)(end - now));
    }
    return 0;
}

/* Serves one STAGE: stages room for each key under one token, then reads
 * them all with one batched submission (mc_ssd_disk_read_many). */
static void serve_stage(struct mc_ssd_tier *t, sconn_t *c, const mc_ssd_stage_req_t *q)
{
    uint64_t now = mc_now_ms();
    pthread_mutex_lock(&t->stg_mu);
    uint64_t token = ++t->next_token;
    pthread_mutex_unlock(&t->stg_mu);
    size_t tl = strlen(t->s->te_name), n = q->n;
    size_t cap = MC_SSD_SRV_HDR + 4 + tl + 8 + 4 + n * 20;
    uint8_t *out = malloc(cap);
    char **keys = calloc(n ? n : 1, sizeof *keys);
    void **bufs = calloc(n ? n : 1, sizeof *bufs);
    uint64_t *caps = calloc(n ? n : 1, sizeof *caps), *sizes = calloc(n ? n : 1, sizeof *sizes);
    const uint8_t **datas = calloc(n ? n : 1, sizeof *datas);
    int *rcs = calloc(n ? n : 1, sizeof *rcs);
    size_t *want = calloc(n ? n : 1, sizeof *want); /* the keys read, by position */
    if (!out || !keys || !bufs || !caps || !sizes || !datas || !rcs || !want) goto done;
    size_t nw = 0;
    for (size_t i = 0; i < n; i++) {
        keys[i] = strndup((const char *)q->key[i], q->klen[i]);
        if (!keys[i]) {
            rcs[i] = MC_ERR_INTERNAL;
            continue;
        }
        uint64_t rl = mc_ssd_disk_rec_len(t->disk, keys[i], NULL, NULL), off = 0;
        if (!rl) {
            rcs[i] = MC_ERR_OBJECT_NOT_FOUND;
            continue;
        }
        pthread_mutex_lock(&t->stg_mu);
        int arc = stg_alloc_locked(t, rl, now, &token, &off);
        pthread_mutex_unlock(&t->stg_mu);
        if (arc) {
            rcs[i] = MC_ERR_NO_AVAILABLE_HANDLE; /* staging buffer full: retry later */
            continue;
        }
        bufs[nw] = t->stg + off;
        caps[nw] = rl;
        want[nw++] = i;
    }
    /* the batch's keys, packed in the order of want */
    const char **wk = (const char **)calloc(nw ? nw : 1, sizeof *wk);
    int *wrc = calloc(nw ? nw : 1, sizeof *wrc);
    const uint8_t **wd = (const uint8_t **)calloc(nw ? nw : 1, sizeof *wd);
    uint64_t *ws = calloc(nw ? nw : 1, sizeof *ws);
    if (!wk || !wrc || !wd || !ws) {
        for (size_t j = 0; j < nw; j++)
            rcs[want[j]] = MC_ERR_INTERNAL;
        nw = 0;
    }
    for (size_t j = 0; j < nw; j++)
        wk[j] = keys[want[j]];
    if (nw) mc_ssd_disk_read_many(t->disk, wk, nw, bufs, caps, wd, ws, wrc);
    for (size_t j = 0; j < nw; j++) {
        size_t i = want[j];
        rcs[i] = wrc[j];
        datas[i] = wd[j];
        sizes[i] = ws[j];
        if (wrc[j] == MC_ERR_CHECKSUM_MISMATCH) {
            int drc = 0; /* never served again: tell the master */
            (void)mc_master_client_disk_drop(t->s->mc, t->s->client_id, &wk[j], 1, &drc);
        }
    }
    free(wk);
    free(wrc);
    free(wd);
    free(ws);
    mc_wr_t w = mc_wr_init(out + MC_SSD_SRV_HDR, cap - MC_SSD_SRV_HDR);
    mc_wr_u32(&w, (uint32_t)tl);
    mc_wr_bytes(&w, t->s->te_name, tl);
    mc_wr_u64(&w, token);
    mc_wr_u32(&w, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        int ok = rcs[i] == 0;
        mc_wr_u32(&w, (uint32_t)rcs[i]);
        mc_wr_u64(&w, ok ? (uint64_t)(uintptr_t)datas[i] : 0);
        mc_wr_u64(&w, ok ? sizes[i] : 0);
        if (ok) __atomic_fetch_add(&t->served, 1, __ATOMIC_RELAXED);
    }
    size_t plen = (size_t)(w.p - (out + MC_SSD_SRV_HDR));
    mc_ssd_hdr_t h = {MC_SSD_OP_STAGE | 0x80, 0, (uint32_t)plen};
    mc_ssd_hdr_encode(&h, out);
    if (send_all(c->fd, out, MC_SSD_SRV_HDR + plen, 5000))
        MC_LOGW(TAG, "staging reply to %s failed: %s", c->peer, strerror(errno));
done:
    if (keys)
        for (size_t i = 0; i < n; i++)
            free(keys[i]);
    free(keys);
    free(bufs);
    free(caps);
    free(sizes);
    free(datas);
    free(rcs);
    free(want);
    free(out);
}

static void conn_close(sconn_t *c)
{
    close(c->fd);
    free(c->body);
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

/* Answers an exchange frame (or a refusal) with status and an optional body. */
static int auth_reply(sconn_t *c, uint8_t op, int32_t status, const void *body, uint32_t len)
{
    uint8_t out[MC_SSD_SRV_HDR + MC_AUTH_NONCE_LEN + MC_AUTH_MAC_LEN];
    mc_ssd_hdr_t h = {(uint8_t)(op | 0x80), status, len};
    mc_ssd_hdr_encode(&h, out);
    if (len) memcpy(out + MC_SSD_SRV_HDR, body, len);
    return send_all(c->fd, out, MC_SSD_SRV_HDR + len, 5000);
}

/* Logs a refusal for the secret in one line naming the peer, at most one a
 * second (the count since the last in it). */
static void auth_log(sconn_t *c, const char *why)
{
    static mc_auth_refusals_t refusals; /* the process's staging servers together */
    char who[96];
    snprintf(who, sizeof who, "staging peer %s", c->peer);
    mc_auth_refused(&refusals, TAG, who, why);
}

/* One frame of the exchange, or a request that needs it first. Returns 1
 * when h was handled here (0 ok), -1 to close, 0 when h is for the service. */
static int auth_step(sconn_t *c, const mc_ssd_hdr_t *h)
{
    const mc_auth_key_t *k = mc_auth_cluster_key();
    if (h->op != MC_SSD_OP_AUTH_HELLO && h->op != MC_SSD_OP_AUTH_PROOF) {
        if (!k || c->authed) return 0;
        auth_log(c, "no proof of the cluster secret (a store without MC_CLUSTER_SECRET, or an "
                    "old one)");
        if (h->op == MC_SSD_OP_STAGE) (void)auth_reply(c, h->op, MC_ERR_AUTH_REQUIRED, NULL, 0);
        return -1;
    }
    if (!k) return auth_reply(c, h->op, MC_ERR_AUTH_OFF, NULL, 0) ? -1 : 1;
    int hello = h->op == MC_SSD_OP_AUTH_HELLO;
    if (c->authed || hello == c->hello_seen ||
        c->body_len != (hello ? 1 + MC_AUTH_NONCE_LEN : MC_AUTH_MAC_LEN)) {
        auth_log(c, "the secret's exchange out of order or malformed");
        (void)auth_reply(c, h->op, MC_ERR_AUTH_FAILED, NULL, 0);
        return -1;
    }
    if (hello) {
        if (c->body[0] != MC_AUTH_VERSION) {
            auth_log(c, "another version of the secret's handshake");
            (void)auth_reply(c, h->op, MC_ERR_INVALID_VERSION, NULL, 0);
            return -1;
        }
        if (mc_auth_nonce(c->ns)) return -1;
        memcpy(c->nc, c->body + 1, MC_AUTH_NONCE_LEN);
        c->hello_seen = 1;
        uint8_t r[MC_AUTH_NONCE_LEN + MC_AUTH_MAC_LEN];
        memcpy(r, c->ns, MC_AUTH_NONCE_LEN);
        mc_auth_mac(k, 'S', "ssd", c->nc, c->ns, r + MC_AUTH_NONCE_LEN);
        return auth_reply(c, h->op, 0, r, sizeof r) ? -1 : 1;
    }
    if (!mc_auth_mac_ok(k, 'C', "ssd", c->ns, c->nc, c->body)) {
        auth_log(c, "wrong cluster secret");
        (void)auth_reply(c, h->op, MC_ERR_AUTH_FAILED, NULL, 0);
        return -1;
    }
    c->authed = 1;
    return auth_reply(c, h->op, 0, NULL, 0) ? -1 : 1;
}

/* Reads what c has; serves whole frames. Returns -1 to close it. */
static int conn_read(struct mc_ssd_tier *t, sconn_t *c, uint64_t now)
{
    for (;;) {
        uint8_t *dst;
        size_t want;
        if (c->got < MC_SSD_SRV_HDR) {
            dst = c->hdr + c->got;
            want = MC_SSD_SRV_HDR - c->got;
        } else {
            dst = c->body + (c->got - MC_SSD_SRV_HDR);
            want = MC_SSD_SRV_HDR + c->body_len - c->got;
        }
        ssize_t k = want ? recv(c->fd, dst, want, MSG_DONTWAIT) : 0;
        if (k == 0 && want) return -1;
        if (k < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
        if (c->got == 0) c->frame_start_ms = now;
        c->got += (size_t)k;
        c->last_ms = now;
        if (c->got == MC_SSD_SRV_HDR && !c->body) {
            mc_ssd_hdr_t h;
            const char *why;
            if (mc_ssd_hdr_decode(c->hdr, MC_SSD_SRV_HDR, 0, &h, &why)) {
                MC_LOGW(TAG, "staging peer %s: %s; closing the connection", c->peer, why);
                return -1;
            }
            c->body_len = h.len;
            c->body = malloc(h.len ? h.len : 1);
            if (!c->body) return -1;
        }
        if (c->body && c->got == MC_SSD_SRV_HDR + c->body_len) {
            mc_ssd_hdr_t h;
            const char *why;
            (void)mc_ssd_hdr_decode(c->hdr, MC_SSD_SRV_HDR, 0, &h, &why);
            int a = auth_step(c, &h);
            if (a < 0) return -1;
            if (a > 0) {
                /* an exchange frame: answered */
            } else if (h.op == MC_SSD_OP_STAGE) {
                mc_ssd_stage_req_t *q = malloc(sizeof *q);
                if (!q) return -1;
                if (mc_ssd_stage_req_decode(c->body, c->body_len, q, &why)) {
                    MC_LOGW(TAG, "staging peer %s: bad stage request: %s; closing", c->peer, why);
                    free(q);
                    return -1;
                }
                serve_stage(t, c, q);
                free(q);
            } else { /* RELEASE */
                if (c->body_len != 8) {
                    MC_LOGW(TAG, "staging peer %s: bad release request; closing", c->peer);
                    return -1;
                }
                mc_rd_t r = mc_rd_init(c->body, 8);
                stg_release(t, mc_rd_u64(&r));
            }
            free(c->body);
            c->body = NULL;
            c->got = 0;
        }
    }
}

static void *srv_main(void *arg)
{
    struct mc_ssd_tier *t = arg;
    sconn_t conns[SRV_CONNS];
    for (int i = 0; i < SRV_CONNS; i++) {
        memset(&conns[i], 0, sizeof conns[i]);
        conns[i].fd = -1;
    }
    for (;;) {
        struct pollfd pf[SRV_CONNS + 2];
        int map[SRV_CONNS + 2];
        int n = 0;
        pf[n] = (struct pollfd){t->wake[0], POLLIN, 0};
        map[n++] = -2;
        pf[n] = (struct pollfd){t->lfd, POLLIN, 0};
        map[n++] = -1;
        for (int i = 0; i < SRV_CONNS; i++)
            if (conns[i].fd >= 0) {
                pf[n] = (struct pollfd){conns[i].fd, POLLIN, 0};
                map[n++] = i;
            }
        int rc = poll(pf, (nfds_t)n, 1000);
        if (rc < 0 && errno != EINTR) break;
        if (pf[0].revents) break; /* stop */
        uint64_t now = mc_now_ms();
        if (pf[1].revents & POLLIN) {
            struct sockaddr_storage ss;
            socklen_t sl = sizeof ss;
            int fd = accept4(t->lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (fd >= 0) {
                int slot = -1;
                for (int i = 0; i < SRV_CONNS && slot < 0; i++)
                    if (conns[i].fd < 0) slot = i;
                if (slot < 0) {
                    MC_LOGW(TAG, "staging server: %d connections already; refusing one", SRV_CONNS);
                    close(fd);
                } else {
                    int one = 1;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conns[slot].fd = fd;
                    conns[slot].last_ms = now;
                    mc_sock_addr_str((struct sockaddr *)&ss, conns[slot].peer,
                                     sizeof conns[slot].peer);
                }
            }
        }
        for (int k = 2; k < n; k++) {
            sconn_t *c = &conns[map[k]];
            if (pf[k].revents && conn_read(t, c, now) != 0) conn_close(c);
        }
        for (int i = 0; i < SRV_CONNS; i++) {
            sconn_t *c = &conns[i];
            if (c->fd < 0) continue;
            if (c->got && now > c->frame_start_ms + SRV_FRAME_TIMEOUT_MS) {
                MC_LOGW(TAG, "staging peer %s: frame not complete in %d ms; closing", c->peer,
                        SRV_FRAME_TIMEOUT_MS);
                conn_close(c);
            } else if (now > c->last_ms + SRV_IDLE_TIMEOUT_MS) {
                conn_close(c);
            }
        }
    }
    for (int i = 0; i < SRV_CONNS; i++)
        if (conns[i].fd >= 0) conn_close(&conns[i]);
    return NULL;
}

/* Listens on the host of the store's name, port chosen by the OS. */
static int srv_listen(struct mc_ssd_tier *t)
{
    char host[MC_NAME_MAX];
    uint16_t port = 0;
    if (mc_net_split_hostport(t->s->hostname, host, sizeof host, &port) != 0)
        snprintf(host, sizeof host, "%s", t->s->hostname);
    int fd = -1;
    uint16_t p = 0;
    if (mc_sock_listen(host, 0, 64, &fd, &p) != 0) {
        MC_LOGE(TAG, "staging server: cannot listen on %s", host);
        return MC_ERR_INTERNAL;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) (void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    t->lfd = fd;
    snprintf(t->endpoint, sizeof t->endpoint, "%s:%u", host, p);
    mc_auth_note_listener(TAG, "SSD staging server", host, p);
    return 0;
}

/* ---- offload thread ---- */

static int seg_range_ok(const mc_store_t *s, uint64_t addr, uint64_t size)
{
    uint64_t base = (uint64_t)(uintptr_t)s->seg;
    return addr >= base && size <= s->seg_size && addr - base <= s->seg_size - size;
}

typedef struct {
    char **keys;
    uint64_t *sizes, *stamps;
    size_t n, cap;
} reg_t;

static void reg_visit(const char *key, uint64_t size, uint64_t stamp, void *arg)
{
    reg_t *r = arg;
    if (r->n == r->cap) {
        size_t nc = r->cap ? r->cap * 2 : 1024;
        char **nk = realloc(r->keys, nc * sizeof *nk);
        if (nk) r->keys = nk;
        uint64_t *ns = realloc(r->sizes, nc * sizeof *ns);
        if (ns) r->sizes = ns;
        uint64_t *nt = realloc(r->stamps, nc * sizeof *nt);
        if (nt) r->stamps = nt;
        if (!nk || !ns || !nt) return;
        r->cap = nc;
    }
    if (!(r->keys[r->n] = strdup(key))) return;
    r->sizes[r->n] = size;
    r->stamps[r->n++] = stamp;
}

/* Mounts the disk on the master and re-registers every record it holds;
 * records the master refuses (removed or overwritten meanwhile) are deleted. */
static int tier_mount(struct mc_ssd_tier *t)
{
    mc_store_t *s = t->s;
    int ooe = 0, poh = 0;
    uint32_t thr = 0;
    int rc = mc_master_client_disk_mount(s->mc, s->client_id, mc_ssd_disk_id(t->disk), s->hostname,
                                         t->endpoint, t->quota, &ooe, &poh, &thr);
    if (rc) return rc;
    t->offload_on_evict = ooe;
    t->promotion_on_hit = poh;
    t->promotion_threshold = thr;
    reg_t r = {0};
    mc_ssd_disk_each(t->disk, reg_visit, &r);
    size_t accepted = 0, refused = 0;
    int *rcs = calloc(ADD_CHUNK, sizeof *rcs);
    for (size_t i = 0; rcs && i < r.n; i += ADD_CHUNK) {
        size_t k = r.n - i < ADD_CHUNK ? r.n - i : ADD_CHUNK;
        rc = mc_master_client_disk_add(s->mc, s->client_id, (const char *const *)r.keys + i,
                                       r.sizes + i, r.stamps + i, k, 1, rcs);
        if (rc) break;
        for (size_t j = 0; j < k; j++) {
            if (rcs[j] == 0) {
                accepted++;
            } else {
                refused++;
                mc_ssd_disk_delete(t->disk, r.keys[i + j]);
            }
        }
    }
    free(rcs);
    mc_ssd_keys_free(r.keys, r.n);
    free(r.sizes);
    free(r.stamps);
    if (rc == 0)
        MC_LOGI(TAG, "disk of '%s' mounted (staging %s): %zu objects re-registered, %zu refused",
                s->hostname, t->endpoint, accepted, refused);
    return rc;
}

static void do_offloads(struct mc_ssd_tier *t, mc_master_client_disk_tasks_t *tk);

/* Disk eviction: whole buckets, oldest first, down to the low watermark. */
static void do_evict(struct mc_ssd_tier *t)
{
    mc_store_t *s = t->s;
    for (int rounds = 0; rounds < 64; rounds++) {
        uint64_t bucket;
        char **keys;
        size_t n;
        if (mc_ssd_disk_victims(t->disk, &bucket, &keys, &n) <= 0) return;
        int *rcs = calloc(n ? n : 1, sizeof *rcs);
        int rc =
            rcs ? mc_master_client_disk_drop(s->mc, s->client_id, (const char *const *)keys, n, rcs)
                : MC_ERR_INTERNAL;
        size_t leased = 0;
        for (size_t i = 0; rc == 0 && i < n; i++)
            leased += rcs[i] != 0;
        if (rc == 0 && leased == 0) {
            mc_ssd_disk_drop_bucket(t->disk, bucket);
            t->evicted_keys += n;
        } else {
            /* a key still leased to a reader keeps its bucket; the others
             * are not served any more either way */
            for (size_t i = 0; rc == 0 && i < n; i++)
                if (rcs[i] == 0) mc_ssd_disk_delete(t->disk, keys[i]);
        }
        free(rcs);
        mc_ssd_keys_free(keys, n);
        if (rc || leased || !mc_ssd_disk_above_low(t->disk)) return;
    }
}

static void do_offloads(struct mc_ssd_tier *t, mc_master_client_disk_tasks_t *tk)
{
    mc_store_t *s = t->s;
    size_t n = tk->n;
    if (!n) return;
    const void **srcs = calloc(n, sizeof *srcs);
    int *rcs = calloc(n, sizeof *rcs), *mrcs = calloc(n, sizeof *mrcs);
    const char **ok = calloc(n, sizeof *ok), **bad = calloc(n, sizeof *bad);
    uint64_t *oks = calloc(n, sizeof *oks), *okt = calloc(n, sizeof *okt);
    if (!srcs || !rcs || !mrcs || !ok || !bad || !oks || !okt) goto out;
    for (int attempt = 0; attempt < 2; attempt++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            if (attempt && rcs[i] != MC_ERR_NO_AVAILABLE_HANDLE) continue;
            srcs[i] = seg_range_ok(s, tk->addrs[i], tk->sizes[i])
                          ? (const void *)(uintptr_t)tk->addrs[i]
                          : NULL;
            m++;
        }
        if (!m) break;
        /* bad ranges are refused by the writer through a zero-size entry */
        uint64_t *sz = malloc(n * sizeof *sz);
        if (!sz) goto out;
        for (size_t i = 0; i < n; i++)
            sz[i] =
                (attempt && rcs[i] != MC_ERR_NO_AVAILABLE_HANDLE) || !srcs[i] ? 0 : tk->sizes[i];
        int *r2 = calloc(n, sizeof *r2);
        if (!r2) {
            free(sz);
            goto out;
        }
        for (size_t i = 0; i < n; i++)
            if (!sz[i]) srcs[i] = s->seg; /* not written (rc kept below) */
        mc_ssd_disk_write(t->disk, (const char *const *)tk->keys, srcs, sz, tk->stamps, n, r2);
        for (size_t i = 0; i < n; i++) {
            if (attempt && rcs[i] != MC_ERR_NO_AVAILABLE_HANDLE) continue;
            rcs[i] = sz[i] ? r2[i] : MC_ERR_INVALID_REPLICA;
        }
        free(sz);
        free(r2);
        int full = 0;
        for (size_t i = 0; i < n; i++)
            full |= rcs[i] == MC_ERR_NO_AVAILABLE_HANDLE;
        if (!full) break;
        do_evict(t); /* make room, then once more */
    }
    size_t nok = 0, nbad = 0;
    for (size_t i = 0; i < n; i++) {
        if (rcs[i] == 0) {
            ok[nok] = tk->keys[i];
            oks[nok] = tk->sizes[i];
            okt[nok++] = tk->stamps[i];
        } else {
            bad[nbad++] = tk->keys[i];
        }
    }
    if (nok && mc_master_client_disk_add(s->mc, s->client_id, ok, oks, okt, nok, 0, mrcs) == 0) {
        for (size_t i = 0; i < nok; i++) {
            if (mrcs[i])
                mc_ssd_disk_delete(t->disk, ok[i]); /* changed or gone meanwhile */
            else
                t->offloaded++;
        }
    }
    if (nbad) {
        MC_LOGW(TAG, "%zu of %zu offloads failed (first '%.64s': error %d); they stay in DRAM",
                nbad, n, bad[0], rcs[0] ? rcs[0] : -1);
        (void)mc_master_client_disk_drop(s->mc, s->client_id, bad, nbad, mrcs);
    }
out:
    free(srcs);
    free(rcs);
    free(mrcs);
    free(ok);
    free(bad);
    free(oks);
    free(okt);
}

/* Copies one disk-only object back to DRAM: a memory replica from the
 * master, the bytes from disk, put end. */
static void do_promote(struct mc_ssd_tier *t, const char *key)
{
    mc_store_t *s = t->s;
    uint64_t size = 0;
    uint64_t rl = mc_ssd_disk_rec_len(t->disk, key, &size, NULL);
    if (!rl) return;
    uint8_t *buf = NULL;
    if (posix_memalign((void **)&buf, MC_SSD_ALIGN, rl)) return;
    const uint8_t *data;
    int rc = mc_ssd_disk_read(t->disk, key, buf, rl, &data, &size);
    mc_replica_t *reps = NULL;
    size_t nr = 0;
    mc_replicate_config_t cfg = {.replica_num = 1};
    if (rc == 0)
        rc = mc_master_client_promote_start(s->mc, s->client_id, key, size, &cfg, &reps, &nr);
    if (rc) goto out;
    for (size_t i = 0; i < nr && rc == 0; i++) {
        if (strcmp(reps[i].endpoint, s->te_name) == 0 && seg_range_ok(s, reps[i].addr, size)) {
            memcpy((void *)(uintptr_t)reps[i].addr, data, size);
            continue;
        }
        int32_t h;
        rc = mc_te_open_segment(s->te, reps[i].endpoint, &h);
        mc_te_request_t q = {MC_TE_WRITE, (void *)data, h, reps[i].addr, size};
        if (rc == 0) rc = mc_te_transfer_sync(s->te, &q, 1);
        if (rc) rc = MC_ERR_TRANSFER_FAIL;
    }
    if (rc == 0)
        rc = mc_master_client_put_end(s->mc, s->client_id, key);
    else
        (void)mc_master_client_put_revoke(s->mc, s->client_id, key);
    if (rc == 0) t->promoted++;
out:
    if (rc && rc != MC_ERR_OBJECT_ALREADY_EXISTS)
        MC_LOGI(TAG, "promotion of '%.128s' to DRAM: error %d", key, rc);
    free(reps);
    free(buf);
}

static void *off_main(void *arg)
{
    struct mc_ssd_tier *t = arg;
    mc_store_t *s = t->s;
    int fails = 0;
    pthread_mutex_lock(&t->mu);
    while (!t->stop) {
        int mount = t->need_mount;
        pthread_mutex_unlock(&t->mu);
        if (mount) {
            int rc = tier_mount(t);
            if (rc && fails++ == 0)
                MC_LOGW(TAG, "mounting the disk of '%s' on the master: error %d", s->hostname, rc);
            if (!rc) {
                fails = 0;
                pthread_mutex_lock(&t->mu);
                t->need_mount = 0;
                pthread_mutex_unlock(&t->mu);
            }
        } else {
            mc_master_client_disk_tasks_t tk;
            uint32_t want = t->poll_n;
            int rc = mc_master_client_disk_tasks(s->mc, s->client_id, want, &tk);
            if (rc == MC_ERR_CLIENT_NOT_FOUND) { /* the master forgot us: mount again */
                pthread_mutex_lock(&t->mu);
                t->need_mount = 1;
                pthread_mutex_unlock(&t->mu);
            } else if (rc == 0) {
                for (size_t i = 0; i < tk.ndrops; i++)
                    mc_ssd_disk_delete(t->disk, tk.drops[i]);
                do_offloads(t, &tk);
                for (size_t i = 0; i < tk.npromotes; i++)
                    do_promote(t, tk.promotes[i]);
                int busy = tk.n == want;
                if (tk.n) { /* the next poll: about OFFLOAD_BATCH_BYTES of such objects */
                    uint64_t bytes = 0;
                    for (size_t i = 0; i < tk.n; i++)
                        bytes += tk.sizes[i];
                    uint64_t avg = bytes / tk.n ? bytes / tk.n : 1, k = OFFLOAD_BATCH_BYTES / avg;
                    t->poll_n = k < TASKS_PER_POLL_MIN   ? TASKS_PER_POLL_MIN
                                : k > TASKS_PER_POLL_MAX ? TASKS_PER_POLL_MAX
                                                         : (uint32_t)k;
                }
                mc_master_client_disk_tasks_free(&tk);
                do_evict(t);
                pthread_mutex_lock(&t->mu);
                if (busy) continue; /* more work waiting: no pause */
                pthread_mutex_unlock(&t->mu);
            }
        }
        pthread_mutex_lock(&t->mu);
        if (t->stop) break;
        struct timespec ts = mc_deadline_ts(CLOCK_MONOTONIC, (uint64_t)t->poll_ms);
        while (!t->stop && !t->need_mount &&
               pthread_cond_timedwait(&t->cond, &t->mu, &ts) != ETIMEDOUT) {
        }
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* ---- life cycle ---- */

static uint64_t env_bytes(const char *name, uint64_t def)
{
    const char *v = getenv(name);
    if (!v || !*v) return def;
    char *end;
    unsigned long long x = strtoull(v, &end, 10);
    if (*end || x == 0) {
        MC_LOGW(TAG, "%s=%s is not a positive byte count; using %llu", name, v,
                (unsigned long long)def);
        return def;
    }
    return x;
}

static double env_ratio(const char *name, const char *alias, double def)
{
    const char *v = getenv(name);
    if ((!v || !*v) && alias) v = getenv(alias);
    if (!v || !*v) return def;
    char *end;
    double x = strtod(v, &end);
    if (*end || !(x > 0 && x <= 1)) {
        MC_LOGW(TAG, "%s=%s is not a ratio in (0, 1]; using %.2f", name, v, def);
        return def;
    }
    return x;
}

static void tier_free(struct mc_ssd_tier *t)
{
    if (t->stg_registered) (void)mc_te_unregister(t->s->te, t->stg);
    if (t->stg) munmap(t->stg, t->stg_size);
    if (t->lfd >= 0) close(t->lfd);
    if (t->wake[0] >= 0) close(t->wake[0]);
    if (t->wake[1] >= 0) close(t->wake[1]);
    mc_ssd_disk_close(t->disk);
    pthread_mutex_destroy(&t->mu);
    pthread_mutex_destroy(&t->stg_mu);
    pthread_cond_destroy(&t->cond);
    free(t);
}

int mc__ssd_staging_has(const mc_store_t *s, uint64_t addr, uint64_t size)
{
    const struct mc_ssd_tier *t = s->ssd;
    if (!t || !t->stg) return 0;
    uint64_t base = (uint64_t)(uintptr_t)t->stg;
    return addr >= base && size <= t->stg_size && addr - base <= t->stg_size - size;
}

void mc__ssd_from_master(mc_store_t *s)
{
    if (s->ssd_enable || !s->seg) return;
    int on = 0;
    char root[sizeof s->ssd_path];
    if (mc_master_client_disk_config(s->mc, s->client_id, &on, root, sizeof root) != 0 || !on ||
        !root[0])
        return;
    for (int n = 0; n < SSD_ROOT_DIRS_MAX; n++) {
        if (snprintf(s->ssd_path, sizeof s->ssd_path, "%s/store-%d", root, n) >=
            (int)sizeof s->ssd_path)
            break;
        if (!mc_ssd_dir_free(s->ssd_path)) continue;
        s->ssd_enable = 1;
        MC_LOGI(TAG, "the master's --root_fs_dir=%s: the SSD tier of '%s' on %s", root, s->hostname,
                s->ssd_path);
        return;
    }
    s->ssd_path[0] = '\0';
    MC_LOGW(TAG,
            "the master's --root_fs_dir=%s: no directory store-0..%d there is free; '%s' runs "
            "without the SSD tier",
            root, SSD_ROOT_DIRS_MAX - 1, s->hostname);
}

int mc__ssd_start(mc_store_t *s)
{
    const char *path = s->ssd_path[0] ? s->ssd_path : getenv("MOONCAKE_OFFLOAD_FILE_STORAGE_PATH");
    if (!path || !*path) path = "/data/file_storage";
    if (!s->seg) {
        MC_LOGE(TAG, "enable_ssd_offload needs a segment (global_segment_size > 0)");
        return MC_ERR_INVALID_PARAMS;
    }
    struct mc_ssd_tier *t = calloc(1, sizeof *t);
    if (!t) return MC_ERR_INTERNAL;
    t->s = s;
    t->lfd = t->wake[0] = t->wake[1] = -1;
    pthread_mutex_init(&t->mu, NULL);
    pthread_mutex_init(&t->stg_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cond, &ca);
    pthread_condattr_destroy(&ca);
    t->poll_ms = (int)mc_env_int("MC_STORE_OFFLOAD_POLL_MS", 50, 1, 60000);
    t->poll_n = TASKS_PER_POLL_FIRST;
    t->stage_ttl_ms =
        (uint64_t)mc_env_int("MOONCAKE_OFFLOAD_CLIENT_BUFFER_GC_TTL_MS", 5000, 100, 3600000);
    t->quota = env_bytes("MOONCAKE_OFFLOAD_TOTAL_SIZE_LIMIT_BYTES", 2ull << 40);
    mc_ssd_disk_config_t dc = {
        .path = path,
        .quota = t->quota,
        .bucket = env_bytes("MOONCAKE_OFFLOAD_BUCKET_SIZE_LIMIT_BYTES", 256ull << 20),
        .high = env_ratio("MOONCAKE_OFFLOAD_DISK_HIGH_WATERMARK_RATIO",
                          "MOONCAKE_OFFLOAD_HIGH_WATERMARK_RATIO", 0.90),
        .low = env_ratio("MOONCAKE_OFFLOAD_DISK_LOW_WATERMARK_RATIO",
                         "MOONCAKE_OFFLOAD_LOW_WATERMARK_RATIO", 0.80),
        .write_buf = env_bytes("MC_STORE_OFFLOAD_WRITE_BUFFER_BYTES", 8ull << 20),
    };
    if (!mc_env_bool("MOONCAKE_OFFLOAD_ENABLE_DISK_WATERMARK_EVICTION", 1)) dc.high = 1.0;
    int rc = mc_ssd_disk_open(&dc, &t->disk);
    if (rc) goto fail;
    t->stg_size =
        MC_SSD_ALIGN_UP(env_bytes("MOONCAKE_OFFLOAD_LOCAL_BUFFER_SIZE_BYTES", 1280ull << 20));
    void *p = mmap(NULL, t->stg_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        MC_LOGE(TAG, "staging buffer of %llu bytes: %s", (unsigned long long)t->stg_size,
                strerror(errno));
        rc = MC_ERR_INTERNAL;
        goto fail;
    }
    t->stg = p;
    if (mc_te_register(s->te, t->stg, t->stg_size, "cpu:0") != 0) {
        rc = MC_ERR_INTERNAL;
        goto fail;
    }
    t->stg_registered = 1;
    if (pipe2(t->wake, O_CLOEXEC) != 0 || (rc = srv_listen(t))) {
        rc = MC_ERR_INTERNAL;
        goto fail;
    }
    if ((rc = tier_mount(t))) {
        MC_LOGE(TAG, "mounting the disk of '%s' on master %s: error %d%s", s->hostname,
                s->master_addr, rc,
                rc == MC_ERR_UNAVAILABLE_IN_CURRENT_MODE
                    ? " (start the master with --enable_offload)"
                    : "");
        goto fail;
    }
    if (pthread_create(&t->srv_thread, NULL, srv_main, t) != 0) {
        rc = MC_ERR_INTERNAL;
        goto fail;
    }
    t->srv_running = 1;
    if (pthread_create(&t->off_thread, NULL, off_main, t) != 0) {
        rc = MC_ERR_INTERNAL;
        goto fail;
    }
    t->off_running = 1;
    s->ssd = t;
    MC_LOGI(TAG, "SSD tier of '%s' on %s: quota %llu bytes, staging %llu bytes at %s%s%s",
            s->hostname, path, (unsigned long long)t->quota, (unsigned long long)t->stg_size,
            t->endpoint, t->offload_on_evict ? ", offload on evict" : ", offload at put end",
            t->promotion_on_hit ? ", promotion on hit" : "");
    return 0;
fail:
    if (t->srv_running) {
        (void)!write(t->wake[1], "x", 1);
        pthread_join(t->srv_thread, NULL);
    }
    tier_free(t);
    return rc ? rc : MC_ERR_INTERNAL;
}

void mc__ssd_need_remount(mc_store_t *s)
{
    struct mc_ssd_tier *t = s->ssd;
    if (!t) return;
    pthread_mutex_lock(&t->mu);
    t->need_mount = 1;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->mu);
}

void mc__ssd_stop(mc_store_t *s)
{
    struct mc_ssd_tier *t = s->ssd;
    if (!t) return;
    pthread_mutex_lock(&t->mu);
    t->stop = 1;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->mu);
    if (t->off_running) pthread_join(t->off_thread, NULL);
    (void)mc_master_client_disk_unmount(s->mc, s->client_id);
    if (t->srv_running) {
        (void)!write(t->wake[1], "x", 1);
        pthread_join(t->srv_thread, NULL);
    }
    tier_free(t);
    s->ssd = NULL;
}

int mc__ssd_stats(mc_store_t *s, mc_store_ssd_stats_t *st)
{
    memset(st, 0, sizeof *st);
    struct mc_ssd_tier *t = s->ssd;
    if (!t) return MC_ERR_INVALID_PARAMS;
    mc_ssd_disk_stats_t d;
    mc_ssd_disk_stats(t->disk, &d);
    st->keys = d.keys;
    st->bytes_used = d.bytes_used;
    st->quota = d.quota;
    st->written_bytes = d.written_bytes;
    st->read_bytes = d.read_bytes;
    st->dropped_corrupt = d.dropped_corrupt;
    st->evicted_buckets = d.evicted_buckets;
    st->offloaded = t->offloaded;
    st->promoted = t->promoted;
    st->served = __atomic_load_n(&t->served, __ATOMIC_RELAXED);
    return 0;
}

/* ---- the reader's side ---- */

static int recv_all(int fd, void *buf, size_t len, uint64_t end)
{
    uint8_t *p = buf;
    while (len) {
        uint64_t now = mc_now_ms();
        if (now >= end) return MC_ERR_RPC_TIMEOUT;
        struct pollfd pf = {fd, POLLIN, 0};
        int r = poll(&pf, 1, (int)(end - now));
        if (r < 0 && errno != EINTR) return MC_ERR_RPC_FAIL;
        if (r <= 0) continue;
        ssize_t k = recv(fd, p, len, MSG_DONTWAIT);
        if (k == 0) return MC_ERR_RPC_FAIL;
        if (k < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            return MC_ERR_RPC_FAIL;
        }
        p += k;
        len -= (size_t)k;
    }
    return 0;
}

/* One exchange frame to the staging server: sends op with body, receives the
 * reply header into *h and want bytes of body into out (status 0 only). */
static int stage_auth_rt(int fd, uint8_t op, const void *body, uint32_t len, mc_ssd_hdr_t *h,
                         void *out, uint32_t want, int timeout, uint64_t end)
{
    uint8_t buf[MC_SSD_SRV_HDR + 1 + MC_AUTH_NONCE_LEN];
    mc_ssd_hdr_t q = {op, 0, len};
    mc_ssd_hdr_encode(&q, buf);
    memcpy(buf + MC_SSD_SRV_HDR, body, len);
    if (send_all(fd, buf, MC_SSD_SRV_HDR + len, timeout)) return MC_ERR_TRANSFER_FAIL;
    uint8_t hb[MC_SSD_SRV_HDR];
    const char *why;
    int rc = recv_all(fd, hb, sizeof hb, end);
    if (rc) return rc;
    if (mc_ssd_hdr_decode(hb, sizeof hb, 1, h, &why) || h->op != (op | 0x80))
        return MC_ERR_RPC_FAIL;
    if (h->status) return 0;
    if (h->len != want) return MC_ERR_RPC_FAIL;
    return want ? recv_all(fd, out, want, end) : 0;
}

/* Proves the cluster secret to a staging server and checks its proof, when
 * this process has one. 0, or an error after one line naming the server. */
static int stage_prove(int fd, const char *endpoint, int timeout, uint64_t end)
{
    const mc_auth_key_t *k = mc_auth_cluster_key();
    if (!k) return 0;
    uint8_t hello[1 + MC_AUTH_NONCE_LEN], r[MC_AUTH_NONCE_LEN + MC_AUTH_MAC_LEN];
    uint8_t mac[MC_AUTH_MAC_LEN];
    hello[0] = MC_AUTH_VERSION;
    if (mc_auth_nonce(hello + 1)) return MC_ERR_INTERNAL;
    mc_ssd_hdr_t h;
    int rc =
        stage_auth_rt(fd, MC_SSD_OP_AUTH_HELLO, hello, sizeof hello, &h, r, sizeof r, timeout, end);
    const char *why = NULL;
    if (!rc && h.status)
        why = h.status == MC_ERR_AUTH_OFF ? "it has no cluster secret configured, and this store "
                                            "has one"
                                          : "it refused the secret's HELLO",
        rc = h.status;
    if (!rc && !mc_auth_mac_ok(k, 'S', "ssd", hello + 1, r, r + MC_AUTH_NONCE_LEN))
        why = "it proved another cluster secret (the cluster secrets differ)",
        rc = MC_ERR_AUTH_FAILED;
    if (!rc) {
        mc_auth_mac(k, 'C', "ssd", r, hello + 1, mac);
        rc = stage_auth_rt(fd, MC_SSD_OP_AUTH_PROOF, mac, sizeof mac, &h, NULL, 0, timeout, end);
        if (!rc && h.status)
            why = "it refused this store's proof (the cluster secrets differ)", rc = h.status;
    }
    if (rc)
        MC_LOGE(TAG, "staging server %s of a disk replica: %s", endpoint,
                why ? why : "the cluster secret's exchange failed");
    return rc;
}

int mc__ssd_stage(const char *endpoint, const char *const *keys, size_t n, uint64_t bytes,
                  char te_name[256], int *fd_out, uint64_t *token, mc_ssd_staged_t *v)
{
    *fd_out = -1;
    if (n == 0 || n > MC_SSD_SRV_KEYS_MAX) return MC_ERR_INVALID_PARAMS;
    char host[MC_NAME_MAX];
    uint16_t port = 0;
    if (mc_net_split_hostport(endpoint, host, sizeof host, &port) != 0 || port == 0)
        return MC_ERR_INVALID_REPLICA;
    int timeout = (int)mc_env_int("MC_STORE_OFFLOAD_READ_TIMEOUT_MS", 5000, 100, 600000);
    uint64_t end = mc_now_ms() + (uint64_t)timeout + bytes / 100000; /* + 10 ms per MB */
    int fd = -1;
    if (mc_sock_connect(host, port, timeout, &fd) != 0) {
        MC_LOGW(TAG, "staging server %s of a disk replica unreachable", endpoint);
        return MC_ERR_TRANSFER_FAIL;
    }
    int arc = stage_prove(fd, endpoint, timeout, end);
    if (arc) {
        close(fd);
        return arc;
    }
    size_t plen = 4;
    for (size_t i = 0; i < n; i++)
        plen += 4 + strlen(keys[i]);
    uint8_t *buf = malloc(MC_SSD_SRV_HDR + plen);
    if (!buf) {
        close(fd);
        return MC_ERR_INTERNAL;
    }
    mc_ssd_hdr_t h = {MC_SSD_OP_STAGE, 0, (uint32_t)plen};
    mc_ssd_hdr_encode(&h, buf);
    mc_wr_t w = mc_wr_init(buf + MC_SSD_SRV_HDR, plen);
    mc_wr_u32(&w, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        uint32_t kl = (uint32_t)strlen(keys[i]);
        mc_wr_u32(&w, kl);
        mc_wr_bytes(&w, keys[i], kl);
    }
    int rc = send_all(fd, buf, MC_SSD_SRV_HDR + plen, timeout) ? MC_ERR_TRANSFER_FAIL : 0;
    free(buf);
    uint8_t hdr[MC_SSD_SRV_HDR];
    if (rc == 0) rc = recv_all(fd, hdr, sizeof hdr, end);
    const char *why = NULL;
    uint8_t *body = NULL;
    if (rc == 0 && mc_ssd_hdr_decode(hdr, sizeof hdr, 1, &h, &why)) rc = MC_ERR_RPC_FAIL;
    if (rc == 0 && h.status) rc = h.status;
    if (rc == 0 && !(body = malloc(h.len ? h.len : 1))) rc = MC_ERR_INTERNAL;
    if (rc == 0) rc = recv_all(fd, body, h.len, end);
    if (rc == 0 && mc_ssd_stage_rep_decode(body, h.len, te_name, token, v, (uint32_t)n, &why))
        rc = MC_ERR_RPC_FAIL;
    free(body);
    if (rc) {
        MC_LOGW(TAG, "staging server %s: %s", endpoint,
                why                        ? why
                : rc == MC_ERR_RPC_TIMEOUT ? "no answer in time"
                                           : "connection failed");
        close(fd);
        return rc == MC_ERR_RPC_TIMEOUT || rc == MC_ERR_RPC_FAIL ? MC_ERR_TRANSFER_FAIL : rc;
    }
    *fd_out = fd;
    return 0;
}

void mc__ssd_release(int fd, uint64_t token)
{
    if (fd < 0) return;
    uint8_t buf[MC_SSD_SRV_HDR + 8];
    mc_ssd_hdr_t h = {MC_SSD_OP_RELEASE, 0, 8};
    mc_ssd_hdr_encode(&h, buf);
    mc_wr_t w = mc_wr_init(buf + MC_SSD_SRV_HDR, 8);
    mc_wr_u64(&w, token);
    (void)send_all(fd, buf, sizeof buf, 1000);
    close(fd);
}
