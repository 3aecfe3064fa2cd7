"""--log_format json on every daemon: each stderr line is one JSON object with
ts, level, tag and msg (jansson-encoded); the default stays human-readable;
a bad value exits 2 naming the flag."""
import json
import os
import re
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "mooncake"))
from mc_fixtures import SAN_RE, Master, StandaloneClient, bin_dir  # noqa: E402


def json_lines(text):
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert lines, "no log line"
    out = []
    for ln in lines:
        o = json.loads(ln)
        assert set(o) == {"ts", "level", "tag", "msg"}, o
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", o["ts"]), o
        assert o["level"] in ("error", "warn", "info", "debug")
        out.append(o)
    return out


def test_master_and_client_json(tmp_path, monkeypatch):
    monkeypatch.setenv("MC_LOG_LEVEL", "info")
    m = Master(tmp_path, extra=["--log_format", "json", "--metrics_host", "127.0.0.1"])
    c = StandaloneClient(tmp_path, m, extra=["--log_format=json"])
    c.stop()
    m.stop()
    for d in (m, c):
        assert not SAN_RE.search(d.stderr())
    ms = json_lines(m.stderr())
    assert any(o["tag"] == "master" and o["msg"].startswith("version ") for o in ms)
    cs = json_lines(c.stderr())
    assert cs


def test_master_default_is_text(tmp_path, monkeypatch):
    monkeypatch.setenv("MC_LOG_LEVEL", "info")
    m = Master(tmp_path, extra=["--metrics_host", "127.0.0.1"])
    m.stop()
    first = m.stderr().splitlines()[0]
    assert re.match(r"\d\d:\d\d:\d\d\.\d{3} I \[\w+\] ", first), first


def run(exe, args, timeout=20):
    path = os.path.join(bin_dir(), exe)
    if not os.path.exists(path):
        pytest.skip("%s not built" % exe)
    env = dict(os.environ, MC_LOG_LEVEL="info")
    env.pop("LD_PRELOAD", None)
    return subprocess.Popen([path] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, text=True)


@pytest.mark.parametrize("exe,args,ready", [
    ("mooncake_http_metadata_server", ["--port", "0", "--host", "127.0.0.1"], "listening"),
    ("mooncake_proxy", ["--port", "0", "--prefill", "http://127.0.0.1:1", "--decode",
                        "http://127.0.0.1:2"], "listening"),
])
def test_other_daemons_json(exe, args, ready):
    p = run(exe, args + ["--log_format", "json"])
    try:
        line = p.stdout.readline()
        assert ready in line, line
    finally:
        p.terminate()
        _, err = p.communicate(timeout=20)
    assert not SAN_RE.search(err)
    json_lines(err)


@pytest.mark.parametrize("exe", ["mooncake_master", "mooncake_client",
                                 "mooncake_http_metadata_server", "mooncake_proxy"])
def test_bad_log_format_exits_2(exe):
    p = run(exe, ["--log_format", "xml"])
    _, err = p.communicate(timeout=20)
    assert p.returncode == 2 and "--log_format" in err and "xml" in err, err
