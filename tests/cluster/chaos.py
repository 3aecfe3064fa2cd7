"""The cluster soak of `make chaos`: random faults on a namespace cluster for a
bounded time, reproducible from a seed.

    python3 tests/cluster/chaos.py --seconds N --seed S [--hosts 4] [--tmp DIR]
        [--only SCENARIO]   (one scenario over and over, e.g. leader_partition)
    (make chaos: CHAOS_SECONDS, CHAOS_SEED; the release build's MC_BIN_DIR)

The seed fixes the sequence of scenarios and every choice inside them (which
host, how long, which rate) and each store's choice of keys; the timing of
real processes is not part of it, so a rerun with the same seed replays the
same faults in the same order with the same parameters, not the same
interleaving of operations. Before the faults it measures one host reading
another's buffer with the TE against iperf3 on the same veths (JSON line
"cluster_throughput"). It runs scenarios until --seconds have passed (the
one running then completes; each is bounded by its own timeouts), prints one
row per scenario and the table, and exits 1 on any wrong byte, any hang or
failed recovery, a store that did not stop by itself, or a sanitizer report."""

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "py", "mooncake"))

import netns  # noqa: E402
import scenarios  # noqa: E402
from cluster import Cluster, iperf, te_read  # noqa: E402
from mc_fixtures import bin_dir, child_env, core_so  # noqa: E402

MB = 1 << 20
WATCHDOG_S = 300  # past --seconds (+ start-up): the whole soak is stuck


def throughput(c, seconds=3):
    """h1 reads 64 MiB buffers of h2 (TE, tcp over the veths) vs iperf3 -R."""
    te = te_read(c.net, child_env, 1, 2, 64 * MB, seconds)
    bps = iperf(c.net, 1, 2, seconds)
    te_gbps = te["bytes"] / te["seconds"] / 1e9 if te["seconds"] else 0.0
    return {"bench": "cluster_throughput", "reader": "h1", "server": "h2",
            "transport": te["transport"], "block_bytes": 64 * MB, "reads": te["reads"],
            "bytes_checked": te["ok"], "te_read_GBps": round(te_gbps, 3),
            "iperf3_GBps": round(bps / 8e9, 3),
            "ratio": round(te_gbps / (bps / 8e9), 3) if bps else None,
            "veth_rx_bytes": te["veth_rx_bytes"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float,
                    default=float(os.environ.get("CHAOS_SECONDS") or 120))
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--hosts", type=int, default=4)
    ap.add_argument("--tmp", default=None)
    ap.add_argument("--no-throughput", action="store_true")
    ap.add_argument("--only", choices=sorted(scenarios.SCENARIOS), default=None)
    a = ap.parse_args()
    seed = a.seed
    if seed is None:
        env = os.environ.get("CHAOS_SEED")
        seed = int(env) if env else int.from_bytes(os.urandom(4), "little")
    why = netns.usable()
    if why:
        print("chaos: cannot run: %s" % why)
        return 2
    if not core_so():
        print("chaos: mooncake._core not built under %s" % bin_dir())
        return 2
    tmp = a.tmp or tempfile.mkdtemp(prefix="mccl-chaos-")
    print("chaos: seed %d, %.0f s, %d hosts, bin %s, logs %s" % (seed, a.seconds, a.hosts,
                                                                bin_dir(), tmp), flush=True)
    rng = random.Random(seed)
    rows, fail = [], []

    def watchdog(signum, frame):
        raise TimeoutError("watchdog: the soak ran %.0f s past its time" % WATCHDOG_S)
    signal.signal(signal.SIGALRM, watchdog)
    signal.alarm(int(a.seconds + WATCHDOG_S + 120))
    c = Cluster(tmp, bin_dir(), child_env, n_hosts=a.hosts, seed=seed)
    try:
        if not a.no_throughput:
            print(json.dumps(throughput(c)), flush=True)
        c.start()
        t_end = time.monotonic() + a.seconds
        names = [a.only] if a.only else sorted(scenarios.SCENARIOS)
        while time.monotonic() < t_end:
            name = rng.choice(names)
            row = scenarios.run(c, name, rng, False)
            rows.append(row)
            print("chaos: %s" % json.dumps(row), flush=True)
            if row["failures"]:
                fail += ["%s: %s" % (name, f) for f in row["failures"]]
                break  # the cluster is no longer known good: stop here
    except TimeoutError as e:
        fail.append("hang: %s" % e)
    finally:
        signal.alarm(0)
        clean = c.close()
    if not clean:
        fail.append("a store did not stop by itself (hung)")
    bad = sum(1 for w in c.all_workers for x in w.lines if x[1] == "BAD")
    if bad:
        fail.append("%d gets returned wrong bytes" % bad)
    san = scenarios.sanitizer_reports(c)
    if san:
        fail.append("sanitizer reports in %s" % san)
    print()
    print("chaos: seed %d, %d scenarios" % (seed, len(rows)))
    print(scenarios.table(rows))
    total = {k: sum(r[k] for r in rows) for k in ("ops", "errors", "misses", "wrong", "hung")}
    print("chaos: totals %s, worst recovery %.2f s" % (
        json.dumps(total), max([r["recovery_s"] for r in rows] or [0])))
    for f in fail:
        print("chaos: FAIL %s" % f)
    print("chaos: %s (rerun: CHAOS_SEED=%d)" % ("FAIL" if fail else "PASS", seed))
    return 1 if fail else 0


if __name__ == "__main__":
    sys.exit(main())
