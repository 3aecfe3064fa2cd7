"""Target side of the two-process TransferEngine cases: a TE with one
registered 1 MiB buffer holding a known pattern. Prints
    READY <session> <buffer address> <length>
then serves stdin commands (argv: metadata, local name[, "split": register
the buffer as two halves with batch_register_memory]): "sha <off> <len>" (prints the sha256 hex of that
region), "quit"."""
import ctypes
import hashlib
import sys

from mooncake.engine import TransferEngine

N = 1 << 20


def pattern(n, seed):
    return bytes((i * 131 + seed) & 0xFF for i in range(256)) * (n // 256)


def main():
    meta, name = sys.argv[1], sys.argv[2]
    te = TransferEngine()
    assert te.initialize(name, meta, "tcp", "") == 0
    b = (ctypes.c_char * N)()
    ctypes.memmove(b, pattern(N, 7), N)
    addr = ctypes.addressof(b)
    split = len(sys.argv) > 3 and sys.argv[3] == "split"
    if split:  # two regions (vLLM's K and V storages), registered in one call
        assert te.batch_register_memory([addr, addr + N // 2], [N // 2, N // 2]) == 0
    else:
        assert te.register_memory(addr, N) == 0
    session = "%s:%d" % (name, te.get_rpc_port()) if meta == "P2PHANDSHAKE" else name
    print("READY %s %d %d" % (session, addr, N), flush=True)
    for line in sys.stdin:
        w = line.split()
        if not w or w[0] == "quit":
            break
        if w[0] == "sha":
            off, ln = int(w[1]), int(w[2])
            print(hashlib.sha256(b.raw[off:off + ln]).hexdigest(), flush=True)
    if split:
        assert te.batch_unregister_memory([addr, addr + N // 2]) == 0
    else:
        assert te.unregister_memory(addr) == 0


if __name__ == "__main__":
    main()
