#!/usr/bin/env python3
"""Ours against upstream's wheel under LMCache's MooncakestoreConnector, same run.

Starts one mooncake_master per system (ours from --rel, upstream's from its
wheel's venv, each with its embedded HTTP metadata server), then runs
lmcache_driver.py (or client_calls.py with --calls) for each system in
alternating rounds (ABBA order), and reports per size and operation: each
round's medians, the ratio upstream/ours per round (> 1: ours faster) and the
median of those ratios, with the load average at every round. JSON on stdout
and in --json.

  python lmcache_ab.py --rel build/release --ours-py build/lmc/venv/bin/python \
      --up-py build/lmc/venv-up/bin/python --rounds 4 --reps 10 --json OUT
"""
import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, secs=30):
    end = time.time() + secs
    while time.time() < end and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def start_ours(rel, log):
    p = subprocess.Popen([os.path.join(rel, "bin", "mooncake_master"), "--port", "0",
                          "--rpc_port", "0", "--metrics_port", "0",
                          "--enable_http_metadata_server=true", "--http_metadata_server_port", "0",
                          "--http_metadata_server_host", "127.0.0.1", "--rpc_address", "127.0.0.1"],
                         stdout=subprocess.PIPE, stderr=log, text=True)
    rpc = meta = None
    for line in p.stdout:
        m = re.search(r"rpc listening on (\S+)", line)
        rpc = m.group(1) if m else rpc
        m = re.search(r"metadata server listening on (\S+)", line)
        meta = "http://%s/metadata" % m.group(1) if m else meta
        if line.strip().endswith("ready"):
            break
    threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
    if not rpc or not meta:
        raise SystemExit("our mooncake_master did not start")
    return p, rpc, meta


def start_upstream(up_py, log):
    binary = os.path.join(os.path.dirname(up_py), "mooncake_master")
    rpc, http, metrics = free_port(), free_port(), free_port()
    p = subprocess.Popen([binary, "--rpc_port", str(rpc), "--rpc_address", "127.0.0.1",
                          "--enable_http_metadata_server=true",
                          "--http_metadata_server_port", str(http),
                          "--http_metadata_server_host", "127.0.0.1",
                          "--metrics_port", str(metrics)], stdout=log, stderr=log)
    if not (wait_port(rpc, p) and wait_port(http, p)):
        raise SystemExit("upstream mooncake_master did not start")
    return p, "127.0.0.1:%d" % rpc, "http://127.0.0.1:%d/metadata" % http


def run_one(a, system, py, master, meta, logdir, rnd):
    out = os.path.join(logdir, "%s-%d.json" % (system, rnd))
    script = "client_calls.py" if a.calls else "lmcache_driver.py"
    cmd = [py, os.path.join(HERE, script), "--master", master, "--metadata", meta,
           "--sizes", a.sizes, "--reps", str(a.reps), "--label", system]
    if not a.calls:
        cmd += ["--json", out]
    cmd += a.script_args.split()
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if system == "ours":
        env["PYTHONPATH"] = os.path.join(os.path.abspath(a.rel), "python")
    with open(os.path.join(logdir, "%s-%d.log" % (system, rnd)), "w") as log:
        r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=log, text=True,
                           timeout=a.timeout)
    if r.returncode != 0:
        raise SystemExit("%s round %d failed (rc %d): see %s" % (system, rnd, r.returncode, logdir))
    return json.loads(r.stdout.strip().splitlines()[-1])


def metrics(res, calls):
    """{(size, op): ms} of one run"""
    m = {}
    for s in res["sizes"]:
        if calls:
            for k, v in s["calls"].items():
                m[(s["size"], k)] = v["wall_ms"]
                m[(s["size"], k + ":cpu")] = v["cpu_ms"]
        else:
            for k in ("batched_get_ms", "single_get_ms", "batched_put_ms"):
                m[(s["size"], k)] = s[k]
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rel", default="build/release")
    ap.add_argument("--ours-py", required=True, help="interpreter with lmcache, no mooncake")
    ap.add_argument("--up-py", required=True, help="interpreter with lmcache + upstream's wheel")
    ap.add_argument("--sizes", default="262144,1048576,4194304")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--calls", action="store_true", help="client_calls.py instead of the driver")
    ap.add_argument("--script-args", default="",
                    help="more arguments for the script, e.g. '--only vllm --vllm-keys 15'")
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    logdir = tempfile.mkdtemp(prefix="lmc-ab-")
    procs = []
    try:
        with open(os.path.join(logdir, "ours-master.log"), "w") as lo, \
                open(os.path.join(logdir, "up-master.log"), "w") as lu:
            po, om, ometa = start_ours(a.rel, lo)
            procs.append(po)
            pu, um, umeta = start_upstream(a.up_py, lu)
            procs.append(pu)
            rounds = []
            for rnd in range(a.rounds):
                order = ["ours", "upstream"] if rnd % 2 == 0 else ["upstream", "ours"]
                got = {"load": list(os.getloadavg())}
                for system in order:
                    if system == "ours":
                        got[system] = run_one(a, system, a.ours_py, om, ometa, logdir, rnd)
                    else:
                        got[system] = run_one(a, system, a.up_py, um, umeta, logdir, rnd)
                rounds.append(got)
                print("round %d done, load %s" % (rnd, got["load"]), file=sys.stderr, flush=True)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
    table = {}
    for got in rounds:
        mo, mu = metrics(got["ours"], a.calls), metrics(got["upstream"], a.calls)
        for k in mo:
            t = table.setdefault("%d %s" % k, {"ours_ms": [], "upstream_ms": [], "ratio": []})
            t["ours_ms"].append(round(mo[k], 3))
            t["upstream_ms"].append(round(mu[k], 3))
            t["ratio"].append(round(mu[k] / mo[k], 3) if mo[k] > 0 else None)
    for t in table.values():
        rs = [r for r in t["ratio"] if r is not None]
        t["median_ratio"] = round(statistics.median(rs), 3) if rs else None
        t["ours_median_ms"] = round(statistics.median(t["ours_ms"]), 3)
        t["upstream_median_ms"] = round(statistics.median(t["upstream_ms"]), 3)
    out = {"bench": "lmcache_ab", "calls": a.calls, "rounds": a.rounds, "reps": a.reps,
           "loadavg": [g["load"] for g in rounds], "logs": logdir, "table": table,
           "bad": sum(g[s].get("bad", 0) + sum(x.get("bad", 0) for x in g[s].get("sizes", []))
                      for g in rounds for s in ("ours", "upstream"))}
    text = json.dumps(out)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    for k, t in table.items():
        print("%-40s ours %9.3f  upstream %9.3f  upstream/ours %s" % (
            k, t["ours_median_ms"], t["upstream_median_ms"], t["median_ratio"]), file=sys.stderr)


if __name__ == "__main__":
    main()
