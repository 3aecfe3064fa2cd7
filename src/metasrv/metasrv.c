/* metasrv.c: the HTTP metadata server core. A key -> bytes store kept in memory
 * (an mc_map_t under one mutex) behind upstream's HTTP protocol (spec §4):
 *
 *   GET    /metadata?key=K   200 stored bytes | 404 "metadata not found"
 *   PUT    /metadata?key=K   200 "metadata updated" | 200 "metadata unchanged" (identical
 *                            rpc_meta) | 400 "Duplicate rpc_meta key not allowed"
 *   DELETE /metadata?key=K   200 "metadata deleted" | 404 "metadata not found"
 *   GET    /health           200 "OK"
 *
 * K is stripped of surrounding whitespace; a missing or blank key is 400, another
 * method 405, another path 404, a body over MC_METASRV_MAX_BODY 413. Every refused
 * request is logged in one line naming the peer and the reason; nothing a client
 * sends stops the server. Every /metadata answer is labelled application/json
 * (MS_CONTENT_TYPE). mc_metasrv_request applies the same rules in-process (the
 * Python package's KVBootstrapServer): the HTTP handler calls the same ms_apply.
 *
 * Threading: libmicrohttpd with its internal polling threads, a pool of
 * MS_THREADS poll(2) loops sharing our listening socket. A pool rather than
 * thread-per-connection because every transfer engine keeps a keep-alive
 * connection open for its lifetime: idle connections then cost a file
 * descriptor, not a thread, while a few loops are plenty for requests that each
 * take a hash lookup under a mutex held for a memcpy. poll rather than epoll:
 * with MHD 0.9.75's edge-triggered epoll mode a client that half-closes in the
 * middle of a body is sometimes not noticed until the idle timeout (seen in
 * test_metasrv_proc, about 1 in 3 tries); poll has no such case, and at the
 * few hundred connections a metadata server sees its cost does not show. Four
 * loops match upstream's embedded server. poll(2) takes descriptors past
 * FD_SETSIZE, and the connection limit, per-IP limit and idle timeout are set
 * explicitly by net_http's listener (defaults there, MC_HTTP_* to tune). */
#include "metasrv.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "base_log.h"
#include "base_map.h"
#include "net_http.h"
#include "net_sock.h"

#define MC_METASRV_MAX_BODY (16u << 20) /* largest accepted PUT body */
/* A chunked body over the limit is read and dropped so that the client gets its
 * 413; past this many dropped bytes the connection is simply closed. */
#define MS_MAX_DISCARD (64u << 20)
#define MS_THREADS 4
/* Every /metadata answer, value or message, is labelled JSON, as upstream's
 * Python server labels them (its clients and tests expect it). */
#define MS_CONTENT_TYPE "application/json"

struct mc_metasrv {
    mc_http_listener_t http;
    uint16_t port;
    pthread_mutex_t lock; /* guards map */
    mc_map_t *map;        /* key -> ms_val_t* */
};

typedef struct {
    size_t len;
    char data[];
} ms_val_t;

enum { MS_GET = 1, MS_PUT, MS_DEL, MS_HEALTH, MS_NOPS };

/* Per-request state, kept in MHD's con_cls between calls. Requests without a
 * body point at a shared, never-written ms_marks[op] (no allocation); those with
 * one (every PUT) get their own. */
typedef struct {
    int op;    /* MS_GET.. */
    char *key; /* stripped key (allocated requests only) */
    char *body;
    size_t len, cap;
    size_t dropped; /* bytes discarded after the body went over the limit */
    int too_big;
} ms_req_t;

static ms_req_t ms_marks[MS_NOPS] = {
    [MS_GET] = {.op = MS_GET},
    [MS_PUT] = {.op = MS_PUT},
    [MS_DEL] = {.op = MS_DEL},
    [MS_HEALTH] = {.op = MS_HEALTH},
};

static const char *const ms_tag = "metasrv";

/* Queues a response with body `text` (a string literal, not copied) and status;
 * /metadata answers are labelled MS_CONTENT_TYPE, others plain text.
 * allow: value of the Allow header (405 only) or NULL. */
static enum MHD_Result ms_reply_text(struct MHD_Connection *conn, const char *url, unsigned status,
                                     const char *text, const char *allow)
{
    const char *type = !strcmp(url, "/metadata") ? MS_CONTENT_TYPE : "text/plain; charset=utf-8";
    return mc_http_send(conn, status, type, text, strlen(text), MHD_RESPMEM_PERSISTENT, allow);
}

/* Logs a refused request in one line and answers it with status and text. */
static enum MHD_Result ms_refuse(struct MHD_Connection *conn, const char *method, const char *url,
                                 unsigned status, const char *text, const char *allow)
{
    char peer[96];
    mc_http_peer(conn, peer, sizeof peer);
    MC_LOGW(ms_tag, "%s: %s %s -> %u %s", peer, method, url, status, text);
    return ms_reply_text(conn, url, status, text, allow);
}

/* Copies v[0..vl) stripped of surrounding whitespace into a malloc'd string.
 * Returns 0, -EINVAL when blank or holding a NUL byte, -ENOMEM. */
static int ms_strip(const char *v, size_t vl, char **out)
{
    if (!v || memchr(v, '\0', vl)) return -EINVAL;
    while (vl && isspace((unsigned char)*v))
        v++, vl--;
    while (vl && isspace((unsigned char)v[vl - 1]))
        vl--;
    if (!vl) return -EINVAL;
    char *k = malloc(vl + 1);
    if (!k) return -ENOMEM;
    memcpy(k, v, vl);
    k[vl] = '\0';
    *out = k;
    return 0;
}

/* The key argument of an HTTP request, stripped (ms_strip); -EINVAL when absent. */
static int ms_key(struct MHD_Connection *conn, char **out)
{
    const char *v = NULL;
    size_t vl = 0;
    if (MHD_lookup_connection_value_n(conn, MHD_GET_ARGUMENT_KIND, "key", 3, &v, &vl) != MHD_YES ||
        !v)
        return -EINVAL;
    return ms_strip(v, vl, out);
}

/* Sets a message answer. */
static void ms_say(mc_metasrv_answer_t *ans, unsigned status, const char *text)
{
    ans->status = status;
    ans->text = text;
    ans->value = NULL;
    ans->len = 0;
}

/* GET: copies the value out under the lock (the one user-space copy), so a
 * concurrent PUT may free the stored value right after. */
static int ms_get(mc_metasrv_t *s, const char *key, mc_metasrv_answer_t *ans)
{
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    ms_val_t *v = mc_map_get(s->map, key);
    if (!v) {
        ms_say(ans, MHD_HTTP_NOT_FOUND, "metadata not found");
    } else if (!(ans->value = malloc(v->len ? v->len : 1))) {
        rc = -ENOMEM;
    } else {
        memcpy(ans->value, v->data, v->len);
        ans->len = v->len;
        ans->status = MHD_HTTP_OK;
        ans->text = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    if (!v) MC_LOGD(ms_tag, "GET '%s': not found", key);
    return rc;
}

static int ms_del(mc_metasrv_t *s, const char *key, mc_metasrv_answer_t *ans)
{
    pthread_mutex_lock(&s->lock);
    ms_val_t *v = mc_map_del(s->map, key);
    pthread_mutex_unlock(&s->lock);
    if (!v) {
        MC_LOGD(ms_tag, "DELETE '%s': not found", key);
        ms_say(ans, MHD_HTTP_NOT_FOUND, "metadata not found");
        return 0;
    }
    free(v);
    ms_say(ans, MHD_HTTP_OK, "metadata deleted");
    return 0;
}

/* PUT. Applies the duplicate rpc_meta rule: a key containing "rpc_meta" that
 * exists keeps its value; the same body again is 200 "metadata unchanged", a
 * different one 400. Other keys are replaced. */
static int ms_put(mc_metasrv_t *s, const char *key, const void *body, size_t len,
                  mc_metasrv_answer_t *ans)
{
    if (len > MC_METASRV_MAX_BODY) {
        ms_say(ans, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large");
        return 0;
    }
    ms_val_t *nv = malloc(sizeof *nv + len);
    if (!nv) return -ENOMEM;
    nv->len = len;
    if (len) memcpy(nv->data, body, len);
    int rpc = strstr(key, "rpc_meta") != NULL;
    int dup = 0, same = 0, rc = 0;
    void *old = NULL;
    pthread_mutex_lock(&s->lock);
    ms_val_t *cur = rpc ? mc_map_get(s->map, key) : NULL;
    if (cur) {
        dup = 1;
        same = cur->len == nv->len && !memcmp(cur->data, nv->data, nv->len);
    } else {
        rc = mc_map_put(s->map, key, nv, &old);
        if (rc == 0) nv = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    free(old);
    free(nv);
    if (rc) return -ENOMEM;
    if (dup && same)
        ms_say(ans, MHD_HTTP_OK, "metadata unchanged");
    else if (dup)
        ms_say(ans, MHD_HTTP_BAD_REQUEST, "Duplicate rpc_meta key not allowed");
    else
        ms_say(ans, MHD_HTTP_OK, "metadata updated");
    return 0;
}

/* One request on a stripped key. */
static int ms_apply(mc_metasrv_t *s, int op, const char *key, const void *body, size_t len,
                    mc_metasrv_answer_t *ans)
{
    switch (op) {
    case MS_GET:
        return ms_get(s, key, ans);
    case MS_PUT:
        return ms_put(s, key, body, len, ans);
    default:
        return ms_del(s, key, ans);
    }
}

static int ms_method_op(const char *method)
{
    if (!strcmp(method, MHD_HTTP_METHOD_GET)) return MS_GET;
    if (!strcmp(method, MHD_HTTP_METHOD_PUT)) return MS_PUT;
    if (!strcmp(method, MHD_HTTP_METHOD_DELETE)) return MS_DEL;
    return 0;
}

int mc_metasrv_request(mc_metasrv_t *s, const char *method, const char *key, size_t keylen,
                       const void *body, size_t len, mc_metasrv_answer_t *ans)
{
    int op = method ? ms_method_op(method) : 0;
    if (!op) {
        ms_say(ans, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed");
        return 0;
    }
    char *k = NULL;
    int rc = key ? ms_strip(key, keylen, &k) : -EINVAL;
    if (rc == -ENOMEM) return rc;
    if (rc) {
        ms_say(ans, MHD_HTTP_BAD_REQUEST, "Missing key");
        return 0;
    }
    rc = ms_apply(s, op, k, body, len, ans);
    free(k);
    return rc;
}

typedef struct {
    void (*fn)(const char *key, size_t len, void *arg);
    void *arg;
} ms_each_t;

static int ms_each_key(const char *key, void *val, void *arg)
{
    ms_each_t *e = arg;
    e->fn(key, strlen(key), e->arg);
    return 0;
}

void mc_metasrv_keys(mc_metasrv_t *s, void (*fn)(const char *key, size_t len, void *arg), void *arg)
{
    ms_each_t e = {fn, arg};
    pthread_mutex_lock(&s->lock);
    mc_map_each(s->map, ms_each_key, &e);
    pthread_mutex_unlock(&s->lock);
}

/* Sends an answer of ms_apply; logs a refused PUT in one line naming the peer. */
static enum MHD_Result ms_send(struct MHD_Connection *conn, const char *url, const char *key,
                               mc_metasrv_answer_t *ans)
{
    if (ans->value || !ans->text)
        return mc_http_send(conn, ans->status, MS_CONTENT_TYPE, ans->value, ans->len,
                            MHD_RESPMEM_MUST_FREE, NULL);
    if (ans->status == MHD_HTTP_BAD_REQUEST) {
        char peer[96];
        mc_http_peer(conn, peer, sizeof peer);
        MC_LOGW(ms_tag, "%s: PUT %s key '%s' -> 400 %s", peer, url, key, ans->text);
    }
    return mc_http_send(conn, ans->status, MS_CONTENT_TYPE, ans->text, strlen(ans->text),
                        MHD_RESPMEM_PERSISTENT, NULL);
}

/* Appends upload data to req, or counts it as dropped once over the limit.
 * Returns 0, or -1 to close the connection (too much dropped, out of memory). */
static int ms_body_append(ms_req_t *req, const char *data, size_t n)
{
    if (!req->too_big && req->len + n > MC_METASRV_MAX_BODY) {
        req->too_big = 1;
        free(req->body);
        req->body = NULL;
        req->len = req->cap = 0;
    }
    if (req->too_big) {
        req->dropped += n;
        return req->dropped > MS_MAX_DISCARD ? -1 : 0;
    }
    if (req->len + n > req->cap) {
        size_t cap = req->cap ? req->cap : 4096;
        while (cap < req->len + n)
            cap *= 2;
        if (cap > MC_METASRV_MAX_BODY) cap = MC_METASRV_MAX_BODY;
        char *p = realloc(req->body, cap);
        if (!p) return -1;
        req->body = p;
        req->cap = cap;
    }
    memcpy(req->body + req->len, data, n);
    req->len += n;
    return 0;
}

/* First call of a request (headers only): routes it and validates what can be
 * validated, answering errors at once (MHD then closes the connection without
 * reading any body). Otherwise sets *con_cls for the later calls. */
static enum MHD_Result ms_begin(mc_metasrv_t *s, struct MHD_Connection *conn, const char *url,
                                const char *method, void **con_cls)
{
    mc_http_listener_saw_request(conn);

    int op;
    if (!strcmp(url, "/health")) {
        if (strcmp(method, MHD_HTTP_METHOD_GET) != 0)
            return ms_refuse(conn, method, url, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed",
                             "GET");
        op = MS_HEALTH;
    } else if (!strcmp(url, "/metadata")) {
        op = ms_method_op(method);
        if (!op)
            return ms_refuse(conn, method, url, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed",
                             "GET, PUT, DELETE");
    } else {
        return ms_refuse(conn, method, url, MHD_HTTP_NOT_FOUND, "not found", NULL);
    }

    char *key = NULL;
    if (op != MS_HEALTH) {
        int rc = ms_key(conn, &key);
        if (rc == -ENOMEM) return MHD_NO;
        if (rc) return ms_refuse(conn, method, url, MHD_HTTP_BAD_REQUEST, "Missing key", NULL);
        enum MHD_Result ret;
        if (!mc_http_listener_authorize(&s->http, conn, &ret)) {
            free(key);
            return ret;
        }
    }
    /* MHD hands us a body only when one was announced by either header. */
    const char *cl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *te =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    unsigned long long clen = cl ? strtoull(cl, NULL, 10) : 0;
    if (clen > MC_METASRV_MAX_BODY) {
        free(key);
        return ms_refuse(conn, method, url, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large",
                         NULL);
    }
    if (op != MS_PUT && !clen && !te) {
        free(key);
        *con_cls = &ms_marks[op];
        return MHD_YES;
    }
    ms_req_t *req = calloc(1, sizeof *req);
    if (!req) {
        free(key);
        return MHD_NO;
    }
    req->op = op;
    req->key = key;
    if (op == MS_PUT && clen) { /* size the buffer once for the announced body */
        req->body = malloc(clen);
        if (req->body) req->cap = clen;
    }
    *con_cls = req;
    return MHD_YES;
}

/* Access handler, called by MHD on its threads: once after the headers, then
 * per body chunk, then once more with *upload_size == 0, when the answer is
 * given (answering earlier would make MHD close the keep-alive connection). */
static enum MHD_Result ms_handle(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
    mc_metasrv_t *s = cls;
    ms_req_t *req = *con_cls;
    if (!req) return ms_begin(s, conn, url, method, con_cls);
    int shared = req >= ms_marks && req < ms_marks + MS_NOPS;
    if (*upload_size) {
        if (!shared && ms_body_append(req, upload, *upload_size)) {
            char peer[96];
            mc_http_peer(conn, peer, sizeof peer);
            MC_LOGW(ms_tag, "%s: %s %s: body far over %u bytes, closing connection", peer, method,
                    url, MC_METASRV_MAX_BODY);
            return MHD_NO;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (req->too_big)
        return ms_refuse(conn, method, url, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large",
                         NULL);
    if (req->op == MS_HEALTH) return ms_reply_text(conn, url, MHD_HTTP_OK, "OK", NULL);
    char *key = req->key;
    if (shared) { /* validated in ms_begin; look it up again */
        int rc = ms_key(conn, &key);
        if (rc) return MHD_NO;
    }
    mc_metasrv_answer_t ans;
    enum MHD_Result ret = MHD_NO;
    if (ms_apply(s, req->op, key, req->body, req->len, &ans) == 0)
        ret = ms_send(conn, url, key, &ans);
    if (shared) free(key);
    return ret;
}

/* Frees a request's state when MHD is done with it (also on errors). */
static void ms_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    ms_req_t *req = *con_cls;
    *con_cls = NULL;
    if (!req || (req >= ms_marks && req < ms_marks + MS_NOPS)) return;
    free(req->key);
    free(req->body);
    free(req);
}

static void ms_free_val(void *v)
{
    free(v);
}

int mc_metasrv_new(mc_metasrv_t **out)
{
    mc_metasrv_t *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    pthread_mutex_init(&s->lock, NULL);
    mc_http_listener_init(&s->http, ms_tag, MC_HTTP_MAX_CONNECTIONS_DEFAULT, MC_HTTP_PER_IP_DEFAULT,
                          MC_HTTP_IDLE_TIMEOUT_DEFAULT_S);
    s->http.auth_key = mc_auth_cluster_key(); /* reads too: descriptors hold addresses */
    s->http.auth_service = "meta";
    s->http.tls = 1; /* HTTPS with the process's TLS files, if any */
    s->map = mc_map_new();
    if (!s->map) {
        pthread_mutex_destroy(&s->lock);
        free(s);
        return -ENOMEM;
    }
    *out = s;
    return 0;
}

/* Binds host:port itself (so that port 0 and the bound port are ours to
 * report) and hands the socket to MHD, which closes it on stop. Returns 0, a
 * negative errno from bind/listen, or -EIO when MHD refuses to start.
 * Thread: the caller's; serving happens on MHD's threads. */
int mc_metasrv_listen(mc_metasrv_t *s, const char *host, uint16_t port)
{
    if (s->http.mhd) return -EALREADY;
    int fd = -1;
    uint16_t bound = 0;
    int rc = mc_sock_listen(host, port, 512, &fd, &bound);
    if (rc) {
        MC_LOGE(ms_tag, "cannot listen on %s:%u: %s", host && *host ? host : "0.0.0.0", port,
                strerror(-rc));
        return rc;
    }
    /* The pool threads share this socket; accept must not block one of them. */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    const struct MHD_OptionItem opts[] = {
        {MHD_OPTION_LISTEN_SOCKET, fd, NULL},
        {MHD_OPTION_THREAD_POOL_SIZE, MS_THREADS, NULL},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)ms_completed, s},
        {MHD_OPTION_END, 0, NULL},
    };
    s->http.log_silent = 1;
    mc_http_listener_start(&s->http,
                           MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG, 0,
                           ms_handle, s, opts);
    /* From here MHD owns the socket (it closes it on stop); whether it does on a
     * failed start is not documented, so a failed start may leak it rather than
     * risk closing a descriptor number that another thread has reused. */
    if (!s->http.mhd) {
        MC_LOGE(ms_tag, "libmicrohttpd failed to start on port %u", bound);
        return -EIO;
    }
    s->port = bound;
    MC_LOGI(ms_tag, "serving on %s:%u", host && *host ? host : "0.0.0.0", s->port);
    mc_auth_note_listener(ms_tag, "metadata server", host, s->port);
    return 0;
}

int mc_metasrv_start(const char *host, uint16_t port, mc_metasrv_t **out)
{
    mc_metasrv_t *s = NULL;
    int rc = mc_metasrv_new(&s);
    if (rc) return rc;
    rc = mc_metasrv_listen(s, host, port);
    if (rc) {
        mc_metasrv_stop(s);
        return rc;
    }
    *out = s;
    return 0;
}

uint16_t mc_metasrv_port(const mc_metasrv_t *s)
{
    return s->port;
}

/* Stops MHD (joins its threads, closes connections and the listening socket),
 * then frees the store. */
void mc_metasrv_stop(mc_metasrv_t *s)
{
    if (!s) return;
    mc_http_listener_stop(&s->http);
    mc_map_free(s->map, ms_free_val);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
