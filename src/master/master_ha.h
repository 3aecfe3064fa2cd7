/* master_ha.h: leader election of HA masters (--enable_ha) on etcd (or on one
 * redis server: --ha_backend_type=redis; the same rules, with SET NX PX).
 *
 * Every master of a cluster campaigns for the key
 * "mooncake-store/<cluster_id>/master_view", whose value is the master's
 * "<rpc_address>:<port>", bound to a lease of lease_ttl_s seconds: the one that
 * creates the key leads, under the view of the key's create revision; the
 * others are standbys and watch for the key to go. A leader refreshes its
 * lease every lease_ttl_s / 5 and takes itself to be the leader only until
 * lease_ttl_s - 1 s after the last refresh it sent that succeeded, so it stops
 * serving before etcd can let anyone else in: two masters never both serve.
 * The gate (mc_master_ha_serving) answers from the monotonic clock, so a
 * leader that was stopped past its lease serves nothing once resumed, even
 * before its election thread runs again.
 *
 * A leader that has a replication address publishes it next to the view key,
 * under the same lease; a standby reads it (mc_master_ha_info) to follow the
 * leader's journal. The in-sync set key (mc_master_ha_isr_put) is not leased. The change callback
 * runs before the gate opens: nothing is served under a new term until on_change(1) returned.
 *
 * Thread rule: start and stop from one thread; mc_master_ha_serving and
 * mc_master_ha_info from any (they read atomics or take a short lock). The
 * change callback runs on the election thread. */
#ifndef MC_MASTER_HA_H
#define MC_MASTER_HA_H
#include <stddef.h>
#include <stdint.h>

typedef struct mc_master_ha mc_master_ha_t;

typedef struct {
    const char *backend;    /* "etcd" (default when NULL) or "redis" */
    const char *endpoints;  /* etcd "h1:2379;h2:2379", or "redis://[user:pw@]host:port[/db]" */
    const char *cluster_id; /* the key's namespace */
    const char *advertise;  /* this master's "<rpc_address>:<port>" */
    int lease_ttl_s;        /* 5 */
    /* this master's replication address "<host>:<port>" (master_repl.h), or
     * NULL: a leader publishes it as "mooncake-store/<cluster_id>/master_repl"
     * = "<host>:<port> <view>", bound to the same lease as the view key */
    const char *repl_advertise;
    /* called on the election thread when this master starts (leading 1) or
     * stops (0) leading; view is the new leader view (0 when stopping) */
    void (*on_change)(void *arg, int leading, uint64_t view);
    void *arg;
} mc_master_ha_config_t;

/* Connects to etcd and starts campaigning. Returns 0, MC_ERR_INVALID_PARAMS
 * for a bad endpoint list or advertise address (logged), MC_ERR_INTERNAL. */
int mc_master_ha_start(const mc_master_ha_config_t *cfg, mc_master_ha_t **out);
/* Stops campaigning; a leader gives its key up at once (revokes its lease),
 * so a standby takes over without waiting for the lease to run out. */
void mc_master_ha_stop(mc_master_ha_t *h);

/* 1 while this master leads and its lease is valid at now_ms (monotonic),
 * with *view its leader view; 0 otherwise. Fits mc_master_rpc_gate_fn. */
int mc_master_ha_serving(void *h, uint64_t now_ms, uint64_t *view);

typedef struct {
    const char *role;  /* "leader" or "standby" (upstream's names) */
    const char *state; /* "starting", "standby", "candidate" or "serving" */
    int leader_known;
    char leader[320]; /* the leader's "<address>:<port>" when known */
    uint64_t view;    /* its view */
    uint64_t elections_won, leadership_lost;
    int repl_known;        /* the leader's replication address for view is known */
    char leader_repl[320]; /* its "<host>:<port>" */
} mc_master_ha_info_t;
void mc_master_ha_info(mc_master_ha_t *h, mc_master_ha_info_t *out);

/* The in-sync set of HA replication (master_repl.h), key
 * "mooncake-store/<cluster_id>/master_repl_isr" (redis: with the hash tag),
 * NOT bound to the lease: it must outlive the leader. put writes val only
 * while this master's view key of view still exists (etcd: one transaction
 * comparing its create revision; redis: one EVAL comparing the key and the
 * version): 0 when written, else -ECANCELED/-ESTALE (the term is over) or
 * -EIO. get: 0 with *val malloc'd, -ENOENT, -EIO. Any thread. */
int mc_master_ha_isr_put(mc_master_ha_t *h, uint64_t view, const char *val);
int mc_master_ha_isr_get(mc_master_ha_t *h, char **val);
#endif
