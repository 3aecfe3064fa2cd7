/* net_tls.h: optional TLS for the control plane (docs/security.md), on
 * OpenSSL's libssl. One set of PEM files per process: a certificate, its key
 * and the cluster CA. With a CA, a server requires a client certificate signed
 * by it and a client checks the server's certificate against it and against
 * the host it dialled (an IP address or a name in the certificate).
 *
 * The files come from mc_tls_use_files (the --tls_* flags, a config file's
 * tls_* fields) or else the environment (MC_TLS_CERT_FILE, MC_TLS_KEY_FILE,
 * MC_TLS_CA_FILE). Without any of them TLS is off and nothing changes.
 *
 * Two ways to run a connection over TLS, both on the same engine
 * (mc_tls_conn_t: an SSL object between two memory BIOs, so the caller owns
 * the socket and the I/O):
 * - event loops (the master RPC on libuv): feed what the socket read with
 *   mc_tls_conn_feed, take plaintext with mc_tls_conn_read (which also runs
 *   the handshake), encrypt with mc_tls_conn_write, and write what
 *   mc_tls_conn_take_out returns to the socket;
 * - blocking sockets (the store's master client): mc_tls_sock_handshake, then
 *   mc_tls_sock_send_all / mc_tls_sock_recv_all / mc_tls_sock_recv, which do
 *   the socket I/O themselves.
 * The HTTP listeners and libcurl clients use the same files through
 * mc_tls_files (libmicrohttpd and libcurl do TLS themselves).
 *
 * Thread rule: mc_tls_files / mc_tls_use_files from any thread (the
 * environment loads once). A connection's functions may be called from
 * several threads (one sender and one receiver at a time): they lock it. */
#ifndef MC_NET_TLS_H
#define MC_NET_TLS_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "net_auth.h"

#define MC_TLS_PATH_MAX 4096

typedef struct {
    char cert[MC_TLS_PATH_MAX], key[MC_TLS_PATH_MAX], ca[MC_TLS_PATH_MAX]; /* "": none */
} mc_tls_files_t;

/* The process's TLS files, or NULL when TLS is off. The first call loads the
 * environment unless mc_tls_use_files came first; files that do not load (a
 * missing file, a key that does not match its certificate, a key without a
 * certificate) are one error line and exit status 2: serving plaintext where
 * TLS was meant would be worse. */
const mc_tls_files_t *mc_tls_files(void);

/* Sets the process's TLS files (each NULL or "" falls back to its
 * environment variable) before anything connects or listens, and checks
 * that they load. Returns 0, or -EINVAL with a one-line reason in err naming
 * the file. All three empty everywhere: TLS off, 0. */
int mc_tls_use_files(const char *cert, const char *key, const char *ca, char *err, size_t errlen);

/* Says at a TLS listener's start, in one line under tag, that what (on
 * host:port, or "port N" when host is NULL) serves TLS and whether client
 * certificates are required. */
void mc_tls_note_listener(const char *tag, const char *what, const char *host, unsigned port);

/* Counts one TLS refusal of a listener (its own counter r) and logs it under
 * tag as "<peer>: refused: <why> (N refused for TLS since the last line)",
 * at most one line a second. Any thread. */
void mc_tls_refused(mc_auth_refusals_t *r, const char *tag, const char *peer, const char *why);

/* 1 when p[0..n) starts like a TLS record (a handshake or alert record of
 * TLS 1.0-1.3), for a plaintext server to say that a TLS client knocked. */
int mc_tls_looks_like_tls(const uint8_t *p, size_t n);

/* ------------------------------------------------------------- connections */

typedef struct mc_tls_conn mc_tls_conn_t;

/* A TLS connection of this process's files: server side (is_server 1, needs
 * the certificate and key) or client side, checking that the server's
 * certificate names host (NULL: no name check). Returns NULL with a reason in
 * err when TLS is off or the context cannot be made. */
mc_tls_conn_t *mc_tls_conn_new(int is_server, const char *host, char *err, size_t errlen);
void mc_tls_conn_free(mc_tls_conn_t *t);

/* Hands n bytes read from the socket to t. Returns 0 or -ENOMEM. */
int mc_tls_conn_feed(mc_tls_conn_t *t, const void *p, size_t n);

/* Decrypts up to cap bytes of plaintext into buf, running the handshake
 * first. Returns the count (> 0), 0 when it needs more input (write out what
 * mc_tls_conn_take_out holds first: the handshake may have answered),
 * -EPIPE when the peer closed the TLS session, or -EPROTO when TLS failed
 * (mc_tls_conn_why says why, in a phrase: "certificate verify failed: ...",
 * "TLS expected, the peer sent plaintext"). */
ssize_t mc_tls_conn_read(mc_tls_conn_t *t, void *buf, size_t cap);

/* Encrypts p[0..n) for sending (valid once the handshake is done; earlier,
 * the bytes go out after it). Returns 0 or -EPROTO / -ENOMEM. */
int mc_tls_conn_write(mc_tls_conn_t *t, const void *p, size_t n);

/* The bytes waiting to go to the socket, moved into a malloc'd buffer (*out,
 * owned by the caller) of *len bytes; 0 bytes: *out NULL. Returns 0 or -ENOMEM. */
int mc_tls_conn_take_out(mc_tls_conn_t *t, uint8_t **out, size_t *len);

/* 1 once the handshake is done. */
int mc_tls_conn_ready(const mc_tls_conn_t *t);
/* Why the connection failed (a phrase), or "" */
const char *mc_tls_conn_why(const mc_tls_conn_t *t);
/* The peer certificate's subject ("CN=store-1"), or "" (none, or not ready). */
void mc_tls_conn_peer_name(const mc_tls_conn_t *t, char *buf, size_t len);

/* ----------------------------------------------------------- on a socket */

/* Runs t's handshake over the blocking socket fd (its SO_RCVTIMEO and
 * SO_SNDTIMEO apply). Returns 0, or -EPROTO / -ETIMEDOUT / -ECONNRESET with
 * a one-line reason in err (the peer closed during the handshake: "the peer
 * closed the connection during the TLS handshake (is it serving TLS?)"). */
int mc_tls_sock_handshake(mc_tls_conn_t *t, int fd, char *err, size_t errlen);

/* mc_sock_send_all / mc_sock_recv_all over t (NULL: plaintext, the same as
 * those). Serialise senders yourself; one receiver may run beside them. */
int mc_tls_sock_send_all(mc_tls_conn_t *t, int fd, const void *p, size_t n);
int mc_tls_sock_recv_all(mc_tls_conn_t *t, int fd, void *p, size_t n);

/* recv(2) over t (NULL: recv itself): plaintext already decrypted first,
 * else one recv of fd with flags (MSG_DONTWAIT: -1/EAGAIN when nothing
 * came). Returns the count, 0 when the peer closed, or -1 with errno (EPROTO
 * when TLS failed). */
ssize_t mc_tls_sock_recv(mc_tls_conn_t *t, int fd, void *p, size_t n, int flags);
#endif
