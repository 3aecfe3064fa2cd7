"""mooncake.store against a real mooncake_master (each case in a child python)."""
import pytest

from mc_fixtures import case_names, run_case


@pytest.mark.parametrize("case", case_names("case_store"))
def test_store(master, case):
    run_case(master, "case_store", case)
