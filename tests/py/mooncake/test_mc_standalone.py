"""The standalone store client (mooncake_client) and its dummy clients
(setup_dummy), SGLang's standalone-storage mode; bad pointers on every copy
path. The binary's own command line is tested in test_mc_client_bin.py."""
import pytest

from mc_fixtures import SAN_RE, StandaloneClient, run_case


@pytest.fixture
def client(master, tmp_path):
    c = StandaloneClient(tmp_path, master)
    yield c
    killed = c.p.poll() is not None
    rc = c.stop()
    assert killed or rc == 0, (rc, c.stderr()[-4000:])  # a clean unmount on SIGTERM
    assert not SAN_RE.search(c.stderr()), c.stderr()[-4000:]


def _env(c, extra=None):
    env = {"MC_TEST_CLIENT": c.addr, "MC_TEST_CLIENT_NAME": c.name,
           "MC_TEST_CLIENT_PID": str(c.p.pid)}
    env.update(extra or {})
    return env


@pytest.mark.parametrize("case", ["case_sglang_standalone_sequence", "case_bad_client_address",
                                  "case_bad_pointers_remote", "case_dummy_mem_pool"])
def test_standalone(master, client, case):
    run_case(master, "case_standalone", case, env_extra=_env(client))


def test_bad_pointers_remote_tcp(master, client):
    run_case(master, "case_standalone", "case_bad_pointers_remote",
             env_extra=_env(client, {"MC_FORCE_TCP": "1"}))


def test_client_killed(master, client):
    run_case(master, "case_standalone", "case_client_killed", env_extra=_env(client))
    assert client.p.wait(10) == -9


@pytest.mark.parametrize("case", ["case_allocator", "case_bad_pointers_local_copy",
                                  "case_bad_pointers_te_local"])
def test_in_process(master, case):
    run_case(master, "case_standalone", case)
