"""The three command-line modes of mooncake_proxy: what each leg receives
(bodies and headers), and what the client gets back."""

import json

CLIENT_BODY = {
    "model": "test-model",
    "prompt": "The capital of France is",
    "max_tokens": 50,
    "min_tokens": 5,
    "temperature": 0.7,
    "stream": False,
    "stream_options": {"include_usage": True},
}


def without(d, *keys):
    return {k: v for k, v in d.items() if k not in keys}


def test_connector_mode_legs(fakes, bootstrap, proxy):
    p, d = fakes("P"), fakes("D")
    boot = bootstrap(["engine-P0"])
    px = proxy(["--prefill", p.url, str(boot.port), "--decode", d.url])
    px.wait_ready()
    st, hdrs, data = px.request("POST", "/v1/completions", CLIENT_BODY,
                                {"Authorization": "Bearer client-key"})
    assert st == 200, data
    # The client gets the decode answer byte for byte.
    assert data == d.answer_json(None)
    [pr], [dr] = p.wait_completions(1), d.completions()
    assert pr.path == "/v1/completions" and dr.path == "/v1/completions"
    # Prefill leg: max_tokens=1, not streamed, no stream_options, no min_tokens.
    kv = pr.json["kv_transfer_params"]
    assert kv == {"do_remote_decode": True, "do_remote_prefill": False, "transfer_id": kv["transfer_id"]}
    assert kv["transfer_id"].startswith("xfer-") and len(kv["transfer_id"]) == 41
    assert without(pr.json, "kv_transfer_params") == dict(
        without(CLIENT_BODY, "stream_options", "min_tokens"), max_tokens=1, stream=False)
    # Decode leg: the original body plus the remote prefill parameters.
    assert dr.json["kv_transfer_params"] == {
        "do_remote_decode": False, "do_remote_prefill": True,
        "remote_bootstrap_addr": "http://127.0.0.1:%d" % boot.port,
        "remote_engine_id": "engine-P0", "transfer_id": kv["transfer_id"]}
    assert without(dr.json, "kv_transfer_params") == CLIENT_BODY
    # Byte-exact: the client's bytes, with the parameters appended before the last brace.
    sent = json.dumps(CLIENT_BODY).encode()
    assert dr.body == sent[:-1] + b',"kv_transfer_params":' + json.dumps(
        dr.json["kv_transfer_params"], separators=(",", ":")).encode() + b"}"
    # Numbers keep their short form ("0.7", not 0.69999999999999996).
    assert b'"temperature": 0.7' in dr.body and b'"temperature":0.7' in pr.body
    # Headers: same X-Request-Id on both legs, auth forwarded, dp rank on prefill.
    assert pr.headers["x-request-id"] == dr.headers["x-request-id"] == hdrs["x-request-id"]
    assert pr.headers["authorization"] == dr.headers["authorization"] == "Bearer client-key"
    assert pr.headers["x-data-parallel-rank"] == "0"
    assert "x-data-parallel-rank" not in dr.headers
    assert pr.headers["content-type"] == "application/json"


def test_connector_mode_waits_for_bootstrap(fakes, bootstrap, proxy):
    from proxy_fakes import free_port
    p, d = fakes("P"), fakes("D")
    bport = free_port()
    px = proxy(["--prefill", p.url, str(bport), "--decode", d.url])
    # Until the prefiller's bootstrap server answers, requests get 503.
    st, body = px.json("POST", "/v1/completions", CLIENT_BODY)
    assert st == 503 and "bootstrap" in body["error"]["message"]
    assert p.completions() == [] and d.completions() == []
    bootstrap(["E0", "E1"], port=bport)
    px.wait_ready()
    # dp_size 2: the (prefiller, dp rank) pairs are used in turn.
    ranks, engines = [], []
    for _ in range(4):
        st, _ = px.json("POST", "/v1/chat/completions", {"model": "m", "messages": [], "max_completion_tokens": 9})
        assert st == 200
    for pr, dr in zip(p.wait_completions(4), d.completions()):
        assert pr.path == "/v1/chat/completions"
        assert pr.json["max_completion_tokens"] == 1 and pr.json["max_tokens"] == 1
        assert dr.json["max_completion_tokens"] == 9 and "max_tokens" not in dr.json
        ranks.append(pr.headers["x-data-parallel-rank"])
        engines.append(dr.json["kv_transfer_params"]["remote_engine_id"])
    assert ranks == ["0", "1", "0", "1"]
    assert engines == ["E0", "E1", "E0", "E1"]


def test_openai_api_key_and_request_id(fakes, bootstrap, proxy):
    p, d = fakes("P"), fakes("D")
    boot = bootstrap()
    px = proxy(["--prefill", p.url, str(boot.port), "--decode", d.url], env={"OPENAI_API_KEY": "sk-env"})
    px.wait_ready()
    st, hdrs, _ = px.request("POST", "/v1/completions", {"prompt": "x"}, {"X-Request-Id": "my-req-1"})
    assert st == 200 and hdrs["x-request-id"] == "my-req-1"
    [pr], [dr] = p.wait_completions(1), d.completions()
    assert pr.headers["authorization"] == dr.headers["authorization"] == "Bearer sk-env"
    assert pr.headers["x-request-id"] == dr.headers["x-request-id"] == "my-req-1"
    # Two requests never share a transfer id.
    px.request("POST", "/v1/completions", {"prompt": "x"}, {"X-Request-Id": "my-req-1"})
    ids = {r.json["kv_transfer_params"]["transfer_id"] for r in p.wait_completions(2)}
    assert len(ids) == 2


def test_toy_mode_sequential_with_kv_params(fakes, proxy):
    p, d = fakes("P"), fakes("D")
    p.kv_params = {"remote_engine_id": "eng-x", "remote_block_ids": [1, 2, 3],
                   "remote_host": "10.0.0.9", "remote_port": 5555, "do_remote_prefill": True}
    p.delay = 0.2
    px = proxy(["--prefiller-host", "127.0.0.1", "--prefiller-port", str(p.port),
                "--decoder-host", "127.0.0.1", "--decoder-port", str(d.port)])
    px.wait_ready()
    body = dict(CLIENT_BODY, min_completion_tokens=3)
    st, _, data = px.request("POST", "/v1/completions", body, {"Authorization": "Bearer t"})
    assert st == 200 and data == d.answer_json(None)
    [pr], [dr] = p.completions(), d.completions()
    # Prefill first, decode only after the prefill answer came back.
    assert dr.t >= pr.t + 0.15
    assert pr.json["kv_transfer_params"] == {
        "do_remote_decode": True, "do_remote_prefill": False, "remote_engine_id": None,
        "remote_block_ids": None, "remote_host": None, "remote_port": None}
    assert "min_tokens" not in pr.json and "min_completion_tokens" not in pr.json
    assert pr.json["max_tokens"] == 1 and pr.json["stream"] is False
    # Decode gets exactly what the prefiller returned, and the original fields.
    assert dr.json["kv_transfer_params"] == p.kv_params
    assert without(dr.json, "kv_transfer_params") == body
    assert dr.body.startswith(json.dumps(body).encode()[:-1] + b',"kv_transfer_params":{')
    assert pr.headers["x-request-id"] == dr.headers["x-request-id"]
    assert pr.headers["authorization"] == dr.headers["authorization"] == "Bearer t"


def test_toy_mode_plural_flags_round_robin(fakes, proxy):
    ps = [fakes("P%d" % i) for i in range(2)]
    ds = [fakes("D%d" % i) for i in range(2)]
    px = proxy(["--prefiller-hosts", "127.0.0.1", "127.0.0.1",
                "--prefiller-ports", str(ps[0].port), str(ps[1].port),
                "--decoder-hosts", "127.0.0.1", "127.0.0.1",
                "--decoder-ports", str(ds[0].port), str(ds[1].port)])
    px.wait_ready(pred=lambda s: s["ready"] and all(i["healthy"] for i in s["prefill"] + s["decode"]))
    for _ in range(6):
        assert px.request("POST", "/v1/completions", {"prompt": "x"})[0] == 200
    assert [len(f.completions()) for f in ps + ds] == [3, 3, 3, 3]


def test_demo_mode(fakes, proxy):
    p, d = fakes("P", "org/my-model"), fakes("D", "my-model")
    other = fakes("X", "other-model")
    p.kv_params = {"remote_engine_id": "e", "remote_host": "placeholder", "remote_port": 7}
    px = proxy(["--model", "/models/my-model", "-p", p.addr, "-d", d.addr, "--scheduling", "round_robin"],
               env={"ADMIN_API_KEY": "k"})
    px.wait_ready()
    st, _, data = px.request("POST", "/v1/completions", CLIENT_BODY)
    assert st == 200 and data == d.answer_json(None)
    [pr], [dr] = p.completions(), d.completions()
    assert pr.json["max_tokens"] == 1 and pr.json["stream"] is False and "stream_options" not in pr.json
    # remote_host is rewritten to the prefiller the proxy chose.
    assert dr.json["kv_transfer_params"] == dict(p.kv_params, remote_host="127.0.0.1")
    assert dr.json["max_tokens"] == 50 and dr.json["min_tokens"] == 5
    # Demo mode insists on a JSON content type, as upstream does.
    st, body = px.json("POST", "/v1/completions", json.dumps(CLIENT_BODY), {"Content-Type": "text/plain"})
    assert st == 415
    # /status in upstream's shape plus per-instance detail.
    s = px.status()
    assert s["prefill_node_count"] == 1 and s["decode_node_count"] == 1
    assert s["prefill_nodes"] == [p.addr] and s["decode_nodes"] == [d.addr]
    assert s["decode"][0]["healthy"] is True and s["decode"][0]["requests"] == 1
    # An instance serving another model is refused.
    st, body = px.json("POST", "/instances/add", {"type": "decode", "instance": other.addr}, {"X-API-Key": "k"})
    assert st == 400 and "model" in body["error"]["message"]
    # /v1/models answers what the instances serve.
    st, models = px.json("GET", "/v1/models")
    assert st == 200 and models["data"][0]["id"] in ("org/my-model", "my-model")


def test_demo_mode_without_kv_params_sends_original(fakes, proxy):
    p, d = fakes("P"), fakes("D")
    px = proxy(["--model", "test-model", "--prefill", p.addr, "--decode", d.addr])
    px.wait_ready()
    assert px.request("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}],
                                                       "max_tokens": 8})[0] == 200
    [pr], [dr] = p.completions(), d.completions()
    assert pr.path == dr.path == "/v1/chat/completions"
    assert dr.json == {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    assert dr.body == json.dumps(dr.json).encode()  # the client's bytes, untouched
    assert pr.headers["x-request-id"] == dr.headers["x-request-id"]


def test_connector_mode_refreshes_engine_ids(fakes, bootstrap, proxy):
    """A restarted prefiller registers a new engine id; the health checks pick it up."""
    p, d = fakes("P"), fakes("D")
    boot = bootstrap(["E-old"])
    px = proxy(["--prefill", p.url, str(boot.port), "--decode", d.url])
    px.wait_ready()
    boot.engine_ids = ["E-new"]
    px.wait_ready(pred=lambda s: s["prefill"][0]["engine_ids"] == ["E-new"])
    assert px.request("POST", "/v1/completions", {"prompt": "x"})[0] == 200
    assert d.completions()[-1].json["kv_transfer_params"]["remote_engine_id"] == "E-new"


def test_connector_mode_dead_prefiller_is_skipped(fakes, bootstrap, proxy):
    """A prefiller that dies between health checks: its requests start again, both legs,
    with another prefiller (the decode leg must name the prefiller that really prefilled)."""
    ps = [fakes("P0"), fakes("P1")]
    d = fakes("D")
    d.delay = 0.3  # decode answers after the prefill leg has failed
    boots = [bootstrap(["E0"]), bootstrap(["E1"])]
    px = proxy(["--prefill", ps[0].url, str(boots[0].port), "--prefill", ps[1].url, str(boots[1].port),
                "--decode", d.url, "--health-interval-ms", "60000"])
    px.wait_ready()
    ps[0].kill()
    for _ in range(4):
        st, _, data = px.request("POST", "/v1/completions", {"prompt": "x"})
        assert st == 200 and data == d.answer_json(None)
    assert "retrying on" in px.stderr()
    # Every prefill that happened was on P1, and the decode requests that were answered
    # named P1's bootstrap server and engine.
    assert len(ps[1].completions()) >= 4
    named = [r.json["kv_transfer_params"]["remote_engine_id"] for r in d.completions()]
    assert named.count("E1") >= 4
