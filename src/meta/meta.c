/* meta.c: picks the metadata backend from the connection string and forwards
 * calls to it; also builds the upstream key names. The connection string
 * grammar (as upstream's, spec §3.4):
 *   P2PHANDSHAKE | http(s)://... | etcd://<endpoints> | redis://... |
 *   <endpoints> (no "://": etcd)
 * redis:// URLs go through libcurl's URL parser (mc_redis_parse_url), so user and password may be
 * percent-encoded. */
#include "meta_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base_log.h"

int mc__meta_parse(const char *conn, mc__meta_conn_t *out)
{
    memset(out, 0, sizeof *out);
    if (!conn || !*conn) return -EINVAL;
    out->arg = conn;
    if (!strcmp(conn, "P2PHANDSHAKE")) {
        out->kind = MC__META_P2P;
    } else if (!strncasecmp(conn, "http://", 7) || !strncasecmp(conn, "https://", 8)) {
        out->kind = MC__META_HTTP;
    } else if (!strncasecmp(conn, "etcd://", 7)) {
        out->kind = MC__META_ETCD;
        out->arg = conn + 7;
    } else if (!strncasecmp(conn, "redis://", 8)) {
        out->kind = MC__META_REDIS;
        int rc = mc_redis_parse_url(conn, &out->redis);
        if (rc == -EINVAL)
            MC_LOGE("meta", "malformed redis URL (want redis://[user:password@]host:port[/db])");
        return rc;
    } else if (!strstr(conn, "://")) {
        out->kind = MC__META_ETCD; /* upstream: no scheme means etcd */
    } else {
        MC_LOGE("meta",
                "unsupported metadata connection string '%s' (use P2PHANDSHAKE, http://, "
                "etcd:// or redis://)",
                conn);
        return -EINVAL;
    }
    return 0;
}

int mc_meta_open(const char *conn, mc_meta_t **out)
{
    if (!conn || !*conn) return -EINVAL;
    mc_meta_t *m = calloc(1, sizeof *m);
    if (!m) return -ENOMEM;
    mc__meta_conn_t c;
    int rc = mc__meta_parse(conn, &c);
    if (rc == 0) {
        switch (c.kind) {
        case MC__META_P2P:
            break; /* no store */
        case MC__META_HTTP:
            rc = mc__meta_http_open(conn, &m->ops, &m->impl);
            break;
        case MC__META_ETCD:
            rc = mc__meta_etcd_open(c.arg, &m->ops, &m->impl);
            break;
        case MC__META_REDIS:
            rc = mc__meta_redis_open(&c.redis, &m->ops, &m->impl);
            break;
        }
    }
    memset(&c.redis.pass, 0, sizeof c.redis.pass);
    if (rc) {
        free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int mc_meta_watch(mc_meta_t *m, const char *prefix, mc_meta_watch_cb cb, void *arg)
{
    if (!m->ops || !m->ops->watch) return -ENOTSUP;
    return m->ops->watch(m->impl, prefix, cb, arg);
}

void mc_meta_unwatch(mc_meta_t *m)
{
    if (m && m->ops && m->ops->unwatch) m->ops->unwatch(m->impl);
}

int mc_meta_del_segment(mc_meta_t *m, const char *name)
{
    static const char *const kinds[2] = {"ram", "rpc_meta"};
    int first = 0;
    for (int i = 0; i < 2; i++) {
        char key[1024];
        int rc = mc_meta_key(key, sizeof key, kinds[i], name);
        if (rc == 0) rc = mc_meta_del(m, key);
        if (rc && rc != -ENOENT && !first) first = rc;
    }
    return first;
}

void mc_meta_close(mc_meta_t *m)
{
    if (!m) return;
    if (m->ops) m->ops->close(m->impl);
    free(m);
}

int mc_meta_is_p2p(const mc_meta_t *m)
{
    return m->ops == NULL;
}

int mc_meta_get(mc_meta_t *m, const char *key, char **val)
{
    return m->ops ? m->ops->get(m->impl, key, val) : -ENOTSUP;
}

int mc_meta_put(mc_meta_t *m, const char *key, const char *val)
{
    return m->ops ? m->ops->put(m->impl, key, val) : -ENOTSUP;
}

int mc_meta_del(mc_meta_t *m, const char *key)
{
    return m->ops ? m->ops->del(m->impl, key) : -ENOTSUP;
}

int mc_meta_key(char *buf, size_t len, const char *kind, const char *name)
{
    const char *cluster = getenv("MC_METADATA_CLUSTER_ID");
    int n;
    if (cluster && *cluster) {
        size_t cl = strlen(cluster);
        int slash = cluster[cl - 1] == '/';
        n = snprintf(buf, len, "mooncake/%s%s%s/%s", cluster, slash ? "" : "/", kind, name);
    } else {
        n = snprintf(buf, len, "mooncake/%s/%s", kind, name);
    }
    return (n < 0 || (size_t)n >= len) ? -ENAMETOOLONG : 0;
}
