"""TLS on the master RPC (src/net/net_tls.h, docs/security.md), against real
processes and certificates made by the openssl CLI: store clients put and
get byte for byte through a TLS master (files from the environment or from
mooncake.json); a client certificate from another CA, a missing one, a
client that trusts another CA, a plaintext client to the TLS master and a TLS
client to a plaintext one are each refused, without a hang, with one line
naming the peer; TLS and the cluster secret combine. Python's ssl module
speaks the RPC over TLS as a second implementation."""
import socket
import ssl
import time

import pytest

from auth_util import SECRET, run_case
from mc_fixtures import SAN_RE, Master
import mp_wire
from mp_wire import Conn, s_str
from tls_util import TlsMaster, client_context, key_of, lines_naming, make_pki, tls_env

AUTH_REQUIRED = -1020


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def masters(tmp_path, monkeypatch):
    """masters(pki=None, secret=None) -> a TLS master (pki) or a plaintext one."""
    started = []

    def start(pki=None, secret=None):
        with monkeypatch.context() as mp:
            for v in ("MC_CLUSTER_SECRET", "MC_CLUSTER_SECRET_FILE", "MC_TLS_CERT_FILE",
                      "MC_TLS_KEY_FILE", "MC_TLS_CA_FILE"):
                mp.delenv(v, raising=False)
            if secret:
                mp.setenv("MC_CLUSTER_SECRET", secret)
            extra = ["--enable_persistence=false"]
            m = TlsMaster(tmp_path, pki, extra) if pki else Master(tmp_path, extra=extra)
        started.append(m)
        return m

    yield start
    for m in started:
        m.stop()
        assert not SAN_RE.search(m.stderr()), m.stderr()[-4000:]


def store_case(m, func, secret=None, env=None):
    e = dict(MC_TEST_RPC=m.rpc, MC_TEST_META=m.meta)
    e.update(env or {})
    return run_case("case_tls", func, secret, e, timeout=90)


def wait_for(m, pred, what, timeout=10):
    """The master's stderr once pred(stderr) holds (readiness, not a sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        err = m.stderr()
        if pred(err):
            return err
        time.sleep(0.05)
    raise AssertionError("no %s in:\n%s" % (what, m.stderr()[-4000:]))


def test_put_get_through_tls_master(masters, pki):
    m = masters(pki)
    assert m.meta.startswith("https://")
    store_case(m, "case_pool_works", env=tls_env(pki))
    assert "refused" not in m.stderr(), m.stderr()[-3000:]


def test_tls_files_from_mooncake_json(masters, pki):
    m = masters(pki)
    env = tls_env(pki, cert=None, ca=None)  # none in the environment
    env.update(MC_TEST_TLS_CERT=pki["client"], MC_TEST_TLS_KEY=key_of(pki["client"]),
               MC_TEST_TLS_CA=pki["ca"], MC_TEST_TLS_OTHER_KEY=key_of(pki["rogue"]))
    store_case(m, "case_config_file_names_tls", env=env)
    store_case(m, "case_config_file_bad_tls", env=env)


def test_python_ssl_speaks_the_rpc(masters, pki):
    """A second TLS implementation (CPython's ssl) gets answers on our frames."""
    m = masters(pki)
    c = Conn(m.rpc)
    c.sock = client_context(pki).wrap_socket(c.sock, server_hostname="127.0.0.1")
    assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
    c.ready()
    assert c.call(mp_wire.EXIST, s_str("nothing"))[0] == 0  # served
    c.close()


def test_certificate_from_another_ca_refused(masters, pki):
    m = masters(pki)
    out = store_case(m, "case_setup_refused", env=tls_env(pki, cert="rogue"))
    assert "setup rc" in out
    err = wait_for(m, lambda e: "refused: TLS" in e, "refusal line")
    lines = [ln for ln in err.splitlines() if "refused: TLS" in ln]
    assert len(lines) == 1 and "certificate verify failed" in lines[0], lines
    assert "peer 127.0.0.1:" in lines[0]


def test_client_trusting_another_ca_refuses_the_master(masters, pki):
    m = masters(pki)
    out = store_case(m, "case_setup_refused", env=tls_env(pki, ca="other"))
    assert "certificate verify failed" in out, out[-3000:]
    assert m.rpc in out  # the client's line names the master


def test_missing_client_certificate_refused(masters, pki):
    m = masters(pki)
    ctx = client_context(pki, cert=None)
    s = socket.create_connection(m.rpc.rsplit(":", 1), timeout=10)
    port = s.getsockname()[1]
    t = ctx.wrap_socket(s, server_hostname="127.0.0.1")
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        t.sendall(mp_wire.frame(mp_wire.SERVICE_READY, 1, s_str("2.0.0")))
        if not t.recv(64):
            raise ConnectionError("closed")
    t.close()
    err = wait_for(m, lambda e: lines_naming(e, port), "line naming the peer")
    lines = lines_naming(err, port)
    assert len(lines) == 1 and "did not return a certificate" in lines[0], lines


def test_plaintext_client_to_tls_master(masters, pki):
    m = masters(pki)
    c = Conn(m.rpc)
    port = c.sock.getsockname()[1]
    t = time.monotonic()
    c.send(mp_wire.SERVICE_READY, s_str("2.0.0"))
    assert c.sock.recv(64) == b""  # closed at once, no answer and no hang
    assert time.monotonic() - t < 5
    err = wait_for(m, lambda e: lines_naming(e, port), "line naming the peer")
    lines = lines_naming(err, port)
    assert len(lines) == 1 and "TLS expected" in lines[0], lines
    # a real store client without TLS: refused too, not hung
    out = store_case(m, "case_setup_refused", env=tls_env(pki, cert=None, ca=None))
    assert "setup rc" in out


def test_tls_client_to_plaintext_master(masters, pki):
    m = masters()
    out = store_case(m, "case_setup_refused", env=tls_env(pki))
    assert "TLS handshake failed" in out and "TLS expected" in out, out[-3000:]
    err = wait_for(m, lambda e: "TLS handshake on a plaintext listener" in e, "its line")
    assert len([ln for ln in err.splitlines() if "plaintext listener" in ln]) == 1


def test_tls_and_the_secret_combine(masters, pki):
    m = masters(pki, secret=SECRET)
    store_case(m, "case_pool_works", secret=SECRET, env=tls_env(pki))
    out = store_case(m, "case_setup_refused", env=tls_env(pki))  # TLS but no secret
    assert "requires the cluster secret" in out, out[-3000:]
    # a proved TLS connection from Python: the secret's frames inside TLS
    c = Conn(m.rpc)
    c.sock = client_context(pki).wrap_socket(c.sock, server_hostname="127.0.0.1")
    assert c.call(mp_wire.SERVICE_READY, s_str("2.0.0"))[0] == AUTH_REQUIRED


def test_standalone_client_and_its_dummies_over_tls(masters, pki, tmp_path):
    """mooncake_client with --tls_* flags on a TLS master (RPC and HTTPS
    metadata); a dummy client fetches its configuration over HTTPS and puts
    and gets through it; a dummy without TLS is refused, and the client logs
    that connection (and only that one) as a failed TLS handshake."""
    from mc_fixtures import StandaloneClient
    m = masters(pki)
    # it serves dummies too: its certificate names the address they dial
    flags = ["--tls_cert_file", pki["server"], "--tls_key_file", key_of(pki["server"]),
             "--tls_ca_file", pki["ca"]]
    silent = "without a valid HTTP request"
    for case, env in (("case_dummy_works", tls_env(pki)),
                      ("case_dummy_refused", tls_env(pki, cert=None, ca=None))):
        c = StandaloneClient(tmp_path, m, extra=flags)
        try:
            e = dict(MC_TEST_RPC=m.rpc, MC_TEST_META=m.meta, MC_TEST_CLIENT=c.addr)
            e.update(env)
            run_case("case_auth", case, None, e)
        finally:
            c.stop()
        err = c.stderr()
        assert not SAN_RE.search(err), err[-4000:]
        lines = [ln for ln in err.splitlines() if silent in ln]
        if case == "case_dummy_works":
            assert not lines, lines  # served HTTPS connections are not failed handshakes
        else:
            assert len(lines) == 1 and "TLS expected" in lines[0], lines
