"""The etcd and redis metadata backends against real servers: TE transfers and
store put/get byte for byte on each, an etcd cluster with its first listed
member down, etcd restarted under running stores, unreachable stores and
refused AUTH (one clear line, setup fails at once), malformed values, and a
peer that re-registered seen through the etcd watch.

The mooncake_master (for the store cases) still serves its embedded http
metadata; the cases here point the clients at etcd/redis instead, through
MC_TEST_META, so the master's own store is unused."""
import os
import re
import subprocess
import sys
import time

import pytest

from mc_fixtures import RUNNER, SAN_RE, bin_dir, child_env, run_case
from servers import closed_port
from waits import until  # noqa: E402


HERE = os.path.dirname(os.path.abspath(__file__))
CASES = os.path.join(HERE, "cases")


def meta_case(master, module, func, meta, timeout=90, env_extra=None):
    env = {"MC_TEST_META": meta}
    env.update(env_extra or {})
    return run_case(master, module, func, timeout=timeout, env_extra=env)


def child(master, meta, *argv, env_extra=None, timeout=60):
    """Runs cases/meta_child.py <argv> in a child python; returns (rc, output)."""
    env = child_env()
    env["MC_TEST_RPC"] = master.rpc if master else ""
    env["MC_TEST_META"] = meta
    env["MC_TEST_BIN_DIR"] = bin_dir()
    env["PYTHONPATH"] = env["PYTHONPATH"] + os.pathsep + os.path.join(HERE, "..", "mooncake",
                                                                      "cases")
    env.setdefault("MC_LOG_LEVEL", "warn")
    env.update(env_extra or {})
    p = subprocess.run([sys.executable, os.path.join(CASES, "meta_child.py"), *argv], env=env,
                       capture_output=True, text=True, timeout=timeout)
    out = (p.stdout or "") + (p.stderr or "")
    assert not SAN_RE.search(out), out[-6000:]
    return p.returncode, out


class Ctl:
    """A long-lived child (cases/meta_child.py serve): one command per line."""

    def __init__(self, master, meta, role, env_extra=None):
        env = child_env()
        env["MC_TEST_RPC"] = master.rpc if master else ""
        env["MC_TEST_META"] = meta
        env["PYTHONPATH"] = env["PYTHONPATH"] + os.pathsep + os.path.join(
            HERE, "..", "mooncake", "cases")
        env.update(env_extra or {})
        self.errpath = os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                    "meta-ctl-%d-%s.err" % (os.getpid(), id(self)))
        self.err = open(self.errpath, "w+")
        self.p = subprocess.Popen([sys.executable, os.path.join(CASES, "meta_child.py"),
                                   "serve", *role.split()], env=env, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=self.err, text=True)
        self.ready = self.read()
        assert self.ready.startswith("READY"), self.ready + self.stderr()

    def read(self):
        line = self.p.stdout.readline()
        if not line:
            raise AssertionError("child ended:\n" + self.stderr())
        return line.strip()

    def cmd(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        return self.read()

    def wait_stderr(self, text, timeout=10):
        """Readiness on a log line of the child (polls its stderr file)."""
        return until(lambda: text in self.stderr(), timeout)

    def stderr(self):
        self.err.flush()
        with open(self.errpath) as f:
            return f.read()

    def close(self):
        if self.p.poll() is None:
            try:
                self.cmd("quit")
            except (AssertionError, BrokenPipeError):
                pass
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        out = self.stderr()
        self.err.close()
        os.unlink(self.errpath)
        assert not SAN_RE.search(out), out[-6000:]
        return self.p.returncode, out


# ---- the same cases as the http backend, on etcd and redis ----

ENGINE = ("case_engine", "case_two_process_http")
STORE = [("case_store", "case_two_processes_replicas"), ("case_store", "case_two_stores_replicas"),
         ("case_store", "case_put_get_quirks")]


@pytest.mark.parametrize("module,func", [ENGINE] + STORE)
def test_etcd_backend(master, etcd, module, func):
    meta_case(master, module, func, etcd.conn())
    # the records are in etcd under upstream's keys (removed again at close)
    assert etcd.keys("mooncake/") == []


@pytest.mark.parametrize("module,func", [ENGINE] + STORE)
def test_redis_backend(master, redis, module, func):
    meta_case(master, module, func, redis.conn())


def test_bare_hostport_is_etcd(master, etcd):
    meta_case(master, *ENGINE, etcd.endpoints[0])


def test_redis_password_db_and_env(master, redis_auth):
    meta_case(master, *ENGINE, redis_auth.conn(password=redis_auth.password, db=3))
    meta_case(master, *ENGINE, redis_auth.conn(),
              env_extra={"MC_REDIS_PASSWORD": redis_auth.password, "MC_REDIS_DB_INDEX": "2"})


def test_etcd_records_visible_while_running(master, etcd):
    c = Ctl(master, etcd.conn(), "store")
    try:
        name = c.ready.split()[1]
        keys = etcd.keys("mooncake/")
        assert "mooncake/ram/%s" % name in keys and "mooncake/rpc_meta/%s" % name in keys, keys
        rec = etcd.get("mooncake/rpc_meta/%s" % name)
        assert b'"rpc_port"' in rec, rec
    finally:
        rc, out = c.close()
    assert rc == 0, out[-4000:]


# ---- faults ----

def test_etcd_first_member_down(master, etcd3):
    etcd3.stop_member(0)
    conn = etcd3.conn()  # the dead member is first in the list
    meta_case(master, *ENGINE, conn)
    meta_case(master, "case_store", "case_two_processes_replicas", conn)
    # comma-separated and with http:// prefixes, too
    meta_case(master, *ENGINE, "etcd://" + ",".join("http://" + e for e in etcd3.endpoints))


def test_etcd_restart_under_running_stores(master, etcd):
    a = Ctl(master, etcd.conn(), "store")
    b = Ctl(master, etcd.conn(), "store")
    try:
        sha = a.cmd("put k1 300000 1")
        assert b.cmd("get k1") == sha
        etcd.stop_member(0)
        etcd.start_member(0)
        sha2 = a.cmd("put k2 200000 2")
        assert b.cmd("get k2") == sha2
        assert b.cmd("get k1") == sha
        sha3 = b.cmd("put k3 100000 3")
        assert a.cmd("get k3") == sha3
        # a store that joins after the restart sees the others and is seen
        c = Ctl(master, etcd.conn(), "store")
        try:
            assert c.cmd("get k2") == sha2
            sha4 = c.cmd("put k4 150000 4")
            assert a.cmd("get k4") == sha4
        finally:
            rc, out = c.close()
            assert rc == 0, out[-4000:]
    finally:
        ra, oa = a.close()
        rb, ob = b.close()
    assert ra == 0 and rb == 0, oa[-3000:] + ob[-3000:]


def _one_clear_line(out, pattern):
    lines = [ln for ln in out.splitlines() if re.search(pattern, ln)]
    assert len(lines) == 1, "want one line matching %r:\n%s" % (pattern, out[-4000:])
    assert "trying another port" not in out and "no usable port" not in out, out[-4000:]


@pytest.mark.parametrize("kind", ["etcd", "etcd3", "redis"])
def test_unreachable_store_fails_setup_at_once(master, kind):
    ports = [closed_port() for _ in range(3 if kind == "etcd3" else 1)]
    if kind == "redis":
        conn = "redis://127.0.0.1:%d" % ports[0]
        pat = r"redis 127\.0\.0\.1:%d: connection refused" % ports[0]
    else:
        conn = "etcd://" + ";".join("127.0.0.1:%d" % p for p in ports)
        pat = r"etcd " + "; ".join(r"127\.0\.0\.1:%d: connection refused" % p for p in ports)
    rc, out = child(master, conn, "setup")
    assert rc == 0, out[-4000:]  # the child checks that setup returned an error
    _one_clear_line(out, pat)
    # the transfer engine alone: initialize returns an error, same line
    rc, out = child(None, conn, "engine_init")
    assert rc == 0, out[-4000:]
    assert re.search(pat, out), out[-4000:]


def test_redis_auth_failure_is_clear(master, redis_auth):
    rc, out = child(master, redis_auth.conn(password="wrong"), "setup")
    assert rc == 0, out[-4000:]
    _one_clear_line(out, r"redis 127\.0\.0\.1:%d: authentication failed" % redis_auth.port)
    rc, out = child(master, redis_auth.conn(), "setup")  # no password at all
    assert rc == 0, out[-4000:]
    _one_clear_line(out, r"redis 127\.0\.0\.1:%d: authentication required" % redis_auth.port)
    assert "s3cret" not in out and "wrong@" not in out


@pytest.mark.parametrize("kind", ["etcd", "redis"])
def test_malformed_value_is_ignored_with_a_line(master, kind, request):
    srv = request.getfixturevalue(kind)
    for key, val in (("mooncake/ram/bad-seg:1", b"{not json"),
                     ("mooncake/rpc_meta/bad-seg:1", b"\xff\xfe binary"),
                     ("mooncake/ram/bad-seg:2", b'{"name": 5}')):
        srv.put(key, val) if kind == "etcd" else srv.set(key, val)
    rc, out = child(None, srv.conn(), "open_bad", "bad-seg:1", "bad-seg:2")
    assert rc == 0, out[-4000:]
    assert re.search(r"descriptor of segment 'bad-seg:1' rejected", out), out[-4000:]
    assert re.search(r"descriptor of segment 'bad-seg:2' rejected", out), out[-4000:]


def test_etcd_watch_sees_reregistered_peer(master, etcd):
    """A target restarts under the same name (new port, new buffer): the
    initiator's cached descriptor is dropped by the etcd watch before it is
    used again, so the next transfer goes straight to the new process."""
    name = "127.0.0.1:%d" % (20000 + os.getpid() % 20000)
    init = Ctl(None, etcd.conn(), "initiator", env_extra={"MC_LOG_LEVEL": "debug"})
    t1 = Ctl(None, etcd.conn(), "target " + name)
    try:
        _, _, addr1 = t1.ready.split()
        assert init.cmd("read %s %s 7" % (name, addr1)) == "OK"
        t1.close()
        t2 = Ctl(None, etcd.conn(), "target " + name)
        try:
            _, _, addr2 = t2.ready.split()
            # readiness: the initiator's watch delivered t1's deletion. From then on its
            # descriptor is stale: dropped with an info line, or stale already when an event
            # of t1's own registration reached the watch while the first read fetched it
            gone = "metadata change: 'mooncake/ram/%s' deleted" % name
            assert init.wait_stderr(gone), init.stderr()[-3000:]
            before = init.stderr()
            assert init.cmd("read %s %s 7" % (name, addr2)) == "OK"
            after = init.stderr()[len(before):]
            assert not re.search(r"not inside|cannot connect|transfer failed", after), after
            # read again from the store, not served from the cache
            assert re.search(r"segment '%s': 1 buffers at" % re.escape(name), after), after
        finally:
            t2.close()
    finally:
        rc, out = init.close()
    assert rc == 0, out[-4000:]


def test_http_backend_unchanged_by_watch(master):
    """The http backend has no change feed: a re-registered peer is still
    reached (its descriptor is re-read when the transfer misses)."""
    name = "127.0.0.1:%d" % (21000 + os.getpid() % 20000)
    init = Ctl(None, master.meta, "initiator")
    try:
        for _ in range(2):
            t = Ctl(None, master.meta, "target " + name)
            _, _, addr = t.ready.split()
            assert init.cmd("read %s %s 7" % (name, addr)) == "OK"
            t.close()
    finally:
        rc, out = init.close()
    assert rc == 0, out[-4000:]


@pytest.mark.parametrize("kind", ["etcd", "redis"])
def test_duplicate_rpc_meta_name_refused(master, kind, request):
    """Two engines under one name: the second's rpc_meta record differs (its
    port), so the store keeps the first and the second initialize fails, as
    with the HTTP server's duplicate rule."""
    srv = request.getfixturevalue(kind)
    name = "127.0.0.1:%d" % (22000 + os.getpid() % 20000)
    t1 = Ctl(None, srv.conn(), "target " + name)
    try:
        before = srv.get("mooncake/rpc_meta/" + name)
        assert before and b'"rpc_port"' in before, before
        with pytest.raises(AssertionError) as e:
            Ctl(None, srv.conn(), "target " + name)
        assert "another engine already uses this name" in str(e.value), str(e.value)[-3000:]
        assert srv.get("mooncake/rpc_meta/" + name) == before
    finally:
        rc, out = t1.close()
    assert rc == 0, out[-4000:]
