"""`python -m mooncake.http_metadata_server` (upstream's flags) and
KVBootstrapServer, both on the C metadata server embedded through
mooncake._core.MetadataServer."""
import os
import re
import signal
import subprocess
import sys
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from mc_fixtures import SAN_RE, _readline, child_env, run_case  # noqa: E402


@pytest.mark.parametrize("func", ["case_http_and_in_process_share_one_store",
                                  "case_bind_failure_is_failed"])
def test_kv_bootstrap_server(func):
    run_case(None, "case_metadata_server", func)


def test_module_serves_and_stops_on_sigterm():
    p = subprocess.Popen([sys.executable, "-m", "mooncake.http_metadata_server", "--port", "0",
                          "--host", "127.0.0.1", "--log-level", "WARNING"], env=child_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = _readline(p, 30)
        m = re.search(r"serving on 127\.0\.0\.1:(\d+)", line or "")
        assert m, line
        base = "http://127.0.0.1:%s" % m.group(1)
        req = urllib.request.Request(base + "/metadata?key=k", data=b"v" * 5000, method="PUT")
        assert urllib.request.urlopen(req, timeout=10).status == 200
        assert urllib.request.urlopen(base + "/metadata?key=k", timeout=10).read() == b"v" * 5000
        assert urllib.request.urlopen(base + "/health", timeout=10).read() == b"OK"
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err[-4000:]
    assert not SAN_RE.search(err), err[-4000:]


def test_module_flags():
    env = child_env()
    v = subprocess.run([sys.executable, "-m", "mooncake.http_metadata_server", "--version"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert v.returncode == 0 and "(mooncake-c)" in v.stdout, v.stderr
    bad = subprocess.run([sys.executable, "-m", "mooncake.http_metadata_server", "--log-level",
                          "LOUD"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--log-level" in bad.stderr
