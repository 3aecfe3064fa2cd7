#!/usr/bin/env python3
"""Failover time of HA masters: from the leader's kill -9 to the first
successful put through the new leader, as a client sees it.

Runs a 3-member etcd cluster on loopback, two mooncake_master --enable_ha
processes and one store client (the `mooncake` package, tests/py/ha/
ha_workload.py: puts and byte-checked gets in a loop, with master address
etcd://...). Then, --kills times: waits for the client to put through the
current leader, kills the leader with SIGKILL, records the time until the
client's first successful put after the kill, and starts a new master as the
standby. Prints one JSON line per kill and a summary line with the median and
the max next to the limit (6 s with the 5 s lease).

  failover_bench.py --bin-dir build/release/bin [--kills 10] [--out FILE]

Needs etcd on PATH (scripts/install-deps.sh installs etcd-server) and the
extension next to the binaries (build/<dir>/python)."""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "py"))
from servers import EtcdCluster, free_ports  # noqa: E402


def http(addr, path):
    with urllib.request.urlopen("http://%s%s" % (addr, path), timeout=3) as r:
        return r.read().decode()


class MasterProc:
    def __init__(self, bin_dir, tmp, etcd, cluster, extra=()):
        # the replication port too: a port 0 listener could take one picked here
        rpc, admin, repl = free_ports(3)
        self.rpc, self.admin = "127.0.0.1:%d" % rpc, "127.0.0.1:%d" % admin
        self.err = open(os.path.join(tmp, "master-%d.err" % rpc), "wb")
        env = dict(os.environ, MC_LOG_LEVEL="warn", MC_MASTER_REPL_PORT=str(repl))
        self.p = subprocess.Popen(
            [os.path.join(bin_dir, "mooncake_master"), "--enable_ha=true",
             "--rpc_address=127.0.0.1", "--rpc_port=%d" % rpc, "--metrics_port=%d" % admin,
             "--etcd_endpoints=" + ";".join(etcd.endpoints), "--cluster_id=" + cluster,
             "--client_ttl=3", "--persist_dir=" + os.path.join(tmp, "persist-%d" % rpc)] +
            list(extra),
            stdout=subprocess.PIPE, stderr=self.err, env=env, text=True)
        for line in self.p.stdout:
            if line.strip().endswith("ready"):
                break
        threading.Thread(target=lambda: [None for _ in self.p.stdout], daemon=True).start()

    def role(self):
        try:
            return http(self.admin, "/role")
        except OSError:
            return "down"

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.err.close()


def teardown(w, werr, masters, etcd):
    """Ends the workload child (closing its stdin), then the masters and etcd."""
    try:
        w.stdin.close()
        w.wait(30)
    except (OSError, subprocess.TimeoutExpired):
        w.kill()
    werr.close()
    for m in masters:
        m.stop()
    etcd.stop()


def until(fn, timeout, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(step)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "build", "release", "bin"))
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--out")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="mc-failover-")
    etcd = EtcdCluster(tmp, members=3)
    cluster = "bench%d" % os.getpid()
    masters = [MasterProc(a.bin_dir, tmp, etcd, cluster) for _ in range(2)]
    env = dict(os.environ, MC_TEST_RPC="etcd://" + ";".join(etcd.endpoints),
               MC_TEST_META="etcd://" + ";".join(etcd.endpoints), MC_STORE_CLUSTER_ID=cluster,
               MC_LOG_LEVEL="warn",
               PYTHONPATH=os.path.join(os.path.dirname(os.path.abspath(a.bin_dir)), "python"))
    werr = open(os.path.join(tmp, "workload.err"), "wb")
    w = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "py", "ha",
                                                       "ha_workload.py"), "3600"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=werr, env=env,
                         text=True)
    lines, results, out = [], [], []
    try:
        assert w.stdout.readline().strip() == "READY 0", "the client could not set up"
        threading.Thread(target=lambda: [lines.append(l.split()) for l in w.stdout],
                         daemon=True).start()

        def ok_after(t):
            return next((float(l[3]) for l in list(lines)
                         if l[:2] == ["OK", "PUT"] and float(l[3]) > t), None)

        def first_put_via_new_leader(t_kill):
            """The first successful put after the first failed one that follows
            the kill: a put whose reply was already on its way from the dead
            leader completes after the kill too, and must not count."""
            snap = list(lines)
            t_err = next((float(l[4]) for l in snap
                          if l[:2] == ["ERR", "PUT"] and float(l[4]) > t_kill), None)
            return ok_after(t_err) if t_err is not None else None

        for k in range(a.kills):
            leader = until(lambda: next((m for m in masters if m.role() == "leader"), None), 30)
            assert leader, "no leader elected"
            assert until(lambda: ok_after(time.monotonic() - 0.2), 30), "the client does not put"
            t_kill = time.monotonic()
            os.kill(leader.p.pid, signal.SIGKILL)
            leader.p.wait()
            t_ok = until(lambda: first_put_via_new_leader(t_kill), 30)
            dt = (t_ok - t_kill) if t_ok else None
            results.append(dt)
            rec = {"bench": "ha_failover", "kill": k + 1, "seconds": dt}
            out.append(rec)
            print(json.dumps(rec), flush=True)
            masters.remove(leader)
            leader.stop()
            masters.append(MasterProc(a.bin_dir, tmp, etcd, cluster))
        bad = sum(1 for l in lines if l[0] == "BAD")
        ok = [r for r in results if r is not None]
        summary = {"bench": "ha_failover_summary", "kills": a.kills, "lease_s": 5,
                   "median_s": statistics.median(ok) if ok else None,
                   "max_s": max(ok) if ok else None, "failed_kills": a.kills - len(ok),
                   "wrong_bytes": bad, "limit_s": 6.0,
                   "load": os.getloadavg()[0]}
        out.append(summary)
        print(json.dumps(summary), flush=True)
    finally:
        teardown(w, werr, masters, etcd)
    if a.out:
        with open(a.out, "w") as f:
            for r in out:
                f.write(json.dumps(r) + "\n")
    return 0 if summary["failed_kills"] == 0 and summary["wrong_bytes"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
