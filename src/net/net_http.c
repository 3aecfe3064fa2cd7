/* net_http.c: the libmicrohttpd helpers of net_http.h: peer names, one-shot
 * answers, and the listener wrapper every MHD server starts through, which
 * sets the connection limit, a per-IP limit and the idle timeout explicitly
 * and logs (rate-limited) when a limit turns a client away. */
#include "net_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "base_env.h"
#include "base_log.h"
#include "base_map.h"
#include "base_time.h"
#include "net_sock.h"
#include "net_tls.h"

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

void mc_http_peer(struct MHD_Connection *conn, char *buf, size_t len)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    mc_sock_addr_str(ci ? ci->client_addr : NULL, buf, len);
}

/* Per-connection state of a log_silent or auth_key listener (MHD's socket_context),
 * touched by the connection's own MHD thread only. */
typedef struct {
    unsigned long requests;
    int tls_ok;                    /* its client certificate was checked and is good */
    int authed;                    /* proved the cluster secret */
    uint8_t ns[MC_AUTH_NONCE_LEN]; /* the server nonce it proved against */
    /* the proof headers of the answer to the current request, if any */
    char ans_nonce[2 * MC_AUTH_NONCE_LEN + 1], ans_mac[2 * MC_AUTH_MAC_LEN + 1];
} listener_conn_t;

struct http_challenge {
    uint8_t nc[MC_AUTH_NONCE_LEN], ns[MC_AUTH_NONCE_LEN];
    uint64_t at_ms; /* 0: free */
};
#define CHALLENGE_TTL_MS 30000

enum MHD_Result mc_http_send(struct MHD_Connection *conn, unsigned status, const char *ctype,
                             const char *body, size_t len, enum MHD_ResponseMemoryMode mode,
                             const char *allow)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, mode);
    if (!r) {
        if (mode == MHD_RESPMEM_MUST_FREE) free((void *)body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (allow) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    listener_conn_t *lc = ci ? ci->socket_context : NULL;
    if (lc && lc->ans_mac[0]) { /* this answer's proof (mc_http_listener_authorize) */
        MHD_add_response_header(r, MC_HTTP_AUTH_NONCE, lc->ans_nonce);
        MHD_add_response_header(r, MC_HTTP_AUTH_MAC, lc->ans_mac);
        lc->ans_mac[0] = '\0';
    }
    if (status == MHD_HTTP_CONTENT_TOO_LARGE)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* ------------------------------------------------------------ listeners
 *
 * The per-IP count is ours rather than MHD_OPTION_PER_IP_CONNECTION_LIMIT so
 * that a refusal can name its peer: the accept-policy callback (run by MHD on
 * the accepting thread, after its own total-limit check) admits and counts a
 * connection under the lock, and the CLOSED notification gives the count
 * back. MHD pairs STARTED and CLOSED; between a policy "yes" and STARTED it
 * can only fail on an allocation or epoll_ctl failure, where one count of that
 * address leaks (it then admits one connection fewer). */

static void ip_key(const struct sockaddr *sa, char *buf, size_t len)
{
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, (socklen_t)len);
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf, (socklen_t)len);
    else
        snprintf(buf, len, "?");
}

/* Logs the refusals counted since the last line, at most once per
 * MC_HTTP_REFUSAL_LOG_MS. Caller holds l->lock. */
static void refusal_log_locked(mc_http_listener_t *l, const char *peer, const char *why)
{
    uint64_t now = mc_now_ms();
    if (now < l->next_log_ms) return;
    l->next_log_ms = now + MC_HTTP_REFUSAL_LOG_MS;
    MC_LOGW(l->tag,
            "%s: %s (since the last report: %lu refused over the per-IP limit of %u, %lu "
            "times at the limit of %u connections; next report in %u s at the earliest)",
            peer, why, l->refused_ip, l->per_ip, l->at_limit, l->max_conns,
            MC_HTTP_REFUSAL_LOG_MS / 1000);
    l->refused_ip = l->at_limit = 0;
}

static enum MHD_Result listener_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    mc_http_listener_t *l = cls;
    (void)addrlen;
    if (!l->per_ip) return MHD_YES;
    char key[INET6_ADDRSTRLEN];
    ip_key(addr, key, sizeof key);
    enum MHD_Result ok = MHD_YES;
    pthread_mutex_lock(&l->lock);
    uintptr_t n = (uintptr_t)mc_map_get(l->ips, key);
    if (n >= l->per_ip) {
        ok = MHD_NO;
        l->refused_ip++;
        char peer[96];
        mc_sock_addr_str(addr, peer, sizeof peer);
        refusal_log_locked(l, peer, "connection refused: per-IP connection limit reached");
    } else if (mc_map_put(l->ips, key, (void *)(n + 1), NULL) != 0) {
        ok = MHD_NO; /* out of memory: refuse rather than admit uncounted */
    }
    pthread_mutex_unlock(&l->lock);
    return ok;
}

/* Logs a refusal for the secret: one line naming the peer, at most one per
 * second with the count since the last. */
static void auth_log(mc_http_listener_t *l, struct MHD_Connection *conn, const char *why)
{
    char peer[96];
    mc_http_peer(conn, peer, sizeof peer);
    mc_auth_refused(&l->auth_refusals, l->tag, peer, why);
}

/* Queues a refusal: status with a JSON error; 403 also closes. */
static enum MHD_Result auth_answer(struct MHD_Connection *conn, unsigned status, const char *json,
                                   const char *nonce, const char *mac)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(json), (void *)json, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (nonce) {
        MHD_add_response_header(r, MC_HTTP_AUTH_NONCE, nonce);
        MHD_add_response_header(r, MC_HTTP_AUTH_MAC, mac);
    }
    if (status == MHD_HTTP_FORBIDDEN)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* The server nonce of the outstanding challenge to nc, taken out (used
 * once); 0 when there is none (never issued, used, replaced or expired). */
static int challenge_take(mc_http_listener_t *l, const uint8_t *nc, uint8_t *ns, uint64_t now)
{
    int found = 0;
    pthread_mutex_lock(&l->lock);
    for (size_t i = 0; l->challenges && i < MC_HTTP_CHALLENGES && !found; i++) {
        struct http_challenge *ch = &l->challenges[i];
        if (ch->at_ms && now - ch->at_ms <= CHALLENGE_TTL_MS &&
            !memcmp(ch->nc, nc, MC_AUTH_NONCE_LEN)) {
            memcpy(ns, ch->ns, MC_AUTH_NONCE_LEN);
            ch->at_ms = 0;
            found = 1;
        }
    }
    pthread_mutex_unlock(&l->lock);
    return found;
}

int mc_http_listener_authorize(mc_http_listener_t *l, struct MHD_Connection *conn,
                               enum MHD_Result *ret)
{
    if (!l->auth_key) return 1;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    listener_conn_t *c = ci ? ci->socket_context : NULL;
    if (!c) { /* no memory for its state: close rather than serve unproved */
        *ret = MHD_NO;
        return 0;
    }
    c->ans_mac[0] = '\0'; /* a proof is for the answer to this request only */
    const char *hello = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MC_HTTP_AUTH_HELLO);
    const char *proof = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MC_HTTP_AUTH_PROOF);
    uint8_t nc[MC_AUTH_NONCE_LEN], ns[MC_AUTH_NONCE_LEN], mac[MC_AUTH_MAC_LEN];
    int have_nc = 0;
    if (hello) {
        int pr = mc_auth_parse_hello(hello, nc);
        if (pr == -EPROTO) {
            auth_log(l, conn, "a handshake version this server does not speak (it speaks 1)");
            *ret = auth_answer(conn, MHD_HTTP_BAD_REQUEST,
                               "{\"error\":\"cluster secret handshake version: this server speaks "
                               "1\"}",
                               NULL, NULL);
            return 0;
        }
        have_nc = pr == 0;
    }
    uint64_t now = mc_now_ms();
    if (!c->authed && have_nc && proof) {
        if (mc_auth_unhex(proof, mac, sizeof mac) || !challenge_take(l, nc, ns, now) ||
            !mc_auth_mac_ok(l->auth_key, 'C', l->auth_service, ns, nc, mac)) {
            auth_log(l, conn, "wrong cluster secret (or a proof replayed or out of date)");
            *ret = auth_answer(conn, MHD_HTTP_FORBIDDEN, "{\"error\":\"cluster secret mismatch\"}",
                               NULL, NULL);
            return 0;
        }
        c->authed = 1;
        memcpy(c->ns, ns, sizeof ns);
    }
    if (c->authed) {
        if (have_nc) { /* this answer's proof */
            mc_auth_mac(l->auth_key, 'S', l->auth_service, nc, c->ns, mac);
            mc_auth_hex(c->ns, sizeof c->ns, c->ans_nonce);
            mc_auth_hex(mac, sizeof mac, c->ans_mac);
        }
        return 1;
    }
    if (!have_nc) {
        auth_log(l, conn, "no proof of the cluster secret (a client without MC_CLUSTER_SECRET)");
        *ret = auth_answer(conn, MHD_HTTP_UNAUTHORIZED,
                           "{\"error\":\"this server requires the cluster secret\"}", NULL, NULL);
        return 0;
    }
    /* a challenge to this hello, kept by its nonce so that the proof may
     * come on another connection (a PUT's 401 closes this one) */
    if (mc_auth_nonce(ns)) {
        *ret = MHD_NO;
        return 0;
    }
    pthread_mutex_lock(&l->lock);
    if (!l->challenges) l->challenges = calloc(MC_HTTP_CHALLENGES, sizeof *l->challenges);
    if (l->challenges) {
        struct http_challenge *ch = &l->challenges[l->next_challenge++ % MC_HTTP_CHALLENGES];
        memcpy(ch->nc, nc, sizeof nc);
        memcpy(ch->ns, ns, sizeof ns);
        ch->at_ms = now ? now : 1;
    }
    pthread_mutex_unlock(&l->lock);
    char hn[2 * MC_AUTH_NONCE_LEN + 1], hm[2 * MC_AUTH_MAC_LEN + 1];
    mc_auth_mac(l->auth_key, 'S', l->auth_service, nc, ns, mac);
    mc_auth_hex(ns, sizeof ns, hn);
    mc_auth_hex(mac, sizeof mac, hm);
    *ret = auth_answer(conn, MHD_HTTP_UNAUTHORIZED, "{\"error\":\"prove the cluster secret\"}", hn,
                       hm);
    return 0;
}

void mc_http_listener_saw_request(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (ci && ci->socket_context) ((listener_conn_t *)ci->socket_context)->requests++;
}

/* Counts a connection that closed before any request and logs it, the first
 * at once and then at most once per MC_HTTP_REFUSAL_LOG_MS with the count.
 * Caller holds l->lock. */
static void silent_log_locked(mc_http_listener_t *l, struct MHD_Connection *conn)
{
    l->silent++;
    uint64_t now = mc_now_ms();
    if (now < l->next_silent_log_ms) return;
    char peer[96];
    mc_http_peer(conn, peer, sizeof peer);
    const char *what = l->tls ? "TLS expected: a plaintext client, a failed TLS handshake, or "
                                "nothing sent"
                              : "malformed, incomplete or empty";
    if (l->silent > 1)
        MC_LOGW(l->tag,
                "%s: connection closed without a valid HTTP request (%s; %lu such connections "
                "since the last report, next report in %u s at the earliest)",
                peer, what, l->silent, MC_HTTP_REFUSAL_LOG_MS / 1000);
    else
        MC_LOGW(l->tag, "%s: connection closed without a valid HTTP request (%s)", peer, what);
    l->silent = 0;
    l->next_silent_log_ms = now + MC_HTTP_REFUSAL_LOG_MS;
}

static void listener_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                            enum MHD_ConnectionNotificationCode toe)
{
    mc_http_listener_t *l = cls;
    listener_conn_t *c = NULL;
    if (l->log_silent || l->auth_key || l->tls) {
        if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
            *socket_context = calloc(1, sizeof(listener_conn_t)); /* NULL only skips the log */
        } else {
            c = *socket_context;
            *socket_context = NULL;
        }
    }
    pthread_mutex_lock(&l->lock);
    if (c && c->requests == 0 && (l->log_silent || l->tls)) silent_log_locked(l, conn);
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        if (++l->open >= l->max_conns) {
            l->at_limit++;
            refusal_log_locked(l, "listener",
                               "connection limit reached: new clients wait in the listen "
                               "backlog until a connection closes");
        }
    } else {
        if (l->open) l->open--;
        if (l->per_ip) {
            const union MHD_ConnectionInfo *ci =
                MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
            char key[INET6_ADDRSTRLEN];
            ip_key(ci ? ci->client_addr : NULL, key, sizeof key);
            uintptr_t n = (uintptr_t)mc_map_get(l->ips, key);
            if (n > 1)
                mc_map_put(l->ips, key, (void *)(n - 1), NULL); /* replaces: cannot fail */
            else if (n == 1)
                mc_map_del(l->ips, key);
        }
    }
    pthread_mutex_unlock(&l->lock);
    free(c);
}

/* libmicrohttpd's diagnostics (malformed requests, socket errors): one line
 * each under the owner's tag. */
static void listener_mhd_log(void *cls, const char *fmt, va_list ap)
{
    mc_http_listener_t *l = cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    /* a failed TLS handshake: the connection's own line names the peer */
    if (l->tls && (strstr(line, "handshake") || strstr(line, "TLS")))
        MC_LOGD(l->tag, "mhd: %s", line);
    else
        MC_LOGW(l->tag, "mhd: %s", line);
}

void mc_http_listener_init(mc_http_listener_t *l, const char *tag, unsigned max_conns,
                           unsigned per_ip, unsigned idle_s)
{
    memset(l, 0, sizeof *l);
    pthread_mutex_init(&l->lock, NULL);
    l->tag = tag;
    l->max_conns = (unsigned)mc_env_int("MC_HTTP_MAX_CONNECTIONS", max_conns, 1, 1 << 20);
    l->per_ip = (unsigned)mc_env_int("MC_HTTP_PER_IP_CONNECTIONS", per_ip, 0, 1 << 20);
    l->idle_s = (unsigned)mc_env_int("MC_HTTP_IDLE_TIMEOUT_S", idle_s, 0, 86400);
}

/* Lowers l->max_conns to what RLIMIT_NOFILE leaves room for (net_http.h). */
static void fit_fdlimit(mc_http_listener_t *l)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        rlim_t room = rl.rlim_cur > 256 ? rl.rlim_cur - 128 : rl.rlim_cur / 2;
        if ((rlim_t)l->max_conns > room) {
            MC_LOGW(l->tag,
                    "connection limit lowered from %u to %llu: the open-file limit is %llu "
                    "(raise it with ulimit -n)",
                    l->max_conns, (unsigned long long)room, (unsigned long long)rl.rlim_cur);
            l->max_conns = (unsigned)room;
        }
    }
}

/* ------------------------------------------------------------ TLS */

/* A PEM file's bytes, NUL-terminated (malloc'd), or NULL after a line naming it. */
static char *read_pem(mc_http_listener_t *l, const char *path)
{
    FILE *f = fopen(path, "rb");
    char *b = NULL;
    size_t n = 0, cap = 0;
    if (f) {
        for (;;) {
            if (n + 4096 + 1 > cap) {
                char *nb = realloc(b, cap = cap ? cap * 2 : 8192);
                if (!nb) break;
                b = nb;
            }
            size_t k = fread(b + n, 1, cap - n - 1, f);
            n += k;
            if (k == 0) break;
        }
        int bad = ferror(f) || n > (1u << 20);
        fclose(f);
        if (b && !bad) {
            b[n] = '\0';
            return b;
        }
    }
    free(b);
    MC_LOGE(l->tag, "cannot read the TLS file %s: %s", path, f ? "read error" : strerror(errno));
    return NULL;
}

/* Why the client certificate of conn is not good (a phrase), or NULL when it
 * is: present, and signed by the listener's CA (GnuTLS checked it against the
 * CA given to MHD as its trust list). */
static const char *tls_client_problem(struct MHD_Connection *conn, char *buf, size_t len)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    gnutls_session_t s = ci ? (gnutls_session_t)ci->tls_session : NULL;
    unsigned n = 0, status = 0;
    if (!s) return "no TLS session";
    if (!gnutls_certificate_get_peers(s, &n) || !n)
        return "TLS client certificate required (mutual TLS: --tls_cert_file/--tls_key_file "
               "signed by the cluster CA)";
    if (gnutls_certificate_verify_peers2(s, &status) < 0)
        return "TLS client certificate unreadable";
    if (!status) return NULL;
    gnutls_datum_t out = {0};
    if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) == 0) {
        snprintf(buf, len, "TLS client certificate refused: %s", (const char *)out.data);
        gnutls_free(out.data);
        size_t k = strlen(buf);
        while (k && buf[k - 1] == ' ')
            buf[--k] = '\0';
    } else {
        snprintf(buf, len, "TLS client certificate refused (not signed by the cluster CA)");
    }
    return buf;
}

/* The access handler of a TLS listener: counts the connection's requests (a
 * connection that closes without one is logged as a failed handshake), checks
 * the client certificate at the first request when the listener has a CA,
 * then hands every call to the owner's handler. */
static enum MHD_Result tls_ahc(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls)
{
    mc_http_listener_t *l = cls;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    listener_conn_t *c = ci ? ci->socket_context : NULL;
    if (!c) return MHD_NO; /* no memory for its state: close rather than serve unchecked */
    c->requests++;
    if (l->tls_verify && !c->tls_ok) {
        char buf[300];
        const char *why = tls_client_problem(conn, buf, sizeof buf);
        if (why) {
            char peer[96];
            mc_http_peer(conn, peer, sizeof peer);
            mc_tls_refused(&l->tls_refusals, l->tag, peer, why);
            static const char body[] = "{\"error\":\"a client certificate signed by the "
                                       "cluster CA is required\"}";
            struct MHD_Response *r = MHD_create_response_from_buffer(
                sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
            if (!r) return MHD_NO;
            MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
            MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
            MHD_add_response_header(r, MC_HTTP_TLS_REFUSED,
                                    strstr(why, "required") ? "missing" : "untrusted");
            enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_FORBIDDEN, r);
            MHD_destroy_response(r);
            return ret;
        }
        c->tls_ok = 1;
    }
    return l->ahc(l->ahc_cls, conn, url, method, version, upload, upload_size, con_cls);
}

/* Loads the process's TLS files for l: 0 (also when l serves plaintext), or
 * -1 after a line saying which file failed. */
static int tls_load(mc_http_listener_t *l)
{
    const mc_tls_files_t *f = l->tls ? mc_tls_files() : NULL;
    if (!f) {
        l->tls = 0;
        return 0;
    }
    if (!f->cert[0]) {
        MC_LOGE(l->tag, "serving TLS needs a certificate and its key (--tls_cert_file, "
                        "--tls_key_file)");
        return -1;
    }
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
        MC_LOGE(l->tag, "this libmicrohttpd was built without TLS");
        return -1;
    }
    const char *paths[3] = {f->cert, f->key, f->ca};
    for (int i = 0; i < 3; i++)
        if (paths[i][0] && !(l->tls_pem[i] = read_pem(l, paths[i]))) return -1;
    l->tls_verify = f->ca[0] != 0;
    return 0;
}

struct MHD_Daemon *mc_http_listener_start(mc_http_listener_t *l, unsigned flags, uint16_t port,
                                          MHD_AccessHandlerCallback ahc, void *ahc_cls,
                                          const struct MHD_OptionItem *opts)
{
    static const struct MHD_OptionItem none[] = {{MHD_OPTION_END, 0, NULL}};
    if (!l->max_conns) l->max_conns = 1;
    if (tls_load(l)) return NULL;
    struct MHD_OptionItem tls_opts[] = {
        {l->tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, l->tls_pem[0]},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, l->tls_pem[1]},
        {l->tls_verify ? MHD_OPTION_HTTPS_MEM_TRUST : MHD_OPTION_END, 0, l->tls_pem[2]},
        {MHD_OPTION_END, 0, NULL}};
    if (l->tls) {
        flags |= MHD_USE_TLS;
        l->ahc = ahc;
        l->ahc_cls = ahc_cls;
        ahc = tls_ahc;
        ahc_cls = l;
    }
    fit_fdlimit(l);
    if (l->per_ip && !l->ips) {
        l->ips = mc_map_new();
        if (!l->ips) return NULL;
    }
    /* The logger first: MHD wants it before anything else. */
    l->mhd = MHD_start_daemon(flags, port, listener_accept, l, ahc, ahc_cls,
                              MHD_OPTION_EXTERNAL_LOGGER, listener_mhd_log, l, MHD_OPTION_ARRAY,
                              opts ? opts : none, MHD_OPTION_CONNECTION_LIMIT, l->max_conns,
                              MHD_OPTION_CONNECTION_TIMEOUT, l->idle_s,
                              MHD_OPTION_NOTIFY_CONNECTION, listener_notify, l, MHD_OPTION_ARRAY,
                              tls_opts, MHD_OPTION_END);
    if (l->mhd)
        MC_LOGD(l->tag, "limits: %u connections, %u per IP, idle timeout %u s", l->max_conns,
                l->per_ip, l->idle_s);
    if (l->mhd && l->tls) {
        const union MHD_DaemonInfo *di = MHD_get_daemon_info(l->mhd, MHD_DAEMON_INFO_BIND_PORT);
        mc_tls_note_listener(l->tag, "HTTPS", NULL, di ? di->port : port);
    }
    return l->mhd;
}

void mc_http_listener_stop(mc_http_listener_t *l)
{
    if (l->mhd) MHD_stop_daemon(l->mhd);
    l->mhd = NULL;
    mc_map_free(l->ips, NULL);
    l->ips = NULL;
    free(l->challenges);
    l->challenges = NULL;
    for (int i = 0; i < 3; i++) {
        free(l->tls_pem[i]);
        l->tls_pem[i] = NULL;
    }
    pthread_mutex_destroy(&l->lock);
}
