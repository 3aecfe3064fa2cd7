"""Real etcd and redis servers for tests, on free loopback ports (shared by any
suite: `sys.path` needs tests/py, then `from servers import ...`).

    EtcdCluster(tmp, members=1|3)  etcd (Debian's etcd-server, 3.4) with data
                                   dirs under tmp; .endpoints = ["127.0.0.1:p", ...];
                                   .conn() = "etcd://a;b;c"; stop_member(i) /
                                   start_member(i) restart one member on the
                                   same ports and data dir; put/get/delete go
                                   through the v3 JSON gateway (raw bytes).
    RedisServer(tmp, password=None)  redis-server --save '' on a free port;
                                   .conn(user, password, db) builds a redis:// URL;
                                   set/get/command speak RESP directly.

Readiness is checked, never slept for: etcd answers GET /health with
{"health":"true"} on every member (and a range on the first); redis answers
PING (with -NOAUTH when a password is set, which also proves it is up).
Processes are ended by pid at teardown (SIGTERM, then SIGKILL). The binaries
come from $PATH; a missing one skips the test (scripts/install-deps.sh
installs them)."""

import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1 (held together while picked)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def closed_port():
    """A loopback port with nothing listening (connections are refused)."""
    return free_ports(1)[0]


def _need(exe):
    path = shutil.which(exe)
    if not path:
        pytest.skip("%s not installed (scripts/install-deps.sh)" % exe)
    return path


def _stop_pid(p, wait_s=10):
    if p is None or p.poll() is not None:
        return
    p.terminate()
    try:
        p.wait(wait_s)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def _b64(b):
    if isinstance(b, str):
        b = b.encode()
    return base64.b64encode(b).decode()


class EtcdCluster:
    def __init__(self, tmp, members=1, ready_s=30):
        self.exe = _need("etcd")
        self.tmp = str(tmp)
        os.makedirs(self.tmp, exist_ok=True)
        ports = free_ports(2 * members)
        self.client_ports = ports[:members]
        self.peer_ports = ports[members:]
        self.names = ["m%d" % i for i in range(members)]
        self.initial = ",".join("%s=http://127.0.0.1:%d" % (n, p)
                                for n, p in zip(self.names, self.peer_ports))
        self.endpoints = ["127.0.0.1:%d" % p for p in self.client_ports]
        self.procs = [None] * members
        self.logs = [None] * members
        for i in range(members):
            self._spawn(i, "new")
        self.wait_ready(range(members), ready_s)

    def _spawn(self, i, state):
        d = os.path.join(self.tmp, "etcd-%s" % self.names[i])
        cu = "http://127.0.0.1:%d" % self.client_ports[i]
        pu = "http://127.0.0.1:%d" % self.peer_ports[i]
        argv = [self.exe, "--name", self.names[i], "--data-dir", d,
                "--listen-client-urls", cu, "--advertise-client-urls", cu,
                "--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu,
                "--initial-cluster", self.initial, "--initial-cluster-state", state,
                "--initial-cluster-token", "mc-test-%d" % self.client_ports[0],
                "--heartbeat-interval", "50", "--election-timeout", "500",
                "--logger", "zap", "--log-level", "error", "--log-outputs", "stderr"]
        self.logs[i] = open(os.path.join(self.tmp, "etcd-%s.log" % self.names[i]), "ab")
        self.procs[i] = subprocess.Popen(argv, stdout=self.logs[i], stderr=self.logs[i],
                                         stdin=subprocess.DEVNULL)

    def _health(self, i):
        try:
            with urllib.request.urlopen("http://%s/health" % self.endpoints[i], timeout=1) as r:
                return json.loads(r.read()).get("health") == "true"
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def wait_ready(self, members, timeout_s=30):
        members = list(members)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for i in members:
                if self.procs[i].poll() is not None:
                    raise RuntimeError("etcd %s exited:\n%s" % (self.names[i], self.log(i)))
            if all(self._health(i) for i in members):
                try:
                    self.get("mc-test-readiness", member=members[0])
                    return
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError("etcd not ready in %ss:\n%s" % (timeout_s, self.log(members[0])))

    def log(self, i):
        try:
            with open(os.path.join(self.tmp, "etcd-%s.log" % self.names[i]), "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    def conn(self, order=None):
        eps = [self.endpoints[i] for i in (order or range(len(self.endpoints)))]
        return "etcd://" + ";".join(eps)

    def stop_member(self, i):
        _stop_pid(self.procs[i])
        if self.logs[i]:
            self.logs[i].close()
            self.logs[i] = None

    def start_member(self, i, ready_s=30):
        """Restarts member i on its ports and data dir (its data survive)."""
        self._spawn(i, "existing")
        self.wait_ready([i], ready_s)

    def _call(self, path, body, member=None):
        members = [member] if member is not None else range(len(self.endpoints))
        last = None
        for i in members:
            if self.procs[i] is None or self.procs[i].poll() is not None:
                continue
            req = urllib.request.Request("http://%s/v3/%s" % (self.endpoints[i], path),
                                         data=json.dumps(body).encode(), method="POST")
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    return json.loads(r.read())
            except OSError as e:
                last = e
        raise last or OSError("no etcd member running")

    def put(self, key, value):
        self._call("kv/put", {"key": _b64(key), "value": _b64(value)})

    def get(self, key, member=None):
        """The value (bytes) or None."""
        a = self._call("kv/range", {"key": _b64(key)}, member)
        kvs = a.get("kvs") or []
        return base64.b64decode(kvs[0].get("value", "")) if kvs else None

    def keys(self, prefix):
        end = bytearray(prefix.encode())
        end[-1] += 1
        a = self._call("kv/range", {"key": _b64(prefix), "range_end": _b64(bytes(end)),
                                    "keys_only": True})
        return sorted(base64.b64decode(kv["key"]).decode() for kv in a.get("kvs") or [])

    def stop(self):
        for i in range(len(self.procs)):
            self.stop_member(i)


class RedisServer:
    def __init__(self, tmp, password=None, ready_s=30):
        exe = _need("redis-server")
        self.port = free_ports(1)[0]
        self.password = password
        self.tmp = str(tmp)
        argv = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.tmp, "--loglevel", "warning"]
        if password:
            argv += ["--requirepass", password]
        self.logpath = os.path.join(self.tmp, "redis-%d.log" % self.port)
        self.logf = open(self.logpath, "ab")
        self.p = subprocess.Popen(argv, stdout=self.logf, stderr=self.logf,
                                  stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + ready_s
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise RuntimeError("redis-server exited:\n%s" % self.log())
            try:
                r = self.command("PING", auth=False)
                if r == "PONG" or (isinstance(r, RedisError) and "NOAUTH" in str(r)):
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("redis-server not ready in %ss:\n%s" % (ready_s, self.log()))

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def conn(self, user=None, password=None, db=None):
        cred = ""
        if password is not None:
            cred = "%s:%s@" % (user or "", password)
        return "redis://%s%s%s" % (cred, self.addr, "/%d" % db if db is not None else "")

    def log(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    def command(self, *args, auth=True, db=0):
        """Sends one command (after AUTH/SELECT when asked) and returns the
        decoded reply of the last one (bytes, int, str status, None, list,
        or a RedisError)."""
        cmds = []
        if auth and self.password:
            cmds.append(("AUTH", self.password))
        if db:
            cmds.append(("SELECT", str(db)))
        cmds.append(args)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            f = s.makefile("rb")
            for c in cmds:
                out = b"*%d\r\n" % len(c)
                for a in c:
                    a = a if isinstance(a, bytes) else str(a).encode()
                    out += b"$%d\r\n%s\r\n" % (len(a), a)
                s.sendall(out)
                r = _resp_read(f)
            return r

    def set(self, key, value, db=0):
        return self.command("SET", key, value, db=db)

    def get(self, key, db=0):
        return self.command("GET", key, db=db)

    def stop(self):
        _stop_pid(self.p)
        if not self.logf.closed:
            self.logf.close()


class RedisError(Exception):
    pass


def _resp_read(f):
    line = f.readline()
    if not line:
        raise OSError("redis closed the connection")
    t, rest = line[:1], line[1:-2]
    if t == b"+":
        return rest.decode()
    if t == b"-":
        return RedisError(rest.decode())
    if t == b":":
        return int(rest)
    if t == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if t == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise OSError("bad RESP line %r" % line)


@pytest.fixture
def etcd(tmp_path):
    c = EtcdCluster(tmp_path / "etcd1", 1)
    yield c
    c.stop()


@pytest.fixture
def etcd3(tmp_path):
    c = EtcdCluster(tmp_path / "etcd3", 3)
    yield c
    c.stop()


@pytest.fixture
def redis(tmp_path):
    r = RedisServer(tmp_path)
    yield r
    r.stop()


@pytest.fixture
def redis_auth(tmp_path):
    r = RedisServer(tmp_path, password="s3cret-pw")
    yield r
    r.stop()
