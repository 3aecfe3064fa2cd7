"""The proxy front's connection limits (net_http.c listener): an idle flood
from one address does not lock out other clients, connections past the
per-IP limit are closed, idle ones are closed after MC_HTTP_IDLE_TIMEOUT_S,
and that timeout never cuts a stream that is waiting for its upstream."""

import os
import socket
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
from mc_flood import Flood, http_get  # noqa: E402

FLOOD = 1100
PER_IP_DEFAULT = 1024  # proxy_server.c MC_PROXY_PER_IP_DEFAULT


def _toy(fakes, proxy, env=None):
    p, d = fakes("P"), fakes("D")
    px = proxy(["--prefiller-host", "127.0.0.1", "--prefiller-port", str(p.port),
                "--decoder-host", "127.0.0.1", "--decoder-port", str(d.port)], env)
    px.wait_ready()
    return p, d, px


def test_idle_flood_does_not_lock_out_others(fakes, proxy):
    p, d, px = _toy(fakes, proxy)
    # The established client: completions on one keep-alive connection (the
    # proxy answers GETs with Connection: close).
    est = socket.create_connection(("127.0.0.1", px.port), timeout=5)
    done = '{"prompt":"x"}'
    try:
        assert http_get(px.port, "/v1/completions", 5, sock=est, body=done)[0] == 200
        with Flood(px.port, FLOOD) as f:
            try:
                st, _ = http_get(px.port, "/health", 3)
            except socket.timeout:
                pytest.fail("a new client was not served within 3 s during the flood")
            assert st == 200
            assert http_get(px.port, "/v1/completions", 5, sock=est, body=done)[0] == 200
            st, _, data = px.request("POST", "/v1/completions", {"prompt": "x", "stream": True})
            assert st == 200 and data == d.expected_stream()
            assert f.wait_closed(FLOOD - PER_IP_DEFAULT, 20) == FLOOD - PER_IP_DEFAULT
    finally:
        est.close()
    assert "per-IP connection limit reached" in px.stderr()


def test_idle_timeout_closes_idle_not_waiting_streams(fakes, proxy):
    p, d, px = _toy(fakes, proxy, {"MC_HTTP_IDLE_TIMEOUT_S": "1"})
    # A stream whose upstream pauses for 3 idle timeouts between chunks: the
    # client connection is suspended meanwhile, and MHD does not time it out.
    d.chunks, d.chunk_delay = 3, 3.0
    st, _, data = px.request("POST", "/v1/completions", {"prompt": "x", "stream": True}, timeout=30)
    assert st == 200 and data == d.expected_stream()
    # A non-streamed answer that takes as long.
    d.delay, d.chunk_delay = 3.0, 0.0
    st, _, data = px.request("POST", "/v1/completions", {"prompt": "x"}, timeout=30)
    assert st == 200 and b"hello from D" in data
    # Idle connections go.
    with Flood(px.port, 20) as f:
        assert f.wait_closed(20, 20) == 20
