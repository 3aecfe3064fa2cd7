"""Throughput of the mooncake Python package next to the C store benchmark.

    python3 python/tools/bench_py.py --bin-dir build/release/bin [--seconds 5]

Spawns mooncake_master (embedded metadata server, ports 0) and a peer store
process holding a segment. This process (a store without a segment) first
times single is_exist calls on the fresh master (mean us per call; the C
bench's exist cell also runs on a fresh master), then runs 2 threads of
batch_put_from / batch_get_into of 8 x 1 MiB values placed in the peer's
segment (the C bench's cell `--clients 2 --active 1 --threads 2 --batch 8
--value_size 1M`). It then runs mooncake_store_bench for the same cell and for
exist with batch 1 and 1 thread, and prints one JSON line with both GB/s
figures, their ratios and the is_exist overhead of Python over C. PYTHONPATH
must reach the package (the CMake build's <dir>/python)."""
import argparse
import ctypes
import json
import os
import re
import subprocess
import sys
import threading
import time

from mooncake.store import MooncakeDistributedStore, ReplicateConfig

PEER = r'''
import sys
from mooncake.store import MooncakeDistributedStore
s = MooncakeDistributedStore()
assert s.setup("127.0.0.1", sys.argv[1], 1 << 30, 16 << 20, "tcp", "", sys.argv[2]) == 0
print("READY", s.get_hostname(), flush=True)
sys.stdin.readline()
s.close()
'''


def start_master(bin_dir):
    p = subprocess.Popen([os.path.join(bin_dir, "mooncake_master"), "--port", "0", "--rpc_port",
                          "0", "--metrics_port", "0", "--enable_http_metadata_server=true",
                          "--http_metadata_server_port", "0", "--http_metadata_server_host",
                          "127.0.0.1", "--rpc_address", "127.0.0.1"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    rpc = meta = None
    for line in p.stdout:
        m = re.search(r"rpc listening on (\S+)", line)
        rpc = m.group(1) if m else rpc
        m = re.search(r"metadata server listening on (\S+)", line)
        meta = "http://%s/metadata" % m.group(1) if m else meta
        if line.strip().endswith("ready"):
            break
    threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
    return p, rpc, meta


def run_cell(s, peer, op, seconds, threads=2, batch=8, size=1 << 20):
    cfg = ReplicateConfig()
    cfg.preferred_segment = peer
    bufs = [(ctypes.c_char * (batch * size))() for _ in range(threads)]
    for b in bufs:
        ctypes.memset(b, 0x5A, len(b))
        assert s.register_buffer(ctypes.addressof(b), len(b)) == 0
    keys = [["bench-%d-%d" % (t, i) for i in range(batch)] for t in range(threads)]
    ptrs = [[ctypes.addressof(bufs[t]) + i * size for i in range(batch)] for t in range(threads)]
    if op == "get":
        for t in range(threads):
            assert s.batch_put_from(keys[t], ptrs[t], [size] * batch, cfg) == [0] * batch
    done = [0] * threads
    stop = time.monotonic() + seconds  # each thread extends it by its untimed time

    def work(t):
        n, busy = 0, 0.0
        while time.monotonic() < stop + busy:
            if op == "put":
                ks = ["%s-%d" % (k, n) for k in keys[t]]
                r = s.batch_put_from(ks, ptrs[t], [size] * batch, cfg)
                assert r == [0] * batch, r
                b0 = time.monotonic()  # untimed, as in the C bench: free the space
                s.batch_remove(ks, True)
                busy += time.monotonic() - b0
            else:
                r = s.batch_get_into(keys[t], ptrs[t], [size] * batch)
                assert r == [size] * batch, r
            n += 1
        done[t] = n

    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for x in ts:
        x.start()
    for x in ts:
        x.join()
    dt = seconds
    for b in bufs:
        s.unregister_buffer(ctypes.addressof(b))
    s.remove_all(True)
    return sum(done) * batch * size / dt / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", default="build/release/bin")
    ap.add_argument("--seconds", type=float, default=5)
    a = ap.parse_args()
    master, rpc, meta = start_master(a.bin_dir)
    peer = subprocess.Popen([sys.executable, "-c", PEER, meta, rpc], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        line = peer.stdout.readline().split()
        assert line and line[0] == "READY", line
        s = MooncakeDistributedStore()
        assert s.setup("127.0.0.1", meta, 0, 64 << 20, "tcp", "", rpc) == 0
        res = {"bench": "python_store", "value_size": 1 << 20, "batch": 8, "threads": 2}
        # is_exist first, on a fresh master as the C bench's exist cell has: after
        # the put cells the master spends seconds evicting the full segment.
        assert s.put("exist-key", b"x") == 0
        n, t0 = 20000, time.perf_counter()
        for _ in range(n):
            s.is_exist("exist-key")
        res["py_is_exist_us"] = (time.perf_counter() - t0) / n * 1e6
        res["py_put_gbps"] = run_cell(s, line[1], "put", a.seconds)
        res["py_get_gbps"] = run_cell(s, line[1], "get", a.seconds)
        s.close()
    finally:
        peer.stdin.write("\n")
        peer.stdin.flush()
        peer.wait(30)
        master.terminate()
        master.wait(10)
    cb = subprocess.run([os.path.join(a.bin_dir, "mooncake_store_bench"), "--spawn", "--json",
                         "--clients", "2", "--active", "1", "--threads", "2", "--batch", "8",
                         "--value_size", "1M", "--ops", "put,get", "--duration",
                         str(a.seconds)], capture_output=True, text=True, timeout=600)
    res["c_bench"] = [json.loads(x) for x in cb.stdout.splitlines() if x.startswith("{")]
    ce = subprocess.run([os.path.join(a.bin_dir, "mooncake_store_bench"), "--spawn", "--json",
                         "--clients", "2", "--active", "1", "--threads", "1", "--batch", "1",
                         "--value_size", "4K", "--ops", "exist", "--duration",
                         str(min(a.seconds, 3))], capture_output=True, text=True, timeout=600)
    for x in ce.stdout.splitlines():
        if x.startswith("{"):
            c = json.loads(x)
            res["c_bench"].append(c)
            if c.get("calls_per_s"):
                res["c_is_exist_us"] = 1e6 / c["calls_per_s"]
                res["is_exist_overhead_us"] = res["py_is_exist_us"] - res["c_is_exist_us"]
    for c in res["c_bench"]:
        if c.get("op") in ("put", "get") and c.get("gbps"):
            res["ratio_%s" % c["op"]] = res["py_%s_gbps" % c["op"]] / c["gbps"]
    print(json.dumps(res))


if __name__ == "__main__":
    main()
