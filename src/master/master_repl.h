/* master_repl.h: HA replication of the master's index, from the leader to
 * its standbys (docs/master.md "HA replication").
 *
 * Leader side: a listener on its own port (published by master_ha.c next to
 * the view key); each standby that connects gets the base of the whole index
 * and then every journal record, in order, from a bounded queue of its own
 * (the journal's sink, mc_master_set_repl_sink): the leader never waits for a
 * standby; one that falls behind (queue full, or nothing sent for stall_ms)
 * is cut off with one log line and re-syncs from scratch.
 * Standby side: a thread follows the current leader (cfg.target) and applies
 * the stream to a restore table; mc_repl_take hands it over when this master
 * is elected.
 *
 * Thread rule: start/stop from one thread; take, lost and metrics from any. */
#ifndef MC_MASTER_REPL_H
#define MC_MASTER_REPL_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "master_service.h"

typedef struct mc_repl mc_repl_t;

typedef struct {
    const char *host; /* listen address (loopback or the rpc address) */
    uint16_t port;    /* 0: any free port */
    /* 1 while this master leads, with its view (the HA gate) */
    int (*serving)(void *arg, uint64_t now_ms, uint64_t *view);
    /* the leader to follow: 1 with its replication "<host>:<port>" and view,
     * 0 when none is known or this master leads */
    int (*target)(void *arg, char *addr, size_t len, uint64_t *view);
    void *arg;
} mc_repl_config_t;

/* Starts the listener and the follower thread and installs m's journal sink.
 * Limits from the environment: MC_MASTER_REPL_QUEUE_BYTES (64 MiB per
 * standby), MC_MASTER_REPL_STALL_MS (5000). Errors: -errno (listen). */
int mc_repl_start(mc_master_t *m, const mc_repl_config_t *cfg, mc_repl_t **out);
uint16_t mc_repl_port(const mc_repl_t *r);
/* This master starts leading: stops following and returns the replicated
 * table (NULL when it never received a stream), the highest version seen and
 * the leader it came from. The caller adopts it (mc_master_restore_adopt). */
struct mrestore *mc_repl_take(mc_repl_t *r, uint64_t *version, char *from, size_t fromlen);
/* This master stopped leading: every standby is cut, and it follows again. */
void mc_repl_lost(mc_repl_t *r);
/* Prometheus lines (mooncake_master_repl_*). */
void mc_repl_metrics(FILE *f, mc_repl_t *r);
void mc_repl_stop(mc_repl_t *r);
#endif
