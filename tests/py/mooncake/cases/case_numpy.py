"""numpy arrays as the store's buffers (as vLLM / LMCache hand them over):
zero-copy put_from / get_into and their batch forms through `arr.ctypes.data`
with register_buffer (the bytes must land in the array itself), and put of
buffer-protocol objects (numpy, memoryview, bytearray) byte for byte."""
import numpy as np

from util import MB, mk_store, uniq



def _rand(n, seed):
    return np.random.default_rng(seed).integers(0, 256, size=n, dtype=np.uint8)


def case_numpy_put_from_get_into():
    s = mk_store()
    n = 1 * MB + 123
    src = _rand(n, 1)
    dst = np.zeros(n, dtype=np.uint8)
    assert s.register_buffer(src.ctypes.data, src.nbytes) == 0
    assert s.register_buffer(dst.ctypes.data, dst.nbytes) == 0
    k = uniq("np")
    assert s.put_from(k, src.ctypes.data, src.nbytes) == 0
    assert s.get_into(k, dst.ctypes.data, dst.nbytes) == n
    assert np.array_equal(dst, src)  # landed in the array itself: zero copy
    # a 2-D float32 array (a KV block), into a slice view of a larger array
    kv = np.random.default_rng(2).standard_normal((64, 128)).astype(np.float32)
    big = np.zeros((3, 64, 128), dtype=np.float32)
    assert s.register_buffer(kv.ctypes.data, kv.nbytes) == 0
    assert s.register_buffer(big.ctypes.data, big.nbytes) == 0
    k2 = uniq("np")
    assert s.put_from(k2, kv.ctypes.data, kv.nbytes) == 0
    assert s.get_into(k2, big[1].ctypes.data, big[1].nbytes) == kv.nbytes
    assert np.array_equal(big[1], kv) and not big[0].any() and not big[2].any()
    assert s.get(k2) == kv.tobytes()
    for a in (src, dst, kv, big):
        assert s.unregister_buffer(a.ctypes.data) == 0
    s.close()


def case_numpy_batch():
    s = mk_store()
    n, size = 8, 64 * 1024 + 7
    src = _rand(n * size, 3).reshape(n, size)
    dst = np.zeros_like(src)
    assert s.register_buffer(src.ctypes.data, src.nbytes) == 0
    assert s.register_buffer(dst.ctypes.data, dst.nbytes) == 0
    ks = [uniq("npb") for _ in range(n)]
    assert s.batch_put_from(ks, [src[i].ctypes.data for i in range(n)], [size] * n) == [0] * n
    res = s.batch_get_into(ks, [dst[i].ctypes.data for i in range(n)], [size] * n)
    assert res == [size] * n
    assert np.array_equal(dst, src)
    # reversed order: row i gets object n-1-i
    dst[:] = 0
    res = s.batch_get_into(ks[::-1], [dst[i].ctypes.data for i in range(n)], [size] * n)
    assert res == [size] * n
    assert np.array_equal(dst, src[::-1])
    assert s.unregister_buffer(src.ctypes.data) == 0
    assert s.unregister_buffer(dst.ctypes.data) == 0
    s.close()


def case_buffer_protocol_put():
    s = mk_store()
    raw = _rand(300 * 1024, 4)
    cases = [
        raw,                                   # numpy array
        memoryview(raw.tobytes()),             # memoryview of bytes
        memoryview(bytearray(raw.tobytes()))[1000:50000],  # a memoryview slice
        bytearray(raw.tobytes()[:777]),        # bytearray
        np.arange(1000, dtype=np.int64),       # non-byte dtype
    ]
    for v in cases:
        k = uniq("bp")
        want = bytes(v) if not isinstance(v, np.ndarray) else v.tobytes()
        assert s.put(k, v) == 0
        assert s.get(k) == want
        out = np.zeros(len(want), dtype=np.uint8)
        assert s.register_buffer(out.ctypes.data, out.nbytes) == 0
        assert s.get_into(k, out.ctypes.data, out.nbytes) == len(want)
        assert out.tobytes() == want
        assert s.unregister_buffer(out.ctypes.data) == 0
    s.close()
