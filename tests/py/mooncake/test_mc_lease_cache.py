"""The store client's lease cache against a real mooncake_master (each case in a child python)."""
import pytest

from mc_fixtures import Master, case_names, core_so, py_dir, run_case


@pytest.mark.parametrize("case", case_names("case_lease_cache"))
def test_lease_cache(master, case):
    run_case(master, "case_lease_cache", case)


def test_no_cached_read_once_the_master_is_silent(tmp_path):
    """A lease binds only the leader that granted it: past 0.9 s without an answer from a
    serving master (a failover may have put another leader in charge, which may reuse the
    range), a get asks the master even though the lease (5 s here) still runs."""
    if not core_so():
        pytest.skip("mooncake._core not built under %s" % py_dir())
    m = Master(tmp_path, extra=["--default_kv_lease_ttl", "5000"])
    try:
        run_case(m, "case_lease_cache", "fenced_silent_master",
                 env_extra={"MC_TEST_MASTER_PID": str(m.p.pid)})
    finally:
        m.stop()
