"""One store worker of the soak (tests/soak/soak.py starts a few): a child
python that imports the `mooncake` package (the ASan-built extension is loaded
with the ASan runtime in LD_PRELOAD, set by the parent) and runs a seeded mix
of store calls against the soak's master until SIGTERM or its deadline:
put / put_from / batch_put_from, get / get_into / batch_get_into, remove,
is_exist / batch_is_exist, with sizes from 4 KiB to 8 MiB.

Byte checker: the value of (key, version) is derived from the key and the
version alone (a 48-byte text header "key#version#size#" then bytes of
random.Random(key#version)), so any value read back can be re-derived and
compared byte for byte. The worker keeps, per key, the versions whose put
returned 0 since the key was last removed; a get that returns anything else
(another key, an unknown version, a changed byte, a wrong length) is a wrong
read, reported on stdout as "wrong {json}". Misses (eviction, a dead segment)
are not wrong. Each incarnation uses its own key prefix, so a worker killed
with -9 and restarted never reads keys whose ledger it lost; it force-removes
its predecessor's keys first.

Protocol with the parent (stdout, one line each, flushed):
    ready                      after setup
    stats {json}               cumulative counters, every second
    wrong {json}               one per wrong read
    final {json}               at exit: counters and the result of one last
                               put/get round trip ("final_ok")
Argument: one JSON object (rpc, meta, seed, id, inc, seconds, keys, pace_s)."""

import json
import os
import random
import signal
import sys
import time

import numpy as np
from mooncake.store import MooncakeDistributedStore

KIB, MIB = 1 << 10, 1 << 20
MIN_SIZE, MAX_SIZE = 4 * KIB, 8 * MIB
BATCH_MAX = 2 * MIB  # per value in a batch
HDR = 48


def size_of(key, ver):
    """Log-uniform in [4 KiB, 8 MiB], derived from the key and version."""
    r = random.Random("%s#%d#size" % (key, ver))
    return min(MAX_SIZE, int(MIN_SIZE * 2 ** (r.random() * 11)))


def value_of(key, ver, size):
    head = ("%s#%d#%d#" % (key, ver, size)).encode().ljust(HDR, b".")
    return head + random.Random("%s#%d" % (key, ver)).randbytes(size - HDR)


class Worker:
    def __init__(self, cfg):
        self.cfg = cfg
        self.rng = random.Random("%s-w%d-i%d" % (cfg["seed"], cfg["id"], cfg["inc"]))
        self.prefix = "soak-w%d-i%d-" % (cfg["id"], cfg["inc"])
        self.keys = [self.prefix + "k%d" % i for i in range(cfg["keys"])]
        self.ledger = {}  # key -> {version: size} of completed puts since the last remove
        self.next_ver = {}
        self.stop = False
        self.c = {"ops": 0, "errors": 0, "wrong": 0, "hits": 0, "misses": 0, "bytes": 0}
        self.codes = {}
        self.s = MooncakeDistributedStore()
        # No segment of its own: the bytes land in the mooncake_client stores.
        rc = self.s.setup("127.0.0.1", cfg["meta"], 0, 32 * MIB, "tcp", "", cfg["rpc"])
        if rc != 0:
            raise SystemExit("setup failed: %d" % rc)
        self.buf = np.zeros(16 * MIB, dtype=np.uint8)
        self.ptr = self.buf.ctypes.data
        rc = self.s.register_buffer(self.ptr, self.buf.nbytes)
        if rc != 0:
            raise SystemExit("register_buffer failed: %d" % rc)
        if cfg["inc"] > 0:
            # The incarnation killed before this one left its keys behind: remove them,
            # so that the master's index stays bounded by the live workers' key sets.
            old = ["soak-w%d-i%d-k%d" % (cfg["id"], cfg["inc"] - 1, i) for i in range(cfg["keys"])]
            self.s.batch_remove(old, force=True)

    # -- bookkeeping
    def err(self, op, rc):
        self.c["errors"] += 1
        k = "%s:%s" % (op, rc)
        self.codes[k] = self.codes.get(k, 0) + 1

    def wrong(self, op, key, why, data):
        self.c["wrong"] += 1
        print("wrong " + json.dumps({"op": op, "key": key, "why": why, "len": len(data),
                                     "head": data[:HDR].decode("latin-1")}), flush=True)

    def new_version(self, key):
        v = self.next_ver.get(key, 0)
        self.next_ver[key] = v + 1
        return v

    def check(self, op, key, data):
        """data: bytes read back for key (non-empty). Counts a hit or a wrong read."""
        head = data[:HDR].rstrip(b".").split(b"#")
        try:
            hkey, ver, size = head[0].decode(), int(head[1]), int(head[2])
        except (IndexError, ValueError, UnicodeDecodeError):
            return self.wrong(op, key, "no header", data)
        if hkey != key:
            return self.wrong(op, key, "value of key %s" % hkey, data)
        if self.ledger.get(key, {}).get(ver) != size:
            return self.wrong(op, key, "version %d not a completed put" % ver, data)
        if len(data) != size:
            return self.wrong(op, key, "length %d, want %d" % (len(data), size), data)
        if data != value_of(key, ver, size):
            return self.wrong(op, key, "bytes differ", data)
        self.c["hits"] += 1
        self.c["bytes"] += size

    def done_put(self, key, ver, size, rc, op):
        if rc == 0:
            self.ledger.setdefault(key, {})[ver] = size
        else:
            self.err(op, rc)

    # -- operations
    def op_put(self):
        k = self.rng.choice(self.keys)
        v = self.new_version(k)
        n = size_of(k, v)
        self.done_put(k, v, n, self.s.put(k, value_of(k, v, n)), "put")

    def op_put_from(self):
        k = self.rng.choice(self.keys)
        v = self.new_version(k)
        n = size_of(k, v)
        self.buf[:n] = np.frombuffer(value_of(k, v, n), dtype=np.uint8)
        self.done_put(k, v, n, self.s.put_from(k, self.ptr, n), "put_from")

    def op_batch_put_from(self):
        ks = self.rng.sample(self.keys, 4)
        vs, ns, ptrs, off = [], [], [], 0
        for k in ks:
            v = self.new_version(k)
            n = size_of(k, v)
            while n > BATCH_MAX:  # batch values stay small: next version of the key
                v = self.new_version(k)
                n = size_of(k, v)
            self.buf[off:off + n] = np.frombuffer(value_of(k, v, n), dtype=np.uint8)
            vs.append(v)
            ns.append(n)
            ptrs.append(self.ptr + off)
            off += n
        rcs = self.s.batch_put_from(ks, ptrs, ns)
        for k, v, n, rc in zip(ks, vs, ns, rcs):
            self.done_put(k, v, n, rc, "batch_put_from")

    def op_get(self):
        k = self.rng.choice(self.keys)
        data = self.s.get(k)
        if data:
            self.check("get", k, data)
        else:
            self.c["misses"] += 1

    def got_into(self, op, k, rc, off):
        if rc > 0:
            self.check(op, k, self.buf[off:off + rc].tobytes())
        elif rc == -704 or rc == 0:
            self.c["misses"] += 1
        else:
            self.c["misses"] += 1
            self.err(op, rc)

    def op_get_into(self):
        k = self.rng.choice(self.keys)
        self.buf[:HDR] = 0
        self.got_into("get_into", k, self.s.get_into(k, self.ptr, MAX_SIZE), 0)

    def op_batch_get_into(self):
        ks = self.rng.sample(self.keys, 4)
        ptrs = [self.ptr + i * 4 * MIB for i in range(4)]
        for i in range(4):
            self.buf[i * 4 * MIB:i * 4 * MIB + HDR] = 0
        rcs = self.s.batch_get_into(ks, ptrs, [4 * MIB] * 4)
        for i, (k, rc) in enumerate(zip(ks, rcs)):
            if rc < 0 and rc != -704 and self.ledger.get(k) and \
                    max(self.ledger[k].values()) > 4 * MIB:
                self.c["misses"] += 1  # too big for its 4 MiB slot: expected refusal
                continue
            self.got_into("batch_get_into", k, rc, i * 4 * MIB)

    def op_remove(self):
        k = self.rng.choice(self.keys)
        rc = self.s.remove(k)
        if rc in (0, -704):  # gone: only later puts may be read from now on
            self.ledger.pop(k, None)
        elif rc != -706:  # -706: a read lease, expected
            self.err("remove", rc)

    def op_exist(self):
        ks = self.rng.sample(self.keys, 3)
        for rc in [self.s.is_exist(ks[0])] + list(self.s.batch_is_exist(ks[1:])):
            if rc not in (0, 1):
                self.err("exist", rc)

    OPS = [("put", 18), ("put_from", 10), ("batch_put_from", 6), ("get", 20), ("get_into", 16),
           ("batch_get_into", 8), ("remove", 10), ("exist", 12)]

    def run(self):
        names = [n for n, _ in self.OPS]
        weights = [w for _, w in self.OPS]
        deadline = time.monotonic() + self.cfg["seconds"]
        last = time.monotonic()
        while not self.stop and time.monotonic() < deadline:
            getattr(self, "op_" + self.rng.choices(names, weights)[0])()
            self.c["ops"] += 1
            now = time.monotonic()
            if now - last >= 1.0:
                last = now
                self.report("stats")
            time.sleep(self.cfg["pace_s"])
        self.report("final", final_ok=self.final_roundtrip())
        self.s.unregister_buffer(self.ptr)
        self.s.close()

    def final_roundtrip(self):
        """One put and get of a fresh key; retried briefly (eviction may be under way)."""
        k = self.prefix + "final"
        v = value_of(k, 0, 64 * KIB)
        for _ in range(50):
            rc = self.s.put(k, v)
            if rc == 0:
                return self.s.get(k) == v
            time.sleep(0.1)
        return False

    def report(self, what, **extra):
        d = dict(self.c, codes=self.codes, **extra)
        print("%s %s" % (what, json.dumps(d)), flush=True)


def main():
    cfg = json.loads(sys.argv[1])
    w = Worker(cfg)

    def on_term(*_):
        w.stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    print("ready", flush=True)
    w.run()
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
