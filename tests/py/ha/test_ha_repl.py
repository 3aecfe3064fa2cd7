"""HA replication against real processes: a 3-member etcd, HA masters, and a
store client in a child python (ha_workload.py, index mode) whose puts and
byte-checked gets go through master address etcd://... Standbys follow the
leader's journal (master_repl.c), so that after a failover the new leader
serves the whole index as the clients remount:

- kill -9 of the leader: every object put before the kill is readable byte
  for byte through the new leader (the test asserts this for puts that ended
  more than 1 s before the kill, and reports the loss window it saw), and new
  puts go on;
- the leader stopped with SIGSTOP past its lease: the new leader serves the
  whole index; the resumed old one serves nothing;
- a standby started late catches up with an existing leader's index;
- three failovers in a row, each killing the new leader, lose nothing;
- a standby stopped with SIGSTOP does not slow the leader (rates printed),
  is cut off once it falls behind, and re-syncs once resumed;
- freed ranges are held until the in-sync standby acks their removal, and
  released then (mooncake_master_repl_held_bytes back to 0);
- a standby stopped with SIGSTOP leaves the in-sync set (the leader rewrites
  the key and releases what it held, and keeps serving); elected after the
  leader's kill -9, it does not adopt its stale table (one line says why),
  so no get returns another key's bytes;
- the same on redis (--ha_backend_type=redis): a failover adopts the
  replicated index through the in-sync set key there.
- puts into a full pool wait for held frees instead of failing;
- --enable_ha_replication=false: no stream, a new leader starts empty.
Replication is on by default with --enable_ha (--enable_ha_replication).

Readiness is read from the masters' /metrics (mooncake_master_repl_*) and
their log lines ("restore finished"), never from sleeps."""
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from mc_fixtures import Master, child_env, core_so

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from test_ha import Child, Cluster, http, until  # noqa: E402
from waits import admin_metrics  # noqa: E402


def metrics(m):
    return admin_metrics(m.admin, timeout=5)


def synced(m, n):
    """m is a standby that holds the leader's whole base and at least n objects."""
    x = metrics(m)
    return x.get("master_repl_synced") == 1 and x.get("master_repl_objects", 0) >= n


def in_sync(lead, n):
    """lead's in-sync set (as written to etcd) has n standbys: only a standby
    listed there adopts its table when elected (a standby that just received
    its base joins within an ack and one etcd write)."""
    return metrics(lead).get("master_repl_isr_size") == n


class Index(Child):
    """ha_workload.py in index mode: fill / check / mark over stdin."""

    def __init__(self, cluster, value_size=1024, segment_mb=32):
        env = child_env()
        env["MC_TEST_RPC"] = cluster.conn
        env["MC_TEST_META"] = "etcd://" + ";".join(cluster.etcd.endpoints)
        env["MC_STORE_CLUSTER_ID"] = cluster.cluster_id
        env["MC_TEST_VALUE_SIZE"] = str(value_size)
        env["MC_TEST_SEGMENT_MB"] = str(segment_mb)
        # a leader stopped with SIGSTOP keeps its sockets: the client gives up
        # on it after this and finds the new leader through etcd
        env["MC_RPC_TIMEOUT_MS"] = "2000"
        env.setdefault("MC_LOG_LEVEL", "warn")
        self.errpath = os.path.join(str(cluster.tmp), "index-%d.err" % time.monotonic_ns())
        self.err = open(self.errpath, "wb")
        self.p = subprocess.Popen([sys.executable, os.path.join(HERE, "ha_workload.py"), "index"],
                                  env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self.err, text=True)
        first = self.p.stdout.readline()
        assert first.strip() == "READY 0", first + self.stderr()

    def cmd(self, line, timeout=120):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        out = []
        t = threading.Thread(target=lambda: out.append(self.p.stdout.readline()), daemon=True)
        t.start()
        t.join(timeout)
        assert out and out[0], "no answer to %r\n%s" % (line, self.stderr()[-3000:])
        return out[0].split()

    def fill(self, n, batch=1):
        r = self.cmd("fill %d %d" % (n, batch))
        assert r[0] == "FILLED" and int(r[1]) == n, r
        return float(r[3]), float(r[4])  # end of the last put, seconds taken

    def remove(self, a, b):
        r = self.cmd("remove %d %d" % (a, b))
        assert r[0] == "REMOVED", r
        return int(r[1])

    def check(self):
        r = self.cmd("check", 300)
        assert r[0] == "CHECKED", r
        return int(r[1]), int(r[2]), int(r[3]), float(r[4])  # ok, missing, bad, oldest



@pytest.fixture
def ha_repl(tmp_path, etcd3, request, monkeypatch):
    if not core_so():
        pytest.skip("mooncake._core not built")
    monkeypatch.setenv("MC_LOG_LEVEL", "info")  # the masters' "restore finished" lines
    monkeypatch.delenv("MC_MASTER_REPL", raising=False)  # on by default with --enable_ha
    made = []

    def make(n=2, redis=None):
        c = Cluster(tmp_path, etcd3, n, "repl-%s-%d" % (request.node.name[:20], len(made)),
                    redis)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


def restored(m):
    """m adopted a replicated index and finished restoring it."""
    err = m.stderr()
    return "adopted" in err and "restore finished" in err


def add_master(c):
    m = Master(c.tmp, extra=c.flags)
    c.masters.append(m)
    return m


def others(c, lead):
    return [m for m in c.masters if m is not lead and m.p.poll() is None]


def test_kill9_new_leader_serves_whole_index(ha_repl):
    c = ha_repl(2)
    lead = c.leader()
    ix = Index(c)
    try:
        ix.fill(1500)
        standby = others(c, lead)[0]
        # the kill lands while puts go on: the last ones may be in flight
        t_last, _ = ix.fill(200)
        t_kill = time.monotonic()
        os.kill(lead.p.pid, signal.SIGKILL)
        lead.p.wait()
        new = c.leader(timeout=20)
        assert new is standby
        assert until(lambda: restored(new), 30), new.stderr()[-3000:]
        ok, missing, bad, oldest = ix.check()
        print("kill -9: %d of 1700 readable, %d missing (loss window %.4f s), last put ended "
              "%.4f s before the kill" % (ok, missing, t_kill - oldest if missing else 0,
                                          t_kill - t_last))
        assert bad == 0
        # everything whose put ended more than 1 s before the kill is there
        assert missing == 0 or oldest > t_kill - 1.0, (missing, t_kill - oldest)
        assert ok >= 1500, (ok, missing)
        ix.fill(100)  # new puts go on
        ok2, missing2, bad2, _ = ix.check()
        assert bad2 == 0 and ok2 == ok + 100, (ok2, missing2, bad2)
        assert re.search(r"adopted \d+ objects replicated from leader", new.stderr())
    finally:
        ix.stop()


def test_paused_leader_new_leader_serves_index(ha_repl):
    c = ha_repl(2)
    lead = c.leader()
    ix = Index(c)
    try:
        ix.fill(800)
        standby = others(c, lead)[0]
        assert until(lambda: synced(standby, 800), 20), metrics(standby)
        assert until(lambda: in_sync(lead, 1), 20), metrics(lead)
        os.kill(lead.p.pid, signal.SIGSTOP)
        try:
            assert until(lambda: http(standby.admin, "/role") == "leader", 20)
            assert until(lambda: restored(standby), 30), standby.stderr()[-3000:]
            ok, missing, bad, _ = ix.check()
            assert (ok, missing, bad) == (800, 0, 0)
        finally:
            os.kill(lead.p.pid, signal.SIGCONT)
        assert until(lambda: http(lead.admin, "/role") == "standby", 10)
        # the resumed one serves nothing and holds no index of its own
        assert until(lambda: metrics(lead).get("master_key_count") == 0, 10), metrics(lead)
        ix.fill(50)
        ok, missing, bad, _ = ix.check()
        assert (ok, missing, bad) == (850, 0, 0)
        # and it follows the new leader now
        assert until(lambda: synced(lead, 850), 20), metrics(lead)
    finally:
        ix.stop()


def test_late_standby_catches_up(ha_repl):
    c = ha_repl(1)
    lead = c.leader()
    ix = Index(c, value_size=256)
    try:
        ix.fill(20000, batch=200)
        late = add_master(c)
        assert until(lambda: synced(late, 20000), 30), metrics(late)
        assert "base of 20000 objects" in late.stderr(), late.stderr()[-2000:]
        assert until(lambda: in_sync(lead, 1), 20), metrics(lead)
        os.kill(lead.p.pid, signal.SIGKILL)
        lead.p.wait()
        assert c.leader(timeout=20) is late
        assert until(lambda: restored(late), 30), late.stderr()[-3000:]
        ok, missing, bad, _ = ix.check()
        assert (ok, missing, bad) == (20000, 0, 0)
    finally:
        ix.stop()


def test_three_failovers_in_a_row(ha_repl):
    c = ha_repl(3)
    ix = Index(c)
    total = 0
    try:
        for k in range(3):
            lead = c.leader(timeout=20)
            ix.fill(300)
            total += 300
            live = others(c, lead)
            assert len(live) >= 2
            for m in live:
                assert until(lambda: synced(m, total), 20), (k, metrics(m))
            assert until(lambda: in_sync(lead, len(live)), 20), (k, metrics(lead))
            os.kill(lead.p.pid, signal.SIGKILL)
            lead.p.wait()
            new = c.leader(timeout=20)
            assert until(lambda: restored(new), 30), new.stderr()[-3000:]
            ok, missing, bad, _ = ix.check()
            assert (ok, missing, bad) == (total, 0, 0), k
            add_master(c)  # a fresh standby, so that two follow the next leader
    finally:
        ix.stop()


def test_stalled_standby_does_not_slow_leader(ha_repl, monkeypatch):
    monkeypatch.setenv("MC_MASTER_REPL_QUEUE_BYTES", "65536")
    monkeypatch.setenv("MC_MASTER_REPL_STALL_MS", "2000")
    c = ha_repl(2)
    lead = c.leader()
    ix = Index(c, value_size=128, segment_mb=64)
    standby = others(c, lead)[0]
    try:
        _, base_s = ix.fill(20000, batch=100)
        assert until(lambda: synced(standby, 20000), 20), metrics(standby)
        os.kill(standby.p.pid, signal.SIGSTOP)
        try:
            _, stalled_s = ix.fill(20000, batch=100)
            # 20000 records (~2.4 MB) overflow ~1 MiB of socket buffers and a 64 KiB queue
            assert until(lambda: metrics(lead).get("master_repl_cutoffs_total", 0) >= 1, 20), \
                metrics(lead)
        finally:
            os.kill(standby.p.pid, signal.SIGCONT)
        print("put rate: %.0f objects/s with the standby following, %.0f with it stopped "
              "(%.2fx)" % (20000 / base_s, 20000 / stalled_s, base_s / stalled_s))
        assert "cut off" in lead.stderr(), lead.stderr()[-2000:]
        # resumed, it re-syncs from scratch and holds everything
        assert until(lambda: synced(standby, 40000), 30), metrics(standby)
        assert metrics(standby).get("master_repl_resyncs_total", 0) >= 2
    finally:
        ix.stop()


def test_held_frees_released_after_ack(ha_repl):
    c = ha_repl(2)
    lead = c.leader()
    ix = Index(c)
    standby = others(c, lead)[0]
    try:
        ix.fill(600)
        assert until(lambda: synced(standby, 600), 20), metrics(standby)
        assert until(lambda: in_sync(lead, 1), 20), metrics(lead)
        before = metrics(lead).get("master_repl_held_total", 0)
        assert ix.remove(0, 300) == 300
        # every removed range went through the hold, and came back once acked
        assert until(lambda: metrics(lead).get("master_repl_held_total", 0) >= before + 300, 10), \
            metrics(lead)
        assert until(lambda: metrics(lead).get("master_repl_held_bytes") == 0, 10), metrics(lead)
        ix.fill(300)  # the released space is handed out again
        ok, missing, bad, _ = ix.check()
        assert (ok, missing, bad) == (600, 0, 0)
        assert until(lambda: synced(standby, 600) and
                     metrics(standby).get("master_repl_objects") == 600, 20), metrics(standby)
    finally:
        ix.stop()


def test_full_pool_puts_wait_for_held_frees(ha_repl, monkeypatch):
    """Puts into a full pool with a standby in sync: the space eviction frees
    for a put is held until the standby acks, and the put waits for that
    (MC_MASTER_REPL_HOLD_WAIT_MS, generous here) instead of failing or
    evicting more; no put fails, nothing wrong is read, nothing stays held."""
    monkeypatch.setenv("MC_MASTER_REPL_HOLD_WAIT_MS", "1000")
    c = ha_repl(2)
    lead = c.leader()
    ix = Index(c, value_size=64 << 10, segment_mb=16)
    standby = others(c, lead)[0]
    try:
        ix.fill(10)
        assert until(lambda: synced(standby, 10), 20), metrics(standby)
        assert until(lambda: in_sync(lead, 1), 20), metrics(lead)
        r = ix.cmd("fill 700")  # 44 MiB of puts into a 16 MiB pool
        assert r[0] == "FILLED" and int(r[1]) == 700, r
        assert int(r[5]) == 0, "%s puts failed" % r[5]
        x = metrics(lead)
        assert x.get("master_evicted_key_count", x.get("master_evicted_keys", 1)) > 0, x
        assert x.get("master_repl_held_total", 0) > 0, x
        assert until(lambda: metrics(lead).get("master_repl_held_bytes") == 0, 10), metrics(lead)
        ok, missing, bad, _ = ix.check()
        assert bad == 0 and ok > 0, (ok, missing, bad)
    finally:
        ix.stop()


def test_stopped_standby_leaves_isr_and_is_not_adopted(ha_repl, monkeypatch):
    # long enough that the removes below happen while the standby is still a member
    monkeypatch.setenv("MC_MASTER_REPL_ACK_TIMEOUT_MS", "3000")
    c = ha_repl(2)
    lead = c.leader()
    ix = Index(c)
    standby = others(c, lead)[0]
    stopped = False
    try:
        ix.fill(2000, batch=50)
        assert until(lambda: synced(standby, 2000), 20), metrics(standby)
        assert until(lambda: in_sync(lead, 1), 20), metrics(lead)
        os.kill(standby.p.pid, signal.SIGSTOP)
        stopped = True
        assert ix.remove(0, 200) == 200
        # the standby acks nothing: what the removes freed is held (the ack
        # timeout, 3 s, is far from the 200 removes' few milliseconds)
        held = metrics(lead).get("master_repl_held_bytes", 0)
        assert held >= 200 * 1024, metrics(lead)
        assert ix.remove(200, 1000) == 800
        # cut off after the ack timeout, out of the set, and the held space released
        assert until(lambda: metrics(lead).get("master_repl_cutoffs_total", 0) >= 1 and
                     in_sync(lead, 0) and metrics(lead).get("master_repl_held_bytes") == 0, 20), \
            metrics(lead)
        assert "no ack for 3000 ms" in lead.stderr(), lead.stderr()[-2000:]
        # the leader keeps serving, and hands the freed space out again
        ix.fill(1000, batch=50)
        ok, missing, bad, _ = ix.check()
        assert (ok, missing, bad) == (2000, 0, 0)
        os.kill(lead.p.pid, signal.SIGKILL)
        lead.p.wait()
        os.kill(standby.p.pid, signal.SIGCONT)
        stopped = False
        assert c.leader(timeout=30) is standby
        assert until(lambda: "not adopting" in standby.stderr(), 10), standby.stderr()[-3000:]
        line = [x for x in standby.stderr().splitlines() if "not adopting" in x][0]
        print(line)
        assert "does not list this standby" in line, line
        # no get returns another key's bytes: the new leader starts empty
        ok, missing, bad, _ = ix.check()
        assert bad == 0, (ok, missing, bad)
        assert ok == 0, (ok, missing, bad)
        ix.fill(100)
        ok, missing, bad, _ = ix.check()
        assert (ok, bad) == (100, 0), (ok, missing, bad)
    finally:
        if stopped:
            os.kill(standby.p.pid, signal.SIGCONT)
        ix.stop()


def test_cut_off_standby_serves_no_reused_range(ha_repl, monkeypatch):
    """A standby cut off (its queue overflowed while it was stopped) misses the
    removal of objects whose space the leader then hands to new ones. Elected
    after the leader's kill -9, it must not serve the removed keys from that
    space (before the in-sync set, it adopted its stale table and did)."""
    monkeypatch.setenv("MC_MASTER_REPL_QUEUE_BYTES", "65536")
    monkeypatch.setenv("MC_MASTER_REPL_STALL_MS", "2000")
    c = ha_repl(2)
    lead = c.leader()
    ix = Index(c, value_size=512, segment_mb=64)
    standby = others(c, lead)[0]
    stopped = False
    try:
        ix.fill(4000, batch=100)
        assert until(lambda: synced(standby, 4000), 20), metrics(standby)
        os.kill(standby.p.pid, signal.SIGSTOP)
        stopped = True
        ix.fill(20000, batch=100)  # overflows its queue: it is cut off
        assert until(lambda: metrics(lead).get("master_repl_cutoffs_total", 0) >= 1, 20), \
            metrics(lead)
        ix.remove(0, 4000)
        ix.fill(4000, batch=100)  # lands in the space of the removed ones
        os.kill(lead.p.pid, signal.SIGKILL)
        lead.p.wait()
        os.kill(standby.p.pid, signal.SIGCONT)
        stopped = False
        assert c.leader(timeout=30) is standby
        assert until(lambda: "restore finished" in standby.stderr() or
                     "not adopting" in standby.stderr(), 30), standby.stderr()[-3000:]
        ok, missing, bad, _ = ix.check()
        print("after the failover: %d readable, %d missing, %d wrong" % (ok, missing, bad))
        assert bad == 0, (ok, missing, bad)
    finally:
        if stopped:
            os.kill(standby.p.pid, signal.SIGCONT)
        ix.stop()


def test_redis_failover_adopts_through_isr(ha_repl, redis):
    c = ha_repl(2, redis=redis)
    lead = c.leader()
    ix = Index(c)
    standby = others(c, lead)[0]
    try:
        ix.fill(500)
        assert until(lambda: synced(standby, 500), 20), metrics(standby)
        assert until(lambda: in_sync(lead, 1), 20), metrics(lead)
        os.kill(lead.p.pid, signal.SIGKILL)
        lead.p.wait()
        assert c.leader(timeout=20) is standby
        assert until(lambda: restored(standby), 30), standby.stderr()[-3000:]
        ok, missing, bad, _ = ix.check()
        assert (ok, missing, bad) == (500, 0, 0)
        assert "not adopting" not in standby.stderr()
    finally:
        ix.stop()


def test_replication_off_by_flag(ha_repl):
    """--enable_ha_replication=false: that master neither serves nor follows a
    stream, and elected it starts empty (the default one replicates)."""
    c = ha_repl(1)
    lead = c.leader()
    off = Master(c.tmp, extra=c.flags + ["--enable_ha_replication=false"])
    c.masters.append(off)
    ix = Index(c)
    try:
        ix.fill(100)
        assert "master_repl_isr_size" in metrics(lead)
        assert not [k for k in metrics(off) if k.startswith("master_repl_")], metrics(off)
        os.kill(lead.p.pid, signal.SIGKILL)
        lead.p.wait()
        assert c.leader(timeout=20) is off
        ok, missing, bad, _ = ix.check()
        assert (ok, bad) == (0, 0), (ok, missing, bad)
        assert "adopted" not in off.stderr()
    finally:
        ix.stop()


def test_replication_with_cluster_secret(ha_repl, monkeypatch):
    """With a cluster secret the standbys prove it on the replication port
    (and the leader proves it back): failover serves the whole index, and an
    anonymous connection to that port gets nothing of the index."""
    monkeypatch.setenv("MC_CLUSTER_SECRET", "correct horse battery staple, 32+")
    c = ha_repl(2)
    lead = c.leader()
    ix = Index(c)
    try:
        ix.fill(500)
        assert until(lambda: in_sync(lead, 1), 20)
        m = re.search(r"repl listening on (\S+):(\d+)", "\n".join(lead.lines))
        assert m, lead.lines
        s = socket.create_connection((m.group(1), int(m.group(2))), timeout=10)
        s.sendall(b"MCREPLH2" + b"\0" * 56)  # a hello with no proof before it
        s.settimeout(10)
        got = b""
        try:
            while len(got) < 1 << 20:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        assert len(got) <= 5, got[:64]  # at most the exchange's refusal, no stream
        assert until(lambda: "refused: no proof of the cluster secret" in lead.stderr(), 10)
        standby = others(c, lead)[0]
        os.kill(lead.p.pid, signal.SIGKILL)
        lead.p.wait()
        new = c.leader(timeout=20)
        assert new is standby
        assert until(lambda: restored(new), 30), new.stderr()[-3000:]
        ok, missing, bad, _ = ix.check()
        assert bad == 0 and ok == 500, (ok, missing, bad)
    finally:
        ix.stop()


def test_replication_over_tls(ha_repl, monkeypatch, tmp_path):
    """With TLS files (and the secret, inside TLS) the replication stream is
    TLS: the standby follows and failover serves the whole index; a plaintext
    connection to the port is refused in one line and gets no index."""
    sys.path.insert(0, os.path.join(HERE, "..", "security"))
    from tls_util import make_pki, tls_env
    pki = make_pki(tmp_path)
    for k, v in tls_env(pki, cert="server").items():  # every process serves 127.0.0.1
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("MC_CLUSTER_SECRET", "correct horse battery staple, 32+")
    c = ha_repl(2)
    lead = c.leader()
    ix = Index(c)
    try:
        ix.fill(500)
        assert until(lambda: in_sync(lead, 1), 20), lead.stderr()[-3000:]
        m = re.search(r"repl listening on (\S+):(\d+)", "\n".join(lead.lines))
        assert m, lead.lines
        s = socket.create_connection((m.group(1), int(m.group(2))), timeout=10)
        s.sendall(b"MCAH\1" + b"\0" * 32)  # the secret's hello, outside TLS
        s.settimeout(10)
        try:
            got = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            got = b""
        assert got == b"", got[:64]
        assert until(lambda: "TLS expected, the peer sent plaintext" in lead.stderr(), 10)
        standby = others(c, lead)[0]
        os.kill(lead.p.pid, signal.SIGKILL)
        lead.p.wait()
        new = c.leader(timeout=20)
        assert new is standby
        assert until(lambda: restored(new), 30), new.stderr()[-3000:]
        ok, missing, bad, _ = ix.check()
        assert bad == 0 and ok == 500, (ok, missing, bad)
    finally:
        ix.stop()
