/* py_store_getbuf.c: MooncakeDistributedStore.get_buffer / batch_get_buffer,
 * the allocating gets that hand out BufferHandles. The objects are read into
 * get buffers (mc_store_batch_get_buffers, store.h): blocks of the store's
 * local buffer, whose pages stay mapped from one call to the next, in place
 * of a fresh malloc per object (a few MiB each: an mmap, page faults on
 * every page, a munmap at release). A handle releases its block when it is
 * freed, also after close. */
#include "py_int.h"

/* get_buffer(key) -> BufferHandle or None */
PyObject *mc__py_store_get_buffer(PyObject *o, PyObject *args)
{
    pystore_t *self = (pystore_t *)o;
    PyObject *k;
    const char *key;
    if (!PyArg_ParseTuple(args, "O:get_buffer", &k) || mc__py_arg_str(k, "key", &key)) return NULL;
    mc_store_buffer_t *b = NULL;
    int rc;
    RD_BEGIN(self)
    rc = mc_store_get_buffer(self->s, key, &b);
    RD_END(self)
    if (rc || !b) {
        mc_store_buffer_release(b);
        Py_RETURN_NONE;
    }
    return mc__py_bufh_from_sb(b);
}

/* batch_get_buffer(keys) -> list[BufferHandle | None]: one master round trip,
 * one transfer batch */
PyObject *mc__py_store_batch_get_buffer(PyObject *o, PyObject *args)
{
    pystore_t *self = (pystore_t *)o;
    PyObject *ks;
    if (!PyArg_ParseTuple(args, "O:batch_get_buffer", &ks)) return NULL;
    strv_t keys;
    if (mc__py_strv_from(ks, "keys", &keys)) return NULL;
    size_t n = keys.n;
    mc_store_buffer_t **bufs = calloc(n + 1, sizeof *bufs);
    int *rcs = calloc(n + 1, sizeof *rcs);
    PyObject *l = NULL;
    if (!bufs || !rcs) {
        PyErr_NoMemory();
        goto out;
    }
    if (n) {
        RD_BEGIN(self)
        mc_store_batch_get_buffers(self->s, keys.v, n, bufs, rcs);
        RD_END(self)
    }
    l = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; l && i < n; i++) {
        PyObject *x;
        if (rcs[i] || !bufs[i]) {
            Py_INCREF(Py_None);
            x = Py_None;
        } else {
            x = mc__py_bufh_from_sb(bufs[i]); /* takes it over, also on failure */
        }
        bufs[i] = NULL;
        if (!x) {
            Py_CLEAR(l);
            break;
        }
        PyList_SetItem(l, (Py_ssize_t)i, x);
    }
out:
    for (size_t i = 0; bufs && i < n; i++) mc_store_buffer_release(bufs[i]);
    free(bufs);
    free(rcs);
    mc__py_strv_free(&keys);
    return l;
}
