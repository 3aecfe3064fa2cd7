"""mooncake.engine.TransferEngine: initiator here, target in a second process."""
import ctypes
import hashlib
import os
import subprocess
import sys
import threading

from util import META, buf, until

from mooncake.engine import TransferEngine, TransferNotify, TransferOpcode

HERE = os.path.dirname(os.path.abspath(__file__))
N = 1 << 20


class Target:
    def __init__(self, meta, name="127.0.0.1", *extra):
        self.p = subprocess.Popen([sys.executable, os.path.join(HERE, "te_target.py"), meta, name,
                                   *extra],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline().split()
        assert line and line[0] == "READY", line
        self.session, self.addr, self.len = line[1], int(line[2]), int(line[3])

    def sha(self, off, n):
        self.p.stdin.write("sha %d %d\n" % (off, n))
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def close(self):
        self.p.stdin.write("quit\n")
        self.p.stdin.flush()
        assert self.p.wait(30) == 0


def pattern(n, seed):
    return bytes((i * 131 + seed) & 0xFF for i in range(256)) * (n // 256)


def sha(b):
    return hashlib.sha256(b).hexdigest()


def _exercise(meta, name):
    t = Target(meta, name)
    te = TransferEngine()
    assert te.initialize("127.0.0.1", meta, "tcp", "") == 0
    assert te.get_rpc_port() > 0
    src_data = os.urandom(N)
    src, sp = buf(N, src_data)
    dst, dp = buf(N)
    assert te.register_memory(sp, N) == 0 and te.register_memory(dp, N) == 0
    assert te.send_probe(t.session) == 0
    assert te.get_first_buffer_address(t.session) == t.addr
    # sync read of the target's pattern
    assert te.transfer_sync_read(t.session, dp, t.addr, N) == 0
    assert dst.raw == pattern(N, 7)
    # sync write of half, byte-exact on the target
    assert te.transfer_sync_write(t.session, sp, t.addr, N // 2) == 0
    assert t.sha(0, N // 2) == sha(src_data[:N // 2])
    assert t.sha(N // 2, N // 2) == sha(pattern(N, 7)[N // 2:])
    # batch sync write, scattered into the second half (rewritten below)
    offs = [0, 4096, 65536, 300000]
    ln = 1000
    assert te.batch_transfer_sync_write(t.session, [sp + o for o in offs],
                                        [t.addr + N // 2 + o + 7 for o in offs], [ln] * 4) == 0
    for o in offs:
        assert t.sha(N // 2 + o + 7, ln) == sha(src_data[o:o + ln])
    ctypes.memset(dst, 0, N)
    assert te.batch_transfer_sync_read(t.session, [dp, dp + 100], [t.addr, t.addr + 100],
                                       [100, 200]) == 0
    assert dst.raw[:300] == src_data[:300]
    # async batches
    ctypes.memset(dst, 0, N)
    bid = te.batch_transfer_async_read(t.session, [dp], [t.addr], [N])
    assert bid != 0
    assert te.get_batch_transfer_status([bid]) == 0
    assert dst.raw[:N // 2] == src_data[:N // 2]
    bid = te.batch_transfer_async_write(t.session, [sp + N // 2], [t.addr + N // 2], [N // 2])
    assert bid != 0 and te.get_batch_transfer_status([bid]) == 0
    assert t.sha(0, N) == sha(src_data)
    bid = te.transfer_submit_write(t.session, sp, t.addr, 4096)
    assert bid != 0
    assert until(lambda: te.transfer_check_status(bid) != 0)  # polls; frees when done
    # the generic forms with TransferOpcode
    assert te.transfer_sync(t.session, sp, t.addr, 64, TransferOpcode.Write) == 0
    assert te.batch_transfer_sync(t.session, [dp], [t.addr], [64], TransferOpcode.Read) == 0
    assert te.get_batch_transfer_status([te.batch_transfer_async(
        t.session, [dp], [t.addr], [64], TransferEngine.TransferOpcode.Read)]) == 0
    # failures: outside the target's registered memory, unknown peers, bad local pointers
    assert te.transfer_sync_write(t.session, sp, t.addr + N - 10, 100) < 0
    assert te.transfer_sync_read(t.session, dp, 16, 100) < 0
    assert te.transfer_sync_write(t.session, 8, t.addr, 100) == -1
    assert te.batch_transfer_sync_write(t.session, [8], [t.addr], [100]) == -1
    assert te.batch_transfer_async_write("127.0.0.1:1", [sp], [t.addr], [10]) == 0
    assert te.transfer_sync_write("127.0.0.1:1", sp, t.addr, 10) == -1
    # still healthy afterwards
    assert te.transfer_sync_read(t.session, dp, t.addr, 4096) == 0
    assert dst.raw[:4096] == src_data[:4096]
    assert te.unregister_memory(sp) == 0 and te.unregister_memory(dp) == 0
    t.close()


def case_two_process_p2p():
    _exercise("P2PHANDSHAKE", "127.0.0.1")


def case_two_process_http():
    _exercise(META, "127.0.0.1:%d" % (20000 + os.getpid() % 20000))


def case_local_api():
    te = TransferEngine()
    assert te.get_rpc_port() == -1 or te.get_rpc_port() <= 0
    assert te.initialize("127.0.0.1", "P2PHANDSHAKE", "tcp", "") == 0
    assert te.initialize("127.0.0.1", "P2PHANDSHAKE", "tcp", "") == -1  # once only
    addr = te.allocate_managed_buffer(1 << 16)
    assert addr != 0
    assert te.write_bytes_to_buffer(addr, b"hello world", 11) == 0
    assert te.read_bytes_from_buffer(addr, 11) == b"hello world"
    assert te.write_bytes_to_buffer(8, b"x", 1) == -1  # outside managed/registered memory
    assert te.read_bytes_from_buffer(8, 1) == b""
    me = "127.0.0.1:%d" % te.get_rpc_port()
    assert te.get_first_buffer_address(me) == addr
    other = te.allocate_managed_buffer(4096)
    assert te.transfer_sync_read(me, other, addr, 11) == 0
    assert te.read_bytes_from_buffer(other, 11) == b"hello world"
    assert te.free_managed_buffer(other, 4096) == 0
    assert te.free_managed_buffer(other, 4096) == -1
    assert te.free_managed_buffer(addr, 1 << 16) == 0
    bufs = [buf(4096) for _ in range(3)]
    assert te.batch_register_memory([p for _, p in bufs], [4096] * 3) == 0
    assert te.register_memory(bufs[0][1], 4096) != 0  # overlap
    assert te.batch_unregister_memory([p for _, p in bufs]) == 0
    assert te.unregister_memory(bufs[0][1]) != 0
    assert te.notify(me, "n1", "m1") == 0
    got = []
    assert until(lambda: got.extend(te.get_notifies()) or got)
    assert got == [TransferNotify("n1", "m1")], got
    h = te.get_engine()
    assert h.transfer_engine() is te and h.get_engine_ptr() == te.get_engine_ptr()
    assert TransferOpcode.Read == 0 and TransferOpcode.Write == 1
    assert TransferNotify("a", "b").msg == "b"
    for call, exc, word in [
        (lambda: te.register_memory("x", 1), TypeError, "buffer_addr"),
        (lambda: te.transfer_sync_write(1, 1, 1, 1), TypeError, "target_hostname"),
        (lambda: te.batch_transfer_sync_write(me, [1, 2], [1], [1, 2]), ValueError, "peer"),
        (lambda: te.batch_register_memory([1], [1, 2]), ValueError, "capacities"),
        (lambda: te.initialize("a", "b", "c"), TypeError, "initialize"),
        (lambda: te.get_batch_transfer_status(5), TypeError, "batch_ids"),
    ]:
        try:
            call()
        except exc as e:
            assert word in str(e), (word, str(e))
        else:
            raise AssertionError("no %s for %s" % (exc.__name__, word))
    assert te.initialize_ext("127.0.0.1", "x", "tcp", "", "etcd") == -1


def case_many_threads_engine():
    t = Target("P2PHANDSHAKE")
    te = TransferEngine()
    assert te.initialize("127.0.0.1", "P2PHANDSHAKE", "tcp", "") == 0
    nthr, chunk = 8, 16384
    data = os.urandom(nthr * chunk)
    src, sp = buf(len(data), data)
    dst, dp = buf(len(data))
    assert te.register_memory(sp, len(data)) == 0 and te.register_memory(dp, len(data)) == 0
    errors = []

    def work(i):
        try:
            for _ in range(30):
                o = i * chunk
                assert te.batch_transfer_sync_write(t.session, [sp + o], [t.addr + o],
                                                    [chunk]) == 0
                assert te.transfer_sync_read(t.session, dp + o, t.addr + o, chunk) == 0
                assert dst.raw[o:o + chunk] == data[o:o + chunk]
        except BaseException as e:  # noqa: BLE001
            errors.append(repr(e))

    ts = [threading.Thread(target=work, args=(i,)) for i in range(nthr)]
    for x in ts:
        x.start()
    for x in ts:
        x.join(120)
    assert not errors, errors[:3]
    assert t.sha(0, len(data)) == sha(data)
    t.close()


def case_vllm_p2p_connector_sequence():
    """vLLM MooncakeConnector, replayed: D registers its K and V storages with
    batch_register_memory; P does too, then writes each request's blocks
    (contiguous runs coalesced into one descriptor, K and V separately) with
    batch_transfer_sync_write from a thread pool; D's bytes are checked."""
    from concurrent.futures import ThreadPoolExecutor
    d = Target("P2PHANDSHAKE", "127.0.0.1", "split")
    blk, half = 4096, N // 2
    nblk = half // blk
    p = TransferEngine()
    assert p.initialize("127.0.0.1", "P2PHANDSHAKE", "tcp", "") == 0
    k_data, v_data = os.urandom(half), os.urandom(half)
    kb, kp = buf(half, k_data)
    vb, vp = buf(half, v_data)
    assert p.batch_register_memory([kp, vp], [half, half]) == 0
    d_k, d_v = d.addr, d.addr + half
    # (P block ids, D block ids) per request; D's ids are its own allocation
    reqs = [(list(range(0, 8)), list(range(100, 108))),
            ([10, 11, 12, 30, 31], [1, 2, 3, 50, 51]),
            ([40, 41, 60], [70, 71, 90]),
            ([65, 66, 67, 68], [20, 21, 22, 23])]

    def descs(src_ids, dst_ids):
        src, dst, lens = [], [], []
        runs, i = [], 0
        while i < len(src_ids):
            j = i
            while (j + 1 < len(src_ids) and src_ids[j + 1] == src_ids[j] + 1
                   and dst_ids[j + 1] == dst_ids[j] + 1):
                j += 1
            runs.append((src_ids[i], dst_ids[i], j - i + 1))
            i = j + 1
        for lbase, rbase in ((kp, d_k), (vp, d_v)):
            for s0, d0, n in runs:
                src.append(lbase + s0 * blk)
                dst.append(rbase + d0 * blk)
                lens.append(n * blk)
        return src, dst, lens

    session = d.session
    with ThreadPoolExecutor(max_workers=4) as ex:
        rets = list(ex.map(lambda r: p.batch_transfer_sync_write(session, *descs(*r)), reqs))
    assert rets == [0] * len(reqs), rets
    expect = bytearray(pattern(N, 7))
    for src_ids, dst_ids in reqs:
        for s0, d0 in zip(src_ids, dst_ids):
            expect[d0 * blk:(d0 + 1) * blk] = k_data[s0 * blk:(s0 + 1) * blk]
            expect[half + d0 * blk:half + (d0 + 1) * blk] = v_data[s0 * blk:(s0 + 1) * blk]
    assert d.sha(0, N) == sha(bytes(expect))
    # a destination past D's registered storage fails the whole batch
    assert p.batch_transfer_sync_write(session, [kp], [d_v + half - 100], [blk]) != 0
    assert nblk == 128
    d.close()


def case_protocol_strings():
    # unknown: refused; "rdma" without a usable device or without libfabric at
    # all (MC_TE_LIBFABRIC names a library that is not there): tcp after a warning
    assert TransferEngine().initialize("127.0.0.1", "P2PHANDSHAKE", "bogus", "") == -1
    os.environ["MC_TE_LIBFABRIC"] = "/nonexistent/libfabric.so.1"
    te = TransferEngine()
    assert te.initialize("127.0.0.1", "P2PHANDSHAKE", "rdma", "mlx5_0") == 0
    b, bp = buf(4096)
    assert te.register_memory(bp, 4096) == 0
    assert te.unregister_memory(bp) == 0
