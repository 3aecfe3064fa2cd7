"""SGLang's standalone-storage mode, replayed: a standalone mooncake_client
owns the pool memory; this process is a dummy client (setup_dummy) whose host
KV pool comes from MooncakeHostMemAllocator. Also: bad pointers (read-only and
PROT_NONE pages) give error codes, never a crash, on the local-copy and the
transfer-engine paths. Run by test_mc_standalone.py in a child python."""
import ctypes
import json
import os
import signal
import socket
import urllib.request

from util import MB, buf, mk_store, uniq, until

from mooncake.store import MooncakeDistributedStore, MooncakeHostMemAllocator, ReplicateConfig

CLIENT = os.environ.get("MC_TEST_CLIENT", "")
CLIENT_NAME = os.environ.get("MC_TEST_CLIENT_NAME", "")
ADMIN = os.environ.get("MC_TEST_ADMIN", "")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
PROT_NONE, PROT_READ = 0, 1
MAP_PRIVATE_ANON = 0x02 | 0x20


def mapping(size, prot):
    p = _libc.mmap(None, size, prot, MAP_PRIVATE_ANON, -1, 0)
    assert p and p != ctypes.c_void_p(-1).value, ctypes.get_errno()
    return p


def replica_endpoints(key):
    with urllib.request.urlopen("http://%s/query_key?key=%s" % (ADMIN, key), timeout=5) as r:
        return [d["transport_endpoint"] for d in json.loads(r.read())["data"]]


def dummy(lbuf=16 * MB, pool=64 * MB):
    s = MooncakeDistributedStore()
    rc = s.setup_dummy(pool, lbuf, CLIENT)
    assert rc == 0, rc
    return s


def case_sglang_standalone_sequence():
    alloc = MooncakeHostMemAllocator()
    pool = 8 * MB
    ptr = alloc.alloc(pool)
    assert ptr and ptr % 4096 == 0
    host = (ctypes.c_char * pool).from_address(ptr)
    s = MooncakeDistributedStore()
    assert s.setup_dummy(pool, 16 * MB, CLIENT) == 0
    assert s.health_check() == 0
    assert s.get_hostname().startswith("127.0.0.1:")
    assert s.register_buffer(ptr, pool) == 0
    # warmup, as SGLang's MooncakeStore does
    wk = uniq("warmup_key")
    wv = os.urandom(4096)
    assert s.put(wk, wv) == 0
    assert s.is_exist(wk) == 1
    assert s.get(wk) == wv
    assert replica_endpoints(wk) == [CLIENT_NAME]
    # pages of the host pool: k and v of 8 pages, 64 KiB each
    page = 64 * 1024
    keys = []
    for i in range(8):
        keys += ["%s_%d_0_k" % (uniq("hash"), i), "%s_%d_0_v" % (uniq("hash"), i)]
    data = [os.urandom(page) for _ in keys]
    for i, d in enumerate(data):
        ctypes.memmove(ptr + i * page, d, page)
    assert s.batch_is_exist(keys) == [0] * len(keys)
    ptrs = [ptr + i * page for i in range(len(keys))]
    assert s.batch_put_from(keys, ptrs, [page] * len(keys), ReplicateConfig()) == [0] * len(keys)
    assert s.batch_is_exist(keys) == [1] * len(keys)
    for k in keys[:3]:
        assert replica_endpoints(k) == [CLIENT_NAME], k
    # read back into the second half of the pool, byte for byte
    half = pool // 2
    dst = [ptr + half + i * page for i in range(len(keys))]
    ctypes.memset(ptr + half, 0, half)
    assert s.batch_get_into(keys, dst, [page] * len(keys)) == [page] * len(keys)
    for i, d in enumerate(data):
        assert host[half + i * page:half + (i + 1) * page] == d, i
    # get_into / put_from of one key, multi-buffer forms
    assert s.get_into(keys[0], ptr + half, page) == page
    assert host[half:half + page] == data[0]
    mk = uniq("multi")
    assert s.batch_put_from_multi_buffers([mk], [[ptr, ptr + page]], [[100, 200]]) == [0]
    ctypes.memset(ptr + half, 0, 300)
    assert s.batch_get_into_multi_buffers([mk], [[ptr + half]], [[300]]) == [300]
    assert host[half:half + 300] == data[0][:100] + data[1][:200]
    # a second dummy in the same process sees the same pool
    s2 = dummy()
    assert s2.get(wk) == wv
    assert s2.close() == 0
    assert s.remove_all(force=True) >= 1
    assert s.unregister_buffer(ptr) == 0
    assert s.close() == 0
    assert alloc.free(ptr) == 0
    assert alloc.free(ptr) == -1


def case_dummy_mem_pool():
    # upstream's alloc_from_mem_pool on a dummy client: host memory usable with
    # the zero-copy calls (here the process's MooncakeHostMemAllocator)
    s = dummy()
    size = 256 * 1024
    p = s.alloc_from_mem_pool(size)
    assert p and p % 4096 == 0
    data = os.urandom(size)
    ctypes.memmove(p, data, size)
    assert s.register_buffer(p, size) == 0
    k = uniq("pool")
    assert s.put_from(k, p, size) == 0
    assert replica_endpoints(k) == [CLIENT_NAME]
    ctypes.memset(p, 0, size)
    assert s.get_into(k, p, size) == size
    assert ctypes.string_at(p, size) == data
    assert s.unregister_buffer(p) == 0
    assert MooncakeHostMemAllocator().free(p) == 0
    s.remove_all(force=True)
    s.close()
    assert s.alloc_from_mem_pool(4096) == 0  # closed: no longer a dummy client


def case_allocator():
    a = MooncakeHostMemAllocator()
    b = MooncakeHostMemAllocator()
    p = a.alloc(1)
    q = a.alloc(3 * MB)
    assert p and q and p != q
    ctypes.memset(q, 0x5A, 3 * MB)
    assert ctypes.string_at(q + 3 * MB - 4, 4) == b"\x5a" * 4
    assert ctypes.string_at(p, 1) == b"\x00"
    assert a.alloc(0) == 0
    assert a.alloc(1 << 60) == 0
    assert b.free(p) == 0  # one allocator for the process, as upstream's singleton
    assert a.free(q) == 0
    assert a.free(12345) == -1
    for bad in (-1, "x", None):
        try:
            a.alloc(bad)
        except (TypeError, ValueError):
            pass
        else:
            raise AssertionError("alloc(%r) did not raise" % (bad,))
    # many threads at once
    import threading
    errs = []

    def work():
        for _ in range(50):
            x = a.alloc(8192)
            if not x or a.free(x) != 0:
                errs.append(x)

    ts = [threading.Thread(target=work) for _ in range(8)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert not errs


def case_bad_client_address():
    s = MooncakeDistributedStore()
    # a port nobody listens on
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        dead = "127.0.0.1:%d" % sk.getsockname()[1]
    assert s.setup_dummy(16 * MB, 16 * MB, dead) < 0
    # an HTTP server that is not a mooncake_client (the master's admin port)
    assert s.setup_dummy(16 * MB, 16 * MB, ADMIN) < 0
    # not an address
    for bad in ("", "nohost", "127.0.0.1:", "127.0.0.1:99999"):
        assert s.setup_dummy(16 * MB, 16 * MB, bad) == -600, bad
    try:
        s.setup_dummy(16 * MB, 16 * MB, 5)
    except TypeError as e:
        assert "server_address" in str(e)
    else:
        raise AssertionError("no TypeError")
    assert s.health_check() == 1
    assert s.put("k", b"v") < 0
    # the store is still usable afterwards
    assert s.setup_dummy(16 * MB, 16 * MB, CLIENT) == 0
    k = uniq()
    assert s.put(k, b"after") == 0 and s.get(k) == b"after"
    assert s.setup_dummy(16 * MB, 16 * MB, CLIENT) == -600  # already set up
    s.close()


def case_client_killed():
    s = dummy()
    k = uniq()
    v = os.urandom(100000)
    assert s.put(k, v) == 0 and s.get(k) == v
    b, p = buf(len(v))
    os.kill(int(os.environ["MC_TEST_CLIENT_PID"]), signal.SIGKILL)
    # its segment is gone with it: every data call fails with a code
    assert until(lambda: s.get_into(k, p, len(v)) < 0, timeout=10)
    assert s.get(k) == b""
    r = s.batch_get_into([k], [p], [len(v)])
    assert len(r) == 1 and r[0] < 0, r
    assert s.put(uniq(), b"x" * 1000) < 0
    rs = s.batch_put_from([uniq(), uniq()], [p, p], [1000, 1000])
    assert len(rs) == 2 and all(x < 0 for x in rs), rs
    assert s.is_exist(uniq()) in (0, 1)
    s.close()


def _bad_pointer_checks(s, k, size):
    """get_into / batch_get_into into read-only and PROT_NONE pages, put_from
    from PROT_NONE pages: negative codes; then the store still works."""
    ro = mapping(4 * 4096, PROT_READ)
    none = mapping(4 * 4096, PROT_NONE)
    assert s.get_into(k, ro, size) < 0
    assert s.get_into(k, none, size) < 0
    r = s.batch_get_into([k, k], [ro, none], [size, size])
    assert len(r) == 2 and all(x < 0 for x in r), r
    r = s.batch_get_into_multi_buffers([k], [[ro]], [[size]])
    assert len(r) == 1 and r[0] < 0, r
    assert s.put_from(uniq(), none, size) < 0
    r = s.batch_put_from([uniq()], [none], [size])
    assert len(r) == 1 and r[0] < 0, r
    # still serving
    b, p = buf(size)
    assert s.get_into(k, p, size) == size
    _libc.munmap(ro, 4 * 4096)
    _libc.munmap(none, 4 * 4096)
    return bytes(b)[:size]


def case_bad_pointers_local_copy():
    """Replica in this store's own segment: the memcpy path."""
    s = mk_store()
    k = uniq()
    v = os.urandom(8192)
    assert s.put(k, v, ReplicateConfig()) == 0
    assert s.get_replica_desc(k)[0].get_memory_descriptor().buffer_descriptor \
        .transport_endpoint == s.get_hostname()
    assert _bad_pointer_checks(s, k, len(v)) == v
    s.close()


def case_bad_pointers_te_local():
    """Replica in this store's own segment, copied by the TE's local path."""
    os.environ["MC_STORE_MEMCPY"] = "0"
    s = mk_store()
    k = uniq()
    v = os.urandom(8192)
    assert s.put(k, v) == 0
    assert _bad_pointer_checks(s, k, len(v)) == v
    s.close()


def case_bad_pointers_remote():
    """Replica in the standalone client's segment (shm between processes,
    then tcp with MC_FORCE_TCP in test_mc_standalone)."""
    s = dummy()
    k = uniq()
    v = os.urandom(8192)
    assert s.put(k, v) == 0
    assert replica_endpoints(k) == [CLIENT_NAME]
    assert _bad_pointer_checks(s, k, len(v)) == v
    s.close()
