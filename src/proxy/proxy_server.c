/* The proxy's event loop: libmicrohttpd front (external epoll mode, suspend /
 * resume) and libcurl multi upstream legs (proxy_legs.c) on one thread, so no
 * locks anywhere. This file is the front and the loop: MHD callbacks, the
 * streamed relay of a decode answer, the loop's timers and shutdown, and
 * mc_proxy_new / mc_proxy_free. The request states are in
 * proxy_server_int.h. */
#include "proxy_server_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base_log.h"
#include "base_time.h"
#include <netdb.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MC_PROXY_PER_IP_DEFAULT 1024u       /* one benchmark host may run ~1000 streams */
#define MC_PROXY_IDLE_TIMEOUT_DEFAULT_S 60u /* as nginx's send_timeout */

enum MHD_Result mc__proxy_queue_str(struct MHD_Connection *c, int status, const char *ctype,
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
    char *s = mc__proxy_error_json(status, type, NULL, NULL, "%s", msg);
    enum MHD_Result r = mc__proxy_queue_str(c, status, "application/json", s, NULL);
    free(s);
    px->m_status[status / 100 < 6 ? status / 100 : 5]++;
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
    mc__proxy_req_unref(cls);
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
    mc__proxy_req_ref(r);
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
            return mc__proxy_serve_get(px, c, url);
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
                    mc__proxy_buf_free(&r->body);
                } else if (mc__proxy_buf_append(&r->body, upload, *upload_size) != 0) {
                    return MHD_NO;
                }
            }
            *upload_size = 0;
            return MHD_YES;
        }
        r->state = RQ_STARTED;
        if (r->too_big)
            mc__proxy_req_answer(r, 413,
                                 mc__proxy_error_json(413, "request_too_large", NULL, NULL,
                                                      "request body larger than %zu bytes",
                                                      px->cfg.max_body));
        else if (r->route == R_ADD || r->route == R_REMOVE)
            mc__proxy_dispatch_admin(px, r);
        else
            mc__proxy_dispatch_completion(px, r);
        run_new_legs(px, r);
    }
    if (r->client_gone) return MHD_NO;
    if (r->queued) return MHD_YES;
    if (r->resp_status) {
        r->queued = 1;
        r->final_status = r->resp_status;
        return mc__proxy_queue_str(c, r->resp_status, "application/json", r->resp_json, r->reqid);
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
        mc__proxy_req_cancel_legs(px, r);
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
        mc__proxy_inst_maybe_free(px, r->admin_inst);
        r->admin_inst = NULL;
        mc__proxy_req_unref(r); /* the waiter reference */
    }
    r->conn = NULL;
    r->suspended = 0;
    mc__proxy_req_unref(r);
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
            mc__proxy_req_ref(r);
            mc__proxy_req_cancel_legs(px, r);
            mc__proxy_req_resume(r);
            mc__proxy_req_unref(r);
        }
    }
}

static void tick(mc_proxy_t *px)
{
    uint64_t now = mc_now_ms();
    if (now < px->next_tick_ms) return;
    px->next_tick_ms = now + 20;
    mc__proxy_kvev_poll(px); /* ZMQ_FD signals changes of state, not each message */
    /* first-byte timeouts */
    for (leg_t *l = px->legs, *nx; l; l = nx) {
        nx = l->next;
        if (l->started || l->kind == LEG_PROBE || now < l->deadline_ms) continue;
        snprintf(l->err, sizeof l->err, "no answer within %d ms (first-byte timeout)",
                 px->cfg.first_byte_timeout_ms);
        l->rc = CURLE_OPERATION_TIMEDOUT;
        mc__proxy_leg_finished(px, l);
        nx = px->legs; /* the list may have changed a lot; restart (rare) */
    }
    /* health checks */
    for (int g = 0; g < 2; g++) {
        for (int i = 0; i < px->ngrp[g]; i++) {
            inst_t *in = px->grp[g][i];
            if (in->probe || in->removed || now < in->next_check_ms) continue;
            mc__proxy_probe_start(px, in, in->admitted ? STEP_HEALTH : STEP_MODELS);
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
        mc__proxy_leg_finished(px, l);
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
    int mhd_now = 0, kv_now = 0;
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
        if (px->kv && mc__proxy_kvev_owns(px, fd)) {
            kv_now = 1;
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
    if (kv_now) mc__proxy_kvev_poll(px);
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
        mc__proxy_req_ref(r);
        mc__proxy_req_cancel_legs(px, r);
        mc__proxy_req_resume(r);
        nx = r->next;
        mc__proxy_req_unref(r);
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
    if (mc__proxy_route_init(px) != 0) goto fail;
    if ((rc = mc__proxy_kvev_init(px, 0)) != 0) goto fail;
    rc = -ENOMEM;

    for (int g = 0; g < 2; g++)
        for (int i = 0; i < cfg->n_inst[g]; i++)
            if (!mc__proxy_inst_add(px, g, cfg->inst[g][i].url, cfg->inst[g][i].bootstrap_port,
                                    1)) {
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
        if (l->req) mc__proxy_req_ref(l->req);
        req_t *r = l->req;
        mc__proxy_leg_cancel(px, l);
        if (r) mc__proxy_req_unref(r);
    }
    while (px->all) {
        inst_t *in = px->all;
        px->all = in->next_all;
        mc__proxy_inst_free(in);
    }
    free(px->grp[0]);
    free(px->grp[1]);
    mc__proxy_kvev_free(px); /* the subscriptions of the instances just freed */
    mc__proxy_route_free(px);
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
