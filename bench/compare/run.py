"""Side-by-side benchmark: this repository's Mooncake against upstream Mooncake and Redis.

    build/bench/venv/bin/python bench/compare/run.py [--quick] [--systems ours-shm,ours-tcp,upstream,redis]

(`make bench-compare` / `make bench-compare QUICK=1` run bench/compare/setup.sh first.)

One workload, four systems, one run, interleaved cell by cell so that every system of a
cell sees the same machine load:
  ours-shm   our `mooncake` package (build/release/python), default same-host path (shm)
  ours-tcp   the same with MC_FORCE_TCP=1 (TCP over loopback)
  upstream   upstream's PyPI wheel (build/bench/venv-upstream), its own mooncake_master
             with the embedded HTTP metadata server, protocol tcp
  redis      Debian's redis-server 7 (persistence off) through redis-py with hiredis
Each Mooncake system is a master, a holder process contributing the pool's segment, a writer
and a reader process (bench/compare/driver.py under that system's interpreter); Redis is
redis-server with a writer and a reader. Every timed byte crosses a process boundary.

Cells: put / get (plain and, for Mooncake, zero-copy put_from / get_into with registered
buffers) at 4 KiB, 64 KiB, 1 MiB, 4 MiB; exists at 4 KiB; batch 1 and 32; concurrency
(threads in the driver) 1 and 4; then the KV-cache trace (bench/compare/driver.py
make_requests) at 256 KiB and 4 MiB blocks, then the transfer engines' own benchmarks
(ours and upstream's transfer_engine_bench, TCP loopback). Single-thread memcpy and one TCP
loopback stream are measured in the same run, before each value size's cells.

Output: a table on the terminal, build/bench/compare.json and PNG plots
build/bench/compare_*.png (bench/compare/plot.py); logs under build/bench/compare-logs/.
"""
import argparse
import ctypes
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BENCH = os.path.join(ROOT, "build", "bench")
VENV_PY = os.path.join(BENCH, "venv", "bin", "python")
VUP = os.path.join(BENCH, "venv-upstream")
VUP_PY = os.path.join(VUP, "bin", "python")
DRIVER = os.path.join(HERE, "driver.py")
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
SIZES = [4 * KiB, 64 * KiB, 1 * MiB, 4 * MiB]
SYSTEMS = ["ours-shm", "ours-tcp", "upstream", "redis"]
SEGMENT = 1 * GiB          # the pool: holder segment / redis maxmemory
LOCAL_BUFFER = 640 * MiB   # client staging (upstream's get_batch of 32 x 4 MiB x 4 threads)
TE_BLOCKS = [64 * KiB, 256 * KiB, 1 * MiB, 4 * MiB]
TE_BLOCKS_QUICK = [64 * KiB, 4 * MiB]
LEASE = "5000"             # ms, both masters (upstream default 10 s); read sets are removed with force


def human(n):
    return "%dK" % (n // KiB) if n < MiB else "%dM" % (n // MiB)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent():
    """preexec_fn: the child gets SIGTERM when the orchestrator dies (PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)


def wait_port(port, proc, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class Procs:
    """Every process this run started, stopped by pid (reverse order) at the end."""

    def __init__(self):
        self.procs = []

    def start(self, argv, log, **kw):
        f = open(log, "ab")
        p = subprocess.Popen(argv, stderr=f, preexec_fn=die_with_parent, **kw)
        f.close()
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(self.procs):
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []


class Driver:
    """A driver.py process: one JSON command in, one JSON line out."""

    def __init__(self, procs, py, args, env, log, pass_fds=()):
        self.p = procs.start([py, DRIVER] + args, log, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, env=env, text=True, pass_fds=pass_fds)
        line = self.p.stdout.readline()
        try:
            self.hello = json.loads(line)
        except ValueError:
            self.hello = {"ready": False, "error": "exited (%s): see %s" % (self.p.poll(), log)}

    def send(self, cmd):
        self.p.stdin.write(json.dumps(cmd) + "\n")
        self.p.stdin.flush()

    def recv(self):
        line = self.p.stdout.readline()
        if not line:
            return {"error": "driver exited (%s)" % self.p.poll()}
        return json.loads(line)

    def call(self, cmd):
        self.send(cmd)
        return self.recv()


class System:
    def __init__(self, name, procs, logdir):
        self.name, self.procs, self.logdir = name, procs, logdir
        self.kind = name.split("-")[0]
        self.error = None

    def log(self, what):
        return os.path.join(self.logdir, "%s-%s.log" % (self.name, what))

    def start(self, rel):
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        py = VENV_PY
        if self.kind == "ours":
            env["PYTHONPATH"] = os.path.join(rel, "python")
            if self.name == "ours-tcp":
                env["MC_FORCE_TCP"] = "1"
            master, meta = self.start_our_master(rel)
        elif self.kind == "upstream":
            py = VUP_PY
            master, meta = self.start_upstream_master()
        else:
            master, meta = self.start_redis(), ""
        if master is None:
            return False
        self.master, self.meta = master, meta
        common = ["--system", self.kind, "--master", master, "--metadata", meta,
                  "--local_buffer", str(LOCAL_BUFFER)]
        if self.kind != "redis":
            self.holder = Driver(self.procs, py, common + [
                "--role", "holder", "--name", "127.0.0.1:%d" % free_port(),
                "--segment", str(SEGMENT)], env, self.log("holder"))
            if not self.holder.hello.get("ready"):
                self.error = "holder: %s" % self.holder.hello.get("error")
                return False
        r, w = os.pipe()  # KV-cache trace: the writer tells the reader each request done
        self.writer = Driver(self.procs, py, common + [
            "--role", "writer", "--name", "127.0.0.1:%d" % free_port(), "--notify_fd", str(w)],
            env, self.log("writer"), pass_fds=(w,))
        self.reader = Driver(self.procs, py, common + [
            "--role", "reader", "--name", "127.0.0.1:%d" % free_port(), "--notify_fd", str(r)],
            env, self.log("reader"), pass_fds=(r,))
        os.close(r)
        os.close(w)
        for d, role in ((self.writer, "writer"), (self.reader, "reader")):
            if not d.hello.get("ready"):
                self.error = "%s: %s" % (role, d.hello.get("error"))
                return False
        return True

    def start_our_master(self, rel):
        p = self.procs.start([os.path.join(rel, "bin", "mooncake_master"), "--port", "0",
                              "--rpc_port", "0", "--metrics_port", "0",
                              "--enable_http_metadata_server=true",
                              "--http_metadata_server_port", "0",
                              "--http_metadata_server_host", "127.0.0.1",
                              "--rpc_address", "127.0.0.1", "--default_kv_lease_ttl", LEASE],
                             self.log("master"), stdout=subprocess.PIPE, text=True)
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
            self.error = "our mooncake_master did not start: see %s" % self.log("master")
            return None, None
        return rpc.replace("0.0.0.0", "127.0.0.1"), meta.replace("0.0.0.0", "127.0.0.1")

    def start_upstream_master(self):
        binary = upstream_master_path()
        rpc, http, metrics = free_port(), free_port(), free_port()
        p = self.procs.start([binary, "--rpc_port", str(rpc), "--rpc_address", "127.0.0.1",
                              "--enable_http_metadata_server=true",
                              "--http_metadata_server_port", str(http),
                              "--http_metadata_server_host", "127.0.0.1",
                              "--metrics_port", str(metrics), "--default_kv_lease_ttl", LEASE],
                             self.log("master"), stdout=subprocess.DEVNULL)
        if not (wait_port(rpc, p) and wait_port(http, p)):
            self.error = "upstream mooncake_master did not start: see %s" % self.log("master")
            return None, None
        return "127.0.0.1:%d" % rpc, "http://127.0.0.1:%d/metadata" % http

    def start_redis(self):
        port = free_port()
        p = self.procs.start(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--maxmemory", str(SEGMENT),
                              "--maxmemory-policy", "allkeys-lru", "--protected-mode", "no",
                              "--logfile", ""],
                             self.log("server"), stdout=subprocess.DEVNULL)
        if not wait_port(port, p):
            self.error = "redis-server did not start: see %s" % self.log("server")
            return None
        return "127.0.0.1:%d" % port


def upstream_master_path():
    d = subprocess.run([VUP_PY, "-c", "import mooncake, os; print(os.path.dirname(mooncake.__file__))"],
                       capture_output=True, text=True).stdout.strip()
    return os.path.join(d, "mooncake_master")


def check_upstream():
    """None when upstream's wheel can run here, else why not."""
    if not os.path.exists(VUP_PY):
        return "no venv at %s (bench/compare/setup.sh could not create it)" % VUP
    r = subprocess.run([VUP_PY, "-c", "import mooncake.store, mooncake.engine"],
                       capture_output=True, text=True)
    if r.returncode:
        last = (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1]
        return "import mooncake.store fails in %s: %s" % (VUP, last)
    r = subprocess.run([upstream_master_path(), "--help"], capture_output=True, text=True)
    if "error while loading shared libraries" in r.stderr:
        return "upstream mooncake_master: %s" % r.stderr.strip()
    return None


# ---- references measured in the same run ------------------------------------------------
def memcpy_gbps():
    """Single-thread memcpy: best of three copies of a 64 MiB buffer (numpy, one call)."""
    import numpy as np
    src = np.full(64 * MiB, 0x5A, dtype=np.uint8)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(4):
            np.copyto(dst, src)
        best = max(best, 4 * src.nbytes / (time.perf_counter() - t) / 1e9)
    return best


def loopback_gbps(seconds=0.3):
    """One TCP stream over 127.0.0.1 (1 MiB sends, a receiving thread)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    got = [0]

    def rx():
        c, _ = srv.accept()
        buf = bytearray(4 * MiB)
        while True:
            n = c.recv_into(buf)
            if not n:
                break
            got[0] += n
        c.close()

    t = threading.Thread(target=rx)
    t.start()
    s = socket.create_connection(srv.getsockname())
    data = b"\x5a" * MiB
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    t.join()
    el = time.perf_counter() - t0
    s.close()
    srv.close()
    return got[0] / el / 1e9


# ---- plan ---------------------------------------------------------------------------------
def plan_cells(quick):
    """Cells grouped by value size: (size, [put cells], [read cells])."""
    batches = [1, 32]
    concs = [1] if quick else [1, 4]
    groups = []
    for size in SIZES:
        puts, reads = [], []
        for form in ("plain", "zc"):
            for b in batches:
                for c in concs:
                    puts.append({"op": "put", "form": form, "size": size, "batch": b, "conc": c})
                    reads.append({"op": "get", "form": form, "size": size, "batch": b, "conc": c})
        if size == 4 * KiB:
            for b in batches:
                for c in concs:
                    reads.append({"op": "exists", "form": "plain", "size": size, "batch": b,
                                  "conc": c})
        groups.append((size, puts, reads))
    return groups


def supports(system, cell):
    return not (system == "redis" and cell["form"] == "zc")


def nkeys_for(size):
    return max(64, min(1024, 256 * MiB // size))


def round_keys_for(cell):
    return max(cell["batch"], min(4096, int(0.3 * SEGMENT) // (cell["conc"] * cell["size"])))


class Progress:
    def __init__(self, total):
        self.total, self.done, self.t0 = total, 0, time.monotonic()
        self.tty = sys.stderr.isatty()

    def step(self, what, n=1):
        self.done += n
        el = time.monotonic() - self.t0
        eta = el / self.done * (self.total - self.done) if self.done else 0
        width = 30
        fill = int(width * self.done / max(1, self.total))
        line = "[%s%s] %3d/%d %5.0fs eta %4.0fs  %s" % ("#" * fill, "." * (width - fill),
                                                     self.done, self.total, el, eta, what)
        if self.tty:
            sys.stderr.write("\r\033[K" + line[:150])
            if self.done >= self.total:
                sys.stderr.write("\n")
        elif self.done % 10 == 0 or self.done >= self.total:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def cell_label(c):
    op = {"put": "put" if c["form"] == "plain" else "put_from",
          "get": "get" if c["form"] == "plain" else "get_into",
          "exists": "exists"}[c["op"]]
    return "%-8s %4s b%-2d c%d" % (op, human(c["size"]), c["batch"], c["conc"])


# ---- transfer engines ----------------------------------------------------------------------
def te_compare(rel, procs, logdir, quick, upstream_ok, progress):
    """Ours vs upstream's transfer_engine_bench, TCP loopback, target and initiator processes."""
    blocks = TE_BLOCKS_QUICK if quick else TE_BLOCKS
    secs = 1 if quick else 3
    out = []
    bins = {"ours": os.path.join(rel, "bin", "transfer_engine_bench")}
    if upstream_ok:
        bins["upstream"] = os.path.join(os.path.dirname(upstream_master_path()),
                                        "transfer_engine_bench")
    for block in blocks:
        ref = {"memcpy_gbps": memcpy_gbps(), "loopback_gbps": loopback_gbps()}
        for who, binary in bins.items():
            for op in ("write", "read"):
                r = run_te(who, binary, rel, procs, logdir, block, op, secs)
                r.update(ref)
                r["ratio_to_memcpy"] = r.get("gbps", 0) / ref["memcpy_gbps"]
                out.append(r)
                progress.step("te %s %s %s" % (who, op, human(block)))
    return out


def run_te(who, binary, rel, procs, logdir, block, op, secs):
    """One target + one initiator run; metadata from our mooncake_http_metadata_server (both
    speak the same HTTP metadata protocol); upstream's figure is parsed from its log."""
    log = os.path.join(logdir, "te-%s.log" % who)
    env = dict(os.environ)
    env["MC_FORCE_TCP"] = "1"
    meta_p = procs.start([os.path.join(rel, "bin", "mooncake_http_metadata_server"), "--host",
                          "127.0.0.1", "--port", "0"], log, stdout=subprocess.PIPE, text=True)
    line = meta_p.stdout.readline()
    meta = "http://%s/metadata" % line.split()[-1]
    tname = "127.0.0.1:%d" % free_port()
    common = ["--metadata_server", meta, "--protocol", "tcp", "--buffer_size", str(256 * MiB)]
    res = {"system": who, "block_size": block, "operation": op, "threads": 2, "batch_size": 8}
    try:
        if who == "ours":
            tgt = procs.start([binary, "--mode", "target", "--local_server_name", tname] + common,
                              log, stdout=subprocess.PIPE, text=True, env=env)
            for line in tgt.stdout:
                if line.startswith("READY"):
                    break
            r = subprocess.run([binary, "--mode", "initiator", "--local_server_name",
                                "127.0.0.1:%d" % free_port(), "--segment_id", tname,
                                "--operation", op, "--block_size", str(block), "--batch_size",
                                "8", "--threads", "2", "--duration", str(secs), "--json"] + common,
                               capture_output=True, text=True, env=env, timeout=secs + 60)
            d = json.loads(r.stdout.strip().splitlines()[-1])
            res.update(gbps=d["gbps"], p50_us=d.get("p50_us"), ok=True)
        else:
            tgt = procs.start([binary, "--mode=target", "--local_server_name=" + tname,
                               "--metadata_server=" + meta, "--protocol=tcp",
                               "--buffer_size=%d" % (256 * MiB)], log, stdout=subprocess.DEVNULL,
                              env=env)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not segment_published(meta, tname):
                time.sleep(0.1)
            r = subprocess.run([binary, "--mode=initiator", "--local_server_name=127.0.0.1:%d"
                                % free_port(), "--segment_id=" + tname, "--metadata_server=" +
                                meta, "--protocol=tcp", "--operation=" + op,
                                "--block_size=%d" % block, "--batch_size=8", "--threads=2",
                                "--duration=%d" % secs, "--buffer_size=%d" % (256 * MiB)],
                               capture_output=True, text=True, env=env, timeout=secs + 60)
            text = r.stdout + r.stderr
            with open(log, "a") as f:
                f.write(text)
            m = re.search(r"throughput ([0-9.]+) GB/s", text)
            if not m:
                raise RuntimeError("no throughput line (rc %d), see %s" % (r.returncode, log))
            res.update(gbps=float(m.group(1)), ok=True)
        tgt.terminate()
        tgt.wait(10)
    except Exception as e:  # reported in the JSON and the table
        res.update(ok=False, error="%s: %s" % (type(e).__name__, e), gbps=0.0)
    meta_p.terminate()
    meta_p.wait(10)
    return res


def segment_published(meta, name):
    import urllib.parse
    import urllib.request
    try:
        url = meta + "?key=" + urllib.parse.quote("mooncake/ram/" + name, safe="")
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except Exception:
        return False


# ---- main ---------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer cells, shorter (~3 min)")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--duration", type=float, help="seconds per cell (quick 0.5, full 0.8), after a warm-up")
    ap.add_argument("--rel", default=os.path.join(ROOT, "build", "release"),
                    help="our release build (bin/ and python/)")
    ap.add_argument("--out", default=os.path.join(BENCH, "compare.json"))
    ap.add_argument("--reps", type=int, help="repetitions per cell (quick 1, full 3; median kept)")
    ap.add_argument("--ops", help="comma list of cell names to keep (put,put_from,get,get_into,"
                    "exists); default all")
    ap.add_argument("--conc", help="comma list of concurrencies to keep")
    ap.add_argument("--batch", help="comma list of batch sizes to keep")
    ap.add_argument("--sizes", help="comma list of value sizes in bytes (default all four)")
    ap.add_argument("--no-trace", action="store_true")
    ap.add_argument("--no-te", action="store_true")
    a = ap.parse_args()
    dur = a.duration or (0.5 if a.quick else 0.8)
    reps = a.reps or (1 if a.quick else 3)
    warm = 0.15 if a.quick else 0.3
    systems = [s for s in a.systems.split(",") if s]
    logdir = os.path.join(BENCH, "compare-logs")
    shutil.rmtree(logdir, ignore_errors=True)
    os.makedirs(logdir)

    notes = {}
    for need in (os.path.join(a.rel, "bin", "mooncake_master"),
                 os.path.join(a.rel, "python", "mooncake", "_core.abi3.so")):
        if not os.path.exists(need):
            sys.exit("bench-compare: %s missing: run `make build` first" % need)
    up_err = check_upstream() if "upstream" in systems else "not selected"
    if "upstream" in systems and up_err:
        notes["upstream"] = up_err
        print("bench-compare: upstream Mooncake cannot run here: %s; comparing the rest" % up_err,
              file=sys.stderr)
        systems.remove("upstream")
    if "redis" in systems and not shutil.which("redis-server"):
        notes["redis"] = "redis-server not installed"
        systems.remove("redis")

    procs = Procs()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    t_start = time.monotonic()
    report = {"bench": "compare", "quick": a.quick, "duration_s": dur, "reps": reps,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "machine": machine(), "systems": [], "notes": notes, "cells": [], "trace": [],
              "te": []}
    try:
        live = []
        for name in systems:
            s = System(name, procs, logdir)
            if s.start(a.rel):
                live.append(s)
            else:
                notes[name] = s.error
                print("bench-compare: %s not started: %s" % (name, s.error), file=sys.stderr)
        report["systems"] = [s.name for s in live]
        for s in live:  # touch each pool once (untimed)
            s.writer.call({"cmd": "warm", "bytes": int(0.8 * SEGMENT)})
        groups = plan_cells(a.quick)
        if a.sizes:
            groups = [g for g in groups if g[0] in {int(x) for x in a.sizes.split(",")}]

        def keep(c):
            return ((not a.ops or cell_label(c).split()[0] in a.ops.split(",")) and
                    (not a.conc or str(c["conc"]) in a.conc.split(",")) and
                    (not a.batch or str(c["batch"]) in a.batch.split(",")))
        groups = [(z, [c for c in p if keep(c)], [c for c in r if keep(c)]) for z, p, r in groups]
        trace_sizes = [1 * MiB] if a.quick else [256 * KiB, 4 * MiB]
        n_cells = reps * sum(sum(supports(s.name, c) for s in live for c in p + r)
                             for _, p, r in groups)
        n_te = 0 if a.no_te else len(TE_BLOCKS_QUICK if a.quick else TE_BLOCKS) * 2 * (
            1 + ("upstream" in report["systems"]))
        n_trace = 0 if a.no_trace else len(trace_sizes) * len(live)
        prog = Progress(n_cells + n_te + n_trace)
        for size, puts, reads in groups:
            ref = {"memcpy_gbps": memcpy_gbps(), "loopback_gbps": loopback_gbps()}
            for cell in puts:
                run_cell(live, cell, reps, lambda s, rep: (s.writer, dict(
                    cell, prefix="p%d-%d" % (len(report["cells"]), rep), duration=dur,
                    warmup=warm, round_keys=round_keys_for(cell))), ref, report, prog)
            nk = nkeys_for(size)
            for s in live:
                r = s.writer.call({"cmd": "fill", "size": size, "prefix": "r%d" % size,
                                   "nkeys": nk})
                if not r.get("ok"):
                    notes.setdefault(s.name + "-fill", []).append(r)
            for cell in reads:
                run_cell(live, cell, reps, lambda s, rep: (s.reader, dict(
                    cell, prefix="r%d" % size, nkeys=nk, duration=dur, warmup=warm)),
                    ref, report, prog)
            for s in live:
                s.writer.call({"cmd": "clear", "prefix": "r%d" % size, "nkeys": nk})
        if not a.no_trace:
            for bs in trace_sizes:
                ref = {"memcpy_gbps": memcpy_gbps(), "loopback_gbps": loopback_gbps()}
                for s in live:
                    report["trace"].append(run_trace(s, bs, a.quick, ref))
                    prog.step("trace %s %s" % (s.name, human(bs)))
        procs.stop_all()
        if not a.no_te:
            report["te"] = te_compare(a.rel, procs, logdir, a.quick,
                                      "upstream" in report["systems"], prog)
    finally:
        procs.stop_all()
    report["wall_s"] = time.monotonic() - t_start
    report["targets"] = targets(report)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(report, f, indent=1)
    print_table(report)
    try:
        import plot
        for p in plot.plot(report, os.path.dirname(a.out)):
            print("plot: %s" % os.path.relpath(p, ROOT))
    except Exception as e:  # the JSON and the table stand without the plots
        print("bench-compare: plots not written: %s" % e, file=sys.stderr)
    print("json: %s   (wall %.0f s)" % (os.path.relpath(a.out, ROOT), report["wall_s"]))
    return 0


def run_cell(live, cell, reps, make, ref, report, prog):
    """One cell on every system that supports it, `reps` times, the systems interleaved (and
    rotated each repetition) so that they share the machine's load; the row kept per system
    is the repetition with the median ops/s, the others are listed in it."""
    systems = [s for s in live if supports(s.name, cell)]
    got = {s.name: [] for s in systems}
    for rep in range(reps):
        k = rep % len(systems) if systems else 0
        for s in systems[k:] + systems[:k]:
            drv, cmd = make(s, rep)
            r = drv.call(dict(cmd, cmd="cell"))
            got[s.name].append(r)
            prog.step("%-8s %s" % (s.name, cell_label(cell)))
    for name, rs in got.items():
        ok = sorted((r for r in rs if "ops_per_s" in r), key=lambda r: r["ops_per_s"])
        r = ok[len(ok) // 2] if ok else rs[-1]
        row = {"system": name, "op": cell["op"], "form": cell["form"], "size": cell["size"],
               "batch": cell["batch"], "conc": cell["conc"], "duration_s": cmd["duration"],
               "reps_ops_per_s": [x.get("ops_per_s") for x in rs]}
        row.update(r)
        row.update(ref)
        if "gbps" in r:
            row["ratio_to_memcpy"] = r["gbps"] / ref["memcpy_gbps"]
        report["cells"].append(row)


def run_trace(s, block_size, quick, ref):
    # about 14 blocks a request: bound the bytes a run moves (~1.5 GB quick, ~5 GB full)
    per_req = 14 * block_size
    n = max(40, min(400, (1500 if quick else 5000) * 1000 * 1000 // per_req))
    cmd = {"cmd": "trace", "seed": 7, "prefixes": 12, "requests": n,
           "block_size": block_size, "prefix": "t"}
    s.writer.send(cmd)
    s.reader.send(cmd)
    w, r = s.writer.recv(), s.reader.recv()
    return {"system": s.name, "block_size": block_size, "requests": n,
            "prefill": w, "decode": r, **ref}


def machine():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GiB
    return {"cpus": os.cpu_count(), "cpu": cpu, "mem_gib": round(mem, 1),
            "kernel": platform.release(), "load_avg_start": os.getloadavg()}


# ---- targets (issue 7) --------------------------------------------------------------------
def best(report, system, op, size, metric):
    """The system's best figure for (op, size) over forms, batch and concurrency."""
    vals = [c.get(metric, 0) for c in report["cells"] if c["system"] == system and
            c["op"] == op and c["size"] == size and not c.get("errors") and c.get("verified", True)]
    return max(vals) if vals else None


def like_for_like(report, a_sys, b_sys, op, size, metric):
    """Ratios a/b over every cell both ran with the same form, batch and concurrency."""
    idx = {(c["op"], c["form"], c["size"], c["batch"], c["conc"]): c for c in report["cells"]
           if c["system"] == b_sys}
    out = []
    for c in report["cells"]:
        if c["system"] == a_sys and c["op"] == op and c["size"] == size:
            o = idx.get((c["op"], c["form"], c["size"], c["batch"], c["conc"]))
            if o and o.get(metric):
                out.append(c.get(metric, 0) / o[metric])
    return out


def targets(report):
    """Each target of issue 7 as best-vs-best ratios per (op, size), with the like-for-like
    range (same form, batch, concurrency) next to it."""
    spec = [("ours-tcp vs upstream, GB/s, >= 64 KiB", "ours-tcp", "upstream", ["put", "get"],
             SIZES[1:], "gbps", 1.5),
            ("ours-tcp vs upstream, ops/s, 4 KiB", "ours-tcp", "upstream",
             ["put", "get", "exists"], SIZES[:1], "ops_per_s", 2.0),
            ("ours-shm vs upstream, GB/s, >= 1 MiB", "ours-shm", "upstream", ["put", "get"],
             SIZES[2:], "gbps", 3.0),
            ("ours-shm vs redis, GB/s, >= 1 MiB", "ours-shm", "redis", ["put", "get"], SIZES[2:],
             "gbps", 1.5),
            ("ours-shm vs redis, ops/s, 4 KiB", "ours-shm", "redis", ["put", "get", "exists"],
             SIZES[:1], "ops_per_s", 1.0)]
    out = []
    for title, a_sys, b_sys, ops, sizes, metric, need in spec:
        if a_sys not in report["systems"] or b_sys not in report["systems"]:
            out.append({"target": title, "need": need, "status": "not run"})
            continue
        rows = []
        for op in ops:
            for size in sizes:
                x, y = best(report, a_sys, op, size, metric), best(report, b_sys, op, size, metric)
                if x is None or not y:
                    continue
                l4l = like_for_like(report, a_sys, b_sys, op, size, metric)
                rows.append({"op": op, "size": size, "ours": x, "other": y, "ratio": x / y,
                             "like_for_like_min": min(l4l) if l4l else None,
                             "like_for_like_max": max(l4l) if l4l else None,
                             "met": x / y >= need})
        status = "met" if all(r["met"] for r in rows) else "missed"
        out.append({"target": title, "need": need, "rows": rows,
                    "status": status if rows else "not run"})
    return out


def fmt_rate(c):
    if c.get("error"):
        return "ERR"
    if c["size"] <= 4 * KiB or c["op"] == "exists":
        return "%7.0f/s" % c["ops_per_s"]
    return "%6.2fGB/s" % c["gbps"]


def print_table(report):
    systems = report["systems"]
    print()
    print("bench-compare %s  (%s; %d cpus; cell %.1f s)" % (
        report["date"], "quick" if report["quick"] else "full", report["machine"]["cpus"],
        report["duration_s"]))
    for k, v in report["notes"].items():
        print("note: %s: %s" % (k, v))
    hdr = "%-24s" % "cell" + "".join("%22s" % s for s in systems)
    print(hdr + "   (rate | p99 us per call; * = errors or unverified)")
    seen = {}
    for c in report["cells"]:
        key = (c["op"], c["form"], c["size"], c["batch"], c["conc"])
        seen.setdefault(key, {})[c["system"]] = c
    for key, row in seen.items():
        op, form, size, b, conc = key
        line = "%-24s" % cell_label({"op": op, "form": form, "size": size, "batch": b,
                                     "conc": conc})
        for s in systems:
            c = row.get(s)
            if not c:
                line += "%22s" % "-"
                continue
            bad = "*" if c.get("errors") or not c.get("verified", True) or c.get("error") else " "
            line += "%11s|%8.0f%s" % (fmt_rate(c), c.get("p99_us", 0), bad)
        m = next(iter(row.values()))
        line += "   memcpy %.1f lo %.1f" % (m["memcpy_gbps"], m["loopback_gbps"])
        print(line)
    if report["trace"]:
        print("\nKV-cache trace (prefill: prefix hit rate; decode: time to load a request's blocks)")
        for t in report["trace"]:
            p, d = t["prefill"], t["decode"]
            if "error" in p or "error" in d:
                print("  %-9s %4s  error: %s %s" % (t["system"], human(t["block_size"]),
                                                  p.get("error", ""), d.get("error", "")))
                continue
            print("  %-9s %4s  hit %5.1f%%  load p50 %7.0f us p99 %7.0f us  %5.2f GB/s  "
                  "found %5.1f%%%s" % (t["system"], human(t["block_size"]), 100 * p["hit_rate"],
                                       d["p50_us"], d["p99_us"], d["gbps"], 100 * d["hit_rate"],
                                       "" if d["verified"] and p["verified"] else " UNVERIFIED"))
    if report["te"]:
        print("\ntransfer_engine_bench, TCP loopback, 2 threads, batch 8")
        for t in report["te"]:
            print("  %-9s %-5s %4s  %6.2f GB/s  x memcpy %.2f  x loopback %.2f%s" % (
                t["system"], t["operation"], human(t["block_size"]), t["gbps"],
                t["ratio_to_memcpy"], t["gbps"] / t["loopback_gbps"],
                "" if t.get("ok") else "  error: %s" % t.get("error")))
    print("\ntargets (best vs best per op and size; like-for-like range in brackets)")
    for t in report["targets"]:
        print("  %-40s need %.1fx: %s" % (t["target"], t["need"], t["status"]))
        for r in t.get("rows", []):
            l4l = ("[%.2f-%.2f]" % (r["like_for_like_min"], r["like_for_like_max"])
                   if r["like_for_like_min"] is not None else "")
            print("      %-7s %4s  %6.2fx %s %s" % (r["op"], human(r["size"]), r["ratio"], l4l,
                                                 "" if r["met"] else "MISSED"))


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    sys.exit(main())
