#!/usr/bin/env python3
"""The tail of a small get while large puts stream over the same peer (issue 16, item 5).

Three store processes on one mooncake_master, every transfer on tcp (MC_FORCE_TCP=1):
  owner     holds 256 objects of 4 KiB in its segment, and takes the large puts;
  reader    get_into of those 4 KiB objects, one at a time, latency of each call;
  streamer  put_from of 4 MiB objects into the owner's segment, back to back (removed
            again in rounds so the segment never fills).
The reader measures --seconds idle (no streamer), then --seconds with the streamer running,
in --rounds alternating rounds. One JSON line per phase, then a summary with the idle and
loaded p50/p99/p99.9 (over all rounds) and loaded p99 / idle p99 (target <= 5).

  tail_bench.py [--rel build/release] [--seconds 3] [--rounds 2] [--big 4M] [--out FILE]"""
import argparse
import ctypes
import json
import os
import re
import subprocess
import sys
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SMALL, NKEYS, MB = 4096, 256, 1 << 20


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None


def store(seg):
    from mooncake.store import MooncakeDistributedStore
    s = MooncakeDistributedStore()
    rc = s.setup("127.0.0.1", os.environ["TB_META"], seg, 64 * MB, "tcp", "", os.environ["TB_RPC"])
    assert rc == 0, rc
    return s


def owner():
    from mooncake.store import ReplicateConfig
    s = store(1024 * MB)
    c = ReplicateConfig()
    c.preferred_segment = s.get_hostname()
    for i in range(NKEYS):
        assert s.put("small-%d" % i, bytes([i % 251]) * SMALL, c) == 0
    print("READY %s" % s.get_hostname(), flush=True)
    sys.stdin.readline()  # until the parent closes it
    s.close()


def reader():
    s = store(0)
    buf = (ctypes.c_char * SMALL)()
    addr = ctypes.addressof(buf)
    assert s.register_buffer(addr, SMALL) == 0
    print("READY", flush=True)
    for line in sys.stdin:  # "run SECONDS": one phase
        secs = float(line.split()[1])
        lat, bad, i, end = [], 0, 0, time.monotonic() + secs
        while time.monotonic() < end:
            k = i % NKEYS
            t0 = time.perf_counter_ns()
            n = s.get_into("small-%d" % k, addr, SMALL)
            lat.append((time.perf_counter_ns() - t0) / 1000.0)
            bad += n != SMALL or buf.raw[:8] != bytes([k % 251]) * 8
            i += 1
        print(json.dumps({"n": len(lat), "bad": bad, "p50_us": pct(lat, .5),
                          "p99_us": pct(lat, .99), "p999_us": pct(lat, .999)}), flush=True)
    s.close()


def streamer():
    from mooncake.store import ReplicateConfig
    s = store(0)
    big = int(os.environ["TB_BIG"])
    c = ReplicateConfig()
    c.preferred_segment = os.environ["TB_OWNER"]
    buf = (ctypes.c_char * big)(*([7] * 16))
    addr = ctypes.addressof(buf)
    assert s.register_buffer(addr, big) == 0
    print("READY", flush=True)
    i, keys = 0, []
    while True:  # until killed
        k = "big-%d" % i
        if s.put_from(k, addr, big, c) == 0:
            keys.append(k)
            print("P", flush=True)  # one line per put that succeeded
        i += 1
        if len(keys) >= 64:
            for k in keys:
                s.remove(k, force=True)
            keys = []


def child(role, env):
    p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--role", role], env=env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith("READY"):
        p.kill()
        sys.exit("%s did not start" % role)
    return p, line.split()[1:]


def size(v):
    m = re.fullmatch(r"(\d+)([KM]?)", v)
    return int(m.group(1)) * {"": 1, "K": 1024, "M": MB}[m.group(2)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--role", help=argparse.SUPPRESS)
    ap.add_argument("--rel", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--big", default="4M")
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.role:
        return {"owner": owner, "reader": reader, "streamer": streamer}[a.role]()
    env = dict(os.environ, PYTHONPATH=os.path.join(a.rel, "python"), MC_FORCE_TCP="1",
               MC_LOG_LEVEL="warn", TB_BIG=str(size(a.big)))
    m = subprocess.Popen([os.path.join(a.rel, "bin", "mooncake_master"), "--port", "0",
                          "--rpc_port", "0", "--metrics_port", "0", "--rpc_address", "127.0.0.1",
                          "--enable_http_metadata_server=true", "--http_metadata_server_port", "0",
                          "--http_metadata_server_host", "127.0.0.1"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    procs = [m]
    rows = []
    try:
        for line in m.stdout:
            r = re.search(r"rpc listening on (\S+)", line)
            if r:
                env["TB_RPC"] = r.group(1)
            r = re.search(r"http metadata server listening on (\S+)", line)
            if r:
                env["TB_META"] = "http://%s/metadata" % r.group(1)
            if line.strip().endswith("ready"):
                break
        threading.Thread(target=lambda: [None for _ in m.stdout], daemon=True).start()
        own, (seg,) = child("owner", env)
        procs.append(own)
        env["TB_OWNER"] = seg
        rd, _ = child("reader", env)
        procs.append(rd)
        for rnd in range(a.rounds):
            for phase in ("idle", "loaded"):
                st = None
                if phase == "loaded":
                    st, _ = child("streamer", env)
                    procs.append(st)
                rd.stdin.write("run %s\n" % a.seconds)
                rd.stdin.flush()
                row = dict(json.loads(rd.stdout.readline()), bench="tail_mixed", phase=phase,
                           round=rnd, big=size(a.big), load=round(os.getloadavg()[0], 2))
                if st:
                    st.kill()
                    puts = st.stdout.read().count("P")
                    st.wait()
                    procs.remove(st)
                    row["big_puts"] = puts  # the streamer's, over the phase
                    row["big_gbps"] = round(puts * size(a.big) / a.seconds / 1e9, 3)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                if p.stdin:
                    p.stdin.close()
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
    med = {ph: {q: sorted(r[q] for r in rows if r["phase"] == ph)[len(
        [r for r in rows if r["phase"] == ph]) // 2] for q in ("p50_us", "p99_us", "p999_us")}
        for ph in ("idle", "loaded")}
    summary = {"bench": "tail_mixed_summary", "rounds": a.rounds, "idle": med["idle"],
               "loaded": med["loaded"],
               "p99_loaded_over_idle": round(med["loaded"]["p99_us"] / med["idle"]["p99_us"], 2),
               "target": 5.0, "bad": sum(r["bad"] for r in rows)}
    print(json.dumps(summary), flush=True)
    if a.out:
        with open(a.out, "w") as f:
            for r in rows + [summary]:
                f.write(json.dumps(r) + "\n")
    return 1 if summary["bad"] else 0


if __name__ == "__main__":
    sys.exit(main())
