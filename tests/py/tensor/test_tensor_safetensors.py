"""save_tensor_to_safetensor / load_tensor_from_safetensor against a real master."""
import pytest

torch = pytest.importorskip("torch", reason="torch not installed: the tensor tests run with "
                                                 "`make test-tensor`")
pytest.importorskip("safetensors")


def test_save_and_load(store, keyp, tmp_path):
    from safetensors.torch import load_file, save_file
    t = torch.arange(24, dtype=torch.bfloat16).reshape(2, 3, 4)
    assert store.put_tensor(keyp, t) == 0
    path = str(tmp_path / "a.safetensors")
    assert store.save_tensor_to_safetensor(keyp, path) == 0
    assert torch.equal(load_file(path)[keyp], t)
    # the file's entry named key, stored under that key (a fresh store key
    # here: the one just read is leased for 500 ms and cannot be removed)
    save_file({keyp + "_x": t * 2, keyp + "_l": t}, path + "2")
    got = store.load_tensor_from_safetensor(keyp + "_l", path + "2")
    assert torch.equal(got, t) and torch.equal(store.get_tensor(keyp + "_l"), t)
    # another key: the file's first entry
    got = store.load_tensor_from_safetensor(keyp + "_other", path)
    assert torch.equal(store.get_tensor(keyp + "_other"), t)
    # no key: the file name is the key
    assert torch.equal(store.load_tensor_from_safetensor(file_name=path), t)
    assert torch.equal(store.get_tensor(path), t)
    # errors
    assert store.save_tensor_to_safetensor(keyp + "_missing", path) == -1100
    assert store.save_tensor_to_safetensor(keyp, str(tmp_path / "no" / "dir.st")) == -600
    assert store.load_tensor_from_safetensor(keyp, str(tmp_path / "absent")) is None
    save_file({}, str(tmp_path / "empty.st"))
    assert store.load_tensor_from_safetensor(keyp, str(tmp_path / "empty.st")) is None
