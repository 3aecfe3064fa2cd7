"""D: the XpYd recipe, MultiConnector[MooncakeConnector, MooncakeStoreConnector], and a
prefiller added through mooncake_proxy's admin API while requests flow.

Recipe of vLLM's Mooncake store guide (spec vllm-integration.md §1.4): the prefiller runs
MultiConnector of [MooncakeConnector kv_producer, MooncakeStoreConnector kv_both], the decoder
[MooncakeConnector kv_consumer, MooncakeStoreConnector kv_consumer]; each prefiller has its own
VLLM_MOONCAKE_BOOTSTRAP_PORT and all share one MOONCAKE_CONFIG_PATH naming our
mooncake_master. So every process holds our TransferEngine (P2P) and our
MooncakeDistributedStore (pool) at once.

Steps and checks:
  1. P1 + D1 behind mooncake_proxy (connector mode, ADMIN_API_KEY set). A request through the
     proxy equals the plain baseline and D1 got the whole prompt over KV transfer.
  2. The store half: a prompt sent to P1 alone is saved into the pool (the master's key count
     grows); the same prompt sent to D1 alone (no kv_transfer_params, so the P2P child has
     nothing to load) is loaded by D1's store child from the pool: D1's
     vllm:external_prefix_cache_hits_total grows by the prompt's full blocks, and the answer
     equals the baseline.
  3. A client thread sends requests through the proxy one after another (fresh prompts, each
     compared with the baseline). Meanwhile P2 starts, and is added with
     POST /instances/add {"type":"prefill","instance":...,"bootstrap_port":...} and the
     X-API-Key header (a wrong key is refused with 403 first). Then P2 takes prefills: the
     proxy's /status counts requests on it and P2's vLLM counts finished prefills and prompt
     tokens (the flow repeats its prompts, so P2 finds the blocks P1 saved in the pool: its
     store child loads them, which shows in its external-hit counter). No request fails and
     every answer equals the baseline; D1 computed no prompt token during the flow.

Correctness tolerance: tokens exact, logprobs within harness.LOGPROB_TOL (see c_p2p.py).
Shims: e2e/shims/shim_p2p_device.py (CPU: the P2P worker's device index) and
e2e/shims/shim_p2p_multi_metrics.py (MultiConnector's Prometheus observe asserts on the
MooncakeConnector child, which has no Prometheus metrics; without it the prefiller's API
server dies on its first transfer stats). The store connector needs none on CPU.
"""

import threading
import time

from harness import assert_same_completion, metric_sum, model_prompt
from p2p import (counters, delta, http_json, multi_config, proxy_status, start_many,
                 start_proxy_connector, wait_until)

WORDS = 299  # + BOS: 300 tokens, 2 full blocks of 128
FULL_BLOCKS = 2
MAX_TOKENS = 8
FLOW_PROMPTS = 14
ADMIN_KEY = "e2e-admin-key"

PREFILL_CFG = multi_config("kv_producer", "kv_producer", "kv_both")
DECODE_CFG = multi_config("kv_consumer", "kv_consumer", "kv_consumer")


class Flow(threading.Thread):
    """Sends the prompts through the proxy one after another, round and round, until stopped."""

    def __init__(self, ctx, proxy, prompts, wants):
        super().__init__(daemon=True)
        self.ctx, self.proxy, self.prompts, self.wants = ctx, proxy, prompts, wants
        self.stop = threading.Event()
        self.done, self.failures = [], []

    def run(self):
        i = 0
        while not self.stop.is_set():
            prompt, want = self.prompts[i % len(self.prompts)], self.wants[i % len(self.prompts)]
            i += 1
            try:
                got = self.ctx.completion(None, prompt, MAX_TOKENS, url=self.proxy.url)
                assert_same_completion(got, want, what=f"flow request {len(self.done)}")
                self.done.append(time.monotonic())
            except AssertionError as e:
                self.failures.append(str(e))
            self.stop.wait(0.5)  # a steady flow, not a flood: 2 cores serve 3 instances


def run(ctx):
    first = model_prompt(WORDS, seed=401)
    pooled = model_prompt(WORDS, seed=402)
    flow_prompts = [model_prompt(WORDS, seed=410 + i) for i in range(FLOW_PROMPTS)]
    wants = {p: ctx.baseline(p, MAX_TOKENS) for p in [first, pooled] + flow_prompts}
    ctx.stop_baseline()  # at most 3 vLLM instances at once: P1, D1, P2

    master = ctx.start_master()
    cfg = ctx.store_config(master, global_segment_size="64MB", local_buffer_size="64MB")
    b1, b2 = ctx.free_port(), ctx.free_port()
    p1, d1 = start_many(ctx, [
        dict(name="prefill1", port=ctx.free_port(), kv_transfer_config=PREFILL_CFG,
             env={"VLLM_MOONCAKE_BOOTSTRAP_PORT": str(b1), "MOONCAKE_CONFIG_PATH": cfg}),
        dict(name="decode1", port=ctx.free_port(), kv_transfer_config=DECODE_CFG,
             env={"MOONCAKE_CONFIG_PATH": cfg}),
    ])
    proxy = start_proxy_connector(ctx, [(p1, b1)], [d1], env={"ADMIN_API_KEY": ADMIN_KEY})

    # 1. one request through the proxy: P2P handover
    d0 = counters(ctx, d1)
    got = ctx.completion(None, first, MAX_TOKENS, url=proxy.url)
    dd = delta(counters(ctx, d1), d0)
    assert dd["external_kv_transfer"] == WORDS + 1 and dd["local_compute"] == 0, (
        f"decoder did not get the prompt over KV transfer: {dd}"
    )
    out = {"first_max_logprob_diff": assert_same_completion(got, wants[first], what="first request")}

    # 2. the store half: P1 saves into the pool, D1 loads from it
    keys0 = ctx.metrics(master.url).get("master_key_count", 0)
    ctx.completion(p1.port, pooled, MAX_TOKENS)
    wait_until("the prefiller's blocks in the pool",
               lambda: ctx.metrics(master.url).get("master_key_count", 0) >= keys0 + FULL_BLOCKS)
    d0 = counters(ctx, d1)
    got = ctx.completion(d1.port, pooled, MAX_TOKENS)
    dd = delta(counters(ctx, d1), d0)
    assert dd["external_hits"] >= FULL_BLOCKS * 128, f"decoder did not load from the pool: {dd}"
    out["pool_load_max_logprob_diff"] = assert_same_completion(got, wants[pooled],
                                                               what="decoder answer from the pool")
    out["decoder_pool_hit_tokens"] = int(dd["external_hits"])
    out["master_keys"] = int(ctx.metrics(master.url).get("master_key_count", 0))

    # 3. requests flow while P2 starts and is added through the admin API
    d_before = counters(ctx, d1)
    flow = Flow(ctx, proxy, flow_prompts, [wants[p] for p in flow_prompts])
    flow.start()
    t0 = time.monotonic()
    (p2,) = start_many(ctx, [
        dict(name="prefill2", port=ctx.free_port(), kv_transfer_config=PREFILL_CFG,
             env={"VLLM_MOONCAKE_BOOTSTRAP_PORT": str(b2), "MOONCAKE_CONFIG_PATH": cfg}),
    ])
    wrong, _ = http_json("POST", proxy.url + "/instances/add",
                         {"type": "prefill", "instance": f"127.0.0.1:{p2.port}", "bootstrap_port": b2},
                         headers={"X-API-Key": "wrong"})
    assert wrong == 403, f"admin add with a wrong key: {wrong}"
    status, body = http_json("POST", proxy.url + "/instances/add",
                             {"type": "prefill", "instance": f"127.0.0.1:{p2.port}", "bootstrap_port": b2},
                             headers={"X-API-Key": ADMIN_KEY}, timeout=60)
    assert status == 200, f"admin add: {status} {body}"
    added_after = len(flow.done)
    out["requests_before_add"] = added_after
    out["p2_start_and_add_s"] = round(time.monotonic() - t0, 1)

    def p2_requests():
        for inst in proxy_status(proxy)["prefill"]:
            if inst["instance"] == f"127.0.0.1:{p2.port}":
                return inst["requests"]
        return 0

    wait_until("the added prefiller to take prefills", lambda: p2_requests() >= 2, timeout=300)
    flow.stop.set()
    flow.join(600)
    assert not flow.failures, f"{len(flow.failures)} request(s) failed: {flow.failures[:3]}"
    assert p2_requests() >= 1, f"the added prefiller took no prefill: {proxy_status(proxy)}"
    c2 = counters(ctx, p2)
    # P2 served those prefills; the prompts P1 had already seen come partly from the pool
    # (P2's store child is kv_both), the rest P2 computes.
    assert c2["requests_length"] >= 1 and c2["prompt_tokens"] >= WORDS + 1, f"P2 served no prefill: {c2}"
    dd = delta(counters(ctx, d1), d_before)
    out["decoder_flow_counters"] = dd
    assert dd["local_compute"] == 0 and dd["external_kv_transfer"] > 0, (
        f"decoder during the flow: {dd} for {len(flow.done)} requests"
    )
    st = proxy_status(proxy)
    out["flow_requests"] = len(flow.done)
    out["flow_failures"] = len(flow.failures)
    out["prefill_requests"] = {i["instance"]: i["requests"] for i in st["prefill"]}
    out["p2_prompt_tokens"] = {k: int(c2[k]) for k in ("prompt_tokens", "local_compute", "external_hits")}
    pm = ctx.metrics(proxy.url)
    out["proxy_5xx"] = int(metric_sum(pm, "mooncake_proxy_responses_total", code="5xx"))
    assert out["proxy_5xx"] == 0, f"proxy answered 5xx: {out}"
    return out
