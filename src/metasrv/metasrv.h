/* metasrv.h: the HTTP metadata server core (libmicrohttpd), a library so that
 * mooncake_http_metadata_server, mooncake_master and the Python package's
 * mooncake.http_metadata_server can run it.
 * Protocol (upstream-compatible): GET/PUT/DELETE /metadata?key=K, GET /health.
 * The store can also be used in-process (mc_metasrv_request), by the same rules.
 * Thread rule: new/listen/free from one thread; requests are served on MHD's
 * threads; mc_metasrv_request and mc_metasrv_keys from any thread. */
#ifndef MC_METASRV_H
#define MC_METASRV_H
#include <stdint.h>

typedef struct mc_metasrv mc_metasrv_t;

#include <stddef.h>

/* An empty store, not yet serving. Returns 0 or -ENOMEM. */
int mc_metasrv_new(mc_metasrv_t **out);
/* Starts serving s on host:port (host NULL or "" = all addresses; port 0 = any
 * free port, read it back with mc_metasrv_port). Once only. Returns 0 or a
 * negative errno (-EALREADY when s already serves). */
int mc_metasrv_listen(mc_metasrv_t *s, const char *host, uint16_t port);
/* mc_metasrv_new + mc_metasrv_listen; on failure nothing is left. */
int mc_metasrv_start(const char *host, uint16_t port, mc_metasrv_t **out);
/* The port s serves on; 0 before mc_metasrv_listen. */
uint16_t mc_metasrv_port(const mc_metasrv_t *s);
/* Stops serving (if it does) and frees everything. NULL is a no-op. */
void mc_metasrv_stop(mc_metasrv_t *s);

/* The answer to one /metadata request. */
typedef struct {
    unsigned status;  /* HTTP status: 200, 400, 404, 405, 413 */
    const char *text; /* a static message, or NULL when value holds the answer (GET 200) */
    void *value;      /* GET 200: a malloc'd copy of the value (caller frees) */
    size_t len;       /* bytes in value */
} mc_metasrv_answer_t;

/* Applies one /metadata request to the store by the protocol's rules, exactly
 * as the HTTP server does: key stripped of surrounding whitespace (NULL,
 * blank or with a NUL byte: 400), method GET/PUT/DELETE (else 405), a body
 * over 16 MiB 413, the duplicate rpc_meta rule. keylen and len are byte
 * counts. Returns 0 with *ans filled, or -ENOMEM (nothing changed). */
int mc_metasrv_request(mc_metasrv_t *s, const char *method, const char *key, size_t keylen,
                       const void *body, size_t len, mc_metasrv_answer_t *ans);

/* Calls fn once per stored key (in no order) under the store's lock: fn must
 * not call back into s. */
void mc_metasrv_keys(mc_metasrv_t *s, void (*fn)(const char *key, size_t len, void *arg),
                     void *arg);
#endif
