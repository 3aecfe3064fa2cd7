/* py_buf.c: bytes of buffer-protocol objects for `mooncake._core` (py_buf.h:
 * why the buffer protocol lives in mooncake._buf on Python >= 3.11, and what
 * Python 3.10 gets instead). The table is set once at module init, under the
 * GIL, and only read after. */
#include "py_int.h"
#include "py_buf.h"

static mc_pybuf_api_t *g_api; /* NULL on Python 3.10 */

mc_pybuf_api_t *mc__py_buf_api(void) { return g_api; }

int mc__py_buf_exports(void) { return g_api != NULL; }

/* sys.version_info >= (3, 11): 1, 0, or -1 with an exception */
static int py_at_least_311(void)
{
    PyObject *vi = PySys_GetObject("version_info"); /* borrowed */
    if (!vi) {
        PyErr_SetString(PyExc_ImportError, "mooncake._core: no sys.version_info");
        return -1;
    }
    PyObject *ma = PySequence_GetItem(vi, 0), *mi = PySequence_GetItem(vi, 1);
    long a = ma ? PyLong_AsLong(ma) : -1, b = mi ? PyLong_AsLong(mi) : -1;
    Py_XDECREF(ma);
    Py_XDECREF(mi);
    if (PyErr_Occurred()) return -1;
    return a > 3 || (a == 3 && b >= 11);
}

int mc__py_buf_init(void)
{
    int r = py_at_least_311();
    if (r <= 0) return r;
    /* a module of the same package; a failure here is a broken install */
    PyObject *m = PyImport_ImportModule("mooncake._buf");
    if (!m) return -1;
    Py_DECREF(m);
    mc_pybuf_api_t *api = PyCapsule_Import(MC_PYBUF_CAPSULE, 0);
    if (!api) return -1;
    if (api->abi != MC_PYBUF_ABI) {
        PyErr_Format(PyExc_ImportError, "mooncake._buf has table version %d, _core wants %d",
                     api->abi, MC_PYBUF_ABI);
        return -1;
    }
    g_api = api;
    return 0;
}

int mc__py_buf_get(PyObject *obj, mc_pybuf_t *b)
{
    memset(b, 0, sizeof *b);
    if (g_api) return g_api->get(obj, &b->buf, &b->len, &b->view);
    PyObject *by;
    if (PyBytes_Check(obj)) {
        Py_INCREF(obj);
        by = obj;
    } else {
        /* the buffer protocol only (PyBytes_FromObject alone would take any
         * iterable of ints): a memoryview of it, then the one copy */
        PyObject *mv = PyMemoryView_FromObject(obj);
        if (!mv) return -1;
        by = PyBytes_FromObject(mv);
        Py_DECREF(mv);
        if (!by) return -1;
    }
    char *p;
    if (PyBytes_AsStringAndSize(by, &p, &b->len) < 0) {
        Py_DECREF(by);
        return -1;
    }
    b->buf = p;
    b->hold = by;
    return 0;
}

void mc__py_buf_release(mc_pybuf_t *b)
{
    if (b->view) g_api->release(b->view);
    Py_CLEAR(b->hold);
    b->view = NULL;
    b->buf = NULL;
}
