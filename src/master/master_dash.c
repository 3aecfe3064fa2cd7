/* master_dash.c: the dashboard's assets and its status JSON (master_dash.h).
 * The status is computed at each request from the core's introspection calls
 * (a pass over the segment table and one over the clients); the dashboard
 * polls it once a second, so nothing is cached. */
#include "master_dash.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base_time.h"
#include "master_ha.h"
#include "base_version.h"

const mc_master_dash_asset_t *mc_master_dash_asset(const char *path)
{
    for (const mc_master_dash_asset_t *a = mc_master_dash_assets; a->path; a++)
        if (!strcmp(a->path, path)) return a;
    return NULL;
}

static void uuid_text(mc_uuid_t u, char buf[48])
{
    snprintf(buf, 48, "%" PRIu64 "-%" PRIu64, u.hi, u.lo);
}

static void ds_seg(const mc_master_segment_info_t *si, void *arg)
{
    const mc_segment_t *g = &si->seg;
    char cid[48], base[24];
    uuid_text(si->client, cid);
    snprintf(base, sizeof base, "0x%" PRIx64, g->base);
    double pct = g->size ? 100.0 * (double)si->used_bytes / (double)g->size : 0.0;
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:f, s:b}", "name", g->name, "te_endpoint",
                  g->te_endpoint, "protocol", g->protocol, "client_id", cid, "base_address", base,
                  "capacity_bytes", (json_int_t)g->size, "used_bytes", (json_int_t)si->used_bytes,
                  "usage_percent", pct, "draining", si->draining);
    if (o) json_array_append_new(arg, o);
}

typedef struct {
    json_t *arr;
    uint64_t alive;
} ds_clients_t;

static void ds_client(const mc_master_client_info_t *c, void *arg)
{
    ds_clients_t *q = arg;
    char id[48];
    uuid_text(c->id, id);
    json_t *o = json_pack("{s:s, s:I, s:I, s:b}", "client_id", id, "heartbeat_age_ms",
                          (json_int_t)c->heartbeat_age_ms, "ttl_left_ms",
                          (json_int_t)c->ttl_left_ms, "alive", c->alive);
    if (o) json_array_append_new(q->arr, o);
    q->alive += c->alive != 0;
}

json_t *mc_master_dash_status(mc_master_t *m, mc_master_ha_t *ha, uint64_t start_unix_ms,
                              uint64_t start_mono_ms)
{
    mc_master_ha_info_t in = {.role = "leader", .state = "serving"};
    if (ha) mc_master_ha_info(ha, &in);
    mc_master_stats_t st = {0};
    mc_master_get_stats(m, &st);
    json_t *segs = json_array();
    ds_clients_t cl = {json_array(), 0};
    uint64_t now = mc_now_ms();
    if (segs) mc_master_each_segment(m, ds_seg, segs);
    if (cl.arr) mc_master_each_client(m, now, ds_client, &cl);
    json_t *j = NULL;
    if (segs && cl.arr)
        j = json_pack(
            "{s:s, s:s, s:s, s:s, s:b, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
            "version", mc_version(), "implementation", "mooncake-c", "role", in.role,
            "ha_state", in.state, "ha_enabled", ha != NULL, "uptime_seconds",
            (double)(now - start_mono_ms) / 1000.0, "start_time_unix_ms", (json_int_t)start_unix_ms,
            "keys", (json_int_t)st.key_count, "soft_pinned_keys", (json_int_t)st.soft_pin_key_count,
            "allocated_bytes", (json_int_t)st.allocated_bytes, "capacity_bytes",
            (json_int_t)st.capacity_bytes, "clients_alive", (json_int_t)st.active_clients,
            "evicted_keys_total", (json_int_t)st.evicted_key_count, "evicted_bytes_total",
            (json_int_t)st.evicted_size_bytes, "expired_clients_total",
            (json_int_t)st.expired_clients, "purged_objects_total", (json_int_t)st.purged_objects);
    if (!j) {
        json_decref(segs);
        json_decref(cl.arr);
        return NULL;
    }
    if (!ha || in.leader_known) {
        json_object_set_new(j, "leader_address", ha ? json_string(in.leader) : json_null());
        json_object_set_new(j, "view_version", json_integer((json_int_t)in.view));
    }
    json_object_set_new(j, "segments", segs);
    json_object_set_new(j, "clients", cl.arr);
    return j;
}
