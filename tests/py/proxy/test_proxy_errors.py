"""What the client gets when a leg fails (the table in docs/proxy.md, "Failures"):
a backend's 4xx is its verdict on the request and reaches the client as it is
(status and body); a leg's 5xx, or a leg that cannot be reached, is 502 naming
the leg and the instance; a leg that dies after bytes were relayed truncates
the answer (test_proxy_stream.py::test_upstream_killed_mid_stream)."""

import json
import threading

import pytest

# vLLM's answer to a prompt longer than the model's context.
TOO_LONG = (b'{"object":"error","message":"This model\'s maximum context length is 2048 tokens. '
            b'However, you requested 5000 tokens.","type":"BadRequestError","param":null,'
            b'"code":400}')


def _toy(fakes, proxy, extra=()):
    p, d = fakes("P"), fakes("D")
    px = proxy(["--prefiller-host", "127.0.0.1", "--prefiller-port", str(p.port),
                "--decoder-host", "127.0.0.1", "--decoder-port", str(d.port)] + list(extra))
    px.wait_ready()
    return p, d, px


def _connector(fakes, bootstrap, proxy, extra=()):
    p, d = fakes("P"), fakes("D")
    boot = bootstrap()
    px = proxy(["--prefill", p.url, str(boot.port), "--decode", d.url] + list(extra))
    px.wait_ready()
    return p, d, px


@pytest.fixture
def held():
    """An Event a fake decoder waits on, so that the prefill leg answers first."""
    ev = threading.Event()
    yield ev
    ev.set()


def _is_502(st, body, leg, inst):
    err = json.loads(body)["error"]
    assert st == 502, (st, body)
    assert err["leg"] == leg and err["instance"] == inst.addr and err["code"] == 502
    return err["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_decode_5xx_gives_502_naming_the_leg(fakes, proxy, stream):
    p, d, px = _toy(fakes, proxy)
    d.status = 500
    st, _, body = px.request("POST", "/v1/completions", {"prompt": "x", "stream": stream})
    msg = _is_502(st, body, "decode", d)
    assert "HTTP 500" in msg and "fake failure" in msg
    assert "mooncake_proxy_upstream_errors_total{leg=\"decode\"} 1" in \
        px.request("GET", "/metrics")[2].decode()


def test_decode_5xx_connector_mode(fakes, bootstrap, proxy):
    p, d, px = _connector(fakes, bootstrap, proxy)
    d.status, d.error_body = 503, b""
    st, _, body = px.request("POST", "/v1/chat/completions",
                             {"messages": [{"role": "user", "content": "x"}]})
    assert "HTTP 503" in _is_502(st, body, "decode", d)


def test_prefill_5xx_gives_502_naming_the_leg(fakes, bootstrap, proxy, held):
    p, d, px = _toy(fakes, proxy)
    p.status = 500
    st, _, body = px.request("POST", "/v1/completions", {"prompt": "x"})
    assert "HTTP 500" in _is_502(st, body, "prefill", p)
    assert d.completions() == []


def test_prefill_5xx_connector_mode(fakes, bootstrap, proxy, held):
    p, d, px = _connector(fakes, bootstrap, proxy)
    p.status = 500
    d.hold = held
    st, _, body = px.request("POST", "/v1/completions", {"prompt": "x"})
    assert "HTTP 500" in _is_502(st, body, "prefill", p)


@pytest.mark.parametrize("leg", ["prefill", "decode"])
def test_backend_4xx_reaches_the_client_as_is(fakes, proxy, leg):
    p, d, px = _toy(fakes, proxy)
    f = p if leg == "prefill" else d
    f.status, f.error_body = 400, TOO_LONG
    st, hdrs, body = px.request("POST", "/v1/completions", {"prompt": "x" * 5000})
    assert st == 400 and body == TOO_LONG
    assert hdrs["content-type"].startswith("application/json")


def test_prefill_4xx_connector_mode_reaches_the_client_as_is(fakes, bootstrap, proxy, held):
    """The connector's prefill answer is otherwise dropped unread; its error is kept."""
    p, d, px = _connector(fakes, bootstrap, proxy)
    p.status, p.error_body = 400, TOO_LONG
    d.hold = held
    st, _, body = px.request("POST", "/v1/completions", {"prompt": "x" * 5000})
    assert st == 400 and body == TOO_LONG


@pytest.mark.parametrize("leg", ["prefill", "decode"])
def test_unreachable_leg_gives_502_naming_the_leg(fakes, proxy, leg):
    # Health checks far apart: the dead instance is still in rotation.
    p, d, px = _toy(fakes, proxy, ["--health-interval-ms", "600000"])
    f = p if leg == "prefill" else d
    f.kill()
    st, _, body = px.request("POST", "/v1/completions", {"prompt": "x"})
    _is_502(st, body, leg, f)
    assert px.request("GET", "/health")[0] == 200
