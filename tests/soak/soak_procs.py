"""Processes of the soak: start a daemon (or a store worker) in its own
process group, wait for its readiness line on stdout (never a sleep), keep
draining its stdout, sample its RSS, stop it, and kill every process group
still alive when the soak ends (normally, on a failure, or on SIGTERM/SIGINT).
Standard library only."""

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "py", "common"))
from asan_env import extension_so, preload_asan  # noqa: E402

SAN_RE = re.compile(r"ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer")

_live = []  # every Popen started, for kill_all()
_live_lock = threading.Lock()


def kill_all():
    """SIGKILL to every process group still running (idempotent)."""
    with _live_lock:
        procs = list(_live)
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
    for p in procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass


def daemon_env():
    env = dict(os.environ)
    for k in ("LD_PRELOAD", "ADMIN_API_KEY", "OPENAI_API_KEY"):
        env.pop(k, None)
    env["MC_LOG_LEVEL"] = "warn"
    return env


def worker_env(py_dir):
    """The environment of a child python importing the extension: with the ASan
    runtime preloaded when the extension is sanitizer-built."""
    env = daemon_env()
    env["PYTHONPATH"] = py_dir
    so = extension_so(py_dir)
    if so is None:
        raise RuntimeError("mooncake._core not built under %s" % py_dir)
    if not preload_asan(env, so):
        raise RuntimeError("extension built with ASan but no ASan runtime found")
    return env


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


class Proc:
    """One incarnation of a child. argv is started in a new session (its own
    process group) with stderr to errpath; stdout lines go through on_line(line)
    (a reader thread) and are kept in .lines. start() returns once ready(line) is
    true for a line, or raises (with the stderr tail) when the child exits first
    or timeout passes."""

    def __init__(self, name, argv, env, errpath, ready, on_line=None, timeout=60):
        self.name = name
        self.errpath = errpath
        self.lines = []
        self.on_line = on_line
        self.err = open(errpath, "ab")
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.err, env=env,
                                  stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        with _live_lock:
            _live.append(self.p)
        self.pid = self.p.pid
        self.started = time.monotonic()
        q = queue.Queue()
        threading.Thread(target=self._reader, args=(q,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = q.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                self.kill()
                raise RuntimeError("%s did not get ready (%s); stderr:\n%s"
                                   % (name, "exited" if self.p.poll() is not None else "timeout",
                                      self.stderr()[-3000:]))
            if ready(line):
                return

    def _reader(self, q):
        for line in self.p.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if self.on_line:
                self.on_line(line)
            q.put(line)
        q.put(None)

    def alive(self):
        return self.p.poll() is None

    def rss_kb(self):
        return rss_kb(self.pid) if self.alive() else None

    def stderr(self):
        try:
            self.err.flush()
            with open(self.errpath, "rb") as f:
                return f.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""

    def kill(self):
        """kill -9 of its process group."""
        if self.p.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except OSError:
                pass
        self.p.wait()
        self.err.close()

    def stop(self, wait_s=20):
        """SIGTERM, then SIGKILL after wait_s; returns the exit status (None when
        it had to be killed)."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(wait_s)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        self.err.close()
        return self.p.returncode


def find(lines, pattern):
    for line in lines:
        m = re.search(pattern, line)
        if m:
            return m.group(1)
    return None
