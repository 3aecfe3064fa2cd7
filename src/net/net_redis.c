/* net_redis.c: one hiredis connection behind a mutex (see net_redis.h). Each
 * command is sent with redisCommandArgv (binary-safe arguments, no format
 * strings). A NULL reply means the connection is broken: the context is
 * freed, a new one is made (connect, AUTH, SELECT) and the command sent once
 * more. The Lua scripts are sent with EVAL each time: they are a few dozen
 * bytes, and EVAL needs no script cache that a restarted server would have lost. */
#include "net_redis.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <curl/curl.h>
#include <hiredis/hiredis.h>

#include "base_log.h"

#define TAG "redis"

struct mc_redis {
    mc_redis_cfg_t cfg;
    char name[300];
    pthread_mutex_t lock;
    redisContext *ctx; /* NULL while disconnected; under lock */
};

static struct timeval rr_tv(int ms)
{
    return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
}

/* The server's error text, first letter lower-cased, for "redis h:p: <cause>". */
static void rr_lower(char *s)
{
    if (s[0]) s[0] = (char)tolower((unsigned char)s[0]);
}

/* Sends argv on ctx; NULL when the connection broke. */
static redisReply *rr_send(redisContext *ctx, int argc, const char **argv, const size_t *lens)
{
    return redisCommandArgv(ctx, argc, argv, lens);
}

/* Connects, authenticates, selects; fills r->ctx. 0, -EIO, -EACCES, -ENOMEM;
 * logs one line on failure. Caller holds r->lock. */
static int rr_connect_locked(mc_redis_t *r)
{
    int ms = r->cfg.timeout_ms > 0 ? r->cfg.timeout_ms : MC_REDIS_TIMEOUT_MS;
    redisContext *c = redisConnectWithTimeout(r->cfg.host, r->cfg.port, rr_tv(ms));
    if (!c) {
        MC_LOGW(TAG, "redis %s: out of memory", r->name);
        return -ENOMEM;
    }
    int rc = -EIO;
    redisReply *rep = NULL;
    char cause[256];
    if (c->err) {
        snprintf(cause, sizeof cause, "%s", c->errstr);
        rr_lower(cause);
        MC_LOGW(TAG, "redis %s: %s", r->name, cause);
        goto fail;
    }
    redisSetTimeout(c, rr_tv(ms));
    if (r->cfg.pass[0]) {
        const char *av[3] = {"AUTH", r->cfg.user, r->cfg.pass};
        size_t al[3] = {4, strlen(r->cfg.user), strlen(r->cfg.pass)};
        int ac = r->cfg.user[0] ? 3 : 2;
        if (ac == 2) av[1] = r->cfg.pass, al[1] = al[2];
        rep = rr_send(c, ac, av, al);
        if (!rep || rep->type == REDIS_REPLY_ERROR) {
            MC_LOGW(TAG, "redis %s: authentication failed%s%s", r->name, rep ? ": " : " (",
                    rep ? rep->str : c->errstr);
            rc = rep ? -EACCES : -EIO;
            goto fail;
        }
        freeReplyObject(rep);
    }
    /* SELECT, or PING: either shows at once whether the server wants AUTH */
    char db[16];
    snprintf(db, sizeof db, "%d", r->cfg.db);
    const char *av[2] = {r->cfg.db > 0 ? "SELECT" : "PING", db};
    size_t al[2] = {strlen(av[0]), strlen(db)};
    rep = rr_send(c, r->cfg.db > 0 ? 2 : 1, av, al);
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        int noauth = rep && !strncmp(rep->str, "NOAUTH", 6);
        snprintf(cause, sizeof cause, "%s", rep ? rep->str : c->errstr);
        if (!noauth) rr_lower(cause);
        MC_LOGW(TAG, "redis %s: %s%s", r->name,
                noauth ? "authentication required (set MC_REDIS_PASSWORD): " : "", cause);
        rc = noauth ? -EACCES : -EIO;
        goto fail;
    }
    freeReplyObject(rep);
    r->ctx = c;
    return 0;
fail:
    if (rep) freeReplyObject(rep);
    redisFree(c);
    return rc;
}

/* Runs one command; on a broken connection reconnects and repeats it once.
 * Returns 0 with *out (caller frees) or a negative errno (logged). A reply of
 * type ERROR is returned as a reply, not as a failure. */
static int rr_cmd(mc_redis_t *r, int argc, const char **argv, const size_t *lens, redisReply **out)
{
    int rc = 0;
    pthread_mutex_lock(&r->lock);
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!r->ctx && (rc = rr_connect_locked(r))) break;
        redisReply *rep = rr_send(r->ctx, argc, argv, lens);
        if (rep) {
            *out = rep;
            rc = 0;
            break;
        }
        char cause[256];
        snprintf(cause, sizeof cause, "%s", r->ctx->errstr[0] ? r->ctx->errstr : "connection lost");
        rr_lower(cause);
        redisFree(r->ctx);
        r->ctx = NULL;
        rc = -EIO;
        if (attempt == 1)
            MC_LOGW(TAG, "redis %s: %s %s", r->name, argv[0], cause);
        else
            MC_LOGD(TAG, "redis %s: %s (%s); reconnecting once", r->name, argv[0], cause);
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

/* A reply of an unexpected type: logged, -EIO. NOAUTH errors read as -EACCES. */
static int rr_unexpected(mc_redis_t *r, const char *cmd, redisReply *rep)
{
    int rc = -EIO;
    if (rep->type == REDIS_REPLY_ERROR) {
        if (!strncmp(rep->str, "NOAUTH", 6) || !strncmp(rep->str, "WRONGPASS", 9)) rc = -EACCES;
        MC_LOGW(TAG, "redis %s: %s: %s", r->name, cmd, rep->str);
    } else {
        MC_LOGW(TAG, "redis %s: %s: unexpected reply type %d", r->name, cmd, rep->type);
    }
    freeReplyObject(rep);
    return rc;
}

int mc_redis_open(const mc_redis_cfg_t *cfg, mc_redis_t **out)
{
    if (!cfg || !cfg->host[0] || !cfg->port || cfg->db < 0) return -EINVAL;
    mc_redis_t *r = calloc(1, sizeof *r);
    if (!r) return -ENOMEM;
    r->cfg = *cfg;
    snprintf(r->name, sizeof r->name, strchr(cfg->host, ':') ? "[%s]:%u" : "%s:%u", cfg->host,
             cfg->port);
    pthread_mutex_init(&r->lock, NULL);
    pthread_mutex_lock(&r->lock);
    int rc = rr_connect_locked(r);
    pthread_mutex_unlock(&r->lock);
    if (rc) {
        mc_redis_close(r);
        return rc;
    }
    *out = r;
    return 0;
}

void mc_redis_close(mc_redis_t *r)
{
    if (!r) return;
    if (r->ctx) redisFree(r->ctx);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

const char *mc_redis_name(const mc_redis_t *r)
{
    return r->name;
}

int mc_redis_get(mc_redis_t *r, const char *key, char **val, size_t *len)
{
    const char *av[2] = {"GET", key};
    size_t al[2] = {3, strlen(key)};
    redisReply *rep;
    int rc = rr_cmd(r, 2, av, al, &rep);
    if (rc) return rc;
    if (rep->type == REDIS_REPLY_NIL)
        rc = -ENOENT;
    else if (rep->type != REDIS_REPLY_STRING)
        return rr_unexpected(r, "GET", rep);
    else if (!(*val = malloc(rep->len + 1)))
        rc = -ENOMEM;
    else {
        memcpy(*val, rep->str, rep->len);
        (*val)[rep->len] = '\0';
        if (len) *len = rep->len;
    }
    freeReplyObject(rep);
    return rc;
}

int mc_redis_set(mc_redis_t *r, const char *key, const void *val, size_t len)
{
    const char *av[3] = {"SET", key, val};
    size_t al[3] = {3, strlen(key), len};
    redisReply *rep;
    int rc = rr_cmd(r, 3, av, al, &rep);
    if (rc) return rc;
    if (rep->type != REDIS_REPLY_STATUS) return rr_unexpected(r, "SET", rep);
    freeReplyObject(rep);
    return 0;
}

int mc_redis_del(mc_redis_t *r, const char *key)
{
    const char *av[2] = {"DEL", key};
    size_t al[2] = {3, strlen(key)};
    redisReply *rep;
    int rc = rr_cmd(r, 2, av, al, &rep);
    if (rc) return rc;
    if (rep->type != REDIS_REPLY_INTEGER) return rr_unexpected(r, "DEL", rep);
    rc = rep->integer > 0 ? 0 : -ENOENT;
    freeReplyObject(rep);
    return rc;
}

int mc_redis_set_nx(mc_redis_t *r, const char *key, const void *val, size_t len, int64_t ttl_ms)
{
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%lld", (long long)ttl_ms);
    const char *av[6] = {"SET", key, val, "NX", "PX", ttl};
    size_t al[6] = {3, strlen(key), len, 2, 2, strlen(ttl)};
    redisReply *rep;
    int rc = rr_cmd(r, ttl_ms > 0 ? 6 : 4, av, al, &rep);
    if (rc) return rc;
    if (rep->type == REDIS_REPLY_NIL)
        rc = -EEXIST;
    else if (rep->type != REDIS_REPLY_STATUS)
        return rr_unexpected(r, "SET NX", rep);
    freeReplyObject(rep);
    return rc;
}

/* EVAL script 1 key val [arg]: returns the script's integer result or a negative errno. */
static int rr_eval(mc_redis_t *r, const char *what, const char *script, const char *key,
                   const void *val, size_t len, const char *arg, long long *res)
{
    const char *av[6] = {"EVAL", script, "1", key, val, arg};
    size_t al[6] = {4, strlen(script), 1, strlen(key), len, arg ? strlen(arg) : 0};
    redisReply *rep;
    int rc = rr_cmd(r, arg ? 6 : 5, av, al, &rep);
    if (rc) return rc;
    if (rep->type != REDIS_REPLY_INTEGER) return rr_unexpected(r, what, rep);
    *res = rep->integer;
    freeReplyObject(rep);
    return 0;
}

int mc_redis_create_or_same(mc_redis_t *r, const char *key, const void *val, size_t len)
{
    static const char lua[] = "local v = redis.call('GET', KEYS[1]) "
                              "if not v then redis.call('SET', KEYS[1], ARGV[1]) return 1 end "
                              "if v == ARGV[1] then return 2 end return 0";
    long long res = 0;
    int rc = rr_eval(r, "create-or-same", lua, key, val, len, NULL, &res);
    return rc ? rc : res ? 0 : -EEXIST;
}

int mc_redis_refresh_if(mc_redis_t *r, const char *key, const void *val, size_t len, int64_t ttl_ms)
{
    static const char lua[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                              "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0";
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%lld", (long long)ttl_ms);
    long long res = 0;
    int rc = rr_eval(r, "refresh", lua, key, val, len, ttl, &res);
    return rc ? rc : res ? 0 : -ESTALE;
}

int mc_redis_del_if(mc_redis_t *r, const char *key, const void *val, size_t len)
{
    static const char lua[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                              "return redis.call('DEL', KEYS[1]) end return 0";
    long long res = 0;
    int rc = rr_eval(r, "release", lua, key, val, len, NULL, &res);
    return rc ? rc : res ? 0 : -ESTALE;
}

int mc_redis_set_if_term(mc_redis_t *r, const char *guard, const char *me, const char *vkey,
                         const char *view, const char *key, const void *val, size_t len)
{
    static const char lua[] = "if redis.call('GET', KEYS[1]) == ARGV[1] and "
                              "redis.call('GET', KEYS[2]) == ARGV[2] then "
                              "redis.call('SET', KEYS[3], ARGV[3]) return 1 end return 0";
    const char *av[9] = {"EVAL", lua, "3", guard, vkey, key, me, view, val};
    size_t al[9] = {4,          strlen(lua),  1,  strlen(guard), strlen(vkey), strlen(key),
                    strlen(me), strlen(view), len};
    redisReply *rep;
    int rc = rr_cmd(r, 9, av, al, &rep);
    if (rc) return rc;
    if (rep->type != REDIS_REPLY_INTEGER) return rr_unexpected(r, "set-if-term", rep);
    long long res = rep->integer;
    freeReplyObject(rep);
    return res ? 0 : -ESTALE;
}

int mc_redis_incr(mc_redis_t *r, const char *key, int64_t *val)
{
    const char *av[2] = {"INCR", key};
    size_t al[2] = {4, strlen(key)};
    redisReply *rep;
    int rc = rr_cmd(r, 2, av, al, &rep);
    if (rc) return rc;
    if (rep->type != REDIS_REPLY_INTEGER) return rr_unexpected(r, "INCR", rep);
    *val = rep->integer;
    freeReplyObject(rep);
    return 0;
}

/* Copies s into dst[cap]; -EINVAL when it does not fit. */
static int rr_copy(char *dst, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (n >= cap) return -EINVAL;
    memcpy(dst, s, n + 1);
    return 0;
}

int mc_redis_parse_url(const char *conn, mc_redis_cfg_t *cfg)
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
    if (rr_copy(cfg->host, sizeof cfg->host, host)) goto fail;
    if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK && port) {
        char *end;
        long p = strtol(port, &end, 10);
        if (*end || p <= 0 || p > 65535) goto fail;
        cfg->port = (uint16_t)p;
    }
    const char *env;
    if (curl_url_get(u, CURLUPART_USER, &user, CURLU_URLDECODE) == CURLUE_OK && user && *user) {
        if (rr_copy(cfg->user, sizeof cfg->user, user)) goto fail;
    } else if ((env = getenv("MC_REDIS_USERNAME")) && rr_copy(cfg->user, sizeof cfg->user, env)) {
        goto fail;
    }
    if (curl_url_get(u, CURLUPART_PASSWORD, &pass, CURLU_URLDECODE) == CURLUE_OK && pass && *pass) {
        if (rr_copy(cfg->pass, sizeof cfg->pass, pass)) goto fail;
    } else if ((env = getenv("MC_REDIS_PASSWORD")) && rr_copy(cfg->pass, sizeof cfg->pass, env)) {
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
            MC_LOGE(TAG, "redis database index '%s' is not 0-255", dbs);
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
