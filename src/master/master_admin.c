/* master_admin.c: the master's admin/metrics HTTP server (endpoints in
 * master_admin.h). libmicrohttpd with a small pool of internal poll threads
 * serves the requests; every answer is computed from master_service.h calls
 * at request time (no cache: /metrics is scraped every few seconds at most,
 * and each call costs a pass over the segment table or the stats counters).
 * Bodies are built with open_memstream or jansson and handed to MHD, which
 * frees them. Requests carry no body; one announced over AD_MAX_BODY is
 * refused with 413, smaller ones are read and dropped. Nothing a client sends
 * stops the server: refused requests and connections that closed without a
 * valid request are logged in one line naming the peer. */
#include "master_admin.h"

#include "master_ha.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "base_log.h"
#include "base_time.h"
#include "net_http.h"
#include "net_sock.h"

#define AD_THREADS 2
#define AD_MAX_BODY 65536

struct mc_master_admin {
    mc_master_t *m;
    mc_master_ha_t *_Atomic ha; /* NULL without --enable_ha */
    mc_http_listener_t http;    /* limits: net_http.h defaults, MC_HTTP_* to tune */
    uint16_t port;
    mc_master_admin_metrics_fn extra;
    void *extra_arg;
};

/* Per-connection state (MHD's socket_context), touched by its MHD thread only. */
typedef struct {
    unsigned long requests;
} ad_conn_t;

static const char *const ad_tag = "admin";
static int ad_mark; /* con_cls of a request in progress (no per-request state) */

/* Queues body (len bytes) with status. own: body is malloc'd and MHD frees it;
 * otherwise it is a static string. */
static enum MHD_Result ad_send(struct MHD_Connection *conn, unsigned status, const char *ctype,
                               char *body, size_t len, int own, const char *allow)
{
    return mc_http_send(conn, status, ctype, body, len,
                        own ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT, allow);
}

static enum MHD_Result ad_text(struct MHD_Connection *conn, unsigned status, const char *text)
{
    return ad_send(conn, status, "text/plain; charset=utf-8", (char *)text, strlen(text), 0, NULL);
}

/* Sends a jansson value (stolen) as JSON. */
static enum MHD_Result ad_json(struct MHD_Connection *conn, unsigned status, json_t *v)
{
    char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (!s) return MHD_NO;
    return ad_send(conn, status, "application/json", s, strlen(s), 1, NULL);
}

/* Logs a refused request in one line and answers it with a text body. */
static enum MHD_Result ad_refuse(struct MHD_Connection *conn, const char *method, const char *url,
                                 unsigned status, const char *text, const char *allow)
{
    char peer[96];
    mc_http_peer(conn, peer, sizeof peer);
    MC_LOGW(ad_tag, "%s: %s %s -> %u %s", peer, method, url, status, text);
    return ad_send(conn, status, "text/plain; charset=utf-8", (char *)text, strlen(text), 0, allow);
}

/* A memstream for a text body; ad_stream_send hands its buffer to MHD. */
typedef struct {
    FILE *f;
    char *buf;
    size_t len;
} ad_stream_t;

static int ad_stream_open(ad_stream_t *s)
{
    s->buf = NULL;
    s->len = 0;
    s->f = open_memstream(&s->buf, &s->len);
    return s->f ? 0 : -ENOMEM;
}

static enum MHD_Result ad_stream_send(struct MHD_Connection *conn, ad_stream_t *s,
                                      const char *ctype)
{
    int bad = ferror(s->f);
    if (fclose(s->f) != 0) bad = 1;
    if (bad) {
        free(s->buf);
        return MHD_NO;
    }
    return ad_send(conn, MHD_HTTP_OK, ctype, s->buf, s->len, 1, NULL);
}

/* "1.50 GB" for n bytes (binary multiples, as upstream's byte_size_to_string). */
static void ad_human(uint64_t n, char *buf, size_t cap)
{
    static const char *const units[] = {"B", "KB", "MB", "GB", "TB", "PB", "EB"};
    double v = (double)n;
    size_t u = 0;
    while (v >= 1024.0 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%" PRIu64 " B", n);
    else
        snprintf(buf, cap, "%.2f %s", v, units[u]);
}

static void ad_metric(FILE *f, const char *name, const char *type, const char *help, uint64_t v)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", name, help, name, type, name, v);
}

static enum MHD_Result ad_metrics(mc_master_admin_t *a, struct MHD_Connection *conn)
{
    mc_master_stats_t st;
    memset(&st, 0, sizeof st);
    mc_master_get_stats(a->m, &st);
    ad_stream_t s;
    if (ad_stream_open(&s)) return MHD_NO;
    ad_metric(s.f, "master_allocated_bytes", "gauge", "Bytes allocated in mounted segments",
              st.allocated_bytes);
    ad_metric(s.f, "master_total_capacity_bytes", "gauge", "Bytes of all mounted segments",
              st.capacity_bytes);
    ad_metric(s.f, "master_key_count", "gauge", "Objects in the index", st.key_count);
    ad_metric(s.f, "master_soft_pin_key_count", "gauge", "Soft-pinned objects",
              st.soft_pin_key_count);
    ad_metric(s.f, "master_active_clients", "gauge", "Clients alive (heartbeating)",
              st.active_clients);
    ad_metric(s.f, "master_segment_count", "gauge", "Mounted segments", st.segment_count);
    ad_metric(s.f, "master_evicted_key_count", "counter", "Objects evicted since start",
              st.evicted_key_count);
    ad_metric(s.f, "master_evicted_size_bytes", "counter", "Bytes evicted since start",
              st.evicted_size_bytes);
    ad_metric(s.f, "master_put_start_discard_cnt", "counter",
              "Unfinished puts preempted after the discard timeout", st.put_start_discard_cnt);
    ad_metric(s.f, "master_put_start_release_cnt", "counter",
              "Unfinished puts whose space was released after the release timeout",
              st.put_start_release_cnt);
    ad_metric(s.f, "master_expired_clients_total", "counter",
              "Clients expired for missing heartbeats", st.expired_clients);
    ad_metric(s.f, "master_unmounted_segments_total", "counter",
              "Segments unmounted (by their owner or when it expired)", st.unmounted_segments);
    ad_metric(s.f, "master_purged_objects_total", "counter",
              "Objects dropped because their last replica's segment went away", st.purged_objects);
    if (a->extra) a->extra(s.f, a->extra_arg);
    return ad_stream_send(conn, &s, "text/plain; version=0.0.4; charset=utf-8");
}

static enum MHD_Result ad_summary(mc_master_admin_t *a, struct MHD_Connection *conn)
{
    mc_master_stats_t st;
    memset(&st, 0, sizeof st);
    mc_master_get_stats(a->m, &st);
    char used[32], cap[32], ev[32];
    ad_human(st.allocated_bytes, used, sizeof used);
    ad_human(st.capacity_bytes, cap, sizeof cap);
    ad_human(st.evicted_size_bytes, ev, sizeof ev);
    double pct =
        st.capacity_bytes ? 100.0 * (double)st.allocated_bytes / (double)st.capacity_bytes : 0.0;
    ad_stream_t s;
    if (ad_stream_open(&s)) return MHD_NO;
    fprintf(s.f,
            "Mooncake master " MC_MASTER_VERSION "\n"
            "Storage: %s used of %s (%.1f%%)\n"
            "Keys: %" PRIu64 " (soft-pinned %" PRIu64 ")\n"
            "Clients: %" PRIu64 " active, segments: %" PRIu64 "\n"
            "Evicted: %" PRIu64 " keys, %s\n"
            "Unfinished puts: %" PRIu64 " discarded, %" PRIu64 " released\n",
            used, cap, pct, st.key_count, st.soft_pin_key_count, st.active_clients,
            st.segment_count, st.evicted_key_count, ev, st.put_start_discard_cnt,
            st.put_start_release_cnt);
    return ad_stream_send(conn, &s, "text/plain; charset=utf-8");
}

/* One key per line, so a key's own line breaks are escaped: backslash as
 * "\\", LF "\n", CR "\r", other control bytes "\xHH". Keys without any
 * of these (all that vLLM, LMCache and SGLang make) print as they are. */
static void ad_key_line(const char *key, void *arg)
{
    FILE *f = arg;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        if (*p == '\\')
            fputs("\\\\", f);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p == '\r')
            fputs("\\r", f);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\x%02x", *p);
        else
            fputc(*p, f);
    }
    fputc('\n', f);
}

static void ad_seg_line(const mc_master_segment_info_t *si, void *arg)
{
    fputs(si->seg.name, (FILE *)arg);
    fputc('\n', (FILE *)arg);
}

static enum MHD_Result ad_all_keys(mc_master_admin_t *a, struct MHD_Connection *conn)
{
    ad_stream_t s;
    if (ad_stream_open(&s)) return MHD_NO;
    mc_master_each_key(a->m, ad_key_line, s.f);
    return ad_stream_send(conn, &s, "text/plain; charset=utf-8");
}

static enum MHD_Result ad_all_segments(mc_master_admin_t *a, struct MHD_Connection *conn)
{
    ad_stream_t s;
    if (ad_stream_open(&s)) return MHD_NO;
    mc_master_each_segment(a->m, ad_seg_line, s.f);
    return ad_stream_send(conn, &s, "text/plain; charset=utf-8");
}

static json_t *ad_error_json(int code, const char *msg)
{
    return json_pack("{s:b, s:i, s:s}", "success", 0, "error_code", code, "error_message", msg);
}

/* The value of query argument name, without embedded NULs; NULL when absent. */
static const char *ad_arg(struct MHD_Connection *conn, const char *name)
{
    const char *v = NULL;
    size_t vl = 0;
    if (MHD_lookup_connection_value_n(conn, MHD_GET_ARGUMENT_KIND, name, strlen(name), &v, &vl) !=
            MHD_YES ||
        !v || memchr(v, '\0', vl))
        return NULL;
    return v;
}

/* GET /query_key?key=K: the complete replicas through mc_master_get_replicas
 * (which grants a read lease, as upstream's handler does). */
static enum MHD_Result ad_query_key(mc_master_admin_t *a, struct MHD_Connection *conn,
                                    const char *url)
{
    const char *key = ad_arg(conn, "key");
    if (!key || !*key) {
        char peer[96];
        mc_http_peer(conn, peer, sizeof peer);
        MC_LOGW(ad_tag, "%s: GET %s -> 400 missing key", peer, url);
        return ad_json(conn, MHD_HTTP_BAD_REQUEST,
                       ad_error_json(MC_ERR_INVALID_PARAMS, "missing key parameter"));
    }
    mc_replica_t *r = NULL;
    size_t n = 0;
    uint64_t ttl = 0;
    int rc = mc_master_get_replicas(a->m, key, mc_now_ms(), &r, &n, &ttl);
    if (rc) {
        unsigned status = rc == MC_ERR_INVALID_KEY || rc == MC_ERR_INVALID_PARAMS
                              ? MHD_HTTP_BAD_REQUEST
                              : MHD_HTTP_NOT_FOUND;
        return ad_json(conn, status, ad_error_json(rc, mc_err_name(rc)));
    }
    json_t *data = json_array();
    for (size_t i = 0; data && i < n; i++) {
        json_t *d =
            json_pack("{s:s, s:I, s:I}", "transport_endpoint", r[i].endpoint, "buffer_address",
                      (json_int_t)r[i].addr, "size", (json_int_t)r[i].size);
        if (!d || json_array_append_new(data, d)) {
            json_decref(data);
            data = NULL;
        }
    }
    free(r);
    if (!data) return MHD_NO;
    return ad_json(conn, MHD_HTTP_OK, json_pack("{s:b, s:o}", "success", 1, "data", data));
}

typedef struct {
    const char *name;
    int found;
    uint64_t used, cap;
} ad_find_seg_t;

static void ad_find_seg(const mc_master_segment_info_t *si, void *arg)
{
    ad_find_seg_t *q = arg;
    if (q->found || strcmp(si->seg.name, q->name) != 0) return;
    q->found = 1;
    q->used = si->used_bytes;
    q->cap = si->seg.size;
}

/* GET /query_segment?segment=NAME: upstream's three-line text. */
static enum MHD_Result ad_query_segment(mc_master_admin_t *a, struct MHD_Connection *conn,
                                        const char *url)
{
    ad_find_seg_t q = {ad_arg(conn, "segment"), 0, 0, 0};
    if (!q.name || !*q.name) return ad_refuse(conn, "GET", url, 400, "missing segment", NULL);
    mc_master_each_segment(a->m, ad_find_seg, &q);
    if (!q.found) return ad_text(conn, MHD_HTTP_NOT_FOUND, "segment not found\n");
    ad_stream_t s;
    if (ad_stream_open(&s)) return MHD_NO;
    fprintf(s.f, "%s\nUsed(bytes): %" PRIu64 "\nCapacity(bytes) : %" PRIu64 "\n", q.name, q.used,
            q.cap);
    return ad_stream_send(conn, &s, "text/plain; charset=utf-8");
}

static void ad_seg_detail(const mc_master_segment_info_t *si, void *arg)
{
    json_t *arr = arg;
    const mc_segment_t *g = &si->seg;
    char id[48], cid[48], base[24], human[32];
    snprintf(id, sizeof id, "%" PRIu64 "-%" PRIu64, g->id.hi, g->id.lo);
    snprintf(cid, sizeof cid, "%" PRIu64 "-%" PRIu64, si->client.hi, si->client.lo);
    snprintf(base, sizeof base, "0x%" PRIx64, g->base);
    ad_human(g->size, human, sizeof human);
    double pct = g->size ? 100.0 * (double)si->used_bytes / (double)g->size : 0.0;
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:I, s:I, s:f}", "segment_name", g->name,
        "segment_id", id, "client_id", cid, "base_address", base, "size_bytes", (json_int_t)g->size,
        "size_human", human, "te_endpoint", g->te_endpoint, "protocol", g->protocol, "status", "OK",
        "allocator_used_bytes", (json_int_t)si->used_bytes, "allocator_capacity_bytes",
        (json_int_t)g->size, "allocator_usage_percent", pct);
    if (o) json_array_append_new(arr, o);
}

static enum MHD_Result ad_segments_detail(mc_master_admin_t *a, struct MHD_Connection *conn)
{
    json_t *arr = json_array();
    if (!arr) return MHD_NO;
    mc_master_each_segment(a->m, ad_seg_detail, arr);
    return ad_json(conn, MHD_HTTP_OK,
                   json_pack("{s:I, s:o}", "total_segments", (json_int_t)json_array_size(arr),
                             "segments", arr));
}

static enum MHD_Result ad_remove_all(mc_master_admin_t *a, struct MHD_Connection *conn)
{
    int64_t n = mc_master_remove_all(a->m, 0, mc_now_ms());
    if (n < 0) return ad_json(conn, 500, ad_error_json((int)n, mc_err_name((int)n)));
    return ad_json(conn, MHD_HTTP_OK, json_pack("{s:I}", "removed_count", (json_int_t)n));
}

enum { AD_GET = 1, AD_POST = 2 };
typedef enum MHD_Result (*ad_fn)(mc_master_admin_t *a, struct MHD_Connection *conn,
                                 const char *url);

static enum MHD_Result ad_health(mc_master_admin_t *a, struct MHD_Connection *conn, const char *url)
{
    mc_master_ha_t *ha = atomic_load(&a->ha);
    if (!ha) {
        static const char body[] = "{\"status\":\"ok\",\"role\":\"master\",\"service_ready\":true}";
        return ad_send(conn, MHD_HTTP_OK, "application/json", (char *)body, sizeof body - 1, 0,
                       NULL);
    }
    mc_master_ha_info_t in;
    mc_master_ha_info(ha, &in);
    json_t *j = json_pack("{s:s,s:s,s:s,s:b}", "status", "ok", "role", in.role, "ha_state",
                          in.state, "service_ready", !strcmp(in.state, "serving"));
    if (j && in.leader_known) {
        json_object_set_new(j, "leader_address", json_string(in.leader));
        json_object_set_new(j, "view_version", json_integer((json_int_t)in.view));
    }
    return ad_json(conn, MHD_HTTP_OK, j);
}

/* /role and /ha_status: upstream's words as plain text ("leader" for a
 * master without HA, which always serves). */
static enum MHD_Result ad_role(mc_master_admin_t *a, struct MHD_Connection *conn, const char *url)
{
    mc_master_ha_t *ha = atomic_load(&a->ha);
    mc_master_ha_info_t in = {.role = "leader", .state = "serving"};
    if (ha) mc_master_ha_info(ha, &in);
    const char *t = strcmp(url, "/role") == 0 ? in.role : in.state;
    return ad_send(conn, MHD_HTTP_OK, "text/plain; charset=utf-8", (char *)t, strlen(t), 0, NULL);
}

static enum MHD_Result ad_leader(mc_master_admin_t *a, struct MHD_Connection *conn, const char *url)
{
    mc_master_ha_t *ha = atomic_load(&a->ha);
    mc_master_ha_info_t in = {0};
    if (ha) mc_master_ha_info(ha, &in);
    json_t *j = json_pack("{s:b}", "present", in.leader_known);
    if (j && in.leader_known) {
        json_object_set_new(j, "leader_address", json_string(in.leader));
        json_object_set_new(j, "view_version", json_integer((json_int_t)in.view));
    }
    return ad_json(conn, MHD_HTTP_OK, j);
}

void mc_master_admin_set_ha(mc_master_admin_t *a, mc_master_ha_t *ha)
{
    atomic_store(&a->ha, ha);
}

#define AD_WRAP(fn)                                                                                \
    static enum MHD_Result fn##_h(mc_master_admin_t *a, struct MHD_Connection *conn,               \
                                  const char *url)                                                 \
    {                                                                                              \
        return fn(a, conn);                                                                        \
    }
AD_WRAP(ad_metrics)
AD_WRAP(ad_summary)
AD_WRAP(ad_all_keys)
AD_WRAP(ad_all_segments)
AD_WRAP(ad_segments_detail)
AD_WRAP(ad_remove_all)

static const struct {
    const char *path;
    int method;
    ad_fn fn;
} ad_routes[] = {
    {"/metrics", AD_GET, ad_metrics_h},
    {"/metrics/summary", AD_GET, ad_summary_h},
    {"/health", AD_GET, ad_health},
    {"/role", AD_GET, ad_role},
    {"/ha_status", AD_GET, ad_role},
    {"/leader", AD_GET, ad_leader},
    {"/get_all_keys", AD_GET, ad_all_keys_h},
    {"/get_all_segments", AD_GET, ad_all_segments_h},
    {"/query_key", AD_GET, ad_query_key},
    {"/query_segment", AD_GET, ad_query_segment},
    {"/get_segments_detail", AD_GET, ad_segments_detail_h},
    {"/api/v1/remove_all", AD_POST, ad_remove_all_h},
};

/* 1 when url may be answered now: always without HA; with HA, the status
 * endpoints always, the others only while this master serves. */
static int ad_ha_ok(mc_master_admin_t *a, const char *url)
{
    mc_master_ha_t *ha = atomic_load(&a->ha);
    if (!ha) return 1;
    static const char *const always[] = {"/health", "/role",    "/ha_status",
                                         "/leader", "/metrics", "/metrics/summary"};
    for (size_t i = 0; i < sizeof always / sizeof always[0]; i++)
        if (!strcmp(url, always[i])) return 1;
    uint64_t view;
    return mc_master_ha_serving(ha, mc_now_ms(), &view);
}

/* Routes a complete request: 404 for an unknown path, 405 (with Allow) for
 * another method; HEAD is served as GET (MHD drops the body). */
static enum MHD_Result ad_route(mc_master_admin_t *a, struct MHD_Connection *conn, const char *url,
                                const char *method)
{
    for (size_t i = 0; i < sizeof ad_routes / sizeof ad_routes[0]; i++) {
        if (strcmp(url, ad_routes[i].path) != 0) continue;
        int m = !strcmp(method, MHD_HTTP_METHOD_GET) || !strcmp(method, MHD_HTTP_METHOD_HEAD)
                    ? AD_GET
                : !strcmp(method, MHD_HTTP_METHOD_POST) ? AD_POST
                                                        : 0;
        if (m != ad_routes[i].method)
            return ad_refuse(conn, method, url, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed",
                             ad_routes[i].method == AD_GET ? "GET, HEAD" : "POST");
        if (!ad_ha_ok(a, url)) /* a standby's index is not the pool's */
            return ad_json(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                           ad_error_json(MC_ERR_UNAVAILABLE_IN_CURRENT_MODE,
                                         "service plane is not active (not the leader)"));
        return ad_routes[i].fn(a, conn, url);
    }
    return ad_refuse(conn, method, url, MHD_HTTP_NOT_FOUND, "not found", NULL);
}

/* Access handler (MHD threads): first call after the headers (refuses large
 * bodies at once), then body chunks (dropped), then the answer. */
static enum MHD_Result ad_handle(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
    mc_master_admin_t *a = cls;
    if (!*con_cls) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        if (ci && ci->socket_context) ((ad_conn_t *)ci->socket_context)->requests++;
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > AD_MAX_BODY)
            return ad_refuse(conn, method, url, MHD_HTTP_CONTENT_TOO_LARGE,
                             "request body too large", NULL);
        *con_cls = &ad_mark;
        return MHD_YES;
    }
    if (*upload_size) {
        *upload_size = 0; /* admin requests take no body */
        return MHD_YES;
    }
    return ad_route(a, conn, url, method);
}

static void ad_conn_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                           enum MHD_ConnectionNotificationCode toe)
{
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        *socket_context = calloc(1, sizeof(ad_conn_t)); /* NULL only disables the log */
        return;
    }
    ad_conn_t *c = *socket_context;
    if (!c) return;
    if (c->requests == 0) {
        char peer[96];
        mc_http_peer(conn, peer, sizeof peer);
        MC_LOGW(ad_tag, "%s: connection closed without a valid HTTP request", peer);
    }
    free(c);
    *socket_context = NULL;
}

static void ad_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    MC_LOGW(ad_tag, "mhd: %s", line);
}

/* Binds host:port itself (port 0 and the bound port are ours to report) and
 * hands the socket to MHD, which closes it on stop. */
int mc_master_admin_start(mc_master_t *m, const char *host, uint16_t port,
                          mc_master_admin_metrics_fn extra, void *extra_arg,
                          mc_master_admin_t **out)
{
    int fd = -1, rc;
    mc_master_admin_t *a = calloc(1, sizeof *a);
    if (!a) return -ENOMEM;
    a->m = m;
    a->extra = extra;
    a->extra_arg = extra_arg;
    mc_http_listener_init(&a->http, ad_tag, MC_HTTP_MAX_CONNECTIONS_DEFAULT, MC_HTTP_PER_IP_DEFAULT,
                          MC_HTTP_IDLE_TIMEOUT_DEFAULT_S);
    rc = mc_sock_listen(host, port, 128, &fd, &a->port);
    if (rc) {
        MC_LOGE(ad_tag, "cannot listen on %s:%u: %s", host && *host ? host : "0.0.0.0", port,
                strerror(-rc));
        goto fail;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); /* shared by the pool threads */
    const struct MHD_OptionItem opts[] = {
        {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)ad_mhd_log, a},
        {MHD_OPTION_LISTEN_SOCKET, fd, NULL},
        {MHD_OPTION_THREAD_POOL_SIZE, AD_THREADS, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    a->http.notify = ad_conn_notify;
    a->http.notify_cls = a;
    mc_http_listener_start(&a->http,
                           MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG, 0,
                           ad_handle, a, opts);
    fd = -1; /* MHD's now (see mc_metasrv_start on a failed start) */
    if (!a->http.mhd) {
        MC_LOGE(ad_tag, "libmicrohttpd failed to start on port %u", a->port);
        rc = -EIO;
        goto fail;
    }
    *out = a;
    return 0;
fail:
    if (fd >= 0) close(fd);
    mc_http_listener_stop(&a->http);
    free(a);
    return rc;
}

uint16_t mc_master_admin_port(const mc_master_admin_t *a)
{
    return a->port;
}

void mc_master_admin_stop(mc_master_admin_t *a)
{
    if (!a) return;
    mc_http_listener_stop(&a->http);
    free(a);
}
