"""Helpers and the pool fixture for the operator tools (issue 20): a real mooncake_master (embedded
metadata server) and a standalone mooncake_client holding a 64 MiB segment, both
on free loopback ports, and `mooncake` (the CLI, python/mooncake/ctl.py) run as
a child python with the environment the ASan-built extension needs."""
import json
import os
import subprocess
import sys
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "mooncake"))
sys.path.insert(0, os.path.join(HERE, ".."))
from mc_fixtures import SAN_RE, Master, StandaloneClient, child_env, core_so, py_dir  # noqa


class Pool:
    def __init__(self, tmp, master_flags=(), client_flags=()):
        self.tmp = tmp
        self.master = Master(tmp, extra=["--metrics_host", "127.0.0.1"] + list(master_flags))
        self.client = StandaloneClient(tmp, self.master, extra=list(client_flags))
        self.procs = [self.client, self.master]

    def admin(self, path, method="GET", headers=None):
        """(status, body bytes, headers) of one admin request."""
        req = urllib.request.Request("http://%s%s" % (self.master.admin, path), method=method,
                                     headers=headers or {}, data=b"" if method == "POST" else None)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read(), r.headers
        except urllib.error.HTTPError as e:
            return e.code, e.read(), e.headers

    def admin_json(self, path, method="GET", headers=None):
        st, body, _ = self.admin(path, method, headers)
        return st, json.loads(body)

    def cli(self, *args, check=True, admin=True, env_extra=None, timeout=60):
        """Runs `mooncake ARGS` against this pool; returns the CompletedProcess."""
        base = ["--master", self.master.rpc, "--metadata", self.master.meta]
        if admin:
            base += ["--admin", self.master.admin]
        return run_cli(base + list(args), check=check, env_extra=env_extra, timeout=timeout)

    def stop(self):
        for p in self.procs:
            p.stop()
        for p in self.procs:
            assert not SAN_RE.search(p.stderr()), p.stderr()[-4000:]


def cli_env(env_extra=None):
    env = child_env() if core_so() else dict(os.environ)
    env["PYTHONPATH"] = py_dir()
    env.setdefault("MC_LOG_LEVEL", "warn")
    env.pop("MOONCAKE_CONFIG_PATH", None)
    env.pop("MC_ADMIN_API_KEY", None)
    env.update(env_extra or {})
    return env


def run_cli(args, check=True, env_extra=None, timeout=60, input_bytes=None):
    p = subprocess.run([sys.executable, "-m", "mooncake.ctl"] + list(args), env=cli_env(env_extra),
                       capture_output=True, timeout=timeout, input=input_bytes)
    out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
    assert not SAN_RE.search(out), out[-4000:]
    if check:
        assert p.returncode == 0, "mooncake %s -> %d\n%s" % (" ".join(args), p.returncode, out)
    return p


@pytest.fixture
def pool(tmp_path):
    if not core_so():
        pytest.skip("mooncake._core not built under %s" % py_dir())
    pools = []

    def make(master_flags=(), client_flags=()):
        p = Pool(tmp_path, master_flags, client_flags)
        pools.append(p)
        return p

    yield make
    for p in pools:
        p.stop()
