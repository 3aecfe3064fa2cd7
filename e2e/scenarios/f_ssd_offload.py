"""F: the SSD tier under vLLM (issue 15 item 6): a working set 3x the DRAM pool.

vLLM's store connector in its "standalone-store" mode, the topology vLLM
documents for an SSD tier (vllm/distributed/mooncake_store.py): the vLLM
instance contributes no segment (global_segment_size 0) and our
`mooncake_client` owns the pool's DRAM segment (POOL_BYTES) and, with
--enable_offload, the SSD tier in a temp directory
(MOONCAKE_OFFLOAD_FILE_STORAGE_PATH); the master runs --enable_offload
--offload_on_evict, so an object goes to disk when eviction picks it and
stays readable from there. mooncake.json says "enable_offload": true, from
which vLLM splits its loads to fit the owner's staging buffer.

Workload: PROMPTS prompts of PROMPT_TOKENS tokens; the KV bytes of one prompt
are its full blocks times the model's KV bytes per block (2 x layers x KV
heads x head size x 4 bytes x 128 tokens, read from the model's config.json),
and the prompts together hold about 3x the pool (the ratio is in the result).
vLLM's own KV cache is LOCAL_BLOCKS blocks, so its local prefix cache keeps
no earlier prompt worth a hit. Pass 1 asks every prompt once (each a miss,
its blocks saved); pass 2 asks them again in a fixed shuffled order and is
what is measured. The same is run twice, each with its own master, client
and vLLM instance (started together): without the SSD tier (DRAM only,
mooncake_client without --enable_offload) and with it; both masters run
--eviction_high_watermark_ratio=HIGH_WATERMARK (why: below).

Measured, per run: the pool hit rate of pass 2, vLLM's
vllm:external_prefix_cache_hits_total over vllm:external_prefix_cache_queries_total
(prompt tokens served from the pool over prompt tokens asked for); their
ratio (target >= 2x); the TTFT (streamed, first token chunk) of each request,
classified by what served its prefix: recompute (no hit), a DRAM hit or a
disk hit. The tier of every loaded key is what vLLM's worker logs with
VLLM_MOONCAKE_STORE_TIER_LOG=1 ("Mooncake load tier summary: ...
memory_keys=M disk_keys=D", from our package's batch_get_replica_desc).
Target: the median disk-hit TTFT below the median recompute TTFT. Every
completion (greedy, 8 tokens) equals the plain baseline token for token
(logprobs within harness.LOGPROB_TOL, see a_offload.py) and no load fails.
The scenario fails, with the figures, when a target is missed.
"""

import json
import os
import random
import re
import shutil
import statistics
import tempfile
import time
import urllib.error
import urllib.request

from harness import assert_same_completion, metric_sum, model_prompt
from store_checks import store_counters

BLOCK = 128
PROMPT_WORDS = 1100  # + BOS: 1101 tokens, 8 full blocks saved per prompt
PROMPTS = 12
POOL_BYTES = 64 << 20  # the DRAM pool: mooncake_client's segment
# vLLM's context limit: it refuses a prompt of more than 5 characters per token
# of it before tokenizing, and a word here is about 5.4 characters
MAX_MODEL_LEN = 10 * BLOCK
LOCAL_BLOCKS = 12  # vLLM's own KV cache: one request (at most 10 blocks) and a little more
MAX_TOKENS = 8
# Both runs' masters. With --offload_on_evict an object leaves DRAM only once
# its disk copy has landed, so a put cannot make room for itself by eviction
# (it fails with NO_AVAILABLE_HANDLE, -200, and vLLM skips that batch): the
# room must already be there, below the high watermark that the background
# eviction passes keep. One prompt's save is one batch of 8 blocks, 16 MiB,
# a quarter of the pool: at the default 0.90, 25 keys of the SSD run's puts
# failed (none in the DRAM-only run, where a put evicts for itself); 0.70
# leaves 19 MiB.
HIGH_WATERMARK = 0.70
SHUFFLE_SEED = 15
TIER_RE = re.compile(r"Mooncake load tier summary: .*memory_keys=(\d+) disk_keys=(\d+) "
                     r"unknown_keys=(\d+) success_keys=(\d+) failed_keys=(\d+)")


def _kv_bytes_per_block(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        c = json.load(f)
    head = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
    kv_heads = c.get("num_key_value_heads") or c["num_attention_heads"]
    return 2 * c["num_hidden_layers"] * kv_heads * head * 4 * BLOCK  # K and V, float32


def _stream(ctx, port, prompt, max_tokens):
    """A streamed greedy completion: (seconds to the first token chunk, the
    answer assembled into the shape of a non-streamed response)."""
    body = {"model": ctx.model_name, "prompt": prompt, "max_tokens": max_tokens,
            "temperature": 0, "ignore_eos": True, "logprobs": 1, "stream": True}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions",
                                 data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    text, tokens, lps = [], [], []
    t0 = time.perf_counter()
    first = None
    try:
        r = urllib.request.urlopen(req, timeout=600)
    except urllib.error.HTTPError as e:
        raise AssertionError(f"POST /v1/completions (stream): {e.code} {e.read()[:500]!r}") from None
    with r:
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            choice = json.loads(line[5:])["choices"][0]
            lp = choice.get("logprobs") or {}
            if first is None and (choice.get("text") or lp.get("tokens")):
                first = time.perf_counter() - t0
            text.append(choice.get("text") or "")
            tokens += lp.get("tokens") or []
            lps += lp.get("token_logprobs") or []
    assert first is not None, "no token chunk in the stream"
    return first, {"choices": [{"text": "".join(text),
                                "logprobs": {"tokens": tokens, "token_logprobs": lps}}]}


def _counters(ctx, inst):
    c = store_counters(ctx, inst)
    m = ctx.metrics(inst.url)
    c["queries"] = metric_sum(m, "vllm:external_prefix_cache_queries_total")
    c["put_failed"] = metric_sum(m, "vllm:mooncake_store_operation_failed_keys_total",
                                 operation="save_put")
    return c


def _tiers(inst, seen):
    """Sums of the tier-summary lines the instance logged since `seen` lines."""
    with open(inst.log_path, errors="replace") as f:
        found = [TIER_RE.search(line) for line in f]
    found = [m for m in found if m]
    new = found[seen:]
    sums = [sum(int(m.group(i)) for m in new) for i in range(1, 6)]
    return len(found), dict(zip(("memory", "disk", "unknown", "ok", "failed"), sums))


def _wait_saved(ctx, inst, before, full_blocks, hit_blocks, timeout=30):
    """The save step runs after the answer: waits until it checked the
    prompt's blocks and put the ones it did not find (asynchronous puts must
    land before the next prompt, so that both runs see the same sequence).
    Returns False when it did not happen within timeout."""
    deadline = time.monotonic() + timeout
    while True:
        c = _counters(ctx, inst)
        checked = c["exist_keys"] - before["exist_keys"] >= full_blocks
        put = c["put_keys"] - before["put_keys"] >= full_blocks - hit_blocks
        if checked and put:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def _ask(ctx, inst, prompt, want, full_blocks, tier_seen, what):
    before = _counters(ctx, inst)
    ttft, got = _stream(ctx, inst.port, prompt, MAX_TOKENS)
    after = _counters(ctx, inst)
    d = {k: after[k] - before[k] for k in after}
    worst = assert_same_completion(got, want, what=what)
    tier_seen, tiers = _tiers(inst, tier_seen)
    hit_blocks = int(d["external_hits"] + d["local_hits"]) // BLOCK  # not put again
    saved = _wait_saved(ctx, inst, before, full_blocks, hit_blocks)
    if d["external_hits"] == 0 and d["local_hits"] == 0:
        kind = "recompute"
    elif tiers["disk"] > 0 and tiers["memory"] == 0 and d["local_hits"] == 0:
        kind = "disk"
    elif tiers["memory"] > 0 and tiers["disk"] == 0 and d["local_hits"] == 0:
        kind = "dram"
    else:
        kind = "mixed"
    return tier_seen, {"ttft": ttft, "kind": kind, "d": d, "tiers": tiers,
                       "worst": worst, "saved": saved}


def _run(ctx, inst, prompts, wants, order, full_blocks, label):
    """Pass 1 in order, pass 2 in `order`; returns the per-request records."""
    tier_seen = 0
    passes = []
    for n, seq in enumerate((range(len(prompts)), order), 1):
        recs = []
        for i in seq:
            tier_seen, rec = _ask(ctx, inst, prompts[i], wants[i], full_blocks, tier_seen,
                                  f"{label} pass {n} prompt {i}")
            rec["prompt"] = i
            recs.append(rec)
        passes.append(recs)
    return passes


def _summary(passes):
    p2 = passes[1]
    hits = sum(r["d"]["external_hits"] for r in p2)
    queries = sum(r["d"]["queries"] for r in p2)
    return {
        "hit_rate": hits / queries if queries else 0.0,
        "hit_tokens": int(hits),
        "query_tokens": int(queries),
        "kinds": [r["kind"] for r in p2],
        "load_failed": int(sum(r["d"]["load_failed"] + r["tiers"]["failed"]
                               for p in passes for r in p)),
        "put_failed": int(sum(r["d"]["put_failed"] for p in passes for r in p)),
        "local_hit_tokens": int(sum(r["d"]["local_hits"] for p in passes for r in p)),
        "save_wait_timeouts": sum(1 for p in passes for r in p if not r["saved"]),
        "worst_logprob": max(r["worst"] for p in passes for r in p),
    }


def _median(xs):
    return round(statistics.median(xs), 3) if xs else None


def run(ctx):
    kv_block = _kv_bytes_per_block(ctx.model_dir)
    full_blocks = (PROMPT_WORDS + 1) // BLOCK
    prompt_bytes = full_blocks * kv_block
    working_set = PROMPTS * prompt_bytes
    prompts = [model_prompt(PROMPT_WORDS, seed=1500 + i) for i in range(PROMPTS)]
    order = list(range(PROMPTS))
    random.Random(SHUFFLE_SEED).shuffle(order)
    if order[0] == PROMPTS - 1:  # the last prompt of pass 1 may still be in vLLM's cache
        order[0], order[1] = order[1], order[0]
    wants = [ctx.baseline(p, MAX_TOKENS) for p in prompts]
    ctx.stop_baseline()  # at most 3 vLLM instances at once

    disk_dir = tempfile.mkdtemp(prefix="mc-e2e-ssd-")
    try:
        insts = {}
        for label, ssd in (("dram", False), ("ssd", True)):
            flags = {"enable_offload": True, "offload_on_evict": True} if ssd else {}
            master = ctx.start_master(name=f"master_{label}",
                                      eviction_high_watermark_ratio=HIGH_WATERMARK, **flags)
            client_env = {
                "MOONCAKE_OFFLOAD_FILE_STORAGE_PATH": disk_dir,
                # the staging buffer the disk reads land in; one load is 8 blocks
                "MOONCAKE_OFFLOAD_LOCAL_BUFFER_SIZE_BYTES": str(64 << 20),
                "MOONCAKE_OFFLOAD_BUCKET_SIZE_LIMIT_BYTES": str(64 << 20),
            } if ssd else None
            ctx.start_standalone_client(master, name=f"mooncake_client_{label}", env=client_env,
                                        global_segment_size=POOL_BYTES,
                                        enable_offload=ssd)
            cfg = ctx.store_config(master, name=f"mooncake_{label}.json",
                                   mode="standalone-store", global_segment_size=0,
                                   local_buffer_size="32MB", enable_offload=ssd)
            insts[label] = ctx.start_vllm(
                f"vllm_f_{label}", ctx.free_port(),
                {"kv_connector": "MooncakeStoreConnector", "kv_role": "kv_both"},
                env={"MOONCAKE_CONFIG_PATH": cfg, "VLLM_MOONCAKE_STORE_TIER_LOG": "1",
                     "PYTHONUNBUFFERED": "1"},
                extra_args=["--kv-cache-memory-bytes", str(LOCAL_BLOCKS * kv_block),
                            "--max-model-len", str(MAX_MODEL_LEN)],
                wait=False,
            )
        for inst in insts.values():
            ctx.wait_vllm(inst)

        load0 = os.getloadavg()[0]
        runs = {label: _run(ctx, inst, prompts, wants, order, full_blocks, label)
                for label, inst in insts.items()}
        load1 = os.getloadavg()[0]
        disk_bytes = sum(os.path.getsize(os.path.join(disk_dir, f))
                         for f in os.listdir(disk_dir) if f.endswith(".dat"))
    finally:
        shutil.rmtree(disk_dir, ignore_errors=True)

    s = {label: _summary(p) for label, p in runs.items()}
    recs = [r for p in runs.values() for recs in p for r in recs]
    ttft = {k: [r["ttft"] for r in recs if r["kind"] == k] for k in ("recompute", "dram", "disk")}
    rate_dram, rate_ssd = s["dram"]["hit_rate"], s["ssd"]["hit_rate"]
    ratio = rate_ssd / rate_dram if rate_dram > 0 else float("inf")
    out = {
        "kv_bytes_per_block": kv_block,
        "prompt_tokens": PROMPT_WORDS + 1,
        "prompt_kv_bytes": prompt_bytes,
        "prompts": PROMPTS,
        "pool_bytes": POOL_BYTES,
        "eviction_high_watermark_ratio": HIGH_WATERMARK,
        "working_set_over_pool": round(working_set / POOL_BYTES, 2),
        "hit_rate_dram_only": round(rate_dram, 3),
        "hit_rate_with_ssd": round(rate_ssd, 3),
        "hit_rate_ratio": round(ratio, 2) if ratio != float("inf") else "inf",
        "ttft_median_recompute_s": _median(ttft["recompute"]),
        "ttft_median_dram_hit_s": _median(ttft["dram"]),
        "ttft_median_disk_hit_s": _median(ttft["disk"]),
        "ttft_counts": {k: len(v) for k, v in ttft.items()},
        "pass2_kinds": {k: v["kinds"] for k, v in s.items()},
        "hit_tokens_over_queries": {k: [v["hit_tokens"], v["query_tokens"]] for k, v in s.items()},
        "load_failed_keys": {k: v["load_failed"] for k, v in s.items()},
        "put_failed_keys": {k: v["put_failed"] for k, v in s.items()},
        "local_hit_tokens": {k: v["local_hit_tokens"] for k, v in s.items()},
        "save_wait_timeouts": {k: v["save_wait_timeouts"] for k, v in s.items()},
        "disk_bucket_bytes": disk_bytes,
        "max_logprob_diff": max(v["worst_logprob"] for v in s.values()),
        "loadavg_1min_before_after": [round(load0, 2), round(load1, 2)],
    }
    print("    F figures: " + json.dumps(out, sort_keys=True), flush=True)
    fails = []
    if ratio < 2:
        fails.append(f"hit-rate ratio {ratio:.2f} < 2 (DRAM only {rate_dram:.3f}, SSD {rate_ssd:.3f})")
    if not ttft["disk"]:
        fails.append("no request of pass 2 was served from the disk")
    elif not ttft["recompute"] or statistics.median(ttft["disk"]) >= statistics.median(ttft["recompute"]):
        fails.append(f"disk-hit TTFT {out['ttft_median_disk_hit_s']} s is not below recompute "
                     f"{out['ttft_median_recompute_s']} s")
    if any(out["put_failed_keys"].values()):
        fails.append(f"failed puts {out['put_failed_keys']}")
    if any(out["load_failed_keys"].values()):
        fails.append(f"failed loads {out['load_failed_keys']}")
    assert not fails, "; ".join(fails) + "; figures " + json.dumps(out, sort_keys=True)
    return out
