"""Streaming through mooncake_proxy: chunk-for-chunk passthrough, back-pressure,
client disconnects, upstreams dying mid-stream, leg failures and timeouts."""

import http.client
import socket
import time


def connector(fakes, bootstrap, proxy, extra=()):
    p, d = fakes("P"), fakes("D")
    boot = bootstrap()
    px = proxy(["--prefill", p.url, str(boot.port), "--decode", d.url] + list(extra))
    px.wait_ready()
    return p, d, px


def wait_for(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def test_long_stream_exact_bytes(fakes, bootstrap, proxy):
    p, d, px = connector(fakes, bootstrap, proxy)
    d.chunks = 3000
    st, hdrs, data = px.request("POST", "/v1/completions", {"prompt": "x", "stream": True,
                                                           "stream_options": {"include_usage": True}})
    assert st == 200
    assert hdrs["content-type"].startswith("text/event-stream")
    assert data == d.expected_stream()
    [pr], [dr] = p.wait_completions(1), d.completions()
    assert pr.json["stream"] is False and "stream_options" not in pr.json
    assert dr.json["stream"] is True and dr.json["stream_options"] == {"include_usage": True}


def test_large_json_answer_exact_bytes(fakes, bootstrap, proxy):
    """Non-streamed answers: small ones go out whole, large ones (> 1 MiB) stream through."""
    p, d, px = connector(fakes, bootstrap, proxy)
    for size in (10, 70000, 3 << 20):
        d.body_override = b'{"pad":"' + b"y" * size + b'"}'
        st, hdrs, data = px.request("POST", "/v1/completions", {"prompt": "x"})
        assert st == 200 and data == d.body_override and hdrs["content-type"] == "application/json"


def test_stream_is_relayed_as_it_arrives(fakes, bootstrap, proxy):
    p, d, px = connector(fakes, bootstrap, proxy)
    d.chunks, d.chunk_delay = 20, 0.05
    c = px.conn()
    c.request("POST", "/v1/completions", body='{"prompt":"x","stream":true}',
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    t0 = time.monotonic()
    first = r.readline()  # the first SSE line arrives long before the last chunk is sent
    assert first.startswith(b"data: ") and time.monotonic() - t0 < 0.5
    rest = r.read()
    assert first + rest == d.expected_stream()
    c.close()


def test_slow_client_back_pressure(fakes, bootstrap, proxy):
    """A client that does not read makes the proxy pause its upstream instead of buffering
    the whole answer; once the client reads, every byte arrives intact."""
    p, d, px = connector(fakes, bootstrap, proxy)
    d.chunks, d.pad = 2000, 16384  # about 32 MB of SSE: more than every socket buffer on the way
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect, or TCP itself stalls
    s.connect(("127.0.0.1", px.port))
    body = b'{"prompt":"x","stream":true}'
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    time.sleep(1.0)
    # The upstream is still streaming (paused), not finished: memory stays bounded.
    assert d.active == 1
    got = bytearray()
    s.settimeout(20)
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += b
    s.close()
    head, _, chunked = bytes(got).partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0]
    out, rest = bytearray(), chunked
    while True:
        ln, _, rest = rest.partition(b"\r\n")
        n = int(ln, 16)
        if n == 0:
            break
        out += rest[:n]
        rest = rest[n + 2:]
    assert bytes(out) == d.expected_stream()


def test_client_disconnect_cancels_upstream(fakes, bootstrap, proxy):
    p, d, px = connector(fakes, bootstrap, proxy)
    d.chunks, d.chunk_delay = 2000, 0.01
    c = px.conn()
    c.request("POST", "/v1/completions", body='{"prompt":"x","stream":true}',
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    assert r.readline().startswith(b"data: ")
    c.sock.shutdown(socket.SHUT_RDWR)
    c.close()
    # The proxy hangs up on the decode server well before its 20 s stream ends.
    assert wait_for(lambda: d.aborted == 1, 5), "upstream stream was not cancelled"
    assert px.request("POST", "/v1/completions", {"prompt": "again"})[0] == 200
    m = px.request("GET", "/metrics")[2].decode()
    assert "mooncake_proxy_client_disconnects_total 1" in m


def test_client_disconnect_while_waiting_cancels_both_legs(fakes, bootstrap, proxy):
    p, d, px = connector(fakes, bootstrap, proxy)
    d.delay = 3.0  # decode has not answered anything yet: the client connection is suspended
    p.delay = 3.0
    s = socket.create_connection(("127.0.0.1", px.port))
    body = b'{"prompt":"x"}'
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    assert wait_for(lambda: d.active == 1 and p.active == 1, 3)
    s.close()
    assert wait_for(lambda: "mooncake_proxy_client_disconnects_total 1" in
                    px.request("GET", "/metrics")[2].decode(), 3)
    s = px.status()
    assert s["prefill"][0]["inflight"] == 0 and s["decode"][0]["inflight"] == 0


def test_upstream_killed_mid_stream(fakes, bootstrap, proxy):
    p, d, px = connector(fakes, bootstrap, proxy)
    d.chunks, d.kill_after = 100, 10
    c = px.conn()
    c.request("POST", "/v1/completions", body='{"prompt":"x","stream":true}',
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 200
    try:
        r.read()
        raise AssertionError("a truncated upstream stream must not look complete")
    except (http.client.IncompleteRead, ConnectionError):
        pass
    c.close()
    d.kill_after = None
    d.chunks = 3
    # The proxy keeps serving; the decode instance comes back after a health check.
    px.wait_ready()
    st, _, data = px.request("POST", "/v1/completions", {"prompt": "x", "stream": True})
    assert st == 200 and data == d.expected_stream()


def test_decode_down_gives_502_naming_the_leg(fakes, bootstrap, proxy):
    from proxy_fakes import free_port
    p = fakes("P")
    boot = bootstrap()
    dead = "http://127.0.0.1:%d" % free_port()
    px = proxy(["--prefill", p.url, str(boot.port), "--decode", dead])
    px.wait_ready(pred=lambda s: s["prefill"][0]["healthy"])
    # The dead decoder never passes its check, so the proxy says 503 (decode).
    st, body = px.json("POST", "/v1/completions", {"prompt": "x"})
    assert st == 503 and body["error"]["leg"] == "decode"


def test_leg_failures_give_502(fakes, proxy):
    p, d = fakes("P"), fakes("D")
    px = proxy(["--prefiller-host", "127.0.0.1", "--prefiller-port", str(p.port),
                "--decoder-host", "127.0.0.1", "--decoder-port", str(d.port)])
    px.wait_ready()
    p.status = 500
    st, body = px.json("POST", "/v1/completions", {"prompt": "x"})
    assert st == 502 and body["error"]["leg"] == "prefill" and body["error"]["instance"] == p.addr
    assert d.completions() == []
    p.status = 200
    d.status = 503
    st, body = px.json("POST", "/v1/completions", {"prompt": "x"})
    # A decode server's 5xx is its failure: 502 naming the leg (test_proxy_errors.py).
    assert st == 502 and body["error"]["leg"] == "decode"
    d.status = 200
    # A prefill server that dies (connection refused) -> 502 naming prefill.
    p.kill()
    st, body = px.json("POST", "/v1/completions", {"prompt": "x"})
    assert st in (502, 503) and body["error"]["leg"] == "prefill"


def test_first_byte_timeout(fakes, bootstrap, proxy):
    p, d, px = connector(fakes, bootstrap, proxy, ["--first-byte-timeout-ms", "300"])
    d.delay = 2.0
    t0 = time.monotonic()
    st, body = px.json("POST", "/v1/completions", {"prompt": "x"})
    assert st == 502 and body["error"]["leg"] == "decode"
    assert "first-byte timeout" in body["error"]["message"]
    assert time.monotonic() - t0 < 1.5


def test_connect_timeout_flag(fakes, proxy):
    """--connect-timeout-ms bounds upstream connects: a listener whose accept queue is full
    (backlog 0, one connection held) never completes a handshake."""
    p = fakes("P")
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)
    held = socket.create_connection(hole.getsockname())
    try:
        t0 = time.monotonic()
        px = proxy(["--prefiller-host", "127.0.0.1", "--prefiller-port", str(p.port),
                    "--decoder-host", "127.0.0.1", "--decoder-port", str(hole.getsockname()[1]),
                    "--connect-timeout-ms", "300"])
        s = px.wait_ready(timeout=5, pred=lambda s: "after 300 ms" in s["decode"][0].get("last_error", ""))
        assert time.monotonic() - t0 < 3
        st, body = px.json("POST", "/v1/completions", {"prompt": "x"})
        assert st == 503 and body["error"]["leg"] == "decode"
    finally:
        held.close()
        hole.close()


def test_sigterm_with_requests_in_flight(fakes, bootstrap, proxy):
    """SIGTERM while one client streams and one waits: clean exit (code 0, no leak report)."""
    p, d, px = connector(fakes, bootstrap, proxy)
    d.chunks, d.chunk_delay = 500, 0.01
    c = px.conn()
    c.request("POST", "/v1/completions", body='{"prompt":"x","stream":true}',
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    assert r.readline().startswith(b"data: ")
    p.delay = 5.0  # a second request whose prefill (and decode) legs are still pending
    s = socket.create_connection(("127.0.0.1", px.port))
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 2\r\n\r\n{}")
    assert wait_for(lambda: p.active >= 1, 3)
    assert px.stop() == 0
    c.close()
    s.close()


def test_many_concurrent_streams_exact(fakes, bootstrap, proxy):
    """40 clients at once, each streaming 300 chunks while others come and go: every
    stream arrives byte for byte and nothing is left in flight."""
    import threading
    p, d, px = connector(fakes, bootstrap, proxy)
    d.chunks, d.chunk_delay = 300, 0.0005
    expected = d.expected_stream()
    out, errs = [], []

    def one(i):
        try:
            if i % 5 == 0:  # some clients hang up early
                c = px.conn()
                c.request("POST", "/v1/completions", body='{"prompt":"x","stream":true}',
                          headers={"Content-Type": "application/json"})
                c.getresponse().readline()
                c.close()
                return
            st, _, data = px.request("POST", "/v1/completions", {"prompt": "x", "stream": True}, timeout=30)
            out.append(st == 200 and data == expected)
        except Exception as e:  # noqa: BLE001
            errs.append(repr(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errs, errs[:3]
    assert len(out) == 32 and all(out)
    assert wait_for(lambda: all(i["inflight"] == 0 for i in px.status()["decode"] + px.status()["prefill"]), 10)
