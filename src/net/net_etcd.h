/* net_etcd.h: a small typed client of etcd's v3 JSON gateway (etcd >= 3.4,
 * POST /v3/kv/range|put|deleterange|txn, /v3/lease/grant|keepalive|revoke,
 * /v3/watch as a stream), over libcurl and jansson. Keys and values are byte
 * strings (base64 on the wire, as the gateway requires).
 *
 * Endpoints: "h1:2379;h2:2379" (',' also separates; an "http://" or "https://"
 * prefix is kept, none means http). A request goes to the last endpoint that
 * answered, then to the others in turn; an endpoint that cannot be connected
 * within MC_ETCD_CONNECT_TIMEOUT_MS, or answers "unavailable" (no leader), is
 * skipped. When none answers, one WARN line names every endpoint tried and its
 * cause (e.g. "etcd 127.0.0.1:2379: connection refused") and the call returns
 * -EIO; there is no retry loop behind it.
 *
 * Revisions: every call that reaches etcd can return the store revision of its
 * answer (header.revision) and, for keys, the mod/create revisions, so callers
 * can do optimistic concurrency and use them as view versions.
 *
 * Thread rule: an mc_etcd_t may be used from many threads at once; a watch
 * runs on its own thread and calls its callback there. */
#ifndef MC_NET_ETCD_H
#define MC_NET_ETCD_H
#include <stddef.h>
#include <stdint.h>

#define MC_ETCD_CONNECT_TIMEOUT_MS 500
#define MC_ETCD_TIMEOUT_MS 5000
#define MC_ETCD_MAX_ENDPOINTS 16
/* Largest answer accepted from the gateway. */
#define MC_ETCD_MAX_RESPONSE (64u << 20)

typedef struct mc_etcd mc_etcd_t;
typedef struct mc_etcd_watch mc_etcd_watch_t;

/* Revisions of one key, as etcd reports them (0 when absent). */
typedef struct {
    int64_t create_rev;
    int64_t mod_rev;
    int64_t version;
    int64_t lease;
} mc_etcd_kv_t;

/* Parses the endpoint list and makes a client; no request is made. Returns 0,
 * -EINVAL (logged) for an empty or malformed list or more than
 * MC_ETCD_MAX_ENDPOINTS, -ENOMEM, -EIO when libcurl cannot be initialised. */
int mc_etcd_open(const char *endpoints, mc_etcd_t **out);
/* Frees the client; watches on it must have been stopped first. */
void mc_etcd_close(mc_etcd_t *e);
/* Number of endpoints and the i-th one as "host:port" (for logs and tests). */
int mc_etcd_endpoint_count(const mc_etcd_t *e);
const char *mc_etcd_endpoint(const mc_etcd_t *e, int i);

/* Reads key. On success *val is a malloc'd copy of the value with a NUL
 * appended (not counted in *len) and kv (may be NULL) its revisions. -ENOENT
 * when absent; -EIO; -ENOMEM. *rev (may be NULL) gets header.revision, also on
 * -ENOENT. */
int mc_etcd_get(mc_etcd_t *e, const char *key, size_t keylen, char **val, size_t *len,
                mc_etcd_kv_t *kv, int64_t *rev);
/* Stores key = val, bound to lease (0 = none). *rev gets the revision of the write. */
int mc_etcd_put(mc_etcd_t *e, const char *key, size_t keylen, const void *val, size_t len,
                int64_t lease, int64_t *rev);
/* Deletes key (prefix=0) or every key starting with key (prefix=1). *ndeleted
 * (may be NULL) gets the count; -ENOENT when nothing was deleted. */
int mc_etcd_del(mc_etcd_t *e, const char *key, size_t keylen, int prefix, int64_t *ndeleted,
                int64_t *rev);
/* Compare-and-create: stores key = val (bound to lease) only when key does not
 * exist (create_revision == 0), in one transaction. Returns 0 when created.
 * -EEXIST when it exists: then *cur and *curlen (when cur is not NULL) get a
 * malloc'd copy of the current value and kv its revisions. *rev = revision. */
int mc_etcd_create(mc_etcd_t *e, const char *key, size_t keylen, const void *val, size_t len,
                   int64_t lease, char **cur, size_t *curlen, mc_etcd_kv_t *kv, int64_t *rev);
/* Compare-and-put: stores key = val only when its mod_revision is mod_rev
 * (0 = only when absent). 0 when written, -ECANCELED when the compare failed. */
int mc_etcd_put_if_rev(mc_etcd_t *e, const char *key, size_t keylen, const void *val, size_t len,
                       int64_t lease, int64_t mod_rev, int64_t *rev);
/* Guarded put: stores key = val (no lease) only while guard exists with
 * create_revision create_rev (a leader's view key: only the holder of that
 * term writes). 0 when written, -ECANCELED when the compare failed. */
int mc_etcd_put_if_created(mc_etcd_t *e, const char *guard, size_t guardlen, int64_t create_rev,
                           const char *key, size_t keylen, const void *val, size_t len,
                           int64_t *rev);
/* Compare-and-delete: deletes key only when its value is exactly val.
 * 0 when deleted, -ECANCELED when the value differs or the key is absent. */
int mc_etcd_del_if_value(mc_etcd_t *e, const char *key, size_t keylen, const void *val, size_t len,
                         int64_t *rev);

/* Leases. grant: a new lease of ttl_s seconds in *id. keepalive: one refresh;
 * *ttl (may be NULL) gets the remaining TTL; -ENOENT when the lease is gone
 * (expired or revoked). revoke: -ENOENT when already gone. */
int mc_etcd_lease_grant(mc_etcd_t *e, int64_t ttl_s, int64_t *id);
int mc_etcd_lease_keepalive(mc_etcd_t *e, int64_t id, int64_t *ttl);
int mc_etcd_lease_revoke(mc_etcd_t *e, int64_t id);

/* ---- watch ---- */
enum {
    MC_ETCD_EV_PUT = 0,
    MC_ETCD_EV_DELETE = 1,
    /* The stream broke or was re-created: events may have been missed, the
     * receiver must forget what it derived from earlier ones (key NULL). */
    MC_ETCD_EV_RESET = 2,
};
typedef struct {
    int type;
    const char *key; /* not NUL-terminated; valid during the callback only */
    size_t keylen;
    const char *val; /* PUT only */
    size_t vallen;
    int64_t mod_rev;
} mc_etcd_event_t;
typedef void (*mc_etcd_watch_cb)(void *arg, const mc_etcd_event_t *ev);

/* Watches key (prefix=0) or every key under it (prefix=1), from revision
 * start_rev (0 = from now). Runs a streaming request on its own thread; the
 * callback runs on that thread, one event at a time. When the stream breaks
 * (etcd restarted, endpoint down) the thread reconnects to the next endpoint
 * after at most 500 ms, re-creates the watch from now and reports
 * MC_ETCD_EV_RESET. Returns 0, -ENOMEM, -EAGAIN (thread not started). */
int mc_etcd_watch_start(mc_etcd_t *e, const char *key, size_t keylen, int prefix, int64_t start_rev,
                        mc_etcd_watch_cb cb, void *arg, mc_etcd_watch_t **out);
/* Waits until etcd confirmed the watch ("created"); 0 or -ETIMEDOUT. */
int mc_etcd_watch_wait_created(mc_etcd_watch_t *w, int timeout_ms);
/* Stops the stream and joins the thread; no callback runs after it returns.
 * Must not be called from the callback. */
void mc_etcd_watch_stop(mc_etcd_watch_t *w);

/* ---- decoders of gateway answers (exposed for the fuzz target) ---- */
/* Decodes a /v3/kv/range answer: 0 with the first kv (value malloc'd, NUL
 * appended) or -ENOENT when there is none; -EPROTO for anything malformed
 * (bad JSON, a non-string key, invalid base64, a count but no kvs). */
int mc_etcd_parse_range(const char *buf, size_t len, char **val, size_t *vlen, mc_etcd_kv_t *kv,
                        int64_t *rev);
/* Decodes one watch stream message (one JSON object) and calls cb for each
 * event in it. *created is set to 1 for the creation message, *canceled to 1
 * when etcd cancelled the watch. 0 or -EPROTO. */
int mc_etcd_parse_watch(const char *buf, size_t len, mc_etcd_watch_cb cb, void *arg, int *created,
                        int *canceled);
#endif
