/* py_int.h: what the files of the `mooncake._core` extension share (py_core.c:
 * the module and MooncakeHostMemAllocator; py_args.c: argument helpers and
 * BufferHandle; py_store.c: MooncakeDistributedStore and ReplicateConfig;
 * py_store_ranges.c: its zero-copy ranged reads; py_store_tasks.c: its
 * copy / move tasks; py_store_getbuf.c: its get_buffer / batch_get_buffer;
 * py_engine.c: TransferEngine and EngineHandle; py_metasrv.c: MetadataServer). The module's
 * conventions are in py_core.c's top comment. */
#ifndef MC_PY_INT_H
#define MC_PY_INT_H
/* abi3 for 3.10+: the buffer protocol goes through py_buf.h */
#define Py_LIMITED_API 0x030A0000
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
#include "py_buf.h"

typedef struct {
    PyObject **refs;
    const char **v;
    size_t n;
} strv_t;

typedef struct {
    mc_store_iov_t *flat;
    const mc_store_iov_t **parts;
    size_t *nparts;
} iov2_t;

typedef struct {
    PyObject_HEAD void *ptr;
    Py_ssize_t len;
    mc_store_buffer_t *sb; /* a get buffer (mc_store_get_buffer) holding ptr; NULL: ptr malloc'd */
} bufh_t;

/* MooncakeDistributedStore (py_store.c; py_store_ranges.c reads it too) */
typedef struct {
    PyObject_HEAD mc_store_t *s;
    pthread_rwlock_t lk;
    PyObject *engine;     /* the TransferEngine (or its handle) setup was given; NULL: own engine */
    mc_store_srv_t *http; /* enable_client_http_server: /metrics, /health on client_http_port */
} pystore_t;

/* A call into the C core on an object with a rwlock `lk`: the GIL released,
 * the lock held for reading (RD) or writing (WR: setup, initialize, close). */
#define RD_BEGIN(self)                                                                             \
    Py_BEGIN_ALLOW_THREADS pthread_rwlock_rdlock(&(self)->lk);
#define RD_END(self)                                                                               \
    pthread_rwlock_unlock(&(self)->lk);                                                            \
    Py_END_ALLOW_THREADS
#define WR_BEGIN(self)                                                                             \
    Py_BEGIN_ALLOW_THREADS pthread_rwlock_wrlock(&(self)->lk);

/* BufferHandle's type (py_args.c; after mc__py_buf_init) */
PyTypeObject *mc__py_bufh_type_make(void);
/* the types, made from their specs at module init (py_core.c) */
extern PyTypeObject *mc__py_BufferHandle_Type, *mc__py_TE_Type, *mc__py_EngineHandle_Type;
extern PyType_Spec mc__py_store_spec, mc__py_te_spec, mc__py_eng_spec,
    mc__py_alloc_spec, mc__py_metasrv_spec;

/* py_args.c: argument helpers (TypeError/ValueError naming the argument) */
int mc__py_arg_u64(PyObject *o, const char *name, uint64_t *out);
int mc__py_arg_str(PyObject *o, const char *name, const char **out);
Py_ssize_t mc__py_arg_seq(PyObject *o, const char *name);
void mc__py_strv_free(strv_t *s);
int mc__py_strv_from(PyObject *seq, const char *name, strv_t *s);
int mc__py_u64v_from(PyObject *seq, const char *name, uint64_t **out, size_t *n_out);
int mc__py_check_len(size_t a, size_t b, const char *an, const char *bn);
int mc__py_ptr_ok(uint64_t p, uint64_t len);
int mc__py_ptr_ok_te(mc_te_t *te, uint64_t p, uint64_t len);
int mc__py_ptrs_ok(mc_te_t *te, const uint64_t *p, const uint64_t *len, size_t n);
void mc__py_iov2_free(iov2_t *v);
/* 0; -1 with an exception; 1 (no exception) when the lists' lengths differ
 * (outer from n, or a row's pointers from its sizes): upstream's callers then
 * answer INVALID_PARAMS for every key. */
int mc__py_iov2_from(PyObject *ptrs, PyObject *sizes, size_t n, iov2_t *v);
int mc__py_iov2_ok(mc_te_t *te, const iov2_t *v, size_t n);
PyObject *mc__py_int_list(const int64_t *v, size_t n);
PyObject *mc__py_int_list32(const int *v, size_t n);
PyObject *mc__py_bufh_new(void *ptr, size_t len);
/* A BufferHandle over a get buffer (released with the handle); takes it over. */
PyObject *mc__py_bufh_from_sb(mc_store_buffer_t *b);
/* py_store_getbuf.c: get_buffer / batch_get_buffer (get buffers, store.h) */
PyObject *mc__py_store_get_buffer(PyObject *o, PyObject *args);
PyObject *mc__py_store_batch_get_buffer(PyObject *o, PyObject *args);
/* py_store_ranges.c: MooncakeDistributedStore._read_ranges */
PyObject *mc__py_store_read_ranges(PyObject *o, PyObject *args);
/* py_store_tasks.c: MooncakeDistributedStore._copy_task / _move_task / _query_task */
PyObject *mc__py_store_copy_task(PyObject *o, PyObject *args);
PyObject *mc__py_store_move_task(PyObject *o, PyObject *args);
PyObject *mc__py_store_query_task(PyObject *o, PyObject *args);
/* py_engine.c: the engine of a TransferEngine or EngineHandle argument */
int mc__py_engine_arg(PyObject *o, mc_te_t **te);
#endif
