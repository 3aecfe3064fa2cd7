/* py_metasrv.c: mooncake._core.MetadataServer, the C metadata server
 * (src/metasrv) embedded in a Python process. It is what
 * mooncake.http_metadata_server.KVBootstrapServer stands on: requests given
 * in-process (`request`) and over HTTP (after `listen`) reach the same store
 * under the same rules, so there is one implementation of the protocol.
 *
 *   MetadataServer()                 an empty store, not serving
 *   .listen(host, port) -> port      serves it over HTTP (port 0: any free)
 *   .request(method, key, body=b"") -> (status, bytes)
 *                                    one /metadata request; bytes is the value
 *                                    (GET 200) or the message
 *   .get(key) -> bytes | None        the stored value of an exact key
 *   .keys() -> list[str]
 *   .port                            0 until listening
 *   .close()                         stops serving and empties the store
 *
 * Every call releases the GIL while it is in C; MHD's threads never call
 * into Python. */
#include "py_int.h"

#include <ctype.h>
#include <errno.h>

#include "metasrv.h"

typedef struct {
    PyObject_HEAD mc_metasrv_t *s;
    pthread_mutex_t mu; /* guards s against close() during a call */
} pyms_t;

static PyObject *ms_closed(void)
{
    PyErr_SetString(PyExc_RuntimeError, "the metadata server is closed");
    return NULL;
}

static PyObject *pyms_new(PyTypeObject *tp, PyObject *args, PyObject *kw)
{
    if ((args && PyTuple_Size(args)) || (kw && PyDict_Size(kw))) {
        PyErr_SetString(PyExc_TypeError, "MetadataServer() takes no arguments");
        return NULL;
    }
    allocfunc a = (allocfunc)PyType_GetSlot(tp, Py_tp_alloc);
    pyms_t *self = (pyms_t *)a(tp, 0);
    if (!self) return NULL;
    pthread_mutex_init(&self->mu, NULL);
    if (mc_metasrv_new(&self->s) != 0) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

static void pyms_close_c(pyms_t *self)
{
    mc_metasrv_t *s;
    Py_BEGIN_ALLOW_THREADS pthread_mutex_lock(&self->mu);
    s = self->s;
    self->s = NULL;
    pthread_mutex_unlock(&self->mu);
    mc_metasrv_stop(s); /* joins MHD's threads: outside the GIL */
    Py_END_ALLOW_THREADS
}

static void pyms_dealloc(PyObject *o)
{
    pyms_t *self = (pyms_t *)o;
    pyms_close_c(self);
    pthread_mutex_destroy(&self->mu);
    PyTypeObject *tp = Py_TYPE(o);
    freefunc f = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    f(o);
    Py_DECREF((PyObject *)tp);
}

static PyObject *pyms_listen(PyObject *o, PyObject *args, PyObject *kw)
{
    static char *kws[] = {"host", "port", NULL};
    pyms_t *self = (pyms_t *)o;
    const char *host = NULL;
    int port = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "zi", kws, &host, &port)) return NULL;
    if (port < 0 || port > 65535) {
        PyErr_Format(PyExc_ValueError, "port %d is outside 0..65535", port);
        return NULL;
    }
    int rc = 0, closed = 0;
    uint16_t bound = 0;
    Py_BEGIN_ALLOW_THREADS pthread_mutex_lock(&self->mu);
    if (!self->s) {
        closed = 1;
    } else {
        rc = mc_metasrv_listen(self->s, host, (uint16_t)port);
        bound = mc_metasrv_port(self->s);
    }
    pthread_mutex_unlock(&self->mu);
    Py_END_ALLOW_THREADS if (closed) return ms_closed();
    if (rc) {
        errno = -rc;
        PyErr_Format(PyExc_OSError, "cannot serve metadata on %s:%d: %s",
                     host && *host ? host : "0.0.0.0", port, strerror(-rc));
        return NULL;
    }
    return PyLong_FromLong(bound);
}

static PyObject *pyms_request(PyObject *o, PyObject *args, PyObject *kw)
{
    static char *kws[] = {"method", "key", "body", NULL};
    pyms_t *self = (pyms_t *)o;
    const char *method = NULL, *key = NULL, *body = NULL;
    Py_ssize_t keylen = 0, len = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "sz#|y#", kws, &method, &key, &keylen, &body, &len))
        return NULL;
    mc_metasrv_answer_t ans;
    int rc = 0, closed = 0;
    Py_BEGIN_ALLOW_THREADS pthread_mutex_lock(&self->mu);
    if (!self->s)
        closed = 1;
    else
        rc = mc_metasrv_request(self->s, method, key, (size_t)keylen, body, (size_t)len, &ans);
    pthread_mutex_unlock(&self->mu);
    Py_END_ALLOW_THREADS if (closed) return ms_closed();
    if (rc) return PyErr_NoMemory();
    PyObject *b = ans.text ? PyBytes_FromString(ans.text)
                           : PyBytes_FromStringAndSize(ans.value, (Py_ssize_t)ans.len);
    free(ans.value);
    if (!b) return NULL;
    return Py_BuildValue("(iN)", (int)ans.status, b);
}

static PyObject *pyms_get(PyObject *o, PyObject *args)
{
    const char *key = NULL;
    Py_ssize_t keylen = 0;
    if (!PyArg_ParseTuple(args, "s#", &key, &keylen)) return NULL;
    /* An exact key: stored keys are stripped, so one with surrounding
     * whitespace is not there (a request would strip it and find another). */
    if (!keylen || isspace((unsigned char)key[0]) || isspace((unsigned char)key[keylen - 1]))
        Py_RETURN_NONE;
    PyObject *r = PyObject_CallMethod(o, "request", "ss#", "GET", key, keylen);
    if (!r) return NULL;
    long status = PyLong_AsLong(PyTuple_GetItem(r, 0));
    PyObject *v = status == 200 ? PyTuple_GetItem(r, 1) : Py_None;
    Py_INCREF(v);
    Py_DECREF(r);
    return v;
}

static void pyms_key_cb(const char *key, size_t len, void *arg)
{
    PyObject *list = arg;
    PyObject *k = PyUnicode_DecodeUTF8(key, (Py_ssize_t)len, "surrogateescape");
    if (!k || PyList_Append(list, k) < 0) PyErr_Clear();
    Py_XDECREF(k);
}

static PyObject *pyms_keys(PyObject *o, PyObject *unused)
{
    pyms_t *self = (pyms_t *)o;
    PyObject *list = PyList_New(0);
    if (!list) return NULL;
    /* under the GIL: the callback builds Python objects (the store's lock is
     * held only for the walk, and no MHD thread waits on the GIL) */
    pthread_mutex_lock(&self->mu);
    if (self->s) mc_metasrv_keys(self->s, pyms_key_cb, list);
    int closed = !self->s;
    pthread_mutex_unlock(&self->mu);
    if (closed) {
        Py_DECREF(list);
        return ms_closed();
    }
    return list;
}

static PyObject *pyms_port(PyObject *o, void *unused)
{
    pyms_t *self = (pyms_t *)o;
    pthread_mutex_lock(&self->mu);
    long p = self->s ? mc_metasrv_port(self->s) : 0;
    pthread_mutex_unlock(&self->mu);
    return PyLong_FromLong(p);
}

static PyObject *pyms_close(PyObject *o, PyObject *unused)
{
    pyms_close_c((pyms_t *)o);
    Py_RETURN_NONE;
}

static PyMethodDef pyms_methods[] = {
    {"listen", (PyCFunction)(void (*)(void))pyms_listen, METH_VARARGS | METH_KEYWORDS,
     "listen(host, port) -> the bound port; serves the store over HTTP."},
    {"request", (PyCFunction)(void (*)(void))pyms_request, METH_VARARGS | METH_KEYWORDS,
     "request(method, key, body=b'') -> (status, bytes): one /metadata request."},
    {"get", pyms_get, METH_VARARGS, "get(key) -> the stored bytes, or None."},
    {"keys", pyms_keys, METH_NOARGS, "keys() -> the stored keys."},
    {"close", pyms_close, METH_NOARGS, "close(): stops serving and frees the store."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef pyms_getset[] = {
    {"port", pyms_port, NULL, "the HTTP port (0 until listen)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot pyms_slots[] = {
    {Py_tp_new, pyms_new},
    {Py_tp_dealloc, pyms_dealloc},
    {Py_tp_methods, pyms_methods},
    {Py_tp_getset, pyms_getset},
    {Py_tp_doc, "The HTTP metadata server of mooncake-c, embedded (src/metasrv)."},
    {0, NULL},
};

PyType_Spec mc__py_metasrv_spec = {"mooncake._core.MetadataServer", sizeof(pyms_t), 0,
                                   Py_TPFLAGS_DEFAULT, pyms_slots};
