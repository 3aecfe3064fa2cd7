/* meta.c: picks the metadata backend from the connection string and forwards
 * calls to it; also builds the upstream key names. The connection string
 * grammar (as upstream's, spec §3.4):
 *   P2PHANDSHAKE | http(s)://... | etcd://<endpoints> | redis://... |
 *   <endpoints> (no "://": etcd)
 * redis:// URLs go through libcurl's URL parser, so user and password may be
 * percent-encoded. */
#include "meta_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "base_log.h"

/* Copies s into dst[len]; -EINVAL when it does not fit. */
static int mm_copy(char *dst, size_t len, const char *s)
{
    size_t n = strlen(s);
    if (n >= len) return -EINVAL;
    memcpy(dst, s, n + 1);
    return 0;
}

/* Parses "redis://[user[:password]@]host[:port][/db]" into cfg. */
static int mm_parse_redis(const char *conn, mc_redis_cfg_t *cfg)
{
    int rc = -EINVAL;
    char *host = NULL, *port = NULL, *user = NULL, *pass = NULL, *path = NULL, *query = NULL,
         *frag = NULL;
    CURLU *u = curl_url();
    if (!u) return -ENOMEM;
    memset(cfg, 0, sizeof *cfg);
    cfg->port = 6379;
    if (curl_url_set(u, CURLUPART_URL, conn, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host || !*host)
        goto fail;
    if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK && query && *query) goto fail;
    if (curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0) == CURLUE_OK && frag && *frag) goto fail;
    /* bracketed IPv6 comes back with its brackets */
    size_t hl = strlen(host);
    if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
        host[hl - 1] = '\0';
        memmove(host, host + 1, hl - 1);
    }
    if (mm_copy(cfg->host, sizeof cfg->host, host)) goto fail;
    if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK && port) {
        char *end;
        long p = strtol(port, &end, 10);
        if (*end || p <= 0 || p > 65535) goto fail;
        cfg->port = (uint16_t)p;
    }
    const char *env;
    if (curl_url_get(u, CURLUPART_USER, &user, CURLU_URLDECODE) == CURLUE_OK && user && *user) {
        if (mm_copy(cfg->user, sizeof cfg->user, user)) goto fail;
    } else if ((env = getenv("MC_REDIS_USERNAME")) && mm_copy(cfg->user, sizeof cfg->user, env)) {
        goto fail;
    }
    if (curl_url_get(u, CURLUPART_PASSWORD, &pass, CURLU_URLDECODE) == CURLUE_OK && pass && *pass) {
        if (mm_copy(cfg->pass, sizeof cfg->pass, pass)) goto fail;
    } else if ((env = getenv("MC_REDIS_PASSWORD")) && mm_copy(cfg->pass, sizeof cfg->pass, env)) {
        goto fail;
    }
    const char *dbs = NULL;
    if (curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK && path && path[0] == '/' && path[1])
        dbs = path + 1;
    else
        dbs = getenv("MC_REDIS_DB_INDEX");
    if (dbs && *dbs) {
        char *end;
        long db = strtol(dbs, &end, 10);
        if (*end || db < 0 || db > 255) {
            MC_LOGE("meta", "redis database index '%s' is not 0-255", dbs);
            goto fail;
        }
        cfg->db = (int)db;
    }
    rc = 0;
fail:
    curl_free(host), curl_free(port), curl_free(user), curl_free(pass);
    curl_free(path), curl_free(query), curl_free(frag);
    curl_url_cleanup(u);
    return rc;
}

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
        int rc = mm_parse_redis(conn, &out->redis);
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
