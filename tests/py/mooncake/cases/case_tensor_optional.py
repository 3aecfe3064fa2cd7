"""torch is optional: `import mooncake.store` works without it, the tensor
classes exist, and each tensor call raises ImportError naming PyTorch. The
absence is made sure of (sys.modules["torch"] = None makes every import of it
fail), whether or not torch is installed here."""
import sys

sys.modules["torch"] = None

from util import mk_store, uniq  # noqa: E402


def case_tensor_calls_without_torch():
    import mooncake
    import mooncake.store as ms
    assert mooncake.__version__
    for name in ("ParallelAxis", "TensorParallelism", "ReadTarget"):
        assert hasattr(ms, name)
    s = mk_store()
    k = uniq("t")
    calls = [lambda: s.put_tensor(k, object()), lambda: s.get_tensor(k),
             lambda: s.batch_get_tensor([k]), lambda: s.get_tensor_into(k, 1, 1),
             lambda: s.put_tensor_with_tp(k, object(), tp_size=2),
             lambda: s.get_tensor_with_parallelism(k),
             lambda: s.save_tensor_to_safetensor(k, "/nonexistent")]
    for c in calls:
        try:
            c()
        except ImportError as e:
            assert "PyTorch" in str(e), e
        else:
            raise AssertionError("no ImportError without torch")
    # the byte API is untouched
    assert s.put(k, b"abc") == 0 and s.get(k) == b"abc"
