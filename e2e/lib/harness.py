"""Process harness for the vLLM end-to-end scenarios (`make e2e`).

A scenario gets one `Ctx`. Through it, it starts our release binaries
(mooncake_master, mooncake_proxy from build/release/bin) and vLLM CPU
instances (the venv's python, the tiny generated model), talks to them over
HTTP on 127.0.0.1, and reads their metrics. Every process is started in its
own process group with its stdout and stderr in one log file under
build/e2e/logs/<scenario>/<name>.log; readiness is checked (a printed
"ready"/"listening" line, or an HTTP answer), never slept for, and a process
that dies while starting fails the call with the end of its log.

`Ctx.close()` kills every process the context started (its whole process
group, SIGTERM then SIGKILL). The runner calls it after each scenario, and
also on failure, KeyboardInterrupt or SIGTERM.

Cluster secret (run.py --secret, docs/security.md): `Ctx(secret_file=PATH)`
gives the file to every daemon (mooncake_master, mooncake_client) with
--cluster_secret_file and names it in every mooncake.json
(`cluster_secret_file`); a vLLM instance with a MOONCAKE_CONFIG_PATH takes it
from that field only, one without (the P2P MooncakeConnector alone) from
MC_CLUSTER_SECRET_FILE. No other process inherits MC_CLUSTER_SECRET*, so
each source is exercised on its own.

Interface (stable; e2e-p2p's scenarios build on it):
  ctx.python, ctx.bin_dir, ctx.model_dir, ctx.model_name, ctx.log_dir, ctx.secret_file
  ctx.free_port()
  ctx.start_master(**flags) -> Proc  (.rpc_addr "127.0.0.1:P", .metrics_port, .http_port)
  ctx.store_config(master, **fields) -> path of a MOONCAKE_CONFIG_PATH JSON
  ctx.start_standalone_client(master, env=None, **flags) -> Proc  (mooncake_client; .port, .url)
  ctx.start_vllm(name, port, kv_transfer_config=None, env=None, extra_args=None, wait=True) -> Proc (.port, .url)
  ctx.wait_vllm(proc)  (after start_vllm(..., wait=False))
  ctx.start_proxy(args) -> Proc (.port, .url)
  ctx.completion(port, prompt, max_tokens, logprobs=1, **kw) -> dict (OpenAI response body)
  ctx.ttft(port, prompt, max_tokens=1) -> seconds to the first streamed token
  ctx.baseline(prompt, max_tokens) -> dict (plain vLLM instance, no connector; cached per run)
  ctx.stop_baseline()
  ctx.metrics(url) -> {"name{labels}": value}; metric_sum(m, name, **labels)
  ctx.stop(proc); ctx.close(keep_baseline=False)
  assert_same_completion(got, want, tol) compares tokens exactly and logprobs within tol.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
E2E = os.path.join(ROOT, "e2e")
BUILD = os.path.join(ROOT, "build", "e2e")

# Greedy completions of the same prompt with the prefix's KV cache loaded (from
# the pool or from another instance) and with the whole prompt computed at once
# can differ in the last bits of float32: with the prefix loaded only the
# prompt's tail is computed, a matrix of another shape, for which the CPU
# kernels block and sum in another order (vLLM's own local prefix cache shows
# the same; seen: up to 2e-5). Tokens must match exactly; logprobs within this.
LOGPROB_TOL = 1e-3

# The environment variables a process takes the cluster secret from (docs/security.md).
SECRET_ENV = ("MC_CLUSTER_SECRET", "MC_CLUSTER_SECRET_FILE")


class Proc:
    """A started process: name, Popen, log path and what readiness learned."""

    def __init__(self, name, popen, log_path):
        self.name = name
        self.popen = popen
        self.pid = popen.pid
        self.log_path = log_path
        self.port = None
        self.url = None

    def alive(self):
        return self.popen.poll() is None

    def log_tail(self, n=40):
        try:
            with open(self.log_path, errors="replace") as f:
                lines = f.readlines()
        except OSError:
            return ""
        return "".join(lines[-n:])


def _http(method, url, body=None, timeout=600, headers=None):
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def parse_metrics(text):
    """Prometheus text -> {"name{labels}": float} (comments skipped)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        try:
            out[key] = float(value)
        except ValueError:
            pass
    return out


def metric_sum(metrics, name, **labels):
    """Sum of the samples of `name` whose labels include every given label."""
    total = 0.0
    for key, value in metrics.items():
        base, _, rest = key.partition("{")
        if base != name:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += value
    return total


def assert_same_completion(got, want, tol=LOGPROB_TOL, what="completion"):
    """Same generated tokens as the baseline; logprobs within tol."""
    g, w = got["choices"][0], want["choices"][0]
    gl, wl = g.get("logprobs") or {}, w.get("logprobs") or {}
    gt, wt = gl.get("tokens"), wl.get("tokens")
    if gt is not None and wt is not None:
        assert gt == wt, f"{what}: tokens differ from the baseline:\n got  {gt}\n want {wt}"
    assert g["text"] == w["text"], (
        f"{what}: text differs from the baseline:\n got  {g['text']!r}\n want {w['text']!r}"
    )
    glp, wlp = gl.get("token_logprobs"), wl.get("token_logprobs")
    if glp is not None and wlp is not None:
        worst = max((abs(a - b) for a, b in zip(glp, wlp)), default=0.0)
        assert worst <= tol, f"{what}: logprob differs from the baseline by {worst:.2e} > {tol}"
        return worst
    return 0.0


class Ctx:
    def __init__(self, scenario="run", bin_dir=None, model_dir=None, secret_file=None):
        self.python = os.path.join(BUILD, "venv", "bin", "python")
        self.bin_dir = bin_dir or os.environ.get(
            "MC_BIN_DIR", os.path.join(ROOT, "build", "release", "bin")
        )
        self.model_dir = model_dir or os.path.join(BUILD, "model")
        self.model_name = "tiny"
        self.secret_file = secret_file
        self.procs = []
        self._baseline = None
        self._baseline_cache = {}
        self._used_ports = set()
        self.set_scenario(scenario)

    # -- bookkeeping -------------------------------------------------------
    def set_scenario(self, scenario):
        self.scenario = scenario
        self.log_dir = os.path.join(BUILD, "logs", scenario)
        os.makedirs(self.log_dir, exist_ok=True)

    def free_port(self):
        """A TCP port free on 127.0.0.1 now (and not handed out before in this run)."""
        while True:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port not in self._used_ports:
                self._used_ports.add(port)
                return port

    def _spawn(self, name, cmd, env=None, log_dir=None):
        """Starts cmd with os.environ, less any cluster secret (each process
        gets it only as its caller says, env or flag), plus env."""
        log_path = os.path.join(log_dir or self.log_dir, f"{name}.log")
        full_env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
        full_env.update(env or {})
        with open(log_path, "w") as log:
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            popen = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=ROOT,
                start_new_session=True,
            )
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def _fail_start(self, proc, why):
        tail = proc.log_tail()
        self.stop(proc)
        raise AssertionError(f"{proc.name} {why}; log {proc.log_path}:\n{tail}")

    def _wait_log(self, proc, predicate, timeout):
        """Poll the log until predicate(lines) returns non-None; fail fast on exit."""
        deadline = time.monotonic() + timeout
        while True:
            with open(proc.log_path, errors="replace") as f:
                found = predicate(f.read().splitlines())
            if found is not None:
                return found
            if not proc.alive():
                self._fail_start(proc, f"exited with status {proc.popen.returncode} while starting")
            if time.monotonic() > deadline:
                self._fail_start(proc, f"not ready after {timeout} s")
            time.sleep(0.1)

    def stop(self, proc, timeout=20):
        """SIGTERM the process group, SIGKILL after timeout."""
        if proc.popen.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # children (vLLM's engine core) may outlive the leader: kill the group
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass
        if proc in self.procs:
            self.procs.remove(proc)
        if proc is self._baseline:
            self._baseline = None

    def close(self, keep_baseline=False):
        """Kill every process this context started (the baseline too unless keep_baseline)."""
        for proc in reversed(list(self.procs)):
            if keep_baseline and proc is self._baseline:
                continue
            self.stop(proc)

    # -- mooncake processes ------------------------------------------------
    def start_master(self, name="master", **flags):
        """mooncake_master on free ports (rpc, metrics); flags as --key=value."""
        args = {"port": 0, "metrics_port": 0, "rpc_address": "127.0.0.1", "metrics_host": "127.0.0.1"}
        if self.secret_file:
            args["cluster_secret_file"] = self.secret_file
        args.update(flags)
        if args.get("enable_http_metadata_server"):
            args.setdefault("http_metadata_server_port", 0)
            args.setdefault("http_metadata_server_host", "127.0.0.1")
        cmd = [os.path.join(self.bin_dir, "mooncake_master")]
        for k, v in args.items():
            if isinstance(v, bool):
                v = "true" if v else "false"
            cmd.append(f"--{k}={v}")
        proc = self._spawn(name, cmd)

        def ready(lines):
            if not any(line.strip().endswith("ready") for line in lines):
                return None
            ports = {}
            for line in lines:
                if " listening on " in line:
                    what, _, addr = line.partition(" listening on ")
                    ports[what.split(":", 1)[-1].strip()] = int(addr.rsplit(":", 1)[1])
            return ports

        ports = self._wait_log(proc, ready, 30)
        proc.port = ports["rpc"]
        proc.rpc_addr = f"127.0.0.1:{proc.port}"
        proc.metrics_port = ports["metrics"]
        proc.url = f"http://127.0.0.1:{proc.metrics_port}"
        proc.http_port = ports.get("http metadata server")
        return proc

    def store_config(self, master, name="mooncake.json", **fields):
        """Write a MOONCAKE_CONFIG_PATH file for `master`; returns its path."""
        cfg = {
            "metadata_server": "P2PHANDSHAKE",
            "master_server_address": master.rpc_addr,
            "protocol": "tcp",
            "device_name": "",
            "global_segment_size": "512MB",
            "local_buffer_size": "128MB",
        }
        if self.secret_file:
            cfg["cluster_secret_file"] = self.secret_file
        cfg.update(fields)
        path = os.path.join(self.log_dir, name)
        with open(path, "w") as f:
            json.dump(cfg, f, indent=1)
        return path

    def start_standalone_client(self, master, name="mooncake_client", env=None, **flags):
        """mooncake_client (the store process that owns the pool's segment,
        and its SSD tier with enable_offload=True) on `master`, P2PHANDSHAKE
        metadata, tcp, its dummy-client port free; flags as --key=value.
        .url serves /health and /metrics."""
        args = {"host": "127.0.0.1", "metadata_server": "P2PHANDSHAKE", "protocol": "tcp",
                "master_server_address": master.rpc_addr, "port": 0}
        if self.secret_file:
            args["cluster_secret_file"] = self.secret_file
        args.update(flags)
        cmd = [os.path.join(self.bin_dir, "mooncake_client")]
        for k, v in args.items():
            if isinstance(v, bool):
                v = "true" if v else "false"
            cmd.append(f"--{k}={v}")
        proc = self._spawn(name, cmd, env=env)

        def ready(lines):
            if not any(line.strip().endswith(": ready") for line in lines):
                return None
            for line in lines:
                if "dummy clients listening on " in line:
                    return int(line.rsplit(":", 1)[1])
            return None

        proc.port = self._wait_log(proc, ready, 30)
        proc.url = f"http://127.0.0.1:{proc.port}"
        return proc

    def start_proxy(self, args, name="proxy", env=None):
        """mooncake_proxy with args (a free --port is added if none is given)."""
        args = list(args)
        if "--port" not in args and not any(a.startswith("--port=") for a in args):
            args += ["--port", "0"]
        proc = self._spawn(name, [os.path.join(self.bin_dir, "mooncake_proxy")] + args, env=env)

        def ready(lines):
            for line in lines:
                if "listening on http://" in line:
                    return int(line.rsplit(":", 1)[1].strip().rstrip("/"))
            return None

        proc.port = self._wait_log(proc, ready, 30)
        proc.url = f"http://127.0.0.1:{proc.port}"
        return proc

    # -- vLLM --------------------------------------------------------------
    def vllm_env(self, env=None):
        """Environment of a vLLM CPU instance: shims, no core binding, small KV cache."""
        e = {
            "PYTHONPATH": os.path.join(E2E, "shims"),
            # The store keys are built from vLLM's block hashes, seeded from
            # PYTHONHASHSEED: it must be the same in every instance that shares a pool.
            "PYTHONHASHSEED": "0",
            # Several instances share 2 cores: no pinning of OpenMP threads to cores.
            "VLLM_CPU_OMP_THREADS_BIND": "nobind",
            "OMP_NUM_THREADS": "2",
            "VLLM_CPU_KVCACHE_SPACE": "1",
            "VLLM_ENABLE_V1_MULTIPROCESSING": "1",
            "VLLM_LOGGING_LEVEL": "INFO",
            "VLLM_NO_USAGE_STATS": "1",
            "VLLM_DO_NOT_TRACK": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
        e.update(env or {})
        if self.secret_file and "MOONCAKE_CONFIG_PATH" not in e:
            # with a mooncake.json the secret comes only from its cluster_secret_file
            e["MC_CLUSTER_SECRET_FILE"] = self.secret_file
        return e

    def start_vllm(
        self, name, port, kv_transfer_config=None, env=None, extra_args=None,
        timeout=600, log_dir=None, wait=True,
    ):
        """An OpenAI server on 127.0.0.1:port; returns once /v1/models answers.

        wait=False returns at once; call ctx.wait_vllm(proc) later (start
        several instances, then wait for them: their start-ups overlap).
        """
        port = port or self.free_port()
        extra_args = list(extra_args or [])
        env = self.vllm_env(env)
        if "--kv-cache-memory-bytes" in extra_args:
            env.pop("VLLM_CPU_KVCACHE_SPACE", None)  # the env var would override it
        cmd = [
            self.python, "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model_dir,
            "--served-model-name", self.model_name,
            "--host", "127.0.0.1",
            "--port", str(port),
            "--dtype", "float32",
            "--enforce-eager",
            "--max-model-len", "4096",
            "--seed", "0",
            "--disable-uvicorn-access-log",
        ]
        if kv_transfer_config is not None:
            cmd += ["--kv-transfer-config", json.dumps(kv_transfer_config)]
        cmd += extra_args
        proc = self._spawn(name, cmd, env=env, log_dir=log_dir)
        proc.port = port
        proc.url = f"http://127.0.0.1:{port}"
        proc.start_timeout = timeout
        if wait:
            self.wait_vllm(proc)
        return proc

    def wait_vllm(self, proc, timeout=None):
        """Wait until the vLLM instance answers /v1/models; fail fast if it dies."""
        timeout = timeout or getattr(proc, "start_timeout", 600)
        deadline = time.monotonic() + timeout
        while True:
            if not proc.alive():
                self._fail_start(proc, f"exited with status {proc.popen.returncode} while starting")
            try:
                status, _ = _http("GET", proc.url + "/v1/models", timeout=2)
                if status == 200:
                    return proc
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self._fail_start(proc, f"not ready after {timeout} s")
            time.sleep(0.5)

    def _greedy_body(self, prompt, max_tokens, **extra):
        """A /v1/completions body: greedy, EOS ignored, so runs compare token for token."""
        return {"model": self.model_name, "prompt": prompt, "max_tokens": max_tokens,
                "temperature": 0, "ignore_eos": True, **extra}

    def completion(self, port, prompt, max_tokens, logprobs=1, timeout=600, url=None, **kw):
        """POST /v1/completions (greedy, EOS ignored); returns the response body."""
        body = self._greedy_body(prompt, max_tokens)
        if logprobs is not None:
            body["logprobs"] = logprobs
        body.update(kw)
        base = url or f"http://127.0.0.1:{port}"
        try:
            _, data = _http("POST", base + "/v1/completions", body, timeout=timeout)
        except urllib.error.HTTPError as e:
            raise AssertionError(f"POST {base}/v1/completions: {e.code} {e.read()[:500]!r}") from None
        return json.loads(data)

    def ttft(self, port, prompt, max_tokens=2, url=None):
        """Seconds from sending a streaming completion to its first token chunk."""
        body = self._greedy_body(prompt, max_tokens, stream=True)
        base = url or f"http://127.0.0.1:{port}"
        req = urllib.request.Request(
            base + "/v1/completions", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"}, method="POST",
        )
        t0 = time.perf_counter()
        first = None
        try:
            r = urllib.request.urlopen(req, timeout=600)
        except urllib.error.HTTPError as e:
            raise AssertionError(f"POST {base}/v1/completions (stream): {e.code} {e.read()[:500]!r}") from None
        with r:
            for raw in r:
                line = raw.decode().strip()
                if first is None and line.startswith("data:") and '"text"' in line:
                    first = time.perf_counter() - t0
        assert first is not None, "no token chunk in the stream"
        return first

    def baseline(self, prompt, max_tokens):
        """Completion of a plain vLLM instance (no connector); cached per run."""
        key = (prompt, max_tokens)
        if key not in self._baseline_cache:
            if self._baseline is None or not self._baseline.alive():
                log_dir = os.path.join(BUILD, "logs", "baseline")
                os.makedirs(log_dir, exist_ok=True)
                self._baseline = self.start_vllm("baseline", self.free_port(), log_dir=log_dir)
            self._baseline_cache[key] = self.completion(self._baseline.port, prompt, max_tokens)
        return self._baseline_cache[key]

    def stop_baseline(self):
        if self._baseline is not None:
            self.stop(self._baseline)

    def metrics(self, url):
        """GET url/metrics parsed into {"name{labels}": value}."""
        _, data = _http("GET", url.rstrip("/") + "/metrics", timeout=30)
        return parse_metrics(data.decode())


def model_prompt(n_words, seed):
    """A deterministic prompt of n_words tokens (plus BOS) for the tiny model."""
    sys.path.insert(0, os.path.dirname(__file__))
    from model import prompt_words

    return prompt_words(n_words, seed)
