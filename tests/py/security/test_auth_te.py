"""Transfer-engine connections under a cluster secret: lanes and the P2P
handshake prove it (the same exchange as the master's, service "te"); a
READ or WRITE before the proof is refused and closes the connection; an
anonymous WRITE cannot change a byte of registered memory."""
import hashlib
import os
import socket
import struct
import subprocess
import sys

import pytest

from auth_util import SECRET, key, mac as auth_mac, run_case
from mc_fixtures import HERE as MC_HERE, SAN_RE, child_env

TE_MAGIC, TE_HDR = 0x4554434D, struct.Struct("<IBBHIiQQ")
READ, WRITE, AUTH_HELLO, AUTH_PROOF, REPLY = 0x00, 0x01, 0x13, 0x14, 0x80
ST_AUTH_REQUIRED, ST_AUTH_FAILED = 4, 5
TARGET = os.path.join(MC_HERE, "cases", "te_target.py")


def mac(k, role, a, b):
    return auth_mac(k, role, "te", a, b)


def run_te_case(func, mine, target):
    extra = {"MC_FORCE_TCP": "1"}
    if target:
        extra["MC_TEST_TARGET_SECRET"] = target
    return run_case("case_auth_te", func, mine, extra, timeout=120)


@pytest.mark.parametrize("mine,target,func,needle", [
    (SECRET, SECRET, "case_read_write_works", None),
    (None, SECRET, "case_transfer_refused", "no proof of the cluster secret"),
    ("another secret, long enough too", SECRET, "case_transfer_refused",
     "the cluster secrets differ"),
    (SECRET, None, "case_transfer_refused", "has no cluster secret configured"),
])
def test_engines(mine, target, func, needle):
    out = run_te_case(func, mine, target)
    if needle:
        assert needle in out, out[-4000:]


class Target:
    """te_target.py holding SECRET; .port, .addr, .sha(off, n)."""

    def __init__(self):
        env = child_env()
        env["MC_CLUSTER_SECRET"] = SECRET
        self.p = subprocess.Popen([sys.executable, TARGET, "P2PHANDSHAKE", "127.0.0.1"], env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        w = self.p.stdout.readline().split()
        assert w and w[0] == "READY", w
        self.port, self.addr = int(w[1].rsplit(":", 1)[1]), int(w[2])

    def sha(self, off, n):
        self.p.stdin.write("sha %d %d\n" % (off, n))
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def close(self):
        self.p.stdin.write("quit\n")
        self.p.stdin.flush()
        _, err = self.p.communicate(timeout=30)
        assert self.p.returncode == 0, err[-4000:]
        assert not SAN_RE.search(err), err[-4000:]
        return err


def frame(op, rid, addr=0, length=0, status=0):
    return TE_HDR.pack(TE_MAGIC, 1, op, 0, rid, status, addr, length)


def reply(s):
    b = b""
    while len(b) < TE_HDR.size:
        c = s.recv(TE_HDR.size - len(b))
        if not c:
            return None
        b += c
    return TE_HDR.unpack(b)


def closed(s):
    s.settimeout(10)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.fixture
def target():
    t = Target()
    yield t
    if t.p.returncode is None:
        t.close()


def test_anonymous_write_changes_nothing(target):
    before = target.sha(0, 4096)
    s = socket.create_connection(("127.0.0.1", target.port), timeout=10)
    s.sendall(frame(WRITE, 1, target.addr, 4096) + b"\xee" * 4096)
    h = reply(s)
    assert h is not None and h[2] == WRITE | REPLY and h[5] == ST_AUTH_REQUIRED
    assert closed(s)
    assert target.sha(0, 4096) == before
    port = s.getsockname()[1]
    err = target.close()
    lines = [ln for ln in err.splitlines() if "127.0.0.1:%d" % port in ln]
    assert len(lines) == 1 and "refused: no proof of the cluster secret" in lines[0], err


def test_exchange_then_read_and_replay(target):
    k = key(SECRET)
    s = socket.create_connection(("127.0.0.1", target.port), timeout=10)
    nc = os.urandom(32)
    s.sendall(frame(AUTH_HELLO, 1, length=33) + b"\x01" + nc)
    h = reply(s)
    assert h[2] == AUTH_HELLO | REPLY and h[5] == 0 and h[7] == 64
    body = s.recv(64, socket.MSG_WAITALL)
    ns, smac = body[:32], body[32:]
    assert smac == mac(k, b"S", nc, ns)
    proof = mac(k, b"C", ns, nc)
    s.sendall(frame(AUTH_PROOF, 2, length=32) + proof)
    assert reply(s)[5] == 0
    s.sendall(frame(READ, 3, target.addr, 256))
    h = reply(s)
    assert h[5] == 0 and h[7] == 256
    data = s.recv(256, socket.MSG_WAITALL)
    assert hashlib.sha256(data).hexdigest() == target.sha(0, 256)
    # the same frames replayed on another connection are worth nothing
    r = socket.create_connection(("127.0.0.1", target.port), timeout=10)
    r.sendall(frame(AUTH_HELLO, 1, length=33) + b"\x01" + nc)
    assert reply(r)[5] == 0
    r.recv(64, socket.MSG_WAITALL)
    r.sendall(frame(AUTH_PROOF, 2, length=32) + proof)
    assert reply(r)[5] == ST_AUTH_FAILED
    assert closed(r)


def test_other_handshake_version(target):
    s = socket.create_connection(("127.0.0.1", target.port), timeout=10)
    s.sendall(frame(AUTH_HELLO, 1, length=33) + b"\x07" + os.urandom(32))
    h = reply(s)
    assert h[5] == 7  # MC_TE_ST_AUTH_VERSION, at once
    assert closed(s)
