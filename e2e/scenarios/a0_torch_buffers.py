"""A0: torch tensors as store buffers through our `mooncake` package.

torch is only installed in the e2e venv, so this is where the package meets
it: two stores (two processes would be the same code path; here two store
objects in one process, each with its own segment) on one mooncake_master,
torch.empty(...) buffers registered with register_buffer(t.data_ptr(), n),
then put_from / get_into and the batch forms, checked byte for byte. This is
what vLLM's store connector does with its KV-cache tensors.
"""

import torch
from mooncake.store import MooncakeDistributedStore


def _store(master, segment):
    s = MooncakeDistributedStore()
    rc = s.setup("127.0.0.1", "P2PHANDSHAKE", segment, 16 << 20, "tcp", "", master.rpc_addr)
    assert rc == 0, f"setup returned {rc}"
    return s


def run(ctx):
    master = ctx.start_master()
    a = _store(master, 64 << 20)
    b = _store(master, 64 << 20)
    try:
        n = 3 << 20
        src = torch.randint(0, 256, (n,), dtype=torch.uint8)
        dst = torch.zeros(n, dtype=torch.uint8)
        kv = torch.randn(4, 2, 128, 64, dtype=torch.float32)  # a block-shaped tensor
        kv_out = torch.empty_like(kv)
        for s, t in ((a, src), (b, dst), (a, kv), (b, kv_out)):
            nbytes = t.numel() * t.element_size()
            assert s.register_buffer(t.data_ptr(), nbytes) == 0, "register_buffer failed"

        assert a.put_from("a0/bytes", src.data_ptr(), n) == 0, "put_from failed"
        got = b.get_into("a0/bytes", dst.data_ptr(), n)
        assert got == n, f"get_into returned {got}, want {n}"
        assert torch.equal(src, dst), "get_into bytes differ from put_from bytes"

        # batch forms, one key per layer-half of the tensor, as the connector slices it
        half = kv.numel() * 4 // 2
        keys = ["a0/kv0", "a0/kv1"]
        rcs = a.batch_put_from(keys, [kv.data_ptr(), kv.data_ptr() + half], [half, half])
        assert list(rcs) == [0, 0], f"batch_put_from returned {rcs}"
        rcs = b.batch_get_into(keys, [kv_out.data_ptr(), kv_out.data_ptr() + half], [half, half])
        assert list(rcs) == [half, half], f"batch_get_into returned {rcs}"
        assert torch.equal(kv, kv_out), "batch_get_into tensor differs"
        return {"bytes_checked": n + 2 * half}
    finally:
        a.close()
        b.close()
