/* master_repl.h: HA replication of the master's index, from the leader to
 * its standbys (docs/master.md "HA replication").
 *
 * Leader side: a listener on its own port (published by master_ha.c next to
 * the view key); each standby that connects gets the base of the whole index
 * and then every journal record, in order, from a bounded queue of its own
 * (the journal's sink, mc_master_set_repl_sink): the leader never waits for a
 * standby; one that falls behind (queue full, or nothing sent for stall_ms)
 * is cut off with one log line and re-syncs from scratch. Standbys ack what
 * they applied; ranges the leader frees are held until every member of the
 * in-sync set (kept in etcd/redis through cfg.isr_write) acked them.
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
    /* writes the in-sync set (val: "<view> <leader> <id as 16 hex digits> ...",
     * leader: cfg.self; written at each term's start and on change), only
     * while this master still holds view in the coordination service; 0
     * when written (the ISR thread calls it, never under a lock) */
    int (*isr_write)(void *arg, uint64_t view, const char *val);
    void *arg;
    char self[320]; /* this master's rpc "<host>:<port>", named as leader in the set */
} mc_repl_config_t;

/* Starts the listener, the follower and the in-sync-set threads and installs
 * m's journal sink and free hold (mc_master_set_free_hold). Limits from the
 * environment: MC_MASTER_REPL_QUEUE_BYTES (64 MiB per standby),
 * MC_MASTER_REPL_STALL_MS (5000), MC_MASTER_REPL_ACK_TIMEOUT_MS (1000: a
 * standby silent that long is cut off and leaves the in-sync set),
 * MC_MASTER_REPL_HOLD_WAIT_MS (20: how long a put that finds no room waits
 * for held frees to come back, mc_master_set_free_hold).
 * Errors: -errno (listen). */
int mc_repl_start(mc_master_t *m, const mc_repl_config_t *cfg, mc_repl_t **out);
uint16_t mc_repl_port(const mc_repl_t *r);
/* What mc_repl_take hands over with the table. */
typedef struct {
    uint64_t version; /* the highest mutation version seen */
    char from[400];   /* "leader H:P (in sync|base incomplete)" */
    int synced;       /* the whole base was applied */
    uint64_t view;    /* the view of the leader it followed */
    uint64_t id;      /* this standby's id (its name in the in-sync set) */
} mc_repl_taken_t;
/* This master starts leading: stops following and returns the replicated
 * table (NULL when it never received a stream) and what *out says. The
 * caller adopts it (mc_master_restore_adopt) only when the in-sync set of
 * out->view lists out->id (mc_repl_isr_lists), else frees it. */
struct mrestore *mc_repl_take(mc_repl_t *r, mc_repl_taken_t *out);
uint64_t mc_repl_id(const mc_repl_t *r);
/* 1 when val (an in-sync set value, see isr_write) names view and lists id. */
int mc_repl_isr_lists(const char *val, uint64_t view, uint64_t id);
/* 1 with the leader that wrote val, 0 when malformed. */
int mc_repl_isr_leader(const char *val, char *leader, size_t len);
/* This master stopped leading: every standby is cut, and it follows again. */
void mc_repl_lost(mc_repl_t *r);
/* Prometheus lines (mooncake_master_repl_*). */
void mc_repl_metrics(FILE *f, mc_repl_t *r);
void mc_repl_stop(mc_repl_t *r);
#endif
