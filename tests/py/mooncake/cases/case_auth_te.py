"""A TransferEngine initiator (P2P metadata, tcp forced) against a target
process (te_target.py); each side's cluster secret comes from the
environment the test gave it (MC_TEST_TARGET_SECRET for the target)."""
import os

from case_engine import Target, pattern
from util import buf

from mooncake.engine import TransferEngine

N = 1 << 20


def _target():
    env_secret = os.environ.get("MC_TEST_TARGET_SECRET")
    mine = os.environ.pop("MC_CLUSTER_SECRET", None)
    if env_secret:
        os.environ["MC_CLUSTER_SECRET"] = env_secret
    try:
        return Target("P2PHANDSHAKE")  # the child inherits the target's secret
    finally:
        os.environ.pop("MC_CLUSTER_SECRET", None)
        if mine:
            os.environ["MC_CLUSTER_SECRET"] = mine


def case_read_write_works():
    t = _target()
    te = TransferEngine()
    assert te.initialize("127.0.0.1", "P2PHANDSHAKE", "tcp", "") == 0
    dst, dp = buf(N)
    assert te.register_memory(dp, N) == 0
    assert te.transfer_sync_read(t.session, dp, t.addr, N) == 0
    assert dst.raw == pattern(N, 7)
    t.close()


def case_transfer_refused():
    t = _target()
    te = TransferEngine()
    assert te.initialize("127.0.0.1", "P2PHANDSHAKE", "tcp", "") == 0
    dst, dp = buf(N)
    assert te.register_memory(dp, N) == 0
    assert te.transfer_sync_read(t.session, dp, t.addr, N) != 0
    assert dst.raw == bytes(N)  # nothing came over
    print("TARGET", t.session)
    t.close()
