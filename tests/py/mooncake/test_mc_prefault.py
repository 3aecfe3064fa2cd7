"""The store's segment prefault against a real mooncake_master (each case in a child python)."""
import pytest

from mc_fixtures import case_names, run_case


@pytest.mark.parametrize("case", case_names("case_prefault"))
def test_prefault(master, case):
    run_case(master, "case_prefault", case)
