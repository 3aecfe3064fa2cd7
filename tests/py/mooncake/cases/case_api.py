"""Upstream's API surface beyond the byte paths (issue 17): the error contract of
batch calls, ReplicateConfig, and the methods added for upstream's bindings;
each against the session's master, data checked byte for byte."""
import ctypes

from util import MB, buf, mk_store, uniq, until

from mooncake.store import MooncakeDistributedStore, ReplicateConfig

BAD = -600  # INVALID_PARAMS


def case_batch_len_mismatch():
    # upstream: lists of different lengths answer INVALID_PARAMS per key, no exception
    s = mk_store()
    data = b"mismatch-payload"
    b, p = buf(len(data), data)
    assert s.register_buffer(p, len(data)) == 0
    ks = [uniq(), uniq()]
    assert s.batch_put_from(ks, [p], [len(data), len(data)]) == [BAD, BAD]
    assert s.batch_put_from(ks, [p, p], [len(data)]) == [BAD, BAD]
    assert s.batch_upsert_from(ks, [p], [len(data)] * 2) == [BAD, BAD]
    assert s.batch_put_from([], [p], [1]) == []
    assert s.batch_get_into(ks[:1], [p, p], [1]) == [BAD]
    assert s.batch_put_from_multi_buffers(ks[:1], [[p, p]], [[1]]) == [BAD]
    assert s.batch_put_from_multi_buffers(ks, [[p]], [[1]]) == [BAD, BAD]
    assert s.batch_get_into_multi_buffers(ks, [[p]], [[1]]) == [BAD, BAD]
    assert s.batch_get_into_multi_buffers(ks[:1], [[p]], [[1, 2]]) == [BAD]
    assert s.put_batch(ks[:1], [b"x", b"y"]) == BAD
    assert s.upsert_batch(ks, [b"x"]) == BAD
    # nothing was stored by the refused calls; the same calls, well formed, work
    assert s.batch_is_exist(ks) == [0, 0]
    assert s.batch_put_from(ks, [p, p], [len(data)] * 2) == [0, 0]
    out, q = buf(len(data))
    assert s.batch_get_into(ks[:1], [q], [len(data)]) == [len(data)]
    assert out.raw == data
    # wrong types still raise
    for call in (lambda: s.batch_put_from(ks, "x", [1, 1]), lambda: s.put_batch(ks, 5)):
        try:
            call()
        except TypeError:
            pass
        else:
            raise AssertionError("no TypeError")
    assert s.unregister_buffer(p) == 0
    s.remove_all(force=True)
    s.close()


def case_replicate_config_fields():
    import mooncake.store as ms
    from mooncake.store import ObjectDataType, SoftPinAction
    c = ReplicateConfig()
    assert (c.replica_num, c.nof_replica_num, c.dfs_replica_num) == (1, 0, 0)
    assert c.soft_pin_action is SoftPinAction.PRESERVE and c.soft_pin_ttl_ms is None
    assert c.with_soft_pin is False and c.with_hard_pin is False
    assert (c.preferred_segment, c.preferred_segments, c.group_ids) == ("", [], None)
    assert c.data_type is ObjectDataType.UNKNOWN and c.prefer_alloc_in_same_node is False
    c.soft_pin_action = SoftPinAction.ENABLE
    assert c.with_soft_pin is True
    c.with_soft_pin = False
    assert c.soft_pin_action is SoftPinAction.PRESERVE
    c.soft_pin_ttl_ms = 1000
    assert c.soft_pin_ttl_ms == 1000
    c.soft_pin_ttl_ms = None
    assert c.soft_pin_ttl_ms is None
    c.group_ids = ("g-a", "")
    assert c.group_ids == ["g-a", ""]
    c.group_ids = None
    assert c.group_ids is None
    for attr, bad in (("soft_pin_ttl_ms", -1), ("soft_pin_ttl_ms", 1 << 64), ("soft_pin_ttl_ms", "1"),
                      ("soft_pin_action", 7), ("soft_pin_action", "ENABLE"),
                      ("group_ids", "g"), ("group_ids", [1]), ("replica_num", -1),
                      ("nof_replica_num", "1"), ("preferred_segments", "seg"),
                      ("preferred_segment", None), ("data_type", 99)):
        try:
            setattr(c, attr, bad)
        except TypeError:
            pass
        else:
            raise AssertionError("%s accepted %r" % (attr, bad))
    c.replica_num, c.dfs_replica_num = 3, 2
    c.soft_pin_action, c.soft_pin_ttl_ms = SoftPinAction.ENABLE, 250
    c.preferred_segments, c.preferred_segment = ["a:1", "b:2"], "c:3"
    c.group_ids = ["grp"]
    t = str(c)
    for part in ("replica_num: 3", "dfs_replica_num: 2", "soft_pin_action: ENABLE",
                 "soft_pin_ttl_ms: 250", "preferred_segments: [a:1, b:2]",
                 "preferred_segment (deprecated): c:3", "data_type: UNKNOWN", "group_ids: [grp]"):
        assert part in t, (part, t)
    assert "soft_pin_ttl_ms: default" in str(ReplicateConfig())
    # the enums and their values at module level, as upstream's bindings export them
    assert ms.COMPLETE == ms.ReplicaStatus.COMPLETE == 3 and ms.UNDEFINED == 0
    assert ms.KVCACHE == ms.ObjectDataType.KVCACHE == 1 and ms.REPLICA_MOVE == ms.TaskType.REPLICA_MOVE
    assert ms.PENDING == ms.TaskStatus.PENDING and ms.SUCCESS == ms.TaskStatus.SUCCESS == 3
    assert ms.PROCESSING is ms.TaskStatus.PROCESSING  # upstream: the later enum's value wins
    assert all(n in ms.__all__ for n in ("SoftPinAction", "ObjectDataType", "ReplicaStatus",
                                         "TaskType", "TaskStatus"))


def case_replicate_config_wired():
    from mooncake.store import SoftPinAction
    s = mk_store()
    k = uniq("pin")
    data = bytes(range(256)) * 8
    on = ReplicateConfig()
    on.soft_pin_action, on.soft_pin_ttl_ms = SoftPinAction.ENABLE, 1000
    assert s.put(k, data, on) == 0
    assert s.get(k) == data
    # a TTL without ENABLE: the master refuses it (upstream's -600)
    for act in (SoftPinAction.PRESERVE, SoftPinAction.DISABLE):
        bad = ReplicateConfig()
        bad.soft_pin_action, bad.soft_pin_ttl_ms = act, 1000
        assert s.upsert(k, data, bad) == BAD
        assert s.put(uniq(), data, bad) == BAD
    off = ReplicateConfig()
    off.soft_pin_action = SoftPinAction.DISABLE
    # the get above holds a read lease: the upsert waits it out (busy meanwhile)
    rcs = []
    assert until(lambda: rcs.append(s.upsert(k, data[::-1], off)) or rcs[-1] == 0), rcs
    assert set(rcs) <= {0, -706, -714}, rcs
    assert s.get(k) == data[::-1]
    # NVMe-oF / DFS replicas: accepted in the config, NOT_SUPPORTED when used
    b, p = buf(len(data), data)
    assert s.register_buffer(p, len(data)) == 0
    for field in ("nof_replica_num", "dfs_replica_num"):
        c = ReplicateConfig()
        setattr(c, field, 1)
        k2 = uniq(field)
        assert s.put(k2, data, c) == -1012
        assert s.put_parts(k2, data[:10], data[10:], config=c) == -1012
        assert s.put_batch([k2], [data], c) == -1012
        assert s.put_from(k2, p, len(data), c) == -1012
        assert s.upsert_from(k2, p, len(data), c) == -1012
        assert s.batch_put_from([k2, k2 + "x"], [p, p], [len(data)] * 2, c) == [-1012, -1012]
        assert s.batch_put_from_multi_buffers([k2], [[p]], [[len(data)]], c) == [-1012]
        assert s.is_exist(k2) == 0
    # group_ids and preferred_segments reach a real put
    c = ReplicateConfig()
    c.group_ids = ["g1"]
    c.preferred_segments = [s.get_hostname()]
    k3 = uniq("grp")
    assert s.put(k3, data, c) == 0 and s.get(k3) == data
    d = s.get_replica_desc(k3)
    assert d and d[0].get_memory_descriptor().buffer_descriptor.transport_endpoint == s.get_hostname()
    assert s.unregister_buffer(p) == 0
    s.remove_all(force=True)
    s.close()
