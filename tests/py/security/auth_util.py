"""What the access-control tests share: the secret the pools are started
with, the key and MACs of the exchange written with Python's own hashlib and
hmac (so that the C implementation is checked against a second one), and a
runner for the store-client cases in a child python."""
import hashlib
import hmac
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "mooncake"))
from mc_fixtures import RUNNER, SAN_RE, bin_dir, child_env  # noqa: E402

SECRET = "correct horse battery staple, 32+"


def key(secret):
    return hashlib.sha256(b"mooncake-c cluster secret" + secret.encode()).digest()


def mac(k, role, service, a, b):
    """HMAC-SHA256(k, "mooncake-c/auth/1" | role | len | service | a | b)."""
    s = service.encode() if isinstance(service, str) else service
    return hmac.new(k, b"mooncake-c/auth/1" + role + bytes([len(s)]) + s + a + b,
                    hashlib.sha256).digest()


def run_case(module, func, secret, extra=None, timeout=60):
    """cases/<module>.py:func in a child python holding secret (or none),
    with extra in its environment; returns its stdout and stderr together."""
    env = child_env()
    env.pop("MC_CLUSTER_SECRET", None)
    env.pop("MC_CLUSTER_SECRET_FILE", None)
    if secret:
        env["MC_CLUSTER_SECRET"] = secret
    env.update(extra or {})
    p = subprocess.run([sys.executable, RUNNER, module, func], env=env,
                       capture_output=True, text=True, timeout=timeout)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-8000:]
    assert not SAN_RE.search(out), out[-8000:]
    return out


def run_store_case(master, func, secret, extra=None):
    """cases/case_auth.py:func against master (run_case)."""
    env = dict(MC_TEST_RPC=master.rpc, MC_TEST_META=master.meta, MC_TEST_BIN_DIR=bin_dir())
    env.update(extra or {})
    return run_case("case_auth", func, secret, env)
