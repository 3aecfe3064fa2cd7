/* net_auth.h: the cluster secret and the challenge-response that proves it
 * (docs/security.md). Every protocol of the pool runs the same exchange at the
 * start of a connection when a secret is configured:
 *
 *   client -> server   HELLO  version, client nonce Nc (32 random bytes)
 *   server -> client          server nonce Ns, MAC_S = mac('S', Nc, Ns)
 *   client -> server   PROOF  MAC_C = mac('C', Ns, Nc)
 *   server -> client          ok, or refused (and the connection is closed)
 *
 * mac(role, a, b) = HMAC-SHA256(K, "mooncake-c/auth/1" | role | service | a | b)
 * with K = SHA-256("mooncake-c cluster secret" | secret), so the secret itself
 * never goes on the wire, is never logged and lives in memory as K only. Each
 * side checks the other's MAC in constant time (CRYPTO_memcmp), so a client
 * also refuses a server that does not hold the secret. Ns is fresh per
 * connection, so a recorded PROOF is worth nothing on another connection
 * (no replay); the service name binds a proof to its protocol.
 * Thread rule: mc_auth_cluster_key may be called from any thread (it loads
 * once); the other functions touch only their arguments. */
#ifndef MC_NET_AUTH_H
#define MC_NET_AUTH_H
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define MC_AUTH_VERSION 1
#define MC_AUTH_NONCE_LEN 32
#define MC_AUTH_MAC_LEN 32

typedef struct mc_auth_key {
    uint8_t k[32];
} mc_auth_key_t;

/* Derives the key of secret[0..len) (len >= 1). */
void mc_auth_key_from(const void *secret, size_t len, mc_auth_key_t *out);

/* Reads a secret file: its bytes less one trailing newline (CRLF too), at
 * least 16 bytes, at most 4096. Returns 0 with *out set, or -errno with a
 * one-line reason in err (naming the file, never its content). A file that
 * others may read is accepted with a warning line. */
int mc_auth_key_from_file(const char *path, mc_auth_key_t *out, char *err, size_t errlen);

/* The process's cluster key, or NULL when no secret is configured. The first
 * call loads it: a key set by mc_auth_set_cluster_key, else MC_CLUSTER_SECRET
 * (the secret itself, at least 16 bytes), else the file named by
 * MC_CLUSTER_SECRET_FILE. A bad environment value is one error line and the
 * process exits 2: running open when a secret was meant would be worse. */
const mc_auth_key_t *mc_auth_cluster_key(void);

/* Sets the process's cluster key (a --cluster_secret_file flag, a config
 * file's cluster_secret_file) before anything connects or listens. NULL
 * clears it (tests). */
void mc_auth_set_cluster_key(const mc_auth_key_t *k);

/* Loads path (mc_auth_key_from_file) and makes it the process's cluster key,
 * over the environment. Returns 0, or -errno with the reason in err. */
int mc_auth_use_secret_file(const char *path, char *err, size_t errlen);

/* A listener's refusals for the secret, logged at most once a second. Zero
 * it to start (a static or calloc'd one is). */
typedef struct {
    _Atomic uint64_t next_ms, count;
} mc_auth_refusals_t;

/* Counts one refusal and logs it under tag as "<who>: refused: <why> (N
 * refused for the cluster secret since the last line)" when a second has
 * passed since the last line of r; who names the peer ("peer 10.0.0.9:4123").
 * Any thread. */
void mc_auth_refused(mc_auth_refusals_t *r, const char *tag, const char *who, const char *why);

/* Says at a listener's start how it is guarded, in one line under tag: with
 * a cluster key, that connections must prove the secret (INFO); without one
 * and bound beyond loopback (host NULL, "", 0.0.0.0, ::, or an address not in
 * 127.0.0.0/8 or ::1), that the pool is open to whoever reaches it (WARN).
 * what names the listener ("master RPC", "metadata server"). */
void mc_auth_note_listener(const char *tag, const char *what, const char *host, unsigned port);

/* 1 when host is a loopback address or "localhost", else 0 (NULL and ""
 * mean every address: 0). */
int mc_auth_host_is_loopback(const char *host);

/* Fills n with MC_AUTH_NONCE_LEN random bytes (OpenSSL's RAND_bytes). Returns
 * 0, or -EIO when the generator failed (then nothing may be proved). */
int mc_auth_nonce(uint8_t n[MC_AUTH_NONCE_LEN]);

/* out = mac(role, a, b) as above; role is 'S' (server) or 'C' (client). */
void mc_auth_mac(const mc_auth_key_t *k, char role, const char *service,
                 const uint8_t a[MC_AUTH_NONCE_LEN], const uint8_t b[MC_AUTH_NONCE_LEN],
                 uint8_t out[MC_AUTH_MAC_LEN]);

/* 1 when mac equals mac(role, a, b), compared in constant time; else 0. */
int mc_auth_mac_ok(const mc_auth_key_t *k, char role, const char *service,
                   const uint8_t a[MC_AUTH_NONCE_LEN], const uint8_t b[MC_AUTH_NONCE_LEN],
                   const uint8_t mac[MC_AUTH_MAC_LEN]);

/* The exchange on a plain blocking socket, for the protocols that have no
 * frames of their own to carry it (the masters' replication stream, the SSD
 * tier's staging server), before their first byte:
 *   client: "MCAH" u8 version, Nc[32]
 *   server: "MCAH" u8 status, Ns[32], MAC_S[32]   (status 0; else only the
 *           5 bytes: 1 no secret here, 2 another version)
 *   client: MAC_C[32]
 *   server: u8 status (0 proved, 3 wrong proof)
 * The caller sets the socket's timeouts. tls: the socket's TLS session
 * (net_tls.h; the exchange then runs inside it), or NULL. Both return 0, or
 * -EACCES with a one-line reason in err (the peer lacks the secret, or holds
 * another), -EPROTO (not this exchange), or an I/O error; what names the peer. */
#define MC_AUTH_SOCK_MAGIC "MCAH"
struct mc_tls_conn;
int mc_auth_sock_client(int fd, struct mc_tls_conn *tls, const mc_auth_key_t *k,
                        const char *service, char *err, size_t errlen);
int mc_auth_sock_server(int fd, struct mc_tls_conn *tls, const mc_auth_key_t *k,
                        const char *service, char *err, size_t errlen);

/* Parses an HTTP hello value "<version>:<64 hex digits>" into nc. Returns 0,
 * -EPROTO for another version (a decimal other than MC_AUTH_VERSION), or
 * -EINVAL when malformed. Never reads past the NUL. */
int mc_auth_parse_hello(const char *s, uint8_t nc[MC_AUTH_NONCE_LEN]);

/* Lower-case hex of n bytes into out (2n+1 bytes), and back: 0, or -EINVAL
 * when s is not exactly 2n hex digits. For HTTP headers. */
void mc_auth_hex(const uint8_t *p, size_t n, char *out);
int mc_auth_unhex(const char *s, uint8_t *out, size_t n);
#endif
