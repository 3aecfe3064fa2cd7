/* py_store_ranges.c: MooncakeDistributedStore._read_ranges, the zero-copy core
 * of upstream's get_into_ranges (python/mooncake/store_ext.py): byte ranges of
 * objects read by the transfer engine straight from a replica into the
 * caller's buffers, one master round trip per key (its replica descriptors,
 * which grant the read lease) and one engine batch for all the ranges.
 *
 * The caller (store_ext.py) has checked the destinations (_mem_ok); this file
 * checks each range against its object's size. A key whose only complete
 * replicas are not in memory (the SSD tier's LOCAL_DISK) answers
 * INVALID_REPLICA, and store_ext.py reads it the copying way. */
#include "py_int.h"

#include <stdio.h>

#include "base_log.h"

typedef struct {
    uint64_t ki, dst, off, len;
} rng_t;

typedef struct {
    int rc;
    uint64_t addr, size;
    char endpoint[256];
    int32_t handle;
} rkey_t;

/* Fills k from the key's descriptors: a COMPLETE memory replica (status 3,
 * kind 0), its segment opened on te. */
static void rkey_resolve(mc_store_t *s, mc_te_t *te, const char *key, rkey_t *k)
{
    mc_store_replica_desc_t *d = NULL;
    size_t n = 0;
    k->rc = mc_store_get_replica_desc(s, key, &d, &n);
    if (k->rc) return;
    k->rc = MC_ERR_INVALID_REPLICA;
    for (size_t i = 0; i < n; i++) {
        if (d[i].kind != 0 || d[i].status != 3) continue;
        k->addr = d[i].addr;
        k->size = d[i].size;
        snprintf(k->endpoint, sizeof k->endpoint, "%s", d[i].endpoint);
        int trc = mc_te_open_segment(te, k->endpoint, &k->handle);
        if (trc) {
            MC_LOGW("py", "key '%s': cannot open segment '%s': %s", key, k->endpoint,
                    mc_te_strerror(trc));
            k->rc = MC_ERR_TRANSFER_FAIL;
        } else {
            k->rc = 0;
        }
        break;
    }
    free(d);
}

/* Runs the queued requests as one batch; res[owner[i]] = its length or TRANSFER_FAIL. */
static void rng_run(mc_te_t *te, const mc_te_request_t *reqs, const size_t *owner, size_t n,
                    uint64_t bytes, int64_t *res)
{
    uint64_t batch;
    int trc = mc_te_batch_alloc(te, n, &batch);
    if (trc == 0) {
        trc = bytes <= MC_TE_RUN_INLINE_BYTES ? mc_te_batch_run(te, batch, reqs, n)
                                              : mc_te_batch_submit(te, batch, reqs, n);
        if (trc == 0) {
            mc_te_status_t st;
            mc_te_batch_wait(te, batch, (int)(60000 + bytes / 1000000), &st);
            for (size_t i = 0; i < n; i++) {
                mc_te_status_t ts = MC_TE_FAILED;
                int ok = mc_te_task_status(te, batch, i, &ts, NULL) == 0 && ts == MC_TE_COMPLETED;
                res[owner[i]] = ok ? (int64_t)reqs[i].length : MC_ERR_TRANSFER_FAIL;
            }
        }
        if (mc_te_batch_free(te, batch) != 0)
            MC_LOGW("py",
                    "ranged read: TE batch still busy after its deadline; left to the engine");
    }
    if (trc) {
        MC_LOGW("py", "ranged read of %zu ranges failed: %s", n, mc_te_strerror(trc));
        for (size_t i = 0; i < n; i++)
            res[owner[i]] = MC_ERR_TRANSFER_FAIL;
    }
}

static int rng_parse(PyObject *seq, size_t nkeys, rng_t **out, size_t *n_out)
{
    Py_ssize_t n = mc__py_arg_seq(seq, "ranges");
    if (n < 0) return -1;
    rng_t *r = calloc((size_t)n + 1, sizeof *r);
    if (!r) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PySequence_GetItem(seq, i);
        uint64_t v[4];
        int bad = !t || mc__py_arg_seq(t, "ranges[i]") != 4;
        for (Py_ssize_t j = 0; !bad && j < 4; j++) {
            PyObject *x = PySequence_GetItem(t, j);
            bad = !x || mc__py_arg_u64(x, "ranges[i]", &v[j]) < 0;
            Py_XDECREF(x);
        }
        Py_XDECREF(t);
        if (bad || v[0] >= nkeys) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError,
                                "ranges: (key index, dst, src_offset, length) tuples");
            free(r);
            return -1;
        }
        r[i] = (rng_t){v[0], v[1], v[2], v[3]};
    }
    *out = r;
    *n_out = (size_t)n;
    return 0;
}

/* _read_ranges(keys, ranges) -> list[int]: ranges are (key index, dst,
 * src_offset, length); per range the bytes read, or the key's error
 * (OBJECT_NOT_FOUND, INVALID_REPLICA: no memory replica), INVALID_PARAMS (past
 * the object's end), TRANSFER_FAIL. */
PyObject *mc__py_store_read_ranges(PyObject *o, PyObject *args)
{
    pystore_t *self = (pystore_t *)o;
    PyObject *ks, *rs, *ret = NULL;
    if (!PyArg_ParseTuple(args, "OO:_read_ranges", &ks, &rs)) return NULL;
    strv_t keys;
    if (mc__py_strv_from(ks, "keys", &keys)) return NULL;
    rng_t *r = NULL;
    size_t nr = 0;
    rkey_t *k = NULL;
    int64_t *res = NULL;
    mc_te_request_t *reqs = NULL;
    size_t *owner = NULL;
    if (rng_parse(rs, keys.n, &r, &nr)) goto out;
    k = calloc(keys.n + 1, sizeof *k);
    res = calloc(nr + 1, sizeof *res);
    reqs = calloc(nr + 1, sizeof *reqs);
    owner = calloc(nr + 1, sizeof *owner);
    if (!k || !res || !reqs || !owner) {
        PyErr_NoMemory();
        goto out;
    }
    RD_BEGIN(self)
    mc_te_t *te = mc_store_get_engine(self->s);
    for (size_t i = 0; i < keys.n; i++) {
        if (te)
            rkey_resolve(self->s, te, keys.v[i], &k[i]);
        else
            k[i].rc = MC_ERR_INVALID_PARAMS;
    }
    size_t nq = 0;
    uint64_t bytes = 0;
    for (size_t i = 0; i < nr; i++) {
        const rkey_t *kk = &k[r[i].ki];
        if (kk->rc) {
            res[i] = kk->rc;
        } else if (r[i].off > kk->size || r[i].len > kk->size - r[i].off || !r[i].dst) {
            res[i] = MC_ERR_INVALID_PARAMS;
        } else if (r[i].len == 0) {
            res[i] = 0;
        } else {
            reqs[nq] = (mc_te_request_t){.opcode = MC_TE_READ,
                                         .source = (void *)(uintptr_t)r[i].dst,
                                         .target_id = kk->handle,
                                         .target_offset = kk->addr + r[i].off,
                                         .length = r[i].len};
            owner[nq++] = i;
            bytes += r[i].len;
        }
    }
    if (nq) rng_run(te, reqs, owner, nq, bytes, res);
    RD_END(self)
    ret = mc__py_int_list(res, nr);
out:
    free(r);
    free(k);
    free(res);
    free(reqs);
    free(owner);
    mc__py_strv_free(&keys);
    return ret;
}
