"""E: fault, a decode instance killed mid-run (1 prefiller, 2 decoders, the XpYd recipe).

Setup as in d_xpyd.py: MultiConnector[MooncakeConnector, MooncakeStoreConnector] on one
prefiller (P) and two decoders (D1, D2), one mooncake_master (started with --client_ttl=5,
so that a dead client's segments go within seconds), mooncake_proxy in connector mode with
both decoders. P runs with VLLM_MOONCAKE_ABORT_REQUEST_TIMEOUT=15 (default 480 s). The same
timeout bounds how long P waits for its own prefill once a decoder's pull arrived. The first
real forward of a fresh vLLM CPU instance is slow (vLLM's own metrics, load 2-7: P's first
300-token prefill 3.4 s, later ones 0.85 s; D's first step 2.5 s, later 0.1-0.4 s), and at
load 15 it has passed 8 s, so the D request failed with "Timeout waiting for P side ready".
Hence the warm-up requests are retried (up to 3 times each, the count is reported).

The fault: D2's whole process group is stopped (SIGSTOP), four requests are sent at once
through the proxy (round robin gives two to each decoder), and once P has finished all four
prefills (it then holds their blocks for the decoders' pulls) D2 is killed (SIGKILL). So two
prefills lost their decoder before it pulled anything. Checked:
  - the requests on D1 complete and equal the plain baseline; those on D2 fail with the
    proxy's 502 naming the decode leg and D2 (nothing else could answer them);
  - the proxy takes D2 out of rotation (/status: not healthy) and the next requests all
    complete, equal to the baseline;
  - P holds the orphaned blocks (vllm:kv_cache_usage_perc > 0) and frees them after the abort
    timeout: its log has vLLM's warning "... timed out after 15 seconds without being sent.
    Freeing its blocks on the producer side" once per orphan, and the usage returns to 0;
  - our master, never restarted (same process, alive), drops D2's store segment (its
    /get_all_segments no longer lists it) while P's and D1's stay; reported: how long after
    D2's heartbeats stopped (SIGSTOP) the segment went (client_ttl 5 s). D2's segment is told
    apart by name: our store client logs "[store] store 'host:port' up: ..." in D2's log.

Correctness tolerance: tokens exact, logprobs within harness.LOGPROB_TOL (see c_p2p.py).
"""

import os
import re
import signal
import threading
import time
import urllib.request

from harness import assert_same_completion, model_prompt
from p2p import (counters, log_count, multi_config, proxy_status, start_many,
                 start_proxy_connector, wait_until)

WORDS = 299
MAX_TOKENS = 8
ABORT_TIMEOUT_S = 15
PREFILL_CFG = multi_config("kv_producer", "kv_producer", "kv_both")
DECODE_CFG = multi_config("kv_consumer", "kv_consumer", "kv_consumer")
ORPHAN_WARNING = rf"timed out after {ABORT_TIMEOUT_S} seconds without being sent"


def _segments(master):
    with urllib.request.urlopen(master.url + "/get_all_segments", timeout=30) as r:
        return {s for s in r.read().decode().splitlines() if s}


def _te_segments(proc):
    """Segment names our transfer engine and store client logged in proc's log."""
    with open(proc.log_path, errors="replace") as f:
        return set(re.findall(r"\[(?:te\] segment|store\] store) '([^']+)'", f.read()))


def _send_all(ctx, proxy, prompts):
    """Sends the prompts at once; returns [(prompt, response or AssertionError text)]."""
    results = [None] * len(prompts)

    def one(i):
        try:
            results[i] = ctx.completion(None, prompts[i], MAX_TOKENS, url=proxy.url)
        except AssertionError as e:
            results[i] = str(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
        time.sleep(0.05)  # in this order at the proxy, so round robin alternates
    return threads, results


def run(ctx):
    warm = [model_prompt(WORDS, seed=501 + i) for i in range(2)]
    batch = [model_prompt(WORDS, seed=511 + i) for i in range(4)]
    after = [model_prompt(WORDS, seed=521 + i) for i in range(4)]
    wants = {p: ctx.baseline(p, MAX_TOKENS) for p in warm + batch + after}
    ctx.stop_baseline()  # at most 3 vLLM instances at once: P, D1, D2

    master = ctx.start_master(client_ttl=5)
    cfg = ctx.store_config(master, global_segment_size="64MB", local_buffer_size="64MB")
    boot = ctx.free_port()
    store_env = {"MOONCAKE_CONFIG_PATH": cfg, "VLLM_MOONCAKE_ABORT_REQUEST_TIMEOUT": str(ABORT_TIMEOUT_S)}
    p, d1, d2 = start_many(ctx, [
        dict(name="prefill", port=ctx.free_port(), kv_transfer_config=PREFILL_CFG,
             env={"VLLM_MOONCAKE_BOOTSTRAP_PORT": str(boot), **store_env}),
        dict(name="decode1", port=ctx.free_port(), kv_transfer_config=DECODE_CFG, env=store_env),
        dict(name="decode2", port=ctx.free_port(), kv_transfer_config=DECODE_CFG, env=store_env),
    ])
    proxy = start_proxy_connector(ctx, [(p, boot)], [d1, d2])
    segs = _segments(master)
    d2_segs = _te_segments(d2) & segs
    assert d2_segs, f"D2's store segment is not in the master's list {segs}"
    others = segs - d2_segs
    out = {"segments_before": len(segs)}

    retries = 0
    for prompt in warm:  # one on each decoder (round robin)
        for attempt in range(3):
            try:
                got = ctx.completion(None, prompt, MAX_TOKENS, url=proxy.url)
                break
            except AssertionError:
                if attempt == 2:
                    raise
                retries += 1
        assert_same_completion(got, wants[prompt], what="warm-up request")
    out["warmup_retries"] = retries
    st = proxy_status(proxy)
    assert all(d["requests"] >= 1 for d in st["decode"]), f"warm-up did not reach both decoders: {st}"

    # The fault: D2 frozen, four requests, D2 killed once P finished their prefills.
    p0 = counters(ctx, p)
    os.killpg(d2.pid, signal.SIGSTOP)  # from here on D2 sends no heartbeat to the master
    t_fault = time.monotonic()
    gone = {}

    def watch_segments():  # when does the master drop D2's segment?
        while "s" not in gone and time.monotonic() - t_fault < 120:
            if not (_segments(master) & d2_segs):
                gone["s"] = time.monotonic() - t_fault
            time.sleep(0.2)

    watcher = threading.Thread(target=watch_segments, daemon=True)
    watcher.start()
    threads, results = _send_all(ctx, proxy, batch)
    wait_until("the prefiller to finish the four prefills",
               lambda: counters(ctx, p)["requests_length"] - p0["requests_length"] >= len(batch),
               timeout=120)
    held = counters(ctx, p)["kv_cache_usage"]
    os.killpg(d2.pid, signal.SIGKILL)
    ctx.stop(d2)
    for t in threads:
        t.join(600)
    ok, failed = 0, []
    for prompt, res in zip(batch, results):
        if isinstance(res, dict):
            assert_same_completion(res, wants[prompt], what="request on the surviving decoder")
            ok += 1
        else:
            failed.append(res)
    d2_name = f"127.0.0.1:{d2.port}"
    assert ok >= 1, f"no request completed on the surviving decoder: {failed}"
    for why in failed:
        assert ": 502 " in why and "decode" in why and d2_name in why, (
            f"a request failed that was not on the killed decoder: {why}"
        )
    out.update({"batch_completed": ok, "batch_failed_on_killed_decoder": len(failed)})

    # The proxy takes D2 out of rotation; the next requests all complete.
    def d2_out():
        for d in proxy_status(proxy)["decode"]:
            if d["instance"] == d2_name:
                return not d["healthy"]
        return True

    wait_until("the proxy to take the killed decoder out of rotation", d2_out, timeout=30)
    for prompt in after:
        got = ctx.completion(None, prompt, MAX_TOKENS, url=proxy.url)
        assert_same_completion(got, wants[prompt], what="request after the fault")
    out["after_fault_completed"] = len(after)

    # P frees the orphaned prefills' blocks after the abort timeout.
    orphans = len(failed)
    wait_until("the prefiller's abort-timeout warnings",
               lambda: log_count(p, ORPHAN_WARNING) >= orphans, timeout=ABORT_TIMEOUT_S + 60)
    wait_until("the prefiller's KV cache usage back to 0",
               lambda: counters(ctx, p)["kv_cache_usage"] == 0, timeout=ABORT_TIMEOUT_S + 60)
    out["prefill_kv_usage_while_held"] = held
    out["prefill_orphan_warnings"] = log_count(p, ORPHAN_WARNING)
    if orphans:
        assert held > 0, f"the prefiller held no blocks for the orphaned prefills (usage {held})"

    # The master drops D2's segment, without a restart.
    wait_until("the master to drop the killed decoder's segment",
               lambda: not (_segments(master) & d2_segs), timeout=60)
    watcher.join(5)
    out["segment_dropped_s_after_heartbeats_stopped"] = round(gone.get("s", -1), 1)
    left = _segments(master)
    assert others <= left, f"the master lost live segments: had {others}, now {left}"
    assert master.alive(), "the master exited"
    out["segments_after"] = len(left)
    return out
