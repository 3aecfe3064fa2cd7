"""The tensor-parallel forms against a real master: the *_with_tp calls
(key_tp_<rank>) and the *_with_parallelism calls (ParallelAxis,
TensorParallelism, ReadTarget, writer partitions), shards checked byte for
byte and their metadata against upstream's layout."""
import ctypes
import struct

import pytest

torch = pytest.importorskip("torch", reason="torch not installed: the tensor tests run with "
                                                 "`make test-tensor`")
HDR = 304


def det(shape, dtype=torch.float32):
    n = 1
    for d in shape:
        n *= d
    return torch.arange(n, dtype=torch.int64).to(dtype).reshape(shape)


def axes_of(obj):
    """(layout_kind, global, local, [(kind, idx, rank, count, sd, r0, r1)]) of
    a stored object, decoded here with struct (upstream's field list)."""
    _m, _v, _h, _dt, ndim, layout, _f, _off, _n = struct.unpack_from("<IHHiiIIQQ", obj, 0)
    g = struct.unpack_from("<8q", obj, 40)[:ndim]
    loc = struct.unpack_from("<8q", obj, 104)[:ndim]
    count = struct.unpack_from("<I", obj, 168)[0]
    axes = [struct.unpack_from("<iiiiiiq", obj, 176 + 32 * i) for i in range(count)]
    return layout, list(g), list(loc), axes


def P():
    from mooncake import store
    return store


def tp(size, sd, rank=0):
    s = P()
    a = s.ParallelAxis()
    a.kind, a.rank, a.size, a.split_dim = "tp", rank, size, sd
    p = s.TensorParallelism()
    p.axes = [a]
    return p


def axis(kind, rank, size, sd=None, **kw):
    a = P().ParallelAxis()
    a.kind, a.rank, a.size, a.split_dim = kind, rank, size, sd
    for k, v in kw.items():
        setattr(a, k, v)
    return a


def par(*axes):
    p = P().TensorParallelism()
    p.axes = list(axes)
    return p


def target(mode, parallelism=None):
    t = P().ReadTarget()
    t.mode, t.parallelism = mode, parallelism
    return t


class Writer:
    def __init__(self, rank, size, split_dim):
        self.rank, self.size, self.split_dim = rank, size, split_dim


@pytest.mark.parametrize("split_dim", [0, 1, 2])
def test_put_tensor_with_tp_shards(store, keyp, split_dim):
    t = det((4, 6, 8))
    assert store.put_tensor_with_tp(keyp, t, tp_size=2, split_dim=split_dim) == 0
    for r, chunk in enumerate(t.chunk(2, split_dim)):
        obj = store.get("%s_tp_%d" % (keyp, r))
        layout, g, loc, axes = axes_of(obj)
        assert layout == 1 and g == [4, 6, 8] and loc == list(chunk.shape)
        assert axes == [(1, 0, r, 2, split_dim, 0, chunk.shape[split_dim])]
        assert obj[HDR:] == bytes(chunk.contiguous().view(-1).view(torch.uint8).numpy())
        got = store.get_tensor_with_tp(keyp, tp_rank=r, tp_size=2, split_dim=split_dim)
        assert torch.equal(got, chunk)
    assert store.is_exist(keyp) == 0
    # tp_size 1 is put_tensor
    assert store.put_tensor_with_tp(keyp, t, tp_size=1) == 0
    assert torch.equal(store.get_tensor_with_tp(keyp), t)


def test_tp_errors(store, keyp):
    t = det((5, 4))
    assert store.put_tensor_with_tp(keyp, t, tp_size=2, split_dim=0) == -600  # 5 % 2
    assert store.put_tensor_with_tp(keyp, t, tp_size=2, split_dim=2) == -600  # no dim 2
    assert store.put_tensor_with_tp(keyp, "x", tp_size=2) == -600
    assert store.get_tensor_with_tp(keyp, tp_rank=0, tp_size=2) is None
    assert store.batch_put_tensor_with_tp([keyp], [t, t], tp_size=2) == [-600]


def test_batch_tp_and_pub(store, keyp):
    from mooncake.store import ReplicateConfig
    keys = ["%s_%d" % (keyp, i) for i in range(3)]
    ts = [det((4, 2 * (i + 1)), torch.int16) for i in range(3)]
    assert store.batch_put_tensor_with_tp(keys, ts, tp_size=2, split_dim=1) == [0, 0, 0]
    for r in range(2):
        got = store.batch_get_tensor_with_tp(keys, tp_rank=r, tp_size=2)
        assert all(torch.equal(g, t.chunk(2, 1)[r]) for g, t in zip(got, ts))
    r = store.batch_put_tensor_with_tp([keyp + "_ok", keyp + "_bad"], [det((4, 4)), det((3, 3))],
                                       tp_size=2)
    assert r == [0, -600]
    cfg = ReplicateConfig()
    assert store.pub_tensor_with_tp(keyp + "_p", ts[2], config=cfg, tp_size=3, split_dim=1) == 0
    assert torch.equal(store.get_tensor_with_tp(keyp + "_p", tp_rank=2, tp_size=3),
                       ts[2].chunk(3, 1)[2])
    assert store.batch_pub_tensor_with_tp([keyp + "_q"], [ts[0]], config=cfg, tp_size=2) == [0]
    assert torch.equal(store.get_tensor_with_tp(keyp + "_q", tp_rank=1, tp_size=2),
                       ts[0].chunk(2, 0)[1])


def test_tp_from_and_into(store, keyp):
    size = 1 << 20
    buf = (ctypes.c_ubyte * size)()
    ptr = ctypes.addressof(buf)
    assert store.register_buffer(ptr, size) == 0
    try:
        t = det((6, 10), torch.float64)
        assert store.put_tensor(keyp + "_seed", t) == 0
        assert torch.equal(store.get_tensor_into(keyp + "_seed", ptr, size), t)
        n = HDR + t.numel() * 8
        assert store.put_tensor_with_tp_from(keyp, ptr, n, tp_size=3, split_dim=0) == 0
        for r in range(3):
            got = store.get_tensor_with_tp_into(keyp, ptr + (1 << 18), 1 << 18, tp_rank=r,
                                                tp_size=3)
            assert torch.equal(got, t.chunk(3, 0)[r])
        assert store.batch_put_tensor_with_tp_from([keyp + "_b"], [ptr], [n], tp_size=2,
                                                   split_dim=1) == [0]
        got = store.batch_get_tensor_with_tp_into([keyp + "_b"], [ptr + (1 << 19)], [1 << 18],
                                                  tp_rank=1, tp_size=2)
        assert torch.equal(got[0], t.chunk(2, 1)[1])
        assert store.put_tensor_with_tp_from(keyp + "_c", ptr, n, tp_size=4) == -600  # 6 % 4
    finally:
        assert store.unregister_buffer(ptr) == 0


def test_parallelism_tp_shards_reshard_and_full(store, keyp):
    t = det((8, 12, 4))
    for r, shard in enumerate(t.chunk(4, 1)):
        assert store.put_tensor_with_parallelism(keyp, shard.contiguous(), tp(4, 1, r)) == 0
    # stored where the *_with_tp calls read, with the whole tensor's shape
    layout, g, loc, axes = axes_of(store.get(keyp + "_tp_2"))
    assert (layout, g, loc) == (1, [8, 12, 4], [8, 3, 4])
    assert torch.equal(store.get_tensor_with_tp(keyp, tp_rank=2, tp_size=4), t.chunk(4, 1)[2])
    for r in range(4):
        got = store.get_tensor_with_parallelism(keyp, target("shard", tp(4, 1, r)))
        assert torch.equal(got, t.chunk(4, 1)[r])
    for read_tp in (1, 2, 3, 6, 12):  # another TP size: cut from the rebuilt tensor
        for r in range(read_tp):
            got = store.get_tensor_with_parallelism(keyp, target("shard", tp(read_tp, 1, r)))
            assert torch.equal(got, t.chunk(read_tp, 1)[r]), (read_tp, r)
        assert torch.equal(store.get_tensor_with_parallelism(
            keyp, target("full", tp(read_tp, 1, read_tp - 1))), t)
    assert store.get_tensor_with_parallelism(keyp, target("shard", tp(5, 1, 0))) is None
    assert store.get_tensor_with_parallelism(keyp + "_missing", target("full", tp(2, 1))) is None


def test_parallelism_whole_object_and_as_stored(store, keyp):
    t = det((3, 4), torch.uint8)
    assert store.put_tensor_with_parallelism(keyp, t) == 0
    assert torch.equal(store.get_tensor_with_parallelism(keyp), t)
    assert torch.equal(store.get_tensor_with_parallelism(keyp, target("as_stored")), t)
    assert torch.equal(store.get_tensor_with_parallelism(keyp, target("FULL")), t)
    with pytest.raises(RuntimeError):
        target("sideways")


def test_parallelism_multi_axis(store, keyp):
    t = det((4, 6))
    for r in range(3):
        p = par(axis("dp", 1, 2), axis("tp", r, 3, 1))
        assert store.put_tensor_with_parallelism(keyp, t, p) == 0
    key = keyp + "__dp_1of2__tp_0of3_sd1"
    layout, g, loc, axes = axes_of(store.get(key))
    assert (g, loc) == ([4, 6], [4, 2])
    assert axes == [(0, 0, 1, 2, -1, 0, 0), (1, 1, 0, 3, 1, 0, 2)]
    # axis order does not matter to the key
    got = store.get_tensor_with_parallelism(keyp, target("shard", par(axis("tp", 2, 3, 1),
                                                                        axis("dp", 1, 2))))
    assert torch.equal(got, t.chunk(3, 1)[2])
    full = store.get_tensor_with_parallelism(keyp, target("full", par(axis("dp", 1, 2),
                                                                      axis("tp", 0, 3, 1))))
    assert torch.equal(full, t)
    # pp and ep carry their stage / expert id in the key and in reserved0
    p = par(axis("pp", 0, 2, stage_id=7), axis("tp", 1, 2, 0))
    assert store.put_tensor_with_parallelism(keyp + "_pp", t, p) == 0
    obj = store.get(keyp + "_pp__tp_1of2_sd0__pp_0of2_sid7")
    assert axes_of(obj)[3][0][:6] == (3, 0, 0, 2, -1, 7)
    assert torch.equal(store.get_tensor_with_parallelism(keyp + "_pp", target("shard", p)),
                       t.chunk(2, 0)[1])
    p = par(axis("ep", 1, 4, expert_id=11))
    assert store.put_tensor_with_parallelism(keyp + "_ep", t, p) == 0
    assert torch.equal(store.get_tensor(keyp + "_ep__ep_1of4_eid11"), t)


def test_parallelism_invalid_axes(store, keyp):
    t = det((4, 4))
    bad = [par(axis("dp", 0, 2, 0)),                      # DP must not split
           par(axis("ep", 0, 2)),                         # EP needs expert_id
           par(axis("pp", 0, 2, 1, stage_id=1)),          # PP must not split
           par(axis("tp", 0, 2)),                         # TP needs split_dim
           par(axis("tp", 2, 2, 0)),                      # rank out of range
           par(axis("tp", 0, 2, 0), axis("tp", 1, 2, 0)),  # duplicate kind
           par(axis("xp", 0, 1)),                         # unknown kind
           par()]                                         # no axes
    for p in bad:
        assert store.put_tensor_with_parallelism(keyp, t, p) == -600
    assert store.put_tensor_with_parallelism(keyp, t, tp(2, 0), writer_partition=Writer(0, 2, 0)) \
        == -600
    assert store.put_tensor_with_parallelism(keyp, t, writer_partition=Writer(2, 2, 0)) == -600
    assert store.put_tensor_with_parallelism(keyp, t, writer_partition=Writer(0, 3, 0)) == -600


def test_writer_partitions(store, keyp):
    t = det((6, 4), torch.int32)
    for r in range(3):
        assert store.put_tensor_with_parallelism(keyp, t, writer_partition=Writer(r, 3, 0)) == 0
    assert torch.equal(store.get_tensor(keyp + "__writer_1of3_sd0"), t.chunk(3, 0)[1])
    m = store.get(keyp + "__writer_manifest")
    assert len(m) == 96
    assert struct.unpack_from("<IHHiiiii", m, 0) == (0x574D414E, 1, 96, 6, 2, 0, 3, 0)
    assert struct.unpack_from("<2q", m, 32) == (6, 4)
    assert torch.equal(store.get_tensor_with_parallelism(keyp, target("full")), t)
    for r in range(3):
        got = store.get_tensor_with_parallelism(keyp, target("shard", tp(3, 0, r)))
        assert torch.equal(got, t.chunk(3, 0)[r])
    keys = [keyp + "_a", keyp + "_b"]
    for r in range(2):
        rc = store.batch_put_tensor_with_parallelism(
            keys, [t, t * 2], writer_partitions=[Writer(r, 2, 1), Writer(r, 2, 1)])
        assert rc == [0, 0]
    got = store.batch_get_tensor_with_parallelism(keys, [target("full"), target("full")])
    assert torch.equal(got[0], t) and torch.equal(got[1], t * 2)


def test_parallelism_batch_and_into(store, keyp):
    keys = ["%s_%d" % (keyp, i) for i in range(3)]
    ts = [det((4, 4 * (i + 1))) for i in range(3)]
    for r in range(2):
        shards = [x.chunk(2, 1)[r].contiguous() for x in ts]
        assert store.batch_put_tensor_with_parallelism(keys, shards,
                                                       [tp(2, 1, r) for _ in keys]) == [0] * 3
    assert store.batch_put_tensor_with_parallelism(keys, ts, [tp(2, 1)]) == [-600] * 3
    assert store.batch_put_tensor_with_parallelism(keys, ts[:2], None) == [-600] * 3
    size = 1 << 20
    buf = (ctypes.c_ubyte * (3 * size))()
    base = ctypes.addressof(buf)
    ptrs = [base + i * size for i in range(3)]
    assert store.register_buffer(base, 3 * size) == 0
    try:
        got = store.batch_get_tensor_with_parallelism_into(
            keys, ptrs, [size] * 3, [target("full", tp(2, 1, 1))] * 3)
        assert all(torch.equal(g, x) for g, x in zip(got, ts))
        # the whole tensor's object was left in the buffer: put_tensor_from stores it
        n = HDR + ts[0].numel() * 4
        assert store.put_tensor_from(keyp + "_copy", ptrs[0], n) == 0
        assert torch.equal(store.get_tensor(keyp + "_copy"), ts[0])
        got = store.get_tensor_with_parallelism_into(keys[1], ptrs[1], size,
                                                     target("shard", tp(2, 1, 1)))
        assert torch.equal(got, ts[1].chunk(2, 1)[1]) and got.data_ptr() == ptrs[1] + HDR
        got = store.get_tensor_with_parallelism_into(keys[2], ptrs[2], size,
                                                     target("shard", tp(4, 1, 3)))
        assert torch.equal(got, ts[2].chunk(4, 1)[3])
        assert store.get_tensor_with_parallelism_into(keys[2], ptrs[2], HDR + 8,
                                                      target("full", tp(2, 1))) is None
        # from: the buffer holds a whole tensor, every TP rank is written
        assert store.put_tensor_with_parallelism_from(keyp + "_f", ptrs[0], n, tp(2, 1, 0)) == 0
        for r in range(2):
            assert torch.equal(store.get_tensor_with_tp(keyp + "_f", tp_rank=r, tp_size=2),
                               ts[0].chunk(2, 1)[r])
        assert store.upsert_tensor_with_parallelism_from(keyp + "_g", ptrs[0], n) == 0
        assert torch.equal(store.get_tensor(keyp + "_g"), ts[0])
        assert store.batch_put_tensor_with_parallelism_from(
            [keyp + "_h"], [ptrs[0]], [n], writer_partitions=[Writer(0, 1, 0)]) == [0]
        assert torch.equal(store.get_tensor_with_parallelism(keyp + "_h", target("full")), ts[0])
    finally:
        assert store.unregister_buffer(base) == 0


def test_parallelism_upsert(store, keyp):
    t = det((4, 2))
    assert store.upsert_tensor_with_parallelism(keyp, t, tp(2, 0, 0)) == 0
    assert store.upsert_tensor_with_parallelism(keyp, t * 3, tp(2, 0, 0)) == 0
    assert torch.equal(store.get_tensor(keyp + "_tp_0"), t * 3)
    assert store.batch_upsert_tensor_with_parallelism([keyp + "_b"], [t]) == [0]
    assert torch.equal(store.get_tensor(keyp + "_b"), t)


def test_tp_inner_split_many_rows(store, keyp):
    """Shards cut along an inner dim are written from the whole tensor's
    rows in place, or (past 1024 rows) from one contiguous copy: same bytes."""
    for rows in (1024, 1025, 3000):
        t = det((rows, 6), torch.int16)
        key = "%s_%d" % (keyp, rows)
        assert store.put_tensor_with_tp(key, t, tp_size=3, split_dim=1) == 0
        for r in range(3):
            obj = store.get("%s_tp_%d" % (key, r))
            assert obj[HDR:] == bytes(t.chunk(3, 1)[r].contiguous().view(-1).view(torch.uint8)
                                      .numpy())
        assert store.put_tensor_with_parallelism(key + "_w", t, writer_partition=Writer(1, 2, 1)) \
            == 0
        assert torch.equal(store.get_tensor(key + "_w__writer_1of2_sd1"), t.chunk(2, 1)[1])


def test_full_into_is_assembled_in_place(store, keyp, monkeypatch):
    """With a manifest, a whole-tensor read into a buffer places every shard's
    rows straight there (one ranged read): the rebuild-by-copy path is not taken."""
    def no_copy(*a):
        raise AssertionError("rebuilt by copy")
    size = 1 << 20
    buf = (ctypes.c_ubyte * size)()
    ptr = ctypes.addressof(buf)
    assert store.register_buffer(ptr, size) == 0
    try:
        for sd in (0, 1, 2):
            t = det((4, 6, 8), torch.bfloat16)
            key = "%s_%d" % (keyp, sd)
            for r, shard in enumerate(t.chunk(2, sd)):
                assert store.put_tensor_with_parallelism(key, shard.contiguous(), tp(2, sd, r)) == 0
            with monkeypatch.context() as m:
                m.setattr(type(store), "_full_tensor", no_copy)
                got = store.get_tensor_with_parallelism_into(key, ptr, size,
                                                             target("full", tp(4, sd, 3)))
            assert torch.equal(got, t) and got.data_ptr() == ptr + HDR
            # and what it left in the buffer is the whole tensor's object
            n = HDR + t.numel() * 2
            assert store.put_tensor_from(key + "_copy", ptr, n) == 0
            assert torch.equal(store.get_tensor(key + "_copy"), t)
            assert store.get_tensor_with_parallelism_into(key, ptr, n - 1,
                                                          target("full", tp(2, sd))) is None
    finally:
        assert store.unregister_buffer(ptr) == 0


def test_parallelism_batch_from_forms(store, keyp):
    size = 1 << 16
    buf = (ctypes.c_ubyte * size)()
    ptr = ctypes.addressof(buf)
    assert store.register_buffer(ptr, size) == 0
    try:
        t = det((4, 6), torch.int64)
        assert store.put_tensor(keyp + "_seed", t) == 0
        assert store.get_tensor_into(keyp + "_seed", ptr, size) is not None
        n = HDR + t.numel() * 8
        keys = [keyp + "_a", keyp + "_b"]
        assert store.batch_put_tensor_with_parallelism_from(keys, [ptr, ptr], [n]) == [-600] * 2
        assert store.batch_put_tensor_with_parallelism_from(keys, [ptr, ptr, ptr], [n, n]) == \
            [-600] * 2
        assert store.batch_put_tensor_with_parallelism_from(keys, [ptr, ptr], [n, n]) == [0, 0]
        assert [store.get(k) for k in keys] == [store.get(keyp + "_seed")] * 2
        ps = [par(axis("dp", 0, 2), axis("tp", 0, 3, 1)), tp(2, 0)]
        assert store.batch_upsert_tensor_with_parallelism_from(keys, [ptr, ptr], [n, n],
                                                               parallelisms=ps) == [0, 0]
        for r in range(3):
            got = store.get_tensor(keyp + "_a__dp_0of2__tp_%dof3_sd1" % r)
            assert torch.equal(got, t.chunk(3, 1)[r])
        assert torch.equal(store.get_tensor(keyp + "_b_tp_1"), t.chunk(2, 0)[1])
        assert store.put_tensor_with_parallelism_from(keyp + "_c", ptr, n - 1, tp(2, 0)) == -600
    finally:
        assert store.unregister_buffer(ptr) == 0
