/* py_bufapi.c: `mooncake._buf`, the buffer protocol for `mooncake._core`
 * (py_buf.h says why it is a module of its own). Built against the CPython
 * limited API of 3.11, the first to hold Py_buffer, PyObject_GetBuffer and
 * the bf_getbuffer slot; _core imports it only on Python >= 3.11. It exports
 * one capsule, MC_PYBUF_CAPSULE, holding an mc_pybuf_api_t. No state but the
 * table; thread rule: callers hold the GIL. */
#define Py_LIMITED_API 0x030B0000
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>

#include "py_buf.h"

static mc_pybuf_api_t api;

static int buf_get(PyObject *obj, const void **ptr, Py_ssize_t *len, void **view)
{
    Py_buffer *v = malloc(sizeof *v);
    if (!v) {
        PyErr_NoMemory();
        return -1;
    }
    if (PyObject_GetBuffer(obj, v, PyBUF_SIMPLE) < 0) {
        free(v);
        return -1;
    }
    *ptr = v->buf;
    *len = v->len;
    *view = v;
    return 0;
}

static void buf_release(void *view)
{
    if (!view) return;
    PyBuffer_Release((Py_buffer *)view);
    free(view);
}

static int buf_getbuffer(PyObject *o, Py_buffer *view, int flags)
{
    void *p;
    Py_ssize_t n;
    if (!api.info || api.info(o, &p, &n) < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_BufferError, "no bytes to export");
        return -1;
    }
    return PyBuffer_FillInfo(view, o, p, n, 0, flags);
}

static struct PyModuleDef moddef = {
    PyModuleDef_HEAD_INIT, "mooncake._buf",
    "The buffer protocol for mooncake._core on Python >= 3.11 (internal).", -1, NULL,
    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__buf(void)
{
    PyObject *m = PyModule_Create(&moddef);
    if (!m) return NULL;
    api.abi = MC_PYBUF_ABI;
    api.get = buf_get;
    api.release = buf_release;
    api.getbuffer_slot = (void *)buf_getbuffer;
    PyObject *cap = PyCapsule_New(&api, MC_PYBUF_CAPSULE, NULL);
    if (!cap || PyModule_AddObject(m, "_API", cap) < 0) {
        Py_XDECREF(cap);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
