#!/usr/bin/env python3
"""What HA replication costs a put: the same puts through two HA masters with
replication on (the default: a standby in the in-sync set, acks, held frees)
and off (--enable_ha_replication=false), in one run.

Runs a 3-member etcd cluster on loopback; for each round and mode, two
mooncake_master --enable_ha processes (fresh each time) and, once the
standby is in the in-sync set (mode on), one store client per cell
(tests/py/ha/ha_workload.py in index mode, master address etcd://...) that
puts --small objects of 4 KiB in batches of 64, then one that puts --large
objects of 1 MiB one by one, and then removes the first half of them and puts
as many again (so that freed ranges go through the hold and are handed out
again). Rounds alternate on, off, on, off (--rounds 2) so that a drift of
the machine does not favour one mode. One JSON line per cell:
  {"bench": "ha_put_cost", "repl": "on", "value_size": 4096, "batch": 64,
   "objects": N, "puts_per_s": R, "MBps": M, "round": k,
   "held_bytes_peak": B (mode on: the leader's held bytes, sampled), ...}
then a summary line with the on/off ratio per cell (medians over rounds).

  put_cost_bench.py --bin-dir build/release/bin [--small 40000] [--large 200]
      [--rounds 2] [--pin] [--out FILE]"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "py"))
sys.path.insert(0, os.path.join(ROOT, "tests", "py", "common"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from servers import EtcdCluster  # noqa: E402
from failover_bench import MasterProc, until  # noqa: E402
from waits import admin_metrics  # noqa: E402

MB = 1 << 20


def metrics(m):
    return admin_metrics(m.admin)


def pin(pid, cpus):
    """Every thread of pid onto cpus (threads made later inherit it)."""
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:
            pass  # a thread that ended meanwhile


def cpu_split(a):
    """--pin: (cpus of the leader and its client, cpus of the standby and
    etcd), the last CPU for the latter; else None. It stands for the
    deployment, where the standby and etcd run on other hosts: on one small
    machine their CPU time would otherwise be taken from the leader's puts."""
    cpus = sorted(os.sched_getaffinity(0))
    if not a.pin or len(cpus) < 2:
        return None
    return set(cpus[:-1]), {cpus[-1]}


class Client:
    def __init__(self, a, etcd, cluster, tmp, value_size, seg_mb):
        env = dict(os.environ, MC_TEST_RPC="etcd://" + ";".join(etcd.endpoints),
                   MC_TEST_META="etcd://" + ";".join(etcd.endpoints),
                   MC_STORE_CLUSTER_ID=cluster, MC_LOG_LEVEL="warn",
                   MC_TEST_VALUE_SIZE=str(value_size), MC_TEST_SEGMENT_MB=str(seg_mb),
                   PYTHONPATH=os.path.join(os.path.dirname(os.path.abspath(a.bin_dir)), "python"))
        self.err = open(os.path.join(tmp, "client-%d.err" % time.monotonic_ns()), "wb")
        self.p = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "py", "ha",
                                                                "ha_workload.py"), "index"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err,
                                  env=env, text=True)
        assert self.p.stdout.readline().strip() == "READY 0", "the client could not set up"

    def cmd(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().split()

    def close(self):
        try:
            self.p.stdin.close()
            self.p.wait(30)
        except (OSError, subprocess.TimeoutExpired):
            self.p.kill()
        self.err.close()


def one_mode(a, etcd, tmp, mode, rnd):
    cluster = "putcost%d%s%d" % (os.getpid(), mode, rnd)
    extra = [] if mode == "on" else ["--enable_ha_replication=false"]
    masters = [MasterProc(a.bin_dir, tmp, etcd, cluster, extra) for _ in range(2)]
    rows = []
    try:
        lead = until(lambda: next((m for m in masters if m.role() == "leader"), None), 30)
        split = cpu_split(a)
        if split:
            pin(lead.p.pid, split[0])
            for m in masters:
                if m is not lead:
                    pin(m.p.pid, split[1])
            for p in etcd.procs:
                pin(p.pid, split[1])
        if mode == "on":
            assert until(lambda: metrics(lead).get("master_repl_isr_size") == 1, 30), \
                "the standby did not join the in-sync set"
        peak = [0]
        stop = threading.Event()

        def sample():  # in both modes, so that its scrapes cost both the same
            while not stop.is_set():
                peak[0] = max(peak[0], metrics(lead).get("master_repl_held_bytes", 0))
                time.sleep(0.01)  # sampling period, not synchronisation
        th = threading.Thread(target=sample, daemon=True)
        th.start()
        for size, n, batch in ((4096, a.small, 64), (MB, a.large, 1)):
            seg = max(64, (n * size * 2) >> 20)
            c = Client(a, etcd, cluster, tmp, size, seg)
            if split:
                pin(c.p.pid, split[0])
            peak[0] = 0
            try:
                r = c.cmd("fill %d %d" % (n, batch))
                assert r[0] == "FILLED" and int(r[1]) == n, r
                secs = float(r[4])
                row = {"bench": "ha_put_cost", "repl": mode, "round": rnd, "value_size": size,
                       "batch": batch, "objects": n, "seconds": round(secs, 4),
                       "puts_per_s": round(n / secs), "MBps": round(n * size / secs / MB, 1)}
                if size == MB:  # frees: half removed, as many put again into their space
                    t0 = time.monotonic()
                    assert c.cmd("remove 0 %d" % (n // 2))[0] == "REMOVED"
                    r = c.cmd("fill %d 1" % (n // 2))
                    assert r[0] == "FILLED" and int(r[1]) == n // 2, r
                    row["remove_refill_s"] = round(time.monotonic() - t0, 4)
                    r = c.cmd("check")
                    row["check_bad"] = int(r[3])
                if mode == "on":
                    row["held_bytes_peak"] = peak[0]  # this cell's, its client still up
                rows.append(row)
            finally:
                c.close()
        stop.set()
        th.join()
        if mode == "on":
            x = metrics(lead)
            rows[-1]["held_bytes_end"] = x.get("master_repl_held_bytes")
            rows[-1]["held_total"] = x.get("master_repl_held_total")
    finally:
        for m in masters:
            m.stop()
    for row in rows:
        row["load"] = round(os.getloadavg()[0], 2)
        print(json.dumps(row), flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "build", "release", "bin"))
    ap.add_argument("--small", type=int, default=40000)
    ap.add_argument("--large", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out")
    ap.add_argument("--pin", action="store_true",
                    help="the standby and etcd on the last CPU, the leader and its client on the "
                         "others (as on separate hosts)")
    a = ap.parse_args()
    os.environ.pop("MC_MASTER_REPL", None)
    tmp = tempfile.mkdtemp(prefix="mc-putcost-")
    etcd = EtcdCluster(tmp, members=3)
    rows = []
    try:
        for rnd in range(a.rounds):
            for mode in ("on", "off"):
                rows += one_mode(a, etcd, tmp, mode, rnd)
    finally:
        etcd.stop()
    summary = {"bench": "ha_put_cost_summary"}
    for size in (4096, MB):
        med = {mode: statistics.median([r["puts_per_s"] for r in rows
                                        if r["repl"] == mode and r["value_size"] == size])
               for mode in ("on", "off")}
        summary["%d" % size] = {"on_puts_per_s": med["on"], "off_puts_per_s": med["off"],
                                "on_over_off": round(med["on"] / med["off"], 3)}
    print(json.dumps(summary), flush=True)
    if a.out:
        with open(a.out, "w") as f:
            for r in rows + [summary]:
                f.write(json.dumps(r) + "\n")
    return 0 if all(r.get("check_bad", 0) == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
