/* proxy_kvev.c: the precise mode of --scheduling cache_aware. The proxy
 * subscribes (ZMQ SUB) to the KV cache events each prefill instance's vLLM
 * publishes (--kv-events-config '{"enable_kv_cache_events": true,
 * "publisher": "zmq", "endpoint": "tcp://0.0.0.0:PORT"}', mapped to the instance with
 * --kv-events host:port=tcp://host:PORT) and keeps an index of which blocks
 * each instance holds right now.
 *
 * vLLM's own block hashes cannot be recomputed here (sha256 of pickled tuples,
 * with a per-process seed unless PYTHONHASHSEED is set), but every BlockStored
 * carries the token ids of its blocks. So the index is keyed by the proxy's own
 * chained hash of token blocks (mc__proxy_kvev_chain: block i's key names the
 * whole prefix up to it), and a second table maps each (instance, vLLM block
 * hash) to that key, which is what links a BlockStored to its parent block and
 * finds the block a BlockRemoved names. A request whose "prompt" is a list of
 * token ids is cut into the instance's block size (learned from its events) and
 * matched block by block; text prompts and instances that published nothing
 * yet use the approximate prefix tree of proxy_route.c.
 *
 * Both tables are fixed-size and 4-way set associative (the oldest entry of a
 * full set is replaced): memory is bounded whatever the publishers send, and an
 * entry lost that way costs at most a missed hit (or, for a lost hash mapping,
 * a block believed present until the instance's next AllBlocksCleared).
 * Malformed messages and events are counted per instance and dropped.
 *
 * ZMQ sockets are read on the proxy's loop thread: each subscription's
 * ZMQ_FD is in the loop's epoll set, and mc__proxy_kvev_poll drains every
 * subscription without blocking (also from the 20 ms tick, because ZMQ_FD
 * only signals a change of state). Built only with libzmq and msgpack-c;
 * otherwise --kv-events is refused at start. */
#include "proxy_server_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base_log.h"
#include "base_time.h"

#ifdef MC_HAVE_KVEV
#include <sys/epoll.h>
#include <xxhash.h>
#include <zmq.h>

#define KSETS (1u << 16) /* x 4 ways: 262144 blocks per table */
#define KWAYS 4
#define POLL_BUDGET 1024 /* messages per subscription per poll */

typedef struct {
    uint64_t key; /* chained token-block hash, 0 = empty */
    uint64_t mask;
    uint64_t stamp;
} tentry_t;

typedef struct {
    uint64_t key; /* XXH3(vLLM hash key, seed = slot + 1), 0 = empty */
    uint64_t tok;
    uint64_t stamp;
    int slot;
} xentry_t;

struct mc__proxy_kvsub {
    void *sock;
    int fd;
    int slot;
    char endpoint[256];
    uint64_t msgs, bad_msgs, events, bad_events, ignored, orphans, gaps;
    uint64_t stored, removed, cleared, blocks; /* blocks: held now, per the index */
    uint64_t next_seq, last_ms;
    int have_seq;
    uint32_t block_size;
};

struct mc__proxy_kvidx {
    void *ctx;
    tentry_t *tok;
    xentry_t *ext;
    uint64_t clock, evicted;
    mc__proxy_kvsub_t *slot[MC_PROXY_SLOTS];
};

/* ------------------------------------------------------------ the tables */

static tentry_t *tfind(mc__proxy_kvidx_t *k, uint64_t key)
{
    tentry_t *set = &k->tok[(key & (KSETS - 1)) * KWAYS];
    for (int w = 0; w < KWAYS; w++)
        if (set[w].key == key) return &set[w];
    return NULL;
}

static void tset(mc__proxy_kvidx_t *k, uint64_t key, int slot)
{
    uint64_t bit = 1ull << slot;
    tentry_t *e = tfind(k, key);
    if (!e) {
        tentry_t *set = &k->tok[(key & (KSETS - 1)) * KWAYS];
        e = &set[0];
        for (int w = 1; w < KWAYS; w++)
            if (set[w].stamp < e->stamp) e = &set[w];
        if (e->key) k->evicted++;
        for (uint64_t m = e->key ? e->mask : 0; m; m &= m - 1) {
            mc__proxy_kvsub_t *s = k->slot[__builtin_ctzll(m)];
            if (s && s->blocks) s->blocks--;
        }
        e->key = key;
        e->mask = 0;
    }
    if (!(e->mask & bit) && k->slot[slot]) k->slot[slot]->blocks++;
    e->mask |= bit;
    e->stamp = ++k->clock;
}

static void tclear(mc__proxy_kvidx_t *k, uint64_t key, int slot)
{
    tentry_t *e = tfind(k, key);
    uint64_t bit = 1ull << slot;
    if (!e || !(e->mask & bit)) return;
    e->mask &= ~bit;
    if (!e->mask) e->key = 0;
    if (k->slot[slot] && k->slot[slot]->blocks) k->slot[slot]->blocks--;
}

static uint64_t xkey(uint64_t hash, int slot)
{
    uint64_t x = XXH3_64bits_withSeed(&hash, sizeof hash, (uint64_t)slot + 1);
    return x ? x : 1;
}

static xentry_t *xfind(mc__proxy_kvidx_t *k, uint64_t key)
{
    xentry_t *set = &k->ext[(key & (KSETS - 1)) * KWAYS];
    for (int w = 0; w < KWAYS; w++)
        if (set[w].key == key) return &set[w];
    return NULL;
}

static void xput(mc__proxy_kvidx_t *k, uint64_t key, uint64_t tok, int slot)
{
    xentry_t *e = xfind(k, key);
    if (!e) {
        xentry_t *set = &k->ext[(key & (KSETS - 1)) * KWAYS];
        e = &set[0];
        for (int w = 1; w < KWAYS; w++)
            if (set[w].stamp < e->stamp) e = &set[w];
        if (e->key) k->evicted++;
    }
    e->key = key;
    e->tok = tok;
    e->slot = slot;
    e->stamp = ++k->clock;
}

/* Forgets everything the index holds for a slot. */
static void clear_slot(mc__proxy_kvidx_t *k, int slot)
{
    uint64_t bit = 1ull << slot;
    for (size_t i = 0; i < (size_t)KSETS * KWAYS; i++) {
        if (k->tok[i].key && (k->tok[i].mask & bit)) {
            k->tok[i].mask &= ~bit;
            if (!k->tok[i].mask) k->tok[i].key = 0;
        }
        if (k->ext[i].key && k->ext[i].slot == slot) k->ext[i].key = 0;
    }
    if (k->slot[slot]) k->slot[slot]->blocks = 0;
}

/* ------------------------------------------------------------- events */

typedef struct {
    mc__proxy_kvidx_t *k;
    mc__proxy_kvsub_t *s;
} apply_t;

static void apply(void *ud, const mc__proxy_kvev_t *ev)
{
    apply_t *a = ud;
    mc__proxy_kvidx_t *k = a->k;
    mc__proxy_kvsub_t *s = a->s;
    switch (ev->kind) {
    case MC_KVEV_STORED: {
        if (ev->lora) { /* keyed by the adapter too: our token keys cannot tell */
            s->ignored++;
            return;
        }
        uint64_t seed = MC_KVEV_ROOT;
        if (ev->has_parent) {
            xentry_t *p = xfind(k, xkey(ev->parent, s->slot));
            if (!p) { /* its prefix is unknown to us (lost, or before we subscribed) */
                s->orphans++;
                return;
            }
            seed = p->tok;
        }
        for (uint32_t i = 0; i < ev->n_hashes; i++) {
            seed = mc__proxy_kvev_chain(seed, ev->tokens + (size_t)i * ev->block_size,
                                        ev->block_size);
            tset(k, seed, s->slot);
            xput(k, xkey(ev->hashes[i], s->slot), seed, s->slot);
        }
        s->block_size = ev->block_size;
        s->stored += ev->n_hashes;
        return;
    }
    case MC_KVEV_REMOVED:
        for (uint32_t i = 0; i < ev->n_hashes; i++) {
            xentry_t *x = xfind(k, xkey(ev->hashes[i], s->slot));
            if (!x) continue;
            tclear(k, x->tok, s->slot);
            x->key = 0;
        }
        s->removed += ev->n_hashes;
        return;
    case MC_KVEV_CLEARED:
        clear_slot(k, s->slot);
        s->cleared++;
        return;
    default:
        s->ignored++;
    }
}

/* One multipart message [topic, seq, payload] of subscription s. */
static void on_message(mc__proxy_kvidx_t *k, mc__proxy_kvsub_t *s, zmq_msg_t *parts, int n)
{
    s->msgs++;
    s->last_ms = mc_now_ms();
    if (n != 3 || zmq_msg_size(&parts[1]) != 8) {
        s->bad_msgs++;
        return;
    }
    const unsigned char *q = zmq_msg_data(&parts[1]);
    uint64_t seq = 0;
    for (int i = 0; i < 8; i++)
        seq = seq << 8 | q[i];
    if (s->have_seq && seq != s->next_seq) {
        if (seq < s->next_seq) {
            /* the publisher restarted: what we knew of it is gone */
            clear_slot(k, s->slot);
            s->gaps++;
        } else {
            s->gaps += seq - s->next_seq;
        }
    }
    s->have_seq = 1;
    s->next_seq = seq + 1;
    apply_t a = {k, s};
    unsigned ne = 0, nb = 0;
    int rc = mc__proxy_kvev_decode(zmq_msg_data(&parts[2]), zmq_msg_size(&parts[2]), apply, &a,
                                   &ne, &nb);
    s->events += ne;
    s->bad_events += nb;
    if (rc != 0) s->bad_msgs++;
}

/* Reads what subscription s has, at most POLL_BUDGET messages; 1 when more may
 * be left. */
static int drain(mc__proxy_kvidx_t *k, mc__proxy_kvsub_t *s)
{
    for (int m = 0; m < POLL_BUDGET; m++) {
        zmq_msg_t parts[3], extra;
        zmq_msg_init(&parts[0]);
        if (zmq_msg_recv(&parts[0], s->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&parts[0]);
            int ev = 0;
            size_t el = sizeof ev;
            zmq_getsockopt(s->sock, ZMQ_EVENTS, &ev, &el); /* re-arms ZMQ_FD */
            return 0;
        }
        int n = 1, more = zmq_msg_more(&parts[0]);
        while (more) { /* the rest of a multipart message is already here */
            zmq_msg_t *p = n < 3 ? &parts[n] : &extra;
            zmq_msg_init(p);
            if (zmq_msg_recv(p, s->sock, 0) < 0) {
                zmq_msg_close(p);
                break;
            }
            more = zmq_msg_more(p);
            if (p == &extra) zmq_msg_close(p);
            n++;
        }
        on_message(k, s, parts, n);
        for (int i = 0; i < (n < 3 ? n : 3); i++)
            zmq_msg_close(&parts[i]);
    }
    return 1;
}

/* --------------------------------------------------------- the proxy side */

int mc__proxy_kvev_init(mc_proxy_t *px, int force)
{
    if (px->kv || (px->cfg.n_kvev == 0 && !force)) return 0;
    if (px->cfg.sched != MC_PROXY_SCHED_CACHE_AWARE)
        MC_LOGW(TAG, "--kv-events is used only by --scheduling cache_aware; subscribing anyway");
    mc__proxy_kvidx_t *k = calloc(1, sizeof *k);
    if (!k) return -ENOMEM;
    k->tok = calloc((size_t)KSETS * KWAYS, sizeof *k->tok);
    k->ext = calloc((size_t)KSETS * KWAYS, sizeof *k->ext);
    k->ctx = zmq_ctx_new();
    if (!k->tok || !k->ext || !k->ctx) {
        free(k->tok);
        free(k->ext);
        if (k->ctx) zmq_ctx_term(k->ctx);
        free(k);
        return -ENOMEM;
    }
    px->kv = k;
    return 0;
}

void mc__proxy_kvev_free(mc_proxy_t *px)
{
    mc__proxy_kvidx_t *k = px->kv;
    if (!k) return;
    for (int s = 0; s < MC_PROXY_SLOTS; s++)
        if (k->slot[s]) {
            zmq_close(k->slot[s]->sock);
            free(k->slot[s]);
        }
    for (inst_t *in = px->all; in; in = in->next_all)
        in->kv = NULL;
    zmq_ctx_term(k->ctx);
    free(k->tok);
    free(k->ext);
    free(k);
    px->kv = NULL;
}

int mc__proxy_kvev_attach(mc_proxy_t *px, inst_t *in, const char *endpoint)
{
    mc__proxy_kvidx_t *k = px->kv;
    if (!k || in->slot < 0 || in->kv) return -EINVAL;
    mc__proxy_kvsub_t *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    s->slot = in->slot;
    snprintf(s->endpoint, sizeof s->endpoint, "%s", endpoint);
    s->sock = zmq_socket(k->ctx, ZMQ_SUB);
    if (!s->sock) goto fail;
    int hwm = 100000, linger = 0, ivl_max = 5000;
    int64_t maxmsg = MC_KVEV_MAX_PAYLOAD;
    size_t fl = sizeof s->fd;
    const char *topic = px->cfg.kvev_topic;
    if (zmq_setsockopt(s->sock, ZMQ_RCVHWM, &hwm, sizeof hwm) != 0 ||
        zmq_setsockopt(s->sock, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_setsockopt(s->sock, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max) != 0 ||
        zmq_setsockopt(s->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) != 0 ||
        zmq_setsockopt(s->sock, ZMQ_SUBSCRIBE, topic, strlen(topic)) != 0 ||
        zmq_connect(s->sock, endpoint) != 0 ||
        zmq_getsockopt(s->sock, ZMQ_FD, &s->fd, &fl) != 0) {
        MC_LOGE(TAG, "kv events of %s: cannot subscribe to %s: %s", in->name, endpoint,
                zmq_strerror(zmq_errno()));
        goto fail;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = s->fd};
    if (epoll_ctl(px->ep, EPOLL_CTL_ADD, s->fd, &ev) != 0) goto fail;
    k->slot[s->slot] = s;
    in->kv = s;
    MC_LOGI(TAG, "prefill instance %s: kv events from %s", in->name, endpoint);
    return 0;
fail:
    if (s->sock) zmq_close(s->sock);
    free(s);
    return -EINVAL;
}

void mc__proxy_kvev_inst_added(mc_proxy_t *px, inst_t *in)
{
    if (!px->kv || in->group != MC_PROXY_PREFILL) return;
    for (int i = 0; i < px->cfg.n_kvev; i++)
        if (strcmp(px->cfg.kvev[i].inst, in->name) == 0) {
            mc__proxy_kvev_attach(px, in, px->cfg.kvev[i].endpoint);
            return;
        }
}

void mc__proxy_kvev_inst_removed(mc_proxy_t *px, inst_t *in)
{
    mc__proxy_kvidx_t *k = px->kv;
    mc__proxy_kvsub_t *s = in->kv;
    if (!k || !s) return;
    epoll_ctl(px->ep, EPOLL_CTL_DEL, s->fd, NULL);
    clear_slot(k, s->slot);
    k->slot[s->slot] = NULL;
    zmq_close(s->sock);
    free(s);
    in->kv = NULL;
}

int mc__proxy_kvev_owns(const mc_proxy_t *px, int fd)
{
    const mc__proxy_kvidx_t *k = px->kv;
    if (!k) return 0;
    for (int s = 0; s < MC_PROXY_SLOTS; s++)
        if (k->slot[s] && k->slot[s]->fd == fd) return 1;
    return 0;
}

void mc__proxy_kvev_poll(mc_proxy_t *px)
{
    mc__proxy_kvidx_t *k = px->kv;
    if (!k) return;
    for (int s = 0; s < MC_PROXY_SLOTS; s++)
        if (k->slot[s] && drain(k, k->slot[s])) px->kick = 1;
}

int mc__proxy_kvev_live(const inst_t *in)
{
    return in->kv && in->kv->block_size > 0;
}

int mc__proxy_kvev_prepare(mc_proxy_t *px, req_t *r)
{
    if (!px->kv) return 0;
    int rc = mc__proxy_token_ids(json_object_get(r->json, "prompt"), MC_PROXY_MAX_PROMPT_TOKENS,
                                 &r->toks, &r->n_toks);
    return rc == -ENOMEM ? rc : 0; /* -EINVAL: not token ids (text, a batch) */
}

int mc__proxy_kvev_match(mc_proxy_t *px, const req_t *r, int ptok[MC_PROXY_SLOTS])
{
    mc__proxy_kvidx_t *k = px->kv;
    for (int s = 0; s < MC_PROXY_SLOTS; s++)
        ptok[s] = -1;
    if (!k || r->n_toks == 0) return 0;
    uint64_t todo = 0;
    for (int s = 0; s < MC_PROXY_SLOTS; s++)
        if (k->slot[s] && k->slot[s]->block_size) todo |= 1ull << s;
    int any = 0;
    while (todo) {
        /* the slots that share the block size of the lowest one left */
        uint32_t bs = k->slot[__builtin_ctzll(todo)]->block_size;
        uint64_t alive = 0;
        for (uint64_t m = todo; m; m &= m - 1) {
            int s = __builtin_ctzll(m);
            if (k->slot[s]->block_size == bs) alive |= 1ull << s, ptok[s] = 0;
        }
        todo &= ~alive;
        any = 1;
        uint64_t h = MC_KVEV_ROOT;
        for (uint32_t b = 0; (uint64_t)(b + 1) * bs <= r->n_toks && alive; b++) {
            h = mc__proxy_kvev_chain(h, r->toks + (size_t)b * bs, bs);
            tentry_t *e = tfind(k, h);
            alive &= e ? e->mask : 0;
            for (uint64_t m = alive; m; m &= m - 1)
                ptok[__builtin_ctzll(m)] = (int)((b + 1) * bs);
        }
    }
    return any;
}

void mc__proxy_kvev_inst_json(const mc_proxy_t *px, const inst_t *in, json_t *o)
{
    (void)px;
    const mc__proxy_kvsub_t *s = in->kv;
    if (!s) return;
    json_object_set_new(
        o, "kv_events",
        json_pack("{s:s, s:b, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
                  "endpoint", s->endpoint, "live", s->block_size > 0, "block_size",
                  (int)s->block_size, "blocks", (json_int_t)s->blocks, "messages",
                  (json_int_t)s->msgs, "bad_messages", (json_int_t)s->bad_msgs, "events",
                  (json_int_t)s->events, "bad_events", (json_int_t)s->bad_events, "ignored",
                  (json_int_t)s->ignored, "orphans", (json_int_t)s->orphans, "seq_gaps",
                  (json_int_t)s->gaps, "stored_blocks", (json_int_t)s->stored, "removed_blocks",
                  (json_int_t)s->removed, "cleared", (json_int_t)s->cleared, "last_event_ms",
                  (json_int_t)s->last_ms));
}

int mc__proxy_kvev_metrics(const mc_proxy_t *px, buf_t *b)
{
    const mc__proxy_kvidx_t *k = px->kv;
    if (!k) return 0;
    int oom = mc__proxy_buf_printf(
        b, "# HELP mooncake_proxy_kv_event_messages_total vLLM KV event messages received, by "
           "result.\n# TYPE mooncake_proxy_kv_event_messages_total counter\n");
    for (int g = 0; g < px->ngrp[MC_PROXY_PREFILL]; g++) {
        const inst_t *in = px->grp[MC_PROXY_PREFILL][g];
        const mc__proxy_kvsub_t *s = in->kv;
        if (!s) continue;
        oom |= mc__proxy_buf_printf(
            b,
            "mooncake_proxy_kv_event_messages_total{instance=\"%s\",result=\"ok\"} %llu\n"
            "mooncake_proxy_kv_event_messages_total{instance=\"%s\",result=\"bad\"} %llu\n"
            "mooncake_proxy_kv_events_total{instance=\"%s\",result=\"ok\"} %llu\n"
            "mooncake_proxy_kv_events_total{instance=\"%s\",result=\"bad\"} %llu\n"
            "mooncake_proxy_kv_event_seq_gaps_total{instance=\"%s\"} %llu\n"
            "mooncake_proxy_kv_blocks{instance=\"%s\"} %llu\n",
            in->name, (unsigned long long)(s->msgs - s->bad_msgs), in->name,
            (unsigned long long)s->bad_msgs, in->name, (unsigned long long)s->events, in->name,
            (unsigned long long)s->bad_events, in->name, (unsigned long long)s->gaps, in->name,
            (unsigned long long)s->blocks);
    }
    oom |= mc__proxy_buf_printf(b, "mooncake_proxy_kv_index_evictions_total %llu\n",
                                (unsigned long long)k->evicted);
    return oom ? -ENOMEM : 0;
}

#else /* built without libzmq / msgpack-c */

int mc__proxy_kvev_init(mc_proxy_t *px, int force)
{
    if (px->cfg.n_kvev == 0) return force ? -ENOTSUP : 0;
    MC_LOGE(TAG, "--kv-events: this build has no libzmq/msgpack-c (scripts/install-deps.sh)");
    return -ENOTSUP;
}
void mc__proxy_kvev_free(mc_proxy_t *px)
{
    (void)px;
}
int mc__proxy_kvev_attach(mc_proxy_t *px, inst_t *in, const char *endpoint)
{
    (void)px, (void)in, (void)endpoint;
    return -ENOTSUP;
}
void mc__proxy_kvev_inst_added(mc_proxy_t *px, inst_t *in)
{
    (void)px, (void)in;
}
void mc__proxy_kvev_inst_removed(mc_proxy_t *px, inst_t *in)
{
    (void)px, (void)in;
}
int mc__proxy_kvev_owns(const mc_proxy_t *px, int fd)
{
    (void)px, (void)fd;
    return 0;
}
void mc__proxy_kvev_poll(mc_proxy_t *px)
{
    (void)px;
}
int mc__proxy_kvev_live(const inst_t *in)
{
    (void)in;
    return 0;
}
int mc__proxy_kvev_prepare(mc_proxy_t *px, req_t *r)
{
    (void)px, (void)r;
    return 0;
}
int mc__proxy_kvev_match(mc_proxy_t *px, const req_t *r, int ptok[MC_PROXY_SLOTS])
{
    (void)px, (void)r;
    for (int s = 0; s < MC_PROXY_SLOTS; s++)
        ptok[s] = -1;
    return 0;
}
void mc__proxy_kvev_inst_json(const mc_proxy_t *px, const inst_t *in, json_t *o)
{
    (void)px, (void)in, (void)o;
}
int mc__proxy_kvev_metrics(const mc_proxy_t *px, buf_t *b)
{
    (void)px, (void)b;
    return 0;
}
#endif
