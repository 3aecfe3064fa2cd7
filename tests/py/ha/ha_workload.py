"""A store client of HA masters, run in a child python (ASan runtime
preloaded by the test): it sets up a MooncakeDistributedStore whose master
address is "etcd://..." (MC_TEST_RPC) with metadata on etcd (MC_TEST_META),
then puts and gets keys one after the other until stdin closes or
--seconds pass, and prints one line per operation:
    OK PUT <i> <t>      ERR PUT <i> <rc> <t>
    OK GET <i> <t>      BAD GET <i> <t>   (wrong bytes: must never happen)
t is time.monotonic() of the operation's end, comparable with the parent's
(same host, same clock). Values are derived from the key, so every get is
checked byte for byte against the put of that key.

"ha_workload.py index" is the index mode (HA replication tests): it answers
commands on stdin, one a line, and prints one line per command:
    fill N [BATCH]  puts N new objects (batches of BATCH, default 1), with a
                    pacing-free retry while no leader serves:
                    "FILLED <ok> <t_first> <t_last> <seconds> <failed>"
                    (failed: puts that failed and were tried again)
    check           gets every object put so far, byte for byte:
                    "CHECKED <ok> <missing> <bad> <t>", t: the end of the
                    oldest missing object's put (0 when none is missing);
                    a removed object must be absent or hold its own bytes
                    (anything else counts as bad)
    remove A B      removes the objects put as A..B-1 (force): "REMOVED <n>"
    mark            "MARK <t>"  (time.monotonic() now)
Values are MC_TEST_VALUE_SIZE bytes (default 1024) derived from the key.
MC_TEST_SEGMENT_MB sets the segment this client contributes (default 32)."""
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


def ivalue(i, size):
    seed = hashlib.sha256(b"ix-%d" % i).digest()
    return (seed * (size // len(seed) + 1))[:size]


def index_mode(s):
    size = int(os.environ.get("MC_TEST_VALUE_SIZE", "1024"))
    done = []  # (i, t of its put's end)
    removed = []
    nxt = 0
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "fill":
            n, batch = int(cmd[1]), int(cmd[2]) if len(cmd) > 2 else 1
            t0, ok, first, last, failed = time.monotonic(), 0, 0.0, 0.0, 0
            end = nxt + n
            while nxt < end:
                ids = list(range(nxt, min(end, nxt + batch)))
                keys = ["ix-%d" % i for i in ids]
                if len(ids) == 1:
                    rc = s.put(keys[0], ivalue(ids[0], size))
                else:
                    rc = s.put_batch(keys, [ivalue(i, size) for i in ids])
                t = time.monotonic()
                if rc != 0:
                    failed += 1
                    if t - t0 > 60:
                        break
                    time.sleep(0.02)  # pacing while no leader serves, not synchronisation
                    continue
                done.extend((i, t) for i in ids)
                ok += len(ids)
                first = first or t
                last = t
                nxt = ids[-1] + 1
            print("FILLED %d %.4f %.4f %.4f %d" % (ok, first, last, time.monotonic() - t0,
                                                   failed), flush=True)
        elif cmd[0] == "check":
            ok = missing = bad = 0
            oldest = 0.0
            for k in range(0, len(done), 256):
                part = done[k:k + 256]
                got = s.get_batch(["ix-%d" % i for i, _ in part])
                for (i, t), g in zip(part, got):
                    if g == ivalue(i, size):
                        ok += 1
                    elif g:
                        bad += 1
                    else:
                        missing += 1
                        oldest = t if not oldest else min(oldest, t)
            for k in range(0, len(removed), 256):
                part = removed[k:k + 256]
                got = s.get_batch(["ix-%d" % i for i in part])
                bad += sum(1 for i, g in zip(part, got) if g and g != ivalue(i, size))
            print("CHECKED %d %d %d %.4f" % (ok, missing, bad, oldest), flush=True)
        elif cmd[0] == "remove":
            a, b = int(cmd[1]), int(cmd[2])
            n = 0
            for i in range(a, b):
                if s.remove("ix-%d" % i, force=True) == 0:
                    n += 1
            gone = set(range(a, b))
            removed.extend(i for i, _ in done if i in gone)
            done = [(i, t) for i, t in done if i not in gone]
            print("REMOVED %d" % n, flush=True)
        elif cmd[0] == "mark":
            print("MARK %.4f" % time.monotonic(), flush=True)
    s.close()
    return 0


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "index":
        s = MooncakeDistributedStore()
        seg = int(os.environ.get("MC_TEST_SEGMENT_MB", "32")) * MB
        rc = s.setup("127.0.0.1", os.environ["MC_TEST_META"], seg, 16 * MB, "tcp", "",
                     os.environ["MC_TEST_RPC"])
        print("READY %d" % rc, flush=True)
        return 1 if rc else index_mode(s)
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
