"""EngramStore against a real mooncake_master (each case in a child python)."""
import pytest

from mc_fixtures import case_names, run_case


@pytest.mark.parametrize("case", case_names("case_engram"))
def test_engram(master, case):
    run_case(master, "case_engram", case)
