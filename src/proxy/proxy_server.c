/* The proxy's event loop: libmicrohttpd front (external epoll mode, suspend /
 * resume) and libcurl multi upstream legs on one thread, so no locks anywhere.
 *
 * A completion request goes through these states:
 *   READING   MHD hands us the body in pieces; we accumulate it (bounded).
 *   STARTED   body complete: parse, rewrite, start the prefill leg (and the
 *             decode leg at once in connector mode); the connection is suspended.
 *   RELAYING  first decode body byte (or the answer of a failed leg) arrived:
 *             the connection is resumed, a response is queued; decode bytes
 *             flow through a bounded buffer (curl pauses when it is full, MHD
 *             suspends when it is empty).
 * A request is freed when its last reference goes: one for MHD (dropped in the
 * completed callback), one for a queued streaming response (its free
 * callback), one per upstream leg still running. A client that goes away
 * cancels its legs; a suspended client is noticed by a periodic peek at its
 * socket, because MHD does not watch suspended connections.
 *
 * Instances live in two groups (prefill, decode). An instance is CHECKING until
 * its /v1/models answer matches the model (and, for connector-mode
 * prefillers, its bootstrap /query lists engine ids), then HEALTHY; a failed
 * health check or transport error makes it UNHEALTHY (out of rotation) until a
 * later check passes. A removed instance leaves its group at once and is freed
 * when its last in-flight leg ends. */
#include "proxy.h"
#include "proxy_int.h"

#include "base_log.h"
#include "net_http.h"
#include "net_sock.h"
#include "base_time.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define TAG "proxy"
#define STREAM_HWM (256u << 10) /* pause the upstream above this many buffered bytes */
#define PREFILL_MAX (8u << 20)  /* largest prefill answer we keep (toy/demo modes) */
#define PROBE_MAX (1u << 20)    /* largest /v1/models or /query answer */
#define WHOLE_MAX (1u << 20)    /* non-SSE decode answers up to this size are sent whole */
#define MAX_INST_PER_GROUP 1024
#define MC_PROXY_PER_IP_DEFAULT 1024u       /* one benchmark host may run ~1000 streams */
#define MC_PROXY_IDLE_TIMEOUT_DEFAULT_S 60u /* as nginx's send_timeout */

enum { ST_CHECKING = 0, ST_HEALTHY, ST_UNHEALTHY };
enum { LEG_PREFILL = 0, LEG_DECODE = 1, LEG_PROBE = 2 };
enum { STEP_MODELS = 0, STEP_QUERY, STEP_HEALTH };
enum { RQ_READING = 0, RQ_STARTED };
enum { R_COMPLETIONS = 0, R_CHAT, R_ADD, R_REMOVE };

static const char *const group_name[2] = {"prefill", "decode"};
static const char *const state_name[3] = {"checking", "healthy", "unhealthy"};
static const char *const mode_name[3] = {"connector", "toy", "demo"};

typedef struct {
    char *p;
    size_t len, off, cap;
} buf_t;

typedef struct inst inst_t;
typedef struct leg leg_t;
typedef struct req req_t;

struct inst {
    inst_t *next_all;
    int group;
    char name[300]; /* host:port as shown in /status and the admin API */
    char base[320]; /* URL prefix of the OpenAI API */
    char host[256];
    uint16_t port, boot_port;
    int state, removed, admitted, from_cli;
    unsigned inflight;
    uint64_t total, failures;
    char **engine_ids;
    int n_dp;
    unsigned dp_rr;
    uint64_t next_check_ms;
    leg_t *probe;
    req_t *admin_waiter;
    char last_error[200];
};

struct leg {
    leg_t *prev, *next; /* active list */
    CURL *easy;
    int kind, step, active, started, paused, body_seen, cancelled;
    int whole;   /* decode: a small non-SSE answer, relayed in one piece when complete */
    int retried; /* completion legs are retried once elsewhere when the connect failed */
    size_t body_len;
    req_t *req;
    inst_t *inst;
    struct curl_slist *hdrs;
    char *body;
    buf_t resp;
    size_t resp_limit;
    long status;
    CURLcode rc;
    uint64_t deadline_ms;
    char err[CURL_ERROR_SIZE + 64];
};

struct req {
    req_t *prev, *next;
    mc_proxy_t *px;
    struct MHD_Connection *conn;
    int refs, route, state;
    buf_t body;
    int too_big, suspended, client_gone, queued, stream_ready, has_stream_resp;
    int resp_status; /* > 0: a JSON answer (resp_json) is ready to be queued */
    char *resp_json;
    long up_status;
    char up_ctype[128];
    int64_t up_clen;
    int final_status;
    leg_t *p, *d;
    json_t *json;
    char *auth;
    char reqid[130];
    char prefill_host[256];
    inst_t *admin_inst;
    uint64_t t0;
};

struct mc_proxy {
    mc_proxy_config_t cfg;
    mc_http_listener_t http; /* the front's limits (net_http.h) */
    struct MHD_Daemon *mhd;  /* http.mhd */
    int epfd;                /* MHD's epoll fd */
    int ep;                  /* ours: MHD's epoll fd + curl's sockets */
    uint64_t curl_due_ns;    /* curl's timer, UINT64_MAX when unset */
    uint16_t port;
    CURLM *multi;
    volatile sig_atomic_t stop;
    int kick;
    inst_t *all;
    inst_t **grp[2];
    int ngrp[2];
    unsigned rr[2];
    leg_t *legs; /* active legs */
    req_t *reqs;
    char *admin_key;
    char *openai_key;
    char *models_json;   /* last /v1/models answer of an admitted instance */
    CURL *easy_pool[64]; /* finished easy handles, reset and reused */
    int n_easy;
    char model_id[256];
    uint64_t next_tick_ms, next_peek_ms;
    /* metrics */
    uint64_t m_requests[2], m_status[6], m_upstream_err[2], m_disconnects, m_admin[2];
    uint64_t m_rejected, m_dur_count;
    double m_dur_sum;
    unsigned m_inflight;
};

/* ------------------------------------------------------------------ buffers */

static int buf_append(buf_t *b, const void *data, size_t n)
{
    if (b->off && b->off == b->len) b->off = b->len = 0;
    if (b->len + n > b->cap) {
        if (b->off) { /* compact before growing */
            memmove(b->p, b->p + b->off, b->len - b->off);
            b->len -= b->off;
            b->off = 0;
        }
        if (b->len + n > b->cap) {
            size_t nc = b->cap ? b->cap : 4096;
            while (nc < b->len + n)
                nc *= 2;
            char *np = realloc(b->p, nc);
            if (!np) return -ENOMEM;
            b->p = np;
            b->cap = nc;
        }
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

/* Appends printf output; returns 0 or -ENOMEM. */
static int buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int buf_printf(buf_t *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return -EINVAL;
    if ((size_t)n < sizeof tmp) return buf_append(b, tmp, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big) return -ENOMEM;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rc = buf_append(b, big, (size_t)n);
    free(big);
    return rc;
}

static void buf_free(buf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* -------------------------------------------------------- JSON answers */

/* {"error": {"message", "type", "code"[, "leg"][, "instance"]}} as a malloc'd string. */
static char *error_json(int status, const char *type, const char *leg, const char *instance,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static char *error_json(int status, const char *type, const char *leg, const char *instance,
                        const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *e = json_pack("{s:s, s:s, s:i}", "message", msg, "type", type, "code", status);
    if (!e) return NULL;
    if (leg) json_object_set_new(e, "leg", json_string(leg));
    if (instance) json_object_set_new(e, "instance", json_string(instance));
    json_t *o = json_pack("{s:o}", "error", e);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

static enum MHD_Result queue_str(struct MHD_Connection *c, int status, const char *ctype,
                                 const char *s, const char *reqid)
{
    static const char fallback[] = "{\"error\":{\"message\":\"out of memory\"}}";
    if (!s) {
        s = fallback;
        status = 500;
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(s), (void *)s, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", ctype);
    if (reqid && *reqid) MHD_add_response_header(r, "X-Request-Id", reqid);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Answers at once (no request state) with a JSON error. */
static enum MHD_Result queue_error(mc_proxy_t *px, struct MHD_Connection *c, int status,
                                   const char *type, const char *msg)
{
    char *s = error_json(status, type, NULL, NULL, "%s", msg);
    enum MHD_Result r = queue_str(c, status, "application/json", s, NULL);
    free(s);
    px->m_status[status / 100 < 6 ? status / 100 : 5]++;
    return r;
}

/* ------------------------------------------------------------ instances */

static void inst_free(inst_t *in)
{
    mc__proxy_free_ids(in->engine_ids, in->n_dp);
    free(in);
}

static void inst_unlink_all(mc_proxy_t *px, inst_t *in)
{
    for (inst_t **pp = &px->all; *pp; pp = &(*pp)->next_all) {
        if (*pp == in) {
            *pp = in->next_all;
            return;
        }
    }
}

/* Frees a removed instance once nothing refers to it any more. */
static void inst_maybe_free(mc_proxy_t *px, inst_t *in)
{
    if (in->removed && in->inflight == 0 && !in->probe && !in->admin_waiter) {
        inst_unlink_all(px, in);
        inst_free(in);
    }
}

static void group_del(mc_proxy_t *px, inst_t *in)
{
    int g = in->group;
    for (int i = 0; i < px->ngrp[g]; i++) {
        if (px->grp[g][i] == in) {
            memmove(&px->grp[g][i], &px->grp[g][i + 1],
                    (size_t)(px->ngrp[g] - i - 1) * sizeof(inst_t *));
            px->ngrp[g]--;
            return;
        }
    }
}

static inst_t *group_find(mc_proxy_t *px, int g, const char *name)
{
    for (int i = 0; i < px->ngrp[g]; i++)
        if (strcmp(px->grp[g][i]->name, name) == 0) return px->grp[g][i];
    return NULL;
}

/* Creates an instance from a base URL and appends it to group g (state CHECKING).
 * Returns NULL on a malformed URL, a full group or allocation failure. */
static inst_t *inst_add(mc_proxy_t *px, int g, const char *url, uint16_t boot, int from_cli)
{
    if (px->ngrp[g] >= MAX_INST_PER_GROUP) return NULL;
    inst_t *in = calloc(1, sizeof *in);
    if (!in) return NULL;
    in->group = g;
    in->boot_port = boot;
    in->from_cli = from_cli;
    in->state = ST_CHECKING;
    snprintf(in->base, sizeof in->base, "%s", url);
    const char *auth = strstr(in->base, "://");
    auth = auth ? auth + 3 : in->base;
    size_t al = strcspn(auth, "/");
    if (al == 0 || al >= sizeof in->name) goto fail;
    memcpy(in->name, auth, al);
    in->name[al] = 0;
    /* host part of the authority, for the bootstrap address and remote_host */
    if (in->name[0] == '[') {
        const char *rb = strchr(in->name, ']');
        if (!rb) goto fail;
        size_t hl = (size_t)(rb - in->name - 1);
        memcpy(in->host, in->name + 1, hl);
        in->host[hl] = 0;
        in->port = (uint16_t)(rb[1] == ':' ? atoi(rb + 2) : 80);
    } else {
        const char *colon = strrchr(in->name, ':');
        size_t hl = colon ? (size_t)(colon - in->name) : strlen(in->name);
        memcpy(in->host, in->name, hl);
        in->host[hl] = 0;
        in->port = (uint16_t)(colon ? atoi(colon + 1) : 80);
    }
    inst_t **ng = realloc(px->grp[g], (size_t)(px->ngrp[g] + 1) * sizeof *ng);
    if (!ng) goto fail;
    px->grp[g] = ng;
    ng[px->ngrp[g]++] = in;
    in->next_all = px->all;
    px->all = in;
    return in;
fail:
    free(in);
    return NULL;
}

static int inst_eligible(const mc_proxy_t *px, const inst_t *in)
{
    if (in->state != ST_HEALTHY || in->removed) return 0;
    if (px->cfg.mode == MC_PROXY_MODE_CONNECTOR && in->group == MC_PROXY_PREFILL)
        return in->n_dp > 0;
    return 1;
}

/* Picks an instance of group g by the configured policy, or NULL when none is eligible. */
static inst_t *pick(mc_proxy_t *px, int g)
{
    int n = px->ngrp[g];
    if (n == 0) return NULL;
    unsigned start = px->rr[g] % (unsigned)n;
    inst_t *best = NULL;
    int best_i = -1;
    for (int k = 0; k < n; k++) {
        int i = (int)((start + (unsigned)k) % (unsigned)n);
        inst_t *in = px->grp[g][i];
        if (!inst_eligible(px, in)) continue;
        if (px->cfg.sched == MC_PROXY_SCHED_ROUND_ROBIN) {
            best = in;
            best_i = i;
            break;
        }
        if (!best || in->inflight < best->inflight) {
            best = in;
            best_i = i;
        }
    }
    if (best) px->rr[g] = (unsigned)best_i + 1;
    return best;
}

static int pick_noadvance(mc_proxy_t *px, int g)
{
    unsigned save = px->rr[g];
    int ok = pick(px, g) != NULL;
    px->rr[g] = save;
    return ok;
}

/* Connector mode serves only once every prefiller of the command line is known. */
static int connector_ready(mc_proxy_t *px)
{
    if (px->cfg.mode != MC_PROXY_MODE_CONNECTOR) return 1;
    for (int i = 0; i < px->ngrp[0]; i++) {
        inst_t *in = px->grp[0][i];
        if (in->from_cli && in->n_dp == 0) return 0;
    }
    return 1;
}

/* ------------------------------------------------------------ requests */

static void req_ref(req_t *r)
{
    r->refs++;
}

static void leg_free(leg_t *l)
{
    if (!l) return;
    if (l->active) abort(); /* memory-safety invariant: never free a running leg */
    curl_slist_free_all(l->hdrs);
    free(l->body);
    buf_free(&l->resp);
    free(l);
}

static void req_unref(req_t *r)
{
    if (--r->refs > 0) return;
    mc_proxy_t *px = r->px;
    if (r->prev)
        r->prev->next = r->next;
    else
        px->reqs = r->next;
    if (r->next) r->next->prev = r->prev;
    leg_free(r->p);
    leg_free(r->d);
    buf_free(&r->body);
    json_decref(r->json);
    free(r->auth);
    free(r->resp_json);
    free(r);
}

static void req_resume(req_t *r)
{
    if (r->suspended && r->conn) {
        r->suspended = 0;
        MHD_resume_connection(r->conn);
        r->px->kick = 1;
    }
}

/* ---------------------------------------------------------------- legs */

static size_t hdr_cb(char *ptr, size_t size, size_t n, void *ud)
{
    leg_t *l = ud;
    l->started = 1;
    (void)ptr;
    return size * n;
}

static size_t write_cb(char *ptr, size_t size, size_t n, void *ud);

/* Starts an upstream transfer: GET when body is NULL, else POST of body (ownership
 * of body passes to the leg). Returns the leg, or NULL (body freed) on failure. */
static leg_t *leg_start(mc_proxy_t *px, int kind, req_t *r, inst_t *in, const char *url, char *body,
                        size_t body_len, struct curl_slist *hdrs, long timeout_ms)
{
    leg_t *l = calloc(1, sizeof *l);
    if (!l) goto fail;
    if (px->n_easy > 0) {
        l->easy = px->easy_pool[--px->n_easy];
        curl_easy_reset(l->easy);
    } else {
        l->easy = curl_easy_init();
    }
    if (!l->easy) goto fail;
    l->kind = kind;
    l->req = r;
    l->inst = in;
    l->body = body;
    l->body_len = body_len;
    body = NULL;
    l->hdrs = hdrs;
    hdrs = NULL;
    l->resp_limit = kind == LEG_PROBE ? PROBE_MAX : PREFILL_MAX;
    CURL *e = l->easy;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, l);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, l);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, hdr_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, l);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, l->err);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)px->cfg.connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    if (timeout_ms > 0) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
    if (l->body) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, l->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    if (l->hdrs) curl_easy_setopt(e, CURLOPT_HTTPHEADER, l->hdrs);
    if (curl_multi_add_handle(px->multi, e) != CURLM_OK) goto fail;
    l->active = 1;
    l->deadline_ms = mc_now_ms() + (uint64_t)px->cfg.first_byte_timeout_ms;
    l->next = px->legs;
    if (px->legs) px->legs->prev = l;
    px->legs = l;
    if (r) req_ref(r);
    if (in) {
        if (kind == LEG_PROBE) {
            in->probe = l;
        } else {
            in->inflight++;
            in->total++;
        }
    }
    px->kick = 1;
    return l;
fail:
    free(body);
    curl_slist_free_all(hdrs);
    if (l) {
        if (l->easy) curl_easy_cleanup(l->easy);
        l->easy = NULL;
        leg_free(l);
    }
    return NULL;
}

/* Detaches a leg from curl and from its instance. Must not run inside a curl callback. */
static void leg_detach(mc_proxy_t *px, leg_t *l)
{
    if (!l->active) return;
    curl_multi_remove_handle(px->multi, l->easy);
    if (px->n_easy < (int)(sizeof px->easy_pool / sizeof px->easy_pool[0]))
        px->easy_pool[px->n_easy++] = l->easy;
    else
        curl_easy_cleanup(l->easy);
    l->easy = NULL;
    l->active = 0;
    if (l->prev)
        l->prev->next = l->next;
    else
        px->legs = l->next;
    if (l->next) l->next->prev = l->prev;
    l->prev = l->next = NULL;
    inst_t *in = l->inst;
    if (in) {
        if (l->kind == LEG_PROBE)
            in->probe = NULL;
        else
            in->inflight--;
    }
}

static void leg_finished(mc_proxy_t *px, leg_t *l);

/* Cancels a running leg (client gone, sibling failed, shutdown): no callbacks run. */
static void leg_cancel(mc_proxy_t *px, leg_t *l)
{
    if (!l || !l->active) return;
    l->cancelled = 1;
    inst_t *in = l->inst;
    req_t *r = l->req;
    leg_detach(px, l);
    l->inst = NULL;
    if (l->kind == LEG_PROBE) {
        leg_free(l);
    }
    if (in) inst_maybe_free(px, in);
    if (r) req_unref(r);
}

static void req_cancel_legs(mc_proxy_t *px, req_t *r)
{
    req_ref(r);
    leg_cancel(px, r->p);
    leg_cancel(px, r->d);
    req_unref(r);
}

/* Sets the JSON answer of a request that has not answered yet, cancels its legs
 * and wakes its connection. Takes ownership of json (may be NULL = OOM). */
static void req_answer(req_t *r, int status, char *json)
{
    if (r->queued || r->resp_status || r->stream_ready || r->client_gone) {
        free(json);
        return;
    }
    r->resp_status = status;
    r->resp_json = json;
    req_cancel_legs(r->px, r);
    req_resume(r);
}

static const char *route_path(int route)
{
    return route == R_CHAT ? "/v1/chat/completions" : "/v1/completions";
}

/* Standard upstream headers of a completion leg; dp_rank < 0 omits X-data-parallel-rank. */
static struct curl_slist *leg_headers(req_t *r, int dp_rank)
{
    struct curl_slist *h = NULL, *t;
    char line[600];
#define ADD(s)                                                                                     \
    do {                                                                                           \
        t = curl_slist_append(h, s);                                                               \
        if (!t) goto fail;                                                                         \
        h = t;                                                                                     \
    } while (0)
    ADD("Content-Type: application/json");
    ADD("Expect:");
    snprintf(line, sizeof line, "X-Request-Id: %s", r->reqid);
    ADD(line);
    if (r->auth) {
        snprintf(line, sizeof line, "Authorization: %s", r->auth);
        ADD(line);
    }
    if (dp_rank >= 0) {
        snprintf(line, sizeof line, "X-data-parallel-rank: %d", dp_rank);
        ADD(line);
    }
#undef ADD
    return h;
fail:
    curl_slist_free_all(h);
    return NULL;
}

/* Starts a completion leg of request r to instance in with body (owned). 0 or -ENOMEM. */
static int start_completion_leg(mc_proxy_t *px, req_t *r, int kind, inst_t *in, char *body,
                                size_t len, int dp_rank)
{
    char url[400];
    snprintf(url, sizeof url, "%s%s", in->base, route_path(r->route));
    struct curl_slist *h = leg_headers(r, dp_rank);
    if (!h) {
        free(body);
        return -ENOMEM;
    }
    leg_t *l = leg_start(px, kind, r, in, url, body, len, h, 0);
    if (!l) return -ENOMEM;
    if (kind == LEG_PREFILL)
        r->p = l;
    else
        r->d = l;
    return 0;
}

static size_t write_cb(char *ptr, size_t size, size_t n, void *ud)
{
    leg_t *l = ud;
    size_t len = size * n;
    req_t *r = l->req;
    l->started = 1;
    if (l->kind == LEG_DECODE) {
        if (!r || r->client_gone || r->resp_status) return 0; /* aborts the transfer */
        if (!l->body_seen) {
            l->body_seen = 1;
            long st = 0;
            char *ct = NULL;
            curl_off_t cl = -1;
            curl_easy_getinfo(l->easy, CURLINFO_RESPONSE_CODE, &st);
            curl_easy_getinfo(l->easy, CURLINFO_CONTENT_TYPE, &ct);
            curl_easy_getinfo(l->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
            r->up_status = st;
            snprintf(r->up_ctype, sizeof r->up_ctype, "%s", ct ? ct : "application/json");
            r->up_clen = cl;
            /* A JSON answer of known, modest size goes out in one piece once complete
             * (one send instead of headers + body); anything else streams as it comes. */
            if (cl >= 0 && cl <= (curl_off_t)WHOLE_MAX &&
                strncmp(r->up_ctype, "text/event-stream", 17))
                l->whole = 1;
            else
                r->stream_ready = 1;
        }
        if (l->whole) return buf_append(&l->resp, ptr, len) == 0 ? len : 0;
        if (l->resp.len - l->resp.off >= STREAM_HWM) {
            MC_LOGD(TAG, "req %s: decode paused (%zu buffered)", r->reqid,
                    l->resp.len - l->resp.off);
            l->paused = 1;
            return CURL_WRITEFUNC_PAUSE;
        }
        if (buf_append(&l->resp, ptr, len) != 0) return 0;
        req_resume(r);
        return len;
    }
    if (l->kind == LEG_PREFILL && r && r->px->cfg.mode == MC_PROXY_MODE_CONNECTOR)
        return len; /* fire-and-forget: the connector's prefill answer is not needed */
    if (l->resp.len + len > l->resp_limit) {
        snprintf(l->err, sizeof l->err, "answer larger than %zu bytes", l->resp_limit);
        return 0;
    }
    if (buf_append(&l->resp, ptr, len) != 0) return 0;
    return len;
}

/* A transport-level failure takes the instance out of rotation until a check passes. */
static void inst_mark_failed(mc_proxy_t *px, inst_t *in, const char *why)
{
    in->failures++;
    snprintf(in->last_error, sizeof in->last_error, "%.199s", why);
    if (in->state == ST_HEALTHY) {
        MC_LOGW(TAG, "%s instance %s out of rotation: %s", group_name[in->group], in->name, why);
        in->state = ST_UNHEALTHY;
    }
    uint64_t soon = mc_now_ms() + 100;
    if (in->next_check_ms > soon) in->next_check_ms = soon;
}

/* ------------------------------------------------------------- probes */

static int probe_start(mc_proxy_t *px, inst_t *in, int step)
{
    char url[400];
    if (step == STEP_QUERY)
        snprintf(url, sizeof url, "http://%s%s%s:%u/query", strchr(in->host, ':') ? "[" : "",
                 in->host, strchr(in->host, ':') ? "]" : "", in->boot_port);
    else
        snprintf(url, sizeof url, "%s%s", in->base, step == STEP_MODELS ? "/v1/models" : "/health");
    struct curl_slist *h = NULL;
    if (px->openai_key) {
        char line[600];
        snprintf(line, sizeof line, "Authorization: Bearer %s", px->openai_key);
        h = curl_slist_append(NULL, line);
    }
    long to = px->cfg.connect_timeout_ms + 5000;
    leg_t *l = leg_start(px, LEG_PROBE, NULL, in, url, NULL, 0, h, to);
    if (!l) return -ENOMEM;
    l->step = step;
    return 0;
}

static void admin_reply(mc_proxy_t *px, inst_t *in, int ok)
{
    req_t *r = in->admin_waiter;
    if (!r) return;
    in->admin_waiter = NULL;
    r->admin_inst = NULL;
    char *s;
    if (ok) {
        json_t *o = json_pack("{s:s, s:s, s:s}", "message", "", "type", group_name[in->group],
                              "instance", in->name);
        char msg[400];
        snprintf(msg, sizeof msg, "Added %s to %s_instances.", in->name, group_name[in->group]);
        if (o) json_object_set_new(o, "message", json_string(msg));
        s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        req_answer(r, 200, s);
    } else {
        s = error_json(400, "invalid_request_error", NULL, in->name,
                       "instance %s failed its check: %s", in->name, in->last_error);
        req_answer(r, 400, s);
    }
    req_unref(r); /* the waiter reference */
}

/* Handles a finished probe step; may start the next step. */
static void probe_finished(mc_proxy_t *px, leg_t *l)
{
    inst_t *in = l->inst;
    int ok = l->rc == CURLE_OK && l->status == 200;
    char why[300];
    why[0] = 0;
    if (l->rc != CURLE_OK)
        snprintf(why, sizeof why, "%s: %.250s",
                 l->step == STEP_QUERY ? "bootstrap /query" : "check",
                 l->err[0] ? l->err : curl_easy_strerror(l->rc));
    else if (l->status != 200)
        snprintf(why, sizeof why, "%s answered HTTP %ld",
                 l->step == STEP_MODELS  ? "/v1/models"
                 : l->step == STEP_QUERY ? "bootstrap /query"
                                         : "/health",
                 l->status);
    int connector_p = px->cfg.mode == MC_PROXY_MODE_CONNECTOR && in->group == MC_PROXY_PREFILL;
    int next = -1;

    if (ok && l->step == STEP_MODELS) {
        char id[256];
        const char *want = px->cfg.model[0] ? px->cfg.model : px->model_id;
        int mr =
            mc__proxy_models_match(l->resp.p ? l->resp.p : "", l->resp.len, want, id, sizeof id);
        if (mr != 0) {
            ok = 0;
            snprintf(why, sizeof why, "/v1/models does not list model '%s'",
                     *want ? want : "(any)");
        } else {
            if (!px->model_id[0]) snprintf(px->model_id, sizeof px->model_id, "%s", id);
            if (!px->models_json) px->models_json = strndup(l->resp.p, l->resp.len);
            if (connector_p) next = STEP_QUERY;
        }
    } else if (ok && l->step == STEP_QUERY) {
        char **ids = NULL;
        int n = 0;
        if (mc__proxy_parse_query(l->resp.p ? l->resp.p : "", l->resp.len, &ids, &n) != 0) {
            ok = 0;
            snprintf(why, sizeof why, "bootstrap /query answer has no engine ids");
        } else {
            mc__proxy_free_ids(in->engine_ids, in->n_dp);
            in->engine_ids = ids;
            in->n_dp = n;
        }
    } else if (ok && l->step == STEP_HEALTH && connector_p) { /* engine ids change on restart */
        next = STEP_QUERY;
    }

    leg_free(l); /* detached already */
    if (in->removed) {
        inst_maybe_free(px, in);
        return;
    }
    uint64_t now = mc_now_ms();
    if (ok && next >= 0) {
        if (probe_start(px, in, next) == 0) return;
        ok = 0;
        snprintf(why, sizeof why, "out of memory");
    }
    int iv = px->cfg.health_interval_ms;
    if (ok) {
        if (in->state != ST_HEALTHY)
            MC_LOGI(TAG, "%s instance %s is healthy%s", group_name[in->group], in->name,
                    in->n_dp ? " (engine ids known)" : "");
        in->state = ST_HEALTHY;
        in->admitted = 1;
        in->last_error[0] = 0;
        in->next_check_ms = now + (uint64_t)iv;
        admin_reply(px, in, 1);
        return;
    }
    snprintf(in->last_error, sizeof in->last_error, "%.199s", why);
    in->next_check_ms = now + (uint64_t)(iv < 500 ? iv : 500);
    if (in->state == ST_HEALTHY) {
        MC_LOGW(TAG, "%s instance %s failed its health check: %s", group_name[in->group], in->name,
                why);
        in->state = ST_UNHEALTHY;
    }
    if (in->admin_waiter || (!in->admitted && !in->from_cli)) {
        /* An admin add that fails its check is not added. */
        MC_LOGW(TAG, "admin: %s instance %s rejected: %s", group_name[in->group], in->name, why);
        in->removed = 1;
        group_del(px, in);
        admin_reply(px, in, 0);
        inst_maybe_free(px, in);
    }
}

/* ------------------------------------------------------- completion flow */

static int start_decode(mc_proxy_t *px, req_t *r, const mc__proxy_rw_t *rw)
{
    inst_t *d = pick(px, MC_PROXY_DECODE);
    if (!d) {
        req_answer(
            r, 503,
            error_json(503, "service_unavailable", "decode", NULL, "no healthy decode instance"));
        return -EAGAIN;
    }
    char *body = NULL;
    size_t len = 0;
    if (mc__proxy_rw_decode(r->json, rw, &body, &len) != 0 ||
        start_completion_leg(px, r, LEG_DECODE, d, body, len, -1) != 0) {
        req_answer(r, 500, error_json(500, "internal_error", "decode", NULL, "out of memory"));
        return -ENOMEM;
    }
    return 0;
}

/* A prefill answer arrived (toy/demo: start decode) or failed (all modes: 502). */
static void prefill_finished(mc_proxy_t *px, leg_t *l)
{
    req_t *r = l->req;
    const char *iname = l->inst ? l->inst->name : "?";
    if (r->client_gone || r->resp_status || r->queued) return;
    int connector = px->cfg.mode == MC_PROXY_MODE_CONNECTOR;
    if (l->rc != CURLE_OK) {
        if (connector && r->stream_ready) {
            MC_LOGW(TAG, "req %s: prefill leg to %s failed after decode answered: %s", r->reqid,
                    iname, l->err);
            return;
        }
        px->m_upstream_err[0]++;
        req_answer(r, 502,
                   error_json(502, "bad_gateway", "prefill", iname, "prefill leg to %s failed: %s",
                              iname, l->err[0] ? l->err : curl_easy_strerror(l->rc)));
        return;
    }
    if (l->status >= 400) {
        if (connector && r->stream_ready) return;
        px->m_upstream_err[0]++;
        if (l->status < 500 && l->resp.len && !connector) { /* relay the backend's own 4xx */
            char *s = strndup(l->resp.p, l->resp.len);
            req_answer(r, (int)l->status, s);
            return;
        }
        req_answer(r, l->status < 500 ? (int)l->status : 502,
                   error_json(l->status < 500 ? (int)l->status : 502, "bad_gateway", "prefill",
                              iname, "prefill leg to %s answered HTTP %ld", iname, l->status));
        return;
    }
    if (connector) return; /* decode is already running */
    json_t *kv = NULL;
    mc__proxy_extract_kv(l->resp.p ? l->resp.p : "", l->resp.len, &kv);
    mc__proxy_rw_t rw = {.mode = px->cfg.mode,
                         .prefill_kv = kv,
                         .prefill_host = r->prefill_host,
                         .raw = r->body.p,
                         .raw_len = r->body.len};
    start_decode(px, r, &rw);
    json_decref(kv);
}

static void decode_finished(mc_proxy_t *px, leg_t *l)
{
    req_t *r = l->req;
    const char *iname = l->inst ? l->inst->name : "?";
    if (r->client_gone) return;
    if (l->rc != CURLE_OK) {
        px->m_upstream_err[1]++;
        if (!r->stream_ready) {
            req_answer(r, 502,
                       error_json(502, "bad_gateway", "decode", iname,
                                  "decode leg to %s failed: %s", iname,
                                  l->err[0] ? l->err : curl_easy_strerror(l->rc)));
            return;
        }
        MC_LOGW(TAG, "req %s: decode leg to %s failed mid-stream: %s", r->reqid, iname, l->err);
    } else if (l->whole) {
        r->stream_ready = 1;
    } else if (!r->stream_ready && !r->resp_status) { /* empty body */
        r->up_status = l->status ? l->status : 200;
        r->up_clen = 0;
        r->stream_ready = 1;
    }
    req_resume(r);
}

/* A completion leg that could not even connect (nothing reached the instance) is
 * started once more on another eligible instance. Not for connector-mode prefill
 * legs: the decode leg already names that prefiller. The leg is detached; on
 * success it is replaced in its request and freed. Returns 0 when retried. */
static void start_legs(mc_proxy_t *px, req_t *r, inst_t *p);

static int leg_retry(mc_proxy_t *px, leg_t *l)
{
    req_t *r = l->req;
    if (l->rc != CURLE_COULDNT_CONNECT || l->retried || l->cancelled || !r || r->client_gone ||
        r->resp_status || r->queued || r->stream_ready || !l->body)
        return -EINVAL;
    int g = l->kind == LEG_PREFILL ? MC_PROXY_PREFILL : MC_PROXY_DECODE;
    inst_t *alt = pick(px, g);
    if (!alt || alt == l->inst) return -ENOENT;
    MC_LOGW(TAG, "req %s: %s leg could not connect to %s; retrying on %s", r->reqid, group_name[g],
            l->inst ? l->inst->name : "?", alt->name);
    if (l->kind == LEG_PREFILL && px->cfg.mode == MC_PROXY_MODE_CONNECTOR) {
        /* The decode leg names the dead prefiller: start both legs again. */
        leg_t *od = r->d;
        r->p = r->d = NULL;
        leg_free(l);
        if (od) {
            leg_cancel(px, od);
            leg_free(od);
        }
        start_legs(px, r, alt);
        if (r->p) r->p->retried = 1;
        if (r->d) r->d->retried = 1;
        return 0;
    }
    char *body = l->body;
    size_t blen = l->body_len;
    int kind = l->kind;
    l->body = NULL;
    if (r->p == l) r->p = NULL;
    if (r->d == l) r->d = NULL;
    leg_free(l);
    if (g == MC_PROXY_PREFILL) snprintf(r->prefill_host, sizeof r->prefill_host, "%s", alt->host);
    if (start_completion_leg(px, r, kind, alt, body, blen, -1) != 0) {
        req_answer(r, 500, error_json(500, "internal_error", group_name[g], NULL, "out of memory"));
        return 0; /* answered; the caller drops the old leg's reference */
    }
    (g == MC_PROXY_PREFILL ? r->p : r->d)->retried = 1;
    return 0;
}

/* Called for every leg curl reports done (and for legs we time out). */
static void leg_finished(mc_proxy_t *px, leg_t *l)
{
    req_t *r = l->req;
    inst_t *in = l->inst;
    if (l->active) {
        curl_easy_getinfo(l->easy, CURLINFO_RESPONSE_CODE, &l->status);
        if (l->kind == LEG_DECODE && !l->body_seen && l->req) {
            char *ct = NULL;
            curl_easy_getinfo(l->easy, CURLINFO_CONTENT_TYPE, &ct);
            snprintf(l->req->up_ctype, sizeof l->req->up_ctype, "%s", ct ? ct : "application/json");
        }
    }
    leg_detach(px, l);
    if (l->rc != CURLE_OK && l->rc != CURLE_WRITE_ERROR && l->kind != LEG_PROBE && in &&
        !(r && (r->client_gone || r->resp_status)))
        inst_mark_failed(px, in, l->err[0] ? l->err : curl_easy_strerror(l->rc));
    if (l->kind == LEG_PROBE) {
        probe_finished(px, l);
        return;
    }
    if (leg_retry(px, l) == 0) {
        if (in) inst_maybe_free(px, in);
        req_unref(r);
        return;
    }
    if (l->kind == LEG_PREFILL)
        prefill_finished(px, l);
    else
        decode_finished(px, l);
    l->inst = NULL; /* the instance may be freed now (removed and drained) */
    if (in) inst_maybe_free(px, in);
    req_unref(r);
}

/* Body complete: parse, rewrite and start the legs, or answer an error. */
static void dispatch_completion(mc_proxy_t *px, req_t *r)
{
    char err[256];
    px->m_requests[r->route == R_CHAT]++;
    if (px->cfg.mode == MC_PROXY_MODE_DEMO) {
        const char *ct =
            MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        if (!ct || strncasecmp(ct, "application/json", 16) != 0) {
            req_answer(r, 415,
                       error_json(415, "invalid_request_error", NULL, NULL,
                                  "Content-Type must be application/json"));
            return;
        }
    }
    if (mc__proxy_parse_body(r->body.p, r->body.len, &r->json, err, sizeof err) != 0) {
        req_answer(r, 400, error_json(400, "invalid_request_error", NULL, NULL, "%s", err));
        return;
    }
    if (!connector_ready(px)) {
        req_answer(r, 503,
                   error_json(503, "service_unavailable", "prefill", NULL,
                              "waiting for the bootstrap servers of every prefiller"));
        return;
    }
    if (!pick_noadvance(px, MC_PROXY_DECODE)) {
        req_answer(
            r, 503,
            error_json(503, "service_unavailable", "decode", NULL, "no healthy decode instance"));
        return;
    }
    inst_t *p = pick(px, MC_PROXY_PREFILL);
    if (!p) {
        req_answer(
            r, 503,
            error_json(503, "service_unavailable", "prefill", NULL, "no healthy prefill instance"));
        return;
    }
    const char *rid = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Request-Id");
    int rid_ok = rid && *rid && strlen(rid) <= 128;
    for (const char *c = rid; rid_ok && *c; c++)
        if (*c < 0x21 || *c > 0x7e) rid_ok = 0;
    if (rid_ok)
        snprintf(r->reqid, sizeof r->reqid, "%s", rid);
    else
        mc__proxy_uuid(r->reqid);
    const char *auth = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
    if (auth && *auth && strlen(auth) < 500) {
        r->auth = strdup(auth);
    } else if (px->openai_key) {
        char line[520];
        snprintf(line, sizeof line, "Bearer %s", px->openai_key);
        r->auth = strdup(line);
    }
    start_legs(px, r, p);
}

/* Starts the legs of request r with prefiller p: the prefill leg, and in connector
 * mode the decode leg at once (toy/demo start it when the prefill answers). */
static void start_legs(mc_proxy_t *px, req_t *r, inst_t *p)
{
    snprintf(r->prefill_host, sizeof r->prefill_host, "%s", p->host);
    mc__proxy_rw_t rw = {.mode = px->cfg.mode, .raw = r->body.p, .raw_len = r->body.len};
    char xfer[48], boot[300];
    int dp = -1;
    if (px->cfg.mode == MC_PROXY_MODE_CONNECTOR) {
        char u[37];
        mc__proxy_uuid(u);
        snprintf(xfer, sizeof xfer, "xfer-%s", u);
        dp = (int)(p->dp_rr++ % (unsigned)p->n_dp);
        snprintf(boot, sizeof boot, "http://%s%s%s:%u", strchr(p->host, ':') ? "[" : "", p->host,
                 strchr(p->host, ':') ? "]" : "", p->boot_port);
        rw.transfer_id = xfer;
        rw.bootstrap_addr = boot;
        rw.engine_id = p->engine_ids[dp];
    }
    char *body = NULL;
    size_t len = 0;
    if (mc__proxy_rw_prefill(r->json, &rw, &body, &len) != 0 ||
        start_completion_leg(px, r, LEG_PREFILL, p, body, len, dp) != 0) {
        req_answer(r, 500, error_json(500, "internal_error", "prefill", NULL, "out of memory"));
        return;
    }
    if (px->cfg.mode == MC_PROXY_MODE_CONNECTOR) start_decode(px, r, &rw);
}

/* -------------------------------------------------------------- admin */

/* Checks X-API-Key. Returns 0 when authorised, else answers r and returns -1. */
static int admin_auth(mc_proxy_t *px, req_t *r, const char *action)
{
    char peer[80];
    mc_http_peer(r->conn, peer, sizeof peer);
    if (!px->admin_key) {
        MC_LOGW(TAG, "admin: %s from %s refused: ADMIN_API_KEY is not set", action, peer);
        req_answer(r, 503,
                   error_json(503, "admin_disabled", NULL, NULL,
                              "admin API is disabled: ADMIN_API_KEY is not set"));
        return -1;
    }
    const char *key = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-API-Key");
    if (!key || !*key) {
        MC_LOGW(TAG, "admin: %s from %s refused: no X-API-Key", action, peer);
        req_answer(r, 401, error_json(401, "unauthorized", NULL, NULL, "missing X-API-Key header"));
        return -1;
    }
    if (!mc__proxy_key_equal(px->admin_key, key)) {
        MC_LOGW(TAG, "admin: %s from %s refused: wrong X-API-Key", action, peer);
        req_answer(r, 403, error_json(403, "forbidden", NULL, NULL, "invalid X-API-Key"));
        return -1;
    }
    MC_LOGI(TAG, "admin: %s from %s authorised", action, peer);
    return 0;
}

static void dispatch_admin(mc_proxy_t *px, req_t *r)
{
    int add = r->route == R_ADD;
    char err[256], host[256];
    uint16_t port;
    json_t *j = NULL;
    if (admin_auth(px, r, add ? "instances/add" : "instances/remove") != 0) return;
    px->m_admin[!add]++;
    if (mc__proxy_parse_body(r->body.p, r->body.len, &j, err, sizeof err) != 0) {
        req_answer(r, 400, error_json(400, "invalid_request_error", NULL, NULL, "%s", err));
        return;
    }
    r->json = j;
    json_t *jt = json_object_get(j, "type"), *ji = json_object_get(j, "instance");
    const char *type = json_string_value(jt), *inst = json_string_value(ji);
    int g = !type ? -1 : strcmp(type, "prefill") == 0 ? 0 : strcmp(type, "decode") == 0 ? 1 : -1;
    if (g < 0) {
        req_answer(r, 400,
                   error_json(400, "invalid_request_error", NULL, NULL,
                              "\"type\" must be \"prefill\" or \"decode\""));
        return;
    }
    if (!inst) {
        req_answer(r, 400,
                   error_json(400, "invalid_request_error", NULL, NULL,
                              "\"instance\" must be a \"host:port\" string"));
        return;
    }
    if (mc__proxy_check_instance(inst, host, sizeof host, &port, err, sizeof err) != 0) {
        req_answer(r, 400,
                   error_json(400, "invalid_request_error", NULL, NULL, "bad instance '%.300s': %s",
                              inst, err));
        return;
    }
    inst_t *old = group_find(px, g, inst);
    if (!add) {
        if (!old) {
            req_answer(r, 404,
                       error_json(404, "not_found", NULL, inst, "%s is not in %s_instances", inst,
                                  group_name[g]));
            return;
        }
        MC_LOGI(TAG, "admin: removing %s instance %s (%u in flight)", group_name[g], inst,
                old->inflight);
        old->removed = 1;
        group_del(px, old);
        if (old->admin_waiter) {
            snprintf(old->last_error, sizeof old->last_error, "removed while being checked");
            admin_reply(px, old, 0);
        }
        char msg[400];
        snprintf(msg, sizeof msg, "Removed %s from %s_instances.", inst, group_name[g]);
        json_t *o = json_pack("{s:s, s:s, s:s, s:i}", "message", msg, "type", group_name[g],
                              "instance", inst, "draining", (int)old->inflight);
        /* Last use of old: cancelling its probe (a health check in flight) frees it when
         * nothing else holds it, as inst_maybe_free does otherwise. */
        if (old->probe)
            leg_cancel(px, old->probe);
        else
            inst_maybe_free(px, old);
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        req_answer(r, 200, s);
        return;
    }
    if (old) {
        req_answer(r, 400,
                   error_json(400, "invalid_request_error", NULL, inst,
                              "%s is already in %s_instances", inst, group_name[g]));
        return;
    }
    uint16_t boot = 0;
    if (px->cfg.mode == MC_PROXY_MODE_CONNECTOR && g == MC_PROXY_PREFILL) {
        json_t *jb = json_object_get(j, "bootstrap_port");
        boot = MC_PROXY_DEFAULT_BOOTSTRAP;
        if (jb) {
            json_int_t bv = json_integer_value(jb);
            if (!json_is_integer(jb) || bv < 1 || bv > 65535) {
                req_answer(r, 400,
                           error_json(400, "invalid_request_error", NULL, NULL,
                                      "\"bootstrap_port\" must be an integer in 1..65535"));
                return;
            }
            boot = (uint16_t)bv;
        }
    }
    char url[320];
    snprintf(url, sizeof url, "http://%s", inst);
    inst_t *in = inst_add(px, g, url, boot, 0);
    if (!in || probe_start(px, in, STEP_MODELS) != 0) {
        if (in) {
            in->removed = 1;
            group_del(px, in);
            inst_maybe_free(px, in);
        }
        req_answer(r, 500, error_json(500, "internal_error", NULL, NULL, "cannot add instance"));
        return;
    }
    MC_LOGI(TAG, "admin: checking new %s instance %s", group_name[g], inst);
    in->admin_waiter = r;
    r->admin_inst = in;
    req_ref(r); /* held until admin_reply */
}

/* ------------------------------------------------------- GET endpoints */

static json_t *inst_json(const inst_t *in)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:b, s:i, s:I, s:I}", "instance", in->name, "url",
                          in->base, "state", state_name[in->state], "healthy",
                          in->state == ST_HEALTHY, "inflight", (int)in->inflight, "requests",
                          (json_int_t)in->total, "failures", (json_int_t)in->failures);
    if (!o) return NULL;
    if (in->boot_port) {
        json_object_set_new(o, "bootstrap_port", json_integer(in->boot_port));
        json_t *a = json_array();
        for (int i = 0; i < in->n_dp; i++)
            json_array_append_new(a, json_string(in->engine_ids[i]));
        json_object_set_new(o, "engine_ids", a);
    }
    if (in->last_error[0]) json_object_set_new(o, "last_error", json_string(in->last_error));
    return o;
}

static char *status_json(mc_proxy_t *px)
{
    json_t *o = json_object();
    json_object_set_new(o, "mode", json_string(mode_name[px->cfg.mode]));
    json_object_set_new(o, "scheduling",
                        json_string(px->cfg.sched ? "least_loaded" : "round_robin"));
    json_object_set_new(o, "model", json_string(px->cfg.model[0] ? px->cfg.model : px->model_id));
    json_object_set_new(
        o, "ready",
        json_boolean(connector_ready(px) && pick_noadvance(px, 0) && pick_noadvance(px, 1)));
    for (int g = 0; g < 2; g++) {
        char k[40];
        json_t *names = json_array(), *det = json_array();
        for (int i = 0; i < px->ngrp[g]; i++) {
            json_array_append_new(names, json_string(px->grp[g][i]->name));
            json_array_append_new(det, inst_json(px->grp[g][i]));
        }
        snprintf(k, sizeof k, "%s_node_count", group_name[g]);
        json_object_set_new(o, k, json_integer(px->ngrp[g]));
        snprintf(k, sizeof k, "%s_nodes", group_name[g]);
        json_object_set_new(o, k, names);
        json_object_set_new(o, group_name[g], det);
    }
    json_t *dr = json_array();
    for (inst_t *in = px->all; in; in = in->next_all)
        if (in->removed) {
            json_t *x = inst_json(in);
            json_object_set_new(x, "type", json_string(group_name[in->group]));
            json_array_append_new(dr, x);
        }
    json_object_set_new(o, "draining", dr);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static char *metrics_text(mc_proxy_t *px)
{
    buf_t b = {0};
    int oom = 0;
#define P(...) oom |= buf_printf(&b, __VA_ARGS__)
    P("# HELP mooncake_proxy_requests_total Completion requests received.\n"
      "# TYPE mooncake_proxy_requests_total counter\n"
      "mooncake_proxy_requests_total{endpoint=\"completions\"} %llu\n"
      "mooncake_proxy_requests_total{endpoint=\"chat_completions\"} %llu\n",
      (unsigned long long)px->m_requests[0], (unsigned long long)px->m_requests[1]);
    P("# HELP mooncake_proxy_responses_total Responses sent, by status class.\n"
      "# TYPE mooncake_proxy_responses_total counter\n");
    for (int c = 1; c < 6; c++)
        P("mooncake_proxy_responses_total{code=\"%dxx\"} %llu\n", c,
          (unsigned long long)px->m_status[c]);
    P("# HELP mooncake_proxy_upstream_errors_total Failed upstream legs.\n"
      "# TYPE mooncake_proxy_upstream_errors_total counter\n"
      "mooncake_proxy_upstream_errors_total{leg=\"prefill\"} %llu\n"
      "mooncake_proxy_upstream_errors_total{leg=\"decode\"} %llu\n",
      (unsigned long long)px->m_upstream_err[0], (unsigned long long)px->m_upstream_err[1]);
    P("# HELP mooncake_proxy_client_disconnects_total Clients gone before their answer ended.\n"
      "# TYPE mooncake_proxy_client_disconnects_total counter\n"
      "mooncake_proxy_client_disconnects_total %llu\n",
      (unsigned long long)px->m_disconnects);
    P("# HELP mooncake_proxy_admin_requests_total Authorised admin requests.\n"
      "# TYPE mooncake_proxy_admin_requests_total counter\n"
      "mooncake_proxy_admin_requests_total{action=\"add\"} %llu\n"
      "mooncake_proxy_admin_requests_total{action=\"remove\"} %llu\n",
      (unsigned long long)px->m_admin[0], (unsigned long long)px->m_admin[1]);
    P("# HELP mooncake_proxy_inflight_requests Completion requests in progress.\n"
      "# TYPE mooncake_proxy_inflight_requests gauge\n"
      "mooncake_proxy_inflight_requests %u\n",
      px->m_inflight);
    P("# HELP mooncake_proxy_request_duration_seconds Time from request to last byte.\n"
      "# TYPE mooncake_proxy_request_duration_seconds summary\n"
      "mooncake_proxy_request_duration_seconds_sum %.6f\n"
      "mooncake_proxy_request_duration_seconds_count %llu\n",
      px->m_dur_sum, (unsigned long long)px->m_dur_count);
    P("# HELP mooncake_proxy_instance_healthy 1 when the instance is in rotation.\n"
      "# TYPE mooncake_proxy_instance_healthy gauge\n");
    for (int g = 0; g < 2; g++)
        for (int i = 0; i < px->ngrp[g]; i++)
            P("mooncake_proxy_instance_healthy{type=\"%s\",instance=\"%s\"} %d\n", group_name[g],
              px->grp[g][i]->name, inst_eligible(px, px->grp[g][i]));
    P("# HELP mooncake_proxy_instance_inflight Outstanding upstream requests per instance.\n"
      "# TYPE mooncake_proxy_instance_inflight gauge\n");
    for (int g = 0; g < 2; g++)
        for (int i = 0; i < px->ngrp[g]; i++)
            P("mooncake_proxy_instance_inflight{type=\"%s\",instance=\"%s\"} %u\n", group_name[g],
              px->grp[g][i]->name, px->grp[g][i]->inflight);
    P("# HELP mooncake_proxy_instance_requests_total Upstream requests per instance.\n"
      "# TYPE mooncake_proxy_instance_requests_total counter\n");
    for (int g = 0; g < 2; g++)
        for (int i = 0; i < px->ngrp[g]; i++)
            P("mooncake_proxy_instance_requests_total{type=\"%s\",instance=\"%s\"} %llu\n",
              group_name[g], px->grp[g][i]->name, (unsigned long long)px->grp[g][i]->total);
#undef P
    if (oom || buf_append(&b, "", 1) != 0) {
        buf_free(&b);
        return NULL;
    }
    return b.p;
}

static enum MHD_Result serve_get(mc_proxy_t *px, struct MHD_Connection *c, const char *url)
{
    char *s = NULL;
    int status = 200;
    const char *ct = "application/json";
    int ready = connector_ready(px) && pick_noadvance(px, 0) && pick_noadvance(px, 1);
    if (strcmp(url, "/health") == 0) {
        s = strdup(ready ? "{\"status\":\"ok\",\"ready\":true}"
                         : "{\"status\":\"ok\",\"ready\":false}");
    } else if (strcmp(url, "/healthcheck") == 0) {
        json_t *o = json_pack("{s:s, s:i, s:i}", "status", "ok", "prefill_instances", px->ngrp[0],
                              "decode_instances", px->ngrp[1]);
        s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
    } else if (strcmp(url, "/status") == 0) {
        s = status_json(px);
    } else if (strcmp(url, "/metrics") == 0) {
        s = metrics_text(px);
        ct = "text/plain; version=0.0.4";
    } else { /* /v1/models */
        if (px->models_json) {
            s = strdup(px->models_json);
        } else {
            status = 503;
            s = error_json(503, "service_unavailable", NULL, NULL,
                           "no instance has answered /v1/models yet");
        }
    }
    px->m_status[status / 100]++;
    enum MHD_Result r = queue_str(c, status, ct, s, NULL);
    free(s);
    return r;
}

/* ---------------------------------------------------------- MHD glue */

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    req_t *r = cls;
    leg_t *l = r->d;
    (void)pos;
    if (r->client_gone || !l) return MHD_CONTENT_READER_END_WITH_ERROR;
    size_t avail = l->resp.len - l->resp.off;
    if (avail) {
        size_t n = avail < max ? avail : max;
        memcpy(buf, l->resp.p + l->resp.off, n);
        l->resp.off += n;
        if (l->resp.off == l->resp.len) l->resp.off = l->resp.len = 0;
        if (l->paused && l->active && l->resp.len - l->resp.off < STREAM_HWM / 2) {
            l->paused = 0;
            r->px->kick = 1;
            MC_LOGD(TAG, "req %s: decode resumed", r->reqid);
            curl_easy_pause(l->easy, CURLPAUSE_CONT);
        }
        return (ssize_t)n;
    }
    if (!l->active) {
        if (l->rc == CURLE_OK && !l->cancelled) return MHD_CONTENT_READER_END_OF_STREAM;
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    MC_LOGD(TAG, "req %s: client stream suspended (nothing buffered)", r->reqid);
    r->suspended = 1;
    MHD_suspend_connection(r->conn);
    return 0;
}

static void stream_free(void *cls)
{
    req_unref(cls);
}

static enum MHD_Result queue_stream(req_t *r)
{
    leg_t *l = r->d;
    if (l && l->whole && !l->active) {
        int st = r->up_status >= 100 && r->up_status <= 599 ? (int)r->up_status : 200;
        struct MHD_Response *resp = MHD_create_response_from_buffer(
            l->resp.len - l->resp.off, l->resp.p ? l->resp.p + l->resp.off : (void *)"",
            MHD_RESPMEM_MUST_COPY);
        if (!resp) return MHD_NO;
        MHD_add_response_header(resp, "Content-Type",
                                r->up_ctype[0] ? r->up_ctype : "application/json");
        MHD_add_response_header(resp, "X-Request-Id", r->reqid);
        r->final_status = st;
        enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)st, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    uint64_t size = r->up_clen >= 0 ? (uint64_t)r->up_clen : MHD_SIZE_UNKNOWN;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(size, 32 * 1024, stream_reader, r, stream_free);
    if (!resp) return MHD_NO;
    req_ref(r);
    r->has_stream_resp = 1;
    MHD_add_response_header(resp, "Content-Type",
                            r->up_ctype[0] ? r->up_ctype : "application/json");
    MHD_add_response_header(resp, "X-Request-Id", r->reqid);
    if (strncmp(r->up_ctype, "text/event-stream", 17) == 0)
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
    int st = r->up_status >= 100 && r->up_status <= 599 ? (int)r->up_status : 200;
    r->final_status = st;
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)st, resp);
    MHD_destroy_response(resp);
    return ret;
}

static int route_of(const char *url, int *is_post)
{
    static const struct {
        const char *path;
        int post, route;
    } t[] = {
        {"/v1/completions", 1, R_COMPLETIONS},
        {"/v1/chat/completions", 1, R_CHAT},
        {"/instances/add", 1, R_ADD},
        {"/instances/remove", 1, R_REMOVE},
        {"/health", 0, -1},
        {"/healthcheck", 0, -1},
        {"/status", 0, -1},
        {"/metrics", 0, -1},
        {"/v1/models", 0, -1},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        if (strcmp(url, t[i].path) == 0) {
            *is_post = t[i].post;
            return t[i].route;
        }
    }
    *is_post = -1;
    return -1;
}

static void drain_curl(mc_proxy_t *px);

/* Runs the legs a request just started, before its connection would be
 * suspended: on loopback the upstream answer is often complete by the time
 * curl has sent the request and looked at the socket, and then the answer is
 * queued in the same MHD callback, which saves the suspend / resume round
 * (two epoll_ctl, a failed recv and a loop iteration). Toy and demo modes start
 * the decode leg when the prefill answers, hence the few rounds. */
static void run_new_legs(mc_proxy_t *px, req_t *r)
{
    for (int i = 0; i < 3; i++) {
        if (r->resp_status || r->stream_ready || r->client_gone) return;
        if (px->curl_due_ns > mc_now_ns()) return;
        int running;
        px->curl_due_ns = UINT64_MAX;
        curl_multi_socket_action(px->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        drain_curl(px);
    }
}

static enum MHD_Result ahc(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                           const char *version, const char *upload, size_t *upload_size,
                           void **con_cls)
{
    mc_proxy_t *px = cls;
    req_t *r = *con_cls;
    (void)version;
    if (!r) {
        int post;
        int route = route_of(url, &post);
        int is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
        if (post < 0) return queue_error(px, c, 404, "not_found", "no such endpoint");
        if (post == 0) {
            if (!is_get) return queue_error(px, c, 405, "method_not_allowed", "use GET");
            return serve_get(px, c, url);
        }
        if (strcmp(method, "POST") != 0)
            return queue_error(px, c, 405, "method_not_allowed", "use POST");
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > px->cfg.max_body)
            return queue_error(px, c, 413, "request_too_large", "request body too large");
        if (px->stop) return queue_error(px, c, 503, "service_unavailable", "shutting down");
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        r->px = px;
        r->conn = c;
        r->refs = 1;
        r->route = route;
        r->up_clen = -1;
        r->t0 = mc_now_ns();
        r->next = px->reqs;
        if (px->reqs) px->reqs->prev = r;
        px->reqs = r;
        px->m_inflight++;
        *con_cls = r;
        return MHD_YES;
    }
    if (r->state == RQ_READING) {
        if (*upload_size) {
            if (!r->too_big) {
                if (r->body.len + *upload_size > px->cfg.max_body) {
                    r->too_big = 1;
                    buf_free(&r->body);
                } else if (buf_append(&r->body, upload, *upload_size) != 0) {
                    return MHD_NO;
                }
            }
            *upload_size = 0;
            return MHD_YES;
        }
        r->state = RQ_STARTED;
        if (r->too_big)
            req_answer(r, 413,
                       error_json(413, "request_too_large", NULL, NULL,
                                  "request body larger than %zu bytes", px->cfg.max_body));
        else if (r->route == R_ADD || r->route == R_REMOVE)
            dispatch_admin(px, r);
        else
            dispatch_completion(px, r);
        run_new_legs(px, r);
    }
    if (r->client_gone) return MHD_NO;
    if (r->queued) return MHD_YES;
    if (r->resp_status) {
        r->queued = 1;
        r->final_status = r->resp_status;
        return queue_str(c, r->resp_status, "application/json", r->resp_json, r->reqid);
    }
    if (r->stream_ready) {
        r->queued = 1;
        return queue_stream(r);
    }
    r->suspended = 1;
    MHD_suspend_connection(c);
    return MHD_YES;
}

static void completed_cb(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    mc_proxy_t *px = cls;
    req_t *r = *con_cls;
    (void)c;
    if (!r) return;
    *con_cls = NULL;
    px->m_inflight--;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) {
        if (!r->client_gone && toe != MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN) px->m_disconnects++;
        if (!r->client_gone)
            MC_LOGD(TAG, "req %s: client connection ended early (%d)", r->reqid, (int)toe);
        r->client_gone = 1;
        req_cancel_legs(px, r);
    } else {
        int st = r->final_status;
        double dt = (double)(mc_now_ns() - r->t0) / 1e9;
        px->m_status[st >= 100 && st < 600 ? st / 100 : 5]++;
        px->m_dur_sum += dt;
        px->m_dur_count++;
        MC_LOGD(TAG, "req %s: %d in %.3f ms", r->reqid, st, dt * 1e3);
    }
    if (r->admin_inst) {
        r->admin_inst->admin_waiter = NULL;
        inst_maybe_free(px, r->admin_inst);
        r->admin_inst = NULL;
        req_unref(r); /* the waiter reference */
    }
    r->conn = NULL;
    r->suspended = 0;
    req_unref(r);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    (void)cls;
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = 0;
    MC_LOGW("mhd", "%s", msg);
}

/* ------------------------------------------------------------- loop */

/* Suspended connections are invisible to MHD; peek at their sockets so a client
 * that hung up cancels its upstream legs even while nothing is flowing. */
static void peek_suspended(mc_proxy_t *px)
{
    for (req_t *r = px->reqs, *nx; r; r = nx) {
        nx = r->next;
        if (!r->suspended || !r->conn || r->client_gone) continue;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!ci) continue;
        char ch;
        ssize_t n = recv(ci->connect_fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            MC_LOGI(TAG, "req %s: client went away, cancelling its upstream legs", r->reqid);
            px->m_disconnects++;
            r->client_gone = 1;
            req_ref(r);
            req_cancel_legs(px, r);
            req_resume(r);
            req_unref(r);
        }
    }
}

static void tick(mc_proxy_t *px)
{
    uint64_t now = mc_now_ms();
    if (now < px->next_tick_ms) return;
    px->next_tick_ms = now + 20;
    /* first-byte timeouts */
    for (leg_t *l = px->legs, *nx; l; l = nx) {
        nx = l->next;
        if (l->started || l->kind == LEG_PROBE || now < l->deadline_ms) continue;
        snprintf(l->err, sizeof l->err, "no answer within %d ms (first-byte timeout)",
                 px->cfg.first_byte_timeout_ms);
        l->rc = CURLE_OPERATION_TIMEDOUT;
        leg_finished(px, l);
        nx = px->legs; /* the list may have changed a lot; restart (rare) */
    }
    /* health checks */
    for (int g = 0; g < 2; g++) {
        for (int i = 0; i < px->ngrp[g]; i++) {
            inst_t *in = px->grp[g][i];
            if (in->probe || in->removed || now < in->next_check_ms) continue;
            probe_start(px, in, in->admitted ? STEP_HEALTH : STEP_MODELS);
            in->next_check_ms = now + (uint64_t)px->cfg.health_interval_ms;
        }
    }
    if (now >= px->next_peek_ms) {
        px->next_peek_ms = now + 200;
        peek_suspended(px);
    }
}

static void drain_curl(mc_proxy_t *px)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(px->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        leg_t *l = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&l);
        if (!l) continue;
        l->rc = m->data.result;
        if (l->rc != CURLE_OK && !l->err[0])
            snprintf(l->err, sizeof l->err, "%s", curl_easy_strerror(l->rc));
        leg_finished(px, l);
    }
}

/* curl tells us which sockets to watch; they share one epoll set with MHD's own
 * epoll fd, so a loop iteration costs one epoll_wait and touches only what is ready. */
static int curl_sock_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *sockp)
{
    mc_proxy_t *px = userp;
    (void)e;
    struct epoll_event ev = {.events = 0, .data.fd = fd};
    if (what == CURL_POLL_REMOVE) {
        if (sockp) epoll_ctl(px->ep, EPOLL_CTL_DEL, fd, NULL);
        curl_multi_assign(px->multi, fd, NULL);
        return 0;
    }
    if (what & CURL_POLL_IN) ev.events |= EPOLLIN;
    if (what & CURL_POLL_OUT) ev.events |= EPOLLOUT;
    if (epoll_ctl(px->ep, sockp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) != 0 && errno == ENOENT)
        epoll_ctl(px->ep, EPOLL_CTL_ADD, fd, &ev);
    if (!sockp) curl_multi_assign(px->multi, fd, (void *)1);
    return 0;
}

static int curl_timer_cb(CURLM *m, long timeout_ms, void *userp)
{
    mc_proxy_t *px = userp;
    (void)m;
    px->curl_due_ns = timeout_ms < 0 ? UINT64_MAX : mc_now_ns() + (uint64_t)timeout_ms * 1000000u;
    return 0;
}

/* One loop iteration: wait at most max_ms, then serve MHD and curl. */
static void loop_once(mc_proxy_t *px, int max_ms)
{
    struct epoll_event evs[64];
    MHD_UNSIGNED_LONG_LONG mt;
    int to = px->kick ? 0 : max_ms;
    int mhd_now = 0;
    px->kick = 0;
    if (MHD_get_timeout(px->mhd, &mt) == MHD_YES && mt < (MHD_UNSIGNED_LONG_LONG)to) to = (int)mt;
    uint64_t now = mc_now_ns();
    if (px->curl_due_ns != UINT64_MAX) {
        uint64_t left = px->curl_due_ns > now ? (px->curl_due_ns - now + 999999) / 1000000 : 0;
        if (left < (uint64_t)to) to = (int)left;
    }
    int n = epoll_wait(px->ep, evs, 64, to);
    int running;
    for (int i = 0; i < n; i++) {
        int fd = evs[i].data.fd;
        if (fd == px->epfd) {
            mhd_now = 1;
            continue;
        }
        int fl = 0;
        if (evs[i].events & (EPOLLIN | EPOLLHUP)) fl |= CURL_CSELECT_IN;
        if (evs[i].events & EPOLLOUT) fl |= CURL_CSELECT_OUT;
        if (evs[i].events & EPOLLERR) fl |= CURL_CSELECT_ERR;
        curl_multi_socket_action(px->multi, fd, fl, &running);
    }
    if (mhd_now || to == 0 || n == 0) MHD_run(px->mhd);
    if (px->curl_due_ns != UINT64_MAX && mc_now_ns() >= px->curl_due_ns) {
        px->curl_due_ns = UINT64_MAX;
        curl_multi_socket_action(px->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    drain_curl(px);
}

int mc_proxy_run(mc_proxy_t *px)
{
    while (!px->stop) {
        loop_once(px, 50);
        tick(px);
    }
    /* Shutdown: cancel every leg, wake every suspended client so MHD closes it. */
    for (req_t *r = px->reqs; r; r = r->next) {
        r->client_gone = 1;
    }
    for (req_t *r = px->reqs, *nx; r; r = nx) {
        req_ref(r);
        req_cancel_legs(px, r);
        req_resume(r);
        nx = r->next;
        req_unref(r);
    }
    for (int i = 0; i < 20 && px->reqs; i++)
        loop_once(px, 5);
    return 0;
}

void mc_proxy_stop(mc_proxy_t *px)
{
    px->stop = 1;
}

uint16_t mc_proxy_port(const mc_proxy_t *px)
{
    return px->port;
}

int mc_proxy_new(const mc_proxy_config_t *cfg, mc_proxy_t **out)
{
    int rc = -ENOMEM;
    struct addrinfo hints = {.ai_flags = AI_PASSIVE | AI_NUMERICSERV, .ai_socktype = SOCK_STREAM},
                    *ai = NULL;
    mc_proxy_t *px = calloc(1, sizeof *px);
    if (!px) return -ENOMEM;
    px->cfg = *cfg;
    /* The front's total is --max-connections; per-IP and idle from MC_HTTP_*.
     * A longer idle timeout than the daemons' internal ports: clients of an
     * OpenAI endpoint may pause reading a stream; one waiting for its upstream
     * is suspended and never timed out (net_http.h). */
    mc_http_listener_init(&px->http, TAG, (unsigned)cfg->max_conns, MC_PROXY_PER_IP_DEFAULT,
                          MC_PROXY_IDLE_TIMEOUT_DEFAULT_S);
    px->http.max_conns = (unsigned)cfg->max_conns; /* the flag, not MC_HTTP_MAX_CONNECTIONS */
    px->epfd = -1;
    px->ep = -1;
    px->curl_due_ns = UINT64_MAX;
    const char *k = getenv("ADMIN_API_KEY");
    if (k && *k) px->admin_key = strdup(k);
    k = getenv("OPENAI_API_KEY");
    if (k && *k) px->openai_key = strdup(k);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) goto fail;
    px->multi = curl_multi_init();
    if (!px->multi) goto fail;
    curl_multi_setopt(px->multi, CURLMOPT_MAXCONNECTS, 1024L);
    px->ep = epoll_create1(EPOLL_CLOEXEC);
    if (px->ep < 0) {
        rc = -errno;
        goto fail;
    }
    curl_multi_setopt(px->multi, CURLMOPT_SOCKETFUNCTION, curl_sock_cb);
    curl_multi_setopt(px->multi, CURLMOPT_SOCKETDATA, px);
    curl_multi_setopt(px->multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
    curl_multi_setopt(px->multi, CURLMOPT_TIMERDATA, px);

    for (int g = 0; g < 2; g++)
        for (int i = 0; i < cfg->n_inst[g]; i++)
            if (!inst_add(px, g, cfg->inst[g][i].url, cfg->inst[g][i].bootstrap_port, 1)) {
                MC_LOGE(TAG, "bad instance URL %s", cfg->inst[g][i].url);
                rc = -EINVAL;
                goto fail;
            }

    char port[8];
    snprintf(port, sizeof port, "%u", cfg->port);
    const char *host = cfg->host[0] ? cfg->host : NULL;
    if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai) {
        MC_LOGE(TAG, "cannot resolve listen address %s", cfg->host);
        rc = -EINVAL;
        goto fail;
    }
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    const struct MHD_OptionItem opts[] = {
        {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, px},
        {MHD_OPTION_SOCK_ADDR, 0, ai->ai_addr},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)completed_cb, px},
        {MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    px->mhd = mc_http_listener_start(&px->http, flags, cfg->port, ahc, px, opts);
    freeaddrinfo(ai);
    if (!px->mhd) {
        MC_LOGE(TAG, "cannot listen on %s:%u", cfg->host, cfg->port);
        rc = -EADDRINUSE;
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(px->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (!di) {
        rc = -EIO;
        goto fail;
    }
    px->epfd = di->epoll_fd;
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = px->epfd};
    if (epoll_ctl(px->ep, EPOLL_CTL_ADD, px->epfd, &ev) != 0) {
        rc = -errno;
        goto fail;
    }
    di = MHD_get_daemon_info(px->mhd, MHD_DAEMON_INFO_BIND_PORT);
    px->port = di ? di->port : cfg->port;
    *out = px;
    return 0;
fail:
    mc_proxy_free(px);
    return rc;
}

void mc_proxy_free(mc_proxy_t *px)
{
    if (!px) return;
    mc_http_listener_stop(&px->http); /* runs completed_cb for what is left */
    px->mhd = NULL;
    while (px->legs) {
        leg_t *l = px->legs;
        if (l->req) req_ref(l->req);
        req_t *r = l->req;
        leg_cancel(px, l);
        if (r) req_unref(r);
    }
    while (px->all) {
        inst_t *in = px->all;
        px->all = in->next_all;
        inst_free(in);
    }
    free(px->grp[0]);
    free(px->grp[1]);
    while (px->n_easy > 0)
        curl_easy_cleanup(px->easy_pool[--px->n_easy]);
    if (px->multi) curl_multi_cleanup(px->multi);
    if (px->ep >= 0) close(px->ep);
    curl_global_cleanup();
    free(px->admin_key);
    free(px->openai_key);
    free(px->models_json);
    free(px);
}
