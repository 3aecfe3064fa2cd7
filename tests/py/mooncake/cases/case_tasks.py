"""Upstream's copy / move tasks (create_copy_task, create_move_task,
query_task) against a real mooncake_master and three stores in this process,
each contributing its own segment: the bytes are checked on the new replica
alone (the others cleared first), and the error cases give upstream's codes."""
from mooncake.store import (MooncakeDistributedStore, QueryTaskResponse, ReplicateConfig,
                            TaskStatus, TaskType)

from util import MB, mk_store, uniq, until


def pattern(n, seed):
    return bytes((i * 131 + seed * 7 + (i >> 9)) & 0xFF for i in range(n))


def stores(n=3, seg=8 * MB):
    return [mk_store(seg=seg) for _ in range(n)]


def put_on(s, key, data):
    cfg = ReplicateConfig()
    cfg.preferred_segment = s.get_hostname()
    assert s.put(key, data, cfg) == 0
    assert eps(s, key) == [s.get_hostname()]


def eps(s, key):
    return sorted(d.get_memory_descriptor().buffer_descriptor.transport_endpoint
                  for d in s.get_replica_desc(key))


def finished(s, tid, timeout=20):
    """Polls query_task until the task is SUCCESS or FAILED; returns the response."""
    def done():
        r, rc = s.query_task(tid)
        assert rc == 0, rc
        return r if r.status in (TaskStatus.SUCCESS, TaskStatus.FAILED) else None
    r = until(done, timeout=timeout, step=0.05)
    assert r is not None, s.query_task(tid)
    return r


def only_on(writer, reader, key, seg, data):
    """Clears every replica of key but the one on seg, then reads it back
    through reader: the bytes of that replica alone."""
    for other in set(eps(writer, key)) - {seg}:
        assert until(lambda: writer.batch_replica_clear([key], other) == [key], timeout=10)
    assert eps(reader, key) == [seg]
    assert reader.get(key) == data


def case_copy_task():
    a, b, c = stores()
    k, data = uniq("cp"), pattern(3 * MB + 17, 1)
    put_on(a, k, data)
    tid, rc = b.create_copy_task(k, [b.get_hostname(), c.get_hostname()])
    assert rc == 0, rc
    assert isinstance(tid, tuple) and len(tid) == 2 and all(isinstance(x, int) for x in tid)
    assert tid != (0, 0)
    r = finished(b, tid)
    assert isinstance(r, QueryTaskResponse)
    assert r.status == TaskStatus.SUCCESS, r
    assert r.id == tid and r.type == TaskType.REPLICA_COPY and r.message == ""
    assert r.created_at_ms_epoch > 1600000000000
    assert r.last_updated_at_ms_epoch >= r.created_at_ms_epoch
    assert isinstance(r.assigned_client, tuple) and r.assigned_client != (0, 0)
    assert repr(r).startswith("QueryTaskResponse(id=%d-%d, type=0, status=3," % tid), repr(r)
    # the source stays: three replicas now
    assert eps(a, k) == sorted([a.get_hostname(), b.get_hostname(), c.get_hostname()])
    assert a.get(k) == data
    # a copy to a segment that holds it already: SUCCESS, nothing added
    tid2, rc = a.create_copy_task(k, [c.get_hostname()])
    assert rc == 0 and tid2 != tid
    assert finished(a, tid2).status == TaskStatus.SUCCESS
    assert len(eps(a, k)) == 3
    # c's replica alone holds the same bytes
    only_on(a, b, k, c.get_hostname(), data)
    for s in (a, b, c):
        s.close()


def case_move_task():
    a, b, c = stores()
    k, data = uniq("mv"), pattern(2 * MB + 5, 2)
    put_on(a, k, data)
    tid, rc = c.create_move_task(k, a.get_hostname(), b.get_hostname())
    assert rc == 0, rc
    r = finished(c, tid)
    assert r.status == TaskStatus.SUCCESS and r.type == TaskType.REPLICA_MOVE, r
    assert eps(c, k) == [b.get_hostname()]
    assert c.get(k) == data and a.get(k) == data
    # the source range is free again: a fills its own segment with 1 MiB objects
    # only if the moved object's range went back (8 MiB segment)
    many = [uniq("fill") for _ in range(7)]
    for x in many:
        put_on(a, x, pattern(MB, 3))
    # a move onto a segment that holds a replica already drops the source one
    tid, rc = a.create_copy_task(k, [c.get_hostname()])
    assert rc == 0 and finished(a, tid).status == TaskStatus.SUCCESS
    assert eps(a, k) == sorted([b.get_hostname(), c.get_hostname()])
    tid, rc = a.create_move_task(k, b.get_hostname(), c.get_hostname())
    assert rc == 0 and finished(a, tid).status == TaskStatus.SUCCESS
    assert until(lambda: eps(a, k) == [c.get_hostname()], timeout=5)
    assert b.get(k) == data
    a.remove_all(force=True)
    for s in (a, b, c):
        s.close()


def case_task_errors():
    a, b = stores(2)
    k, data = uniq("err"), pattern(100000, 4)
    put_on(a, k, data)
    ha, hb = a.get_hostname(), b.get_hostname()
    missing = uniq("missing")
    assert a.create_copy_task(k, []) == ((0, 0), -600)
    assert a.create_copy_task(missing, [hb]) == ((0, 0), -704)
    assert a.create_copy_task(k, ["127.0.0.1:1"]) == ((0, 0), -600)
    assert a.create_move_task(missing, ha, hb) == ((0, 0), -704)
    assert a.create_move_task(k, ha, ha) == ((0, 0), -600)
    assert a.create_move_task(k, ha, "127.0.0.1:1") == ((0, 0), -600)
    assert a.create_move_task(k, hb, ha) == ((0, 0), -600)  # no replica on hb
    assert a.query_task((1, 2)) == (None, -1400)
    assert a.query_task([1, 2]) == (None, -1400)
    # keywords as upstream's py::arg names
    tid, rc = a.create_copy_task(key=k, targets=[hb])
    assert rc == 0 and finished(a, tid).status == TaskStatus.SUCCESS
    tid, rc = a.create_move_task(key=k, source=hb, target=ha)
    assert rc == 0 and a.query_task(task_id=tid)[1] == 0
    assert finished(a, tid).status == TaskStatus.SUCCESS
    # types: TypeError, as pybind's conversions
    for bad in (lambda: a.create_copy_task(k, hb), lambda: a.create_copy_task(1, [hb]),
                lambda: a.create_copy_task(k, [1]), lambda: a.create_move_task(k, ha, None),
                lambda: a.query_task("x"), lambda: a.query_task((1, -1)),
                lambda: a.query_task((1, 2, 3))):
        try:
            bad()
        except TypeError:
            pass
        else:
            raise AssertionError("no TypeError")
    # a store not set up
    assert MooncakeDistributedStore().create_copy_task(k, [hb]) == ((0, 0), -600)
    assert MooncakeDistributedStore().query_task((1, 2)) == (None, -600)
    q = QueryTaskResponse()
    assert q.status == TaskStatus.PENDING and q.id == (0, 0) and q.message == ""
    try:
        q.status = TaskStatus.SUCCESS
    except AttributeError:
        pass
    else:
        raise AssertionError("QueryTaskResponse is read-only")
    a.close()
    b.close()


def case_task_failed():
    """No room on the target: the task is made and FAILED with the reason; the
    object stays whole on its source."""
    a = mk_store(seg=16 * MB)
    small = mk_store(seg=2 * MB)
    k, data = uniq("big"), pattern(4 * MB, 5)
    put_on(a, k, data)
    tid, rc = a.create_copy_task(k, [small.get_hostname()])
    assert rc == 0
    r = finished(a, tid)
    assert r.status == TaskStatus.FAILED and "NO_AVAILABLE_HANDLE" in r.message, r
    tid, rc = a.create_move_task(k, a.get_hostname(), small.get_hostname())
    assert rc == 0 and finished(a, tid).status == TaskStatus.FAILED
    assert eps(a, k) == [a.get_hostname()] and small.get(k) == data
    a.close()
    small.close()
