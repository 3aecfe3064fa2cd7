"""Helpers of the P2P scenarios (C, D, E): MooncakeConnector instances behind mooncake_proxy.

- p2p_config(role) / multi_config(p2p_role, store_role): the kv_transfer_config dicts of
  vLLM's MooncakeConnector (mooncake_protocol tcp) and of the MultiConnector recipe
  [MooncakeConnector, MooncakeStoreConnector] (spec vllm-integration.md §1.4).
- start_many(ctx, specs): starts several vLLM instances at once (each start is mostly
  Python imports; on 2 cores two at a time still saves about a third of the wall time).
- start_proxy_connector(ctx, prefills, decodes): mooncake_proxy in --prefill/--decode mode,
  returned once its /status says ready (it knows every prefiller's engine ids).
- proxy_status, counters, wait_until, log_count: small readers used by the assertions.
"""

import json
import re
import threading
import time
import urllib.request

from harness import metric_sum


def p2p_config(role, **extra):
    cfg = {"mooncake_protocol": "tcp"}
    cfg.update(extra)
    return {"kv_connector": "MooncakeConnector", "kv_role": role, "kv_connector_extra_config": cfg}


def multi_config(role, p2p_role, store_role):
    """MultiConnector of MooncakeConnector (p2p_role) then MooncakeStoreConnector (store_role)."""
    return {
        "kv_connector": "MultiConnector",
        "kv_role": role,
        "kv_connector_extra_config": {
            "connectors": [
                p2p_config(p2p_role),
                {"kv_connector": "MooncakeStoreConnector", "kv_role": store_role},
            ]
        },
    }


def start_many(ctx, specs):
    """specs: list of dicts of ctx.start_vllm keyword arguments (name, port, ...).

    Starts them in threads; returns the Procs in the order of specs. If one fails,
    the others are still waited for (the runner's ctx.close() kills them all) and the
    first failure is raised.
    """
    results = [None] * len(specs)
    errors = []

    def one(i, spec):
        try:
            results[i] = ctx.start_vllm(**spec)
        except BaseException as e:  # re-raised in the caller's thread
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i, s)) for i, s in enumerate(specs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def http_json(method, url, body=None, headers=None, timeout=30):
    """(status, parsed JSON or raw text) without raising on HTTP errors."""
    data = json.dumps(body).encode() if body is not None else None
    hdrs = {"Content-Type": "application/json"} if body is not None else {}
    hdrs.update(headers or {})
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def proxy_status(proxy):
    status, body = http_json("GET", proxy.url + "/status")
    assert status == 200, f"proxy /status: {status} {body}"
    return body


def wait_until(what, fn, timeout=60, interval=0.2):
    """Poll fn() until it returns a true value; AssertionError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(interval)


def start_proxy_connector(ctx, prefills, decodes, env=None, extra=None, name="proxy"):
    """prefills: [(Proc, bootstrap_port)], decodes: [Proc]. Returns the proxy once ready."""
    args = []
    for p, boot in prefills:
        args += ["--prefill", p.url, str(boot)]
    for d in decodes:
        args += ["--decode", d.url]
    args += ["--health-interval-ms", "500"] + list(extra or [])
    proxy = ctx.start_proxy(args, name=name, env=env)
    wait_until("the proxy to learn the prefillers' engine ids",
               lambda: proxy_status(proxy).get("ready"), timeout=60)
    return proxy


def counters(ctx, inst):
    """The vLLM counters the P2P assertions read, from inst's /metrics."""
    m = ctx.metrics(inst.url)
    src = "vllm:prompt_tokens_by_source_total"
    return {
        "prompt_tokens": metric_sum(m, "vllm:prompt_tokens_total"),
        "local_compute": metric_sum(m, src, source="local_compute"),
        "local_cache_hit": metric_sum(m, src, source="local_cache_hit"),
        "external_kv_transfer": metric_sum(m, src, source="external_kv_transfer"),
        "external_hits": metric_sum(m, "vllm:external_prefix_cache_hits_total"),
        "requests_length": metric_sum(m, "vllm:request_success_total", finished_reason="length"),
        "requests_error": metric_sum(m, "vllm:request_success_total", finished_reason="error"),
        "kv_cache_usage": metric_sum(m, "vllm:kv_cache_usage_perc"),
        "running": metric_sum(m, "vllm:num_requests_running"),
    }


def delta(after, before):
    return {k: after[k] - before[k] for k in after}


def log_count(proc, pattern):
    """Lines of proc's log matching the regular expression."""
    rx = re.compile(pattern)
    with open(proc.log_path, errors="replace") as f:
        return sum(1 for line in f if rx.search(line))


def transfers_logged(proc):
    """Sum of 'Num successful transfers=N' in vLLM's periodic KV-transfer stats lines."""
    total = 0
    with open(proc.log_path, errors="replace") as f:
        for line in f:
            m = re.search(r"Num successful transfers=(\d+)", line)
            if m:
                total += int(m.group(1))
    return total
