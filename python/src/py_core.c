/* py_core.c: the `mooncake._core` extension module (its init, error names
 * and MooncakeHostMemAllocator here; the rest in py_args.c, py_store.c and
 * py_engine.c, shared declarations in py_int.h), written against the
 * CPython limited API (abi3, 3.10+; the buffer protocol through py_buf.h). It exposes two types over the C core:
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
#include "py_int.h"
#include "base_version.h"
#include "net_auth.h"
#include "net_tls.h"

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
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O:alloc", kwl, &so) ||
        mc__py_arg_u64(so, "size", &size))
        return NULL;
    if (size == 0 || size > (1ull << 46)) return PyLong_FromLong(0);
    size_t len = (size_t)((size + 4095) & ~4095ull);
    void *p;
    Py_BEGIN_ALLOW_THREADS p =
        mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
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
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O:free", kwl, &po) ||
        mc__py_arg_u64(po, "ptr", &ptr))
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

PyType_Spec mc__py_alloc_spec = {"mooncake._core.MooncakeHostMemAllocator", sizeof(pyalloc_t), 0,
                                 Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, alloc_slots};

/* ------------------------------------------------------------------ */
/* module                                                              */

static PyObject *mod_err_name(PyObject *m, PyObject *args)
{
    int code;
    if (!PyArg_ParseTuple(args, "i", &code)) return NULL;
    return PyUnicode_FromString(mc_err_name(code));
}

static PyObject *mod_secret_file(PyObject *m, PyObject *args)
{
    const char *path;
    if (!PyArg_ParseTuple(args, "s", &path)) return NULL;
    char err[512];
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = mc_auth_use_secret_file(path, err, sizeof err);
    Py_END_ALLOW_THREADS if (rc) return PyErr_Format(PyExc_ValueError, "%s", err);
    Py_RETURN_NONE;
}

static PyObject *mod_tls_files(PyObject *m, PyObject *args)
{
    const char *cert, *key, *ca;
    if (!PyArg_ParseTuple(args, "sss", &cert, &key, &ca)) return NULL;
    char err[MC_TLS_PATH_MAX + 256];
    int rc;
    Py_BEGIN_ALLOW_THREADS rc = mc_tls_use_files(cert, key, ca, err, sizeof err);
    Py_END_ALLOW_THREADS if (rc) return PyErr_Format(PyExc_ValueError, "%s", err);
    return PyBool_FromLong(mc_tls_files() != NULL);
}

static PyMethodDef mod_methods[] = {
    {"error_name", mod_err_name, METH_VARARGS, "Upstream's name of a store error code."},
    {"set_cluster_secret_file", mod_secret_file, METH_VARARGS,
     "set_cluster_secret_file(path): the cluster secret this process proves on every "
     "connection (over MC_CLUSTER_SECRET); ValueError when the file will not do."},
    {"set_tls_files", mod_tls_files, METH_VARARGS,
     "set_tls_files(cert, key, ca): this process's TLS files for the control plane ('' falls "
     "back to MC_TLS_CERT_FILE / MC_TLS_KEY_FILE / MC_TLS_CA_FILE); True when TLS is on; "
     "ValueError when they do not load."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {
    PyModuleDef_HEAD_INIT,
    "_core",
    "C core of the mooncake package.",
    -1,
    mod_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__core(void)
{
    PyObject *m = PyModule_Create(&moddef);
    if (!m) return NULL;
    if (mc__py_buf_init() < 0) {
        Py_DECREF(m);
        return NULL;
    }
    mc__py_BufferHandle_Type = mc__py_bufh_type_make();
    PyObject *st = PyType_FromSpec(&mc__py_store_spec);
    PyObject *te = PyType_FromSpec(&mc__py_te_spec);
    mc__py_EngineHandle_Type = (PyTypeObject *)PyType_FromSpec(&mc__py_eng_spec);
    PyObject *al = PyType_FromSpec(&mc__py_alloc_spec);
    PyObject *ms = PyType_FromSpec(&mc__py_metasrv_spec);
    mc__py_TE_Type = (PyTypeObject *)te;
    if (!mc__py_BufferHandle_Type || !st || !te || !mc__py_EngineHandle_Type || !al || !ms)
        goto fail;
    Py_INCREF((PyObject *)mc__py_BufferHandle_Type);
    Py_INCREF(te); /* mc__py_TE_Type keeps one */
    Py_INCREF((PyObject *)mc__py_EngineHandle_Type);
    if (PyModule_AddObject(m, "BufferHandle", (PyObject *)mc__py_BufferHandle_Type) < 0 ||
        PyModule_AddObject(m, "EngineHandle", (PyObject *)mc__py_EngineHandle_Type) < 0 ||
        PyModule_AddObject(m, "MooncakeDistributedStore", st) < 0 ||
        PyModule_AddObject(m, "TransferEngine", te) < 0 ||
        PyModule_AddObject(m, "MooncakeHostMemAllocator", al) < 0 ||
        PyModule_AddObject(m, "MetadataServer", ms) < 0 ||
        PyModule_AddStringConstant(m, "VERSION", mc_version()) < 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
