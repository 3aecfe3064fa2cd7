/* master_admin.c: the master's admin/metrics HTTP server (endpoints in
 * master_admin.h). libmicrohttpd with a small pool of internal poll threads
 * serves the requests; every answer is computed from master_service.h calls
 * at request time (no cache: /metrics is scraped every few seconds at most,
 * and each call costs a pass over the segment table or the stats counters).
 * Bodies are built with open_memstream or jansson and handed to MHD, which
 * frees them. Requests carry no body but upstream's drain-job creation
 * (POST /api/v1/drain_jobs with a JSON object, read into a per-request
 * buffer); one announced over AD_MAX_BODY is refused with 413, other bodies
 * are read and dropped. Nothing a client sends
 * stops the server: refused requests and connections that closed without a
 * valid request are logged in one line naming the peer.
 *
 * Endpoints that change state (AD_MUT: remove_all, drain jobs) are served
 * only to a request carrying the admin key (--admin_api_key or
 * MC_ADMIN_API_KEY; "Authorization: Bearer KEY" or "X-API-Key: KEY"),
 * compared in constant time (SHA-256 of both, then CRYPTO_memcmp); with no
 * key configured, only when the server is bound to a loopback address. GET /
 * is the dashboard for browsers (Accept: text/html) and the list of
 * endpoints otherwise; GET /api is that list as JSON. */
#include "master_admin.h"

#include "master_dash.h"
#include "master_drain.h"
#include "master_ha.h"
#include "master_metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "base_log.h"
#include "base_time.h"
#include "net_http.h"
#include "net_sock.h"
#include "base_version.h"

#define AD_THREADS 2
#define AD_MAX_BODY 65536

struct mc_master_admin {
    mc_master_t *m;
    mc_master_ha_t *_Atomic ha; /* NULL without --enable_ha */
    mc_http_listener_t http;    /* limits: net_http.h defaults, MC_HTTP_* to tune */
    uint16_t port;
    mc_master_admin_metrics_fn extra;
    void *extra_arg;
    int has_key;               /* an admin key is configured */
    unsigned char key_sha[32]; /* its SHA-256 */
    int loopback;              /* bound to a loopback address */
    uint64_t start_unix_ms, start_mono_ms;
    mc_master_drains_t *drains;
};

static const char *const ad_tag = "admin";
static int ad_mark; /* con_cls of a request in progress (no per-request state) */

/* The body of a request that takes one (ad_takes_body), its con_cls. */
typedef struct {
    size_t len;
    int over; /* more than AD_MAX_BODY arrived (no Content-Length announced it) */
    char buf[];
} ad_body_t;
/* The body of the request being routed on this MHD thread (NULL: none). */
static _Thread_local const ad_body_t *ad_cur_body;

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

static int ad_leading(mc_master_admin_t *a)
{
    mc_master_ha_t *ha = atomic_load(&a->ha);
    uint64_t view;
    return !ha || mc_master_ha_serving(ha, mc_now_ms(), &view);
}

static enum MHD_Result ad_metrics(mc_master_admin_t *a, struct MHD_Connection *conn)
{
    ad_stream_t s;
    if (ad_stream_open(&s)) return MHD_NO;
    mc_master_metrics_info_t in = {a->start_unix_ms, a->start_mono_ms, ad_leading(a)};
    mc_master_metrics_write(s.f, a->m, &in);
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
            "Mooncake master %s\n"
            "Storage: %s used of %s (%.1f%%)\n"
            "Keys: %" PRIu64 " (soft-pinned %" PRIu64 ")\n"
            "Clients: %" PRIu64 " active, segments: %" PRIu64 "\n"
            "Evicted: %" PRIu64 " keys, %s\n"
            "Unfinished puts: %" PRIu64 " discarded, %" PRIu64 " released\n",
            mc_version(), used, cap, pct, st.key_count, st.soft_pin_key_count, st.active_clients,
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

/* ---- drain jobs (master_drain.h), the dashboard, the endpoint list ---- */

/* The decimal query argument name as an id; 0 when absent or bad. */
static uint64_t ad_arg_id(struct MHD_Connection *conn, const char *name)
{
    const char *v = ad_arg(conn, name);
    if (!v || !*v) return 0;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    return errno || *end ? 0 : (uint64_t)x;
}

static enum MHD_Result ad_drain_answer(struct MHD_Connection *conn, int rc, json_t *j,
                                       const char *what)
{
    if (rc == 0) return ad_json(conn, MHD_HTTP_OK, j);
    if (j) { /* a job already drains that segment */
        json_object_set_new(j, "success", json_false());
        json_object_set_new(j, "error_message", json_string("a drain job already runs on it"));
        return ad_json(conn, MHD_HTTP_CONFLICT, j);
    }
    unsigned st = rc == MC_ERR_INTERNAL ? 500 : MHD_HTTP_NOT_FOUND;
    return ad_json(conn, st, ad_error_json(rc, what));
}

/* Upstream's HTTP status of an error code (WriteErrorResponse's mapping). */
static unsigned ad_err_status(int rc)
{
    switch (rc) {
    case MC_ERR_INVALID_PARAMS: return MHD_HTTP_BAD_REQUEST;
    case MC_ERR_SEGMENT_NOT_FOUND: return MHD_HTTP_NOT_FOUND;
    case MC_ERR_UNAVAILABLE_IN_CURRENT_STATUS: return MHD_HTTP_CONFLICT;
    default: return MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
}

/* A JSON array of strings (at most max) into v[]: the count, or -1. */
static int ad_str_array(json_t *arr, const char **v, int max)
{
    if (!json_is_array(arr) || (int)json_array_size(arr) > max) return -1;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const char *x = json_string_value(json_array_get(arr, i));
        if (!x || !*x || strlen(x) >= MC_NAME_MAX) return -1;
        v[i] = x;
    }
    return (int)json_array_size(arr);
}

/* POST /api/v1/drain_jobs with upstream's body {"segments": [NAME],
 * "target_segments": [...], "max_concurrency": N}: one segment per job here;
 * the segment stays DRAINED after a success. Answer: upstream's
 * {"success", "job_id", "status": "CREATED", "error_code", "error_message"}
 * and our job as "job". */
static enum MHD_Result ad_drain_start_body(mc_master_admin_t *a, struct MHD_Connection *conn,
                                           const char *url, const ad_body_t *b)
{
    json_error_t err;
    json_t *req = b->over ? NULL : json_loadb(b->buf, b->len, JSON_REJECT_DUPLICATES, &err);
    const char *segs[2], *tg[64];
    int ns = -1, nt = 0;
    json_int_t conc = 0;
    char why[256] = "";
    if (!json_is_object(req)) {
        snprintf(why, sizeof why, "Invalid JSON body: %s",
                 b->over ? "over 64 KiB" : req ? "not an object" : err.text);
    } else {
        json_t *mc = json_object_get(req, "max_concurrency");
        ns = ad_str_array(json_object_get(req, "segments"), segs, 2);
        json_t *t = json_object_get(req, "target_segments");
        nt = t && !json_is_null(t) ? ad_str_array(t, tg, 64) : 0;
        conc = mc ? (json_is_integer(mc) ? json_integer_value(mc) : -1) : 0;
        if (ns < 1)
            snprintf(why, sizeof why, "segments: a list of one or more segment names");
        else if (ns > 1)
            snprintf(why, sizeof why, "segments: one segment per drain job here");
        else if (nt < 0)
            snprintf(why, sizeof why, "target_segments: a list of segment names (at most 64)");
        else if (conc < 0 || (mc && conc == 0))
            snprintf(why, sizeof why, "max_concurrency: a positive integer");
        for (int i = 0; !why[0] && i < nt; i++)
            for (int k = 0; k < i; k++)
                if (!strcmp(tg[i], tg[k])) snprintf(why, sizeof why, "target_segments: duplicates");
    }
    if (why[0]) {
        json_decref(req);
        MC_LOGW(ad_tag, "POST %s refused: %s", url, why);
        return ad_json(conn, MHD_HTTP_BAD_REQUEST, ad_error_json(MC_ERR_INVALID_PARAMS, why));
    }
    json_t *j = NULL;
    int rc = mc_master_drain_start_opts(a->drains, segs[0], tg, (size_t)nt, (uint64_t)conc, 1, &j);
    json_decref(req);
    if (rc) {
        json_decref(j);
        const char *what = rc == MC_ERR_SEGMENT_NOT_FOUND ? "segment not mounted"
                           : j                            ? "a drain job already runs on it"
                                                          : mc_err_name(rc);
        return ad_json(conn, j && rc == MC_ERR_INVALID_PARAMS ? MHD_HTTP_CONFLICT
                                                               : ad_err_status(rc),
                       ad_error_json(rc, what));
    }
    json_t *o = json_pack("{s:b, s:O, s:s, s:i, s:s, s:o}", "success", 1, "job_id",
                          json_object_get(j, "job_id"), "status", "CREATED", "error_code", 0,
                          "error_message", "", "job", j);
    return ad_json(conn, MHD_HTTP_OK, o);
}

/* POST /api/v1/drain_jobs?segment=NAME, or upstream's JSON body */
static enum MHD_Result ad_drain_start(mc_master_admin_t *a, struct MHD_Connection *conn,
                                      const char *url)
{
    if (ad_cur_body && ad_cur_body->len) return ad_drain_start_body(a, conn, url, ad_cur_body);
    const char *seg = ad_arg(conn, "segment");
    if (!seg || !*seg) return ad_refuse(conn, "POST", url, 400, "missing segment", NULL);
    json_t *j = NULL;
    int rc = mc_master_drain_start(a->drains, seg, &j);
    return ad_drain_answer(
        conn, rc, j, rc == MC_ERR_SEGMENT_NOT_FOUND ? "segment not mounted" : mc_err_name(rc));
}

/* GET /api/v1/drain_jobs (every job) and /api/v1/drain_jobs/query?job_id=N */
static enum MHD_Result ad_drain_query(mc_master_admin_t *a, struct MHD_Connection *conn,
                                      const char *url)
{
    uint64_t id = 0;
    if (strcmp(url, "/api/v1/drain_jobs") != 0 && !(id = ad_arg_id(conn, "job_id")))
        return ad_refuse(conn, "GET", url, 400, "missing or bad job_id", NULL);
    json_t *j = NULL;
    int rc = mc_master_drain_query(a->drains, id, &j);
    return ad_drain_answer(conn, rc, j, "no such drain job");
}

/* POST /api/v1/drain_jobs/cancel?job_id=N */
static enum MHD_Result ad_drain_cancel(mc_master_admin_t *a, struct MHD_Connection *conn,
                                       const char *url)
{
    uint64_t id = ad_arg_id(conn, "job_id");
    if (!id) return ad_refuse(conn, "POST", url, 400, "missing or bad job_id", NULL);
    json_t *j = NULL;
    int rc = mc_master_drain_cancel(a->drains, id, &j);
    return ad_drain_answer(conn, rc, j, "no such drain job");
}

/* GET /api/v1/segments/status?segment=NAME: upstream's segment status */
static enum MHD_Result ad_segment_status(mc_master_admin_t *a, struct MHD_Connection *conn,
                                         const char *url)
{
    const char *seg = ad_arg(conn, "segment");
    if (!seg || !*seg)
        return ad_json(conn, MHD_HTTP_BAD_REQUEST,
                       ad_error_json(MC_ERR_INVALID_PARAMS, "Missing segment query parameter"));
    const char *name = NULL;
    int code = 0;
    int rc = mc_master_drain_segment_status(a->drains, seg, &name, &code);
    (void)url;
    if (rc) return ad_json(conn, MHD_HTTP_NOT_FOUND, ad_error_json(rc, "segment not mounted"));
    return ad_json(conn, MHD_HTTP_OK,
                   json_pack("{s:b, s:s, s:i, s:s, s:i, s:s}", "success", 1, "segment", seg,
                             "status", code, "status_name", name, "error_code", 0,
                             "error_message", ""));
}

static enum MHD_Result ad_status(mc_master_admin_t *a, struct MHD_Connection *conn, const char *url)
{
    json_t *j =
        mc_master_dash_status(a->m, atomic_load(&a->ha), a->start_unix_ms, a->start_mono_ms);
    if (j) json_object_set_new(j, "admin_key_required", json_boolean(a->has_key || !a->loopback));
    return ad_json(conn, MHD_HTTP_OK, j);
}

static enum MHD_Result ad_asset(mc_master_admin_t *a, struct MHD_Connection *conn, const char *url)
{
    const mc_master_dash_asset_t *d = mc_master_dash_asset(url);
    if (!d) return ad_refuse(conn, "GET", url, MHD_HTTP_NOT_FOUND, "not found", NULL);
    return ad_send(conn, MHD_HTTP_OK, d->ctype, (char *)d->data, d->len, 0, NULL);
}

static enum MHD_Result ad_index(mc_master_admin_t *a, struct MHD_Connection *conn, const char *url);
static enum MHD_Result ad_api(mc_master_admin_t *a, struct MHD_Connection *conn, const char *url);

enum { AD_MUT = 1, AD_ALWAYS = 2, AD_PREFIX = 4 }; /* route flags */

static const struct {
    const char *path;
    int method;
    ad_fn fn;
    int flags;
    const char *help;
} ad_routes[] = {
    {"/", AD_GET, ad_index, AD_ALWAYS,
     "the dashboard (browsers, Accept: text/html); this list otherwise"},
    {"/api", AD_GET, ad_api, AD_ALWAYS, "this list as JSON"},
    {"/metrics", AD_GET, ad_metrics_h, AD_ALWAYS, "Prometheus text"},
    {"/metrics/summary", AD_GET, ad_summary_h, AD_ALWAYS, "human-readable summary"},
    {"/health", AD_GET, ad_health, AD_ALWAYS, "liveness and HA state (JSON)"},
    {"/role", AD_GET, ad_role, AD_ALWAYS, "leader or standby"},
    {"/ha_status", AD_GET, ad_role, AD_ALWAYS, "serving, standby or candidate"},
    {"/leader", AD_GET, ad_leader, AD_ALWAYS, "the leader's RPC address (JSON)"},
    {"/api/v1/status", AD_GET, ad_status, AD_ALWAYS,
     "role, leader, totals, segments and clients with heartbeat age (JSON)"},
    {"/get_all_keys", AD_GET, ad_all_keys_h, 0, "every key, one a line"},
    {"/get_all_segments", AD_GET, ad_all_segments_h, 0, "every segment name, one a line"},
    {"/query_key", AD_GET, ad_query_key, 0, "?key=K: its replicas (grants a read lease)"},
    {"/query_segment", AD_GET, ad_query_segment, 0, "?segment=NAME: its usage"},
    {"/get_segments_detail", AD_GET, ad_segments_detail_h, 0, "every segment in detail (JSON)"},
    {"/api/v1/remove_all", AD_POST, ad_remove_all_h, AD_MUT,
     "removes every object without a lease or a put in progress"},
    {"/api/v1/drain_jobs", AD_POST, ad_drain_start, AD_MUT,
     "?segment=NAME (or upstream's JSON body): no new replicas there until it is empty"},
    {"/api/v1/segments/status", AD_GET, ad_segment_status, 0,
     "?segment=NAME: OK, DRAINING or DRAINED (JSON)"},
    {"/api/v1/drain_jobs", AD_GET, ad_drain_query, 0, "every drain job"},
    {"/api/v1/drain_jobs/query", AD_GET, ad_drain_query, 0, "?job_id=N: one drain job"},
    {"/api/v1/drain_jobs/cancel", AD_POST, ad_drain_cancel, AD_MUT,
     "?job_id=N: the segment takes new replicas again"},
    {"/dashboard/", AD_GET, ad_asset, AD_ALWAYS | AD_PREFIX, "the dashboard's files"},
};
#define AD_NROUTES (sizeof ad_routes / sizeof ad_routes[0])

static enum MHD_Result ad_index(mc_master_admin_t *a, struct MHD_Connection *conn, const char *url)
{
    const char *acc = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
    if (acc && strstr(acc, "text/html")) return ad_asset(a, conn, "/dashboard/index.html");
    ad_stream_t s;
    if (ad_stream_open(&s)) return MHD_NO;
    fprintf(s.f,
            "mooncake_master %s admin endpoints (JSON: GET /api; dashboard: open / in a "
            "browser)\n",
            mc_version());
    for (size_t i = 0; i < AD_NROUTES; i++)
        fprintf(s.f, "%-5s %-28s %s%s\n", ad_routes[i].method == AD_GET ? "GET" : "POST",
                ad_routes[i].path, ad_routes[i].help,
                ad_routes[i].flags & AD_MUT ? " [needs the admin key]" : "");
    if (!a->has_key)
        fprintf(s.f,
                "\nNo admin key is configured (--admin_api_key, MC_ADMIN_API_KEY): endpoints "
                "that change state are served %s.\n",
                a->loopback ? "because this server is bound to loopback"
                            : "to nobody, since this server is not bound to loopback");
    return ad_stream_send(conn, &s, "text/plain; charset=utf-8");
}

static enum MHD_Result ad_api(mc_master_admin_t *a, struct MHD_Connection *conn, const char *url)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < AD_NROUTES; i++)
        json_array_append_new(
            arr, json_pack("{s:s, s:s, s:b, s:s}", "path", ad_routes[i].path, "method",
                           ad_routes[i].method == AD_GET ? "GET" : "POST", "mutating",
                           (ad_routes[i].flags & AD_MUT) != 0, "description", ad_routes[i].help));
    if (!arr) return MHD_NO;
    return ad_json(conn, MHD_HTTP_OK,
                   json_pack("{s:s, s:o, s:b, s:b}", "version", mc_version(), "endpoints", arr,
                             "admin_key_configured", a->has_key, "loopback", a->loopback));
}

int mc_master_admin_sockaddr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a6)) return 1;
        return IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127;
    }
    return 0;
}

static int ad_sha256(const char *s, size_t n, unsigned char out[32])
{
    unsigned int len = 0;
    return EVP_Digest(s, n, out, &len, EVP_sha256(), NULL) == 1 && len == 32 ? 0 : -1;
}

/* The key the request presents: "Authorization: Bearer KEY" or "X-API-Key". */
static const char *ad_presented_key(struct MHD_Connection *conn)
{
    const char *auth =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (auth && !strncasecmp(auth, "Bearer ", 7)) return auth + 7;
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-API-Key");
}

/* 0 when a state-changing request may be served; otherwise answers it (401
 * or 403, logged with the peer) and returns 1. */
static int ad_auth_refuses(mc_master_admin_t *a, struct MHD_Connection *conn, const char *method,
                           const char *url, enum MHD_Result *ret)
{
    const char *why;
    unsigned status;
    if (!a->has_key) {
        if (a->loopback) return 0;
        status = MHD_HTTP_FORBIDDEN;
        why = "this endpoint changes state and no admin key is configured: start the master with "
              "--admin_api_key (or MC_ADMIN_API_KEY) and send \"Authorization: Bearer KEY\", or "
              "bind the admin server to loopback (--metrics_host=127.0.0.1)";
    } else {
        const char *k = ad_presented_key(conn);
        unsigned char got[32];
        if (k && ad_sha256(k, strlen(k), got) == 0 && CRYPTO_memcmp(got, a->key_sha, 32) == 0)
            return 0;
        status = MHD_HTTP_UNAUTHORIZED;
        why = k ? "wrong admin key"
                : "this endpoint changes state: send the admin key "
                  "(\"Authorization: Bearer KEY\" or \"X-API-Key: KEY\")";
    }
    char peer[96];
    mc_http_peer(conn, peer, sizeof peer);
    MC_LOGW(ad_tag, "%s: %s %s -> %u %s", peer, method, url, status,
            status == MHD_HTTP_FORBIDDEN ? "refused: no admin key configured, not on loopback"
                                         : why);
    *ret = ad_json(conn, status, ad_error_json(MC_ERR_UNAVAILABLE_IN_CURRENT_MODE, why));
    return 1;
}

static int ad_path_is(size_t i, const char *url)
{
    if (ad_routes[i].flags & AD_PREFIX)
        return !strncmp(url, ad_routes[i].path, strlen(ad_routes[i].path));
    return !strcmp(url, ad_routes[i].path);
}

/* 1 when route i may be answered now: always without HA; with HA, the status
 * endpoints always, the others only while this master serves. */
static int ad_ha_ok(mc_master_admin_t *a, size_t i)
{
    mc_master_ha_t *ha = atomic_load(&a->ha);
    if (!ha || (ad_routes[i].flags & AD_ALWAYS)) return 1;
    uint64_t view;
    return mc_master_ha_serving(ha, mc_now_ms(), &view);
}

/* Routes a complete request: 404 for an unknown path, 405 (with Allow) for
 * another method; HEAD is served as GET (MHD drops the body). */
static enum MHD_Result ad_route(mc_master_admin_t *a, struct MHD_Connection *conn, const char *url,
                                const char *method)
{
    int m = !strcmp(method, MHD_HTTP_METHOD_GET) || !strcmp(method, MHD_HTTP_METHOD_HEAD) ? AD_GET
            : !strcmp(method, MHD_HTTP_METHOD_POST)                                       ? AD_POST
                                                                                          : 0;
    int allow = 0;
    for (size_t i = 0; i < AD_NROUTES; i++) {
        if (!ad_path_is(i, url)) continue;
        allow |= ad_routes[i].method;
        if (m != ad_routes[i].method) continue;
        if (!ad_ha_ok(a, i)) /* a standby's index is not the pool's */
            return ad_json(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                           ad_error_json(MC_ERR_UNAVAILABLE_IN_CURRENT_MODE,
                                         "service plane is not active (not the leader)"));
        enum MHD_Result ret;
        if ((ad_routes[i].flags & AD_MUT) && !mc_http_listener_authorize(&a->http, conn, &ret))
            return ret;
        if ((ad_routes[i].flags & AD_MUT) && ad_auth_refuses(a, conn, method, url, &ret))
            return ret;
        ret = ad_routes[i].fn(a, conn, url);
        /* MHD sends the queued answer after we return: the journal goes first */
        if (ad_routes[i].flags & AD_MUT) mc_master_journal_flush(a->m);
        return ret;
    }
    if (allow)
        return ad_refuse(conn, method, url, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed",
                         allow == AD_GET    ? "GET, HEAD"
                         : allow == AD_POST ? "POST"
                                            : "GET, HEAD, POST");
    return ad_refuse(conn, method, url, MHD_HTTP_NOT_FOUND, "not found", NULL);
}

/* 1 for the requests whose body is read: upstream's drain-job creation. */
static int ad_takes_body(const char *method, const char *url)
{
    return !strcmp(method, MHD_HTTP_METHOD_POST) && !strcmp(url, "/api/v1/drain_jobs");
}

/* MHD's request-completed callback: frees a request's body. */
static void ad_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    if (*con_cls && *con_cls != &ad_mark) free(*con_cls);
    *con_cls = NULL;
}

/* Access handler (MHD threads): first call after the headers (refuses large
 * bodies at once), then body chunks (kept for ad_takes_body, else dropped),
 * then the answer. */
static enum MHD_Result ad_handle(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
    mc_master_admin_t *a = cls;
    if (!*con_cls) {
        mc_http_listener_saw_request(conn);
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > AD_MAX_BODY)
            return ad_refuse(conn, method, url, MHD_HTTP_CONTENT_TOO_LARGE,
                             "request body too large", NULL);
        ad_body_t *b = ad_takes_body(method, url) ? calloc(1, sizeof *b + AD_MAX_BODY) : NULL;
        *con_cls = b ? (void *)b : (void *)&ad_mark;
        return MHD_YES;
    }
    if (*upload_size) {
        if (*con_cls != &ad_mark) {
            ad_body_t *b = *con_cls;
            size_t n = *upload_size;
            if (n > AD_MAX_BODY - b->len) {
                b->over = 1;
                n = AD_MAX_BODY - b->len;
            }
            memcpy(b->buf + b->len, upload, n);
            b->len += n;
        }
        *upload_size = 0; /* other admin requests take no body */
        return MHD_YES;
    }
    ad_cur_body = *con_cls != &ad_mark ? *con_cls : NULL;
    enum MHD_Result ret = ad_route(a, conn, url, method);
    ad_cur_body = NULL;
    return ret;
}

/* Binds host:port itself (port 0 and the bound port are ours to report) and
 * hands the socket to MHD, which closes it on stop. */
int mc_master_admin_start(mc_master_t *m, const char *host, uint16_t port,
                          mc_master_admin_metrics_fn extra, void *extra_arg,
                          mc_master_admin_t **out)
{
    mc_master_admin_opts_t o = {.host = host, .port = port, .extra = extra, .extra_arg = extra_arg};
    return mc_master_admin_start_opts(m, &o, out);
}

int mc_master_admin_start_opts(mc_master_t *m, const mc_master_admin_opts_t *o,
                               mc_master_admin_t **out)
{
    int fd = -1, rc;
    const char *host = o->host;
    uint16_t port = o->port;
    mc_master_admin_t *a = calloc(1, sizeof *a);
    if (!a) return -ENOMEM;
    a->m = m;
    a->extra = o->extra;
    a->extra_arg = o->extra_arg;
    a->start_mono_ms = mc_now_ms();
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    a->start_unix_ms = (uint64_t)wall.tv_sec * 1000u + (uint64_t)wall.tv_nsec / 1000000u;
    const char *key = o->api_key && *o->api_key ? o->api_key : getenv("MC_ADMIN_API_KEY");
    if (key && *key) {
        if (ad_sha256(key, strlen(key), a->key_sha)) {
            rc = -EIO;
            goto fail;
        }
        a->has_key = 1;
    }
    a->drains = mc_master_drains_new(m);
    if (!a->drains) {
        rc = -ENOMEM;
        goto fail;
    }
    mc_http_listener_init(&a->http, ad_tag, MC_HTTP_MAX_CONNECTIONS_DEFAULT, MC_HTTP_PER_IP_DEFAULT,
                          MC_HTTP_IDLE_TIMEOUT_DEFAULT_S);
    a->http.auth_key = mc_auth_cluster_key(); /* mutating endpoints need its proof too */
    a->http.auth_service = "admin";
    a->http.tls = 1; /* HTTPS with the process's TLS files, if any */
    rc = mc_sock_listen(host, port, 128, &fd, &a->port);
    if (rc) {
        MC_LOGE(ad_tag, "cannot listen on %s:%u: %s", host && *host ? host : "0.0.0.0", port,
                strerror(-rc));
        goto fail;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    a->loopback = getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
                  mc_master_admin_sockaddr_is_loopback((struct sockaddr *)&ss);
    mc_auth_note_listener(ad_tag, "master admin (its state-changing endpoints)", host, a->port);
    if (!a->has_key && !a->loopback)
        MC_LOGI(ad_tag, "no admin key (--admin_api_key, MC_ADMIN_API_KEY) and not bound to "
                        "loopback: endpoints that change state (remove_all, drain jobs) are "
                        "refused");
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); /* shared by the pool threads */
    const struct MHD_OptionItem opts[] = {
        {MHD_OPTION_LISTEN_SOCKET, fd, NULL},
        {MHD_OPTION_THREAD_POOL_SIZE, AD_THREADS, NULL},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)ad_completed, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    a->http.log_silent = 1;
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
    mc_master_drains_free(a->drains);
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
    mc_master_drains_free(a->drains);
    free(a);
}
