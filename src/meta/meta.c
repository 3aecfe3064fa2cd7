/* meta.c: picks the metadata backend from the connection string and forwards
 * calls to it; also builds the upstream key names. */
#include "meta_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base_log.h"

int mc_meta_open(const char *conn, mc_meta_t **out)
{
    if (!conn || !*conn) return -EINVAL;
    mc_meta_t *m = calloc(1, sizeof *m);
    if (!m) return -ENOMEM;
    int rc = 0;
    if (!strcmp(conn, "P2PHANDSHAKE")) {
        /* no store */
    } else if (!strncasecmp(conn, "http://", 7) || !strncasecmp(conn, "https://", 8)) {
        rc = mc__meta_http_open(conn, &m->ops, &m->impl);
    } else {
        MC_LOGE("meta", "unsupported metadata connection string '%s' (use P2PHANDSHAKE or http://)",
                conn);
        rc = -EINVAL;
    }
    if (rc) {
        free(m);
        return rc;
    }
    *out = m;
    return 0;
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
