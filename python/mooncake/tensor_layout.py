"""The byte layout of a tensor object in the store, shared with upstream
Mooncake (docs/python.md "Tensor objects"): a 304-byte little-endian metadata
block, then the tensor's bytes in row-major (C) order.

Pure Python (struct); torch is imported only by the functions that build or
read torch tensors, so `import mooncake` works without it."""
import ctypes
import struct
import warnings

MAGIC = 0x4D4F4F4E  # "NOOM" little-endian: the tensor object magic
MANIFEST_MAGIC = 0x574D414E  # the shard-manifest magic
VERSION = 1
MAX_DIMS = 8
MAX_AXES = 4
LAYOUT_FULL, LAYOUT_SHARD = 0, 1
AXIS_DP, AXIS_TP, AXIS_EP, AXIS_PP, AXIS_RESERVED = 0, 1, 2, 3, 4
AXIS_NAMES = {AXIS_DP: "dp", AXIS_TP: "tp", AXIS_EP: "ep", AXIS_PP: "pp"}
AXIS_KINDS = {v: k for k, v in AXIS_NAMES.items()}

# header: magic u32, version u16, header_size u16, dtype i32, ndim i32,
# layout_kind u32, reserved_flags u32, data_offset u64, data_bytes u64
_HEADER = struct.Struct("<IHHiiIIQQ")  # 40 bytes
_SHAPE = struct.Struct("<8q")  # 64 bytes, unused dims are -1
# one layout axis: kind, axis_index, shard_rank, shard_count, split_dim,
# reserved0 (expert or stage id) i32, reserved1 (local split extent) i64
_AXIS = struct.Struct("<iiiiiiq")  # 32 bytes
_COUNTS = struct.Struct("<II")  # axis_count, reserved0
METADATA_SIZE = _HEADER.size + 2 * _SHAPE.size + _COUNTS.size + MAX_AXES * _AXIS.size  # 304
# manifest: magic u32, version u16, header_size u16, dtype, ndim, split_dim,
# shard_count, reserved0 (i32 each), 4 bytes padding, global shape
_MANIFEST = struct.Struct("<IHHiiiii4x")  # 32 bytes
MANIFEST_SIZE = _MANIFEST.size + _SHAPE.size  # 96

# dtype codes (upstream's TensorDtype) -> (torch attribute name, element size)
DTYPES = {0: ("float32", 4), 1: ("float64", 8), 2: ("int8", 1), 3: ("uint8", 1),
          4: ("int16", 2), 5: ("uint16", 2), 6: ("int32", 4), 7: ("uint32", 4),
          8: ("int64", 8), 9: ("uint64", 8), 10: ("bool", 1), 11: ("float16", 2),
          12: ("bfloat16", 2), 13: ("float8_e4m3fn", 1), 14: ("float8_e5m2", 1)}
NR_DTYPES = len(DTYPES)


def require_torch():
    """torch, or ImportError saying that the tensor API needs it."""
    try:
        import torch
    except ImportError as e:
        raise ImportError("mooncake's tensor API (put_tensor, get_tensor, ...) needs PyTorch: "
                          "pip install torch") from e
    return torch


_code_of = None


def dtype_code(dtype):
    """Upstream's code of a torch dtype, or -1 (UNKNOWN)."""
    global _code_of
    if _code_of is None:
        torch = require_torch()
        _code_of = {getattr(torch, name): code for code, (name, _) in DTYPES.items()
                    if hasattr(torch, name)}
    return _code_of.get(dtype, -1)


def torch_dtype(code):
    return getattr(require_torch(), DTYPES[code][0])


class Axis:
    """One layout axis as stored (kind is AXIS_*)."""

    __slots__ = ("kind", "rank", "count", "split_dim", "extra", "local_extent")

    def __init__(self, kind, rank, count, split_dim=-1, extra=0, local_extent=0):
        self.kind, self.rank, self.count = kind, rank, count
        self.split_dim, self.extra, self.local_extent = split_dim, extra, local_extent


class Metadata:
    """A decoded metadata block."""

    __slots__ = ("dtype", "global_shape", "local_shape", "layout", "axes", "data_offset",
                 "data_bytes")

    def __init__(self, dtype, global_shape, local_shape=None, layout=LAYOUT_FULL, axes=(),
                 data_bytes=0, data_offset=METADATA_SIZE):
        self.dtype = dtype
        self.global_shape = list(global_shape)
        self.local_shape = list(global_shape if local_shape is None else local_shape)
        self.layout, self.axes = layout, list(axes)
        self.data_offset, self.data_bytes = data_offset, data_bytes

    def pack(self):
        shape = lambda s: _SHAPE.pack(*(list(s) + [-1] * (MAX_DIMS - len(s))))  # noqa: E731
        axes = b"".join(_AXIS.pack(a.kind, i, a.rank, a.count, a.split_dim, a.extra,
                                   a.local_extent) for i, a in enumerate(self.axes))
        axes += b"\0" * ((MAX_AXES - len(self.axes)) * _AXIS.size)
        return (_HEADER.pack(MAGIC, VERSION, METADATA_SIZE, self.dtype, len(self.global_shape),
                             self.layout, 0, self.data_offset, self.data_bytes)
                + shape(self.global_shape) + shape(self.local_shape)
                + _COUNTS.pack(len(self.axes), 0) + axes)


def expected_bytes(dtype, shape):
    n = DTYPES[dtype][1]
    for d in shape:
        n *= d
    return n


def parse(buf, total_length):
    """Metadata of the tensor object in buf (bytes-like, at least
    METADATA_SIZE bytes) whose whole length is total_length, or None when it
    is not a valid tensor object (upstream's checks)."""
    if total_length < METADATA_SIZE or len(buf) < METADATA_SIZE:
        return None
    (magic, version, hsize, dtype, ndim, layout, _flags, data_offset,
     data_bytes) = _HEADER.unpack_from(buf, 0)
    if (magic != MAGIC or version != VERSION or hsize != METADATA_SIZE or
            not 0 <= dtype < NR_DTYPES or not 0 <= ndim <= MAX_DIMS or layout > LAYOUT_SHARD):
        return None
    gshape = _SHAPE.unpack_from(buf, _HEADER.size)
    lshape = _SHAPE.unpack_from(buf, _HEADER.size + _SHAPE.size)
    off = _HEADER.size + 2 * _SHAPE.size
    axis_count, _ = _COUNTS.unpack_from(buf, off)
    if axis_count > MAX_AXES or not METADATA_SIZE <= data_offset <= total_length:
        return None
    if data_bytes != total_length - data_offset:
        return None
    if any(d < 0 for d in gshape[:ndim] + lshape[:ndim]):
        return None
    if any(d != -1 for d in gshape[ndim:] + lshape[ndim:]):
        return None
    if data_bytes != expected_bytes(dtype, lshape[:ndim]):
        return None
    axes = []
    for i in range(axis_count):
        kind, _idx, rank, count, split_dim, extra, local = _AXIS.unpack_from(
            buf, off + _COUNTS.size + i * _AXIS.size)
        if not AXIS_DP <= kind <= AXIS_RESERVED or count <= 0 or not 0 <= rank < count:
            return None
        if not -1 <= split_dim < ndim:
            return None
        axes.append(Axis(kind, rank, count, split_dim, extra, local))
    return Metadata(dtype, gshape[:ndim], lshape[:ndim], layout, axes, data_bytes, data_offset)


def pack_manifest(dtype, global_shape, split_dim, shard_count):
    s = list(global_shape)
    return (_MANIFEST.pack(MANIFEST_MAGIC, VERSION, MANIFEST_SIZE, dtype, len(s), split_dim,
                           shard_count, 0) + _SHAPE.pack(*(s + [-1] * (MAX_DIMS - len(s)))))


def parse_manifest(buf):
    """(dtype, global_shape, split_dim, shard_count) or None."""
    if buf is None or len(buf) < MANIFEST_SIZE:
        return None
    magic, version, hsize, dtype, ndim, split_dim, count, _ = _MANIFEST.unpack_from(buf, 0)
    if (magic != MANIFEST_MAGIC or version != VERSION or hsize != MANIFEST_SIZE or
            not 0 <= ndim <= MAX_DIMS or count <= 0 or not 0 <= split_dim < ndim):
        return None
    shape = list(_SHAPE.unpack_from(buf, _MANIFEST.size)[:ndim])
    if any(d < 0 for d in shape):
        return None
    return dtype, shape, split_dim, count


# ---- torch side ----

def tensor_info(tensor):
    """(contiguous CPU tensor, dtype code) for a torch tensor, or None for
    anything the layout cannot hold (not a tensor, unknown dtype, >8 dims)."""
    torch = require_torch()
    if not isinstance(tensor, torch.Tensor):
        return None
    code = dtype_code(tensor.dtype)
    if code < 0 or tensor.dim() > MAX_DIMS:
        return None
    t = tensor.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    return t.contiguous(), code


def byte_view(t):
    """The bytes of a contiguous CPU tensor as a flat uint8 tensor (no copy)."""
    torch = require_torch()
    if t.numel() == 0:
        return torch.empty(0, dtype=torch.uint8)
    return t.reshape(-1).view(torch.uint8)


def memory_of(t):
    """(address, length) of a contiguous CPU tensor's bytes."""
    return (t.data_ptr(), t.numel() * t.element_size())


def tensor_from_bytes(md, buf, copy=True):
    """The tensor described by md, its bytes in buf at md.data_offset
    (buf: a buffer-protocol object). copy=False returns a view sharing buf's
    memory (the get_tensor_into forms), copy=True a tensor of its own."""
    torch = require_torch()
    dt = torch_dtype(md.dtype)
    if md.data_bytes == 0:
        return torch.empty(md.local_shape, dtype=dt)
    with warnings.catch_warnings():  # a read-only buffer is copied below
        warnings.simplefilter("ignore", UserWarning)
        raw = torch.frombuffer(buf, dtype=torch.uint8, count=md.data_bytes,
                               offset=md.data_offset)
    if copy:
        raw = raw.clone()
    return raw.view(dt).reshape(md.local_shape)


def memory_at(ptr, size):
    """A writable ctypes view of size bytes at address ptr."""
    return (ctypes.c_ubyte * size).from_address(ptr)


def shard_range(dim, rank, count):
    """(start, length) of rank's part of a dimension of dim elements split
    into count parts (upstream's floor formula; uniform splits only reach it)."""
    start = dim * rank // count
    return start, dim * (rank + 1) // count - start
