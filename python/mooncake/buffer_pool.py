"""mooncake.buffer_pool: upstream's BufferPool (registered host buffers for the
zero-copy calls of a MooncakeDistributedStore), with its aliases
RegisteredBufferPool / RegisteredBufferLease / RegisteredBufferLeaseView.

A pool lends leases: `pool.acquire(size)` -> BufferLease (`ptr`, `size`,
`buffer`: a writable memoryview of `size` bytes, `release()`, a context
manager). Its memory is registered with the store's transfer engine, so
`put_from` / `get_into` and the batch forms move it without a copy.

Capacity, as upstream's: the store's local_buffer_size is the pool's first
region (one arena allocated and registered when the pool opens; leases are
carved from it 64-byte aligned); past it, each lease is its own
`alignment`-aligned allocation, registered on acquire and unregistered on
release ("overflow"). The pool holds at most max_bytes (0: twice the local
buffer; never less than it) and, when given, max_regions leases at once.
An exhausted pool blocks (block_on_exhaustion, per call `block=`) up to the
timeout, else raises RuntimeError, as upstream's native pool does."""
import ctypes
import threading
import time
import weakref

_libc = ctypes.CDLL(None, use_errno=True)
_libc.posix_memalign.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_size_t]
_libc.posix_memalign.restype = ctypes.c_int
_libc.free.argtypes = [ctypes.c_void_p]
_libc.free.restype = None
_ARENA_ALIGN = 64


def _aligned_alloc(size, alignment):
    p = ctypes.c_void_p()
    if _libc.posix_memalign(ctypes.byref(p), alignment, max(size, 1)) != 0 or not p.value:
        return 0
    return p.value  # not cleared, as upstream's pool (a large one is fresh zero pages)


class _Arena:
    """First-fit allocator over [base, base + size), 64-byte aligned blocks."""

    def __init__(self, base, size):
        self.base, self.size = base, size
        self.free = [(base, size)]  # sorted, coalesced (addr, len)

    def alloc(self, n):
        n = (n + _ARENA_ALIGN - 1) // _ARENA_ALIGN * _ARENA_ALIGN
        for i, (a, ln) in enumerate(self.free):
            if ln >= n:
                if ln == n:
                    del self.free[i]
                else:
                    self.free[i] = (a + n, ln - n)
                return a, n
        return 0, 0

    def release(self, a, n):
        self.free.append((a, n))
        self.free.sort()
        out = []
        for blk in self.free:
            if out and out[-1][0] + out[-1][1] == blk[0]:
                out[-1] = (out[-1][0], out[-1][1] + blk[1])
            else:
                out.append(blk)
        self.free = out


class BufferLease:
    """One lent buffer; released by release(), on leaving a `with` block, or
    when the lease and every view of it are gone."""

    def __init__(self, pool, ptr, size, region):
        self._pool, self._ptr, self._size, self._region = pool, ptr, size, region
        self._views = []  # weak references to the exporters of live views
        self._closed = False

    @property
    def ptr(self):
        if self._closed:
            raise RuntimeError("buffer lease is closed")
        return self._ptr

    @property
    def size(self):
        return self._size

    @property
    def buffer(self):
        """A writable memoryview of the lease's size bytes; while any view of
        it lives, the lease cannot be released (the view keeps it alive)."""
        if self._closed:
            raise RuntimeError("buffer lease is closed")
        arr = (ctypes.c_ubyte * self._size).from_address(self._ptr)
        arr._lease = self  # the view keeps the lease (and so the memory) alive
        self._views = [r for r in self._views if r() is not None]
        self._views.append(weakref.ref(arr))
        return memoryview(arr).cast("B")

    def release(self):
        if self._closed:
            return
        if any(r() is not None for r in self._views):
            raise RuntimeError("cannot release buffer while exported views exist")
        self._closed = True
        self._pool._release(self._region)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False

    def __del__(self):
        if not getattr(self, "_closed", True):
            self._closed = True
            try:
                self._pool._release(self._region)
            except Exception:  # noqa: BLE001 (interpreter shutdown)
                pass


BufferLeaseView = memoryview  # what BufferLease.buffer returns


class BufferPool:
    def __init__(self, store, max_bytes=0, min_size_class=64 * 1024, max_size_class=None,
                 alignment=8 * 1024 * 1024, block_on_exhaustion=True, default_timeout=None,
                 max_regions=None, prewarm_size=None, prewarm_count=0):
        if store is None or not getattr(store, "_ready", False):
            raise RuntimeError("MooncakeDistributedStore is not initialized")
        if min_size_class <= 0 or alignment <= 0:
            raise RuntimeError("min_size_class and alignment must be positive")
        if alignment < ctypes.sizeof(ctypes.c_void_p) or alignment & (alignment - 1):
            raise RuntimeError("alignment must be a power of two and at least sizeof(void*)")
        local = int(getattr(store, "_local_buffer_size", 0) or 0)
        if local <= 0:
            raise RuntimeError("BufferPool requires a store configured with a local buffer")
        self._store = store
        self._alignment = alignment
        self._max_bytes = max(max_bytes, local) if max_bytes else 2 * local
        self._max_size_class = self._max_bytes if max_size_class is None else max_size_class
        self._block = bool(block_on_exhaustion)
        self._timeout = None if default_timeout is None else float(default_timeout)
        self._max_regions = max_regions
        self._cv = threading.Condition()
        self._closed = False
        self._in_use = {}  # id -> region
        self._total = 0
        base = _aligned_alloc(local, max(alignment, _ARENA_ALIGN))
        if not base:
            raise RuntimeError("cannot allocate the pool's local region (%d bytes)" % local)
        if store.register_buffer(base, local) != 0:
            _libc.free(base)
            raise RuntimeError("local buffer registration failed")
        self._arena = _Arena(base, local)
        self._finalizer = weakref.finalize(self, BufferPool._free_arena, store, base)
        if prewarm_size is not None and prewarm_count > 0:
            self.prewarm(prewarm_size, prewarm_count)

    @staticmethod
    def _free_arena(store, base):
        try:
            store.unregister_buffer(base)
        finally:
            _libc.free(base)

    def _check_open(self):
        if self._closed:
            raise RuntimeError("buffer pool is closed")

    def _has_room(self, n):
        if n > self._max_bytes - self._total:
            return False
        return self._max_regions is None or len(self._in_use) < self._max_regions

    def _take(self, size):
        """A region of max(size, 1) bytes, or None (the pool lock held)."""
        n = max(size, 1)
        if not self._has_room(n):
            return None
        a, got = self._arena.alloc(n)
        if a:
            region = (a, got, False)
        else:
            p = _aligned_alloc(n, self._alignment)
            if not p:
                return None
            if self._store.register_buffer(p, n) != 0:
                _libc.free(p)
                raise RuntimeError("overflow buffer registration failed")
            region, got = (p, n, True), n
        self._total += got
        self._in_use[region[0]] = region
        return region

    def acquire(self, size, block=None, timeout=None):
        if size < 0:
            raise RuntimeError("size must be non-negative")
        if max(size, 1) > self._max_bytes:
            raise RuntimeError("requested buffer size exceeds pool capacity")
        should_block = self._block if block is None else bool(block)
        t = self._timeout if timeout is None else float(timeout)
        if t is not None and t < 0:
            raise RuntimeError("timeout must be non-negative")
        with self._cv:
            deadline = None if t is None else time.monotonic() + t
            while True:
                self._check_open()
                region = self._take(size)
                if region is not None:
                    return BufferLease(self, region[0], size, region)
                if not should_block:
                    raise RuntimeError("buffer pool is exhausted")
                if t is None:
                    self._cv.wait()
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise RuntimeError("timed out waiting for buffer")
                    self._cv.wait(left)

    def buffer(self, size, block=None, timeout=None):
        """A memoryview of a new lease; the lease is released when the view goes."""
        return self.acquire(size, block, timeout).buffer

    def prewarm(self, size, count):
        """Accepted as upstream's (which does nothing either): the local region
        is allocated and registered when the pool opens."""
        return None

    def _release(self, region):
        with self._cv:
            if self._in_use.pop(region[0], None) is None:
                raise RuntimeError("buffer lease is not active")
            self._total -= region[1]
            if region[2]:
                rc = self._store.unregister_buffer(region[0])
                _libc.free(region[0])
                if rc != 0:
                    raise RuntimeError("overflow buffer unregistration failed")
            else:
                self._arena.release(region[0], region[1])
            self._cv.notify_all()

    def close(self):
        with self._cv:
            if self._closed:
                return
            if self._in_use:
                raise RuntimeError("cannot close buffer pool with active leases")
            self._closed = True
            self._cv.notify_all()
        self._finalizer()


RegisteredBufferPool = BufferPool
RegisteredBufferLease = BufferLease
RegisteredBufferLeaseView = BufferLeaseView

__all__ = ["BufferPool", "BufferLease", "BufferLeaseView", "RegisteredBufferPool",
           "RegisteredBufferLease", "RegisteredBufferLeaseView"]
