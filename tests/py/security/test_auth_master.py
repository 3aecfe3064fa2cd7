"""The master RPC under a cluster secret (docs/security.md): the exchange of
src/net/net_auth.h, checked here with Python's own hmac so that the wire
format is pinned by a second implementation; refusals name the peer in one
line and change nothing; a replayed proof is refused; an old handshake gets
a clear error, not a hang; real store clients with the right, a wrong or no
secret."""
import os
import subprocess
import struct

import pytest

from auth_util import SECRET, key, mac, run_store_case
from mc_fixtures import bin_dir
import mp_wire
from mp_wire import Conn, s_str

AUTH_HELLO, AUTH_PROOF = 0x06, 0x07
AUTH_REQUIRED, AUTH_FAILED, AUTH_OFF, INVALID_VERSION = -1020, -1021, -1022, -300


def hello(c, nonce, version=1):
    """(status, server nonce, server mac)."""
    status, body = c.call(AUTH_HELLO, struct.pack("<B", version) + nonce)
    return status, body[:32], body[32:64]


def closed(c):
    c.sock.settimeout(10)
    try:
        return c.sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_exchange_then_service(start_master):
    m = start_master(SECRET)
    k = key(SECRET)
    c = Conn(m.rpc)
    nc = os.urandom(32)
    status, ns, smac = hello(c, nc)
    assert status == 0
    assert smac == mac(k, b"S", "master", nc, ns)  # the master holds the secret
    assert c.call(AUTH_PROOF, mac(k, b"C", "master", ns, nc))[0] == 0
    c.ready()
    assert c.call(mp_wire.EXIST, s_str("nothing"))[0] == 0
    c.close()


def test_no_proof_is_refused_in_one_line(start_master):
    m = start_master(SECRET)
    c = Conn(m.rpc)
    status, _ = c.call(mp_wire.SERVICE_READY, s_str("2.0.0"))
    assert status == AUTH_REQUIRED
    assert closed(c)
    port = c.sock.getsockname()[1]
    lines = [ln for ln in m.stderr().splitlines() if "peer 127.0.0.1:%d" % port in ln]
    assert len(lines) == 1 and "no proof of the cluster secret" in lines[0], lines


def test_replayed_proof_is_refused(start_master):
    m = start_master(SECRET)
    k = key(SECRET)
    nc = os.urandom(32)
    first = Conn(m.rpc)
    _, ns, _ = hello(first, nc)
    proof = mac(k, b"C", "master", ns, nc)
    assert first.call(AUTH_PROOF, proof)[0] == 0
    # an eavesdropper replays the client's frames on a connection of its own
    thief = Conn(m.rpc)
    status, ns2, _ = hello(thief, nc)
    assert status == 0 and ns2 != ns  # a fresh server nonce per connection
    assert thief.call(AUTH_PROOF, proof)[0] == AUTH_FAILED
    assert closed(thief)
    assert "wrong cluster secret" in m.stderr()
    first.ready()  # the honest connection is unaffected


def test_wrong_proof_changes_nothing(start_master):
    m = start_master(SECRET)
    c = Conn(m.rpc)
    nc = os.urandom(32)
    _, ns, _ = hello(c, nc)
    bad = mac(key("another secret, also long enough"), b"C", "master", ns, nc)
    assert c.call(AUTH_PROOF, bad)[0] == AUTH_FAILED
    assert closed(c)
    # a request pipelined after a bad proof is never served
    c2 = Conn(m.rpc)
    nc = os.urandom(32)
    _, ns, _ = hello(c2, nc)
    seg = mp_wire.s_segment((1, 2), "evil", 1 << 30, 1 << 20) + mp_wire.s_uuid((3, 4))
    c2.sock.sendall(mp_wire.frame(AUTH_PROOF, 9, bad) + mp_wire.frame(mp_wire.MOUNT_SEGMENT, 10,
                                                                       seg))
    assert c2.reply()[2] == AUTH_FAILED
    assert closed(c2)
    ok = Conn(m.rpc)
    nc = os.urandom(32)
    _, ns, _ = hello(ok, nc)
    assert ok.call(AUTH_PROOF, mac(key(SECRET), b"C", "master", ns, nc))[0] == 0
    ok.ready()
    import urllib.request
    segs = urllib.request.urlopen("http://%s/get_all_segments" % m.admin, timeout=10).read()
    assert b"evil" not in segs


def test_other_handshake_version_gets_a_clear_error(start_master):
    m = start_master(SECRET)
    c = Conn(m.rpc, timeout=10)
    status, _, _ = hello(c, os.urandom(32), version=2)
    assert status == INVALID_VERSION
    assert closed(c)
    assert "handshake version 2 (this master speaks 1)" in m.stderr()


def test_open_master_answers_hello_with_auth_off(start_master):
    m = start_master(None)
    c = Conn(m.rpc)
    assert hello(c, os.urandom(32))[0] == AUTH_OFF
    c.ready()  # and serves as before


@pytest.mark.parametrize("client_secret,master_secret,case,needle", [
    (SECRET, SECRET, "case_pool_works", None),
    (None, SECRET, "case_setup_refused", "requires the cluster secret"),
    ("a wrong secret of sufficient length", SECRET, "case_setup_refused",
     "the cluster secrets differ"),
    (SECRET, None, "case_setup_refused", "has no cluster secret configured"),
])
def test_store_clients(start_master, client_secret, master_secret, case, needle):
    m = start_master(master_secret)
    out = run_store_case(m, case, client_secret)
    if needle:
        lines = [ln for ln in out.splitlines() if needle in ln]
        assert len(lines) == 1, out  # one line says why, not a retry per attempt


def test_secret_file_flag_and_config_file(start_master, tmp_path):
    secret_file = tmp_path / "cluster.secret"
    secret_file.write_text(SECRET + "\n")
    secret_file.chmod(0o600)
    m = start_master(None, ["--cluster_secret_file", str(secret_file)])
    out = run_store_case(m, "case_config_file_names_the_secret", None,
                         {"MC_TEST_SECRET_TEXT": SECRET})
    assert SECRET not in out + m.stderr()  # never logged


@pytest.mark.parametrize("case", ["case_config_path_setup_positional",
                                  "case_config_path_engine"])
def test_config_path_secret_reaches_positional_setup(start_master, case):
    """The way vLLM's connectors call us: MOONCAKE_CONFIG_PATH names a
    mooncake.json with cluster_secret_file, and the caller passes setup() or
    initialize() only the other fields (no secret in the environment)."""
    m = start_master(SECRET)
    out = run_store_case(m, case, None, {"MC_TEST_SECRET_TEXT": SECRET})
    assert SECRET not in out + m.stderr()
    assert "no proof of the cluster secret" not in m.stderr()


def test_config_path_short_secret_is_refused(start_master):
    m = start_master(SECRET)
    out = run_store_case(m, "case_config_path_short_secret", None)
    lines = [ln for ln in out.splitlines() if "MOONCAKE_CONFIG_PATH" in ln]
    assert len(lines) == 1 and "at least 16" in lines[0] and "short" not in lines[0], out


def test_bad_secret_file_is_a_clear_exit(tmp_path):
    short = tmp_path / "short.secret"
    short.write_text("tiny\n")
    for prog, flag in (("mooncake_master", "--cluster_secret_file"),
                       ("mooncake_http_metadata_server", "--cluster-secret-file")):
        p = subprocess.run([os.path.join(bin_dir(), prog), flag, str(short)],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 2, (prog, p.stderr)
        assert str(short) in p.stderr and "at least 16" in p.stderr and "tiny" not in p.stderr
