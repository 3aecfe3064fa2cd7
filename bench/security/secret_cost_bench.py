#!/usr/bin/env python3
"""What the cluster secret costs the store: the cells of `make bench-store` run
with and without MC_CLUSTER_SECRET, in one run.

Each round runs every cell once per mode, the modes in ABBA order (off, on, on,
off, then on, off, off, on, ...) so that a drift of the machine favours neither;
every run spawns its own mooncake_master (mooncake_store_bench --spawn), which
reads the same environment as the clients. One JSON line per run, then a
summary with the median ops/s of each cell and operation per mode and their
ratio (on / off). The secret is proved once per connection, so the ratio is
the per-request cost, expected to be 1 within the noise.

  secret_cost_bench.py [--bin-dir build/release/bin] [--rounds 4] [--duration 3]
      [--cells 1M-b8-shm,1M-b8-tcp,4K-b64-shm] [--out FILE]"""
import argparse
import json
import os
import random
import secrets
import statistics
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# the cells of `make bench-store` (Makefile), less the master_mem one (no requests)
CELLS = [
    ("1M-b8-shm", ["--batch", "8", "--value_size", "1M", "--ops", "put,get"]),
    ("1M-b8-tcp", ["--batch", "8", "--value_size", "1M", "--ops", "put,get", "--force_tcp"]),
    ("4K-b64-shm", ["--batch", "64", "--value_size", "4K", "--ops", "put,exist,get"]),
]


def run_cell(a, args, secret):
    env = dict(os.environ, MC_LOG_LEVEL="warn")
    env.pop("MC_CLUSTER_SECRET", None)
    env.pop("MC_CLUSTER_SECRET_FILE", None)
    if secret:
        env["MC_CLUSTER_SECRET"] = secret
    cmd = [os.path.join(a.bin_dir, "mooncake_store_bench"), "--spawn", "--json", "--clients",
           "2", "--active", "1", "--threads", "2", "--duration", str(a.duration)] + args
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=120 + 10 * a.duration)
    rows = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode != 0 or not rows:
        sys.exit("mooncake_store_bench failed (rc %d): %s" % (p.returncode, p.stderr[-2000:]))
    return rows


def ratio_ci(runs, cell, op, draws=2000):
    """95% bootstrap interval of the on/off ratio of medians: the runs of each mode
    resampled with replacement. An interval that holds 1 says the cell cannot tell
    the modes apart at this noise."""
    xs = {m: [r["ops_per_s"] for r in runs if r["cell"] == cell and r["op"] == op and
              r["secret"] == m] for m in ("on", "off")}
    rng = random.Random(7)
    rs = sorted(statistics.median(rng.choices(xs["on"], k=len(xs["on"]))) /
                statistics.median(rng.choices(xs["off"], k=len(xs["off"])))
                for _ in range(draws))
    return round(rs[int(0.025 * draws)], 3), round(rs[int(0.975 * draws) - 1], 3)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "build", "release", "bin"))
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--duration", type=int, default=3)
    ap.add_argument("--cells", default=",".join(c[0] for c in CELLS),
                    help="the cells to run (more rounds of fewer cells narrow the noise)")
    ap.add_argument("--out")
    a = ap.parse_args()
    known = dict(CELLS)
    cells = [(c, known[c]) for c in a.cells.split(",") if c in known]
    if len(cells) != len(a.cells.split(",")):
        ap.error("--cells: known cells are " + ", ".join(known))
    secret = secrets.token_hex(32)
    runs = []
    for rnd in range(a.rounds):
        order = ("off", "on", "on", "off") if rnd % 2 == 0 else ("on", "off", "off", "on")
        for mode in order:
            for name, args in cells:
                for r in run_cell(a, args, secret if mode == "on" else None):
                    row = {"bench": "secret_cost", "secret": mode, "round": rnd, "cell": name,
                           "op": r["op"], "transport": r["transport"],
                           "ops_per_s": r["ops_per_s"], "gbps": r["gbps"],
                           "p50_us": r["p50_us"], "errors": r["errors"],
                           "verified": r["verified"], "load": round(os.getloadavg()[0], 2)}
                    runs.append(row)
                    print(json.dumps(row), flush=True)
    summary = {"bench": "secret_cost_summary", "rounds": a.rounds, "cells": {}}
    worst = None
    for name, _ in cells:
        for op in sorted({r["op"] for r in runs if r["cell"] == name}):
            med = {m: statistics.median(r["ops_per_s"] for r in runs
                                        if r["cell"] == name and r["op"] == op and r["secret"] == m)
                   for m in ("on", "off")}
            ratio = round(med["on"] / med["off"], 3)
            lo, hi = ratio_ci(runs, name, op)
            summary["cells"]["%s-%s" % (name, op)] = {"on_ops_per_s": med["on"],
                                                      "off_ops_per_s": med["off"],
                                                      "on_over_off": ratio,
                                                      "ci95": [lo, hi]}
            worst = ratio if worst is None else min(worst, ratio)
    summary["worst_on_over_off"] = worst
    summary["target"] = 0.98
    print(json.dumps(summary), flush=True)
    if a.out:
        with open(a.out, "w") as f:
            for r in runs + [summary]:
                f.write(json.dumps(r) + "\n")
    bad = [r for r in runs if r["errors"] or not r["verified"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
