/* net_auth.c: net_auth.h on OpenSSL's libcrypto (SHA-256, HMAC, RAND_bytes,
 * CRYPTO_memcmp); no cryptography is written here. */
#include "net_auth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "base_log.h"
#include "base_time.h"
#include "net_sock.h"
#include "net_tls.h"

#define TAG "auth"
#define SECRET_MIN 16
#define SECRET_MAX 4096

static const char key_label[] = "mooncake-c cluster secret";
static const char mac_label[] = "mooncake-c/auth/1";

void mc_auth_key_from(const void *secret, size_t len, mc_auth_key_t *out)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned n = 0;
    if (!c || !EVP_DigestInit_ex(c, EVP_sha256(), NULL) ||
        !EVP_DigestUpdate(c, key_label, sizeof key_label - 1) ||
        !EVP_DigestUpdate(c, secret, len) || !EVP_DigestFinal_ex(c, out->k, &n) || n != 32) {
        /* libcrypto failing to hash is not recoverable: refuse to run open */
        MC_LOGE(TAG, "SHA-256 failed in libcrypto");
        abort();
    }
    EVP_MD_CTX_free(c);
}

int mc_auth_key_from_file(const char *path, mc_auth_key_t *out, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot read the cluster secret file %s: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && (st.st_mode & 077))
        MC_LOGW(TAG, "the cluster secret file %s may be read by others (mode %03o): chmod 600 it",
                path, (unsigned)(st.st_mode & 0777));
    uint8_t buf[SECRET_MAX + 3];
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, sizeof buf - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            snprintf(err, errlen, "cannot read the cluster secret file %s: %s", path, strerror(e));
            return -e;
        }
        if (r == 0 || (n += (size_t)r) == sizeof buf) break;
    }
    close(fd);
    if (n && buf[n - 1] == '\n') n--;
    if (n && buf[n - 1] == '\r') n--;
    int rc = 0;
    if (n > SECRET_MAX) {
        snprintf(err, errlen, "the cluster secret file %s holds over %d bytes", path, SECRET_MAX);
        rc = -EINVAL;
    } else if (n < SECRET_MIN) {
        snprintf(err, errlen,
                 "the cluster secret in %s is %zu bytes: at least %d are needed (e.g. openssl "
                 "rand -hex 32 > %s)",
                 path, n, SECRET_MIN, path);
        rc = -EINVAL;
    } else {
        mc_auth_key_from(buf, n, out);
    }
    OPENSSL_cleanse(buf, sizeof buf);
    return rc;
}

static pthread_mutex_t key_mu = PTHREAD_MUTEX_INITIALIZER;
static int key_loaded, key_present;
static mc_auth_key_t key_value;

void mc_auth_set_cluster_key(const mc_auth_key_t *k)
{
    pthread_mutex_lock(&key_mu);
    key_loaded = 1;
    key_present = k != NULL;
    if (k) key_value = *k;
    pthread_mutex_unlock(&key_mu);
}

int mc_auth_use_secret_file(const char *path, char *err, size_t errlen)
{
    mc_auth_key_t k;
    int rc = mc_auth_key_from_file(path, &k, err, errlen);
    if (rc == 0) mc_auth_set_cluster_key(&k);
    OPENSSL_cleanse(&k, sizeof k);
    return rc;
}

/* Loads the key from the environment. Caller holds key_mu. */
static void key_load_env_locked(void)
{
    key_loaded = 1;
    const char *s = getenv("MC_CLUSTER_SECRET");
    const char *f = getenv("MC_CLUSTER_SECRET_FILE");
    char err[512];
    if (s && *s) {
        size_t n = strlen(s);
        if (n < SECRET_MIN || n > SECRET_MAX) {
            MC_LOGE(TAG, "MC_CLUSTER_SECRET is %zu bytes: it must hold %d to %d", n, SECRET_MIN,
                    SECRET_MAX);
            exit(2);
        }
        mc_auth_key_from(s, n, &key_value);
        key_present = 1;
    } else if (f && *f) {
        if (mc_auth_key_from_file(f, &key_value, err, sizeof err)) {
            MC_LOGE(TAG, "MC_CLUSTER_SECRET_FILE: %s", err);
            exit(2);
        }
        key_present = 1;
    }
}

const mc_auth_key_t *mc_auth_cluster_key(void)
{
    pthread_mutex_lock(&key_mu);
    if (!key_loaded) key_load_env_locked();
    const mc_auth_key_t *k = key_present ? &key_value : NULL;
    pthread_mutex_unlock(&key_mu);
    return k;
}

void mc_auth_refused(mc_auth_refusals_t *r, const char *tag, const char *who, const char *why)
{
    uint64_t n = atomic_fetch_add(&r->count, 1) + 1, now = mc_now_ms();
    uint64_t next = atomic_load(&r->next_ms);
    if (now < next || !atomic_compare_exchange_strong(&r->next_ms, &next, now + 1000)) return;
    atomic_fetch_sub(&r->count, n);
    MC_LOGW(tag, "%s: refused: %s (%llu refused for the cluster secret since the last line)", who,
            why, (unsigned long long)n);
}

int mc_auth_host_is_loopback(const char *host)
{
    if (!host || !*host) return 0;
    if (!strcmp(host, "localhost")) return 1;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1) return IN6_IS_ADDR_LOOPBACK(&a6);
    return 0;
}

void mc_auth_note_listener(const char *tag, const char *what, const char *host, unsigned port)
{
    const char *h = host && *host ? host : "0.0.0.0";
    if (mc_auth_cluster_key())
        MC_LOGI(tag, "%s on %s:%u: connections must prove the cluster secret", what, h, port);
    else if (!mc_auth_host_is_loopback(host))
        MC_LOGW(tag,
                "%s on %s:%u has no cluster secret: anyone who reaches it can read, write or "
                "reshape the pool (set MC_CLUSTER_SECRET or a cluster secret file; "
                "docs/security.md)",
                what, h, port);
}

int mc_auth_nonce(uint8_t n[MC_AUTH_NONCE_LEN])
{
    return RAND_bytes(n, MC_AUTH_NONCE_LEN) == 1 ? 0 : -EIO;
}

void mc_auth_mac(const mc_auth_key_t *k, char role, const char *service,
                 const uint8_t a[MC_AUTH_NONCE_LEN], const uint8_t b[MC_AUTH_NONCE_LEN],
                 uint8_t out[MC_AUTH_MAC_LEN])
{
    size_t sl = strlen(service);
    uint8_t msg[sizeof mac_label + 1 + 64 + 2 * MC_AUTH_NONCE_LEN];
    size_t n = 0;
    if (sl > 64) sl = 64;
    memcpy(msg, mac_label, sizeof mac_label - 1);
    n += sizeof mac_label - 1;
    msg[n++] = (uint8_t)role;
    msg[n++] = (uint8_t)sl;
    memcpy(msg + n, service, sl);
    n += sl;
    memcpy(msg + n, a, MC_AUTH_NONCE_LEN);
    n += MC_AUTH_NONCE_LEN;
    memcpy(msg + n, b, MC_AUTH_NONCE_LEN);
    n += MC_AUTH_NONCE_LEN;
    unsigned ol = 0;
    if (!HMAC(EVP_sha256(), k->k, sizeof k->k, msg, n, out, &ol) || ol != MC_AUTH_MAC_LEN) {
        MC_LOGE(TAG, "HMAC-SHA256 failed in libcrypto");
        abort();
    }
}

int mc_auth_mac_ok(const mc_auth_key_t *k, char role, const char *service,
                   const uint8_t a[MC_AUTH_NONCE_LEN], const uint8_t b[MC_AUTH_NONCE_LEN],
                   const uint8_t mac[MC_AUTH_MAC_LEN])
{
    uint8_t want[MC_AUTH_MAC_LEN];
    mc_auth_mac(k, role, service, a, b, want);
    return CRYPTO_memcmp(want, mac, MC_AUTH_MAC_LEN) == 0;
}

int mc_auth_sock_client(int fd, struct mc_tls_conn *tls, const mc_auth_key_t *k,
                        const char *service, char *err, size_t errlen)
{
    uint8_t hello[5 + MC_AUTH_NONCE_LEN], rep[5 + MC_AUTH_NONCE_LEN + MC_AUTH_MAC_LEN];
    uint8_t mac[MC_AUTH_MAC_LEN], st = 0;
    memcpy(hello, MC_AUTH_SOCK_MAGIC, 4);
    hello[4] = MC_AUTH_VERSION;
    if (mc_auth_nonce(hello + 5)) {
        snprintf(err, errlen, "no random bytes for a nonce");
        return -EIO;
    }
    int rc = mc_tls_sock_send_all(tls, fd, hello, sizeof hello);
    if (!rc) rc = mc_tls_sock_recv_all(tls, fd, rep, 5);
    if (rc) {
        snprintf(err, errlen, "the cluster secret's exchange: %s", strerror(-rc));
        return rc;
    }
    if (memcmp(rep, MC_AUTH_SOCK_MAGIC, 4) != 0) {
        snprintf(err, errlen, "the peer does not speak the cluster secret's exchange");
        return -EPROTO;
    }
    if (rep[4] != 0) {
        snprintf(err, errlen, "%s",
                 rep[4] == 1 ? "it has no cluster secret configured, and this process has one"
                             : "it speaks another version of the secret's handshake");
        return -EACCES;
    }
    if ((rc = mc_tls_sock_recv_all(tls, fd, rep + 5, sizeof rep - 5))) {
        snprintf(err, errlen, "the cluster secret's exchange: %s", strerror(-rc));
        return rc;
    }
    if (!mc_auth_mac_ok(k, 'S', service, hello + 5, rep + 5, rep + 5 + MC_AUTH_NONCE_LEN)) {
        snprintf(err, errlen, "it proved another cluster secret (the cluster secrets differ)");
        return -EACCES;
    }
    mc_auth_mac(k, 'C', service, rep + 5, hello + 5, mac);
    if ((rc = mc_tls_sock_send_all(tls, fd, mac, sizeof mac)) ||
        (rc = mc_tls_sock_recv_all(tls, fd, &st, 1))) {
        snprintf(err, errlen, "the cluster secret's exchange: %s", strerror(-rc));
        return rc;
    }
    if (st != 0) {
        snprintf(err, errlen, "it refused this process's proof (the cluster secrets differ)");
        return -EACCES;
    }
    return 0;
}

int mc_auth_sock_server(int fd, struct mc_tls_conn *tls, const mc_auth_key_t *k,
                        const char *service, char *err, size_t errlen)
{
    uint8_t hello[5 + MC_AUTH_NONCE_LEN], rep[5 + MC_AUTH_NONCE_LEN + MC_AUTH_MAC_LEN];
    uint8_t mac[MC_AUTH_MAC_LEN];
    int rc = mc_tls_sock_recv_all(tls, fd, hello, sizeof hello);
    if (rc) {
        snprintf(err, errlen, "no proof of the cluster secret (%s)", strerror(-rc));
        return rc;
    }
    if (memcmp(hello, MC_AUTH_SOCK_MAGIC, 4) != 0) {
        snprintf(err, errlen,
                 "no proof of the cluster secret (a peer without MC_CLUSTER_SECRET, or an old "
                 "one)");
        return -EPROTO;
    }
    memcpy(rep, MC_AUTH_SOCK_MAGIC, 4);
    if (hello[4] != MC_AUTH_VERSION) {
        rep[4] = 2;
        (void)mc_tls_sock_send_all(tls, fd, rep, 5);
        snprintf(err, errlen, "handshake version %u (this process speaks %u)", hello[4],
                 MC_AUTH_VERSION);
        return -EACCES;
    }
    rep[4] = 0;
    if (mc_auth_nonce(rep + 5)) {
        snprintf(err, errlen, "no random bytes for a nonce");
        return -EIO;
    }
    mc_auth_mac(k, 'S', service, hello + 5, rep + 5, rep + 5 + MC_AUTH_NONCE_LEN);
    if ((rc = mc_tls_sock_send_all(tls, fd, rep, sizeof rep)) ||
        (rc = mc_tls_sock_recv_all(tls, fd, mac, sizeof mac))) {
        snprintf(err, errlen, "the cluster secret's exchange: %s", strerror(-rc));
        return rc;
    }
    uint8_t st = mc_auth_mac_ok(k, 'C', service, rep + 5, hello + 5, mac) ? 0 : 3;
    (void)mc_tls_sock_send_all(tls, fd, &st, 1);
    if (st) {
        snprintf(err, errlen, "wrong cluster secret");
        return -EACCES;
    }
    return 0;
}

int mc_auth_parse_hello(const char *s, uint8_t nc[MC_AUTH_NONCE_LEN])
{
    if (!s) return -EINVAL;
    const char *colon = strchr(s, ':');
    if (!colon || colon == s || colon - s > 3) return -EINVAL;
    unsigned v = 0;
    for (const char *p = s; p < colon; p++) {
        if (*p < '0' || *p > '9') return -EINVAL;
        v = v * 10 + (unsigned)(*p - '0');
    }
    if (mc_auth_unhex(colon + 1, nc, MC_AUTH_NONCE_LEN)) return -EINVAL;
    return v == MC_AUTH_VERSION ? 0 : -EPROTO;
}

void mc_auth_hex(const uint8_t *p, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[p[i] >> 4];
        out[2 * i + 1] = d[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int mc_auth_unhex(const char *s, uint8_t *out, size_t n)
{
    if (!s || strlen(s) != 2 * n) return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return -EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}
