#!/usr/bin/env python3
"""The master's RPC throughput against the number of client connections, the batch size and
--rpc_thread_num, in one run (make bench-master).

For each thread count a fresh mooncake_master (loopback, its journal in a temporary
directory) serves master_scale_client runs of --seconds each: 1, 4, 16 and 64 connections
(one thread and one connection each), batches of 1 and 64 keys, lookups (get: the replica
lists of keys put beforehand) and writes (put: put_start then put_end). One JSON line per
cell, then a summary with the keys/s of each cell per thread count and the ratio of the
largest thread count to 1; with --plot, a PNG of keys/s against connections (matplotlib,
from build/bench/venv-plot, made on first use).

  scale_bench.py [--bin-dir build/release/bin] [--threads 1,2] [--conns 1,4,16,64]
      [--batches 1,64] [--seconds 2] [--out FILE] [--plot PNG]"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def start_master(a, threads, tmp):
    args = [os.path.join(a.bin_dir, "mooncake_master"), "--port=0", "--rpc_port=0",
            "--rpc_address=127.0.0.1", "--metrics_port=0", "--metrics_host=127.0.0.1",
            "--rpc_thread_num=%d" % threads, "--persist_dir=" + os.path.join(tmp, "p%d" % threads)]
    env = dict(os.environ, MC_LOG_LEVEL="warn")
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env=env)
    addr = None
    for line in p.stdout:  # readiness: its own lines
        m = re.match(r"mooncake_master: rpc listening on (\S+)", line)
        if m:
            addr = m.group(1)
        if line.startswith("mooncake_master: ready"):
            break
    if not addr:
        p.kill()
        sys.exit("mooncake_master did not start")
    return p, addr


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "build", "release", "bin"))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--conns", default="1,4,16,64")
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--seconds", type=int, default=2)
    ap.add_argument("--out")
    ap.add_argument("--plot")
    a = ap.parse_args()
    threads = [int(x) for x in a.threads.split(",")]
    conns = [int(x) for x in a.conns.split(",")]
    batches = [int(x) for x in a.batches.split(",")]
    tmp = tempfile.mkdtemp(prefix="mc-scale-")
    rows, bad = [], 0
    try:
        for t in threads:
            p, addr = start_master(a, t, tmp)
            try:
                for op in ("get", "put"):
                    for b in batches:
                        for c in conns:
                            r = subprocess.run(
                                [os.path.join(a.bin_dir, "master_scale_client"), "--master", addr,
                                 "--conns", str(c), "--batch", str(b), "--op", op, "--seconds",
                                 str(a.seconds)], stdout=subprocess.PIPE, text=True,
                                timeout=60 + a.seconds * 4)
                            row = json.loads(r.stdout.strip().splitlines()[-1])
                            row.update({"bench": "master_scale", "rpc_threads": t,
                                        "cores": os.cpu_count(),
                                        "load": round(os.getloadavg()[0], 2)})
                            bad += r.returncode != 0
                            rows.append(row)
                            print(json.dumps(row), flush=True)
            finally:
                p.terminate()
                p.wait(30)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    top = max(threads)
    summary = {"bench": "master_scale_summary", "cores": os.cpu_count(), "cells": {}}
    for op in ("get", "put"):
        for b in batches:
            for c in conns:
                ks = {t: next(r["keys_per_s"] for r in rows if r["op"] == op and r["batch"] == b
                              and r["conns"] == c and r["rpc_threads"] == t) for t in threads}
                cell = {"keys_per_s_%dthr" % t: ks[t] for t in threads}
                if top != 1 and ks.get(1):
                    cell["ratio_%d_over_1" % top] = round(ks[top] / ks[1], 3)
                summary["cells"]["%s-b%d-c%d" % (op, b, c)] = cell
    print(json.dumps(summary), flush=True)
    if a.out:
        with open(a.out, "w") as f:
            for r in rows + [summary]:
                f.write(json.dumps(r) + "\n")
    if a.plot:
        plot(rows, threads, batches, a.plot)
    return 1 if bad else 0


def plot(rows, threads, batches, path):
    venv = os.path.join(ROOT, "build", "bench", "venv-plot")
    py = os.path.join(venv, "bin", "python")
    have = os.path.exists(py) and subprocess.run(
        [py, "-c", "import matplotlib"], stderr=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL).returncode == 0
    if not have:
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", "matplotlib"], check=True)
    script = r'''
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows, threads, batches, path = json.loads(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
for ax, op in zip(axes, ("get", "put")):
    for t in threads:
        for b in batches:
            pts = sorted((r["conns"], r["keys_per_s"]) for r in rows
                         if r["op"] == op and r["rpc_threads"] == t and r["batch"] == b)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                    linestyle="-" if t == max(threads) else "--",
                    label="%d loop%s, batch %d" % (t, "s" if t > 1 else "", b))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("client connections")
    ax.set_ylabel("keys/s")
    ax.set_title("master %s (%d cores)" % (op, rows[0]["cores"]))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(path, dpi=110)
'''
    subprocess.run([py, "-c", script, json.dumps(rows), json.dumps(threads), json.dumps(batches),
                    path], check=True)
    print("plot: %s" % path, flush=True)


if __name__ == "__main__":
    sys.exit(main())
