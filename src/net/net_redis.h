/* net_redis.h: a thin client of one Redis server over hiredis: connect with a
 * timeout, AUTH (user + password, or password alone), SELECT, and the few
 * commands the metadata store and the HA master need (GET/SET/DEL, a lock
 * with a TTL: SET NX PX, refresh and release by compare in Lua).
 *
 * A call whose connection turns out broken (server restarted, idle
 * connection closed) reconnects once and repeats the command once; a second
 * failure is returned. Failures are logged in one WARN line naming the server
 * and the cause ("redis 127.0.0.1:6379: connection refused",
 * "redis 127.0.0.1:6379: authentication failed: WRONGPASS ..."). A repeated
 * SET NX may find its own first write: callers of the lock compare the value.
 *
 * Thread rule: an mc_redis_t may be used from many threads; a mutex per
 * connection serialises the commands. */
#ifndef MC_NET_REDIS_H
#define MC_NET_REDIS_H
#include <stddef.h>
#include <stdint.h>

#define MC_REDIS_TIMEOUT_MS 3000

typedef struct {
    char host[256];
    uint16_t port;
    char user[128]; /* "" = password-only AUTH (or none) */
    char pass[256]; /* "" = no AUTH */
    int db;         /* SELECT when > 0 */
    int timeout_ms; /* connect and per command; 0 = MC_REDIS_TIMEOUT_MS */
} mc_redis_cfg_t;

typedef struct mc_redis mc_redis_t;

/* Connects, authenticates and selects the database now. Returns 0; -EIO when
 * the server cannot be reached or refuses a command; -EACCES when AUTH fails
 * (also when the server wants a password and none was given); -EINVAL for a
 * bad cfg; -ENOMEM. Each failure is one logged line. */
int mc_redis_open(const mc_redis_cfg_t *cfg, mc_redis_t **out);
void mc_redis_close(mc_redis_t *r);

/* GET: *val malloc'd with a NUL appended (not counted in *len). -ENOENT when absent. */
int mc_redis_get(mc_redis_t *r, const char *key, char **val, size_t *len);
/* SET key val. */
int mc_redis_set(mc_redis_t *r, const char *key, const void *val, size_t len);
/* DEL key: 0, or -ENOENT when it did not exist. */
int mc_redis_del(mc_redis_t *r, const char *key);
/* SET key val NX [PX ttl_ms] (ttl_ms 0 = no expiry): 0 when set, -EEXIST when the key exists. */
int mc_redis_set_nx(mc_redis_t *r, const char *key, const void *val, size_t len, int64_t ttl_ms);
/* Atomically (Lua): when key is absent, sets it to val and returns 0; when it
 * holds exactly val, returns 0 without writing; otherwise -EEXIST. */
int mc_redis_create_or_same(mc_redis_t *r, const char *key, const void *val, size_t len);
/* Lock refresh: when key holds exactly val, sets its TTL to ttl_ms and returns
 * 0; otherwise -ESTALE (the lock is someone else's or gone). */
int mc_redis_refresh_if(mc_redis_t *r, const char *key, const void *val, size_t len,
                        int64_t ttl_ms);
/* Lock release: deletes key when it holds exactly val; 0 or -ESTALE. */
int mc_redis_del_if(mc_redis_t *r, const char *key, const void *val, size_t len);
/* Parses "redis://[user[:password]@]host[:port][/db]" (libcurl's URL
 * parser; user and password URL-decoded) into cfg; where the URL is silent,
 * MC_REDIS_USERNAME, MC_REDIS_PASSWORD and MC_REDIS_DB_INDEX apply, and the
 * port is 6379. 0, -EINVAL (logged for a bad db index), -ENOMEM. */
int mc_redis_parse_url(const char *url, mc_redis_cfg_t *cfg);
/* INCR key: the new value in *val. */
int mc_redis_incr(mc_redis_t *r, const char *key, int64_t *val);
/* Guarded SET (one EVAL): key = val only while guard holds me and vkey holds
 * view (a leader's term). 0 when set, -ESTALE when the term is not current. */
int mc_redis_set_if_term(mc_redis_t *r, const char *guard, const char *me, const char *vkey,
                         const char *view, const char *key, const void *val, size_t len);
/* "host:port" of the server, for logs. */
const char *mc_redis_name(const mc_redis_t *r);
#endif
