"""put_tensor / get_tensor and their batch, into, from, pub and upsert forms
against a real master: byte-exact round trips and upstream's byte layout."""
import ctypes
import struct

import pytest

torch = pytest.importorskip("torch", reason="torch not installed: the tensor tests run with "
                                                 "`make test-tensor`")

DTYPES = [torch.float32, torch.float64, torch.int8, torch.uint8, torch.int16, torch.uint16,
          torch.int32, torch.uint32, torch.int64, torch.uint64, torch.bool, torch.float16,
          torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2]
SHAPES = [(), (0,), (7,), (3, 5), (2, 0, 3), (2, 3, 4, 5), (1,) * 8]
HDR = 304


def make(shape, dtype, seed=0):
    """A tensor whose bytes are a function of the seed (any dtype)."""
    g = torch.Generator().manual_seed(seed)
    n = 1
    for d in shape:
        n *= d
    size = torch.empty(0, dtype=dtype).element_size()
    raw = torch.randint(0, 256, (n * size,), dtype=torch.uint8, generator=g)
    if dtype == torch.bool:
        raw = raw % 2
    return raw.view(dtype).reshape(shape)


def same_bytes(a, b):
    return (a.dtype == b.dtype and tuple(a.shape) == tuple(b.shape) and
            bytes(a.contiguous().reshape(-1).view(torch.uint8).numpy()) ==
            bytes(b.contiguous().reshape(-1).view(torch.uint8).numpy()))


def expected_object(t, code):
    """Upstream's object for a whole tensor, built here from the field list
    (docs/python.md) independently of mooncake.tensor_layout."""
    shape = list(t.shape) + [-1] * (8 - t.dim())
    data = bytes(t.contiguous().reshape(-1).view(torch.uint8).numpy())
    head = struct.pack("<IHHiiIIQQ", 0x4D4F4F4E, 1, HDR, code, t.dim(), 0, 0, HDR, len(data))
    head += struct.pack("<8q", *shape) * 2 + struct.pack("<II", 0, 0) + b"\0" * 128
    return head + data


@pytest.mark.parametrize("dtype", DTYPES, ids=[str(d)[6:] for d in DTYPES])
def test_round_trip_every_dtype_byte_exact(store, keyp, dtype):
    for i, shape in enumerate(SHAPES):
        t = make(shape, dtype, seed=i)
        key = "%s_%d" % (keyp, i)
        assert store.put_tensor(key, t) == 0
        got = store.get_tensor(key)
        assert got is not None and same_bytes(got, t), shape
        assert store.get(key) == expected_object(t, DTYPES.index(dtype))
        assert store.get_size(key) == HDR + t.numel() * t.element_size()


def test_upstream_bytes_decode(store, keyp):
    """An object laid out by hand (as upstream writes it) reads as its tensor."""
    t = torch.arange(12, dtype=torch.int32).reshape(3, 4)
    assert store.put(keyp, expected_object(t, 6)) == 0
    assert torch.equal(store.get_tensor(keyp), t)


def test_non_contiguous_and_views(store, keyp):
    base = torch.arange(60, dtype=torch.float32).reshape(6, 10)
    for i, t in enumerate([base.t(), base[:, 2:7], base[::2]]):
        assert store.put_tensor("%s_%d" % (keyp, i), t) == 0
        got = store.get_tensor("%s_%d" % (keyp, i))
        assert torch.equal(got, t) and got.is_contiguous()


def test_get_tensor_is_its_own_copy(store, keyp):
    t = torch.arange(8, dtype=torch.int64)
    assert store.put_tensor(keyp, t) == 0
    a = store.get_tensor(keyp)
    a[0] = 99
    assert torch.equal(store.get_tensor(keyp), t)


def test_errors(store, keyp):
    assert store.get_tensor(keyp + "_missing") is None
    assert store.put_tensor(keyp, [1, 2, 3]) == -600
    assert store.put_tensor(keyp, torch.zeros(2, dtype=torch.complex64)) == -600
    assert store.put_tensor(keyp, torch.zeros((1,) * 9)) == -600
    # a plain byte object is not a tensor object
    assert store.put(keyp + "_raw", b"x" * 400) == 0
    assert store.get_tensor(keyp + "_raw") is None
    # a second put of an existing key answers as a byte put does
    t = torch.ones(4)
    assert store.put_tensor(keyp + "_dup", t) == 0
    assert store.put_tensor(keyp + "_dup", t) == store.put(keyp + "_dup", b"x")


def test_upsert_replaces(store, keyp):
    # (a read leases the object: each upsert here follows an upsert, not a get)
    a, b = torch.arange(4, dtype=torch.float32), torch.arange(100, dtype=torch.int16)
    assert store.upsert_tensor(keyp, a) == 0
    assert store.upsert_tensor(keyp, b) == 0
    assert torch.equal(store.get_tensor(keyp), b)
    from mooncake.store import ReplicateConfig
    assert store.upsert_pub_tensor(keyp + "_p", b, ReplicateConfig()) == 0
    assert store.upsert_pub_tensor(keyp + "_p", a, ReplicateConfig()) == 0
    assert torch.equal(store.get_tensor(keyp + "_p"), a)


def test_batch_put_get(store, keyp):
    keys = ["%s_%d" % (keyp, i) for i in range(5)]
    ts = [make((i + 1, 3), DTYPES[i * 3], seed=i) for i in range(5)]
    assert store.batch_put_tensor(keys, ts) == [0] * 5
    got = store.batch_get_tensor(keys + [keyp + "_missing"])
    assert len(got) == 6 and got[5] is None
    assert all(same_bytes(g, t) for g, t in zip(got, ts))
    assert store.batch_put_tensor(keys[:2], ts[:1]) == [-600, -600]
    assert store.batch_put_tensor([], []) == []
    assert store.batch_get_tensor([]) == []
    # one bad value fails that key only
    r = store.batch_put_tensor([keyp + "_a", keyp + "_b"], [torch.ones(2), "nope"])
    assert r[0] == 0 and r[1] == -600
    ukeys = [k + "_u" for k in keys[:2]]
    assert store.batch_upsert_tensor(ukeys, ts[:2]) == [0, 0]
    assert store.batch_upsert_tensor(ukeys, ts[2:4]) == [0, 0]
    assert all(same_bytes(store.get_tensor(k), t) for k, t in zip(ukeys, ts[2:4]))


def test_pub_config(store, keyp):
    from mooncake.store import ReplicateConfig
    cfg = ReplicateConfig()
    cfg.replica_num = 1
    t = make((4, 4), torch.bfloat16)
    assert store.pub_tensor(keyp, t, cfg) == 0
    assert same_bytes(store.get_tensor(keyp), t)
    bad = ReplicateConfig()
    bad.preferred_segments = ["a", "b"]
    assert store.pub_tensor(keyp + "_bad", t, bad) == -600
    assert store.batch_pub_tensor([keyp + "_1", keyp + "_2"], [t, t], cfg) == [0, 0]
    assert store.batch_pub_tensor([keyp + "_3"], [t, t], cfg) == [-600]
    assert store.batch_upsert_pub_tensor([keyp + "_1"], [t * 2], cfg) == [0]
    assert torch.equal(store.get_tensor(keyp + "_1"), t * 2)


class Registered:
    """A registered buffer for the into / from forms."""

    def __init__(self, store, size):
        self.store, self.size = store, size
        self.buf = (ctypes.c_ubyte * size)()
        self.ptr = ctypes.addressof(self.buf)
        assert store.register_buffer(self.ptr, size) == 0

    def close(self):
        assert self.store.unregister_buffer(self.ptr) == 0


def test_into_and_from(store, keyp):
    reg = Registered(store, 1 << 20)
    try:
        t = make((16, 32), torch.float16, seed=3)
        assert store.put_tensor(keyp, t) == 0
        view = store.get_tensor_into(keyp, reg.ptr, reg.size)
        assert same_bytes(view, t)
        # the tensor views the caller's buffer: the object lies there
        n = HDR + t.numel() * 2
        assert bytes(reg.buf[:n]) == store.get(keyp)
        assert view.data_ptr() == reg.ptr + HDR
        # and the buffer is a tensor object put_tensor_from stores as is
        assert store.put_tensor_from(keyp + "_from", reg.ptr, n) == 0
        assert store.upsert_tensor_from(keyp + "_up", reg.ptr, n) == 0
        assert store.get(keyp + "_from") == store.get(keyp) == store.get(keyp + "_up")
        # errors: missing key, too small buffer, not a tensor object, null pointer
        assert store.get_tensor_into(keyp + "_missing", reg.ptr, reg.size) is None
        assert store.get_tensor_into(keyp, reg.ptr, n - 1) is None
        assert store.get_tensor_into(keyp, 0, reg.size) is None
        assert store.put_tensor_from(keyp + "_x", reg.ptr, HDR - 1) == -600
        assert store.put_tensor_from(keyp + "_x", reg.ptr, n + 1) == -600
        assert store.put_tensor_from(keyp + "_x", 0, n) == -600
        reg.buf[0] ^= 0xFF
        assert store.put_tensor_from(keyp + "_x", reg.ptr, n) == -600
        assert store.is_exist(keyp + "_x") == 0
    finally:
        reg.close()


def test_batch_into_and_from(store, keyp):
    reg = Registered(store, 4 << 20)
    try:
        keys = ["%s_%d" % (keyp, i) for i in range(4)]
        ts = [make((i + 2, 100), torch.int32, seed=i) for i in range(4)]
        assert store.batch_put_tensor(keys, ts) == [0] * 4
        slot = 1 << 20
        ptrs = [reg.ptr + i * slot for i in range(4)]
        got = store.batch_get_tensor_into(keys, ptrs, [slot] * 4)
        assert all(same_bytes(g, t) for g, t in zip(got, ts))
        sizes = [HDR + t.numel() * 4 for t in ts]
        fkeys = [k + "_from" for k in keys]
        assert store.batch_put_tensor_from(fkeys, ptrs, sizes) == [0] * 4
        ukeys = [k + "_up" for k in keys]
        assert store.batch_upsert_tensor_from(ukeys, ptrs, sizes) == [0] * 4
        assert [store.get(k) for k in fkeys] == [store.get(k) for k in keys]
        assert [store.get(k) for k in ukeys] == [store.get(k) for k in keys]
        # mismatched lengths: -600 per key; a miss or a small buffer: None for that key
        assert store.batch_get_tensor_into(keys, ptrs[:3], [slot] * 4) == [-600] * 4
        assert store.batch_put_tensor_from(fkeys, ptrs, sizes[:2]) == [-600] * 4
        got = store.batch_get_tensor_into([keys[0], keyp + "_missing", keys[2]], ptrs[:3],
                                          [slot, slot, 10])
        assert same_bytes(got[0], ts[0]) and got[1] is None and got[2] is None
    finally:
        reg.close()


def test_zero_size_into_and_from(store, keyp):
    reg = Registered(store, 4096)
    try:
        t = torch.empty((2, 0, 3), dtype=torch.float32)
        assert store.put_tensor(keyp, t) == 0
        assert store.get_size(keyp) == HDR
        got = store.get_tensor_into(keyp, reg.ptr, reg.size)
        assert tuple(got.shape) == (2, 0, 3) and got.dtype == torch.float32
        assert store.put_tensor_from(keyp + "_f", reg.ptr, HDR) == 0
        assert tuple(store.get_tensor(keyp + "_f").shape) == (2, 0, 3)
    finally:
        reg.close()


def test_module_helpers_and_cuda_forms(store, keyp):
    from mooncake import store as ms
    assert ms._tensor_metadata_size() == HDR
    t = make((3, 7), torch.float16, seed=9)
    head, ptr, size, owner = ms._serialize_tensor(t)
    assert head == expected_object(t, 11)[:HDR] and size == 42 and ptr == owner.data_ptr()
    assert store.put_tensor(keyp, t) == 0
    assert same_bytes(ms._deserialize_tensor(store.get(keyp)), t)
    with pytest.raises(ValueError):
        ms._deserialize_tensor(b"\0" * HDR)
    with pytest.raises(ValueError):
        ms._serialize_tensor("x")
    assert store.get_tensor_into_cuda(keyp, t) == -600
    assert store.batch_get_tensor_into_cuda([keyp, keyp], [t, t]) == [-600, -600]
