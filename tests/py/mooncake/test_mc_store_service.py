"""`python -m mooncake.mooncake_store_service`: a store client with upstream's
REST routes (python/mooncake/mooncake_store_service.py), against a real
master; the service runs in a child python with the sanitizer build's
extension (mc_fixtures.child_env). The handlers' state and error mapping with
a scripted store are cases/case_store_service.py, one child python each."""
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import pytest  # noqa: E402
from mc_fixtures import SAN_RE, _readline, case_names, child_env, run_case  # noqa: E402


def call(port, method, path, body=None):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


def start(master, tmp_path, extra=()):
    env = child_env()
    env["MOONCAKE_MASTER"] = master.rpc
    err = open(tmp_path / "svc.err", "wb")
    p = subprocess.Popen(
        [sys.executable, "-m", "mooncake.mooncake_store_service", "--port", "0",
         "-Dlocal_hostname=127.0.0.1", "-Dmetadata_server=" + master.meta,
         "-Dprotocol=TCP", "-Dglobal_segment_size=32MB", "-Dlocal_buffer_size=16MB",
         "-Dnot_a_field=1", "-Dnovalue"] + list(extra),
        env=env, stdout=subprocess.PIPE, stderr=err, text=True)
    return p, err


def test_store_service_routes(master, tmp_path):
    p, err = start(master, tmp_path)
    try:
        line = _readline(p, 60)
        assert line, (tmp_path / "svc.err").read_text()[-4000:]
        port = int(re.search(r"serving on port (\d+)", line).group(1))
        value = "v\u00e9" * 1000 + "end"
        assert call(port, "PUT", "/api/put", {"key": "k 1", "value": value})[0] == 200
        st, ct, body = call(port, "GET", "/api/get/k%201")
        assert (st, ct, body) == (200, "application/octet-stream", value.encode())
        assert json.loads(call(port, "GET", "/api/exist/k%201")[2]) == {"exists": True}
        assert json.loads(call(port, "GET", "/api/exist/nope")[2]) == {"exists": False}
        st, _, body = call(port, "GET", "/api/get/nope")
        assert st == 404 and json.loads(body) == {"error": "Key not found"}
        # a key that exists keeps its value (the put answers 0, as the store's)
        assert call(port, "PUT", "/api/put", {"key": "k 1", "value": "x"})[0] == 200
        assert call(port, "GET", "/api/get/k%201")[2] == value.encode()
        assert call(port, "PUT", "/api/put", {"key": "k2"})[0] == 500  # upstream's answer
        assert call(port, "PUT", "/api/put", b"{not json")[0] == 400
        assert call(port, "PUT", "/api/put", {"key": "", "value": "x"})[0] == 400
        st, _, body = call(port, "PUT", "/api/put", {"key": "e", "value": ""})
        assert st == 500 and json.loads(body)["code"] < 0  # the store refuses an empty value
        # this store mounts one segment: every segment call is NOT_SUPPORTED, a 500
        sid = "00000000-0000-0000-0000-000000000001"
        for route, req in (("mount", {"size": 4096}), ("unmount", {"segment_ids": [sid]}),
                           ("mount_shm", {"name": "mc-seg", "size": 4096}),
                           ("unmount_shm", {"segment_ids": sid}), ("unmount_local_disk", {}),
                           ("reconfigure", {"mode": "decode", "path": "/dev/shm/x",
                                            "size": 4096})):
            st, _, body = call(port, "POST", "/api/" + route, req)
            assert st == 500 and json.loads(body)["code"] == -1012, (route, body)
            assert call(port, "POST", "/api/" + route, b"[1]")[0] == 400
            assert call(port, "POST", "/api/" + route, b"{")[0] == 400
        st, _, body = call(port, "POST", "/api/reconfigure", {"mode": "decode", "path": "/x",
                                                              "size": 1})
        assert json.loads(body)["mode"] == "prefill" and "rolled back" in json.loads(body)["error"]
        st, _, body = call(port, "POST", "/api/reconfigure", {"mode": "prefill"})
        assert (st, json.loads(body)) == (200, {"status": "success", "mode": "prefill"})
        assert call(port, "POST", "/api/mount", {"size": 0})[0] == 400
        assert call(port, "POST", "/api/bogus", {})[0] == 404
        # the gets above hold a read lease (500 ms on this master): -706 until it ends
        deadline = time.monotonic() + 20
        while True:
            st, _, body = call(port, "DELETE", "/api/remove/k%201")
            if st == 200 or time.monotonic() > deadline:
                break
            assert json.loads(body)["code"] == -706, body
            time.sleep(0.05)
        assert st == 200, body
        assert call(port, "GET", "/api/get/k%201")[0] == 404
        assert call(port, "DELETE", "/api/remove/k%201")[0] == 500
        assert call(port, "PUT", "/api/put", {"key": "a", "value": "1"})[0] == 200
        assert call(port, "PUT", "/api/put", {"key": "b", "value": "2"})[0] == 200
        st, _, body = call(port, "DELETE", "/api/remove_all")
        assert st == 200 and json.loads(body) == {"status": "success removed 2 keys"}
        assert json.loads(call(port, "GET", "/api/exist/a")[2]) == {"exists": False}
    finally:
        p.send_signal(signal.SIGTERM)
        rc = p.wait(30)
        err.close()
    log = (tmp_path / "svc.err").read_text()
    assert rc == 0, log[-4000:]
    assert "not_a_field" in log and "novalue" in log, log[-4000:]
    assert not SAN_RE.search(log), log[-4000:]


def test_store_service_gives_up(master, tmp_path):
    """No master at that address: setup is retried until --max-wait-time, then exit 1."""
    env = child_env()
    env["MOONCAKE_MASTER"] = "127.0.0.1:1"
    p = subprocess.run(
        [sys.executable, "-m", "mooncake.mooncake_store_service", "--port", "0",
         "--max-wait-time", "1.5", "-Dlocal_hostname=127.0.0.1", "-Dmetadata_server=" + master.meta],
        env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, p.stderr[-4000:]
    assert "attempt 2" in p.stderr and "store startup failed within 1.5 s" in p.stderr, p.stderr[-4000:]
    assert not SAN_RE.search(p.stderr), p.stderr[-4000:]


def test_store_service_flags():
    p = subprocess.run([sys.executable, "-m", "mooncake.mooncake_store_service", "--help"],
                       env=child_env(), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0
    for flag in ("--config", "--define", "--port", "--max-wait-time"):
        assert flag in p.stdout


def test_store_service_stops_during_startup(master, tmp_path):
    """SIGTERM while setup is still being retried: exit 0 at once, not at --max-wait-time."""
    env = child_env()
    env["MOONCAKE_MASTER"] = "127.0.0.1:1"
    err = open(tmp_path / "svc.err", "wb")
    p = subprocess.Popen(
        [sys.executable, "-m", "mooncake.mooncake_store_service", "--port", "0",
         "--max-wait-time", "120", "-Dlocal_hostname=127.0.0.1",
         "-Dmetadata_server=" + master.meta],
        env=env, stdout=subprocess.PIPE, stderr=err)
    try:
        deadline = time.monotonic() + 60
        while "attempt 1" not in (tmp_path / "svc.err").read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        rc = p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
        err.close()
    log = (tmp_path / "svc.err").read_text()
    assert rc == 0 and time.monotonic() - t0 < 10, log[-4000:]
    assert "cancelled by a shutdown request" in log, log[-4000:]
    assert not SAN_RE.search(log), log[-4000:]


@pytest.mark.parametrize("case", case_names("case_store_service"))
def test_store_service_case(case):
    run_case(None, "case_store_service", case, timeout=120)
