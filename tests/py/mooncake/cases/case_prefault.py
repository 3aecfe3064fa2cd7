"""The segment's pages faulted in by a thread at setup (store_prefault.c), against the
session's master: the process's resident memory grows by the segment while nothing is put,
puts and gets right after setup (racing the populating thread) keep their bytes, and a close
during the populating stops it. MC_STORE_PREFAULT=0 is checked in a child of its own."""
import hashlib
import os
import subprocess
import sys

from util import MB, mk_store, uniq, until


def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def case_segment_populated_without_puts():
    before = rss()
    s = mk_store(seg=96 * MB, lbuf=8 * MB)
    assert until(lambda: rss() - before >= 90 * MB, timeout=60), (before, rss())
    assert s.close() == 0


def case_puts_racing_the_prefault():
    s = mk_store(seg=128 * MB, lbuf=16 * MB)
    keys, sums = [], []
    for i in range(24):
        k, v = uniq("pf"), os.urandom(MB + i)
        assert s.put_parts(k, v[:64], v[64:]) == 0
        keys.append(k)
        sums.append(hashlib.sha256(v).digest())
    # in batches of 4: the session master's 500 ms read lease must outlast a batch's copy
    for i in range(0, 24, 4):
        hs = None
        for _ in range(20):
            hs = s.batch_get_buffer(keys[i:i + 4])
            if all(h is not None for h in hs):
                break
        assert [hashlib.sha256(memoryview(h)).digest() for h in hs] == sums[i:i + 4]
        del hs
    assert s.close() == 0


def case_close_while_populating():
    for _ in range(3):
        s = mk_store(seg=256 * MB, lbuf=8 * MB)
        k = uniq("pc")
        assert s.put(k, b"v" * 1000) == 0 and s.get(k) == b"v" * 1000
        assert s.close() == 0  # joins the thread between two steps


def case_prefault_off():
    env = dict(os.environ, MC_STORE_PREFAULT="0")
    code = ("import sys; sys.path.insert(0, %r); import case_prefault as c; c._off()"
            % os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


def _off():
    before = rss()
    s = mk_store(seg=96 * MB, lbuf=8 * MB)
    # a put and a get are answered (one master round trip each way) long after a thread
    # would have populated a good part of the segment; without one, only the pages of the
    # object itself are resident
    k = uniq("off")
    for _ in range(20):
        assert s.put(k, b"x" * 4096) == 0 and s.get(k) == b"x" * 4096
        assert s.remove(k, force=True) == 0
    assert rss() - before < 48 * MB, (before, rss())
    assert s.close() == 0
