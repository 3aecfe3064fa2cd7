/* master_repl.c: HA replication of the index (master_repl.h), both sides.
 *
 * Leader. An accept thread takes standby connections (at most MAX_STANDBYS);
 * each gets a sender thread and a ring queue of queue_bytes. The sender reads
 * the hello (the view the standby expects: it must be ours and we must be
 * serving), subscribes its queue to the journal sink FIRST, then sends the
 * header and the base: the entries this leader still restores itself, then
 * every journaled object, shard by shard (each shard's frames are copied
 * under its lock into a buffer, and sent after the lock is released, so the
 * leader is never stalled by more than one shard's copy), then END. Then it
 * drains the queue, which holds every record logged since the subscription,
 * and a PING every PING_MS. Base-then-tail is consistent without a global
 * stall: a record is queued under the lock of the object it changes, so a
 * shard's copy either already shows it or the record is in the queue after
 * the subscription; records are whole states (PUT) or erasures (REMOVE,
 * UNMOUNT) applied in order, so replaying a tail record the base already
 * shows ends in the same state.
 * The sink never blocks: a record that does not fit a standby's queue cuts
 * that standby off (its socket is shut down; the sender logs one line); a
 * send that makes no progress for stall_ms does the same, and so does a
 * standby that sends no ack for ack_timeout_ms. The standby then reconnects
 * and re-syncs from scratch.
 *
 * In-sync set (docs/master.md "HA replication"). Every record the sink sees
 * gets a position (seq, counted under mu); a standby acks the tail records
 * it applied (an ack reader thread per standby turns that into a position:
 * the seq at its subscription plus the count). The ISR thread (one per
 * leader, every MC_REPL_ACK_MS) keeps the set of standbys that hold the
 * whole base and ack in time, writes it to the coordination service
 * (cfg.isr_write, conditional on this leader's view) when it changes, and
 * releases the core's held frees (mc_master_set_free_hold) up to the lowest
 * position acked by a member. Safety rules:
 *  - frees are held from the moment a standby has acked its base (hold_since
 *    = seq then); it may be listed only once it acked hold_since, so every
 *    free it has not applied the record of is held;
 *  - a member leaves the set (and stops bounding the release) only once a
 *    write without it succeeded; a write whose outcome is unknown counts as
 *    done for additions and as not done for removals (members = the union);
 *  - a standby elected leader adopts its table only if the key names the view
 *    it followed and lists its id (apps/mooncake_master.c).
 * So a leader cut off from its standbys and from etcd never hands out again
 * a range a listed standby may still map: it holds it until its lease ends.
 *
 * Standby. One thread follows cfg.target: connects, sends the hello, and
 * applies the stream into a fresh restore table (the one it had is dropped
 * once the new leader's header is valid). A connection silent for
 * SILENT_MS, a bad frame, a change of leader or view ends it; the table is
 * kept (the leader may be dead: that table is what a takeover adopts). */
#include "master_repl.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base_env.h"
#include "base_log.h"
#include "base_time.h"
#include "master_int.h"
#include "master_repl_wire.h"
#include "net_auth.h"
#include "net_sock.h"
#include "net_tls.h"

#define TAG "repl"
#define MAX_STANDBYS 8
#define PING_MS 200
#define SILENT_MS 2000
#define CHUNK (256u << 10)
#define RCV_BUF (256u << 10)
#define SND_BUF (256u << 10)
#define ISR_LOG_MS 5000
#define ISR_MS 10 /* the ISR thread's period (an ack wakes it at once) */
/* A sender that just sent records gathers the next ones for this long before it sends again,
 * unsignalled, so that a stream of puts wakes it (and preempts the RPC thread) at most
 * 200 times a second rather than once per record or two; not while freed ranges are held,
 * since those wait for the standby's ack (see "The sender gathers" in docs/master.md). */
#define GATHER_MS 5
enum { CUT_BEHIND = 1, CUT_BYE = 2, CUT_SILENT = 3, CUT_BADACK = 4 };

typedef struct sub {
    struct sub *next;
    struct mc_repl *r;
    int fd;
    mc_tls_conn_t *tls; /* fd's TLS session (net_tls.h), NULL: plaintext */
    char peer[64];
    pthread_t thr, ack_thr;
    int ack_running;
    pthread_cond_t cv;
    uint8_t *q;
    size_t qcap, qhead, qlen;
    int subscribed, done;
    int gathering; /* the sender sleeps GATHER_MS on its own: records need not wake it */
    int cut; /* CUT_*: why it was cut (the sender logs it) */
    uint64_t base_objs;
    /* mu: its id (hello), the seq at its subscription, its acks */
    uint64_t id, base_seq, acked, last_ack_ms;
    int ack_synced; /* it acked the whole base */
} sub_t;

typedef struct {
    uint64_t id, acked; /* acked: the position it acknowledged (absolute) */
} member_t;

struct mc_repl {
    mc_master_t *m;
    mc_repl_config_t cfg;
    uint64_t qcap, stall_ms;
    int lfd;
    uint16_t port;
    _Atomic int stop, leading;
    pthread_t acc_thr, fol_thr;
    int acc_running, fol_running;
    /* leader: subscribers (mu) */
    pthread_mutex_t mu;
    sub_t *subs;
    _Atomic int nsubs;
    _Atomic uint64_t cutoffs, synced_standbys;
    /* leader: positions and the in-sync set (mu; isr_* written by the ISR thread only) */
    _Atomic uint64_t seq;
    _Atomic int holding;
    uint64_t hold_since, ack_timeout_ms;
    member_t isr[MAX_STANDBYS * 2];
    size_t isr_n;
    uint64_t isr_view;    /* the term of the set */
    uint64_t isr_written; /* the term it was written in once at least (0: not yet) */
    _Atomic uint64_t isr_writes, isr_write_fails, isr_size;
    pthread_t isr_thr;
    int isr_running;
    pthread_cond_t isr_cv;
    uint64_t id; /* this master as a standby (random, nonzero) */
    /* standby: the replicated table (fmu) */
    pthread_mutex_t fmu;
    struct mrestore *table;
    char from[320];
    uint64_t version, leader_version, records, lag_ms, applied;
    uint64_t followed_view; /* the view of the stream that filled table */
    int synced, following;
    uint64_t resyncs;
};

/* ---- leader: the sink ---- */

static void ring_put(sub_t *s, const uint8_t *b, size_t n)
{
    size_t tail = (s->qhead + s->qlen) % s->qcap;
    size_t first = s->qcap - tail < n ? s->qcap - tail : n;
    memcpy(s->q + tail, b, first);
    memcpy(s->q, b + first, n - first);
    s->qlen += n;
}

static size_t ring_get(sub_t *s, uint8_t *out, size_t cap)
{
    size_t n = s->qlen < cap ? s->qlen : cap;
    size_t first = s->qcap - s->qhead < n ? s->qcap - s->qhead : n;
    memcpy(out, s->q + s->qhead, first);
    memcpy(out + first, s->q, n - first);
    s->qhead = (s->qhead + n) % s->qcap;
    s->qlen -= n;
    return n;
}

/* The journal's sink: under the object's shard lock; never blocks. */
static void repl_sink(void *arg, const void *frame, size_t len)
{
    mc_repl_t *r = arg;
    pthread_mutex_lock(&r->mu); /* always: a record's position and its queueing are one step */
    atomic_fetch_add(&r->seq, 1);
    if (atomic_load_explicit(&r->nsubs, memory_order_relaxed) == 0) {
        pthread_mutex_unlock(&r->mu);
        return;
    }
    for (sub_t *s = r->subs; s; s = s->next) {
        if (!s->subscribed || s->cut) continue;
        if (s->qlen + len > s->qcap) {
            s->cut = CUT_BEHIND; /* the sender logs it */
            shutdown(s->fd, SHUT_RDWR);
        } else {
            ring_put(s, frame, len);
            /* an idle sender waits on an empty queue, a gathering one for a whole chunk:
             * other records are taken with the ones before them, unsignalled */
            int was_empty = s->qlen == len;
            int chunk_ready = s->qlen >= CHUNK && s->qlen - len < CHUNK;
            /* freed ranges wait for the standby's ack: no gathering then */
            int urgent = mc_master_held_bytes(r->m) != 0;
            if (s->gathering ? !chunk_ready && !urgent : !was_empty) continue;
        }
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&r->mu);
}

/* ---- leader: a standby's sender ---- */

typedef struct {
    sub_t *s;
    uint8_t *buf;
    size_t len, cap;
    uint64_t count;
    int err;
} base_buf_t;

static int base_add(void *arg, const void *frame, size_t n)
{
    base_buf_t *b = arg;
    if (b->len + n > b->cap) {
        size_t nc = b->cap * 2 > b->len + n ? b->cap * 2 : b->len + n;
        uint8_t *nb = realloc(b->buf, nc);
        if (!nb) {
            b->err = ENOMEM;
            return 1;
        }
        b->buf = nb;
        b->cap = nc;
    }
    memcpy(b->buf + b->len, frame, n);
    b->len += n;
    b->count++;
    return 0;
}

/* Sends b's bytes; -errno (the stall limit is the socket's send timeout). */
static int base_flush(base_buf_t *b)
{
    int rc = b->len ? mc_tls_sock_send_all(b->s->tls, b->s->fd, b->buf, b->len) : 0;
    b->len = 0;
    return rc;
}

static size_t small_frame(int type, uint64_t a, uint64_t bval, uint8_t *out, size_t cap)
{
    mc_prec_t rec;
    memset(&rec, 0, offsetof(mc_prec_t, keybuf));
    rec.type = type;
    if (type == MC_PREC_END) rec.count = a;
    if (type == MC_PREC_PING) {
        rec.version = a;
        rec.ping_ms = bval;
    }
    return mc_prec_encode(&rec, out, cap);
}

static const char *send_why(int rc, mc_repl_t *r, char *buf, size_t len)
{
    if (rc == -ETIMEDOUT)
        snprintf(buf, len, "nothing could be sent for %" PRIu64 " ms", r->stall_ms);
    else
        snprintf(buf, len, "%s", strerror(-rc));
    return buf;
}

/* Reads a standby's acks (the back channel) until its socket ends. */
static void *ack_main(void *arg)
{
    sub_t *s = arg;
    mc_repl_t *r = s->r;
    uint8_t buf[MC_REPL_ACK_LEN * 8];
    size_t have = 0;
    for (;;) {
        ssize_t n = mc_tls_sock_recv(s->tls, s->fd, buf + have, sizeof buf - have, 0);
        if (n == 0) break;
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) break;
        } else {
            have += (size_t)n;
        }
        size_t off = 0;
        while (have - off >= MC_REPL_ACK_LEN) {
            uint64_t applied = 0, flags = 0;
            int bad = mc_repl_ack_check(buf + off, have - off, &applied, &flags) != 0;
            pthread_mutex_lock(&r->mu);
            if (bad) {
                if (!s->cut) {
                    s->cut = CUT_BADACK;
                    shutdown(s->fd, SHUT_RDWR);
                    pthread_cond_signal(&s->cv);
                }
            } else {
                int was_synced = s->ack_synced;
                s->acked = s->base_seq + applied;
                s->ack_synced = (flags & MC_REPL_ACK_SYNCED) != 0;
                s->last_ack_ms = mc_now_ms();
                /* release what it acked now, or let it join the set; with nothing held
                 * the ISR thread's own period is soon enough */
                if (mc_master_held_bytes(r->m) || s->ack_synced != was_synced)
                    pthread_cond_signal(&r->isr_cv);
            }
            pthread_mutex_unlock(&r->mu);
            if (bad) return NULL;
            off += MC_REPL_ACK_LEN;
        }
        memmove(buf, buf + off, have - off);
        have -= off;
        pthread_mutex_lock(&r->mu);
        int cut = s->cut;
        pthread_mutex_unlock(&r->mu);
        if (cut || atomic_load(&r->stop)) break;
    }
    return NULL;
}

static void *sub_main(void *arg)
{
    sub_t *s = arg;
    mc_repl_t *r = s->r;
    mc_master_t *m = r->m;
    base_buf_t b = {s, NULL, 0, 0, 0, 0};
    uint8_t *chunk = NULL;
    char why[128];
    uint8_t hello[MC_REPL_HELLO_LEN];
    uint64_t want = 0, view = 0, id = 0, t0 = mc_now_ms();
    mc_sock_set_timeout(s->fd, 2000);
    const mc_auth_key_t *key = mc_auth_cluster_key();
    char aerr[320];
    if (mc_tls_files() && (!(s->tls = mc_tls_conn_new(1, NULL, aerr, sizeof aerr)) ||
                           mc_tls_sock_handshake(s->tls, s->fd, aerr, sizeof aerr))) {
        MC_LOGW(TAG, "standby %s refused: %s", s->peer, aerr);
        goto out;
    }
    if (key && mc_auth_sock_server(s->fd, s->tls, key, "repl", aerr, sizeof aerr)) {
        MC_LOGW(TAG, "standby %s refused: %s", s->peer, aerr); /* the index is not for it */
        goto out;
    }
    int rc = mc_tls_sock_recv_all(s->tls, s->fd, hello, sizeof hello);
    if (rc || mc_repl_hello_check(hello, sizeof hello, &want, &id)) {
        MC_LOGW(TAG, "standby %s refused: %s", s->peer, rc ? strerror(-rc) : "bad hello");
        goto out;
    }
    if (!atomic_load(&r->leading) || !r->cfg.serving(r->cfg.arg, mc_now_ms(), &view) ||
        want != view) {
        MC_LOGI(TAG, "standby %s refused: it follows view %" PRIu64 ", this master %s", s->peer,
                want, atomic_load(&r->leading) ? "leads another view" : "does not lead");
        goto out;
    }
    mc_sock_set_timeout(s->fd, (int)r->stall_ms);
    b.cap = CHUNK * 2;
    b.buf = malloc(b.cap);
    chunk = malloc(CHUNK);
    if (!b.buf || !chunk) goto out;
    /* subscribe first: from now on every record is in the queue */
    pthread_mutex_lock(&r->mu);
    s->subscribed = 1;
    s->id = id;
    s->base_seq = s->acked = atomic_load(&r->seq);
    s->last_ack_ms = mc_now_ms();
    atomic_fetch_add(&r->nsubs, 1);
    uint64_t version = atomic_load(&m->version);
    pthread_mutex_unlock(&r->mu);
    if (pthread_create(&s->ack_thr, NULL, ack_main, s) != 0) goto oom;
    s->ack_running = 1;
    uint8_t hdr[MC_REPL_HDR_LEN];
    mc_repl_hdr_encode(hdr, view, version);
    if ((rc = mc_tls_sock_send_all(s->tls, s->fd, hdr, sizeof hdr))) goto failed;
    if (mc__repl_dump_pending(m, base_add, &b)) goto oom;
    for (size_t i = 0; i < MC_MASTER_SHARDS; i++) {
        if (mc__repl_dump_shard(m, i, base_add, &b)) goto oom;
        if (b.len >= CHUNK && (rc = base_flush(&b))) goto failed;
        pthread_mutex_lock(&r->mu);
        int cut = s->cut;
        pthread_mutex_unlock(&r->mu);
        if (atomic_load(&r->stop) || cut) goto failed;
    }
    uint8_t f[64];
    s->base_objs = b.count;
    size_t fn = small_frame(MC_PREC_END, b.count, 0, f, sizeof f);
    if (fn) base_add(&b, f, fn);
    if ((rc = base_flush(&b))) goto failed;
    atomic_fetch_add(&r->synced_standbys, 1);
    MC_LOGI(TAG, "standby %s subscribed: base of %" PRIu64 " objects sent in %" PRIu64 " ms",
            s->peer, s->base_objs, mc_now_ms() - t0);
    uint64_t last_ping = 0;
    int sent = 0; /* the last pass sent records: gather before the next */
    for (;;) {
        pthread_mutex_lock(&r->mu);
        if (sent && s->qlen < CHUNK && !s->cut && !atomic_load(&r->stop) &&
            !mc_master_held_bytes(m)) {
            s->gathering = 1;
            struct timespec ts = mc_deadline_ts(CLOCK_MONOTONIC, GATHER_MS);
            pthread_cond_timedwait(&s->cv, &r->mu, &ts);
            s->gathering = 0;
        } else if (!s->qlen && !s->cut && !atomic_load(&r->stop)) {
            struct timespec ts = mc_deadline_ts(CLOCK_MONOTONIC, PING_MS);
            pthread_cond_timedwait(&s->cv, &r->mu, &ts);
        }
        int cut = s->cut, stop = atomic_load(&r->stop);
        size_t n = cut || stop ? 0 : ring_get(s, chunk, CHUNK);
        size_t backlog = s->qlen;
        pthread_mutex_unlock(&r->mu);
        if (cut) goto failed;
        if (stop) goto out;
        sent = n != 0;
        if (n && (rc = mc_tls_sock_send_all(s->tls, s->fd, chunk, n))) goto failed;
        uint64_t now = mc_now_ms();
        if (now >= last_ping + PING_MS && backlog < CHUNK) {
            last_ping = now;
            fn = small_frame(MC_PREC_PING, atomic_load(&m->version), now, f, sizeof f);
            if ((rc = mc_tls_sock_send_all(s->tls, s->fd, f, fn))) goto failed;
        }
    }
oom:
    MC_LOGE(TAG, "standby %s dropped: out of memory for its base", s->peer);
    goto out;
failed:
    pthread_mutex_lock(&r->mu);
    int why_cut = s->cut;
    pthread_mutex_unlock(&r->mu);
    if (atomic_load(&r->stop)) goto out;
    if (why_cut == CUT_BYE) {
        MC_LOGI(TAG, "standby %s dropped: this master stopped leading", s->peer);
        goto out;
    }
    atomic_fetch_add(&r->cutoffs, 1);
    if (why_cut == CUT_BEHIND)
        MC_LOGW(TAG,
                "standby %s cut off: it fell behind (queue of %" PRIu64
                " bytes full); it re-syncs from scratch",
                s->peer, r->qcap);
    else if (why_cut == CUT_SILENT)
        MC_LOGW(TAG,
                "standby %s cut off: no ack for %" PRIu64
                " ms; it leaves the in-sync set and re-syncs from scratch",
                s->peer, r->ack_timeout_ms);
    else if (why_cut == CUT_BADACK)
        MC_LOGW(TAG, "standby %s cut off: it sent a malformed ack; it re-syncs from scratch",
                s->peer);
    else
        MC_LOGW(TAG, "standby %s cut off: %s; it re-syncs from scratch", s->peer,
                send_why(rc, r, why, sizeof why));
out:
    if (s->ack_running) {
        shutdown(s->fd, SHUT_RDWR); /* ends its ack reader */
        pthread_join(s->ack_thr, NULL);
        s->ack_running = 0;
    }
    pthread_mutex_lock(&r->mu);
    if (s->subscribed) {
        s->subscribed = 0;
        atomic_fetch_sub(&r->nsubs, 1);
    }
    s->qlen = 0;
    s->done = 1;
    pthread_mutex_unlock(&r->mu);
    pthread_cond_signal(&r->isr_cv);
    free(b.buf);
    free(chunk);
    return NULL;
}

/* Joins and frees finished senders (all of them when all). */
static void reap(mc_repl_t *r, int all)
{
    for (;;) {
        sub_t *victim = NULL;
        pthread_mutex_lock(&r->mu);
        for (sub_t **pp = &r->subs; *pp; pp = &(*pp)->next) {
            if ((*pp)->done || all) {
                victim = *pp;
                *pp = victim->next;
                break;
            }
        }
        if (victim && !victim->done) {
            victim->cut = CUT_BYE;
            shutdown(victim->fd, SHUT_RDWR);
            pthread_cond_signal(&victim->cv);
        }
        pthread_mutex_unlock(&r->mu);
        if (!victim) return;
        pthread_join(victim->thr, NULL);
        close(victim->fd);
        mc_tls_conn_free(victim->tls);
        pthread_cond_destroy(&victim->cv);
        free(victim->q);
        free(victim);
    }
}

static void *accept_main(void *arg)
{
    mc_repl_t *r = arg;
    while (!atomic_load(&r->stop)) {
        reap(r, 0);
        struct pollfd p = {r->lfd, POLLIN, 0};
        if (poll(&p, 1, 200) <= 0) continue;
        int fd = accept(r->lfd, NULL, NULL);
        if (fd < 0) continue;
        sub_t *s = calloc(1, sizeof *s);
        uint8_t *q = s ? malloc(r->qcap) : NULL;
        char peer[64];
        mc_sock_peer_str(fd, peer, sizeof peer);
        pthread_mutex_lock(&r->mu);
        int n = 0;
        for (sub_t *x = r->subs; x; x = x->next)
            n++;
        pthread_mutex_unlock(&r->mu);
        if (!s || !q || n >= MAX_STANDBYS) {
            MC_LOGW(TAG, "standby %s refused: %s", peer,
                    n >= MAX_STANDBYS ? "too many standbys (8)" : "out of memory");
            free(q);
            free(s);
            close(fd);
            continue;
        }
        s->r = r;
        s->fd = fd;
        s->q = q;
        s->qcap = r->qcap;
        snprintf(s->peer, sizeof s->peer, "%s", peer);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&s->cv, &ca);
        pthread_condattr_destroy(&ca);
        int sb = SND_BUF; /* bounded: a stalled standby is noticed after ~1 MiB in the kernel */
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sb, sizeof sb);
        pthread_mutex_lock(&r->mu);
        if (pthread_create(&s->thr, NULL, sub_main, s) != 0) {
            pthread_mutex_unlock(&r->mu);
            pthread_cond_destroy(&s->cv);
            free(q);
            free(s);
            close(fd);
            continue;
        }
        s->next = r->subs;
        r->subs = s;
        pthread_mutex_unlock(&r->mu);
    }
    return NULL;
}

/* ---- leader: the in-sync set ---- */

/* The core's hold callback: frees are held while a standby is, or may become,
 * a member; the position is that of the last record logged. */
static int repl_hold(void *arg, uint64_t *pos)
{
    mc_repl_t *r = arg;
    if (!atomic_load(&r->holding)) return 0;
    *pos = atomic_load(&r->seq);
    return 1;
}

static int member_find(const member_t *v, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (v[i].id == id) return (int)i;
    return -1;
}

static int same_ids(const member_t *a, size_t na, const member_t *b, size_t nb)
{
    if (na != nb) return 0;
    for (size_t i = 0; i < na; i++)
        if (member_find(b, nb, a[i].id) < 0) return 0;
    return 1;
}

/* One pass of the ISR thread: cuts silent standbys, computes the set, writes
 * it when it changed, releases what every member acknowledged. */
static void isr_pass(mc_repl_t *r, uint64_t now, uint64_t *last_fail_log)
{
    member_t want[MAX_STANDBYS];
    size_t nwant = 0;
    uint64_t view = 0;
    int leading = atomic_load(&r->leading);
    /* leading but not serving (the lease could not be refreshed in time): the
     * gate may reopen under the same term, so nothing changes meanwhile */
    if (leading && !r->cfg.serving(r->cfg.arg, now, &view)) return;
    pthread_mutex_lock(&r->mu);
    if (!leading || view != r->isr_view) { /* a new term (or none): a new set */
        r->isr_n = 0;
        r->isr_view = leading ? view : 0;
    }
    int candidates = 0;
    uint64_t low = UINT64_MAX;
    for (sub_t *x = r->subs; x; x = x->next) {
        if (!x->subscribed || x->cut || x->done) continue;
        if (now > x->last_ack_ms + r->ack_timeout_ms) {
            x->cut = CUT_SILENT; /* the sender logs it */
            shutdown(x->fd, SHUT_RDWR);
            pthread_cond_signal(&x->cv);
            continue;
        }
        if (leading && x->ack_synced) candidates = 1;
    }
    if (candidates && !atomic_load(&r->holding)) {
        r->hold_since = atomic_load(&r->seq);
        atomic_store(&r->holding, 1); /* from here on every free waits for the acks */
    }
    for (sub_t *x = r->subs; x && candidates; x = x->next) {
        if (!x->subscribed || x->cut || x->done || !x->ack_synced) continue;
        if (x->acked < low) low = x->acked;
        int k = member_find(r->isr, r->isr_n, x->id);
        if (k >= 0 && x->acked > r->isr[k].acked) r->isr[k].acked = x->acked;
        /* it applied every record up to the start of holding: every free it
         * has not seen the record of is held */
        if (x->acked >= r->hold_since && member_find(want, nwant, x->id) < 0)
            want[nwant++] = (member_t){x->id, x->acked};
    }
    /* written at the start of each term too: the key then names the latest
     * replicating leader (a restarted master trusts its own files only when
     * it is that leader) */
    int write = leading && (r->isr_written != view || !same_ids(want, nwant, r->isr, r->isr_n));
    if (write) { /* members: the union until the write is known to have succeeded */
        for (size_t i = 0; i < nwant; i++)
            if (member_find(r->isr, r->isr_n, want[i].id) < 0 &&
                r->isr_n < sizeof r->isr / sizeof r->isr[0])
                r->isr[r->isr_n++] = want[i];
    }
    pthread_mutex_unlock(&r->mu);
    if (write) {
        char val[40 + sizeof r->cfg.self + MAX_STANDBYS * 20];
        size_t off = (size_t)snprintf(val, sizeof val, "%" PRIu64 " %s", view,
                                      r->cfg.self[0] ? r->cfg.self : "-");
        for (size_t i = 0; i < nwant; i++)
            off += (size_t)snprintf(val + off, sizeof val - off, " %016" PRIx64, want[i].id);
        int rc = r->cfg.isr_write ? r->cfg.isr_write(r->cfg.arg, view, val) : -1;
        pthread_mutex_lock(&r->mu);
        if (rc == 0 && r->isr_view == view) {
            member_t keep[MAX_STANDBYS * 2];
            size_t nkeep = 0;
            for (size_t i = 0; i < nwant; i++) {
                int k = member_find(r->isr, r->isr_n, want[i].id);
                keep[nkeep++] = k >= 0 ? r->isr[k] : want[i];
            }
            memcpy(r->isr, keep, nkeep * sizeof keep[0]);
            r->isr_n = nkeep;
            r->isr_written = view;
        }
        pthread_mutex_unlock(&r->mu);
        if (rc == 0) {
            atomic_fetch_add(&r->isr_writes, 1);
            MC_LOGI(TAG, "in-sync set of view %" PRIu64 ": %zu standby(s) [%s]", view, nwant, val);
        } else {
            atomic_fetch_add(&r->isr_write_fails, 1);
            if (now >= *last_fail_log + ISR_LOG_MS) {
                *last_fail_log = now;
                MC_LOGW(TAG,
                        "cannot write the in-sync set of view %" PRIu64
                        " (coordination service unreachable or this term is over): freed "
                        "ranges stay held until it is written",
                        view);
            }
        }
    }
    pthread_mutex_lock(&r->mu);
    uint64_t upto = UINT64_MAX;
    for (size_t i = 0; i < r->isr_n; i++)
        if (r->isr[i].acked < upto) upto = r->isr[i].acked;
    if (candidates && low < upto) upto = low;
    int members = r->isr_n > 0;
    if (!members && !candidates) atomic_store(&r->holding, 0);
    atomic_store(&r->isr_size, (uint64_t)r->isr_n);
    pthread_mutex_unlock(&r->mu);
    if (!members && !candidates) upto = UINT64_MAX;
    mc_master_release_held(r->m, upto);
}

static void *isr_main(void *arg)
{
    mc_repl_t *r = arg;
    uint64_t last_fail_log = 0;
    pthread_mutex_lock(&r->mu);
    while (!atomic_load(&r->stop)) {
        pthread_mutex_unlock(&r->mu);
        isr_pass(r, mc_now_ms(), &last_fail_log);
        pthread_mutex_lock(&r->mu);
        if (atomic_load(&r->stop)) break;
        struct timespec ts = mc_deadline_ts(CLOCK_MONOTONIC, ISR_MS);
        pthread_cond_timedwait(&r->isr_cv, &r->mu, &ts);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* ---- standby ---- */

typedef struct {
    mc_repl_t *r;
    const char *leader;
    uint64_t view, t0;
    int fresh; /* the header was checked and a new table started */
} fol_ctx_t;

static int fol_rec(const mc_prec_t *rec, void *arg)
{
    fol_ctx_t *c = arg;
    mc_repl_t *r = c->r;
    if (!r->table) return 1; /* taken: this master leads now */
    r->records++;
    switch (rec->type) {
    case MC_PREC_END:
        r->synced = 1;
        MC_LOGI(TAG, "following leader %s: base of %" PRIu64 " objects received in %" PRIu64 " ms",
                c->leader, rec->count, mc_now_ms() - c->t0);
        return 0;
    case MC_PREC_PING: {
        uint64_t now = mc_now_ms();
        r->leader_version = rec->version;
        r->lag_ms = now > rec->ping_ms ? now - rec->ping_ms : 0;
        return 0;
    }
    default:
        if (rec->version > r->version) r->version = rec->version;
        if (mc_master_restore_table_apply(r->table, rec)) return -2;
        if (r->synced) r->applied++; /* a tail record: its position is acked */
        return 0;
    }
}

/* Follows one leader until its stream ends. */
static void follow_one(mc_repl_t *r, const char *addr, uint64_t view, int *quiet)
{
    char host[256];
    uint16_t port;
    int fd = -1;
    if (mc_net_split_hostport(addr, host, sizeof host, &port)) return;
    int rc = mc_sock_connect(host, port, 1000, &fd);
    if (rc) {
        if (!(*quiet)++)
            MC_LOGW(TAG, "cannot reach leader %s to follow it: %s", addr, strerror(-rc));
        return;
    }
    int rb = RCV_BUF;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rb, sizeof rb);
    const mc_auth_key_t *key = mc_auth_cluster_key();
    char aerr[320];
    mc_tls_conn_t *tls = NULL; /* with TLS files, the stream is TLS (net_tls.h) */
    mc_sock_set_timeout(fd, 2000);
    if ((mc_tls_files() && (!(tls = mc_tls_conn_new(0, host, aerr, sizeof aerr)) ||
                            mc_tls_sock_handshake(tls, fd, aerr, sizeof aerr))) ||
        (key && mc_auth_sock_client(fd, tls, key, "repl", aerr, sizeof aerr))) {
        /* the index is the pool's: both masters prove the secret */
        if (!(*quiet)++) MC_LOGE(TAG, "leader %s: not following it: %s", addr, aerr);
        mc_tls_conn_free(tls);
        close(fd);
        return;
    }
    *quiet = 0;
    uint8_t hello[MC_REPL_HELLO_LEN];
    mc_repl_hello_encode(hello, view, r->id);
    size_t cap = RCV_BUF + MC_PREC_HDR + MC_PREC_MAX_BODY, have = 0;
    uint8_t *buf = malloc(cap);
    mc_prec_t *scratch = malloc(sizeof *scratch);
    if (!buf || !scratch || mc_tls_sock_send_all(tls, fd, hello, sizeof hello)) goto out;
    int tmo = PING_MS;
    mc_sock_set_timeout(fd, tmo);
    mc_repl_reader_t rd = {0};
    fol_ctx_t c = {r, addr, view, mc_now_ms(), 0};
    uint64_t last_rx = mc_now_ms(), last_ack = 0, acked = UINT64_MAX;
    int acked_synced = -1;
    const char *why = NULL;
    for (;;) {
        if (atomic_load(&r->stop) || atomic_load(&r->leading)) break;
        /* the back channel: what this standby applied, as soon as it changed
         * (at most one ack per MC_REPL_ACK_MS: the leader holds freed ranges
         * until then), and every PING_MS regardless (the leader cuts a
         * standby whose acks stop) */
        uint64_t now = mc_now_ms();
        pthread_mutex_lock(&r->fmu);
        uint64_t applied = rd.have_hdr ? r->applied : 0;
        int syn = rd.have_hdr && r->synced;
        pthread_mutex_unlock(&r->fmu);
        int pending = applied != acked || syn != acked_synced;
        if ((pending && now >= last_ack + MC_REPL_ACK_MS) || now >= last_ack + PING_MS) {
            uint8_t ack[MC_REPL_ACK_LEN];
            mc_repl_ack_encode(ack, applied, syn ? MC_REPL_ACK_SYNCED : 0);
            if (mc_tls_sock_send_all(tls, fd, ack, sizeof ack)) {
                why = "its ack could not be sent";
                break;
            }
            last_ack = now;
            acked = applied;
            acked_synced = syn;
            pending = 0;
        }
        int want_tmo = pending ? MC_REPL_ACK_MS : PING_MS; /* wake for a held-back ack */
        if (want_tmo != tmo) mc_sock_set_timeout(fd, tmo = want_tmo);
        char cur[320];
        uint64_t cv = 0;
        if (!r->cfg.target(r->cfg.arg, cur, sizeof cur, &cv) || cv != view || strcmp(cur, addr)) {
            why = "the leader changed or is gone";
            break;
        }
        ssize_t n = mc_tls_sock_recv(tls, fd, buf + have, cap - have, 0);
        if (n == 0) {
            why = "it closed the stream";
            break;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                if (mc_now_ms() - last_rx > SILENT_MS) {
                    why = "it has been silent for 2 s";
                    break;
                }
                continue;
            }
            why = strerror(errno);
            break;
        }
        last_rx = mc_now_ms();
        have += (size_t)n;
        size_t used = 0;
        pthread_mutex_lock(&r->fmu);
        int had_hdr = rd.have_hdr;
        int frc = 0;
        if (!had_hdr) { /* check the header before the table it replaces is dropped */
            if (have >= MC_REPL_HDR_LEN) {
                mc_repl_reader_t probe = {0};
                size_t u;
                frc = mc_repl_reader_feed(&probe, buf, MC_REPL_HDR_LEN, &u, scratch, fol_rec, &c,
                                          &why);
                if (frc == 0 && probe.view != view) {
                    frc = -1;
                    why = "it answered under another view";
                }
                if (frc == 0) {
                    struct mrestore *t = mc_master_restore_table_new();
                    if (!t) {
                        frc = -1;
                        why = "out of memory";
                    } else {
                        mc_master_restore_table_free(r->table);
                        r->table = t;
                        r->synced = 0;
                        r->applied = 0;
                        r->followed_view = view;
                        r->version = probe.version;
                        r->records = 0;
                        r->resyncs++;
                        snprintf(r->from, sizeof r->from, "%s", addr);
                        r->following = 1;
                    }
                }
            }
        }
        if (frc == 0 && (had_hdr || have >= MC_REPL_HDR_LEN))
            frc = mc_repl_reader_feed(&rd, buf, have, &used, scratch, fol_rec, &c, &why);
        pthread_mutex_unlock(&r->fmu);
        if (frc == 1) break; /* taken */
        if (frc) {
            if (frc == -2) why = "out of memory applying it";
            MC_LOGW(TAG, "stream from leader %s dropped: %s; re-syncing", addr,
                    why && *why ? why : "bad frame");
            why = NULL;
            break;
        }
        memmove(buf, buf + used, have - used);
        have -= used;
    }
    if (why) MC_LOGI(TAG, "stopped following leader %s: %s", addr, why);
out:
    pthread_mutex_lock(&r->fmu);
    r->following = 0;
    pthread_mutex_unlock(&r->fmu);
    free(scratch);
    free(buf);
    mc_tls_conn_free(tls);
    close(fd);
}

static void nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void *follow_main(void *arg)
{
    mc_repl_t *r = arg;
    int quiet = 0;
    while (!atomic_load(&r->stop)) {
        char addr[320];
        uint64_t view = 0;
        if (atomic_load(&r->leading) || !r->cfg.target(r->cfg.arg, addr, sizeof addr, &view)) {
            nap_ms(100);
            continue;
        }
        follow_one(r, addr, view, &quiet);
        if (!atomic_load(&r->stop)) nap_ms(100);
    }
    return NULL;
}

/* ---- control ---- */

static uint64_t random_id(void)
{
    uint64_t id = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (f) {
        if (fread(&id, sizeof id, 1, f) != 1) id = 0;
        fclose(f);
    }
    if (!id) id = mc_now_ms() * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid() << 17;
    return id;
}

int mc_repl_start(mc_master_t *m, const mc_repl_config_t *cfg, mc_repl_t **out)
{
    *out = NULL;
    mc_repl_t *r = calloc(1, sizeof *r);
    if (!r) return -ENOMEM;
    r->m = m;
    r->cfg = *cfg;
    r->lfd = -1;
    r->qcap = (uint64_t)mc_env_int("MC_MASTER_REPL_QUEUE_BYTES", 64ll << 20, 65536, 1ll << 40);
    r->stall_ms = (uint64_t)mc_env_int("MC_MASTER_REPL_STALL_MS", 5000, 100, 3600000);
    r->ack_timeout_ms =
        (uint64_t)mc_env_int("MC_MASTER_REPL_ACK_TIMEOUT_MS", 1000, 2 * PING_MS, 3600000);
    while (!r->id)
        r->id = random_id();
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->fmu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->isr_cv, &ca);
    pthread_condattr_destroy(&ca);
    int rc = mc_sock_listen(cfg->host, cfg->port, 16, &r->lfd, &r->port);
    if (rc) goto fail;
    mc_auth_note_listener(TAG, "HA replication", cfg->host, r->port);
    mc_master_set_repl_sink(m, repl_sink, r);
    mc_master_set_free_hold(m, repl_hold, r,
                            (uint64_t)mc_env_int("MC_MASTER_REPL_HOLD_WAIT_MS", 20, 0, 1000));
    if (pthread_create(&r->isr_thr, NULL, isr_main, r) != 0) {
        rc = -EAGAIN;
        goto fail;
    }
    r->isr_running = 1;
    if (pthread_create(&r->acc_thr, NULL, accept_main, r) != 0) {
        rc = -EAGAIN;
        goto fail;
    }
    r->acc_running = 1;
    if (pthread_create(&r->fol_thr, NULL, follow_main, r) != 0) {
        rc = -EAGAIN;
        goto fail;
    }
    r->fol_running = 1;
    *out = r;
    return 0;
fail:
    mc_repl_stop(r);
    return rc;
}

uint16_t mc_repl_port(const mc_repl_t *r)
{
    return r->port;
}

struct mrestore *mc_repl_take(mc_repl_t *r, mc_repl_taken_t *out)
{
    atomic_store(&r->leading, 1);
    pthread_mutex_lock(&r->fmu);
    struct mrestore *t = r->table;
    r->table = NULL;
    out->version = r->version > r->leader_version ? r->version : r->leader_version;
    snprintf(out->from, sizeof out->from, "leader %s (%s)", r->from[0] ? r->from : "?",
             r->synced ? "in sync" : "base incomplete");
    out->synced = r->synced;
    out->view = r->followed_view;
    out->id = r->id;
    r->synced = 0;
    pthread_mutex_unlock(&r->fmu);
    pthread_cond_signal(&r->isr_cv);
    return t;
}

uint64_t mc_repl_id(const mc_repl_t *r)
{
    return r->id;
}

/* Parses "<view> <leader> ..." of an in-sync set value: the rest after the
 * leader, or NULL when malformed. */
static const char *isr_head(const char *val, uint64_t *view, char *leader, size_t len)
{
    if (!val) return NULL;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(val, &end, 10);
    if (errno || end == val || *end != ' ') return NULL;
    const char *p = end + 1, *q = strchr(p, ' ');
    size_t n = q ? (size_t)(q - p) : strlen(p);
    if (n == 0 || n >= len) return NULL;
    memcpy(leader, p, n);
    leader[n] = '\0';
    *view = v;
    return p + n;
}

int mc_repl_isr_leader(const char *val, char *leader, size_t len)
{
    uint64_t v;
    return isr_head(val, &v, leader, len) != NULL;
}

int mc_repl_isr_lists(const char *val, uint64_t view, uint64_t id)
{
    char leader[320];
    uint64_t v = 0;
    const char *p = isr_head(val, &v, leader, sizeof leader);
    if (!p || v != view) return 0;
    char *end = NULL;
    while (*p) {
        while (*p == ' ')
            p++;
        if (!*p) break;
        errno = 0;
        unsigned long long x = strtoull(p, &end, 16);
        if (errno || end == p || (*end && *end != ' ')) return 0;
        if (x == id) return 1;
        p = end;
    }
    return 0;
}

void mc_repl_lost(mc_repl_t *r)
{
    atomic_store(&r->leading, 0);
    pthread_cond_signal(&r->isr_cv);
    pthread_mutex_lock(&r->mu);
    for (sub_t *s = r->subs; s; s = s->next) {
        if (s->done) continue;
        s->cut = CUT_BYE;
        shutdown(s->fd, SHUT_RDWR);
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&r->mu);
}

static void metric(FILE *f, const char *name, const char *type, const char *help, uint64_t v)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", name, help, name, type, name, v);
}

void mc_repl_metrics(FILE *f, mc_repl_t *r)
{
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    uint64_t nsub = 0, queued = 0;
    for (sub_t *s = r->subs; s; s = s->next) {
        if (!s->subscribed) continue;
        nsub++;
        if (s->qlen > queued) queued = s->qlen;
    }
    pthread_mutex_unlock(&r->mu);
    pthread_mutex_lock(&r->fmu);
    uint64_t following = (uint64_t)r->following, synced = (uint64_t)r->synced;
    uint64_t objs = mc_master_restore_table_count(r->table), records = r->records;
    uint64_t lag = r->lag_ms, ver = r->version, lver = r->leader_version, resyncs = r->resyncs;
    pthread_mutex_unlock(&r->fmu);
    metric(f, "master_repl_standbys", "gauge", "Standbys following this leader", nsub);
    metric(f, "master_repl_queue_max_bytes", "gauge", "Largest standby queue backlog", queued);
    metric(f, "master_repl_cutoffs_total", "counter", "Standbys cut off (fell behind, or gone)",
           atomic_load(&r->cutoffs));
    metric(f, "master_repl_isr_size", "gauge", "Standbys in the in-sync set (as written)",
           atomic_load(&r->isr_size));
    metric(f, "master_repl_isr_writes_total", "counter", "In-sync set writes that succeeded",
           atomic_load(&r->isr_writes));
    metric(f, "master_repl_isr_write_failures_total", "counter",
           "In-sync set writes that failed (the set and the held ranges stay)",
           atomic_load(&r->isr_write_fails));
    metric(f, "master_repl_held_bytes", "gauge",
           "Freed bytes held until every in-sync standby acknowledged their removal",
           mc_master_held_bytes(r->m));
    metric(f, "master_repl_held_total", "counter", "Freed ranges held (all released since)",
           mc_master_held_total(r->m));
    metric(f, "master_repl_following", "gauge", "This standby follows a leader's stream",
           following);
    metric(f, "master_repl_synced", "gauge", "This standby received the leader's whole base",
           synced);
    metric(f, "master_repl_objects", "gauge", "Objects in this standby's replicated table", objs);
    metric(f, "master_repl_records_total", "counter", "Records received on the current stream",
           records);
    metric(f, "master_repl_version", "gauge", "Highest mutation version applied here", ver);
    metric(f, "master_repl_leader_version", "gauge", "Leader's version at its last ping", lver);
    metric(f, "master_repl_lag_ms", "gauge",
           "Age of the leader's last ping when it arrived (same-host clocks only)", lag);
    metric(f, "master_repl_resyncs_total", "counter", "Streams started (a base each)", resyncs);
}

void mc_repl_stop(mc_repl_t *r)
{
    if (!r) return;
    atomic_store(&r->stop, 1);
    pthread_mutex_lock(&r->mu);
    pthread_cond_broadcast(&r->isr_cv);
    pthread_mutex_unlock(&r->mu);
    if (r->isr_running) pthread_join(r->isr_thr, NULL);
    if (r->fol_running) pthread_join(r->fol_thr, NULL);
    if (r->acc_running) pthread_join(r->acc_thr, NULL);
    mc_master_set_repl_sink(r->m, NULL, NULL);
    mc_master_set_free_hold(r->m, NULL, NULL, 0);
    mc_master_release_held(r->m, UINT64_MAX); /* the core may live on */
    reap(r, 1);
    if (r->lfd >= 0) close(r->lfd);
    mc_master_restore_table_free(r->table);
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->fmu);
    pthread_cond_destroy(&r->isr_cv);
    free(r);
}
