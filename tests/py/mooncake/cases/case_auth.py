"""A store client in a child process whose cluster secret (if any) comes from
the environment the test gave it: case_pool_works expects a working pool,
case_setup_refused a setup that fails."""
import os

from mooncake.store import MooncakeDistributedStore
from util import META, RPC, MB, uniq


def case_pool_works():
    s = MooncakeDistributedStore()
    assert s.setup("127.0.0.1", META, 16 * MB, 16 * MB, "tcp", "", RPC) == 0
    key, value = uniq("auth"), os.urandom(300_000)
    assert s.put(key, value) == 0
    assert s.get(key) == value
    assert s.close() == 0


def case_setup_refused():
    s = MooncakeDistributedStore()
    rc = s.setup("127.0.0.1", META, 16 * MB, 16 * MB, "tcp", "", RPC)
    assert rc != 0, "setup succeeded"
    print("setup rc", rc)
