"""get_buffer / batch_get_buffer's get buffers against a real mooncake_master (each case in a
child python)."""
import pytest

from mc_fixtures import case_names, run_case


@pytest.mark.parametrize("case", case_names("case_getbuf"))
def test_getbuf(master, case):
    run_case(master, "case_getbuf", case)
