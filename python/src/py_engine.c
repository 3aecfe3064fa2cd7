/* py_engine.c: TransferEngine over libmooncake_te, and EngineHandle (what
 * get_engine() returns, for setup(..., engine)) (py_int.h). */
#include "py_int.h"

/* ------------------------------------------------------------------ */
/* TransferEngine                                                      */

typedef struct {
    uint64_t addr, len;
    int managed; /* mmap'd by allocate_managed_buffer */
} region_t;

typedef struct {
    PyObject_HEAD mc_te_t *te;
    int inited;
    pthread_rwlock_t lk;
    pthread_mutex_t rmu; /* regions */
    region_t *regions;
    size_t nregions, capregions;
} pyte_t;

static void te_region_add(pyte_t *self, uint64_t addr, uint64_t len, int managed)
{
    pthread_mutex_lock(&self->rmu);
    if (self->nregions == self->capregions) {
        size_t cap = self->capregions ? self->capregions * 2 : 16;
        region_t *r = realloc(self->regions, cap * sizeof *r);
        if (!r) {
            pthread_mutex_unlock(&self->rmu);
            return;
        }
        self->regions = r;
        self->capregions = cap;
    }
    self->regions[self->nregions++] = (region_t){addr, len, managed};
    pthread_mutex_unlock(&self->rmu);
}

/* Removes the region starting at addr; returns its managed flag (-1 none). */
static int te_region_del(pyte_t *self, uint64_t addr, uint64_t *len)
{
    int m = -1;
    pthread_mutex_lock(&self->rmu);
    for (size_t i = 0; i < self->nregions; i++)
        if (self->regions[i].addr == addr) {
            m = self->regions[i].managed;
            if (len) *len = self->regions[i].len;
            self->regions[i] = self->regions[--self->nregions];
            break;
        }
    pthread_mutex_unlock(&self->rmu);
    return m;
}

/* Whether [addr, addr+len) lies inside one registered or managed region. */
static int te_region_covers(pyte_t *self, uint64_t addr, uint64_t len)
{
    int ok = 0;
    pthread_mutex_lock(&self->rmu);
    for (size_t i = 0; i < self->nregions && !ok; i++) {
        region_t *r = &self->regions[i];
        ok = addr >= r->addr && len <= r->len && addr - r->addr <= r->len - len;
    }
    pthread_mutex_unlock(&self->rmu);
    return ok;
}

static PyObject *te_new(PyTypeObject *tp, PyObject *args, PyObject *kw)
{
    allocfunc a = (allocfunc)PyType_GetSlot(tp, Py_tp_alloc);
    pyte_t *self = (pyte_t *)a(tp, 0);
    if (!self) return NULL;
    pthread_rwlock_init(&self->lk, NULL);
    pthread_mutex_init(&self->rmu, NULL);
    if (mc_te_create(&self->te) != 0) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

static void te_dealloc(PyObject *o)
{
    pyte_t *self = (pyte_t *)o;
    mc_te_t *te = self->te;
    self->te = NULL;
    Py_BEGIN_ALLOW_THREADS mc_te_destroy(te);
    Py_END_ALLOW_THREADS
    for (size_t i = 0; i < self->nregions; i++)
        if (self->regions[i].managed)
            munmap((void *)(uintptr_t)self->regions[i].addr, self->regions[i].len);
    free(self->regions);
    pthread_rwlock_destroy(&self->lk);
    pthread_mutex_destroy(&self->rmu);
    PyTypeObject *tp = Py_TYPE(o);
    freefunc f = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    f(o);
    Py_DECREF((PyObject *)tp);
}

/* initialize(local_hostname, metadata_server, protocol, device_name) -> 0 / -1 */
static PyObject *te_initialize(PyObject *o, PyObject *args)
{
    pyte_t *self = (pyte_t *)o;
    PyObject *h, *m, *p, *d;
    const char *hs, *ms, *ps, *ds;
    if (!PyArg_ParseTuple(args, "OOOO:initialize", &h, &m, &p, &d) ||
        mc__py_arg_str(h, "local_hostname", &hs) || mc__py_arg_str(m, "metadata_server", &ms) ||
        mc__py_arg_str(p, "protocol", &ps) || mc__py_arg_str(d, "device_name", &ds))
        return NULL;
    int rc;
    WR_BEGIN(self)
    rc = self->inited ? MC_TE_ERR_INVALID_ARGUMENT : mc_te_init(self->te, hs, ms, ps, ds);
    if (rc == 0) self->inited = 1;
    RD_END(self)
    return PyLong_FromLong(rc ? -1 : 0);
}

static PyObject *te_get_rpc_port(PyObject *o, PyObject *unused)
{
    pyte_t *self = (pyte_t *)o;
    return PyLong_FromLong(self->inited ? mc_te_get_rpc_port(self->te) : -1);
}

static PyObject *te_segment_name(PyObject *o, PyObject *unused)
{
    pyte_t *self = (pyte_t *)o;
    return PyUnicode_FromString(self->inited ? mc_te_segment_name(self->te) : "");
}

static PyObject *te_get_engine_ptr(PyObject *o, PyObject *unused)
{
    return PyLong_FromUnsignedLongLong((uintptr_t)((pyte_t *)o)->te);
}

static int te_ready(pyte_t *self)
{
    return self->inited;
}

/* EngineHandle: what get_engine() returns (upstream hands out the C++ engine
 * behind the Python one). It holds a reference to its TransferEngine, so the
 * engine (and its mc_te_t) lives as long as any handle, and any store set up
 * on it (the store holds the handle until close). */
typedef struct {
    PyObject_HEAD PyObject *owner; /* the pyte_t */
} pyeng_t;

PyTypeObject *mc__py_TE_Type, *mc__py_EngineHandle_Type;

static void eng_dealloc(PyObject *o)
{
    Py_CLEAR(((pyeng_t *)o)->owner);
    PyTypeObject *tp = Py_TYPE(o);
    freefunc f = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    f(o);
    Py_DECREF((PyObject *)tp);
}

static PyObject *eng_ptr(PyObject *o, PyObject *unused)
{
    return PyLong_FromUnsignedLongLong((uintptr_t)((pyte_t *)((pyeng_t *)o)->owner)->te);
}

static PyObject *eng_engine(PyObject *o, PyObject *unused)
{
    PyObject *e = ((pyeng_t *)o)->owner;
    Py_INCREF(e);
    return e;
}

static PyMethodDef eng_methods[] = {
    {"get_engine_ptr", eng_ptr, METH_NOARGS, "Address of the C engine (mc_te_t *)."},
    {"transfer_engine", eng_engine, METH_NOARGS, "The TransferEngine this handle keeps alive."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot eng_slots[] = {
    {Py_tp_dealloc, eng_dealloc},
    {Py_tp_methods, eng_methods},
    {Py_tp_doc, "Handle of a TransferEngine for MooncakeDistributedStore.setup(engine=...)."},
    {0, NULL},
};

PyType_Spec mc__py_eng_spec = {"mooncake._core.EngineHandle", sizeof(pyeng_t), 0,
                               Py_TPFLAGS_DEFAULT, eng_slots};

/* get_engine() -> EngineHandle */
static PyObject *te_get_engine(PyObject *o, PyObject *unused)
{
    allocfunc a = (allocfunc)PyType_GetSlot(mc__py_EngineHandle_Type, Py_tp_alloc);
    pyeng_t *h = (pyeng_t *)a(mc__py_EngineHandle_Type, 0);
    if (!h) return NULL;
    Py_INCREF(o);
    h->owner = o;
    return (PyObject *)h;
}

/* The engine behind setup's `engine` argument: an EngineHandle or a
 * TransferEngine. 1 with *te set, 0 when the engine is not initialized, -1
 * with TypeError for anything else. */
int mc__py_engine_arg(PyObject *o, mc_te_t **te)
{
    if (PyObject_TypeCheck(o, mc__py_EngineHandle_Type)) o = ((pyeng_t *)o)->owner;
    if (!PyObject_TypeCheck(o, mc__py_TE_Type)) {
        PyErr_SetString(PyExc_TypeError,
                        "engine must be None, a TransferEngine or TransferEngine.get_engine()");
        return -1;
    }
    pyte_t *t = (pyte_t *)o;
    if (!t->inited) return 0;
    *te = t->te;
    return 1;
}

/* register_memory(buffer_addr, capacity, location="*") */
static PyObject *te_register_memory(PyObject *o, PyObject *args, PyObject *kw)
{
    pyte_t *self = (pyte_t *)o;
    static char *kwl[] = {"buffer_addr", "capacity", "location", NULL};
    PyObject *a, *c;
    const char *loc = "*";
    uint64_t addr, cap;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|s:register_memory", kwl, &a, &c, &loc) ||
        mc__py_arg_u64(a, "buffer_addr", &addr) || mc__py_arg_u64(c, "capacity", &cap))
        return NULL;
    if (!te_ready(self)) return PyLong_FromLong(-1);
    int rc;
    RD_BEGIN(self)
    rc = mc_te_register(self->te, (void *)(uintptr_t)addr, cap, loc);
    RD_END(self)
    if (rc == 0) te_region_add(self, addr, cap, 0);
    return PyLong_FromLong(rc);
}

static PyObject *te_unregister_memory(PyObject *o, PyObject *args)
{
    pyte_t *self = (pyte_t *)o;
    PyObject *a;
    uint64_t addr;
    if (!PyArg_ParseTuple(args, "O:unregister_memory", &a) || mc__py_arg_u64(a, "buffer_addr", &addr))
        return NULL;
    if (!te_ready(self)) return PyLong_FromLong(-1);
    int rc;
    RD_BEGIN(self)
    rc = mc_te_unregister(self->te, (void *)(uintptr_t)addr);
    RD_END(self)
    if (rc == 0) te_region_del(self, addr, NULL);
    return PyLong_FromLong(rc);
}

static PyObject *te_batch_register_memory(PyObject *o, PyObject *args, PyObject *kw)
{
    pyte_t *self = (pyte_t *)o;
    static char *kwl[] = {"buffer_addresses", "capacities", "location", NULL};
    PyObject *as, *cs, *ret = NULL;
    const char *loc = "*";
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|s:batch_register_memory", kwl, &as, &cs, &loc))
        return NULL;
    uint64_t *addrs = NULL, *caps = NULL;
    size_t na = 0, nc = 0;
    if (mc__py_u64v_from(as, "buffer_addresses", &addrs, &na) || mc__py_u64v_from(cs, "capacities", &caps, &nc) ||
        mc__py_check_len(na, nc, "buffer_addresses", "capacities"))
        goto out;
    if (!te_ready(self)) {
        ret = PyLong_FromLong(-1);
        goto out;
    }
    int rc;
    RD_BEGIN(self)
    rc = mc_te_register_batch(self->te, (void *const *)addrs, (const size_t *)caps, na, loc);
    RD_END(self)
    if (rc == 0)
        for (size_t i = 0; i < na; i++) te_region_add(self, addrs[i], caps[i], 0);
    ret = PyLong_FromLong(rc);
out:
    free(addrs);
    free(caps);
    return ret;
}

static PyObject *te_batch_unregister_memory(PyObject *o, PyObject *args)
{
    pyte_t *self = (pyte_t *)o;
    PyObject *as, *ret = NULL;
    if (!PyArg_ParseTuple(args, "O:batch_unregister_memory", &as)) return NULL;
    uint64_t *addrs = NULL;
    size_t na = 0;
    if (mc__py_u64v_from(as, "buffer_addresses", &addrs, &na)) return NULL;
    if (!te_ready(self)) {
        ret = PyLong_FromLong(-1);
        goto out;
    }
    int rc;
    RD_BEGIN(self)
    rc = mc_te_unregister_batch(self->te, (void *const *)addrs, na);
    RD_END(self)
    for (size_t i = 0; i < na; i++) te_region_del(self, addrs[i], NULL);
    ret = PyLong_FromLong(rc);
out:
    free(addrs);
    return ret;
}

/* Builds n requests to target (new segment handle). Python error on bad args. */
static int te_build(pyte_t *self, PyObject *bufs, PyObject *peers, PyObject *lens, int opcode,
                    mc_te_request_t **out, size_t *n_out)
{
    uint64_t *b = NULL, *p = NULL, *l = NULL;
    size_t nb = 0, np = 0, nl = 0;
    int rc = -1;
    if (mc__py_u64v_from(bufs, "buffers", &b, &nb) || mc__py_u64v_from(peers, "peer_buffer_addresses", &p, &np) ||
        mc__py_u64v_from(lens, "lengths", &l, &nl) || mc__py_check_len(nb, np, "buffers", "peer_buffer_addresses") ||
        mc__py_check_len(nb, nl, "buffers", "lengths"))
        goto out;
    mc_te_request_t *r = calloc(nb + 1, sizeof *r);
    if (!r) {
        PyErr_NoMemory();
        goto out;
    }
    if (!mc__py_ptrs_ok(self->inited ? self->te : NULL, b, l, nb)) {
        free(r);
        *out = NULL;
        *n_out = 0;
        rc = 1; /* not a Python error: the transfer fails with -1 / 0 */
        goto out;
    }
    for (size_t i = 0; i < nb; i++) {
        r[i].opcode = opcode;
        r[i].source = (void *)(uintptr_t)b[i];
        r[i].target_offset = p[i];
        r[i].length = l[i];
    }
    *out = r;
    *n_out = nb;
    rc = 0;
out:
    free(b);
    free(p);
    free(l);
    return rc;
}

/* Runs without the GIL: resolves target and fills target_id. */
static int te_resolve(pyte_t *self, const char *target, mc_te_request_t *r, size_t n, int32_t *h)
{
    int rc = mc_te_open_segment(self->te, target, h);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) r[i].target_id = *h;
    return 0;
}

/* Synchronous transfer of n requests; 0 or -1 (and the segment cache dropped). */
static int te_sync_nogil(pyte_t *self, const char *target, mc_te_request_t *r, size_t n)
{
    int32_t h = -1;
    int rc = te_resolve(self, target, r, n, &h);
    if (rc == 0 && n) rc = mc_te_transfer_sync(self->te, r, n);
    if (rc && h > 0) mc_te_close_segment(self->te, h);
    return rc ? -1 : 0;
}

/* Submits n requests as one batch; python batch id (mc id + 1) or 0. */
static uint64_t te_async_nogil(pyte_t *self, const char *target, mc_te_request_t *r, size_t n)
{
    int32_t h = -1;
    uint64_t id = MC_TE_INVALID_BATCH;
    int rc = te_resolve(self, target, r, n, &h);
    if (rc == 0) rc = mc_te_batch_alloc(self->te, n ? n : 1, &id);
    if (rc == 0 && n) rc = mc_te_batch_submit(self->te, id, r, n);
    if (rc) {
        if (id != MC_TE_INVALID_BATCH) mc_te_batch_free(self->te, id);
        if (h > 0) mc_te_close_segment(self->te, h);
        return 0;
    }
    return id + 1;
}

/* transfer_sync_{write,read}(target_hostname, buffer, peer_buffer_address, length, transport_hint="")
 * and transfer_submit_write (async). mode: 0 sync, 1 submit. */
static PyObject *te_single(PyObject *o, PyObject *args, PyObject *kw, int opcode, int submit)
{
    pyte_t *self = (pyte_t *)o;
    static char *kwl[] = {"target_hostname", "buffer", "peer_buffer_address", "length",
                          "transport_hint", NULL};
    PyObject *t, *b, *p, *l;
    const char *hint = "", *target;
    uint64_t buf, peer, len;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOO|s", kwl, &t, &b, &p, &l, &hint) ||
        mc__py_arg_str(t, "target_hostname", &target) || mc__py_arg_u64(b, "buffer", &buf) ||
        mc__py_arg_u64(p, "peer_buffer_address", &peer) || mc__py_arg_u64(l, "length", &len))
        return NULL;
    if (!te_ready(self) || !mc__py_ptr_ok_te(self->te, buf, len)) return PyLong_FromLong(submit ? 0 : -1);
    mc_te_request_t r = {opcode, (void *)(uintptr_t)buf, 0, peer, len};
    long long rc;
    RD_BEGIN(self)
    rc = submit ? (long long)te_async_nogil(self, target, &r, 1) : te_sync_nogil(self, target, &r, 1);
    RD_END(self)
    return submit ? PyLong_FromUnsignedLongLong((unsigned long long)rc) : PyLong_FromLongLong(rc);
}
static PyObject *te_sync_write(PyObject *o, PyObject *a, PyObject *k) { return te_single(o, a, k, MC_TE_WRITE, 0); }
static PyObject *te_sync_read(PyObject *o, PyObject *a, PyObject *k) { return te_single(o, a, k, MC_TE_READ, 0); }
static PyObject *te_submit_write(PyObject *o, PyObject *a, PyObject *k) { return te_single(o, a, k, MC_TE_WRITE, 1); }

/* transfer_sync(target, buffer, peer_addr, length, opcode, notify=None, transport_hint="") */
static PyObject *te_transfer_sync(PyObject *o, PyObject *args, PyObject *kw)
{
    pyte_t *self = (pyte_t *)o;
    static char *kwl[] = {"target_hostname", "buffer", "peer_buffer_address", "length", "opcode",
                          "notify", "transport_hint", NULL};
    PyObject *t, *b, *p, *l, *op, *notify = Py_None;
    const char *hint = "", *target;
    uint64_t buf, peer, len, opc;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOO|Os:transfer_sync", kwl, &t, &b, &p, &l, &op,
                                     &notify, &hint) ||
        mc__py_arg_str(t, "target_hostname", &target) || mc__py_arg_u64(b, "buffer", &buf) ||
        mc__py_arg_u64(p, "peer_buffer_address", &peer) || mc__py_arg_u64(l, "length", &len))
        return NULL;
    PyObject *opi = PyNumber_Long(op);
    if (!opi) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "opcode must be a TransferOpcode");
        return NULL;
    }
    int r0 = mc__py_arg_u64(opi, "opcode", &opc);
    Py_DECREF(opi);
    if (r0) return NULL;
    PyObject *nn = NULL, *nm = NULL;
    const char *ns = NULL, *ms = NULL;
    if (notify != Py_None) {
        nn = PyObject_GetAttrString(notify, "name");
        nm = nn ? PyObject_GetAttrString(notify, "msg") : NULL;
        if (!nn || !nm || mc__py_arg_str(nn, "notify.name", &ns) || mc__py_arg_str(nm, "notify.msg", &ms)) {
            Py_XDECREF(nn);
            Py_XDECREF(nm);
            return NULL;
        }
    }
    long rc = -1;
    if (te_ready(self) && mc__py_ptr_ok_te(self->te, buf, len)) {
        mc_te_request_t r = {opc == MC_TE_WRITE ? MC_TE_WRITE : MC_TE_READ, (void *)(uintptr_t)buf,
                             0, peer, len};
        RD_BEGIN(self)
        rc = te_sync_nogil(self, target, &r, 1);
        if (rc == 0 && ns) rc = mc_te_notify_send(self->te, target, ns, ms) ? -1 : 0;
        RD_END(self)
    }
    Py_XDECREF(nn);
    Py_XDECREF(nm);
    return PyLong_FromLong(rc);
}

/* batch_transfer_{sync,async}_{write,read}(target_hostname, buffers, peer_buffer_addresses, lengths, transport_hint="") */
static PyObject *te_batch(PyObject *o, PyObject *args, PyObject *kw, int opcode, int async)
{
    pyte_t *self = (pyte_t *)o;
    static char *kwl[] = {"target_hostname", "buffers", "peer_buffer_addresses", "lengths",
                          "transport_hint", NULL};
    PyObject *t, *b, *p, *l;
    const char *hint = "", *target;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOO|s", kwl, &t, &b, &p, &l, &hint) ||
        mc__py_arg_str(t, "target_hostname", &target))
        return NULL;
    mc_te_request_t *r = NULL;
    size_t n = 0;
    int br = te_build(self, b, p, l, opcode, &r, &n);
    if (br < 0) return NULL;
    long long rc = async ? 0 : -1;
    if (br == 0 && te_ready(self)) {
        RD_BEGIN(self)
        rc = async ? (long long)te_async_nogil(self, target, r, n) : te_sync_nogil(self, target, r, n);
        RD_END(self)
    }
    free(r);
    return async ? PyLong_FromUnsignedLongLong((unsigned long long)rc) : PyLong_FromLongLong(rc);
}
static PyObject *te_bsw(PyObject *o, PyObject *a, PyObject *k) { return te_batch(o, a, k, MC_TE_WRITE, 0); }
static PyObject *te_bsr(PyObject *o, PyObject *a, PyObject *k) { return te_batch(o, a, k, MC_TE_READ, 0); }
static PyObject *te_baw(PyObject *o, PyObject *a, PyObject *k) { return te_batch(o, a, k, MC_TE_WRITE, 1); }
static PyObject *te_bar(PyObject *o, PyObject *a, PyObject *k) { return te_batch(o, a, k, MC_TE_READ, 1); }

/* get_batch_transfer_status(batch_ids): waits for all, frees them; 0 or -1 */
static PyObject *te_get_batch_status(PyObject *o, PyObject *args)
{
    pyte_t *self = (pyte_t *)o;
    PyObject *ids;
    if (!PyArg_ParseTuple(args, "O:get_batch_transfer_status", &ids)) return NULL;
    uint64_t *v = NULL;
    size_t n = 0;
    if (mc__py_u64v_from(ids, "batch_ids", &v, &n)) return NULL;
    int rc = 0;
    if (!te_ready(self)) rc = -1;
    else {
        RD_BEGIN(self)
        for (size_t i = 0; i < n; i++) {
            mc_te_status_t st = MC_TE_FAILED;
            if (v[i] == 0 || mc_te_batch_wait(self->te, v[i] - 1, -1, &st) != 0) {
                rc = -1;
                continue;
            }
            if (st != MC_TE_COMPLETED) rc = -1;
            mc_te_batch_free(self->te, v[i] - 1);
        }
        RD_END(self)
    }
    free(v);
    return PyLong_FromLong(rc);
}

/* transfer_check_status(batch_id): 1 done, 0 pending, -1 failed, -2 timeout */
static PyObject *te_check_status(PyObject *o, PyObject *args)
{
    pyte_t *self = (pyte_t *)o;
    PyObject *a;
    uint64_t id;
    if (!PyArg_ParseTuple(args, "O:transfer_check_status", &a) || mc__py_arg_u64(a, "batch_id", &id))
        return NULL;
    if (!te_ready(self) || id == 0) return PyLong_FromLong(-1);
    int rc;
    RD_BEGIN(self)
    mc_te_status_t st = MC_TE_FAILED;
    rc = mc_te_batch_status(self->te, id - 1, &st);
    if (rc)
        rc = -1;
    else if (st == MC_TE_PENDING || st == MC_TE_WAITING)
        rc = 0;
    else {
        rc = st == MC_TE_COMPLETED ? 1 : st == MC_TE_TIMEOUT ? -2 : -1;
        mc_te_batch_free(self->te, id - 1);
    }
    RD_END(self)
    return PyLong_FromLong(rc);
}

/* allocate_managed_buffer(length) -> address or 0 */
static PyObject *te_alloc_managed(PyObject *o, PyObject *args)
{
    pyte_t *self = (pyte_t *)o;
    PyObject *a;
    uint64_t len;
    if (!PyArg_ParseTuple(args, "O:allocate_managed_buffer", &a) || mc__py_arg_u64(a, "length", &len))
        return NULL;
    if (!te_ready(self) || len == 0) return PyLong_FromLong(0);
    void *p = MAP_FAILED;
    int rc = -1;
    RD_BEGIN(self)
    p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) {
        rc = mc_te_register(self->te, p, len, "cpu:0");
        if (rc) munmap(p, len);
    }
    RD_END(self)
    if (rc) return PyLong_FromLong(0);
    te_region_add(self, (uintptr_t)p, len, 1);
    return PyLong_FromUnsignedLongLong((uintptr_t)p);
}

/* free_managed_buffer(addr, length) -> 0 (or -1 when addr is not one) */
static PyObject *te_free_managed(PyObject *o, PyObject *args)
{
    pyte_t *self = (pyte_t *)o;
    PyObject *a, *l;
    uint64_t addr, len, reg = 0;
    if (!PyArg_ParseTuple(args, "OO:free_managed_buffer", &a, &l) || mc__py_arg_u64(a, "buffer_addr", &addr) ||
        mc__py_arg_u64(l, "length", &len))
        return NULL;
    int m = te_region_del(self, addr, &reg);
    if (m != 1) {
        if (m == 0) te_region_add(self, addr, reg, 0);
        return PyLong_FromLong(-1);
    }
    RD_BEGIN(self)
    mc_te_unregister(self->te, (void *)(uintptr_t)addr);
    munmap((void *)(uintptr_t)addr, reg);
    RD_END(self)
    return PyLong_FromLong(0);
}

/* write_bytes_to_buffer(dest_address, src_ptr: bytes, length) -> 0 / -1 */
static PyObject *te_write_bytes(PyObject *o, PyObject *args)
{
    pyte_t *self = (pyte_t *)o;
    PyObject *a, *src, *l;
    uint64_t addr, len;
    if (!PyArg_ParseTuple(args, "OOO:write_bytes_to_buffer", &a, &src, &l) ||
        mc__py_arg_u64(a, "dest_address", &addr) || mc__py_arg_u64(l, "length", &len))
        return NULL;
    mc_pybuf_t b;
    if (mc__py_buf_get(src, &b) < 0) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "src_ptr must be a bytes-like object");
        return NULL;
    }
    int rc = -1;
    if (len <= (uint64_t)b.len && te_region_covers(self, addr, len)) {
        memcpy((void *)(uintptr_t)addr, b.buf, len);
        rc = 0;
    }
    mc__py_buf_release(&b);
    return PyLong_FromLong(rc);
}

/* read_bytes_from_buffer(source_address, length) -> bytes (b"" outside registered memory) */
static PyObject *te_read_bytes(PyObject *o, PyObject *args)
{
    pyte_t *self = (pyte_t *)o;
    PyObject *a, *l;
    uint64_t addr, len;
    if (!PyArg_ParseTuple(args, "OO:read_bytes_from_buffer", &a, &l) ||
        mc__py_arg_u64(a, "source_address", &addr) || mc__py_arg_u64(l, "length", &len))
        return NULL;
    if (!te_region_covers(self, addr, len)) return PyBytes_FromStringAndSize("", 0);
    return PyBytes_FromStringAndSize((const char *)(uintptr_t)addr, (Py_ssize_t)len);
}

static PyObject *te_first_buffer(PyObject *o, PyObject *args)
{
    pyte_t *self = (pyte_t *)o;
    PyObject *s;
    const char *seg;
    if (!PyArg_ParseTuple(args, "O:get_first_buffer_address", &s) ||
        mc__py_arg_str(s, "segment_name", &seg))
        return NULL;
    if (!te_ready(self)) return PyLong_FromLong(0);
    uint64_t addr = 0, len = 0;
    int rc;
    RD_BEGIN(self)
    rc = mc_te_first_buffer(self->te, seg, &addr, &len);
    RD_END(self)
    return PyLong_FromUnsignedLongLong(rc ? 0 : addr);
}

static PyObject *te_send_probe(PyObject *o, PyObject *args, PyObject *kw)
{
    pyte_t *self = (pyte_t *)o;
    static char *kwl[] = {"peer_server_name", NULL};
    PyObject *s;
    const char *seg;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O:send_probe", kwl, &s) ||
        mc__py_arg_str(s, "peer_server_name", &seg))
        return NULL;
    if (!te_ready(self)) return PyLong_FromLong(-1);
    int rc;
    RD_BEGIN(self)
    rc = mc_te_probe(self->te, seg);
    RD_END(self)
    return PyLong_FromLong(rc);
}

/* _notify(target, name, msg) -> int; _get_notifies() -> list[(name, msg)] */
static PyObject *te_notify(PyObject *o, PyObject *args)
{
    pyte_t *self = (pyte_t *)o;
    const char *t, *n, *m;
    if (!PyArg_ParseTuple(args, "sss", &t, &n, &m)) return NULL;
    if (!te_ready(self)) return PyLong_FromLong(-1);
    int rc;
    RD_BEGIN(self)
    rc = mc_te_notify_send(self->te, t, n, m);
    RD_END(self)
    return PyLong_FromLong(rc);
}

static PyObject *te_get_notifies(PyObject *o, PyObject *unused)
{
    pyte_t *self = (pyte_t *)o;
    mc_te_notify_t *v = NULL;
    size_t n = 0;
    if (te_ready(self)) {
        int rc;
        RD_BEGIN(self)
        rc = mc_te_notify_fetch(self->te, &v, &n);
        RD_END(self)
        if (rc) n = 0;
    }
    PyObject *l = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; l && i < n; i++) {
        PyObject *t = Py_BuildValue("(ss)", v[i].name ? v[i].name : "", v[i].msg ? v[i].msg : "");
        if (!t) {
            Py_CLEAR(l);
            break;
        }
        PyList_SetItem(l, (Py_ssize_t)i, t);
    }
    if (v) mc_te_notify_free(v, n);
    return l;
}

/* _segment_transport(target_hostname): "shm", "tcp", "local" or "none" (not
 * reachable); opens the segment, so the peer's descriptor is read first. */
static PyObject *te_segment_transport(PyObject *o, PyObject *args)
{
    pyte_t *self = (pyte_t *)o;
    const char *target, *t = "none";
    if (!PyArg_ParseTuple(args, "s", &target)) return NULL;
    if (!te_ready(self)) return PyUnicode_FromString(t);
    int32_t h = -1;
    int rc;
    RD_BEGIN(self)
    rc = mc_te_open_segment(self->te, target, &h);
    if (rc == 0) t = mc_te_segment_transport(self->te, h);
    RD_END(self)
    return PyUnicode_FromString(t);
}

#define KWM(name, fn) {name, (PyCFunction)(void (*)(void))fn, METH_VARARGS | METH_KEYWORDS, NULL}
static PyMethodDef te_methods[] = {
    {"initialize", te_initialize, METH_VARARGS, NULL},
    {"get_rpc_port", te_get_rpc_port, METH_NOARGS, NULL},
    {"_segment_name", te_segment_name, METH_NOARGS, NULL},
    {"_segment_transport", te_segment_transport, METH_VARARGS, NULL},
    {"get_engine_ptr", te_get_engine_ptr, METH_NOARGS, NULL},
    {"get_engine", te_get_engine, METH_NOARGS, NULL},
    KWM("register_memory", te_register_memory),
    {"unregister_memory", te_unregister_memory, METH_VARARGS, NULL},
    KWM("batch_register_memory", te_batch_register_memory),
    {"batch_unregister_memory", te_batch_unregister_memory, METH_VARARGS, NULL},
    KWM("transfer_sync_write", te_sync_write),
    KWM("transfer_sync_read", te_sync_read),
    KWM("transfer_sync", te_transfer_sync),
    KWM("transfer_submit_write", te_submit_write),
    KWM("batch_transfer_sync_write", te_bsw),
    KWM("batch_transfer_sync_read", te_bsr),
    KWM("batch_transfer_async_write", te_baw),
    KWM("batch_transfer_async_read", te_bar),
    {"get_batch_transfer_status", te_get_batch_status, METH_VARARGS, NULL},
    {"transfer_check_status", te_check_status, METH_VARARGS, NULL},
    {"allocate_managed_buffer", te_alloc_managed, METH_VARARGS, NULL},
    {"free_managed_buffer", te_free_managed, METH_VARARGS, NULL},
    {"write_bytes_to_buffer", te_write_bytes, METH_VARARGS, NULL},
    {"read_bytes_from_buffer", te_read_bytes, METH_VARARGS, NULL},
    {"get_first_buffer_address", te_first_buffer, METH_VARARGS, NULL},
    KWM("send_probe", te_send_probe),
    {"_notify", te_notify, METH_VARARGS, NULL},
    {"_get_notifies", te_get_notifies, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot te_slots[] = {
    {Py_tp_new, te_new},
    {Py_tp_dealloc, te_dealloc},
    {Py_tp_methods, te_methods},
    {Py_tp_doc, "Mooncake transfer engine (C core)."},
    {0, NULL},
};

PyType_Spec mc__py_te_spec = {"mooncake._core.TransferEngine", sizeof(pyte_t), 0,
                              Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, te_slots};

