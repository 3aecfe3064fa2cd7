/* master_metrics.c: the core's metrics as Prometheus text (master_metrics.h).
 * Each value is read once (mc_master_get_stats) and written under its
 * conventional name and, where upstream's dashboards or our older scripts
 * read another name, under that one too with the same value:
 *
 *   conventional                      also written as (upstream / older)
 *   master_keys                       master_key_count
 *   master_soft_pinned_keys           master_soft_pin_key_count
 *   master_segments                   master_segment_count (ours, deprecated)
 *   master_evicted_keys_total         master_evicted_key_count
 *   master_evicted_bytes_total        master_evicted_size_bytes
 *   master_put_start_discards_total   master_put_start_discard_cnt
 *   master_put_start_releases_total   master_put_start_release_cnt
 *
 * The old names keep their old TYPE lines, so nothing that parses them
 * today changes. */
#include "master_metrics.h"

#include <inttypes.h>

#include "base_time.h"
#include "base_version.h"

static void mm_metric(FILE *f, const char *name, const char *type, const char *help, uint64_t v)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", name, help, name, type, name, v);
}

void mc_master_metrics_write(FILE *f, mc_master_t *m, const mc_master_metrics_info_t *in)
{
    mc_master_stats_t st = {0};
    mc_master_get_stats(m, &st);
    mm_metric(f, "master_allocated_bytes", "gauge", "Bytes allocated in mounted segments",
              st.allocated_bytes);
    mm_metric(f, "master_total_capacity_bytes", "gauge", "Bytes of all mounted segments",
              st.capacity_bytes);
    mm_metric(f, "master_keys", "gauge", "Objects in the index", st.key_count);
    mm_metric(f, "master_key_count", "gauge", "Objects in the index (upstream's name)",
              st.key_count);
    mm_metric(f, "master_soft_pinned_keys", "gauge", "Soft-pinned objects", st.soft_pin_key_count);
    mm_metric(f, "master_soft_pin_key_count", "gauge", "Soft-pinned objects (upstream's name)",
              st.soft_pin_key_count);
    mm_metric(f, "master_active_clients", "gauge", "Clients alive (heartbeating)",
              st.active_clients);
    mm_metric(f, "master_segments", "gauge", "Mounted segments", st.segment_count);
    mm_metric(f, "master_segment_count", "gauge", "Mounted segments (deprecated name)",
              st.segment_count);
    mm_metric(f, "master_evicted_keys_total", "counter", "Objects evicted since start",
              st.evicted_key_count);
    mm_metric(f, "master_evicted_key_count", "counter",
              "Objects evicted since start (upstream's name)", st.evicted_key_count);
    mm_metric(f, "master_evicted_bytes_total", "counter", "Bytes evicted since start",
              st.evicted_size_bytes);
    mm_metric(f, "master_evicted_size_bytes", "counter",
              "Bytes evicted since start (upstream's name)", st.evicted_size_bytes);
    mm_metric(f, "master_put_start_discards_total", "counter",
              "Unfinished puts preempted after the discard timeout", st.put_start_discard_cnt);
    mm_metric(f, "master_put_start_discard_cnt", "counter",
              "Unfinished puts preempted after the discard timeout (upstream's name)",
              st.put_start_discard_cnt);
    mm_metric(f, "master_put_start_releases_total", "counter",
              "Unfinished puts whose space was released after the release timeout",
              st.put_start_release_cnt);
    mm_metric(f, "master_put_start_release_cnt", "counter",
              "Unfinished puts whose space was released (upstream's name)",
              st.put_start_release_cnt);
    mm_metric(f, "master_expired_clients_total", "counter",
              "Clients expired for missing heartbeats", st.expired_clients);
    mm_metric(f, "master_unmounted_segments_total", "counter",
              "Segments unmounted (by their owner or when it expired)", st.unmounted_segments);
    mm_metric(f, "master_purged_objects_total", "counter",
              "Objects dropped because their last replica's segment went away", st.purged_objects);
    fprintf(f,
            "# HELP master_build_info The master's version and its RPC protocol version (value 1)\n"
            "# TYPE master_build_info gauge\n"
            "master_build_info{version=\"%s\",protocol=\"%s\",implementation=\"mooncake-c\"} 1\n",
            mc_version(), MC_MASTER_VERSION);
    uint64_t up = mc_now_ms() - in->start_mono_ms;
    fprintf(f,
            "# HELP master_uptime_seconds Seconds since the master started\n"
            "# TYPE master_uptime_seconds gauge\n"
            "master_uptime_seconds %" PRIu64 ".%03" PRIu64 "\n",
            up / 1000, up % 1000);
    fprintf(f,
            "# HELP master_start_time_seconds Unix time the master started\n"
            "# TYPE master_start_time_seconds gauge\n"
            "master_start_time_seconds %" PRIu64 ".%03" PRIu64 "\n",
            in->start_unix_ms / 1000, in->start_unix_ms % 1000);
    mm_metric(f, "master_is_leader", "gauge", "1 while this master serves (always without HA)",
              (uint64_t)(in->leader != 0));
}
