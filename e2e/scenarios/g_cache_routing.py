"""G: cache-aware routing through mooncake_proxy against round robin, on real vLLM instances.

Three kv_both vLLM CPU instances (MooncakeConnector, tcp, each its own bootstrap port): two
prefillers that publish vLLM's KV cache events (--kv-events-config, ZMQ PUB bound on a free
port, topic "kv") and one decoder, behind mooncake_proxy in connector mode. The workload is
multi-turn and shares prefixes: CONVS conversations, each opening with a system prompt common
to all of them, and each turn's prompt is the previous turn's plus TURN_TOKENS new tokens
(turn-major order: every conversation's turn 1, then every turn 2, ...). Prompts are token
ids (the tiny model's word wK is token K+3, BOS is 1), the form the proxy's precise index
matches against the token ids the events carry; with E2E_G_PROMPTS=text they are the same
prompts as text (the words; the tokenizer adds the BOS), which the proxy first sends to a
prefiller's POST /tokenize (--tokenize auto) to match them against the events.

Rounds alternate round_robin / cache_aware (each with a fresh proxy, and fresh prompts, so no
round profits from an earlier one); per round, from the two prefillers' /metrics deltas:
  - local prefix hit rate = vllm:prefix_cache_hits_total / vllm:prefix_cache_queries_total
    (tokens of the prefill legs' prompts found in the prefiller's own cache);
  - TTFT of every request through the proxy (streamed, time to the first token chunk),
    median over the round's requests.
With CONVS odd and two prefillers, round robin sends a conversation's consecutive turns to
alternating instances, so it finds at best the prefix of the turn before last; cache_aware
follows the events to the instance that holds the previous turn.

Checked: both prefillers' events reach the proxy (live, no bad message), cache_aware's picks
come from the events, every request succeeds, and the hit rate ratio cache_aware / round_robin
reaches HIT_RATIO_TARGET (a count, not a timing). The TTFT medians are reported with the load
average, not asserted (timing on a shared machine).
"""

import json
import os
import statistics

from harness import metric_sum, model_prompt
from p2p import p2p_config, proxy_status, start_many, wait_until

CONVS = 3          # odd: round robin alternates a conversation's turns between the prefillers
TURNS = 5
SYSTEM_TOKENS = 128  # one block, shared by every conversation of a round
OPEN_TOKENS = 128
TURN_TOKENS = 512
ROUNDS = int(os.environ.get("E2E_G_ROUNDS", "2"))  # per policy, alternating
TEXT = os.environ.get("E2E_G_PROMPTS", "tokens") == "text"
HIT_RATIO_TARGET = 1.5
TOPIC = "kv"


def tokens(n, seed):
    return [int(w[1:]) + 3 for w in model_prompt(n, seed).split()]


def workload(round_no):
    """The round's prompts in send order: CONVS conversations x TURNS turns, token ids."""
    base = 7000 + 100 * round_no
    system = [1] + tokens(SYSTEM_TOKENS - 1, base)
    convs = [system + tokens(OPEN_TOKENS, base + 1 + c) for c in range(CONVS)]
    out = []
    for t in range(TURNS):
        for c in range(CONVS):
            if t:
                convs[c] = convs[c] + tokens(TURN_TOKENS, base + 50 + 10 * c + t)
            out.append(list(convs[c]))
    if TEXT:  # the same tokens as text: word wK is token K+3, the tokenizer adds the BOS
        out = [" ".join("w%d" % (t - 3) for t in p[1:]) for p in out]
    return out


def prompt_tokens(p):
    return len(p.split()) + 1 if isinstance(p, str) else len(p)


def cache_counters(ctx, insts):
    hits = queries = 0.0
    for p in insts:
        m = ctx.metrics(p.url)
        hits += metric_sum(m, "vllm:prefix_cache_hits_total")
        queries += metric_sum(m, "vllm:prefix_cache_queries_total")
    return hits, queries


def loadavg():
    return round(os.getloadavg()[0], 2)


def run(ctx):
    ctx.stop_baseline()  # at most 3 vLLM instances at once
    boots = [ctx.free_port() for _ in range(3)]
    zports = [ctx.free_port() for _ in range(2)]
    specs = []
    for i in range(2):
        ev = {"enable_kv_cache_events": True, "publisher": "zmq",
              "endpoint": f"tcp://*:{zports[i]}", "topic": TOPIC}
        specs.append(dict(name=f"prefill{i + 1}", port=ctx.free_port(),
                          kv_transfer_config=p2p_config("kv_both"),
                          env={"VLLM_MOONCAKE_BOOTSTRAP_PORT": str(boots[i])},
                          extra_args=["--kv-events-config", json.dumps(ev)]))
    specs.append(dict(name="decode1", port=ctx.free_port(), kv_transfer_config=p2p_config("kv_both"),
                      env={"VLLM_MOONCAKE_BOOTSTRAP_PORT": str(boots[2])}))
    p1, p2, d1 = start_many(ctx, specs)
    prefills = [p1, p2]

    def start_proxy(policy, round_no):
        args = []
        for p, b in zip(prefills, boots):
            args += ["--prefill", p.url, str(b)]
        args += ["--decode", d1.url, "--health-interval-ms", "500", "--scheduling", policy]
        if policy == "cache_aware":
            args += ["--kv-events-topic", TOPIC]
            for p, z in zip(prefills, zports):
                args += ["--kv-events", f"127.0.0.1:{p.port}=tcp://127.0.0.1:{z}"]
        proxy = ctx.start_proxy(args, name=f"proxy-{policy}-{round_no}")
        wait_until("the proxy to learn the prefillers' engine ids",
                   lambda: proxy_status(proxy).get("ready"), timeout=60)
        return proxy

    # one warm-up request per prefiller (first-request costs, and the event publishers'
    # subscription handshake happens while the first cache_aware proxy starts)
    for p in prefills:
        ctx.completion(p.port, [1] + tokens(64, 1 + p.port), 2)

    results = {"round_robin": [], "cache_aware": []}
    order = ["round_robin", "cache_aware"] * ROUNDS
    for r, policy in enumerate(order):
        proxy = start_proxy(policy, r)
        if policy == "cache_aware":
            # a SUB socket gets only what is published after it connected: a probe prompt
            # sent straight to each prefiller that the proxy has not heard from yet, until
            # both are live in the proxy's /status
            probes = iter(range(1000))

            def live():
                kv = {i["instance"]: (i.get("kv_events") or {}).get("live")
                      for i in proxy_status(proxy)["prefill"]}
                for p in prefills:
                    if not kv.get(f"127.0.0.1:{p.port}"):
                        ctx.completion(p.port, [1] + tokens(300, 10000 * r + next(probes)), 2)
                return all(kv.values())

            wait_until("both prefillers' KV events in the proxy", live, timeout=120, interval=0.5)
        h0, q0 = cache_counters(ctx, prefills)
        load0 = loadavg()
        prompts = workload(r)
        ttfts = [ctx.ttft(None, prompt, max_tokens=2, url=proxy.url) for prompt in prompts]
        # vLLM's engine publishes its counters a moment after it answers: wait until the
        # round's every prompt token was queried (each prefill leg queries its whole prompt)
        want_q = sum(prompt_tokens(p) for p in prompts)
        wait_until("the prefillers' prefix cache counters", lambda: cache_counters(
            ctx, prefills)[1] - q0 >= want_q, timeout=60, interval=0.5)
        h1, q1 = cache_counters(ctx, prefills)
        st = proxy_status(proxy)
        pm = ctx.metrics(proxy.url)
        one = {
            "hit_rate": round((h1 - h0) / (q1 - q0), 4) if q1 > q0 else 0.0,
            "hit_tokens": int(h1 - h0), "query_tokens": int(q1 - q0),
            "ttft_median_s": round(statistics.median(ttfts), 3),
            "ttft_s": [round(t, 3) for t in ttfts],
            "prefill_requests": {i["instance"]: i["requests"] for i in st["prefill"]},
            "load": [load0, loadavg()],
            "proxy_5xx": int(metric_sum(pm, "mooncake_proxy_responses_total", code="5xx")),
        }
        if policy == "cache_aware":
            one["kv_events"] = {i["instance"]: {k: i["kv_events"][k] for k in (
                "messages", "bad_messages", "events", "bad_events", "blocks", "block_size",
                "seq_gaps", "orphans")} for i in st["prefill"]}
            one["decisions"] = {k: int(metric_sum(pm, "mooncake_proxy_route_decisions_total",
                                                  policy="cache_aware", type="prefill", reason=k))
                                for k in ("cache_hit", "cache_miss", "load_imbalance")}
            one["match_sources"] = sorted({d["match_source"] for d in st["recent_decisions"]
                                           if d["type"] == "prefill"})
            one["tokenize"] = st["cache_aware"]["tokenize"]
        results[policy].append(one)
        print(f"    G round {r} {policy}: " + json.dumps(one, sort_keys=True), flush=True)
        ctx.stop(proxy)
        assert one["proxy_5xx"] == 0, f"{policy} round {r}: proxy answered 5xx: {one}"

    out = {"prompts": "text" if TEXT else "tokens", "rounds": results}
    for policy, rs in results.items():
        h = sum(x["hit_tokens"] for x in rs)
        q = sum(x["query_tokens"] for x in rs)
        out[f"{policy}_hit_rate"] = round(h / q, 4) if q else 0.0
        out[f"{policy}_ttft_median_s"] = round(statistics.median(
            [t for x in rs for t in x["ttft_s"]]), 3)
    rr, ca = out["round_robin_hit_rate"], out["cache_aware_hit_rate"]
    out["hit_rate_ratio"] = round(ca / rr, 3) if rr else None
    out["ttft_median_ratio_ca_over_rr"] = round(
        out["cache_aware_ttft_median_s"] / out["round_robin_ttft_median_s"], 3)
    out["targets_met"] = {"hit_rate_ratio": bool(rr and ca >= HIT_RATIO_TARGET * rr),
                          "lower_median_ttft": out["ttft_median_ratio_ca_over_rr"] < 1.0}
    for x in results["cache_aware"]:
        for inst, k in x["kv_events"].items():
            assert k["messages"] > 0 and k["bad_messages"] == 0 and k["bad_events"] == 0, (
                f"KV events of {inst}: {k}")
        assert "kv_events" in x["match_sources"], f"cache_aware picks not from events: {x}"
        if TEXT:  # every text prompt got its ids from a prefiller
            assert x["tokenize"]["ok"] == CONVS * TURNS and x["tokenize"]["failed"] == 0, x
    assert out["targets_met"]["hit_rate_ratio"], f"hit rate ratio below {HIT_RATIO_TARGET}: {out}"
    return out
