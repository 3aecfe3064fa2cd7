/* proxy_legs.c: the proxy's upstream side (proxy_server_int.h has the
 * request states): the instance groups and the scheduling policy, the libcurl
 * legs of a completion (prefill, decode) and of health checks, and the
 * completion flow that turns their outcomes into the client's answer. Runs on
 * the loop thread; curl callbacks (write_cb, hdr_cb) run inside
 * curl_multi_socket_action there too. */
#include "proxy_server_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base_log.h"
#include "base_time.h"

const char *const mc__proxy_group_name[2] = {"prefill", "decode"};

/* ------------------------------------------------------------------ buffers */

int mc__proxy_buf_append(buf_t *b, const void *data, size_t n)
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
int mc__proxy_buf_printf(buf_t *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return -EINVAL;
    if ((size_t)n < sizeof tmp) return mc__proxy_buf_append(b, tmp, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big) return -ENOMEM;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rc = mc__proxy_buf_append(b, big, (size_t)n);
    free(big);
    return rc;
}

void mc__proxy_buf_free(buf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* -------------------------------------------------------- JSON answers */

char *mc__proxy_error_json(int status, const char *type, const char *leg, const char *instance,
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

/* ------------------------------------------------------------ instances */

void mc__proxy_inst_free(inst_t *in)
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
void mc__proxy_inst_maybe_free(mc_proxy_t *px, inst_t *in)
{
    if (in->removed && in->inflight == 0 && !in->probe && !in->admin_waiter) {
        inst_unlink_all(px, in);
        mc__proxy_inst_free(in);
    }
}

void mc__proxy_group_del(mc_proxy_t *px, inst_t *in)
{
    int g = in->group;
    mc__proxy_route_inst_removed(px, in);
    for (int i = 0; i < px->ngrp[g]; i++) {
        if (px->grp[g][i] == in) {
            memmove(&px->grp[g][i], &px->grp[g][i + 1],
                    (size_t)(px->ngrp[g] - i - 1) * sizeof(inst_t *));
            px->ngrp[g]--;
            return;
        }
    }
}

inst_t *mc__proxy_group_find(mc_proxy_t *px, int g, const char *name)
{
    for (int i = 0; i < px->ngrp[g]; i++)
        if (strcmp(px->grp[g][i]->name, name) == 0) return px->grp[g][i];
    return NULL;
}

/* Creates an instance from a base URL and appends it to group g (state CHECKING).
 * Returns NULL on a malformed URL, a full group or allocation failure. */
inst_t *mc__proxy_inst_add(mc_proxy_t *px, int g, const char *url, uint16_t boot, int from_cli)
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
    mc__proxy_route_inst_added(px, in);
    return in;
fail:
    free(in);
    return NULL;
}

int mc__proxy_inst_eligible(const mc_proxy_t *px, const inst_t *in)
{
    if (in->state != ST_HEALTHY || in->removed) return 0;
    if (px->cfg.mode == MC_PROXY_MODE_CONNECTOR && in->group == MC_PROXY_PREFILL)
        return in->n_dp > 0;
    return 1;
}

static inst_t *pick(mc_proxy_t *px, int g)
{
    return mc__proxy_pick(px, g, NULL, NULL);
}

int mc__proxy_pick_noadvance(mc_proxy_t *px, int g)
{
    unsigned save = px->rr[g];
    int ok = pick(px, g) != NULL;
    px->rr[g] = save;
    return ok;
}

/* Connector mode serves only once every prefiller of the command line is known. */
int mc__proxy_connector_ready(mc_proxy_t *px)
{
    if (px->cfg.mode != MC_PROXY_MODE_CONNECTOR) return 1;
    for (int i = 0; i < px->ngrp[0]; i++) {
        inst_t *in = px->grp[0][i];
        if (in->from_cli && in->n_dp == 0) return 0;
    }
    return 1;
}

/* ------------------------------------------------------------ requests */

void mc__proxy_req_ref(req_t *r)
{
    r->refs++;
}

static void leg_free(leg_t *l)
{
    if (!l) return;
    if (l->active) abort(); /* memory-safety invariant: never free a running leg */
    curl_slist_free_all(l->hdrs);
    free(l->body);
    mc__proxy_buf_free(&l->resp);
    free(l);
}

void mc__proxy_req_unref(req_t *r)
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
    mc__proxy_buf_free(&r->body);
    json_decref(r->json);
    free(r->hashes);
    free(r->toks);
    free(r->auth);
    free(r->resp_json);
    free(r);
}

void mc__proxy_req_resume(req_t *r)
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
    if (r) mc__proxy_req_ref(r);
    if (in) {
        if (kind == LEG_PROBE) {
            in->probe = l;
        } else if (kind != LEG_TOKENIZE) { /* a tokenize leg is not load */
            in->inflight++;
            in->total++;
            if (r) {
                l->tokens = kind == LEG_PREFILL ? r->tok_prefill : r->tok_decode;
                in->out_tokens += l->tokens;
            }
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
        if (l->kind == LEG_PROBE) {
            in->probe = NULL;
        } else if (l->kind != LEG_TOKENIZE) {
            in->inflight--;
            in->out_tokens -= l->tokens;
        }
    }
}

/* Cancels a running leg (client gone, sibling failed, shutdown): no callbacks run. */
void mc__proxy_leg_cancel(mc_proxy_t *px, leg_t *l)
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
    if (in) mc__proxy_inst_maybe_free(px, in);
    if (r) mc__proxy_req_unref(r);
}

void mc__proxy_req_cancel_legs(mc_proxy_t *px, req_t *r)
{
    mc__proxy_req_ref(r);
    mc__proxy_leg_cancel(px, r->p);
    mc__proxy_leg_cancel(px, r->d);
    mc__proxy_req_unref(r);
}

/* Sets the JSON answer of a request that has not answered yet, cancels its legs
 * and wakes its connection. Takes ownership of json (may be NULL = OOM). */
void mc__proxy_req_answer(req_t *r, int status, char *json)
{
    if (r->queued || r->resp_status || r->stream_ready || r->client_gone) {
        free(json);
        return;
    }
    r->resp_status = status;
    r->resp_json = json;
    mc__proxy_req_cancel_legs(r->px, r);
    mc__proxy_req_resume(r);
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

/* Starts a POST leg of request r to in's base URL + path with body (owned) and
 * the standard headers; NULL (body freed) on failure. */
static leg_t *leg_post(mc_proxy_t *px, int kind, req_t *r, inst_t *in, const char *path,
                       char *body, size_t len, int dp_rank, long timeout_ms)
{
    char url[400];
    snprintf(url, sizeof url, "%s%s", in->base, path);
    struct curl_slist *h = leg_headers(r, dp_rank);
    if (!h) {
        free(body);
        return NULL;
    }
    return leg_start(px, kind, r, in, url, body, len, h, timeout_ms);
}

/* Starts a completion leg of request r to instance in with body (owned). 0 or -ENOMEM. */
static int start_completion_leg(mc_proxy_t *px, req_t *r, int kind, inst_t *in, char *body,
                                size_t len, int dp_rank)
{
    leg_t *l = leg_post(px, kind, r, in, route_path(r->route), body, len, dp_rank, 0);
    if (!l) return -ENOMEM;
    if (kind == LEG_PREFILL)
        r->p = l;
    else
        r->d = l;
    return 0;
}

int mc__proxy_leg_start_post(mc_proxy_t *px, int kind, req_t *r, inst_t *in, const char *path,
                             char *body, size_t len, long timeout_ms)
{
    leg_t *l = leg_post(px, kind, r, in, path, body, len, -1, timeout_ms);
    if (!l) return -ENOMEM;
    r->p = l;
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
            /* A 5xx is the backend's failure, not an answer: it becomes our 502
             * (decode_finished). A JSON answer of known, modest size goes out in
             * one piece once complete (one send instead of headers + body);
             * anything else streams as it comes. */
            if (st >= 500)
                l->failed = 1;
            else if (cl >= 0 && cl <= (curl_off_t)WHOLE_MAX &&
                     strncmp(r->up_ctype, "text/event-stream", 17))
                l->whole = 1;
            else
                r->stream_ready = 1;
        }
        if (l->failed) { /* keep the start of the body for the message, drop the rest */
            size_t keep = l->resp.len < ERR_KEEP ? ERR_KEEP - l->resp.len : 0;
            if (keep && mc__proxy_buf_append(&l->resp, ptr, len < keep ? len : keep) != 0) return 0;
            return len;
        }
        if (l->whole) return mc__proxy_buf_append(&l->resp, ptr, len) == 0 ? len : 0;
        if (l->resp.len - l->resp.off >= STREAM_HWM) {
            MC_LOGD(TAG, "req %s: decode paused (%zu buffered)", r->reqid,
                    l->resp.len - l->resp.off);
            l->paused = 1;
            return CURL_WRITEFUNC_PAUSE;
        }
        if (mc__proxy_buf_append(&l->resp, ptr, len) != 0) return 0;
        mc__proxy_req_resume(r);
        return len;
    }
    if (l->kind == LEG_PREFILL && r && r->px->cfg.mode == MC_PROXY_MODE_CONNECTOR) {
        /* Fire-and-forget: the connector's prefill answer is not needed, unless
         * it is an error, which the client may get (prefill_finished). */
        long st = 0;
        curl_easy_getinfo(l->easy, CURLINFO_RESPONSE_CODE, &st);
        if (st < 400) return len;
    }
    if (l->resp.len + len > l->resp_limit) {
        snprintf(l->err, sizeof l->err, "answer larger than %zu bytes", l->resp_limit);
        return 0;
    }
    if (mc__proxy_buf_append(&l->resp, ptr, len) != 0) return 0;
    return len;
}

/* ------------------------------------------------------------- probes */

int mc__proxy_probe_start(mc_proxy_t *px, inst_t *in, int step)
{
    char url[400];
    if (step == STEP_QUERY)
        snprintf(url, sizeof url, "http://%s%s%s:%u/query", strchr(in->host, ':') ? "[" : "",
                 in->host, strchr(in->host, ':') ? "]" : "", in->boot_port);
    else
        snprintf(url, sizeof url, "%s%s", in->base,
                 step == STEP_MODELS    ? "/v1/models"
                 : step == STEP_METRICS ? "/metrics"
                                        : "/health");
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

void mc__proxy_admin_reply(mc_proxy_t *px, inst_t *in, int ok)
{
    req_t *r = in->admin_waiter;
    if (!r) return;
    in->admin_waiter = NULL;
    r->admin_inst = NULL;
    char *s;
    if (ok) {
        json_t *o = json_pack("{s:s, s:s, s:s}", "message", "", "type",
                              mc__proxy_group_name[in->group], "instance", in->name);
        char msg[400];
        snprintf(msg, sizeof msg, "Added %s to %s_instances.", in->name,
                 mc__proxy_group_name[in->group]);
        if (o) json_object_set_new(o, "message", json_string(msg));
        s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        mc__proxy_req_answer(r, 200, s);
    } else {
        s = mc__proxy_error_json(400, "invalid_request_error", NULL, in->name,
                                 "instance %s failed its check: %s", in->name, in->last_error);
        mc__proxy_req_answer(r, 400, s);
    }
    mc__proxy_req_unref(r); /* the waiter reference */
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
    /* cache_aware weighs vLLM's own queue: read after every passed health check */
    int want_load = px->cfg.sched == MC_PROXY_SCHED_CACHE_AWARE && in->admitted;
    if (l->step == STEP_METRICS) { /* optional: an engine without it is not unhealthy */
        unsigned run = 0, wait = 0;
        in->engine_load_known =
            ok && mc__proxy_parse_engine_load(l->resp.p ? l->resp.p : "", l->resp.len, &run,
                                              &wait) == 0;
        in->eng_running = in->engine_load_known ? run : 0;
        in->eng_waiting = in->engine_load_known ? wait : 0;
        ok = 1;
    }

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
    } else if (ok && l->step == STEP_HEALTH && want_load) {
        next = STEP_METRICS;
    }
    if (ok && l->step == STEP_QUERY && want_load) next = STEP_METRICS;

    leg_free(l); /* detached already */
    if (in->removed) {
        mc__proxy_inst_maybe_free(px, in);
        return;
    }
    uint64_t now = mc_now_ms();
    if (ok && next >= 0) {
        if (mc__proxy_probe_start(px, in, next) == 0) return;
        ok = 0;
        snprintf(why, sizeof why, "out of memory");
    }
    int iv = px->cfg.health_interval_ms;
    if (ok) {
        if (in->state != ST_HEALTHY)
            MC_LOGI(TAG, "%s instance %s is healthy%s", mc__proxy_group_name[in->group], in->name,
                    in->n_dp ? " (engine ids known)" : "");
        in->state = ST_HEALTHY;
        in->admitted = 1;
        in->last_error[0] = 0;
        in->next_check_ms = now + (uint64_t)iv;
        mc__proxy_inst_passed(px, in);
        mc__proxy_admin_reply(px, in, 1);
        return;
    }
    if (in->state == ST_HEALTHY)
        MC_LOGW(TAG, "%s instance %s failed its health check: %s", mc__proxy_group_name[in->group],
                in->name, why);
    else
        snprintf(in->last_error, sizeof in->last_error, "%.199s", why);
    mc__proxy_inst_failed(px, in, why, 1);
    if (in->admin_waiter || (!in->admitted && !in->from_cli)) {
        /* An admin add that fails its check is not added. */
        MC_LOGW(TAG, "admin: %s instance %s rejected: %s", mc__proxy_group_name[in->group],
                in->name, why);
        in->removed = 1;
        mc__proxy_group_del(px, in);
        mc__proxy_admin_reply(px, in, 0);
        mc__proxy_inst_maybe_free(px, in);
    }
}

/* ------------------------------------------------------- completion flow */

static int start_decode(mc_proxy_t *px, req_t *r, const mc__proxy_rw_t *rw)
{
    inst_t *d = mc__proxy_pick(px, MC_PROXY_DECODE, r, NULL);
    if (!d) {
        mc__proxy_req_answer(r, 503,
                             mc__proxy_error_json(503, "service_unavailable", "decode", NULL,
                                                  "no healthy decode instance"));
        return -EAGAIN;
    }
    char *body = NULL;
    size_t len = 0;
    if (mc__proxy_rw_decode(r->json, rw, &body, &len) != 0 ||
        start_completion_leg(px, r, LEG_DECODE, d, body, len, -1) != 0) {
        mc__proxy_req_answer(
            r, 500, mc__proxy_error_json(500, "internal_error", "decode", NULL, "out of memory"));
        return -ENOMEM;
    }
    return 0;
}

/* Writes ": <start of the leg's answer>" (printable ASCII, at most len - 1
 * bytes) into buf, or "" when it has none, for an error message. */
static void excerpt(const leg_t *l, char *buf, size_t len)
{
    size_t n = 0, avail = l->resp.len - l->resp.off;
    buf[0] = 0;
    if (!avail || len < 8) return;
    buf[n++] = ':';
    buf[n++] = ' ';
    for (size_t i = 0; i < avail && n + 4 < len; i++) {
        unsigned char c = (unsigned char)l->resp.p[l->resp.off + i];
        buf[n++] = c >= 0x20 && c < 0x7f ? (char)c : ' ';
    }
    if (avail > len - 5) buf[n++] = '.', buf[n++] = '.', buf[n++] = '.';
    buf[n] = 0;
}

/* A prefill answer arrived (toy/demo: start decode) or failed. */
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
        mc__proxy_req_answer(r, 502,
                             mc__proxy_error_json(502, "bad_gateway", "prefill", iname,
                                                  "prefill leg to %s failed: %s", iname,
                                                  l->err[0] ? l->err : curl_easy_strerror(l->rc)));
        return;
    }
    if (l->status >= 400) {
        if (connector && r->stream_ready) return;
        px->m_upstream_err[0]++;
        if (l->status < 500 && l->resp.len) { /* the backend's verdict on the request: relay it */
            char *s = strndup(l->resp.p, l->resp.len);
            mc__proxy_req_answer(r, (int)l->status, s);
            return;
        }
        char ex[256];
        excerpt(l, ex, sizeof ex);
        mc__proxy_req_answer(r, l->status < 500 ? (int)l->status : 502,
                             mc__proxy_error_json(l->status < 500 ? (int)l->status : 502,
                                                  "bad_gateway", "prefill", iname,
                                                  "prefill leg to %s answered HTTP %ld%s", iname,
                                                  l->status, ex));
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
            mc__proxy_req_answer(
                r, 502,
                mc__proxy_error_json(502, "bad_gateway", "decode", iname,
                                     "decode leg to %s failed: %s", iname,
                                     l->err[0] ? l->err : curl_easy_strerror(l->rc)));
            return;
        }
        MC_LOGW(TAG, "req %s: decode leg to %s failed mid-stream: %s", r->reqid, iname, l->err);
    } else if (l->status >= 500 && !r->stream_ready) { /* a 5xx is ours to report: 502 */
        px->m_upstream_err[1]++;
        char ex[256];
        excerpt(l, ex, sizeof ex);
        mc__proxy_req_answer(r, 502,
                             mc__proxy_error_json(502, "bad_gateway", "decode", iname,
                                                  "decode leg to %s answered HTTP %ld%s", iname,
                                                  l->status, ex));
        return;
    } else if (l->whole) {
        r->stream_ready = 1;
    } else if (!r->stream_ready && !r->resp_status) { /* empty body */
        r->up_status = l->status ? l->status : 200;
        r->up_clen = 0;
        r->stream_ready = 1;
    }
    mc__proxy_req_resume(r);
}

/* A completion leg that could not even connect (nothing reached the instance) is
 * started once more on another eligible instance. A prefill leg that failed
 * otherwise (transport error, timeout, 5xx answer) before the client got any
 * byte is started again on another instance, at most --prefill-retries times per
 * request: its answer was never used, so this is safe. A connector-mode prefill
 * leg restarts both legs (the decode leg names the prefiller). The leg is
 * detached; on success it is replaced in its request and freed. Returns 0 when
 * retried. */
static void start_legs(mc_proxy_t *px, req_t *r, inst_t *p);
static void route_and_start(mc_proxy_t *px, req_t *r);

/* 1 when l's failure is one the bounded prefill retry covers. */
static int prefill_retryable(const mc_proxy_t *px, const leg_t *l)
{
    if (l->kind != LEG_PREFILL || l->req->prefill_tries >= px->cfg.prefill_retries) return 0;
    if (l->rc == CURLE_WRITE_ERROR) return 0; /* answer too large: another would be too */
    return l->rc != CURLE_OK || l->status >= 500;
}

static int leg_retry(mc_proxy_t *px, leg_t *l)
{
    req_t *r = l->req;
    if (l->cancelled || !r || r->client_gone || r->resp_status || r->queued || r->stream_ready ||
        !l->body)
        return -EINVAL;
    int connect_once = l->rc == CURLE_COULDNT_CONNECT && !l->retried;
    int bounded = prefill_retryable(px, l);
    if (!connect_once && !bounded) return -EINVAL;
    int g = l->kind == LEG_PREFILL ? MC_PROXY_PREFILL : MC_PROXY_DECODE;
    inst_t *alt = mc__proxy_pick(px, g, r, l->inst);
    if (!alt) return -ENOENT;
    if (bounded && !connect_once) {
        r->prefill_tries++;
        mc__proxy_route_count_retry(px);
    }
    MC_LOGW(TAG, "req %s: %s leg to %s failed (%s); retrying on %s", r->reqid,
            mc__proxy_group_name[g], l->inst ? l->inst->name : "?",
            l->rc != CURLE_OK ? curl_easy_strerror(l->rc) : "HTTP 5xx", alt->name);
    if (l->kind == LEG_PREFILL && px->cfg.mode == MC_PROXY_MODE_CONNECTOR) {
        /* The decode leg names the dead prefiller: start both legs again. */
        leg_t *od = r->d;
        r->p = r->d = NULL;
        leg_free(l);
        if (od) {
            mc__proxy_leg_cancel(px, od);
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
        mc__proxy_req_answer(r, 500,
                             mc__proxy_error_json(500, "internal_error", mc__proxy_group_name[g],
                                                  NULL, "out of memory"));
        return 0; /* answered; the caller drops the old leg's reference */
    }
    (g == MC_PROXY_PREFILL ? r->p : r->d)->retried = 1;
    return 0;
}

/* Called for every leg curl reports done (and for legs we time out). */
void mc__proxy_leg_finished(mc_proxy_t *px, leg_t *l)
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
    if (l->rc != CURLE_OK && l->rc != CURLE_WRITE_ERROR && l->kind != LEG_PROBE &&
        l->kind != LEG_TOKENIZE && in && !(r && (r->client_gone || r->resp_status)))
        mc__proxy_inst_failed(px, in, l->err[0] ? l->err : curl_easy_strerror(l->rc), 0);
    if (l->kind == LEG_PROBE) {
        probe_finished(px, l);
        return;
    }
    if (l->kind == LEG_TOKENIZE) { /* then the request is routed, with or without its tokens */
        if (r->p == l) r->p = NULL;
        if (!(r->client_gone || r->resp_status || r->queued)) {
            mc__proxy_tokenize_finished(px, l);
            route_and_start(px, r);
        }
        l->inst = NULL;
        leg_free(l);
        if (in) mc__proxy_inst_maybe_free(px, in);
        mc__proxy_req_unref(r);
        return;
    }
    if (leg_retry(px, l) == 0) {
        if (in) mc__proxy_inst_maybe_free(px, in);
        mc__proxy_req_unref(r);
        return;
    }
    if (l->kind == LEG_PREFILL)
        prefill_finished(px, l);
    else
        decode_finished(px, l);
    l->inst = NULL; /* the instance may be freed now (removed and drained) */
    if (in) mc__proxy_inst_maybe_free(px, in);
    mc__proxy_req_unref(r);
}

/* Body complete: parse, rewrite and start the legs, or answer an error. */
void mc__proxy_dispatch_completion(mc_proxy_t *px, req_t *r)
{
    char err[256];
    px->m_requests[r->route == R_CHAT]++;
    if (px->cfg.mode == MC_PROXY_MODE_DEMO) {
        const char *ct =
            MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        if (!ct || strncasecmp(ct, "application/json", 16) != 0) {
            mc__proxy_req_answer(r, 415,
                                 mc__proxy_error_json(415, "invalid_request_error", NULL, NULL,
                                                      "Content-Type must be application/json"));
            return;
        }
    }
    if (mc__proxy_parse_body(r->body.p, r->body.len, &r->json, err, sizeof err) != 0) {
        mc__proxy_req_answer(
            r, 400, mc__proxy_error_json(400, "invalid_request_error", NULL, NULL, "%s", err));
        return;
    }
    if (!mc__proxy_connector_ready(px)) {
        mc__proxy_req_answer(
            r, 503,
            mc__proxy_error_json(503, "service_unavailable", "prefill", NULL,
                                 "waiting for the bootstrap servers of every prefiller"));
        return;
    }
    if (!mc__proxy_pick_noadvance(px, MC_PROXY_DECODE)) {
        mc__proxy_req_answer(r, 503,
                             mc__proxy_error_json(503, "service_unavailable", "decode", NULL,
                                                  "no healthy decode instance"));
        return;
    }
    if (!mc__proxy_pick_noadvance(px, MC_PROXY_PREFILL)) {
        mc__proxy_req_answer(r, 503,
                             mc__proxy_error_json(503, "service_unavailable", "prefill", NULL,
                                                  "no healthy prefill instance"));
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
    mc__proxy_route_prepare(px, r);
    if (mc__proxy_tokenize_start(px, r) == 0) return; /* routed when its answer comes */
    route_and_start(px, r);
}

/* Picks the prefiller of r (prepared) and starts its legs, or answers 503. */
static void route_and_start(mc_proxy_t *px, req_t *r)
{
    inst_t *p = mc__proxy_pick(px, MC_PROXY_PREFILL, r, NULL);
    if (!p) { /* every prefiller left while r was being tokenized */
        mc__proxy_req_answer(r, 503,
                             mc__proxy_error_json(503, "service_unavailable", "prefill", NULL,
                                                  "no healthy prefill instance"));
        return;
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
        mc__proxy_req_answer(
            r, 500, mc__proxy_error_json(500, "internal_error", "prefill", NULL, "out of memory"));
        return;
    }
    if (px->cfg.mode == MC_PROXY_MODE_CONNECTOR) start_decode(px, r, &rw);
}
