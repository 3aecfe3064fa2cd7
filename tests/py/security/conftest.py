"""Fixtures of the access-control tests: real masters (tests/py/mooncake's
Master helper) started with or without a cluster secret in their
environment, each stopped at teardown with its stderr checked."""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "mooncake"))
sys.path.insert(0, os.path.join(HERE, "..", "master"))
from mc_fixtures import SAN_RE, Master  # noqa: E402



@pytest.fixture
def start_master(tmp_path, monkeypatch):
    """start_master(secret=None, flags=()) -> Master."""
    started = []

    def start(secret=None, flags=()):
        with monkeypatch.context() as mp:
            mp.delenv("MC_CLUSTER_SECRET_FILE", raising=False)
            if secret is None:
                mp.delenv("MC_CLUSTER_SECRET", raising=False)
            else:
                mp.setenv("MC_CLUSTER_SECRET", secret)
            m = Master(tmp_path, extra=["--enable_persistence=false"] + list(flags))
        started.append(m)
        return m

    yield start
    for m in started:
        m.stop()
        assert not SAN_RE.search(m.stderr()), m.stderr()[-4000:]
