"""B: prefix sharing across instances through the pool (MooncakeStoreConnector).

Two kv_both vLLM CPU instances share one mooncake_master (each contributes
its own segment, embedded mode, tcp; the same MOONCAKE_CONFIG_PATH). Instance
1 answers a 1200-token prompt and its connector saves the prompt's blocks;
then instance 2, which has never seen the prompt, answers it with the prefix
loaded from the pool:
  - instance 2's vllm:external_prefix_cache_hits_total grows by the prompt's
    full blocks and vllm:mooncake_store_operation_keys_total{operation=
    "load_get"} by as many keys, with no failed keys;
  - our master hands out the blocks' replica lists to instance 2
    (get_replica_list counters, see a_offload.py) and indexes the blocks
    (master_key_count), saved once: instance
    2's save step finds them present and puts nothing new for that prompt;
  - both answers equal the plain single-instance baseline token for token
    (logprobs within harness.LOGPROB_TOL; see a_offload.py for why).
Then the reverse direction with a second prompt (instance 2 first, instance 1
loads). Where a block lands (which instance's segment) is up to the master.
Keys match across processes because both run with PYTHONHASHSEED=0.
"""

import time

from harness import assert_same_completion, model_prompt
from store_checks import master_gets, store_counters, wait_master_keys

BLOCK = 128


def _share(ctx, master, src, dst, prompt, keys_before, words):
    full_blocks = (words + 1) // BLOCK
    base = ctx.baseline(prompt, 16)
    got = ctx.completion(src.port, prompt, 16)
    assert_same_completion(got, base, what=f"{src.name}'s answer")
    keys = wait_master_keys(ctx, master, keys_before + full_blocks)

    before = store_counters(ctx, dst)
    gets_before = master_gets(ctx, master)
    got = ctx.completion(dst.port, prompt, 16)
    # the save path runs after the answer: wait until it has checked the keys
    deadline = time.monotonic() + 60
    while True:
        after = store_counters(ctx, dst)
        if after["exist_keys"] - before["exist_keys"] >= full_blocks:
            break
        assert time.monotonic() < deadline, f"{dst.name}: the save step never checked the keys"
        time.sleep(0.2)
    d = {k: after[k] - before[k] for k in after}
    gets = master_gets(ctx, master) - gets_before
    assert gets >= full_blocks, f"our master handed out {gets:.0f} replica lists, want >= {full_blocks}"
    worst = assert_same_completion(got, base, what=f"{dst.name}'s answer from the pool")
    assert d["external_hits"] >= full_blocks * BLOCK, (
        f"{dst.name}: external prefix cache hits grew by {d['external_hits']:.0f}, "
        f"want >= {full_blocks * BLOCK}; deltas {d}"
    )
    assert d["local_hits"] == 0, f"{dst.name} had the prompt locally: deltas {d}"
    assert d["load_keys"] >= full_blocks and d["load_failed"] == 0, f"{dst.name}: deltas {d}"
    assert d["put_keys"] == 0, f"{dst.name} put the shared blocks again: deltas {d}"
    keys_after = ctx.metrics(master.url)["master_key_count"]
    assert keys_after == keys, f"the shared blocks were stored again: {keys} -> {keys_after} keys"
    return int(d["external_hits"]), int(keys_after), worst


def run(ctx):
    words = 1200
    p1, p2 = model_prompt(words, seed=301), model_prompt(words, seed=302)
    ctx.baseline(p1, 16)
    ctx.baseline(p2, 16)

    master = ctx.start_master()
    cfg = ctx.store_config(master)
    kvt = {"kv_connector": "MooncakeStoreConnector", "kv_role": "kv_both"}
    env = {"MOONCAKE_CONFIG_PATH": cfg}
    extra = ["--max-model-len", "2048"]
    i1 = ctx.start_vllm("vllm_b1", ctx.free_port(), kvt, env=env, extra_args=extra, wait=False)
    i2 = ctx.start_vllm("vllm_b2", ctx.free_port(), kvt, env=env, extra_args=extra, wait=False)
    ctx.wait_vllm(i1)
    ctx.wait_vllm(i2)
    segs = ctx.metrics(master.url).get("master_segment_count", 0)
    assert segs >= 2, f"master has {segs} segments mounted, want one per instance"

    hits_12, keys, w1 = _share(ctx, master, i1, i2, p1, 0, words)
    hits_21, keys, w2 = _share(ctx, master, i2, i1, p2, keys, words)
    return {
        "b2_tokens_from_pool": hits_12,
        "b1_tokens_from_pool": hits_21,
        "master_key_count": keys,
        "max_logprob_diff": max(w1, w2),
    }
