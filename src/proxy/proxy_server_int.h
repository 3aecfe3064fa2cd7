/* Internals shared by the proxy's event-loop files: proxy_server.c (the MHD
 * front, the loop, start and stop), proxy_legs.c (instances, upstream legs,
 * health checks, the completion flow) and proxy_admin.c (the admin API and
 * the GET endpoints). Thread rule: everything here runs on the proxy's one
 * loop thread (mc_proxy_run), so nothing is locked.
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
#ifndef MC_PROXY_SERVER_INT_H
#define MC_PROXY_SERVER_INT_H
#include <curl/curl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "net_http.h"
#include "proxy.h"
#include "proxy_int.h"

#define TAG "proxy"
#define STREAM_HWM (256u << 10) /* pause the upstream above this many buffered bytes */
#define PREFILL_MAX (8u << 20)  /* largest prefill answer we keep (toy/demo modes) */
#define PROBE_MAX (1u << 20)    /* largest /v1/models or /query answer */
#define WHOLE_MAX (1u << 20)    /* non-SSE decode answers up to this size are sent whole */
#define ERR_KEEP (4u << 10)     /* bytes of a decode leg's 5xx body kept for the 502 */
#define MAX_INST_PER_GROUP 1024
#define MC_PROXY_SLOTS 64         /* prefill instances the prefix index can tell apart */
#define MC_PROXY_BLOCK_BYTES 64   /* prompt bytes per prefix block */
#define MC_PROXY_MAX_BLOCKS 4096  /* blocks of a prompt looked at (256 KiB) */
#define MC_PROXY_RING 32          /* recent routing decisions kept for /status */
#define MC_PROXY_MAX_PROMPT_TOKENS (1u << 17) /* token ids of a prompt the event index reads */

enum { ST_CHECKING = 0, ST_HEALTHY, ST_UNHEALTHY };
enum { LEG_PREFILL = 0, LEG_DECODE = 1, LEG_PROBE = 2, LEG_TOKENIZE = 3 };
/* What became of a /tokenize call (proxy_tokenize.c; the result label of its metric). */
enum { TK_OK = 0, TK_FAILED, TK_UNSUPPORTED, TK_N };
enum { STEP_MODELS = 0, STEP_QUERY, STEP_HEALTH, STEP_METRICS };
enum { RQ_READING = 0, RQ_STARTED };
enum { R_COMPLETIONS = 0, R_CHAT, R_ADD, R_REMOVE };

typedef struct {
    char *p;
    size_t len, off, cap;
} buf_t;

/* Why an instance was picked (the reason label of the route metrics). */
enum {
    RS_RR = 0,
    RS_LEAST_LOADED,
    RS_LEAST_TOKENS,
    RS_CACHE_HIT,
    RS_CACHE_MISS,
    RS_LOAD_IMBALANCE,
    RS_N
};

typedef struct {
    uint64_t t_ms;
    int group, reason, match_blocks, prompt_blocks;
    int match_tokens, from_events; /* the compared match (estimated tokens) and its source */
    unsigned load;
    uint64_t tokens;
    char reqid[130];
    char inst[300];
} mc__proxy_decision_t;

typedef struct mc__proxy_route mc__proxy_route_t;
typedef struct mc__proxy_kvidx mc__proxy_kvidx_t; /* proxy_kvev.c: the precise index */
typedef struct mc__proxy_kvsub mc__proxy_kvsub_t; /* one instance's event subscription */
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
    uint64_t out_tokens; /* estimated tokens of the legs in flight */
    uint64_t total, failures;
    unsigned fail_streak; /* consecutive failures (checks and unreachable legs) */
    int circuit_open;     /* fail_streak reached --circuit-failures: checks back off */
    uint64_t backoff_ms;
    int slot;              /* bit of the prefix index (prefill group), -1 = none */
    uint64_t cache_blocks; /* prefix blocks the index attributes to this instance */
    mc__proxy_kvsub_t *kv;  /* its vLLM KV events (--kv-events), or NULL */
    int no_tokenize;        /* its POST /tokenize answered 404/405: not asked again */
    int tokenize_warned;    /* a failed /tokenize was logged (until one succeeds) */
    int engine_load_known; /* its /metrics gave vLLM's queue (cache_aware) */
    unsigned eng_running, eng_waiting;
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
    int failed;  /* decode: a 5xx answer, kept (bounded) for the 502 instead of relayed */
    int retried; /* completion legs are retried once elsewhere when the connect failed */
    uint32_t tokens; /* estimated tokens, counted in inst->out_tokens while in flight */
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
    uint32_t tok_prefill, tok_decode; /* token estimates of the legs */
    uint64_t *hashes;                 /* chained prefix block hashes (cache_aware) */
    int n_hashes;
    uint32_t *toks;                   /* the prompt's token ids, when it is a list of them */
    uint32_t n_toks;                  /* (only while --kv-events subscriptions exist) */
    int prefill_tries;                /* prefill legs started again after a failure */
    int tokenized;                    /* its /tokenize leg was started (once per request) */
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
    mc__proxy_route_t *route;
    mc__proxy_kvidx_t *kv; /* NULL without --kv-events */
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
    uint64_t m_tokenize[TK_N];
    double m_dur_sum;
    unsigned m_inflight;
};

extern const char *const mc__proxy_group_name[2]; /* "prefill", "decode" */

/* ---- proxy_legs.c: buffers and JSON answers */

/* Appends n bytes (compacting or growing the buffer); 0 or -ENOMEM. */
int mc__proxy_buf_append(buf_t *b, const void *data, size_t n);
/* Appends printf output; 0, -EINVAL or -ENOMEM. */
int mc__proxy_buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mc__proxy_buf_free(buf_t *b);
/* {"error": {"message", "type", "code"[, "leg"][, "instance"]}} as a malloc'd
 * string (NULL when out of memory). */
char *mc__proxy_error_json(int status, const char *type, const char *leg, const char *instance,
                           const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* ---- proxy_legs.c: instances */

void mc__proxy_inst_free(inst_t *in);
/* Frees a removed instance once nothing refers to it any more. */
void mc__proxy_inst_maybe_free(mc_proxy_t *px, inst_t *in);
void mc__proxy_group_del(mc_proxy_t *px, inst_t *in);
inst_t *mc__proxy_group_find(mc_proxy_t *px, int g, const char *name);
/* Creates an instance from a base URL and appends it to group g (state
 * CHECKING). NULL on a malformed URL, a full group or allocation failure. */
inst_t *mc__proxy_inst_add(mc_proxy_t *px, int g, const char *url, uint16_t boot, int from_cli);
int mc__proxy_inst_eligible(const mc_proxy_t *px, const inst_t *in);
/* 1 when group g has an eligible instance (the round-robin cursor is kept). */
int mc__proxy_pick_noadvance(mc_proxy_t *px, int g);
/* Connector mode serves only once every prefiller of the command line is known. */
int mc__proxy_connector_ready(mc_proxy_t *px);

/* ---- proxy_legs.c: requests, legs, probes, the completion flow */

void mc__proxy_req_ref(req_t *r);
void mc__proxy_req_unref(req_t *r);
/* Resumes r's connection if it is suspended. */
void mc__proxy_req_resume(req_t *r);
/* Cancels a running leg (client gone, sibling failed, shutdown): no callbacks run. */
void mc__proxy_leg_cancel(mc_proxy_t *px, leg_t *l);
void mc__proxy_req_cancel_legs(mc_proxy_t *px, req_t *r);
/* Sets the JSON answer of a request that has not answered yet, cancels its
 * legs and wakes its connection. Takes ownership of json (NULL = OOM). */
void mc__proxy_req_answer(req_t *r, int status, char *json);
/* Called for every leg curl reports done (and for legs the loop times out). */
void mc__proxy_leg_finished(mc_proxy_t *px, leg_t *l);
/* Starts health-check step `step` of an instance; 0 or -ENOMEM. */
int mc__proxy_probe_start(mc_proxy_t *px, inst_t *in, int step);
/* Answers the admin request waiting on in's first check (ok or not). */
void mc__proxy_admin_reply(mc_proxy_t *px, inst_t *in, int ok);
/* Body complete: parse, rewrite and start the legs, or answer an error. */
void mc__proxy_dispatch_completion(mc_proxy_t *px, req_t *r);
/* Starts a POST leg of kind to in's base URL + path for r, as r->p (body owned,
 * freed on failure; timeout_ms 0: none). 0 or -ENOMEM. */
int mc__proxy_leg_start_post(mc_proxy_t *px, int kind, req_t *r, inst_t *in, const char *path,
                             char *body, size_t len, long timeout_ms);

/* ---- proxy_tokenize.c: token ids of text prompts from a prefiller's /tokenize */

/* Starts r's /tokenize leg when cache_aware could match its text prompt against
 * KV events; 0 when started (mc__proxy_leg_finished routes r when it ends),
 * -1 when r is to be routed now. */
int mc__proxy_tokenize_start(mc_proxy_t *px, req_t *r);
/* The tokenize leg l ended (detached): its tokens into l->req, or why not. */
void mc__proxy_tokenize_finished(mc_proxy_t *px, leg_t *l);

/* ---- proxy_admin.c */

/* POST /instances/add and /instances/remove (body complete). */
void mc__proxy_dispatch_admin(mc_proxy_t *px, req_t *r);
/* GET /health, /healthcheck, /status, /metrics, /v1/models. */
enum MHD_Result mc__proxy_serve_get(mc_proxy_t *px, struct MHD_Connection *c, const char *url);

/* ---- proxy_route.c: policies, the prefix index, circuit breaker, decisions */

extern const char *const mc__proxy_sched_name[MC_PROXY_N_SCHED];
int mc__proxy_route_init(mc_proxy_t *px);
void mc__proxy_route_free(mc_proxy_t *px);
/* A new instance (takes a prefix-index slot in the prefill group). */
void mc__proxy_route_inst_added(mc_proxy_t *px, inst_t *in);
/* An instance leaves its group: its slot and its index bits are dropped. */
void mc__proxy_route_inst_removed(mc_proxy_t *px, inst_t *in);
/* Reads what routing needs from r->json: token estimates, prefix block hashes. */
void mc__proxy_route_prepare(mc_proxy_t *px, req_t *r);
/* Picks an eligible instance of group g other than avoid by the configured
 * policy, or NULL. With r (a completion) the pick is recorded and, for
 * cache_aware prefill, the prompt's blocks are attributed to the instance. */
inst_t *mc__proxy_pick(mc_proxy_t *px, int g, req_t *r, const inst_t *avoid);
/* The load cache_aware and least_loaded compare: outstanding requests. */
unsigned mc__proxy_inst_load(const inst_t *in);
/* A failure of in (from_check: its health check; else a leg that could not reach
 * it): out of rotation, and the circuit opens after --circuit-failures in a row. */
void mc__proxy_inst_failed(mc_proxy_t *px, inst_t *in, const char *why, int from_check);
/* A passed check: the failure streak ends, the circuit closes. */
void mc__proxy_inst_passed(mc_proxy_t *px, inst_t *in);
void mc__proxy_route_count_retry(mc_proxy_t *px);
/* Adds per-instance routing fields to an instance's /status object. */
void mc__proxy_route_inst_json(const mc_proxy_t *px, const inst_t *in, json_t *o);
/* {"cache_aware": {...}, "recent_decisions": [...]} (new reference). */
json_t *mc__proxy_route_status(const mc_proxy_t *px);
/* Appends the route metrics; 0 or -ENOMEM. */
int mc__proxy_route_metrics(const mc_proxy_t *px, buf_t *b);

/* ---- proxy_kvev.c: vLLM KV events, the precise prefix index (stubs without libzmq) */

/* Creates the index when --kv-events was given (or force: the admin API's first
 * "kv_events"); 0, -ENOMEM or -ENOTSUP (built without libzmq/msgpack-c). */
int mc__proxy_kvev_init(mc_proxy_t *px, int force);
void mc__proxy_kvev_free(mc_proxy_t *px);
/* Subscribes to endpoint for prefill instance in (which has a slot); 0 or -EINVAL. */
int mc__proxy_kvev_attach(mc_proxy_t *px, inst_t *in, const char *endpoint);
/* A new prefill instance: subscribes when --kv-events names it. */
void mc__proxy_kvev_inst_added(mc_proxy_t *px, inst_t *in);
/* Closes in's subscription and forgets its blocks. */
void mc__proxy_kvev_inst_removed(mc_proxy_t *px, inst_t *in);
/* 1 when fd (from the loop's epoll set) is a subscription's ZMQ_FD. */
int mc__proxy_kvev_owns(const mc_proxy_t *px, int fd);
/* Applies every event waiting on every subscription (non-blocking, bounded). */
void mc__proxy_kvev_poll(mc_proxy_t *px);
/* 1 when in publishes events and its block size is known. */
int mc__proxy_kvev_live(const inst_t *in);
/* Copies a "prompt" that is a list of token ids into r->toks; 0 or -ENOMEM. */
int mc__proxy_kvev_prepare(mc_proxy_t *px, req_t *r);
/* ptok[slot] = prompt tokens held by the instance in that slot per its events,
 * -1 for slots without live events. Returns 1 when any slot was matched. */
int mc__proxy_kvev_match(mc_proxy_t *px, const req_t *r, int ptok[MC_PROXY_SLOTS]);
void mc__proxy_kvev_inst_json(const mc_proxy_t *px, const inst_t *in, json_t *o);
int mc__proxy_kvev_metrics(const mc_proxy_t *px, buf_t *b);

/* ---- proxy_server.c */

/* Queues s (copied; NULL = an out-of-memory 500) with status and Content-Type. */
enum MHD_Result mc__proxy_queue_str(struct MHD_Connection *c, int status, const char *ctype,
                                    const char *s, const char *reqid);
#endif
