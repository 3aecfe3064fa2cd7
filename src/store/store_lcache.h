/* store_lcache.h: the store client's cache of leased replica descriptors.
 *
 * A get asks the master for a key's replicas, and the master grants a read
 * lease with them: until it ends, the object is neither evicted, nor removed
 * (a forced removal parks the object's ranges until the lease's end), nor
 * upserted, nor moved, so its bytes stay where the descriptor says. While
 * that lease runs, a later get of the same key by the same client can read
 * those bytes without asking the master again: one round trip (the data's)
 * instead of two. The cache holds the replica a get picked and the lease's
 * end on this client's clock (the time the request was sent plus the TTL the
 * master answered, never later than the master's own deadline); a hit is
 * taken only while a margin of the lease is left, and the caller re-checks
 * the deadline after the transfer, as for any get.
 *
 * A lease binds only the master that granted it. After an HA failover the
 * new leader knows nothing of the old one's leases (it may even start from an
 * empty index) and places new puts over those ranges at once, so a hit is
 * also taken only within MC_LCACHE_SERVED_MS of the send time of the last
 * request a serving master answered (mc_master_client_served_ms): a leader
 * stops serving a second before a successor can be elected, so within that
 * window no successor exists. A store's heartbeat (1 s) and every get that
 * misses keep the window current; past it a get asks the master.
 *
 * Slots in sets of 8 ways (a new key replaces the entry of its set whose
 * lease ends first only when the set is full), striped locks. Thread rule:
 * any thread. */
#ifndef MC_STORE_LCACHE_H
#define MC_STORE_LCACHE_H
#include <stddef.h>
#include <stdint.h>

#include "master_client.h"

/* A leader's second of safety (master_ha.c SAFETY_MS) less 100 ms of margin. */
#define MC_LCACHE_SERVED_MS 900

typedef struct mc__lcache mc__lcache_t;

/* A cache of `slots` entries (rounded up to a power of two, at least 8); slots 0 gives
 * *out = NULL, the cache off (every call below accepts NULL). Returns 0 or
 * MC_ERR_INTERNAL (no memory). */
int mc__lcache_new(size_t slots, mc__lcache_t **out);
void mc__lcache_free(mc__lcache_t *c);
/* 1 and *rep, *deadline_ms when key is cached with a lease that ends after
 * now_ms plus the margin; 0 otherwise. */
int mc__lcache_get(mc__lcache_t *c, const char *key, uint64_t now_ms, mc_replica_t *rep,
                   uint64_t *deadline_ms);
/* Caches rep for key until deadline_ms, granted for a lease of ttl_ms (the
 * margin is a tenth of it). Keys longer than the slot's room are not cached. */
void mc__lcache_put(mc__lcache_t *c, const char *key, const mc_replica_t *rep, uint64_t deadline_ms,
                    uint64_t ttl_ms);
/* Forgets key (its read failed, or this client removed or upserted it). */
void mc__lcache_drop(mc__lcache_t *c, const char *key);
/* Forgets everything (remove_all, a remount, a new master). */
void mc__lcache_clear(mc__lcache_t *c);
#endif
