"""Two TransferEngine roles for tests/cluster, each in a child python inside
a host's namespace (P2PHANDSHAKE metadata, so no server is needed):

    serve <ip> <bytes>        registers a buffer of <bytes> holding pattern(),
                              prints "READY <session> <addr> <bytes>", waits
                              for stdin to close
    read <ip> <session> <addr> <bytes> <seconds>
                              reads the whole buffer from the server again and
                              again for <seconds> (at least once), checks every
                              byte of every read, prints one JSON line:
                              {"transport", "reads", "bytes", "seconds", "ok"}
                              (seconds: in the transfers, not the checks)

The transport is what the engine chose for the peer (_segment_transport):
"tcp" between namespaces, "shm" would be the same-host shortcut."""
import ctypes
import hashlib
import json
import sys
import time

from mooncake.engine import TransferEngine


def pattern(n):
    block = b"".join(hashlib.sha256(b"te-peer-%d" % i).digest() for i in range(128))  # 4 KiB
    return (block * (n // len(block) + 1))[:n]


def main():
    mode, ip = sys.argv[1], sys.argv[2]
    te = TransferEngine()
    assert te.initialize(ip, "P2PHANDSHAKE", "tcp", "") == 0
    if mode == "serve":
        n = int(sys.argv[3])
        b = (ctypes.c_char * n)()
        ctypes.memmove(b, pattern(n), n)
        addr = ctypes.addressof(b)
        assert te.register_memory(addr, n) == 0
        print("READY %s:%d %d %d" % (ip, te.get_rpc_port(), addr, n), flush=True)
        sys.stdin.read()
        assert te.unregister_memory(addr) == 0
        return 0
    session, raddr, n, seconds = sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), \
        float(sys.argv[6])
    want = pattern(n)
    b = (ctypes.c_char * n)()
    addr = ctypes.addressof(b)
    assert te.register_memory(addr, n) == 0
    transport = te._segment_transport(session)
    reads, ok, moved = 0, True, 0.0
    t0 = time.monotonic()
    while reads == 0 or time.monotonic() - t0 < seconds:
        ctypes.memset(b, 0, n)
        t = time.monotonic()
        rc = te.transfer_sync_read(session, addr, raddr, n)
        moved += time.monotonic() - t  # the transfers only, not the checks
        reads += 1
        if rc != 0 or b.raw != want:
            ok = False
            break
    print(json.dumps({"transport": transport, "reads": reads, "bytes": reads * n,
                      "seconds": round(moved, 3), "ok": ok}), flush=True)
    assert te.unregister_memory(addr) == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
