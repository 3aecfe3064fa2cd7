"""mooncake.engram: EngramStore, embedding tables of one model layer kept in
the store and read back row by row (upstream's `EngramStore` surface: names,
arguments, key names and data contract; docs/python.md "EngramStore").

A layer's tables are one object per head, key `engram:l{layer_id}:h{head}`,
holding a float32 table `[N_h, D]` in row-major order. `lookup(row_ids)`
takes row ids `[B, L, H]` (nested lists or an int64 array) and returns the
selected rows `[B, L, H, D]`: one `get_into_ranges` call whose ranges copy
each row from its table straight into the output array (no table is read
whole). The caller decides the layout: nothing here hashes or tokenizes.

numpy is needed by populate and lookup only (imported there)."""

INVALID_PARAMS = -600
ROW_DTYPE = "float32"


class EngramStoreConfig:
    """The physical layout of one layer: the per-head table sizes N_h and the
    row width D."""

    def __init__(self, table_vocab_sizes=None, embedding_dim=64):
        self.table_vocab_sizes = [1024] if table_vocab_sizes is None else list(table_vocab_sizes)
        self.embedding_dim = embedding_dim

    def __repr__(self):
        return "EngramStoreConfig(table_vocab_sizes=%r, embedding_dim=%r)" % (
            self.table_vocab_sizes, self.embedding_dim)


def _positive_int(v, what):
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ValueError("%s must be a positive integer, got %r" % (what, v))
    return v


class EngramStore:
    """One layer's tables. `store` is a MooncakeDistributedStore that is set
    up, or None: then only the layout and the key names are available."""

    def __init__(self, layer_id, config, store=None):
        sizes = list(getattr(config, "table_vocab_sizes", None) or [])
        if not sizes:
            raise ValueError("table_vocab_sizes must not be empty")
        self._sizes = [_positive_int(n, "table_vocab_sizes[%d]" % h) for h, n in enumerate(sizes)]
        self._dim = _positive_int(getattr(config, "embedding_dim", None), "embedding_dim")
        self._layer = int(layer_id)
        self._keys = ["engram:l%d:h%d" % (self._layer, h) for h in range(len(self._sizes))]
        self._store = store

    # ---- layout ----

    def get_table_vocab_sizes(self):
        return list(self._sizes)

    def get_store_keys(self):
        return list(self._keys)

    def get_num_heads(self):
        return len(self._sizes)

    def get_embedding_dim(self):
        return self._dim

    def _need_store(self, what):
        if self._store is None:
            raise RuntimeError("EngramStore layer %d: %s needs a store (constructed with "
                               "store=None)" % (self._layer, what))
        return self._store

    # ---- populate ----

    def populate(self, embedding_buffers):
        """Stores one float32 table [N_h, D] per head. Create-only: a layer
        whose keys exist already is refused (remove_from_store first). If a
        put fails, the tables this call wrote are removed before it raises."""
        import numpy as np
        s = self._need_store("populate")
        tables = list(embedding_buffers)
        if len(tables) != len(self._sizes):
            raise ValueError("populate: %d tables for %d heads" % (len(tables), len(self._sizes)))
        arrs = []
        for h, t in enumerate(tables):
            a = np.ascontiguousarray(t, dtype=ROW_DTYPE)
            if a.shape != (self._sizes[h], self._dim):
                raise ValueError("populate: table %d has shape %s, want (%d, %d)"
                                 % (h, tuple(a.shape), self._sizes[h], self._dim))
            arrs.append(a)
        there = [k for k in self._keys if s.is_exist(k) == 1]
        if there:
            raise RuntimeError("populate: layer %d is stored already (%s); remove_from_store "
                               "first" % (self._layer, ", ".join(there)))
        rcs = s.batch_put_from(self._keys, [a.ctypes.data for a in arrs],
                               [a.nbytes for a in arrs])
        bad = [(k, rc) for k, rc in zip(self._keys, rcs) if rc != 0]
        if bad:
            for k, rc in zip(self._keys, rcs):
                if rc == 0:
                    s.remove(k, True)  # best effort: the error raised is the put's
            raise RuntimeError("populate: layer %d: %s" % (
                self._layer, ", ".join("%s: error %d" % kr for kr in bad)))
        return 0

    # ---- lookup ----

    def lookup(self, row_ids):
        """Rows [B, L, H, D] (float32) for row ids [B, L, H]: head h's id
        picks a row of table h and must lie in [0, N_h)."""
        import numpy as np
        s = self._need_store("lookup")
        ids = np.asarray(row_ids)
        if ids.size == 0:
            raise ValueError("lookup: empty row_ids")
        if ids.dtype.kind not in "iu":
            raise TypeError("lookup: row ids must be integers, got %s" % ids.dtype)
        heads = len(self._sizes)
        if ids.ndim != 3 or ids.shape[2] != heads:
            raise ValueError("lookup: row_ids has shape %s, want [B, L, %d]"
                             % (tuple(ids.shape), heads))
        ids = ids.astype(np.int64, copy=False)
        limit = np.asarray(self._sizes, dtype=np.int64)
        out_of_range = (ids < 0) | (ids >= limit)
        if out_of_range.any():
            b, l, h = (int(x) for x in np.argwhere(out_of_range)[0])
            raise IndexError("lookup: row id %d at [%d, %d, %d] is outside table %d (%d rows)"
                             % (int(ids[b, l, h]), b, l, h, h, self._sizes[h]))
        B, L = ids.shape[0], ids.shape[1]
        out = np.empty((B, L, heads, self._dim), dtype=ROW_DTYPE)
        row = self._dim * out.itemsize
        # range of (b, l, h): table h from ids[b, l, h] * row, to out[b, l, h]
        dst = (np.arange(B * L * heads, dtype=np.int64) * row).reshape(B * L, heads)
        src = ids.reshape(B * L, heads) * row
        n = B * L
        ptr = out.ctypes.data
        reg = s.register_buffer(ptr, out.nbytes)
        try:
            got = s.get_into_ranges([ptr], [self._keys], [[dst[:, h].tolist() for h in range(heads)]],
                                    [[src[:, h].tolist() for h in range(heads)]],
                                    [[[row] * n for _ in range(heads)]])
        finally:
            if reg == 0:
                s.unregister_buffer(ptr)
        for h, res in enumerate(got[0] if got else [[INVALID_PARAMS]] * heads):
            bad = next((rc for rc in res if rc != row), None)
            if bad is not None or len(res) != n:
                raise RuntimeError("lookup: layer %d head %d (%s): error %s" % (
                    self._layer, h, self._keys[h], bad if bad is not None else "short read"))
        return out

    # ---- remove ----

    def remove_from_store(self, force=False):
        """Removes the layer's tables; returns how many were removed (0 when
        none was there)."""
        s = self._need_store("remove_from_store")
        return sum(1 for k in self._keys if s.remove(k, bool(force)) == 0)
