"""Fixtures for the mooncake_master process tests: the master itself, started
through tests/py/mooncake's Master helper (free loopback ports, readiness from
its stdout), with extra flags and environment per test."""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "mooncake"))
sys.path.insert(0, os.path.join(HERE, "..", "common"))
from mc_fixtures import SAN_RE, Master  # noqa: E402


@pytest.fixture
def start_master(tmp_path, monkeypatch):
    """start_master(flags=(), env={}) -> Master; every master is stopped at
    teardown and its stderr checked for sanitizer reports."""
    started = []

    def start(flags=(), env=None):
        for k, v in (env or {}).items():
            monkeypatch.setenv(k, str(v))
        m = Master(tmp_path, extra=list(flags))
        started.append(m)
        return m

    yield start
    for m in started:
        m.stop()
        assert not SAN_RE.search(m.stderr()), m.stderr()[-4000:]
