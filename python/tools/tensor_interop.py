"""Tensor objects across implementations: runs one fixed set of tensor writes
through whichever `mooncake.store` is importable (ours, or upstream's wheel)
against a running master, and dumps every object it made (key -> bytes); or
stores a dump made by the other implementation byte for byte and reads it
back through the tensor API, checking the tensors.

    tensor_interop.py write --master ADDR --meta URL --out DUMP
    tensor_interop.py read  --master ADDR --meta URL --dump DUMP
    tensor_interop.py diff  DUMP_A DUMP_B

Upstream's wheel (pip download mooncake-transfer-engine, unpacked, on
PYTHONPATH) needs CUDA / rdma-core libraries at load; where they are absent,
empty stand-ins on LD_LIBRARY_PATH and lazy binding (set here) let the CPU
paths run. docs/python.md "Tensor objects" gives the run and its result."""
import argparse
import ctypes
import os
import pickle
import sys

sys.setdlopenflags(os.RTLD_LAZY | os.RTLD_GLOBAL)

if __name__ == "__main__" and sys.argv[1:2] == ["diff"]:
    torch = ms = None
else:
    import torch
    from mooncake import store as ms


class Writer:
    def __init__(self, rank, size, split_dim):
        self.rank, self.size, self.split_dim = rank, size, split_dim


def axis(kind, rank, size, sd=None, **kw):
    a = ms.ParallelAxis()
    a.kind, a.rank, a.size, a.split_dim = kind, rank, size, sd
    for k, v in kw.items():
        setattr(a, k, v)
    return a


def par(*axes):
    p = ms.TensorParallelism()
    p.axes = list(axes)
    return p


def target(mode, parallelism=None):
    t = ms.ReadTarget()
    t.mode, t.parallelism = mode, parallelism
    return t


def det(shape, dtype):
    n = 1
    for d in shape:
        n *= d
    return (torch.arange(n, dtype=torch.int64) % 97).to(dtype).reshape(shape)


if torch is not None:
    WHOLE = {"f32": det((2, 3), torch.float32), "f64": det((5,), torch.float64),
             "bf16": det((4, 2), torch.bfloat16), "f16": det((3, 1, 2), torch.float16),
             "i64_empty": det((2, 0, 3), torch.int64), "bool": det((5,), torch.bool),
             "u8": det((7,), torch.uint8), "i32_scalar": det((), torch.int32),
             "f8": det((3, 3), torch.float32).to(torch.float8_e4m3fn)}
    T = det((4, 6), torch.float32)


def writes(s, buf_ptr, buf_size):
    """The writes, each with the keys it should have made."""
    out = []
    for name, t in WHOLE.items():
        out.append((s.put_tensor("w_" + name, t), ["w_" + name]))
    out.append((s.put_tensor_with_tp("tp", T, tp_size=2, split_dim=1), ["tp_tp_0", "tp_tp_1"]))
    for r, sh in enumerate(T.chunk(2, 0)):
        out.append((s.put_tensor_with_parallelism("ptp", sh.contiguous(),
                                                  par(axis("tp", r, 2, 0))),
                    ["ptp_tp_%d" % r, "ptp__parallelism_manifest"]))
    for r in range(3):
        out.append((s.put_tensor_with_parallelism("dptp", T, par(axis("dp", 1, 2),
                                                                 axis("tp", r, 3, 1))),
                    ["dptp__dp_1of2__tp_%dof3_sd1" % r, "dptp__parallelism_manifest"]))
    out.append((s.put_tensor_with_parallelism("pptp", T, par(axis("pp", 0, 2, stage_id=7),
                                                             axis("tp", 1, 2, 0))),
                ["pptp__tp_1of2_sd0__pp_0of2_sid7", "pptp__parallelism_manifest"]))
    out.append((s.put_tensor_with_parallelism("ep", T, par(axis("ep", 1, 4, expert_id=11))),
                ["ep__ep_1of4_eid11"]))
    for r in range(2):
        out.append((s.put_tensor_with_parallelism("wp", T, writer_partition=Writer(r, 2, 0)),
                    ["wp__writer_%dof2_sd0" % r, "wp__writer_manifest"]))
    got = s.get_tensor_into("w_f32", buf_ptr, buf_size)
    assert got is not None
    n = 304 + WHOLE["f32"].numel() * 4
    out.append((s.put_tensor_from("from", buf_ptr, n), ["from"]))
    assert s.get_tensor_into("tp_tp_0", buf_ptr, buf_size) is not None
    return out


def reads(s):
    """(name, got, expected) of every read of the objects writes() made."""
    for name, t in WHOLE.items():
        yield "get_tensor w_" + name, s.get_tensor("w_" + name), t
    for r in range(2):
        yield "get_tensor_with_tp tp %d" % r, s.get_tensor_with_tp(
            "tp", tp_rank=r, tp_size=2, split_dim=1), T.chunk(2, 1)[r]
        yield "shard ptp %d" % r, s.get_tensor_with_parallelism(
            "ptp", target("shard", par(axis("tp", r, 2, 0)))), T.chunk(2, 0)[r]
        yield "shard wp %d" % r, s.get_tensor_with_parallelism(
            "wp", target("shard", par(axis("tp", r, 2, 0)))), T.chunk(2, 0)[r]
    yield "full ptp", s.get_tensor_with_parallelism(
        "ptp", target("full", par(axis("tp", 0, 2, 0)))), T
    yield "full wp", s.get_tensor_with_parallelism("wp", target("full")), T
    yield "full dptp", s.get_tensor_with_parallelism(
        "dptp", target("full", par(axis("dp", 1, 2), axis("tp", 0, 3, 1)))), T
    yield "shard dptp 2", s.get_tensor_with_parallelism(
        "dptp", target("shard", par(axis("dp", 1, 2), axis("tp", 2, 3, 1)))), T.chunk(3, 1)[2]
    yield "shard pptp", s.get_tensor_with_parallelism(
        "pptp", target("shard", par(axis("pp", 0, 2, stage_id=7), axis("tp", 1, 2, 0)))), \
        T.chunk(2, 0)[1]
    yield "get_tensor from", s.get_tensor("from"), WHOLE["f32"]


def same(a, b):
    return (a is not None and a.dtype == b.dtype and tuple(a.shape) == tuple(b.shape) and
            bytes(a.contiguous().reshape(-1).view(torch.uint8).numpy()) ==
            bytes(b.contiguous().reshape(-1).view(torch.uint8).numpy()))


def open_store(args):
    s = ms.MooncakeDistributedStore()
    rc = s.setup("127.0.0.1", args.meta, 64 << 20, 64 << 20, "tcp", "", args.master)
    if rc != 0:
        sys.exit("setup: %d" % rc)
    size = 1 << 20
    buf = (ctypes.c_ubyte * size)()
    assert s.register_buffer(ctypes.addressof(buf), size) == 0
    return s, buf, size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["write", "read", "diff"])
    ap.add_argument("dumps", nargs="*")
    ap.add_argument("--master")
    ap.add_argument("--meta")
    ap.add_argument("--out")
    ap.add_argument("--dump")
    args = ap.parse_args()
    if args.cmd == "diff":  # bytes only: runs without either implementation
        a, b = (pickle.load(open(p, "rb")) for p in args.dumps)
        bad = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        print("%d objects, %d differ%s" % (len(set(a) | set(b)), len(bad),
                                           (": " + " ".join(bad)) if bad else ""))
        return 1 if bad else 0
    s, buf, size = open_store(args)
    print("implementation:", ms.__file__)
    if args.cmd == "write":
        dump, fails = {}, 0
        for rc, keys in writes(s, ctypes.addressof(buf), size):
            if rc != 0:
                print("write failed: rc %d for %s" % (rc, keys))
                fails += 1
            for k in keys:
                dump[k] = s.get(k)
                if not dump[k]:
                    print("missing object", k)
                    fails += 1
        pickle.dump(dump, open(args.out, "wb"))
        print("%d objects written, %d problems" % (len(dump), fails))
        return 1 if fails else 0
    dump = pickle.load(open(args.dump, "rb"))
    for k, v in dump.items():
        rc = s.put(k, v)
        if rc != 0:
            print("put %s: %d" % (k, rc))
    fails = 0
    for name, got, want in reads(s):
        ok = same(got, want)
        fails += not ok
        print("%-26s %s" % (name, "ok" if ok else "MISMATCH"))
    print("reads: %d mismatches" % fails)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
