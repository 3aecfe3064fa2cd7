"""MooncakeDistributedStore, call by call, against the session's master."""
import ctypes
import os
import re
import threading

from util import MB, META, RPC, buf, mk_store, uniq, until

from mooncake.store import MooncakeDistributedStore, ReplicateConfig


def case_put_get_quirks():
    s = mk_store()
    k = uniq()
    assert s.put(k, b"first") == 0
    assert s.get(k) == b"first"
    # put of an existing key: success, old value kept
    assert s.put(k, b"second-value") == 0
    assert s.get(k) == b"first"
    # misses
    assert s.get(uniq("miss")) == b""
    assert s.is_exist(k) == 1
    assert s.is_exist(uniq("miss")) == 0
    assert s.get_size(k) == 5
    assert s.get_size(uniq("miss")) == -704
    # upsert overwrites
    # the gets above hold a read lease: upsert waits it out (busy meanwhile)
    rcs = []
    assert until(lambda: rcs.append(s.upsert(k, b"third")) or rcs[-1] == 0), rcs
    assert set(rcs) <= {0, -706, -714}, rcs
    assert s.get(k) == b"third"
    # keywords accepted where upstream binds them
    assert s.put(key=uniq(), value=b"x", config=ReplicateConfig()) == 0
    assert s.close() == 0
    assert s.close() == 0


def case_remove_lease():
    s = mk_store()
    k = uniq()
    assert s.put(k, b"v") == 0
    assert s.remove(k) == 0  # right after put: no lease
    assert s.put(k, b"v") == 0
    assert s.is_exist(k) == 1  # grants a 500 ms lease
    assert s.remove(k) == -706
    assert until(lambda: s.remove(k) == 0, timeout=5)
    assert s.remove(k) == -704
    assert s.is_exist(k) == 0
    # force removes through a lease
    assert s.put(k, b"v") == 0 and s.get(k) == b"v"
    assert s.remove(k, force=True) == 0
    s.close()


def case_remove_all_regex_batch_remove():
    s = mk_store()
    p = uniq("rx")
    for i in range(5):
        assert s.put("%s-%d" % (p, i), b"v%d" % i) == 0
    assert s.remove_by_regex("^" + re.escape(p) + "-[0-2]$", force=True) == 3
    assert s.batch_is_exist(["%s-%d" % (p, i) for i in range(5)]) == [0, 0, 0, 1, 1]
    assert s.batch_remove(["%s-3" % p, "%s-9" % p], force=True) == [0, -704]
    n = s.remove_all(force=True)
    assert n >= 1
    assert s.is_exist("%s-4" % p) == 0
    assert s.remove_all(True) == 0
    s.close()


def case_batch_is_exist_and_get_batch():
    s = mk_store()
    ks = [uniq() for _ in range(4)]
    assert s.put_batch(ks[:2], [b"a" * 10, b"b" * 20]) == 0
    assert s.batch_is_exist(ks) == [1, 1, 0, 0]
    assert s.batch_is_exist([]) == []
    assert s.get_batch(ks[:3]) == [b"a" * 10, b"b" * 20, b""]
    assert s.get_batch([]) == [b""]
    s.close()


def case_put_parts_and_buffers():
    s = mk_store()
    k = uniq()
    assert s.put_parts(k, b"ab", bytearray(b"cd"), memoryview(b"efg")) == 0
    assert s.get(k) == b"abcdefg"
    k2 = uniq()
    assert s.upsert_parts(k2, b"x", b"y", config=ReplicateConfig()) == 0
    assert s.get(k2) == b"xy"
    h = s.get_buffer(k)
    assert h is not None and len(h) == 7 and h.size() == 7 and h.ptr() != 0
    assert bytes(memoryview(h)) == b"abcdefg" and h.tobytes() == b"abcdefg"
    # the buffer protocol only: an iterable of ints is not bytes-like (docs/python.md "The wheel")
    for bad in ([1, 2], (3,), "str", 5):
        try:
            s.put(uniq("bad"), bad)
            raise AssertionError("put accepted %r" % (bad,))
        except TypeError:
            pass
    import mooncake._buf  # noqa: F401  (loaded by _core on Python >= 3.11)
    hs = s.batch_get_buffer([k, uniq("miss")])
    assert bytes(memoryview(hs[0])) == b"abcdefg" and hs[1] is None
    assert s.get_buffer(uniq("miss")) is None
    s.close()


def case_put_from_get_into():
    s = mk_store()
    data = os.urandom(256 * 1024)
    src, sp = buf(len(data), data)
    assert s.register_buffer(sp, len(data)) == 0
    k = uniq()
    assert s.put_from(k, sp, len(data)) == 0
    dst, dp = buf(len(data))
    assert s.get_into(k, dp, len(data)) == len(data)
    assert dst.raw[: len(data)] == data
    small, smp = buf(100)
    assert s.get_into(k, smp, 100) < 0  # too small
    assert s.get_into(uniq("miss"), dp, len(data)) < 0
    assert s.get_into(key=k, buffer_ptr=dp, size=len(data)) == len(data)
    assert s.unregister_buffer(sp) == 0
    # upsert_from overwrites
    other = os.urandom(1000)
    ob, op = buf(len(other), other)
    assert until(lambda: s.upsert_from(k, op, len(other)) == 0)  # after the lease
    assert s.get(k) == other
    s.close()


def case_batch_put_from_get_into():
    s = mk_store()
    n, size = 8, 64 * 1024
    datas = [os.urandom(size) for _ in range(n)]
    bufs = [buf(size, d) for d in datas]
    ks = [uniq() for _ in range(n)]
    assert s.batch_put_from(ks, [p for _, p in bufs], [size] * n) == [0] * n
    outs = [buf(size) for _ in range(n)]
    res = s.batch_get_into(ks + [uniq("miss")], [p for _, p in outs] + [outs[0][1]],
                           [size] * (n + 1))
    assert res[:n] == [size] * n and res[n] < 0
    for (b, _), d in zip(outs, datas):
        assert b.raw == d
    assert until(lambda: s.batch_upsert_from(ks[:1], [bufs[1][1]], [size]) == [0])
    assert s.get(ks[0]) == datas[1]
    s.close()


def case_multi_buffers_vllm_sequence():
    """vLLM MooncakeStoreConnector: register, batch_is_exist, batch_put_from_multi_buffers
    with scatter lists, batch_get_into_multi_buffers, remove_all(force=True), close."""
    s = mk_store(seg=32 * MB)
    layers, blk, nkeys = 4, 4096, 6
    kv = (ctypes.c_char * (layers * nkeys * blk))()
    base = ctypes.addressof(kv)
    ctypes.memmove(kv, os.urandom(len(kv)), len(kv))
    orig = kv.raw
    assert s.register_buffer(base, len(kv)) == 0
    ks = [uniq("blk") for _ in range(nkeys)]
    ptrs = [[base + (l * nkeys + i) * blk for l in range(layers)] for i in range(nkeys)]
    sizes = [[blk] * layers for _ in range(nkeys)]
    assert s.batch_is_exist(ks) == [0] * nkeys
    cfg = ReplicateConfig()
    cfg.preferred_segment = s.get_hostname()
    assert s.batch_put_from_multi_buffers(ks, ptrs, sizes, cfg) == [0] * nkeys
    assert s.batch_is_exist(ks) == [1] * nkeys
    ctypes.memset(kv, 0, len(kv))
    assert s.batch_get_into_multi_buffers(ks, ptrs, sizes) == [layers * blk] * nkeys
    assert kv.raw == orig
    assert s.batch_get_into_multi_buffers(ks[:1], ptrs[:1], sizes[:1], True) == [layers * blk]
    assert s.remove_all(force=True) >= nkeys
    assert s.batch_is_exist(ks) == [0] * nkeys
    assert s.unregister_buffer(base) == 0
    assert s.close() == 0


def case_bad_input():
    s = mk_store()
    for call, exc, word in [
        (lambda: s.put(1, b"x"), TypeError, "key"),
        (lambda: s.put("k", 12), TypeError, "value"),
        (lambda: s.put_from("k", "notint", 1), TypeError, "buffer_ptr"),
        (lambda: s.put_from("k", 1, -1), ValueError, "size"),
        (lambda: s.batch_is_exist("abc"), TypeError, "keys"),
        (lambda: s.get(key="x"), TypeError, "keyword"),
        (lambda: s.is_exist(key="x"), TypeError, "keyword"),
        (lambda: s.put("k", b"x", config=5), TypeError, "config"),
        (lambda: s.setup("h", "m", 1, 1, "tcp", "", "a", nope=1), TypeError, "nope"),
        (lambda: s.setup("h", "m", 1, 1), TypeError, "setup"),
    ]:
        try:
            call()
        except exc as e:
            assert word in str(e), (word, str(e))
        else:
            raise AssertionError("no %s for %s" % (exc.__name__, word))
    cfg = ReplicateConfig()
    for bad in (-1, 1 << 64, "x"):
        try:
            cfg.soft_pin_ttl_ms = bad
        except TypeError:
            pass
        else:
            raise AssertionError("soft_pin_ttl_ms accepted %r" % (bad,))
    # a pointer into nothing: an error code, never a crash
    assert s.put_from(uniq(), 8, 4096) == -600
    assert s.get_into(uniq(), 8, 4096) == -600
    assert s.batch_put_from([uniq(), uniq()], [8, 16], [10, 10]) == [-600, -600]
    assert s.batch_get_into_multi_buffers([uniq()], [[8]], [[10]]) == [-600]
    s.close()


def case_setup_variants():
    # dict overload with size strings
    s = MooncakeDistributedStore()
    cfg = {"local_hostname": "127.0.0.1", "metadata_server": META, "global_segment_size": "16MB",
           "local_buffer_size": "16 MB", "protocol": "tcp", "rdma_devices": "",
           "master_server_addr": RPC}
    assert s.setup(cfg) == 0
    k = uniq()
    assert s.put(k, b"dict") == 0 and s.get(k) == b"dict"
    name = s.get_hostname()
    s.close()
    assert s.get_hostname() == ""
    # LMCache's spelling of the master's address; an unknown key is named in a warning; two
    # different masters are refused
    import logging
    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())
    logging.getLogger("mooncake.store").addHandler(Keep())
    alias = {k: v for k, v in cfg.items() if k != "master_server_addr"}
    alias.update(master_server_address=RPC, colour="blue", device_name="")
    s4 = MooncakeDistributedStore()
    assert s4.setup(alias) == 0
    k = uniq()
    assert s4.put(k, b"alias") == 0 and s4.get(k) == b"alias"
    s4.close()
    assert any("unknown key 'colour'" in m for m in seen), seen
    assert not any("master_server_address" in m or "device_name" in m for m in seen), seen
    s5 = MooncakeDistributedStore()
    assert s5.setup(dict(cfg, master_server_address="127.0.0.1:1")) == -600
    assert any("name two masters" in m for m in seen), seen
    assert s5.setup(dict(cfg, rdma_devices="", device_name="mlx5_0")) == -600
    assert any("name two different values" in m for m in seen), seen
    # no master address at all: the default is named (nothing listens there in this test)
    bare = {k: v for k, v in cfg.items() if k != "master_server_addr"}
    del seen[:]
    s5.setup(bare)
    s5.close()
    assert any("using the default 127.0.0.1:50051" in m for m in seen), seen
    s2 = MooncakeDistributedStore()
    assert s2.setup(dict(cfg, global_segment_size="50%")) == -600
    assert s2.setup(dict(cfg, local_buffer_size="12 parsecs")) == -600
    # auto port within 12300..14300
    host, port = name.rsplit(":", 1)
    assert host == "127.0.0.1" and 12300 <= int(port) <= 14300, name
    # keywords after the 7 positionals; engine accepted
    from mooncake.engine import TransferEngine
    s3 = MooncakeDistributedStore()
    assert s3.setup("127.0.0.1", META, 16 * MB, 16 * MB, "tcp", "", RPC, engine=None,
                    tenant_id="default", enable_client_http_server=False,
                    client_http_port=9300, ssd_offload_path="") == 0
    assert s3.health_check() == 0
    s3.close()
    assert s3.health_check() == 1
    te = TransferEngine()
    assert te.initialize("127.0.0.1", "P2PHANDSHAKE", "tcp", "") == 0
    s4 = MooncakeDistributedStore()
    assert s4.setup("127.0.0.1", META, 0, 16 * MB, "tcp", "", RPC, te.get_engine()) == 0
    assert s4.get_hostname() == te._segment_name()  # the engine's segment
    s4.close()
    try:
        MooncakeDistributedStore().setup("127.0.0.1", META, 0, 0, "tcp", "", RPC, engine=5)
        raise AssertionError("engine=5 accepted")
    except TypeError as e:
        assert "engine" in str(e)
    # an engine not initialized: INVALID_PARAMS
    assert MooncakeDistributedStore().setup("127.0.0.1", META, 0, 0, "tcp", "", RPC,
                                            TransferEngine().get_engine()) == -600
    assert MooncakeDistributedStore().health_check() == 1
    assert MooncakeDistributedStore().close() == 0


def case_zero_local_buffer():
    s = mk_store(lbuf=0)
    k = uniq()
    assert s.put(k, b"x" * 100) != 0
    assert s.put_parts(k, b"a", b"b") != 0
    # zero-copy puts still work
    b, p = buf(100, b"y" * 100)
    assert s.put_from(k, p, 100) == 0
    d, dp = buf(100)
    assert s.get_into(k, dp, 100) == 100 and d.raw == b"y" * 100
    s.close()


def case_two_stores_replicas():
    a = mk_store()
    b = mk_store()
    assert a.get_hostname() != b.get_hostname()
    cfg = ReplicateConfig()
    cfg.replica_num = 2
    k = uniq()
    data = os.urandom(100000)
    assert a.put(k, data, cfg) == 0
    descs = a.get_replica_desc(k)
    assert len(descs) == 2, descs
    eps = {d.get_memory_descriptor().buffer_descriptor.transport_endpoint for d in descs}
    assert eps == {a.get_hostname(), b.get_hostname()}, eps
    assert all(d.is_memory_replica() and not d.is_disk_replica() for d in descs)
    assert b.get(k) == data
    m = a.batch_get_replica_desc([k, uniq("miss")])
    assert list(m) == [k]
    # a preferred segment places the single replica there
    cfg1 = ReplicateConfig()
    cfg1.preferred_segment = b.get_hostname()
    k2 = uniq()
    assert a.put(k2, b"pref", cfg1) == 0
    d2 = a.get_replica_desc(k2)
    assert [x.get_memory_descriptor().buffer_descriptor.transport_endpoint for x in d2] == \
        [b.get_hostname()]
    a.close()
    b.close()


def case_many_threads_one_store():
    s = mk_store(seg=32 * MB, lbuf=32 * MB)
    errors = []
    nthreads, per = 8, 40

    def work(t):
        try:
            for i in range(per):
                k = "thr-%d-%d-%s" % (t, i, uniq())
                v = (b"%d:%d:" % (t, i)) * 50
                assert s.put(k, v) == 0
                assert s.is_exist(k) == 1
                assert s.get(k) == v
                b, p = buf(len(v))
                assert s.get_into(k, p, len(v)) == len(v) and b.raw == v
                assert s.batch_is_exist([k, k + "-miss"]) == [1, 0]
        except BaseException as e:  # noqa: BLE001
            errors.append(repr(e))

    ts = [threading.Thread(target=work, args=(t,)) for t in range(nthreads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not errors, errors[:3]
    s.close()


def case_two_processes_replicas():
    import hashlib
    import subprocess
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    p = subprocess.Popen([sys.executable, os.path.join(here, "store_peer.py")],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline().split()
        assert line and line[0] == "READY", line
        peer = line[1]
        a = mk_store()
        cfg = ReplicateConfig()
        cfg.replica_num = 2
        k = uniq()
        data = os.urandom(300000)
        assert a.put(k, data, cfg) == 0
        eps = {d.get_memory_descriptor().buffer_descriptor.transport_endpoint
               for d in a.get_replica_desc(k)}
        assert eps == {a.get_hostname(), peer}, eps
        p.stdin.write("get %s\nget %s\n" % (k, uniq("miss")))
        p.stdin.flush()
        assert p.stdout.readline().strip() == hashlib.sha256(data).hexdigest()
        assert p.stdout.readline().strip() == "MISS"
        a.close()
        p.stdin.write("quit\n")
        p.stdin.flush()
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def case_async_wrapper():
    import asyncio
    from mooncake.async_store import MooncakeDistributedStoreAsync
    s = MooncakeDistributedStoreAsync()
    assert s.setup("127.0.0.1", META, 16 * MB, 16 * MB, "tcp", "", RPC) == 0
    ks = [uniq() for _ in range(16)]

    async def go():
        rcs = await asyncio.gather(*[s.async_put(k, k.encode()) for k in ks])
        assert rcs == [0] * len(ks)
        vals = await asyncio.gather(*[s.async_get(k) for k in ks])
        assert vals == [k.encode() for k in ks]
        assert await s.async_is_exist(ks[0]) == 1

    asyncio.run(go())
    try:
        s.nonexistent_attr
    except AttributeError:
        pass
    else:
        raise AssertionError("no AttributeError")
    s.close()


def _shared_engine_store(te_name):
    """A store set up on a fresh engine of which only the handle survives."""
    from mooncake.engine import TransferEngine
    te = TransferEngine()
    assert te.initialize(te_name, META, "tcp", "") == 0
    s = MooncakeDistributedStore()
    assert s.setup("127.0.0.1", META, 16 * MB, 16 * MB, "tcp", "", RPC, engine=te.get_engine()) == 0
    return s


def case_shared_engine():
    """setup(..., te.get_engine()): the store lives in the engine's segment;
    buffers registered with engine.register_memory serve put_from/get_into;
    the engine outlives the store and works after store.close()."""
    import gc
    from mooncake.engine import TransferEngine
    te = TransferEngine()
    assert te.initialize("127.0.0.1:%d" % (20000 + os.getpid() % 20000), META, "tcp", "") == 0
    h = te.get_engine()
    assert h.transfer_engine() is te and h.get_engine_ptr() == te.get_engine_ptr()
    s = MooncakeDistributedStore()
    assert s.setup("127.0.0.1", META, 16 * MB, 16 * MB, "tcp", "", RPC, h) == 0
    del h  # the store keeps the engine alive
    assert s.get_hostname() == te._segment_name()
    other = mk_store()
    n = 1 * MB
    mem, p = buf(2 * n)
    assert te.register_memory(p, 2 * n) == 0
    data = os.urandom(n)
    ctypes.memmove(p, data, n)
    # s (engine-registered buffer) -> other's segment
    cfg = ReplicateConfig()
    cfg.preferred_segment = other.get_hostname()
    k1 = uniq("eng")
    assert s.put_from(k1, p, n, cfg) == 0
    assert other.get(k1) == data
    # other -> s's segment (the engine's), read into engine-registered memory
    data2 = os.urandom(n)
    cfg.preferred_segment = s.get_hostname()
    k2 = uniq("eng")
    assert other.put(k2, data2, cfg) == 0
    assert [t[0] for t in other._replica_desc(k2)] == [s.get_hostname()]
    assert s.get_into(k2, p + n, n) == n
    assert ctypes.string_at(p + n, n) == data2
    assert s.batch_get_into([k1, k2], [p, p + n], [n, n]) == [n, n]
    assert ctypes.string_at(p, n) == data and ctypes.string_at(p + n, n) == data2
    assert s.close() == 0
    assert other.is_exist(k2) == 0  # s's segment unmounted with it
    # the engine still works: a transfer to a second engine, byte exact
    peer = TransferEngine()
    assert peer.initialize("127.0.0.1:%d" % (40001 + os.getpid() % 20000), META, "tcp", "") == 0
    pm, pp = buf(n)
    assert peer.register_memory(pp, n) == 0
    assert te.transfer_sync_write(peer._segment_name(), p, pp, n) == 0
    assert pm.raw == data
    assert te.unregister_memory(p) == 0
    # the engine passed itself (keyword), and a second store on the same engine
    s2 = MooncakeDistributedStore()
    assert s2.setup("127.0.0.1", META, 16 * MB, 16 * MB, "tcp", "", RPC, engine=te) == 0
    assert s2.put(uniq("eng"), b"again") == 0
    assert s2.close() == 0
    # only the store holds the engine: it lives until close
    s3 = _shared_engine_store("127.0.0.1:%d" % (20001 + os.getpid() % 19000))
    gc.collect()
    k3 = uniq("eng")
    assert s3.put(k3, data[:1000]) == 0 and other.get(k3) == data[:1000]
    assert s3.close() == 0
    gc.collect()
    other.close()


def case_protocol_strings():
    # an unknown protocol is refused with INVALID_PARAMS (-600) before anything
    # starts; "rdma" on a machine without an RDMA device (no FI_PROVIDER) warns
    # once and runs tcp, so that vLLM's default "rdma" keeps working
    s = MooncakeDistributedStore()
    assert s.setup("127.0.0.1", META, 16 * MB, 16 * MB, "bogus", "", RPC) == -600
    assert s.get_hostname() == ""
    os.environ.pop("FI_PROVIDER", None)
    assert s.setup("127.0.0.1", META, 16 * MB, 16 * MB, "rdma", "erdma_0", RPC) == 0
    k = uniq()
    assert s.put(k, b"over tcp") == 0 and s.get(k) == b"over tcp"
    s.close()


_EXITING_STORE = """
import os, sys
from util import mk_store


import threading
s = mk_store()
# a daemon thread still holding it at exit (a worker, a background saver): its frame is
# never torn down, so the store is never deallocated either
threading.Thread(target=lambda st=s: threading.Event().wait(), daemon=True).start()
print(s.get_hostname(), flush=True)
del s
sys.stdin.readline()  # the parent has looked at the master's segments
if sys.argv[1] == "hard":
    os._exit(0)  # no interpreter exit: nothing runs
# falls off the end with the store still set up: the interpreter's exit closes it
"""


def _segments():
    import urllib.request
    url = "http://%s/get_all_segments" % os.environ["MC_TEST_ADMIN"]
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode().split()


def case_exit_without_close_unmounts():
    """A process that ends without close() unmounts its segment as it exits, instead of
    leaving the master to place replicas in it until its heartbeat expires (client_ttl
    10 s); one that dies without an interpreter exit (os._exit) is still left to the TTL."""
    import subprocess
    import sys
    import time
    here = os.path.dirname(os.path.abspath(__file__))
    for how in ("normal", "hard"):
        p = subprocess.Popen([sys.executable, "-c", _EXITING_STORE, how], cwd=here,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env=dict(os.environ, PYTHONPATH=here + os.pathsep +
                                      os.environ.get("PYTHONPATH", "")))
        name = p.stdout.readline().strip()
        assert name and name in _segments(), (name, _segments())
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.wait(30) == 0
        if how == "normal":  # gone at once (before the exit returned), not 10 s later
            assert name not in _segments(), _segments()
        else:
            t0 = time.monotonic()
            assert name in _segments()  # only the heartbeat TTL removes it
            assert until(lambda: name not in _segments(), timeout=15)
            assert time.monotonic() - t0 > 5
