"""Connection limits of the libmicrohttpd listeners of the daemons (net_http.c):
the standalone metadata server, the master's admin port and its embedded
metadata server, and mooncake_client's HTTP port, each a real process.

A flood of 1100 idle connections from 127.0.0.2 (one peer) must not lock out
anyone else: connections past the per-IP limit are closed at once, a new
client from 127.0.0.1 is served within a couple of seconds, and a client
already connected before the flood keeps being served. With libmicrohttpd's
default limit (FD_SETSIZE - 4 = 1020) the new client waited in the listen
backlog until an idle connection timed out (30-60 s). Idle connections are
closed after MC_HTTP_IDLE_TIMEOUT_S."""

import os
import re
import socket
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "common"))
from mc_fixtures import (SAN_RE, Master, StandaloneClient, _Daemon, _readline, bin_dir,  # noqa: E402
                         clean_env)
from mc_flood import Flood, http_get  # noqa: E402

FLOOD = 1100
PER_IP_DEFAULT = 512  # net_http.h MC_HTTP_PER_IP_DEFAULT


class MetaServer(_Daemon):
    """mooncake_http_metadata_server on a free port; ready once it printed
    "listening on HOST:PORT"."""

    def __init__(self, tmp):
        exe = os.path.join(bin_dir(), "mooncake_http_metadata_server")
        if not os.path.exists(exe):
            pytest.skip("mooncake_http_metadata_server not built at %s" % exe)
        self.what = "metasrv"
        self.errpath = os.path.join(str(tmp), "metasrv-%d.err" % time.monotonic_ns())
        self.err = open(self.errpath, "wb")
        self.p = subprocess.Popen([exe, "--host", "127.0.0.1", "--port", "0"],
                                  stdout=subprocess.PIPE, stderr=self.err, env=clean_env(),
                                  text=True)
        line = _readline(self.p, 30) or ""
        m = re.search(r"listening on \S+:(\d+)", line)
        if not m:
            self._failed()
        self.port = int(m.group(1))


def _port(addr):
    return int(addr.rsplit(":", 1)[1])


@pytest.fixture
def daemons(tmp_path, monkeypatch):
    made = []

    def make(kind, env=None):
        for k, v in (env or {}).items():
            monkeypatch.setenv(k, v)  # clean_env() copies os.environ
        if kind == "metasrv":
            d = MetaServer(tmp_path)
            ports = {"metasrv": d.port}
        else:
            m = Master(tmp_path)
            made.append(m)
            ports = {"admin": _port(m.admin), "master-metasrv": _port(m.meta.split("/")[2])}
            if kind == "client":
                d = StandaloneClient(tmp_path, m)
                ports = {"client": _port(d.addr)}
            else:
                d = m
        if d not in made:
            made.append(d)
        return ports

    yield make
    for d in reversed(made):
        rc = d.stop()
        err = d.stderr()
        assert not SAN_RE.search(err), err[-4000:]
        assert rc == 0, "%s exit %s\n%s" % (d.what, rc, err[-4000:])


def _check_flood(port, path, per_ip):
    est = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        assert http_get(port, path, 5, sock=est)[0] == 200
        with Flood(port, FLOOD) as f:
            # A newcomer from another address is served at once, not after the
            # flood's idle timeout.
            try:
                st, _ = http_get(port, path, 3)
            except socket.timeout:
                pytest.fail("port %d: a new client was not served within 3 s while %d idle "
                            "connections from 127.0.0.2 were held" % (port, FLOOD))
            assert st == 200
            # The connected client keeps being served.
            assert http_get(port, path, 5, sock=est)[0] == 200
            # Connections past the per-IP limit were closed; the others are held.
            refused = f.wait_closed(FLOOD - per_ip, 20)
            assert refused == FLOOD - per_ip, "port %d: %d of %d flood connections closed" % (
                port, refused, FLOOD)
    finally:
        est.close()


@pytest.mark.parametrize("kind", ["metasrv", "master", "client"])
def test_idle_flood_does_not_lock_out_others(daemons, kind):
    ports = daemons(kind)
    for what, port in ports.items():
        _check_flood(port, "/health", PER_IP_DEFAULT)


@pytest.mark.parametrize("kind", ["metasrv", "master", "client"])
def test_idle_connections_closed_after_idle_timeout(daemons, kind):
    ports = daemons(kind, {"MC_HTTP_IDLE_TIMEOUT_S": "2", "MC_HTTP_PER_IP_CONNECTIONS": "40"})
    for what, port in ports.items():
        with Flood(port, 50) as f:
            # 10 refused at once by the per-IP limit of 40, then the 40 idle ones.
            assert f.wait_closed(50, 20) == 50, "%s: idle connections still open" % what
            assert http_get(port, "/health", 5)[0] == 200
