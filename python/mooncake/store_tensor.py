"""The tensor API of MooncakeDistributedStore on torch CPU tensors, with
upstream's names, arguments, return conventions and error numbers
(docs/python.md "Tensor objects"). Each tensor is one object in upstream's
layout (mooncake/tensor_layout.py): bytes written by upstream's client are
read here and the other way round.

Mixed into mooncake.store.MooncakeDistributedStore. torch is imported at the
first tensor call; without it that call raises ImportError."""
import ctypes
import logging

from . import tensor_layout as tl

_log = logging.getLogger("mooncake.store")

INVALID_PARAMS = -600
FILE_NOT_FOUND = -1100


def _valid_config(config):
    """0, or -600 when preferred_segments is given with a length other than
    replica_num (upstream's check on the pub / config forms)."""
    segs = getattr(config, "preferred_segments", None) or []
    if segs and len(segs) != getattr(config, "replica_num", 1):
        _log.error("preferred_segments has %d entries for replica_num %d", len(segs),
                   getattr(config, "replica_num", 1))
        return INVALID_PARAMS
    return 0


class _Encoded:
    """A tensor ready to be written: its metadata block and where its bytes
    are, as (address, length) ranges in order inside owner (a CPU tensor,
    kept alive here): one range for a contiguous tensor, one per row for a
    shard cut out of a whole tensor along an inner dim (no copy)."""

    __slots__ = ("header", "owner", "ranges", "size")

    def __init__(self, md, owner, ranges=None):
        if ranges is None:
            ranges = [tl.memory_of(owner)]
        self.ranges = [r for r in ranges if r[1] > 0]
        self.size = sum(n for _, n in self.ranges)
        md.data_bytes = self.size
        self.header = ctypes.create_string_buffer(md.pack(), tl.METADATA_SIZE)
        self.owner = owner

    def parts(self):
        """Buffer-protocol parts for put_parts / upsert_parts (no copy)."""
        return (self.header,) + tuple(tl.memory_at(p, n) for p, n in self.ranges)

    def ptrs(self):
        return ([ctypes.addressof(self.header)] + [p for p, _ in self.ranges],
                [tl.METADATA_SIZE] + [n for _, n in self.ranges])


def encode_full(tensor):
    """_Encoded for a whole tensor, or None when it cannot be stored."""
    info = tl.tensor_info(tensor)
    if info is None:
        _log.error("put_tensor: not a torch tensor of a supported dtype (%s)",
                   type(tensor).__name__)
        return None
    t, code = info
    return _Encoded(tl.Metadata(code, list(t.shape)), t)


def encode_shard(full_shape, shard, code, axes):
    """_Encoded for a contiguous shard of a tensor of full_shape, described by axes."""
    for a in axes:
        if a.split_dim >= 0:
            a.local_extent = shard.shape[a.split_dim]
    return _Encoded(tl.Metadata(code, full_shape, list(shard.shape), tl.LAYOUT_SHARD, axes), shard)


_MAX_RANGES = 1024  # rows per shard written in place; beyond, one copy makes it contiguous


def encode_cut(t, code, split_dim, rank, count, axes):
    """_Encoded for rank's part of count of the contiguous tensor t along
    split_dim (uniform, checked by the caller), its bytes left where they are
    in t: one range per row before split_dim (upstream's data ranges)."""
    n = t.shape[split_dim] // count
    shard_shape = list(t.shape)
    shard_shape[split_dim] = n
    for a in axes:
        if a.split_dim >= 0:
            a.local_extent = shard_shape[a.split_dim]
    md = tl.Metadata(code, list(t.shape), shard_shape, tl.LAYOUT_SHARD, axes)
    outer = 1
    for d in t.shape[:split_dim]:
        outer *= d
    if outer > _MAX_RANGES:
        return _Encoded(md, t.narrow(split_dim, rank * n, n).contiguous())
    inner = t.element_size()
    for d in t.shape[split_dim + 1:]:
        inner *= d
    base, row = t.data_ptr(), t.shape[split_dim] * inner
    return _Encoded(md, t, [(base + i * row + rank * n * inner, n * inner) for i in range(outer)])


def uniform_split_ok(t, split_dim, count, what):
    if count <= 0 or not 0 <= split_dim < t.dim() or t.shape[split_dim] % count:
        _log.error("%s: cannot split shape %s along dim %d into %d equal parts", what,
                   tuple(t.shape), split_dim, count)
        return False
    return True


def tp_key(base_key, rank):
    return "%s_tp_%d" % (base_key, rank)


def split_uniform(t, split_dim, count, what):
    """The count contiguous parts of t along split_dim, or None (one log line)
    when split_dim is out of range or the dimension does not divide evenly
    (upstream shards uniformly only)."""
    if not uniform_split_ok(t, split_dim, count, what):
        return None
    n = t.shape[split_dim] // count
    return [t.narrow(split_dim, r * n, n).contiguous() for r in range(count)]


def tp_shards(tensor, tp_size, split_dim, what):
    """[_Encoded] of every TP rank's shard of a whole tensor, in place."""
    info = tl.tensor_info(tensor)
    if info is None:
        return None
    t, code = info
    if not uniform_split_ok(t, split_dim, tp_size, what):
        return None
    return [encode_cut(t, code, split_dim, r, tp_size, [tl.Axis(tl.AXIS_TP, r, tp_size, split_dim)])
            for r in range(tp_size)]


class TensorMethods:
    """put_tensor / get_tensor and their batch, into, from, TP, pub, upsert
    and safetensors forms (the parallelism forms: store_tensor_parallel.py)."""

    # ---- writing encoded tensors ----

    def _write_encoded(self, keys, encs, config, upsert):
        """Per-key results of writing encs[i] under keys[i] (None → -600)."""
        results = [INVALID_PARAMS] * len(keys)
        idx = [i for i, e in enumerate(encs) if e is not None]
        if not idx:
            return results
        if upsert:
            for i in idx:
                results[i] = self.upsert_parts(keys[i], *encs[i].parts(), config=config)
            return results
        if len(idx) == 1:
            i = idx[0]
            results[i] = self.put_parts(keys[i], *encs[i].parts(), config=config)
            return results
        ptrs, sizes = zip(*(encs[i].ptrs() for i in idx))
        got = self.batch_put_from_multi_buffers([keys[i] for i in idx], list(ptrs), list(sizes),
                                                config)
        for i, rc in zip(idx, got):
            results[i] = rc
        return results

    def _tensor_write(self, key, tensor, config, upsert):
        tl.require_torch()
        if not self._ready:
            _log.error("put_tensor: the store is not set up")
            return INVALID_PARAMS
        return self._write_encoded([key], [encode_full(tensor)], config, upsert)[0]

    def _tensor_batch_write(self, keys, tensors, config, upsert, check_config=False):
        tl.require_torch()
        keys = list(keys)
        if not self._ready or not keys:
            return [INVALID_PARAMS] * len(keys)
        if len(tensors) != len(keys):
            _log.error("batch tensor write: %d keys but %d tensors", len(keys), len(tensors))
            return [INVALID_PARAMS] * len(keys)
        if check_config and _valid_config(config):
            return [INVALID_PARAMS] * len(keys)
        return self._write_encoded(keys, [encode_full(t) for t in tensors], config, upsert)

    def _tensor_tp_write(self, key, tensor, config, tp_size, split_dim, upsert):
        encs = tp_shards(tensor, tp_size, split_dim, "put_tensor_with_tp")
        if encs is None:
            return INVALID_PARAMS
        for r, rc in enumerate(self._write_encoded([tp_key(key, r) for r in range(tp_size)], encs,
                                                   config, upsert)):
            if rc != 0:
                return rc
        return 0

    def _tensor_batch_tp_write(self, base_keys, tensors, config, tp_size, split_dim):
        keys, encs, owner = [], [], []
        results = [INVALID_PARAMS] * len(base_keys)
        for i, (k, t) in enumerate(zip(base_keys, tensors)):
            shards = tp_shards(t, tp_size, split_dim, "batch_put_tensor_with_tp")
            if shards is None:
                continue
            results[i] = 0
            for r, e in enumerate(shards):
                keys.append(tp_key(k, r))
                encs.append(e)
                owner.append(i)
        for i, rc in zip(owner, self._write_encoded(keys, encs, config, False) if keys else []):
            if rc != 0 and results[i] == 0:
                results[i] = rc
        return results

    # ---- put / pub / upsert ----

    def put_tensor(self, key, tensor):
        """Store a torch tensor under key: 0 or a negative code (-600 for a
        value that is not a tensor of a supported dtype)."""
        return self._tensor_write(key, tensor, None, False)

    def pub_tensor(self, key, tensor, config=None):
        return _valid_config(config) or self._tensor_write(key, tensor, config, False)

    def upsert_tensor(self, key, tensor):
        return self._tensor_write(key, tensor, None, True)

    def upsert_pub_tensor(self, key, tensor, config=None):
        return _valid_config(config) or self._tensor_write(key, tensor, config, True)

    def batch_put_tensor(self, keys, tensors_list):
        return self._tensor_batch_write(keys, tensors_list, None, False)

    def batch_pub_tensor(self, keys, tensors_list, config=None):
        return self._tensor_batch_write(keys, tensors_list, config, False, check_config=True)

    def batch_upsert_tensor(self, keys, tensors_list):
        return self._tensor_batch_write(keys, tensors_list, None, True)

    def batch_upsert_pub_tensor(self, keys, tensors_list, config=None):
        return self._tensor_batch_write(keys, tensors_list, config, True, check_config=True)

    # ---- tensor parallelism (key_tp_<rank>) ----

    def put_tensor_with_tp(self, key, tensor, tp_rank=0, tp_size=1, split_dim=0):
        """Split tensor along split_dim into tp_size equal shards and store
        shard r under "<key>_tp_<r>" (tp_rank is accepted, as upstream, and
        not used: every shard is written). tp_size <= 1: put_tensor."""
        if tp_size <= 1:
            return self.put_tensor(key, tensor)
        if not self._ready:
            return INVALID_PARAMS
        return self._tensor_tp_write(key, tensor, None, tp_size, split_dim, False)

    def pub_tensor_with_tp(self, key, tensor, config=None, tp_rank=0, tp_size=1, split_dim=0):
        tl.require_torch()
        if not self._ready:
            return INVALID_PARAMS
        if _valid_config(config):
            return INVALID_PARAMS
        if tp_size <= 1:
            return self.pub_tensor(key, tensor, config)
        return self._tensor_tp_write(key, tensor, config, tp_size, split_dim, False)

    def batch_put_tensor_with_tp(self, base_keys, tensors_list, tp_rank=0, tp_size=1,
                                 split_dim=0):
        return self._batch_tp(base_keys, tensors_list, None, tp_size, split_dim)

    def batch_pub_tensor_with_tp(self, base_keys, tensors_list, config=None, tp_rank=0,
                                 tp_size=1, split_dim=0):
        return self._batch_tp(base_keys, tensors_list, config, tp_size, split_dim)

    def _batch_tp(self, base_keys, tensors, config, tp_size, split_dim):
        if tp_size <= 1:
            return self._tensor_batch_write(base_keys, tensors, config, False,
                                            check_config=config is not None)
        tl.require_torch()
        base_keys = list(base_keys)
        if not self._ready or not base_keys or len(tensors) != len(base_keys):
            if base_keys and self._ready:
                _log.error("batch_put_tensor_with_tp: %d keys but %d tensors", len(base_keys),
                           len(tensors))
            return [INVALID_PARAMS] * len(base_keys)
        if _valid_config(config):
            return [INVALID_PARAMS] * len(base_keys)
        return self._tensor_batch_tp_write(base_keys, tensors, config, tp_size, split_dim)

    def get_tensor_with_tp(self, key, tp_rank=0, tp_size=1, split_dim=0):
        if tp_size <= 1:
            return self.get_tensor(key)
        return self.get_tensor(tp_key(key, tp_rank))

    def batch_get_tensor_with_tp(self, base_keys, tp_rank=0, tp_size=1):
        if tp_size <= 1:
            return self.batch_get_tensor(base_keys)
        return self.batch_get_tensor([tp_key(k, tp_rank) for k in base_keys])

    def get_tensor_with_tp_into(self, key, buffer_ptr, size, tp_rank=0, tp_size=1, split_dim=0):
        if tp_size <= 1:
            return self.get_tensor_into(key, buffer_ptr, size)
        return self.get_tensor_into(tp_key(key, tp_rank), buffer_ptr, size)

    def batch_get_tensor_with_tp_into(self, base_keys, buffer_ptrs, sizes, tp_rank=0, tp_size=1):
        if tp_size <= 1:
            return self.batch_get_tensor_into(base_keys, buffer_ptrs, sizes)
        return self.batch_get_tensor_into([tp_key(k, tp_rank) for k in base_keys], buffer_ptrs,
                                          sizes)

    # ---- reads ----

    def _decode_handle(self, handle, key):
        if handle is None:
            return None
        mv = memoryview(handle)
        md = tl.parse(mv, len(mv))
        if md is None:
            _log.error("get_tensor: %s is not a tensor object (%d bytes)", key, len(mv))
            return None
        return tl.tensor_from_bytes(md, mv, copy=True)

    def get_tensor(self, key):
        """The tensor stored under key (a tensor of its own), or None when
        the key is missing or does not hold a tensor object."""
        tl.require_torch()
        if not self._ready:
            _log.error("get_tensor: the store is not set up")
            return None
        return self._decode_handle(self.get_buffer(key), key)

    def batch_get_tensor(self, keys):
        tl.require_torch()
        keys = list(keys)
        if not self._ready:
            return [None] * len(keys)
        if not keys:
            return []
        return [self._decode_handle(h, k) for h, k in zip(self.batch_get_buffer(keys), keys)]

    def _view_in_buffer(self, key, buffer_ptr, length):
        """The tensor whose object get_into left at buffer_ptr (length bytes
        or a negative code), as a view of that memory (upstream's)."""
        if length < 0:
            _log.error("get_tensor_into: %s: error %d", key, length)
            return None
        if length < tl.METADATA_SIZE:
            _log.error("get_tensor_into: %s: %d bytes, too short for tensor metadata", key, length)
            return None
        mem = tl.memory_at(buffer_ptr, length)
        md = tl.parse(mem, length)
        if md is None:
            _log.error("get_tensor_into: %s is not a tensor object", key)
            return None
        return tl.tensor_from_bytes(md, mem, copy=False)

    def get_tensor_into(self, key, buffer_ptr, size):
        """Read key's object into the caller's buffer (zero copy, get_into)
        and return a tensor viewing its data there; None on a miss, a buffer
        too small (get_into's error) or an object that is not a tensor."""
        tl.require_torch()
        if not self._ready or not buffer_ptr:
            _log.error("get_tensor_into: %s", "null buffer" if self._ready else "not set up")
            return None
        return self._view_in_buffer(key, buffer_ptr, self.get_into(key, buffer_ptr, size))

    def batch_get_tensor_into(self, keys, buffer_ptrs, sizes):
        """Per key a tensor viewing its buffer, or None; -600 for every key
        when the lists' lengths differ or a pointer is null (upstream's)."""
        tl.require_torch()
        keys, buffer_ptrs, sizes = list(keys), list(buffer_ptrs), list(sizes)
        if (not self._ready or len(buffer_ptrs) != len(keys) or len(sizes) != len(keys)
                or not all(buffer_ptrs)):
            _log.error("batch_get_tensor_into: %d keys, %d buffers, %d sizes", len(keys),
                       len(buffer_ptrs), len(sizes))
            return [INVALID_PARAMS] * len(keys)
        if not keys:
            return []
        got = self.batch_get_into(keys, buffer_ptrs, sizes)
        return [self._view_in_buffer(k, p, n) for k, p, n in zip(keys, buffer_ptrs, got)]

    # ---- from caller buffers ([metadata][data]) ----

    def _check_object_buffer(self, buffer_ptr, size, what):
        if not buffer_ptr:
            _log.error("%s: null buffer pointer", what)
            return False
        if size < tl.METADATA_SIZE:
            _log.error("%s: %d bytes, too small for tensor metadata", what, size)
            return False
        if not self._mem_ok(buffer_ptr, tl.METADATA_SIZE):
            _log.error("%s: buffer 0x%x is not readable", what, buffer_ptr)
            return False
        if tl.parse(tl.memory_at(buffer_ptr, tl.METADATA_SIZE), size) is None:
            _log.error("%s: invalid tensor metadata", what)
            return False
        return True

    def put_tensor_from(self, key, buffer_ptr, size):
        """Store the tensor object ([metadata][data], as get_tensor_into
        leaves it) at buffer_ptr, zero copy (put_from)."""
        if not self._ready or not self._check_object_buffer(buffer_ptr, size, "put_tensor_from"):
            return INVALID_PARAMS
        return self.put_from(key, buffer_ptr, size)

    def upsert_tensor_from(self, key, buffer_ptr, size):
        if not self._ready or not self._check_object_buffer(buffer_ptr, size,
                                                            "upsert_tensor_from"):
            return INVALID_PARAMS
        return self.upsert_from(key, buffer_ptr, size)

    def _batch_from(self, keys, buffer_ptrs, sizes, upsert):
        keys, buffer_ptrs, sizes = list(keys), list(buffer_ptrs), list(sizes)
        what = "batch_upsert_tensor_from" if upsert else "batch_put_tensor_from"
        if not self._ready:
            return [INVALID_PARAMS] * len(keys)
        if not keys:
            return []
        if len(buffer_ptrs) != len(keys) or len(sizes) != len(keys):
            _log.error("%s: %d keys, %d buffers, %d sizes", what, len(keys), len(buffer_ptrs),
                       len(sizes))
            return [INVALID_PARAMS] * len(keys)
        if not all(self._check_object_buffer(p, n, what) for p, n in zip(buffer_ptrs, sizes)):
            return [INVALID_PARAMS] * len(keys)
        if upsert:
            return self.batch_upsert_from(keys, buffer_ptrs, sizes)
        return self.batch_put_from(keys, buffer_ptrs, sizes)

    def batch_put_tensor_from(self, keys, buffer_ptrs, sizes):
        return self._batch_from(keys, buffer_ptrs, sizes, False)

    def batch_upsert_tensor_from(self, keys, buffer_ptrs, sizes):
        return self._batch_from(keys, buffer_ptrs, sizes, True)

    def _decode_object_buffer(self, buffer_ptr, size, what):
        """A tensor viewing the tensor object at buffer_ptr, or None."""
        if not self._check_object_buffer(buffer_ptr, size, what):
            return None
        if not self._mem_ok(buffer_ptr, size):
            _log.error("%s: buffer 0x%x (%d bytes) is not readable", what, buffer_ptr, size)
            return None
        return self._view_in_buffer(what, buffer_ptr, size)

    def put_tensor_with_tp_from(self, key, buffer_ptr, size, tp_rank=0, tp_size=1, split_dim=0):
        """The whole tensor object at buffer_ptr split into tp_size shards,
        stored under "<key>_tp_<r>"; tp_size <= 1: put_tensor_from."""
        tl.require_torch()
        if not self._ready or not buffer_ptr or size < tl.METADATA_SIZE:
            return INVALID_PARAMS
        if tp_size <= 1:
            return self.put_tensor_from(key, buffer_ptr, size)
        t = self._decode_object_buffer(buffer_ptr, size, "put_tensor_with_tp_from")
        if t is None:
            return INVALID_PARAMS
        return self._tensor_tp_write(key, t, None, tp_size, split_dim, False)

    def batch_put_tensor_with_tp_from(self, base_keys, buffer_ptrs, sizes, tp_rank=0, tp_size=1,
                                      split_dim=0):
        tl.require_torch()
        base_keys, buffer_ptrs, sizes = list(base_keys), list(buffer_ptrs), list(sizes)
        if not self._ready:
            return [INVALID_PARAMS] * len(base_keys)
        if tp_size <= 1:
            return self.batch_put_tensor_from(base_keys, buffer_ptrs, sizes)
        if not base_keys or len(buffer_ptrs) != len(base_keys) or len(sizes) != len(base_keys):
            return [INVALID_PARAMS] * len(base_keys)
        results = [INVALID_PARAMS] * len(base_keys)
        idx, tensors = [], []
        for i, (p, n) in enumerate(zip(buffer_ptrs, sizes)):
            t = self._decode_object_buffer(p, n, "batch_put_tensor_with_tp_from")
            if t is not None:
                idx.append(i)
                tensors.append(t)
        got = self._tensor_batch_tp_write([base_keys[i] for i in idx], tensors, None, tp_size,
                                          split_dim) if idx else []
        for i, rc in zip(idx, got):
            results[i] = rc
        return results

    # ---- safetensors ----

    def save_tensor_to_safetensor(self, key, file_name=None):
        """Write key's tensor to a safetensors file (file_name, default the
        key) under the name key: 0, -1100 (FILE_NOT_FOUND) when the key holds
        no tensor, -600 when the file cannot be written."""
        tl.require_torch()
        if not self._ready:
            return INVALID_PARAMS
        t = self.get_tensor(key)
        if t is None:
            _log.error("save_tensor_to_safetensor: no tensor under %s", key)
            return FILE_NOT_FOUND
        try:
            from safetensors.torch import save_file
            save_file({key: t}, key if file_name is None else str(file_name))
        except Exception as e:  # noqa: BLE001 - upstream maps every failure to one code
            _log.error("save_tensor_to_safetensor: %s", e)
            return INVALID_PARAMS
        return 0

    def load_tensor_from_safetensor(self, key=None, file_name=None):
        """Store a tensor of a safetensors file under key (default: the file
        name) and return it; the file's entry named key, else its first
        entry (a warning). None when the file has none or the put fails."""
        tl.require_torch()
        if not self._ready or file_name is None:
            return None
        try:
            from safetensors.torch import load_file
            loaded = load_file(str(file_name))
        except Exception as e:  # noqa: BLE001
            _log.error("load_tensor_from_safetensor: %s", e)
            return None
        if not loaded:
            _log.error("load_tensor_from_safetensor: no tensors in %s", file_name)
            return None
        store_key = str(file_name) if key is None else key
        name = store_key if key is not None and store_key in loaded else next(iter(loaded))
        if key is not None and name != store_key:
            _log.warning("load_tensor_from_safetensor: %s not in %s; using its first entry %s",
                         store_key, file_name, name)
        t = loaded[name]
        rc = self.put_tensor(store_key, t)
        if rc != 0:
            _log.error("load_tensor_from_safetensor: put %s failed: %d", store_key, rc)
            return None
        return t

    # ---- CUDA-only forms ----

    def get_tensor_into_cuda(self, key, tensor):
        """Upstream reads into CUDA tensors through CUDA IPC on a dummy
        client only: -600 here (no CUDA IPC), as upstream's real client."""
        return self.batch_get_tensor_into_cuda([key], [tensor])[0]

    def batch_get_tensor_into_cuda(self, keys, tensors_list):
        keys = list(keys)
        _log.error("batch_get_tensor_into_cuda: CUDA IPC reads are not supported here")
        return [INVALID_PARAMS] * len(keys)


# ---- upstream's module-level helpers (mooncake.store._serialize_tensor, ...) ----

def _tensor_metadata_size():
    """The size of the metadata block before a tensor's bytes (304)."""
    return tl.METADATA_SIZE


def _serialize_tensor(tensor):
    """(metadata bytes, data address, data length, owner) of a tensor as
    upstream's client would store it; owner is the contiguous CPU tensor
    whose memory the address points into (keep it alive). ValueError for a
    value the layout cannot hold."""
    tl.require_torch()
    enc = encode_full(tensor)
    if enc is None:
        raise ValueError("unsupported tensor for Mooncake tensor serialization")
    return bytes(enc.header.raw), enc.owner.data_ptr(), enc.size, enc.owner


def _deserialize_tensor(payload):
    """The tensor of a stored object's bytes ([metadata][data]); ValueError
    when they are not a valid tensor object."""
    tl.require_torch()
    mv = memoryview(payload).cast("B")
    md = tl.parse(mv, len(mv))
    if md is None:
        raise ValueError("invalid serialized Mooncake tensor payload")
    return tl.tensor_from_bytes(md, mv, copy=True)
