"""torch stays optional for the `mooncake` package (each case in a child python)."""
import pytest

from mc_fixtures import case_names, run_case


@pytest.mark.parametrize("case", case_names("case_tensor_optional"))
def test_tensor_optional(master, case):
    run_case(master, "case_tensor_optional", case)
