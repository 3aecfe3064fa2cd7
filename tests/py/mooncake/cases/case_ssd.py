"""The SSD tier from a reader's and writer's side (run by test_mc_ssd.py in a
child python). The disk owner is a mooncake_client --enable_offload that the
test starts, kills and restarts; this process is a pure client. Values are
derived from the key alone (value()), so every get is checked byte for byte:
a get returns the exact bytes of the put, or nothing."""
import hashlib
import json
import os
import signal
import threading
import time

from util import MB, until

from mooncake.store import MooncakeDistributedStore

RPC = os.environ.get("MC_TEST_RPC", "")
META = os.environ.get("MC_TEST_META", "")
N = int(os.environ.get("MC_TEST_N", "256"))
SZ = int(os.environ.get("MC_TEST_SZ", str(256 << 10)))
PREFIX = os.environ.get("MC_TEST_PREFIX", "ssd")
MANIFEST = os.environ.get("MC_TEST_MANIFEST", "")


def value(key, n):
    seed = hashlib.sha256(key.encode()).digest()
    return (seed * (n // len(seed) + 1))[:n]


def client(lbuf=64 * MB):
    s = MooncakeDistributedStore()
    rc = s.setup("127.0.0.1", META, 0, lbuf, "tcp", "", RPC)
    assert rc == 0, rc
    return s


def keys():
    return ["%s-%d" % (PREFIX, i) for i in range(N)]


def put_retry(s, key, v, timeout=30.0):
    """A put; NO_AVAILABLE_HANDLE (-200) while evictions wait for their offloads
    is retried (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        rc = s.put(key, v)
        if rc != -200 or time.monotonic() > deadline:
            return rc
        time.sleep(0.01)


def disk_replica(s, key):
    return any(d.is_local_disk_replica() for d in s.get_replica_desc(key))


def check_all(s, ks, allow_miss):
    """Every get exact or (allow_miss) empty; returns (ok, miss)."""
    ok = miss = 0
    for k in ks:
        v = s.get(k)
        if v == b"":
            miss += 1
            if not allow_miss:  # say where the master thinks it is
                desc = [(d.is_memory_replica(), d.is_local_disk_replica())
                        for d in s.get_replica_desc(k)]
                assert False, "miss of %s (replicas now, (memory, disk): %s)" % (k, desc)
            continue
        assert v == value(k, SZ), "wrong bytes for %s (%d bytes)" % (k, len(v))
        ok += 1
    return ok, miss


def case_fill():
    """Puts N objects of SZ bytes (several times the owner's segment), then
    waits until each has a LOCAL_DISK replica; writes the manifest."""
    s = client()
    done = []
    for k in keys():
        rc = put_retry(s, k, value(k, SZ))
        assert rc == 0, (k, rc)
        done.append(k)
    want = int(os.environ.get("MC_TEST_WANT_DISK", str(N)))
    on_disk = until(lambda: sum(disk_replica(s, k) for k in done) >= want, timeout=30)
    assert on_disk, "only %d of %d keys reached the disk" % (
        sum(disk_replica(s, k) for k in done), want)
    ok, _ = check_all(s, done, allow_miss=False)
    assert ok == len(done)
    if MANIFEST:
        with open(MANIFEST, "w") as f:
            json.dump(done, f)
    print(json.dumps({"put": len(done), "ok": ok}))
    s.close()


def case_check():
    """Reads back the manifest: all exact (MC_TEST_ALLOW_MISS=1: exact or
    empty, at least MC_TEST_MIN_OK exact)."""
    s = client()
    with open(MANIFEST) as f:
        ks = json.load(f)
    allow = os.environ.get("MC_TEST_ALLOW_MISS") == "1"
    if os.environ.get("MC_TEST_DISK_ONLY") == "1":  # a killed owner's segment goes after its ttl
        assert until(lambda: not any(d.is_memory_replica()
                                     for d in s.get_replica_desc(ks[-1])),
                     timeout=30), s.get_replica_desc(ks[-1])
    ok, miss = check_all(s, ks, allow)
    assert ok >= int(os.environ.get("MC_TEST_MIN_OK", "0")), (ok, miss)
    print(json.dumps({"ok": ok, "miss": miss}))
    s.close()


def case_disk_only_served():
    """After the owner's segment is gone (it restarted), objects are served
    from its disk: replica lists show LOCAL_DISK only, batch gets too."""
    s = client()
    with open(MANIFEST) as f:
        ks = json.load(f)
    # the killed owner's segment goes once its client_ttl passes
    gone = until(lambda: not any(d.is_memory_replica() for d in s.get_replica_desc(ks[0])),
                 timeout=30)
    assert gone, s.get_replica_desc(ks[0])
    for k in ks[:8]:
        d = s.get_replica_desc(k)
        assert d and all(x.is_local_disk_replica() and not x.is_memory_replica() for x in d), d
    got = s.get_batch(ks)
    assert len(got) == len(ks)
    for k, v in zip(ks, got):
        assert v == value(k, SZ), k
    desc = s.batch_get_replica_desc(ks[:4])
    assert set(desc) == set(ks[:4])
    print(json.dumps({"batch": len(ks)}))
    s.close()


def case_disk_full():
    """A disk quota far below the data: every put succeeds (in DRAM), the
    owner's disk eviction makes room (buckets dropped), and every get is exact
    or empty; the newest keys are readable."""
    s = client()
    ks = keys()
    for k in ks:
        assert put_retry(s, k, value(k, SZ)) == 0, k
    ok, miss = check_all(s, ks, allow_miss=True)
    assert miss > 0, "the quota should have forced disk eviction"
    for k in ks[-4:]:
        assert s.get(k) == value(k, SZ), k
    print(json.dumps({"ok": ok, "miss": miss}))
    s.close()


def case_kill_owner_during_reads():
    """Gets of disk-only objects while the owner is killed (SIGKILL): every get
    returns within a bound (an error, never wrong bytes) and the reader keeps
    working."""
    s = client()
    with open(MANIFEST) as f:
        ks = json.load(f)
    pid = int(os.environ["MC_TEST_OWNER_PID"])
    assert until(lambda: not any(d.is_memory_replica() for d in s.get_replica_desc(ks[0])),
                 timeout=30), s.get_replica_desc(ks[0])
    worst = [0.0]
    results = {"ok": 0, "err": 0}
    started = threading.Event()
    stop = threading.Event()

    def reader():
        i = 0
        while not stop.is_set():
            k = ks[i % len(ks)]
            t0 = time.monotonic()
            v = s.get(k)
            dt = time.monotonic() - t0
            worst[0] = max(worst[0], dt)
            if v:
                assert v == value(k, SZ), k
                results["ok"] += 1
            else:
                results["err"] += 1
            i += 1
            if i == 8:
                started.set()

    th = threading.Thread(target=reader)
    th.start()
    assert started.wait(30)
    os.kill(pid, signal.SIGKILL)
    enough_errors = until(lambda: results["err"] >= 5, timeout=30)
    stop.set()
    th.join(60)
    assert not th.is_alive(), "a get did not return"
    assert enough_errors, results
    bound = float(os.environ.get("MC_TEST_GET_BOUND_S", "20"))
    assert worst[0] < bound, "a get took %.1f s" % worst[0]
    print(json.dumps({"ok": results["ok"], "err": results["err"], "worst_s": worst[0]}))
    s.close()


def case_promotion():
    """--promotion_on_hit: a disk-only object read past the admission threshold
    gets a memory replica again."""
    s = client()
    with open(MANIFEST) as f:
        ks = json.load(f)
    k = ks[0]
    assert until(lambda: not any(d.is_memory_replica() for d in s.get_replica_desc(k)),
                 timeout=30), s.get_replica_desc(k)
    for _ in range(4):
        assert s.get(k) == value(k, SZ)
    promoted = until(lambda: any(d.is_memory_replica() for d in s.get_replica_desc(k)),
                     timeout=30)
    assert promoted, s.get_replica_desc(k)
    assert s.get(k) == value(k, SZ)
    s.close()


def case_promotion_under_pressure():
    """--offload_on_evict --promotion_on_hit, one process owning the disk (as
    upstream's test_promotion_on_hit runs): N objects of SZ bytes overflow its
    16 MiB segment, so eviction keeps the pool near its high watermark, within
    one object of it. A disk-only object read past the admission threshold
    still gets a memory replica (the gate is the pool's use before the copy,
    as upstream's; use plus the copy refused it), the next get is served from
    memory (no disk read), and every get is exact."""
    s = MooncakeDistributedStore()
    assert s.setup("127.0.0.1", META, 16 * MB, 64 * MB, "tcp", "", RPC, None, True) == 0
    done = keys()
    for k in done:
        assert put_retry(s, k, value(k, SZ), timeout=30) == 0, k
    assert until(lambda: any(disk_only(s, k) for k in done), timeout=30), "no key on disk only"
    k = next(k for k in done if disk_only(s, k))
    in_mem = sum(any(d.is_memory_replica() for d in s.get_replica_desc(x)) for x in done)
    for _ in range(4):
        assert s.get(k) == value(k, SZ), "wrong bytes for %s" % k
    assert until(lambda: any(d.is_memory_replica() for d in s.get_replica_desc(k)),
                 timeout=30), "not promoted: %s" % [
                     (d.is_memory_replica(), d.is_local_disk_replica())
                     for d in s.get_replica_desc(k)]
    before = s.get_offload_rpc_read_count()
    assert s.get(k) == value(k, SZ), "wrong bytes for %s after promotion" % k
    assert s.get_offload_rpc_read_count() == before, "served from disk after promotion"
    print(json.dumps({"put": len(done), "in_memory": in_mem, "promoted": k}))
    s.close()


def disk_only(s, key):
    d = s.get_replica_desc(key)
    return bool(d) and all(r.is_local_disk_replica() for r in d)


def case_self_owner():
    """This process owns the disk and reads it: puts N objects (several times
    its own 16 MiB segment), then reads every one back exactly, the ones left
    on its disk only included, with get and with batch_get_into into a
    registered buffer; the count of reads served from disk moves. MC_TEST_SELF
    "ssd": setup(..., enable_ssd_offload=True) (MOONCAKE_OFFLOAD_FILE_STORAGE_PATH),
    "root": the 7-argument setup of upstream's legacy --root_fs_dir test."""
    import ctypes
    s = MooncakeDistributedStore()
    args = ["127.0.0.1", META, 16 * MB, 64 * MB, "tcp", "", RPC]
    if os.environ.get("MC_TEST_SELF", "ssd") == "ssd":
        rc = s.setup(*args, None, True)
    else:
        rc = s.setup(*args)
    assert rc == 0, rc
    done = keys()
    for k in done:
        rc = put_retry(s, k, value(k, SZ), timeout=30)
        assert rc == 0, (k, rc)
    assert until(lambda: sum(disk_only(s, k) for k in done) >= N // 2, timeout=30), \
        "only %d of %d keys on disk only" % (sum(disk_only(s, k) for k in done), N)
    before = s.get_offload_rpc_read_count()
    ok, _ = check_all(s, done, allow_miss=False)
    assert ok == len(done)
    assert s.get_offload_rpc_read_count() - before >= N // 2
    batch = 8
    buf = (ctypes.c_ubyte * (SZ * batch))()
    base = ctypes.addressof(buf)
    assert s.register_buffer(base, SZ * batch) == 0
    for i in range(0, len(done), batch):
        ks = done[i:i + batch]
        res = s.batch_get_into(ks, [base + j * SZ for j in range(len(ks))], [SZ] * len(ks))
        assert list(res) == [SZ] * len(ks), (ks, list(res))
        for j, k in enumerate(ks):
            assert bytes(buf[j * SZ:(j + 1) * SZ]) == value(k, SZ), "wrong bytes for %s" % k
    assert s.unregister_buffer(base) == 0
    print(json.dumps({"put": len(done), "disk_reads": s.get_offload_rpc_read_count()}))
    s.close()


def case_concurrent_same_keys():
    """Upstream's concurrent stress of its legacy --root_fs_dir test, checked:
    4 threads put the same N keys into this store (which owns the disk), then
    each reads them all. Every key some put stored (rc 0, or already there)
    reads back exactly; a key is missing only when every put of it was
    refused for room (-200)."""
    s = MooncakeDistributedStore()
    rc = s.setup("127.0.0.1", META, 16 * MB, 64 * MB, "tcp", "", RPC)
    assert rc == 0, rc
    ks = keys()
    stored = set()
    errors = []
    lock = threading.Lock()

    def worker():
        try:
            for k in ks:
                rc = s.put(k, value(k, SZ))
                assert rc in (0, -200, -706), (k, rc)
                if rc != -200:
                    with lock:
                        stored.add(k)
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(repr(e))

    th = [threading.Thread(target=worker) for _ in range(4)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    assert not errors, errors
    assert len(stored) >= N // 2, len(stored)
    miss = 0
    for k in ks:
        v = s.get(k)
        if v == b"":
            assert k not in stored, "%s was stored and came back empty" % k
            miss += 1
            continue
        assert v == value(k, SZ), "wrong bytes for %s" % k
    print(json.dumps({"stored": len(stored), "miss": miss,
                      "disk_reads": s.get_offload_rpc_read_count()}))
    s.close()


def case_print_staging_endpoint():
    """Prints the staging server of the first manifest key's disk replica."""
    s = client()
    with open(MANIFEST) as f:
        ks = json.load(f)
    for d in s.get_replica_desc(ks[0]):
        if d.is_local_disk_replica():
            print("STAGING", d.get_local_disk_descriptor().transport_endpoint)
            break
    s.close()
