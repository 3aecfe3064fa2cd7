"""Admin API, dynamic membership under load, health checks, scheduling, and the
proxy's own endpoints and error answers."""

import http.client
import json
import re
import socket
import threading
import time

KEY = {"X-API-Key": "s3cret"}


def demo(fakes, proxy, n_p=1, n_d=1, extra=(), env=None):
    ps = [fakes("P%d" % i) for i in range(n_p)]
    ds = [fakes("D%d" % i) for i in range(n_d)]
    args = ["--model", "test-model", "-p"] + [p.addr for p in ps] + ["-d"] + [d.addr for d in ds]
    px = proxy(args + list(extra), env={"ADMIN_API_KEY": "s3cret"} if env is None else env)
    px.wait_ready(pred=lambda s: all(i["healthy"] for i in s["prefill"] + s["decode"]))
    return ps, ds, px


def test_admin_keys(fakes, proxy):
    ps, ds, px = demo(fakes, proxy)
    new = fakes("D9")
    body = {"type": "decode", "instance": new.addr}
    st, b = px.json("POST", "/instances/add", body)
    assert st == 401 and "X-API-Key" in b["error"]["message"]
    st, b = px.json("POST", "/instances/add", body, {"X-API-Key": "wrong"})
    assert st == 403 and b["error"]["message"]
    st, b = px.json("POST", "/instances/add", body, {"X-API-Key": "s3cret-but-longer"})
    assert st == 403
    st, b = px.json("POST", "/instances/add", body, KEY)
    assert st == 200 and b["message"] == "Added %s to decode_instances." % new.addr
    assert new.addr in px.status()["decode_nodes"]
    # A new instance was checked through /v1/models before getting traffic.
    assert any(r.path == "/v1/models" for r in new.requests)
    st, b = px.json("POST", "/instances/add", body, KEY)
    assert st == 400 and "already" in b["error"]["message"]
    st, b = px.json("POST", "/instances/remove", body, KEY)
    assert st == 200 and b["message"] == "Removed %s from decode_instances." % new.addr
    st, b = px.json("POST", "/instances/remove", body, KEY)
    assert st == 404
    err = px.stderr()
    # the log names the caller by address and port
    assert re.search(r"admin: instances/add from 127\.0\.0\.1:\d+ refused: wrong X-API-Key", err)
    assert re.search(r"admin: instances/add from 127\.0\.0\.1:\d+ authorised", err)


def test_admin_disabled_without_key(fakes, proxy):
    ps, ds, px = demo(fakes, proxy, env={})
    st, b = px.json("POST", "/instances/add", {"type": "decode", "instance": "127.0.0.1:1"}, KEY)
    assert st == 503 and "ADMIN_API_KEY" in b["error"]["message"]


def test_admin_bad_input(fakes, proxy):
    ps, ds, px = demo(fakes, proxy)
    bad = [
        ({"type": "decode", "instance": "nohost"}, "host:port"),
        ({"type": "decode", "instance": "h:0"}, "port"),
        ({"type": "decode", "instance": "h:65536"}, "port"),
        ({"type": "decode", "instance": "h:12ab"}, "port"),
        ({"type": "decode", "instance": "bad host:80"}, "character"),
        ({"type": "decode", "instance": "h/x:80"}, "character"),
        ({"type": "decode", "instance": ":80"}, "host:port"),
        ({"type": "decode", "instance": "x" * 300 + ":80"}, "255"),
        ({"type": "decode", "instance": 5}, "instance"),
        ({"type": "both", "instance": "h:80"}, "type"),
        ({"instance": "h:80"}, "type"),
        ([1, 2], "object"),
    ]
    for body, word in bad:
        st, b = px.json("POST", "/instances/add", body, KEY)
        assert st == 400 and word in b["error"]["message"], (body, b)
    st, b = px.json("POST", "/instances/add", "{not json", KEY)
    assert st == 400 and "invalid JSON" in b["error"]["message"]
    # An instance that does not answer its check is not added.
    from proxy_fakes import free_port
    st, b = px.json("POST", "/instances/add", {"type": "prefill", "instance": "127.0.0.1:%d" % free_port()}, KEY)
    assert st == 400 and "check" in b["error"]["message"]
    assert px.status()["prefill_node_count"] == 1


def load(px, stop, results, path="/v1/completions"):
    while not stop.is_set():
        try:
            st, _, _ = px.request("POST", path, {"prompt": "x", "max_tokens": 3})
        except OSError as e:
            st = repr(e)
        results.append(st)


def test_add_and_remove_under_load(fakes, proxy):
    ps, ds, px = demo(fakes, proxy, n_p=1, n_d=2)
    for d in ds:
        d.delay = 0.01
    stop, results = threading.Event(), []
    threads = [threading.Thread(target=load, args=(px, stop, results)) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        new = fakes("D2")
        new.delay = 0.01
        assert px.json("POST", "/instances/add", {"type": "decode", "instance": new.addr}, KEY)[0] == 200
        time.sleep(0.5)
        assert px.json("POST", "/instances/remove", {"type": "decode", "instance": ds[0].addr}, KEY)[0] == 200
        n_removed = len(ds[0].completions())
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert len(results) > 20
    assert all(st == 200 for st in results), [st for st in results if st != 200][:5]
    # The added instance got traffic; the removed one got none after its removal
    # (at most the requests that were already in flight).
    assert len(new.completions()) > 0
    assert len(ds[0].completions()) <= n_removed + 4
    s = px.status()
    assert ds[0].addr not in s["decode_nodes"] and new.addr in s["decode_nodes"]


def test_removed_instance_finishes_inflight(fakes, proxy):
    ps, ds, px = demo(fakes, proxy)
    ds[0].delay = 1.0
    out = []
    t = threading.Thread(target=lambda: out.append(px.request("POST", "/v1/completions", {"prompt": "x"})))
    t.start()
    deadline = time.monotonic() + 5
    while ds[0].active == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    st, b = px.json("POST", "/instances/remove", {"type": "decode", "instance": ds[0].addr}, KEY)
    assert st == 200 and b["draining"] == 1
    assert px.status()["draining"][0]["instance"] == ds[0].addr
    t.join(10)
    assert out[0][0] == 200 and out[0][2] == ds[0].answer_json(None)
    assert px.status()["draining"] == []


def test_health_check_takes_instance_out_and_back(fakes, proxy):
    ps, ds, px = demo(fakes, proxy, n_p=1, n_d=2)
    ds[1].health_status = 503
    px.wait_ready(pred=lambda s: [i["healthy"] for i in s["decode"]] == [True, False])
    before = len(ds[1].completions())
    for _ in range(6):
        assert px.request("POST", "/v1/completions", {"prompt": "x"})[0] == 200
    assert len(ds[1].completions()) == before
    assert "mooncake_proxy_instance_healthy{type=\"decode\",instance=\"%s\"} 0" % ds[1].addr in \
        px.request("GET", "/metrics")[2].decode()
    ds[1].health_status = 200
    px.wait_ready(pred=lambda s: all(i["healthy"] for i in s["decode"]))
    for _ in range(4):
        assert px.request("POST", "/v1/completions", {"prompt": "x"})[0] == 200
    assert len(ds[1].completions()) == before + 2


def test_least_loaded(fakes, proxy):
    ps, ds, px = demo(fakes, proxy, n_p=1, n_d=2, extra=["--scheduling", "least_loaded"])
    ds[0].delay = 1.5  # busy
    results = []
    t = threading.Thread(target=lambda: results.append(px.request("POST", "/v1/completions", {"prompt": "x"})[0]))
    t.start()
    deadline = time.monotonic() + 5
    while ds[0].active + ds[1].active == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    slow = ds[0] if ds[0].active else ds[1]
    fast = ds[1] if slow is ds[0] else ds[0]
    fast.delay = 0
    for _ in range(5):
        assert px.request("POST", "/v1/completions", {"prompt": "x"})[0] == 200
    t.join(10)
    assert results == [200]
    assert len(fast.completions()) == 5 and len(slow.completions()) == 1


def test_endpoints_and_bad_input(fakes, proxy, tmp_path):
    ps, ds, px = demo(fakes, proxy, extra=["--max-body-bytes", "2048"])
    st, h, b = px.request("GET", "/health")
    assert st == 200 and json.loads(b)["status"] == "ok"
    st, b = px.json("GET", "/healthcheck")
    assert st == 200 and b == {"status": "ok", "prefill_instances": 1, "decode_instances": 1}
    st, h, m = px.request("GET", "/metrics")
    assert st == 200 and h["content-type"].startswith("text/plain")
    assert "# TYPE mooncake_proxy_requests_total counter" in m.decode()
    st, b = px.json("GET", "/v1/models")
    assert st == 200 and b["data"][0]["id"] == "test-model"
    st, b = px.json("GET", "/nope")
    assert st == 404 and b["error"]["message"]
    st, b = px.json("GET", "/v1/completions")
    assert st == 405
    st, b = px.json("POST", "/v1/completions", "not json")
    assert st == 400 and "invalid JSON" in b["error"]["message"]
    st, b = px.json("POST", "/v1/completions", "[1,2]")
    assert st == 400 and "object" in b["error"]["message"]
    st, b = px.json("POST", "/v1/completions", "")
    assert st == 400
    st, b = px.json("POST", "/v1/completions", '{"a":1,"a":2}')
    assert st == 400
    st, b = px.json("POST", "/v1/completions", json.dumps({"prompt": "x" * 5000}))
    assert st == 413 and b["error"]["message"]
    # Chunked upload without Content-Length, over the limit.
    s = socket.create_connection(("127.0.0.1", px.port))
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
              + b"".join(b"400\r\n" + b"x" * 1024 + b"\r\n" for _ in range(4)) + b"0\r\n\r\n")
    s.settimeout(5)
    resp = b""
    while True:
        x = s.recv(4096)
        if not x:
            break
        resp += x
    s.close()
    assert b" 413 " in resp.split(b"\r\n")[0]
    # Garbage on the wire: the proxy answers 400 or closes, and keeps serving.
    for junk in [b"\x00\x01\x02\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"POST /v1/completions HTTP/1.1\r\n"
                 b"Content-Length: -5\r\n\r\n", b"A" * 70000 + b"\r\n\r\n"]:
        s = socket.create_connection(("127.0.0.1", px.port))
        try:
            s.sendall(junk)
            s.settimeout(3)
            s.recv(100)
        except OSError:
            pass
        s.close()
    assert px.request("POST", "/v1/completions", {"prompt": "x"})[0] == 200
    assert px.p.poll() is None


def test_random_client_input_never_crashes(fakes, proxy):
    """Seeded random requests (methods, paths, headers, JSON shapes, raw bytes) for a few
    seconds: every answer is a well-formed HTTP response or a closed connection, and the
    proxy keeps serving."""
    import random
    ps, ds, px = demo(fakes, proxy, extra=["--max-body-bytes", "65536"])
    rnd = random.Random(1234)
    values = [None, True, 0, -1, 2 ** 63, 1e308, "x", "", [], {}, [1, {"a": None}], {"k": [1.5]}]
    keys = ["model", "prompt", "messages", "max_tokens", "max_completion_tokens", "stream",
            "stream_options", "min_tokens", "kv_transfer_params", "n", "\u00e9\u4e2d", ""]
    paths = ["/v1/completions", "/v1/chat/completions", "/instances/add", "/instances/remove",
             "/status", "/metrics", "/health", "/v1/models", "/x", "/v1/completions?a=b", "//", "/%00"]
    deadline = time.monotonic() + 4
    n = 0
    while time.monotonic() < deadline:
        n += 1
        kind = rnd.random()
        if kind < 0.6:
            body = json.dumps({rnd.choice(keys): rnd.choice(values) for _ in range(rnd.randint(0, 6))})
        elif kind < 0.8:
            body = bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 300)))
        else:
            body = "[" * rnd.randint(1, 5000)
        hdrs = {"X-API-Key": rnd.choice(["s3cret", "bad", ""]),
                "X-Request-Id": rnd.choice(["ok-1", "x" * 300, "a b", "\u00e9"]),
                "Authorization": rnd.choice(["Bearer t", "x" * 600])}
        try:
            st, _, _ = px.request(rnd.choice(["POST", "GET", "PUT", "DELETE"]), rnd.choice(paths),
                                  body, hdrs, timeout=5)
            assert 200 <= st < 600
        except (OSError, http.client.HTTPException, UnicodeEncodeError):
            pass
    assert n > 50
    assert px.p.poll() is None
    assert px.request("POST", "/v1/completions", {"prompt": "x"})[0] == 200


def test_dead_instance_is_skipped_without_failed_requests(fakes, proxy):
    """An instance that dies between health checks: requests that could not connect to it
    are sent to another instance of the group, so no request fails."""
    ps, ds, px = demo(fakes, proxy, n_p=2, n_d=2, extra=["--health-interval-ms", "60000"])
    ps[0].kill()
    ds[1].kill()
    for _ in range(8):
        st, _, data = px.request("POST", "/v1/completions", {"prompt": "x"})
        assert st == 200 and data == ds[0].answer_json(None)
    s = px.status()
    assert [i["healthy"] for i in s["prefill"]] == [False, True]
    assert [i["healthy"] for i in s["decode"]] == [True, False]
    assert "retrying on" in px.stderr()
