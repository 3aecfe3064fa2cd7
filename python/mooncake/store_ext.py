"""mooncake.store_ext: the part of upstream's MooncakeDistributedStore surface
built in Python on the C store's calls (a mixin of mooncake.store's class):
ranged reads (get_into_ranges), the get and put sessions with their ranged
multi-buffer forms, put_from_with_metadata, alloc_from_mem_pool, init_all,
and the segment-management calls this store does not support.

get_into_ranges is zero copy (the engine reads each range into its
destination, _read_ranges in py_store_ranges.c); the sessions copy: a get
session reads its objects whole at start (batch_get_into into a private
buffer) and copies ranges out of that snapshot, a put session assembles each
object in a private buffer and stores it at session end with batch_put_from. Return conventions, error numbers and list shapes are
upstream's; docs/python.md "Ranges and sessions" has the details."""
import atexit
import ctypes
import logging
import threading
import weakref

from . import _core

logger = logging.getLogger("mooncake.store")

INVALID_PARAMS = -600
INVALID_REPLICA = -702
OBJECT_ALREADY_EXISTS = -705
NOT_SUPPORTED = -1012


# Stores set up and not yet garbage-collected. A process that ends without close() (a store
# held in a module global or a test class, a script that falls off its end) would leave its
# segment mounted on the master until its heartbeat expired (client_ttl, 10 s): the master
# would go on placing replicas in memory that no longer exists, and puts in that window fail
# on them. At interpreter exit, while threads still run, each one left is closed (unmounted).
_live = weakref.WeakSet()
_live_lock = threading.Lock()


@atexit.register
def _close_at_exit():
    with _live_lock:
        left = list(_live)
        _live.clear()
    for st in left:
        try:
            st.close()
        except Exception:  # exiting: nothing to report to
            pass


def _seq_len(v):
    try:
        return len(v)
    except TypeError:
        return -1


class _Object:
    """An object read whole (get session / ranged read) or being assembled
    (put session): its bytes in a private buffer."""

    __slots__ = ("buf", "size", "config")

    def __init__(self, size, config=None):
        self.size = size
        self.buf = (ctypes.c_ubyte * max(size, 1))()
        self.config = config

    @property
    def ptr(self):
        return ctypes.addressof(self.buf)


class StoreExtras:
    """Mixed into mooncake.store.MooncakeDistributedStore (before the C type)."""

    _ready = False
    _dummy = False
    _local_buffer_size = 0

    # ---- lifecycle ----

    def _note_setup(self, rc, local_buffer_size, dummy=False):
        if rc == 0:
            self._ready, self._dummy = True, dummy
            self._local_buffer_size = local_buffer_size
            with _live_lock:
                _live.add(self)
        return rc

    def _sessions(self):
        s = self.__dict__.get("_sess")
        if s is None:
            s = self.__dict__.setdefault("_sess", (threading.Lock(), {}, {}))
        return s

    def setup_dummy(self, *args, **kwargs):
        rc = super().setup_dummy(*args, **kwargs)
        lb = args[1] if len(args) > 1 else kwargs.get("local_buffer_size", 0)
        return self._note_setup(rc, lb, dummy=True)

    def close(self):
        rc = super().close()
        with _live_lock:
            _live.discard(self)
        self._ready, self._dummy, self._local_buffer_size = False, False, 0
        lk, gets, puts = self._sessions()
        with lk:
            gets.clear()
            puts.clear()
        return rc

    def init_all(self, protocol, device_name, mount_segment_size=16 * 1024 * 1024):
        """Upstream's init_all: setup("localhost:12345", "127.0.0.1:2379",
        mount_segment_size, 1 GiB, protocol, device_name) with the default
        master address; -600 on a store already set up."""
        if self._ready:
            return INVALID_PARAMS
        return self.setup("localhost:12345", "127.0.0.1:2379", mount_segment_size, 1 << 30,
                          protocol, device_name, "127.0.0.1:50051")

    # ---- memory helpers ----

    def alloc_from_mem_pool(self, size):
        """A dummy client's shared pool allocation (the process's
        MooncakeHostMemAllocator here: nothing is shared between processes);
        0 for a store that is not a dummy client, as upstream's real client."""
        if not self._dummy:
            return 0
        return _core.MooncakeHostMemAllocator().alloc(size)

    def put_from_with_metadata(self, key, buffer_ptr, metadata_buffer_ptr, size, metadata_size,
                               config=None):
        """One object made of metadata_size bytes at metadata_buffer_ptr then
        size bytes at buffer_ptr (zero copy). 0 or a negative code; -1 (as
        upstream) when the store is not set up or prefer_alloc_in_same_node is
        asked; size 0 stores nothing and answers 0."""
        if not self._ready or (config is not None and getattr(config, "prefer_alloc_in_same_node",
                                                              False)):
            return -1
        if size == 0:
            return 0
        ptrs, sizes = [buffer_ptr], [size]
        if metadata_size:
            ptrs, sizes = [metadata_buffer_ptr, buffer_ptr], [metadata_size, size]
        return self.batch_put_from_multi_buffers([key], [ptrs], [sizes], config)[0]

    # ---- whole-object reads behind the ranged forms ----

    def _read_whole(self, keys):
        """{key: _Object or negative code} for the distinct keys."""
        out, want = {}, []
        for k in dict.fromkeys(keys):
            n = self.get_size(k)
            if n < 0:
                out[k] = n
            else:
                out[k] = _Object(n)
                want.append(k)
        if want:
            rcs = self.batch_get_into(want, [out[k].ptr for k in want], [out[k].size for k in want])
            for k, rc in zip(want, rcs):
                if rc < 0:
                    out[k] = rc
                elif rc != out[k].size:  # upserted meanwhile to another size
                    out[k] = INVALID_PARAMS
        return out

    def _copy_out(self, obj, dst, src_off, n, base=0):
        if src_off < 0 or n < 0 or src_off + n > obj.size:
            return INVALID_PARAMS
        if n and not self._mem_ok(dst, n, base, True):
            return INVALID_PARAMS
        if n:
            ctypes.memmove(dst, obj.ptr + src_off, n)
        return n

    def get_into_ranges(self, buffer_ptrs, all_keys, all_dst_offsets, all_src_offsets, all_sizes):
        """For each buffer i, each key j of all_keys[i], each range k: copies
        all_sizes[i][j][k] bytes of the object from all_src_offsets[i][j][k]
        to buffer_ptrs[i] + all_dst_offsets[i][j][k]. Returns
        results[i][j][k]: bytes copied or a negative code (-600 for a range
        past the object's end, past the end of the registered buffer that
        buffer_ptrs[i] starts in, or mismatched list lengths). An unregistered
        buffer has no known capacity: its ranges need only be mapped memory."""
        def shape(code):
            res = []
            for i in range(max(_seq_len(buffer_ptrs), 0)):
                ks = all_keys[i] if i < _seq_len(all_keys) else []
                ds = all_dst_offsets[i] if i < _seq_len(all_dst_offsets) else []
                res.append([[code] * (_seq_len(ds[j]) if j < _seq_len(ds) else 0)
                            for j in range(_seq_len(ks))])
            return res

        n = _seq_len(buffer_ptrs)
        if not self._ready or any(_seq_len(x) != n for x in (all_keys, all_dst_offsets,
                                                            all_src_offsets, all_sizes)):
            return shape(INVALID_PARAMS)
        res = shape(INVALID_PARAMS)
        # the ranges to read: destinations checked here, object bounds in C
        keys, index, todo = [], {}, []  # todo: (i, j, r, key index, dst, src_off, len)
        for i in range(n):
            ks, ds, ss, ns = all_keys[i], all_dst_offsets[i], all_src_offsets[i], all_sizes[i]
            if not (len(ks) == len(ds) == len(ss) == len(ns)):
                continue
            for j, k in enumerate(ks):
                if not (len(ds[j]) == len(ss[j]) == len(ns[j])):
                    continue
                ki = index.setdefault(k, len(keys))
                if ki == len(keys):
                    keys.append(k)
                for r in range(len(ds[j])):
                    dst, off, ln = buffer_ptrs[i] + ds[j][r], ss[j][r], ns[j][r]
                    if off < 0 or ln < 0 or ds[j][r] < 0:
                        continue
                    if ln and not self._mem_ok(dst, ln, buffer_ptrs[i], True):
                        continue
                    todo.append((i, j, r, ki, dst, off, ln))
        if not todo:
            return res
        # zero copy: the engine reads each range from a replica into its destination
        got = self._read_ranges(keys, [t[3:] for t in todo])
        # keys without a memory replica (the SSD tier's): read whole, copied out
        slow = {keys[t[3]] for t, rc in zip(todo, got) if rc == INVALID_REPLICA}
        objs = self._read_whole(sorted(slow)) if slow else {}
        for t, rc in zip(todo, got):
            i, j, r, ki, dst, off, ln = t
            k = keys[ki]
            if k in objs:
                o = objs[k]
                rc = o if isinstance(o, int) else self._copy_out(o, dst, off, ln,
                                                                 buffer_ptrs[i])
            res[i][j][r] = rc
        return res

    # ---- get sessions ----

    def batch_get_session_start(self, keys):
        """Reads each object once for the session; per key 0 or a negative code."""
        keys = list(keys)
        if not self._ready:
            return [INVALID_PARAMS] * len(keys)
        if not keys:
            return []
        objs = self._read_whole(keys)
        lk, gets, _ = self._sessions()
        out = []
        with lk:
            for k in keys:
                o = objs[k]
                if isinstance(o, int):
                    gets.pop(k, None)
                    out.append(o)
                else:
                    gets[k] = o
                    out.append(0)
        return out

    def batch_get_into_multi_buffer_ranges(self, keys, all_buffer_ptrs, all_sizes,
                                           all_src_offsets):
        """Per key of a get session: copies all_sizes[i][j] bytes from
        all_src_offsets[i][j] of the object into all_buffer_ptrs[i][j].
        Per key: bytes copied, or -600 (no session, a range past the end,
        mismatched lengths)."""
        keys = list(keys)
        res = [INVALID_PARAMS] * len(keys)
        if not self._ready or any(_seq_len(x) != len(keys)
                                  for x in (all_buffer_ptrs, all_sizes, all_src_offsets)):
            return res
        lk, gets, _ = self._sessions()
        with lk:
            objs = [gets.get(k) for k in keys]
        for i, o in enumerate(objs):
            ps, ns, offs = all_buffer_ptrs[i], all_sizes[i], all_src_offsets[i]
            if o is None or not (len(ps) == len(ns) == len(offs)):
                continue
            if any(off < 0 or n < 0 or off + n > o.size for off, n in zip(offs, ns)):
                continue
            total = 0
            for p, n, off in zip(ps, ns, offs):
                r = self._copy_out(o, p, off, n)
                if r < 0:
                    total = r
                    break
                total += r
            res[i] = total
        return res

    def batch_get_session_end(self, keys):
        if not self._ready:
            return INVALID_PARAMS
        lk, gets, _ = self._sessions()
        with lk:
            for k in keys:
                gets.pop(k, None)
        return 0

    # ---- put sessions ----

    def batch_put_session_start(self, keys, sizes, config=None):
        """Opens a put session per key (an object of sizes[i] bytes, zeroed,
        not readable until batch_put_session_end). Per key 0, or
        OBJECT_ALREADY_EXISTS (-705) for a key stored or already in a session,
        -600 for mismatched lengths (group_ids included)."""
        keys, sizes = list(keys), list(sizes)
        groups = getattr(config, "group_ids", None) if config is not None else None
        if not self._ready or len(keys) != len(sizes) or (groups is not None and
                                                          len(groups) != len(keys)):
            return [INVALID_PARAMS] * len(keys)
        if not keys:
            return []
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in sizes):
            return [INVALID_PARAMS] * len(keys)
        exist = self.batch_is_exist(keys)
        lk, _, puts = self._sessions()
        out = []
        with lk:
            for k, n, e in zip(keys, sizes, exist):
                if e < 0:
                    out.append(e)
                elif e == 1 or k in puts:
                    out.append(OBJECT_ALREADY_EXISTS)
                else:
                    puts[k] = _Object(n, config)
                    out.append(0)
        return out

    def batch_put_from_multi_buffer_ranges(self, keys, all_buffer_ptrs, all_sizes,
                                           all_dst_offsets):
        """Per key of a put session: copies all_sizes[i][j] bytes from
        all_buffer_ptrs[i][j] to all_dst_offsets[i][j] of the object.
        Per key: bytes copied, or -600."""
        keys = list(keys)
        res = [INVALID_PARAMS] * len(keys)
        if not self._ready or any(_seq_len(x) != len(keys)
                                  for x in (all_buffer_ptrs, all_sizes, all_dst_offsets)):
            return res
        lk, _, puts = self._sessions()
        with lk:
            objs = [puts.get(k) for k in keys]
        for i, o in enumerate(objs):
            ps, ns, offs = all_buffer_ptrs[i], all_sizes[i], all_dst_offsets[i]
            if o is None or not (len(ps) == len(ns) == len(offs)):
                continue
            if any(off < 0 or n < 0 or off + n > o.size or
                   (n and not self._mem_ok(p, n, 0, False)) for p, n, off in zip(ps, ns, offs)):
                continue
            for p, n, off in zip(ps, ns, offs):
                if n:
                    ctypes.memmove(o.ptr + off, p, n)
            res[i] = sum(ns)
        return res

    def batch_put_session_end(self, keys):
        """Stores each session's object (batch_put_from); per key 0 or a
        negative code (-600: no session). The sessions end either way."""
        keys = list(keys)
        if not self._ready:
            return [INVALID_PARAMS] * len(keys)
        lk, _, puts = self._sessions()
        with lk:
            objs = [puts.pop(k, None) for k in keys]
        res = [INVALID_PARAMS] * len(keys)
        by_cfg = {}
        for i, o in enumerate(objs):
            if o is not None:
                by_cfg.setdefault(id(o.config), (o.config, []))[1].append(i)
        for cfg, idx in by_cfg.values():
            rcs = self.batch_put_from([keys[i] for i in idx], [objs[i].ptr for i in idx],
                                      [objs[i].size for i in idx], cfg)
            for i, rc in zip(idx, rcs):
                res[i] = rc
        return res

    def batch_put_session_revoke(self, keys):
        """Drops each key's put session: 0, or -600 when there was none."""
        keys = list(keys)
        if not self._ready:
            return [INVALID_PARAMS] * len(keys)
        lk, _, puts = self._sessions()
        with lk:
            return [0 if puts.pop(k, None) is not None else INVALID_PARAMS for k in keys]

    # ---- segment management this store does not do ----

    def _unsupported(self, what):
        logger.warning("%s: not supported by mooncake-c (a store mounts one segment, its "
                       "global_segment_size at setup): NOT_SUPPORTED (-1012)", what)
        return NOT_SUPPORTED

    def mount_segment(self, path, size, offset=0, protocol="tcp", location=""):
        return {"ret": self._unsupported("mount_segment"), "segment_ids": []}

    def allocate_and_mount_segment(self, size, protocol="tcp", location=""):
        return {"ret": self._unsupported("allocate_and_mount_segment"), "segment_ids": [],
                "allocated_size": 0}

    def unmount_segment(self, segment_ids, grace_period_seconds=0):
        return self._unsupported("unmount_segment")

    def unmount_and_free_segment(self, segment_ids, grace_period_seconds=0):
        return self._unsupported("unmount_and_free_segment")

    def unmount_local_disk_segment(self, grace_period_seconds=0):
        return self._unsupported("unmount_local_disk_segment")


# ---- module-level functions of upstream's mooncake.store ----

def _node_cpus(node):
    """The CPUs of NUMA node `node` (sysfs cpulist), or None."""
    try:
        with open("/sys/devices/system/node/node%d/cpulist" % node) as f:
            text = f.read().strip()
    except (OSError, TypeError, ValueError):
        return None
    cpus = set()
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus or None


_SYS_SET_MEMPOLICY = {"x86_64": 238, "aarch64": 237}
_MPOL_PREFERRED = 1


def bind_to_numa_node(node):
    """Upstream's: the calling thread runs on NUMA node `node`'s CPUs and its
    allocations prefer that node's memory (not strict). A node that does not
    exist, or a system without NUMA, is a warning and no change."""
    import os
    import platform
    cpus = _node_cpus(node) if isinstance(node, int) and node >= 0 else None
    if cpus is None:
        logger.warning("bind_to_numa_node(%r): no such NUMA node; binding skipped", node)
        return None
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as e:
        logger.warning("bind_to_numa_node(%d): sched_setaffinity failed: %s", node, e)
    nr = _SYS_SET_MEMPOLICY.get(platform.machine())
    if nr is not None and node < 64:
        libc = ctypes.CDLL(None, use_errno=True)
        mask = ctypes.c_ulong(1 << node)
        if libc.syscall(nr, _MPOL_PREFERRED, ctypes.byref(mask), ctypes.c_ulong(65)) != 0:
            logger.warning("bind_to_numa_node(%d): set_mempolicy failed: %s", node,
                           os.strerror(ctypes.get_errno()))
    return None


# Upstream hands out the addresses of its NVMe-oF (SPDK) hugepage allocator,
# whose alloc returns NULL in a build without NVMe-oF; none is built here, so
# these are the same functions of that case: alloc(size) -> NULL, free(ptr).
_ALLOC_FN = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_size_t)(lambda size: None)
_FREE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda ptr: None)


def get_alloc_func_addr():
    return ctypes.cast(_ALLOC_FN, ctypes.c_void_p).value


def get_free_func_addr():
    return ctypes.cast(_FREE_FN, ctypes.c_void_p).value
