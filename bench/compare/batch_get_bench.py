#!/usr/bin/env python3
"""p50/p99 of one batch_get_into of small objects over tcp, from one or more owners (issue 16).

One mooncake_master (--persist_dir in a temp dir), OWNERS store processes that each put their
share of 1024 keys (key i goes to owner i % OWNERS), and one reader store with no segment that
calls batch_get_into of BATCH consecutive keys for --seconds, MC_FORCE_TCP=1 everywhere. The
reader's gets come from the lease cache after the first pass, so a call is the transfer
engine's pipeline alone: with one owner the batch runs on the calling thread as one
pipeline, with several it goes to the workers, one group per owner. Every get is checked
for its length and its first byte.

  batch_get_bench.py [--rel build/release] [--owners 1] [--batch 32] [--size 4096]
                     [--seconds 3]
Prints one JSON line: calls, keys_s, p50_us, p99_us, bad, load."""
import argparse
import ctypes
import json
import os
import re
import subprocess
import sys
import tempfile
import time

MB = 1 << 20
NKEYS = 1024


def store(seg):
    from mooncake.store import MooncakeDistributedStore
    s = MooncakeDistributedStore()
    rc = s.setup("127.0.0.1", os.environ["BG_META"], seg, 64 * MB, "tcp", "", os.environ["BG_RPC"])
    assert rc == 0, rc
    return s


def owner(me, owners, size):
    from mooncake.store import ReplicateConfig
    s = store(512 * MB)
    c = ReplicateConfig()
    c.preferred_segment = s.get_hostname()
    for i in range(me, NKEYS, owners):
        assert s.put("k-%d" % i, bytes([i % 251]) * size, c) == 0
    print("READY", flush=True)
    sys.stdin.readline()  # until the parent closes it
    s.close()


def reader(batch, size, seconds):
    s = store(0)
    buf = (ctypes.c_char * (size * batch))()
    addr = ctypes.addressof(buf)
    assert s.register_buffer(addr, size * batch) == 0
    addrs, sizes = [addr + i * size for i in range(batch)], [size] * batch
    lat, pos, bad = [], 0, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        idx = [(pos + i) % NKEYS for i in range(batch)]
        pos = (pos + batch) % NKEYS
        t0 = time.perf_counter_ns()
        r = s.batch_get_into(["k-%d" % k for k in idx], addrs, sizes)
        lat.append(time.perf_counter_ns() - t0)
        bad += sum(n != size or buf.raw[j * size] != k % 251 for j, (n, k) in enumerate(zip(r, idx)))
    lat.sort()
    print(json.dumps({"calls": len(lat), "keys_s": len(lat) * batch / seconds,
                      "p50_us": lat[len(lat) // 2] / 1e3, "p99_us": lat[int(len(lat) * .99)] / 1e3,
                      "bad": bad}), flush=True)
    s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rel", default=os.path.join(os.path.dirname(__file__), "..", "..", "build",
                                                  "release"))
    ap.add_argument("--owners", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--role", help=argparse.SUPPRESS)
    ap.add_argument("--me", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.role == "owner":
        return owner(a.me, a.owners, a.size)
    if a.role == "reader":
        return reader(a.batch, a.size, a.seconds)
    rel = os.path.abspath(a.rel)
    tmp = tempfile.mkdtemp(prefix="bg-bench-")
    m = subprocess.Popen([os.path.join(rel, "bin", "mooncake_master"), "--port", "0",
                          "--rpc_port", "0", "--metrics_port", "0",
                          "--enable_http_metadata_server=true", "--http_metadata_server_port", "0",
                          "--http_metadata_server_host", "127.0.0.1", "--rpc_address", "127.0.0.1",
                          "--persist_dir", tmp], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    rpc = meta = None
    for line in m.stdout:  # the master's own lines say where it listens and when it is ready
        g = re.search(r"rpc listening on (\S+)", line)
        rpc = g.group(1) if g else rpc
        g = re.search(r"metadata server listening on (\S+)", line)
        meta = g.group(1) if g else meta
        if line.strip().endswith("ready"):
            break
    procs = []
    try:
        assert rpc and meta, "mooncake_master did not start"
        env = dict(os.environ, MC_FORCE_TCP="1", PYTHONPATH=os.path.join(rel, "python"),
                   BG_RPC=rpc.replace("0.0.0.0", "127.0.0.1"),
                   BG_META="http://%s/metadata" % meta.replace("0.0.0.0", "127.0.0.1"))
        me = [sys.executable, os.path.abspath(__file__), "--owners", str(a.owners), "--batch",
              str(a.batch), "--size", str(a.size), "--seconds", str(a.seconds)]
        for i in range(a.owners):
            o = subprocess.Popen(me + ["--role", "owner", "--me", str(i)], env=env,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            procs.append(o)
            assert o.stdout.readline().strip() == "READY", "owner %d did not start" % i
        r = subprocess.run(me + ["--role", "reader"], env=env, capture_output=True, text=True,
                           timeout=a.seconds + 120)
        out = json.loads(r.stdout.strip().splitlines()[-1])
        out.update(owners=a.owners, batch=a.batch, size=a.size, load=os.getloadavg()[0])
        print(json.dumps(out))
    finally:
        for o in procs:
            o.stdin.close()
            o.wait(timeout=30)
        m.terminate()
        m.wait(timeout=30)
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
