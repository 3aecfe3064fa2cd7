#!/usr/bin/env python3
"""The store calls LMCache's and vLLM's Mooncake clients make, one by one (issue 22 item 2).

Runs under any interpreter whose `mooncake.store` is ours or upstream's wheel; no
lmcache, no torch. Per call and chunk size it reports the median wall time and,
per call, what the process spent around it: CPU time (user+sys, all threads),
minor page faults and voluntary context switches (getrusage), so that the two
packages can be compared on counts that a loaded machine does not blur.

  lmcache  put_parts(key, 64-byte header, chunk)   LMCache's put (save_chunk_meta)
           batch_get_buffer(8 keys) + a copy of each into a caller buffer
           batch_get_buffer(1 key)  + copy              LMCache's "single get"
           batch_get_into(8 keys)                        save_chunk_meta=False
           put_from(key, ptr, size)                      save_chunk_meta=False
           batch_is_exist(8 keys), get_hostname()
  vllm     batch_put_from_multi_buffers / batch_get_into_multi_buffers (--vllm-keys
           keys, default 8, of --vllm-pieces pieces each, default 2: K and V halves;
           vLLM's CPU backend on the wide model sends 15 keys of 32 pieces, one per
           layer and K/V), batch_is_exist, batch_get_replica_desc
  --only vllm runs the vllm cells alone.

Every byte read back is compared with what was put. One JSON object on stdout.

  python client_calls.py --master HOST:PORT --metadata URL [--sizes ...] [--reps N]
      [--vllm-keys N] [--vllm-pieces N] [--only vllm]
"""
import argparse
import ctypes
import json
import os
import resource
import statistics
import sys
import time

MiB = 1 << 20
BATCH = 8


def usage():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return (r.ru_utime + r.ru_stime, r.ru_minflt, r.ru_nvcsw)


class Cell:
    def __init__(self):
        self.wall, self.cpu, self.flt, self.csw = [], [], [], []

    def run(self, fn):
        u0 = usage()
        t0 = time.perf_counter()
        r = fn()
        t1 = time.perf_counter()
        u1 = usage()
        self.wall.append((t1 - t0) * 1e3)
        self.cpu.append((u1[0] - u0[0]) * 1e3)
        self.flt.append(u1[1] - u0[1])
        self.csw.append(u1[2] - u0[2])
        return r

    def out(self):
        m = statistics.median
        return {"wall_ms": round(m(self.wall), 3), "cpu_ms": round(m(self.cpu), 3),
                "minflt": m(self.flt), "nvcsw": m(self.csw),
                "wall_all_ms": [round(x, 3) for x in self.wall]}


def lmcache_calls(st, cells, keep, size, src, sp, dp, ks, kz, hdr):
    """LMCache's calls on the BATCH keys ks (kz: the zero-copy forms'); returns the bad count"""
    bad = 0
    # LMCache, save_chunk_meta=True: sequential put_parts, then batch_get_buffer
    c = cells["put_parts"] if keep else Cell()
    for i in range(BATCH):
        view = memoryview(src)[i * size:(i + 1) * size]
        rc = c.run(lambda: st.put_parts(ks[i], hdr, view))
        bad += rc != 0
    want = [hdr + bytes(memoryview(src)[i * size:(i + 1) * size]) for i in range(BATCH)]

    def get_copy(keys):
        bufs = st.batch_get_buffer(keys)
        out = []
        for b in bufs:
            if b is None:
                out.append(None)
                continue
            m = memoryview(b) if sys.version_info >= (3, 11) else b.tobytes()
            out.append(bytes(m))  # LMCache copies into its own tensor
        return out

    got = (cells["batch_get_buffer+copy"] if keep else Cell()).run(lambda: get_copy(ks))
    bad += sum(g != w for g, w in zip(got, want))
    got = (cells["get_buffer1+copy"] if keep else Cell()).run(lambda: get_copy(ks[:1]))
    bad += got[0] != want[0]
    # the zero-copy forms
    c = cells["put_from"] if keep else Cell()
    for i in range(BATCH):
        bad += c.run(lambda: st.put_from(kz[i], sp + i * size, size)) != 0
    ctypes.memset(dp, 0, BATCH * size)
    n = (cells["batch_get_into"] if keep else Cell()).run(
        lambda: st.batch_get_into(kz, [dp + i * size for i in range(BATCH)],
                                  [size] * BATCH))
    bad += sum(x != size for x in n)
    bad += ctypes.string_at(dp, BATCH * size) != ctypes.string_at(sp, BATCH * size)
    e = (cells["batch_is_exist"] if keep else Cell()).run(lambda: st.batch_is_exist(kz))
    bad += sum(x != 1 for x in e)
    (cells["get_hostname"] if keep else Cell()).run(st.get_hostname)
    return bad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--master", required=True)
    ap.add_argument("--metadata", required=True)
    ap.add_argument("--sizes", default="262144,1048576,4194304")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--segment", type=int, default=256 * MiB)
    ap.add_argument("--local-buffer", type=int, default=128 * MiB)
    ap.add_argument("--label", default="")
    ap.add_argument("--vllm-keys", type=int, default=BATCH)
    ap.add_argument("--vllm-pieces", type=int, default=2)
    ap.add_argument("--only", choices=("all", "vllm"), default="all")
    a = ap.parse_args()
    if a.vllm_keys < 1 or a.vllm_pieces < 1:
        ap.error("--vllm-keys and --vllm-pieces must be >= 1")
    from mooncake.store import MooncakeDistributedStore
    st = MooncakeDistributedStore()
    rc = st.setup("127.0.0.1", a.metadata, a.segment, a.local_buffer, "tcp", "", a.master)
    if rc != 0:
        raise SystemExit("setup: %d" % rc)
    sizes = [int(x) for x in a.sizes.split(",") if x]
    top = max(sizes)
    # caller memory: the source chunks and the destinations, registered (as LMCache's
    # pinned buffer and vLLM's KV cache are)
    nkeys = max(BATCH, a.vllm_keys)
    src = (ctypes.c_char * (nkeys * top))()
    dst = (ctypes.c_char * (nkeys * top))()
    sp, dp = ctypes.addressof(src), ctypes.addressof(dst)
    st.register_buffer(sp, nkeys * top)
    st.register_buffer(dp, nkeys * top)
    bad = 0
    res = {"label": a.label, "mooncake": __import__("mooncake").__file__,
           "loadavg_start": list(os.getloadavg()), "sizes": []}
    hdr = bytes(range(64))
    for size in sizes:
        names = ("put_parts", "batch_get_buffer+copy", "get_buffer1+copy", "batch_get_into",
                 "put_from", "batch_is_exist", "get_hostname")
        names = (() if a.only == "vllm" else names) + (
            "batch_put_from_multi_buffers", "batch_get_into_multi_buffers",
            "batch_get_replica_desc")
        cells = {k: Cell() for k in names}
        nv, npc = a.vllm_keys, a.vllm_pieces
        piece = size // npc
        for r in range(a.reps + 2):
            keep = r >= 2
            pat = os.urandom(64) * (size // 64)
            for i in range(nkeys):
                ctypes.memmove(sp + i * size, pat[i % 64:] + pat[:i % 64], size)
            ks = ["c%d-%d-%d" % (size, r, i) for i in range(BATCH)]
            kz = ["z" + k for k in ks]
            if a.only == "all":
                bad += lmcache_calls(st, cells, keep, size, src, sp, dp, ks, kz, hdr)
            # vLLM's store connector: npc pieces per key (one per registered KV region)
            kv = ["v%d-%d-%d" % (size, r, i) for i in range(nv)]
            lens = [[piece] * (npc - 1) + [size - piece * (npc - 1)] for _ in range(nv)]
            ptrs = [[sp + i * size + j * piece for j in range(npc)] for i in range(nv)]
            p = (cells["batch_put_from_multi_buffers"] if keep else Cell()).run(
                lambda: st.batch_put_from_multi_buffers(kv, ptrs, lens))
            bad += sum(x != 0 for x in p)
            (cells["batch_get_replica_desc"] if keep else Cell()).run(
                lambda: st.batch_get_replica_desc(kv))
            ctypes.memset(dp, 0, nv * size)
            dptrs = [[dp + i * size + j * piece for j in range(npc)] for i in range(nv)]
            g = (cells["batch_get_into_multi_buffers"] if keep else Cell()).run(
                lambda: st.batch_get_into_multi_buffers(kv, dptrs, lens))
            bad += sum(x != size for x in g)
            bad += ctypes.string_at(dp, nv * size) != ctypes.string_at(sp, nv * size)
            for k in (ks + kz if a.only == "all" else []) + kv:
                st.remove(k, True)  # force: the gets above hold leases
        res["sizes"].append({"size": size, "calls": {k: v.out() for k, v in cells.items()}})
    res["bad"] = bad
    res["loadavg_end"] = list(os.getloadavg())
    st.close()
    print(json.dumps(res))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
