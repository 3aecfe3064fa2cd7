/* te_name.c: who owns a segment name. An engine publishes
 * mooncake/rpc_meta/<segment> = {"ip_or_host_name","rpc_port"} at start; the
 * metadata server keeps the first such record and refuses a different one
 * (upstream's rule), so a process killed without a chance to delete its record
 * would keep its name forever. Here a newcomer that finds the name taken asks
 * the recorded address who it is:
 *
 *   connection refused, or a listener that does not speak our protocol, or a
 *   TE engine that answers META with another segment's name  -> the owner is
 *   gone: its record is replaced by ours (one INFO line);
 *   the segment itself answers                               -> a live owner:
 *   refused, naming its address;
 *   no answer in time, or any other doubt                    -> refused too.
 *
 * Replacing is a delete and a put, which two newcomers could interleave (each
 * deleting the other's fresh record). So the replacer first takes a lock: the
 * key "<key>~takeover@<stale ip:port>", itself an rpc_meta key and so
 * put-if-absent on the server. Only the holder deletes the stale record, and
 * only after re-reading that it still is the one it judged; the loser of the
 * lock sees a live holder and is refused. A lock left by a holder that died
 * mid-takeover is stale in the same way and is taken over by the same rule,
 * one level deeper (bounded). Everything runs at start-up, on the caller's
 * thread, before our listener serves. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base_env.h"
#include "base_log.h"
#include "base_time.h"
#include "net_sock.h"
#include "te_int.h"

#define TAG "te"
#define CLAIM_DEPTH 3 /* takeover locks on takeover locks, at most */
#define CLAIM_TRIES 4 /* re-reads of a record that keeps changing under us */
#define KEY_MAX 1024

enum { OWNER_LIVE, OWNER_GONE, OWNER_UNKNOWN };
enum { AGAIN = 1 };

/* Asks whoever listens at ip:port for its descriptor (META) and judges whether
 * it is the live owner of our segment name. why[256] gets the evidence. */
static int probe_owner(mc_te_t *te, const char *ip, uint16_t port, char *why)
{
    int fd, rc = mc_sock_connect(ip, port, te->connect_timeout_ms, &fd);
    if (rc == -ECONNREFUSED) {
        snprintf(why, 256, "nothing listens at %s:%u", ip, port);
        return OWNER_GONE;
    }
    if (rc) {
        snprintf(why, 256, "cannot reach %s:%u: %s", ip, port, strerror(-rc));
        return OWNER_UNKNOWN;
    }
    mc_sock_set_timeout(fd, te->connect_timeout_ms);
    int verdict = OWNER_UNKNOWN;
    uint8_t buf[MC_TE_HDR_LEN];
    mc__te_hdr_t h;
    const char *bad;
    char *body = NULL;
    uint64_t max = (uint64_t)mc_env_int("MC_HANDSHAKE_MAX_LENGTH", 1 << 20, 1, 128 << 20);
    /* the whole exchange within the connect timeout: whoever is there cannot
     * stall our start by answering a byte at a time */
    int io = te->connect_timeout_ms, cur = io;
    uint64_t deadline = mc_now_ms() + (uint64_t)io;
    if (mc__te_auth_client(te, fd, ip, port, deadline)) {
        snprintf(why, 256, "%s:%u did not complete the cluster secret's exchange", ip, port);
        goto out;
    }
    if ((rc = mc__te_send_frame_by(fd, MC_TE_OP_META, 1, 0, 0, 0, NULL, deadline, io, &cur)) ||
        (rc = mc__te_io_by(fd, buf, sizeof buf, 0, deadline, io, &cur))) {
        snprintf(why, 256, "no answer from %s:%u: %s", ip, port, strerror(-rc));
        goto out;
    }
    if (mc__te_hdr_decode(buf, sizeof buf, &h, &bad) != 0) {
        snprintf(why, 256, "%s:%u is not a transfer engine (%s)", ip, port, bad);
        verdict = OWNER_GONE;
        goto out;
    }
    if (h.opcode != (MC_TE_OP_META | MC_TE_OP_REPLY) || h.status != MC_TE_ST_OK || h.length > max ||
        !(body = malloc(h.length + 1)) || mc__te_io_by(fd, body, h.length, 0, deadline, io, &cur)) {
        snprintf(why, 256, "%s:%u gave no usable descriptor", ip, port);
        goto out;
    }
    mc__te_desc_t d;
    char derr[256];
    if (mc__te_desc_decode(body, h.length, &d, derr) != 0) {
        snprintf(why, 256, "%s:%u sent a bad descriptor: %s", ip, port, derr);
        goto out;
    }
    if (strcmp(d.name, te->seg_name) != 0) {
        snprintf(why, 256, "%s:%u now serves segment '%.100s'", ip, port, d.name);
        verdict = OWNER_GONE;
    } else {
        snprintf(why, 256, "segment '%.100s' answers at %s:%u (pid %lld)", d.name, ip, port,
                 (long long)d.pid);
        verdict = OWNER_LIVE;
    }
    mc__te_desc_clear(&d);
out:
    free(body);
    close(fd);
    return verdict;
}

static int claim(mc_te_t *te, const char *key, const char *mine, int depth);

/* key held cur, which is not ours. Takes the key over when cur's owner is gone.
 * Returns 0 (key holds mine), AGAIN (the record changed: read it again), or
 * MC_TE_ERR_METADATA (refused; logged). */
static int take_over(mc_te_t *te, const char *key, const char *mine, const char *cur, int depth)
{
    char ip[64], why[256], lock[KEY_MAX];
    uint16_t port = 0;
    int verdict;
    if (mc__te_rpc_decode(cur, ip, sizeof ip, &port) != 0) {
        snprintf(ip, sizeof ip, "?");
        snprintf(why, sizeof why, "the record names no address");
        verdict = OWNER_GONE; /* nobody can be reached through it */
    } else {
        verdict = probe_owner(te, ip, port, why);
    }
    if (verdict == OWNER_LIVE) {
        MC_LOGE(TAG,
                "cannot publish %s: another engine already uses this name, live at %s:%u "
                "(%s)",
                key, ip, port, why);
        return MC_TE_ERR_METADATA;
    }
    if (verdict == OWNER_UNKNOWN) {
        MC_LOGE(TAG,
                "cannot publish %s: another engine already uses this name and may be live "
                "at %s:%u (%s)",
                key, ip, port, why);
        return MC_TE_ERR_METADATA;
    }
    if (depth >= CLAIM_DEPTH) {
        MC_LOGE(TAG, "cannot publish %s: too many stale takeover locks", key);
        return MC_TE_ERR_METADATA;
    }
    int n = snprintf(lock, sizeof lock, "%s~takeover@%s:%u", key, ip, port);
    if (n < 0 || (size_t)n >= sizeof lock) {
        MC_LOGE(TAG, "cannot publish %s: takeover key too long", key);
        return MC_TE_ERR_METADATA;
    }
    int rc = claim(te, lock, mine, depth + 1);
    if (rc) return rc; /* another newcomer holds the lock (logged) */
    /* we hold the lock for this stale record: only we may replace it, and only
     * if it still is the record we judged */
    char *now = NULL;
    rc = mc_meta_get(te->meta, key, &now);
    if (rc == 0 && strcmp(now, cur) == 0) {
        mc_meta_del(te->meta, key);
        rc = mc_meta_put(te->meta, key, mine);
        if (rc == 0)
            MC_LOGI(TAG, "took over %s from its previous owner at %s:%u, which is gone (%s)", key,
                    ip, port, why);
        rc = rc == 0 ? 0 : rc == -EEXIST ? AGAIN : MC_TE_ERR_METADATA;
    } else {
        rc = rc == 0 || rc == -ENOENT ? AGAIN : MC_TE_ERR_METADATA;
    }
    free(now);
    mc_meta_del(te->meta, lock);
    if (rc == MC_TE_ERR_METADATA) MC_LOGE(TAG, "cannot publish %s: metadata store error", key);
    return rc;
}

/* Puts mine under key (an rpc_meta key: put-if-absent), taking it over from a
 * gone owner. 0 or MC_TE_ERR_METADATA (logged). */
static int claim(mc_te_t *te, const char *key, const char *mine, int depth)
{
    for (int tries = 0; tries < CLAIM_TRIES; tries++) {
        int rc = mc_meta_put(te->meta, key, mine);
        if (rc == 0) return 0;
        if (rc != -EEXIST) {
            MC_LOGE(TAG, "cannot publish %s: %s", key, strerror(-rc));
            return MC_TE_ERR_METADATA;
        }
        char *cur = NULL;
        rc = mc_meta_get(te->meta, key, &cur);
        if (rc == -ENOENT) continue; /* deleted meanwhile: put again */
        if (rc) {
            MC_LOGE(TAG, "cannot read %s: %s", key, strerror(-rc));
            return MC_TE_ERR_METADATA;
        }
        rc = take_over(te, key, mine, cur, depth);
        free(cur);
        if (rc != AGAIN) return rc;
    }
    MC_LOGE(TAG, "cannot publish %s: the record keeps changing", key);
    return MC_TE_ERR_METADATA;
}

int mc__te_claim_name(mc_te_t *te)
{
    if (te->p2p) return 0;
    char key[512], *rec = mc__te_rpc_encode(te->ip, te->port);
    if (!rec) return MC_TE_ERR_MEMORY;
    int rc = mc_meta_key(key, sizeof key, "rpc_meta", te->seg_name);
    rc = rc ? MC_TE_ERR_INVALID_ARGUMENT : claim(te, key, rec, 0);
    free(rec);
    return rc;
}
