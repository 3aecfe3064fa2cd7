"""Upstream's store API beyond the byte paths (issue 17), against a real
mooncake_master (each case in a child python; cases/case_api.py)."""
import pytest

from mc_fixtures import case_names, run_case


@pytest.mark.parametrize("case", case_names("case_api"))
def test_api(master, case):
    run_case(master, "case_api", case)
