"""The parallelism forms of the tensor API (upstream's *_with_parallelism
methods, ParallelAxis / TensorParallelism / ReadTarget), mixed into
mooncake.store.MooncakeDistributedStore. Key names, shard layout and
manifests are upstream's (docs/python.md "Tensor objects")."""
import ctypes
import logging

from . import tensor_layout as tl
from .store_tensor import (INVALID_PARAMS, _valid_config, encode_cut, encode_full,
                           encode_shard, split_uniform, tp_key, uniform_split_ok)

_log = logging.getLogger("mooncake.store")
OBJECT_ALREADY_EXISTS = -705
_ORDER = {tl.AXIS_DP: 0, tl.AXIS_TP: 1, tl.AXIS_EP: 2, tl.AXIS_PP: 3}


class ParallelAxis:
    """One parallelism axis: kind ("tp", "dp", "ep", "pp"; any case), this
    rank, the axis size, and split_dim (TP), expert_id (EP), stage_id (PP)."""

    def __init__(self, kind="", rank=0, size=1, split_dim=None, expert_id=None, stage_id=None):
        self.kind, self.rank, self.size = kind, rank, size
        self.split_dim, self.expert_id, self.stage_id = split_dim, expert_id, stage_id

    def __repr__(self):
        return "ParallelAxis(%r, rank=%r, size=%r, split_dim=%r, expert_id=%r, stage_id=%r)" % (
            self.kind, self.rank, self.size, self.split_dim, self.expert_id, self.stage_id)


class TensorParallelism:
    """A list of ParallelAxis (at most one per kind)."""

    def __init__(self, axes=None):
        self.axes = list(axes or [])


class ReadTarget:
    """What a read returns: mode "as_stored" (the object under the key),
    "shard" (the shard of parallelism) or "full" (the whole tensor)."""

    _MODES = ("as_stored", "shard", "full")

    def __init__(self, mode="as_stored", parallelism=None):
        self.mode = mode
        self.parallelism = parallelism

    @property
    def mode(self):
        return self._mode

    @mode.setter
    def mode(self, value):
        m = str(value).lower()
        if m not in self._MODES:
            raise RuntimeError("Unsupported ReadTarget mode")
        self._mode = m


class _Spec:
    """A validated axis: AXIS_* kind and its fields."""

    __slots__ = ("kind", "rank", "size", "split_dim", "expert_id", "stage_id")

    def __init__(self, kind, rank, size, split_dim=None, expert_id=None, stage_id=None):
        self.kind, self.rank, self.size = kind, rank, size
        self.split_dim, self.expert_id, self.stage_id = split_dim, expert_id, stage_id

    def key(self):
        return (self.kind, self.rank, self.size, self.split_dim, self.expert_id, self.stage_id)

    def with_rank(self, rank, size=None, split_dim=None):
        return _Spec(self.kind, rank, self.size if size is None else size,
                     self.split_dim if split_dim is None else split_dim, self.expert_id,
                     self.stage_id)

    def stored(self):
        """The layout axis written for this spec."""
        extra = self.expert_id if self.kind == tl.AXIS_EP else (
            self.stage_id if self.kind == tl.AXIS_PP else 0)
        return tl.Axis(self.kind, self.rank, self.size,
                       -1 if self.split_dim is None else self.split_dim, extra or 0)


def _opt_int(v):
    return None if v is None else int(v)


def parse_parallelism(obj, what, allow_empty=False):
    """[_Spec] of a TensorParallelism (any object with .axes of objects with
    kind/rank/size/split_dim/expert_id/stage_id), checked as upstream checks
    it; None (one log line) when it is not valid."""
    axes_obj = getattr(obj, "axes", None)
    if axes_obj is None:
        _log.error("%s: parallelism must provide axes", what)
        return None
    specs, seen = [], set()
    try:
        for a in axes_obj:
            kind = tl.AXIS_KINDS.get(str(getattr(a, "kind")).lower())
            if kind is None:
                _log.error("%s: unsupported axis kind %r", what, getattr(a, "kind"))
                return None
            s = _Spec(kind, int(a.rank), int(a.size), _opt_int(getattr(a, "split_dim", None)),
                      _opt_int(getattr(a, "expert_id", None)),
                      _opt_int(getattr(a, "stage_id", None)))
            specs.append(s)
    except (AttributeError, TypeError, ValueError) as e:
        _log.error("%s: bad parallelism axis: %s", what, e)
        return None
    if not specs and not allow_empty:
        _log.error("%s: parallelism axes cannot be empty", what)
        return None
    if len(specs) > tl.MAX_AXES:
        _log.error("%s: %d axes, at most %d", what, len(specs), tl.MAX_AXES)
        return None
    for s in specs:
        name = tl.AXIS_NAMES[s.kind]
        if s.size <= 0 or not 0 <= s.rank < s.size:
            _log.error("%s: invalid rank/size for axis %s", what, name)
            return None
        if s.kind in seen:
            _log.error("%s: duplicate axis kinds are not supported", what)
            return None
        seen.add(s.kind)
        bad = {tl.AXIS_TP: s.split_dim is None,
               tl.AXIS_DP: s.split_dim is not None,
               tl.AXIS_EP: s.expert_id is None or s.split_dim is not None,
               tl.AXIS_PP: s.stage_id is None or s.split_dim is not None}[s.kind]
        if bad:
            _log.error("%s: axis %s: TP needs split_dim, EP expert_id, PP stage_id; only TP "
                       "splits", what, name)
            return None
    return specs


def _tp_index(specs):
    for i, s in enumerate(specs):
        if s.kind == tl.AXIS_TP:
            return i
    return None


def _canonical(specs):
    return sorted(specs, key=lambda s: _ORDER[s.kind])


def parallelism_key(base_key, specs):
    """Upstream's key for a shard: "<key>_tp_<rank>" for a single TP axis,
    else "<key>" + "__<kind>_<rank>of<size>[_sd<d>][_eid<e>][_sid<s>]" per
    axis in the order dp, tp, ep, pp."""
    if len(specs) == 1 and specs[0].kind == tl.AXIS_TP:
        return tp_key(base_key, specs[0].rank)
    key = base_key
    for s in _canonical(specs):
        key += "__%s_%dof%d" % (tl.AXIS_NAMES[s.kind], s.rank, s.size)
        if s.split_dim is not None:
            key += "_sd%d" % s.split_dim
        if s.expert_id is not None:
            key += "_eid%d" % s.expert_id
        if s.stage_id is not None:
            key += "_sid%d" % s.stage_id
    return key


def writer_key(base_key, rank, size, split_dim):
    return "%s__writer_%dof%d_sd%d" % (base_key, rank, size, split_dim)


def writer_manifest_key(base_key):
    return base_key + "__writer_manifest"


def parallelism_manifest_key(base_key):
    return base_key + "__parallelism_manifest"


def _specs_of(md):
    """The canonical [_Spec] a shard's metadata describes."""
    out = []
    for a in md.axes:
        if a.kind not in tl.AXIS_NAMES:
            return None
        out.append(_Spec(a.kind, a.rank, a.count, a.split_dim if a.split_dim >= 0 else None,
                         a.extra if a.kind == tl.AXIS_EP else None,
                         a.extra if a.kind == tl.AXIS_PP else None))
    return _canonical(out)


def _matches(specs, md):
    stored = _specs_of(md) if md.layout == tl.LAYOUT_SHARD else None
    return stored is not None and [s.key() for s in stored] == [s.key() for s in
                                                               _canonical(specs)]


def _parse_writer(obj, what):
    try:
        rank, size, split_dim = int(obj.rank), int(obj.size), int(obj.split_dim)
    except (AttributeError, TypeError, ValueError):
        _log.error("%s: writer_partition must provide rank, size and split_dim", what)
        return None
    if size <= 0 or not 0 <= rank < size or split_dim < 0:
        _log.error("%s: invalid writer partition %d of %d, split_dim %d", what, rank, size,
                   split_dim)
        return None
    return rank, size, split_dim


def _put_to_buffer(t, md, buffer_ptr, size, what):
    """Write md + t's bytes at buffer_ptr (size bytes) and return a tensor
    viewing them there, or None when they do not fit."""
    nbytes = t.numel() * t.element_size()
    md.data_bytes = nbytes
    total = tl.METADATA_SIZE + nbytes
    if total > size:
        _log.error("%s: %d bytes needed, the buffer has %d", what, total, size)
        return None
    ctypes.memmove(buffer_ptr, md.pack(), tl.METADATA_SIZE)
    if nbytes:
        ctypes.memmove(buffer_ptr + tl.METADATA_SIZE, t.data_ptr(), nbytes)
    mem = tl.memory_at(buffer_ptr, total)
    return tl.tensor_from_bytes(md, mem, copy=False)


class ParallelTensorMethods:
    """put/get/upsert_tensor_with_parallelism and their batch and buffer forms."""

    # ---- writes ----

    def _write_one(self, key, enc, config, upsert):
        return self._write_encoded([key], [enc], config, upsert)[0]

    def _write_manifest(self, base_key, mkey, blob, config, upsert):
        """The manifest: a second writer of the same tensor finds it there."""
        if upsert:
            return self.upsert(mkey, blob, config)
        rc = self.put(mkey, blob, config)
        if rc == OBJECT_ALREADY_EXISTS and self.get(mkey) == blob:
            return 0
        return rc

    def _write_parallel(self, key, tensor, parallelism, config, writer_partition, upsert,
                        whole_tp=False):
        """One tensor written by the route its request selects (upstream's):
        writer_partition → this writer's shard of the whole tensor plus the
        writer manifest; no request → the whole tensor under key; a single TP
        axis → tensor is this rank's shard (whole_tp: the whole tensor, every
        rank written); TP with other axes → this rank's shard of the whole
        tensor; no TP axis → tensor as it is under the parallelism key."""
        what = "put_tensor_with_parallelism"
        tl.require_torch()
        if not self._ready:
            return INVALID_PARAMS
        if writer_partition is not None and parallelism is not None:
            _log.error("%s: writer_partition cannot be combined with parallelism", what)
            return INVALID_PARAMS
        if _valid_config(config):
            return INVALID_PARAMS
        if writer_partition is not None:
            w = _parse_writer(writer_partition, what)
            info = tl.tensor_info(tensor) if w else None
            if info is None:
                return INVALID_PARAMS
            t, code = info
            rank, size, sd = w
            if not uniform_split_ok(t, sd, size, what):
                return INVALID_PARAMS
            enc = encode_cut(t, code, sd, rank, size, [tl.Axis(tl.AXIS_TP, rank, size, sd)])
            rc = self._write_one(writer_key(key, rank, size, sd), enc, config, upsert)
            return rc or self._write_manifest(key, writer_manifest_key(key),
                                              tl.pack_manifest(code, t.shape, sd, size), config,
                                              upsert)
        if parallelism is None:
            return self._write_one(key, encode_full(tensor), config, upsert)
        specs = parse_parallelism(parallelism, what)
        info = tl.tensor_info(tensor) if specs else None
        if info is None:
            return INVALID_PARAMS
        t, code = info
        ti = _tp_index(specs)
        if ti is None:
            enc = encode_shard(list(t.shape), t, code, [s.stored() for s in specs])
            return self._write_one(parallelism_key(key, specs), enc, config, upsert)
        tp = specs[ti]
        if tp.split_dim >= t.dim():
            _log.error("%s: split_dim %d of a %d-dim tensor", what, tp.split_dim, t.dim())
            return INVALID_PARAMS
        if whole_tp:
            if not uniform_split_ok(t, tp.split_dim, tp.size, what):
                return INVALID_PARAMS
            keys, encs = [], []
            for r in range(tp.size):
                rs = [s.with_rank(r) if i == ti else s for i, s in enumerate(specs)]
                keys.append(parallelism_key(key, rs))
                encs.append(encode_cut(t, code, tp.split_dim, r, tp.size,
                                       [s.stored() for s in rs]))
            for rc in self._write_encoded(keys, encs, config, upsert):
                if rc:
                    return rc
            return 0
        full_shape = list(t.shape)
        if len(specs) == 1:
            full_shape[tp.split_dim] *= tp.size
            enc = encode_shard(full_shape, t, code, [s.stored() for s in specs])
        else:
            if not uniform_split_ok(t, tp.split_dim, tp.size, what):
                return INVALID_PARAMS
            enc = encode_cut(t, code, tp.split_dim, tp.rank, tp.size, [s.stored() for s in specs])
        rc = self._write_one(parallelism_key(key, specs), enc, config, upsert)
        return rc or self._write_manifest(key, parallelism_manifest_key(key),
                                          tl.pack_manifest(code, full_shape, tp.split_dim,
                                                           tp.size), config, upsert)

    def _write_parallel_from(self, key, buffer_ptr, size, parallelism, config, writer_partition,
                             upsert):
        what = "put_tensor_with_parallelism_from"
        tl.require_torch()
        if not self._ready:
            return INVALID_PARAMS
        if parallelism is None and writer_partition is None:
            if _valid_config(config) or not self._check_object_buffer(buffer_ptr, size, what):
                return INVALID_PARAMS
            return (self.upsert_from if upsert else self.put_from)(key, buffer_ptr, size, config)
        t = self._decode_object_buffer(buffer_ptr, size, what)
        if t is None:
            return INVALID_PARAMS
        return self._write_parallel(key, t, parallelism, config, writer_partition, upsert,
                                    whole_tp=True)

    def _batch_parallel(self, keys, values, parallelisms, config, writer_partitions, write_one,
                        write_plain):
        keys, values = list(keys), list(values)
        what = "batch_put_tensor_with_parallelism"
        if parallelisms is not None and writer_partitions is not None:
            _log.error("%s: parallelisms and writer_partitions are exclusive", what)
            return [INVALID_PARAMS] * len(keys)
        if len(values) != len(keys):
            _log.error("%s: %d keys but %d values", what, len(keys), len(values))
            return [INVALID_PARAMS] * len(keys)
        if parallelisms is None and writer_partitions is None:
            return write_plain()
        reqs = parallelisms if parallelisms is not None else writer_partitions
        if not isinstance(reqs, list) or len(reqs) != len(keys):
            _log.error("%s: keys and requests must be lists of the same length", what)
            return [INVALID_PARAMS] * len(keys)
        if parallelisms is not None:
            return [write_one(k, v, p, None) for k, v, p in zip(keys, values, reqs)]
        return [write_one(k, v, None, w) for k, v, w in zip(keys, values, reqs)]

    def put_tensor_with_parallelism(self, key, tensor, parallelism=None, config=None,
                                    writer_partition=None):
        return self._write_parallel(key, tensor, parallelism, config, writer_partition, False)

    def upsert_tensor_with_parallelism(self, key, tensor, parallelism=None, config=None,
                                       writer_partition=None):
        return self._write_parallel(key, tensor, parallelism, config, writer_partition, True)

    def put_tensor_with_parallelism_from(self, key, buffer_ptr, size, parallelism=None,
                                         config=None, writer_partition=None):
        return self._write_parallel_from(key, buffer_ptr, size, parallelism, config,
                                         writer_partition, False)

    def upsert_tensor_with_parallelism_from(self, key, buffer_ptr, size, parallelism=None,
                                            config=None, writer_partition=None):
        return self._write_parallel_from(key, buffer_ptr, size, parallelism, config,
                                         writer_partition, True)

    def _batch_tensors(self, upsert, keys, tensors_list, parallelisms, config,
                       writer_partitions):
        tl.require_torch()
        return self._batch_parallel(
            keys, tensors_list, parallelisms, config, writer_partitions,
            lambda k, t, p, w: self._write_parallel(k, t, p, config, w, upsert),
            lambda: self._tensor_batch_write(keys, tensors_list, config, upsert,
                                             check_config=True))

    def _batch_buffers(self, upsert, keys, buffer_ptrs, sizes, parallelisms, config,
                       writer_partitions):
        tl.require_torch()
        keys, buffer_ptrs, sizes = list(keys), list(buffer_ptrs), list(sizes)
        if len(sizes) != len(keys) or len(buffer_ptrs) != len(keys):
            _log.error("batch tensor write from buffers: %d keys, %d buffers, %d sizes",
                       len(keys), len(buffer_ptrs), len(sizes))
            return [INVALID_PARAMS] * len(keys)
        vals = list(zip(buffer_ptrs, sizes))

        def plain():
            if _valid_config(config):
                return [INVALID_PARAMS] * len(keys)
            return [self._write_parallel_from(k, p, n, None, config, None, upsert)
                    for k, (p, n) in zip(keys, vals)]
        return self._batch_parallel(
            keys, vals, parallelisms, config, writer_partitions,
            lambda k, v, p, w: self._write_parallel_from(k, v[0], v[1], p, config, w, upsert),
            plain)

    def batch_put_tensor_with_parallelism(self, keys, tensors_list, parallelisms=None,
                                          config=None, writer_partitions=None):
        return self._batch_tensors(False, keys, tensors_list, parallelisms, config,
                                   writer_partitions)

    def batch_upsert_tensor_with_parallelism(self, keys, tensors_list, parallelisms=None,
                                             config=None, writer_partitions=None):
        return self._batch_tensors(True, keys, tensors_list, parallelisms, config,
                                   writer_partitions)

    def batch_put_tensor_with_parallelism_from(self, keys, buffer_ptrs, sizes, parallelisms=None,
                                               config=None, writer_partitions=None):
        return self._batch_buffers(False, keys, buffer_ptrs, sizes, parallelisms, config,
                                   writer_partitions)

    def batch_upsert_tensor_with_parallelism_from(self, keys, buffer_ptrs, sizes,
                                                  parallelisms=None, config=None,
                                                  writer_partitions=None):
        return self._batch_buffers(True, keys, buffer_ptrs, sizes, parallelisms, config,
                                   writer_partitions)

    # ---- reads ----

    def _target(self, target, what):
        """(mode, specs or None) of a ReadTarget (None: as stored), or None."""
        if target is None:
            return "as_stored", None
        try:
            mode = str(target.mode).lower()
            par = target.parallelism
        except AttributeError:
            _log.error("%s: ReadTarget must provide mode and parallelism", what)
            return None
        if mode not in ReadTarget._MODES:
            _log.error("%s: unsupported ReadTarget mode %s", what, mode)
            return None
        specs = None
        if par is not None:
            specs = parse_parallelism(par, what, allow_empty=True)
            if specs is None:
                return None
        if mode == "shard" and not specs:
            _log.error("%s: a shard read needs a parallelism", what)
            return None
        return mode, specs

    def _stored_shard(self, key, specs):
        """(read_key, metadata, handle) of the stored shard exactly as specs
        asks: the parallelism key, or a writer-partition shard for a single
        TP axis; None when neither is stored."""
        cands = [parallelism_key(key, specs)]
        if len(specs) == 1 and specs[0].kind == tl.AXIS_TP:
            s = specs[0]
            cands.append(writer_key(key, s.rank, s.size, s.split_dim))
        for k in cands:
            h = self.get_buffer(k)
            if h is None:
                continue
            mv = memoryview(h)
            md = tl.parse(mv, len(mv))
            if md is not None and _matches(specs, md):
                return k, md, h
        return None

    def _shard_plan(self, key, specs):
        """(dtype or None, global shape or None, split dim, shard keys) of the
        shards that make key's whole tensor: the manifest names how many and
        along which dim (without one, the target's TP axis does); None when
        neither says."""
        specs = specs or []
        ti = _tp_index(specs)
        manifest, writer = tl.parse_manifest(self.get(parallelism_manifest_key(key)) or None), False
        if manifest is None:
            manifest, writer = tl.parse_manifest(self.get(writer_manifest_key(key)) or None), True
        if manifest is not None:
            dtype, gshape, sd, count = manifest
        elif ti is not None:
            dtype, gshape, sd, count = None, None, specs[ti].split_dim, specs[ti].size
        else:
            return None
        if writer:
            return dtype, gshape, sd, [writer_key(key, r, count, sd) for r in range(count)]
        base = list(specs) if ti is not None else [_Spec(tl.AXIS_TP, 0, count, sd)]
        ti2 = _tp_index(base)
        return dtype, gshape, sd, [parallelism_key(key, [s.with_rank(r, count, sd) if i == ti2
                                                         else s for i, s in enumerate(base)])
                                   for r in range(count)]

    def _full_tensor(self, key, specs, what):
        """The whole tensor rebuilt from its shards (_shard_plan), or the
        object under key when it is a whole tensor; None otherwise."""
        torch = tl.require_torch()
        plan = self._shard_plan(key, specs)
        if plan is None:
            h = self.get_buffer(key)
            if h is None:
                _log.error("%s: %s: no tensor and no shard manifest", what, key)
                return None
            mv = memoryview(h)
            md = tl.parse(mv, len(mv))
            if md is None or md.layout != tl.LAYOUT_FULL:
                _log.error("%s: %s does not hold a whole tensor", what, key)
                return None
            return tl.tensor_from_bytes(md, mv)
        _dtype, gshape, sd, keys = plan
        shards = []
        for k, h in zip(keys, self.batch_get_buffer(keys)):
            t = self._decode_handle(h, k)
            if t is None or not 0 <= sd < t.dim():
                _log.error("%s: %s: shard %s missing or not a tensor", what, key, k)
                return None
            shards.append(t)
        full = torch.cat(shards, dim=sd)
        if gshape is not None and list(full.shape) != list(gshape):
            _log.error("%s: %s: shards make %s, the manifest says %s", what, key,
                       tuple(full.shape), tuple(gshape))
            return None
        return full

    def _full_into_ranges(self, key, specs, buffer_ptr, size, what):
        """The whole tensor assembled in the caller's buffer straight from
        its shards (zero copy: one ranged read, each shard's rows to their
        place; their metadata to a scratch buffer and checked), as a view; None
        when there is no manifest, the shapes are not a uniform split, or
        anything read does not check out (the caller then rebuilds by copy);
        False when the whole tensor does not fit."""
        plan = self._shard_plan(key, specs)
        if plan is None or plan[0] is None or plan[0] not in tl.DTYPES:
            return None
        dtype, gshape, sd, keys = plan
        count = len(keys)
        if gshape[sd] % count:
            return None
        outer = 1
        for d in gshape[:sd]:
            outer *= d
        inner = tl.DTYPES[dtype][1]
        for d in gshape[sd + 1:]:
            inner *= d
        ext = gshape[sd] // count
        row = ext * inner
        if row == 0 or outer * count > 4096:
            return None
        total = tl.METADATA_SIZE + outer * gshape[sd] * inner
        if total > size:
            _log.error("%s: %d bytes needed, the buffer has %d", what, total, size)
            return False
        hdr = tl.METADATA_SIZE
        scratch = (ctypes.c_ubyte * (count * hdr))()
        dst = [[hdr + i * gshape[sd] * inner + r * row for i in range(outer)] for r in range(count)]
        src = [[hdr + i * row for i in range(outer)] for _ in range(count)]
        got = self.get_into_ranges([ctypes.addressof(scratch), buffer_ptr], [keys, keys],
                                   [[[r * hdr] for r in range(count)], dst],
                                   [[[0]] * count, src],
                                   [[[hdr]] * count, [[row] * outer for _ in range(count)]])
        try:
            ok = all(n == hdr for key_res in got[0] for n in key_res) and \
                all(n == row for key_res in got[1] for n in key_res)
        except (TypeError, IndexError):
            ok = False
        local = list(gshape)
        local[sd] = ext
        for r in range(count) if ok else ():
            md = tl.parse(memoryview(scratch)[r * hdr:(r + 1) * hdr], hdr + outer * row)
            if (md is None or md.dtype != dtype or md.global_shape != list(gshape) or
                    md.local_shape != local):
                ok = False
        if not ok:
            return None
        md = tl.Metadata(dtype, list(gshape), data_bytes=total - hdr)
        ctypes.memmove(buffer_ptr, md.pack(), hdr)
        return tl.tensor_from_bytes(md, tl.memory_at(buffer_ptr, total), copy=False)

    def _shard_of_full(self, key, specs, what):
        ti = _tp_index(specs)
        if ti is None:
            _log.error("%s: %s: no stored shard matches and the request has no TP axis", what, key)
            return None
        full = self._full_tensor(key, specs, what)
        if full is None:
            return None
        tp = specs[ti]
        parts = split_uniform(full, tp.split_dim, tp.size, what)
        return None if parts is None else parts[tp.rank]

    def get_tensor_with_parallelism(self, key, target=None):
        """The tensor a ReadTarget asks for: as stored (get_tensor), a shard
        (the stored one, else cut from the rebuilt whole tensor, so any
        uniform TP size reads any other), or the whole tensor; None when it
        cannot be had."""
        what = "get_tensor_with_parallelism"
        tl.require_torch()
        if not self._ready:
            return None
        t = self._target(target, what)
        if t is None:
            return None
        mode, specs = t
        if mode == "as_stored":
            return self.get_tensor(key)
        if mode == "full":
            return self._full_tensor(key, specs, what)
        found = self._stored_shard(key, specs)
        if found is not None:
            _k, md, h = found
            return tl.tensor_from_bytes(md, memoryview(h))
        return self._shard_of_full(key, specs, what)

    def get_tensor_with_parallelism_into(self, key, buffer_ptr, size, target=None):
        """As get_tensor_with_parallelism, the object ([metadata][data]) left
        in the caller's buffer and the tensor returned as a view of it; None
        when it does not fit."""
        what = "get_tensor_with_parallelism_into"
        tl.require_torch()
        if not self._ready or not buffer_ptr:
            return None
        t = self._target(target, what)
        if t is None:
            return None
        mode, specs = t
        if mode == "as_stored":
            return self.get_tensor_into(key, buffer_ptr, size)
        if not self._mem_ok(buffer_ptr, size, 0, True):
            _log.error("%s: buffer 0x%x (%d bytes) is not writable", what, buffer_ptr, size)
            return None
        if mode == "shard":
            # the stored shard straight into the buffer (get_into, zero copy)
            cands = [parallelism_key(key, specs)]
            if len(specs) == 1 and specs[0].kind == tl.AXIS_TP:
                cands.append(writer_key(key, specs[0].rank, specs[0].size, specs[0].split_dim))
            for k in cands:
                n = self.get_into(k, buffer_ptr, size)
                if n < tl.METADATA_SIZE:
                    continue
                mem = tl.memory_at(buffer_ptr, n)
                md = tl.parse(mem, n)
                if md is not None and _matches(specs, md):
                    return tl.tensor_from_bytes(md, mem, copy=False)
            res = self._shard_of_full(key, specs, what)
            if res is None:
                return None
            info = tl.tensor_info(res)
            ti = _tp_index(specs)
            full_shape = list(res.shape)
            full_shape[specs[ti].split_dim] *= specs[ti].size
            md = tl.Metadata(info[1], full_shape, list(res.shape), tl.LAYOUT_SHARD,
                             [s.stored() for s in specs])
            for a in md.axes:
                if a.split_dim >= 0:
                    a.local_extent = res.shape[a.split_dim]
            return _put_to_buffer(info[0], md, buffer_ptr, size, what)
        view = self._full_into_ranges(key, specs, buffer_ptr, size, what)
        if view is not None:
            return None if view is False else view
        res = self._full_tensor(key, specs, what)
        if res is None:
            return None
        t2, code = tl.tensor_info(res)
        return _put_to_buffer(t2, tl.Metadata(code, list(t2.shape)), buffer_ptr, size, what)

    def batch_get_tensor_with_parallelism(self, keys, targets=None):
        keys = list(keys)
        if targets is None:
            targets = [None] * len(keys)
        if len(targets) != len(keys):
            _log.error("batch_get_tensor_with_parallelism: %d keys but %d targets", len(keys),
                       len(targets))
            return [None] * len(keys)
        return [self.get_tensor_with_parallelism(k, t) for k, t in zip(keys, targets)]

    def batch_get_tensor_with_parallelism_into(self, keys, buffer_ptrs, sizes, targets=None):
        keys, buffer_ptrs, sizes = list(keys), list(buffer_ptrs), list(sizes)
        if targets is None:
            targets = [None] * len(keys)
        if not len(keys) == len(buffer_ptrs) == len(sizes) == len(targets):
            _log.error("batch_get_tensor_with_parallelism_into: list lengths differ")
            return [None] * len(keys)
        return [self.get_tensor_with_parallelism_into(k, p, n, t)
                for k, p, n, t in zip(keys, buffer_ptrs, sizes, targets)]
