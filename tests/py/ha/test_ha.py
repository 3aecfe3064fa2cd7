"""HA masters on a real 3-member etcd cluster: one leads and serves, the
others stand by and answer -1010; the leader's kill -9 hands the pool to a
standby that serves (and the store clients follow it and remount); a leader
stopped with SIGSTOP past its lease loses to another and, once resumed,
serves nothing; clients never see two leaders (every reply's view is checked
by the client, and the views a workload saw only ever grow).

Each master runs with --rpc_address 127.0.0.1 and a free port; the store
clients are the `mooncake` package in child pythons (ha_workload.py), with
master_server_address "etcd://..." and metadata on the same etcd."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from mc_fixtures import SAN_RE, Master, child_env, core_so

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "master"))
from mp_wire import SERVICE_READY, Conn, s_str  # noqa: E402
from waits import admin_urlopen, until as _until  # noqa: E402


def until(fn, timeout=15.0, step=0.05):
    return _until(fn, timeout, step)


def http(addr, path):
    with admin_urlopen(addr, path, 5) as r:  # https when the test runs the pool with TLS
        body = r.read().decode()
    return json.loads(body) if body.startswith("{") else body




class Cluster:
    """n HA masters on one etcd cluster (cluster id per test), or on one
    redis server when redis is given; .conn is the clients' master address."""

    def __init__(self, tmp, etcd, n, cluster_id, redis=None):
        self.etcd, self.cluster_id, self.tmp = etcd, cluster_id, tmp
        if redis:
            self.conn = "redis://%s" % redis.addr
            self.flags = ["--enable_ha=true", "--ha_backend_type=redis",
                          "--ha_backend_connstring", self.conn]
        else:
            self.conn = "etcd://" + ";".join(etcd.endpoints)
            self.flags = ["--enable_ha=true", "--etcd_endpoints", ";".join(etcd.endpoints)]
        self.flags += ["--cluster_id", cluster_id, "--client_ttl=3"]
        self.masters = [Master(tmp, extra=self.flags) for _ in range(n)]

    def roles(self):
        out = []
        for m in self.masters:
            if m.p.poll() is not None:
                out.append("dead")
                continue
            try:
                out.append(http(m.admin, "/role"))
            except OSError:
                out.append("down")
        return out

    def leader(self, timeout=15):
        """The one master whose /role is leader (waits for an election)."""
        def one():
            r = self.roles()
            return r.count("leader") == 1 and self.masters[r.index("leader")]
        m = until(one, timeout)
        assert m, self.roles()
        return m

    def stop(self):
        for m in self.masters:
            m.stop()
            assert not SAN_RE.search(m.stderr()), m.stderr()[-4000:]


class Child:
    """A child python driven over stdin (self.p), its stderr in self.errpath
    (self.err): closing stdin ends it; its stderr must hold no sanitizer report."""

    def stderr(self):
        with open(self.errpath, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass
        try:
            self.p.wait(30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.err.close()
        out = self.stderr()
        assert not SAN_RE.search(out), out[-4000:]
        return out


class Workload(Child):
    """ha_workload.py in a child python: lines of OK/ERR/BAD per operation."""

    def __init__(self, cluster, seconds=60):
        env = child_env()
        env["MC_TEST_RPC"] = cluster.conn
        env["MC_TEST_META"] = "etcd://" + ";".join(cluster.etcd.endpoints)
        env["MC_STORE_CLUSTER_ID"] = cluster.cluster_id
        env.setdefault("MC_LOG_LEVEL", "warn")
        self.errpath = os.path.join(str(cluster.tmp), "workload-%d.err" % time.monotonic_ns())
        self.err = open(self.errpath, "wb")
        self.p = subprocess.Popen([sys.executable, os.path.join(HERE, "ha_workload.py"),
                                   str(seconds)], env=env, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=self.err, text=True)
        self.lines = []
        first = self.p.stdout.readline()
        assert first.strip() == "READY 0", first + self.stderr()
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.append(line.split())

    def ok_puts_after(self, t):
        return [ln for ln in list(self.lines) if ln[:2] == ["OK", "PUT"] and float(ln[3]) > t]

    def bad(self):
        return [ln for ln in list(self.lines) if ln[0] == "BAD"]

    def stop(self):
        out = Child.stop(self)
        self.t.join(5)
        return out


@pytest.fixture
def ha(tmp_path, etcd3, request):
    if not core_so():
        pytest.skip("mooncake._core not built")
    made = []

    def make(n=2, redis=None):
        c = Cluster(tmp_path, etcd3, n, "ha-%s-%d" % (request.node.name[:20], len(made)), redis)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


def test_one_leader_standbys_refuse(ha):
    c = ha(3)
    lead = c.leader()
    roles = c.roles()
    assert sorted(roles) == ["leader", "standby", "standby"], roles
    view = http(lead.admin, "/leader")
    assert view["present"] and view["leader_address"] == lead.rpc, view
    for m in c.masters:  # every master names the same leader
        assert until(lambda: http(m.admin, "/leader").get("leader_address") == lead.rpc), m.rpc
        h = http(m.admin, "/health")
        assert h["status"] == "ok" and h["role"] in ("leader", "standby"), h
    assert http(lead.admin, "/ha_status") == "serving"
    standby = next(m for m in c.masters if m is not lead)
    # a standby answers -1010 and closes; its data endpoints are 503
    conn = Conn(standby.rpc)
    status, _ = conn.call(SERVICE_READY, s_str("2.0.0"))
    assert status == -1010
    try:
        urllib.request.urlopen("http://%s/get_all_keys" % standby.admin, timeout=5)
        raise AssertionError("a standby served /get_all_keys")
    except urllib.error.HTTPError as e:
        assert e.code == 503
    # the leader serves, under its view
    conn = Conn(lead.rpc)
    conn.ready()
    assert conn.view == view["view_version"] and conn.view > 0


def test_store_follows_leader_across_kill(ha):
    c = ha(2)
    lead = c.leader()
    w = Workload(c, seconds=90)
    try:
        assert until(lambda: len(w.ok_puts_after(0)) >= 20, 30), w.stderr()[-3000:]
        t_kill = time.monotonic()
        os.kill(lead.p.pid, signal.SIGKILL)
        lead.p.wait()
        old_view = http(next(m for m in c.masters if m is not lead).admin, "/leader")
        new = c.leader(timeout=20)
        assert new is not lead
        assert until(lambda: w.ok_puts_after(t_kill), 20), w.stderr()[-3000:]
        first = float(w.ok_puts_after(t_kill)[0][3]) - t_kill
        assert first < 10, first
        assert until(lambda: len(w.ok_puts_after(t_kill)) >= 20, 20)
        assert http(new.admin, "/leader")["view_version"] > old_view.get("view_version", 0)
    finally:
        w.stop()
    assert not w.bad(), w.bad()[:5]


def test_paused_leader_serves_nothing_after_resume(ha):
    c = ha(2)
    lead = c.leader()
    conn = Conn(lead.rpc)
    conn.ready()
    old_view = conn.view
    os.kill(lead.p.pid, signal.SIGSTOP)
    try:
        # another master takes over once the paused one's 5 s lease has run out
        other = next(m for m in c.masters if m is not lead)
        assert until(lambda: http(other.admin, "/role") == "leader", 20)
        new_view = http(other.admin, "/leader")["view_version"]
        assert new_view > old_view
    finally:
        os.kill(lead.p.pid, signal.SIGCONT)
    # at once after SIGCONT, before its election thread could notice: nothing
    # (a -1010 answer, or the connection closed when the master, noticing,
    # drops every client connection: either way not served)
    try:
        fresh = Conn(lead.rpc)
        status, _ = fresh.call(SERVICE_READY, s_str("2.0.0"))
        assert status == -1010, status
    except ConnectionError:
        pass
    assert until(lambda: http(lead.admin, "/role") == "standby", 10)
    # /role says standby as soon as the lease deadline passed; the election
    # thread's line follows once its refresh finds the lease gone
    assert until(lambda: "lost leadership" in lead.stderr(), 10), lead.stderr()[-2000:]
    # and the two never both served: the old leader's view ended before the new one's began
    assert http(lead.admin, "/leader").get("view_version") in (None, new_view)


def test_etcd_member_restart_keeps_leader_serving(ha, etcd3):
    c = ha(2)
    lead = c.leader()
    etcd3.stop_member(0)
    try:
        conn = Conn(lead.rpc)
        conn.ready()
        time.sleep(6)  # longer than the 5 s lease: the leader must keep it over the 2 members left
        assert http(lead.admin, "/role") == "leader"
        assert c.roles().count("leader") == 1
    finally:
        etcd3.start_member(0)


def test_redis_backend_failover(ha, redis):
    """--ha_backend_type=redis: the same election on SET NX PX; clients with
    master address redis://... follow the leader across its kill -9."""
    c = ha(2, redis=redis)
    lead = c.leader()
    assert sorted(c.roles()) == ["leader", "standby"]
    w = Workload(c, seconds=60)
    try:
        assert until(lambda: len(w.ok_puts_after(0)) >= 10, 30), w.stderr()[-3000:]
        t_kill = time.monotonic()
        os.kill(lead.p.pid, signal.SIGKILL)
        lead.p.wait()
        new = c.leader(timeout=20)
        assert new is not lead
        assert until(lambda: len(w.ok_puts_after(t_kill)) >= 10, 20), w.stderr()[-3000:]
    finally:
        w.stop()
    assert not w.bad(), w.bad()[:5]
