#!/usr/bin/env python3
"""LMCache's own Mooncake client, driven directly (issue 22).

Runs under an interpreter that has lmcache (0.5.6) and some `mooncake` package
(ours through PYTHONPATH or an overlay venv; upstream's wheel in a venv of its
own). For each chunk size it builds LMCache's MooncakestoreConnector the way
LMCache does (CreateConnector("mooncakestore://HOST:PORT") with an
LMCacheEngineConfig whose extra_config carries the mooncake setup keys, and a
LocalCPUBackend), then times, per repetition:

  batched_put  8 chunks (LMCache's default save_chunk_meta=True path: put_parts
               of its metadata header + the chunk bytes, one call per chunk)
  batched_get  the same 8 chunks (batch_get_buffer, then a copy into a fresh
               MemoryObj of LMCache's allocator)
  single_get   batched_get of one chunk (LMCache has no single-key get: its
               get() raises; a one-key batch is what it does), a chunk put (untimed)
               in that repetition and not read before

Every byte of every chunk read back is compared with what was put (a wrong
or missing chunk is counted in "bad" and fails the run with exit 1). Prints
one JSON object (medians per size, in ms) and writes it to --json.

  python lmcache_driver.py --master HOST:PORT --metadata URL \
      --sizes 262144,1048576,4194304 --reps N --json OUT
"""
import argparse
import asyncio
import json
import logging
import os
import random
import statistics
import sys
import time

BATCH = 8
MiB = 1 << 20


def parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--master", required=True, help="mooncake_master HOST:PORT")
    ap.add_argument("--metadata", required=True, help="metadata server URL (http://.../metadata)")
    ap.add_argument("--sizes", default="262144,1048576,4194304",
                    help="chunk sizes in bytes, comma separated (multiples of 1024)")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2, help="untimed repetitions first")
    ap.add_argument("--segment", type=int, default=0,
                    help="global_segment_size this client contributes (bytes; default: room "
                         "for every chunk of the run at that size, under the eviction mark)")
    ap.add_argument("--local-buffer", type=int, default=128 * MiB, help="local_buffer_size")
    ap.add_argument("--hostname", default="127.0.0.1", help="local_hostname")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="torch.set_num_threads (0: torch's default). LMCache's copy of each "
                         "chunk is a torch copy_; with one intra-op thread per core on a loaded "
                         "machine it waits for every core's thread to be scheduled (stalls of "
                         "~200 ms seen at load 30), which has nothing to do with the store")
    ap.add_argument("--label", default="", help="copied into the JSON (e.g. ours / upstream)")
    ap.add_argument("--json", default="", help="write the JSON object here too")
    return ap.parse_args()


def segment_for(a, size):
    """Every repetition puts new keys and none is removed (a removal right after the gets
    meets their read leases; forced, it parks the space until they end), so the segment
    holds the whole run: 1.5 x its bytes, 64 MiB more."""
    if a.segment:
        return a.segment
    need = (a.warmup + a.reps) * BATCH * (size + 4096)
    return (need * 3 // 2 + 64 * MiB) // MiB * MiB


def make_connector(a, size, loop):
    import torch
    from lmcache.v1.config import LMCacheEngineConfig
    from lmcache.v1.metadata import LMCacheMetadata
    from lmcache.v1.storage_backend.connector import CreateConnector
    from lmcache.v1.storage_backend.local_cpu_backend import LocalCPUBackend

    chunk_tokens = 256
    # one layer, K and V, 256 tokens, bf16: hidden = size / (2 * 256 * 2)
    hidden = size // (2 * chunk_tokens * 2)
    if hidden * 2 * chunk_tokens * 2 != size:
        raise SystemExit("size %d is not a multiple of 1024" % size)
    url = "mooncakestore://" + a.master
    extra = {
        "local_hostname": a.hostname,
        "metadata_server": a.metadata,
        "master_server_address": a.master,
        # upstream's setup(dict) reads only master_server_addr (without it its client goes to
        # 127.0.0.1:50051); LMCache forwards mooncake_-prefixed keys with the prefix dropped
        "mooncake_master_server_addr": a.master,
        "global_segment_size": str(segment_for(a, size)),
        "local_buffer_size": str(a.local_buffer),
        "protocol": "tcp",
        "device_name": "",
        "transfer_timeout": 30,
    }
    # room for the source chunks, the chunks read back and LMCache's slack
    cpu_gb = max(0.125, (4 * BATCH * size + 64 * MiB) / (1 << 30))
    cfg = LMCacheEngineConfig.from_defaults(
        chunk_size=chunk_tokens, local_cpu=False, max_local_cpu_size=cpu_gb,
        remote_url=url, remote_serde="naive", extra_config=extra)
    meta = LMCacheMetadata(model_name="lmc-bench", world_size=1, local_world_size=1,
                           worker_id=0, local_worker_id=0, kv_dtype=torch.bfloat16,
                           kv_shape=(1, 2, chunk_tokens, 1, hidden), chunk_size=chunk_tokens)
    backend = LocalCPUBackend(cfg, meta)
    conn = CreateConnector(url, loop, backend, cfg, meta)
    return conn, backend, meta


def fill(obj, seed):
    """Distinct bytes per chunk and repetition (so a stale or swapped chunk shows)."""
    import torch
    t = obj.raw_tensor.view(torch.uint8)
    g = torch.Generator().manual_seed(seed)
    t.copy_(torch.randint(0, 256, (t.numel(),), dtype=torch.uint8, generator=g))


def same(src, got):
    import torch
    if got is None or got.raw_tensor is None:
        return False
    a, b = src.raw_tensor.view(torch.uint8), got.raw_tensor.view(torch.uint8)
    return a.numel() == b.numel() and torch.equal(a, b)


def run_size(a, size, loop):
    import torch
    from lmcache.utils import CacheEngineKey

    conn, backend, meta = make_connector(a, size, loop)
    shapes, dtypes = meta.get_shapes(), meta.get_dtypes()
    fmt = conn.meta_fmt if hasattr(conn, "meta_fmt") else None
    if fmt is None:
        from lmcache.v1.memory_management import MemoryFormat
        fmt = MemoryFormat.KV_2LTD
    # BATCH chunks for the batched calls, one more for the single get (put untimed, never read
    # before: a get of a key this client just read would be served by ours' lease cache)
    src = [backend.allocate(shapes, dtypes, fmt) for _ in range(BATCH + 1)]
    if any(o is None for o in src):
        raise SystemExit("LMCache's allocator gave no buffer for %d-byte chunks" % size)
    t_put, t_get, t_one = [], [], []
    bad = 0
    reps = a.warmup + a.reps
    salt = random.getrandbits(20) << 44  # runs against the same master never share keys
    for r in range(reps):
        keys = [CacheEngineKey("lmc-bench", 1, 0, salt + (size << 20) + r * (BATCH + 1) + i,
                               torch.bfloat16) for i in range(BATCH + 1)]
        for i, o in enumerate(src):
            fill(o, size * 1000 + r * (BATCH + 1) + i)
        for o in src:
            o.ref_count_up()  # LMCache's batched_put drops one reference per object
        loop.run_until_complete(conn.batched_put(keys[BATCH:], src[BATCH:]))
        t0 = time.perf_counter()
        loop.run_until_complete(conn.batched_put(keys[:BATCH], src[:BATCH]))
        t1 = time.perf_counter()
        got = loop.run_until_complete(conn.batched_get(keys[:BATCH]))
        t2 = time.perf_counter()
        one = loop.run_until_complete(conn.batched_get(keys[BATCH:]))
        t3 = time.perf_counter()
        for i in range(BATCH):
            bad += not same(src[i], got[i] if i < len(got) else None)
        bad += not same(src[BATCH], one[0] if one else None)
        for o in list(got) + list(one):
            if o is not None:
                o.ref_count_down()
        if r >= a.warmup:
            t_put.append((t1 - t0) * 1e3)
            t_get.append((t2 - t1) * 1e3)
            t_one.append((t3 - t2) * 1e3)
    for o in src:
        o.ref_count_down()
    loop.run_until_complete(conn.close())
    med = statistics.median
    return {
        "size": size, "batch": BATCH, "reps": a.reps,
        "batched_put_ms": med(t_put), "batched_get_ms": med(t_get), "single_get_ms": med(t_one),
        "batched_put_all_ms": [round(x, 3) for x in t_put],
        "batched_get_all_ms": [round(x, 3) for x in t_get],
        "single_get_all_ms": [round(x, 3) for x in t_one],
        "batched_get_MBps": BATCH * size / MiB / (med(t_get) / 1e3),
        "checked": reps * (BATCH + 1), "bad": bad, "segment": segment_for(a, size),
    }


def main():
    a = parse()
    logging.getLogger("lmcache").setLevel(logging.WARNING)
    os.environ.setdefault("LMCACHE_LOG_LEVEL", "WARNING")
    import mooncake
    import torch
    if a.torch_threads > 0:
        torch.set_num_threads(a.torch_threads)
    loop = asyncio.new_event_loop()
    out = {
        "bench": "lmcache_mooncakestore", "label": a.label,
        "mooncake": getattr(mooncake, "__file__", "?"),
        "mooncake_version": getattr(mooncake, "__version__", "?"),
        "python": sys.version.split()[0], "torch_threads": a.torch_threads,
        "loadavg_start": list(os.getloadavg()),
        "sizes": [],
    }
    try:
        import importlib.metadata as im
        out["lmcache_version"] = im.version("lmcache")
    except Exception:
        out["lmcache_version"] = "?"
    for s in [int(x) for x in a.sizes.split(",") if x]:
        out["sizes"].append(run_size(a, s, loop))
    out["loadavg_end"] = list(os.getloadavg())
    loop.close()
    text = json.dumps(out)
    print(text, flush=True)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    bad = sum(x["bad"] for x in out["sizes"])
    if bad:
        print("lmcache_driver: %d chunks read back wrong or missing" % bad, file=sys.stderr)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
