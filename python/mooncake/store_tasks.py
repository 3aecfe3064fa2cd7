"""mooncake.store_tasks: upstream's copy / move tasks of MooncakeDistributedStore
(create_copy_task, create_move_task, query_task) and QueryTaskResponse, mixed
into mooncake.store's class. The master runs them on its move-task machinery
(docs/python.md "Copy and move tasks"): the owner of a source replica writes
the bytes to a range the master allocated on the target; a copy adds that
replica, a move swaps it for the source.

Upstream's conventions: a task id is a UUID, pybind's (first, second) tuple of
two unsigned 64-bit ints; the calls return (UUID, error) — (0, 0) with the
error when no task was made — and query_task (QueryTaskResponse | None, error)."""
from .store_config import TaskStatus, TaskType

_U64 = 1 << 64


def _str(name, v):
    if not isinstance(v, str):
        raise TypeError("%s must be str, not %s" % (name, type(v).__name__))
    return v


def _task_id(v):
    """A UUID argument: a (first, second) pair of ints in [0, 2**64)."""
    try:
        hi, lo = v
    except (TypeError, ValueError):
        raise TypeError("task_id must be a UUID: a (first, second) tuple of two ints") from None
    for x in (hi, lo):
        if isinstance(x, bool) or not isinstance(x, int) or not 0 <= x < _U64:
            raise TypeError("task_id must be a UUID: a (first, second) tuple of two ints")
    return hi, lo


class QueryTaskResponse:
    """The state of a copy or move task (upstream's QueryTaskResponse): its
    id, type (TaskType), status (TaskStatus), created_at_ms_epoch,
    last_updated_at_ms_epoch, assigned_client (the UUID of the client that
    runs it) and message (why it failed; empty otherwise). Read-only."""

    __slots__ = ("_id", "_type", "_status", "_created", "_updated", "_client", "_message")

    def __init__(self):
        self._id, self._type, self._status = (0, 0), TaskType.REPLICA_COPY, TaskStatus.PENDING
        self._created = self._updated = 0
        self._client, self._message = (0, 0), ""

    @classmethod
    def _of(cls, t):
        r = cls()
        tid, typ, st, r._created, r._updated, r._client, r._message = t
        r._id = tuple(tid)
        r._client = tuple(r._client)
        r._type = TaskType(typ) if typ in TaskType._value2member_map_ else typ
        r._status = TaskStatus(st) if st in TaskStatus._value2member_map_ else st
        return r

    id = property(lambda self: self._id)
    type = property(lambda self: self._type)
    status = property(lambda self: self._status)
    created_at_ms_epoch = property(lambda self: self._created)
    last_updated_at_ms_epoch = property(lambda self: self._updated)
    assigned_client = property(lambda self: self._client)
    message = property(lambda self: self._message)

    def __repr__(self):
        return ('QueryTaskResponse(id=%d-%d, type=%d, status=%d, created_at=%d, '
                'last_updated_at=%d, assigned_client=%d-%d, message="%s")' % (
                    self._id[0], self._id[1], int(self._type), int(self._status), self._created,
                    self._updated, self._client[0], self._client[1], self._message))


class StoreTasks:
    """create_copy_task / create_move_task / query_task (upstream's)."""

    def create_copy_task(self, key, targets):
        """Copies key's object to each of targets (segment names; one that
        holds a replica already is skipped); the source stays. (UUID, 0), or
        ((0, 0), error): INVALID_PARAMS (-600: no targets, an unmounted one),
        OBJECT_NOT_FOUND (-704), UNAVAILABLE_IN_CURRENT_STATUS (-1010: a
        target drains), TASK_PENDING_LIMIT_EXCEEDED (-1401)."""
        _str("key", key)
        if isinstance(targets, (str, bytes)) or not hasattr(targets, "__iter__"):
            raise TypeError("targets must be a list of str")
        targets = [_str("targets[%d]" % i, t) for i, t in enumerate(targets)]
        hi, lo, rc = self._copy_task(key, targets)
        return (hi, lo), rc

    def create_move_task(self, key, source, target):
        """Moves key's replica on segment source to segment target. (UUID, 0),
        or ((0, 0), error): as create_copy_task's, and INVALID_PARAMS for
        source == target or no replica on source."""
        hi, lo, rc = self._move_task(_str("key", key), _str("source", source),
                                     _str("target", target))
        return (hi, lo), rc

    def query_task(self, task_id):
        """(QueryTaskResponse, 0), or (None, error): TASK_NOT_FOUND (-1400)
        for an unknown task (or one pruned from the master's history)."""
        hi, lo = _task_id(task_id)
        rc, t = self._query_task(hi, lo)
        return (QueryTaskResponse._of(t) if rc == 0 else None), rc


__all__ = ["QueryTaskResponse", "StoreTasks"]
