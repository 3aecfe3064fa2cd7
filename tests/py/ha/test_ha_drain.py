"""A drain's moves reach HA standbys through the journal stream: with a
3-member etcd, two HA masters (replication on) and two real stores
(tests/integ/store_test_peer, byte-checked gets), the leader drains store a's
segment (every object moves to b), then is killed (SIGKILL). The standby,
elected, adopts the index: every key maps to its replica on b and reads its
own bytes; none maps to the freed range on a."""
import json
import os
import signal
import sys
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "master"))
from mp_wire import Conn  # noqa: E402
from test_ha import until  # noqa: E402
from test_ha_repl import ha_repl, others, restored, synced  # noqa: E402,F401
from test_master_drain import fill  # noqa: E402
from test_master_persist import Peer  # noqa: E402

KEY = "drain-test-key"


class Via:
    """What Peer needs of a master: the address stores are given (etcd://)."""

    def __init__(self, cluster):
        self.rpc = cluster.conn
        self.meta = "etcd://" + ";".join(cluster.etcd.endpoints)


def admin(m, path, method="GET"):
    req = urllib.request.Request("http://%s%s" % (m.admin, path), method=method,
                                 data=b"" if method == "POST" else None,
                                 headers={"X-API-Key": KEY})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_standby_adopts_moved_objects(ha_repl, monkeypatch, tmp_path):  # noqa: F811
    monkeypatch.setenv("MC_ADMIN_API_KEY", KEY)
    c = ha_repl(2)
    monkeypatch.setenv("MC_STORE_CLUSTER_ID", c.cluster_id)
    lead = c.leader()
    a, b = Peer(tmp_path, Via(c), 16 << 20), Peer(tmp_path, Via(c), 64 << 20)
    try:
        objs = fill(a, 40, a.name, "ha")
        standby = others(c, lead)[0]
        j = admin(lead, "/api/v1/drain_jobs?segment=" + a.name, "POST")
        assert until(lambda: admin(lead, "/api/v1/drain_jobs/query?job_id=" + j["job_id"])
                     ["status"] != "RUNNING", 60)
        j = admin(lead, "/api/v1/drain_jobs/query?job_id=" + j["job_id"])
        assert j["status"] == "SUCCEEDED" and j["moved_objects"] == 40, j
        # a put after the moves: once the standby holds it, it holds the moves too
        assert b.put("marker", 1000, 7, b.name) == 0
        assert until(lambda: synced(standby, 41), 30), standby.stderr()[-3000:]
        os.kill(lead.p.pid, signal.SIGKILL)
        lead.p.wait()
        new = c.leader(timeout=20)
        assert new is standby
        assert until(lambda: restored(new), 30), new.stderr()[-3000:]
        conn = Conn(new.rpc)
        conn.ready()
        for key, size, seed in objs:
            st, reps = conn.get_replicas(key)
            assert st == 0 and [r[2] for r in reps] == [b.name], (key, st, reps)
            assert a.get(key, size, seed) == size, key
        conn.close()
    finally:
        a.stop()
        b.stop()
