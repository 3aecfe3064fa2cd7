"""Counters the store scenarios (A, B) read: vLLM's MooncakeStoreConnector
metrics of an instance, and our master's key count and handed-out replicas."""

import time

from harness import metric_sum


def store_counters(ctx, inst):
    """An instance's prefix-cache hits and its store connector's loads and saves."""
    m = ctx.metrics(inst.url)
    ops = "vllm:mooncake_store_operation_keys_total"
    return {
        "external_hits": metric_sum(m, "vllm:external_prefix_cache_hits_total"),
        "local_hits": metric_sum(m, "vllm:prefix_cache_hits_total"),
        "load_keys": metric_sum(m, ops, operation="load_get"),
        "load_bytes": metric_sum(m, "vllm:mooncake_store_operation_bytes_total",
                                 operation="load_get"),
        "load_failed": metric_sum(m, "vllm:mooncake_store_operation_failed_keys_total",
                                  operation="load_get"),
        "put_keys": metric_sum(m, ops, operation="save_put"),
        "exist_keys": metric_sum(m, ops, operation="save_exists"),
    }


def master_gets(ctx, master):
    """Keys whose replicas our master handed out (single and batch lookups)."""
    m = ctx.metrics(master.url)
    assert "master_get_replica_list_requests_total" in m, (
        f"{ctx.bin_dir}/mooncake_master has no per-RPC counters on /metrics: "
        "an older build? (make build)"
    )
    return (
        m.get("master_get_replica_list_requests_total", 0)
        - m.get("master_get_replica_list_failures_total", 0)
        + m.get("master_batch_get_replica_list_items_total", 0)
        - m.get("master_batch_get_replica_list_failed_items_total", 0)
    )


def wait_master_keys(ctx, master, want, timeout=60):
    """Puts are asynchronous: waits until the master indexes `want` keys and
    returns how many it holds."""
    deadline = time.monotonic() + timeout
    while True:
        n = ctx.metrics(master.url).get("master_key_count", 0)
        if n >= want:
            return n
        assert time.monotonic() < deadline, (
            f"master holds {n} keys after {timeout} s, want >= {want}"
        )
        time.sleep(0.2)
