/* py_buf.h: the buffer protocol for `mooncake._core`, which is built against
 * the CPython limited API of 3.10 (abi3, cp310). Py_buffer, PyObject_GetBuffer
 * and the bf_getbuffer type slot joined the limited API only in 3.11, so
 * _core never names them. Instead:
 *
 *   - on Python >= 3.11 _core imports `mooncake._buf` (py_bufapi.c, a second
 *     module built against the 3.11 limited API, never imported on 3.10) and
 *     uses the table below from its capsule: zero copy for every
 *     buffer-protocol object, and BufferHandle exports its bytes (memoryview);
 *   - on Python 3.10 bytes are read in place (PyBytes_AsStringAndSize: they
 *     are immutable), any other buffer-protocol object is copied once into a
 *     bytes object (PyBytes_FromObject, which takes the buffer itself); a
 *     BufferHandle has no buffer protocol there (memoryview(h) -> TypeError;
 *     h.ptr(), h.size() and h.tobytes() work on every version).
 *
 * The ABI of the table is this header's: MC_PYBUF_ABI changes when it does. */
#ifndef MC_PY_BUF_H
#define MC_PY_BUF_H

#define MC_PYBUF_ABI 1
#define MC_PYBUF_CAPSULE "mooncake._buf._API"

typedef struct {
    int abi; /* MC_PYBUF_ABI */
    /* The object's bytes, held until release(*view): 0, or -1 with an
     * exception set (the object has no buffer protocol). */
    int (*get)(PyObject *obj, const void **ptr, Py_ssize_t *len, void **view);
    void (*release)(void *view);
    /* The bf_getbuffer slot function for a type whose bytes `info` tells
     * (set by _core before the type is made). */
    void *getbuffer_slot;
    int (*info)(PyObject *o, void **ptr, Py_ssize_t *len);
} mc_pybuf_api_t;

/* One borrowed byte range of a Python object. */
typedef struct {
    const void *buf;
    Py_ssize_t len;
    void *view;     /* the helper's view (>= 3.11), or NULL */
    PyObject *hold; /* a reference kept until release (bytes: the object or its copy) */
} mc_pybuf_t;

/* Module init: imports mooncake._buf on >= 3.11. 0, or -1 with an exception. */
int mc__py_buf_init(void);
/* 1 when the buffer protocol is exported (BufferHandle supports memoryview). */
int mc__py_buf_exports(void);
/* The object's bytes (read only): 0, or -1 with an exception (not bytes-like). */
int mc__py_buf_get(PyObject *obj, mc_pybuf_t *b);
void mc__py_buf_release(mc_pybuf_t *b);
/* The helper's table, or NULL on 3.10. */
mc_pybuf_api_t *mc__py_buf_api(void);
#endif
