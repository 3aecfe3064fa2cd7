"""The etcd and redis clients of src/net (tests/integ/test_net_stores.c) against
real servers: one etcd member, a password-protected redis-server."""
import os
import subprocess

import pytest

from mc_fixtures import bin_dir, clean_env


def test_net_stores(etcd, redis_auth):
    exe = os.path.join(bin_dir(), "test_net_stores")
    if not os.path.exists(exe):
        pytest.skip("test_net_stores not built")
    env = clean_env()
    env.update(MC_TEST_ETCD=etcd.conn()[len("etcd://"):], MC_TEST_REDIS=redis_auth.addr,
               MC_TEST_REDIS_PASS=redis_auth.password)
    p = subprocess.run([exe], env=env, capture_output=True, text=True, timeout=120)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-6000:]
    assert "SKIPPED" not in out, out[-6000:]
