/* master_disk_rpc.c: the SSD tier's methods of the master RPC (DISK_CONFIG,
 * DISK_MOUNT, DISK_UNMOUNT, DISK_TASKS, DISK_ADD, DISK_DROP, PROMOTE_START;
 * docs/protocol.md):
 * decode the request, call master_disk.c, encode the reply. master_rpc.c
 * hands every method it does not serve itself to mc_master_disk_serve. */
#include <errno.h>
#include <stdlib.h>

#include "master_disk.h"

int mc_master_disk_serve(mc_master_t *m, unsigned method, uint32_t id, const uint8_t *p, size_t len,
                         mc_mp_arena_t *a, mc_mp_buf_t *o, uint64_t now, const char **why)
{
    int rc = 0, e = 0;
    switch (method) {
    case MC_MP_DISK_MOUNT: {
        mc_mp_disk_mount_req_t q;
        if (mc_mp_decode_disk_mount_req(p, len, a, &q, why)) return MC_MASTER_DISK_BAD;
        mc_master_disk_mode_t mode;
        rc = mc_master_disk_mount(m, q.client, q.disk, q.name, q.endpoint, q.quota, &mode);
        mc_mp_disk_mount_rep_t rep = {.offload_on_evict = mode.offload_on_evict,
                                      .promotion_on_hit = mode.promotion_on_hit,
                                      .promotion_threshold = mode.promotion_threshold};
        e = mc_mp_encode_disk_mount_rep(o, id, rc, &rep);
        break;
    }
    case MC_MP_DISK_UNMOUNT: {
        mc_mp_disk_unmount_req_t q;
        if (mc_mp_decode_disk_unmount_req(p, len, a, &q, why)) return MC_MASTER_DISK_BAD;
        rc = mc_master_disk_unmount(m, q.client);
        e = mc_mp_encode_disk_unmount_rep(o, id, rc, &(mc_mp_disk_unmount_rep_t){0});
        break;
    }
    case MC_MP_DISK_CONFIG: {
        mc_mp_disk_config_req_t q;
        if (mc_mp_decode_disk_config_req(p, len, a, &q, why)) return MC_MASTER_DISK_BAD;
        int on;
        const char *root;
        mc_master_disk_config(m, &on, &root);
        mc_mp_disk_config_rep_t rep = {.enabled = (uint8_t)on, .root_fs_dir = root};
        e = mc_mp_encode_disk_config_rep(o, id, 0, &rep);
        break;
    }
    case MC_MP_DISK_TASKS: {
        mc_mp_disk_tasks_req_t q;
        if (mc_mp_decode_disk_tasks_req(p, len, a, &q, why)) return MC_MASTER_DISK_BAD;
        mc_master_disk_tasks_t t;
        rc = mc_master_disk_tasks(m, q.client, q.max, &t);
        mc_mp_disk_tasks_rep_t rep = {
            .keys = (const char *const *)t.keys,
            .n_keys = t.n,
            .addrs = t.addrs,
            .n_addrs = t.n,
            .sizes = t.sizes,
            .n_sizes = t.n,
            .stamps = t.stamps,
            .n_stamps = t.n,
            .drops = (const char *const *)t.drops,
            .n_drops = t.ndrops,
            .promotes = (const char *const *)t.promotes,
            .n_promotes = t.npromotes,
        };
        e = mc_mp_encode_disk_tasks_rep(o, id, rc, &rep);
        mc_master_disk_tasks_free(&t);
        break;
    }
    case MC_MP_DISK_ADD: {
        mc_mp_disk_add_req_t q;
        if (mc_mp_decode_disk_add_req(p, len, a, &q, why)) return MC_MASTER_DISK_BAD;
        int32_t *rcs = NULL;
        if (q.n_sizes != q.n_keys || q.n_stamps != q.n_keys)
            rc = MC_ERR_INVALID_PARAMS;
        else if (!(rcs = calloc(q.n_keys ? q.n_keys : 1, sizeof *rcs)))
            rc = MC_ERR_INTERNAL;
        else
            rc = mc_master_disk_add(m, q.client, q.keys, q.sizes, q.stamps, q.n_keys, q.rescan != 0,
                                    rcs);
        e = mc_mp_encode_disk_add_rep(
            o, id, rc, &(mc_mp_disk_add_rep_t){.rcs = rcs, .n_rcs = rc ? 0 : q.n_keys});
        free(rcs);
        break;
    }
    case MC_MP_DISK_DROP: {
        mc_mp_disk_drop_req_t q;
        if (mc_mp_decode_disk_drop_req(p, len, a, &q, why)) return MC_MASTER_DISK_BAD;
        int32_t *rcs = calloc(q.n_keys ? q.n_keys : 1, sizeof *rcs);
        rc = rcs ? mc_master_disk_drop(m, q.client, q.keys, q.n_keys, now, rcs) : MC_ERR_INTERNAL;
        e = mc_mp_encode_disk_drop_rep(
            o, id, rc, &(mc_mp_disk_drop_rep_t){.rcs = rcs, .n_rcs = rc ? 0 : q.n_keys});
        free(rcs);
        break;
    }
    case MC_MP_PROMOTE_START: {
        mc_mp_promote_start_req_t q;
        if (mc_mp_decode_promote_start_req(p, len, a, &q, why)) return MC_MASTER_DISK_BAD;
        mc_replica_t *r = NULL;
        size_t n = 0;
        rc = mc_master_promote_start(m, q.client, q.key, q.size, &q.cfg, now, &r, &n);
        e = mc_mp_encode_promote_start_rep(
            o, id, rc, &(mc_mp_promote_start_rep_t){.reps = r, .n_reps = rc ? 0 : n});
        free(r);
        break;
    }
    default:
        return MC_MASTER_DISK_NOT_MINE;
    }
    return e ? -ENOMEM : rc;
}
