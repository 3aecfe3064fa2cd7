/* Helpers shared by the libmicrohttpd servers (metadata server, master admin,
 * the store's dummy-client endpoint, proxy). mc_http_peer / mc_http_send: call
 * them from an MHD request callback, on the thread MHD runs it on.
 * mc_http_listener_*: the one way these servers start MHD, with explicit
 * connection limits; init/start/stop on one thread, the callbacks it installs
 * run on MHD's threads and lock what they share. */
#ifndef MC_NET_HTTP_H
#define MC_NET_HTTP_H
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>

#include "net_auth.h"

/* Defaults of every listener unless its owner picks others (mc_http_listener_init). */
#define MC_HTTP_MAX_CONNECTIONS_DEFAULT 4096u
#define MC_HTTP_PER_IP_DEFAULT 512u
#define MC_HTTP_IDLE_TIMEOUT_DEFAULT_S 15u
/* Refusals are logged at most once per this many ms per listener. */
#define MC_HTTP_REFUSAL_LOG_MS 10000u

/* Writes the connection's peer as "ip:port" into buf (never fails). */
void mc_http_peer(struct MHD_Connection *conn, char *buf, size_t len);

/* Queues a response: len bytes of body with Content-Type ctype and status.
 * mode is MHD's: MHD_RESPMEM_PERSISTENT (body outlives the response),
 * MHD_RESPMEM_MUST_COPY, or MHD_RESPMEM_MUST_FREE (malloc'd; freed here also
 * when the response cannot be made). allow: value of an Allow header (405) or
 * NULL. A 413 also carries Connection: close, so a client that sent an
 * oversized body is not kept. Returns MHD's result. */
enum MHD_Result mc_http_send(struct MHD_Connection *conn, unsigned status, const char *ctype,
                             const char *body, size_t len, enum MHD_ResponseMemoryMode mode,
                             const char *allow);

/* One MHD daemon with its connection policy. Caller-owned (embed it), set up
 * by mc_http_listener_init; the fields above the line may be changed between
 * init and start.
 *
 * - max_conns: MHD_OPTION_CONNECTION_LIMIT, set explicitly (MHD's default is
 *   FD_SETSIZE - 4 = 1020, shared out among the pool threads). At the limit MHD
 *   stops accepting and new clients wait in the listen backlog; logged.
 * - per_ip: connections one client address may hold (0 = no limit). Past it a
 *   connection is accepted and closed at once; logged, naming the peer.
 * - idle_s: MHD_OPTION_CONNECTION_TIMEOUT, seconds without socket activity
 *   before a connection is closed (0 = never). MHD does not time out a
 *   suspended connection and restarts the clock on resume, so a streamed
 *   answer that waits for its upstream is not cut; a client that stops reading
 *   for idle_s is.
 * - log_silent: log connections that close before any request reached the
 *   owner (garbage, truncated headers, a port scan or a TCP health probe). The
 *   owner then calls mc_http_listener_saw_request from its access handler.
 *
 * - auth_key/auth_service: the cluster key (net_auth.h) and the name proofs
 *   are bound to ("meta", "admin", "dummy"); with a key, the owner passes each
 *   request that needs it through mc_http_listener_authorize.
 * - tls: serve HTTPS with the process's TLS files (net_tls.h) when it has
 *   them (set by the control plane's listeners; the proxy's front stays as
 *   it is). libmicrohttpd does the TLS (GnuTLS) from the same PEM files; with
 *   a CA, every connection's first request must come with a client
 *   certificate the CA signed, else it gets 403 and is closed, in one line.
 *
 * Refusals are logged in one line per MC_HTTP_REFUSAL_LOG_MS with the count
 * of refusals since the last line; so are silent connections (the first at
 * once, naming the peer). libmicrohttpd's own diagnostics go to the log under
 * the owner's tag, one line each. */
typedef struct {
    const char *tag; /* log tag of the owner */
    unsigned max_conns, per_ip, idle_s;
    int log_silent;
    const mc_auth_key_t *auth_key;
    const char *auth_service;
    int tls;
    /* ---- private */
    struct MHD_Daemon *mhd;
    pthread_mutex_t lock;               /* guards what follows */
    void *ips;                          /* mc_map_t: "ip" -> count of open connections */
    unsigned open;                      /* connections MHD has started and not closed */
    unsigned long refused_ip, at_limit; /* since the last log line */
    uint64_t next_log_ms;
    unsigned long silent; /* silent connections since the last line about them */
    uint64_t next_silent_log_ms;
    mc_auth_refusals_t auth_refusals;
    struct http_challenge *challenges; /* MC_HTTP_CHALLENGES outstanding, oldest replaced */
    size_t next_challenge;
    char *tls_pem[3];         /* certificate, key, CA (MHD keeps pointers while it runs) */
    int tls_verify;           /* client certificates are checked against the CA */
    MHD_AccessHandlerCallback ahc; /* the owner's, behind tls_ahc (TLS listeners) */
    void *ahc_cls;
    mc_auth_refusals_t tls_refusals;
} mc_http_listener_t;

/* Fills l with the given defaults, then overrides them from the environment:
 * MC_HTTP_MAX_CONNECTIONS (1..1048576), MC_HTTP_PER_IP_CONNECTIONS
 * (0..1048576, 0 = none), MC_HTTP_IDLE_TIMEOUT_S (0..86400, 0 = never). */
void mc_http_listener_init(mc_http_listener_t *l, const char *tag, unsigned max_conns,
                           unsigned per_ip, unsigned idle_s);

/* Starts MHD with flags and the listener's limits, plus the caller's options
 * (an MHD_OPTION_END-terminated array, or NULL; it must not hold
 * CONNECTION_LIMIT, CONNECTION_TIMEOUT, PER_IP_CONNECTION_LIMIT,
 * ACCEPT_POLICY_CALLBACK, NOTIFY_CONNECTION or EXTERNAL_LOGGER). port as MHD_start_daemon's.
 * A max_conns above what RLIMIT_NOFILE leaves room for (soft limit - 128) is
 * first lowered to it, with a warning, so that the listener meets its own
 * limit (which it logs) before accept fails with EMFILE.
 * Returns the daemon (also kept in l) or NULL when MHD refused to start. */
struct MHD_Daemon *mc_http_listener_start(mc_http_listener_t *l, unsigned flags, uint16_t port,
                                          MHD_AccessHandlerCallback ahc, void *ahc_cls,
                                          const struct MHD_OptionItem *opts);

/* The cluster secret over HTTP (docs/security.md). Every request of a client
 * that holds the key carries MC_HTTP_AUTH_HELLO: "1:<hex Nc>", a fresh nonce.
 * A connection that has not proved the secret gets 401 with
 * MC_HTTP_AUTH_NONCE (hex Ns) and MC_HTTP_AUTH_MAC (hex mac('S', Nc, Ns));
 * the client checks it and sends the request again with the same hello and
 * MC_HTTP_AUTH_PROOF (hex mac('C', Ns, Nc)), on any connection (outstanding
 * challenges are kept by nonce, used once). A proved connection is served;
 * every answer to a request with a hello then carries the nonce and MAC of
 * that hello, so the client knows each answer came from a holder of the
 * secret. Without a hello or with a wrong proof: 401 or 403, one log line. */
#define MC_HTTP_AUTH_HELLO "X-Mooncake-Auth-Hello"
#define MC_HTTP_AUTH_PROOF "X-Mooncake-Auth-Proof"
#define MC_HTTP_AUTH_NONCE "X-Mooncake-Auth-Nonce"
#define MC_HTTP_AUTH_MAC "X-Mooncake-Auth-Mac"
#define MC_HTTP_CHALLENGES 256
/* Header of a 403 that refuses a connection's TLS client certificate:
 * "missing" or "untrusted" (mc_http_listener_t.tls). */
#define MC_HTTP_TLS_REFUSED "X-Mooncake-TLS-Refused"

/* With l->auth_key: 1 when the request on conn may be served (its answer
 * through mc_http_send then carries the proof headers), or 0 when an answer
 * (401/403/400) was queued, *ret holding MHD's result. Without a key: 1.
 * Call it from the access handler's first call of the request. */
int mc_http_listener_authorize(mc_http_listener_t *l, struct MHD_Connection *conn,
                               enum MHD_Result *ret);

/* Notes that conn carried a request (for log_silent). Call it from the access
 * handler's first call of each request, on MHD's thread. */
void mc_http_listener_saw_request(struct MHD_Connection *conn);

/* Stops the daemon (MHD_stop_daemon: joins its threads, closes connections)
 * and frees the listener's state. Safe on an initialised listener that never
 * started. */
void mc_http_listener_stop(mc_http_listener_t *l);

#endif
