"""One system's client process for the side-by-side benchmark (bench/compare/run.py).

Runs under the interpreter of the system it drives: ours (`mooncake` from this repository's
release build), upstream Mooncake (its PyPI wheel, in its own venv) or Redis (redis-py with
hiredis). Only the standard library and that system's client are imported.

Roles:
  holder  a Mooncake store process contributing the pool's segment (the "server" next to
          the master, as redis-server is for Redis); it answers READY and waits for EOF.
  writer  puts (timed cells, and untimed fills of read sets), and the prefill side of the
          KV-cache trace.
  reader  gets and exists, and the decode side of the trace.
The orchestrator sends one JSON command a line on stdin; every reply is one JSON line on
stdout (logs go to stderr). Timed cells run `conc` threads for `duration` seconds and report
keys/s, GB/s and per-call p50/p99 in microseconds.

Every value starts with its key (padded to 32 bytes); reads check it on one call in eight
(and the length on every call), so a wrong value shows as "verified": false.
"""
import argparse
import ctypes
import hashlib
import json
import mmap
import os
import struct
import sys
import threading
import time

HDR = 32


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def key_header(key):
    return key.encode().ljust(HDR, b".")[:HDR]


class Buf:
    """Page-aligned anonymous memory with its address, pages touched."""

    def __init__(self, size):
        self.size = size
        self.mm = mmap.mmap(-1, max(size, mmap.PAGESIZE))
        self._c = ctypes.c_char.from_buffer(self.mm)
        self.addr = ctypes.addressof(self._c)
        self.view = memoryview(self.mm)
        ctypes.memset(self.addr, 0x5A, len(self.mm))
        if hasattr(self.mm, "madvise") and hasattr(mmap, "MADV_HUGEPAGE"):
            self.mm.madvise(mmap.MADV_HUGEPAGE)

    def close(self):
        self.view.release()
        del self._c
        self.mm.close()


class MooncakeClient:
    """ours and upstream: the same Python API (upstream's MooncakeDistributedStore)."""

    zero_copy = True

    def __init__(self, a, segment_size):
        from mooncake.store import MooncakeDistributedStore
        self.s = MooncakeDistributedStore()
        rc = self.s.setup(a.name, a.metadata, segment_size, a.local_buffer, "tcp", "", a.master)
        if rc != 0:
            raise RuntimeError("setup returned %d" % rc)

    def put(self, key, mv):
        return self.s.put(key, mv) == 0

    def put_batch(self, keys, mvs):
        return self.s.put_batch(keys, mvs) == 0

    def put_from(self, key, addr, size):
        return self.s.put_from(key, addr, size) == 0

    def batch_put_from(self, keys, addrs, sizes):
        return all(r == 0 for r in self.s.batch_put_from(keys, addrs, sizes))

    def get(self, key):
        return self.s.get(key)

    def get_batch(self, keys):
        return self.s.get_batch(keys)

    def get_into(self, key, addr, size):
        return self.s.get_into(key, addr, size)

    def batch_get_into(self, keys, addrs, sizes):
        return self.s.batch_get_into(keys, addrs, sizes)

    def exists(self, key):
        return self.s.is_exist(key) == 1

    def batch_exists(self, keys):
        return [r == 1 for r in self.s.batch_is_exist(keys)]

    def remove(self, keys):
        self.s.batch_remove(keys, True)

    def register(self, buf):
        rc = self.s.register_buffer(buf.addr, len(buf.mm))
        if rc != 0:
            raise RuntimeError("register_buffer returned %d" % rc)

    def unregister(self, buf):
        self.s.unregister_buffer(buf.addr)

    def close(self):
        self.s.close()


class RedisClient:
    """Redis through redis-py with the hiredis parser; one pooled connection per thread."""

    zero_copy = False

    def __init__(self, a, _segment_size):
        import redis
        if not redis.utils.HIREDIS_AVAILABLE:
            raise RuntimeError("redis-py does not see hiredis")
        host, port = a.master.rsplit(":", 1)
        self.r = redis.Redis(host=host, port=int(port), max_connections=64)
        self.r.ping()

    def put(self, key, mv):
        return bool(self.r.set(key, mv))

    def put_batch(self, keys, mvs):
        return bool(self.r.mset(dict(zip(keys, mvs))))

    def get(self, key):
        return self.r.get(key) or b""

    def get_batch(self, keys):
        return [v or b"" for v in self.r.mget(keys)]

    def exists(self, key):
        return self.r.exists(key) == 1

    def batch_exists(self, keys):
        p = self.r.pipeline(transaction=False)
        for k in keys:
            p.exists(k)
        return [r == 1 for r in p.execute()]

    def remove(self, keys):
        for i in range(0, len(keys), 1024):
            self.r.delete(*keys[i:i + 1024])

    def close(self):
        self.r.close()


def percentile(sorted_ns, q):
    if not sorted_ns:
        return 0.0
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000.0


class Worker:
    def __init__(self, client):
        self.c = client
        self.bufs = {}

    # ---- buffers -------------------------------------------------------------------------
    def slots(self, tag, size, batch, register):
        """One buffer of `batch` value slots per (tag, size, batch); registered if asked."""
        k = (tag, size, batch, register)
        if k not in self.bufs:
            b = Buf(size * batch)
            if register:
                self.c.register(b)
            self.bufs[k] = b
        return self.bufs[k]

    def free_buffers(self):
        for (_, _, _, reg), b in self.bufs.items():
            if reg:
                self.c.unregister(b)
            b.close()
        self.bufs = {}

    # ---- puts ----------------------------------------------------------------------------
    def put_keys(self, b, keys, size, form):
        """Writes each key's header into its slot and puts the batch; True on success."""
        n = len(keys)
        for i, k in enumerate(keys):
            b.view[i * size:i * size + HDR] = key_header(k)
        if form == "zc":
            if n == 1:
                return self.c.put_from(keys[0], b.addr, size)
            return self.c.batch_put_from(keys, [b.addr + i * size for i in range(n)], [size] * n)
        if n == 1:
            return self.c.put(keys[0], b.view[:size])
        return self.c.put_batch(keys, [b.view[i * size:(i + 1) * size] for i in range(n)])

    def fill(self, cmd):
        size, prefix, nkeys = cmd["size"], cmd["prefix"], cmd["nkeys"]
        form = "zc" if self.c.zero_copy else "plain"
        batch = min(16, nkeys)
        b = self.slots("fill", size, batch, form == "zc")
        bad = 0
        for i in range(0, nkeys, batch):
            keys = ["%s-%d" % (prefix, j) for j in range(i, min(nkeys, i + batch))]
            if not self.put_keys(b, keys, size, form):
                bad += 1
        self.free_buffers()
        return {"ok": bad == 0, "failed_calls": bad}

    def warm(self, cmd):
        """Untimed: puts `bytes` of 4 MiB values and removes them, so that the pool's memory
        has been touched once (first-touch page faults of a fresh pool are a one-time cost)."""
        size, batch = 4 << 20, 8
        form = "zc" if self.c.zero_copy else "plain"
        b = self.slots("warm", size, batch, form == "zc")
        keys = ["warm-%d" % i for i in range(cmd["bytes"] // size)]
        for i in range(0, len(keys), batch):
            self.put_keys(b, keys[i:i + batch], size, form)
        self.c.remove(keys)
        self.free_buffers()
        return {"ok": True}

    def clear(self, cmd):
        self.c.remove(["%s-%d" % (cmd["prefix"], j) for j in range(cmd["nkeys"])])
        return {"ok": True}

    # ---- timed cells ---------------------------------------------------------------------
    def cell(self, cmd):
        form, size, batch, conc = cmd["form"], cmd["size"], cmd["batch"], cmd["conc"]
        bufs = [self.slots("t%d" % t, size, batch, form == "zc") for t in range(conc)]
        results = [None] * conc
        barrier = threading.Barrier(conc)
        th = [threading.Thread(target=self.cell_thread, args=(cmd, t, bufs[t], barrier, results))
              for t in range(conc)]
        for t in th:
            t.start()
        for t in th:
            t.join()
        self.free_buffers()
        lat = sorted(x for r in results for x in r["lat"])
        ops = sum(r["keys"] / r["elapsed"] for r in results if r["elapsed"] > 0)
        calls = sum(r["calls"] / r["elapsed"] for r in results if r["elapsed"] > 0)
        errors = sum(r["errors"] for r in results)
        return {"ops_per_s": ops, "calls_per_s": calls, "gbps": ops * size / 1e9,
                "p50_us": percentile(lat, 0.50), "p99_us": percentile(lat, 0.99),
                "calls": len(lat), "errors": errors,
                "verified": all(r["verified"] for r in results),
                "checked": sum(r["checked"] for r in results)}

    def cell_thread(self, cmd, t, b, barrier, results):
        op, form, size = cmd["op"], cmd["form"], cmd["size"]
        batch, dur = cmd["batch"], cmd["duration"]
        c = self.c
        lat, keys_done, calls, errors, checked, ok = [], 0, 0, 0, 0, True
        round_keys, pending = max(batch, cmd.get("round_keys", 4096) // batch * batch), []
        nkeys = cmd.get("nkeys", 0)
        pos = (t * 7919) % nkeys if nkeys else 0
        addrs = [b.addr + i * size for i in range(batch)]
        sizes = [size] * batch
        seq = 0
        barrier.wait()
        # An untimed warm-up (cmd["warmup"] seconds) first: first-touch page faults of
        # fresh staging memory and connection set-up are a one-time cost, not the cell's.
        warm_until = time.perf_counter() + cmd.get("warmup", 0.0)
        t0 = time.perf_counter()
        untimed = 0.0
        while time.perf_counter() - t0 - untimed < dur:
            if warm_until and time.perf_counter() >= warm_until:
                warm_until = 0
                lat, keys_done, calls, errors = [], 0, 0, 0
                t0 = time.perf_counter()
                untimed = 0.0
            if op == "put":
                keys = ["%s-%d-%d" % (cmd["prefix"], t, seq + i) for i in range(batch)]
                seq += batch
                c0 = time.perf_counter_ns()
                good = self.put_keys(b, keys, size, form)
                lat.append(time.perf_counter_ns() - c0)
                pending += keys
                if len(pending) >= round_keys:  # keep the pool from filling: untimed removal
                    u0 = time.perf_counter()
                    c.remove(pending)
                    pending = []
                    untimed += time.perf_counter() - u0
            else:
                keys = ["%s-%d" % (cmd["prefix"], (pos + i) % nkeys) for i in range(batch)]
                pos = (pos + batch) % nkeys
                check = calls % 8 == 0
                c0 = time.perf_counter_ns()
                if op == "exists":
                    good = c.exists(keys[0]) if batch == 1 else all(c.batch_exists(keys))
                    lat.append(time.perf_counter_ns() - c0)
                elif form == "zc":
                    if batch == 1:
                        res = [c.get_into(keys[0], b.addr, size)]
                    else:
                        res = c.batch_get_into(keys, addrs, sizes)
                    lat.append(time.perf_counter_ns() - c0)
                    good = all(r == size for r in res)
                    if good and check:
                        checked += 1
                        ok &= all(b.view[i * size:i * size + HDR] == key_header(k)
                                  for i, k in enumerate(keys))
                else:
                    res = [c.get(keys[0])] if batch == 1 else c.get_batch(keys)
                    lat.append(time.perf_counter_ns() - c0)
                    good = len(res) == batch and all(len(v) == size for v in res)
                    if good and check:
                        checked += 1
                        ok &= all(v[:HDR] == key_header(k) for v, k in zip(res, keys))
            calls += 1
            if good:
                keys_done += batch
            else:
                errors += 1
        elapsed = time.perf_counter() - t0 - untimed
        if pending:
            c.remove(pending)
        results[t] = {"lat": lat, "keys": keys_done, "calls": calls, "errors": errors,
                      "elapsed": elapsed, "verified": ok, "checked": checked}

    # ---- KV-cache trace ------------------------------------------------------------------
    def trace(self, cmd, role, notify_fd):
        """Prefill (writer) or decode (reader) side of the KV-cache trace.

        Requests are rebuilt here from the seed: the same list on both sides. Block keys
        are chained: key i = sha256(key i-1 || token ids of block i), so requests sharing a
        prefix share keys. The writer looks up the request's keys (batch exists), keeps the
        longest cached prefix and puts the blocks it misses, then tells the reader the
        request index through a pipe; the reader loads the whole request's KV cache
        (batch get), and reports the time to load it and how much of it the writer found
        already cached (the hit rate)."""
        reqs = make_requests(cmd)
        size = cmd["block_size"]
        maxb = max(len(r) for r in reqs)
        zc = self.c.zero_copy
        b = self.slots("trace", size, maxb, zc)
        lat, found, total, errors, checked, ok = [], 0, 0, 0, 0, True
        t0 = time.perf_counter()
        if role == "writer":
            for ri, keys in enumerate(reqs):
                c0 = time.perf_counter_ns()
                hit = self.c.batch_exists(keys)
                n = 0
                while n < len(keys) and hit[n]:
                    n += 1
                miss = keys[n:]
                if miss and not self.put_keys(b, miss, size, "zc" if zc else "plain"):
                    errors += 1
                lat.append(time.perf_counter_ns() - c0)
                found += n
                total += len(keys)
                os.write(notify_fd, struct.pack("<i", ri))
            os.write(notify_fd, struct.pack("<i", -1))
        else:
            while True:
                hdr = read_exact(notify_fd, 4)
                if len(hdr) < 4:
                    break
                ri = struct.unpack("<i", hdr)[0]
                if ri < 0:
                    break
                keys = reqs[ri]
                n = len(keys)
                c0 = time.perf_counter_ns()
                if zc:
                    res = self.c.batch_get_into(keys, [b.addr + i * size for i in range(n)],
                                                [size] * n)
                    lat.append(time.perf_counter_ns() - c0)
                    got = sum(1 for r in res if r == size)
                    if ri % 8 == 0:
                        checked += 1
                        ok &= all(b.view[i * size:i * size + HDR] == key_header(k)
                                  for i, (k, r) in enumerate(zip(keys, res)) if r == size)
                else:
                    vals = self.c.get_batch(keys)
                    lat.append(time.perf_counter_ns() - c0)
                    got = sum(1 for v in vals if len(v) == size)
                    if ri % 8 == 0:
                        checked += 1
                        ok &= all(v[:HDR] == key_header(k) for v, k in zip(vals, keys)
                                  if len(v) == size)
                found += got
                total += n
                errors += 0 if got == n else 1
        wall = time.perf_counter() - t0
        self.free_buffers()
        s = sorted(lat)
        return {"requests": len(s), "blocks": total, "found_blocks": found,
                "hit_rate": found / total if total else 0.0, "wall_s": wall,
                "gbps": (total if role == "writer" else found) * size / 1e9 / wall if wall else 0,
                "p50_us": percentile(s, 0.5), "p99_us": percentile(s, 0.99),
                "mean_us": sum(s) / len(s) / 1000.0 if s else 0.0,
                "errors": errors, "verified": ok, "checked": checked}


def read_exact(fd, n):
    out = b""
    while len(out) < n:
        chunk = os.read(fd, n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def make_requests(cmd):
    """Deterministic requests: one of `prefixes` shared prefixes (1-24 blocks, popular ones
    more often, Zipf-like) plus 1-4 blocks of the request's own; chained block keys."""
    import random
    rng = random.Random(cmd["seed"])
    tokens = 256
    prefixes = []
    for p in range(cmd["prefixes"]):
        nb = rng.randint(1, 24)
        prefixes.append([[rng.randrange(32000) for _ in range(tokens)] for _ in range(nb)])
    weights = [1.0 / (i + 1) for i in range(len(prefixes))]
    reqs = []
    for r in range(cmd["requests"]):
        pre = rng.choices(prefixes, weights)[0]
        own = [[rng.randrange(32000) for _ in range(tokens)] for _ in range(rng.randint(1, 4))]
        keys, h = [], hashlib.sha256(("%s-%d" % (cmd["prefix"], cmd["block_size"])).encode())
        for blk in pre + own:
            h = hashlib.sha256(h.digest() + struct.pack("<%dH" % tokens, *blk))
            keys.append(h.hexdigest()[:40])
        reqs.append(keys)
    return reqs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--system", choices=["ours", "upstream", "redis"], required=True)
    ap.add_argument("--role", choices=["holder", "writer", "reader"], required=True)
    ap.add_argument("--master", required=True, help="master host:port (Redis: server host:port)")
    ap.add_argument("--metadata", default="", help="http://host:port/metadata")
    ap.add_argument("--name", default="127.0.0.1", help="local_hostname (host:port)")
    ap.add_argument("--segment", type=int, default=0, help="bytes this process contributes")
    ap.add_argument("--local_buffer", type=int, default=64 << 20)
    ap.add_argument("--notify_fd", type=int, default=-1, help="trace pipe end")
    a = ap.parse_args()
    cls = RedisClient if a.system == "redis" else MooncakeClient
    try:
        client = cls(a, a.segment if a.role == "holder" else 0)
    except Exception as e:  # the orchestrator reports it
        print(json.dumps({"ready": False, "error": "%s: %s" % (type(e).__name__, e)}), flush=True)
        return 1
    print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
    w = Worker(client)
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            if cmd["cmd"] == "cell":
                out = w.cell(cmd)
            elif cmd["cmd"] == "fill":
                out = w.fill(cmd)
            elif cmd["cmd"] == "warm":
                out = w.warm(cmd)
            elif cmd["cmd"] == "clear":
                out = w.clear(cmd)
            elif cmd["cmd"] == "trace":
                out = w.trace(cmd, a.role, a.notify_fd)
            else:
                out = {"error": "unknown command"}
        except Exception as e:
            out = {"error": "%s: %s" % (type(e).__name__, e)}
            w.free_buffers()
        print(json.dumps(out), flush=True)
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
