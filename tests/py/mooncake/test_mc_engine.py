"""mooncake.engine: TransferEngine target/initiator in two processes (P2P and http)."""
import pytest

from mc_fixtures import case_names, run_case


@pytest.mark.parametrize("case", case_names("case_engine"))
def test_engine(master, case):
    run_case(master, "case_engine", case)
