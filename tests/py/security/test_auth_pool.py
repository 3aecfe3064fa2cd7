"""A whole pool under a cluster secret: the master's mutating admin
endpoints and mooncake_client's dummy-client endpoint (the metadata server,
the master RPC and the engines are covered by their own files)."""
import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from auth_util import SECRET, run_store_case
from mc_fixtures import StandaloneClient, child_env
from test_auth_http import Client


def keys(m):
    with urllib.request.urlopen("http://%s/get_all_keys" % m.admin, timeout=10) as r:
        return r.read().decode()


def test_admin_mutations_need_the_secret(start_master, tmp_path, monkeypatch):
    m = start_master(SECRET, ["--metrics_host", "127.0.0.1"])
    monkeypatch.setenv("MC_CLUSTER_SECRET", SECRET)
    c = StandaloneClient(tmp_path, m)
    try:
        run_store_case(m, "case_put_for_admin", SECRET, {"MC_TEST_CLIENT": c.addr})
        _admin_checks(m)
    finally:
        assert c.stop() == 0, c.stderr()[-3000:]


def _admin_checks(m):
    assert "admin-probe" in keys(m)  # reads stay open
    req = urllib.request.Request("http://%s/api/v1/remove_all" % m.admin, data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 401
    assert "admin-probe" in keys(m)  # nothing removed
    st, body = Client(m.admin, "admin").call("POST", "/api/v1/remove_all", b"")
    assert st == 200 and json.loads(body)["removed_count"] >= 1
    assert "admin-probe" not in keys(m)
    with urllib.request.urlopen("http://%s/metrics" % m.admin, timeout=10) as r:
        assert r.status == 200  # scrapes need no secret


@pytest.mark.parametrize("secret,case", [(SECRET, "case_dummy_works"),
                                         (None, "case_dummy_refused")])
def test_dummy_clients(start_master, tmp_path, monkeypatch, secret, case):
    m = start_master(SECRET)
    monkeypatch.setenv("MC_CLUSTER_SECRET", SECRET)
    c = StandaloneClient(tmp_path, m)
    try:
        out = run_store_case(m, case, secret, {"MC_TEST_CLIENT": c.addr})
        if not secret:
            assert "requires the cluster secret" in out, out[-3000:]
    finally:
        assert c.stop() == 0, c.stderr()[-3000:]


def test_cli_proves_the_secret_for_mutations(start_master, tmp_path, monkeypatch):
    m = start_master(SECRET, ["--metrics_host", "127.0.0.1"])
    monkeypatch.setenv("MC_CLUSTER_SECRET", SECRET)
    c = StandaloneClient(tmp_path, m)
    try:
        run_store_case(m, "case_put_for_admin", SECRET, {"MC_TEST_CLIENT": c.addr})

        def cli(secret, *args):
            env = child_env()
            env.pop("MC_CLUSTER_SECRET", None)
            if secret:
                env["MC_CLUSTER_SECRET"] = secret
            return subprocess.run([sys.executable, "-m", "mooncake.ctl", "--master", m.rpc,
                                   "--admin", m.admin] + list(args), env=env,
                                  capture_output=True, text=True, timeout=60)

        p = cli(None, "rm", "--all")
        assert p.returncode != 0 and "refused (401)" in p.stdout + p.stderr, p.stdout + p.stderr
        assert "admin-probe" in keys(m)
        p = cli("another secret, long enough as well", "rm", "--all")
        assert p.returncode != 0 and "secret" in p.stdout + p.stderr
        assert "admin-probe" in keys(m)
        p = cli(SECRET, "rm", "--all")
        assert p.returncode == 0, p.stdout + p.stderr
        assert "admin-probe" not in keys(m)
    finally:
        assert c.stop() == 0, c.stderr()[-3000:]
