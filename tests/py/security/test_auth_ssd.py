"""The SSD tier under a cluster secret: a disk owner's staging server serves
only peers that prove it (the reads of disk replicas by real clients go on
working), and an anonymous STAGE is refused without reading the disk."""
import os
import re
import socket
import struct
import sys

import pytest

from auth_util import SECRET

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "mooncake"))
from mc_fixtures import SAN_RE, Master, core_so, py_dir, run_case  # noqa: E402
from test_mc_ssd import Owner, _env  # noqa: E402

SSD_MAGIC, HDR = 0x5353434D, struct.Struct("<IBBHiI")
OP_STAGE, AUTH_REQUIRED = 1, -1020


@pytest.fixture
def secret_ssd_master(tmp_path, monkeypatch):
    if not core_so():
        pytest.skip("mooncake._core not built under %s" % py_dir())
    monkeypatch.setenv("MC_CLUSTER_SECRET", SECRET)
    m = Master(tmp_path, ["--enable_offload", "--client_ttl", "2", "--enable_persistence=false"])
    yield m
    m.stop()
    assert not SAN_RE.search(m.stderr()), m.stderr()[-4000:]


def test_disk_replicas_need_the_secret(secret_ssd_master, tmp_path, monkeypatch):
    m = secret_ssd_master
    o = Owner(tmp_path, m, str(tmp_path / "disk"), monkeypatch)
    try:
        env = _env(tmp_path, MC_TEST_N=16, MC_CLUSTER_SECRET=SECRET)
        run_case(m, "case_ssd", "case_fill", timeout=120, env_extra=env)
        run_case(m, "case_ssd", "case_check", env_extra=env)  # disk reads through staging
        out = run_case(m, "case_ssd", "case_print_staging_endpoint", env_extra=env)
        host, port = re.search(r"STAGING (\S+):(\d+)", out).groups()
        s = socket.create_connection((host, int(port)), timeout=10)
        key = b"anything"
        body = struct.pack("<II", 1, len(key)) + key
        s.sendall(HDR.pack(SSD_MAGIC, 1, OP_STAGE, 0, 0, len(body)) + body)
        h = HDR.unpack(s.recv(HDR.size, socket.MSG_WAITALL))
        assert h[2] == OP_STAGE | 0x80 and h[4] == AUTH_REQUIRED, h
        s.settimeout(10)
        assert s.recv(1) == b""  # closed
    finally:
        assert o.stop() == 0
    assert "refused: no proof of the cluster secret" in o.c.stderr()
