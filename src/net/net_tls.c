/* net_tls.c: the control plane's optional TLS (net_tls.h) on OpenSSL's
 * libssl. The process's PEM files are loaded once into two SSL_CTXs (server
 * and client side); every connection is an SSL object between two memory
 * BIOs, so the same engine serves the libuv master RPC (which owns its
 * socket and its event loop) and the blocking store-side client (through the
 * mc_tls_sock_* helpers, which do the socket I/O around it). Each connection
 * has its own mutex around its SSL calls, so one thread may send while
 * another receives; socket I/O is done outside that lock. */
#include "net_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "base_log.h"
#include "base_time.h"
#include "net_sock.h"

#define TAG "net_tls"
#define RECV_CHUNK 32768

struct mc_tls_conn {
    pthread_mutex_t mu; /* guards ssl and the BIOs */
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    int is_server, ready, failed;
    int saw_input, plaintext; /* the first bytes fed did not look like TLS */
    char why[256];
};

/* ------------------------------------------------------------ the files */

static pthread_mutex_t files_mu = PTHREAD_MUTEX_INITIALIZER;
static int files_loaded, files_on;
static mc_tls_files_t files;
static SSL_CTX *server_ctx, *client_ctx; /* server_ctx: NULL without a certificate */

/* The reason of OpenSSL's newest queued error ("" when none); clears the queue. */
static const char *ssl_reason(char *buf, size_t len)
{
    unsigned long e, last = 0;
    while ((e = ERR_get_error()))
        last = e;
    const char *r = last ? ERR_reason_error_string(last) : NULL;
    if (r)
        snprintf(buf, len, "%s", r);
    else if (last)
        ERR_error_string_n(last, buf, len);
    else
        snprintf(buf, len, "unknown error");
    return buf;
}

/* Makes the server (is_server) or client context of f. Returns it, or NULL
 * with a reason in err. */
static SSL_CTX *ctx_make(int is_server, const mc_tls_files_t *f, char *err, size_t errlen)
{
    char why[200];
    SSL_CTX *x = SSL_CTX_new(is_server ? TLS_server_method() : TLS_client_method());
    if (!x) {
        snprintf(err, errlen, "cannot make a TLS context: %s", ssl_reason(why, sizeof why));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(x, TLS1_2_VERSION);
    if (f->cert[0] && SSL_CTX_use_certificate_chain_file(x, f->cert) != 1) {
        snprintf(err, errlen, "TLS certificate file %s: %s", f->cert, ssl_reason(why, sizeof why));
        goto fail;
    }
    if (f->key[0] && SSL_CTX_use_PrivateKey_file(x, f->key, SSL_FILETYPE_PEM) != 1) {
        ssl_reason(why, sizeof why);
        if (strstr(why, "mismatch"))
            snprintf(err, errlen, "TLS key file %s does not match the certificate %s", f->key,
                     f->cert);
        else
            snprintf(err, errlen, "TLS key file %s: %s", f->key, why);
        goto fail;
    }
    if (f->cert[0] && SSL_CTX_check_private_key(x) != 1) {
        snprintf(err, errlen, "TLS key file %s does not match the certificate %s: %s", f->key,
                 f->cert, ssl_reason(why, sizeof why));
        goto fail;
    }
    if (f->ca[0]) {
        if (SSL_CTX_load_verify_locations(x, f->ca, NULL) != 1) {
            snprintf(err, errlen, "TLS CA file %s: %s", f->ca, ssl_reason(why, sizeof why));
            goto fail;
        }
        if (is_server) {
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(f->ca);
            if (names) SSL_CTX_set_client_CA_list(x, names);
            SSL_CTX_set_verify(x, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        } else {
            SSL_CTX_set_verify(x, SSL_VERIFY_PEER, NULL);
        }
    } else if (!is_server) { /* no cluster CA: the system's */
        SSL_CTX_set_default_verify_paths(x);
        SSL_CTX_set_verify(x, SSL_VERIFY_PEER, NULL);
    }
    if (is_server) {
        SSL_CTX_set_num_tickets(x, 0); /* connections are long-lived: no resumption */
        SSL_CTX_set_session_cache_mode(x, SSL_SESS_CACHE_OFF);
    }
    return x;
fail:
    SSL_CTX_free(x);
    return NULL;
}

/* Checks f and makes its contexts into the process's. Caller holds files_mu. */
static int files_set_locked(const mc_tls_files_t *f, char *err, size_t errlen)
{
    files_loaded = 1;
    if (!f->cert[0] && !f->key[0] && !f->ca[0]) {
        files_on = 0;
        return 0;
    }
    if (!f->cert[0] != !f->key[0]) {
        snprintf(err, errlen,
                 "TLS: a certificate needs its key and a key its certificate (set both "
                 "--tls_cert_file and --tls_key_file, or MC_TLS_CERT_FILE and MC_TLS_KEY_FILE)");
        return -EINVAL;
    }
    SSL_CTX *cx = ctx_make(0, f, err, errlen), *sx = NULL;
    if (!cx) return -EINVAL;
    if (f->cert[0] && !(sx = ctx_make(1, f, err, errlen))) {
        SSL_CTX_free(cx);
        return -EINVAL;
    }
    SSL_CTX_free(client_ctx);
    SSL_CTX_free(server_ctx);
    client_ctx = cx;
    server_ctx = sx;
    files = *f;
    files_on = 1;
    return 0;
}

/* f's field from v, else from the environment variable env. */
static void pick(char *dst, const char *v, const char *env)
{
    const char *e = getenv(env);
    snprintf(dst, MC_TLS_PATH_MAX, "%s", v && *v ? v : e ? e : "");
}

int mc_tls_use_files(const char *cert, const char *key, const char *ca, char *err, size_t errlen)
{
    mc_tls_files_t f;
    pick(f.cert, cert, "MC_TLS_CERT_FILE");
    pick(f.key, key, "MC_TLS_KEY_FILE");
    pick(f.ca, ca, "MC_TLS_CA_FILE");
    pthread_mutex_lock(&files_mu);
    int rc = files_set_locked(&f, err, errlen);
    pthread_mutex_unlock(&files_mu);
    return rc;
}

const mc_tls_files_t *mc_tls_files(void)
{
    pthread_mutex_lock(&files_mu);
    if (!files_loaded) {
        mc_tls_files_t f;
        char err[MC_TLS_PATH_MAX + 256];
        pick(f.cert, NULL, "MC_TLS_CERT_FILE");
        pick(f.key, NULL, "MC_TLS_KEY_FILE");
        pick(f.ca, NULL, "MC_TLS_CA_FILE");
        if (files_set_locked(&f, err, sizeof err)) {
            MC_LOGE(TAG, "%s", err);
            exit(2);
        }
    }
    const mc_tls_files_t *r = files_on ? &files : NULL;
    pthread_mutex_unlock(&files_mu);
    return r;
}

void mc_tls_note_listener(const char *tag, const char *what, const char *host, unsigned port)
{
    const mc_tls_files_t *f = mc_tls_files();
    if (!f) return;
    char where[300];
    if (host)
        snprintf(where, sizeof where, "%s:%u", *host ? host : "0.0.0.0", port);
    else
        snprintf(where, sizeof where, "port %u", port);
    if (f->ca[0])
        MC_LOGI(tag, "%s on %s: TLS, client certificates signed by the CA in %s required", what,
                where, f->ca);
    else
        MC_LOGI(tag, "%s on %s: TLS, no client certificates asked (no --tls_ca_file)", what,
                where);
}

void mc_tls_refused(mc_auth_refusals_t *r, const char *tag, const char *peer, const char *why)
{
    uint64_t n = atomic_fetch_add(&r->count, 1) + 1, now = mc_now_ms();
    uint64_t next = atomic_load(&r->next_ms);
    if (now < next || !atomic_compare_exchange_strong(&r->next_ms, &next, now + 1000)) return;
    atomic_fetch_sub(&r->count, n);
    MC_LOGW(tag, "peer %s: refused: %s (%llu refused for TLS since the last line)", peer, why,
            (unsigned long long)n);
}

int mc_tls_looks_like_tls(const uint8_t *p, size_t n)
{
    /* record type handshake (22) or alert (21), then version major 3 */
    return n >= 1 && (p[0] == 22 || p[0] == 21) && (n < 2 || p[1] == 3);
}

/* ------------------------------------------------------------ connections */

static int is_ip(const char *host)
{
    unsigned char a[16];
    return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

mc_tls_conn_t *mc_tls_conn_new(int is_server, const char *host, char *err, size_t errlen)
{
    if (!mc_tls_files()) {
        snprintf(err, errlen, "TLS is not configured");
        return NULL;
    }
    pthread_mutex_lock(&files_mu);
    SSL_CTX *x = is_server ? server_ctx : client_ctx;
    SSL *ssl = x ? SSL_new(x) : NULL;
    pthread_mutex_unlock(&files_mu);
    if (!ssl) {
        snprintf(err, errlen,
                 is_server && !x ? "serving TLS needs a certificate and its key (--tls_cert_file, "
                                   "--tls_key_file)"
                                 : "cannot make a TLS connection");
        return NULL;
    }
    mc_tls_conn_t *t = calloc(1, sizeof *t);
    BIO *r = BIO_new(BIO_s_mem()), *w = BIO_new(BIO_s_mem());
    if (!t || !r || !w) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    BIO_set_mem_eof_return(r, -1); /* an empty input means "wait", not EOF */
    SSL_set_bio(ssl, r, w);
    r = w = NULL;
    if (is_server) {
        SSL_set_accept_state(ssl);
    } else {
        SSL_set_connect_state(ssl);
        if (host && *host) {
            SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            if (SSL_set1_host(ssl, host) != 1) {
                snprintf(err, errlen, "TLS: cannot check the name %s", host);
                goto fail;
            }
            if (!is_ip(host)) SSL_set_tlsext_host_name(ssl, host); /* SNI: names only */
        }
    }
    pthread_mutex_init(&t->mu, NULL);
    t->ssl = ssl;
    t->is_server = is_server;
    return t;
fail:
    BIO_free(r);
    BIO_free(w);
    SSL_free(ssl);
    free(t);
    return NULL;
}

void mc_tls_conn_free(mc_tls_conn_t *t)
{
    if (!t) return;
    SSL_free(t->ssl);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

int mc_tls_conn_feed(mc_tls_conn_t *t, const void *p, size_t n)
{
    if (!n) return 0;
    pthread_mutex_lock(&t->mu);
    if (!t->saw_input) {
        t->saw_input = 1;
        t->plaintext = !mc_tls_looks_like_tls(p, n);
    }
    int rc = 0;
    while (n && rc == 0) {
        int k = n > INT_MAX ? INT_MAX : (int)n;
        int w = BIO_write(SSL_get_rbio(t->ssl), p, k);
        if (w <= 0) {
            rc = -ENOMEM;
            break;
        }
        p = (const uint8_t *)p + w;
        n -= (size_t)w;
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

/* Records why t failed after an SSL call returned r with error e. Caller
 * holds t->mu. */
static void fail_locked(mc_tls_conn_t *t, int e)
{
    char why[200];
    t->failed = 1;
    if (t->plaintext) {
        snprintf(t->why, sizeof t->why,
                 t->is_server ? "TLS expected, the peer sent plaintext (a client without TLS?)"
                              : "TLS expected, the server answered plaintext (a server without "
                                "TLS?)");
        ERR_clear_error();
        return;
    }
    if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_SSL) {
        long v = SSL_get_verify_result(t->ssl);
        ssl_reason(why, sizeof why);
        if (v != X509_V_OK)
            snprintf(t->why, sizeof t->why, "TLS handshake failed: %s: %s", why,
                     X509_verify_cert_error_string(v));
        else
            snprintf(t->why, sizeof t->why, "TLS %s: %s", t->ready ? "error" : "handshake failed",
                     why);
    } else {
        snprintf(t->why, sizeof t->why, "TLS error %d", e);
    }
}

/* One SSL call's outcome. Caller holds t->mu. Returns r when > 0, 0 for
 * "wants input", -EPIPE for the peer's close_notify, -EPROTO on failure. */
static int outcome_locked(mc_tls_conn_t *t, int r)
{
    if (SSL_is_init_finished(t->ssl)) t->ready = 1;
    if (r > 0) return r;
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (t->plaintext && !t->ready) { /* no TLS record will ever come */
            fail_locked(t, e);
            return -EPROTO;
        }
        return 0;
    }
    if (e == SSL_ERROR_ZERO_RETURN) return -EPIPE;
    fail_locked(t, e);
    return -EPROTO;
}

ssize_t mc_tls_conn_read(mc_tls_conn_t *t, void *buf, size_t cap)
{
    pthread_mutex_lock(&t->mu);
    ssize_t rc = -EPROTO;
    if (!t->failed) {
        int k = cap > INT_MAX ? INT_MAX : (int)cap;
        ERR_clear_error(); /* SSL_get_error reads this thread's queue */
        rc = outcome_locked(t, SSL_read(t->ssl, buf, k));
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

int mc_tls_conn_write(mc_tls_conn_t *t, const void *p, size_t n)
{
    pthread_mutex_lock(&t->mu);
    int rc = t->failed || !t->ready ? -EPROTO : 0;
    while (rc == 0 && n) {
        int k = n > INT_MAX ? INT_MAX : (int)n;
        ERR_clear_error();
        int w = SSL_write(t->ssl, p, k);
        if (w <= 0) {
            int o = outcome_locked(t, w);
            rc = o < 0 ? o : -ENOMEM; /* a memory BIO never asks to wait */
            break;
        }
        p = (const uint8_t *)p + w;
        n -= (size_t)w;
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

int mc_tls_conn_take_out(mc_tls_conn_t *t, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    pthread_mutex_lock(&t->mu);
    BIO *w = SSL_get_wbio(t->ssl);
    size_t n = BIO_ctrl_pending(w);
    int rc = 0;
    if (n) {
        uint8_t *b = malloc(n);
        if (!b) {
            rc = -ENOMEM;
        } else {
            int got = BIO_read(w, b, (int)n);
            *out = b;
            *len = got > 0 ? (size_t)got : 0;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

int mc_tls_conn_ready(const mc_tls_conn_t *t)
{
    return t->ready && !t->failed;
}

const char *mc_tls_conn_why(const mc_tls_conn_t *t)
{
    return t->why;
}

void mc_tls_conn_peer_name(const mc_tls_conn_t *t, char *buf, size_t len)
{
    buf[0] = '\0';
    X509 *c = t->ready ? SSL_get1_peer_certificate(t->ssl) : NULL;
    if (!c) return;
    X509_NAME_oneline(X509_get_subject_name(c), buf, (int)len);
    X509_free(c);
}

/* ------------------------------------------------------------ on a socket */

/* Sends what t has for the socket. Returns 0 or -errno. */
static int send_out(mc_tls_conn_t *t, int fd)
{
    uint8_t *b;
    size_t n;
    int rc = mc_tls_conn_take_out(t, &b, &n);
    if (rc == 0 && n) rc = mc_sock_send_all(fd, b, n);
    free(b);
    return rc;
}

int mc_tls_sock_handshake(mc_tls_conn_t *t, int fd, char *err, size_t errlen)
{
    uint8_t buf[RECV_CHUNK];
    for (;;) {
        pthread_mutex_lock(&t->mu);
        ERR_clear_error();
        int r = t->failed ? -EPROTO : outcome_locked(t, SSL_do_handshake(t->ssl));
        pthread_mutex_unlock(&t->mu);
        int s = send_out(t, fd); /* our flight, or the alert of a failure */
        if (r < 0) {
            snprintf(err, errlen, "%s",
                     t->why[0] ? t->why : "TLS handshake failed: the peer closed the session");
            return -EPROTO;
        }
        if (s) {
            snprintf(err, errlen, "TLS handshake failed: send: %s", strerror(-s));
            return s;
        }
        if (r > 0) return 0;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) {
            snprintf(err, errlen,
                     "TLS handshake failed: the peer closed the connection (TLS expected: is it "
                     "serving TLS, and does it accept this client's certificate?)");
            return -ECONNRESET;
        }
        if (n < 0) {
            int e = errno == EAGAIN || errno == EWOULDBLOCK ? ETIMEDOUT : errno;
            snprintf(err, errlen, "TLS handshake failed: %s",
                     e == ETIMEDOUT ? "no answer within the timeout (TLS expected)" : strerror(e));
            return -e;
        }
        if (mc_tls_conn_feed(t, buf, (size_t)n)) {
            snprintf(err, errlen, "TLS handshake failed: out of memory");
            return -ENOMEM;
        }
    }
}

int mc_tls_sock_send_all(mc_tls_conn_t *t, int fd, const void *p, size_t n)
{
    if (!t) return mc_sock_send_all(fd, p, n);
    int rc = mc_tls_conn_write(t, p, n);
    return rc ? rc : send_out(t, fd);
}

ssize_t mc_tls_sock_recv(mc_tls_conn_t *t, int fd, void *p, size_t n, int flags)
{
    if (!t) return recv(fd, p, n, flags);
    uint8_t buf[RECV_CHUNK];
    for (;;) {
        ssize_t r = mc_tls_conn_read(t, p, n);
        if (r > 0) return r;
        if (r == -EPIPE) return 0;
        if (r < 0) {
            errno = EPROTO;
            return -1;
        }
        ssize_t k = recv(fd, buf, sizeof buf, flags);
        if (k <= 0) return k;
        if (mc_tls_conn_feed(t, buf, (size_t)k)) {
            errno = ENOMEM;
            return -1;
        }
    }
}

int mc_tls_sock_recv_all(mc_tls_conn_t *t, int fd, void *p, size_t n)
{
    if (!t) return mc_sock_recv_all(fd, p, n);
    uint8_t *q = p;
    while (n) {
        ssize_t k = mc_tls_sock_recv(t, fd, q, n, 0);
        if (k == 0) return -ECONNRESET;
        if (k < 0) {
            if (errno == EINTR) continue;
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? -ETIMEDOUT : -errno;
        }
        q += k;
        n -= (size_t)k;
    }
    return 0;
}
