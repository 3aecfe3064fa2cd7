#!/usr/bin/env python3
"""HA replication: how far a standby trails the leader, and how long after a
failover the new leader serves the whole index again.

Runs a 3-member etcd cluster on loopback, two mooncake_master --enable_ha
processes and one store client (tests/py/ha/ha_workload.py in index mode,
master address etcd://...). The client puts --objects objects (--value-size
bytes, batches of 100); meanwhile the standby's /metrics are sampled for
mooncake_master_repl_lag_ms (the age of the leader's last ping when the
standby applied it: queue plus network, same-host clocks). After the fill:
the time until the standby holds every object ("catch-up"). Then it removes
the first --remove-share of the objects, sampling the leader's
mooncake_master_repl_held_bytes (freed ranges held until the in-sync standby
acked their removal: the peak, and the time from the last remove until none
is held). Then the leader
is killed with SIGKILL, and the bench records the time until the new leader
was elected, until the first put through it, and until its index holds
every object left again (mooncake_master_key_count), then checks every
object byte for byte. One JSON line.

  repl_bench.py --bin-dir build/release/bin [--objects 100000] [--out FILE]"""
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

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "py"))
sys.path.insert(0, os.path.join(ROOT, "tests", "py", "common"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from servers import EtcdCluster  # noqa: E402
from failover_bench import MasterProc, teardown, until  # noqa: E402
from waits import admin_metrics  # noqa: E402


def metrics(m):
    return admin_metrics(m.admin)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "build", "release", "bin"))
    ap.add_argument("--objects", type=int, default=100000)
    ap.add_argument("--value-size", type=int, default=256)
    ap.add_argument("--remove-share", type=float, default=0.1)
    ap.add_argument("--out")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="mc-repl-")
    etcd = EtcdCluster(tmp, members=3)
    cluster = "replbench%d" % os.getpid()
    os.environ.pop("MC_MASTER_REPL", None)  # on by default with --enable_ha
    masters = [MasterProc(a.bin_dir, tmp, etcd, cluster) for _ in range(2)]
    seg_mb = max(64, (a.objects * max(a.value_size, 64) * 2) >> 20)
    env = dict(os.environ, MC_TEST_RPC="etcd://" + ";".join(etcd.endpoints),
               MC_TEST_META="etcd://" + ";".join(etcd.endpoints), MC_STORE_CLUSTER_ID=cluster,
               MC_LOG_LEVEL="warn", MC_TEST_VALUE_SIZE=str(a.value_size),
               MC_TEST_SEGMENT_MB=str(seg_mb),
               PYTHONPATH=os.path.join(os.path.dirname(os.path.abspath(a.bin_dir)), "python"))
    werr = open(os.path.join(tmp, "workload.err"), "wb")
    w = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "py", "ha",
                                                       "ha_workload.py"), "index"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=werr, env=env,
                         text=True)

    def cmd(line):
        w.stdin.write(line + "\n")
        w.stdin.flush()
        return w.stdout.readline().split()

    rec = {"bench": "ha_repl", "objects": a.objects, "value_size": a.value_size}
    try:
        assert w.stdout.readline().strip() == "READY 0", "the client could not set up"
        lead = until(lambda: next((m for m in masters if m.role() == "leader"), None), 30)
        standby = next(m for m in masters if m is not lead)
        lags, stop = [], threading.Event()

        def sample():
            while not stop.is_set():
                x = metrics(standby)
                if x.get("master_repl_synced") == 1:
                    lags.append(x.get("master_repl_lag_ms", 0))
                time.sleep(0.05)  # sampling period, not synchronisation
        th = threading.Thread(target=sample, daemon=True)
        th.start()
        r = cmd("fill %d 100" % a.objects)
        t_filled = time.monotonic()
        assert r[0] == "FILLED" and int(r[1]) == a.objects, r
        ok = until(lambda: metrics(standby).get("master_repl_objects", 0) >= a.objects, 60,
                   step=0.005)
        rec["catch_up_s"] = round(time.monotonic() - t_filled, 4) if ok else None
        stop.set()
        th.join()
        rec["put_rate_per_s"] = round(a.objects / float(r[4]))
        rec["lag_ms_median"] = statistics.median(lags) if lags else None
        rec["lag_ms_max"] = max(lags) if lags else None
        rec["lag_samples"] = len(lags)
        removed = int(a.objects * a.remove_share)
        peak, stop = [0], threading.Event()

        def held():
            while not stop.is_set():
                peak[0] = max(peak[0], metrics(lead).get("master_repl_held_bytes", 0))
                time.sleep(0.002)  # sampling period, not synchronisation
        th = threading.Thread(target=held, daemon=True)
        th.start()
        t_rm = time.monotonic()
        r = cmd("remove 0 %d" % removed)
        t_rm_end = time.monotonic()
        assert r[0] == "REMOVED" and int(r[1]) == removed, r
        until(lambda: metrics(lead).get("master_repl_held_bytes", 1) == 0, 30, step=0.002)
        rec["held_release_s"] = round(time.monotonic() - t_rm_end, 4)
        stop.set()
        th.join()
        rec["removed"] = removed
        rec["remove_per_s"] = round(removed / (t_rm_end - t_rm)) if removed else None
        rec["held_bytes_peak"] = peak[0]
        rec["held_total"] = metrics(lead).get("master_repl_held_total")
        until(lambda: metrics(standby).get("master_repl_objects", 0) <= a.objects - removed, 30,
              step=0.005)
        t_kill = time.monotonic()
        os.kill(lead.p.pid, signal.SIGKILL)
        lead.p.wait()
        until(lambda: standby.role() == "leader", 30, step=0.01)
        rec["elected_s"] = round(time.monotonic() - t_kill, 4)
        r = cmd("fill 1")
        rec["first_put_s"] = round(float(r[3]) - t_kill, 4)
        ok = until(lambda: metrics(standby).get("master_key_count", 0) >= a.objects - removed,
                   60, step=0.01)
        rec["whole_index_s"] = round(time.monotonic() - t_kill, 4) if ok else None
        r = cmd("check")
        rec["check"] = {"ok": int(r[1]), "missing": int(r[2]), "bad": int(r[3])}
        rec["load"] = os.getloadavg()[0]
        print(json.dumps(rec), flush=True)
    finally:
        teardown(w, werr, masters, etcd)
    if a.out:
        with open(a.out, "w") as f:
            f.write(json.dumps(rec) + "\n")
    return 0 if rec.get("check", {}).get("bad", 1) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
