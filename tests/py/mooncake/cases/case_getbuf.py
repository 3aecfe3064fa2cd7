"""get_buffer / batch_get_buffer: the allocating gets that hand out BufferHandles read into
blocks of the store's local buffer (store.h "Get buffers"), against the session's master."""
import gc
import hashlib
import mmap
import os
import resource
import threading

from util import MB, mk_store, uniq

from mooncake.store import MooncakeDistributedStore


def digest(h):
    return hashlib.sha256(memoryview(h)).digest()


def minflt():
    """Page faults of this thread: a local get copies in the calling thread (store_ops.c
    st_local_copy), while the process's other threads (the segment prefault populating 64 MiB
    at setup, the transfer engine) fault on their own schedule."""
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt


def get_all(s, keys, tries=20):
    """batch_get_buffer until no key is missing: the session master's 500 ms read lease can run
    out during a large batch on a loaded machine (LEASE_EXPIRED: that key's handle is None)."""
    for _ in range(tries):
        f0 = minflt()
        hs = s.batch_get_buffer(keys)
        f = minflt() - f0
        if all(h is not None for h in hs):
            return hs, f
        del hs
    raise AssertionError("batch_get_buffer kept missing keys")


def put_many(s, n, size, prefix="gb"):
    keys, sums = [], []
    for _ in range(n):
        k, v = uniq(prefix), os.urandom(size)
        assert s.put_parts(k, v[:64], v[64:]) == 0  # LMCache's put: header + chunk
        keys.append(k)
        sums.append(hashlib.sha256(v).digest())
    return keys, sums


def case_batch_get_buffer_reuses_warm_pages():
    # 8 x 4 MiB per call, as LMCache's batched_get: after the first call the blocks come from
    # pages already touched, so a call costs no page fault per page (malloc'd 4 MiB buffers
    # fault about 1024 times each, 8192 per call, on every call)
    s = mk_store(seg=64 * MB, lbuf=48 * MB)
    keys, sums = put_many(s, 8, 4 * MB)
    first, _ = get_all(s, keys)
    assert [digest(h) for h in first] == sums
    ptrs = sorted(h.ptr() for h in first)
    del first
    gc.collect()
    faults = []
    for _ in range(5):
        hs, f = get_all(s, keys)
        faults.append(f)
        assert [digest(h) for h in hs] == sums
        assert sorted(h.ptr() for h in hs) == ptrs  # the same blocks again
        assert all(len(h) == 4 * MB and h.size() == 4 * MB for h in hs)
        del hs
    assert max(faults) < 512, faults
    # the counter does see this thread's faults: 4 MiB of fresh pages written here
    with mmap.mmap(-1, 4 * MB) as m:
        f0 = minflt()
        for off in range(0, 4 * MB, 4096):
            m[off] = 1
        assert minflt() - f0 >= 512
    # the single-key form takes the same path
    h = None
    for _ in range(20):
        h = h or s.get_buffer(keys[3])
    assert digest(h) == sums[3] and h.ptr() in ptrs
    del h
    assert s.close() == 0


def case_handles_outlive_close():
    s = mk_store(seg=32 * MB, lbuf=16 * MB)
    keys, sums = put_many(s, 3, 512 * 1024)
    hs, _ = get_all(s, keys)
    one = get_all(s, keys[:1])[0][0]
    assert s.close() == 0
    # the local buffer stays mapped while a handle holds a block of it
    assert [digest(h) for h in hs] == sums and digest(one) == sums[0]
    assert hs[1].tobytes()[:64] == bytes(memoryview(hs[1])[:64])
    del hs, one
    gc.collect()
    s2 = MooncakeDistributedStore()
    del s2


def case_local_buffer_full_falls_back():
    # a 4 MiB local buffer holds three 1 MiB blocks (plus page rounding); more handles held at
    # once come from malloc, with the same bytes
    s = mk_store(seg=64 * MB, lbuf=4 * MB)
    keys, sums = put_many(s, 6, MB)
    held = get_all(s, keys[:3])[0] + get_all(s, keys[3:])[0]
    assert [digest(h) for h in held] == sums
    assert len(set(h.ptr() for h in held)) == 6
    del held
    gc.collect()
    # all blocks back: the arena serves a full batch again, from its first page on
    hs, _ = get_all(s, keys[:3])
    assert [digest(h) for h in hs] == sums[:3]
    del hs
    assert s.close() == 0


def case_mixed_sizes_and_misses():
    s = mk_store(seg=64 * MB, lbuf=8 * MB)
    sizes = [65, 4096, 4097, 300000, 2 * MB + 5, 1]
    keys, sums = [], []
    for n in sizes:
        k, v = uniq("mix"), os.urandom(n)
        assert s.put(k, v) == 0
        keys.append(k)
        sums.append(hashlib.sha256(v).digest())
    for _ in range(3):
        assert s.batch_get_buffer([uniq("miss")]) == [None]
        hs, _ = get_all(s, keys[::-1])
        assert [digest(h) for h in hs] == sums[::-1]
        assert [len(h) for h in hs] == sizes[::-1]
        # release every other one first: the free blocks merge back
        del hs[::2]
        del hs
    assert s.batch_get_buffer([]) == []
    assert s.close() == 0


def case_threads():
    s = mk_store(seg=64 * MB, lbuf=16 * MB)
    keys, sums = put_many(s, 8, 256 * 1024)
    errs = []

    def worker(t):
        try:
            for i in range(20):
                pick = [(t + i + j) % 8 for j in range(3)]
                hs, _ = get_all(s, [keys[p] for p in pick])
                if [digest(h) for h in hs] != [sums[p] for p in pick]:
                    errs.append("thread %d round %d: wrong bytes" % (t, i))
                h = s.get_buffer(keys[t])
                if h is not None and digest(h) != sums[t]:
                    errs.append("thread %d round %d: wrong single" % (t, i))
        except Exception as e:  # noqa: BLE001
            errs.append(repr(e))

    ts = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errs, errs
    assert s.close() == 0
