"""Fixtures of the tensor API tests (tests/py/tensor): a real mooncake_master
(tests/py/mooncake/mc_fixtures.Master) and a store of the release build
imported into this python, which must have torch (`make test-tensor` makes the
venv, scripts/tensor-venv.sh). Without torch, or against the sanitizer build
(whose extension a stock python cannot load in-process), the whole directory
skips with one reason."""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "mooncake"))
sys.path.insert(0, os.path.join(HERE, "..", "common"))

try:
    import torch  # noqa: F401
    _NO_TORCH = None
except ImportError:  # the test files skip with this same reason (importorskip)
    _NO_TORCH = "torch not installed: the tensor tests run with `make test-tensor`"

from mc_fixtures import Master, core_so, py_dir  # noqa: E402
from asan_env import needs_asan  # noqa: E402


def pytest_collection_modifyitems(config, items):
    reason = _NO_TORCH
    so = core_so()
    if reason is None and not so:
        reason = "mooncake._core not built under %s (make build)" % py_dir()
    elif reason is None and needs_asan(so):
        reason = "the tensor tests load the release build in-process: `make test-tensor`"
    if reason:
        mark = pytest.mark.skip(reason=reason)
        for it in items:
            if str(it.fspath).startswith(HERE):
                it.add_marker(mark)


@pytest.fixture(scope="module")
def master(tmp_path_factory):
    # reads lease an object for 500 ms (upstream's tests' master): a test
    # overwrites or removes only what it has not just read
    m = Master(tmp_path_factory.mktemp("master"))
    yield m
    m.stop()


@pytest.fixture(scope="module")
def store(master):
    sys.path.insert(0, py_dir())
    from mooncake.store import MooncakeDistributedStore
    s = MooncakeDistributedStore()
    rc = s.setup("127.0.0.1", master.meta, 256 << 20, 64 << 20, "tcp", "", master.rpc)
    assert rc == 0, rc
    yield s
    s.close()


@pytest.fixture
def keyp(request):
    """A key prefix unique to the test."""
    return request.node.name.replace("[", "_").replace("]", "_")
