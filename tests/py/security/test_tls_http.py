"""HTTPS on the control plane's HTTP listeners (net_http.h, docs/security.md):
the metadata server (the C binary and `python -m mooncake.http_metadata_server`)
and the master's admin port, with certificates made by the openssl CLI.
Python's ssl/http.client is the client of record (a second implementation);
our own libcurl client goes through a real transfer engine. Bytes read back
exactly; a missing client certificate, one from another CA, a client that
trusts another CA, and plaintext HTTP to an HTTPS listener are each refused
without a hang, with one line naming the peer."""
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time

import pytest

from auth_util import SECRET
from mc_fixtures import SAN_RE, _readline, bin_dir, child_env, clean_env
from tls_util import TlsMaster, client_context, lines_naming, make_pki, server_flags, tls_env


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


class MetaServer:
    """A metadata server with TLS flags: the C binary, or the Python module."""

    def __init__(self, pki, python=False, secret=None):
        env = clean_env()
        for v in ("MC_CLUSTER_SECRET", "MC_CLUSTER_SECRET_FILE", "MC_TLS_CERT_FILE",
                  "MC_TLS_KEY_FILE", "MC_TLS_CA_FILE"):
            env.pop(v, None)
        if secret:
            env["MC_CLUSTER_SECRET"] = secret
        if python:
            env = dict(child_env(), **{k: v for k, v in env.items() if k.startswith("MC_")})
            argv = [sys.executable, "-m", "mooncake.http_metadata_server", "--host",
                    "127.0.0.1", "--port", "0", "--log-level", "WARNING"] + server_flags(pki, "-")
        else:
            argv = [os.path.join(bin_dir(), "mooncake_http_metadata_server"), "--host",
                    "127.0.0.1", "--port", "0"] + server_flags(pki, "-")
        self.p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        line = _readline(self.p, 60) or ""
        m = re.search(r"(?:listening|serving) on (\S+)", line)
        assert m, line + self.p.stderr.read() if self.p.poll() is not None else line
        self.addr = m.group(1)
        self.host, self.port = self.addr.rsplit(":", 1)
        self.port = int(self.port)
        self.err = ""

    def stop(self):
        self.p.terminate()
        _, err = self.p.communicate(timeout=30)
        self.err = err
        assert not SAN_RE.search(err), err[-4000:]
        return err


@pytest.fixture
def servers():
    started = []

    def start(*a, **kw):
        s = MetaServer(*a, **kw)
        started.append(s)
        return s

    yield start
    for s in started:
        if s.p.returncode is None:
            s.stop()


def https(addr, ctx):
    host, port = addr.rsplit(":", 1)
    return http.client.HTTPSConnection(host, int(port), context=ctx, timeout=10)


def put_get_exact(addr, ctx):
    blob = json.dumps({"blob": os.urandom(3000).hex()}).encode()
    c = https(addr, ctx)
    c.request("PUT", "/metadata?key=mooncake/ram/tls-test", body=blob)
    r = c.getresponse()
    r.read()
    assert r.status == 200, r.status
    c.request("GET", "/metadata?key=mooncake/ram/tls-test")
    r = c.getresponse()
    assert r.status == 200 and r.read() == blob
    c.close()


def refused_line(s, port):
    """The server's lines naming the peer, after it stopped (all flushed)."""
    return lines_naming(s.stop(), port)


@pytest.mark.parametrize("python", [False, True], ids=["c", "python"])
def test_metadata_put_get_over_https(servers, pki, python):
    s = servers(pki, python=python)
    put_get_exact(s.addr, client_context(pki))
    assert "without a valid HTTP request" not in s.stop()  # served connections are not "silent"


def test_missing_client_certificate_refused(servers, pki):
    s = servers(pki)
    c = https(s.addr, client_context(pki, cert=None))
    c.connect()
    port = c.sock.getsockname()[1]
    c.request("GET", "/metadata?key=mooncake/ram/x")
    r = c.getresponse()
    assert r.status == 403 and b"client certificate" in r.read()
    lines = refused_line(s, port)
    assert len(lines) == 1 and "client certificate required" in lines[0], lines


def test_certificate_from_another_ca_refused(servers, pki):
    s = servers(pki)
    c = https(s.addr, client_context(pki, cert="rogue"))
    c.connect()
    port = c.sock.getsockname()[1]
    c.request("PUT", "/metadata?key=mooncake/ram/x", body=b"{}")
    r = c.getresponse()
    assert r.status == 403
    r.read()
    # nothing was stored
    c2 = https(s.addr, client_context(pki))
    c2.request("GET", "/metadata?key=mooncake/ram/x")
    assert c2.getresponse().status == 404
    lines = refused_line(s, port)
    assert len(lines) == 1 and "NOT trusted" in lines[0], lines


def test_client_trusting_another_ca_refuses_the_server(servers, pki):
    s = servers(pki)
    with pytest.raises(ssl.SSLCertVerificationError):
        https(s.addr, client_context(pki, ca="other")).request("GET", "/health")


def test_plaintext_to_https_refused_without_hang(servers, pki):
    s = servers(pki)
    c = http.client.HTTPConnection(s.host, s.port, timeout=10)
    c.connect()
    port = c.sock.getsockname()[1]
    t = time.monotonic()
    with pytest.raises((http.client.HTTPException, ConnectionError, socket.timeout)):
        c.request("GET", "/metadata?key=mooncake/ram/x")
        c.getresponse()
    assert time.monotonic() - t < 5
    c.close()
    lines = refused_line(s, port)
    assert len(lines) == 1 and "TLS expected" in lines[0], lines


def test_our_curl_client_over_https(servers, pki, tmp_path):
    """A transfer engine (libcurl metadata client) on an HTTPS metadata server
    with TLS and the secret combined; without the client certificate it cannot
    start, in one line naming the server."""
    s = servers(pki, python=True, secret=SECRET)
    code = ("from mooncake.engine import TransferEngine\n"
            "te = TransferEngine()\n"
            "print('rc', te.initialize('127.0.0.1', 'https://%s/metadata', 'tcp', ''))\n"
            % s.addr)
    env = child_env()
    env.update(tls_env(pki), MC_CLUSTER_SECRET=SECRET)
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=60)
    assert "rc 0" in p.stdout, p.stdout + p.stderr
    env.update(tls_env(pki, cert=None))
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=60)
    assert "rc 0" not in p.stdout
    lines = [ln for ln in p.stderr.splitlines() if "TLS client certificate" in ln]
    assert len(lines) == 1 and s.addr in lines[0] and "(missing)" in lines[0], p.stderr[-3000:]


def test_master_admin_over_https(tmp_path, pki, monkeypatch):
    for v in ("MC_CLUSTER_SECRET", "MC_CLUSTER_SECRET_FILE"):
        monkeypatch.delenv(v, raising=False)
    m = TlsMaster(tmp_path, pki, ["--enable_persistence=false"])
    try:
        c = https(m.admin, client_context(pki))
        c.request("GET", "/metrics")
        r = c.getresponse()
        assert r.status == 200 and b"master" in r.read()
        c = https(m.admin, client_context(pki, cert=None))
        c.request("GET", "/metrics")
        assert c.getresponse().status == 403
        put_get_exact(m.meta[len("https://"):-len("/metadata")], client_context(pki))
    finally:
        m.stop()
    assert not SAN_RE.search(m.stderr()), m.stderr()[-4000:]


def test_cli_over_https(tmp_path, pki, monkeypatch):
    """The `mooncake` CLI reads the TLS files from MC_TLS_* and speaks https
    to a TLS master's admin port; without them it fails with a message."""
    for v in ("MC_CLUSTER_SECRET", "MC_CLUSTER_SECRET_FILE"):
        monkeypatch.delenv(v, raising=False)
    m = TlsMaster(tmp_path, pki, ["--enable_persistence=false", "--metrics_host", "127.0.0.1"])
    try:
        def cli(env_tls, *args):
            env = child_env()
            env.update(env_tls)
            return subprocess.run([sys.executable, "-m", "mooncake.ctl", "--master", m.rpc,
                                   "--admin", m.admin] + list(args), env=env,
                                  capture_output=True, text=True, timeout=60)
        p = cli(tls_env(pki), "status")
        assert p.returncode == 0, p.stdout + p.stderr
        p = cli(tls_env(pki, cert=None, ca=None), "status")
        assert p.returncode != 0 and "TLS (https) server" in p.stdout + p.stderr, p.stdout + p.stderr
    finally:
        m.stop()
    assert not SAN_RE.search(m.stderr()), m.stderr()[-4000:]
