#!/usr/bin/env python3
"""Soak of every mooncake-c daemon: mixed load with faults for --seconds,
seeded (a run is reproduced from its --seed), then checks.

    soak.py --seconds N --seed S --bin-dir DIR [--out FILE.json] [--no-rss]
            [--workers 3] [--faults KIND,..|none] [--log-dir DIR] [--keep-logs]

It starts, on free loopback ports, one of each daemon of DIR (a build's bin/;
the `mooncake` package is taken from DIR/../python):
  metasrv   mooncake_http_metadata_server (the stores' transfer-engine metadata)
  master    mooncake_master --enable_http_metadata_server (embedded metadata)
  store0-2  mooncake_client, 96 MiB segments each (the pool is smaller than
            the workers' data, so the master evicts all the time)
  proxy     mooncake_proxy in toy mode over 2 prefill + 2 decode fake backends
and a few store workers (soak_worker.py: put/get/remove/exist of 4 KiB..8 MiB,
each read checked byte for byte). The soak process itself drives metadata
GET/PUT/DELETE on both metadata servers (checked against a model), master
admin GETs, proxy completions (streamed or not, checked byte for byte) and
liveness probes of every listener, and injects faults on a seeded schedule:
kill -9 and restart of store2 and of a worker, bad / garbage / truncated
frames to the master RPC port and to a store's transfer-engine port, bursts
of 200 idle connections to every listener, slow-drip HTTP requests, and a
fake backend that answers 500, stalls, or cuts its stream.

Each daemon's RSS (VmRSS) is sampled every second. After the warm-up (the
first 20 % of the run) the median of the first window (5 % of the run, at
least 3 s) is compared with the median of the last window: growth must be
<= 10 % (not checked with --no-rss, as under ASan, whose quarantine grows).
Checks: each daemon alive and answering at the end, wrong bytes 0, each
worker's last round trip good, every fault kind injected, no sanitizer report
in any stderr, RSS flat, each daemon exits 0 on SIGTERM. Prints a table and
"N passed, N failed", writes --out (JSON), exits 1 on any failure. Every
child runs in its own process group and is killed at exit, on a failure, on
SIGTERM/SIGINT, and at the watchdog (--seconds + 300 s)."""

import argparse
import json
import os
import random
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "py", "proxy"))

import soak_load as L  # noqa: E402
import soak_procs as P  # noqa: E402
from proxy_fakes import FakeOpenAI  # noqa: E402

MIB = 1 << 20
SEGMENT = "96MB"
DAEMONS = ["metasrv", "master", "store0", "store1", "store2", "proxy"]
VICTIM = "store2"  # the store killed and restarted; the others keep one RSS series
FAULTS = ["kill_store", "kill_worker", "rpc_garbage", "te_garbage", "idle_burst", "slow_drip",
          "backend_fault"]
IDLE_CONNS = 200


class Interrupted(Exception):
    pass


class Slot:
    """A daemon or worker by name: its current Proc and all past incarnations."""

    def __init__(self, name):
        self.name = name
        self.proc = None
        self.past = []
        self.info = {}
        self.restarts = 0

    def set(self, proc):
        if self.proc is not None:
            self.past.append(self.proc)
            self.restarts += 1
        self.proc = proc

    def all(self):
        return self.past + ([self.proc] if self.proc else [])


class Soak:
    def __init__(self, args):
        self.a = args
        self.bin = os.path.abspath(args.bin_dir)
        self.py_dir = os.path.join(os.path.dirname(self.bin), "python")
        self.rng = random.Random(args.seed)
        self.logdir = args.log_dir or tempfile.mkdtemp(prefix="mc-soak-")
        os.makedirs(self.logdir, exist_ok=True)
        self.slots = {n: Slot(n) for n in DAEMONS}
        self.workers = [Slot("worker%d" % i) for i in range(args.workers)]
        self.stats = L.Stats()
        self.stop = threading.Event()
        self.bfaults = L.BackendFaults()
        self.rss = {n: [] for n in DAEMONS}  # (t since load start, incarnation, kB)
        self.faultlog = []
        self.gauges = []  # master index gauges every 5 s
        self.wlock = threading.Lock()
        self.wtotal = {"ops": 0, "errors": 0, "wrong": 0, "hits": 0, "misses": 0}
        self.wcodes = {}
        self.wrong_lines = []
        self.t0 = None
        self.threads = []

    # ------------------------------------------------------------ processes
    def _errpath(self, name):
        return os.path.join(self.logdir, "%s.%d.err" % (name, time.monotonic_ns()))

    def _daemon(self, name, argv, ready, timeout=60):
        exe = os.path.join(self.bin, argv[0])
        if not os.path.exists(exe):
            raise RuntimeError("%s not built at %s" % (argv[0], exe))
        return P.Proc(name, [exe] + argv[1:], P.daemon_env(), self._errpath(name), ready,
                      timeout=timeout)

    def start_metasrv(self):
        p = self._daemon("metasrv", ["mooncake_http_metadata_server", "--port", "0", "--host",
                                     "127.0.0.1"], lambda l: l.startswith("listening on"))
        s = self.slots["metasrv"]
        s.set(p)
        s.info["http"] = P.find(p.lines, r"listening on (\S+)")

    def start_master(self):
        p = self._daemon("master", [
            "mooncake_master", "--port", "0", "--rpc_port", "0", "--rpc_address", "127.0.0.1",
            "--metrics_port", "0", "--metrics_host", "127.0.0.1",
            "--enable_http_metadata_server=true", "--http_metadata_server_port", "0",
            "--http_metadata_server_host", "127.0.0.1", "--default_kv_lease_ttl", "500",
            "--client_ttl", "5"], lambda l: l.endswith("mooncake_master: ready"))
        s = self.slots["master"]
        s.set(p)
        s.info["rpc"] = P.find(p.lines, r"rpc listening on (\S+)")
        s.info["meta"] = P.find(p.lines, r"http metadata server listening on (\S+)")
        s.info["admin"] = "127.0.0.1:" + P.find(p.lines, r"metrics listening on \S+:(\d+)")

    def start_store(self, name):
        m = self.slots["master"].info
        last = None
        for _ in range(5):  # a restarted store may draw a port still held: try again
            try:
                p = self._daemon(name, [
                    "mooncake_client", "--host=127.0.0.1",
                    "--metadata_server", "http://%s/metadata" % self.slots["metasrv"].info["http"],
                    "--master_server_address", m["rpc"], "--port", "0",
                    "--global_segment_size", SEGMENT], lambda l: l.endswith("ready"))
                break
            except RuntimeError as e:
                last = e
        else:
            raise last
        s = self.slots[name]
        s.set(p)
        seg = P.find(p.lines, r"store (\S+) mounted")
        # The engine's listener is the rpc_port of its mooncake/rpc_meta record.
        st, body = L.http_req(self.slots["metasrv"].info["http"], "GET",
                              "/metadata?key=mooncake/rpc_meta/" + seg)
        if st != 200:
            raise RuntimeError("%s: no rpc_meta record for %s (%d)" % (name, seg, st))
        s.info["te"] = "127.0.0.1:%d" % json.loads(body)["rpc_port"]
        s.info["segment"] = seg
        s.info["http"] = "127.0.0.1:" + P.find(p.lines, r"dummy clients listening on \S+:(\d+)")

    def start_proxy(self):
        self.prefill = [FakeOpenAI("P%d" % i) for i in range(2)]
        self.decode = [FakeOpenAI("D%d" % i) for i in range(2)]
        for f in self.prefill:
            f.kv_params = {"remote_engine_id": "e-%s" % f.name, "remote_block_ids": [1, 2],
                           "remote_host": "127.0.0.1", "remote_port": 1}
        argv = ["mooncake_proxy", "--host", "127.0.0.1", "--port", "0",
                "--health-interval-ms", "500", "--prefiller-hosts", "127.0.0.1", "127.0.0.1",
                "--prefiller-ports"] + [str(f.port) for f in self.prefill] + [
                "--decoder-hosts", "127.0.0.1", "127.0.0.1",
                "--decoder-ports"] + [str(f.port) for f in self.decode]
        p = self._daemon("proxy", argv, lambda l: l.startswith("listening on http://"))
        s = self.slots["proxy"]
        s.set(p)
        s.info["http"] = P.find(p.lines, r"listening on http://(\S+)")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # readiness: every backend healthy
            st, body = L.http_req(s.info["http"], "GET", "/status")
            j = json.loads(body) if st == 200 else {}
            if j.get("ready") and all(i.get("healthy") for i in j["prefill"] + j["decode"]):
                return
            time.sleep(0.05)
        raise RuntimeError("proxy backends never healthy: %s" % body[:500])

    def start_worker(self, i):
        w = self.workers[i]
        inc = len(w.all())
        cfg = {"rpc": self.slots["master"].info["rpc"],
               "meta": "http://%s/metadata" % self.slots["metasrv"].info["http"],
               "seed": self.a.seed, "id": i, "inc": inc, "keys": 160,
               "seconds": self.a.seconds + 60, "pace_s": 0.02}
        state = {"stats": {}, "final": None}

        def on_line(line):
            word, _, rest = line.partition(" ")
            if word in ("stats", "final"):
                try:
                    state["stats"] = json.loads(rest)
                except ValueError:
                    return
                if word == "final":
                    state["final"] = state["stats"].get("final_ok")
            elif word == "wrong":
                with self.wlock:
                    self.wrong_lines.append("%s.%d %s" % (w.name, inc, rest))

        p = P.Proc(w.name, [sys.executable, os.path.join(HERE, "soak_worker.py"),
                            json.dumps(cfg)], P.worker_env(self.py_dir), self._errpath(w.name),
                   lambda l: l == "ready", on_line=on_line, timeout=120)
        p.state = state
        w.set(p)

    def fold_worker(self, p):
        """Adds an ended incarnation's last counters to the totals."""
        st = p.state["stats"]
        with self.wlock:
            for k in self.wtotal:
                self.wtotal[k] += st.get(k, 0)
            for k, v in st.get("codes", {}).items():
                self.wcodes[k] = self.wcodes.get(k, 0) + v

    def start_all(self):
        self.start_metasrv()
        self.start_master()
        for n in ("store0", "store1", "store2"):
            self.start_store(n)
        self.start_proxy()
        for i in range(len(self.workers)):
            self.start_worker(i)

    # ------------------------------------------------------------ probes
    def probes(self, name):
        """(what, fn) pairs that must answer for daemon `name` to count as answering."""
        i = self.slots[name].info
        if name == "metasrv":
            return [("health", lambda: L.http_req(i["http"], "GET", "/health")[0] == 200),
                    ("put/get", lambda: self.meta_roundtrip(i["http"]))]
        if name == "master":
            return [("rpc", lambda: L.rpc_service_ready(i["rpc"])),
                    ("admin", lambda: L.http_req(i["admin"], "GET", "/health")[0] == 200),
                    ("metadata", lambda: self.meta_roundtrip(i["meta"]))]
        if name.startswith("store"):
            return [("te", lambda: L.te_probe(i["te"])),
                    ("http", lambda: L.http_req(i["http"], "GET", "/health")[0] == 200)]
        return [("completion", lambda: L.proxy_completion(i["http"], self.decode, False)[0]),
                ("stream", lambda: L.proxy_completion(i["http"], self.decode, True)[0])]

    def meta_roundtrip(self, addr):
        k = "/metadata?key=soak/probe/%d" % self.rng.randrange(1 << 30)
        body = b'{"probe": %d}' % self.rng.randrange(1 << 30)
        ok = L.http_req(addr, "PUT", k, body)[0] == 200 and L.http_req(addr, "GET", k) == (200,
                                                                                         body)
        return ok and L.http_req(addr, "DELETE", k)[0] == 200

    def answering(self, name):
        bad = []
        for what, fn in self.probes(name):
            try:
                if not fn():
                    bad.append(what)
            except Exception as e:  # noqa: BLE001 - any failure is "not answering"
                bad.append("%s: %r" % (what, e))
        return bad

    def listeners(self):
        """(name, addr, check) for every listener of every daemon."""
        out = []
        for name in DAEMONS:
            i = self.slots[name].info
            for key in ("http", "rpc", "meta", "admin", "te"):
                if key not in i:
                    continue
                addr = i[key]
                if key == "rpc":
                    chk = (lambda a: lambda: L.rpc_service_ready(a))(addr)
                elif key == "te":
                    chk = (lambda a: lambda: L.te_probe(a))(addr)
                else:
                    path = "/status" if name == "proxy" else "/health"
                    chk = (lambda a, pth: lambda: L.http_req(a, "GET", pth)[0] == 200)(addr, path)
                out.append(("%s.%s" % (name, key), addr, chk))
        return out

    # ------------------------------------------------------------ load
    def master_gauges(self, t):
        """Index size of the master (keys, segments, clients), to tell state from leaks."""
        try:
            st, body = L.http_req(self.slots["master"].info["admin"], "GET", "/metrics", timeout=5)
        except (OSError, L.http.client.HTTPException):
            return
        g = {"t": round(t, 1)}
        for line in body.decode(errors="replace").splitlines():
            for k in ("master_key_count", "master_segment_count", "master_active_clients",
                      "master_allocated_bytes"):
                if line.startswith(k + " "):
                    g[k[7:]] = int(line.split()[1])
        self.gauges.append(g)

    def rss_sampler(self):
        while not self.stop.is_set():
            t = time.monotonic() - self.t0
            if len(self.gauges) <= t / 5:
                self.master_gauges(t)
            for n in DAEMONS:
                s = self.slots[n]
                kb = s.proc.rss_kb() if s.proc else None
                if kb:
                    self.rss[n].append((round(t, 1), s.restarts, kb))
            self.stop.wait(1.0)

    def _thread(self, fn, *a):
        t = threading.Thread(target=fn, args=a, daemon=True)
        t.start()
        self.threads.append(t)

    def start_load(self):
        sub = lambda tag: random.Random("%s-%s" % (self.a.seed, tag))  # noqa: E731
        m = self.slots["master"].info
        self._thread(L.meta_load, self.stop, self.stats, "metasrv",
                     self.slots["metasrv"].info["http"], sub("meta0"))
        self._thread(L.meta_load, self.stop, self.stats, "master", m["meta"], sub("meta1"))
        self._thread(L.admin_load, self.stop, self.stats, "master", m["admin"], sub("admin"))
        self._thread(L.proxy_load, self.stop, self.stats, "proxy",
                     self.slots["proxy"].info["http"], self.decode, self.bfaults, sub("proxy"))
        self._thread(L.probe_load, self.stop, self.stats, lambda: [
            (n, fn) for n in ("store0", "store1", "store2") if self.slots[n].proc.alive()
            for _, fn in self.probes(n)], 1.0)
        self._thread(self.rss_sampler)

    # ------------------------------------------------------------ faults
    def schedule(self):
        """[(t, kind)]: each kind once, spread over the first 70 % of the run, idle
        bursts every 9 s during the warm-up, then more at random (one every 3..9 s)
        until 85 %; the tail runs fault-free."""
        n = self.a.seconds
        kinds = [k for k in FAULTS if k in self.a.faults]
        if not kinds:
            return []
        self.rng.shuffle(kinds)
        ev = [(0.05 * n + 0.65 * n * j / len(kinds), k) for j, k in enumerate(kinds)]
        t = 0.05 * n
        if "idle_burst" in kinds:
            # The warm-up primes the allocators: libmicrohttpd takes a 32 KiB pool per
            # connection and glibc keeps each thread arena's high-water mark, so an MHD
            # daemon's RSS steps up with each of its first ~10 bursts of 200 idle
            # connections and then stays flat. The bursts during the warm-up bring every
            # listener to that plateau before the first RSS window.
            t = 0.02 * n
            while t < 0.2 * n - 10:
                ev.append((t, "idle_burst"))
                t += 9
            t = 0.05 * n
        weight = {"kill_store": 1, "kill_worker": 1, "idle_burst": 1}
        while True:
            t += self.rng.uniform(3, 9)
            if t > 0.85 * n:
                break
            ev.append((t, self.rng.choices(kinds, [weight.get(k, 3) for k in kinds])[0]))
        return sorted(ev)

    def fault_runner(self, events):
        drips = []
        for t, kind in events:
            while time.monotonic() - self.t0 < t:
                if self.stop.wait(0.1):
                    return
            start = time.monotonic()
            try:
                detail = getattr(self, "f_" + kind)(drips)
                ok = True
            except Exception as e:  # noqa: BLE001 - recorded, then the run goes on
                detail, ok = "exception %r" % e, False
            self.faultlog.append({"t": round(start - self.t0, 1), "kind": kind, "ok": ok,
                                  "s": round(time.monotonic() - start, 2), "detail": detail})
        for d in drips:
            d.join(30)

    def f_kill_store(self, _):
        s = self.slots[VICTIM]
        old = s.proc
        old.kill()
        self.stop.wait(self.rng.uniform(0.2, 3.0))
        self.start_store(VICTIM)
        return "pid %d killed, restarted as pid %d (%s)" % (old.pid, s.proc.pid, s.info["te"])

    def f_kill_worker(self, _):
        i = self.rng.randrange(len(self.workers))
        w = self.workers[i]
        old = w.proc
        old.kill()
        self.fold_worker(old)
        self.start_worker(i)
        return "%s pid %d killed, restarted as pid %d" % (w.name, old.pid, w.proc.pid)

    def f_rpc_garbage(self, _):
        addr = self.slots["master"].info["rpc"]
        frames = self.rng.sample(L.bad_frames_rpc(self.rng), 5)
        stuck = L.send_bad(addr, frames, self.rng)
        ok = L.rpc_service_ready(addr)
        self.stats.add("master", 1, 0 if ok and not stuck else 1,
                       note=None if ok and not stuck else "after bad frames: stuck %d, ready %s"
                       % (stuck, ok))
        return "%d frames, %d not closed by the master, then SERVICE_READY %s" % (
            len(frames), stuck, ok)

    def f_te_garbage(self, _):
        name = self.rng.choice(["store0", "store1", "store2"])
        addr = self.slots[name].info["te"]
        frames = self.rng.sample(L.bad_frames_te(self.rng), 5)
        stuck = L.send_bad(addr, frames, self.rng)
        ok = L.te_probe(addr)
        self.stats.add(name, 1, 0 if ok else 1, note=None if ok else "no PROBE after bad frames")
        return "%s: %d frames, %d left open, then PROBE %s" % (name, len(frames), stuck, ok)

    def f_idle_burst(self, _):
        res = []
        for name, addr, chk in self.listeners():
            if name.startswith(VICTIM):
                continue  # may be restarting; its own faults cover it
            n, ok = L.idle_burst(addr, IDLE_CONNS, 0.5, chk)
            target = name.split(".")[0]
            self.stats.add(target, 1, 0 if ok else 1,
                           note=None if ok else "%s: no answer under %d idle connections"
                           % (name, n))
            res.append("%s %d%s" % (name, n, "" if ok else " NOT ANSWERING"))
        return ", ".join(res)

    def f_slow_drip(self, drips):
        drips[:] = [d for d in drips if d.is_alive()]
        if len(drips) >= 3:
            return "skipped: 3 drips in flight"
        http = [(n, a) for n, a, _ in self.listeners()
                if n.rsplit(".", 1)[1] in ("http", "meta", "admin") and not n.startswith(VICTIM)]
        name, addr = self.rng.choice(http)
        path = "/status" if name.startswith("proxy") else "/health"
        req = ("GET %s HTTP/1.1\r\nHost: x\r\nUser-Agent: soak-drip\r\n\r\n" % path).encode()
        gap = self.rng.uniform(0.05, 0.15)
        t = threading.Thread(target=L.slow_drip, args=(addr, req, gap, self.stop), daemon=True)
        t.start()
        drips.append(t)
        return "%s: %d bytes, one per %.0f ms" % (name, len(req), gap * 1000)

    def f_backend_fault(self, _):
        f = self.rng.choice(self.prefill + self.decode)
        mode = self.rng.choice(["status500", "stall", "cut"])
        dur = self.rng.uniform(2, 5)
        self.bfaults.begin()
        try:
            if mode == "status500":
                f.status = 500
            elif mode == "stall":
                f.delay = 3.0
            else:
                f.kill_after = 1
            self.stop.wait(dur)
        finally:
            f.status, f.delay, f.kill_after = 200, 0.0, None
            self.bfaults.end()
        return "%s %s for %.1f s" % (f.name, mode, dur)

    # ------------------------------------------------------------ report
    def rss_windows(self, name):
        """(start median kB, end median kB) or None when the series is too short."""
        n = self.a.seconds
        w = max(3.0, 0.05 * n)
        warm = 0.2 * n
        ser = self.rss[name]
        inc = self.slots[name].restarts
        cur = [(t, kb) for t, i, kb in ser if i == inc]
        first = [kb for t, kb in cur if warm <= t < warm + w]
        last = [kb for t, kb in cur if n - w <= t <= n]
        if len(first) < 2 or len(last) < 2:
            return None
        return statistics.median(first), statistics.median(last)

    def run(self):
        self.start_all()
        print("soak: seed %d, %d s, logs in %s" % (self.a.seed, self.a.seconds, self.logdir),
              flush=True)
        for n in DAEMONS:
            s = self.slots[n]
            print("  %-8s pid %-7d %s" % (n, s.proc.pid, " ".join(
                "%s=%s" % kv for kv in sorted(s.info.items()))), flush=True)
        events = self.schedule()
        self.t0 = time.monotonic()
        self.start_load()
        fr = threading.Thread(target=self.fault_runner, args=(events,), daemon=True)
        fr.start()
        end = self.t0 + self.a.seconds
        while time.monotonic() < end:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
        self.stop.set()
        fr.join(120)
        for t in self.threads:
            t.join(30)
        return self.finish(events)

    def finish(self, events):
        checks = []

        def check(name, ok, detail=""):
            checks.append({"check": name, "ok": bool(ok), "detail": detail})

        for n in DAEMONS:
            p = self.slots[n].proc
            check("alive:" + n, p.alive(), "" if p.alive() else "exit %s" % p.p.returncode)
        for n in DAEMONS:
            bad = self.answering(n) if self.slots[n].proc.alive() else ["dead"]
            check("answering:" + n, not bad, "; ".join(bad))
        # workers: their last round trip, then their counters
        finals = []
        for w in self.workers:
            rc = w.proc.stop(60)
            finals.append((w.name, rc, w.proc.state["final"]))
            self.fold_worker(w.proc)
        check("workers:final_roundtrip", all(rc == 0 and ok for _, rc, ok in finals),
              ", ".join("%s rc %s ok %s" % f for f in finals))
        wrong = self.wtotal["wrong"] + sum(self.stats.get(n)["wrong"] for n in DAEMONS)
        check("wrong_bytes", wrong == 0, "; ".join(self.wrong_lines[:5] + [
            x for x in self.stats.notes if "not the last" in x or "after a PUT" in x
            or "differs" in x][:5]))
        ran = {e["kind"] for e in self.faultlog if e["ok"]}
        check("faults:all_kinds", ran >= set(self.a.faults),
              "missing %s" % sorted(set(self.a.faults) - ran))
        rows = []
        for n in DAEMONS:
            win = self.rss_windows(n)
            st = self.stats.get(n)
            row = {"daemon": n, "rss_start_mb": None, "rss_end_mb": None, "growth_pct": None,
                   "ops": st["ops"], "errors": st["errors"], "wrong": st["wrong"],
                   "restarts": self.slots[n].restarts}
            if win:
                row["rss_start_mb"] = round(win[0] / 1024, 1)
                row["rss_end_mb"] = round(win[1] / 1024, 1)
                row["growth_pct"] = round(100.0 * (win[1] - win[0]) / win[0], 1)
            rows.append(row)
            if self.a.no_rss:
                continue
            if self.slots[n].restarts and not win:
                continue  # restarted too late for two windows: no series to judge
            detail = "no samples" if not win else "%.1f -> %.1f MiB (%+.1f %%)" % (
                row["rss_start_mb"], row["rss_end_mb"], row["growth_pct"])
            if n == "master" and self.gauges:
                at = lambda t: min(self.gauges, key=lambda g: abs(g["t"] - t))  # noqa: E731
                a0, a1 = at(0.2 * self.a.seconds), at(self.a.seconds)
                detail += "; keys %s -> %s, segments %s -> %s" % (
                    a0.get("key_count"), a1.get("key_count"), a0.get("segment_count"),
                    a1.get("segment_count"))
            check("rss:" + n, win is not None and row["growth_pct"] <= 10.0, detail)
        rows.append({"daemon": "workers", "rss_start_mb": None, "rss_end_mb": None,
                     "growth_pct": None, "ops": self.wtotal["ops"],
                     "errors": self.wtotal["errors"], "wrong": self.wtotal["wrong"],
                     "restarts": sum(w.restarts for w in self.workers)})
        # clean stop, then sanitizer reports in every stderr (all incarnations)
        for n in reversed(DAEMONS):
            p = self.slots[n].proc
            rc = p.stop(30) if p.alive() else p.p.returncode
            check("clean_exit:" + n, rc == 0, "exit %s" % rc)
        for f in self.prefill + self.decode:
            f.close()
        reports = []
        for s in list(self.slots.values()) + self.workers:
            for p in s.all():
                m = P.SAN_RE.search(p.stderr())
                if m:
                    reports.append("%s (%s)" % (p.errpath, m.group(0)))
        check("sanitizer", not reports, "; ".join(reports[:10]))
        return rows, checks


def print_report(rows, checks):
    hdr = "%-8s %12s %10s %9s %9s %8s %6s %8s" % ("daemon", "rss_start_mb", "rss_end_mb",
                                                  "growth %", "ops", "errors", "wrong",
                                                  "restarts")
    print(hdr)
    print("-" * len(hdr))
    f = lambda v, fmt: "-" if v is None else fmt % v  # noqa: E731
    for r in rows:
        print("%-8s %12s %10s %9s %9d %8d %6d %8d" % (
            r["daemon"], f(r["rss_start_mb"], "%.1f"), f(r["rss_end_mb"], "%.1f"),
            f(r["growth_pct"], "%+.1f"), r["ops"], r["errors"], r["wrong"], r["restarts"]))
    print()
    for c in checks:
        print("%s %-28s %s" % ("PASS" if c["ok"] else "FAIL", c["check"], c["detail"]))
    npass = sum(c["ok"] for c in checks)
    print("%d passed, %d failed" % (npass, len(checks) - npass), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--out")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--no-rss", action="store_true", help="do not judge RSS growth (ASan)")
    ap.add_argument("--faults", default=",".join(FAULTS),
                    help="comma-separated fault kinds to inject, or 'none' (default: all)")
    ap.add_argument("--log-dir")
    ap.add_argument("--keep-logs", action="store_true")
    a = ap.parse_args()
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1 << 31)
    if a.seconds < 10:
        ap.error("--seconds: at least 10")
    a.faults = [] if a.faults == "none" else a.faults.split(",")
    if set(a.faults) - set(FAULTS):
        ap.error("--faults: unknown %s (kinds: %s)" % (sorted(set(a.faults) - set(FAULTS)),
                                                      ",".join(FAULTS)))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))

    def on_signal(sig, _):
        raise Interrupted("signal %d" % sig)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(a.seconds + 300)  # watchdog: the soak always ends
    soak = Soak(a)
    rows, checks, err = [], [], None
    try:
        rows, checks = soak.run()
    except (Interrupted, RuntimeError, OSError) as e:
        err = "%s: %s" % (type(e).__name__, e)
        checks.append({"check": "run", "ok": False, "detail": err})
    finally:
        signal.alarm(0)
        P.kill_all()
    ok = all(c["ok"] for c in checks)
    if not ok or a.keep_logs or a.log_dir:
        print("logs kept in %s" % soak.logdir)
    print_report(rows, checks)
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"seed": a.seed, "seconds": a.seconds, "bin_dir": a.bin_dir, "ok": ok,
                       "error": err, "table": rows, "checks": checks, "faults": soak.faultlog,
                       "worker_codes": soak.wcodes, "worker_totals": soak.wtotal,
                       "wrong_reads": soak.wrong_lines[:100], "notes": soak.stats.notes,
                       "rss_kb": soak.rss, "master_gauges": soak.gauges,
                       "logs": soak.logdir}, f, indent=1)
    if ok and not a.keep_logs and not a.log_dir:
        shutil.rmtree(soak.logdir, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
