"""A Mooncake cluster on network-namespace hosts (tests/cluster/netns.py).

    c = Cluster(tmp, bin_dir, child_env, n_hosts=4, seed=1)
    c.start()                 etcd on h0..h2 (3 members), HA masters on h0 and
                              h1, a store worker (worker.py) on every host
    c.leader()                index of the host whose master leads (waits)
    c.kill_host(i) / c.restart_host(i)
    c.stop_etcd(i) / c.start_etcd(i), c.kill_master(i) / c.start_master(i)
    c.workers[i]              the worker of host i: .lines (parsed), .p
    c.close()                 every process, then every namespace

Everything listens on the hosts' own addresses (10.203.0.x, which exist only
inside the namespaces) or on a namespace's loopback. The harness itself runs
in the root namespace and reaches the hosts only through `ip netns exec`
(curl for the masters' /role and etcd's /health).

Timeouts are lowered so that a fault costs seconds, not the 30 s defaults:
RPC 3 s, TE I/O 3 s, connect 2 s, heartbeat 500 ms, client_ttl 2 s."""

import os
import re
import subprocess
import sys
import threading
import time

from netns import Net

HERE = os.path.dirname(os.path.abspath(__file__))
ETCD_HOSTS = (0, 1, 2)
MASTER_HOSTS = (0, 1)
RPC_PORT = 50051
ADMIN_PORT = 9003
CLIENT_TTL_S = 2
ENV = {
    "MC_LOG_LEVEL": "warn",
    "MC_RPC_TIMEOUT_MS": "3000",
    "MC_RPC_CONNECT_TIMEOUT_MS": "2000",
    "MC_TE_IO_TIMEOUT_MS": "3000",
    "MC_HANDSHAKE_CONNECT_TIMEOUT": "2",
    "MC_STORE_HEARTBEAT_MS": "500",
    "MC_MASTER_VIEW_WAIT_MS": "5000",
}


def until(fn, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    v = fn()
    while not v and time.monotonic() < deadline:
        time.sleep(step)
        v = fn()
    return v


class Worker:
    """worker.py of one host in a child python; its lines parsed as they come."""

    def __init__(self, cluster, i, gen, first, seconds):
        self.i, self.gen, self.tag = i, gen, "h%d.%d" % (i, gen)
        env = cluster.child_env()
        env.update(ENV)
        env.update({"MC_CL_IP": cluster.net.hosts[i].ip, "MC_CL_META": cluster.etcd_conn,
                    "MC_CL_MASTER": cluster.etcd_conn, "MC_STORE_CLUSTER_ID": cluster.cid,
                    "MC_CL_SEED": str(cluster.seed)})
        self.errpath = os.path.join(cluster.tmp, "worker-%s.err" % self.tag)
        self.err = open(self.errpath, "wb")
        self.p = cluster.net.popen(i, [sys.executable, os.path.join(HERE, "worker.py"), self.tag,
                                       str(first), str(cluster.n), str(seconds)],
                                   env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=self.err, text=True)
        self.lines = []
        self.last = time.monotonic()
        self.ready = None
        self.done = None
        self.max_index = first - 1
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.p.stdout:
            f = line.split()
            self.last = time.monotonic()
            if not f:
                continue
            if f[0] == "READY":
                self.ready = int(f[1])
            elif f[0] == "DONE":
                self.done = int(f[1])
            elif len(f) >= 4:
                t = float(f[-1] if f[0] != "BAD" else f[3])
                self.lines.append((t, f[0], f[1], f[2]))
                if f[1] == "PUT":
                    self.max_index = max(self.max_index, int(f[2].rsplit("-", 1)[1]))

    def wait_ready(self, timeout=60):
        if not until(lambda: self.ready is not None or self.p.poll() is not None, timeout):
            raise RuntimeError("worker %s not ready in %ss:\n%s" % (self.tag, timeout,
                                                                   self.stderr()))
        if self.ready != 0:
            raise RuntimeError("worker %s setup failed (%s):\n%s" % (self.tag, self.ready,
                                                                    self.stderr()))

    def stop(self, timeout=30):
        """Closes stdin; True when it exited by itself within timeout."""
        try:
            self.p.stdin.close()
        except OSError:
            pass
        try:
            self.p.wait(timeout)
            clean = True
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            clean = False
        self.t.join(5)
        self.err.close()
        return clean

    def stderr(self):
        try:
            with open(self.errpath, "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""


class Cluster:
    def __init__(self, tmp, bin_dir, child_env, n_hosts=4, seed=1, seconds=3600):
        assert n_hosts >= 4
        self.tmp, self.bin_dir, self.child_env = str(tmp), bin_dir, child_env
        os.makedirs(self.tmp, exist_ok=True)
        self.n, self.seed, self.seconds = n_hosts, seed, seconds
        self.cid = "mccl-%d-%d" % (os.getpid(), seed)
        self.net = Net(n_hosts)
        h = self.net.hosts
        self.etcd_eps = ["%s:2379" % h[i].ip for i in ETCD_HOSTS]
        self.etcd_conn = "etcd://" + ";".join(self.etcd_eps)
        self.etcd = {}
        self.masters = {}
        self.workers = {}
        self.all_workers = []  # every incarnation, for the final counts
        self.gens = {}
        self.logs = []

    # -- processes ---------------------------------------------------------
    def _log(self, name):
        f = open(os.path.join(self.tmp, name), "ab")
        self.logs.append(f)
        return f

    def start_etcd(self, i, state="new"):
        h = self.net.hosts
        names = ",".join("e%d=http://%s:2380" % (j, h[j].ip) for j in ETCD_HOSTS)
        cu, pu = "http://%s:2379" % h[i].ip, "http://%s:2380" % h[i].ip
        argv = ["etcd", "--name", "e%d" % i, "--data-dir", os.path.join(self.tmp, "etcd%d" % i),
                "--listen-client-urls", cu, "--advertise-client-urls", cu,
                "--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu,
                "--initial-cluster", names, "--initial-cluster-state", state,
                "--initial-cluster-token", self.cid, "--heartbeat-interval", "100",
                "--election-timeout", "1000", "--logger", "zap", "--log-level", "error",
                "--log-outputs", "stderr"]
        log = self._log("etcd%d.log" % i)
        self.etcd[i] = self.net.popen(i, argv, stdout=log, stderr=log)

    def etcd_healthy(self, i):
        r = self.net.sh(i, ["curl", "-s", "-m", "2", "http://%s:2379/health" % self.net.hosts[i].ip],
                        check=False)
        return '"health":"true"' in r.stdout

    def wait_etcd(self, members, timeout=30):
        if not until(lambda: all(self.etcd_healthy(i) for i in members), timeout, 0.1):
            raise RuntimeError("etcd %s not healthy in %ss" % (list(members), timeout))

    def start_master(self, i):
        exe = os.path.join(self.bin_dir, "mooncake_master")
        argv = [exe, "--enable_ha=true", "--rpc_address", self.net.hosts[i].ip,
                "--rpc_port", str(RPC_PORT), "--metrics_port", str(ADMIN_PORT),
                "--metrics_host", "127.0.0.1", "--etcd_endpoints", ";".join(self.etcd_eps),
                "--cluster_id", self.cid, "--client_ttl=%d" % CLIENT_TTL_S,
                "--default_kv_lease_ttl", "500",
                # its journal in the run's directory, kept across its restarts in the run
                "--persist_dir", os.path.join(self.tmp, "persist-m%d" % i)]
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        env.update(ENV)
        log = self._log("master%d.log" % i)
        self.masters[i] = self.net.popen(i, argv, stdout=log, stderr=log, env=env)

    def role(self, i):
        m = self.masters.get(i)
        if m is None or m.poll() is not None:
            return "dead"
        r = self.net.sh(i, ["curl", "-s", "-m", "2", "http://127.0.0.1:%d/role" % ADMIN_PORT],
                        check=False)
        return r.stdout.strip() or "down"

    def leader(self, timeout=30):
        """Host index of the one master that says leader (waits for one)."""
        def one():
            roles = {i: self.role(i) for i in self.masters}
            leaders = [i for i, r in roles.items() if r == "leader"]
            return leaders[0] + 1 if len(leaders) == 1 else None
        got = until(one, timeout, 0.1)
        if not got:
            raise RuntimeError("no single leader in %ss: %s" % (
                timeout, {i: self.role(i) for i in self.masters}))
        return got - 1

    def start_worker(self, i):
        gen = self.gens.get(i, 0) + 1
        self.gens[i] = gen
        old = self.workers.get(i)
        first = old.max_index + 1 if old else 0
        self.workers[i] = Worker(self, i, gen, first, self.seconds)
        self.all_workers.append(self.workers[i])
        return self.workers[i]

    def start(self):
        for i in ETCD_HOSTS:
            self.start_etcd(i)
        self.wait_etcd(ETCD_HOSTS)
        for i in MASTER_HOSTS:
            self.start_master(i)
        self.leader()
        for i in range(self.n):
            self.start_worker(i)
        for w in self.workers.values():
            w.wait_ready()

    # -- faults ------------------------------------------------------------
    def kill_host(self, i):
        """kill -9 of every process of host i; returns what was killed."""
        killed = []
        for name, d in (("etcd", self.etcd), ("master", self.masters)):
            p = d.get(i)
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
                killed.append(name)
        w = self.workers.get(i)
        if w and w.p.poll() is None:
            w.p.kill()
            w.p.wait()
            killed.append("store")
        return killed

    def restart_host(self, i):
        """Brings back what kill_host(i) killed (etcd rejoins with its data)."""
        if i in self.etcd and self.etcd[i].poll() is not None:
            self.start_etcd(i, "existing")
            self.wait_etcd([i])
        if i in self.masters and self.masters[i].poll() is not None:
            self.start_master(i)
        w = self.workers.get(i)
        if w and w.p.poll() is not None:
            w.stop(1)
            self.start_worker(i).wait_ready()

    def close(self):
        """Stops the workers (stdin), then everything; True when every worker
        exited by itself (none hung)."""
        clean = True
        for w in self.workers.values():
            if w.p.poll() is None:
                clean &= w.stop()
        self.net.close()
        for f in self.logs:
            f.close()
        return clean


def te_read(net, child_env, reader, server, nbytes, seconds):
    """Host `reader` reads a buffer of `nbytes` from host `server` with the TE
    (te_peer.py) for `seconds`; its JSON result plus the byte counters of the
    reader's eth0 over the run ("veth_rx_bytes")."""
    env = child_env()
    env.update(ENV)
    srv = net.popen(server, [sys.executable, os.path.join(HERE, "te_peer.py"), "serve",
                             net.hosts[server].ip, str(nbytes)],
                    env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True)
    try:
        line = srv.stdout.readline().split()
        if not line or line[0] != "READY":
            raise RuntimeError("te_peer serve failed: %s" % srv.stderr.read()[-3000:])
        rx0, _ = net.veth_bytes(reader)
        p = net.popen(reader, [sys.executable, os.path.join(HERE, "te_peer.py"), "read",
                               net.hosts[reader].ip, line[1], line[2], line[3], str(seconds)],
                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = p.communicate(timeout=seconds + 120)
        rx1, _ = net.veth_bytes(reader)
        if p.returncode != 0 or not out.strip():
            raise RuntimeError("te_peer read failed (rc %s): %s %s" % (p.returncode, out,
                                                                      err[-3000:]))
        import json
        r = json.loads(out.strip().splitlines()[-1])
        r["veth_rx_bytes"] = rx1 - rx0
        return r
    finally:
        try:
            srv.stdin.close()
            srv.wait(20)
        except (OSError, subprocess.TimeoutExpired):
            srv.kill()
            srv.wait()


def iperf(net, reader, server, seconds):
    """iperf3 stream from host `server` to host `reader` (-R: the server
    sends, as in a read) on the same veths; bits/s received."""
    import json
    ip = net.hosts[server].ip
    srv = net.popen(server, ["iperf3", "-s", "-1", "-B", ip, "-p", "5201"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def connects():
            r = net.sh(reader, ["iperf3", "-c", ip, "-p", "5201", "-R", "-t", str(seconds),
                                "-J"], check=False, timeout=seconds + 30)
            try:
                return json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"]
            except (ValueError, KeyError):
                return None  # not listening yet: iperf3 answers with {"error": ...}
        bps = until(connects, 10, 0.1)
        if not bps:
            raise RuntimeError("iperf3 failed")
        return bps
    finally:
        if srv.poll() is None:
            srv.terminate()
        srv.wait(10)
