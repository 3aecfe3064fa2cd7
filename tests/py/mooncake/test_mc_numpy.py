"""numpy arrays as buffers of mooncake.store (each case in a child python).
numpy comes from scripts/install-deps.sh; without it these tests skip."""
import pytest

from mc_fixtures import case_names, run_case

pytest.importorskip("numpy")


@pytest.mark.parametrize("case", case_names("case_numpy"))
def test_numpy(master, case):
    run_case(master, "case_numpy", case)
