"""pytest fixtures for tests/py/ops; the code is in ops_pool.py."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ops_pool import pool  # noqa: E402,F401
