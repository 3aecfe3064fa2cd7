/* py_core.c: the `mooncake._core` extension module, written against the
 * CPython limited API (abi3, 3.11+). It exposes two types over the C core:
 *
 *   MooncakeDistributedStore  (libmooncake_store, mooncake/store.h)
 *   TransferEngine            (libmooncake_te, mooncake/te.h)
 *
 * plus BufferHandle (an owned byte buffer with the buffer protocol) and
 * EngineHandle (TransferEngine.get_engine(), for setup(..., engine)). The thin
 * Python modules mooncake/store.py and mooncake/engine.py subclass these and
 * add what Python does better (setup(dict), descriptor objects, enums).
 *
 * Conventions: upstream's names, defaults and return conventions (integers,
 * never exceptions, where upstream returns integers); wrong argument types
 * raise TypeError naming the argument, mismatched batch lengths ValueError.
 * Every call into the C core runs with the GIL released. Each object has a
 * rwlock: setup/initialize/close take it for writing (the C headers forbid
 * them to run concurrently with other calls), everything else for reading. */
#define Py_LIMITED_API 0x030B0000
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "mooncake/store.h"
#include "mooncake/te.h"
#include "store_srv.h"

#ifndef MC_PY_VERSION
#define MC_PY_VERSION "0.0.0"
#endif

/* ------------------------------------------------------------------ */
/* argument helpers                                                    */

/* Converts an int argument; TypeError/ValueError naming the argument. */
static int arg_u64(PyObject *o, const char *name, uint64_t *out)
{
    if (!PyLong_Check(o) || PyBool_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int", name);
        return -1;
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s must be a non-negative 64-bit int", name);
        return -1;
    }
    *out = v;
    return 0;
}

/* Borrowed UTF-8 of a str (or bytes) argument, valid while o lives. */
static int arg_str(PyObject *o, const char *name, const char **out)
{
    if (PyUnicode_Check(o)) {
        *out = PyUnicode_AsUTF8AndSize(o, NULL);
        return *out ? 0 : -1;
    }
    if (PyBytes_Check(o)) {
        *out = PyBytes_AsString(o);
        return *out ? 0 : -1;
    }
    PyErr_Format(PyExc_TypeError, "%s must be a str", name);
    return -1;
}

static Py_ssize_t arg_seq(PyObject *o, const char *name)
{
    if (!PyList_Check(o) && !PyTuple_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be a list", name);
        return -1;
    }
    return PySequence_Size(o);
}

/* A list of str held alive (new references) with their UTF-8 pointers. */
typedef struct {
    PyObject **refs;
    const char **v;
    size_t n;
} strv_t;

static void strv_free(strv_t *s)
{
    for (size_t i = 0; i < s->n; i++) Py_XDECREF(s->refs[i]);
    free(s->refs);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static int strv_from(PyObject *seq, const char *name, strv_t *s)
{
    memset(s, 0, sizeof *s);
    Py_ssize_t n = arg_seq(seq, name);
    if (n < 0) return -1;
    s->refs = calloc((size_t)n + 1, sizeof *s->refs);
    s->v = calloc((size_t)n + 1, sizeof *s->v);
    if (!s->refs || !s->v) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *it = PySequence_GetItem(seq, i);
        if (!it) goto fail;
        s->refs[s->n++] = it;
        if (arg_str(it, name, &s->v[i]) < 0) goto fail;
    }
    return 0;
fail:
    strv_free(s);
    return -1;
}

/* A list of ints as uint64. *out is malloc'd (at least one element). */
static int u64v_from(PyObject *seq, const char *name, uint64_t **out, size_t *n_out)
{
    Py_ssize_t n = arg_seq(seq, name);
    if (n < 0) return -1;
    uint64_t *v = calloc((size_t)n + 1, sizeof *v);
    if (!v) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *it = PySequence_GetItem(seq, i);
        if (!it) goto fail;
        int rc = arg_u64(it, name, &v[i]);
        Py_DECREF(it);
        if (rc < 0) goto fail;
    }
    *out = v;
    *n_out = (size_t)n;
    return 0;
fail:
    free(v);
    return -1;
}

static int check_len(size_t a, size_t b, const char *an, const char *bn)
{
    if (a == b) return 0;
    PyErr_Format(PyExc_ValueError, "%s and %s must have the same length (%zu != %zu)", an, bn, a, b);
    return -1;
}

/* Whether [p, p+len) is mapped memory (mincore; ENOMEM on a hole), so that a
 * bad pointer from Python gets an error code instead of a crash in the C
 * core. Protection bits are not checked. */
static int ptr_ok(uint64_t p, uint64_t len)
{
    if (len == 0) return 1;
    if (p == 0 || p + len < p) return 0;
    const uint64_t pg = 4096;
    uint64_t a = p & ~(pg - 1), end = p + len;
    unsigned char vec[1024];
    while (a < end) {
        uint64_t chunk = end - a;
        if (chunk > sizeof vec * pg) chunk = sizeof vec * pg;
        if (mincore((void *)(uintptr_t)a, chunk, vec) != 0) return 0;
        a += chunk;
    }
    return 1;
}

/* ptr_ok, except that a range inside one buffer registered with te (NULL:
 * none) is taken as mapped without a syscall: registering memory is the
 * caller's promise that it stays mapped until unregistered. */
static int ptr_ok_te(mc_te_t *te, uint64_t p, uint64_t len)
{
    if (te && len && p && p + len > p && mc_te_is_registered(te, (const void *)(uintptr_t)p, len))
        return 1;
    return ptr_ok(p, len);
}

static int ptrs_ok(mc_te_t *te, const uint64_t *p, const uint64_t *len, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!ptr_ok_te(te, p[i], len[i])) return 0;
    return 1;
}

/* keys[i] with ptrs[i][] and sizes[i][] as scatter lists. */
typedef struct {
    mc_store_iov_t *flat;
    const mc_store_iov_t **parts;
    size_t *nparts;
} iov2_t;

static void iov2_free(iov2_t *v)
{
    free(v->flat);
    free(v->parts);
    free(v->nparts);
    memset(v, 0, sizeof *v);
}

static int iov2_from(PyObject *ptrs, PyObject *sizes, size_t n, iov2_t *v)
{
    memset(v, 0, sizeof *v);
    Py_ssize_t np = arg_seq(ptrs, "all_buffer_ptrs"), ns = arg_seq(sizes, "all_sizes");
    if (np < 0 || ns < 0) return -1;
    if (check_len(n, (size_t)np, "keys", "all_buffer_ptrs") ||
        check_len(n, (size_t)ns, "keys", "all_sizes"))
        return -1;
    uint64_t **pp = calloc(n + 1, sizeof *pp), **ss = calloc(n + 1, sizeof *ss);
    v->nparts = calloc(n + 1, sizeof *v->nparts);
    v->parts = calloc(n + 1, sizeof *v->parts);
    size_t total = 0;
    int rc = -1;
    if (!pp || !ss || !v->nparts || !v->parts) {
        PyErr_NoMemory();
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        PyObject *a = PySequence_GetItem(ptrs, (Py_ssize_t)i);
        PyObject *b = a ? PySequence_GetItem(sizes, (Py_ssize_t)i) : NULL;
        size_t na = 0, nb = 0;
        int r = (a && b && u64v_from(a, "all_buffer_ptrs", &pp[i], &na) == 0 &&
                 u64v_from(b, "all_sizes", &ss[i], &nb) == 0)
                    ? 0
                    : -1;
        Py_XDECREF(a);
        Py_XDECREF(b);
        if (r < 0) goto out;
        if (check_len(na, nb, "all_buffer_ptrs[i]", "all_sizes[i]")) goto out;
        v->nparts[i] = na;
        total += na;
    }
    v->flat = calloc(total + 1, sizeof *v->flat);
    if (!v->flat) {
        PyErr_NoMemory();
        goto out;
    }
    for (size_t i = 0, k = 0; i < n; i++) {
        v->parts[i] = &v->flat[k];
        for (size_t j = 0; j < v->nparts[i]; j++, k++) {
            v->flat[k].ptr = (void *)(uintptr_t)pp[i][j];
            v->flat[k].len = (size_t)ss[i][j];
        }
    }
    rc = 0;
out:
    for (size_t i = 0; pp && ss && i < n; i++) {
        free(pp[i]);
        free(ss[i]);
    }
    free(pp);
    free(ss);
    if (rc) iov2_free(v);
    return rc;
}

static int iov2_ok(mc_te_t *te, const iov2_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < v->nparts[i]; j++)
            if (!ptr_ok_te(te, (uintptr_t)v->parts[i][j].ptr, v->parts[i][j].len)) return 0;
    return 1;
}

static PyObject *int_list(const int64_t *v, size_t n)
{
    PyObject *l = PyList_New((Py_ssize_t)n);
    if (!l) return NULL;
    for (size_t i = 0; i < n; i++) {
        PyObject *x = PyLong_FromLongLong(v[i]);
        if (!x) {
            Py_DECREF(l);
            return NULL;
        }
        PyList_SetItem(l, (Py_ssize_t)i, x);
    }
    return l;
}

static PyObject *int_list32(const int *v, size_t n)
{
    int64_t *w = calloc(n + 1, sizeof *w);
    if (!w) return PyErr_NoMemory();
    for (size_t i = 0; i < n; i++) w[i] = v[i];
    PyObject *l = int_list(w, n);
    free(w);
    return l;
}

/* ------------------------------------------------------------------ */
/* ReplicateConfig (a Python object, read by attribute)                */

#define CFG_MAX_SEGS 32
typedef struct {
    mc_store_config_t c;
    PyObject *refs[CFG_MAX_SEGS + 1];
    const char *segs[CFG_MAX_SEGS + 1];
    int nrefs;
} cfgh_t;

static void cfg_free(cfgh_t *h)
{
    for (int i = 0; i < h->nrefs; i++) Py_XDECREF(h->refs[i]);
    h->nrefs = 0;
}

static int cfg_attr_bool(PyObject *o, const char *name, int *out)
{
    PyObject *v = PyObject_GetAttrString(o, name);
    if (!v) {
        PyErr_Clear();
        return 0;
    }
    int t = PyObject_IsTrue(v);
    Py_DECREF(v);
    if (t < 0) return -1;
    *out = t;
    return 0;
}

static int cfg_add_seg(cfgh_t *h, PyObject *s)
{
    if (h->nrefs >= CFG_MAX_SEGS) return 0;
    const char *u;
    if (arg_str(s, "preferred_segments", &u) < 0) return -1;
    if (!*u) return 0;
    for (int i = 0; i < h->nrefs; i++)
        if (strcmp(h->segs[i], u) == 0) return 0;
    Py_INCREF(s);
    h->refs[h->nrefs] = s;
    h->segs[h->nrefs++] = u;
    return 0;
}

/* Fills h from a ReplicateConfig-like object (None: defaults). */
static int cfg_from(PyObject *o, cfgh_t *h)
{
    memset(h, 0, sizeof *h);
    mc_store_config_init(&h->c);
    if (!o || o == Py_None) return 0;
    PyObject *v = PyObject_GetAttrString(o, "replica_num");
    if (!v) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "config must be a ReplicateConfig");
        return -1;
    }
    uint64_t rn = 1;
    int rc = arg_u64(v, "config.replica_num", &rn);
    Py_DECREF(v);
    if (rc < 0) return -1;
    h->c.replica_num = (size_t)rn;
    if (cfg_attr_bool(o, "with_soft_pin", &h->c.with_soft_pin) < 0 ||
        cfg_attr_bool(o, "with_hard_pin", &h->c.with_hard_pin) < 0 ||
        cfg_attr_bool(o, "prefer_alloc_in_same_node", &h->c.prefer_alloc_in_same_node) < 0)
        goto fail;
    v = PyObject_GetAttrString(o, "soft_pin_ttl_ms");
    if (!v)
        PyErr_Clear();
    else {
        if (v != Py_None) {
            uint64_t ttl = 0;
            rc = arg_u64(v, "config.soft_pin_ttl_ms", &ttl);
            if (rc == 0) h->c.soft_pin_ttl_ms = ttl;
        } else
            rc = 0;
        Py_DECREF(v);
        if (rc < 0) goto fail;
    }
    if (h->c.with_soft_pin) h->c.soft_pin_action = MC_STORE_SOFT_PIN_ENABLE;
    v = PyObject_GetAttrString(o, "preferred_segment");
    if (!v)
        PyErr_Clear();
    else {
        rc = (v != Py_None) ? cfg_add_seg(h, v) : 0;
        Py_DECREF(v);
        if (rc < 0) goto fail;
    }
    v = PyObject_GetAttrString(o, "preferred_segments");
    if (!v)
        PyErr_Clear();
    else if (v != Py_None) {
        Py_ssize_t n = arg_seq(v, "config.preferred_segments");
        for (Py_ssize_t i = 0; n >= 0 && i < n; i++) {
            PyObject *it = PySequence_GetItem(v, i);
            rc = it ? cfg_add_seg(h, it) : -1;
            Py_XDECREF(it);
            if (rc < 0) break;
        }
        Py_DECREF(v);
        if (n < 0 || rc < 0) goto fail;
    } else
        Py_DECREF(v);
    h->c.preferred_segments = h->nrefs ? h->segs : NULL;
    h->c.preferred_segments_count = (size_t)h->nrefs;
    return 0;
fail:
    cfg_free(h);
    return -1;
}

/* ------------------------------------------------------------------ */
/* BufferHandle                                                        */

typedef struct {
    PyObject_HEAD void *ptr;
    Py_ssize_t len;
} bufh_t;

static PyTypeObject *BufferHandle_Type;

static void bufh_dealloc(PyObject *o)
{
    bufh_t *b = (bufh_t *)o;
    free(b->ptr);
    PyTypeObject *tp = Py_TYPE(o);
    freefunc f = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    f(o);
    Py_DECREF((PyObject *)tp);
}

static int bufh_getbuffer(PyObject *o, Py_buffer *view, int flags)
{
    bufh_t *b = (bufh_t *)o;
    return PyBuffer_FillInfo(view, o, b->ptr, b->len, 0, flags);
}

static void bufh_releasebuffer(PyObject *o, Py_buffer *view) { (void)o, (void)view; }

static Py_ssize_t bufh_len(PyObject *o) { return ((bufh_t *)o)->len; }

static PyObject *bufh_ptr(PyObject *o, PyObject *unused)
{
    return PyLong_FromUnsignedLongLong((uintptr_t)((bufh_t *)o)->ptr);
}

static PyObject *bufh_size(PyObject *o, PyObject *unused) { return PyLong_FromSsize_t(((bufh_t *)o)->len); }

static PyMethodDef bufh_methods[] = {
    {"ptr", bufh_ptr, METH_NOARGS, "Address of the data."},
    {"size", bufh_size, METH_NOARGS, "Size in bytes."},
    {"len", bufh_size, METH_NOARGS, "Size in bytes."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot bufh_slots[] = {
    {Py_tp_dealloc, bufh_dealloc},   {Py_bf_getbuffer, bufh_getbuffer},
    {Py_bf_releasebuffer, bufh_releasebuffer}, {Py_sq_length, bufh_len},
    {Py_tp_methods, bufh_methods},   {Py_tp_doc, "Bytes of one object, owned; supports memoryview()."},
    {0, NULL},
};

static PyType_Spec bufh_spec = {"mooncake._core.BufferHandle", sizeof(bufh_t), 0,
                                Py_TPFLAGS_DEFAULT, bufh_slots};

/* Takes ownership of ptr (malloc'd). */
static PyObject *bufh_new(void *ptr, size_t len)
{
    allocfunc a = (allocfunc)PyType_GetSlot(BufferHandle_Type, Py_tp_alloc);
    bufh_t *b = (bufh_t *)a(BufferHandle_Type, 0);
    if (!b) {
        free(ptr);
        return NULL;
    }
    b->ptr = ptr;
    b->len = (Py_ssize_t)len;
    return (PyObject *)b;
}

/* ------------------------------------------------------------------ */
/* MooncakeDistributedStore                                            */

typedef struct {
    PyObject_HEAD mc_store_t *s;
    pthread_rwlock_t lk;
    PyObject *engine; /* the TransferEngine (or its handle) setup was given; NULL: own engine */
    mc_store_srv_t *http; /* enable_client_http_server: /metrics, /health on client_http_port */
} pystore_t;

static int engine_arg(PyObject *o, mc_te_t **te);

#define RD_BEGIN(self)                                                                             \
    Py_BEGIN_ALLOW_THREADS pthread_rwlock_rdlock(&(self)->lk);
#define RD_END(self)                                                                               \
    pthread_rwlock_unlock(&(self)->lk);                                                            \
    Py_END_ALLOW_THREADS
#define WR_BEGIN(self)                                                                             \
    Py_BEGIN_ALLOW_THREADS pthread_rwlock_wrlock(&(self)->lk);

/* Pointer checks of the store's calls (ptr_ok_te on the store's engine). The
 * read lock keeps close from freeing the engine meanwhile; writers take the
 * lock with the GIL released, so holding the GIL here cannot deadlock. */
static int store_ptrs_ok(pystore_t *self, const uint64_t *p, const uint64_t *len, size_t n)
{
    pthread_rwlock_rdlock(&self->lk);
    int ok = ptrs_ok(mc_store_get_engine(self->s), p, len, n);
    pthread_rwlock_unlock(&self->lk);
    return ok;
}

static int store_iov2_ok(pystore_t *self, const iov2_t *v, size_t n)
{
    pthread_rwlock_rdlock(&self->lk);
    int ok = iov2_ok(mc_store_get_engine(self->s), v, n);
    pthread_rwlock_unlock(&self->lk);
    return ok;
}

static PyObject *store_new(PyTypeObject *tp, PyObject *args, PyObject *kw)
{
    allocfunc a = (allocfunc)PyType_GetSlot(tp, Py_tp_alloc);
    pystore_t *self = (pystore_t *)a(tp, 0);
    if (!self) return NULL;
    pthread_rwlock_init(&self->lk, NULL);
    if (mc_store_create(&self->s) != 0) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

static void store_dealloc(PyObject *o)
{
    pystore_t *self = (pystore_t *)o;
    if (self->s) {
        mc_store_t *s = self->s;
        mc_store_srv_t *http = self->http;
        self->s = NULL;
        self->http = NULL;
        Py_BEGIN_ALLOW_THREADS mc_store_srv_stop(http);
        mc_store_destroy(s);
        Py_END_ALLOW_THREADS
    }
    Py_CLEAR(self->engine); /* after the store: the engine outlives it */
    pthread_rwlock_destroy(&self->lk);
    PyTypeObject *tp = Py_TYPE(o);
    freefunc f = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    f(o);
    Py_DECREF((PyObject *)tp);
}

static PyObject *store_setup(PyObject *o, PyObject *args, PyObject *kw)
{
    pystore_t *self = (pystore_t *)o;
    static char *kwl[] = {"local_hostname", "metadata_server", "global_segment_size",
                          "local_buffer_size", "protocol", "rdma_devices", "master_server_addr",
                          "engine", "enable_ssd_offload", "ssd_offload_path", "tenant_id",
                          "enable_client_http_server", "client_http_port", NULL};
    PyObject *h, *m, *gs, *ls, *p, *d, *ma, *engine = Py_None, *ssd = Py_None, *ssdp = Py_None,
                                          *tenant = Py_None, *chs = Py_None, *chp = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOOO|OOOOOO:setup", kwl, &h, &m, &gs, &ls, &p,
                                     &d, &ma, &engine, &ssd, &ssdp, &tenant, &chs, &chp))
        return NULL;
    const char *hs, *ms, *ps, *ds, *mas;
    uint64_t g, l;
    if (arg_str(h, "local_hostname", &hs) || arg_str(m, "metadata_server", &ms) ||
        arg_u64(gs, "global_segment_size", &g) || arg_u64(ls, "local_buffer_size", &l) ||
        arg_str(p, "protocol", &ps) || arg_str(d, "rdma_devices", &ds) ||
        arg_str(ma, "master_server_addr", &mas))
        return NULL;
    /* SSD tier (mc_store_set_ssd_offload): path "" = MOONCAKE_OFFLOAD_FILE_STORAGE_PATH */
    int want_ssd = ssd != Py_None ? PyObject_IsTrue(ssd) : 0;
    const char *ssd_path = "";
    if (want_ssd < 0 || (ssdp != Py_None && arg_str(ssdp, "ssd_offload_path", &ssd_path)))
        return NULL;
    if (mc_store_set_ssd_offload(self->s, want_ssd, ssd_path) != 0)
        return PyLong_FromLong(MC_ERR_INVALID_PARAMS);
    /* engine: TransferEngine.get_engine()'s handle or the engine itself; the
     * store then lives in that engine's segment (name, metadata and devices are
     * the engine's; the arguments above are checked but not used) and keeps a
     * reference to it until close, so the engine outlives the store. */
    mc_te_t *te = NULL;
    if (engine != Py_None) {
        int er = engine_arg(engine, &te);
        if (er < 0) return NULL;
        if (er == 0) return PyLong_FromLong(MC_ERR_INVALID_PARAMS); /* not initialized */
    }
    /* enable_client_http_server: this client's /metrics and /health on
     * client_http_port (default 9300; 0 = any free port, read it with
     * client_http_port()), bound to MC_CLIENT_HTTP_HOST (default all). */
    int http_on = chs != Py_None && PyObject_IsTrue(chs) == 1;
    uint64_t http_port = 9300;
    if (http_on && chp != Py_None && (arg_u64(chp, "client_http_port", &http_port) ||
                                      http_port > 65535)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "client_http_port must be in [0, 65535]");
        return NULL;
    }
    int rc, hrc = 0;
    WR_BEGIN(self)
    rc = te ? mc_store_setup_with_engine(self->s, te, g, l, ps, mas)
            : mc_store_setup(self->s, hs, ms, g, l, ps, ds, mas);
    if (rc == 0 && http_on && !self->http) {
        mc_store_srv_info_t info = {.master_server_address = mas,
                                    .metadata_server = ms,
                                    .protocol = ps,
                                    .device_names = ds,
                                    .global_segment_size = g,
                                    .local_buffer_size = l};
        hrc = mc_store_srv_start(self->s, &info, getenv("MC_CLIENT_HTTP_HOST"),
                                 (uint16_t)http_port, &self->http);
    }
    RD_END(self)
    if (hrc) { /* the store is up; the port is not: say so, as a failed setup */
        WR_BEGIN(self)
        mc_store_close(self->s);
        RD_END(self)
        PyErr_Format(PyExc_OSError, "enable_client_http_server: cannot serve on port %llu: %s",
                     (unsigned long long)http_port, strerror(-hrc));
        return NULL;
    }
    if (rc == 0 && te) {
        PyObject *old = self->engine;
        Py_INCREF(engine);
        self->engine = engine;
        Py_XDECREF(old);
    }
    return PyLong_FromLong(rc);
}

/* setup_dummy(mem_pool_size, local_buffer_size, server_address) -> int:
 * a dummy client of the standalone mooncake_client at server_address
 * (mc_store_setup_dummy; the network round trips run without the GIL). */
static PyObject *store_setup_dummy(PyObject *o, PyObject *args, PyObject *kw)
{
    pystore_t *self = (pystore_t *)o;
    static char *kwl[] = {"mem_pool_size", "local_buffer_size", "server_address", NULL};
    PyObject *mp, *lb, *sa;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO:setup_dummy", kwl, &mp, &lb, &sa)) return NULL;
    uint64_t pool, lbuf;
    const char *addr;
    if (arg_u64(mp, "mem_pool_size", &pool) || arg_u64(lb, "local_buffer_size", &lbuf) ||
        arg_str(sa, "server_address", &addr))
        return NULL;
    int rc;
    WR_BEGIN(self)
    rc = mc_store_setup_dummy(self->s, pool, lbuf, addr);
    RD_END(self)
    return PyLong_FromLong(rc);
}

static PyObject *store_close(PyObject *o, PyObject *unused)
{
    pystore_t *self = (pystore_t *)o;
    int rc;
    WR_BEGIN(self)
    mc_store_srv_stop(self->http);
    self->http = NULL;
    rc = mc_store_close(self->s);
    RD_END(self)
    Py_CLEAR(self->engine); /* the store no longer uses it */
    return PyLong_FromLong(rc);
}

/* client_http_port() -> int: the port of enable_client_http_server, 0 when off. */
static PyObject *store_client_http_port(PyObject *o, PyObject *unused)
{
    pystore_t *self = (pystore_t *)o;
    return PyLong_FromLong(self->http ? mc_store_srv_port(self->http) : 0);
}

static PyObject *store_get_hostname(PyObject *o, PyObject *unused)
{
    pystore_t *self = (pystore_t *)o;
    char buf[512];
    int rc;
    RD_BEGIN(self)
    rc = mc_store_get_hostname(self->s, buf, sizeof buf);
    RD_END(self)
    if (rc) buf[0] = '\0';
    return PyUnicode_FromString(buf);
}

static PyObject *store_health_check(PyObject *o, PyObject *unused)
{
    pystore_t *self = (pystore_t *)o;
    int rc;
    RD_BEGIN(self)
    rc = mc_store_health_check(self->s);
    RD_END(self)
    return PyLong_FromLong(rc);
}

/* put / upsert (key, value, config=None) */
static PyObject *store_put_common(PyObject *o, PyObject *args, PyObject *kw, int upsert)
{
    pystore_t *self = (pystore_t *)o;
    static char *kwl[] = {"key", "value", "config", NULL};
    PyObject *k, *val, *c = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, upsert ? "OO|O:upsert" : "OO|O:put", kwl, &k, &val,
                                     &c))
        return NULL;
    const char *key;
    if (arg_str(k, "key", &key)) return NULL;
    Py_buffer b;
    if (PyObject_GetBuffer(val, &b, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "value must be a bytes-like object");
        return NULL;
    }
    cfgh_t h;
    if (cfg_from(c, &h) < 0) {
        PyBuffer_Release(&b);
        return NULL;
    }
    int rc;
    RD_BEGIN(self)
    rc = upsert ? mc_store_upsert(self->s, key, b.buf, (size_t)b.len, &h.c)
                : mc_store_put(self->s, key, b.buf, (size_t)b.len, &h.c);
    RD_END(self)
    PyBuffer_Release(&b);
    cfg_free(&h);
    return PyLong_FromLong(rc);
}
static PyObject *store_put(PyObject *o, PyObject *a, PyObject *k) { return store_put_common(o, a, k, 0); }
static PyObject *store_upsert(PyObject *o, PyObject *a, PyObject *k) { return store_put_common(o, a, k, 1); }

/* put_parts / upsert_parts (key, *parts, config=None) */
static PyObject *store_parts_common(PyObject *o, PyObject *args, PyObject *kw, int upsert)
{
    pystore_t *self = (pystore_t *)o;
    PyObject *c = Py_None;
    if (kw) {
        Py_ssize_t pos = 0;
        PyObject *kk, *vv;
        while (PyDict_Next(kw, &pos, &kk, &vv)) {
            if (PyUnicode_Check(kk) && PyUnicode_CompareWithASCIIString(kk, "config") == 0)
                c = vv;
            else {
                PyErr_Format(PyExc_TypeError, "'%S' is an invalid keyword argument for put_parts()",
                             kk);
                return NULL;
            }
        }
    }
    Py_ssize_t n = PyTuple_Size(args);
    if (n < 1) {
        PyErr_SetString(PyExc_TypeError, "put_parts() missing required argument 'key'");
        return NULL;
    }
    const char *key;
    if (arg_str(PyTuple_GetItem(args, 0), "key", &key)) return NULL;
    size_t np = (size_t)(n - 1);
    Py_buffer *bs = calloc(np + 1, sizeof *bs);
    mc_store_iov_t *iov = calloc(np + 1, sizeof *iov);
    size_t got = 0;
    PyObject *ret = NULL;
    cfgh_t h;
    int hok = 0;
    if (!bs || !iov) {
        PyErr_NoMemory();
        goto out;
    }
    for (; got < np; got++) {
        if (PyObject_GetBuffer(PyTuple_GetItem(args, (Py_ssize_t)got + 1), &bs[got],
                               PyBUF_SIMPLE) < 0) {
            PyErr_Clear();
            PyErr_SetString(PyExc_TypeError, "parts must be bytes-like objects");
            goto out;
        }
        iov[got].ptr = bs[got].buf;
        iov[got].len = (size_t)bs[got].len;
    }
    if (cfg_from(c, &h) < 0) goto out;
    hok = 1;
    int rc;
    RD_BEGIN(self)
    rc = upsert ? mc_store_upsert_parts(self->s, key, iov, np, &h.c)
                : mc_store_put_parts(self->s, key, iov, np, &h.c);
    RD_END(self)
    ret = PyLong_FromLong(rc);
out:
    for (size_t i = 0; i < got; i++) PyBuffer_Release(&bs[i]);
    if (hok) cfg_free(&h);
    free(bs);
    free(iov);
    return ret;
}
static PyObject *store_put_parts(PyObject *o, PyObject *a, PyObject *k) { return store_parts_common(o, a, k, 0); }
static PyObject *store_upsert_parts(PyObject *o, PyObject *a, PyObject *k) { return store_parts_common(o, a, k, 1); }

/* put_batch / upsert_batch (keys, values, config=None) -> int */
static PyObject *store_batch_common(PyObject *o, PyObject *args, PyObject *kw, int upsert)
{
    pystore_t *self = (pystore_t *)o;
    static char *kwl[] = {"keys", "values", "config", NULL};
    PyObject *ks, *vs, *c = Py_None, *ret = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|O", kwl, &ks, &vs, &c)) return NULL;
    strv_t keys;
    if (strv_from(ks, "keys", &keys)) return NULL;
    Py_ssize_t nv = arg_seq(vs, "values");
    if (nv < 0 || check_len(keys.n, (size_t)nv, "keys", "values")) {
        strv_free(&keys);
        return NULL;
    }
    size_t n = keys.n, got = 0;
    Py_buffer *bs = calloc(n + 1, sizeof *bs);
    const void **vals = calloc(n + 1, sizeof *vals);
    size_t *lens = calloc(n + 1, sizeof *lens);
    int *rcs = calloc(n + 1, sizeof *rcs);
    cfgh_t h;
    int hok = 0;
    if (!bs || !vals || !lens || !rcs) {
        PyErr_NoMemory();
        goto out;
    }
    for (; got < n; got++) {
        PyObject *it = PySequence_GetItem(vs, (Py_ssize_t)got);
        int r = it ? PyObject_GetBuffer(it, &bs[got], PyBUF_SIMPLE) : -1;
        Py_XDECREF(it);
        if (r < 0) {
            PyErr_Clear();
            PyErr_SetString(PyExc_TypeError, "values must be bytes-like objects");
            goto out;
        }
        vals[got] = bs[got].buf;
        lens[got] = (size_t)bs[got].len;
    }
    if (cfg_from(c, &h) < 0) goto out;
    hok = 1;
    int rc = 0;
    RD_BEGIN(self)
    if (!upsert)
        rc = n ? mc_store_batch_put(self->s, keys.v, vals, lens, n, &h.c, rcs) : 0;
    else
        for (size_t i = 0; i < n; i++) {
            int r = mc_store_upsert(self->s, keys.v[i], vals[i], lens[i], &h.c);
            if (r && !rc) rc = r;
        }
    RD_END(self)
    ret = PyLong_FromLong(rc);
out:
    for (size_t i = 0; i < got; i++) PyBuffer_Release(&bs[i]);
    if (hok) cfg_free(&h);
    free(bs);
    free(vals);
    free(lens);
    free(rcs);
    strv_free(&keys);
    return ret;
}
static PyObject *store_put_batch(PyObject *o, PyObject *a, PyObject *k) { return store_batch_common(o, a, k, 0); }
static PyObject *store_upsert_batch(PyObject *o, PyObject *a, PyObject *k) { return store_batch_common(o, a, k, 1); }

/* put_from / upsert_from (key, buffer_ptr, size, config=None) */
static PyObject *store_from_common(PyObject *o, PyObject *args, PyObject *kw, int upsert)
{
    pystore_t *self = (pystore_t *)o;
    static char *kwl[] = {"key", "buffer_ptr", "size", "config", NULL};
    PyObject *k, *p, *sz, *c = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO|O", kwl, &k, &p, &sz, &c)) return NULL;
    const char *key;
    uint64_t ptr, size;
    if (arg_str(k, "key", &key) || arg_u64(p, "buffer_ptr", &ptr) || arg_u64(sz, "size", &size))
        return NULL;
    if (!store_ptrs_ok(self, &ptr, &size, 1)) return PyLong_FromLong(MC_ERR_INVALID_PARAMS);
    cfgh_t h;
    if (cfg_from(c, &h) < 0) return NULL;
    int rc;
    RD_BEGIN(self)
    rc = upsert ? mc_store_upsert_from(self->s, key, (void *)(uintptr_t)ptr, size, &h.c)
                : mc_store_put_from(self->s, key, (void *)(uintptr_t)ptr, size, &h.c);
    RD_END(self)
    cfg_free(&h);
    return PyLong_FromLong(rc);
}
static PyObject *store_put_from(PyObject *o, PyObject *a, PyObject *k) { return store_from_common(o, a, k, 0); }
static PyObject *store_upsert_from(PyObject *o, PyObject *a, PyObject *k) { return store_from_common(o, a, k, 1); }

/* batch_put_from / batch_upsert_from (keys, buffer_ptrs, sizes, config=None) -> list */
static PyObject *store_bfrom_common(PyObject *o, PyObject *args, PyObject *kw, int upsert)
{
    pystore_t *self = (pystore_t *)o;
    static char *kwl[] = {"keys", "buffer_ptrs", "sizes", "config", NULL};
    PyObject *ks, *ps, *ss, *c = Py_None, *ret = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO|O", kwl, &ks, &ps, &ss, &c)) return NULL;
    strv_t keys;
    uint64_t *ptrs = NULL, *sizes = NULL;
    size_t np = 0, ns = 0;
    if (strv_from(ks, "keys", &keys)) return NULL;
    int *rcs = NULL;
    cfgh_t h;
    int hok = 0;
    if (u64v_from(ps, "buffer_ptrs", &ptrs, &np) || u64v_from(ss, "sizes", &sizes, &ns) ||
        check_len(keys.n, np, "keys", "buffer_ptrs") || check_len(keys.n, ns, "keys", "sizes"))
        goto out;
    if (cfg_from(c, &h) < 0) goto out;
    hok = 1;
    size_t n = keys.n;
    rcs = calloc(n + 1, sizeof *rcs);
    if (!rcs) {
        PyErr_NoMemory();
        goto out;
    }
    if (!store_ptrs_ok(self, ptrs, sizes, n)) {
        for (size_t i = 0; i < n; i++) rcs[i] = MC_ERR_INVALID_PARAMS;
        n = 0;
    }
    if (n) {
        RD_BEGIN(self)
        if (upsert)
            mc_store_batch_upsert_from(self->s, keys.v, (void *const *)ptrs, (const size_t *)sizes,
                                       n, &h.c, rcs);
        else
            mc_store_batch_put_from(self->s, keys.v, (void *const *)ptrs, (const size_t *)sizes, n,
                                    &h.c, rcs);
        RD_END(self)
    }
    ret = int_list32(rcs, keys.n);
out:
    if (hok) cfg_free(&h);
    free(rcs);
    free(ptrs);
    free(sizes);
    strv_free(&keys);
    return ret;
}
static PyObject *store_batch_put_from(PyObject *o, PyObject *a, PyObject *k) { return store_bfrom_common(o, a, k, 0); }
static PyObject *store_batch_upsert_from(PyObject *o, PyObject *a, PyObject *k) { return store_bfrom_common(o, a, k, 1); }

/* batch_put_from_multi_buffers(keys, all_buffer_ptrs, all_sizes, config=None) -> list */
static PyObject *store_batch_put_multi(PyObject *o, PyObject *args, PyObject *kw)
{
    pystore_t *self = (pystore_t *)o;
    static char *kwl[] = {"keys", "all_buffer_ptrs", "all_sizes", "config", NULL};
    PyObject *ks, *ps, *ss, *c = Py_None, *ret = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO|O", kwl, &ks, &ps, &ss, &c)) return NULL;
    strv_t keys;
    if (strv_from(ks, "keys", &keys)) return NULL;
    iov2_t v;
    cfgh_t h;
    int *rcs = NULL;
    if (iov2_from(ps, ss, keys.n, &v)) {
        strv_free(&keys);
        return NULL;
    }
    if (cfg_from(c, &h) < 0) goto out2;
    rcs = calloc(keys.n + 1, sizeof *rcs);
    if (!rcs) {
        PyErr_NoMemory();
        goto out;
    }
    if (!store_iov2_ok(self, &v, keys.n))
        for (size_t i = 0; i < keys.n; i++) rcs[i] = MC_ERR_INVALID_PARAMS;
    else if (keys.n) {
        RD_BEGIN(self)
        mc_store_batch_put_from_multi_buffers(self->s, keys.v, v.parts, v.nparts, keys.n, &h.c, rcs);
        RD_END(self)
    }
    ret = int_list32(rcs, keys.n);
out:
    cfg_free(&h);
out2:
    free(rcs);
    iov2_free(&v);
    strv_free(&keys);
    return ret;
}

/* get(key) -> bytes, b"" on miss or error (positional only) */
static PyObject *store_get(PyObject *o, PyObject *args)
{
    pystore_t *self = (pystore_t *)o;
    PyObject *k;
    const char *key;
    if (!PyArg_ParseTuple(args, "O:get", &k) || arg_str(k, "key", &key)) return NULL;
    void *out = NULL;
    size_t len = 0;
    int rc;
    RD_BEGIN(self)
    rc = mc_store_get(self->s, key, &out, &len);
    RD_END(self)
    if (rc) return PyBytes_FromStringAndSize("", 0);
    PyObject *r = PyBytes_FromStringAndSize(out, (Py_ssize_t)len);
    free(out);
    return r;
}

/* get_buffer(key) -> BufferHandle or None */
static PyObject *store_get_buffer(PyObject *o, PyObject *args)
{
    pystore_t *self = (pystore_t *)o;
    PyObject *k;
    const char *key;
    if (!PyArg_ParseTuple(args, "O:get_buffer", &k) || arg_str(k, "key", &key)) return NULL;
    void *out = NULL;
    size_t len = 0;
    int rc;
    RD_BEGIN(self)
    rc = mc_store_get(self->s, key, &out, &len);
    RD_END(self)
    if (rc) Py_RETURN_NONE;
    return bufh_new(out, len);
}

/* get_batch(keys) -> list[bytes]; batch_get_buffer(keys) -> list[BufferHandle|None] */
static PyObject *store_get_many(PyObject *o, PyObject *args, int handles)
{
    pystore_t *self = (pystore_t *)o;
    PyObject *ks;
    if (!PyArg_ParseTuple(args, "O", &ks)) return NULL;
    strv_t keys;
    if (strv_from(ks, "keys", &keys)) return NULL;
    size_t n = keys.n;
    if (n == 0 && !handles) {
        strv_free(&keys);
        PyObject *l = PyList_New(1);
        if (l) PyList_SetItem(l, 0, PyBytes_FromStringAndSize("", 0));
        return l;
    }
    void **outs = calloc(n + 1, sizeof *outs);
    size_t *lens = calloc(n + 1, sizeof *lens);
    int *rcs = calloc(n + 1, sizeof *rcs);
    PyObject *l = NULL;
    if (!outs || !lens || !rcs) {
        PyErr_NoMemory();
        goto out;
    }
    RD_BEGIN(self)
    mc_store_batch_get(self->s, keys.v, n, outs, lens, rcs); /* one master round trip */
    RD_END(self)
    l = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; l && i < n; i++) {
        PyObject *x;
        if (handles) {
            if (rcs[i]) {
                Py_INCREF(Py_None);
                x = Py_None;
            } else {
                x = bufh_new(outs[i], lens[i]);
                outs[i] = NULL;
            }
        } else
            x = PyBytes_FromStringAndSize(rcs[i] ? "" : outs[i], rcs[i] ? 0 : (Py_ssize_t)lens[i]);
        if (!x) {
            Py_CLEAR(l);
            break;
        }
        PyList_SetItem(l, (Py_ssize_t)i, x);
    }
out:
    for (size_t i = 0; outs && i < n; i++) free(outs[i]);
    free(outs);
    free(lens);
    free(rcs);
    strv_free(&keys);
    return l;
}
static PyObject *store_get_batch(PyObject *o, PyObject *a) { return store_get_many(o, a, 0); }
static PyObject *store_batch_get_buffer(PyObject *o, PyObject *a) { return store_get_many(o, a, 1); }

/* get_into(key, buffer_ptr, size) -> bytes or negative */
static PyObject *store_get_into(PyObject *o, PyObject *args, PyObject *kw)
{
    pystore_t *self = (pystore_t *)o;
    static char *kwl[] = {"key", "buffer_ptr", "size", NULL};
    PyObject *k, *p, *sz;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO:get_into", kwl, &k, &p, &sz)) return NULL;
    const char *key;
    uint64_t ptr, size;
    if (arg_str(k, "key", &key) || arg_u64(p, "buffer_ptr", &ptr) || arg_u64(sz, "size", &size))
        return NULL;
    if (!store_ptrs_ok(self, &ptr, &size, 1)) return PyLong_FromLong(MC_ERR_INVALID_PARAMS);
    int64_t rc;
    RD_BEGIN(self)
    rc = mc_store_get_into(self->s, key, (void *)(uintptr_t)ptr, size);
    RD_END(self)
    return PyLong_FromLongLong(rc);
}

/* batch_get_into(keys, buffer_ptrs, sizes) -> list */
static PyObject *store_batch_get_into(PyObject *o, PyObject *args, PyObject *kw)
{
    pystore_t *self = (pystore_t *)o;
    static char *kwl[] = {"keys", "buffer_ptrs", "sizes", NULL};
    PyObject *ks, *ps, *ss, *ret = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO:batch_get_into", kwl, &ks, &ps, &ss))
        return NULL;
    strv_t keys;
    uint64_t *ptrs = NULL, *sizes = NULL;
    int64_t *res = NULL;
    size_t np = 0, ns = 0;
    if (strv_from(ks, "keys", &keys)) return NULL;
    if (u64v_from(ps, "buffer_ptrs", &ptrs, &np) || u64v_from(ss, "sizes", &sizes, &ns) ||
        check_len(keys.n, np, "keys", "buffer_ptrs") || check_len(keys.n, ns, "keys", "sizes"))
        goto out;
    res = calloc(keys.n + 1, sizeof *res);
    if (!res) {
        PyErr_NoMemory();
        goto out;
    }
    if (!store_ptrs_ok(self, ptrs, sizes, keys.n))
        for (size_t i = 0; i < keys.n; i++) res[i] = MC_ERR_INVALID_PARAMS;
    else if (keys.n) {
        RD_BEGIN(self)
        mc_store_batch_get_into(self->s, keys.v, (void *const *)ptrs, (const size_t *)sizes, keys.n,
                                res);
        RD_END(self)
    }
    ret = int_list(res, keys.n);
out:
    free(res);
    free(ptrs);
    free(sizes);
    strv_free(&keys);
    return ret;
}

/* batch_get_into_multi_buffers(keys, all_buffer_ptrs, all_sizes, prefer_alloc_in_same_node=False) */
static PyObject *store_batch_get_multi(PyObject *o, PyObject *args, PyObject *kw)
{
    pystore_t *self = (pystore_t *)o;
    static char *kwl[] = {"keys", "all_buffer_ptrs", "all_sizes", "prefer_alloc_in_same_node",
                          NULL};
    PyObject *ks, *ps, *ss, *pref = Py_False, *ret = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO|O", kwl, &ks, &ps, &ss, &pref)) return NULL;
    strv_t keys;
    if (strv_from(ks, "keys", &keys)) return NULL;
    iov2_t v;
    if (iov2_from(ps, ss, keys.n, &v)) {
        strv_free(&keys);
        return NULL;
    }
    int64_t *res = calloc(keys.n + 1, sizeof *res);
    if (!res) {
        PyErr_NoMemory();
        goto out;
    }
    if (!store_iov2_ok(self, &v, keys.n))
        for (size_t i = 0; i < keys.n; i++) res[i] = MC_ERR_INVALID_PARAMS;
    else if (keys.n) {
        RD_BEGIN(self)
        mc_store_batch_get_into_multi_buffers(self->s, keys.v, v.parts, v.nparts, keys.n, res);
        RD_END(self)
    }
    ret = int_list(res, keys.n);
out:
    free(res);
    iov2_free(&v);
    strv_free(&keys);
    return ret;
}

/* register_buffer(buffer_ptr, size) / unregister_buffer(buffer_ptr) */
static PyObject *store_register_buffer(PyObject *o, PyObject *args, PyObject *kw)
{
    pystore_t *self = (pystore_t *)o;
    static char *kwl[] = {"buffer_ptr", "size", NULL};
    PyObject *p, *sz;
    uint64_t ptr, size;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO:register_buffer", kwl, &p, &sz) ||
        arg_u64(p, "buffer_ptr", &ptr) || arg_u64(sz, "size", &size))
        return NULL;
    int rc;
    RD_BEGIN(self)
    rc = mc_store_register_buffer(self->s, (void *)(uintptr_t)ptr, size);
    RD_END(self)
    return PyLong_FromLong(rc);
}

static PyObject *store_unregister_buffer(PyObject *o, PyObject *args, PyObject *kw)
{
    pystore_t *self = (pystore_t *)o;
    static char *kwl[] = {"buffer_ptr", NULL};
    PyObject *p;
    uint64_t ptr;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O:unregister_buffer", kwl, &p) ||
        arg_u64(p, "buffer_ptr", &ptr))
        return NULL;
    int rc;
    RD_BEGIN(self)
    rc = mc_store_unregister_buffer(self->s, (void *)(uintptr_t)ptr);
    RD_END(self)
    return PyLong_FromLong(rc);
}

/* is_exist(key) / get_size(key): positional only */
static PyObject *store_is_exist(PyObject *o, PyObject *args)
{
    pystore_t *self = (pystore_t *)o;
    PyObject *k;
    const char *key;
    if (!PyArg_ParseTuple(args, "O:is_exist", &k) || arg_str(k, "key", &key)) return NULL;
    int rc;
    RD_BEGIN(self)
    rc = mc_store_is_exist(self->s, key);
    RD_END(self)
    return PyLong_FromLong(rc);
}

static PyObject *store_get_size(PyObject *o, PyObject *args)
{
    pystore_t *self = (pystore_t *)o;
    PyObject *k;
    const char *key;
    if (!PyArg_ParseTuple(args, "O:get_size", &k) || arg_str(k, "key", &key)) return NULL;
    int64_t rc;
    RD_BEGIN(self)
    rc = mc_store_get_size(self->s, key);
    RD_END(self)
    return PyLong_FromLongLong(rc);
}

static PyObject *store_batch_is_exist(PyObject *o, PyObject *args, PyObject *kw)
{
    pystore_t *self = (pystore_t *)o;
    static char *kwl[] = {"keys", NULL};
    PyObject *ks, *ret = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O:batch_is_exist", kwl, &ks)) return NULL;
    strv_t keys;
    if (strv_from(ks, "keys", &keys)) return NULL;
    int *res = calloc(keys.n + 1, sizeof *res);
    if (!res) {
        PyErr_NoMemory();
        goto out;
    }
    int rc = 0;
    if (keys.n) {
        RD_BEGIN(self)
        rc = mc_store_batch_is_exist(self->s, keys.v, keys.n, res);
        RD_END(self)
    }
    if (rc)
        for (size_t i = 0; i < keys.n; i++) res[i] = rc;
    ret = int_list32(res, keys.n);
out:
    free(res);
    strv_free(&keys);
    return ret;
}

static PyObject *store_remove(PyObject *o, PyObject *args, PyObject *kw)
{
    pystore_t *self = (pystore_t *)o;
    static char *kwl[] = {"key", "force", NULL};
    PyObject *k;
    int force = 0;
    const char *key;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|p:remove", kwl, &k, &force) ||
        arg_str(k, "key", &key))
        return NULL;
    int rc;
    RD_BEGIN(self)
    rc = mc_store_remove(self->s, key, force);
    RD_END(self)
    return PyLong_FromLong(rc);
}

static PyObject *store_batch_remove(PyObject *o, PyObject *args, PyObject *kw)
{
    pystore_t *self = (pystore_t *)o;
    static char *kwl[] = {"keys", "force", NULL};
    PyObject *ks, *ret = NULL;
    int force = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|p:batch_remove", kwl, &ks, &force)) return NULL;
    strv_t keys;
    if (strv_from(ks, "keys", &keys)) return NULL;
    int *rcs = calloc(keys.n + 1, sizeof *rcs);
    if (!rcs) {
        PyErr_NoMemory();
        goto out;
    }
    int rc = 0;
    if (keys.n) {
        RD_BEGIN(self)
        rc = mc_store_batch_remove(self->s, keys.v, keys.n, force, rcs);
        RD_END(self)
    }
    (void)rc;
    ret = int_list32(rcs, keys.n);
out:
    free(rcs);
    strv_free(&keys);
    return ret;
}

static PyObject *store_remove_all(PyObject *o, PyObject *args, PyObject *kw)
{
    pystore_t *self = (pystore_t *)o;
    static char *kwl[] = {"force", NULL};
    int force = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|p:remove_all", kwl, &force)) return NULL;
    int64_t rc;
    RD_BEGIN(self)
    rc = mc_store_remove_all(self->s, force);
    RD_END(self)
    return PyLong_FromLongLong(rc);
}

static PyObject *store_remove_by_regex(PyObject *o, PyObject *args, PyObject *kw)
{
    pystore_t *self = (pystore_t *)o;
    static char *kwl[] = {"regex_pattern", "force", NULL};
    PyObject *r;
    int force = 0;
    const char *re;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|p:remove_by_regex", kwl, &r, &force) ||
        arg_str(r, "regex_pattern", &re))
        return NULL;
    int64_t rc;
    RD_BEGIN(self)
    rc = mc_store_remove_by_regex(self->s, re, force);
    RD_END(self)
    return PyLong_FromLongLong(rc);
}

/* _replica_desc(key) -> list of (endpoint, addr, size, status, kind); [] on miss */
static PyObject *store_replica_desc(PyObject *o, PyObject *args)
{
    pystore_t *self = (pystore_t *)o;
    PyObject *k;
    const char *key;
    if (!PyArg_ParseTuple(args, "O", &k) || arg_str(k, "key", &key)) return NULL;
    mc_store_replica_desc_t *d = NULL;
    size_t n = 0;
    int rc;
    RD_BEGIN(self)
    rc = mc_store_get_replica_desc(self->s, key, &d, &n);
    RD_END(self)
    if (rc) n = 0;
    PyObject *l = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; l && i < n; i++) {
        PyObject *t = Py_BuildValue("(sKKii)", d[i].endpoint, (unsigned long long)d[i].addr,
                                    (unsigned long long)d[i].size, d[i].status, d[i].kind);
        if (!t) {
            Py_CLEAR(l);
            break;
        }
        PyList_SetItem(l, (Py_ssize_t)i, t);
    }
    free(d);
    return l;
}

static PyMethodDef store_methods[] = {
    {"setup", (PyCFunction)(void (*)(void))store_setup, METH_VARARGS | METH_KEYWORDS, NULL},
    {"setup_dummy", (PyCFunction)(void (*)(void))store_setup_dummy, METH_VARARGS | METH_KEYWORDS,
     NULL},
    {"close", store_close, METH_NOARGS, NULL},
    {"get_hostname", store_get_hostname, METH_NOARGS, NULL},
    {"client_http_port", store_client_http_port, METH_NOARGS, NULL},
    {"health_check", store_health_check, METH_NOARGS, NULL},
    {"put", (PyCFunction)(void (*)(void))store_put, METH_VARARGS | METH_KEYWORDS, NULL},
    {"upsert", (PyCFunction)(void (*)(void))store_upsert, METH_VARARGS | METH_KEYWORDS, NULL},
    {"put_parts", (PyCFunction)(void (*)(void))store_put_parts, METH_VARARGS | METH_KEYWORDS, NULL},
    {"upsert_parts", (PyCFunction)(void (*)(void))store_upsert_parts, METH_VARARGS | METH_KEYWORDS,
     NULL},
    {"put_batch", (PyCFunction)(void (*)(void))store_put_batch, METH_VARARGS | METH_KEYWORDS, NULL},
    {"upsert_batch", (PyCFunction)(void (*)(void))store_upsert_batch, METH_VARARGS | METH_KEYWORDS,
     NULL},
    {"put_from", (PyCFunction)(void (*)(void))store_put_from, METH_VARARGS | METH_KEYWORDS, NULL},
    {"upsert_from", (PyCFunction)(void (*)(void))store_upsert_from, METH_VARARGS | METH_KEYWORDS,
     NULL},
    {"batch_put_from", (PyCFunction)(void (*)(void))store_batch_put_from,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"batch_upsert_from", (PyCFunction)(void (*)(void))store_batch_upsert_from,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"batch_put_from_multi_buffers", (PyCFunction)(void (*)(void))store_batch_put_multi,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"get", store_get, METH_VARARGS, NULL},
    {"get_buffer", store_get_buffer, METH_VARARGS, NULL},
    {"get_batch", store_get_batch, METH_VARARGS, NULL},
    {"batch_get_buffer", store_batch_get_buffer, METH_VARARGS, NULL},
    {"get_into", (PyCFunction)(void (*)(void))store_get_into, METH_VARARGS | METH_KEYWORDS, NULL},
    {"batch_get_into", (PyCFunction)(void (*)(void))store_batch_get_into,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"batch_get_into_multi_buffers", (PyCFunction)(void (*)(void))store_batch_get_multi,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"register_buffer", (PyCFunction)(void (*)(void))store_register_buffer,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"unregister_buffer", (PyCFunction)(void (*)(void))store_unregister_buffer,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"is_exist", store_is_exist, METH_VARARGS, NULL},
    {"batch_is_exist", (PyCFunction)(void (*)(void))store_batch_is_exist,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"get_size", store_get_size, METH_VARARGS, NULL},
    {"remove", (PyCFunction)(void (*)(void))store_remove, METH_VARARGS | METH_KEYWORDS, NULL},
    {"batch_remove", (PyCFunction)(void (*)(void))store_batch_remove, METH_VARARGS | METH_KEYWORDS,
     NULL},
    {"remove_all", (PyCFunction)(void (*)(void))store_remove_all, METH_VARARGS | METH_KEYWORDS,
     NULL},
    {"remove_by_regex", (PyCFunction)(void (*)(void))store_remove_by_regex,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"_replica_desc", store_replica_desc, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot store_slots[] = {
    {Py_tp_new, store_new},
    {Py_tp_dealloc, store_dealloc},
    {Py_tp_methods, store_methods},
    {Py_tp_doc, "Client of the Mooncake distributed KV store (C core)."},
    {0, NULL},
};

static PyType_Spec store_spec = {"mooncake._core.MooncakeDistributedStore", sizeof(pystore_t), 0,
                                 Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, store_slots};

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
        arg_str(h, "local_hostname", &hs) || arg_str(m, "metadata_server", &ms) ||
        arg_str(p, "protocol", &ps) || arg_str(d, "device_name", &ds))
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

static PyTypeObject *TE_Type, *EngineHandle_Type;

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

static PyType_Spec eng_spec = {"mooncake._core.EngineHandle", sizeof(pyeng_t), 0,
                               Py_TPFLAGS_DEFAULT, eng_slots};

/* get_engine() -> EngineHandle */
static PyObject *te_get_engine(PyObject *o, PyObject *unused)
{
    allocfunc a = (allocfunc)PyType_GetSlot(EngineHandle_Type, Py_tp_alloc);
    pyeng_t *h = (pyeng_t *)a(EngineHandle_Type, 0);
    if (!h) return NULL;
    Py_INCREF(o);
    h->owner = o;
    return (PyObject *)h;
}

/* The engine behind setup's `engine` argument: an EngineHandle or a
 * TransferEngine. 1 with *te set, 0 when the engine is not initialized, -1
 * with TypeError for anything else. */
static int engine_arg(PyObject *o, mc_te_t **te)
{
    if (PyObject_TypeCheck(o, EngineHandle_Type)) o = ((pyeng_t *)o)->owner;
    if (!PyObject_TypeCheck(o, TE_Type)) {
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
        arg_u64(a, "buffer_addr", &addr) || arg_u64(c, "capacity", &cap))
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
    if (!PyArg_ParseTuple(args, "O:unregister_memory", &a) || arg_u64(a, "buffer_addr", &addr))
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
    if (u64v_from(as, "buffer_addresses", &addrs, &na) || u64v_from(cs, "capacities", &caps, &nc) ||
        check_len(na, nc, "buffer_addresses", "capacities"))
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
    if (u64v_from(as, "buffer_addresses", &addrs, &na)) return NULL;
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
    if (u64v_from(bufs, "buffers", &b, &nb) || u64v_from(peers, "peer_buffer_addresses", &p, &np) ||
        u64v_from(lens, "lengths", &l, &nl) || check_len(nb, np, "buffers", "peer_buffer_addresses") ||
        check_len(nb, nl, "buffers", "lengths"))
        goto out;
    mc_te_request_t *r = calloc(nb + 1, sizeof *r);
    if (!r) {
        PyErr_NoMemory();
        goto out;
    }
    if (!ptrs_ok(self->inited ? self->te : NULL, b, l, nb)) {
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
        arg_str(t, "target_hostname", &target) || arg_u64(b, "buffer", &buf) ||
        arg_u64(p, "peer_buffer_address", &peer) || arg_u64(l, "length", &len))
        return NULL;
    if (!te_ready(self) || !ptr_ok_te(self->te, buf, len)) return PyLong_FromLong(submit ? 0 : -1);
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
        arg_str(t, "target_hostname", &target) || arg_u64(b, "buffer", &buf) ||
        arg_u64(p, "peer_buffer_address", &peer) || arg_u64(l, "length", &len))
        return NULL;
    PyObject *opi = PyNumber_Long(op);
    if (!opi) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "opcode must be a TransferOpcode");
        return NULL;
    }
    int r0 = arg_u64(opi, "opcode", &opc);
    Py_DECREF(opi);
    if (r0) return NULL;
    PyObject *nn = NULL, *nm = NULL;
    const char *ns = NULL, *ms = NULL;
    if (notify != Py_None) {
        nn = PyObject_GetAttrString(notify, "name");
        nm = nn ? PyObject_GetAttrString(notify, "msg") : NULL;
        if (!nn || !nm || arg_str(nn, "notify.name", &ns) || arg_str(nm, "notify.msg", &ms)) {
            Py_XDECREF(nn);
            Py_XDECREF(nm);
            return NULL;
        }
    }
    long rc = -1;
    if (te_ready(self) && ptr_ok_te(self->te, buf, len)) {
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
        arg_str(t, "target_hostname", &target))
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
    if (u64v_from(ids, "batch_ids", &v, &n)) return NULL;
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
    if (!PyArg_ParseTuple(args, "O:transfer_check_status", &a) || arg_u64(a, "batch_id", &id))
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
    if (!PyArg_ParseTuple(args, "O:allocate_managed_buffer", &a) || arg_u64(a, "length", &len))
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
    if (!PyArg_ParseTuple(args, "OO:free_managed_buffer", &a, &l) || arg_u64(a, "buffer_addr", &addr) ||
        arg_u64(l, "length", &len))
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
        arg_u64(a, "dest_address", &addr) || arg_u64(l, "length", &len))
        return NULL;
    Py_buffer b;
    if (PyObject_GetBuffer(src, &b, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "src_ptr must be a bytes-like object");
        return NULL;
    }
    int rc = -1;
    if (len <= (uint64_t)b.len && te_region_covers(self, addr, len)) {
        memcpy((void *)(uintptr_t)addr, b.buf, len);
        rc = 0;
    }
    PyBuffer_Release(&b);
    return PyLong_FromLong(rc);
}

/* read_bytes_from_buffer(source_address, length) -> bytes (b"" outside registered memory) */
static PyObject *te_read_bytes(PyObject *o, PyObject *args)
{
    pyte_t *self = (pyte_t *)o;
    PyObject *a, *l;
    uint64_t addr, len;
    if (!PyArg_ParseTuple(args, "OO:read_bytes_from_buffer", &a, &l) ||
        arg_u64(a, "source_address", &addr) || arg_u64(l, "length", &len))
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
        arg_str(s, "segment_name", &seg))
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
        arg_str(s, "peer_server_name", &seg))
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

static PyType_Spec te_spec = {"mooncake._core.TransferEngine", sizeof(pyte_t), 0,
                              Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, te_slots};

/* ------------------------------------------------------------------ */
/* MooncakeHostMemAllocator                                            */

/* Host memory for buffers that serving processes register with a store
 * (SGLang allocates its host KV pool with it before setup_dummy). Each
 * alloc is its own anonymous mapping (page-rounded, transparent huge pages
 * advised from 2 MiB), so free returns it to the system at once. One
 * process-wide registry (mutex) lets free refuse pointers it did not give
 * out; every instance shares it, as upstream's allocator is a singleton. */
typedef struct {
    uintptr_t addr;
    size_t len;
} hm_block_t;

static pthread_mutex_t hm_lock = PTHREAD_MUTEX_INITIALIZER;
static hm_block_t *hm_blocks; /* under hm_lock */
static size_t hm_n, hm_cap;

typedef struct {
    PyObject_HEAD
} pyalloc_t;

static PyObject *alloc_alloc(PyObject *o, PyObject *args, PyObject *kw)
{
    (void)o;
    static char *kwl[] = {"size", NULL};
    PyObject *so;
    uint64_t size;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O:alloc", kwl, &so) || arg_u64(so, "size", &size))
        return NULL;
    if (size == 0 || size > (1ull << 46)) return PyLong_FromLong(0);
    size_t len = (size_t)((size + 4095) & ~4095ull);
    void *p;
    Py_BEGIN_ALLOW_THREADS p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                                    -1, 0);
    if (p != MAP_FAILED && len >= (2u << 20)) madvise(p, len, MADV_HUGEPAGE);
    Py_END_ALLOW_THREADS if (p == MAP_FAILED) return PyLong_FromLong(0);
    int ok = 1;
    pthread_mutex_lock(&hm_lock);
    if (hm_n == hm_cap) {
        size_t cap = hm_cap ? hm_cap * 2 : 16;
        hm_block_t *nb = realloc(hm_blocks, cap * sizeof *nb);
        if (nb) {
            hm_blocks = nb;
            hm_cap = cap;
        } else {
            ok = 0;
        }
    }
    if (ok) hm_blocks[hm_n++] = (hm_block_t){(uintptr_t)p, len};
    pthread_mutex_unlock(&hm_lock);
    if (!ok) {
        munmap(p, len);
        return PyLong_FromLong(0);
    }
    return PyLong_FromUnsignedLongLong((unsigned long long)(uintptr_t)p);
}

/* free(ptr) -> 0, or -1 when ptr is not an address alloc returned (or was freed). */
static PyObject *alloc_free(PyObject *o, PyObject *args, PyObject *kw)
{
    (void)o;
    static char *kwl[] = {"ptr", NULL};
    PyObject *po;
    uint64_t ptr;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O:free", kwl, &po) || arg_u64(po, "ptr", &ptr))
        return NULL;
    size_t len = 0;
    pthread_mutex_lock(&hm_lock);
    for (size_t i = 0; i < hm_n; i++)
        if (hm_blocks[i].addr == (uintptr_t)ptr) {
            len = hm_blocks[i].len;
            hm_blocks[i] = hm_blocks[--hm_n];
            break;
        }
    pthread_mutex_unlock(&hm_lock);
    if (!len) return PyLong_FromLong(-1);
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = munmap((void *)(uintptr_t)ptr, len);
    Py_END_ALLOW_THREADS return PyLong_FromLong(rc ? -1 : 0);
}

static PyMethodDef alloc_methods[] = {
    {"alloc", (PyCFunction)(void (*)(void))alloc_alloc, METH_VARARGS | METH_KEYWORDS,
     "alloc(size) -> address of size bytes of zeroed host memory, or 0 on failure."},
    {"free", (PyCFunction)(void (*)(void))alloc_free, METH_VARARGS | METH_KEYWORDS,
     "free(ptr) -> 0, or -1 when ptr did not come from alloc."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot alloc_slots[] = {
    {Py_tp_methods, alloc_methods},
    {Py_tp_doc, "Host memory for store buffers (upstream's MooncakeHostMemAllocator)."},
    {0, NULL},
};

static PyType_Spec alloc_spec = {"mooncake._core.MooncakeHostMemAllocator", sizeof(pyalloc_t), 0,
                                 Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, alloc_slots};

/* ------------------------------------------------------------------ */
/* module                                                              */

static PyObject *mod_err_name(PyObject *m, PyObject *args)
{
    int code;
    if (!PyArg_ParseTuple(args, "i", &code)) return NULL;
    return PyUnicode_FromString(mc_err_name(code));
}

static PyMethodDef mod_methods[] = {
    {"error_name", mod_err_name, METH_VARARGS, "Upstream's name of a store error code."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {
    PyModuleDef_HEAD_INIT, "_core", "C core of the mooncake package.", -1, mod_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__core(void)
{
    PyObject *m = PyModule_Create(&moddef);
    if (!m) return NULL;
    BufferHandle_Type = (PyTypeObject *)PyType_FromSpec(&bufh_spec);
    PyObject *st = PyType_FromSpec(&store_spec);
    PyObject *te = PyType_FromSpec(&te_spec);
    EngineHandle_Type = (PyTypeObject *)PyType_FromSpec(&eng_spec);
    PyObject *al = PyType_FromSpec(&alloc_spec);
    TE_Type = (PyTypeObject *)te;
    if (!BufferHandle_Type || !st || !te || !EngineHandle_Type || !al) goto fail;
    Py_INCREF((PyObject *)BufferHandle_Type);
    Py_INCREF(te); /* TE_Type keeps one */
    Py_INCREF((PyObject *)EngineHandle_Type);
    if (PyModule_AddObject(m, "BufferHandle", (PyObject *)BufferHandle_Type) < 0 ||
        PyModule_AddObject(m, "EngineHandle", (PyObject *)EngineHandle_Type) < 0 ||
        PyModule_AddObject(m, "MooncakeDistributedStore", st) < 0 ||
        PyModule_AddObject(m, "TransferEngine", te) < 0 ||
        PyModule_AddObject(m, "MooncakeHostMemAllocator", al) < 0 ||
        PyModule_AddStringConstant(m, "VERSION", MC_PY_VERSION) < 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
