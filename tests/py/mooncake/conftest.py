"""pytest fixtures for tests/py/mooncake; the code is in mc_fixtures.py."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mc_fixtures import master  # noqa: E402,F401
