"""Helpers shared by the case modules (run in child pythons by runner.py)."""
import ctypes
import os
import time
import uuid

from mooncake.store import MooncakeDistributedStore

RPC = os.environ.get("MC_TEST_RPC", "")
META = os.environ.get("MC_TEST_META", "")
MB = 1 << 20


def uniq(prefix="k"):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:12])


def mk_store(seg=16 * MB, lbuf=16 * MB, host="127.0.0.1", meta=None):
    s = MooncakeDistributedStore()
    # MC_TEST_PROTOCOL / MC_TEST_DEVICE: the same cases over another transport
    # (test_mc_store_rdma.py: rdma on libfabric's software provider)
    rc = s.setup(host, meta or META, seg, lbuf, os.environ.get("MC_TEST_PROTOCOL", "tcp"),
                 os.environ.get("MC_TEST_DEVICE", ""), RPC)
    assert rc == 0, rc
    return s


def buf(n, fill=None):
    """A ctypes buffer of n bytes and its address; fill: bytes to copy in."""
    b = (ctypes.c_char * max(n, 1))()
    if fill is not None:
        ctypes.memmove(b, fill, len(fill))
    return b, ctypes.addressof(b)


def until(fn, timeout=5.0, step=0.02):
    """Polls fn() until it is truthy (readiness check); returns its last value."""
    deadline = time.monotonic() + timeout
    v = fn()
    while not v and time.monotonic() < deadline:
        time.sleep(step)
        v = fn()
    return v
