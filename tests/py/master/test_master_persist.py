"""mooncake_master persistence against real processes: the master is killed
(SIGKILL) and restarted with the same flags and persistence directory while
a real store (tests/integ/store_test_peer, the C store client) keeps writing
and reading; objects survive, new puts go on, and no get ever returns bytes
other than those of that key's put (values are a pattern of a per-key seed,
compared byte for byte by the peer). Also: the master and a store killed
together, and torn or corrupt files. Each fails on the code before
persistence (a restart started with an empty index)."""
import os
import random
import re
import signal
import subprocess
import threading
import time

import pytest

from mc_fixtures import SAN_RE, Master, bin_dir, clean_env
from mp_wire import Conn
from waits import wait_for  # noqa: E402

CLIENT_TTL = 2  # s; the restore's grace period is twice that


class Peer:
    """store_test_peer: a store (segment seg_bytes) serving PUT/GET lines."""

    def __init__(self, tmp, master, seg_bytes=128 << 20):
        exe = os.path.join(bin_dir(), "store_test_peer")
        if not os.path.exists(exe):
            pytest.skip("store_test_peer not built")
        self.errpath = os.path.join(str(tmp), "peer-%d.err" % time.monotonic_ns())
        env = clean_env()
        env["MC_LOG_LEVEL"] = "info"
        self.p = subprocess.Popen([exe, master.rpc, master.meta, str(seg_bytes)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=open(self.errpath, "wb"), text=True, env=env)
        line = self.p.stdout.readline()
        assert line.startswith("READY "), line + self.stderr()
        self.name = line.split()[1]
        self.lock = threading.Lock()

    def cmd(self, line):
        with self.lock:
            self.p.stdin.write(line + "\n")
            self.p.stdin.flush()
            return self.p.stdout.readline().strip()

    def put(self, key, size, seed, pref=""):
        r = self.cmd("PUT %s %d %d %s" % (key, size, seed, pref))
        assert r.startswith("RC "), r
        return int(r.split()[1])

    def get(self, key, size, seed):
        """bytes read (== size), or a negative error; fails on wrong bytes."""
        r = self.cmd("GET %s %d %d" % (key, size, seed))
        assert not r.startswith("BAD"), "key %s: wrong bytes (%s)" % (key, r)
        assert r.startswith("RC "), r
        return int(r.split()[1])

    def stderr(self):
        with open(self.errpath, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        if self.p.poll() is None:
            try:
                self.cmd("QUIT")
            except (BrokenPipeError, OSError):
                pass
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def persist_master(tmp, pdir, rpc=0, meta=0, env=None, extra=()):
    old = {}
    env = dict(env or {}, MC_LOG_LEVEL="info")
    for k, v in env.items():
        old[k] = os.environ.get(k)
        os.environ[k] = str(v)
    try:
        return Master(tmp, extra=["--port", str(rpc), "--rpc_port", str(rpc),
                                  "--http_metadata_server_port", str(meta),
                                  "--persist_dir", str(pdir), "--client_ttl", str(CLIENT_TTL)]
                      + list(extra))
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def restart(tmp, m, pdir, **kw):
    """SIGKILL m, start it again on the same ports and directory."""
    rpc = int(m.rpc.rsplit(":", 1)[1])
    meta = int(m.meta.split(":")[2].split("/")[0])
    m.p.send_signal(signal.SIGKILL)
    m.p.wait()
    assert not SAN_RE.search(m.stderr()), m.stderr()[-4000:]
    for _ in range(50):  # the ports may take a moment to be free again
        try:
            return persist_master(tmp, pdir, rpc, meta, **kw)
        except RuntimeError:
            time.sleep(0.1)
    raise AssertionError("master did not restart")


def test_kill_loop_loses_no_object(tmp_path):
    """5 x (SIGKILL the master, start it again) under a put/get workload:
    every object completed over 1 s before a kill is readable after it, new
    puts work after each restart, no get returns wrong bytes. Also measures
    the time from the master's ready line to the store's remount."""
    pdir = tmp_path / "persist"
    m = persist_master(tmp_path, pdir)
    peer = Peer(tmp_path, m)
    done = []  # (key, size, seed, monotonic time of success)
    stop = threading.Event()
    errors = []
    rnd = random.Random(7)

    def work():
        n = 0
        try:
            while not stop.is_set():
                n += 1
                size = rnd.choice((1000, 4096, 8192))
                key = "kl/%d" % n
                if peer.put(key, size, n) == 0:
                    done.append((key, size, n, time.monotonic()))
                if done:
                    k, sz, sd, _ = done[rnd.randrange(len(done))]
                    rc = peer.get(k, sz, sd)  # asserts on wrong bytes
                    assert rc == sz or rc < 0, rc
                time.sleep(0.002)  # a pace that stays far below the segment's size
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    remount_s = []
    try:
        for rnd_i in range(5):
            base = len(done)
            wait_for(lambda: len(done) >= base + 200 or errors, 60, "200 new puts")
            assert not errors, errors
            time.sleep(1.2)  # so that the last 200 are all older than 1 s at the kill
            kill_t = time.monotonic()
            old = [d for d in done if d[3] < kill_t - 1.0]
            m = restart(tmp_path, m, pdir)
            ready_t = time.monotonic()
            c = Conn(m.rpc)
            c.ready()
            probe = old[-1][0]
            wait_for(lambda: c.get_replicas(probe)[0] == 0, 30, "the store's remount")
            remount_s.append(time.monotonic() - ready_t)
            c.close()
            for key, size, seed, _ in old:
                assert peer.get(key, size, seed) == size, "round %d: %s lost" % (rnd_i, key)
            assert not errors, errors
        base = len(done)
        wait_for(lambda: len(done) >= base + 50 or errors, 60, "puts after the last restart")
    finally:
        stop.set()
        t.join(30)
        peer.stop()
        m.stop()
    assert not errors, errors
    print("remount after restart (s):", ["%.2f" % s for s in remount_s])
    assert max(remount_s) < 3.0, remount_s
    assert "recovered" in m.stderr()
    assert not SAN_RE.search(peer.stderr()), peer.stderr()[-4000:]


def test_master_and_store_killed_together(tmp_path):
    """The master and store B die together: after the restart A's objects are
    back, B's are gone once the grace period (2 x client_ttl) is over."""
    pdir = tmp_path / "persist"
    m = persist_master(tmp_path, pdir)
    a, b = Peer(tmp_path, m), Peer(tmp_path, m)
    try:
        for i in range(40):
            assert a.put("mx/a%d" % i, 5000, i, a.name) == 0
            assert a.put("mx/b%d" % i, 5000, 100 + i, b.name) == 0
        time.sleep(0.2)
        b.p.send_signal(signal.SIGKILL)
        b.p.wait()
        m = restart(tmp_path, m, pdir)
        c = Conn(m.rpc)
        c.ready()
        wait_for(lambda: "restore finished" in m.stderr(), 4 * CLIENT_TTL + 10, "the grace end")
        for i in range(40):
            assert a.get("mx/a%d" % i, 5000, i) == 5000
            assert c.get_replicas("mx/b%d" % i)[0] == -704
        assert re.search(r"restore finished: 40 of 80 objects restored; 40 replicas lost with 1 "
                         r"segments", m.stderr()), m.stderr()[-3000:]
        c.close()
        # and a restart after that does not bring B's objects back
        m = restart(tmp_path, m, pdir)
        c = Conn(m.rpc)
        c.ready()
        wait_for(lambda: c.get_replicas("mx/a0")[0] == 0, 30, "A's remount")
        assert c.get_replicas("mx/b0")[0] == -704
        c.close()
    finally:
        a.stop()
        m.stop()


SEG = (9, 9)
CL = (8, 8)


def fill(m, n, size=4096):
    c = Conn(m.rpc)
    c.ready()
    assert c.mount(CL, SEG, "s:1", 0x10000000, 1 << 26) == 0
    for i in range(n):
        assert c.put(CL, "d/%d" % i, size) == 0
    return c


def restored(m, n):
    c = Conn(m.rpc)
    c.ready()
    assert c.remount(CL, [(SEG, "s:1", 0x10000000, 1 << 26)]) == 0
    got = sum(1 for i in range(n) if c.get_replicas("d/%d" % i)[0] == 0)
    c.close()
    return got


def persist_lines(m):
    return [ln for ln in m.stderr().splitlines() if "W [persist]" in ln]


def test_torn_and_corrupt_log(tmp_path):
    """A log cut mid-record, then a flipped byte in a record: each is named in
    one line (file, offset, objects recovered) and the master starts with
    what it can prove."""
    pdir = tmp_path / "persist"
    m = persist_master(tmp_path, pdir)
    fill(m, 100).close()
    m = restart(tmp_path, m, pdir)
    log = sorted(p for p in os.listdir(pdir) if p.startswith("log-"))[0]
    path = os.path.join(pdir, log)
    m.p.send_signal(signal.SIGKILL)
    m.p.wait()
    size = os.path.getsize(path)
    rec = (size - 40) // 100
    os.truncate(path, size - rec // 2)  # d/99 torn
    m = persist_master(tmp_path, pdir, int(m.rpc.rsplit(":", 1)[1]))
    lines = persist_lines(m)
    assert len(lines) == 1, lines
    assert re.search(r"%s offset \d+: torn record at the end of the file; recovered 99 objects"
                     % re.escape(path), lines[0]), lines
    assert restored(m, 100) == 99
    m.p.send_signal(signal.SIGKILL)
    m.p.wait()
    with open(path, "r+b") as f:  # a flipped byte in d/89
        f.seek(40 + 89 * rec + rec // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x10]))
    m = persist_master(tmp_path, pdir, int(m.rpc.rsplit(":", 1)[1]))
    lines = persist_lines(m)
    assert len(lines) == 1, lines
    # the objects logged before the bad record can no longer be proven (the
    # lost record could have removed any of them); those after it are kept
    g = re.search(r"offset \d+: checksum mismatch .*recovered (\d+) objects .*\((\d+) dropped as "
                  r"unprovable", lines[0])
    assert g, lines
    kept, dropped = int(g.group(1)), int(g.group(2))
    assert 0 < kept < 20 and kept + dropped == 98, lines
    assert restored(m, 100) == kept
    m.stop()


def test_corrupt_snapshot(tmp_path):
    """A flipped byte in a snapshot loses that one object, said in one line."""
    pdir = tmp_path / "persist"
    env = {"MC_MASTER_PERSIST_COMPACT_BYTES": "8192"}
    m = persist_master(tmp_path, pdir, env=env)
    c = fill(m, 200)
    wait_for(lambda: any(p.startswith("snap-") and p.endswith(".mcs") for p in os.listdir(pdir)),
             20, "a snapshot")
    c.close()
    m = restart(tmp_path, m, pdir, env=env)
    assert not persist_lines(m), persist_lines(m)
    assert restored(m, 200) == 200
    snap = sorted(p for p in os.listdir(pdir) if p.startswith("snap-"))[-1]
    path = os.path.join(pdir, snap)
    m.p.send_signal(signal.SIGKILL)
    m.p.wait()
    with open(path, "r+b") as f:
        f.seek(40 + 30)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x01]))
    m = persist_master(tmp_path, pdir, int(m.rpc.rsplit(":", 1)[1]), env=env)
    lines = persist_lines(m)
    assert len(lines) == 1, lines
    assert re.search(r"%s offset 40: checksum mismatch.*recovered 199 objects" % re.escape(path),
                     lines[0]), lines
    assert restored(m, 200) == 199
    m.stop()
