/* store_srv.c: a store client's HTTP endpoint (store_srv.h): for a
 * standalone mooncake_client's dummy clients, and /metrics for any client
 * (mooncake_client --enable_http_server, or setup's enable_client_http_server
 * in a serving process). The configuration body is built once at start (the
 * values never change while the process runs); /health asks the store;
 * /metrics reads the store's counters (store_metrics.h). */
#include "store_srv.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base_log.h"
#include "net_http.h"
#include "net_sock.h"
#include "store_int.h"

#define SRV_THREADS 2
#define SRV_MAX_BODY 4096

static const char *const srv_tag = "client";
static int srv_mark; /* con_cls of a request in progress */

struct mc_store_srv {
    mc_http_listener_t http; /* limits: net_http.h defaults, MC_HTTP_* to tune */
    mc_store_t *s;
    uint16_t port;
    char *config; /* JSON body of /v1/client_config */
};

/* Queues a JSON body (copied by MHD) with status and, for 405, Allow. */
static enum MHD_Result srv_send(struct MHD_Connection *conn, unsigned status, const char *body,
                                const char *allow)
{
    return mc_http_send(conn, status, "application/json", body, strlen(body), MHD_RESPMEM_MUST_COPY,
                        allow);
}

/* Logs a refused request in one line and answers {"error": text}. */
static enum MHD_Result srv_refuse(struct MHD_Connection *conn, const char *method, const char *url,
                                  unsigned status, const char *text, const char *allow)
{
    char peer[96];
    mc_http_peer(conn, peer, sizeof peer);
    MC_LOGW(srv_tag, "%s: %s %s -> %u %s", peer, method, url, status, text);
    json_t *j = json_pack("{s:s}", "error", text);
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    enum MHD_Result ret = srv_send(conn, status, body ? body : "{}", allow);
    free(body);
    return ret;
}

static enum MHD_Result srv_health(mc_store_srv_t *srv, struct MHD_Connection *conn)
{
    int h = mc_store_health_check(srv->s);
    json_t *j = json_pack("{s:s, s:i}", "status",
                          h == 0   ? "ok"
                          : h == 2 ? "master_unreachable"
                                   : "not_ready",
                          "health", h);
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!body) return MHD_NO;
    enum MHD_Result ret =
        srv_send(conn, h == 0 ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, body, NULL);
    free(body);
    return ret;
}

/* GET /metrics: the store's counters and histograms, Prometheus text. */
static enum MHD_Result srv_metrics(mc_store_srv_t *srv, struct MHD_Connection *conn)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return MHD_NO;
    mc__store_metrics_write(&srv->s->metrics, srv->s->hostname, f);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        free(buf);
        return MHD_NO;
    }
    return mc_http_send(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", buf, len,
                        MHD_RESPMEM_MUST_FREE, NULL);
}

static enum MHD_Result srv_route(mc_store_srv_t *srv, struct MHD_Connection *conn, const char *url,
                                 const char *method)
{
    int is_config = !strcmp(url, MC__STORE_DUMMY_PATH), is_health = !strcmp(url, "/health");
    int is_metrics = !strcmp(url, "/metrics");
    if (!is_config && !is_health && !is_metrics)
        return srv_refuse(conn, method, url, MHD_HTTP_NOT_FOUND, "not found", NULL);
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return srv_refuse(conn, method, url, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed",
                          "GET, HEAD");
    if (is_health) return srv_health(srv, conn);
    if (is_metrics) return srv_metrics(srv, conn);
    enum MHD_Result ret;
    if (!mc_http_listener_authorize(&srv->http, conn, &ret)) return ret;
    return srv_send(conn, MHD_HTTP_OK, srv->config, NULL);
}

/* Access handler (MHD threads): headers first (large bodies refused at
 * once), then body chunks (dropped: no route takes a body), then the answer. */
static enum MHD_Result srv_handle(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    (void)version, (void)upload;
    mc_store_srv_t *srv = cls;
    if (!*con_cls) {
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > SRV_MAX_BODY)
            return srv_refuse(conn, method, url, MHD_HTTP_CONTENT_TOO_LARGE,
                              "request body too large", NULL);
        *con_cls = &srv_mark;
        return MHD_YES;
    }
    if (*upload_size) {
        *upload_size = 0;
        return MHD_YES;
    }
    return srv_route(srv, conn, url, method);
}

static char *srv_config_json(mc_store_t *s, const mc_store_srv_info_t *in)
{
    char name[MC_NAME_MAX];
    if (mc_store_get_hostname(s, name, sizeof name)) return NULL;
    json_t *j = json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I}", "version",
                          MC__STORE_DUMMY_PROTO, "name", name, "master_server_address",
                          in->master_server_address ? in->master_server_address : "",
                          "metadata_server", in->metadata_server ? in->metadata_server : "",
                          "protocol", in->protocol && *in->protocol ? in->protocol : "tcp",
                          "device_names", in->device_names ? in->device_names : "", "tenant_id",
                          in->tenant_id && *in->tenant_id ? in->tenant_id : "default",
                          "global_segment_size", (json_int_t)in->global_segment_size,
                          "local_buffer_size", (json_int_t)in->local_buffer_size);
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return body;
}

int mc_store_srv_start(mc_store_t *s, const mc_store_srv_info_t *info, const char *host,
                       uint16_t port, mc_store_srv_t **out)
{
    int fd = -1, rc;
    mc_store_srv_t *srv = calloc(1, sizeof *srv);
    if (!srv) return -ENOMEM;
    srv->s = s;
    mc_http_listener_init(&srv->http, srv_tag, MC_HTTP_MAX_CONNECTIONS_DEFAULT,
                          MC_HTTP_PER_IP_DEFAULT, MC_HTTP_IDLE_TIMEOUT_DEFAULT_S);
    srv->http.auth_key = mc_auth_cluster_key(); /* the configuration names the pool */
    srv->http.auth_service = "dummy";
    srv->http.tls = 1; /* HTTPS with the process's TLS files, if any */
    srv->config = srv_config_json(s, info);
    if (!srv->config) {
        rc = -ENOMEM;
        goto fail;
    }
    rc = mc_sock_listen(host, port, 128, &fd, &srv->port);
    if (rc) {
        MC_LOGE(srv_tag, "cannot listen on %s:%u: %s", host && *host ? host : "0.0.0.0", port,
                strerror(-rc));
        goto fail;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); /* shared by the pool threads */
    const struct MHD_OptionItem opts[] = {
        {MHD_OPTION_LISTEN_SOCKET, fd, NULL},
        {MHD_OPTION_THREAD_POOL_SIZE, SRV_THREADS, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    mc_http_listener_start(&srv->http,
                           MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG, 0,
                           srv_handle, srv, opts);
    fd = -1; /* MHD's now (see mc_metasrv_start on a failed start) */
    if (!srv->http.mhd) {
        MC_LOGE(srv_tag, "libmicrohttpd failed to start on port %u", srv->port);
        rc = -EIO;
        goto fail;
    }
    mc_auth_note_listener(srv_tag, "store client endpoint", host, srv->port);
    *out = srv;
    return 0;
fail:
    if (fd >= 0) close(fd);
    mc_http_listener_stop(&srv->http);
    free(srv->config);
    free(srv);
    return rc;
}

uint16_t mc_store_srv_port(const mc_store_srv_t *srv)
{
    return srv->port;
}

void mc_store_srv_stop(mc_store_srv_t *srv)
{
    if (!srv) return;
    mc_http_listener_stop(&srv->http);
    free(srv->config);
    free(srv);
}
