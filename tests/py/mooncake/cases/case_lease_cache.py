"""The lease cache (src/store/store_lcache.h): a get of a key whose read lease
from an earlier get still runs reads the bytes without asking the master, and
nothing a cached replica points at is ever handed to another object while the
lease runs. The master runs with --default_kv_lease_ttl 500 (mc_fixtures)."""
import os
import re
import time
import urllib.request

from util import MB, mk_store, uniq, until

from mooncake.store import ReplicateConfig

ADMIN = os.environ.get("MC_TEST_ADMIN", "")


def replica_asks():
    """GetReplicaList requests (single and batch) the master has served."""
    text = urllib.request.urlopen("http://%s/metrics" % ADMIN, timeout=10).read().decode()
    n = re.findall(r"^master_(?:batch_)?get_replica_list_requests_total (\d+)", text, re.M)
    assert len(n) == 2, "no get_replica_list counters in the master's metrics"
    return sum(int(x) for x in n)


def on(seg):
    c = ReplicateConfig()
    c.preferred_segment = seg
    return c


def pattern(tag, n):
    return (tag * (n // len(tag) + 1))[:n]


def case_repeated_get_skips_master():
    a, b = mk_store(), mk_store()
    k, v = uniq(), os.urandom(4096)
    assert b.put(k, v, on(b.get_hostname())) == 0
    before = replica_asks()
    gets = [a.get(k) for _ in range(20)]
    asked = replica_asks() - before
    assert all(g == v for g in gets)
    # the first get asks; the others read on the lease it granted (a stall
    # past the lease on a loaded machine costs one more ask, never twenty)
    assert 1 <= asked < 20, asked
    # once the lease ran out, the master is asked again
    t = replica_asks()
    assert until(lambda: a.get(k) == v and replica_asks() > t, timeout=5)
    a.close()
    b.close()


def case_forced_remove_keeps_range_until_lease_end():
    a, b = mk_store(), mk_store()
    seg = b.get_hostname()
    k, v1 = uniq(), pattern(b"old-bytes-", 64 * 1024)
    assert b.put(k, v1, on(seg)) == 0
    assert a.get(k) == v1  # a now holds the lease, and the replica in its cache
    assert b.remove(k, force=True) == 0
    # fill b's segment with other objects of the same size: none may land on
    # the removed object's range while a's lease runs
    v2 = pattern(b"NEW-BYTES-", 64 * 1024)
    fill = [uniq("fill") for _ in range(200)]
    for f in fill:
        b.put(f, v2, on(seg))
    got = a.get(k)
    assert got in (v1, b""), got[:32]  # the object as it was, or gone: never another's bytes
    assert until(lambda: a.get(k) == b"", timeout=5)  # gone once the lease ended
    for f in fill:
        b.remove(f, force=True)
    a.close()
    b.close()


def case_own_remove_is_seen_at_once():
    a, b = mk_store(), mk_store()
    k1, k2, v = uniq(), uniq(), os.urandom(1024)
    for k in (k1, k2):
        assert b.put(k, v, on(b.get_hostname())) == 0
        assert a.get(k) == v
    assert a.remove(k1, force=True) == 0
    assert a.get(k1) == b""
    assert a.get(k2) == v
    assert a.remove_all(force=True) >= 1
    assert a.get(k2) == b""
    a.close()
    b.close()


def case_owner_gone_falls_back_to_master():
    a, b = mk_store(), mk_store()
    k, v = uniq(), os.urandom(8192)
    assert b.put(k, v, on(b.get_hostname())) == 0
    assert a.get(k) == v
    assert b.close() == 0  # its segment (and the object) leave the pool
    t0 = time.monotonic()
    assert a.get(k) == b""  # the cached replica fails, the master says gone
    assert time.monotonic() - t0 < 5
    a.close()


def case_batch_mixes_cached_and_asked():
    a, b = mk_store(), mk_store()
    keys = [uniq() for _ in range(8)]
    vals = [os.urandom(2048) for _ in keys]
    for k, v in zip(keys, vals):
        assert b.put(k, v, on(b.get_hostname())) == 0
    assert a.get(keys[0]) == vals[0] and a.get(keys[3]) == vals[3]  # two of them cached
    assert a.get_batch(keys) == vals
    assert a.get_batch(keys + [uniq("miss")]) == vals + [b""]
    a.close()
    b.close()


def fenced_silent_master():
    """(test_no_cached_read_once_the_master_is_silent) The master is stopped (SIGSTOP) after a
    cached get; 1 s later, inside the lease, a get of the same key waits for the master
    (continued 1.5 s after the stop) instead of reading the cached replica."""
    import signal
    import threading
    a, b = mk_store(), mk_store()
    k, v = uniq(), os.urandom(4096)
    assert b.put(k, v, on(b.get_hostname())) == 0
    assert a.get(k) == v
    before = replica_asks()
    assert a.get(k) == v and replica_asks() == before  # a hit: the master just answered
    pid = int(os.environ["MC_TEST_MASTER_PID"])
    os.kill(pid, signal.SIGSTOP)
    t0 = time.monotonic()
    cont = threading.Timer(1.5, os.kill, (pid, signal.SIGCONT))
    cont.start()
    try:
        time.sleep(1.0)  # the quantity under test: the 0.9 s window passes, the lease does not
        got = a.get(k)
        waited = time.monotonic() - t0
    finally:
        cont.join()
        os.kill(pid, signal.SIGCONT)
    assert got == v  # answered by the master once it ran again: the lease still holds it
    assert waited >= 1.4, waited  # not from the cache, which would have answered at 1.0 s
    assert replica_asks() > before
    a.close()
    b.close()
