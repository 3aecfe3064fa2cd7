"""mooncake.store_config: upstream's ReplicateConfig and the enums of
mooncake.store (SoftPinAction, ObjectDataType, ReplicaStatus, TaskType,
TaskStatus), re-exported by mooncake.store with their values at module level
as upstream's bindings export them.

ReplicateConfig is plain Python; the extension reads its attributes at each
put (py_store.c cfg_from). What the C core does with each field is in
docs/python.md "ReplicateConfig"."""
import enum


class SoftPinAction(enum.IntEnum):
    """What a put or upsert does to the object's soft pin."""
    PRESERVE = 0
    ENABLE = 1
    DISABLE = 2


class ObjectDataType(enum.IntEnum):
    """Upstream's object classification (accepted; the master does not use it)."""
    UNKNOWN = 0
    KVCACHE = 1
    TENSOR = 2
    WEIGHT = 3
    SAMPLE = 4
    ACTIVATION = 5
    GRADIENT = 6
    OPTIMIZER_STATE = 7
    METADATA = 8
    GENERAL = 9


class ReplicaStatus(enum.IntEnum):
    UNDEFINED = 0
    INITIALIZED = 1
    PROCESSING = 2
    COMPLETE = 3
    REMOVED = 4
    FAILED = 5


class TaskType(enum.IntEnum):
    REPLICA_COPY = 0
    REPLICA_MOVE = 1


class TaskStatus(enum.IntEnum):
    PENDING = 0
    PROCESSING = 1
    FAILED = 2
    SUCCESS = 3


def _str_list(name, v):
    if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
        raise TypeError("%s must be a list of str" % name)
    out = list(v)
    if not all(isinstance(x, str) for x in out):
        raise TypeError("%s must be a list of str" % name)
    return out


def _count(name, v):
    if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v >= 1 << 64:
        raise TypeError("%s must be an int in [0, 2**64)" % name)
    return v


class ReplicateConfig:
    """Placement options of a put (upstream's ReplicateConfig).

    replica_num: memory replicas (>= 1). nof_replica_num / dfs_replica_num:
    upstream's NVMe-oF and DFS replica counts; accepted and kept, a put with
    either above 0 answers NOT_SUPPORTED (-1012) here. soft_pin_action
    (SoftPinAction) with soft_pin_ttl_ms (None: the master's default; a TTL
    needs ENABLE, else the put answers -600). with_soft_pin: the older
    spelling of soft_pin_action == ENABLE. preferred_segments, or the older
    preferred_segment: segment names tried first. data_type, group_ids,
    preferred_nof_segments: accepted, not used by the master."""

    __slots__ = ("_replica_num", "_nof", "_dfs", "_action", "_ttl", "_hard", "_segs", "_seg",
                 "_nof_segs", "_same_node", "_data_type", "_groups")

    def __init__(self):
        self._replica_num, self._nof, self._dfs = 1, 0, 0
        self._action, self._ttl = SoftPinAction.PRESERVE, None
        self._hard, self._same_node = False, False
        self._segs, self._seg, self._nof_segs = [], "", []
        self._data_type, self._groups = ObjectDataType.UNKNOWN, None

    def _prop(attr, check):  # noqa: N805 (a property factory used in the class body)
        def get(self):
            return getattr(self, attr)

        def put(self, v):
            setattr(self, attr, check(v))
        return property(get, put)

    replica_num = _prop("_replica_num", lambda v: _count("replica_num", v))
    nof_replica_num = _prop("_nof", lambda v: _count("nof_replica_num", v))
    dfs_replica_num = _prop("_dfs", lambda v: _count("dfs_replica_num", v))
    with_hard_pin = _prop("_hard", bool)
    prefer_alloc_in_same_node = _prop("_same_node", bool)
    preferred_segments = _prop("_segs", lambda v: _str_list("preferred_segments", v))
    preferred_nof_segments = _prop("_nof_segs", lambda v: _str_list("preferred_nof_segments", v))

    @property
    def preferred_segment(self):
        return self._seg

    @preferred_segment.setter
    def preferred_segment(self, v):
        if not isinstance(v, str):
            raise TypeError("preferred_segment must be a str")
        self._seg = v

    @property
    def soft_pin_action(self):
        return self._action

    @soft_pin_action.setter
    def soft_pin_action(self, v):
        if isinstance(v, bool) or not isinstance(v, int) or v not in SoftPinAction._value2member_map_:
            raise TypeError("soft_pin_action must be a SoftPinAction")
        self._action = SoftPinAction(v)

    @property
    def with_soft_pin(self):
        return self._action == SoftPinAction.ENABLE

    @with_soft_pin.setter
    def with_soft_pin(self, v):
        if v:
            self._action = SoftPinAction.ENABLE
        elif self._action == SoftPinAction.ENABLE:
            self._action = SoftPinAction.PRESERVE

    @property
    def soft_pin_ttl_ms(self):
        return self._ttl

    @soft_pin_ttl_ms.setter
    def soft_pin_ttl_ms(self, v):
        self._ttl = None if v is None else _count("soft_pin_ttl_ms", v)

    @property
    def data_type(self):
        return self._data_type

    @data_type.setter
    def data_type(self, v):
        if isinstance(v, bool) or not isinstance(v, int) or v not in ObjectDataType._value2member_map_:
            raise TypeError("data_type must be an ObjectDataType")
        self._data_type = ObjectDataType(v)

    @property
    def group_ids(self):
        return self._groups

    @group_ids.setter
    def group_ids(self, v):
        self._groups = None if v is None else _str_list("group_ids", v)

    del _prop

    def __str__(self):
        parts = ["replica_num: %d" % self._replica_num, "nof_replica_num: %d" % self._nof,
                 "dfs_replica_num: %d" % self._dfs, "soft_pin_action: %s" % self._action.name,
                 "soft_pin_ttl_ms: %s" % ("default" if self._ttl is None else self._ttl),
                 "with_hard_pin: %d" % self._hard,
                 "preferred_segments: [%s]" % ", ".join(self._segs)]
        if self._seg:
            parts.append("preferred_segment (deprecated): %s" % self._seg)
        parts += ["preferred_nof_segments: [%s]" % ", ".join(self._nof_segs),
                  "prefer_alloc_in_same_node: %d" % self._same_node,
                  "data_type: %s" % self._data_type.name]
        if self._groups is not None:
            parts.append("group_ids: [%s]" % ", ".join(self._groups))
        return "ReplicateConfig: { %s }" % ", ".join(parts)

    __repr__ = __str__


__all__ = ["ReplicateConfig", "SoftPinAction", "ObjectDataType", "ReplicaStatus", "TaskType",
           "TaskStatus"]
