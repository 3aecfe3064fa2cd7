/* py_store_tasks.c: MooncakeDistributedStore._copy_task / _move_task /
 * _query_task, the C side of upstream's create_copy_task, create_move_task
 * and query_task (mooncake/store_tasks.py makes upstream's return values of
 * them: a UUID as a (hi, lo) tuple, QueryTaskResponse). Each runs its one
 * master round trip with the GIL released and the store's lock held for
 * reading (py_int.h). Argument types are checked by the Python layer;
 * these only parse. */
#include "py_int.h"

static PyObject *uuid_tuple(uint64_t hi, uint64_t lo)
{
    return Py_BuildValue("(KK)", (unsigned long long)hi, (unsigned long long)lo);
}

/* _copy_task(key, targets) -> (hi, lo, rc) */
PyObject *mc__py_store_copy_task(PyObject *o, PyObject *args)
{
    pystore_t *self = (pystore_t *)o;
    const char *key;
    PyObject *ts;
    if (!PyArg_ParseTuple(args, "sO:_copy_task", &key, &ts)) return NULL;
    strv_t t;
    if (mc__py_strv_from(ts, "targets", &t)) return NULL;
    mc_store_task_id_t id = {0, 0};
    int rc;
    RD_BEGIN(self)
    rc = mc_store_create_copy_task(self->s, key, t.v, t.n, &id);
    RD_END(self)
    mc__py_strv_free(&t);
    return Py_BuildValue("(KKi)", (unsigned long long)id.hi, (unsigned long long)id.lo, rc);
}

/* _move_task(key, source, target) -> (hi, lo, rc) */
PyObject *mc__py_store_move_task(PyObject *o, PyObject *args)
{
    pystore_t *self = (pystore_t *)o;
    const char *key, *src, *dst;
    if (!PyArg_ParseTuple(args, "sss:_move_task", &key, &src, &dst)) return NULL;
    mc_store_task_id_t id = {0, 0};
    int rc;
    RD_BEGIN(self)
    rc = mc_store_create_move_task(self->s, key, src, dst, &id);
    RD_END(self)
    return Py_BuildValue("(KKi)", (unsigned long long)id.hi, (unsigned long long)id.lo, rc);
}

/* _query_task(hi, lo) -> (rc, None) or (0, (id, type, status, created,
 * updated, assigned_client, message)) */
PyObject *mc__py_store_query_task(PyObject *o, PyObject *args)
{
    pystore_t *self = (pystore_t *)o;
    unsigned long long hi, lo;
    if (!PyArg_ParseTuple(args, "KK:_query_task", &hi, &lo)) return NULL;
    mc_store_task_info_t ti;
    int rc;
    RD_BEGIN(self)
    rc = mc_store_query_task(self->s, (mc_store_task_id_t){hi, lo}, &ti);
    RD_END(self)
    if (rc) return Py_BuildValue("(iO)", rc, Py_None);
    PyObject *id = uuid_tuple(ti.id.hi, ti.id.lo);
    PyObject *cl = uuid_tuple(ti.assigned_client.hi, ti.assigned_client.lo);
    PyObject *ret = NULL;
    if (id && cl)
        ret = Py_BuildValue("(i(OiiLLOs))", 0, id, ti.type, ti.status,
                            (long long)ti.created_at_ms_epoch,
                            (long long)ti.last_updated_at_ms_epoch, cl, ti.message);
    Py_XDECREF(id);
    Py_XDECREF(cl);
    return ret;
}
