"""A store client of HA masters, run in a child python (ASan runtime
preloaded by the test): it sets up a MooncakeDistributedStore whose master
address is "etcd://..." (MC_TEST_RPC) with metadata on etcd (MC_TEST_META),
then puts and gets keys one after the other until stdin closes or
--seconds pass, and prints one line per operation:
    OK PUT <i> <t>      ERR PUT <i> <rc> <t>
    OK GET <i> <t>      BAD GET <i> <t>   (wrong bytes: must never happen)
t is time.monotonic() of the operation's end, comparable with the parent's
(same host, same clock). Values are derived from the key, so every get is
checked byte for byte against the put of that key."""
import hashlib
import os
import sys
import threading
import time

from mooncake.store import MooncakeDistributedStore

MB = 1 << 20


def value(i):
    seed = hashlib.sha256(b"ha-%d" % i).digest()
    return (seed * (4096 // len(seed) + 1))[: 4096 + (i % 7) * 512]


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60
    s = MooncakeDistributedStore()
    rc = s.setup("127.0.0.1", os.environ["MC_TEST_META"], 32 * MB, 16 * MB, "tcp", "",
                 os.environ["MC_TEST_RPC"])
    print("READY %d" % rc, flush=True)
    if rc:
        return 1
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    deadline = time.monotonic() + seconds
    put_ok = []
    i = 0
    while not stop.is_set() and time.monotonic() < deadline:
        rc = s.put("ha-%d" % i, value(i))
        t = time.monotonic()
        if rc == 0:
            put_ok.append(i)
            print("OK PUT %d %.4f" % (i, t), flush=True)
        else:
            print("ERR PUT %d %d %.4f" % (i, rc, t), flush=True)
            time.sleep(0.02)  # pacing while no leader serves, not synchronisation
        if put_ok:
            j = put_ok[-1] if i % 2 else put_ok[i % len(put_ok)]
            got = s.get("ha-%d" % j)
            t = time.monotonic()
            if got == value(j):
                print("OK GET %d %.4f" % (j, t), flush=True)
            elif got:
                print("BAD GET %d %.4f" % (j, t), flush=True)
        i += 1
    s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
