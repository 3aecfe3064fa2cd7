"""The store client's lease cache against a real mooncake_master (each case in a child python)."""
import pytest

from mc_fixtures import case_names, run_case


@pytest.mark.parametrize("case", case_names("case_lease_cache"))
def test_lease_cache(master, case):
    run_case(master, "case_lease_cache", case)
