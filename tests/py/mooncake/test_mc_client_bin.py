"""mooncake_client, the standalone store client binary: upstream's flags in
both spellings, --help, bad command lines, its HTTP endpoint for dummy
clients (good and bad requests), the segment on the master, and a clean
unmount on SIGTERM. No extension is loaded here: everything talks to the real
processes over loopback."""
import json
import os
import socket
import subprocess
import urllib.error
import urllib.request

import pytest

from mc_fixtures import SAN_RE, StandaloneClient, bin_dir, clean_env

UPSTREAM_FLAGS = ["host", "metadata_server", "device_names", "master_server_address", "protocol",
                  "port", "global_segment_size", "local_buffer_size", "threads", "tenant_id",
                  "enable_offload", "start_offload_rpc_server", "enable_http_server", "http_port"]


def exe():
    path = os.path.join(bin_dir(), "mooncake_client")
    if not os.path.exists(path):
        pytest.skip("mooncake_client not built at %s" % path)
    return path


def run(*args):
    return subprocess.run([exe()] + list(args), capture_output=True, text=True, timeout=30,
                          env=clean_env())


def http(addr, path, method="GET", body=None):
    req = urllib.request.Request("http://%s%s" % (addr, path), data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def segments(master):
    return http(master.admin, "/get_all_segments")[2].decode().split()


def test_help():
    p = run("--help")
    assert p.returncode == 0
    for f in UPSTREAM_FLAGS:
        assert "--" + f + " " in p.stdout, f
    assert '(default "4 GB")' in p.stdout and '(default "50052")' in p.stdout
    assert run("-h").returncode == 0


@pytest.mark.parametrize("args,needle", [
    (["--bogus=1"], "unknown flag '--bogus'"),
    (["--global_segment_size", "50%"], "--global_segment_size"),
    (["--local_buffer_size=-1"], "--local_buffer_size"),
    (["--port", "70000"], "--port"),
    (["--threads=0"], "--threads"),
    (["--enable_http_server=maybe"], "--enable_http_server"),
    (["--host"], "needs a value"),
    (["stray"], "unexpected argument 'stray'"),
    (["--host="], "must not be empty"),
])
def test_bad_command_lines(args, needle):
    p = run(*args)
    assert p.returncode == 2, p
    assert needle in p.stderr, p.stderr
    assert "usage:" in p.stderr


def test_master_unreachable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = "127.0.0.1:%d" % s.getsockname()[1]
    p = run("--host", "127.0.0.1", "--master_server_address", dead, "--metadata_server",
            "P2PHANDSHAKE", "--port", "0", "--global_segment_size", "16MB")
    assert p.returncode == 1, p
    assert dead in p.stderr


def test_serves_and_unmounts(master, tmp_path):
    # the fixture's "--flag value" spellings
    c = StandaloneClient(tmp_path, master, ["--tenant_id", "default", "--threads", "2"])
    try:
        assert c.name.startswith("127.0.0.1:")
        assert c.name in segments(master)
        st, hdr, body = http(c.addr, "/v1/client_config")
        assert st == 200 and hdr["Content-Type"] == "application/json"
        cfg = json.loads(body)
        assert cfg == {"version": 1, "name": c.name, "master_server_address": master.rpc,
                       "metadata_server": master.meta, "protocol": "tcp", "device_names": "",
                       "tenant_id": "default", "global_segment_size": 64 << 20,
                       "local_buffer_size": 0}
        st, _, body = http(c.addr, "/health")
        assert st == 200 and json.loads(body)["status"] == "ok"
        # bad requests: JSON errors, and the server keeps serving
        st, _, body = http(c.addr, "/nope")
        assert st == 404 and json.loads(body) == {"error": "not found"}
        st, hdr, body = http(c.addr, "/v1/client_config", "POST", b"{}")
        assert st == 405 and hdr["Allow"] == "GET, HEAD" and "error" in json.loads(body)
        host, port = c.addr.split(":")
        with socket.create_connection((host, int(port)), timeout=5) as s:
            # a large body is refused from its headers alone
            s.sendall(b"PUT /v1/client_config HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 100000\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 413")
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(b"\x00\xff garbage \r\n\r\n" * 50)
            s.settimeout(5)
            try:
                s.recv(1000)
            except OSError:
                pass
        assert http(c.addr, "/v1/client_config")[0] == 200
        # --host=127.0.0.1 binds that address only, not every address
        assert [ln for ln in c.lines if "dummy clients listening on 127.0.0.1:" in ln], c.lines
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", int(port)), timeout=5).close()
    finally:
        rc = c.stop()
    assert rc == 0, c.stderr()
    assert c.name not in segments(master)
    assert not SAN_RE.search(c.stderr()), c.stderr()


def test_equals_spelling_and_http_server(master, tmp_path):
    c = StandaloneClient(tmp_path, master, [
        "--protocol=tcp", "--device_names=", "--local_buffer_size=1MB", "--tenant_id=default",
        "--global_segment_size=33554432", "--enable_http_server", "--http_port=0",
        "--nostart_offload_rpc_server", "--enable_offload=false"])
    try:
        http_line = [ln for ln in c.lines if "http listening on" in ln]
        assert http_line, c.lines
        haddr = "127.0.0.1:" + http_line[0].strip().rsplit(":", 1)[1]
        cfg = json.loads(http(haddr, "/v1/client_config")[2])
        assert cfg["global_segment_size"] == 32 << 20 and cfg["local_buffer_size"] == 1 << 20
        assert json.loads(http(c.addr, "/v1/client_config")[2]) == cfg
        assert http(haddr, "/health")[0] == 200
    finally:
        assert c.stop() == 0, c.stderr()


def test_killed_client_takes_its_name_back(master, tmp_path):
    """kill -9 leaves the store's mooncake/rpc_meta/<name> record behind; a
    restart under the same fixed name takes it back at once, while a second
    client under the name of a live one is still refused, naming its address."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        name = "127.0.0.1:%d" % s.getsockname()[1]
    c = StandaloneClient(tmp_path, master, ["--host", name])
    assert c.name == name
    c.p.kill()
    c.p.wait()
    c.err.close()
    c2 = StandaloneClient(tmp_path, master, ["--host", name])
    try:
        assert c2.name == name
        assert name in segments(master)
        p = run("--host", name, "--metadata_server", master.meta, "--master_server_address",
                master.rpc, "--port", "0", "--global_segment_size", "16MB")
        assert p.returncode == 1, p
        assert "another engine already uses this name, live at" in p.stderr, p.stderr
        assert http(c2.addr, "/health")[0] == 200
    finally:
        rc = c2.stop()
    assert rc == 0, c2.stderr()
    assert not SAN_RE.search(c2.stderr()), c2.stderr()
