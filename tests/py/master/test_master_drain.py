"""Drain jobs that move objects (master_move.c) against real processes: a real
mooncake_master and real stores (tests/integ/store_test_peer, the C store
client, whose heartbeat thread runs the move tasks of its segment). Values are
a per-key pattern compared byte for byte by the peer that reads them, so a get
that returns another key's bytes, a half-written target or a freed source
fails the test. Cases: a full drain while a reader reads every key; no room
elsewhere; the drained segment's owner killed mid-drain; the master killed
(SIGKILL) mid-drain and restarted from its journal."""
import json
import signal
import threading
import urllib.request

from mc_fixtures import SAN_RE
from mp_wire import Conn
from test_master_persist import Peer, persist_master, restart
from waits import wait_for  # noqa: E402

SIZES = (1000, 4096, 65536, 300000)
LOOP = ["--metrics_host", "127.0.0.1"]  # the admin API changes state from loopback only


def admin(m, path, method="GET"):
    req = urllib.request.Request("http://%s%s" % (m.admin, path), method=method,
                                 data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def drain(m, seg):
    return admin(m, "/api/v1/drain_jobs?segment=" + seg, "POST")


def job(m, jid):
    return admin(m, "/api/v1/drain_jobs/query?job_id=" + jid)


def seg_used(m, name):
    for s in admin(m, "/api/v1/status")["segments"]:
        if s["name"] == name:
            return s["used_bytes"]
    return None


def stop_peers(*peers):
    """Stops the stores; none may have a sanitizer report."""
    for p in peers:
        p.stop()
    for p in peers:
        assert not SAN_RE.search(p.stderr()), p.stderr()[-4000:]


def fill(peer, n, pref, prefix):
    """n objects of several sizes on segment pref, every fourth hard-pinned
    (n <= 160 fit in 16 MiB; more would overflow to other segments)."""
    objs = []
    for i in range(n):
        size = SIZES[i % len(SIZES)]
        key = "%s/%d" % (prefix, i)
        cmd = "PUTPIN" if i % 4 == 0 else "PUT"
        r = peer.cmd("%s %s %d %d %s" % (cmd, key, size, 1000 + i, pref))
        assert r == "RC 0", (key, r)
        objs.append((key, size, 1000 + i))
    return objs


class Reader:
    """Reads every key again and again through peer; any wrong byte fails
    (Peer.get asserts), and so does a get that finds nothing when must_read."""

    def __init__(self, peer, objs, must_read):
        self.peer, self.objs, self.must_read = peer, objs, must_read
        self.stop, self.errors, self.passes, self.absent = threading.Event(), [], 0, 0
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        try:
            while not self.stop.is_set():
                for key, size, seed in self.objs:
                    rc = self.peer.get(key, size, seed)
                    if rc != size:
                        assert not self.must_read, "%s: get returned %d" % (key, rc)
                        self.absent += 1
                self.passes += 1
        except BaseException as e:  # noqa: BLE001
            self.errors.append(e)

    def finish(self):
        self.stop.set()
        self.t.join(60)
        assert not self.errors, self.errors
        return self.passes


def test_drain_moves_every_object_while_read(start_master, tmp_path):
    """Segment A (store a) holds 60 objects of 4 sizes, a quarter hard-pinned;
    a drain moves them all to B while b reads every key: the job SUCCEEDS with
    every object and byte counted, A ends with 0 bytes, each key's replica is
    on B, and no get ever failed or returned wrong bytes. Before moves (the
    job only waited for A to empty by itself) it never finished."""
    m = start_master(LOOP)
    a, b = Peer(tmp_path, m, 16 << 20), Peer(tmp_path, m, 64 << 20)
    try:
        objs = fill(a, 60, a.name, "mv")
        total = sum(size for _, size, _ in objs)
        reader = Reader(b, objs, must_read=True)
        wait_for(lambda: reader.passes >= 1 or reader.errors, 30, "a first read pass")
        j = drain(m, a.name)
        assert j["status"] == "RUNNING", j
        wait_for(lambda: job(m, j["job_id"])["status"] != "RUNNING", 60, "the drain's end")
        passes = reader.finish()
        j = job(m, j["job_id"])
        assert j["status"] == "SUCCEEDED", j
        assert j["moved_objects"] == 60 and j["moved_bytes"] == total, j
        assert j["remaining_bytes"] == 0 and seg_used(m, a.name) == 0, j
        assert j["tasks_in_flight"] == 0 and j["message"] == "", j
        assert passes >= 2, passes
        c = Conn(m.rpc)
        c.ready()
        for key, size, seed in objs:
            st, reps = c.get_replicas(key)
            assert st == 0 and [r[2] for r in reps] == [b.name], (key, st, reps)
            assert a.get(key, size, seed) == size  # the owner of A reads it from B too
        c.close()
        # A takes replicas again once drained
        assert a.put("after", 4096, 1, a.name) == 0
    finally:
        stop_peers(a, b)


def test_drain_without_room_fails_and_keeps_objects(start_master, tmp_path):
    """B has room for a few of A's objects only: the job FAILS with a message
    that says so, A is no longer draining, and every object still reads its
    own bytes (moved ones from B, the rest from A)."""
    m = start_master(LOOP)
    a, b = Peer(tmp_path, m, 16 << 20), Peer(tmp_path, m, 1 << 20)
    try:
        objs = fill(a, 24, a.name, "nr")
        j = drain(m, a.name)
        wait_for(lambda: job(m, j["job_id"])["status"] != "RUNNING", 60, "the drain's end")
        j = job(m, j["job_id"])
        assert j["status"] == "FAILED", j
        assert "no room elsewhere" in j["message"] and a.name in j["message"], j
        assert "drain of segment '%s' failed: no room elsewhere" % a.name in m.stderr()
        st = admin(m, "/api/v1/status")
        assert [s["draining"] for s in st["segments"] if s["name"] == a.name] == [False]
        for key, size, seed in objs:
            assert b.get(key, size, seed) == size, key
    finally:
        stop_peers(a, b)


def test_drain_owner_killed_mid_drain(start_master, tmp_path):
    """The owner of A is killed (SIGKILL) while its objects move, one at a
    time: the job ends FAILED naming the segment, and every key reads its
    own bytes (from B, where it was moved) or is absent, never wrong."""
    m = start_master(LOOP + ["--client_ttl", "2"], env={"MC_MASTER_MOVE_JOB_INFLIGHT": 1})
    a, b = Peer(tmp_path, m, 16 << 20), Peer(tmp_path, m, 64 << 20)
    try:
        objs = fill(a, 150, a.name, "ok")  # 13.9 MB: all on A
        reader = Reader(b, objs, must_read=False)
        j = drain(m, a.name)
        wait_for(lambda: job(m, j["job_id"])["moved_objects"] >= 3, 60, "a few moves")
        a.p.send_signal(signal.SIGKILL)
        a.p.wait()
        wait_for(lambda: job(m, j["job_id"])["status"] != "RUNNING", 30, "the drain's end")
        base = reader.passes  # a whole read pass after the segment went
        wait_for(lambda: reader.passes > base + 1 or reader.errors, 60, "a read pass")
        reader.finish()
        j = job(m, j["job_id"])
        assert j["status"] == "FAILED" and a.name in j["message"], j
        assert "unmounted before it was drained" in j["message"], j
        moved = 0
        for key, size, seed in objs:
            rc = b.get(key, size, seed)  # asserts on wrong bytes
            assert rc == size or rc == -704, (key, rc)
            moved += rc == size
        # what was moved is on B and readable; the rest went with A
        assert 3 <= moved < 150 and moved == j["moved_objects"], (moved, j)
    finally:
        stop_peers(a, b)


def test_drain_cancelled_mid_drain(start_master, tmp_path):
    """A drain cancelled while objects move, one at a time: the job is
    CANCELLED, its tasks end, A takes replicas again, and every key reads its
    own bytes, from B where it was moved and from A where it was not."""
    m = start_master(LOOP, env={"MC_MASTER_MOVE_JOB_INFLIGHT": 1})
    a, b = Peer(tmp_path, m, 16 << 20), Peer(tmp_path, m, 64 << 20)
    try:
        objs = fill(a, 150, a.name, "cx")
        j = drain(m, a.name)
        wait_for(lambda: job(m, j["job_id"])["moved_objects"] >= 3, 60, "a few moves")
        j = admin(m, "/api/v1/drain_jobs/cancel?job_id=" + j["job_id"], "POST")
        assert j["status"] == "CANCELLED", j
        wait_for(lambda: job(m, j["job_id"])["tasks_in_flight"] == 0, 60, "the tasks' end")
        j = job(m, j["job_id"])
        st = admin(m, "/api/v1/status")
        assert [s["draining"] for s in st["segments"] if s["name"] == a.name] == [False]
        c = Conn(m.rpc)
        c.ready()
        where = {a.name: 0, b.name: 0}
        for key, size, seed in objs:
            assert b.get(key, size, seed) == size, key
            st, reps = c.get_replicas(key)
            assert st == 0 and len(reps) == 1, (key, st, reps)
            where[reps[0][2]] += 1
        c.close()
        assert where[b.name] == j["moved_objects"] and where[a.name] > 0, (where, j)
    finally:
        stop_peers(a, b)


def test_master_killed_mid_drain(tmp_path):
    """The master is killed (SIGKILL) while A's objects move and restarted on
    its journal: every key reads its own bytes (moved ones from B, the others
    from A); a target being written at the kill is never served."""
    pdir = tmp_path / "persist"
    env = {"MC_MASTER_MOVE_JOB_INFLIGHT": 1}
    m = persist_master(tmp_path, pdir, env=env, extra=LOOP)
    a, b = Peer(tmp_path, m, 16 << 20), Peer(tmp_path, m, 64 << 20)
    try:
        objs = fill(a, 150, a.name, "mk")
        j = drain(m, a.name)
        wait_for(lambda: job(m, j["job_id"])["moved_objects"] >= 5, 60, "a few moves")
        m = restart(tmp_path, m, pdir, env=env, extra=LOOP)
        c = Conn(m.rpc)
        c.ready()
        wait_for(lambda: c.get_replicas(objs[-1][0])[0] == 0 and
                 c.get_replicas(objs[0][0])[0] == 0, 30, "the stores' remount")
        on_b = 0
        for key, size, seed in objs:
            assert b.get(key, size, seed) == size, key
            st, reps = c.get_replicas(key)
            assert st == 0 and len(reps) == 1, (key, st, reps)
            on_b += reps[0][2] == b.name
        c.close()
        assert on_b >= 4, on_b  # the moves journaled before the kill survived it
        assert not SAN_RE.search(m.stderr()), m.stderr()[-4000:]
    finally:
        stop_peers(a, b)
        m.stop()


def post_json(m, path, body):
    """POST a JSON body (raw bytes or an object); (HTTP status, JSON answer)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request("http://%s%s" % (m.admin, path), method="POST", data=data,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def seg_status(m, name):
    return admin(m, "/api/v1/segments/status?segment=" + name)


def test_drain_upstream_body_form(start_master, tmp_path):
    """Upstream's form of a drain job: a JSON body naming the segment, the
    only target segment and a concurrency. The segment goes OK -> DRAINING ->
    DRAINED, objects move to the named target only (not to the other
    segment with room), the job's upstream fields count them, a DRAINED
    segment takes no new replica, and every key reads its own bytes from the
    target. Bad bodies get upstream's 400 / 404 error objects."""
    m = start_master(LOOP)
    a, b, c = (Peer(tmp_path, m, 16 << 20), Peer(tmp_path, m, 64 << 20),
               Peer(tmp_path, m, 64 << 20))
    try:
        objs = fill(a, 24, a.name, "up")
        assert seg_status(m, a.name)["status_name"] == "OK"
        for bad, code in ((b"{not json", 400), ({"segments": []}, 400),
                          ({"segments": [a.name, b.name]}, 400),
                          ({"segments": [a.name], "max_concurrency": 0}, 400),
                          ({"segments": [a.name], "target_segments": [a.name]}, 400),
                          ({"segments": [a.name], "target_segments": ["nowhere:1"]}, 404),
                          ({"segments": ["nowhere:1"]}, 404)):
            st, r = post_json(m, "/api/v1/drain_jobs", bad)
            assert st == code and r["success"] is False and r["error_code"] < 0, (bad, st, r)
        assert seg_status(m, a.name)["status_name"] == "OK"  # nothing started
        st, r = post_json(m, "/api/v1/drain_jobs", {"segments": [a.name],
                                                     "target_segments": [c.name],
                                                     "max_concurrency": 1})
        assert st == 200 and r["success"] is True and r["status"] == "CREATED", r
        jid = r["job_id"]
        # a second job on the same segment: refused
        st, r2 = post_json(m, "/api/v1/drain_jobs", {"segments": [a.name]})
        assert st == 409 and r2["success"] is False, r2
        wait_for(lambda: job(m, jid)["status_name"] != "RUNNING", 60, "the drain's end")
        j = job(m, jid)
        assert j["status_name"] == "SUCCEEDED" and j["success"] is True, j
        assert j["active_units"] == 0 and j["succeeded_units"] == 24, j
        assert j["segments"] == [a.name] and j["type_name"] == "DRAIN", j
        assert seg_status(m, a.name)["status_name"] == "DRAINED"
        assert seg_status(m, b.name)["status_name"] == "OK"
        st, r = 0, None
        try:
            seg_status(m, "nowhere:1")
        except urllib.error.HTTPError as e:
            st = e.code
        assert st == 404
        conn = Conn(m.rpc)
        conn.ready()
        for key, size, seed in objs:
            s, reps = conn.get_replicas(key)
            assert s == 0 and [x[2] for x in reps] == [c.name], (key, s, reps)
            assert b.get(key, size, seed) == size
        # DRAINED: a put that prefers A lands elsewhere
        assert a.put("after", 4096, 1, a.name) == 0
        s, reps = conn.get_replicas("after")
        assert s == 0 and a.name not in [x[2] for x in reps], reps
        conn.close()
    finally:
        stop_peers(a, b, c)
