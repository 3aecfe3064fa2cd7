/* py_store.c: MooncakeDistributedStore over libmooncake_store, and the
 * ReplicateConfig it reads (py_int.h). */
#include "py_int.h"

#include "base_log.h"
#include "base_mem.h"

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
    if (mc__py_arg_str(s, "preferred_segments", &u) < 0) return -1;
    if (!*u) return 0;
    for (int i = 0; i < h->nrefs; i++)
        if (strcmp(h->segs[i], u) == 0) return 0;
    Py_INCREF(s);
    h->refs[h->nrefs] = s;
    h->segs[h->nrefs++] = u;
    return 0;
}

/* A replica count of upstream's that the C core has no notion of: 0 when it is
 * absent or 0, 1 (one log line naming it) when it asks for such replicas. */
static int cfg_unsupported_count(PyObject *o, const char *name, const char *what)
{
    PyObject *v = PyObject_GetAttrString(o, name);
    if (!v) {
        PyErr_Clear();
        return 0;
    }
    uint64_t n = 0;
    int rc = mc__py_arg_u64(v, name, &n);
    Py_DECREF(v);
    if (rc < 0) return -1;
    if (n == 0) return 0;
    MC_LOGW("py",
            "ReplicateConfig.%s=%llu: %s replicas are not supported by mooncake-c: "
            "NOT_SUPPORTED (-1012)",
            name, (unsigned long long)n, what);
    return 1;
}

/* Fills h from a ReplicateConfig-like object (None: defaults). 0; -1 with an
 * exception; 1 (h freed, no exception) when it asks for NVMe-oF or DFS
 * replicas: the call then answers MC_ERR_NOT_SUPPORTED. */
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
    int rc = mc__py_arg_u64(v, "config.replica_num", &rn);
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
            rc = mc__py_arg_u64(v, "config.soft_pin_ttl_ms", &ttl);
            if (rc == 0) h->c.soft_pin_ttl_ms = ttl;
        } else
            rc = 0;
        Py_DECREF(v);
        if (rc < 0) goto fail;
    }
    v = PyObject_GetAttrString(o, "soft_pin_action");
    if (!v)
        PyErr_Clear();
    else {
        uint64_t act = 0;
        rc = mc__py_arg_u64(v, "config.soft_pin_action", &act);
        Py_DECREF(v);
        if (rc < 0) goto fail;
        if (act > MC_STORE_SOFT_PIN_DISABLE) {
            PyErr_SetString(PyExc_TypeError, "config.soft_pin_action must be a SoftPinAction");
            goto fail;
        }
        h->c.soft_pin_action = (int)act;
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
        Py_ssize_t n = mc__py_arg_seq(v, "config.preferred_segments");
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
    int un = cfg_unsupported_count(o, "nof_replica_num", "NVMe-oF");
    if (un == 0) un = cfg_unsupported_count(o, "dfs_replica_num", "DFS");
    if (un < 0) goto fail;
    if (un > 0) {
        cfg_free(h);
        return 1;
    }
    return 0;
fail:
    cfg_free(h);
    return -1;
}

/* ------------------------------------------------------------------ */
/* MooncakeDistributedStore                                            */

/* Pointer checks of the store's calls (mc__py_ptr_ok_te on the store's engine). The
 * read lock keeps close from freeing the engine meanwhile; writers take the
 * lock with the GIL released, so holding the GIL here cannot deadlock. */
static int store_ptrs_ok(pystore_t *self, const uint64_t *p, const uint64_t *len, size_t n)
{
    pthread_rwlock_rdlock(&self->lk);
    int ok = mc__py_ptrs_ok(mc_store_get_engine(self->s), p, len, n);
    pthread_rwlock_unlock(&self->lk);
    return ok;
}

static int store_iov2_ok(pystore_t *self, const iov2_t *v, size_t n)
{
    pthread_rwlock_rdlock(&self->lk);
    int ok = mc__py_iov2_ok(mc_store_get_engine(self->s), v, n);
    pthread_rwlock_unlock(&self->lk);
    return ok;
}

/* Upstream's answer to batch lists of different lengths: INVALID_PARAMS for
 * each of the n keys (n = len(keys)), no exception; one log line names the call. */
static PyObject *store_err_list(size_t n, int code)
{
    int64_t *v = calloc(n + 1, sizeof *v);
    if (!v) return PyErr_NoMemory();
    for (size_t i = 0; i < n; i++)
        v[i] = code;
    PyObject *l = mc__py_int_list(v, n);
    free(v);
    return l;
}

static PyObject *store_len_mismatch(const char *call, size_t n)
{
    MC_LOGW("py",
            "%s: a list's length differs from the %zu keys' (or a row's pointers from its "
            "sizes): INVALID_PARAMS per key",
            call, n);
    return store_err_list(n, MC_ERR_INVALID_PARAMS);
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
    if (mc__py_arg_str(h, "local_hostname", &hs) || mc__py_arg_str(m, "metadata_server", &ms) ||
        mc__py_arg_u64(gs, "global_segment_size", &g) || mc__py_arg_u64(ls, "local_buffer_size", &l) ||
        mc__py_arg_str(p, "protocol", &ps) || mc__py_arg_str(d, "rdma_devices", &ds) ||
        mc__py_arg_str(ma, "master_server_addr", &mas))
        return NULL;
    /* tenant_id: upstream's; the master has no tenants (docs/python.md) */
    const char *tenant_s = "";
    if (tenant != Py_None && mc__py_arg_str(tenant, "tenant_id", &tenant_s)) return NULL;
    (void)tenant_s;
    /* SSD tier (mc_store_set_ssd_offload): path "" = MOONCAKE_OFFLOAD_FILE_STORAGE_PATH */
    int want_ssd = ssd != Py_None ? PyObject_IsTrue(ssd) : 0;
    const char *ssd_path = "";
    if (want_ssd < 0 || (ssdp != Py_None && mc__py_arg_str(ssdp, "ssd_offload_path", &ssd_path)))
        return NULL;
    if (mc_store_set_ssd_offload(self->s, want_ssd, ssd_path) != 0)
        return PyLong_FromLong(MC_ERR_INVALID_PARAMS);
    /* engine: TransferEngine.get_engine()'s handle or the engine itself; the
     * store then lives in that engine's segment (name, metadata and devices are
     * the engine's; the arguments above are checked but not used) and keeps a
     * reference to it until close, so the engine outlives the store. */
    mc_te_t *te = NULL;
    if (engine != Py_None) {
        int er = mc__py_engine_arg(engine, &te);
        if (er < 0) return NULL;
        if (er == 0) return PyLong_FromLong(MC_ERR_INVALID_PARAMS); /* not initialized */
    }
    /* enable_client_http_server: this client's /metrics and /health on
     * client_http_port (default 9300; 0 = any free port, read it with
     * client_http_port()), bound to MC_CLIENT_HTTP_HOST (default all). */
    int http_on = chs != Py_None && PyObject_IsTrue(chs) == 1;
    uint64_t http_port = 9300;
    if (http_on && chp != Py_None && (mc__py_arg_u64(chp, "client_http_port", &http_port) ||
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
    if (mc__py_arg_u64(mp, "mem_pool_size", &pool) || mc__py_arg_u64(lb, "local_buffer_size", &lbuf) ||
        mc__py_arg_str(sa, "server_address", &addr))
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

/* get_offload_rpc_read_count() -> int: objects this store's gets read from
 * a LOCAL_DISK replica (upstream's name for it). */
static PyObject *store_get_offload_rpc_read_count(PyObject *o, PyObject *unused)
{
    pystore_t *self = (pystore_t *)o;
    return PyLong_FromUnsignedLongLong(mc_store_offload_read_count(self->s));
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
    if (mc__py_arg_str(k, "key", &key)) return NULL;
    mc_pybuf_t b;
    if (mc__py_buf_get(val, &b) < 0) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "value must be a bytes-like object");
        return NULL;
    }
    cfgh_t h;
    int cr = cfg_from(c, &h);
    if (cr) {
        mc__py_buf_release(&b);
        return cr < 0 ? NULL : PyLong_FromLong(MC_ERR_NOT_SUPPORTED);
    }
    int rc;
    RD_BEGIN(self)
    rc = upsert ? mc_store_upsert(self->s, key, b.buf, (size_t)b.len, &h.c)
                : mc_store_put(self->s, key, b.buf, (size_t)b.len, &h.c);
    RD_END(self)
    mc__py_buf_release(&b);
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
    if (mc__py_arg_str(PyTuple_GetItem(args, 0), "key", &key)) return NULL;
    size_t np = (size_t)(n - 1);
    mc_pybuf_t *bs = calloc(np + 1, sizeof *bs);
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
        if (mc__py_buf_get(PyTuple_GetItem(args, (Py_ssize_t)got + 1), &bs[got]) < 0) {
            PyErr_Clear();
            PyErr_SetString(PyExc_TypeError, "parts must be bytes-like objects");
            goto out;
        }
        iov[got].ptr = (void *)(uintptr_t)bs[got].buf; /* read only: a put */
        iov[got].len = (size_t)bs[got].len;
    }
    int cr = cfg_from(c, &h);
    if (cr) {
        if (cr > 0) ret = PyLong_FromLong(MC_ERR_NOT_SUPPORTED);
        goto out;
    }
    hok = 1;
    int rc;
    RD_BEGIN(self)
    rc = upsert ? mc_store_upsert_parts(self->s, key, iov, np, &h.c)
                : mc_store_put_parts(self->s, key, iov, np, &h.c);
    RD_END(self)
    ret = PyLong_FromLong(rc);
out:
    for (size_t i = 0; i < got; i++) mc__py_buf_release(&bs[i]);
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
    if (mc__py_strv_from(ks, "keys", &keys)) return NULL;
    Py_ssize_t nv = mc__py_arg_seq(vs, "values");
    if (nv < 0 || (size_t)nv != keys.n) { /* upstream: one INVALID_PARAMS, no exception */
        if (nv >= 0)
            MC_LOGW("py", "%s: %zu keys but %zd values: INVALID_PARAMS",
                    upsert ? "upsert_batch" : "put_batch", keys.n, nv);
        mc__py_strv_free(&keys);
        return nv < 0 ? NULL : PyLong_FromLong(MC_ERR_INVALID_PARAMS);
    }
    size_t n = keys.n, got = 0;
    mc_pybuf_t *bs = calloc(n + 1, sizeof *bs);
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
        int r = it ? mc__py_buf_get(it, &bs[got]) : -1;
        Py_XDECREF(it);
        if (r < 0) {
            PyErr_Clear();
            PyErr_SetString(PyExc_TypeError, "values must be bytes-like objects");
            goto out;
        }
        vals[got] = bs[got].buf;
        lens[got] = (size_t)bs[got].len;
    }
    int cr = cfg_from(c, &h);
    if (cr) {
        if (cr > 0) ret = PyLong_FromLong(MC_ERR_NOT_SUPPORTED);
        goto out;
    }
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
    for (size_t i = 0; i < got; i++) mc__py_buf_release(&bs[i]);
    if (hok) cfg_free(&h);
    free(bs);
    free(vals);
    free(lens);
    free(rcs);
    mc__py_strv_free(&keys);
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
    if (mc__py_arg_str(k, "key", &key) || mc__py_arg_u64(p, "buffer_ptr", &ptr) || mc__py_arg_u64(sz, "size", &size))
        return NULL;
    if (!store_ptrs_ok(self, &ptr, &size, 1)) return PyLong_FromLong(MC_ERR_INVALID_PARAMS);
    cfgh_t h;
    int cr = cfg_from(c, &h);
    if (cr) return cr < 0 ? NULL : PyLong_FromLong(MC_ERR_NOT_SUPPORTED);
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
    if (mc__py_strv_from(ks, "keys", &keys)) return NULL;
    int *rcs = NULL;
    cfgh_t h;
    int hok = 0;
    if (mc__py_u64v_from(ps, "buffer_ptrs", &ptrs, &np) ||
        mc__py_u64v_from(ss, "sizes", &sizes, &ns))
        goto out;
    if (np != keys.n || ns != keys.n) {
        ret = store_len_mismatch(upsert ? "batch_upsert_from" : "batch_put_from", keys.n);
        goto out;
    }
    int cr = cfg_from(c, &h);
    if (cr) {
        if (cr > 0) ret = store_err_list(keys.n, MC_ERR_NOT_SUPPORTED);
        goto out;
    }
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
    ret = mc__py_int_list32(rcs, keys.n);
out:
    if (hok) cfg_free(&h);
    free(rcs);
    free(ptrs);
    free(sizes);
    mc__py_strv_free(&keys);
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
    if (mc__py_strv_from(ks, "keys", &keys)) return NULL;
    iov2_t v;
    cfgh_t h;
    int *rcs = NULL;
    int vr = mc__py_iov2_from(ps, ss, keys.n, &v);
    if (vr) {
        ret = vr > 0 ? store_len_mismatch("batch_put_from_multi_buffers", keys.n) : NULL;
        mc__py_strv_free(&keys);
        return ret;
    }
    int cr = cfg_from(c, &h);
    if (cr) {
        if (cr > 0) ret = store_err_list(keys.n, MC_ERR_NOT_SUPPORTED);
        goto out2;
    }
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
    ret = mc__py_int_list32(rcs, keys.n);
out:
    cfg_free(&h);
out2:
    free(rcs);
    mc__py_iov2_free(&v);
    mc__py_strv_free(&keys);
    return ret;
}

/* get(key) -> bytes, b"" on miss or error (positional only) */
static PyObject *store_get(PyObject *o, PyObject *args)
{
    pystore_t *self = (pystore_t *)o;
    PyObject *k;
    const char *key;
    if (!PyArg_ParseTuple(args, "O:get", &k) || mc__py_arg_str(k, "key", &key)) return NULL;
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

/* get_batch(keys) -> list[bytes] */
static PyObject *store_get_batch(PyObject *o, PyObject *args)
{
    pystore_t *self = (pystore_t *)o;
    PyObject *ks;
    if (!PyArg_ParseTuple(args, "O", &ks)) return NULL;
    strv_t keys;
    if (mc__py_strv_from(ks, "keys", &keys)) return NULL;
    size_t n = keys.n;
    if (n == 0) {
        mc__py_strv_free(&keys);
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
        PyObject *x =
            PyBytes_FromStringAndSize(rcs[i] ? "" : outs[i], rcs[i] ? 0 : (Py_ssize_t)lens[i]);
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
    mc__py_strv_free(&keys);
    return l;
}

/* get_into(key, buffer_ptr, size) -> bytes or negative */
static PyObject *store_get_into(PyObject *o, PyObject *args, PyObject *kw)
{
    pystore_t *self = (pystore_t *)o;
    static char *kwl[] = {"key", "buffer_ptr", "size", NULL};
    PyObject *k, *p, *sz;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO:get_into", kwl, &k, &p, &sz)) return NULL;
    const char *key;
    uint64_t ptr, size;
    if (mc__py_arg_str(k, "key", &key) || mc__py_arg_u64(p, "buffer_ptr", &ptr) || mc__py_arg_u64(sz, "size", &size))
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
    if (mc__py_strv_from(ks, "keys", &keys)) return NULL;
    if (mc__py_u64v_from(ps, "buffer_ptrs", &ptrs, &np) ||
        mc__py_u64v_from(ss, "sizes", &sizes, &ns))
        goto out;
    if (np != keys.n || ns != keys.n) {
        ret = store_len_mismatch("batch_get_into", keys.n);
        goto out;
    }
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
    ret = mc__py_int_list(res, keys.n);
out:
    free(res);
    free(ptrs);
    free(sizes);
    mc__py_strv_free(&keys);
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
    if (mc__py_strv_from(ks, "keys", &keys)) return NULL;
    iov2_t v;
    int vr = mc__py_iov2_from(ps, ss, keys.n, &v);
    if (vr) {
        ret = vr > 0 ? store_len_mismatch("batch_get_into_multi_buffers", keys.n) : NULL;
        mc__py_strv_free(&keys);
        return ret;
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
    ret = mc__py_int_list(res, keys.n);
out:
    free(res);
    mc__py_iov2_free(&v);
    mc__py_strv_free(&keys);
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
        mc__py_arg_u64(p, "buffer_ptr", &ptr) || mc__py_arg_u64(sz, "size", &size))
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
        mc__py_arg_u64(p, "buffer_ptr", &ptr))
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
    if (!PyArg_ParseTuple(args, "O:is_exist", &k) || mc__py_arg_str(k, "key", &key)) return NULL;
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
    if (!PyArg_ParseTuple(args, "O:get_size", &k) || mc__py_arg_str(k, "key", &key)) return NULL;
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
    if (mc__py_strv_from(ks, "keys", &keys)) return NULL;
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
    ret = mc__py_int_list32(res, keys.n);
out:
    free(res);
    mc__py_strv_free(&keys);
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
        mc__py_arg_str(k, "key", &key))
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
    if (mc__py_strv_from(ks, "keys", &keys)) return NULL;
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
    ret = mc__py_int_list32(rcs, keys.n);
out:
    free(rcs);
    mc__py_strv_free(&keys);
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
        mc__py_arg_str(r, "regex_pattern", &re))
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
    if (!PyArg_ParseTuple(args, "O", &k) || mc__py_arg_str(k, "key", &key)) return NULL;
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

/* batch_replica_clear(keys, segment_name="") -> list[str]: the keys whose
 * replicas (on segment_name; "": all) were cleared (mc_store_batch_replica_clear);
 * [] when the store is not set up or the round trip failed (one log line). */
static PyObject *store_batch_replica_clear(PyObject *o, PyObject *args, PyObject *kw)
{
    pystore_t *self = (pystore_t *)o;
    static char *kwl[] = {"keys", "segment_name", NULL};
    PyObject *ks, *seg = NULL, *ret = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O:batch_replica_clear", kwl, &ks, &seg))
        return NULL;
    const char *segment = "";
    if (seg && mc__py_arg_str(seg, "segment_name", &segment)) return NULL;
    strv_t keys;
    if (mc__py_strv_from(ks, "keys", &keys)) return NULL;
    int *rcs = calloc(keys.n + 1, sizeof *rcs);
    if (!rcs) {
        PyErr_NoMemory();
        goto out;
    }
    int rc = 0;
    if (keys.n) {
        RD_BEGIN(self)
        rc = mc_store_batch_replica_clear(self->s, keys.v, keys.n, segment, rcs);
        RD_END(self)
    }
    if (rc) MC_LOGW("py", "batch_replica_clear of %zu keys failed: %s", keys.n, mc_err_str(rc));
    ret = PyList_New(0);
    for (size_t i = 0; ret && rc == 0 && i < keys.n; i++) {
        if (rcs[i] != 0) continue;
        if (PyList_Append(ret, keys.refs[i]) < 0) Py_CLEAR(ret);
    }
out:
    free(rcs);
    mc__py_strv_free(&keys);
    return ret;
}

/* _mem_ok(ptr, len, base=0, write=False) -> bool: whether Python code of the
 * store (store_ext.py) may copy to (write) or from [ptr, ptr+len) with memmove.
 * Inside a buffer registered with the store's engine: yes (registering is the
 * caller's promise that it stays mapped; no syscall). Else the range is probed
 * by the kernel (mc_mem_check: a hole, a PROT_NONE page, or with write a
 * read-only page, answer no), as the store's own copy paths do. With base (the
 * start of the caller's buffer) inside a registered buffer, the range must lie
 * inside a registered buffer too: a registration is the only capacity known
 * for a buffer given by its address alone. */
static PyObject *store_mem_ok(PyObject *o, PyObject *args)
{
    pystore_t *self = (pystore_t *)o;
    PyObject *p, *l, *b = NULL, *w = NULL;
    uint64_t ptr, len, base = 0;
    if (!PyArg_ParseTuple(args, "OO|OO:_mem_ok", &p, &l, &b, &w) ||
        mc__py_arg_u64(p, "ptr", &ptr) || mc__py_arg_u64(l, "len", &len) ||
        (b && mc__py_arg_u64(b, "base", &base)))
        return NULL;
    int write = w ? PyObject_IsTrue(w) : 0;
    if (write < 0) return NULL;
    if (len == 0) Py_RETURN_TRUE;
    if (!ptr || ptr + len < ptr) Py_RETURN_FALSE;
    int ok = -1, reg = 0;
    Py_BEGIN_ALLOW_THREADS pthread_rwlock_rdlock(&self->lk);
    mc_te_t *te = mc_store_get_engine(self->s);
    reg = te && mc_te_is_registered(te, (const void *)(uintptr_t)ptr, len);
    if (base && te && mc_te_is_registered(te, (const void *)(uintptr_t)base, 1)) ok = reg;
    pthread_rwlock_unlock(&self->lk);
    if (ok < 0) ok = reg || mc_mem_check((const void *)(uintptr_t)ptr, len, write) == 0;
    Py_END_ALLOW_THREADS return PyBool_FromLong(ok);
}

static PyMethodDef store_methods[] = {
    {"setup", (PyCFunction)(void (*)(void))store_setup, METH_VARARGS | METH_KEYWORDS, NULL},
    {"setup_dummy", (PyCFunction)(void (*)(void))store_setup_dummy, METH_VARARGS | METH_KEYWORDS,
     NULL},
    {"close", store_close, METH_NOARGS, NULL},
    {"get_hostname", store_get_hostname, METH_NOARGS, NULL},
    {"client_http_port", store_client_http_port, METH_NOARGS, NULL},
    {"get_offload_rpc_read_count", store_get_offload_rpc_read_count, METH_NOARGS, NULL},
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
    {"get_buffer", mc__py_store_get_buffer, METH_VARARGS, NULL},
    {"get_batch", store_get_batch, METH_VARARGS, NULL},
    {"batch_get_buffer", mc__py_store_batch_get_buffer, METH_VARARGS, NULL},
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
    {"batch_replica_clear", (PyCFunction)(void (*)(void))store_batch_replica_clear,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"_mem_ok", store_mem_ok, METH_VARARGS, NULL},
    {"_read_ranges", mc__py_store_read_ranges, METH_VARARGS, NULL},
    {"_copy_task", mc__py_store_copy_task, METH_VARARGS, NULL},
    {"_move_task", mc__py_store_move_task, METH_VARARGS, NULL},
    {"_query_task", mc__py_store_query_task, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot store_slots[] = {
    {Py_tp_new, store_new},
    {Py_tp_dealloc, store_dealloc},
    {Py_tp_methods, store_methods},
    {Py_tp_doc, "Client of the Mooncake distributed KV store (C core)."},
    {0, NULL},
};

PyType_Spec mc__py_store_spec = {"mooncake._core.MooncakeDistributedStore", sizeof(pystore_t), 0,
                                 Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, store_slots};

