"""Helpers and fixtures for the `mooncake` Python package tests (conftest.py
re-exports the fixtures).

The package is imported from the CMake build: $MC_BIN_DIR/../python (default
build/test/python), where python/CMakeLists.txt assembles mooncake/ with
_core.abi3.so. In `make test` that extension is built with ASan+UBSan, which a
stock python can only load with the ASan runtime preloaded; LD_PRELOAD cannot
be set inside a running pytest, and must not reach the sanitizer-built daemons
(they carry their own static runtime). So every check that imports the
extension runs in a child python (cases/runner.py) with LD_PRELOAD and
ASAN_OPTIONS=detect_leaks=0, while mooncake_master runs with a clean
environment. Children's stderr is checked for sanitizer reports.

The master (with its embedded HTTP metadata server) is started once per
test on free loopback ports; readiness is its "ready" stdout line."""

import os
import re
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
from asan_env import extension_so, preload_asan  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
RUNNER = os.path.join(HERE, "cases", "runner.py")
SAN_RE = re.compile(r"ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer")


def bin_dir():
    return os.environ.get("MC_BIN_DIR") or os.path.join(ROOT, "build", "test", "bin")


def py_dir():
    return os.path.join(os.path.dirname(os.path.abspath(bin_dir())), "python")


def core_so():
    return extension_so(py_dir())


def clean_env():
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env.setdefault("MC_LOG_LEVEL", "warn")
    return env


def child_env():
    so = core_so()
    env = clean_env()
    env["PYTHONPATH"] = py_dir()
    if not preload_asan(env, so):
        pytest.skip("extension built with ASan but no ASan runtime found")
    return env


def _readline(p, timeout):
    out = []
    t = threading.Thread(target=lambda: out.append(p.stdout.readline()), daemon=True)
    t.start()
    t.join(timeout)
    return out[0] if out else None


class _Daemon:
    """A daemon child: stderr goes to a file under tmp, stdout is scanned until
    its "ready" line (at most 30 s), then drained so it never blocks on a full
    pipe. scan(line) picks what the subclass needs out of each line."""

    def _start(self, tmp, what, argv):
        self.what = what
        self.errpath = os.path.join(str(tmp), "%s-%d.err" % (what, time.monotonic_ns()))
        self.err = open(self.errpath, "wb")
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.err,
                                  env=clean_env(), text=True)
        self.lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = _readline(self.p, max(0.1, deadline - time.monotonic()))
            if not line:
                break
            self.lines.append(line)
            self.scan(line)
            if line.strip().endswith("ready"):
                break
        threading.Thread(target=lambda: [None for _ in self.p.stdout], daemon=True).start()

    def _failed(self):
        self.stop()
        raise RuntimeError("%s did not start:\n%s" % (self.what, self.stderr()))

    def scan(self, line):
        pass

    def stderr(self):
        try:
            with open(self.errpath, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self, wait_s=10):
        """SIGTERM and wait (SIGKILL after wait_s); returns the exit status."""
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(wait_s)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        if not self.err.closed:
            self.err.close()
        return self.p.returncode


class Master(_Daemon):
    """mooncake_master with --enable_http_metadata_server on free ports."""

    def __init__(self, tmp, extra=()):
        exe = os.path.join(bin_dir(), "mooncake_master")
        if not os.path.exists(exe):
            pytest.skip("mooncake_master not built at %s" % exe)
        self.rpc = self.meta = self.admin = None
        self._start(tmp, "mooncake_master", [
            exe, "--port", "0", "--rpc_port", "0", "--metrics_port", "0",
            "--enable_http_metadata_server=true", "--http_metadata_server_port", "0",
            "--http_metadata_server_host", "127.0.0.1", "--rpc_address", "127.0.0.1",
            "--default_kv_lease_ttl", "500"] + list(extra))
        if not self.rpc or not self.meta:
            self._failed()

    def scan(self, line):
        m = re.search(r"rpc listening on (\S+)", line)
        if m:
            self.rpc = m.group(1)
        m = re.search(r"http metadata server listening on (\S+)", line)
        if m:
            self.meta = "http://%s/metadata" % m.group(1)
        m = re.search(r"metrics listening on \S+:(\d+)", line)
        if m:
            self.admin = "127.0.0.1:%s" % m.group(1)


class StandaloneClient(_Daemon):
    """mooncake_client (the standalone store client) on master's pool, serving
    dummy clients on a free port. Readiness: its "ready" stdout line; .name is
    its store (segment) name, .addr the "127.0.0.1:port" dummies connect to."""

    def __init__(self, tmp, master, extra=()):
        exe = os.path.join(bin_dir(), "mooncake_client")
        if not os.path.exists(exe):
            pytest.skip("mooncake_client not built at %s" % exe)
        self.name = self.addr = None
        self._start(tmp, "mooncake_client", [
            exe, "--host=127.0.0.1", "--metadata_server", master.meta,
            "--master_server_address", master.rpc, "--port", "0",
            "--global_segment_size", "64 MB"] + list(extra))
        if not self.name or not self.addr:
            self._failed()

    def scan(self, line):
        m = re.search(r"store (\S+) mounted", line)
        if m:
            self.name = m.group(1)
        m = re.search(r"dummy clients listening on \S+:(\d+)", line)
        if m:
            self.addr = "127.0.0.1:%s" % m.group(1)

    def stop(self, wait_s=15):
        return super().stop(wait_s)


@pytest.fixture
def master(tmp_path):
    """A fresh master per test: a case that dies with its store still mounted
    must not leave a dead segment for the next case's puts."""
    if not core_so():
        pytest.skip("mooncake._core not built under %s" % py_dir())
    m = Master(tmp_path)
    yield m
    m.stop()
    assert not SAN_RE.search(m.stderr()), m.stderr()[-4000:]


def run_case(master, module, func, timeout=60, env_extra=None):
    """Runs cases/<module>.py:<func> in a child python, told where master is (None: a case
    that needs none); fails with its output."""
    env = child_env()
    env["MC_TEST_BIN_DIR"] = bin_dir()
    if master is not None:
        env["MC_TEST_RPC"] = master.rpc
        env["MC_TEST_META"] = master.meta
        env["MC_TEST_ADMIN"] = master.admin or ""
    env.update(env_extra or {})
    try:
        p = subprocess.run([sys.executable, RUNNER, module, func], env=env, capture_output=True,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail("%s.%s timed out after %ss\n%s\n%s" % (module, func, timeout, e.stdout,
                                                           e.stderr))
    out = (p.stdout or "") + (p.stderr or "")
    assert p.returncode == 0, "%s.%s failed (rc %d):\n%s" % (module, func, p.returncode,
                                                             out[-8000:])
    assert not SAN_RE.search(out), out[-8000:]
    return p.stdout


def case_names(module):
    with open(os.path.join(HERE, "cases", module + ".py")) as f:
        return re.findall(r"^def (case_\w+)\(", f.read(), re.M)
