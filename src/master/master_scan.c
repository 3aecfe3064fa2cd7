/* master_scan.c: scans of the whole index: remove_all, remove_by_regex and
 * get_replicas_by_regex.
 *
 * Patterns are PCRE2 (Perl-compatible syntax, searched anywhere in the key as
 * upstream's regex_search does; keys are matched as bytes, not UTF-8). A
 * hostile pattern cannot run unbounded: every key is matched under a match
 * limit, a depth limit and a heap limit, and the whole scan under a deadline.
 * A pattern that hits any of them is refused with MC_ERR_INVALID_PARAMS and,
 * for removal, nothing is removed: matching keys are collected over every
 * shard first and erased only once the scan finished. Limits (environment):
 *   MC_MASTER_REGEX_MATCH_LIMIT  backtracking steps per key (default 100000)
 *   MC_MASTER_REGEX_DEPTH_LIMIT  nested backtracking depth (default 2000)
 *   MC_MASTER_REGEX_SCAN_MS      one scan's deadline in ms (default 10000)
 * Scans take one shard lock at a time, so they never stall heartbeats (which
 * take the client lock) and only briefly delay a put or get to the same
 * shard; the RPC server runs them off its event loop (master_rpc.c). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base_env.h"
#include "base_log.h"
#include "base_time.h"
#include "master_int.h"

#define TAG "master"

typedef struct {
    pcre2_code *code;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    uint64_t deadline_ms;
    int failed; /* a limit was hit: MC_ERR_INVALID_PARAMS */
    const char *pattern;
} rx_t;

static void rx_free(rx_t *rx)
{
    pcre2_match_data_free(rx->md);
    pcre2_match_context_free(rx->mctx);
    pcre2_code_free(rx->code);
}

/* Compiles pattern with the limits above. MC_ERR_INVALID_PARAMS (with a log
 * line) for a bad pattern. */
static int rx_compile(rx_t *rx, const char *pattern)
{
    memset(rx, 0, sizeof *rx);
    if (!pattern) return MC_ERR_INVALID_PARAMS;
    rx->pattern = pattern;
    int err;
    PCRE2_SIZE off;
    rx->code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, 0, &err, &off, NULL);
    if (!rx->code) {
        PCRE2_UCHAR msg[128];
        pcre2_get_error_message(err, msg, sizeof msg);
        MC_LOGW(TAG, "regex '%.128s' refused: %s at offset %zu", pattern, (const char *)msg,
                (size_t)off);
        return MC_ERR_INVALID_PARAMS;
    }
    (void)pcre2_jit_compile(rx->code, PCRE2_JIT_COMPLETE); /* interpreter when JIT is absent */
    rx->md = pcre2_match_data_create_from_pattern(rx->code, NULL);
    rx->mctx = pcre2_match_context_create(NULL);
    if (!rx->md || !rx->mctx) {
        rx_free(rx);
        return MC_ERR_INTERNAL;
    }
    pcre2_set_match_limit(
        rx->mctx, (uint32_t)mc_env_int("MC_MASTER_REGEX_MATCH_LIMIT", 100000, 100, 4000000000));
    pcre2_set_depth_limit(rx->mctx,
                          (uint32_t)mc_env_int("MC_MASTER_REGEX_DEPTH_LIMIT", 2000, 10, 1000000));
    pcre2_set_heap_limit(rx->mctx, 4096); /* KiB of backtracking memory per match */
    rx->deadline_ms =
        mc_now_ms() + (uint64_t)mc_env_int("MC_MASTER_REGEX_SCAN_MS", 10000, 10, 3600000);
    return 0;
}

/* 1 when key matches, 0 when not or when a limit was hit (rx->failed set,
 * logged once). */
static int rx_match(rx_t *rx, const char *key)
{
    if (rx->failed) return 0;
    int rc = pcre2_match(rx->code, (PCRE2_SPTR)key, strlen(key), 0, 0, rx->md, rx->mctx);
    if (rc >= 0) return 1;
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    PCRE2_UCHAR msg[128];
    pcre2_get_error_message(rc, msg, sizeof msg);
    MC_LOGW(TAG, "regex '%.128s' refused: %s on key '%.64s'", rx->pattern, (const char *)msg, key);
    rx->failed = 1;
    return 0;
}

/* Checks the scan deadline between shards. */
static int rx_expired(rx_t *rx)
{
    if (rx->failed) return 1;
    if (mc_now_ms() <= rx->deadline_ms) return 0;
    MC_LOGW(TAG, "regex '%.128s' refused: the scan passed its deadline (MC_MASTER_REGEX_SCAN_MS)",
            rx->pattern);
    rx->failed = 1;
    return 1;
}

typedef struct {
    rx_t *rx; /* NULL: every key */
    int force;
    uint64_t now;
    char **keys;
    size_t n, cap;
    int oom;
} rm_ctx_t;

static int removable(const mobj_t *o, int force, uint64_t now)
{
    return (force || !mc__obj_lease_active(o, now)) && mc__obj_all_complete(o);
}

static int rm_visit(const char *key, void *val, void *arg)
{
    rm_ctx_t *c = arg;
    if (!removable(val, c->force, c->now) || (c->rx && !rx_match(c->rx, key))) return 0;
    if (mc__master_push_key(&c->keys, &c->n, &c->cap, key)) c->oom = 1;
    return c->rx && c->rx->failed;
}

/* Erases each of keys that is still removable; frees keys. Returns the count. */
static int64_t erase_keys(mc_master_t *m, char **keys, size_t n, int force, uint64_t now)
{
    int64_t count = 0;
    for (size_t k = 0; k < n; k++) {
        shard_t *sh = mc__master_shard_of(m, keys[k]);
        pthread_mutex_lock(&sh->mu);
        mobj_t *o = mc_map_get(sh->map, keys[k]);
        if (o && removable(o, force, now)) {
            mc__master_erase_removed_locked(m, sh, keys[k], o, now);
            mc__disk_forget_locked(m, keys[k]);
            count++;
        }
        pthread_mutex_unlock(&sh->mu);
        free(keys[k]);
    }
    free(keys);
    return count;
}

int64_t mc_master_remove_all(mc_master_t *m, int force, uint64_t now_ms)
{
    int64_t count = 0;
    for (size_t i = 0; i < MC_MASTER_SHARDS; i++) {
        shard_t *sh = &m->shards[i];
        pthread_mutex_lock(&sh->mu);
        rm_ctx_t c = {NULL, force, now_ms, NULL, 0, 0, 0};
        mc_map_each(sh->map, rm_visit, &c);
        for (size_t k = 0; k < c.n; k++) {
            mobj_t *o = mc_map_get(sh->map, c.keys[k]);
            if (o) {
                mc__master_erase_removed_locked(m, sh, c.keys[k], o, now_ms);
                mc__disk_forget_locked(m, c.keys[k]);
                count++;
            }
            free(c.keys[k]);
        }
        free(c.keys);
        pthread_mutex_unlock(&sh->mu);
    }
    count += mc__disk_remove_all(m, force, now_ms); /* objects held on disk only */
    if (count)
        MC_LOGI(TAG, "remove_all%s removed %lld objects", force ? " (force)" : "",
                (long long)count);
    return count;
}

int64_t mc_master_remove_by_regex(mc_master_t *m, const char *regex, int force, uint64_t now_ms)
{
    rx_t rx;
    int rc = rx_compile(&rx, regex);
    if (rc) return rc;
    rm_ctx_t c = {&rx, force, now_ms, NULL, 0, 0, 0};
    for (size_t i = 0; i < MC_MASTER_SHARDS && !rx_expired(&rx); i++) {
        shard_t *sh = &m->shards[i];
        pthread_mutex_lock(&sh->mu);
        mc_map_each(sh->map, rm_visit, &c);
        pthread_mutex_unlock(&sh->mu);
    }
    int failed = rx.failed;
    rx_free(&rx);
    if (failed) {
        for (size_t k = 0; k < c.n; k++)
            free(c.keys[k]);
        free(c.keys);
        return MC_ERR_INVALID_PARAMS;
    }
    int64_t count = erase_keys(m, c.keys, c.n, force, now_ms);
    if (count)
        MC_LOGI(TAG, "remove_by_regex '%.128s' removed %lld objects", regex, (long long)count);
    return count;
}

typedef struct {
    mc_master_t *m;
    rx_t *rx;
    uint64_t now;
    void (*fn)(const char *, const mc_replica_t *, size_t, void *);
    void *arg;
} rx_ctx_t;

static int rx_visit(const char *key, void *val, void *arg)
{
    rx_ctx_t *c = arg;
    mobj_t *o = val;
    if (!mc__obj_has_status(o, MC_REPLICA_COMPLETE) || !rx_match(c->rx, key)) return c->rx->failed;
    mc_replica_t *r;
    size_t n;
    if (mc__master_fill_out(o, 1, &r, &n)) return 0;
    mc__master_grant_lease(c->m, o, c->now);
    c->fn(key, r, n, c->arg);
    free(r);
    return 0;
}

int mc_master_get_replicas_by_regex(mc_master_t *m, const char *regex, uint64_t now_ms,
                                    void (*fn)(const char *key, const mc_replica_t *r, size_t n,
                                               void *arg),
                                    void *arg)
{
    rx_t rx;
    if (!fn) return MC_ERR_INVALID_PARAMS;
    int rc = rx_compile(&rx, regex);
    if (rc) return rc;
    rx_ctx_t c = {m, &rx, now_ms, fn, arg};
    for (size_t i = 0; i < MC_MASTER_SHARDS && !rx_expired(&rx); i++) {
        shard_t *sh = &m->shards[i];
        pthread_mutex_lock(&sh->mu);
        mc_map_each(sh->map, rx_visit, &c);
        pthread_mutex_unlock(&sh->mu);
    }
    rc = rx.failed ? MC_ERR_INVALID_PARAMS : 0;
    rx_free(&rx);
    return rc;
}
