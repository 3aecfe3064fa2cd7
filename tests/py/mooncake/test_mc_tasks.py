"""Upstream's copy / move tasks (create_copy_task, create_move_task,
query_task) against a real mooncake_master and three stores (each case in a
child python; cases/case_tasks.py)."""
import pytest

from mc_fixtures import case_names, run_case


@pytest.mark.parametrize("case", case_names("case_tasks"))
def test_tasks(master, case):
    run_case(master, "case_tasks", case, timeout=120)
