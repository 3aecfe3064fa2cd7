/* py_args.c: the extension's argument helpers (ints, strings, sequences,
 * pointer checks, scatter/gather lists) and BufferHandle (py_int.h). */
#include "py_int.h"

/* ------------------------------------------------------------------ */
/* argument helpers                                                    */

/* Converts an int argument; TypeError/ValueError naming the argument. */
int mc__py_arg_u64(PyObject *o, const char *name, uint64_t *out)
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
int mc__py_arg_str(PyObject *o, const char *name, const char **out)
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

Py_ssize_t mc__py_arg_seq(PyObject *o, const char *name)
{
    if (!PyList_Check(o) && !PyTuple_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be a list", name);
        return -1;
    }
    return PySequence_Size(o);
}

/* A list of str held alive (new references) with their UTF-8 pointers. */

void mc__py_strv_free(strv_t *s)
{
    for (size_t i = 0; i < s->n; i++) Py_XDECREF(s->refs[i]);
    free(s->refs);
    free(s->v);
    memset(s, 0, sizeof *s);
}

int mc__py_strv_from(PyObject *seq, const char *name, strv_t *s)
{
    memset(s, 0, sizeof *s);
    Py_ssize_t n = mc__py_arg_seq(seq, name);
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
        if (mc__py_arg_str(it, name, &s->v[i]) < 0) goto fail;
    }
    return 0;
fail:
    mc__py_strv_free(s);
    return -1;
}

/* A list of ints as uint64. *out is malloc'd (at least one element). */
int mc__py_u64v_from(PyObject *seq, const char *name, uint64_t **out, size_t *n_out)
{
    Py_ssize_t n = mc__py_arg_seq(seq, name);
    if (n < 0) return -1;
    uint64_t *v = calloc((size_t)n + 1, sizeof *v);
    if (!v) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *it = PySequence_GetItem(seq, i);
        if (!it) goto fail;
        int rc = mc__py_arg_u64(it, name, &v[i]);
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

int mc__py_check_len(size_t a, size_t b, const char *an, const char *bn)
{
    if (a == b) return 0;
    PyErr_Format(PyExc_ValueError, "%s and %s must have the same length (%zu != %zu)", an, bn, a, b);
    return -1;
}

/* Whether [p, p+len) is mapped memory (mincore; ENOMEM on a hole), so that a
 * bad pointer from Python gets an error code instead of a crash in the C
 * core. Protection bits are not checked. */
int mc__py_ptr_ok(uint64_t p, uint64_t len)
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

/* mc__py_ptr_ok, except that a range inside one buffer registered with te (NULL:
 * none) is taken as mapped without a syscall: registering memory is the
 * caller's promise that it stays mapped until unregistered. */
int mc__py_ptr_ok_te(mc_te_t *te, uint64_t p, uint64_t len)
{
    if (te && len && p && p + len > p && mc_te_is_registered(te, (const void *)(uintptr_t)p, len))
        return 1;
    return mc__py_ptr_ok(p, len);
}

int mc__py_ptrs_ok(mc_te_t *te, const uint64_t *p, const uint64_t *len, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!mc__py_ptr_ok_te(te, p[i], len[i])) return 0;
    return 1;
}

/* keys[i] with ptrs[i][] and sizes[i][] as scatter lists. */

void mc__py_iov2_free(iov2_t *v)
{
    free(v->flat);
    free(v->parts);
    free(v->nparts);
    memset(v, 0, sizeof *v);
}

int mc__py_iov2_from(PyObject *ptrs, PyObject *sizes, size_t n, iov2_t *v)
{
    memset(v, 0, sizeof *v);
    Py_ssize_t np = mc__py_arg_seq(ptrs, "all_buffer_ptrs"), ns = mc__py_arg_seq(sizes, "all_sizes");
    if (np < 0 || ns < 0) return -1;
    if ((size_t)np != n || (size_t)ns != n) return 1; /* upstream: -600 per key, no exception */
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
        int r = (a && b && mc__py_u64v_from(a, "all_buffer_ptrs", &pp[i], &na) == 0 &&
                 mc__py_u64v_from(b, "all_sizes", &ss[i], &nb) == 0)
                    ? 0
                    : -1;
        Py_XDECREF(a);
        Py_XDECREF(b);
        if (r < 0) goto out;
        if (na != nb) {
            rc = 1;
            goto out;
        }
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
    if (rc) mc__py_iov2_free(v);
    return rc;
}

int mc__py_iov2_ok(mc_te_t *te, const iov2_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < v->nparts[i]; j++)
            if (!mc__py_ptr_ok_te(te, (uintptr_t)v->parts[i][j].ptr, v->parts[i][j].len)) return 0;
    return 1;
}

PyObject *mc__py_int_list(const int64_t *v, size_t n)
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

PyObject *mc__py_int_list32(const int *v, size_t n)
{
    int64_t *w = calloc(n + 1, sizeof *w);
    if (!w) return PyErr_NoMemory();
    for (size_t i = 0; i < n; i++) w[i] = v[i];
    PyObject *l = mc__py_int_list(w, n);
    free(w);
    return l;
}

/* ------------------------------------------------------------------ */
/* BufferHandle                                                        */


PyTypeObject *mc__py_BufferHandle_Type;

static void bufh_dealloc(PyObject *o)
{
    bufh_t *b = (bufh_t *)o;
    if (b->sb)
        mc_store_buffer_release(b->sb);
    else
        free(b->ptr);
    PyTypeObject *tp = Py_TYPE(o);
    freefunc f = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    f(o);
    Py_DECREF((PyObject *)tp);
}

/* the exported bytes, for mooncake._buf's bf_getbuffer (py_buf.h) */
static int bufh_info(PyObject *o, void **ptr, Py_ssize_t *len)
{
    if (!PyObject_TypeCheck(o, mc__py_BufferHandle_Type)) {
        PyErr_SetString(PyExc_BufferError, "not a BufferHandle");
        return -1;
    }
    *ptr = ((bufh_t *)o)->ptr;
    *len = ((bufh_t *)o)->len;
    return 0;
}

static Py_ssize_t bufh_len(PyObject *o) { return ((bufh_t *)o)->len; }

static PyObject *bufh_ptr(PyObject *o, PyObject *unused)
{
    return PyLong_FromUnsignedLongLong((uintptr_t)((bufh_t *)o)->ptr);
}

static PyObject *bufh_size(PyObject *o, PyObject *unused) { return PyLong_FromSsize_t(((bufh_t *)o)->len); }

static PyObject *bufh_tobytes(PyObject *o, PyObject *unused)
{
    bufh_t *b = (bufh_t *)o;
    return PyBytes_FromStringAndSize(b->ptr ? (const char *)b->ptr : "", b->len);
}

static PyMethodDef bufh_methods[] = {
    {"tobytes", bufh_tobytes, METH_NOARGS, "A copy of the bytes."},
    {"ptr", bufh_ptr, METH_NOARGS, "Address of the data."},
    {"size", bufh_size, METH_NOARGS, "Size in bytes."},
    {"len", bufh_size, METH_NOARGS, "Size in bytes."},
    {NULL, NULL, 0, NULL},
};

/* The buffer slot comes from mooncake._buf where it is loaded (Python >= 3.11;
 * its slot number, 1, is the stable ABI's Py_bf_getbuffer); the last entry is
 * the terminator. The exported memory is the handle's own, so nothing is to
 * do on release. */
static PyType_Slot bufh_slots[] = {
    {Py_tp_dealloc, bufh_dealloc}, {Py_sq_length, bufh_len}, {Py_tp_methods, bufh_methods},
    {Py_tp_doc, "Bytes of one object, owned; memoryview() on Python >= 3.11, tobytes() everywhere."},
    {0, NULL}, {0, NULL},
};

static PyType_Spec bufh_spec = {"mooncake._core.BufferHandle", sizeof(bufh_t), 0,
                                Py_TPFLAGS_DEFAULT, bufh_slots};

PyTypeObject *mc__py_bufh_type_make(void)
{
    mc_pybuf_api_t *api = mc__py_buf_api();
    if (api) {
        api->info = bufh_info;
        bufh_slots[4].slot = 1; /* Py_bf_getbuffer */
        bufh_slots[4].pfunc = api->getbuffer_slot;
    }
    return (PyTypeObject *)PyType_FromSpec(&bufh_spec);
}

/* Takes ownership of ptr (malloc'd). */
PyObject *mc__py_bufh_new(void *ptr, size_t len)
{
    allocfunc a = (allocfunc)PyType_GetSlot(mc__py_BufferHandle_Type, Py_tp_alloc);
    bufh_t *b = (bufh_t *)a(mc__py_BufferHandle_Type, 0);
    if (!b) {
        free(ptr);
        return NULL;
    }
    b->ptr = ptr;
    b->len = (Py_ssize_t)len;
    b->sb = NULL;
    return (PyObject *)b;
}

PyObject *mc__py_bufh_from_sb(mc_store_buffer_t *sb)
{
    allocfunc a = (allocfunc)PyType_GetSlot(mc__py_BufferHandle_Type, Py_tp_alloc);
    bufh_t *b = (bufh_t *)a(mc__py_BufferHandle_Type, 0);
    if (!b) {
        mc_store_buffer_release(sb);
        return NULL;
    }
    b->ptr = mc_store_buffer_data(sb);
    b->len = (Py_ssize_t)mc_store_buffer_size(sb);
    b->sb = sb;
    return (PyObject *)b;
}

