#!/usr/bin/env python3
"""master_recover_bench: the time from a mooncake_master start to a complete
index after a kill -9, at N objects (default 10^6), and the master's RSS
before the kill and after the recovery.

It starts the master (--persist_dir in a temp dir, the release build by
default), mounts one segment through the wire protocol (tests/py/master/
mp_wire.py; the master never touches segment bytes, so the range needs no
memory), fills it with N objects of 4 KiB by batch puts, kills the master
(SIGKILL), starts it again with the same flags and directory, remounts the
segment as its owner would after NEED_REMOUNT, and polls /metrics until
master_key_count is N. The physical reference of the same run: reading the
persistence files from the page cache (GB/s). One JSON object on stdout.

  master_recover_bench.py [--bin DIR] [--objects N] [--batch N]
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "py", "master"))
from mp_wire import Conn  # noqa: E402

CL, SEG = (1, 1), (2, 2)
BASE, SIZE = 0x100000000, 1 << 40


def start(exe, pdir, port=0, metrics=0):
    p = subprocess.Popen([exe, "--port", str(port), "--rpc_address", "127.0.0.1",
                          "--metrics_port", str(metrics), "--metrics_host", "127.0.0.1",
                          "--persist_dir", pdir, "--client_ttl", "60",
                          "--eviction_high_watermark_ratio", "1.0"],
                         stdout=subprocess.PIPE, stderr=open(os.path.join(os.path.dirname(pdir), "err"), "ab"),
                         text=True)
    rpc = adm = None
    for line in p.stdout:
        m = re.search(r"rpc listening on \S+:(\d+)", line)
        if m:
            rpc = int(m.group(1))
        m = re.search(r"metrics listening on \S+:(\d+)", line)
        if m:
            adm = int(m.group(1))
        if line.strip().endswith("ready"):
            break
    if not rpc:
        raise SystemExit("master did not start: see %s" % os.path.join(pdir, "..", "err"))
    return p, rpc, adm


def key_count(adm):
    body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % adm, timeout=10).read().decode()
    m = re.search(r"^master_key_count (\d+)", body, re.M)
    return int(m.group(1)) if m else 0


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "release", "bin"))
    ap.add_argument("--objects", type=int, default=1000000)
    ap.add_argument("--batch", type=int, default=1000)
    a = ap.parse_args()
    exe = os.path.join(a.bin, "mooncake_master")
    tmp = tempfile.mkdtemp(prefix="mc_recover_bench.")
    pdir = os.path.join(tmp, "persist")
    try:
        p, rpc, adm = start(exe, pdir)
        c = Conn("127.0.0.1:%d" % rpc, timeout=60)
        c.ready()
        assert c.mount(CL, SEG, "bench:1", BASE, SIZE) == 0
        t = time.monotonic()
        for i in range(0, a.objects, a.batch):
            keys = ["bench/key/%012d" % j for j in range(i, min(i + a.batch, a.objects))]
            rcs = c.batch_put(CL, keys, 4096)
            assert all(r == 0 for r in rcs), rcs[:5]
            if i % (50 * a.batch) == 0:
                c.ping(CL)
        fill_s = time.monotonic() - t
        assert key_count(adm) == a.objects
        rss_before = rss_kib(p.pid)
        c.close()
        p.send_signal(signal.SIGKILL)
        p.wait()
        files = [os.path.join(pdir, f) for f in os.listdir(pdir) if f[0] in "ls"]
        nbytes = sum(os.path.getsize(f) for f in files)
        t = time.monotonic()
        for f in files:  # the files are in the page cache: the reference read
            with open(f, "rb") as fh:
                while fh.read(1 << 24):
                    pass
        read_gbps = nbytes / max(time.monotonic() - t, 1e-9) / 1e9

        t0 = time.monotonic()
        p, rpc2, adm2 = start(exe, pdir, rpc, adm)
        t_ready = time.monotonic()
        c = Conn("127.0.0.1:%d" % rpc2, timeout=60)
        c.ready()
        assert c.ping(CL) == 2  # NEED_REMOUNT
        assert c.remount(CL, [(SEG, "bench:1", BASE, SIZE)]) == 0
        t_remount = time.monotonic()
        while key_count(adm2) < a.objects:
            time.sleep(0.01)
        t_done = time.monotonic()
        rss_after = rss_kib(p.pid)
        c.close()
        p.terminate()
        p.wait()
        print(json.dumps({
            "bench": "master_recover", "objects": a.objects, "value_bytes": 4096,
            "fill_s": round(fill_s, 2), "persist_bytes": nbytes,
            "start_to_ready_s": round(t_ready - t0, 3),
            "start_to_remounted_s": round(t_remount - t0, 3),
            "start_to_complete_index_s": round(t_done - t0, 3),
            "rss_before_kill_kib": rss_before, "rss_after_recovery_kib": rss_after,
            "ref_page_cache_read_gbps": round(read_gbps, 2),
        }))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
