"""Child side of tests/py/meta (runs with the mooncake package importable and
tests/py/mooncake/cases on the path). argv[1] picks the role; the metadata
string is $MC_TEST_META, the master $MC_TEST_RPC.
    setup            a store setup must FAIL (exit 0 when it returned an error)
    engine_init      a TransferEngine.initialize must fail likewise
    open_bad N...    reads from each segment N must fail (their records are bad)
    serve store      a store: "put <key> <size> <seed>" -> sha256 hex,
                     "get <key>" -> sha256 hex | MISS
    serve initiator  a TE with a 1 MiB buffer: "read <seg> <addr> <seed>" -> OK
                     when 1 MiB read from seg at addr is the target pattern
    serve target N   a TE named N with a 1 MiB buffer holding pattern(seed 7)
All serving roles print "READY ..." first and end on "quit" or EOF."""
import ctypes
import hashlib
import random
import sys

from util import META, RPC, buf

from mooncake.engine import TransferEngine
from mooncake.store import MooncakeDistributedStore

N = 1 << 20


def pattern(n, seed):
    return bytes((i * 131 + seed) & 0xFF for i in range(256)) * (n // 256)


def data(size, seed):
    return random.Random(seed).randbytes(size)


def lines():
    for line in sys.stdin:
        w = line.split()
        if not w or w[0] == "quit":
            return
        yield w


def reply(s):
    print(s, flush=True)


def serve_store():
    s = MooncakeDistributedStore()
    assert s.setup("127.0.0.1", META, 16 << 20, 16 << 20, "tcp", "", RPC) == 0
    reply("READY %s" % s.get_hostname())
    for w in lines():
        if w[0] == "put":
            v = data(int(w[2]), int(w[3]))
            rc = s.put(w[1], v)
            reply(hashlib.sha256(v).hexdigest() if rc == 0 else "ERR %d" % rc)
        elif w[0] == "get":
            v = s.get(w[1])
            reply(hashlib.sha256(v).hexdigest() if v else "MISS")
    assert s.close() == 0


def serve_initiator():
    te = TransferEngine()
    assert te.initialize("127.0.0.1", META, "tcp", "") == 0
    dst, dp = buf(N)
    assert te.register_memory(dp, N) == 0
    reply("READY initiator")
    for w in lines():
        if w[0] == "read":
            ctypes.memset(dst, 0, N)
            rc = te.transfer_sync_read(w[1], dp, int(w[2]), N)
            reply("OK" if rc == 0 and dst.raw == pattern(N, int(w[3])) else "ERR %d" % rc)
    assert te.unregister_memory(dp) == 0


def serve_target(name):
    te = TransferEngine()
    assert te.initialize(name, META, "tcp", "") == 0
    b = (ctypes.c_char * N)()
    ctypes.memmove(b, pattern(N, 7), N)
    addr = ctypes.addressof(b)
    assert te.register_memory(addr, N) == 0
    reply("READY %s %d" % (name, addr))
    for _ in lines():
        pass
    assert te.unregister_memory(addr) == 0


def main():
    role = sys.argv[1]
    if role == "setup":
        s = MooncakeDistributedStore()
        rc = s.setup("127.0.0.1", META, 16 << 20, 16 << 20, "tcp", "", RPC)
        assert rc != 0, "setup succeeded on %s" % META
    elif role == "engine_init":
        assert TransferEngine().initialize("127.0.0.1", META, "tcp", "") != 0
    elif role == "open_bad":
        te = TransferEngine()
        assert te.initialize("127.0.0.1", META, "tcp", "") == 0
        dst, dp = buf(4096)
        assert te.register_memory(dp, 4096) == 0
        for name in sys.argv[2:]:
            assert te.transfer_sync_read(name, dp, 1 << 20, 16) < 0
        # still healthy: its own records are readable and it can be torn down
        assert te.unregister_memory(dp) == 0
    elif role == "serve":
        {"store": serve_store, "initiator": serve_initiator}.get(
            sys.argv[2], lambda: serve_target(sys.argv[3]))()
    else:
        raise SystemExit("unknown role " + role)


if __name__ == "__main__":
    main()
