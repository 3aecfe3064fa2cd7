"""EngramStore (mooncake/engram.py): a layer's per-head float32 tables in the store, rows
read back by id with one ranged read; the layout, the errors and the removal."""
import numpy as np

from util import MB, mk_store

from mooncake.store import EngramStore, EngramStoreConfig


def config(sizes, dim):
    c = EngramStoreConfig()
    c.table_vocab_sizes = list(sizes)
    c.embedding_dim = dim
    return c


def tables_for(sizes, dim, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, dim), dtype=np.float32) for n in sizes]


def expected(tables, ids):
    ids = np.asarray(ids)
    return np.stack([tables[h][ids[..., h]] for h in range(len(tables))], axis=2)


def raises(exc, fn, *a):
    try:
        fn(*a)
    except exc:
        return
    raise AssertionError("%s%r did not raise %s" % (fn.__name__, a, exc.__name__))


def case_layout_without_store():
    c = EngramStoreConfig()
    assert c.table_vocab_sizes == [1024] and c.embedding_dim == 64
    e = EngramStore(layer_id=7, config=config([5, 9, 3], 4))
    assert e.get_num_heads() == 3 and e.get_embedding_dim() == 4
    assert e.get_table_vocab_sizes() == [5, 9, 3]
    assert e.get_store_keys() == ["engram:l7:h0", "engram:l7:h1", "engram:l7:h2"]
    for bad in (config([], 4), config([5, 0], 4), config([5, -1], 4), config([True], 4),
                config([5], 0), config([5], -3)):
        raises(ValueError, EngramStore, 1, bad)
    raises(RuntimeError, e.populate, tables_for([5, 9, 3], 4, 0))
    raises(RuntimeError, e.lookup, [[[0, 0, 0]]])
    raises(RuntimeError, e.remove_from_store)


def case_rows_read_back_byte_for_byte():
    # one store populates, another reads the rows out of the first one's segment
    a = mk_store(seg=64 * MB, lbuf=16 * MB)
    b = mk_store(seg=16 * MB, lbuf=16 * MB)
    sizes, dim = [4096, 1000, 333], 32
    tables = tables_for(sizes, dim, 1)
    ea = EngramStore(layer_id=11, config=config(sizes, dim), store=a)
    assert ea.populate(tables) == 0
    eb = EngramStore(layer_id=11, config=config(sizes, dim), store=b)
    rng = np.random.default_rng(2)
    ids = np.stack([rng.integers(0, n, size=(4, 256)) for n in sizes], axis=2)
    ids[0, 0] = [n - 1 for n in sizes]  # the last row of every table
    ids[0, 1] = 0
    for e in (ea, eb):
        out = e.lookup(ids)
        assert out.shape == (4, 256, 3, dim) and out.dtype == np.float32
        assert out.tobytes() == expected(tables, ids).tobytes()
    # nested lists and int32 ids take the same path
    small = ids[:2, :5]
    assert eb.lookup(small.tolist()).tobytes() == expected(tables, small).tobytes()
    assert eb.lookup(small.astype(np.int32)).tobytes() == expected(tables, small).tobytes()
    # tables of another dtype are stored as float32
    e64 = EngramStore(layer_id=12, config=config([3], 2), store=a)
    t64 = np.arange(6, dtype=np.float64).reshape(3, 2)
    assert e64.populate([t64]) == 0
    assert e64.lookup([[[2], [0]]]).tolist() == [[[[4.0, 5.0]], [[0.0, 1.0]]]]
    assert ea.remove_from_store(force=True) == 3 and e64.remove_from_store(force=True) == 1
    assert a.close() == 0 and b.close() == 0


def case_errors_leave_the_layer_as_it_was():
    s = mk_store(seg=32 * MB, lbuf=16 * MB)
    sizes, dim = [17, 19], 8
    e = EngramStore(layer_id=21, config=config(sizes, dim), store=s)
    raises(RuntimeError, e.lookup, [[[0, 0]]])  # nothing stored yet
    t = tables_for(sizes, dim, 3)
    raises(ValueError, e.populate, t[:1])  # one table for two heads
    raises(ValueError, e.populate, [t[0], t[1][:-1]])  # a row short
    raises(ValueError, e.populate, [t[0], t[1][:, :4]])  # rows too narrow
    assert all(s.is_exist(k) == 0 for k in e.get_store_keys())
    assert e.populate(t) == 0
    raises(RuntimeError, e.populate, tables_for(sizes, dim, 4))  # create-only
    ok = [[[16, 18], [0, 0]]]
    assert e.lookup(ok).tobytes() == expected(t, ok).tobytes()  # the first tables stayed
    raises(ValueError, e.lookup, [])
    raises(ValueError, e.lookup, np.zeros((1, 1, 3), dtype=np.int64))  # three heads
    raises(ValueError, e.lookup, np.zeros((2, 2), dtype=np.int64))  # not [B, L, H]
    raises(IndexError, e.lookup, [[[17, 0]]])  # past table 0's end
    raises(IndexError, e.lookup, [[[0, 19]]])
    raises(IndexError, e.lookup, [[[0, -1]]])
    raises(TypeError, e.lookup, [[[0.5, 1.0]]])
    assert e.remove_from_store(force=True) == 2
    assert all(s.is_exist(k) == 0 for k in e.get_store_keys())
    assert e.remove_from_store(force=True) == 0
    raises(RuntimeError, e.lookup, ok)
    assert e.populate(t) == 0  # the layer id is free again
    assert e.remove_from_store(force=True) == 2
    assert s.close() == 0
