"""Routing and health of mooncake_proxy (issue 19): least outstanding tokens, the
circuit breaker's growing backoff, the bounded retry of a failed prefill leg,
cache_aware prefix affinity and its load threshold, and what /status and /metrics
show about them. Real proxy process, real fake backends."""

import re
import threading
import time

from test_proxy_admin import demo


def metric(px, name, **labels):
    """Value of one sample of the proxy's /metrics (None when absent)."""
    text = px.request("GET", "/metrics")[2].decode()
    want = ",".join('%s="%s"' % kv for kv in labels.items())
    pat = r"^" + re.escape(name) + (r"\{" + re.escape(want) + r"\}" if labels else "") + r" (\S+)$"
    m = re.search(pat, text, re.M)
    return float(m.group(1)) if m else None


def post_async(px, body, path="/v1/completions"):
    out = []
    t = threading.Thread(target=lambda: out.append(px.request("POST", path, body, timeout=30)[0]))
    t.start()
    return t, out


def wait_for(pred, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.01)
    raise AssertionError("condition not met within %ss" % timeout)


def test_least_tokens_weighs_prompt_length(fakes, proxy):
    """One request in flight on each decoder: least_loaded would tie, least_tokens sends
    the next request to the decoder whose request in flight is the shorter one."""
    ps, ds, px = demo(fakes, proxy, n_p=1, n_d=2, extra=["--scheduling", "least_tokens"])
    for d in ds:
        d.hold = threading.Event()
    t1, r1 = post_async(px, {"prompt": "L" * 8000, "max_tokens": 16})
    wait_for(lambda: sum(d.active for d in ds) == 1)
    t2, r2 = post_async(px, {"prompt": "short", "max_tokens": 16})
    wait_for(lambda: ds[0].active == 1 and ds[1].active == 1)
    long_d = ds[0] if ds[0].completions()[0].json["prompt"].startswith("L") else ds[1]
    short_d = ds[1] if long_d is ds[0] else ds[0]
    st = px.status()
    tokens = {i["instance"]: i["outstanding_tokens"] for i in st["decode"]}
    assert tokens[long_d.addr] == 8000 // 4 + 1 + 16 and tokens[short_d.addr] == 5 // 4 + 1 + 16
    t3, r3 = post_async(px, {"prompt": "next", "max_tokens": 16})
    wait_for(lambda: short_d.active == 2)
    for d in ds:
        d.hold.set()
    for t in (t1, t2, t3):
        t.join(30)
    assert r1 == r2 == r3 == [200]
    assert len(short_d.completions()) == 2 and len(long_d.completions()) == 1
    assert metric(px, "mooncake_proxy_route_decisions_total", policy="least_tokens",
                  type="decode", reason="least_tokens") == 3
    assert all(i["outstanding_tokens"] == 0 for i in px.status()["decode"])


def test_circuit_breaker_backoff_grows_then_closes(fakes, proxy):
    ps, ds, px = demo(fakes, proxy, extra=["--circuit-failures", "2", "--circuit-backoff-ms", "300",
                                           "--circuit-backoff-max-ms", "1200"])
    d = ds[0]
    d.health_status = 500
    seen = set()

    def backoff():
        i = px.status()["decode"][0]
        if i["circuit_open"]:
            seen.add(i["backoff_ms"])
        return i["circuit_open"] and i["backoff_ms"] == 1200

    wait_for(backoff, timeout=15)
    assert {300, 600, 1200} <= seen and max(seen) == 1200
    st, b = px.json("POST", "/v1/completions", {"prompt": "x"})
    assert st == 503 and b["error"]["leg"] == "decode"
    # While the circuit is open the checks are spaced by the backoff: never sooner.
    n0 = len([r for r in d.requests if r.path == "/health"])
    wait_for(lambda: len([r for r in d.requests if r.path == "/health"]) >= n0 + 2, timeout=10)
    checks = [r.t for r in d.requests if r.path == "/health"]
    assert checks[-1] - checks[-2] >= 1.2 - 0.05
    assert metric(px, "mooncake_proxy_circuit_opens_total") == 1
    d.health_status = 200
    wait_for(lambda: px.status()["decode"][0]["healthy"], timeout=5)
    i = px.status()["decode"][0]
    assert not i["circuit_open"] and i["consecutive_failures"] == 0
    assert px.request("POST", "/v1/completions", {"prompt": "x"})[0] == 200


def test_failed_prefill_leg_is_retried_on_another_instance(fakes, proxy):
    ps, ds, px = demo(fakes, proxy, n_p=2, n_d=1)
    ps[0].status = 500
    for _ in range(6):
        st, _, data = px.request("POST", "/v1/completions", {"prompt": "x"})
        assert st == 200 and data == ds[0].answer_json(None)
    failed = len(ps[0].completions())
    assert failed >= 2  # round robin sent some requests to P0 first
    assert len(ps[1].completions()) == 6
    assert metric(px, "mooncake_proxy_prefill_retries_total") == failed
    assert len(ds[0].completions()) == 6


def test_prefill_retry_is_bounded(fakes, proxy):
    ps, ds, px = demo(fakes, proxy, n_p=3, n_d=1, extra=["--prefill-retries", "1"])
    for p in ps:
        p.status = 503
    st, b = px.json("POST", "/v1/completions", {"prompt": "x"})
    assert st == 502 and b["error"]["leg"] == "prefill"
    assert sum(len(p.completions()) for p in ps) == 2  # the first try and one retry
    assert ds[0].completions() == []
    ps2, ds2, px2 = demo(fakes, proxy, n_p=2, n_d=1, extra=["--prefill-retries", "0"])
    ps2[0].status = ps2[1].status = 500
    assert px2.json("POST", "/v1/completions", {"prompt": "x"})[0] == 502
    assert sum(len(p.completions()) for p in ps2) == 1


def test_connector_mode_prefill_5xx_restarts_both_legs(fakes, bootstrap, proxy):
    ps = [fakes("P0"), fakes("P1")]
    d = fakes("D")
    d.delay = 0.3  # decode answers after the prefill leg has failed
    boots = [bootstrap(["E0"]), bootstrap(["E1"])]
    px = proxy(["--prefill", ps[0].url, str(boots[0].port), "--prefill", ps[1].url,
                str(boots[1].port), "--decode", d.url])
    px.wait_ready()
    ps[0].status = 500
    for _ in range(4):
        st, _, data = px.request("POST", "/v1/completions", {"prompt": "x"})
        assert st == 200 and data == d.answer_json(None)
    # The answered decode legs all named P1, the prefiller that really prefilled.
    failed = len(ps[0].completions())
    assert failed >= 1 and metric(px, "mooncake_proxy_prefill_retries_total") == failed
    named = [r.json["kv_transfer_params"]["remote_engine_id"] for r in d.completions()]
    assert named.count("E1") >= 4


def conversation(c, turns):
    """Turn t of conversation c: a long shared system prompt and t exchanges."""
    system = ("conversation %d: " % c) + ("you are a helpful assistant number %d. " % c) * 40
    return [system + "".join(" user: question %d? assistant: answer %d." % (k, k)
                             for k in range(t + 1)) for t in range(turns)]


def test_cache_aware_keeps_a_conversation_on_one_prefiller(fakes, proxy):
    ps, ds, px = demo(fakes, proxy, n_p=3, n_d=1, extra=["--scheduling", "cache_aware"])
    convs = [conversation(c, 4) for c in range(3)]
    for t in range(4):
        for c in range(3):
            assert px.request("POST", "/v1/completions", {"prompt": convs[c][t]})[0] == 200
    where = {}
    for i, p in enumerate(ps):
        for r in p.completions():
            where.setdefault(r.json["prompt"][:14], set()).add(i)
    # every conversation stayed on one prefiller, and the three were spread over the three
    assert len(where) == 3 and all(len(v) == 1 for v in where.values())
    assert len(set.union(*where.values())) == 3
    hit = metric(px, "mooncake_proxy_route_decisions_total", policy="cache_aware", type="prefill",
                 reason="cache_hit")
    miss = metric(px, "mooncake_proxy_route_decisions_total", policy="cache_aware",
                  type="prefill", reason="cache_miss")
    assert (hit, miss) == (9, 3)
    st = px.status()
    last = st["recent_decisions"][0]
    assert last["reason"] in ("cache_hit", "least_loaded") and last["type"] in ("prefill", "decode")
    pre = [x for x in st["recent_decisions"] if x["type"] == "prefill"]
    assert pre[0]["reason"] == "cache_hit" and pre[0]["match_blocks"] > 0
    assert pre[0]["match_blocks"] <= pre[0]["prompt_blocks"]
    assert st["cache_aware"]["block_bytes"] == 64
    assert all(i["cache_blocks"] > 0 for i in st["prefill"])


def test_cache_aware_chat_messages(fakes, proxy):
    ps, ds, px = demo(fakes, proxy, n_p=2, n_d=1, extra=["--scheduling", "cache_aware"])
    msgs = [{"role": "system", "content": "be brief. " * 30}]
    for t in range(4):
        msgs.append({"role": "user", "content": "question %d" % t})
        assert px.request("POST", "/v1/chat/completions", {"messages": msgs})[0] == 200
        msgs.append({"role": "assistant", "content": "answer %d" % t})
    counts = sorted(len(p.completions()) for p in ps)
    assert counts == [0, 4]


def test_cache_aware_load_wins_past_the_threshold(fakes, proxy):
    ps, ds, px = demo(fakes, proxy, n_p=2, n_d=1,
                      extra=["--scheduling", "cache_aware", "--cache-balance-abs", "0",
                             "--cache-balance-rel", "1"])
    conv = conversation(0, 3)
    assert px.request("POST", "/v1/completions", {"prompt": conv[0]})[0] == 200
    home = ps[0] if ps[0].completions() else ps[1]
    other = ps[1] if home is ps[0] else ps[0]
    home.hold = threading.Event()
    t, r = post_async(px, {"prompt": conv[1]})  # cache hit: goes home and waits there
    wait_for(lambda: home.active == 1)
    # home has 1 request in flight, the other 0: past both thresholds, so load wins
    assert px.request("POST", "/v1/completions", {"prompt": conv[2]})[0] == 200
    assert len(other.completions()) == 1
    home.hold.set()
    t.join(30)
    assert r == [200]
    assert metric(px, "mooncake_proxy_route_decisions_total", policy="cache_aware",
                  type="prefill", reason="load_imbalance") == 1
    pre = [x for x in px.status()["recent_decisions"] if x["type"] == "prefill"]
    assert pre[0]["reason"] == "load_imbalance" and pre[0]["instance"] == other.addr


def vllm_metrics(running, waiting):
    return ("# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
            "# TYPE vllm:num_requests_running gauge\n"
            'vllm:num_requests_running{engine="0",model_name="test-model"} %.1f\n'
            "# TYPE vllm:num_requests_waiting gauge\n"
            'vllm:num_requests_waiting{engine="0",model_name="test-model"} %.1f\n'
            'vllm:num_requests_waiting_by_reason{engine="0",reason="x"} 99.0\n'
            % (running, waiting))


def test_cache_aware_weighs_the_engines_own_queue(fakes, proxy):
    """The load cache_aware weighs includes vLLM's running and waiting requests from each
    instance's /metrics: a busy engine loses a cache hit once the gap passes the threshold."""
    ps = [fakes("P0"), fakes("P1")]
    ps[0].metrics_text = vllm_metrics(20, 30)  # busy with other clients
    ps[1].metrics_text = vllm_metrics(0, 0)
    ds, px = None, None
    ds = [fakes("D0")]
    px = proxy(["--model", "test-model", "-p", ps[0].addr, ps[1].addr, "-d", ds[0].addr,
                "--scheduling", "cache_aware"])
    px.wait_ready(pred=lambda s: [i.get("engine_waiting") for i in s["prefill"]] == [30, 0])
    conv = conversation(0, 3)
    assert px.request("POST", "/v1/completions", {"prompt": conv[0]})[0] == 200
    assert len(ps[1].completions()) == 1  # miss: the idle engine
    assert px.request("POST", "/v1/completions", {"prompt": conv[1]})[0] == 200
    assert len(ps[1].completions()) == 2  # hit
    ps[1].metrics_text = vllm_metrics(60, 40)  # now P1 is the busy one: 100 against 50
    px.wait_ready(pred=lambda s: s["prefill"][1].get("engine_running") == 60)
    assert px.status()["prefill"][1]["load"] == 100
    assert px.request("POST", "/v1/completions", {"prompt": conv[2]})[0] == 200
    assert len(ps[0].completions()) == 1
    pre = [x for x in px.status()["recent_decisions"] if x["type"] == "prefill"]
    assert pre[0]["reason"] == "load_imbalance" and pre[0]["instance"] == ps[0].addr
    # the first two: the group was imbalanced already (50 against 0), and the least loaded
    # instance was the cache hit the second time
    assert [x["reason"] for x in pre[1:3]] == ["cache_hit", "load_imbalance"]
