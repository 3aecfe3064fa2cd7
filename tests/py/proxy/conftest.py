"""Fixtures for the mooncake_proxy tests: fake backends and the compiled proxy
as a real process. The proxy binary comes from $MC_BIN_DIR (default
build/test/bin). Every process a test starts is stopped by pid at teardown, and
the proxy's stderr is checked for sanitizer reports."""

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from proxy_fakes import FakeBootstrap, FakeOpenAI  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def proxy_bin():
    d = os.environ.get("MC_BIN_DIR") or os.path.join(ROOT, "build", "test", "bin")
    p = os.path.join(d, "mooncake_proxy")
    if not os.path.exists(p):
        pytest.skip("mooncake_proxy not built at %s" % p)
    return p


class Proxy:
    def __init__(self, args, env_extra=None, tmp=None):
        env = dict(os.environ)
        env.pop("ADMIN_API_KEY", None)
        env.pop("OPENAI_API_KEY", None)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("MC_LOG_LEVEL", "info")
        env.update(env_extra or {})
        self.errpath = os.path.join(str(tmp), "proxy-%d.err" % time.monotonic_ns())
        self.err = open(self.errpath, "wb")
        self.p = subprocess.Popen([proxy_bin(), "--host", "127.0.0.1", "--port", "0",
                                   "--health-interval-ms", "200"] + list(args),
                                  stdout=subprocess.PIPE, stderr=self.err, env=env)
        self.port = None
        line = self._readline(10)
        if not line.startswith("listening on http://"):
            self.stop()
            raise RuntimeError("proxy did not start: %r\n%s" % (line, self.stderr()))
        self.port = int(line.rsplit(":", 1)[1])
        self.addr = "127.0.0.1:%d" % self.port

    def _readline(self, timeout):
        out = []
        t = threading.Thread(target=lambda: out.append(self.p.stdout.readline().decode()), daemon=True)
        t.start()
        t.join(timeout)
        return out[0].strip() if out else ""

    def stderr(self):
        if not self.err.closed:
            self.err.flush()
        with open(self.errpath, "rb") as f:
            return f.read().decode(errors="replace")

    def conn(self, timeout=10):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=10):
        c = self.conn(timeout)
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data

    def json(self, method, path, body=None, headers=None, timeout=10):
        st, h, data = self.request(method, path, body, headers, timeout)
        return st, json.loads(data) if data else None

    def status(self):
        return self.json("GET", "/status")[1]

    def wait_ready(self, timeout=10, pred=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.p.poll() is None, "proxy exited:\n" + self.stderr()
            s = self.status()
            if (pred(s) if pred else s["ready"]):
                return s
            time.sleep(0.02)
        raise AssertionError("proxy not ready: %s" % self.status())

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self.err.close()
        return self.p.returncode


@pytest.fixture
def fakes():
    made = []

    def make(name="fake", model="test-model"):
        f = FakeOpenAI(name, model)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


@pytest.fixture
def bootstrap():
    made = []

    def make(engine_ids=("engine-P0",), port=0):
        b = FakeBootstrap(engine_ids, port)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


@pytest.fixture
def proxy(tmp_path):
    made = []

    def make(args, env=None):
        p = Proxy(args, env, tmp_path)
        made.append(p)
        return p

    yield make
    for p in made:
        rc = p.stop()
        err = p.stderr()
        assert "Sanitizer" not in err and "runtime error" not in err, err
        assert rc == 0, "proxy exit code %s\n%s" % (rc, err[-4000:])
