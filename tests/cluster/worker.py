"""The store process of one cluster host (tests/cluster), run in a child
python inside the host's namespace: a MooncakeDistributedStore that gives
its segment to the pool and runs a put/get workload until stdin closes.

argv: tag first_index n_hosts seconds. Env: MC_CL_IP (this host's address,
the TE's name and bind address), MC_CL_META (etcd://...), MC_CL_MASTER
(etcd://... of the HA masters), MC_STORE_CLUSTER_ID, MC_CL_SEED.

Keys are "<tag>-<i>"; a key is put once, and its value is a function of the
key alone (value()), so any get can be checked byte for byte wherever it
runs. Gets read this host's recent keys and guesses at other hosts' ("h<j>-<i>"
near our own i, so misses are normal and counted apart). Lines, one per op:
    READY rc
    OK PUT key t | ERR PUT key rc t
    OK GET key t | MISS GET key t | BAD GET key t (wrong bytes: must never happen)
t is time.monotonic() at the op's end (one clock for every namespace)."""
import hashlib
import os
import random
import sys
import threading
import time

from mooncake.store import MooncakeDistributedStore

MB = 1 << 20


def value(key):
    """The only bytes key may ever hold: 4 KiB .. 256 KiB from its hash."""
    h = hashlib.sha256(key.encode()).digest()
    n = 4096 + (int.from_bytes(h[:4], "little") % 64) * 4096
    block = hashlib.sha256(h + b"block").digest() * 128  # 4 KiB
    return (h + block * (n // len(block) + 1))[:n]


def main():
    tag, first, n_hosts, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
        float(sys.argv[4])
    rng = random.Random("%s-%s" % (os.environ.get("MC_CL_SEED", "0"), tag))
    s = MooncakeDistributedStore()
    rc = s.setup(os.environ["MC_CL_IP"], os.environ["MC_CL_META"], 64 * MB, 32 * MB, "tcp", "",
                 os.environ["MC_CL_MASTER"])
    print("READY %d" % rc, flush=True)
    if rc:
        return 1
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    deadline = time.monotonic() + seconds
    mine = []
    host = tag.split(".")[0]  # "h2.1" -> "h2"
    i = first
    while not stop.is_set() and time.monotonic() < deadline:
        key = "%s-%d" % (host, i)
        rc = s.put(key, value(key))
        t = time.monotonic()
        if rc == 0:
            mine.append(key)
            print("OK PUT %s %.4f" % (key, t), flush=True)
        else:
            print("ERR PUT %s %d %.4f" % (key, rc, t), flush=True)
            time.sleep(0.05)  # pacing while the pool is down, not synchronisation
        for _ in range(2):
            if mine and rng.random() < 0.4:
                k = rng.choice(mine[-64:])
            else:
                k = "h%d-%d" % (rng.randrange(n_hosts), max(0, i - rng.randrange(40)))
            got = s.get(k)
            t = time.monotonic()
            if not got:
                print("MISS GET %s %.4f" % (k, t), flush=True)
            elif got == value(k):
                print("OK GET %s %.4f" % (k, t), flush=True)
            else:
                print("BAD GET %s %.4f %d" % (k, t, len(got)), flush=True)
        i += 1
    s.close()
    print("DONE %d" % i, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
