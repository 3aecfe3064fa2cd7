"""The cluster secret over HTTP (net_http.h): the metadata server (reads and
writes), the master's mutating admin endpoints and mooncake_client's
dummy-client endpoint. A Python client of the protocol checks the server's
MAC on every answer; requests without a proof, with a wrong one or with a
replayed one are refused with one line naming the peer and change nothing;
/health and /metrics stay open."""
import http.client
import os
import re
import subprocess
import sys

import pytest

from auth_util import SECRET, key, mac
from mc_fixtures import SAN_RE, _readline, bin_dir, child_env, clean_env

HELLO, PROOF = "X-Mooncake-Auth-Hello", "X-Mooncake-Auth-Proof"
NONCE, MAC = "X-Mooncake-Auth-Nonce", "X-Mooncake-Auth-Mac"


class Client:
    """One keep-alive connection speaking the protocol with secret."""

    def __init__(self, addr, service, secret=SECRET):
        host, port = addr.rsplit(":", 1)
        self.c = http.client.HTTPConnection(host, int(port), timeout=10)
        self.service, self.k = service, key(secret)

    def raw(self, method, path, body=None, headers=None):
        self.c.request(method, path, body=body, headers=headers or {})
        r = self.c.getresponse()
        return r.status, r.read(), r

    def call(self, method, path, body=None):
        """(status, body) of a proved answer; asserts every server MAC."""
        nc = os.urandom(32)
        h = {HELLO: "1:" + nc.hex()}
        st, data, r = self.raw(method, path, body, h)
        ns = bytes.fromhex(r.getheader(NONCE))
        assert bytes.fromhex(r.getheader(MAC)) == mac(self.k, b"S", self.service, nc, ns)
        if st == 401:  # a challenge: prove it
            h[PROOF] = mac(self.k, b"C", self.service, ns, nc).hex()
            self.last_proof = dict(h)
            if r.getheader("Connection", "").lower() == "close" or r.will_close:
                self.c.close()
            st, data, r = self.raw(method, path, body, h)
            ns = bytes.fromhex(r.getheader(NONCE))
            assert bytes.fromhex(r.getheader(MAC)) == mac(self.k, b"S", self.service, nc, ns)
        return st, data


class MetaServer:
    def __init__(self, secret):
        env = clean_env()
        env.pop("MC_CLUSTER_SECRET_FILE", None)
        env.pop("MC_CLUSTER_SECRET", None)
        if secret:
            env["MC_CLUSTER_SECRET"] = secret
        self.p = subprocess.Popen([os.path.join(bin_dir(), "mooncake_http_metadata_server"),
                                   "--host", "127.0.0.1", "--port", "0"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = _readline(self.p, 30) or ""
        m = re.search(r"listening on (\S+)", line)
        assert m, line
        self.addr = m.group(1)

    def stop(self):
        self.p.terminate()
        _, err = self.p.communicate(timeout=30)
        assert not SAN_RE.search(err), err[-4000:]
        return err


@pytest.fixture
def meta():
    servers = []

    def start(secret=SECRET):
        s = MetaServer(secret)
        servers.append(s)
        return s

    yield start
    for s in servers:
        if s.p.returncode is None:
            s.stop()


def test_metadata_server_needs_the_secret(meta):
    s = meta()
    c = Client(s.addr, "meta")
    st, _ = c.call("PUT", "/metadata?key=mooncake/ram/a", b'{"v":1}')
    assert st == 200
    assert c.call("GET", "/metadata?key=mooncake/ram/a") == (200, b'{"v":1}')
    # anonymous reads and writes: 401, nothing changes
    anon = Client(s.addr, "meta")
    assert anon.raw("GET", "/metadata?key=mooncake/ram/a")[0] == 401
    anon = Client(s.addr, "meta")
    assert anon.raw("PUT", "/metadata?key=mooncake/ram/a", b"evil")[0] == 401
    anon = Client(s.addr, "meta")
    assert anon.raw("DELETE", "/metadata?key=mooncake/ram/a")[0] == 401
    assert c.call("GET", "/metadata?key=mooncake/ram/a") == (200, b'{"v":1}')
    # a wrong secret: 403, and the connection is closed
    bad = Client(s.addr, "meta", "another secret that is long enough")
    nc = os.urandom(32)
    st, _, r = bad.raw("GET", "/metadata?key=mooncake/ram/a", headers={HELLO: "1:" + nc.hex()})
    assert st == 401
    ns = bytes.fromhex(r.getheader(NONCE))
    forged = mac(key("another secret that is long enough"), b"C", "meta", ns, nc)
    st, _, _ = Client(s.addr, "meta").raw("GET", "/metadata?key=mooncake/ram/a", headers={
        HELLO: "1:" + nc.hex(), PROOF: forged.hex()})
    assert st == 403
    # the health check stays open
    assert Client(s.addr, "meta").raw("GET", "/health")[0] == 200
    err = s.stop()
    # one line names the first peer refused; later ones within the second are counted
    assert "127.0.0.1:" in err and "refused: no proof of the cluster secret" in err


def test_proof_is_used_once(meta):
    s = meta()
    c = Client(s.addr, "meta")
    assert c.call("GET", "/metadata?key=nothing")[0] == 404
    replay = Client(s.addr, "meta")
    st, _, _ = replay.raw("GET", "/metadata?key=nothing", headers=c.last_proof)
    assert st == 403


def test_proved_connection_needs_no_second_proof(meta):
    s = meta()
    c = Client(s.addr, "meta")
    assert c.call("PUT", "/metadata?key=k", b"1")[0] == 200
    nc = os.urandom(32)
    st, data, r = c.raw("GET", "/metadata?key=k", headers={HELLO: "1:" + nc.hex()})
    assert (st, data) == (200, b"1")  # served at once on the proved connection
    ns = bytes.fromhex(r.getheader(NONCE))
    assert bytes.fromhex(r.getheader(MAC)) == mac(key(SECRET), b"S", "meta", nc, ns)


def test_other_handshake_version(meta):
    s = meta()
    st, body, _ = Client(s.addr, "meta").raw("GET", "/metadata?key=k",
                                             headers={HELLO: "2:" + os.urandom(32).hex()})
    assert st == 400 and b"speaks 1" in body


def test_c_clients_follow_the_protocol(meta, tmp_path):
    """mc_meta over http (the store's metadata client) through a real
    engine: the case runs put/get with the right secret; with a wrong one
    the engine cannot even start."""
    s = meta()
    env = child_env()
    env["MC_CLUSTER_SECRET"] = SECRET
    code = ("from mooncake.engine import TransferEngine\n"
            "te = TransferEngine()\n"
            "print('rc', te.initialize('127.0.0.1', 'http://%s/metadata', 'tcp', ''))\n" % s.addr)
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=60)
    assert "rc 0" in p.stdout, p.stdout + p.stderr
    env["MC_CLUSTER_SECRET"] = "a different secret, also long enough"
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=60)
    assert "rc 0" not in p.stdout
    assert "the cluster secrets differ" in p.stderr, p.stderr[-3000:]
