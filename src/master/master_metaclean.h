/* master_metaclean.h: --enable_metadata_cleanup_on_timeout. When a client
 * expires, its segments' transfer-engine records (mooncake/ram/<segment> and
 * mooncake/rpc_meta/<segment>, under MC_METADATA_CLUSTER_ID) are deleted from
 * the cluster's metadata store, whichever backend it is (http, etcd, redis),
 * so a dead store's descriptor does not linger for peers to open.
 * The deletions run on a thread of their own (a store can take seconds to
 * answer), fed by a bounded queue: the tick thread never waits for them.
 * Thread rule: start/stop from one thread; mc_master_metaclean_push from any. */
#ifndef MC_MASTER_METACLEAN_H
#define MC_MASTER_METACLEAN_H

#include "master_service.h"

typedef struct mc_master_metaclean mc_master_metaclean_t;

/* Opens the metadata store named by conn (a metadata connection string) and
 * starts the thread. 0, or the mc_meta_open error (-EINVAL, logged). */
int mc_master_metaclean_start(const char *conn, mc_master_metaclean_t **out);
/* Queues seg's records for deletion (drops, with a line, past 4096 queued).
 * Fits mc_master_config_t.on_segment_expired. */
void mc_master_metaclean_push(void *mc, const mc_segment_t *seg);
/* The metadata store of the cluster, as upstream's master finds it:
 * MOONCAKE_TE_META_DATA_SERVER, else the "metadata_server" of the JSON file
 * MOONCAKE_CONFIG_PATH, else the embedded server on embedded_port (> 0).
 * 0, or -ENOENT when none is known. */
int mc_master_metaclean_conn(char *buf, size_t len, int embedded_port);
/* Deletes what is queued, then stops. */
void mc_master_metaclean_stop(mc_master_metaclean_t *mc);
#endif
