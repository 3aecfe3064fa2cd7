"""Upstream's API surface beyond the byte paths (issue 17): the error contract of
batch calls, ReplicateConfig, and the methods added for upstream's bindings;
each against the session's master, data checked byte for byte."""

import ctypes

from util import MB, buf, mk_store, uniq, until

from mooncake.store import MooncakeDistributedStore, ReplicateConfig

BAD = -600  # INVALID_PARAMS


def case_setup_tenant_id():
    # vLLM's newest connector passes tenant_id=; a str is accepted, another type refused
    s = MooncakeDistributedStore()
    from util import META, RPC
    assert s.setup("127.0.0.1", META, 16 * MB, 16 * MB, "tcp", "", RPC, tenant_id="t-a") == 0
    k = uniq("tenant")
    assert s.put(k, b"tenant-bytes") == 0 and s.get(k) == b"tenant-bytes"
    s.remove_all(force=True)
    s.close()
    try:
        MooncakeDistributedStore().setup("127.0.0.1", META, 16 * MB, 16 * MB, "tcp", "", RPC,
                                         tenant_id=5)
    except TypeError as e:
        assert "tenant_id" in str(e)
    else:
        raise AssertionError("tenant_id=5 accepted")


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


def pattern(n, seed):
    return bytes((i * 31 + seed * 17 + (i >> 8)) & 0xFF for i in range(n))


def case_batch_replica_clear():
    a, b = mk_store(seg=8 * MB), mk_store(seg=8 * MB)
    data = pattern(20000, 1)
    ks = [uniq("clr") for _ in range(3)]
    for k in ks:
        assert a.put(k, data) == 0
    assert a.batch_replica_clear([]) == []
    assert a.batch_replica_clear([uniq("missing"), uniq("missing")]) == []
    # a read lease holds the key: not cleared, still readable byte for byte
    assert a.get(ks[0]) == data
    assert a.batch_replica_clear([ks[0]]) == []
    assert a.get(ks[0]) == data
    # once the lease is over (the master's 500 ms) it goes
    assert until(lambda: a.batch_replica_clear([ks[0]]) == [ks[0]], timeout=10)
    assert a.get(ks[0]) == b"" and a.is_exist(ks[0]) == 0
    # only the writer may clear; the others keep their keys, in order
    assert b.batch_replica_clear(ks[1:]) == []
    assert a.batch_replica_clear([ks[2], uniq("missing"), ks[1]]) == [ks[2], ks[1]]
    assert a.batch_is_exist(ks) == [0, 0, 0]
    # one segment's replica of a two-replica key: the other stays readable
    cfg = ReplicateConfig()
    cfg.replica_num = 2
    k = uniq("two")
    assert a.put(k, data, cfg) == 0
    eps = sorted(d.get_memory_descriptor().buffer_descriptor.transport_endpoint
                 for d in a.get_replica_desc(k))
    assert eps == sorted([a.get_hostname(), b.get_hostname()]), eps
    assert until(lambda: a.batch_replica_clear([k], segment_name="nowhere:1") == [] and
                 a.batch_replica_clear([k], segment_name=a.get_hostname()) == [k], timeout=10)
    d = a.get_replica_desc(k)
    assert [x.get_memory_descriptor().buffer_descriptor.transport_endpoint for x in d] == \
        [b.get_hostname()]
    assert a.get(k) == data and b.get(k) == data
    # its last replica: the object goes
    assert until(lambda: a.batch_replica_clear([k], b.get_hostname()) == [k], timeout=10)
    assert a.is_exist(k) == 0
    # a cleared segment's space is free again: a store full of cleared keys takes more
    big = pattern(MB, 2)
    many = [uniq("fill") for _ in range(12)]
    cfg1 = ReplicateConfig()
    cfg1.preferred_segment = a.get_hostname()
    for x in many:
        assert a.put(x, big, cfg1) == 0
    assert until(lambda: a.batch_replica_clear(many) == many, timeout=10)
    for x in many:
        assert a.put(x, big, cfg1) == 0
    assert a.get(many[-1]) == big
    a.remove_all(force=True)
    a.close()
    b.close()


def case_get_into_ranges():
    s = mk_store()
    ka, kb = uniq("ra"), uniq("rb")
    da, db = pattern(70000, 3), pattern(5000, 4)
    assert s.put(ka, da) == 0 and s.put(kb, db) == 0
    b0, p0 = buf(4096)
    b1, p1 = buf(4096)
    res = s.get_into_ranges(
        [p0, p1],
        [[ka, kb], [kb]],
        [[[0, 100], [200]], [[10, 3000]]],
        [[[65000, 0], [4000]], [[0, 4990]]],
        [[[100, 50], [1000]], [[64, 10]]])
    assert res == [[[100, 50], [1000]], [[64, 10]]], res
    assert b0.raw[0:100] == da[65000:65100] and b0.raw[100:150] == da[0:50]
    assert b0.raw[200:1200] == db[4000:5000]
    assert b1.raw[10:74] == db[0:64] and b1.raw[3000:3010] == db[4990:5000]
    # a range past the object's end, a missing key, mismatched lists
    miss = uniq("miss")
    res = s.get_into_ranges([p0], [[kb, miss]], [[[0, 0], [0]]], [[[4999, 0], [0]]],
                            [[[2, 1], [1]]])
    assert res == [[[BAD, 1], [-704]]], res
    # a range past the end of the registered buffer it starts in: refused, nothing written
    # (ASan reports the overflow of the 64-byte buffer if it were written)
    small, ps = buf(64)
    assert s.register_buffer(ps, 64) == 0
    assert s.get_into_ranges([ps], [[ka]], [[[62, 0]]], [[[0, 0]]], [[[4, 64]]]) == [[[BAD, 64]]]
    assert small.raw == da[:64]
    assert s.get_into_ranges([ps + 8], [[ka]], [[[54]]], [[[0]]], [[[4]]]) == [[[BAD]]]
    assert s.unregister_buffer(ps) == 0
    # a replica in another store's segment, read by the engine straight into the
    # destination (large ranges: the engine's workers, not the inline path)
    peer = mk_store(seg=16 * MB)
    cfg = ReplicateConfig()
    cfg.preferred_segment = peer.get_hostname()
    kr = uniq("remote")
    dr = pattern(3 * MB, 13)
    assert s.put(kr, dr, cfg) == 0
    eps = [d.get_memory_descriptor().buffer_descriptor.transport_endpoint
           for d in s.get_replica_desc(kr)]
    assert eps == [peer.get_hostname()], eps
    big, pb = buf(2 * MB)
    res = s.get_into_ranges([pb], [[kr, kr]], [[[0], [MB + 7]]], [[[2 * MB], [5]]],
                            [[[MB], [MB - 7]]])
    assert res == [[[MB], [MB - 7]]], res
    assert big.raw[:MB] == dr[2 * MB:3 * MB] and big.raw[MB + 7:] == dr[5:MB - 2]
    assert s.get_into_ranges([pb], [[kr]], [[[0]]], [[[3 * MB - 1]]], [[[2]]]) == [[[BAD]]]
    peer.close()
    assert s.get_into_ranges([p0, p1], [[ka]], [[[0]]], [[[0]]], [[[1]]]) == [[[BAD]], []]
    assert s.get_into_ranges([p0], [[ka, kb]], [[[0]]], [[[0]]], [[[1]]]) == [[[BAD], []]]
    s.remove_all(force=True)
    s.close()


def case_get_session():
    s = mk_store()
    ka, kb, miss = uniq("ga"), uniq("gb"), uniq("gmiss")
    da, db = pattern(300000, 5), pattern(1234, 6)
    assert s.put(ka, da) == 0 and s.put(kb, db) == 0
    assert s.batch_get_session_start([]) == []
    assert s.batch_get_session_start([ka, kb, miss]) == [0, 0, -704]
    x, px = buf(8192)
    y, py = buf(8192)
    res = s.batch_get_into_multi_buffer_ranges(
        [ka, kb, miss], [[px, py], [px + 5000], [py]], [[4000, 100], [234], [1]],
        [[296000, 7], [1000], [0]])
    assert res == [4100, 234, BAD], res
    assert x.raw[:4000] == da[296000:300000] and y.raw[:100] == da[7:107]
    assert x.raw[5000:5234] == db[1000:1234]
    # past the end, a row of different lengths, lists of different lengths
    assert s.batch_get_into_multi_buffer_ranges([kb], [[px]], [[2]], [[1233]]) == [BAD]
    assert s.batch_get_into_multi_buffer_ranges([kb], [[px, py]], [[1]], [[0, 0]]) == [BAD]
    assert s.batch_get_into_multi_buffer_ranges([ka, kb], [[px]], [[1]], [[0]]) == [BAD, BAD]
    # the session read the objects once: a later upsert is not seen until a new session
    rcs = []
    assert until(lambda: rcs.append(s.upsert(kb, db[::-1])) or rcs[-1] == 0), rcs
    assert s.batch_get_into_multi_buffer_ranges([kb], [[py]], [[10]], [[0]]) == [10]
    assert y.raw[:10] == db[:10]
    assert s.batch_get_session_end([ka, kb, miss]) == 0
    assert s.batch_get_into_multi_buffer_ranges([ka], [[px]], [[1]], [[0]]) == [BAD]
    assert s.batch_get_session_start([kb]) == [0]
    assert s.batch_get_into_multi_buffer_ranges([kb], [[py]], [[10]], [[0]]) == [10]
    assert y.raw[:10] == db[::-1][:10]
    assert s.batch_get_session_end([kb]) == 0
    s.remove_all(force=True)
    s.close()
    # not set up: upstream's INVALID_PARAMS
    t = MooncakeDistributedStore()
    assert t.batch_get_session_start([ka]) == [BAD] and t.batch_get_session_end([ka]) == BAD


def case_put_session():
    s = mk_store()
    kp, kq, kr = uniq("pp"), uniq("pq"), uniq("pr")
    dp, dq = pattern(100000, 7), pattern(777, 8)
    old = uniq("old")
    assert s.put(old, b"x") == 0
    assert s.batch_put_session_start([kp, kq], [len(dp)]) == [BAD, BAD]
    g = ReplicateConfig()
    g.group_ids = ["one"]
    assert s.batch_put_session_start([kp, kq], [len(dp), len(dq)], g) == [BAD, BAD]
    assert s.batch_put_session_start([kp, kq, old], [len(dp), len(dq), 1]) == [0, 0, -705]
    assert s.batch_put_session_start([kp], [len(dp)]) == [-705]  # already in a session
    src, ps = buf(len(dp), dp)
    q, pq = buf(len(dq), dq)
    # the object is written in pieces, out of order, from several buffers
    half = len(dp) // 2
    res = s.batch_put_from_multi_buffer_ranges(
        [kp, kq], [[ps + half, ps], [pq]], [[len(dp) - half, half], [len(dq)]],
        [[half, 0], [0]])
    assert res == [len(dp), len(dq)], res
    assert s.batch_put_from_multi_buffer_ranges([kq], [[pq]], [[2]], [[776]]) == [BAD]
    assert s.batch_put_from_multi_buffer_ranges([kr], [[pq]], [[1]], [[0]]) == [BAD]
    assert s.batch_is_exist([kp, kq]) == [0, 0]  # not readable before the end
    assert s.batch_put_session_end([kp, kq, kr]) == [0, 0, BAD]
    assert s.get(kp) == dp and s.get(kq) == dq
    assert s.batch_put_session_end([kp]) == [BAD]
    # revoke: nothing stored
    assert s.batch_put_session_start([kr], [10]) == [0]
    assert s.batch_put_from_multi_buffer_ranges([kr], [[pq]], [[10]], [[0]]) == [10]
    assert s.batch_put_session_revoke([kr]) == [0]
    assert s.batch_put_session_revoke([kr]) == [BAD]
    assert s.is_exist(kr) == 0
    # a config reaches the final put (NOT_SUPPORTED for DFS replicas)
    c = ReplicateConfig()
    c.dfs_replica_num = 1
    assert s.batch_put_session_start([kr], [3], c) == [0]
    assert s.batch_put_session_end([kr]) == [-1012]
    s.remove_all(force=True)
    s.close()


def case_memory_helpers():
    s = mk_store()
    meta, data = pattern(64, 9), pattern(50000, 10)
    m, pm = buf(len(meta), meta)
    d, pd = buf(len(data), data)
    k = uniq("meta")
    assert s.put_from_with_metadata(k, pd, pm, len(data), len(meta)) == 0
    assert s.get(k) == meta + data
    k2 = uniq("meta0")
    assert s.put_from_with_metadata(k2, pd, pm, 0, len(meta)) == 0 and s.is_exist(k2) == 0
    k3 = uniq("nometa")
    assert s.put_from_with_metadata(k3, pd, 0, len(data), 0) == 0 and s.get(k3) == data
    c = ReplicateConfig()
    c.prefer_alloc_in_same_node = True
    assert s.put_from_with_metadata(uniq(), pd, pm, 1, 1, c) == -1
    assert s.alloc_from_mem_pool(4096) == 0  # not a dummy client: upstream's 0
    r = s.mount_segment("/dev/shm/x", 1 << 20)
    assert r == {"ret": -1012, "segment_ids": []}, r
    r = s.allocate_and_mount_segment(1 << 20)
    assert r == {"ret": -1012, "segment_ids": [], "allocated_size": 0}, r
    assert s.unmount_segment(["a"]) == -1012 and s.unmount_and_free_segment(["a"], 1) == -1012
    assert s.unmount_local_disk_segment() == -1012
    assert s.get_offload_rpc_read_count() == 0
    assert s.init_all("tcp", "") == BAD  # already set up
    t = MooncakeDistributedStore()
    assert t.put_from_with_metadata(k, pd, pm, 1, 1) == -1
    s.remove_all(force=True)
    s.close()


def case_buffer_pool():
    import gc
    import threading

    import mooncake
    from mooncake.buffer_pool import BufferPool, RegisteredBufferPool
    from mooncake.store import BufferPool as StoreBufferPool
    assert mooncake.BufferPool is BufferPool is RegisteredBufferPool is StoreBufferPool
    try:
        BufferPool(MooncakeDistributedStore())
    except RuntimeError as e:
        assert "not initialized" in str(e)
    else:
        raise AssertionError("a pool on a store not set up")
    s = mk_store(lbuf=1 * MB)
    for bad in (12345, 4):
        try:
            BufferPool(s, alignment=bad)
        except RuntimeError as e:
            assert "alignment" in str(e)
        else:
            raise AssertionError("alignment %d accepted" % bad)
    pool = BufferPool(s, min_size_class=4096, alignment=4096)
    # the local region: written through the view, stored zero copy, read back
    data = pattern(300000, 11)
    lease = pool.acquire(len(data))
    assert lease.size == len(data) and lease.ptr % 64 == 0
    v = lease.buffer
    v[:] = data
    k = uniq("bp")
    assert s.put_from(k, lease.ptr, len(data)) == 0
    try:
        lease.release()
    except RuntimeError as e:
        assert "exported views" in str(e)
    else:
        raise AssertionError("released under a live view")
    del v
    gc.collect()
    lease.release()
    # past the local region: overflow leases (registered one by one), still zero copy
    big = pool.acquire(MB)          # the whole local region
    over = pool.acquire(700000)     # an overflow region
    assert over.ptr % 4096 == 0
    assert s.get_into(k, over.ptr, 700000) == len(data)
    assert bytes(over.buffer[:len(data)]) == data
    with pool.acquire(1000) as third:
        assert third.size == 1000 and len(third.buffer) == 1000
    try:
        pool.acquire(3 * MB)
    except RuntimeError as e:
        assert "capacity" in str(e)
    else:
        raise AssertionError("beyond max_bytes")
    # exhausted: non-blocking raises, a timeout raises, a release wakes a waiter
    try:
        pool.acquire(400000, block=False)
    except RuntimeError as e:
        assert "exhausted" in str(e)
    else:
        raise AssertionError("not exhausted")
    try:
        pool.acquire(400000, timeout=0.05)
    except RuntimeError as e:
        assert "timed out" in str(e)
    else:
        raise AssertionError("no timeout")
    got, started = [], threading.Event()

    def waiter():
        started.set()
        got.append(pool.acquire(400000))
    t = threading.Thread(target=waiter)
    t.start()
    started.wait()
    over.release()
    t.join(10)
    assert not t.is_alive() and got[0].size == 400000
    try:
        pool.close()
    except RuntimeError as e:
        assert "active leases" in str(e)
    else:
        raise AssertionError("closed with leases out")
    got[0].release()
    del big  # released by its destructor
    gc.collect()
    pool.close()
    # max_regions and a lease that outlives nothing but its view
    pool2 = BufferPool(s, min_size_class=4096, max_size_class=4096, alignment=4096, max_regions=1)
    view = pool2.buffer(16)
    view[:4] = b"abcd"
    try:
        pool2.acquire(1, block=False)
    except RuntimeError as e:
        assert "exhausted" in str(e)
    else:
        raise AssertionError("max_regions not held")
    del view
    gc.collect()
    pool2.acquire(1).release()
    pool2.close()
    s.remove_all(force=True)
    s.close()


def case_module_functions():
    import os

    import mooncake.store as ms
    before = os.sched_getaffinity(0)
    ms.bind_to_numa_node(10 ** 6)  # no such node: a warning, no change
    assert os.sched_getaffinity(0) == before
    with open("/sys/devices/system/node/node0/cpulist") as f:
        first = int(f.read().split(",")[0].split("-")[0])
    assert ms.bind_to_numa_node(0) is None
    assert first in os.sched_getaffinity(0)
    os.sched_setaffinity(0, before)
    # upstream's hugepage allocator of a build without NVMe-oF: alloc gives NULL
    a, f = ms.get_alloc_func_addr(), ms.get_free_func_addr()
    assert a and f and a != f
    alloc = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_size_t)(a)
    free = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(f)
    assert alloc(4096) is None
    free(None)


def case_bad_pointers_ranges():
    # the Python copy paths (ranges, sessions) probe unregistered memory as the
    # store's copies do: a read-only or PROT_NONE page is -600, never a crash
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    ro = libc.mmap(None, 4096, 1, 0x22, -1, 0)    # PROT_READ, private anonymous
    none = libc.mmap(None, 4096, 0, 0x22, -1, 0)  # PROT_NONE
    assert ro and none and ro != ctypes.c_void_p(-1).value and none != ctypes.c_void_p(-1).value
    s = mk_store()
    k = uniq("bp")
    data = pattern(1000, 12)
    assert s.put(k, data) == 0
    for bad in (ro, none):
        assert s.get_into_ranges([bad], [[k]], [[[0]]], [[[0]]], [[[10]]]) == [[[BAD]]]
    assert s.batch_get_session_start([k]) == [0]
    for bad in (ro, none):
        assert s.batch_get_into_multi_buffer_ranges([k], [[bad]], [[10]], [[0]]) == [BAD]
    good, pg = buf(10)
    assert s.batch_get_into_multi_buffer_ranges([k], [[pg]], [[10]], [[5]]) == [10]
    assert good.raw == data[5:15]
    assert s.batch_get_session_end([k]) == 0
    k2 = uniq("bp2")
    assert s.batch_put_session_start([k2], [10]) == [0]
    assert s.batch_put_from_multi_buffer_ranges([k2], [[none]], [[10]], [[0]]) == [BAD]
    # a read-only source is fine to read from
    assert s.batch_put_from_multi_buffer_ranges([k2], [[ro]], [[10]], [[0]]) == [10]
    assert s.batch_put_session_end([k2]) == [0]
    assert s.get(k2) == bytes(10)
    s.remove_all(force=True)
    s.close()
